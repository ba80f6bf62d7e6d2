"""Curation end to end on made-up sources and on the synthetic set: exclusions, duplicates,
patients, selection, determinism, bad input, atomic output."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fixtures_sources as fx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrlib.core.profiles import get_profile
from cxrlib.data import curate, imaging, screening
from cxrlib.data.dataset import MANIFEST_COLUMNS, load_curated, read_manifest, read_summary


def folder_digest(out: Path) -> str:
    """Hash of every file in a curated folder, curation.json included (wall times go beside it)."""
    h = hashlib.sha256()
    for p in sorted(q for q in out.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(out)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Made-up sources in the real layouts, with defects planted, curated once."""
    root = tmp_path_factory.mktemp("real")
    data = root / "data"
    planted = fx.make_all(data)
    cohen = data / "cohen" / "images"
    rows = []
    for name, pixels, mode in [
        ("washed-out.jpg", fx.radiograph(700, "COVID-19", fault="low_contrast"), "L"),
        ("strip.jpg", fx.radiograph(701, "COVID-19", size=160, fault="partial_thorax"), "L"),
        ("inverted.jpg", fx.radiograph(702, "COVID-19", fault="inverted"), "L"),
        ("tiny.jpg", fx.radiograph(703, "COVID-19", size=24), "L"),
        ("sixteen-bit.png", fx.radiograph(704, "COVID-19"), "I;16"),
        ("transparent.png", fx.radiograph(705, "COVID-19"), "RGBA"),
        ("palette.png", fx.radiograph(706, "COVID-19"), "P"),
        ("cmyk.jpg", fx.radiograph(707, "COVID-19"), "CMYK"),
    ]:
        fx.save(pixels, cohen / name, mode)
        rows.append(f"{800 + len(rows)},0,F,50,COVID-19,,PA,X-ray,,,images,{name},,,,,,")
    truncated = cohen / "truncated.jpg"
    fx.save(fx.radiograph(708, "COVID-19"), truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    rows.append("899,0,F,50,COVID-19,,PA,X-ray,,,images,truncated.jpg,,,,,,")
    meta = data / "cohen" / "metadata.csv"
    meta.write_text(meta.read_text() + "\n".join(rows) + "\n")
    out = curate.curate(root / "out", data_dir=data, image_size=64, workers=1, log=lambda *_: 0)
    return data, out, planted


def row(manifest: pd.DataFrame, image_id: str) -> pd.Series:
    return manifest.set_index("image_id").loc[image_id]


def test_manifest_follows_the_dataset_contract(real):
    _, out, _ = real
    m = read_manifest(out)
    assert list(m.columns[:len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert m["image_id"].is_unique and (m["patient_id"] != "").all()
    for image_id, sha in zip(m["image_id"], m["sha256"]):
        data = (out / "images" / f"{image_id}.jpg").read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
    df, pixels = load_curated(out)
    assert pixels.shape[1:] == (64, 64) and len(df) == (m["excluded"] == "").sum()
    assert set(df["label"]) <= set(curate.CLASSES) | {"No Finding"}


def test_each_defect_gets_its_reason(real):
    _, out, planted = real
    m = read_manifest(out)
    reason = dict(zip(m["image_id"], m["excluded"]))
    assert reason["cohen-washed-out"] == "low_contrast"
    assert reason["cohen-strip"] == "partial_thorax"
    assert reason["cohen-inverted"] == "inverted"
    assert reason["cohen-tiny"] == "too_small"
    assert reason[planted["multilabel"]] == "multilabel"
    assert planted["child_no_finding"] not in reason  # extras are adults
    # unusual pixel formats are decoded, not excluded
    for ok in ("cohen-sixteen-bit", "cohen-transparent", "cohen-palette", "cohen-cmyk"):
        assert reason[ok] == "", ok
    summary = read_summary(out)
    unreadable = {u["image_id"]: u["error"] for u in summary["unreadable"]}
    assert "cohen-truncated" in unreadable and "truncated.jpg" in unreadable["cohen-truncated"]
    assert "cohen-truncated" not in reason  # no pixels to store
    assert any("missing.jpg" in p for p in summary["problems"])


def test_duplicates_are_found_and_their_patients_joined(real):
    _, out, planted = real
    m = read_manifest(out)
    rep = row(m, "cohen-republished")  # cohen-covid-0-0 re-published under another patient id
    assert rep["excluded"] == "duplicate_of:cohen-covid-0-0"
    assert rep["source_patient_id"] == "cohen:56" and rep["patient_id"] == "cohen:1"
    same = m[m["source_patient_id"].isin(planted["duplicate"])]["patient_id"]
    assert same.nunique() == 1
    copy = m[m["image_id"].isin(["kermany-train-PNEUMONIA-person1_virus_0",
                                 "kermany-train-PNEUMONIA-person9_virus_99"])]
    assert copy["patient_id"].nunique() == 1  # byte-identical file under two names
    assert (copy["excluded"] != "").sum() == 1
    dups = read_summary(out)["duplicates"]
    assert dups["groups"] == 2 and dups["identical_groups"] == 2
    assert dups["cross_patient_groups"] == 2
    merged = read_summary(out)["patients"]["merged"]
    assert merged["cohen:1"] == ["cohen:1", "cohen:56"]
    # the matched rxtorax image joins its NIH patient
    assert row(m, "nih_rxtorax-train_test-effusion-effusion0")["patient_id"] == "nih:2"


def test_counts_report_the_shortfall_against_the_paper(real):
    _, out, _ = real
    counts = read_summary(out)["counts"]
    edema = counts["Edema"]
    assert edema["paper"] == 293 and edema["included"] == 1
    assert edema["shortfall"] == 292 and edema["excluded"] == {"multilabel": 1}
    assert counts["COVID-19"]["excluded"]["low_contrast"] == 1
    assert counts["No Finding"]["paper"] is None


def test_selection_takes_preferred_images_first_and_stops_at_the_count(tmp_path):
    data = tmp_path / "data"
    fx.make_kermany(data, n_normal=12, n_pneumonia=4, byte_identical_copy=False)
    out = curate.curate(tmp_path / "out", data_dir=data, image_size=48, workers=1,
                        counts={"Normal": 5, "Pneumonia": 2}, extras=(), log=lambda *_: 0)
    m = read_manifest(out)
    normal = m[m["label"] == "Normal"]
    assert (normal["excluded"] == "").sum() == 5
    # 6 of the 12 are at their original aspect (preference 0): all 5 come from those
    assert set(normal.loc[normal["excluded"] == "", "preference"]) == {"0"}
    assert read_summary(out)["counts"]["Pneumonia"]["included"] == 2
    again = curate.curate(tmp_path / "out2", data_dir=data, image_size=48, workers=1,
                          counts={"Normal": 5, "Pneumonia": 2}, extras=(), log=lambda *_: 0)
    assert folder_digest(out) == folder_digest(again)
    other_seed = curate.curate(tmp_path / "out3", data_dir=data, image_size=48, workers=1,
                               seed=99, counts={"Normal": 5, "Pneumonia": 2}, extras=(),
                               log=lambda *_: 0)
    assert set(read_manifest(other_seed)["image_id"]) != set(m["image_id"])


def test_synthetic_curation_is_byte_identical_across_runs_and_worker_counts(tmp_path):
    kwargs = dict(image_size=32, seed=5, synthetic_per_class=20, log=lambda *_: 0)
    a = curate.curate(tmp_path / "a", workers=1, **kwargs)
    b = curate.curate(tmp_path / "b", workers=2, **kwargs)  # 160+ images: two processes
    assert folder_digest(a) == folder_digest(b)
    summary = read_summary(a)
    assert summary["synthetic"] and "shortcut" in summary["shortcut_note"].lower()
    m = read_manifest(a)
    planted = m[m["planted_fault"] != ""]
    caught = planted[planted["excluded"] != ""]
    assert len(caught) >= 0.75 * len(planted)  # the planted faults are found
    assert m["source"].str.startswith("synthetic-").all()


def test_failed_run_leaves_the_previous_output_untouched(tmp_path, monkeypatch):
    out = curate.curate(tmp_path / "out", image_size=32, synthetic_per_class=4, workers=1,
                        log=lambda *_: 0)
    before = folder_digest(out)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(curate.pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        curate.curate(out, image_size=32, synthetic_per_class=5, workers=1, log=lambda *_: 0)
    assert folder_digest(out) == before
    # no temporary folder left (the first curation's wall time stays beside its folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.timings.json"]


def test_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a curated dataset"):
        curate.curate(tmp_path, image_size=32, synthetic_per_class=2, log=lambda *_: 0)


def test_ensure_curated_builds_once_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRLIB_CURATED", str(tmp_path))
    tiny = get_profile("tiny")
    path = curate.ensure_curated(tiny, log=lambda *_: 0)
    assert path == curate.curated_dir_for(tiny) and path.parent == tmp_path
    assert "synthetic" in path.name and "32px" in path.name
    stamp = (path / "manifest.csv").stat().st_mtime_ns
    assert curate.ensure_curated(tiny, log=lambda *_: 0) == path
    assert (path / "manifest.csv").stat().st_mtime_ns == stamp
    df, pixels = load_curated(path, classes=tiny.classes)
    assert pixels.shape == (len(df), 32, 32) and df.groupby("label").size().min() >= 4
    # the folder name does not depend on the class subset
    assert curate.curated_dir_for(get_profile("paper")) == \
        curate.curated_dir_for(get_profile("paper-bundle"))


def test_ensure_curated_without_real_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRLIB_CURATED", str(tmp_path))
    monkeypatch.setenv("CXRLIB_DATA", str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="download"):
        curate.ensure_curated(get_profile("paper"), log=lambda *_: 0)


def test_command_line_curates_the_synthetic_set(tmp_path, capsys):
    from cxrlib.__main__ import main

    assert main(["curate", "--out", str(tmp_path / "cli"), "--profile", "tiny",
                 "--extras"]) == 0
    m = read_manifest(tmp_path / "cli")
    assert "No Finding" not in set(m["label"])
    assert json.loads((tmp_path / "cli" / "curation.json").read_text())["parameters"][
        "image_size"] == 32


# ----------------------------------------------------------------------------- pixels


def test_decoding_handles_the_formats_of_public_collections(tmp_path):
    base = fx.radiograph(1, size=64)
    for mode in ("L", "RGB", "RGBA", "P", "CMYK", "I;16"):
        suffix = ".jpg" if mode == "CMYK" else ".png"
        gray, (w, h) = imaging.decode(fx.save(base, tmp_path / f"x-{mode}{suffix}", mode))
        assert gray.dtype == np.uint8 and gray.shape == base.shape and (w, h) == (64, 64)
        if mode == "L":
            assert np.array_equal(gray, base)
        if mode == "I;16":  # min-max scaled to the full 8-bit range
            expected = (base - base.min()) * (255.0 / (base.max() - base.min()))
            assert gray.max() == 255 and np.abs(gray - expected).max() <= 1
    rgba = imaging.read_grayscale(tmp_path / "x-RGBA.png")
    assert rgba[: 64 // 8].max() == 0  # the transparent band is flattened onto black
    flat16 = np.full((8, 8), 1000, np.uint16)
    Image.fromarray(flat16).save(tmp_path / "flat16.png")
    assert imaging.read_grayscale(tmp_path / "flat16.png").max() == 0


def test_bad_files_raise_an_error_naming_the_file(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(imaging.ImageError, match="notes.jpg"):
        imaging.decode(tmp_path / "notes.jpg")
    with pytest.raises(imaging.ImageError, match="not found"):
        imaging.decode(tmp_path / "absent.png")


def test_letterbox_keeps_the_aspect_ratio_and_pads_black():
    wide = np.full((50, 100), 200, np.uint8)
    box = imaging.letterbox(wide, 40)
    assert box.shape == (40, 40)
    assert (box[:10] == 0).all() and (box[-10:] == 0).all() and (box[15:25] > 150).all()
    assert imaging.content_box(np.pad(wide, 7)) == (7, 57, 7, 107)


def test_duplicate_rule_needs_both_hash_and_correlation():
    rng = np.random.default_rng(0)
    a = fx.radiograph(11)
    noisy = np.clip(a + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8)
    other = fx.radiograph(12)
    thumbs = np.stack([imaging.squashed_thumbnail(x) for x in (a, noisy, other)])
    hashes = [imaging.perceptual_hash(x) for x in (a, noisy, other)]
    pairs = screening.duplicate_pairs(hashes, thumbs)
    assert [(i, j) for i, j, _, _ in pairs] == [(0, 1)]
    assert screening.reconcile_patients(["b", "a", "c"], [["b", "c"]]) == {
        "a": "a", "b": "b", "c": "b"}


def test_notebook_01_runs_under_papermill(tmp_path, monkeypatch):
    """The text notebook, converted by jupytext and executed by papermill on the tiny profile."""
    import jupytext
    import papermill

    from cxrlib.core import paths

    monkeypatch.setenv("CXRLIB_CURATED", str(tmp_path / "curated"))
    notebook = tmp_path / "01.ipynb"
    jupytext.write(jupytext.read(paths.root() / "notebooks" / "01_data_curation.py"), notebook)
    executed = papermill.execute_notebook(
        str(notebook), str(tmp_path / "01-out.ipynb"), parameters={"profile": "tiny"},
        kernel_name="python3", cwd=str(paths.root()), progress_bar=False)
    text = json.dumps(executed["cells"])
    assert "SYNTHETIC" in text and "image/png" in text
    assert '"output_type": "error"' not in text
    assert (tmp_path / "curated").is_dir()
