"""Figures of the audit, drawn from its stored tables (the notebook and the book chapter).

Nothing here trains or computes a result. A figure draws an image only where the caller passes
its pixels (synthetic images, or real ones where ``CXRLIB_SHOW_REAL_IMAGES=1``).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxrlib.analysis.explain import randomisation_summary, upsample
from cxrlib.audit.saliency import stored_maps
from cxrlib.audit.verdict import THRESHOLDS, Figure, table_figure
from cxrlib.data import regions


def _new_figure(*args, **kwargs):
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


def two_way_rows(table: pd.DataFrame | None, names: dict[str, str],
                 metrics_shown=("accuracy", "acc_2class")) -> list[tuple[str, Figure]]:
    """Bars for :func:`interval_figure` from a :func:`~.scoring.compare` table: one per name
    and metric."""
    if table is None:
        return []
    rows = []
    for metric in metrics_shown:
        for column, label in names.items():
            figure = table_figure(table, {"metric": metric}, column, f"{column}_low",
                                  f"{column}_high")
            if figure is not None:
                rows.append((f"{label}, {'n-class' if metric == 'accuracy' else '2-class'}",
                             figure))
    return rows


def masked_figure(masked: pd.DataFrame):
    """Accuracy with full images, without the lungs and with the lungs alone, chance marked."""
    accuracy = masked[masked["metric"] == "accuracy"]
    return interval_figure([(r["input"], Figure(r["value"], r["ci_low"], r["ci_high"]))
                            for _, r in accuracy.iterrows()], "Accuracy by what the network sees",
                           chance=float(accuracy["chance"].iloc[0]))


def _lung_outline(ax, size: int) -> None:
    """The lung ellipses of an image whose content fills the square, as a guide."""
    t = np.linspace(0, 2 * np.pi, 100)
    for side in (-1, 1):
        x = (0.5 + side * regions.LUNG_CENTRE_X + regions.LUNG_HALF_WIDTH * np.cos(t)) * size
        y = (regions.LUNG_CENTRE_Y + regions.LUNG_HALF_HEIGHT * np.sin(t)) * size
        ax.plot(x - 0.5, y - 0.5, color="white", linewidth=0.8, linestyle="--")


def mean_maps_figure(map_table: pd.DataFrame, size: int = 64):
    """Each class's mean Grad-CAM map (no image in it), with the nominal lung fields outlined."""
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


def percent_table(table: pd.DataFrame, columns) -> pd.DataFrame:
    """A copy with the named fraction columns in percent (for display)."""
    out = table.copy()
    for column in columns:
        if column in out:
            out[column] = 100 * out[column]
    return out
