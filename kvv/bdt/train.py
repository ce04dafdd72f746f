"""Training of BDT1, BDT2 (after the BDT1 cut), eta(BDT2) and the BDTc: ``train_all``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kvv.bdt import diagnostics as diag
from kvv.bdt.eta import SignalEfficiencyTransform
from kvv.bdt.kfold import as_frame, class_balanced_weights, train_folded
from kvv.bdt.model import BDTModels, models_up_to_date, read_sidecar, save_models
from kvv.bdt.reweight import train_continuum_reweighter
from kvv.config.bdt import BDTConfig

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("__event__", "weight", "sample", "is_signal")


def _check_table(table: pd.DataFrame, features: list[str], what: str) -> None:
    missing = [c for c in (*REQUIRED_COLUMNS, *features) if c not in table.columns]
    if missing:
        raise KeyError(f"{what} lacks columns {missing}")


def _skipped_summary(outdir: Path) -> dict[str, Any]:
    summary = dict(read_sidecar(outdir).get("summary", {}))
    summary["skipped"] = True
    return summary


def train_all(
    tables: pd.DataFrame | Mapping[str, np.ndarray],
    cfg: BDTConfig,
    outdir: Path,
    *,
    config_hash: str,
    offres_table: pd.DataFrame | Mapping[str, np.ndarray] | None = None,
    diagnostics: bool = True,
) -> dict[str, Any]:
    """Train BDT1, BDT2, eta(BDT2) and (with ``offres_table``) the BDTc; write models and plots.

    Returns summary numbers (AUCs, efficiencies, KS p-values, continuum ratio);
    when ``outdir`` already holds models for ``config_hash`` nothing is retrained.
    """
    outdir = Path(outdir)
    if models_up_to_date(outdir, config_hash):
        log.info("BDT models in %s are up to date (hash %s); skipping training", outdir, config_hash[:12])
        return _skipped_summary(outdir)

    table = as_frame(tables)
    _check_table(table, sorted({*cfg.bdt1.features, *cfg.bdt2.features}), "training table")
    y = table["is_signal"].to_numpy().astype(bool)
    w_phys = table["weight"].to_numpy(np.float64)
    event = table["__event__"].to_numpy(np.int64)

    fit1 = train_folded(
        "bdt1",
        table[cfg.bdt1.features].to_numpy(np.float32),
        y,
        class_balanced_weights(y, w_phys),
        event,
        cfg.bdt1,
        cfg.bdt1.features,
        cfg.n_folds,
    )
    passed = fit1.oof > cfg.bdt1_cut
    t2 = table[passed]
    y2 = y[passed]
    fit2 = train_folded(
        "bdt2",
        t2[cfg.bdt2.features].to_numpy(np.float32),
        y2,
        class_balanced_weights(y2, w_phys[passed]),
        event[passed],
        cfg.bdt2,
        cfg.bdt2.features,
        cfg.n_folds,
    )
    eta = SignalEfficiencyTransform.fit(fit2.oof[y2], w_phys[passed][y2], n_knots=cfg.eta_knots)

    bdt2_all = np.full(len(table), np.nan, dtype=np.float32)
    bdt2_all[passed] = fit2.oof
    summary = diag.summary_numbers(fit1, fit2, y, w_phys, table["sample"].to_numpy(), bdt2_all, cfg)

    models = BDTModels(fit1.model, fit2.model, cfg.bdt1_cut, eta, config_hash=config_hash)
    continuum_info = None
    if cfg.continuum is not None and offres_table is not None:
        is_continuum = table["sample"].isin(cfg.continuum.samples).to_numpy()
        mc = table[is_continuum].assign(bdt1=fit1.oof[is_continuum])
        off = as_frame(offres_table)
        off = off.assign(bdt1=fit1.model.predict(off[cfg.bdt1.features].to_numpy(np.float32), off["__event__"].to_numpy()))
        models.continuum, continuum_info = train_continuum_reweighter(off, mc, cfg.continuum, n_folds=cfg.n_folds)
        summary["continuum"] = {k: v for k, v in continuum_info.items() if np.isscalar(v)}
    elif cfg.continuum is not None:
        log.warning("continuum reweighting configured but no off-resonance table given; BDTc not trained")

    summary["skipped"] = False
    models.summary = summary
    save_models(outdir, models)
    if diagnostics:
        diag.make_diagnostics(outdir / "diagnostics", fit1, fit2, y, w_phys, passed, summary, continuum_info)
    return summary
