"""Object cleanup, preselection steps, cutflow rows and template merging."""

import itertools

import awkward as ak
import hist
import numpy as np
import pytest

from kvv import histograms, selection
from kvv.config import PhotonCleanup, Preselection, TrackCleanup, load_config


def test_track_cleanup_applies_every_cut():
    # One track per reason to fail, plus one good track; theta from pz/pt.
    tracks = ak.Array(
        [
            [
                {"px": 1.0, "py": 0.0, "pz": 0.5, "dr": 0.01, "dz": 0.1},  # good
                {"px": 0.05, "py": 0.05, "pz": 0.0, "dr": 0.01, "dz": 0.1},  # pT 0.07 < 0.1
                {"px": 0.2, "py": 0.0, "pz": 2.0, "dr": 0.01, "dz": 0.1},  # theta 5.7 deg, outside the CDC
                {"px": 0.5, "py": 0.0, "pz": -0.5, "dr": 0.6, "dz": 0.1},  # |dr| > 0.5 cm
                {"px": 0.5, "py": 0.0, "pz": 0.0, "dr": 0.0, "dz": -3.5},  # |dz| > 3 cm
                {"px": 5.0, "py": 3.5, "pz": 1.0, "dr": 0.0, "dz": 0.0},  # E > 5.5 GeV
            ],
            [],
        ]
    )
    mask = selection.track_mask(tracks, TrackCleanup())
    assert mask.tolist() == [[True, False, False, False, False, False], []]


def test_photon_cleanup():
    photons = ak.Array([[{"E": 0.05, "theta": 1.0}, {"E": 0.2, "theta": 1.0}, {"E": 0.2, "theta": 0.1}, {"E": 6.0, "theta": 1.5}]])
    assert selection.photon_mask(photons, PhotonCleanup()).tolist() == [[False, True, False, False]]


def test_flattened_columns_keep_event_boundaries():
    tracks = ak.Array(
        [
            [{"px": 1.0, "py": 2.0, "pz": 3.0, "charge": 1, "dr": 0.1, "dz": 0.2, "nPXDHits": 2, "kaonID": 0.9, "pionID": 0.1}],
            [],
            [
                {"px": 4.0, "py": 5.0, "pz": 6.0, "charge": -1, "dr": 0.0, "dz": 0.0, "nPXDHits": 0, "kaonID": 0.1, "pionID": 0.9},
                {"px": 7.0, "py": 8.0, "pz": 9.0, "charge": 1, "dr": 0.0, "dz": 0.0, "nPXDHits": 1, "kaonID": 0.5, "pionID": 0.5},
            ],
        ]
    )
    cols = selection.track_columns(tracks)
    assert cols.offsets.tolist() == [0, 1, 1, 3]
    assert cols.px.tolist() == [1.0, 4.0, 7.0]
    assert cols.charge.dtype == np.int32 and cols.px.dtype == np.float64


def test_preselection_steps_are_cumulative_and_follow_the_config():
    columns = {
        "has_kaon": np.array([True, True, True, True, False]),
        "n_tracks": np.array([5, 3, 5, 5, 5]),
        "theta_miss": np.array([1.0, 1.0, 0.2, 1.0, 1.0]),
        "e_visible_cms": np.array([5.0, 5.0, 5.0, 3.0, 5.0]),
    }
    steps = selection.preselection_steps(columns, Preselection())
    assert [m.tolist() for m in steps.values()] == [
        [True, True, True, True, False],
        [True, False, True, True, False],
        [True, False, False, True, False],
        [True, False, False, False, False],
    ]


def test_cutflow_rows_and_interval_mask():
    assert selection.cutflow_row(np.array([True, False, True])) == 2
    cols = {"a": np.array([0.1, 0.5, 0.9]), "b": np.array([1.0, 2.0, 3.0])}
    assert selection.interval_mask(cols, {"a": (0.5, None), "b": (None, 3.0)}).tolist() == [False, True, False]
    with pytest.raises(KeyError, match="unknown column 'c'"):
        selection.interval_mask(cols, {"c": (0, 1)})


def test_templates_merge_samples_of_a_template_and_keep_the_last_edge():
    cfg = load_config()
    booked = histograms.book(cfg)
    sr = next(r for r in cfg.regions if r.name == "SR")
    h = booked["templates"]["SR"]
    cols = {"kaon_pt": np.array([1.0, 2.2, 3.0]), "bdt2": np.array([0.96, 1.0, 0.995])}
    histograms.fill_templates(h, sr, "uubar", {"nominal": np.array([1.0, 2.0, 3.0])}, cols, scale=1.0)
    histograms.fill_templates(h, sr, "ccbar", {"nominal": np.array([10.0, 10.0, 10.0])}, cols, scale=10.0)
    templates, observed = histograms.templates_for_fit(histograms.to_hist(booked["templates"]), cfg)
    assert observed == {}
    uubar = templates["SR"]["uubar"]["yields"].reshape(3, 3)
    assert uubar[0, 0] == 1.0 and uubar[1, 2] == 2.0 and uubar[2, 2] == 3.0  # BDT2 = 1.0 kept in the last bin
    assert templates["SR"]["uubar"]["sumw2"].sum() == pytest.approx(1 + 4 + 9)
    assert templates["SR"]["ccbar"]["yields"].sum() == pytest.approx(30.0)
    assert set(templates["CR2"]) == {"uubar", "ddbar", "ssbar", "ccbar", "taupair"}  # off-resonance MC only


def _random_histogram_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 2.5, n)
    x[:50] = 2.0  # the closed last edge of a flow-less axis
    x[50:80] = np.nan
    return {
        "x": x,
        "y": rng.uniform(-1.0, 4.0, n),  # under- and overflow
        "mode": rng.integers(0, 4, n),  # categories 1, 2 and two values it does not hold
        "weight": 651.3 * rng.exponential(1.0, n),
    }


def _axes() -> tuple:
    return (
        hist.axis.StrCategory(["a", "b"], name="dataset"),
        hist.axis.StrCategory(["nominal", "up"], name="variation"),
        hist.axis.Variable([0.0, 0.5, 2.0], name="x", flow=False),
        hist.axis.Regular(3, 0.0, 3.0, name="y"),
        hist.axis.IntCategory([1, 2], name="mode"),
    )


def test_sum_histogram_bins_as_hist_fill_does():
    """Same bins as hist's own fill (flow bins, closed last edge, unknown categories), sums to the weights' rounding."""
    values = _random_histogram_inputs(20_000, seed=3)
    weight = values.pop("weight")
    expected = hist.Hist(*_axes(), storage=hist.storage.Weight())
    expected.fill(dataset="b", variation="up", **values, weight=weight)
    summed = histograms.SumHistogram(*_axes())
    summed.fill("b", variation="up", **values, weight=weight, scale=651.3)
    got = summed.to_hist().view(flow=True)
    np.testing.assert_allclose(got["value"], expected.view(flow=True)["value"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(got["variance"], expected.view(flow=True)["variance"], rtol=1e-9, atol=0)
    assert got["value"].sum() == pytest.approx(weight[~np.isnan(values["x"]) & (values["x"] >= 0) & (values["x"] <= 2)].sum(), rel=1e-12)


def test_filling_categories_together_is_hist_fill_per_category():
    """fill_categories: the events' positions found once, each variation's weights in its own bins, as hist fills them."""
    values = _random_histogram_inputs(5_000, seed=5)
    weight = values.pop("weight")
    weights = {"up": weight, "nominal": 0.5 * weight[::-1]}  # not in the axis's order
    expected = hist.Hist(*_axes(), storage=hist.storage.Weight())
    for variation, w in weights.items():
        expected.fill(dataset="a", variation=variation, **values, weight=w)
    together = histograms.SumHistogram(*_axes())
    together.fill_categories("a", "variation", weights, **values, scale=651.3)
    got = together.to_hist().view(flow=True)
    np.testing.assert_allclose(got["value"], expected.view(flow=True)["value"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(got["variance"], expected.view(flow=True)["variance"], rtol=1e-9, atol=0)
    one_by_one = histograms.SumHistogram(*_axes())
    for variation, w in weights.items():
        one_by_one.fill("a", variation=variation, **values, weight=w, scale=651.3)
    assert np.array_equal(one_by_one.to_hist().view(flow=True), got)  # the same integer sums, bit for bit
    with pytest.raises(KeyError, match="down"):
        together.fill_categories("a", "variation", {"down": weight}, **values, scale=651.3)


def test_sum_histogram_is_the_same_bits_for_any_chunking_and_merge_order():
    """Float sums differ in their last bits with the grouping of the terms; the integer sums do not."""
    values = _random_histogram_inputs(30_000, seed=4)

    def merged(bounds: list[int], order: list[int]) -> np.ndarray:
        parts = []
        for lo, hi in itertools.pairwise(bounds):
            h = histograms.SumHistogram(*_axes())
            h.fill(
                "a",
                variation="nominal",
                **{k: v[lo:hi] for k, v in values.items() if k != "weight"},
                weight=values["weight"][lo:hi],
                scale=651.3,
            )
            parts.append(h)
        total = parts[order[0]]
        for i in order[1:]:
            total = total + parts[i]
        return total.to_hist().view(flow=True)

    one = merged([0, 30_000], [0])
    for bounds, order in (([0, 1500, 3000, 4500, 30_000], [3, 1, 0, 2]), ([0, 4000, 8000, 29_999, 30_000], [0, 3, 2, 1])):
        other = merged(bounds, order)
        assert np.array_equal(one["value"], other["value"]) and np.array_equal(one["variance"], other["variance"])
    # floating point is not: summed one by one or pairwise, the same weights differ in the last bits
    w = values["weight"]
    assert np.cumsum(w)[-1] != w.sum()


def test_sum_histogram_keeps_small_weights_and_refuses_huge_ones():
    """Weights 1e-5 of the scale keep their squares (to 1e-6), negative ones sum exactly; 2**15 x the scale is refused."""
    axes = (hist.axis.StrCategory(["a"], name="dataset"), hist.axis.Regular(2, 0.0, 2.0, name="x"))
    h = histograms.SumHistogram(*axes)
    w = np.array([1.3e-3, 2.2e-3, -0.7e-3, 651.3])
    h.fill("a", x=np.array([0.5, 0.5, 0.5, 1.5]), weight=w, scale=651.3)
    view = h.to_hist().view(flow=True)
    np.testing.assert_allclose(view["value"][0, 1:3], [w[:3].sum(), w[3]], rtol=1e-9)
    np.testing.assert_allclose(view["variance"][0, 1:3], [np.sum(w[:3] ** 2), w[3] ** 2], rtol=1e-6)
    with pytest.raises(ValueError, match="more than 2\\*\\*15 times its scale"):
        h.fill("a", x=np.array([0.5]), weight=np.array([651.3 * 2.0**16]), scale=651.3)


def test_region_table_reports_the_effective_mc_events_per_template():
    """N_eff = (sum w)^2 / sum w^2: 4 events of weights 1, 1, 2, 4 make 64 / 22 effective events."""
    from kvv import report

    cfg = load_config()
    booked = histograms.book(cfg)
    sr = next(r for r in cfg.regions if r.name == "SR")
    cols = {"kaon_pt": np.full(4, 2.0), "bdt2": np.full(4, 0.99)}
    histograms.fill_templates(booked["templates"]["SR"], sr, "charged", {"nominal": np.array([1.0, 1.0, 2.0, 4.0])}, cols, scale=1.0)
    histograms.fill_templates(booked["templates"]["SR"], sr, "mixed", {"nominal": np.full(4, 3.0)}, cols, scale=3.0)
    yields = report.region_yields(histograms.to_hist(booked["templates"]), cfg, produced={})
    assert yields["SR"]["n_eff"]["charged"] == pytest.approx(64 / 22, rel=1e-9)
    assert yields["SR"]["n_eff"]["mixed"] == pytest.approx(4.0, rel=1e-9)
    assert yields["SR"]["n_eff"]["uubar"] == 0.0
    assert "| SR |" in report.region_yields_markdown(yields).split("Effective MC events")[1]


def test_flat_event_helpers_agree_with_awkward_on_empty_and_full_events():
    """Offsets + content, the kept entries' offsets and any-per-event, against awkward's own jagged operations."""
    from kvv.io import inputs

    values = ak.Array([[1.0, np.nan, 3.0], [], [np.inf], [4.0, 5.0], [], [6.0]])
    offsets, content = inputs.event_offsets(values), inputs.flat_values(values)
    assert offsets.tolist() == [0, 3, 3, 4, 6, 6, 7]
    np.testing.assert_array_equal(content, ak.to_numpy(ak.flatten(values)))
    bad = ~np.isfinite(content)
    assert inputs.any_per_event(offsets, bad).tolist() == ak.to_list(ak.any(~np.isfinite(values), axis=1))
    keep = content > 2.0
    kept = inputs.kept_offsets(offsets, keep)
    assert np.diff(kept).tolist() == ak.to_list(ak.sum(values > 2.0, axis=1))
    assert content[keep].tolist() == ak.to_list(ak.flatten(values[values > 2.0]))
