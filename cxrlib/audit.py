"""The audit: does the network read disease, or the collection an image comes from?

The paper's classes come from different collections (COVID-19 from publications and websites,
Pneumonia and Normal from one children's hospital, the other findings from NIH), so a network
can score well by recognising the collection, the patients' age, the frame or burned-in text.
Following the critiques of such studies (DeGrave, Janizek & Lee 2021; Roberts et al. 2021;
Maguolo & Nanni 2021), eight experiments look for that, all on one configuration
(:attr:`cxrlib.profiles.AuditSettings.config`, training from scratch, whose features the paper
reads as possible biomarkers):

1. :func:`patient_folds`: the same training with folds grouped by patient; the gap to
   image-level folds, with patient-level bootstrap intervals.
2. :func:`source_probe` and :func:`within_collection`: the same pipeline predicting the
   collection; and the disease accuracy inside each collection that holds several classes.
3. :func:`masked_inputs`: training on images without their lung fields, and on the lung fields
   alone (:mod:`cxrlib.regions`).
4. :func:`image_statistics`: logistic regression and gradient boosting on trivial image
   statistics (intensity histogram, padding and aspect, sharpness, original size), same folds.
5. :func:`saliency_audit`: Grad-CAM shares inside the lung fields versus border and padding,
   and the randomisation check (:mod:`cxrlib.explain`).
6. :func:`external_evaluation`: a trained fold's network on images of another collection.
7. :func:`age_swap`: the paediatric Normal class replaced by adult NIH "No Finding" images.
8. :func:`headline_uncertainty`: every headline figure with its interval, trivial rules beside.

Retrainings are runs of their own, made by :func:`cxrlib.cv.run_profile` and so resumable and
atomic: ``<run>-patient``, ``<run>-source-probe``, ``<run>-border-only``, ``<run>-lung-only``,
``<run>-adult-normal`` (:data:`VARIANTS`). Where an experiment's baseline is the main run's
configuration, the main run's stored predictions are reused. Summaries are small tidy tables
under ``results/<run>/audit/<experiment>.csv``, written atomically; :func:`verdict_table` reads
them and says, by the explicit rules of :class:`Thresholds`, which of the paper's claims the
evidence supports.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cv, dataset, metrics, paper, paths, regions, results
from .profiles import Profile, audit_settings, parse_config

AUDIT_FOLDER = "audit"
N_BOOT = 1000
SEED = 2020
#: The retrainings: the profile changes each makes (the configuration is the audit's).
VARIANTS: dict[str, dict] = {
    "patient": {"grouping": "patient"},
    "source-probe": {"target": "source"},
    "border-only": {"input_mask": "border_only"},
    "lung-only": {"input_mask": "lung_only"},
    "adult-normal": {"normal_label": "No Finding"},
}
#: The variant whose kept weights are explained when the main run kept none.
EXPLAINED_VARIANT = "patient"
#: Manifest sources that are copies of one collection (the within-collection accuracy pools them).
SAME_COLLECTION = {"nih_rxtorax": "nih"}
SCORED_METRICS = ("accuracy", "acc_2class", "sensitivity", "specificity", "auc")


# --------------------------------------------------------------------------------------------
# Storage: results/<run>/audit/<name>.csv|json


def audit_dir(run_path: str | Path) -> Path:
    return Path(run_path) / AUDIT_FOLDER


def write_table(run_path: str | Path, name: str, frame: pd.DataFrame) -> Path:
    path = audit_dir(run_path) / f"{name}.csv"
    results.write_text_atomic(path, frame.to_csv(index=False, float_format="%.6g"))
    return path


#: Columns that are names, never numbers (an NIH id such as 00029548_010 must stay text).
TEXT_COLUMNS = {c: str for c in ("image_id", "patient_id", "source", "label", "predicted",
                                 "collection", "run", "model", "features", "class", "other")}


def read_table(run_path: str | Path, name: str) -> pd.DataFrame | None:
    path = audit_dir(run_path) / f"{name}.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""])


def write_record(run_path: str | Path, name: str, record: dict) -> Path:
    path = audit_dir(run_path) / f"{name}.json"
    results.write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True, default=str)
                              + "\n")
    return path


def read_record(run_path: str | Path, name: str) -> dict | None:
    path = audit_dir(run_path) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------------------------
# Retrainings


def variant_run(run: str, variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown audit variant {variant!r}; variants are {list(VARIANTS)}")
    return f"{run}-{variant}"


def variant_path(run_path: str | Path, variant: str) -> Path:
    """The retraining's run folder: ``<run>-<variant>``, or, when only that exists, the run the
    command line names after its overrides (``python -m cxrlib run --set grouping=patient``
    makes ``<run>_grouping-patient``), which holds the same retraining."""
    run_path = Path(run_path)
    ours = run_path.parent / variant_run(run_path.name, variant)
    theirs = run_path.parent / cv.override_run_name(run_path.name, VARIANTS[variant])
    return theirs if not ours.exists() and (theirs / "profile.json").is_file() else ours


def variant_profile(profile: Profile, variant: str) -> Profile:
    """The main run's profile with the variant's changes, training the audit configuration."""
    config = audit_settings(profile).config
    return profile.replace(configs=(config,), **VARIANTS[variant])


def main_profile(profile: Profile | str, run: str, data_dir=None,
                 results_root=None) -> Profile:
    """The profile the main run was made with (its profile.json), else the named one."""
    from .profiles import get_profile

    stored = results.run_dir(run, results_root) / "profile.json"
    if stored.is_file():
        return results.read_profile(stored.parent)
    chosen = get_profile(profile) if isinstance(profile, str) else profile
    return chosen.replace(dataset="real") if data_dir else chosen


def ensure_baseline(profile: Profile, run: str, data_dir=None, results_root=None,
                    log=cv.log_line) -> Path:
    """The main run's audit configuration on the audit's folds (finished folds are skipped)."""
    settings = audit_settings(profile)
    return cv.run_profile(profile, configs=[settings.config], folds=settings.test_folds, run=run,
                          data_dir=data_dir, results_root=results_root, log=log)


def run_variant(profile: Profile, variant: str, run: str, data_dir=None, results_root=None,
                log=cv.log_line, save_weights_folds=()) -> Path:
    """Cross-validate one retraining of :data:`VARIANTS` into ``<run>-<variant>`` (or into the
    command line's run of the same retraining, if that is the one that exists)."""
    settings = audit_settings(profile)
    path = variant_path(results.run_dir(run, results_root), variant)
    chosen = results.read_profile(path) if path.name != variant_run(run, variant) else \
        variant_profile(profile, variant)
    return cv.run_profile(chosen, configs=[settings.config], folds=settings.test_folds,
                          run=path.name, data_dir=data_dir, results_root=results_root, log=log,
                          save_weights_folds=save_weights_folds)


# --------------------------------------------------------------------------------------------
# Scoring helpers (every interval: the patient-level bootstrap of cxrlib.metrics)


def common_folds(*run_paths, config: str) -> list[int]:
    """Fold numbers finished in every one of the runs."""
    sets = [set(results.done_folds(Path(p), config)) for p in run_paths]
    return sorted(set.intersection(*sets)) if sets else []


def predictions(run_path: str | Path, config: str, folds=None) -> pd.DataFrame:
    return results.read_predictions(Path(run_path), config, folds=folds)


def scores(pred: pd.DataFrame, classes=None, n_boot: int = N_BOOT,
           seed: int = SEED) -> pd.DataFrame:
    """metric, value (pooled over the folds), ci_low, ci_high, n: the figures with intervals."""
    summary = metrics.summary(pred, classes, n_boot=n_boot, seed=seed)
    out = summary[["metric", "pooled", "ci_low", "ci_high"]].rename(columns={"pooled": "value"})
    out["n"] = len(pred)
    return out.reset_index(drop=True)


def majority_share(labels) -> float:
    """Accuracy of always answering the most frequent class (chance for an unbalanced set)."""
    counts = pd.Series(list(labels)).value_counts()
    return float(counts.iloc[0] / counts.sum()) if len(counts) else float("nan")


def retained_share(masked: float, full: float, chance: float) -> float:
    """How much of the full input's accuracy above chance survives a change (1 = all of it)."""
    margin = full - chance
    return (masked - chance) / margin if margin > 0 else float("nan")


def _sorted_by_image(pred: pd.DataFrame) -> pd.DataFrame:
    return pred.sort_values("image_id", kind="stable").reset_index(drop=True)


def bootstrap_difference(pred_a: pd.DataFrame, pred_b: pd.DataFrame, metric: str,
                         classes_a=None, classes_b=None, n_boot: int = N_BOOT,
                         seed: int = SEED) -> dict:
    """``metric`` of ``pred_a`` minus that of ``pred_b``, with a 95% bootstrap interval.

    When both tables score the same images (e.g. two strategies of one run), the same patients
    are drawn for both in every resample (a paired bootstrap); otherwise each is resampled on
    its own and the interval is that of the difference of independent replicates.
    """
    paired = sorted(pred_a["image_id"]) == sorted(pred_b["image_id"])
    a, b = (_sorted_by_image(pred_a), _sorted_by_image(pred_b)) if paired else (pred_a, pred_b)
    reps_a = metrics.bootstrap_replicates(a, classes_a, n_boot=n_boot, seed=seed)
    reps_b = metrics.bootstrap_replicates(b, classes_b, n_boot=n_boot,
                                          seed=seed if paired else seed + 1)
    point = metrics.pooled_metrics(a, classes_a)[metric] - \
        metrics.pooled_metrics(b, classes_b)[metric]
    low, high = metrics.percentile_interval((reps_a[metric] - reps_b[metric]).to_numpy())
    return {"difference": point, "diff_low": low, "diff_high": high, "paired": paired}


def compare(pred_a: pd.DataFrame, pred_b: pd.DataFrame, name_a: str, name_b: str,
            n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Both tables' figures side by side, and ``a - b`` with its interval, one row per metric."""
    sa, sb = scores(pred_a, n_boot=n_boot, seed=seed), scores(pred_b, n_boot=n_boot, seed=seed)
    rows = []
    for metric in [m for m in sa["metric"] if m in set(sb["metric"])]:
        ra, rb = sa.set_index("metric").loc[metric], sb.set_index("metric").loc[metric]
        rows.append({"metric": metric,
                     f"{name_a}": ra["value"], f"{name_a}_low": ra["ci_low"],
                     f"{name_a}_high": ra["ci_high"],
                     f"{name_b}": rb["value"], f"{name_b}_low": rb["ci_low"],
                     f"{name_b}_high": rb["ci_high"],
                     **bootstrap_difference(pred_a, pred_b, metric, n_boot=n_boot, seed=seed),
                     f"n_{name_a}": len(pred_a), f"n_{name_b}": len(pred_b)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# 1. Patient-grouped against image-level folds


def patient_leakage(folds: pd.DataFrame, test_folds=None) -> float:
    """Share of test images whose patient has another image in that fold's training folds."""
    test_folds = sorted(folds["fold"].unique()) if test_folds is None else list(test_folds)
    leaked = total = 0
    for fold in test_folds:
        test = folds["fold"] == fold
        training_patients = set(folds.loc[~test, "patient_id"])
        leaked += int(folds.loc[test, "patient_id"].isin(training_patients).sum())
        total += int(test.sum())
    return leaked / total if total else float("nan")


def patient_folds(image_run: str | Path, patient_run: str | Path, config: str,
                  n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """The configuration with image-level and with patient-grouped folds, metric by metric.

    Both are scored on the test folds finished in both runs (fold numbers; the folds hold
    different images, so the gap's interval is unpaired unless every fold is done). Adds the
    share of the image-level run's test images whose patient was also in training.
    """
    folds = common_folds(image_run, patient_run, config=config)
    if not folds:
        raise ValueError(f"{Path(image_run).name} and {Path(patient_run).name} share no finished "
                         f"{config} fold: run the audit's retrainings first")
    table = compare(predictions(image_run, config, folds), predictions(patient_run, config, folds),
                    "image_level", "patient_level", n_boot, seed)
    table["leakage_image_level"] = patient_leakage(results.read_folds(Path(image_run)), folds)
    table["leakage_patient_level"] = patient_leakage(results.read_folds(Path(patient_run)), folds)
    table["folds"] = ",".join(map(str, folds))
    return table


# --------------------------------------------------------------------------------------------
# 2. Source probe and accuracy inside a collection


def source_probe(probe_run: str | Path, config: str, n_boot: int = N_BOOT,
                 seed: int = SEED) -> pd.DataFrame:
    """How well the pipeline tells the collections apart: accuracy with its interval, the
    majority collection's share, and the recall of every collection."""
    pred = predictions(probe_run, config)
    if pred.empty:
        raise ValueError(f"{Path(probe_run).name} has no finished {config} fold yet")
    sources = metrics.classes_of(pred)
    overall = scores(pred, sources, n_boot, seed).set_index("metric").loc["accuracy"]
    recall = metrics.per_class(pred, sources)["recall"]
    rows = [{"collection": "all", "n": len(pred), "accuracy": overall["value"],
             "ci_low": overall["ci_low"], "ci_high": overall["ci_high"],
             "majority": majority_share(pred["label"])}]
    for source in sources:
        rows.append({"collection": source, "n": int((pred["label"] == source).sum()),
                     "accuracy": float(recall[source]), "ci_low": math.nan,
                     "ci_high": math.nan, "majority": math.nan})
    return pd.DataFrame(rows)


def collection_of(source: str) -> str:
    return SAME_COLLECTION.get(source, source)


def within_collection(pred: pd.DataFrame, classes=None, n_boot: int = N_BOOT,
                      seed: int = SEED) -> pd.DataFrame:
    """Disease accuracy inside each collection that holds two or more classes.

    There the collection cannot give the answer away. Each image's answer is the most probable
    of its collection's classes; beside it: the interval, the majority class's share (what a
    rule blind to the image scores) and the accuracy over all classes.
    """
    classes = metrics.check_predictions(pred, classes)
    rows = []
    collections = pred["source"].map(collection_of)
    for collection, part in pred.groupby(collections, sort=True):
        present = tuple(c for c in classes if c in set(part["label"]))
        if len(present) < 2:
            continue
        part = part.drop(columns=[metrics.probability_column(c) for c in classes
                                  if c not in present])
        figure = scores(part, present, n_boot, seed).set_index("metric").loc["accuracy"]
        everything = float(np.mean(metrics.predicted_labels(pred.loc[part.index], classes)
                                   == part["label"].to_numpy()))
        rows.append({"collection": collection, "classes": " vs ".join(present), "n": len(part),
                     "accuracy": figure["value"], "ci_low": figure["ci_low"],
                     "ci_high": figure["ci_high"], "majority": majority_share(part["label"]),
                     "accuracy_all_classes": everything})
    return pd.DataFrame(rows, columns=["collection", "classes", "n", "accuracy", "ci_low",
                                       "ci_high", "majority", "accuracy_all_classes"])


# --------------------------------------------------------------------------------------------
# 3. Masked inputs


def masked_inputs(main_run: str | Path, border_run: str | Path, lung_run: str | Path,
                  config: str, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Full images, lung fields blacked out, lung fields only: every metric with its interval,
    on the test folds all three finished; ``retained``: the share of the full images' accuracy
    above chance (the majority class) that each input keeps."""
    folds = common_folds(main_run, border_run, lung_run, config=config)
    if not folds:
        raise ValueError(f"no {config} fold is finished in all of {Path(main_run).name}, "
                         f"{Path(border_run).name} and {Path(lung_run).name}")
    frames = []
    full = None
    for name, run in (("full image", main_run), ("border only", border_run),
                      ("lung fields only", lung_run)):
        pred = predictions(run, config, folds)
        table = scores(pred, n_boot=n_boot, seed=seed)
        table.insert(0, "input", name)
        table["chance"] = np.where(table["metric"] == "accuracy", majority_share(pred["label"]),
                                   math.nan)
        if full is None:
            full = table.set_index("metric")["value"]
        table["retained"] = [retained_share(v, full[m], c) if m == "accuracy" else math.nan
                             for m, v, c in zip(table["metric"], table["value"], table["chance"])]
        frames.append(table)
    out = pd.concat(frames, ignore_index=True)
    out["folds"] = ",".join(map(str, folds))
    return out


# --------------------------------------------------------------------------------------------
# 4. Trivial image statistics

#: Feature groups of :func:`image_features` (by column prefix), each also tried alone.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "intensity histogram": ("hist_", "intensity_"),
    "padding and aspect": ("padding_", "aspect_"),
    "sharpness": ("sharpness_",),
    "original size": ("original_",),
}
HISTOGRAM_BINS = 16


def image_features(images: np.ndarray, manifest: pd.DataFrame) -> pd.DataFrame:
    """Trivial statistics of each curated image (rows aligned with ``images``).

    Intensity: a 16-bin histogram of the content (padding left out), mean, sd and three
    percentiles. Padding and aspect: the letterbox padding's share of the image and the
    content's width/height. Sharpness: the variance of the Laplacian and the mean gradient
    magnitude of the content. Original size: the source file's width, height and their ratio
    (from the manifest; missing values stay NaN).
    """
    from scipy import ndimage

    rows = []
    for image in images:
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
        rows.append(row)
    features = pd.DataFrame(rows, index=manifest.index)
    width = pd.to_numeric(manifest.get("orig_width"), errors="coerce")
    height = pd.to_numeric(manifest.get("orig_height"), errors="coerce")
    features["original_width"] = width
    features["original_height"] = height
    features["original_aspect"] = width / height
    return features.reset_index(drop=True)


def feature_columns(features: pd.DataFrame, group: str) -> list[str]:
    if group == "all":
        return list(features.columns)
    prefixes = FEATURE_GROUPS[group]
    return [c for c in features.columns if c.startswith(prefixes)]


def statistics_models(seed: int = SEED) -> dict:
    """The simple classifiers: a scaled logistic regression and gradient-boosted trees."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

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
    from threadpoolctl import threadpool_limits

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


def image_statistics(manifest: pd.DataFrame, images: np.ndarray, folds: pd.DataFrame,
                     classes, n_boot: int = N_BOOT, seed: int = SEED,
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How well trivial image statistics predict the class, cross-validated on ``folds``.

    ``folds`` is a run's fold assignment (``image_id``, ``fold``; see :func:`cxrlib.cv.
    make_folds`), so the figures compare with the network's fold for fold. Both models use all
    features; gradient boosting also each feature group alone. Returns the scores (model,
    features, metric, value, ci_low, ci_high, n) and the out-of-fold predictions of the
    all-feature models (the results store's columns plus ``model``).
    """
    classes = tuple(classes)
    assigned = manifest[["image_id"]].merge(folds[["image_id", "fold"]], on="image_id",
                                            how="left")
    if assigned["fold"].isna().any():
        missing = assigned.loc[assigned["fold"].isna(), "image_id"].head(3).tolist()
        raise ValueError(f"images without a fold (e.g. {missing}): pass the fold assignment of "
                         f"a run on this curated set")
    fold = assigned["fold"].to_numpy(dtype=int)
    labels = manifest["label"].to_numpy(dtype=object)
    features = image_features(images, manifest)
    models = statistics_models(seed)
    plan = [("logistic regression", "all"), ("gradient boosting", "all")] + \
        [("gradient boosting", group) for group in FEATURE_GROUPS]
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


# --------------------------------------------------------------------------------------------
# 5. Saliency


def explained_fold(run_path: str | Path, config: str) -> tuple[Path, int] | None:
    """The trained fold whose network the saliency and external experiments use.

    The main run's own kept weights (``--save-weights-folds``) if it has any; otherwise those of
    the patient-grouped retraining, which the audit keeps for fold 0. None if neither exists.
    """
    from .explain import saved_folds

    for candidate in (Path(run_path), variant_path(run_path, EXPLAINED_VARIANT)):
        folds = saved_folds(candidate, config)
        if folds:
            return candidate, folds[0]
    return None


def pick_per_class(rows: pd.DataFrame, per_class: int, seed: int = SEED) -> pd.DataFrame:
    """Up to ``per_class`` rows of every label, drawn reproducibly."""
    shuffled = rows.sample(frac=1.0, random_state=seed)
    return shuffled.groupby("label", sort=False).head(per_class).sort_index()


def run_images(run_path: str | Path, data_dir=None) -> tuple[pd.DataFrame, np.ndarray]:
    """The images a stored run trained on, as it saw them (its profile's classes and mask)."""
    return cv.load_dataset(results.read_profile(Path(run_path)), data_dir=data_dir)


def saliency_audit(run_path: str | Path, config: str, fold: int, per_class: int,
                   randomisation_images: int, data_dir=None, seed: int = SEED,
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Grad-CAM of a fold's network on its own test images, up to ``per_class`` per class.

    Each map explains the class the network answered. Returns per image the region shares
    (:func:`cxrlib.explain.saliency_table`), the maps themselves (``m<k>`` cells, row-major,
    with ``height``/``width``), and the cascading randomisation check on the first
    ``randomisation_images`` of them.
    """
    from . import explain

    manifest, images = run_images(run_path, data_dir)
    pred = predictions(run_path, config, [fold])
    classes = metrics.classes_of(pred)
    pred = pred.assign(predicted=metrics.predicted_labels(pred, classes))
    chosen = pick_per_class(pred, per_class, seed)
    position = pd.Series(np.arange(len(manifest)), index=manifest["image_id"])
    pixels = images[position[chosen["image_id"]].to_numpy()]
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


# --------------------------------------------------------------------------------------------
# 6. External data


def synthetic_external(profile: Profile, per_class: int, log=print,
                       ) -> tuple[pd.DataFrame, np.ndarray]:
    """The synthetic "external" collection: same disease signs, none of the collection cues."""
    from .curate import ensure_curated

    external = profile.replace(synthetic_per_class=per_class)
    folder = ensure_curated(external, collection_style="external", log=log)
    manifest, images = dataset.load_curated(folder, classes=cv.manifest_labels(profile))
    return cv.as_normal(manifest, profile.normal_label), images


def unused_real_images(curated_dir: str | Path, data_dir: str | Path, classes,
                       image_size: int, per_class: int | None = None, seed: int = SEED,
                       ) -> tuple[pd.DataFrame, np.ndarray]:
    """Images of the shared bundle that curation never examined (so no run trained on them).

    From the same collections as the training images (the bundle holds no other), including
    Cohen's lateral views; ``new_patient`` marks images of patients with no curated image. Each
    is letterboxed like a curated one, with no exclusion checks. At most ``per_class`` per class.
    """
    from . import imaging
    from .sources import read_sources

    manifest = dataset.read_manifest(curated_dir)
    candidates = read_sources(data_dir, lateral=True, problems=[])
    candidates = candidates[candidates["label"].isin(list(classes))
                            & ~candidates["orig_path"].isin(set(manifest["orig_path"]))]
    known = set(manifest.get("source_patient_id", manifest["patient_id"]))
    candidates = candidates.assign(new_patient=~candidates["source_patient_id"].isin(known)
                                   & (candidates["source_patient_id"] != ""))
    if per_class is not None:
        candidates = pick_per_class(candidates.reset_index(drop=True), per_class, seed)
    rows, pixels = [], []
    for _, row in candidates.iterrows():
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


def external_evaluation(run_path: str | Path, config: str, fold: int,
                        external: pd.DataFrame, images: np.ndarray, n_boot: int = N_BOOT,
                        seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A trained fold's network on images from elsewhere, beside its own test fold.

    ``external`` holds ``image_id``, ``label`` (classes of the run), ``patient_id``, ``source``
    for the rows of ``images``. Returns the comparison (:func:`compare`: "internal" = the fold's
    stored out-of-fold predictions, "external"; difference internal minus external) and the
    external predictions.
    """
    from . import explain

    classes = explain.run_target_classes(run_path, config, fold)
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
    internal = predictions(run_path, config, [fold])
    table = compare(internal, pred, "internal", "external", n_boot, seed)
    table["run"], table["fold"] = Path(run_path).name, fold
    return table, pred


def external_recall(run_path: str | Path) -> pd.DataFrame | None:
    """Per class: images and recall on the trained fold's own test fold and on the external
    images (from the stored external evaluation), and for real data the views of the latter."""
    record = read_record(run_path, "external")
    external = read_table(run_path, "external_predictions")
    if record is None or external is None:
        return None
    internal = predictions(Path(run_path).parent / record["run"],
                           record.get("config", "from_scratch"), [record["fold"]])
    rows = {}
    for name, pred in (("internal", internal), ("external", external)):
        if pred.empty:
            continue
        classes = metrics.classes_of(pred)
        recall = metrics.per_class(pred, classes)
        rows[f"{name} images"] = recall["support"]
        rows[f"{name} recall"] = recall["recall"]
    table = pd.DataFrame(rows)
    table.index.name = "class"
    return table.reset_index()


# --------------------------------------------------------------------------------------------
# 7. Age and source swap


def age_swap(main_run: str | Path, swap_run: str | Path, config: str, n_boot: int = N_BOOT,
             seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normal as the paper has it (children) against Normal from adult NIH "No Finding" images.

    Returns every metric side by side with the fall (paediatric minus adult, unpaired interval:
    the Normal images differ) on the folds both runs finished, plus ``recall_Normal`` (the
    Normal images' accuracy: a class recognised by its collection loses it when the collection
    changes), and each class's recall in both.
    """
    folds = common_folds(main_run, swap_run, config=config)
    if not folds:
        raise ValueError(f"{Path(main_run).name} and {Path(swap_run).name} share no finished "
                         f"{config} fold")
    main, swap = predictions(main_run, config, folds), predictions(swap_run, config, folds)
    table = compare(main, swap, "paediatric_normal", "adult_normal", n_boot, seed)
    # The Normal class's own recall: the accuracy on its images alone.
    normal = compare(main[main["label"] == "Normal"], swap[swap["label"] == "Normal"],
                     "paediatric_normal", "adult_normal", n_boot, seed)
    table = pd.concat([table, normal[normal["metric"] == "accuracy"].assign(
        metric="recall_Normal")], ignore_index=True)
    table["folds"] = ",".join(map(str, folds))
    recall = pd.DataFrame({"paediatric_normal": metrics.per_class(main)["recall"],
                           "adult_normal": metrics.per_class(swap)["recall"]})
    recall.index.name = "class"
    return table, recall.reset_index()


# --------------------------------------------------------------------------------------------
# 8. Uncertainty of the headline figures


def majority_rule(pred: pd.DataFrame, classes=None) -> pd.DataFrame:
    """The predictions of a rule that always answers the most frequent class (of equally
    frequent ones not COVID-19, so that its 2-class figures are the "never COVID-19" rule's
    unless COVID-19 is the largest class)."""
    classes = metrics.check_predictions(pred, classes)
    counts = pd.Series(pred["label"]).value_counts()
    majority = min(counts.index, key=lambda c: (-counts[c], c == paper.POSITIVE_CLASS,
                                                classes.index(c)))
    out = pred.copy()
    for c in classes:
        out[metrics.probability_column(c)] = float(c == majority)
    return out


def headline_uncertainty(run_path: str | Path, statistics: pd.DataFrame | None = None,
                         n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Every configuration's figures with their patient-level 95% intervals, and beside them
    the majority-class rule (whose 2-class accuracy is the "never COVID-19" rule's when Normal
    is the largest class) and, if given, the image-statistics classifiers' out-of-fold
    predictions (:func:`image_statistics`)."""
    from .report import run_configs

    run_path = Path(run_path)
    frames = []
    reference = None
    for config in run_configs(run_path):
        pred = predictions(run_path, config)
        if pred.empty:
            continue
        reference = pred if reference is None else reference
        frames.append(scores(pred, n_boot=n_boot, seed=seed).assign(model=config,
                                                                      kind="network"))
    if reference is not None:
        frames.append(scores(majority_rule(reference), n_boot=n_boot, seed=seed).assign(
            model="majority-class rule", kind="trivial rule"))
    if statistics is not None and not statistics.empty:
        for name, part in statistics.groupby("model", sort=False):
            frames.append(scores(part.drop(columns="model"), n_boot=n_boot, seed=seed).assign(
                model=f"image statistics ({name})", kind="trivial classifier"))
    if not frames:
        return pd.DataFrame(columns=["model", "kind", "metric", "value", "ci_low", "ci_high",
                                     "n"])
    out = pd.concat(frames, ignore_index=True)
    return out[["model", "kind", "metric", "value", "ci_low", "ci_high", "n"]]


# --------------------------------------------------------------------------------------------
# The verdict


@dataclass(frozen=True)
class Thresholds:
    """The explicit rules of :func:`verdict_table` (fractions, not percent).

    - ``reproduce_margin``: our interval must reach within this of the paper's figure for a
      figure to count as reproduced, and lies wholly below it minus this when not;
    - ``retained_shortcut``: a change of input that keeps at least this share of the accuracy
      above chance shows that the removed part was not needed;
    - ``statistics_rival``: trivial statistics that reach this share of the network's accuracy
      above chance rival the network;
    - ``source_recognisable``: a source probe at or above this accuracy recognises collections;
    - ``material_gap``: a fall of accuracy at least this large (and an interval that excludes
      none) is material;
    - ``randomisation_max_corr``: mean Spearman correlation with the trained maps after full
      randomisation at or above this means the maps do not depend on the model;
    - ``lung_enrichment``: saliency in the lung fields at least this multiple of their area
      counts as looking at the lungs (below 1: less than a uniform map).
    """

    reproduce_margin: float = 0.02
    retained_shortcut: float = 0.5
    statistics_rival: float = 0.8
    source_recognisable: float = 0.9
    material_gap: float = 0.05
    randomisation_max_corr: float = 0.5
    lung_enrichment: float = 1.0


THRESHOLDS = Thresholds()
SUPPORTED, NOT_SUPPORTED, CANNOT_TELL = "supported", "not supported", "cannot tell"


@dataclass(frozen=True)
class Figure:
    """A figure with its 95% interval (fractions)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    def text(self, unit: str = "%") -> str:
        """``"84.9% [80.4, 89.6]"`` (fractions shown in percent; ``unit=" points"`` for a
        difference)."""
        if math.isnan(self.value):
            return "n/a"
        interval = "" if math.isnan(self.low) else \
            f" [{100 * self.low:.1f}, {100 * self.high:.1f}]"
        return f"{100 * self.value:.1f}{unit}{interval}"


def _figure(table: pd.DataFrame | None, where: dict, value="value", low="ci_low",
            high="ci_high") -> Figure | None:
    if table is None or table.empty:
        return None
    part = table
    for column, wanted in where.items():
        part = part[part[column] == wanted]
    if part.empty:
        return None
    row = part.iloc[0]
    return Figure(float(row[value]), float(row.get(low, math.nan)),
                  float(row.get(high, math.nan)))


def collect_evidence(run_path: str | Path) -> dict:
    """The figures the verdicts rest on, read from the stored audit tables and runs."""
    run_path = Path(run_path)
    profile = results.read_profile(run_path) if (run_path / "profile.json").is_file() else None
    config = audit_settings(profile).config if profile else "from_scratch"
    evidence: dict = {"config": config, "synthetic": profile is None or
                      profile.dataset != "real",
                      "classes": tuple(profile.classes) if profile else ()}
    headline = read_table(run_path, "uncertainty")
    for metric in ("accuracy", "acc_2class"):
        evidence[metric] = _figure(headline, {"model": config, "metric": metric})
    evidence["paper_acc_2class"] = _paper_fraction(config, "acc_2class")
    evidence["paper_accuracy"] = _paper_fraction(config, "acc_7class")
    strategies = read_table(run_path, "strategies")
    evidence["strategy_differences"] = {} if strategies is None else {
        row["other"]: Figure(row["difference"], row["diff_low"], row["diff_high"])
        for _, row in strategies.iterrows()}
    patient = read_table(run_path, "patient_folds")
    evidence["patient_gap"] = _figure(patient, {"metric": "accuracy"}, "difference",
                                      "diff_low", "diff_high")
    masked = read_table(run_path, "masked_inputs")
    for key, name in (("border_retained", "border only"), ("lung_retained", "lung fields only")):
        row = _figure(masked, {"input": name, "metric": "accuracy"}, "retained")
        evidence[key] = None if row is None else row.value
    stats = read_table(run_path, "image_statistics")
    if stats is not None and not stats.empty:
        best = stats[(stats["metric"] == "accuracy") & (stats["features"] == "all")]
        best = best.sort_values("value", ascending=False).head(1)
        evidence["statistics_accuracy"] = _figure(best, {})
    else:
        evidence["statistics_accuracy"] = None
    evidence["chance"] = _figure(headline, {"model": "majority-class rule",
                                            "metric": "accuracy"})
    probe = read_table(run_path, "source_probe")
    evidence["source_probe"] = _figure(probe, {"collection": "all"}, "accuracy")
    within = read_table(run_path, "within_collection")
    evidence["within_collection"] = [] if within is None else [
        (f"{r['collection']} ({r['run']})", Figure(r["accuracy"], r["ci_low"], r["ci_high"]),
         float(r["majority"])) for _, r in within.iterrows()]
    saliency = read_table(run_path, "saliency_summary")
    for key, name in (("lung_enrichment", "all"), ("covid_lung_enrichment", paper.POSITIVE_CLASS)):
        row = _figure(saliency, {"class": name}, "lung_enrichment")
        evidence[key] = None if row is None else row.value
    check = read_table(run_path, "randomisation_summary")
    evidence["randomised_spearman"] = None if check is None or check.empty else \
        float(check.sort_values("layers").iloc[-1]["spearman"])
    swap = read_table(run_path, "age_swap")
    evidence["age_swap_fall"] = _figure(swap, {"metric": "accuracy"}, "difference",
                                        "diff_low", "diff_high")
    evidence["age_swap_normal_fall"] = _figure(swap, {"metric": "recall_Normal"}, "difference",
                                               "diff_low", "diff_high")
    external = read_table(run_path, "external")
    evidence["external_gap"] = _figure(external, {"metric": "accuracy"}, "difference",
                                       "diff_low", "diff_high")
    record = read_record(run_path, "external") or {}
    evidence["external_kind"] = record.get("kind")
    evidence["external_same_collections"] = bool(record.get("same_collections", False))
    return evidence


def _paper_fraction(config: str, metric: str) -> float | None:
    from .report import paper_figure

    value = paper_figure(config, metric)
    return None if value is None else float(value) / 100


def _missing(*items) -> bool:
    return any(i is None or (isinstance(i, float) and math.isnan(i)) for i in items)


def _reproduction(ours: Figure | None, reported: float | None, t: Thresholds,
                  comparable: bool) -> tuple[str, str]:
    if ours is None or reported is None:
        return CANNOT_TELL, "no result yet"
    text = f"ours {ours.text()} against the paper's {100 * reported:.1f}%"
    if not comparable:
        return CANNOT_TELL, text + " (another class set: not the same task)"
    if ours.high >= reported - t.reproduce_margin:
        return SUPPORTED, text
    return NOT_SUPPORTED, text


def verdict_table(evidence: dict, thresholds: Thresholds = THRESHOLDS) -> pd.DataFrame:
    """Each claim of the paper (in our words), our verdict, the evidence and the rule applied.

    Verdicts follow :class:`Thresholds` and nothing else; a claim whose evidence is missing is
    "cannot tell". With synthetic data the verdicts only show that the rules work.
    """
    t = thresholds
    rows = []
    seven = tuple(evidence.get("classes", ())) == paper.CLASSES

    verdict, text = _reproduction(evidence.get("acc_2class"), evidence.get("paper_acc_2class"),
                                  t, comparable=True)
    rows.append(("Trained from scratch, the network tells COVID-19 from the other classes with "
                 "about 99% accuracy.", verdict, text,
                 f"reproduced if our 95% interval reaches the paper's figure minus "
                 f"{100 * t.reproduce_margin:.0f} points"))

    verdict, text = _reproduction(evidence.get("accuracy"), evidence.get("paper_accuracy"), t,
                                  comparable=seven)
    rows.append(("Over all seven classes it is right about 88% of the time.", verdict, text,
                 "as above; only comparable on the paper's seven classes"))

    differences = evidence.get("strategy_differences") or {}
    if not differences:
        verdict, text = CANNOT_TELL, "no other strategy has results"
    else:
        text = "; ".join(f"minus {k}: {v.text(' points')}" for k, v in differences.items())
        if all(v.low > 0 for v in differences.values()):
            verdict = SUPPORTED
        elif any(v.high < 0 for v in differences.values()):
            verdict = NOT_SUPPORTED
        else:
            verdict = CANNOT_TELL
    rows.append(("Training from scratch beats ImageNet features, whether fixed or fine-tuned.",
                 verdict, "from scratch's accuracy, paired bootstrap: " + text,
                 "supported if every interval is above 0; not supported if one is below 0"))

    gap = evidence.get("patient_gap")
    if gap is None:
        verdict, text = CANNOT_TELL, "no patient-grouped retraining yet"
    else:
        text = f"image-level minus patient-grouped accuracy: {gap.text(' points')}"
        if gap.value >= t.material_gap and gap.low > 0:
            verdict = NOT_SUPPORTED
        elif gap.high < t.material_gap:
            verdict = SUPPORTED
        else:
            verdict = CANNOT_TELL
    rows.append(("Image-level cross-validation measures how the network does on new patients.",
                 verdict, text, f"not supported if the gap is at least "
                 f"{100 * t.material_gap:.0f} points with an interval above 0; supported if the "
                 f"interval stays below {100 * t.material_gap:.0f} points"))

    verdict, text = biomarker_verdict(evidence, t)
    rows.append(("The features learned from scratch are signs of disease in the lungs (possible "
                 "biomarkers), not marks of where an image comes from.", verdict, text,
                 shortcut_rule(t)))

    external = evidence.get("external_gap")
    if external is None:
        verdict, text = CANNOT_TELL, "no external evaluation"
    else:
        text = f"internal minus external accuracy: {external.text(' points')} " \
            f"({evidence.get('external_kind') or 'external data'})"
        if external.value >= t.material_gap and external.low > 0:
            verdict = NOT_SUPPORTED
        elif external.high < t.material_gap and not evidence.get("external_same_collections"):
            verdict = SUPPORTED
        else:
            verdict = CANNOT_TELL
    rows.append(("The classifier is ready to screen patients: its accuracy carries over to "
                 "images from elsewhere.", verdict, text,
                 f"not supported if accuracy falls by at least {100 * t.material_gap:.0f} points "
                 f"(interval above 0) on other images; supported if it falls by less on "
                 f"another collection"))
    return pd.DataFrame(rows, columns=["claim", "verdict", "evidence", "rule"])


def shortcut_tests(evidence: dict, t: Thresholds = THRESHOLDS) -> list[tuple[str, bool | None,
                                                                            str]]:
    """Each shortcut test: (name, fired? None if no result, the figures it read)."""
    tests = []
    border = evidence.get("border_retained")
    tests.append(("lungs blacked out", None if _missing(border) else
                  border >= t.retained_shortcut,
                  "n/a" if _missing(border) else
                  f"{100 * border:.0f}% of the accuracy above chance kept"))
    stats, network, chance = (evidence.get("statistics_accuracy"), evidence.get("accuracy"),
                              evidence.get("chance"))
    if _missing(stats, network, chance):
        tests.append(("image statistics", None, "n/a"))
    else:
        share = retained_share(stats.value, network.value, chance.value)
        tests.append(("image statistics", None if _missing(share) else
                      share >= t.statistics_rival,
                      f"{stats.text()} against the network's {network.text()} "
                      f"(chance {100 * chance.value:.1f}%)"))
    probe, within = evidence.get("source_probe"), evidence.get("within_collection") or []
    if probe is None:
        tests.append(("collections recognisable, classes not within them", None, "n/a"))
    else:
        blind = [name for name, figure, majority in within if figure.low <= majority]
        fired = probe.value >= t.source_recognisable and bool(blind)
        tests.append(("collections recognisable, classes not within them", fired,
                      f"source probe {probe.text()}; within a collection no better than its "
                      f"majority class: {', '.join(blind) or 'none'}"))
    enrichment, randomised = evidence.get("lung_enrichment"), evidence.get("randomised_spearman")
    covid = evidence.get("covid_lung_enrichment")
    if _missing(enrichment):
        tests.append(("saliency outside the lungs", None, "n/a"))
    else:
        meaningful = not _missing(randomised) and randomised < t.randomisation_max_corr
        lowest = min(enrichment, covid) if not _missing(covid) else enrichment
        covid_text = "" if _missing(covid) else f", for COVID-19 images {covid:.2f}"
        tests.append(("saliency outside the lungs", lowest < t.lung_enrichment and meaningful,
                      f"lung share / lung area {enrichment:.2f}{covid_text}; maps after "
                      f"randomisation correlate "
                      f"{'n/a' if _missing(randomised) else f'{randomised:.2f}'}"))
    falls = [(what, f) for what, f in (("accuracy", evidence.get("age_swap_fall")),
                                        ("Normal's recall", evidence.get("age_swap_normal_fall")))
             if f is not None]
    tests.append(("adult Normal images", None if not falls else
                  any(f.value >= t.material_gap and f.low > 0 for _, f in falls),
                  "; ".join(f"{what} falls by {f.text(' points')}" for what, f in falls)
                  or "n/a"))
    return tests


def shortcut_rule(t: Thresholds = THRESHOLDS) -> str:
    """The shortcut tests' rule, in words, with the thresholds in force."""
    return (f"not supported if a shortcut test fires, supported if none fires and each has a "
            f"result. A test fires when: the lungs blacked out keep at least "
            f"{100 * t.retained_shortcut:.0f}% of the accuracy above chance; image statistics "
            f"reach {100 * t.statistics_rival:.0f}% of the network's accuracy above chance; the "
            f"source probe reaches {100 * t.source_recognisable:.0f}% while inside some "
            f"collection the classes are told apart no better than its largest class; "
            f"saliency in the lung fields is below {t.lung_enrichment:g} times their area, "
            f"over all images or over the COVID-19 images (with maps that pass the "
            f"randomisation check); accuracy or Normal's recall falls "
            f"by {100 * t.material_gap:.0f} points or more (interval above 0) with adult "
            f"Normal images")


def biomarker_verdict(evidence: dict, t: Thresholds = THRESHOLDS) -> tuple[str, str]:
    tests = shortcut_tests(evidence, t)
    text = "; ".join(f"{name}: {'FIRES' if fired else 'no' if fired is False else 'no result'}"
                     f" ({figures})" for name, fired, figures in tests)
    if any(fired for _, fired, _ in tests):
        return NOT_SUPPORTED, text
    if all(fired is False for _, fired, _ in tests):
        return SUPPORTED, text
    return CANNOT_TELL, text


# --------------------------------------------------------------------------------------------
# Strategy differences (the third claim)


def strategy_differences(run_path: str | Path, config: str, n_boot: int = N_BOOT,
                         seed: int = SEED) -> pd.DataFrame:
    """``config``'s accuracy minus every other configuration's, paired on the same images."""
    from .report import run_configs

    run_path = Path(run_path)
    ours = predictions(run_path, config)
    rows = []
    if ours.empty:
        return pd.DataFrame(columns=["other", "difference", "diff_low", "diff_high", "paired"])
    for other in run_configs(run_path):
        if other == config:
            continue
        theirs = predictions(run_path, other)
        if theirs.empty:
            continue
        shared = sorted(set(ours["image_id"]) & set(theirs["image_id"]))
        a = ours[ours["image_id"].isin(shared)]
        b = theirs[theirs["image_id"].isin(shared)]
        rows.append({"other": other, **bootstrap_difference(a, b, "accuracy", n_boot=n_boot,
                                                            seed=seed)})
    return pd.DataFrame(rows, columns=["other", "difference", "diff_low", "diff_high", "paired"])


# --------------------------------------------------------------------------------------------
# Figures (from the stored tables; an image is drawn only where the caller passes one)


def _new_figure(*args, **kwargs):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    plt.close(fig)  # shown once, where it is returned
    return fig, axes


def interval_figure(rows: list[tuple[str, Figure]], title: str, chance: float | None = None,
                    xlabel: str = "accuracy (%)"):
    """One horizontal bar per (label, figure) with its 95% interval; a dashed line at chance."""
    fig, ax = _new_figure(figsize=(6.4, 0.55 * len(rows) + 1.2))
    labels = [label for label, _ in rows]
    values = np.array([100 * f.value for _, f in rows])
    low = np.array([100 * (f.value - f.low) if not math.isnan(f.low) else 0 for _, f in rows])
    high = np.array([100 * (f.high - f.value) if not math.isnan(f.high) else 0 for _, f in rows])
    y = np.arange(len(rows))[::-1]
    ax.barh(y, values, color="#8fb3d9", xerr=[low, high], capsize=3)
    for yi, v in zip(y, values):
        ax.text(1, yi, f"{v:.1f}", va="center", fontsize=8)
    if chance is not None and not math.isnan(chance):
        ax.axvline(100 * chance, color="grey", linestyle="--", linewidth=1)
        ax.text(100 * chance, y.max() + 0.55, " chance", fontsize=8, color="grey")
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, 105)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _lung_outline(ax, size: int) -> None:
    """The lung ellipses of an image whose content fills the square, as a guide."""
    t = np.linspace(0, 2 * np.pi, 100)
    for side in (-1, 1):
        x = (0.5 + side * regions.LUNG_CENTRE_X + regions.LUNG_HALF_WIDTH * np.cos(t)) * size
        y = (regions.LUNG_CENTRE_Y + regions.LUNG_HALF_HEIGHT * np.sin(t)) * size
        ax.plot(x - 0.5, y - 0.5, color="white", linewidth=0.8, linestyle="--")


def mean_maps_figure(map_table: pd.DataFrame, size: int = 64):
    """Each class's mean Grad-CAM map (no image in it), with the nominal lung fields outlined."""
    from .explain import upsample

    names = list(dict.fromkeys(map_table["label"]))
    fig, axes = _new_figure(1, len(names), figsize=(1.7 * len(names), 2.1), squeeze=False)
    maps = upsample(stored_maps(map_table).astype(np.float32), size)
    for ax, name in zip(axes[0], names):
        mean = maps[(map_table["label"] == name).to_numpy()].mean(axis=0)
        ax.imshow(mean, cmap="jet", vmin=0, vmax=max(1e-6, float(mean.max())))
        _lung_outline(ax, size)
        ax.set_title(f"{name} (n={int((map_table['label'] == name).sum())})", fontsize=8)
        ax.axis("off")
    fig.suptitle("Mean Grad-CAM map per class (dashed: lung fields of a full-frame image)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def saliency_examples_figure(map_table: pd.DataFrame, images: dict, per_class: int = 2):
    """Grad-CAM over the image for up to ``per_class`` images of each class; ``images`` maps
    image ids to pixels (pass only images that may be shown)."""
    from .explain import upsample

    shown = map_table[map_table["image_id"].isin(list(images))]
    shown = shown.groupby("label", sort=False).head(per_class)
    if shown.empty:
        fig, ax = _new_figure(figsize=(6, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no images to show", ha="center", va="center")
        return fig
    columns = min(8, len(shown))
    rows = -(-len(shown) // columns)
    fig, axes = _new_figure(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    maps = stored_maps(shown).astype(np.float32)
    for ax, (_, row), heat in zip(axes.ravel(), shown.iterrows(), maps):
        pixels = images[row["image_id"]]
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=255)
        ax.imshow(upsample(heat[None], pixels.shape[0])[0], cmap="jet", alpha=0.4, vmin=0,
                  vmax=1)
        ax.contour(regions.lung_fields(pixels), levels=[0.5], colors="white", linewidths=0.6)
        ax.set_title(f"{row['label']}\nanswered {row['predicted']}", fontsize=7)
    fig.tight_layout()
    return fig


def randomisation_figure(check: pd.DataFrame):
    """Spearman correlation and SSIM with the trained maps, by cascading step (mean +/- sd)."""
    from .explain import randomisation_summary

    summary = randomisation_summary(check)
    fig, ax = _new_figure(figsize=(6.4, 3.2))
    x = np.arange(len(summary))
    for column, label in (("spearman", "Spearman rank correlation"), ("ssim", "SSIM")):
        ax.errorbar(x, summary[column], yerr=summary[f"{column}_sd"].fillna(0), marker="o",
                    capsize=3, label=label)
    ax.axhline(THRESHOLDS.randomisation_max_corr, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, summary["step"], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(-0.2, 1.05)
    ax.set_ylabel("similarity to the trained maps")
    ax.set_title("Cascading randomisation, top layers first", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# For the book: what is stored, and the numbers its prose uses

#: Each experiment: its stored table, and the notebook that writes it.
EXPERIMENT_TABLES = {
    "1. patient-grouped folds": ("patient_folds", "06_audit_1_retraining"),
    "2. source probe": ("source_probe", "06_audit_1_retraining"),
    "2. accuracy within a collection": ("within_collection", "06_audit_1_retraining"),
    "3. masked inputs": ("masked_inputs", "06_audit_1_retraining"),
    "4. trivial image statistics": ("image_statistics", "06_audit_2_image_statistics"),
    "5. saliency": ("saliency_summary", "06_audit_3_saliency_external"),
    "5. randomisation check": ("randomisation_summary", "06_audit_3_saliency_external"),
    "6. external data": ("external", "06_audit_3_saliency_external"),
    "7. age and source swap": ("age_swap", "06_audit_1_retraining"),
    "8. intervals and trivial baselines": ("uncertainty", "06_audit_4_verdict"),
}
NOT_RUN = "not run yet"


def status_table(run_path: str | Path) -> pd.DataFrame:
    """Which experiments have stored results for the run, and which notebook makes the rest."""
    rows = []
    for experiment, (table, notebook) in EXPERIMENT_TABLES.items():
        done = (audit_dir(run_path) / f"{table}.csv").is_file()
        rows.append({"experiment": experiment, "stored": "yes" if done else "no",
                     "made by": f"notebooks/{notebook}.py"})
    return pd.DataFrame(rows).set_index("experiment")


def _pct(figure: Figure | None) -> str:
    return NOT_RUN if figure is None else figure.text()


def _points(figure: Figure | None) -> str:
    """A difference in percentage points with its interval."""
    if figure is None:
        return NOT_RUN
    interval = "" if math.isnan(figure.low) else \
        f" (95% CI {100 * figure.low:.1f} to {100 * figure.high:.1f})"
    return f"{100 * figure.value:.1f} percentage points{interval}"


def prose_numbers(run_path: str | Path) -> dict:
    """Every number the audit chapter's prose uses, as ready phrases, by glue name."""
    run_path = Path(run_path)
    n: dict = {}
    profile = results.read_profile(run_path) if (run_path / "profile.json").is_file() else None
    folds = audit_settings(profile).test_folds if profile else None
    n["audit_folds_text"] = "no run yet" if profile is None else (
        f"all {profile.n_folds} test folds" if folds is None else
        f"test fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} of "
        f"{profile.n_folds} (to keep the demonstration within its time budget)")
    n["audit_config"] = audit_settings(profile).config if profile else "from_scratch"

    patient = read_table(run_path, "patient_folds")
    n["audit_patient_image_text"] = _pct(_figure(patient, {"metric": "accuracy"},
                                                 "image_level", "image_level_low",
                                                 "image_level_high"))
    n["audit_patient_grouped_text"] = _pct(_figure(patient, {"metric": "accuracy"},
                                                   "patient_level", "patient_level_low",
                                                   "patient_level_high"))
    n["audit_patient_gap_text"] = _points(_figure(patient, {"metric": "accuracy"},
                                                  "difference", "diff_low", "diff_high"))
    n["audit_patient_leakage_text"] = NOT_RUN if patient is None else \
        f"{100 * float(patient['leakage_image_level'].iloc[0]):.0f}%"

    probe = read_table(run_path, "source_probe")
    n["audit_probe_text"] = _pct(_figure(probe, {"collection": "all"}, "accuracy"))
    majority = _figure(probe, {"collection": "all"}, "majority")
    n["audit_probe_majority_text"] = NOT_RUN if majority is None else \
        f"{100 * majority.value:.1f}%"
    n["audit_probe_collections"] = NOT_RUN if probe is None else \
        str(int((probe["collection"] != "all").sum()))

    masked = read_table(run_path, "masked_inputs")
    for key, name in (("full", "full image"), ("border", "border only"),
                      ("lung", "lung fields only")):
        n[f"audit_{key}_text"] = _pct(_figure(masked, {"input": name, "metric": "accuracy"}))
        kept = _figure(masked, {"input": name, "metric": "accuracy"}, "retained")
        n[f"audit_{key}_retained_text"] = NOT_RUN if kept is None or math.isnan(kept.value) \
            else f"{100 * kept.value:.0f}%"
    chance = _figure(masked, {"input": "full image", "metric": "accuracy"}, "chance")
    n["audit_masked_chance_text"] = NOT_RUN if chance is None else f"{100 * chance.value:.1f}%"

    stats = read_table(run_path, "image_statistics")
    if stats is None:
        n["audit_stats_best_text"] = n["audit_stats_best_model"] = NOT_RUN
        n["audit_stats_2class_text"] = NOT_RUN
    else:
        best = stats[(stats["metric"] == "accuracy") & (stats["features"] == "all")] \
            .sort_values("value", ascending=False).iloc[0]
        n["audit_stats_best_model"] = str(best["model"])
        n["audit_stats_best_text"] = _pct(Figure(best["value"], best["ci_low"], best["ci_high"]))
        n["audit_stats_2class_text"] = _pct(_figure(stats, {"model": best["model"],
                                                            "features": "all",
                                                            "metric": "acc_2class"}))

    saliency = read_table(run_path, "saliency_summary")
    overall = None if saliency is None else saliency[saliency["class"] == "all"]
    if overall is None or overall.empty:
        for key in ("lung_share", "lung_area", "enrichment", "border_share", "padding_share"):
            n[f"audit_saliency_{key}_text"] = NOT_RUN
        n["audit_saliency_covid_text"] = ""
    else:
        row = overall.iloc[0]
        n["audit_saliency_lung_share_text"] = f"{100 * row['saliency_lung_fields']:.0f}%"
        n["audit_saliency_lung_area_text"] = f"{100 * row['area_lung_fields']:.0f}%"
        n["audit_saliency_enrichment_text"] = f"{row['lung_enrichment']:.2f}"
        covid = saliency[saliency["class"] == paper.POSITIVE_CLASS]
        n["audit_saliency_covid_text"] = "" if covid.empty else \
            f"; for the COVID-19 images alone, {covid['lung_enrichment'].iloc[0]:.2f}"
        n["audit_saliency_border_share_text"] = \
            f"{100 * (row['saliency_border_band'] + row['saliency_padding']):.0f}%"
        n["audit_saliency_padding_share_text"] = \
            f"{100 * (row['area_border_band'] + row['area_padding']):.0f}%"
    check = read_table(run_path, "randomisation_summary")
    if check is None or check.empty:
        n["audit_randomised_spearman_text"] = n["audit_logits_spearman_text"] = NOT_RUN
    else:
        ordered = check.sort_values("layers")
        n["audit_logits_spearman_text"] = f"{ordered.iloc[0]['spearman']:.2f}"
        n["audit_randomised_spearman_text"] = f"{ordered.iloc[-1]['spearman']:.2f}"

    external = read_table(run_path, "external")
    n["audit_external_internal_text"] = _pct(_figure(external, {"metric": "accuracy"},
                                                     "internal", "internal_low",
                                                     "internal_high"))
    n["audit_external_external_text"] = _pct(_figure(external, {"metric": "accuracy"},
                                                     "external", "external_low",
                                                     "external_high"))
    n["audit_external_gap_text"] = _points(_figure(external, {"metric": "accuracy"},
                                                   "difference", "diff_low", "diff_high"))
    record = read_record(run_path, "external") or {}
    n["audit_external_kind"] = record.get("kind", NOT_RUN)
    n["audit_external_images"] = record.get("images", 0)
    n["audit_external_views_text"] = ", ".join(
        f"{k}: {v}" for k, v in record.get("by_class_and_view", record.get("by_class", {}))
        .items()) or NOT_RUN

    swap = read_table(run_path, "age_swap")
    for metric, key in (("accuracy", "acc"), ("acc_2class", "2class"), ("recall_Normal", "normal")):
        n[f"audit_swap_paediatric_{key}_text"] = _pct(_figure(
            swap, {"metric": metric}, "paediatric_normal", "paediatric_normal_low",
            "paediatric_normal_high"))
        n[f"audit_swap_adult_{key}_text"] = _pct(_figure(
            swap, {"metric": metric}, "adult_normal", "adult_normal_low", "adult_normal_high"))
        n[f"audit_swap_fall_{key}_text"] = _points(_figure(swap, {"metric": metric},
                                                           "difference", "diff_low",
                                                           "diff_high"))
    n.update(result_sentences(n))
    verdicts = verdict_table(collect_evidence(run_path))["verdict"]
    for verdict in (SUPPORTED, NOT_SUPPORTED, CANNOT_TELL):
        n[f"audit_claims_{verdict.replace(' ', '_')}"] = int((verdicts == verdict).sum())
    return n


def result_sentences(n: dict) -> dict:
    """Each section's result as whole sentences (``audit_<section>_sentence``), or a sentence
    saying that the experiment has not been run for this run, so the prose reads either way."""
    def ready(*keys):
        return all(n.get(k) not in (None, NOT_RUN) for k in keys)

    not_run = "This experiment has not been run for the run shown yet."
    out = {}
    out["audit_patient_sentence"] = (
        f"With image-level folds {n['audit_patient_leakage_text']} of the test images had a "
        f"patient in training. Accuracy with image-level folds was "
        f"{n['audit_patient_image_text']} and with patient-grouped folds "
        f"{n['audit_patient_grouped_text']}: image-level minus patient-grouped, "
        f"{n['audit_patient_gap_text']}.") if ready("audit_patient_gap_text") else not_run
    out["audit_probe_sentence"] = (
        f"The probe named the collection of {n['audit_probe_text']} of the images "
        f"({n['audit_probe_collections']} collections; always answering the largest would "
        f"score {n['audit_probe_majority_text']}).") if ready("audit_probe_text") else not_run
    out["audit_masked_sentence"] = (
        f"With full images the accuracy was {n['audit_full_text']}; with the lungs blacked out "
        f"{n['audit_border_text']}, keeping {n['audit_border_retained_text']} of the accuracy "
        f"above chance ({n['audit_masked_chance_text']}, the largest class); with the lung "
        f"fields alone {n['audit_lung_text']}, keeping {n['audit_lung_retained_text']}.") \
        if ready("audit_border_text", "audit_lung_text") else not_run
    out["audit_stats_sentence"] = (
        f"The better of the two ({n['audit_stats_best_model']}) was right for "
        f"{n['audit_stats_best_text']} of the images over all classes and for "
        f"{n['audit_stats_2class_text']} for COVID-19 against the rest.") \
        if ready("audit_stats_best_text") else not_run
    out["audit_saliency_sentence"] = (
        f"On average {n['audit_saliency_lung_share_text']} of a map lay in the lung fields, "
        f"which cover {n['audit_saliency_lung_area_text']} of the image (a ratio of "
        f"{n['audit_saliency_enrichment_text']}; 1 is what a map blind to the lungs gives"
        f"{n['audit_saliency_covid_text']}), "
        f"and {n['audit_saliency_border_share_text']} in the border band of the frame and the "
        f"padding, which cover {n['audit_saliency_padding_share_text']}.") \
        if ready("audit_saliency_enrichment_text") else not_run
    out["audit_randomisation_sentence"] = (
        f"With only the last layer randomised the maps kept a rank correlation of "
        f"{n['audit_logits_spearman_text']} with the trained network's; with every weight "
        f"randomised, {n['audit_randomised_spearman_text']}.") \
        if ready("audit_randomised_spearman_text") else not_run
    out["audit_external_sentence"] = (
        f"The network of one trained fold was applied to {n['audit_external_images']} images "
        f"from {n['audit_external_kind']}. It was right for "
        f"{n['audit_external_internal_text']} of its own test fold and for "
        f"{n['audit_external_external_text']} of these: internal minus external, "
        f"{n['audit_external_gap_text']}.") if ready("audit_external_gap_text") else not_run
    out["audit_swap_sentence"] = (
        f"Accuracy over all classes went from {n['audit_swap_paediatric_acc_text']} to "
        f"{n['audit_swap_adult_acc_text']} (paediatric minus adult Normal, "
        f"{n['audit_swap_fall_acc_text']}), COVID-19 against the rest from "
        f"{n['audit_swap_paediatric_2class_text']} to {n['audit_swap_adult_2class_text']} "
        f"({n['audit_swap_fall_2class_text']}), and the Normal images' own accuracy from "
        f"{n['audit_swap_paediatric_normal_text']} to {n['audit_swap_adult_normal_text']} "
        f"({n['audit_swap_fall_normal_text']}).") if ready("audit_swap_fall_acc_text") \
        else not_run
    return out


def two_way_rows(table: pd.DataFrame | None, names: dict[str, str],
                 metrics_shown=("accuracy", "acc_2class")) -> list[tuple[str, Figure]]:
    """Bars for :func:`interval_figure` from a :func:`compare` table: one per name and metric."""
    if table is None:
        return []
    rows = []
    for metric in metrics_shown:
        for column, label in names.items():
            figure = _figure(table, {"metric": metric}, column, f"{column}_low",
                             f"{column}_high")
            if figure is not None:
                rows.append((f"{label}, {'n-class' if metric == 'accuracy' else '2-class'}",
                             figure))
    return rows


def percent_table(table: pd.DataFrame, columns) -> pd.DataFrame:
    """A copy with the named fraction columns in percent (for display)."""
    out = table.copy()
    for column in columns:
        if column in out:
            out[column] = 100 * out[column]
    return out


def real_data_figures(results_root: str | Path | None = None) -> pd.DataFrame:
    """The audit's headline figure of every experiment stored for a real-data run."""
    from .profiles import PROFILES

    root = Path(results_root) if results_root is not None else paths.results_dir()
    rows = []
    for folder in sorted(p.parent for p in root.glob(f"*/{AUDIT_FOLDER}")):
        profile_json = folder / "profile.json"
        if profile_json.is_file():
            real = results.read_profile(folder).dataset == "real"
        else:
            real = folder.name in PROFILES and PROFILES[folder.name].dataset == "real"
        if not real:
            continue
        numbers = prose_numbers(folder)
        for experiment, key in (
                ("1. image-level minus patient-grouped accuracy", "audit_patient_gap_text"),
                ("2. source probe accuracy", "audit_probe_text"),
                ("3. accuracy with the lungs blacked out", "audit_border_text"),
                ("3. accuracy on the lung fields alone", "audit_lung_text"),
                ("4. image statistics, best accuracy", "audit_stats_best_text"),
                ("5. saliency in the lung fields / their area",
                 "audit_saliency_enrichment_text"),
                ("6. internal minus external accuracy", "audit_external_gap_text"),
                ("7. accuracy fall with adult Normal images", "audit_swap_fall_acc_text")):
            if numbers[key] != NOT_RUN:
                rows.append({"run": folder.name, "experiment": experiment,
                             "figure": numbers[key]})
    return pd.DataFrame(rows, columns=["run", "experiment", "figure"])
