"""The B -> K form factors and the q² spectra of B -> K νν̄, one implementation each.

Ball-Zwicky light-cone sum rules, P. Ball and R. Zwicky, Phys. Rev. D 71, 014015
(2005), hep-ph/0406232, Table 1::

    f+(q²) = r1 / (1 - q²/m1²) + r2 / (1 - q²/m1²)²,  r1 = 0.162, r2 = 0.173, m1 = 5.41 GeV

(f+(0) = 0.335; the same numbers are the EOS flavour library's BZ2004v2). The
functions are numba kernels on scalars; their ``py_func`` takes numpy arrays as
well, which is how the form-factor systematic evaluates them on whole columns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

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


#: the kernels on whole numpy columns: their pure-Python originals broadcast
kallen_columns = cast("Callable[..., np.ndarray]", kallen.py_func)
fplus_columns = cast("Callable[..., np.ndarray]", fplus.py_func)
dgamma_dq2_columns = cast("Callable[..., np.ndarray]", dgamma_dq2.py_func)

# Ball-Zwicky f0 and fT of B -> K, same paper and table (EOS's BZ2004v2):
#   f0(q²) = r2 / (1 - q²/m_fit²),  r2 = 0.330, m_fit² = 37.46 GeV²
#   fT(q²) = r1 / (1 - q²/m1²) + r2 / (1 - q²/m1²)²,  r1 = 0.161, r2 = 0.198, m1 = 5.41 GeV
BZ_F0_R2 = 0.330
BZ_F0_MFIT2 = 37.46  # GeV²
BZ_FT_R1 = 0.161
BZ_FT_R2 = 0.198


def fzero(q2: np.ndarray) -> np.ndarray:
    """Ball-Zwicky scalar form factor f0(q²) of B -> K."""
    return BZ_F0_R2 / (1.0 - np.asarray(q2) / BZ_F0_MFIT2)


def ftensor(q2: np.ndarray) -> np.ndarray:
    """Ball-Zwicky tensor form factor fT(q²) of B -> K."""
    return fplus_columns(np.asarray(q2), BZ_FT_R1, BZ_FT_R2, BZ_M1)


#: the q² spectra of B -> K νν̄ through one operator alone, up to constants (massless neutrinos):
#: vector (the SM's left-handed current) λ^{3/2} f+², scalar q² λ^{1/2} f0², tensor q² λ^{3/2} fT²
#: (e.g. arXiv:2111.04327); the K is isotropic in the B frame for all of them (both are spin 0)
SPECTRA = ("sm", "scalar", "tensor")


def dgamma_dq2_operator(model: str, q2: np.ndarray, m_b: float, m_k: float) -> np.ndarray:
    """dΓ/dq² of B -> K νν̄ for ``model`` in :data:`SPECTRA`, up to a constant, on an array of q²."""
    q2 = np.asarray(q2, dtype=np.float64)
    lam = np.maximum(kallen_columns(m_b * m_b, m_k * m_k, q2), 0.0)
    if model == "sm":
        return dgamma_dq2_columns(q2, m_b, m_k)
    if model == "scalar":
        return q2 * np.sqrt(lam) * fzero(q2) ** 2
    if model == "tensor":
        return q2 * lam**1.5 * ftensor(q2) ** 2
    raise ValueError(f"unknown q2 spectrum {model!r}; kvv knows {', '.join(SPECTRA)}")
