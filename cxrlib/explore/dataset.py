"""The dataset explorer: the curated manifest filtered by class, source, view, curation decision
and patient; each image with its metadata and what curation decided (used, or excluded and why;
its duplicate group; the patients a duplicate joined)."""
from __future__ import annotations

import json
from pathlib import Path

import ipywidgets as w
import numpy as np
import pandas as pd

from cxrlib.core import paper
from cxrlib.data.dataset import read_manifest, read_summary
from cxrlib.experiment import runs
from cxrlib.explore.base import (
    ALL,
    HIDDEN_IMAGES_NOTE,
    PAGE_SIZE,
    PagedExplorer,
    images_may_be_shown,
)
from cxrlib.explore.markup import (
    CSS,
    THUMBNAIL_SIDE,
    ThumbnailSheet,
    esc,
    html_table,
    thumbnail_html,
)


def class_order(labels) -> list[str]:
    """The paper's classes first, in its order, then any others alphabetically."""
    present = set(labels)
    return [c for c in paper.CLASSES if c in present] + sorted(present - set(paper.CLASSES))


def exclusion_text(row: pd.Series) -> str:
    """How an exclusion reason of :mod:`cxrlib.data.curate` reads, with the measure behind it."""
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


def _decision_mask(m: pd.DataFrame, decision: str) -> pd.Series:
    """The rows of manifest ``m`` whose curation decision is ``decision`` (see ``options``)."""
    if decision == "used":
        return m["excluded"] == ""
    if decision == "excluded":
        return m["excluded"] != ""
    if decision.startswith("excluded: "):
        return m["excluded"].str.split(":", n=1).str[0] == decision[len("excluded: "):]
    if decision == "in a duplicate group":
        return m.get("duplicate_group", pd.Series("", index=m.index)) != ""
    return pd.Series(True, index=m.index)


class DatasetExplorer(PagedExplorer):
    """Filter the curated manifest and see each image with its curation decision.

    ``DatasetExplorer(curated_folder)`` or ``DatasetExplorer.for_run(run_path)``. Filters:
    ``label``, ``source``, ``view`` and ``decision`` take one of :meth:`options`; ``patient``
    is a text matched (case-insensitively) inside the reconciled or the source's patient id.
    """

    FILTERS = ("label", "source", "view", "decision", "patient")
    what = "dataset explorer"

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

    @classmethod
    def for_run(cls, run_path: str | Path, **kwargs) -> "DatasetExplorer":
        """The explorer of the curated dataset a stored run was trained on."""
        run_path = runs.resolve(run_path)
        folder = runs.curated_dir(run_path)
        if folder is None:
            profile = runs.run_profile(run_path)
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
        keep &= _decision_mask(m, f["decision"])
        if f["patient"]:
            needle = f["patient"].lower()
            ids = m["patient_id"].str.lower()
            source_ids = m["source_patient_id"].str.lower() if "source_patient_id" in m else ids
            keep &= ids.str.contains(needle, regex=False) | \
                source_ids.str.contains(needle, regex=False)
        return m[keep]

    def listing(self) -> pd.DataFrame:
        return self.matching()

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

    def _build_widget(self):
        options = self.options()
        self.controls = {key: w.Dropdown(options=[(v or "(unknown)", v) for v in options[key]],
                                         value=self.filters[key], description=name)
                         for key, name in (("label", "class"), ("source", "source"),
                                           ("view", "view"), ("decision", "decision"))}
        self.controls["patient"] = w.Text(value=self.filters["patient"], description="patient",
                                          placeholder="patient id or part of it",
                                          continuous_update=False)
        previous_button, next_button = self.paging_buttons()
        self.page_label = w.Label()
        self.output = w.HTML()

        def on_filter(change, key):
            self.set_filters(**{key: change["new"]})
            self.refresh()

        for key, control in self.controls.items():
            control.observe(lambda change, key=key: on_filter(change, key), names="value")
        self.refresh()
        return w.VBox([w.HBox([self.controls["label"], self.controls["source"]]),
                       w.HBox([self.controls["view"], self.controls["decision"]]),
                       self.controls["patient"],
                       w.HBox([previous_button, self.page_label, next_button]),
                       self.output])

    def update_widget(self) -> None:
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
        names = ["all classes" if v == ALL else v for v in labels]
        return self.frozen_view(names, views, "class", CSS + sheet.style_html(),
                                lambda: CSS + self.class_view_html(ALL, cards))
