"""The figures of the book's results and comparison chapters, read from the results store only:
confusion matrices, training curves, the spread across folds, the paper's matrices beside ours
and the fine-tuning figures against the number of trainable blocks.

Each function returns a closed matplotlib figure, so that a notebook shows it once, where it is
returned.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from cxrlib.analysis.comparison import (
    BLOCK_METRICS,
    FIGURE_TABLES,
    SEVEN_CLASS_MATRICES,
    TABLE_METRICS_SHOWN,
    TABLE_TITLES,
    TWO_CLASS_MATRICES,
    blocks_table,
    comparability,
    comparison_matrices,
    comparison_table,
    display_comparison,
    display_matrix,
    fine_tune_blocks,
    metric_header,
    overview_table,
    paper_figure,
    runs_with_fine_tuning,
)
from cxrlib.analysis.tables import (
    BOOTSTRAP_REPLICATES,
    METRIC_LABELS,
    config_label,
    confusion_matrix,
    fold_table,
    styled,
)
from cxrlib.core import paper
from cxrlib.experiment import results, runs


def _figure(*args, **kwargs):
    # pyplot (not a bare Figure) so that Jupyter's inline backend knows how to show it; each
    # figure is closed before it is returned, so a notebook shows it once, where it is returned.
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
        return empty_figure(f"{config_label(config)}: no finished folds yet")
    return confusion_heatmap(cm, config_label(config))


def confusion_grid(run_path: str | Path, configs=None):
    """The pooled confusion matrices of several configurations, small multiples in one figure."""
    run_path = runs.resolve(run_path)
    configs = [c for c in (configs if configs is not None else runs.run_configs(run_path))
               if runs.has_results(run_path, c)]
    if not configs:
        return empty_figure(f"No finished folds in run {run_path.name} yet")
    n_classes = len(runs.run_classes(run_path))
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


def empty_figure(message: str):
    fig, ax = _figure(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def training_curves(run_path: str | Path, config: str):
    """Loss and accuracy per epoch for every finished fold: training solid, validation dashed."""
    history = results.read_history(runs.resolve(run_path), config)
    if history.empty:
        return empty_figure(f"{config_label(config)}: no training history yet")
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
    run_path = runs.resolve(run_path)
    configs = [c for c in runs.run_configs(run_path) if runs.has_results(run_path, c)]
    if not configs:
        return empty_figure(f"No finished folds in run {run_path.name} yet")
    classes = runs.run_classes(run_path)
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
        ax.set_xticks(range(len(configs)), [_short_label(c) for c in configs], rotation=40,
                      ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Spread across test folds, run {run_path.name}", fontsize=11)
    fig.tight_layout()
    return fig


def comparison_figure(run_path: str | Path, n: int):
    """The paper's confusion matrix of Table ``n`` and ours, side by side, same colour scale;
    each panel titled with its own number of classes."""
    run_path = runs.resolve(run_path)
    theirs, ours = comparison_matrices(run_path, n)
    side = _matrix_side(len(theirs.columns))
    fig, axes = _figure(1, 2, figsize=(2 * side + 0.8, side + 0.3))
    _draw_matrix(axes[0], theirs, f"Paper, Table {n} ({len(theirs.columns)} classes)")
    if ours is None:
        axes[1].axis("off")
        axes[1].text(0.5, 0.5, "no results yet", ha="center", va="center")
    else:
        _draw_matrix(axes[1], ours, f"Ours, run {run_path.name} ({len(ours.columns)} classes)")
    fig.suptitle(TABLE_TITLES[n] + "\n(colour: share of the actual class)", fontsize=9)
    fig.tight_layout()
    return fig


def _short_label(config: str) -> str:
    return {"off_the_shelf": "off the shelf", "from_scratch": "from scratch"}.get(
        config, config.replace("fine_tune_", "FT "))


def comparison_overview(run_path: str | Path, n_boot: int = BOOTSTRAP_REPLICATES):
    """The paper against us at a glance: for every configuration of the paper, the n-class and
    2-class accuracy, COVID-19 sensitivity and specificity; ours as points with 95% intervals
    (the folds pooled written where fewer than all), the paper's printed figures as crosses, its
    figures restricted to our classes as diamonds; a configuration without folds is marked
    "not run" (absent, not zero)."""
    frame = overview_table(run_path, n_boot)
    n_classes = frame.attrs["n_classes"]
    configs = list(dict.fromkeys(frame["configuration"]))
    fig, axes = _figure(2, 2, figsize=(10.5, 6.6), sharex=True, squeeze=False)
    for ax, key in zip(axes.ravel(), TABLE_METRICS_SHOWN):
        rows = frame[frame["key"] == key].set_index("configuration").loc[configs]
        x = np.arange(len(configs))
        done = rows["n_folds"].to_numpy() > 0
        ours = rows["ours"].to_numpy(dtype=float)
        ax.errorbar(x[done], ours[done], yerr=[ours[done] - rows["ci_low"].to_numpy()[done],
                                               rows["ci_high"].to_numpy()[done] - ours[done]],
                    fmt="o", color="tab:blue", ms=5, capsize=3, lw=1.2, label="ours (95% CI)")
        ax.plot(x, rows["paper"], "x", color="black", ms=8, mew=2, label="paper (printed)")
        if rows["paper_restricted"].notna().any() and n_classes != len(paper.CLASSES):
            ax.plot(x, rows["paper_restricted"], "D", mfc="none", color="tab:red", ms=6,
                    label=f"paper on our {n_classes} classes")
        for i, (folds, expected) in enumerate(zip(rows["n_folds"], rows["expected_folds"])):
            if not folds:
                ax.axvspan(i - 0.4, i + 0.4, color="0.93", zorder=0)
                ax.text(i, 0.97, "not run", transform=ax.get_xaxis_transform(), ha="center",
                        va="top", fontsize=7, color="0.4")
            elif folds < expected:
                ax.annotate(f"{folds}/{expected}", (i, ours[i]), textcoords="offset points",
                            xytext=(9, -3), fontsize=7, color="tab:blue")
        ax.set_title(metric_header(key, n_classes) + " (%)", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xticks(range(len(configs)), [_short_label(c) for c in configs], rotation=40,
                      ha="right", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def blocks_figure(run_paths, n_boot: int = BOOTSTRAP_REPLICATES):
    """Accuracy, sensitivity and specificity against the number of trainable blocks: each run's
    figures with their 95% intervals (the folds each pools written beside it) and the paper's
    as crosses."""
    run_paths = [runs.resolve(p) for p in ([run_paths] if isinstance(run_paths, (str, Path))
                                          else run_paths)]
    tables = [(p, blocks_table(p, n_boot)) for p in run_paths]
    fig, axes = _figure(1, len(BLOCK_METRICS), figsize=(10.5, 3.4), sharex=True)
    markers = "osD^v"
    for ax, metric in zip(axes, BLOCK_METRICS):
        for i, (path, table) in enumerate(tables):
            rows = table[(table["metric"] == metric) & (table["folds"] > 0)]
            offset = 0.18 * (i - (len(tables) - 1) / 2)
            profile = runs.run_profile(path)
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


def comparison_outputs(run_path: str | Path, n_boot: int = BOOTSTRAP_REPLICATES) -> dict:
    """Every figure and table of the comparison chapter, by glue name (the chapter places each
    with a ``{glue:figure}`` directive and its caption): ``cmp_overview`` (the paper against us
    at a glance), ``cmp_table<n>`` for Tables 1, 4, 5, ``cmp_table<n>_paper``/``_ours`` and
    ``cmp_figure<n>`` for the confusion matrices, ``cmp_blocks`` (Table 4 against the number of
    trainable blocks)."""
    run_path = runs.resolve(run_path)
    outputs = {"cmp_overview": comparison_overview(run_path, n_boot)}
    for n in FIGURE_TABLES:
        outputs[f"cmp_table{n}"] = styled(display_comparison(
            comparison_table(run_path, n, n_boot)))
    for n in SEVEN_CLASS_MATRICES + TWO_CLASS_MATRICES:
        frame = comparison_table(run_path, n, n_boot)
        for who in ("paper", "ours"):
            outputs[f"cmp_table{n}_{who}"] = styled(display_matrix(frame, who))
        outputs[f"cmp_figure{n}"] = comparison_figure(run_path, n)
    outputs["cmp_blocks"] = blocks_figure(runs_with_fine_tuning(run_path), n_boot)
    return outputs
