"""Throughput of kvv.simulate: generator, detector simulation and ROOT writing.

``python -m benchmarks.generation`` (or ``python benchmarks/generation.py``) prints
events/s for each stage and end to end (single process, one core), after a warm-up
call that triggers numba compilation (or loads it from the cache).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from kvv.beams import Beams
from kvv.eventformat import Process
from kvv.simulate import generate_events, generate_sample, simulate_detector


def _rate(n_events: int, seconds: float) -> float:
    return n_events / seconds if seconds > 0 else float("inf")


def run(n_events: int = 200_000, seed: int = 1, process: Process = Process.CHARGED) -> dict:
    """Events/s of generation alone, generation + detector, and the full ``generate_sample``."""
    beams = Beams()
    generate_sample(process, 1000, Path(tempfile.gettempdir()) / "kvv_warmup.root", beams=beams, seed=seed)
    t0 = time.perf_counter()
    events = generate_events(process, n_events, beams=beams, seed=seed)
    t1 = time.perf_counter()
    simulate_detector(events, np.random.default_rng(seed))
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.root"
        generate_sample(process, n_events, path, beams=beams, seed=seed)
        t3 = time.perf_counter()
        size = path.stat().st_size
    return {
        "process": process.name,
        "n_events": n_events,
        "generator_events_per_s": _rate(n_events, t1 - t0),
        "detector_events_per_s": _rate(n_events, t2 - t1),
        "end_to_end_events_per_s": _rate(n_events, t3 - t2),
        "bytes_per_event": size / n_events,
    }


if __name__ == "__main__":
    for proc in (Process.CHARGED, Process.UUBAR):
        result = run(100_000, process=proc)
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))
