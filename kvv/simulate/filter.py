"""Truth-level event filter: decide after generation, before detector simulation and writing.

Rare final states need many generated events; most of them fail the analysis's
preselection on quantities the generator already knows. Dropping those before
the detector simulation and the ROOT writing saves their cost, while the
normalisation stays exact: a sample's metadata records the events generated
(``n_events``), which weight it, and those written (``n_written``).
"""

from __future__ import annotations

import numpy as np

from kvv.simulate.detector import CDC_THETA, SPECIES
from kvv.simulate.generator import GeneratedEvents


def charged_in_acceptance(events: GeneratedEvents, pt_min: float) -> np.ndarray:
    """Per event, the stable charged particles inside the CDC polar acceptance with pT > ``pt_min`` (GeV/c)."""
    _, px, py, pz = events.p4.T
    pt = np.hypot(px, py)
    theta = np.arctan2(pt, pz)
    counted = np.isin(np.abs(events.pdg), SPECIES) & (theta > CDC_THETA[0]) & (theta < CDC_THETA[1]) & (pt > pt_min)
    running = np.concatenate([[0], np.cumsum(counted)])
    return running[events.offsets[1:]] - running[events.offsets[:-1]]


def select_events(events: GeneratedEvents, keep: np.ndarray) -> GeneratedEvents:
    """The events ``keep`` marks, with their particles."""
    counts = np.diff(events.offsets)
    particle_keep = np.repeat(keep, counts)
    offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(events.offsets.dtype)
    return GeneratedEvents(
        offsets=offsets,
        pdg=events.pdg[particle_keep],
        mother_pdg=events.mother_pdg[particle_keep],
        p4=events.p4[particle_keep],
        vertex=events.vertex[particle_keep],
        b_modes=events.b_modes[keep],
        b_p4=events.b_p4[keep],
        q2=events.q2[keep],
        initial_p4=events.initial_p4[keep],
    )
