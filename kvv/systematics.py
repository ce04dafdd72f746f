"""Systematic variations of the B+ -> K+ nu nubar templates: pure kernels (schemas: :mod:`kvv.config.systematics`).

Two kinds of variation feed the ``variation`` axis of the templates:

* weight variations: per-event multiplicative factors on top of the nominal
  weight (kaon-PID correction table, branching fractions of B decays, signal
  form factor, normalisations). :func:`weight_variations` returns, per name
  ``<name>_up`` / ``<name>_down``, an array of factors; a variation of size 0
  gives exactly ones.
* object variations: the cleaned tracks and photons are changed and the whole
  chain (features, preselection, BDT) is run again (tracking efficiency,
  photon energy scale and resolution, beam-background photon energy, track
  momentum scale). :func:`vary_objects` returns new columns.

Random decisions (which track is lost, how a photon is smeared) come from a
counter-based hash of (``__event__``, object index in the event, seed, salt),
never from a stateful generator: a track is dropped or kept identically however
the file is chunked and whichever worker runs the chunk.

Everything here is a pure function of numpy arrays; no I/O. Default numbers are
assumptions stated next to them; replace them by the collaboration's values.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, fields, replace
from typing import Protocol

import numpy as np

from kvv.config.systematics import (
    BeamBackgroundPhotonScaleVariation,
    BranchingFractionVariation,
    Direction,
    FormFactorVariation,
    KaonPIDTable,
    KaonPIDVariation,
    MomentumScaleVariation,
    NormalisationVariation,
    ObjectVariation,
    PhotonEnergyResolutionVariation,
    PhotonEnergyScaleVariation,
    SystematicsConfig,
    TrackingEfficiencyVariation,
    form_factor_nuisances,
    pid_nuisances,
    resolve_modes,
    weight_nuisances,
)
from kvv.physics.columns import PhotonColumns, TrackColumns
from kvv.physics.formfactors import BZ_M1, BZ_R1, BZ_R2, dgamma_dq2_columns, fplus_columns
from kvv.physics.kinematics import pdg_mass
from kvv.physics.randoms import hash_normal, hash_uniform

KAON_PDG = 321
# the q^2 range of B+ -> K+ nu nubar
B_PLUS_MASS = pdg_mass(521)  # GeV/c^2
K_PLUS_MASS = pdg_mass(321)
SIGNAL_DECAY = "K+ nu_e anti-nu_e"  # B+ daughters of the B -> K nu nubar mode in decays.yaml

# B species of the Upsilon(4S) decay per sample process: mcB1Mode/mcB2Mode index the
# modes of this particle (charge conjugates share the mode order, see decays.yaml)
B_SPECIES = {
    "charged": "B+",
    "knunu": "B+",
    "kstarpnunu": "B+",
    "jpsik": "B+",
    "mixed": "B0",
    "kstar0nunu": "B0",
}


class SampleLike(Protocol):
    """What the weight variations need to know of a sample (``kvv.config.Sample`` fits)."""

    name: str
    process: str
    template: str
    is_data: bool


# --------------------------------------------------------------------------- names and groups

ONE_SIDED: dict[type, Direction] = {
    TrackingEfficiencyVariation: "down",  # tracks can be lost, not created
    PhotonEnergyResolutionVariation: "up",  # resolution can be worsened, not improved
}


def groups(cfg: SystematicsConfig) -> dict[str, list[str]]:
    """Nuisance names per group for grouped impacts (MC statistics is the fit's staterror group)."""
    return {
        "detector": [n for v in cfg.kaon_pid for n in pid_nuisances(v)] + [v.name for v in cfg.object_variations],
        "physics modelling": [v.name for v in cfg.branching_fraction] + [n for v in cfg.form_factor for n in form_factor_nuisances(v)],
        "normalisations": [v.name for v in cfg.normalisation],
    }


def sources(cfg: SystematicsConfig) -> dict[str, list[str]]:
    """Nuisance names per source of uncertainty, one row of the systematics table each."""
    return {
        **{v.name: pid_nuisances(v) for v in cfg.kaon_pid},
        **{v.name: [v.name] for v in cfg.branching_fraction},
        **{v.name: form_factor_nuisances(v) for v in cfg.form_factor},
        **{v.name: [v.name] for v in cfg.normalisation},
        **{v.name: [v.name] for v in cfg.object_variations},
    }


# --------------------------------------------------------------------------- weight variations


def kaon_pid_components(table: KaonPIDTable) -> np.ndarray:
    """Independent components c_k (rows) with sum_k outer(c_k, c_k) == covariance.

    Eigen-decomposition cov = V diag(lambda) V^T, c_k = sqrt(lambda_k) v_k,
    largest first; the sign makes each component's largest entry positive, so
    the "up" direction does not depend on the LAPACK build.
    """
    eigenvalues, vectors = np.linalg.eigh(table.covariance_matrix())
    order = np.argsort(eigenvalues)[::-1]
    # rounding can make zero eigenvalues slightly negative
    components = (vectors[:, order] * np.sqrt(np.clip(eigenvalues[order], 0.0, None))).T
    signs = np.sign(components[np.arange(len(components)), np.argmax(np.abs(components), axis=1)])
    return components * np.where(signs == 0, 1.0, signs)[:, None]


def kaon_pid_bins(table: KaonPIDTable, p: np.ndarray, cos_theta: np.ndarray) -> np.ndarray:
    """Flattened table bin of each (p, cos theta), -1 outside the table."""
    ip = np.searchsorted(table.p_edges, p, side="right") - 1
    ic = np.searchsorted(table.cos_theta_edges, cos_theta, side="right") - 1
    n_p, n_c = table.shape
    inside = (ip >= 0) & (ip < n_p) & (ic >= 0) & (ic < n_c)
    return np.where(inside, ip * n_c + ic, -1)


def kaon_pid_inputs(tracks: TrackColumns, kaon_index: np.ndarray, track_mc_pdg: np.ndarray) -> dict[str, np.ndarray]:
    """Per-event columns the kaon-PID table needs, from the cleaned tracks.

    ``kaon_index`` is the candidate's index within its event (-1: none), as
    ``features.event_features`` returns it; ``track_mc_pdg`` is aligned with
    the flat track content. Events without a candidate get p = 0, pdg = 0.
    """
    n = len(kaon_index)
    if len(tracks.px) == 0:  # no track anywhere: no candidate, nothing to gather
        return {"kaon_p_lab": np.zeros(n), "kaon_cos_theta_lab": np.zeros(n), "kaon_mc_pdg": np.zeros(n, np.int64)}
    has = kaon_index >= 0
    row = np.where(has, tracks.offsets[:-1] + kaon_index, 0)
    p = np.sqrt(tracks.px[row] ** 2 + tracks.py[row] ** 2 + tracks.pz[row] ** 2)
    return {
        "kaon_p_lab": np.where(has, p, 0.0),
        "kaon_cos_theta_lab": np.where(has, tracks.pz[row] / np.where(p > 0, p, 1.0), 0.0),
        "kaon_mc_pdg": np.where(has, track_mc_pdg[row], 0).astype(np.int64),
    }


def _kaon_pid_rows(v: KaonPIDVariation, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Table bin per event, -1 where the correction does not apply."""
    bins = kaon_pid_bins(v.table, columns["kaon_p_lab"], columns["kaon_cos_theta_lab"])
    applies = (np.abs(columns["kaon_mc_pdg"]) == KAON_PDG) & (columns["kaon_kaon_id"] > v.kaon_id_cut)
    return np.where(applies, bins, -1)


def kaon_pid_nominal(v: KaonPIDVariation, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Nominal correction factor per event (the table value; 1 where it does not apply)."""
    rows = _kaon_pid_rows(v, columns)
    values = v.table.value_array()
    return np.where(rows >= 0, values[np.maximum(rows, 0)], 1.0)


def _kaon_pid_weights(v: KaonPIDVariation, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rows = _kaon_pid_rows(v, columns)
    values = v.table.value_array()
    out = {}
    for name, component in zip(pid_nuisances(v), kaon_pid_components(v.table), strict=True):
        # relative to the nominal correction: the nominal weight already carries values[bin]
        shift = np.where(rows >= 0, v.scale * component[np.maximum(rows, 0)] / values[np.maximum(rows, 0)], 0.0)
        out[f"{name}_up"] = 1.0 + shift
        out[f"{name}_down"] = 1.0 - shift
    return out


def _matching_b(parent: str, modes: tuple[int, ...], columns: dict[str, np.ndarray], sample: SampleLike) -> np.ndarray:
    """Number (0, 1, 2) of the event's B mesons of species ``parent`` decaying into ``modes``."""
    n = len(columns["mcB1Mode"])
    if B_SPECIES.get(sample.process) != parent:
        return np.zeros(n, dtype=np.int64)
    listed = np.asarray(modes, dtype=np.int64)
    return np.isin(columns["mcB1Mode"], listed).astype(np.int64) + np.isin(columns["mcB2Mode"], listed)


def _branching_fraction_weights(v: BranchingFractionVariation, columns: dict[str, np.ndarray], sample: SampleLike) -> dict[str, np.ndarray]:
    n_match = _matching_b(v.parent, resolve_modes(v.parent, tuple(v.modes)), columns, sample)
    # the rate of an event with both B's in listed modes scales with the product of both BFs
    return {f"{v.name}_up": (1.0 + v.uncertainty) ** n_match, f"{v.name}_down": (1.0 - v.uncertainty) ** n_match}


def _rate_density(q2: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """dGamma/dq2 of B+ -> K+ nu nubar up to a constant, on arrays (the generator's kernel's formula)."""
    return dgamma_dq2_columns(np.asarray(q2, dtype=float), B_PLUS_MASS, K_PLUS_MASS, **params)


@functools.cache
def _total_rate(r1: float, r2: float, m1: float) -> float:
    q2 = np.linspace(0.0, (B_PLUS_MASS - K_PLUS_MASS) ** 2, 20001)
    return float(np.trapezoid(_rate_density(q2, {"r1": r1, "r2": r2, "m1": m1}), q2))


def form_factor_weight(q2: np.ndarray, params: dict[str, float], shape_only: bool = True) -> np.ndarray:
    """(f+(q2; params) / f+(q2; nominal))^2, divided by the total-rate ratio if ``shape_only``."""
    nominal = {"r1": BZ_R1, "r2": BZ_R2, "m1": BZ_M1}
    varied = nominal | params
    weight = (fplus_columns(q2, **varied) / fplus_columns(q2, **nominal)) ** 2
    if shape_only:
        weight = weight * _total_rate(**nominal) / _total_rate(**varied)
    return weight


def _form_factor_weights(v: FormFactorVariation, columns: dict[str, np.ndarray], sample: SampleLike) -> dict[str, np.ndarray]:
    signal = _matching_b("B+", resolve_modes("B+", (SIGNAL_DECAY,)), columns, sample) > 0
    signal &= columns["mcq2"] >= 0
    q2 = np.where(signal, columns["mcq2"], 0.0)
    nominal = {"r1": BZ_R1, "r2": BZ_R2, "m1": BZ_M1}
    out = {}
    for param in sorted(v.uncertainties):
        sigma = v.uncertainties[param]
        for direction, sign in (("up", 1.0), ("down", -1.0)):
            w = form_factor_weight(q2, {param: nominal[param] + sign * sigma}, v.shape_only)
            # sigma == 0 must give exact ones, not ones up to the integral's rounding
            out[f"{v.name}_{param}_{direction}"] = np.where(signal & (sigma > 0), w, 1.0)
    return out


def _normalisation_weights(v: NormalisationVariation, n: int, sample: SampleLike) -> dict[str, np.ndarray]:
    applies = not v.templates or sample.template in v.templates
    size = v.size if applies else 0.0
    return {f"{v.name}_up": np.full(n, 1.0 + size), f"{v.name}_down": np.full(n, 1.0 - size)}


def nominal_weights(cfg: SystematicsConfig, columns: dict[str, np.ndarray], sample_info: SampleLike) -> np.ndarray:
    """Product of the nominal corrections (kaon-PID table values) per event; ones for data."""
    n = len(next(iter(columns.values()))) if columns else 0
    weight = np.ones(n)
    if not sample_info.is_data:
        for v in cfg.kaon_pid:
            weight = weight * kaon_pid_nominal(v, columns)
    return weight


def weight_variations(cfg: SystematicsConfig, columns: dict[str, np.ndarray], sample_info: SampleLike) -> dict[str, np.ndarray]:
    """Multiplicative factors per event for every weight variation, ``<nuisance>_up``/``_down``.

    Columns needed: ``kaon_p_lab``, ``kaon_cos_theta_lab``, ``kaon_mc_pdg``,
    ``kaon_kaon_id`` (kaon PID, see :func:`kaon_pid_inputs`); ``mcB1Mode``,
    ``mcB2Mode`` (branching fractions); and ``mcq2`` (form factor). Data gets ones.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    if sample_info.is_data:  # data has no truth, and its histograms carry no variations
        return _ones(weight_nuisances(cfg), n)
    out: dict[str, np.ndarray] = {}
    for pid in cfg.kaon_pid:
        out.update(_kaon_pid_weights(pid, columns))
    for bf in cfg.branching_fraction:
        out.update(_branching_fraction_weights(bf, columns, sample_info))
    for ff in cfg.form_factor:
        out.update(_form_factor_weights(ff, columns, sample_info))
    for norm in cfg.normalisation:
        out.update(_normalisation_weights(norm, n, sample_info))
    return out


#: the event-level MC truth each kind of weight variation reads
TRUTH_NEEDED = {"branching_fraction": ("mcB1Mode", "mcB2Mode"), "form_factor": ("mcB1Mode", "mcB2Mode", "mcq2")}


def unavailable(cfg: SystematicsConfig, truth: Collection[str], objects: bool) -> dict[str, str]:
    """The variations a sample cannot carry, with the reason: missing MC truth, or no objects to vary.

    Their templates equal the nominal for that sample; the process stage lists them in the run summary.
    """
    out: dict[str, str] = {}
    for kind, needed in TRUTH_NEEDED.items():
        missing = [name for name in needed if name not in truth]
        if missing:
            for v in getattr(cfg, kind):
                out[v.name] = f"no MC truth {', '.join(missing)} (input.truth)"
    if not objects:
        for ov in cfg.object_variations:
            out[ov.name] = "a candidate ntuple holds no tracks and photons to vary"
    return out


def _ones(nuisances: list[str], n: int) -> dict[str, np.ndarray]:
    return {f"{name}_{d}": np.ones(n) for name in nuisances for d in ("up", "down")}


# --------------------------------------------------------------------------- object variations


@dataclass(frozen=True)
class ObjectShift:
    """One re-processing pass: an object variation in one direction, filling ``name``."""

    name: str  # histogram variation, e.g. "momentum_scale_up"
    variation: ObjectVariation
    direction: Direction


def object_shifts(cfg: SystematicsConfig) -> list[ObjectShift]:
    """The passes to run per chunk; one-sided variations run only their physical direction."""
    shifts = []
    for v in cfg.object_variations:
        directions: list[Direction] = [ONE_SIDED[type(v)]] if type(v) in ONE_SIDED else ["up", "down"]
        shifts += [ObjectShift(f"{v.name}_{d}", v, d) for d in directions]
    return shifts


def mirrored(cfg: SystematicsConfig) -> dict[str, str]:
    """{missing variation: computed variation} of one-sided variations, to fill by :func:`mirror`."""
    out = {}
    for v in cfg.object_variations:
        if type(v) in ONE_SIDED:
            run = ONE_SIDED[type(v)]
            other = "up" if run == "down" else "down"
            out[f"{v.name}_{other}"] = f"{v.name}_{run}"
    return out


def mirror(nominal: np.ndarray, varied: np.ndarray) -> np.ndarray:
    """Symmetrised opposite template 2 nominal - varied, clipped at 0 (Poisson means)."""
    return np.clip(2.0 * nominal - varied, 0.0, None)


TRACK_FIELDS = tuple(f.name for f in fields(TrackColumns) if f.name != "offsets")


def _per_object(offsets: np.ndarray, event_number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Event number and index within the event of every flat object."""
    counts = np.diff(offsets)
    events = np.repeat(np.asarray(event_number, dtype=np.int64), counts)
    index = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], counts)
    return events, index


def track_keep_mask(v: TrackingEfficiencyVariation, tracks: TrackColumns, event_number: np.ndarray) -> np.ndarray:
    """Flat mask of the tracks kept; apply it to any array aligned with the tracks (e.g. mcPDG)."""
    events, index = _per_object(tracks.offsets, event_number)
    return hash_uniform(events, index, v.seed, "tracking_efficiency") >= v.fraction


def _drop_tracks(tracks: TrackColumns, keep: np.ndarray) -> TrackColumns:
    """Tracks where ``keep`` is set, with offsets rebuilt from the kept counts."""
    counts = np.diff(tracks.offsets)
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.zeros_like(tracks.offsets)
    np.cumsum(np.bincount(owner[keep], minlength=len(counts)), out=offsets[1:])
    return TrackColumns(offsets=offsets, **{f: getattr(tracks, f)[keep] for f in TRACK_FIELDS})


def vary_objects(
    shift: ObjectShift,
    tracks: TrackColumns,
    photons: PhotonColumns,
    event_number: np.ndarray,
    photon_mc_pdg: np.ndarray | None = None,
) -> tuple[TrackColumns, PhotonColumns]:
    """Tracks and photons of a chunk under one object variation (inputs are not modified).

    Acts on cleaned objects: migrations across the cleanup thresholds (e.g.
    photon E > 0.1 GeV) are not followed. ``photon_mc_pdg`` is aligned with the
    photons and needed only by the beam-background scale; photons are never
    dropped, tracks only by the tracking efficiency (see :func:`track_keep_mask`).
    """
    v = shift.variation
    sign = 1.0 if shift.direction == "up" else -1.0
    if isinstance(v, TrackingEfficiencyVariation):
        if v.fraction == 0.0:
            return tracks, photons
        return _drop_tracks(tracks, track_keep_mask(v, tracks, event_number)), photons
    if isinstance(v, MomentumScaleVariation):
        scale = 1.0 + sign * v.size
        return replace(tracks, px=tracks.px * scale, py=tracks.py * scale, pz=tracks.pz * scale), photons
    if isinstance(v, PhotonEnergyScaleVariation):
        return tracks, replace(photons, energy=photons.energy * (1.0 + sign * v.size))
    if isinstance(v, PhotonEnergyResolutionVariation):
        events, index = _per_object(photons.offsets, event_number)
        z = hash_normal(events, index, v.seed, "photon_energy_resolution")
        # clipping keeps energies physical; with size <~ 10 % it never acts in practice
        return tracks, replace(photons, energy=photons.energy * np.clip(1.0 + v.size * z, 0.0, None))
    if isinstance(v, BeamBackgroundPhotonScaleVariation):
        if photon_mc_pdg is None:
            raise ValueError(f"{v.name} needs photon MC truth (mcPDG); data has no object variations")
        beam_background_scale = np.where(np.asarray(photon_mc_pdg) == 0, 1.0 + sign * v.size, 1.0)
        return tracks, replace(photons, energy=photons.energy * beam_background_scale)
    raise TypeError(f"unknown object variation {type(v).__name__}")
