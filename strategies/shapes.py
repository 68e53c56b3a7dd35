"""Hypothesis strategies for initial shapes ``(w_j0, v_j0)`` and initial scales ``eps``.

The initialisation of Min, Zhu and Vidal (NeurIPS 2025, "Neural Collapse under
Gradient Flow on Shallow ReLU Networks for Orthogonally Separable Data") is
``w_j(0) = eps w_j0``, ``v_j(0) = eps v_j0``. The strategies here build shapes that
meet its hypotheses A2 (balanced, non-zero, ``||w_j0|| <= 1``), A3 (binary
non-degenerate) and A4 (multi-class semi-local) by construction, and the Gaussian
shapes of the explorations that drop A4 or balance.

================  ======================  =========  ================================
paper symbol      code name               shape      meaning
================  ======================  =========  ================================
w_j0              Parameters.W[:, j]      (D,)       input shape of neuron j
v_j0              Parameters.V[:, j]      (d_y,)     output shape, d_y = 1 (binary)
                                                     or K
N_+, N_-          neurons with V[0] > 0   (h_+,)     binary sign groups
                  and V[0] < 0
N_k               groups == k             (h_k,)     multi-class group of class k
xbar_k            class_sum_directions    (D,)       unit vector along the class sum
e~_k              pseudo_labels(K)[:, k]  (K,)       simplex-ETF pseudo-label
eps               init_scales()           scalar     initial scale
================  ======================  =========  ================================

Every random choice is a Hypothesis draw. Directions come from drawn spherical
angles, which reach every direction, but not with the Gaussian distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import hypothesis.strategies as st
import numpy as np
from hypothesis.strategies import SearchStrategy

from ncflow._validation import InvalidArgument, check_int, check_positive, check_real
from ncflow.data import Dataset
from ncflow.geometry import class_sum_directions, pseudo_labels
from ncflow.network import Parameters
from strategies.datasets import _draw_float, _draw_unit_vector

# Smallest drawn shape norm ||w_j0|| = ||v_j0||. A2 only requires 0 < norm <= 1, and
# the floor keeps every neuron at least 1/16 of the largest possible.
_MIN_SHAPE_NORM = 1.0 / 16.0

# Largest relative perturbation of the copied sample direction in
# balanced_binary_shapes: w = x_i/|x_i| + delta p with |p| = 1 and delta <= 1/2 has
# <w, x_i> >= |x_i| / 2 > 0, so the copy stays active on x_i.
_MAX_COPY_PERTURBATION = 0.5

# A drawn neuron of N_+ closer than this to xbar_- (or of N_- to xbar_+), in the
# distance of unit vectors, is replaced by its opposite direction. The predicate of
# A3 rejects only distances of about 1e-13 (float64 roundoff). This much larger
# distance keeps every drawn neuron clearly off the excluded directions, but still
# allows near-degenerate starts.
_A3_REPAIR_DISTANCE = 1e-6

# Entries of unbalanced_gaussian lie in [-4, 4] standard deviations, and one entry
# per column has magnitude in [1, 4], so that no column is zero.
_GAUSSIAN_RANGE = 4.0

# Initial scales are 10**exponent with the exponent in this range.
_MIN_EXPONENT = -300.0
_MAX_EXPONENT = 300.0


class BoundaryExample(NamedTuple):
    """A concrete dataset with shapes, for ``@example(*boundary_example)``."""

    dataset: Dataset
    shapes: Parameters


def _check_dataset(dataset: object, *, binary: bool) -> Dataset:
    if not isinstance(dataset, Dataset):
        raise InvalidArgument(
            f"dataset={dataset!r} is invalid: it must be an ncflow.data.Dataset"
        )
    if binary and dataset.K != 2:
        raise InvalidArgument(
            f"dataset={dataset!r} is invalid: binary shapes need exactly two classes, "
            f"got K={dataset.K}"
        )
    return dataset


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


# --- Binary shapes -----------------------------------------------------------------


@dataclass(frozen=True)
class _BinaryShapeSpec:
    min_width: int
    max_width: int
    unit_plus: np.ndarray
    unit_minus: np.ndarray
    xbar_plus: np.ndarray
    xbar_minus: np.ndarray


def balanced_binary_shapes(
    dataset: Dataset, *, min_width: int = 2, max_width: int = 8
) -> SearchStrategy[Parameters]:
    """Draw balanced scalar-output shapes that meet A2 and A3 on ``dataset``.

    The first ``h_+`` neurons form ``N_+`` (``v_j0 > 0``) and the others ``N_-``,
    with ``1 <= h_+ <= h - 1``. Neuron 0 copies the direction of a drawn sample of
    class ``+``, plus a drawn perturbation of relative size ``<= 1/2`` that keeps it
    active on that sample. Neuron ``h_+`` does the same for class ``-``. The other
    directions are drawn freely, and one of ``N_+`` that lies within ``1e-6`` of
    ``xbar_-`` (or of ``N_-`` within ``1e-6`` of ``xbar_+``) is flipped to its
    opposite. Every neuron has ``||w_j0|| = |v_j0|`` drawn from ``[1/16, 1]``.

    Parameters
    ----------
    dataset : Dataset
        Two classes; ``Dataset.signs`` says which is ``+``.
    min_width, max_width : int
        Range of the width ``h``, ``2 <= min_width <= max_width``.

    Returns
    -------
    SearchStrategy[Parameters]
        ``W`` of shape ``(D, h)`` and ``V`` of shape ``(1, h)``. A failing example
        shrinks towards ``h = min_width`` and exact copies of the first samples.
    """
    dataset = _check_dataset(dataset, binary=True)
    min_width = check_int("min_width", min_width, 2)
    max_width = check_int(
        "max_width", max_width, min_width, fix=f"it must be >= min_width={min_width}"
    )

    signs = dataset.signs
    units = dataset.X / np.linalg.norm(dataset.X, axis=1)[:, None]
    directions = class_sum_directions(dataset)
    plus_class = int(dataset.labels[np.flatnonzero(signs > 0)[0]])
    spec = _BinaryShapeSpec(
        min_width=min_width,
        max_width=max_width,
        unit_plus=units[signs > 0],
        unit_minus=units[signs < 0],
        xbar_plus=directions[plus_class],
        xbar_minus=directions[1 - plus_class],
    )
    return _balanced_binary_shapes(spec)


def _draw_active_copy(draw: st.DrawFn, unit_samples: np.ndarray) -> np.ndarray:
    """Draw a unit direction near a drawn sample of one class, active on it."""
    sample = unit_samples[draw(st.integers(0, unit_samples.shape[0] - 1))]
    delta = _draw_float(draw, 0.0, _MAX_COPY_PERTURBATION)
    perturbation = _draw_unit_vector(draw, sample.size)
    return _unit(sample + delta * perturbation)


@st.composite
def _balanced_binary_shapes(draw: st.DrawFn, spec: _BinaryShapeSpec) -> Parameters:
    width = draw(st.integers(spec.min_width, spec.max_width))
    width_plus = draw(st.integers(1, width - 1))
    D = spec.unit_plus.shape[1]
    W = np.empty((D, width))
    V = np.empty((1, width))

    for j in range(width):
        in_plus = j < width_plus
        if j == 0:
            direction = _draw_active_copy(draw, spec.unit_plus)
        elif j == width_plus:
            direction = _draw_active_copy(draw, spec.unit_minus)
        else:
            direction = _draw_unit_vector(draw, D)
            excluded = spec.xbar_minus if in_plus else spec.xbar_plus
            if np.linalg.norm(direction - excluded) < _A3_REPAIR_DISTANCE:
                direction = -direction
        W[:, j] = _draw_float(draw, _MIN_SHAPE_NORM, 1.0) * direction
        # |v_j0| is the computed ||w_j0||, so the two norms agree to the last bit.
        V[0, j] = (1.0 if in_plus else -1.0) * np.linalg.norm(W[:, j])
    return Parameters(W, V)


# --- Multi-class semi-local shapes ----------------------------------------------


def semilocal_shapes_for(
    dataset: Dataset, *, min_per_class: int = 1, max_per_class: int = 3
) -> SearchStrategy[tuple[Parameters, np.ndarray]]:
    """Draw semi-local shapes that meet A4 on ``dataset``, with their groups.

    Group ``N_k`` has a drawn number of neurons, each a copy of ``(x_i / ||x_i||,
    e~_k)`` for a drawn sample ``i`` of class ``k``. Under A1 such a neuron is active
    on all of class ``k`` and on nothing else, and ``B_k = 1``, so A4 holds. This is
    the rule of ``ncflow.init.semilocal_shapes`` with the samples drawn by Hypothesis.

    Parameters
    ----------
    dataset : Dataset
        ``K >= 2`` classes.
    min_per_class, max_per_class : int
        Range of each group size, ``1 <= min_per_class <= max_per_class``.

    Returns
    -------
    SearchStrategy[tuple[Parameters, ndarray]]
        ``(shapes, groups)``: ``W`` of shape ``(D, h)``, ``V`` of shape ``(K, h)``
        and ``groups[j] = k`` for ``j in N_k`` (int64, shape ``(h,)``), neurons
        ordered by class.
    """
    dataset = _check_dataset(dataset, binary=False)
    min_per_class = check_int("min_per_class", min_per_class, 1)
    max_per_class = check_int(
        "max_per_class",
        max_per_class,
        min_per_class,
        fix=f"it must be >= min_per_class={min_per_class}",
    )
    return _semilocal_shapes(dataset, min_per_class, max_per_class)


@st.composite
def _semilocal_shapes(
    draw: st.DrawFn, dataset: Dataset, min_per_class: int, max_per_class: int
) -> tuple[Parameters, np.ndarray]:
    pseudo = pseudo_labels(dataset.K)
    columns_w: list[np.ndarray] = []
    columns_v: list[np.ndarray] = []
    groups: list[int] = []
    for k, members in enumerate(dataset.class_indices):
        for _ in range(draw(st.integers(min_per_class, max_per_class))):
            i = members[draw(st.integers(0, members.size - 1))]
            columns_w.append(_unit(dataset.X[i]))
            columns_v.append(pseudo[:, k])
            groups.append(k)
    shapes = Parameters(np.array(columns_w).T, np.array(columns_v).T)
    return shapes, np.array(groups, dtype=np.int64)


# --- Gaussian shapes of the explorations -------------------------------------------


def _check_layer_sizes(
    D: object, width: object, num_outputs: object
) -> tuple[int, ...]:
    return (
        check_int("D", D, 1),
        check_int("width", width, 1),
        check_int("num_outputs", num_outputs, 1),
    )


def gaussian_shapes(D: int, width: int, num_outputs: int) -> SearchStrategy[Parameters]:
    """Draw balanced shapes with free directions, as in the exploration X4.

    The directions of ``w_j0`` and ``v_j0`` are drawn freely (spherical angles, not
    the Gaussian distribution), and ``||w_j0|| = ||v_j0||`` is a drawn norm in
    ``[1/16, 1]`` divided by the largest one, so the largest shape has norm 1 as in
    ``ncflow.init.balanced_shapes``. They meet A2 but not, in general, A3 or A4.

    Returns
    -------
    SearchStrategy[Parameters]
        ``W`` of shape ``(D, width)`` and ``V`` of shape ``(num_outputs, width)``.
    """
    sizes = _check_layer_sizes(D, width, num_outputs)
    return _gaussian_shapes(*sizes)


@st.composite
def _gaussian_shapes(
    draw: st.DrawFn, D: int, width: int, num_outputs: int
) -> Parameters:
    norms = np.array([_draw_float(draw, _MIN_SHAPE_NORM, 1.0) for _ in range(width)])
    norms /= norms.max()
    W = np.empty((D, width))
    V = np.empty((num_outputs, width))
    for j in range(width):
        W[:, j] = norms[j] * _draw_unit_vector(draw, D)
        V[:, j] = np.linalg.norm(W[:, j]) * _draw_unit_vector(draw, num_outputs)
    return Parameters(W, V)


def unbalanced_gaussian(
    D: int, width: int, num_outputs: int, variance: float
) -> SearchStrategy[Parameters]:
    """Draw independent Gaussian-like weights of a given variance (exploration X6).

    This is the unbalanced initialisation of the paper's experiments. Every entry is
    ``sqrt(variance)`` times a drawn number in ``[-4, 4]``, and in each column of
    ``W`` and of ``V`` one entry, at a drawn row, has magnitude in ``[1, 4]`` times
    ``sqrt(variance)``, so no neuron starts at zero. The weights are already scaled:
    use them as ``theta(0)``, not as shapes. The draws are independent, so they
    are unbalanced in general but not always: the smallest draw (zeros and
    pivots of ``sqrt(variance)``) has ``||w_j|| = ||v_j||`` and meets A2.

    Returns
    -------
    SearchStrategy[Parameters]
        ``W`` of shape ``(D, width)`` and ``V`` of shape ``(num_outputs, width)``.
    """
    sizes = _check_layer_sizes(D, width, num_outputs)
    variance = check_positive("variance", variance)
    return _unbalanced_gaussian(*sizes, math.sqrt(variance))


def _draw_nonzero_column(draw: st.DrawFn, rows: int) -> np.ndarray:
    column = np.array(
        [_draw_float(draw, -_GAUSSIAN_RANGE, _GAUSSIAN_RANGE) for _ in range(rows)]
    )
    pivot = draw(st.integers(0, rows - 1))
    sign = -1.0 if draw(st.booleans()) else 1.0
    column[pivot] = sign * _draw_float(draw, 1.0, _GAUSSIAN_RANGE)
    return column


@st.composite
def _unbalanced_gaussian(
    draw: st.DrawFn, D: int, width: int, num_outputs: int, std: float
) -> Parameters:
    W = np.column_stack([_draw_nonzero_column(draw, D) for _ in range(width)])
    V = np.column_stack([_draw_nonzero_column(draw, num_outputs) for _ in range(width)])
    return Parameters(std * W, std * V)


# --- Initial scales ----------------------------------------------------------------


def init_scales(
    *, min_exponent: float = -12, max_exponent: float = -3
) -> SearchStrategy[float]:
    """Draw initial scales ``eps = 10**e`` with the exponent ``e`` drawn uniformly-ish.

    The exponent is drawn as ``min_exponent + t`` with ``t >= 0``, so ``eps``
    shrinks towards ``10**min_exponent``. The smallest scale is the safe direction
    to shrink: the theorem holds for ``eps`` small enough, so a failure that
    persists at the smallest ``eps`` is evidence against the claim, not an effect
    of a large initial scale.

    Parameters
    ----------
    min_exponent, max_exponent : float
        ``-300 <= min_exponent <= max_exponent <= 300``.

    Returns
    -------
    SearchStrategy[float]
    """
    low = check_real("min_exponent", min_exponent)
    if not _MIN_EXPONENT <= low <= _MAX_EXPONENT:
        raise InvalidArgument(
            f"min_exponent={min_exponent!r} is invalid: it must lie in "
            f"[{_MIN_EXPONENT:g}, {_MAX_EXPONENT:g}], where 10**e is a normal float64"
        )
    high = check_real("max_exponent", max_exponent)
    if not low <= high <= _MAX_EXPONENT:
        raise InvalidArgument(
            f"max_exponent={max_exponent!r} is invalid: it must lie in "
            f"[min_exponent={min_exponent!r}, {_MAX_EXPONENT:g}]"
        )
    return _init_scales(low, high)


@st.composite
def _init_scales(draw: st.DrawFn, low: float, high: float) -> float:
    return 10.0 ** (low + _draw_float(draw, 0.0, high - low))


# --- Concrete boundary cases -------------------------------------------------------

# Shapes with exactly representable norms: (0.5, 0.375) has norm 0.625 exactly
# (a 3-4-5 triangle scaled by 1/8), so the shapes are balanced bit for bit.
_SHAPE_NORM = 0.625


def _binary(X: list[list[float]], signs: list[int], name: str) -> Dataset:
    return Dataset.from_arrays(
        np.array(X, dtype=np.float64), signs, name=name, class_order=(1, -1)
    )


def width_two_example() -> BoundaryExample:
    """Return one sample per class and ``h = 2`` shapes, one neuron per sign group.

    ``x_+ = (2, 1)``, ``x_- = (-1, -1)``; neuron 0 is ``((0.5, 0.375), 0.625)``,
    active on ``x_+``, and neuron 1 is ``((-0.375, -0.5), -0.625)``, active on
    ``x_-``. A1, A2 and A3 hold.
    """
    dataset = _binary([[2, 1], [-1, -1]], [1, -1], "width_two")
    W = np.array([[0.5, -0.375], [0.375, -0.5]])
    V = np.array([[_SHAPE_NORM, -_SHAPE_NORM]])
    return BoundaryExample(dataset, Parameters(W, V))


def duplicated_samples_example() -> BoundaryExample:
    """Return a dataset whose rows 0 and 1 are identical, with A2/A3 shapes.

    Class ``+`` is ``(3, 1), (3, 1), (2, 2)`` and class ``-`` is ``(-1, -2)``.
    """
    dataset = _binary([[3, 1], [3, 1], [2, 2], [-1, -2]], [1, 1, 1, -1], "duplicated")
    W = np.array([[0.5, -0.375, 0.0], [0.375, -0.5, 0.75]])
    V = np.array([[_SHAPE_NORM, -_SHAPE_NORM, 0.75]])
    return BoundaryExample(dataset, Parameters(W, V))


def zero_preactivation_example() -> BoundaryExample:
    """Return data and shapes where neuron 2 has ``<w_20, x_i> = 0.0`` exactly.

    Class ``+`` is ``(2, 0), (1, 1)`` and class ``-`` is ``(-1, 0), (-1, -1)`` (A1
    holds). Neuron 2 is ``((0, 0.5), 0.5)`` in ``N_+``: its pre-activation on
    samples 0 and 2 is exactly 0.0, which is inactive under ``relu'(0) = 0``.
    """
    dataset = _binary(
        [[2, 0], [1, 1], [-1, 0], [-1, -1]], [1, 1, -1, -1], "zero_preactivation"
    )
    W = np.array([[0.5, -0.5, 0.0], [0.375, -0.375, 0.5]])
    V = np.array([[_SHAPE_NORM, -_SHAPE_NORM, 0.5]])
    return BoundaryExample(dataset, Parameters(W, V))


def orthogonal_cross_class_example() -> BoundaryExample:
    """Return integer data with exactly orthogonal cross-class pairs (``mu_d = 0``).

    Class ``+`` is ``(1, 0, 0), (1, 1, 0)`` and class ``-`` is ``(0, 0, 1), (-1, 0,
    2)``: the cross-class inner products are 0, -1, 0 and -1, so A1 fails with
    ``mu_d = 0`` while Phuong and Lampert's orthogonal separability holds. The
    shapes meet A2 and A3.
    """
    dataset = _binary(
        [[1, 0, 0], [1, 1, 0], [0, 0, 1], [-1, 0, 2]], [1, 1, -1, -1], "orthogonal"
    )
    W = np.array([[0.5, -0.375], [0.375, 0.0], [0.0, 0.5]])
    V = np.array([[_SHAPE_NORM, -_SHAPE_NORM]])
    return BoundaryExample(dataset, Parameters(W, V))
