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
under ``results/<run>/audit/<experiment>.csv``, written atomically; :mod:`cxrlib.verdict` reads
them and says, by explicit rules, which of the paper's claims the evidence supports, and
:mod:`cxrlib.audit_report` draws them for the notebooks and the book.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import cv, dataset, metrics, paper, regions, results
from .profiles import Profile, audit_settings
from .runs import fold_classes, run_configs

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
# Strategy differences (the third claim)


def strategy_differences(run_path: str | Path, config: str, n_boot: int = N_BOOT,
                         seed: int = SEED) -> pd.DataFrame:
    """``config``'s accuracy minus every other configuration's, paired on the same images."""
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
# Command line: the audit notebooks alone


def add_arguments(parser) -> None:
    from .profiles import PROFILES

    parser.add_argument("--profile", default="default", choices=sorted(PROFILES),
                        help="run profile (cxrlib/profiles.py); default: %(default)s")
    parser.add_argument("--run", default="", help="the main run (default: the profile's name)")
    parser.add_argument("--data", default="", help="folder of the real sources")
    parser.add_argument("--no-train", action="store_true",
                        help="analyse only the folds already stored (e.g. real-data "
                             "retrainings made on a GPU with scripts/gpu_audit.sh); train "
                             "nothing")


def main(args) -> int:
    """Execute the four audit notebooks (as ``python -m cxrlib book`` does after the results),
    their records in ``runs/<run>/``; the book is not built."""
    from . import paths, pipeline
    from .profiles import get_profile

    profile = get_profile(args.profile)
    run = args.run or profile.name
    pipeline.kernel_environment(paths.root())
    for step in pipeline.plan_audit(profile, run, args.data):
        if args.no_train:
            step.parameters["train"] = False
        pipeline.execute_step(step, paths.root(), paths.runs_dir() / run,
                              key_after=lambda: "python -m cxrlib audit")
    print(f"audit tables: {audit_dir(results.run_dir(run))}")
    return 0
