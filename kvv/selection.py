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
from kvv.io import inputs
from kvv.physics.columns import BeamColumns, PhotonColumns, TrackColumns
from kvv.physics.kinematics import M_PION

PION_MASS = M_PION  # the track energy cut uses the pion hypothesis


def track_keep(tracks: ak.Array, cuts: TrackCleanup) -> tuple[np.ndarray, np.ndarray]:
    """Good tracks: pT, CDC acceptance, impact parameters and energy; the event offsets and a flat keep mask.

    Computed in the stored precision, on the flat values: awkward's broadcasting costs a fixed time per operation.
    """
    px, py, pz, dr, dz = (inputs.flat_values(tracks[name], dtype=None) for name in ("px", "py", "pz", "dr", "dz"))
    pt = np.sqrt(px**2 + py**2)
    theta = np.arctan2(pt, pz)
    energy = np.sqrt(px**2 + py**2 + pz**2 + PION_MASS**2)
    keep = (
        (pt > cuts.pt_min)
        & (theta > cuts.theta_min)
        & (theta < cuts.theta_max)
        & (np.abs(dr) < cuts.dr_max)
        & (np.abs(dz) < cuts.dz_max)
        & (energy < cuts.energy_max)
    )
    return inputs.event_offsets(tracks["px"]), keep


def photon_keep(photons: ak.Array, cuts: PhotonCleanup) -> tuple[np.ndarray, np.ndarray]:
    """Good photons: energy window and CDC acceptance; the event offsets and a flat keep mask."""
    energy, theta = inputs.flat_values(photons["E"], dtype=None), inputs.flat_values(photons["theta"], dtype=None)
    keep = (energy > cuts.energy_min) & (energy < cuts.energy_max) & (theta > cuts.theta_min) & (theta < cuts.theta_max)
    return inputs.event_offsets(photons["E"]), keep


def track_mask(tracks: ak.Array, cuts: TrackCleanup) -> ak.Array:
    """:func:`track_keep` as a jagged mask like ``tracks``."""
    offsets, keep = track_keep(tracks, cuts)
    return ak.unflatten(keep, np.diff(offsets))


def photon_mask(photons: ak.Array, cuts: PhotonCleanup) -> ak.Array:
    """:func:`photon_keep` as a jagged mask like ``photons``."""
    offsets, keep = photon_keep(photons, cuts)
    return ak.unflatten(keep, np.diff(offsets))


def _kept(values: ak.Array, keep: np.ndarray | None, dtype: type) -> np.ndarray:
    content = inputs.flat_values(values, dtype)
    return content if keep is None else content[keep]


def track_columns(tracks: ak.Array, keep: np.ndarray | None = None) -> TrackColumns:
    """A jagged track collection (its tracks that the flat mask ``keep`` marks) as kernel input."""
    offsets = inputs.event_offsets(tracks["px"])
    return TrackColumns(
        offsets=offsets if keep is None else inputs.kept_offsets(offsets, keep),
        px=_kept(tracks["px"], keep, np.float64),
        py=_kept(tracks["py"], keep, np.float64),
        pz=_kept(tracks["pz"], keep, np.float64),
        charge=_kept(tracks["charge"], keep, np.int32),
        dr=_kept(tracks["dr"], keep, np.float64),
        dz=_kept(tracks["dz"], keep, np.float64),
        n_pxd_hits=_kept(tracks["nPXDHits"], keep, np.int32),
        kaon_id=_kept(tracks["kaonID"], keep, np.float64),
        pion_id=_kept(tracks["pionID"], keep, np.float64),
    )


def photon_columns(photons: ak.Array, keep: np.ndarray | None = None) -> PhotonColumns:
    """A jagged photon collection (its photons that the flat mask ``keep`` marks) as kernel input."""
    offsets = inputs.event_offsets(photons["E"])
    return PhotonColumns(
        offsets=offsets if keep is None else inputs.kept_offsets(offsets, keep),
        energy=_kept(photons["E"], keep, np.float64),
        theta=_kept(photons["theta"], keep, np.float64),
        phi=_kept(photons["phi"], keep, np.float64),
    )


def beam_columns(events: ak.Array) -> BeamColumns:
    """Per-event beam four-momentum (basf2 beamE, beamPx, beamPy, beamPz)."""
    return BeamColumns(
        energy=np.asarray(ak.to_numpy(events["beamE"]), dtype=np.float64),
        px=np.asarray(ak.to_numpy(events["beamPx"]), dtype=np.float64),
        py=np.asarray(ak.to_numpy(events["beamPy"]), dtype=np.float64),
        pz=np.asarray(ak.to_numpy(events["beamPz"]), dtype=np.float64),
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
