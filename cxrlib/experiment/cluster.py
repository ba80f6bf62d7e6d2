"""Scale out: the (configuration, fold) units of a profile on a Dask cluster.

A profile's grid is a set of independent units, one per (configuration, test fold): the paper's
8 configurations x 10 folds are 80 trainings. This module hands them to Dask distributed, an
existing scheduler, instead of running them one after another in this process:

- **Where** (:mod:`cxrlib.experiment.dask_clusters`): a ``LocalCluster`` on this machine by default (one
  worker per GPU where there are GPUs, found without importing a deep-learning framework;
  otherwise a few CPU workers that split the cores between them), an existing scheduler
  (``tcp://host:8786``), or SLURM jobs through dask-jobqueue (``slurm:<config.yaml>``, see
  ``examples/slurm_cluster.yaml``).
- **What a unit does**: exactly what a local run does for one fold, :func:`cxrlib.experiment.cv.run_fold`,
  writing into the shared results store (:mod:`cxrlib.experiment.results`, atomic per fold). The dataset is
  curated and the fold assignment stored once, here, before anything is submitted; units
  already finished are not submitted, and a unit finished meanwhile is skipped by the task.
- **Failures**: a task is never retried for an exception (``retries=0``): a unit that fails
  on its input fails once, is reported with its error, and the others carry on. A worker that
  dies mid-unit (killed, out of memory, node lost) is a different event: the scheduler gives
  the unit to another worker, up to ``distributed.scheduler.allowed-failures`` deaths (3 by
  default). A fold is only ever written whole, so nothing finished is lost or written twice.
- **Progress**: the dashboard's address, a line per finished or failed unit, and a compact
  count of units done / running / failed / waiting (one line every few seconds in a terminal,
  one line updated in place in a notebook). Each unit's own log (epochs, errors, which worker
  and how many attempts) is ``runs/<run>/cluster-logs/<config>-fold-<k>.log``.

The workers must import the same ``cxrlib`` (installed: ``pip install --no-deps -e .``) and
see the same results, curated data and run-record folders (one machine, or a shared file
system on a cluster).

Command line: ``python -m cxrlib cluster --profile default [--workers 2] [--address ADDR]``;
``python -m cxrlib run --executor dask`` is the same; notebooks 02-04 take ``executor`` and
call :func:`run_profile`. This module sits above :mod:`cxrlib.experiment.cv` (whose loop is local only).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from distributed import KilledWorker
from IPython.display import Pretty, display

from cxrlib.core import paths
from cxrlib.core.profiles import Profile, get_profile
from cxrlib.data.curate import ensure_curated
from cxrlib.experiment import cv, results
from cxrlib.experiment.dask_clusters import GPU_RESOURCE, SLURM_PREFIX, connect, offers_gpus
from cxrlib.experiment.runs import run_name


def parse_executor(executor: str) -> tuple[str | None, int | None]:
    """:func:`run_profile`'s ``executor`` -> (scheduler address, workers).

    ``"dask"``: a local cluster (address None), ``"dask:4"``: one of 4 workers; anything else
    is an address: ``tcp://host:8786`` (a running scheduler) or ``slurm:<config file>``.
    """
    name, _, count = executor.partition(":")
    if name != "dask":
        return executor, None
    if count and not count.isdigit():
        raise ValueError(f"executor {executor!r}: expected dask or dask:<workers>, e.g. dask:2")
    return None, int(count) if count else None


# ---------------------------------------------------------------------------------------------
# One unit, on a worker
# ---------------------------------------------------------------------------------------------

def unit_log_path(log_dir: str | Path, config: str, fold: int) -> Path:
    return Path(log_dir) / f"{config}-fold-{fold:02d}.log"


def attempt_line(config: str, fold: int) -> str:
    """The first line every attempt writes to its unit's log (a retry writes it again)."""
    device = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (f"attempt of {config} fold {fold}: worker {socket.gethostname()} pid {os.getpid()}"
            f"{f' GPU {device}' if device else ''} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")


#: The last dataset a worker process loaded (key, (manifest, images)): its units reuse it.
_worker_dataset: dict = {}
#: One unit trains at a time in a worker process, however many threads the worker has: Keras
#: keeps global state (the session cleared per fold, the dtype policy, the random seed).
_training = threading.Lock()


def worker_dataset(profile: Profile, curated: str):
    key = (curated, profile.to_json())
    if key not in _worker_dataset:
        _worker_dataset.clear()  # one dataset in memory at a time
        _worker_dataset[key] = cv.load_dataset(profile, curated=curated)
    return _worker_dataset[key]


def train_unit(profile: Profile, config: str, fold: int, run_path: str, curated: str,
               weights: str, save_weights: bool, log_dir: str) -> dict:
    """One (configuration, fold) on a worker: the same :func:`cxrlib.experiment.cv.run_fold` as a local
    run, logging to the unit's own file. Returns what the client reports."""
    run = Path(run_path)
    log_path = unit_log_path(log_dir, config, fold)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with _training, open(log_path, "a") as handle:
        def log(line: str) -> None:
            handle.write(line + "\n")
            handle.flush()

        log(attempt_line(config, fold))
        # Finished meanwhile (by another client or a previous attempt whose report was lost).
        if results.is_done(run, config, fold):
            log("already done, skipped")
            return {"config": config, "fold": fold, "status": "skipped", "worker": worker}
        started = time.perf_counter()
        try:
            manifest, images = worker_dataset(profile, curated)
            # Checks that this worker sees the stored assignment (same data, same seed).
            assignment = results.write_folds(run, cv.make_folds(manifest, profile))
            path = cv.run_fold(profile, config, fold, run, assignment, images, weights=weights,
                               log=log, save_weights=save_weights)
        except BaseException:
            log(traceback.format_exc())
            raise
    info = json.loads((path / "fold.json").read_text())
    return {"config": config, "fold": fold, "status": "trained", "worker": worker,
            "seconds": time.perf_counter() - started, "path": str(path),
            "test_accuracy": info.get("test_accuracy")}


# ---------------------------------------------------------------------------------------------
# Submitting and following
# ---------------------------------------------------------------------------------------------

class UnitsFailed(RuntimeError):
    """Some units failed; the others finished and are stored."""


def chosen_units(profile: Profile, configs=None, folds=None) -> list[tuple[str, int]]:
    """Every (configuration, fold) asked for, checked as :func:`cxrlib.experiment.cv.run_profile` does."""
    configs, folds = cv.checked_selection(profile, configs, folds)
    return [(c, f) for c in configs for f in folds]


def in_notebook() -> bool:
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """Units done / running / failed / waiting: one line every ``every`` seconds at most in a
    terminal (only when it changed), or one line updated in place in a notebook."""

    def __init__(self, run: str, total: int, every: float = 10.0, log=cv.log_line,
                 notebook: bool | None = None):
        self.run, self.total, self.every, self.log = run, total, every, log
        self.started = time.monotonic()
        self.last_text, self.last_shown = "", 0.0
        self.handle = None
        if in_notebook() if notebook is None else notebook:
            self.handle = display(Pretty(self.text(0, 0, 0)), display_id=True)

    def text(self, done: int, running: int, failed: int) -> str:
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        waiting = self.total - done - running - failed
        return (f"[cluster] {self.run}: {done}/{self.total} done, {running} running, "
                f"{failed} failed, {waiting} waiting ({minutes}m{seconds:02d}s)")

    def show(self, done: int, running: int, failed: int, final: bool = False) -> None:
        text = self.text(done, running, failed)
        counts = text.rsplit(" (", 1)[0]
        if self.handle is not None:
            self.handle.update(Pretty(text))
            return
        due = time.monotonic() - self.last_shown >= self.every
        if final or (due and counts != self.last_text):
            self.log(text)
            self.last_text, self.last_shown = counts, time.monotonic()


def running_units(client, keys: set) -> int:
    """How many of ``keys`` the workers are executing now (not merely holding in their queue):
    per worker, the fewer of our keys it holds and the tasks it reports executing."""
    try:
        processing = client.processing()
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except (OSError, TimeoutError):  # the scheduler is busy or gone: show the rest anyway
        return 0
    return sum(min(len(keys.intersection(processing.get(address, ()))),
                   worker.get("metrics", {}).get("task_counts", {}).get("executing", 0))
               for address, worker in workers.items())


def failure_message(future, config: str, fold: int, n_folds: int, log_path: Path) -> str:
    error = future.exception() if future.status == "error" else None
    if isinstance(error, KilledWorker):
        reason = ("its worker died every time it ran it (out of memory? see the worker's "
                  "log), so the scheduler gave up")
    elif error is not None:
        reason = f"{type(error).__name__}: {error}"
    else:
        reason = f"{future.status} (the scheduler or the client went away)"
    return f"{config} fold {fold + 1}/{n_folds}: FAILED: {reason} (log: {log_path})"


def follow(client, futures: dict, profile: Profile, run: str, log_dir: Path, log=cv.log_line,
           every: float = 10.0) -> tuple[list[dict], list[str]]:
    """Wait for every unit, reporting each as it ends and the counts as they change.

    ``futures`` maps each future to its (config, fold); a future is let go as soon as it ends,
    so the scheduler forgets it and can never run it again (e.g. to recover a result that was
    kept on a worker that died afterwards). Returns the finished units and the failures.
    """
    pending = dict(futures)
    futures.clear()  # only ``pending`` holds them now: dropping one releases it
    done, failures = [], []
    progress = Progress(run, len(pending), every=every, log=log)
    while pending:
        for future in [f for f in pending if f.done()]:
            config, fold = pending.pop(future)
            if future.status == "finished":
                outcome = future.result()
                done.append(outcome)
                if outcome["status"] == "skipped":
                    log(f"{config} fold {fold + 1}/{profile.n_folds}: already done, skipped")
                else:
                    accuracy = outcome.get("test_accuracy")
                    log(f"{config} fold {fold + 1}/{profile.n_folds}: done on "
                        f"{outcome['worker']} in {outcome['seconds']:.0f}s"
                        + (f", test accuracy {accuracy:.3f}" if accuracy is not None else ""))
            else:
                failures.append(failure_message(future, config, fold, profile.n_folds,
                                                unit_log_path(log_dir, config, fold)))
                log(failures[-1])
            future.release()
        running = running_units(client, {f.key for f in pending}) if pending else 0
        progress.show(len(done), running, len(failures), final=not pending)
        if pending:
            time.sleep(0.5)
    return done, failures


def prepare_units(profile: Profile, run_path: Path, curated, data_dir) -> tuple[Path, Path]:
    """Curate once and store the fold assignment once, before any worker starts (workers only
    read them). Returns the curated folder and the folder of the units' logs."""
    if curated is None:
        curated = ensure_curated(profile, data_dir=data_dir)
    curated = Path(curated).resolve()
    manifest, _ = cv.load_dataset(profile, curated=curated)
    results.write_folds(run_path, cv.make_folds(manifest, profile))
    log_dir = paths.runs_dir() / run_path.name / "cluster-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    return curated, log_dir


def submit_units(client, todo, profile: Profile, run_path: Path, curated: Path, weights,
                 save_weights_folds, log_dir: Path, gpu: bool) -> dict:
    """One task per (configuration, fold) of ``todo``, never retried for an exception (module
    docstring); returns each future's (configuration, fold)."""
    resources = {GPU_RESOURCE: 1} if gpu else None
    return {client.submit(train_unit, profile, config, fold, str(run_path.resolve()),
                          str(curated), str(weights),
                          save_weights_folds is None or fold in save_weights_folds,
                          str(log_dir), key=f"{run_path.name}/{config}/fold-{fold:02d}"
                          f"-{os.urandom(4).hex()}", resources=resources, retries=0,
                          pure=False): (config, fold)
            for config, fold in todo}


def run_on_cluster(profile: Profile | str, configs=None, folds=None, run: str | None = None,
                   data_dir=None, results_root=None, curated=None, weights="imagenet",
                   address: str | None = None, n_workers: int | None = None,
                   save_weights_folds=None, gpu: bool | None = None, log=cv.log_line,
                   progress_every: float = 10.0, retrain_corrupt: bool = False) -> Path:
    """Cross-validate like :func:`cxrlib.experiment.cv.run_profile`, one Dask task per unfinished unit.

    ``address``: None or ``"local"`` (a local cluster of ``n_workers``, see
    :func:`local_cluster`), ``"slurm:<config file>"`` (``n_workers`` SLURM jobs, default the
    file's ``jobs``) or a running scheduler's address. ``gpu``: whether tasks ask for a GPU
    resource (default: when the workers offer one). ``save_weights_folds``: as
    :func:`cxrlib.experiment.cv.run_profile` (None: every fold's trained weights are kept). Raises
    :class:`UnitsFailed` after the other units finished if any unit failed. Returns the run's
    results folder.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    units = chosen_units(profile, configs, folds)
    run_path = results.run_dir(run_name(run, profile), results_root)
    results.ensure_profile(run_path, profile)
    results.settle_corrupt(run_path, units, retrain=retrain_corrupt, log=log)
    todo = [(c, f) for c, f in units if not results.is_done(run_path, c, f)]
    for config, fold in [u for u in units if u not in todo]:
        log(f"{config} fold {fold + 1}/{profile.n_folds}: already done, skipped")
    if not todo:
        return run_path

    curated, log_dir = prepare_units(profile, run_path, curated, data_dir)
    start = time.perf_counter()
    with connect(address, n_workers) as client:
        log(f"[cluster] Dask dashboard: {client.dashboard_link}")
        slurm = bool(address) and address.startswith(SLURM_PREFIX)
        if slurm:
            log("[cluster] waiting for the first SLURM job to start a worker")
        gpu = offers_gpus(client, None if slurm else 60) if gpu is None else gpu
        log(f"[cluster] {len(todo)} unit(s) of {run_path.name} to "
            f"{len(client.scheduler_info(n_workers=-1)['workers'])} worker(s)"
            f"{' (one GPU each)' if gpu else ''}; unit logs in {log_dir}")
        futures = submit_units(client, todo, profile, run_path, curated, weights,
                               save_weights_folds, log_dir, gpu)
        finished, failures = follow(client, futures, profile, run_path.name, log_dir, log=log,
                                    every=progress_every)
    log(f"[cluster] {len(finished)} of {len(todo)} unit(s) of {run_path.name} done in "
        f"{time.perf_counter() - start:.0f}s" + (f", {len(failures)} failed" if failures else ""))
    if failures:
        raise UnitsFailed(f"{len(failures)} of {len(todo)} unit(s) failed; the others are "
                          f"stored in {run_path}. Fix the cause and run the same command again "
                          f"to do only the rest:\n" + "\n".join(failures))
    return run_path


def run_with_executor(executor: str, profile: Profile | str, **options) -> Path:
    """:func:`run_on_cluster` for an ``executor`` other than ``"local"`` (see
    :func:`parse_executor`)."""
    address, n_workers = parse_executor(executor)
    return run_on_cluster(profile, address=address, n_workers=n_workers, **options)


def run_profile(profile: Profile | str, configs=None, folds=None, executor: str = "local",
                **options) -> Path:
    """Cross-validate a profile where ``executor`` says; the results are the same either way.

    ``"local"``: here, one fold after another (:func:`cxrlib.experiment.cv.run_profile`); ``"dask"``
    (``"dask:N"``: N workers), a Dask scheduler's address or ``"slurm:<config file>"``: every
    unfinished (configuration, fold) as a task on a Dask cluster (:func:`run_on_cluster`).
    ``options`` are :func:`cxrlib.experiment.cv.run_profile`'s (run, data_dir, results_root, curated,
    weights, log, save_weights_folds, retrain_corrupt). Returns the run's results folder.
    """
    if executor == "local":
        return cv.run_profile(profile, configs=configs, folds=folds, **options)
    return run_with_executor(executor, profile, configs=configs, folds=folds, **options)
