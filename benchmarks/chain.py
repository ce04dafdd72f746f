"""kvv's whole chain: benchmark samples and models, the I/O limit, the processor, its stages.

The benchmark analysis is the default one (``ita2021``) with every sample scaled
so the total is ``n_events``, generated once into a cache folder, and small BDTs
trained on it (the benchmark measures the chain, not the physics of the models).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
import yaml
from coffea import processor
from coffea.nanoevents import NanoEventsFactory

from kvv import bdt, features, histograms, selection
from kvv.config import ANALYSIS_CONFIG_DIR, AnalysisConfig, load_config
from kvv.eventformat import PHOTONS, TRACKS
from kvv.io import inputs
from kvv.io.schema import Belle2Schema
from kvv.simulate import generate_missing
from processors import knunu
from processors.knunu import KnunuProcessor

DEFAULT_CACHE = Path("data/benchmark_samples")

# Exactly the branches the processor touches: cleanup and kernels use these
# track/photon fields, the beam four-momentum and the event number; MC files add
# the truth branches the processor's systematics bookkeeping reads. Nothing else.
TRACK_FIELDS = ("px", "py", "pz", "charge", "dr", "dz", "nPXDHits", "kaonID", "pionID")
PHOTON_FIELDS = ("E", "theta", "phi")
BRANCHES: tuple[str, ...] = (
    "__event__", "beamE", "beamPx", "beamPy", "beamPz",
    TRACKS.counter, *(TRACKS.branch(f) for f in TRACK_FIELDS),
    PHOTONS.counter, *(PHOTONS.branch(f) for f in PHOTON_FIELDS),
)  # fmt: skip
TRUTH_BRANCHES: tuple[str, ...] = (*knunu.MC_EVENT_BRANCHES, TRACKS.branch("mcPDG"), PHOTONS.branch("mcPDG"))

FeatureFn = Callable[..., dict[str, np.ndarray]]


# --------------------------------------------------------------------------- samples and models


OBJECT_VARIATION_KINDS = (
    "tracking_efficiency", "photon_energy_scale", "photon_energy_resolution", "beam_background_photon_scale", "momentum_scale",
)  # fmt: skip


def benchmark_config(n_events: int, cache: Path = DEFAULT_CACHE, *, systematics: str = "none") -> AnalysisConfig:
    """The default analysis, samples scaled to ``n_events`` in all, looser BDT cuts; written next to the samples.

    ``systematics``: "none" (the nominal chain), "weight" (weight variations only) or
    "all" (the default analysis's systematics section as it is).
    """
    raw = yaml.safe_load((ANALYSIS_CONFIG_DIR / "ita2021.yaml").read_text())
    total = sum(s["events"] for s in raw["samples"])
    raw["name"] = f"bench_{n_events}"
    raw["simulation"]["directory"] = str(cache / raw["name"])
    if systematics != "none":  # same samples and models, another config file
        raw["name"] += f"_{systematics}_systematics"
    for sample in raw["samples"]:
        sample["events"] = max(200, math.ceil(sample["events"] * n_events / total))
    # The nominal chain unless asked: object systematics re-run features and BDTs per shift
    if systematics == "none":
        raw.pop("systematics", None)
    elif systematics == "weight":
        for kind in OBJECT_VARIATION_KINDS:
            raw["systematics"].pop(kind, None)
    elif systematics != "all":
        raise ValueError(f"systematics must be 'none', 'weight' or 'all', got {systematics!r}")
    # The analysis's own models, with looser cuts so that every region is filled at small sample sizes.
    # The BDTc is trained on continuum MC with out-of-fold BDT1 > its cut; small samples
    # leave none above 0.5, so it takes every event (it then also scores every preselected row).
    raw["bdt"]["continuum"].update(n_estimators=30, max_depth=3, bdt1_cut=0.0)
    raw["bdt"]["bdt1_cut"] = 0.5
    for region in raw["regions"]:
        region["cuts"]["bdt1"] = [0.5, None]
    path = cache / f"{raw['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _generate(task: dict) -> str:
    from kvv.simulate import generate_sample

    generate_sample(**task)
    return str(task["path"])


def ensure_samples(cfg: AnalysisConfig, workers: int = 1) -> dict:
    """Generate missing sample files (once; later runs reuse them) and return the coffea fileset."""

    def submit(tasks: list[dict]) -> list:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(_generate, tasks))

    generate_missing(cfg, cfg.samples, submit)
    return inputs.fileset(inputs.collect_inputs(cfg, cfg.samples), cfg)


def ensure_models(cfg: AnalysisConfig, fileset: dict, workers: int = 1) -> Path:
    """Train small BDTs from the processor's feature tables, unless already there."""
    import pandas as pd

    model_dir = Path(cfg.simulation.directory) / "models"
    if (model_dir / "model.json").exists():
        return model_dir
    table_dir = Path(cfg.simulation.directory) / "tables"
    table_dir.mkdir(parents=True, exist_ok=True)
    # all MC (the BDTc takes its continuum MC by sample name, off-resonance ones included) and off-resonance data
    train_set = {
        name: spec for name, spec in fileset.items()
        if not spec["metadata"]["is_data"] or spec["metadata"]["resonance"] == "off"
    }  # fmt: skip
    executor = processor.FuturesExecutor(workers=workers, status=False)
    out = run_runner(train_set, KnunuProcessor(cfg, table_dir=table_dir), executor, 100_000)
    tables = {name: pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True) for name, paths in out["tables"].items()}
    data = [t for name, t in tables.items() if fileset[name]["metadata"]["is_data"]]
    mc = pd.concat([t for name, t in tables.items() if not fileset[name]["metadata"]["is_data"]], ignore_index=True)
    mc["is_signal"] = mc["sample"] == "signal"
    bdt.train_all(mc, cfg.bdt, model_dir, config_hash="benchmark", offres_table=pd.concat(data, ignore_index=True), diagnostics=False)
    return model_dir


def run_runner(fileset: dict, proc: processor.ProcessorABC, executor, chunksize: int) -> dict:
    """coffea's Runner exactly as ``kvv.run`` sets it up."""
    runner = processor.Runner(executor=executor, schema=Belle2Schema, chunksize=chunksize)
    return runner(fileset, proc)  # each file of the fileset names its tree


# --------------------------------------------------------------------------- chunks and reading


@dataclass(frozen=True)
class Chunk:
    dataset: str
    path: str
    start: int
    stop: int
    weight: float

    @property
    def n_events(self) -> int:
        return self.stop - self.start


def chunks(fileset: dict, chunksize: int) -> list[Chunk]:
    """Equal-size entry ranges of every file, like coffea's preprocessing."""
    out = []
    for name, spec in fileset.items():
        for path in spec["files"]:
            n = uproot.open(path)["events"].num_entries
            n_chunks = max(1, math.ceil(n / chunksize))
            size = math.ceil(n / n_chunks)
            out += [Chunk(name, path, s, min(s + size, n), spec["metadata"]["weight"]) for s in range(0, n, size)]
    return out


def read_branches(chunk: Chunk) -> int:
    """The I/O limit: uproot reads exactly the analysis branches of a chunk; returns bytes in memory."""
    with uproot.open(chunk.path) as f:
        tree = f["events"]
        names = [b for b in (*BRANCHES, *TRUTH_BRANCHES) if b in tree]  # data files have no truth
        arrays = tree.arrays(names, entry_start=chunk.start, entry_stop=chunk.stop)
    return arrays.nbytes


def load_events(chunk: Chunk) -> ak.Array:
    """NanoEvents of a chunk with the analysis branches read eagerly (so reading can be timed apart)."""
    factory = NanoEventsFactory.from_root(
        {chunk.path: "events"},
        entry_start=chunk.start,
        entry_stop=chunk.stop,
        schemaclass=Belle2Schema,
        metadata={"dataset": chunk.dataset, "weight": chunk.weight, "filename": chunk.path},
        preload=lambda branch: branch.name in BRANCHES or branch.name in TRUTH_BRANCHES,
    )
    return factory.events()


# --------------------------------------------------------------------------- the staged chain

# Library calls of the processor, by stage. Timing wraps them where the processor
# looks them up (module attributes), so the real processor runs unchanged.
STAGE_CALLS: dict[str, tuple[tuple[object, str], ...]] = {
    "cleanup": ((inputs, "nonfinite_events"), (selection, "track_keep"), (selection, "photon_keep"),
                (selection, "track_columns"), (selection, "photon_columns"), (knunu, "_truth")),
    "kinematics + features": ((features, "event_features"),),
    "selection": ((selection, "preselection_steps"), (selection, "cutflow_row"), (selection, "interval_mask")),
    "BDT scoring": ((bdt, "score_tables"),),
    "histogram filling": ((histograms, "book"), (histograms, "fill_templates")),
}  # fmt: skip


class Timers(dict):
    """Accumulated seconds per stage; nested timed calls count for the outermost only."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._depth += 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self[name] = self.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)

        return timed


@contextmanager
def patched(replacements: dict[tuple[object, str], Callable]) -> Iterator[None]:
    """Temporarily replace module attributes (restored on exit, also on errors)."""
    saved = {key: getattr(*key) for key in replacements}
    try:
        for (module, name), fn in replacements.items():
            setattr(module, name, fn)
        yield
    finally:
        for (module, name), fn in saved.items():
            setattr(module, name, fn)


def run_staged(proc: KnunuProcessor, chunk_list: list[Chunk], feature_fn: FeatureFn | None = None) -> tuple[dict, Timers]:
    """Read, process and merge every chunk in this process, each library call timed by stage.

    ``feature_fn`` replaces :func:`kvv.features.event_features` (same signature) for the run.
    Time in ``process`` outside the listed calls is reported as "processor glue".
    """
    timers = Timers()
    wrapped = {(m, n): timers.wrap(stage, getattr(m, n)) for stage, calls in STAGE_CALLS.items() for m, n in calls}
    if feature_fn is not None:
        wrapped[(features, "event_features")] = timers.wrap("kinematics + features", feature_fn)
    outputs = []
    with patched(wrapped):
        for chunk in chunk_list:
            with timers.stage("read"):
                events = load_events(chunk)
            before = sum(timers.values())
            start = time.perf_counter()
            outputs.append(proc.process(events))
            glue = time.perf_counter() - start - (sum(timers.values()) - before)
            timers["processor glue"] = timers.get("processor glue", 0.0) + glue
    with timers.stage("merging"):
        merged = proc.postprocess(processor.accumulate(outputs))
    return merged, timers


# --------------------------------------------------------------------------- agreement


def compare(reference: dict, other: dict, rtol: float = 1e-9) -> dict:
    """Cutflow counts exactly and every histogram's sums of w and w^2 to ``rtol``.

    Returns ``{"identical": bool, "checked": n, "mismatches": [...]}``.
    """
    mismatches = []
    checked = 0
    for sample, steps in reference["cutflow"].items():
        for step, row in steps.items():
            got = other["cutflow"].get(sample, {}).get(step)
            checked += 1
            if got != row:
                mismatches.append(f"cutflow {sample} / {step}: {row} vs {got}")
    for group in ("templates", "controls"):
        for name, h in reference[group].items():
            g = other[group][name]
            for what in ("values", "variances"):
                a, b = getattr(h.view(flow=True), "value" if what == "values" else "variance"), None
                b = getattr(g.view(flow=True), "value" if what == "values" else "variance")
                checked += 1
                if not np.allclose(a, b, rtol=rtol, atol=0.0):
                    worst = np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300))
                    mismatches.append(
                        f"{group}/{name} {what}: {np.sum(~np.isclose(a, b, rtol=rtol, atol=0.0))} bins differ, worst rel {worst:.3g}"
                    )
    return {"identical": not mismatches, "checked": checked, "mismatches": mismatches}


def subset(fileset: dict, n_events: int, chunksize: int) -> list[Chunk]:
    """The first events of every sample, in the sample mix of the fileset, about ``n_events`` in all."""
    full = chunks(fileset, chunksize)
    total = sum(c.n_events for c in full)
    fraction = min(1.0, n_events / total)
    out = []
    for name, spec in fileset.items():
        path = next(iter(spec["files"]))
        want = max(1, round(fraction * sum(c.n_events for c in full if c.dataset == name)))
        want = min(want, uproot.open(path)["events"].num_entries)
        out += [Chunk(name, path, s, min(s + chunksize, want), spec["metadata"]["weight"]) for s in range(0, want, chunksize)]
    return out
