"""Scaling of the processor with workers (futures and dask executors) and Dask's per-task overhead.

    python -m benchmarks.scaling --events 1000000 --workers 1,2,4,8,16

Each point runs kvv's processor over the whole benchmark sample set through
coffea's Runner on an executor made by :func:`kvv.cluster.execution` (what
``python -m kvv.run --executor ...`` uses), after one warm-up run that starts
the workers and loads numba caches and models. Efficiency at n workers is
rate(n) / (n * rate(1)) of the same executor.
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks import chain
from kvv import cluster
from processors.knunu import KnunuProcessor


def timed_run(executor_name: str, workers: int, fileset: dict, proc: KnunuProcessor, chunksize: int, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` runs on one executor instance (started once, warmed up once)."""
    expected = sum(c.n_events for c in chain.chunks(fileset, chunksize))
    with cluster.execution(executor_name, workers=workers, insecure=True, status=False, dashboard_address=":0") as ex:
        chain.run_runner(fileset, proc, ex.executor, chunksize)
        seconds = []
        for _ in range(repeats):
            _wait_for_release(ex.client)
            start = time.perf_counter()
            out = chain.run_runner(fileset, proc, ex.executor, chunksize)
            seconds.append(time.perf_counter() - start)
            # a time counts only for a run that processed every event
            processed = sum(int(n.sum()) for n in out["entries"].values())
            if processed != expected:
                raise RuntimeError(f"{executor_name} with {workers} worker(s): {processed} of {expected} events processed")
    return seconds


def _wait_for_release(client, timeout_s: float = 60.0) -> None:
    """Wait until the scheduler holds no task of the previous run.

    coffea's Runner submits the work items as pure (the processor is their heavy input), so
    a run submitted while the scheduler still holds the previous run's results gets them
    back at once; releasing them is asynchronous (a full-run table once showed 0.02 s).
    """
    if client is None:
        return
    deadline = time.monotonic() + timeout_s
    while client.run_on_scheduler(_n_tasks):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Dask scheduler still holds tasks of the previous run after {timeout_s:.0f} s")
        time.sleep(0.05)


def _n_tasks(dask_scheduler) -> int:
    return len(dask_scheduler.tasks)


def worker_scaling(fileset: dict, proc: KnunuProcessor, n_events: int, workers: list[int], chunksize: int, repeats: int) -> list[dict]:
    """Events/s and parallel efficiency per (executor, workers)."""
    rows = []
    for name in ("futures", "dask"):
        base = None
        for n in workers:
            best = min(timed_run(name, n, fileset, proc, chunksize, repeats))
            rate = n_events / best
            base = base or rate / n
            rows.append({"executor": name, "workers": n, "seconds": best, "events_per_s": rate, "efficiency": rate / (n * base)})
    return rows


def subset(fileset: dict, n_events: int) -> dict:
    """The largest datasets of ``fileset``, whole, until they hold at least ``n_events``.

    Large datasets give the tiny-chunk run many chunks per file, as a real run has.
    """
    sizes = {name: sum(c.n_events for c in chain.chunks({name: spec}, 10**9)) for name, spec in fileset.items()}
    out, total = {}, 0
    for name in sorted(sizes, key=sizes.get, reverse=True):
        if total >= n_events:
            break
        out[name], total = fileset[name], total + sizes[name]
    return out


def task_overhead(fileset: dict, proc: KnunuProcessor, small: int, large: int, repeats: int) -> dict:
    """Per-task cost of the Dask executor: many tiny chunks against few big ones, same events, 1 worker."""
    n_small = len(chain.chunks(fileset, small))
    n_large = len(chain.chunks(fileset, large))
    t_small = min(timed_run("dask", 1, fileset, proc, small, repeats))
    t_large = min(timed_run("dask", 1, fileset, proc, large, repeats))
    return {
        "small_chunksize": small,
        "large_chunksize": large,
        "tasks_small": n_small,
        "tasks_large": n_large,
        "seconds_small": t_small,
        "seconds_large": t_large,
        "overhead_per_task_s": max(t_small - t_large, 0.0) / (n_small - n_large) if n_small > n_large else float("nan"),
        "events": sum(c.n_events for c in chain.chunks(fileset, large)),
    }


def run(
    n_events: int, workers: list[int], chunksize: int, repeats: int = 1, tiny_chunksize: int = 2000, overhead_events: int = 500_000
) -> dict:
    """Scaling table on the benchmark samples of ``n_events``; per-task overhead on about ``overhead_events`` of them."""
    cfg = chain.benchmark_config(n_events)
    fileset = chain.ensure_samples(cfg, max(workers))
    proc = KnunuProcessor(cfg, model_dir=chain.ensure_models(cfg, fileset, max(workers)))
    total = sum(c.n_events for c in chain.chunks(fileset, chunksize))
    return {
        "events": total,
        "chunksize": chunksize,
        "workers": worker_scaling(fileset, proc, total, workers, chunksize, repeats),
        "dask_task_overhead": task_overhead(subset(fileset, overhead_events), proc, tiny_chunksize, chunksize, repeats),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000, help="benchmark sample size (all samples)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--chunksize", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--overhead-events", type=int, default=500_000, help="events (whole datasets) for the per-task overhead")
    args = p.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    result = run(args.events, workers, args.chunksize, args.repeats, overhead_events=args.overhead_events)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
