"""What the stages hand each other on disk: JSON files, the record of the processed samples, the outputs lock.

Every file kvv writes is written to a temporary name and renamed
(:func:`atomic_path`), so a reader, or a rerun after an interruption, never sees
half a file. JSON goes through :func:`write_json`: strict JSON (NaN and
infinities become ``null``). The process stage writes one :class:`SampleRecord`
per sample into ``summary.json``; the fit stage reads the roles from there
instead of guessing them from the numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

#: signal and background MC fill templates; data are observations; pseudo-data are
#: kvv's generated stand-in for data, weighted to the luminosity, never observations
Role = Literal["signal", "background", "data", "pseudo_data"]


class SampleRecord(BaseModel):
    """One sample as the process stage saw it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    template: str
    resonance: Literal["on", "off"]
    files: int
    entries_in_files: int
    entries_processed: int
    events_generated: int = 0  # the events the files stand for (more than their entries for filtered or skimmed MC)
    weight: float | None  # per-event normalisation weight; None: no usable file
    skipped_files: list[dict[str, Any]]
    nonfinite_dropped: dict[str, int] = {}  # --drop-nonfinite: events dropped per file
    format: str = "kvv"  # the file layout
    # variations the sample cannot carry (its templates are the nominal there), with the reason
    skipped_variations: dict[str, str] = {}


def plain(value: Any) -> Any:  # noqa: PLR0911 - one return per kind of value converted
    """``value`` as plain JSON types: numpy arrays and scalars, tuples, paths, dataclasses; NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, BaseModel):
        return plain(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` (same suffix, so writers that go by it still can) renamed to ``path`` on success."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as indented strict JSON, atomically."""
    return write_text(json.dumps(plain(obj), indent=2, allow_nan=False), path)


def write_text(text: str, path: Path) -> Path:
    """Write ``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_sample_records(summary_path: Path) -> dict[str, SampleRecord]:
    """The sample records of a process stage's ``summary.json``."""
    summary = json.loads(Path(summary_path).read_text())
    return {name: SampleRecord.model_validate(record) for name, record in summary["samples"].items()}


class OutputsInUseError(RuntimeError):
    """Another run holds the outputs folder; the message names it."""


@contextlib.contextmanager
def outputs_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder/.kvv.lock`` (host and pid of this run) while a run writes into the folder.

    A lock held by a live process is refused with a line naming it; one left by a
    process of this host that no longer runs is taken over with a warning. A lock of
    another host cannot be checked from here, so it is refused too.
    """
    path = Path(folder) / ".kvv.lock"
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                log.warning(
                    "%s: taking over the stale lock of pid %s (started %s), which no longer runs",
                    path,
                    holder.get("pid"),
                    holder.get("started"),
                )
                path.unlink(missing_ok=True)
                continue
            raise OutputsInUseError(
                f"{folder}: in use by the run of pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')} "
                f"({path}); wait for it, or give another --outputs"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True
