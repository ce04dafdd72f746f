"""k-fold training of one BDT stage: model k learns from every fold but k and scores fold k."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from kvv.bdt.folds import fold_index, training_mask
from kvv.bdt.model import FoldedModel
from kvv.config.bdt import XGBParams

log = logging.getLogger(__name__)


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
