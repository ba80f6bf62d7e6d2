"""The threshold explorer: COVID-19 against the rest when an image counts as COVID-19 once its
COVID-19 probability reaches a threshold: sensitivity, specificity, the 2x2 matrix and the
operating point on the ROC curve, beside our arg-max point (how the paper decides) and the
paper's own point where it reports one."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ipywidgets as w
import numpy as np
from sklearn.metrics import roc_curve

from cxrlib.analysis import comparison, tables
from cxrlib.core import metrics, paper
from cxrlib.core.profiles import parse_config
from cxrlib.experiment import results, runs
from cxrlib.explore.base import (
    Explorer,
    config_description,
    html_views,
    require_results,
    run_is_synthetic,
    selector,
    static_fallback,
    too_large,
    view_size,
)
from cxrlib.explore.markup import CSS, RED, esc, html_table, percent
from cxrlib.explore.roc import roc_layers, roc_svg, roc_symbol

#: Thresholds the book's frozen threshold explorer offers (the live one moves in 0.01 steps).
BOOK_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))


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
    sensitivity = comparison.paper_figure(config, "sensitivity")
    specificity = comparison.paper_figure(config, "specificity")
    note = ""
    if strategy in PAPER_COUNTS:
        table, figures = PAPER_COUNTS[strategy]
        counts = paper.reported()["tables"][comparison.TABLE_KEYS[table]]
        rates = metrics.rates_from_counts(**{k: counts[k] for k in ("tp", "fp", "fn", "tn")})
        if specificity is None:
            specificity = 100 * rates["specificity"]
            note = (f"specificity from the counts of the paper's Table {table} (its Table "
                    f"{figures} leaves it blank)")
        if sensitivity is None:
            sensitivity = 100 * rates["sensitivity"]
    if sensitivity is None and specificity is None:
        return PaperPoint(None, None, f"the paper reports no figure for "
                                      f"{tables.config_label(config)}")
    if specificity is None:
        note = ("the paper gives the sensitivity only (Table 4 leaves the specificity blank): "
                "its operating point lies somewhere on the dashed line")
    return PaperPoint(None if sensitivity is None else sensitivity / 100,
                      None if specificity is None else specificity / 100, note)


class ThresholdExplorer(Explorer):
    """COVID-19 against the rest at a probability threshold, for one configuration of a run.

    An image counts as COVID-19 when its COVID-19 probability is at least the threshold (so
    threshold 0 calls every image COVID-19). The paper decides by the highest probability
    instead; that operating point is marked too, with the paper's own where it reports one.
    """

    what = "threshold explorer"

    def __init__(self, run: str | Path | None = None, config: str | None = None,
                 threshold: float = 0.5, results_root: str | Path | None = None):
        self.run_path = runs.resolve(run, results_root)
        self.configs = require_results(self.run_path)
        self.classes = runs.run_classes(self.run_path)
        if paper.POSITIVE_CLASS not in self.classes:
            raise ValueError(f"run {self.run_path.name!r} has no {paper.POSITIVE_CLASS} class "
                             f"(classes: {', '.join(self.classes)}): no threshold to explore")
        self.synthetic = run_is_synthetic(self.run_path)
        self.threshold = 0.5
        self.set_config(config or self.configs[-1])
        self.set_threshold(threshold)

    # --- state ---------------------------------------------------------------------------

    def set_config(self, config: str) -> None:
        if config not in self.configs:
            raise ValueError(f"run {self.run_path.name!r} has no results for {config!r}; it "
                             f"has {self.configs}")
        self.config = config
        pred = results.read_predictions(self.run_path, config)
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
        self.comparable, self.comparability_note = comparison.comparability(self.run_path,
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
                      f"{percent(self.argmax[1])}); <span style=\"color:{RED}\">&#10005;"
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

    def _build_widget(self):
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

    def update_widget(self) -> None:
        self.output.value = self.render_html()

    # --- the book ------------------------------------------------------------------------

    def config_panel(self, config: str, thresholds=BOOK_THRESHOLDS, start: float = 0.5):
        """One configuration's frozen view: a slider over the precomputed thresholds. The ROC
        curve is defined once per configuration and reused by every threshold's view."""
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
        panels, sizes = zip(*(self.config_panel(c, thresholds, start) for c in self.configs))
        if too_large(sum(sizes)):
            return static_fallback(self.render_html(start), self.what)
        return selector([config_description(c) for c in self.configs], list(panels),
                        "configuration")

