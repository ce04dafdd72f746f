"""basf2 inputs: kvv's own events written in basf2's layouts give kvv's histograms.

The small analysis's MC is written as ``VariablesToEventBasedTree`` per-list trees and
as a ``VariablesToNtuple`` candidate ntuple (kvv/basf2_writer.py); processed through
the basf2 readers, it must fill the same histograms as the same events in kvv's layout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import assert_identical_histograms, process_stage

from kvv import eventformat
from kvv.basf2_writer import TRUTH_VARIABLES, ntuple_from_kvv, write_eventbased
from kvv.config import load_config
from kvv.io.basf2 import make_root_compatible, ntuple_event_ranges
from kvv.io.samplefiles import sample_file_paths
from kvv.run import main
from processors.knunu import KnunuProcessor

# framework/tests/make_root_compatible.cc of basf2: input -> branch name
BASF2_VECTORS = {
    "": "",
    "test": "test",
    "test213": "test213",
    "test_23": "test_23",
    "test(23)": "test__bo23__bc",
    "test[23]": "test__so23__sc",
    "test{23}": "test__co23__cc",
    "test(e+:gamma, M < 3)": "test__boe__pl__clgamma__cm__spM__sp__st__sp3__bc",
    ":() (),": "__cl__bo__bc__sp__bo__bc__cm",
    "c:()b (),a": "c__cl__bo__bcb__sp__bo__bc__cma",
    "c:(,+8951aBZWVZUEOH_Rhtnsq)b (),a": "c__cl__bo__cm__pl8951aBZWVZUEOH_Rhtnsq__bcb__sp__bo__bc__cma",
    "foo(bar,-0.123, 94)": "foo__bobar__cm__mi0__pt123__cm__sp94__bc",
}

# basf2-style names of some of kvv's columns in a candidate ntuple; the others keep kvv's name as alias
NTUPLE_NAMES = {
    "roe_energy": "roeE(cleanMask)",
    "roe_p": "roeP(cleanMask)",
    "roe_mbc": "roeMbc(cleanMask)",
    "roe_delta_e": "roeDeltae(cleanMask)",
    "kaon_pt": "kaonPt",
    "q2_rec": "useCMSFrame(q2Rec)",
}


@pytest.mark.parametrize(("variable", "branch"), BASF2_VECTORS.items())
def test_make_root_compatible_matches_basf2(variable, branch):
    assert make_root_compatible(variable) == branch


def test_make_root_compatible_drops_other_characters():
    assert make_root_compatible("useCMSFrame(p)") == "useCMSFrame__bop__bc"
    assert make_root_compatible("roeE(cleanMask)") == "roeE__bocleanMask__bc"
    assert make_root_compatible("pé") == "p"


def test_ntuple_event_ranges_keep_events_whole():
    # three events of 2, 3 and 1 candidates; chunks of 2 rows
    candidate = np.array([0, 1, 0, 1, 2, 0])
    ncand = np.array([2, 2, 3, 3, 3, 1])
    ranges = [ntuple_event_ranges(candidate[a:b], ncand[a:b], a, b, 6) for a, b in ((0, 2), (2, 4), (4, 6))]
    assert ranges == [(0, 2), (2, 5), (5, 6)]
    rows = sum(b - a for a, b in ranges)
    assert rows == 6, "every row belongs to exactly one chunk"


def _mc_samples(cfg) -> list:
    return [s for s in cfg.samples if not s.is_data]


def _metadata(path: str) -> dict:
    with uproot.open(path) as f:
        return json.loads(str(f[eventformat.METADATA_KEY]))


def _basf2_config(small_analysis: Path, directory: Path, layout: str, files: dict[str, list[str]], **input_settings) -> Path:
    """The small analysis with its MC in basf2 files (its data stay in kvv's layout)."""
    raw = yaml.safe_load(small_analysis.read_text())
    cfg = load_config(small_analysis)
    for entry in raw["samples"]:
        sample = cfg.sample(entry["name"])
        if sample.is_data:
            continue
        meta = _metadata(sample_file_paths(cfg, sample)[0])
        # a filtered kvv sample becomes what a basf2 skim is: fewer entries than the events generated
        entry.pop("generator_filter", None)
        entry.update(files=files[sample.name], format=layout, generated_events=sample.events, cross_section_nb=meta["cross_section_nb"])
    raw["input"] = {"truth": dict(TRUTH_VARIABLES), **input_settings}
    path = directory / f"{layout}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def eventbased(small_analysis, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("eventbased")
    cfg = load_config(small_analysis)
    files = {}
    for sample in _mc_samples(cfg):
        files[sample.name] = [
            str(write_eventbased(p, str(directory / f"{sample.name}_{k}.root"))) for k, p in enumerate(sample_file_paths(cfg, sample))
        ]
    return _basf2_config(small_analysis, directory, "basf2_eventbased", files)


def _ntuple_names(cfg) -> dict[str, str]:
    """Every column the analysis reads, under a basf2-style name or its own as an alias."""
    return {col: NTUPLE_NAMES.get(col, col) for col in sorted(KnunuProcessor.columns_needed(cfg))}


def _ntuple_config(small_analysis: Path, directory: Path, *, best_only: bool) -> Path:
    cfg = load_config(small_analysis)
    names = _ntuple_names(cfg)
    files = {}
    for sample in _mc_samples(cfg):
        files[sample.name] = [
            str(ntuple_from_kvv(cfg, p, str(directory / f"{sample.name}_{k}.root"), names, best_only=best_only))
            for k, p in enumerate(sample_file_paths(cfg, sample))
        ]
    return _basf2_config(small_analysis, directory, "basf2_ntuple", files, ntuple={"columns": names})


@pytest.fixture(scope="module")
def ntuple(small_analysis, tmp_path_factory) -> Path:
    return _ntuple_config(small_analysis, tmp_path_factory.mktemp("ntuple"), best_only=False)


@pytest.mark.slow
@pytest.mark.parametrize("chunksize", ["1500"])  # chunks that cut the per-list trees' entries in many places
def test_eventbased_files_give_kvvs_histograms(trained, reference, eventbased, chunksize, tmp_path):
    _, outputs = trained
    shutil.copytree(outputs, tmp_path / "outputs")  # the same trained models
    result = process_stage(eventbased, tmp_path / "outputs", "--executor", "dask", "--workers", "2", "--chunksize", chunksize)
    assert_identical_histograms(reference, result)
    summary = json.loads((tmp_path / "outputs" / load_config(eventbased).name / "summary.json").read_text())
    for sample in _mc_samples(load_config(eventbased)):
        record = summary["samples"][sample.name]
        assert record["format"] == "basf2_eventbased"
        assert record["entries_processed"] == record["entries_in_files"]
        assert record["events_generated"] == sample.events
        assert record["skipped_variations"] == {}


def _assert_ntuple_histograms_match(reference: dict, result: dict, cfg) -> None:
    """Nominal and weight-varied templates and the controls of the MC equal kvv's (object variations need objects)."""
    objects = {v.name for v in cfg.systematics.object_variations}
    mc = [s.name for s in _mc_samples(cfg)]
    compared = 0
    for name, h in reference["templates"].items():
        other = result["templates"][name]
        for variation in h.axes["variation"]:
            if any(variation.startswith(f"{o}_") for o in objects):
                continue  # the ntuple's templates carry the nominal there
            for sample in mc:
                a = h[{"dataset": sample, "variation": variation}].view(flow=True)
                b = other[{"dataset": sample, "variation": variation}].view(flow=True)
                where = f"{name}/{sample}/{variation}"
                np.testing.assert_array_equal(a["value"] != 0, b["value"] != 0, err_msg=where)
                np.testing.assert_allclose(a["value"], b["value"], rtol=1e-12, atol=0, err_msg=where)
                np.testing.assert_allclose(a["variance"], b["variance"], rtol=1e-12, atol=0, err_msg=where)
                compared += 1
    for name, h in reference["controls"].items():
        for sample in mc:
            a, b = h[{"dataset": sample}].values(flow=True), result["controls"][name][{"dataset": sample}].values(flow=True)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=f"controls/{name}/{sample}")
    assert compared > 100
    assert reference["templates"]["SR"][{"dataset": "signal", "variation": "nominal"}].values().sum() > 0


@pytest.mark.slow
def test_ntuple_best_candidate_gives_kvvs_histograms(trained, reference, ntuple, tmp_path):
    _, outputs = trained
    shutil.copytree(outputs, tmp_path / "outputs")
    # chunks of 700 rows cut through events: each event must still be read whole, once
    result = process_stage(ntuple, tmp_path / "outputs", "--executor", "futures", "--workers", "2", "--chunksize", "700")
    cfg = load_config(ntuple)
    _assert_ntuple_histograms_match(reference, result, cfg)
    summary = json.loads((tmp_path / "outputs" / cfg.name / "summary.json").read_text())
    record = summary["samples"]["charged"]
    assert record["entries_processed"] == record["entries_in_files"]  # rows
    assert set(record["skipped_variations"]) == {v.name for v in cfg.systematics.object_variations}


@pytest.mark.slow
def test_ntuple_ranked_by_basf2_gives_kvvs_histograms(small_analysis, trained, reference, tmp_path):
    """The best candidate alone per event, as rankByHighest(numBest=1) leaves it: the same histograms."""
    _, outputs = trained
    config = _ntuple_config(small_analysis, tmp_path, best_only=True)
    shutil.copytree(outputs, tmp_path / "outputs")
    result = process_stage(config, tmp_path / "outputs", "--executor", "iterative", "--chunksize", "1000")
    _assert_ntuple_histograms_match(reference, result, load_config(config))


def _run_one_line_error(config: Path, tmp_path: Path, capsys, *extra: str) -> str:
    code = main(
        [
            "--config",
            str(config),
            "--stage",
            "process",
            "--outputs",
            str(tmp_path / "out"),
            "--no-progress",
            "--executor",
            "iterative",
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    return err[0]


def _with(config: Path, tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(config.read_text())
    change(raw)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_bad_basf2_inputs_are_one_line(eventbased, ntuple, tmp_path, capsys):
    cfg = load_config(eventbased)
    signal = cfg.sample("signal").files[0]
    # a tree name that is not there
    wrong_tree = _with(eventbased, tmp_path, lambda raw: raw["input"].update(eventbased={"tracks_tree": "pions"}))
    line = _run_one_line_error(wrong_tree, tmp_path, capsys)
    assert signal in line and "no tree 'pions'" in line and "photons, tracks" in line
    # a mapped variable that is not there, with the closest branch names
    wrong_var = _with(eventbased, tmp_path, lambda raw: raw["input"].update(eventbased={"tracks": {"kaonID": "kaonId"}}))
    line = _run_one_line_error(wrong_var, tmp_path, capsys)
    assert signal in line and "'kaonId'" in line and "closest: kaonID" in line
    # per-list trees whose event numbers disagree
    broken = tmp_path / "mismatched.root"
    with uproot.open(signal) as f:
        tracks, photons = f["tracks"].arrays(), f["photons"].arrays()
    photons["__event__"] = photons["__event__"] + (np.arange(len(photons)) >= 10)
    with uproot.recreate(broken) as out:
        for name, arrays in (("tracks", tracks), ("photons", photons)):
            scalars = {k: ak.to_numpy(arrays[k]) for k in arrays.fields if arrays[k].ndim == 1 and k != "__ncandidates__"}
            cands = ak.zip({k: arrays[k] for k in arrays.fields if arrays[k].ndim == 2})
            out.mktree(
                name,
                {**{k: v.dtype for k, v in scalars.items()}, "c": cands.type.content},
                counter_name=lambda c: "__ncandidates__",
                field_name=lambda o, i: i,
            )
            out[name].extend({**scalars, "c": cands})
    mismatched = _with(eventbased, tmp_path, lambda raw: raw["samples"][0].update(files=[str(broken)]))
    line = _run_one_line_error(mismatched, tmp_path, capsys)
    assert str(broken) in line and "disagree in __event__ from entry 10" in line
    # --skip-bad-files accounts for the skipped file's entries
    code = main(
        [
            "--config",
            str(mismatched),
            "--stage",
            "process",
            "--outputs",
            str(tmp_path / "skip"),
            "--no-progress",
            "--executor",
            "iterative",
            "--skip-bad-files",
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "skip" / cfg.name / "summary.json").read_text())
    skipped = summary["samples"][cfg.samples[0].name]["skipped_files"]
    assert [s["file"] for s in skipped] == [str(broken)] and skipped[0]["entries"] == len(tracks)
    # a candidate ntuple without __candidate__
    rows = tmp_path / "no_candidate.root"
    with uproot.open(load_config(ntuple).sample("signal").files[0]) as f:
        table = f["variables"].arrays(library="np")
    with uproot.recreate(rows) as out:
        kept = {k: v for k, v in table.items() if k != "__candidate__"}
        out.mktree("variables", {k: v.dtype for k, v in kept.items()})
        out["variables"].extend(kept)
    no_candidate = _with(ntuple, tmp_path, lambda raw: raw["samples"][0].update(files=[str(rows)]))
    line = _run_one_line_error(no_candidate, tmp_path, capsys)
    assert str(rows) in line and "no branch '__candidate__'" in line


@pytest.mark.slow
def test_files_accept_globs_and_directories(eventbased, tmp_path, capsys):
    cfg = load_config(eventbased)
    directory = Path(cfg.sample("signal").files[0]).parent
    globbed = _with(
        eventbased,
        tmp_path,
        lambda raw: raw["samples"][0].update(files=[str(directory / "signal_*.root"), str(directory / "signal_0.root")]),
    )
    assert sample_file_paths(load_config(globbed), load_config(globbed).samples[0]) == sorted(
        str(p) for p in directory.glob("signal_*.root")
    )
    none = _with(eventbased, tmp_path, lambda raw: raw["samples"][0].update(files=[str(directory / "nothing_*.root")]))
    line = _run_one_line_error(none, tmp_path, capsys)
    assert "nothing_*.root" in line and "matches no file" in line


@pytest.mark.slow
@pytest.mark.parametrize("example", ["basf2_eventbased", "basf2_ntuple"])
def test_shipped_example_runs_end_to_end_on_written_files(example, tmp_path, monkeypatch):
    from kvv.basf2_writer import write_example

    monkeypatch.chdir(tmp_path)  # the example's files are relative paths, as the README runs it
    written = write_example(example)
    assert len(written) == len(load_config(example).samples)
    assert main(["--config", example, "--executor", "futures", "--workers", "2", "--no-progress"]) == 0
    results = json.loads((tmp_path / "outputs" / example / "fit" / "fit_results.json").read_text())
    assert results["mle"]["poi_value"] == pytest.approx(1.0, abs=1e-3)  # Asimov data with mu = 1
    summary = json.loads((tmp_path / "outputs" / example / "summary.json").read_text())
    assert all(r["format"] == example for r in summary["samples"].values())
    assert all(r["entries_processed"] == r["entries_in_files"] > 0 for r in summary["samples"].values())


def test_ntuple_without_a_column_the_analysis_reads_is_an_error(tmp_path, capsys):
    path = tmp_path / "partial.yaml"
    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "analysis_config" / "basf2_ntuple.yaml").read_text())
    del raw["input"]["ntuple"]["columns"]["roe_mbc"], raw["input"]["ntuple"]["columns"]["thrust"]
    path.write_text(yaml.safe_dump(raw))
    assert main(["--config", str(path), "--stage", "train", "--outputs", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input.ntuple.columns lacks 2 column(s)" in err[0] and "roe_mbc, thrust" in err[0]


@pytest.mark.slow
def test_nonfinite_ntuple_values_stop_the_run_or_are_dropped_and_counted(trained, ntuple, tmp_path, capsys):
    """NaN in a variable the preselection reads, in every candidate of 1 % of the events: the one-line error, or with
    --drop-nonfinite those events counted and the histograms of the file without them."""
    _, outputs = trained
    cfg = load_config(ntuple)
    source = cfg.sample("signal").files[0]
    with uproot.open(source) as f:
        table = f["variables"].arrays(library="np")
    branch = make_root_compatible(cfg.input.ntuple.columns["theta_miss"])
    # events all of whose candidates are eligible (at least one PXD hit): each has a best candidate to check
    event_ids = np.unique(table["__event__"])
    pxd = table[make_root_compatible("nPXDHits")]
    all_eligible = np.array([np.all(pxd[table["__event__"] == e] >= 1) for e in event_ids])
    rng = np.random.default_rng(23)
    chosen = rng.choice(event_ids[all_eligible], size=len(event_ids) // 100, replace=False)
    bad_rows = np.isin(table["__event__"], chosen)
    poisoned = {**table, branch: np.where(bad_rows, np.nan, table[branch])}
    clean = {k: v[~bad_rows] for k, v in table.items()}
    for name, columns in (("nan", poisoned), ("clean", clean)):
        with uproot.recreate(tmp_path / f"{name}.root") as out:
            out.mktree("variables", {k: v.dtype for k, v in columns.items()})
            out["variables"].extend(columns)

    def config_with(name: str) -> Path:
        return _with(ntuple, tmp_path / name, lambda raw: next(s for s in raw["samples"] if s["name"] == "signal").update(
            files=[str(tmp_path / f"{name}.root")]))  # fmt: skip

    for name in ("nan", "clean"):
        (tmp_path / name).mkdir()
    line = _run_one_line_error(config_with("nan"), tmp_path / "nan", capsys)
    assert str(tmp_path / "nan.root") in line and f"branch {branch!r} holds NaN" in line and "--drop-nonfinite" in line
    args = ("--executor", "iterative", "--chunksize", "5000")
    for name in ("nan", "clean"):
        shutil.copytree(outputs, tmp_path / name / "outputs")
    dropped = process_stage(config_with("nan"), tmp_path / "nan" / "outputs", *args, "--drop-nonfinite")
    kept = process_stage(config_with("clean"), tmp_path / "clean" / "outputs", *args)
    assert_identical_histograms(kept, dropped)
    summary = json.loads((tmp_path / "nan" / "outputs" / cfg.name / "summary.json").read_text())
    assert summary["samples"]["signal"]["nonfinite_dropped"] == {str(tmp_path / "nan.root"): len(chosen)}
    cutflow = json.loads((tmp_path / "nan" / "outputs" / cfg.name / "cutflow.json").read_text())["signal"]
    assert cutflow["entries read"]["events"] - cutflow["finite input"]["events"] == len(chosen)
