"""Tests of the report figures of ``ncflow verify``."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.image import imread

from ncflow import report_plots
from ncflow.plots import DPI

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _series(records: int = 6, n: int = 3, h: int = 2) -> dict:
    log_t = np.concatenate([[-math.inf], np.linspace(0.0, 10.0, records - 1)])
    patterns = np.zeros((records, n, h), dtype=bool)
    patterns[records // 2 :, 0, 0] = True
    return {
        "log_t": log_t,
        "log_loss": -np.arange(records, dtype=float),
        "norm2": np.logspace(-6, 4, records),
        "nc1": np.linspace(1.0, 0.1, records),
        "nc2": np.full(records, np.nan),
        "nc3": np.zeros(records),
        "patterns": patterns,
    }


def test_margins_figure_is_a_png(tmp_path):
    margins = {"C1 binary": [0.0, 0.5], "C7 binary": [2.0, math.inf, None]}
    path = report_plots.plot_margins(margins, tmp_path / "margins.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_margins_figure_widens_with_claims(tmp_path):
    few = report_plots.plot_margins({"C1": [0.5]}, tmp_path / "few.png")
    names = {f"C{i} binary": [0.5] for i in range(1, 30)}
    many = report_plots.plot_margins(names, tmp_path / "many.png")
    # The width is max(6, 0.45 * claims + 2) inches at DPI pixels per inch.
    assert imread(few).shape[1] == round(6.0 * DPI)
    assert imread(many).shape[1] == round((0.45 * 29 + 2) * DPI)


def test_counterexample_figure_is_a_png(tmp_path):
    path = report_plots.plot_counterexample(
        _series(), tmp_path / "run.png", title="C7-0123"
    )
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_counterexample_figure_without_finite_metrics(tmp_path):
    series = _series()
    for name in ("nc1", "nc2", "nc3"):
        series[name] = np.full_like(series[name], np.nan)
    path = report_plots.plot_counterexample(series, tmp_path / "run.png")
    assert path.stat().st_size > 0
