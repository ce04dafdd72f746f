"""The processor's cost per chunk: a fixed part per call and a part per event.

``python -m benchmarks.chunk_cost`` runs :class:`processors.knunu.KnunuProcessor`
(with the models of a default run, every systematic variation on) on chunks of 2 000,
5 000, 10 000, 50 000 and 200 000 events of one file of a sample (at least 210 000
events), in one process, best of five below 50 000 events; it fits time = fixed + n ×
per-event over the chunks of up to 10 000 events (least squares in relative terms) and
compares the time per event of 10 000- and 200 000-event chunks. ``python -m benchmarks``
runs it as its ``chunk_cost`` section. ``--profile`` adds a cProfile of ten 2 000-event
chunks, sorted by own time.

    python -m kvv.run --executor futures          # samples and models, once
    python -m benchmarks.chunk_cost --sample charged [--file other.root] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import time
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import numpy as np
from coffea.nanoevents import NanoEventsFactory

from kvv.config import AnalysisConfig, load_config
from kvv.io import inputs
from kvv.io.schema import Belle2Schema
from processors.knunu import KnunuProcessor

SIZES = (2_000, 5_000, 10_000, 50_000, 200_000)
#: the largest chunk size in the fit of the fixed cost
SMALL = 10_000
#: the first event timed: a basket boundary of kvv's files, after the warm-up chunk
START = 10_000


def _chunk(path: str, tree: str, sample: str, weight: float, start: int, stop: int) -> ak.Array:
    meta = {"dataset": sample, "filename": path, "treename": tree, "entrystart": start, "entrystop": stop, "weight": weight}
    factory = NanoEventsFactory.from_root(
        {path: tree}, entry_start=start, entry_stop=stop, schemaclass=Belle2Schema, metadata=meta, mode="virtual",
        uproot_options=inputs.uproot_options([path]),
    )  # fmt: skip
    return factory.events()


def _setup(
    cfg: AnalysisConfig, sample: str, models: Path | None, file: str | None
) -> tuple[KnunuProcessor, Callable[[int, int], ak.Array]]:
    """The processor, warmed up on a first chunk, and a function giving the chunk [start, stop) of the file."""
    processor = KnunuProcessor(cfg, model_dir=models or Path("outputs") / cfg.name / "models")
    found = inputs.collect_inputs(cfg, [cfg.sample(sample)])
    files = inputs.fileset(found, cfg)[sample]
    path, tree = next(iter(files["files"].items()))
    path = file or path
    weight = float(files["metadata"]["weight"])

    def chunk(start: int, stop: int) -> ak.Array:
        return _chunk(path, tree, sample, weight, start, stop)

    processor.process(chunk(0, 5_000))  # numba, models and branches warm
    return processor, chunk


def run(
    cfg: AnalysisConfig, sample: str = "charged", models: Path | None = None, file: str | None = None, sizes: tuple[int, ...] = SIZES
) -> dict:
    """Seconds per chunk for each size (wall, and the kernel's share: system CPU time), the fitted fixed cost (s) and cost per event (s)."""
    processor, chunk = _setup(cfg, sample, models, file)
    seconds, system = {}, {}
    for n in sizes:
        runs = []
        for _ in range(5 if n < 50_000 else 1):
            events = chunk(START, START + n)
            if len(events) < n:
                raise ValueError(f"{file or sample}: {START + n} events needed for chunks of {n}, the file has fewer")
            s0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
            processor.process(events)
            runs.append((time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_stime - s0))
        seconds[n], system[n] = min(runs)
    # Chunks above SMALL cost more per event (the kernel faults in fresh pages for their
    # arrays), so a line through every size would not separate a fixed part.
    small = [n for n in sizes if n <= SMALL]
    if len(small) < 2:
        small = list(sizes)
    times = np.array([seconds[n] for n in small])
    # relative weights: the larger chunks' noise would otherwise swamp the fixed part
    per_event, fixed = np.polyfit(np.array(small, dtype=float), times, 1, w=1.0 / times)
    result = {
        "file": file or "the sample's first file",
        "seconds_per_chunk": seconds,
        "system_seconds_per_chunk": system,
        "fitted_sizes": small,
        "fixed_s": float(fixed),
        "per_event_s": float(per_event),
    }
    if 10_000 in seconds and 200_000 in seconds:
        result["per_event_10k_over_200k"] = (seconds[10_000] / 10_000) / (seconds[200_000] / 200_000)
    return result


def profile(cfg: AnalysisConfig, sample: str, models: Path | None, file: str | None, n_chunks: int = 10) -> pstats.Stats:
    """cProfile of ``n_chunks`` chunks of 2 000 events."""
    processor, chunk = _setup(cfg, sample, models, file)
    chunks = [chunk(20_000 + 2_000 * k, 22_000 + 2_000 * k) for k in range(n_chunks)]
    profiler = cProfile.Profile()
    profiler.enable()
    for events in chunks:
        processor.process(events)
    profiler.disable()
    return pstats.Stats(profiler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ita2021")
    parser.add_argument("--sample", default="charged")
    parser.add_argument("--models", type=Path, help="the BDT models (default: outputs/<analysis>/models)")
    parser.add_argument("--file", help="another file of the sample's process (e.g. one written with other baskets)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="chunk sizes, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only (python -m benchmarks runs it so)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    result = run(cfg, args.sample, args.models, args.file, tuple(int(n) for n in args.sizes.split(",")))
    if args.json:
        print(json.dumps(result))
        return
    print(f"file: {result['file']}")
    for n, s in result["seconds_per_chunk"].items():
        print(
            f"{n:>7} events: {s * 1e3:8.1f} ms  ({s / n * 1e6:6.1f} µs/event, {result['system_seconds_per_chunk'][n] / n * 1e6:5.1f} in the kernel)"
        )
    print(
        f"fixed cost per chunk {result['fixed_s'] * 1e3:.1f} ms, {result['per_event_s'] * 1e6:.2f} µs/event (chunks of {result['fitted_sizes']})"
    )
    if "per_event_10k_over_200k" in result:
        print(f"time per event, 10 000-event chunks / 200 000-event chunks: {result['per_event_10k_over_200k']:.3f}")
    if args.profile:
        profile(cfg, args.sample, args.models, args.file).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
