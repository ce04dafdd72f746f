"""Parity of kvv's fit code (:mod:`kvv.fit`) with pyhf.

kvv keeps its own minimisation and inference code because it is faster and more
robust than pyhf's (a jitted ``-2 ln L``, a chain of optimisers; plain
pyhf + MINUIT fails the mu = 0 fit of the published Belle II likelihood).  These
tests prove that it nevertheless computes the same numbers as pyhf:

* on the published Belle II B+ -> K+ nu nubar likelihood
  (``tests/data/belle2_bknunu_combined_likelihood.json``), with pyhf on its JAX
  backend and the scipy optimiser, the configuration with public reference
  numbers (CLs = 0.1007 at mu = 6.33 and 0.0501 at mu = 6.84):

  - the maximum-likelihood fit: best-fit POI, ``-2 ln L`` at the minimum and the
    POI's Hessian uncertainty;
  - asymptotic q~_mu CLs, observed and the five points of the expected band, at three POI values;
  - the 90 % CL observed upper limit;

* on a two-bin toy model, CLs from pseudo-experiments, which must agree within
  the statistical errors of the two toy ensembles.

Every pyhf number is computed here, independently of kvv; no expectation is
copied from kvv's output.  pyhf's backend is global state: each pyhf section
switches it only for its own duration (:func:`pyhf_backend`), and an autouse
fixture restores the caller's backend after every test, because the other test
files assume pyhf's default.  kvv's :class:`~kvv.fit.Likelihood` switches to
pyhf's JAX backend by itself, only while it traces the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyhf
import pytest

from kvv.fit import Likelihood, hypotest, mle, toy_cls, upper_limit

pytestmark = pytest.mark.slow

BELLE2 = Path(__file__).parent / "data" / "belle2_bknunu_combined_likelihood.json"

#: published pyhf 0.7.6 (JAX backend, scipy optimiser) observed q~_mu CLs of the Belle II likelihood
PUBLISHED_CLS = {6.33: 0.1007, 6.84: 0.0501}

#: POI values of the asymptotic CLs comparison: the two published points bracket the
#: 90 % CL limit; 4.0 lies below the best-fit mu (~4.6), where q~_mu = 0 (one-sided branch)
CLS_POINTS = (4.0, 6.33, 6.84)

#: relative tolerance of every asymptotic comparison
RTOL = 5e-3


@contextlib.contextmanager
def pyhf_backend(*backend: str) -> Iterator[None]:
    """Switch pyhf to ``backend`` (name, optimiser) and restore the previous one afterwards."""
    previous = pyhf.get_backend()
    pyhf.set_backend(*backend)
    try:
        yield
    finally:
        pyhf.set_backend(*previous)


@pytest.fixture(autouse=True)
def _restore_pyhf_backend() -> Iterator[None]:
    """Leave pyhf's global backend as each test found it."""
    previous = pyhf.get_backend()
    yield
    pyhf.set_backend(*previous)


class Belle2Pyhf:
    """pyhf's own results for the Belle II likelihood, each computed once on pyhf's JAX backend + scipy."""

    BACKEND = ("jax", "scipy")

    def __init__(self, spec: dict) -> None:
        with pyhf_backend(*self.BACKEND):
            workspace = pyhf.Workspace(spec)
            self.model = workspace.model()
            self.data = workspace.data(self.model)
        self.poi_index = self.model.config.poi_index
        self._mle: dict | None = None
        self._cls: dict[float, tuple[float, float]] = {}

    def mle(self) -> dict:
        """Best fit, ``-2 ln L`` there and Hessian uncertainties of the free parameters."""
        if self._mle is None:
            import jax
            import jax.numpy as jnp

            with pyhf_backend(*self.BACKEND):
                bestfit, twice_nll = pyhf.infer.mle.fit(self.data, self.model, return_fitted_val=True)
                # pyhf's scipy optimiser ignores return_uncertainties (only MINUIT reports errors):
                # the errors come from the exact Hessian of pyhf's -2 ln L, by JAX autodiff
                data = jnp.asarray(self.data)
                hessian = jax.jit(jax.hessian(lambda pars: -2.0 * self.model.logpdf(pars, data)[0]))
                hess = np.asarray(hessian(jnp.asarray(bestfit)))
            free = ~np.asarray(self.model.config.suggested_fixed(), dtype=bool)
            cov = np.zeros_like(hess)
            cov[np.ix_(free, free)] = 2.0 * np.linalg.inv(hess[np.ix_(free, free)])  # t = -2 ln L
            self._mle = {
                "bestfit": np.asarray(bestfit, dtype=float),
                "twice_nll": float(twice_nll),
                "uncertainty": np.sqrt(np.diag(cov)),
            }
        return self._mle

    def cls(self, mu: float) -> tuple[float, np.ndarray]:
        """Asymptotic q~_mu CLs at ``mu``: (observed, the expected band at +2 .. -2 sigma)."""
        if mu not in self._cls:
            with pyhf_backend(*self.BACKEND):
                observed, expected = pyhf.infer.hypotest(mu, self.data, self.model, test_stat="qtilde", return_expected_set=True)
            self._cls[mu] = (float(observed), np.asarray(expected, dtype=float))
        return self._cls[mu]


@pytest.fixture(scope="module")
def belle2_spec() -> dict:
    return json.loads(BELLE2.read_text())


@pytest.fixture(scope="module")
def belle2_pyhf(belle2_spec) -> Belle2Pyhf:
    return Belle2Pyhf(belle2_spec)


@pytest.fixture(scope="module")
def belle2_kvv(belle2_spec) -> Likelihood:
    return Likelihood.from_workspace(belle2_spec)


# ---------------------------------------------------------------------------------------------
# Belle II likelihood: MLE, asymptotic CLs, upper limit
# ---------------------------------------------------------------------------------------------


def test_same_likelihood_function(belle2_pyhf, belle2_kvv):
    """kvv's -2 ln L is pyhf's: same parameters, same data, same value at pyhf's best fit."""
    assert belle2_kvv.names == list(belle2_pyhf.model.config.par_names)
    assert belle2_kvv.poi_index == belle2_pyhf.poi_index
    np.testing.assert_array_equal(belle2_kvv.data, np.asarray(belle2_pyhf.data, dtype=float))
    np.testing.assert_array_equal(belle2_kvv.bounds, np.asarray(belle2_pyhf.model.config.suggested_bounds()))
    reference = belle2_pyhf.mle()
    assert belle2_kvv.twice_nll(reference["bestfit"]) == pytest.approx(reference["twice_nll"], abs=1e-8)


def test_mle_parity(belle2_pyhf, belle2_kvv):
    reference = belle2_pyhf.mle()
    fit = mle(belle2_kvv, minos=False)  # MINOS has no pyhf counterpart here
    poi = belle2_kvv.poi_index
    assert fit.success
    assert fit.bestfit[poi] == pytest.approx(reference["bestfit"][poi], rel=RTOL)
    assert fit.twice_nll == pytest.approx(reference["twice_nll"], abs=1e-3)
    assert fit.uncertainty[poi] == pytest.approx(reference["uncertainty"][poi], rel=RTOL)
    # the whole best-fit point agrees, in units of pyhf's Hessian errors
    pulls = (fit.bestfit - reference["bestfit"]) / reference["uncertainty"]
    assert np.max(np.abs(pulls)) < 0.05


@pytest.mark.parametrize("mu", sorted(PUBLISHED_CLS))
def test_pyhf_reproduces_published_cls(belle2_pyhf, mu):
    """Sanity check of the reference itself: the published CLs, rounded to its last digit."""
    observed, _ = belle2_pyhf.cls(mu)
    assert observed == pytest.approx(PUBLISHED_CLS[mu], abs=5e-5)


@pytest.mark.parametrize("mu", CLS_POINTS)
def test_asymptotic_cls_parity(belle2_pyhf, belle2_kvv, mu):
    observed, expected = belle2_pyhf.cls(mu)
    result = hypotest(belle2_kvv, mu)
    assert result.cls_observed == pytest.approx(observed, rel=RTOL)
    # the whole band: its lower side is where a q_mu formula applied to q~ went wrong
    np.testing.assert_allclose(result.cls_expected, expected, rtol=RTOL)


def test_upper_limit_parity(belle2_pyhf, belle2_kvv):
    # pyhf's own limit scan (pyhf.infer.intervals.upper_limits) would need a dozen hypotests;
    # instead the pyhf limit is the log-linear interpolation, to CLs = 0.10, of pyhf's CLs at
    # the two published points, which bracket it.  log CLs is smooth and nearly linear in mu,
    # and the crossing lies within 0.01 of 6.33, so the interpolation error is far below 0.5 %.
    low, high = 6.33, 6.84
    cls_low, cls_high = belle2_pyhf.cls(low)[0], belle2_pyhf.cls(high)[0]
    alpha = 0.10
    assert cls_low > alpha > cls_high
    pyhf_limit = low + (math.log(alpha) - math.log(cls_low)) / (math.log(cls_high) - math.log(cls_low)) * (high - low)

    limit = upper_limit(belle2_kvv, 0.90).observed
    assert limit == pytest.approx(pyhf_limit, rel=RTOL)
    assert hypotest(belle2_kvv, limit).cls_observed == pytest.approx(alpha, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Toy-based CLs on a small model
# ---------------------------------------------------------------------------------------------

#: toys per hypothesis: ~10 s per side; the CLs errors are then ~10 % of CLs ~ 0.1
N_TOYS = 1500
#: asymptotic CLs ~ 0.10 for this model and data
TOY_MU = 1.5
TOY_OBSERVATIONS = [12.0, 10.0]


def _binomial_error(p: float, n: int) -> float:
    return math.sqrt(p * (1.0 - p) / n)


def _cls_error(clsb: float, clb: float, n: int) -> float:
    """Error of CLs = CLs+b / CLb from the binomial errors of two independent toy ensembles of size ``n``."""
    return clsb / clb * math.hypot(_binomial_error(clsb, n) / clsb, _binomial_error(clb, n) / clb)


@pytest.fixture(scope="module")
def toy_model():
    with pyhf_backend("numpy", "scipy"):
        model = pyhf.simplemodels.uncorrelated_background(signal=[5.0, 3.0], bkg=[10.0, 8.0], bkg_uncertainty=[2.0, 1.5])
        workspace = pyhf.Workspace.build(model, TOY_OBSERVATIONS)
        data = workspace.data(model)
    return model, data, dict(workspace)


@pytest.fixture(scope="module")
def pyhf_toy_cls(toy_model) -> dict:
    model, data, _ = toy_model
    # pyhf.infer.hypotest(calctype="toybased") fails with NumPy >= 2 in pyhf 0.7.6 (its expected
    # band calls np.percentile(interpolation=...)); the observed CLs it would return is
    # computed here with the same calculator calls, expected band left out
    # pyhf's NumPy backend samples from NumPy's global generator, so that is what must be seeded
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(20250712)  # noqa: NPY002
    try:
        with pyhf_backend("numpy", "scipy"):
            calc = pyhf.infer.calculators.ToyCalculator(data, model, test_stat="qtilde", ntoys=N_TOYS, track_progress=False)
            q_obs = calc.teststatistic(TOY_MU)
            clsb, clb, cls = calc.pvalues(q_obs, *calc.distributions(TOY_MU))
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return {"q_obs": float(q_obs), "cls": float(cls), "clsb": float(clsb), "clb": float(clb)}


def test_toy_cls_parity(toy_model, pyhf_toy_cls):
    *_, spec = toy_model
    result = dataclasses.asdict(toy_cls(Likelihood.from_workspace(spec), TOY_MU, n_toys=N_TOYS, seed=1))
    reference = pyhf_toy_cls

    assert result["failed_toys"] == 0
    # same observed test statistic (deterministic: fits only)
    assert result["q_obs"] == pytest.approx(reference["q_obs"], abs=1e-4)
    # tail probabilities and CLs agree within 3 combined standard deviations of the two ensembles
    for name in ("clsb", "clb"):
        sigma = math.hypot(_binomial_error(result[name], N_TOYS), _binomial_error(reference[name], N_TOYS))
        assert abs(result[name] - reference[name]) < 3 * sigma, name
    sigma = math.hypot(_cls_error(result["clsb"], result["clb"], N_TOYS), _cls_error(reference["clsb"], reference["clb"], N_TOYS))
    assert abs(result["cls"] - reference["cls"]) < 3 * sigma
