"""The fit of a kvv analysis: its workspace from the process stage's artefacts, and its nuisance groups.

Reads ``histograms.pkl`` and the sample records of ``summary.json`` (their roles
say which samples are observations), merges the templates per region, prunes
bins without expectation, floors bins with signal but no background MC, and
writes ``workspace.json`` and ``workspace_pruning.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kvv import histograms, systematics
from kvv.config import AnalysisConfig
from kvv.io.artefacts import SampleRecord, read_sample_records, write_json

from .likelihood import FitError
from .pipeline import run_inference
from .workspace import build_workspace

log = logging.getLogger(__name__)

#: nuisance parameters the workspace builder adds on its own, as impact groups
FIT_NUISANCES = {"MC statistics": ["staterror*"], "background normalisations": ["norm_*"]}


def impact_groups(cfg: AnalysisConfig) -> dict[str, list[str]]:
    """Nuisance groups for grouped impacts: the YAML's ``fit.groups``, else one per kind of systematic."""
    groups = dict(cfg.fit.groups) or {
        **systematics.groups(cfg.systematics),
        **FIT_NUISANCES,
        "continuum modelling": [v.name for v in cfg.variations if v.kind == "continuum_reweighting"],
    }
    return {name: patterns for name, patterns in groups.items() if patterns}


def systematic_sources(cfg: AnalysisConfig) -> dict[str, list[str]]:
    """Nuisance parameters per source of uncertainty: the rows of the systematics table."""
    return {
        **systematics.sources(cfg.systematics),
        **{v.name: [v.name] for v in cfg.variations},
        **FIT_NUISANCES,
    }


def template_event_weights(cfg: AnalysisConfig, records: dict[str, SampleRecord]) -> dict[str, dict[str, float]]:
    """Per region, the largest per-event weight of the MC samples that make up each template."""
    out: dict[str, dict[str, float]] = {}
    for region in cfg.regions:
        weights = out.setdefault(region.name, {})
        for record in records.values():
            if record.role in ("signal", "background") and record.resonance == region.resonance and record.weight is not None:
                weights[record.template] = max(weights.get(record.template, 0.0), record.weight)
    return out


def analysis_workspace(cfg: AnalysisConfig, out: Path, *, allow_missing_samples: bool = False) -> dict:
    """Build, write and return the workspace of an analysis from the process stage's outputs in ``out``.

    A signal or background sample whose files were all skipped would silently leave its
    template out: that is a FitError unless ``allow_missing_samples``.
    """
    hists = histograms.load_pickle(out / "histograms.pkl")
    records = read_sample_records(out / "summary.json")
    missing = [name for name, r in records.items() if r.files == 0 and r.role in ("signal", "background")]
    if missing and not allow_missing_samples:
        raise FitError(
            f"{out / 'summary.json'}: sample(s) {', '.join(missing)} had no usable file (all skipped): their templates are "
            "missing; --allow-missing-samples fits without them"
        )
    observed_samples = [name for name, record in records.items() if record.role == "data"]
    templates, observed = histograms.templates_for_fit(hists["templates"], cfg, observed_samples)
    templates, observed, pruned = histograms.prune_empty_bins(templates, observed)
    for region, bins in pruned.items():
        log.warning("fit: region %s: %d bin(s) without any MC expectation left out: %s", region, len(bins), bins)
    if not templates:
        raise FitError(f"{out / 'histograms.pkl'}: no region has expected events; nothing to fit")
    floored: dict[str, list[int]] = {}
    if cfg.fit.floor_empty_background:
        floored = histograms.floor_empty_background(templates, cfg.fit.signal_template, template_event_weights(cfg, records))
    for region, bins in floored.items():
        log.warning("fit: region %s: %d bin(s) with signal but no background MC get one background event: %s", region, len(bins), bins)
    spec = build_workspace(templates, cfg.fit, observations=observed or None, measurement=cfg.name)
    write_json(spec, out / "workspace.json")
    write_json({"pruned_bins": pruned, "floored_bins": floored}, out / "workspace_pruning.json")
    return spec


def fit_analysis(cfg: AnalysisConfig, out: Path, *, allow_missing_samples: bool = False) -> dict:
    """The fit stage: the analysis's workspace and every inference step of ``cfg.fit`` on it, into ``out/fit``."""
    analysis_workspace(cfg, out, allow_missing_samples=allow_missing_samples)
    # by path, so that the fit summary names the workspace it fitted
    return run_inference(
        out / "workspace.json",
        out / "fit",
        cfg.fit,
        groups=impact_groups(cfg),
        sources=systematic_sources(cfg),
    )
