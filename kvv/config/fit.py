"""The ``fit`` section of an analysis YAML: how templates become a workspace and what inference runs on it.

One schema for the workspace builder (:func:`kvv.fit.build_workspace`), the
inference (:func:`kvv.fit.run_inference`) and the CLI's ``--workspace`` route,
which uses the defaults below.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kvv.config.base import Strict

Step = Literal["mle", "scan", "significance", "limit", "gof", "impacts", "injection", "plots"]

#: every inference step, in the order run_inference runs them
ALL_STEPS: tuple[str, ...] = Step.__args__  # type: ignore[attr-defined]


def _default_steps() -> list[Step]:
    return ["mle", "scan", "significance", "limit", "gof", "impacts", "plots"]


class FitSettings(Strict):
    """Workspace model, pseudo-data and inference steps of an analysis."""

    # -- the HistFactory model
    signal_template: str = "signal"  # the template scaled by the POI
    poi: str = "mu"
    poi_bounds: tuple[float, float] = (0.0, 500.0)
    # relative normsys on each background template: one number for all, or {template: value} (others 0.5)
    background_normalisation_uncertainty: float | dict[str, float] = 0.5
    # normalisation modifier per template (default norm_<template>): equal names share one parameter
    norm_names: dict[str, str] = Field(default_factory=dict)
    free_norms: list[str] = Field(default_factory=list)  # templates with a free normfactor instead of a normsys
    staterror: bool = True  # Barlow-Beeston-lite MC-statistics parameters
    # bins whose relative MC-statistics error is below this get no staterror parameter
    staterror_prune_threshold: float = Field(default=0.0, ge=0)
    symmetrize: bool = False  # replace each variation's down shift by the mirror of the up shift
    # each variation as normsys (yield) plus a normalised-shape histosys of one name, as TRExFitter/cabinetry do
    split_norm_shape: bool = True
    # A bin with signal but no background MC would claim zero background; it gets
    # one event of the best-known background instead (see histograms.floor_empty_background).
    floor_empty_background: bool = True
    continuum_templates: list[str] = Field(default_factory=lambda: ["uubar", "ddbar", "ssbar", "ccbar", "taupair"])
    # -- pseudo-data, when the analysis has no real data
    pseudo_data: Literal["asimov", "toy"] = "asimov"
    injected_mu: float = 1.0
    seed: int = 1  # toy pseudo-data, toy limits and the injection study
    # -- the likelihood's interpolation codes (pyhf's modifier_settings; code4/code4p are pyhf's defaults,
    # code1/code0 those of ROOT HistFactory's older default and of pyhf's validation suite)
    normsys_interpolation: Literal["code1", "code4"] = "code4"
    histosys_interpolation: Literal["code0", "code2", "code4p"] = "code4p"
    # -- inference
    steps: list[Step] = Field(default_factory=_default_steps)
    # asymptotic CLs from q~_mu (the POI bounded at 0, arXiv:1007.1727 sec. 3.7) or q_mu (sec. 3.6)
    test_statistic: Literal["qtilde", "q"] = "qtilde"
    cl: float = Field(default=0.90, gt=0, lt=1)  # confidence level of the upper limit
    limit_method: Literal["asymptotic", "toys"] = "asymptotic"  # toys: also CLs from pseudo-experiments
    limit_toys: int = Field(default=500, ge=10)
    injection_values: list[float] = Field(default_factory=lambda: [0.0, 1.0, 5.0, 20.0])
    injection_toys: int = Field(default=50, ge=2)
    refit_top: int = Field(default=20, ge=0)  # impacts: refit the leading nuisance parameters exactly
    groups: dict[str, list[str]] = Field(default_factory=dict)  # grouped impacts: {group: [glob patterns]}
    sm_branching_fraction: float = Field(default=4.97e-6, gt=0)  # B(B+ -> K+ nu nubar) in the SM

    @property
    def modifier_settings(self) -> dict[str, dict[str, str]]:
        """The interpolation codes as pyhf's ``modifier_settings``."""
        return {"normsys": {"interpcode": self.normsys_interpolation}, "histosys": {"interpcode": self.histosys_interpolation}}

    @model_validator(mode="after")
    def _bounds(self) -> FitSettings:
        low, high = self.poi_bounds
        if not low < high:
            raise ValueError(f"poi_bounds must be [low, high] with low < high, got {list(self.poi_bounds)}")
        return self
