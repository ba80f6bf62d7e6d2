"""Predicting with an exported model: class probabilities for one's own radiographs.

``python -m cxrlib predict FILE... --model M [--gradcam DIR] [--csv OUT]``. Each file (PNG, JPEG,
any format Pillow reads, or DICOM) is decoded and letterboxed exactly as curation does
(:func:`cxrlib.data.imaging.decode`, :func:`cxrlib.data.imaging.letterbox`) at the model's image size;
the model (:mod:`cxrlib.models.modelfile`, one network or the mean of several folds) gives the
probability of each class. A file that cannot be read is named with the reason and skipped; the
others are still predicted.

``--gradcam DIR`` writes, per image, ``DIR/<file stem>.png``: the letterboxed radiograph (at
least :data:`OVERLAY_SIDE` px) with the Grad-CAM map (:mod:`cxrlib.analysis.explain`; for several folds
their mean) of the predicted class laid over it in colour.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.analysis.explain import upsample
from cxrlib.core.errors import UserError
from cxrlib.data import imaging
from cxrlib.models.modelfile import LoadedModel, load_model

#: Side of the Grad-CAM pictures (the model's image size when that is larger).
OVERLAY_SIDE = 256
#: How strongly the map colours the radiograph where it is 1.
OVERLAY_ALPHA = 0.5


def read_for_model(path: str | Path, size: int) -> np.ndarray:
    """One file as the network's input: decoded and letterboxed as curation does."""
    gray, _ = imaging.decode(path, draft_side=size)
    return imaging.letterbox(gray, size)


@dataclass
class Loaded:
    """Images read for a model, and the files that could not be read (path, why)."""

    paths: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def array(self, size: int) -> np.ndarray:
        return np.stack(self.images) if self.images else np.zeros((0, size, size), np.uint8)


def read_images(files, size: int) -> Loaded:
    """Every readable file of ``files`` letterboxed to ``size``; the others in ``problems``."""
    loaded = Loaded()
    for file in files:
        path = Path(file)
        try:
            if path.is_dir():
                raise imaging.ImageError(f"{path}: is a folder, not an image")
            image = read_for_model(path, size)
        except imaging.ImageError as e:
            loaded.problems.append((str(path), str(e)))
            continue
        loaded.paths.append(str(path))
        loaded.images.append(image)
    return loaded


def probability_table(paths: list[str], probabilities: np.ndarray,
                      classes: tuple[str, ...]) -> pd.DataFrame:
    """One row per image: path, predicted class, its probability, then ``p_<class>``."""
    probabilities = np.asarray(probabilities, dtype=float).reshape(len(paths), len(classes))
    best = probabilities.argmax(axis=1) if len(paths) else np.zeros(0, int)
    table = pd.DataFrame({"path": paths,
                          "predicted": [classes[k] for k in best],
                          "probability": probabilities[np.arange(len(paths)), best]})
    for k, name in enumerate(classes):
        table[f"p_{name}"] = probabilities[:, k]
    return table


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """RGB uint8: the grey ``image`` with ``heat`` (same shape, 0..1) in the jet colours."""
    from matplotlib import colormaps  # matplotlib's import takes a second: only for --gradcam

    grey = np.repeat(image[..., None].astype(np.float32) / 255.0, 3, axis=2)
    colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    weight = OVERLAY_ALPHA * np.clip(heat, 0, 1)[..., None]
    return np.round(255 * ((1 - weight) * grey + weight * colour)).astype(np.uint8)


def gradcam_file(folder: Path, source: str, taken: set[str]) -> Path:
    """``folder/<stem>.png``, numbered when two inputs share a stem."""
    stem, k = Path(source).stem, 1
    name = f"{stem}.png"
    while name in taken:
        k += 1
        name = f"{stem}-{k}.png"
    taken.add(name)
    return folder / name


def write_gradcams(model: LoadedModel, images: np.ndarray, paths: list[str],
                   predicted: np.ndarray, folder: str | Path) -> list[Path]:
    """One PNG per image: its Grad-CAM for the predicted class over the radiograph."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    side = max(OVERLAY_SIDE, model.image_size)
    maps = upsample(model.gradcam(images, predicted), side)
    written, taken = [], set()
    for image, heat, source in zip(images, maps, paths):
        big = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
        out = gradcam_file(folder, source, taken)
        Image.fromarray(overlay(big, heat), "RGB").save(out)
        written.append(out)
    return written


def predict_files(model: LoadedModel, files, gradcam_dir=None,
                  ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Probabilities of every readable file (a table, :func:`probability_table`) and the files
    that could not be read (path, why). With ``gradcam_dir`` the maps are written there too
    (the table's ``gradcam`` column names each picture)."""
    loaded = read_images(files, model.image_size)
    images = loaded.array(model.image_size)
    probabilities = model.predict(images)
    table = probability_table(loaded.paths, probabilities, model.classes)
    if gradcam_dir is not None and len(images):
        written = write_gradcams(model, images, loaded.paths, probabilities.argmax(axis=1),
                                 gradcam_dir)
        table.insert(3, "gradcam", [str(p) for p in written])
    return table, loaded.problems


def predict_command(model_path, files, gradcam_dir=None, csv=None) -> int:
    """``python -m cxrlib predict``: prints the table, names each unreadable file on stderr and
    returns 1 if there was one (0 otherwise); none readable is a :class:`UserError`."""
    files = [str(f) for f in files]
    if not files:
        raise UserError("no image files given", "name one or more PNG, JPEG or DICOM files")
    model = load_model(model_path)
    table, problems = predict_files(model, files, gradcam_dir=gradcam_dir)
    for _, why in problems:
        print(f"skipped: {why}", file=sys.stderr)
    if table.empty:
        raise UserError(f"none of the {len(files)} file(s) could be read",
                        "give PNG, JPEG or DICOM radiographs")
    print(format_table(table, model.classes))
    if csv:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv, index=False)
    return 1 if problems else 0


def format_table(table: pd.DataFrame, classes: tuple[str, ...]) -> str:
    """The table as the command prints it: file, predicted class, each class's probability."""
    shown = table[["path", "predicted", *(f"p_{c}" for c in classes)]].copy()
    shown.columns = ["file", "predicted", *classes]
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")
