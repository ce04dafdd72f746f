"""Shared fixtures: a small version of the default analysis with its samples generated once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kvv.config import ANALYSIS_CONFIG_DIR, load_config
from slurm_setup import slurm  # noqa: F401  (session fixture shared by the SLURM tests)

SMALL_EVENTS = {"signal": 6000, "charged": 6000, "mixed": 6000}
SMALL_DEFAULT = 3000


def small_config_dict(sample_dir: Path, *, events_scale: float = 1.0) -> dict:
    """The default analysis with few events per sample, generated into ``sample_dir``."""
    raw = yaml.safe_load((ANALYSIS_CONFIG_DIR / "ita2021.yaml").read_text())
    raw["name"] = "ita2021_small"
    raw["simulation"]["directory"] = str(sample_dir)
    raw["simulation"]["chunk_size"] = 2000
    for sample in raw["samples"]:
        sample["events"] = int(SMALL_EVENTS.get(sample["name"], SMALL_DEFAULT) * events_scale)
    # Small trainings: few shallow trees with a large step, so scores still reach the
    # signal region (BDT2 > 0.95) and the chain is exercised in every region; the
    # default analysis's regularisation is sized for its ~100x larger samples.
    for stage in ("bdt1", "bdt2"):
        raw["bdt"][stage].update(n_estimators=40, max_depth=3, learning_rate=0.3, min_child_weight=1.0, subsample=0.8)
    raw["bdt"]["continuum"].update(n_estimators=10, max_depth=2, bdt1_cut=0.5)
    # With a few thousand events no background survives BDT1 > 0.9: cut looser.
    raw["bdt"]["bdt1_cut"] = 0.5
    # A few thousand MC events weigh ~1e4 each: mu is known to several hundred, so the
    # 90 % CL limit needs room above the default POI range.
    raw["fit"].update(steps=["mle", "significance", "limit"], poi_bounds=[0.0, 1.0e5])
    return raw


@pytest.fixture(scope="session")
def small_analysis(tmp_path_factory) -> Path:
    """Path of a small analysis YAML whose samples exist on disk."""
    from kvv import inputs
    from kvv.simulate import generate_sample

    root = tmp_path_factory.mktemp("small_analysis")
    path = root / "small.yaml"
    path.write_text(yaml.safe_dump(small_config_dict(root / "samples")))
    cfg = load_config(path)
    inputs.generate_missing(cfg, cfg.samples, lambda tasks: [generate_sample(**t) for t in tasks])
    return path
