"""PNG figures of the ``ncflow verify`` report: margins and counterexample runs.

Like :mod:`ncflow.plots`, figures are drawn on :class:`matplotlib.figure.Figure`
objects and saved with the Agg renderer, so plotting never opens a window and
never changes the global backend. Every function takes an output path and
returns it.

| symbol | code name | shape | meaning |
|---|---|---|---|
| `t` | `exp(log_t)` | `(r,)` | gradient-flow time of each trajectory record |
| `L` | `exp(log_loss)` | `(r,)` | summed loss |
| `||theta||^2` | `norm2` | `(r,)` | squared Frobenius norm of `(W, V)` |
| `1[<x_i, w_j> > 0]` | `patterns` | `(r, n, h)` | activation pattern |
| margin | `margins[claim]` | list | deviation / tolerance of each checked example |
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ncflow.plots import DPI, NC_FLOOR

# Margins of exactly 0 cannot be drawn on a log axis; they are drawn at this value.
MARGIN_FLOOR = 1e-18


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    figure.savefig(path, dpi=DPI)
    return path


def plot_margins(
    margins: Mapping[str, Sequence[float]], path: str | os.PathLike[str]
) -> Path:
    """Draw each claim's margins (deviation / tolerance) on a log axis.

    One column of points per claim; the line at 1 separates PASS (below) from
    FAIL (above). Infinite margins are drawn at the top of the axis and zeros at
    :data:`MARGIN_FLOOR`.

    Parameters
    ----------
    margins : mapping of str to sequence of float
        Row name (such as ``"C7 binary"``) -> margins of its examples.
    path : str or path-like
        PNG file to write.
    """
    names = list(margins)
    figure = Figure(figsize=(max(6.0, 0.45 * len(names) + 2), 4.0))
    axes = figure.add_subplot()
    finite = [
        value
        for values in margins.values()
        for value in values
        if value is not None and math.isfinite(value) and value > 0
    ]
    top = max([10.0, *finite]) * 10
    for position, name in enumerate(names):
        values = np.array(
            [np.nan if value is None else value for value in margins[name]], float
        )
        values = values[~np.isnan(values)]
        values = np.where(np.isinf(values), top, np.maximum(values, MARGIN_FLOOR))
        spread = np.linspace(-0.15, 0.15, values.size) if values.size > 1 else [0.0]
        axes.scatter(position + np.asarray(spread), values, s=12)
    axes.axhline(1.0, color="red", linewidth=1, label="tolerance (margin 1)")
    axes.set_yscale("log")
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    axes.set_ylabel("|measured - predicted| / tolerance")
    axes.set_title("margins per claim (PASS below the line)")
    axes.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def plot_counterexample(
    series: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Draw one counterexample's run: loss, ``||theta||^2``, NC metrics, patterns.

    Parameters
    ----------
    series : mapping
        ``log_t``, ``log_loss``, ``norm2``, ``nc1``, ``nc2``, ``nc3`` (shape
        ``(r,)``) and ``patterns`` (bool, shape ``(r, n, h)``), as
        :func:`theory_checks.verify.trajectory_series` returns them.
    path : str or path-like
        PNG file to write.
    title : str
        Figure title, usually the record's name.
    """
    log_t = np.asarray(series["log_t"], float)
    keep = np.isfinite(log_t)
    log10_t = log_t[keep] / math.log(10)
    figure = Figure(figsize=(11.0, 7.5))
    grid = figure.add_gridspec(2, 2)

    axes = figure.add_subplot(grid[0, 0])
    log10_loss = np.asarray(series["log_loss"], float)[keep] / math.log(10)
    axes.plot(log10_t, log10_loss)
    axes.set_xlabel("log10 t")
    axes.set_ylabel("log10 L (summed loss)")

    axes = figure.add_subplot(grid[0, 1])
    axes.plot(log10_t, np.asarray(series["norm2"], float)[keep])
    axes.set_yscale("log")
    axes.set_xlabel("log10 t")
    axes.set_ylabel("||theta||_F^2")

    axes = figure.add_subplot(grid[1, 0])
    for name in ("nc1", "nc2", "nc3"):
        values = np.asarray(series[name], float)[keep]
        if np.any(np.isfinite(values)):
            axes.plot(log10_t, np.maximum(values, NC_FLOOR), label=name.upper())
    axes.set_yscale("log")
    axes.set_xlabel("log10 t")
    axes.set_ylabel("NC metric (Min, Zhu, Vidal)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)

    axes = figure.add_subplot(grid[1, 1])
    patterns = np.asarray(series["patterns"], bool)[keep]
    records, n, h = patterns.shape
    image = patterns.reshape(records, n * h).T
    axes.imshow(
        image,
        aspect="auto",
        interpolation="nearest",
        cmap="Greys",
        extent=(-0.5, records - 0.5, n * h - 0.5, -0.5),
    )
    axes.set_xlabel("trajectory record (time order)")
    axes.set_ylabel("pair (sample i, neuron j), row i*h + j")
    axes.set_title("activation pattern (black: active)", fontsize=9)

    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


__all__ = ["MARGIN_FLOOR", "plot_counterexample", "plot_margins"]
