"""Hypothesis strategies for datasets that meet hypothesis A1, or break it on purpose.

Hypothesis A1 of Min, Zhu and Vidal (NeurIPS 2025, "Neural Collapse under Gradient
Flow on Shallow ReLU Networks for Orthogonally Separable Data") requires within-class
cosines ``>= mu_s > 0`` and cross-class cosines ``<= -mu_d < 0``. The strategies build
such data directly, so nothing is filtered: every class is a cone of half-angle
``alpha_max`` around a unit centre ``c_k``, with the centres far enough apart.

================  ==================  =======  ======================================
paper symbol      code name           shape    meaning
================  ==================  =======  ======================================
mu_s              min_mu_s            scalar   guaranteed lower bound on every
                                               within-class cosine
mu_d              min_mu_d            scalar   guaranteed bound: every cross-class
                                               cosine is <= -min_mu_d
X_max / X_min     max_norm_ratio      scalar   bound on the ratio of sample norms
K, D, n           K, D, n             scalar   classes, input dimension, samples
c_k               centres[k]          (D,)     unit centre of the cone of class k
alpha             alpha               scalar   angle of a sample from its centre,
                                               |alpha| <= alpha_max
theta_c           theta_c             scalar   angle between the two binary centres
e~_k              pseudo_labels(K)    (K,)     simplex-ETF column, pairwise cosine
                                               -1/(K-1), used as a centre
Q                 rotation            (D, D)   random rotation applied to all samples
================  ==================  =======  ======================================

Two samples of one cone are at most ``2 alpha_max`` apart, so their cosine is at least
``cos(2 alpha_max)``. Samples of cones whose centres are ``theta`` apart are at least
``theta - 2 alpha_max`` apart (the triangle inequality for angles), so their cosine is
at most ``cos(theta - 2 alpha_max)``. The strategies choose ``alpha_max`` and the
centres from these two facts. Every size is drawn with ``st.integers`` and every angle,
norm and offset with a bounded ``st.floats``, so a failing example shrinks to one
sample per class, the smallest ``D``, unrotated axes and samples on their centres.

``a1_breaking_datasets`` and ``orthogonal_boundary_datasets`` lie outside A1 by
construction and serve the explorations (one wrong-signed pair, and ``mu_d = 0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import hypothesis.strategies as st
import numpy as np
from hypothesis.strategies import SearchStrategy

from ncflow._validation import InvalidArgument, check_int, check_range
from ncflow.data import Dataset
from ncflow.geometry import pseudo_labels

_EPS = float(np.finfo(np.float64).eps)

# Factor of the roundoff slack between the cosine bounds that the construction aims
# at and the bounds it guarantees (see ``cosine_slack``).
_SLACK_FACTOR = 64

# Largest sizes the strategies accept. Each sample costs about D + 3 draws and the
# rotation D(D-1)/2, and Hypothesis gives one example 8 KiB of choices (the
# BUFFER_SIZE of Hypothesis 6.170), so larger examples would overrun it and be
# discarded rather than drawn.
_MAX_D = 12
_MAX_N_PER_CLASS = 32
_MAX_K = 10

# Norm ratio X_max/X_min that a dataset drawn with with_a5=False reaches at least.
# The A5 ratio is >= (X_max/X_min)^2 (K-1), because A1 forces mu_d <= 1/(K-1) and
# mu_s <= 1, and 1.5^2 (K-1) = 2.25 (K-1) > 2K - 3 for every K.
_A5_BREAKING_NORM_RATIO = 1.5

# Range of the angle beta of the extra pair of a1_breaking_datasets (see there).
_BREAK_ANGLE_MIN = math.pi / 12
_BREAK_ANGLE_MAX = math.pi / 6

# Largest integer coordinate of orthogonal_boundary_datasets. Inner products of such
# small integers are exact in float64.
_MAX_INTEGER_COORDINATE = 3


def cosine_slack(D: int, K: int) -> float:
    """Return the roundoff slack between constructed and guaranteed cosine bounds.

    A sample is built in four steps. They are a centre (an ETF column of ``K``
    terms, or one cosine and sine), the Householder basis of the centre's
    orthogonal complement (``D``-term inner products), the spherical coordinates of
    its offset (up to ``D`` products of sines), and the ``D(D-1)/2`` Givens
    rotations of the random frame. Each step moves the sample by a few units of
    roundoff relative to its norm, so the angle between two samples moves by a
    small multiple of ``(D^2 + K) eps``. Computing the cosine in float64 adds
    ``D + 3`` units more. The construction aims
    at cosines ``min_mu_s + slack`` and ``-(min_mu_d + slack)``, and the slack
    ``64 (D^2 + K + 8) eps`` leaves room for the constants of each step.

    Parameters
    ----------
    D : int
        Largest input dimension a strategy may draw.
    K : int
        Largest number of classes.

    Returns
    -------
    float
        About ``6.5e-13`` for ``D = 6`` and ``K = 2``.
    """
    return _SLACK_FACTOR * (D * D + K + 8) * _EPS


# --- Validation --------------------------------------------------------------------


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InvalidArgument(f"{name}={value!r} is invalid: it must be a bool")
    return bool(value)


def _check_size_range(
    low_name: str, low: object, high_name: str, high: object, minimum: int, maximum: int
) -> tuple[int, int]:
    """Check ``minimum <= low <= high <= maximum`` for two integer bounds."""
    low = check_int(low_name, low, minimum, maximum)
    high = check_int(
        high_name,
        high,
        low,
        maximum,
        fix=f"it is bounded below by {low_name}={low} and above by {maximum}",
    )
    return low, high


def _check_margins(
    min_mu_s: object, min_mu_d: object, slack: float
) -> tuple[float, float]:
    """Check ``0 < min_mu_s <= 1 - slack`` and ``0 < min_mu_d``."""
    min_mu_s = check_range("min_mu_s", min_mu_s, 0, 1, low_open=True)
    min_mu_d = check_range("min_mu_d", min_mu_d, 0, 1, low_open=True)
    if min_mu_s > 1.0 - slack:
        raise InvalidArgument(
            f"min_mu_s={min_mu_s!r} is infeasible: float64 cosines of these samples "
            f"carry up to {slack:.3g} of roundoff, so even equal directions cannot "
            f"guarantee mu_s >= {min_mu_s!r}; the largest feasible value is "
            f"1 - {slack:.3g} = {1.0 - slack!r}"
        )
    return min_mu_s, min_mu_d


def _check_norm_ratio(max_norm_ratio: object) -> float:
    return check_range("max_norm_ratio", max_norm_ratio, 1.0, 1e6)


def _check_etf_margin(min_mu_d: float, max_K: int, slack: float) -> None:
    """Reject ``min_mu_d`` above the E1 bound ``1/(K-1)`` less the slack."""
    largest = 1.0 / (max_K - 1) - slack
    if min_mu_d > largest:
        raise InvalidArgument(
            f"min_mu_d={min_mu_d!r} is infeasible with max_K={max_K}: every dataset "
            f"with K classes that meets A1 has mu_d <= 1/(K-1) = "
            f"{1.0 / (max_K - 1):.6g} (one unit sample per class sums to a vector of "
            f"squared norm <= K - K(K-1) mu_d), and the construction needs "
            f"{slack:.3g} of roundoff slack; the largest feasible value is "
            f"{largest!r}, or lower max_K"
        )


# --- Drawing helpers, shared with strategies.shapes ---------------------------------


def _draw_float(draw: st.DrawFn, low: float, high: float) -> float:
    """Draw a float in ``[low, high]``; a single point needs no draw."""
    if high <= low:
        return float(low)
    return draw(st.floats(low, high, allow_nan=False, allow_infinity=False))


def _draw_unit_vector(draw: st.DrawFn, m: int) -> np.ndarray:
    """Draw a unit vector of ``R^m`` in spherical coordinates.

    Every direction is reachable, but the distribution is not the uniform one. The
    angles shrink to 0, which gives the first axis.
    """
    if m == 1:
        return np.array([-1.0 if draw(st.booleans()) else 1.0])
    vector = np.empty(m)
    sine_product = 1.0
    for i in range(m - 1):
        angle = _draw_float(draw, -math.pi, math.pi)
        vector[i] = sine_product * math.cos(angle)
        sine_product *= math.sin(angle)
    vector[m - 1] = sine_product
    return vector


def _draw_rotation(draw: st.DrawFn, D: int) -> np.ndarray:
    """Draw a rotation of ``R^D`` as a product of Givens rotations of every plane.

    All ``D(D-1)/2`` angles shrink to 0, which gives the identity.
    """
    rotation = np.eye(D)
    for p in range(D - 1):
        for q in range(p + 1, D):
            angle = _draw_float(draw, -math.pi, math.pi)
            if angle == 0.0:
                continue
            cosine, sine = math.cos(angle), math.sin(angle)
            column_p = rotation[:, p].copy()
            column_q = rotation[:, q].copy()
            rotation[:, p] = cosine * column_p + sine * column_q
            rotation[:, q] = cosine * column_q - sine * column_p
    return rotation


def _complement_basis(centre: np.ndarray) -> np.ndarray:
    """Return an orthonormal basis of the complement of a unit vector, shape (D, D-1).

    The Householder reflection ``H`` with ``H e_0 = -sign(centre[0]) centre`` is
    orthogonal, so its other columns are orthonormal and orthogonal to ``centre``.
    Shifting by ``sign(centre[0]) e_0`` avoids cancellation.
    """
    shifted = centre.copy()
    shifted[0] += 1.0 if centre[0] >= 0 else -1.0
    reflection = np.eye(centre.size) - 2.0 * np.outer(shifted, shifted) / (
        shifted @ shifted
    )
    return reflection[:, 1:]


def _draw_class_directions(
    draw: st.DrawFn,
    centre: np.ndarray,
    alpha_max: float,
    count: int,
    allow_duplicates: bool,
) -> tuple[np.ndarray, list[int]]:
    """Draw the unit directions of one class, inside the cone around ``centre``.

    Each distinct sample is ``cos(alpha) c + sin(alpha) z`` with ``|alpha| <=
    alpha_max`` and ``z`` a unit vector orthogonal to ``c``, so its angle from ``c``
    is ``|alpha|``.

    Returns
    -------
    directions : ndarray, shape (m, D)
        The distinct samples, ``m <= count``.
    sources : list of int, length count
        Row of ``directions`` that each sample copies. With ``allow_duplicates`` a
        sample after the first may repeat an earlier one exactly.
    """
    basis = _complement_basis(centre)
    directions: list[np.ndarray] = []
    sources: list[int] = []
    for i in range(count):
        if allow_duplicates and i > 0 and draw(st.booleans()):
            sources.append(sources[draw(st.integers(0, i - 1))])
            continue
        alpha = _draw_float(draw, -alpha_max, alpha_max)
        offset = basis @ _draw_unit_vector(draw, basis.shape[1])
        directions.append(math.cos(alpha) * centre + math.sin(alpha) * offset)
        sources.append(len(directions) - 1)
    return np.array(directions), sources


@dataclass
class _Samples:
    """Distinct samples in the canonical frame and the rows that copy them."""

    distinct: list[np.ndarray]
    rows: list[int]
    labels: list[object]

    def add_class(self, points: np.ndarray, sources: list[int], label: object) -> None:
        offset = len(self.distinct)
        self.distinct.extend(points)
        self.rows.extend(offset + source for source in sources)
        self.labels.extend([label] * len(sources))


def _draw_dataset(
    draw: st.DrawFn,
    samples: _Samples,
    D: int,
    name: str,
    class_order: tuple[object, ...],
) -> tuple[Dataset, np.ndarray]:
    """Rotate the samples, copy the duplicates, shuffle, and build the dataset.

    Duplicates are copied after the rotation, so they repeat their source bit for
    bit. Returns the dataset and, per row of it, the index into ``samples.rows``.
    """
    rotation = _draw_rotation(draw, D)
    rotated = np.array(samples.distinct) @ rotation.T
    X = rotated[np.array(samples.rows)]
    labels = np.array(samples.labels)

    order = np.array(draw(st.permutations(range(X.shape[0]))), dtype=np.int64)
    dataset = Dataset.from_arrays(
        X[order], labels[order], name=name, class_order=class_order
    )
    return dataset, order


def _verify_margins(dataset: Dataset, min_mu_s: float, min_mu_d: float) -> None:
    """Raise AssertionError if the construction missed its own cosine bounds.

    This catches bugs of the construction, not bad draws: no draw can fail it. The
    cosines are computed here from normalised rows, independently of
    ``ncflow.geometry``.
    """
    units = dataset.X / np.linalg.norm(dataset.X, axis=1)[:, None]
    cosines = units @ units.T
    same = dataset.labels[:, None] == dataset.labels[None, :]
    off_diagonal = ~np.eye(dataset.n, dtype=bool)
    within = cosines[same & off_diagonal]
    cross = cosines[~same]
    if within.size and within.min() < min_mu_s:
        raise AssertionError(
            f"construction bug: {dataset.name} has a within-class cosine "
            f"{float(within.min())!r} below min_mu_s={min_mu_s!r}"
        )
    if cross.max() > -min_mu_d:
        raise AssertionError(
            f"construction bug: {dataset.name} has a cross-class cosine "
            f"{float(cross.max())!r} above -min_mu_d={-min_mu_d!r}"
        )


# --- Binary datasets ---------------------------------------------------------------


@dataclass(frozen=True)
class _BinarySpec:
    min_n_per_class: int
    max_n_per_class: int
    min_D: int
    max_D: int
    min_mu_s: float
    min_mu_d: float
    alpha_max: float
    theta_min: float
    max_norm_ratio: float
    allow_duplicates: bool
    imbalance: bool


def binary_datasets(
    *,
    min_n_per_class: int = 1,
    max_n_per_class: int = 8,
    min_D: int = 2,
    max_D: int = 6,
    min_mu_s: float = 0.1,
    min_mu_d: float = 0.05,
    max_norm_ratio: float = 3.0,
    allow_duplicates: bool = True,
    imbalance: bool = True,
) -> SearchStrategy[Dataset]:
    """Draw two-class datasets that meet A1 with margins of at least the given bounds.

    The centres ``c_+``, ``c_-`` span a plane and are ``theta_c`` apart. Each class
    lies in a cone of half-angle ``alpha_max = arccos(min_mu_s + slack) / 2``, so
    within-class cosines are ``>= min_mu_s``. ``theta_c >= pi/2 + arcsin(min_mu_d +
    slack) + 2 alpha_max``, so cross-class cosines are ``<= -min_mu_d``. Such a
    ``theta_c <= pi`` exists exactly when ``min_mu_d <= min_mu_s``, because
    ``pi/2 - arccos(m) = arcsin(m)``. The slack is :func:`cosine_slack`. All samples
    are then rotated by a drawn rotation.

    Parameters
    ----------
    min_n_per_class, max_n_per_class : int
        Range of each class size, ``1 <= min <= max <= 32``.
    min_D, max_D : int
        Range of the input dimension, ``2 <= min_D <= max_D <= 12``.
    min_mu_s : float
        In ``(0, 1 - slack]``.
    min_mu_d : float
        In ``(0, min_mu_s]``.
    max_norm_ratio : float
        Sample norms are drawn from ``[1, max_norm_ratio]``, so ``X_max / X_min <=
        max_norm_ratio``. At least 1.
    allow_duplicates : bool
        Whether a sample may repeat an earlier sample of its class exactly.
    imbalance : bool
        Whether the two class sizes are drawn independently (one sample against
        ``max_n_per_class`` is reachable); otherwise both classes have one drawn size.

    Returns
    -------
    SearchStrategy[Dataset]
        Labels ``+1`` (class 0) and ``-1`` (class 1), samples in drawn order. A
        failing example shrinks towards one sample per class, ``D = min_D``, antipodal
        centres on the first axis and unit norms.

    Raises
    ------
    InvalidArgument
        At construction, for a bound out of range or margins that no dataset can
        meet. The message names the bound, shows its value and gives the largest
        feasible one.
    """
    min_n_per_class, max_n_per_class = _check_size_range(
        "min_n_per_class",
        min_n_per_class,
        "max_n_per_class",
        max_n_per_class,
        1,
        _MAX_N_PER_CLASS,
    )
    min_D, max_D = _check_size_range("min_D", min_D, "max_D", max_D, 2, _MAX_D)
    slack = cosine_slack(max_D, 2)
    min_mu_s, min_mu_d = _check_margins(min_mu_s, min_mu_d, slack)
    if min_mu_d > min_mu_s:
        raise InvalidArgument(
            f"min_mu_d={min_mu_d!r} is infeasible with min_mu_s={min_mu_s!r}: two "
            f"cones whose within-class cosines are >= mu_s need their centres at least "
            f"pi/2 + arcsin(mu_d) + arccos(mu_s) apart, which is <= pi only when "
            f"mu_d <= mu_s; the largest feasible value is {min_mu_s!r}"
        )
    alpha_max = 0.5 * math.acos(min_mu_s + slack)
    theta_min = min(math.pi, math.pi / 2 + math.asin(min_mu_d + slack) + 2 * alpha_max)
    spec = _BinarySpec(
        min_n_per_class=min_n_per_class,
        max_n_per_class=max_n_per_class,
        min_D=min_D,
        max_D=max_D,
        min_mu_s=min_mu_s,
        min_mu_d=min_mu_d,
        alpha_max=alpha_max,
        theta_min=theta_min,
        max_norm_ratio=_check_norm_ratio(max_norm_ratio),
        allow_duplicates=_check_bool("allow_duplicates", allow_duplicates),
        imbalance=_check_bool("imbalance", imbalance),
    )
    return _binary_datasets(spec)


@st.composite
def _binary_datasets(draw: st.DrawFn, spec: _BinarySpec) -> Dataset:
    n_plus = draw(st.integers(spec.min_n_per_class, spec.max_n_per_class))
    if spec.imbalance:
        n_minus = draw(st.integers(spec.min_n_per_class, spec.max_n_per_class))
    else:
        n_minus = n_plus
    D = draw(st.integers(spec.min_D, spec.max_D))

    # theta_c shrinks to pi: antipodal centres are the simplest geometry.
    theta_c = math.pi - _draw_float(draw, 0.0, math.pi - spec.theta_min)
    centre_plus = np.zeros(D)
    centre_plus[0] = 1.0
    centre_minus = np.zeros(D)
    centre_minus[0] = math.cos(theta_c)
    centre_minus[1] = math.sin(theta_c)

    samples = _Samples([], [], [])
    for centre, count, label in ((centre_plus, n_plus, 1), (centre_minus, n_minus, -1)):
        directions, sources = _draw_class_directions(
            draw, centre, spec.alpha_max, count, spec.allow_duplicates
        )
        norms = [_draw_float(draw, 1.0, spec.max_norm_ratio) for _ in directions]
        samples.add_class(directions * np.array(norms)[:, None], sources, label)

    name = f"binary(n+={n_plus}, n-={n_minus}, D={D})"
    dataset, _ = _draw_dataset(draw, samples, D, name, class_order=(1, -1))
    _verify_margins(dataset, spec.min_mu_s, spec.min_mu_d)
    return dataset


# --- Multi-class datasets around a simplex ETF --------------------------------------


@dataclass(frozen=True)
class _MulticlassSpec:
    min_K: int
    max_K: int
    min_n_per_class: int
    max_n_per_class: int
    max_extra_D: int
    min_mu_s: float
    min_mu_d: float
    slack: float
    max_norm_ratio: float
    with_a5: bool | None
    allow_duplicates: bool


def _a5_budget(K: int) -> tuple[float, float]:
    """Return the cone half-angle and norm ratio under which A5 holds, for ``K >= 3``.

    A5 requires ``X_max^2 / (X_min^2 mu_d mu_s^2) < 2K - 3``. At ``alpha = 0`` and equal
    norms the ratio is ``K - 1``, so the budget ``b = (2K - 3)/(K - 1) > 1`` is split
    into three factors ``f = b^(1/4)``:

    - norms in ``[1, sqrt(f)]`` give ``X_max^2 / X_min^2 <= f``;
    - ``cos(2 alpha) >= f^(-1/2)`` gives ``1 / mu_s^2 <= f``;
    - ``2 alpha <= arcsin(1/(K-1)) - arcsin(1/((K-1) f))`` keeps cross-class angles
      ``>= pi/2 + arcsin(1/((K-1) f))``, so ``1 / mu_d <= (K-1) f``.

    The ratio is then at most ``(K-1) f^3 = (2K - 3) / b^(1/4)``, below the bound by
    the factor ``b^(1/4) >= 1.5^(1/4) = 1.107``, which the roundoff slack of the
    measured ``mu_s`` and ``mu_d`` cannot close.
    """
    budget = (2 * K - 3) / (K - 1)
    factor = budget**0.25
    alpha_within = 0.5 * math.acos(factor**-0.5)
    alpha_cross = 0.5 * (math.asin(1.0 / (K - 1)) - math.asin(1.0 / ((K - 1) * factor)))
    return min(alpha_within, alpha_cross), math.sqrt(factor)


def _etf_half_angle(K: int, mu_s_target: float, mu_d_target: float) -> float:
    """Return the largest cone half-angle around ETF centres that meets both targets.

    ETF centres are ``arccos(-1/(K-1)) = pi/2 + arcsin(1/(K-1))`` apart, so cross-class
    cosines stay ``<= -mu_d`` while ``2 alpha <= arcsin(1/(K-1)) - arcsin(mu_d)``.
    Within-class cosines stay ``>= mu_s`` while ``2 alpha <= arccos(mu_s)``.
    """
    alpha_within = 0.5 * math.acos(mu_s_target)
    alpha_cross = 0.5 * (math.asin(1.0 / (K - 1)) - math.asin(mu_d_target))
    return max(0.0, min(alpha_within, alpha_cross))


def _etf_centres(K: int, D: int) -> np.ndarray:
    """Return the simplex-ETF columns of ``pseudo_labels(K)`` as rows of ``R^D``."""
    centres = np.zeros((K, D))
    centres[:, :K] = pseudo_labels(K).T
    return centres


def multiclass_datasets(
    *,
    min_K: int = 3,
    max_K: int = 6,
    min_n_per_class: int = 1,
    max_n_per_class: int = 6,
    max_extra_D: int = 2,
    min_mu_s: float = 0.1,
    min_mu_d: float = 0.05,
    max_norm_ratio: float = 3.0,
    with_a5: bool | None = None,
    allow_duplicates: bool = True,
) -> SearchStrategy[Dataset]:
    """Draw ``K``-class datasets that meet A1, in cones around simplex-ETF centres.

    The centres are the columns ``e~_k`` of the pseudo-label matrix (pairwise cosine
    ``-1/(K-1)``), padded into ``R^D`` with ``D = K + extra``, ``extra`` drawn from
    ``0..max_extra_D``, and rotated by a drawn rotation. The cone half-angle is the
    largest that keeps within-class cosines ``>= min_mu_s`` and cross-class cosines
    ``<= -min_mu_d`` (``_etf_half_angle``), each with the roundoff slack of
    :func:`cosine_slack`. A1 forces ``mu_d <= 1/(K-1)`` (E1), so ``min_mu_d`` above
    ``1/(max_K - 1)`` less the slack is rejected.

    Parameters
    ----------
    min_K, max_K : int
        Range of the number of classes, ``2 <= min_K <= max_K <= 10``.
    min_n_per_class, max_n_per_class : int
        Range of each class size, drawn independently per class.
    max_extra_D : int
        ``D - K`` is drawn from ``0..max_extra_D``; ``D <= 12``.
    min_mu_s, min_mu_d : float
        Guaranteed bounds of A1, in ``(0, 1 - slack]`` and ``(0, 1/(max_K-1) - slack]``.
    max_norm_ratio : float
        Sample norms lie in ``[1, max_norm_ratio]``.
    with_a5 : bool or None
        True: also guarantee A5 by tight cones and nearly equal norms
        (``_a5_budget``), which needs ``min_K >= 3``. False: guarantee that A5 fails,
        through a norm ratio ``X_max / X_min >= 1.5``, which needs ``max_norm_ratio
        >= 1.5``. None: either.
    allow_duplicates : bool
        Whether a sample may repeat an earlier sample of its class exactly.

    Returns
    -------
    SearchStrategy[Dataset]
        Labels ``0..K-1``. A failing example shrinks towards ``K = min_K``,
        ``D = K``, one sample per class on the unrotated ETF centres.

    Raises
    ------
    InvalidArgument
        At construction, for a bound out of range or an infeasible combination.
    """
    spec = _multiclass_spec(
        min_K=min_K,
        max_K=max_K,
        min_n_per_class=min_n_per_class,
        max_n_per_class=max_n_per_class,
        max_extra_D=max_extra_D,
        extra_axes=0,
        min_mu_s=min_mu_s,
        min_mu_d=min_mu_d,
        max_norm_ratio=max_norm_ratio,
        with_a5=with_a5,
        allow_duplicates=allow_duplicates,
    )
    return _multiclass_datasets(spec)


def _multiclass_spec(
    *,
    min_K: object,
    max_K: object,
    min_n_per_class: object,
    max_n_per_class: object,
    max_extra_D: object,
    extra_axes: int,
    min_mu_s: object,
    min_mu_d: object,
    max_norm_ratio: object,
    with_a5: object,
    allow_duplicates: object,
) -> _MulticlassSpec:
    """Validate the arguments of the ETF-based strategies.

    ``extra_axes`` counts axes that the caller adds beyond ``K + max_extra_D``.
    """
    min_K, max_K = _check_size_range("min_K", min_K, "max_K", max_K, 2, _MAX_K)
    min_n_per_class, max_n_per_class = _check_size_range(
        "min_n_per_class",
        min_n_per_class,
        "max_n_per_class",
        max_n_per_class,
        1,
        _MAX_N_PER_CLASS,
    )
    max_extra_D = check_int(
        "max_extra_D",
        max_extra_D,
        0,
        _MAX_D - max_K - extra_axes,
        fix=f"D = K + extra must stay <= {_MAX_D} for max_K={max_K}",
    )
    slack = cosine_slack(max_K + max_extra_D + extra_axes, max_K)
    min_mu_s, min_mu_d = _check_margins(min_mu_s, min_mu_d, slack)
    _check_etf_margin(min_mu_d, max_K, slack)
    max_norm_ratio = _check_norm_ratio(max_norm_ratio)

    if with_a5 is not None:
        with_a5 = _check_bool("with_a5", with_a5)
    if with_a5 is True and min_K < 3:
        raise InvalidArgument(
            f"min_K={min_K} is infeasible with with_a5=True: for K = 2 the A5 bound "
            "2K - 3 is 1 and the A5 ratio is always >= 1; pass min_K >= 3"
        )
    if with_a5 is False and max_norm_ratio < _A5_BREAKING_NORM_RATIO:
        raise InvalidArgument(
            f"max_norm_ratio={max_norm_ratio!r} is infeasible with with_a5=False: A5 "
            f"is broken through a norm ratio X_max/X_min >= "
            f"{_A5_BREAKING_NORM_RATIO}; pass max_norm_ratio >= "
            f"{_A5_BREAKING_NORM_RATIO}"
        )
    return _MulticlassSpec(
        min_K=min_K,
        max_K=max_K,
        min_n_per_class=min_n_per_class,
        max_n_per_class=max_n_per_class,
        max_extra_D=max_extra_D,
        min_mu_s=min_mu_s,
        min_mu_d=min_mu_d,
        slack=slack,
        max_norm_ratio=max_norm_ratio,
        with_a5=with_a5,
        allow_duplicates=_check_bool("allow_duplicates", allow_duplicates),
    )


def _draw_etf_classes(
    draw: st.DrawFn, spec: _MulticlassSpec, K: int, D: int, samples: _Samples
) -> None:
    """Draw every class of an ETF-based dataset into ``samples`` (``D`` axes)."""
    alpha_max = _etf_half_angle(
        K, spec.min_mu_s + spec.slack, spec.min_mu_d + spec.slack
    )
    norm_ratio = spec.max_norm_ratio
    if spec.with_a5 is True:
        alpha_a5, ratio_a5 = _a5_budget(K)
        alpha_max = min(alpha_max, alpha_a5)
        norm_ratio = min(norm_ratio, ratio_a5)

    centres = _etf_centres(K, D)
    sizes = [
        draw(st.integers(spec.min_n_per_class, spec.max_n_per_class)) for _ in range(K)
    ]
    for k in range(K):
        directions, sources = _draw_class_directions(
            draw, centres[k], alpha_max, sizes[k], spec.allow_duplicates
        )
        norms = [_draw_float(draw, 1.0, norm_ratio) for _ in directions]
        if spec.with_a5 is False and k == 0:
            norms[0] = 1.0
        if spec.with_a5 is False and k == 1:
            norms[0] = _draw_float(draw, _A5_BREAKING_NORM_RATIO, norm_ratio)
        samples.add_class(directions * np.array(norms)[:, None], sources, k)


@st.composite
def _multiclass_datasets(draw: st.DrawFn, spec: _MulticlassSpec) -> Dataset:
    K = draw(st.integers(spec.min_K, spec.max_K))
    D = K + draw(st.integers(0, spec.max_extra_D))
    samples = _Samples([], [], [])
    _draw_etf_classes(draw, spec, K, D, samples)

    name = f"multiclass(K={K}, n={len(samples.rows)}, D={D})"
    dataset, _ = _draw_dataset(draw, samples, D, name, class_order=tuple(range(K)))
    _verify_margins(dataset, spec.min_mu_s, spec.min_mu_d)
    return dataset


def near_etf_datasets(
    *,
    K: int,
    gap: float,
    min_n_per_class: int = 1,
    max_n_per_class: int = 4,
    max_extra_D: int = 2,
    min_mu_s: float = 0.1,
    max_norm_ratio: float = 3.0,
) -> SearchStrategy[Dataset]:
    """Draw ``K``-class datasets with ``mu_d`` within ``gap`` of the E1 bound.

    The classes are tight cones around the exact simplex-ETF centres, with
    ``min_mu_d = 1/(K-1) - gap``; the measured ``mu_d`` is in ``[1/(K-1) - gap,
    1/(K-1)]`` up to float64 roundoff above.

    Parameters
    ----------
    K : int
        Number of classes, ``2 <= K <= 10``.
    gap : float
        In ``[slack, 1/(K-1))``, where ``slack`` is :func:`cosine_slack`.
    min_n_per_class, max_n_per_class, max_extra_D, min_mu_s, max_norm_ratio
        As for :func:`multiclass_datasets`.

    Returns
    -------
    SearchStrategy[Dataset]
    """
    K = check_int("K", K, 2, _MAX_K)
    gap = check_range("gap", gap, 0.0, 1.0 / (K - 1), low_open=True, high_open=True)
    max_extra = check_int("max_extra_D", max_extra_D, 0, _MAX_D - K)
    slack = cosine_slack(K + max_extra, K)
    if gap < slack:
        raise InvalidArgument(
            f"gap={gap!r} is infeasible: the construction needs {slack:.3g} of float64 "
            f"roundoff slack below 1/(K-1); the smallest feasible gap is {slack!r}"
        )
    spec = _multiclass_spec(
        min_K=K,
        max_K=K,
        min_n_per_class=min_n_per_class,
        max_n_per_class=max_n_per_class,
        max_extra_D=max_extra,
        extra_axes=0,
        min_mu_s=min_mu_s,
        min_mu_d=1.0 / (K - 1) - gap,
        max_norm_ratio=max_norm_ratio,
        with_a5=None,
        allow_duplicates=True,
    )
    return _multiclass_datasets(spec)


# --- Explorations outside A1 ----------------------------------------------------


def a1_breaking_datasets(
    *,
    min_K: int = 2,
    max_K: int = 3,
    min_n_per_class: int = 1,
    max_n_per_class: int = 6,
    max_extra_D: int = 2,
    min_mu_s: float = 0.1,
    min_mu_d: float = 0.05,
    max_norm_ratio: float = 3.0,
) -> SearchStrategy[Dataset]:
    """Draw datasets in which exactly one pair of samples breaks A1 (exploration X3).

    These data lie outside the hypotheses of the theorem. The base samples are
    drawn as by :func:`multiclass_datasets` (ETF centres, ``D - 1 = K + extra``
    axes), and one extra axis ``e`` is added, orthogonal to all of them. Then a pair
    ``a``, ``b`` is added, with ``beta`` drawn from ``[pi/12, pi/6]``, of a drawn kind:

    - ``"within"``: ``a = sin(beta) c_k + cos(beta) e``, ``b = sin(beta) c_k -
      cos(beta) e``, both of class ``k``, with ``<a, b> = -cos(2 beta) <= -1/2``;
    - ``"cross"``: ``a = sin(beta) c_k + cos(beta) e`` of class ``k`` and ``b =
      sin(beta) c_l + cos(beta) e`` of class ``l``, with ``<a, b> = cos^2(beta) +
      sin^2(beta) cos(c_k, c_l) >= cos(2 beta) >= 1/2``.

    Every other pair keeps the sign A1 needs, because the base samples have no
    component along ``e``. For a base sample ``x``, ``<a, x> = sin(beta) <c_k, x>``.
    That is positive within class ``k``, and at most ``-sin(beta) min_mu_d |x|``
    across classes, since the centre ``c_k`` is itself a point of its cone.
    The base samples meet A1 with ``min_mu_s`` and ``min_mu_d`` among themselves.
    No sample is duplicated.

    Returns
    -------
    SearchStrategy[Dataset]
        The dataset's ``name`` ends with the kind and the rows of the pair, as in
        ``"a1_breaking(K=2, n=4, D=4, cross pair 0,3)"``.
    """
    spec = _multiclass_spec(
        min_K=min_K,
        max_K=max_K,
        min_n_per_class=min_n_per_class,
        max_n_per_class=max_n_per_class,
        max_extra_D=max_extra_D,
        extra_axes=1,
        min_mu_s=min_mu_s,
        min_mu_d=min_mu_d,
        max_norm_ratio=max_norm_ratio,
        with_a5=None,
        allow_duplicates=False,
    )
    return _a1_breaking_datasets(spec)


@st.composite
def _a1_breaking_datasets(draw: st.DrawFn, spec: _MulticlassSpec) -> Dataset:
    K = draw(st.integers(spec.min_K, spec.max_K))
    base_D = K + draw(st.integers(0, spec.max_extra_D))
    D = base_D + 1
    base = _Samples([], [], [])
    _draw_etf_classes(draw, spec, K, base_D, base)
    samples = _Samples(
        [np.append(point, 0.0) for point in base.distinct], base.rows, base.labels
    )

    kind = draw(st.sampled_from(("within", "cross")))
    k = draw(st.integers(0, K - 2)) if kind == "cross" else draw(st.integers(0, K - 1))
    l = draw(st.integers(k + 1, K - 1)) if kind == "cross" else k
    beta = _draw_float(draw, _BREAK_ANGLE_MIN, _BREAK_ANGLE_MAX)
    centres = _etf_centres(K, base_D)
    extra_axis = np.zeros(D)
    extra_axis[-1] = 1.0
    offset_b = 1.0 if kind == "cross" else -1.0
    a = math.sin(beta) * np.append(centres[k], 0.0) + math.cos(beta) * extra_axis
    b = (
        math.sin(beta) * np.append(centres[l], 0.0)
        + offset_b * math.cos(beta) * extra_axis
    )
    for point, label in ((a, k), (b, l)):
        norm = _draw_float(draw, 1.0, spec.max_norm_ratio)
        samples.add_class(norm * point[None, :], [0], label)

    n = len(samples.rows)
    name = f"a1_breaking(K={K}, n={n}, D={D})"
    dataset, order = _draw_dataset(draw, samples, D, name, class_order=tuple(range(K)))
    position = np.argsort(order)
    i, j = sorted((int(position[n - 2]), int(position[n - 1])))
    return Dataset(
        X=dataset.X,
        labels=dataset.labels,
        class_names=dataset.class_names,
        name=f"a1_breaking(K={K}, n={n}, D={D}, {kind} pair {i},{j})",
    )


def orthogonal_boundary_datasets(
    *, min_n_per_class: int = 1, max_n_per_class: int = 4
) -> SearchStrategy[Dataset]:
    """Draw two-class integer datasets with ``mu_d = 0`` exactly (outside A1).

    Phuong and Lampert (ICLR 2021) call such data orthogonally separable, but A1
    needs ``mu_d > 0``. Class ``+`` lives on a block of ``1..2`` axes, with its first
    coordinate in ``1..3`` and the others in ``0..3``. Class ``-`` lives on a second
    block, with the same ranges, plus a coordinate in ``-3..0`` on the first axis of
    class ``+``, except that its first sample has 0 there. Every cross-class inner
    product is then ``<= 0``, the first sample of class ``-`` is exactly orthogonal
    to every sample of class ``+``, and every within-class inner product is
    ``>= 1``. All values are small integers, so every inner product is exact in
    float64. The axes are permuted, not rotated, which keeps them exact.

    Returns
    -------
    SearchStrategy[Dataset]
        Labels ``+1`` (class 0) and ``-1`` (class 1).
    """
    min_n_per_class, max_n_per_class = _check_size_range(
        "min_n_per_class",
        min_n_per_class,
        "max_n_per_class",
        max_n_per_class,
        1,
        _MAX_N_PER_CLASS,
    )
    return _orthogonal_boundary_datasets(min_n_per_class, max_n_per_class)


@st.composite
def _orthogonal_boundary_datasets(
    draw: st.DrawFn, min_n_per_class: int, max_n_per_class: int
) -> Dataset:
    n_plus = draw(st.integers(min_n_per_class, max_n_per_class))
    n_minus = draw(st.integers(min_n_per_class, max_n_per_class))
    block_plus = draw(st.integers(1, 2))
    block_minus = draw(st.integers(1, 2))
    D = block_plus + block_minus
    top = _MAX_INTEGER_COORDINATE

    def block_row(first: int, size: int) -> np.ndarray:
        row = np.zeros(D)
        row[first] = draw(st.integers(1, top))
        for axis in range(first + 1, first + size):
            row[axis] = draw(st.integers(0, top))
        return row

    rows = [block_row(0, block_plus) for _ in range(n_plus)]
    for i in range(n_minus):
        row = block_row(block_plus, block_minus)
        if i > 0:
            row[0] = -draw(st.integers(0, top))
        rows.append(row)
    labels = np.array([1] * n_plus + [-1] * n_minus)

    axes = np.array(draw(st.permutations(range(D))), dtype=np.int64)
    order = np.array(draw(st.permutations(range(n_plus + n_minus))), dtype=np.int64)
    X = np.array(rows)[:, axes][order]
    name = f"orthogonal_boundary(n+={n_plus}, n-={n_minus}, D={D})"
    return Dataset.from_arrays(X, labels[order], name=name, class_order=(1, -1))
