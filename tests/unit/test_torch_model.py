"""Unit tests of ncflow.torch_model against ncflow.network and direct formulas.

Error bounds use the float64 unit roundoff ``u = eps / 2``. An ``m``-term dot
product computed in float64 differs from the exact one by at most ``m u`` times
the sum of the absolute terms. Two independent evaluations therefore differ by
at most ``m eps`` times that sum.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from ncflow._validation import InvalidArgument
from ncflow.losses import loss_terms
from ncflow.network import Parameters, Problem, features, loss_and_gradient, outputs
from ncflow.torch_model import (
    TwoLayerNet,
    autograd_euler,
    autograd_gradient,
    summed_loss,
)

EPS = float(np.finfo(np.float64).eps)

LOSS_NAMES = ["exponential", "logistic", "cross_entropy"]
ACTIVATIONS = ["relu", "linear"]


def _random_problem(
    loss: str, activation: str, seed: int, *, weight_scale: float = 1.0
) -> tuple[Problem, Parameters]:
    rng = np.random.default_rng(seed)
    n, D, width = 6, 3, 4
    num_classes = 3 if loss == "cross_entropy" else 2
    X = rng.standard_normal((n, D))
    X /= np.linalg.norm(X, axis=1, keepdims=True)  # unit samples
    problem = Problem(X, np.arange(n) % num_classes, num_classes, loss, activation)
    W = weight_scale * rng.standard_normal((D, width))
    V = weight_scale * rng.standard_normal((problem.num_outputs, width))
    return problem, Parameters(W, V)


def _abs_outputs(problem: Problem, params: Parameters) -> np.ndarray:
    return (np.abs(problem.X) @ np.abs(params.W)) @ np.abs(params.V).T


# --------------------------------------------------------------------------------
# The module and its conversions
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["logistic", "cross_entropy"])
def test_forward_matches_network_outputs(loss, activation):
    problem, params = _random_problem(loss, activation, seed=0)
    model = TwoLayerNet.from_parameters(params, activation)
    result = model(problem.X).detach().numpy()

    # (D + h)-term products on both sides: (D + h) eps times |X||W||V|.
    tol = (problem.D + params.width) * EPS * _abs_outputs(problem, params)
    assert result.shape == (problem.n, problem.num_outputs)
    assert np.all(np.abs(result - outputs(problem, params)) <= tol)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_features_match_network_features(activation):
    problem, params = _random_problem("logistic", activation, seed=1)
    model = TwoLayerNet.from_parameters(params, activation)
    result = model.features(problem.X).detach().numpy()

    # D-term products on both sides: D eps times |X||W|.
    tol = problem.D * EPS * (np.abs(problem.X) @ np.abs(params.W))
    assert np.all(np.abs(result - features(problem.X, params.W, activation)) <= tol)


def test_weights_are_float64_parameters():
    _, params = _random_problem("cross_entropy", "relu", seed=2)
    model = TwoLayerNet.from_parameters(params)
    assert isinstance(model.W, nn.Parameter)
    assert isinstance(model.V, nn.Parameter)
    assert model.W.dtype == torch.float64
    assert model.V.dtype == torch.float64
    assert tuple(model.W.shape) == params.W.shape
    assert tuple(model.V.shape) == params.V.shape


def test_parameters_round_trip_exactly():
    _, params = _random_problem("cross_entropy", "relu", seed=3)
    restored = TwoLayerNet.from_parameters(params).to_parameters()
    assert np.array_equal(restored.W, params.W)
    assert np.array_equal(restored.V, params.V)


def test_to_parameters_returns_copy():
    _, params = _random_problem("logistic", "relu", seed=4)
    model = TwoLayerNet.from_parameters(params)
    exported = model.to_parameters()
    with torch.no_grad():
        model.W.zero_()
    assert np.array_equal(exported.W, params.W)


def test_from_parameters_copies_weights():
    _, params = _random_problem("logistic", "relu", seed=5)
    W = params.W.copy()
    model = TwoLayerNet(W, params.V)
    W[0, 0] += 1.0
    assert model.W[0, 0].item() == params.W[0, 0]


def test_two_layer_net_rejects_mismatched_widths():
    with pytest.raises(InvalidArgument, match="W has 2 neurons"):
        TwoLayerNet(np.ones((3, 2)), np.ones((1, 3)))


def test_two_layer_net_rejects_unknown_activation():
    with pytest.raises(InvalidArgument, match="activation='tanh' is invalid"):
        TwoLayerNet(np.ones((3, 2)), np.ones((1, 2)), activation="tanh")


def test_relu_derivative_at_zero_is_zero():
    # Neuron 0 has pre-activation exactly 0.0 on the only sample.
    model = TwoLayerNet(np.array([[0.0], [1.0]]), np.array([[1.0]]))
    model(np.array([[1.0, 0.0]])).sum().backward()
    assert np.all(model.W.grad.numpy() == 0.0)


# --------------------------------------------------------------------------------
# summed_loss
# --------------------------------------------------------------------------------

# Outputs span |f| <= 30, beyond the threshold 20 at which F.softplus would switch
# to the identity; exp(30) is far from overflow, so the naive formulas are valid.
OUTPUT_BOUND = 30.0


def _naive_summed_loss(outputs: np.ndarray, targets: np.ndarray, loss: str) -> float:
    if loss == "exponential":
        return float(np.sum(np.exp(-targets * outputs[:, 0])))
    if loss == "logistic":
        return float(np.sum(2.0 * np.log1p(np.exp(-targets * outputs[:, 0]))))
    exponentials = np.exp(outputs)
    probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
    return float(-np.sum(np.log(probabilities[np.arange(len(targets)), targets])))


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_summed_loss_matches_direct_formula(loss):
    rng = np.random.default_rng(6)
    n = 20
    if loss == "cross_entropy":
        outputs = rng.uniform(-OUTPUT_BOUND, OUTPUT_BOUND, size=(n, 4))
        targets = rng.integers(4, size=n)
    else:
        outputs = rng.uniform(-OUTPUT_BOUND, OUTPUT_BOUND, size=(n, 1))
        targets = rng.choice([-1.0, 1.0], size=n)
    result = summed_loss(torch.tensor(outputs), torch.tensor(targets), loss).item()
    expected = _naive_summed_loss(outputs, targets, loss)

    # Each term: exp or log of a quantity of size <= 30 + log 4 < 32, a few (4)
    # ulps of it as relative error on both sides, 2 * 4 * 32 eps; the n-term sums
    # add n eps. The naive softmax rounds p_k near 1, an absolute eps per term.
    tol = (2 * 4 * 32 + n) * EPS * expected + n * EPS
    assert abs(result - expected) <= tol


def test_summed_loss_logistic_keeps_tail_beyond_softplus_threshold():
    # At margin -25, 2 log(1 + e^25) = 50 + 2 log1p(e^-25): the tail 2.8e-11 is
    # what F.softplus with its default threshold 20 would drop.
    result = summed_loss(torch.tensor([[-25.0]]), torch.tensor([1.0]), "logistic")
    expected = 50.0 + 2.0 * math.log1p(math.exp(-25.0))

    # Two roundings of a value near 50: 2 eps relative.
    assert abs(result.item() - expected) <= 2 * EPS * expected


@pytest.mark.parametrize(
    ("loss", "num_outputs"), [("exponential", 3), ("cross_entropy", 1)]
)
def test_summed_loss_rejects_wrong_output_count(loss, num_outputs):
    outputs = torch.zeros((2, num_outputs), dtype=torch.float64)
    with pytest.raises(InvalidArgument, match=f"loss='{loss}' is invalid"):
        summed_loss(outputs, torch.tensor([0, 1]), loss)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_autograd_loss_matches_network_log_loss(loss):
    problem, params = _random_problem(loss, "relu", seed=7)
    value, _ = autograd_gradient(problem, params)
    log_loss, _ = loss_and_gradient(problem, params)

    # Relative error of the summed loss as in the direct-formula test, with |f|
    # here below 10 and n = 6 terms: (2 * 4 * 12 + 6) eps, plus the output error
    # (D + h) eps |X||W||V| that |dl/df| / l <= 2 turns relative.
    output_error = (
        (problem.D + params.width) * EPS * np.max(_abs_outputs(problem, params))
    )
    tol = (2 * 4 * 12 + problem.n) * EPS + 2 * output_error
    assert np.max(np.abs(outputs(problem, params))) < 10.0
    assert abs(math.log(value) - log_loss) <= tol


# --------------------------------------------------------------------------------
# autograd_euler against a numpy Euler loop
# --------------------------------------------------------------------------------


def _numpy_euler(
    problem: Problem, params: Parameters, step: float, num_steps: int
) -> list[Parameters]:
    """Return the iterates theta_0 .. theta_K of theta <- theta - step grad L."""
    path = [params]
    for _ in range(num_steps):
        _, gradient = loss_and_gradient(problem, params)
        params = Parameters(params.W - step * gradient.W, params.V - step * gradient.V)
        path.append(params)
    return path


def _gradient_error_bound(problem: Problem, params: Parameters) -> float:
    """Bound ``||grad_ncflow - grad_torch||_F`` at one point.

    The loss derivatives ``g_i`` differ relatively by 2 * 4 ulps of the log-domain
    size ``max|f| + log K + 1``, and by ``2 |g_i|`` times the output error. For
    the softmax they also differ absolutely by as much, because torch forms
    ``p_k - 1``. The gradients are n-term and (n + d_y)-term sums of products
    with ``g_i``.
    """
    n, D = problem.X.shape
    abs_X = np.abs(problem.X)
    abs_V = np.abs(params.V)
    abs_Z = abs_X @ np.abs(params.W)
    abs_phi = np.abs(features(problem.X, params.W, problem.activation))
    f = outputs(problem, params)

    size = np.max(np.abs(f)) + math.log(problem.num_classes) + 1
    derivative_rtol = 8 * size * EPS
    derivative_atol = derivative_rtol if problem.loss == "cross_entropy" else 0.0
    output_error = (D + params.width) * EPS * np.max(abs_Z @ abs_V.T)

    abs_G = np.abs(loss_terms(f, problem.targets, problem.loss).gradients())
    relative = derivative_rtol + 2 * output_error + (n + params.num_outputs) * EPS
    G_error = relative * abs_G + derivative_atol

    tol_W = abs_X.T @ (G_error @ abs_V)
    tol_V = G_error.T @ abs_phi + abs_G.T @ (D * EPS * abs_Z)
    return float(np.sqrt(np.sum(tol_W**2) + np.sum(tol_V**2)))


def _lipschitz_bound(problem: Problem, params: Parameters) -> float:
    """Bound the spectral norm of the Hessian of ``L`` at ``params``.

    Per sample, ``J_i^T H_i J_i`` has norm at most ``||H_i|| ||x_i||^2
    ||theta||_F^2``, because ``||J_i||^2 <= ||x_i||^2 (||V||^2 + ||W||^2)``. The
    term ``g_i . d^2 f_i`` couples only ``w_j`` with ``v_j``, by the block
    ``x_i g_i^T relu'(z_ij)`` of norm at most ``||x_i|| ||g_i||`` (the ReLU has
    second derivative 0 away from its kink).
    """
    f = outputs(problem, params)
    terms = loss_terms(f, problem.targets, problem.loss)
    scales = np.exp(terms.log_scales)
    hessian_norms = scales * np.linalg.norm(terms.unit_hessians, ord=2, axis=(1, 2))
    gradient_norms = np.linalg.norm(terms.gradients(), axis=1)
    sample_norms = np.linalg.norm(problem.X, axis=1)
    curvature = hessian_norms * sample_norms**2 * params.norm2()
    return float(np.sum(curvature + gradient_norms * sample_norms))


def _euler_difference_bound(
    path: list[Parameters], problem: Problem, step: float
) -> float:
    """Bound ``||theta_K^torch - theta_K^numpy||_F`` along the numpy path.

    Let ``e_k`` be the distance after ``k`` steps, ``Lambda_k`` the Hessian bound
    and ``delta_k`` the gradient difference bound at ``theta_k``. Then
    ``e_{k+1} <= (1 + step Lambda_k) e_k + step delta_k + eps (||theta_{k+1}|| +
    step ||grad||)``, where the last term is the rounding of the update on both
    sides. ``Lambda_k`` is taken at ``theta_k`` because the two paths stay within
    ``e_k`` of each other, many orders below the distance to the nearest ReLU
    kink on these random data.
    """
    error = 0.0
    for current, following in zip(path[:-1], path[1:], strict=True):
        growth = 1.0 + step * _lipschitz_bound(problem, current)
        update_size = math.sqrt(following.norm2()) + math.sqrt(
            Parameters(current.W - following.W, current.V - following.V).norm2()
        )
        rounding = EPS * update_size
        error = (
            growth * error + step * _gradient_error_bound(problem, current) + rounding
        )
    return error


EULER_STEP = 0.01
EULER_NUM_STEPS = 10


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_autograd_euler_matches_numpy_euler(loss, activation):
    problem, params0 = _random_problem(loss, activation, seed=8, weight_scale=0.5)
    path = _numpy_euler(problem, params0, EULER_STEP, EULER_NUM_STEPS)
    result = autograd_euler(problem, params0, EULER_STEP, EULER_NUM_STEPS)

    final = path[-1]
    difference = Parameters(result.W - final.W, result.V - final.V)
    tol = _euler_difference_bound(path, problem, EULER_STEP)
    assert math.sqrt(difference.norm2()) <= tol


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_euler_comparison_tolerance_far_below_motion(loss):
    # Guards the Euler comparison: the iterates move by far more than its tolerance.
    problem, params0 = _random_problem(loss, "relu", seed=8, weight_scale=0.5)
    path = _numpy_euler(problem, params0, EULER_STEP, EULER_NUM_STEPS)
    motion = Parameters(path[-1].W - params0.W, path[-1].V - params0.V)
    tol = _euler_difference_bound(path, problem, EULER_STEP)
    assert math.sqrt(motion.norm2()) >= 1e6 * tol


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_euler_path_stays_away_from_kinks(loss):
    # Guards the linearisation in the Euler bound: no pre-activation along the path
    # comes within 1e6 tolerances of the ReLU kink, so both paths share one
    # activation pattern (samples have unit norm, so |dz| <= ||dtheta||).
    problem, params0 = _random_problem(loss, "relu", seed=8, weight_scale=0.5)
    path = _numpy_euler(problem, params0, EULER_STEP, EULER_NUM_STEPS)
    tol = _euler_difference_bound(path, problem, EULER_STEP)
    closest = min(np.min(np.abs(problem.X @ params.W)) for params in path)
    assert closest >= 1e6 * tol


def test_autograd_euler_zero_steps_returns_start():
    problem, params0 = _random_problem("logistic", "relu", seed=9)
    result = autograd_euler(problem, params0, 0.1, 0)
    assert np.array_equal(result.W, params0.W)
    assert np.array_equal(result.V, params0.V)


def test_autograd_euler_one_step_is_gradient_step():
    problem, params0 = _random_problem("cross_entropy", "relu", seed=10)
    result = autograd_euler(problem, params0, 0.1, 1)
    _, gradient = autograd_gradient(problem, params0)

    # The same torch gradient; only the update rounds differently: eps |theta|.
    expected_W = params0.W - 0.1 * gradient.W
    expected_V = params0.V - 0.1 * gradient.V
    assert np.all(np.abs(result.W - expected_W) <= EPS * np.abs(expected_W))
    assert np.all(np.abs(result.V - expected_V) <= EPS * np.abs(expected_V))


@pytest.mark.parametrize(
    ("step", "num_steps", "shown"),
    [(0.0, 3, "step=0.0"), (-0.1, 3, "step=-0.1"), (0.1, -1, "num_steps=-1")],
)
def test_autograd_euler_rejects_bad_arguments(step, num_steps, shown):
    problem, params0 = _random_problem("logistic", "relu", seed=11)
    with pytest.raises(InvalidArgument, match=shown):
        autograd_euler(problem, params0, step, num_steps)


def test_autograd_euler_rejects_parameters_that_do_not_fit():
    problem, _ = _random_problem("cross_entropy", "relu", seed=12)
    params = Parameters(np.ones((problem.D, 4)), np.ones((2, 4)))
    with pytest.raises(InvalidArgument, match="do not fit this problem"):
        autograd_euler(problem, params, 0.1, 1)


# Build a binary and a three-class problem, whose arrays are read-only, and run
# every entry point that turns them into tensors. Warnings become errors after
# the imports.
_READ_ONLY_SCRIPT = textwrap.dedent(
    """
    import warnings

    import numpy as np

    from ncflow.network import Parameters, Problem
    from ncflow.torch_model import autograd_euler, autograd_gradient

    warnings.simplefilter("error")
    X = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, -1.0]])
    for loss, num_classes in (("logistic", 2), ("cross_entropy", 3)):
        labels = np.array([0, 1, num_classes - 1])
        problem = Problem(X, labels, num_classes, loss)
        params = Parameters(np.ones((2, 3)), np.ones((problem.num_outputs, 3)))
        autograd_gradient(problem, params)
        autograd_euler(problem, params, 1e-3, 2)
    """
)


def test_read_only_problem_arrays_warn_nothing():
    # torch 2.13 warns about a read-only ndarray only once per process, and an
    # earlier test may have used up that warning. The check therefore runs in a
    # fresh interpreter.
    done = subprocess.run(
        [sys.executable, "-c", _READ_ONLY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
