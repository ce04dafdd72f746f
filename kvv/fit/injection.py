"""Signal-injection study with Poisson toys.

Each toy is fitted twice: freely, and with the POI fixed at the injected
value.  The pull is the signed root of the profile-likelihood ratio,
``sign(mu_hat - mu_inj) sqrt(t(mu_inj) - t(mu_hat))``: it equals
``(mu_hat - mu_inj) / sigma`` with the profile-likelihood (MINOS) error on
the side of ``mu_inj`` wherever the profile is parabolic, stays standard
normal (Wilks) where it is not, and ``|pull| <= 1`` is exactly "mu_inj lies in
the toy's 68 % interval".  MC-statistics-dominated templates make the
likelihood of mu far from parabolic (the default analysis's Asimov interval is
-1/+93 around 1), which is why the Hessian pull ``(mu_hat - mu_inj) /
sigma_Hesse`` is reported only alongside.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .batch import hessian_batch, minimize_batch
from .infer import covariance
from .likelihood import Likelihood

log = logging.getLogger(__name__)


def _mean_and_width(values: np.ndarray) -> dict[str, float]:
    n = len(values)
    if n < 2:
        return {"mean": float("nan"), "mean_error": float("nan"), "width": float("nan"), "width_error": float("nan")}
    width = float(np.std(values, ddof=1))
    return {"mean": float(np.mean(values)), "mean_error": width / np.sqrt(n), "width": width, "width_error": width / np.sqrt(2 * (n - 1))}


def _summary(mu_inj: float, mu_hat: np.ndarray, sigma_hesse: np.ndarray, pull: np.ndarray, n_failed: int) -> dict:
    n = len(mu_hat)
    stats = _mean_and_width(pull)
    positive = sigma_hesse > 0
    hesse = _mean_and_width((mu_hat[positive] - mu_inj) / sigma_hesse[positive])
    covered = float(np.mean(np.abs(pull) <= 1.0)) if n else float("nan")
    return {
        "mu_injected": mu_inj,
        "n_toys": n,
        "n_failed": n_failed,
        "mu_mean": float(np.mean(mu_hat)) if n else float("nan"),
        "mu_median": float(np.median(mu_hat)) if n else float("nan"),
        "sigma_hesse_median": float(np.median(sigma_hesse[positive])) if positive.any() else float("nan"),
        "pull_mean": stats["mean"],
        "pull_mean_error": stats["mean_error"],
        "pull_width": stats["width"],
        "pull_width_error": stats["width_error"],
        # fraction of toys whose 68 % profile-likelihood interval contains mu_inj
        "coverage_68": covered,
        "coverage_68_error": float(np.sqrt(covered * (1 - covered) / n)) if n else float("nan"),
        "hesse_pull_mean": hesse["mean"],
        "hesse_pull_width": hesse["width"],
        "hesse_not_positive": int((~positive).sum()),
        "pulls": pull.tolist(),
    }


def injection_study(
    lh: Likelihood,
    mu_values: Sequence[float],
    n_toys: int,
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
    or at the upper bound; the model's bounds are restored afterwards.  A toy
    counts as failed when either fit does not converge; toys whose Hessian is
    not positive in the POI are left out of the Hessian pulls only.
    """
    rng = np.random.default_rng(seed)
    poi = lh.poi_index
    base = (lh.init if pars is None else np.asarray(pars, float)).copy()
    saved = lh.bounds[poi].copy()
    if poi_bounds is None:
        truth = base.copy()
        truth[poi] = max(mu_values)
        sigma = float(np.sqrt(max(covariance(lh, truth, lh.expected_data(truth))[poi, poi], 0.0)))
        poi_bounds = (min(-10.0, min(mu_values) - 5 * sigma), max(2.0 * max(mu_values) + 10.0, max(mu_values) + 5 * sigma))
    lh.bounds[poi] = poi_bounds
    try:
        results = []
        for mu_inj in mu_values:
            truth = base.copy()
            truth[poi] = mu_inj
            # all toys of one injected value are fitted side by side (:mod:`.batch`)
            toys = lh.toys(truth, rng, n_toys)
            free = minimize_batch(lh, toys, init=truth)
            variance = np.asarray([c.covariance()[poi, poi] for c in hessian_batch(lh, free.x, toys)])
            fixed = minimize_batch(lh, toys, init=truth, fixed={poi: mu_inj})
            converged = free.success & fixed.success
            failed = int((~converged).sum())
            mu_hat = free.x[converged, poi]
            # a conditional fit can end a hair below the free one: that toy sits at mu_inj
            q = np.maximum(fixed.fval - free.fval, 0.0)[converged]
            sigmas = np.sqrt(np.maximum(variance[converged], 0.0))
            pulls = np.sign(mu_hat - mu_inj) * np.sqrt(q)
            summary = _summary(mu_inj, mu_hat, sigmas, pulls, failed)
            log.info(
                "injection mu=%g: pull mean %.3f +- %.3f, width %.3f +- %.3f, %d failed",
                mu_inj,
                summary["pull_mean"],
                summary["pull_mean_error"],
                summary["pull_width"],
                summary["pull_width_error"],
                failed,
            )
            results.append(summary)
        return results
    finally:
        lh.bounds[poi] = saved
