"""Continuum reweighting: BDTc separates off-resonance data from continuum MC after the BDT1 cut."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kvv.bdt.diagnostics import weighted_auc
from kvv.bdt.kfold import train_folded
from kvv.bdt.model import ContinuumReweighter, continuum_weight
from kvv.config.bdt import ContinuumReweightConfig


def _after_cut(table: pd.DataFrame | Mapping[str, np.ndarray], cut: float, what: str) -> pd.DataFrame:
    table = table if isinstance(table, pd.DataFrame) else pd.DataFrame(dict(table))
    if "bdt1" not in table.columns:
        raise KeyError(f"{what} needs a 'bdt1' column (out-of-fold BDT1 score) to apply the BDT1 cut")
    return table[table["bdt1"].to_numpy() > cut]


def train_continuum_reweighter(
    offres_data_table: pd.DataFrame | Mapping[str, np.ndarray],
    continuum_mc_table: pd.DataFrame | Mapping[str, np.ndarray],
    cfg: ContinuumReweightConfig,
    *,
    n_folds: int = 2,
) -> tuple[ContinuumReweighter, dict[str, Any]]:
    """Train the k-folded BDTc on events with ``bdt1 > cfg.bdt1_cut``.

    Data are label 1 (weight column if present, else 1), continuum MC label 0 with
    ``weight * cfg.mc_lumi_scale``. Returns the reweighter and a dict with the
    normalisation ratio sum(data)/sum(MC), the out-of-fold MC weights and a closure
    number sum(w * w_MC) / sum(data), which should be close to 1.
    """
    data = _after_cut(offres_data_table, cfg.bdt1_cut, "off-resonance table")
    mc = _after_cut(continuum_mc_table, cfg.bdt1_cut, "continuum MC table")
    if len(data) == 0 or len(mc) == 0:
        raise ValueError(f"BDTc: no events after BDT1 > {cfg.bdt1_cut} (data {len(data)}, MC {len(mc)})")
    w_data = data["weight"].to_numpy(np.float64) if "weight" in data.columns else np.ones(len(data))
    w_mc = mc["weight"].to_numpy(np.float64) * cfg.mc_lumi_scale
    ratio = float(w_data.sum() / w_mc.sum())

    x = np.concatenate([data[cfg.features].to_numpy(np.float32), mc[cfg.features].to_numpy(np.float32)])
    y = np.concatenate([np.ones(len(data)), np.zeros(len(mc))])
    w = np.concatenate([w_data, w_mc])
    # A common factor leaves p/(1-p) unchanged but keeps min_child_weight meaningful.
    w *= len(w) / w.sum()
    event = np.concatenate([data["__event__"].to_numpy(np.int64), mc["__event__"].to_numpy(np.int64)])
    fit = train_folded("bdtc", x, y, w, event, cfg, cfg.features, n_folds)

    p_mc = fit.oof[len(data) :]
    mc_weights = continuum_weight(p_mc, cfg.clip)
    info = {
        "ratio": ratio,
        "n_data": len(data),
        "n_mc": len(mc),
        "auc": weighted_auc(fit.oof, y, w),
        "closure": float((mc_weights * w_mc).sum() / w_data.sum()),
        "fraction_clipped": float(np.mean(mc_weights >= cfg.clip)),
        "mc_weights": mc_weights,
        "mc_event_weights": w_mc,
        "mc_p": p_mc,
    }
    return ContinuumReweighter(fit.model, cfg.clip, cfg.bdt1_cut, ratio), info
