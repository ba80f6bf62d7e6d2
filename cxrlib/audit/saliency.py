"""Experiment 5: where the network looks.

Grad-CAM maps (:mod:`cxrlib.analysis.explain`) of the class a trained fold's network answered, for
test images of that fold, and the share of each map inside the lung fields, in the border band
of the frame and on the padding (:mod:`cxrlib.data.regions`); then the cascading randomisation
check, which tells maps that depend on the model from maps that only show the image.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.analysis import explain
from cxrlib.audit.scoring import SEED, pick_per_class, predictions
from cxrlib.core import metrics
from cxrlib.experiment import cv, results


def run_images(run_path: str | Path, data_dir=None) -> tuple[pd.DataFrame, np.ndarray]:
    """The images a stored run trained on, as it saw them (its profile's classes and mask)."""
    return cv.load_dataset(results.read_profile(Path(run_path)), data_dir=data_dir)


def _chosen_images(run_path, config: str, fold: int, per_class: int, data_dir, seed: int):
    """Up to ``per_class`` test images of each class of the fold, with what the network answered
    and their pixels."""
    manifest, images = run_images(run_path, data_dir)
    pred = predictions(run_path, config, [fold])
    classes = metrics.classes_of(pred)
    pred = pred.assign(predicted=metrics.predicted_labels(pred, classes))
    chosen = pick_per_class(pred, per_class, seed)
    position = pd.Series(np.arange(len(manifest)), index=manifest["image_id"])
    return chosen, images[position[chosen["image_id"]].to_numpy()], classes


def saliency_audit(run_path: str | Path, config: str, fold: int, per_class: int,
                   randomisation_images: int, data_dir=None, seed: int = SEED,
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Grad-CAM of a fold's network on its own test images, up to ``per_class`` per class.

    Each map explains the class the network answered. Returns per image the region shares
    (:func:`cxrlib.analysis.explain.saliency_table`), the maps themselves (``m<k>`` cells, row-major,
    with ``height``/``width``), and the cascading randomisation check on the first
    ``randomisation_images`` of them.
    """
    chosen, pixels, classes = _chosen_images(run_path, config, fold, per_class, data_dir, seed)
    model = explain.fold_model(run_path, config, fold)
    targets = [classes.index(c) for c in chosen["predicted"]]
    maps = explain.gradcam(model, pixels, targets)
    ids = chosen[["image_id", "label", "predicted", "source"]].reset_index(drop=True)
    table = pd.concat([ids, explain.saliency_table(pixels, maps)], axis=1)
    cells = pd.DataFrame(maps.reshape(len(maps), -1), columns=[
        f"m{k}" for k in range(maps[0].size)]) if len(maps) else pd.DataFrame()
    map_table = pd.concat([ids.assign(height=maps.shape[1], width=maps.shape[2]), cells], axis=1)
    k = min(randomisation_images, len(pixels))
    check = explain.cascading_randomisation(model, pixels[:k], targets[:k], seed=seed)
    check["image_id"] = ids["image_id"].to_numpy()[check["image"].to_numpy()]
    for name, value in (("run", Path(run_path).name), ("config", config), ("fold", fold)):
        table[name], check[name] = value, value
    return table, map_table, check


def saliency_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per class (and over all): mean share of saliency and of area in each region, and the
    lung fields' enrichment (saliency share / area share; 1 = no preference)."""
    share_columns = [c for c in table.columns if c.startswith("share_")]
    frames = []
    for name, part in list(table.groupby("label", sort=False)) + [("all", table)]:
        row = {"class": name, "images": len(part)}
        for column in share_columns:
            region = column[len("share_"):]
            row[f"saliency_{region}"] = float(part[column].mean())
            row[f"area_{region}"] = float(part[f"area_{region}"].mean())
        row["lung_enrichment"] = row["saliency_lung_fields"] / row["area_lung_fields"] \
            if row["area_lung_fields"] > 0 else math.nan
        frames.append(row)
    return pd.DataFrame(frames)


def stored_maps(map_table: pd.DataFrame) -> np.ndarray:
    """The maps of a stored map table, shape (N, height, width)."""
    h, w = int(map_table["height"].iloc[0]), int(map_table["width"].iloc[0])
    return map_table[[f"m{k}" for k in range(h * w)]].to_numpy(dtype=float).reshape(-1, h, w)
