"""Executors: where the processors run.

``iterative`` (one process, for debugging and tests), ``futures`` (a local
process pool), ``dask`` (a local Dask cluster, or any running one through
``--scheduler``), ``slurm`` (a Dask scheduler here, workers as SLURM jobs
through dask-jobqueue, scaled between ``--min-jobs`` and ``--max-jobs``).

Secure by default: clusters kvv starts use TLS with credentials generated for
the run, their dashboard listens on localhost only, and attaching to an
unencrypted ``tcp://`` scheduler needs ``--insecure``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coffea import processor
from distributed.diagnostics.plugin import WorkerPlugin

from kvv.config import ConfigError
from kvv.config.cluster import DEFAULT_SLURM_CONFIG, SlurmConfig, load_slurm_config

log = logging.getLogger(__name__)

EXECUTORS = ("iterative", "futures", "dask", "slurm")
DEFAULT_DASHBOARD = "127.0.0.1:0"
DEFAULT_RETRIES = 3


class ClusterError(ConfigError):
    """A cluster that cannot be set up or reached; the message is one line.

    A ``ConfigError`` so that the CLI reports it like a bad configuration.
    """


@dataclass
class Execution:
    """A coffea executor plus a plain ``map`` for other work (sample generation).

    ``info`` is read live: for Dask it includes the tasks that lost their
    worker and were computed again (``recomputed``).
    """

    name: str
    executor: processor.executor.ExecutorBase
    #: ``map(fn, items, on_done=None)``: the results in the order of ``items``; ``on_done(i)`` as item ``i`` finishes
    map: Callable[..., list]
    workers: int
    dashboard: str | None = None
    client: Any = None
    static_info: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @property
    def info(self) -> dict:
        """Run facts for the summary: scheduler, SLURM settings, recomputed tasks."""
        if self.client is None:
            return dict(self.static_info)
        return {**self.static_info, **recomputed_tasks(self.client, since=self.started)}


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the executor and cluster options to the CLI parser."""
    g = parser.add_argument_group("execution")
    g.add_argument("--executor", choices=EXECUTORS, default="futures", help="where the processors run")
    g.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    g.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="Dask: times a failed or lost task is rerun")
    g.add_argument("--scheduler", default=None, help="--executor dask: attach to a running scheduler (tls:// or tcp://)")
    g.add_argument("--tls-ca", default=None, help="CA certificate of a tls:// scheduler")
    g.add_argument("--tls-cert", default=None, help="client certificate for a tls:// scheduler")
    g.add_argument("--tls-key", default=None, help="client key for a tls:// scheduler")
    g.add_argument("--insecure", action="store_true", help="no TLS: start clusters unencrypted, allow tcp:// schedulers")
    g.add_argument("--dashboard-address", default=DEFAULT_DASHBOARD, help="where the dashboard of a started cluster listens")
    s = parser.add_argument_group("SLURM (--executor slurm; overrides --slurm-config)")
    s.add_argument("--slurm-config", type=Path, default=DEFAULT_SLURM_CONFIG, help="YAML with the worker job settings")
    s.add_argument("--slurm-partition", default=None, help="partition of the worker jobs")
    s.add_argument("--slurm-account", default=None, help="account charged for the worker jobs")
    s.add_argument("--slurm-cores", type=int, default=None, help="cores per worker job")
    s.add_argument("--slurm-processes", type=int, default=None, help="Dask worker processes per job")
    s.add_argument("--slurm-memory", default=None, help="memory per worker job, e.g. 4GB")
    s.add_argument("--slurm-walltime", default=None, help="walltime per worker job, e.g. 02:00:00")
    s.add_argument("--min-jobs", type=int, default=None, help="adaptive scaling: fewest worker jobs")
    s.add_argument("--max-jobs", type=int, default=None, help="adaptive scaling: most worker jobs")
    s.add_argument("--worker-timeout", type=float, default=None, help="seconds to get a first worker before giving up")


def slurm_config_from_args(args: argparse.Namespace) -> SlurmConfig:
    """The SLURM YAML named by ``--slurm-config`` with the CLI overrides applied."""
    return load_slurm_config(
        args.slurm_config,
        partition=args.slurm_partition,
        account=args.slurm_account,
        cores=args.slurm_cores,
        processes=args.slurm_processes,
        memory=args.slurm_memory,
        walltime=args.slurm_walltime,
        min_jobs=args.min_jobs,
        max_jobs=args.max_jobs,
        worker_timeout=args.worker_timeout,
    )


def execution_from_args(args: argparse.Namespace) -> contextlib.AbstractContextManager[Execution]:
    """The executor the CLI options ask for, as a context manager."""
    return execution(
        args.executor,
        workers=args.workers,
        scheduler=args.scheduler,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        insecure=args.insecure,
        status=not getattr(args, "no_progress", False),
        dashboard_address=args.dashboard_address,
        retries=args.retries,
        slurm=slurm_config_from_args(args) if args.executor == "slurm" else None,
    )


# --------------------------------------------------------------------------- executors


def default_workers() -> int:
    """One worker per core the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def execution(
    name: str,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    insecure: bool = False,
    status: bool = True,
    dashboard_address: str = DEFAULT_DASHBOARD,
    retries: int = DEFAULT_RETRIES,
    slurm: SlurmConfig | None = None,
) -> Iterator[Execution]:
    """Set up an executor by name; tears everything it started down on exit, also on errors."""
    if name not in EXECUTORS:
        raise ClusterError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if scheduler and name != "dask":
        raise ClusterError(f"--scheduler attaches a Dask client: use it with --executor dask, not {name}")
    workers = workers or default_workers()
    if name == "iterative":
        yield Execution(name, processor.IterativeExecutor(status=status), _iterative_map, 1)
    elif name == "futures":
        with ProcessPoolExecutor(max_workers=workers) as pool:
            executor = processor.FuturesExecutor(workers=workers, status=status)
            yield Execution(name, executor, functools.partial(_pool_map, pool), workers)
    elif scheduler:
        security = client_security(scheduler, tls_ca, tls_cert, tls_key, insecure=insecure)
        with attached_client(scheduler, security) as client:
            yield dask_execution(name, client, status=status, retries=retries)
    elif name == "dask":
        with local_dask_client(workers, secure=not insecure, dashboard_address=dashboard_address) as client:
            yield dask_execution(name, client, status=status, retries=retries, dashboard_address=dashboard_address)
    else:
        cfg = slurm or load_slurm_config()
        with _sigterm_as_exit(), slurm_client(cfg, secure=not insecure, dashboard_address=dashboard_address) as client:
            info = {"slurm": cfg.model_dump(mode="json"), "log_directory": str(_log_directory(cfg))}
            port = client.scheduler_info().get("services", {}).get("dashboard")
            if port is not None:  # the dashboard listens on localhost of this host only
                print(f"From your own machine: ssh -N -L {port}:localhost:{port} {socket.getfqdn()}", flush=True)
            yield dask_execution(
                name,
                client,
                status=status,
                retries=retries,
                dashboard_address=dashboard_address,
                workers=cfg.max_jobs * cfg.processes,
                info=info,
            )


class ProfileRecursionLimit(WorkerPlugin):
    """Raises a worker's recursion limit so that Dask can measure its own profile.

    distributed samples a task's call stack up to 100 frames deep, and before
    sending the profile it measures it with dask's ``sizeof``, which recurses
    about 12 Python frames per stack frame: some 1 200 at that depth, more
    than Python's default limit of 1 000 (dask/distributed#8578). The deepest
    stacks in kvv's tasks are the imports of numba's first compilation in a
    worker (vector's numba backend, some 80 frames); without this the
    performance report warns that the size calculation failed.
    """

    name = "kvv-profile-recursion-limit"
    limit = 2000

    def setup(self, worker: Any) -> None:
        sys.setrecursionlimit(max(sys.getrecursionlimit(), self.limit))


def dask_execution(
    name: str,
    client: Any,
    *,
    status: bool,
    retries: int,
    dashboard_address: str | None = None,
    workers: int | None = None,
    info: dict | None = None,
) -> Execution:
    """Wrap a connected Dask client; the dashboard link is always printed."""
    client.register_plugin(ProfileRecursionLimit())
    n_workers = workers or len(client.scheduler_info().get("workers", {}))
    dashboard = dashboard_link(client, dashboard_address)
    print(f"Dask dashboard: {dashboard}", flush=True)
    return Execution(
        name,
        processor.DaskExecutor(client=client, status=status, retries=retries),
        _dask_map(client, retries),
        n_workers,
        dashboard=dashboard,
        client=client,
        static_info={"scheduler": client.scheduler.address, "retries": retries, **(info or {})},
    )


def dashboard_link(client: Any, dashboard_address: str | None = None) -> str:
    """The dashboard URL; for a cluster we started, on the host it listens on.

    Dask builds its link from the scheduler's host, which is wrong when the
    dashboard listens on localhost only.
    """
    host = (dashboard_address or "").rpartition(":")[0]
    port = client.scheduler_info().get("services", {}).get("dashboard")
    if not host or host in ("0.0.0.0", "::", "[::]") or port is None:
        return client.dashboard_link
    return f"http://{host}:{port}/status"


def _ignore(_: int) -> None:
    pass


def _iterative_map(fn: Callable, items: list, on_done: Callable[[int], None] = _ignore) -> list:
    results = []
    for i, item in enumerate(items):
        results.append(fn(item))
        on_done(i)
    return results


def _pool_map(pool: ProcessPoolExecutor, fn: Callable, items: list, on_done: Callable[[int], None] = _ignore) -> list:
    futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
    for future in concurrent.futures.as_completed(futures):
        future.result()  # raise the first failure as soon as it is known
        on_done(futures[future])
    return [f.result() for f in futures]


def _dask_map(client: Any, retries: int) -> Callable[..., list]:
    def run(fn: Callable, items: list, on_done: Callable[[int], None] = _ignore) -> list:
        from distributed import as_completed

        futures = client.map(fn, items, pure=False, retries=retries)
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            on_done(index[future.key])
        return client.gather(futures)

    return run


@contextlib.contextmanager
def local_dask_client(workers: int, *, secure: bool = True, dashboard_address: str = DEFAULT_DASHBOARD) -> Iterator[Any]:
    """A LocalCluster of single-threaded worker processes and its client."""
    from distributed import Client, LocalCluster
    from distributed.security import Security

    kwargs = dict(security=Security.temporary(), protocol="tls://") if secure else {}
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=dashboard_address, **kwargs) as cluster,
        Client(cluster, security=kwargs.get("security")) as client,
    ):
        yield client


# --------------------------------------------------------------------------- attaching to a running scheduler


def client_security(scheduler: str, tls_ca: str | None, tls_cert: str | None, tls_key: str | None, *, insecure: bool = False) -> Any:
    """TLS settings for a client of ``scheduler``; refuses plain tcp:// unless ``insecure``."""
    from distributed.security import Security

    files = {"--tls-ca": tls_ca, "--tls-cert": tls_cert, "--tls-key": tls_key}
    if scheduler.startswith("tls://"):
        missing = [opt for opt, value in files.items() if not value]
        if missing:
            raise ClusterError(f"a tls:// scheduler needs {', '.join(missing)} (CA, client certificate and key files)")
        unreadable = [str(v) for v in files.values() if not os.access(str(v), os.R_OK)]
        if unreadable:
            raise ClusterError(f"cannot read TLS file(s): {', '.join(unreadable)}")
        return Security(tls_ca_file=tls_ca, tls_client_cert=tls_cert, tls_client_key=tls_key, require_encryption=True)
    if not insecure:
        raise ClusterError(f"scheduler {scheduler} is not tls://; pass --insecure to use an unencrypted connection")
    return None


@contextlib.contextmanager
def attached_client(scheduler: str, security: Any, timeout: float = 30) -> Iterator[Any]:
    """A client of a running scheduler; connection failures become one-line errors."""
    from distributed import Client

    try:
        client = Client(scheduler, security=security, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot connect to scheduler {scheduler}: {' '.join(str(exc).split())[:300]}") from None
    with client:
        yield client


# --------------------------------------------------------------------------- SLURM


def _log_directory(cfg: SlurmConfig) -> Path:
    return Path(cfg.log_directory).expanduser().resolve()


@contextlib.contextmanager
def slurm_client(cfg: SlurmConfig, *, secure: bool = True, dashboard_address: str = DEFAULT_DASHBOARD) -> Iterator[Any]:
    """A SLURMCluster scaled adaptively and its client, with at least one worker.

    All worker jobs are cancelled when the block ends, also on errors.
    """
    from distributed import Client

    if shutil.which("sbatch") is None:
        raise ClusterError("--executor slurm needs the SLURM commands (sbatch, squeue, scancel) on PATH")
    with _run_security(cfg, secure) as security, _slurm_cluster(cfg, security, dashboard_address) as cluster:
        preflight(cluster.job_script())
        cluster.adapt(minimum_jobs=cfg.min_jobs, maximum_jobs=cfg.max_jobs)
        with Client(cluster, security=security) as client:
            _wait_for_first_worker(client, cluster, cfg)
            yield client


def write_credentials(folder: Path) -> Any:
    """New self-signed TLS credentials as ca.pem/cert.pem/key.pem (mode 0600) in ``folder``.

    Returns a ``Security`` for scheduler, workers and client that reads them.
    Whoever can read the files can join or use the cluster.
    """
    from distributed.security import Security

    temporary = Security.temporary()
    pems = {"ca.pem": temporary.tls_ca_file, "cert.pem": temporary.tls_client_cert, "key.pem": temporary.tls_client_key}
    for name, pem in pems.items():
        with os.fdopen(os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(pem)
    ca, cert, key = (str(folder / name) for name in pems)
    return Security(
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
        require_encryption=True,
    )


@contextlib.contextmanager
def _run_security(cfg: SlurmConfig, secure: bool) -> Iterator[Any]:
    """TLS credentials for this run in a private folder, removed afterwards.

    Worker jobs may run on other nodes, so in-memory ``Security.temporary()``
    credentials must reach them as files; we write them ourselves (mode 0600
    in a 0700 folder) under ``shared_temp_directory``, which the worker nodes
    must see (home usually is).
    """
    if not secure:
        yield None
        return
    base = Path(cfg.shared_temp_directory).expanduser()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = Path(tempfile.mkdtemp(prefix="tls-", dir=base))
    try:
        yield write_credentials(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _slurm_cluster(cfg: SlurmConfig, security: Any, dashboard_address: str) -> Iterator[Any]:
    from dask_jobqueue import SLURMCluster

    log_dir = _log_directory(cfg)
    log_dir.mkdir(parents=True, exist_ok=True)  # sbatch does not create the -o/-e folder
    tls = dict(security=security, protocol="tls://") if security else {}
    cluster = SLURMCluster(
        queue=cfg.partition,
        account=cfg.account,
        cores=cfg.cores,
        processes=cfg.processes,
        memory=cfg.memory,
        walltime=cfg.walltime,
        job_name=cfg.job_name,
        job_extra_directives=cfg.job_extra_directives,
        job_script_prologue=cfg.job_script_prologue,
        log_directory=str(log_dir),
        interface=cfg.interface,
        local_directory=cfg.local_directory,
        scheduler_options={"dashboard_address": dashboard_address},
        **tls,
    )
    try:
        yield cluster
    finally:
        cluster.close()


def preflight(job_script: str) -> None:
    """Let sbatch check the worker job without submitting it, for a one-line error now."""
    proc = subprocess.run(["sbatch", "--test-only"], input=job_script, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        lines = [line.strip().removeprefix("sbatch: error: ") for line in proc.stderr.splitlines() if line.strip()]
        reason = "; ".join(dict.fromkeys(lines)) or f"sbatch exit status {proc.returncode}"
        raise ClusterError(f"SLURM refuses the worker job: {reason}")


def _wait_for_first_worker(client: Any, cluster: Any, cfg: SlurmConfig) -> None:
    try:
        client.wait_for_workers(1, timeout=cfg.worker_timeout)
    except TimeoutError:
        raise ClusterError(
            f"no Dask worker joined within {cfg.worker_timeout:g} s; worker jobs: {job_states(cluster) or 'none'}; "
            f"logs in {_log_directory(cfg)}"
        ) from None


def job_states(cluster: Any) -> str:
    """'<id> <state> (<reason>)' of the cluster's worker jobs, from squeue."""
    ids = [str(job.job_id) for job in list(cluster.workers.values()) if getattr(job, "job_id", None)]
    if not ids:
        return ""
    # the states only decorate an error message, so a failing squeue must not raise
    proc = subprocess.run(
        ["squeue", "-h", "-o", "%i %T (%r)", "-j", ",".join(ids)], capture_output=True, text=True, timeout=30, check=False
    )
    return "; ".join(line.strip() for line in proc.stdout.splitlines() if line.strip())


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM (scancel, walltime) into SystemExit so the worker jobs get cancelled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- fault tolerance


def recomputed_tasks(client: Any, since: float = 0.0) -> dict:
    """Tasks that lost their worker and ran again, from the scheduler's remove-worker events.

    A removed worker's ``running`` tasks and the ``results_lost`` only it held
    are computed again elsewhere (within ``retries``); coffea's task keys name
    the chunks. ``since`` (epoch seconds) skips older events of a shared scheduler.
    """
    try:
        events = client.get_events("all")
    except Exception as exc:  # an old or closed scheduler: leave the summary without it
        log.debug("no scheduler events: %s", exc)
        return {}
    lost = [
        {
            "worker": msg.get("worker"),
            "expected": bool(msg.get("expected")),
            "running": sorted(str(k) for k in msg.get("processing-tasks", ())),
            "results_lost": sorted(str(k) for k in msg.get("lost-computed-tasks", ())),
        }
        for stamp, msg in events
        if stamp >= since and isinstance(msg, dict) and msg.get("action") == "remove-worker"
    ]
    # adaptive scale-down of an idle worker is no news
    lost = [x for x in lost if x["running"] or x["results_lost"] or not x["expected"]]
    return {"workers_lost": [x["worker"] for x in lost if not x["expected"]], "recomputed": lost}
