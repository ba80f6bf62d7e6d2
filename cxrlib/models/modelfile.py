"""Exported models: one self-describing file holding a run's trained networks for one configuration.

``python -m cxrlib export --run R --config C [--folds 0,1]`` writes ``<name>.cxrmodel``, a zip
archive (uncompressed members) of

- ``description.json``: what the file is (:data:`FORMAT`, :data:`VERSION`), the class names in
  the networks' output order, the image size, the preprocessing the networks expect
  (:data:`PREPROCESSING`: the curation's decoding and letterboxing), the architecture, the run,
  its profile and git commit, the folds, how they are combined (:data:`ENSEMBLE`), the run's
  and the SHA-256 of the weights;
- ``internal_predictions.csv``: the run's out-of-fold predictions of those folds (no pixels),
  from which ``evaluate`` computes the internal, cross-validated figures beside external ones;
- ``fold-<kk>/<i>.npy``: each fold's weights as the cross-validation kept them
  (:func:`cxrlib.experiment.model.save_weights_compact`: float16, about 11 MB a fold).

Several folds are an ensemble: each fold's network predicts, and their probabilities are
averaged. A fold's network never saw its own test fold, so the ensemble of all folds has seen
every image of the run; only images from elsewhere measure it.

:func:`load_model` rebuilds the networks (:func:`cxrlib.experiment.model.build_model`) and refuses, with a
:class:`~cxrlib.core.errors.UserError`, a file that is not one of these, is damaged (zip CRC, weights
checksum), whose weights do not fit its description (e.g. another number of classes), or whose
description does not match what the caller expects (classes, image size).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.analysis.explain import gradcam
from cxrlib.core import metrics, paths
from cxrlib.core.errors import UserError
from cxrlib.core.profiles import parse_config
from cxrlib.data import regions
from cxrlib.experiment import results, runs
from cxrlib.experiment.cv import weights_path

FORMAT = "cxrlib-model"
VERSION = 1
SUFFIX = ".cxrmodel"
DESCRIPTION = "description.json"
#: The run's out-of-fold predictions of the exported folds: its internal, cross-validated test.
INTERNAL = "internal_predictions.csv"
#: How images become network input; :mod:`cxrlib.models.predict` implements exactly this.
PREPROCESSING = {
    "decode": ("8-bit grayscale as curation decodes (cxrlib.data.imaging.decode): EXIF orientation "
               "applied; 16-bit and float images min-max scaled; transparency flattened on "
               "black; DICOM: modality LUT, then VOI LUT or the first window, else min-max "
               "scaled; MONOCHROME1 inverted"),
    "geometry": "letterbox",
    "letterbox": ("aspect ratio kept: long side resized (Lanczos) to image_size, centred on a "
                  "black image_size x image_size square"),
    "input": "uint8 0-255, shape (image_size, image_size, 1); the network scales to [-1, 1]",
}
ENSEMBLE = "mean of the folds' class probabilities"


# ---------------------------------------------------------------------------------------------
# Export


def default_path(run: str, config: str, folds: list[int], all_folds: bool) -> Path:
    """``runs/<run>/models/<config>[-folds-0-1].cxrmodel`` (run records: never committed)."""
    suffix = "" if all_folds else "-folds-" + "-".join(str(f) for f in folds)
    return paths.runs_dir() / run / "models" / f"{config}{suffix}{SUFFIX}"


def kept_folds(run_path: Path, config: str, folds: list[int] | None) -> list[int]:
    """The folds to export: finished ones whose weights were kept (all such, or ``folds``)."""
    done = results.done_folds(run_path, config)
    if not done:
        raise UserError(f"run {run_path.name}: configuration {config!r} has no finished fold",
                        f"train it: `python -m cxrlib run --run {run_path.name} --configs "
                        f"{config}`")
    kept = [f for f in done if weights_path(run_path.name, config, f).is_file()]
    chosen = kept if folds is None else list(folds)
    missing = [f for f in chosen if f not in kept]
    if missing or not chosen:
        raise UserError(f"run {run_path.name}, {config}: no kept weights for fold(s) "
                        f"{missing or done} (in {weights_path(run_path.name, config, 0).parent})",
                        f"export the folds that have them ({kept or 'none'}), or train the run "
                        "again without --no-keep-weights into a new --run")
    return sorted(chosen)


def describe(run_path: Path, config: str, folds: list[int], internal) -> dict:
    """The description of an export of ``folds`` of ``config`` (see the module docstring);
    ``internal``: the run's out-of-fold predictions of those folds."""
    profile = results.read_profile(run_path)
    classes = [runs.fold_classes(run_path, config, f) for f in folds]
    if any(c != classes[0] for c in classes):
        raise UserError(f"run {run_path.name}, {config}: the folds answer with different "
                        f"classes ({sorted(set(classes))})", "export the folds one at a time")
    strategy, blocks = parse_config(config)
    commits = runs.run_environment(run_path)["commits"]
    return {
        "format": FORMAT, "version": VERSION, "classes": list(classes[0]),
        "image_size": profile.image_size,
        "preprocessing": {**PREPROCESSING, "input_mask": profile.input_mask},
        "architecture": {"builder": "cxrlib.experiment.model.build_model", "strategy": strategy,
                         "trainable_blocks": blocks, "n_classes": len(classes[0])},
        "run": run_path.name, "config": config, "folds": folds,
        "n_folds_of_run": profile.n_folds,
        "ensemble": ENSEMBLE if len(folds) > 1 else "one fold's network",
        "profile": profile.to_dict(), "git_commit": commits[0] if len(commits) == 1 else commits,
        "internal": {"predictions": INTERNAL, "n_images": len(internal),
                     "class_counts": metrics.class_counts(internal)},
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def fold_arrays(run: str, config: str, fold: int) -> list[np.ndarray]:
    with np.load(weights_path(run, config, fold)) as stored:
        return [stored[f"arr_{i}"] for i in range(len(stored.files))]


def weights_digest(arrays_by_fold: list[list[np.ndarray]]) -> str:
    h = hashlib.sha256()
    for arrays in arrays_by_fold:
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def export_model(run: str | Path, config: str, folds: list[int] | None = None,
                 out: str | Path | None = None, results_root=None) -> Path:
    """Write the model file of ``config``'s ``folds`` (default: every fold with kept weights)."""
    run_path = runs.resolve(run, results_root)
    if not (run_path / "profile.json").is_file():
        raise UserError(f"run {run}: not found ({run_path} holds no profile.json)",
                        "name a run under results/ (python -m cxrlib run ... makes one)")
    chosen = kept_folds(run_path, config, folds)
    internal = results.read_predictions(run_path, config, folds=chosen)
    description = describe(run_path, config, chosen, internal)
    arrays = [fold_arrays(run_path.name, config, f) for f in chosen]
    description["weights"] = {"arrays_per_fold": len(arrays[0]), "dtype": "float16",
                              "sha256": weights_digest(arrays)}
    out = Path(out) if out else default_path(run_path.name, config, chosen,
                                             len(chosen) == description["n_folds_of_run"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(DESCRIPTION, json.dumps(description, indent=1, default=str))
        archive.writestr(INTERNAL, internal.to_csv(index=False))
        for fold, fold_weights in zip(chosen, arrays):
            for i, a in enumerate(fold_weights):
                buffer = io.BytesIO()
                np.save(buffer, a, allow_pickle=False)
                archive.writestr(f"fold-{fold:02d}/{i:04d}.npy", buffer.getvalue())
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------------------
# Loading


def corrupt(path: Path, why: str) -> UserError:
    return UserError(f"{path}: not a usable cxrlib model file ({why})",
                     "export it again with `python -m cxrlib export --run R --config C`")


def read_description(path: str | Path) -> dict:
    """The description of a model file, checked for format and version (no TensorFlow needed)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--model {path}: no such file",
                        "give a file made by `python -m cxrlib export`")
    try:
        with zipfile.ZipFile(path) as archive:
            description = json.loads(archive.read(DESCRIPTION))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise corrupt(path, str(e) or type(e).__name__) from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise corrupt(path, f"its description is not of format {FORMAT!r}")
    if description.get("version") != VERSION:
        raise corrupt(path, f"format version {description.get('version')!r}; this cxrlib reads "
                            f"version {VERSION}")
    if description.get("preprocessing", {}).get("geometry") != "letterbox":
        raise corrupt(path, "unknown preprocessing (this cxrlib letterboxes)")
    missing = [k for k in ("classes", "image_size", "architecture", "folds", "weights")
               if k not in description]
    if missing:
        raise corrupt(path, f"its description lacks {missing}")
    return description


def check_expected(path: Path, description: dict, expect: dict | None) -> None:
    """Refuse a model whose classes or image size are not those the caller needs."""
    for key, wanted in (expect or {}).items():
        have = description.get(key)
        if key == "classes":
            have, wanted = list(have), list(wanted)
        if have != wanted:
            raise UserError(f"{path}: the model's {key.replace('_', ' ')} is {have}, not "
                            f"{wanted} as needed here",
                            "use a model exported from a run with the same "
                            f"{key.replace('_', ' ')}")


def read_weights(path: Path, description: dict) -> list[list[np.ndarray]]:
    """Each fold's arrays, after checking their count and checksum against the description."""
    n = int(description["weights"]["arrays_per_fold"])
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = [[np.load(io.BytesIO(archive.read(f"fold-{fold:02d}/{i:04d}.npy")),
                               allow_pickle=False) for i in range(n)]
                      for fold in description["folds"]]
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise corrupt(path, f"weights: {e}") from None
    if weights_digest(arrays) != description["weights"]["sha256"]:
        raise corrupt(path, "the weights' checksum does not match its description")
    return arrays


def build_network(description: dict, arrays: list[np.ndarray], path: Path):
    """One fold's network, rebuilt from the description and loaded with ``arrays``."""
    from cxrlib.experiment.model import (
        build_model,  # imports Keras and TensorFlow (seconds): only when loading
    )

    arch = description["architecture"]
    n_classes = len(description["classes"])
    if arch.get("n_classes") != n_classes:
        raise corrupt(path, f"the description names {n_classes} classes but its architecture "
                            f"has {arch.get('n_classes')} outputs")
    model = build_model(arch["strategy"], int(description["image_size"]), n_classes,
                        int(arch["trainable_blocks"]), weights=None)
    expected = [w.shape for w in model.get_weights()]
    got = [a.shape for a in arrays]
    if got != expected:
        where = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), None)
        detail = (f"{len(got)} arrays for {len(expected)}" if where is None else
                  f"array {where} is {got[where]}, the network needs {expected[where]}")
        raise corrupt(path, f"its weights do not fit a {arch['strategy']} network with "
                            f"{n_classes} classes ({detail})")
    model.set_weights([a.astype("float32") if a.dtype.kind == "f" else a for a in arrays])
    return model


@dataclass
class LoadedModel:
    """An exported model, ready to predict: its description and one network per fold."""

    path: Path
    description: dict
    networks: list

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.description["classes"])

    @property
    def image_size(self) -> int:
        return int(self.description["image_size"])

    def network_input(self, images: np.ndarray) -> np.ndarray:
        """Letterboxed uint8 images (N, S, S) as the networks were trained on them: masked like
        the run's (an audit retraining that saw only the borders or the lungs), else as they are."""
        mask = self.description["preprocessing"].get("input_mask", "none")
        return regions.apply_input_mask(np.asarray(images, dtype=np.uint8), mask)

    def predict(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, classes) of uint8 images (N, S, S): the folds' mean."""
        x = self.network_input(images)[..., None]
        if not len(x):
            return np.zeros((0, len(self.classes)), np.float32)
        # predict_on_batch: after its first two batch sizes TensorFlow traces one function for
        # any size, so a later call costs milliseconds (predict() traces per new size: ~1 s).
        return np.mean([np.concatenate([np.asarray(net.predict_on_batch(x[i:i + batch_size]))
                                        for i in range(0, len(x), batch_size)])
                        for net in self.networks], axis=0).astype(np.float32)

    def internal_predictions(self) -> pd.DataFrame:
        """The run's out-of-fold predictions of the exported folds (stored in the file)."""
        try:
            with zipfile.ZipFile(self.path) as archive:
                text = archive.read(INTERNAL).decode()
        except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError) as e:
            raise corrupt(self.path, f"internal predictions: {e}") from None
        return pd.read_csv(io.StringIO(text), dtype={"image_id": str, "patient_id": str},
                           keep_default_na=False)

    def gradcam(self, images: np.ndarray, class_indices) -> np.ndarray:
        """Grad-CAM maps (N, h, w) in [0, 1]: the folds' maps averaged, then scaled to max 1."""
        x = self.network_input(images)
        maps = np.mean([gradcam(net, x, class_indices) for net in self.networks], axis=0)
        peak = maps.max(axis=(1, 2), keepdims=True)
        return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def load_model(path: str | Path, expect: dict | None = None) -> LoadedModel:
    """Read, check and rebuild a model file (see the module docstring for what is refused)."""
    import keras  # TensorFlow's import takes seconds: `export` and reading a description skip it

    path = Path(path)
    description = read_description(path)
    check_expected(path, description, expect)
    arrays = read_weights(path, description)
    keras.config.set_dtype_policy("float32")
    networks = [build_network(description, fold_arrays_, path) for fold_arrays_ in arrays]
    return LoadedModel(path, description, networks)
