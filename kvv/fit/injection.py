"""Signal-injection study with Poisson toys: pulls ``(mu_hat - mu_inj) / sigma_mu``."""

from __future__ import annotations

import logging

import numpy as np

from .infer import covariance
from .likelihood import Likelihood
from .optimize import minimize

log = logging.getLogger(__name__)

DEFAULT_INJECTIONS: tuple[float, ...] = (0.0, 1.0, 5.0, 20.0)


def _summary(mu_inj: float, mu_hat: np.ndarray, pull: np.ndarray, n_failed: int) -> dict:
    n = len(pull)
    width = float(np.std(pull, ddof=1)) if n > 1 else float("nan")
    return {
        "mu_injected": mu_inj,
        "n_toys": n,
        "n_failed": n_failed,
        "mu_mean": float(np.mean(mu_hat)) if n else float("nan"),
        "pull_mean": float(np.mean(pull)) if n else float("nan"),
        "pull_mean_error": width / np.sqrt(n) if n > 1 else float("nan"),
        "pull_width": width,
        "pull_width_error": width / np.sqrt(2 * (n - 1)) if n > 1 else float("nan"),
        "pulls": pull.tolist(),
    }


def injection_study(
    lh: Likelihood,
    mu_values: tuple[float, ...] = DEFAULT_INJECTIONS,
    n_toys: int = 100,
    *,
    seed: int = 0,
    pars: np.ndarray | None = None,
    poi_bounds: tuple[float, float] | None = None,
) -> list[dict]:
    """For each injected POI value fit ``n_toys`` Poisson toys and summarise the pulls.

    Toys are generated around ``pars`` (default: the model's initial values)
    with the POI replaced by the injected value; main and auxiliary data are
    both fluctuated.  The POI range is widened to ``poi_bounds`` (default: five
    expected POI errors beyond the injected values, and at least
    ``(-10, 2 * max(mu_values) + 10)``) so that pulls are not truncated at 0
    or at the upper bound; the model's bounds are restored afterwards.
    """
    rng = np.random.default_rng(seed)
    base = (lh.init if pars is None else np.asarray(pars, float)).copy()
    saved = lh.bounds[lh.poi_index].copy()
    if poi_bounds is None:
        truth = base.copy()
        truth[lh.poi_index] = max(mu_values)
        sigma = float(np.sqrt(max(covariance(lh, truth, lh.expected_data(truth))[lh.poi_index, lh.poi_index], 0.0)))
        poi_bounds = (min(-10.0, min(mu_values) - 5 * sigma), max(2.0 * max(mu_values) + 10.0, max(mu_values) + 5 * sigma))
    lh.bounds[lh.poi_index] = poi_bounds
    try:
        results = []
        for mu_inj in mu_values:
            truth = base.copy()
            truth[lh.poi_index] = mu_inj
            mu_hat, pulls, failed = [], [], 0
            for _ in range(n_toys):
                data = lh.toy(truth, rng)
                opt = minimize(lh, data, init=truth)
                sigma = np.sqrt(covariance(lh, opt.x, data)[lh.poi_index, lh.poi_index])
                if not (opt.success and sigma > 0):
                    failed += 1
                    continue
                mu_hat.append(opt.x[lh.poi_index])
                pulls.append((opt.x[lh.poi_index] - mu_inj) / sigma)
            summary = _summary(mu_inj, np.asarray(mu_hat), np.asarray(pulls), failed)
            log.info("injection mu=%g: pull mean %.3f +- %.3f, width %.3f +- %.3f", mu_inj, summary["pull_mean"],
                     summary["pull_mean_error"], summary["pull_width"], summary["pull_width_error"])
            results.append(summary)
        return results
    finally:
        lh.bounds[lh.poi_index] = saved
