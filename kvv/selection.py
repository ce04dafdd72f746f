"""Object cleanup, event preselection and the cutflow of the ITA analysis.

Cleanup acts on the awkward collections of a NanoEvents batch and hands the
survivors to the kernels as flat columns (:mod:`kvv.physics.columns`); preselection
acts on the per-event feature columns. All cut values come from the config.
"""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np

from kvv.config import PhotonCleanup, Preselection, TrackCleanup
from kvv.physics.columns import BeamColumns, PhotonColumns, TrackColumns
from kvv.physics.kinematics import M_PION

PION_MASS = M_PION  # the track energy cut uses the pion hypothesis


def track_mask(tracks: ak.Array, cuts: TrackCleanup) -> ak.Array:
    """Good tracks: pT, CDC acceptance, impact parameters and energy."""
    p2 = tracks.px**2 + tracks.py**2 + tracks.pz**2
    pt = np.sqrt(tracks.px**2 + tracks.py**2)
    theta = np.arctan2(pt, tracks.pz)
    energy = np.sqrt(p2 + PION_MASS**2)
    return (
        (pt > cuts.pt_min)
        & (theta > cuts.theta_min)
        & (theta < cuts.theta_max)
        & (abs(tracks.dr) < cuts.dr_max)
        & (abs(tracks.dz) < cuts.dz_max)
        & (energy < cuts.energy_max)
    )


def photon_mask(photons: ak.Array, cuts: PhotonCleanup) -> ak.Array:
    """Good photons: energy window and CDC acceptance."""
    return (
        (photons.E > cuts.energy_min) & (photons.E < cuts.energy_max) & (photons.theta > cuts.theta_min) & (photons.theta < cuts.theta_max)
    )


def _offsets(counts: ak.Array) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(ak.to_numpy(counts), out=offsets[1:])
    return offsets


def _flat(values: ak.Array, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(ak.to_numpy(ak.flatten(values)), dtype=dtype)


def track_columns(tracks: ak.Array) -> TrackColumns:
    """Flatten a jagged track collection into kernel input."""
    return TrackColumns(
        offsets=_offsets(ak.num(tracks)),
        px=_flat(tracks.px, np.float64),
        py=_flat(tracks.py, np.float64),
        pz=_flat(tracks.pz, np.float64),
        charge=_flat(tracks.charge, np.int32),
        dr=_flat(tracks.dr, np.float64),
        dz=_flat(tracks.dz, np.float64),
        n_pxd_hits=_flat(tracks.nPXDHits, np.int32),
        kaon_id=_flat(tracks.kaonID, np.float64),
        pion_id=_flat(tracks.pionID, np.float64),
    )


def photon_columns(photons: ak.Array) -> PhotonColumns:
    """Flatten a jagged photon collection into kernel input."""
    return PhotonColumns(
        offsets=_offsets(ak.num(photons)),
        energy=_flat(photons.E, np.float64),
        theta=_flat(photons.theta, np.float64),
        phi=_flat(photons.phi, np.float64),
    )


def beam_columns(events: ak.Array) -> BeamColumns:
    """Per-event beam four-momentum (basf2 beamE, beamPx, beamPy, beamPz)."""
    return BeamColumns(
        energy=np.asarray(ak.to_numpy(events.beamE), dtype=np.float64),
        px=np.asarray(ak.to_numpy(events.beamPx), dtype=np.float64),
        py=np.asarray(ak.to_numpy(events.beamPy), dtype=np.float64),
        pz=np.asarray(ak.to_numpy(events.beamPz), dtype=np.float64),
    )


#: the columns the preselection reads, of every event; the others are read only for the events it keeps
PRESELECTION_COLUMNS = ("has_kaon", "n_tracks", "theta_miss", "e_visible_cms")


def preselection_steps(columns: Mapping[str, np.ndarray], cuts: Preselection) -> dict[str, np.ndarray]:
    """Cumulative event masks, one per preselection step, in cutflow order (on :data:`PRESELECTION_COLUMNS`)."""
    steps = {
        "kaon candidate": np.asarray(columns["has_kaon"], dtype=bool),
        f"{cuts.n_tracks_min} <= nTracks <= {cuts.n_tracks_max}": (columns["n_tracks"] >= cuts.n_tracks_min)
        & (columns["n_tracks"] <= cuts.n_tracks_max),
        f"{cuts.theta_miss_min} < theta_miss < {cuts.theta_miss_max}": (columns["theta_miss"] > cuts.theta_miss_min)
        & (columns["theta_miss"] < cuts.theta_miss_max),
        f"E_vis(CMS) > {cuts.e_visible_cms_min} GeV": columns["e_visible_cms"] > cuts.e_visible_cms_min,
    }
    cumulative: dict[str, np.ndarray] = {}
    mask = np.ones(len(columns["has_kaon"]), dtype=bool)
    for name, step in steps.items():
        mask = mask & step
        cumulative[name] = mask
    return cumulative


def interval_mask(columns: Mapping[str, np.ndarray], cuts: Mapping[str, tuple[float | None, float | None]]) -> np.ndarray:
    """Events with lo <= column < hi for every (column, [lo, hi)) in ``cuts``."""
    n = len(columns[next(iter(columns))])  # a Mapping or a DataFrame
    mask = np.ones(n, dtype=bool)
    for name, (lo, hi) in cuts.items():
        if name not in columns:
            raise KeyError(f"cut on unknown column {name!r}")
        values = np.asarray(columns[name])
        if lo is not None:
            mask &= values >= lo
        if hi is not None:
            mask &= values < hi
    return mask


def cutflow_row(mask: np.ndarray) -> int:
    """The number of events passing ``mask``.

    Cutflows are plain ``{step: count}`` dicts, so coffea merges chunks and
    executors by adding integers, exactly in any order. Before the templates'
    weights every event of a sample weighs the same, so the weighted cutflow is
    the count times the sample's weight (:func:`kvv.report.cutflow_json`).
    """
    return int(np.count_nonzero(mask))
