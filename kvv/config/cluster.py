"""``cluster/slurm.yaml``: the SLURM worker jobs of ``--executor slurm``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from kvv.config.base import ConfigError, Strict, read_yaml_mapping

#: the shipped worker-job settings (``cluster/slurm.yaml`` of the repository)
DEFAULT_SLURM_CONFIG = Path(str(resources.files("kvv") / "cluster_config" / "slurm.yaml"))


class SlurmConfig(Strict):
    """One worker job's resources and the scaling limits."""

    partition: str | None = None
    account: str | None = None
    cores: int = Field(1, ge=1, description="cores per worker job")
    processes: int = Field(1, ge=1, description="Dask worker processes per job")
    memory: str = Field("2GB", description="memory per worker job, e.g. 4GB")
    walltime: str = "01:00:00"
    job_name: str = "kvv-worker"
    job_extra_directives: list[str] = Field(default_factory=list, description="further '#SBATCH' options")
    job_script_prologue: list[str] = Field(default_factory=list, description="shell lines before the worker starts")
    log_directory: str = "logs/slurm"
    shared_temp_directory: str = Field("~/.cache/kvv", description="where worker jobs read the run's TLS files")
    interface: str | None = None
    local_directory: str | None = None
    min_jobs: int = Field(1, ge=1)
    max_jobs: int = Field(4, ge=1)
    worker_timeout: float = Field(300.0, gt=0, description="seconds to wait for the first worker")

    @model_validator(mode="after")
    def _scaling_limits(self) -> SlurmConfig:
        if self.min_jobs > self.max_jobs:
            raise ValueError(f"min_jobs ({self.min_jobs}) is larger than max_jobs ({self.max_jobs})")
        return self


def load_slurm_config(path: str | Path = DEFAULT_SLURM_CONFIG, **overrides: Any) -> SlurmConfig:
    """Read and validate the SLURM YAML; ``overrides`` that are not None win."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return SlurmConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{where}' (known: {', '.join(SlurmConfig.model_fields)})"
    return f"{where}: {err['msg']}"
