"""The explorers' HTML: one style sheet, escaped text, small tables and image thumbnails.

Every view is a string of HTML (a live widget shows one; the book embeds many), so these are
plain functions of values. Thumbnails are small WebP data URIs: the page carries its images.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.data.dataset import load_image

THUMBNAIL_SIDE = 96
GREEN, RED = "#2e7d32", "#c62828"
#: The explorers' look, sent once with each view (classes, so that repeated rows stay short).
CSS = (
    "<style>"
    ".cxr-row{display:flex;gap:6px;margin:3px 0;padding-left:6px;border-left:4px solid "
    f"{RED}}}.cxr-row.ok{{border-left-color:{GREEN}}}"
    f".cxr-row .verdict{{color:{RED};font-weight:bold}}.cxr-row.ok .verdict{{color:{GREEN}}}"
    ".cxr-row small{color:#555}.cxr-card{width:320px;margin:4px}"
    ".cxr-table,.cxr-cm{margin:4px 0 8px 0}"
    ".cxr-card>div:last-child{font-size:80%;line-height:1.35}.cxr-cards{display:flex;"
    "flex-wrap:wrap}.cxr-thumb{display:inline-block;flex:none;background-color:#000;"
    "background-position:center;background-size:contain;background-repeat:no-repeat}"
    "img.cxr-thumb{object-fit:contain}.cxr-cm{border-collapse:collapse}.cxr-cm td{"
    "text-align:center;min-width:3em;border:1px solid #ccc}.cxr-cm td.chosen{border:3px "
    "solid #000}.cxr-small{font-size:85%}.cxr-side{display:flex;gap:16px;"
    "align-items:flex-start}"
    "</style>")


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def percent(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def html_table(frame: pd.DataFrame, css_class: str = "cxr-table") -> str:
    """A small table with the theme's look; cells escaped."""
    head = "".join(f"<th>{esc(c)}</th>" for c in [frame.index.name or ""] + list(frame.columns))
    rows = "".join("<tr><th>" + esc(i) + "</th>" + "".join(f"<td>{esc(v)}</td>" for v in row)
                   + "</tr>" for i, row in zip(frame.index, frame.to_numpy()))
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


# --------------------------------------------------------------------------------------------
# Images


def load_pixels(images_dir: Path | None, image_id: str) -> np.ndarray | None:
    """A curated image as uint8 grey levels, or None when it is not on this machine."""
    if images_dir is None or not (Path(images_dir) / f"{image_id}.jpg").is_file():
        return None
    return load_image(Path(images_dir).parent, image_id)


def image_data_uri(pixels: np.ndarray, side: int = THUMBNAIL_SIDE) -> str:
    """A small WebP (grey or RGB) as a data URI, at most ``side`` px on its longer edge.

    WebP rather than JPEG: at thumbnail size JPEG's headers dominate, and a page embeds
    hundreds of thumbnails (half the bytes at the same look).
    """
    im = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    if max(im.size) > side:
        im.thumbnail((side, side))
    buffer = io.BytesIO()
    im.save(buffer, format="WEBP", quality=80)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def img_tag(uri: str, title: str = "", side: int = THUMBNAIL_SIDE) -> str:
    return (f'<img src="{uri}" alt="{esc(title)}" title="{esc(title)}" '
            f'class="cxr-thumb" style="width:{side}px;height:{side}px">')


def thumbnail_html(images_dir: Path | None, image_id: str, side: int = THUMBNAIL_SIDE,
                   sheet: "ThumbnailSheet | None" = None) -> str:
    """An image's thumbnail (inline, or a reference into ``sheet``); "" when it is missing."""
    if sheet is not None:
        return sheet.tag(image_id)
    pixels = load_pixels(images_dir, image_id)
    return "" if pixels is None else img_tag(image_data_uri(pixels, side), image_id, side)


class ThumbnailSheet:
    """Thumbnails defined once per page as CSS classes, however many views show them.

    A frozen book view repeats an image in many precomputed views (each configuration lists
    its mistakes); inlining it each time would multiply the page's size. The class name hashes
    the image's file and size, so two views of one page agree on it.
    """

    def __init__(self, images_dir: Path | None, side: int):
        self.images_dir, self.side = images_dir, side
        self.uris: dict[str, str] = {}

    def class_name(self, image_id: str) -> str:
        key = f"{self.images_dir}/{image_id}@{self.side}".encode()
        return "cxr-t-" + hashlib.sha1(key).hexdigest()[:12]

    def tag(self, image_id: str) -> str:
        name = self.class_name(image_id)
        if name not in self.uris:
            pixels = load_pixels(self.images_dir, image_id)
            if pixels is None:
                return ""
            self.uris[name] = image_data_uri(pixels, self.side)
        return (f'<span class="cxr-thumb {name}" title="{esc(image_id)}" '
                f'style="width:{self.side}px;height:{self.side}px"></span>')

    def style_html(self) -> str:
        rules = "".join(f".{name}{{background-image:url({uri})}}"
                        for name, uri in self.uris.items())
        return f"<style>{rules}</style>" if rules else ""
