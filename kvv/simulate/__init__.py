"""kvv.simulate: a Belle II-like event generator and fast detector simulation.

Public API::

    generate_sample(process, n_events, path, *, beams, seed, chunk_size=100_000,
                    data=False, tune=None) -> dict        # one ROOT file + metadata
    cross_section(process, sqrt_s=10.58) -> float          # nb
    generate_events(process, n_events, *, beams, seed, tune=None) -> GeneratedEvents
    four_momentum_balance(events, beams) -> np.ndarray     # generator-level check
    simulate_detector(events, rng) -> Reconstructed
    read_metadata(path) -> dict

Command line: ``python -m kvv.simulate --process charged --events 100000 --seed 1 --out file.root``.
"""

from kvv.simulate.detector import Reconstructed, simulate_detector
from kvv.simulate.generator import (
    DEFAULT_TUNE,
    GeneratedEvents,
    decay_table,
    four_momentum_balance,
    generate_events,
)
from kvv.simulate.samples import cross_section, generate_sample
from kvv.simulate.writer import read_metadata

__all__ = [
    "DEFAULT_TUNE",
    "GeneratedEvents",
    "Reconstructed",
    "cross_section",
    "decay_table",
    "four_momentum_balance",
    "generate_events",
    "generate_sample",
    "read_metadata",
    "simulate_detector",
]
