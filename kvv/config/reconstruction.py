"""Candidate reconstruction settings of the K* analysis and of the B+ -> J/psi K+ control channel.

Masses, widths and windows in GeV/c^2, energies in GeV, dr in cm.
"""

from __future__ import annotations

import enum

from pydantic import Field

from kvv.config.base import Strict


class Mode(enum.IntEnum):
    """Reconstructed K* decay mode (-1 in the output arrays: no candidate)."""

    KSTAR0_KPI = 0  # K*0 -> K+ pi-
    KSTAR0_KSPI0 = 1  # K*0 -> K0S pi0
    KSTARP_KPI0 = 2  # K*+ -> K+ pi0
    KSTARP_KSPI = 3  # K*+ -> K0S pi+


class Rank(enum.IntEnum):
    """Best-candidate rule of the K* reconstruction (see :mod:`kvv.kstar`)."""

    MASS = 0
    PID = 1


class KstarCuts(Strict):
    """K* candidate requirements (``kstar:`` in the YAML)."""

    kaon_id_cut: float = 0.5  # K+ tracks: kaonID > cut
    pion_id_cut: float = 0.5  # bachelor pions: pionID > cut (no PID on K0S daughters)
    ks_mass_window: float = Field(default=0.015, gt=0)  # |m(pi+pi-) - M_K0S|
    ks_dr_min: float = Field(default=0.02, ge=0)  # both K0S daughters |dr| >= this; 0 switches it off
    prompt_dr_max: float = Field(default=0.5, gt=0)  # K+ and bachelor pion: |dr| < this (the ITA track cleanup)
    pi0_mass_window: float = Field(default=0.025, gt=0)  # |m(gamma gamma) - M_pi0|
    kstar_mass_window: float = Field(default=0.1, gt=0)  # |m - M_K*|
    ks_mass_sigma: float = Field(default=0.004, gt=0)  # K0S mass resolution (Belle II-like; the fast simulation has 1 MeV)
    pi0_mass_sigma: float = Field(default=0.008, gt=0)  # pi0 mass resolution (Belle II-like; the fast simulation has 5 MeV)
    modes: tuple[Mode, ...] = tuple(Mode)
    rank: Rank = Rank.PID


class JpsiKCuts(Strict):
    """B+ -> J/psi(-> mu+ mu-) K+ candidate requirements."""

    muon_id_cut: float = 0.5  # both muons: muonID > cut
    kaon_id_cut: float = 0.5  # kaonID > cut
    jpsi_mass_window: float = Field(default=0.05, gt=0)  # |m(mu mu) - M_J/psi|; symmetric: the simulation has no FSR tail
    delta_e_window: float = Field(default=0.2, gt=0)  # |Delta E| of the B candidate


class Binning(Strict):
    """Regular binning of a control histogram."""

    bins: int = Field(gt=0)
    start: float
    stop: float
