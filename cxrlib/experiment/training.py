"""One network trained on one fold with Keras: the part of the cross-validation that needs a
deep-learning framework (:mod:`cxrlib.experiment.cv` holds the folds, the loop and the stored results, and
imports this module only when a fold trains, after setting TensorFlow's and JAX's environment).

Training follows the paper's section 2.4 as :mod:`cxrlib.experiment.cv` describes it: the profile's
optimiser and learning rate per strategy, early stopping on the validation loss with the best
epoch's weights restored. Every batch has one shape: training batches are full
(:func:`cxrlib.experiment.cv.full_batches`) and validation and test predictions pad their last batch
(:func:`padded_predict`), so each fold compiles one training and one prediction step.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import keras
import numpy as np
import pandas as pd

from cxrlib.core import env
from cxrlib.core.profiles import Profile
from cxrlib.experiment.model import build_model, model_arguments

Log = Callable[[str], None]
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


def padded_predict(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities for ``x``, predicted in batches of one shape.

    The last batch is padded with blank images (their outputs dropped): a batch of another size
    would be another shape, compiled again, in every fold. Validation and test predictions
    share the one compiled step, and with JAX's persistent cache so do the folds.
    """
    missing = -len(x) % batch_size
    if missing:
        x = np.concatenate([x, np.zeros((missing, *x.shape[1:]), x.dtype)])
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(probabilities, dtype="float32")[:len(x) - missing]


def validation_scorer(x: np.ndarray, y: np.ndarray, batch_size: int):
    """A callback adding ``val_loss`` (cross-entropy) and ``val_accuracy`` to each epoch's logs,
    from :func:`padded_predict` (early stopping and the history read them from there)."""

    class ValidationScores(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            probabilities = padded_predict(self.model, x, batch_size)
            # Keras' cross-entropy clips probabilities at 1e-7 the same way.
            chosen = np.clip(probabilities[np.arange(len(y)), y], 1e-7, 1.0)
            logs["val_loss"] = float(-np.mean(np.log(chosen)))
            logs["val_accuracy"] = float(np.mean(probabilities.argmax(1) == y))

    return ValidationScores()


def dtype_policy(profile: Profile) -> str:
    """bf16 mixed precision on an accelerator when the profile asks; float32 otherwise."""
    return "mixed_bfloat16" if profile.mixed_precision and env.has_accelerator() else "float32"


def make_optimizer(profile: Profile, config: str):
    return keras.optimizers.get({"class_name": profile.optimizer,
                                 "config": {"learning_rate": profile.learning_rate(config)}})


def epoch_logger(config: str, fold: int, n_folds: int, epochs: int, log: Log):
    """A callback printing one compact line per epoch and recording each epoch's seconds."""

    class EpochLog(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            logs = logs or {}
            log(f"  {config} fold {fold + 1}/{n_folds} epoch {epoch + 1}/{epochs}: "
                f"loss {logs.get('loss', float('nan')):.3f} "
                f"acc {logs.get('accuracy', float('nan')):.3f} "
                f"val_loss {logs.get('val_loss', float('nan')):.3f} "
                f"val_acc {logs.get('val_accuracy', float('nan')):.3f} "
                f"({self.seconds[-1]:.1f}s)")

    return EpochLog()


def new_model(profile: Profile, config: str, fold: int, n_classes: int, weights):
    """A freshly built and compiled network for one fold, and the dtype policy it runs with."""
    # Every fold builds a new model, so TensorFlow traces new functions: expected here, and its
    # warning about "retracing" would flood the log.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # A fresh graph per fold: layer names repeat, so compiled programs can be cached and reused.
    keras.utils.clear_session(free_memory=True)
    keras.utils.set_random_seed(profile.seed + fold)
    policy = dtype_policy(profile)
    keras.config.set_dtype_policy(policy)
    model = build_model(n_classes=n_classes, **model_arguments(profile, config, fold, weights))
    model.compile(optimizer=make_optimizer(profile, config),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, policy


def train(model, profile: Profile, config: str, fold: int,
          fit: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
          log: Log) -> tuple[pd.DataFrame, float]:
    """Fit on ``fit`` (images, labels) with early stopping on ``validation``; the history (one
    row per epoch, :data:`HISTORY_COLUMNS`) and the training seconds."""
    epoch_log = epoch_logger(config, fold, profile.n_folds, profile.epochs, log)
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=profile.patience,
                                             restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(*fit, epochs=profile.epochs,
                        batch_size=profile.batch_size, shuffle=True, verbose=0,
                        callbacks=[validation_scorer(*validation, profile.batch_size),
                                   epoch_log, stopping])
    train_seconds = time.perf_counter() - start
    table = pd.DataFrame(history.history)
    table.insert(0, "epoch", np.arange(1, len(table) + 1))
    table["seconds"] = epoch_log.seconds
    return table[list(HISTORY_COLUMNS)], train_seconds


def test_predictions(model, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
    """The test fold's class probabilities and the seconds they took; the dtype policy goes
    back to float32 afterwards (the next model, or anything else, starts from the default)."""
    start = time.perf_counter()
    probabilities = padded_predict(model, x, batch_size)
    seconds = time.perf_counter() - start
    keras.config.set_dtype_policy("float32")
    return probabilities, seconds
