"""Metrics against the paper's own printed matrices, and the bootstrap's behaviour."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrlib.core import metrics, paper

TABLES = paper.reported()["tables"]
ROUNDING = 0.005 + 1e-9  # the paper prints percentages to two decimals


def paper_matrix(n: int) -> pd.DataFrame:
    key = {2: "table2_off_the_shelf_confusion_7class", 6: "table6_from_scratch_confusion_7class"}[n]
    return metrics.matrix_to_predictions(TABLES[key], paper.CLASSES)


def paper_counts(n: int) -> dict:
    return TABLES[{3: "table3_off_the_shelf_confusion_2class",
                   7: "table7_from_scratch_confusion_2class"}[n]]


@pytest.mark.parametrize("matrix_table, figures", [(2, "table1_off_the_shelf"),
                                                   (6, "table5_from_scratch")])
def test_seven_class_matrix_recovers_reported_accuracy(matrix_table, figures):
    pred = paper_matrix(matrix_table)
    key = {2: "table2_off_the_shelf_confusion_7class", 6: "table6_from_scratch_confusion_7class"}
    assert metrics.confusion(pred).to_numpy().tolist() == TABLES[key[matrix_table]]
    assert len(pred) == paper.reported()["total_images"]
    reported = TABLES[figures]["acc_7class"]
    folds = metrics.fold_accuracies(pred)
    assert list(folds["fold"]) == list(range(10)) and folds["n"].sum() == len(pred)
    pooled = metrics.pooled_metrics(pred)["accuracy"]
    assert abs(100 * pooled - reported) <= ROUNDING
    # The paper's figure is the mean over folds; with (nearly) equal folds it is the pooled one.
    assert abs(100 * folds["accuracy"].mean() - 100 * pooled) < 0.05


@pytest.mark.parametrize("counts_table, figures", [(3, "table1_off_the_shelf"),
                                                   (7, "table5_from_scratch")])
def test_two_class_counts_recover_reported_figures(counts_table, figures):
    pred = metrics.counts_to_predictions(**paper_counts(counts_table))
    two = metrics.covid_vs_rest(pred)
    assert {k: two[k] for k in ("tp", "fp", "fn", "tn")} == paper_counts(counts_table)
    for metric in ("acc_2class", "sensitivity", "specificity"):
        reported = TABLES[figures][metric]
        if reported is None:  # the paper leaves Table 1's specificity blank
            continue
        assert abs(100 * two[metric] - reported) <= ROUNDING, metric
    fold_mean = metrics.fold_metrics(pred)["acc_2class"].mean()
    assert abs(100 * fold_mean - TABLES[figures]["acc_2class"]) < 0.05


@pytest.mark.parametrize("matrix_table, counts_table", [(2, 3), (6, 7)])
def test_seven_class_matrices_agree_with_their_two_class_tables(matrix_table, counts_table):
    two = metrics.covid_vs_rest(paper_matrix(matrix_table))
    assert {k: two[k] for k in ("tp", "fp", "fn", "tn")} == paper_counts(counts_table)
    layout = metrics.two_by_two(two)
    assert layout.loc["COVID-19", "COVID-19"] == paper_counts(counts_table)["tp"]
    assert layout.loc["COVID-19", metrics.NOT_POSITIVE] == paper_counts(counts_table)["fp"]
    assert layout.index.name == "predicted" and layout.columns.name == "actual"


def test_not_covid_baseline_on_paper_counts_and_on_labels():
    assert round(100 * metrics.not_covid_baseline(paper.class_counts()), 2) == 88.35
    labels = ["COVID-19"] * 3 + ["Normal"] * 7
    assert metrics.not_covid_baseline(labels) == pytest.approx(0.7)
    assert metrics.not_covid_baseline(metrics.class_counts(paper_matrix(6))) == \
        pytest.approx(3450 / 3905)


def small_predictions() -> pd.DataFrame:
    """Six images, two folds, three classes; predictions chosen by hand."""
    probs = {"COVID-19": [.8, .1, .6, .2, .1, .3], "Pneumonia": [.1, .8, .3, .7, .1, .3],
             "Normal": [.1, .1, .1, .1, .8, .4]}
    pred = pd.DataFrame({
        "image_id": [f"i{k}" for k in range(6)], "fold": [0, 0, 0, 1, 1, 1],
        "label": ["COVID-19", "Pneumonia", "Normal", "COVID-19", "Normal", "Normal"],
        "patient_id": ["a", "b", "c", "d", "e", "e"], "source": "test"})
    for c, p in probs.items():
        pred[f"p_{c}"] = p
    return pred  # predicted: COVID, Pneu, COVID, Pneu, Normal, Normal


def test_hand_counted_example():
    pred = small_predictions()
    assert list(metrics.predicted_labels(pred)) == \
        ["COVID-19", "Pneumonia", "COVID-19", "Pneumonia", "Normal", "Normal"]
    cm = metrics.confusion(pred)
    assert cm.loc["COVID-19", "Normal"] == 1 and cm.loc["Pneumonia", "COVID-19"] == 1
    assert cm.to_numpy().sum() == 6 and np.trace(cm.to_numpy()) == 4
    folds = metrics.fold_accuracies(pred)
    assert folds["accuracy"].tolist() == pytest.approx([2 / 3, 2 / 3])
    two = metrics.covid_vs_rest(pred)
    assert (two["tp"], two["fp"], two["fn"], two["tn"]) == (1, 1, 1, 3)
    assert two["sensitivity"] == pytest.approx(0.5) and two["specificity"] == pytest.approx(0.75)
    pc = metrics.per_class(pred)
    assert pc.loc["COVID-19", "precision"] == pytest.approx(0.5)
    assert pc.loc["Normal", "recall"] == pytest.approx(2 / 3)
    assert pc.loc["Normal", "precision"] == pytest.approx(1.0)
    assert pc["support"].tolist() == [2, 1, 3]
    assert metrics.covid_auc(pred) == pytest.approx(
        roc_auc_score([1, 0, 0, 1, 0, 0], [.8, .1, .6, .2, .1, .3]))


def test_summary_rows_and_definitions():
    pred = small_predictions()
    s = metrics.summary(pred, n_boot=200, seed=1).set_index("metric")
    assert list(s.index) == ["accuracy", "acc_2class", "sensitivity", "specificity", "auc"]
    assert s.loc["accuracy", "value"] == pytest.approx(2 / 3)          # mean over folds
    assert s.loc["sensitivity", "value"] == pytest.approx(0.5)         # pooled counts
    assert s.loc["sensitivity", "fold_mean"] == pytest.approx(0.5)     # folds: 1 and 0
    assert s.loc["accuracy", "n_folds"] == 2
    assert s.attrs["classes"] == ["COVID-19", "Pneumonia", "Normal"]


def test_classes_without_covid_give_n_class_figures_only():
    pred = small_predictions()
    pred = pred[pred["label"] != "COVID-19"].drop(columns="p_COVID-19")
    s = metrics.summary(pred, n_boot=50)
    assert list(s["metric"]) == ["accuracy"]
    with pytest.raises(ValueError, match="COVID-19"):
        metrics.covid_vs_rest(pred)


def test_bad_tables_fail_with_a_reason():
    with pytest.raises(ValueError, match="no finished folds"):
        metrics.summary(pd.DataFrame())
    pred = small_predictions()
    with pytest.raises(ValueError, match="p_Normal"):
        metrics.confusion(pred.drop(columns="p_Normal"), classes=["COVID-19", "Pneumonia", "Normal"])
    with pytest.raises(ValueError, match="outside the scored classes"):
        metrics.confusion(pred.assign(label="Edema"))


def test_weighted_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 300) / 4.0  # many ties
    positive = rng.random(300) < 0.3
    expected = roc_auc_score(positive, scores)
    assert metrics.weighted_auc(scores, positive, np.ones(300))[0] == pytest.approx(expected)
    # Integer weights are the same as repeating images.
    w = rng.integers(0, 3, 300)
    repeated = np.repeat(np.arange(300), w)
    assert metrics.weighted_auc(scores, positive, w)[0] == pytest.approx(
        roc_auc_score(positive[repeated], scores[repeated]))


def synthetic_run(n_patients: int, images_per_patient: int, seed: int = 0) -> pd.DataFrame:
    """Patients whose images are all right or all wrong together (a strong patient effect)."""
    rng = np.random.default_rng(seed)
    patient_right = rng.random(n_patients) < 0.8
    patient_covid = rng.random(n_patients) < 0.3
    rows = []
    for p in range(n_patients):
        label = "COVID-19" if patient_covid[p] else "Normal"
        other = "Normal" if patient_covid[p] else "COVID-19"
        said = label if patient_right[p] else other
        for k in range(images_per_patient):
            rows.append({"image_id": f"{p}-{k}", "fold": p % 5, "label": label,
                         "patient_id": f"pt{p}", "source": "test",
                         "p_COVID-19": 0.9 if said == "COVID-19" else 0.1 + 0.01 * k,
                         "p_Normal": 0.1 if said == "COVID-19" else 0.9 - 0.01 * k})
    return pd.DataFrame(rows)


def test_bootstrap_is_seeded_and_covers_the_estimate():
    pred = synthetic_run(200, 3)
    a = metrics.bootstrap_intervals(pred, n_boot=300, seed=7)
    b = metrics.bootstrap_intervals(pred, n_boot=300, seed=7)
    c = metrics.bootstrap_intervals(pred, n_boot=300, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    point = metrics.pooled_metrics(pred)
    for metric, (low, high) in a.iterrows():
        assert low <= point[metric] <= high, metric
        assert high - low > 0, metric


def test_bootstrap_interval_shrinks_with_more_patients():
    width = {}
    for n in (100, 1600):
        ci = metrics.bootstrap_intervals(synthetic_run(n, 2, seed=n), n_boot=400, seed=0)
        width[n] = ci["ci_high"] - ci["ci_low"]
    # Sixteen times the patients: about a quarter of the width.
    assert (width[1600] < 0.5 * width[100]).all(), width


def test_bootstrap_moves_a_patients_images_together():
    pred = synthetic_run(150, 8)
    groups = metrics.patient_codes(pred)
    weights = metrics.bootstrap_weights(int(groups.max()) + 1, 50, seed=0)[:, groups]
    for g in np.unique(groups)[:20]:
        block = weights[:, groups == g]
        assert (block == block[:, :1]).all()          # same draw count for every image
    assert weights.sum(axis=1).tolist() == [len(pred)] * 50  # 150 patients x 8 images drawn
    # Resampling images as if independent hides the patient effect: far narrower intervals.
    by_patient = metrics.bootstrap_intervals(pred, n_boot=400, seed=0, by="patient")
    by_image = metrics.bootstrap_intervals(pred, n_boot=400, seed=0, by="image")
    w_patient = by_patient.loc["accuracy", "ci_high"] - by_patient.loc["accuracy", "ci_low"]
    w_image = by_image.loc["accuracy", "ci_high"] - by_image.loc["accuracy", "ci_low"]
    assert w_patient > 2 * w_image   # ~ sqrt(8) with identical images per patient


def test_images_without_patient_id_are_their_own_patient():
    pred = small_predictions().assign(patient_id=["", "", "x", "x", "", "y"])
    codes = metrics.patient_codes(pred)
    assert len(set(codes)) == 5 and codes[2] == codes[3]
