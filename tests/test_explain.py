"""Grad-CAM and the randomisation check, on every installed backend (TensorFlow and JAX).

The backend is fixed when Keras is imported, so the backend-specific parts run in one
subprocess per backend, on the same saved weights; the comparisons happen here.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrlib.analysis import explain

REPO = Path(__file__).resolve().parent.parent
BACKENDS = [b for b in ("tensorflow", "jax") if importlib.util.find_spec(b)]

# Builds a small from-scratch model (or loads the weights the first backend saved), then
# writes: a gradient checked against finite differences, Grad-CAM maps of two layers, the
# cascading randomisation table, and predictions before and after the check.
SCRIPT = r"""
import json, sys
import numpy as np, keras
from cxrlib.analysis import explain
from cxrlib.experiment.model import build_model, load_weights_compact, save_weights_compact
weights, out, save = sys.argv[1], sys.argv[2], sys.argv[3] == "save"
keras.utils.set_random_seed(3)
model = build_model("from_scratch", 64, 3, weights=None, seed=3)
if save:
    # Move the BatchNorm statistics off their start values, so activations are not tiny.
    x = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 1)).astype("float32")
    for _ in range(5):
        model(x, training=True)
    save_weights_compact(model, weights)
else:
    load_weights_compact(model, weights)
images = np.random.default_rng(1).integers(0, 256, (4, 64, 64)).astype("uint8")
images[:, 20:40, 10:30] = 250  # structure the maps can follow

# gradient() against central finite differences of a smooth function of a small tensor
v = np.random.default_rng(2).normal(size=(2, 3)).astype("float32")
fn = lambda t: keras.ops.sum(keras.ops.sin(t) * t)
g = keras.ops.convert_to_numpy(explain.gradient(fn, keras.ops.convert_to_tensor(v)))
eps, numeric = 1e-2, np.zeros_like(v)
for i in np.ndindex(v.shape):
    d = np.zeros_like(v); d[i] = eps
    numeric[i] = (float(fn(keras.ops.convert_to_tensor(v + d)))
                  - float(fn(keras.ops.convert_to_tensor(v - d)))) / (2 * eps)

before = model.predict(images[..., None], verbose=0)
maps = explain.gradcam(model, images, [0, 1, 2, 0])
coarse = explain.gradcam(model, images, [0, 1, 2, 0], layer="block_12_add")
check = explain.cascading_randomisation(model, images, [0, 1, 2, 0], seed=5)
after = model.predict(images[..., None], verbose=0)
np.savez(out, gradient=g, numeric=numeric, maps=maps, coarse=coarse, before=before,
         after=after, layer=explain.gradcam_layer(model))
check.to_csv(out + ".csv", index=False)
"""


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    weights = folder / "model.npz"
    found = {}
    for k, backend in enumerate(BACKENDS):
        out = str(folder / backend)
        env = dict(os.environ, KERAS_BACKEND=backend,
                   TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(weights), out,
                               "save" if k == 0 else "load"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        found[backend] = (dict(np.load(out + ".npz")), pd.read_csv(out + ".csv"))
    return found


def test_tensorflow_and_jax_are_both_tested():
    assert BACKENDS == ["tensorflow", "jax"], BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_backend_gradient_matches_finite_differences(outputs, backend):
    result, _ = outputs[backend]
    np.testing.assert_allclose(result["gradient"], result["numeric"], rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcam_maps_have_the_layers_shape_and_a_peak_of_one(outputs, backend):
    result, _ = outputs[backend]
    assert str(result["layer"]) == "block_5_add", "at 64 px a stride-32 map is only 2x2"
    maps, coarse = result["maps"], result["coarse"]
    assert maps.shape == (4, 8, 8) and coarse.shape == (4, 4, 4)
    peaks = maps.max(axis=(1, 2))
    assert maps.min() >= 0 and np.all(np.isclose(peaks, 1.0) | (peaks == 0))
    assert np.isclose(peaks, 1.0).sum() >= 2, "a map is blank only if no cell is positive"
    assert not np.allclose(maps[0], maps[1]), "different images and classes, different maps"


def test_both_backends_give_the_same_maps_from_the_same_weights(outputs):
    reference = outputs[BACKENDS[0]][0]
    for backend in BACKENDS[1:]:
        other = outputs[backend][0]
        np.testing.assert_allclose(other["before"], reference["before"], atol=1e-4)
        np.testing.assert_allclose(other["maps"], reference["maps"], atol=1e-2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_randomisation_changes_the_maps_and_restores_the_model(outputs, backend):
    result, check = outputs[backend]
    np.testing.assert_allclose(result["after"], result["before"], atol=1e-6)
    steps = list(dict.fromkeys(check["step"]))
    assert steps[:2] == ["logits", "head"] and steps[-1] == "everything"
    assert (check.groupby("step", sort=False)["layers"].first().diff().dropna() > 0).all()
    assert len(check) == 4 * len(steps)
    everything = check[check["step"] == "everything"]
    assert everything["spearman"].mean() < 0.9, "a fully random network gives other maps"
    assert check["ssim"].between(-1, 1).all()


def test_similarity_measures_on_known_maps():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert explain.rank_correlation(a, a) == pytest.approx(1.0)
    assert explain.rank_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(explain.rank_correlation(a, np.zeros_like(a)))
    assert explain.ssim(a, a) == pytest.approx(1.0)
    assert explain.ssim(a, rng.random((16, 16))) < 0.5


def test_saliency_shares_follow_where_the_map_is():
    image = np.zeros((64, 64), np.uint8)
    image[:, 8:56] = 120  # content between two padding strips
    from cxrlib.data import regions

    lungs = regions.lung_fields(image)
    on_lungs = lungs.astype(np.float32)
    on_corner = np.zeros((64, 64), np.float32)
    on_corner[:4, 8:12] = 1.0
    table = explain.saliency_table(np.stack([image, image]), np.stack([on_lungs, on_corner]))
    assert table.loc[0, "share_lung_fields"] > 0.95
    assert table.loc[1, "share_border_band"] == pytest.approx(1.0)
    assert table.loc[0, "area_lung_fields"] == pytest.approx(lungs.mean())
    shares = table.filter(like="share_").sum(axis=1)
    np.testing.assert_allclose(shares, 1.0)


def test_a_fold_without_kept_weights_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRLIB_RUNS", str(tmp_path / "runs"))
    with pytest.raises(FileNotFoundError, match="--save-weights-folds 0"):
        explain.fold_model(tmp_path / "results" / "demo", "from_scratch", 0)
