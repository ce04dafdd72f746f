"""Fit plots with mplhep in a Belle II-like style, each saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
import numpy as np

from kvv.io.artefacts import atomic_path

from .likelihood import Likelihood

#: ROOT-like base style; Belle II plots are ROOT-styled
STYLE = mplhep.style.ROOT


def _belle2_label(ax: plt.Axes, text: str = "(own work)") -> None:
    ax.text(0.03, 0.95, r"$\bf{Belle\ II}$ " + text, transform=ax.transAxes, va="top", fontsize=14)


def _save(fig: plt.Figure, outdir: Path, name: str) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    paths = [outdir / f"{name}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return paths


def plot_templates(lh: Likelihood, pars: np.ndarray, outdir: Path, tag: str, data: np.ndarray | None = None) -> list[Path]:
    """Stacked expected yields per sample with data and a data/model ratio, one figure per channel."""
    config = lh.model.config
    data = lh.data if data is None else data
    by_sample = lh.expected_by_sample(pars)
    paths = []
    with plt.style.context(STYLE):
        for channel in config.channels:
            sl = config.channel_slices[channel]
            stack = by_sample[:, sl]
            keep = stack.sum(axis=1) > 0  # samples absent from this channel have zero yields
            observed = data[: config.nmaindata][sl]
            total = stack.sum(axis=0)
            edges = np.arange(len(total) + 1)
            fig, (ax, rax) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
            colours = [plt.cm.tab20(i % 20) for i in np.flatnonzero(keep)]  # fixed colour per sample across channels
            mplhep.histplot(
                list(stack[keep]), edges, stack=True, histtype="fill", label=list(np.asarray(config.samples)[keep]), color=colours, ax=ax
            )
            mplhep.histplot(observed, edges, yerr=np.sqrt(observed), histtype="errorbar", color="black", label="data", ax=ax)
            ax.set_ylabel("Events / bin")
            ax.set_ylim(0, 1.5 * max(observed.max(), total.max()))
            ax.legend(fontsize=9, ncol=2, loc="upper right")
            _belle2_label(ax, f"{tag}")
            ax.set_title(channel if len(channel) < 50 else channel[:47] + "...", fontsize=10)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio, err = observed / total, np.sqrt(observed) / total
            mplhep.histplot(ratio, edges, yerr=err, histtype="errorbar", color="black", ax=rax)
            rax.axhline(1.0, color="gray", ls="--")
            rax.set_ylim(0.5, 1.5)
            rax.set_ylabel("Data / model")
            rax.set_xlabel("Bin")
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in channel)
            paths += _save(fig, outdir, f"{tag}_{safe}")
    return paths


def plot_pulls(pulls: list[dict], outdir: Path, max_rows: int = 60) -> list[Path]:
    """Pulls and constraints of the constrained NPs with the largest |pull|."""
    rows = sorted(pulls, key=lambda r: -abs(r["pull"]))[:max_rows][::-1]
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 0.25 * len(rows) + 1.5))
        y = np.arange(len(rows))
        ax.axvspan(-2, 2, color="yellow", alpha=0.5)
        ax.axvspan(-1, 1, color="limegreen", alpha=0.5)
        ax.errorbar([r["pull"] for r in rows], y, xerr=[r["constraint"] for r in rows], fmt="ko", ms=3)
        ax.set_yticks(y, [r["name"] for r in rows], fontsize=7)
        ax.set_xlabel(r"$(\hat\theta - \theta_0)/\Delta\theta$")
        ax.set_xlim(-3, 3)
        return _save(fig, outdir, "pulls")


def plot_ranking(impacts: list[dict], outdir: Path, top: int = 20, poi: str = "mu") -> list[Path]:
    """Pre-fit (open) and post-fit (filled) +-1 sigma impacts of the ``top`` NPs on the POI."""
    rows = impacts[:top][::-1]
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
        y = np.arange(len(rows))
        for key, colour, fill in (("prefit", "tab:blue", False), ("postfit", "tab:blue", True)):
            for side, alpha in (("up", 1.0), ("down", 0.5)):
                ax.barh(
                    y,
                    [r[f"{key}_{side}"] for r in rows],
                    height=0.6,
                    fill=fill,
                    edgecolor=colour,
                    color=colour if fill else "none",
                    alpha=alpha,
                    label=f"{key} {side}",
                )
        ax.set_yticks(y, [r["name"] for r in rows], fontsize=7)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(rf"$\Delta\hat\{poi}$" if poi == "mu" else f"Δ{poi}")
        ax.legend(fontsize=8, loc="lower right")
        return _save(fig, outdir, "ranking")


def plot_scan(scan: dict, outdir: Path) -> list[Path]:
    """Profile likelihood scan with the 1 and 2 sigma lines."""
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.plot(scan["values"], scan["delta_twice_nll"], "k-")
        for level in (1.0, 4.0):
            ax.axhline(level, color="gray", ls="--")
        ax.set_xlabel(scan["parameter"])
        ax.set_ylabel(r"$-2\Delta\ln L$")
        _belle2_label(ax)
        return _save(fig, outdir, "likelihood_scan")


def plot_cls(limit: dict, outdir: Path) -> list[Path]:
    """Observed and expected CLs vs the POI with the +-1/2 sigma bands and the CL line."""
    scan = limit["scan"]
    mu, exp = scan["values"], np.asarray(scan["cls_expected"])
    with plt.style.context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.fill_between(mu, exp[:, 0], exp[:, 4], color="yellow", label=r"expected $\pm 2\sigma$")
        ax.fill_between(mu, exp[:, 1], exp[:, 3], color="limegreen", label=r"expected $\pm 1\sigma$")
        ax.plot(mu, exp[:, 2], "k--", label="expected")
        ax.plot(mu, scan["cls_observed"], "k-", label="observed")
        ax.axhline(1 - limit["cl"], color="red", label=f"{limit['cl']:.0%} CL")
        ax.set_xlabel("POI")
        ax.set_ylabel(r"CL$_s$")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=9)
        _belle2_label(ax)
        return _save(fig, outdir, "cls_scan")


def plot_injection(injection: list[dict], outdir: Path) -> list[Path]:
    """Pull distributions of the signal-injection study against the unit Gaussian, one panel per injected POI."""
    with plt.style.context(STYLE):
        fig, axes = plt.subplots(1, len(injection), figsize=(4 * len(injection), 4), sharey=True, squeeze=False)
        edges = np.linspace(-4, 4, 17)
        for ax, r in zip(axes[0], injection, strict=True):
            pulls = np.asarray(r["pulls"])
            ax.hist(pulls, bins=edges, histtype="step", color="k", label=f"{len(pulls)} toys")
            x = np.linspace(-4, 4, 200)
            ax.plot(x, len(pulls) * (edges[1] - edges[0]) * np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), "r-", label="N(0, 1)")
            ax.set_title(rf"$\mu_{{inj}}$ = {r['mu_injected']:g}: {r['pull_mean']:.2f} $\pm$ {r['pull_width']:.2f}", fontsize=11)
            ax.set_xlabel(r"profile-likelihood pull of $\hat\mu$")
        axes[0][0].set_ylabel("toys")
        axes[0][0].legend(fontsize=9)
        return _save(fig, outdir, "injection_pulls")
