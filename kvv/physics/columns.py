"""Flat (offsets + content) views of an event batch, the input of the numba kernels.

The kernels never see awkward or coffea objects: a collection is a set of
contiguous numpy arrays plus an ``offsets`` array of length n_events + 1, so
that objects of event i are ``content[offsets[i]:offsets[i + 1]]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

import numpy as np


@dataclass(frozen=True)
class _Collection:
    """Objects of event i are ``content[offsets[i]:offsets[i + 1]]``."""

    offsets: np.ndarray  # int64, n_events + 1

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class TrackColumns(_Collection):
    """Cleaned tracks of a batch, lab frame, in GeV/c and cm."""

    px: np.ndarray  # float64
    py: np.ndarray
    pz: np.ndarray
    charge: np.ndarray  # int32
    dr: np.ndarray  # float64, cm
    dz: np.ndarray  # float64, cm
    n_pxd_hits: np.ndarray  # int32
    kaon_id: np.ndarray  # float64
    pion_id: np.ndarray  # float64


@dataclass(frozen=True)
class PhotonColumns(_Collection):
    """Cleaned photons (ECL clusters) of a batch, lab frame, GeV and rad."""

    energy: np.ndarray  # float64
    theta: np.ndarray
    phi: np.ndarray


@dataclass(frozen=True)
class BeamColumns:
    """Per-event lab four-momentum of the e+e- system (basf2 beamE, beamPx, ...)."""

    energy: np.ndarray  # float64, n_events
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray

    @property
    def sqrt_s(self) -> np.ndarray:
        """Per-event sqrt(s), the invariant mass of the e+e- system."""
        return np.sqrt(self.energy**2 - self.px**2 - self.py**2 - self.pz**2)


#: either object collection: :func:`subset` returns the kind it is given
Objects = TypeVar("Objects", TrackColumns, PhotonColumns)


def subset(columns: Objects, keep: np.ndarray) -> Objects:
    """The objects of flat columns where ``keep`` is true, same dataclass, new offsets."""
    n_events = len(columns.offsets) - 1
    event = np.repeat(np.arange(n_events), np.diff(columns.offsets))
    offsets = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(np.bincount(event[keep], minlength=n_events), out=offsets[1:])
    values = {f.name: getattr(columns, f.name)[keep] for f in dataclasses.fields(columns) if f.name != "offsets"}
    return type(columns)(offsets=offsets, **values)


def object_mask(columns: Objects, events: np.ndarray) -> np.ndarray:
    """Per object: whether the event mask ``events`` marks its event."""
    return np.repeat(events, np.diff(columns.offsets))


def select_events(columns: Objects, events: np.ndarray) -> Objects:
    """The events the boolean mask ``events`` marks, with their objects, same dataclass."""
    keep = np.flatnonzero(object_mask(columns, events))  # one index for every field: a mask is searched anew each time
    offsets = np.zeros(int(np.count_nonzero(events)) + 1, dtype=np.int64)
    np.cumsum(np.diff(columns.offsets)[events], out=offsets[1:])
    values = {f.name: getattr(columns, f.name)[keep] for f in dataclasses.fields(columns) if f.name != "offsets"}
    return type(columns)(offsets=offsets, **values)


def changed_events(nominal: Objects, varied: Objects) -> np.ndarray:
    """Per event: whether its objects differ between two versions of a collection, in number or in any value."""
    counts = np.diff(nominal.offsets)
    changed = counts != np.diff(varied.offsets)
    fields = [f.name for f in dataclasses.fields(nominal) if f.name != "offsets"]
    fields = [name for name in fields if getattr(nominal, name) is not getattr(varied, name)]  # a variation shares what it keeps
    if not fields:
        return changed
    if not changed.any():  # the same objects in every event: compare them in place
        differs = np.zeros(len(getattr(nominal, fields[0])), dtype=bool)
        for name in fields:
            differs |= getattr(nominal, name) != getattr(varied, name)
        running = np.zeros(len(differs) + 1, dtype=np.int64)
        np.cumsum(differs, out=running[1:])
        return np.diff(running[nominal.offsets]) > 0
    # the objects of the events with as many objects in both, side by side
    same = np.where(changed, 0, counts)
    event = np.repeat(np.arange(len(counts)), same)
    k = np.arange(len(event)) - np.repeat(np.cumsum(same) - same, same)
    at_nominal, at_varied = nominal.offsets[event] + k, varied.offsets[event] + k
    differs = np.zeros(len(event), dtype=bool)
    for name in fields:
        differs |= getattr(nominal, name)[at_nominal] != getattr(varied, name)[at_varied]
    changed[event[differs]] = True
    return changed
