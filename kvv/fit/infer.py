"""Inference on a :class:`~kvv.fit.likelihood.Likelihood`: MLE, MINOS, scans, limits, significance, GoF.

Conventions: every fit minimises ``t = -2 ln L``; asymptotic formulae follow
Cowan, Cranmer, Gross, Vitells (arXiv:1007.1727), with the q~_mu test statistic
for limits (the POI is bounded below at 0 in the Belle II likelihood) and q0
for discovery.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.optimize
import scipy.stats

from .batch import minimize_batch
from .likelihood import FitError, Likelihood
from .optimize import Curvature, OptResult, minimize

log = logging.getLogger(__name__)

#: expected-limit bands in pyhf's order: sqrt(q) = sqrt(q_A) + n, so the limits come out
#: ascending (-2 sigma, -1 sigma, median, +1 sigma, +2 sigma)
EXPECTED_SIGMAS = (2, 1, 0, -1, -2)


@dataclass
class FitResult:
    """Best fit with Hessian uncertainties; ``minos`` maps parameter name -> (lower, upper) errors."""

    names: list[str]
    bestfit: np.ndarray
    uncertainty: np.ndarray
    covariance: np.ndarray
    twice_nll: float
    optimizer: str
    success: bool
    minos: dict[str, tuple[float, float]] = field(default_factory=dict)
    attempts: list[str] = field(default_factory=list)
    minima: int = 1  # distinct minima seen (kinked modifiers: fits from several starts)

    @property
    def correlation(self) -> np.ndarray:
        sigma = np.where(self.uncertainty > 0, self.uncertainty, 1.0)
        corr = self.covariance / np.outer(sigma, sigma)
        np.fill_diagonal(corr, np.where(self.uncertainty > 0, 1.0, 0.0))
        return corr


def _check(opt: OptResult, what: str) -> OptResult:
    if not opt.success:
        log.warning("%s did not converge with any optimiser; using the best point found", what)
    return opt


def covariance(lh: Likelihood, pars: np.ndarray, data: np.ndarray | None = None, free: np.ndarray | None = None) -> np.ndarray:
    """Covariance from the inverse Hessian of ``-2 ln L`` (factor 2), zero rows for fixed parameters."""
    return Curvature.at(lh, pars, data, free).covariance()


def mle(
    lh: Likelihood,
    data: np.ndarray | None = None,
    *,
    minos: bool | list[str] = True,
    fixed: dict[int, float] | None = None,
    init: np.ndarray | None = None,
    uncertainties: bool = True,
) -> FitResult:
    """Maximum-likelihood fit with Hessian errors and, by default, MINOS errors on the POI.

    ``minos`` may be a list of parameter names; ``True`` means the POI only.
    """
    opt = _check(minimize(lh, data, init=init, fixed=fixed), "MLE")
    free = ~lh.fixed.copy()
    for index in fixed or {}:
        free[index] = False
    curvature = Curvature.at(lh, opt.x, data, free) if uncertainties else None
    cov = curvature.covariance() if curvature is not None else np.zeros((lh.npars, lh.npars))
    sigma = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    result = FitResult(lh.names, opt.x, sigma, cov, opt.fval, opt.optimizer, opt.success, attempts=opt.attempts, minima=opt.minima)
    names = [lh.poi_name] if minos is True else list(minos or [])
    for name in names:
        if name not in lh.names:
            raise FitError(f"MINOS parameter '{name}' is not in the model")
        result.minos[name] = minos_interval(lh, result, lh.names.index(name), data, curvature=curvature)
    return result


def _profile(
    lh: Likelihood, index: int, value: float, data: np.ndarray | None, init: np.ndarray, curvature: Curvature | None = None
) -> OptResult:
    return minimize(lh, data, init=init, fixed={index: value}, curvature=curvature)


def minos_interval(
    lh: Likelihood, fit: FitResult, index: int, data: np.ndarray | None = None, *, curvature: Curvature | None = None
) -> tuple[float, float]:
    """MINOS-like asymmetric errors: where the profiled ``-2 ln L`` rises by 1, found by root finding.

    An interval edge beyond the parameter bound is reported at the bound. ``curvature``
    (the Hessian at the fit) speeds up the profile fits; it does not change them.
    """
    centre, sigma = fit.bestfit[index], max(fit.uncertainty[index], 1e-3)
    low, high = lh.bounds[index]
    edges = []
    for sign, bound in ((-1.0, low), (1.0, high)):
        warm = fit.bestfit.copy()

        def rise(value: float) -> float:
            nonlocal warm
            opt = _profile(lh, index, value, data, warm, curvature)
            warm = opt.x
            return opt.fval - fit.twice_nll - 1.0

        step = sigma
        edge = bound
        inner = centre
        # walk outwards in steps of sigma until the profile has risen by more than 1
        while abs(step) < 20 * sigma:
            trial = float(np.clip(centre + sign * step, low, high))
            if rise(trial) > 0:
                edge = scipy.optimize.brentq(rise, inner, trial, xtol=1e-4 * sigma) if trial != inner else trial
                break
            if trial in (low, high):
                break
            inner, step = trial, step * 1.5
        edges.append(float(edge - centre))
    return edges[0], edges[1]


def scan(lh: Likelihood, values: np.ndarray | None = None, data: np.ndarray | None = None, fit: FitResult | None = None) -> dict:
    """Profile-likelihood scan of the POI: ``delta(-2 ln L)`` at each value."""
    fit = fit or mle(lh, data, minos=False)
    if values is None:
        centre, sigma = fit.bestfit[lh.poi_index], fit.uncertainty[lh.poi_index]
        low, high = lh.bounds[lh.poi_index]
        values = np.linspace(max(low, centre - 3 * sigma), min(high, centre + 3 * sigma), 25)
    warm, profile = fit.bestfit, []
    for value in values:
        opt = _profile(lh, lh.poi_index, float(value), data, warm)
        warm = opt.x
        profile.append(opt.fval - fit.twice_nll)
    return {"parameter": lh.poi_name, "values": np.asarray(values, float), "delta_twice_nll": np.asarray(profile)}


TestStatistic = Literal["qtilde", "q"]


def _asymptotic_cls(sqrt_q: float, sqrt_qa: float, test_statistic: TestStatistic) -> float:
    """CLs = CLs+b / CLb of an observed test statistic in the asymptotic approximation (arXiv:1007.1727).

    q_mu: CLs = Phi-bar(sqrt q) / Phi-bar(sqrt q - sqrt q_A) (eqs. 59, 60). q~_mu: the
    same below q_A, above it eqs. (65)-(66). Computed from log tail probabilities:
    both tails vanish together for small q_A.
    """
    logsf = scipy.stats.norm.logsf
    if test_statistic == "q" or sqrt_q <= sqrt_qa or sqrt_qa == 0:
        return float(np.exp(logsf(sqrt_q) - logsf(sqrt_q - sqrt_qa)))
    q, qa = sqrt_q**2, sqrt_qa**2
    return float(np.exp(logsf((q + qa) / (2 * sqrt_qa)) - logsf((q - qa) / (2 * sqrt_qa))))


def expected_cls(sqrt_qa: float) -> np.ndarray:
    """Expected CLs at the EXPECTED_SIGMAS band points: Phi-bar(sqrt q_A + n) / Phi-bar(n).

    The median of the background-only distribution of mu-hat / sigma shifted by n
    sigma; q_mu and q~_mu give the same band (as pyhf's ``expected_pvalues``, unclipped).
    """
    logsf = scipy.stats.norm.logsf
    return np.asarray([float(np.exp(logsf(sqrt_qa + n) - logsf(n))) for n in EXPECTED_SIGMAS])


class _HypoTest:
    """Caches the fits needed for asymptotic CLs at any POI value (observed and Asimov mu = 0)."""

    def __init__(self, lh: Likelihood, data: np.ndarray | None = None, test_statistic: TestStatistic = "qtilde") -> None:
        self.lh, self.data = lh, lh.data if data is None else data
        self.test_statistic = test_statistic
        self.fit = minimize(lh, self.data)
        background = minimize(lh, self.data, init=self.fit.x, fixed={lh.poi_index: 0.0})
        self.asimov = lh.expected_data(background.x)
        self.asimov_fit = minimize(lh, self.asimov, init=background.x)
        self._warm = {"obs": [(self.fit.x[lh.poi_index], self.fit.x)], "asimov": [(0.0, background.x)]}
        # the fixed-POI fits of a limit lie near these minima: their Hessians make them a few Newton steps each
        self._curvature = {"obs": Curvature.at(lh, self.fit.x, self.data), "asimov": Curvature.at(lh, self.asimov_fit.x, self.asimov)}
        self._fval: dict[tuple[str, float], float] = {}
        self.nfits = 3

    def _fixed_fit(self, kind: str, mu: float) -> float:
        # root finders evaluate their bracket's ends again: each fixed fit is done once
        if (kind, mu) not in self._fval:
            self._fval[kind, mu] = self._new_fixed_fit(kind, mu)
        return self._fval[kind, mu]

    def _new_fixed_fit(self, kind: str, mu: float) -> float:
        # warm start from the fit at the closest POI value already done
        _, init = min(self._warm[kind], key=lambda item: abs(item[0] - mu))
        data = self.data if kind == "obs" else self.asimov
        opt = _check(
            minimize(self.lh, data, init=init, fixed={self.lh.poi_index: mu}, curvature=self._curvature[kind]), f"fixed-POI fit at {mu:.4g}"
        )
        self._warm[kind].append((mu, opt.x))
        self.nfits += 1
        free = self.fit if kind == "obs" else self.asimov_fit
        if opt.fval < free.fval - 1e-6:
            # a fixed fit below the free one: the free fit missed the global minimum; refit it from there (q >= 0)
            log.info("fixed-POI fit at %.4g is %.2g below the free fit: refitting the free fit from it", mu, free.fval - opt.fval)
            refit = minimize(self.lh, data, init=opt.x)
            self.nfits += 1
            # the fixed fit is a point of the free parameter space too: the lower of the two is the free minimum
            best = refit if refit.fval <= opt.fval else opt
            if kind == "obs":
                self.fit = best
            else:
                self.asimov_fit = best
        return opt.fval

    def sqrt_q(self, mu: float) -> float:
        if mu < self.fit.x[self.lh.poi_index]:  # one-sided: upward fluctuations do not count against mu
            return 0.0
        fixed = self._fixed_fit("obs", mu)  # may move the free fit (and mu-hat) to a lower minimum
        if mu < self.fit.x[self.lh.poi_index]:
            return 0.0
        return float(np.sqrt(max(fixed - self.fit.fval, 0.0)))

    def sqrt_qa(self, mu: float) -> float:
        return float(np.sqrt(max(self._fixed_fit("asimov", mu) - self.asimov_fit.fval, 0.0)))

    def cls(self, mu: float) -> tuple[float, np.ndarray]:
        """Observed CLs and the expected CLs at +2..-2 sigma at ``mu``."""
        sqrt_qa = self.sqrt_qa(mu)
        return _asymptotic_cls(self.sqrt_q(mu), sqrt_qa, self.test_statistic), expected_cls(sqrt_qa)


@dataclass(frozen=True)
class UpperLimit:
    """Asymptotic CLs upper limit on the POI: observed, and expected at the EXPECTED_SIGMAS band points (ascending)."""

    cl: float
    observed: float
    expected: list[float]
    expected_sigmas: list[int]
    nfits: int
    #: CLs scan for plotting: {"values", "cls_observed", "cls_expected"}, when asked for
    scan: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Significance:
    """Discovery significance from q0: observed, and expected on Asimov data with POI = ``expected_mu``."""

    q0: float
    Z_obs: float
    p0_obs: float
    Z_exp: float
    p0_exp: float
    expected_mu: float
    null_fit_optimizer: str
    null_fit_attempts: list[str]


@dataclass(frozen=True)
class ToyCLs:
    """CLs at one POI value from pseudo-experiments, with binomial errors."""

    mu: float
    q_obs: float
    cls: float
    cls_error: float
    clsb: float
    clb: float
    n_toys: int
    failed_toys: int


@dataclass(frozen=True)
class HypotestResult:
    """Asymptotic CLs of one POI value: observed, and expected at the EXPECTED_SIGMAS band points."""

    mu: float
    cls_observed: float
    cls_expected: np.ndarray


def hypotest(lh: Likelihood, mu: float, data: np.ndarray | None = None, *, test_statistic: TestStatistic = "qtilde") -> HypotestResult:
    """Asymptotic CLs at POI = ``mu``, the counterpart of ``pyhf.infer.hypotest(test_stat=test_statistic)``."""
    observed, expected = _HypoTest(lh, data, test_statistic).cls(mu)
    return HypotestResult(mu=float(mu), cls_observed=observed, cls_expected=expected)


#: toys with q within this of q_obs count as ties (fit precision on -2 ln L)
Q_TIE_TOLERANCE = 1e-4


def toy_cls(lh: Likelihood, mu: float, data: np.ndarray | None = None, *, n_toys: int = 500, seed: int = 0) -> ToyCLs:
    """CLs at POI = ``mu`` from pseudo-experiments instead of asymptotic formulae.

    The q~_mu distributions under the signal-plus-background (POI = ``mu``) and
    background-only (POI = 0) hypotheses come from ``n_toys`` toys each, thrown
    around the conditional fits to ``data`` with fluctuated auxiliary data (the
    frequentist recipe of the LHC Higgs combination). CLs+b = P(q >= q_obs | mu),
    CLb = P(q >= q_obs | 0); the binomial errors are returned with them.
    """
    data = lh.data if data is None else np.asarray(data, float)
    rng = np.random.default_rng(seed)

    def q_mu(d: np.ndarray, free: OptResult, curvature: Curvature) -> float:
        if free.x[lh.poi_index] > mu:  # one-sided
            return 0.0
        fixed = minimize(lh, d, init=free.x, fixed={lh.poi_index: mu}, curvature=curvature)
        return max(fixed.fval - free.fval, 0.0)

    fit = minimize(lh, data)
    curvature = Curvature.at(lh, fit.x, data)  # the toys' fits lie near this minimum: Newton steps from its Hessian
    q_obs = q_mu(data, fit, curvature)
    p_tail, p_err, failed = {}, {}, 0
    for name, poi in (("splusb", mu), ("b", 0.0)):
        centre = minimize(lh, data, init=fit.x, fixed={lh.poi_index: poi}, curvature=curvature).x
        toys = lh.toys(centre, rng, n_toys)
        free = minimize_batch(lh, toys, init=centre)
        q = np.zeros(n_toys)
        below = free.x[:, lh.poi_index] <= mu  # one-sided: q = 0 above mu
        fixed = minimize_batch(lh, toys[below], init=free.x[below], fixed={lh.poi_index: mu})
        q[below] = np.maximum(fixed.fval - free.fval[below], 0.0)
        failed += int((~np.isfinite(q)).sum())
        q_toys = q[np.isfinite(q)]
        # discrete data give exact ties with q_obs, which the fits reproduce only to their precision
        p = float(np.mean(q_toys >= q_obs - Q_TIE_TOLERANCE))
        p_tail[name], p_err[name] = p, float(np.sqrt(p * (1 - p) / len(q_toys)))
    cls = p_tail["splusb"] / p_tail["b"] if p_tail["b"] > 0 else float("nan")
    rel = np.hypot(p_err["splusb"] / max(p_tail["splusb"], 1e-300), p_err["b"] / max(p_tail["b"], 1e-300))
    return ToyCLs(
        mu=mu,
        q_obs=q_obs,
        cls=cls,
        cls_error=float(cls * rel),
        clsb=p_tail["splusb"],
        clb=p_tail["b"],
        n_toys=n_toys,
        failed_toys=failed,
    )


def toy_upper_limit(
    lh: Likelihood,
    cl: float = 0.90,
    data: np.ndarray | None = None,
    *,
    n_toys: int = 500,
    seed: int = 0,
    n_points: int = 6,
    asymptotic: float | None = None,
) -> dict:
    """Toy-based CLs upper limit: toy CLs on a grid of POI values around the asymptotic limit
    (computed unless given), interpolated linearly in log CLs to 1 - ``cl``."""
    if asymptotic is None:
        asymptotic = upper_limit(lh, cl, data).observed
    if not np.isfinite(asymptotic):
        raise FitError(f"the asymptotic {cl:.0%} CL limit is above the POI range; no grid for toys")
    values = np.linspace(0.5 * asymptotic, 1.75 * asymptotic, n_points)
    points = [toy_cls(lh, float(mu), data, n_toys=n_toys, seed=seed + k) for k, mu in enumerate(values)]
    log_cls = np.log(np.clip([p.cls for p in points], 1e-12, None))
    alpha = np.log(1.0 - cl)
    crossing = np.flatnonzero((log_cls[:-1] > alpha) & (log_cls[1:] <= alpha))
    if crossing.size == 0:
        raise FitError(f"toy CLs does not cross {1 - cl:.2f} between POI {values[0]:.3g} and {values[-1]:.3g}")
    i = crossing[0]
    observed = float(np.interp(alpha, [log_cls[i + 1], log_cls[i]], [values[i + 1], values[i]]))
    return {
        "cl": cl,
        "observed": observed,
        "asymptotic_observed": asymptotic,
        "points": [dataclasses.asdict(p) for p in points],
        "method": "toys",
    }


def upper_limit(
    lh: Likelihood,
    cl: float = 0.90,
    data: np.ndarray | None = None,
    *,
    scan_points: int = 0,
    rtol: float = 1e-3,
    test_statistic: TestStatistic = "qtilde",
) -> UpperLimit:
    """Asymptotic CLs upper limit on the POI at confidence level ``cl``, observed and expected (ascending, see EXPECTED_SIGMAS).

    Limits are found by root finding: the observed one on CLs(mu) - (1 - cl), the
    expected ones on sqrt(q_A(mu)), which fixes expected CLs, so they need Asimov fits only.  ``scan_points > 0`` also returns a CLs
    scan over [0, 1.5 x the largest expected limit] for plotting.
    """
    alpha = 1.0 - cl
    hypo = _HypoTest(lh, data, test_statistic)
    poi = lh.poi_index
    low, high = lh.bounds[poi]
    low = max(low, 0.0)
    # sqrt(q_A) = mu / sigma_A asymptotically: one Asimov fit sets the scale, so each root is bracketed
    # near its answer instead of by doubling from mu-hat towards the POI bound
    trial = min(max(hypo.fit.x[poi], low) + 1.0, high)
    sigma_a = trial / max(hypo.sqrt_qa(trial), trial / (high - low))
    # expected CLs depends on sqrt(q_A) alone: CLs(n) = alpha at sqrt(q_A) = Phi-bar^-1(alpha Phi-bar(n)) - n
    targets = [float(scipy.stats.norm.isf(alpha * scipy.stats.norm.sf(n)) - n) for n in EXPECTED_SIGMAS]

    def solve(rises, guess: float, what: str) -> float:
        """The POI value where the increasing ``rises`` crosses zero; inf (with a warning) above the POI bound."""
        floor = low + 1e-9 * guess
        hi = min(guess * 1.05, high)
        lo = min(max(guess / 1.05, floor), hi)
        step = 1.25
        while rises(hi) < 0:
            if hi == high:
                log.warning("%s limit: the %.0f%% CL limit is above the POI upper bound %s", what, 100 * cl, high)
                return float("inf")
            lo, hi, step = hi, min(step * hi, high), min(2 * step, 2.0)
        step = 1.25
        while rises(lo) > 0:
            lo, hi, step = max(lo / step, floor), lo, min(2 * step, 2.0)
            if hi == lo:
                raise FitError(f"{what} limit: CLs is below {alpha:g} at the lowest POI value {lo:.4g}")
        return float(scipy.optimize.brentq(rises, lo, hi, rtol=rtol))

    expected = []
    for n, t in zip(EXPECTED_SIGMAS, targets, strict=True):
        expected.append(solve(lambda mu, t=t: hypo.sqrt_qa(mu) - t, t * sigma_a, f"expected {-n:+d} sigma"))
        if np.isfinite(expected[-1]):
            sigma_a = expected[-1] / t  # the local slope, for the next (larger) root
    median = expected[EXPECTED_SIGMAS.index(0)]
    # the observed limit is about mu-hat above the median expected one (the Asimov data have mu = 0)
    guess = max(hypo.fit.x[poi], low) + (median if np.isfinite(median) else targets[EXPECTED_SIGMAS.index(0)] * sigma_a)
    observed = solve(lambda mu: alpha - hypo.cls(mu)[0], guess, "observed")
    scan = None
    if scan_points:
        finite = [v for v in (*expected, observed) if np.isfinite(v)]
        values = np.linspace(low, min(1.5 * max(finite, default=high), high), scan_points)
        points = [hypo.cls(mu) for mu in values]
        scan = {
            "values": values,
            "cls_observed": np.asarray([p[0] for p in points]),
            "cls_expected": np.asarray([p[1] for p in points]),
        }
    return UpperLimit(cl=cl, observed=observed, expected=expected, expected_sigmas=list(EXPECTED_SIGMAS), nfits=hypo.nfits, scan=scan)


def significance(lh: Likelihood, data: np.ndarray | None = None, *, expected_mu: float = 1.0) -> Significance:
    """Discovery significance from q0, observed and expected (Asimov with POI = ``expected_mu``)."""
    data = lh.data if data is None else data
    fit = minimize(lh, data)
    curvature = Curvature.at(lh, fit.x, data)
    null = _check(minimize(lh, data, init=fit.x, fixed={lh.poi_index: 0.0}, curvature=curvature), "background-only fit")
    q0 = max(null.fval - fit.fval, 0.0) if fit.x[lh.poi_index] > 0 else 0.0
    # expected: Asimov data from the conditional fit at mu = expected_mu
    cond = minimize(lh, data, init=fit.x, fixed={lh.poi_index: expected_mu}, curvature=curvature)
    asimov = lh.expected_data(cond.x)
    asimov_null = minimize(lh, asimov, init=null.x, fixed={lh.poi_index: 0.0}, curvature=curvature)
    asimov_free = minimize(lh, asimov, init=cond.x, curvature=curvature)
    q0_a = max(asimov_null.fval - asimov_free.fval, 0.0)
    z_obs, z_exp = float(np.sqrt(q0)), float(np.sqrt(q0_a))
    return Significance(
        q0=q0,
        Z_obs=z_obs,
        p0_obs=float(scipy.stats.norm.sf(z_obs)),
        Z_exp=z_exp,
        p0_exp=float(scipy.stats.norm.sf(z_exp)),
        expected_mu=expected_mu,
        null_fit_optimizer=null.optimizer,
        null_fit_attempts=null.attempts,
    )


def _constrained(lh: Likelihood) -> list[tuple[str, slice, np.ndarray, np.ndarray]]:
    """(name, slice, nominal, pre-fit width) of every constrained parameter set."""
    config = lh.model.config
    out = []
    for name in config.par_order:
        pset = config.param_set(name)
        if not getattr(pset, "constrained", False):
            continue
        nominal = np.asarray(pset.suggested_init, float)
        if pset.pdf_type == "normal":
            width = np.asarray(pset.width(), float)
        else:  # Poisson (shapesys): relative width 1/sqrt(tau)
            width = 1.0 / np.sqrt(np.asarray(pset.factors, float))
        out.append((name, config.par_slice(name), nominal, width))
    return out


def pulls(lh: Likelihood, fit: FitResult) -> list[dict]:
    """Pull ``(theta_hat - theta_0)/sigma_0`` and constraint ``sigma_hat/sigma_0`` of each constrained NP."""
    rows = []
    for name, sl, nominal, width in _constrained(lh):
        indices = range(lh.npars)[sl]
        for index, theta0, sigma0 in zip(indices, nominal, width, strict=True):
            rows.append(
                {
                    "name": lh.names[index],
                    "index": index,
                    "pull": float((fit.bestfit[index] - theta0) / sigma0),
                    "constraint": float(fit.uncertainty[index] / sigma0),
                    "prefit_width": float(sigma0),
                    "modifier": name,
                }
            )
    return rows


def goodness_of_fit(lh: Likelihood, fit: FitResult, data: np.ndarray | None = None) -> dict:
    """Saturated-model goodness of fit: ``t = -2 ln(L_fit / L_sat)`` with ndof = bins - unconstrained free parameters.

    In the saturated model every bin's expectation equals its observed count
    and every constrained parameter sits at its auxiliary measurement, so each
    auxiliary measurement absorbs one constrained parameter.
    """
    data = lh.data if data is None else np.asarray(data, float)
    config = lh.model.config
    n_main = config.nmaindata
    expected = lh.expected_data(fit.bestfit)[:n_main]
    observed = data[:n_main]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(observed > 0, observed * np.log(observed / expected), 0.0)
    t_main = 2.0 * float(np.sum(expected - observed + log_term))
    # constraint part: Gaussian/Poisson terms relative to their maximum at the auxiliary data
    t_constraint = 0.0
    aux = data[n_main:]
    offset = 0
    for name in config.auxdata_order:
        pset = config.param_set(name)
        size = pset.n_parameters
        theta = fit.bestfit[config.par_slice(name)]
        a = aux[offset : offset + size]
        if pset.pdf_type == "normal":
            t_constraint += float(np.sum(((theta - a) / np.asarray(pset.width(), float)) ** 2))
        else:
            rate = theta * np.asarray(pset.factors, float)
            t_constraint += 2.0 * float(np.sum(rate - a + np.where(a > 0, a * np.log(a / rate), 0.0)))
        offset += size
    n_unconstrained = sum(
        int(np.sum(~lh.fixed[config.par_slice(name)]))
        for name in config.par_order
        if not getattr(config.param_set(name), "constrained", False)
    )
    ndof = n_main - n_unconstrained
    t = t_main + t_constraint
    return {"t": t, "t_main": t_main, "t_constraint": t_constraint, "ndof": ndof, "p_value": float(scipy.stats.chi2.sf(t, ndof))}


def to_branching_fraction(mu: float | np.ndarray, sm: float) -> float | np.ndarray:
    """Branching fraction corresponding to a signal strength: ``mu * B_SM``."""
    return mu * sm
