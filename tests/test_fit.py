"""Tests of kvv.fit: inference on the published Belle II likelihood and on small synthetic models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyhf
import pytest
import scipy.optimize
import scipy.stats

from kvv.config.fit import FitSettings
from kvv.fit import (
    FitError,
    Likelihood,
    build_workspace,
    grouped_impacts,
    injection_study,
    load_workspace,
    mle,
    run_inference,
    significance,
    staterror_mask,
    upper_limit,
)

BELLE2 = Path(__file__).parent / "data" / "belle2_bknunu_combined_likelihood.json"
DEFAULT_ANALYSIS = Path(__file__).parent / "data" / "ita2021_default_workspace.json"


# ---------------------------------------------------------------- published Belle II likelihood


@pytest.fixture(scope="module")
def belle2() -> Likelihood:
    return Likelihood.from_workspace(BELLE2)


@pytest.fixture(scope="module")
def belle2_fit(belle2):
    return mle(belle2, minos=True)


@pytest.mark.slow
def test_belle2_mle(belle2, belle2_fit):
    poi = belle2.poi_index
    assert belle2_fit.success
    assert belle2_fit.bestfit[poi] == pytest.approx(4.6, abs=0.1)
    assert belle2_fit.uncertainty[poi] == pytest.approx(1.3, abs=0.15)
    low, high = belle2_fit.minos["mu"]
    assert -low == pytest.approx(1.3, abs=0.15) and high == pytest.approx(1.3, abs=0.15)


@pytest.mark.slow
def test_belle2_significance(belle2):
    # plain pyhf + MINUIT fails on the mu = 0 fixed fit here; kvv must not
    result = significance(belle2)
    assert result.Z_obs == pytest.approx(3.5, abs=0.15)
    assert result.null_fit_optimizer != "none"


@pytest.mark.slow
def test_belle2_stat_syst_split(belle2, belle2_fit):
    # published: 1.0 (stat), 0.9 (syst).  With the background normalisations floating in
    # the stat-only fit we get ~0.89 / ~1.00; fixing them too gives stat ~0.57.
    split = grouped_impacts(belle2, belle2_fit, stat_free=["mu_bkg_*", "norm_*"])
    assert split["stat"] == pytest.approx(0.9, abs=0.1)
    assert split["syst"] == pytest.approx(1.0, abs=0.1)
    assert split["stat"] ** 2 + split["syst"] ** 2 == pytest.approx(split["total"] ** 2, rel=1e-6)
    all_fixed = grouped_impacts(belle2, belle2_fit)
    assert all_fixed["stat"] < split["stat"]
    assert set(all_fixed["groups"]) == {"staterror", "histosys", "normsys"}


# ---------------------------------------------------------------- workspace builder


def _templates() -> dict:
    return {
        "on": {
            "signal": {"yields": np.array([5.0, 10.0, 3.0]), "sumw2": np.array([1.0, 1.0, 0.01])},
            "uubar": {
                "yields": np.array([50.0, 40.0, 30.0]),
                "sumw2": np.array([4.0, 4.0, 0.01]),
                "variations": {"tracking": {"up": np.array([52.0, 41.0, 30.0]), "down": np.array([48.0, 39.0, 30.0])}},
            },
            "charged": {"yields": np.array([20.0, 10.0, 5.0]), "sumw2": np.array([1.0, 1.0, 1e-4])},
        },
        "off": {"uubar": {"yields": np.array([10.0, 8.0, 6.0]), "sumw2": np.array([1.0, 1.0, 1e-4])}},
    }


def test_build_workspace_schema_and_sharing():
    spec = build_workspace(_templates(), FitSettings(poi_bounds=(0.0, 10.0)))
    pyhf.schema.validate(spec, "workspace.json")
    norm_names = {c["name"]: {m["name"] for s in c["samples"] for m in s["modifiers"] if m["type"] == "normsys"} for c in spec["channels"]}
    assert "norm_uubar" in norm_names["on"] and "norm_uubar" in norm_names["off"]
    model = pyhf.Workspace(spec).model()
    assert model.config.param_set("norm_uubar").n_parameters == 1


def test_staterror_pruning():
    templates = _templates()
    config = FitSettings(poi_bounds=(0.0, 10.0), staterror_prune_threshold=0.02)
    spec = build_workspace(templates, config)
    model = pyhf.Workspace(spec).model()
    for channel in templates:
        keep = staterror_mask(templates, channel, 0.02)
        nominal = sum(s["yields"] for s in templates[channel].values())
        relative = np.sqrt(sum(s["sumw2"] for s in templates[channel].values())) / nominal
        assert np.array_equal(keep, relative >= 0.02)
        fixed = np.asarray(model.config.suggested_fixed())[model.config.par_slice(f"staterror_{channel}")]
        assert np.array_equal(fixed, ~keep)
    assert (~staterror_mask(templates, "on", 0.02)).sum() == 1 and (~staterror_mask(templates, "off", 0.02)).sum() == 1


@pytest.mark.parametrize("mu_inject", [0.0, 2.5])
def test_asimov_recovers_injected_mu(mu_inject):
    spec = build_workspace(_templates(), FitSettings(poi_bounds=(-5.0, 10.0), injected_mu=mu_inject))
    lh = Likelihood.from_workspace(spec)
    fit = mle(lh, minos=False)
    assert fit.bestfit[lh.poi_index] == pytest.approx(mu_inject, abs=1e-3)


def test_empty_background_bins_get_one_event_of_the_best_known_background():
    from kvv.histograms import floor_empty_background

    templates = _templates()
    for name in ("uubar", "charged"):
        templates["on"][name]["yields"] = templates["on"][name]["yields"] * np.array([1.0, 0.0, 1.0])
    templates["on"]["uubar"]["variations"]["tracking"]["up"][1] = 0.0
    before = {n: {k: np.array(v) for k, v in t.items() if k != "variations"} for n, t in templates["on"].items()}
    floored = floor_empty_background(templates, "signal", {"on": {"uubar": 7.0, "charged": 3.0}, "off": {"uubar": 2.0}})
    assert floored == {"on": [1]}  # "off" has no signal; bins with background stay as they were
    charged, uubar = templates["on"]["charged"], templates["on"]["uubar"]
    assert charged["yields"].tolist() == [20.0, 3.0, 5.0] and charged["sumw2"].tolist() == [1.0, 9.0, 1e-4]
    assert np.array_equal(uubar["yields"], before["uubar"]["yields"])
    assert np.array_equal(templates["on"]["signal"]["yields"], before["signal"]["yields"])
    # the floored bin keeps the Asimov significance finite; without nuisance parameters
    # it is the closed-form sum over bins of 2 ((s + b) ln(1 + s/b) - s)
    del uubar["variations"]
    lh = Likelihood.from_workspace(
        build_workspace(templates, FitSettings(poi_bounds=(0.0, 10.0), staterror=False, background_normalisation_uncertainty=0.0))
    )
    s_on = templates["on"]["signal"]["yields"]
    b_on = templates["on"]["uubar"]["yields"] + charged["yields"]
    z_closed = np.sqrt(np.sum(2 * ((s_on + b_on) * np.log1p(s_on / b_on) - s_on)))
    assert significance(lh).Z_obs == pytest.approx(z_closed, rel=1e-3)


def test_systematics_table_lists_every_source(tmp_path):
    from kvv.fit import systematics_table

    spec = build_workspace(_templates(), FitSettings(poi_bounds=(0.0, 10.0), background_normalisation_uncertainty=0.2))
    lh = Likelihood.from_workspace(spec)
    fit = mle(lh, minos=False)
    sources = {"tracking": ["tracking"], "uubar norm": ["norm_uubar"], "MC statistics": ["staterror*"], "unused": ["pid_*"]}
    table = systematics_table(lh, fit, sources)
    assert set(table["groups"]) == set(sources)
    assert table["groups"]["unused"] == {"impact": 0.0, "n_parameters": 0}
    impacts = [row["impact"] for row in table["groups"].values()]
    assert impacts == sorted(impacts, reverse=True)
    assert table["total"] ** 2 == pytest.approx(table["stat"] ** 2 + table["syst"] ** 2)
    # a source's impact against a refit with its parameter fixed at the best fit
    index = lh.names.index("tracking")
    refit = mle(lh, minos=False, fixed={index: fit.bestfit[index]})
    sigma_fixed = refit.uncertainty[lh.poi_index]
    assert table["groups"]["tracking"]["impact"] == pytest.approx(np.sqrt(table["total"] ** 2 - sigma_fixed**2), rel=0.02)
    markdown = run_inference(spec, tmp_path, FitSettings(steps=["mle"]), sources=sources)["report"]
    text = Path(markdown["systematics"]).read_text()
    assert all(f"| {name} |" in text for name in sources) and "**total**" in text


def test_toy_pseudo_data_is_reproducible():
    a = build_workspace(_templates(), FitSettings(pseudo_data="toy", seed=3, injected_mu=1.0))
    b = build_workspace(_templates(), FitSettings(pseudo_data="toy", seed=3, injected_mu=1.0))
    assert a["observations"] == b["observations"]
    assert all(float(x).is_integer() for o in a["observations"] for x in o["data"])


def test_config_errors_name_the_key():
    with pytest.raises(FitError, match="signal sample 'sig'"):
        build_workspace(_templates(), FitSettings(signal_template="sig"))
    with pytest.raises(FitError, match="'ddbar'"):
        build_workspace(_templates(), FitSettings(background_normalisation_uncertainty={"ddbar": 0.3}))
    with pytest.raises(FitError, match="channel 'off'"):
        build_workspace(_templates(), FitSettings(poi_bounds=(0.0, 10.0)), observations={"on": np.array([60.0, 50.0, 35.0])})
    with pytest.raises(FitError, match="channel 'offres'"):
        build_workspace(
            _templates(), FitSettings(poi_bounds=(0.0, 10.0)), observations={"on": np.ones(3), "off": np.ones(3), "offres": np.ones(3)}
        )


# ---------------------------------------------------------------- malformed workspaces


def test_malformed_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"channels": [')
    with pytest.raises(FitError, match=r"broken\.json: malformed JSON at line 1"):
        load_workspace(path)


def test_schema_invalid_workspace(tmp_path):
    spec = build_workspace(_templates())
    spec["channels"][0]["samples"][0]["data"] = "not a list"
    path = tmp_path / "invalid.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(FitError) as info:
        run_inference(path, tmp_path / "out")
    message = str(info.value)
    assert "invalid.json" in message and "channels[0].samples[0].data" in message and "\n" not in message


# ---------------------------------------------------------------- limits and injection


def _counting(n_obs: float, s: float, b: float) -> dict:
    return {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {"name": "signal", "data": [s], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
                    {"name": "bkg", "data": [b], "modifiers": []},
                ],
            }
        ],
        "observations": [{"name": "sr", "data": [n_obs]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [[0.0, 20.0]]}]}}],
        "version": "1.0.0",
    }


def _closed_form_limit(n: float, s: float, b: float, cl: float) -> float:
    """Asymptotic CLs (q~_mu) limit of a one-bin counting experiment, in closed form."""

    def t(mu, counts):  # -2 ln L up to a constant
        return 2 * (mu * s + b - counts * np.log(mu * s + b))

    mu_hat = max((n - b) / s, 0.0)

    def cls(mu):
        sqrt_q = np.sqrt(max(t(mu, n) - t(mu_hat, n), 0.0)) if mu > mu_hat else 0.0
        sqrt_qa = np.sqrt(t(mu, b) - t(0.0, b))
        if sqrt_q <= sqrt_qa:
            return scipy.stats.norm.sf(sqrt_q) / scipy.stats.norm.sf(sqrt_q - sqrt_qa)
        q, qa = sqrt_q**2, sqrt_qa**2
        return scipy.stats.norm.sf((q + qa) / (2 * sqrt_qa)) / scipy.stats.norm.sf((q - qa) / (2 * sqrt_qa))

    return scipy.optimize.brentq(lambda mu: cls(mu) - (1 - cl), 1e-3, 20.0)


@pytest.mark.parametrize("n_obs", [10.0, 16.0])
def test_cls_limit_counting_model(n_obs):
    s, b = 5.0, 10.0
    lh = Likelihood.from_workspace(_counting(n_obs, s, b))
    result = upper_limit(lh, cl=0.90)
    assert result.observed == pytest.approx(_closed_form_limit(n_obs, s, b, 0.90), rel=2e-3)
    # expected median: closed form on Asimov (n = b)
    assert result.expected[2] == pytest.approx(_closed_form_limit(b, s, b, 0.90), rel=2e-3)
    assert list(result.expected) == sorted(result.expected)


def test_toy_cls_counting_model_matches_poisson_sums():
    """One bin, no nuisance parameters: q~_mu falls with n below mu s + b, so the toy CLs
    is the classic ratio of Poisson sums P(n <= n_obs | mu s + b) / P(n <= n_obs | b)."""
    from kvv.fit import toy_cls

    n_obs, s, b, mu = 8.0, 5.0, 10.0, 1.4
    lh = Likelihood.from_workspace(_counting(n_obs, s, b))
    result = toy_cls(lh, mu, n_toys=400, seed=11)
    exact = scipy.stats.poisson.cdf(n_obs, mu * s + b) / scipy.stats.poisson.cdf(n_obs, b)
    assert result.failed_toys == 0
    assert result.clsb == pytest.approx(scipy.stats.poisson.cdf(n_obs, mu * s + b), abs=4 * np.sqrt(0.25 / 400))
    assert result.cls == pytest.approx(exact, abs=4 * result.cls_error)


def test_toy_limit_in_the_pipeline(tmp_path):
    n_obs, s, b = 8.0, 5.0, 10.0
    n_toys = 500
    options = FitSettings(steps=["mle", "limit"], limit_method="toys", limit_toys=n_toys, seed=0)
    toys = run_inference(_counting(n_obs, s, b), tmp_path, options)["upper_limit_toys"]
    for point in toys["points"]:
        p_exact = scipy.stats.poisson.cdf(n_obs, point["mu"] * s + b)
        assert point["clsb"] == pytest.approx(p_exact, abs=4 * np.sqrt(p_exact * (1 - p_exact) / n_toys) + 1 / n_toys)
    exact = scipy.optimize.brentq(
        lambda mu: scipy.stats.poisson.cdf(n_obs, mu * s + b) / scipy.stats.poisson.cdf(n_obs, b) - 0.10, 0.01, 10.0
    )
    # ~15 CLs+b toys per point near the limit: CLs to ~25 %, the limit to about half that
    assert toys["observed"] == pytest.approx(exact, rel=0.2)
    assert "CLs from toys" in (tmp_path / "fit_summary.md").read_text()


def test_limit_bands_beyond_the_poi_range_are_infinite():
    spec = _counting(10.0, 5.0, 10.0)
    spec["measurements"][0]["config"]["parameters"][0]["bounds"] = [[0.0, 2.0]]
    result = upper_limit(Likelihood.from_workspace(spec), cl=0.90)
    assert result.observed == pytest.approx(_closed_form_limit(10.0, 5.0, 10.0, 0.90), rel=2e-3)
    assert result.expected[4] == np.inf and np.isfinite(result.expected[0])


def test_injection_pulls():
    spec = build_workspace(_templates(), FitSettings(poi_bounds=(0.0, 10.0), background_normalisation_uncertainty=0.1))
    lh = Likelihood.from_workspace(spec)
    results = injection_study(lh, mu_values=(0.0, 5.0), n_toys=150, seed=7)
    for r in results:
        assert r["n_failed"] == 0
        assert abs(r["pull_mean"]) < 3 * r["pull_mean_error"] + 0.05
        assert abs(r["pull_width"] - 1.0) < 3 * r["pull_width_error"] + 0.05
    assert lh.bounds[lh.poi_index].tolist() == [0.0, 10.0]  # restored


@pytest.mark.slow
def test_injection_on_the_default_analysis():
    """The workspace of the default run (MC-statistics dominated: Asimov mu = 1 -1/+93): injected mu
    values are recovered, i.e. lie in the toys' 68 % intervals as often as they should, and the
    profile-likelihood pulls are standard normal within their statistical precision."""
    lh = Likelihood.from_workspace(DEFAULT_ANALYSIS)
    for r in injection_study(lh, (0.0, 1.0, 5.0, 20.0), n_toys=50, seed=2021):
        assert r["n_failed"] == 0
        assert abs(r["pull_mean"]) < 3 * r["pull_mean_error"]
        assert abs(r["pull_width"] - 1.0) < 3 * r["pull_width_error"]
        assert abs(r["coverage_68"] - 0.683) < 3 * np.sqrt(0.683 * 0.317 / r["n_toys"])


def test_run_inference_small_model(tmp_path):
    spec = build_workspace(_templates(), FitSettings(poi_bounds=(0.0, 10.0), injected_mu=1.0))
    options = FitSettings(steps=["mle", "scan", "significance", "limit", "gof", "impacts", "plots"], refit_top=3, seed=0)
    results = run_inference(spec, tmp_path, options)
    assert results["mle"]["poi_value"] == pytest.approx(1.0, abs=1e-3)
    assert results["goodness_of_fit"]["t"] == pytest.approx(0.0, abs=1e-3)
    for name in ("fit_results.json", "fit_summary.md", "plots/postfit_on.png", "plots/cls_scan.pdf", "plots/ranking.png"):
        assert (tmp_path / name).exists(), name
    json.loads((tmp_path / "fit_results.json").read_text())
