"""BDTs per event category: one BDT1/BDT2 model set per category, each in its own folder.

A K* analysis trains separate BDTs for neutral and charged K* (the categories of
``bdt.categories`` in the YAML); events outside every category get no score.
Without categories everything reduces to the single model set in ``model_dir``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kvv.bdt.model import SIDECAR, load_models_cached, models_up_to_date, score_chunk, stage_features
from kvv.config.bdt import BDTConfig
from kvv.selection import interval_mask


def model_dirs(cfg: BDTConfig, model_dir: Path) -> dict[str | None, Path]:
    """Folder of each category's models; ``{None: model_dir}`` without categories."""
    model_dir = Path(model_dir)
    if not cfg.categories:
        return {None: model_dir}
    return {name: model_dir / name for name in cfg.categories}


def category_masks(cfg: BDTConfig, columns: Mapping[str, np.ndarray] | pd.DataFrame) -> dict[str | None, np.ndarray]:
    """Rows of each category; raises when a row falls into two categories."""
    n = len(columns[next(iter(columns))])  # a Mapping or a DataFrame
    if not cfg.categories:
        return {None: np.ones(n, dtype=bool)}
    masks: dict[str | None, np.ndarray] = {}
    taken = np.zeros(n, dtype=bool)
    for name, cuts in cfg.categories.items():
        mask = interval_mask(columns, cuts)
        if (mask & taken).any():
            raise ValueError(f"bdt.categories overlap: category {name!r} shares events with an earlier one")
        masks[name], taken = mask, taken | mask
    return masks


def all_trained(cfg: BDTConfig, model_dir: Path) -> bool:
    """True when every category has a stored model set."""
    return all((d / SIDECAR).exists() for d in model_dirs(cfg, model_dir).values())


def all_up_to_date(cfg: BDTConfig, model_dir: Path, config_hash: str) -> bool:
    """True when every category's models were trained with ``config_hash``."""
    return all(models_up_to_date(d, config_hash) for d in model_dirs(cfg, model_dir).values())


def score(cfg: BDTConfig, model_dir: Path, columns: Mapping[str, np.ndarray], event_number: np.ndarray) -> dict[str, np.ndarray]:
    """BDT scores of every row, each from its category's models (NaN, continuum weight 1: no category)."""
    features = stage_features(cfg)
    event_number = np.asarray(event_number)
    dirs = model_dirs(cfg, model_dir)
    if not cfg.categories:
        return score_chunk(load_models_cached(dirs[None], features), columns, event_number)
    n = len(event_number)
    out = {name: np.full(n, np.nan) for name in ("bdt1", "bdt2", "eta_bdt2")}
    for name, mask in category_masks(cfg, columns).items():
        if not mask.any():
            continue
        models = load_models_cached(dirs[name], features)
        scores = score_chunk(models, {k: np.asarray(v)[mask] for k, v in columns.items()}, event_number[mask])
        for key, values in scores.items():
            out.setdefault(key, np.ones(n) if key == "continuum_weight" else np.full(n, np.nan))[mask] = values
    return out


def score_tables(cfg: BDTConfig, model_dir: Path, tables: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """:func:`score` of several tables (with ``__event__``) at once, one ``inplace_predict`` per model and fold.

    A chunk's nominal events and its object-varied copies go through the BDTs
    together: on small chunks xgboost's cost per call, not per row, dominates.
    Every row gets the scores :func:`score` gives it alone.
    """
    if len(tables) <= 1:  # nothing to join: no copies of a large chunk's columns
        return [score(cfg, model_dir, t, t["__event__"]) for t in tables]
    names = {f for features in stage_features(cfg).values() for f in features}
    names |= {c for cuts in cfg.categories.values() for c in cuts}
    joined = {name: np.concatenate([np.asarray(t[name]) for t in tables]) for name in names if name in tables[0]}
    scores = score(cfg, model_dir, joined, np.concatenate([np.asarray(t["__event__"]) for t in tables]))
    ends = np.cumsum([len(t["__event__"]) for t in tables])
    return [{key: values[end - len(t["__event__"]) : end] for key, values in scores.items()} for t, end in zip(tables, ends, strict=True)]
