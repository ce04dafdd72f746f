"""coffea processor of the B+ -> J/psi(-> mu+ mu-) K+ validation channel.

Per chunk: B candidates (Mbc, Delta E histograms), then the signal proxy of
:func:`kvv.jpsik.signal_proxy` (dimuon dropped, kaon momentum signal-like)
sent through the ITA chain of :class:`processors.knunu.KnunuProcessor`
(features, preselection, BDT scores). The proxy's scores are returned per
candidate event, NaN where the proxy fails the preselection, so the
efficiency's denominator is every reconstructed B candidate.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import hist
import numpy as np

from kvv import histograms, jpsik, selection
from kvv.config import AnalysisConfig
from kvv.config.analysis import JpsiKValidation
from kvv.io import inputs
from processors.knunu import EventRecord, KnunuProcessor, keep_track_truth, with_finite_row

SCORES = ("bdt1", "bdt2")


def book_controls(names: list[str], validation: JpsiKValidation) -> dict[str, histograms.SumHistogram]:
    """Mbc and Delta E of the B candidates and BDT2 of their proxies, per sample."""
    dataset = hist.axis.StrCategory(names, name="dataset")
    labels = {"mbc": r"$M_{bc}$ [GeV/c$^2$]", "delta_e": r"$\Delta E$ [GeV]", "proxy_bdt2": "BDT2 of the signal proxy"}
    return {
        name: histograms.SumHistogram(dataset, hist.axis.Regular(b.bins, b.start, b.stop, name=name, label=label))
        for name, label in labels.items()
        for b in [getattr(validation, name)]
    }


class JpsiKProcessor(KnunuProcessor):
    """Candidates, controls and proxy scores of the samples in ``cfg.validation``."""

    def __init__(self, cfg: AnalysisConfig, *, model_dir: Path | None = None, drop_nonfinite: bool = False):
        if cfg.validation is None:
            raise ValueError(f"analysis {cfg.name!r} has no validation section")
        super().__init__(cfg, model_dir=model_dir, drop_nonfinite=drop_nonfinite)

    def process(self, events: ak.Array) -> dict:
        cfg, validation = self.cfg, self.cfg.validation
        if validation is None:
            raise ValueError(f"analysis {cfg.name!r} has no validation section")
        name = events.metadata["dataset"]
        n_read = len(events)
        event_number = np.asarray(ak.to_numpy(events["__event__"]), dtype=np.int64)
        finite = self._finite(inputs.nonfinite_events(events), dict(events.metadata), event_number)
        if not finite.all():
            events, event_number = events[finite], event_number[finite]
        n_events = len(events)
        ones = np.ones(n_events)  # efficiencies are per event: the luminosity weight cancels
        tracks, photons, truth = self.clean_objects(events)
        track_mask = selection.track_mask(events.Tracks, cfg.cleanup.tracks)
        muon_id = np.asarray(ak.to_numpy(ak.flatten(events.Tracks.muonID[track_mask])), dtype=np.float64)
        record = EventRecord.of(events, event_number)
        candidates = jpsik.reconstruct_jpsik(tracks, muon_id, record.beam, validation.candidates)
        has_b = candidates["has_b"]

        ids = jpsik.event_id(record.ids["__experiment__"], record.ids["__run__"], event_number)
        proxy, _, kept = jpsik.signal_proxy(tracks, candidates, ids, validation.seed)
        proxy_truth = keep_track_truth(truth, kept)
        columns, passed, _ = self._select(record, proxy, photons, proxy_truth, ones)
        self._score([columns])

        scores = {}
        for score in SCORES:
            values = np.full(n_events, np.nan)
            if score in columns:
                values[passed] = columns[score]
            scores[score] = [values[has_b]]
        selected = selection.interval_mask({k: v[0] for k, v in scores.items()}, validation.cuts)

        controls = book_controls([validation.mc.name, validation.data.name], validation)
        controls["mbc"].fill(name, mbc=candidates["mbc"][has_b])
        controls["delta_e"].fill(name, delta_e=candidates["delta_e"][has_b])
        controls["proxy_bdt2"].fill(name, proxy_bdt2=np.nan_to_num(scores["bdt2"][0], nan=-1.0))
        cutflow = with_finite_row(
            {
                "entries read": n_events,
                "J/psi K+ candidate": selection.cutflow_row(has_b),
                "proxy preselected": selection.cutflow_row(has_b & passed),
                "proxy BDT cuts": selection.cutflow_row(selected),
            },
            finite,
            self.drop_nonfinite,
        )
        return {
            "entries": {name: np.array([n_read], dtype=np.int64)},
            "nonfinite": {name: {events.metadata["filename"]: int((~finite).sum())}},
            "cutflow": {name: cutflow},
            "controls": controls,
            "proxy_scores": {name: scores},
        }
