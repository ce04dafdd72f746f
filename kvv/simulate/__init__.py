"""kvv.simulate: a Belle II-like event generator and fast detector simulation.

Public API::

    generate_sample(process, n_events, path, *, beams, seed, chunk_size=100_000,
                    data=False, tune=None, generator_filter=None) -> dict  # one ROOT file + metadata
    cross_section(process, sqrt_s=10.58) -> float          # nb
    generate_events(process, n_events, *, beams, seed, tune=None) -> GeneratedEvents
    four_momentum_balance(events) -> np.ndarray            # generator-level check
    simulate_detector(events, rng) -> Reconstructed
    decay_table() -> DecayTable                            # the loaded decays.yaml
    read_metadata(path) -> dict
    generate_missing(cfg, samples, submit) -> list          # every file an analysis lacks

Measured (see the docstrings of generator.py / detector.py for the models):
charged-track multiplicity per B Bbar event 10.95 (generated, B+B- 10.70, B0B0bar 11.18),
uds 7.5-7.7, c cbar 10.3, tau pair 2.6.

Command line: ``python -m kvv.simulate --process charged --events 100000 --seed 1 --out file.root``.
"""

from kvv.simulate.decaytable import DecayTable
from kvv.simulate.decaytable import load_decay_table as decay_table
from kvv.simulate.detector import Reconstructed, simulate_detector
from kvv.simulate.generator import DEFAULT_TUNE, GeneratedEvents, four_momentum_balance, generate_events
from kvv.simulate.samples import cross_section, generate_missing, generate_sample, missing_generation_tasks
from kvv.simulate.writer import read_metadata

__all__ = [
    "DEFAULT_TUNE",
    "DecayTable",
    "GeneratedEvents",
    "Reconstructed",
    "cross_section",
    "decay_table",
    "four_momentum_balance",
    "generate_events",
    "generate_missing",
    "generate_sample",
    "missing_generation_tasks",
    "read_metadata",
    "simulate_detector",
]
