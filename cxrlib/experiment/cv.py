"""Cross-validation: every configuration of a profile, one (configuration, fold) at a time.

The paper judges each configuration by 10-fold cross-validation (Apostolopoulos et al. 2020,
section 2.4, "Experiment Setup"). Here:

1. **Folds** are stratified by class, over images (the paper) or over patients (stratified and
   grouped by ``patient_id``, so no patient is on both sides), deterministic from the profile's
   seed and stored beside the results (``folds.csv``; fold = the test fold).
2. **Validation data** for early stopping come out of the training folds only (a stratified,
   likewise grouped ``val_fraction`` of them): no choice ever looks at the test fold.
3. **Training**: Adam (the profile's optimiser and learning rate per strategy), early stopping on
   the validation loss with the best epoch's weights restored, images in memory as uint8 and
   augmented by layers of the model (see :mod:`cxrlib.experiment.model`; the Keras side of a fold is
   :mod:`cxrlib.experiment.training`). Every batch has one shape (training batches are full,
   :func:`full_batches`; validation and test predictions pad their last batch,
   :func:`cxrlib.experiment.training.padded_predict`), so each fold compiles one training and one
   prediction step, and with JAX's persistent compilation cache later folds reuse the first
   one's.
4. **Results**: as soon as a fold ends, its out-of-fold predictions, history and a record of
   settings, timings and environment are written atomically (:mod:`cxrlib.experiment.results`). A rerun
   skips finished folds, so a killed run repeats none, and disjoint folds run on different
   machines combine by copying their fold folders into one run.

Command line: ``python -m cxrlib run --profile default [--configs ...] [--folds 0,1]``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cxrlib.core import env, paths
from cxrlib.core.profiles import Profile, get_profile, parse_config
from cxrlib.data import dataset
from cxrlib.data.curate import ensure_curated
from cxrlib.data.regions import apply_input_mask
from cxrlib.experiment import results
from cxrlib.experiment.runs import run_name, target_classes

Log = Callable[[str], None]
# TensorFlow's C++ start-up notices would fill every log and notebook (errors still show).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX keeps compiled steps on disk: every fold builds the same model with the same layer names
# (see run_fold), so the folds after the first skip compilation (minutes over a GPU run).
# Read by JAX only, when it is imported (after this module).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(paths.runs_dir() / "jax-cache"))


def log_line(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# Folds
# ---------------------------------------------------------------------------------------------

def assign_folds(frame: pd.DataFrame, n_splits: int, grouping: str, seed: int) -> np.ndarray:
    """Fold index (0..n_splits-1) of every row: stratified by label, grouped if asked."""
    # scikit-learn's model_selection takes about a second to import; the explorers, the audit
    # and explain import this module without making folds.
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = frame["label"].to_numpy()
    if grouping == "patient":
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
        splits = splitter.split(frame, labels, groups=frame["patient_id"].to_numpy())
    else:
        splits = StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(frame, labels)
    fold = np.full(len(frame), -1)
    for k, (_, test_index) in enumerate(splits):
        fold[test_index] = k
    return fold


def make_folds(manifest: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """The stored fold assignment: image_id, label, patient_id, source, fold."""
    counts = manifest["label"].value_counts()
    too_few = counts[counts < profile.n_folds]
    if len(too_few):
        raise ValueError(f"{profile.n_folds}-fold cross-validation needs at least "
                         f"{profile.n_folds} images per class; too few: {too_few.to_dict()}. "
                         f"Use fewer folds (--set n_folds=...) or leave the class out.")
    folds = manifest[["image_id", "label", "patient_id", "source"]].copy()
    folds["fold"] = assign_folds(manifest, profile.n_folds, profile.grouping, profile.seed)
    return folds


def validation_mask(train: pd.DataFrame, profile: Profile, fold: int) -> np.ndarray:
    """Which training rows are held out for early stopping (about ``val_fraction`` of them)."""
    n_splits = max(2, round(1 / profile.val_fraction))
    # StratifiedKFold cannot make more splits than the largest class has members (tiny data).
    n_splits = min(n_splits, int(train["label"].value_counts().max()))
    if profile.grouping == "patient":
        n_splits = min(n_splits, train["patient_id"].nunique())
    return assign_folds(train, n_splits, profile.grouping, profile.seed + 1000 + fold) == 0


def full_batches(rows: np.ndarray, batch_size: int, seed: int) -> np.ndarray:
    """``rows`` topped up with a random few of themselves to a multiple of ``batch_size``.

    A last, smaller batch has another shape, and a new shape means another compilation of the
    training step (tens of seconds per fold for MobileNetV2). Repeating a few training images
    keeps every batch full without moving any image between training and validation.
    """
    missing = -len(rows) % batch_size
    extra = np.random.default_rng(seed).choice(rows, missing, replace=missing > len(rows))
    return np.concatenate([rows, extra])


# ---------------------------------------------------------------------------------------------
# One fold
# ---------------------------------------------------------------------------------------------

def predictions_table(rows: pd.DataFrame, fold: int, probabilities: np.ndarray,
                      classes: tuple[str, ...]) -> pd.DataFrame:
    table = rows[["image_id"]].copy()
    table["fold"] = fold
    for column in ("label", "patient_id", "source"):
        table[column] = rows[column].to_numpy()
    for k, name in enumerate(classes):
        table[f"p_{name}"] = probabilities[:, k].astype(float)
    return table.reset_index(drop=True)


def weights_path(run: str, config: str, fold: int) -> Path:
    """Where a fold's trained weights go when asked for: run records, never the results store."""
    return paths.runs_dir() / run / "weights" / f"{config}-fold-{fold:02d}.npz"


@dataclasses.dataclass(frozen=True)
class FoldRows:
    """Which rows of the stored assignment a fold trains, validates and tests on."""

    test: np.ndarray         # bool mask: the test fold
    validation: np.ndarray   # row numbers held out of the training folds for early stopping
    fit: np.ndarray          # row numbers the network trains on
    fit_batches: np.ndarray  # ``fit`` topped up to full batches (:func:`full_batches`)


def fold_rows(folds: pd.DataFrame, profile: Profile, fold: int) -> FoldRows:
    test = (folds["fold"] == fold).to_numpy()
    train_rows = np.flatnonzero(~test)
    val_in_train = validation_mask(folds.iloc[train_rows].reset_index(drop=True), profile, fold)
    fit = train_rows[~val_in_train]
    return FoldRows(test=test, validation=train_rows[val_in_train], fit=fit,
                    fit_batches=full_batches(fit, profile.batch_size, profile.seed + fold))


def fold_info(profile: Profile, config: str, fold: int, rows: FoldRows, history: pd.DataFrame,
              test_accuracy: float, seconds: dict, weights, policy: str,
              saved: Path | None) -> dict:
    """The record of a finished fold (``fold.json``): settings, sizes, timings, environment."""
    strategy, trainable_blocks = parse_config(config)
    epochs_run, batches = len(history), len(rows.fit_batches)
    # Epochs after the first show the steady speed; the first one also traces and compiles the
    # training step, so what it took beyond a steady epoch is the compilation's cost (near 0 when
    # JAX's persistent cache already held the step).
    epoch_seconds = list(history["seconds"])
    steady = epoch_seconds[1:] or epoch_seconds
    compile_seconds = max(0.0, epoch_seconds[0] - float(np.median(steady))) \
        if len(epoch_seconds) > 1 else None  # one epoch: nothing to tell it from
    return {
        "config": config, "strategy": strategy, "trainable_blocks": trainable_blocks,
        "fold": fold, "n_folds": profile.n_folds, "profile": profile.name,
        "n_train": len(rows.fit), "n_val": len(rows.validation), "n_test": int(rows.test.sum()),
        "n_train_repeated": batches - len(rows.fit),
        "epochs_run": epochs_run, "best_epoch": int(history["val_loss"].idxmin()) + 1,
        "test_accuracy": test_accuracy,
        "train_seconds": seconds["train"], "predict_seconds": seconds["predict"],
        "first_epoch_seconds": epoch_seconds[0], "compile_seconds": compile_seconds,
        "train_images_per_second": batches * epochs_run / seconds["train"],
        "steady_epoch_images_per_second": batches / float(np.median(steady)),
        "learning_rate": profile.learning_rate(config), "optimizer": profile.optimizer,
        "batch_size": profile.batch_size, "image_size": profile.image_size,
        "batchnorm_momentum": profile.batchnorm_momentum,
        "weights": None if strategy == "from_scratch" else str(weights),
        "dtype_policy": policy, "environment": env.describe(),
        "weights_saved": None if saved is None else str(saved.relative_to(paths.runs_dir())),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_fold(profile: Profile, config: str, fold: int, run_path: Path, folds: pd.DataFrame,
             images: np.ndarray, weights: str | Path = "imagenet", log: Log = log_line,
             save_weights: bool = False) -> Path:
    """Train ``config`` on every fold but ``fold``, predict ``fold``, write the results.

    ``folds`` is the stored assignment (row i describes ``images[i]``, shape (N, S, S) uint8).
    With ``save_weights`` the trained model's weights are kept (:func:`weights_path`) for
    Grad-CAM. Returns the finished fold's folder.
    """
    # Keras and TensorFlow take seconds to import: only a fold that trains pays for them.
    from cxrlib.experiment import training
    from cxrlib.experiment.model import save_weights_compact

    classes = target_classes(profile, folds)
    label_index = {c: k for k, c in enumerate(classes)}
    y = folds[profile.target].map(label_index).to_numpy(dtype="int32")
    x = images[..., None]  # (N, S, S, 1), still uint8: the model casts on the device
    rows = fold_rows(folds, profile, fold)

    model, policy = training.new_model(profile, config, fold, len(classes), weights)
    log(f"{config} fold {fold + 1}/{profile.n_folds}: start (train {len(rows.fit)}, "
        f"validation {len(rows.validation)}, test {int(rows.test.sum())}; {policy})")
    history, train_seconds = training.train(
        model, profile, config, fold, (x[rows.fit_batches], y[rows.fit_batches]),
        (x[rows.validation], y[rows.validation]), log)
    probabilities, predict_seconds = training.test_predictions(model, x[rows.test],
                                                               profile.batch_size)
    seconds = {"train": train_seconds, "predict": predict_seconds}

    # The trained network, kept when asked for (Grad-CAM, or a model to use later).
    saved = save_weights_compact(model, weights_path(run_path.name, config, fold)) \
        if save_weights else None

    # The prediction table's "label" is what the network predicts (the source, for a probe).
    predictions = predictions_table(folds.iloc[np.flatnonzero(rows.test)].assign(
                                        label=folds[profile.target].to_numpy()[rows.test]),
                                    fold, probabilities, classes)
    accuracy = float((probabilities.argmax(1) == y[rows.test]).mean())
    info = fold_info(profile, config, fold, rows, history, accuracy, seconds, weights, policy,
                     saved)
    path = results.write_fold(run_path, config, fold, predictions, history, info)
    log(f"{config} fold {fold + 1}/{profile.n_folds}: done in {train_seconds:.0f}s, "
        f"{info['epochs_run']} epochs (best {info['best_epoch']}), test accuracy {accuracy:.3f}")
    return path


# ---------------------------------------------------------------------------------------------
# A whole profile
# ---------------------------------------------------------------------------------------------

def load_dataset(profile: Profile, data_dir=None, curated=None) -> tuple[pd.DataFrame, np.ndarray]:
    """The curated images of the profile's classes (curating first if needed)."""
    if curated is None:
        curated = ensure_curated(profile, data_dir=data_dir)
    manifest, images = dataset.load_curated(curated, classes=manifest_labels(profile))
    manifest = as_normal(manifest, profile.normal_label)
    if images.shape[1:] != (profile.image_size, profile.image_size):
        raise ValueError(f"{curated} holds {images.shape[1]} px images but profile "
                         f"{profile.name!r} wants {profile.image_size} px: curate it again "
                         f"for this profile or point to the right folder")
    if profile.input_mask != "none":
        images = apply_input_mask(images, profile.input_mask)
    return manifest, images


def manifest_labels(profile: Profile) -> tuple[str, ...]:
    """The manifest labels a profile trains on: its classes, Normal taken from ``normal_label``."""
    return tuple(profile.normal_label if c == "Normal" else c for c in profile.classes)


def as_normal(manifest: pd.DataFrame, normal_label: str) -> pd.DataFrame:
    """``manifest`` with the rows of ``normal_label`` labelled Normal (the age and source swap;
    their ``finding`` column still says what they are)."""
    if normal_label == "Normal":
        return manifest
    return manifest.assign(label=manifest["label"].replace({normal_label: "Normal"}))


def checked_selection(profile: Profile, configs=None, folds=None) -> tuple[list[str], list[int]]:
    """The configurations (default: the profile's) and folds (default: all) asked for, each
    checked: an unknown configuration or a fold out of range is refused before any training."""
    configs = list(profile.configs if configs is None else configs)
    for config in configs:
        parse_config(config)
    folds = list(range(profile.n_folds) if folds is None else folds)
    bad = [f for f in folds if not 0 <= f < profile.n_folds]
    if bad:
        raise ValueError(f"fold(s) {bad} out of range: profile {profile.name!r} has "
                         f"{profile.n_folds} folds, numbered 0..{profile.n_folds - 1}")
    return configs, folds


def run_profile(profile: Profile | str, configs=None, folds=None, run: str | None = None,
                data_dir=None, results_root=None, curated=None, weights="imagenet",
                log: Log = log_line, save_weights_folds=None,
                retrain_corrupt: bool = False) -> Path:
    """Cross-validate ``configs`` (default: the profile's) on ``folds`` (default: all), here,
    one fold after another.

    Finished folds are skipped. ``curated`` points to an already curated dataset (otherwise
    the profile's is made or found by :func:`cxrlib.data.curate.ensure_curated`). Every fold's
    trained weights are kept (:func:`weights_path`: for export and explanation), or only those
    of the folds in ``save_weights_folds`` (``()``: none). Returns the run's results folder.
    To train on a Dask cluster instead, :func:`cxrlib.experiment.cluster.run_profile` takes the same
    arguments and an ``executor``.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    configs, folds = checked_selection(profile, configs, folds)
    run_path = results.run_dir(run_name(run, profile), results_root)
    results.ensure_profile(run_path, profile)
    # A stored fold that cannot be read stops the run (or, asked to, trains again).
    results.settle_corrupt(run_path, [(c, f) for c in configs for f in folds],
                           retrain=retrain_corrupt, log=log)

    todo = [(c, f) for c in configs for f in folds if not results.is_done(run_path, c, f)]
    for config, fold in [(c, f) for c in configs for f in folds if (c, f) not in todo]:
        log(f"{config} fold {fold + 1}/{profile.n_folds}: already done, skipped")
    if not todo:
        return run_path
    manifest, images = load_dataset(profile, data_dir, curated)
    assignment = results.write_folds(run_path, make_folds(manifest, profile))

    start = time.perf_counter()
    for config, fold in todo:
        # Another worker on the same run may have finished it meanwhile.
        if results.is_done(run_path, config, fold):
            log(f"{config} fold {fold + 1}/{profile.n_folds}: already done, skipped")
            continue
        run_fold(profile, config, fold, run_path, assignment, images, weights=weights, log=log,
                 save_weights=save_weights_folds is None or fold in save_weights_folds)
    log(f"{len(todo)} fold(s) of {run_path.name} done in {time.perf_counter() - start:.0f}s")
    return run_path
