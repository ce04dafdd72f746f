"""kvv's configuration layer: pydantic schemas of every setting, and the YAML loader.

The leaf of the package: it imports nothing of kvv but the event format
(:mod:`kvv.eventformat`), so that ``import kvv.config`` is cheap and every other
layer receives typed, validated objects from it. One schema, one name and one
default per setting:

* :mod:`~kvv.config.analysis`: :class:`AnalysisConfig`, the analysis YAML;
* :mod:`~kvv.config.bdt`, :mod:`~kvv.config.systematics`, :mod:`~kvv.config.fit`,
  :mod:`~kvv.config.reconstruction`: its sections;
* :mod:`~kvv.config.cluster`: the SLURM worker jobs (``cluster/slurm.yaml``).

The shipped YAML files are package data (``kvv/analysis_config``, ``kvv/cluster_config``),
found by name after any install.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from kvv.config.analysis import (
    AnalysisConfig,
    Axis,
    Cleanup,
    ControlHistogram,
    GeneratorFilter,
    JpsiKValidation,
    KaonSelection,
    Luminosity,
    PhotonCleanup,
    Preselection,
    Region,
    Sample,
    SimulationSettings,
    TrackCleanup,
    WeightVariation,
)
from kvv.config.base import ConfigError, format_validation_error, read_yaml_mapping

#: the analysis configurations shipped with kvv (``analysis_config/`` of the repository)
ANALYSIS_CONFIG_DIR = Path(str(resources.files("kvv") / "analysis_config"))
DEFAULT_CONFIG = "ita2021.yaml"

__all__ = [
    "ANALYSIS_CONFIG_DIR",
    "DEFAULT_CONFIG",
    "AnalysisConfig",
    "Axis",
    "Cleanup",
    "ConfigError",
    "ControlHistogram",
    "GeneratorFilter",
    "JpsiKValidation",
    "KaonSelection",
    "Luminosity",
    "PhotonCleanup",
    "Preselection",
    "Region",
    "Sample",
    "SimulationSettings",
    "TrackCleanup",
    "WeightVariation",
    "load_config",
    "resolve_config_path",
]


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path as given, or the name of a shipped configuration (with or without ``.yaml``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    for candidate in (ANALYSIS_CONFIG_DIR / path, ANALYSIS_CONFIG_DIR / f"{path}.yaml"):
        if candidate.exists():
            return candidate
    shipped = ", ".join(sorted(p.stem for p in ANALYSIS_CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"{name_or_path}: no such analysis configuration (a path, or one of the shipped: {shipped})")


def _merged(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``: mappings merge key by key, everything else (lists too) is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_mapping(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The YAML mapping of an analysis, with ``base: <name or path>`` resolved: the base analysis, overridden key by key."""
    raw = read_yaml_mapping(path)
    if "base" not in raw:
        return raw
    base_path = resolve_config_path(raw.pop("base"))
    if base_path.resolve() in seen:
        raise ConfigError(f"{path}: base: {base_path} is its own base")
    return _merged(read_config_mapping(base_path, (*seen, path.resolve())), raw)


def load_config(name_or_path: str | Path = DEFAULT_CONFIG) -> AnalysisConfig:
    """Read and validate an analysis YAML (``base:`` resolved); raises ConfigError with file and key."""
    path = resolve_config_path(name_or_path)
    raw = read_config_mapping(path)
    try:
        return AnalysisConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
