"""Flat (offsets + content) views of an event batch, the input of the numba kernels.

The kernels never see awkward or coffea objects: a collection is a set of
contiguous numpy arrays plus an ``offsets`` array of length n_events + 1, so
that objects of event i are ``content[offsets[i]:offsets[i + 1]]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrackColumns:
    """Cleaned tracks of a batch, lab frame, in GeV/c and cm."""

    offsets: np.ndarray  # int64, n_events + 1
    px: np.ndarray  # float64
    py: np.ndarray
    pz: np.ndarray
    charge: np.ndarray  # int32
    dr: np.ndarray  # float64, cm
    dz: np.ndarray  # float64, cm
    n_pxd_hits: np.ndarray  # int32
    kaon_id: np.ndarray  # float64
    pion_id: np.ndarray  # float64

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class PhotonColumns:
    """Cleaned photons (ECL clusters) of a batch, lab frame, GeV and rad."""

    offsets: np.ndarray  # int64, n_events + 1
    energy: np.ndarray  # float64
    theta: np.ndarray
    phi: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class BeamColumns:
    """Per-event lab four-momentum of the e+e- system (basf2 beamE, beamPx, ...)."""

    energy: np.ndarray  # float64, n_events
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
