"""Interactive explorers for the curated data, the predictions and the COVID-19 threshold.

- :class:`DatasetExplorer` (:mod:`.dataset`): the curated manifest filtered by class, source,
  view, curation decision and patient, each image with what curation decided about it.
- :class:`PredictionExplorer` (:mod:`.predictions`): a run's confusion matrix per
  configuration and fold, the images behind each cell, Grad-CAM overlays (:mod:`.gradcam`)
  where a fold's weights were kept.
- :class:`ThresholdExplorer` (:mod:`.threshold`): COVID-19 against the rest at a probability
  threshold, on a ROC curve drawn in SVG (:mod:`.roc`), beside the paper's operating point.

Each is live in JupyterLab (``explorer.widget``, or the explorer as a cell's last value) and
frozen for the static book (``explorer.book_view()``); :mod:`.base` holds that protocol and
:mod:`.markup` the HTML they share. The functions below are what the notebooks and the book's
chapter call: an explorer, or a note saying what is missing.

Real radiographs appear only when the data is synthetic or ``CXRLIB_SHOW_REAL_IMAGES=1`` is set
where the real data lives (the rule of the curation notebook), so no committed file and no
default build embeds an X-ray.
"""
from __future__ import annotations

from pathlib import Path

from cxrlib.explore.base import or_note
from cxrlib.explore.dataset import DatasetExplorer
from cxrlib.explore.predictions import PredictionExplorer
from cxrlib.explore.threshold import ThresholdExplorer

__all__ = ["DatasetExplorer", "PredictionExplorer", "ThresholdExplorer", "explore_dataset",
           "explore_predictions", "explore_threshold", "dataset_book_view",
           "prediction_book_view", "threshold_book_view"]

#: A threshold explorer has nothing to show for a run without a COVID-19 class (ValueError).
_NO_THRESHOLD = (FileNotFoundError, ValueError)


def explore_dataset(curated: str | Path):
    """The live dataset explorer of a curated folder (notebook 01)."""
    return or_note(lambda: DatasetExplorer(curated), DatasetExplorer.what)


def explore_predictions(run_path: str | Path):
    """The live prediction explorer of a run (notebook 05)."""
    return or_note(lambda: PredictionExplorer(run_path), PredictionExplorer.what)


def explore_threshold(run_path: str | Path):
    """The live threshold explorer of a run (notebook 05)."""
    return or_note(lambda: ThresholdExplorer(run_path), ThresholdExplorer.what, _NO_THRESHOLD)


def dataset_book_view(run_path: str | Path):
    return or_note(lambda: DatasetExplorer.for_run(run_path).book_view(), DatasetExplorer.what)


def prediction_book_view(run_path: str | Path):
    return or_note(lambda: PredictionExplorer(run_path).book_view(), PredictionExplorer.what)


def threshold_book_view(run_path: str | Path):
    return or_note(lambda: ThresholdExplorer(run_path).book_view(), ThresholdExplorer.what,
                   _NO_THRESHOLD)
