"""The ITA per-event feature table: signal kaon, rest of event (ROE), event shape.

:func:`event_features` turns the cleaned tracks and photons of a batch into one
flat array per name. The signal-kaon candidate is the highest-pT track with
PXD hits (PRL 127, 181802); everything else is the ROE. All features are in the
CMS frame unless the name says ``lab``. Events without a kaon candidate keep
the whole event as ROE and get 0 for every kaon-dependent quantity (they fail
the selection on ``has_kaon``); empty events get 0 everywhere, never NaN.

KSFW subset. Belle's KSFW moments (PRL 91, 261801) split the B candidate's
"signal" side from the "other" side and the other side into charged, neutral
and missing categories. Here the signal side is the kaon alone and the other
side is the whole ROE (tracks and photons together, no missing category):

    H^so_l = |p*_K| sum_{i in ROE} |p*_i| P_l(cos theta*_Ki),          l = 0..4
    H^oo_l = sum_{i, j in ROE} |p*_i| |p*_j| P_l(cos theta*_ij),       l = 1..4

(ordered pairs, i = j included), both divided by H_0 = (sum_all |p*|)^2, the
Fox-Wolfram normalisation of the whole event. H^oo_0 is dropped: with
x = |p*_K| / sum_all |p*|, H^so_0 = x (1 - x) and H^oo_0 = (1 - x)^2. E_T and the missing mass squared, the other
KSFW inputs, are the features ``e_t`` and ``m2_miss``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kvv.config import Preselection
from kvv.physics import eventshape as es
from kvv.physics import kinematics as kin
from kvv.physics.columns import BeamColumns, PhotonColumns, TrackColumns
from kvv.selection import preselection_steps

FEATURE_DOCS: dict[str, str] = {
    # signal kaon
    "q2_rec": "s/4 + M_K^2 - sqrt(s) E*_K, dineutrino q^2 for a signal B at rest [GeV^2]",
    "kaon_cos_theta_cms": "cos of the kaon polar angle, CMS",
    "kaon_cos_miss": "cos of the angle between kaon and missing momentum, CMS",
    "kaon_dr": "|dr| of the kaon track (distance to the beam spot) [cm]",
    "kaon_dz": "|dz| of the kaon track [cm]",
    "kaon_dz_roe": "|dz_K - <dz>_ROE|: kaon to mean ROE-track dz, tag-vertex proxy, 0 without ROE tracks [cm]",
    "roe_dz_spread": "standard deviation of the ROE-track dz, 0 without ROE tracks [cm]",
    # rest of event
    "roe_energy": "ROE energy E*_ROE [GeV]",
    "roe_p": "ROE momentum |p*_ROE| [GeV/c]",
    "roe_cos_theta": "cos of the ROE momentum polar angle, CMS",
    "roe_mass": "ROE invariant mass [GeV/c^2]",
    "roe_mbc": "ROE beam-constrained mass sqrt(E*_beam^2 - |p*_ROE|^2) [GeV/c^2]",
    "roe_delta_e": "ROE Delta E = E*_ROE - E*_beam [GeV]",
    "roe_charge": "ROE total charge [e]",
    "roe_n_tracks": "number of ROE tracks",
    "roe_n_photons": "number of ROE photons",
    # missing four-momentum (beam minus visible)
    "e_miss": "missing energy sqrt(s) - E*_vis [GeV]",
    "p_miss_cms": "missing momentum |p*_miss| [GeV/c]",
    "cos_theta_miss_cms": "cos of the missing-momentum polar angle, CMS",
    "m2_miss": "missing mass squared E*_miss^2 - |p*_miss|^2 [GeV^2/c^4]",
    # event shape, all objects unless roe
    "thrust": "thrust of all tracks and photons",
    "thrust_roe": "thrust of the ROE",
    "cos_theta_thrust": "|cos| of the ROE thrust axis to the CMS z axis",
    "cos_thrust_kaon_roe": "|cos| of the angle between kaon and ROE thrust axis",
    "r1": "normalised Fox-Wolfram moment H_1/H_0, all objects",
    "r2": "normalised Fox-Wolfram moment H_2/H_0, all objects",
    "r3": "normalised Fox-Wolfram moment H_3/H_0, all objects",
    "r4": "normalised Fox-Wolfram moment H_4/H_0, all objects",
    "roe_r2": "normalised Fox-Wolfram moment H_2/H_0 of the ROE",
    "sphericity": "sphericity 3/2 (l2 + l3) of the momentum tensor, all objects",
    "aplanarity": "aplanarity 3/2 l3 of the momentum tensor, all objects",
    "e_t": "E_T: scalar sum of transverse momenta to the CMS z axis, all objects [GeV]",
    **{
        f"cleo_cone_{k}": f"ROE |p| sum at {10 * (k - 1)}-{10 * k} deg to the kaon axis, folded [GeV/c]"
        for k in range(1, es.N_CLEO_CONES + 1)
    },
    **{f"ksfw_hso_{ell}": f"KSFW H^so_{ell}: |p_K| sum_ROE |p_i| P_{ell}(cos theta_Ki) / H_0" for ell in range(es.FW_LMAX + 1)},
    **{f"ksfw_hoo_{ell}": f"KSFW H^oo_{ell}: sum_ROE,ROE |p_i||p_j| P_{ell}(cos theta_ij) / H_0" for ell in range(1, es.FW_LMAX + 1)},
}
"""One-line meaning of each BDT input feature (rendered in the README)."""

FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DOCS)

COLUMN_DOCS: dict[str, str] = {
    "has_kaon": "a signal-kaon candidate exists (bool)",
    "kaon_index": "index of the kaon candidate among the event's tracks, -1 if none (int64)",
    "kaon_charge": "kaon candidate charge, 0 if none (int64)",
    "kaon_pt": "kaon transverse momentum in the lab, the fit variable [GeV/c]",
    "kaon_p_cms": "kaon momentum |p*_K| [GeV/c]",
    "kaon_kaon_id": "kaonID of the kaon candidate",
    "n_tracks": "number of cleaned tracks (int64)",
    "n_photons": "number of cleaned photons (int64)",
    "theta_miss": "polar angle of the missing momentum in the lab (preselection) [rad]",
    "e_visible_cms": "visible energy E*_vis in the CMS (preselection) [GeV]",
}
"""Per-event columns that are not BDT inputs: selection, fit and bookkeeping."""

COLUMN_NAMES: tuple[str, ...] = tuple(COLUMN_DOCS)


def event_features(
    tracks: TrackColumns,
    photons: PhotonColumns,
    beam: BeamColumns,
    *,
    min_pxd_hits: int = 1,
    kaon_id_cut: float | None = None,
    preselection: Preselection | None = None,
) -> dict[str, np.ndarray]:
    """Compute every name of FEATURE_NAMES + COLUMN_NAMES for a batch of events.

    The kaon is chosen by :func:`kvv.physics.kinematics.select_kaon` (``kaon_id_cut=None``:
    no PID requirement). Returns arrays of length n_events: float64, except
    ``has_kaon`` (bool) and ``kaon_index``, ``kaon_charge``, ``n_tracks``,
    ``n_photons`` (int64). With ``preselection``, the event-shape columns (most
    of the cost) are computed only for the events that pass it and are NaN
    for the others, which the preselection drops anyway.
    """
    cut = -np.inf if kaon_id_cut is None else float(kaon_id_cut)
    kaon = kin.select_kaon(tracks.offsets, tracks.px, tracks.py, tracks.n_pxd_hits, tracks.kaon_id, min_pxd_hits, cut)
    has_kaon = kaon >= 0
    offsets, e_lab, px_lab, py_lab, pz_lab = kin.kaon_first_objects(
        tracks.offsets, tracks.px, tracks.py, tracks.pz,
        photons.offsets, photons.energy, photons.theta, photons.phi,
        kaon,
    )  # fmt: skip
    e, px, py, pz = kin.boost_to_cms(offsets, e_lab, px_lab, py_lab, pz_lab, beam.energy, beam.px, beam.py, beam.pz)
    starts, stops = offsets[:-1], offsets[1:]
    roe_starts = starts + has_kaon  # the kaon, if any, is the first object of its event

    kaon_p4 = np.zeros((len(kaon), 4))
    first = starts[has_kaon]
    kaon_p4[has_kaon] = np.stack([e[first], px[first], py[first], pz[first]], axis=1)
    roe_p4 = kin.four_momentum_sum(roe_starts, stops, e, px, py, pz)
    visible_lab = kin.four_momentum_sum(starts, stops, e_lab, px_lab, py_lab, pz_lab)

    columns = {
        **_kinematics(kaon_p4, roe_p4, visible_lab, beam),
        **_track_quantities(tracks, kaon),
        "roe_n_photons": np.diff(photons.offsets).astype(np.float64),
        "n_photons": np.diff(photons.offsets).astype(np.int64),
    }
    add_event_shape(
        columns,
        preselection,
        lambda m: _event_shape(starts[m], roe_starts[m], stops[m], px, py, pz, np.ascontiguousarray(kaon_p4[m, 1:])),
    )
    return columns


def add_event_shape(
    columns: dict[str, np.ndarray],
    preselection: Preselection | None,
    event_shape: Callable[[np.ndarray], dict[str, np.ndarray]],
) -> None:
    """Add the columns ``event_shape(mask)`` computes for the events in ``mask``; NaN elsewhere.

    ``mask`` selects the events passing ``preselection`` (all if None), judged
    on the cheap columns already in ``columns``.
    """
    n = len(columns["has_kaon"])
    mask = np.ones(n, dtype=bool) if preselection is None else list(preselection_steps(columns, preselection).values())[-1]
    for name, values in event_shape(mask).items():
        columns[name] = np.full(n, np.nan)
        columns[name][mask] = values


def _kinematics(kaon_p4: np.ndarray, roe_p4: np.ndarray, visible_lab: np.ndarray, beam: BeamColumns) -> dict[str, np.ndarray]:
    """Kaon, ROE and missing four-momentum quantities from per-event sums."""
    sqrt_s = beam.sqrt_s
    e_beam = 0.5 * sqrt_s
    has_kaon = kaon_p4[:, 0] > 0.0
    kaon_p = np.linalg.norm(kaon_p4[:, 1:], axis=1)
    roe_p = np.linalg.norm(roe_p4[:, 1:], axis=1)
    visible = roe_p4 + kaon_p4
    miss = -visible
    miss[:, 0] += sqrt_s  # the e+e- system is at rest in the CMS
    miss_p = np.linalg.norm(miss[:, 1:], axis=1)
    miss_lab = np.stack([beam.px, beam.py, beam.pz], axis=1) - visible_lab[:, 1:]
    cos_kaon_miss = np.sum(kaon_p4[:, 1:] * miss[:, 1:], axis=1)
    return {
        "q2_rec": np.where(has_kaon, kin.q2_rec(kaon_p4[:, 0], sqrt_s), 0.0),
        "kaon_cos_theta_cms": kin.cos_theta(*kaon_p4[:, 1:].T),
        "kaon_cos_miss": _safe_divide(cos_kaon_miss, kaon_p * miss_p),
        "roe_energy": roe_p4[:, 0],
        "roe_p": roe_p,
        "roe_cos_theta": kin.cos_theta(*roe_p4[:, 1:].T),
        "roe_mass": kin.invariant_mass(roe_p4),
        "roe_mbc": kin.beam_constrained_mass(e_beam, roe_p),
        "roe_delta_e": roe_p4[:, 0] - e_beam,
        "e_miss": miss[:, 0],
        "p_miss_cms": miss_p,
        "cos_theta_miss_cms": kin.cos_theta(*miss[:, 1:].T),
        "m2_miss": miss[:, 0] ** 2 - miss_p**2,
        "kaon_p_cms": kaon_p,
        "theta_miss": np.arctan2(np.hypot(miss_lab[:, 0], miss_lab[:, 1]), miss_lab[:, 2]),
        "e_visible_cms": visible[:, 0],
    }


def _event_shape(
    starts: np.ndarray,
    roe_starts: np.ndarray,
    stops: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    kaon_p3: np.ndarray,
) -> dict[str, np.ndarray]:
    """Thrust, Fox-Wolfram, sphericity, CLEO cones and KSFW of CMS momenta."""
    kaon_p = np.linalg.norm(kaon_p3, axis=1)
    thrust_all, _ = es.thrust(starts, stops, px, py, pz)
    thrust_roe, roe_axis = es.thrust(roe_starts, stops, px, py, pz)
    h_oo = es.fox_wolfram(roe_starts, stops, px, py, pz)
    h_so = kaon_p[:, None] * es.axis_legendre(roe_starts, stops, px, py, pz, kaon_p3)
    sph, apl = es.sphericity(starts, stops, px, py, pz)
    return shape_columns(
        thrust_all=thrust_all,
        thrust_roe=thrust_roe,
        roe_axis=roe_axis,
        kaon_p3=kaon_p3,
        h_oo=h_oo,
        h_so=h_so,
        sphericity=sph,
        aplanarity=apl,
        e_t=es.transverse_energy(starts, stops, px, py),
        cones=es.cleo_cones(roe_starts, stops, px, py, pz, kaon_p3),
    )


def shape_columns(
    *,
    thrust_all: np.ndarray,
    thrust_roe: np.ndarray,
    roe_axis: np.ndarray,
    kaon_p3: np.ndarray,
    h_oo: np.ndarray,
    h_so: np.ndarray,
    sphericity: np.ndarray,
    aplanarity: np.ndarray,
    e_t: np.ndarray,
    cones: np.ndarray,
) -> dict[str, np.ndarray]:
    """The event-shape feature columns from per-event moments, however these were computed.

    ``h_oo`` are the ROE Fox-Wolfram moments and ``h_so`` the kaon-ROE sums
    |p_K| sum |p_i| P_l(cos theta_Ki), both (n_events, FW_LMAX + 1).
    """
    kaon_p = np.linalg.norm(kaon_p3, axis=1)
    # Fox-Wolfram of all objects from the ROE moments plus the kaon-ROE cross terms,
    # which are the KSFW signal-other sums: H_l(all) = H_l(ROE) + 2 H^so_l + |p_K|^2
    h_all = h_oo + 2.0 * h_so + kaon_p[:, None] ** 2
    r_all = es.normalise(h_all)
    ksfw_so = _safe_divide(h_so, h_all[:, :1])
    ksfw_oo = _safe_divide(h_oo, h_all[:, :1])
    return {
        "thrust": thrust_all,
        "thrust_roe": thrust_roe,
        "cos_theta_thrust": np.abs(roe_axis[:, 2]),
        "cos_thrust_kaon_roe": np.abs(_safe_divide(np.sum(roe_axis * kaon_p3, axis=1), kaon_p)),
        **{f"r{ell}": r_all[:, ell] for ell in range(1, es.FW_LMAX + 1)},
        "roe_r2": es.normalise(h_oo)[:, 2],
        "sphericity": sphericity,
        "aplanarity": aplanarity,
        "e_t": e_t,
        **{f"cleo_cone_{k + 1}": cones[:, k] for k in range(es.N_CLEO_CONES)},
        **{f"ksfw_hso_{ell}": ksfw_so[:, ell] for ell in range(es.FW_LMAX + 1)},
        **{f"ksfw_hoo_{ell}": ksfw_oo[:, ell] for ell in range(1, es.FW_LMAX + 1)},
    }


def _track_quantities(tracks: TrackColumns, kaon: np.ndarray) -> dict[str, np.ndarray]:
    """Kaon-track attributes, vertex proxies from dr/dz and track counts."""
    has_kaon = kaon >= 0
    n_tracks = np.diff(tracks.offsets)
    # clip keeps the gather in range for events without a kaon (masked right after)
    kaon_row = np.minimum(tracks.offsets[:-1] + np.maximum(kaon, 0), max(len(tracks.px) - 1, 0))

    def of_kaon(values: np.ndarray) -> np.ndarray:
        return np.where(has_kaon, values[kaon_row], 0) if len(values) else np.zeros(len(kaon))

    roe_charge, roe_dz_mean, roe_dz_spread = kin.roe_track_stats(tracks.offsets, tracks.charge.astype(np.float64), tracks.dz, kaon)
    kaon_dz = of_kaon(tracks.dz)
    return {
        "kaon_dr": np.abs(of_kaon(tracks.dr)).astype(np.float64),
        "kaon_dz": np.abs(kaon_dz).astype(np.float64),
        "kaon_dz_roe": np.where(has_kaon & (n_tracks > 1), np.abs(kaon_dz - roe_dz_mean), 0.0),
        "roe_dz_spread": roe_dz_spread,
        "roe_charge": roe_charge,
        "roe_n_tracks": (n_tracks - has_kaon).astype(np.float64),
        "has_kaon": has_kaon,
        "kaon_index": kaon,
        "kaon_charge": of_kaon(tracks.charge).astype(np.int64),
        "kaon_pt": np.hypot(of_kaon(tracks.px), of_kaon(tracks.py)).astype(np.float64),
        "kaon_kaon_id": of_kaon(tracks.kaon_id).astype(np.float64),
        "n_tracks": n_tracks.astype(np.int64),
    }


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (the undefined cases: no kaon, no ROE, no momentum)."""
    num, den = np.broadcast_arrays(num, den)
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0.0)


def markdown_table() -> str:
    """Features and columns as a Markdown table, for the README."""
    rows = ["| name | kind | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | feature | {doc} |" for name, doc in FEATURE_DOCS.items()]
    rows += [f"| `{name}` | column | {doc} |" for name, doc in COLUMN_DOCS.items()]
    return "\n".join(rows)
