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
