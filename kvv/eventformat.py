"""The Belle II-like event format kvv reads and its fast simulation writes.

One entry per event in a flat ROOT TTree, named as basf2's
``VariablesToEventBasedTree`` would name them: event-level scalars, plus
per-event collections stored as a counter branch and jagged arrays sharing it
(``nTracks`` and ``track_px[nTracks]`` ...). A basf2 user who writes these
branches can run kvv on real ntuples. Units: GeV, GeV/c, cm, rad.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

TREE_NAME = "events"
METADATA_KEY = "kvv_metadata"  # TObjString holding the sample's JSON metadata


class Process(enum.IntEnum):
    """Generated physics process of an event (branch ``mcProcess``)."""

    DATA = 0
    CHARGED = 1  # Upsilon(4S) -> B+ B-, generic decays
    MIXED = 2  # Upsilon(4S) -> B0 anti-B0, generic decays
    UUBAR = 3
    DDBAR = 4
    SSBAR = 5
    CCBAR = 6
    TAUPAIR = 7
    KNUNU = 10  # B+ -> K+ nu nubar (other B generic)
    KSTAR0NUNU = 11  # B0 -> K*0 nu nubar
    KSTARPNUNU = 12  # B+ -> K*+ nu nubar
    JPSIK = 13  # B+ -> J/psi(-> mu+ mu-) K+


@dataclass(frozen=True)
class Branch:
    name: str
    dtype: str
    unit: str
    doc: str


@dataclass(frozen=True)
class Collection:
    """A per-event collection: a counter branch and jagged branches ``prefix_field``."""

    name: str
    counter: str
    prefix: str
    fields: tuple[Branch, ...]

    def branch(self, field: str) -> str:
        return f"{self.prefix}_{field}"

    @property
    def branches(self) -> list[str]:
        return [self.branch(f.name) for f in self.fields]


EVENT_BRANCHES: tuple[Branch, ...] = (
    Branch("__experiment__", "int32", "", "experiment number"),
    Branch("__run__", "int32", "", "run number"),
    Branch("__event__", "int64", "", "event number (unique within a run; drives k-folding)"),
    Branch("beamE", "float64", "GeV", "energy of the e+e- system in the lab"),
    Branch("beamPx", "float64", "GeV/c", "x momentum of the e+e- system in the lab"),
    Branch("beamPy", "float64", "GeV/c", "y momentum of the e+e- system in the lab"),
    Branch("beamPz", "float64", "GeV/c", "z momentum of the e+e- system in the lab"),
)

MC_BRANCHES: tuple[Branch, ...] = (
    Branch("mcProcess", "int32", "", "generated process, see kvv.eventformat.Process"),
    Branch("mcq2", "float32", "GeV^2/c^4", "generated dineutrino q^2 of signal, -1 otherwise"),
    Branch("mcB1Mode", "int32", "", "decay-table mode index of the first B (-1: none)"),
    Branch("mcB2Mode", "int32", "", "decay-table mode index of the second B (-1: none)"),
)

TRACKS = Collection(
    name="Tracks",
    counter="nTracks",
    prefix="track",
    fields=(
        Branch("px", "float32", "GeV/c", "momentum x at the point of closest approach, lab"),
        Branch("py", "float32", "GeV/c", "momentum y, lab"),
        Branch("pz", "float32", "GeV/c", "momentum z, lab"),
        Branch("charge", "int32", "e", "charge"),
        Branch("dr", "float32", "cm", "transverse distance of the POCA to the IP"),
        Branch("dz", "float32", "cm", "longitudinal distance of the POCA to the IP"),
        Branch("nPXDHits", "int32", "", "number of PXD hits"),
        Branch("kaonID", "float32", "", "kaon likelihood ratio in [0, 1]"),
        Branch("pionID", "float32", "", "pion likelihood ratio in [0, 1]"),
        Branch("electronID", "float32", "", "electron likelihood ratio in [0, 1]"),
        Branch("muonID", "float32", "", "muon likelihood ratio in [0, 1]"),
        Branch("mcPDG", "int32", "", "PDG code of the matched MC particle (0: none)"),
        Branch("mcMotherPDG", "int32", "", "PDG code of its mother (0: none)"),
    ),
)

PHOTONS = Collection(
    name="Photons",
    counter="nPhotons",
    prefix="photon",
    fields=(
        Branch("E", "float32", "GeV", "ECL cluster energy, lab"),
        Branch("theta", "float32", "rad", "ECL cluster polar angle, lab"),
        Branch("phi", "float32", "rad", "ECL cluster azimuth, lab"),
        Branch("mcPDG", "int32", "", "PDG code of the matched MC particle (0: beam background)"),
        Branch("mcMotherPDG", "int32", "", "PDG code of its mother (0: none)"),
    ),
)

COLLECTIONS: tuple[Collection, ...] = (TRACKS, PHOTONS)


def all_branches(mc: bool = True) -> list[str]:
    """Names of every branch of the format, in writing order."""
    names = [b.name for b in EVENT_BRANCHES]
    if mc:
        names += [b.name for b in MC_BRANCHES]
    for coll in COLLECTIONS:
        names.append(coll.counter)
        names += [coll.branch(f.name) for f in coll.fields if mc or not f.name.startswith("mc")]
    return names


def markdown_table() -> str:
    """The branch list as a Markdown table, for the README."""
    rows = ["| branch | type | unit | meaning |", "|---|---|---|---|"]
    for b in EVENT_BRANCHES + MC_BRANCHES:
        rows.append(f"| `{b.name}` | {b.dtype} | {b.unit} | {b.doc} |")
    for coll in COLLECTIONS:
        rows.append(f"| `{coll.counter}` | int32 | | number of {coll.name.lower()} |")
        for f in coll.fields:
            rows.append(f"| `{coll.branch(f.name)}[{coll.counter}]` | {f.dtype} | {f.unit} | {f.doc} |")
    return "\n".join(rows)
