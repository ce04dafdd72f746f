"""B+ -> J/psi(-> mu+ mu-) K+ validation channel and its B+ -> K+ nu nubar signal proxy.

Reconstruction: J/psi from opposite-charge muon-ID track pairs in a mass window,
combined with a kaon-ID track into a B+ candidate; Mbc and Delta E in the CMS of
the event's beam four-momentum. One candidate per event: the smallest |Delta E|,
exact ties to the lowest (mu+, mu-, K) track indices (enumeration order).

Signal proxy (PRL 127, 181802): the dimuon is removed from the event, which then
has the missing energy of a signal decay, and the kaon momentum is replaced by
one of a K+ from B+ -> K+ nu nubar (SM q^2 spectrum) in the rest frame of the
reconstructed B, boosted into the lab. The modified flat track columns are
ordinary input of :func:`kvv.features.event_features`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from kvv import selection
from kvv.config.reconstruction import JpsiKCuts
from kvv.physics import kinematics as kin
from kvv.physics import randoms
from kvv.physics.columns import BeamColumns, TrackColumns, subset
from kvv.physics.formfactors import dgamma_dq2
from kvv.physics.kinematics import jit

M_MUON = kin.pdg_mass(13)  # GeV/c^2
M_JPSI = kin.pdg_mass(443)
M_BPLUS = kin.pdg_mass(521)
M_KAON = kin.M_KAON

SLOTS = ("mu_plus", "mu_minus", "kaon")
"""Columns of the ``daughters`` array: within-event track indices."""


@jit
def _track_p4(px: np.ndarray, py: np.ndarray, pz: np.ndarray, j: int, m: float) -> np.ndarray:
    return np.array([np.sqrt(px[j] ** 2 + py[j] ** 2 + pz[j] ** 2 + m * m), px[j], py[j], pz[j]])


@jit
def best_jpsik(
    offsets: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    charge: np.ndarray,
    muon_id: np.ndarray,
    kaon_id: np.ndarray,
    beam_e: np.ndarray,
    beam_px: np.ndarray,
    beam_py: np.ndarray,
    beam_pz: np.ndarray,
    muon_id_cut: float,
    kaon_id_cut: float,
    jpsi_mass_window: float,
    delta_e_window: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best B+ -> J/psi K+ candidate per event.

    Returns ``(daughters, b_p4, jpsi_mass, n_candidates)``: (n, 3) track indices in
    :data:`SLOTS` order (-1: none), the lab B four-vector (zero if none), the
    dimuon mass, and the number of candidates inside all windows.
    """
    n_events = len(offsets) - 1
    daughters = np.full((n_events, 3), -1, dtype=np.int64)
    b_p4 = np.zeros((n_events, 4))
    jpsi_mass = np.zeros(n_events)
    n_cand = np.zeros(n_events, dtype=np.int64)
    for i in range(n_events):
        s = np.sqrt(beam_e[i] ** 2 - beam_px[i] ** 2 - beam_py[i] ** 2 - beam_pz[i] ** 2)
        t0, nt = offsets[i], offsets[i + 1] - offsets[i]
        best = np.inf
        for a in range(nt):
            for b in range(a + 1, nt):
                ja, jb = t0 + a, t0 + b
                if charge[ja] * charge[jb] >= 0 or not (muon_id[ja] > muon_id_cut and muon_id[jb] > muon_id_cut):
                    continue
                dimuon = _track_p4(px, py, pz, ja, M_MUON) + _track_p4(px, py, pz, jb, M_MUON)
                m2 = dimuon[0] ** 2 - dimuon[1] ** 2 - dimuon[2] ** 2 - dimuon[3] ** 2
                m = np.sqrt(max(m2, 0.0))
                if abs(m - M_JPSI) >= jpsi_mass_window:
                    continue
                for k in range(nt):
                    jk = t0 + k
                    if k == a or k == b or charge[jk] == 0 or not kaon_id[jk] > kaon_id_cut:
                        continue
                    p4 = dimuon + _track_p4(px, py, pz, jk, M_KAON)
                    # E* = (p . P_beam) / sqrt(s): the CMS energy without building the boost
                    e_cms = (p4[0] * beam_e[i] - p4[1] * beam_px[i] - p4[2] * beam_py[i] - p4[3] * beam_pz[i]) / s
                    abs_delta_e = abs(e_cms - 0.5 * s)
                    if abs_delta_e >= delta_e_window:
                        continue
                    n_cand[i] += 1
                    if abs_delta_e < best:  # strict: ties keep the first, lowest-index candidate
                        best = abs_delta_e
                        daughters[i, 0], daughters[i, 1] = (a, b) if charge[ja] > 0 else (b, a)
                        daughters[i, 2] = k
                        b_p4[i] = p4
                        jpsi_mass[i] = m
    return daughters, b_p4, jpsi_mass, n_cand


def reconstruct_jpsik(tracks: TrackColumns, muon_id: np.ndarray, beam: BeamColumns, cuts: JpsiKCuts = JpsiKCuts()) -> dict[str, np.ndarray]:
    """B+ -> J/psi K+ candidates: ``daughters``, ``has_b``, ``mbc``, ``delta_e``, ``jpsi_mass``, ...

    ``muon_id`` is the flat muonID aligned with ``tracks`` (not part of TrackColumns).
    Events without candidate get -1 daughters and zeros.
    """
    daughters, b_lab, jpsi_mass, n_cand = best_jpsik(
        tracks.offsets, tracks.px, tracks.py, tracks.pz, tracks.charge, muon_id, tracks.kaon_id,
        beam.energy, beam.px, beam.py, beam.pz,
        cuts.muon_id_cut, cuts.kaon_id_cut, cuts.jpsi_mass_window, cuts.delta_e_window,
    )  # fmt: skip
    has = daughters[:, 0] >= 0
    b_cms = kin.boost_each(b_lab, beam)
    e_beam = 0.5 * beam.sqrt_s
    return {
        "daughters": daughters,
        "has_b": has,
        "b_p4_lab": b_lab,
        "mbc": np.where(has, kin.beam_constrained_mass(e_beam, np.linalg.norm(b_cms[:, 1:], axis=1)), 0.0),
        "delta_e": np.where(has, b_cms[:, 0] - e_beam, 0.0),
        "jpsi_mass": jpsi_mass,
        "n_b_candidates": n_cand,
    }


@jit
def _sm_q2_density(q2: np.ndarray, m_b: float, m_k: float) -> np.ndarray:
    """dΓ/dq² of B -> K νν̄ up to a constant, on an array of q²."""
    out = np.empty(len(q2))
    for j in range(len(q2)):
        out[j] = dgamma_dq2(q2[j], m_b, m_k)
    return out


def sample_sm_q2(uniform: np.ndarray, m_b: float = M_BPLUS, m_k: float = M_KAON) -> np.ndarray:
    """q^2 from the SM B -> K nu nubar spectrum (same form factor as kvv.simulate), one per uniform in [0, 1).

    Inverse transform of the tabulated CDF: one value per uniform, so an event's
    q^2 depends on its own random number only, not on the other events of its chunk.
    """
    q2_max = (m_b - m_k) ** 2
    grid = np.linspace(0.0, q2_max, 4001)
    density = _sm_q2_density(grid, m_b, m_k)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.interp(uniform, cdf / cdf[-1], grid)


def signal_like_kaon(b_lab: np.ndarray, q2: np.ndarray, u_cos: np.ndarray, u_phi: np.ndarray) -> np.ndarray:
    """Lab four-momenta (n, 4) of a K+ from B+ -> K+ nu nubar at ``q2``, for B momenta ``b_lab``.

    The kaon is isotropic in the B rest frame (direction from the uniforms ``u_cos``,
    ``u_phi`` in [0, 1)) with |p| = lambda^1/2(mB^2, mK^2, q^2) / 2 mB; the boost uses
    the reconstructed B momentum with the nominal B mass.
    """
    n = len(q2)
    m_nunu = np.sqrt(q2)
    p = np.sqrt(np.maximum((M_BPLUS**2 - (M_KAON + m_nunu) ** 2) * (M_BPLUS**2 - (M_KAON - m_nunu) ** 2), 0.0))
    p /= 2.0 * M_BPLUS
    cos_t = 2.0 * np.asarray(u_cos) - 1.0
    phi = np.pi * (2.0 * np.asarray(u_phi) - 1.0)
    sin_t = np.sqrt(1.0 - cos_t**2)
    k_rest = np.stack([np.sqrt(p**2 + M_KAON**2), p * sin_t * np.cos(phi), p * sin_t * np.sin(phi), p * cos_t], axis=1)
    b_p = b_lab[:, 1:]
    beta = b_p / np.sqrt(np.sum(b_p**2, axis=1) + M_BPLUS**2)[:, None]
    # boost_each goes lab -> frame moving with beta; a "beam" of velocity -beta goes back
    to_lab = BeamColumns(energy=np.ones(n), px=-beta[:, 0], py=-beta[:, 1], pz=-beta[:, 2])
    return kin.boost_each(k_rest, to_lab)


def signal_proxy(
    tracks: TrackColumns, candidates: Mapping[str, np.ndarray], event_id: np.ndarray, seed: int
) -> tuple[TrackColumns, np.ndarray, np.ndarray]:
    """Tracks of the signal proxy: dimuon removed, kaon momentum signal-like.

    The proxy's random numbers are hashes of (``event_id``, ``seed``), with
    ``event_id`` a unique integer per event (see :func:`event_id`): an event's proxy is
    the same however its file is chunked. Events without a B candidate are
    returned unchanged. Returns the new columns, the per-event generated q^2 (-1
    without candidate), for checks, and the mask of the input tracks that were kept
    (to align per-track truth with the proxy).
    """
    daughters = candidates["daughters"]
    has = candidates["has_b"]
    first = tracks.offsets[:-1]
    keep = np.ones(len(tracks.px), dtype=bool)
    keep[first[has] + daughters[has, 0]] = False
    keep[first[has] + daughters[has, 1]] = False
    events = np.asarray(event_id)[has]
    q2 = np.full(len(has), -1.0)
    q2[has] = sample_sm_q2(randoms.hash_uniform(events, 0, seed, "jpsik proxy q2"))
    kaon = signal_like_kaon(
        candidates["b_p4_lab"][has],
        q2[has],
        randoms.hash_uniform(events, 0, seed, "jpsik proxy cos theta"),
        randoms.hash_uniform(events, 0, seed, "jpsik proxy phi"),
    )
    px, py, pz = tracks.px.copy(), tracks.py.copy(), tracks.pz.copy()
    k_flat = first[has] + daughters[has, 2]
    px[k_flat], py[k_flat], pz[k_flat] = kaon[:, 1], kaon[:, 2], kaon[:, 3]
    return subset(dataclasses.replace(tracks, px=px, py=py, pz=pz), keep), q2, keep


def event_id(experiment: np.ndarray, run: np.ndarray, event: np.ndarray) -> np.ndarray:
    """One integer per (experiment, run, event): event numbers repeat across runs of real data."""
    mixed = (np.asarray(experiment).astype(np.uint64) << np.uint64(48)) ^ (np.asarray(run).astype(np.uint64) << np.uint64(24))
    return mixed ^ np.asarray(event).astype(np.uint64)


Intervals = Mapping[str, tuple[float | None, float | None]]
"""Score cuts as ``{name: (lo, hi)}``, [lo, hi) with None for open ends (as region cuts)."""


def selection_efficiency(scores: Mapping[str, np.ndarray], cuts: Intervals, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Fraction of (weighted) events inside every ``[lo, hi)`` score interval, and its binomial error.

    Weighted: sigma^2 = (sum_pass w^2 (1 - eps)^2 + sum_fail w^2 eps^2) / (sum w)^2,
    which is eps (1 - eps) / N for unit weights.
    """
    passed = selection.interval_mask(scores, cuts)
    w = np.ones(len(passed)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if total <= 0.0:
        raise ValueError("no events (or zero total weight) to compute an efficiency from")
    eps = w[passed].sum() / total
    var = (np.sum(w[passed] ** 2) * (1.0 - eps) ** 2 + np.sum(w[~passed] ** 2) * eps**2) / total**2
    return float(eps), float(np.sqrt(var))


def efficiency_ratio(
    data_scores: Mapping[str, np.ndarray],
    mc_scores: Mapping[str, np.ndarray],
    cuts: Intervals,
    mc_weights: np.ndarray | None = None,
) -> tuple[float, float]:
    """Selection-efficiency ratio eps(proxy from data) / eps(proxy from MC) and its uncertainty.

    The two samples are independent: relative binomial errors add in quadrature.
    The 2021 analysis found 1.06 +- 0.10 for BDT2 > 0.95.
    """
    eps_data, err_data = selection_efficiency(data_scores, cuts)
    eps_mc, err_mc = selection_efficiency(mc_scores, cuts, mc_weights)
    if eps_mc == 0.0:
        raise ValueError("no MC proxy event passes the cuts: the ratio is undefined")
    ratio = eps_data / eps_mc
    # sigma_r^2 = (sigma_d / eps_mc)^2 + (eps_d sigma_mc / eps_mc^2)^2, finite for eps_d = 0
    return ratio, float(np.hypot(err_data, ratio * err_mc) / eps_mc)
