"""Readers of sources that evaluate a trained model and never train one.

They return the tidy table of :mod:`cxrlib.data.sources` (:data:`cxrlib.data.sources.SOURCE_COLUMNS`), but
are kept out of :data:`cxrlib.data.sources.READERS`, so no curation, training profile or model
selection reads them: ``python -m cxrlib evaluate`` (:mod:`cxrlib.models.evaluate`) and the audit's
external validation do, through :data:`EXTERNAL_READERS`.

- NIH ChestX-ray14 findings no profile trains on (:func:`read_nih_findings`: adult
  pneumonia, adult "No Finding"), to be kept to patients a run never saw (:func:`held_out`);
- Hannover Medical School, Institute for Diagnostic and Interventional Radiology: the
  ml-workgroup/covid-19-image-repository (CC BY 3.0; cite doi:10.6084/m9.figshare.12275009);
  the shared copy keeps only patients absent from Cohen's collection (``PROVENANCE.md``,
  section 4).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlib.data.sources import (
    SourceError,
    _age,
    _frame,
    _index_images,
    _nih_table,
    _population,
    _read_table,
    _sex,
)


def read_hannover(directory, problems: list | None = None) -> pd.DataFrame:
    """Hannover's COVID-19 radiographs: ``data.csv`` + ``images/<image_id>.jpg``.

    Every image is COVID-19 (a patient-level label: the repository collects COVID-19 cases);
    the view is ``projection`` (AP or PA); patients are ``hannover:<patient_id>``; all adults.
    """
    problems = [] if problems is None else problems
    d, table = Path(directory), Path(directory) / "data.csv"
    if not table.is_file():
        raise SourceError(f"{table}: not found", "the Hannover folder holds data.csv and "
                          "images/<image_id>.jpg (see PROVENANCE.md, section 4)")
    meta = _read_table(table, {"patient_id": (), "image_id": (), "projection": (), "sex": ()},
                       "the Hannover repository's data.csv")
    images = _index_images(d)
    rows = []
    for r in meta.itertuples(index=False):
        path = images.get(r.image_id.strip())
        if path is None:
            problems.append(f"{table}: image {r.image_id} is listed but not in {d}; skipped")
            continue
        rows.append(dict(path=str(path), label="COVID-19", source="hannover", finding="COVID-19",
                         source_patient_id=f"hannover:{r.patient_id.strip()}",
                         view=r.projection.strip().upper(), age=float("nan"), sex=_sex(r.sex),
                         subtype="", population="adult", split="", preference=0,
                         multilabel=False))
    if not rows:
        raise SourceError(f"{d}: none of the images listed in data.csv is in the folder",
                          "expected images/<image_id>.jpg beside data.csv")
    return _frame(rows, d.parent)


def read_nih_findings(directory, findings=("Pneumonia", "No Finding"), adults_only=True,
                      problems: list | None = None) -> pd.DataFrame:
    """NIH ChestX-ray14 images labelled with exactly one of ``findings`` (single-label rows):
    e.g. adult pneumonia, which no training profile takes from NIH (its pneumonia is Kermany's
    paediatric one), and adult "No Finding". Source ``nih``, patients ``nih:<Patient ID>`` as
    :func:`cxrlib.data.sources.read_nih` names them; :func:`held_out` drops the patients a run
    curated."""
    problems = [] if problems is None else problems
    d = Path(directory)
    table = _nih_table(d)
    meta = _read_table(table, {"Image Index": ("image_index",), "Finding Labels": (),
                               "Patient ID": ("patient_id",), "Patient Age": (),
                               "Patient Gender": (), "View Position": ()},
                       "the NIH ChestX-ray14 label table")
    images = _index_images(d)
    rows = []
    for r in meta.to_dict("records"):
        age = _age(r["Patient Age"])
        if r["Finding Labels"].strip() not in findings or (adults_only and not age >= 18):
            continue
        path = images.get(Path(r["Image Index"]).stem)
        if path is None:
            problems.append(f"{table}: {r['Image Index']} is listed but not in {d}; skipped")
            continue
        rows.append(dict(path=str(path), label=r["Finding Labels"].strip(), source="nih",
                         finding=r["Finding Labels"],
                         source_patient_id=f"nih:{r['Patient ID'].strip().lstrip('0') or '0'}",
                         view=r["View Position"].strip(), age=age, sex=_sex(r["Patient Gender"]),
                         subtype="", population=_population(age, "adult"), split="",
                         preference=0, multilabel=False))
    return _frame(rows, d.parent)


def held_out(table: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """The rows of a reader's ``table`` whose patient has no image in a run's curated
    ``manifest`` (:func:`cxrlib.experiment.runs.curated_manifest`; excluded rows count too, to be safe):
    images from patients the run's networks never saw."""
    curated = set(manifest["patient_id"])
    return table[~table["source_patient_id"].isin(curated)].reset_index(drop=True)


#: Source folder name -> reader, for evaluation only.
EXTERNAL_READERS = {"hannover": read_hannover}
