"""Event-number folding: event k is only ever scored by the model that did not see fold k."""

from __future__ import annotations

import numpy as np

FOLD_RULE = "__event__ % n_folds"


def fold_index(event_number: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold of each event, ``event_number % n_folds`` (even/odd for two folds)."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    # np.mod keeps the result in [0, n_folds) even for negative event numbers.
    return np.mod(np.asarray(event_number, dtype=np.int64), n_folds)


def training_mask(folds: np.ndarray, k: int) -> np.ndarray:
    """Rows that model ``k`` is trained on: every fold except ``k``."""
    return folds != k
