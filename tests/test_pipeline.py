"""The one command's parts: the notebook plan, run records, fingerprints, vendoring rules.

Real papermill executions of small notebooks the tests write; the whole command (with the real
notebooks and a jupyter-book build) is exercised in test_book.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import write_fold

from cxrlib.core.profiles import get_profile
from cxrlib.experiment import results
from cxrlib.report import pipeline, vendor

REPO = Path(__file__).resolve().parent.parent


# --- the plan ------------------------------------------------------------------------------

def test_plan_runs_every_notebook_in_the_papers_order():
    steps = pipeline.plan_notebooks(get_profile("default"), run="default")
    assert [s.notebook for s in steps] == (
        ["01_data_curation"] + ["02_strategy"] * 8 + ["03_results"])
    assert [s.parameters["config"] for s in steps[1:-1]] == [
        "off_the_shelf", "fine_tune_1", "fine_tune_3", "fine_tune_5", "fine_tune_7",
        "fine_tune_9", "fine_tune_11", "from_scratch"]
    assert all(s.config == s.parameters["config"] for s in steps[1:-1])
    assert len({s.record for s in steps}) == len(steps), "each execution has its own record"
    assert all(s.parameters["profile"] == "default" for s in steps)
    assert all(s.parameters["run"] == "default" for s in steps[1:])
    assert "run" not in steps[0].parameters, "the curated set belongs to the profile"


def test_plan_skips_strategies_the_profile_leaves_out():
    profile = get_profile("tiny", configs=("from_scratch", "fine_tune_3"))
    steps = pipeline.plan_notebooks(profile, run="x", data="/d", folds="0")
    assert [s.record for s in steps] == [
        "01_data_curation.ipynb", "02_strategy-fine_tune_3.ipynb",
        "02_strategy-from_scratch.ipynb", "03_results.ipynb"]
    assert steps[1].parameters == {"profile": "tiny", "run": "x", "data": "/d", "folds": "0",
                                   "config": "fine_tune_3"}


def test_plan_without_training_and_with_a_subset_of_configurations():
    profile = get_profile("default")
    assert [s.notebook for s in pipeline.plan_notebooks(profile, "r", training=False)] == [
        "01_data_curation", "03_results"]
    subset = pipeline.plan_notebooks(profile, "r", configs=["from_scratch", "off_the_shelf"])
    assert [s.config for s in subset if s.config] == ["off_the_shelf", "from_scratch"]
    with pytest.raises(ValueError, match="fine_tune_2.*not in profile"):
        pipeline.plan_notebooks(profile, "r", configs=["fine_tune_2"])


def test_declared_parameters_reads_the_tagged_cell():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell('profile = "default"\nrun: str = ""\n# data = 1\nfolds=""',
                                  metadata={"tags": ["parameters"]}),
    ])
    assert pipeline.declared_parameters(nb) == ["profile", "run", "folds"]
    assert pipeline.declared_parameters(nbformat.v4.new_notebook()) == []


# --- executing notebooks into run records ---------------------------------------------------

NOTEBOOK = '''\
# %% [markdown]
# A notebook the tests execute.

# %% tags=["parameters"]
profile = "default"
run = ""

# %%
from pathlib import Path
log = Path({log!r})
log.write_text(log.read_text() + f"{{profile}},{{run}}\\n" if log.exists() else f"{{profile}},{{run}}\\n")
{extra}
'''


def write_notebooks(root: Path, log: Path, names=("01_data_curation", "03_results"),
                    extra="") -> None:
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / "notebooks" / f"{name}.py").write_text(NOTEBOOK.format(log=str(log),
                                                                        extra=extra))


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    monkeypatch.setenv("CXRLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CXRLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("CXRLIB_CURATED", str(tmp_path / "curated"))
    return root


def test_a_rerun_with_nothing_changed_executes_nothing(project, tmp_path):
    log = tmp_path / "executions.log"
    write_notebooks(project, log)
    profile = get_profile("tiny")
    args = dict(profile=profile, run="tiny", data="", folds="", training=False, force=False,
                root=project, results_root=tmp_path / "results", log=lambda m: None)
    first = pipeline.run_notebooks(**args)
    assert log.read_text().splitlines() == ["tiny,", "tiny,tiny"]
    assert all(seconds > 0 for seconds in first.values())
    record = tmp_path / "runs" / "tiny" / "03_results.ipynb"
    executed = nbformat.read(record, as_version=4)
    assert executed.metadata["cxrlib"]["status"] == "completed"
    assert executed.metadata["cxrlib"]["parameters"] == {"profile": "tiny", "run": "tiny"}
    curation = nbformat.read(tmp_path / "runs" / "tiny" / "01_data_curation.ipynb", 4)
    assert curation.metadata["cxrlib"]["parameters"] == {"profile": "tiny"}
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)

    second = pipeline.run_notebooks(**args)
    assert second == {"01_data_curation.ipynb": 0.0, "03_results.ipynb": 0.0}
    assert len(log.read_text().splitlines()) == 2, "nothing was executed again"

    # A change to the results the results notebook reads makes only that one stale.
    run_path = results.run_dir("tiny", tmp_path / "results")
    write_fold(run_path, "from_scratch", 0)
    pipeline.run_notebooks(**args)
    assert len(log.read_text().splitlines()) == 3

    # A deleted curated set makes the curation record stale (it would be made again).
    from cxrlib.data.curate import curated_dir_for
    curated = curated_dir_for(profile)
    curated.mkdir(parents=True)
    (curated / "curation.json").write_text("{}")
    pipeline.run_notebooks(**args)
    assert log.read_text().splitlines()[-1] == "tiny,", "curation ran again"
    assert len(log.read_text().splitlines()) == 4

    # --force executes everything.
    pipeline.run_notebooks(**dict(args, force=True))
    assert len(log.read_text().splitlines()) == 6


def test_a_failing_notebook_keeps_its_record_and_names_it(project, tmp_path):
    write_notebooks(project, tmp_path / "log", names=("01_data_curation",),
                    extra='raise ValueError("curation broke")')
    step = pipeline.plan_notebooks(get_profile("tiny"), "tiny", training=False)[0]
    records = tmp_path / "runs" / "tiny"
    with pytest.raises(RuntimeError, match="ValueError: curation broke") as error:
        pipeline.execute_step(step, project, records, key_after=lambda: "k", log=lambda m: None)
    record = records / "01_data_curation.ipynb"
    assert str(record) in str(error.value)
    assert record.is_file()
    assert not pipeline.record_is_current(record, "k"), "a failed record is never current"


def test_a_missing_notebook_says_which_and_where(project, tmp_path):
    write_notebooks(project, tmp_path / "log", names=("01_data_curation",))
    with pytest.raises(FileNotFoundError, match="03_results.py does not exist"):
        pipeline.run_notebooks(get_profile("tiny"), "tiny", "", "", training=False,
                               force=False, root=project, results_root=tmp_path / "results",
                               log=lambda m: None)


# --- the README's papermill commands, as a user runs them ----------------------------------

def readme_commands(section: str) -> list[str]:
    """The ```bash blocks of one section of the README."""
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", body, re.DOTALL)


def test_the_readme_papermill_command_runs_on_the_tiny_profile(tmp_path, standin_keras_home):
    """The README's strategy command (jupytext, then papermill with ``config``) exactly as
    written but for the profile: the executed notebook is the run record of its configuration,
    and its folds are stored."""
    blocks = readme_commands("One notebook, one strategy")
    assert len(blocks) == 1 and "jupytext --to ipynb" in blocks[0]
    script = blocks[0].replace("-p profile default", "-p profile tiny")
    assert "-p profile tiny" in script and "-p config fine_tune_7" in script
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    env = dict(os.environ, KERAS_HOME=str(standin_keras_home),
               CXRLIB_RESULTS=str(tmp_path / "results"), CXRLIB_RUNS=str(tmp_path / "store"),
               CXRLIB_CURATED=str(tmp_path / "curated"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = tmp_path / "runs" / "default"
    assert sorted(p.name for p in records.glob("*.ipynb")) == [
        "02_strategy-fine_tune_7.ipynb", "02_strategy.ipynb"]
    executed = nbformat.read(records / "02_strategy-fine_tune_7.ipynb", as_version=4)
    outputs = [o for cell in executed.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert results.done_folds(tmp_path / "results" / "tiny", "fine_tune_7") == [0, 1]


# --- what the chapters read -----------------------------------------------------------------

def test_the_book_shows_a_real_run_over_a_synthetic_one(tmp_path, monkeypatch):
    monkeypatch.delenv("CXRLIB_BOOK_RUN", raising=False)
    root = tmp_path / "results"
    write_fold(results.run_dir("default", root), "from_scratch", 0)
    synthetic = get_profile("default")
    assert pipeline.choose_book_run("default", synthetic, root) == "default"

    real = get_profile("paper-bundle")
    run_path = results.run_dir("paper-bundle", root)
    results.ensure_profile(run_path, real)
    frame = pd.DataFrame({"image_id": ["a"], "fold": 0, "label": ["COVID-19"],
                          "patient_id": ["p"], "source": "cohen"})
    for c in real.classes:
        frame[f"p_{c}"] = 0.25
    results.write_fold(run_path, "from_scratch", 0, frame, pd.DataFrame({"epoch": [1]}), {})
    assert pipeline.choose_book_run("default", synthetic, root) == "paper-bundle"
    assert pipeline.choose_book_run("mine", real, root) == "mine", "a real run shows itself"


def test_imagenet_weights_come_from_the_shared_folder(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    shared = tmp_path / "shared" / "weights"
    shared.mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert pipeline.provide_imagenet_weights(root, log=lambda m: None) is None
    (shared / pipeline.IMAGENET_FILE).write_bytes(b"weights")
    cached = pipeline.provide_imagenet_weights(root, log=lambda m: None)
    assert cached == tmp_path / "keras" / "models" / pipeline.IMAGENET_FILE
    assert cached.read_bytes() == b"weights"


# --- vendored JavaScript rules ---------------------------------------------------------------

def test_vendored_packages_must_be_pinned(tmp_path):
    pins = vendor.pinned_versions()
    assert set(pins) == set(vendor.VENDORED_FILES)
    assert all(v[0].isdigit() for v in pins.values())
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {
        "mathjax": "^3.2.2", "requirejs": "2.3.8", "@jupyter-widgets/html-manager": "1.0.15"}}))
    with pytest.raises(ValueError, match="pin exact versions"):
        vendor.pinned_versions(tmp_path)


def test_a_static_folder_is_refused(tmp_path):
    (tmp_path / "_static").mkdir()
    with pytest.raises(RuntimeError, match="every .js file"):
        vendor.check_no_static_dir(tmp_path)


def test_copy_takes_folders_and_patterns(tmp_path):
    package = tmp_path / "pkg"
    (package / "dist" / "deep").mkdir(parents=True)
    (package / "dist" / "a.woff").write_text("a")
    (package / "dist" / "b.woff").write_text("b")
    (package / "dist" / "deep" / "c.js").write_text("c")
    (package / "dist" / "deep" / "c.js.map").write_text("map")
    staging = tmp_path / "out"
    assert vendor._copy(package, "dist/*.woff", staging, "fonts/") == 2
    assert vendor._copy(package, "dist/deep", staging, "lib") == 1
    assert sorted(p.name for p in staging.rglob("*") if p.is_file()) == ["a.woff", "b.woff",
                                                                        "c.js"]
    with pytest.raises(FileNotFoundError, match="missing from the npm package"):
        vendor._copy(package, "dist/none.js", staging, "x.js")
