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
