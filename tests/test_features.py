"""Tests of kvv.features.event_features against an independent per-event computation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import vector
from scipy.special import eval_legendre

from kvv import features
from kvv.physics.beams import Beams
from kvv.physics.columns import BeamColumns, PhotonColumns, TrackColumns
from kvv.physics.kinematics import M_KAON, M_PION

INT_COLUMNS = {"kaon_index", "kaon_charge", "n_tracks", "n_photons"}


def offsets_from_counts(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def random_batch(rng, track_counts, photon_counts, beams=Beams()):
    """Tracks and photons with Belle II-like spectra; per-event beams jittered around nominal."""
    to, po = offsets_from_counts(track_counts), offsets_from_counts(photon_counts)
    nt, npho = to[-1], po[-1]
    p = rng.exponential(0.6, nt) + 0.1
    theta = np.arccos(rng.uniform(-0.9, 0.95, nt))
    phi = rng.uniform(-np.pi, np.pi, nt)
    tracks = TrackColumns(
        offsets=to,
        px=p * np.sin(theta) * np.cos(phi),
        py=p * np.sin(theta) * np.sin(phi),
        pz=p * np.cos(theta),
        charge=rng.choice([-1, 1], nt).astype(np.int32),
        dr=rng.normal(0, 0.05, nt),
        dz=rng.normal(0, 0.2, nt),
        n_pxd_hits=rng.integers(0, 3, nt).astype(np.int32),
        kaon_id=rng.uniform(0, 1, nt),
        pion_id=rng.uniform(0, 1, nt),
    )
    photons = PhotonColumns(
        offsets=po,
        energy=rng.exponential(0.3, npho) + 0.1,
        theta=np.arccos(rng.uniform(-0.9, 0.95, npho)),
        phi=rng.uniform(-np.pi, np.pi, npho),
    )
    n = len(track_counts)
    tot = np.tile(beams.total, (n, 1)) * rng.uniform(0.999, 1.001, (n, 1))
    beam = BeamColumns(*np.ascontiguousarray(tot.T))
    return tracks, photons, beam


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(2024)
    n = 300
    track_counts = rng.poisson(9, n)
    photon_counts = rng.poisson(7, n)
    # edge cases up front: empty, one track, one photon, one track and nothing else
    track_counts[:4] = [0, 1, 0, 1]
    photon_counts[:4] = [0, 0, 1, 0]
    tracks, photons, beam = random_batch(rng, track_counts, photon_counts)
    tracks.n_pxd_hits[tracks.offsets[1]] = 1  # event 1: its only track is the kaon
    tracks.n_pxd_hits[tracks.offsets[3]] = 0  # event 3: its only track is not
    return tracks, photons, beam, features.event_features(tracks, photons, beam)


def reference(tracks, photons, beam, i, kaon_id_cut=-np.inf):
    """Per-event features from vector and numpy, written independently of the kernels."""
    sl = slice(tracks.offsets[i], tracks.offsets[i + 1])
    pt = np.hypot(tracks.px[sl], tracks.py[sl])
    ok = (tracks.n_pxd_hits[sl] >= 1) & (tracks.kaon_id[sl] > kaon_id_cut)
    k = int(np.argmax(np.where(ok, pt, -1))) if ok.any() else -1

    mass = np.full(len(pt), M_PION)
    if k >= 0:
        mass[k] = M_KAON
    trk = vector.array({"px": tracks.px[sl], "py": tracks.py[sl], "pz": tracks.pz[sl], "mass": mass})
    ps = slice(photons.offsets[i], photons.offsets[i + 1])
    e, th, ph = photons.energy[ps], photons.theta[ps], photons.phi[ps]
    pho = vector.array({"rho": e * np.sin(th), "phi": ph, "theta": th, "mass": np.zeros(len(e))})
    beam4 = vector.obj(E=beam.energy[i], px=beam.px[i], py=beam.py[i], pz=beam.pz[i])
    trk_cms, pho_cms = trk.boostCM_of_p4(beam4), pho.boostCM_of_p4(beam4)
    p3 = lambda v: np.column_stack([v.px, v.py, v.pz])  # noqa: E731
    all_p = np.vstack([p3(trk_cms), p3(pho_cms)])
    all_e = np.concatenate([trk_cms.E, pho_cms.E])
    is_kaon = np.zeros(len(all_e), bool)
    if k >= 0:
        is_kaon[k] = True
    roe_p, roe_e = all_p[~is_kaon], all_e[~is_kaon]
    kaon_p = all_p[is_kaon].sum(0)
    sqrt_s = beam4.mass
    roe_p_vec = roe_p.sum(0)

    mag = np.linalg.norm(all_p, axis=1)
    cos = np.clip(all_p @ all_p.T / np.outer(mag, mag), -1, 1)
    h = [(np.outer(mag, mag) * eval_legendre(ell, cos)).sum() for ell in range(5)]
    roe_mag = mag[~is_kaon]
    kaon_mag = np.linalg.norm(kaon_p)
    cos_k = roe_p @ kaon_p / (roe_mag * kaon_mag) if k >= 0 else np.zeros(len(roe_mag))
    trk_p_lab = np.column_stack([tracks.px[sl], tracks.py[sl], tracks.pz[sl]])
    pho_p_lab = np.column_stack([pho.px, pho.py, pho.pz])
    miss_lab = np.array([beam.px[i], beam.py[i], beam.pz[i]]) - trk_p_lab.sum(0) - pho_p_lab.sum(0)
    miss_e = sqrt_s - all_e.sum()
    miss_p = -all_p.sum(0)
    dz_roe = np.delete(tracks.dz[sl], k) if k >= 0 else tracks.dz[sl]
    return {
        "has_kaon": k >= 0,
        "kaon_index": k,
        "kaon_pt": pt[k] if k >= 0 else 0.0,
        "kaon_p_cms": kaon_mag,
        "q2_rec": sqrt_s**2 / 4 + M_KAON**2 - sqrt_s * all_e[k] if k >= 0 else 0.0,
        "roe_energy": roe_e.sum(),
        "roe_p": np.linalg.norm(roe_p_vec),
        "roe_mbc": np.sqrt(max(sqrt_s**2 / 4 - roe_p_vec @ roe_p_vec, 0)),
        "roe_delta_e": roe_e.sum() - sqrt_s / 2,
        "roe_mass": np.sqrt(max(roe_e.sum() ** 2 - roe_p_vec @ roe_p_vec, 0)),
        "roe_n_tracks": len(pt) - (k >= 0),
        "roe_charge": tracks.charge[sl].sum() - (tracks.charge[sl][k] if k >= 0 else 0),
        "e_miss": miss_e,
        "m2_miss": miss_e**2 - miss_p @ miss_p,
        "e_visible_cms": all_e.sum(),
        "theta_miss": np.arccos(miss_lab[2] / np.linalg.norm(miss_lab)),
        "r2": h[2] / h[0] if h[0] > 0 else 0.0,
        "r4": h[4] / h[0] if h[0] > 0 else 0.0,
        **{f"ksfw_hso_{ell}": kaon_mag * (roe_mag * eval_legendre(ell, cos_k)).sum() / h[0] if h[0] > 0 else 0.0 for ell in range(5)},
        "e_t": np.hypot(all_p[:, 0], all_p[:, 1]).sum(),
        "kaon_dz_roe": abs(tracks.dz[sl][k] - dz_roe.mean()) if k >= 0 and len(dz_roe) else 0.0,
        "roe_dz_spread": dz_roe.std() if len(dz_roe) else 0.0,
    }


@pytest.fixture(scope="module")
def batch_reference(batch):
    tracks, photons, beam, _ = batch
    return [reference(tracks, photons, beam, i) for i in range(tracks.n_events)]


def test_names_docs_and_counts():
    names = features.FEATURE_NAMES
    assert 35 <= len(names) <= 50
    assert len(set(names)) == len(names)
    assert set(names).isdisjoint(features.COLUMN_NAMES)
    for name in names + features.COLUMN_NAMES:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert set(features.FEATURE_DOCS) == set(names) and all(features.FEATURE_DOCS.values())
    assert {"kaon_pt", "kaon_p_cms", "kaon_kaon_id", "has_kaon", "n_tracks", "theta_miss", "e_visible_cms"} <= set(features.COLUMN_NAMES)
    for name in ("q2_rec", "roe_energy", "roe_mbc", "roe_delta_e", "thrust", "cos_theta_thrust", "r2", "sphericity"):
        assert name in names
    assert [f"cleo_cone_{k}" for k in range(1, 10)] == [n for n in names if n.startswith("cleo_cone")]


def test_shapes_dtypes_and_no_nan(batch):
    tracks, _, _, out = batch
    assert set(out) == set(features.FEATURE_NAMES) | set(features.COLUMN_NAMES)
    for name, values in out.items():
        assert values.shape == (tracks.n_events,), name
        if name == "has_kaon":
            assert values.dtype == np.bool_
        elif name in INT_COLUMNS:
            assert values.dtype == np.int64, name
        else:
            assert values.dtype == np.float64, name
            assert np.all(np.isfinite(values)), name


@pytest.mark.parametrize(
    "name",
    [
        "has_kaon", "kaon_index", "kaon_pt", "kaon_p_cms", "q2_rec", "roe_energy", "roe_p", "roe_mbc",
        "roe_delta_e", "roe_mass", "roe_n_tracks", "roe_charge", "e_miss", "m2_miss", "e_visible_cms",
        "theta_miss", "r2", "r4", "ksfw_hso_0", "ksfw_hso_1", "ksfw_hso_2", "ksfw_hso_3", "ksfw_hso_4", "e_t",
        "kaon_dz_roe", "roe_dz_spread",
    ],
)  # fmt: skip
def test_matches_reference(batch, batch_reference, name):
    out = batch[-1]
    want = [ref[name] for ref in batch_reference]
    # a mass from E^2 - p^2 of a near-massless system carries sqrt(rounding) ~ 1e-8
    atol = 1e-7 if name == "roe_mass" else 1e-9
    np.testing.assert_allclose(out[name], want, rtol=1e-9, atol=atol)


def test_edge_events(batch):
    _, _, _, out = batch
    # event 0: empty -> missing four-momentum is the beam, shapes are 0
    assert not out["has_kaon"][0] and out["n_tracks"][0] == 0
    assert out["e_miss"][0] == pytest.approx(Beams().sqrt_s, rel=1e-2)
    for name in ("thrust", "r2", "sphericity", "roe_energy", "q2_rec", "kaon_pt", "cleo_cone_1", "ksfw_hso_0"):
        assert out[name][0] == 0.0, name
    # event 1: only the kaon -> empty ROE, thrust 1, R2 1, ROE Mbc = E*_beam
    assert out["has_kaon"][1] and out["roe_n_tracks"][1] == 0
    assert out["thrust"][1] == pytest.approx(1.0) and out["r2"][1] == pytest.approx(1.0)
    assert out["thrust_roe"][1] == 0.0 and out["roe_energy"][1] == 0.0
    assert out["roe_mbc"][1] == pytest.approx(-out["roe_delta_e"][1])  # both E*_beam
    # event 2: one photon, no kaon -> the photon is the whole ROE
    assert not out["has_kaon"][2] and out["roe_n_photons"][2] == 1
    assert out["thrust_roe"][2] == pytest.approx(1.0) and out["cleo_cone_1"][2] == 0.0
    # event 3: one track without PXD hit -> no kaon, ROE of one track
    assert not out["has_kaon"][3] and out["roe_n_tracks"][3] == 1 and out["kaon_index"][3] == -1


def test_batch_without_events():
    empty_f, empty_i = np.zeros(0), np.zeros(0, np.int32)
    offsets = np.zeros(1, np.int64)
    tracks = TrackColumns(offsets, *[empty_f] * 3, empty_i, empty_f, empty_f, empty_i, empty_f, empty_f)
    photons = PhotonColumns(offsets, empty_f, empty_f, empty_f)
    out = features.event_features(tracks, photons, BeamColumns(*[empty_f] * 4))
    assert set(out) == set(features.FEATURE_NAMES) | set(features.COLUMN_NAMES)
    assert all(v.shape == (0,) for v in out.values())


def test_kaon_id_cut_and_pxd_requirement():
    rng = np.random.default_rng(5)
    tracks, photons, beam = random_batch(rng, rng.poisson(9, 200), rng.poisson(7, 200))
    loose = features.event_features(tracks, photons, beam)
    tight = features.event_features(tracks, photons, beam, kaon_id_cut=0.9)
    no_pxd = features.event_features(tracks, photons, beam, min_pxd_hits=0)
    assert tight["has_kaon"].sum() < loose["has_kaon"].sum() <= no_pxd["has_kaon"].sum()
    assert np.all(tight["kaon_kaon_id"][tight["has_kaon"]] > 0.9)
    want = [reference(tracks, photons, beam, i, kaon_id_cut=0.9)["kaon_pt"] for i in range(200)]
    np.testing.assert_allclose(tight["kaon_pt"], want)
    # without a PXD requirement the kaon is the hardest track of the event
    for i in np.flatnonzero(no_pxd["n_tracks"] > 0)[:50]:
        sl = slice(tracks.offsets[i], tracks.offsets[i + 1])
        assert no_pxd["kaon_pt"][i] == pytest.approx(np.hypot(tracks.px[sl], tracks.py[sl]).max())


def test_signal_like_event_q2_and_mbc():
    # beam at rest with sqrt(s) = 2 M_B; a B at rest decays to K + invisible of mass^2 q2,
    # the other B to two back-to-back pions of E = M_B / 2: q2_rec = q2 and ROE Mbc = M_B
    m_b, q2 = 5.27934, 7.0
    p_k = np.sqrt(((m_b**2 + M_KAON**2 - q2) / (2 * m_b)) ** 2 - M_KAON**2)
    p_pi = np.sqrt((m_b / 2) ** 2 - M_PION**2)
    d = np.array([0.6, 0.0, 0.8])
    tracks = TrackColumns(
        offsets=np.array([0, 3]),
        px=np.array([p_k * 0.0, p_pi * d[0], -p_pi * d[0]]),
        py=np.array([p_k * 1.0, 0.0, 0.0]),
        pz=np.array([0.0, p_pi * d[2], -p_pi * d[2]]),
        charge=np.array([1, 1, -1], np.int32),
        dr=np.zeros(3),
        dz=np.array([0.1, -0.2, 0.2]),
        n_pxd_hits=np.array([1, 0, 0], np.int32),
        kaon_id=np.ones(3),
        pion_id=np.zeros(3),
    )
    photons = PhotonColumns(np.array([0, 0]), np.zeros(0), np.zeros(0), np.zeros(0))
    beam = BeamColumns(np.array([2 * m_b]), np.zeros(1), np.zeros(1), np.zeros(1))
    out = features.event_features(tracks, photons, beam)
    assert out["q2_rec"][0] == pytest.approx(q2, rel=1e-12)
    assert out["roe_mbc"][0] == pytest.approx(m_b, rel=1e-12)
    assert out["roe_delta_e"][0] == pytest.approx(0.0, abs=1e-12)
    assert out["roe_mass"][0] == pytest.approx(m_b, rel=1e-12)
    assert out["m2_miss"][0] == pytest.approx(q2, rel=1e-10)
    assert out["kaon_dz_roe"][0] == pytest.approx(0.1) and out["roe_dz_spread"][0] == pytest.approx(0.2)
    assert out["thrust_roe"][0] == pytest.approx(1.0)
    # the ROE thrust axis is the pion line (cos theta = 0.8) and is perpendicular to the kaon
    assert out["cos_theta_thrust"][0] == pytest.approx(0.8)
    assert out["cos_thrust_kaon_roe"][0] == pytest.approx(0.0, abs=1e-12)
    assert out["cleo_cone_9"][0] == pytest.approx(2 * p_pi)
