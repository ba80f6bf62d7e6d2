"""The paper's figures restricted to the classes a run has (the comparable n-class accuracy)."""
from __future__ import annotations

import pytest

from cxrlib.core import paper

FIVE = ("COVID-19", "Effusion", "Fibrosis", "Pneumonia", "Normal")


@pytest.mark.parametrize("strategy, table", [("off_the_shelf", "table1_off_the_shelf"),
                                             ("from_scratch", "table5_from_scratch")])
def test_all_seven_classes_give_the_printed_figures(strategy, table):
    printed = paper.reported()["tables"][table]
    figures = paper.restricted_figures(strategy, paper.CLASSES)
    assert figures["images"] == paper.reported()["total_images"] == 3905
    for key, printed_key in (("acc_nclass", "acc_7class"), ("acc_2class", "acc_2class"),
                             ("sensitivity", "sensitivity"), ("specificity", "specificity")):
        if printed[printed_key] is not None:
            assert figures[key] == pytest.approx(printed[printed_key], abs=0.005)


def test_fewer_classes_keep_only_their_columns_and_count_other_answers_as_errors():
    matrix = paper.reported()["tables"]["table6_from_scratch_confusion_7class"]
    counts = paper.class_counts()
    kept = [paper.CLASSES.index(c) for c in FIVE]
    figures = paper.restricted_figures("from_scratch", FIVE)
    assert figures["classes"] == list(FIVE)
    assert figures["images"] == sum(counts[c] for c in FIVE) == 3297
    assert figures["acc_nclass"] == pytest.approx(
        100 * sum(matrix[j][j] for j in kept) / 3297)
    # An Effusion image the paper called Edema is wrong here too, though we have no Edema class.
    assert matrix[paper.CLASSES.index("Edema")][paper.CLASSES.index("Effusion")] > 0
    assert figures["sensitivity"] == pytest.approx(97.36, abs=0.005), "COVID-19 column unchanged"
    assert 0 < figures["specificity"] <= 100 and 0 < figures["acc_2class"] <= 100


def test_no_matrix_no_restricted_figure():
    assert paper.restricted_figures("fine_tune_3", FIVE) is None
    assert "sensitivity" not in paper.restricted_figures("from_scratch", ("Normal", "Fibrosis"))
