"""(d) kvv's features with plain awkward-array code instead of the numba kernels.

Same algorithms as :mod:`kvv.physics.kinematics` and :mod:`kvv.physics.eventshape`, written as
an awkward user would: jagged broadcasting for boosts and ROE sums,
``ak.combinations`` for Fox-Wolfram pairs, and for thrust the same exact
enumeration (up to ``EXACT_THRUST_MAX_N`` objects) and seeded iteration on
regular blocks of events with equal object counts. Per-event glue that was already plain numpy
in :mod:`kvv.features` is reused as is. :func:`event_features` is a drop-in for
:func:`kvv.features.event_features`, so the processor itself runs with it. Sums run in the kernels' order where
awkward allows it, so results agree with the kernels to rounding (~1e-15).
"""

from __future__ import annotations

import itertools

import awkward as ak
import numpy as np

from kvv import features
from kvv.config import Preselection
from kvv.physics import eventshape as es
from kvv.physics.columns import BeamColumns, PhotonColumns, TrackColumns
from kvv.physics.kinematics import M_KAON, M_PION

THRUST_BLOCK = 4096  # events per block: bounds the (events, 2^(n-1), 3) temporaries of exact thrust


def _f64(a: ak.Array) -> ak.Array:
    return ak.values_astype(a, np.float64)


def _np(a: ak.Array) -> np.ndarray:
    return ak.to_numpy(a)


def select_kaon(tracks: ak.Array, min_pxd_hits: int, kaon_id_cut: float) -> np.ndarray:
    """Index of the highest-pT eligible track per event, -1 if none (first on ties, as ak.argmax)."""
    px, py = _f64(tracks.px), _f64(tracks.py)
    eligible = (tracks.nPXDHits >= min_pxd_hits) & (_f64(tracks.kaonID) > kaon_id_cut)
    best = ak.argmax(ak.where(eligible, px * px + py * py, -np.inf), axis=1)
    return np.where(_np(ak.any(eligible, axis=1)), _np(ak.fill_none(best, -1)), -1).astype(np.int64)


def kaon_first_objects(tracks: ak.Array, photons: ak.Array, kaon: np.ndarray) -> ak.Array:
    """Lab four-vectors per event: kaon (M_K), other tracks (M_pi), photons (massless)."""
    is_kaon = ak.local_index(tracks.px) == kaon

    def track_p4(sel: ak.Array, mass: float) -> ak.Array:
        px, py, pz = _f64(tracks.px[sel]), _f64(tracks.py[sel]), _f64(tracks.pz[sel])
        return ak.zip({"e": np.sqrt(px**2 + py**2 + pz**2 + mass**2), "px": px, "py": py, "pz": pz})

    e, theta, phi = _f64(photons.E), _f64(photons.theta), _f64(photons.phi)
    sin_theta = np.sin(theta)
    gammas = ak.zip({"e": e, "px": e * sin_theta * np.cos(phi), "py": e * sin_theta * np.sin(phi), "pz": e * np.cos(theta)})
    return ak.concatenate([track_p4(is_kaon, M_KAON), track_p4(~is_kaon, M_PION), gammas], axis=1)


def boost_to_cms(p4: ak.Array, beam: BeamColumns) -> ak.Array:
    """Pure boost by -beta of each event's beam, broadcast over its objects."""
    bx, by, bz = beam.px / beam.energy, beam.py / beam.energy, beam.pz / beam.energy
    gamma = 1.0 / np.sqrt(1.0 - (bx * bx + by * by + bz * bz))
    g2 = gamma * gamma / (gamma + 1.0)
    bp = bx * p4.px + by * p4.py + bz * p4.pz
    shift = g2 * bp - gamma * p4.e
    return ak.zip({"e": gamma * (p4.e - bp), "px": p4.px + shift * bx, "py": p4.py + shift * by, "pz": p4.pz + shift * bz})


def four_momentum_sum(p4: ak.Array) -> np.ndarray:
    return np.stack([_np(ak.sum(p4[c], axis=1)) for c in ("e", "px", "py", "pz")], axis=1)


def _momentum(p4: ak.Array) -> ak.Array:
    return np.sqrt(p4.px * p4.px + p4.py * p4.py + p4.pz * p4.pz)


# --------------------------------------------------------------------------- event shape


def _legendre(c):
    """P_0..P_4 at c, the kernels' explicit polynomials."""
    c2 = c * c
    return 1.0, c, 0.5 * (3.0 * c2 - 1.0), 0.5 * c * (5.0 * c2 - 3.0), 0.125 * ((35.0 * c2 - 30.0) * c2 + 3.0)


def fox_wolfram(p4: ak.Array) -> np.ndarray:
    """H_l over ordered pairs (i = j included): diagonal sum |p|^2 plus twice the ak.combinations pairs."""
    p = _momentum(p4)
    inv = ak.where(p > 0.0, 1.0 / ak.where(p > 0.0, p, 1.0), 0.0)
    obj = ak.zip({"p": p, "ux": p4.px * inv, "uy": p4.py * inv, "uz": p4.pz * inv})
    a, b = ak.unzip(ak.combinations(obj, 2, axis=1))
    c = a.ux * b.ux + a.uy * b.uy + a.uz * b.uz
    diagonal = _np(ak.sum(p * p, axis=1))
    return np.stack([diagonal + 2.0 * _np(ak.sum(a.p * b.p * pl, axis=1)) for pl in _legendre(c)], axis=1)


def _cos_to_axis(p4: ak.Array, axis: np.ndarray) -> tuple[ak.Array, ak.Array]:
    """(|p|, cos of the angle to the event's axis) of objects with p > 0 in events with a non-null axis."""
    a_norm = np.linalg.norm(axis, axis=1)
    p = _momentum(p4)
    keep = (p > 0.0) & (a_norm > 0.0)
    p4, p = p4[keep], p[keep]
    dot = p4.px * axis[:, 0] + p4.py * axis[:, 1] + p4.pz * axis[:, 2]
    return p, dot / (p * a_norm)


def axis_legendre(p4: ak.Array, axis: np.ndarray) -> np.ndarray:
    p, c = _cos_to_axis(p4, axis)
    return np.stack([_np(ak.sum(p * pl, axis=1)) for pl in _legendre(c)], axis=1)


def cleo_cones(p4: ak.Array, axis: np.ndarray) -> np.ndarray:
    p, c = _cos_to_axis(p4, axis)
    c = abs(c)
    cone = sum(ak.values_astype(c <= edge, np.int64) for edge in es._CONE_EDGES)  # edges fall: count = cone
    return np.stack([_np(ak.sum(ak.where(cone == k, p, 0.0), axis=1)) for k in range(es.N_CLEO_CONES)], axis=1)


def symmetric_eigenvalues(a00, a11, a22, a01, a02, a12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form eigenvalues (descending) of symmetric 3x3 matrices, vectorised over events."""
    q = (a00 + a11 + a22) / 3.0
    p2 = (a00 - q) ** 2 + (a11 - q) ** 2 + (a22 - q) ** 2 + 2.0 * (a01 * a01 + a02 * a02 + a12 * a12)
    p = np.sqrt(np.maximum(p2, 0.0) / 6.0)
    safe = np.where(p > 0.0, p, 1.0)
    b00, b11, b22, b01, b02, b12 = ((a00 - q) / safe, (a11 - q) / safe, (a22 - q) / safe, a01 / safe, a02 / safe, a12 / safe)
    half_det = 0.5 * (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02))
    phi = np.arccos(np.clip(half_det, -1.0, 1.0)) / 3.0
    l1 = np.where(p2 > 0.0, q + 2.0 * p * np.cos(phi), q)
    l3 = np.where(p2 > 0.0, q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0), q)
    return l1, np.where(p2 > 0.0, 3.0 * q - l1 - l3, q), l3


def sphericity(p4: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    px, py, pz = p4.px, p4.py, p4.pz
    t = {k: _np(ak.sum(x * y, axis=1)) for k, x, y in
         (("xx", px, px), ("yy", py, py), ("zz", pz, pz), ("xy", px, py), ("xz", px, pz), ("yz", py, pz))}  # fmt: skip
    norm = t["xx"] + t["yy"] + t["zz"]
    safe = np.where(norm > 0.0, norm, 1.0)
    _, l2, l3 = symmetric_eigenvalues(*(t[k] / safe for k in ("xx", "yy", "zz", "xy", "xz", "yz")))
    ok = norm > 0.0
    return np.where(ok, 1.5 * np.maximum(l2 + l3, 0.0), 0.0), np.where(ok, 1.5 * np.maximum(l3, 0.0), 0.0)


# --------------------------------------------------------------------------- thrust


def _seqsum(x: np.ndarray, axis: int) -> np.ndarray:
    """Sum in index order (as a kernel's loop): cumsum is sequential, np.sum is pairwise."""
    return np.take(np.cumsum(x, axis=axis), -1, axis=axis)


def _gray_signs(n: int) -> np.ndarray:
    """All 2^(n-1) sign vectors with object 0 fixed to +1, shape (2^(n-1), n)."""
    return np.array([(1.0, *s) for s in itertools.product((1.0, -1.0), repeat=n - 1)])


def thrust_exact(p: np.ndarray) -> np.ndarray:
    """max_s |sum s_i p_i| over sign vectors for a block of events with n objects, p (events, n, 3)."""
    v = np.einsum("sn,enk->esk", _gray_signs(p.shape[1]), p)
    best = np.argmax(np.einsum("esk,esk->es", v, v), axis=1)
    return v[np.arange(len(p)), best]


def _fixed_point(p: np.ndarray, mag: np.ndarray, n: np.ndarray, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Iterate n <- sum sign(p.n) p (plus the best single flip at a fixed point) until stable.

    Returns (v, converged) per event.
    """
    found = np.zeros_like(n)
    done = np.zeros(len(p), dtype=bool)
    for step in range(int(limit.max())):
        live = ~done & (step < limit)
        if not live.any():
            break
        pl, nl = p[live], n[live]
        sign = np.copysign(1.0, np.einsum("enk,ek->en", pl, nl))
        v = _seqsum(sign[..., None] * pl, axis=1)
        fixed = np.all(v == nl, axis=1)
        gain = mag[live] ** 2 - np.abs(np.einsum("enk,ek->en", pl, v))
        flip = np.argmax(gain, axis=1)
        can_flip = fixed & (gain[np.arange(len(pl)), flip] > 0.0)
        pf = pl[np.arange(len(pl)), flip]
        v = np.where(can_flip[:, None], v - np.copysign(2.0, np.sum(pf * v, axis=1))[:, None] * pf, v)
        rows = np.flatnonzero(live)
        stop = fixed & ~can_flip
        found[rows[stop]] = v[stop]
        done[rows[stop]] = True
        n[rows[~stop]] = v[~stop]
    return found, done


def thrust_iterative(p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The kernels' seeded iteration from the sign combinations of the THRUST_SEEDS hardest momenta."""
    mag = np.sqrt(np.sum(p * p, axis=2))
    seeds = np.argsort(-mag, axis=1, kind="stable")[:, : es.THRUST_SEEDS]
    hard = np.take_along_axis(p, seeds[..., None], axis=1)
    best_v, best_v2 = np.zeros((len(p), 3)), np.full(len(p), -1.0)
    for signs in _gray_signs(es.THRUST_SEEDS)[np.argsort(_combo_order())]:
        start = _seqsum(signs[None, :, None] * hard, axis=1)
        v, ok = _fixed_point(p, mag, start, 4 * counts)
        v2 = np.sum(v * v, axis=1)
        better = ok & (v2 > best_v2)
        best_v[better], best_v2[better] = v[better], v2[better]
    return best_v


def _combo_order() -> np.ndarray:
    """Index of each row of _gray_signs(THRUST_SEEDS) in the kernels' seed order (bit s-1 of combo: seed s negative)."""
    return np.array([sum(1 << (s - 1) for s in range(1, es.THRUST_SEEDS) if row[s] < 0) for row in _gray_signs(es.THRUST_SEEDS)])


def thrust(p4: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Thrust value and axis (a_z >= 0): exact up to EXACT_THRUST_MAX_N objects, seeded iteration beyond."""
    counts = _np(ak.num(p4.px, axis=1))
    p_sum = _np(ak.sum(_momentum(p4), axis=1))
    vec = np.zeros((len(counts), 3))
    for n in np.unique(counts[counts > 0]):
        rows = np.flatnonzero(counts == n)
        for block in np.array_split(rows, max(1, len(rows) // THRUST_BLOCK)):
            sub = p4[block]
            dense = np.stack([_np(ak.to_regular(sub[c], axis=1)) for c in ("px", "py", "pz")], axis=2)
            vec[block] = thrust_exact(dense) if n <= es.EXACT_THRUST_MAX_N else thrust_iterative(dense, counts[block])
    norm = np.copysign(np.linalg.norm(vec, axis=1), vec[:, 2])
    ok = (p_sum > 0.0) & (norm != 0.0)
    safe = np.where(ok, norm, 1.0)
    return np.where(ok, np.abs(norm) / np.where(ok, p_sum, 1.0), 0.0), np.where(ok[:, None], vec / safe[:, None], 0.0)


# --------------------------------------------------------------------------- the feature table


def roe_track_stats(tracks: ak.Array, kaon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charge sum, mean dz and two-pass dz spread of the non-kaon tracks."""
    roe = tracks[ak.local_index(tracks.px) != kaon]
    dz = _f64(roe.dz)
    n = _np(ak.num(dz, axis=1))
    safe_n = np.maximum(n, 1)
    mean = np.where(n > 0, _np(ak.sum(dz, axis=1)) / safe_n, 0.0)
    spread = np.where(n > 0, np.sqrt(_np(ak.sum((dz - mean) ** 2, axis=1)) / safe_n), 0.0)
    return _np(ak.sum(_f64(roe.charge), axis=1)), mean, spread


def _event_shape(cms: ak.Array, roe: ak.Array, kaon_p3: np.ndarray) -> dict[str, np.ndarray]:
    kaon_p = np.linalg.norm(kaon_p3, axis=1)
    thrust_all, _ = thrust(cms)
    thrust_roe, roe_axis = thrust(roe)
    sph, apl = sphericity(cms)
    return features.shape_columns(
        thrust_all=thrust_all,
        thrust_roe=thrust_roe,
        roe_axis=roe_axis,
        kaon_p3=kaon_p3,
        h_oo=fox_wolfram(roe),
        h_so=kaon_p[:, None] * axis_legendre(roe, kaon_p3),
        sphericity=sph,
        aplanarity=apl,
        e_t=_np(ak.sum(np.sqrt(cms.px * cms.px + cms.py * cms.py), axis=1)),
        cones=cleo_cones(roe, kaon_p3),
    )


def _track_quantities(tracks: ak.Array, kaon: np.ndarray) -> dict[str, np.ndarray]:
    has_kaon = kaon >= 0
    n_tracks = _np(ak.num(tracks.px, axis=1))
    kt = ak.firsts(tracks[ak.local_index(tracks.px) == kaon])

    def of_kaon(field: str) -> np.ndarray:
        return np.where(has_kaon, _np(ak.fill_none(_f64(kt[field]), 0.0)), 0.0)

    roe_charge, roe_dz_mean, roe_dz_spread = roe_track_stats(tracks, kaon)
    kaon_dz = of_kaon("dz")
    return {
        "kaon_dr": np.abs(of_kaon("dr")),
        "kaon_dz": np.abs(kaon_dz),
        "kaon_dz_roe": np.where(has_kaon & (n_tracks > 1), np.abs(kaon_dz - roe_dz_mean), 0.0),
        "roe_dz_spread": roe_dz_spread,
        "roe_charge": roe_charge,
        "roe_n_tracks": (n_tracks - has_kaon).astype(np.float64),
        "has_kaon": has_kaon,
        "kaon_index": kaon,
        "kaon_charge": of_kaon("charge").astype(np.int64),
        "kaon_pt": np.hypot(of_kaon("px"), of_kaon("py")),
        "kaon_kaon_id": of_kaon("kaonID"),
        "n_tracks": n_tracks.astype(np.int64),
    }


def jagged(tracks: TrackColumns, photons: PhotonColumns) -> tuple[ak.Array, ak.Array]:
    """The processor's cleaned flat columns as jagged awkward collections (no copy of the content)."""
    t_counts, p_counts = np.diff(tracks.offsets), np.diff(photons.offsets)
    t = {"px": tracks.px, "py": tracks.py, "pz": tracks.pz, "charge": tracks.charge, "dr": tracks.dr, "dz": tracks.dz,
         "nPXDHits": tracks.n_pxd_hits, "kaonID": tracks.kaon_id}  # fmt: skip
    p = {"E": photons.energy, "theta": photons.theta, "phi": photons.phi}
    return (
        ak.zip({k: ak.unflatten(v, t_counts) for k, v in t.items()}),
        ak.zip({k: ak.unflatten(v, p_counts) for k, v in p.items()}),
    )


def event_features(
    tracks: TrackColumns,
    photons: PhotonColumns,
    beam: BeamColumns,
    *,
    min_pxd_hits: int = 1,
    kaon_id_cut: float | None = None,
    preselection: Preselection | None = None,
) -> dict[str, np.ndarray]:
    """Drop-in for :func:`kvv.features.event_features`: every column, computed with awkward."""
    tracks, photons = jagged(tracks, photons)
    kaon = select_kaon(tracks, min_pxd_hits, -np.inf if kaon_id_cut is None else float(kaon_id_cut))
    has_kaon = kaon >= 0
    lab = kaon_first_objects(tracks, photons, kaon)
    cms = boost_to_cms(lab, beam)
    roe = cms[ak.local_index(cms.px) >= has_kaon.astype(np.int64)]
    kaon_p4 = np.where(has_kaon[:, None], four_momentum_sum(cms[:, :1]), 0.0)
    n_photons = _np(ak.num(photons.E, axis=1))
    columns = {
        **features._kinematics(kaon_p4, four_momentum_sum(roe), four_momentum_sum(lab), beam),
        **_track_quantities(tracks, kaon),
        "roe_n_photons": n_photons.astype(np.float64),
        "n_photons": n_photons.astype(np.int64),
    }
    features.add_event_shape(columns, preselection, lambda m: _event_shape(cms[m], roe[m], np.ascontiguousarray(kaon_p4[m, 1:])))
    return columns
