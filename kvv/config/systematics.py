"""The ``systematics`` section of an analysis YAML: one schema per kind of variation.

Weight variations (kaon-PID table, branching fractions, form factor,
normalisations) and object variations (tracking efficiency, photon energy
scale and resolution, beam-background photons, momentum scale); the kernels
that apply them are in :mod:`kvv.systematics`. Default numbers are assumptions
stated next to them; replace them by the collaboration's values.
"""

from __future__ import annotations

import functools
import itertools
from importlib import resources
from typing import Literal

import numpy as np
import yaml
from pydantic import Field, field_validator, model_validator

from kvv.config.base import Strict as _Strict

Direction = Literal["up", "down"]


class KaonPIDTable(_Strict):
    """Data/MC efficiency ratio of the kaonID cut for true kaons in (p_lab, cos theta_lab) bins.

    ``values[i][j]`` and ``uncertainties[i][j]`` belong to p bin i and cos theta
    bin j. The bins are correlated through ``covariance`` (row-major over the
    flattened (i, j) bins) or, if it is not given, through one uniform
    correlation coefficient ``correlation`` between all bins.

    Default (assumption, no Belle II table at hand): ratio 1 everywhere, 2 %
    uncertainty per bin, 30 % correlated between bins (a common systematic
    part, as for tag-and-probe tables from D*+ -> D0(-> K- pi+) pi+).
    The cos theta edges span the CDC acceptance 17-150 deg.
    """

    p_edges: list[float] = Field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0, 2.5, 3.5], min_length=2)
    cos_theta_edges: list[float] = Field(default_factory=lambda: [-0.866, -0.5, 0.0, 0.5, 0.82, 0.956], min_length=2)
    values: list[list[float]] | None = None  # None: 1 in every bin
    uncertainties: list[list[float]] | None = None  # None: 0.02 in every bin
    correlation: float = Field(default=0.3, ge=0.0, le=1.0)
    covariance: list[list[float]] | None = None

    @field_validator("p_edges", "cos_theta_edges")
    @classmethod
    def _increasing(cls, edges: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError("bin edges must increase strictly")
        return edges

    @model_validator(mode="after")
    def _shapes(self) -> KaonPIDTable:
        shape = (len(self.p_edges) - 1, len(self.cos_theta_edges) - 1)
        for key in ("values", "uncertainties"):
            table = getattr(self, key)
            if table is not None and np.shape(table) != shape:
                raise ValueError(f"{key} must have shape {shape} (p bins x cos theta bins)")
        if self.values is not None and np.min(self.values) <= 0:
            raise ValueError("values must be > 0 (variations are relative to them)")
        n = shape[0] * shape[1]
        if self.covariance is not None:
            cov = np.asarray(self.covariance, dtype=float)
            if cov.shape != (n, n) or not np.allclose(cov, cov.T):
                raise ValueError(f"covariance must be a symmetric {n} x {n} matrix")
            if np.linalg.eigvalsh(cov).min() < -1e-12 * max(np.abs(cov).max(), 1e-300):
                raise ValueError("covariance must be positive semi-definite")
        return self

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.p_edges) - 1, len(self.cos_theta_edges) - 1

    def value_array(self) -> np.ndarray:
        """Flattened (row-major) correction values."""
        return np.ones(self.shape).ravel() if self.values is None else np.asarray(self.values, float).ravel()

    def covariance_matrix(self) -> np.ndarray:
        """Covariance of the flattened bins."""
        if self.covariance is not None:
            return np.asarray(self.covariance, dtype=float)
        sigma = np.full(self.shape, 0.02) if self.uncertainties is None else np.asarray(self.uncertainties, float)
        sigma = sigma.ravel()
        corr = np.full((sigma.size, sigma.size), self.correlation)
        np.fill_diagonal(corr, 1.0)
        return corr * np.outer(sigma, sigma)


class KaonPIDVariation(_Strict):
    """Kaon-ID correction: one nuisance per eigen-component, ``<name>_ev<k>``.

    Applied to events whose kaon candidate is a true kaon passing ``kaon_id_cut``
    (the cut the table was measured for); misidentified candidates need a
    fake-rate table of their own and get 1.
    """

    name: str = "kaon_pid"
    kaon_id_cut: float = Field(default=0.9, ge=0.0, le=1.0)
    table: KaonPIDTable = KaonPIDTable()
    scale: float = Field(default=1.0, ge=0.0)  # 0: switched off (factors exactly 1)


class BranchingFractionVariation(_Strict):
    """Relative uncertainty of the branching fraction of listed B decay modes (one nuisance).

    ``modes`` are mode indices of ``parent`` in ``kvv/simulate/decays.yaml`` or
    decay strings of space-separated daughters as written there, e.g.
    ``"anti-D0 pi+"`` (the charge-conjugate mode has the same index). An event
    gets (1 +- uncertainty) per B of species ``parent`` decaying into a listed mode.
    """

    name: str
    parent: Literal["B+", "B0"]
    modes: list[int | str] = Field(min_length=1)
    uncertainty: float = Field(ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _known_modes(self) -> BranchingFractionVariation:
        resolve_modes(self.parent, tuple(self.modes))  # unknown decays are configuration errors
        return self


def _default_form_factor_uncertainties() -> dict[Literal["r1", "r2", "m1"], float]:
    return {"r1": 0.01944, "r2": 0.02076}  # 12 % of r1 = 0.162, r2 = 0.173


class FormFactorVariation(_Strict):
    """Signal B+ -> K+ nu nubar q^2 shape from the Ball-Zwicky f+ parameters (one nuisance each).

    ``uncertainties`` maps a parameter of :func:`kvv.physics.formfactors.fplus`
    (``r1``, ``r2``, ``m1`` in GeV) to its 1 sigma. Default (assumption): 12 %
    of r1 and of r2, independent, of the order of the ~ 10-15 % uncertainty that
    Ball and Zwicky quote for the light-cone sum-rule B -> K form factor
    (hep-ph/0406232); m1 is the B_s* pole mass and is kept fixed.
    With ``shape_only`` the weight keeps the total rate (mu multiplies B_SM, so
    the form factor should only move events in q^2).
    """

    name: str = "form_factor"
    uncertainties: dict[Literal["r1", "r2", "m1"], float] = Field(default_factory=_default_form_factor_uncertainties)
    shape_only: bool = True

    @field_validator("uncertainties")
    @classmethod
    def _non_negative(cls, values: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in values.values()):
            raise ValueError("uncertainties must be >= 0")
        return values


class NormalisationVariation(_Strict):
    """(1 +- size) on every event of the listed templates (empty: every MC sample).

    Defaults in the analysis YAML (sources): B B-bar counting 1.5 % on the
    B B-bar templates (the ``nBB`` normsys of the published Belle II likelihood,
    hepdata.166082); luminosity on continuum and tau-pair templates, 0.5 %
    (assumption of the order of Belle II's Bhabha-based luminosity uncertainty).
    """

    name: str
    size: float = Field(ge=0.0, lt=1.0)
    templates: list[str] = Field(default_factory=list)


class TrackingEfficiencyVariation(_Strict):
    """Drop ``fraction`` of the cleaned tracks (one-sided: only ``<name>_down`` is run).

    Default in the YAML: 0.3 % per track (assumption, the per-track tracking
    efficiency uncertainty Belle II quotes from e+e- -> tau+tau- 3x1-prong events).
    """

    name: str = "tracking_efficiency"
    fraction: float = Field(ge=0.0, lt=1.0)
    seed: int = 0


class PhotonEnergyScaleVariation(_Strict):
    """Photon energies times (1 +- size)."""

    name: str = "photon_energy_scale"
    size: float = Field(ge=0.0, lt=1.0)


class PhotonEnergyResolutionVariation(_Strict):
    """Extra Gaussian smearing E -> E (1 + size z), z ~ N(0, 1) by hash (one-sided: ``<name>_up``)."""

    name: str = "photon_energy_resolution"
    size: float = Field(ge=0.0, lt=1.0)
    seed: int = 0


class BeamBackgroundPhotonScaleVariation(_Strict):
    """Energies of beam-background photons (MC truth mcPDG == 0) times (1 +- size).

    Needs MC truth: on data there is no truth, and data carries no variations.
    """

    name: str = "beam_background_photon_scale"
    size: float = Field(ge=0.0, lt=1.0)


class MomentumScaleVariation(_Strict):
    """Track momenta times (1 +- size)."""

    name: str = "momentum_scale"
    size: float = Field(ge=0.0, lt=1.0)


ObjectVariation = (
    TrackingEfficiencyVariation
    | PhotonEnergyScaleVariation
    | PhotonEnergyResolutionVariation
    | BeamBackgroundPhotonScaleVariation
    | MomentumScaleVariation
)


class SystematicsConfig(_Strict):
    """The ``systematics`` section of an analysis YAML."""

    kaon_pid: list[KaonPIDVariation] = Field(default_factory=list)
    branching_fraction: list[BranchingFractionVariation] = Field(default_factory=list)
    form_factor: list[FormFactorVariation] = Field(default_factory=list)
    normalisation: list[NormalisationVariation] = Field(default_factory=list)
    tracking_efficiency: list[TrackingEfficiencyVariation] = Field(default_factory=list)
    photon_energy_scale: list[PhotonEnergyScaleVariation] = Field(default_factory=list)
    photon_energy_resolution: list[PhotonEnergyResolutionVariation] = Field(default_factory=list)
    beam_background_photon_scale: list[BeamBackgroundPhotonScaleVariation] = Field(default_factory=list)
    momentum_scale: list[MomentumScaleVariation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> SystematicsConfig:
        names = nuisance_names(self)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate systematic names {duplicates}")
        return self

    @property
    def object_variations(self) -> list[ObjectVariation]:
        return [
            *self.tracking_efficiency,
            *self.photon_energy_scale,
            *self.photon_energy_resolution,
            *self.beam_background_photon_scale,
            *self.momentum_scale,
        ]


def pid_nuisances(v: KaonPIDVariation) -> list[str]:
    return [f"{v.name}_ev{k}" for k in range(len(v.table.value_array()))]


def form_factor_nuisances(v: FormFactorVariation) -> list[str]:
    return [f"{v.name}_{p}" for p in sorted(v.uncertainties)]


def weight_nuisances(cfg: SystematicsConfig) -> list[str]:
    names = [n for v in cfg.kaon_pid for n in pid_nuisances(v)]
    names += [v.name for v in cfg.branching_fraction]
    names += [n for v in cfg.form_factor for n in form_factor_nuisances(v)]
    return names + [v.name for v in cfg.normalisation]


def nuisance_names(cfg: SystematicsConfig) -> list[str]:
    """One name per nuisance parameter (fit modifier): weight variations, then object variations."""
    return weight_nuisances(cfg) + [v.name for v in cfg.object_variations]


def variation_names(cfg: SystematicsConfig) -> list[str]:
    """Histogram variation names ``<nuisance>_up`` / ``<nuisance>_down`` (nominal excluded)."""
    return [f"{n}_{d}" for n in nuisance_names(cfg) for d in ("up", "down")]


@functools.cache
def _decay_strings(parent: str) -> tuple[str, ...]:
    """The modes of ``parent`` in the generator's decay table, as space-separated daughters, in mode order."""
    text = resources.files("kvv").joinpath("simulate", "decays.yaml").read_text()
    return tuple(" ".join(daughters) for _, daughters, *_ in yaml.safe_load(text)["decays"][parent])


@functools.cache
def resolve_modes(parent: str, modes: tuple[int | str, ...]) -> tuple[int, ...]:
    """Mode indices of ``parent`` in the decay table for indices or daughter strings."""
    decays = _decay_strings(parent)
    out = []
    for mode in modes:
        if isinstance(mode, int):
            if not 0 <= mode < len(decays):
                raise ValueError(f"{parent} has no mode {mode} (0..{len(decays) - 1})")
            out.append(mode)
        else:
            wanted = " ".join(mode.split())
            if wanted not in decays:
                raise ValueError(f"{parent} -> {wanted!r} is not in the decay table")
            out.append(decays.index(wanted))
    return tuple(out)
