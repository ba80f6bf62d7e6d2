"""Numbers and short phrases for the chapters' prose, by glue name (``myst_nb.glue``).

The findings are written in the chapters' Markdown; this module only computes what they quote:
the paper's figures, ours with their intervals, the differences, the trivial baseline, and a few
short phrases (a trend, a list of configurations). Every value is a plain ``int``, ``float`` or
``str``, so that ``{glue:text}`` can format it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from myst_nb import glue

from cxrlib.analysis.comparison import TABLE_METRICS, blocks_table, comparability, paper_figure
from cxrlib.analysis.tables import (
    BOOTSTRAP_REPLICATES,
    BOOTSTRAP_SEED,
    TWO_CLASS_METRICS,
    config_label,
    config_summary,
    our_figure,
    predictions,
)
from cxrlib.core import metrics, paper
from cxrlib.core.profiles import PAPER_CONFIGS
from cxrlib.experiment import results, runs


def _plain(value):
    """A JSON/repr-friendly Python scalar (glue renders ``repr``: no numpy types)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


def _text(value: float, low: float, high: float, unit: str = "%", folds: str = "") -> str:
    """``89.5% (95% CI 88.4 to 90.6; 10 of 10 folds)``: one decimal, as the tables print it
    (AUC three), with the folds the figure pools."""
    if math.isnan(value):
        return "not available (no finished folds)"
    digits = 3 if unit == "" else 1
    inside = [] if math.isnan(low) else [f"95% CI {low:.{digits}f} to {high:.{digits}f}"]
    inside += [folds] if folds else []
    return f"{value:.{digits}f}{unit}" + (f" ({'; '.join(inside)})" if inside else "")


def folds_text(done: int, expected: int) -> str:
    """The folds a figure pools, for the prose: ``8 of 10 folds``."""
    return "no folds" if not done else f"{done} of {expected} folds"


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
    run_path = runs.resolve(run_path)
    configs = runs.run_configs(run_path) or PAPER_CONFIGS
    numbers = {**paper_numbers(), "bootstrap_replicates": n_boot}
    numbers.update(run_numbers(run_path, configs))
    numbers.update(config_numbers(run_path, configs, n_boot, seed))
    for key, metric in (("nclass", "acc_7class"), ("2class", "acc_2class")):
        comparable, note = comparability(run_path, metric)
        numbers[f"comparable_{key}_text"] = (
            ("comparable with the paper" + (f" {note}" if note else "")) if comparable
            else f"not comparable with the paper ({note})")
    for config in configs:
        margin = numbers.get(f"ours_{config}_acc_2class", math.nan) - \
            numbers["ours_not_covid_baseline"]
        numbers[f"ours_{config}_over_baseline"] = margin
        numbers[f"ours_{config}_over_baseline_text"] = "not available" if math.isnan(margin) \
            else f"{abs(margin):.2f} percentage points {'above' if margin >= 0 else 'below'}"
    return {k: _plain(v) for k, v in numbers.items()}


def paper_numbers() -> dict:
    """The paper's figures the prose quotes: its image counts, its Tables 1/4/5 (percent), the
    "never COVID-19" rule on its counts, and which configurations do no better than that rule."""
    counts = paper.class_counts()
    numbers: dict = {
        "paper_total_images": paper.reported()["total_images"],
        "paper_covid_images": counts[paper.POSITIVE_CLASS],
        "paper_n_classes": len(paper.CLASSES),
        "paper_not_covid_baseline": 100 * metrics.not_covid_baseline(counts),
    }
    for config in PAPER_CONFIGS:
        for metric in TABLE_METRICS:
            reported = paper_figure(config, metric)
            if reported is not None:
                numbers[f"paper_{config}_{metric}"] = float(reported)
    baseline = numbers["paper_not_covid_baseline"]
    below = [config_label(c) for c in PAPER_CONFIGS
             if (paper_figure(c, "acc_2class") or math.inf) < baseline]
    numbers["paper_below_baseline_count"] = len(below)
    numbers["paper_below_baseline_text"] = ", ".join(below) or "none"
    for config in PAPER_CONFIGS:
        reported = paper_figure(config, "acc_2class")
        if reported is not None:
            numbers[f"paper_{config}_over_baseline"] = reported - baseline
    return numbers


def run_numbers(run_path: Path, configs) -> dict:
    """What the run is: its name and label, classes, folds, images, COVID-19 images, the
    configurations done and missing, and the "never COVID-19" rule on its images."""
    profile = runs.run_profile(run_path)
    classes = runs.run_classes(run_path)
    done = [c for c in configs if runs.has_results(run_path, c)]
    numbers: dict = {
        "run_name": run_path.name, "run_label": runs.run_label(run_path),
        "ours_n_classes": len(classes),
        "ours_n_folds": profile.n_folds if profile else 0,
        "configs_done": ", ".join(config_label(c) for c in done) or "none",
        "configs_missing": ", ".join(config_label(c) for c in configs if c not in done) or "none",
    }
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
    numbers["run_classes_text"] = ", ".join(classes)
    numbers["run_image_size"] = profile.image_size if profile else 0
    numbers["run_coverage_text"] = coverage_text(run_path, configs)
    return numbers


def coverage_text(run_path: Path, configs) -> str:
    """Which configurations pool how many folds: ``10 of 10 folds: Off-the-shelf features,
    Fine-tuning 11; 8 of 10 folds: Fine-tuning 3; no folds: Fine-tuning 1``."""
    profile = runs.run_profile(run_path)
    expected = profile.n_folds if profile else 0
    groups: dict[int, list[str]] = {}
    for config in configs:
        groups.setdefault(len(results.done_folds(run_path, config)), []).append(
            config_label(config))
    return "; ".join(f"{folds_text(done, expected)}: {', '.join(names)}"
                     for done, names in sorted(groups.items(), reverse=True))


def config_numbers(run_path: Path, configs, n_boot: int, seed: int) -> dict:
    """Each configuration's figures (percent; AUC a fraction) with their intervals, fold sd, a
    ready phrase, the difference from the paper's, and the configuration with the best accuracy."""
    numbers: dict = {}
    best, best_accuracy = "none", -math.inf
    profile = runs.run_profile(run_path)
    expected = profile.n_folds if profile is not None else 0
    for config in configs:
        summary = config_summary(run_path, config, n_boot, seed)
        done = 0 if summary is None else int(summary["n_folds"].iloc[0])
        numbers[f"ours_{config}_folds"] = done
        numbers[f"ours_{config}_folds_text"] = folds_text(done, expected)
        for metric in ("acc_2class", "acc_7class", "sensitivity", "specificity", "auc"):
            name = f"ours_{config}_{'acc_nclass' if metric == 'acc_7class' else metric}"
            value, low, high, sd = our_figure(summary, metric)
            numbers.update({name: value, f"{name}_ci_low": low, f"{name}_ci_high": high,
                            f"{name}_sd": sd,
                            f"{name}_text": _text(value, low, high, "" if metric == "auc" else "%",
                                                  folds_text(done, expected))})
            reported = paper_figure(config, metric) if metric != "auc" else None
            if reported is not None:
                numbers[f"diff_{config}_{metric}"] = value - reported
            if metric == "acc_7class" and not math.isnan(value) and value > best_accuracy:
                best, best_accuracy = config_label(config), value
    numbers["ours_best_config"] = best
    return numbers


def _points_against(ours: float, low: float, high: float, reported: float,
                    folds: str = "") -> str:
    """``-4.0 percentage points (ours 95.2% [94.4, 96.0], 10 of 10 folds, against the paper's
    99.18%)``: ours as every chapter prints it, the paper's as it prints it."""
    if math.isnan(ours):
        return "not available (no finished folds)"
    return (f"{ours - reported:+.1f} percentage points (ours {ours:.1f}% [{low:.1f}, "
            f"{high:.1f}]{', ' + folds if folds else ''}, against the paper's {reported:.2f}%)")


#: A curated image whose source file was exactly this size is a copy squashed to a square by
#: whoever shared it (the shared bundle's Kermany copies, see shared/data/PROVENANCE.md).
SQUASHED_SIDE = 224


def difference_numbers(run_path: str | Path, n_boot: int = BOOTSTRAP_REPLICATES) -> dict:
    """Glue phrases for where a real run's headline figures differ from the paper's and what in
    the data may explain it: each 2-class figure of the off-the-shelf and from-scratch
    strategies against the paper's, the COVID-19 images against the paper's count, the classes
    missing, and the share of Kermany images that reached us squashed to a square."""
    run_path = runs.resolve(run_path)
    profile = runs.run_profile(run_path)
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
            value, low, high, _ = our_figure(summary, metric)
            folds = folds_text(0 if summary is None else int(summary["n_folds"].iloc[0]),
                               profile.n_folds)
            out[f"gap_{config}_{metric}_text"] = (
                "not printed by the paper" if reported is None else
                _points_against(value, low, high, float(reported), folds))
    classes = runs.run_classes(run_path)
    missing = [c for c in paper.CLASSES if c not in classes]
    out["gap_missing_classes_text"] = ", ".join(missing) if missing else "none"
    manifest = runs.curated_manifest(run_path)
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
    profile = runs.run_profile(run_path)
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


def glue_outputs(outputs: dict) -> None:
    """Glue figures and tables for the chapters' ``{glue:figure}`` directives (which give them
    their captions), without displaying them here."""
    for name, output in outputs.items():
        glue(name, output, display=False)


def glue_numbers(numbers: dict) -> None:
    """Glue every number for the chapter's ``{glue:text}`` roles, without displaying them."""
    for name, value in numbers.items():
        glue(name, _plain(value), display=False)
