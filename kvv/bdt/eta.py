"""eta(BDT2): the signal-efficiency transform of a classifier score.

eta(s) = 1 - CDF_signal(s) is the weighted fraction of signal with score above s.
It is monotonically non-increasing in s and uniformly distributed on signal,
so fit bins in eta have known signal efficiency (2023 ITA analysis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Weighted quantiles of ``values`` at cumulative-weight fractions ``levels``."""
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    w = np.asarray(weights, dtype=np.float64)[order]
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    # Midpoint CDF: each event contributes half its weight at its own position,
    # which makes the table symmetric under reversing the score.
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(levels, cdf, v)


@dataclass(frozen=True)
class SignalEfficiencyTransform:
    """Piecewise-linear eta(score) from a table of signal-score quantiles."""

    scores: np.ndarray  # strictly increasing knot positions
    eta: np.ndarray  # 1 - CDF at the knots, non-increasing from 1 to 0

    @classmethod
    def fit(cls, signal_scores: np.ndarray, signal_weights: np.ndarray | None = None, n_knots: int = 1001) -> SignalEfficiencyTransform:
        """Build the quantile table from (weighted) signal scores."""
        signal_scores = np.asarray(signal_scores, dtype=np.float64)
        if signal_scores.size == 0:
            raise ValueError("cannot fit eta transform without signal events")
        if signal_weights is None:
            signal_weights = np.ones_like(signal_scores)
        levels = np.linspace(0.0, 1.0, n_knots)
        knots = weighted_quantiles(signal_scores, signal_weights, levels)
        # np.interp needs increasing x; tied knots (point masses in the score) are
        # merged, keeping the smallest eta: the signal fraction strictly above the tie.
        knots, first = np.unique(knots[::-1], return_index=True)
        eta = (1.0 - levels)[::-1][first]
        return cls(scores=knots, eta=eta)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """eta of each score: 1 below the lowest signal score, 0 above the highest."""
        return np.interp(np.asarray(scores, dtype=np.float64), self.scores, self.eta, left=1.0, right=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form for the model sidecar."""
        return {"interpolation": "linear", "scores": self.scores.tolist(), "eta": self.eta.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignalEfficiencyTransform:
        """Inverse of :meth:`to_dict`."""
        return cls(scores=np.asarray(data["scores"], dtype=np.float64), eta=np.asarray(data["eta"], dtype=np.float64))
