"""coffea processor of the inclusive-tagging B+ -> K+ nu nubar analysis.

It only composes library calls: cleanup -> kernels -> preselection -> BDT
scores -> histograms. Systematic variations are filled in the same pass:
weight variations as extra weights, object variations by re-running the
kernels and BDTs on varied tracks and photons. One instance is shipped to
every worker; models are loaded there once per process (``kvv.bdt`` caches them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
from coffea import processor

from kvv import bdt, features, histograms, selection
from kvv import systematics as sy
from kvv.config import AnalysisConfig, Region, Sample
from kvv.io import basf2, inputs
from kvv.physics.columns import BeamColumns, PhotonColumns, TrackColumns, changed_events, object_mask, select_events

MC_EVENT_BRANCHES = ("mcB1Mode", "mcB2Mode", "mcq2")
TRACK_TRUTH = {"track_mcPDG": "mcPDG", "track_mcMotherPDG": "mcMotherPDG"}  # truth key -> Tracks field
PHOTON_TRUTH = {"photon_mcPDG": "mcPDG", "photon_mcMotherPDG": "mcMotherPDG"}


#: a chunk's nominal and object-varied events go through the BDTs together up to about this many events
#: (before the preselection): one call per model saves xgboost's cost per call on small chunks, and
#: large chunks are scored one variation at a time so that their columns are not all held at once
SCORE_BATCH_EVENTS = 50_000


@dataclass
class EventRecord:
    """What a chunk's events carry besides their objects, read once per chunk: the beam and the event identifiers."""

    beam: BeamColumns
    ids: dict[str, np.ndarray]  # __experiment__, __run__, __event__ (int64)

    @classmethod
    def of(cls, events: ak.Array, event_number: np.ndarray) -> EventRecord:
        ids = {name: np.asarray(ak.to_numpy(events[name]), dtype=np.int64) for name in ("__experiment__", "__run__")}
        return cls(selection.beam_columns(events), {**ids, "__event__": event_number})

    def select(self, events: np.ndarray) -> EventRecord:
        """The record of the events the boolean mask ``events`` marks."""
        beam = BeamColumns(*(getattr(self.beam, f.name)[events] for f in dataclasses.fields(BeamColumns)))
        return EventRecord(beam, {name: values[events] for name, values in self.ids.items()})


@dataclass
class _Chunk:
    """A chunk of events after the cleanup, the kernels and the preselection."""

    record: EventRecord
    event_number: np.ndarray
    finite: np.ndarray  # per entry read: no NaN or infinity in its inputs
    weights: np.ndarray  # per finite event: the sample's normalisation
    tracks: TrackColumns
    photons: PhotonColumns
    truth: dict[str, np.ndarray]
    columns: dict[str, np.ndarray]  # of the preselected events
    passed: np.ndarray  # per finite event: passes the preselection
    cutflow: dict[str, int]
    entries: int


@dataclass
class _Shifted:
    """A chunk under one object variation: its events whose objects the variation changes, computed anew."""

    variation: str
    columns: dict[str, np.ndarray]  # of the changed events that pass the preselection
    weights: np.ndarray  # their sample normalisation
    unchanged: np.ndarray  # per nominal preselected event: the variation leaves its objects as they are


class KnunuProcessor(processor.ProcessorABC):
    """Fills templates, controls and cutflows; optionally writes feature tables.

    ``events.metadata`` must carry ``dataset`` (the sample name) and
    ``weight`` (its per-event normalisation to the target luminosity).
    """

    candidate_step = "kaon candidate"
    #: the columns the BDT scoring adds
    score_columns = frozenset({"bdt1", "bdt2", "eta_bdt2", "continuum_weight"})

    @classmethod
    def columns_needed(cls, cfg: AnalysisConfig) -> set[str]:
        """The per-event columns the chain reads after the kernels: what a candidate ntuple must map."""
        need = {*cfg.features, *selection.PRESELECTION_COLUMNS} - {"has_kaon"}
        if cfg.bdt is not None:
            need |= {*cfg.bdt.bdt1.features, *cfg.bdt.bdt2.features, *(c for cuts in cfg.bdt.categories.values() for c in cuts)}
            if cfg.bdt.continuum is not None:
                need |= set(cfg.bdt.continuum.features)
        for region in cfg.regions:
            need |= {*region.cuts, *(a.variable for a in region.axes)}
        for control in cfg.controls:
            need |= {control.variable, *control.cuts, *([control.split_by] if control.split_by else [])}
        if cfg.systematics.kaon_pid:
            need |= {"kaon_p_lab", "kaon_cos_theta_lab", "kaon_mc_pdg", "kaon_kaon_id"}
        return need - cls.score_columns

    def __init__(self, cfg: AnalysisConfig, *, model_dir: Path | None = None, table_dir: Path | None = None, drop_nonfinite: bool = False):
        self.cfg = cfg
        #: what a template fill reads: the regions' cuts and fit variables
        self._region_columns = {name for r in cfg.regions for name in (*r.cuts, *(a.variable for a in r.axes))}
        self.drop_nonfinite = drop_nonfinite
        self.model_dir = Path(model_dir) if model_dir else None
        self.table_dir = Path(table_dir) if table_dir else None

    def process(self, events: ak.Array) -> dict:
        cfg = self.cfg
        meta = dict(events.metadata)
        sample = cfg.sample(meta["dataset"])
        if cfg.format_of(sample) == "basf2_ntuple":
            return self._process_candidates(meta, sample)
        chunk = self._prepare(events, meta, sample)
        scale = float(meta["weight"])
        out: dict = {}
        # the nominal (None) first, then object variations, scored together
        pending: list[_Shifted | None] = [None]
        nominal_weights: list[np.ndarray] = []  # the nominal template weights, once scored

        def score_and_fill() -> None:
            self._score([chunk.columns if item is None else item.columns for item in pending])
            for item in pending:
                if item is None:
                    out.update(self._fill(meta, sample, chunk.columns, chunk.weights[chunk.passed], chunk.cutflow, chunk.entries))
                    nominal_weights.append(self._template_weights(sample, chunk.columns, chunk.weights[chunk.passed]))
                    continue
                weights = self._template_weights(sample, item.columns, item.weights)
                self._fill_templates(out, sample, {item.variation: weights}, item.columns, scale)
                # the events it leaves as they are have their nominal columns, scores and weights
                unchanged = {name: chunk.columns[name][item.unchanged] for name in self._region_columns if name in chunk.columns}
                self._fill_templates(out, sample, {item.variation: nominal_weights[0][item.unchanged]}, unchanged, scale)
            pending.clear()

        shifts = [] if self.table_dir is not None else sy.object_shifts(cfg.systematics)
        for shift in [] if sample.is_data else shifts:
            if (len(pending) + 1) * len(chunk.passed) > SCORE_BATCH_EVENTS:
                score_and_fill()
            pending.append(self._shifted(shift, chunk))
        score_and_fill()
        out["nonfinite"] = {sample.name: {meta["filename"]: int((~chunk.finite).sum())}}
        if self.table_dir is not None:
            return out
        if self._is_signal_mc(sample):  # the efficiency's denominator: every (finite) event read, by generated q²
            out["generated"]["q2_gen"].fill(sample.name, q2_gen=chunk.truth["mcq2"], weight=chunk.weights, scale=scale)
        if sample.is_data:  # data are what they are: every object variation sees the nominal
            weights = self._template_weights(sample, chunk.columns, chunk.weights[chunk.passed])
            self._fill_templates(out, sample, dict.fromkeys((shift.name for shift in shifts), weights), chunk.columns, scale)
        return out

    def preselected(self, events: ak.Array, metadata: dict | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One chunk's preselected events: their columns (features, BDT scores) and nominal weights.

        What the control histograms are filled with; for exploring a variable
        (:mod:`kvv.explore`) before it goes into the YAML. ``metadata`` stands
        in for the events' own (coffea's dask mode gives a file's, not a chunk's).
        """
        meta = dict(events.metadata if metadata is None else metadata)
        sample = self.cfg.sample(meta["dataset"])
        chunk = self._prepare(events, meta, sample)
        self._score([chunk.columns])
        return chunk.columns, self._template_weights(sample, chunk.columns, chunk.weights[chunk.passed])

    def _prepare(self, events: ak.Array, meta: dict, sample: Sample) -> _Chunk:
        """Layout, finiteness check, cleanup, kernels and preselection of one chunk of events (unscored: see :meth:`_score`)."""
        if self.cfg.format_of(sample) == "basf2_eventbased":
            events = basf2.eventbased_events(events, meta, self.cfg.input.eventbased, {} if sample.is_data else self.cfg.input.truth)
        n_read = len(events)
        event_number = np.asarray(ak.to_numpy(events["__event__"]), dtype=np.int64)
        finite = self._finite(inputs.nonfinite_events(events), meta, event_number)
        if not finite.all():
            events, event_number = events[finite], event_number[finite]
        weights = np.full(len(events), float(meta["weight"]))
        tracks, photons, truth = self.clean_objects(events)
        record = EventRecord.of(events, event_number)
        columns, passed, cutflow = self._select(record, tracks, photons, truth, weights)
        return _Chunk(
            record, event_number, finite, weights, tracks, photons, truth, columns, passed,
            with_finite_row(cutflow, finite, self.drop_nonfinite), n_read,
        )  # fmt: skip

    def _finite(self, bad: dict[str, np.ndarray], meta: dict, event_number: np.ndarray) -> np.ndarray:
        """Events without NaN or infinity in the branches that feed the analysis (``bad``: per branch, the events
        with one); raises unless ``drop_nonfinite``."""
        finite = np.ones(len(event_number), dtype=bool)
        for mask in bad.values():
            finite &= ~mask
        if bad and not self.drop_nonfinite:
            branch, mask = next(iter(bad.items()))
            raise inputs.NonFiniteInputError(
                f"{meta['filename']}: branch {branch!r} holds NaN or infinite values in {int(mask.sum())} events of the entries "
                f"[{meta['entrystart']}, {meta['entrystop']}) (first: __event__ {int(event_number[np.flatnonzero(mask)[0]])}); "
                "--drop-nonfinite removes such events and counts them"
            )
        return finite

    def _corrected(self, sample: Sample, columns: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        return weights * sy.nominal_weights(self.cfg.systematics, columns, sample)

    def _fill(self, meta: dict, sample: Sample, columns: dict, weights: np.ndarray, cutflow: dict, entries: int) -> dict:
        """The chunk's cutflow and entries, and its feature table or its nominal, weight-varied and control histograms."""
        selected_weights = self._corrected(sample, columns, weights)
        out = {"cutflow": {sample.name: cutflow}, "entries": {sample.name: np.array([entries], dtype=np.int64)}}
        if self.table_dir is not None:
            out["tables"] = {sample.name: [self._write_table(self.table_dir, meta, columns, selected_weights)]}
            return out
        booked = histograms.book(self.cfg)
        varied = self._variation_weights(sample, columns, selected_weights)
        self._fill_controls(booked, sample, columns, varied[histograms.NOMINAL], float(meta["weight"]))
        self._fill_templates(booked, sample, varied, columns, float(meta["weight"]))
        if self._is_signal_mc(sample):
            self._fill_densities(booked, sample, columns, varied[histograms.NOMINAL], float(meta["weight"]))
        out.update(booked)
        return out

    def _is_signal_mc(self, sample: Sample) -> bool:
        return not sample.is_data and sample.template == self.cfg.fit.signal_template

    def _fill_densities(self, booked: dict, sample: Sample, columns: dict[str, np.ndarray], weights: np.ndarray, scale: float) -> None:
        """The joint number densities: the nominal signal templates, split by the generated q² (truth ``mcq2``)."""
        for region, mask, in_region in self._in_regions(sample, columns):
            booked["densities"][region.name].fill(sample.name, q2_gen=columns["mcq2"][mask], **in_region, weight=weights[mask], scale=scale)

    def _in_regions(self, sample: Sample, columns: dict[str, np.ndarray]) -> Iterator[tuple[Region, np.ndarray, dict[str, np.ndarray]]]:
        """Per fit region of the sample's resonance: the region, its event mask and its fit variables' values there."""
        for region in self.cfg.regions:
            needed = set(region.cuts) | {a.variable for a in region.axes}
            if region.resonance != sample.resonance or not needed <= columns.keys():
                continue  # e.g. BDT axes before any model is trained
            mask = selection.interval_mask(columns, region.cuts)
            yield region, mask, {a.variable: columns[a.variable][mask] for a in region.axes}

    def _process_candidates(self, meta: dict, sample: Sample) -> dict:
        """A chunk of a basf2 candidate ntuple: the best candidate's columns per event, then the same chain.

        Object variations need the objects, which an ntuple does not hold: their
        templates get the nominal, as for data, and the run summary says so.
        """
        cfg = self.cfg
        truth_names = {} if sample.is_data else cfg.input.truth
        columns, n_rows = basf2.ntuple_best_candidates(meta, cfg.input.ntuple, truth_names)
        finite = self._finite(self._nonfinite_read(columns, {**cfg.input.ntuple.columns, **truth_names}), meta, columns["__event__"])
        if not finite.all():
            columns = {name: values[finite] for name, values in columns.items()}
        weights = np.full(len(columns["has_kaon"]), float(meta["weight"]))
        columns.update({name: np.full(len(weights), -1.0) for name in MC_EVENT_BRANCHES if name not in columns})
        selected, passed, cutflow = self._select_columns(columns, weights)
        self._score([selected])
        out = self._fill(meta, sample, selected, weights[passed], with_finite_row(cutflow, finite, self.drop_nonfinite), n_rows)
        out["nonfinite"] = {sample.name: {meta["filename"]: int((~finite).sum())}}
        if self.table_dir is None:
            nominal = self._template_weights(sample, selected, weights[passed])
            shifts = sy.object_shifts(cfg.systematics)
            self._fill_templates(out, sample, dict.fromkeys((shift.name for shift in shifts), nominal), selected, float(meta["weight"]))
        return out

    def _nonfinite_read(self, columns: dict[str, np.ndarray], names: dict[str, str]) -> dict[str, np.ndarray]:
        """Per mapped basf2 variable, the events in which the analysis reads a NaN or infinity from it.

        The preselection's columns are read in every event with a candidate, the
        others only in the events the preselection keeps: kvv's own event-shape
        columns, for one, are NaN outside it (:func:`kvv.features.add_event_shape`).
        """
        has = np.asarray(columns["has_kaon"], dtype=bool)
        preselected = list(selection.preselection_steps(columns, self.cfg.preselection).values())[-1]
        out = {}
        for name, variable in names.items():
            bad = ~np.isfinite(columns[name]) & (has if name in selection.PRESELECTION_COLUMNS else preselected)
            if bad.any():
                out[basf2.make_root_compatible(variable)] = bad
        return out

    def clean_objects(self, events: ak.Array) -> tuple[TrackColumns, PhotonColumns, dict[str, np.ndarray]]:
        """Tracks and photons after the cleanup, with the MC truth aligned to them."""
        track_keep = selection.track_keep(events["Tracks"], self.cfg.cleanup.tracks)[1]
        photon_keep = selection.photon_keep(events["Photons"], self.cfg.cleanup.photons)[1]
        tracks = selection.track_columns(events["Tracks"], track_keep)
        photons = selection.photon_columns(events["Photons"], photon_keep)
        return tracks, photons, _truth(events, track_keep, photon_keep, len(events))

    def _select(
        self, record: EventRecord, tracks: TrackColumns, photons: PhotonColumns, truth: dict, weights: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, int]]:
        """Features of the events passing the preselection (unscored), the preselection mask and the cutflow."""
        cfg = self.cfg
        columns = self.event_columns(record.beam, tracks, photons, truth)
        # the event identifiers: the training tables' canonical row order (see kvv.run.read_tables)
        columns.update(record.ids)
        columns.update({name: truth[name] for name in MC_EVENT_BRANCHES})
        if cfg.systematics.kaon_pid:
            columns.update(sy.kaon_pid_inputs(tracks, columns["kaon_index"], truth["track_mcPDG"]))

        return self._select_columns(columns, weights)

    def _select_columns(self, columns: dict[str, np.ndarray], weights: np.ndarray) -> tuple[dict, np.ndarray, dict]:
        """The preselection on per-event columns: the preselected events' columns, the mask and the cutflow."""
        cutflow = {"entries read": len(weights)}
        passed = np.ones(len(weights), dtype=bool)
        for step, mask in selection.preselection_steps(columns, self.cfg.preselection).items():
            step = self.candidate_step if step == "kaon candidate" else step
            cutflow[step] = selection.cutflow_row(mask)
            passed = mask
        rows = np.flatnonzero(passed)  # one index for every column: a mask is searched anew each time
        return {name: values[rows] for name, values in columns.items()}, passed, cutflow

    def _score(self, tables: list[dict[str, np.ndarray]]) -> None:
        """Add the BDT scores to preselected column tables, all in one pass through each model (none before training)."""
        if self.model_dir is None:
            return
        if self.cfg.bdt is None:
            raise ValueError(f"analysis {self.cfg.name!r} has no bdt section to score the models in {self.model_dir} with")
        for table, scores in zip(tables, bdt.score_tables(self.cfg.bdt, self.model_dir, tables), strict=True):
            table.update(scores)

    def event_columns(self, beam: BeamColumns, tracks: TrackColumns, photons: PhotonColumns, truth: dict) -> dict[str, np.ndarray]:
        """Per-event columns of the signal candidate, its ROE and the event shape (``truth``: see :meth:`clean_objects`)."""
        return features.event_features(
            tracks,
            photons,
            beam,
            min_pxd_hits=self.cfg.kaon.min_pxd_hits,
            kaon_id_cut=self.cfg.kaon.kaon_id_cut,
            preselection=self.cfg.preselection,
        )

    def _shifted(self, shift: sy.ObjectShift, chunk: _Chunk) -> _Shifted:
        """The chunk under one object variation: its changed events' columns (unscored), the others left nominal.

        A variation often leaves most events as they are (the tracking efficiency drops
        a track in a few per cent of them): only the events whose objects it changes
        go through the kernels again; the features of an event depend on its objects alone.
        """
        tracks, photons = sy.vary_objects(shift, chunk.tracks, chunk.photons, chunk.event_number, chunk.truth["photon_mcPDG"])
        truth = chunk.truth
        if isinstance(shift.variation, sy.TrackingEfficiencyVariation):
            truth = keep_track_truth(chunk.truth, sy.track_keep_mask(shift.variation, chunk.tracks, chunk.event_number))
        changed = changed_events(chunk.tracks, tracks) | changed_events(chunk.photons, photons)
        truth = select_truth(truth, changed, object_mask(tracks, changed), object_mask(photons, changed))
        tracks, photons = select_events(tracks, changed), select_events(photons, changed)
        weights = chunk.weights[changed]
        columns, passed, _ = self._select(chunk.record.select(changed), tracks, photons, truth, weights)
        return _Shifted(shift.name, columns, weights[passed], ~changed[chunk.passed])

    def _template_weights(self, sample: Sample, columns: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        """Nominal template weights of preselected events: ``weights`` with the nominal corrections and, for continuum MC, BDTc."""
        return self._nominal_weights(sample, columns, self._corrected(sample, columns, weights))

    def _nominal_weights(self, sample: Sample, columns: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        """Continuum MC carries its BDTc weight in the nominal."""
        if not sample.is_data and sample.template in self.cfg.fit.continuum_templates and "continuum_weight" in columns:
            return weights * columns["continuum_weight"]
        return weights

    def _variation_weights(self, sample: Sample, columns: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
        """Event weights of the nominal and of every weight variation.

        The continuum reweighting variation compares the BDTc-weighted continuum
        templates (nominal, up) with the unweighted ones (down).
        """
        nominal = self._nominal_weights(sample, columns, weights)
        out = {histograms.NOMINAL: nominal}
        for v in self.cfg.variations:
            applies = not v.samples or sample.name in v.samples
            if v.kind == "normalisation":
                size = v.size if applies else 0.0
                out[f"{v.name}_up"] = nominal * (1.0 + size)
                out[f"{v.name}_down"] = nominal * (1.0 - size)
            elif v.kind == "continuum_reweighting":
                out[f"{v.name}_up"] = nominal
                out[f"{v.name}_down"] = weights if applies else nominal
        for name, factor in sy.weight_variations(self.cfg.systematics, columns, sample).items():
            out[name] = nominal * factor
        return out

    def _fill_controls(self, booked: dict, sample: Sample, columns: dict[str, np.ndarray], nominal: np.ndarray, scale: float) -> None:
        for control in self.cfg.controls:
            split = [] if control.split_by is None else [control.split_by]
            if not {control.variable, *split, *control.cuts} <= columns.keys():
                continue
            keep = selection.interval_mask(columns, control.cuts) if control.cuts else slice(None)
            booked["controls"][control.key].fill(
                sample.name,
                **{name: np.asarray(columns[name][keep], dtype=np.int64) for name in split},
                **{control.variable: columns[control.variable][keep]},
                weight=nominal[keep],
                scale=scale,
            )

    def _fill_templates(
        self, booked: dict, sample: Sample, weights: dict[str, np.ndarray], columns: dict[str, np.ndarray], scale: float
    ) -> None:
        """Fill the templates of every region with the events ``columns``, once per variation: ``weights[variation]``."""
        for region, mask, in_region in self._in_regions(sample, columns):
            in_weights = {variation: w[mask] for variation, w in weights.items()}
            histograms.fill_templates(booked["templates"][region.name], region, sample.name, in_weights, in_region, scale)

    def _write_table(self, table_dir: Path, meta: dict, columns: dict[str, np.ndarray], weights: np.ndarray) -> str:
        """Write the preselected events' features as parquet; returns the file path."""
        name = f"{meta['dataset']}_{Path(meta['filename']).stem}_{meta['entrystart']}_{meta['entrystop']}.parquet"
        path = table_dir / name
        table = pd.DataFrame(columns)
        table["weight"] = weights
        table["sample"] = meta["dataset"]
        tmp = path.with_suffix(".tmp")
        table.to_parquet(tmp, index=False)
        tmp.replace(path)
        return str(path)

    def postprocess(self, accumulator: dict) -> dict:
        """After the merge: the histograms as ``hist``, and the unrun side of one-sided object variations (2 nominal - varied)."""
        for group in ("templates", "controls", "densities", "generated"):
            if group in accumulator:
                accumulator[group] = histograms.to_hist(accumulator[group])
        if "templates" in accumulator:
            histograms.complete_mirrored(accumulator["templates"], self.cfg)
        return accumulator


def with_finite_row(cutflow: dict[str, int], finite: np.ndarray, drop_nonfinite: bool) -> dict[str, int]:
    """The cutflow with a "finite input" row after "entries read" in runs that drop events with non-finite inputs.

    Every chunk of such a run has the row, so that the merged row counts every chunk.
    """
    if not drop_nonfinite:
        return cutflow
    steps = iter(cutflow.items())
    next(steps)  # "entries read" of the finite events
    return {"entries read": len(finite), "finite input": int(finite.sum()), **dict(steps)}


def _truth(events: ak.Array, track_keep: np.ndarray, photon_keep: np.ndarray, n_events: int) -> dict[str, np.ndarray]:
    """MC truth aligned with the cleaned objects (PDG codes of each object and its mother); sentinels for data.

    ``track_keep``, ``photon_keep``: the cleanup's flat keep masks over each collection's objects.
    """
    fields = set(events.fields)
    out = {}
    for name in MC_EVENT_BRANCHES:
        out[name] = np.asarray(ak.to_numpy(events[name]), dtype=np.float64) if name in fields else np.full(n_events, -1.0)
    for coll, keep, keys in ((events["Tracks"], track_keep, TRACK_TRUTH), (events["Photons"], photon_keep, PHOTON_TRUTH)):
        for key, name in keys.items():
            if name in coll.fields:
                out[key] = inputs.flat_values(coll[name], np.int64)[keep]
            else:
                out[key] = np.zeros(int(keep.sum()), dtype=np.int64)
    return out


def keep_track_truth(truth: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """``truth`` with its per-track arrays restricted to the tracks ``keep`` marks."""
    return {**truth, **{key: truth[key][keep] for key in TRACK_TRUTH}}


def select_truth(truth: dict[str, np.ndarray], events: np.ndarray, tracks: np.ndarray, photons: np.ndarray) -> dict[str, np.ndarray]:
    """``truth`` of the events the mask ``events`` marks; ``tracks``, ``photons``: the masks of their objects."""
    out = {name: truth[name][events] for name in MC_EVENT_BRANCHES}
    out.update({key: truth[key][tracks] for key in TRACK_TRUTH})
    out.update({key: truth[key][photons] for key in PHOTON_TRUTH})
    return out
