"""Models people can use: a run keeps its networks, `export` writes one model file, `predict`
reads PNG, JPEG and DICOM with Grad-CAM, `evaluate` scores labelled images per source.

One real tiny training for the module (profile ``tiny``: 32 px, 2 folds, 1 epoch, from scratch)
through the command line, into temporary folders.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib import cli
from cxrlib.core.errors import UserError
from cxrlib.core.paper import CLASSES
from cxrlib.data import external_sources, imaging, sources
from cxrlib.models import evaluate, modelfile


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
                bits_stored: int = 12, **elements) -> Path:
    """An uncompressed DICOM radiograph (CR) written with pydicom, with extra ``elements``
    (e.g. WindowCenter, RescaleIntercept)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(rows: int = 40, cols: int = 60, top: int = 4095) -> np.ndarray:
    return np.tile(np.linspace(0, top, cols).round().astype(np.uint16), (rows, 1))


# ---------------------------------------------------------------------------------------------
# DICOM decoding (no model needed)


def test_dicom_monochrome2_16_bit_is_scaled_and_monochrome1_inverted(tmp_path):
    pixels = ramp()
    gray, size = imaging.decode(write_dicom(tmp_path / "m2.dcm", pixels))
    assert size == (60, 40) and gray.dtype == np.uint8
    assert gray[0, 0] == 0 and gray[0, -1] == 255          # 12-bit range min-max scaled
    np.testing.assert_array_equal(gray, imaging._scale_to_8bit(pixels))
    # The same values in MONOCHROME1 (high = dark) and without the .dcm ending ("DICM" marker).
    inverted, _ = imaging.decode(write_dicom(tmp_path / "m1-no-suffix", pixels, "MONOCHROME1"))
    np.testing.assert_array_equal(inverted, 255 - gray)


def test_dicom_window_and_rescale_are_applied(tmp_path):
    pixels = ramp(rows=4, cols=2001, top=2000)  # one step per value
    # Stored 0..2000 with intercept -1000: values -1000..1000; window 0 +/- 200.
    path = write_dicom(tmp_path / "w.dcm", pixels, RescaleSlope=1, RescaleIntercept=-1000,
                       WindowCenter=0, WindowWidth=400)
    gray, _ = imaging.decode(path)
    values = pixels[0].astype(float) - 1000
    assert (gray[0, values <= -200] == 0).all() and (gray[0, values > 200] == 255).all()
    inside = (values > -150) & (values < 150)
    assert inside.any() and (np.diff(gray[0, inside].astype(int)) >= 0).all()
    assert abs(int(gray[0, np.argmin(np.abs(values))]) - 128) <= 2  # the centre is mid-grey


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_dicom_voi_lut_is_looked_up_over_its_whole_length(tmp_path, vr):
    from pydicom.dataset import Dataset

    # 4096 entries of 8 bits, mapping stored values 100..4195 to 255 down to 0.
    table = np.array([255 - v // 16 for v in range(4096)], dtype="<u2")
    item = Dataset()
    item.LUTDescriptor = [4096, 100, 8]
    item.add_new(0x00283006, vr, table.tobytes() if vr == "OW" else table.tolist())
    pixels = ramp()
    gray, _ = imaging.decode(write_dicom(tmp_path / "lut.dcm", pixels, VOILUTSequence=[item]))
    expected = table[np.clip(pixels.astype(int) - 100, 0, 4095)]
    np.testing.assert_array_equal(gray, expected.astype(np.uint8))
    assert gray.min() == 6 and gray.max() == 255


def test_an_unreadable_dicom_is_an_image_error_naming_it(tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    with pytest.raises(imaging.ImageError, match="broken.dcm: cannot read it as DICOM"):
        imaging.decode(bad)


# ---------------------------------------------------------------------------------------------
# A tiny run, kept and exported


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_curated):
    """The ``tiny`` profile's from-scratch run (both folds, weights kept by default) and its
    exported model file."""
    root = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("RESULTS", "RUNS", "CURATED"):
            mp.setenv(f"CXRLIB_{name}", str(root / name.lower()))
        assert cli.main(["run", "--profile", "tiny", "--configs", "from_scratch",
                         "--curated", str(tiny_curated)]) == 0
        out = root / "tiny.cxrmodel"
        assert cli.main(["export", "--run", "tiny", "--config", "from_scratch",
                         "--out", str(out)]) == 0
        yield {"root": root, "model": out, "curated": tiny_curated}


def test_every_fold_keeps_its_weights_and_the_export_describes_itself(tiny_run):
    weights = sorted((tiny_run["root"] / "runs" / "tiny" / "weights").iterdir())
    assert [w.name for w in weights] == ["from_scratch-fold-00.npz", "from_scratch-fold-01.npz"]
    description = modelfile.read_description(tiny_run["model"])
    assert description["classes"] == list(CLASSES) and description["image_size"] == 32
    assert description["folds"] == [0, 1] and "mean" in description["ensemble"]
    assert description["profile"]["name"] == "tiny"
    assert description["preprocessing"]["geometry"] == "letterbox"
    assert description["git_commit"] not in ("", [], None)
    with zipfile.ZipFile(tiny_run["model"]) as archive:
        internal = pd.read_csv(archive.open(modelfile.INTERNAL))
    assert len(internal) == 7 * 6 and set(internal["fold"]) == {0, 1}


def test_the_run_options_keep_all_folds_unless_told_otherwise():
    def options(*extra):
        args = cli.make_parser().parse_args(["run", "--profile", "tiny", *extra])
        return cli.run_options(args, cli.run_choice(args))["save_weights_folds"]

    assert options() == (0, 1)
    assert options("--save-weights-folds", "1") == [1]
    assert options("--no-keep-weights") == ()


def test_the_loaded_ensemble_is_the_mean_of_its_folds(tiny_run):
    model = modelfile.load_model(tiny_run["model"])
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    each = [net.predict(images[..., None], verbose=0) for net in model.networks]
    assert len(each) == 2 and not np.allclose(each[0], each[1])
    np.testing.assert_allclose(model.predict(images), np.mean(each, axis=0), rtol=1e-5)
    np.testing.assert_allclose(model.predict(images).sum(axis=1), 1, rtol=1e-5)


def test_a_model_trained_on_masked_images_is_given_masked_images():
    from cxrlib.data.regions import apply_input_mask

    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    masked = modelfile.LoadedModel(Path("m"), {"preprocessing": {"input_mask": "border_only"}}, [])
    np.testing.assert_array_equal(masked.network_input(images),
                                  apply_input_mask(images, "border_only"))
    plain = modelfile.LoadedModel(Path("m"), {"preprocessing": {"input_mask": "none"}}, [])
    np.testing.assert_array_equal(plain.network_input(images), images)
    assert not np.array_equal(masked.network_input(images), images)


def tampered(source: Path, out: Path, change=None, truncate: bool = False) -> Path:
    """A copy of a model file with its description changed by ``change``, or cut short."""
    if truncate:
        out.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        return out
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(out, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename == modelfile.DESCRIPTION:
                description = json.loads(data)
                change(description)
                data = json.dumps(description).encode()
            new.writestr(item, data)
    return out


def test_a_model_file_that_does_not_match_is_refused(tiny_run, tmp_path, capsys):
    model = tiny_run["model"]
    with pytest.raises(UserError, match="image size is 32, not 64"):
        modelfile.load_model(model, expect={"image_size": 64})
    with pytest.raises(UserError, match="classes is .*, not"):
        modelfile.load_model(model, expect={"classes": CLASSES[:4]})

    def drop_a_class(d):
        d["classes"] = d["classes"][:-1]
        d["architecture"]["n_classes"] -= 1

    six = tampered(model, tmp_path / "six.cxrmodel", drop_a_class)
    with pytest.raises(UserError, match="do not fit a from_scratch network with 6 classes"):
        modelfile.load_model(six)
    half = tampered(model, tmp_path / "half.cxrmodel", truncate=True)
    with pytest.raises(UserError, match="not a usable cxrlib model file"):
        modelfile.read_description(half)
    # Folds are checked against the stored run (2 folds), not the default profile (3).
    assert cli.main(["export", "--run", "tiny", "--config", "from_scratch", "--folds", "2"]) == 2
    assert "not a fold of profile 'tiny'" in capsys.readouterr().err
    # On the command line: one line, exit status 2.
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    assert cli.main(["predict", str(png), "--model", str(half)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "half.cxrmodel" in err[0]


def test_predict_png_jpeg_and_dicom_with_gradcam_naming_the_unreadable(tiny_run, tmp_path,
                                                                      capsys):
    curated = Image.open(tiny_run["curated"] / "images" / "fixture-2-000.jpg")
    pixels = np.asarray(curated)
    files = [tmp_path / "wide.png", tmp_path / "same.jpg", tmp_path / "chest.dcm",
             tmp_path / "notes.txt"]
    Image.fromarray(pixels).resize((64, 48)).save(files[0])
    curated.save(files[1], quality=95)
    write_dicom(files[2], pixels.astype(np.uint16) * 16, "MONOCHROME1")
    files[3].write_text("not an image")
    out_csv, maps = tmp_path / "p.csv", tmp_path / "maps"
    status = cli.main(["predict", *map(str, files), "--model", str(tiny_run["model"]),
                       "--gradcam", str(maps), "--csv", str(out_csv)])
    captured = capsys.readouterr()
    assert status == 1 and "notes.txt" in captured.err and "wide.png" not in captured.err
    table = pd.read_csv(out_csv)
    assert [Path(p).name for p in table["path"]] == ["wide.png", "same.jpg", "chest.dcm"]
    probabilities = table[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    # The JPEG is the curated image itself: the same answer as the network on curated pixels.
    model = modelfile.load_model(tiny_run["model"])
    np.testing.assert_allclose(probabilities[1], model.predict(pixels[None])[0], atol=1e-5)
    for name in ("wide.png", "same.png", "chest.png"):
        with Image.open(maps / name) as picture:
            assert picture.mode == "RGB" and picture.size == (256, 256)
    assert "chest.dcm" in captured.out


def test_evaluate_scores_per_source_and_reports_unknown_labels(tiny_run, tmp_path, capsys):
    manifest = pd.read_csv(tiny_run["curated"] / "manifest.csv", dtype=str)
    labels = pd.DataFrame({"path": [str(tiny_run["curated"] / "images" / f"{i}.jpg")
                                    for i in manifest["image_id"]],
                           "label": manifest["label"], "patient_id": manifest["patient_id"],
                           "source": np.where(np.arange(len(manifest)) % 2, "north", "south")})
    labels.loc[:2, "label"] = "No Finding"
    labels.to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "evaluation"
    assert cli.main(["evaluate", "--model", str(tiny_run["model"]), "--images",
                     str(tmp_path / "labels.csv"), "--bootstrap", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "'No Finding' (3 images)" in printed and "not scored" in printed
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == len(labels) and (~predictions["known"]).sum() == 3
    table = pd.read_csv(out / "metrics.csv")
    assert set(table["source"]) == {"internal (cross-validated)", "north", "south", "all"}
    accuracy = table.set_index(["source", "metric"])["value"]
    scored = predictions[predictions["known"]]
    assert accuracy["all", "accuracy"] == pytest.approx(
        (scored["predicted"] == scored["label"]).mean())
    assert ((table["ci_low"] <= table["value"] + 1e-9) &
            (table["value"] <= table["ci_high"] + 1e-9)).all()
    # Mapped to a class the model knows, the same images are scored.
    assert cli.main(["evaluate", "--model", str(tiny_run["model"]), "--images",
                     str(tmp_path / "labels.csv"), "--as", "No Finding=Normal",
                     "--bootstrap", "50"]) == 0
    assert "not scored" not in capsys.readouterr().out


def write_hannover(folder: Path, n_patients: int = 3, per_patient: int = 2) -> Path:
    """A Hannover-layout folder: data.csv (the upstream columns used) and images/<id>.jpg."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for p in range(n_patients):
        for k in range(per_patient):
            image_id = f"{p:02x}{k:06x}"
            Image.fromarray(rng.integers(0, 256, (50, 40), dtype=np.uint8)).save(
                folder / "images" / f"{image_id}.jpg")
            rows.append({"patient_id": f"pat{p}", "image_id": image_id, "sex": "mf"[p % 2],
                         "age": "", "modality": "CR", "projection": "ap" if k else "pa"})
    pd.DataFrame(rows).to_csv(folder / "data.csv", index=False)
    return folder


def test_the_hannover_reader_is_for_evaluation_only(tmp_path, tiny_run, capsys):
    folder = write_hannover(tmp_path / "data" / "hannover")
    table = external_sources.read_hannover(folder)
    assert len(table) == 6 and set(table["label"]) == {"COVID-19"}
    assert set(table["view"]) == {"AP", "PA"} and table["source_patient_id"].nunique() == 3
    assert "hannover" not in sources.READERS and "hannover" in external_sources.EXTERNAL_READERS
    assert set(table.columns) == set(sources.SOURCE_COLUMNS)
    assert cli.main(["evaluate", "--model", str(tiny_run["model"]), "--images", str(folder),
                     "--bootstrap", "50", "--out", str(tmp_path / "out")]) == 0
    assert "hannover" in capsys.readouterr().out
    scores = pd.read_csv(tmp_path / "out" / "metrics.csv")
    external = scores[scores["source"] == "hannover"]
    # No specificity: the source has no negatives.
    assert set(external["metric"]) == {"accuracy", "sensitivity", "recall COVID-19"}
    assert set(external["n_images"]) == {6} and set(external["n_patients"]) == {3}
    # The library takes the same images as a table (as the audit passes its held-out images).
    frame = table.rename(columns={"source_patient_id": "patient_id"})
    again = evaluate.evaluate(modelfile.load_model(tiny_run["model"]), frame, n_boot=50)
    pd.testing.assert_frame_equal(
        again.metrics[again.metrics["source"] == "hannover"].reset_index(drop=True),
        external.reset_index(drop=True), check_dtype=False)


def test_nih_findings_no_profile_trains_on_kept_to_unseen_patients(tmp_path):
    d = tmp_path / "nih"
    (d / "images").mkdir(parents=True)
    entries = [("00000001_000", "Pneumonia", 1, 60), ("00000002_000", "Pneumonia", 2, 9),
               ("00000003_000", "Effusion|Pneumonia", 3, 50), ("00000004_000", "No Finding", 4, 40),
               ("00000005_000", "Pneumonia", 5, 70), ("00000006_000", "Edema", 6, 55)]
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
             "View Position"]
    for index, findings, pid, age in entries:
        Image.fromarray(np.full((20, 20), pid * 20, np.uint8)).save(d / "images" / f"{index}.png")
        lines.append(f"{index}.png,{findings},0,{pid},{age},F,PA")
    lines.append("00000009_000.png,Pneumonia,0,9,44,M,AP")  # listed, not downloaded
    (d / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    problems = []
    table = external_sources.read_nih_findings(d, problems=problems)
    # Single-label adults only: the child and the two-finding image are not taken.
    assert dict(zip(table["source_patient_id"], table["label"])) == {
        "nih:1": "Pneumonia", "nih:4": "No Finding", "nih:5": "Pneumonia"}
    assert len(problems) == 1 and "00000009_000" in problems[0]
    manifest = pd.DataFrame({"patient_id": ["nih:5", "cohen:3"]})  # patients a run curated
    assert external_sources.held_out(table, manifest)["source_patient_id"].tolist() == [
        "nih:1", "nih:4"]
