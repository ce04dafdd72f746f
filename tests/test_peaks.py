"""Peak fits recover the parameters of distributions drawn with known shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from kvv import peaks


def test_mbc_fit_recovers_gaussian_over_argus():
    rng = np.random.default_rng(4)
    endpoint, mean, sigma = 5.29, 5.2793, 0.0026
    background = stats.argus.rvs(1.5, loc=0.0, scale=endpoint, size=400_000, random_state=rng)
    background = background[background > 5.2]
    values = np.concatenate([rng.normal(mean, sigma, 5000), background])
    edges = np.linspace(5.20, 5.30, 101)
    counts, _ = np.histogram(values, edges)
    fit = peaks.fit_mbc_peak(edges, counts, endpoint)
    assert fit.converged and fit.fit_range == (5.2, 5.3)
    assert abs(fit.mean - mean) < 3 * fit.mean_error
    assert abs(fit.sigma - sigma) < 3 * fit.sigma_error
    assert fit.n_signal == pytest.approx(5000, abs=3 * np.sqrt(5000 + len(background)))
    assert fit.expected_counts(edges).sum() == pytest.approx(counts.sum(), rel=1e-3)
    with pytest.raises(ValueError, match="at least 20"):
        peaks.fit_mbc_peak(edges, np.where(np.arange(100) == 79, 5, 0), endpoint)


@pytest.mark.parametrize("resolution", [0.0, 0.010])
def test_resonance_fit_recovers_mass_and_width(resolution):
    """Breit-Wigner (+ Gaussian smearing, fixed in the fit) over a linear background."""
    rng = np.random.default_rng(7)
    mass, width, lo, hi = 0.8956, 0.0471, 0.80, 0.99
    signal = stats.cauchy.rvs(mass, width / 2, size=60_000, random_state=rng) + rng.normal(0.0, resolution or 1e-12, 60_000)
    signal = signal[(signal >= lo) & (signal < hi)][:20_000]
    # linear background falling across the range: density 1 - 0.5 (2t - 1)
    t = rng.uniform(size=40_000)
    t = t[rng.uniform(size=t.size) < (1.0 - 0.5 * (2 * t - 1)) / 1.5][:5000]
    edges = np.linspace(lo, hi, 39)
    counts, _ = np.histogram(np.concatenate([signal, lo + t * (hi - lo)]), edges)
    fit = peaks.fit_resonance(edges, counts, resolution=resolution)
    assert fit.converged
    assert abs(fit.mean - mass) < 3 * fit.mean_error
    assert abs(fit.width - width) < 3 * fit.width_error
    # the extended fit's yields add up to the observed events (BW tails and background trade off)
    assert fit.n_signal + fit.n_background == pytest.approx(counts.sum(), rel=1e-3)
    assert fit.parameters["slope"] == pytest.approx(-0.5, abs=0.15)
    # the same events as weighted MC (every weight 0.5) give the same peak, errors from the weights
    weighted = peaks.fit_resonance(edges, 0.5 * counts, variances=0.25 * counts, resolution=resolution)
    assert weighted.mean == pytest.approx(fit.mean, abs=1e-4 * fit.mean)
    assert weighted.width == pytest.approx(fit.width, rel=1e-3)
    assert weighted.mean_error == pytest.approx(fit.mean_error, rel=0.05)
