"""Binned maximum-likelihood fits of mass peaks.

- :func:`fit_mbc_peak`: Mbc of fully reconstructed B decays, a Gaussian over an
  ARGUS function whose endpoint is the nominal E*_beam (as Belle II fits Mbc);
- :func:`fit_resonance`: the mass of a resonance such as the K*, a
  Breit-Wigner of full width ``width`` (optionally convolved with a fixed
  Gaussian resolution ``sigma``: a Voigtian) over a linear background.

Each shape is normalised inside the histogram's range, so the yields count the
events of the histogram. Weighted histograms (MC) are fitted with their sums of
squared weights (iminuit's scaled-Poisson treatment).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from iminuit import Minuit
from iminuit.cost import ExtendedBinnedNLL
from scipy import special, stats

MIN_ENTRIES = 20


@dataclass(frozen=True)
class PeakFit:
    """Result of a peak fit; GeV. ``width`` is NaN for a Gaussian peak."""

    shape: str
    mean: float
    mean_error: float
    sigma: float
    sigma_error: float
    width: float
    width_error: float
    n_signal: float
    n_background: float
    fit_range: tuple[float, float]
    converged: bool
    parameters: dict[str, float] = field(default_factory=dict)  # all of the shape's, fitted and fixed

    def expected_counts(self, edges: np.ndarray) -> np.ndarray:
        """Fitted expected events per bin of ``edges`` (inside ``fit_range``)."""
        return np.diff(SHAPES[self.shape](np.asarray(edges, dtype=np.float64), self.fit_range, **self.parameters))


def _normalised(cdf: Callable[[np.ndarray], np.ndarray], x: np.ndarray, fit_range: tuple[float, float]) -> np.ndarray:
    lo, hi = cdf(np.array(fit_range))
    return (cdf(x) - lo) / (hi - lo)


def _mbc_cdf(x, fit_range, *, n_signal, mean, sigma, n_background, chi, endpoint):
    signal = stats.norm(mean, sigma).cdf
    background = stats.argus(chi, loc=0.0, scale=endpoint).cdf
    return n_signal * _normalised(signal, x, fit_range) + n_background * _normalised(background, x, fit_range)


def _resonance_cdf(x, fit_range, *, n_signal, mean, sigma, width, n_background, slope):
    # no closed-form Voigt cdf: integrate the profile on a grid of 0.05 % of the range
    grid = np.linspace(*fit_range, 2001)
    density = special.voigt_profile(grid - mean, sigma, 0.5 * width)  # sigma = 0: Cauchy
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    t = (np.clip(x, *fit_range) - fit_range[0]) / (fit_range[1] - fit_range[0])
    background = t + slope * (t * t - t)  # density 1 + slope * (2t - 1), |slope| <= 1
    signal = np.interp(x, grid, cumulative) / cumulative[-1]
    return n_signal * signal + n_background * background


SHAPES: dict[str, Callable[..., np.ndarray]] = {"mbc": _mbc_cdf, "resonance": _resonance_cdf}


def _fit(shape: str, edges, counts, variances, start: dict, limits: dict, fixed: dict) -> PeakFit:
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if not total >= MIN_ENTRIES:
        raise ValueError(f"histogram has {total:g} entries; at least {MIN_ENTRIES} are needed for a peak fit")
    n = counts if variances is None else np.stack([counts, np.asarray(variances, dtype=np.float64)], axis=-1)
    fit_range = (float(edges[0]), float(edges[-1]))
    names = list(start)

    def model(x, *values):
        return SHAPES[shape](x, fit_range, **dict(zip(names, values, strict=True)), **fixed)

    minuit = Minuit(ExtendedBinnedNLL(n, edges, model, name=names), *start.values())
    for name, bounds in {"n_signal": (0.0, 2.0 * total), "n_background": (0.0, 2.0 * total), **limits}.items():
        minuit.limits[name] = bounds
    minuit.migrad()
    minuit.hesse()
    values = {**{k: float(minuit.values[k]) for k in names}, **fixed}
    errors = {k: float(minuit.errors[k]) for k in names}
    return PeakFit(
        shape=shape,
        mean=values["mean"],
        mean_error=errors["mean"],
        sigma=values["sigma"],
        sigma_error=errors.get("sigma", float("nan")),
        width=values.get("width", float("nan")),
        width_error=errors.get("width", float("nan")),
        n_signal=values["n_signal"],
        n_background=values["n_background"],
        fit_range=fit_range,
        converged=bool(minuit.valid),
        parameters=values,
    )


def fit_mbc_peak(edges: np.ndarray, counts: np.ndarray, endpoint: float, variances: np.ndarray | None = None) -> PeakFit:
    """Gaussian + ARGUS (endpoint fixed at ``endpoint``, the nominal E*_beam) fit of an Mbc histogram."""
    edges = np.asarray(edges, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    total = float(np.sum(counts))
    start = {"n_signal": 0.9 * total, "mean": centres[np.argmax(counts)], "sigma": 0.003, "n_background": 0.1 * total, "chi": 1.0}
    limits = {"mean": (edges[0], edges[-1]), "sigma": (1e-4, 0.05), "chi": (1e-3, 30.0)}
    return _fit("mbc", edges, counts, variances, start, limits, {"endpoint": float(endpoint)})


def fit_resonance(edges: np.ndarray, counts: np.ndarray, variances: np.ndarray | None = None, resolution: float = 0.0) -> PeakFit:
    """Breit-Wigner (free mass and full width) + linear background fit of a mass histogram.

    ``resolution``, a fixed Gaussian sigma in GeV, turns the Breit-Wigner into a
    Voigtian; with the default 0 the fitted width is an effective one, the
    natural width broadened by the resolution. (Width and resolution are not
    told apart by a fit when the resolution is much smaller than the width.)
    """
    edges = np.asarray(edges, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    total = float(np.sum(counts))
    span = edges[-1] - edges[0]
    start = {"n_signal": 0.8 * total, "mean": centres[np.argmax(counts)], "width": 0.25 * span, "n_background": 0.2 * total, "slope": 0.0}
    limits = {"mean": (edges[0], edges[-1]), "width": (1e-4 * span, 2.0 * span), "slope": (-1.0, 1.0)}
    return _fit("resonance", edges, counts, variances, start, limits, {"sigma": float(resolution)})
