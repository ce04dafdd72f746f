"""Reading what basf2 writes: branch names, the per-list trees of ``VariablesToEventBasedTree``
and the candidate rows of ``VariablesToNtuple``, as kvv's event view.

basf2 conventions (public basf2 sources: ``framework/utilities/src/MakeROOTCompatible.cc``,
``analysis/modules/VariablesToEventBasedTree``, ``analysis/modules/VariablesToNtuple``):

* a branch is named ``makeROOTCompatible(variable)``: the characters of :data:`ROOT_COMPATIBLE`
  become codes such as ``(`` -> ``__bo``, every other character outside ``[A-Za-z0-9_]``
  is dropped; an alias replaces the whole name;
* ``VariablesToEventBasedTree`` writes one entry per event, also when the list is empty:
  ``__experiment__``, ``__run__``, ``__event__``, ``__production__`` (int), ``__ncandidates__``,
  ``__weight__``, event variables as doubles and candidate variables as ``name[__ncandidates__]``;
* ``VariablesToNtuple`` writes one row per candidate (none for an event with an empty list):
  ``__experiment__``, ``__run__``, ``__event__`` (unsigned 32 bit), ``__production__``,
  ``__candidate__``, ``__ncandidates__``, ``__weight__``, then the variables;
* ``mcPDG`` is NaN without an MC match, which kvv reads as 0, its "no match".

Values are cast to the types of :mod:`kvv.eventformat`, so that an event reads the same
whichever layout holds it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

import awkward as ak
import numpy as np
import uproot

from kvv import eventformat
from kvv.config.inputs import EventBasedInput, NtupleInput

#: makeROOTCompatible's substitutions (one character each; every code is '__' and lower-case letters)
ROOT_COMPATIBLE = {
    " ": "__sp", ",": "__cm", ":": "__cl", "=": "__eq", "<": "__st", ">": "__gt", ".": "__pt", "+": "__pl",
    "-": "__mi", "(": "__bo", ")": "__bc", "{": "__co", "}": "__cc", "[": "__so", "]": "__sc", "`": "__to",
    "´": "__tc", "^": "__ha", "°": "__ci", "$": "__do", "§": "__pa", "%": "__pr", "!": "__em", "?": "__qm",
    ";": "__sm", "#": "__hs", "*": "__mu", "/": "__sl", "\\": "__bl", "'": "__sq", '"': "__dq", "~": "__ti",
    "|": "__pi", "&": "__am", "@": "__at",
}  # fmt: skip

EVENT_ID = ("__experiment__", "__run__", "__event__")
NCANDIDATES = "__ncandidates__"
CANDIDATE = "__candidate__"
_DTYPES = {b.name: np.dtype(b.dtype) for b in eventformat.EVENT_BRANCHES + eventformat.MC_BRANCHES}
_FIELD_DTYPES = {coll.name: {f.name: np.dtype(f.dtype) for f in coll.fields} for coll in eventformat.COLLECTIONS}


class Basf2InputError(RuntimeError):
    """A basf2 file that does not hold what the config says; one line naming file, tree and branch."""


def make_root_compatible(name: str) -> str:
    """The branch name basf2 gives a variable (``MakeROOTCompatible::makeROOTCompatible``)."""
    escaped = "".join(ROOT_COMPATIBLE.get(c, c) for c in name)
    return re.sub(r"[^a-zA-Z0-9_]", "", escaped)


def _closest(name: str, available: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(available), n=3, cutoff=0.5)
    return f" (closest: {', '.join(close)})" if close else ""


def require_tree(file: uproot.ReadOnlyDirectory, path: str, tree: str) -> uproot.TTree:
    """The tree, or a one-line error listing the trees the file has."""
    names = sorted({key.split(";")[0] for key, cls in file.classnames().items() if cls == "TTree"})
    if tree not in names:
        raise Basf2InputError(f"{path}: no tree {tree!r} (the file has: {', '.join(names) or 'no trees'})")
    return file[tree]


def require_branches(path: str, tree: uproot.TTree, variables: Mapping[str, str]) -> None:
    """Every mapped basf2 variable has its branch, or a one-line error naming the first one missing."""
    keys = set(tree.keys())
    for field, variable in variables.items():
        branch = make_root_compatible(variable)
        if branch not in keys:
            raise Basf2InputError(
                f"{path}: tree {tree.name!r} has no branch {branch!r} (the basf2 variable {variable!r} for {field}){_closest(branch, keys)}"
            )


def check_eventbased_file(path: str, settings: EventBasedInput, truth: Mapping[str, str], mc: bool) -> int:
    """Trees, branches and the entry-by-entry agreement of the two lists' event numbers; returns the entries."""
    with uproot.open(path) as f:
        tracks = require_tree(f, path, settings.tracks_tree)
        photons = require_tree(f, path, settings.photons_tree)
        require_branches(path, tracks, {k: v for k, v in settings.tracks.items() if mc or not k.startswith("mc")})
        require_branches(path, tracks, {**settings.event, **(truth if mc else {})})
        require_branches(path, photons, {k: v for k, v in settings.photons.items() if mc or not k.startswith("mc")})
        for tree in (tracks, photons):
            require_branches(path, tree, {name: name for name in (*EVENT_ID, NCANDIDATES)})
        if tracks.num_entries != photons.num_entries:
            raise Basf2InputError(
                f"{path}: trees {tracks.name!r} and {photons.name!r} have {tracks.num_entries} and {photons.num_entries} entries; "
                "they must come from one basf2 job"
            )
        a = tracks.arrays(list(EVENT_ID), library="np")
        b = photons.arrays(list(EVENT_ID), library="np")
        for name in EVENT_ID:
            differ = np.flatnonzero(a[name] != b[name])
            if differ.size:
                raise Basf2InputError(
                    f"{path}: trees {tracks.name!r} and {photons.name!r} disagree in {name} from entry {differ[0]} on "
                    f"({a[name][differ[0]]} vs {b[name][differ[0]]}; {differ.size} entries differ)"
                )
        return int(tracks.num_entries)


def check_ntuple_file(path: str, settings: NtupleInput, truth: Mapping[str, str], mc: bool) -> int:
    """Tree, the candidate bookkeeping and every mapped variable; returns the rows."""
    with uproot.open(path) as f:
        tree = require_tree(f, path, settings.tree)
        keys = set(tree.keys())
        if CANDIDATE not in keys:
            raise Basf2InputError(
                f"{path}: tree {settings.tree!r} has no branch {CANDIDATE!r}: not a candidate ntuple of VariablesToNtuple with a particle list"
            )
        require_branches(path, tree, {name: name for name in (*EVENT_ID, NCANDIDATES)})
        require_branches(path, tree, {"rank": settings.rank, **{f"eligible {k}": k for k in settings.eligible}})
        require_branches(path, tree, {**settings.columns, **(truth if mc else {})})
        return int(tree.num_entries)


def _as_kvv(values: ak.Array, dtype: np.dtype) -> ak.Array:
    if dtype.kind in "iu":
        values = ak.nan_to_num(values, nan=0.0)  # mcPDG without MC match
    return ak.values_astype(values, dtype)


def eventbased_events(events: ak.Array, meta: Mapping, settings: EventBasedInput, truth: Mapping[str, str]) -> ak.Array:
    """kvv's view of a chunk of the track tree, its photons read from the photon tree for the same entries.

    ``events`` are the chunk's events of the track tree as NanoEvents (the coffea Runner
    reads that tree); the result has the fields of the kvv layout: ``Tracks``,
    ``Photons``, the event identifiers, the beam and whatever MC truth is mapped.
    """
    fields = set(events.fields)
    present = {k: make_root_compatible(v) for k, v in settings.tracks.items() if make_root_compatible(v) in fields}
    tracks = ak.zip({k: _as_kvv(events[b], _FIELD_DTYPES["Tracks"][k]) for k, b in present.items()})
    start, stop = int(meta["entrystart"]), int(meta["entrystop"])
    with uproot.open(meta["filename"]) as f:
        tree = f[settings.photons_tree]
        keys = set(tree.keys())
        branches = {k: make_root_compatible(v) for k, v in settings.photons.items() if make_root_compatible(v) in keys}
        raw = tree.arrays([*branches.values(), *EVENT_ID], entry_start=start, entry_stop=stop)
    for name in EVENT_ID:
        if not np.array_equal(ak.to_numpy(raw[name]), ak.to_numpy(events[name])):
            raise Basf2InputError(f"{meta['filename']}: trees {settings.tracks_tree!r} and {settings.photons_tree!r} disagree in {name}")
    photons = ak.zip({k: _as_kvv(raw[b], _FIELD_DTYPES["Photons"][k]) for k, b in branches.items()})
    scalars = {name: _as_kvv(events[name], _DTYPES[name]) for name in EVENT_ID}
    scalars.update({k: _as_kvv(events[make_root_compatible(v)], _DTYPES[k]) for k, v in settings.event.items()})
    scalars.update({k: _as_kvv(events[make_root_compatible(v)], _DTYPES[k]) for k, v in truth.items() if make_root_compatible(v) in fields})
    return ak.zip({**scalars, eventformat.TRACKS.name: tracks, eventformat.PHOTONS.name: photons}, depth_limit=1)


def ntuple_event_ranges(candidate: np.ndarray, ncandidates: np.ndarray, start: int, stop: int, n_rows: int) -> tuple[int, int]:
    """Rows [first, last) holding the events that start in rows [start, stop).

    An event belongs to the chunk that holds its first candidate (``__candidate__ == 0``);
    its other rows may lie beyond ``stop``. ``candidate`` and ``ncandidates`` are the
    values of rows [start, stop).
    """
    firsts = np.flatnonzero(candidate == 0)
    if firsts.size == 0:
        return stop, stop
    last_start = start + int(firsts[-1])
    return start + int(firsts[0]), min(max(stop, last_start + int(ncandidates[firsts[-1]])), n_rows)


def ntuple_best_candidates(meta: Mapping, settings: NtupleInput, truth: Mapping[str, str]) -> tuple[dict[str, np.ndarray], int]:
    """Per event that starts in the chunk, the mapped columns of its best candidate; and the rows read.

    Events without an eligible candidate get ``has_kaon`` false (their other columns are 0).
    """
    start, stop = int(meta["entrystart"]), int(meta["entrystop"])
    with uproot.open(meta["filename"]) as f:
        tree = f[settings.tree]
        head = tree.arrays([CANDIDATE, NCANDIDATES], entry_start=start, entry_stop=stop, library="np")
        first, last = ntuple_event_ranges(head[CANDIDATE], head[NCANDIDATES], start, stop, tree.num_entries)
        wanted = {**settings.columns, **truth}
        branches = {k: make_root_compatible(v) for k, v in wanted.items()}
        ranking = [make_root_compatible(v) for v in (settings.rank, *settings.eligible)]
        rows = tree.arrays(sorted({*branches.values(), *ranking, CANDIDATE, *EVENT_ID}), entry_start=first, entry_stop=last, library="np")
    n_rows = last - first
    event = np.cumsum(rows[CANDIDATE] == 0) - 1 if n_rows else np.zeros(0, dtype=np.int64)
    eligible = np.ones(n_rows, dtype=bool)
    for variable, (lo, hi) in settings.eligible.items():
        values = rows[make_root_compatible(variable)]
        if lo is not None:
            eligible &= values >= lo
        if hi is not None:
            eligible &= values < hi
    rank = np.asarray(rows[make_root_compatible(settings.rank)], dtype=np.float64)
    key = np.where(eligible, rank if settings.rank_order == "highest" else -rank, -np.inf)
    # the best row of each event: the highest key; on equal keys the first row (np.lexsort is stable)
    order = np.lexsort((-key, event))
    is_first = np.ones(n_rows, dtype=bool)
    is_first[1:] = event[order][1:] != event[order][:-1]
    best = order[is_first]
    has = eligible[best]
    columns = {name: np.where(has, np.asarray(rows[b], dtype=np.float64)[best], 0.0) for name, b in branches.items()}
    columns["has_kaon"] = has
    for name in EVENT_ID:
        columns[name] = np.asarray(rows[name], dtype=np.int64)[best]
    return columns, n_rows
