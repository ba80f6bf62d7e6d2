"""Where the lungs are on a curated radiograph, by geometry alone, and inputs masked with it.

No segmentation model can be downloaded on this project's machines, so the audit places the
lung fields the way one expects them on a frontal (PA/AP) chest film: inside the *content box*
(the image without the black letterbox padding that curation adds), as two upright ellipses,
one per side of the midline:

- centres 21 % of the content width left and right of the middle, 46 % of the content height
  from the top (the lungs sit above the diaphragm, below the clavicles);
- half-axes 16 % of the content width and 30 % of the content height.

On an adult film framed to the thorax this covers most of both lung fields and little else
(checked by eye on synthetic and real images, see the audit chapter). It is an approximation:
a small child in a wide frame has smaller lungs nearer the middle, and a rotated or cropped
film moves them. Experiments that use the region say so.

Three uses, all on the curated uint8 images of shape ``(S, S)``:

- :func:`region_map` labels every pixel as padding, border band (the outer :data:`BORDER_BAND`
  of the content box, where markers, captions and arrows sit), lung fields or other (the
  mediastinum, shoulders, abdomen), for the share of saliency in each;
- :func:`border_only` blacks the lung fields out (after Maguolo & Nanni 2021, who showed that
  classifiers of such combined datasets stay accurate without the lungs);
- :func:`lung_only` keeps the lung fields only: the box around both ellipses is cut out and
  scaled to the full image size, and everything outside the ellipses is black. Because the box
  always maps to the same square, the ellipses land on the same pixels in every image: the
  frame's aspect ratio and the markers in its corners are gone.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

LUNG_CENTRE_X = 0.21
LUNG_CENTRE_Y = 0.46
LUNG_HALF_WIDTH = 0.16
LUNG_HALF_HEIGHT = 0.30
BORDER_BAND = 0.12
#: Pixel values at or below this are padding (letterbox borders are 0; JPEG leaves a few grey
#: levels of ringing beside the content).
PADDING_LEVEL = 12

PADDING, BORDER, LUNGS, OTHER = 0, 1, 2, 3
REGION_NAMES = {PADDING: "padding", BORDER: "border band", LUNGS: "lung fields",
                OTHER: "other content"}
INPUT_MASKS = ("none", "border_only", "lung_only")


def content_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the content: rows and columns with a pixel above padding."""
    image = np.asarray(image)
    rows = np.flatnonzero(image.max(axis=1) > PADDING_LEVEL)
    cols = np.flatnonzero(image.max(axis=0) > PADDING_LEVEL)
    if not len(rows) or not len(cols):
        return 0, image.shape[0], 0, image.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _box_coordinates(shape, box):
    """Each pixel's position inside ``box`` as fractions: x and y run 0..1 across the box."""
    top, bottom, left, right = box
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    return (xx + 0.5 - left) / max(1, right - left), (yy + 0.5 - top) / max(1, bottom - top)


def lung_ellipses(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inside either lung ellipse, for box fractions ``x``, ``y``."""
    inside = np.zeros(np.shape(x), bool)
    for side in (-1, 1):
        cx = 0.5 + side * LUNG_CENTRE_X
        inside |= ((x - cx) / LUNG_HALF_WIDTH) ** 2 + \
            ((y - LUNG_CENTRE_Y) / LUNG_HALF_HEIGHT) ** 2 <= 1
    return inside


def lung_fields(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the two lung ellipses of one curated image."""
    x, y = _box_coordinates(np.shape(image), content_box(image))
    return lung_ellipses(x, y)


def region_map(image: np.ndarray) -> np.ndarray:
    """Every pixel's region: PADDING, BORDER (outer band of the content), LUNGS or OTHER."""
    box = content_box(image)
    x, y = _box_coordinates(np.shape(image), box)
    out = np.full(np.shape(image), OTHER, np.int8)
    in_box = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    band = in_box & ((np.minimum(x, 1 - x) < BORDER_BAND) | (np.minimum(y, 1 - y) < BORDER_BAND))
    out[band] = BORDER
    out[lung_ellipses(x, y) & in_box & ~band] = LUNGS
    out[~in_box] = PADDING
    return out


def border_only(image: np.ndarray) -> np.ndarray:
    """The image with its lung fields set to black."""
    out = np.array(image, copy=True)
    out[lung_fields(image)] = 0
    return out


def lung_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the rectangle around both lung ellipses of a content box."""
    top, bottom, left, right = box
    h, w = bottom - top, right - left
    y0, y1 = LUNG_CENTRE_Y - LUNG_HALF_HEIGHT, LUNG_CENTRE_Y + LUNG_HALF_HEIGHT
    x0, x1 = 0.5 - LUNG_CENTRE_X - LUNG_HALF_WIDTH, 0.5 + LUNG_CENTRE_X + LUNG_HALF_WIDTH
    return (top + int(np.floor(y0 * h)), top + max(int(np.ceil(y1 * h)), int(y0 * h) + 1),
            left + int(np.floor(x0 * w)), left + max(int(np.ceil(x1 * w)), int(x0 * w) + 1))


def lung_only(image: np.ndarray) -> np.ndarray:
    """The rectangle around the lung fields, scaled to the image size, black outside them."""
    image = np.asarray(image, np.uint8)
    top, bottom, left, right = lung_box(content_box(image))
    crop = image[top:bottom, left:right]
    size = (image.shape[1], image.shape[0])
    scaled = np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR))
    # In the scaled crop the box runs edge to edge, so the ellipses are the same for every image.
    x, y = _box_coordinates(image.shape, (0, image.shape[0], 0, image.shape[1]))
    x0 = 0.5 - LUNG_CENTRE_X - LUNG_HALF_WIDTH
    y0 = LUNG_CENTRE_Y - LUNG_HALF_HEIGHT
    box_x = x0 + x * (1 - 2 * x0)
    box_y = y0 + y * (2 * LUNG_HALF_HEIGHT)
    return np.where(lung_ellipses(box_x, box_y), scaled, 0).astype(np.uint8)


def apply_input_mask(images: np.ndarray, mask: str) -> np.ndarray:
    """``images`` (N, S, S) uint8 as a profile's ``input_mask`` asks (none, border_only or
    lung_only)."""
    if mask == "none":
        return images
    if mask not in INPUT_MASKS:
        raise ValueError(f"input_mask must be one of {INPUT_MASKS}, got {mask!r}")
    transform = border_only if mask == "border_only" else lung_only
    return np.stack([transform(image) for image in images]) if len(images) else images


def region_shares(weights: np.ndarray, regions: np.ndarray) -> dict[str, float]:
    """The share of ``weights`` (e.g. a saliency map, same shape) falling in each region."""
    weights = np.clip(np.asarray(weights, float), 0, None)
    total = weights.sum()
    return {name: float(weights[regions == code].sum() / total) if total > 0 else float("nan")
            for code, name in REGION_NAMES.items()}


def region_areas(regions: np.ndarray) -> dict[str, float]:
    """The share of the image's area in each region (what a uniform map would give)."""
    return region_shares(np.ones(regions.shape), regions)
