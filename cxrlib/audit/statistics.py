"""Experiment 4: what trivial image statistics know about the class.

No deep learning: a logistic regression and gradient-boosted trees (scikit-learn) on statistics
of the curated image the network sees (an intensity histogram, the padding and aspect of the
frame, sharpness), cross-validated with a run's own folds. What they predict well, a network can
learn without looking at the lungs: this is the network's *rival*.

The original file's width, height and aspect are no part of it: the network never sees them
(curation letterboxes every image to one size). They go into a separate *dataset confound*
(:func:`dataset_confound`): how well the collection's metadata alone name the class, a property
of how the dataset was assembled, not of what a network could learn from its pixels.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from cxrlib.audit.scoring import N_BOOT, SEED, scores
from cxrlib.data import regions
from cxrlib.experiment import cv

#: Feature groups of :func:`image_features` (by column prefix), each also tried alone: only
#: what the curated image array shows.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "intensity histogram": ("hist_", "intensity_"),
    "padding and aspect": ("padding_", "aspect_"),
    "sharpness": ("sharpness_",),
}
#: The dataset confound's one group: the original file's size (:func:`metadata_features`).
METADATA_GROUP = "original size"
HISTOGRAM_BINS = 16


def _content_statistics(image: np.ndarray) -> dict:
    """The statistics of one letterboxed image's content (padding left out)."""
    top, bottom, left, right = regions.content_box(image)
    content = image[top:bottom, left:right].astype(np.float32)
    histogram = np.histogram(content, bins=HISTOGRAM_BINS, range=(0, 256))[0] / content.size
    gy, gx = np.gradient(content)
    row = {f"hist_{k:02d}": float(v) for k, v in enumerate(histogram)}
    row.update({
        "intensity_mean": float(content.mean()), "intensity_sd": float(content.std()),
        "intensity_p05": float(np.percentile(content, 5)),
        "intensity_p50": float(np.percentile(content, 50)),
        "intensity_p95": float(np.percentile(content, 95)),
        "padding_share": 1 - content.size / image.size,
        "aspect_content": (right - left) / max(1, bottom - top),
        "sharpness_laplacian_var": float(ndimage.laplace(content).var()),
        "sharpness_gradient": float(np.hypot(gx, gy).mean()),
    })
    return row


def image_features(images: np.ndarray, manifest: pd.DataFrame) -> pd.DataFrame:
    """Trivial statistics of each curated image (rows aligned with ``images``), from its pixels
    alone.

    Intensity: a 16-bin histogram of the content (padding left out), mean, sd and three
    percentiles. Padding and aspect: the letterbox padding's share of the image and the
    content's width/height. Sharpness: the variance of the Laplacian and the mean gradient
    magnitude of the content.
    """
    features = pd.DataFrame([_content_statistics(image) for image in images],
                            index=manifest.index)
    return features.reset_index(drop=True)


def metadata_features(manifest: pd.DataFrame) -> pd.DataFrame:
    """The original file's width, height and their ratio (from the manifest; missing values
    stay NaN): what the network never sees."""
    missing = pd.Series(np.nan, index=manifest.index)
    width = pd.to_numeric(manifest.get("orig_width", missing), errors="coerce")
    height = pd.to_numeric(manifest.get("orig_height", missing), errors="coerce")
    return pd.DataFrame({"original_width": width, "original_height": height,
                         "original_aspect": width / height}).reset_index(drop=True)


def feature_columns(features: pd.DataFrame, group: str) -> list[str]:
    if group == "all":
        return list(features.columns)
    prefixes = FEATURE_GROUPS[group]
    return [c for c in features.columns if c.startswith(prefixes)]


def statistics_models(seed: int = SEED) -> dict:
    """The simple classifiers: a scaled logistic regression and gradient-boosted trees."""
    return {
        "logistic regression": lambda: make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
            LogisticRegression(max_iter=3000)),
        "gradient boosting": lambda: HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.1, random_state=seed),
    }


def cross_validated_probabilities(make_model, x: np.ndarray, labels: np.ndarray,
                                  fold: np.ndarray, classes) -> np.ndarray:
    """Out-of-fold class probabilities (columns in ``classes`` order) with the given folds."""
    probabilities = np.zeros((len(x), len(classes)))
    # One thread: on a busy two-core machine the boosting's OpenMP threads wait on each other
    # (a fit took 13 s with two threads and 0.7 s with one).
    with threadpool_limits(1):
        for k in sorted(set(fold)):
            test = fold == k
            model = make_model().fit(x[~test], labels[~test])
            columns = [list(classes).index(c) for c in model.classes_]
            probabilities[np.ix_(test, columns)] = model.predict_proba(x[test])
    return probabilities


def assigned_folds(manifest: pd.DataFrame, folds: pd.DataFrame) -> np.ndarray:
    """Each manifest image's test fold in ``folds`` (every image must have one)."""
    assigned = manifest[["image_id"]].merge(folds[["image_id", "fold"]], on="image_id",
                                            how="left")
    if assigned["fold"].isna().any():
        missing = assigned.loc[assigned["fold"].isna(), "image_id"].head(3).tolist()
        raise ValueError(f"images without a fold (e.g. {missing}): pass the fold assignment of "
                         f"a run on this curated set")
    return assigned["fold"].to_numpy(dtype=int)


def _cross_validate(features: pd.DataFrame, plan, manifest: pd.DataFrame, fold: np.ndarray,
                    classes: tuple, n_boot: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of each (model, feature group) of ``plan``, and the out-of-fold predictions of
    the all-feature models."""
    labels = manifest["label"].to_numpy(dtype=object)
    models = statistics_models(seed)
    score_frames, kept = [], []
    for model_name, group in plan:
        x = features[feature_columns(features, group)].to_numpy(dtype=float)
        probabilities = cross_validated_probabilities(models[model_name], x, labels, fold,
                                                      classes)
        pred = cv.predictions_table(manifest.assign(fold=fold), 0, probabilities, classes)
        pred["fold"] = fold
        table = scores(pred, classes, n_boot, seed)
        table.insert(0, "features", group)
        table.insert(0, "model", model_name)
        score_frames.append(table)
        if group == "all":
            kept.append(pred.assign(model=model_name))
    return pd.concat(score_frames, ignore_index=True), pd.concat(kept, ignore_index=True)


def image_statistics(manifest: pd.DataFrame, images: np.ndarray, folds: pd.DataFrame,
                     classes, n_boot: int = N_BOOT, seed: int = SEED,
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How well trivial statistics of the curated images predict the class, cross-validated on
    ``folds``: the network's rival.

    ``folds`` is a run's fold assignment (``image_id``, ``fold``; see :func:`cxrlib.experiment.cv.
    make_folds`), so the figures compare with the network's fold for fold. Both models use all
    features; gradient boosting also each feature group alone. Returns the scores (model,
    features, metric, value, ci_low, ci_high, n) and the out-of-fold predictions of the
    all-feature models (the results store's columns plus ``model``).
    """
    classes = tuple(classes)
    fold = assigned_folds(manifest, folds)
    plan = [("logistic regression", "all"), ("gradient boosting", "all")] + \
        [("gradient boosting", group) for group in FEATURE_GROUPS]
    return _cross_validate(image_features(images, manifest), plan, manifest, fold, classes,
                           n_boot, seed)


def dataset_confound(manifest: pd.DataFrame, folds: pd.DataFrame, classes,
                     n_boot: int = N_BOOT, seed: int = SEED,
                     ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """How well the original files' size names the class (gradient boosting, same folds): a
    property of the dataset's assembly, reported apart from the rival. None when the manifest
    records no original size."""
    features = metadata_features(manifest)
    if features.isna().all().all():
        return None
    fold = assigned_folds(manifest, folds)
    scores_table, pred = _cross_validate(features, [("gradient boosting", "all")], manifest,
                                         fold, tuple(classes), n_boot, seed)
    return scores_table.assign(features=METADATA_GROUP), pred
