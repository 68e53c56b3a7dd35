"""Predicates for the hypotheses A1 to A5 of Min, Zhu and Vidal (NeurIPS 2025).

The paper is "Neural Collapse under Gradient Flow on Shallow ReLU Networks for
Orthogonally Separable Data". Each ``check_*`` function returns a
:class:`~theory_checks.verdict.HypothesisReport`. Its ``measured`` dict contains the
numbers behind the result, and its ``message`` names the offending values.

================  ========================  =======  ================================
paper symbol      code name                 shape    meaning
================  ========================  =======  ================================
mu_s, mu_d        measured["mu_s"], ...     scalar   A1 margins of the data
w_j0, v_j0        shapes.W[:, j], V[:, j]   (D,),    initial shape of neuron j
                                            (d_y,)
eps               eps                       scalar   initial scale
N_+, N_-          V[0] > 0, V[0] < 0        -        binary sign groups
N_k               groups == k               -        multi-class group of class k
xbar_k            class_sum_directions      (D,)     unit vector along the class sum
I_k^w             counts[k] = |I_k^w|       (K,)     class-k samples with <x_i, w> > 0
A_k^w             alignments[k]             (K,)     sum over I_k^w of <x_i, w/|w|>
B_k^v             output_alignments[k]      (K,)     <e~_k, v/|v|>
e~_k              pseudo_labels(K)[:, k]    (K,)     simplex-ETF pseudo-label
X_max             x_max                     scalar   largest sample norm
h, n, K           width, n, K               scalar   neurons, samples, classes
================  ========================  =======  ================================

All norms are Euclidean, and every quantity is computed in float64. Strict
inequalities are decided in float64 as written, without tolerance, except where a
function says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ncflow._validation import (
    InvalidArgument,
    check_array,
    check_int,
    check_range,
    check_real,
)
from ncflow.data import Dataset
from ncflow.geometry import a5_ratio, class_sum_directions, pseudo_labels, separability
from ncflow.init import BALANCE_RTOL
from ncflow.network import Parameters
from theory_checks.verdict import HypothesisReport

_EPS = float(np.finfo(np.float64).eps)

# Factor of the A3 threshold on the distance of unit vectors (see ``a3_threshold``).
_A3_THRESHOLD_FACTOR = 16.0


def _check_dataset(dataset: object) -> Dataset:
    if not isinstance(dataset, Dataset):
        raise InvalidArgument(
            f"dataset={dataset!r} is invalid: it must be an ncflow.data.Dataset"
        )
    return dataset


def _check_shapes(shapes: object, D: int | None = None) -> Parameters:
    if not isinstance(shapes, Parameters):
        raise InvalidArgument(
            f"shapes={shapes!r} is invalid: it must be ncflow.network.Parameters"
        )
    if D is not None and shapes.W.shape[0] != D:
        raise InvalidArgument(
            f"shapes is invalid: W has shape {shapes.W.shape} but the data have "
            f"D={D} features; W must be (D, h)"
        )
    return shapes


# --- A1 ----------------------------------------------------------------------------


def check_a1(
    dataset: Dataset, *, min_mu_s: float = 0.0, min_mu_d: float = 0.0
) -> HypothesisReport:
    """Check A1: within-class cosines ``>= mu_s > 0``, cross-class ``<= -mu_d < 0``.

    A1 holds when ``mu_s > 0`` and ``mu_d > 0`` strictly, and, where bounds are
    given, ``mu_s >= min_mu_s`` and ``mu_d >= min_mu_d``. With ``mu_d = 0`` the data
    are orthogonally separable in the sense of Phuong and Lampert (ICLR 2021) but
    outside A1.

    Parameters
    ----------
    dataset : Dataset
    min_mu_s, min_mu_d : float
        Optional lower bounds on the measured margins, in ``[0, 1]``.

    Returns
    -------
    HypothesisReport
        ``measured``: ``mu_s``, ``mu_d``, ``worst_within_pair`` and
        ``worst_cross_pair`` (rows ``i < j`` and cosine, or None), the shares of
        within-class pairs with cosine ``<= 0`` and of cross-class pairs with cosine
        ``>= 0``, ``x_max`` and ``x_min``.
    """
    dataset = _check_dataset(dataset)
    min_mu_s = check_range("min_mu_s", min_mu_s, 0, 1)
    min_mu_d = check_range("min_mu_d", min_mu_d, 0, 1)
    report = separability(dataset)
    measured = {
        "mu_s": report.mu_s,
        "mu_d": report.mu_d,
        "worst_within_pair": report.worst_within_pair,
        "worst_cross_pair": report.worst_cross_pair,
        "violating_within_share": report.violating_within_share,
        "violating_cross_share": report.violating_cross_share,
        "x_max": report.x_max,
        "x_min": report.x_min,
    }

    problems = []

    def needed(minimum: float) -> str:
        return "> 0" if minimum == 0 else f">= {minimum:.6g}"

    def name(i: int) -> str:
        return repr(dataset.class_names[dataset.labels[i]])

    if not (report.mu_s > 0 and report.mu_s >= min_mu_s):
        i, j, cosine = report.worst_within_pair
        problems.append(
            f"mu_s = {report.mu_s:.6g} (needed {needed(min_mu_s)}): samples "
            f"{i} and {j} of class {name(i)} have cosine {cosine:.6g}; "
            f"{report.violating_within_share:.1%} of within-class pairs have "
            "cosine <= 0"
        )
    if not (report.mu_d > 0 and report.mu_d >= min_mu_d):
        i, j, cosine = report.worst_cross_pair
        problems.append(
            f"mu_d = {report.mu_d:.6g} (needed {needed(min_mu_d)}): samples "
            f"{i} (class {name(i)}) and {j} (class {name(j)}) "
            f"have cosine {cosine:.6g}; {report.violating_cross_share:.1%} of "
            "cross-class pairs have cosine >= 0"
        )
    return _report("A1", problems, measured)


def _report(name: str, problems: list[str], measured: dict) -> HypothesisReport:
    message = f"{name} fails: " + "; ".join(problems) if problems else ""
    return HypothesisReport(
        name=name, holds=not problems, measured=measured, message=message
    )


# --- A2 ----------------------------------------------------------------------------


def check_a2(shapes: Parameters, eps: float) -> HypothesisReport:
    """Check A2: ``eps > 0`` and balanced non-zero shapes with ``||w_j0|| <= 1``.

    Balance ``||w_j0|| = ||v_j0||`` and the bound ``||w_j0|| <= 1`` are checked up
    to the relative tolerance ``ncflow.init.BALANCE_RTOL`` (64 units of float64
    roundoff), because shapes built by scaling two vectors to one norm carry a few
    roundoffs per entry. "eps small enough" is not quantified by the binary
    theorem, so only ``eps > 0`` is checked.

    Parameters
    ----------
    shapes : Parameters
        Shapes ``(W_0, V_0)``, ``W_0`` of shape ``(D, h)``.
    eps : float
        Initial scale.

    Returns
    -------
    HypothesisReport
        ``measured``: ``eps``, ``max_imbalance`` (largest ``| ||w_j0|| - ||v_j0|| |
        / max(||w_j0||, ||v_j0||)``) and its neuron, ``max_norm`` and
        ``min_norm`` of ``||w_j0||``, and ``tolerance``.
    """
    shapes = _check_shapes(shapes)
    eps = check_real("eps", eps)
    norms_w = np.linalg.norm(shapes.W, axis=0)
    norms_v = np.linalg.norm(shapes.V, axis=0)
    larger = np.maximum(norms_w, norms_v)
    with np.errstate(invalid="ignore", divide="ignore"):
        imbalance = np.where(larger > 0, np.abs(norms_w - norms_v) / larger, 0.0)
    worst = int(np.argmax(imbalance))
    measured = {
        "eps": eps,
        "max_imbalance": float(imbalance[worst]),
        "worst_neuron": worst,
        "max_norm": float(norms_w.max()),
        "min_norm": float(min(norms_w.min(), norms_v.min())),
        "tolerance": float(BALANCE_RTOL),
    }

    problems = []
    if not eps > 0:
        problems.append(f"eps = {eps!r} must be > 0")
    if imbalance[worst] > BALANCE_RTOL:
        problems.append(
            f"neuron {worst} is unbalanced: ||w_j0|| = {float(norms_w[worst])!r} but "
            f"||v_j0|| = {float(norms_v[worst])!r} (relative gap "
            f"{imbalance[worst]:.3g} > {BALANCE_RTOL:.3g})"
        )
    zero = np.flatnonzero((norms_w == 0) | (norms_v == 0))
    if zero.size:
        problems.append(f"neurons {zero.tolist()} have a zero shape")
    largest = int(np.argmax(norms_w))
    if norms_w[largest] > 1.0 + BALANCE_RTOL:
        problems.append(
            f"neuron {largest} has ||w_j0|| = {float(norms_w[largest])!r} > 1"
        )
    return _report("A2", problems, measured)


# --- A3 ----------------------------------------------------------------------------


def a3_threshold(n: int, D: int) -> float:
    """Return the distance below which a unit direction counts as exactly ``xbar_k``.

    ``xbar_k`` is an ``n_k``-term sum, normalised. Under A1 the samples of a class
    have positive pairwise inner products, so ``||sum_i x_i|| >= sum_i ||x_i|| /
    sqrt(n)``, and the sum carries a relative error of at most about ``n sqrt(n)
    eps``. The normalisation adds about ``D eps``. Two float64 computations of one
    exact direction therefore differ by at most about ``(n sqrt(n) + D) eps``, and
    the factor 16 covers the constants of the single roundings. A neuron farther
    from ``xbar_k`` than ``16 (n sqrt(n) + D) eps`` points in a different direction.

    Parameters
    ----------
    n : int
        Number of samples.
    D : int
        Input dimension.

    Returns
    -------
    float
        About ``2.5e-13`` for ``n = 16``, ``D = 6``.
    """
    return _A3_THRESHOLD_FACTOR * (n * math.sqrt(n) + D) * _EPS


def check_a3(dataset: Dataset, shapes: Parameters) -> HypothesisReport:
    """Check A3, the binary non-degeneracy of the shapes.

    A3 requires three things. ``N_+ = {j : v_j0 > 0}`` and ``N_- = {j : v_j0 < 0}``
    are both non-empty. Some neuron of ``N_+`` has ``<w_j0, x_i> > 0`` on some
    positive sample, and some neuron of ``N_-`` on some negative sample. No neuron
    of ``N_+`` starts exactly on ``xbar_-``, nor one of ``N_-`` exactly on
    ``xbar_+``.
    "Exactly" means a distance of unit vectors ``||w_j0/||w_j0|| - xbar|| <=``
    :func:`a3_threshold`, the float64 roundoff of computing ``xbar``.

    Parameters
    ----------
    dataset : Dataset
        Two classes; ``Dataset.signs`` says which is ``+``.
    shapes : Parameters
        ``W_0`` of shape ``(D, h)`` and ``V_0`` of shape ``(1, h)``.

    Returns
    -------
    HypothesisReport
        ``measured``: ``n_plus``, ``n_minus`` (sizes of ``N_+``, ``N_-``),
        ``n_zero_output`` (neurons with ``v_j0 = 0``), ``active_plus`` and
        ``active_minus`` (neurons of ``N_+`` active on some positive sample, of
        ``N_-`` on some negative one), ``distance_plus_to_xbar_minus`` and
        ``distance_minus_to_xbar_plus`` (smallest distances, ``inf`` for an empty
        group) and ``threshold``.

    Raises
    ------
    InvalidArgument
        If the dataset does not have two classes or the shapes do not have a scalar
        output and ``D`` rows.
    """
    dataset = _check_dataset(dataset)
    if dataset.K != 2:
        raise InvalidArgument(
            f"dataset={dataset!r} is invalid: A3 is the binary condition and needs "
            f"two classes, got K={dataset.K}; use check_a4"
        )
    shapes = _check_shapes(shapes, dataset.D)
    if shapes.num_outputs != 1:
        raise InvalidArgument(
            f"shapes is invalid: A3 needs a scalar output, V of shape (1, h), got "
            f"{shapes.V.shape}"
        )

    signs = dataset.signs
    output = shapes.V[0]
    plus = np.flatnonzero(output > 0)
    minus = np.flatnonzero(output < 0)
    Z = dataset.X @ shapes.W
    active_plus = int(np.count_nonzero((Z[signs > 0][:, plus] > 0).any(axis=0)))
    active_minus = int(np.count_nonzero((Z[signs < 0][:, minus] > 0).any(axis=0)))

    directions = class_sum_directions(dataset)
    plus_class = int(dataset.labels[np.flatnonzero(signs > 0)[0]])
    xbar_plus = directions[plus_class]
    xbar_minus = directions[1 - plus_class]
    distance_plus, worst_plus = _closest(shapes.W[:, plus], plus, xbar_minus)
    distance_minus, worst_minus = _closest(shapes.W[:, minus], minus, xbar_plus)
    threshold = a3_threshold(dataset.n, dataset.D)
    measured = {
        "n_plus": int(plus.size),
        "n_minus": int(minus.size),
        "n_zero_output": int(np.count_nonzero(output == 0)),
        "active_plus": active_plus,
        "active_minus": active_minus,
        "distance_plus_to_xbar_minus": distance_plus,
        "distance_minus_to_xbar_plus": distance_minus,
        "threshold": threshold,
    }

    problems = []
    for group, size in (("N_+", plus.size), ("N_-", minus.size)):
        if size == 0:
            problems.append(f"{group} is empty")
    if plus.size and not active_plus:
        problems.append("no neuron of N_+ is active on a positive sample")
    if minus.size and not active_minus:
        problems.append("no neuron of N_- is active on a negative sample")
    if distance_plus <= threshold:
        problems.append(
            f"neuron {worst_plus} of N_+ starts on xbar_- (distance "
            f"{distance_plus:.3g} <= {threshold:.3g})"
        )
    if distance_minus <= threshold:
        problems.append(
            f"neuron {worst_minus} of N_- starts on xbar_+ (distance "
            f"{distance_minus:.3g} <= {threshold:.3g})"
        )
    return _report("A3", problems, measured)


def _closest(
    W_group: np.ndarray, neurons: np.ndarray, direction: np.ndarray
) -> tuple[float, int | None]:
    """Return the least distance of a unit ``w_j0`` to ``direction``, and its neuron."""
    norms = np.linalg.norm(W_group, axis=0)
    usable = norms > 0
    if not usable.any():
        return math.inf, None
    units = W_group[:, usable] / norms[usable]
    distances = np.linalg.norm(units - direction[:, None], axis=0)
    best = int(np.argmin(distances))
    return float(distances[best]), int(neurons[usable][best])


# --- A4 ----------------------------------------------------------------------------


@dataclass(frozen=True)
class A4Quantities:
    """The per-class quantities of A4 for one neuron ``(w, v)`` of group ``k``.

    Attributes
    ----------
    k : int
        The neuron's group.
    counts : ndarray of int, shape (K,)
        ``|I_l^w|``, the number of class-``l`` samples with ``<x_i, w> > 0``.
    alignments : ndarray, shape (K,)
        ``A_l^w = sum_{i in I_l^w} <x_i, w/||w||>``.
    output_alignments : ndarray, shape (K,)
        ``B_l^v = <e~_l, v/||v||>``.
    """

    k: int
    counts: np.ndarray
    alignments: np.ndarray
    output_alignments: np.ndarray

    @property
    def count_sides(self) -> tuple[float, float]:
        """``(|I_k^w|^2, sum_{l != k} |I_l^w|^2)``; A4 needs left > right."""
        squares = self.counts.astype(np.float64) ** 2
        return float(squares[self.k]), float(squares.sum() - squares[self.k])

    @property
    def alignment_sides(self) -> tuple[float, float]:
        """``(A_k^w, 2 sum_{l != k} A_l^w)``; A4 needs left > right."""
        others = math.fsum(np.delete(self.alignments, self.k))
        return float(self.alignments[self.k]), 2.0 * others

    @property
    def output_sides(self) -> tuple[float, float]:
        """``(B_k^v, 1 - 1/(2(K-1)))``; A4 needs left >= right."""
        K = self.output_alignments.size
        return float(self.output_alignments[self.k]), 1.0 - 1.0 / (2.0 * (K - 1))

    def failed_conditions(self) -> list[str]:
        """Return which A4 inequalities fail, of "counts", "alignment", "output"."""
        failed = []
        left, right = self.count_sides
        if not left > right:
            failed.append("counts")
        left, right = self.alignment_sides
        if not left > right:
            failed.append("alignment")
        left, right = self.output_sides
        if not left >= right:
            failed.append("output")
        return failed


def a4_quantities(
    X: np.ndarray, labels: np.ndarray, w: np.ndarray, v: np.ndarray, k: int
) -> A4Quantities:
    """Compute ``|I_l^w|``, ``A_l^w`` and ``B_l^v`` for every class ``l``.

    These are the quantities of A4, and of the alignment phase of claim C14, for a
    neuron of group ``k``. Apply it at every time of a trajectory to follow them.

    Parameters
    ----------
    X : ndarray, shape (n, D)
        Samples.
    labels : ndarray of int, shape (n,)
        Class indices ``0..K-1``, with ``K = v.size``.
    w : ndarray, shape (D,)
        Input weight, non-zero.
    v : ndarray, shape (K,)
        Output weight, non-zero, ``K >= 2``.
    k : int
        Group of the neuron, ``0 <= k < K``.

    Returns
    -------
    A4Quantities
    """
    X = check_array("X", X, ndim=2)
    w = check_array("w", w, shape=(X.shape[1],))
    v = check_array("v", v, ndim=1)
    K = v.size
    if K < 2:
        raise InvalidArgument(f"v is invalid: it must have K >= 2 entries, got {K}")
    labels = np.asarray(labels)
    if labels.shape != (X.shape[0],) or labels.dtype.kind not in "iu":
        raise InvalidArgument(
            f"labels is invalid: it must be {X.shape[0]} integer class indices, got "
            f"shape {labels.shape} and dtype {labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise InvalidArgument(
            f"labels is invalid: class indices must lie in 0..{K - 1} for v of "
            f"{K} entries"
        )
    k = check_int("k", k, 0, K - 1)
    norm_w = float(np.linalg.norm(w))
    norm_v = float(np.linalg.norm(v))
    if norm_w == 0 or norm_v == 0:
        raise InvalidArgument("w and v must be non-zero: A4 uses their directions")

    projections = X @ (w / norm_w)
    active = (X @ w) > 0
    counts = np.bincount(labels[active], minlength=K)
    alignments = np.bincount(labels[active], weights=projections[active], minlength=K)
    output_alignments = pseudo_labels(K).T @ (v / norm_v)
    return A4Quantities(
        k=k,
        counts=counts.astype(np.int64),
        alignments=alignments.astype(np.float64),
        output_alignments=output_alignments,
    )


def check_a4(
    dataset: Dataset, shapes: Parameters, groups: np.ndarray
) -> HypothesisReport:
    """Check A4, the semi-local condition of the multi-class shapes.

    Every neuron ``j in N_k`` must have ``|I_k^w|^2 > sum_{l != k} |I_l^w|^2``,
    ``A_k^w > 2 sum_{l != k} A_l^w`` and ``B_k^v >= 1 - 1/(2(K-1))`` at ``(w_j0,
    v_j0)``. Every group must also be non-empty, because the claims need a neuron
    for each class (each class keeps an active neuron after separation).

    Parameters
    ----------
    dataset : Dataset
        ``K >= 2`` classes.
    shapes : Parameters
        ``W_0`` of shape ``(D, h)`` and ``V_0`` of shape ``(K, h)``.
    groups : array_like of int, shape (h,)
        ``groups[j] = k`` for ``j in N_k``.

    Returns
    -------
    HypothesisReport
        ``measured``: per neuron (arrays of shape ``(h,)``) ``count_left``,
        ``count_right``, ``alignment_left``, ``alignment_right``, ``output_left``,
        and the scalar ``output_right``; ``failures``, a list of ``(neuron,
        condition)``; and ``empty_groups``.
    """
    dataset = _check_dataset(dataset)
    shapes = _check_shapes(shapes, dataset.D)
    K = dataset.K
    if shapes.num_outputs != K:
        raise InvalidArgument(
            f"shapes is invalid: A4 needs V of shape (K, h) = ({K}, h), got "
            f"{shapes.V.shape}"
        )
    groups = np.asarray(groups)
    if groups.shape != (shapes.width,) or groups.dtype.kind not in "iu":
        raise InvalidArgument(
            f"groups is invalid: it must hold one integer class per neuron, shape "
            f"({shapes.width},), got shape {groups.shape} and dtype {groups.dtype}"
        )
    if groups.size and (groups.min() < 0 or groups.max() >= K):
        raise InvalidArgument(f"groups is invalid: classes must lie in 0..{K - 1}")

    sides = {
        name: np.empty(shapes.width)
        for name in (
            "count_left",
            "count_right",
            "alignment_left",
            "alignment_right",
            "output_left",
        )
    }
    failures: list[tuple[int, str]] = []
    for j in range(shapes.width):
        quantities = a4_quantities(
            dataset.X, dataset.labels, shapes.W[:, j], shapes.V[:, j], int(groups[j])
        )
        sides["count_left"][j], sides["count_right"][j] = quantities.count_sides
        sides["alignment_left"][j], sides["alignment_right"][j] = (
            quantities.alignment_sides
        )
        sides["output_left"][j] = quantities.output_sides[0]
        failures.extend((j, condition) for condition in quantities.failed_conditions())
    empty = [k for k in range(K) if not np.any(groups == k)]
    measured = {
        **sides,
        "output_right": 1.0 - 1.0 / (2.0 * (K - 1)),
        "failures": failures,
        "empty_groups": empty,
    }

    problems = [f"group N_{k} is empty" for k in empty]
    for j, condition in failures:
        problems.append(_a4_failure_text(j, int(groups[j]), condition, measured))
    return _report("A4", problems, measured)


def _a4_failure_text(j: int, k: int, condition: str, measured: dict) -> str:
    if condition == "counts":
        return (
            f"neuron {j} of N_{k}: |I_k|^2 = {measured['count_left'][j]:g} is not > "
            f"sum_(l != k) |I_l|^2 = {measured['count_right'][j]:g}"
        )
    if condition == "alignment":
        return (
            f"neuron {j} of N_{k}: A_k = {measured['alignment_left'][j]:.6g} is not > "
            f"2 sum_(l != k) A_l = {measured['alignment_right'][j]:.6g}"
        )
    return (
        f"neuron {j} of N_{k}: B_k = {measured['output_left'][j]:.6g} is not >= "
        f"1 - 1/(2(K-1)) = {measured['output_right']:.6g}"
    )


# --- A5 and the constants of the early phase ------------------------------------


def check_a5(dataset: Dataset) -> HypothesisReport:
    """Check A5, ``X_max^2 / (X_min^2 mu_d mu_s^2) < 2K - 3``.

    The ratio is ``inf`` when A1 fails (``mu_d <= 0`` or ``mu_s <= 0``). Since the
    ratio is at least 1, A5 never holds for ``K = 2``.

    Returns
    -------
    HypothesisReport
        ``measured``: ``ratio``, ``bound`` (``2K - 3``), ``mu_s``, ``mu_d``,
        ``x_max``, ``x_min``.
    """
    dataset = _check_dataset(dataset)
    report = a5_ratio(dataset)
    measured = {
        "ratio": report.ratio,
        "bound": report.bound,
        "mu_s": report.mu_s,
        "mu_d": report.mu_d,
        "x_max": report.x_max,
        "x_min": report.x_min,
    }
    problems = []
    if not report.holds:
        problems.append(
            f"X_max^2 / (X_min^2 mu_d mu_s^2) = {report.x_max:.6g}^2 / "
            f"({report.x_min:.6g}^2 * {report.mu_d:.6g} * {report.mu_s:.6g}^2) = "
            f"{report.ratio:.6g} is not < 2K - 3 = {report.bound}"
        )
    return _report("A5", problems, measured)


def _check_width(width: object) -> int:
    return check_int("width", width, 1)


def eps_bound_c3(dataset: Dataset, width: int) -> float:
    """Return the initial-scale bound ``sqrt(K) / (16 X_max sqrt(h))`` of claim C3.

    Lemma 2 of the paper bounds the early phase for ``eps`` at most this value and
    ``||w_j0|| <= 1``. It is stated for ``K > 2``; for a binary dataset the value
    uses ``K = 2`` and serves explorations only.

    Parameters
    ----------
    dataset : Dataset
    width : int
        Number of neurons ``h >= 1``.

    Returns
    -------
    float
    """
    dataset = _check_dataset(dataset)
    width = _check_width(width)
    x_max = float(np.linalg.norm(dataset.X, axis=1).max())
    return math.sqrt(dataset.K) / (16.0 * x_max * math.sqrt(width))


def early_time_T(dataset: Dataset, width: int, eps: float) -> float:
    """Return the end of the early phase, ``T = log(1/(sqrt(h) eps)) / (4 n X_max)``.

    ``T`` is in gradient-flow time for the summed loss. It is ``<= 0`` when
    ``sqrt(h) eps >= 1``, where the early-phase bounds do not apply.

    Parameters
    ----------
    dataset : Dataset
    width : int
        Number of neurons ``h >= 1``.
    eps : float
        Initial scale, ``> 0``.

    Returns
    -------
    float
    """
    dataset = _check_dataset(dataset)
    width = _check_width(width)
    eps = check_real("eps", eps)
    if not eps > 0:
        raise InvalidArgument(f"eps={eps!r} is invalid: it must be > 0")
    x_max = float(np.linalg.norm(dataset.X, axis=1).max())
    return -math.log(math.sqrt(width) * eps) / (4.0 * dataset.n * x_max)
