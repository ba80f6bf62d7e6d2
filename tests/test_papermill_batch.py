"""papermill as users and the GPU machine run it, for real, on the tiny profile.

- The README's "papermill batches" block, exactly as written (taken from between its markers,
  so that a change of the README without this test fails), in a temporary folder holding a
  copy of ``notebooks/``: one executed strategy notebook per configuration and the results
  notebook, each kept as a run record.
- ``scripts/gpu_run.sh`` and ``scripts/gpu_audit.sh`` themselves, on the CPU with the JAX
  backend (as on the GPU machine), their folders moved to temporary ones by the environment
  variables they document and no wheels to install: each configuration's executed notebook
  comes back packed beside its folds.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat

from cxrlib.experiment import results

REPO = Path(__file__).resolve().parent.parent
BATCH_START = "<!-- papermill-batch: tests/test_papermill_batch.py runs this block as it stands -->"
BATCH_END = "<!-- papermill-batch: end -->"


def readme_batch() -> str:
    """The bash block between the README's papermill-batch markers."""
    text = (REPO / "README.md").read_text()
    assert text.count(BATCH_START) == 1 and text.count(BATCH_END) == 1, \
        "README.md lost its papermill-batch markers"
    between = text.split(BATCH_START, 1)[1].split(BATCH_END, 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", between, re.DOTALL)
    assert len(blocks) == 1, "one bash block between the papermill-batch markers"
    return blocks[0]


def stores(folder: Path, keras_home: Path) -> dict:
    """An environment whose stores, caches and temporary files all lie under ``folder``; the
    venv's python3, papermill and jupytext first on PATH; the JAX backend."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    return dict(os.environ, CXRLIB_RESULTS=str(folder / "results"),
                CXRLIB_RUNS=str(folder / "runs"), CXRLIB_CURATED=str(folder / "curated"),
                CXRLIB_LOGS=str(folder / "logs"), OUT=str(folder / "out"),
                JAX_COMPILATION_CACHE_DIR=str(folder / "jax-cache"), TMPDIR=str(folder / "tmp"),
                KERAS_HOME=str(keras_home), KERAS_BACKEND="jax", SKIP_WHEELS="1",
                POLL_SECONDS="2", TF_CPP_MIN_LOG_LEVEL="2",
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))


def errors_of(record: Path) -> list:
    executed = nbformat.read(record, as_version=4)
    assert executed.metadata.get("papermill"), f"{record.name} was not executed by papermill"
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{record.name}: a cell did not run"
    return [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]


def injected(record: Path) -> str:
    executed = nbformat.read(record, as_version=4)
    return "".join(c.source for c in executed.cells
                   if "injected-parameters" in c.metadata.get("tags", []))


def test_the_readme_papermill_batch_runs_as_written(tmp_path, standin_keras_home):
    script = readme_batch()
    run = re.search(r"^profile=tiny run=(\S+)$", script, re.MULTILINE)[1]
    configs = re.search(r"^for config in (.+); do$", script, re.MULTILINE)[1].split()
    assert len(configs) >= 2
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    env = stores(tmp_path, standin_keras_home)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    records = tmp_path / "runs" / run
    for config in configs:
        record = records / f"02_strategy-{config}.ipynb"
        assert errors_of(record) == [], config
        assert f'config = "{config}"' in injected(record)
        assert results.done_folds(tmp_path / "results" / run, config) == [0, 1], config
    summary = records / "03_results.ipynb"
    assert errors_of(summary) == []
    assert f'run = "{run}"' in injected(summary)
    assert not (REPO / "runs" / run).exists(), "the test wrote into the checkout"


def run_script(name: str, args: list[str], env: dict) -> str:
    done = subprocess.run(["bash", str(REPO / "scripts" / name), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]


def unpacked(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def test_gpu_run_executes_the_strategy_notebook_per_configuration(tmp_path, standin_keras_home):
    env = stores(tmp_path / "machine", standin_keras_home)
    out = Path(env["OUT"])
    log = run_script("gpu_run.sh", ["tiny", "900", "from_scratch@0"], env)
    assert "packed 2 finished folds and 1 notebook records" in log, log[-2000:]

    folds = [n for n in members(out / "results.tgz") if n.endswith("fold.json")]
    assert sorted(folds) == ["./tiny/from_scratch/fold-00/fold.json",
                             "./tiny/from_scratch/fold-01/fold.json"], folds
    assert members(out / "records.tgz") == ["./tiny/02_strategy-from_scratch.ipynb"]
    record = unpacked(out / "records.tgz", tmp_path) / "tiny" / "02_strategy-from_scratch.ipynb"
    assert errors_of(record) == []
    assert 'config = "from_scratch"' in injected(record)
    assert (out / "tiny--from_scratch-fold-00.npz").is_file(), sorted(os.listdir(out))
    assert not (out / "tiny--from_scratch-fold-01.npz").exists(), "only the fold asked for"
    assert "./worker-1.log" in members(out / "logs.tgz")


def test_gpu_audit_baseline_goes_through_the_strategy_notebook(tmp_path, standin_keras_home):
    """The baseline trains the audit's folds only (tiny: fold 0) of the audit configuration,
    through the notebook, then the patient-grouped retraining."""
    env = stores(tmp_path / "machine", standin_keras_home)
    out = Path(env["OUT"])
    run_script("gpu_audit.sh", ["tiny", "900", "baseline"], env)

    folds = [n for n in members(out / "audit-results.tgz") if n.endswith("fold.json")]
    assert sorted(folds) == ["results/tiny-patient/from_scratch/fold-00/fold.json",
                             "results/tiny/from_scratch/fold-00/fold.json"], folds
    record = unpacked(out / "audit-records.tgz", tmp_path) / "tiny" / \
        "02_strategy-from_scratch.ipynb"
    assert errors_of(record) == []
    assert 'folds = "0"' in injected(record)
