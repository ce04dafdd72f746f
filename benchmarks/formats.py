"""Throughput of the three input routes on the same events: kvv's layout, basf2 per-list trees, basf2 candidate ntuple.

The largest MC sample's first file is written in both basf2 layouts (:mod:`kvv.basf2_writer`)
and each route runs the whole processor with the same models in one process (iterative
executor): events per wall second is events/s/core. The ntuple route skips the kernels
(basf2 computed the variables) but reads one row per candidate: once with every cleaned
track a candidate (kvv picks the best), once with the best candidate alone (basf2 ranked
them, as ``rankByHighest(..., numBest=1)`` leaves a list).
"""

from __future__ import annotations

import time
from pathlib import Path

from coffea import processor

from benchmarks import chain
from kvv.basf2_writer import TRUTH_VARIABLES, ntuple_from_kvv, write_eventbased
from kvv.config import AnalysisConfig
from kvv.io import inputs
from processors.knunu import KnunuProcessor


def _route_config(cfg: AnalysisConfig, sample: str, layout: str, path: str, n_events: int, xsec: float) -> AnalysisConfig:
    raw = cfg.model_dump(mode="json")
    for entry in raw["samples"]:
        if entry["name"] == sample:
            entry.update(files=[path], format=layout, generated_events=n_events, cross_section_nb=xsec)
    raw["input"]["truth"] = dict(TRUTH_VARIABLES)
    raw["input"]["ntuple"]["columns"] = {col: col for col in sorted(KnunuProcessor.columns_needed(cfg))}
    return AnalysisConfig.model_validate(raw)


def _timed(fileset: dict, proc: KnunuProcessor, chunksize: int) -> tuple[float, float]:
    executor = processor.IterativeExecutor(status=False)
    chain.run_runner(fileset, proc, executor, chunksize)  # warm-up: numba caches, models
    w0, c0 = time.perf_counter(), time.process_time()
    chain.run_runner(fileset, proc, executor, chunksize)
    return time.perf_counter() - w0, time.process_time() - c0


def run(cfg: AnalysisConfig, fileset: dict, model_dir: Path, chunksize: int, workdir: Path) -> dict:
    """events/s/core of each route on the first file of the largest MC sample that kvv writes unfiltered, and their ratios to kvv's.

    (A sample given as files cannot carry a generator filter: the route configs list the file.)
    """
    sample = max((s for s in cfg.samples if not s.is_data and not s.generator_filter.active), key=lambda s: s.events).name
    src = next(iter(fileset[sample]["files"]))
    info = inputs.inspect_file(src, cfg.tree, inputs.REQUIRED_BRANCHES)
    meta = fileset[sample]["metadata"]
    workdir.mkdir(parents=True, exist_ok=True)
    files = {
        "kvv": (src, cfg.tree),
        "basf2_eventbased": (str(write_eventbased(src, str(workdir / f"{sample}_eventbased.root"))), "tracks"),
    }
    probe = _route_config(cfg, sample, "basf2_ntuple", "", info.n_generated, info.cross_section_nb or 0.0)
    columns = probe.input.ntuple.columns
    files["basf2_ntuple"] = (str(ntuple_from_kvv(probe, src, str(workdir / f"{sample}_ntuple.root"), columns)), "variables")
    best = ntuple_from_kvv(probe, src, str(workdir / f"{sample}_ntuple_best.root"), columns, best_only=True)
    files["basf2_ntuple, ranked by basf2"] = (str(best), "variables")
    out: dict = {"sample": sample, "events": info.entries, "chunksize": chunksize, "routes": {}}
    for layout, (path, tree) in files.items():
        route_cfg = (
            cfg
            if layout == "kvv"
            else _route_config(cfg, sample, layout.split(",")[0], path, info.n_generated, info.cross_section_nb or 0.0)
        )
        fs = {sample: {"files": {path: tree}, "metadata": meta}}
        wall, cpu = _timed(fs, KnunuProcessor(route_cfg, model_dir=model_dir), chunksize)
        out["routes"][layout] = {"seconds": wall, "cpu_seconds": cpu, "events_per_s_per_core": info.entries / wall}
    kvv = out["routes"]["kvv"]["events_per_s_per_core"]
    for entry in out["routes"].values():
        entry["relative_to_kvv"] = entry["events_per_s_per_core"] / kvv
    return out
