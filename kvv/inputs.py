"""Input samples: locating or generating their files, checking them, normalising them.

Before any processing every file is opened once: a missing file, a file that
is not ROOT or is truncated, a missing tree or branch, or an empty tree is an
:class:`InputError` naming the file (and branch). With ``skip_bad_files`` the
file is reported as skipped instead, so no entry is ever dropped silently.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import uproot

from kvv import eventformat
from kvv.beams import SQRT_S_OFF_RESONANCE, SQRT_S_ON_RESONANCE, Beams
from kvv.config import AnalysisConfig, Sample

log = logging.getLogger(__name__)

EVENTS_PER_GENERATED_FILE = 500_000
FB_PER_NB = 1.0e6  # 1 nb = 1e6 fb, so N = sigma[nb] * 1e6 * L[fb^-1]


class InputError(RuntimeError):
    """A bad input file; the message is one line naming the file and what is wrong."""


@dataclass(frozen=True)
class InputFile:
    path: str
    entries: int
    n_generated: int  # events generated into this file (== entries for kvv's own samples)
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

    def weight(self, target_lumi_fb: float) -> float:
        """Per-event weight scaling the sample to the target luminosity.

        Real data weigh 1. kvv's pseudo-data carry generator metadata and are
        prescaled like MC: they stand for the configured luminosity.
        """
        if not self.files:
            return 1.0
        xsec = self.sample.cross_section_nb
        if self.sample.is_data and xsec is None and all(f.cross_section_nb is None for f in self.files):
            return 1.0
        if xsec is None:
            known = {f.cross_section_nb for f in self.files}
            if len(known) != 1 or None in known:
                raise InputError(
                    f"sample {self.sample.name!r}: cross_section_nb is not in the config and "
                    f"the files' metadata disagree or lack it ({sorted(map(str, known))})"
                )
            xsec = known.pop()
        n_generated = sum(f.n_generated for f in self.files)
        return xsec * FB_PER_NB * target_lumi_fb / n_generated


def sample_seed(base_seed: int, sample: Sample, index: int) -> int:
    """A stable seed per (sample, file): same config -> byte-identical files."""
    return (base_seed * 1_000_003 + zlib.crc32(sample.name.encode()) + 7919 * index) % (2**31 - 1)


def generated_file_paths(cfg: AnalysisConfig, sample: Sample) -> list[tuple[Path, int, int]]:
    """``(path, n_events, seed)`` of the files kvv generates for a sample without files."""
    from kvv.simulate.samples import GENERATOR_TAG

    directory = Path(cfg.simulation.directory)
    n_files = max(1, math.ceil(sample.events / EVENTS_PER_GENERATED_FILE))
    per_file = math.ceil(sample.events / n_files)
    out = []
    for i in range(n_files):
        n = min(per_file, sample.events - i * per_file)
        seed = sample_seed(cfg.simulation.seed, sample, i)
        tag = "_".join(f"{k}{v:g}" for k, v in sorted(sample.tune.items()))
        name = f"{sample.name}_{sample.process}_{n}_s{seed}{'_' + tag if tag else ''}_{GENERATOR_TAG}.root"
        out.append((directory / name, n, seed))
    return out


def sample_file_paths(cfg: AnalysisConfig, sample: Sample) -> list[str]:
    if sample.files:
        return list(sample.files)
    return [str(p) for p, _, _ in generated_file_paths(cfg, sample)]


def _beams(sample: Sample) -> Beams:
    return Beams(sqrt_s=SQRT_S_ON_RESONANCE if sample.resonance == "on" else SQRT_S_OFF_RESONANCE)


def missing_generation_tasks(cfg: AnalysisConfig, samples: Iterable[Sample]) -> list[dict]:
    """Keyword arguments of ``kvv.simulate.generate_sample`` for every file not on disk."""
    from kvv.eventformat import Process

    tasks = []
    for sample in samples:
        if sample.files:
            continue
        for path, n, seed in generated_file_paths(cfg, sample):
            if path.exists():
                continue
            tasks.append(
                dict(
                    process=Process[sample.process.upper()],
                    n_events=n,
                    path=path,
                    beams=_beams(sample),
                    seed=seed,
                    chunk_size=cfg.simulation.chunk_size,
                    data=sample.is_data,
                    tune=dict(sample.tune) or None,
                )
            )
    return tasks


def generate_missing(cfg: AnalysisConfig, samples: Iterable[Sample], submit: Callable[[list[dict]], list]) -> list:
    """Generate every missing sample file; ``submit`` runs the task list on an executor."""
    tasks = missing_generation_tasks(cfg, samples)
    if not tasks:
        return []
    Path(cfg.simulation.directory).mkdir(parents=True, exist_ok=True)
    log.info("generating %d sample file(s), %d events", len(tasks), sum(t["n_events"] for t in tasks))
    return submit(tasks)


def inspect_file(path: str, tree: str, branches: Iterable[str]) -> InputFile:
    """Open one file and check tree, branches and entries; raises InputError."""
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


def collect_inputs(
    cfg: AnalysisConfig, samples: Iterable[Sample], *, skip_bad_files: bool = False, max_files: int | None = None
) -> dict[str, SampleInputs]:
    """Inspect the files of each sample; bad files raise or are recorded as skipped."""
    out = {}
    for sample in samples:
        inputs = SampleInputs(sample)
        for path in sample_file_paths(cfg, sample)[:max_files]:
            try:
                inputs.files.append(inspect_file(path, cfg.tree, REQUIRED_BRANCHES))
            except InputError as exc:
                if not skip_bad_files:
                    raise
                log.warning("skipping bad file: %s", exc)
                inputs.skipped.append({"file": path, "reason": str(exc), "entries": _entries_or_none(path, cfg.tree)})
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
            "files": {f.path: cfg.tree for f in si.files},
            "metadata": {"weight": si.weight(lumi), "resonance": si.sample.resonance, "is_data": si.sample.is_data},
        }
    return out
