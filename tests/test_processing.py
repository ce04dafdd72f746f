"""The processing chain end to end: identical histograms on every executor and chunk size,
cutflows that account for every entry, and clear errors on bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import assert_identical_histograms as _assert_identical
from conftest import process_stage as _process

from kvv import eventformat, histograms
from kvv.config import load_config
from kvv.io.samplefiles import sample_file_paths
from kvv.physics.beams import Beams
from kvv.run import main
from kvv.simulate import read_metadata
from kvv.simulate.writer import branch_types

pytestmark = pytest.mark.slow


def test_reference_run_fills_templates_and_counts_every_entry(trained, reference):
    config, outputs = trained
    cfg = load_config(config)
    sr = reference["templates"]["SR"]
    signal = sr[{"dataset": "signal", "variation": "nominal"}].values().sum()
    assert signal > 0, "signal reaches the signal region"
    import json

    summary = json.loads((outputs / cfg.name / "summary.json").read_text())
    cutflow = json.loads((outputs / cfg.name / "cutflow.json").read_text())
    for sample in cfg.samples:
        info = summary["samples"][sample.name]
        # a filtered sample's files hold the events its generator filter passed, counted in their metadata
        written = sum(read_metadata(path)["n_written"] for path in sample_file_paths(cfg, sample))
        assert info["entries_processed"] == info["entries_in_files"] == written
        assert info["events_generated"] == sample.events
        assert (written < sample.events) == sample.generator_filter.active
        assert cutflow[sample.name]["entries read"]["events"] == written
        steps = [row["events"] for row in cutflow[sample.name].values()]
        assert steps == sorted(steps, reverse=True), "cutflow steps only remove events"


# iterative with 1500-event chunks: the determinism test below (against dask with 4000-event chunks)
@pytest.mark.parametrize("executor,chunksize", [("futures", "4000"), ("dask", "2500")])
def test_histograms_identical_across_executors_and_chunk_sizes(trained, reference, executor, chunksize, tmp_path):
    config, outputs = trained
    other = tmp_path / "outputs"
    shutil.copytree(outputs, other)  # same trained models
    result = _process(config, other, "--executor", executor, "--workers", "2", "--chunksize", chunksize)
    _assert_identical(reference, result)


def test_object_variations_recomputing_every_event_give_the_same_templates(trained, reference, tmp_path, monkeypatch):
    """The processor recomputes only the events whose objects a variation changes; all of them gives the same bits."""
    from processors import knunu

    config, outputs = trained
    other = tmp_path / "outputs"
    shutil.copytree(outputs, other)
    monkeypatch.setattr(knunu, "changed_events", lambda nominal, varied: np.ones(nominal.n_events, dtype=bool))
    every_event = _process(config, other, "--executor", "iterative", "--chunksize", "3000")
    _assert_identical(reference, every_event)
    for variation in ("tracking_efficiency_down", "photon_energy_scale_up", "momentum_scale_up"):  # the test compares moved templates
        moved = [
            name for name, h in reference["templates"].items()
            if not np.array_equal(h[{"variation": variation}].values(), h[{"variation": "nominal"}].values())
        ]  # fmt: skip
        assert moved, variation


@pytest.mark.slurm
def test_histograms_identical_on_slurm(trained, reference, slurm, tmp_path):
    from slurm_setup import slurm_cli_args, wait_queue_empty

    config, outputs = trained
    other = tmp_path / "outputs"
    shutil.copytree(outputs, other)
    result = _process(config, other, "--chunksize", "2500", *slurm_cli_args(slurm, tmp_path, max_jobs=2, memory="3GB"))
    _assert_identical(reference, result)
    assert wait_queue_empty() == []


def test_fit_recovers_the_injected_signal_on_the_default_analysis(trained, reference):
    """Asimov pseudo-data with mu = 1 on the small default analysis: the fit gives mu = 1
    with a finite uncertainty, and the limit and significance are computed."""
    import json

    config, outputs = trained
    cfg = load_config(config)
    assert main(["--config", str(config), "--stage", "fit", "--outputs", str(outputs)]) == 0
    results = json.loads((outputs / cfg.name / "fit" / "fit_results.json").read_text())
    mu, sigma = results["mle"]["poi_value"], results["mle"]["poi_error"]
    assert np.isfinite(sigma) and sigma > 0
    assert abs(mu - cfg.fit.injected_mu) < 1e-3 * max(1.0, sigma), (mu, sigma)
    assert results["upper_limit"]["observed"] > cfg.fit.injected_mu
    workspace = json.loads((outputs / cfg.name / "workspace.json").read_text())
    assert {c["name"] for c in workspace["channels"]} <= {r.name for r in cfg.regions}
    assert (outputs / cfg.name / "fit" / "systematics_table.md").exists()


def test_jpsik_validation_runs_in_the_process_stage(trained, reference):
    """The J/psi K+ samples are read in full, the proxy efficiency is the cutflow's ratio,
    the Mbc peak sits at the B+ mass, and pseudo-data and MC (same generator) agree."""
    import json

    from kvv.jpsik import M_BPLUS

    config, outputs = trained
    cfg = load_config(config)
    result = json.loads((outputs / cfg.name / "jpsik_validation.json").read_text())
    for sample in (cfg.validation.mc, cfg.validation.data):
        flow = result["cutflow"][sample.name]
        assert result["entries"][sample.name] == flow["entries read"]["events"] == sample.events
        assert flow["J/psi K+ candidate"]["events"] == result["candidates"][sample.name] > 0.5 * sample.events
        eff = flow["proxy BDT cuts"]["events"] / flow["J/psi K+ candidate"]["events"]
        assert result["efficiency"][sample.name]["value"] == pytest.approx(eff, rel=1e-12)
        assert 0 < eff < 1
    assert abs(result["ratio"] - 1.0) < 3 * result["ratio_error"]
    # the beam-energy spread sets the Mbc resolution: sigma(sqrt(s)) / 2, about 2.5 MeV
    for fit in result["mbc_fit"].values():
        assert fit["converged"]
        assert fit["mean"] == pytest.approx(M_BPLUS, abs=max(5 * fit["mean_error"], 5e-4))
        assert fit["sigma"] == pytest.approx(0.5 * Beams().sqrt_s_spread, rel=0.2)
    for name in ("mbc", "delta_e", "proxy_bdt2"):
        assert (outputs / cfg.name / "plots" / f"jpsik_{name}.png").exists()
    assert "ratio data / MC" in (outputs / cfg.name / "jpsik_validation.md").read_text()


# --- bad input ---------------------------------------------------------------------


def _config_with_file(small_analysis: Path, tmp_path: Path, bad_file: Path) -> Path:
    import yaml

    raw = yaml.safe_load(small_analysis.read_text())
    raw["samples"] = [s for s in raw["samples"] if s["name"] in ("signal", "charged")]
    good = load_config(small_analysis)
    from kvv.io.samplefiles import sample_file_paths

    raw["samples"][0]["files"] = [*sample_file_paths(good, good.sample("signal")), str(bad_file)]
    raw["samples"][0]["events"] = 0
    raw["samples"][1]["files"] = sample_file_paths(good, good.sample("charged"))
    raw["bdt"] = None
    raw["systematics"] = {}
    path = tmp_path / "bad_input.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _without_collections(dst: Path) -> Path:
    with uproot.recreate(dst) as f:
        f[eventformat.TREE_NAME] = {b.name: np.zeros(10, dtype=b.dtype) for b in eventformat.EVENT_BRANCHES}
    return dst


def _empty_tree(dst: Path) -> Path:
    with uproot.recreate(dst) as f:
        f.mktree(eventformat.TREE_NAME, branch_types(mc=False), counter_name=lambda c: {"track": "nTracks", "photon": "nPhotons"}[c])
    return dst


BAD_FILES = {
    "missing": (lambda src, dst: dst, "file does not exist"),
    "not_root": (lambda src, dst: dst.write_text("not a ROOT file\n") and dst, "not a readable ROOT file"),
    "truncated": (_truncated, "truncated ROOT file"),
    "missing_branch": (lambda src, dst: _without_collections(dst), "has no branch 'nTracks'"),
    "empty_tree": (lambda src, dst: _empty_tree(dst), "tree 'events' is empty"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_input_is_one_clear_line_or_a_reported_skip(small_analysis, tmp_path, capsys, kind):
    make, message = BAD_FILES[kind]
    good = load_config(small_analysis)
    from kvv.io.samplefiles import sample_file_paths

    src = Path(sample_file_paths(good, good.sample("signal"))[0])
    bad = tmp_path / f"{kind}.root"
    make(src, bad)
    config = _config_with_file(small_analysis, tmp_path, bad)
    outputs = tmp_path / "out"
    base = ["--config", str(config), "--stage", "process", "--executor", "iterative", "--outputs", str(outputs), "--no-progress"]

    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kvv: error: ")
    assert str(bad) in err[0] and message in err[0]

    assert main([*base, "--skip-bad-files"]) == 0
    import json

    summary = json.loads((outputs / "ita2021_small" / "summary.json").read_text())
    skipped = summary["samples"]["signal"]["skipped_files"]
    assert [s["file"] for s in skipped] == [str(bad)] and message in skipped[0]["reason"]
    assert summary["samples"]["signal"]["entries_processed"] == summary["samples"]["signal"]["entries_in_files"] > 0


def _numbers(tree, path=""):
    """Every number of a JSON tree with its path, timings left out."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() if key != "timings" for k, v in _numbers(value, f"{path}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in _numbers(value, f"{path}[{i}]").items()}
    return {path: tree} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else {}


def test_same_inputs_give_the_same_models_histograms_and_fit_on_any_executor_and_chunking(small_analysis, tmp_path):
    """Train, process and fit twice: iterative with 1500-event chunks, dask with 2 workers and 4000-event chunks.

    Byte-identical BDT models, the same bits in every histogram bin, the same workspace and fit results.
    """
    runs = {"iterative-1500": ["--executor", "iterative", "--chunksize", "1500"],
            "dask-2x4000": ["--executor", "dask", "--workers", "2", "--chunksize", "4000"]}  # fmt: skip
    name = load_config(small_analysis).name
    models, hists, workspaces, fits = {}, {}, {}, {}
    for run, extra in runs.items():
        out = tmp_path / run
        assert main(["--config", str(small_analysis), "--stage", "all", "--outputs", str(out), "--no-progress", *extra]) == 0
        model_dir = out / name / "models"
        models[run] = {p.relative_to(model_dir): p.read_bytes() for p in sorted(model_dir.rglob("*.ubj"))}
        hists[run] = histograms.load_pickle(out / name / "histograms.pkl")
        workspaces[run] = (out / name / "workspace.json").read_bytes()
        fits[run] = _numbers(json.loads((out / name / "fit" / "fit_results.json").read_text()))
    (first, second) = models.values()
    assert len(first) >= 6, sorted(first)  # BDT1, BDT2 and BDTc, two folds each
    assert first.keys() == second.keys()
    for path in first:
        assert first[path] == second[path], path
    _assert_identical(*hists.values())
    assert len(set(workspaces.values())) == 1
    one, other = fits.values()
    assert one.keys() == other.keys() and "/mle/poi_value" in one and "/upper_limit/observed" in one
    for key in one:
        assert other[key] == pytest.approx(one[key], rel=1e-9, abs=1e-12), key


def _records(folder: Path) -> list[Path]:
    """Finished chunk records (a record being written has a temporary dot-name)."""
    return [p for p in folder.rglob("*.pkl") if not p.name.startswith(".")]


def test_an_interrupted_process_stage_resumes_from_its_chunk_records(trained, reference, tmp_path):
    """SIGKILL of the CLI after about half of its chunks; the same command again processes only the others."""
    import signal
    import time

    config, outputs = trained
    other = tmp_path / "outputs"
    shutil.copytree(outputs, other)
    name = load_config(config).name
    records = other / name / "chunk_records" / "process"
    command = [sys.executable, "-m", "kvv.run", "--config", str(config), "--stage", "process", "--executor", "iterative",
               "--chunksize", "1000", "--outputs", str(other), "--no-progress"]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(_records(records)) < 30 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = len(_records(records))
    assert done >= 30, "the run ended before it could be interrupted"
    assert (other / name / ".kvv.lock").exists()  # left by the killed run

    second = subprocess.run(command, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "taking over the stale lock" in second.stderr
    summary = json.loads((other / name / "summary.json").read_text())
    chunks = summary["metrics"]["chunks"]
    assert chunks > done
    assert summary["chunks"] == {"resumed": done, "processed": chunks - done}
    assert not (other / name / "chunk_records").exists()  # removed with the run complete
    _assert_identical(reference, histograms.load_pickle(other / name / "histograms.pkl"))


def test_chunk_records_of_other_settings_are_not_reused(tmp_path):
    from kvv.io.chunkrecords import ChunkRecords, records_key

    meta = {"dataset": "signal", "filename": "/x/signal.root", "treename": "events", "fileuuid": "u1", "entrystart": 0, "entrystop": 10}
    old = ChunkRecords(tmp_path, records_key("process", "config A"))
    old.save({"out": {"cutflow": {"signal": {"entries read": 10}}}}, meta, None)
    assert old.load(meta, None)["out"]["chunks"] == {"resumed": 1}
    assert old.load({**meta, "fileuuid": "u2"}, None) is None  # the file was rewritten
    assert old.load({**meta, "entrystop": 11}, None) is None  # another chunking
    new = ChunkRecords(tmp_path, records_key("process", "config B"))
    assert new.load(meta, None) is None
    new.discard_others()
    assert not old.path.exists()


def test_training_tables_are_read_in_one_order_whatever_the_chunking(tmp_path):
    import pandas as pd

    from kvv.run import read_tables

    rng = np.random.default_rng(5)
    rows = pd.DataFrame({"sample": rng.choice(["charged", "signal"], 40), "__experiment__": 0,
                         "__run__": rng.integers(1, 3, 40), "__event__": rng.permutation(40), "x": rng.normal(size=40)})  # fmt: skip
    paths = []
    shuffled = rows.sample(frac=1.0, random_state=1)
    for k in range(5):
        paths.append(str(tmp_path / f"chunk{k}.parquet"))
        shuffled.iloc[8 * k : 8 * (k + 1)].to_parquet(paths[-1], index=False)
    one, other = read_tables(paths), read_tables(paths[::-1])
    pd.testing.assert_frame_equal(one, other)
    assert one[["sample", "__run__", "__event__"]].apply(tuple, axis=1).is_monotonic_increasing


def _write_kvv_layout(path: Path, events) -> None:
    """A kvv-layout file (no metadata) from the arrays of one."""
    groups = {eventformat.TRACKS: "Tracks", eventformat.PHOTONS: "Photons"}
    scalars = {k: np.asarray(events[k]) for k in events.fields if events[k].ndim == 1 and not k.startswith("n")}
    collections = {
        name: ak.zip({f.name: events[coll.branch(f.name)] for f in coll.fields if coll.branch(f.name) in events.fields})
        for coll, name in groups.items()
    }
    counters = {name: coll.counter for coll, name in groups.items()}
    prefixes = {name: coll.prefix for coll, name in groups.items()}
    with uproot.recreate(path) as out:
        out.mktree(
            eventformat.TREE_NAME,
            {**{k: v.dtype for k, v in scalars.items()}, **{k: v.type.content for k, v in collections.items()}},
            counter_name=lambda counted: counters[counted],
            field_name=lambda outer, inner: f"{prefixes[outer]}_{inner}",
        )
        out[eventformat.TREE_NAME].extend({**scalars, **collections})


def test_nonfinite_inputs_stop_the_run_or_are_dropped_and_counted(trained, tmp_path, capsys):
    config, outputs = trained
    cfg = load_config(config)
    signal = cfg.sample("signal")
    source = sample_file_paths(cfg, signal)[0]
    with uproot.open(source) as f:
        events = f[eventformat.TREE_NAME].arrays()
        meta = json.loads(str(f[eventformat.METADATA_KEY]))
    rng = np.random.default_rng(17)
    with_tracks = np.flatnonzero(ak.to_numpy(ak.num(events["track_px"])) > 0)
    bad = np.zeros(len(events), dtype=bool)
    bad[rng.choice(with_tracks, size=len(events) // 100, replace=False)] = True
    px = events["track_px"]
    events_nan = ak.with_field(events, ak.where(bad[:, None] & (ak.local_index(px) == 0), np.float32(np.nan), px), "track_px")
    _write_kvv_layout(tmp_path / "nan.root", events_nan)
    _write_kvv_layout(tmp_path / "clean.root", events[~bad])

    def config_with(file: Path) -> Path:
        raw = yaml.safe_load(config.read_text())
        entry = next(s for s in raw["samples"] if s["name"] == "signal")
        entry.update(files=[str(file)], cross_section_nb=meta["cross_section_nb"], generated_events=meta["n_events"])
        path = tmp_path / f"{file.stem}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    for name in ("stop", "drop", "clean"):
        shutil.copytree(outputs, tmp_path / name)
    args = ["--stage", "process", "--executor", "iterative", "--chunksize", "2500", "--no-progress"]
    assert main(["--config", str(config_with(tmp_path / "nan.root")), "--outputs", str(tmp_path / "stop"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nan.root: branch 'track_px' holds NaN" in err[0] and "--drop-nonfinite" in err[0], err

    dropped = _process(config_with(tmp_path / "nan.root"), tmp_path / "drop", *args[2:], "--drop-nonfinite")
    clean = _process(config_with(tmp_path / "clean.root"), tmp_path / "clean", *args[2:])
    _assert_identical(clean, dropped)
    summary = json.loads((tmp_path / "drop" / cfg.name / "summary.json").read_text())
    assert summary["samples"]["signal"]["nonfinite_dropped"] == {str(tmp_path / "nan.root"): int(bad.sum())}
    assert summary["samples"]["signal"]["entries_processed"] == len(events)
    cutflow = json.loads((tmp_path / "drop" / cfg.name / "cutflow.json").read_text())["signal"]
    assert cutflow["entries read"]["events"] == len(events)
    assert cutflow["finite input"]["events"] == len(events) - int(bad.sum())


def test_a_second_run_on_a_locked_outputs_folder_is_refused(trained, tmp_path, capsys):
    config, outputs = trained
    cfg = load_config(config)
    shutil.copytree(outputs, tmp_path / "out")
    lock = tmp_path / "out" / cfg.name / ".kvv.lock"
    # held by a live process (this one)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "now"}))
    assert main(["--config", str(config), "--stage", "train", "--executor", "iterative", "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"in use by the run of pid {os.getpid()}" in err[0] and str(lock) in err[0]
    # left by a process that is gone: taken over, and released at the end
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "started": "earlier"}))
    assert main(["--config", str(config), "--stage", "train", "--executor", "iterative", "--outputs", str(tmp_path / "out")]) == 0
    assert not lock.exists()


def test_a_sample_without_usable_files_is_reported_and_the_fit_refuses(trained, tmp_path, capsys):
    config, outputs = trained
    raw = yaml.safe_load(config.read_text())
    bad = tmp_path / "not_root.root"
    bad.write_text("not a ROOT file")
    next(s for s in raw["samples"] if s["name"] == "charged").update(files=[str(bad)], cross_section_nb=0.54)
    path = tmp_path / "skipped.yaml"
    path.write_text(yaml.safe_dump(raw))
    shutil.copytree(outputs, tmp_path / "out")
    args = ["--config", str(path), "--outputs", str(tmp_path / "out"), "--no-progress"]
    assert main([*args, "--stage", "process", "--executor", "iterative", "--skip-bad-files"]) == 0
    record = json.loads((tmp_path / "out" / load_config(path).name / "summary.json").read_text())["samples"]["charged"]
    assert record["files"] == 0 and record["skipped_files"][0]["file"] == str(bad)
    capsys.readouterr()
    assert main([*args, "--stage", "fit"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "charged had no usable file" in err[0] and "--allow-missing-samples" in err[0]
    assert main([*args, "--stage", "fit", "--allow-missing-samples"]) == 0


def test_joint_densities_sum_to_the_signal_templates(trained, reference):
    """Summed over generated q² (flow bins included), each signal sample's joint density is its nominal template."""
    cfg = load_config(trained[0])
    compared = 0
    for region in cfg.regions:
        for sample in (s for s in cfg.samples if s.template == cfg.fit.signal_template and s.resonance == region.resonance):
            density = reference["densities"][region.name][{"dataset": sample.name}]
            template = reference["templates"][region.name][{"dataset": sample.name, "variation": "nominal"}]
            np.testing.assert_allclose(density.values(flow=True).sum(axis=0), template.values(), rtol=1e-12, atol=0)
            np.testing.assert_allclose(density.variances(flow=True).sum(axis=0), template.variances(), rtol=1e-12, atol=0)
            compared += int(template.values().sum() > 0)
    assert compared >= 2
    # the efficiency's denominator: every produced signal event, at the sample's weight
    weight = json.loads((trained[1] / cfg.name / "summary.json").read_text())["samples"]["signal"]["weight"]
    generated = reference["generated"]["q2_gen"][{"dataset": "signal"}].values(flow=True)
    assert generated.sum() == pytest.approx(cfg.sample("signal").events * weight, rel=1e-9)
    assert generated[0] == generated[-1] == 0  # every generated q2 in [0, 23] GeV^2


def test_publish_stage_writes_a_validated_hepdata_record(published):
    config, pub = published
    cfg = load_config(config)
    assert (pub / "submission.tar.gz").stat().st_size > 0  # hepdata-lib validated it, or the stage had failed
    assert {p.name for p in (pub / "hepdata").glob("*.yaml")} >= {"submission.yaml", "joint_number_density_sr.yaml",
                                                                  "signal_efficiency_vs_generated_q2.yaml", "upper_limit_and_significance.yaml"}  # fmt: skip
    densities = json.loads((pub / "joint_densities.json").read_text())
    workspace = json.loads((pub / "workspace.json").read_text())
    for channel in workspace["channels"]:
        entry = densities["regions"].get(channel["name"])
        if entry is None:
            continue
        signal = next(s for s in channel["samples"] if s["name"] == cfg.fit.signal_template)
        summed = np.sum([np.asarray(s["density"]) for s in entry["samples"].values()], axis=0).sum(axis=0)
        np.testing.assert_allclose(summed[entry["workspace_bins"]], signal["data"], rtol=1e-9)
