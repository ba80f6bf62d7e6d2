"""Interactive explorers for the curated data, the predictions and the COVID-19 threshold.

Three explorers, each a class whose state changes only through small methods that the widgets
call and that tests and notebooks can call directly (no browser needed):

- :class:`DatasetExplorer`: the curated manifest filtered by class, source, view, curation
  decision and patient; each image with its metadata and what curation decided (used, or
  excluded and why; its duplicate group; the patients a duplicate joined).
- :class:`PredictionExplorer`: a run, a configuration (strategy and trainable blocks) and a test
  fold, or all folds; the pooled confusion matrix, rows predicted and columns actual as the
  paper prints it; the images of a chosen cell with their probabilities, misclassifications
  first, and Grad-CAM overlays where :mod:`cxrlib.explain` and the fold's saved weights exist.
- :class:`ThresholdExplorer`: COVID-19 against the rest when an image counts as COVID-19 once
  its COVID-19 probability reaches a threshold: sensitivity, specificity, the 2x2 matrix and
  the operating point on the ROC curve, beside our arg-max point (how the paper decides) and
  the paper's own point where it reports one.

Each explorer is shown two ways:

- ``explorer.widget`` (or the explorer as a cell's last value): live controls for JupyterLab;
  every change goes through the methods above.
- ``explorer.book_view()``: for the static HTML book, where no Python runs. The views of a few
  choices (each class; each configuration; thresholds in steps of 0.05) are computed when the
  book is built and a selector switches between them in the browser (``ipywidgets.jslink`` to
  a ``Stack``), so the embedded widget state still responds. Where that state would be too
  large, a static rendering of the explorer's current state instead.

Real radiographs appear only when the data is synthetic or ``CXRLIB_SHOW_REAL_IMAGES=1`` is set
where the real data lives (the rule of the curation notebook), so no committed file and no
default build embeds an X-ray.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics, paper, paths, report, results
from .curation_figures import SHOW_REAL_ENV as SHOW_REAL_IMAGES_ENV
from .dataset import load_image, read_manifest, read_summary
from .profiles import parse_config

ALL = "all"
PAGE_SIZE = 12
THUMBNAIL_SIDE = 96
#: Thresholds the book's frozen threshold explorer offers (the live one moves in 0.01 steps).
BOOK_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
#: Images listed per confusion-matrix cell in the book's frozen prediction explorer: more for
#: mistakes (the telling images) than for correct answers; every byte is embedded in the page.
BOOK_ROWS_PER_CELL = 4
BOOK_ROWS_PER_CORRECT_CELL = 2
BOOK_THUMBNAIL_SIDE = 56
#: Above this many bytes of precomputed views, a book view falls back to a static rendering
#: (every byte is embedded in the page as widget state).
BOOK_VIEW_MAX_BYTES = 2_500_000
HIDDEN_IMAGES_NOTE = (
    "Images are not shown: these are real radiographs. They appear only where the data lives "
    f"and `{SHOW_REAL_IMAGES_ENV}=1` is set, so that no committed file embeds an X-ray.")

_GREEN, _RED = "#2e7d32", "#c62828"
#: The explorers' look, sent once with each view (classes, so that repeated rows stay short).
CSS = (
    "<style>"
    ".cxr-row{display:flex;gap:6px;margin:3px 0;padding-left:6px;border-left:4px solid "
    f"{_RED}}}.cxr-row.ok{{border-left-color:{_GREEN}}}"
    f".cxr-row .verdict{{color:{_RED};font-weight:bold}}.cxr-row.ok .verdict{{color:{_GREEN}}}"
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


# --------------------------------------------------------------------------------------------
# Shared helpers


def real_images_allowed() -> bool:
    """The curation notebook's rule (:mod:`cxrlib.curation_figures`): exactly "1" opts in."""
    return os.environ.get(SHOW_REAL_IMAGES_ENV) == "1"


def images_may_be_shown(synthetic: bool) -> bool:
    """Synthetic images always; real radiographs only when asked for where the data lives."""
    return bool(synthetic) or real_images_allowed()


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def percent(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def class_order(labels) -> list[str]:
    """The paper's classes first, in its order, then any others alphabetically."""
    present = set(labels)
    return [c for c in paper.CLASSES if c in present] + sorted(present - set(paper.CLASSES))


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
    from PIL import Image

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


def html_table(frame: pd.DataFrame, css_class: str = "cxr-table") -> str:
    """A small table with the theme's look; cells escaped."""
    head = "".join(f"<th>{esc(c)}</th>" for c in [frame.index.name or ""] + list(frame.columns))
    rows = "".join("<tr><th>" + esc(i) + "</th>" + "".join(f"<td>{esc(v)}</td>" for v in row)
                   + "</tr>" for i, row in zip(frame.index, frame.to_numpy()))
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def html_views(views: list[str]) -> list:
    """HTML widgets for precomputed views, sharing one layout and one style: the page embeds
    every widget's full state, and a layout alone is about 1 kB of it."""
    import ipywidgets as w

    from ipywidgets.widgets.widget_string import HTMLStyle

    layout, style = w.Layout(), HTMLStyle()
    return [w.HTML(v, layout=layout, style=style) for v in views]


def frozen_selector(labels: list[str], views: list[str], description: str, head: str = ""):
    """A dropdown that switches between precomputed HTML views in the browser, kernel or not;
    ``head`` (e.g. a thumbnail sheet's style) is shown above them, once."""
    import ipywidgets as w

    chooser = w.Dropdown(options=list(labels), index=0, description=description,
                         style={"description_width": "initial"},
                         layout=w.Layout(width="max-content"))
    stack = w.Stack(html_views(views), selected_index=0)
    w.jslink((chooser, "index"), (stack, "selected_index"))
    return w.VBox(([w.HTML(head)] if head else []) + [chooser, stack])


def view_size(views) -> int:
    return sum(len(v.encode()) for v in views)


def static_fallback(html_text: str, what: str):
    from IPython.display import HTML

    return HTML(f'<p><em>The interactive {esc(what)} would embed too much in this page; '
                f'shown as it stands. Open it in JupyterLab for every choice.</em></p>'
                + html_text)


def note(markdown: str):
    from IPython.display import Markdown

    return Markdown(markdown)


# --------------------------------------------------------------------------------------------
# The dataset explorer


def exclusion_text(row: pd.Series) -> str:
    """How an exclusion reason of :mod:`cxrlib.curate` reads, with the measure behind it."""
    reason = str(row.get("excluded", ""))
    kind, _, detail = reason.partition(":")

    def measured(column: str) -> str:
        value = str(row.get(column, ""))
        return f"{float(value):g}" if value not in ("", "nan") else "?"

    texts = {
        "too_small": f"too small: the original is {row.get('orig_width', '?')}x"
                     f"{row.get('orig_height', '?')} px",
        "multilabel": "NIH image naming two or more of the target findings",
        "low_contrast": f"low contrast: a 2-98% grey-level spread of {measured('contrast_range')}",
        "partial_thorax": f"part of the thorax only: content width/height "
                          f"{measured('content_aspect')}",
        "inverted": f"inverted grey scale: layout correlation {measured('layout_corr')}",
        "duplicate_of": f"duplicate of {detail}",
        "duplicate_label_conflict": "a radiograph that appears under two labels",
        "unreadable": f"unreadable: {detail.strip()}",
    }
    return texts.get(kind, reason)


class DatasetExplorer:
    """Filter the curated manifest and see each image with its curation decision.

    ``DatasetExplorer(curated_folder)`` or ``DatasetExplorer.for_run(run_path)``. Filters:
    ``label``, ``source``, ``view`` and ``decision`` take one of :meth:`options`; ``patient``
    is a text matched (case-insensitively) inside the reconciled or the source's patient id.
    """

    FILTERS = ("label", "source", "view", "decision", "patient")

    def __init__(self, curated: str | Path, page_size: int = PAGE_SIZE):
        self.folder = Path(curated)
        self.manifest = read_manifest(self.folder)
        try:
            self.summary = read_summary(self.folder)
        except (FileNotFoundError, json.JSONDecodeError):
            self.summary = {}
        self.images_dir = self.folder / "images"
        synthetic = self.summary.get("synthetic")
        if synthetic is None:
            synthetic = bool(len(self.manifest)) and \
                self.manifest["source"].str.startswith("synthetic").all()
        self.synthetic = bool(synthetic)
        self.page_size = page_size
        self.duplicate_groups = {g["group"]: g for g in
                                 self.summary.get("duplicates", {}).get("list", [])}
        self.merged_patients = self.summary.get("patients", {}).get("merged", {})
        self.filters = {"label": ALL, "source": ALL, "view": ALL, "decision": ALL, "patient": ""}
        self.page = 0
        self._widget = None

    @classmethod
    def for_run(cls, run_path: str | Path, **kwargs) -> "DatasetExplorer":
        """The explorer of the curated dataset a stored run was trained on."""
        from .book import curated_dir

        run_path = report.as_run_path(run_path)
        folder = curated_dir(run_path)
        if folder is None:
            profile = report.run_profile(run_path)
            name = profile.name if profile else "PROFILE"
            raise FileNotFoundError(
                f"the curated dataset of run {run_path.name!r} is not on this machine: "
                f"`python -m cxrlib curate --profile {name}` rebuilds it (real profiles need "
                f"the sources, see `python -m cxrlib download`)")
        return cls(folder, **kwargs)

    # --- state ---------------------------------------------------------------------------

    @property
    def show_images(self) -> bool:
        return images_may_be_shown(self.synthetic)

    def options(self) -> dict[str, list[str]]:
        m = self.manifest
        kinds = sorted({r.split(":", 1)[0] for r in m["excluded"] if r})
        decisions = [ALL, "used", "excluded"] + [f"excluded: {k}" for k in kinds]
        if "duplicate_group" in m and (m["duplicate_group"] != "").any():
            decisions.append("in a duplicate group")
        return {"label": [ALL] + class_order(m["label"]),
                "source": [ALL] + sorted(set(m["source"])),
                "view": [ALL] + sorted(set(m["view"])),
                "decision": decisions}

    def set_filters(self, **changes) -> pd.DataFrame:
        """Change some filters (the others stay); back to the first page. Returns the matches."""
        unknown = sorted(set(changes) - set(self.FILTERS))
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; filters are {list(self.FILTERS)}")
        options = self.options()
        for key, value in changes.items():
            if key != "patient" and value not in options[key]:
                raise ValueError(f"{key} {value!r} is not in this dataset; choose one of "
                                 f"{options[key]}")
        self.filters.update({k: (str(v).strip() if k == "patient" else v)
                             for k, v in changes.items()})
        self.page = 0
        return self.matching()

    def matching(self, filters: dict | None = None) -> pd.DataFrame:
        """The manifest rows that pass ``filters`` (default: the current ones), manifest order."""
        f = dict(self.filters, **(filters or {}))
        m = self.manifest
        keep = pd.Series(True, index=m.index)
        for key, column in (("label", "label"), ("source", "source"), ("view", "view")):
            if f[key] != ALL:
                keep &= m[column] == f[key]
        decision = f["decision"]
        if decision == "used":
            keep &= m["excluded"] == ""
        elif decision == "excluded":
            keep &= m["excluded"] != ""
        elif decision.startswith("excluded: "):
            keep &= m["excluded"].str.split(":", n=1).str[0] == decision[len("excluded: "):]
        elif decision == "in a duplicate group":
            keep &= m.get("duplicate_group", pd.Series("", index=m.index)) != ""
        if f["patient"]:
            needle = f["patient"].lower()
            ids = m["patient_id"].str.lower()
            source_ids = m["source_patient_id"].str.lower() if "source_patient_id" in m else ids
            keep &= ids.str.contains(needle, regex=False) | \
                source_ids.str.contains(needle, regex=False)
        return m[keep]

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.matching()) // self.page_size))

    def set_page(self, page: int) -> int:
        """Go to ``page`` (0-based), kept inside the pages there are; returns the page."""
        self.page = int(min(max(page, 0), self.n_pages - 1))
        return self.page

    def page_rows(self) -> pd.DataFrame:
        start = self.page * self.page_size
        return self.matching().iloc[start:start + self.page_size]

    # --- text ----------------------------------------------------------------------------

    def summary_text(self, frame: pd.DataFrame | None = None) -> str:
        """One line: how many images match, used and excluded (by reason), and patients."""
        frame = self.matching() if frame is None else frame
        used = int((frame["excluded"] == "").sum())
        reasons = frame.loc[frame["excluded"] != "", "excluded"].str.split(":", n=1).str[0]
        why = ", ".join(f"{n} {k}" for k, n in reasons.value_counts().sort_index().items())
        return (f"{len(frame)} image(s) match: {used} used, {len(frame) - used} excluded"
                + (f" ({why})" if why else "")
                + f"; {frame['patient_id'].nunique()} patient(s)")

    def decision_text(self, row: pd.Series) -> str:
        return "used" if row["excluded"] == "" else "excluded: " + exclusion_text(row)

    def duplicate_text(self, row: pd.Series) -> str:
        group = str(row.get("duplicate_group", ""))
        if not group:
            return ""
        info = self.duplicate_groups.get(group, {})
        others = [i for i in info.get("image_ids", []) if i != row["image_id"]]
        kind = {"identical": "byte-identical copies", "near": "near-duplicates"}.get(
            info.get("kind"), "duplicates")
        return (f"{group}: {kind}" + (f" of {', '.join(others)}" if others else "")
                + (f" (lowest correlation {info['min_corr']:g})"
                   if info.get("min_corr") is not None else ""))

    def patient_text(self, row: pd.Series) -> str:
        pid = row["patient_id"]
        n = int((self.manifest["patient_id"] == pid).sum())
        text = f"{pid} ({n} image{'s' if n != 1 else ''} in the manifest)"
        joined = self.merged_patients.get(pid, [])
        if len(joined) > 1:
            text += f"; joined by a duplicate from the source ids {', '.join(joined)}"
        elif str(row.get("source_patient_id", pid) or pid) != pid:
            text += f"; source id {row['source_patient_id']}"
        return text

    def card_html(self, row: pd.Series, sheet: ThumbnailSheet | None = None) -> str:
        used = row["excluded"] == ""
        picture = thumbnail_html(self.images_dir, row["image_id"], sheet=sheet) \
            if self.show_images else ""
        age = "" if pd.isna(row.get("age")) else f"{float(row['age']):g} y"
        facts = [("class", row["label"]), ("source", f"{row['source']}"
                                           + (f" (finding: {row['finding']})"
                                              if row["finding"] != row["label"] else "")),
                 ("patient", self.patient_text(row)), ("view", row["view"] or "unknown"),
                 ("age, sex", ", ".join(v for v in (age, row["sex"]) if v) or "unknown"),
                 ("original", f"{row['orig_width']}x{row['orig_height']} px"),
                 ("duplicates", self.duplicate_text(row))]
        lines = "".join(f"<b>{esc(k)}</b>: {esc(v)}<br>" for k, v in facts if v)
        return (f'<div class="cxr-row cxr-card{" ok" if used else ""}">{picture}'
                f'<div><code>{esc(row["image_id"])}</code><br><span class="verdict">'
                f"{esc(self.decision_text(row))}</span><br>"
                f"{lines}</div></div>")

    def cards_html(self, frame: pd.DataFrame, sheet: ThumbnailSheet | None = None) -> str:
        cards = "".join(self.card_html(row, sheet) for _, row in frame.iterrows())
        return f'<div class="cxr-cards">{cards}</div>'

    def render_html(self, frame: pd.DataFrame | None = None, limit: int | None = None) -> str:
        """The summary line and the cards of the current page (or of ``frame``, up to ``limit``)."""
        if frame is None:
            frame, header = self.page_rows(), self.summary_text()
            header += f" (page {self.page + 1} of {self.n_pages})"
        else:
            header = self.summary_text(frame)
            frame = frame.iloc[:limit] if limit else frame
        parts = [CSS, f'<p class="cxr-summary"><b>{esc(header)}</b></p>']
        if not self.show_images:
            parts.append(f"<p><em>{esc(HIDDEN_IMAGES_NOTE)}</em></p>")
        parts.append(self.cards_html(frame))
        return "".join(parts)

    # --- live widget ---------------------------------------------------------------------

    @property
    def widget(self):
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _build_widget(self):
        import ipywidgets as w

        options = self.options()
        self.controls = {key: w.Dropdown(options=[(v or "(unknown)", v) for v in options[key]],
                                         value=self.filters[key], description=name)
                         for key, name in (("label", "class"), ("source", "source"),
                                           ("view", "view"), ("decision", "decision"))}
        self.controls["patient"] = w.Text(value=self.filters["patient"], description="patient",
                                          placeholder="patient id or part of it",
                                          continuous_update=False)
        self.previous_button = w.Button(description="previous", icon="arrow-left")
        self.next_button = w.Button(description="next", icon="arrow-right")
        self.page_label = w.Label()
        self.output = w.HTML()

        def on_filter(change, key):
            self.set_filters(**{key: change["new"]})
            self.refresh()

        for key, control in self.controls.items():
            control.observe(lambda change, key=key: on_filter(change, key), names="value")
        self.previous_button.on_click(lambda _: (self.set_page(self.page - 1), self.refresh()))
        self.next_button.on_click(lambda _: (self.set_page(self.page + 1), self.refresh()))
        self.refresh()
        return w.VBox([w.HBox([self.controls["label"], self.controls["source"]]),
                       w.HBox([self.controls["view"], self.controls["decision"]]),
                       self.controls["patient"],
                       w.HBox([self.previous_button, self.page_label, self.next_button]),
                       self.output])

    def refresh(self) -> None:
        if self._widget is None and not hasattr(self, "output"):
            return
        self.output.value = self.render_html()
        self.page_label.value = f"page {self.page + 1} of {self.n_pages}"

    # --- the book ------------------------------------------------------------------------

    def class_view_html(self, label: str, cards: int = 6,
                        sheet: ThumbnailSheet | None = None) -> str:
        """One class (or all): counts by source and decision, then its excluded images, its
        duplicates and a few used ones."""
        frame = self.matching({"label": label, "source": ALL, "view": ALL, "decision": ALL,
                               "patient": ""})
        decision = np.where(frame["excluded"] == "", "used",
                            "excluded: " + frame["excluded"].str.split(":", n=1).str[0])
        table = pd.crosstab(frame["source"], pd.Series(decision, index=frame.index,
                                                       name="decision"))
        table.index.name = "source"
        dup = frame["duplicate_group"] != "" if "duplicate_group" in frame else \
            pd.Series(False, index=frame.index)
        kept = frame["excluded"] == ""
        excluded, duplicates, used = frame[~kept], frame[dup & kept], frame[kept & ~dup]
        parts = [f"<p><b>{esc(self.summary_text(frame))}</b></p>", html_table(table)]
        if not self.show_images:
            parts.append(f"<p><em>{esc(HIDDEN_IMAGES_NOTE)}</em></p>")
        for title, part in (("Excluded", excluded), ("Kept from a duplicate group", duplicates),
                            ("Used", used)):
            if len(part):
                if label == ALL:  # every class has its say: the first image of each comes first
                    part = pd.concat([part.groupby("label", sort=False).head(1), part])
                    part = part[~part.index.duplicated()]
                shown = max(cards, part["label"].nunique()) if label == ALL else cards
                more = f" ({shown} of {len(part)})" if len(part) > shown else ""
                parts.append(f"<p><b>{title}{more}</b></p>")
                parts.append(self.cards_html(part.iloc[:shown], sheet))
        return "".join(parts)

    def book_view(self, cards: int = 6):
        """Per class (and all together): the frozen view, switched by a dropdown in the page."""
        labels = self.options()["label"]
        sheet = ThumbnailSheet(self.images_dir, THUMBNAIL_SIDE)
        views = [self.class_view_html(label, cards, sheet) for label in labels]
        head = CSS + sheet.style_html()
        if view_size([head, *views]) > BOOK_VIEW_MAX_BYTES:
            return static_fallback(CSS + self.class_view_html(ALL, cards), "dataset explorer")
        names = ["all classes" if v == ALL else v for v in labels]
        return frozen_selector(names, views, "class", head)


# --------------------------------------------------------------------------------------------
# Runs with predictions (shared by the prediction and threshold explorers)


def resolve_run(run: str | Path | None, results_root: str | Path | None) -> Path:
    """A run folder from a name, a folder, or None (the run the book shows)."""
    root = Path(results_root) if results_root is not None else paths.results_dir()
    if run is None or str(run) == "":
        return report.book_run(root)
    path = Path(run)
    if path.is_dir() or path.is_absolute() or len(path.parts) > 1:
        return path
    return root / str(run)


def configs_with_results(run_path: Path) -> list[str]:
    return [c for c in report.run_configs(run_path) if report.has_results(run_path, c)]


def runs_with_results(root: Path) -> list[str]:
    """Runs under ``root`` with a finished fold (unreadable runs are skipped, as the book does)."""
    found = []
    for run in results.list_runs(root):
        try:
            if configs_with_results(root / run):
                found.append(run)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            continue
    return found


def require_results(run_path: Path) -> list[str]:
    if not (run_path / "profile.json").is_file():
        raise FileNotFoundError(f"{run_path} holds no run (no profile.json): make one with "
                                f"`python -m cxrlib book` or `python -m cxrlib run`")
    configs = configs_with_results(run_path)
    if not configs:
        raise FileNotFoundError(f"run {run_path.name!r} has no finished fold yet: "
                                f"`python -m cxrlib run --profile ... --run {run_path.name}`")
    return configs


def config_description(config: str) -> str:
    """``Fine-tuning 7 (strategy fine_tune, 7 trainable blocks)``."""
    strategy, blocks = parse_config(config)
    detail = f"strategy {strategy}" + (f", {blocks} trainable blocks" if strategy == "fine_tune"
                                       else "")
    return f"{report.config_label(config)} ({detail})"


def scored_predictions(pred: pd.DataFrame, classes) -> pd.DataFrame:
    """The prediction table with ``predicted``, ``confidence`` (its probability), ``p_actual``
    and ``correct`` added."""
    classes = metrics.check_predictions(pred, classes)
    probs = pred[[metrics.probability_column(c) for c in classes]].to_numpy(dtype=float)
    index = {c: i for i, c in enumerate(classes)}
    out = pred.copy()
    out["predicted"] = metrics.predicted_labels(pred, classes)
    out["confidence"] = probs.max(axis=1)
    out["p_actual"] = probs[np.arange(len(pred)), pred["label"].map(index).to_numpy(dtype=int)]
    out["correct"] = out["predicted"] == out["label"]
    return out


def misclassified_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Wrong answers first, and within each group the most confident first: a confident
    mistake is the most telling image to look at."""
    return frame.sort_values(["correct", "confidence"], ascending=[True, False], kind="stable")


def run_is_synthetic(run_path: Path) -> bool:
    profile = report.run_profile(run_path)
    return profile is not None and profile.dataset == "synthetic"


def run_images_dir(run_path: Path) -> Path | None:
    from .book import curated_dir

    folder = curated_dir(run_path)
    return folder / "images" if folder is not None and (folder / "images").is_dir() else None


# --------------------------------------------------------------------------------------------
# Grad-CAM (from cxrlib.explain, when it and a fold's saved weights exist)
#
# The contract with cxrlib.explain: ``explain.gradcam_for_images(run_path, config, fold, images,
# classes)`` -> one heat map per image, values in [0, 1] (any size), of the model of that fold
# (weights kept by the CV loop at :func:`cxrlib.cv.weights_path`) for the named class of each
# image; ``images`` are the curated uint8 images, shape (N, S, S).

GRADCAM_FUNCTION = "gradcam_for_images"


def weights_path(run: str, config: str, fold: int) -> Path:
    """Where the CV loop keeps a fold's weights when asked to (:func:`cxrlib.cv.weights_path`)."""
    from .cv import weights_path as kept_weights

    return kept_weights(run, config, int(fold))


def gradcam_status(run: str, config: str, folds, profile: str = "PROFILE") -> tuple[bool, str]:
    """Whether Grad-CAM overlays can be drawn for these folds, and if not, why."""
    try:
        from . import explain
    except ImportError:
        return False, ("Grad-CAM overlays need `cxrlib.explain`, which this checkout does not "
                       "have yet.")
    if not hasattr(explain, GRADCAM_FUNCTION):
        return False, f"`cxrlib.explain` offers no `{GRADCAM_FUNCTION}` in this checkout."
    saved = [f for f in folds if weights_path(run, config, f).is_file()]
    if not saved:
        return False, (f"Grad-CAM overlays need a fold's kept weights (in "
                       f"{weights_path(run, config, 0).parent}); none are kept for {config}. "
                       f"Keep them with `python -m cxrlib run --profile {profile} --run {run} "
                       f"--configs {config} --folds K --save-weights-folds K` (a finished fold "
                       f"is not trained again: move its folder away first).")
    return True, f"Grad-CAM overlays available for fold(s) {', '.join(map(str, saved))}."


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A heat map (0-1, any size) over a grey image, as RGB uint8 (colour map 'jet')."""
    import matplotlib

    from PIL import Image

    h, w_ = pixels.shape[:2]
    heat = np.asarray(Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8))
                      .resize((w_, h), Image.BILINEAR), dtype=float) / 255
    colour = matplotlib.colormaps["jet"](heat)[..., :3]
    grey = np.repeat(pixels[..., None].astype(float) / 255, 3, axis=2)
    return (255 * ((1 - alpha) * grey + alpha * colour)).clip(0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# The prediction explorer


class PredictionExplorer:
    """A run's out-of-fold predictions: confusion matrix, and the images behind each cell.

    ``PredictionExplorer(run=None, results_root=None)``: ``run`` is a name under the results
    store or a folder (default: the run the book shows). State: ``run``, ``config``, ``fold``
    (``"all"`` or a test fold) and ``cell`` (``(predicted, actual)`` or None for every image).
    """

    def __init__(self, run: str | Path | None = None, results_root: str | Path | None = None,
                 page_size: int = PAGE_SIZE):
        first = resolve_run(run, results_root)
        self.results_root = first.parent
        self.page_size = page_size
        self.show_gradcam = False
        self._widget = None
        self._gradcam_cache: dict = {}
        self.set_run(first.name)

    # --- state ---------------------------------------------------------------------------

    @property
    def runs(self) -> list[str]:
        """The runs to choose from: those with results beside the current one (itself included,
        should it sit in a folder of its own)."""
        found = runs_with_results(self.results_root)
        return found if self.run in found else found + [self.run]

    def set_run(self, run: str) -> None:
        run_path = self.results_root / run
        configs = require_results(run_path)
        self.run, self.run_path, self.configs = run, run_path, configs
        self.profile = report.run_profile(run_path)
        self.classes = tuple(report.run_classes(run_path))
        self.synthetic = run_is_synthetic(run_path)
        self.images_dir = run_images_dir(run_path)
        self.set_config(configs[0])

    def set_config(self, config: str) -> None:
        if config not in self.configs:
            raise ValueError(f"run {self.run!r} has no results for {config!r}; it has "
                             f"{self.configs}")
        self.config = config
        self.table = scored_predictions(report.predictions(self.run_path, config), self.classes)
        self.folds = sorted(int(f) for f in self.table["fold"].unique())
        self.fold, self.cell, self.page = ALL, None, 0

    def set_fold(self, fold) -> None:
        if fold != ALL and int(fold) not in self.folds:
            raise ValueError(f"{self.config} has folds {self.folds} (or {ALL!r}), not {fold!r}")
        self.fold = ALL if fold == ALL else int(fold)
        self.page = 0

    def select_cell(self, predicted: str, actual: str) -> pd.DataFrame:
        """Choose the matrix cell (row ``predicted``, column ``actual``); returns its images."""
        for name, value in (("predicted", predicted), ("actual", actual)):
            if value not in self.classes:
                raise ValueError(f"{name} class {value!r} is not one of {list(self.classes)}")
        self.cell, self.page = (predicted, actual), 0
        return self.listing()

    def clear_cell(self) -> None:
        self.cell, self.page = None, 0

    def set_page(self, page: int) -> int:
        self.page = int(min(max(page, 0), self.n_pages - 1))
        return self.page

    # --- what is shown -------------------------------------------------------------------

    def current(self) -> pd.DataFrame:
        """The chosen fold's predictions (all folds pooled for ``"all"``)."""
        return self.table if self.fold == ALL else self.table[self.table["fold"] == self.fold]

    def confusion(self) -> pd.DataFrame:
        return metrics.confusion(self.current(), self.classes)

    def listing(self) -> pd.DataFrame:
        """The chosen cell's images (every image without a cell), misclassified first."""
        frame = self.current()
        if self.cell is not None:
            predicted, actual = self.cell
            frame = frame[(frame["predicted"] == predicted) & (frame["label"] == actual)]
        return misclassified_first(frame)

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.listing()) // self.page_size))

    def page_rows(self) -> pd.DataFrame:
        start = self.page * self.page_size
        return self.listing().iloc[start:start + self.page_size]

    @property
    def show_images(self) -> bool:
        return self.images_dir is not None and images_may_be_shown(self.synthetic)

    def description(self) -> str:
        frame = self.current()
        fold = f"all {len(self.folds)} test folds" if self.fold == ALL else f"test fold {self.fold}"
        kind = "synthetic demonstration" if self.synthetic else "real data"
        profile = self.profile.name if self.profile else "?"
        return (f"Run {self.run} (profile {profile}, {kind}): {config_description(self.config)}, "
                f"{fold}: {len(frame)} images, accuracy {percent(frame['correct'].mean())}")

    def cell_text(self) -> str:
        if self.cell is None:
            return f"Every image of the {len(self.current())}, misclassified first."
        predicted, actual = self.cell
        n = len(self.listing())
        return (f"Actual {actual}, predicted {predicted}: {n} image(s)"
                + ("" if predicted == actual else ", all misclassified") + ".")

    def matrix_html(self) -> str:
        """The confusion matrix (rows predicted, columns actual); colour = share of the column."""
        cm = self.confusion()
        counts = cm.to_numpy(dtype=float)
        totals = counts.sum(axis=0)
        head = "".join(f"<th>{esc(c)}</th>" for c in cm.columns)
        body = []
        for i, predicted in enumerate(cm.index):
            cells = []
            for j, actual in enumerate(cm.columns):
                share = counts[i, j] / totals[j] if totals[j] else 0.0
                hue = "46,125,50" if i == j else "198,40,40"
                chosen = ' class="chosen"' if self.cell == (predicted, actual) else ""
                cells.append(f'<td{chosen} style="background:rgba({hue},'
                             f'{0.08 + 0.7 * share:.2f})">{int(counts[i, j])}</td>')
            body.append(f"<tr><th>{esc(predicted)}</th>{''.join(cells)}</tr>")
        return ('<table class="cxr-cm">'
                '<thead><tr><th>predicted \\ actual</th>' + head + "</tr></thead><tbody>"
                + "".join(body) + "</tbody></table>")

    def probabilities_text(self, row: pd.Series, top: int = 3) -> str:
        probs = {c: float(row[metrics.probability_column(c)]) for c in self.classes}
        best = sorted(probs.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{c} {p:.2f}" for c, p in best)

    def gradcam_status(self) -> tuple[bool, str]:
        folds = self.folds if self.fold == ALL else [self.fold]
        return gradcam_status(self.run, self.config, folds,
                              self.profile.name if self.profile else "PROFILE")

    def gradcam_uris(self, rows: pd.DataFrame) -> dict[str, str]:
        """Grad-CAM overlays (data URIs) of ``rows`` whose fold has saved weights."""
        available, _ = self.gradcam_status()
        if not (available and self.show_images):
            return {}
        from . import explain

        gradcam = getattr(explain, GRADCAM_FUNCTION)

        def key(image_id: str) -> tuple:
            return self.run, self.config, image_id

        out = {}
        for fold, part in rows.groupby("fold"):
            if not weights_path(self.run, self.config, int(fold)).is_file():
                continue
            predicted = part.set_index("image_id")["predicted"]
            pixels = {i: load_pixels(self.images_dir, i) for i in part["image_id"]
                      if key(i) not in self._gradcam_cache}
            todo = [i for i, p in pixels.items() if p is not None]
            if todo:
                # the class mapped is the one the model answered: what drove its answer
                maps = gradcam(self.run_path, self.config, int(fold),
                               np.stack([pixels[i] for i in todo]), list(predicted[todo]))
                for i, heat in zip(todo, maps):
                    self._gradcam_cache[key(i)] = image_data_uri(overlay(pixels[i], heat))
            out.update({i: self._gradcam_cache[key(i)] for i in part["image_id"]
                        if key(i) in self._gradcam_cache})
        return out

    def row_html(self, row: pd.Series, gradcam: dict[str, str] | None = None,
                 side: int = 72, sheet: ThumbnailSheet | None = None) -> str:
        pictures = ""
        if self.show_images:
            pictures = thumbnail_html(self.images_dir, row["image_id"], side, sheet)
            if gradcam and row["image_id"] in gradcam:
                pictures += img_tag(gradcam[row["image_id"]], "Grad-CAM", side)
        verdict = "correct" if row["correct"] else "misclassified"
        return (f'<div class="cxr-row cxr-prediction{" ok" if row["correct"] else ""}">'
                f'{pictures}<div><code>{esc(row["image_id"])}</code> '
                f'<span class="verdict">{verdict}</span>: '
                f'actual {esc(row["label"])}, predicted {esc(row["predicted"])} '
                f'(p = {row["confidence"]:.2f}; p of the actual class {row["p_actual"]:.2f})'
                f'<br><small>fold {int(row["fold"])}, '
                f'patient {esc(row.get("patient_id", ""))}, source {esc(row.get("source", ""))}; '
                f'highest probabilities: {esc(self.probabilities_text(row))}</small>'
                "</div></div>")

    def listing_html(self) -> str:
        rows = self.page_rows()
        parts = [CSS, f"<p><b>{esc(self.cell_text())}</b> (page {self.page + 1} of "
                 f"{self.n_pages})</p>"]
        if not images_may_be_shown(self.synthetic):
            parts.append(f"<p><em>{esc(HIDDEN_IMAGES_NOTE)}</em></p>")
        elif self.images_dir is None:
            parts.append("<p><em>The curated images of this run are not on this machine.</em></p>")
        if self.show_gradcam:
            parts.append(f"<p><em>{esc(self.gradcam_status()[1])}</em></p>")
        gradcam = self.gradcam_uris(rows) if self.show_gradcam else {}
        parts += [self.row_html(row, gradcam) for _, row in rows.iterrows()]
        return "".join(parts)

    def render_html(self) -> str:
        return (f"<p>{esc(self.description())}</p>" + self.matrix_html()
                + self.listing_html())

    # --- live widget ---------------------------------------------------------------------

    @property
    def widget(self):
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _build_widget(self):
        import ipywidgets as w

        wide = {"description_width": "initial"}
        self.run_control = w.Dropdown(options=self.runs, value=self.run, description="run",
                                      style=wide)
        self.config_control = w.Dropdown(description="configuration", style=wide)
        self.fold_control = w.Dropdown(description="fold", style=wide)
        self.gradcam_control = w.Checkbox(value=self.show_gradcam,
                                          description="Grad-CAM overlays")
        self.all_button = w.Button(description="every image", tooltip="leave the cell")
        self.previous_button = w.Button(description="previous", icon="arrow-left")
        self.next_button = w.Button(description="next", icon="arrow-right")
        self.header = w.HTML()
        self.matrix_box = w.GridBox(layout=w.Layout(grid_gap="2px"))
        self.output = w.HTML()
        self._syncing = False

        def guarded(action):
            def handler(change):
                if not self._syncing:
                    action(change["new"])
                    self.refresh()
            return handler

        self.run_control.observe(guarded(self.set_run), names="value")
        self.config_control.observe(guarded(self.set_config), names="value")
        self.fold_control.observe(guarded(self.set_fold), names="value")
        self.gradcam_control.observe(
            guarded(lambda v: setattr(self, "show_gradcam", bool(v))), names="value")
        self.all_button.on_click(lambda _: (self.clear_cell(), self.refresh()))
        self.previous_button.on_click(lambda _: (self.set_page(self.page - 1), self.refresh()))
        self.next_button.on_click(lambda _: (self.set_page(self.page + 1), self.refresh()))
        self.refresh()
        return w.VBox([w.HBox([self.run_control, self.config_control, self.fold_control]),
                       self.header, self.matrix_box,
                       w.HBox([self.all_button, self.gradcam_control, self.previous_button,
                               self.next_button]),
                       self.output])

    def _matrix_buttons(self) -> list:
        """The matrix as buttons (a click lists the cell's images), made once per class set
        and updated in place: new buttons on every click would pile up in the kernel."""
        import ipywidgets as w

        if getattr(self, "_button_classes", None) != self.classes:
            for old in getattr(self, "_matrix_items", []):
                old.close()
            self._button_classes, self.cell_buttons = self.classes, {}
            items = [w.HTML("<b>predicted \\ actual</b>")]
            items += [w.HTML(f"<b>{esc(c)}</b>") for c in self.classes]
            for predicted in self.classes:
                items.append(w.HTML(f"<b>{esc(predicted)}</b>"))
                for actual in self.classes:
                    button = w.Button(tooltip=f"actual {actual}, predicted {predicted}",
                                      layout=w.Layout(width="auto"))
                    button.on_click(lambda _, p=predicted, a=actual:
                                    (self.select_cell(p, a), self.refresh()))
                    self.cell_buttons[(predicted, actual)] = button
                    items.append(button)
            self._matrix_items = items
        cm = self.confusion()
        for (predicted, actual), button in self.cell_buttons.items():
            count = int(cm.at[predicted, actual])
            button.description = str(count)
            button.button_style = "" if count == 0 else (
                "success" if predicted == actual else "danger")
            button.icon = "check" if self.cell == (predicted, actual) else ""
        return self._matrix_items

    def refresh(self) -> None:
        if not hasattr(self, "output"):
            return

        self._syncing = True
        try:
            self.run_control.options = self.runs
            self.run_control.value = self.run
            self.config_control.options = [(config_description(c), c) for c in self.configs]
            self.config_control.value = self.config
            self.fold_control.options = [("all folds", ALL)] + [(f"fold {f}", f)
                                                                for f in self.folds]
            self.fold_control.value = self.fold
            self.gradcam_control.value = self.show_gradcam
        finally:
            self._syncing = False
        available, why = self.gradcam_status()
        self.gradcam_control.disabled = not (available and self.show_images)
        self.gradcam_control.tooltip = why
        self.header.value = f"<p>{esc(self.description())}</p>"
        self.matrix_box.children = self._matrix_buttons()
        self.matrix_box.layout.grid_template_columns = \
            f"auto repeat({len(self.classes)}, minmax(3em, auto))"
        self.output.value = self.listing_html()

    # --- the book ------------------------------------------------------------------------

    def config_view_html(self, config: str, rows_per_cell: int = BOOK_ROWS_PER_CELL,
                         rows_per_correct_cell: int = BOOK_ROWS_PER_CORRECT_CELL,
                         sheet: ThumbnailSheet | None = None) -> str:
        """One configuration, all folds: the matrix and, per non-empty cell (mistakes first,
        largest first), its images in a collapsible list."""
        saved = (self.config, self.fold, self.cell)
        self.set_config(config)
        try:
            cm = self.confusion()
            cells = [(p, a, int(cm.at[p, a])) for p in cm.index for a in cm.columns
                     if cm.at[p, a] > 0]
            cells.sort(key=lambda c: (c[0] == c[1], -c[2]))
            parts = [f"<p>{esc(self.description())}</p>", self.matrix_html()]
            if not images_may_be_shown(self.synthetic):
                parts.append(f"<p><em>{esc(HIDDEN_IMAGES_NOTE)}</em></p>")
            for predicted, actual, count in cells:
                self.cell = (predicted, actual)
                shown = rows_per_correct_cell if predicted == actual else rows_per_cell
                more = f", the {shown} most confident shown" if count > shown else ""
                kind = "correct" if predicted == actual else "misclassified"
                rows = self.listing().iloc[:shown]
                parts.append(
                    f'<details><summary>actual <b>{esc(actual)}</b>, predicted '
                    f"<b>{esc(predicted)}</b>: {count} {kind}{more}</summary>"
                    + "".join(self.row_html(r, side=BOOK_THUMBNAIL_SIDE, sheet=sheet)
                              for _, r in rows.iterrows())
                    + "</details>")
            return "".join(parts)
        finally:
            self.set_config(saved[0])
            self.fold, self.cell = saved[1], saved[2]

    def book_view(self, rows_per_cell: int = BOOK_ROWS_PER_CELL,
                  rows_per_correct_cell: int = BOOK_ROWS_PER_CORRECT_CELL):
        """Per configuration: the frozen view, switched by a dropdown in the page."""
        sheet = ThumbnailSheet(self.images_dir, BOOK_THUMBNAIL_SIDE) if self.show_images \
            else None
        views = [self.config_view_html(c, rows_per_cell, rows_per_correct_cell, sheet)
                 for c in self.configs]
        head = CSS + (sheet.style_html() if sheet else "")
        if view_size([head, *views]) > BOOK_VIEW_MAX_BYTES:
            return static_fallback(CSS + self.config_view_html(self.config, rows_per_cell,
                                                         rows_per_correct_cell),
                                   "prediction explorer")
        return frozen_selector([config_description(c) for c in self.configs], views,
                               "configuration", head)


# --------------------------------------------------------------------------------------------
# The threshold explorer


@dataclass(frozen=True)
class PaperPoint:
    """The paper's COVID-19-vs-rest operating point for one configuration (fractions)."""

    sensitivity: float | None
    specificity: float | None
    note: str


#: The paper's 2x2 tables, per strategy: (table number, key), and the figure table they go with.
PAPER_COUNTS = {"off_the_shelf": (3, 1), "from_scratch": (7, 5)}


def paper_operating_point(config: str) -> PaperPoint:
    """What the paper reports for ``config``.

    Tables 1 and 4 leave some specificities blank: for off-the-shelf features the 2x2 counts
    of Table 3 give it; for fine-tuning 1, 3 and 5 blocks only the sensitivity is known, so the
    point lies somewhere on a horizontal line.
    """
    strategy, blocks = parse_config(config)
    sensitivity = report.paper_figure(config, "sensitivity")
    specificity = report.paper_figure(config, "specificity")
    note = ""
    if strategy in PAPER_COUNTS:
        table, figures = PAPER_COUNTS[strategy]
        counts = paper.reported()["tables"][report.TABLE_KEYS[table]]
        rates = metrics.rates_from_counts(**{k: counts[k] for k in ("tp", "fp", "fn", "tn")})
        if specificity is None:
            specificity = 100 * rates["specificity"]
            note = (f"specificity from the counts of the paper's Table {table} (its Table "
                    f"{figures} leaves it blank)")
        if sensitivity is None:
            sensitivity = 100 * rates["sensitivity"]
    if sensitivity is None and specificity is None:
        return PaperPoint(None, None, f"the paper reports no figure for "
                                      f"{report.config_label(config)}")
    if specificity is None:
        note = ("the paper gives the sensitivity only (Table 4 leaves the specificity blank): "
                "its operating point lies somewhere on the dashed line")
    return PaperPoint(None if sensitivity is None else sensitivity / 100,
                      None if specificity is None else specificity / 100, note)


ROC_SIZE = 240
_ROC_PAD, _ROC_TOP = 34, 8


def roc_xy(specificity: float, sensitivity: float, size: int = ROC_SIZE) -> tuple[float, float]:
    """SVG coordinates of an operating point: x = 1 - specificity, y = sensitivity (up)."""
    span = size - _ROC_PAD - _ROC_TOP
    return _ROC_PAD + span * (1 - specificity), _ROC_TOP + span * (1 - sensitivity)


def roc_layers(fpr, tpr, argmax: tuple[float, float] | None, reported: PaperPoint | None,
               size: int = ROC_SIZE) -> str:
    """What a configuration's ROC plot shows whatever the threshold, as SVG elements: axes,
    the ROC curve, our arg-max point (open circle) and the paper's point (red cross) or, when
    it gives the sensitivity alone, its line (dashed)."""
    span = size - _ROC_PAD - _ROC_TOP
    left, top, bottom = _ROC_PAD, _ROC_TOP, _ROC_TOP + span
    parts = [f'<rect x="{left}" y="{top}" width="{span}" height="{span}" fill="none" '
             f'stroke="#999"/>',
             f'<line x1="{left}" y1="{bottom}" x2="{left + span}" y2="{top}" stroke="#ccc" '
             f'stroke-dasharray="3,3"/>']
    for v in (0, 0.5, 1):
        x, y = roc_xy(1 - v, v, size)
        parts.append(f'<text x="{x:.1f}" y="{bottom + 12}" text-anchor="middle">{v:g}</text>'
                     f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{v:g}</text>')
    parts.append(f'<text x="{left + span / 2}" y="{size - 2}" text-anchor="middle">'
                 f"1 - specificity</text><text x=\"10\" y=\"{top + span / 2}\" "
                 f'text-anchor="middle" transform="rotate(-90 10 {top + span / 2})">'
                 f"sensitivity</text>")
    if fpr is not None and len(fpr):
        coords = " ".join("{:.1f},{:.1f}".format(*roc_xy(1 - f, t, size))
                          for f, t in zip(fpr, tpr))
        parts.append(f'<polyline class="roc-curve" points="{coords}" fill="none" '
                     f'stroke="#1565c0" stroke-width="1.5"/>')
    if reported is not None and reported.sensitivity is not None:
        if reported.specificity is None:
            _, y = roc_xy(0, reported.sensitivity, size)
            parts.append(f'<line class="paper-line" x1="{left}" y1="{y:.1f}" '
                         f'x2="{left + span}" y2="{y:.1f}" stroke="{_RED}" '
                         f'stroke-dasharray="5,3"/>')
        else:
            x, y = roc_xy(reported.specificity, reported.sensitivity, size)
            parts.append(f'<g class="paper-point" stroke="{_RED}" stroke-width="2">'
                         f'<line x1="{x - 5:.1f}" y1="{y - 5:.1f}" x2="{x + 5:.1f}" '
                         f'y2="{y + 5:.1f}"/><line x1="{x - 5:.1f}" y1="{y + 5:.1f}" '
                         f'x2="{x + 5:.1f}" y2="{y - 5:.1f}"/></g>')
    if argmax is not None:
        x, y = roc_xy(*argmax, size)
        parts.append(f'<circle class="argmax-point" cx="{x:.1f}" cy="{y:.1f}" r="5" '
                     f'fill="none" stroke="#000" stroke-width="1.5"/>')
    return "".join(parts)


def roc_svg(layers: str, point: tuple[float, float] | None, size: int = ROC_SIZE) -> str:
    """The ROC plot: ``layers`` (see :func:`roc_layers`, or a ``<use>`` of them) with the
    threshold's operating point (filled circle) on top. Plain SVG, no figure library: a view
    costs a few kB, so the book can embed one per threshold."""
    marker = ""
    if point is not None:
        x, y = roc_xy(*point, size)
        marker = (f'<circle class="threshold-point" cx="{x:.1f}" cy="{y:.1f}" r="4.5" '
                  f'fill="#f9a825" stroke="#000"/>')
    return (f'<svg class="cxr-roc" xmlns="http://www.w3.org/2000/svg" width="{size}" '
            f'height="{size}" viewBox="0 0 {size} {size}" font-size="10" '
            f'font-family="sans-serif">{layers}{marker}</svg>')


def roc_symbol(symbol_id: str, layers: str, size: int = ROC_SIZE) -> str:
    """``layers`` defined once in the page, for ``<use href="#symbol_id"/>`` in every view of
    one configuration (the curve is the same at every threshold; only the point moves)."""
    return (f'<svg width="0" height="0" style="position:absolute" aria-hidden="true">'
            f'<symbol id="{symbol_id}" viewBox="0 0 {size} {size}" width="{size}" '
            f'height="{size}" font-size="10" font-family="sans-serif">{layers}</symbol></svg>')


class ThresholdExplorer:
    """COVID-19 against the rest at a probability threshold, for one configuration of a run.

    An image counts as COVID-19 when its COVID-19 probability is at least the threshold (so
    threshold 0 calls every image COVID-19). The paper decides by the highest probability
    instead; that operating point is marked too, with the paper's own where it reports one.
    """

    def __init__(self, run: str | Path | None = None, config: str | None = None,
                 threshold: float = 0.5, results_root: str | Path | None = None):
        self.run_path = resolve_run(run, results_root)
        self.configs = require_results(self.run_path)
        self.classes = tuple(report.run_classes(self.run_path))
        if paper.POSITIVE_CLASS not in self.classes:
            raise ValueError(f"run {self.run_path.name!r} has no {paper.POSITIVE_CLASS} class "
                             f"(classes: {', '.join(self.classes)}): no threshold to explore")
        self.synthetic = run_is_synthetic(self.run_path)
        self._widget = None
        self.threshold = 0.5
        self.set_config(config or self.configs[-1])
        self.set_threshold(threshold)

    # --- state ---------------------------------------------------------------------------

    def set_config(self, config: str) -> None:
        if config not in self.configs:
            raise ValueError(f"run {self.run_path.name!r} has no results for {config!r}; it "
                             f"has {self.configs}")
        from sklearn.metrics import roc_curve

        self.config = config
        pred = report.predictions(self.run_path, config)
        self.scores = pred[metrics.probability_column(paper.POSITIVE_CLASS)].to_numpy(float)
        self.actual = pred["label"].to_numpy() == paper.POSITIVE_CLASS
        both_sides = self.actual.any() and not self.actual.all()
        if both_sides:
            fpr, tpr, _ = roc_curve(self.actual, self.scores)
            self.fpr, self.tpr = fpr, tpr
        else:
            self.fpr = self.tpr = None
        self.auc = metrics.covid_auc(pred)
        two = metrics.covid_vs_rest(pred, self.classes)
        self.argmax = (two["specificity"], two["sensitivity"])
        self.paper_point = paper_operating_point(config)
        self.comparable, self.comparability_note = report.comparability(self.run_path,
                                                                        "sensitivity")

    def set_threshold(self, threshold: float) -> None:
        threshold = float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"the threshold is a probability, 0 to 1; got {threshold}")
        self.threshold = threshold

    # --- what is shown -------------------------------------------------------------------

    def counts(self, threshold: float | None = None) -> dict[str, int]:
        t = self.threshold if threshold is None else threshold
        said = self.scores >= t
        return {"tp": int(np.sum(said & self.actual)), "fp": int(np.sum(said & ~self.actual)),
                "fn": int(np.sum(~said & self.actual)), "tn": int(np.sum(~said & ~self.actual))}

    def rates(self, threshold: float | None = None) -> dict[str, float]:
        return metrics.rates_from_counts(**self.counts(threshold))

    def operating_point(self, threshold: float | None = None) -> tuple[float, float]:
        """(specificity, sensitivity) at the threshold."""
        r = self.rates(threshold)
        return r["specificity"], r["sensitivity"]

    def figures_text(self, threshold: float | None = None) -> str:
        t = self.threshold if threshold is None else threshold
        c, r = self.counts(t), self.rates(t)
        return (f"threshold {t:.2f}: sensitivity {percent(r['sensitivity'])} "
                f"({c['tp']} of {c['tp'] + c['fn']} COVID-19 images found), specificity "
                f"{percent(r['specificity'])} ({c['tn']} of {c['tn'] + c['fp']} others cleared), "
                f"2-class accuracy {percent(r['acc_2class'])}")

    def paper_text(self) -> str:
        p = self.paper_point
        if p.sensitivity is None:
            text = p.note
        else:
            specificity = "not reported" if p.specificity is None else percent(p.specificity)
            text = (f"the paper (arg-max rule): sensitivity {percent(p.sensitivity)}, "
                    f"specificity {specificity}" + (f"; {p.note}" if p.note else ""))
        if not self.comparable or self.comparability_note:
            text += f". Comparability: {self.comparability_note or 'not comparable'}"
        return text

    def heading_html(self) -> str:
        kind = "synthetic demonstration" if self.synthetic else "real data"
        return (f"<p>Run {esc(self.run_path.name)} ({kind}): "
                f"{esc(config_description(self.config))}</p>")

    def notes_html(self) -> str:
        """The legend and the paper's point: the same at every threshold."""
        if np.isfinite(self.auc):
            legend = (f'<span style="color:#f9a825">&#9679;</span> this threshold; &#9675; our '
                      f"arg-max rule (specificity {percent(self.argmax[0])}, sensitivity "
                      f"{percent(self.argmax[1])}); <span style=\"color:{_RED}\">&#10005;"
                      f"</span> the paper; ROC AUC {self.auc:.3f}")
        else:
            legend = "No ROC curve: it needs COVID-19 and other images."
        return (f'<p class="cxr-small">{legend}</p>'
                f'<p class="cxr-small">{esc(self.paper_text())}</p>')

    def threshold_html(self, threshold: float | None = None, layers: str | None = None) -> str:
        """The figures, the 2x2 matrix and the ROC point at ``threshold``."""
        t = self.threshold if threshold is None else threshold
        matrix = metrics.two_by_two(self.counts(t))
        matrix.index.name = "predicted \\ actual"
        if layers is None:
            layers = roc_layers(self.fpr, self.tpr, self.argmax, self.paper_point)
        svg = roc_svg(layers, self.operating_point(t))
        return (f'<p class="cxr-threshold"><b>{esc(self.figures_text(t))}</b></p>'
                f'<div class="cxr-side">{svg}'
                f"{html_table(matrix)}</div>")

    def render_html(self, threshold: float | None = None) -> str:
        return CSS + self.heading_html() + self.threshold_html(threshold) + self.notes_html()

    # --- live widget ---------------------------------------------------------------------

    @property
    def widget(self):
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _build_widget(self):
        import ipywidgets as w

        self.config_control = w.Dropdown(
            options=[(config_description(c), c) for c in self.configs], value=self.config,
            description="configuration", style={"description_width": "initial"})
        self.slider = w.FloatSlider(value=self.threshold, min=0.0, max=1.0, step=0.01,
                                    description="threshold", readout_format=".2f",
                                    continuous_update=True)
        self.output = w.HTML()
        self.config_control.observe(lambda ch: (self.set_config(ch["new"]), self.refresh()),
                                    names="value")
        self.slider.observe(lambda ch: (self.set_threshold(ch["new"]), self.refresh()),
                            names="value")
        self.refresh()
        return w.VBox([self.config_control, self.slider, self.output])

    def refresh(self) -> None:
        if hasattr(self, "output"):
            self.output.value = self.render_html()

    # --- the book ------------------------------------------------------------------------

    def config_panel(self, config: str, thresholds=BOOK_THRESHOLDS, start: float = 0.5):
        """One configuration's frozen view: a slider over the precomputed thresholds. The ROC
        curve is defined once per configuration and reused by every threshold's view."""
        import ipywidgets as w

        saved = self.config
        self.set_config(config)
        try:
            symbol = "cxr-roc-" + "".join(ch if ch.isalnum() else "-"
                                          for ch in f"{self.run_path.name}-{config}")
            layers = roc_layers(self.fpr, self.tpr, self.argmax, self.paper_point)
            views = [self.threshold_html(t, f'<use href="#{symbol}"/>') for t in thresholds]
            fixed = CSS + self.heading_html() + roc_symbol(symbol, layers)
            notes = self.notes_html()
        finally:
            self.set_config(saved)
        first = int(np.argmin([abs(t - start) for t in thresholds]))
        slider = w.SelectionSlider(options=[f"{t:.2f}" for t in thresholds], index=first,
                                   description="threshold", continuous_update=True)
        stack = w.Stack(html_views(views), selected_index=first)
        w.jslink((slider, "index"), (stack, "selected_index"))
        size = view_size([fixed, notes, *views])
        return w.VBox([w.HTML(fixed), slider, stack, w.HTML(notes)]), size

    def book_view(self, thresholds=BOOK_THRESHOLDS, start: float = 0.5):
        """Per configuration, a threshold slider over precomputed views (steps of 0.05)."""
        import ipywidgets as w

        panels, sizes = zip(*(self.config_panel(c, thresholds, start) for c in self.configs))
        if sum(sizes) > BOOK_VIEW_MAX_BYTES:
            return static_fallback(self.render_html(start), "threshold explorer")
        chooser = w.Dropdown(options=[config_description(c) for c in self.configs], index=0,
                             description="configuration",
                             style={"description_width": "initial"},
                             layout=w.Layout(width="max-content"))
        outer = w.Stack(list(panels), selected_index=0)
        w.jslink((chooser, "index"), (outer, "selected_index"))
        return w.VBox([chooser, outer])


# --------------------------------------------------------------------------------------------
# For the notebooks and the book's chapter: an explorer, or a note saying what is missing


def _or_note(make, what: str, errors=(FileNotFoundError,)):
    try:
        return make()
    except errors as error:
        return note(f"*The {what} has nothing to show here: {error}.*")


def explore_dataset(curated: str | Path):
    """The live dataset explorer of a curated folder (notebook 01)."""
    return _or_note(lambda: DatasetExplorer(curated), "dataset explorer")


def explore_predictions(run_path: str | Path):
    """The live prediction explorer of a run (notebook 05)."""
    return _or_note(lambda: PredictionExplorer(run_path), "prediction explorer")


def explore_threshold(run_path: str | Path):
    """The live threshold explorer of a run (notebook 05)."""
    return _or_note(lambda: ThresholdExplorer(run_path), "threshold explorer",
                    (FileNotFoundError, ValueError))


def dataset_book_view(run_path: str | Path):
    return _or_note(lambda: DatasetExplorer.for_run(run_path).book_view(), "dataset explorer")


def prediction_book_view(run_path: str | Path):
    return _or_note(lambda: PredictionExplorer(run_path).book_view(), "prediction explorer")


def threshold_book_view(run_path: str | Path):
    return _or_note(lambda: ThresholdExplorer(run_path).book_view(), "threshold explorer",
                    (FileNotFoundError, ValueError))
