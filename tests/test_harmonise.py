"""Resolution harmonisation (issue 15, item 4): every image reduced to one common long side
before the letterbox, reproducibly, with the same selection as without; the audit's variants
that use it (their tiny real training is in tests/test_audit.py's audited fixture)."""
from __future__ import annotations

import fixtures_sources as fx
import numpy as np
import pandas as pd
import pytest
from test_curate import folder_digest

from cxrlib.audit import experiments, retrain
from cxrlib.core.profiles import AuditSettings, get_profile
from cxrlib.data import curate, imaging
from cxrlib.data.dataset import load_curated, read_manifest, read_summary


def test_harmonise_reduces_only_what_is_larger():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (300, 200), dtype=np.uint8)
    small = big[:40, :30]
    assert imaging.harmonise(big, 60).shape == (60, 40)
    assert imaging.harmonise(small, 60) is small  # never enlarged: no detail invented
    assert imaging.harmonise(big, 0) is big
    # Through a common long side of 30, a sharp and an already coarse copy look alike.
    coarse = imaging.resize_keep_aspect(big, 30)
    sharp_64, coarse_64 = imaging.letterbox(big, 64), imaging.letterbox(coarse, 64)
    same_64 = [imaging.letterbox(imaging.harmonise(x, 30), 64) for x in (big, coarse)]
    gap = lambda a, b: np.abs(a.astype(int) - b).mean()  # noqa: E731
    assert gap(*same_64) < 0.5 * gap(sharp_64, coarse_64)


def test_harmonised_curation_is_byte_identical_and_selects_the_same_images(tmp_path):
    data = tmp_path / "data"
    fx.make_all(data)
    options = dict(data_dir=data, image_size=48, log=lambda *_: 0)
    plain = curate.curate(tmp_path / "plain", workers=1, **options)
    a = curate.curate(tmp_path / "a", workers=1, harmonise_px=40, **options)
    b = curate.curate(tmp_path / "b", workers=2, harmonise_px=40, **options)
    assert folder_digest(a) == folder_digest(b)
    assert read_summary(a)["parameters"]["harmonise_px"] == 40
    assert "harmonise_px" not in read_summary(plain)["parameters"]  # old folders unchanged
    before, after = read_manifest(plain), read_manifest(a)
    same = [c for c in before.columns if c != "sha256"]
    pd.testing.assert_frame_equal(before[same], after[same])
    # Every source image is larger than 40 px here, so every stored image changed.
    included = before["excluded"] == ""
    assert (before["orig_width"].astype(int) > 40).all()
    assert (before.loc[included, "sha256"] != after.loc[included, "sha256"]).all()
    _, pixels = load_curated(a)
    assert pixels.shape[1:] == (48, 48)


def test_the_harmonised_profile_has_a_folder_and_a_run_of_its_own():
    profile = get_profile("paper-bundle5-cpu")
    harmonised = retrain.variant_profile(profile, "harmonised")
    assert harmonised.harmonise_px == retrain.HARMONISE_PX == 248
    assert curate.curated_dir_for(harmonised).name.endswith("-h248-v1")
    assert "-h" not in curate.curated_dir_for(profile).name
    assert "harmonise_px" not in profile.to_dict()  # runs stored before it still resume
    assert retrain.variant_changes("harmonised-48-source-probe") == {
        "harmonise_px": 48, "target": "source"}
    assert retrain.harmonised_levels(AuditSettings(harmonise_also_px=(48,))) == {
        248: ("harmonised", "harmonised-source-probe"),
        48: ("harmonised-48", "harmonised-48-source-probe")}
    with pytest.raises(ValueError, match="unknown audit variant"):
        retrain.variant_run("x", "harmonised-big")
    with pytest.raises(ValueError, match="harmonise_px"):
        get_profile("tiny", harmonise_px=8)
    swap = retrain.variant_profile(profile, "adult-normal")
    assert (swap.normal_label, swap.grouping) == ("No Finding", "patient")


def test_no_common_fold_gives_an_empty_table(tmp_path):
    table = experiments.harmonised(tmp_path / "main", tmp_path / "probe",
                                   {248: (tmp_path / "h", tmp_path / "hp")}, "from_scratch")
    assert table.empty and list(table.columns) == experiments.HARMONISED_COLUMNS
