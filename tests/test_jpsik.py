"""B+ -> J/psi K+ reconstruction, signal proxy and efficiency ratio."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import integrate
from test_kstar import make_beam, make_photons, make_tracks, p4_of

from kvv import features, jpsik, peaks
from kvv.jpsik import JpsiKCuts
from kvv.physics.beams import Beams, boost_matrix

WIDE = JpsiKCuts(jpsi_mass_window=3.0, delta_e_window=6.0)


def with_muon_id(events: list[list[tuple]]) -> tuple:
    """Tracks from (px, py, pz, charge, dr, kaonID, pionID, muonID) rows, plus flat muonID."""
    tracks = make_tracks([[t[:7] for t in ev] for ev in events])
    return tracks, np.array([t[7] for ev in events for t in ev], dtype=np.float64)


def brute_force(tracks: list[tuple], beams: Beams, cuts: JpsiKCuts):
    """(|Delta E|, (mu+, mu-, K)) of the best candidate over all pairs x kaons, and the count."""
    cands = []
    for a, b in combinations(range(len(tracks)), 2):
        ta, tb = tracks[a], tracks[b]
        if ta[3] * tb[3] >= 0 or not (ta[7] > cuts.muon_id_cut and tb[7] > cuts.muon_id_cut):
            continue
        dimuon = np.add(p4_of(ta[:3], jpsik.M_MUON), p4_of(tb[:3], jpsik.M_MUON))
        if abs(math.sqrt(max(dimuon[0] ** 2 - dimuon[1:] @ dimuon[1:], 0)) - jpsik.M_JPSI) >= cuts.jpsi_mass_window:
            continue
        for k, tk in enumerate(tracks):
            if k in (a, b) or tk[3] == 0 or not tk[5] > cuts.kaon_id_cut:
                continue
            b_cms = beams.lab_to_cms @ (dimuon + np.array(p4_of(tk[:3], jpsik.M_KAON)))
            de = abs(b_cms[0] - beams.sqrt_s / 2)
            if de < cuts.delta_e_window:
                cands.append((de, (a, b, k) if ta[3] > 0 else (b, a, k)))
    return min(cands, key=lambda c: c[0]) if cands else None, len(cands)


def test_matches_brute_force():
    rng = np.random.default_rng(3)
    events = [
        [(*rng.normal(0, 1.2, 3), int(rng.choice([-1, 1])), 0.0, rng.random(), rng.random(), rng.random())
         for _ in range(rng.integers(0, 7))]
        for _ in range(300)
    ]  # fmt: skip
    tracks, muon_id = with_muon_id(events)
    out = jpsik.reconstruct_jpsik(tracks, muon_id, make_beam(len(events)), WIDE)
    n_with = 0
    for i, ev in enumerate(events):
        best, count = brute_force(ev, Beams(), WIDE)
        assert out["n_b_candidates"][i] == count
        if best is None:
            assert not out["has_b"][i] and tuple(out["daughters"][i]) == (-1, -1, -1)
            continue
        n_with += 1
        assert tuple(out["daughters"][i]) == best[1]
        assert abs(out["delta_e"][i]) == pytest.approx(best[0], abs=1e-9)
    assert n_with > 30


def b_decay_lab(beams: Beams, rng: np.random.Generator) -> list[np.ndarray]:
    """mu+, mu-, K+ lab four-vectors of a B+ -> J/psi K+ at rest-ish in the CMS (|p*| = 0.33 GeV)."""

    def two_body(m, m1, m2):
        p = math.sqrt((m * m - (m1 + m2) ** 2) * (m * m - (m1 - m2) ** 2)) / (2 * m)
        n = rng.normal(size=3)
        n *= p / np.linalg.norm(n)
        return np.array([math.hypot(p, m1), *n]), np.array([math.hypot(p, m2), *(-n)])

    pb = np.array([0.2, -0.1, 0.25])
    to_cms = beams.cms_to_lab @ boost_matrix(pb / math.hypot(np.linalg.norm(pb), jpsik.M_BPLUS))
    jpsi, kaon = two_body(jpsik.M_BPLUS, jpsik.M_JPSI, jpsik.M_KAON)
    mu1, mu2 = two_body(jpsik.M_JPSI, jpsik.M_MUON, jpsik.M_MUON)
    to_b = boost_matrix(jpsi[1:] / jpsi[0])
    return [to_cms @ (to_b @ mu1), to_cms @ (to_b @ mu2), to_cms @ kaon]


def test_exact_b_gives_nominal_mbc_and_zero_delta_e():
    beams = Beams()
    mup, mum, k = b_decay_lab(beams, np.random.default_rng(1))
    pion = (0.3, 0.2, -0.4, -1, 0.0, 0.1, 0.9, 0.1)
    event = [(*k[1:], 1, 0.0, 0.9, 0.1, 0.1), pion, (*mum[1:], -1, 0.0, 0.1, 0.1, 0.9), (*mup[1:], 1, 0.0, 0.1, 0.1, 0.9)]
    tracks, muon_id = with_muon_id([event, []])
    out = jpsik.reconstruct_jpsik(tracks, muon_id, make_beam(2))
    assert tuple(out["daughters"][0]) == (3, 2, 0)
    assert out["jpsi_mass"][0] == pytest.approx(jpsik.M_JPSI, abs=1e-9)
    p_star = np.linalg.norm([0.2, -0.1, 0.25])
    assert out["mbc"][0] == pytest.approx(math.sqrt(beams.sqrt_s**2 / 4 - p_star**2), abs=1e-9)
    assert out["delta_e"][0] == pytest.approx(math.hypot(p_star, jpsik.M_BPLUS) - beams.sqrt_s / 2, abs=1e-9)
    assert not out["has_b"][1] and out["mbc"][1] == 0.0


def test_sm_q2_sampler_follows_the_spectrum():
    q2 = jpsik.sample_sm_q2(np.random.default_rng(5).uniform(size=40_000))
    q2_max = (jpsik.M_BPLUS - jpsik.M_KAON) ** 2
    assert q2.min() >= 0.0 and q2.max() <= q2_max
    density = lambda x: jpsik._sm_q2_density(np.array([x]), jpsik.M_BPLUS, jpsik.M_KAON)[0]  # noqa: E731
    norm = integrate.quad(density, 0, q2_max)[0]
    mean = integrate.quad(lambda x: x * density(x), 0, q2_max)[0] / norm
    assert q2.mean() == pytest.approx(mean, abs=4 * q2.std() / math.sqrt(len(q2)))


def test_signal_like_kaon_has_the_requested_q2():
    rng = np.random.default_rng(2)
    b_lab = np.array([[0.0, 0.3, -0.1, 2.9], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    q2 = np.array([0.5, 10.0, 20.0])
    kaon = jpsik.signal_like_kaon(b_lab, q2, rng.uniform(size=3), rng.uniform(size=3))
    b4 = np.column_stack([np.sqrt(np.sum(b_lab[:, 1:] ** 2, axis=1) + jpsik.M_BPLUS**2), b_lab[:, 1:]])
    nunu = b4 - kaon
    assert nunu[:, 0] ** 2 - np.sum(nunu[:, 1:] ** 2, axis=1) == pytest.approx(q2, rel=1e-9)
    assert kaon[:, 0] ** 2 - np.sum(kaon[:, 1:] ** 2, axis=1) == pytest.approx(jpsik.M_KAON**2, rel=1e-9)


def test_signal_proxy_removes_dimuon_and_replaces_kaon():
    beams = Beams()
    mup, mum, k = b_decay_lab(beams, np.random.default_rng(4))
    other = (0.3, 0.2, -0.4, -1, 0.0, 0.1, 0.9, 0.1)
    events = [
        [(*mup[1:], 1, 0.0, 0.1, 0.1, 0.9), other, (*k[1:], 1, 0.0, 0.9, 0.1, 0.1), (*mum[1:], -1, 0.0, 0.1, 0.1, 0.9)],
        [other, other],
    ]
    tracks, muon_id = with_muon_id(events)
    cands = jpsik.reconstruct_jpsik(tracks, muon_id, make_beam(2))
    proxy, q2, keep = jpsik.signal_proxy(tracks, cands, np.arange(2), seed=0)
    assert list(np.diff(proxy.offsets)) == [2, 2]
    assert keep.tolist() == [False, True, True, False, True, True]
    assert q2[0] > 0 and q2[1] == -1.0
    assert proxy.px[0] == pytest.approx(other[0]) and proxy.kaon_id[1] == pytest.approx(0.9)
    assert proxy.px[1] != pytest.approx(k[1])
    np.testing.assert_allclose(proxy.px[2:], tracks.px[4:])  # untouched event
    # the recoil of the new kaon in the B frame has the sampled q^2
    p_b = cands["b_p4_lab"][0, 1:]
    b4 = np.array([math.hypot(np.linalg.norm(p_b), jpsik.M_BPLUS), *p_b])
    kaon = np.array(p4_of((proxy.px[1], proxy.py[1], proxy.pz[1]), jpsik.M_KAON))
    nunu = b4 - kaon
    assert nunu[0] ** 2 - nunu[1:] @ nunu[1:] == pytest.approx(q2[0], rel=1e-6, abs=1e-6)
    out = features.event_features(proxy, make_photons([[], []]), make_beam(2))
    assert all(np.all(np.isfinite(v)) for v in out.values())


def test_selection_efficiency_and_ratio():
    cuts = {"bdt1": (0.9, None), "bdt2": (0.95, None)}
    data = {"bdt1": np.array([0.95, 0.99, 0.5, 0.97]), "bdt2": np.array([0.96, 0.99, 0.99, 0.9])}
    mc = {"bdt1": np.array([0.95, 0.99, 0.5, 0.97, 0.92]), "bdt2": np.array([0.96, 0.5, 0.99, 0.99, 0.99])}
    eps, err = jpsik.selection_efficiency(data, cuts)
    assert eps == 0.5 and err == pytest.approx(math.sqrt(0.5 * 0.5 / 4))
    eps_w, err_w = jpsik.selection_efficiency(data, cuts, np.full(4, 3.0))  # constant weights: same
    assert eps_w == eps and err_w == pytest.approx(err)
    ratio, err_ratio = jpsik.efficiency_ratio(data, mc, cuts)
    e_mc, s_mc = 0.6, math.sqrt(0.6 * 0.4 / 5)
    assert ratio == pytest.approx(0.5 / 0.6)
    assert err_ratio == pytest.approx(ratio * math.hypot(err / eps, s_mc / e_mc))
    none = {k: v * 0 for k, v in mc.items()}
    with pytest.raises(ValueError, match="no MC"):
        jpsik.efficiency_ratio(data, none, cuts)
    assert jpsik.efficiency_ratio(none, mc, cuts)[0] == 0.0


@pytest.fixture(scope="module")
def jpsik_sample(tmp_path_factory) -> dict:
    from test_kstar import load_sample

    from kvv.eventformat import Process
    from kvv.simulate import generate_sample

    path = tmp_path_factory.mktemp("jpsik") / "jpsik.root"
    generate_sample(Process.JPSIK, 3000, path, beams=Beams(), seed=13, chunk_size=3000)
    sample = load_sample(path)
    sample["reco"] = jpsik.reconstruct_jpsik(sample["tracks"], sample["muon_id"], sample["beam"])
    return sample


def test_mbc_and_delta_e_on_simulation(jpsik_sample):
    """Mbc peaks at M_B+ with the resolution the beam-energy spread gives, sigma(sqrt(s)) / 2."""
    reco = jpsik_sample["reco"]
    has = reco["has_b"]
    assert has.mean() > 0.4
    edges = np.linspace(5.20, 5.30, 201)
    counts, _ = np.histogram(reco["mbc"][has], edges)
    peak = peaks.fit_mbc_peak(edges, counts, endpoint=Beams().sqrt_s / 2)
    assert peak.converged
    assert peak.mean == pytest.approx(jpsik.M_BPLUS, abs=max(5 * peak.mean_error, 5e-4))
    # measured 2.50 MeV on 20k events: the track-momentum resolution adds little to the beams
    assert peak.sigma == pytest.approx(Beams().sqrt_s_spread / 2, rel=0.15)
    assert peak.n_background < 0.1 * peak.n_signal
    assert np.median(reco["delta_e"][has]) == pytest.approx(0.0, abs=0.005)
    # truth: both muons from the J/psi, the kaon from the B+
    d, first = reco["daughters"][has], jpsik_sample["tracks"].offsets[:-1][has]
    mother = np.abs(jpsik_sample["track_mother"][first[:, None] + d])
    assert np.mean(np.all(mother == [443, 443, 521], axis=1)) > 0.95


def test_signal_proxy_on_simulation(jpsik_sample):
    tracks, reco = jpsik_sample["tracks"], jpsik_sample["reco"]
    has = reco["has_b"]
    proxy, q2, _keep = jpsik.signal_proxy(tracks, reco, np.arange(len(reco["has_b"])), seed=8)
    assert np.array_equal(np.diff(proxy.offsets), np.diff(tracks.offsets) - 2 * has)
    before = features.event_features(tracks, jpsik_sample["photons"], jpsik_sample["beam"])
    after = features.event_features(proxy, jpsik_sample["photons"], jpsik_sample["beam"])
    # removing the dimuon (about 3 GeV in the CMS) creates the missing energy of a signal decay
    assert np.mean(after["e_miss"][has] - before["e_miss"][has]) > 2.5
    assert 0.0 < np.mean(q2[has]) < (jpsik.M_BPLUS - jpsik.M_KAON) ** 2


def test_sm_q2_sampler_matches_the_generator():
    from scipy import stats

    from kvv.eventformat import Process
    from kvv.simulate.generator import generate_events

    generated = generate_events(Process.KNUNU, 5000, beams=Beams(), seed=5).q2
    sampled = jpsik.sample_sm_q2(np.random.default_rng(1).uniform(size=5000))
    assert stats.ks_2samp(generated[generated >= 0], sampled).pvalue > 0.01
