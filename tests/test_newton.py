"""Newton steps from a nearby minimum's Hessian: the same minima as the optimiser chain, with far fewer evaluations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyhf
import pytest

from kvv.fit import Likelihood
from kvv.fit.optimize import Curvature, minimize

BELLE2 = Path(__file__).parent / "data" / "belle2_bknunu_combined_likelihood.json"


@pytest.fixture(scope="module")
def belle2():
    lh = Likelihood.from_workspace(BELLE2)
    fit = minimize(lh)
    return lh, fit, Curvature.at(lh, fit.x)


@pytest.mark.parametrize("mu", [1.0, 6.33, 9.0])
def test_fixed_poi_fits_match_the_chain(belle2, mu):
    lh, fit, curvature = belle2
    poi = lh.poi_index
    newton = minimize(lh, init=fit.x, fixed={poi: mu}, curvature=curvature)
    chain = minimize(lh, init=fit.x, fixed={poi: mu})
    assert newton.success and newton.optimizer == "newton"
    assert newton.x[poi] == mu
    # the same minimum, reached at least as closely, with a fraction of the evaluations
    assert newton.fval == pytest.approx(chain.fval, abs=1e-4)
    assert newton.fval <= chain.fval + 1e-6
    assert newton.nfev * 5 < chain.nfev


def test_asimov_fits_from_the_observed_curvature(belle2):
    lh, fit, curvature = belle2
    asimov = lh.expected_data(fit.x)
    newton = minimize(lh, asimov, init=fit.x, fixed={lh.poi_index: 3.0}, curvature=curvature)
    chain = minimize(lh, asimov, init=fit.x, fixed={lh.poi_index: 3.0})
    assert newton.success and newton.fval == pytest.approx(chain.fval, abs=1e-4)


def test_a_useless_curvature_falls_back_to_the_chain(belle2):
    lh, fit, curvature = belle2
    indefinite = Curvature(curvature.free, -np.eye(len(curvature.hessian)))
    result = minimize(lh, init=fit.x, fixed={lh.poi_index: 6.33}, curvature=indefinite)
    assert result.success and result.optimizer != "newton"
    assert "newton: error" in result.attempts[0]
    assert result.fval == pytest.approx(minimize(lh, init=fit.x, fixed={lh.poi_index: 6.33}).fval, abs=1e-4)


def test_minimum_on_a_bound():
    """Fewer events than the background alone: mu-hat sits at its lower bound 0, where the gradient pushes outwards."""
    spec = {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {"name": "signal", "data": [3.0, 6.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {
                        "name": "bkg",
                        "data": [50.0, 40.0],
                        "modifiers": [{"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}],
                    },
                ],
            }
        ],
        "observations": [{"name": "sr", "data": [40.0, 30.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    lh = Likelihood.from_workspace(pyhf.Workspace(spec))
    start = lh.init.copy()
    curvature = Curvature.at(lh, start, lh.expected_data(start))
    newton = minimize(lh, curvature=curvature)
    chain = minimize(lh)
    assert newton.optimizer == "newton" and newton.x[lh.poi_index] == 0.0
    assert newton.fval == pytest.approx(chain.fval, abs=1e-6)
    np.testing.assert_allclose(newton.x, chain.x, atol=2e-3)
