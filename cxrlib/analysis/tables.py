"""The per-run tables of the book: one configuration's figures, folds, classes and confusion
matrix, and every configuration side by side, read from the results store only.

Nothing here trains: every function reads ``results/<run>/`` (through :mod:`cxrlib.experiment.runs`) and
scores it with :mod:`cxrlib.core.metrics`. Figures are percentages, as the paper prints them; AUC
stays a fraction. Each configuration's summary (with its bootstrap intervals) is computed once
per stored state of its folds (:func:`config_summary`); every table and glued number reuses it.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core import metrics, paper
from cxrlib.core.profiles import PROFILES, parse_config
from cxrlib.experiment import results, runs

#: Bootstrap settings for every interval the report shows (report settings, not run settings:
#: they change no stored result, only how it is summarised).
BOOTSTRAP_REPLICATES = 1000
BOOTSTRAP_SEED = 2020
TWO_CLASS_METRICS = ("acc_2class", "sensitivity", "specificity")
METRIC_LABELS = {
    "acc_2class": "2-class accuracy", "acc_7class": "7-class accuracy",
    "accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
    "auc": "ROC AUC (COVID-19)",
}


def config_label(config: str) -> str:
    """How the paper names a configuration in its tables (in our spelling)."""
    strategy, blocks = parse_config(config)
    return {"off_the_shelf": "Off-the-shelf features", "from_scratch": "Training from scratch",
            "fine_tune": f"Fine-tuning {blocks}"}[strategy]


def missing_note(run_path: str | Path, config: str) -> str:
    """What to run to fill an empty configuration (Markdown)."""
    run_path = runs.resolve(run_path)
    profile = runs.run_profile(run_path)
    name = profile.name if profile else (run_path.name if run_path.name in PROFILES
                                         else "PROFILE")
    expected = profile.n_folds if profile else "?"
    done = results.done_folds(run_path, config)
    run_opt = "" if run_path.name == name else f" --run {run_path.name}"
    command = f"python -m cxrlib run --profile {name} --configs {config}{run_opt}"
    if not done:
        return (f"**{config_label(config)}**: no finished folds in run `{run_path.name}` yet. "
                f"Run `{command}` (it resumes where it stopped).")
    return (f"**{config_label(config)}**: {len(done)} of {expected} folds finished in run "
            f"`{run_path.name}`; the figures below use those only. Run `{command}` to finish.")


def predictions(run_path: str | Path, config: str) -> pd.DataFrame:
    return results.read_predictions(runs.resolve(run_path), config)


def _signature(run_path: Path, config: str) -> tuple:
    """What a configuration's scores depend on: its finished folds and their files' times."""
    return tuple((f, (results.fold_dir(run_path, config, f) / "predictions.csv").stat().st_mtime_ns)
                 for f in results.done_folds(run_path, config))


@lru_cache(maxsize=64)
def _cached_summary(run: str, config: str, signature: tuple, n_boot: int, seed: int):
    run_path = Path(run)
    return metrics.summary(predictions(run_path, config), runs.run_classes(run_path),
                           n_boot=n_boot, seed=seed)


def config_summary(run_path: str | Path, config: str, n_boot: int = BOOTSTRAP_REPLICATES,
                   seed: int = BOOTSTRAP_SEED) -> pd.DataFrame | None:
    """:func:`cxrlib.core.metrics.summary` of one configuration (fractions), None without results."""
    run_path = runs.resolve(run_path)
    signature = _signature(run_path, config)
    if not signature:
        return None
    return _cached_summary(str(run_path), config, signature, n_boot, seed).copy()


def our_figure(summary: pd.DataFrame | None, metric: str) -> tuple[float, float, float, float]:
    """(value, ci_low, ci_high, fold_sd) in percent for a paper metric name; NaN if absent."""
    key = "accuracy" if metric == "acc_7class" else metric
    if summary is None or key not in set(summary["metric"]):
        return (math.nan,) * 4
    row = summary.set_index("metric").loc[key]
    scale = 1.0 if key == "auc" else 100.0
    return tuple(float(row[c]) * scale for c in ("value", "ci_low", "ci_high", "fold_sd"))


def summary_table(run_path: str | Path, config: str, n_boot: int = BOOTSTRAP_REPLICATES,
                  seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """A configuration's figures for display: metric, value, fold sd and 95% CI (percent)."""
    s = config_summary(run_path, config, n_boot, seed)
    columns = ["metric", "value", "fold_sd", "ci_low", "ci_high", "n_folds"]
    if s is None:
        return pd.DataFrame(columns=columns)
    n = len(s.attrs["classes"])
    out = s[columns].copy()
    scale = np.where(out["metric"] == "auc", 1.0, 100.0)
    for column in ("value", "fold_sd", "ci_low", "ci_high"):
        out[column] = out[column] * scale
    out["metric"] = [f"{n}-class accuracy (%)" if m == "accuracy" else
                     METRIC_LABELS[m] + ("" if m == "auc" else " (%)") for m in out["metric"]]
    return out.set_index("metric")


def display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary_table` for a book page: each figure with its 95% interval on one line
    ("89.5 [88.4, 90.6]"), its spread across folds and the folds it pools."""
    auc = summary.index.str.startswith(METRIC_LABELS["auc"])
    return pd.DataFrame({
        "figure [95% CI]": [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if a else figure_cell(v, lo, hi)
                            for v, lo, hi, a in zip(summary["value"], summary["ci_low"],
                                                    summary["ci_high"], auc)],
        "fold sd": [f"{sd:.3f}" if a else figure_cell(sd) for sd, a in
                    zip(summary["fold_sd"], auc)],
        "folds": summary["n_folds"].astype(int),
    }, index=summary.index)


def fold_table(run_path: str | Path, config: str) -> pd.DataFrame:
    """One row per finished fold: fold, n_test, accuracies, sensitivity, specificity (percent),
    epochs_run, train_seconds and training images/s (from fold.json; NaN when not recorded)."""
    run_path = runs.resolve(run_path)
    columns = ["fold", "n_test", "accuracy", "acc_2class", "sensitivity", "specificity",
               "epochs_run", "train_seconds", "images_per_s"]
    pred = predictions(run_path, config)
    if pred.empty:
        return pd.DataFrame(columns=columns)
    table = metrics.fold_metrics(pred, runs.run_classes(run_path)).rename(columns={"n": "n_test"})
    for column in ("accuracy", "acc_2class", "sensitivity", "specificity"):
        table[column] = table[column] * 100 if column in table else np.nan
    info = results.read_fold_info(run_path, config)
    fields = {"epochs_run": ("epochs_run",), "train_seconds": ("train_seconds",),
              "images_per_s": ("train_images_per_second", "images_per_second")}
    for column, candidates in fields.items():
        values = runs.first_column(info, candidates) if not info.empty else None
        if values is not None and "fold" in info:
            table[column] = table["fold"].map(dict(zip(info["fold"].astype(int), values)))
        else:
            table[column] = np.nan
    return table[columns]


def display_folds(folds: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """:func:`fold_table` for a book page: one row per test fold, columns named for a reader."""
    names = {"n_test": "test images", "accuracy": f"{n_classes}-class accuracy (%)",
             "acc_2class": "2-class accuracy (%)", "sensitivity": "sensitivity (%)",
             "specificity": "specificity (%)", "epochs_run": "epochs",
             "train_seconds": "training (s)", "images_per_s": "training images/s"}
    return folds.set_index("fold").rename(columns=names)


def per_class_table(run_path: str | Path, config: str) -> pd.DataFrame:
    """Precision, recall and F1 per class (percent) with support, pooled over folds."""
    run_path = runs.resolve(run_path)
    pred = predictions(run_path, config)
    if pred.empty:
        return pd.DataFrame(columns=["precision", "recall", "f1", "support"])
    table = metrics.per_class(pred, runs.run_classes(run_path))
    table[["precision", "recall", "f1"]] *= 100
    return table


def figure_cell(value: float, low: float = math.nan, high: float = math.nan) -> str:
    """A figure with its interval on one line, one decimal: ``89.5 [88.4, 90.6]``; "–" for none."""
    if pd.isna(value):
        return "–"
    return f"{value:.1f}" + ("" if pd.isna(low) else f" [{low:.1f}, {high:.1f}]")


def folds_cell(done: int, expected: int) -> str:
    """The folds a figure pools: ``8 of 10``, "none" without results."""
    return "none" if not done else f"{done} of {expected}"


def strategy_overview(run_path: str | Path, configs=None, n_boot: int = BOOTSTRAP_REPLICATES,
                      seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """One row per configuration: folds done (and expected), n-class accuracy, 2-class accuracy,
    sensitivity, specificity (percent, each with its 95% interval ``_ci_low``/``_ci_high``),
    the accuracy's fold sd, and AUC, as the paper defines them; NaN without results."""
    run_path = runs.resolve(run_path)
    profile = runs.run_profile(run_path)
    rows = []
    for config in configs if configs is not None else runs.run_configs(run_path):
        summary = config_summary(run_path, config, n_boot, seed)
        row = {"configuration": config, "strategy": config_label(config),
               "folds": 0 if summary is None else int(summary["n_folds"].iloc[0]),
               "expected_folds": profile.n_folds if profile is not None else 0}
        for metric in ("acc_7class", *TWO_CLASS_METRICS, "auc"):
            name = "accuracy" if metric == "acc_7class" else metric
            value, low, high, sd = our_figure(summary, metric)
            row.update({name: value, f"{name}_ci_low": low, f"{name}_ci_high": high})
            if metric == "acc_7class":
                row["accuracy_sd"] = sd
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["classes"] = list(runs.run_classes(run_path))
    return frame


def display_overview(overview: pd.DataFrame) -> pd.DataFrame:
    """:func:`strategy_overview` compact enough for a book page: one row per configuration,
    each figure with its 95% interval on one line ("89.5 [88.4, 90.6]"), the folds it pools and
    the spread of the accuracy across folds."""
    n = len(overview.attrs.get("classes", paper.CLASSES))

    def column(name):
        return [figure_cell(v, lo, hi) for v, lo, hi in zip(
            overview[name], overview[f"{name}_ci_low"], overview[f"{name}_ci_high"])]
    shown = pd.DataFrame({
        "strategy": overview["strategy"],
        "folds": [folds_cell(d, e) for d, e in zip(overview["folds"],
                                                   overview["expected_folds"])],
        f"{n}-class accuracy (%)": column("accuracy"),
        "fold sd": [figure_cell(sd) for sd in overview["accuracy_sd"]],
        "2-class accuracy (%)": column("acc_2class"),
        "sensitivity (%)": column("sensitivity"), "specificity (%)": column("specificity"),
        "AUC": [("–" if pd.isna(v) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]") for v, lo, hi in zip(
            overview["auc"], overview["auc_ci_low"], overview["auc_ci_high"])],
    })
    return shown.set_index("strategy")


def confusion_matrix(run_path: str | Path, config: str) -> pd.DataFrame | None:
    """The pooled confusion matrix (rows predicted, columns actual), None without results."""
    run_path = runs.resolve(run_path)
    pred = predictions(run_path, config)
    return None if pred.empty else metrics.confusion(pred, runs.run_classes(run_path))


def styled(frame: pd.DataFrame, precision: int = 2, caption: str = ""):
    """A frame for the book: fixed decimals and a dash, not "NaN", where there is no figure;
    with a caption (what the table is, above it) when given."""
    style = frame.style.format(precision=precision, na_rep="–")
    return style.set_caption(caption) if caption else style


def label_by_source(run_path: str | Path) -> pd.DataFrame | None:
    """Images per class and source in the run's folds (the design's source confound), with
    totals; None before the run has assigned its folds."""
    run_path = runs.resolve(run_path)
    if not (run_path / "folds.csv").is_file():
        return None
    folds = results.read_folds(run_path)
    table = pd.crosstab(folds["label"], folds["source"], margins=True, margins_name="all")
    order = [c for c in paper.CLASSES if c in table.index] + ["all"]
    return table.loc[order]
