"""Input samples: checking their files and normalising them.

Before any processing every file is opened once: a missing file, a file that
is not ROOT or is truncated, a missing tree or branch, or an empty tree is an
:class:`InputError` naming the file (and branch). With ``skip_bad_files`` the
file is reported as skipped instead, so no entry is ever dropped silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from kvv import eventformat
from kvv.config import AnalysisConfig, Sample
from kvv.io import basf2
from kvv.io.artefacts import Role
from kvv.io.samplefiles import sample_file_paths

log = logging.getLogger(__name__)

FB_PER_NB = 1.0e6  # 1 nb = 1e6 fb, so N = sigma[nb] * 1e6 * L[fb^-1]


class InputError(RuntimeError):
    """A bad input file; the message is one line naming the file and what is wrong."""


class NonFiniteInputError(InputError):
    """NaN or infinite values in a branch that feeds the analysis (``--drop-nonfinite`` drops those events)."""


#: the floating-point fields that feed the analysis, per collection (kvv's names); the
#: integer ones cannot hold NaN, and basf2's NaN mcPDG is read as 0, "no match"
CHECKED_FIELDS = {
    eventformat.TRACKS.name: ("px", "py", "pz", "dr", "dz", "kaonID", "pionID", "electronID", "muonID"),
    eventformat.PHOTONS.name: ("E", "theta", "phi"),
    None: ("beamE", "beamPx", "beamPy", "beamPz"),
}


def _list_parts(values: ak.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """Offsets from 0 and flat values of a jagged column stored as a list-offset array of numbers (as read), else None.

    Reading them off the layout costs a few µs; awkward's ``num`` and
    ``flatten`` cost a fixed ~0.4 ms each, which small chunks feel.
    """
    layout = ak.to_layout(values)
    if not (isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray)):
        return None  # e.g. events selected by an index: awkward's own functions below
    offsets = np.asarray(layout.offsets.data, dtype=np.int64)
    return offsets - offsets[0], np.asarray(layout.content.data)[offsets[0] : offsets[-1]]


def event_offsets(values: ak.Array) -> np.ndarray:
    """The event offsets (int64, n + 1) of a jagged column: kernel input with :func:`flat_values`."""
    parts = _list_parts(values)
    if parts is not None:
        return parts[0]
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(ak.to_numpy(ak.num(values, axis=1)), out=offsets[1:])
    return offsets


def flat_values(values: ak.Array, dtype: type | None = np.float64) -> np.ndarray:
    """The flat values of a jagged column, contiguous (``dtype=None``: as stored)."""
    parts = _list_parts(values)
    flat = ak.to_numpy(ak.flatten(values)) if parts is None else parts[1]
    return np.ascontiguousarray(flat, dtype=dtype)


def kept_offsets(offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The event offsets of the entries ``keep`` marks (``offsets`` into ``keep``)."""
    running = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(keep, out=running[1:])
    return running[offsets]


def any_per_event(offsets: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Per event, whether any of its entries (``offsets`` into ``flags``) is set."""
    return np.diff(kept_offsets(offsets, flags)) > 0


def nonfinite_events(events: ak.Array) -> dict[str, np.ndarray]:
    """Per checked branch with a NaN or infinity: which events hold one (kvv's branch names)."""
    out = {}
    for coll_name, fields in CHECKED_FIELDS.items():
        coll = events if coll_name is None else events[coll_name]
        for name in fields:
            if name not in coll.fields:
                continue
            if coll_name is None:
                per_event = ~np.isfinite(np.asarray(ak.to_numpy(coll[name]), dtype=np.float64))
            else:
                per_event = any_per_event(event_offsets(coll[name]), ~np.isfinite(flat_values(coll[name], dtype=None)))
            if per_event.any():
                branch = name if coll_name is None else next(c for c in eventformat.COLLECTIONS if c.name == coll_name).branch(name)
                out[branch] = per_event
    return out


@dataclass(frozen=True)
class InputFile:
    path: str
    entries: int
    n_generated: int  # events generated into this file (its entries unless kvv's generator filter dropped some)
    cross_section_nb: float | None


@dataclass
class SampleInputs:
    """The usable files of a sample, its normalisation and what had to be skipped."""

    sample: Sample
    files: list[InputFile] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return sum(f.entries for f in self.files)

    @property
    def n_generated(self) -> int:
        """The events the sample's files stand for: generated (kvv metadata, ``generated_events``) or, without that, their entries."""
        return self.sample.generated_events or sum(f.n_generated for f in self.files)

    @property
    def is_recorded_data(self) -> bool:
        """Data without generator metadata or a configured cross-section: recorded events, each weighing 1."""
        return self.sample.is_data and self.sample.cross_section_nb is None and all(f.cross_section_nb is None for f in self.files)

    def role(self, signal_template: str) -> Role:
        """What the sample is to the fit; kvv's generated data are pseudo-data, never observations."""
        if self.sample.is_data:
            return "data" if self.is_recorded_data else "pseudo_data"
        return "signal" if self.sample.template == signal_template else "background"

    def weight(self, target_lumi_fb: float) -> float:
        """Per-event weight scaling the sample to the target luminosity.

        Recorded data weigh 1. kvv's pseudo-data carry generator metadata and are
        prescaled like MC: they stand for the configured luminosity.
        """
        if not self.files or self.is_recorded_data:
            return 1.0
        if self.sample.luminosity_fb is not None:
            return target_lumi_fb / self.sample.luminosity_fb
        xsec = self.sample.cross_section_nb
        if xsec is None:
            known = {f.cross_section_nb for f in self.files}
            agreed = next(iter(known)) if len(known) == 1 else None
            if agreed is None:
                raise InputError(
                    f"sample {self.sample.name!r}: cross_section_nb is not in the config and "
                    f"the files' metadata disagree or lack it ({sorted(map(str, known))})"
                )
            xsec = agreed
        return xsec * FB_PER_NB * target_lumi_fb / self.n_generated


def uproot_options(paths: Iterable[str]) -> dict:
    """Options for uproot to read ``paths``: memory-mapped when all are local files.

    uproot's default source for local paths goes through fsspec's asyncio thread;
    a memory map reads without that hand-off, ~45 ms less per 2 000-event chunk of
    kvv's processor (benchmarks/chunk_cost.py). Remote URLs keep uproot's default.
    """
    return {"handler": uproot.MemmapSource} if all("://" not in str(p) for p in paths) else {}


def runner_uproot_options(paths: Iterable[str]) -> dict:
    """:func:`uproot_options` for coffea's ``Runner``, which also needs uproot's array cache turned off.

    Each chunk opens its file anew, and uproot's TTree objects form reference
    cycles, so a file's array cache (100 MB by default) outlived its chunk until a
    full garbage collection: a worker's peak RSS grew by ~100 MB a chunk
    (benchmarks/memory.py). kvv reads each branch of a chunk once and has no use
    for the cache. (``NanoEventsFactory.from_root`` turns it off itself and
    refuses the option.)
    """
    return {**uproot_options(paths), "array_cache": None}


def inspect_file(path: str, tree: str, branches: Iterable[str], check: Callable[[], int] | None = None) -> InputFile:
    """Open one file and check tree, branches and entries; raises InputError.

    ``check`` replaces the tree and branch checks for basf2 layouts: it returns the
    entries or raises :class:`~kvv.io.basf2.Basf2InputError`.
    """
    if not Path(path).exists() and "://" not in path:
        raise InputError(f"{path}: file does not exist")
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises many types for non-ROOT or truncated files
        raise InputError(f"{path}: not a readable ROOT file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    with f:
        # A file cut short (interrupted copy or write) can still have a readable
        # header and directory; the size recorded in the header gives it away.
        size = Path(path).stat().st_size if Path(path).exists() else None
        if size is not None and size < f.file.fEND:
            raise InputError(f"{path}: truncated ROOT file ({size} of {f.file.fEND} bytes)")
        if check is not None:
            try:
                entries = check()
            except basf2.Basf2InputError as exc:
                raise InputError(str(exc)) from None
            if entries == 0:
                raise InputError(f"{path}: tree {tree!r} is empty")
            return InputFile(path=path, entries=entries, n_generated=entries, cross_section_nb=None)
        if tree not in f:
            raise InputError(f"{path}: no TTree named {tree!r}")
        t = f[tree]
        keys = set(t.keys())
        for branch in branches:
            if branch not in keys:
                raise InputError(f"{path}: tree {tree!r} has no branch {branch!r}")
        if t.num_entries == 0:
            raise InputError(f"{path}: tree {tree!r} is empty")
        meta = {}
        if eventformat.METADATA_KEY in f:
            meta = json.loads(str(f[eventformat.METADATA_KEY]))
    return InputFile(
        path=path,
        entries=int(t.num_entries),
        n_generated=int(meta.get("n_events", t.num_entries)),
        cross_section_nb=meta.get("cross_section_nb"),
    )


REQUIRED_BRANCHES = eventformat.all_branches(mc=False)  # MC truth is optional everywhere


def tree_of(cfg: AnalysisConfig, sample: Sample) -> str:
    """The tree the processors iterate over: kvv's one tree, the track list's or the candidate ntuple's."""
    layout = cfg.format_of(sample)
    if layout == "basf2_eventbased":
        return cfg.input.eventbased.tracks_tree
    if layout == "basf2_ntuple":
        return cfg.input.ntuple.tree
    return cfg.tree


def _basf2_check(cfg: AnalysisConfig, sample: Sample, path: str) -> Callable[[], int] | None:
    mc, truth = not sample.is_data, cfg.input.truth
    layout = cfg.format_of(sample)
    if layout == "basf2_eventbased":
        return lambda: basf2.check_eventbased_file(path, cfg.input.eventbased, truth, mc)
    if layout == "basf2_ntuple":
        return lambda: basf2.check_ntuple_file(path, cfg.input.ntuple, truth, mc)
    return None


def collect_inputs(
    cfg: AnalysisConfig, samples: Iterable[Sample], *, skip_bad_files: bool = False, max_files: int | None = None
) -> dict[str, SampleInputs]:
    """Inspect the files of each sample; bad files raise or are recorded as skipped."""
    out = {}
    for sample in samples:
        inputs = SampleInputs(sample)
        tree = tree_of(cfg, sample)
        for path in sample_file_paths(cfg, sample)[:max_files]:
            try:
                inputs.files.append(inspect_file(path, tree, REQUIRED_BRANCHES, _basf2_check(cfg, sample, path)))
            except InputError as exc:
                if not skip_bad_files:
                    raise
                log.warning("skipping bad file: %s", exc)
                inputs.skipped.append({"file": path, "reason": str(exc), "entries": _entries_or_none(path, tree)})
        out[sample.name] = inputs
    return out


def _entries_or_none(path: str, tree: str) -> int | None:
    try:
        with uproot.open(path) as f:
            return int(f[tree].num_entries)
    except Exception:
        return None


def fileset(inputs: dict[str, SampleInputs], cfg: AnalysisConfig) -> dict:
    """coffea fileset with each sample's normalisation weight in its metadata."""
    out = {}
    for name, si in inputs.items():
        if not si.files:
            continue
        lumi = cfg.luminosity.on_resonance if si.sample.resonance == "on" else cfg.luminosity.off_resonance
        out[name] = {
            "files": {f.path: tree_of(cfg, si.sample) for f in si.files},
            "metadata": {"weight": si.weight(lumi), "resonance": si.sample.resonance, "is_data": si.sample.is_data},
        }
    return out
