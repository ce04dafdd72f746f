"""Shared fixtures: a small version of the default analysis with its samples generated once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from slurm_setup import slurm  # noqa: F401  (session fixture shared by the SLURM tests)

from kvv import histograms
from kvv.config import ANALYSIS_CONFIG_DIR, load_config
from kvv.run import main

SMALL_EVENTS = {"signal": 6000, "charged": 6000, "mixed": 6000, "kstar0nunu": 6000, "kstarpnunu": 6000, "jpsik": 2000, "data_jpsik": 2000}
SMALL_DEFAULT = 3000


def _small_samples(raw: dict, events_scale: float) -> None:
    samples = raw["samples"] + ([raw["validation"]["mc"], raw["validation"]["data"]] if "validation" in raw else [])
    for sample in samples:
        sample["events"] = int(SMALL_EVENTS.get(sample["name"], SMALL_DEFAULT) * events_scale)


def _small_bdts(raw: dict) -> None:
    # Small trainings: few shallow trees with a large step, so scores still reach the
    # signal region and the chain is exercised in every region; the default analysis's
    # regularisation is sized for its ~100x larger samples.
    for stage in ("bdt1", "bdt2"):
        raw["bdt"][stage].update(n_estimators=40, max_depth=3, learning_rate=0.3, min_child_weight=1.0, subsample=0.8)


def small_config_dict(sample_dir: Path, *, events_scale: float = 1.0) -> dict:
    """The default analysis with few events per sample, generated into ``sample_dir``."""
    raw = yaml.safe_load((ANALYSIS_CONFIG_DIR / "ita2021.yaml").read_text())
    raw["name"] = "ita2021_small"
    raw["simulation"]["directory"] = str(sample_dir)
    raw["simulation"]["chunk_size"] = 2000
    _small_samples(raw, events_scale)
    _small_bdts(raw)
    raw["bdt"]["continuum"].update(n_estimators=10, max_depth=2, bdt1_cut=0.5)
    raw["validation"]["cuts"] = {"bdt1": [0.5, None], "bdt2": [0.5, None]}
    # With a few thousand events no background survives BDT1 > 0.9: cut looser.
    raw["bdt"]["bdt1_cut"] = 0.5
    # A few thousand MC events weigh ~1e4 each: mu is known to several hundred, so the
    # 90 % CL limit needs room above the default POI range.
    raw["fit"].update(steps=["mle", "significance", "limit"], poi_bounds=[0.0, 1.0e5])
    return raw


def small_kstar_config_dict(sample_dir: Path) -> dict:
    """The K* analysis with few events per sample, looser BDT cuts and a toy with a large injected signal."""
    raw = yaml.safe_load((ANALYSIS_CONFIG_DIR / "kstar2024.yaml").read_text())
    raw["name"] = "kstar2024_small"
    raw["simulation"]["directory"] = str(sample_dir)
    raw["simulation"]["chunk_size"] = 2000
    _small_samples(raw, 1.0)
    _small_bdts(raw)
    raw["bdt"]["bdt1_cut"] = 0.5
    for region in raw["regions"]:
        region["cuts"].update(bdt1=[0.5, None], bdt2=[0.5, None])
    # A background MC event weighs ~1e5 at 362 fb^-1: only a signal far above the SM stands
    # out of the MC statistics, so the toy carries mu = 2e4. The luminosity is cut 1000-fold
    # (relative MC-statistics errors stay as they are) so that bins hold thousands of events,
    # not millions, where -2 ln L loses the digits its gradient needs.
    raw["luminosity"] = {"on_resonance": 0.362, "off_resonance": 0.042}
    raw["fit"].update(steps=["mle"], pseudo_data="toy", injected_mu=2.0e4, poi_bounds=[-1.0e5, 2.0e5])
    return raw


def _write_and_generate(root: Path, make_config) -> Path:
    """Write ``make_config(root / "samples")`` as ``root/analysis.yaml`` and generate its samples."""
    from kvv.simulate import generate_missing, generate_sample

    path = root / "analysis.yaml"
    path.write_text(yaml.safe_dump(make_config(root / "samples")))
    cfg = load_config(path)
    generate_missing(cfg, cfg.all_samples, lambda tasks: [generate_sample(**t) for t in tasks])
    return path


@pytest.fixture(scope="session")
def small_kstar_analysis(tmp_path_factory) -> Path:
    """Path of a small K* analysis YAML whose samples exist on disk."""
    return _write_and_generate(tmp_path_factory.mktemp("small_kstar"), small_kstar_config_dict)


@pytest.fixture(scope="session")
def small_analysis(tmp_path_factory) -> Path:
    """Path of a small analysis YAML whose samples exist on disk."""
    return _write_and_generate(tmp_path_factory.mktemp("small_analysis"), small_config_dict)


@pytest.fixture(scope="session")
def trained(small_analysis, tmp_path_factory) -> tuple[Path, Path]:
    """(config, outputs) of the small analysis with its BDTs trained once."""
    outputs = tmp_path_factory.mktemp("outputs")
    assert (
        main(["--config", str(small_analysis), "--stage", "train", "--executor", "iterative", "--outputs", str(outputs), "--no-progress"])
        == 0
    )
    return small_analysis, outputs


def process_stage(config: Path, outputs: Path, *extra: str) -> dict:
    args = ["--config", str(config), "--stage", "process", "--outputs", str(outputs), "--no-progress", *extra]
    assert main(args) == 0
    cfg = load_config(config)
    return histograms.load_pickle(outputs / cfg.name / "histograms.pkl")


def assert_identical_histograms(a: dict, b: dict) -> None:
    """The same bits in every bin: kvv's sums are exact whatever the chunking, the executor and the merge order."""
    for group in ("templates", "controls"):
        assert a[group].keys() == b[group].keys()
        for name in a[group]:
            va, vb = a[group][name].view(flow=True), b[group][name].view(flow=True)
            np.testing.assert_array_equal(va["value"], vb["value"], err_msg=f"{group}/{name}")
            np.testing.assert_array_equal(va["variance"], vb["variance"], err_msg=f"{group}/{name}")


@pytest.fixture(scope="session")
def reference(trained) -> dict:
    config, outputs = trained
    return process_stage(config, outputs, "--executor", "iterative", "--chunksize", "4000")


@pytest.fixture(scope="session")
def published(trained, reference, tmp_path_factory) -> tuple[Path, Path]:
    """(config, publication folder) of the small analysis: the reference's outputs fitted and published."""
    config, outputs = trained
    out = tmp_path_factory.mktemp("published")
    shutil.copytree(outputs, out, dirs_exist_ok=True)
    for stage in ("fit", "publish"):
        assert main(["--config", str(config), "--stage", stage, "--outputs", str(out), "--no-progress"]) == 0
    return config, out / load_config(config).name / "publication"
