"""Throughput of kvv.simulate: generator, detector simulation and ROOT writing.

``python -m benchmarks.generation`` (or ``python benchmarks/generation.py``) prints
events/s for each stage and end to end (single process, one core), after a warm-up
call that triggers numba compilation (or loads it from the cache), both per wall-clock
second and per CPU second of this process.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from kvv.config import GeneratorFilter
from kvv.eventformat import Process
from kvv.physics.beams import Beams
from kvv.simulate import generate_events, generate_sample, simulate_detector


def _rate(n_events: int, seconds: float) -> float:
    return n_events / seconds if seconds > 0 else float("inf")


def _clocks() -> tuple[float, float]:
    """(wall, CPU) time: CPU-time rates stay meaningful on a shared, loaded machine."""
    return time.perf_counter(), time.process_time()


def run(n_events: int = 200_000, seed: int = 1, process: Process = Process.CHARGED) -> dict:
    """Events/s of generation alone, generation + detector, and the full ``generate_sample``."""
    beams = Beams()
    generate_sample(process, 1000, Path(tempfile.gettempdir()) / "kvv_warmup.root", beams=beams, seed=seed)
    t0 = _clocks()
    events = generate_events(process, n_events, beams=beams, seed=seed)
    t1 = _clocks()
    simulate_detector(events, np.random.default_rng(seed))
    t2 = _clocks()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.root"
        generate_sample(process, n_events, path, beams=beams, seed=seed)
        t3 = _clocks()
        size = path.stat().st_size
    result: dict = {"process": process.name, "n_events": n_events}
    for clock, name in ((0, "wall"), (1, "cpu")):
        result[f"generator_events_per_s_{name}"] = _rate(n_events, t1[clock] - t0[clock])
        result[f"detector_events_per_s_{name}"] = _rate(n_events, t2[clock] - t1[clock])
        result[f"end_to_end_events_per_s_{name}"] = _rate(n_events, t3[clock] - t2[clock])
    result["bytes_per_event"] = size / n_events
    return result


def run_filter(n_events: int = 200_000, seed: int = 1, min_charged: int = 3) -> dict:
    """``generate_sample`` of tau pairs with and without the generator filter: events generated and written per CPU second."""
    beams = Beams()
    out: dict = {"process": Process.TAUPAIR.name, "n_events": n_events, "min_charged": min_charged}
    for name, event_filter in (("plain", None), ("filtered", GeneratorFilter(min_charged=min_charged))):
        with tempfile.TemporaryDirectory() as tmp:
            generate_sample(Process.TAUPAIR, 1000, Path(tmp) / "warmup.root", beams=beams, seed=seed, generator_filter=event_filter)
            start = time.process_time()
            meta = generate_sample(
                Process.TAUPAIR, n_events, Path(tmp) / "bench.root", beams=beams, seed=seed, generator_filter=event_filter
            )
            seconds = time.process_time() - start
        out[name] = {
            "generated_per_s_cpu": _rate(n_events, seconds),
            "written_per_s_cpu": _rate(meta["n_written"], seconds),
            "filter_efficiency": meta["filter_efficiency"],
        }
    out["generated_rate_ratio"] = out["filtered"]["generated_per_s_cpu"] / out["plain"]["generated_per_s_cpu"]
    return out


def _line(result: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())


if __name__ == "__main__":
    for proc in (Process.CHARGED, Process.UUBAR):
        print(_line(run(100_000, process=proc)))
    tau = run_filter(200_000)
    for name in ("plain", "filtered"):
        print(f"tau pairs, {name}: {_line(tau[name])}")
    print(f"tau pairs: the filter generates {tau['generated_rate_ratio']:.2f}x the events per CPU second")
