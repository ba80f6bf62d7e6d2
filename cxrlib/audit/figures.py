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
from cxrlib.audit.scoring import retained_share
from cxrlib.audit.verdict import THRESHOLDS, Figure, Thresholds, control_status, table_figure
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


def confound_rows(confound: pd.DataFrame | None,
                  statistics: pd.DataFrame | None) -> list[tuple[str, Figure]]:
    """Bars for :func:`interval_figure`: the dataset confound (the original size alone) beside
    the rival (the better image-statistics model on all features), n-class and 2-class."""
    rows = []
    for metric, kind in (("accuracy", "n-class"), ("acc_2class", "2-class")):
        if statistics is not None:
            best = statistics[(statistics["features"] == "all")
                              & (statistics["metric"] == "accuracy")]
            model = best.sort_values("value").iloc[-1]["model"] if not best.empty else None
            figure = table_figure(statistics, {"model": model, "features": "all",
                                               "metric": metric})
            if figure is not None:
                rows.append((f"image statistics (the rival), {kind}", figure))
        figure = table_figure(confound, {"metric": metric})
        if figure is not None:
            rows.append((f"original size (dataset confound), {kind}", figure))
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
    fig, axes = _new_figure(1, len(names), figsize=(1.7 * len(names) + 0.8, 2.2),
                            squeeze=False, layout="constrained")
    maps = upsample(stored_maps(map_table).astype(np.float32), size)
    for ax, name in zip(axes[0], names):
        mean = maps[(map_table["label"] == name).to_numpy()].mean(axis=0)
        shown = ax.imshow(mean / max(1e-6, float(mean.max())), cmap="jet", vmin=0, vmax=1)
        _lung_outline(ax, size)
        ax.set_title(f"{name} (n={int((map_table['label'] == name).sum())})", fontsize=8)
        ax.axis("off")
    bar = fig.colorbar(shown, ax=axes[0].tolist(), shrink=0.8)
    bar.set_label("share of the map's largest weight", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle("Mean Grad-CAM map per class (dashed: lung fields of a full-frame image)",
                 fontsize=9)
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


# --------------------------------------------------------------------------------------------
# The verdict's evidence as a forest plot


def _forest_row(test: str, label: str, figure: Figure | None, threshold: float,
                fires_above: bool, scale: str, evidence: dict) -> dict | None:
    if figure is None or math.isnan(figure.value):
        return None
    return {"test": test, "label": label, "value": figure.value, "low": figure.low,
            "high": figure.high, "threshold": threshold, "fires_above": fires_above,
            "scale": scale, "status": control_status(evidence, test)}


def forest_rows(evidence: dict, t: Thresholds = THRESHOLDS) -> list[dict]:
    """Each shortcut test's effect (with its 95% interval where it has one), its threshold,
    the side on which it fires and its control status (:func:`.verdict.counted_tests`)."""
    rows = []
    border = evidence.get("border_retained")
    rows.append(_forest_row("lungs blacked out", "lungs blacked out: accuracy above chance kept",
                            None if border is None else Figure(border), t.retained_shortcut,
                            True, "share", evidence))
    stats, network, chance = (evidence.get(k) for k in ("statistics_accuracy", "accuracy",
                                                          "chance"))
    if None not in (stats, network, chance):
        share = [retained_share(v, network.value, chance.value)
                 for v in (stats.value, stats.low, stats.high)]
        rows.append(_forest_row("image statistics", "image statistics: share of the network's "
                                "accuracy above chance", Figure(*share), t.statistics_rival,
                                True, "share", evidence))
    rows.append(_forest_row("collections recognisable, classes not within them",
                            "source probe accuracy", evidence.get("source_probe"),
                            t.source_recognisable, True, "share", evidence))
    for name, net, statistics in evidence.get("pairs_within") or []:
        rows.append(_forest_row("disease pairs inside one collection no better than image "
                                "statistics", f"{name}: network AUC minus statistics' AUC",
                                Figure(net.value - statistics.value, net.low - statistics.value,
                                       net.high - statistics.value), 0.0, False, "AUC",
                                evidence))
    for key, label in (("lung_enrichment", "all images"),
                       ("covid_lung_enrichment", "COVID-19 images")):
        value = evidence.get(key)
        rows.append(_forest_row("saliency outside the lungs", f"saliency in the lungs / their "
                                f"area, {label}", None if value is None else Figure(value),
                                t.lung_enrichment, False, "ratio", evidence))
    for label, fall in [("adult Normal: accuracy falls", evidence.get("age_swap_fall")),
                        ("adult Normal: Normal's recall falls",
                         evidence.get("age_swap_normal_fall"))]:
        rows.append(_forest_row("adult Normal images", label, fall, t.material_gap, True,
                                "points", evidence))
    if not evidence.get("synthetic"):
        for name, fall in evidence.get("elsewhere_falls") or []:
            rows.append(_forest_row("a class's recall falls on images from elsewhere",
                                    f"recall falls elsewhere: {name}", fall, t.material_gap,
                                    True, "points", evidence))
    return [r for r in rows if r is not None]


def forest_figure(rows: list[dict]):
    """One line per effect: the point and its 95% interval, the test's threshold as a red
    line, the side where the test fires shaded; black where the verdict counts the test
    (passed its controls), grey where not."""
    fig, axes = _new_figure(len(rows), 1, figsize=(7.2, 0.78 * len(rows) + 0.4),
                            squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        scale = 100 if row["scale"] in ("share", "points") else 1
        value, threshold = scale * row["value"], scale * row["threshold"]
        low, high = (scale * row[k] if not math.isnan(row[k]) else value
                     for k in ("low", "high"))
        span = max(abs(value - threshold), abs(low - threshold), abs(high - threshold), 1e-9)
        left, right = threshold - 1.3 * span, threshold + 1.3 * span
        ax.axvspan(threshold, right, color="#f4cccc") if row["fires_above"] else \
            ax.axvspan(left, threshold, color="#f4cccc")
        ax.axvline(threshold, color="#c0392b", linestyle="--", linewidth=1)
        colour = "black" if row["status"] == "passed" else "#999999"
        ax.errorbar([value], [0], xerr=[[value - low], [high - value]], fmt="o",
                    color=colour, capsize=3)
        ax.set_xlim(left, right)
        ax.set_yticks([])
        ax.set_title(f"{row['label']} [{row['status']}]", loc="left", fontsize=8, pad=2)
        ax.tick_params(axis="x", labelsize=7, pad=1)
        unit = {"share": "%", "points": " points", "AUC": " AUC", "ratio": ""}[row["scale"]]
        ax.text(1.01, 0.5, f"{value:.1f}{unit}" if scale == 100 else f"{value:.2f}{unit}",
                transform=ax.transAxes, fontsize=8, va="center")
    fig.tight_layout(h_pad=0.2)
    return fig

