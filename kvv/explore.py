"""Lazy exploration of an analysis's samples with dask-awkward, on the Dask cluster whose dashboard you watch.

The way to look at a variable before it goes into the YAML: in a notebook
attached to the cluster,

    >>> import hist.dask
    >>> from kvv import explore
    >>> signal = explore.open_sample("ita2021", "signal", model_dir="outputs/ita2021/models")
    >>> signal.events["signal_file.root"]         # the raw events, a lazy dask-awkward array in kvv's schema
    >>> q2 = hist.dask.Hist.new.Reg(40, -5, 25, name="q2_rec").Weight()
    >>> q2.fill(q2_rec=signal.columns.q2_rec, weight=signal.columns.weight).compute()

``open_sample`` opens each file of the sample with
``NanoEventsFactory.from_root(..., mode="dask")`` and kvv's schema, cut into
partitions (entry ranges, as coffea's Runner cuts them), and applies the
processor's cleanup, kernels, preselection and BDT scores to every partition
with ``dask_awkward.map_partitions``: ``columns`` is a lazy record array of the
preselected events' columns and their nominal weight. Nothing runs until
``compute()``. ``histogram`` fills exact sums per partition
(:class:`kvv.histograms.SumHistogram`) and adds them in a tree, so the result
is the run's control histogram bit for bit; a ``hist.dask`` fill adds
floating-point sums, equal to it within rounding.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import boost_histogram as bh
import dask
import dask_awkward as dak
import hist
import numpy as np
from coffea.nanoevents import NanoEventsFactory

from kvv import histograms, selection
from kvv.config import AnalysisConfig, load_config
from kvv.io import inputs
from kvv.io.schema import Belle2Schema
from processors.knunu import KnunuProcessor

Columns = dict[str, np.ndarray]
Cuts = dict[str, tuple[float | None, float | None]]

#: entries of the first file run eagerly when a sample is opened, to learn the type of the preselected columns
_TYPE_PROBE_ENTRIES = 200


@dataclass(frozen=True)
class Partition:
    """An entry range of one file of a sample, with the metadata the processor reads."""

    dataset: str
    filename: str
    treename: str
    entrystart: int
    entrystop: int
    weight: float

    @property
    def metadata(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "filename": self.filename, "treename": self.treename,
                "entrystart": self.entrystart, "entrystop": self.entrystop, "weight": self.weight}  # fmt: skip


def partitions(cfg: AnalysisConfig, sample: str, chunksize: int = 200_000) -> list[Partition]:
    """The sample's files cut into entry ranges of about ``chunksize`` (as coffea's Runner cuts them)."""
    if cfg.format_of(cfg.sample(sample)) == "basf2_ntuple":
        raise ValueError(f"sample {sample!r}: kvv.explore opens event trees; a candidate ntuple (basf2_ntuple) has none")
    found = inputs.collect_inputs(cfg, [cfg.sample(sample)])
    files = inputs.fileset(found, cfg)[sample]
    out = []
    for info in found[sample].files:
        n = max(round(info.entries / chunksize), 1)
        edges = np.linspace(0, info.entries, n + 1).round().astype(int)
        tree = files["files"][info.path]
        out += [Partition(sample, info.path, tree, int(a), int(b), files["metadata"]["weight"]) for a, b in itertools.pairwise(edges)]
    return out


def _as_record(columns: Columns, weights: np.ndarray) -> ak.Array:
    if "weight" in columns:
        raise ValueError("a preselected column is named 'weight', the name kvv.explore gives the nominal weights")
    return ak.Array({**columns, "weight": weights})


def _preselected(processor: KnunuProcessor, part: Partition, form: ak.forms.Form, events: ak.Array) -> ak.Array:
    """One partition's preselected columns and weights as a record array of type ``form``."""
    if ak.backend(events) == "typetracer":  # dask-awkward's column projection: the chain may read every branch
        ak.typetracer.touch_data(events)
        return ak.Array(form.length_zero_array().to_typetracer(forget_length=True))
    return _as_record(*processor.preselected(events, metadata=part.metadata))


def _numpy_call(fn: Callable[[Columns, np.ndarray], Any], part: ak.Array) -> Any:
    return fn({k: ak.to_numpy(part[k]) for k in part.fields if k != "weight"}, ak.to_numpy(part["weight"]))


def _fill(
    booked: histograms.SumHistogram, sample: str, cuts: Cuts | None, scale: float, columns: Columns, weights: np.ndarray
) -> histograms.SumHistogram:
    keep = selection.interval_mask(columns, cuts) if cuts else np.ones(len(weights), dtype=bool)
    h = histograms.SumHistogram(*booked.axes)
    h.fill(sample, **{a.name: columns[a.name][keep] for a in booked.axes[1:]}, weight=weights[keep], scale=scale)
    return h


def _to_hist(h: histograms.SumHistogram) -> hist.Hist:
    return h.to_hist()


def _eager_events(part: Partition) -> ak.Array:
    factory = NanoEventsFactory.from_root(
        {part.filename: part.treename}, entry_start=part.entrystart, entry_stop=part.entrystop,
        schemaclass=Belle2Schema, metadata=part.metadata, mode="virtual", uproot_options=inputs.uproot_options([part.filename]),
    )  # fmt: skip
    return factory.events()


class LazySample:
    """A sample of an analysis as dask-awkward arrays: its raw events per file and its preselected columns."""

    def __init__(self, cfg: AnalysisConfig, sample: str, *, chunksize: int = 200_000, model_dir: Path | None = None):
        self.cfg = cfg
        self.sample = sample
        self.partitions = partitions(cfg, sample, chunksize)
        if not self.partitions:
            raise ValueError(f"sample {sample!r}: no entries to explore")
        processor = KnunuProcessor(cfg, model_dir=model_dir)
        first = self.partitions[0]
        probe = Partition(**{**first.metadata, "entrystop": min(first.entrystop, first.entrystart + _TYPE_PROBE_ENTRIES)})
        form = _as_record(*processor.preselected(_eager_events(probe))).layout.form
        meta = ak.Array(form.length_zero_array().to_typetracer(forget_length=True))
        self.events: dict[str, dak.Array] = {}
        parts = []
        for filename, grouped in itertools.groupby(self.partitions, key=lambda p: p.filename):
            group = list(grouped)
            steps = [[p.entrystart, p.entrystop] for p in group]
            events = NanoEventsFactory.from_root(
                {filename: {"object_path": group[0].treename, "steps": steps}}, schemaclass=Belle2Schema, mode="dask",
                uproot_options=inputs.uproot_options([filename]),
                metadata={k: v for k, v in group[0].metadata.items() if k not in ("entrystart", "entrystop")},
            ).events()  # fmt: skip
            self.events[filename] = events
            parts += [
                dak.map_partitions(
                    functools.partial(_preselected, processor, p, form), events.partitions[k], meta=meta, label=f"kvv-preselected-{sample}"
                )
                for k, p in enumerate(group)
            ]
        #: the preselected events' columns (features, BDT scores) and ``weight``, their nominal weight
        self.columns: dak.Array = parts[0] if len(parts) == 1 else dak.concatenate(parts)

    def apply(self, fn: Callable[[Columns, np.ndarray], Any]) -> list[Any]:
        """``fn(columns, weights)`` on every partition's numpy columns, lazily: a list of dask Delayed."""
        return [dask.delayed(_numpy_call)(fn, p) for p in self.columns.to_delayed()]

    def histogram(self, *axes: bh.axis.Axis, cuts: Cuts | None = None) -> Any:
        """A Delayed ``hist.Hist`` of preselected columns named by the axes, weighted, filled per partition, summed exactly."""
        booked = histograms.SumHistogram(hist.axis.StrCategory([self.sample], name="dataset"), *axes)
        filled = self.apply(functools.partial(_fill, booked, self.sample, cuts, self.partitions[0].weight))
        while len(filled) > 1:  # a tree of additions, as Dask would reduce
            filled = [dask.delayed(sum)(filled[i : i + 8], histograms.SumHistogram(*booked.axes)) for i in range(0, len(filled), 8)]
        return dask.delayed(_to_hist)(filled[0])


def open_sample(config: AnalysisConfig | str, sample: str, *, chunksize: int = 200_000, model_dir: Path | str | None = None) -> LazySample:
    """A sample of an analysis (a config or its name/path) opened lazily; ``model_dir`` adds the BDT scores."""
    cfg = config if isinstance(config, AnalysisConfig) else load_config(config)
    return LazySample(cfg, sample, chunksize=chunksize, model_dir=Path(model_dir) if model_dir else None)
