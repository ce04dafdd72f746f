"""Numba kernels for event-shape variables (thrust, Fox-Wolfram, sphericity, cones, KSFW).

All kernels take per-event ranges ``starts, stops`` into flat momentum arrays
(see :mod:`kvv.physics.kinematics`) and are meant for CMS momenta; the loop over
events runs inside each jitted kernel. Starting the ranges one object later
selects the rest of the event without a copy (:mod:`kvv.features`).

Sentinels: an event with no object (or only null momenta) gets thrust 0 with
a null axis, all Fox-Wolfram moments 0, sphericity and aplanarity 0 and empty
cones; nothing is NaN.
"""

from __future__ import annotations

import numpy as np

from kvv.physics.kinematics import jit

EXACT_THRUST_MAX_N = 10
"""Up to this many objects thrust is exact: all 2^(n-1) sign assignments are
enumerated in Gray-code order (one vector update per step)."""

THRUST_SEEDS = 4
"""Beyond EXACT_THRUST_MAX_N, iterate ``n <- sum_i sign(p_i . n) p_i`` (each step
cannot lower sum |p.n|) from the 2^(k-1) sign combinations of the k hardest
momenta (the Brandt-Dahmen / JETSET seeds); at each fixed point also try the
single sign flip that raises |sum s_i p_i| most, and keep the best result.
On isotropic random events with 11-16 objects this gives the exact thrust in
more than 99 % of events (k = 3: ~99 % at half the cost, k = 2: ~97 %);
tests/test_eventshape.py checks it against brute force."""

N_CLEO_CONES = 9
_CONE_EDGES = np.cos(np.deg2rad(10.0 * np.arange(1, N_CLEO_CONES)))  # cos 10, ..., cos 80 deg


@jit
def _thrust_exact(px, py, pz):
    vx, vy, vz = px.sum(), py.sum(), pz.sum()
    best = vx * vx + vy * vy + vz * vz
    bx, by, bz = vx, vy, vz
    # Gray code over the signs of objects 1..n-1 (object 0 fixed: n and -n are equivalent);
    # step k flips object 1 + (trailing zeros of k), whose sign is bit of the Gray code k ^ k >> 1
    for step in range(1, 1 << (len(px) - 1)):
        bit = 0
        while not (step >> bit) & 1:
            bit += 1
        sign = -2.0 if ((step ^ (step >> 1)) >> bit) & 1 else 2.0
        vx += sign * px[bit + 1]
        vy += sign * py[bit + 1]
        vz += sign * pz[bit + 1]
        v2 = vx * vx + vy * vy + vz * vz
        if v2 > best:
            best = v2
            bx, by, bz = vx, vy, vz
    return bx, by, bz


@jit
def _hardest(p, k, out):
    """Indices of the k largest entries of p into out[:k] (insertion, no allocation)."""
    for m in range(k):
        out[m] = -1
    for j in range(len(p)):
        m = k - 1
        if out[m] >= 0 and p[j] <= p[out[m]]:
            continue
        while m > 0 and (out[m - 1] < 0 or p[j] > p[out[m - 1]]):
            out[m] = out[m - 1]
            m -= 1
        out[m] = j


@jit
def _thrust_iterative(px, py, pz, p, seeds, found):
    n = len(px)
    _hardest(p, THRUST_SEEDS, seeds)
    n_found = 0
    for combo in range(1 << (THRUST_SEEDS - 1)):
        nx, ny, nz = px[seeds[0]], py[seeds[0]], pz[seeds[0]]
        for s in range(1, THRUST_SEEDS):
            sign = -1.0 if combo >> (s - 1) & 1 else 1.0
            nx += sign * px[seeds[s]]
            ny += sign * py[seeds[s]]
            nz += sign * pz[seeds[s]]
        # each step maximises sum |p.n| for fixed signs; stop at a fixed point, or as soon
        # as an earlier seed's fixed point is reached (same signs give the same exact sum).
        # |v| grows strictly at every change, so there is no cycle.
        for _ in range(4 * n):
            vx = vy = vz = 0.0
            for j in range(n):
                # branch-free sign: the branch would be mispredicted half of the time
                sign = np.copysign(1.0, px[j] * nx + py[j] * ny + pz[j] * nz)
                vx += sign * px[j]
                vy += sign * py[j]
                vz += sign * pz[j]
            if vx == nx and vy == ny and vz == nz:
                # a fixed point can still gain from flipping one object nearly
                # perpendicular to v: |v - 2 s_j p_j|^2 - |v|^2 = 4 (|p_j|^2 - |p_j.v|)
                gain, flip = 0.0, -1
                for j in range(n):
                    g = p[j] * p[j] - abs(px[j] * vx + py[j] * vy + pz[j] * vz)
                    if g > gain:
                        gain, flip = g, j
                if flip < 0:
                    found[n_found, 0], found[n_found, 1], found[n_found, 2] = vx, vy, vz
                    n_found += 1
                    break
                sign = np.copysign(2.0, px[flip] * vx + py[flip] * vy + pz[flip] * vz)
                vx -= sign * px[flip]
                vy -= sign * py[flip]
                vz -= sign * pz[flip]
            known = False
            for f in range(n_found):
                known |= vx == found[f, 0] and vy == found[f, 1] and vz == found[f, 2]
            if known:
                break
            nx, ny, nz = vx, vy, vz
    best = -1.0
    bx = by = bz = 0.0
    for f in range(n_found):
        v2 = found[f, 0] ** 2 + found[f, 1] ** 2 + found[f, 2] ** 2
        if v2 > best:
            best = v2
            bx, by, bz = found[f, 0], found[f, 1], found[f, 2]
    return bx, by, bz


@jit
def thrust(starts: np.ndarray, stops: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thrust T = max_n sum|p_i.n| / sum|p_i| and its unit axis (a_z >= 0), shape (n_events, 3).

    Exact for n <= EXACT_THRUST_MAX_N, iterative beyond (see THRUST_SEEDS).
    One object: T = 1 along its momentum; no object (or a null sum): T = 0, axis (0, 0, 0).
    """
    n_events = len(starts)
    value = np.zeros(n_events)
    axis = np.zeros((n_events, 3))
    p = np.empty(np.max(stops - starts) if n_events else 0)  # scratch, reused per event
    seeds = np.empty(THRUST_SEEDS, dtype=np.int64)
    found = np.empty((1 << (THRUST_SEEDS - 1), 3))
    for i in range(n_events):
        a, b = starts[i], stops[i]
        p_sum = 0.0
        for j in range(a, b):
            p[j - a] = np.sqrt(px[j] * px[j] + py[j] * py[j] + pz[j] * pz[j])
            p_sum += p[j - a]
        if p_sum == 0.0:
            continue
        if b - a <= EXACT_THRUST_MAX_N:
            vx, vy, vz = _thrust_exact(px[a:b], py[a:b], pz[a:b])
        else:
            vx, vy, vz = _thrust_iterative(px[a:b], py[a:b], pz[a:b], p[: b - a], seeds, found)
        norm = np.copysign(np.sqrt(vx * vx + vy * vy + vz * vz), vz)
        if norm == 0.0:  # the sum vanishes for every sign choice only without momentum
            continue
        value[i] = abs(norm) / p_sum
        axis[i, 0], axis[i, 1], axis[i, 2] = vx / norm, vy / norm, vz / norm
    return value, axis


FW_LMAX = 4
"""Fox-Wolfram and KSFW moments are computed for l = 0 .. FW_LMAX."""


@jit
def _legendre(c):
    """P_1..P_4 at c (P_0 = 1), explicit polynomials: no per-pair array traffic."""
    c2 = c * c
    return c, 0.5 * (3.0 * c2 - 1.0), 0.5 * c * (5.0 * c2 - 3.0), 0.125 * ((35.0 * c2 - 30.0) * c2 + 3.0)


@jit
def _add_legendre(out, i, c, w):
    """out[i, l] += w * P_l(c), l = 0 .. FW_LMAX."""
    p1, p2, p3, p4 = _legendre(c)
    out[i, 0] += w
    out[i, 1] += w * p1
    out[i, 2] += w * p2
    out[i, 3] += w * p3
    out[i, 4] += w * p4


@jit
def fox_wolfram(starts: np.ndarray, stops: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """Unnormalised Fox-Wolfram moments H_l = sum_{i,j} |p_i||p_j| P_l(cos theta_ij).

    The double sum runs over all ordered pairs, i = j included, so H_0 = (sum|p|)^2
    and R_l = H_l / H_0 (see :func:`normalise`). Shape (n_events, FW_LMAX + 1).
    """
    out = np.zeros((len(starts), FW_LMAX + 1))
    n_max = np.max(stops - starts) if len(starts) else 0
    # per-event |p| and unit vectors, so the O(n^2) pair loop has no sqrt or division
    p = np.empty(n_max)
    u = np.empty((n_max, 3))
    for i in range(len(starts)):
        n = stops[i] - starts[i]
        for j in range(n):
            k = starts[i] + j
            p[j] = np.sqrt(px[k] * px[k] + py[k] * py[k] + pz[k] * pz[k])
            inv = 1.0 / p[j] if p[j] > 0.0 else 0.0
            u[j, 0], u[j, 1], u[j, 2] = px[k] * inv, py[k] * inv, pz[k] * inv
        h0 = h1 = h2 = h3 = h4 = 0.0
        for j in range(n):
            # diagonal term (P_l(1) = 1) plus twice the pairs k > j
            s0 = 0.5 * p[j]
            s1 = s2 = s3 = s4 = s0
            for k in range(j + 1, n):
                c = u[j, 0] * u[k, 0] + u[j, 1] * u[k, 1] + u[j, 2] * u[k, 2]
                p1, p2, p3, p4 = _legendre(c)
                s0 += p[k]
                s1 += p[k] * p1
                s2 += p[k] * p2
                s3 += p[k] * p3
                s4 += p[k] * p4
            h0 += p[j] * s0
            h1 += p[j] * s1
            h2 += p[j] * s2
            h3 += p[j] * s3
            h4 += p[j] * s4
        out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = 2 * h0, 2 * h1, 2 * h2, 2 * h3, 2 * h4
    return out


@jit
def axis_legendre(
    starts: np.ndarray,
    stops: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    axis: np.ndarray,
) -> np.ndarray:
    """sum_i |p_i| P_l(cos theta_i), theta_i the angle of p_i to the event's ``axis[i]``.

    With the kaon momentum as axis this is the signal-other KSFW sum (times |p_K|).
    Rows with a null axis are 0. Shape (n_events, FW_LMAX + 1).
    """
    out = np.zeros((len(starts), FW_LMAX + 1))
    for i in range(len(starts)):
        a_norm = np.sqrt(axis[i, 0] ** 2 + axis[i, 1] ** 2 + axis[i, 2] ** 2)
        if a_norm == 0.0:
            continue
        for j in range(starts[i], stops[i]):
            p = np.sqrt(px[j] * px[j] + py[j] * py[j] + pz[j] * pz[j])
            if p == 0.0:
                continue
            c = (px[j] * axis[i, 0] + py[j] * axis[i, 1] + pz[j] * axis[i, 2]) / (p * a_norm)
            _add_legendre(out, i, c, p)
    return out


def normalise(moments: np.ndarray) -> np.ndarray:
    """R_l = H_l / H_0 row by row, 0 for rows with H_0 = 0 (no momentum)."""
    h0 = moments[:, :1]
    return np.divide(moments, h0, out=np.zeros_like(moments), where=h0 > 0.0)


@jit
def _symmetric_eigenvalues(a00, a11, a22, a01, a02, a12):
    """Eigenvalues (descending) of a real symmetric 3x3 matrix, closed form (Smith 1961).

    Accurate to ~1e-8 absolute for (near-)degenerate pairs, ample for event shapes.
    """
    q = (a00 + a11 + a22) / 3.0
    off = a01 * a01 + a02 * a02 + a12 * a12
    p2 = (a00 - q) ** 2 + (a11 - q) ** 2 + (a22 - q) ** 2 + 2.0 * off
    if p2 <= 0.0:
        return q, q, q
    p = np.sqrt(p2 / 6.0)
    b00, b11, b22 = (a00 - q) / p, (a11 - q) / p, (a22 - q) / p
    b01, b02, b12 = a01 / p, a02 / p, a12 / p
    half_det = 0.5 * (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02))
    phi = np.arccos(min(1.0, max(-1.0, half_det))) / 3.0
    l1 = q + 2.0 * p * np.cos(phi)
    l3 = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    return l1, 3.0 * q - l1 - l3, l3


@jit
def sphericity(starts: np.ndarray, stops: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sphericity 3/2 (l2 + l3) and aplanarity 3/2 l3 of S^ab = sum p^a p^b / sum |p|^2.

    l1 >= l2 >= l3 are the eigenvalues of the (quadratic) momentum tensor.
    """
    n_events = len(starts)
    sph = np.zeros(n_events)
    apl = np.zeros(n_events)
    for i in range(n_events):
        xx = yy = zz = xy = xz = yz = 0.0
        for j in range(starts[i], stops[i]):
            xx += px[j] * px[j]
            yy += py[j] * py[j]
            zz += pz[j] * pz[j]
            xy += px[j] * py[j]
            xz += px[j] * pz[j]
            yz += py[j] * pz[j]
        norm = xx + yy + zz
        if norm == 0.0:
            continue
        _, l2, l3 = _symmetric_eigenvalues(xx / norm, yy / norm, zz / norm, xy / norm, xz / norm, yz / norm)
        # the tensor is positive semi-definite: clip rounding below 0
        sph[i] = 1.5 * max(l2 + l3, 0.0)
        apl[i] = 1.5 * max(l3, 0.0)
    return sph, apl


@jit
def cleo_cones(
    starts: np.ndarray,
    stops: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    axis: np.ndarray,
) -> np.ndarray:
    """CLEO cones: sum |p| of the objects in 10-degree cones around ``axis[i]``, folded.

    Cone k (1..9) holds the objects whose angle to the axis line (both directions,
    alpha = min(theta, pi - theta)) is in [10(k-1), 10k) degrees; alpha = 90 deg
    goes to cone 9. Shape (n_events, 9); rows with a null axis are 0.
    """
    out = np.zeros((len(starts), N_CLEO_CONES))
    for i in range(len(starts)):
        a_norm = np.sqrt(axis[i, 0] ** 2 + axis[i, 1] ** 2 + axis[i, 2] ** 2)
        if a_norm == 0.0:
            continue
        for j in range(starts[i], stops[i]):
            p = np.sqrt(px[j] * px[j] + py[j] * py[j] + pz[j] * pz[j])
            if p == 0.0:
                continue
            c = abs(px[j] * axis[i, 0] + py[j] * axis[i, 1] + pz[j] * axis[i, 2]) / (p * a_norm)
            # cone k holds cos(10k deg) < |cos| <= cos(10(k-1) deg): compare, no arccos
            k = 0
            while k < N_CLEO_CONES - 1 and c <= _CONE_EDGES[k]:
                k += 1
            out[i, k] += p
    return out


@jit
def transverse_energy(starts: np.ndarray, stops: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """E_T = sum_i sqrt(px_i^2 + py_i^2), the scalar transverse momentum sum to the z axis."""
    out = np.zeros(len(starts))
    for i in range(len(starts)):
        for j in range(starts[i], stops[i]):
            out[i] += np.sqrt(px[j] * px[j] + py[j] * py[j])
    return out
