"""Training diagnostics: ROC/AUC, overtraining KS tests, importances, SR efficiencies, BDTc weights.

Metric functions are pure numpy/scipy; plotting imports matplotlib lazily so that
workers importing :mod:`kvv.bdt` do not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from kvv.bdt.kfold import FoldedFit
from kvv.config.bdt import BDTConfig
from kvv.io.artefacts import atomic_path, write_json

KS_THRESHOLD = 0.01


def weighted_roc(scores: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(background efficiency, signal efficiency) for every distinct threshold, from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    w = np.ones(len(scores)) if w is None else np.asarray(w, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    s, y, w = scores[order], y[order], w[order]
    tp = np.cumsum(np.where(y, w, 0.0))
    fp = np.cumsum(np.where(y, 0.0, w))
    # Only the last row of each group of tied scores is a valid threshold.
    last = np.r_[s[1:] != s[:-1], True]
    tpr = np.r_[0.0, tp[last] / tp[-1]]
    fpr = np.r_[0.0, fp[last] / fp[-1]]
    return fpr, tpr


def weighted_auc(scores: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Area under the weighted ROC curve (trapezoidal, ties count one half)."""
    fpr, tpr = weighted_roc(scores, y, w)
    return float(np.trapezoid(tpr, fpr))


def ks_overtraining(fit: FoldedFit, y: np.ndarray, common: np.ndarray | None = None) -> dict[str, float]:
    """KS p-value of train vs test (out-of-fold) scores, per class, pooled over folds.

    Unweighted on purpose: both samples come from the same events, so the
    physics weights would only add variance to the comparison. ``common``
    restricts both samples to the same rows: BDT2's training and test rows
    were selected by different BDT1 fold models, whose tails differ, so
    without it the test also compares two selections, not just two fits.
    """
    y = np.asarray(y, dtype=bool)
    keep = np.ones(len(y), dtype=bool) if common is None else np.asarray(common, dtype=bool)
    train_s = np.concatenate([s[keep[rows]] for s, rows in zip(fit.train_scores, fit.train_rows, strict=True)])
    train_y = np.concatenate([y[rows & keep] for rows in fit.train_rows])
    out = {}
    for label, cls in (("signal", True), ("background", False)):
        out[label] = float(stats.ks_2samp(train_s[train_y == cls], fit.oof[keep & (y == cls)]).pvalue)
    return out


def passes_every_fold(fit: FoldedFit, cut: float) -> np.ndarray:
    """Rows whose score is above ``cut`` for every fold model: each model scored its
    own fold out of fold and the other rows in training, so nothing is re-predicted."""
    passed = fit.oof > cut
    for scores, rows in zip(fit.train_scores, fit.train_rows, strict=True):
        passed[rows] &= scores > cut
    return passed


def gain_importance(fit: FoldedFit) -> dict[str, float]:
    """Total gain per feature summed over folds, normalised to 1."""
    total = dict.fromkeys(fit.model.features, 0.0)
    for booster in fit.model.boosters:
        for name, gain in booster.get_score(importance_type="total_gain").items():
            if isinstance(gain, list):  # per class only from a multi-class gblinear booster, never kvv's
                raise TypeError(f"feature {name!r} has per-class gains; expected a binary tree booster")
            total[name] += gain
    norm = sum(total.values()) or 1.0
    return {k: v / norm for k, v in sorted(total.items(), key=lambda kv: -kv[1])}


def summary_numbers(
    fit1: FoldedFit,
    fit2: FoldedFit,
    y: np.ndarray,
    w: np.ndarray,
    sample: np.ndarray,
    bdt2_all: np.ndarray,
    cfg: BDTConfig,
) -> dict[str, Any]:
    """AUCs, KS p-values, efficiencies and purities at BDT1 > cut and in the SR, all out-of-fold.

    Purities use the physics weights, i.e. the signal at its SM rate.
    """
    y = np.asarray(y, dtype=bool)
    passed = fit1.oof > cfg.bdt1_cut
    in_sr = passed & (np.nan_to_num(bdt2_all, nan=-1.0) > cfg.sr_bdt2_cut)

    def eff(mask: np.ndarray, sel: np.ndarray) -> float:
        total = w[mask].sum()
        return float(w[mask & sel].sum() / total) if total > 0 else float("nan")

    def purity(sel: np.ndarray) -> float:
        total = w[sel].sum()
        return float(w[sel & y].sum() / total) if total > 0 else float("nan")

    ks1, ks2 = ks_overtraining(fit1, y), ks_overtraining(fit2, y[passed], passes_every_fold(fit1, cfg.bdt1_cut)[passed])
    per_sample = {str(s): {"eff_bdt1": eff(sample == s, passed), "eff_sr": eff(sample == s, in_sr)} for s in np.unique(sample)}
    return {
        "auc_bdt1": weighted_auc(fit1.oof, y, w),
        "auc_bdt2": weighted_auc(fit2.oof, y[passed], w[passed]),
        "ks_pvalue_bdt1": ks1,
        "ks_pvalue_bdt2": ks2,
        "overtraining_flag": bool(min(*ks1.values(), *ks2.values()) < KS_THRESHOLD),
        "signal_eff_bdt1": eff(y, passed),
        "signal_eff_sr": eff(y, in_sr),
        "background_rejection_bdt1": 1.0 - eff(~y, passed),
        "background_rejection_sr": 1.0 - eff(~y, in_sr),
        "purity_bdt1": purity(passed),
        "purity_sr": purity(in_sr),
        "per_sample": per_sample,
        "sr_cuts": {"bdt1": cfg.bdt1_cut, "bdt2": cfg.sr_bdt2_cut},
        "importance_bdt1": gain_importance(fit1),
        "importance_bdt2": gain_importance(fit2),
    }


def _plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ROOT)
    return plt


def plot_roc(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> None:
    """ROC curves (background rejection vs signal efficiency) with AUC in the legend."""
    plt = _plots()
    fig, ax = plt.subplots()
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(tpr, 1.0 - fpr, label=f"{name} (AUC = {auc:.4f})")
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("background rejection")
    ax.legend(loc="lower left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_overtraining(path: Path, name: str, fit: FoldedFit, y: np.ndarray, ks: dict[str, float]) -> None:
    """Train (histogram) vs test (points) score distributions per class, normalised."""
    plt = _plots()
    y = np.asarray(y, dtype=bool)
    train_s = np.concatenate(fit.train_scores)
    train_y = np.concatenate([y[rows] for rows in fit.train_rows])
    bins = np.linspace(0.0, 1.0, 41)
    centres = 0.5 * (bins[1:] + bins[:-1])
    fig, ax = plt.subplots()
    for label, cls, colour in (("signal", True, "C0"), ("background", False, "C3")):
        ax.hist(train_s[train_y == cls], bins=bins, density=True, histtype="step", color=colour, label=f"{label} train")
        test, _ = np.histogram(fit.oof[y == cls], bins=bins, density=True)
        ax.plot(centres, test, "o", color=colour, ms=4, label=f"{label} test (KS p = {ks[label]:.3g})")
    ax.set_yscale("log")
    ax.set_xlabel(f"{name} score")
    ax.set_ylabel("normalised")
    ax.legend(fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_importance(path: Path, name: str, importance: dict[str, float], top: int = 25) -> None:
    """Horizontal bar chart of the normalised total gain of the top features."""
    plt = _plots()
    items = list(importance.items())[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(items) + 2))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel(f"{name} normalised gain")
    ax.tick_params(axis="y", labelsize="x-small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_continuum_weights(path: Path, info: dict[str, Any]) -> None:
    """Distribution of the BDTc weights on continuum MC (clipped values pile up at the clip)."""
    plt = _plots()
    fig, ax = plt.subplots()
    w = info["mc_weights"]
    ax.hist(w, bins=np.linspace(0.0, max(float(w.max()), 1e-3) * 1.01, 51), weights=info["mc_event_weights"], histtype="step")
    ax.set_yscale("log")
    ax.set_xlabel("continuum weight p/(1-p)")
    ax.set_ylabel("weighted MC events")
    ax.set_title(f"data/MC ratio {info['ratio']:.3f}, closure {info['closure']:.3f}", fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def make_diagnostics(
    directory: Path,
    fit1: FoldedFit,
    fit2: FoldedFit,
    y: np.ndarray,
    w: np.ndarray,
    passed: np.ndarray,
    summary: dict[str, Any],
    continuum_info: dict[str, Any] | None = None,
) -> list[Path]:
    """Write all diagnostic PNGs and ``summary.json`` into ``directory``; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, dtype=bool)
    curves = {
        "BDT1": (*weighted_roc(fit1.oof, y, w), summary["auc_bdt1"]),
        "BDT2 (BDT1 > cut)": (*weighted_roc(fit2.oof, y[passed], w[passed]), summary["auc_bdt2"]),
    }
    paths = [directory / "roc.png"]
    plot_roc(paths[-1], curves)
    for name, fit, yy in (("bdt1", fit1, y), ("bdt2", fit2, y[passed])):
        paths.append(directory / f"overtraining_{name}.png")
        plot_overtraining(paths[-1], name.upper(), fit, yy, summary[f"ks_pvalue_{name}"])
        paths.append(directory / f"importance_{name}.png")
        plot_importance(paths[-1], name.upper(), summary[f"importance_{name}"])
    if continuum_info is not None:
        paths.append(directory / "continuum_weights.png")
        plot_continuum_weights(paths[-1], continuum_info)
    paths.append(write_json(summary, directory / "summary.json"))
    return paths
