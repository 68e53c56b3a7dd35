"""PNG figures of a training run: loss and norm, NC metrics, PCA, group weights.

Figures are drawn on :class:`matplotlib.figure.Figure` objects and saved with the
Agg renderer, without :mod:`matplotlib.pyplot`, so that plotting never opens a
window and never changes the global backend. Every function takes an output path
and returns it.

| symbol | code name | shape | meaning |
|---|---|---|---|
| `X` | `X` | (n, D) | samples, one row per sample |
| `phi` | `phi` | (n, h) | learned features `relu(W^T x_i)` |
| `W` | `W` | (D, h) | input weights, column `w_j` per neuron |
| `N_k` | `groups == k` | | neurons of group `k` |
| `t` | `exp(log_t)` | | gradient-flow time (nominal for SGD) |
| `L` | `exp(log_loss)` | | summed loss |
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ncflow.flow import Trajectory
from ncflow.training import TrajectoryMetrics

# Smallest log L that exp maps to a positive float64; below it the loss is drawn as
# log10 L on a linear axis.
_LOG_TINY = math.log(np.finfo(np.float64).tiny)
# Exact zeros cannot be drawn on a log axis; NC values below this are drawn at it.
NC_FLOOR = 1e-16
DPI = 120


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    figure.savefig(path, dpi=DPI)
    return path


def plot_loss_and_norm(
    trajectory: Trajectory, path: str | os.PathLike[str], *, nominal_time: bool = False
) -> Path:
    """Draw the summed loss ``L`` and ``||theta||^2`` against ``t`` on log axes.

    The record at ``t = 0`` is left out, since a log axis has no 0.

    Parameters
    ----------
    trajectory : Trajectory
    path : str or path-like
        PNG file to write.
    nominal_time : bool
        Label the axis as nominal time (SGD, where ``t = eta k``).
    """
    keep = np.isfinite(trajectory.log_t)
    # A diverged run overflows exp; matplotlib leaves out the infinite points.
    with np.errstate(over="ignore"):
        t = np.exp(trajectory.log_t[keep])
    log_loss = trajectory.log_loss[keep]
    time_label = (
        "t = step x k (nominal, SGD)" if nominal_time else "gradient-flow time t"
    )

    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, norm_axes = figure.subplots(1, 2)
    if log_loss.size and log_loss.min() > _LOG_TINY:
        with np.errstate(over="ignore"):
            loss = np.exp(log_loss)
        loss_axes.loglog(t, loss, marker=".")
        loss_axes.set_ylabel("summed loss L")
    else:
        loss_axes.semilogx(t, log_loss / math.log(10.0), marker=".")
        loss_axes.set_ylabel("log10 L (summed loss)")
    loss_axes.set_xlabel(time_label)
    loss_axes.set_title("loss")
    loss_axes.grid(True, which="both", alpha=0.3)

    norm_axes.loglog(t, trajectory.norm2[keep], marker=".", color="tab:orange")
    norm_axes.set_xlabel(time_label)
    norm_axes.set_ylabel("||theta||^2 = ||W||_F^2 + ||V||_F^2")
    norm_axes.set_title("squared parameter norm")
    norm_axes.grid(True, which="both", alpha=0.3)
    return _save(figure, path)


def plot_nc_metrics(
    metrics: TrajectoryMetrics,
    path: str | os.PathLike[str],
    *,
    nominal_time: bool = False,
) -> Path:
    """Draw NC1, NC2 and NC3 of Min, Zhu and Vidal (2025) against ``t`` on log axes.

    Records where a metric is undefined are left out of its line. Exact zeros are
    drawn at ``NC_FLOOR``.
    """
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    finite_t = np.isfinite(metrics.log_t)
    t = np.exp(metrics.log_t[finite_t])
    for name in ("nc1", "nc2", "nc3"):
        values = getattr(metrics, name)[finite_t]
        defined = np.isfinite(values)
        skipped = len(metrics.undefined.get(name, []))
        label = name.upper() + (f" ({skipped} records undefined)" if skipped else "")
        axes.loglog(
            t[defined], np.maximum(values[defined], NC_FLOOR), marker=".", label=label
        )
    axes.set_xlabel(
        "t = step x k (nominal, SGD)" if nominal_time else "gradient-flow time t"
    )
    axes.set_ylabel("metric value")
    axes.set_title("Neural Collapse metrics (Min, Zhu, Vidal 2025)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _top_components(M: np.ndarray, count: int = 3) -> np.ndarray:
    """Project the rows of ``M`` on its top right singular vectors, uncentred.

    The projection matches the rank-3 error of the summary, and keeps the origin,
    so rays of collapsed features stay rays. Missing components are zero.
    """
    U, singular, _ = np.linalg.svd(M, full_matrices=False)
    scores = np.zeros((M.shape[0], count))
    used = min(count, singular.size)
    scores[:, :used] = U[:, :used] * singular[:used]
    return scores


def plot_pca(
    X: np.ndarray,
    phi: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
) -> Path:
    """Draw 3-D scatter plots of the raw data and of the learned features.

    Each panel shows the samples on the top 3 right singular vectors of the
    uncentred matrix (``X`` left, ``phi`` right), coloured by class.

    Parameters
    ----------
    X : ndarray, shape (n, D)
    phi : ndarray, shape (n, h)
    labels : ndarray of int, shape (n,)
    class_names : sequence of str, length K
    path : str or path-like
    """
    figure = Figure(figsize=(11, 5), layout="constrained")
    panels = (("raw data X", X), ("learned features phi", phi))
    for position, (title, matrix) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, position, projection="3d")
        scores = _top_components(np.asarray(matrix, dtype=np.float64))
        for k, name in enumerate(class_names):
            rows = labels == k
            axes.scatter(*scores[rows].T, s=6, label=f"class {name}")
        axes.set_title(f"{title}: top 3 singular directions")
        # Scores of order 1e4 or more had tick labels of six characters, which
        # ran into the axis label. Powers of ten now go to the axis end.
        axes.ticklabel_format(style="sci", scilimits=(-2, 3))
        axes.set_xlabel("1")
        axes.set_ylabel("2")
        axes.set_zlabel("3", labelpad=8)
        axes.legend(loc="upper left", fontsize="small")
    return _save(figure, path)


def plot_group_weights(
    W: np.ndarray,
    groups: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    image_shape: tuple[int, int] = (8, 8),
) -> Path:
    """Draw the average input weight ``mean_{j in N_k} w_j`` of each group as an image.

    Parameters
    ----------
    W : ndarray, shape (D, h)
        Input weights, ``D = image_shape[0] * image_shape[1]``.
    groups : ndarray of int, shape (h,)
        Class of each neuron.
    class_names : sequence of str, length K
    path : str or path-like
    image_shape : (int, int)
        Rows and columns of one image.
    """
    W = np.asarray(W, dtype=np.float64)
    rows, columns = image_shape
    if W.shape[0] != rows * columns:
        raise ValueError(
            f"W has D={W.shape[0]} rows, which is not an image of shape {image_shape}; "
            f"give image_shape with rows * columns = {W.shape[0]}"
        )
    K = len(class_names)
    averages = [
        W[:, groups == k].mean(axis=1) if np.any(groups == k) else None
        for k in range(K)
    ]
    limit = max((np.abs(a).max() for a in averages if a is not None), default=1.0)
    limit = limit if limit > 0 else 1.0

    figure = Figure(figsize=(2.6 * K + 1, 3), layout="constrained")
    all_axes = np.atleast_1d(figure.subplots(1, K))
    image = None
    for k, (axes, average) in enumerate(zip(all_axes, averages, strict=True)):
        size = int(np.sum(groups == k))
        axes.set_xticks([])
        axes.set_yticks([])
        if average is None:
            axes.set_title(f"class {class_names[k]}: no neuron")
            continue
        image = axes.imshow(
            average.reshape(rows, columns), cmap="RdBu_r", vmin=-limit, vmax=limit
        )
        axes.set_title(f"class {class_names[k]}: {size} neurons")
    if image is not None:
        figure.colorbar(image, ax=list(all_axes), shrink=0.8)
    figure.suptitle("average input weight of each neuron group")
    return _save(figure, path)
