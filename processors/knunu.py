"""coffea processor of the inclusive-tagging B+ -> K+ nu nubar analysis.

It only composes library calls: cleanup -> kernels -> preselection -> BDT
scores -> histograms. One instance is shipped to every worker; models are
loaded there once per process (``kvv.bdt`` caches them).
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
from coffea import processor

from kvv import bdt, features, histograms, selection
from kvv.config import AnalysisConfig


class KnunuProcessor(processor.ProcessorABC):
    """Fills templates, controls and cutflows; optionally writes feature tables.

    ``events.metadata`` must carry ``dataset`` (the sample name) and
    ``weight`` (its per-event normalisation to the target luminosity).
    """

    def __init__(self, cfg: AnalysisConfig, *, model_dir: Path | None = None, table_dir: Path | None = None):
        self.cfg = cfg
        self.model_dir = Path(model_dir) if model_dir else None
        self.table_dir = Path(table_dir) if table_dir else None

    def process(self, events: ak.Array) -> dict:
        cfg = self.cfg
        sample = cfg.sample(events.metadata["dataset"])
        n_events = len(events)
        weights = np.full(n_events, float(events.metadata["weight"]))

        tracks, photons = selection.clean_objects(events, cfg.cleanup)
        columns = features.event_features(
            tracks,
            photons,
            selection.beam_columns(events),
            min_pxd_hits=cfg.kaon.min_pxd_hits,
            kaon_id_cut=cfg.kaon.kaon_id_cut,
        )
        columns["__event__"] = np.asarray(ak.to_numpy(events["__event__"]), dtype=np.int64)

        cutflow = {"entries read": selection.cutflow_row(np.ones(n_events, dtype=bool), weights)}
        steps = selection.preselection_steps(columns, cfg.preselection)
        for step, mask in steps.items():
            cutflow[step] = selection.cutflow_row(mask, weights)
        passed = next(reversed(steps.values())) if steps else np.ones(n_events, dtype=bool)

        selected = {name: values[passed] for name, values in columns.items()}
        selected_weights = weights[passed]
        if self.model_dir is not None:
            models = bdt.load_models_cached(self.model_dir, bdt.stage_features(cfg.bdt))
            selected.update(bdt.score_chunk(models, selected, selected["__event__"]))

        out = {
            "cutflow": {sample.name: cutflow},
            "entries": {sample.name: np.array([n_events], dtype=np.int64)},
        }
        if self.table_dir is not None:
            out["tables"] = {sample.name: [self._write_table(events, selected, selected_weights)]}
        out.update(self._fill(sample.name, selected, selected_weights, sample.template))
        return out

    def _fill(self, sample: str, columns: dict[str, np.ndarray], weights: np.ndarray, template: str) -> dict:
        booked = histograms.book(self.cfg)
        for control in self.cfg.controls:
            if control.variable in columns:
                booked["controls"][control.variable].fill(
                    dataset=sample, **{control.variable: columns[control.variable]}, weight=weights
                )
        variation_weights = self._variation_weights(sample, columns, weights)
        for region in self.cfg.regions:
            needed = set(region.cuts) | {a.variable for a in region.axes}
            if not needed <= columns.keys():
                continue  # e.g. BDT axes before any model is trained
            if region.resonance != self.cfg.sample(sample).resonance:
                continue
            mask = selection.interval_mask(columns, region.cuts)
            in_region = {name: values[mask] for name, values in columns.items()}
            for variation, w in variation_weights.items():
                histograms.fill_template(booked["templates"][region.name], region, sample, variation, in_region, w[mask])
        return booked

    def _variation_weights(self, sample: str, columns: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
        """Event weights per histogram variation (nominal, then up/down of each variation).

        Continuum MC carries the BDTc weight in the nominal; the continuum
        reweighting variation compares it with the unweighted templates.
        """
        cfg = self.cfg
        spec = cfg.sample(sample)
        is_continuum_mc = not spec.is_data and spec.template in cfg.fit.continuum_templates
        unweighted = weights
        if is_continuum_mc and "continuum_weight" in columns:
            weights = weights * columns["continuum_weight"]
        out = {histograms.NOMINAL: weights}
        for v in cfg.variations:
            applies = not v.samples or sample in v.samples
            if v.kind == "normalisation":
                scale = 1.0 + v.size if applies else 1.0
                out[f"{v.name}_up"] = weights * scale
                out[f"{v.name}_down"] = weights * (2.0 - scale)
            elif v.kind == "continuum_reweighting":
                out[f"{v.name}_up"] = weights
                out[f"{v.name}_down"] = unweighted if applies else weights
        return out

    def _write_table(self, events: ak.Array, columns: dict[str, np.ndarray], weights: np.ndarray) -> str:
        """Write the preselected events' features as parquet; returns the file path."""
        import pandas as pd

        meta = events.metadata
        name = f"{meta['dataset']}_{Path(meta['filename']).stem}_{meta['entrystart']}_{meta['entrystop']}.parquet"
        path = self.table_dir / name
        table = pd.DataFrame({k: v for k, v in columns.items()})
        table["weight"] = weights
        table["sample"] = meta["dataset"]
        tmp = path.with_suffix(".tmp")
        table.to_parquet(tmp, index=False)
        tmp.replace(path)
        return str(path)

    def postprocess(self, accumulator: dict) -> dict:
        return accumulator
