"""Where a trained fold's network looks: Grad-CAM maps, and the check that they mean anything.

**Grad-CAM** (Selvaraju et al. 2017, written after the keras-io example): for an image and a
class, take the feature maps ``A`` of one convolutional layer and the gradient of the class's
logit (the score before the softmax) with respect to them; each channel's weight is its mean
gradient, and the map is ``ReLU(sum_k weight_k * A_k)``, scaled so its largest cell is 1. The
layer is the highest of MobileNetV2's stride-32, -16 and -8 outputs (``out_relu``,
``block_12_add``, ``block_5_add``) whose map is at least :data:`MIN_CELLS` cells across: at the
paper's 200 px that is ``out_relu`` (7 x 7); at the 64 px of the demonstration a stride-32 map
would be 2 x 2, so ``block_5_add`` (8 x 8) is used.

**The randomisation check** (Adebayo et al. 2018, "Sanity checks for saliency maps"): the
weights are re-initialised from the top of the network down, a few layers more at each step
(cascading randomisation), and each step's maps are compared with the trained network's by
Spearman rank correlation and SSIM. A map that barely changes when the weights that produced
the answer are destroyed shows the image, not the model: it is no evidence of what the model
used. Randomised layers get values drawn from their own initialisers, as before training.

Keras 3 has no backend-neutral gradient, so the one backend-specific step is
:func:`gradient` (TensorFlow's GradientTape or ``jax.grad``); everything else is ``keras.ops``.

The trained models are those the cross-validation kept (``python -m cxrlib run
--save-weights-folds 0``: :func:`cxrlib.experiment.cv.weights_path`), rebuilt by :func:`fold_model`.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

from cxrlib.data import regions
from cxrlib.experiment import results
from cxrlib.experiment.cv import weights_path
from cxrlib.experiment.runs import fold_classes

#: Candidate layers for Grad-CAM, top first (output strides 32, 16 and 8).
GRADCAM_LAYERS: tuple[str, ...] = ("out_relu", "block_12_add", "block_5_add")
MIN_CELLS = 7
#: The layer just before the softmax layer: the logits are its output times the last kernel.
PENULTIMATE = "head_dropout"
LOGITS_LAYER = "predictions"
HEAD_LAYERS: tuple[str, ...] = ("predictions", "head_bn", "head_dense")
#: How many of the top backbone blocks (of 18) each cascading step has randomised, after the
#: head; the last step randomises the stem too (everything).
CASCADE_BLOCKS: tuple[int, ...] = (1, 3, 6, 10, 18)
#: Variables and the attribute naming their layer's initialiser (a depthwise convolution's
#: kernel is initialised by its ``depthwise_initializer``).
INITIALISERS = {"kernel": "kernel_initializer", "bias": "bias_initializer",
                "gamma": "gamma_initializer",
                "beta": "beta_initializer", "moving_mean": "moving_mean_initializer",
                "moving_variance": "moving_variance_initializer"}


# --------------------------------------------------------------------------------------------
# The trained model of a fold


def weights_file(run_path: str | Path, config: str, fold: int) -> Path:
    return weights_path(Path(run_path).name, config, fold)


def saved_folds(run_path: str | Path, config: str) -> list[int]:
    """Folds of ``config`` whose trained weights were kept (and whose results are stored)."""
    return [f for f in results.done_folds(Path(run_path), config)
            if weights_file(run_path, config, f).is_file()]


def fold_model(run_path: str | Path, config: str, fold: int):
    """The network of one finished fold, rebuilt and loaded from its kept weights (cached)."""
    path = weights_file(run_path, config, fold)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the fold's weights were not kept. Train it again with "
            f"`python -m cxrlib run --configs {config} --folds {fold} --save-weights-folds "
            f"{fold} --run {Path(run_path).name}` into a fresh run (finished folds are skipped)")
    return _cached_model(str(run_path), config, fold, path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _cached_model(run_path: str, config: str, fold: int, mtime: int):
    # cxrlib.experiment.model imports Keras (TensorFlow: seconds); only a rebuilt network needs it.
    from cxrlib.experiment.model import build_model, load_weights_compact, model_arguments

    profile = results.read_profile(Path(run_path))
    classes = fold_classes(run_path, config, fold)
    model = build_model(n_classes=len(classes),
                        **model_arguments(profile, config, fold, weights=None))
    return load_weights_compact(model, weights_file(run_path, config, fold))


def predict(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for uint8 images of shape (N, S, S)."""
    return np.asarray(model.predict(np.asarray(images)[..., None], batch_size=batch_size,
                                    verbose=0))


# --------------------------------------------------------------------------------------------
# Grad-CAM


def gradient(score_fn, x):
    """d score_fn(x) / dx for a scalar ``score_fn``: the one step that depends on the backend."""
    import keras  # Keras and its backend take seconds to import: only Grad-CAM needs them

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # the backend in use (one of two optional ones)

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = score_fn(x)
        return tape.gradient(score, x)
    if backend == "jax":
        import jax  # the backend in use (one of two optional ones)

        return jax.grad(score_fn)(x)
    raise NotImplementedError(f"Grad-CAM is written for the TensorFlow and JAX backends, not "
                              f"{backend!r}: set KERAS_BACKEND=tensorflow or jax")


def gradcam_layer(model) -> str:
    """The highest candidate layer whose feature map is at least MIN_CELLS cells across."""
    for name in GRADCAM_LAYERS:
        if model.get_layer(name).output.shape[1] >= MIN_CELLS:
            return name
    return GRADCAM_LAYERS[-1]


def gradcam(model, images: np.ndarray, class_indices, layer: str | None = None,
            batch_size: int = 64) -> np.ndarray:
    """Grad-CAM maps (N, h, w), each scaled to a maximum of 1 (all zeros if nothing is positive).

    ``images``: uint8 (N, S, S); ``class_indices``: the output class to explain, per image.
    """
    import keras  # Keras and its backend take seconds to import: only Grad-CAM needs them

    ops = keras.ops
    layer = layer or gradcam_layer(model)
    # Two halves of the same network: image -> feature maps -> penultimate activations.
    features = keras.Model(model.input, model.get_layer(layer).output)
    tail = keras.Model(model.get_layer(layer).output, model.get_layer(PENULTIMATE).output)
    kernel, bias = model.get_layer(LOGITS_LAYER).get_weights()
    n_classes = kernel.shape[1]
    class_indices = np.asarray(class_indices, dtype=int)
    x = np.asarray(images, dtype="float32")[..., None]
    maps = []
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        activations = features(batch, training=False)
        chosen = np.eye(n_classes, dtype="float32")[class_indices[start:start + batch_size]]

        def class_logit(a, chosen=chosen):
            logits = ops.matmul(tail(a, training=False), kernel) + bias
            return ops.sum(logits * chosen)

        grads = ops.convert_to_numpy(gradient(class_logit, activations))
        a = ops.convert_to_numpy(activations)
        weights = grads.mean(axis=(1, 2))                       # one weight per channel
        cam = np.maximum((a * weights[:, None, None, :]).sum(axis=-1), 0)
        peak = cam.max(axis=(1, 2), keepdims=True)
        maps.append(np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0))
    if not maps:
        return np.zeros((0, 1, 1), np.float32)
    return np.concatenate(maps).astype(np.float32)


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Maps (N, h, w) resized bilinearly to (N, size, size), as they lie over the image."""
    return np.stack([np.asarray(Image.fromarray(m.astype(np.float32), mode="F")
                                .resize((size, size), Image.BILINEAR)) for m in maps]) \
        if len(maps) else np.zeros((0, size, size), np.float32)


def gradcam_for_images(run_path: str | Path, config: str, fold: int, images: np.ndarray,
                       classes) -> np.ndarray:
    """Grad-CAM maps (N, h, w) in [0, 1] of a fold's network for the named class of each image.

    The contract :mod:`cxrlib.explore.gradcam` draws its overlays with; ``images`` are curated
    uint8 images (N, S, S) and ``classes`` one class name per image.
    """
    model = fold_model(run_path, config, fold)
    order = fold_classes(run_path, config, fold)
    unknown = sorted(set(classes) - set(order))
    if unknown:
        raise ValueError(f"{config} fold {fold} of {Path(run_path).name} answers with "
                         f"{list(order)}, not {unknown}")
    return gradcam(model, images, [order.index(c) for c in classes])


# --------------------------------------------------------------------------------------------
# Where the maps fall


def saliency_table(images: np.ndarray, maps: np.ndarray) -> pd.DataFrame:
    """Per image: the share of its (upsampled) map in each region of :mod:`cxrlib.data.regions`,
    and each region's share of the area (what a uniform map would give)."""
    size = images.shape[1]
    full = upsample(maps, size)
    rows = []
    for image, heat in zip(images, full):
        region = regions.region_map(image)
        shares = regions.region_shares(heat, region)
        areas = regions.region_areas(region)
        rows.append({**{f"share_{k.replace(' ', '_')}": v for k, v in shares.items()},
                     **{f"area_{k.replace(' ', '_')}": v for k, v in areas.items()}})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The randomisation check


def cascade_steps(model) -> list[tuple[str, list[str]]]:
    """(step name, layers randomised so far) from the top down: logits, head, then top blocks."""
    from cxrlib.experiment.model import (  # imports Keras (seconds), as gradcam does
        STEM_LAYERS,
        backbone_blocks,
    )

    blocks = backbone_blocks(model)
    steps = [("logits", [LOGITS_LAYER]), ("head", list(HEAD_LAYERS))]
    for k in CASCADE_BLOCKS:
        layers = list(HEAD_LAYERS) + [n for block in blocks[len(blocks) - k:] for n in block]
        if k == len(blocks):
            steps.append(("everything", layers + list(STEM_LAYERS)))
        else:
            steps.append((f"head + top {k} block{'s' if k > 1 else ''}", layers))
    return steps


def randomise_layers(model, layer_names, seed: int) -> None:
    """Give the named layers fresh values from their own initialisers (as before training)."""
    draw = 0
    for name in layer_names:
        layer = model.get_layer(name)
        for variable in layer.weights:
            attribute = INITIALISERS.get(variable.name)
            if variable.name == "kernel" and hasattr(layer, "depthwise_initializer"):
                attribute = "depthwise_initializer"
            initialiser = getattr(layer, attribute, None) if attribute else None
            if initialiser is None:
                continue
            # A seed of its own for every random draw: the same check gives the same maps.
            config = initialiser.get_config()
            if "seed" in config:
                draw += 1
                initialiser = type(initialiser).from_config({**config, "seed": seed * 1000 + draw})
            variable.assign(initialiser(variable.shape, dtype=variable.dtype))


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity of two maps in [0, 1] (Wang et al. 2004, Gaussian windows)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    mu_a, mu_b = gaussian_filter(a, sigma), gaussian_filter(b, sigma)
    var_a = gaussian_filter(a * a, sigma) - mu_a ** 2
    var_b = gaussian_filter(b * b, sigma) - mu_b ** 2
    cov = gaussian_filter(a * b, sigma) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / \
        ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (NaN when either is constant, e.g. blank)."""
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def cascading_randomisation(model, images: np.ndarray, class_indices,
                            seed: int = 2020) -> pd.DataFrame:
    """Maps after each cascading step compared with the trained network's, one row per
    (step, image): step, layers (randomised so far), image, spearman, ssim, blank (the
    randomised map has no positive cell; its Spearman correlation counts as 0). The model's
    weights are restored afterwards."""
    size = images.shape[1]
    original = model.get_weights()
    layer = gradcam_layer(model)
    reference = upsample(gradcam(model, images, class_indices, layer), size)
    rows = []
    try:
        for k, (step, layers) in enumerate(cascade_steps(model)):
            randomise_layers(model, layers, seed + k)
            randomised = upsample(gradcam(model, images, class_indices, layer), size)
            for i, (before, after) in enumerate(zip(reference, randomised)):
                blank = bool(after.max() <= 0)
                # A map that went blank kept none of the trained map's ranking: correlation 0.
                correlation = 0.0 if blank and before.max() > 0 else \
                    rank_correlation(before, after)
                rows.append({"step": step, "order": k, "layers": len(layers), "image": i,
                             "spearman": correlation, "ssim": ssim(before, after),
                             "blank": blank})
    finally:
        model.set_weights(original)
    return pd.DataFrame(rows)


def randomisation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per step: mean and sd of Spearman and SSIM (blank maps left out) and blank maps' share."""
    grouped = table.groupby(["order", "step"], sort=True)
    out = grouped.agg(layers=("layers", "first"), spearman=("spearman", "mean"),
                      spearman_sd=("spearman", "std"), ssim=("ssim", "mean"),
                      ssim_sd=("ssim", "std"), blank=("blank", "mean"), images=("image", "count"))
    return out.reset_index(level="order", drop=True).reset_index()
