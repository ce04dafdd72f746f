"""SuperKEKB beam four-momenta and the lab <-> centre-of-mass (CMS) transformation.

The Belle II z axis is the solenoid axis, which bisects the 83 mrad crossing
angle: the e- (HER) beam runs at +41.5 mrad to +z, the e+ (LER) beam at
+41.5 mrad to -z, so the e+e- system moves along z *and* x in the lab.
Electron masses are neglected (a 1e-8 relative effect on sqrt(s)).

Each beam's energy is spread around its nominal value (Gaussian, the absolute
spreads of basf2's SuperKEKB beam-parameter preset: 5.13 MeV for the HER,
2.375 MeV for the LER), so the collision energy of an event scatters by about
5 MeV around sqrt(s). The analysis boosts with the nominal beams (basf2's
``beamE`` etc. come from the conditions database, not from the event), so this
spread is what sets the Mbc resolution of fully reconstructed B decays.

The CMS frame is reached by a pure boost by -beta of the beam four-momentum
sum, as in basf2's ``useCMSFrame``; no extra rotation is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kvv.physics.kinematics import boost

HER_LER_ENERGY_RATIO = 7.0 / 4.0  # e- 7 GeV on e+ 4 GeV (design)
CROSSING_ANGLE = 0.083  # rad, full crossing angle
SQRT_S_ON_RESONANCE = 10.58  # GeV, Upsilon(4S)
SQRT_S_OFF_RESONANCE = 10.52  # GeV, 60 MeV below
HER_ENERGY_SPREAD = 5.13e-3  # GeV, basf2 SuperKEKB preset
LER_ENERGY_SPREAD = 2.375e-3  # GeV


@dataclass(frozen=True)
class Beams:
    """Beam set-up of one sample: sqrt(s) plus the SuperKEKB geometry."""

    sqrt_s: float = SQRT_S_ON_RESONANCE
    crossing_angle: float = CROSSING_ANGLE
    energy_ratio: float = HER_LER_ENERGY_RATIO
    her_energy_spread: float = HER_ENERGY_SPREAD  # GeV, Gaussian sigma of the e- energy
    ler_energy_spread: float = LER_ENERGY_SPREAD  # GeV, Gaussian sigma of the e+ energy

    @property
    def ler_energy(self) -> float:
        """e+ energy in GeV chosen so that the invariant mass equals sqrt(s)."""
        half = 0.5 * self.crossing_angle
        return self.sqrt_s / (2.0 * np.cos(half) * np.sqrt(self.energy_ratio))

    @property
    def her_energy(self) -> float:
        """e- energy in GeV."""
        return self.energy_ratio * self.ler_energy

    @property
    def her(self) -> np.ndarray:
        """Four-momentum (E, px, py, pz) of the e- beam in the lab, GeV."""
        half = 0.5 * self.crossing_angle
        e = self.her_energy
        return np.array([e, e * np.sin(half), 0.0, e * np.cos(half)])

    @property
    def ler(self) -> np.ndarray:
        """Four-momentum (E, px, py, pz) of the e+ beam in the lab, GeV."""
        half = 0.5 * self.crossing_angle
        e = self.ler_energy
        return np.array([e, e * np.sin(half), 0.0, -e * np.cos(half)])

    @property
    def total(self) -> np.ndarray:
        """Four-momentum of the e+e- system in the lab (basf2 beamE, beamPx, ...)."""
        return self.her + self.ler

    @property
    def sqrt_s_spread(self) -> float:
        """Gaussian sigma of the event-by-event collision energy in GeV (to first order).

        sqrt(s) is proportional to sqrt(E_her * E_ler), so its relative spread is
        half the quadratic sum of the beams' relative spreads.
        """
        her = self.her_energy_spread / self.her_energy
        ler = self.ler_energy_spread / self.ler_energy
        return 0.5 * self.sqrt_s * float(np.hypot(her, ler))

    @property
    def beta(self) -> np.ndarray:
        """Velocity of the CMS frame in the lab."""
        tot = self.total
        return tot[1:] / tot[0]

    @property
    def lab_to_cms(self) -> np.ndarray:
        """4x4 matrix taking lab four-vectors (E, px, py, pz) to the CMS frame."""
        return boost_matrix(-self.beta)

    @property
    def cms_to_lab(self) -> np.ndarray:
        """4x4 matrix taking CMS four-vectors to the lab frame."""
        return boost_matrix(self.beta)

    @property
    def collision_axis_cms(self) -> np.ndarray:
        """Unit vector of the e- beam direction in the CMS frame (the 1+cos^2 axis)."""
        her_cms = self.lab_to_cms @ self.her
        return her_cms[1:] / np.linalg.norm(her_cms[1:])


def boost_matrix(beta: np.ndarray) -> np.ndarray:
    """Lorentz matrix boosting (E, px, py, pz) into a frame moving with -beta.

    ``boost_matrix(b) @ p`` gives the four-vector seen by an observer for whom
    the original frame moves with velocity ``b``; ``boost_matrix(-b)`` undoes it.
    Its columns are :func:`kvv.physics.kinematics.boost` of the four unit vectors.
    """
    beta = np.asarray(beta, dtype=np.float64)
    b2 = float(beta @ beta)
    if b2 >= 1.0:
        raise ValueError(f"boost velocity |beta| = {np.sqrt(b2)} is not below 1")
    unit = np.eye(4)
    return np.stack(boost.py_func(*unit, *beta))
