"""Unit tests of ncflow.network: validation, gradients against torch, ReLU at 0.

Error bounds use the float64 unit roundoff ``u = eps / 2``. An ``m``-term dot
product computed in float64 differs from the exact one by at most ``m u`` times
the sum of the absolute terms. Two independent evaluations therefore differ by
at most ``m eps`` times that sum.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.special
import torch

from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.losses import loss_terms
from ncflow.network import (
    Parameters,
    Problem,
    features,
    loss_and_gradient,
    outputs,
    sample_margins,
)
from ncflow.torch_model import autograd_gradient

EPS = float(np.finfo(np.float64).eps)

LOSS_NAMES = ["exponential", "logistic", "cross_entropy"]
ACTIVATIONS = ["relu", "linear"]


def _random_problem(
    loss: str, activation: str, seed: int, *, scale_V: float = 0.5
) -> tuple[Problem, Parameters]:
    rng = np.random.default_rng(seed)
    n, D, width = 8, 4, 6
    num_classes = 3 if loss == "cross_entropy" else 2
    X = rng.standard_normal((n, D))
    labels = np.arange(n) % num_classes
    problem = Problem(X, labels, num_classes, loss, activation)
    W = rng.standard_normal((D, width))
    V = scale_V * rng.standard_normal((problem.num_outputs, width))
    return problem, Parameters(W, V)


def _derivative_rtol(problem: Problem, params: Parameters) -> float:
    """Bound the relative difference of the ``g_i`` between ncflow and torch.

    Both ncflow and torch take exp of a log-domain quantity of size at most
    ``max |f| + log K + 1``, which carries an absolute error of about 4 ulps of
    that size. exp turns it into the same relative error, so two evaluations
    differ by 2 * 4 * size eps.
    """
    size = np.max(np.abs(outputs(problem, params))) + math.log(problem.num_classes) + 1
    return 8 * size * EPS


def _gradient_tolerance(
    problem: Problem, params: Parameters, derivative_rtol: float, derivative_atol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bound ``|grad_ncflow - grad_torch|`` entrywise, for ``W`` and ``V``.

    The pre-activations ``Z = X W`` are D-term and the outputs (D + h)-term dot
    products. An error ``df`` in the outputs changes ``g_i`` by at most
    ``2 |g_i| max|df_i|``: for the binary losses ``|dg/df| <= |g|``, and for the
    softmax each row of ``|dg_a/df|`` sums to ``2 p_a (1 - p_a) <= 2 |g_a|``. The
    gradients are then n-term and (n + d_y)-term sums.
    """
    n, D = problem.X.shape
    width, num_outputs = params.width, params.num_outputs
    abs_X = np.abs(problem.X)
    abs_V = np.abs(params.V)
    abs_Z = abs_X @ np.abs(params.W)
    abs_phi = np.abs(features(problem.X, params.W, problem.activation))
    delta_Z = D * EPS * abs_Z
    delta_f = (D + width) * EPS * (abs_Z @ abs_V.T)

    terms = loss_terms(outputs(problem, params), problem.targets, problem.loss)
    abs_G = np.abs(terms.gradients())
    relative = (
        derivative_rtol
        + 2 * np.max(delta_f, axis=1, keepdims=True)
        + (n + num_outputs) * EPS
    )
    G_error = relative * abs_G + derivative_atol

    tol_W = abs_X.T @ (G_error @ abs_V)
    tol_V = G_error.T @ abs_phi + abs_G.T @ delta_Z
    return tol_W, tol_V


# Torch's softmax gradient forms p_k - 1 from p = exp(f - logsumexp f), so it has
# an absolute error as large as the relative error of p; binary losses have none.
def _derivative_atol(problem: Problem, params: Parameters) -> float:
    if problem.loss == "cross_entropy":
        return _derivative_rtol(problem, params)
    return 0.0


# --------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------


def test_parameters_reject_mismatched_widths():
    with pytest.raises(InvalidArgument, match=r"W has 2 neurons .* V has 3"):
        Parameters(np.ones((4, 2)), np.ones((1, 3)))


@pytest.mark.parametrize(
    ("name", "bad_value", "shown"),
    [
        ("W", math.nan, r"W\[1, 0\] = (np\.float64\()?nan"),
        ("V", math.inf, r"V\[0, 1\] = (np\.float64\()?inf"),
    ],
    ids=["W-nan", "V-inf"],
)
def test_parameters_reject_non_finite_entry(name, bad_value, shown):
    arrays = {"W": np.ones((3, 2)), "V": np.ones((1, 2))}
    index = (1, 0) if name == "W" else (0, 1)
    arrays[name][index] = bad_value
    with pytest.raises(InvalidArgument, match=shown):
        Parameters(arrays["W"], arrays["V"])


@pytest.mark.parametrize(
    ("W", "V", "shown"),
    [
        (
            np.ones(3),
            np.ones((1, 3)),
            r"W is invalid: it must have 2 dimensions, got shape \(3,\)",
        ),
        (
            np.ones((3, 2)),
            np.ones((1, 1, 2)),
            r"V is invalid: .* got shape \(1, 1, 2\)",
        ),
    ],
    ids=["W-1d", "V-3d"],
)
def test_parameters_reject_wrong_ndim(W, V, shown):
    with pytest.raises(InvalidArgument, match=shown):
        Parameters(W, V)


def test_parameters_flat_round_trip():
    rng = np.random.default_rng(0)
    params = Parameters(rng.standard_normal((3, 4)), rng.standard_normal((2, 4)))
    restored = Parameters.from_flat(params.flat(), D=3, width=4)
    assert np.array_equal(restored.W, params.W)
    assert np.array_equal(restored.V, params.V)


def test_parameters_norm2_sums_both_layers():
    params = Parameters(np.array([[3.0], [4.0]]), np.array([[12.0]]))
    assert params.norm2() == 25.0 + 144.0


# --------------------------------------------------------------------------------
# Problem
# --------------------------------------------------------------------------------


def test_problem_rejects_labels_of_wrong_length():
    with pytest.raises(
        InvalidArgument, match=r"labels has shape \(3,\) but X has 4 rows"
    ):
        Problem(np.ones((4, 2)), [0, 1, 0], 2, "exponential")


def test_problem_rejects_two_dimensional_labels():
    with pytest.raises(InvalidArgument, match=r"labels has shape \(4, 1\)"):
        Problem(np.ones((4, 2)), [[0], [1], [0], [1]], 2, "exponential")


def test_problem_rejects_binary_loss_with_three_classes():
    with pytest.raises(InvalidArgument, match="needs two classes, got num_classes=3"):
        Problem(np.ones((3, 2)), [0, 1, 2], 3, "exponential")


def test_problem_rejects_unknown_activation():
    with pytest.raises(InvalidArgument, match="activation='tanh' is invalid"):
        Problem(np.ones((2, 2)), [0, 1], 2, "exponential", activation="tanh")


def test_problem_rejects_unknown_loss():
    with pytest.raises(InvalidArgument, match="loss='hinge' is invalid"):
        Problem(np.ones((2, 2)), [0, 1], 2, "hinge")


def test_problem_rejects_zero_sign():
    with pytest.raises(InvalidArgument, match="signs must be"):
        Problem(np.ones((2, 2)), [0, 1], 2, "logistic", signs=[1.0, 0.0])


def test_problem_rejects_nan_sample():
    X = np.ones((2, 2))
    X[1, 1] = math.nan
    with pytest.raises(InvalidArgument, match=r"X\[1, 1\] = (np\.float64\()?nan"):
        Problem(X, [0, 1], 2, "exponential")


@pytest.mark.parametrize("loss", ["exponential", "cross_entropy"])
@pytest.mark.parametrize(
    ("zero_rows", "first"),
    [([1], 1), ([2, 3], 2), ([0, 1, 2, 3], 0)],
    ids=["one-row", "two-rows", "all-rows"],
)
def test_problem_rejects_zero_row(zero_rows, first, loss):
    X = np.ones((4, 3))
    X[zero_rows] = 0.0
    with pytest.raises(InvalidArgument) as error:
        Problem(X, [0, 0, 1, 1], 2, loss)
    message = str(error.value)
    assert f"X[{first}] is invalid: the sample is a zero vector" in message
    assert f"zero rows: {len(zero_rows)} of 4" in message
    assert message.endswith("remove the zero rows")


@pytest.mark.parametrize(
    ("labels", "num_classes", "loss"),
    [
        ([0, 2], 2, "exponential"),
        ([0, -1], 3, "cross_entropy"),
        ([0.5, 1.0], 2, "logistic"),
    ],
    ids=["binary-label-2", "cross-entropy-label-minus-1", "fractional-label"],
)
def test_problem_rejects_labels_outside_classes(labels, num_classes, loss):
    with pytest.raises(InvalidArgument, match="labels"):
        Problem(np.ones((2, 2)), labels, num_classes, loss)


def _caller_arrays() -> dict[str, np.ndarray]:
    """Return arrays of a binary problem in the dtypes Problem stores, so that
    converting them makes no copy."""
    return {
        "X": np.array([[1.0, 0.5], [-1.0, 0.2], [0.8, 0.9]]),
        "labels": np.array([0, 1, 0], dtype=np.int64),
        "signs": np.array([-1.0, 1.0, -1.0]),
    }


@pytest.mark.parametrize("name", ["X", "labels", "signs"])
def test_problem_keeps_own_copy(name):
    arrays = _caller_arrays()
    problem = Problem(
        arrays["X"], arrays["labels"], 2, "logistic", signs=arrays["signs"]
    )
    expected = getattr(problem, name).copy()

    arrays[name][0] = arrays[name][1]

    assert np.array_equal(getattr(problem, name), expected)
    assert not np.shares_memory(getattr(problem, name), arrays[name])


@pytest.mark.parametrize("name", ["X", "labels", "signs"])
def test_problem_arrays_are_read_only(name):
    arrays = _caller_arrays()
    problem = Problem(
        arrays["X"], arrays["labels"], 2, "logistic", signs=arrays["signs"]
    )
    with pytest.raises(ValueError, match="read-only"):
        getattr(problem, name)[0] = getattr(problem, name)[1]


def test_check_parameters_rejects_wrong_output_count():
    problem = Problem(np.ones((2, 3)), [0, 1], 2, "exponential")
    params = Parameters(np.ones((3, 5)), np.ones((2, 5)))
    with pytest.raises(InvalidArgument, match=r"V \(1, h\)"):
        problem.check_parameters(params)


def test_loss_and_gradient_rejects_misfit_parameters():
    rng = np.random.default_rng(0)
    problem = Problem(rng.standard_normal((4, 3)), [0, 1, 0, 1], 3, "cross_entropy")
    params = Parameters(rng.standard_normal((3, 5)), rng.standard_normal((2, 5)))
    with pytest.raises(InvalidArgument):
        loss_and_gradient(problem, params)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_and_gradient_rejects_overflowing_outputs(loss):
    problem, params = _random_problem(loss, "relu", seed=3)
    # Weights of size 1e160 are finite, but the outputs, of size 1e320, are not.
    huge = params.scaled(1e160)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidArgument) as error:
            loss_and_gradient(problem, huge)
    message = str(error.value)
    assert "params" in message
    assert "overflow" in message
    assert "scale params.W and params.V down" in message


@pytest.mark.parametrize("name", ["W", "V"])
def test_loss_and_gradient_rejects_nan_parameters(name):
    problem, params = _random_problem("logistic", "relu", seed=4)
    # Parameters validates at construction, but its arrays stay writable.
    getattr(params, name)[0, 1] = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidArgument, match=rf"params\.{name}\[0, 1\] = nan"):
            loss_and_gradient(problem, params)


def _dataset(labels) -> Dataset:
    rng = np.random.default_rng(1)
    return Dataset.from_arrays(rng.standard_normal((len(labels), 3)), labels)


def test_from_dataset_two_classes_default():
    problem = Problem.from_dataset(_dataset(["a", "b", "a", "b"]))
    assert problem.loss == "exponential"
    assert problem.num_classes == 2
    assert np.array_equal(problem.signs, [1.0, -1.0, 1.0, -1.0])


def test_from_dataset_three_classes_default():
    problem = Problem.from_dataset(_dataset([0, 1, 2, 1]))
    assert problem.loss == "cross_entropy"
    assert problem.num_outputs == 3
    assert np.array_equal(problem.labels, [0, 1, 2, 1])


def test_from_dataset_keeps_named_signs():
    raw = [1, -1, -1, 1]
    problem = Problem.from_dataset(_dataset(raw))
    assert np.array_equal(problem.signs, np.array(raw, dtype=float))


def test_from_dataset_keeps_requested_loss():
    problem = Problem.from_dataset(_dataset([0, 1, 0]), "logistic", "linear")
    assert problem.loss == "logistic"
    assert problem.activation == "linear"


# --------------------------------------------------------------------------------
# Gradient against torch autograd
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_gradient_matches_torch_autograd(loss, activation, seed):
    problem, params = _random_problem(loss, activation, seed)
    _, gradient = loss_and_gradient(problem, params)
    _, expected = autograd_gradient(problem, params)

    rtol = _derivative_rtol(problem, params)
    atol = _derivative_atol(problem, params)
    tol_W, tol_V = _gradient_tolerance(problem, params, rtol, atol)
    assert np.all(np.abs(gradient.W - expected.W) <= tol_W)
    assert np.all(np.abs(gradient.V - expected.V) <= tol_V)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_log_loss_matches_torch_loss(loss, activation):
    problem, params = _random_problem(loss, activation, seed=2)
    log_loss, _ = loss_and_gradient(problem, params)
    expected, _ = autograd_gradient(problem, params)

    # Each l_i has the relative error of the derivatives, plus |dl/df| / l <= 2
    # times the output error (D + h) eps |X||W||V|; the n-term sum adds n eps.
    abs_f = (np.abs(problem.X) @ np.abs(params.W)) @ np.abs(params.V).T
    n, D = problem.X.shape
    output_error = (D + params.width) * EPS * np.max(abs_f)
    tol = _derivative_rtol(problem, params) + 2 * output_error + n * EPS
    assert abs(log_loss - math.log(expected)) <= tol


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_relative_gradient_equals_gradient_over_loss(loss):
    problem, params = _random_problem(loss, "relu", seed=3)
    log_loss, gradient = loss_and_gradient(problem, params)
    _, relative = loss_and_gradient(problem, params, relative=True)
    loss_value = math.exp(log_loss)

    # exp(lambda_i - log L) against exp(lambda_i) / exp(log L): the exponents carry
    # 4 ulps of their size each, and the n-term sums add n eps.
    size = _derivative_rtol(problem, params) / (8 * EPS) + abs(log_loss)
    rtol = 8 * size * EPS
    tol_W, tol_V = _gradient_tolerance(problem, params, rtol, 0.0)
    assert np.all(np.abs(relative.W - gradient.W / loss_value) <= tol_W / loss_value)
    assert np.all(np.abs(relative.V - gradient.V / loss_value) <= tol_V / loss_value)


def _fitted_problem() -> tuple[Problem, Parameters, np.ndarray]:
    """Return a binary problem whose margins are about 1e4, so L underflows to 0.

    With ``W = s I`` and ``V = s [1, -1]``, ``f(x) = s^2 (relu(x_1) - relu(x_2))``.
    Class + samples ``(a, -b)`` and class - samples ``(-b, a)`` get margin ``s^2 a``.
    """
    a = np.array([1.0, 1.0005, 1.001, 1.0002])
    b = np.array([0.3, 0.7, 0.2, 0.5])
    X = np.stack(
        [
            np.array([a[0], -b[0]]),
            np.array([a[1], -b[1]]),
            np.array([-b[2], a[2]]),
            np.array([-b[3], a[3]]),
        ]
    )
    problem = Problem(X, [0, 0, 1, 1], 2, "exponential")
    scale = 100.0  # s^2 = 1e4
    params = Parameters(scale * np.eye(2), scale * np.array([[1.0, -1.0]]))
    margins = scale**2 * a
    return problem, params, margins


def _relative_gradient_by_hand(
    problem: Problem, params: Parameters, margins: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Write grad L / L = -sum_i softmax(-m)_i y_i df_i/dtheta sample by sample."""
    weights = scipy.special.softmax(-margins)
    grad_W = np.zeros_like(params.W)
    grad_V = np.zeros_like(params.V)
    for i, x in enumerate(problem.X):
        z = x @ params.W
        active = (z > 0).astype(float)
        coefficient = -weights[i] * problem.signs[i]
        grad_V[0] += coefficient * np.maximum(z, 0.0)
        grad_W += coefficient * np.outer(x, params.V[0] * active)
    return grad_W, grad_V


def test_relative_gradient_finite_at_underflow():
    problem, params, margins = _fitted_problem()
    log_loss, relative = loss_and_gradient(problem, params, relative=True)
    _, plain = loss_and_gradient(problem, params)

    assert math.exp(log_loss) == 0.0
    assert np.all(plain.W == 0.0)
    assert np.all(np.isfinite(relative.W))
    assert np.all(np.isfinite(relative.V))
    assert np.any(relative.V != 0.0)


def test_relative_gradient_closed_form_at_underflow():
    problem, params, margins = _fitted_problem()
    log_loss, relative = loss_and_gradient(problem, params, relative=True)
    expected_W, expected_V = _relative_gradient_by_hand(problem, params, margins)

    # The margins, of size m = 1e4, carry a few (4) ulps of error in both the library
    # and the hand computation, and the softmax weights the same absolute error
    # relative; the entries of df/dtheta are O(s) = 100 with O(1) cancellation.
    tol = 2 * 4 * np.max(margins) * EPS * np.max(np.abs(expected_V))
    assert np.all(np.abs(relative.V - expected_V) <= tol)
    assert np.all(np.abs(relative.W - expected_W) <= tol)


def test_log_loss_logsumexp_at_underflow():
    problem, params, margins = _fitted_problem()
    log_loss, _ = loss_and_gradient(problem, params)

    # One ulp of the margins from the outputs and a few in the log-sum-exp: 4 eps.
    tol = 4 * np.max(margins) * EPS
    assert abs(log_loss - scipy.special.logsumexp(-margins)) <= tol


# --------------------------------------------------------------------------------
# ReLU derivative at 0 and homogeneity
# --------------------------------------------------------------------------------


def _tie_problem(activation: str = "relu") -> tuple[Problem, Parameters]:
    """Neuron 0 has pre-activation exactly 0.0 on sample 0 and < 0 on the others."""
    X = np.array([[1.0, 0.0], [-0.5, -1.0], [0.3, -2.0]])
    problem = Problem(X, [0, 1, 1], 2, "exponential", activation)
    W = np.array([[0.0, 1.0], [1.0, 0.5]])  # columns w_0 = (0, 1), w_1 = (1, 0.5)
    V = np.array([[1.0, 0.7]])
    return problem, Parameters(W, V)


def test_tie_case_has_exact_zero_preactivation():
    problem, params = _tie_problem()
    preactivations = problem.X @ params.W
    assert preactivations[0, 0] == 0.0
    assert np.all(preactivations[1:, 0] < 0.0)


def test_relu_derivative_at_zero_gives_no_gradient():
    problem, params = _tie_problem()
    _, gradient = loss_and_gradient(problem, params)
    assert np.all(gradient.W[:, 0] == 0.0)
    assert gradient.V[0, 0] == 0.0


def test_relu_tie_matches_torch_relu():
    problem, params = _tie_problem()
    _, expected = autograd_gradient(problem, params)
    assert np.all(expected.W[:, 0] == 0.0)
    assert expected.V[0, 0] == 0.0


def test_torch_relu_derivative_at_zero_is_zero():
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    torch.relu(z).sum().backward()
    assert z.grad.item() == 0.0


def test_tie_case_moves_linear_neuron():
    # Guards the tie test: without the ReLU, sample 0 does move neuron 0.
    problem, params = _tie_problem("linear")
    _, gradient = loss_and_gradient(problem, params)
    assert np.any(gradient.W[:, 0] != 0.0)


def test_inactive_neuron_gets_no_gradient():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((8, 4))
    X[:, 0] = np.abs(X[:, 0]) + 0.1  # every sample has x_1 > 0
    problem = Problem(X, np.arange(8) % 3, 3, "cross_entropy")
    W = rng.standard_normal((4, 6))
    W[:, 2] = [-1.0, 0.0, 0.0, 0.0]  # so <x_i, w_2> = -x_i1 < 0 on every sample
    params = Parameters(W, rng.standard_normal((3, 6)))

    _, gradient = loss_and_gradient(problem, params)
    assert np.all(gradient.W[:, 2] == 0.0)
    assert np.all(gradient.V[:, 2] == 0.0)


# Powers of two scale every float64 product and sum exactly (no overflow or
# underflow here), so outputs(c theta) equals c^2 outputs(theta) bit for bit.
@pytest.mark.parametrize("factor", [0.5, 2.0, 1024.0])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_outputs_exactly_homogeneous_for_powers_of_two(activation, factor):
    problem, params = _random_problem("cross_entropy", activation, seed=5)
    scaled = outputs(problem, params.scaled(factor))
    assert np.array_equal(scaled, factor**2 * outputs(problem, params))


@pytest.mark.parametrize("factor", [3.0, 0.1, 7.3])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_outputs_homogeneous_of_degree_two(activation, factor):
    problem, params = _random_problem("cross_entropy", activation, seed=6)
    scaled = outputs(problem, params.scaled(factor))
    expected = factor**2 * outputs(problem, params)

    # Scaling W and V rounds each entry once (u each), and the (D + h)-term products
    # of both sides round as in the module docstring: (D + h + 4) eps times
    # c^2 |X||W||V|.
    abs_f = (np.abs(problem.X) @ np.abs(params.W)) @ np.abs(params.V).T
    tol = (problem.D + params.width + 4) * EPS * factor**2 * abs_f
    assert np.all(np.abs(scaled - expected) <= tol)


def test_linear_outputs_homogeneous_for_negative_factor():
    problem, params = _random_problem("logistic", "linear", seed=7)
    scaled = outputs(problem, params.scaled(-2.0))
    assert np.array_equal(scaled, 4.0 * outputs(problem, params))


def test_sample_margins_of_one_output_are_signed_outputs():
    X = np.eye(2)
    problem = Problem(X, np.array([0, 1]), 2, "exponential", "relu", np.array([1, -1]))
    f = np.array([[0.5], [0.25]])

    margins = sample_margins(problem, f)

    assert margins.tolist() == [0.5, -0.25]


def test_sample_margins_of_k_outputs_subtract_the_largest_other_output():
    X = np.eye(3)
    problem = Problem(X, np.array([0, 1, 2]), 3, "cross_entropy", "relu", None)
    f = np.array([[3.0, 1.0, 2.0], [0.0, 1.0, 4.0], [0.0, 0.0, 0.0]])

    margins = sample_margins(problem, f)

    assert margins.tolist() == [1.0, -3.0, 0.0]


@pytest.mark.parametrize(
    ("signs", "fragment"),
    [
        (
            [1.0, -1.0, 1.0, -1.0],
            r"signs\[1\]=-1 differs from signs\[0\]=\+1 in class 0",
        ),
        ([1.0, 1.0, 1.0, 1.0], r"both classes have sign \+1"),
    ],
)
def test_problem_rejects_contradicting_signs(signs, fragment):
    X = np.eye(4) + 0.1
    with pytest.raises(InvalidArgument, match=fragment):
        Problem(X, [0, 0, 1, 1], 2, "exponential", signs=np.array(signs))


def test_problem_accepts_either_sign_per_class():
    X = np.eye(4) + 0.1
    signs = np.array([-1.0, -1.0, 1.0, 1.0])
    problem = Problem(X, [0, 0, 1, 1], 2, "exponential", signs=signs)
    assert list(problem.signs) == [-1, -1, 1, 1]


def test_problem_rejects_underflowing_row():
    X = np.eye(3) + 0.1
    X[1] = [1e-200, 0.0, 0.0]
    with pytest.raises(InvalidArgument, match=r"X\[1\] .* underflows float64 to 0"):
        Problem(X, [0, 1, 1], 2, "exponential")


@pytest.mark.parametrize("num_classes", [3.0, "2", True, 0])
def test_problem_rejects_invalid_num_classes(num_classes):
    with pytest.raises(InvalidArgument, match="num_classes="):
        Problem(np.eye(3) + 0.1, [0, 1, 1], num_classes, "exponential")


@pytest.mark.parametrize("loss", ["exponential", "cross_entropy"])
def test_problem_rejects_one_class(loss):
    # Each loss's own message named the other loss as the fix.
    with pytest.raises(InvalidArgument, match="num_classes=1 .* two classes or more"):
        Problem(np.eye(3) + 0.1, [0, 0, 0], 1, loss)


def test_problem_names_the_shape_of_x():
    X = np.eye(3, 6) + 0.1  # samples as columns
    with pytest.raises(InvalidArgument, match=r"X of shape \(n, D\), one row"):
        Problem(X, [0, 0, 0, 1, 1, 1], 2, "exponential")
