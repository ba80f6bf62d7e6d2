"""Scale-out on a real Dask cluster: worker processes on loopback training the tiny profile.

Each cluster test starts its own cluster (two worker processes, each importing TensorFlow), so
they are the slow part of this file; the rest needs no cluster.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cxrlib.experiment import cluster, cv, dask_clusters, results

REPO = Path(__file__).resolve().parent.parent
ATTEMPT = re.compile(r"^attempt of (\S+) fold (\d+): worker \S+ pid (\d+)(?: GPU (\S+))? at ",
                     re.MULTILINE)


def attempts(log_dir: Path, config: str, fold: int) -> list[tuple[int, str | None]]:
    """(pid, GPU) of every attempt at a unit, from its log."""
    path = cluster.unit_log_path(log_dir, config, fold)
    text = path.read_text() if path.is_file() else ""
    return [(int(pid), gpu) for _, _, pid, gpu in ATTEMPT.findall(text)]


def relative_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def local_run(tiny_curated, tmp_path_factory, standin_keras_home) -> Path:
    """off_the_shelf fold 0 of the tiny profile, trained in this process: the local reference."""
    root = tmp_path_factory.mktemp("local_results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(standin_keras_home))
        return cv.run_profile("tiny", configs=["off_the_shelf"], folds=[0], results_root=root,
                              curated=tiny_curated, log=lambda line: None)


@pytest.fixture()
def worker_environment(tmp_path, monkeypatch, standin_keras_home) -> Path:
    """What the worker processes inherit from this one; returns the run-records folder."""
    monkeypatch.setenv("KERAS_HOME", str(standin_keras_home))
    monkeypatch.setenv("CXRLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return tmp_path / "runs"


def test_the_cluster_command_stores_what_a_local_run_does_and_a_bad_unit_fails_once(
        tiny_curated, local_run, worker_environment, tmp_path):
    """Two CPU workers: two good units and two that fail on their input (99 trainable blocks
    of 18) each fail once, reported with their error, and the good ones finish."""
    root = tmp_path / "results"
    command = [sys.executable, "-m", "cxrlib", "cluster", "--profile", "tiny", "--workers", "2",
               "--configs", "off_the_shelf,fine_tune_99", "--curated", str(tiny_curated),
               "--results", str(root)]
    done = subprocess.run(command, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "[cluster] Dask dashboard: http://127.0.0.1:" in done.stdout
    assert "to 2 worker(s)" in done.stdout
    for fold in (1, 2):
        assert (f"fine_tune_99 fold {fold}/2: FAILED: ValueError: trainable_blocks must be "
                f"0..18, got 99") in done.stderr
    assert "2 of 4 unit(s) failed" in done.stderr
    assert "[cluster] tiny: 2/4 done, 0 running, 2 failed, 0 waiting" in done.stdout
    # Epochs go to the units' logs, not to the terminal.
    assert "epoch 1/1" not in done.stdout

    run_path = root / "tiny"
    log_dir = worker_environment / "tiny" / "cluster-logs"
    assert results.done_folds(run_path, "off_the_shelf") == [0, 1]
    assert results.done_folds(run_path, "fine_tune_99") == []
    for config in ("off_the_shelf", "fine_tune_99"):
        for fold in (0, 1):
            assert len(attempts(log_dir, config, fold)) == 1, (config, fold)
    assert "ValueError: trainable_blocks" in cluster.unit_log_path(
        log_dir, "fine_tune_99", 0).read_text()
    assert "epoch 1/1" in cluster.unit_log_path(log_dir, "off_the_shelf", 0).read_text()

    # The same form as the local run: settings, fold assignment, files, columns, fields.
    assert (run_path / "profile.json").read_text() == (local_run / "profile.json").read_text()
    assert results.read_folds(run_path).equals(results.read_folds(local_run))
    here = results.fold_dir(run_path, "off_the_shelf", 0)
    there = results.fold_dir(local_run, "off_the_shelf", 0)
    assert relative_files(here) == relative_files(there)
    ours, theirs = (results.read_predictions(r, "off_the_shelf", folds=[0])
                    for r in (run_path, local_run))
    assert list(ours.columns) == list(theirs.columns)
    assert sorted(ours["image_id"]) == sorted(theirs["image_id"])
    assert list(results.read_history(run_path, "off_the_shelf").columns) == \
        list(results.read_history(local_run, "off_the_shelf").columns)
    info, reference = (json.loads((d / "fold.json").read_text()) for d in (here, there))
    assert sorted(info) == sorted(reference)
    assert {k: info[k] for k in ("n_train", "n_val", "n_test", "config", "fold")} == \
        {k: reference[k] for k in ("n_train", "n_val", "n_test", "config", "fold")}

    # Finished units are never submitted again: no cluster starts for them.
    lines: list[str] = []
    cluster.run_profile("tiny", configs=["off_the_shelf"], results_root=root,
                        curated=tiny_curated, executor="dask:2", log=lines.append)
    assert lines == ["off_the_shelf fold 1/2: already done, skipped",
                     "off_the_shelf fold 2/2: already done, skipped"]


def kill_when_started(log_dir: Path, run_path: Path, config: str, fold: int,
                      killed: list, errors: list, deadline: float) -> None:
    """Kill the worker process that starts ``config`` fold ``fold`` (its pid from the unit's
    log), while the fold is unfinished."""
    try:
        while not attempts(log_dir, config, fold):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{config} fold {fold} never started")
            time.sleep(0.05)
        pid = attempts(log_dir, config, fold)[0][0]
        if results.is_done(run_path, config, fold):
            raise AssertionError("killed too late: the unit had finished")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    except BaseException as error:  # reported by the test
        errors.append(error)


def test_a_worker_killed_mid_unit_loses_nothing_and_repeats_nothing(
        tiny_curated, local_run, worker_environment, tmp_path, monkeypatch):
    """Two GPU workers (stand-ins: CUDA_VISIBLE_DEVICES names two devices, which TensorFlow's
    CPU build ignores), each offering one GPU resource. A unit finished before is not
    submitted; the worker training another unit is killed; that unit is trained again on a
    worker and every other unit exactly once."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    root = tmp_path / "results"
    run_path = root / "tiny"
    # A unit finished earlier (by the local run): its files must stay as they are.
    run_path.mkdir(parents=True)
    for name in ("profile.json", "folds.csv"):
        shutil.copy2(local_run / name, run_path / name)
    finished = results.fold_dir(run_path, "off_the_shelf", 0)
    shutil.copytree(results.fold_dir(local_run, "off_the_shelf", 0), finished)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished.iterdir()}

    log_dir = worker_environment / "tiny" / "cluster-logs"
    killed, errors = [], []
    killer = threading.Thread(target=kill_when_started, daemon=True, args=(
        log_dir, run_path, "from_scratch", 0, killed, errors, time.monotonic() + 300))
    killer.start()
    lines: list[str] = []
    configs = ["off_the_shelf", "from_scratch", "fine_tune_1"]
    cluster.run_on_cluster("tiny", configs=configs, folds=[0], results_root=root,
                           curated=tiny_curated, log=lines.append, progress_every=0)
    killer.join(timeout=10)
    assert not errors, errors
    assert len(killed) == 1

    assert "off_the_shelf fold 1/2: already done, skipped" in lines
    assert any("2 unit(s) of tiny to 2 worker(s) (one GPU each)" in line for line in lines)
    assert [results.done_folds(run_path, c) for c in configs] == [[0], [0], [0]]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished.iterdir()} == before
    assert attempts(log_dir, "off_the_shelf", 0) == []  # never submitted
    retried = attempts(log_dir, "from_scratch", 0)
    assert len(retried) == 2 and retried[0][0] == killed[0] != retried[1][0]
    assert len(attempts(log_dir, "fine_tune_1", 0)) == 1
    # The two units started at once, each on a device of its own.
    assert {attempts(log_dir, "fine_tune_1", 0)[0][1], retried[0][1]} == {"0", "1"}

    folds = results.read_folds(run_path)
    pred = results.read_predictions(run_path, "from_scratch")
    assert sorted(pred["image_id"]) == sorted(folds.loc[folds["fold"] == 0, "image_id"])
    assert not [p for p in run_path.rglob(".*")], "a half-written fold was left behind"


# --- no cluster needed ---------------------------------------------------------------------

def test_gpus_are_found_without_a_deep_learning_framework(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert dask_clusters.visible_gpus() == ["2", "3"]
    for hidden in ("", "-1", "-1,0"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert dask_clusters.visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-a)'\n"
                    "echo 'GPU 1: NVIDIA H200 (UUID: GPU-b)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert dask_clusters.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert dask_clusters.visible_gpus() == []


def test_executor_names_and_worker_threads():
    assert cluster.parse_executor("dask") == (None, None)
    assert cluster.parse_executor("dask:3") == (None, 3)
    assert cluster.parse_executor("tcp://10.0.0.5:8786") == ("tcp://10.0.0.5:8786", None)
    assert cluster.parse_executor("slurm:my.yaml") == ("slurm:my.yaml", None)
    with pytest.raises(ValueError, match="dask:<workers>"):
        cluster.parse_executor("dask:two")
    assert dask_clusters.cpu_thread_environment(1)["TF_NUM_INTRAOP_THREADS"] == "1"
    assert "intra_op_parallelism_threads=1" in dask_clusters.cpu_thread_environment(1)["XLA_FLAGS"]
    assert "XLA_FLAGS" not in dask_clusters.cpu_thread_environment(4)
    assert dask_clusters.default_cpu_workers(2) == 2 and dask_clusters.default_cpu_workers(64) == 4


def test_bad_units_are_refused_before_any_cluster_starts(tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        cluster.run_on_cluster("tiny", folds=[5], results_root=tmp_path)
    with pytest.raises(ValueError, match="unknown configuration"):
        cluster.run_profile("tiny", configs=["fine_tune"], results_root=tmp_path,
                            executor="dask")


def test_the_slurm_example_renders_a_gpu_job(tmp_path):
    from dask_jobqueue import SLURMCluster

    settings = dask_clusters.read_slurm_config(REPO / "examples" / "slurm_cluster.yaml")
    assert settings.jobs >= 1
    with SLURMCluster(**settings.cluster) as slurm:
        script = slurm.job_script()
    assert "#SBATCH --gres=gpu:1" in script
    assert "--resources GPU=1" in script
    assert "export KERAS_BACKEND=jax" in script

    with pytest.raises(FileNotFoundError, match="examples/slurm_cluster.yaml"):
        dask_clusters.read_slurm_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: {cores: 1}\nworkers: 3\n")
    with pytest.raises(ValueError, match="'cluster' mapping"):
        dask_clusters.read_slurm_config(bad)
    bad.write_text("cluster: {cores: 1}\njobs: none\n")
    with pytest.raises(ValueError, match="whole number"):
        dask_clusters.read_slurm_config(bad)


def test_the_strategy_notebooks_pass_their_executor_parameter_on():
    """papermill sets ``executor`` (tests/test_cv.py runs these notebooks locally)."""
    from cxrlib.report.pipeline import STRATEGY_NOTEBOOK, declared_parameters, read_text_notebook

    for name in (STRATEGY_NOTEBOOK,):
        path = REPO / "notebooks" / f"{name}.py"
        assert "executor" in declared_parameters(read_text_notebook(path)), name
        assert "executor=executor)" in path.read_text(), name


def test_the_appendix_reads_the_benchmark_records(tmp_path):
    from cxrlib.report import provenance

    folder = tmp_path / "benchmarks" / "results"
    folder.mkdir(parents=True)
    rows = [{"setting": "dask-2-workers", "workers": 2, "wall_seconds": 600.0,
             "summed_train_seconds": 960.0, "load_before": [0.5, 0.4, 0.3],
             "load_after": [2.0, 1.5, 1.0]},
            {"setting": "in-process", "workers": None, "wall_seconds": 540.0,
             "summed_train_seconds": 480.0, "load_before": [0.1, 0.1, 0.1],
             "load_after": [2.0, 1.5, 1.0]}]
    (folder / "cluster-default.json").write_text(json.dumps(
        {"profile": "default", "units": 24, "cores": 2, "rows": rows,
         "configs": ["off_the_shelf", "from_scratch"], "folds": [0, 1, 2],
         "device": "CPU: test", "finished": "2026-11-29T23:00:00+0000"}))
    table = provenance.cluster_benchmarks(tmp_path)
    assert list(table["where"]) == ["local Dask cluster, 2 workers", "in-process loop"]
    assert list(table["wall time (min)"]) == [10.0, 9.0]
    assert set(table["configurations x folds"]) == {"off_the_shelf, from_scratch x 3"}
    assert list(table["units' training, summed (min)"]) == [16.0, 8.0]
    assert provenance.cluster_benchmarks(tmp_path / "elsewhere").empty
