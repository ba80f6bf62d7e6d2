"""How the audit scores and compares predictions: every figure with its patient-level 95%
bootstrap interval (:mod:`cxrlib.core.metrics`), and differences with theirs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlib.core import metrics, paper
from cxrlib.experiment import results

N_BOOT = 1000
SEED = 2020


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


def pick_per_class(rows: pd.DataFrame, per_class: int, seed: int = SEED) -> pd.DataFrame:
    """Up to ``per_class`` rows of every label, drawn reproducibly."""
    shuffled = rows.sample(frac=1.0, random_state=seed)
    return shuffled.groupby("label", sort=False).head(per_class).sort_index()
