"""kvv's own HistFactory -2 ln L against pyhf's logpdf, value and gradient, over every branch of its modifiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kvv.fit.histfactory import code4_coefficients, model_functions
from kvv.fit.likelihood import Likelihood, _jax

DATA = Path(__file__).parent / "data"


def _mixed_workspace() -> dict:
    """Two channels, a staterror per sample in one and shared in the other, a normfactor across channels."""

    def sample(name, data, *, stat, extra):
        mods = [{"name": "mu" if name == "signal" else f"norm_{name}", "type": "normfactor", "data": None}, *extra]
        if stat:
            mods.append({"name": stat, "type": "staterror", "data": [0.1 * v + 0.2 for v in data]})
        return {"name": name, "data": data, "modifiers": mods}

    shape = {"name": "shape", "type": "histosys", "data": {"hi_data": [6.0, 9.0, 3.5], "lo_data": [4.5, 6.0, 2.0]}}
    scale = {"name": "scale", "type": "normsys", "data": {"hi": 1.3, "lo": 0.8}}
    tilt = {"name": "tilt", "type": "normsys", "data": {"hi": 0.9, "lo": 1.05}}  # both on the same side
    return {
        "channels": [
            {
                "name": "B",
                "samples": [
                    sample("signal", [1.0, 3.0, 0.5], stat="stat_sig", extra=[tilt]),
                    sample("bkg", [5.0, 7.0, 2.5], stat="stat_bkg", extra=[shape, scale]),
                ],
            },
            {
                "name": "A",
                "samples": [
                    sample("bkg", [20.0, 11.0], stat="stat_A", extra=[scale]),
                    sample("other", [4.0, 1.0], stat="stat_A", extra=[tilt]),
                ],
            },
        ],
        "observations": [{"name": "B", "data": [7.0, 9.0, 3.0]}, {"name": "A", "data": [25.0, 12.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0.0, 10.0]]}]}}],
        "version": "1.0.0",
    }


@pytest.mark.parametrize(
    "workspace",
    [DATA / "ita2021_default_workspace.json", DATA / "belle2_bknunu_combined_likelihood.json", _mixed_workspace()],
    ids=["default", "belle2", "mixed"],
)
def test_value_and_gradient_equal_pyhf(workspace):
    jax = _jax()
    lh = Likelihood.from_workspace(workspace)
    assert lh.native
    native = jax.jit(jax.value_and_grad(lh.functions.twice_nll))
    pyhf_nll = jax.jit(jax.value_and_grad(lambda p, d: -2.0 * lh.model.logpdf(p, d)[0]))
    rng = np.random.default_rng(11)
    free = ~lh.fixed
    positive = lh.bounds[:, 0] >= 0  # normalisation factors and gammas
    for k in range(12):
        pars = lh.init.copy()
        # |alpha| beyond 1 and inside, both signs: every branch of both interpolations
        width = np.where(positive, 0.15, 1.0 + 0.5 * (k % 3))
        pars[free] += rng.normal(0.0, 1.0, free.sum()) * width[free]
        pars = np.clip(pars, lh.bounds[:, 0], lh.bounds[:, 1])
        data = lh.toy(lh.init, rng)  # the perturbed parameters can predict negative yields: no toy there
        with_pyhf = [np.asarray(v) for v in _pyhf_value_and_grad(pyhf_nll, pars, data)]
        value, grad = native(pars, data)
        assert float(value) == pytest.approx(float(with_pyhf[0]), rel=1e-11, abs=1e-9)
        np.testing.assert_allclose(np.asarray(grad), with_pyhf[1], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(
    "workspace",
    [DATA / "ita2021_default_workspace.json", DATA / "belle2_bknunu_combined_likelihood.json", _mixed_workspace()],
    ids=["default", "belle2", "mixed"],
)
def test_written_out_jacobian_equals_autodiff(workspace):
    """expected_and_jacobian against forward-mode autodiff of expected_main, on every branch and with a zero normfactor."""
    jax = _jax()
    lh = Likelihood.from_workspace(workspace)
    functions = lh.functions
    by_hand = jax.jit(functions.expected_and_jacobian)
    autodiff = jax.jit(jax.jacfwd(functions.expected_main))
    rng = np.random.default_rng(12)
    free = ~lh.fixed
    positive = lh.bounds[:, 0] >= 0
    for k in range(12):
        pars = lh.init.copy()
        width = np.where(positive, 0.15, 1.0 + 0.5 * (k % 3))
        pars[free] += rng.normal(0.0, 1.0, free.sum()) * width[free]
        pars = np.clip(pars, lh.bounds[:, 0], lh.bounds[:, 1])
        if k == 0:
            pars[lh.poi_index] = 0.0  # the signal strength at 0: its derivative must not divide by it
        expected, jacobian = (np.asarray(v) for v in by_hand(pars))
        np.testing.assert_allclose(expected, np.asarray(functions.expected_main(pars)), rtol=1e-12, atol=0)
        reference = np.asarray(autodiff(pars))
        scale = np.abs(reference).max()
        np.testing.assert_allclose(jacobian, reference, rtol=1e-9, atol=1e-12 * scale)
        assert np.abs(reference[:, lh.poi_index]).max() > 0  # the POI column is not vacuous


def _pyhf_value_and_grad(fn, pars, data):
    from kvv.fit.likelihood import jax_backend

    with jax_backend():
        return fn(pars, data)


def test_code4_polynomial_meets_the_exponentials():
    hi, lo = np.array([1.3, 0.9, 2.0]), np.array([0.8, 1.05, 0.3])
    coef = code4_coefficients(hi, lo)
    powers = np.arange(1, 7)
    for alpha, target, slope in ((1.0, hi, hi * np.log(hi)), (-1.0, lo, -lo * np.log(lo))):
        value = 1.0 + coef @ alpha**powers
        derivative = coef @ (powers * alpha ** (powers - 1))
        np.testing.assert_allclose(value, target, rtol=1e-12)
        np.testing.assert_allclose(derivative, slope, rtol=1e-12)


def test_other_models_keep_pyhf():
    spec = _mixed_workspace()
    assert (
        Likelihood.from_workspace(spec, modifier_settings={"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}).native
        is False
    )
    spec["channels"][0]["samples"][1]["modifiers"].append({"name": "unc", "type": "shapesys", "data": [1.0, 1.0, 0.5]})
    lh = Likelihood.from_workspace(spec)
    assert lh.native is False
    assert model_functions(lh.model, spec, lh.modifier_settings) is None
