"""The built-in synthetic images: deterministic, each finding's sign, the planted shortcut."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cxrlib.core.paper import CLASSES
from cxrlib.data import synthetic, synthetic_render
from cxrlib.data.imaging import letterbox


@pytest.fixture(scope="module")
def table():
    return synthetic.make_synthetic(per_class=12, seed=7, native_size=96)


def test_table_has_classes_collections_patients_and_planted_faults(table):
    good = table[table["planted_fault"] == ""]
    assert good.groupby("label").size().to_dict() == {c: 12 for c in CLASSES + ("No Finding",)}
    assert set(table["source"]) == {"synthetic-web", "synthetic-paediatric", "synthetic-hospital"}
    assert (table.loc[table["label"] == "COVID-19", "source"] == "synthetic-web").all()
    assert table["source"].str.startswith("synthetic-").all()
    assert table["image_id"].is_unique
    per_patient = good.groupby("patient_id").size()
    assert per_patient.max() > 1 and len(per_patient) < len(good)  # follow-up images
    kids = table["population"] == "paediatric"
    assert (table.loc[kids, "age"] < 6).all() and (table.loc[~kids, "age"] >= 20).all()
    faults = table.loc[table["planted_fault"] != "", "planted_fault"]
    assert set(faults) == {"low_contrast", "partial_thorax", "duplicate", "inverted"} or \
        len(faults) == round(0.05 * 12) * 8


def test_rendering_is_a_pure_function_of_the_seed(table):
    recipe = table["recipe"].iloc[3]
    a, b = synthetic_render.render(recipe), synthetic_render.render(dict(recipe))
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    again = synthetic.make_synthetic(per_class=12, seed=7, native_size=96)
    assert again["recipe"].tolist() == table["recipe"].tolist()
    other = synthetic.make_synthetic(per_class=12, seed=8, native_size=96)
    assert other["recipe"].iloc[3] != recipe


def _sign(label: str, n: int = 6, size: int = 128) -> np.ndarray:
    """Mean (sign image - same recipe drawn as Normal), smoothed: where the finding lives."""
    diffs = []
    for seed in range(n):
        recipe = dict(seed=seed, patient_seed=1000 + seed, label=label,
                      collection="synthetic-hospital", sex="M", native_size=size, fault="",
                      sign=1.0)  # square frame; its marker is the same in both renders
        with_sign = synthetic_render.render(recipe).astype(float)
        normal = synthetic_render.render(dict(recipe, label="Normal")).astype(float)
        diffs.append(gaussian_filter(with_sign - normal, 3))
    return np.mean(diffs, axis=0)


def test_each_finding_has_its_sign_where_radiologists_look():
    h = w = 128
    lower, upper = slice(h // 2, h), slice(0, h // 2)
    left, right = slice(0, w // 2), slice(w // 2, w)
    covid = _sign("COVID-19")
    assert covid[lower].mean() > covid[upper].mean() + 1  # lower zones
    assert covid[lower, left].mean() > 1 and covid[lower, right].mean() > 1  # bilateral
    edema = _sign("Edema")
    centre = edema[h // 3:2 * h // 3, w // 4:3 * w // 4].mean()
    assert centre > 2 and centre > edema[:, :w // 8].mean() + 2  # perihilar, not peripheral
    emphysema = _sign("Emphysema")
    assert emphysema[h // 4:3 * h // 4, w // 8:7 * w // 8].mean() < -1  # hyperlucent lungs
    fibrosis = _sign("Fibrosis")
    assert fibrosis[lower].mean() > fibrosis[upper].mean() + 0.5
    effusion = _sign("Effusion")
    assert effusion[lower].mean() > effusion[upper].mean() + 2  # basal fluid


def test_pneumonia_is_one_sided_and_effusion_usually_is():
    pneumonia = [synthetic_render.render(dict(seed=s, patient_seed=9, label=l,
                                              collection="synthetic-external", sex="M",
                                              native_size=96, fault="", sign=1.0))
                 .astype(float) for s in range(6) for l in ("Pneumonia", "Normal")]
    asym = []
    for k in range(0, len(pneumonia), 2):
        d = gaussian_filter(pneumonia[k] - pneumonia[k + 1], 3)
        w = d.shape[1]
        lo, hi = sorted([d[:, :w // 2].mean(), d[:, w // 2:].mean()])
        asym.append(hi - lo)
    assert np.mean(asym) > 3


def _frame_ring(recipe) -> np.ndarray:
    """The outer 8 px of the 48 px curated image: markers, captions, frame; no lung."""
    image = letterbox(synthetic_render.render(recipe), 48).astype(float) / 255
    ring = np.ones(image.shape, bool)
    ring[8:-8, 8:-8] = False
    return image[ring]


def test_the_shortcut_is_built_in_and_absent_from_the_external_style():
    """The collection (and so the class group) can be read off the frame alone."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    paper = synthetic.make_synthetic(per_class=8, seed=3, native_size=96, fault_fraction=0)
    x = np.stack([_frame_ring(r) for r in paper["recipe"]])
    score = cross_val_score(LogisticRegression(max_iter=3000), x, paper["source"], cv=4).mean()
    assert score > 0.85  # chance is about 1/3
    external = synthetic.make_synthetic(per_class=4, seed=3, native_size=96,
                                        collection_style="external", fault_fraction=0)
    assert set(external["source"]) == {synthetic.EXTERNAL}
    assert external["image_id"].str.startswith("synthetic-ext-").all()


def test_signs_are_learnable_but_not_trivially():
    """Within the hospital collection (no shortcut between its classes) a linear model on
    24 px images beats chance clearly without being perfect."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    t = synthetic.make_synthetic(per_class=40, seed=11, native_size=64, fault_fraction=0,
                                 classes=("Edema", "Effusion", "Emphysema", "Fibrosis"), extras=())
    x = np.stack([letterbox(synthetic_render.render(r), 24).ravel() / 255 for r in t["recipe"]])
    scores = cross_val_score(LogisticRegression(max_iter=2000, C=0.1), x, t["label"],
                             groups=t["patient_id"], cv=GroupKFold(4))
    assert 0.4 < scores.mean() < 0.99  # chance is 0.25


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="collection_style"):
        synthetic.make_synthetic(per_class=2, collection_style="kaggle")
    with pytest.raises(ValueError, match="unknown class"):
        synthetic.make_synthetic(per_class=2, classes=("Asthma",))
