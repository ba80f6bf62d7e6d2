"""The paper's vocabulary and reported figures: the bottom of the library, data only.

Apostolopoulos, Aznaouridis & Tzani (2020), "Extracting possibly representative COVID-19
biomarkers from X-ray images with deep learning approach and image data related to pulmonary
diseases", Journal of Medical and Biological Engineering 40:462-469,
doi:10.1007/s40846-020-00529-4. Every figure it prints is transcribed, cross-checked, in
``cxrlib/data/reported.json`` (confusion matrices: rows predicted, columns actual).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

#: The paper's seven classes, in the order its confusion matrices print them.
CLASSES: tuple[str, ...] = (
    "COVID-19", "Edema", "Effusion", "Emphysema", "Fibrosis", "Pneumonia", "Normal",
)
#: The class the two-class (COVID-19 vs rest) figures are about.
POSITIVE_CLASS = "COVID-19"

CITATION = (
    "Apostolopoulos, I. D., Aznaouridis, S. I. & Tzani, M. A. (2020). Extracting possibly "
    "representative COVID-19 biomarkers from X-ray images with deep learning approach and image "
    "data related to pulmonary diseases. Journal of Medical and Biological Engineering, 40, "
    "462-469. https://doi.org/10.1007/s40846-020-00529-4"
)


@lru_cache(maxsize=1)
def reported() -> dict:
    """All figures the paper reports (a fresh parse of the packaged JSON, cached)."""
    text = resources.files("cxrlib").joinpath("data/reported.json").read_text()
    return json.loads(text)


def class_counts() -> dict[str, int]:
    """Images per class in the paper's dataset (3,905 in all)."""
    return dict(reported()["class_counts"])


#: The paper's seven-class confusion matrix of each strategy that prints one (Tables 2 and 6);
#: fine-tuning (Table 4) prints accuracies only.
CONFUSION_TABLES = {"off_the_shelf": "table2_off_the_shelf_confusion_7class",
                    "from_scratch": "table6_from_scratch_confusion_7class"}


def restricted_figures(strategy: str, classes) -> dict | None:
    """The paper's own figures restricted to ``classes`` (those a run has), or None when the paper
    prints no confusion matrix for ``strategy``.

    From its pooled confusion matrix (rows predicted, columns actual), only the columns of the
    actual classes in ``classes`` are kept; an image the paper's network put into a class we lack
    counts as an error, as it did for the paper. So the restricted n-class accuracy is what the
    paper's network scored on those classes' images; a network trained on fewer classes has
    fewer wrong answers open to it, which favours us, not the paper. With all seven classes the
    figures are the printed ones.
    """
    if strategy not in CONFUSION_TABLES:
        return None
    matrix = reported()["tables"][CONFUSION_TABLES[strategy]]
    kept = [CLASSES.index(c) for c in CLASSES if c in set(classes)]
    columns = [[row[j] for j in kept] for row in matrix]
    actual = [sum(row[k] for row in columns) for k in range(len(kept))]
    correct = sum(matrix[j][j] for j in kept)
    positive = CLASSES.index(POSITIVE_CLASS)
    figures = {"classes": [CLASSES[j] for j in kept], "images": sum(actual),
               "acc_nclass": 100 * correct / sum(actual)}
    if positive in kept:
        k = kept.index(positive)
        negatives = [n for n in range(len(kept)) if n != k]
        true_negative = sum(actual[n] - columns[positive][n] for n in negatives)
        figures["sensitivity"] = 100 * matrix[positive][positive] / actual[k]
        figures["specificity"] = 100 * true_negative / sum(actual[n] for n in negatives)
        figures["acc_2class"] = 100 * (matrix[positive][positive] + true_negative) / sum(actual)
    return figures
