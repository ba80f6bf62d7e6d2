"""The model: block definition and trainability for every n, inputs, augmentation, head, weights."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from cxrlib.experiment import model as M

# The blocks written out by hand, bottom to top (independent of cxrlib.experiment.model's own listing).
BLOCK_PREFIXES = ["expanded_conv_"] + [f"block_{i}_" for i in range(1, 17)] + ["Conv_1"]
TOP_LAYERS = {"Conv_1", "Conv_1_bn", "out_relu"}
HEAD_WITH_WEIGHTS = {"head_dense", "head_bn", "predictions"}


def in_top_blocks(name: str, n: int) -> bool:
    """Is layer ``name`` in the top ``n`` blocks?"""
    chosen = BLOCK_PREFIXES[len(BLOCK_PREFIXES) - n:] if n else []
    if name in TOP_LAYERS:
        return "Conv_1" in chosen
    return any(name.startswith(p) for p in chosen if p != "Conv_1")


@pytest.fixture(scope="module")
def fine_tune_model():
    keras.utils.clear_session()
    return M.build_model("fine_tune", 32, 7, trainable_blocks=1, weights=None)


def weighted_layers(model):
    return [layer for layer in model.layers if layer.weights]


def test_blocks_are_the_18_documented_ones(fine_tune_model):
    blocks = M.backbone_blocks(fine_tune_model)
    assert len(blocks) == M.N_BLOCKS == 18
    assert blocks[0] == ["expanded_conv_depthwise", "expanded_conv_depthwise_BN",
                         "expanded_conv_depthwise_relu", "expanded_conv_project",
                         "expanded_conv_project_BN"]
    assert blocks[-1] == ["Conv_1", "Conv_1_bn", "out_relu"]
    assert blocks[-2][0] == "block_16_expand" and blocks[1][0] == "block_1_expand"
    listed = {name for block in blocks for name in block}
    backbone = {layer.name for layer in fine_tune_model.layers} - {
        "image", "augment", "scale_to_unit_range", "gray_to_rgb", "head_pool", "head_dense",
        "head_bn", "head_dropout", "predictions"}
    # Every backbone layer is in exactly one block, except the stem.
    assert backbone - listed == set(M.STEM_LAYERS)
    assert sum(len(b) for b in blocks) == len(listed)


@pytest.mark.parametrize("n", [0, 1, 3, 5, 7, 9, 11, 18])
def test_fine_tune_n_trains_exactly_the_top_n_blocks(fine_tune_model, n):
    M.set_trainable_blocks(fine_tune_model, "fine_tune", n)
    for layer in weighted_layers(fine_tune_model):
        expected = layer.name in HEAD_WITH_WEIGHTS or in_top_blocks(layer.name, n)
        assert layer.trainable == expected, (n, layer.name)
    # Count: 3 convolutions and 3 BatchNorms (gamma, beta) per numbered block, 2 + 2 in the
    # first block, 1 + 1 in the final 1x1 convolution, 6 variables in the head.
    per_block = [6] + [9] * 16 + [3]
    expected_variables = 6 + sum(per_block[len(per_block) - n:]) if n else 6
    assert len(fine_tune_model.trainable_weights) == expected_variables
    if n >= 3:
        assert fine_tune_model.get_layer("block_15_project_BN").trainable
    if 1 <= n < 18:
        below = BLOCK_PREFIXES[len(BLOCK_PREFIXES) - n - 1]
        assert not fine_tune_model.get_layer(f"{below}project_BN").trainable


def test_fine_tune_11_is_conv1_and_blocks_16_to_7(fine_tune_model):
    M.set_trainable_blocks(fine_tune_model, "fine_tune", 11)
    trainable = {layer.name.split("_")[1] for layer in weighted_layers(fine_tune_model)
                 if layer.trainable and layer.name.startswith("block_")}
    assert trainable == {str(i) for i in range(7, 17)}
    assert fine_tune_model.get_layer("Conv_1").trainable
    assert not fine_tune_model.get_layer("block_6_expand").trainable


@pytest.mark.parametrize("strategy, frozen_backbone", [("off_the_shelf", True),
                                                       ("from_scratch", False)])
def test_off_the_shelf_freezes_and_from_scratch_trains_everything(strategy, frozen_backbone):
    model = M.build_model(strategy, 32, 4, weights=None)
    for layer in weighted_layers(model):
        head = layer.name in HEAD_WITH_WEIGHTS
        assert layer.trainable == (head or not frozen_backbone), layer.name
    assert model.output.shape == (None, 4)


def test_frozen_batchnorm_keeps_its_statistics_and_trainable_one_updates():
    keras.utils.set_random_seed(0)
    model = M.build_model("fine_tune", 32, 3, trainable_blocks=1, weights=None)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    frozen = model.get_layer("block_16_project_BN")
    trained = model.get_layer("Conv_1_bn")
    numpy = keras.ops.convert_to_numpy
    before = [numpy(frozen.moving_mean), numpy(trained.moving_mean),
              numpy(model.get_layer("Conv1").kernel), numpy(trained.beta)]
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 1)).astype("uint8")
    model.fit(x, np.arange(16) % 3, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(before[0], numpy(frozen.moving_mean))
    np.testing.assert_array_equal(before[2], numpy(model.get_layer("Conv1").kernel))
    # BatchNorm's momentum is 0.999: the trainable layer's statistics move, but only a little.
    assert not np.array_equal(before[1], numpy(trained.moving_mean))
    assert not np.array_equal(before[3], numpy(trained.beta))


def test_input_is_scaled_to_minus_one_one_and_repeated_to_three_channels(fine_tune_model):
    front = keras.Model(fine_tune_model.input, fine_tune_model.get_layer("gray_to_rgb").output)
    x = np.zeros((2, 32, 32, 1), "uint8")
    x[1] = 255
    out = np.asarray(front(x, training=False))
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(out[0], -1.0)
    np.testing.assert_allclose(out[1], 1.0, atol=1e-6)
    mid = np.asarray(front(np.full((1, 32, 32, 1), 127.5, "float32")))
    np.testing.assert_allclose(mid, 0.0, atol=1e-6)


def dot_image(size: int) -> np.ndarray:
    image = np.zeros((size, size, 1), "float32")
    image[size // 2, size // 2] = 255.0  # at the centre: rotation does not move it
    image[size // 2, size - 1 - size // 8] = 255.0  # off centre: rotation moves it
    return image


def bright_spots(image: np.ndarray) -> np.ndarray:
    return np.argwhere(image[..., 0] > 40)


def test_augmentation_acts_only_in_training_and_within_its_limits():
    size = 64
    layer = M.RandomRotateShift(degrees=10, shift_pixels=20 * size / 200, seed=3)
    batch = np.stack([dot_image(size)] * 64)
    np.testing.assert_array_equal(np.asarray(layer(batch, training=False)), batch)
    moved = np.asarray(layer(batch, training=True))
    assert not np.allclose(moved, batch)
    shifts, angles = [], []
    for image in moved:
        spots = bright_spots(image)
        assert len(spots), "a dot left the image: shift or rotation too large"
        centre = (size - 1) / 2
        # The centre dot only shifts: at most 6.4 px per axis (+1 for interpolation).
        near_centre = spots[np.abs(spots - centre).max(1) <= 8].mean(0)
        shift = near_centre - np.array([size // 2, size // 2])
        assert np.all(np.abs(shift) <= 20 * size / 200 + 1.0)
        shifts.append(shift)
        far = spots[spots[:, 1] > centre + 14].mean(0) - shift - centre
        reference = np.array([size // 2, size - 1 - size // 8]) - centre
        angle = np.degrees(np.arctan2(far[0], far[1]) - np.arctan2(reference[0], reference[1]))
        assert abs(angle) <= 10 + 3.0
        angles.append(angle)
    # The draws spread over the allowed range (not stuck at one value).
    assert np.ptp(np.array(shifts)[:, 0]) > 6 and np.ptp(np.array(shifts)[:, 1]) > 6
    assert np.ptp(angles) > 10


def test_shift_scales_with_image_size():
    assert M.build_model("from_scratch", 40, 2).get_layer("augment").shift_pixels == 4.0
    assert M.build_model("from_scratch", 32, 2, shift_pixels=3).get_layer(
        "augment").shift_pixels == 3.0


def test_head_is_the_papers():
    model = M.build_model("off_the_shelf", 32, 7, weights=None)
    names = [layer.name for layer in model.layers[-5:]]
    assert names == ["head_pool", "head_dense", "head_bn", "head_dropout", "predictions"]
    assert isinstance(model.get_layer("head_pool"), keras.layers.GlobalAveragePooling2D)
    dense = model.get_layer("head_dense")
    assert dense.units == 2500 and dense.activation.__name__ == "relu"
    assert isinstance(model.get_layer("head_bn"), keras.layers.BatchNormalization)
    assert model.get_layer("head_dropout").rate == 0.5
    assert model.get_layer("predictions").activation.__name__ == "softmax"
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 1)).astype("uint8")
    np.testing.assert_allclose(np.asarray(model(x)).sum(1), 1.0, rtol=1e-5)


def test_softmax_stays_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = M.build_model("from_scratch", 32, 3)
        assert model.get_layer("head_dense").compute_dtype == "bfloat16"
        assert model.get_layer("augment").compute_dtype == "float32"
        out = model(np.zeros((1, 32, 32, 1), "uint8"))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


def backbone_arrays(model, name="block_8_project"):
    return model.get_layer(name).get_weights()


def test_imagenet_weights_come_from_the_keras_cache(standin_keras_home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(standin_keras_home))
    model = M.build_model("off_the_shelf", 48, 7)  # any size takes the same 224-px file
    reference = keras.applications.MobileNetV2(include_top=False, weights=None,
                                               input_shape=(32, 32, 3))
    reference.load_weights(str(standin_keras_home / "models" / M.IMAGENET_FILE))
    for name in ("Conv1", "block_8_project", "Conv_1_bn"):
        for got, want in zip(backbone_arrays(model, name), backbone_arrays(reference, name)):
            np.testing.assert_array_equal(got, want)


def test_weights_from_an_explicit_file(tmp_path):
    keras.utils.set_random_seed(5)
    source = keras.applications.MobileNetV2(include_top=False, weights=None,
                                            input_shape=(32, 32, 3))
    path = tmp_path / "mine.weights.h5"
    source.save_weights(str(path))
    model = M.build_model("fine_tune", 32, 7, trainable_blocks=3, weights=path)
    for got, want in zip(backbone_arrays(model), backbone_arrays(source)):
        np.testing.assert_array_equal(got, want)
    assert model.get_layer("block_16_expand").trainable


def test_missing_weights_offline_say_where_to_put_which_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    # Port 9 (discard) refuses at once: behaves as an offline machine, even with a network.
    monkeypatch.setattr(M, "IMAGENET_URL", "http://127.0.0.1:9/" + M.IMAGENET_FILE)
    with pytest.raises(FileNotFoundError) as error:
        M.build_model("off_the_shelf", 32, 7)
    message = str(error.value)
    assert M.IMAGENET_FILE in message and str(tmp_path / "models") in message
    assert "download" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        M.build_model("off_the_shelf", 32, 7, weights=tmp_path / "nothing.h5")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown strategy"):
        M.build_model("fine_tuning", 32, 7)
    with pytest.raises(ValueError, match="random weights"):
        M.build_model("from_scratch", 32, 7, weights="imagenet")
    with pytest.raises(ValueError, match="trainable_blocks"):
        M.build_model("fine_tune", 32, 7, trainable_blocks=19, weights=None)


def test_batchnorm_momentum_is_set_on_every_batchnorm_layer():
    def momenta(model):
        return {layer.momentum for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)}

    assert momenta(M.build_model("from_scratch", 32, 3)) == {0.999, 0.99}  # Keras' own
    assert momenta(M.build_model("from_scratch", 32, 3, batchnorm_momentum=0.9)) == {0.9}
