"""Lazy exploration of an analysis's samples on a Dask cluster, partition by partition.

The way to look at a variable before it goes into the YAML: in a notebook
attached to the cluster whose dashboard you watch,

    >>> from distributed import Client
    >>> from kvv import explore
    >>> client = Client(...)                       # the cluster of --scheduler, or a LocalCluster
    >>> signal = explore.open_sample("ita2021", "signal", model_dir="outputs/ita2021/models")
    >>> h = signal.histogram(hist.axis.Regular(40, -5, 25, name="q2_rec")).compute()

``open_sample`` splits the sample's files into partitions (entry ranges) and
builds a Dask graph: each task opens its partition with kvv's schema and runs
the processor's cleanup, kernels, preselection and BDT scores
(:meth:`processors.knunu.KnunuProcessor.preselected`); ``map_partitions``
applies any function of the preselected columns, and ``histogram`` fills
exact sums per partition (:class:`kvv.histograms.SumHistogram`) and adds them
in a tree, so the result is the Runner's control histogram, bit for bit.
Nothing runs until ``compute()``.

kvv does this with ``dask.delayed`` rather than dask-awkward: every release of
dask-awkward (up to 2026.2.1) requires dask < 2025.4, which the distributed
release kvv runs on does not allow.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import boost_histogram as bh
import dask
import hist
import numpy as np
from coffea.nanoevents import NanoEventsFactory

from kvv import histograms, selection
from kvv.config import AnalysisConfig, load_config
from kvv.io import inputs
from kvv.io.schema import Belle2Schema
from processors.knunu import KnunuProcessor

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Partition:
    """An entry range of one file of a sample, with the metadata the processor reads."""

    dataset: str
    filename: str
    treename: str
    entrystart: int
    entrystop: int
    weight: float


def partitions(cfg: AnalysisConfig, sample: str, chunksize: int = 200_000) -> list[Partition]:
    """The sample's files cut into entry ranges of about ``chunksize`` (as coffea's Runner cuts them)."""
    found = inputs.collect_inputs(cfg, [cfg.sample(sample)])
    files = inputs.fileset(found, cfg)[sample]
    out = []
    for info in found[sample].files:
        n = max(round(info.entries / chunksize), 1)
        edges = np.linspace(0, info.entries, n + 1).round().astype(int)
        tree = files["files"][info.path]
        out += [Partition(sample, info.path, tree, int(a), int(b), files["metadata"]["weight"]) for a, b in itertools.pairwise(edges)]
    return out


def _events(part: Partition) -> ak.Array:
    metadata = {"dataset": part.dataset, "filename": part.filename, "treename": part.treename,
                "entrystart": part.entrystart, "entrystop": part.entrystop, "weight": part.weight}  # fmt: skip
    factory = NanoEventsFactory.from_root(
        {part.filename: part.treename},
        entry_start=part.entrystart,
        entry_stop=part.entrystop,
        schemaclass=Belle2Schema,
        metadata=metadata,
        mode="virtual",
    )
    return factory.events()


def _preselected(processor: KnunuProcessor, part: Partition) -> tuple[Columns, np.ndarray]:
    return processor.preselected(_events(part))


class LazySample:
    """A sample of an analysis as a graph of partitions, each the preselected columns and nominal weights."""

    def __init__(self, cfg: AnalysisConfig, sample: str, *, chunksize: int = 200_000, model_dir: Path | None = None):
        self.cfg = cfg
        self.sample = sample
        self.partitions = partitions(cfg, sample, chunksize)
        processor = KnunuProcessor(cfg, model_dir=model_dir)
        self._parts = [
            dask.delayed(_preselected)(processor, p, dask_key_name=f"kvv-preselected-{sample}-{k}") for k, p in enumerate(self.partitions)
        ]

    def map_partitions(self, fn: Callable[[Columns, np.ndarray], Any]) -> list[Any]:
        """``fn(columns, weights)`` on every partition, lazily: a list of dask Delayed."""
        return [dask.delayed(lambda part, f=fn: f(*part))(p) for p in self._parts]

    def histogram(self, *axes: bh.axis.Axis, cuts: dict[str, tuple[float | None, float | None]] | None = None) -> Any:
        """A Delayed ``hist.Hist`` of preselected columns named by the axes, weighted, filled per partition, summed exactly."""
        booked = histograms.SumHistogram(hist.axis.StrCategory([self.sample], name="dataset"), *axes)
        names = [a.name for a in axes]
        weight_scale = self.partitions[0].weight if self.partitions else 1.0

        def fill(columns: Columns, weights: np.ndarray) -> histograms.SumHistogram:
            keep = selection.interval_mask(columns, cuts) if cuts else np.ones(len(weights), dtype=bool)
            h = histograms.SumHistogram(*booked.axes)
            h.fill(self.sample, **{n: columns[n][keep] for n in names}, weight=weights[keep], scale=weight_scale)
            return h

        filled = self.map_partitions(fill)
        while len(filled) > 1:  # a tree of additions, as Dask would reduce
            filled = [dask.delayed(sum)(filled[i : i + 8], histograms.SumHistogram(*booked.axes)) for i in range(0, len(filled), 8)]
        empty = dask.delayed(histograms.SumHistogram)(*booked.axes)
        return dask.delayed(lambda h: h.to_hist())(filled[0] if filled else empty)


def open_sample(config: AnalysisConfig | str, sample: str, *, chunksize: int = 200_000, model_dir: Path | str | None = None) -> LazySample:
    """A sample of an analysis (a config or its name/path) opened lazily; ``model_dir`` adds the BDT scores."""
    cfg = config if isinstance(config, AnalysisConfig) else load_config(config)
    return LazySample(cfg, sample, chunksize=chunksize, model_dir=Path(model_dir) if model_dir else None)
