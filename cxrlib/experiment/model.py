"""MobileNetV2 with the paper's head, for its three strategies.

The paper (Apostolopoulos et al. 2020, sections 2.2-2.4) uses MobileNetV2 three ways: as a
fixed ImageNet feature extractor ("off the shelf"), with its top blocks re-trained
("fine-tuning", 1 to 11 "convolutional blocks"), and trained from random weights ("from
scratch"). On top sits the same small head each time: global average pooling, a dense layer of
2,500 units, batch normalisation, dropout of 0.5 and a softmax over the classes. The paper does
not name the dense layer's activation; we use ReLU.

**What a "block" is.** Keras' MobileNetV2 is, bottom to top: the stem (``Conv1``, ``bn_Conv1``,
``Conv1_relu``); 17 inverted-residual blocks, the first one un-numbered (layers
``expanded_conv_*``), then ``block_1_*`` ... ``block_16_*``; and the final 1x1 convolution
(``Conv_1``, ``Conv_1_bn``, ``out_relu``). We count the 17 inverted-residual blocks and the
final 1x1 convolution as 18 blocks; fine-tuning ``n`` blocks makes the top ``n`` of them
trainable, BatchNormalization layers included, and freezes everything below (the stem is always
frozen when fine-tuning). So ``fine_tune(1)`` re-trains the final 1x1 convolution only,
``fine_tune(3)`` adds ``block_16`` and ``block_15``, and ``fine_tune(11)`` re-trains ``Conv_1``
and ``block_16`` down to ``block_7``. Frozen BatchNormalization layers run in inference mode
(Keras 3 semantics for ``trainable=False``), so their ImageNet statistics stay as they are.
Trainable ones update their moving statistics with the profile's ``batchnorm_momentum`` (0.9;
MobileNetV2's own 0.999 suits long ImageNet training, not a few hundred steps).

**Inputs.** The model takes 8-bit grayscale images, shape ``(S, S, 1)``, values 0-255 (uint8
arrays are cast inside the compiled step). Augmentation (rotation up to +/-10 degrees, shifts up
to +/-20 px at 200 px, scaled with the image size) is made of layers that act only in training;
the images are then scaled to [-1, 1], as MobileNetV2's ImageNet weights expect, and repeated to
three channels.
"""
from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

from cxrlib.core.profiles import Profile, parse_config

STRATEGIES = ("off_the_shelf", "fine_tune", "from_scratch")
N_BLOCKS = 18
STEM_LAYERS = ("Conv1", "bn_Conv1", "Conv1_relu")
HEAD_UNITS = 2500

#: Keras' "no top" ImageNet file for alpha 1.0. We always use the 224-px weights (those Keras
#: picks for the paper's 200 px), so every image size starts from the same ImageNet weights.
IMAGENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
IMAGENET_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
                + IMAGENET_FILE)


def scaled_shift(image_size: int, at_200: float = Profile.shift_pixels_at_200) -> float:
    """The largest augmentation shift at ``image_size``: the paper's shift of up to ``at_200`` px
    at its 200 px (the profiles' default, 20 px), scaled with the image size."""
    return at_200 * image_size / 200


def model_arguments(profile: Profile, config: str, fold: int,
                    weights: str | Path | None = "imagenet") -> dict:
    """:func:`build_model`'s arguments (all but ``n_classes``) for ``config`` of ``profile``
    trained in ``fold``: the one mapping from a profile and a configuration to the network,
    used to train it (:mod:`cxrlib.experiment.cv`) and to rebuild it (:mod:`cxrlib.analysis.explain`). ``weights``
    applies to the ImageNet strategies; from scratch always starts from random weights."""
    strategy, trainable_blocks = parse_config(config)
    return {"strategy": strategy, "image_size": profile.image_size,
            "trainable_blocks": trainable_blocks,
            "weights": None if strategy == "from_scratch" else weights,
            "rotation_degrees": profile.rotation_degrees,
            "shift_pixels": scaled_shift(profile.image_size, profile.shift_pixels_at_200),
            "seed": profile.seed + fold, "batchnorm_momentum": profile.batchnorm_momentum}


@keras.saving.register_keras_serializable(package="cxrlib")
class RandomRotateShift(keras.layers.Layer):
    """Rotate each image by up to +/-``degrees`` and shift it by up to +/-``shift_pixels`` in
    each direction (uniform draws, one per image), in training only; identity otherwise.

    Keras' RandomRotation and RandomTranslation do the same, but they declare themselves unfit
    for compilation, so a model holding them trains uncompiled on JAX (op by op: very slow on
    a GPU). This is the same transformation written with ``keras.ops``, in one resampling.
    Pixels moved in from outside are 0: black, like the letterbox borders of the curated images
    (the layer works on the raw 0-255 values, in float32).
    """

    def __init__(self, degrees: float, shift_pixels: float, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.degrees, self.shift_pixels, self.seed = float(degrees), float(shift_pixels), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        ops = keras.ops
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        uniform = lambda limit: keras.random.uniform(  # noqa: E731
            (batch,), -limit, limit, seed=self.seed_generator)
        angle = uniform(self.degrees * 3.141592653589793 / 180)
        dx, dy = uniform(self.shift_pixels), uniform(self.shift_pixels)
        # affine_transform maps each output pixel (x, y) to the input point it samples:
        # input = R(angle) (output - centre) + centre - shift.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        cos, sin = ops.cos(angle), ops.sin(angle)
        zero = ops.zeros_like(angle)
        transform = ops.stack([cos, -sin, cx - cos * cx + sin * cy - dx,
                               sin, cos, cy - sin * cx - cos * cy - dy, zero, zero], axis=1)
        return ops.image.affine_transform(images, transform, interpolation="bilinear",
                                          fill_mode="constant", fill_value=0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "degrees": self.degrees,
                "shift_pixels": self.shift_pixels, "seed": self.seed}


def backbone_blocks(model: keras.Model) -> list[list[str]]:
    """The 18 blocks of a MobileNetV2 (standalone, or inside our model), bottom to top.

    Each block is the list of its layer names: the 17 inverted-residual blocks
    (``expanded_conv_*``, ``block_1_*`` ... ``block_16_*``) and then the final 1x1 convolution
    (``Conv_1``, ``Conv_1_bn``, ``out_relu``). The stem (``Conv1`` ...) is in none of them.
    """
    names = [layer.name for layer in model.layers]
    prefixes = ["expanded_conv_"] + [f"block_{i}_" for i in range(1, 17)]
    blocks = [[n for n in names if n.startswith(p)] for p in prefixes]
    blocks.append([n for n in names if n in ("Conv_1", "Conv_1_bn", "out_relu")])
    if any(not b for b in blocks):
        raise ValueError(f"{model.name} is not a Keras MobileNetV2: a block has no layers")
    return blocks


def backbone_layer_names(model: keras.Model) -> list[str]:
    """Every MobileNetV2 layer of ``model``: the stem and the 18 blocks."""
    return list(STEM_LAYERS) + [n for block in backbone_blocks(model) for n in block]


def set_trainable_blocks(model: keras.Model, strategy: str, trainable_blocks: int = 0) -> None:
    """Freeze the backbone as the strategy says; the head always trains."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; strategies are {STRATEGIES}")
    if not 0 <= trainable_blocks <= N_BLOCKS:
        raise ValueError(f"trainable_blocks must be 0..{N_BLOCKS}, got {trainable_blocks}")
    blocks = backbone_blocks(model)
    if strategy == "from_scratch":
        trainable = set(backbone_layer_names(model))
    elif strategy == "off_the_shelf":
        trainable = set()
    else:
        trainable = {n for block in blocks[N_BLOCKS - trainable_blocks:] for n in block}
    for name in backbone_layer_names(model):
        model.get_layer(name).trainable = name in trainable


def imagenet_weights_file() -> Path:
    """The ImageNet file, through Keras' cache (``$KERAS_HOME/models``; downloads if online)."""
    try:
        return Path(keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_subdir="models",
                                         cache_dir=os.environ.get("KERAS_HOME")))
    except Exception as error:  # Keras raises a bare Exception for a failed download
        home = os.environ.get("KERAS_HOME") or "~/.keras"
        raise FileNotFoundError(
            f"MobileNetV2's ImageNet weights are not available offline and could not be "
            f"downloaded ({error}). Put the file {IMAGENET_FILE} into {home}/models/ (a "
            f"connected machine downloads it there by itself; on this project's machines it "
            f"is in ../shared/weights), or pass weights=<path to a weights file>.") from error


def load_backbone_weights(model: keras.Model, weights: str | Path, image_size: int) -> None:
    """Load MobileNetV2 weights ("imagenet" or a file a standalone MobileNetV2 saved)."""
    path = imagenet_weights_file() if weights == "imagenet" else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist: pass weights='imagenet' "
                                f"or the path of a MobileNetV2 (include_top=False) weights file")
    # Weight files are written for a standalone MobileNetV2; ours has other layers around it,
    # so load into a standalone one and copy layer by layer, by name.
    standalone = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    standalone.load_weights(str(path))
    for name in backbone_layer_names(standalone):
        model.get_layer(name).set_weights(standalone.get_layer(name).get_weights())


def paper_head(features, n_classes: int, seed: int = 2020):
    """The paper's classifier on MobileNetV2's feature maps (ReLU: our choice, see above)."""
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    x = keras.layers.Dense(HEAD_UNITS, activation="relu", name="head_dense")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Dropout(0.5, seed=seed + 2, name="head_dropout")(x)
    # float32 softmax: stable probabilities under a mixed-precision policy.
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32",
                              name="predictions")(x)


def build_model(strategy: str, image_size: int, n_classes: int, trainable_blocks: int = 0,
                weights: str | Path | None = "default", rotation_degrees: float = 10.0,
                shift_pixels: float | None = None, seed: int = 2020,
                batchnorm_momentum: float | None = None) -> keras.Model:
    """MobileNetV2 + the paper's head for ``strategy`` (see the module docstring).

    ``weights``: "default" (ImageNet unless from scratch), None (random), "imagenet" or the path
    of a weights file. ``shift_pixels`` defaults to 20 px at 200 px, scaled with ``image_size``
    (:func:`scaled_shift`); :func:`model_arguments` gives all of them for a profile's run.
    ``batchnorm_momentum``: if given, the momentum of every BatchNormalization layer's moving
    statistics (MobileNetV2's own is 0.999, the head's Keras' default 0.99).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; strategies are {STRATEGIES}")
    if weights == "default":
        weights = None if strategy == "from_scratch" else "imagenet"
    if strategy == "from_scratch" and weights is not None:
        raise ValueError("from_scratch starts from random weights: pass weights=None")
    if strategy != "fine_tune" and trainable_blocks:
        raise ValueError(f"{strategy} takes no trainable_blocks (got {trainable_blocks})")
    if shift_pixels is None:
        shift_pixels = scaled_shift(image_size)
    size = image_size

    inputs = keras.Input((size, size, 1), name="image")
    x = RandomRotateShift(rotation_degrees, shift_pixels, seed=seed, name="augment")(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_to_unit_range")(x)
    x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_tensor=x)

    outputs = paper_head(backbone.output, n_classes, seed)
    model = keras.Model(inputs, outputs, name=f"mobilenetv2_{strategy}")

    if batchnorm_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = batchnorm_momentum
    if weights is not None:
        load_backbone_weights(model, weights, size)
    set_trainable_blocks(model, strategy, trainable_blocks)
    return model


def save_weights_compact(model: keras.Model, path: str | Path) -> Path:
    """All weights of ``model`` as float16 arrays in one ``.npz`` (half the size of float32).

    For explanation (Grad-CAM) after a run, not for further training: a MobileNetV2 with the
    paper's head holds about 5.6 million numbers, 11 MB this way, small enough to travel back
    from a GPU machine. Rebuild the same architecture with :func:`build_model` and call
    :func:`load_weights_compact`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = [w.astype(np.float16) if w.dtype.kind == "f" else w for w in model.get_weights()]
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, *arrays)
    os.replace(tmp, path)
    return path


def load_weights_compact(model: keras.Model, path: str | Path) -> keras.Model:
    """Load weights written by :func:`save_weights_compact` into the same architecture."""
    with np.load(path) as stored:
        arrays = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    expected = [w.shape for w in model.get_weights()]
    mismatch = [(i, a.shape, e) for i, (a, e) in enumerate(zip(arrays, expected)) if a.shape != e]
    if len(arrays) != len(expected) or mismatch:
        detail = (f"{len(arrays)} arrays stored, {len(expected)} in the model"
                  if len(arrays) != len(expected) else
                  f"array {mismatch[0][0]} has shape {mismatch[0][1]}, the model {mismatch[0][2]}")
        raise ValueError(f"{path} does not fit this model ({detail}): rebuild it with the "
                         f"run's strategy, image size and number of classes")
    model.set_weights([a.astype("float32") if a.dtype.kind == "f" else a for a in arrays])
    return model
