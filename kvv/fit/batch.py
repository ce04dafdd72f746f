"""Fits of many data sets at once: the toys of an injection study or of toy CLs.

Each toy is fitted by Fisher scoring -- Newton steps with the expected
information in place of the Hessian of ``-2 ln L``,

    F(theta) = 2 J^T diag(1 / nu) J + d^2(-2 ln L_constraint) / d theta^2,    J = d nu / d theta,

with ``nu`` the expected main-bin counts -- projected on the parameter bounds
and halved while a step ascends. ``F`` is positive definite wherever every
parameter is constrained or moves some bin's expectation, and it costs one
Jacobian of the ``nu`` (a few bins) instead of a Hessian. (The exact Hessian
converges no faster on the default analysis's MC-statistics-dominated
likelihood, which is far from parabolic and not convex everywhere, and costs
more.) The iteration is written in JAX and ``jax.vmap``-ed over
:data:`FISHER_LANES` toys; each call advances every lane a few steps, and a lane
whose toy has converged takes the next one, so that one slow toy holds up few
others. Toys it does not converge, and all toys of a likelihood with kinked
modifiers (which need several starts), are fitted one by one with
:func:`~.optimize.minimize`, so the answers have the chain's tolerance either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from .histfactory import ModelFunctions
from .likelihood import Likelihood, hessian_steps
from .optimize import GRADIENT_TOLERANCE, NEWTON_EDM, Curvature, minimize

#: steps, rejected halvings included, before a toy's iteration counts as unconverged
FISHER_MAX_STEPS = 100
#: halvings of one step before the iteration counts as stalled
FISHER_HALVINGS = 25
#: toys iterated side by side in one compiled call; a fixed number, so that any count of toys reuses one compilation
FISHER_LANES = 64
#: steps of each lane per call: converged lanes then take the next toys, so that a slow toy holds up few others
FISHER_ROUND_STEPS = 8
#: lanes of the calls that finish the last few toys, once no toy waits: a 64-lane call costs ~8 of these
FISHER_TAIL_LANES = 8
#: gradients per call of :func:`hessian_batch`: on the default workspace a gradient costs ~22 µs in calls of up
#: to ~250 points and ~50 µs in calls of 450 or more, whose arrays no longer stay in the CPU's cache
HESSIAN_POINTS = 228


@dataclass(frozen=True)
class BatchFit:
    """Minima of ``-2 ln L`` for a batch of data sets; rows in the order of the data.

    ``refitted``: the toys the batched iteration did not converge, fitted one by
    one with :func:`~.optimize.minimize` instead.
    """

    x: np.ndarray  # (n, npars), fixed parameters included
    fval: np.ndarray  # (n,)
    success: np.ndarray  # (n,) bool
    refitted: int


@dataclass
class _Lanes:
    """The iteration state of :data:`FISHER_LANES` toys; ``toy`` is -1 on an idle lane."""

    toy: np.ndarray
    x: np.ndarray
    data: np.ndarray
    value: np.ndarray
    grad: np.ndarray
    step: np.ndarray
    edm: np.ndarray
    scale: np.ndarray
    steps: np.ndarray

    def done(self) -> np.ndarray:
        # a NaN distance (information not positive definite) ends a lane as well
        return ~(self.edm >= NEWTON_EDM) | (self.steps >= FISHER_MAX_STEPS) | (self.scale < 0.5**FISHER_HALVINGS)

    def narrowed(self, width: int) -> _Lanes:
        """The busy lanes (at least one, at most ``width``) moved into ``width`` lanes, the others idle."""
        busy = np.flatnonzero(self.toy >= 0)
        rows = np.concatenate([busy, np.full(width - busy.size, busy[0])])
        lanes = _Lanes(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})
        lanes.toy[busy.size :] = -1
        lanes.steps[busy.size :] = FISHER_MAX_STEPS
        return lanes


def _fisher_scoring(functions: ModelFunctions, n_main: int) -> tuple[Callable, Callable]:
    """One toy's bounded Fisher-scoring iteration in JAX, as ``start`` and ``advance`` functions to be vmapped.

    ``start(x0, data, lower, upper, free) -> (x, value, grad, step, edm)`` projects
    the start on the bounds and takes its first scoring step;
    ``advance(x, value, grad, step, edm, scale, steps, data, lower, upper, free)``
    iterates up to :data:`FISHER_ROUND_STEPS` more steps and returns the same
    state. Parameters outside ``free`` stay put, and those at a bound that the
    gradient pushes outwards are held for a step.
    """
    import jax
    import jax.numpy as jnp

    main_value_and_grad = jax.value_and_grad(functions.twice_main_nll)
    constraint_value_and_grad = jax.value_and_grad(functions.twice_constraint_nll)
    constraint_grad = jax.grad(functions.twice_constraint_nll)

    def evaluate(x, data):
        """-2 ln L, its gradient and the expected information at ``x``, from one Jacobian of the expected counts."""
        nu, j = functions.expected_and_jacobian(x)
        main_value, main_grad = main_value_and_grad(nu, data[:n_main])  # the chain rule through nu: J^T d(-2 ln L)/d nu
        constraint_value, constraint_gradient = constraint_value_and_grad(x, data[n_main:])
        # tiny positive floor: a bin predicted empty carries no information, not an infinite one
        nu = jnp.maximum(nu, 1e-12)
        # the constraint terms are separable, so their Hessian is diagonal: H 1 is its diagonal
        constraint = jax.jvp(lambda p: constraint_grad(p, data[n_main:]), (x,), (jnp.ones_like(x),))[1]
        fisher = 2.0 * (j.T / nu) @ j + jnp.diag(constraint)
        return main_value + constraint_value, j.T @ main_grad + constraint_gradient, fisher

    def scoring_step(x, grad, fisher, lower, upper, free):
        moving = free & ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
        g = jnp.where(moving, grad, 0.0)
        # an information that is not positive definite gives NaN here, which ends the iteration unconverged
        matrix = jnp.where(moving[:, None] & moving[None, :], fisher, jnp.eye(x.shape[0]))
        step = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(matrix), True), g)
        return step, 0.5 * g @ step

    def start(x0, data, lower, upper, free):
        free = free > 0.5  # arrives as float, like every argument of a Likelihood's compiled functions
        x = jnp.where(free, jnp.clip(x0, lower, upper), x0)
        value, grad, fisher = evaluate(x, data)
        return (x, value, grad, *scoring_step(x, grad, fisher, lower, upper, free))

    def advance(x, value, grad, step, edm, scale, steps, data, lower, upper, free):
        free = free > 0.5
        last = jnp.minimum(steps + FISHER_ROUND_STEPS, FISHER_MAX_STEPS)

        def iterate(state):
            # one trial per iteration, no inner loop: vmapped, every toy's lane would wait for the slowest line search
            x, value, grad, step, edm, scale, steps = state
            trial = jnp.where(free, jnp.clip(x - scale * step, lower, upper), x)
            trial_value, trial_grad, trial_fisher = evaluate(trial, data)
            accepted = jnp.isfinite(trial_value) & (trial_value <= value)
            new_step, new_edm = scoring_step(trial, trial_grad, trial_fisher, lower, upper, free)
            x = jnp.where(accepted, trial, x)
            value = jnp.where(accepted, trial_value, value)
            grad = jnp.where(accepted, trial_grad, grad)
            step = jnp.where(accepted, new_step, step)
            edm = jnp.where(accepted, new_edm, edm)
            scale = jnp.where(accepted, 1.0, 0.5 * scale)
            return x, value, grad, step, edm, scale, steps + 1

        def running(state):
            edm, scale, steps = state[4:]
            return (edm >= NEWTON_EDM) & (steps < last) & (scale >= 0.5**FISHER_HALVINGS)

        return jax.lax.while_loop(running, iterate, (x, value, grad, step, edm, scale, steps))

    return start, advance


def _iterate_toys(lh: Likelihood, starts: np.ndarray, data: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run the Fisher scoring of every toy through :data:`FISHER_LANES` lanes; ``(x, value, grad, converged)`` per toy."""
    import jax

    n_main = lh.model.config.nmaindata
    lanes_axes = (0, 0, None, None, None)
    start = lh.compiled("fisher_start", lambda f: jax.vmap(_fisher_scoring(f, n_main)[0], in_axes=lanes_axes))
    advance = lh.compiled("fisher_advance", lambda f: jax.vmap(_fisher_scoring(f, n_main)[1], in_axes=(0,) * 8 + (None,) * 3))
    lower, upper, free_f = lh.bounds[:, 0], lh.bounds[:, 1], free.astype(float)
    n, width = len(data), FISHER_LANES
    lanes = _Lanes(
        toy=np.full(width, -1),
        x=np.repeat(starts[:1], width, axis=0),
        data=np.repeat(data[:1], width, axis=0),
        value=np.zeros(width),
        grad=np.zeros((width, lh.npars)),
        step=np.zeros((width, lh.npars)),
        edm=np.zeros(width),
        scale=np.ones(width),
        steps=np.full(width, float(FISHER_MAX_STEPS)),  # idle lanes look finished
    )
    x, value, grad = np.empty_like(starts), np.empty(n), np.empty_like(starts)
    converged = np.zeros(n, dtype=bool)
    queued = 0
    while True:
        empty = np.flatnonzero(lanes.toy < 0)[: n - queued]
        if empty.size:
            toys = np.arange(queued, queued + empty.size)
            queued += empty.size
            lanes.toy[empty], lanes.x[empty], lanes.data[empty] = toys, starts[toys], data[toys]
            fresh = [np.array(a) for a in start(lanes.x, lanes.data, lower, upper, free_f)]
            for name, values in zip(("x", "value", "grad", "step", "edm"), fresh, strict=True):
                getattr(lanes, name)[empty] = values[empty]
            lanes.scale[empty], lanes.steps[empty] = 1.0, 0.0
        if (lanes.toy < 0).all():
            return x, value, grad, converged
        state = advance(lanes.x, lanes.value, lanes.grad, lanes.step, lanes.edm, lanes.scale, lanes.steps, lanes.data, lower, upper, free_f)
        lanes.x, lanes.value, lanes.grad, lanes.step, lanes.edm, lanes.scale, lanes.steps = (np.array(a) for a in state)
        finished = np.flatnonzero((lanes.toy >= 0) & lanes.done())
        toys = lanes.toy[finished]
        x[toys], value[toys], grad[toys] = lanes.x[finished], lanes.value[finished], lanes.grad[finished]
        converged[toys] = lanes.edm[finished] < NEWTON_EDM
        lanes.toy[finished] = -1
        lanes.steps[finished] = FISHER_MAX_STEPS
        busy = int((lanes.toy >= 0).sum())
        if queued == n and 0 < busy <= FISHER_TAIL_LANES < len(lanes.toy):
            lanes = lanes.narrowed(FISHER_TAIL_LANES)


def minimize_batch(lh: Likelihood, data: np.ndarray, *, init: np.ndarray, fixed: dict[int, float] | None = None) -> BatchFit:
    """Minimise ``-2 ln L`` for each row of ``data`` (n, ndata), to :func:`~.optimize.minimize`'s tolerance.

    ``init`` is one start (npars,) for all rows or one per row (n, npars);
    ``fixed`` holds parameters at values, on top of the model's fixed ones.
    """
    data = np.atleast_2d(np.asarray(data, float))
    n = len(data)
    starts = np.broadcast_to(np.asarray(init, float), (n, lh.npars)).copy()
    free = ~lh.fixed.copy()
    for index, value in (fixed or {}).items():
        starts[:, index] = value
        free[index] = False
    if n == 0 or (lh.kinked & free).any():
        fits = [minimize(lh, d, init=s, fixed=fixed) for d, s in zip(data, starts, strict=True)]
        x = np.asarray([f.x for f in fits]).reshape(n, lh.npars)
        return BatchFit(x, np.asarray([f.fval for f in fits]), np.asarray([f.success for f in fits], dtype=bool), n)

    x, fval, grad, converged = _iterate_toys(lh, starts, data, free)
    at_bound = ((x <= lh.bounds[:, 0] + 1e-8) & (grad > 0)) | ((x >= lh.bounds[:, 1] - 1e-8) & (grad < 0))
    projected = np.where(free & ~at_bound, np.abs(grad), 0.0).max(axis=1)
    success = converged & np.isfinite(fval) & (projected < GRADIENT_TOLERANCE)
    refit = np.flatnonzero(~success)
    for k in refit:
        fit = minimize(lh, data[k], init=starts[k], fixed=fixed)
        x[k], fval[k], success[k] = fit.x, fit.fval, fit.success
    return BatchFit(x, fval, success, len(refit))


def hessian_batch(lh: Likelihood, pars: np.ndarray, data: np.ndarray, free: np.ndarray | None = None) -> list[Curvature]:
    """:meth:`Likelihood.hessian` at each row of ``pars`` (n, npars) for the data set of the same row, as curvatures.

    The same forward differences of the exact gradient, evaluated for all rows
    and shifts in one batched call.
    """
    import jax

    pars = np.atleast_2d(np.asarray(pars, float))
    data = np.atleast_2d(np.asarray(data, float))
    free = ~lh.fixed if free is None else np.asarray(free, bool)
    index = np.flatnonzero(free)
    n, k = len(pars), len(index)
    if n == 0:
        return []
    steps = hessian_steps(pars[:, index])  # (n, k)
    points = np.repeat(pars[:, None, :], k + 1, axis=1)  # (n, k + 1, npars): the point, then one shift per parameter
    points[:, 1 + np.arange(k), index] += steps
    value_and_grad = lh.compiled("batch_value_and_grad", lambda f: jax.vmap(jax.value_and_grad(f.twice_nll)))
    rows = HESSIAN_POINTS  # one compiled shape, the last call padded
    flat_points, flat_data = points.reshape(n * (k + 1), -1), np.repeat(data, k + 1, axis=0)
    grads = np.empty_like(flat_points)
    for first in range(0, len(flat_points), rows):
        chunk = slice(first, min(first + rows, len(flat_points)))
        pad = rows - (chunk.stop - chunk.start)
        _, g = value_and_grad(*(np.concatenate([a[chunk], np.repeat(a[chunk][:1], pad, axis=0)]) for a in (flat_points, flat_data)))
        grads[chunk] = np.asarray(g)[: rows - pad]
    grads = grads.reshape(n, k + 1, -1)[:, :, index]
    hessians = (grads[:, 1:] - grads[:, :1]) / steps[:, :, None]
    return [Curvature(free.copy(), 0.5 * (h + h.T)) for h in hessians]
