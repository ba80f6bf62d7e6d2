"""Tables and figures for the notebooks and the book, read from the results store only.

Nothing here trains: every function reads ``results/<run>/`` (see :mod:`cxrlib.results`), scores
it with :mod:`cxrlib.metrics` and lays the numbers out beside the paper's (from
:mod:`cxrlib.paper`). Figures in this module are percentages, as the paper prints them; AUC stays a
fraction.

- per configuration: :func:`fold_table`, :func:`summary_table`, :func:`per_class_table`,
  :func:`confusion_heatmap`, :func:`training_curves`;
- against the paper: :func:`paper_table`, :func:`comparison_table`, :func:`comparison_matrices`,
  :func:`comparison_figure`, :func:`fold_spread`;
- for the book: :func:`book_run`, :func:`demo_run`, :func:`run_label`, :func:`prose_numbers`
  and :func:`glue_numbers` (every number the chapters' prose uses, for ``myst_nb.glue``).

A comparison says whether it is a like-for-like one (``comparable`` and ``note`` columns): a
synthetic run never is; a run on another class set has an n-class accuracy that is not the
paper's 7-class accuracy, while its COVID-19-vs-rest figures stay roughly comparable.
"""
from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics, paper, paths, results
from .profiles import PAPER_CONFIGS, PROFILES, Profile, parse_config

#: The paper's protocol (image size, folds), against which a real-data run is comparable.
_PAPER_PROTOCOL = PROFILES["paper"]

#: Bootstrap settings for every interval the report shows (report settings, not run settings:
#: they change no stored result, only how it is summarised).
BOOTSTRAP_REPLICATES = 1000
BOOTSTRAP_SEED = 2020
#: The run the book shows can be forced with this variable (a run name or a folder).
BOOK_RUN_VARIABLE = "CXRLIB_BOOK_RUN"
#: Real-data runs the book prefers, best first.
PREFERRED_REAL_RUNS = ("paper-bundle", "paper")
DEMO_RUN = "default"

#: The metric columns of the paper's Tables 1, 4 and 5, in its order.
TABLE_METRICS = ("acc_2class", "acc_7class", "sensitivity", "specificity")
TWO_CLASS_METRICS = ("acc_2class", "sensitivity", "specificity")
METRIC_LABELS = {
    "acc_2class": "2-class accuracy", "acc_7class": "7-class accuracy",
    "accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
    "auc": "ROC AUC (COVID-19)",
}
FINE_TUNE_CONFIGS = tuple(c for c in PAPER_CONFIGS if c.startswith("fine_tune_"))
#: Which configurations each of the paper's tables is about, and its key in reported.json.
TABLE_CONFIGS = {1: ("off_the_shelf",), 2: ("off_the_shelf",), 3: ("off_the_shelf",),
                 4: FINE_TUNE_CONFIGS, 5: ("from_scratch",), 6: ("from_scratch",),
                 7: ("from_scratch",)}
TABLE_KEYS = {1: "table1_off_the_shelf", 2: "table2_off_the_shelf_confusion_7class",
              3: "table3_off_the_shelf_confusion_2class", 4: "table4_fine_tuning",
              5: "table5_from_scratch", 6: "table6_from_scratch_confusion_7class",
              7: "table7_from_scratch_confusion_2class"}
TABLE_TITLES = {
    1: "Off-the-shelf ImageNet features: accuracies, sensitivity, specificity",
    2: "Off-the-shelf ImageNet features: 7-class confusion matrix",
    3: "Off-the-shelf ImageNet features: COVID-19 against the rest",
    4: "Fine-tuning the top blocks: accuracies, sensitivity, specificity",
    5: "Training from scratch: accuracies, sensitivity, specificity",
    6: "Training from scratch: 7-class confusion matrix",
    7: "Training from scratch: COVID-19 against the rest",
}
FIGURE_TABLES = (1, 4, 5)
SEVEN_CLASS_MATRICES = (2, 6)
TWO_CLASS_MATRICES = (3, 7)
#: Caveats a comparison row can carry (besides the comparability reason).
NO_RESULTS = "no finished folds yet"
PAPER_BLANK = "the paper prints no figure here"


# --------------------------------------------------------------------------------------------
# Runs, configurations and labels


def as_run_path(run_path: str | Path) -> Path:
    """A run folder, given as a folder or as a run name under the results store."""
    path = Path(run_path)
    if not path.exists() and not path.is_absolute() and len(path.parts) == 1:
        return results.run_dir(str(path))
    return path


def config_label(config: str) -> str:
    """How the paper names a configuration in its tables (in our spelling)."""
    strategy, blocks = parse_config(config)
    return {"off_the_shelf": "Off-the-shelf features", "from_scratch": "Training from scratch",
            "fine_tune": f"Fine-tuning {blocks}"}[strategy]


def run_profile(run_path: str | Path) -> Profile | None:
    path = as_run_path(run_path) / "profile.json"
    return results.read_profile(path.parent) if path.is_file() else None


def run_classes(run_path: str | Path) -> tuple[str, ...]:
    profile = run_profile(run_path)
    if profile is not None and profile.target == "source" and \
            (as_run_path(run_path) / "folds.csv").is_file():
        # The audit's source probe predicts collections (cxrlib.cv.target_classes).
        return tuple(sorted(results.read_folds(as_run_path(run_path))["source"].unique()))
    return tuple(profile.classes) if profile else paper.CLASSES


def run_configs(run_path: str | Path) -> tuple[str, ...]:
    """The run's configurations: the profile's, then any others that have results, paper order."""
    run_path = as_run_path(run_path)
    profile = run_profile(run_path)
    listed = list(profile.configs) if profile else []
    found = sorted(p.name for p in run_path.glob("*") if p.is_dir() and results.done_folds(
        run_path, p.name)) if run_path.is_dir() else []
    extra = [c for c in found if c not in listed and _is_config(c)]
    order = {c: i for i, c in enumerate(PAPER_CONFIGS)}
    return tuple(listed + sorted(extra, key=lambda c: (order.get(c, len(order)), c)))


def _is_config(name: str) -> bool:
    try:
        parse_config(name)
        return True
    except ValueError:
        return False


def has_results(run_path: str | Path, config: str) -> bool:
    return bool(results.done_folds(as_run_path(run_path), config))


def missing_note(run_path: str | Path, config: str) -> str:
    """What to run to fill an empty configuration (Markdown)."""
    run_path = as_run_path(run_path)
    profile = run_profile(run_path)
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


def fold_infos(run_path: str | Path) -> pd.DataFrame:
    """Every finished fold's ``fold.json`` of the run (all configurations), flattened."""
    run_path = as_run_path(run_path)
    rows = []
    for config in run_configs(run_path):
        for fold in results.done_folds(run_path, config):
            path = results.fold_dir(run_path, config, fold) / "fold.json"
            info = json.loads(path.read_text())
            info.setdefault("config", config)
            info.setdefault("fold", fold)
            info["_written"] = pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC")
            rows.append(info)
    return pd.json_normalize(rows) if rows else pd.DataFrame()


def _first_column(frame: pd.DataFrame, candidates: tuple[str, ...]) -> pd.Series | None:
    """The first column among ``candidates``; failing that, one whose last name part matches."""
    for name in candidates:
        if name in frame.columns:
            return frame[name]
    for name in candidates:
        for column in frame.columns:
            if str(column).split(".")[-1] == name:
                return frame[column]
    return None


def _distinct(series: pd.Series | None) -> list[str]:
    if series is None:
        return []
    return sorted({str(v) for v in series.dropna() if str(v) not in ("", "nan")})


def run_environment(run_path: str | Path) -> dict:
    """Devices, backends, commits and dates of a run's finished folds (missing fields: [])."""
    infos = fold_infos(run_path)
    if infos.empty:
        return {"folds": 0, "devices": [], "backends": [], "commits": [], "first": None,
                "last": None}
    dates = _first_column(infos, ("finished_at", "finished", "end_time", "date", "timestamp"))
    when = pd.to_datetime(dates, errors="coerce", utc=True) if dates is not None else \
        pd.Series(pd.NaT, index=infos.index)
    when = when.fillna(infos["_written"])
    return {
        "folds": len(infos),
        "devices": _distinct(_first_column(infos, ("environment.device", "device"))),
        "backends": _distinct(_first_column(infos, ("environment.keras_backend",
                                                    "keras_backend", "backend"))),
        "commits": _distinct(_first_column(infos, ("environment.git_commit", "git_commit"))),
        "first": when.min().date().isoformat(),
        "last": when.max().date().isoformat(),
    }


def run_label(run_path: str | Path) -> str:
    """A one-line banner saying what a run is (synthetic demonstration or real data)."""
    run_path = as_run_path(run_path)
    profile = run_profile(run_path)
    if profile is None:
        return f"No results yet: {run_path} holds no run (no profile.json)."
    if profile.dataset != "real":
        return f"Demonstration on synthetic data (profile {profile.name}, not findings)"
    env = run_environment(run_path)
    dates = env["first"] if env["first"] == env["last"] else f"{env['first']} to {env['last']}"
    return (f"Real data: {', '.join(profile.classes)}; profile {profile.name}; "
            f"device {' + '.join(env['devices']) or 'unknown'}; "
            f"backend {' + '.join(env['backends']) or 'unknown'}; "
            f"date {dates or 'unknown'}")


def _runs_with_results(root: Path) -> list[str]:
    """Runs with at least one finished fold (a run whose profile.json cannot be read is skipped)."""
    found = []
    for run in results.list_runs(root):
        try:
            if any(results.done_folds(root / run, c) for c in run_configs(root / run)):
                found.append(run)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            continue
    return found


def book_run(results_root: str | Path | None = None) -> Path:
    """The run the book shows.

    ``$CXRLIB_BOOK_RUN`` (a run name or a folder) when set; otherwise a committed real-data run
    (``paper-bundle``, then ``paper``, then any other real one); otherwise the synthetic
    ``default`` demonstration; otherwise any run with results. May not exist yet: the chapters
    then say what is missing.
    """
    root = Path(results_root) if results_root is not None else paths.results_dir()
    forced = os.environ.get(BOOK_RUN_VARIABLE, "").strip()
    if forced:
        path = Path(forced)
        return path if len(path.parts) > 1 or path.is_absolute() else root / forced
    with_results = _runs_with_results(root)
    real = [r for r in with_results if results.read_profile(root / r).dataset == "real"]
    for name in PREFERRED_REAL_RUNS:
        if name in real:
            return root / name
    if real:
        return root / real[0]
    if DEMO_RUN in with_results or (root / DEMO_RUN / "profile.json").is_file():
        return root / DEMO_RUN
    return root / with_results[0] if with_results else root / DEMO_RUN


def demo_run(results_root: str | Path | None = None) -> Path | None:
    """The synthetic ``default`` demonstration run, if it exists."""
    root = Path(results_root) if results_root is not None else paths.results_dir()
    profile = run_profile(root / DEMO_RUN)
    return root / DEMO_RUN if profile is not None and profile.dataset == "synthetic" else None


# --------------------------------------------------------------------------------------------
# One configuration


def predictions(run_path: str | Path, config: str) -> pd.DataFrame:
    return results.read_predictions(as_run_path(run_path), config)


def _signature(run_path: Path, config: str) -> tuple:
    """What a configuration's scores depend on: its finished folds and their files' times."""
    return tuple((f, (results.fold_dir(run_path, config, f) / "predictions.csv").stat().st_mtime_ns)
                 for f in results.done_folds(run_path, config))


@lru_cache(maxsize=64)
def _cached_summary(run: str, config: str, signature: tuple, n_boot: int, seed: int):
    run_path = Path(run)
    return metrics.summary(predictions(run_path, config), run_classes(run_path),
                           n_boot=n_boot, seed=seed)


def config_summary(run_path: str | Path, config: str, n_boot: int = BOOTSTRAP_REPLICATES,
                   seed: int = BOOTSTRAP_SEED) -> pd.DataFrame | None:
    """:func:`cxrlib.metrics.summary` of one configuration (fractions), None without results."""
    run_path = as_run_path(run_path)
    signature = _signature(run_path, config)
    if not signature:
        return None
    return _cached_summary(str(run_path), config, signature, n_boot, seed).copy()


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


def fold_table(run_path: str | Path, config: str) -> pd.DataFrame:
    """One row per finished fold: fold, n_test, accuracies, sensitivity, specificity (percent),
    epochs_run, train_seconds and training images/s (from fold.json; NaN when not recorded)."""
    run_path = as_run_path(run_path)
    columns = ["fold", "n_test", "accuracy", "acc_2class", "sensitivity", "specificity",
               "epochs_run", "train_seconds", "images_per_s"]
    pred = predictions(run_path, config)
    if pred.empty:
        return pd.DataFrame(columns=columns)
    table = metrics.fold_metrics(pred, run_classes(run_path)).rename(columns={"n": "n_test"})
    for column in ("accuracy", "acc_2class", "sensitivity", "specificity"):
        table[column] = table[column] * 100 if column in table else np.nan
    info = results.read_fold_info(run_path, config)
    fields = {"epochs_run": ("epochs_run",), "train_seconds": ("train_seconds",),
              "images_per_s": ("train_images_per_second", "images_per_second")}
    for column, candidates in fields.items():
        values = _first_column(info, candidates) if not info.empty else None
        if values is not None and "fold" in info:
            table[column] = table["fold"].map(dict(zip(info["fold"].astype(int), values)))
        else:
            table[column] = np.nan
    return table[columns]


def per_class_table(run_path: str | Path, config: str) -> pd.DataFrame:
    """Precision, recall and F1 per class (percent) with support, pooled over folds."""
    run_path = as_run_path(run_path)
    pred = predictions(run_path, config)
    if pred.empty:
        return pd.DataFrame(columns=["precision", "recall", "f1", "support"])
    table = metrics.per_class(pred, run_classes(run_path))
    table[["precision", "recall", "f1"]] *= 100
    return table


def strategy_overview(run_path: str | Path, configs=None, n_boot: int = BOOTSTRAP_REPLICATES,
                      seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """One row per configuration: folds done, n-class accuracy with fold sd, 2-class accuracy,
    sensitivity, specificity (percent) and AUC, as the paper defines them; NaN without results."""
    run_path = as_run_path(run_path)
    rows = []
    for config in configs if configs is not None else run_configs(run_path):
        summary = config_summary(run_path, config, n_boot, seed)
        value = {m: _our_figure(summary, m) for m in ("acc_7class", *TWO_CLASS_METRICS, "auc")}
        rows.append({"configuration": config, "strategy": config_label(config),
                     "folds": 0 if summary is None else int(summary["n_folds"].iloc[0]),
                     "accuracy": value["acc_7class"][0], "accuracy_sd": value["acc_7class"][3],
                     "acc_2class": value["acc_2class"][0], "acc_2class_sd": value["acc_2class"][3],
                     "sensitivity": value["sensitivity"][0],
                     "specificity": value["specificity"][0], "auc": value["auc"][0]})
    frame = pd.DataFrame(rows)
    frame.attrs["classes"] = list(run_classes(run_path))
    return frame


def display_overview(overview: pd.DataFrame) -> pd.DataFrame:
    """:func:`strategy_overview` compact enough for a book page: mean ± fold sd in one cell."""
    def mean_sd(mean, sd):
        if pd.isna(mean):
            return "–"
        return f"{mean:.2f}" + ("" if pd.isna(sd) else f" ± {sd:.2f}")
    n = len(overview.attrs.get("classes", paper.CLASSES))
    shown = pd.DataFrame({
        "strategy": overview["strategy"], "folds": overview["folds"],
        f"{n}-class accuracy (%)": [mean_sd(m, sd) for m, sd in
                                    zip(overview["accuracy"], overview["accuracy_sd"])],
        "2-class accuracy (%)": [mean_sd(m, sd) for m, sd in
                                 zip(overview["acc_2class"], overview["acc_2class_sd"])],
        "sensitivity (%)": overview["sensitivity"], "specificity (%)": overview["specificity"],
        "AUC": overview["auc"],
    })
    return shown.set_index("strategy")


def confusion_matrix(run_path: str | Path, config: str) -> pd.DataFrame | None:
    """The pooled confusion matrix (rows predicted, columns actual), None without results."""
    run_path = as_run_path(run_path)
    pred = predictions(run_path, config)
    return None if pred.empty else metrics.confusion(pred, run_classes(run_path))


# --------------------------------------------------------------------------------------------
# Figures


def _figure(*args, **kwargs):
    # pyplot (not a bare Figure) so that Jupyter's inline backend knows how to show it; each
    # figure is closed before it is returned, so a notebook shows it once, where it is returned.
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    plt.close(fig)
    return fig, axes


def _matrix_side(n_classes: int) -> float:
    """Figure inches for one matrix: room for the labels even when there are only two classes."""
    return max(3.0, 1.1 + 0.36 * n_classes)


def _draw_matrix(ax, cm: pd.DataFrame, title: str) -> None:
    """Counts annotated; colour = share of the actual class (column), so small classes show."""
    counts = cm.to_numpy(dtype=float)
    totals = counts.sum(axis=0, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                color="white" if share[i, j] > 0.6 else "black")
    rotation = 45 if cm.shape[1] > 2 else 0
    ax.set_xticks(range(cm.shape[1]), [str(c) for c in cm.columns], rotation=rotation,
                  ha="right" if rotation else "center", fontsize=8)
    ax.set_yticks(range(cm.shape[0]), [str(c) for c in cm.index], fontsize=8)
    ax.set_xlabel("Actual class")
    ax.set_ylabel("Predicted class")
    ax.set_title(title, fontsize=10)


def confusion_heatmap(cm_df: pd.DataFrame, title: str = ""):
    """A confusion matrix as the paper prints it (rows predicted, columns actual), annotated."""
    side = _matrix_side(len(cm_df.columns))
    fig, ax = _figure(figsize=(side + 0.8, side))
    _draw_matrix(ax, cm_df, title)
    fig.tight_layout()
    return fig


def confusion_figure(run_path: str | Path, config: str):
    """The pooled confusion matrix of one configuration as a heatmap (a note without results)."""
    cm = confusion_matrix(run_path, config)
    if cm is None:
        return _empty_figure(f"{config_label(config)}: no finished folds yet")
    return confusion_heatmap(cm, config_label(config))


def confusion_grid(run_path: str | Path, configs=None):
    """The pooled confusion matrices of several configurations, small multiples in one figure."""
    run_path = as_run_path(run_path)
    configs = [c for c in (configs if configs is not None else run_configs(run_path))
               if has_results(run_path, c)]
    if not configs:
        return _empty_figure(f"No finished folds in run {run_path.name} yet")
    n_classes = len(run_classes(run_path))
    side = 1.6 + 0.45 * n_classes
    columns = min(3, len(configs))
    rows = math.ceil(len(configs) / columns)
    fig, axes = _figure(rows, columns, figsize=(columns * (side + 0.6), rows * side),
                        squeeze=False)
    for ax, config in zip(axes.ravel(), configs):
        _draw_matrix(ax, confusion_matrix(run_path, config), config_label(config))
    for ax in axes.ravel()[len(configs):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _empty_figure(message: str):
    fig, ax = _figure(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def training_curves(run_path: str | Path, config: str):
    """Loss and accuracy per epoch for every finished fold: training solid, validation dashed."""
    history = results.read_history(as_run_path(run_path), config)
    if history.empty:
        return _empty_figure(f"{config_label(config)}: no training history yet")
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(1, 2, figsize=(8, 3.2))
    colours = matplotlib.colormaps["tab10"]
    epoch = "epoch" if "epoch" in history else None
    for ax, quantity in zip(axes, ("loss", "accuracy")):
        for k, (fold, part) in enumerate(history.groupby("fold", sort=True)):
            x = part[epoch] if epoch else np.arange(1, len(part) + 1)
            for prefix, style in (("", "-"), ("val_", "--")):
                if prefix + quantity in part:
                    ax.plot(x, part[prefix + quantity], style, color=colours(k % 10),
                            label=f"fold {fold}" if not prefix else None, linewidth=1.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(quantity)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{config_label(config)}: loss", fontsize=9)
    axes[1].set_title("accuracy (solid training, dashed validation)", fontsize=9)
    axes[1].legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def fold_spread(run_path: str | Path):
    """Per-fold test accuracies of every configuration (points), their mean (bar) and, where
    comparable, the paper's figure (red cross)."""
    run_path = as_run_path(run_path)
    configs = [c for c in run_configs(run_path) if has_results(run_path, c)]
    if not configs:
        return _empty_figure(f"No finished folds in run {run_path.name} yet")
    classes = run_classes(run_path)
    panels = [("accuracy", f"{len(classes)}-class accuracy (%)", "acc_7class")]
    if paper.POSITIVE_CLASS in classes:
        panels.append(("acc_2class", "2-class accuracy (%)", "acc_2class"))
    fig, axes = _figure(1, len(panels), figsize=(4.0 * len(panels), 3.8), squeeze=False)
    rng = np.random.default_rng(0)  # fixed jitter: the figure does not change between builds
    for ax, (column, ylabel, paper_metric) in zip(axes[0], panels):
        comparable, _ = comparability(run_path, paper_metric)
        for x, config in enumerate(configs):
            folds = fold_table(run_path, config)[column].to_numpy(dtype=float)
            ax.plot(x + rng.uniform(-0.12, 0.12, len(folds)), folds, "o", color="tab:blue",
                    alpha=0.6, markersize=4, label="test fold" if x == 0 else None)
            ax.plot([x - 0.25, x + 0.25], [np.nanmean(folds)] * 2, color="black",
                    linewidth=2, label="mean of folds" if x == 0 else None)
            reported = paper_figure(config, paper_metric)
            if comparable and reported is not None:
                ax.plot(x, reported, "x", color="tab:red", markersize=9, mew=2,
                        label="paper" if x == 0 else None)
        ax.set_xticks(range(len(configs)), [config_label(c) for c in configs], rotation=40,
                      ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Spread across test folds, run {run_path.name}", fontsize=11)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# The paper's tables, and ours beside them


def paper_figure(config: str, metric: str) -> float | None:
    """A figure of the paper's Tables 1, 4 or 5 (percent), None where it prints none."""
    tables = paper.reported()["tables"]
    strategy, blocks = parse_config(config)
    if strategy == "fine_tune":
        row = tables["table4_fine_tuning"].get(str(blocks))
    else:
        row = tables[TABLE_KEYS[1 if strategy == "off_the_shelf" else 5]]
    return None if row is None else row.get(metric)


def paper_table(n: int) -> pd.DataFrame:
    """The paper's Table ``n`` (1-7) as a frame; confusion matrices rows predicted, columns actual."""
    tables = paper.reported()["tables"]
    if n in FIGURE_TABLES:
        rows = {c: {"strategy": config_label(c), **{m: paper_figure(c, m) for m in TABLE_METRICS}}
                for c in TABLE_CONFIGS[n]}
        frame = pd.DataFrame.from_dict(rows, orient="index").astype(
            {m: float for m in TABLE_METRICS})
        frame.index.name = "configuration"
        return frame
    if n in SEVEN_CLASS_MATRICES:
        classes = paper.reported()["classes"]
        return pd.DataFrame(tables[TABLE_KEYS[n]], index=pd.Index(classes, name="predicted"),
                            columns=pd.Index(classes, name="actual"))
    if n in TWO_CLASS_MATRICES:
        return metrics.two_by_two(tables[TABLE_KEYS[n]])
    raise ValueError(f"the paper has Tables 1 to 7; there is no Table {n}")


def protocol_difference(profile: Profile) -> str:
    """How a real-data profile departs from the paper's protocol in what changes the task (the
    image size), "" when it does not: a reduced profile's figures are not the paper's
    experiment. (Fewer folds or epochs estimate the same figure less well; the book shows
    their spread and intervals.)"""
    size = _PAPER_PROTOCOL.image_size
    if profile.image_size != size:
        return (f"a reduced protocol: {profile.image_size} px images, not the paper's {size}")
    return ""


def comparability(run_path: str | Path, metric: str) -> tuple[bool, str]:
    """Whether our figure ``metric`` ("acc_7class", a 2-class metric, or "matrix7"/"matrix2")
    compares like for like with the paper's, and if not (or only partly) why."""
    profile = run_profile(run_path)
    if profile is None:
        return False, NO_RESULTS
    if profile.dataset != "real":
        return False, "synthetic demonstration data: shows the method, not comparable"
    if protocol_difference(profile):
        return False, protocol_difference(profile)
    classes = tuple(profile.classes)
    if classes == paper.CLASSES:
        return True, ""
    others = [c for c in classes if c != paper.POSITIVE_CLASS]
    if metric in ("acc_7class", "matrix7"):
        return False, (f"our run has {len(classes)} classes ({', '.join(classes)}): a "
                       f"{len(classes)}-class figure, not the paper's 7-class one")
    if paper.POSITIVE_CLASS not in classes:
        return False, "our run has no COVID-19 class"
    return True, (f"only roughly: the non-COVID side holds {len(others)} of the paper's "
                  f"{len(paper.CLASSES) - 1} other classes ({', '.join(others)})")


def _our_figure(summary: pd.DataFrame | None, metric: str) -> tuple[float, float, float, float]:
    """(value, ci_low, ci_high, fold_sd) in percent for a paper metric name; NaN if absent."""
    key = "accuracy" if metric == "acc_7class" else metric
    if summary is None or key not in set(summary["metric"]):
        return (math.nan,) * 4
    row = summary.set_index("metric").loc[key]
    scale = 1.0 if key == "auc" else 100.0
    return tuple(float(row[c]) * scale for c in ("value", "ci_low", "ci_high", "fold_sd"))


def baselines(run_path: str | Path, metric: str) -> tuple[float, float]:
    """The "always not COVID-19" answer's figure on our data and on the paper's counts (%)."""
    if metric not in TWO_CLASS_METRICS:
        return math.nan, math.nan
    fixed = {"sensitivity": 0.0, "specificity": 100.0}
    if metric in fixed:
        return fixed[metric], fixed[metric]
    ours = math.nan
    run_path = as_run_path(run_path)
    for config in run_configs(run_path):
        pred = predictions(run_path, config)
        if not pred.empty:
            ours = 100 * metrics.not_covid_baseline(pred["label"])
            break
    return ours, 100 * metrics.not_covid_baseline(paper.class_counts())


def _join_caveats(*caveats: str) -> str:
    return "; ".join(dict.fromkeys(c for c in caveats if c))


def _figures_comparison(run_path: Path, n: int, n_boot: int, seed: int) -> pd.DataFrame:
    rows = []
    for config in TABLE_CONFIGS[n]:
        summary = config_summary(run_path, config, n_boot, seed)
        for metric in TABLE_METRICS:
            reported = paper_figure(config, metric)
            value, low, high, sd = _our_figure(summary, metric)
            comparable, note = comparability(run_path, metric)
            if summary is None:
                note = _join_caveats(NO_RESULTS, note)
            elif reported is None:
                note = _join_caveats(PAPER_BLANK, note)
            base_ours, base_paper = baselines(run_path, metric)
            label = METRIC_LABELS[metric]
            n_classes = len(run_classes(run_path))
            if metric == "acc_7class" and n_classes != len(paper.CLASSES):
                label += f" (ours: {n_classes}-class)"
            rows.append({
                "configuration": config, "strategy": config_label(config),
                "metric": label,
                "paper": math.nan if reported is None else float(reported),
                "ours": value,
                "difference": value - reported if reported is not None else math.nan,
                "ci_low": low, "ci_high": high, "fold_sd": sd,
                "n_folds": 0 if summary is None else int(summary["n_folds"].iloc[0]),
                "baseline_ours": base_ours, "baseline_paper": base_paper,
                "comparable": comparable, "note": note,
            })
    return pd.DataFrame(rows)


def comparison_matrices(run_path: str | Path, n: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The paper's confusion matrix of Table ``n`` (2, 3, 6, 7) and ours (None without results)."""
    if n not in SEVEN_CLASS_MATRICES + TWO_CLASS_MATRICES:
        raise ValueError(f"Table {n} is not a confusion matrix (those are 2, 3, 6 and 7)")
    run_path = as_run_path(run_path)
    config = TABLE_CONFIGS[n][0]
    ours = confusion_matrix(run_path, config)
    if ours is not None and n in TWO_CLASS_MATRICES:
        classes = run_classes(run_path)
        ours = metrics.two_by_two(metrics.covid_vs_rest(predictions(run_path, config), classes)) \
            if paper.POSITIVE_CLASS in classes else None
    return paper_table(n), ours


def _share_of_actual(cm: pd.DataFrame) -> pd.DataFrame:
    return 100 * cm / cm.sum(axis=0).replace(0, np.nan)


def _matrix_comparison(run_path: Path, n: int) -> pd.DataFrame:
    theirs, ours = comparison_matrices(run_path, n)
    comparable, note = comparability(run_path, "matrix7" if n in SEVEN_CLASS_MATRICES
                                    else "acc_2class")
    if ours is None:
        note = _join_caveats(NO_RESULTS, note)
    tidy = theirs.stack().rename("paper").to_frame()
    tidy["ours"] = ours.stack().astype(float) if ours is not None else np.nan
    tidy["paper_pct"] = _share_of_actual(theirs).stack()
    tidy["ours_pct"] = _share_of_actual(ours).stack() if ours is not None else np.nan
    tidy["difference_pct"] = tidy["ours_pct"] - tidy["paper_pct"]
    tidy["comparable"] = comparable
    tidy["note"] = note
    return tidy.reset_index()


def comparison_table(run_path: str | Path, n: int, n_boot: int = BOOTSTRAP_REPLICATES,
                     seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """The paper's Table ``n`` beside ours, as a tidy frame.

    Tables 1, 4, 5: one row per (configuration, metric): paper, ours, difference (ours minus
    paper, percentage points), our 95% patient-bootstrap interval and fold sd, the trivial
    "always not COVID-19" answer on our data and on the paper's counts (2-class metrics), and
    ``comparable``/``note``. Tables 2, 3, 6, 7: one row per matrix cell (predicted, actual):
    the paper's count and ours, each also as a percentage of its actual class (so datasets of
    other sizes compare), and their difference. ``attrs`` carry the table number and title.
    """
    run_path = as_run_path(run_path)
    if n in FIGURE_TABLES:
        frame = _figures_comparison(run_path, n, n_boot, seed)
    else:
        frame = _matrix_comparison(run_path, n)
    frame.attrs.update({"table": n, "title": TABLE_TITLES[n], "run": run_path.name,
                        "comparable": bool(frame["comparable"].all()),
                        "notes": comparison_notes(frame)})
    return frame


def comparison_figure(run_path: str | Path, n: int):
    """The paper's confusion matrix of Table ``n`` and ours, side by side, same colour scale."""
    theirs, ours = comparison_matrices(run_path, n)
    side = _matrix_side(len(theirs.columns))
    fig, axes = _figure(1, 2, figsize=(2 * side + 0.8, side + 0.3))
    _draw_matrix(axes[0], theirs, f"Paper, Table {n}")
    if ours is None:
        axes[1].axis("off")
        axes[1].text(0.5, 0.5, "no results yet", ha="center", va="center")
    else:
        _draw_matrix(axes[1], ours, f"Ours, run {as_run_path(run_path).name}")
    fig.suptitle(TABLE_TITLES[n] + "\n(colour: share of the actual class)", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Fine-tuning: the figures against the number of trainable blocks (the paper's Table 4)

BLOCK_METRICS = ("acc_7class", "sensitivity", "specificity")


def fine_tune_blocks(run_path: str | Path) -> list[int]:
    """The numbers of trainable blocks of the paper's Table 4 and of the run, ascending."""
    ours = [parse_config(c)[1] for c in run_configs(run_path) if c.startswith("fine_tune_")]
    return sorted({parse_config(c)[1] for c in FINE_TUNE_CONFIGS} | set(ours))


def blocks_table(run_path: str | Path, n_boot: int = BOOTSTRAP_REPLICATES,
                 seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """One row per (trainable blocks, metric): our figure with its 95% interval and the number
    of folds it pools (NaN and 0 where none is stored), and the paper's (NaN where it prints
    none). Percent; ``acc_7class`` is the accuracy over the run's classes."""
    rows = []
    for blocks in fine_tune_blocks(run_path):
        config = f"fine_tune_{blocks}"
        summary = config_summary(run_path, config, n_boot, seed)
        folds = 0 if summary is None else int(summary["n_folds"].iloc[0])
        for metric in BLOCK_METRICS:
            value, low, high, _ = _our_figure(summary, metric)
            reported = paper_figure(config, metric)
            rows.append({"blocks": blocks, "metric": metric, "ours": value, "ci_low": low,
                         "ci_high": high, "folds": folds,
                         "paper": math.nan if reported is None else float(reported)})
    return pd.DataFrame(rows, columns=["blocks", "metric", "ours", "ci_low", "ci_high", "folds",
                                       "paper"])


def runs_with_fine_tuning(run_path: str | Path) -> list[Path]:
    """The run, then every other stored real-data run with fine-tuning results (e.g. a reduced
    CPU run beside a GPU one), for :func:`blocks_figure`."""
    run_path = as_run_path(run_path)
    others = []
    for name in _runs_with_results(run_path.parent):
        other = run_path.parent / name
        profile = run_profile(other)
        if other != run_path and profile is not None and profile.dataset == "real" and any(
                c.startswith("fine_tune_") and has_results(other, c) for c in run_configs(other)):
            others.append(other)
    return [run_path, *others]


def blocks_figure(run_paths, n_boot: int = BOOTSTRAP_REPLICATES):
    """Accuracy, sensitivity and specificity against the number of trainable blocks: each run's
    figures with their 95% intervals (the folds each pools written beside it) and the paper's
    as crosses."""
    run_paths = [as_run_path(p) for p in ([run_paths] if isinstance(run_paths, (str, Path))
                                          else run_paths)]
    tables = [(p, blocks_table(p, n_boot)) for p in run_paths]
    fig, axes = _figure(1, len(BLOCK_METRICS), figsize=(10.5, 3.4), sharex=True)
    markers = "osD^v"
    for ax, metric in zip(axes, BLOCK_METRICS):
        for i, (path, table) in enumerate(tables):
            rows = table[(table["metric"] == metric) & (table["folds"] > 0)]
            offset = 0.18 * (i - (len(tables) - 1) / 2)
            profile = run_profile(path)
            n_folds = profile.n_folds if profile is not None else 0
            ax.errorbar(rows["blocks"] + offset, rows["ours"],
                        yerr=[rows["ours"] - rows["ci_low"], rows["ci_high"] - rows["ours"]],
                        fmt=markers[i % len(markers)], ms=4, capsize=2, lw=1,
                        label=f"ours: {path.name}")
            for _, row in rows.iterrows():
                if row["folds"] < n_folds:
                    ax.annotate(f"{int(row['folds'])}/{n_folds}", (row["blocks"] + offset,
                                row["ci_low"]), textcoords="offset points", xytext=(0, -9),
                                ha="center", fontsize=6)
        paper_rows = tables[0][1][tables[0][1]["metric"] == metric].dropna(subset=["paper"])
        ax.plot(paper_rows["blocks"], paper_rows["paper"], "kx:", ms=6, lw=0.8, label="paper")
        label = ("accuracy over the run's classes (paper: 7)" if metric == "acc_7class"
                 else METRIC_LABELS[metric])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("trainable blocks")
        ax.set_xticks(fine_tune_blocks(run_paths[0]))
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
    fig.suptitle("Fine-tuning: figures against the number of trainable blocks "
                 "(bars: 95% patient-level intervals; k/n: folds stored)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def _trend_word(values: list[float]) -> str:
    steps = np.diff(values)
    if len(values) < 3:
        return "too few configurations to tell"
    if (steps > 0).all():
        return "rises with every step"
    if (steps < 0).all():
        return "falls with every step"
    return "does not move steadily with the number of blocks"


def blocks_numbers(run_path: str | Path, n_boot: int = BOOTSTRAP_REPLICATES) -> dict:
    """The fine-tuning trend as glue phrases: each number of blocks' accuracy (ours, with the
    folds pooled, and the paper's), the shape of each trend and the best number of blocks."""
    table = blocks_table(run_path, n_boot)
    accuracy = table[table["metric"] == "acc_7class"]
    done = accuracy[accuracy["folds"] > 0]
    profile = run_profile(run_path)
    n_folds = profile.n_folds if profile is not None else 0

    def item(row) -> str:
        folds = "" if row["folds"] >= n_folds else f", {int(row['folds'])} of {n_folds} folds"
        return f"{int(row['blocks'])}: {row['ours']:.1f}%{folds}"

    missing = [str(int(b)) for b in accuracy.loc[accuracy["folds"] == 0, "blocks"]]
    paper_rows = accuracy.dropna(subset=["paper"])
    out = {
        "blocks_ours_text": "; ".join(item(r) for _, r in done.iterrows()) or "none stored yet",
        "blocks_missing_text": ", ".join(missing) if missing else "none",
        "blocks_paper_text": "; ".join(f"{int(r['blocks'])}: {r['paper']:.1f}%"
                                       for _, r in paper_rows.iterrows()),
        "blocks_ours_trend": _trend_word(list(done["ours"])),
        "blocks_paper_trend": _trend_word(list(paper_rows["paper"])),
        "blocks_ours_best": "none" if done.empty else
        f"{int(done.loc[done['ours'].idxmax(), 'blocks'])} blocks",
        "blocks_paper_best": f"{int(paper_rows.loc[paper_rows['paper'].idxmax(), 'blocks'])} "
                             f"blocks",
    }
    span = done["ours"].max() - done["ours"].min() if len(done) > 1 else math.nan
    out["blocks_ours_span"] = "n/a" if math.isnan(span) else f"{span:.1f} percentage points"
    paper_span = paper_rows["paper"].max() - paper_rows["paper"].min()
    out["blocks_paper_span"] = f"{paper_span:.1f} percentage points"
    return out


def display_comparison(frame: pd.DataFrame) -> pd.DataFrame:
    """A comparison frame compact enough for a book page (the caveats: :func:`comparison_notes`).

    Tables 1, 4, 5: paper, ours with its 95% interval, difference, fold sd and the "never
    COVID-19" rule's figure on our data and on the paper's counts, one row per metric (and per
    strategy for Table 4). Confusion matrices: rows predicted, columns actual, each cell
    "paper / ours" (counts; "–" where our run has no such class).
    """
    if "predicted" in frame:
        def cell(paper_count, ours):
            return f"{paper_count:.0f} / " + ("–" if pd.isna(ours) else f"{ours:.0f}")
        cells = frame.assign(cell=[cell(p, o) for p, o in zip(frame["paper"], frame["ours"])])
        order = list(dict.fromkeys(frame["predicted"]))
        wide = cells.pivot(index="predicted", columns="actual", values="cell")
        return wide.loc[order, order]

    def interval(value, low, high):
        if pd.isna(value):
            return "–"
        return f"{value:.2f}" + ("" if pd.isna(low) else f" [{low:.2f}, {high:.2f}]")
    shown = pd.DataFrame({
        "strategy": frame["strategy"], "metric": frame["metric"], "paper": frame["paper"],
        "ours [95% CI]": [interval(v, lo, hi) for v, lo, hi in
                          zip(frame["ours"], frame["ci_low"], frame["ci_high"])],
        "difference": frame["difference"], "fold sd": frame["fold_sd"],
        "never-COVID rule, our data": frame["baseline_ours"],
        "never-COVID rule, paper's counts": frame["baseline_paper"],
    })
    index = ["strategy", "metric"] if shown["strategy"].nunique() > 1 else ["metric"]
    return shown.drop(columns=[c for c in ["strategy"] if c not in index]).set_index(index)


def styled(frame: pd.DataFrame, precision: int = 2):
    """A frame for the book: fixed decimals and a dash, not "NaN", where there is no figure."""
    return frame.style.format(precision=precision, na_rep="–")


def comparison_notes(frame: pd.DataFrame) -> str:
    """The caveats of a comparison frame as a Markdown list, each once with what it concerns.

    A row's ``note`` joins its caveats with "; ". Missing results concern configurations, a
    blank in the paper a (configuration, metric), anything else (class set, synthetic data)
    the metrics it applies to.
    """
    by_caveat: dict[str, list[str]] = {}
    metrics_of = frame["metric"] if "metric" in frame else pd.Series("", index=frame.index)
    strategies = frame["strategy"] if "strategy" in frame else pd.Series("", index=frame.index)
    several = strategies.nunique() > 1
    for strategy, metric, note in zip(strategies, metrics_of, frame["note"]):
        for caveat in (c for c in str(note).split("; ") if c):
            if caveat == NO_RESULTS:
                subject = strategy
            elif caveat == PAPER_BLANK:
                subject = f"{strategy}, {metric}" if several else metric
            else:
                subject = metric
            subjects = by_caveat.setdefault(caveat, [])
            if subject and subject not in subjects:
                subjects.append(subject)
    lines = [f"- {caveat[0].upper()}{caveat[1:]}" + (f" ({'; '.join(subjects)})." if subjects
                                                     else ".")
             for caveat, subjects in by_caveat.items()]
    return "".join(f"{line}\n" for line in lines)


# --------------------------------------------------------------------------------------------
# Numbers for the book's prose (myst_nb glue)


def _plain(value):
    """A JSON/repr-friendly Python scalar (glue renders ``repr``: no numpy types)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


def _text(value: float, low: float, high: float, unit: str = "%") -> str:
    if math.isnan(value):
        return "not available (no finished folds)"
    interval = "" if math.isnan(low) else f" (95% CI {low:.2f} to {high:.2f})"
    return f"{value:.2f}{unit}{interval}"


def prose_numbers(run_path: str | Path, n_boot: int = BOOTSTRAP_REPLICATES,
                  seed: int = BOOTSTRAP_SEED) -> dict:
    """Every number (and run fact) the chapters' prose uses, by glue name.

    ``paper_<config>_<metric>``: the paper's Tables 1/4/5 (percent; absent where it prints none);
    ``paper_total_images``, ``paper_covid_images``, ``paper_not_covid_baseline``;
    ``ours_<config>_<metric>`` (metric: acc_2class, acc_nclass, sensitivity, specificity, auc)
    with ``_ci_low``, ``_ci_high``, ``_sd``, and ``_text`` (a ready phrase that says "not
    available" when the configuration has no results); ``diff_<config>_<metric>`` (ours minus
    paper); ``ours_n_images``, ``ours_n_covid``, ``ours_n_classes``, ``ours_n_folds``,
    ``ours_not_covid_baseline`` (and ``_text``), ``ours_<config>_over_baseline`` (and ``_text``),
    ``paper_<config>_over_baseline`` (its 2-class accuracy minus the rule's, on its counts),
    ``ours_best_config``, ``run_summary_text``, ``comparable_nclass_text``, ``comparable_2class_text``,
    ``paper_below_baseline_count``/``_text`` (paper configurations whose 2-class accuracy is
    below the trivial baseline), ``bootstrap_replicates``, ``run_name``, ``run_label``,
    ``configs_done``, ``configs_missing``.
    """
    run_path = as_run_path(run_path)
    counts = paper.class_counts()
    numbers: dict = {
        "paper_total_images": paper.reported()["total_images"],
        "paper_covid_images": counts[paper.POSITIVE_CLASS],
        "paper_n_classes": len(paper.CLASSES),
        "paper_not_covid_baseline": 100 * metrics.not_covid_baseline(counts),
        "bootstrap_replicates": n_boot,
    }
    for config in PAPER_CONFIGS:
        for metric in TABLE_METRICS:
            reported = paper_figure(config, metric)
            if reported is not None:
                numbers[f"paper_{config}_{metric}"] = float(reported)
    below = [config_label(c) for c in PAPER_CONFIGS
             if (paper_figure(c, "acc_2class") or math.inf) < numbers["paper_not_covid_baseline"]]
    numbers["paper_below_baseline_count"] = len(below)
    numbers["paper_below_baseline_text"] = ", ".join(below) or "none"
    profile = run_profile(run_path)
    classes = run_classes(run_path)
    configs = run_configs(run_path) or PAPER_CONFIGS
    done = [c for c in configs if has_results(run_path, c)]
    numbers.update({
        "run_name": run_path.name, "run_label": run_label(run_path),
        "ours_n_classes": len(classes),
        "ours_n_folds": profile.n_folds if profile else 0,
        "configs_done": ", ".join(config_label(c) for c in done) or "none",
        "configs_missing": ", ".join(config_label(c) for c in configs if c not in done) or "none",
    })
    labels = None
    if (run_path / "folds.csv").is_file():
        labels = results.read_folds(run_path)["label"]
    elif done:
        labels = predictions(run_path, done[0])["label"]
    numbers["ours_n_images"] = 0 if labels is None else len(labels)
    numbers["ours_n_covid"] = 0 if labels is None else int((labels == paper.POSITIVE_CLASS).sum())
    numbers["ours_not_covid_baseline"] = math.nan if labels is None or not len(labels) else \
        100 * metrics.not_covid_baseline(labels)
    numbers["run_summary_text"] = (
        f"{numbers['ours_n_images']} images of {len(classes)} classes, cross-validated with "
        f"{numbers['ours_n_folds']} test folds" if numbers["ours_n_images"] else
        "no results yet, so every table below is empty")
    numbers["ours_not_covid_baseline_text"] = _text(numbers["ours_not_covid_baseline"],
                                                    math.nan, math.nan)
    best, best_accuracy = "none", -math.inf
    for config in configs:
        summary = config_summary(run_path, config, n_boot, seed)
        for metric in ("acc_2class", "acc_7class", "sensitivity", "specificity", "auc"):
            name = f"ours_{config}_{'acc_nclass' if metric == 'acc_7class' else metric}"
            value, low, high, sd = _our_figure(summary, metric)
            numbers.update({name: value, f"{name}_ci_low": low, f"{name}_ci_high": high,
                            f"{name}_sd": sd,
                            f"{name}_text": _text(value, low, high, "" if metric == "auc" else "%")})
            reported = paper_figure(config, metric) if metric != "auc" else None
            if reported is not None:
                numbers[f"diff_{config}_{metric}"] = value - reported
            if metric == "acc_7class" and not math.isnan(value) and value > best_accuracy:
                best, best_accuracy = config_label(config), value
    numbers["ours_best_config"] = best
    for key, metric in (("nclass", "acc_7class"), ("2class", "acc_2class")):
        comparable, note = comparability(run_path, metric)
        numbers[f"comparable_{key}_text"] = (
            ("comparable with the paper" + (f" {note}" if note else "")) if comparable
            else f"not comparable with the paper ({note})")
    for config in PAPER_CONFIGS:
        reported = paper_figure(config, "acc_2class")
        if reported is not None:
            numbers[f"paper_{config}_over_baseline"] = reported - numbers["paper_not_covid_baseline"]
    for config in configs:
        ours = numbers.get(f"ours_{config}_acc_2class", math.nan)
        margin = ours - numbers["ours_not_covid_baseline"]
        numbers[f"ours_{config}_over_baseline"] = margin
        numbers[f"ours_{config}_over_baseline_text"] = "not available" if math.isnan(margin) \
            else f"{abs(margin):.2f} percentage points {'above' if margin >= 0 else 'below'}"
    return {k: _plain(v) for k, v in numbers.items()}


def _points_against(ours: float, low: float, high: float, reported: float) -> str:
    """``-3.99 percentage points (ours 95.19% [94.38, 95.99] against the paper's 99.18%)``."""
    if math.isnan(ours):
        return "not available (no finished folds)"
    return (f"{ours - reported:+.2f} percentage points (ours {ours:.2f}% [{low:.2f}, "
            f"{high:.2f}] against the paper's {reported:.2f}%)")


#: A curated image whose source file was exactly this size is a copy squashed to a square by
#: whoever shared it (the shared bundle's Kermany copies, see shared/data/PROVENANCE.md).
SQUASHED_SIDE = 224


def difference_numbers(run_path: str | Path, n_boot: int = BOOTSTRAP_REPLICATES) -> dict:
    """Glue phrases for where a real run's headline figures differ from the paper's and what in
    the data may explain it: each 2-class figure of the off-the-shelf and from-scratch
    strategies against the paper's, the COVID-19 images against the paper's count, the classes
    missing, and the share of Kermany images that reached us squashed to a square."""
    from .book import curated_manifest

    run_path = as_run_path(run_path)
    profile = run_profile(run_path)
    if profile is None or profile.dataset != "real":
        keys = [f"gap_{c}_{m}_text" for c in ("off_the_shelf", "from_scratch")
                for m in TWO_CLASS_METRICS]
        keys += ["gap_missing_classes_text", "gap_covid_count_text", "gap_squashed_share_text"]
        return dict.fromkeys(keys, "not compared (no real-data run)")
    out: dict = {}
    for config in ("off_the_shelf", "from_scratch"):
        summary = config_summary(run_path, config, n_boot)
        for metric in TWO_CLASS_METRICS:
            reported = paper_figure(config, metric)
            value, low, high, _ = _our_figure(summary, metric)
            out[f"gap_{config}_{metric}_text"] = (
                "not printed by the paper" if reported is None else
                _points_against(value, low, high, float(reported)))
    classes = run_classes(run_path)
    missing = [c for c in paper.CLASSES if c not in classes]
    out["gap_missing_classes_text"] = ", ".join(missing) if missing else "none"
    manifest = curated_manifest(run_path)
    kept = None if manifest is None else manifest[manifest["excluded"].fillna("") == ""]
    reported = paper.class_counts()[paper.POSITIVE_CLASS]
    out["gap_covid_count_text"] = (
        f"unknown (no curation manifest) against the paper's {reported}" if kept is None else
        f"{int((kept['label'] == paper.POSITIVE_CLASS).sum())} against the paper's {reported}")
    kermany = None if kept is None else kept[kept["source"] == "kermany"]
    if kermany is None or kermany.empty or "orig_width" not in kermany:
        out["gap_squashed_share_text"] = "unknown"
    else:
        width, height = (pd.to_numeric(kermany[c], errors="coerce")
                         for c in ("orig_width", "orig_height"))
        squashed = (width == SQUASHED_SIDE) & (height == SQUASHED_SIDE)
        out["gap_squashed_share_text"] = f"{100 * squashed.mean():.0f}%"
    return out


def glue_numbers(numbers: dict) -> None:
    """Glue every number for the chapter's ``{glue:text}`` roles, without displaying them."""
    from myst_nb import glue

    for name, value in numbers.items():
        glue(name, _plain(value), display=False)
