"""Executors and clusters: CLI options, TLS, SLURM on a real single-node SLURM.

The SLURM tests start slurmctld/slurmd on this machine (``slurm_setup``); they
skip with the reason where that cannot be done (not root, no apt).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import slurm_setup
from distributed import Client, LocalCluster
from distributed.security import Security
from slurm_setup import slurm_cli_args, wait_queue_empty

from kvv import cluster
from kvv.config import ConfigError
from kvv.config.cluster import load_slurm_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cluster.add_arguments(parser)
    return parser.parse_args(list(argv))


def square_sum(n: int) -> int:
    return sum(i * i for i in range(n))


def slow_square(i: int) -> int:
    time.sleep(0.3)
    return i * i


_ATTEMPT = """
import sys
from distributed import Client, Security
security = Security.temporary() if sys.argv[2] == "other-ca" else None
try:
    with Client(sys.argv[1], security=security, timeout=3):
        sys.exit(0)
except (OSError, TimeoutError, TypeError):
    sys.exit(3)
"""


def refused(address: str, credentials: str | None) -> bool:
    """True if a client without credentials (``None``) or with those of another CA (``"other-ca"``) cannot connect.

    TypeError: distributed will not even try tls:// without an SSL context. Each
    attempt runs in its own process with a time limit: on a loaded machine the
    client's IO-loop thread can fail to start, and distributed can then deadlock
    in the client's own clean-up; that says nothing about the scheduler, so the
    attempt is repeated.
    """
    for _ in range(3):
        try:
            attempt = subprocess.run(
                [sys.executable, "-c", _ATTEMPT, address, credentials or "none"], check=False, capture_output=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            continue
        if attempt.returncode in (0, 3):
            return attempt.returncode == 3
    raise RuntimeError("the Dask client neither connected nor was refused in three attempts")


# --------------------------------------------------------------------------- options and configuration


def test_add_arguments_defaults_are_secure():
    args = parse()
    assert args.executor == "futures"
    assert args.insecure is False
    assert args.dashboard_address.startswith("127.0.0.1:")
    # the shipped cluster/slurm.yaml, found as package data wherever kvv runs
    assert args.slurm_config.read_bytes() == (REPO / "cluster" / "slurm.yaml").read_bytes()
    assert args.slurm_config.is_absolute()


def test_repository_slurm_yaml_is_valid():
    cfg = load_slurm_config(REPO / "cluster" / "slurm.yaml")
    assert cfg.min_jobs <= cfg.max_jobs


def test_cli_overrides_slurm_yaml(tmp_path):
    (tmp_path / "s.yaml").write_text("partition: long\ncores: 4\nmemory: 8GB\n")
    args = parse("--executor", "slurm", "--slurm-config", str(tmp_path / "s.yaml"), "--slurm-cores", "2", "--max-jobs", "7")
    cfg = cluster.slurm_config_from_args(args)
    assert (cfg.partition, cfg.cores, cfg.memory, cfg.max_jobs) == ("long", 2, "8GB", 7)


def test_unknown_slurm_key_is_one_line_error(tmp_path):
    (tmp_path / "s.yaml").write_text("cores: 2\nqueue_name: short\n")
    with pytest.raises(ConfigError, match=r"s\.yaml: unknown key 'queue_name'") as err:
        load_slurm_config(tmp_path / "s.yaml")
    assert "\n" not in str(err.value)


def test_bad_slurm_value_names_key(tmp_path):
    (tmp_path / "s.yaml").write_text("job_extra_directives: [--qos=x, 3]\n")
    with pytest.raises(ConfigError, match=r"job_extra_directives\.1: "):
        load_slurm_config(tmp_path / "s.yaml")


def test_tcp_scheduler_needs_insecure():
    with pytest.raises(cluster.ClusterError, match="--insecure"):
        cluster.client_security("tcp://127.0.0.1:8786", None, None, None)


def test_tls_scheduler_needs_credential_files():
    with pytest.raises(cluster.ClusterError, match="--tls-cert, --tls-key"):
        cluster.client_security("tls://127.0.0.1:8786", "ca.pem", None, None)


def test_scheduler_needs_dask_executor():
    with pytest.raises(cluster.ClusterError, match="--executor dask"):
        with cluster.execution_from_args(parse("--executor", "futures", "--scheduler", "tls://h:1")):
            pass


# --------------------------------------------------------------------------- TLS without SLURM


def test_local_dask_cluster_refuses_client_without_credentials(capsys):
    with cluster.execution("dask", workers=1, status=False) as ex:
        address = ex.info["scheduler"]
        assert address.startswith("tls://")
        assert refused(address, None)
        assert refused(address.replace("tls://", "tcp://"), None)
        assert refused(address, "other-ca")  # credentials of another CA
        assert ex.map(square_sum, [10]) == [square_sum(10)]
    assert "Dask dashboard: http://127.0.0.1:" in capsys.readouterr().out


def deep_stack_then_wait(depth: int) -> int:
    """Sleeps under ``depth`` Python frames, for the workers' profiler to sample."""
    if depth > 0:
        return deep_stack_then_wait(depth - 1)
    time.sleep(1.0)
    return 0


async def profile_sizeof(dask_worker) -> int:
    """dask's ``sizeof`` of the worker's profile, as distributed measures it before sending it."""
    from dask.sizeof import sizeof

    return sizeof(await dask_worker.get_profile())


def test_workers_can_measure_the_profile_of_deep_stacks():
    """Stacks beyond distributed's cut of 100 frames give the deepest profile tree (dask/distributed#8578)."""
    with cluster.execution("dask", workers=1, status=False) as ex:
        assert ex.map(deep_stack_then_wait, [150]) == [0]
        assert all(size > 0 for size in ex.client.run(profile_sizeof).values())


def test_attach_to_tls_scheduler_with_certificate_files(tmp_path):
    security = cluster.write_credentials(tmp_path)
    with LocalCluster(n_workers=1, processes=False, security=security, protocol="tls://", dashboard_address=":0") as lc:
        files = ["--tls-ca", str(tmp_path / "ca.pem"), "--tls-cert", str(tmp_path / "cert.pem")]
        files += ["--tls-key", str(tmp_path / "key.pem")]
        args = parse("--executor", "dask", "--scheduler", lc.scheduler_address, *files)
        with cluster.execution_from_args(args) as ex:
            assert ex.map(square_sum, [5, 50]) == [square_sum(5), square_sum(50)]
        assert oct((tmp_path / "key.pem").stat().st_mode & 0o777) == "0o600"
        with pytest.raises(cluster.ClusterError, match="cannot connect to scheduler"):
            with cluster.attached_client(lc.scheduler_address, Security.temporary(), timeout=3):
                pass


# --------------------------------------------------------------------------- real SLURM


def test_slurm_setup_says_why_it_cannot_run(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(slurm_setup.SlurmUnavailable, match="needs root"):
        slurm_setup.start()


def slurm_job_ids(client: Client) -> dict[str, str]:
    """Worker address -> SLURM job id it runs in."""
    return client.run(lambda: os.environ.get("SLURM_JOB_ID"))


@pytest.mark.slurm
def test_slurm_gives_local_result_and_cleans_up(slurm, tmp_path, capsys):
    args = parse(*slurm_cli_args(slurm, tmp_path))
    with cluster.execution_from_args(args) as ex:
        assert ex.name == "slurm"
        assert all(slurm_job_ids(ex.client).values()), "workers must run inside SLURM jobs"
        result = ex.map(square_sum, list(range(0, 2000, 100)))
        assert ex.info["scheduler"].startswith("tls://")
        assert refused(ex.info["scheduler"], None)
        assert refused(ex.info["scheduler"], "other-ca")
    assert result == [square_sum(n) for n in range(0, 2000, 100)]
    assert "Dask dashboard: http://127.0.0.1:" in capsys.readouterr().out
    assert wait_queue_empty() == []
    assert list((tmp_path / "tls").iterdir()) == []  # the run's credentials are gone
    assert list((tmp_path / "slurm-logs").glob("kvv-worker-*.err"))


@pytest.mark.slurm
def test_slurm_worker_cancelled_mid_run_gives_same_result(slurm, tmp_path):
    args = parse(*slurm_cli_args(slurm, tmp_path), "--min-jobs", "2", "--retries", "3")
    items = list(range(60))
    with cluster.execution_from_args(args) as ex:
        client = ex.client
        client.wait_for_workers(2, timeout=60)
        futures = client.map(slow_square, items, pure=False, retries=3)
        while sum(f.done() for f in futures) < 10:
            time.sleep(0.1)
        victim = sorted(slurm_job_ids(client).values())[0]
        subprocess.run(["scancel", victim], check=True)
        result = client.gather(futures)
        info = ex.info
    assert result == [i * i for i in items]
    assert info["recomputed"], "the lost worker's tasks must show up as recomputed"
    assert any(entry["running"] or entry["results_lost"] for entry in info["recomputed"])
    assert info["workers_lost"]
    assert wait_queue_empty() == []


@pytest.mark.slurm
def test_slurm_no_worker_within_timeout_is_one_line_error(slurm, tmp_path):
    # accepted by SLURM but held back for an hour: no worker can ever join
    argv = slurm_cli_args(slurm, tmp_path, worker_timeout=4, job_extra_directives=["--begin=now+3600"])
    start = time.monotonic()
    with pytest.raises(cluster.ClusterError, match=r"no Dask worker joined within 4 s; worker jobs: \d+ PENDING") as err:
        with cluster.execution_from_args(parse(*argv)):
            pass
    assert time.monotonic() - start < 30
    assert "\n" not in str(err.value)
    assert wait_queue_empty() == []


@pytest.mark.slurm
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--slurm-partition", "nosuchpartition", "invalid partition"),
        ("--slurm-memory", "100000GB", "Requested node configuration is not available"),
    ],
)
def test_slurm_refused_worker_job_is_one_line_error(slurm, tmp_path, option, value, message):
    argv = [*slurm_cli_args(slurm, tmp_path), option, value]
    with pytest.raises(cluster.ClusterError, match=f"SLURM refuses the worker job: .*{message}") as err:
        with cluster.execution_from_args(parse(*argv)):
            pass
    assert "\n" not in str(err.value)
    assert wait_queue_empty() == []


@pytest.mark.slurm
def test_sigterm_still_cancels_worker_jobs(slurm, tmp_path):
    args = parse(*slurm_cli_args(slurm, tmp_path))
    with pytest.raises(SystemExit):
        with cluster.execution_from_args(args):
            threading.Timer(0.1, os.kill, (os.getpid(), 15)).start()
            time.sleep(5)
    assert wait_queue_empty() == []
