"""The audit's comparisons of stored runs: each takes run folders and returns a tidy table.

1. :func:`patient_folds`: image-level against patient-grouped folds.
2. :func:`source_probe` and :func:`within_collection`: the collection as the target; the
   disease inside each collection that holds several classes.
3. :func:`masked_inputs`: the lung fields blacked out, and the lung fields alone.
3b. :func:`harmonised`: every image through one common resolution first; the disease and the
   source probe before and after.
7. :func:`age_swap`: the paediatric Normal class replaced by adult NIH "No Finding" images.
8. :func:`headline_uncertainty`: every headline figure with its interval, trivial rules beside;
   :func:`strategy_differences`: from scratch against every other configuration, paired.

(Experiments 4 to 6 need images or a network: :mod:`.statistics`, :mod:`.saliency`,
:mod:`.external`.) Every interval is the patient-level bootstrap of :mod:`.scoring`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.audit.scoring import (
    N_BOOT,
    SEED,
    bootstrap_difference,
    common_folds,
    compare,
    majority_rule,
    majority_share,
    predictions,
    retained_share,
    scores,
)
from cxrlib.core import metrics
from cxrlib.experiment import results
from cxrlib.experiment.runs import run_configs

#: Manifest sources that are copies of one collection (the within-collection accuracy pools them).
SAME_COLLECTION = {"nih_rxtorax": "nih"}


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


HARMONISED_COLUMNS = ["harmonise_px", "measure", "before", "before_low", "before_high", "after",
                      "after_low", "after_high", "change", "change_low", "change_high", "paired",
                      "n", "folds"]


def source_resolutions(manifest: pd.DataFrame, classes, harmonise_px: int) -> pd.DataFrame:
    """The original images' long side for every class and source of the run (median and range)
    and the share that harmonising to ``harmonise_px`` reduces (those longer than it)."""
    used = manifest[(manifest["excluded"] == "") & manifest["label"].isin(list(classes))]
    long_side = np.maximum(used["orig_width"].astype(int), used["orig_height"].astype(int))
    groups = long_side.groupby([used["label"], used["source"]], sort=False)
    table = pd.DataFrame({"images": groups.size(), "median_long_side": groups.median(),
                          "smallest": groups.min(), "largest": groups.max(),
                          "reduced": groups.apply(lambda s: float((s > harmonise_px).mean()))})
    return table.reset_index().rename(columns={"label": "class"})


def harmonised(main_run: str | Path, probe_run: str | Path, levels: dict, config: str,
               n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Accuracy before and after harmonising the resolution, for the disease (the main run
    against ``<run>-harmonised``) and for the source probe (``<run>-source-probe`` against
    ``<run>-harmonised-source-probe``), at each common long side of ``levels`` ({px: (run,
    probe run)}). ``change`` is after minus before, with its interval: paired, as harmonising
    keeps every image and fold. Pairs without a common finished fold are left out."""
    rows = []
    for px, (run, probe) in sorted(levels.items()):
        for measure, before, after in (("disease", main_run, run),
                                       ("source probe", probe_run, probe)):
            folds = common_folds(before, after, config=config)
            if not folds:
                continue
            table = compare(predictions(after, config, folds), predictions(before, config, folds),
                            "after", "before", n_boot, seed)
            row = table.set_index("metric").loc["accuracy"]
            rows.append({"harmonise_px": px, "measure": measure, "n": int(row["n_after"]),
                         "folds": ",".join(map(str, folds)), "paired": bool(row["paired"]),
                         **{f"{side}{end}": row[f"{side}{end}"] for side in ("before", "after")
                            for end in ("", "_low", "_high")},
                         "change": row["difference"], "change_low": row["diff_low"],
                         "change_high": row["diff_high"]})
    return pd.DataFrame(rows, columns=HARMONISED_COLUMNS)


def age_swap(main_run: str | Path, swap_run: str | Path, config: str, n_boot: int = N_BOOT,
             seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normal as the paper has it (children) against Normal from adult NIH "No Finding" images.

    The audit compares the patient-grouped retraining (``main_run``) with the patient-grouped
    swap, so that only the Normal images differ.

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


HEADLINE_COLUMNS = ["model", "kind", "metric", "value", "ci_low", "ci_high", "n"]


def headline_uncertainty(run_path: str | Path, statistics: pd.DataFrame | None = None,
                         n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Every configuration's figures with their patient-level 95% intervals, and beside them
    the majority-class rule (whose 2-class accuracy is the "never COVID-19" rule's when Normal
    is the largest class) and, if given, the image-statistics classifiers' out-of-fold
    predictions (:func:`cxrlib.audit.statistics.image_statistics`)."""
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
        return pd.DataFrame(columns=HEADLINE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[HEADLINE_COLUMNS]


def strategy_differences(run_path: str | Path, config: str, n_boot: int = N_BOOT,
                         seed: int = SEED) -> pd.DataFrame:
    """``config``'s accuracy minus every other configuration's, paired on the same images."""
    run_path = Path(run_path)
    columns = ["other", "difference", "diff_low", "diff_high", "paired"]
    ours = predictions(run_path, config)
    if ours.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for other in run_configs(run_path):
        theirs = predictions(run_path, other) if other != config else pd.DataFrame()
        if theirs.empty:
            continue
        shared = sorted(set(ours["image_id"]) & set(theirs["image_id"]))
        a = ours[ours["image_id"].isin(shared)]
        b = theirs[theirs["image_id"].isin(shared)]
        rows.append({"other": other, **bootstrap_difference(a, b, "accuracy", n_boot=n_boot,
                                                            seed=seed)})
    return pd.DataFrame(rows, columns=columns)
