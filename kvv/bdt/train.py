"""k-fold training of BDT1, BDT2 (after the BDT1 cut) and the orchestration ``train_all``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from kvv.bdt.config import BDTConfig, XGBParams
from kvv.bdt.eta import SignalEfficiencyTransform
from kvv.bdt.folds import fold_index, training_mask
from kvv.bdt.model import BDTModels, FoldedModel, models_up_to_date, read_sidecar, save_models

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("__event__", "weight", "sample", "is_signal")


@dataclass
class FoldedFit:
    """A trained stage with its out-of-fold (test) and in-fold (train) scores."""

    model: FoldedModel
    oof: np.ndarray  # score of each row from the one model that did not see it
    train_scores: list[np.ndarray]  # per fold k: model k on its own training rows
    train_rows: list[np.ndarray]  # per fold k: boolean mask of those rows


def as_frame(table: pd.DataFrame | Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Accept a DataFrame or a dict of equal-length numpy arrays."""
    return table if isinstance(table, pd.DataFrame) else pd.DataFrame(dict(table))


def class_balanced_weights(is_signal: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Training weights: backgrounds by expected yield, total signal = total background, mean 1.

    Using the expected-yield weights keeps each background type at its physical
    share; the signal is then scaled to the background total. The overall factor
    to mean 1 keeps xgboost's hessian-based ``min_child_weight`` meaningful.
    """
    sig = np.asarray(is_signal, dtype=bool)
    w = np.asarray(weight, dtype=np.float64).copy()
    if np.any(w < 0):
        raise ValueError("negative event weights are not supported for training")
    s, b = w[sig].sum(), w[~sig].sum()
    if s <= 0 or b <= 0:
        raise ValueError("training needs signal and background with positive total weight")
    w[sig] *= b / s
    return w * (len(w) / w.sum())


def train_folded(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    event_number: np.ndarray,
    params: XGBParams,
    features: list[str],
    n_folds: int,
) -> FoldedFit:
    """Train model k on all folds but k, and score fold k with model k only."""
    x = np.asarray(x, dtype=np.float32)
    folds = fold_index(event_number, n_folds)
    oof = np.full(len(x), np.nan, dtype=np.float32)
    boosters, train_scores, train_rows = [], [], []
    for k in range(n_folds):
        rows = training_mask(folds, k)
        if not (y[rows].any() and (~y[rows].astype(bool)).any()):
            raise ValueError(f"{name} fold {k}: training rows lack signal or background")
        dtrain = xgb.QuantileDMatrix(x[rows], label=y[rows], weight=w[rows], feature_names=features)
        booster = xgb.train(params.booster_params(), dtrain, num_boost_round=params.n_estimators)
        # Scoring of the tables happens on CPU even for GPU-trained models.
        booster.set_param({"device": "cpu"})
        test = ~rows
        oof[test] = booster.inplace_predict(x[test], validate_features=False)
        train_scores.append(booster.inplace_predict(x[rows], validate_features=False))
        train_rows.append(rows)
        boosters.append(booster)
        log.info("%s: trained fold %d on %d rows", name, k, rows.sum())
    return FoldedFit(FoldedModel(name, list(features), boosters), oof, train_scores, train_rows)


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
    from kvv.bdt import diagnostics as diag
    from kvv.bdt.reweight import train_continuum_reweighter

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
        "bdt1", table[cfg.bdt1.features].to_numpy(np.float32), y,
        class_balanced_weights(y, w_phys), event, cfg.bdt1, cfg.bdt1.features, cfg.n_folds,
    )
    passed = fit1.oof > cfg.bdt1_cut
    t2 = table[passed]
    y2 = y[passed]
    fit2 = train_folded(
        "bdt2", t2[cfg.bdt2.features].to_numpy(np.float32), y2,
        class_balanced_weights(y2, w_phys[passed]), event[passed], cfg.bdt2, cfg.bdt2.features, cfg.n_folds,
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
        off = off.assign(
            bdt1=fit1.model.predict(off[cfg.bdt1.features].to_numpy(np.float32), off["__event__"].to_numpy())
        )
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
