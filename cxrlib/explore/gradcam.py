"""Grad-CAM overlays for the prediction explorer, where a fold's weights were kept.

The contract with :mod:`cxrlib.analysis.explain`: ``explain.gradcam_for_images(run_path, config, fold,
images, classes)`` -> one heat map per image, values in [0, 1] (any size), of the model of that
fold (weights kept by the CV loop at :func:`cxrlib.experiment.cv.weights_path`) for the named class of each
image; ``images`` are the curated uint8 images, shape (N, S, S).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.analysis import explain
from cxrlib.experiment.cv import weights_path
from cxrlib.explore.markup import image_data_uri, load_pixels


def gradcam_status(run: str, config: str, folds, profile: str = "PROFILE") -> tuple[bool, str]:
    """Whether Grad-CAM overlays can be drawn for these folds, and if not, why."""
    saved = [f for f in folds if weights_path(run, config, int(f)).is_file()]
    if not saved:
        return False, (f"Grad-CAM overlays need a fold's kept weights (in "
                       f"{weights_path(run, config, 0).parent}); none are kept for {config}. "
                       f"Keep them with `python -m cxrlib run --profile {profile} --run {run} "
                       f"--configs {config} --folds K --save-weights-folds K` (a finished fold "
                       f"is not trained again: move its folder away first).")
    return True, f"Grad-CAM overlays available for fold(s) {', '.join(map(str, saved))}."


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A heat map (0-1, any size) over a grey image, as RGB uint8 (colour map 'jet')."""
    h, w_ = pixels.shape[:2]
    heat = np.asarray(Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8))
                      .resize((w_, h), Image.BILINEAR), dtype=float) / 255
    colour = matplotlib.colormaps["jet"](heat)[..., :3]
    grey = np.repeat(pixels[..., None].astype(float) / 255, 3, axis=2)
    return (255 * ((1 - alpha) * grey + alpha * colour)).clip(0, 255).astype(np.uint8)


class Overlays:
    """The overlays (data URIs) of one run's images, computed once per configuration and image:
    a fold's network is loaded and run only for images not seen before."""

    def __init__(self, run_path: Path, images_dir: Path | None):
        self.run_path, self.images_dir = Path(run_path), images_dir
        self.cache: dict[tuple[str, str], str] = {}

    def for_rows(self, config: str, rows: pd.DataFrame) -> dict[str, str]:
        """Overlays of ``rows`` (a scored prediction table) whose fold has kept weights, for
        the class the model answered: what drove its answer."""
        run, out = self.run_path.name, {}
        for fold, part in rows.groupby("fold"):
            if not weights_path(run, config, int(fold)).is_file():
                continue
            predicted = part.set_index("image_id")["predicted"]
            pixels = {i: load_pixels(self.images_dir, i) for i in part["image_id"]
                      if (config, i) not in self.cache}
            todo = [i for i, p in pixels.items() if p is not None]
            if todo:
                maps = explain.gradcam_for_images(self.run_path, config, int(fold),
                                                  np.stack([pixels[i] for i in todo]),
                                                  list(predicted[todo]))
                for i, heat in zip(todo, maps):
                    self.cache[(config, i)] = image_data_uri(overlay(pixels[i], heat))
            out.update({i: self.cache[(config, i)] for i in part["image_id"]
                        if (config, i) in self.cache})
        return out
