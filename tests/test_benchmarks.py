"""The three implementations of the benchmark — kvv's processor (b), pandas (c), awkward (d) — agree.

A correctness test on a small sample (no timing): same cutflows and histograms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from coffea import processor

from benchmarks import awkward_way, chain, pandas_way
from kvv import bdt, features, selection
from kvv.config import load_config
from kvv.io import inputs
from processors.knunu import KnunuProcessor
from tests.conftest import small_config_dict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(small_analysis, tmp_path_factory):
    """The small analysis (tests/conftest.py) with its BDT1 region cut loosened, trained, and its fileset."""
    import pandas as pd

    raw = small_config_dict(load_config(small_analysis).simulation.directory)
    raw.pop("systematics", None)  # the benchmark compares the nominal chain
    raw["bdt"]["continuum"]["bdt1_cut"] = 0.0  # out of fold, continuum MC rarely passes any BDT1 cut here
    for region in raw["regions"]:
        region["cuts"]["bdt1"] = [0.5, None]
    root = tmp_path_factory.mktemp("bench")
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    fileset = inputs.fileset(inputs.collect_inputs(cfg, cfg.samples), cfg)
    table_dir = root / "tables"
    table_dir.mkdir()
    train = {k: v for k, v in fileset.items() if not v["metadata"]["is_data"] or v["metadata"]["resonance"] == "off"}
    out = chain.run_runner(train, KnunuProcessor(cfg, table_dir=table_dir), processor.IterativeExecutor(status=False), 5000)
    tables = {k: pd.concat([pd.read_parquet(p) for p in v], ignore_index=True) for k, v in out["tables"].items()}
    mc = pd.concat([t for k, t in tables.items() if not fileset[k]["metadata"]["is_data"]], ignore_index=True)
    mc["is_signal"] = mc["sample"] == "signal"
    offres = pd.concat([t for k, t in tables.items() if fileset[k]["metadata"]["is_data"]], ignore_index=True)
    bdt.train_all(mc, cfg.bdt, root / "models", config_hash="test", offres_table=offres, diagnostics=False)
    return KnunuProcessor(cfg, model_dir=root / "models"), fileset


@pytest.fixture(scope="module")
def reference(trained):
    proc, fileset = trained
    part = chain.subset(fileset, 1500, 1000)
    return proc, part, chain.run_staged(proc, part)[0]


def test_staged_chain_equals_processor(trained):
    """The benchmark's timed re-composition gives the processor's output."""
    proc, fileset = trained
    sub = {name: fileset[name] for name in ("signal", "uubar", "data_off_uubar")}
    staged = chain.run_staged(proc, chain.chunks(sub, 100_000))[0]
    direct = chain.run_runner(sub, proc, processor.IterativeExecutor(status=False), 100_000)
    result = chain.compare(direct, staged)
    assert result["identical"], result["mismatches"]


def test_awkward_way_agrees(reference):
    proc, part, ref = reference
    got = chain.run_staged(proc, part, awkward_way.event_features)[0]
    result = chain.compare(ref, got)
    assert result["identical"], result["mismatches"]
    assert sum(ref["templates"]["SR"].values(flow=True).ravel() != 0) > 0  # the comparison is not vacuous


def test_pandas_way_agrees(reference):
    proc, part, ref = reference
    got = proc.postprocess(processor.accumulate([pandas_way.process_chunk(proc, c) for c in part]))
    result = chain.compare(ref, got)
    assert result["identical"], result["mismatches"]


def test_awkward_features_match_kernels(trained):
    """Feature by feature on one chunk, so a disagreement is named even when no bin moves."""
    proc, fileset = trained
    chunk = chain.subset(fileset, 2000, 100_000)[1]
    events = chain.load_events(chunk)
    cfg = proc.cfg
    tracks = selection.track_columns(events.Tracks[selection.track_mask(events.Tracks, cfg.cleanup.tracks)])
    photons = selection.photon_columns(events.Photons[selection.photon_mask(events.Photons, cfg.cleanup.photons)])
    beam = selection.beam_columns(events)
    ref = features.event_features(tracks, photons, beam, min_pxd_hits=cfg.kaon.min_pxd_hits)
    got = awkward_way.event_features(tracks, photons, beam, min_pxd_hits=cfg.kaon.min_pxd_hits)
    assert ref.keys() == got.keys()
    for name in ref:
        np.testing.assert_allclose(np.asarray(got[name], float), np.asarray(ref[name], float), rtol=1e-9, atol=1e-12, err_msg=name)
    assert not math.isnan(sum(np.sum(v) for v in got.values()))


def test_update_readme_replaces_only_the_results_block(tmp_path):
    from benchmarks import report

    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{report.RESULTS_BEGIN}\n\nold tables\n{report.RESULTS_END}\n\n## after\n")
    results = {"command": "python -m benchmarks --quick", "machine": {**report.machine(), "load_average_end": (0.0, 0.0, 0.0)}, "goals": []}
    report.update_readme(results, readme)
    text = readme.read_text()
    assert "old tables" not in text
    assert text.startswith("# intro\n") and text.endswith("## after\n")
    assert "Command: `python -m benchmarks --quick`" in text
    assert "#### Throughput per core" in text
