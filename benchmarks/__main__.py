"""``python -m benchmarks [--events N] [--quick] [--only ...]``: the kvv benchmark suite.

Writes ``results.json`` and ``results.md`` into ``--output`` (``outputs/benchmarks``).
All throughputs of one report come from this one invocation, so their ratios are
comparable even on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import traceback
from pathlib import Path

from coffea import processor

from benchmarks import awkward_way, chain, memory, pandas_way, report, scaling
from processors.knunu import KnunuProcessor

SECTIONS = ("io", "chain", "awkward", "pandas", "systematics", "chunk_cost", "formats", "scaling", "memory", "generation", "fit")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--events", type=int, default=5_000_000, help="benchmark sample size, all samples together")
    p.add_argument("--quick", action="store_true", help="smoke run (~2 min once the samples exist): 20k events, small subsets")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run only these sections")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each single-core throughput (median reported)")
    p.add_argument("--chunksize", type=int, default=100_000)
    p.add_argument("--workers", default="1,2", help="worker counts for the scaling section")
    p.add_argument("--awkward-events", type=int, default=200_000, help="events for (d) (and (b) on the same events)")
    p.add_argument("--pandas-events", type=int, default=50_000, help="events for (c) (and (b) on the same events)")
    p.add_argument("--systematics-events", type=int, default=200_000, help="events for the cost of the systematic variations")
    p.add_argument("--overhead-events", type=int, default=500_000, help="events (whole datasets) for the Dask per-task overhead")
    p.add_argument("--memory-chunksizes", default="50000,100000,200000")
    p.add_argument("--memory-dataset-chunks", default="1,2,4", help="dataset sizes, in chunks of the largest chunk size")
    p.add_argument("--output", type=Path, default=Path("outputs/benchmarks"))
    p.add_argument("--update-readme", action="store_true", help="also write this run's tables into benchmarks/README.md")
    return p


def quick_defaults(args: argparse.Namespace) -> None:
    """Scale everything down for a smoke run."""
    args.events, args.repeats, args.chunksize = 20_000, 2, 5_000
    args.awkward_events, args.pandas_events, args.systematics_events, args.overhead_events = 5_000, 2_000, 5_000, 5_000
    args.memory_chunksizes, args.memory_dataset_chunks = "5000,10000,20000", "1,2,3"


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def repeated(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = _clocks()
        fn()
        w1, c1 = _clocks()
        walls.append(w1 - w0)
        cpus.append(c1 - c0)
    return statistics.median(walls), statistics.median(cpus)


def rate_entry(events: int, wall: float, cpu: float, repeats: int) -> dict:
    # one process on one core: events per wall second is the per-core rate
    return {"events": events, "seconds": wall, "events_per_s_per_core": events / wall, "events_per_cpu_s": events / cpu, "repeats": repeats}


def throughput(args: argparse.Namespace, fileset: dict, proc: KnunuProcessor, results: dict) -> None:
    """(a), (b), stages, (d), (c) in this process, and the agreement of (b), (c), (d)."""
    all_chunks = chain.chunks(fileset, args.chunksize)
    n_all = sum(c.n_events for c in all_chunks)
    out = results.setdefault("throughput", {})
    agreement = results.setdefault("agreement", {})
    if "io" in args.only:
        wall, cpu = repeated(lambda: [chain.read_branches(c) for c in all_chunks], args.repeats)
        out["io"] = rate_entry(n_all, wall, cpu, args.repeats)
    if "chain" in args.only:
        iterative = processor.IterativeExecutor(status=False)
        runner_out = chain.run_runner(fileset, proc, iterative, args.chunksize)  # warm-up: numba caches, models
        wall, cpu = repeated(lambda: chain.run_runner(fileset, proc, iterative, args.chunksize), args.repeats)
        out["chain"] = rate_entry(n_all, wall, cpu, args.repeats)
        staged, stages = _median_staged(proc, all_chunks, args.repeats)
        out["chain_staged"] = rate_entry(n_all, sum(stages.values()), sum(stages.values()), args.repeats)
        results["stages"] = stages
        agreement["(b) staged vs (b) processor"] = {"events": n_all, **chain.compare(runner_out, staged)}
    for key, events, run in (("awkward", args.awkward_events, _run_awkward), ("pandas", args.pandas_events, _run_pandas)):
        if key not in args.only:
            continue
        part = chain.subset(fileset, events, args.chunksize)
        n = sum(c.n_events for c in part)
        reference, _ = chain.run_staged(proc, part)  # also the warm-up of (b) on these events
        wall_b, _cpu_b = repeated(lambda part=part: chain.run_staged(proc, part), args.repeats)
        other = run(proc, part)  # warm-up and the output to compare
        repeats = 1 if key == "pandas" else max(1, args.repeats // 2)  # slow; 1 repeat keeps the suite bounded
        wall, cpu = repeated(lambda run=run, part=part: run(proc, part), repeats)
        out[key] = {**rate_entry(n, wall, cpu, repeats), "speedup_of_chain": wall / wall_b, "chain_events_per_s_same_events": n / wall_b}
        agreement[f"({'d' if key == 'awkward' else 'c'}) {key} vs (b)"] = {"events": n, **chain.compare(reference, other)}


def systematics_cost(args: argparse.Namespace, fileset: dict, model_dir: Path) -> dict:
    """Processor time with the weight variations and with all variations, relative to the nominal chain, same events."""
    part = chain.subset(fileset, args.systematics_events, args.chunksize)
    out: dict = {"events": sum(c.n_events for c in part)}
    for kind in ("none", "weight", "all"):
        proc = KnunuProcessor(chain.benchmark_config(args.events, systematics=kind), model_dir=model_dir)
        chain.run_staged(proc, part[:1])  # warm-up
        wall, cpu = repeated(lambda proc=proc: chain.run_staged(proc, part), max(1, args.repeats // 2))
        out[kind] = {"seconds": wall, "cpu_seconds": cpu, "variations": len(proc.cfg.systematics.object_variations)}
    for kind in ("weight", "all"):
        out[kind]["relative_to_nominal"] = out[kind]["seconds"] / out["none"]["seconds"]
    return out


def chunk_cost_section(args: argparse.Namespace, model_dir: Path) -> dict:
    """The processor's fixed cost per chunk, every systematic variation on, on the memory section's charged-B file.

    In a fresh process, as a worker runs: in this one, which holds every earlier section's
    objects, small chunks cost several times more (Python's garbage collections traverse them).
    """
    import json
    import subprocess

    from benchmarks import chunk_cost

    sizes = (500, 1_000, 2_000, 5_000) if args.quick else chunk_cost.SIZES
    sample = memory.memory_sample(60_000 if args.quick else max(800_000, chunk_cost.START + sizes[-1]), chain.DEFAULT_CACHE / "memory")
    cfg = chain.benchmark_config(args.events, systematics="all")
    command = [sys.executable, "-m", "benchmarks.chunk_cost", "--config", str(chain.DEFAULT_CACHE / f"{cfg.name}.yaml"),
               "--models", str(model_dir), "--file", str(sample), "--sizes", ",".join(map(str, sizes)), "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median_staged(proc: KnunuProcessor, chunk_list: list, repeats: int) -> tuple[dict, dict]:
    runs = [chain.run_staged(proc, chunk_list) for _ in range(repeats)]
    stages = {k: statistics.median(t[k] for _, t in runs) for k in runs[0][1]}
    return runs[0][0], stages


def _run_awkward(proc: KnunuProcessor, part: list) -> dict:
    return chain.run_staged(proc, part, awkward_way.event_features)[0]


def _run_pandas(proc: KnunuProcessor, part: list) -> dict:
    return proc.postprocess(processor.accumulate([pandas_way.process_chunk(proc, c) for c in part]))


def guarded(results: dict, key: str, fn) -> None:
    """Run one optional section; a failure becomes a note, not a crash."""
    try:
        results[key] = fn()
    except Exception as exc:  # the other engineers' benchmarks may be in progress
        traceback.print_exc()
        results.setdefault("notes", []).append(
            f"{key}: skipped, {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        quick_defaults(args)
    results: dict = {"command": "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv),
                     "machine": report.machine(), "chunksize": args.chunksize}  # fmt: skip
    workers = [int(w) for w in args.workers.split(",")]
    cfg = chain.benchmark_config(args.events)
    start = time.perf_counter()
    fileset = chain.ensure_samples(cfg, max(workers))
    model_dir = chain.ensure_models(cfg, fileset, max(workers))
    files = [Path(f) for spec in fileset.values() for f in spec["files"]]
    n_events = sum(c.n_events for c in chain.chunks(fileset, args.chunksize))
    results["samples"] = {"events": n_events, "files": len(files), "bytes_per_event": sum(f.stat().st_size for f in files) / n_events,
                          "directory": cfg.simulation.directory, "prepare_seconds": time.perf_counter() - start}  # fmt: skip
    proc = KnunuProcessor(cfg, model_dir=model_dir)
    throughput(args, fileset, proc, results)
    if "systematics" in args.only:
        guarded(results, "systematics", lambda: systematics_cost(args, fileset, model_dir))
    if "chunk_cost" in args.only:
        guarded(results, "chunk_cost", lambda: chunk_cost_section(args, model_dir))
    if "formats" in args.only:
        from benchmarks import formats

        guarded(results, "formats", lambda: formats.run(cfg, fileset, model_dir, args.chunksize, args.output / "basf2_files"))
    if "scaling" in args.only:
        small = max(1000, args.chunksize // 50)
        guarded(
            results, "scaling",
            lambda: scaling.run(args.events, workers, args.chunksize, tiny_chunksize=small, overhead_events=args.overhead_events),
        )  # fmt: skip
    if "memory" in args.only:
        sizes = [int(c) for c in args.memory_chunksizes.split(",")]
        guarded(results, "memory", lambda: memory.run(args.events, sizes, [int(n) for n in args.memory_dataset_chunks.split(",")]))
    if "generation" in args.only:
        from benchmarks import generation

        n_generation = 20_000 if args.quick else 200_000
        guarded(
            results, "generation", lambda: {**generation.run(n_events=n_generation), "taupair_filter": generation.run_filter(n_generation)}
        )
    if "fit" in args.only:
        from benchmarks import fit

        # plain pyhf: python benchmarks/fit.py (minutes)
        guarded(results, "fit", lambda: {**fit.run(plain=False), "toys": fit.run_toys(5 if args.quick else 200)})
    results["machine"]["load_average_end"] = os.getloadavg()
    results["goals"] = report.goals(results)
    results["slurm_note"] = report.slurm_note(results)
    json_path, md_path = report.write(results, args.output)
    print(md_path.read_text())
    print(f"written: {json_path}, {md_path}")
    if args.update_readme:
        print(f"written: {report.update_readme(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
