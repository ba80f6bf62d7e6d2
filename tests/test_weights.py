"""Compact weights kept for Grad-CAM: a trained fold's model comes back exactly (to float16)."""
import numpy as np
import pytest

from cxrlib.experiment.model import build_model, load_weights_compact, save_weights_compact


def test_compact_weights_round_trip_and_refuse_another_architecture(tmp_path):
    model = build_model("from_scratch", 32, 4, weights=None, seed=1)
    path = save_weights_compact(model, tmp_path / "w" / "from_scratch-fold-00.npz")
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1)).astype("float32")
    expected = model.predict(images, verbose=0)

    again = build_model("from_scratch", 32, 4, weights=None, seed=2)
    kernel = again.get_layer("head_dense").get_weights()[0]
    assert not np.allclose(kernel, model.get_layer("head_dense").get_weights()[0], atol=1e-3)
    load_weights_compact(again, path)
    for stored, original in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_allclose(stored, original, rtol=1e-3, atol=1e-4)  # float16 precision
    np.testing.assert_allclose(again.predict(images, verbose=0), expected, atol=1e-3)

    with pytest.raises(ValueError, match="does not fit this model.*number of classes"):
        load_weights_compact(build_model("from_scratch", 32, 7, weights=None), path)
