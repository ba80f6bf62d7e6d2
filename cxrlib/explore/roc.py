"""The threshold explorer's ROC plot, drawn as plain SVG (no figure library): a view costs a few
kB, so the book can embed one per threshold, and the curve is defined once per configuration
(:func:`roc_symbol`) while only the operating point moves."""
from __future__ import annotations

from cxrlib.explore.markup import RED

ROC_SIZE = 240
_ROC_PAD, _ROC_TOP = 34, 8


def roc_xy(specificity: float, sensitivity: float, size: int = ROC_SIZE) -> tuple[float, float]:
    """SVG coordinates of an operating point: x = 1 - specificity, y = sensitivity (up)."""
    span = size - _ROC_PAD - _ROC_TOP
    return _ROC_PAD + span * (1 - specificity), _ROC_TOP + span * (1 - sensitivity)


def roc_layers(fpr, tpr, argmax: tuple[float, float] | None, reported,
               size: int = ROC_SIZE) -> str:
    """What a configuration's ROC plot shows whatever the threshold, as SVG elements: axes,
    the ROC curve, our arg-max point (open circle) and the paper's point (red cross) or, when
    it gives the sensitivity alone, its line (dashed). ``reported`` has ``sensitivity`` and
    ``specificity`` (fractions, either None), as :class:`cxrlib.explore.threshold.PaperPoint`."""
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
                         f'x2="{left + span}" y2="{y:.1f}" stroke="{RED}" '
                         f'stroke-dasharray="5,3"/>')
        else:
            x, y = roc_xy(reported.specificity, reported.sensitivity, size)
            parts.append(f'<g class="paper-point" stroke="{RED}" stroke-width="2">'
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

