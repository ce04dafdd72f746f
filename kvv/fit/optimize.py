"""Robust minimisation of ``-2 ln L``: a chain of optimisers tried until one converges.

Plain pyhf + MINUIT fails, for instance, on the mu = 0 fixed fit of the
discovery test on the published Belle II likelihood (pyhf raises
FailedMinimization although the optimiser reports success).  Here every fit runs the
strategies in :data:`DEFAULT_CHAIN` in turn, warm-started where possible, and
accepts the first result whose projected gradient vanishes; the result records
which optimiser succeeded and why the earlier ones were rejected. A caller that knows
the Hessian at a nearby minimum (:class:`Curvature`) gets Newton steps from it first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import iminuit
import numpy as np
import scipy.linalg
import scipy.optimize

from .likelihood import Likelihood

log = logging.getLogger(__name__)

#: optimisers in the order they are tried
DEFAULT_CHAIN: tuple[str, ...] = ("tnc", "minuit0", "minuit1", "lbfgsb", "minuit2", "slsqp", "minuit1_restart")

#: largest projected |d(-2 ln L)/d theta| accepted as a minimum
GRADIENT_TOLERANCE = 2e-2

#: otherwise, largest estimated distance to the minimum, g^T H^-1 g / 2 in -2 ln L, accepted
#: (scale-free, as MINUIT's EDM: parameters with widths far from 1 can keep |g| above
#: GRADIENT_TOLERANCE at a point indistinguishable from the minimum)
EDM_TOLERANCE = 1e-3


#: two minima closer than this in -2 ln L count as one
SAME_MINIMUM = 1e-4


#: Newton iterations with a given curvature before the chain's other optimisers take over
NEWTON_MAX_ITERATIONS = 40
#: where they stop: estimated distance to the minimum in -2 ln L (far below EDM_TOLERANCE, so that the
#: gradient there passes GRADIENT_TOLERANCE and no Hessian is needed to accept the point)
NEWTON_EDM = 1e-8


@dataclass(frozen=True)
class Curvature:
    """The Hessian of ``-2 ln L`` at a nearby minimum, over the parameters ``free`` marks.

    Fits near that minimum (fixed-POI fits of a limit, the fits of toys about the
    same point) converge in a few Newton steps with it instead of ~200 gradient
    evaluations of a quasi-Newton method; see :func:`minimize`.
    """

    free: np.ndarray  # (npars,) bool
    hessian: np.ndarray  # (n_free, n_free)

    @classmethod
    def at(cls, lh: Likelihood, pars: np.ndarray, data: np.ndarray | None = None, free: np.ndarray | None = None) -> Curvature:
        """The Hessian at ``pars`` over ``free`` (default: the model's free parameters)."""
        free = ~lh.fixed if free is None else free
        return cls(free, lh.hessian(pars, data, free))

    def covariance(self) -> np.ndarray:
        """Covariance of all parameters from the inverse Hessian of ``-2 ln L`` (factor 2), zero rows for fixed ones."""
        n = len(self.free)
        cov = np.zeros((n, n))
        # pseudo-inverse: parameters at a bound can make the Hessian near-singular
        cov[np.ix_(self.free, self.free)] = 2.0 * np.linalg.pinv(self.hessian, hermitian=True)
        return cov

    def restricted(self, free: np.ndarray) -> np.ndarray:
        """The Hessian over the parameters ``free`` marks (a subset of this one's)."""
        index = np.flatnonzero(free[self.free])
        return self.hessian[np.ix_(index, index)]


@dataclass
class OptResult:
    """Outcome of :func:`minimize`; ``x`` covers all parameters, fixed ones included.

    ``minima``: the distinct minima the starts of a likelihood with kinked modifiers
    ended in (1 for a smooth one, which is fitted from one start).
    """

    x: np.ndarray
    fval: float
    success: bool
    optimizer: str
    nfev: int
    attempts: list[str] = field(default_factory=list)
    minima: int = 1


class _Objective:
    """``-2 ln L`` restricted to the free parameters, caching the last value/gradient pair."""

    def __init__(self, lh: Likelihood, data: np.ndarray, start: np.ndarray, free: np.ndarray) -> None:
        self.lh, self.data, self.full, self.free = lh, data, start.astype(float).copy(), free
        self.nfev = 0
        self._key: bytes | None = None
        self._cache: tuple[float, np.ndarray] = (np.nan, np.empty(0))

    def expand(self, x: np.ndarray) -> np.ndarray:
        full = self.full.copy()
        full[self.free] = x
        return full

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        key = np.asarray(x, float).tobytes()
        if key != self._key:
            self.nfev += 1
            value, grad = self.lh.value_and_grad(self.expand(x), self.data)
            if not np.isfinite(value):
                # keep optimisers out of unphysical regions (negative yields) without crashing
                value, grad = 1e30, np.zeros_like(grad)
            self._key, self._cache = key, (value, grad[self.free])
        return self._cache


def _projected_gradient(grad: np.ndarray, x: np.ndarray, bounds: np.ndarray) -> float:
    # at an active bound only the component pointing out of the box may be non-zero
    g = grad.copy()
    at_low = (x <= bounds[:, 0] + 1e-8) & (g > 0)
    at_high = (x >= bounds[:, 1] - 1e-8) & (g < 0)
    g[at_low | at_high] = 0.0
    return float(np.max(np.abs(g))) if g.size else 0.0


def _edm(lh: Likelihood, obj: _Objective, x: np.ndarray, grad: np.ndarray, bounds: np.ndarray) -> float:
    """Estimated distance to the minimum over the parameters not held at a bound."""
    inside = (x > bounds[:, 0] + 1e-8) & (x < bounds[:, 1] - 1e-8)
    if not inside.any():
        return 0.0
    free = obj.free.copy()
    free[np.flatnonzero(obj.free)[~inside]] = False
    hess = lh.hessian(obj.expand(x), obj.data, free)
    g = grad[inside]
    try:
        step = np.linalg.solve(hess, g)
    except np.linalg.LinAlgError:
        return float("inf")
    edm = 0.5 * float(g @ step)
    return edm if edm >= 0 else float("inf")  # not a minimum: indefinite Hessian


def _run_scipy(method: str, obj: _Objective, x0: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    options = {"maxfun": 50000} if method == "TNC" else {"maxiter": 20000}
    res = scipy.optimize.minimize(obj, x0, jac=True, method=method, bounds=bounds, options=options)
    return np.asarray(res.x)


def _run_minuit(strategy: int, obj: _Objective, x0: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    minuit = iminuit.Minuit(lambda x: obj(x)[0], x0, grad=lambda x: obj(x)[1])
    minuit.errordef = iminuit.Minuit.LEAST_SQUARES  # the objective is -2 ln L
    minuit.limits = [tuple(b) for b in bounds]
    minuit.strategy = strategy
    minuit.print_level = 0
    minuit.migrad(ncall=100000)
    return np.asarray(minuit.values)


def _run_newton(obj: _Objective, x0: np.ndarray, bounds: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """Quasi-Newton steps from a given Hessian, kept current with BFGS updates, projected on the bounds.

    A step that does not descend is halved (up to 6 times); the iteration stops at
    an estimated distance to the minimum of :data:`NEWTON_EDM` in ``-2 ln L``.
    """
    hess = np.array(hessian, dtype=float)
    x = np.clip(x0, bounds[:, 0], bounds[:, 1])
    value, grad = obj(x)
    for _ in range(NEWTON_MAX_ITERATIONS):
        # parameters at a bound that the gradient pushes outwards stay there for this step
        moving = ~(((x <= bounds[:, 0]) & (grad > 0)) | ((x >= bounds[:, 1]) & (grad < 0)))
        step = np.zeros_like(x)
        try:
            step[moving] = scipy.linalg.solve(hess[np.ix_(moving, moving)], grad[moving], assume_a="pos")
        except (np.linalg.LinAlgError, ValueError):
            raise ValueError("curvature is not positive definite") from None
        if 0.5 * float(grad @ step) < NEWTON_EDM:
            break
        for _ in range(6):
            trial = np.clip(x - step, bounds[:, 0], bounds[:, 1])
            trial_value, trial_grad = obj(trial)
            if np.isfinite(trial_value) and trial_value <= value:
                break
            step = 0.5 * step
        else:
            break  # no descent along the step: leave the rest to the other optimisers
        s_, y_ = trial - x, trial_grad - grad
        sy = float(s_ @ y_)
        if sy > 1e-12 * float(np.linalg.norm(s_) * np.linalg.norm(y_)):  # BFGS keeps hess positive definite
            hs = hess @ s_
            hess += np.outer(y_, y_) / sy - np.outer(hs, hs) / float(s_ @ hs)
        x, value, grad = trial, trial_value, trial_grad
    return x


def _attempt(name: str, obj: _Objective, x0: np.ndarray, bounds: np.ndarray, curvature: Curvature | None = None) -> np.ndarray:
    if name == "newton":
        if curvature is None:
            raise ValueError("newton needs a curvature")
        return _run_newton(obj, x0, bounds, curvature.restricted(obj.free))
    if name == "tnc":
        return _run_scipy("TNC", obj, x0, bounds)
    if name == "lbfgsb":
        return _run_scipy("L-BFGS-B", obj, x0, bounds)
    if name == "slsqp":
        return _run_scipy("SLSQP", obj, x0, bounds)
    if name.startswith("minuit"):
        return _run_minuit(int(name.removeprefix("minuit").removesuffix("_restart")), obj, x0, bounds)
    raise ValueError(f"unknown optimiser '{name}'")


def minimize(
    lh: Likelihood,
    data: np.ndarray | None = None,
    *,
    init: np.ndarray | None = None,
    fixed: dict[int, float] | None = None,
    chain: tuple[str, ...] = DEFAULT_CHAIN,
    curvature: Curvature | None = None,
) -> OptResult:
    """The lowest minimum of ``-2 ln L`` over the free parameters that kvv finds at reasonable cost.

    ``fixed`` maps parameter indices to values held constant on top of the
    model's own fixed parameters. With a ``curvature`` (the Hessian at a nearby
    minimum) Newton steps are tried first; a fit they do not converge goes on
    with ``chain`` from their best point, so the answer's tolerance is the same. A smooth likelihood is fitted once from
    ``init`` (:func:`_minimize_from`). One with kinked modifiers
    (``lh.kinked``) can have a minimum on each side of a kink, so it is also
    fitted from the suggested initial values and with each kinked parameter
    displaced to -1 and +1 from the best point; the lowest converged fit wins
    and ``minima`` counts the distinct ones seen.
    """
    if curvature is not None:
        chain = ("newton", *chain)
    first = _minimize_from(lh, data, init, fixed, chain, curvature)
    kinked = np.flatnonzero(lh.kinked & ~lh.fixed)
    kinked = np.asarray([i for i in kinked if i not in (fixed or {})], dtype=int)
    if not kinked.size:
        return first
    starts = [] if init is None else [lh.init.copy()]  # without init the first fit started there
    for index in kinked:
        for shift in (-1.0, 1.0):
            start = first.x.copy()
            start[index] = np.clip(shift, *lh.bounds[index])
            starts.append(start)
    fits = [first] + [_minimize_from(lh, data, start, fixed, chain, curvature) for start in starts]
    converged = [f for f in fits if f.success] or fits
    best = min(converged, key=lambda f: f.fval)
    minima = np.unique(np.round(np.asarray([f.fval for f in converged]) / SAME_MINIMUM))
    attempts = [f"start {k}: {a}" for k, f in enumerate(fits) for a in f.attempts[-1:]]
    return OptResult(best.x, best.fval, best.success, best.optimizer, sum(f.nfev for f in fits), attempts, minima=len(minima))


def _minimize_from(
    lh: Likelihood,
    data: np.ndarray | None,
    init: np.ndarray | None,
    fixed: dict[int, float] | None,
    chain: tuple[str, ...],
    curvature: Curvature | None = None,
) -> OptResult:
    """Minimise ``-2 ln L`` from one start, trying the optimisers in ``chain`` in turn.

    Each optimiser after the first is warm-started from the best point found
    so far; ``*_restart`` entries start from the model's suggested initial
    values instead.
    """
    data = lh.data if data is None else np.asarray(data, float)
    start = (lh.init if init is None else np.asarray(init, float)).copy()
    free = ~lh.fixed.copy()
    for index, value in (fixed or {}).items():
        start[index] = value
        free[index] = False
    bounds = lh.bounds[free]
    start[free] = np.clip(start[free], bounds[:, 0], bounds[:, 1])
    obj = _Objective(lh, data, start, free)
    if not free.any():  # nothing to fit: the value at the fixed point is the answer
        return OptResult(start, float(lh.twice_nll(start, data)), True, "fixed", 1)

    best_x, best_f = start[free], obj(start[free])[0]
    attempts: list[str] = []
    for name in chain:
        x0 = lh.init[free].clip(bounds[:, 0], bounds[:, 1]) if name.endswith("_restart") else best_x
        try:
            x = _attempt(name, obj, x0, bounds, curvature)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            attempts.append(f"{name}: error {exc}")
            continue
        value, grad = obj(x)
        pgrad = _projected_gradient(grad, x, bounds)
        if np.isfinite(value) and value <= best_f + 1e-6:
            best_x, best_f = x, value
        if np.isfinite(value) and value <= best_f + 1e-6:
            if pgrad < GRADIENT_TOLERANCE:
                attempts.append(f"{name}: converged (-2lnL={value:.6f}, |grad|={pgrad:.1e})")
                return OptResult(obj.expand(x), value, True, name, obj.nfev, attempts)
            edm = _edm(lh, obj, x, grad, bounds)
            if edm < EDM_TOLERANCE:
                attempts.append(f"{name}: converged (-2lnL={value:.6f}, |grad|={pgrad:.1e}, edm={edm:.1e})")
                return OptResult(obj.expand(x), value, True, name, obj.nfev, attempts)
        attempts.append(f"{name}: rejected (-2lnL={value:.6f}, |grad|={pgrad:.1e})")
        log.debug("optimiser %s rejected: |grad|=%.2e", name, pgrad)
    log.warning("no optimiser converged; returning the best point found (%s)", "; ".join(attempts))
    return OptResult(obj.expand(best_x), best_f, False, "none", obj.nfev, attempts)
