"""Folded BDT models: storage, loading with consistency checks, and worker-side scoring."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from pydantic import BaseModel

from kvv.bdt.eta import SignalEfficiencyTransform
from kvv.bdt.folds import FOLD_RULE, fold_index
from kvv.io.artefacts import atomic_path, write_json

SIDECAR = "model.json"
FORMAT_VERSION = 1


def continuum_weight(p: np.ndarray, clip: float = 10.0) -> np.ndarray:
    """w = p / (1 - p), clipped to [0, ``clip``]; p is the BDTc probability of being data.

    With the MC weighted to the data luminosity in training, p/(1-p) estimates the
    data/MC density ratio including the overall normalisation; the clip protects
    against regions with no MC where the ratio is unconstrained.
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = p / (1.0 - p)
    return np.clip(np.where(p >= 1.0, clip, w), 0.0, clip)


@dataclass
class ContinuumReweighter:
    """BDTc after BDT1 > ``bdt1_cut``: continuum-MC weight w = p/(1-p), clipped at ``clip``."""

    model: FoldedModel
    clip: float
    bdt1_cut: float
    ratio: float  # sum(off-resonance data) / sum(luminosity-scaled continuum MC)

    def weights(self, features_2d: np.ndarray, event_number: np.ndarray) -> np.ndarray:
        """Per-event continuum weights from the out-of-fold BDTc probability."""
        return continuum_weight(self.model.predict(features_2d, event_number), self.clip)


class ModelMismatchError(ValueError):
    """Stored models do not match the features or configuration requested."""


def config_hash(obj: Any) -> str:
    """sha256 of a canonical JSON dump (sorted keys, no whitespace) of ``obj``."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FoldedModel:
    """One BDT stage trained k-fold; fold k (``__event__ % n_folds``) is scored by model k only."""

    name: str
    features: list[str]
    boosters: list[xgb.Booster]

    @property
    def n_folds(self) -> int:
        return len(self.boosters)

    def predict(self, features_2d: np.ndarray, event_number: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] (float32); one ``inplace_predict`` per fold present in the chunk."""
        x = np.asarray(features_2d, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"{self.name}: expected (n, {len(self.features)}) features, got {x.shape}")
        folds = fold_index(event_number, self.n_folds)
        out = np.empty(len(x), dtype=np.float32)
        for k, booster in enumerate(self.boosters):
            rows = folds == k
            if rows.any():
                out[rows] = booster.inplace_predict(np.ascontiguousarray(x[rows]), validate_features=False)
        return out

    def matrix(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Stack ``columns`` into the (n, n_features) float32 matrix in this stage's order."""
        missing = [f for f in self.features if f not in columns]
        if missing:
            raise KeyError(f"{self.name}: columns missing from the chunk: {missing}")
        return np.column_stack([np.asarray(columns[f], dtype=np.float32) for f in self.features])

    def set_threads(self, n_threads: int) -> None:
        """Scoring runs on CPU with ``n_threads`` (one per Dask worker thread is typical)."""
        for booster in self.boosters:
            booster.set_param({"nthread": n_threads, "device": "cpu"})


@dataclass
class BDTModels:
    """Everything a worker needs to score a chunk."""

    bdt1: FoldedModel
    bdt2: FoldedModel
    bdt1_cut: float
    eta_bdt2: SignalEfficiencyTransform
    continuum: ContinuumReweighter | None = None
    config_hash: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    def stages(self) -> dict[str, FoldedModel]:
        out = {"bdt1": self.bdt1, "bdt2": self.bdt2}
        if self.continuum is not None:
            out["bdtc"] = self.continuum.model
        return out


def stage_features(cfg: Any) -> dict[str, list[str]]:
    """Expected feature lists per stage from a :class:`~kvv.config.bdt.BDTConfig`."""
    out = {"bdt1": list(cfg.bdt1.features), "bdt2": list(cfg.bdt2.features)}
    if cfg.continuum is not None:
        out["bdtc"] = list(cfg.continuum.features)
    return out


def _model_file(stage: str, k: int) -> str:
    return f"{stage}_fold{k}.ubj"


def save_models(directory: Path, models: BDTModels) -> Path:
    """Write one UBJ file per stage and fold, then the JSON sidecar (last, atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stages: dict[str, Any] = {}
    for name, model in models.stages().items():
        files = []
        for k, booster in enumerate(model.boosters):
            with atomic_path(directory / _model_file(name, k)) as tmp:  # .ubj kept: xgboost picks the format by it
                booster.save_model(tmp)
            files.append(_model_file(name, k))
        stages[name] = {"features": model.features, "files": files}
    sidecar = {
        "format_version": FORMAT_VERSION,
        "config_hash": models.config_hash,
        "xgboost_version": xgb.__version__,
        "fold_rule": FOLD_RULE,
        "n_folds": models.bdt1.n_folds,
        "stage_names": list(stages),
        "stages": stages,
        "bdt1_cut": models.bdt1_cut,
        "eta_bdt2": models.eta_bdt2.to_dict(),
        "continuum": None
        if models.continuum is None
        else {
            "clip": models.continuum.clip,
            "bdt1_cut": models.continuum.bdt1_cut,
            "ratio": models.continuum.ratio,
        },
        "summary": models.summary,
    }
    # Writing the sidecar last means an interrupted training never looks up to date.
    return write_json(sidecar, directory / SIDECAR)


def read_sidecar(directory: Path) -> dict[str, Any]:
    """The parsed ``model.json`` of a model directory."""
    return json.loads((Path(directory) / SIDECAR).read_text())


def models_up_to_date(directory: Path, config_hash: str) -> bool:
    """True when ``directory`` holds a complete model set trained with ``config_hash``."""
    directory = Path(directory)
    try:
        sidecar = read_sidecar(directory)
    except (OSError, ValueError):
        return False
    if sidecar.get("format_version") != FORMAT_VERSION or sidecar.get("config_hash") != config_hash:
        return False
    return all((directory / f).is_file() for stage in sidecar["stages"].values() for f in stage["files"])


def _describe_mismatch(where: str, expected: Sequence[str], found: Sequence[str]) -> str:
    missing = [f for f in expected if f not in found]
    extra = [f for f in found if f not in expected]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"extra {extra}")
    if not parts:
        i = next(i for i, (a, b) in enumerate(zip(expected, found, strict=True)) if a != b)
        parts.append(f"out of order from position {i} (expected {expected[i]!r}, model has {found[i]!r})")
    return f"{where}: features do not match the config: " + "; ".join(parts)


def _expected_by_stage(
    expected_features: Sequence[str] | Mapping[str, Sequence[str]] | None, stages: Sequence[str]
) -> dict[str, list[str]]:
    if expected_features is None:
        return {}
    if isinstance(expected_features, Mapping):
        return {k: list(v) for k, v in expected_features.items()}
    # A plain list is the feature list of the two classification stages.
    return {s: list(expected_features) for s in stages if s in ("bdt1", "bdt2")}


def load_models(
    directory: Path,
    expected_features: Sequence[str] | Mapping[str, Sequence[str]] | None,
    expected_hash: str | None = None,
    *,
    n_threads: int = 1,
) -> BDTModels:
    """Load a model directory, checking features (per stage or one list for BDT1/BDT2) and hash."""
    directory = Path(directory)
    sidecar_path = directory / SIDECAR
    if not sidecar_path.is_file():
        raise FileNotFoundError(f"no {SIDECAR} in {directory}; train the BDTs first")
    sidecar = read_sidecar(directory)
    if expected_hash is not None and sidecar["config_hash"] != expected_hash:
        raise ModelMismatchError(f"{sidecar_path}: config_hash {sidecar['config_hash'][:12]} != expected {expected_hash[:12]}; retrain")
    expected = _expected_by_stage(expected_features, sidecar["stages"])
    for name in expected:
        if name not in sidecar["stages"]:
            raise ModelMismatchError(f"{sidecar_path}: no stage {name!r} (have {list(sidecar['stages'])})")
    stages = {}
    for name, info in sidecar["stages"].items():
        boosters = []
        for fname in info["files"]:
            booster = xgb.Booster(model_file=str(directory / fname))
            found = list(booster.feature_names or [])
            want = expected.get(name, info["features"])
            if found != list(want):
                raise ModelMismatchError(_describe_mismatch(str(directory / fname), want, found))
            boosters.append(booster)
        stages[name] = FoldedModel(name, list(info["features"]), boosters)
        stages[name].set_threads(n_threads)
    cont = sidecar.get("continuum")
    return BDTModels(
        bdt1=stages["bdt1"],
        bdt2=stages["bdt2"],
        bdt1_cut=float(sidecar["bdt1_cut"]),
        eta_bdt2=SignalEfficiencyTransform.from_dict(sidecar["eta_bdt2"]),
        continuum=None
        if cont is None
        else ContinuumReweighter(stages["bdtc"], float(cont["clip"]), float(cont["bdt1_cut"]), float(cont["ratio"])),
        config_hash=sidecar["config_hash"],
        summary=sidecar.get("summary", {}),
    )


_CACHE: dict[tuple, BDTModels] = {}


def load_models_cached(
    directory: Path,
    expected_features: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    expected_hash: str | None = None,
    *,
    n_threads: int = 1,
) -> BDTModels:
    """Per-process cache of :func:`load_models`, keyed by path and sidecar mtime.

    Each Dask worker process then parses the boosters once instead of once per chunk;
    retraining rewrites the sidecar, which changes the mtime and invalidates the entry.
    """
    path = Path(directory).resolve()
    feats = (
        None
        if expected_features is None
        else tuple(sorted((k, tuple(v)) for k, v in expected_features.items()))
        if isinstance(expected_features, Mapping)
        else tuple(expected_features)
    )
    key = (str(path), (path / SIDECAR).stat().st_mtime_ns, feats, expected_hash, n_threads)
    if key not in _CACHE:
        _CACHE[key] = load_models(path, expected_features, expected_hash, n_threads=n_threads)
    return _CACHE[key]


def _rows(stage: FoldedModel, columns: Mapping[str, np.ndarray], x1: np.ndarray, bdt1: FoldedModel, rows: np.ndarray) -> np.ndarray:
    """Feature matrix of ``stage`` for the selected rows, reusing BDT1's matrix when possible."""
    if stage.features == bdt1.features:
        return x1[rows]
    return stage.matrix({f: np.asarray(columns[f])[rows] for f in stage.features if f in columns})


def score_chunk(models: BDTModels, columns: Mapping[str, np.ndarray], event_number: np.ndarray) -> dict[str, np.ndarray]:
    """Score one chunk: ``bdt1`` for all rows; ``bdt2``, ``eta_bdt2`` (and ``continuum_weight``
    when a BDTc is stored) for rows with BDT1 > cut.

    BDT2 is only defined after the BDT1 cut (that is where it was trained), so rows
    failing it get NaN for ``bdt2``/``eta_bdt2`` and weight 1 for ``continuum_weight``;
    skipping them also saves most of the scoring time.
    """
    event_number = np.asarray(event_number)
    x1 = models.bdt1.matrix(columns)
    bdt1 = models.bdt1.predict(x1, event_number)
    passed = bdt1 > models.bdt1_cut
    bdt2 = np.full(len(bdt1), np.nan, dtype=np.float32)
    bdt2[passed] = models.bdt2.predict(_rows(models.bdt2, columns, x1, models.bdt1, passed), event_number[passed])
    out = {"bdt1": bdt1, "bdt2": bdt2, "eta_bdt2": np.full(len(bdt1), np.nan)}
    out["eta_bdt2"][passed] = models.eta_bdt2(bdt2[passed])
    if models.continuum is not None:
        cont = models.continuum
        # The BDTc has its own cut in the config; it normally equals the BDT1 cut.
        pc = bdt1 > cont.bdt1_cut
        xc = _rows(cont.model, columns, x1, models.bdt1, pc)
        weight = np.ones(len(bdt1))
        weight[pc] = cont.weights(xc, event_number[pc])
        out["continuum_weight"] = weight
    return out
