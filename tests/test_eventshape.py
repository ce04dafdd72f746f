"""Tests of kvv.physics.eventshape against numpy brute force and hand-computed configurations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import eval_legendre

from kvv.physics import eventshape as es


def ranges(counts):
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets[:-1], offsets[1:]


def random_batch(rng, counts):
    """Momenta with an exponential |p| spectrum and isotropic directions, shape (n, 3)."""
    n = int(np.sum(counts))
    return rng.normal(size=(n, 3)) * rng.exponential(1.0, (n, 1))


def split(p, counts):
    return np.split(p, np.cumsum(counts)[:-1])


def brute_thrust(p: np.ndarray) -> float:
    """max over all sign assignments of |sum s_i p_i| / sum |p_i|."""
    if len(p) == 0:
        return 0.0
    signs = np.array(list(itertools.product([1.0, -1.0], repeat=len(p) - 1)))
    signs = np.hstack([np.ones((len(signs), 1)), signs])
    return np.linalg.norm(signs @ p, axis=1).max() / np.linalg.norm(p, axis=1).sum()


def brute_fox_wolfram(p: np.ndarray, lmax: int = es.FW_LMAX) -> np.ndarray:
    """Direct double sum over ordered pairs with scipy Legendre polynomials."""
    mag = np.linalg.norm(p, axis=1)
    cos = np.clip((p @ p.T) / np.outer(mag, mag), -1, 1) if len(p) else np.zeros((0, 0))
    w = np.outer(mag, mag)
    return np.array([(w * eval_legendre(ell, cos)).sum() for ell in range(lmax + 1)])


OCTAHEDRON = np.vstack([np.eye(3), -np.eye(3)])
GOLDEN = (1 + np.sqrt(5)) / 2
ICOSAHEDRON = np.array(
    [[s1, s2 * GOLDEN, 0] for s1 in (-1, 1) for s2 in (-1, 1)]
    + [[0, s1, s2 * GOLDEN] for s1 in (-1, 1) for s2 in (-1, 1)]
    + [[s2 * GOLDEN, 0, s1] for s1 in (-1, 1) for s2 in (-1, 1)]
)


def run(kernel, events, *extra):
    counts = [len(e) for e in events]
    p = np.vstack([np.reshape(e, (-1, 3)) for e in events]) if events else np.zeros((0, 3))
    return kernel(*ranges(counts), *np.ascontiguousarray(p.T), *extra)


@pytest.mark.parametrize("n", range(1, es.EXACT_THRUST_MAX_N + 1))
def test_thrust_exact_matches_brute_force(n):
    rng = np.random.default_rng(n)
    counts = np.full(40, n)
    p = random_batch(rng, counts)
    value, axis = run(es.thrust, split(p, counts))
    for t, a, ev in zip(value, axis, split(p, counts), strict=True):
        assert t == pytest.approx(brute_thrust(ev), rel=1e-12)
        # the axis reproduces the value and is a unit vector with a_z >= 0
        assert np.abs(ev @ a).sum() / np.linalg.norm(ev, axis=1).sum() == pytest.approx(t, rel=1e-12)
        assert np.linalg.norm(a) == pytest.approx(1.0) and a[2] >= 0


@pytest.mark.parametrize("n", [es.EXACT_THRUST_MAX_N + 1, 13, 15])
def test_thrust_iterative_beyond_exact_range(n):
    rng = np.random.default_rng(n)
    counts = np.full(100, n)
    p = random_batch(rng, counts)
    value, _axis = run(es.thrust, split(p, counts))
    want = np.array([brute_thrust(ev) for ev in split(p, counts)])
    # a local maximum: never above the true thrust, equal in the vast majority of events
    assert np.all(value <= want * (1 + 1e-12))
    assert np.mean(np.isclose(value, want, rtol=1e-12)) >= 0.95
    assert np.all(value >= 0.95 * want)


def test_thrust_hand_cases():
    back_to_back = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, -2.0]])
    single = np.array([[1.0, -2.0, 0.5]])
    value, axis = run(es.thrust, [back_to_back, OCTAHEDRON, single, np.zeros((0, 3)), np.zeros((1, 3))])
    np.testing.assert_allclose(value, [1.0, 1 / np.sqrt(3), 1.0, 0.0, 0.0])
    np.testing.assert_allclose(axis[0], [0, 0, 1])
    np.testing.assert_allclose(np.abs(axis[1]), np.full(3, 1 / np.sqrt(3)))
    np.testing.assert_allclose(axis[2], single[0] / np.linalg.norm(single[0]))
    np.testing.assert_array_equal(axis[3:], 0.0)


def test_fox_wolfram_matches_double_sum():
    rng = np.random.default_rng(2)
    counts = np.array([0, 1, 2, 5, 13, 30])
    p = random_batch(rng, counts)
    got = run(es.fox_wolfram, split(p, counts))
    want = np.array([brute_fox_wolfram(ev) for ev in split(p, counts)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    r = es.normalise(got)
    np.testing.assert_array_equal(r[0], 0.0)  # empty event: sentinel 0
    np.testing.assert_allclose(r[1], 1.0)  # one object: R_l = P_l(1) = 1


def test_fox_wolfram_hand_cases():
    back_to_back = np.array([[0.3, 0.4, 1.2], [-0.3, -0.4, -1.2]])
    r = es.normalise(run(es.fox_wolfram, [back_to_back, OCTAHEDRON, ICOSAHEDRON]))
    np.testing.assert_allclose(r[0], [1, 0, 1, 0, 1], atol=1e-12)  # R2 = 1, odd moments vanish
    np.testing.assert_allclose(r[1, :4], [1, 0, 0, 0], atol=1e-12)  # cubic symmetry: R2 = 0
    np.testing.assert_allclose(r[2], [1, 0, 0, 0, 0], atol=1e-12)  # icosahedron: R1..R5 = 0


def test_axis_legendre_matches_numpy():
    rng = np.random.default_rng(4)
    counts = np.array([3, 0, 7, 1])
    p = random_batch(rng, counts)
    axis = rng.normal(size=(4, 3))
    axis[3] = 0.0  # null axis -> zeros
    got = run(es.axis_legendre, split(p, counts), axis)
    for g, ev, a in zip(got, split(p, counts), axis, strict=True):
        if len(ev) == 0 or not a.any():
            np.testing.assert_array_equal(g, 0.0)
            continue
        mag = np.linalg.norm(ev, axis=1)
        cos = ev @ a / (mag * np.linalg.norm(a))
        want = [(mag * eval_legendre(ell, cos)).sum() for ell in range(es.FW_LMAX + 1)]
        np.testing.assert_allclose(g, want, rtol=1e-12)


def test_sphericity_matches_eigvalsh():
    rng = np.random.default_rng(6)
    counts = np.array([0, 1, 2, 3, 10, 25])
    p = random_batch(rng, counts)
    sph, apl = run(es.sphericity, split(p, counts))
    for s, a, ev in zip(sph, apl, split(p, counts), strict=True):
        if len(ev) == 0:
            assert s == 0.0 and a == 0.0
            continue
        lam = np.sort(np.linalg.eigvalsh(ev.T @ ev / (ev**2).sum()))[::-1]
        # closed-form eigenvalues lose ~sqrt(eps) for (near-)degenerate pairs
        assert s == pytest.approx(1.5 * (lam[1] + lam[2]), abs=1e-7)
        assert a == pytest.approx(1.5 * max(lam[2], 0.0), abs=1e-7)
        assert a >= 0.0


def test_sphericity_hand_cases():
    sph, apl = run(es.sphericity, [OCTAHEDRON, np.array([[1.0, 0, 0], [-1.0, 0, 0]]), np.array([[1.0, 2, 3]])])
    np.testing.assert_allclose(sph, [1.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(apl, [0.5, 0.0, 0.0], atol=1e-7)
    assert np.all(apl >= 0.0)


def test_cleo_cones_match_numpy_binning():
    rng = np.random.default_rng(8)
    counts = np.array([0, 1, 15, 40])
    p = random_batch(rng, counts)
    axis = rng.normal(size=(4, 3))
    got = run(es.cleo_cones, split(p, counts), axis)
    for g, ev, a in zip(got, split(p, counts), axis, strict=True):
        mag = np.linalg.norm(ev, axis=1)
        angle = np.degrees(np.arccos(np.clip(ev @ a / (mag * np.linalg.norm(a)), -1, 1)))
        folded = np.minimum(angle, 180 - angle)
        want = np.bincount(np.minimum(folded // 10, 8).astype(int), weights=mag, minlength=9)
        np.testing.assert_allclose(g, want, atol=1e-12)
        assert g.sum() == pytest.approx(mag.sum())


def test_cleo_cones_fold_both_hemispheres():
    axis = np.array([[0.0, 0.0, 1.0]])
    ev = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -2.0], [1.0, 0.0, 0.0], [np.sin(0.3), 0, np.cos(0.3)]])
    got = run(es.cleo_cones, [ev], axis)[0]
    np.testing.assert_allclose(got, [3.0, 1.0, 0, 0, 0, 0, 0, 0, 1.0])  # 0.3 rad = 17.2 deg


def test_transverse_energy():
    rng = np.random.default_rng(9)
    counts = np.array([0, 4, 1])
    p = random_batch(rng, counts)
    got = es.transverse_energy(*ranges(counts), p[:, 0].copy(), p[:, 1].copy())
    want = [np.hypot(ev[:, 0], ev[:, 1]).sum() for ev in split(p, counts)]
    np.testing.assert_allclose(got, want)
