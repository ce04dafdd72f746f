"""``python -m kvv.run``: the whole analysis, stage by stage.

simulate (missing samples) -> train (feature tables, BDTs) -> process
(histograms, cutflows, control plots) -> fit (workspace, inference) -> publish
(joint number densities, HEPData record).
Each stage reads what the previous one wrote in ``<outputs>/<analysis>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import hist
import numpy as np
import pandas as pd
from coffea import processor
from rich.progress import Progress, TextColumn

from kvv import bdt, cluster, fit, histograms, jpsik, publish, report, systematics
from kvv.config import DEFAULT_CONFIG, AnalysisConfig, ConfigError, load_config
from kvv.io import inputs
from kvv.io.artefacts import OutputsInUseError, SampleRecord, outputs_lock, write_json, write_text
from kvv.io.chunkrecords import CHUNKS, ChunkRecords, files_digest, records_key
from kvv.io.samplefiles import sample_file_paths
from kvv.io.schema import Belle2Schema
from kvv.peaks import fit_mbc_peak
from kvv.physics.beams import SQRT_S_ON_RESONANCE
from kvv.simulate import generate_missing, generate_sample
from processors.jpsik import JpsiKProcessor
from processors.knunu import KnunuProcessor
from processors.kstar import KstarProcessor

log = logging.getLogger("kvv")

STAGES = ("simulate", "train", "process", "fit", "publish")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kvv.run",
        description="Run a kvv analysis: simulate missing samples, train the BDTs, fill histograms, fit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help="analysis YAML: a path or a name in analysis_config/")
    p.add_argument("--stage", choices=("all", *STAGES), default="all", help="run one stage only, or all in order")
    cluster.add_arguments(p)
    p.add_argument("--chunksize", type=int, default=200_000, help="events per chunk")
    p.add_argument("--max-files", type=int, default=None, help="at most this many files per sample")
    p.add_argument("--max-chunks", type=int, default=None, help="at most this many chunks per sample")
    p.add_argument("--outputs", type=Path, default=Path("outputs"), help="output folder")
    p.add_argument("--skip-bad-files", action="store_true", help="skip unreadable files and list them in the summary")
    p.add_argument(
        "--drop-nonfinite",
        action="store_true",
        help="drop events with NaN/inf inputs (a cutflow row, counted per file) instead of stopping",
    )
    p.add_argument("--allow-missing-samples", action="store_true", help="fit stage: fit even when a sample's files were all skipped")
    p.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="fit this pyhf JSON workspace (with the inference settings of --config) instead of the analysis",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def output_dir(args: argparse.Namespace, cfg: AnalysisConfig) -> Path:
    path = args.outputs / cfg.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_processor(
    execution: cluster.Execution,
    fileset: dict,
    proc: processor.ProcessorABC,
    args: argparse.Namespace,
    records: ChunkRecords,
    performance_report: Path | None = None,
) -> dict:
    """Run a processor over a fileset on the chosen executor, resuming from the chunk ``records`` of an interrupted run.

    The caller removes the records once the stage's outputs are written.
    On a Dask executor, ``performance_report`` names the HTML file of Dask's
    performance report of the run (task stream, worker profiles, bandwidth).
    """
    records.discard_others()
    report_context: contextlib.AbstractContextManager = contextlib.nullcontext()
    if performance_report is not None and execution.client is not None:
        from distributed import performance_report as dask_performance_report

        # inline: the page carries Bokeh's JavaScript, so it opens without network (cluster nodes, mail)
        report_context = dask_performance_report(filename=str(performance_report), mode="inline")
    runner = processor.Runner(
        executor=execution.executor,
        schema=Belle2Schema,
        chunksize=args.chunksize,
        maxchunks=args.max_chunks,
        skipbadfiles=args.skip_bad_files,
        savemetrics=True,
        checkpointer=records,
    )
    start = time.perf_counter()
    try:
        with report_context:
            paths = [path for sample in fileset.values() for path in sample["files"]]
            # each file names its tree (inputs.tree_of)
            output, metrics = runner(fileset, proc, uproot_options=inputs.runner_uproot_options(paths))
    except Exception as exc:
        # a bad input found while processing comes back wrapped by the executor: report its own line
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, inputs.InputError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise inputs.InputError(str(cause)) from None
    chunks = {"processed": 0, "resumed": 0, **output.pop(CHUNKS, {})}
    if chunks["resumed"]:
        log.info("%d chunks loaded from the records of an interrupted run, %d processed", chunks["resumed"], chunks["processed"])
    run_metrics = stage_metrics(execution, metrics, chunks, time.perf_counter() - start)
    return {"output": output, "metrics": metrics, "chunks": chunks, "run_metrics": run_metrics}


def throughput(events: int, wall_s: float, cores: int) -> dict:
    """Events, events/s in total and per core, over ``wall_s`` seconds of ``cores`` cores."""
    rate = events / wall_s if wall_s > 0 else 0.0
    return {"events": events, "events_per_s": rate, "events_per_s_per_core": rate / max(cores, 1), "cores": max(cores, 1)}


def stage_metrics(execution: cluster.Execution, metrics: dict, chunks: dict, wall_s: float) -> dict:
    """What a stage's processing cost, in the spirit of the IRIS-HEP AGC metrics."""
    info = execution.info
    return {
        "processor_wall_s": wall_s,
        **throughput(int(metrics.get("entries", 0)), wall_s, execution.workers),
        "bytes_read": int(metrics.get("bytesread", 0)),
        "chunks": int(metrics.get("chunks", 0)),
        "chunks_processed": chunks["processed"],
        "chunks_resumed": chunks["resumed"],
        "processing_time_s": float(metrics.get("processtime", 0.0)),
        "executor": execution.name,
        "workers": execution.workers,
        "retries": info.get("retries", 0),
        "workers_lost": len(info.get("workers_lost", [])),
        "tasks_recomputed": sum(len(x["running"]) + len(x["results_lost"]) for x in info.get("recomputed", [])),
    }


def chunk_records(
    out: Path, stage: str, cfg: AnalysisConfig, args: argparse.Namespace, fileset: dict, model_dir: Path | None = None
) -> ChunkRecords:
    """The chunk records of one stage, keyed by all a chunk's output depends on besides its file: the config, the
    samples' weights and metadata (which change with the files found), the BDT models and the options."""
    models = files_digest(p for p in model_dir.rglob("*") if p.is_file()) if model_dir is not None else b""
    metadata = json.dumps({name: entry.get("metadata", {}) for name, entry in fileset.items()}, sort_keys=True, default=str)
    key = records_key(stage, cfg.hash(), metadata, models, f"drop_nonfinite={args.drop_nonfinite}")
    return ChunkRecords(out / "chunk_records" / stage, key)


def stage_simulate(cfg: AnalysisConfig, execution: cluster.Execution, show_progress: bool = True) -> dict:
    """Generate the missing sample files, with a progress bar in events and events/s."""
    start = time.perf_counter()
    done = {"events": 0}

    def submit(tasks: list[dict]) -> list:
        total = sum(t["n_events"] for t in tasks)
        columns = (*Progress.get_default_columns(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} events, {task.fields[rate]}"))
        with Progress(*columns, disable=not show_progress) as progress:
            bar = progress.add_task("Generating", total=total, rate="")

            def on_done(i: int) -> None:
                done["events"] += tasks[i]["n_events"]
                rate = done["events"] / (time.perf_counter() - start)
                progress.update(bar, advance=tasks[i]["n_events"], rate=f"{rate:,.0f} events/s")

            return execution.map(_generate, tasks, on_done)

    files = generate_missing(cfg, cfg.all_samples, submit)
    return {"files": files, "run_metrics": throughput(done["events"], time.perf_counter() - start, execution.workers)}


def _generate(task: dict) -> dict:
    return generate_sample(**task)


def training_config_hash(cfg: AnalysisConfig) -> str:
    """Hash of everything a BDT depends on: samples and their files, cleanup, preselection, features, BDT settings."""
    keys = ("samples", "simulation", "cleanup", "kaon", "preselection", "features", "bdt", "luminosity", "kstar")
    # the file names tell a newer generator's samples from older ones
    files = {s.name: sample_file_paths(cfg, s) for s in cfg.samples}
    return bdt.config_hash({**cfg.model_dump(mode="json", include=set(keys)), "files": files})


def processor_class(cfg: AnalysisConfig) -> type[KnunuProcessor]:
    """The coffea processor named by the analysis (``processor:`` in the YAML)."""
    return KstarProcessor if cfg.processor == "kstar" else KnunuProcessor


#: the order of training rows: xgboost's row subsampling makes a model depend on it,
#: so it must not depend on how the files were chunked or which worker finished first
TABLE_ORDER = ["sample", "__experiment__", "__run__", "__event__"]


def read_tables(paths: list[str]) -> pd.DataFrame:
    """The feature tables of a training pass, concatenated in the canonical row order (TABLE_ORDER)."""
    table = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return table.sort_values(TABLE_ORDER, kind="stable", ignore_index=True)


def stage_train(cfg: AnalysisConfig, execution: cluster.Execution, args: argparse.Namespace, out: Path) -> dict:
    """Write feature tables of all on-resonance MC and off-resonance data, then train (per BDT category)."""
    if cfg.bdt is None:
        log.info("no BDT configured; nothing to train")
        return {}
    model_dir = out / "models"
    chash = training_config_hash(cfg)
    if bdt.all_up_to_date(cfg.bdt, model_dir, chash):
        log.info("BDT models are up to date (config hash %s)", chash[:12])
        return {"skipped": True, "config_hash": chash}
    # All MC and the off-resonance data: BDT1/BDT2 learn from the MC, the BDTc
    # compares off-resonance data with the continuum MC named in its config.
    samples = [s for s in cfg.samples if not s.is_data or s.resonance == "off"]
    found = inputs.collect_inputs(cfg, samples, skip_bad_files=args.skip_bad_files, max_files=args.max_files)
    table_dir = out / "tables"
    table_dir.mkdir(parents=True, exist_ok=True)
    files = inputs.fileset(found, cfg)
    records = chunk_records(out, "train", cfg, args, files)
    result = run_processor(
        execution, files, processor_class(cfg)(cfg, table_dir=table_dir, drop_nonfinite=args.drop_nonfinite), args, records
    )
    training_metrics = result["run_metrics"]
    tables = result["output"].get("tables", {})
    written = {Path(p).name for paths in tables.values() for p in paths}
    for old in table_dir.glob("*.parquet"):  # tables of earlier runs with other chunks
        if old.name not in written:
            old.unlink()
    mc_names = [s.name for s in samples if not s.is_data]
    mc = read_tables([p for name in mc_names for p in tables.get(name, [])])
    signal_samples = {s.name for s in cfg.samples if s.template == cfg.fit.signal_template}
    mc["is_signal"] = mc["sample"].isin(signal_samples)
    data_paths = [p for s in samples if s.is_data for p in tables.get(s.name, [])]
    offres = read_tables(data_paths) if data_paths else None
    log.info("training BDTs on %d MC events (%d signal)", len(mc), int(mc["is_signal"].sum()))
    mc_categories = bdt.category_masks(cfg.bdt, mc)
    off_categories = bdt.category_masks(cfg.bdt, offres) if offres is not None else {}
    summary = {}
    for name, directory in bdt.model_dirs(cfg.bdt, model_dir).items():
        rows = mc[mc_categories[name]]
        off = offres[off_categories[name]] if offres is not None else None
        if name is not None:
            log.info("BDT category %s: %d MC events (%d signal)", name, len(rows), int(rows["is_signal"].sum()))
        summary[name] = bdt.train_all(rows, cfg.bdt, directory, config_hash=chash, offres_table=off)
    # without categories the one (None) category's summary is the whole summary
    result = summary.pop(None) if None in summary else summary
    write_json(result, out / "bdt_summary.json")
    records.remove()
    return {**result, "run_metrics": training_metrics}


def stage_process(cfg: AnalysisConfig, execution: cluster.Execution, args: argparse.Namespace, out: Path) -> dict:
    """Fill histograms and cutflows of every sample and write them with plots and a summary."""
    model_dir = out / "models"
    use_models = cfg.bdt is not None and bdt.all_trained(cfg.bdt, model_dir)
    if cfg.bdt is not None and not use_models:
        log.warning("no trained BDT models in %s: templates with BDT axes stay empty", model_dir)
    found = inputs.collect_inputs(cfg, cfg.samples, skip_bad_files=args.skip_bad_files, max_files=args.max_files)
    files = inputs.fileset(found, cfg)
    records = chunk_records(out, "process", cfg, args, files, model_dir if use_models else None)
    start = time.perf_counter()
    result = run_processor(
        execution,
        files,
        processor_class(cfg)(cfg, model_dir=model_dir if use_models else None, drop_nonfinite=args.drop_nonfinite),
        args,
        records,
        performance_report=out / "dask_performance_report.html",
    )
    elapsed = time.perf_counter() - start
    output = result["output"]
    hists = {group: output[group] for group in ("templates", "controls", "densities", "generated")}
    histograms.save_pickle(hists, out / "histograms.pkl")
    histograms.save_root(hists, out / "histograms.root")
    cutflow = report.cutflow_json(output["cutflow"], {name: f.get("metadata", {}).get("weight") for name, f in files.items()})
    write_text(f"# Cutflow: {cfg.name}\n\n" + report.cutflow_markdown(cutflow), out / "cutflow.md")
    write_json(cutflow, out / "cutflow.json")
    report.control_plots(output["controls"], cfg, out / "plots")
    shapes = report.signal_shapes(output["controls"], cfg)
    write_json(shapes, out / "signal_shapes.json")
    write_text(
        f"# Signal MC in the control distributions: {cfg.name}\n\nAfter the preselection, nominal weights, "
        "inside each control's range.\n\n" + report.signal_shapes_markdown(shapes),
        out / "signal_shapes.md",
    )
    summary = {
        "analysis": cfg.name,
        "config_hash": cfg.hash(),
        "executor": execution.name,
        "workers": execution.workers,
        "dashboard": execution.dashboard,
        "chunksize": args.chunksize,
        "bdt_models": str(model_dir) if use_models else None,
        "wall_time_s": elapsed,
        "chunks": result["chunks"],
        "run_metrics": result["run_metrics"],
        "performance_report": str(out / "dask_performance_report.html") if execution.client is not None else None,
        "samples": {name: _sample_record(cfg, si, output, files) for name, si in found.items()},
        "cluster": execution.info,
        "metrics": {k: v for k, v in result["metrics"].items() if isinstance(v, (int, float, str))},
        "environment": report.environment(),
    }
    write_json(summary, out / "summary.json")
    # the weighted events generated, scaled down where only part of the files was processed (--max-chunks)
    produced = {
        name: r.events_generated * (r.weight or 0.0) * r.entries_processed / max(r.entries_in_files, 1)
        for name, r in summary["samples"].items()
    }
    yields = report.region_yields(output["templates"], cfg, produced)
    write_json(yields, out / "regions.json")
    if cfg.validation is not None and use_models:
        stage_validation(cfg, execution, args, out, model_dir)
    write_text(
        f"# Signal and background per fit region: {cfg.name}\n\nNominal MC yields at the analysis luminosity; "
        "ε = a signal sample's yield in the region over its produced events.\n\n" + report.region_yields_markdown(yields),
        out / "regions.md",
    )
    records.remove()
    return summary


def stage_validation(cfg: AnalysisConfig, execution: cluster.Execution, args: argparse.Namespace, out: Path, model_dir: Path) -> dict:
    """B+ -> J/psi K+: candidates and the signal proxy's BDT efficiency ratio, data over MC."""
    val = cfg.validation
    if val is None:
        raise ValueError(f"analysis {cfg.name!r} has no validation section")
    found = inputs.collect_inputs(cfg, [val.mc, val.data], skip_bad_files=args.skip_bad_files, max_files=args.max_files)
    files = inputs.fileset(found, cfg)
    records = chunk_records(out, "validation", cfg, args, files, model_dir)
    output = run_processor(execution, files, JpsiKProcessor(cfg, model_dir=model_dir, drop_nonfinite=args.drop_nonfinite), args, records)[
        "output"
    ]
    scores = {name: {k: np.concatenate(v) for k, v in output["proxy_scores"][name].items()} for name in (val.mc.name, val.data.name)}
    try:
        ratio, error = jpsik.efficiency_ratio(scores[val.data.name], scores[val.mc.name], val.cuts)
    except ValueError as exc:  # no MC proxy passes: say so, the rest of the run stands
        log.warning("J/psi K+ validation: %s", exc)
        ratio, error = float("nan"), float("nan")
    efficiency = {name: jpsik.selection_efficiency(s, val.cuts) for name, s in scores.items()}
    cutflow = report.cutflow_json(output["cutflow"], {})  # the proxy's efficiencies are per event: unit weights
    mbc_peaks = _fit_mbc_peaks(output["controls"]["mbc"], (val.mc.name, val.data.name))
    candidates = {name: len(s["bdt2"]) for name, s in scores.items()}
    result = {
        "cuts": {k: list(v) for k, v in val.cuts.items()},
        "efficiency": {name: {"value": e, "error": err} for name, (e, err) in efficiency.items()},
        "ratio": ratio,
        "ratio_error": error,
        "candidates": candidates,
        "mbc_fit": {name: dataclasses.asdict(peak) for name, peak in mbc_peaks.items()},
        "cutflow": cutflow,
        "entries": {name: int(v[0]) for name, v in output["entries"].items()},
    }
    write_json(result, out / "jpsik_validation.json")
    cut_text = ", ".join(f"{k} in [{lo}, {hi})" for k, (lo, hi) in val.cuts.items())
    write_text(
        f"# B+ -> J/psi K+ signal-proxy validation: {cfg.name}\n\n"
        f"Selection ({cut_text}) efficiency of the signal proxy:\n\n"
        + "\n".join(f"- {name}: {e:.4f} ± {err:.4f} ({candidates[name]} candidates)" for name, (e, err) in efficiency.items())
        + f"\n- ratio data / MC: **{ratio:.3f} ± {error:.3f}** (PRL 127, 181802: 1.06 ± 0.10)\n\n"
        + "B+ candidates' Mbc (Gaussian + ARGUS fit):\n\n"
        + "\n".join(
            f"- {name}: peak {p.mean:.5f} ± {p.mean_error:.5f} GeV, resolution {1e3 * p.sigma:.2f} ± {1e3 * p.sigma_error:.2f} MeV"
            f" ({p.n_signal:.0f} peaking, {p.n_background:.0f} ARGUS{'' if p.converged else '; fit did not converge'})"
            for name, p in mbc_peaks.items()
        )
        + "\n\n"
        + report.cutflow_markdown(cutflow),
        out / "jpsik_validation.md",
    )
    report.validation_plots(output["controls"], val.mc.name, val.data.name, out / "plots", fits={"mbc": mbc_peaks.get(val.data.name)})
    log.info("J/psi K+ proxy efficiency ratio data/MC = %.3f +- %.3f", ratio, error)
    records.remove()
    return result


def _fit_mbc_peaks(mbc: hist.Hist, names: tuple[str, ...]) -> dict:
    """Mbc peak fit per validation sample; a sample too sparse to fit is logged and left out."""
    peaks = {}
    for name in names:
        h = histograms.project(mbc, {"dataset": name})
        try:
            peaks[name] = fit_mbc_peak(h.axes[0].edges, h.values(), endpoint=0.5 * SQRT_S_ON_RESONANCE)
        except ValueError as exc:
            log.warning("J/psi K+ Mbc fit of %s: %s", name, exc)
    return peaks


def check_ntuple_columns(cfg: AnalysisConfig) -> None:
    """A candidate ntuple must map every column the chain reads: ConfigError listing the ones it lacks."""
    if not any(cfg.format_of(s) == "basf2_ntuple" for s in cfg.all_samples):
        return
    missing = sorted(processor_class(cfg).columns_needed(cfg) - set(cfg.input.ntuple.columns))
    if missing:
        raise ConfigError(
            f"analysis {cfg.name!r}: input.ntuple.columns lacks {len(missing)} column(s) the analysis reads "
            f"(features, preselection, regions, controls, systematics), which kvv does not compute from an ntuple: {', '.join(missing)}"
        )


def stage_fit(cfg: AnalysisConfig, args: argparse.Namespace, out: Path) -> dict:
    """Fit the analysis's merged templates, or the pyhf workspace of ``--workspace`` with the config's inference settings."""
    if args.workspace is not None:
        return fit.run_inference(args.workspace, out / "fit", cfg.fit)
    return fit.fit_analysis(cfg, out, allow_missing_samples=args.allow_missing_samples)


def _sample_record(cfg: AnalysisConfig, si: inputs.SampleInputs, output: dict, files: dict) -> SampleRecord:
    """What the process stage hands the fit stage about one sample."""
    layout = cfg.format_of(si.sample)
    if not si.files:
        log.warning(
            "sample %s: no usable file left (%d skipped): its templates are empty, and the fit refuses to run without it",
            si.sample.name, len(si.skipped),
        )  # fmt: skip
    skipped: dict[str, str] = {}
    if not si.sample.is_data and layout != "kvv":  # kvv's own MC files carry all the truth
        skipped = systematics.unavailable(cfg.systematics, cfg.input.truth, objects=layout != "basf2_ntuple")
    for reason in sorted(set(skipped.values())):
        names = [name for name, why in skipped.items() if why == reason]
        log.warning("sample %s: variations %s left at the nominal: %s", si.sample.name, ", ".join(names), reason)
    return SampleRecord(
        role=si.role(cfg.fit.signal_template),
        template=si.sample.template,
        resonance=si.sample.resonance,
        files=len(si.files),
        entries_in_files=si.entries,
        events_generated=si.n_generated,
        entries_processed=int(output["entries"].get(si.sample.name, np.zeros(1))[0]),
        weight=files.get(si.sample.name, {}).get("metadata", {}).get("weight"),
        skipped_files=si.skipped,
        nonfinite_dropped={f: n for f, n in output.get("nonfinite", {}).get(si.sample.name, {}).items() if n},
        format=layout,
        skipped_variations=skipped,
    )


def _rate(metrics: dict) -> str:
    if not metrics.get("events"):
        return ""
    return f": {metrics['events']:,} events, {metrics['events_per_s']:,.0f} events/s ({metrics['events_per_s_per_core']:,.0f} per core)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    # pyhf logs every modifier of every model it builds at INFO; distributed every worker's start and stop
    for chatty in ("pyhf", "distributed", "jax"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not args.verbose:  # for the worker processes of a local cluster, which read dask's config
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    try:
        cfg = load_config(args.config)
        check_ntuple_columns(cfg)
        if args.workspace is not None:
            out = args.outputs / args.workspace.stem
            out.mkdir(parents=True, exist_ok=True)
            with outputs_lock(out):
                stage_fit(cfg, args, out)
            return 0
        out = output_dir(args, cfg)
        stages = STAGES if args.stage == "all" else (args.stage,)
        needs_executor = any(s in stages for s in ("simulate", "train", "process"))
        with (
            outputs_lock(out),
            cluster.execution_from_args(args) if needs_executor else contextlib.nullcontext() as execution,
        ):
            # the stages of earlier runs on this folder stay, those run now replace theirs
            metrics_path = out / "run_metrics.json"
            run_metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
            for stage in stages:
                log.info("stage %s", stage)
                start = time.perf_counter()
                value: object
                if stage == "fit":
                    value = stage_fit(cfg, args, out)
                elif stage == "publish":
                    value = {"publication": str(publish.write_publication(cfg, out))}
                elif execution is None:  # needs_executor holds for every other stage
                    raise ValueError(f"stage {stage} has no executor")
                elif stage == "simulate":
                    value = stage_simulate(cfg, execution, show_progress=not args.no_progress)
                elif stage == "train":
                    value = stage_train(cfg, execution, args, out)
                elif stage == "process":
                    value = stage_process(cfg, execution, args, out)
                processing = value.get("run_metrics", {}) if isinstance(value, dict) else {}
                run_metrics[stage] = {**processing, "wall_s": time.perf_counter() - start}
                log.info("stage %s done in %.1f s%s", stage, run_metrics[stage]["wall_s"], _rate(run_metrics[stage]))
            write_json(run_metrics, metrics_path)
            report.write_html_report(out, cfg.name)
        log.info("outputs in %s; open %s in a browser", out, out / "report.html")
        return 0
    except (ConfigError, inputs.InputError, fit.FitError, OutputsInUseError) as exc:
        print(f"kvv: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
