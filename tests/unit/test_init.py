"""Unit tests of ncflow.init: balanced shapes, Gaussian weights, semi-local shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow._validation import InvalidArgument
from ncflow.init import (
    balanced_init,
    balanced_shapes,
    check_balanced,
    gaussian_init,
    semilocal_shapes,
)
from ncflow.network import Parameters

EPS = float(np.finfo(np.float64).eps)

# Messages show values with repr, which numpy 2 writes as np.float64(0.8).
NUMBER = r"(np\.float64\()?"


def _norm_rtol(length: int) -> float:
    """Relative error bound of a column norm after scaling the column once.

    Scaling rounds each entry once (u = eps/2 relative), and the norm of a
    length-m column rounds about m + 2 times (squares, sum, sqrt), so
    (m + 3) u per side; two norms compared give (m + 3) eps.
    """
    return (length + 3) * EPS


# --------------------------------------------------------------------------------
# Balanced shapes
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_balanced_shapes_have_equal_layer_norms(num_outputs):
    shapes = balanced_shapes(
        np.random.default_rng(0), D=5, width=20, num_outputs=num_outputs
    )
    norms_w = np.linalg.norm(shapes.W, axis=0)
    norms_v = np.linalg.norm(shapes.V, axis=0)

    tol = _norm_rtol(max(5, num_outputs)) * norms_w
    assert np.all(np.abs(norms_w - norms_v) <= tol)


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_balanced_shapes_have_max_norm_one(num_outputs):
    shapes = balanced_shapes(
        np.random.default_rng(1), D=5, width=20, num_outputs=num_outputs
    )
    norms_w = np.linalg.norm(shapes.W, axis=0)

    tol = _norm_rtol(5)
    assert abs(norms_w.max() - 1.0) <= tol
    assert np.all(norms_w <= 1.0 + tol)
    assert np.all(norms_w > 0.0)


def test_balanced_shapes_scalar_output_is_plus_minus_norm():
    shapes = balanced_shapes(np.random.default_rng(2), D=4, width=30, num_outputs=1)
    norms_w = np.linalg.norm(shapes.W, axis=0)

    tol = _norm_rtol(4) * norms_w
    assert np.all(np.abs(np.abs(shapes.V[0]) - norms_w) <= tol)


def test_balanced_shapes_draw_both_signs():
    # 30 Gaussian signs all alike has probability 2^-29, about 2e-9.
    shapes = balanced_shapes(np.random.default_rng(3), D=4, width=30, num_outputs=1)
    assert np.any(shapes.V[0] > 0)
    assert np.any(shapes.V[0] < 0)


def test_balanced_shapes_pass_check_balanced():
    shapes = balanced_shapes(np.random.default_rng(4), D=50, width=40, num_outputs=10)
    check_balanced(shapes)


def test_balanced_init_scales_shapes_by_eps():
    shapes = balanced_shapes(np.random.default_rng(5), D=3, width=6, num_outputs=2)
    init = balanced_init(shapes, 1e-6)
    assert np.array_equal(init.W, 1e-6 * shapes.W)
    assert np.array_equal(init.V, 1e-6 * shapes.V)


@pytest.mark.parametrize("eps", [0.0, -1e-3, math.nan, math.inf])
def test_balanced_init_rejects_non_positive_eps(eps):
    shapes = balanced_shapes(np.random.default_rng(6), D=3, width=6, num_outputs=1)
    with pytest.raises(InvalidArgument, match="eps="):
        balanced_init(shapes, eps)


def test_balanced_init_rejects_unbalanced_shapes():
    shapes = Parameters(np.array([[0.5, 0.2]]), np.array([[0.5, 0.3]]))
    with pytest.raises(InvalidArgument, match="not balanced"):
        balanced_init(shapes, 1e-3)


# --------------------------------------------------------------------------------
# check_balanced
# --------------------------------------------------------------------------------


def _unit_shapes() -> Parameters:
    """Three neurons with ||w_j|| = ||v_j|| = 0.6, 0.8, 1.0, all exact in float64."""
    W = np.array([[0.6, 0.0, 0.6], [0.0, 0.8, 0.8]])
    V = np.array([[0.6, -0.8, 1.0]])
    return Parameters(W, V)


def test_check_balanced_accepts_exact_shapes():
    check_balanced(_unit_shapes())


def test_check_balanced_rejects_unbalanced_neuron():
    shapes = _unit_shapes()
    V = shapes.V.copy()
    V[0, 1] = -0.9
    with pytest.raises(
        InvalidArgument,
        match=rf"neuron 1 has \|\|w_j0\|\| = {NUMBER}0\.8\b.* = {NUMBER}0\.9\b",
    ):
        check_balanced(Parameters(shapes.W, V))


def test_check_balanced_rejects_zero_shape():
    shapes = _unit_shapes()
    W = shapes.W.copy()
    V = shapes.V.copy()
    W[:, 0] = 0.0
    V[:, 0] = 0.0
    with pytest.raises(InvalidArgument, match="shape of neuron 0 is zero"):
        check_balanced(Parameters(W, V))


def test_check_balanced_rejects_too_long_shape():
    shapes = _unit_shapes()
    W = shapes.W.copy()
    V = shapes.V.copy()
    W[:, 2] = [1.2, 1.6]  # norm 2
    V[:, 2] = [2.0]
    with pytest.raises(InvalidArgument, match=rf"neuron 2 has norm {NUMBER}2\.0\b"):
        check_balanced(Parameters(W, V))


def test_check_balanced_accepts_roundoff_gap():
    # A relative gap of 4 eps is below any roundoff allowance for two entries.
    shapes = _unit_shapes()
    V = shapes.V * (1.0 + 4 * EPS)
    check_balanced(Parameters(shapes.W, V))


# --------------------------------------------------------------------------------
# Gaussian initialisation
# --------------------------------------------------------------------------------

GAUSSIAN_VARIANCE = 1e-6

# For N independent N(0, sigma^2) draws, the mean of squares has expectation
# sigma^2 and standard error sigma^2 sqrt(2 / N), because E[w^4] = 3 sigma^4. The
# sample mean has standard error sigma / sqrt(N). Five standard errors leave a
# two-sided chance of about 6e-7 for a correct sampler to fail.
STANDARD_ERRORS = 5.0


def _gaussian_draws() -> Parameters:
    return gaussian_init(
        np.random.default_rng(7),
        D=100,
        width=1000,
        num_outputs=20,
        variance=GAUSSIAN_VARIANCE,
    )


@pytest.mark.parametrize("layer", ["W", "V"])
def test_gaussian_init_variance(layer):
    draws = getattr(_gaussian_draws(), layer).ravel()
    mean_square = np.mean(draws**2)

    standard_error = GAUSSIAN_VARIANCE * math.sqrt(2.0 / draws.size)
    assert abs(mean_square - GAUSSIAN_VARIANCE) <= STANDARD_ERRORS * standard_error


@pytest.mark.parametrize("layer", ["W", "V"])
def test_gaussian_init_mean_zero(layer):
    draws = getattr(_gaussian_draws(), layer).ravel()

    standard_error = math.sqrt(GAUSSIAN_VARIANCE / draws.size)
    assert abs(np.mean(draws)) <= STANDARD_ERRORS * standard_error


def test_gaussian_init_shapes():
    params = gaussian_init(
        np.random.default_rng(8), D=3, width=5, num_outputs=2, variance=1.0
    )
    assert params.W.shape == (3, 5)
    assert params.V.shape == (2, 5)


@pytest.mark.parametrize("variance", [0.0, -1.0, math.nan])
def test_gaussian_init_rejects_bad_variance(variance):
    with pytest.raises(InvalidArgument, match="variance="):
        gaussian_init(
            np.random.default_rng(9), D=3, width=5, num_outputs=1, variance=variance
        )


# --------------------------------------------------------------------------------
# Semi-local shapes
# --------------------------------------------------------------------------------


def _three_class_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10)
    X = rng.standard_normal((9, 4))
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    return X, labels


def _simplex_etf(num_classes: int) -> np.ndarray:
    """Entries of sqrt(K/(K-1)) (I - 11^T/K), written out entry by entry.

    Diagonal: sqrt(K/(K-1)) (1 - 1/K) = sqrt((K-1)/K); off the diagonal:
    -sqrt(K/(K-1)) / K = -1 / sqrt(K (K-1)).
    """
    K = num_classes
    E = np.full((K, K), -1.0 / math.sqrt(K * (K - 1)))
    np.fill_diagonal(E, math.sqrt((K - 1) / K))
    return E


GROUPS = [0, 0, 1, 2, 2, 1, 0]


def test_semilocal_input_shapes_copy_samples_of_own_class():
    X, labels = _three_class_data()
    shapes = semilocal_shapes(np.random.default_rng(11), X, labels, GROUPS, 3)
    unit_rows = X / np.sqrt(np.sum(X**2, axis=1, keepdims=True))

    # Both sides normalise the same row: D + 3 roundings each, (D + 3) eps apart.
    tol = _norm_rtol(X.shape[1])
    for j, k in enumerate(GROUPS):
        distances = np.max(np.abs(unit_rows[labels == k] - shapes.W[:, j]), axis=1)
        assert np.min(distances) <= tol, f"neuron {j} copies no sample of class {k}"


def test_semilocal_input_shapes_are_unit_vectors():
    X, labels = _three_class_data()
    shapes = semilocal_shapes(np.random.default_rng(12), X, labels, GROUPS, 3)
    tol = _norm_rtol(X.shape[1])
    assert np.all(np.abs(np.linalg.norm(shapes.W, axis=0) - 1.0) <= tol)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_semilocal_output_shapes_are_pseudo_labels(num_classes):
    rng = np.random.default_rng(13)
    X = rng.standard_normal((2 * num_classes, 3))
    labels = np.arange(2 * num_classes) % num_classes
    groups = list(range(num_classes)) * 2
    shapes = semilocal_shapes(rng, X, labels, groups, num_classes)
    expected = _simplex_etf(num_classes)[:, groups]

    # sqrt and the products with 1/K round a few (4) times on each side.
    assert np.all(np.abs(shapes.V - expected) <= 8 * EPS)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_pseudo_labels_form_simplex_etf(num_classes):
    # Unit columns with pairwise inner product -1/(K-1); K-term sums, K eps.
    E = _simplex_etf(num_classes)
    gram = E.T @ E
    off_diagonal = gram[~np.eye(num_classes, dtype=bool)]
    assert np.all(np.abs(np.diag(gram) - 1.0) <= num_classes * EPS)
    assert np.all(np.abs(off_diagonal + 1.0 / (num_classes - 1)) <= num_classes * EPS)


@pytest.mark.parametrize(
    ("groups", "shown"),
    [
        ([0, 3], "groups contains class 3"),
        ([-1, 0], "groups contains class -1"),
        ([], "must list one class per neuron"),
        ([[0, 1]], "must list one class per neuron"),
    ],
    ids=["class-too-large", "negative-class", "empty", "two-dimensional"],
)
def test_semilocal_shapes_reject_invalid_groups(groups, shown):
    X, labels = _three_class_data()
    with pytest.raises(InvalidArgument, match=shown):
        semilocal_shapes(np.random.default_rng(14), X, labels, groups, 3)


def test_semilocal_shapes_reject_class_without_samples():
    X, labels = _three_class_data()
    with pytest.raises(InvalidArgument, match="class 3 of neuron 3 has no samples"):
        semilocal_shapes(np.random.default_rng(15), X, labels, [0, 1, 2, 3], 4)


def test_semilocal_shapes_reject_class_without_neuron():
    # Class 2 gets no neuron, so no output can ever favour it.
    X, labels = _three_class_data()
    with pytest.raises(InvalidArgument, match="class 2 has no neuron"):
        semilocal_shapes(np.random.default_rng(15), X, labels, [0, 1, 0], 3)


def test_semilocal_shapes_reject_one_class():
    X, labels = _three_class_data()
    with pytest.raises(InvalidArgument, match="num_classes=1"):
        semilocal_shapes(np.random.default_rng(16), X, labels, [0], 1)


@pytest.mark.parametrize(
    "rng", [0, None, np.random.RandomState(0)], ids=["int", "None", "RandomState"]
)
def test_draws_reject_non_generator_rng(rng):
    X, labels = _three_class_data()
    draws = [
        lambda: balanced_shapes(rng, 3, 4, 1),
        lambda: gaussian_init(rng, 3, 4, 1, 1e-6),
        lambda: semilocal_shapes(rng, X, labels, [0, 1, 2], 3),
    ]
    for draw in draws:
        with pytest.raises(InvalidArgument, match="numpy.random.default_rng"):
            draw()
