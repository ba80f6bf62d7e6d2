"""The prediction explorer: a run, a configuration (strategy and trainable blocks) and a test
fold, or all folds; the pooled confusion matrix, rows predicted and columns actual as the paper
prints it; the images of a chosen cell with their probabilities, misclassifications first, and
Grad-CAM overlays where a fold's weights were kept."""
from __future__ import annotations

from pathlib import Path

import ipywidgets as w
import numpy as np
import pandas as pd

from cxrlib.core import metrics
from cxrlib.experiment import results, runs
from cxrlib.explore.base import (
    ALL,
    HIDDEN_IMAGES_NOTE,
    PAGE_SIZE,
    PagedExplorer,
    config_description,
    images_may_be_shown,
    require_results,
    run_images_dir,
    run_is_synthetic,
)
from cxrlib.explore.gradcam import Overlays, gradcam_status
from cxrlib.explore.markup import CSS, ThumbnailSheet, esc, img_tag, percent, thumbnail_html

#: Images listed per confusion-matrix cell in the book's frozen prediction explorer: more for
#: mistakes (the telling images) than for correct answers; every byte is embedded in the page.
BOOK_ROWS_PER_CELL = 4
BOOK_ROWS_PER_CORRECT_CELL = 2
BOOK_THUMBNAIL_SIDE = 56


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


class PredictionExplorer(PagedExplorer):
    """A run's out-of-fold predictions: confusion matrix, and the images behind each cell.

    ``PredictionExplorer(run=None, results_root=None)``: ``run`` is a name under the results
    store or a folder (default: the run the book shows). State: ``run``, ``config``, ``fold``
    (``"all"`` or a test fold) and ``cell`` (``(predicted, actual)`` or None for every image).
    """

    what = "prediction explorer"

    def __init__(self, run: str | Path | None = None, results_root: str | Path | None = None,
                 page_size: int = PAGE_SIZE):
        first = runs.resolve(run, results_root)
        self.results_root = first.parent
        self.page_size = page_size
        self.show_gradcam = False
        self._overlays: dict[str, Overlays] = {}  # per run, kept when the reader switches back
        self.set_run(first.name)

    # --- state ---------------------------------------------------------------------------

    @property
    def runs(self) -> list[str]:
        """The runs to choose from: those with results beside the current one (itself included,
        should it sit in a folder of its own)."""
        found = runs.runs_with_results(self.results_root)
        return found if self.run in found else found + [self.run]

    def set_run(self, run: str) -> None:
        run_path = self.results_root / run
        configs = require_results(run_path)
        self.run, self.run_path, self.configs = run, run_path, configs
        self.profile = runs.run_profile(run_path)
        self.classes = runs.run_classes(run_path)
        self.synthetic = run_is_synthetic(run_path)
        self.images_dir = run_images_dir(run_path)
        self.overlays = self._overlays.setdefault(run, Overlays(run_path, self.images_dir))
        self.set_config(configs[0])

    def set_config(self, config: str) -> None:
        if config not in self.configs:
            raise ValueError(f"run {self.run!r} has no results for {config!r}; it has "
                             f"{self.configs}")
        self.config = config
        self.table = scored_predictions(results.read_predictions(self.run_path, config),
                                        self.classes)
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
        return self.overlays.for_rows(self.config, rows)

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

    def _build_widget(self):
        wide = {"description_width": "initial"}
        self.run_control = w.Dropdown(options=self.runs, value=self.run, description="run",
                                      style=wide)
        self.config_control = w.Dropdown(description="configuration", style=wide)
        self.fold_control = w.Dropdown(description="fold", style=wide)
        self.gradcam_control = w.Checkbox(value=self.show_gradcam,
                                          description="Grad-CAM overlays")
        self.all_button = w.Button(description="every image", tooltip="leave the cell")
        previous_button, next_button = self.paging_buttons()
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
        self.refresh()
        return w.VBox([w.HBox([self.run_control, self.config_control, self.fold_control]),
                       self.header, self.matrix_box,
                       w.HBox([self.all_button, self.gradcam_control, previous_button,
                               next_button]),
                       self.output])

    def _matrix_buttons(self) -> list:
        """The matrix as buttons (a click lists the cell's images), made once per class set
        and updated in place: new buttons on every click would pile up in the kernel."""
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

    def update_widget(self) -> None:
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
        return self.frozen_view(
            [config_description(c) for c in self.configs], views, "configuration",
            CSS + (sheet.style_html() if sheet else ""),
            lambda: CSS + self.config_view_html(self.config, rows_per_cell,
                                                rows_per_correct_cell))


