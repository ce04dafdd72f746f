"""Numba kernels of the generator: two-body and n-body phase space, decay angles, line shapes.

The n-body generator follows the Raubold-Lynch method as used in CERNLIB GENBOD
(F. James, CERN 68-15): n-2 ordered uniform numbers fix the intermediate
invariant masses, the event weight is the product of the two-body break-up
momenta, and events are unweighted by accept-reject. The analytic GENBOD bound
of the weight is very loose for many bodies (acceptance 7e-4 for B -> D 5pi), so
decays with >= 3 bodies use a maximum weight estimated once per mode (EvtGen's
"probmax" approach, see ``decaytable.py``). Four-vectors are (E, px, py, pz) in GeV; the random numbers come
from numba's ``np.random`` state, seeded by the caller.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kvv.physics.formfactors import kallen
from kvv.physics.kinematics import boost


@njit(cache=True)
def two_body_momentum(m: float, m1: float, m2: float) -> float:
    """Momentum of either daughter in the rest frame of m -> m1 m2 (0 below threshold)."""
    lam = kallen(m * m, m1 * m1, m2 * m2)
    return math.sqrt(lam) / (2.0 * m) if lam > 0.0 else 0.0


@njit(cache=True)
def boost_in_place(p: np.ndarray, k: int, bx: float, by: float, bz: float) -> None:
    """Boost the four-vector in row ``k`` of ``p`` in place from a frame moving with velocity b to the lab.

    A row index rather than a row view: a view costs a reference count in the generator's inner loop.
    """
    p[k, 0], p[k, 1], p[k, 2], p[k, 3] = boost(p[k, 0], p[k, 1], p[k, 2], p[k, 3], bx, by, bz)


@njit(cache=True)
def random_direction() -> tuple[float, float, float]:
    """Isotropic unit vector."""
    cos_t = 2.0 * np.random.random() - 1.0
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    phi = 2.0 * math.pi * np.random.random()
    return sin_t * math.cos(phi), sin_t * math.sin(phi), cos_t


@njit(cache=True)
def direction_about_axis(axis: np.ndarray, cos_t: float) -> tuple[float, float, float]:
    """Unit vector at polar angle acos(cos_t) to ``axis`` and uniform azimuth."""
    ax, ay, az = axis[0], axis[1], axis[2]
    # any vector not parallel to the axis gives an orthonormal basis (u, v, axis)
    if abs(ax) < 0.9:
        ux, uy, uz = 0.0, az, -ay
    else:
        ux, uy, uz = -az, 0.0, ax
    norm = math.sqrt(ux * ux + uy * uy + uz * uz)
    ux, uy, uz = ux / norm, uy / norm, uz / norm
    vx, vy, vz = ay * uz - az * uy, az * ux - ax * uz, ax * uy - ay * ux
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    phi = 2.0 * math.pi * np.random.random()
    c, s = sin_t * math.cos(phi), sin_t * math.sin(phi)
    return c * ux + s * vx + cos_t * ax, c * uy + s * vy + cos_t * ay, c * uz + s * vz + cos_t * az


@njit(cache=True)
def sample_cos_theta(model: int) -> float:
    """cos(theta) w.r.t. the collision axis: 1 + cos^2 (model 3) or sin^2 (model 2)."""
    while True:
        c = 2.0 * np.random.random() - 1.0
        density = 0.5 * (1.0 + c * c) if model == 3 else 1.0 - c * c
        if np.random.random() < density:
            return c


@njit(cache=True)
def two_body(m: float, m1: float, m2: float, nx: float, ny: float, nz: float, out: np.ndarray) -> None:
    """Daughters of m -> m1 m2 in the rest frame of m, daughter 1 along (nx, ny, nz)."""
    p = two_body_momentum(m, m1, m2)
    out[0, 0] = math.sqrt(p * p + m1 * m1)
    out[0, 1], out[0, 2], out[0, 3] = p * nx, p * ny, p * nz
    out[1, 0] = math.sqrt(p * p + m2 * m2)
    out[1, 1], out[1, 2], out[1, 3] = -p * nx, -p * ny, -p * nz


@njit(cache=True)
def genbod_max_weight(m: float, masses: np.ndarray, n: int) -> float:
    """Upper bound of the GENBOD weight (product of break-up momenta)."""
    kinetic = m
    for i in range(n):
        kinetic -= masses[i]
    emmax = kinetic + masses[0]
    emmin = 0.0
    wmax = 1.0
    for i in range(1, n):
        emmin += masses[i - 1]
        emmax += masses[i]
        wmax *= two_body_momentum(emmax, emmin, masses[i])
    return wmax


@njit(cache=True)
def _raubold_lynch(m: float, masses: np.ndarray, n: int, invmass: np.ndarray, pd: np.ndarray) -> float:
    """One weighted configuration: intermediate masses and break-up momenta; returns the weight."""
    kinetic = m
    for i in range(n):
        kinetic -= masses[i]
    # n-2 sorted uniforms (insertion sort) stored in invmass, then turned into masses
    invmass[0] = 0.0
    for i in range(1, n - 1):
        r = np.random.random()
        k = i
        while k > 1 and invmass[k - 1] > r:
            invmass[k] = invmass[k - 1]
            k -= 1
        invmass[k] = r
    invmass[n - 1] = 1.0
    msum = 0.0
    for i in range(n):
        msum += masses[i]
        invmass[i] = invmass[i] * kinetic + msum
    weight = 1.0
    for i in range(n - 1):
        pd[i] = two_body_momentum(invmass[i + 1], invmass[i], masses[i + 1])
        weight *= pd[i]
    return weight


@njit(cache=True)
def estimate_max_weight(m: float, masses: np.ndarray, n: int, trials: int, seed: int) -> float:
    """Largest GENBOD weight seen in ``trials`` configurations (seeded: deterministic)."""
    np.random.seed(seed)
    invmass = np.empty(n)
    pd = np.empty(n)
    wmax = 0.0
    for _ in range(trials):
        wmax = max(wmax, _raubold_lynch(m, masses, n, invmass, pd))
    return wmax


@njit(cache=True)
def genbod(m: float, masses: np.ndarray, n: int, out: np.ndarray, wmax: float, scratch: np.ndarray) -> None:
    """Unweighted n-body phase-space decay of mass m at rest (n >= 2) into ``out[:n]``.

    Raubold-Lynch: sort n-2 uniforms, build invariant masses of the first k
    daughters, weight by the product of break-up momenta, accept-reject against
    ``wmax`` (the analytic GENBOD bound if ``wmax <= 0``). ``scratch`` is a
    (2, >= n) work array, passed in to keep allocations out of the event loop.
    """
    if wmax <= 0.0:
        wmax = genbod_max_weight(m, masses, n)
    invmass = scratch[0]
    pd = scratch[1]
    while True:
        if _raubold_lynch(m, masses, n, invmass, pd) >= np.random.random() * wmax:
            break
    # first two daughters back to back in the rest frame of invmass[1]
    nx, ny, nz = random_direction()
    two_body(invmass[1], masses[0], masses[1], nx, ny, nz, out)
    for i in range(2, n):
        # system (0..i-1) recoils against daughter i in the rest frame of invmass[i]
        nx, ny, nz = random_direction()
        p = pd[i - 1]
        e_sys = math.sqrt(p * p + invmass[i - 1] * invmass[i - 1])
        bx, by, bz = p * nx / e_sys, p * ny / e_sys, p * nz / e_sys
        for k in range(i):
            boost_in_place(out, k, bx, by, bz)
        out[i, 0] = math.sqrt(p * p + masses[i] * masses[i])
        out[i, 1], out[i, 2], out[i, 3] = -p * nx, -p * ny, -p * nz


@njit(cache=True)
def breit_wigner(mass: float, width: float, lo: float, hi: float) -> float:
    """Non-relativistic Breit-Wigner mass truncated to [lo, hi] (inverse-CDF sampling)."""
    a = math.atan(2.0 * (lo - mass) / width)
    b = math.atan(2.0 * (hi - mass) / width)
    return mass + 0.5 * width * math.tan(a + (b - a) * np.random.random())
