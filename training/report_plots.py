"""The evaluation report's pictures: F1 per slot type, and the intent confusion matrix.

Drawn on matplotlib `Figure` objects with the Agg canvas (no pyplot, no display, no global state);
each figure's size follows the number of classes so that every label stays legible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FONT_SIZE = 8
ROW_INCHES = 0.19  # one bar or matrix row at FONT_SIZE points, with some air
LABEL_INCHES_PER_CHAR = 0.062  # width of one label character at FONT_SIZE points
DPI = 100


# FreeType renders glyphs at hinting_factor times the horizontal resolution; at 1 (no hinting) the
# labels look the same at these sizes and the pictures take about a seventh less time.
FAST_TEXT = {"text.hinting_factor": 1, "text.hinting": "none"}


def _figure_and_axes(plot_width: float, plot_height: float, left: float, bottom: float, top: float = 0.35):
    """A figure holding one axes of `plot_width` x `plot_height` inches, with `left` / `bottom` /
    `top` inches of margin for tick labels and titles. Laid out by hand: a layout engine would draw
    every figure twice."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    right = 0.25
    width, height = left + plot_width + right, bottom + plot_height + top
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((left / width, bottom / height, plot_width / width, plot_height / height))
    return figure, axes


def plot_slot_f1(types: dict[str, dict[str, Any]], path: str | Path, title: str) -> None:
    """Horizontal bars of F1 per slot type, weakest at the top, each labelled with its support."""
    from matplotlib.transforms import blended_transform_factory

    ordered = sorted(types.items(), key=lambda item: (item[1]["f1"], -item[1]["support"], item[0]))
    labels = [f"{name} ({row['support']})" for name, row in ordered]
    values = [100 * row["f1"] for _, row in ordered]
    label_width = LABEL_INCHES_PER_CHAR * max((len(label) for label in labels), default=10)
    figure, axes = _figure_and_axes(3.5, ROW_INCHES * max(1, len(labels)), left=label_width + 0.15, bottom=0.5)
    positions = np.arange(len(labels))
    axes.barh(positions, values, height=0.7, color=[_f1_colour(v) for v in values])
    for y in np.flatnonzero(np.asarray(values) == 0):
        axes.text(0.8, y, "0", va="center", fontsize=FONT_SIZE - 1, color=_f1_colour(0))  # no bar to see
    # Labels as plain texts: a tick per type would cost a fifth more time to build and draw.
    axes.set_yticks([])
    label_position = blended_transform_factory(axes.transAxes, axes.transData)
    for y, label in zip(positions, labels):
        axes.text(-0.01, y, label, transform=label_position, ha="right", va="center", fontsize=FONT_SIZE)
    if labels:
        axes.set_ylim(len(labels) - 0.5, -0.5)  # weakest first, as in report.md
    else:
        axes.text(50, 0.5, "no slot chunks, gold or predicted", ha="center", va="center", fontsize=FONT_SIZE)
    axes.set_xlim(0, 100)
    axes.set_xticks(range(0, 101, 10))
    axes.tick_params(axis="x", labelsize=FONT_SIZE)
    axes.set_xlabel("F1 (%); in brackets: gold chunks (support)", fontsize=FONT_SIZE)
    axes.set_title(f"Slot F1 per type, {title}", fontsize=FONT_SIZE + 1, y=1.0)  # y: no automatic placement
    axes.grid(axis="x", alpha=0.3)
    save_png(figure, path)


def _f1_colour(value: float) -> str:
    return "#c0392b" if value < 50 else "#e67e22" if value < 80 else "#2e86c1"


def plot_intent_confusion(confusion: dict[str, Any], path: str | Path, title: str) -> None:
    """Gold intent (rows) against predicted intent (columns); colour: share of the row's sentences,
    number: sentences (zeros left blank)."""
    labels, matrix = confusion["labels"], np.asarray(confusion["matrix"])
    size = len(labels)
    label_width = LABEL_INCHES_PER_CHAR * max(len(label) for label in labels)
    side = max(1.5, 0.3 * size)
    figure, axes = _figure_and_axes(side + 1.0, side, left=label_width + 0.45, bottom=label_width + 0.45)
    shares = matrix / np.maximum(1, matrix.sum(axis=1, keepdims=True))
    # Empty cells stay white (masked), so the few confusions stand out.
    image = axes.imshow(np.ma.masked_equal(shares, 0), cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(matrix)):
        colour = "white" if shares[i, j] > 0.6 else "black"
        axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=FONT_SIZE - 1, color=colour)
    axes.set_xticks(range(size), labels, rotation=90, fontsize=FONT_SIZE)
    axes.set_yticks(range(size), labels, fontsize=FONT_SIZE)
    axes.set_xlabel("predicted intent", fontsize=FONT_SIZE)
    axes.set_ylabel("gold intent", fontsize=FONT_SIZE)
    axes.set_title(f"Intent confusion, {title}", fontsize=FONT_SIZE + 1, y=1.0)
    colour_bar = figure.colorbar(image, ax=axes, fraction=0.6 / (side + 1.0), pad=0.02)
    colour_bar.set_label("share of the gold intent's sentences", fontsize=FONT_SIZE)
    colour_bar.ax.tick_params(labelsize=FONT_SIZE)
    save_png(figure, path)


def save_png(figure, path: str | Path) -> None:
    """PNG with a 256-colour palette: a third of the size of matplotlib's RGBA file and the same
    picture to the eye (flat colours and anti-aliased text need few colours); the fast octree
    quantiser takes a few milliseconds."""
    import matplotlib
    from PIL import Image

    with matplotlib.rc_context(FAST_TEXT):
        figure.canvas.draw()
    image = Image.frombuffer("RGBA", figure.canvas.get_width_height(), figure.canvas.buffer_rgba())
    image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(path)
