"""kvv's asymptotic CLs on the setups of pyhf's validation suite.

The models and observations are written from the public data files of
scikit-hep/pyhf (``validation/data/*.json``); the reference numbers are the
``expected_result`` values of its ``tests/test_validation.py`` (observed CLs and
the expected band at +2 .. -2 sigma, POI = 1, test statistic q_mu, normsys
interpolation code1), which pyhf's own results match to 1e-6 - 8e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

from kvv.fit import Likelihood
from kvv.fit.infer import EXPECTED_SIGMAS, expected_cls, hypotest


def _mu(name: str = "mu") -> dict:
    return {"name": name, "type": "normfactor", "data": None}


def _sample(name: str, data: list[float], *modifiers: dict) -> dict:
    return {"name": name, "data": data, "modifiers": list(modifiers)}


SETUPS = {
    "1bin_shapesys": {
        "channels": {"singlechannel": [_sample("signal", [10.0], _mu()),
                                       _sample("background", [50.0], {"name": "uncorr_bkguncrt", "type": "shapesys", "data": [7.0]})]},
        "observed": {"singlechannel": [55.0]},
        "obs": 0.45418892944576333,
        "exp": [0.06372011644331387, 0.1509686618126131, 0.3279657430196915, 0.604613569829645, 0.8662652332047568],
    },
    "1bin_lumi": {
        "channels": {"channel1": [_sample("signal", [20.0], _mu()),
                                  _sample("background1", [100.0], {"name": "lumi", "type": "lumi", "data": None}),
                                  _sample("background2", [0.0], {"name": "lumi", "type": "lumi", "data": None})]},
        "observed": {"channel1": [55.0]},
        "parameters": [{"name": "lumi", "auxdata": [1.0], "bounds": [[0.0, 10.0]], "inits": [1.0], "sigmas": [0.1]}],
        "obs": 0.010473144401519705,
        "exp": [0.01060400765567206, 0.04022451457730529, 0.13614632580079802, 0.37078985531427255, 0.7110468540175344],
    },
    "1bin_normsys": {
        "channels": {"singlechannel": [_sample("signal", [30.0, 95.0], _mu()),
                                       _sample("background", [100.0, 150.0], {"name": "bkg_norm", "type": "normsys", "data": {"lo": 0.9, "hi": 1.1}})]},
        "observed": {"singlechannel": [120.0, 180.0]},
        "obs": 0.0006735336290569807,
        "exp": [7.472581399417304e-10, 5.741738272450336e-08, 3.690120950161796e-06, 0.00016966882793076826, 0.004392935288879465],
    },
    "2bin_histosys": {
        "channels": {"singlechannel": [_sample("signal", [30.0, 95.0], _mu()),
                                       _sample("background", [100.0, 150.0], {"name": "bkg_norm", "type": "histosys",
                                                                              "data": {"lo_data": [98.0, 100.0], "hi_data": [102.0, 190.0]}})]},
        "observed": {"singlechannel": [120.0, 180.0]},
        "obs": 0.1001463460725534,
        "exp": [7.133904244038431e-06, 0.00012547100627138575, 0.001880010666437615, 0.02078964907605385, 0.13692494523572218],
    },
    "2bin_2channel": {
        "channels": {
            "signal": [_sample("signal", [10.0, 35.0], _mu()),
                       _sample("background", [100.0, 150.0], {"name": "uncorr_bkguncrt_signal", "type": "shapesys", "data": [10.0, 10.0]})],
            "control": [_sample("background", [200.0, 350.0], {"name": "uncorr_bkguncrt_control", "type": "shapesys", "data": [5.0, 10.0]})],
        },
        "observed": {"signal": [110.0, 155.0], "control": [205.0, 345.0]},
        "obs": 0.0563327694384318,
        "exp": [0.0004349234603527283, 0.003422361539161119, 0.02337454317608372, 0.12186650297311125, 0.40382274594391104],
    },
    "2bin_2channel_couplednorm": {
        "channels": {
            "signal": [_sample("signal", [10.0, 35.0], _mu()),
                       _sample("bkg1", [100.0, 100.0], {"name": "coupled_normsys", "type": "normsys", "data": {"lo": 0.9, "hi": 1.1}}),
                       _sample("bkg2", [50.0, 100.0], {"name": "coupled_normsys", "type": "normsys", "data": {"lo": 0.5, "hi": 1.5}})],
            "control": [_sample("background", [100.0, 100.0], {"name": "coupled_normsys", "type": "normsys", "data": {"lo": 0.9, "hi": 1.1}})],
        },
        "observed": {"signal": [105.0, 220.0], "control": [110.0, 105.0]},
        "obs": 0.5906216823766879,
        # pyhf's Asimov fits stop ~3e-5 in -2 ln L short of their minima here (its free fit of the mu = 0 Asimov data
        # ends at mu = 2e-4; kvv's fixed-POI fit is 3e-7 lower at pyhf's parameters): 2e-4 on the band
        "exp_rtol": 2e-4,
        "exp": [0.05522270453784095, 0.1361301880753241, 0.30686879632329855, 0.5839437910061168, 0.8554708284963864],
    },
}  # fmt: skip

#: the suite builds its models with normsys code1, which leaves histosys at code0
SUITE_INTERPOLATION = {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}


def _workspace(setup: dict) -> dict:
    return {
        "channels": [{"name": name, "samples": samples} for name, samples in setup["channels"].items()],
        "observations": [{"name": name, "data": data} for name, data in setup["observed"].items()],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": setup.get("parameters", [])}}],
        "version": "1.0.0",
    }


@pytest.mark.parametrize("name", list(SETUPS))
def test_cls_matches_pyhfs_validation_suite(name):
    setup = SETUPS[name]
    lh = Likelihood.from_workspace(_workspace(setup), modifier_settings=SUITE_INTERPOLATION)
    result = hypotest(lh, 1.0, test_statistic="q")
    assert result.cls_observed == pytest.approx(setup["obs"], rel=1e-4)
    np.testing.assert_allclose(result.cls_expected, setup["exp"], rtol=setup.get("exp_rtol", 1e-4), atol=0)


def test_expected_band_is_phi_bar_of_sqrt_qa_plus_n_over_phi_bar_of_n():
    """arXiv:1007.1727: the band point of n sigma is CLs = Phi-bar(sqrt q_A + n) / Phi-bar(n), for q and q~ alike."""
    from scipy.stats import norm

    for sqrt_qa in (0.3, 1.7, 4.0):
        want = [norm.sf(sqrt_qa + n) / norm.sf(n) for n in EXPECTED_SIGMAS]
        np.testing.assert_allclose(expected_cls(sqrt_qa), want, rtol=1e-12)
    lh = Likelihood.from_workspace(_workspace(SETUPS["1bin_shapesys"]), modifier_settings=SUITE_INTERPOLATION)
    np.testing.assert_array_equal(
        hypotest(lh, 1.0, test_statistic="qtilde").cls_expected, hypotest(lh, 1.0, test_statistic="q").cls_expected
    )


def test_interpolation_codes_change_the_model():
    """code1 and code4 normsys agree at alpha = 0, +-1 and differ in between: the setting reaches the model."""
    setup = SETUPS["1bin_normsys"]
    code1 = Likelihood.from_workspace(_workspace(setup), modifier_settings=SUITE_INTERPOLATION)
    code4 = Likelihood.from_workspace(_workspace(setup))
    assert code4.modifier_settings["normsys"]["interpcode"] == "code4"
    pars = code1.init.copy()
    alpha = code1.names.index("bkg_norm")
    for value, same in ((0.0, True), (1.0, True), (0.5, False)):
        pars[alpha] = value
        a, b = code1.expected_data(pars), code4.expected_data(pars)
        assert np.allclose(a, b, rtol=1e-12) == same, value
    pars[alpha] = 0.5
    assert code1.expected_data(pars)[1] == pytest.approx(95.0 + 150.0 * 1.1**0.5, rel=1e-12)  # code1: exponential
