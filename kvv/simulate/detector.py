"""Fast Belle II-like detector response: generator-level particles -> tracks and ECL clusters.

Everything is vectorised over the flat particle arrays of a batch (no event loop).
Numbers are either from the Belle II Technical Design Report (T. Abe et al.,
arXiv:1011.0352, "TDR") and the Belle II physics book (E. Kou et al.,
arXiv:1808.10567, "B2TIP"), or are stated assumptions of this fast simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvv.simulate.generator import GeneratedEvents

# --- tracking (CDC) -----------------------------------------------------------------
CDC_THETA = (np.radians(17.0), np.radians(150.0))  # polar acceptance, TDR / analysis facts
TRACK_EFF_PLATEAU = 0.97  # assumption: plateau efficiency for isolated tracks
TRACK_TURN_ON = (0.07, 0.012)  # GeV/c, logistic midpoint and width of the low-pT turn-on (assumption)
PT_RES = (0.0011, 0.0025)  # sigma_pT/pT = 0.0011 pT (+) 0.0025/beta, the brief's assumption (TDR-like)
ANGLE_RES = 0.001  # rad, track direction resolution (assumption)
# impact-parameter resolution sigma = a (+) b / (p beta sin^{3/2 or 5/2} theta), cm;
# B2TIP quotes ~ 10-20 um asymptotic d0 resolution; values here are an assumption
D0_RES = (0.0020, 0.0030)
Z0_RES = (0.0025, 0.0035)
# PXD layers at r = 1.4 and 2.2 cm (TDR): a track produced inside r = 1.4 cm can leave
# 2 hits, between the layers at most 1, outside none. Hit efficiencies are assumptions.
PXD_RADII = (1.4, 2.2)
PXD_TWO_HIT_PROB = (0.90, 0.07)  # P(2 hits), P(1 hit) for prompt tracks; the rest 0
PXD_ONE_HIT_PROB = 0.95  # tracks produced between the two layers

# --- particle identification ----------------------------------------------------------
# Each likelihood ratio is modelled as sigmoid(D) with D ~ Normal(mu[true, hyp], sigma[hyp]).
# Rows: true e, mu, pi, K, p; columns: kaonID, pionID, electronID, muonID. The values are
# assumptions; measured on generic B+B- tracks they give kaonID > 0.9 for 68 % of kaons
# and 2.6 % of pions (the 2021 analysis quotes 62 % / 3 %, PRL 127, 181802),
# electronID > 0.9 for 83 % of electrons and 0.3 % of pions, muonID > 0.9 for 80 % of
# muons above 0.6 GeV/c and 1.9 % of pions.
SPECIES = (11, 13, 211, 321, 2212)
PID_MU = np.array(
    [
        [-6.0, -3.0, 5.0, -6.0],  # e
        [-5.0, 1.0, -6.0, 5.0],  # mu
        [-5.0, 4.0, -6.0, -5.0],  # pi
        [4.0, -4.0, -6.0, -6.0],  # K
        [-1.0, -4.0, -6.0, -6.0],  # p
    ]
)
PID_SIGMA = np.array([3.7, 3.0, 3.0, 3.5])
MUON_P_MIN = 0.6  # GeV/c: muons below reach no KLM layer and look like pions (assumption)

# --- calorimeter (ECL) ------------------------------------------------------------------
ECL_THETA = (np.radians(12.4), np.radians(155.1))  # TDR
PHOTON_E_MIN = 0.02  # GeV, cluster threshold (assumption)
PHOTON_EFF = 0.96  # assumption: reconstruction efficiency above threshold
E_RES = (0.02, 0.016)  # sigma_E/E = 2 %/E^{1/4} (+) 1.6 %, the brief's assumption (TDR-like)
ECL_ANGLE_RES = (0.004, 0.002)  # rad, sigma = a/sqrt(E) (+) b (assumption)
KLONG_CLUSTER_PROB = 0.6  # assumption: K0L hadronic showers seen as a cluster
KLONG_FRACTION = (0.1, 0.7)  # uniform fraction of the K0L energy deposited (assumption)
BACKGROUND_PHOTONS = 3.0  # Poisson mean of beam-background clusters per event (assumption)
BACKGROUND_E_SCALE = 0.04  # GeV, exponential slope above threshold (assumption)


@dataclass(frozen=True)
class Reconstructed:
    """Reconstructed objects of a batch: per-event counts and flat branch arrays."""

    n_tracks: np.ndarray
    tracks: dict[str, np.ndarray]  # eventformat field name -> flat array
    n_photons: np.ndarray
    photons: dict[str, np.ndarray]


def simulate_detector(events: GeneratedEvents, rng: np.random.Generator) -> Reconstructed:
    """Fast simulation of tracks and ECL clusters for a batch of generated events."""
    event_of = np.repeat(np.arange(events.n_events), np.diff(events.offsets))
    n_tracks, tracks = _tracks(events, event_of, rng)
    n_photons, photons = _photons(events, event_of, rng)
    return Reconstructed(n_tracks=n_tracks, tracks=tracks, n_photons=n_photons, photons=photons)


def _theta(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    return np.arctan2(np.hypot(px, py), pz)


def _tracks(events: GeneratedEvents, event_of: np.ndarray, rng: np.random.Generator):
    pdg = events.pdg
    species = np.searchsorted(SPECIES, np.abs(pdg))
    charged = np.isin(np.abs(pdg), SPECIES)
    e, px, py, pz = events.p4.T
    pt = np.hypot(px, py)
    theta = _theta(px, py, pz)
    eff = TRACK_EFF_PLATEAU / (1.0 + np.exp(-(pt - TRACK_TURN_ON[0]) / TRACK_TURN_ON[1]))
    keep = charged & (theta > CDC_THETA[0]) & (theta < CDC_THETA[1]) & (rng.random(len(pdg)) < eff)
    idx = np.flatnonzero(keep)
    e, px, py, pz, pt, theta = e[idx], px[idx], py[idx], pz[idx], pt[idx], theta[idx]
    vx, vy, vz = events.vertex[idx].T
    p = np.sqrt(px**2 + py**2 + pz**2)
    beta = p / e
    n = len(idx)

    sigma_pt = np.hypot(PT_RES[0] * pt, PT_RES[1] / beta)
    pt_rec = pt * (1.0 + sigma_pt * rng.standard_normal(n))
    theta_rec = theta + ANGLE_RES * rng.standard_normal(n)
    phi_rec = np.arctan2(py, px) + ANGLE_RES * rng.standard_normal(n)

    # straight-line point of closest approach to the z axis from the production vertex
    # (helix curvature neglected: < 10 um for K0S daughters above 0.3 GeV/c within 2 cm)
    d0 = (vx * py - vy * px) / pt
    z0 = vz - (vx * px + vy * py) * pz / pt**2
    sin_t = np.sin(theta)
    pbeta = p * beta
    d0 += np.hypot(D0_RES[0], D0_RES[1] / (pbeta * sin_t**1.5)) * rng.standard_normal(n)
    z0 += np.hypot(Z0_RES[0], Z0_RES[1] / (pbeta * sin_t**2.5)) * rng.standard_normal(n)

    radius = np.hypot(vx, vy)
    u = rng.random(n)
    prompt_hits = np.where(u < PXD_TWO_HIT_PROB[0], 2, np.where(u < sum(PXD_TWO_HIT_PROB), 1, 0))
    middle_hits = (u < PXD_ONE_HIT_PROB).astype(np.int32)
    n_pxd = np.where(radius < PXD_RADII[0], prompt_hits, np.where(radius < PXD_RADII[1], middle_hits, 0))

    mu = PID_MU[species[idx]].copy()
    is_muon = np.abs(pdg[idx]) == 13
    slow_muon = is_muon & (p < MUON_P_MIN)
    mu[slow_muon] = PID_MU[SPECIES.index(211)]
    llr = mu + PID_SIGMA[None, :] * rng.standard_normal((n, 4))
    pid = 1.0 / (1.0 + np.exp(-llr))

    tracks = {
        "px": (pt_rec * np.cos(phi_rec)).astype(np.float32),
        "py": (pt_rec * np.sin(phi_rec)).astype(np.float32),
        "pz": (pt_rec / np.tan(theta_rec)).astype(np.float32),
        "charge": np.sign(pdg[idx]).astype(np.int32) * _charge_sign(pdg[idx]),
        "dr": d0.astype(np.float32),
        "dz": z0.astype(np.float32),
        "nPXDHits": n_pxd.astype(np.int32),
        "kaonID": pid[:, 0].astype(np.float32),
        "pionID": pid[:, 1].astype(np.float32),
        "electronID": pid[:, 2].astype(np.float32),
        "muonID": pid[:, 3].astype(np.float32),
        "mcPDG": pdg[idx].astype(np.int32),
        "mcMotherPDG": events.mother_pdg[idx].astype(np.int32),
    }
    counts = np.bincount(event_of[idx], minlength=events.n_events).astype(np.int32)
    return counts, tracks


def _charge_sign(pdg: np.ndarray) -> np.ndarray:
    """Leptons have negative charge for positive PDG codes (e-, mu- are 11, 13)."""
    return np.where(np.isin(np.abs(pdg), (11, 13)), -1, 1).astype(np.int32)


def _photons(events: GeneratedEvents, event_of: np.ndarray, rng: np.random.Generator):
    pdg = events.pdg
    e, px, py, pz = events.p4.T
    theta = _theta(px, py, pz)
    in_ecl = (theta > ECL_THETA[0]) & (theta < ECL_THETA[1])
    photon = (pdg == 22) & in_ecl & (rng.random(len(pdg)) < PHOTON_EFF)
    klong = (pdg == 130) & in_ecl & (rng.random(len(pdg)) < KLONG_CLUSTER_PROB)
    idx = np.flatnonzero(photon | klong)
    energy = e[idx].copy()
    is_kl = pdg[idx] == 130
    energy[is_kl] *= rng.uniform(*KLONG_FRACTION, size=int(is_kl.sum()))
    n = len(idx)
    res = np.hypot(E_RES[0] / energy**0.25, E_RES[1])
    energy = energy * (1.0 + res * rng.standard_normal(n))
    ang = np.hypot(ECL_ANGLE_RES[0] / np.sqrt(np.maximum(energy, 1e-3)), ECL_ANGLE_RES[1])
    theta_rec = theta[idx] + ang * rng.standard_normal(n)
    phi_rec = np.arctan2(py[idx], px[idx]) + ang * rng.standard_normal(n)

    # soft beam-background clusters, uniform in cos(theta) over the ECL
    n_bkg = rng.poisson(BACKGROUND_PHOTONS, size=events.n_events)
    bkg_event = np.repeat(np.arange(events.n_events), n_bkg)
    nb = len(bkg_event)
    cos_lo, cos_hi = np.cos(ECL_THETA[1]), np.cos(ECL_THETA[0])
    bkg_theta = np.arccos(rng.uniform(cos_lo, cos_hi, nb))
    bkg_phi = rng.uniform(-np.pi, np.pi, nb)
    bkg_e = PHOTON_E_MIN + rng.exponential(BACKGROUND_E_SCALE, nb)

    all_event = np.concatenate([event_of[idx], bkg_event])
    order = np.argsort(all_event, kind="stable")
    keep = np.concatenate([energy, bkg_e])[order] > PHOTON_E_MIN
    order = order[keep]
    phi_all = np.angle(np.exp(1j * np.concatenate([phi_rec, bkg_phi])))  # wrap to (-pi, pi]
    photons = {
        "E": np.concatenate([energy, bkg_e])[order].astype(np.float32),
        "theta": np.clip(np.concatenate([theta_rec, bkg_theta]), 0.0, np.pi)[order].astype(np.float32),
        "phi": phi_all[order].astype(np.float32),
        "mcPDG": np.concatenate([pdg[idx], np.zeros(nb, np.int32)])[order].astype(np.int32),
        "mcMotherPDG": np.concatenate([events.mother_pdg[idx], np.zeros(nb, np.int32)])[order].astype(np.int32),
    }
    counts = np.bincount(all_event[order], minlength=events.n_events).astype(np.int32)
    return counts, photons
