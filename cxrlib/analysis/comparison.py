"""The paper beside ours: its Tables 1-7 as frames, each beside the same figures of a stored
run, and whether the two compare like for like.

A comparison says whether it is a like-for-like one (``comparable`` and ``note`` columns): a
synthetic run never is; a run on another class set has an n-class accuracy that is not the
paper's 7-class accuracy, while its COVID-19-vs-rest figures stay roughly comparable; a reduced
protocol (smaller images) is not the paper's experiment.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.analysis.tables import (
    BOOTSTRAP_REPLICATES,
    BOOTSTRAP_SEED,
    METRIC_LABELS,
    TWO_CLASS_METRICS,
    config_label,
    config_summary,
    confusion_matrix,
    figure_cell,
    folds_cell,
    our_figure,
    predictions,
)
from cxrlib.core import metrics, paper
from cxrlib.core.profiles import PAPER_CONFIGS, PROFILES, Profile, parse_config
from cxrlib.experiment import runs

#: The paper's protocol (image size, folds), against which a real-data run is comparable.
_PAPER_PROTOCOL = PROFILES["paper"]
#: The metric columns of the paper's Tables 1, 4 and 5, in its order.
TABLE_METRICS = ("acc_2class", "acc_7class", "sensitivity", "specificity")
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
    2: "Off-the-shelf ImageNet features: confusion matrix",
    3: "Off-the-shelf ImageNet features: COVID-19 against the rest",
    4: "Fine-tuning the top blocks: accuracies, sensitivity, specificity",
    5: "Training from scratch: accuracies, sensitivity, specificity",
    6: "Training from scratch: confusion matrix",
    7: "Training from scratch: COVID-19 against the rest",
}
FIGURE_TABLES = (1, 4, 5)
SEVEN_CLASS_MATRICES = (2, 6)
TWO_CLASS_MATRICES = (3, 7)
#: Caveats a comparison row can carry (besides the comparability reason).
NO_RESULTS = "no finished folds yet"
PAPER_BLANK = "the paper prints no figure here"
#: The figures drawn against the number of trainable blocks (the paper's Table 4).
BLOCK_METRICS = ("acc_7class", "sensitivity", "specificity")


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


#: A comparison table's metrics in :func:`cxrlib.core.paper.restricted_figures`' names.
RESTRICTED_KEYS = {"acc_7class": "acc_nclass", "acc_2class": "acc_2class",
                   "sensitivity": "sensitivity", "specificity": "specificity"}
NO_RESTRICTED = ("the paper prints no confusion matrix for fine-tuning, so no figure restricted "
                 "to our classes")


def restricted_figure(run_path: str | Path, config: str, metric: str) -> float:
    """The paper's figure restricted to the run's classes (``paper.restricted_figures``), NaN
    where the paper prints no confusion matrix for the configuration or the run lacks the class
    the metric needs. With all seven classes it is the printed figure."""
    figures = paper.restricted_figures(config, runs.run_classes(run_path))
    if figures is None:
        return math.nan
    return float(figures.get(RESTRICTED_KEYS[metric], math.nan))


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
    profile = runs.run_profile(run_path)
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
                       f"{len(classes)}-class figure, not the paper's 7-class one (it compares "
                       f"with the paper's accuracy on the images of these classes ('paper, our "
                       f"classes', from its confusion matrix: an answer into a class we lack "
                       f"stays an error))")
    if paper.POSITIVE_CLASS not in classes:
        return False, "our run has no COVID-19 class"
    return True, (f"only roughly: the non-COVID side holds {len(others)} of the paper's "
                  f"{len(paper.CLASSES) - 1} other classes ({', '.join(others)})")


def baselines(run_path: str | Path, metric: str) -> tuple[float, float]:
    """The "always not COVID-19" answer's figure on our data and on the paper's counts (%)."""
    if metric not in TWO_CLASS_METRICS:
        return math.nan, math.nan
    fixed = {"sensitivity": 0.0, "specificity": 100.0}
    if metric in fixed:
        return fixed[metric], fixed[metric]
    ours = math.nan
    run_path = runs.resolve(run_path)
    for config in runs.run_configs(run_path):
        pred = predictions(run_path, config)
        if not pred.empty:
            ours = 100 * metrics.not_covid_baseline(pred["label"])
            break
    return ours, 100 * metrics.not_covid_baseline(paper.class_counts())


def _join_caveats(*caveats: str) -> str:
    return "; ".join(dict.fromkeys(c for c in caveats if c))


def _figures_comparison(run_path: Path, n: int, n_boot: int, seed: int) -> pd.DataFrame:
    rows = []
    n_classes = len(runs.run_classes(run_path))
    profile = runs.run_profile(run_path)
    for config in TABLE_CONFIGS[n]:
        summary = config_summary(run_path, config, n_boot, seed)
        for metric in TABLE_METRICS:
            reported = paper_figure(config, metric)
            value, low, high, sd = our_figure(summary, metric)
            comparable, note = comparability(run_path, metric)
            if summary is None:
                note = _join_caveats(NO_RESULTS, note)
            elif reported is None:
                note = _join_caveats(PAPER_BLANK, note)
            base_ours, base_paper = baselines(run_path, metric)
            label = metric_header(metric, n_classes)
            restricted = restricted_figure(run_path, config, metric)
            if n_classes != len(paper.CLASSES) and math.isnan(restricted):
                note = _join_caveats(note, NO_RESTRICTED if config.startswith("fine_tune")
                                     else "")
            rows.append({
                "configuration": config, "strategy": config_label(config),
                "metric": label, "key": metric,
                "paper": math.nan if reported is None else float(reported),
                "paper_restricted": restricted,
                "ours": value,
                "difference": value - reported if reported is not None else math.nan,
                "difference_restricted": value - restricted,
                "ci_low": low, "ci_high": high, "fold_sd": sd,
                "n_folds": 0 if summary is None else int(summary["n_folds"].iloc[0]),
                "expected_folds": profile.n_folds if profile is not None else 0,
                "baseline_ours": base_ours, "baseline_paper": base_paper,
                "comparable": comparable, "note": note,
            })
    return pd.DataFrame(rows)


def comparison_matrices(run_path: str | Path, n: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The paper's confusion matrix of Table ``n`` (2, 3, 6, 7) and ours (None without results)."""
    if n not in SEVEN_CLASS_MATRICES + TWO_CLASS_MATRICES:
        raise ValueError(f"Table {n} is not a confusion matrix (those are 2, 3, 6 and 7)")
    run_path = runs.resolve(run_path)
    config = TABLE_CONFIGS[n][0]
    ours = confusion_matrix(run_path, config)
    if ours is not None and n in TWO_CLASS_MATRICES:
        classes = runs.run_classes(run_path)
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
    run_path = runs.resolve(run_path)
    if n in FIGURE_TABLES:
        frame = _figures_comparison(run_path, n, n_boot, seed)
    else:
        frame = _matrix_comparison(run_path, n)
    frame.attrs.update({"table": n, "title": TABLE_TITLES[n], "run": run_path.name,
                        "n_classes": len(runs.run_classes(run_path)),
                        "comparable": bool(frame["comparable"].all()),
                        "notes": comparison_notes(frame)})
    return frame


def overview_table(run_path: str | Path, n_boot: int = BOOTSTRAP_REPLICATES,
                   seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """Tables 1, 4 and 5 in one frame: every configuration of the paper, one row per metric,
    as :func:`comparison_table` gives them (our figure with its interval and the folds it pools,
    the paper's printed and restricted figures). ``attrs``: run, n_classes."""
    run_path = runs.resolve(run_path)
    frame = pd.concat([comparison_table(run_path, n, n_boot, seed) for n in FIGURE_TABLES],
                      ignore_index=True)
    frame.attrs.update({"run": run_path.name, "n_classes": len(runs.run_classes(run_path))})
    return frame


def metric_header(key: str, n_classes: int) -> str:
    """A compact table's column group for a paper metric, with the run's number of classes."""
    if key != "acc_7class":
        return METRIC_LABELS[key]
    if n_classes == len(paper.CLASSES):
        return f"{n_classes}-class accuracy"
    return f"accuracy (ours {n_classes} classes, paper {len(paper.CLASSES)})"


NEVER_COVID = "Never COVID-19 (rule)"


def display_comparison(frame: pd.DataFrame) -> pd.DataFrame:
    """Tables 1, 4, 5 compact enough for a book page (caveats: :func:`comparison_notes`).

    One row per configuration and one for the "never COVID-19" rule (its figures on our data
    and on the paper's counts); for each metric our figure with its 95% interval on one line
    ("89.5 [88.4, 90.6]"), the paper's printed figure and, with fewer classes than the paper's,
    its accuracy restricted to our classes; the folds each row pools. Confusion matrices: each
    cell "paper / ours", each side as :func:`display_matrix` gives it (the book shows the two
    matrices apart).
    """
    if "predicted" in frame:  # a confusion matrix: both sides in one table, cell by cell
        theirs, ours = display_matrix(frame, "paper"), display_matrix(frame, "ours")
        return theirs.apply(lambda column: [
            f"{cell} / " + (ours.loc[row, column.name] if row in ours.index and column.name
                            in ours.columns else "–") for row, cell in column.items()])
    n_classes = int(frame.attrs.get("n_classes", len(paper.CLASSES)))
    restricted = n_classes != len(paper.CLASSES) and frame["paper_restricted"].notna().any()
    rows, rule = {}, {("", "folds"): "–"}
    for _, part in frame.groupby("configuration", sort=False):
        by = part.set_index("key")
        first = part.iloc[0]
        row = {("", "folds"): folds_cell(int(first["n_folds"]), int(first["expected_folds"]))}
        for key in TABLE_METRICS_SHOWN:
            header, figure = metric_header(key, n_classes), by.loc[key]
            row[(header, "ours")] = figure_cell(figure["ours"], figure["ci_low"],
                                                figure["ci_high"])
            row[(header, "paper")] = figure_cell(figure["paper"])
            rule[(header, "ours")] = figure_cell(figure["baseline_ours"])
            rule[(header, "paper")] = figure_cell(figure["baseline_paper"])
            if key == "acc_7class" and restricted:
                row[(header, "paper, our classes")] = figure_cell(figure["paper_restricted"])
                rule[(header, "paper, our classes")] = "–"
        rows[first["strategy"]] = row
    rows[NEVER_COVID] = rule
    shown = pd.DataFrame.from_dict(rows, orient="index")
    shown.columns = pd.MultiIndex.from_tuples(shown.columns)
    return shown


#: The compact tables' metric order: the n-class accuracy first, then COVID-19 against the rest.
TABLE_METRICS_SHOWN = ("acc_7class", "acc_2class", "sensitivity", "specificity")


def display_matrix(frame: pd.DataFrame, who: str) -> pd.DataFrame:
    """A confusion matrix of a comparison frame (Tables 2, 3, 6, 7), ``who`` "paper" or "ours":
    rows predicted, columns actual, each cell the count and its share of the actual class
    ("298 (67%)"); ours only over the run's classes."""
    if "predicted" not in frame:
        raise ValueError("not a confusion matrix (Tables 2, 3, 6 and 7 are)")
    if who not in ("paper", "ours"):
        raise ValueError(f"who is 'paper' or 'ours', not {who!r}")
    cells = [("–" if pd.isna(count) else f"{count:.0f} ({share:.0f}%)" if not pd.isna(share)
              else f"{count:.0f}") for count, share in zip(frame[who], frame[f"{who}_pct"])]
    order = list(dict.fromkeys(frame["predicted"]))
    wide = frame.assign(cell=cells).pivot(index="predicted", columns="actual", values="cell")
    wide = wide.loc[order, order]
    if who == "ours":
        kept = [c for c in order if frame.loc[frame["actual"] == c, "ours"].notna().any()]
        wide = wide.loc[kept, kept]
    wide.index.name, wide.columns.name = "predicted", "actual"
    return wide


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


def fine_tune_blocks(run_path: str | Path) -> list[int]:
    """The numbers of trainable blocks of the paper's Table 4 and of the run, ascending."""
    ours = [parse_config(c)[1] for c in runs.run_configs(run_path) if c.startswith("fine_tune_")]
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
            value, low, high, _ = our_figure(summary, metric)
            reported = paper_figure(config, metric)
            rows.append({"blocks": blocks, "metric": metric, "ours": value, "ci_low": low,
                         "ci_high": high, "folds": folds,
                         "paper": math.nan if reported is None else float(reported)})
    return pd.DataFrame(rows, columns=["blocks", "metric", "ours", "ci_low", "ci_high", "folds",
                                       "paper"])


def runs_with_fine_tuning(run_path: str | Path) -> list[Path]:
    """The run, then every other stored real-data run with fine-tuning results (e.g. a reduced
    CPU run beside a GPU one), for :func:`blocks_figure`."""
    run_path = runs.resolve(run_path)
    others = []
    for name in runs.runs_with_results(run_path.parent):
        other = run_path.parent / name
        profile = runs.run_profile(other)
        if other != run_path and profile is not None and profile.dataset == "real" and any(
                c.startswith("fine_tune_") and runs.has_results(other, c) for c in runs.run_configs(other)):
            others.append(other)
    return [run_path, *others]
