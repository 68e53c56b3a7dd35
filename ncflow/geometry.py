"""Data measures of the hypotheses and predictions of Min, Zhu and Vidal (NeurIPS 2025).

The paper is "Neural Collapse under Gradient Flow on Shallow ReLU Networks for
Orthogonally Separable Data". Its hypotheses A1 (orthogonal separability with
margins) and A5 (the multi-class data condition) and its limits (the one-class max
margins, the coefficients ``s_k`` and the pseudo-labels) are functions of the data
alone, and this module computes them.

==============  ========================  =======  =============================
paper symbol    code name                 shape    meaning
==============  ========================  =======  =============================
cos(x_i, x_j)   cosine_matrix(X)[i, j]    (n, n)   <x_i, x_j> / (|x_i| |x_j|)
mu_s            SeparabilityReport.mu_s   scalar   min cosine of two samples of
                                                   one class (1 with no pair)
mu_d            SeparabilityReport.mu_d   scalar   minus the max cosine of two
                                                   samples of different classes
X_max, X_min    x_max, x_min              scalar   largest, smallest |x_i|
gamma_k         MaxMargin.gamma           scalar   max_{|u|=1} min_i <x_i, u>
                                                   over class k: distance from
                                                   0 to the hull of class k
u_k             MaxMargin.u               (D,)     unit maximiser of gamma_k
a               MaxMargin.weights         (n_k,)   simplex weights with
                                                   sum_i a_i x_i = gamma_k u_k
s_k             s_coefficients(gammas)    (K,)     sqrt((1/gamma_k) /
                                                   (2 sum_l 1/gamma_l))
E~              pseudo_labels(K)          (K, K)   sqrt(K/(K-1)) (I - 11^T/K),
                                                   columns a simplex ETF
xbar_k          class_sum_directions(d)   (K, D)   row k: unit vector along
                                                   sum_{i in I_k} x_i
==============  ========================  =======  =============================

The symbols are the paper's, and all norms |x| are Euclidean.

A1 is met with the constants ``mu_s > 0`` and ``mu_d > 0`` when every within-class
cosine is at least ``mu_s`` and every cross-class cosine at most ``-mu_d``. Phuong and
Lampert (ICLR 2021) define orthogonal separability with the non-strict ``<= 0``
across classes, so data with ``mu_d = 0`` meet their definition but not A1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.optimize

from ncflow._validation import InvalidArgument, check_array, check_int
from ncflow.data import Dataset

_EPS = float(np.finfo(np.float64).eps)

# Maximum number of cosines computed at once (32 MiB of float64), so that the
# pairwise measures of large datasets need no (n, n) matrix.
_MAX_BLOCK_ENTRIES = 1 << 22

# Weight of the row ``sum_i a_i = 1`` appended to the NNLS problem, in units of
# X_max. The NNLS solution then misses the constraint by a factor of about
# 1 - (gamma / (weight X_max))^2, which the rescaling to sum 1 removes exactly, and
# the active-set polish removes the roundoff that remains.
_NNLS_SUM_WEIGHT = 1e4

# Constants of the roundoff model of ``max_margin`` (see ``_roundoff_scale``).
_KKT_SLACK_FACTOR = 4.0
_VERIFY_FACTOR = 16.0
_GAMMA_FLOOR_FACTOR = 16.0


class MaxMarginError(RuntimeError):
    """The one-class max-margin solver returned a point that fails verification."""


@dataclass(frozen=True)
class SeparabilityReport:
    """Constants of hypothesis A1 measured over every pair of samples.

    Attributes
    ----------
    mu_s : float
        Min within-class cosine over pairs ``i != j``; 1.0 when no class has two
        samples.
    mu_d : float
        Minus the max cross-class cosine, so every cross-class cosine is ``<= -mu_d``.
    holds_a1 : bool
        Whether ``mu_s > 0`` and ``mu_d > 0``.
    worst_within_pair : tuple of (int, int, float) or None
        Rows ``i < j`` and cosine of the within-class pair attaining ``mu_s``;
        None when no class has two samples.
    worst_cross_pair : tuple of (int, int, float)
        Rows ``i < j`` and cosine of the cross-class pair attaining ``-mu_d``.
    violating_within_share : float
        Share of within-class pairs with cosine ``<= 0``; 0.0 when there is none.
    violating_cross_share : float
        Share of cross-class pairs with cosine ``>= 0``.
    x_max, x_min : float
        Largest and smallest sample norm ``X_max`` and ``X_min``.
    """

    mu_s: float
    mu_d: float
    holds_a1: bool
    worst_within_pair: tuple[int, int, float] | None
    worst_cross_pair: tuple[int, int, float]
    violating_within_share: float
    violating_cross_share: float
    x_max: float
    x_min: float


@dataclass(frozen=True)
class A5Report:
    """Hypothesis A5, ``X_max^2 / (X_min^2 mu_d mu_s^2) < 2K - 3``.

    Attributes
    ----------
    ratio : float
        ``X_max^2 / (X_min^2 mu_d mu_s^2)``; ``inf`` when ``mu_d <= 0`` or
        ``mu_s <= 0``.
    bound : int
        ``2K - 3``.
    holds : bool
        Whether ``ratio < bound``. Since ``ratio >= 1``, A5 never holds for ``K = 2``.
    mu_s, mu_d, x_max, x_min : float
        The measured constants that enter ``ratio``.
    """

    ratio: float
    bound: int
    holds: bool
    mu_s: float
    mu_d: float
    x_max: float
    x_min: float


@dataclass(frozen=True)
class MaxMargin:
    """One-class max margin ``gamma_k`` and its maximiser ``u_k``.

    Attributes
    ----------
    gamma : float
        Distance from the origin to the convex hull of the class, ``> 0``.
    u : ndarray, shape (D,)
        Unit vector along the nearest point of the hull.
    weights : ndarray, shape (m,)
        Simplex weights ``a`` with ``sum_i a_i x_i = gamma u``.
    support : ndarray of int, shape (s,)
        Indices with ``a_i > 0``, in increasing order.
    verified_gap : float
        ``|min_i <x_i, u> - gamma| / gamma``, the relative duality gap.
    tolerance : float
        Largest ``verified_gap`` that float64 roundoff explains for this class.
    """

    gamma: float
    u: np.ndarray
    weights: np.ndarray
    support: np.ndarray
    verified_gap: float
    tolerance: float


def cosine_matrix(X: np.ndarray) -> np.ndarray:
    """Return the cosines of every pair of rows.

    Parameters
    ----------
    X : ndarray, shape (n, D)
        Samples, none of them zero.

    Returns
    -------
    ndarray, shape (n, n)
        ``C[i, j] = <x_i, x_j> / (||x_i|| ||x_j||)``, clipped to [-1, 1], with a
        diagonal of exactly 1. The sign of each entry is the sign of the computed
        inner product, so exactly orthogonal rows give exactly 0.
    """
    X = check_array("X", X, ndim=2)
    norms = np.linalg.norm(X, axis=1)
    zero_rows = np.flatnonzero(norms == 0)
    if zero_rows.size:
        raise InvalidArgument(
            f"X[{zero_rows[0]}] is invalid: the row is a zero vector, so its cosines "
            "are undefined; remove the zero rows"
        )
    cosines = _cosines(X, norms, X, norms)
    np.fill_diagonal(cosines, 1.0)
    return cosines


def separability(dataset: Dataset) -> SeparabilityReport:
    """Measure the constants ``mu_s`` and ``mu_d`` of hypothesis A1 over all pairs.

    Every pair is computed, in blocks of rows so that no (n, n) matrix is formed. The
    cosines are computed as in :func:`cosine_matrix`.

    Parameters
    ----------
    dataset : Dataset
        Samples and classes.

    Returns
    -------
    SeparabilityReport
    """
    _check_dataset(dataset)
    X = dataset.X
    norms = np.linalg.norm(X, axis=1)
    indices = dataset.class_indices

    within = _PairExtreme(largest=False)
    for rows in indices:
        within.update_within(X, norms, rows)
    cross = _PairExtreme(largest=True)
    for k in range(dataset.K):
        for l in range(k + 1, dataset.K):
            cross.update_cross(X, norms, indices[k], indices[l])

    mu_s = 1.0 if within.pair is None else within.value
    # Adding 0.0 turns -0.0 into 0.0 for exactly orthogonal classes.
    mu_d = -cross.value + 0.0
    return SeparabilityReport(
        mu_s=mu_s,
        mu_d=mu_d,
        holds_a1=bool(mu_s > 0 and mu_d > 0),
        worst_within_pair=within.pair,
        worst_cross_pair=cross.pair,
        violating_within_share=within.violating_share,
        violating_cross_share=cross.violating_share,
        x_max=float(norms.max()),
        x_min=float(norms.min()),
    )


def a5_ratio(dataset: Dataset) -> A5Report:
    """Evaluate hypothesis A5, ``X_max^2 / (X_min^2 mu_d mu_s^2) < 2K - 3``.

    A5 is the multi-class data condition of Min, Zhu and Vidal (NeurIPS 2025). It
    forces nearly equal norms and tight classes.

    Parameters
    ----------
    dataset : Dataset
        Samples and classes.

    Returns
    -------
    A5Report
    """
    report = separability(dataset)
    if report.mu_d <= 0 or report.mu_s <= 0:
        ratio = float("inf")
    else:
        ratio = report.x_max**2 / (report.x_min**2 * report.mu_d * report.mu_s**2)
    bound = 2 * dataset.K - 3
    return A5Report(
        ratio=ratio,
        bound=bound,
        holds=bool(ratio < bound),
        mu_s=report.mu_s,
        mu_d=report.mu_d,
        x_max=report.x_max,
        x_min=report.x_min,
    )


def max_margin(X_class: np.ndarray) -> MaxMargin:
    """Compute the one-class max margin ``gamma_k`` and its maximiser ``u_k``.

    ``gamma_k = max_{||u|| = 1} min_i <x_i, u>`` equals the distance from the origin
    to the convex hull of the rows, the minimum of ``||sum_i a_i x_i||`` over the
    probability simplex, and ``u_k`` is the nearest point divided by ``gamma_k``.
    The solver starts from non-negative least squares on the problem augmented by a
    heavily weighted row ``sum_i a_i = 1``. It then polishes with Wolfe's active-set
    method for the minimum-norm point of a polytope: an exact affine least-squares
    solve on the support, and a support update until every row meets the optimality
    condition ``<x_i, p> >= ||p||^2`` for the nearest point ``p``.

    Parameters
    ----------
    X_class : ndarray, shape (m, D)
        Samples of one class, one per row.

    Returns
    -------
    MaxMargin

    Raises
    ------
    InvalidArgument
        If ``X_class`` is not a finite non-empty 2-D array. Also if the origin lies
        in the convex hull of the rows up to roundoff: the class is then not
        contained in an open half-space, and its max margin is not positive.
    MaxMarginError
        If ``min_i <x_i, u> = gamma`` fails by more than roundoff explains.
    """
    X = check_array("X_class", X_class, ndim=2)
    m, D = X.shape
    if m == 0 or D == 0:
        raise InvalidArgument(
            f"X_class is invalid: it must have at least one row and one column, got "
            f"shape {X.shape}"
        )
    x_max = float(np.linalg.norm(X, axis=1).max())
    roundoff = _roundoff_scale(m, D)

    weights = _nnls_start(X, x_max)
    weights = _polish_active_set(X, weights, _KKT_SLACK_FACTOR * roundoff * x_max**2)

    p = X.T @ weights
    gamma = float(np.linalg.norm(p))
    gamma_floor = _GAMMA_FLOOR_FACTOR * roundoff * x_max
    if gamma <= gamma_floor:
        raise InvalidArgument(
            f"X_class (shape {X.shape}) is invalid: the origin lies in the convex hull "
            f"of its rows up to roundoff (distance {gamma:.3g} <= {gamma_floor:.3g}), "
            "so the class is not contained in an open half-space and its one-class "
            "max margin is not positive"
        )

    u = p / gamma
    verified_gap = abs(float(np.min(X @ u)) - gamma) / gamma
    # NOTE: the tolerance grows like (X_max / gamma)^2, so a class whose hull nearly
    # reaches the origin gets gamma and u to fewer digits.
    tolerance = _VERIFY_FACTOR * roundoff * (x_max / gamma) ** 2
    if not verified_gap <= tolerance:
        raise MaxMarginError(
            f"max_margin failed verification on a class of shape {X.shape}: "
            f"|min_i <x_i, u> - gamma| / gamma = {verified_gap:.3g} exceeds the "
            f"roundoff tolerance {tolerance:.3g} (gamma = {gamma:.6g}, X_max = "
            f"{x_max:.6g})"
        )
    support = np.flatnonzero(weights > 0)
    return MaxMargin(
        gamma=gamma,
        u=u,
        weights=weights,
        support=support,
        verified_gap=verified_gap,
        tolerance=tolerance,
    )


def class_max_margins(dataset: Dataset) -> tuple[MaxMargin, ...]:
    """Return the one-class max margin of every class, in class order.

    Parameters
    ----------
    dataset : Dataset
        Samples and classes.

    Returns
    -------
    tuple of MaxMargin, length K

    Raises
    ------
    InvalidArgument
        If a class is not contained in an open half-space; the message names it.
    """
    _check_dataset(dataset)
    margins = []
    for k, rows in enumerate(dataset.class_indices):
        try:
            margins.append(max_margin(dataset.X[rows]))
        except InvalidArgument as error:
            raise InvalidArgument(
                f"class {k} ({dataset.class_names[k]!r}) of {dataset.name!r}: {error}"
            ) from error
    return tuple(margins)


def s_coefficients(gammas: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return ``s_k = sqrt((1/gamma_k) / (2 sum_l 1/gamma_l))``.

    The coefficients satisfy ``sum_k 2 s_k^2 = 1`` and scale the class blocks of the
    limit direction in Min, Zhu and Vidal (NeurIPS 2025).

    Parameters
    ----------
    gammas : array_like, shape (K,)
        One-class max margins ``gamma_k``, all ``> 0``, ``K >= 2``.

    Returns
    -------
    ndarray, shape (K,)
    """
    gammas = _validated_gammas(gammas)
    inverse = 1.0 / gammas
    return np.sqrt(inverse / (2.0 * inverse.sum()))


def predicted_margin(
    gammas: Sequence[float] | np.ndarray, *, multiclass: bool
) -> float:
    """Return the normalised margin that the limit direction attains on every class.

    Binary (scalar output): ``1 / (2 sum_k 1/gamma_k)``. Multi-class (``K`` outputs,
    margin ``[f]_k - max_{l != k} [f]_l``): ``sqrt(K/(K-1)) / (2 sum_k 1/gamma_k)``.
    Both are from Min, Zhu and Vidal (NeurIPS 2025).

    Parameters
    ----------
    gammas : array_like, shape (K,)
        One-class max margins ``gamma_k``, all ``> 0``.
    multiclass : bool
        Whether the network has ``K`` outputs. A two-class problem trained with a
        two-output softmax uses the multi-class formula.

    Returns
    -------
    float
    """
    gammas = _validated_gammas(gammas)
    if not isinstance(multiclass, bool | np.bool_):
        raise InvalidArgument(
            f"multiclass={multiclass!r} is invalid: it must be a bool"
        )
    K = gammas.size
    harmonic_term = 2.0 * float(np.sum(1.0 / gammas))
    if not multiclass:
        if K != 2:
            raise InvalidArgument(
                f"gammas has K={K} entries, but the binary formula (multiclass=False) "
                "needs exactly two; pass multiclass=True for K outputs"
            )
        return 1.0 / harmonic_term
    return float(np.sqrt(K / (K - 1))) / harmonic_term


def pseudo_labels(K: int) -> np.ndarray:
    """Return the pseudo-label matrix ``E~ = sqrt(K/(K-1)) (I_K - 11^T/K)``.

    Its columns are unit vectors with pairwise inner product ``-1/(K-1)``, a simplex
    equiangular tight frame.

    Parameters
    ----------
    K : int
        Number of classes, ``>= 2``.

    Returns
    -------
    ndarray, shape (K, K)
    """
    K = check_int("K", K, 2)
    centering = np.eye(K) - np.full((K, K), 1.0 / K)
    return np.sqrt(K / (K - 1)) * centering


def class_sum_directions(dataset: Dataset) -> np.ndarray:
    """Return the unit vectors ``xbar_k`` along the class sums, one row per class.

    Parameters
    ----------
    dataset : Dataset
        Samples and classes.

    Returns
    -------
    ndarray, shape (K, D)

    Raises
    ------
    InvalidArgument
        If the samples of a class sum to zero.
    """
    _check_dataset(dataset)
    directions = np.empty((dataset.K, dataset.D))
    for k, rows in enumerate(dataset.class_indices):
        total = dataset.X[rows].sum(axis=0)
        length = float(np.linalg.norm(total))
        if length == 0:
            raise InvalidArgument(
                f"class {k} ({dataset.class_names[k]!r}) of {dataset.name!r} has "
                "samples that sum to zero, so its direction xbar_k is undefined"
            )
        directions[k] = total / length
    return directions


def _check_dataset(dataset: object) -> None:
    if not isinstance(dataset, Dataset):
        raise InvalidArgument(
            f"dataset={dataset!r} is invalid: it must be an ncflow.data.Dataset; "
            "build one with Dataset.from_arrays(X, y)"
        )


def _cosines(
    rows: np.ndarray, row_norms: np.ndarray, cols: np.ndarray, col_norms: np.ndarray
) -> np.ndarray:
    """Cosines of ``rows`` against ``cols``, from the raw inner products."""
    cosines = (rows @ cols.T) / np.outer(row_norms, col_norms)
    return np.clip(cosines, -1.0, 1.0)


def _row_blocks(n_rows: int, n_cols: int) -> Iterator[tuple[int, int]]:
    step = max(1, _MAX_BLOCK_ENTRIES // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield start, min(start + step, n_rows)


class _PairExtreme:
    """Running extreme cosine and violation count over blocks of sample pairs.

    Tracks the min within-class cosine (``largest=False``, violation ``cos <= 0``) or
    the max cross-class cosine (``largest=True``, violation ``cos >= 0``).
    """

    def __init__(self, *, largest: bool) -> None:
        self.largest = largest
        self.value = -np.inf if largest else np.inf
        self.pair: tuple[int, int, float] | None = None
        self.pairs = 0
        self.violations = 0

    @property
    def violating_share(self) -> float:
        return self.violations / self.pairs if self.pairs else 0.0

    def update_within(self, X: np.ndarray, norms: np.ndarray, rows: np.ndarray) -> None:
        """Add the pairs ``i < j`` of one class."""
        m = rows.size
        for start, stop in _row_blocks(m, m):
            block = _cosines(
                X[rows[start:stop]], norms[rows[start:stop]], X[rows], norms[rows]
            )
            upper = np.arange(m)[None, :] > np.arange(start, stop)[:, None]
            self._update(block, upper, rows[start:stop], rows)

    def update_cross(
        self, X: np.ndarray, norms: np.ndarray, rows: np.ndarray, cols: np.ndarray
    ) -> None:
        """Add every pair of a sample of ``rows`` with a sample of ``cols``."""
        for start, stop in _row_blocks(rows.size, cols.size):
            block = _cosines(
                X[rows[start:stop]], norms[rows[start:stop]], X[cols], norms[cols]
            )
            self._update(block, None, rows[start:stop], cols)

    def _update(
        self,
        block: np.ndarray,
        valid: np.ndarray | None,
        row_ids: np.ndarray,
        col_ids: np.ndarray,
    ) -> None:
        if valid is None:
            valid = np.ones(block.shape, dtype=bool)
        count = int(valid.sum())
        if count == 0:
            return
        self.pairs += count
        if self.largest:
            self.violations += int(np.count_nonzero(valid & (block >= 0)))
            masked = np.where(valid, block, -np.inf)
            flat = int(np.argmax(masked))
        else:
            self.violations += int(np.count_nonzero(valid & (block <= 0)))
            masked = np.where(valid, block, np.inf)
            flat = int(np.argmin(masked))

        r, c = np.unravel_index(flat, block.shape)
        candidate = float(block[r, c])
        better = candidate > self.value if self.largest else candidate < self.value
        if better or self.pair is None:
            i, j = sorted((int(row_ids[r]), int(col_ids[c])))
            self.value = candidate
            self.pair = (i, j, candidate)


def _roundoff_scale(m: int, D: int) -> float:
    """Return ``(m + D) eps``, the relative roundoff scale of the max-margin problem.

    The nearest point ``p = sum_i a_i x_i`` sums ``m`` terms with weights in [0, 1],
    and the weights come from a backward-stable least-squares solve, so ``p`` carries
    an absolute error of a small multiple of ``(m + D) eps X_max``. Each inner
    product ``<x_i, p>`` has ``D`` terms, so it carries an absolute error of a small
    multiple of ``(m + D) eps X_max^2``. Hence:

    - the optimality test ``<x_i, p> >= ||p||^2`` is decided only up to
      ``_KKT_SLACK_FACTOR (m + D) eps X_max^2``;
    - the relative gap ``|min_i <x_i, u> - gamma| / gamma``, which equals
      ``|min_i <x_i, p> - ||p||^2| / gamma^2``, is explained by roundoff up to
      ``_VERIFY_FACTOR (m + D) eps (X_max / gamma)^2`` (four KKT slacks);
    - a distance ``gamma <= _GAMMA_FLOOR_FACTOR (m + D) eps X_max`` is not
      distinguishable from 0.
    """
    return (m + D) * _EPS


def _nnls_start(X: np.ndarray, x_max: float) -> np.ndarray:
    """Return simplex weights from NNLS with the weighted row ``sum_i a_i = 1``."""
    m, D = X.shape
    weight = _NNLS_SUM_WEIGHT * x_max
    augmented = np.vstack([X.T, np.full((1, m), weight)])
    target = np.zeros(D + 1)
    target[D] = weight
    try:
        weights, _ = scipy.optimize.nnls(augmented, target, maxiter=50 * (m + D))
    except RuntimeError:
        weights = np.zeros(m)
    total = weights.sum()
    if not total > 0:
        # The shortest row is a valid start for the active-set method.
        weights = np.zeros(m)
        weights[int(np.argmin(np.linalg.norm(X, axis=1)))] = 1.0
        return weights
    return weights / total


def _affine_weights(points: np.ndarray, reference: int) -> np.ndarray:
    """Weights ``b`` with ``sum b = 1`` of the point of the affine hull nearest 0.

    Solves ``min_c ||x_r + sum_{i != r} c_i (x_i - x_r)||`` by least squares around
    the reference row ``r``; ``lstsq`` returns the minimum-norm ``c`` when the rows
    are affinely dependent.
    """
    s = points.shape[0]
    if s == 1:
        return np.ones(1)
    others = np.delete(np.arange(s), reference)
    differences = (points[others] - points[reference]).T
    c, *_ = np.linalg.lstsq(differences, -points[reference], rcond=None)
    b = np.empty(s)
    b[others] = c
    b[reference] = 1.0 - c.sum()
    return b


def _minor_cycle(
    X: np.ndarray, support: list[int], lam: np.ndarray
) -> tuple[list[int], np.ndarray]:
    """Move to the nearest point of the support's affine hull, dropping rows as needed.

    ``lam`` are the simplex weights on ``support``. While the affine minimiser has a
    weight ``<= 0``, step from ``lam`` towards it until the first weight reaches 0,
    and drop that row. Each pass drops a row, so the loop ends.
    """
    while True:
        b = _affine_weights(X[support], int(np.argmax(lam)))
        if np.all(b > 0):
            return support, b / b.sum()

        # For a blocking row lam_i >= 0 >= b_i, so the denominator is >= 0, and it is 0
        # only for a row that is already at weight 0 and stays there (ratio 0).
        blocking = np.flatnonzero(b <= 0)
        denominators = lam[blocking] - b[blocking]
        ratios = np.zeros(blocking.size)
        np.divide(lam[blocking], denominators, out=ratios, where=denominators > 0)
        first = int(np.argmin(ratios))
        theta = float(ratios[first])
        lam = lam + theta * (b - lam)
        lam[blocking[first]] = 0.0

        keep = np.flatnonzero(lam > 0)
        support = [support[i] for i in keep]
        lam = lam[keep] / lam[keep].sum()


def _polish_active_set(
    X: np.ndarray, start: np.ndarray, kkt_slack: float
) -> np.ndarray:
    """Polish simplex weights with Wolfe's minimum-norm-point iterations.

    Stops when every row satisfies ``<x_i, p> >= ||p||^2 - kkt_slack``, or when
    roundoff prevents progress: the most violating row is already in the support, or
    ``||p||^2`` failed to decrease, which it does in every iteration in exact
    arithmetic.
    """
    m, D = X.shape
    support = [int(i) for i in np.flatnonzero(start > 0)]
    lam = start[support] / start[support].sum()

    previous_norm2 = np.inf
    for _ in range(10 * (m + D) + 100):
        support, lam = _minor_cycle(X, support, lam)
        p = X[support].T @ lam
        norm2 = float(p @ p)
        scores = X @ p
        j = int(np.argmin(scores))
        if scores[j] >= norm2 - kkt_slack or j in support or norm2 >= previous_norm2:
            break
        previous_norm2 = norm2
        support.append(j)
        lam = np.append(lam, 0.0)

    weights = np.zeros(m)
    weights[support] = lam
    return weights


def _validated_gammas(gammas: Sequence[float] | np.ndarray) -> np.ndarray:
    gammas = check_array("gammas", gammas, ndim=1)
    if gammas.size < 2:
        raise InvalidArgument(
            f"gammas={gammas.tolist()!r} is invalid: it must hold one max margin per "
            "class for at least two classes"
        )
    bad = np.flatnonzero(gammas <= 0)
    if bad.size:
        raise InvalidArgument(
            f"gammas[{bad[0]}]={float(gammas[bad[0]])!r} is invalid: every one-class "
            "max margin must be > 0"
        )
    return gammas
