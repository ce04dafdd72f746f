"""What the stages hand each other on disk: JSON files and the record of the processed samples.

Every JSON file kvv writes goes through :func:`write_json`: strict JSON (NaN and
infinities become ``null``), written to a temporary name and renamed, so a
reader never sees half a file. The process stage writes one :class:`SampleRecord`
per sample into ``summary.json``; the fit stage reads the roles from there
instead of guessing them from the numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

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


def write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as indented strict JSON, atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(plain(obj), indent=2, allow_nan=False))
    tmp.replace(path)
    return path


def read_sample_records(summary_path: Path) -> dict[str, SampleRecord]:
    """The sample records of a process stage's ``summary.json``."""
    summary = json.loads(Path(summary_path).read_text())
    return {name: SampleRecord.model_validate(record) for name, record in summary["samples"].items()}
