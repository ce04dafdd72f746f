"""kvv installs anywhere: a wheel in a fresh virtual environment finds its shipped configs by name.

The wheel is built from this checkout and installed without its dependencies
into a venv that borrows them from this interpreter; everything then runs from
an empty directory, so nothing can come from the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKSPACE = REPO / "tests" / "data" / "ita2021_default_workspace.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with kvv installed from a wheel of this checkout."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        cwd=root,
    )
    (wheel,) = wheels.glob("kvv-*.whl")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True)
    return python


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_wheel_finds_shipped_configs_by_name(installed: Path, tmp_path: Path):
    script = (
        "import json, kvv\n"
        "from kvv.config import ANALYSIS_CONFIG_DIR, load_config\n"
        "from kvv.config.cluster import DEFAULT_SLURM_CONFIG, load_slurm_config\n"
        "print(json.dumps({'kvv': kvv.__file__, 'configs': str(ANALYSIS_CONFIG_DIR),\n"
        "  'names': [load_config(n).name for n in ('ita2021', 'ita2023.yaml', 'kstar2024')],\n"
        "  'slurm': str(DEFAULT_SLURM_CONFIG), 'max_jobs': load_slurm_config().max_jobs}))\n"
    )
    result = _run(installed, "-c", script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    venv_root = installed.parent.parent
    for key in ("kvv", "configs", "slurm"):
        assert Path(found[key]).is_relative_to(venv_root), (key, found[key])
    assert found["names"] == ["ita2021", "ita2023", "kstar2024"]
    assert found["max_jobs"] == 4  # cluster/slurm.yaml's value, not only the schema's default


def test_wheel_runs_the_fit_stage_from_an_empty_directory(installed: Path, tmp_path: Path):
    result = _run(
        installed, "-m", "kvv.run", "--config", "ita2021", "--stage", "fit", "--workspace", str(WORKSPACE),
        "--outputs", str(tmp_path / "out"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    fit = json.loads((tmp_path / "out" / WORKSPACE.stem / "fit" / "fit_results.json").read_text())
    assert fit["workspace"] == str(WORKSPACE)
    # the default workspace is Asimov data with mu = 1 injected
    assert fit["mle"]["poi_value"] == pytest.approx(1.0, abs=1e-3)
