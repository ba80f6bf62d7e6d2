"""What every explorer shares: its state, its live widget, its frozen book view, paging.

An explorer is a class whose state changes only through small methods (``set_filters``,
``set_config``, ``select_cell``, ``set_threshold``, ``set_page``) that the widgets call and that
tests and notebooks can call directly. It is shown two ways:

- ``explorer.widget`` (or the explorer as a cell's last value): live controls, built on first
  use by ``_build_widget``; every change goes through the methods above, then ``refresh``
  redraws what the controls show (``update_widget``).
- ``explorer.book_view()``: for the static HTML book, where no Python runs. The views of a few
  choices are computed when the book is built and a selector switches between them in the
  browser (``ipywidgets.jslink`` to a ``Stack``), so the embedded widget state still responds.
  Where that state would be too large, a static rendering of the explorer's current state.
"""
from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as w
import pandas as pd
from IPython.display import HTML, Markdown
from ipywidgets.widgets.widget_string import HTMLStyle

from cxrlib.analysis import tables
from cxrlib.core.profiles import parse_config
from cxrlib.experiment import runs
from cxrlib.explore.markup import esc
from cxrlib.report.curation_figures import SHOW_REAL_ENV as SHOW_REAL_IMAGES_ENV

ALL = "all"
PAGE_SIZE = 12
#: Above this many bytes of precomputed views, a book view falls back to a static rendering
#: (every byte is embedded in the page as widget state).
BOOK_VIEW_MAX_BYTES = 2_500_000
HIDDEN_IMAGES_NOTE = (
    "Images are not shown: these are real radiographs. They appear only where the data lives "
    f"and `{SHOW_REAL_IMAGES_ENV}=1` is set, so that no committed file embeds an X-ray.")


def real_images_allowed() -> bool:
    """The curation notebook's rule (:mod:`cxrlib.report.curation_figures`): exactly "1" opts in."""
    return os.environ.get(SHOW_REAL_IMAGES_ENV) == "1"


def images_may_be_shown(synthetic: bool) -> bool:
    """Synthetic images always; real radiographs only when asked for where the data lives."""
    return bool(synthetic) or real_images_allowed()


# --------------------------------------------------------------------------------------------
# The protocol


class Explorer:
    """The live widget, built once, and the book view's fallback. Subclasses give
    ``_build_widget`` (which sets ``self.output``), ``update_widget``, ``render_html`` and
    ``book_view``, and name themselves in ``what``."""

    what = "explorer"
    _widget = None
    #: The live widget's main HTML output; None until the widget is built.
    output = None

    @property
    def widget(self):
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _build_widget(self):
        raise NotImplementedError

    def refresh(self) -> None:
        """Redraw the live widget after a change of state (nothing to do before it is built)."""
        if self.output is not None:
            self.update_widget()

    def update_widget(self) -> None:
        raise NotImplementedError

    def render_html(self) -> str:
        raise NotImplementedError

    def book_view(self):
        raise NotImplementedError

    def frozen_view(self, labels: list[str], views: list[str], description: str,
                    head: str, static) -> object:
        """The precomputed ``views`` behind a dropdown, or, should they embed too much in the
        page, ``static()`` (the HTML of the current state) with a note saying so."""
        if too_large(view_size([head, *views])):
            return static_fallback(static(), self.what)
        return frozen_selector(labels, views, description, head)


class PagedExplorer(Explorer):
    """An explorer that lists images (``listing``), a page of ``page_size`` at a time."""

    page_size = PAGE_SIZE
    page = 0

    def listing(self) -> pd.DataFrame:
        raise NotImplementedError

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.listing()) // self.page_size))

    def set_page(self, page: int) -> int:
        """Go to ``page`` (0-based), kept inside the pages there are; returns the page."""
        self.page = int(min(max(page, 0), self.n_pages - 1))
        return self.page

    def page_rows(self) -> pd.DataFrame:
        start = self.page * self.page_size
        return self.listing().iloc[start:start + self.page_size]

    def paging_buttons(self) -> list:
        """The previous and next buttons, wired to :meth:`set_page`."""
        self.previous_button = w.Button(description="previous", icon="arrow-left")
        self.next_button = w.Button(description="next", icon="arrow-right")
        self.previous_button.on_click(lambda _: (self.set_page(self.page - 1), self.refresh()))
        self.next_button.on_click(lambda _: (self.set_page(self.page + 1), self.refresh()))
        return [self.previous_button, self.next_button]


# --------------------------------------------------------------------------------------------
# Frozen views for the book


def html_views(views: list[str]) -> list:
    """HTML widgets for precomputed views, sharing one layout and one style: the page embeds
    every widget's full state, and a layout alone is about 1 kB of it."""
    layout, style = w.Layout(), HTMLStyle()
    return [w.HTML(v, layout=layout, style=style) for v in views]


def selector(labels: list[str], children: list, description: str, head: str = ""):
    """A dropdown that switches between ``children`` in the browser, kernel or not; ``head``
    (e.g. a thumbnail sheet's style) is shown above them, once."""
    chooser = w.Dropdown(options=list(labels), index=0, description=description,
                         style={"description_width": "initial"},
                         layout=w.Layout(width="max-content"))
    stack = w.Stack(children, selected_index=0)
    w.jslink((chooser, "index"), (stack, "selected_index"))
    return w.VBox(([w.HTML(head)] if head else []) + [chooser, stack])


def frozen_selector(labels: list[str], views: list[str], description: str, head: str = ""):
    """A dropdown over precomputed HTML views."""
    return selector(labels, html_views(views), description, head)


def view_size(views) -> int:
    return sum(len(v.encode()) for v in views)


def too_large(size: int) -> bool:
    return size > BOOK_VIEW_MAX_BYTES


def static_fallback(html_text: str, what: str):
    return HTML(f'<p><em>The interactive {esc(what)} would embed too much in this page; '
                f'shown as it stands. Open it in JupyterLab for every choice.</em></p>'
                + html_text)


def note(markdown: str):
    return Markdown(markdown)


def or_note(make, what: str, errors=(FileNotFoundError,)):
    """``make()``, or a note saying why the ``what`` has nothing to show here."""
    try:
        return make()
    except errors as error:
        return note(f"*The {what} has nothing to show here: {error}.*")


# --------------------------------------------------------------------------------------------
# What the prediction and threshold explorers need of a run (found by :mod:`cxrlib.experiment.runs`)


def require_results(run_path: Path) -> list[str]:
    """The run's configurations with a finished fold; FileNotFoundError (saying what to run)
    when there is none."""
    if not (run_path / "profile.json").is_file():
        raise FileNotFoundError(f"{run_path} holds no run (no profile.json): make one with "
                                f"`python -m cxrlib book` or `python -m cxrlib run`")
    configs = [c for c in runs.run_configs(run_path) if runs.has_results(run_path, c)]
    if not configs:
        raise FileNotFoundError(f"run {run_path.name!r} has no finished fold yet: "
                                f"`python -m cxrlib run --profile ... --run {run_path.name}`")
    return configs


def run_is_synthetic(run_path: Path) -> bool:
    profile = runs.run_profile(run_path)
    return profile is not None and profile.dataset == "synthetic"


def run_images_dir(run_path: Path) -> Path | None:
    folder = runs.curated_dir(run_path)
    return folder / "images" if folder is not None and (folder / "images").is_dir() else None


def config_description(config: str) -> str:
    """``Fine-tuning 7 (strategy fine_tune, 7 trainable blocks)``."""
    strategy, blocks = parse_config(config)
    detail = f"strategy {strategy}" + (f", {blocks} trainable blocks" if strategy == "fine_tune"
                                       else "")
    return f"{tables.config_label(config)} ({detail})"
