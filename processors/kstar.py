"""coffea processor of the B -> K* nu nubar search: one region per K* mode.

Same chain as :mod:`processors.knunu` (cleanup -> kernels -> preselection ->
BDT scores -> histograms) with the K* candidate of :mod:`kvv.kstar` in place of
the signal kaon; histogram filling, variations and feature tables are the
K+ processor's. The ITA preselection steps are applied with "K* candidate"
as their first step.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np

from kvv import bdt, kstar, selection
from kvv.config import AnalysisConfig
from kvv.kstar import KstarCuts
from processors.knunu import KnunuProcessor


class KstarProcessor(KnunuProcessor):
    """Fills the per-mode templates, controls and cutflows of a K* analysis config.

    The K* requirements (:class:`kvv.kstar.KstarCuts`) are an argument until
    the config schema has a section for them.
    """

    def __init__(
        self,
        cfg: AnalysisConfig,
        *,
        cuts: KstarCuts = KstarCuts(),
        model_dir: Path | None = None,
        table_dir: Path | None = None,
    ):
        super().__init__(cfg, model_dir=model_dir, table_dir=table_dir)
        self.cuts = cuts

    def process(self, events: ak.Array) -> dict:
        cfg = self.cfg
        sample = cfg.sample(events.metadata["dataset"])
        n_events = len(events)
        weights = np.full(n_events, float(events.metadata["weight"]))

        tracks, photons = selection.clean_objects(events, cfg.cleanup)
        columns = kstar.reconstruct_kstar(tracks, photons, selection.beam_columns(events), self.cuts)
        columns.pop("daughters")  # (n, 6) indices: not a histogram or table column
        columns["__event__"] = np.asarray(ak.to_numpy(events["__event__"]), dtype=np.int64)

        cutflow = {"entries read": selection.cutflow_row(np.ones(n_events, dtype=bool), weights)}
        steps = selection.preselection_steps({**columns, "has_kaon": columns["has_kstar"]}, cfg.preselection)
        steps = {("K* candidate" if name == "kaon candidate" else name): mask for name, mask in steps.items()}
        for step, mask in steps.items():
            cutflow[step] = selection.cutflow_row(mask, weights)
        passed = next(reversed(steps.values()))

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
