"""Pixels: decode any source file to 8-bit grayscale, letterbox it, measure it.

Everything here works on one image and is a pure function of its input, so curation can run
it in worker processes and get the same bytes on every run.

Decoding follows the paper's preprocessing (grayscale, aspect ratio kept, black padding to a
square) and makes the odd formats found in public collections explicit: 16-bit and float
images are min-max scaled to 8 bits, images with transparency are flattened onto black (the
padding colour), palette and CMYK images are converted through RGB.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

#: Thumbnail side used to compare two images for duplicates (the content squashed to a square,
#: so a squashed and an aspect-kept copy of one radiograph give the same thumbnail).
THUMB_SIDE = 32
#: Long side of the copy on which quality measures are computed (fast, and stable across the
#: different original resolutions).
ANALYSIS_SIDE = 128


class ImageError(ValueError):
    """A source image cannot be used; the message names the file and the problem."""


def _scale_to_8bit(values: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.round((values.astype(np.float64) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _flatten_on_black(im: Image.Image) -> Image.Image:
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float64)
    rgb = rgba[..., :3] * (rgba[..., 3:4] / 255.0)
    return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")


def to_grayscale(im: Image.Image, name: str = "image") -> np.ndarray:
    """A decoded PIL image as an 8-bit grayscale array (see the module docstring for the rules)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _scale_to_8bit(np.asarray(im))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        im = _flatten_on_black(im)
    elif mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode not in ("L", "1", "RGB"):
        raise ImageError(f"{name}: unsupported pixel mode {mode!r}; convert it to grayscale "
                         f"or RGB (e.g. with Pillow) and curate again")
    return np.asarray(im.convert("L"), dtype=np.uint8)


def decode(path: str | Path, draft_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` to 8-bit grayscale (EXIF orientation applied) and its original (w, h).

    ``draft_side``: for large JPEGs, let the decoder skip resolution that a ``draft_side`` px
    result does not need (it keeps at least twice that side for the Lanczos resize).
    Raises :class:`ImageError` naming the file when it is missing, truncated or not an image.
    """
    path = Path(path)
    if is_dicom(path):
        return decode_dicom(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if draft_side and im.format == "JPEG" and min(w, h) > 4 * draft_side:
                im.draft("L" if im.mode == "L" else "RGB", (2 * draft_side, 2 * draft_side))
            im.load()
            im = ImageOps.exif_transpose(im)
            gray = to_grayscale(im, str(path))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found; check the data folder") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: cannot decode ({e}); the file is truncated or not an image, "
                         f"download it again") from None
    if (gray.shape[0] > gray.shape[1]) != (h > w):  # EXIF rotated it by 90 degrees
        w, h = h, w
    return gray, (w, h)


# ---------------------------------------------------------------------------------------------
# DICOM (a radiograph as the hospital stores it)

#: File name endings taken for DICOM; other files are recognised by the "DICM" marker at 128.
DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file (by its ending, or the preamble's "DICM" marker)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def voi_lut(item, values: np.ndarray) -> np.ndarray:
    """A VOI LUT Sequence item applied to stored values: the table looked up at (value - first
    mapped value), clipped to its ends. (pydicom's apply_voi indexes an 8-bit table with 8-bit
    numbers, so a table of more than 256 entries wraps.)"""
    entries, first, _ = (int(v) for v in item.LUTDescriptor)
    data = item.LUTData
    # LUTData is US (numbers) or OW (little-endian 16-bit words, the usual transfer syntaxes).
    table = np.frombuffer(data, "<u2") if isinstance(data, bytes) else np.asarray(data)
    table = table[:entries or 2 ** 16].astype(np.float64)
    index = np.clip(np.round(values).astype(np.int64) - first, 0, len(table) - 1)
    return table[index]


def dicom_display(ds, values: np.ndarray) -> np.ndarray:
    """Stored values (after the modality LUT) as the 8-bit grey levels a viewer shows.

    The file's VOI LUT when it has one (its output range scaled to 0-255); else its first window
    (centre/width, DICOM's LINEAR function: below the window black, above white); else the
    values min-max scaled, as for 16-bit PNGs. MONOCHROME1 (white = low values) is inverted.
    """
    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        shown = voi_lut(item, values) * (255.0 / (2 ** bits - 1))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        first = lambda v: float(v[0] if isinstance(v, (list, tuple)) or  # noqa: E731
                                getattr(v, "VM", 1) > 1 else v)
        centre, width = first(ds.WindowCenter), max(first(ds.WindowWidth), 1.0)
        shown = ((values - (centre - 0.5)) / max(width - 1, 1e-9) + 0.5) * 255.0
    else:
        shown = _scale_to_8bit(values).astype(np.float64)
    gray = np.round(np.clip(shown, 0, 255)).astype(np.uint8)
    return 255 - gray if ds.get("PhotometricInterpretation", "") == "MONOCHROME1" else gray


def decode_dicom(path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
    """A DICOM radiograph as 8-bit grayscale and its (w, h): modality LUT (rescale slope and
    intercept), then :func:`dicom_display`. Colour images are turned to grayscale; of several
    frames the first is used."""
    # pydicom is needed only for DICOM files: imported here, when one is read.
    import pydicom
    from pydicom.pixels import apply_modality_lut

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found; check the path") from None
    except Exception as e:  # pydicom raises many kinds (InvalidDicomError, missing decoders)
        raise ImageError(f"{path}: cannot read it as DICOM ({e}); export it from the viewer "
                         f"as uncompressed DICOM, PNG or JPEG") from None
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        return to_grayscale(Image.fromarray(np.asarray(pixels, np.uint8)).convert("RGB"),
                            str(path)), (int(ds.Columns), int(ds.Rows))
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    return dicom_display(ds, values), (int(ds.Columns), int(ds.Rows))


def read_grayscale(path: str | Path, draft_side: int | None = None) -> np.ndarray:
    """:func:`decode` without the original size."""
    return decode(path, draft_side)[0]


def resize_keep_aspect(gray: np.ndarray, long_side: int) -> np.ndarray:
    """Resize (Lanczos) so that the longer side is ``long_side``; the aspect ratio is kept."""
    h, w = gray.shape
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return gray
    return np.asarray(Image.fromarray(gray).resize(size, Image.LANCZOS, reducing_gap=3.0))


def harmonise(gray: np.ndarray, long_side: int) -> np.ndarray:
    """The image reduced (Lanczos, aspect kept) so that its long side is at most ``long_side``
    (0: unchanged). Smaller images are left as they are: harmonising never invents detail, it
    takes away what only some sources have."""
    if long_side <= 0 or max(gray.shape) <= long_side:
        return gray
    return resize_keep_aspect(gray, long_side)


def letterbox(gray: np.ndarray, size: int) -> np.ndarray:
    """The paper's geometry: aspect ratio kept, centred on a black ``size`` x ``size`` square."""
    content = resize_keep_aspect(gray, size)
    h, w = content.shape
    out = np.zeros((size, size), np.uint8)
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = content
    return out


def squashed_thumbnail(gray: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """The content squashed to ``side`` x ``side``, zero mean and unit norm (for correlations)."""
    small = np.asarray(Image.fromarray(gray).resize((side, side), Image.LANCZOS), np.float32)
    small = small - small.mean()
    norm = float(np.linalg.norm(small))
    return (small / norm if norm > 0 else small).astype(np.float32)


def perceptual_hash(gray: np.ndarray) -> str:
    """64-bit DCT hash (imagehash.phash) of the content, as 16 hex digits.

    Computed on the unpadded content: phash squashes to a square first, so padding and the
    squashed 224x224 Kermany copies do not hide a duplicate.
    """
    return str(imagehash.phash(Image.fromarray(gray)))


def encode_jpeg(gray: np.ndarray, quality: int = 90) -> bytes:
    """Deterministic baseline JPEG bytes (no metadata, no timestamps)."""
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Quality measures (the exclusion criteria are defined in cxrlib.data.curate from these numbers)


@dataclass(frozen=True)
class Quality:
    """Numbers that exclusion criteria are based on (computed on the content, borders trimmed)."""

    #: 2nd to 98th percentile of intensity in the central region (15 % margins), 0..255.
    contrast_range: float
    #: standard deviation of intensity in the central region.
    contrast_std: float
    mean_intensity: float


def central_region(gray: np.ndarray, margin: float = 0.15) -> np.ndarray:
    h, w = gray.shape
    dy, dx = int(h * margin), int(w * margin)
    return gray[dy:h - dy or h, dx:w - dx or w]


def content_box(gray: np.ndarray, tolerance: float = 12.0) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the content inside uniform borders (black, white or grey).

    A border row or column is one whose 5th-95th percentile spread is at most ``tolerance``
    grey levels: frames and padding added by publishers, not anatomy.
    """
    h, w = gray.shape
    rows = np.percentile(gray, 95, axis=1) - np.percentile(gray, 5, axis=1)
    cols = np.percentile(gray, 95, axis=0) - np.percentile(gray, 5, axis=0)
    r, c = np.flatnonzero(rows > tolerance), np.flatnonzero(cols > tolerance)
    if len(r) == 0 or len(c) == 0:
        return 0, h, 0, w
    return int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1


def measure_quality(gray: np.ndarray) -> Quality:
    small = resize_keep_aspect(gray, ANALYSIS_SIDE) if max(gray.shape) > ANALYSIS_SIDE else gray
    centre = central_region(small).astype(np.float32)
    lo, hi = np.percentile(centre, [2, 98])
    return Quality(
        contrast_range=round(float(hi - lo), 3),
        contrast_std=round(float(centre.std()), 3),
        mean_intensity=round(float(small.mean()), 3),
    )
