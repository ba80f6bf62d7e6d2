"""Experiment 6b: the run's own networks on images of patients and sources it never saw.

Each class gets an image source no network of the run trained on (PROVENANCE.md, sections 3d
and 4):

- **COVID-19 from another hospital**: Hannover Medical School's radiographs (``hannover/``; no
  patient of Cohen's collection; CLAHE-enhanced PNGs, mostly AP views);
- **adult pneumonia**: NIH ChestX-ray14 images labelled only "Pneumonia" (the training
  pneumonia is Kermany's paediatric one);
- **adult normals**: NIH "No Finding" images (scored as Normal, the training normals being
  paediatric), of patients with no image in the run's curated set.

The networks are the run's kept fold weights of the audited configuration, exported as one model
(their probabilities averaged: :mod:`cxrlib.models.modelfile`) and scored by
:func:`cxrlib.models.evaluate.evaluate`: recall per class and source with patient-level
intervals, beside the same figures of the run's own cross-validation. Real data only: the
synthetic demonstration has its own "external" collection (:mod:`.external`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlib.audit.scoring import N_BOOT
from cxrlib.data.external_sources import held_out, read_hannover, read_nih_findings
from cxrlib.experiment import results, runs
from cxrlib.experiment.cv import weights_path
from cxrlib.models import modelfile
from cxrlib.models.evaluate import ALL_SOURCES, INTERNAL, TABLE_COLUMNS, evaluate

#: Source names in the tables, by what the images are.
HANNOVER = "hannover (COVID-19, another hospital)"
NIH_PNEUMONIA = "nih (adult pneumonia)"
NIH_NORMAL = "nih (adult No Finding)"


def external_table(data_dir: Path, manifest: pd.DataFrame, classes) -> pd.DataFrame:
    """The images from elsewhere whose class the run has (path, label, patient_id, source),
    NIH's held out by patient."""
    frames = []
    if "COVID-19" in classes and (data_dir / "hannover").is_dir():
        frames.append(read_hannover(data_dir / "hannover").assign(source=HANNOVER))
    if (data_dir / "nih").is_dir():
        nih = held_out(read_nih_findings(data_dir / "nih"), manifest)
        nih = nih.assign(source=nih["label"].map({"Pneumonia": NIH_PNEUMONIA,
                                                  "No Finding": NIH_NORMAL}),
                         label=nih["label"].replace({"No Finding": "Normal"}))
        frames.append(nih[nih["label"].isin(list(classes))])
    if not frames:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    return table.rename(columns={"source_patient_id": "patient_id"})[list(TABLE_COLUMNS)]


def external_validation(run_path: Path, config: str, data_dir: Path, n_boot: int = N_BOOT,
                        ) -> tuple[pd.DataFrame, pd.DataFrame, dict] | None:
    """The metrics table (internal first, then each source), the predictions and a record of
    what was evaluated; None when the run kept no weights of ``config`` or nothing is there."""
    manifest = runs.curated_manifest(run_path)
    kept = [f for f in results.done_folds(run_path, config)
            if weights_path(run_path.name, config, f).is_file()]
    if manifest is None or not kept:
        return None
    table = external_table(Path(data_dir), manifest, runs.run_classes(run_path))
    if table.empty:
        return None
    model = modelfile.load_model(modelfile.export_model(run_path, config))
    result = evaluate(model, table, n_boot=n_boot)
    predictions = result.predictions.assign(path=[Path(p).name for p in
                                                  result.predictions["path"]])
    record = {"config": config, "folds": kept, "images": int(len(predictions)),
              "by_source": table["source"].value_counts().to_dict(),
              "unreadable": len(result.problems)}
    return result.metrics, predictions, record


def recall_falls(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per class and source from elsewhere: internal recall minus recall there, with a
    conservative interval (the two samples are independent: internal low minus external high to
    internal high minus external low, wider than the difference's own interval)."""
    recall = metrics[metrics["metric"].str.startswith("recall ")]
    internal = recall[recall["source"] == INTERNAL].set_index("metric")
    rows = []
    for _, row in recall[~recall["source"].isin([INTERNAL, ALL_SOURCES])].iterrows():
        if row["metric"] not in internal.index:
            continue
        own = internal.loc[row["metric"]]
        rows.append({"class": row["metric"][len("recall "):], "source": row["source"],
                     "internal": own["value"], "external": row["value"],
                     "difference": own["value"] - row["value"],
                     "diff_low": own["ci_low"] - row["ci_high"],
                     "diff_high": own["ci_high"] - row["ci_low"],
                     "n_images": row["n_images"], "n_patients": row["n_patients"]})
    return pd.DataFrame(rows, columns=["class", "source", "internal", "external", "difference",
                                       "diff_low", "diff_high", "n_images", "n_patients"])


def predicted_as(predictions: pd.DataFrame, classes) -> pd.DataFrame:
    """Where each source's images went: the share predicted as each class (rows: source)."""
    said = predictions[[f"p_{c}" for c in classes]].to_numpy().argmax(axis=1)
    named = pd.Series([classes[i] for i in said], index=predictions.index, name="predicted")
    table = pd.crosstab(predictions["source"], named, normalize="index")
    return table.reindex(columns=list(classes), fill_value=0.0).reset_index()
