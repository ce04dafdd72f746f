"""The B -> K vector form factor and the SM q² spectrum of B -> K νν̄, one implementation each.

Ball-Zwicky light-cone sum rules, P. Ball and R. Zwicky, Phys. Rev. D 71, 014015
(2005), hep-ph/0406232, Table 1::

    f+(q²) = r1 / (1 - q²/m1²) + r2 / (1 - q²/m1²)²,  r1 = 0.162, r2 = 0.173, m1 = 5.41 GeV

(f+(0) = 0.335; the same numbers are the EOS flavour library's BZ2004v2). The
functions are numba kernels on scalars; their ``py_func`` takes numpy arrays as
well, which is how the form-factor systematic evaluates them on whole columns.
"""

from __future__ import annotations

import numpy as np

from kvv.physics.kinematics import jit

BZ_R1 = 0.162
BZ_R2 = 0.173
BZ_M1 = 5.41  # GeV, the B_s* pole


@jit
def kallen(a: float, b: float, c: float) -> float:
    """Källén triangle function λ(a, b, c) of squared masses."""
    return a * a + b * b + c * c - 2.0 * (a * b + a * c + b * c)


@jit
def fplus(q2: float, r1: float = BZ_R1, r2: float = BZ_R2, m1: float = BZ_M1) -> float:
    """Ball-Zwicky f+(q²) with parameters r1, r2 and pole mass m1 (GeV)."""
    x = 1.0 - q2 / (m1 * m1)
    return r1 / x + r2 / (x * x)


@jit
def dgamma_dq2(q2: float, m_b: float, m_k: float, r1: float = BZ_R1, r2: float = BZ_R2, m1: float = BZ_M1) -> float:
    """SM dΓ/dq² of B -> K νν̄ up to a constant: λ^{3/2}(m_B², m_K², q²) f+(q²)² (massless neutrinos)."""
    lam = np.maximum(kallen(m_b * m_b, m_k * m_k, q2), 0.0)
    f = fplus(q2, r1, r2, m1)
    return lam**1.5 * f * f


@jit
def phase_space_weight(q2: float, m_b: float, m_k: float) -> float:
    """dΓ/dq² over the three-body phase-space density (∝ λ^{1/2}): the generator's accept-reject weight λ f+²."""
    lam = kallen(m_b * m_b, m_k * m_k, q2)
    if lam <= 0.0:
        return 0.0
    f = fplus(q2, BZ_R1, BZ_R2, BZ_M1)
    return lam * f * f
