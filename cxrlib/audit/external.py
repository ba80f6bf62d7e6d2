"""Experiment 6: a trained fold's network on images from elsewhere.

On synthetic data the "external" images are a collection with the same disease signs and none
of the collection cues (:func:`synthetic_external`); on the real bundle, images no run trained
on from the same collections, since the bundle holds no other (:func:`unused_real_images`),
which is only partly external.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.analysis import explain
from cxrlib.audit.scoring import N_BOOT, SEED, compare, pick_per_class, predictions
from cxrlib.audit.store import read_record, read_table
from cxrlib.core import metrics, paths
from cxrlib.core.profiles import Profile
from cxrlib.data import dataset, imaging
from cxrlib.data.curate import curated_dir_for, ensure_curated
from cxrlib.data.sources import read_sources
from cxrlib.experiment import cv
from cxrlib.experiment.runs import fold_classes

#: The view code of a lateral radiograph (Cohen's metadata): curation keeps frontal views only,
#: so a network never trained on a lateral one; the comparison sets them aside (they would
#: measure a change of view, not of images) and reports their recall apart.
LATERAL = "L"
SYNTHETIC_KIND = "another collection (synthetic-external: same signs, no collection cues)"
REAL_KIND = ("the same collections: images no run trained on (the shared bundle holds no "
             "other collection)")


def synthetic_external(profile: Profile, per_class: int, log=print,
                       ) -> tuple[pd.DataFrame, np.ndarray]:
    """The synthetic "external" collection: same disease signs, none of the collection cues."""
    external = profile.replace(synthetic_per_class=per_class)
    folder = ensure_curated(external, collection_style="external", log=log)
    manifest, images = dataset.load_curated(folder, classes=cv.manifest_labels(profile))
    return cv.as_normal(manifest, profile.normal_label), images


def _unused_candidates(curated_dir, data_dir, classes, per_class, seed) -> pd.DataFrame:
    """The bundle's images of ``classes`` that the curated manifest never examined."""
    manifest = dataset.read_manifest(curated_dir)
    candidates = read_sources(data_dir, lateral=True, problems=[])
    candidates = candidates[candidates["label"].isin(list(classes))
                            & ~candidates["orig_path"].isin(set(manifest["orig_path"]))]
    known = set(manifest.get("source_patient_id", manifest["patient_id"]))
    candidates = candidates.assign(new_patient=~candidates["source_patient_id"].isin(known)
                                   & (candidates["source_patient_id"] != ""))
    if per_class is not None:
        candidates = pick_per_class(candidates.reset_index(drop=True), per_class, seed)
    return candidates


def unused_real_images(curated_dir: str | Path, data_dir: str | Path, classes,
                       image_size: int, per_class: int | None = None, seed: int = SEED,
                       ) -> tuple[pd.DataFrame, np.ndarray]:
    """Images of the shared bundle that curation never examined (so no run trained on them).

    From the same collections as the training images (the bundle holds no other), including
    Cohen's lateral views; ``new_patient`` marks images of patients with no curated image. Each
    is letterboxed like a curated one, with no exclusion checks. At most ``per_class`` per class.
    """
    rows, pixels = [], []
    for _, row in _unused_candidates(curated_dir, data_dir, classes, per_class, seed).iterrows():
        try:
            gray = imaging.read_grayscale(row["path"], draft_side=image_size)
        except imaging.ImageError:
            continue
        pixels.append(imaging.letterbox(gray, image_size))
        rows.append({"image_id": f"unused-{Path(row['orig_path']).stem}", "label": row["label"],
                     "source": row["source"], "patient_id": row["source_patient_id"]
                     or f"unused:{row['orig_path']}", "view": row["view"],
                     "new_patient": bool(row["new_patient"]), "orig_path": row["orig_path"]})
    images = np.stack(pixels) if pixels else np.zeros((0, image_size, image_size), np.uint8)
    return pd.DataFrame(rows), images


def external_images(profile: Profile, per_class: int, data_dir=None,
                    ) -> tuple[pd.DataFrame, np.ndarray, str, bool]:
    """The external images for a run's profile: (their table, pixels, what they are, whether
    they come from the training collections)."""
    if profile.dataset == "synthetic":
        external, images = synthetic_external(profile, per_class)
        return external, images, SYNTHETIC_KIND, False
    folder = Path(data_dir) if data_dir else paths.default_data_dir()
    external, images = unused_real_images(curated_dir_for(profile), folder, profile.classes,
                                          profile.image_size, per_class=per_class)
    return external, images, REAL_KIND, True


def external_evaluation(run_path: str | Path, config: str, fold: int,
                        external: pd.DataFrame, images: np.ndarray, n_boot: int = N_BOOT,
                        seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A trained fold's network on images from elsewhere, beside its own test fold.

    ``external`` holds ``image_id``, ``label`` (classes of the run), ``patient_id``, ``source``
    for the rows of ``images``. Returns the comparison (:func:`~.scoring.compare`: "internal" =
    the fold's stored out-of-fold predictions, "external"; difference internal minus external)
    and the external predictions.
    """
    classes = fold_classes(run_path, config, fold)
    unknown = sorted(set(external["label"]) - set(classes))
    if unknown:
        raise ValueError(f"external images of class(es) {unknown} that {Path(run_path).name} "
                         f"does not predict ({list(classes)})")
    model = explain.fold_model(run_path, config, fold)
    probabilities = explain.predict(model, images)
    rows = external.reset_index(drop=True)
    pred = cv.predictions_table(rows.assign(source=rows.get("source", "external"),
                                            patient_id=rows.get("patient_id", "")),
                                fold, probabilities, classes)
    pred["view"] = rows.get("view", pd.Series("", index=rows.index)).fillna("").to_numpy()
    return external_comparison(run_path, config, fold, pred, n_boot, seed), pred


def frontal(pred: pd.DataFrame) -> pd.DataFrame:
    """The external predictions without lateral views (all of them where no view is known)."""
    views = pred.get("view", pd.Series("", index=pred.index)).fillna("")
    return pred[views != LATERAL]


def external_comparison(run_path: str | Path, config: str, fold: int, pred: pd.DataFrame,
                        n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """The fold's own test images against the external frontal images (:func:`frontal`)."""
    internal = predictions(run_path, config, [fold])
    table = compare(internal, frontal(pred), "internal", "external", n_boot, seed)
    table["run"], table["fold"] = Path(run_path).name, fold
    return table


def restore_views(stored: pd.DataFrame, data_dir: str | Path) -> pd.DataFrame:
    """Stored external predictions of real images made before views were kept, with each
    image's view read again from the bundle's tables (by file name and label)."""
    candidates = read_sources(data_dir, lateral=True, problems=[])
    ids = "unused-" + candidates["orig_path"].map(lambda p: Path(p).stem)
    views = dict(zip(zip(ids, candidates["label"]), candidates["view"]))
    keys = list(zip(stored["image_id"], stored["label"]))
    missing = [image for image, key in zip(stored["image_id"], keys) if key not in views]
    if missing:
        raise ValueError(f"{len(missing)} stored external images (e.g. {missing[0]}) are not "
                         f"in the bundle's tables: cannot restore their views")
    return stored.assign(view=[views[key] or "" for key in keys])


def external_record(external: pd.DataFrame, kind: str, same_collections: bool,
                    weights_run: str | Path, config: str, fold: int) -> dict:
    """What the external images were: kind, counts by class (and view), new patients, and the
    trained fold that was tested on them."""
    views = external.get("view", pd.Series("", index=external.index)).replace("", "?")
    by_view = external.groupby([external["label"], views]).size()
    new = external.get("new_patient", pd.Series(True, index=external.index))
    return {"kind": kind, "same_collections": same_collections, "images": int(len(external)),
            "lateral": int((views == LATERAL).sum()),
            "by_class": external["label"].value_counts().to_dict(),
            "by_class_and_view": {f"{c} ({v})": int(n) for (c, v), n in by_view.items()},
            "new_patients": int(new.sum()), "run": Path(weights_run).name, "config": config,
            "fold": fold}


def external_recall(run_path: str | Path) -> pd.DataFrame | None:
    """Per class: images and recall on the trained fold's own test fold and on the external
    frontal images (from the stored external evaluation; lateral views: :func:`lateral_recall`)."""
    record = read_record(run_path, "external")
    external = read_table(run_path, "external_predictions")
    if record is None or external is None:
        return None
    internal = predictions(Path(run_path).parent / record["run"],
                           record.get("config", "from_scratch"), [record["fold"]])
    rows = {}
    for name, pred in (("internal", internal), ("external", frontal(external))):
        if pred.empty:
            continue
        recall = metrics.per_class(pred, metrics.classes_of(pred))
        rows[f"{name} images"] = recall["support"]
        rows[f"{name} recall"] = recall["recall"]
    table = pd.DataFrame(rows)
    table.index.name = "class"
    return table.reset_index()


def lateral_recall(run_path: str | Path) -> tuple[int, float | None]:
    """The stored external lateral views: how many, and the share of them predicted right."""
    external = read_table(run_path, "external_predictions")
    if external is None or "view" not in external:
        return 0, None
    lateral = external[external["view"].fillna("") == LATERAL]
    if lateral.empty:
        return 0, None
    right = metrics.predicted_labels(lateral, metrics.classes_of(lateral)) == lateral["label"]
    return int(len(lateral)), float(right.mean())
