"""Small source folders in the original layouts, made by code (no image file is committed).

Images are synthetic radiographs (:func:`cxrlib.data.synthetic_render.render`) saved in the formats the
public collections use, plus the defects curation must handle. Every builder returns what it
planted, so tests can check that curation finds exactly that.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cxrlib.data.synthetic_render import render


def radiograph(seed: int, label: str = "Normal", size: int = 96, collection="synthetic-hospital",
               fault: str = "") -> np.ndarray:
    """A synthetic 8-bit radiograph; different seeds give different patients."""
    return render(dict(seed=seed, patient_seed=seed + 1, label=label, collection=collection,
                       sex="M", native_size=size, fault=fault, sign=0.8))


def save(pixels: np.ndarray, path: Path, mode: str = "L") -> Path:
    """Save ``pixels`` as ``path`` in a given pixel mode (L, RGB, RGBA, P, CMYK, I;16)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(pixels)
    if mode == "I;16":
        Image.fromarray(pixels.astype(np.uint16) * 257).save(path)  # 16-bit PNG
        return path
    if mode == "RGBA":
        rgba = np.dstack([pixels] * 3 + [np.full_like(pixels, 255)])
        rgba[: pixels.shape[0] // 8, :, 3] = 0  # a transparent band, flattened onto black
        Image.fromarray(rgba, "RGBA").save(path)
        return path
    if mode != "L":
        im = im.convert("RGB").convert(mode) if mode != "P" else im.convert("RGB").quantize(64)
    im.save(path)
    return path


def make_cohen(root: Path, n_patients: int = 6, duplicate_under_new_id: bool = True) -> dict:
    """``cohen/metadata.csv`` + ``images/``: COVID-19 X-rays (PA/AP), a lateral, a CT, an
    unrelated finding, a listed-but-missing file and, optionally, one radiograph re-published
    under a second patient id (renamed, re-encoded as PNG)."""
    d = root / "cohen"
    (d / "images").mkdir(parents=True, exist_ok=True)
    header = ("patientid,offset,sex,age,finding,survival,view,modality,date,location,folder,"
              "filename,doi,url,license,clinical_notes,other_notes,")
    lines = [header]
    views = ["PA", "AP", "AP Supine"]
    for p in range(n_patients):
        for k in range(2):
            name = f"covid-{p}-{k}.jpg"
            save(radiograph(100 + 10 * p + k, "COVID-19", collection="synthetic-web"),
                 d / "images" / name, "RGB")
            lines.append(f"{p + 1},{k},{'MF'[p % 2]},{40 + p},COVID-19,,{views[k % 3]},X-ray,,,"
                         f"images,{name},,,,,,")
    save(radiograph(900, "COVID-19"), d / "images" / "lateral.jpg")
    lines.append("1,3,M,40,COVID-19,,L,X-ray,,,images,lateral.jpg,,,,,,")
    save(radiograph(901), d / "images" / "ct-slice.jpg")
    lines.append("2,1,F,41,COVID-19,,Axial,CT,,,images,ct-slice.jpg,,,,,,")
    save(radiograph(902), d / "images" / "sars.jpg")
    lines.append("3,0,F,30,SARS,,PA,X-ray,,,images,sars.jpg,,,,,,")
    lines.append("4,5,F,30,COVID-19,,PA,X-ray,,,images,missing.jpg,,,,,,")
    planted = {"duplicate": None}
    if duplicate_under_new_id:
        src = np.asarray(Image.open(d / "images" / "covid-0-0.jpg").convert("L"))
        save(src, d / "images" / "republished.png")
        lines.append(f"{n_patients + 50},0,M,40,Pneumonia/Viral/COVID-19,,PA,X-ray,,,images,"
                     f"republished.png,,,,,,")
        planted["duplicate"] = ("cohen:1", f"cohen:{n_patients + 50}")
    (d / "metadata.csv").write_text("\n".join(lines) + "\n")
    return planted


def make_kermany(root: Path, n_normal: int = 8, n_pneumonia: int = 8,
                 byte_identical_copy: bool = True, aspect_table: bool = True) -> dict:
    """``kermany/chest_xray/<split>/<NORMAL|PNEUMONIA>/`` with Kaggle-style names, landscape
    children, and a byte-identical file under a second name (as in the real copy)."""
    d = root / "kermany" / "chest_xray"
    rows = ["split,class,filename,original_aspect"]
    for i in range(n_normal):
        split = "train" if i < n_normal - 2 else "test"
        name = f"IM-{i // 2:04d}-000{i % 2 + 1}.jpeg" if i % 3 else f"NORMAL2-IM-{i:04d}-0001.jpeg"
        save(radiograph(300 + i, "Normal", collection="synthetic-paediatric"),
             d / split / "NORMAL" / name)
        rows.append(f"{split},NORMAL,{Path(name).stem}.jpg,{int(i % 2 == 0)}")
    for i in range(n_pneumonia):
        kind = "bacteria" if i % 2 else "virus"
        name = f"person{i // 2 + 1}_{kind}_{i}.jpeg"
        save(radiograph(400 + i, "Pneumonia", collection="synthetic-paediatric"),
             d / "train" / "PNEUMONIA" / name)
        rows.append(f"train,PNEUMONIA,{Path(name).stem}.jpg,{int(i % 2 == 0)}")
    planted = {"identical": None}
    if byte_identical_copy:
        a = d / "train" / "PNEUMONIA" / "person1_virus_0.jpeg"
        b = d / "train" / "PNEUMONIA" / "person9_virus_99.jpeg"
        shutil.copyfile(a, b)
        rows.append("train,PNEUMONIA,person9_virus_99.jpg,1")
        planted["identical"] = ("kermany:person1", "kermany:person9")
    if aspect_table:
        (root / "kermany" / "original_aspect.csv").write_text("\n".join(rows) + "\n")
    return planted


NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")


def make_nih(root: Path, table: str = "Data_Entry_2017_v2020.csv", suffix: str = ".png",
             header: str = NIH_HEADER) -> dict:
    """``nih/<table>`` + ``images/``: one image per target finding, a multi-label one, a target
    with a co-finding, No Finding adults and a child, a non-target finding, an unlisted image."""
    d = root / "nih"
    entries = [
        ("00000001_000", "Edema", 1, 58, "M"), ("00000002_000", "Effusion", 2, 61, "F"),
        ("00000002_001", "Cardiomegaly|Effusion", 2, 61, "F"),
        ("00000003_000", "Emphysema", 3, 70, "M"), ("00000004_000", "Fibrosis", 4, 66, "F"),
        ("00000005_000", "Edema|Effusion", 5, 50, "M"),
        ("00000006_000", "No Finding", 6, 45, "F"), ("00000007_000", "No Finding", 7, 9, "M"),
        ("00000008_000", "Nodule", 8, 52, "M"),
    ]
    lines = [header]
    for k, (index, findings, pid, age, sex) in enumerate(entries):
        label = findings.split("|")[-1] if findings != "Nodule" else "Normal"
        save(radiograph(500 + k, label if label in ("Edema", "Effusion", "Emphysema", "Fibrosis")
                        else "Normal"), d / "images" / f"{index}{suffix}")
        lines.append(f"{index}.png,{findings},{k},{pid},{age},{sex},PA,2500,2048,0.14,0.14")
    lines.append("00000099_000.png,Edema,0,99,60,M,PA,2500,2048,0.14,0.14")  # not downloaded
    (d / table).write_text("\n".join(lines) + "\n")
    return {"multilabel": "nih-00000005_000", "child_no_finding": "nih-00000007_000"}


def make_nih_rxtorax(root: Path, n: int = 4) -> dict:
    """``nih_rxtorax/<train_test|validation>/<effusion|normal>/`` + ``labels.csv`` with one
    image matched to an NIH patient."""
    d = root / "nih_rxtorax"
    lines = ["filename,source_folder,label,nih_image_index_verified,match_corr,Finding Labels,"
             "Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"]
    for i in range(n):
        for folder, label in (("effusion", "Effusion"), ("normal", "No Finding")):
            split = "train_test" if i < n - 1 else "validation"
            name = f"{folder}{i}.jpg"
            save(radiograph(600 + 10 * i + (folder == "normal"),
                            "Effusion" if folder == "effusion" else "Normal"),
                 d / split / folder / name, "RGB")
            verified = ",00000002_003.png,0.9999,Effusion,3,2,61,F,PA" \
                if (i, folder) == (0, "effusion") else ",,,,,,,,"
            lines.append(f"{split}/{folder}/{name},{folder},{label}{verified}")
    (d / "labels.csv").write_text("\n".join(lines) + "\n")
    return {"verified_patient": "nih:2"}


def make_all(root: Path) -> dict:
    planted = {}
    planted.update(make_cohen(root))
    planted.update(make_kermany(root))
    planted.update(make_nih(root))
    planted.update(make_nih_rxtorax(root))
    return planted
