"""Which Dask cluster the units of :mod:`cxrlib.experiment.cluster` run on, and a client to it.

- **A local cluster** (:func:`local_cluster`): one worker per GPU where there are GPUs (found
  without importing a deep-learning framework, :func:`visible_gpus`), each seeing only its own
  device and offering one ``GPU`` resource; otherwise a few single-threaded CPU workers that
  split the cores between them (:func:`cpu_thread_environment`).
- **SLURM jobs** through dask-jobqueue (``slurm:<config.yaml>``, :func:`slurm_cluster`; see
  ``examples/slurm_cluster.yaml``).
- **A running scheduler** by its address (``tcp://host:8786``).

:func:`connect` gives a client to any of them and closes a cluster it started.
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dask
import yaml
from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

from cxrlib.core.errors import UserError

#: The worker resource a GPU task asks for; a GPU worker offers one, so two never share a device.
GPU_RESOURCE = "GPU"
#: Most CPU workers a local cluster starts by default (each trains one unit at a time).
MAX_DEFAULT_CPU_WORKERS = 4
SLURM_PREFIX = "slurm:"


# ---------------------------------------------------------------------------------------------
# Which cluster
# ---------------------------------------------------------------------------------------------

def visible_gpus() -> list[str]:
    """Ids of this machine's GPUs, without importing a deep-learning framework in the client.

    ``CUDA_VISIBLE_DEVICES`` when set (empty or ``-1``: none), otherwise ``nvidia-smi -L``.
    """
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None:
        ids = [d.strip() for d in chosen.split(",") if d.strip()]
        # CUDA ignores every id from the first invalid one on; "-1" is the usual "none".
        return [] if not ids or ids[0] == "-1" else ids
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(k) for k, _ in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]


def default_cpu_workers(cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_CPU_WORKERS, cores))


def cpu_thread_environment(threads: int) -> dict[str, str]:
    """Thread counts for a CPU worker's TensorFlow/JAX/BLAS: its share of the cores.

    Workers started together would otherwise each use every core and slow each other down.
    """
    env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads)}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def local_cluster(n_workers: int | None = None, gpus: list[str] | None = None):
    """A Dask cluster of worker processes on this machine, on the loopback interface.

    With GPUs (``gpus``, default :func:`visible_gpus`): one worker per GPU (``n_workers``
    limits how many), each seeing only its own device and offering one ``GPU`` resource.
    Otherwise ``n_workers`` single-threaded CPU workers (default :func:`default_cpu_workers`),
    each training with its share of the cores.
    """
    # The workers' statistical profiler (the dashboard's Profile page) samples every thread's
    # stack 100 times a second; measured here it slows training by about 6 %.
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return _local_cluster(n_workers, visible_gpus() if gpus is None else list(gpus))


def _local_cluster(n_workers: int | None, gpus: list[str]):
    scheduler = {"host": "127.0.0.1", "port": 0, "dashboard": True,
                 "dashboard_address": "127.0.0.1:0"}
    if gpus:
        gpus = gpus[:n_workers] if n_workers else gpus
        # LocalCluster gives every worker the same settings; each GPU worker needs its own
        # CUDA_VISIBLE_DEVICES, so the workers are spelt out (what LocalCluster does inside).
        workers = {f"gpu-{gpu}": {"cls": Nanny, "options": {
            "nthreads": 1, "host": "127.0.0.1", "resources": {GPU_RESOURCE: 1},
            "env": {"CUDA_VISIBLE_DEVICES": gpu}}} for gpu in gpus}
        return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": scheduler},
                           name="cxrlib-gpus")
    n_workers = n_workers or default_cpu_workers()
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0",
                        env=cpu_thread_environment(threads))


@dataclass(frozen=True)
class SlurmSettings:
    """A SLURM cluster configuration file, read (see ``examples/slurm_cluster.yaml``)."""

    cluster: dict  # keyword arguments of dask_jobqueue.SLURMCluster
    jobs: int      # SLURM jobs to start (each one worker)


def read_slurm_config(path: str | Path) -> SlurmSettings:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SLURM cluster configuration {path} does not exist: copy "
                                f"examples/slurm_cluster.yaml, adapt it, and pass "
                                f"slurm:<its path>")
    settings = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(settings) - {"cluster", "jobs"})
    if unknown or not isinstance(settings.get("cluster"), dict):
        raise ValueError(f"{path}: expected a 'cluster' mapping (dask_jobqueue.SLURMCluster "
                         f"arguments) and 'jobs' (a number); found keys "
                         f"{sorted(settings)} (see examples/slurm_cluster.yaml)")
    jobs = settings.get("jobs", 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"{path}: 'jobs' must be a whole number of SLURM jobs, got {jobs!r}")
    return SlurmSettings(cluster=settings["cluster"], jobs=jobs)


def slurm_cluster(config_file: str | Path, jobs: int | None = None):
    """SLURM jobs as Dask workers (dask-jobqueue), as the configuration file says."""
    settings = read_slurm_config(config_file)
    try:  # optional: only SLURM clusters need dask-jobqueue
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ImportError("slurm: needs dask-jobqueue: pip install dask-jobqueue "
                          "(pinned in requirements.txt)") from None
    cluster = SLURMCluster(**settings.cluster)
    cluster.scale(jobs=jobs or settings.jobs)
    return cluster


#: How long to wait for a scheduler given by its address before saying it does not answer.
CONNECT_TIMEOUT = "30s"


@contextlib.contextmanager
def connect(address: str | None = None, n_workers: int | None = None):
    """A Dask client: to a new local cluster (``None`` or ``"local"``), to SLURM jobs
    (``"slurm:<file>"``) or to a running scheduler; a cluster started here is closed after."""
    cluster = None
    if address in (None, "", "local"):
        cluster = local_cluster(n_workers)
    elif address.startswith(SLURM_PREFIX):
        cluster = slurm_cluster(address[len(SLURM_PREFIX):], n_workers)
    try:
        client = Client(cluster) if cluster is not None else Client(address,
                                                                    timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
            raise
        raise UserError(f"no Dask scheduler answers at {address} within {CONNECT_TIMEOUT} "
                        f"({type(e).__name__})",
                        "start one (`dask scheduler`) or give its address as tcp://HOST:8786; "
                        "--executor dask runs a local cluster instead") from None
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            # Workers that imported TensorFlow are slow to exit and the nanny says so (then
            # ends them): expected at shutdown, not worth a warning.
            nanny = logging.getLogger("distributed.nanny")
            level = nanny.level
            nanny.setLevel(logging.ERROR)
            try:
                cluster.close()
            finally:
                nanny.setLevel(level)


def offers_gpus(client, wait_seconds: float | None = 60) -> bool:
    """Whether the cluster's workers offer the GPU resource (waits for a first worker;
    ``wait_seconds`` None: as long as it takes, e.g. for SLURM jobs in a queue)."""
    try:
        client.wait_for_workers(1, timeout=wait_seconds)
    except TimeoutError:
        raise TimeoutError(f"no Dask worker joined {client.scheduler.address} within "
                           f"{wait_seconds:.0f} s: start workers (`dask worker ADDRESS "
                           f"--nthreads 1`, with `--resources GPU=1` on GPU machines) or "
                           f"wait for the SLURM jobs") from None
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers)
