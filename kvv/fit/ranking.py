"""Nuisance-parameter impacts on the POI and grouped impacts (stat/syst split).

Definitions
-----------
* Impact of one NP: the shift of mu-hat when the NP is fixed at theta-hat +- sigma-hat
  (post-fit) or theta-hat +- sigma_0 (pre-fit) and everything else is refitted.
* Grouped impact of a set G of parameters: ``sqrt(sigma_mu^2 - sigma_mu|G fixed^2)``,
  where ``sigma_mu|G fixed`` is the POI error with the parameters of G fixed at their
  best-fit values.  It is computed from the Hessian at the best fit (conditional
  covariance), i.e. exactly what a refit with G fixed gives in the quadratic approximation.
* Statistical uncertainty: sigma_mu with *all constrained* NPs fixed (staterror gammas
  included, so MC statistics count as systematic); only unconstrained parameters
  (normfactors) float.  Systematic = quadrature difference to the total.
"""

from __future__ import annotations

import fnmatch
import logging

import numpy as np

from .infer import FitResult, _constrained
from .likelihood import FitError, Likelihood
from .optimize import Curvature, minimize

log = logging.getLogger(__name__)


def _conditional_sigma(lh: Likelihood, fit: FitResult, fixed_mask: np.ndarray) -> float:
    """POI error with the parameters in ``fixed_mask`` held at their best-fit values."""
    free = ~lh.fixed & ~fixed_mask
    free_idx = np.flatnonzero(~lh.fixed)
    # Hessian of -2lnL in the originally free parameters is 2 * inverse covariance
    sub = fit.covariance[np.ix_(free_idx, free_idx)]
    hess = 2.0 * np.linalg.pinv(sub, hermitian=True)
    keep = free[free_idx]
    reduced = 2.0 * np.linalg.pinv(hess[np.ix_(keep, keep)], hermitian=True)
    poi_pos = int(np.flatnonzero(free_idx[keep] == lh.poi_index)[0])
    return float(np.sqrt(max(reduced[poi_pos, poi_pos], 0.0)))


def constrained_mask(lh: Likelihood) -> np.ndarray:
    """Boolean mask of all constrained parameters."""
    mask = np.zeros(lh.npars, dtype=bool)
    for _, sl, _, _ in _constrained(lh):
        mask[sl] = True
    return mask


def _group_mask(lh: Likelihood, patterns: list[str]) -> np.ndarray:
    """Parameters whose name or modifier name matches any glob pattern (``corr_pid_*``, ``staterror*``)."""
    config = lh.model.config
    mask = np.zeros(lh.npars, dtype=bool)
    for name in config.par_order:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            mask[config.par_slice(name)] = True
    for index, label in enumerate(lh.names):
        if any(fnmatch.fnmatchcase(label, p) for p in patterns):
            mask[index] = True
    return mask


def default_groups(lh: Likelihood) -> dict[str, list[str]]:
    """One group per modifier type among the constrained parameters (normsys, histosys, staterror, ...)."""
    groups: dict[str, list[str]] = {}
    for channel_sample_mods in lh.model.spec["channels"]:
        for sample in channel_sample_mods["samples"]:
            for modifier in sample["modifiers"]:
                if modifier["type"] in ("normfactor", "shapefactor"):
                    continue
                groups.setdefault(modifier["type"], [])
                if modifier["name"] not in groups[modifier["type"]]:
                    groups[modifier["type"]].append(modifier["name"])
    return groups


def grouped_impacts(lh: Likelihood, fit: FitResult, groups: dict[str, list[str]] | None = None, stat_free: list[str] | None = None) -> dict:
    """Total, statistical and systematic POI errors, and the impact of each group (see module docstring).

    ``stat_free`` lists glob patterns of constrained parameters that still float in the
    stat-only fit (e.g. ``["mu_bkg_*"]`` to treat data-driven background normalisations as statistical).
    """
    groups = default_groups(lh) if groups is None else groups
    total = float(fit.uncertainty[lh.poi_index])
    stat_fixed = constrained_mask(lh) & ~_group_mask(lh, stat_free or [])
    stat = _conditional_sigma(lh, fit, stat_fixed)
    group_impacts: dict[str, dict[str, float | int]] = {}
    out = {"total": total, "stat": stat, "syst": float(np.sqrt(max(total**2 - stat**2, 0.0))), "groups": group_impacts}
    for group, patterns in groups.items():
        mask = _group_mask(lh, patterns)
        if not mask.any():
            raise FitError(f"nuisance group '{group}' matches no parameter ({patterns})")
        mask[lh.poi_index] = False
        sigma = _conditional_sigma(lh, fit, mask)
        group_impacts[group] = {"impact": float(np.sqrt(max(total**2 - sigma**2, 0.0))), "n_parameters": int(mask.sum())}
    return out


def default_sources(lh: Likelihood) -> dict[str, list[str]]:
    """One source per constrained modifier name (a staterror covers all bins of its channel)."""
    return {name: [name] for names in default_groups(lh).values() for name in names}


def systematics_table(lh: Likelihood, fit: FitResult, sources: dict[str, list[str]] | None = None) -> dict:
    """Impact of each source of uncertainty on the POI (grouped impacts, largest first) with the
    statistical, systematic and total uncertainties, as in the tables of the papers."""
    sources = default_sources(lh) if sources is None else sources
    present = {name: patterns for name, patterns in sources.items() if _group_mask(lh, patterns).any()}
    table = grouped_impacts(lh, fit, present)
    # a source whose variations changed no template has no parameter: listed with zero impact
    table["groups"].update({name: {"impact": 0.0, "n_parameters": 0} for name in sources if name not in present})
    table["groups"] = dict(sorted(table["groups"].items(), key=lambda kv: -kv[1]["impact"]))
    return table


def impacts(lh: Likelihood, fit: FitResult, data: np.ndarray | None = None, *, refit_top: int | None = 20) -> list[dict]:
    """Pre- and post-fit +-1 sigma impacts of every constrained NP on the POI, largest first.

    All NPs get the linear estimate ``cov(mu, theta) / var(theta) * shift``; the
    ``refit_top`` largest (all if None) are then recomputed with full refits.
    """
    poi = lh.poi_index
    mu_hat = fit.bestfit[poi]
    rows = []
    for _, sl, _, widths in _constrained(lh):
        for index, sigma0 in zip(range(lh.npars)[sl], widths, strict=True):
            if lh.fixed[index]:
                continue
            sigma = fit.uncertainty[index]
            slope = fit.covariance[poi, index] / sigma**2 if sigma > 0 else 0.0
            rows.append(
                {
                    "name": lh.names[index],
                    "index": index,
                    "prefit_width": float(sigma0),
                    "postfit_up": slope * sigma,
                    "postfit_down": -slope * sigma,
                    "prefit_up": slope * sigma0,
                    "prefit_down": -slope * sigma0,
                    "method": "linear",
                }
            )
    rows.sort(key=lambda r: -abs(r["postfit_up"]))
    n_refit = len(rows) if refit_top is None else min(refit_top, len(rows))
    low, high = lh.bounds.T
    # the refits stay near the best fit: Newton steps from its Hessian
    curvature = Curvature.at(lh, fit.bestfit, data) if n_refit else None
    for row in rows[:n_refit]:
        index = row["index"]
        sigma0 = row["prefit_width"]
        for key, shift in (
            ("postfit_up", fit.uncertainty[index]),
            ("postfit_down", -fit.uncertainty[index]),
            ("prefit_up", sigma0),
            ("prefit_down", -sigma0),
        ):
            value = float(np.clip(fit.bestfit[index] + shift, low[index], high[index]))
            opt = minimize(lh, data, init=fit.bestfit, fixed={index: value}, curvature=curvature)
            row[key] = float(opt.x[poi] - mu_hat)
        row["method"] = "refit"
    for row in rows:
        for key in ("postfit_up", "postfit_down", "prefit_up", "prefit_down"):
            row[key] = float(row[key])
    rows.sort(key=lambda r: -max(abs(r["postfit_up"]), abs(r["postfit_down"])))
    log.info("impacts: %d NPs, %d refitted", len(rows), n_refit)
    return rows
