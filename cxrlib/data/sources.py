"""One reader per public source layout, each returning the same tidy table (one row per image).

Columns of every reader's table (:data:`SOURCE_COLUMNS`): ``path`` (absolute), ``orig_path``
(relative to the data folder), ``label`` (a paper class, or "No Finding"), ``source``,
``finding`` (the source's own finding string, verbatim), ``source_patient_id`` (prefixed by the
patient namespace, e.g. ``cohen:23``, ``kermany:person12``, ``nih:1``), ``view``, ``age``
(years), ``sex`` (M/F/""), ``subtype`` (bacterial/viral for Kermany pneumonia), ``population``
(paediatric/adult/""), ``split`` (the source's own split folder), ``preference`` (0 = the
better copy; used to rank candidates, see :func:`cxrlib.data.screening.select`), ``multilabel``
(NIH images with two or more target findings).

Readers accept the original layouts and the copies in ``../shared/data`` (see its
PROVENANCE.md), and problems that do not stop the reading (a listed file that is missing, an
unknown label) are appended to ``problems`` with the file named.

Sources (citations; download addresses are in :mod:`cxrlib.data.download`):

- Cohen, Morrison, Dao et al. (2020), COVID-19 image data collection, arXiv:2006.11988,
  https://github.com/ieee8023/covid-chestxray-dataset;
- Kermany, Zhang & Goldbaum (2018), Labeled optical coherence tomography (OCT) and chest X-ray
  images for classification, Mendeley Data, doi:10.17632/rscbjbr9sj.2 (CC BY 4.0);
- Wang, Peng, Lu et al. (2017), ChestX-ray8, CVPR, https://nihcc.app.box.com/v/ChestXray-NIHCC.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cxrlib.core.errors import UserError
from cxrlib.core.paper import CLASSES
from cxrlib.data.download import how_to_get, missing_data_message

SOURCE_COLUMNS: tuple[str, ...] = (
    "path", "orig_path", "label", "source", "finding", "source_patient_id", "view", "age", "sex",
    "subtype", "population", "split", "preference", "multilabel",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
#: Folder name of each source inside a data folder.
SOURCE_FOLDERS: tuple[str, ...] = ("cohen", "kermany", "nih", "nih_rxtorax")
#: Cohen's frontal views (everything else of modality X-ray is lateral, "L").
FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP semi erect", "AP Erect", "AP erect")
#: The four NIH findings the paper uses, in the paper's class order.
NIH_TARGETS: tuple[str, ...] = ("Edema", "Effusion", "Emphysema", "Fibrosis")
#: The fourteen NIH labels and "No Finding": anything else in "Finding Labels" is a typo.
NIH_VOCABULARY = frozenset({
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis",
    "Hernia", "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia",
    "Pneumothorax", "No Finding"})
EXTRA_LABELS = ("No Finding",)
ADULT_AGE = 18


class SourceError(UserError):
    """A source folder or table cannot be read; the message names the file and the fix."""


def relabel(source: str, finding: str, multilabel: str = "exclude") -> tuple[str, bool]:
    """The one label map: a source's finding string -> (paper class or "No Finding" or "", multi).

    ``multi`` is True for NIH findings naming two or more of the four target diseases; their
    label is then the first of them in the paper's class order (``multilabel="first"``) and the
    curation excludes them under the default policy (``"exclude"``). NIH images with one target
    finding plus other, non-target findings (e.g. "Cardiomegaly|Effusion") keep the target
    label: co-findings are the rule in a hospital population, and the paper selected by disease.
    """
    if multilabel not in ("exclude", "first"):
        raise ValueError("multilabel must be 'exclude' or 'first'")
    finding = str(finding).strip()
    if source == "cohen":
        return ("COVID-19" if "COVID-19" in finding else ""), False
    if source == "kermany":
        return {"NORMAL": "Normal", "PNEUMONIA": "Pneumonia"}.get(finding.upper(), ""), False
    if source in ("nih", "nih_rxtorax"):
        names = [f.strip() for f in finding.split("|") if f.strip()]
        if names == ["No Finding"]:
            return "No Finding", False
        targets = [t for t in NIH_TARGETS if t in names]
        if not targets:
            return "", False
        return targets[0], len(targets) > 1
    raise ValueError(f"unknown source {source!r}; sources are {SOURCE_FOLDERS}")


# ---------------------------------------------------------------------------------------------
# helpers


def _require_dir(directory: Path, source: str) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"{directory}: not a folder. {how_to_get(source, directory)}")
    return directory


def _read_table(path: Path, required: dict[str, tuple[str, ...]], what: str) -> pd.DataFrame:
    """Read a CSV and rename known aliases to canonical names; name any missing column."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise SourceError(f"{path}: cannot read it as CSV ({e}); is this {what}?") from None
    df.columns = [str(c).strip() for c in df.columns]
    renames, missing = {}, []
    for canonical, aliases in required.items():
        found = next((a for a in (canonical, *aliases) if a in df.columns), None)
        if found is None:
            missing.append(canonical)
        elif found != canonical:
            renames[found] = canonical
    if missing:
        raise SourceError(
            f"{path}: missing column(s) {missing} (found: {list(df.columns)[:12]}). "
            f"This does not look like {what}; use the original file or rename the column(s).")
    return df.rename(columns=renames)


def _index_images(directory: Path) -> dict[str, Path]:
    """stem -> file for every image below ``directory`` (original .png names match .jpg copies)."""
    index: dict[str, Path] = {}
    for p in sorted(directory.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and \
                "__MACOSX" not in p.parts and p.is_file():
            index.setdefault(p.stem, p)
    return index


def _age(value) -> float:
    """Ages as years: '58', '058Y' (NIH sample), '6M' (months) -> float; else NaN."""
    text = str(value).strip().upper()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([YMD]?)", text)
    if not m:
        return float("nan")
    years = float(m.group(1)) / {"": 1, "Y": 1, "M": 12, "D": 365}[m.group(2)]
    return years if 0 <= years <= 120 else float("nan")


def _sex(value) -> str:
    text = str(value).strip().upper()[:1]
    return text if text in ("M", "F") else ""


def _population(age: float, default: str = "") -> str:
    if age != age:  # NaN
        return default
    return "paediatric" if age < ADULT_AGE else "adult"


def _frame(rows: list[dict], data_root: Path) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))
    if len(df):
        df["orig_path"] = [str(Path(p).resolve().relative_to(data_root.resolve()))
                           if Path(p).resolve().is_relative_to(data_root.resolve()) else str(p)
                           for p in df["path"]]
        df["age"] = df["age"].astype(float)
        df["preference"] = df["preference"].astype(int)
        df["multilabel"] = df["multilabel"].astype(bool)
    return df.sort_values("orig_path", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# readers


def read_cohen(directory, lateral: bool = False, problems: list | None = None) -> pd.DataFrame:
    """Cohen's COVID-19 image data collection: ``metadata.csv`` + ``images/``.

    X-ray modality only; rows whose ``finding`` contains COVID-19; frontal views (PA, AP,
    AP Supine, ...) unless ``lateral``. Patient ids are the collection's ``patientid``. Note that
    the same published case can appear under two patient ids; :mod:`cxrlib.data.curate` finds those.
    """
    problems = [] if problems is None else problems
    d = _require_dir(directory, "cohen")
    table = d / "metadata.csv"
    if not table.is_file():
        raise SourceError(f"{table}: not found. {how_to_get('cohen', d)}")
    meta = _read_table(table, {
        "patientid": ("patient_id", "patientId"), "finding": ("label",), "view": (),
        "modality": (), "filename": ("file", "image"), "folder": (), "sex": (), "age": (),
    }, "Cohen's metadata.csv")
    images = _index_images(d)
    rows = []
    for r in meta.itertuples(index=False):
        if r.modality.strip() != "X-ray":
            continue
        label, _ = relabel("cohen", r.finding)
        if not label:
            continue
        view = r.view.strip()
        if view not in FRONTAL_VIEWS and not (lateral and view == "L"):
            continue
        path = d / r.folder / r.filename
        if not path.is_file():
            path = images.get(Path(r.filename).stem)
        if path is None:
            problems.append(f"{table}: {r.folder}/{r.filename} is listed but not in {d}; "
                            f"skipped (download the collection again to get it)")
            continue
        age = _age(r.age)
        rows.append(dict(path=str(path), label=label, source="cohen", finding=r.finding,
                         source_patient_id=f"cohen:{r.patientid.strip()}", view=view, age=age,
                         sex=_sex(r.sex), subtype="", population=_population(age), split="",
                         preference=0, multilabel=False))
    if not rows:
        raise SourceError(f"{d}: no COVID-19 X-ray image of metadata.csv was found in the folder; "
                          f"expected images/<filename> as listed in metadata.csv")
    return _frame(rows, d.parent)


_KERMANY_PATTERNS = (
    (re.compile(r"^(person\d+)_(bacteria|virus)_\d+", re.I), True),
    (re.compile(r"^(NORMAL2-IM-\d+)-\d+", re.I), False),
    (re.compile(r"^(IM-\d+)-\d+", re.I), False),
)


def kermany_patient(stem: str) -> tuple[str, str]:
    """Patient key and pneumonia subtype from a Kermany file name.

    ``person1_bacteria_1`` -> ("person1", "bacterial"); ``IM-0115-0001`` -> ("IM-0115", "");
    ``NORMAL2-IM-0012-0001`` -> ("NORMAL2-IM-0012", ""); anything else -> (stem, "").
    The key does not include the split: ``personN`` numbers recur between Kaggle's train and
    test folders, and we cannot tell whether they are the same child, so we treat them as one
    patient (the cautious choice: it can only keep images together, never split a patient).
    """
    for pattern, has_subtype in _KERMANY_PATTERNS:
        m = pattern.match(stem)
        if m:
            subtype = ""
            if has_subtype:
                subtype = "bacterial" if m.group(2).lower() == "bacteria" else "viral"
            return m.group(1), subtype
    return stem, ""


def _kermany_root(d: Path) -> Path:
    for candidate in (d / "chest_xray", d / "ChestXRay2017" / "chest_xray", d):
        if candidate.is_dir() and any((candidate / s).is_dir() for s in ("train", "test", "val")):
            return candidate
    raise SourceError(f"{d}: expected chest_xray/<train|test|val>/<NORMAL|PNEUMONIA>/ inside it "
                      f"(the layout of Kermany's ChestXRay2017.zip); found "
                      f"{sorted(p.name for p in d.iterdir())[:10] if d.is_dir() else 'nothing'}")


def read_kermany(directory, problems: list | None = None) -> pd.DataFrame:
    """Kermany et al. paediatric chest X-rays: ``chest_xray/<split>/<NORMAL|PNEUMONIA>/``.

    Bacterial or viral pneumonia and the patient key come from the file name
    (:func:`kermany_patient`). If ``original_aspect.csv`` is present (the shared copy, where
    some images were squashed to 224x224), images at their original aspect ratio are preferred
    (``preference`` 0, squashed ones 1): the paper keeps the aspect ratio.
    """
    problems = [] if problems is None else problems
    d = _require_dir(directory, "kermany")
    root = _kermany_root(d)
    aspect: dict[tuple[str, str, str], int] = {}
    aspect_table = d / "original_aspect.csv"
    if aspect_table.is_file():
        t = _read_table(aspect_table, {"split": (), "class": (), "filename": (),
                                       "original_aspect": ()}, "original_aspect.csv")
        aspect = {(r.split, r["class"].upper(), Path(r.filename).stem): int(r.original_aspect)
                  for _, r in t.iterrows()}
    rows = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label, _ = relabel("kermany", class_dir.name)
            if not label:
                problems.append(f"{class_dir}: unknown class folder {class_dir.name!r} "
                                f"(expected NORMAL or PNEUMONIA); skipped")
                continue
            for p in sorted(class_dir.iterdir()):
                if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
                    continue
                key, subtype = kermany_patient(p.stem)
                flag = aspect.get((split_dir.name, class_dir.name.upper(), p.stem))
                rows.append(dict(path=str(p), label=label, source="kermany",
                                 finding=class_dir.name.upper(),
                                 source_patient_id=f"kermany:{key}", view="", age=float("nan"),
                                 sex="", subtype=subtype, population="paediatric",
                                 split=split_dir.name, preference=0 if flag in (None, 1) else 1,
                                 multilabel=False))
    if not rows:
        raise SourceError(f"{root}: no images in <split>/NORMAL or <split>/PNEUMONIA")
    return _frame(rows, d.parent)


def _nih_table(d: Path) -> Path:
    for name in ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv",
                 "Data_Entry_2017_v2020_subset.csv", "sample_labels.csv"):
        if (d / name).is_file():
            return d / name
    found = sorted(d.glob("Data_Entry*.csv"))
    if found:
        return found[0]
    raise SourceError(f"{d}: no label table (Data_Entry_2017_v2020.csv, Data_Entry_2017.csv or "
                      f"sample_labels.csv). {how_to_get('nih', d)}")


def read_nih(directory, multilabel: str = "exclude", problems: list | None = None,
             ) -> pd.DataFrame:
    """NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (or ``sample_labels.csv``) + ``images*/``.

    Rows kept: images present on disk whose "Finding Labels" name one of Edema, Effusion,
    Emphysema, Fibrosis (label = that finding) or are exactly "No Finding" (label "No Finding",
    an extra for the audit). Images are matched by file stem, so the original .png names match
    the shared .jpg copies. See :func:`relabel` for several target findings (``multilabel``).
    """
    problems = [] if problems is None else problems
    d = _require_dir(directory, "nih")
    table = _nih_table(d)
    meta = _read_table(table, {
        "Image Index": ("image_index", "Image_Index"), "Finding Labels": ("Finding_Labels",),
        "Patient ID": ("Patient_ID", "patient_id"), "Patient Age": ("Patient_Age",),
        "Patient Gender": ("Patient Sex", "Patient_Gender"), "View Position": ("View_Position",),
    }, "the NIH ChestX-ray14 label table (Data_Entry_2017.csv)")
    images = _index_images(d)
    if not images:
        raise SourceError(f"{d}: no images found (expected images/<Image Index>.png from the NIH "
                          f"archives, or .jpg copies with the same names)")
    rows, unknown, absent = [], set(), 0
    columns = ["Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender",
               "View Position"]
    for index, findings, pid, age_text, sex, view in zip(*(meta[c] for c in columns)):
        names = [f.strip() for f in findings.split("|") if f.strip()]
        unknown.update(n for n in names if n not in NIH_VOCABULARY)
        label, multi = relabel("nih", findings, multilabel)
        if not label:
            continue
        path = images.get(Path(index).stem)
        if path is None:
            absent += 1
            continue
        age = _age(age_text)
        rows.append(dict(path=str(path), label=label, source="nih", finding=findings,
                         source_patient_id=f"nih:{pid.strip().lstrip('0') or '0'}",
                         view=view.strip(), age=age, sex=_sex(sex), subtype="",
                         population=_population(age, "adult"), split="", preference=0,
                         multilabel=multi))
    if unknown:
        problems.append(f"{table}: unknown finding label(s) {sorted(unknown)} (NIH's labels are "
                        f"{sorted(NIH_VOCABULARY)}); those names were ignored")
    if absent:
        problems.append(f"{table}: {absent} listed image(s) with a target finding are not in "
                        f"{d} (a partial download?); they are not candidates")
    if not rows:
        raise SourceError(f"{d}: none of the images listed in {table.name} with Edema, Effusion, "
                          f"Emphysema, Fibrosis or No Finding is in the folder")
    return _frame(rows, d.parent)


def read_nih_rxtorax(directory, problems: list | None = None) -> pd.DataFrame:
    """The Kaggle "rxtorax" copy of NIH single-label Effusion / No Finding images (names lost).

    Layout ``<train_test|validation>/<effusion|normal>/<stem>.jpg`` with an optional
    ``labels.csv``. The patient is unknown, so each image is its own patient
    (``nih_rxtorax:<split>/<stem>``), except the few that ``labels.csv`` matched to an NIH image
    (``nih:<Patient ID>``, the NIH patient namespace, so they group with ``nih/``).
    """
    problems = [] if problems is None else problems
    d = _require_dir(directory, "nih_rxtorax")
    folder_labels = {"effusion": "Effusion", "normal": "No Finding"}
    verified: dict[str, dict] = {}
    table = d / "labels.csv"
    if table.is_file():
        t = _read_table(table, {"filename": ("file",), "label": ()}, "nih_rxtorax/labels.csv")
        for _, r in t.iterrows():
            if r["label"] not in folder_labels.values():
                problems.append(f"{table}: unknown label {r['label']!r} for {r['filename']} "
                                f"(expected Effusion or No Finding); the folder name decides")
            verified[str(Path(r["filename"]).with_suffix(""))] = r.to_dict()
    rows = []
    for p in sorted(d.rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        rel = p.relative_to(d)
        label = folder_labels.get(p.parent.name.lower())
        if label is None:
            problems.append(f"{p}: folder {p.parent.name!r} is neither effusion nor normal; "
                            f"skipped")
            continue
        split = rel.parts[0] if len(rel.parts) > 2 else ""
        info = verified.get(str(rel.with_suffix("")), {})
        pid = str(info.get("Patient ID", "")).strip()
        age = _age(info.get("Patient Age", ""))
        rows.append(dict(
            path=str(p), label=label, source="nih_rxtorax", finding=label,
            source_patient_id=(f"nih:{pid.split('.')[0].lstrip('0') or '0'}" if pid
                               else f"nih_rxtorax:{rel.with_suffix('').as_posix()}"),
            view=str(info.get("View Position", "")).strip(), age=age,
            sex=_sex(info.get("Patient Gender", "")), subtype="",
            population=_population(age, "adult"), split=split, preference=1,
            multilabel=False))
    if not rows:
        raise SourceError(f"{d}: no images in <split>/effusion or <split>/normal")
    return _frame(rows, d.parent)


READERS = {"cohen": read_cohen, "kermany": read_kermany, "nih": read_nih,
           "nih_rxtorax": read_nih_rxtorax}


def read_sources(data_dir, lateral: bool = False, multilabel: str = "exclude",
                 problems: list | None = None) -> pd.DataFrame:
    """All sources found in ``data_dir`` (cohen/, kermany/, nih/, nih_rxtorax/), one table.

    Missing sources are reported in ``problems`` with what to download; no source at all is an
    error with the same instructions.
    """
    problems = [] if problems is None else problems
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SourceError(f"{data_dir}: data folder not found.\n{missing_data_message(data_dir)}")
    present = [s for s in SOURCE_FOLDERS if (data_dir / s).is_dir()]
    if not present:
        raise SourceError(f"{data_dir}: none of {', '.join(SOURCE_FOLDERS)} is in this folder.\n"
                          f"{missing_data_message(data_dir)}")
    missing = [s for s in SOURCE_FOLDERS if s not in present and s != "nih_rxtorax"]
    if missing:
        problems.append(f"{data_dir}: missing source(s) {missing}; their classes will be short.\n"
                        + missing_data_message(data_dir, missing))
    frames = []
    for name in present:
        kwargs = {"problems": problems}
        if name == "cohen":
            kwargs["lateral"] = lateral
        if name == "nih":
            kwargs["multilabel"] = multilabel
        frames.append(READERS[name](data_dir / name, **kwargs))
    df = pd.concat(frames, ignore_index=True)
    df["orig_path"] = [str(Path(p).resolve().relative_to(data_dir.resolve()))
                       if Path(p).resolve().is_relative_to(data_dir.resolve()) else p
                       for p in df["path"]]
    return df


def known_labels() -> tuple[str, ...]:
    return tuple(CLASSES) + EXTRA_LABELS

