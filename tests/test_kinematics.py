"""Tests of kvv.physics.kinematics against vector, kvv.physics.beams and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import vector

from kvv.physics import kinematics as kin
from kvv.physics.beams import Beams

M_B = 5.27934  # GeV, PDG B+ mass


def offsets_from_counts(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def random_beams(rng, n):
    """Per-event beam four-momenta around the SuperKEKB nominal, sqrt(s) varied."""
    tot = np.array([Beams(sqrt_s=s).total for s in rng.uniform(10.50, 10.60, n)])
    tot[:, 1:] *= rng.uniform(0.9, 1.1, (n, 1))
    return tot


def cols(a: np.ndarray) -> np.ndarray:
    """Columns of a 2D array as contiguous rows (one numba specialisation for all tests)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64).T)


def vec4(p4: np.ndarray):
    return vector.array({"E": p4[:, 0], "px": p4[:, 1], "py": p4[:, 2], "pz": p4[:, 3]})


def test_boost_matches_vector_on_jagged_batch():
    rng = np.random.default_rng(1)
    counts = np.array([0, 1, 5, 0, 3, 2])
    offsets = offsets_from_counts(counts)
    n = offsets[-1]
    p = rng.normal(0, 1, (n, 3))
    e = np.sqrt((p**2).sum(1) + rng.uniform(0, 1, n) ** 2)
    beam = random_beams(rng, len(counts))
    got = np.stack(kin.boost_to_cms(offsets, e, *cols(p), *cols(beam)), axis=1)

    per_object_beam = np.repeat(beam, counts, axis=0)
    want = vec4(np.column_stack([e, p])).boostCM_of_p4(vec4(per_object_beam))
    np.testing.assert_allclose(got[:, 0], want.E, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[:, 1:], np.column_stack([want.px, want.py, want.pz]), atol=1e-12)


def test_boost_takes_beam_to_rest_and_matches_beams_matrix():
    beams = Beams()
    tot = beams.total
    objects = np.array([tot, beams.her, beams.ler])
    offsets = np.array([0, 3], dtype=np.int64)
    got = np.stack(kin.boost_to_cms(offsets, *cols(objects), *cols(tot[None, :])), axis=1)
    np.testing.assert_allclose(got, (beams.lab_to_cms @ objects.T).T, atol=1e-12)
    np.testing.assert_allclose(got[0], [beams.sqrt_s, 0, 0, 0], atol=1e-12)
    # the beams are back to back with sqrt(s)/2 each in the CMS
    np.testing.assert_allclose(got[1:, 0], beams.sqrt_s / 2, rtol=1e-12)


def test_boost_with_beam_at_rest_is_identity():
    offsets = np.array([0, 1], dtype=np.int64)
    obj = np.array([[2.0, 0.3, -0.4, 1.0]])
    got = np.stack(kin.boost_to_cms(offsets, *cols(obj), *cols([[10.58, 0.0, 0.0, 0.0]])), axis=1)
    np.testing.assert_allclose(got, obj)


def test_masses_come_from_particle():
    assert kin.M_KAON == pytest.approx(0.493677, abs=1e-6)
    assert kin.M_PION == pytest.approx(0.13957039, abs=1e-7)


def select(offsets, px, py, pxd, kid, **kw):
    return kin.select_kaon(offsets, px, py, pxd, kid, kw.get("min_pxd", 1), kw.get("cut", -np.inf))


def test_select_kaon_rules():
    # event 0: the hardest track has no PXD hit -> second hardest
    # event 1: tie in pT (different directions) -> first one
    # event 2: no PXD hit at all -> -1;  event 3: empty -> -1
    offsets = offsets_from_counts([3, 3, 2, 0])
    px = np.array([3.0, 1.0, 2.0, 1.0, 0.0, 0.5, 1.0, 2.0])
    py = np.array([0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0])
    pxd = np.array([0, 1, 1, 1, 2, 1, 0, 0], dtype=np.int32)
    kid = np.array([0.9, 0.95, 0.2, 0.1, 0.99, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(select(offsets, px, py, pxd, kid), [2, 0, -1, -1])
    # PID cut: strictly above
    np.testing.assert_array_equal(select(offsets, px, py, pxd, kid, cut=0.2), [1, 1, -1, -1])
    np.testing.assert_array_equal(select(offsets, px, py, pxd, kid, cut=0.99), [-1, -1, -1, -1])
    # PXD requirement configurable
    np.testing.assert_array_equal(select(offsets, px, py, pxd, kid, min_pxd=0), [0, 0, 1, -1])
    np.testing.assert_array_equal(select(offsets, px, py, pxd, kid, min_pxd=2), [-1, 1, -1, -1])


def test_select_kaon_rejects_nan_pid_under_a_cut():
    offsets = offsets_from_counts([2])
    got = select(offsets, np.array([2.0, 1.0]), np.zeros(2), np.ones(2, np.int32), np.array([np.nan, 0.5]), cut=0.1)
    np.testing.assert_array_equal(got, [1])


def test_select_kaon_matches_brute_force():
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 8, 500)
    offsets = offsets_from_counts(counts)
    n = offsets[-1]
    px, py = rng.normal(size=(2, n))
    pxd = rng.integers(0, 3, n).astype(np.int32)
    kid = rng.uniform(0, 1, n)
    got = select(offsets, px, py, pxd, kid, cut=0.3)
    for i in range(len(counts)):
        sl = slice(offsets[i], offsets[i + 1])
        pt = np.hypot(px[sl], py[sl])
        ok = (pxd[sl] >= 1) & (kid[sl] > 0.3)
        want = int(np.argmax(np.where(ok, pt, -1.0))) if ok.any() else -1
        assert got[i] == want


def test_kaon_first_objects_order_and_mass_hypotheses():
    track_offsets = offsets_from_counts([3, 0, 1])
    tp = np.array([[0.1, 0.2, 0.3], [1.0, 0.0, 0.5], [0.0, -0.4, 0.2], [0.2, 0.2, 0.2]])
    photon_offsets = offsets_from_counts([1, 2, 0])
    energy = np.array([0.5, 0.2, 1.0])
    theta = np.array([0.3, 1.5, 2.5])
    phi = np.array([-2.0, 0.1, 3.0])
    kaon = np.array([1, -1, -1])
    offsets, e, px, py, pz = kin.kaon_first_objects(track_offsets, *cols(tp), photon_offsets, energy, theta, phi, kaon)
    np.testing.assert_array_equal(offsets, [0, 4, 6, 7])
    p = np.column_stack([px, py, pz])
    np.testing.assert_allclose(p[[0, 1, 2, 6]], tp[[1, 0, 2, 3]])
    masses = vec4(np.column_stack([e, p])).mass
    np.testing.assert_allclose(masses, [kin.M_KAON, kin.M_PION, kin.M_PION, 0, 0, 0, kin.M_PION], atol=1e-7)
    photon_p = vector.array({"rho": energy * np.sin(theta), "phi": phi, "theta": theta})
    np.testing.assert_allclose(p[[3, 4, 5]], np.column_stack([photon_p.x, photon_p.y, photon_p.z]), atol=1e-12)


def test_four_momentum_sum_with_empty_events():
    offsets = offsets_from_counts([0, 2, 0, 1])
    p4 = np.arange(12, dtype=float).reshape(3, 4)
    got = kin.four_momentum_sum(offsets[:-1], offsets[1:], *cols(p4))
    np.testing.assert_allclose(got, [[0] * 4, p4[0] + p4[1], [0] * 4, p4[2]])


def test_roe_track_stats_match_numpy():
    rng = np.random.default_rng(3)
    counts = np.array([0, 1, 1, 4, 6])
    offsets = offsets_from_counts(counts)
    charge = rng.choice([-1.0, 1.0], offsets[-1])
    dz = rng.normal(0, 0.5, offsets[-1])
    kaon = np.array([-1, 0, -1, 2, 5])
    q, mean, spread = kin.roe_track_stats(offsets, charge, dz, kaon)
    for i, k in enumerate(kaon):
        keep = np.ones(counts[i], bool)
        if k >= 0:
            keep[k] = False
        sl = slice(offsets[i], offsets[i + 1])
        assert q[i] == charge[sl][keep].sum()
        assert mean[i] == pytest.approx(dz[sl][keep].mean() if keep.any() else 0.0)
        assert spread[i] == pytest.approx(dz[sl][keep].std() if keep.any() else 0.0)


def test_mbc_of_b_at_rest_and_moving():
    e_beam = np.array([M_B, M_B, 5.29])
    p = np.array([0.0, 0.3, 6.0])
    np.testing.assert_allclose(kin.beam_constrained_mass(e_beam, p), [M_B, np.sqrt(M_B**2 - 0.09), 0.0])


def test_q2_rec_recovers_q2_for_b_at_rest():
    # B at rest -> K + (nu nubar of mass^2 q2): E*_K = (M_B^2 + M_K^2 - q2) / (2 M_B)
    q2 = np.array([0.0, 5.0, 12.0, (M_B - kin.M_KAON) ** 2])
    e_kaon = (M_B**2 + kin.M_KAON**2 - q2) / (2 * M_B)
    np.testing.assert_allclose(kin.q2_rec(e_kaon, np.full(4, 2 * M_B)), q2, atol=1e-12)


def test_invariant_mass_and_cos_theta():
    rng = np.random.default_rng(5)
    p = rng.normal(size=(20, 3))
    p4 = np.column_stack([np.sqrt((p**2).sum(1) + 0.25), p])
    np.testing.assert_allclose(kin.invariant_mass(p4), vec4(p4).mass, rtol=1e-10)
    np.testing.assert_allclose(kin.cos_theta(*p.T), np.cos(vec4(p4).theta), atol=1e-12)
    assert kin.cos_theta(np.zeros(1), np.zeros(1), np.zeros(1))[0] == 0.0
