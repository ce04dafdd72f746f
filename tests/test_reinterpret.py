"""Reinterpretation: joint number densities reweighted to other q² spectra, and refits of the published workspace."""

from __future__ import annotations

import itertools
import json

import awkward as ak
import numpy as np
import pytest
import yaml
from scipy import stats

from kvv import explore
from kvv.config import load_config
from kvv.eventformat import Process
from kvv.physics.beams import Beams
from kvv.physics.formfactors import dgamma_dq2_operator
from kvv.physics.kinematics import M_KAON
from kvv.physics.randoms import hash_uniform
from kvv.reinterpret import M_BPLUS, bin_weights, reweighted_workspace
from kvv.reinterpret import main as reinterpret_main
from kvv.simulate import generate_sample


def test_weights_of_the_sm_are_one_and_others_keep_the_produced_yield():
    edges = [float(q) for q in range(24)]
    np.testing.assert_array_equal(bin_weights("sm", edges), np.ones(len(edges) + 1))
    q2 = np.linspace(0.0, (M_BPLUS - M_KAON) ** 2, 100_001)
    sm = dgamma_dq2_operator("sm", q2, M_BPLUS, M_KAON)
    counts = np.array([np.trapezoid(sm[(q2 >= lo) & (q2 <= hi)], q2[(q2 >= lo) & (q2 <= hi)]) for lo, hi in itertools.pairwise(edges)])
    for model in ("scalar", "tensor"):
        w = bin_weights(model, edges)[1:-1]
        assert np.sum(w * counts) / np.sum(counts) == pytest.approx(1.0, rel=1e-3)  # the spectra are normalised alike
        assert w[-3] > 1.0 > w[1]  # both operators push the signal to high q2 (the q2 factor of their rates)


@pytest.mark.slow
def test_sm_reweighting_leaves_the_fit_unchanged_and_models_refit(published, tmp_path):
    config, publication = published
    workspace = json.loads((publication / "workspace.json").read_text())
    densities = json.loads((publication / "joint_densities.json").read_text())
    same, _ = reweighted_workspace(workspace, densities, "sm")
    for before, after in zip(workspace["channels"], same["channels"], strict=True):
        for a, b in zip(before["samples"], after["samples"], strict=True):
            np.testing.assert_allclose(b["data"], a["data"], rtol=1e-12)
    assert reinterpret_main([str(publication), "--config", str(config), "--outputs", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "reinterpretation.json").read_text())
    original = json.loads((publication.parent / "fit" / "fit_results.json").read_text())
    assert summary["sm"]["mu"] == pytest.approx(original["mle"]["poi_value"], abs=1e-6)
    assert summary["sm"]["upper_limit"] == pytest.approx(original["upper_limit"]["observed"], rel=1e-6)
    assert summary["scalar"]["upper_limit"] != pytest.approx(summary["sm"]["upper_limit"], rel=1e-2)
    assert (tmp_path / "signal_shapes.png").stat().st_size > 10_000


def _flat_bins(columns: dict, region) -> np.ndarray:
    """Each event's flattened fit bin of ``region`` (-1 outside it), with the closed last edge of the fit axes."""
    inside = np.ones(len(columns["mcq2"]), dtype=bool)
    for name, (lo, hi) in region.cuts.items():
        inside &= (columns[name] >= (-np.inf if lo is None else lo)) & (columns[name] < (np.inf if hi is None else hi))
    index = []
    for axis in region.axes:
        edges = np.asarray(axis.edges)
        i = np.searchsorted(edges, columns[axis.variable], side="right") - 1
        i = np.where(columns[axis.variable] == edges[-1], len(edges) - 2, i)
        inside &= (i >= 0) & (i < len(edges) - 1)
        index.append(np.clip(i, 0, len(edges) - 2))
    flat = np.ravel_multi_index(index, [len(a.edges) - 1 for a in region.axes])
    return np.where(inside, flat, -1)


@pytest.mark.slow
def test_reweighted_densities_reproduce_samples_generated_with_the_new_spectrum(trained, tmp_path):
    """One half of a signal sample, through its joint density reweighted to a spectrum, against the other half
    accepted event by event with that spectrum (which is generating with it: the kaon is isotropic for every
    operator): equal templates in the loose selection, within statistics; the SM template is not."""
    config, outputs = trained
    cfg = load_config(config)
    path = tmp_path / "signal_big.root"
    meta = generate_sample(Process.KNUNU, 40_000, path, beams=Beams(), seed=99)
    raw = yaml.safe_load(config.read_text())
    entry = next(s for s in raw["samples"] if s["name"] == "signal")
    entry.update(files=[str(path)], events=40_000, cross_section_nb=float(meta["cross_section_nb"]), generated_events=40_000)
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(raw))
    # the loose selection: the preselection and BDT1 > 0.5, in the bins of the first fit region's axes
    region = cfg.regions[0].model_copy(update={"cuts": {"bdt1": (0.5, None)}})
    selected = explore.open_sample(big, "signal", chunksize=20_000, model_dir=outputs / cfg.name / "models").columns
    computed = selected[["mcq2", "__event__", "bdt1", "weight", *{a.variable for a in region.axes}]].compute(scheduler="synchronous")
    columns = {k: ak.to_numpy(computed[k]) for k in computed.fields}
    weights = columns.pop("weight")
    flat = _flat_bins(columns, region)
    n_bins = int(np.prod([len(a.edges) - 1 for a in region.axes]))
    edges = cfg.publication.q2_gen_edges
    # halves by a hash, not by parity: the BDT folds are the parities, and each half must be scored by both models alike
    first_half = hash_uniform(columns["__event__"], 0, 5, "half") < 0.5
    half_a = first_half & (flat >= 0)
    half_b = ~first_half & (flat >= 0)
    rows = np.digitize(columns["mcq2"], edges)  # 0: underflow, len(edges): overflow, as the densities' rows
    density = np.zeros((len(edges) + 1, n_bins))
    sumw2 = np.zeros_like(density)
    np.add.at(density, (rows[half_a], flat[half_a]), weights[half_a])
    np.add.at(sumw2, (rows[half_a], flat[half_a]), weights[half_a] ** 2)
    q2_max = (M_BPLUS - M_KAON) ** 2
    grid = np.linspace(0.0, q2_max, 20001)

    def pdf(model: str, q2: np.ndarray) -> np.ndarray:
        return dgamma_dq2_operator(model, q2, M_BPLUS, M_KAON) / np.trapezoid(dgamma_dq2_operator(model, grid, M_BPLUS, M_KAON), grid)

    for model in ("scalar", "tensor"):
        w = bin_weights(model, edges)
        predicted, predicted_var = w @ density, (w**2) @ sumw2
        ratio = pdf(model, columns["mcq2"]) / pdf("sm", columns["mcq2"])
        r_max = ratio[half_b].max()
        accepted = half_b & (hash_uniform(columns["__event__"], 0, 7, model) < ratio / r_max)
        observed = np.bincount(flat[accepted], weights[accepted] * r_max, minlength=n_bins)
        # the accept-reject estimator's variance, sum of w^2 r_max r over half B: exact in expectation, also where few pass
        observed_var = np.bincount(flat[half_b], weights[half_b] ** 2 * r_max * ratio[half_b], minlength=n_bins)
        keep = predicted_var + observed_var > 0
        chi2 = np.sum((predicted - observed)[keep] ** 2 / (predicted_var + observed_var)[keep])
        assert stats.chi2.sf(chi2, keep.sum()) > 0.01, (model, chi2, keep.sum())
        sm = density.sum(axis=0)  # not reweighted: the half A template of the SM spectrum
        chi2_sm = np.sum((sm - observed)[keep] ** 2 / (sumw2.sum(axis=0) + observed_var)[keep])
        assert stats.chi2.sf(chi2_sm, keep.sum()) < 0.01, (model, chi2_sm)  # the test can tell the spectra apart
