"""Disease against disease, within one collection and across collections.

In the paper's design every class comes from its own collection, except two pairs that share
one: Effusion and Fibrosis (both NIH ChestX-ray14: one hospital, its scanners, its years) and, in
the paediatric Kermany set, Pneumonia and Normal. Between classes of different collections a
network can succeed by recognising the collection; inside one it cannot, so a biomarker, if the
network learned one, must show there. For each pair this module scores how well a run's stored
predictions separate the two classes, on the images of those two classes only:

- the network's preference between the two, ``p_a / (p_a + p_b)``: its pairwise accuracy (the
  preferred class is the actual one) and its AUC, both with patient-level bootstrap intervals;
- whether the two classes come from the same collection (``same_collection``), so a reader sees
  within-collection pairs beside the cross-collection pairs that the collection alone can tell.

The same :func:`pair_table` applied to the out-of-fold predictions of the audit's image-statistics
rival (:func:`cxrlib.audit.statistics.image_statistics`) says what trivial statistics achieve on
the same pair, scored the same way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.audit.experiments import collection_of
from cxrlib.audit.scoring import N_BOOT, SEED
from cxrlib.core import metrics

#: The pairs reported: within one collection first, then across collections.
PAIRS: tuple[tuple[str, str], ...] = (
    ("Effusion", "Fibrosis"),      # both NIH
    ("Pneumonia", "Normal"),       # both Kermany (paediatric)
    ("COVID-19", "Pneumonia"),     # Cohen against Kermany
    ("Effusion", "Normal"),        # NIH against Kermany
    ("COVID-19", "Fibrosis"),      # Cohen against NIH
)
COLUMNS = ("a", "b", "n_a", "n_b", "collections_a", "collections_b", "same_collection",
           "accuracy", "acc_low", "acc_high", "auc", "auc_low", "auc_high")


def pair_rows(pred: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The images of classes ``a`` and ``b`` with the network's preference for ``a``."""
    rows = pred[pred["label"].isin([a, b])].reset_index(drop=True)
    p_a = rows[metrics.probability_column(a)].to_numpy(dtype=float)
    p_b = rows[metrics.probability_column(b)].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        preference = np.where(p_a + p_b > 0, p_a / (p_a + p_b), 0.5)
    return rows.assign(preference=preference, is_a=rows["label"].to_numpy() == a)


def collections(rows: pd.DataFrame, label: str) -> str:
    return ",".join(sorted({collection_of(s) for s in rows.loc[rows["label"] == label, "source"]}))


def separation(rows: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """Pairwise accuracy and AUC of ``preference`` for ``is_a``, with patient-level intervals."""
    groups = metrics.patient_codes(rows)
    weights = metrics.bootstrap_weights(int(groups.max()) + 1, n_boot, seed)[:, groups]
    is_a = rows["is_a"].to_numpy(dtype=bool)
    score = rows["preference"].to_numpy(dtype=float)
    # A tie (0.5) is half right, as the AUC counts it.
    correct = np.where(score == 0.5, 0.5, (score > 0.5) == is_a).astype(float)
    replicate_accuracy = (weights @ correct) / weights.sum(axis=1)
    replicate_auc = metrics.weighted_auc(score, is_a, weights)
    accuracy_interval = metrics.percentile_interval(replicate_accuracy)
    auc_interval = metrics.percentile_interval(replicate_auc)
    return {"accuracy": float(correct.mean()), "acc_low": accuracy_interval[0],
            "acc_high": accuracy_interval[1],
            "auc": float(metrics.weighted_auc(score, is_a, np.ones(len(score)))[0]),
            "auc_low": auc_interval[0], "auc_high": auc_interval[1]}


def pair_table(pred: pd.DataFrame, pairs=PAIRS, n_boot: int = N_BOOT,
               seed: int = SEED) -> pd.DataFrame:
    """One row per pair whose two classes the predictions hold."""
    held = set(metrics.classes_of(pred))
    out = []
    for a, b in pairs:
        if not {a, b} <= held:
            continue
        rows = pair_rows(pred, a, b)
        if rows["is_a"].all() or not rows["is_a"].any():
            continue
        found = {"a": a, "b": b, "n_a": int(rows["is_a"].sum()),
                 "n_b": int((~rows["is_a"]).sum()),
                 "collections_a": collections(rows, a), "collections_b": collections(rows, b)}
        found["same_collection"] = found["collections_a"] == found["collections_b"]
        out.append({**found, **separation(rows, n_boot, seed)})
    return pd.DataFrame(out, columns=list(COLUMNS))
