"""The cross-validation loop: folds, validation split, fold results, resuming, combining."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_curated

from cxrlib.core.profiles import get_profile
from cxrlib.data import dataset
from cxrlib.experiment import cv, results

REPO = Path(__file__).resolve().parent.parent


def test_folds_are_stratified_deterministic_and_cover_every_image(tmp_path):
    manifest = dataset.read_manifest(write_curated(tmp_path / "c", per_class=9))
    profile = get_profile("tiny", n_folds=3)
    folds = cv.make_folds(manifest, profile)
    assert list(folds.columns) == ["image_id", "label", "patient_id", "source", "fold"]
    assert folds["image_id"].tolist() == manifest["image_id"].tolist()
    per_fold = folds.groupby(["fold", "label"]).size().unstack()
    assert per_fold.shape == (3, 7) and (per_fold == 3).all().all()
    assert cv.make_folds(manifest, profile)["fold"].tolist() == folds["fold"].tolist()
    other_seed = cv.make_folds(manifest, profile.replace(seed=7))["fold"]
    assert other_seed.tolist() != folds["fold"].tolist()


def test_patient_grouped_folds_keep_every_patient_on_one_side(tmp_path):
    manifest = dataset.read_manifest(
        write_curated(tmp_path / "c", per_class=12, patients_per_class=6))
    profile = get_profile("tiny", n_folds=3, grouping="patient")
    folds = cv.make_folds(manifest, profile)
    assert (folds.groupby("patient_id")["fold"].nunique() == 1).all()
    assert folds["fold"].nunique() == 3
    # Image-level folds of the same data do split patients (the check above can fail).
    image_folds = cv.make_folds(manifest, profile.replace(grouping="image"))
    assert (image_folds.groupby("patient_id")["fold"].nunique() > 1).any()


@pytest.mark.parametrize("grouping", ["image", "patient"])
def test_validation_is_a_stratified_part_of_the_training_folds(tmp_path, grouping):
    manifest = dataset.read_manifest(
        write_curated(tmp_path / "c", per_class=40, patients_per_class=20))
    profile = get_profile("default", grouping=grouping)
    folds = cv.make_folds(manifest, profile)
    train = folds[folds["fold"] != 1].reset_index(drop=True)
    val = cv.validation_mask(train, profile, fold=1)
    assert 0.07 < val.mean() < 0.14  # val_fraction 0.1
    assert set(train.loc[val, "label"]) == set(train["label"])
    if grouping == "patient":
        assert not set(train.loc[val, "patient_id"]) & set(train.loc[~val, "patient_id"])
    assert cv.validation_mask(train, profile, fold=1).tolist() == val.tolist()


def test_too_few_images_for_the_folds_is_a_clear_error(tmp_path):
    manifest = dataset.read_manifest(write_curated(tmp_path / "c", per_class=2))
    with pytest.raises(ValueError, match="at least 3 images per class"):
        cv.make_folds(manifest, get_profile("tiny", n_folds=3))


@pytest.fixture()
def standin_weights(standin_keras_home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(standin_keras_home))
    return standin_keras_home


def test_a_fold_writes_complete_results_and_a_rerun_skips_it(tiny_curated, tmp_path,
                                                            standin_weights):
    lines: list[str] = []
    run_path = cv.run_profile("tiny", configs=["off_the_shelf"], folds=[0],
                              results_root=tmp_path, curated=tiny_curated, log=lines.append)
    profile = get_profile("tiny")
    assert results.read_profile(run_path) == profile
    folds = results.read_folds(run_path)
    pred = results.read_predictions(run_path, "off_the_shelf")
    expected_columns = ["image_id", "fold", "label", "patient_id", "source"] + [
        f"p_{c}" for c in profile.classes]
    assert list(pred.columns) == expected_columns
    assert sorted(pred["image_id"]) == sorted(folds.loc[folds["fold"] == 0, "image_id"])
    np.testing.assert_allclose(pred.filter(like="p_").sum(axis=1), 1.0, atol=1e-4)
    history = results.read_history(run_path, "off_the_shelf")
    assert list(history.columns) == ["fold", "epoch", "loss", "accuracy", "val_loss",
                                     "val_accuracy", "seconds"]
    info_path = results.fold_dir(run_path, "off_the_shelf", 0) / "fold.json"
    info = json.loads(info_path.read_text())
    assert info["strategy"] == "off_the_shelf" and info["trainable_blocks"] == 0
    assert info["n_train"] + info["n_val"] + info["n_test"] == len(folds)
    assert info["n_test"] == len(pred) and info["epochs_run"] == len(history)
    assert info["dtype_policy"] == "float32" and info["profile"] == "tiny"
    assert info["environment"]["keras_backend"] in ("tensorflow", "jax", "torch")
    assert info["environment"]["packages"]["keras"]
    assert info["train_images_per_second"] > 0 and info["learning_rate"] == 1e-3
    # Compilation is what the first epoch took beyond a steady one: with one epoch, unknown.
    assert info["first_epoch_seconds"] == pytest.approx(history["seconds"].iloc[0], rel=1e-5)
    assert info["compile_seconds"] is None
    assert any("epoch 1/1" in line for line in lines)

    mtime = info_path.stat().st_mtime_ns
    lines.clear()
    cv.run_profile("tiny", configs=["off_the_shelf"], folds=[0], results_root=tmp_path,
                   curated=tiny_curated, log=lines.append)
    assert lines == ["off_the_shelf fold 1/2: already done, skipped"]
    assert info_path.stat().st_mtime_ns == mtime

    # Disjoint folds written elsewhere (another machine) combine by copying fold folders.
    elsewhere = cv.run_profile("tiny", configs=["off_the_shelf"], folds=[1],
                               results_root=tmp_path / "machine-2", curated=tiny_curated,
                               log=lambda line: None)
    assert results.read_folds(elsewhere).equals(folds)
    shutil.copytree(results.fold_dir(elsewhere, "off_the_shelf", 1),
                    results.fold_dir(run_path, "off_the_shelf", 1))
    combined = results.read_predictions(run_path, "off_the_shelf")
    assert sorted(combined["image_id"]) == sorted(folds["image_id"])

    # Other settings never land in the same run.
    with pytest.raises(ValueError, match="other settings"):
        cv.run_profile(profile.replace(epochs=2), configs=["off_the_shelf"], folds=[1],
                       results_root=tmp_path, curated=tiny_curated)


def test_bad_folds_and_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        cv.run_profile("tiny", folds=[2], results_root=tmp_path)
    with pytest.raises(ValueError, match="unknown configuration"):
        cv.run_profile("tiny", configs=["fine_tune"], results_root=tmp_path)


def test_a_curated_set_of_another_size_is_refused(tiny_curated, tmp_path):
    with pytest.raises(ValueError, match="32 px images but profile"):
        cv.run_profile(get_profile("tiny", image_size=48), configs=["from_scratch"],
                       results_root=tmp_path, curated=tiny_curated)


def test_killed_run_resumes_without_losing_or_repeating_a_fold(tiny_curated, tmp_path,
                                                               standin_keras_home):
    """Kill a real ``python -m cxrlib run`` during its third fold, then run it again."""
    results_root = tmp_path / "results"
    command = [sys.executable, "-m", "cxrlib", "run", "--profile", "tiny",
               "--configs", "off_the_shelf,fine_tune_1", "--curated", str(tiny_curated),
               "--results", str(results_root)]
    environment = dict(os.environ, KERAS_HOME=str(standin_keras_home), PYTHONUNBUFFERED="1",
                       CXRLIB_RUNS=str(tmp_path / "runs"))
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log,
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while "fine_tune_1 fold 1/2: start" not in first_log.read_text():
            assert process.poll() is None, first_log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its third fold"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()

    run_path = results_root / "tiny"
    assert results.done_folds(run_path, "off_the_shelf") == [0, 1]
    assert results.done_folds(run_path, "fine_tune_1") == [], "killed too late: fold finished"
    finished = {f: (results.fold_dir(run_path, "off_the_shelf", f) / "fold.json")
                for f in (0, 1)}
    before = {f: (p.stat().st_mtime_ns, p.read_bytes()) for f, p in finished.items()}

    second = subprocess.run(command, cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = second.stdout
    for f in (1, 2):
        assert f"off_the_shelf fold {f}/2: already done, skipped" in log
        assert f"off_the_shelf fold {f}/2: start" not in log
        assert log.count(f"fine_tune_1 fold {f}/2: start") == 1
    assert {f: (p.stat().st_mtime_ns, p.read_bytes()) for f, p in finished.items()} == before
    assert results.done_folds(run_path, "fine_tune_1") == [0, 1]
    pred = results.read_predictions(run_path, "fine_tune_1")
    assert len(pred) == len(pred["image_id"].unique()) == len(results.read_folds(run_path))
    leftovers = [p for p in run_path.rglob(".*") if p.name != "profile.json"]
    assert not leftovers, leftovers


def test_from_scratch_learns_the_synthetic_classes_well_above_chance(tmp_path):
    """The built-in synthetic set at 64 px: one fold of from_scratch, a little longer than the
    default profile trains (from random weights the first epochs stay near chance)."""
    from scipy.stats import binomtest

    from cxrlib.data.curate import curate

    curated = curate(tmp_path / "synthetic", image_size=64, synthetic_per_class=80, seed=2020,
                     log=lambda *args, **kwargs: None)
    profile = get_profile("default", epochs=10, patience=10)
    run_path = cv.run_profile(profile, configs=["from_scratch"], folds=[0],
                              results_root=tmp_path, curated=curated, log=lambda line: None)
    pred = results.read_predictions(run_path, "from_scratch")
    probabilities = pred[[f"p_{c}" for c in profile.classes]].to_numpy()
    predicted = np.asarray(profile.classes)[probabilities.argmax(1)]
    accuracy = float(np.mean(predicted == pred["label"].to_numpy()))
    chance = 1 / len(profile.classes)
    assert len(pred) > 150
    assert accuracy > 2 * chance, f"accuracy {accuracy:.3f}, chance {chance:.3f}"
    # And not by luck: the chance of doing this well by guessing.
    correct = int(round(accuracy * len(pred)))
    assert binomtest(correct, len(pred), chance, alternative="greater").pvalue < 1e-6


def execute_notebook(name: str, out_dir: Path, **parameters) -> dict:
    """Execute ``notebooks/<name>.py`` with papermill; the executed notebook as JSON."""
    import jupytext
    import papermill

    source = out_dir / f"{name}.ipynb"
    jupytext.write(jupytext.read(REPO / "notebooks" / f"{name}.py"), source)
    executed = out_dir / f"{name}-executed.ipynb"
    papermill.execute_notebook(str(source), str(executed), parameters=parameters,
                               cwd=str(REPO), kernel_name="python3", progress_bar=False)
    return json.loads(executed.read_text())


def outputs_of(notebook: dict) -> list[dict]:
    return [o for cell in notebook["cells"] if cell["cell_type"] == "code"
            for o in cell.get("outputs", [])]


@pytest.mark.parametrize("name, parameters, config", [
    ("02_strategy", {"folds": "0", "config": "off_the_shelf"}, "off_the_shelf"),
    ("02_strategy", {"folds": "1", "config": "fine_tune_3"}, "fine_tune_3"),
    ("02_strategy", {"folds": "0", "config": "from_scratch"}, "from_scratch"),
])
def test_strategy_notebook_runs_with_papermill(name, parameters, config, tmp_path, monkeypatch,
                                              standin_keras_home):
    monkeypatch.setenv("KERAS_HOME", str(standin_keras_home))
    monkeypatch.setenv("CXRLIB_CURATED", str(tmp_path / "curated"))
    monkeypatch.setenv("CXRLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("CXRLIB_RUNS", str(tmp_path / "runs"))
    notebook = execute_notebook(name, tmp_path, profile="tiny", **parameters)
    run_path = tmp_path / "results" / "tiny"
    assert results.done_folds(run_path, config) == [int(parameters["folds"])]
    outputs = outputs_of(notebook)
    assert not [o for o in outputs if o["output_type"] == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 2  # the confusion matrix and the training curves
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("accuracy" in "".join(o["data"]["text/html"]) for o in tables)
    text = "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert f"{config} fold {int(parameters['folds']) + 1}/2: done" in text
    assert "epoch 1/1" in text


def test_padded_prediction_and_validation_scores_match_keras():
    import keras

    from cxrlib.experiment import training
    from cxrlib.experiment.model import build_model

    keras.utils.set_random_seed(0)
    model = build_model("from_scratch", 32, 3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (11, 32, 32, 1)).astype("uint8")
    y = np.arange(11) % 3
    padded = training.padded_predict(model, x, batch_size=4)
    assert padded.shape == (11, 3)
    np.testing.assert_allclose(padded, model.predict(x, batch_size=11, verbose=0), atol=1e-5)
    logs: dict = {}
    scorer = training.validation_scorer(x, y, batch_size=4)
    scorer.set_model(model)
    scorer.on_epoch_end(0, logs)
    loss, accuracy = model.evaluate(x, y, batch_size=11, verbose=0)
    assert logs["val_loss"] == pytest.approx(loss, rel=1e-4)
    assert logs["val_accuracy"] == pytest.approx(accuracy)
