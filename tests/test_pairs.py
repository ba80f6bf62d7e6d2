"""Disease against disease: pairwise separation from stored predictions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrlib.audit import pairs

CLASSES = ("COVID-19", "Effusion", "Fibrosis", "Pneumonia", "Normal")
SOURCES = {"COVID-19": "cohen", "Effusion": "nih_rxtorax", "Fibrosis": "nih",
           "Pneumonia": "kermany", "Normal": "kermany"}


def predictions(separable: set, n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Predictions where the classes in ``separable`` get most of their own probability and the
    others a random split; two images per patient."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in CLASSES:
        for i in range(n):
            p = rng.dirichlet(np.ones(len(CLASSES)))
            if label in separable:
                p = 0.2 * p + 0.8 * np.eye(len(CLASSES))[CLASSES.index(label)]
            rows.append({"image_id": f"{label}-{i}", "fold": i % 5, "label": label,
                         "patient_id": f"{label}:{i // 2}", "source": SOURCES[label],
                         **{f"p_{c}": q for c, q in zip(CLASSES, p)}})
    return pd.DataFrame(rows)


def test_a_pair_the_network_separates_and_one_it_does_not():
    table = pairs.pair_table(predictions({"COVID-19", "Pneumonia"}), n_boot=200).set_index(
        ["a", "b"])
    separated = table.loc[("COVID-19", "Pneumonia")]
    assert separated["accuracy"] == 1.0 and separated["auc"] == 1.0
    assert not separated["same_collection"]
    within = table.loc[("Effusion", "Fibrosis")]
    assert within["same_collection"] and within["collections_a"] == "nih", "nih_rxtorax is NIH"
    assert within["n_a"] == within["n_b"] == 40
    assert 0.25 < within["auc"] < 0.75 and within["auc_low"] < 0.5 < within["auc_high"]
    assert within["acc_low"] <= within["accuracy"] <= within["acc_high"]


def test_pairwise_accuracy_and_auc_by_hand():
    pred = predictions(set(), n=4)
    rows = pairs.pair_rows(pred, "Effusion", "Fibrosis")
    expected = pred.loc[pred["label"].isin(["Effusion", "Fibrosis"]), "p_Effusion"].to_numpy() / (
        pred.loc[pred["label"].isin(["Effusion", "Fibrosis"]), ["p_Effusion", "p_Fibrosis"]]
        .sum(axis=1).to_numpy())
    np.testing.assert_allclose(rows["preference"], expected)
    got = pairs.separation(rows, n_boot=50)
    is_a = rows["is_a"].to_numpy()
    assert got["accuracy"] == pytest.approx(np.mean((expected > 0.5) == is_a))
    pos, neg = expected[is_a], expected[~is_a]
    wins = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert got["auc"] == pytest.approx(wins)


def test_pairs_whose_classes_a_run_lacks_are_left_out():
    four = predictions(set()).query("label != 'Fibrosis'").drop(columns="p_Fibrosis")
    table = pairs.pair_table(four, n_boot=20)
    assert ("Effusion", "Fibrosis") not in set(zip(table["a"], table["b"]))
    assert ("Pneumonia", "Normal") in set(zip(table["a"], table["b"]))
