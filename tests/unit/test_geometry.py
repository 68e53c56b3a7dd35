"""Unit tests of ncflow.geometry on hand-built data and against independent solvers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize

from ncflow import geometry
from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.geometry import (
    a5_ratio,
    class_max_margins,
    class_sum_directions,
    cosine_matrix,
    max_margin,
    predicted_margin,
    pseudo_labels,
    s_coefficients,
    separability,
)

EPS = float(np.finfo(np.float64).eps)

# A cosine computed from rounded inputs: each coordinate rounds once (1 ulp), the
# D-term inner product and the two norms add about D + 2 ulps, and the division one
# more. With D <= 3 that is below 8 eps; 16 eps also covers the rounding of the
# expected value computed with numpy's cos and sqrt.
COSINE_TOL = 16 * EPS


def _unit(angle_degrees: float) -> np.ndarray:
    angle = math.radians(angle_degrees)
    return np.array([math.cos(angle), math.sin(angle)])


def _cos_degrees(angle_degrees: float) -> float:
    return math.cos(math.radians(angle_degrees))


def _angles_dataset() -> Dataset:
    """Two classes on rays at known angles, with unequal norms.

    Class 0 at 0 and 30 degrees, class 1 at 150 and 200 degrees. Within-class angles
    are 30 and 50 degrees; cross-class angles are 150, 160, 120 and 170 degrees.
    """
    X = np.array([1.0 * _unit(0), 2.0 * _unit(30), 3.0 * _unit(150), 0.5 * _unit(200)])
    return Dataset.from_arrays(X, [0, 0, 1, 1], name="angles")


def _etf_dataset(K: int) -> Dataset:
    """Return one sample per class at the columns of the simplex ETF.

    Every cross-class cosine is then -1/(K-1), so mu_d equals 1/(K-1), the largest
    value that A1 allows for K classes.
    """
    return Dataset.from_arrays(pseudo_labels(K).T, list(range(K)), name=f"etf{K}")


def _tilted_etf_dataset(s: float, scale_last: float = 1.0) -> Dataset:
    """Three classes at 90, 210 and 330 degrees in the xy-plane, two samples each,
    tilted to z = +s and z = -s, all of unit norm (the last scaled by scale_last).

    With c^2 = 1 - s^2: within-class cosine c^2 - s^2, cross-class cosines
    -c^2/2 + s^2 (same tilt) and -c^2/2 - s^2 (opposite tilt).
    """
    c = math.sqrt(1.0 - s * s)
    rows = []
    labels = []
    for k, angle in enumerate((90.0, 210.0, 330.0)):
        for tilt in (s, -s):
            rows.append(np.append(c * _unit(angle), tilt))
            labels.append(k)
    X = np.array(rows)
    X[-1] *= scale_last
    return Dataset.from_arrays(X, labels, name="tilted-etf")


def _cone_class(rng: np.random.Generator, m: int, D: int, spread: float) -> np.ndarray:
    """Return m samples x_i = r_i (c + w_i) with w_i orthogonal to a unit c.

    Then <x_i, c> = r_i >= 0.9 by construction, so gamma >= 0.9 while
    ||x_i|| <= 1.1 sqrt(1 + spread^2): a well-conditioned class.
    """
    c = rng.normal(size=D)
    c /= np.linalg.norm(c)
    w = rng.normal(size=(m, D))
    w -= np.outer(w @ c, c)
    w *= (
        spread * rng.uniform(0.2, 1.0, size=(m, 1)) / np.linalg.norm(w, axis=1)[:, None]
    )
    r = rng.uniform(0.9, 1.1, size=(m, 1))
    return r * (c + w)


# cosine_matrix


def test_cosine_matrix_hand_example():
    X = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    C = cosine_matrix(X)
    half_root = 1.0 / math.sqrt(2.0)
    assert C.shape == (3, 3)
    assert np.array_equal(np.diag(C), np.ones(3))
    assert np.array_equal(C, C.T)
    assert abs(C[0, 1] - half_root) <= COSINE_TOL
    assert C[0, 2] == 0.0
    assert abs(C[1, 2] + half_root) <= COSINE_TOL


def test_cosine_matrix_rejects_zero_row():
    with pytest.raises(InvalidArgument) as caught:
        cosine_matrix(np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert "X[1]" in str(caught.value)


# separability


def test_separability_angles_give_known_mu():
    report = separability(_angles_dataset())
    assert abs(report.mu_s - _cos_degrees(50)) <= COSINE_TOL
    assert abs(report.mu_d - 0.5) <= COSINE_TOL
    assert report.holds_a1
    assert report.worst_within_pair[:2] == (2, 3)
    assert report.worst_cross_pair[:2] == (1, 2)
    assert report.violating_within_share == 0.0
    assert report.violating_cross_share == 0.0


def test_separability_angles_give_norm_extremes():
    report = separability(_angles_dataset())
    # A norm of a two-term sum of squares is correct to 2 ulps.
    assert abs(report.x_max - 3.0) <= 2 * EPS * 3.0
    assert abs(report.x_min - 0.5) <= 2 * EPS * 0.5


def test_separability_matches_cosine_matrix():
    dataset = _tilted_etf_dataset(0.1)
    report = separability(dataset)
    C = cosine_matrix(dataset.X)
    same = dataset.labels[:, None] == dataset.labels[None, :]
    off_diagonal = ~np.eye(dataset.n, dtype=bool)
    assert report.mu_s == C[same & off_diagonal].min()
    assert report.mu_d == -C[~same].max()


@pytest.mark.parametrize("block_entries", [1, 7, 1 << 22])
def test_separability_blocks_match_full_matrix(monkeypatch, block_entries):
    # Small blocks force the row-block path, which must give the same extremes,
    # worst pairs and shares as the full cosine matrix.
    monkeypatch.setattr(geometry, "_MAX_BLOCK_ENTRIES", block_entries)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(21, 4))
    labels = np.repeat([0, 1, 2], [9, 7, 5])
    dataset = Dataset.from_arrays(X, labels)
    report = separability(dataset)

    C = cosine_matrix(X)
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    within = C[same & upper]
    cross = C[~same & upper]
    i, j = np.argwhere((C == within.min()) & same & upper)[0]
    # A block may use a different BLAS kernel than the full product, so a 4-term
    # inner product can differ in its last bits: 4 D eps covers that. The drawn
    # cosines have no near-ties, so the worst pair and the shares are unaffected.
    tol = 4 * X.shape[1] * EPS
    assert abs(report.mu_s - within.min()) <= tol
    assert abs(report.mu_d + cross.max()) <= tol
    assert report.worst_within_pair[:2] == (i, j)
    assert report.violating_within_share == np.mean(within <= 0)
    assert report.violating_cross_share == np.mean(cross >= 0)


def test_separability_one_sample_per_class():
    report = separability(_etf_dataset(3))
    assert report.mu_s == 1.0
    assert report.worst_within_pair is None
    assert report.violating_within_share == 0.0
    assert report.holds_a1


def test_separability_orthogonal_classes_are_outside_a1():
    # Phuong and Lampert's non-strict case: every cross-class inner product is 0.
    X = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    report = separability(Dataset.from_arrays(X, [0, 0, 1]))
    assert report.mu_d == 0.0
    assert math.copysign(1.0, report.mu_d) == 1.0
    assert not report.holds_a1
    assert report.violating_cross_share == 1.0
    assert abs(report.mu_s - 1.0 / math.sqrt(2.0)) <= COSINE_TOL


def test_separability_counts_within_class_violation():
    # Class 0: a=(1,0,0), b=(1,1,0), c=(-0.5,1,0); class 1: d=(-1,-1,1).
    # cos(a, c) = -0.5/sqrt(1.25) is the only within-class cosine <= 0.
    # Cross: cos(a,d) = -1/sqrt(3), cos(b,d) = -sqrt(2/3), cos(c,d) = -0.5/sqrt(3.75).
    X = np.array(
        [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-0.5, 1.0, 0.0], [-1.0, -1.0, 1.0]]
    )
    report = separability(Dataset.from_arrays(X, [0, 0, 0, 1]))
    assert abs(report.mu_s + 0.5 / math.sqrt(1.25)) <= COSINE_TOL
    assert abs(report.mu_d - 0.5 / math.sqrt(3.75)) <= COSINE_TOL
    assert report.worst_within_pair[:2] == (0, 2)
    assert report.worst_cross_pair[:2] == (2, 3)
    assert report.violating_within_share == pytest.approx(1.0 / 3.0, abs=0.0)
    assert report.violating_cross_share == 0.0
    assert not report.holds_a1


def test_separability_rejects_non_dataset():
    with pytest.raises(InvalidArgument) as caught:
        separability(np.eye(2))
    assert "Dataset" in str(caught.value)


@pytest.mark.parametrize("K", [3, 4, 5, 6])
def test_etf_attains_e1_bound(K):
    # Every K-class dataset meeting A1 has mu_d <= 1/(K-1); the simplex ETF attains
    # it. Its entries are sqrt(K/(K-1)) (delta - 1/K), each rounded a few times, so
    # the cosines of K-term inner products err by about (K + 4) eps.
    report = separability(_etf_dataset(K))
    tol = 4 * (K + 4) * EPS
    assert abs(report.mu_d - 1.0 / (K - 1)) <= tol


@pytest.mark.parametrize(
    "dataset",
    [
        pytest.param(_angles_dataset(), id="angles"),
        pytest.param(_tilted_etf_dataset(0.1), id="tilted-etf"),
        pytest.param(_tilted_etf_dataset(0.3), id="tilted-etf-wide"),
    ],
)
def test_hand_examples_respect_e1_bound(dataset):
    report = separability(dataset)
    assert report.holds_a1
    assert report.mu_d <= 1.0 / (dataset.K - 1) + COSINE_TOL


# a5_ratio


def test_a5_ratio_tilted_etf_holds():
    s = 0.1
    c2, s2 = 1.0 - s * s, s * s
    mu_s, mu_d = c2 - s2, c2 / 2 - s2
    expected = 1.0 / (mu_d * mu_s**2)
    report = a5_ratio(_tilted_etf_dataset(s))
    # mu_d and mu_s carry COSINE_TOL each, so the ratio's relative error is at most
    # COSINE_TOL (1/mu_d + 2/mu_s) plus the unit norms (4 eps for X_max^2/X_min^2).
    rel_tol = COSINE_TOL * (1 / mu_d + 2 / mu_s) + 4 * EPS
    assert report.bound == 3
    assert abs(report.ratio - expected) <= rel_tol * expected
    assert report.holds


def test_a5_ratio_unequal_norms_violate():
    s = 0.1
    c2, s2 = 1.0 - s * s, s * s
    mu_s, mu_d = c2 - s2, c2 / 2 - s2
    scale = 1.3
    expected = scale**2 / (mu_d * mu_s**2)
    report = a5_ratio(_tilted_etf_dataset(s, scale_last=scale))
    rel_tol = COSINE_TOL * (1 / mu_d + 2 / mu_s) + 8 * EPS
    assert abs(report.ratio - expected) <= rel_tol * expected
    assert not report.holds


def test_a5_ratio_is_infinite_without_a1():
    X = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    report = a5_ratio(Dataset.from_arrays(X, [0, 0, 1]))
    assert report.ratio == math.inf
    assert not report.holds


def test_a5_never_holds_for_two_classes():
    report = a5_ratio(_angles_dataset())
    assert report.bound == 1
    assert report.ratio >= 1.0
    assert not report.holds


# max_margin: cases with a closed form


def test_max_margin_single_point():
    x = np.array([3.0, -4.0, 12.0])
    result = max_margin(x[None, :])
    # ||x|| = 13 exactly; the computed norm is within 2 ulps.
    assert abs(result.gamma - 13.0) <= 2 * EPS * 13.0
    assert np.max(np.abs(result.u - x / 13.0)) <= 4 * EPS
    assert np.array_equal(result.weights, [1.0])
    assert np.array_equal(result.support, [0])


def _segment_nearest_point(x1: np.ndarray, x2: np.ndarray) -> tuple[float, float]:
    """Return (t, distance) of the point x1 + t (x2 - x1), t in [0, 1], nearest 0."""
    d = x2 - x1
    t = min(max(-(x1 @ d) / (d @ d), 0.0), 1.0)
    return t, float(np.linalg.norm(x1 + t * d))


# Two-point problems solve a 2 x 1 least-squares system, so gamma, u and the weights
# are correct to a few ulps of the data; 32 eps leaves a factor 4 above the
# 8 eps that the roundoff model of max_margin gives for m + D = 4.
TWO_POINT_TOL = 32 * EPS


def test_max_margin_two_points_interior():
    x1, x2 = np.array([2.0, 1.0]), np.array([-1.0, 1.0])
    t, distance = _segment_nearest_point(x1, x2)
    result = max_margin(np.array([x1, x2]))
    assert distance == 1.0
    assert abs(result.gamma - distance) <= TWO_POINT_TOL
    assert np.max(np.abs(result.u - [0.0, 1.0])) <= TWO_POINT_TOL
    assert np.max(np.abs(result.weights - [1 - t, t])) <= TWO_POINT_TOL
    assert np.array_equal(result.support, [0, 1])


def test_max_margin_two_points_endpoint():
    x1, x2 = np.array([1.0, 0.0]), np.array([2.0, 1.0])
    t, distance = _segment_nearest_point(x1, x2)
    result = max_margin(np.array([x1, x2]))
    assert t == 0.0
    assert abs(result.gamma - distance) <= TWO_POINT_TOL
    assert np.array_equal(result.support, [0])
    assert np.max(np.abs(result.u - x1)) <= TWO_POINT_TOL


@pytest.mark.parametrize(
    ("start", "stop", "m"),
    [(10.0, 80.0, 5), (-60.0, 100.0, 9), (170.0, 200.0, 4), (0.0, 178.0, 12)],
)
def test_max_margin_points_on_arc(start, stop, m):
    # Unit vectors on an arc narrower than 180 degrees: the nearest point of the hull
    # is the midpoint of the chord between the two ends, at distance
    # cos(half the span) along the middle direction.
    angles = np.linspace(start, stop, m)
    X = np.array([_unit(angle) for angle in angles])
    result = max_margin(X)
    gamma = _cos_degrees((stop - start) / 2)
    tol = result.tolerance * gamma + COSINE_TOL
    assert abs(result.gamma - gamma) <= tol
    assert np.max(np.abs(result.u - _unit((start + stop) / 2))) <= tol / gamma
    assert np.array_equal(result.support, [0, m - 1])
    assert np.max(np.abs(result.weights[[0, m - 1]] - 0.5)) <= tol / gamma


def test_max_margin_duplicated_points():
    x1, x2 = np.array([2.0, 1.0]), np.array([-1.0, 1.0])
    t, distance = _segment_nearest_point(x1, x2)
    result = max_margin(np.array([x1, x1, x2, x2, x1]))
    assert abs(result.gamma - distance) <= TWO_POINT_TOL
    assert abs(result.weights[[0, 1, 4]].sum() - (1 - t)) <= TWO_POINT_TOL
    assert abs(result.weights[[2, 3]].sum() - t) <= TWO_POINT_TOL


def test_max_margin_scales_with_data():
    X = np.array([[2.0, 1.0], [-1.0, 1.0], [0.5, 3.0]])
    small, large = max_margin(X), max_margin(1e6 * X)
    assert abs(large.gamma - 1e6 * small.gamma) <= 1e6 * small.gamma * TWO_POINT_TOL
    assert np.max(np.abs(large.u - small.u)) <= TWO_POINT_TOL


@pytest.mark.parametrize(
    "X",
    [
        pytest.param([[1.0, 0.0], [-1.0, 0.0]], id="antipodal"),
        pytest.param([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], id="origin-inside"),
        pytest.param([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0], [3.0, 3.0]], id="wide"),
        pytest.param([[0.0, 0.0]], id="zero-row"),
        pytest.param([[2.0, 0.0, 1.0], [-1.0, 0.0, -0.5]], id="opposite-rays"),
    ],
)
def test_max_margin_rejects_origin_in_hull(X):
    with pytest.raises(InvalidArgument) as caught:
        max_margin(np.array(X))
    assert "open half-space" in str(caught.value)


def test_max_margin_rejects_empty_class():
    with pytest.raises(InvalidArgument) as caught:
        max_margin(np.zeros((0, 3)))
    assert "(0, 3)" in str(caught.value)


# max_margin: random classes against independent methods


def _certificate_checks(X: np.ndarray, result) -> None:
    """Check the optimality certificate of a max-margin result directly."""
    weights = result.weights
    nearest = X.T @ weights
    # The weights sum to 1 after a division, so to about m ulps.
    assert np.all(weights >= 0.0)
    assert abs(weights.sum() - 1.0) <= 2 * X.shape[0] * EPS
    assert abs(np.linalg.norm(result.u) - 1.0) <= 4 * X.shape[1] * EPS
    assert np.max(np.abs(nearest - result.gamma * result.u)) <= (
        4 * X.shape[0] * EPS * np.linalg.norm(X, axis=1).max()
    )
    assert result.verified_gap <= result.tolerance


def _golden_section_margin(X: np.ndarray, centre_angle: float) -> float:
    """Maximise f(theta) = min_i <x_i, (cos theta, sin theta)> by golden section.

    On [centre - pi/2, centre + pi/2], where centre is a direction with every
    <x_i, u> > 0, each term r_i cos(theta - phi_i) is unimodal, so their minimum is
    quasi-concave and golden-section search finds its maximum.
    """

    def f(theta: float) -> float:
        return float(np.min(X @ np.array([math.cos(theta), math.sin(theta)])))

    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    low, high = centre_angle - math.pi / 2, centre_angle + math.pi / 2
    for _ in range(200):
        left = high - ratio * (high - low)
        right = low + ratio * (high - low)
        if f(left) < f(right):
            low = left
        else:
            high = right
    return f((low + high) / 2)


@pytest.mark.parametrize("seed", range(6))
def test_max_margin_matches_golden_section_in_plane(seed):
    rng = np.random.default_rng(seed)
    X = _cone_class(rng, m=12, D=2, spread=1.5)
    result = max_margin(X)
    scanned = _golden_section_margin(X, math.atan2(*(X.mean(axis=0)[::-1])))
    x_max = np.linalg.norm(X, axis=1).max()
    # The search ends when rounding noise in f (a 2-term dot product plus cos and
    # sin, about 4 eps X_max) hides the slope, so its value is within a few times
    # that noise of the maximum: 32 eps X_max. Our gamma adds result.tolerance.
    tol = 32 * EPS * x_max + result.tolerance * result.gamma
    _certificate_checks(X, result)
    assert abs(result.gamma - scanned) <= tol


@pytest.mark.parametrize("seed", range(6))
def test_max_margin_matches_slsqp_primal(seed):
    rng = np.random.default_rng(100 + seed)
    m, D = 20, 5
    X = _cone_class(rng, m=m, D=D, spread=1.5)
    result = max_margin(X)
    _certificate_checks(X, result)

    # Primal in epigraph form: maximise t subject to X u >= t and ||u||^2 <= 1.
    ftol = 1e-12
    start = np.append(X.mean(axis=0) / np.linalg.norm(X.mean(axis=0)), 0.0)
    constraints = [
        {
            "type": "ineq",
            "fun": lambda z: X @ z[:D] - z[D],
            "jac": lambda z: np.hstack([X, -np.ones((m, 1))]),
        },
        {
            "type": "ineq",
            "fun": lambda z: 1.0 - z[:D] @ z[:D],
            "jac": lambda z: np.append(-2.0 * z[:D], 0.0),
        },
    ]
    solution = scipy.optimize.minimize(
        lambda z: -z[D],
        start,
        jac=lambda z: np.append(np.zeros(D), -1.0),
        constraints=constraints,
        method="SLSQP",
        options={"ftol": ftol, "maxiter": 500},
    )
    assert solution.success
    u = solution.x[:D] / np.linalg.norm(solution.x[:D])
    # Any unit u gives a lower bound min_i <x_i, u> <= gamma, and gamma = ||p|| is an
    # upper bound, so this inequality holds up to the roundoff of the two sides.
    lower_bound = float(np.min(X @ u))
    assert lower_bound <= result.gamma * (1 + result.tolerance) + 8 * D * EPS
    # SLSQP stops once the objective changes by less than ftol and the constraints
    # are met to ftol. It converges superlinearly here, so its remaining error is a
    # small multiple of ftol, and 10 ftol bounds that multiple.
    assert result.gamma - lower_bound <= 10 * ftol + result.tolerance * result.gamma


@pytest.mark.parametrize(("m", "D"), [(3, 2), (30, 4), (60, 10), (200, 20)])
def test_max_margin_verified_gap_is_small(m, D):
    rng = np.random.default_rng(m * 1000 + D)
    X = _cone_class(rng, m=m, D=D, spread=1.0)
    result = max_margin(X)
    _certificate_checks(X, result)
    # For gamma >= 0.9 and X_max <= 1.1 sqrt(2), (X_max / gamma)^2 <= 3, so the
    # derived tolerance 16 (m + D) eps (X_max / gamma)^2 stays near 1e-12 or below.
    assert result.tolerance <= 16 * (m + D) * EPS * 3.0


def test_class_max_margins_match_per_class():
    dataset = _tilted_etf_dataset(0.2)
    margins = class_max_margins(dataset)
    assert len(margins) == dataset.K
    for k, rows in enumerate(dataset.class_indices):
        direct = max_margin(dataset.X[rows])
        assert margins[k].gamma == direct.gamma
        # Two unit samples with cosine c^2 - s^2: the nearest point is their
        # midpoint, at distance sqrt((1 + c^2 - s^2) / 2) = c.
        assert abs(margins[k].gamma - math.sqrt(1 - 0.04)) <= TWO_POINT_TOL


def test_class_max_margins_names_failing_class():
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    dataset = Dataset.from_arrays(X, ["a", "a", "b", "b"])
    with pytest.raises(InvalidArgument) as caught:
        class_max_margins(dataset)
    assert "class 0 ('a')" in str(caught.value)


# s_coefficients and predicted_margin


def test_s_coefficients_satisfy_normalisation():
    gammas = np.array([0.3, 1.2, 0.7, 2.5])
    s = s_coefficients(gammas)
    # K-term sums of values <= 1, each from a few rounded operations.
    tol = 8 * gammas.size * EPS
    assert abs(np.sum(2 * s**2) - 1.0) <= tol
    assert abs(s[0] ** 2 / s[1] ** 2 - gammas[1] / gammas[0]) <= tol * 4


def test_s_coefficients_equal_gammas():
    s = s_coefficients([0.5, 0.5, 0.5])
    assert np.max(np.abs(s - 1.0 / math.sqrt(6.0))) <= 4 * EPS


@pytest.mark.parametrize(
    ("gammas", "fragment"),
    [([1.0, 0.0], "gammas[1]=0.0"), ([1.0], "at least two"), ([1.0, np.nan], "nan")],
)
def test_s_coefficients_reject_invalid(gammas, fragment):
    with pytest.raises(InvalidArgument) as caught:
        s_coefficients(gammas)
    assert fragment in str(caught.value)


def test_predicted_margin_binary():
    assert predicted_margin([1.0, 1.0], multiclass=False) == 0.25
    assert abs(predicted_margin([1.0, 3.0], multiclass=False) - 3.0 / 8.0) <= 2 * EPS


def test_predicted_margin_multiclass():
    expected = math.sqrt(1.5) / 3.5  # K = 3, sum of 1/gamma = 1 + 0.5 + 0.25
    assert abs(predicted_margin([1.0, 2.0, 4.0], multiclass=True) - expected) <= 4 * EPS


def test_predicted_margin_two_output_softmax():
    expected = math.sqrt(2.0) / 4.0
    assert abs(predicted_margin([1.0, 1.0], multiclass=True) - expected) <= 2 * EPS


def test_predicted_margin_requires_multiclass_keyword():
    with pytest.raises(TypeError):
        predicted_margin([1.0, 1.0])  # type: ignore[call-arg]


def test_predicted_margin_binary_rejects_three_gammas():
    with pytest.raises(InvalidArgument) as caught:
        predicted_margin([1.0, 1.0, 1.0], multiclass=False)
    assert "K=3" in str(caught.value)


def test_predicted_margin_rejects_non_bool_flag():
    with pytest.raises(InvalidArgument) as caught:
        predicted_margin([1.0, 1.0], multiclass=1)  # type: ignore[arg-type]
    assert "multiclass=1" in str(caught.value)


# pseudo_labels and class_sum_directions


@pytest.mark.parametrize("K", [2, 3, 4, 5, 6])
def test_pseudo_labels_form_simplex_etf(K):
    E = pseudo_labels(K)
    gram = E.T @ E
    # Entries are rounded a few times; a K-term inner product adds K ulps.
    tol = 4 * (K + 2) * EPS
    assert E.shape == (K, K)
    assert np.max(np.abs(np.diag(gram) - 1.0)) <= tol
    off_diagonal = gram[~np.eye(K, dtype=bool)]
    assert np.max(np.abs(off_diagonal + 1.0 / (K - 1))) <= tol
    assert np.max(np.abs(E.sum(axis=0))) <= tol


def test_pseudo_labels_rejects_one_class():
    with pytest.raises(InvalidArgument) as caught:
        pseudo_labels(1)
    assert "K=1" in str(caught.value)


def test_class_sum_directions_hand_example():
    X = np.array([[1.0, 0.0], [1.0, 2.0], [-3.0, 0.0]])
    directions = class_sum_directions(Dataset.from_arrays(X, [0, 0, 1]))
    half_root = 1.0 / math.sqrt(2.0)
    assert np.max(np.abs(directions[0] - [half_root, half_root])) <= 2 * EPS
    assert np.array_equal(directions[1], [-1.0, 0.0])


def test_class_sum_directions_rejects_zero_sum():
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(InvalidArgument) as caught:
        class_sum_directions(Dataset.from_arrays(X, ["a", "a", "b"]))
    assert "class 0 ('a')" in str(caught.value)
