"""(c) The same selection and histograms the pandas way.

What an analyst without awkward or numba writes: uproot -> pandas (flat
branches with ``library="pd"``; jagged ones as per-event arrays exploded into
long object tables, since uproot's jagged pandas output needs awkward-pandas),
boolean-mask cleanup, ``groupby`` sums per event, a self-merge for the
Fox-Wolfram pairs, and a per-event ``groupby.apply`` for thrust (an
optimisation problem with no groupby form). Like a careful analyst it
computes the cheap preselection first and the event shape only for the
events that pass. Cuts, BDT scoring and filling then use the same models and
histogram booking as the processor, so the outputs are comparable bin by bin.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import uproot

from benchmarks import awkward_way
from benchmarks.chain import PHOTON_FIELDS, TRACK_FIELDS, Chunk
from kvv import bdt, features, histograms, selection
from kvv.config import AnalysisConfig, Sample
from kvv.eventformat import PHOTONS, TRACKS
from kvv.physics import eventshape as es
from kvv.physics.columns import BeamColumns
from kvv.physics.kinematics import M_KAON, M_PION
from processors.knunu import KnunuProcessor

EVENT_BRANCHES = ["__event__", "beamE", "beamPx", "beamPy", "beamPz"]


def read_chunk(chunk: Chunk) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(events, tracks, photons); object tables are indexed by the event's row in the chunk."""
    with uproot.open(chunk.path) as f:
        tree = f["events"]
        span = dict(entry_start=chunk.start, entry_stop=chunk.stop)
        events = tree.arrays(EVENT_BRANCHES, library="pd", **span).reset_index(drop=True)
        tracks = _long_table(tree, TRACKS.prefix, TRACK_FIELDS, span)
        photons = _long_table(tree, PHOTONS.prefix, PHOTON_FIELDS, span)
    return events, tracks, photons


def _long_table(tree, prefix: str, fields: tuple[str, ...], span: dict) -> pd.DataFrame:
    """One row per object: per-event arrays exploded, empty events dropped."""
    arrays = tree.arrays([f"{prefix}_{f}" for f in fields], library="np", **span)
    wide = pd.DataFrame({f: arrays[f"{prefix}_{f}"] for f in fields})
    long = wide.explode(list(fields)).dropna(subset=[fields[0]])
    return long.astype({f: np.float64 for f in fields})


def _clean(tracks: pd.DataFrame, photons: pd.DataFrame, cfg: AnalysisConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    t, g = cfg.cleanup.tracks, cfg.cleanup.photons
    pt = np.sqrt(tracks.px**2 + tracks.py**2)
    theta = np.arctan2(pt, tracks.pz)
    energy = np.sqrt(tracks.px**2 + tracks.py**2 + tracks.pz**2 + selection.PION_MASS**2)
    good = (
        (pt > t.pt_min) & (theta > t.theta_min) & (theta < t.theta_max)
        & (tracks.dr.abs() < t.dr_max) & (tracks.dz.abs() < t.dz_max) & (energy < t.energy_max)
    )  # fmt: skip
    tracks = tracks[good].copy()
    # each object's position in its event after cleanup, as in the jagged arrays
    tracks["pos"] = tracks.groupby(level=0).cumcount()
    good_photon = (photons.E > g.energy_min) & (photons.E < g.energy_max) & (photons.theta > g.theta_min) & (photons.theta < g.theta_max)
    return tracks, photons[good_photon]


def _kaon_index(tracks: pd.DataFrame, n_events: int, cfg: AnalysisConfig) -> np.ndarray:
    """Position of the highest-pT eligible track per event (first on ties), -1 if none."""
    cut = -np.inf if cfg.kaon.kaon_id_cut is None else float(cfg.kaon.kaon_id_cut)
    eligible = tracks[(tracks.nPXDHits >= cfg.kaon.min_pxd_hits) & (tracks.kaonID > cut)]
    kaon = np.full(n_events, -1, dtype=np.int64)
    if len(eligible):
        pt2 = pd.Series((eligible.px * eligible.px + eligible.py * eligible.py).to_numpy())
        best = pt2.groupby(eligible.index.to_numpy()).idxmax()  # row of the first maximum per event
        kaon[best.index.to_numpy()] = eligible.pos.to_numpy()[best.to_numpy()]
    return kaon


def _objects(tracks: pd.DataFrame, photons: pd.DataFrame, kaon: np.ndarray, events: pd.DataFrame) -> pd.DataFrame:
    """CMS and lab four-vectors of kaon, other tracks and photons, sorted kaon-first per event."""
    is_kaon = tracks.pos.to_numpy() == kaon[tracks.index.to_numpy()]
    mass = np.where(is_kaon, M_KAON, M_PION)
    trk = pd.DataFrame({"px": tracks.px, "py": tracks.py, "pz": tracks.pz, "order": np.where(is_kaon, -1, tracks.pos)}, index=tracks.index)
    trk["e"] = np.sqrt(trk.px**2 + trk.py**2 + trk.pz**2 + mass**2)
    sin_theta = np.sin(photons.theta)
    gam = pd.DataFrame(
        {
            "px": photons.E * sin_theta * np.cos(photons.phi),
            "py": photons.E * sin_theta * np.sin(photons.phi),
            "pz": photons.E * np.cos(photons.theta),
            "order": 1_000 + photons.groupby(level=0).cumcount(),
            "e": photons.E,
        },
        index=photons.index,
    )
    obj = pd.concat([trk, gam]).rename_axis("entry").sort_values(["entry", "order"], kind="stable")
    obj["is_kaon"] = obj.order == -1
    beam = events.loc[obj.index]
    bx, by, bz = (beam[c].to_numpy() / beam.beamE.to_numpy() for c in ("beamPx", "beamPy", "beamPz"))
    gamma = 1.0 / np.sqrt(1.0 - (bx * bx + by * by + bz * bz))
    bp = bx * obj.px + by * obj.py + bz * obj.pz
    shift = gamma * gamma / (gamma + 1.0) * bp - gamma * obj.e
    obj["e_cms"], obj["px_cms"] = gamma * (obj.e - bp), obj.px + shift * bx
    obj["py_cms"], obj["pz_cms"] = obj.py + shift * by, obj.pz + shift * bz
    return obj


def _per_event(series: pd.Series, n_events: int, fill: float = 0.0) -> np.ndarray:
    """A groupby result as a full per-event array (events without entries get ``fill``)."""
    return series.reindex(np.arange(n_events), fill_value=fill).to_numpy(dtype=np.float64)


def _sum4(obj: pd.DataFrame, n_events: int, cols: tuple[str, ...]) -> np.ndarray:
    sums = obj[list(cols)].groupby(level=0).sum()
    return np.stack([_per_event(sums[c], n_events) for c in cols], axis=1)


CMS = ("e_cms", "px_cms", "py_cms", "pz_cms")


def preselection_columns(
    events: pd.DataFrame, tracks: pd.DataFrame, photons: pd.DataFrame, cfg: AnalysisConfig
) -> tuple[dict, pd.DataFrame]:
    """Cheap per-event columns (kinematics, track quantities) and the object table."""
    n = len(events)
    kaon = _kaon_index(tracks, n, cfg)
    obj = _objects(tracks, photons, kaon, events)
    beam = BeamColumns(*(events[c].to_numpy(dtype=np.float64) for c in ("beamE", "beamPx", "beamPy", "beamPz")))
    kaon_p4 = _sum4(obj[obj.is_kaon], n, CMS)
    roe_p4 = _sum4(obj[~obj.is_kaon], n, CMS)
    visible_lab = _sum4(obj, n, ("e", "px", "py", "pz"))
    columns = features._kinematics(kaon_p4, roe_p4, visible_lab, beam)
    columns.update(_track_quantities(tracks, kaon, n))
    n_photons = photons.groupby(level=0).size()
    columns["roe_n_photons"] = _per_event(n_photons, n)
    columns["n_photons"] = columns["roe_n_photons"].astype(np.int64)
    columns["__event__"] = events["__event__"].to_numpy(dtype=np.int64)
    columns["_kaon_p3"] = kaon_p4[:, 1:]
    return columns, obj


def _track_quantities(tracks: pd.DataFrame, kaon: np.ndarray, n: int) -> dict[str, np.ndarray]:
    is_kaon = tracks.pos.to_numpy() == kaon[tracks.index.to_numpy()]
    k = tracks[is_kaon]
    roe = tracks[~is_kaon]
    has_kaon = kaon >= 0
    n_tracks = _per_event(tracks.groupby(level=0).size(), n).astype(np.int64)
    dz = roe.dz.groupby(level=0)
    mean = _per_event(dz.mean(), n)
    kaon_dz = _per_event(k.dz, n)
    return {
        "kaon_dr": np.abs(_per_event(k.dr, n)),
        "kaon_dz": np.abs(kaon_dz),
        "kaon_dz_roe": np.where(has_kaon & (n_tracks > 1), np.abs(kaon_dz - mean), 0.0),
        "roe_dz_spread": _per_event(dz.std(ddof=0), n),
        "roe_charge": _per_event(roe.charge.groupby(level=0).sum(), n),
        "roe_n_tracks": (n_tracks - has_kaon).astype(np.float64),
        "has_kaon": has_kaon,
        "kaon_index": kaon,
        "kaon_charge": _per_event(k.charge, n).astype(np.int64),
        "kaon_pt": np.hypot(_per_event(k.px, n), _per_event(k.py, n)),
        "kaon_kaon_id": _per_event(k.kaonID, n),
        "n_tracks": n_tracks,
    }


# --------------------------------------------------------------------------- event shape (preselected events)


def _thrust_one(p: np.ndarray) -> np.ndarray:
    """Thrust vector of one event's (n, 3) momenta, the kernels' algorithm."""
    if len(p) <= es.EXACT_THRUST_MAX_N:
        return awkward_way.thrust_exact(p[None])[0]
    return awkward_way.thrust_iterative(p[None], np.array([len(p)]))[0]


def _thrust(obj: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = obj[["px_cms", "py_cms", "pz_cms"]]
    vec = np.zeros((n, 3))
    if len(p):
        per_event = p.groupby(level=0).apply(lambda g: _thrust_one(g.to_numpy()))
        vec[per_event.index.to_numpy()] = np.stack(per_event.to_numpy())
    p_sum = _per_event(np.sqrt(p.px_cms**2 + p.py_cms**2 + p.pz_cms**2).groupby(level=0).sum(), n)
    norm = np.copysign(np.linalg.norm(vec, axis=1), vec[:, 2])
    ok = (p_sum > 0.0) & (norm != 0.0)
    safe = np.where(ok, norm, 1.0)
    return np.where(ok, np.abs(norm) / np.where(ok, p_sum, 1.0), 0.0), np.where(ok[:, None], vec / safe[:, None], 0.0)


def _with_unit(obj: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"p": np.sqrt(obj.px_cms**2 + obj.py_cms**2 + obj.pz_cms**2)}, index=obj.index)
    inv = np.where(out.p > 0.0, 1.0 / out.p.where(out.p > 0.0, 1.0), 0.0)
    out["ux"], out["uy"], out["uz"] = obj.px_cms * inv, obj.py_cms * inv, obj.pz_cms * inv
    return out


def _fox_wolfram(roe: pd.DataFrame, n: int) -> np.ndarray:
    """H_l from a self-merge of each event's objects: diagonal plus twice the pairs j < k."""
    u = _with_unit(roe).rename_axis("entry").reset_index()
    u["pos"] = u.groupby("entry").cumcount()
    pairs = u.merge(u, on="entry", suffixes=("_a", "_b"))
    pairs = pairs[pairs.pos_a < pairs.pos_b]
    c = pairs.ux_a * pairs.ux_b + pairs.uy_a * pairs.uy_b + pairs.uz_a * pairs.uz_b
    w = pairs.p_a * pairs.p_b
    sums = pd.DataFrame({ell: w * pl for ell, pl in enumerate(awkward_way._legendre(c))}).groupby(pairs.entry).sum()
    diagonal = _per_event((u.p * u.p).groupby(u.entry).sum(), n)
    return np.stack([diagonal + 2.0 * _per_event(sums[ell], n) for ell in range(es.FW_LMAX + 1)], axis=1)


def _to_kaon_axis(roe: pd.DataFrame, kaon_p3: np.ndarray) -> pd.DataFrame:
    """|p| and cos to the kaon axis of ROE objects with p > 0 in events with a kaon."""
    u = _with_unit(roe)
    axis = kaon_p3[roe.index.to_numpy()]
    a_norm = np.linalg.norm(axis, axis=1)
    keep = (u.p > 0.0) & (a_norm > 0.0)
    dot = roe.px_cms * axis[:, 0] + roe.py_cms * axis[:, 1] + roe.pz_cms * axis[:, 2]
    return pd.DataFrame({"p": u.p, "c": dot / (u.p * a_norm)})[keep]


def _cones_and_legendre(roe: pd.DataFrame, kaon_p3: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    t = _to_kaon_axis(roe, kaon_p3)
    h_so = pd.DataFrame({ell: t.p * pl for ell, pl in enumerate(awkward_way._legendre(t.c))}).groupby(level=0).sum()
    cone = (t.c.abs().to_numpy()[:, None] <= es._CONE_EDGES[None, :]).sum(axis=1)
    cones = t.p.groupby([t.index, cone]).sum().unstack(fill_value=0.0)
    return (
        np.stack([_per_event(cones[k], n) if k in cones else np.zeros(n) for k in range(es.N_CLEO_CONES)], axis=1),
        np.stack([_per_event(h_so[ell], n) for ell in range(es.FW_LMAX + 1)], axis=1),
    )


def _sphericity(obj: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = obj.px_cms, obj.py_cms, obj.pz_cms
    t = pd.DataFrame({"xx": x * x, "yy": y * y, "zz": z * z, "xy": x * y, "xz": x * z, "yz": y * z}).groupby(level=0).sum()
    t = {k: _per_event(t[k], n) for k in t}
    norm = t["xx"] + t["yy"] + t["zz"]
    safe = np.where(norm > 0.0, norm, 1.0)
    _, l2, l3 = awkward_way.symmetric_eigenvalues(*(t[k] / safe for k in ("xx", "yy", "zz", "xy", "xz", "yz")))
    ok = norm > 0.0
    return np.where(ok, 1.5 * np.maximum(l2 + l3, 0.0), 0.0), np.where(ok, 1.5 * np.maximum(l3, 0.0), 0.0)


def event_shape(obj: pd.DataFrame, kaon_p3: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The event-shape features (as :func:`kvv.features._event_shape`) from the object table."""
    roe = obj[~obj.is_kaon]
    kaon_p = np.linalg.norm(kaon_p3, axis=1)
    thrust_all, _ = _thrust(obj, n)
    thrust_roe, roe_axis = _thrust(roe, n)
    cones, legendre = _cones_and_legendre(roe, kaon_p3, n)
    sph, apl = _sphericity(obj, n)
    e_t = np.sqrt(obj.px_cms**2 + obj.py_cms**2).groupby(level=0).sum()
    return features.shape_columns(
        thrust_all=thrust_all,
        thrust_roe=thrust_roe,
        roe_axis=roe_axis,
        kaon_p3=kaon_p3,
        h_oo=_fox_wolfram(roe, n),
        h_so=kaon_p[:, None] * legendre,
        sphericity=sph,
        aplanarity=apl,
        e_t=_per_event(e_t, n),
        cones=cones,
    )


# --------------------------------------------------------------------------- the chain


def process_chunk(proc: KnunuProcessor, chunk: Chunk) -> dict:
    """Read, clean, preselect, compute features of survivors, score and fill one chunk."""
    cfg = proc.cfg
    sample = cfg.sample(chunk.dataset)
    events, tracks, photons = read_chunk(chunk)
    tracks, photons = _clean(tracks, photons, cfg)
    columns, obj = preselection_columns(events, tracks, photons, cfg)
    n = len(events)
    weights = np.full(n, float(chunk.weight))
    steps = selection.preselection_steps(columns, cfg.preselection)
    cutflow = {"entries read": n}
    cutflow.update({step: selection.cutflow_row(mask) for step, mask in steps.items()})
    passed = next(reversed(steps.values()))
    # event shape only for the survivors: renumber them 0..m-1
    rows = np.flatnonzero(passed)
    obj = obj[passed[obj.index.to_numpy()]]
    obj.index = np.searchsorted(rows, obj.index.to_numpy())
    kaon_p3 = columns.pop("_kaon_p3")[rows]
    selected = {name: values[rows] for name, values in columns.items()}
    selected.update(event_shape(obj, kaon_p3, len(rows)))
    models = bdt.load_models_cached(proc.model_dir, bdt.stage_features(cfg.bdt))
    selected.update(bdt.score_chunk(models, selected, selected["__event__"]))
    out = {"cutflow": {sample.name: cutflow}, "entries": {sample.name: np.array([n], dtype=np.int64)}}
    out.update(fill(cfg, sample, selected, weights[rows], float(chunk.weight)))
    return out


def fill(cfg: AnalysisConfig, sample: Sample, columns: dict[str, np.ndarray], weights: np.ndarray, scale: float) -> dict:
    """Controls and templates (exact sums): BDTc weight in the continuum nominal, unweighted as its down variation."""
    booked = histograms.book(cfg)
    nominal = weights
    if not sample.is_data and sample.template in cfg.fit.continuum_templates and "continuum_weight" in columns:
        nominal = weights * columns["continuum_weight"]
    variations = {histograms.NOMINAL: nominal}
    for v in cfg.variations:
        if v.kind == "continuum_reweighting":
            variations[f"{v.name}_up"] = nominal
            variations[f"{v.name}_down"] = weights if not v.samples or sample.name in v.samples else nominal
    for control in cfg.controls:
        if control.variable in columns:
            booked["controls"][control.variable].fill(
                sample.name, **{control.variable: columns[control.variable]}, weight=nominal, scale=scale
            )
    for region in cfg.regions:
        if region.resonance != sample.resonance:
            continue
        mask = selection.interval_mask(columns, region.cuts)
        in_region = {a.variable: columns[a.variable][mask] for a in region.axes}
        in_weights = {variation: w[mask] for variation, w in variations.items()}
        histograms.fill_templates(booked["templates"][region.name], region, sample.name, in_weights, in_region, scale)
    return {"templates": booked["templates"], "controls": booked["controls"]}
