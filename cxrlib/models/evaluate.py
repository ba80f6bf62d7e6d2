"""Evaluating an exported model on labelled images from elsewhere (another hospital, held-out data).

``python -m cxrlib evaluate --model M --images LABELS.csv|DIR [--as LABEL=CLASS] [--out DIR]``.
The images come from

- a CSV with the columns ``path`` and ``label`` and optionally ``patient_id`` and ``source``
  (paths relative to the CSV's folder; without ``patient_id`` each image is its own patient);
- or a folder the source readers know (:mod:`cxrlib.data.sources`): one source's folder (e.g.
  ``../shared/data/hannover``) or a data folder holding several (``cohen/``, ``hannover/``, ...).

Every image is predicted as ``predict`` does (:mod:`cxrlib.models.predict`). Images whose label the
model does not know (e.g. NIH's "No Finding" for a model whose normals are called "Normal") are
predicted and listed, but not scored; ``--as "No Finding=Normal"`` maps such a label to one of
the model's classes. The metrics are the paper's (:mod:`cxrlib.core.metrics`): the n-class accuracy,
COVID-19 sensitivity and specificity, and each class's recall, per source and over all images,
each with a 95% patient-level bootstrap interval, beside the run's own cross-validated figures
stored in the model file. A metric that a source cannot define (specificity on COVID-19 images
only) is left out.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrlib.core import metrics
from cxrlib.core.errors import UserError
from cxrlib.data import sources
from cxrlib.data.external_sources import EXTERNAL_READERS
from cxrlib.models.modelfile import LoadedModel, load_model
from cxrlib.models.predict import probability_table, read_images

ALL_SOURCES = "all"
INTERNAL = "internal (cross-validated)"
TABLE_COLUMNS = ("path", "label", "patient_id", "source")


# ---------------------------------------------------------------------------------------------
# The labelled images


def read_label_csv(path: Path) -> pd.DataFrame:
    """A CSV of path, label[, patient_id, source] with paths made absolute."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"--images {path}: cannot read it as CSV ({e})",
                        "give a CSV with the columns path,label[,patient_id,source]") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise UserError(f"--images {path}: no column(s) {missing} (found {list(table.columns)})",
                        "give a CSV with the columns path,label[,patient_id,source]")
    table["path"] = [str(p if Path(p).is_absolute() else path.parent / p) for p in table["path"]]
    if "patient_id" not in table:
        table["patient_id"] = ""
    if "source" not in table:
        table["source"] = path.stem
    return table[list(TABLE_COLUMNS)]


def read_source_folder(folder: Path, problems: list) -> pd.DataFrame:
    """One source's folder, or a data folder of several, through the source readers."""
    readers = {**sources.READERS, **EXTERNAL_READERS}
    if folder.name in readers:
        found = {folder.name: folder}
    else:
        found = {name: folder / name for name in readers if (folder / name).is_dir()}
    if not found:
        raise UserError(f"--images {folder}: not a folder the readers know",
                        f"give a CSV of path,label or one of the sources' folders "
                        f"({', '.join(readers)}) or a folder holding them")
    frames = [readers[name](where, problems=problems) for name, where in found.items()]
    table = pd.concat(frames, ignore_index=True)
    return table.rename(columns={"source_patient_id": "patient_id"})[list(TABLE_COLUMNS)]


def labelled_images(images: str | Path, relabel: dict | None = None,
                    ) -> tuple[pd.DataFrame, list[str]]:
    """The table (path, label, patient_id, source) and the readers' problems."""
    images, problems = Path(images), []
    if images.is_file():
        table = read_label_csv(images)
    elif images.is_dir():
        table = read_source_folder(images, problems)
    else:
        raise UserError(f"--images {images}: no such file or folder",
                        "give a CSV of path,label or a folder of a known source")
    if table.empty:
        raise UserError(f"--images {images}: no images listed", "check the file or folder")
    table["label"] = table["label"].replace(relabel or {})
    return table.reset_index(drop=True), problems


def parse_relabel(settings: list[str]) -> dict[str, str]:
    """``["No Finding=Normal"]`` -> ``{"No Finding": "Normal"}``."""
    mapping = {}
    for setting in settings:
        label, sep, cls = setting.partition("=")
        if not sep or not label.strip() or not cls.strip():
            raise UserError(f"--as {setting!r}: not LABEL=CLASS", 'e.g. --as "No Finding=Normal"')
        mapping[label.strip()] = cls.strip()
    return mapping


# ---------------------------------------------------------------------------------------------
# Predictions and metrics


@dataclass
class Evaluation:
    predictions: pd.DataFrame   # one row per readable image: path, label, ..., known, p_<class>
    metrics: pd.DataFrame       # source, metric, value, ci_low, ci_high, n_images, n_patients
    unknown_labels: dict        # label -> images whose label the model does not know
    problems: list              # files that could not be read, readers' notes


def predict_table(model: LoadedModel, table: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """``table`` with the model's predictions (readable images only) and the unreadable files."""
    loaded = read_images(table["path"], model.image_size)
    probabilities = model.predict(loaded.array(model.image_size))
    scored = probability_table(loaded.paths, probabilities, model.classes)
    rows = table.drop_duplicates("path").set_index("path").loc[loaded.paths].reset_index()
    out = pd.concat([rows, scored.drop(columns="path")], axis=1)
    out.insert(4, "known", out["label"].isin(model.classes))
    return out, [why for _, why in loaded.problems]


def n_patients(pred: pd.DataFrame) -> int:
    """Patients among ``pred``'s images (an image without a patient id is its own patient)."""
    return int(metrics.patient_codes(pred).max()) + 1 if len(pred) else 0


def source_metrics(pred: pd.DataFrame, classes: tuple[str, ...], n_boot: int) -> list[dict]:
    """The metrics of one source's images (known labels only), each with its interval."""
    rows = []
    pooled = metrics.pooled_metrics(pred, classes)
    intervals = metrics.bootstrap_intervals(pred, classes, n_boot=n_boot)
    for metric in ("accuracy", "sensitivity", "specificity", "auc"):
        if metric in pooled and np.isfinite(pooled[metric]):
            rows.append({"metric": metric, "value": pooled[metric],
                         "ci_low": intervals.loc[metric, "ci_low"],
                         "ci_high": intervals.loc[metric, "ci_high"], "n_images": len(pred),
                         "n_patients": n_patients(pred)})
    for cls in classes:
        part = pred[pred["label"] == cls]
        if len(part):
            rows.append({"metric": f"recall {cls}", **class_recall(part, classes, n_boot)})
    return rows


def class_recall(part: pd.DataFrame, classes: tuple[str, ...], n_boot: int) -> dict:
    """A class's recall (the accuracy on its images) with its patient-level interval."""
    interval = metrics.bootstrap_intervals(part, classes, n_boot=n_boot).loc["accuracy"]
    value = float(np.mean(metrics.predicted_labels(part, classes) == part["label"].to_numpy()))
    return {"value": value, "ci_low": interval["ci_low"], "ci_high": interval["ci_high"],
            "n_images": len(part), "n_patients": n_patients(part)}


def metrics_table(pred: pd.DataFrame, classes: tuple[str, ...], n_boot: int = 1000,
                  ) -> pd.DataFrame:
    """Tidy metrics per source, then over all sources (when there are several)."""
    known = pred[pred["known"]]
    groups = [(s, part) for s, part in known.groupby("source", sort=True)]
    if len(groups) > 1:
        groups.append((ALL_SOURCES, known))
    rows = [{"source": s, **row} for s, part in groups
            for row in source_metrics(part, classes, n_boot)]
    return pd.DataFrame(rows, columns=["source", "metric", "value", "ci_low", "ci_high",
                                       "n_images", "n_patients"])


def internal_table(model: LoadedModel, n_boot: int) -> pd.DataFrame:
    """The run's own cross-validated figures for the exported folds, computed the same way
    from the out-of-fold predictions the model file keeps."""
    pred = model.internal_predictions()
    rows = [{"source": INTERNAL, **row} for row in source_metrics(pred, model.classes, n_boot)]
    return pd.DataFrame(rows)


def evaluate(model: LoadedModel, images: str | Path | pd.DataFrame, relabel: dict | None = None,
             n_boot: int = 1000) -> Evaluation:
    """Predict every labelled image and score the model per source (see the module docstring).

    ``images``: a CSV or folder as the command takes it, or a table with the columns path,
    label, patient_id and source (e.g. images the audit chose: held out of training by patient).
    """
    if isinstance(images, pd.DataFrame):
        missing = [c for c in TABLE_COLUMNS if c not in images.columns]
        if missing:
            raise UserError(f"the table of images lacks the column(s) {missing}",
                            f"give {', '.join(TABLE_COLUMNS)}")
        table, problems = images[list(TABLE_COLUMNS)].reset_index(drop=True), []
        table["label"] = table["label"].replace(relabel or {})
    else:
        table, problems = labelled_images(images, relabel)
    pred, unreadable = predict_table(model, table)
    if pred.empty:
        raise UserError(f"none of the {len(table)} images could be read",
                        "; ".join(unreadable[:3]))
    unknown = pred.loc[~pred["known"], "label"].value_counts().to_dict()
    scored = metrics_table(pred, model.classes, n_boot) if pred["known"].any() else \
        pd.DataFrame(columns=["source", "metric"])
    both = pd.concat([internal_table(model, n_boot), scored], ignore_index=True)
    return Evaluation(pred, both, {str(k): int(v) for k, v in unknown.items()},
                      problems + unreadable)


def format_metrics(table: pd.DataFrame) -> str:
    """The metrics as percentages with intervals, one row per source and metric."""
    if table.empty:
        return "(no metrics: no image has a label the model knows)"
    shown = table.copy()
    shown["value"] = [f"{100 * v:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
                      for v, lo, hi in zip(shown["value"], shown["ci_low"], shown["ci_high"])]
    return shown[["source", "metric", "value", "n_images", "n_patients"]].to_string(index=False)


def unknown_note(unknown: dict, classes: tuple[str, ...]) -> str:
    """One line per label the model does not know, saying what happened to its images."""
    return "\n".join(f"label {label!r} ({n} images) is not one of the model's classes "
                     f"({', '.join(classes)}): predicted, not scored; map it with "
                     f"--as \"{label}=CLASS\"" for label, n in unknown.items())


def write_evaluation(result: Evaluation, out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "predictions.csv", out / "metrics.csv"]
    result.predictions.to_csv(written[0], index=False)
    result.metrics.to_csv(written[1], index=False)
    return written


def evaluate_command(model_path, images, relabel_settings=(), out=None, n_boot=1000) -> int:
    """``python -m cxrlib evaluate``: prints the unknown labels and the metrics, notes skipped
    files on stderr, and with ``out`` writes the predictions and metrics there."""
    relabel = parse_relabel(list(relabel_settings))
    model = load_model(model_path)
    result = evaluate(model, images, relabel, n_boot=n_boot)
    for problem in result.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    note = unknown_note(result.unknown_labels, model.classes)
    if note:
        print(note)
    print(format_metrics(result.metrics))
    if out:
        write_evaluation(result, out)
        print(f"predictions and metrics: {out}")
    return 0
