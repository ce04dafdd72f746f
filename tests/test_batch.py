"""Fits of many toys at once (kvv.fit.batch) against the one-by-one optimiser chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kvv.fit import Likelihood, batch
from kvv.fit.batch import hessian_batch, minimize_batch
from kvv.fit.optimize import minimize

DEFAULT_WORKSPACE = Path(__file__).parent / "data" / "ita2021_default_workspace.json"


@pytest.fixture(scope="module")
def default_lh() -> Likelihood:
    lh = Likelihood.from_workspace(DEFAULT_WORKSPACE)
    lh.bounds[lh.poi_index] = (-10.0, 60.0)  # the injection study's widened range: toys' mu scatter by ~40
    return lh


def _toys(lh: Likelihood, mu: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    truth = lh.init.copy()
    truth[lh.poi_index] = mu
    rng = np.random.default_rng(seed)
    return truth, np.asarray([lh.toy(truth, rng) for _ in range(n)])


def _chain(lh: Likelihood, toys: np.ndarray, init: np.ndarray, fixed: dict[int, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    fits = [minimize(lh, toy, init=init, fixed=fixed) for toy in toys]
    assert all(f.success for f in fits)
    return np.asarray([f.x for f in fits]), np.asarray([f.fval for f in fits])


@pytest.mark.parametrize("fixed_mu", [None, 5.0])
def test_batch_minima_equal_the_chain(default_lh, fixed_mu):
    """More toys than lanes, free and with the POI fixed: each minimum is the chain's, or lower."""
    lh = default_lh
    truth, toys = _toys(lh, 5.0, batch.FISHER_LANES + 16, seed=4)
    fixed = None if fixed_mu is None else {lh.poi_index: fixed_mu}
    fits = minimize_batch(lh, toys, init=truth, fixed=fixed)
    assert fits.success.all()
    sample = np.arange(0, len(toys), 4)  # the chain is slow: every fourth toy
    _, fval = _chain(lh, toys[sample], truth, fixed)
    # the chain stops at |grad| < 2e-2, which on these flat likelihoods leaves up to ~1e-3 in -2 ln L
    assert np.all(fits.fval[sample] <= fval + 1e-6)
    assert np.all(fits.fval[sample] >= fval - 2e-3)
    if fixed_mu is not None:
        assert np.all(fits.x[:, lh.poi_index] == fixed_mu)
    for k, toy in enumerate(toys[sample]):  # the batch's point is a minimum: its gradient vanishes
        grad = lh.value_and_grad(fits.x[sample[k]], toy)[1]
        free = ~lh.fixed & (np.arange(lh.npars) != (lh.poi_index if fixed else -1))
        inside = free & (fits.x[sample[k]] > lh.bounds[:, 0] + 1e-8) & (fits.x[sample[k]] < lh.bounds[:, 1] - 1e-8)
        assert np.abs(grad[inside]).max() < 2e-2


def test_batch_answers_do_not_depend_on_the_lanes(default_lh):
    """A toy's fit is the same whichever toys share its calls and in which lane it runs."""
    lh = default_lh
    truth, toys = _toys(lh, 1.0, 40, seed=8)
    together = minimize_batch(lh, toys, init=truth)
    alone = minimize_batch(lh, toys[17:23][::-1], init=truth)
    # to rounding: the last few toys run in narrower calls, whose vectorised arithmetic can round differently
    np.testing.assert_allclose(alone.x, together.x[17:23][::-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(alone.fval, together.fval[17:23][::-1], rtol=1e-13, atol=0)


def test_unconverged_toys_are_refitted(monkeypatch):
    """Toys the iteration does not converge go through the chain; their answers are the chain's."""
    monkeypatch.setattr(batch, "FISHER_MAX_STEPS", 1)
    lh = Likelihood.from_workspace(DEFAULT_WORKSPACE)  # its own: the iteration is compiled with this step limit
    truth, toys = _toys(lh, 1.0, 6, seed=9)
    fits = minimize_batch(lh, toys, init=truth)
    assert fits.refitted == len(toys)
    x, fval = _chain(lh, toys, truth)
    np.testing.assert_array_equal(fits.fval, fval)
    np.testing.assert_array_equal(fits.x, x)


def test_counting_model_minimum_in_closed_form():
    """One bin n ~ Poisson(mu s + b), no nuisance parameters: mu_hat = (n - b) / s inside the bounds."""
    s, b = 5.0, 10.0
    spec = {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {"name": "signal", "data": [s], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "background", "data": [b], "modifiers": []},
                ],
            }
        ],
        "observations": [{"name": "sr", "data": [12.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[-2.0, 10.0]]}]}}],
        "version": "1.0.0",
    }
    lh = Likelihood.from_workspace(spec)
    counts = np.array([[3.0], [10.0], [12.0], [25.0], [40.0], [70.0]])
    fits = minimize_batch(lh, counts, init=lh.init)
    expected = np.clip((counts[:, 0] - b) / s, -2.0, 10.0)
    np.testing.assert_allclose(fits.x[:, lh.poi_index], expected, atol=1e-6)


def test_hessian_batch_equals_the_likelihoods(default_lh):
    lh = default_lh
    truth, toys = _toys(lh, 1.0, batch.FISHER_LANES + 3, seed=10)
    fits = minimize_batch(lh, toys, init=truth)
    curvatures = hessian_batch(lh, fits.x, toys)
    assert len(curvatures) == len(toys)
    for k in (0, batch.FISHER_LANES, len(toys) - 1):
        # the same differences of gradients that agree to rounding, which the 1e-5 steps magnify to ~1e-8
        np.testing.assert_allclose(curvatures[k].hessian, lh.hessian(fits.x[k], toys[k]), rtol=1e-6, atol=1e-6)
    assert hessian_batch(lh, np.empty((0, lh.npars)), np.empty((0, toys.shape[1]))) == []
