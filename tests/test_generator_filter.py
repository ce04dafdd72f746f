"""The truth-level generator filter: its count, its bookkeeping and that it biases nothing the analysis selects."""

from __future__ import annotations

import numpy as np
import pytest
import uproot
from scipy import stats

from kvv import eventformat as ef
from kvv.config import GeneratorFilter, Sample
from kvv.eventformat import Process
from kvv.io.inputs import FB_PER_NB, SampleInputs, inspect_file
from kvv.physics.beams import Beams
from kvv.simulate import cross_section, generate_events, generate_sample, read_metadata
from kvv.simulate.filter import charged_in_acceptance, select_events

BEAMS = Beams()
FILTER = GeneratorFilter(min_charged=3)


def test_charged_count_against_a_plain_loop():
    events = generate_events(Process.TAUPAIR, 300, beams=BEAMS, seed=4)
    counts = charged_in_acceptance(events, 0.1)
    for i in range(events.n_events):
        n = 0
        for row in range(events.offsets[i], events.offsets[i + 1]):
            _, px, py, pz = events.p4[row]
            theta = np.degrees(np.arctan2(np.hypot(px, py), pz))
            n += abs(events.pdg[row]) in (11, 13, 211, 321, 2212) and 17.0 < theta < 150.0 and np.hypot(px, py) > 0.1
        assert counts[i] == n
    kept = select_events(events, counts >= 3)
    assert kept.n_events == int((counts >= 3).sum())
    assert np.array_equal(charged_in_acceptance(kept, 0.1), counts[counts >= 3])


def _sample(path, events, generator_filter=None, seed=1):
    return generate_sample(Process.TAUPAIR, events, path, beams=BEAMS, seed=seed, chunk_size=50_000, generator_filter=generator_filter)


def test_filtered_sample_bookkeeping(tmp_path):
    plain, filtered = tmp_path / "plain.root", tmp_path / "filtered.root"
    _sample(plain, 12_000)
    meta = _sample(filtered, 12_000, FILTER)
    assert read_metadata(filtered) == meta
    assert meta["n_events"] == 12_000 and meta["generator_filter"] == {"min_charged": 3, "pt_min": 0.1}
    with uproot.open(filtered) as f, uproot.open(plain) as g:
        numbers = f[ef.TREE_NAME]["__event__"].array(library="np")
        plain_numbers = g[ef.TREE_NAME]["__event__"].array(library="np")
    assert len(numbers) == meta["n_written"] and meta["filter_efficiency"] == pytest.approx(len(numbers) / 12_000)
    # tau pairs are mostly 1-prong against 1-prong: the filter drops most of them
    assert 0.15 < meta["filter_efficiency"] < 0.35
    # the same seed generates the same events: the filtered file keeps a subset, numbered as generated
    assert np.all(np.diff(numbers) > 0) and np.isin(numbers, plain_numbers).all()

    # the events generated, not the entries, normalise the sample: weight x generated = sigma x L
    info = inspect_file(str(filtered), ef.TREE_NAME, ef.all_branches(mc=False))
    assert (info.entries, info.n_generated) == (meta["n_written"], 12_000)
    inputs = SampleInputs(Sample(name="taupair", process="taupair", template="taupair", events=12_000), files=[info])
    lumi = 362.0
    assert inputs.weight(lumi) * inputs.n_generated == pytest.approx(cross_section(Process.TAUPAIR) * FB_PER_NB * lumi)


def _loosely_selected(path) -> dict[str, np.ndarray]:
    """Per event passing a loose reconstruction-level selection (>= 4 tracks after the ITA cleanup): number, tracks, sum of |p|."""
    with uproot.open(path) as f:
        t = f[ef.TREE_NAME].arrays(["__event__", "track_px", "track_py", "track_pz", "track_dr", "track_dz"], library="ak")
    pt = np.hypot(t.track_px, t.track_py)
    p = np.sqrt(pt**2 + t.track_pz**2)
    theta = np.arctan2(pt, t.track_pz)
    clean = (pt > 0.1) & (theta > 0.2967) & (theta < 2.6180) & (abs(t.track_dr) < 0.5) & (abs(t.track_dz) < 3.0)
    n_tracks = np.asarray(np.sum(clean, axis=1))
    p_sum = np.asarray(np.sum(p[clean], axis=1))
    selected = n_tracks >= 4
    return {"event": np.asarray(t["__event__"])[selected], "n_tracks": n_tracks[selected], "p_sum": p_sum[selected]}


def _chi2_pvalue(a: np.ndarray, b: np.ndarray, wa: float, wb: float, edges: np.ndarray) -> float:
    """Two weighted histograms of unweighted entries compared bin by bin, both with their Poisson errors."""
    ha, _ = np.histogram(a, edges)
    hb, _ = np.histogram(b, edges)
    filled = (ha + hb) > 0
    chi2 = np.sum((wa * ha - wb * hb)[filled] ** 2 / (wa**2 * ha + wb**2 * hb)[filled])
    return float(stats.chi2.sf(chi2, int(filled.sum())))


def test_filter_is_unbiased_and_loose(tmp_path):
    """Filtered against plain generation of tau pairs, independent seeds, in a loose selection.

    150 000 generated events each leave ~2 x 10^4 selected: a 5 % difference in yield would be ~5 sigma.
    """
    n = 150_000
    plain, filtered, same_seed = tmp_path / "plain.root", tmp_path / "filtered.root", tmp_path / "same_seed.root"
    _sample(plain, n, seed=21)
    _sample(filtered, n, FILTER, seed=22)
    _sample(same_seed, n, FILTER, seed=21)
    a, b = _loosely_selected(plain), _loosely_selected(filtered)
    # the same generated-event count, so equal weights: compare the selected counts as two Poisson numbers
    na, nb = len(a["n_tracks"]), len(b["n_tracks"])
    assert na > 15_000
    assert abs(na - nb) / np.sqrt(na + nb) < stats.norm.isf(0.005)  # two-sided p > 0.01
    assert _chi2_pvalue(a["n_tracks"], b["n_tracks"], 1.0, 1.0, np.arange(3.5, 11.5)) > 0.01
    assert _chi2_pvalue(a["p_sum"], b["p_sum"], 1.0, 1.0, np.linspace(0.0, 12.0, 25)) > 0.01
    # loose: with the same seed the filter drops whole generated events; of the plain sample's
    # selected events, fewer than 1 % (in fact none or a handful) are among them
    with uproot.open(same_seed) as f:
        kept = f[ef.TREE_NAME]["__event__"].array(library="np")
    assert len(kept) < 0.35 * n
    assert np.mean(~np.isin(a["event"], kept)) < 0.01
