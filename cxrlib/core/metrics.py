"""Metrics from stored out-of-fold predictions, defined the way the paper defines them.

Every function takes a prediction table as the results store writes it (one row per test
image: ``image_id, fold, label, patient_id, source, p_<class>...``) and returns plain numbers or
tidy frames. Proportions are fractions in [0, 1]; :mod:`cxrlib.analysis.tables` turns them into the
paper's percentages. Nothing here plots, trains or reads files.

Definitions, after Apostolopoulos et al. (2020), section 2.5 and Tables 1-7:

- the predicted class of an image is the class with the highest probability (ties: the first
  class in profile order);
- the n-class accuracy of a run is the mean of its test-fold accuracies (the paper's "7-class
  accuracy" when all seven classes are present), reported with the spread across folds;
- confusion matrices are pooled over the folds and laid out as the paper prints them: rows are
  the predicted class, columns the actual class;
- the two-class figures put COVID-19 against every other class, an image counting as
  "predicted COVID-19" when its arg-max is COVID-19; sensitivity = TP / (TP + FN),
  specificity = TN / (TN + FP), both from the pooled counts (the paper's Tables 3 and 7 give
  exactly its printed sensitivities and specificities this way).

Confidence intervals come from a patient-level bootstrap: patients are drawn with replacement
and all images of a drawn patient come along, because images of one patient are not
independent evidence.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from cxrlib.core.paper import POSITIVE_CLASS

PROBABILITY_PREFIX = "p_"
#: Metrics of :func:`summary`, in the order the paper's tables give them (plus the AUC).
SUMMARY_METRICS: tuple[str, ...] = ("accuracy", "acc_2class", "sensitivity", "specificity", "auc")
#: Metrics the paper reports as the mean over test folds; the others come from pooled counts.
FOLD_MEAN_METRICS: frozenset[str] = frozenset({"accuracy", "acc_2class"})
#: The label used for "every class but COVID-19" when a two-class table is turned into images.
NOT_POSITIVE = "non-COVID-19"


# --------------------------------------------------------------------------------------------
# Reading a prediction table


def probability_column(cls: str) -> str:
    return f"{PROBABILITY_PREFIX}{cls}"


def classes_of(pred: pd.DataFrame) -> tuple[str, ...]:
    """The classes of a prediction table, in the order of its ``p_<class>`` columns."""
    classes = tuple(c[len(PROBABILITY_PREFIX):] for c in pred.columns
                    if str(c).startswith(PROBABILITY_PREFIX))
    if not classes:
        raise ValueError(
            f"the prediction table has no {PROBABILITY_PREFIX}<class> columns (columns: "
            f"{list(pred.columns)}); read it with cxrlib.experiment.results.read_predictions")
    return classes


def check_predictions(pred: pd.DataFrame, classes: Sequence[str] | None = None,
                      ) -> tuple[str, ...]:
    """The classes to score ``pred`` on, after checking the table can be scored at all."""
    if pred is None or len(pred) == 0:
        raise ValueError("no predictions to score: the configuration has no finished folds "
                         "(run it with `python -m cxrlib run ...`)")
    classes = tuple(classes) if classes is not None else classes_of(pred)
    required = ["label", *(probability_column(c) for c in classes)]
    missing = [c for c in required if c not in pred.columns]
    if missing:
        raise ValueError(f"prediction table lacks column(s) {missing}; it has {list(pred.columns)}")
    unknown = sorted(set(pred["label"]) - set(classes))
    if unknown:
        raise ValueError(f"prediction table has labels {unknown} outside the scored classes "
                         f"{list(classes)}")
    return classes


def predicted_labels(pred: pd.DataFrame, classes: Sequence[str] | None = None) -> np.ndarray:
    """The arg-max class of every row."""
    classes = check_predictions(pred, classes)
    probs = pred[[probability_column(c) for c in classes]].to_numpy(dtype=float)
    return np.asarray(classes, dtype=object)[probs.argmax(axis=1)]


def class_counts(pred: pd.DataFrame) -> dict[str, int]:
    """Images per actual class."""
    return {str(k): int(v) for k, v in pred["label"].value_counts(sort=False).items()}


# --------------------------------------------------------------------------------------------
# Point estimates


def safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN (not an error) when nothing was there to count."""
    return float(numerator) / float(denominator) if denominator else float("nan")


def rates_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Two-class accuracy, sensitivity and specificity from the four counts."""
    return {
        "acc_2class": safe_ratio(tp + tn, tp + fp + fn + tn),
        "sensitivity": safe_ratio(tp, tp + fn),
        "specificity": safe_ratio(tn, tn + fp),
    }


def covid_vs_rest(pred: pd.DataFrame, classes: Sequence[str] | None = None) -> dict:
    """COVID-19 against the rest, pooled: tp, fp, fn, tn, n, acc_2class, sensitivity, specificity."""
    classes = check_predictions(pred, classes)
    if POSITIVE_CLASS not in classes:
        raise ValueError(f"two-class figures need the class {POSITIVE_CLASS!r}; the run has "
                         f"{list(classes)}")
    actual = pred["label"].to_numpy() == POSITIVE_CLASS
    said = predicted_labels(pred, classes) == POSITIVE_CLASS
    counts = {"tp": int(np.sum(said & actual)), "fp": int(np.sum(said & ~actual)),
              "fn": int(np.sum(~said & actual)), "tn": int(np.sum(~said & ~actual))}
    return {**counts, "n": len(pred), **rates_from_counts(**counts)}


def two_by_two(counts: Mapping[str, int]) -> pd.DataFrame:
    """The two-class confusion matrix as the paper prints it (rows predicted, columns actual)."""
    return pd.DataFrame(
        [[counts["tp"], counts["fp"]], [counts["fn"], counts["tn"]]],
        index=pd.Index([POSITIVE_CLASS, NOT_POSITIVE], name="predicted"),
        columns=pd.Index([POSITIVE_CLASS, NOT_POSITIVE], name="actual"),
    )


def confusion(pred: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Pooled confusion matrix, rows = predicted class, columns = actual class, profile order."""
    classes = check_predictions(pred, classes)
    index = {c: i for i, c in enumerate(classes)}
    rows = np.array([index[c] for c in predicted_labels(pred, classes)], dtype=int)
    cols = pred["label"].map(index).to_numpy(dtype=int)
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (rows, cols), 1)
    return pd.DataFrame(counts, index=pd.Index(classes, name="predicted"),
                        columns=pd.Index(classes, name="actual"))


def fold_metrics(pred: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per test fold: fold, n, accuracy (n-class) and, with COVID-19, the 2-class figures."""
    classes = check_predictions(pred, classes)
    if "fold" not in pred.columns:
        raise ValueError("prediction table has no 'fold' column")
    rows = []
    for fold, part in pred.groupby("fold", sort=True):
        said = predicted_labels(part, classes)
        row = {"fold": int(fold), "n": len(part),
               "accuracy": float(np.mean(said == part["label"].to_numpy()))}
        if POSITIVE_CLASS in classes:
            two = covid_vs_rest(part, classes)
            row.update({k: two[k] for k in ("acc_2class", "sensitivity", "specificity")})
        rows.append(row)
    return pd.DataFrame(rows)


def fold_accuracies(pred: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Tidy per-fold accuracies (fold, n, accuracy); the paper's accuracy is their mean."""
    return fold_metrics(pred, classes)[["fold", "n", "accuracy"]]


def per_class(pred: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and support of every class (NaN where a ratio has nothing to count)."""
    # scikit-learn's metrics take ~0.5 s to import and the book command's warm path imports
    # this module (through cxrlib.experiment.runs) without computing this.
    from sklearn.metrics import precision_recall_fscore_support

    classes = check_predictions(pred, classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        pred["label"].to_numpy(dtype=object), predicted_labels(pred, classes),
        labels=list(classes), zero_division=np.nan)
    return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                         "support": support.astype(int)},
                        index=pd.Index(classes, name="class"))


def covid_auc(pred: pd.DataFrame) -> float:
    """ROC AUC of ``p_COVID-19`` for COVID-19 against the rest (NaN if one side is empty)."""
    # scikit-learn's metrics take ~0.5 s to import and the book command's warm path imports
    # this module (through cxrlib.experiment.runs) without computing this.
    from sklearn.metrics import roc_auc_score

    check_predictions(pred)
    actual = pred["label"].to_numpy() == POSITIVE_CLASS
    if actual.all() or not actual.any():
        return float("nan")
    return float(roc_auc_score(actual, pred[probability_column(POSITIVE_CLASS)].to_numpy(float)))


def not_covid_baseline(labels: Mapping[str, int] | Iterable[str]) -> float:
    """Accuracy of always answering "not COVID-19": the share of non-COVID images.

    ``labels`` is either a class -> image count mapping (e.g. ``cxrlib.core.paper.class_counts()``)
    or the actual label of every image.
    """
    counts = dict(labels) if isinstance(labels, Mapping) else \
        pd.Series(list(labels)).value_counts().to_dict()
    total = sum(counts.values())
    return safe_ratio(total - counts.get(POSITIVE_CLASS, 0), total)


# --------------------------------------------------------------------------------------------
# Patient-level bootstrap


def patient_codes(pred: pd.DataFrame) -> np.ndarray:
    """An integer per image naming its patient; images without a patient id stand alone."""
    ids = pred["patient_id"].astype(str).to_numpy(dtype=object) if "patient_id" in pred \
        else np.full(len(pred), "", dtype=object)
    own = np.array([f"\0image-{i}" for i in range(len(pred))], dtype=object)
    ids = np.where(ids == "", own, ids)
    return pd.factorize(ids)[0]


def bootstrap_weights(n_groups: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each group is drawn in each of ``n_boot`` resamples (shape n_boot x n_groups).

    Drawing ``n_groups`` groups with replacement is a multinomial draw with equal
    probabilities, which gives the counts directly without materialising the draws.
    """
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of ``weights`` (replicates x images), ties counted as one half.

    The Mann-Whitney form: for every positive image, the weight of negatives scored below it
    (plus half of those tied with it), summed and normalised by total positive x negative weight.
    """
    weights = np.atleast_2d(weights).astype(float)
    levels, level_of = np.unique(scores, return_inverse=True)
    order = np.argsort(level_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(level_of[order]) != 0])
    pos_w = np.add.reduceat((weights * positive)[:, order], starts, axis=1)
    neg_w = np.add.reduceat((weights * ~positive)[:, order], starts, axis=1)
    neg_below = np.cumsum(neg_w, axis=1) - neg_w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(pos_w * (neg_below + 0.5 * neg_w), axis=1) / \
            (pos_w.sum(axis=1) * neg_w.sum(axis=1))


def bootstrap_replicates(pred: pd.DataFrame, classes: Sequence[str] | None = None,
                         n_boot: int = 1000, seed: int = 0, by: str = "patient",
                         ) -> pd.DataFrame:
    """Pooled metrics on ``n_boot`` resamples of ``pred`` (one row per resample).

    ``by="patient"`` resamples patients (all their images together); ``by="image"`` resamples
    images independently (only to show how much the grouping matters).
    """
    classes = check_predictions(pred, classes)
    if by not in ("patient", "image"):
        raise ValueError("by must be 'patient' or 'image'")
    groups = patient_codes(pred) if by == "patient" else np.arange(len(pred))
    n_groups = int(groups.max()) + 1
    said = predicted_labels(pred, classes)
    actual = pred["label"].to_numpy(dtype=object)
    indicators = {"n": np.ones(len(pred)), "correct": said == actual}
    has_positive = POSITIVE_CLASS in classes
    if has_positive:
        pos, said_pos = actual == POSITIVE_CLASS, said == POSITIVE_CLASS
        indicators.update({"pos": pos, "tp": pos & said_pos, "neg": ~pos, "tn": ~pos & ~said_pos})
    per_group = np.column_stack([np.bincount(groups, weights=np.asarray(v, dtype=float),
                                             minlength=n_groups) for v in indicators.values()])
    weights = bootstrap_weights(n_groups, n_boot, seed)
    sums = dict(zip(indicators, (weights @ per_group).T))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"accuracy": sums["correct"] / sums["n"]}
        if has_positive:
            out["acc_2class"] = (sums["tp"] + sums["tn"]) / sums["n"]
            out["sensitivity"] = sums["tp"] / sums["pos"]
            out["specificity"] = sums["tn"] / sums["neg"]
    if has_positive:
        scores = pred[probability_column(POSITIVE_CLASS)].to_numpy(dtype=float)
        # Image weights are n_boot x n_images; chunk so a large run stays within memory.
        chunk = max(1, 4_000_000 // max(1, len(pred)))
        out["auc"] = np.concatenate([
            weighted_auc(scores, pos, weights[i:i + chunk][:, groups])
            for i in range(0, n_boot, chunk)])
    return pd.DataFrame(out)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite values (NaN, NaN if none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_intervals(pred: pd.DataFrame, classes: Sequence[str] | None = None,
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                        by: str = "patient") -> pd.DataFrame:
    """Percentile intervals (``ci_low``, ``ci_high``) of the pooled metrics, one row per metric."""
    reps = bootstrap_replicates(pred, classes, n_boot=n_boot, seed=seed, by=by)
    rows = {m: percentile_interval(reps[m].to_numpy(), level) for m in reps.columns}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["ci_low", "ci_high"])


# --------------------------------------------------------------------------------------------
# Summary


def pooled_metrics(pred: pd.DataFrame, classes: Sequence[str] | None = None) -> dict[str, float]:
    """Every summary metric computed once over all out-of-fold predictions."""
    classes = check_predictions(pred, classes)
    out = {"accuracy": float(np.mean(predicted_labels(pred, classes) == pred["label"].to_numpy()))}
    if POSITIVE_CLASS in classes:
        two = covid_vs_rest(pred, classes)
        out.update({k: two[k] for k in ("acc_2class", "sensitivity", "specificity")})
        out["auc"] = covid_auc(pred)
    return out


def summary(pred: pd.DataFrame, classes: Sequence[str] | None = None, n_boot: int = 1000,
            seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """One row per metric: value, pooled, ci_low, ci_high, fold_mean, fold_sd, n_folds.

    ``value`` is the figure as the paper defines it: the mean over folds for the accuracies,
    the pooled figure for sensitivity, specificity and AUC. The interval is the patient-level
    bootstrap interval of the pooled figure (with folds of equal size the fold mean and the
    pooled accuracy agree to rounding). ``fold_sd`` is the sample standard deviation across
    folds (NaN with one fold); the frame's ``attrs`` hold the classes and image count.
    """
    classes = check_predictions(pred, classes)
    pooled = pooled_metrics(pred, classes)
    folds = fold_metrics(pred, classes)
    intervals = bootstrap_intervals(pred, classes, n_boot=n_boot, seed=seed, level=level)
    rows = []
    for metric in (m for m in SUMMARY_METRICS if m in pooled):
        per_fold = folds[metric].to_numpy(dtype=float) if metric in folds else np.array([])
        finite = per_fold[np.isfinite(per_fold)]
        fold_mean = float(finite.mean()) if len(finite) else float("nan")
        fold_sd = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
        rows.append({
            "metric": metric,
            "value": fold_mean if metric in FOLD_MEAN_METRICS else pooled[metric],
            "pooled": pooled[metric],
            "ci_low": float(intervals.loc[metric, "ci_low"]),
            "ci_high": float(intervals.loc[metric, "ci_high"]),
            "fold_mean": fold_mean,
            "fold_sd": fold_sd,
            "n_folds": len(folds),
        })
    out = pd.DataFrame(rows)
    out.attrs.update({"classes": list(classes), "n_images": len(pred), "n_boot": n_boot,
                      "level": level})
    return out


# --------------------------------------------------------------------------------------------
# From a printed confusion matrix back to images (to check the metrics against the paper)


def matrix_to_predictions(matrix, classes: Sequence[str], n_folds: int = 10) -> pd.DataFrame:
    """A prediction table with exactly the confusion matrix ``matrix`` (rows predicted).

    Each image gets probability 1 for its predicted class. Images are dealt to ``n_folds``
    folds in turn, sorted by (actual, predicted) class, so every fold has nearly the same
    composition, as a stratified split would give. Every image is its own patient.
    """
    matrix = np.asarray(matrix, dtype=int)
    classes = tuple(classes)
    if matrix.shape != (len(classes), len(classes)) or (matrix < 0).any():
        raise ValueError(f"need a non-negative {len(classes)}x{len(classes)} count matrix, "
                         f"got shape {matrix.shape}")
    actual_idx, predicted_idx = [], []
    for j in range(len(classes)):          # actual class (column)
        for i in range(len(classes)):      # predicted class (row)
            actual_idx += [j] * matrix[i, j]
            predicted_idx += [i] * matrix[i, j]
    n = len(actual_idx)
    probs = np.zeros((n, len(classes)))
    probs[np.arange(n), predicted_idx] = 1.0
    table = pd.DataFrame({
        "image_id": [f"matrix-{k:05d}" for k in range(n)],
        "fold": np.arange(n) % n_folds,
        "label": np.asarray(classes, dtype=object)[actual_idx] if n else [],
        "patient_id": [f"matrix:{k}" for k in range(n)],
        "source": "matrix",
    })
    for c, column in zip(classes, probs.T):
        table[probability_column(c)] = column
    return table


def counts_to_predictions(tp: int, fp: int, fn: int, tn: int, n_folds: int = 10) -> pd.DataFrame:
    """A two-class prediction table (COVID-19 vs non-COVID-19) with exactly these counts."""
    return matrix_to_predictions([[tp, fp], [fn, tn]], (POSITIVE_CLASS, NOT_POSITIVE), n_folds)
