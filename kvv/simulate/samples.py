"""Sample production: cross-sections, the files an analysis lacks, and generator + detector + writer per chunk."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from kvv.config import AnalysisConfig, GeneratorFilter, Sample
from kvv.eventformat import PHOTONS, TRACKS, Process
from kvv.io.samplefiles import GENERATOR_VERSION, generated_file_paths
from kvv.physics.beams import SQRT_S_OFF_RESONANCE, SQRT_S_ON_RESONANCE, Beams
from kvv.simulate.decaytable import load_decay_table
from kvv.simulate.detector import simulate_detector
from kvv.simulate.filter import charged_in_acceptance, select_events
from kvv.simulate.generator import DEFAULT_TUNE, PROCESS_SPECS, GeneratedEvents, generate_events
from kvv.simulate.writer import SampleWriter, chunk_arrays

log = logging.getLogger(__name__)

EXPERIMENT = 0  # Belle II MC convention: experiment 0
BBBAR_NB = 1.05  # e+e- -> Upsilon(4S) -> B Bbar at sqrt(s) = 10.58 GeV (analysis facts)
CHARGED_FRACTION = 0.514  # Upsilon(4S) -> B+ B- (PDG); B0 B0bar gets the rest
# e+e- -> f fbar at 10.58 GeV (analysis facts); scaled as 1/s to other energies
CONTINUUM_NB = {
    Process.UUBAR: 1.61,
    Process.DDBAR: 0.40,
    Process.SSBAR: 0.38,
    Process.CCBAR: 1.30,
    Process.TAUPAIR: 0.92,
}
SIGNAL_PROCESSES = (Process.KNUNU, Process.KSTAR0NUNU, Process.KSTARPNUNU, Process.JPSIK)


def cross_section(process: Process, sqrt_s: float = SQRT_S_ON_RESONANCE) -> float:
    """Visible cross-section of a generated sample in nb.

    Continuum: the 10.58 GeV value times (10.58 / sqrt_s)^2. B Bbar: 1.05 nb x the
    charged/neutral fraction on the resonance, 0 below it (off-resonance). Signal
    samples: sigma(B Bbar of that charge) x 2 (either B may decay to signal) x the
    branching fraction of the forced decay chain (e.g. B(B+ -> J/psi K+) x
    B(J/psi -> mu+ mu-), and for K* modes the fraction of K* decays into the
    generated final states).
    """
    process = Process(process)
    if process in CONTINUUM_NB:
        return CONTINUUM_NB[process] * (SQRT_S_ON_RESONANCE / sqrt_s) ** 2
    if sqrt_s < SQRT_S_ON_RESONANCE - 0.02:  # the Upsilon(4S) is 20 MeV wide
        return 0.0
    charged = process in (Process.CHARGED, Process.KNUNU, Process.KSTARPNUNU, Process.JPSIK)
    sigma = BBBAR_NB * (CHARGED_FRACTION if charged else 1.0 - CHARGED_FRACTION)
    if process in SIGNAL_PROCESSES:
        table = load_decay_table()
        spec = PROCESS_SPECS[process]
        if spec.forced is None:
            raise ValueError(f"signal process {process.name} has no forced decay chain")
        sigma *= 2.0 * table.forced_fraction(spec.forced, "B+" if charged else "B0")
    return sigma


def _seeds(seed: int, chunk: int) -> tuple[int, np.random.Generator]:
    """Independent generator and detector seeds per (sample seed, chunk)."""
    gen_seq, det_seq = np.random.SeedSequence([seed, chunk]).spawn(2)
    return int(gen_seq.generate_state(1)[0]), np.random.default_rng(det_seq)


def _event_branches(events: GeneratedEvents, process: Process, beams: Beams, seed: int, numbers: np.ndarray) -> dict:
    n = events.n_events
    total = beams.total
    return {
        "__experiment__": np.full(n, EXPERIMENT),
        # the run number carries the sample seed, the event number counts the generated events of the
        # sample (a filtered sample's numbers have gaps)
        "__run__": np.full(n, seed % (1 << 31)),
        "__event__": numbers,
        "beamE": np.full(n, total[0]),
        "beamPx": np.full(n, total[1]),
        "beamPy": np.full(n, total[2]),
        "beamPz": np.full(n, total[3]),
        "mcProcess": np.full(n, int(process)),
        "mcq2": events.q2,
        "mcB1Mode": events.b_modes[:, 0],
        "mcB2Mode": events.b_modes[:, 1],
    }


def generate_sample(
    process: Process,
    n_events: int,
    path: str | os.PathLike,
    *,
    beams: Beams,
    seed: int,
    chunk_size: int = 100_000,
    data: bool = False,
    tune: dict | None = None,
    generator_filter: GeneratorFilter | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Generate, simulate and write one sample file; returns its metadata.

    ``n_events`` are generated; with an active ``generator_filter`` only those
    passing it are simulated and written (``n_written`` in the metadata), while
    ``n_events`` stays the sample's normalisation. ``data=True`` omits the
    MC-truth branches (pseudo-data). ``progress`` is called with the number of
    events generated after each chunk. The result depends only on the
    arguments, so calls can be shipped to Dask workers.
    """
    process = Process(process)
    event_filter = generator_filter if generator_filter is not None and generator_filter.active else None
    sigma = cross_section(process, beams.sqrt_s)
    metadata = {
        "process": process.name,
        "process_code": int(process),
        "data": data,
        "cross_section_nb": sigma,
        "luminosity_fb": n_events / sigma / 1e6 if sigma > 0 else None,
        "n_events": n_events,
        "seed": seed,
        "sqrt_s": beams.sqrt_s,
        "beam_energy_spread_gev": {"her": beams.her_energy_spread, "ler": beams.ler_energy_spread},
        "generator_version": GENERATOR_VERSION,
        "tune": {**DEFAULT_TUNE, **(tune or {})},
        "generator_filter": event_filter.model_dump() if event_filter is not None else None,
    }
    written = 0
    with SampleWriter(path, mc=not data, seed=seed) as writer:
        for chunk, first in enumerate(range(0, n_events, chunk_size)):
            n = min(chunk_size, n_events - first)
            gen_seed, det_rng = _seeds(seed, chunk)
            events = generate_events(process, n, beams=beams, seed=gen_seed, tune=tune)
            numbers = first + np.arange(n, dtype=np.int64)
            if event_filter is not None:
                keep = charged_in_acceptance(events, event_filter.pt_min) >= event_filter.min_charged
                events, numbers = select_events(events, keep), numbers[keep]
            if events.n_events:
                reco = simulate_detector(events, det_rng)
                arrays = chunk_arrays(
                    _event_branches(events, process, beams, seed, numbers),
                    {TRACKS.prefix: (reco.n_tracks, reco.tracks), PHOTONS.prefix: (reco.n_photons, reco.photons)},
                    mc=not data,
                )
                writer.extend(arrays)
                written += events.n_events
            if progress is not None:
                progress(first + n)
        metadata["n_written"] = written
        metadata["filter_efficiency"] = written / n_events if n_events else None
        writer.write_metadata(metadata)
    return metadata


def _beams(sample: Sample) -> Beams:
    return Beams(sqrt_s=SQRT_S_ON_RESONANCE if sample.resonance == "on" else SQRT_S_OFF_RESONANCE)


def missing_generation_tasks(cfg: AnalysisConfig, samples: Iterable[Sample]) -> list[dict]:
    """Keyword arguments of ``kvv.simulate.generate_sample`` for every file not on disk."""
    tasks = []
    for sample in samples:
        if sample.files:
            continue
        for path, n, seed in generated_file_paths(cfg, sample):
            if path.exists():
                continue
            tasks.append(
                dict(
                    process=Process[sample.process.upper()],
                    n_events=n,
                    path=path,
                    beams=_beams(sample),
                    seed=seed,
                    chunk_size=cfg.simulation.chunk_size,
                    data=sample.is_data,
                    tune=dict(sample.tune) or None,
                    generator_filter=sample.generator_filter,
                )
            )
    return tasks


def generate_missing(cfg: AnalysisConfig, samples: Iterable[Sample], submit: Callable[[list[dict]], list]) -> list:
    """Generate every missing sample file; ``submit`` runs the task list (``generate_sample`` keywords) on an executor."""
    tasks = missing_generation_tasks(cfg, samples)
    if not tasks:
        return []
    Path(cfg.simulation.directory).mkdir(parents=True, exist_ok=True)
    log.info("generating %d sample file(s), %d events", len(tasks), sum(t["n_events"] for t in tasks))
    return submit(tasks)
