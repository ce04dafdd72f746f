"""The ``input`` section of an analysis YAML: the file layout of the samples and the names in them.

Three layouts (``format``, a default for all samples that each sample may override):

* ``kvv``: kvv's own one-tree layout (:mod:`kvv.eventformat`), what its fast simulation writes;
* ``basf2_eventbased``: what basf2's ``VariablesToEventBasedTree`` writes, one tree per
  particle list with ``__ncandidates__`` and arrays ``name[__ncandidates__]``; the
  track tree and the photon tree of one file are joined entry by entry;
* ``basf2_ntuple``: what ``VariablesToNtuple`` (``modularAnalysis.variablesToNtuple``)
  writes, one row per signal-kaon candidate with the analysis variables basf2 computed;
  kvv keeps the best candidate of each event and maps its variables onto kvv's columns.

Names are basf2 variables (or aliases) as written in a steering file, e.g.
``roeE(cleanMask)``; kvv applies basf2's ``makeROOTCompatible`` to find the branch. The
defaults fit a plain ``pi+:all`` / ``gamma:all`` steering without aliases.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from kvv.config.base import Strict

Format = Literal["kvv", "basf2_eventbased", "basf2_ntuple"]
#: the event-level MC truth the systematics use (kvv's names)
TRUTH_COLUMNS = ("mcB1Mode", "mcB2Mode", "mcq2")


def _track_variables() -> dict[str, str]:
    return {
        "px": "px",
        "py": "py",
        "pz": "pz",
        "charge": "charge",
        "dr": "dr",
        "dz": "dz",
        "nPXDHits": "nPXDHits",
        "kaonID": "kaonID",
        "pionID": "pionID",
        "electronID": "electronID",
        "muonID": "muonID",
        "mcPDG": "mcPDG",
        "mcMotherPDG": "genMotherPDG",
    }


def _photon_variables() -> dict[str, str]:
    return {"E": "clusterE", "theta": "clusterTheta", "phi": "clusterPhi", "mcPDG": "mcPDG", "mcMotherPDG": "genMotherPDG"}


def _event_variables() -> dict[str, str]:
    return {"beamE": "beamE", "beamPx": "beamPx", "beamPy": "beamPy", "beamPz": "beamPz"}


class EventBasedInput(Strict):
    """``basf2_eventbased``: which tree is which particle list, and the basf2 variable behind each kvv field."""

    tracks_tree: str = "tracks"  # treeName of the VariablesToEventBasedTree of the charged list (e.g. pi+:all)
    photons_tree: str = "photons"  # treeName of the one of the photon list (e.g. gamma:all)
    tracks: dict[str, str] = Field(default_factory=_track_variables)  # kvv track field -> candidate variable
    photons: dict[str, str] = Field(default_factory=_photon_variables)  # kvv photon field -> candidate variable
    event: dict[str, str] = Field(default_factory=_event_variables)  # kvv event field -> event variable of the track tree


def _with_pxd_hit() -> dict[str, tuple[float | None, float | None]]:
    return {"nPXDHits": (1.0, None)}


class NtupleInput(Strict):
    """``basf2_ntuple``: one row per kaon candidate; the best one per event is kept."""

    tree: str = "variables"  # modularAnalysis.variablesToNtuple's default treename
    rank: str = "pt"  # the candidate variable that ranks the candidates of an event
    rank_order: Literal["highest", "lowest"] = "highest"
    # candidates eligible for the rank, [lo, hi) intervals on candidate variables
    eligible: dict[str, tuple[float | None, float | None]] = Field(default_factory=_with_pxd_hit)
    # kvv column (features, preselection and region columns, kaon_pt ...) -> basf2 variable
    columns: dict[str, str] = Field(default_factory=dict)


class InputSettings(Strict):
    """The file layout of the samples: kvv's own, basf2's per-list trees (``basf2_eventbased``) or a candidate ntuple (``basf2_ntuple``)."""

    format: Format = "kvv"  # the default of every sample; a sample's own ``format`` wins
    eventbased: EventBasedInput = EventBasedInput()
    ntuple: NtupleInput = NtupleInput()
    # MC truth that systematics need, as an event variable per kvv name (mcB1Mode, mcB2Mode, mcq2);
    # a sample without them gets no branching-fraction or form-factor variation, and the run summary says so
    truth: dict[str, str] = Field(default_factory=dict)

    @field_validator("truth")
    @classmethod
    def _known_truth(cls, truth: dict[str, str]) -> dict[str, str]:
        unknown = set(truth) - set(TRUTH_COLUMNS)
        if unknown:
            raise ValueError(f"unknown truth columns {sorted(unknown)}; kvv uses {list(TRUTH_COLUMNS)}")
        return truth
