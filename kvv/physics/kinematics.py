"""Numba kernels for four-vectors: the Lorentz boost, object ordering, lab -> CMS, signal-kaon choice.

Conventions shared by all kernels of kvv:

* a collection is flat numpy content plus per-event ranges; objects of event i
  are ``content[starts[i]:stops[i]]`` (for a plain collection pass
  ``offsets[:-1], offsets[1:]``);
* four-vectors are (E, px, py, pz) in GeV, lab frame unless named ``*_cms``;
* per-event loops live inside ``@numba.njit`` kernels, the Python side only
  does element-wise numpy on per-event arrays.
"""

from __future__ import annotations

import numba
import numpy as np
from particle import Particle

from kvv.physics.columns import BeamColumns


def pdg_mass(pdgid: int) -> float:
    """PDG mass in GeV/c^2, via `particle` (which works in MeV)."""
    mass = Particle.from_pdgid(pdgid).mass
    if mass is None:
        raise ValueError(f"the PDG data of `particle` have no mass for {pdgid}")
    return mass / 1000.0


def pdg_width(pdgid: int) -> float:
    """PDG full width in GeV, via `particle` (which works in MeV)."""
    width = Particle.from_pdgid(pdgid).width
    if width is None:
        raise ValueError(f"the PDG data of `particle` have no width for {pdgid}")
    return width / 1000.0


M_KAON = pdg_mass(321)
M_PION = pdg_mass(211)

#: the decorator of every kvv kernel: compiled once, cached on disk, releasing the GIL for threaded workers
jit = numba.njit(cache=True, nogil=True)


@jit
def boost(e: float, px: float, py: float, pz: float, bx: float, by: float, bz: float) -> tuple[float, float, float, float]:
    """The four-vector (E, p) of frame S' seen in frame S, in which S' moves with velocity b.

    kvv's one Lorentz boost: lab -> CMS is ``boost(..., -beta)``, the generator
    boosts daughters out of their parent's rest frame with ``+beta``.
    """
    gamma = 1.0 / np.sqrt(1.0 - (bx * bx + by * by + bz * bz))
    bp = bx * px + by * py + bz * pz
    # (gamma - 1) / beta^2 = gamma^2 / (gamma + 1): finite at beta = 0
    coef = gamma * gamma / (gamma + 1.0) * bp + gamma * e
    return gamma * (e + bp), px + coef * bx, py + coef * by, pz + coef * bz


@jit
def select_kaon(
    offsets: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    n_pxd_hits: np.ndarray,
    kaon_id: np.ndarray,
    min_pxd_hits: int = 1,
    kaon_id_cut: float = -np.inf,
) -> np.ndarray:
    """Per-event index (within the event) of the signal-kaon candidate, -1 if none.

    The candidate is the highest-pT track with ``n_pxd_hits >= min_pxd_hits`` and
    ``kaon_id > kaon_id_cut``; on equal pT the first track in event order wins.
    """
    n_events = len(offsets) - 1
    out = np.full(n_events, -1, dtype=np.int64)
    for i in range(n_events):
        best_pt2 = -1.0
        for j in range(offsets[i], offsets[i + 1]):
            if n_pxd_hits[j] < min_pxd_hits or not kaon_id[j] > kaon_id_cut:
                continue
            pt2 = px[j] * px[j] + py[j] * py[j]
            if pt2 > best_pt2:
                best_pt2 = pt2
                out[i] = j - offsets[i]
    return out


@jit
def kaon_first_objects(
    track_offsets: np.ndarray,
    track_px: np.ndarray,
    track_py: np.ndarray,
    track_pz: np.ndarray,
    photon_offsets: np.ndarray,
    photon_energy: np.ndarray,
    photon_theta: np.ndarray,
    photon_phi: np.ndarray,
    kaon: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge tracks and photons into one lab four-vector collection per event.

    Order within an event: the signal kaon (if ``kaon[i] >= 0``), the other tracks,
    then the photons. Putting the kaon first makes the rest of the event the
    contiguous range ``[offsets[i] + has_kaon, offsets[i + 1])``, so ROE kernels
    need no copy. Mass hypotheses: kaon M_K, other tracks M_pi, photons massless.
    Returns ``(offsets, e, px, py, pz)``.
    """
    n_events = len(track_offsets) - 1
    n_total = len(track_px) + len(photon_energy)
    offsets = np.empty(n_events + 1, dtype=np.int64)
    e = np.empty(n_total)
    px = np.empty(n_total)
    py = np.empty(n_total)
    pz = np.empty(n_total)
    offsets[0] = 0
    k = 0
    for i in range(n_events):
        t0 = track_offsets[i]
        if kaon[i] >= 0:
            j = t0 + kaon[i]
            px[k], py[k], pz[k] = track_px[j], track_py[j], track_pz[j]
            e[k] = np.sqrt(px[k] ** 2 + py[k] ** 2 + pz[k] ** 2 + M_KAON**2)
            k += 1
        for j in range(t0, track_offsets[i + 1]):
            if j - t0 == kaon[i]:
                continue
            px[k], py[k], pz[k] = track_px[j], track_py[j], track_pz[j]
            e[k] = np.sqrt(px[k] ** 2 + py[k] ** 2 + pz[k] ** 2 + M_PION**2)
            k += 1
        for j in range(photon_offsets[i], photon_offsets[i + 1]):
            sin_theta = np.sin(photon_theta[j])
            e[k] = photon_energy[j]
            px[k] = e[k] * sin_theta * np.cos(photon_phi[j])
            py[k] = e[k] * sin_theta * np.sin(photon_phi[j])
            pz[k] = e[k] * np.cos(photon_theta[j])
            k += 1
        offsets[i + 1] = k
    return offsets, e, px, py, pz


@jit
def boost_to_cms(
    offsets: np.ndarray,
    e: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    beam_e: np.ndarray,
    beam_px: np.ndarray,
    beam_py: np.ndarray,
    beam_pz: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boost lab four-vectors into the CMS of their event's beam four-momentum.

    Pure boost by -beta, beta = p_beam / E_beam (no rotation, as basf2's
    ``useCMSFrame``). Returns (E*, px*, py*, pz*).
    """
    e_out = np.empty_like(e)
    px_out = np.empty_like(px)
    py_out = np.empty_like(py)
    pz_out = np.empty_like(pz)
    for i in range(len(offsets) - 1):
        bx = beam_px[i] / beam_e[i]
        by = beam_py[i] / beam_e[i]
        bz = beam_pz[i] / beam_e[i]
        for j in range(offsets[i], offsets[i + 1]):
            e_out[j], px_out[j], py_out[j], pz_out[j] = boost(e[j], px[j], py[j], pz[j], -bx, -by, -bz)
    return e_out, px_out, py_out, pz_out


@jit
def four_momentum_sum(
    starts: np.ndarray,
    stops: np.ndarray,
    e: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
) -> np.ndarray:
    """Per-event sum of the four-vectors in ``[starts[i], stops[i])``, shape (n_events, 4)."""
    out = np.zeros((len(starts), 4))
    for i in range(len(starts)):
        for j in range(starts[i], stops[i]):
            out[i, 0] += e[j]
            out[i, 1] += px[j]
            out[i, 2] += py[j]
            out[i, 3] += pz[j]
    return out


@jit
def roe_track_stats(offsets: np.ndarray, charge: np.ndarray, dz: np.ndarray, kaon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charge sum, mean dz and dz standard deviation of the tracks other than the kaon.

    Mean and spread are 0 for events without ROE tracks (no vertex information).
    """
    n_events = len(offsets) - 1
    q = np.zeros(n_events)
    mean = np.zeros(n_events)
    spread = np.zeros(n_events)
    for i in range(n_events):
        n = 0
        s1 = 0.0
        for j in range(offsets[i], offsets[i + 1]):
            if j - offsets[i] == kaon[i]:
                continue
            q[i] += charge[j]
            s1 += dz[j]
            n += 1
        if n == 0:
            continue
        mean[i] = s1 / n
        # two-pass variance: dz spreads are ~mm on top of offsets, avoid cancellation
        s2 = 0.0
        for j in range(offsets[i], offsets[i + 1]):
            if j - offsets[i] != kaon[i]:
                s2 += (dz[j] - mean[i]) ** 2
        spread[i] = np.sqrt(s2 / n)
    return q, mean, spread


def invariant_mass(p4: np.ndarray) -> np.ndarray:
    """Mass of (..., 4) four-vectors; 0 where rounding makes m^2 slightly negative."""
    m2 = p4[..., 0] ** 2 - np.sum(p4[..., 1:] ** 2, axis=-1)
    return np.sqrt(np.maximum(m2, 0.0))


def beam_constrained_mass(e_beam_cms: np.ndarray, p_cms: np.ndarray) -> np.ndarray:
    """Mbc = sqrt(E*_beam^2 - |p*|^2), 0 where |p*| exceeds the beam energy."""
    return np.sqrt(np.maximum(e_beam_cms**2 - p_cms**2, 0.0))


def q2_rec(e_kaon_cms: np.ndarray, sqrt_s: np.ndarray, m_kaon: float | np.ndarray = M_KAON) -> np.ndarray:
    """Dineutrino q^2 from the kaon CMS energy, signal B at rest: s/4 + M_K^2 - sqrt(s) E*_K."""
    return 0.25 * sqrt_s**2 + m_kaon**2 - sqrt_s * e_kaon_cms


def cos_theta(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """Cosine of the polar angle; 0 for a null vector."""
    p = np.sqrt(px**2 + py**2 + pz**2)
    return np.divide(pz, p, out=np.zeros_like(p), where=p > 0.0)


def boost_each(p4: np.ndarray, beam: BeamColumns) -> np.ndarray:
    """Boost one lab four-vector per event, shape (n, 4), into its event's CMS."""
    one_each = np.arange(len(p4) + 1, dtype=np.int64)
    e, px, py, pz = (np.ascontiguousarray(p4[:, c]) for c in range(4))
    return np.stack(boost_to_cms(one_each, e, px, py, pz, beam.energy, beam.px, beam.py, beam.pz), axis=1)
