"""Write kvv's simulated events the way basf2 writes ntuples, to test the basf2 readers.

Follows basf2's conventions (see :mod:`kvv.io.basf2`): ``VariablesToEventBasedTree``
files hold one tree per particle list, with ``__ncandidates__`` arrays of doubles, int
event identifiers and NaN ``mcPDG`` without an MC match; ``VariablesToNtuple`` files
hold one row per candidate with an unsigned 32-bit ``__event__`` and ``__candidate__``.
Branch names are ``makeROOTCompatible`` of the basf2 variable names given.

    python -m kvv.basf2_writer example basf2_eventbased          # the files of a shipped example analysis
    python -m kvv.basf2_writer eventbased SRC.root DST.root       # one kvv-layout file -> per-list trees
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
from coffea.nanoevents import NanoEventsFactory

from kvv import eventformat, selection, systematics
from kvv.config import AnalysisConfig, load_config
from kvv.config.inputs import EventBasedInput
from kvv.eventformat import Process
from kvv.io.artefacts import atomic_path
from kvv.io.basf2 import make_root_compatible
from kvv.io.samplefiles import sample_seed
from kvv.io.schema import Belle2Schema
from kvv.physics.beams import SQRT_S_OFF_RESONANCE, SQRT_S_ON_RESONANCE, Beams
from kvv.simulate import generate_sample

# kvv's own files' codec: the input-route benchmark then compares layouts, not codecs
from kvv.simulate.writer import COMPRESSION, extend_in_baskets
from processors.knunu import KnunuProcessor

#: event-level MC truth under basf2-style names (kvv name -> variable), as an analyst would store them with aliases
TRUTH_VARIABLES = {"mcB1Mode": "eventExtraInfo(mcB1Mode)", "mcB2Mode": "eventExtraInfo(mcB2Mode)", "mcq2": "eventExtraInfo(mcq2)"}


def _read(src: str) -> ak.Array:
    with uproot.open(src) as f:
        return f[eventformat.TREE_NAME].arrays()


def _ids(events: ak.Array) -> dict[str, np.ndarray]:
    n = len(events)
    return {
        "__experiment__": np.asarray(events["__experiment__"], dtype=np.int32),
        "__run__": np.asarray(events["__run__"], dtype=np.int32),
        "__event__": np.asarray(events["__event__"], dtype=np.int32),
        "__production__": np.zeros(n, dtype=np.int32),
    }


def _basf2_values(values: ak.Array, field: str) -> ak.Array:
    doubles = ak.values_astype(values, np.float64)
    if field == "mcPDG":  # basf2: NaN without MC match, kvv: 0
        return ak.where(doubles == 0, np.nan, doubles)
    return doubles


# Files get the codec of kvv's own (ZSTD) and its baskets: the input-route benchmark then compares layouts, not codecs.


def _list_tree(out: uproot.WritableDirectory, name: str, scalars: Mapping[str, np.ndarray], candidates: ak.Array) -> None:
    types = {k: v.dtype for k, v in scalars.items()} | {"candidates": candidates.type.content}
    out.mktree(name, types, counter_name=lambda counted: "__ncandidates__", field_name=lambda outer, inner: inner)
    extend_in_baskets(out[name], {**scalars, "candidates": candidates})


def write_eventbased(src: str, dst: str, settings: EventBasedInput = EventBasedInput(), truth: Mapping[str, str] = TRUTH_VARIABLES) -> Path:
    """The events of a kvv-layout file as a track-list and a photon-list tree of VariablesToEventBasedTree."""
    events = _read(src)
    mc = "track_mcPDG" in events.fields
    n = len(events)
    ids = _ids(events)
    weight = np.ones(n, dtype=np.float32)
    event_vars = {make_root_compatible(v): np.asarray(events[k], dtype=np.float64) for k, v in settings.event.items()}
    if mc:
        event_vars |= {make_root_compatible(v): np.asarray(events[k], dtype=np.float64) for k, v in truth.items()}
    lists = {
        settings.tracks_tree: (eventformat.TRACKS, settings.tracks),
        settings.photons_tree: (eventformat.PHOTONS, settings.photons),
    }
    with atomic_path(Path(dst)) as tmp, uproot.recreate(tmp, compression=COMPRESSION) as out:
        for tree, (coll, variables) in lists.items():
            fields = {
                make_root_compatible(variable): _basf2_values(events[coll.branch(field)], field)
                for field, variable in variables.items()
                if coll.branch(field) in events.fields
            }
            scalars = {**ids, "__weight__": weight, **(event_vars if coll is eventformat.TRACKS else {})}
            _list_tree(out, tree, scalars, ak.zip(fields))
    return Path(dst)


def write_ntuple(
    dst: str,
    ids: Mapping[str, np.ndarray],
    candidates: Mapping[str, ak.Array],
    tree: str = "variables",
) -> Path:
    """A VariablesToNtuple file: one row per candidate from per-event jagged candidate variables.

    ``ids`` are the event identifiers per event; ``candidates`` map branch names to
    jagged arrays, one list of candidate values per event (events without candidates
    write no row, as basf2).
    """
    counts = ak.to_numpy(ak.num(next(iter(candidates.values()))))
    rows = {
        "__experiment__": np.repeat(ids["__experiment__"], counts).astype(np.int32),
        "__run__": np.repeat(ids["__run__"], counts).astype(np.int32),
        "__event__": np.repeat(ids["__event__"], counts).astype(np.uint32),
        "__production__": np.zeros(int(counts.sum()), dtype=np.int32),
        "__candidate__": ak.to_numpy(ak.flatten(ak.local_index(next(iter(candidates.values()))))).astype(np.int32),
        "__ncandidates__": np.repeat(counts, counts).astype(np.int32),
        "__weight__": np.ones(int(counts.sum()), dtype=np.float64),
    }
    rows |= {name: ak.to_numpy(ak.flatten(values)).astype(np.float64) for name, values in candidates.items()}
    with atomic_path(Path(dst)) as tmp, uproot.recreate(tmp, compression=COMPRESSION) as out:
        out.mktree(tree, {k: v.dtype for k, v in rows.items()})
        extend_in_baskets(out[tree], rows)
    return Path(dst)


def ntuple_from_kvv(cfg: AnalysisConfig, src: str, dst: str, names: Mapping[str, str], *, best_only: bool = False) -> Path:
    """One row per cleaned track: the kaon candidate's row holds kvv's columns, the other rows shifted values.

    ``names`` maps kvv's columns to the basf2 variables (or aliases) they are stored under;
    a row's ``pt`` and ``nPXDHits`` are its track's, as the best-candidate rank reads them.
    ``best_only`` keeps the kaon candidate's row alone, as a steering file that ranks the
    list itself (``rankByHighest(..., numBest=1)``) writes it.
    """
    events = NanoEventsFactory.from_root({src: eventformat.TREE_NAME}, schemaclass=Belle2Schema, mode="eager").events()
    proc = KnunuProcessor(cfg)
    tracks, photons, truth = proc.clean_objects(events)
    columns = proc.event_columns(selection.beam_columns(events), tracks, photons, truth)
    columns.update(systematics.kaon_pid_inputs(tracks, columns["kaon_index"], truth["track_mcPDG"]))
    counts = np.diff(tracks.offsets)
    index = ak.local_index(ak.unflatten(np.zeros(int(counts.sum())), counts))
    chosen = index == columns["kaon_index"][:, None]
    candidates = {}
    for col, variable in names.items():
        per_event = ak.broadcast_arrays(np.asarray(columns[col], dtype=np.float64)[:, None], index)[0]
        candidates[make_root_compatible(variable)] = ak.where(chosen, per_event, per_event + 1.0)
    if "mcB1Mode" in events.fields:  # MC
        for name, variable in TRUTH_VARIABLES.items():
            candidates[make_root_compatible(variable)] = ak.broadcast_arrays(truth[name][:, None], index)[0]
    candidates["pt"] = ak.unflatten(np.hypot(tracks.px, tracks.py), counts)
    candidates["nPXDHits"] = ak.unflatten(tracks.n_pxd_hits.astype(np.float64), counts)
    if best_only:
        candidates = {name: values[chosen] for name, values in candidates.items()}
    ids = {name: np.asarray(events[name]) for name in ("__experiment__", "__run__", "__event__")}
    return write_ntuple(dst, ids, candidates, cfg.input.ntuple.tree)


def write_example(config: str) -> list[Path]:
    """The files of a shipped basf2 example analysis: each sample simulated by kvv, written in the example's layout.

    MC samples get ``generated_events`` events, data samples ``events`` (with their ``tune``).
    """
    cfg = load_config(config)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for sample in cfg.samples:
            layout = cfg.format_of(sample)
            n = sample.generated_events if not sample.is_data else sample.events
            assert n, f"sample {sample.name}: no number of events to write"
            sqrt_s = SQRT_S_ON_RESONANCE if sample.resonance == "on" else SQRT_S_OFF_RESONANCE
            src = Path(tmp) / f"{sample.name}.root"
            generate_sample(Process[sample.process.upper()], n, src, beams=Beams(sqrt_s=sqrt_s), seed=sample_seed(cfg.simulation.seed, sample, 0),
                            data=sample.is_data, tune=dict(sample.tune) or None)  # fmt: skip
            dst = Path(sample.files[0]) / f"{sample.name}_0.root"
            dst.parent.mkdir(parents=True, exist_ok=True)
            if layout == "basf2_eventbased":
                written.append(write_eventbased(str(src), str(dst), cfg.input.eventbased, cfg.input.truth))
            elif layout == "basf2_ntuple":
                written.append(ntuple_from_kvv(cfg, str(src), str(dst), cfg.input.ntuple.columns))
    return written


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "eventbased":
        print(write_eventbased(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "example":
        for path in write_example(sys.argv[2]):
            print(path)
    else:
        sys.exit(__doc__)
