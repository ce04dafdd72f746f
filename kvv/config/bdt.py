"""Configuration models for the two-stage BDT and the continuum reweighter."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class XGBParams(BaseModel):
    """XGBoost hyperparameters shared by all stages.

    Defaults (200 trees of depth 3, shrinkage 0.1) keep worker-side
    scoring affordable: xgboost ``inplace_predict`` costs roughly 2-3 us per row per
    core for this size on 40 features, growing linearly with the number of trees.
    """

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(200, ge=1)
    max_depth: int = Field(3, ge=1, le=16)
    learning_rate: float = Field(0.1, gt=0.0, le=1.0)
    subsample: float = Field(0.8, gt=0.0, le=1.0)
    colsample_bytree: float = Field(1.0, gt=0.0, le=1.0)
    min_child_weight: float = Field(1.0, ge=0.0)
    reg_lambda: float = Field(1.0, ge=0.0)
    max_bin: int = Field(256, ge=2)
    tree_method: Literal["hist", "approx", "exact"] = "hist"
    n_jobs: int = Field(2, ge=1)
    device: Literal["cpu", "cuda"] = "cpu"
    seed: int = 0

    def booster_params(self) -> dict[str, Any]:
        """Parameters for ``xgboost.train`` (everything except the number of rounds)."""
        return {
            "objective": "binary:logistic",
            "eval_metric": "auc",
            "tree_method": self.tree_method,
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "max_bin": self.max_bin,
            "nthread": self.n_jobs,
            "device": self.device,
            "seed": self.seed,
        }


class BDTStageConfig(XGBParams):
    """One BDT stage: its input features and hyperparameters."""

    features: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_features(self) -> BDTStageConfig:
        if len(set(self.features)) != len(self.features):
            raise ValueError("features must be unique")
        return self


class ContinuumReweightConfig(XGBParams):
    """BDTc: off-resonance data (label 1) against continuum MC (label 0)."""

    features: list[str] = Field(min_length=1)
    clip: float = Field(10.0, gt=0.0)
    bdt1_cut: float = Field(0.9, ge=0.0, lt=1.0)
    # Off-resonance over on-resonance luminosity: scales MC yields (on-resonance
    # luminosity) to the off-resonance data set the BDTc is trained against.
    mc_lumi_scale: float = Field(1.0, gt=0.0)
    # MC samples reweighted (and used as label 0); off-resonance data contain all of them.
    samples: list[str] = Field(default_factory=lambda: ["uubar", "ddbar", "ssbar", "ccbar", "taupair"])


class BDTConfig(BaseModel):
    """The full ITA BDT chain: BDT1, BDT2 after ``bdt1_cut`` and optional BDTc."""

    model_config = ConfigDict(extra="forbid")

    bdt1: BDTStageConfig
    bdt2: BDTStageConfig
    bdt1_cut: float = Field(0.9, ge=0.0, lt=1.0)
    n_folds: int = Field(2, ge=2)
    continuum: ContinuumReweightConfig | None = None
    # BDT2 cut of the signal region (with BDT1 > bdt1_cut), used for diagnostics.
    sr_bdt2_cut: float = Field(0.95, ge=0.0, lt=1.0)
    # Number of knots of the eta(BDT2) quantile table stored in the sidecar.
    eta_knots: int = Field(1001, ge=3)
    # Disjoint event categories with a BDT1/BDT2 pair each, as {name: {column: [lo, hi)}}
    # (e.g. neutral and charged K*); empty: one pair for all events.
    categories: dict[str, dict[str, tuple[float | None, float | None]]] = Field(default_factory=dict)
