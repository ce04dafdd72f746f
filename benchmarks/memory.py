"""Peak RSS of one worker against chunk size and against dataset size.

Each point is a fresh subprocess that runs the processor (iterative executor,
so the process *is* the worker) over the first ``n_chunks`` chunks of a
dedicated single-file sample, and reports the kernel's high-water mark of its
RSS (``VmHWM``) plus the peak of a psutil sampling thread. ``getrusage``'s
``ru_maxrss`` is not used: Linux carries it over fork + exec, so a child of the
(large) benchmark process would report the parent's peak. The baseline is the same process after imports and
model loading, before any chunk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import chain

MEMORY_PROCESS = "charged"  # most tracks per event among the large samples: the worst case


def memory_sample(n_events: int, directory: Path) -> Path:
    """One file of ``n_events`` charged B events (generated once, reused)."""
    from kvv.eventformat import Process
    from kvv.physics.beams import Beams
    from kvv.simulate import generate_sample

    path = directory / f"memory_{MEMORY_PROCESS}_{n_events}.root"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        generate_sample(Process[MEMORY_PROCESS.upper()], n_events, path, beams=Beams(), seed=7, chunk_size=100_000)
    return path


def _peak_sampler(stop: threading.Event, peak: list[int]) -> None:
    import psutil

    me = psutil.Process()
    while not stop.is_set():
        peak[0] = max(peak[0], me.memory_info().rss)
        time.sleep(0.02)


def _vm_hwm_kib() -> int:
    """Peak resident set of this process since exec, from /proc (Linux)."""
    line = next(row for row in Path("/proc/self/status").read_text().splitlines() if row.startswith("VmHWM:"))
    return int(line.split()[1])


def child(config: str, sample: str, chunksize: int, n_chunks: int) -> dict:
    """Run in the subprocess: process ``n_chunks`` chunks and report memory in MB."""
    import numpy as np
    import psutil
    from coffea import processor

    from kvv import bdt
    from kvv.config import load_config
    from kvv.io import inputs
    from processors.knunu import KnunuProcessor

    cfg = load_config(config)
    model_dir = Path(cfg.simulation.directory) / "models"
    bdt.load_models_cached(model_dir, bdt.stage_features(cfg.bdt))
    baseline = psutil.Process().memory_info().rss
    peak = [baseline]
    stop = threading.Event()
    sampler = threading.Thread(target=_peak_sampler, args=(stop, peak), daemon=True)
    sampler.start()
    fileset = {MEMORY_PROCESS: {"files": {sample: "events"}, "metadata": {"weight": 1.0, "resonance": "on", "is_data": False}}}
    runner = processor.Runner(
        executor=processor.IterativeExecutor(status=False), schema=chain.Belle2Schema, chunksize=chunksize, maxchunks=n_chunks
    )
    out = runner(
        fileset, KnunuProcessor(cfg, model_dir=model_dir), treename="events", uproot_options=inputs.runner_uproot_options([sample])
    )
    stop.set()
    sampler.join()
    mb = 1024.0**2
    return {
        "chunksize": chunksize,
        "chunks": n_chunks,
        "events": int(np.sum(out["entries"][MEMORY_PROCESS])),
        "baseline_rss_mb": baseline / mb,
        "peak_rss_sampled_mb": peak[0] / mb,
        "peak_rss_mb": _vm_hwm_kib() / 1024.0,
    }


def measure(config: Path, sample: Path, chunksize: int, n_chunks: int) -> dict:
    """One point, in a fresh Python process."""
    cmd = [sys.executable, "-m", "benchmarks.memory", str(config), str(sample), str(chunksize), str(n_chunks)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(n_events: int, chunksizes: list[int], dataset_chunks: list[int]) -> dict:
    """Peak RSS per chunk size (two chunks each) and per dataset size (chunks) at the largest chunk size."""
    cfg = chain.benchmark_config(n_events)
    chain.ensure_models(cfg, chain.ensure_samples(cfg))
    config = chain.DEFAULT_CACHE / f"{cfg.name}.yaml"
    largest = max(chunksizes)
    sample = memory_sample(largest * max(dataset_chunks), chain.DEFAULT_CACHE / "memory")
    return {
        "vs_chunksize": [measure(config, sample, c, 2) for c in chunksizes],
        "vs_dataset": [measure(config, sample, largest, n) for n in dataset_chunks],
    }


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
