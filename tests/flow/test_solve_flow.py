"""``solve_flow``: argument validation, the result object and its status table."""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
import re
import warnings

import numpy as np
import pytest

from ncflow._validation import InvalidArgument, NcflowWarning
from ncflow.flow import (
    METHODS,
    STATUS_MESSAGES,
    FlowResult,
    FlowState,
    LossBelow,
    Norm2Above,
    Separated,
    adaptive,
    coordinates,
    default_groups,
    radau,
    solve_flow,
)
from ncflow.flow import result as res
from ncflow.init import balanced_init, balanced_shapes, semilocal_shapes
from ncflow.losses import loss_terms
from ncflow.network import Parameters, Problem, outputs
from strategies.shapes import width_two_example

EPS = float(np.finfo(np.float64).eps)


def _width_two() -> tuple[Problem, Parameters]:
    """One sample per class in R^2 and one neuron per class, at scale 0.1."""
    example = width_two_example()
    return Problem.from_dataset(example.dataset), example.shapes.scaled(0.1)


# --- Validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"method": "bogus", "t_max": 1.0}, "method='bogus'"),
        ({"method": "euler", "t_max": 1.0}, "method='euler' needs step"),
        ({"method": "loss_scaled", "t_max": 1.0}, "method='loss_scaled' needs step"),
        ({"method": "euler", "step": -1.0, "t_max": 1.0}, "step=-1.0"),
        (
            {"step": 0.01, "t_max": 1.0},
            "step=0.01 is invalid with method='adaptive'",
        ),
        ({"step": 0.01, "t_max": 1.0}, "method='euler' and method='loss_scaled'"),
        ({"rtol": 0.1, "t_max": 1.0}, "rtol=0.1"),
        ({"rtol": 1e-16, "t_max": 1.0}, "rtol=1e-16"),
        ({"atol": -1.0, "t_max": 1.0}, "atol=-1.0"),
        ({"method": "euler", "step": 0.1, "rtol": -1.0, "t_max": 1.0}, "rtol=-1.0"),
        ({"t_max": -1.0}, "t_max=-1.0"),
        ({"t_max": 0.0}, "t_max=0.0"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"records_per_decade": 0, "t_max": 1.0}, "records_per_decade=0"),
        ({"events": [3], "t_max": 1.0}, "events[0]=3"),
        ({}, "nothing ends the run"),
        ({"events": [LossBelow(1e-3, terminal=False)]}, "nothing ends the run"),
        ({"groups": np.zeros(3, dtype=int), "t_max": 1.0}, "groups has shape (3,)"),
        ({"events": [Separated(np.zeros(3, dtype=int))], "t_max": 1.0}, "shape (3,)"),
        (
            {"events": [Separated(np.array([0, 5]))], "t_max": 1.0},
            "Separated groups[1]=5 is not a class; give a class index in 0..1",
        ),
        (
            {"events": [Separated([-1, 1])], "t_max": 1.0},
            "Separated groups[0]=-1 is not a class",
        ),
        (
            {"events": [Separated(np.array([0.5, 1.7]))], "t_max": 1.0},
            "Separated groups has dtype float64",
        ),
        (
            {"events": [Separated([True, False])], "t_max": 1.0},
            "Separated groups has dtype bool",
        ),
    ],
)
def test_invalid_argument_is_named(kwargs, fragment):
    problem, params0 = _width_two()
    with pytest.raises(InvalidArgument) as error:
        solve_flow(problem, params0, **kwargs)
    assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("W", "V", "fragment"),
    [
        (np.ones((3, 2)), np.ones((1, 2)), "W (3, 2)"),
        (np.ones((2, 2)), np.ones((2, 2)), "V (2, 2)"),
    ],
)
def test_parameters_of_wrong_shape_are_rejected(W, V, fragment):
    problem, _ = _width_two()
    with pytest.raises(InvalidArgument) as error:
        solve_flow(problem, Parameters(W, V), t_max=1.0)
    assert fragment in str(error.value)


def test_non_problem_and_non_parameters_are_rejected():
    problem, params0 = _width_two()
    with pytest.raises(InvalidArgument, match="got Dataset"):
        solve_flow(width_two_example().dataset, params0, t_max=1.0)
    with pytest.raises(InvalidArgument, match="got tuple"):
        solve_flow(problem, (params0.W, params0.V), t_max=1.0)


def test_class_without_sample_is_rejected():
    problem, params0 = _width_two()
    one_class = Problem(problem.X, np.zeros(problem.n, dtype=int), 2, problem.loss)
    with pytest.raises(InvalidArgument, match="class 1 of num_classes=2 has no sample"):
        solve_flow(one_class, params0, t_max=1.0)


def test_empty_huge_data_and_zero_width_are_rejected():
    problem, params0 = _width_two()
    with pytest.raises(InvalidArgument, match=r"X has shape \(0, 2\)"):
        Problem(np.zeros((0, 2)), np.zeros(0, dtype=int), 2, problem.loss)
    with pytest.raises(InvalidArgument, match="overflow float64; rescale X"):
        Problem(problem.X * 1e200, problem.labels, 2, problem.loss)
    no_neurons = Parameters(np.zeros((problem.D, 0)), np.zeros((1, 0)))
    with pytest.raises(InvalidArgument, match="width 0"):
        solve_flow(problem, no_neurons, t_max=1.0)


def test_single_event_needs_no_list():
    problem, params0 = _width_two()
    alone = solve_flow(problem, params0, events=Norm2Above(1.0))
    listed = solve_flow(problem, params0, events=[Norm2Above(1.0)])
    assert alone.status == res.STATUS_TERMINAL_EVENT
    assert alone.log_t == listed.log_t


def test_groups_outside_class_range_are_rejected():
    problem, params0 = _width_two()
    with pytest.raises(InvalidArgument, match="groups"):
        solve_flow(problem, params0, t_max=1.0, groups=np.array([0, 5]))


def test_non_integer_groups_are_rejected():
    problem, params0 = _width_two()
    with pytest.raises(InvalidArgument, match="groups"):
        solve_flow(problem, params0, t_max=1.0, groups=np.array([0.5, 1.7]))


# --- Weights too small for the polar coordinates -------------------------------------

TINY = float(np.finfo(np.float64).tiny)


def _width_two_at(eps: float) -> tuple[Problem, Parameters]:
    example = width_two_example()
    return Problem.from_dataset(example.dataset), balanced_init(example.shapes, eps)


def _printed_factor(message: str) -> float:
    match = re.search(r"by at least (\S+) = ", message)
    assert match is not None, message
    return float(match.group(1))


def test_underflowing_weights_give_smallest_factor():
    problem, params0 = _width_two_at(1e-200)
    columns = np.vstack([params0.W, params0.V]).T
    norms = [math.hypot(*column) for column in columns]
    smallest = int(np.argmin(norms))
    exact = math.sqrt(TINY) / norms[smallest]

    with pytest.raises(InvalidArgument) as error:
        solve_flow(problem, params0, t_max=1.0)
    message = str(error.value)
    printed = _printed_factor(message)

    assert f"neuron {smallest} of params0" in message
    assert "underflow float64" in message
    assert exact <= printed <= 1.01 * exact


def test_printed_factor_is_the_smallest_that_works():
    problem, params0 = _width_two_at(1e-200)
    with pytest.raises(InvalidArgument) as error:
        solve_flow(problem, params0, t_max=1.0)
    factor = _printed_factor(str(error.value))

    result = solve_flow(problem, params0.scaled(factor), t_max=1.0, max_steps=1)
    # One step may reach t_max: the exact frozen-gradient steps of the plateau
    # are long.
    assert result.status in (res.STATUS_BUDGET, res.STATUS_END_OF_SPAN), result.message
    with pytest.raises(InvalidArgument, match="underflow float64"):
        solve_flow(problem, params0.scaled(factor / 2), t_max=1.0, max_steps=1)


def test_euler_accepts_underflowing_weights():
    # The fixed-step methods need no squared neuron norms.
    problem, params0 = _width_two_at(1e-200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = solve_flow(
            problem, params0, method="euler", step=0.1, t_max=1.0,
            events=Norm2Above(1.0),
        )  # fmt: skip
    assert result.status == res.STATUS_END_OF_SPAN, result.message


def test_adaptive_run_from_tiny_eps_reaches_target():
    # Every sample is classified while ||theta||^2 is far below 1e-154, where
    # the norm clock's Jacobian (entries of order 1 / ||theta||^4) would
    # overflow; the run stays in tau up to NORM_CLOCK_MIN and then enters the
    # norm clock. rtol = 1e-6 keeps it short.
    problem, params0 = _width_two_at(1e-100)
    result = solve_flow(problem, params0, events=Norm2Above(1e4), rtol=1e-6)
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    assert result.settings["phases"][-1][0] == "norm2"


def test_slow_step_rule_spares_tight_rtol(monkeypatch):
    # At rtol = 1e-10 the explicit steps are as accurate as the norm clock, and
    # handing over after 50 slow steps (at R = 6 on this problem) took the run
    # from 6606 to 14902 evaluations. The rule must not change such a run.
    rng = np.random.default_rng(105)
    n, D, h = 55, 12, 3
    u = rng.standard_normal(D)
    u /= np.linalg.norm(u)
    signs = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    noise = 0.25 * rng.standard_normal((n, D))
    noise -= np.outer(noise @ u, u)
    X = signs[:, None] * u[None, :] * rng.uniform(1.0, 2.0, n)[:, None] + noise
    problem = Problem(X, (np.arange(n) >= n // 2).astype(int), 2, "exponential")
    params0 = balanced_init(balanced_shapes(rng, D, h, 1), 1e-40)
    runs = []
    for slow_steps in (adaptive.SLOW_STEPS, 10**9):
        monkeypatch.setattr(adaptive, "SLOW_STEPS", slow_steps)
        runs.append(solve_flow(problem, params0, rtol=1e-10, events=Norm2Above(1e4)))
    with_rule, without = runs
    assert with_rule.status == res.STATUS_TERMINAL_EVENT, with_rule.message
    assert with_rule.nfev == without.nfev
    assert with_rule.settings["phases"] == without.settings["phases"]


def test_late_explicit_steps_enter_norm_clock():
    # Three classes from eps = 1e-150 at rtol = 1e-2: from the frozen steps'
    # hand-over the explicit steps each grow log R by more than SLOW_LOG_R and
    # are never held by stability. Without the bound on R such runs stayed
    # explicit to the end. In a trial one took 113 s to R = 1e12, nearly all
    # in the quadrature of t.
    K = 3
    rng = np.random.default_rng(2 * K)
    X = -0.05 * rng.uniform(0.0, 1.0, (5 * K, K))
    labels = np.repeat(np.arange(K), 5)
    X[np.arange(5 * K), labels] = 1.0 + 0.1 * rng.uniform(-1.0, 1.0, 5 * K)
    problem = Problem(X, labels, K, "cross_entropy")
    groups = np.arange(2 * K) % K
    shapes = semilocal_shapes(np.random.default_rng(7), X, labels, groups, K)
    params0 = balanced_init(shapes, 1e-150)
    result = solve_flow(
        problem, params0, rtol=1e-2, groups=groups, events=Norm2Above(1e8)
    )
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    clocks = [name for name, _ in result.settings["phases"]]
    assert clocks[0] == "frozen"
    assert clocks[-1] == "norm2"


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_late_tolerance_follows_margin_scale(scale):
    # Two classes around +u and -u with a spread orthogonal to u, two neurons,
    # cross-entropy. With the late directions kept to rtol = 1e-6 alone, the run
    # stopped near R = 1.4e8 (R rtol = 138), where Newton's iteration failed at
    # every step down to 1e-6 R. Keeping R rtol <= 1 / max||x_i|| takes it on.
    # With X scaled by 30 the run stopped near R = 2.6e7 that way, and at
    # R = 9e11 on roundoff where the bound went on below LATE_RTOL_MIN.
    rng = np.random.default_rng(140)
    n, D = 36, 6
    u = rng.standard_normal(D)
    u /= np.linalg.norm(u)
    signs = np.where(np.arange(n) < n // 2, 1.0, -1.0)
    noise = 0.25 * rng.standard_normal((n, D))
    noise -= np.outer(noise @ u, u)
    X = signs[:, None] * u * rng.uniform(1.0, 2.0, n)[:, None] + noise
    problem = Problem(scale * X, (signs < 0).astype(int), 2, "cross_entropy")
    params0 = balanced_init(balanced_shapes(rng, D, 2, 2), 1e-2)

    result = solve_flow(problem, params0, rtol=1e-6, events=Norm2Above(1e12))

    assert result.status == res.STATUS_TERMINAL_EVENT, result.message


@pytest.mark.parametrize("x_max", [0.5, 1.0, 2.0, 60.0])
def test_step_cap_follows_margin_shift(x_max):
    # The larger norm-clock step is allowed while the margin shift that the
    # tolerance allows, R max||x_i|| tol, is at most EARLY_NORM_SHIFT. Where the
    # bound of late_rtol applies, that shift is 1 for any data norm, so the cap
    # must not depend on whether max||x_i|| is above or below 1.
    atol = 1e-12
    for R, growth in (
        (1e9 / x_max, adaptive.EARLY_NORM_STEP),  # R max||x_i|| = 1e9, below 1e10
        # At the floor the shift grows with R, and the cap falls back.
        (1e12 / x_max, adaptive.MAX_NORM_STEP),
    ):
        tol = atol + coordinates.late_rtol(1e-6, R, x_max)
        u = -(R**-0.5)
        cap = adaptive._norm_step_cap(u, R * x_max * tol)
        assert (u + cap) ** -2 == pytest.approx((1 + growth) * R, rel=1e-12)


def test_float32_tolerances_run_as_floats():
    # NumPy 2 keeps a float32 in every sum with Python floats, so a float32
    # rtol reached the crossing search's window and made it empty (a
    # ValueError in the frozen steps). The checks now return Python floats, and
    # the run equals one with the same values given as floats.
    rng = np.random.default_rng(0)
    X = -0.05 * rng.uniform(0.0, 1.0, (12, 3))
    labels = np.repeat(np.arange(3), 4)
    X[np.arange(12), labels] = 1.0 + 0.1 * rng.uniform(-1.0, 1.0, 12)
    problem = Problem(X, labels, 3, "cross_entropy")
    params0 = balanced_init(balanced_shapes(np.random.default_rng(100), 3, 9, 3), 1e-6)
    rtol, atol, t_max = np.float32(1e-6), np.float32(1e-12), np.float32(1e6)
    as_float32 = solve_flow(
        problem, params0, rtol=rtol, atol=atol, t_max=t_max, events=Norm2Above(1e4)
    )
    as_float = solve_flow(
        problem,
        params0,
        rtol=float(rtol),
        atol=float(atol),
        t_max=float(t_max),
        events=Norm2Above(1e4),
    )
    assert as_float32.settings["frozen_steps"] > 0
    assert as_float32.status == as_float.status
    assert as_float32.nfev == as_float.nfev
    assert np.array_equal(as_float32.params.flat(), as_float.params.flat())


def test_slow_explicit_steps_enter_norm_clock():
    # Four classes in R^10 at rtol = 3e-3: from the state where the frozen steps
    # hand over, the explicit steps in tau are held by accuracy, not stability,
    # at about 0.03 in log R each. Without the rule for slow steps they went on
    # to R = 1e8 (480 steps) and never reached the norm clock.
    K, D = 4, 10
    rng = np.random.default_rng(5)
    centres = np.eye(D)[:K] - 0.2 * np.eye(D)[:K].sum(axis=0) / K
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rotation, _ = np.linalg.qr(rng.standard_normal((D, D)))
    noise = 0.005 * rng.standard_normal((K, D)) / math.sqrt(D)
    X = (centres @ rotation + noise) * rng.uniform(0.5, 2.0, (K, 1))
    labels = np.arange(K)
    problem = Problem(X, labels, K, "cross_entropy")
    shapes = semilocal_shapes(rng, X, labels, labels, K)
    W = shapes.W + rng.standard_normal(shapes.W.shape) / math.sqrt(D)
    W /= np.linalg.norm(W, axis=0)
    params0 = balanced_init(Parameters(W, shapes.V), 1e-40)
    result = solve_flow(problem, params0, rtol=3e-3, events=Norm2Above(1e4))
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    clocks = [name for name, _ in result.settings["phases"]]
    assert clocks[:2] == ["frozen", "tau-explicit"]
    assert clocks[-1] == "norm2"


@pytest.mark.parametrize(
    ("three_classes", "fragment"),
    [(False, "method='euler'"), (True, "less its all-ones part")],
    ids=["binary", "cross-entropy all-ones part"],
)
def test_zero_neuron_is_rejected_by_name(three_classes, fragment):
    # The cross-entropy ignores the all-ones part of v_j, so there a neuron with
    # w_j = 0 and v_j = c 1 is zero in the polar coordinates.
    problem, params0 = _three_class() if three_classes else _width_two()
    W, V = params0.W.copy(), params0.V.copy()
    W[:, 1] = 0.0
    V[:, 1] = 0.3 if three_classes else 0.0

    with pytest.raises(InvalidArgument) as error:
        solve_flow(problem, Parameters(W, V), t_max=1.0)
    assert "neuron 1 of params0 is zero" in str(error.value)
    assert fragment in str(error.value)


def _three_class() -> tuple[Problem, Parameters]:
    """One sample per class on the axes of R^3 and one neuron per class."""
    problem = Problem(np.eye(3), np.arange(3), 3, "cross_entropy")
    return problem, Parameters(0.1 * np.eye(3), 0.1 * np.eye(3))


@pytest.mark.parametrize("where", ["argument", "event"])
@pytest.mark.parametrize(
    ("groups", "fragment"),
    [
        (np.array([0, 1, 3]), "groups[2]=3 is not a class; give a class index in 0..2"),
        (np.array([0, -1, 2]), "groups[1]=-1 is not a class"),
        (np.array([0, 1]), "groups has shape (2,); give one class per neuron"),
        (np.array([0.0, 1.0, 2.0]), "groups has dtype float64"),
    ],
    ids=["class-3", "class-minus-1", "too-short", "float"],
)
def test_three_class_groups_are_checked(where, groups, fragment):
    problem, params0 = _three_class()
    if where == "argument":
        kwargs = {"groups": groups}
    else:
        kwargs = {"events": [Separated(groups)]}
    with pytest.raises(InvalidArgument) as error:
        solve_flow(problem, params0, t_max=1.0, **kwargs)
    assert fragment in str(error.value)


@pytest.mark.parametrize("groups", [[0, 1], np.array([0, 1], dtype=np.uint8)])
def test_separated_with_valid_groups_fires(groups):
    problem, params0 = _width_two()
    result = solve_flow(problem, params0, events=[Separated(groups)], t_max=1e6)
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message


def _writable_width_two() -> tuple[Problem, Parameters]:
    """``_width_two`` with every array writable.

    A Problem stores read-only copies, so its arrays are made writable again
    here, as a caller may do, to reach the check that ``solve_flow`` repeats.
    """
    problem, params0 = _width_two()
    for array in (problem.X, problem.labels, problem.signs):
        array.flags.writeable = True
    return problem, Parameters(np.array(params0.W), np.array(params0.V))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("array", "index", "value", "fragment"),
    [
        ("X", (1, 0), math.nan, "problem.X[1, 0] = nan; remove or replace NaN"),
        ("X", (0, 1), math.inf, "problem.X[0, 1] = inf; remove or replace NaN"),
        ("X", 1, 0.0, "problem.X[1] is invalid: the sample is a zero vector"),
        ("signs", 0, math.nan, "problem.signs[0]=nan is invalid"),
        ("labels", 1, 5, "problem.labels[1]=5 is outside 0..1"),
        ("W", (0, 1), math.nan, "params0.W[0, 1] = nan; remove or replace NaN"),
        ("V", (0, 0), -math.inf, "params0.V[0, 0] = -inf; remove or replace NaN"),
    ],
    ids=["X-nan", "X-inf", "X-zero-row", "signs-nan", "labels-5", "W-nan", "V-inf"],
)
def test_array_changed_after_construction_rejected(
    method, array, index, value, fragment
):
    problem, params0 = _writable_width_two()
    arrays = {
        "X": problem.X,
        "signs": problem.signs,
        "labels": problem.labels,
        "W": params0.W,
        "V": params0.V,
    }
    arrays[array][index] = value
    step = 1e-2 if method != "adaptive" else None
    # Warnings become errors here, so the test fails if numpy warns before the
    # check raises.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidArgument) as error:
            solve_flow(problem, params0, method=method, step=step, t_max=1.0)
    assert fragment in str(error.value)


@pytest.mark.parametrize("method", METHODS)
def test_overflowing_initial_outputs_rejected(method):
    problem, params0 = _width_two()
    # Finite weights can have outputs that overflow. The run would start from a
    # non-finite loss, so this is an invalid argument, not a divergence.
    huge = params0.scaled(1e160)
    step = 1e-2 if method != "adaptive" else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidArgument) as error:
            solve_flow(problem, huge, method=method, step=step, t_max=1.0)
    message = str(error.value)
    assert "overflow" in message
    assert "scale params0.W and params0.V down" in message


# --- Result fields and status table ---------------------------------------------------

STATUSES = {
    res.STATUS_END_OF_SPAN: 0,
    res.STATUS_TERMINAL_EVENT: 1,
    res.STATUS_STATIONARY: 2,
    res.STATUS_STEP_FAILURE: -1,
    res.STATUS_SLIDING: -2,
    res.STATUS_BUDGET: -3,
    res.STATUS_NONFINITE: -4,
}


def test_status_table_has_one_message_per_status():
    assert set(STATUS_MESSAGES) == set(STATUSES)
    assert all(code == value for code, value in STATUSES.items())
    messages = list(STATUS_MESSAGES.values())
    assert all(isinstance(text, str) and text for text in messages)
    assert len(set(messages)) == len(messages)


@pytest.mark.parametrize("status", sorted(STATUSES))
def test_success_means_nonnegative_status(status):
    problem, params0 = _width_two()
    result = solve_flow(problem, params0, t_max=1.0)
    changed = dataclasses.replace(result, status=status)
    assert changed.success == (status >= 0)


def _log_loss(problem: Problem, params: Parameters) -> float:
    return loss_terms(outputs(problem, params), problem.targets, problem.loss).log_total


@pytest.mark.parametrize("method", METHODS)
def test_result_fields_describe_the_run(method):
    problem, params0 = _width_two()
    step = 1e-2 if method != "adaptive" else None
    result = solve_flow(problem, params0, method=method, step=step, t_max=1.0)
    assert isinstance(result, FlowResult)
    assert result.status == res.STATUS_END_OF_SPAN
    assert result.success
    assert result.message == STATUS_MESSAGES[result.status]
    assert result.method == method
    assert result.settings["method"] == method
    assert result.params0 is params0
    assert result.problem is problem

    assert result.params.W.shape == params0.W.shape
    assert result.params.V.shape == params0.V.shape
    assert result.norm2 == pytest.approx(result.params.norm2(), rel=16 * EPS)
    # log L is recomputed here from the final parameters; both evaluations sum the
    # same few terms, so they agree to a few roundoffs of |log L| + 1.
    log_loss = _log_loss(problem, result.params)
    assert abs(result.log_loss - log_loss) <= 64 * EPS * (abs(log_loss) + 1)
    assert result.t == pytest.approx(math.exp(result.log_t), rel=16 * EPS)

    assert result.n_accepted >= 1
    assert result.nfev >= result.n_accepted
    assert result.n_rejected >= 0
    assert min(result.njev, result.nlu) >= 0

    trajectory = result.trajectory
    assert trajectory.kind[0] == "start"
    assert trajectory.log_t[0] == -math.inf
    assert np.array_equal(trajectory.W[0], params0.W)
    assert trajectory.kind[-1] == "end"
    assert trajectory.log_t[-1] == result.log_t
    assert np.array_equal(trajectory.W[-1], result.params.W)
    assert np.all(np.diff(trajectory.log_t) >= 0)
    json.dumps(result.summary())


@pytest.mark.parametrize("method", ["euler", "loss_scaled"])
def test_fixed_step_counters_match_step_count(method):
    problem, params0 = _width_two()
    result = solve_flow(problem, params0, method=method, step=1e-2, max_steps=40)
    assert result.status == res.STATUS_BUDGET
    assert result.n_accepted == 40
    assert result.nfev == 40
    assert result.n_rejected == 0


def test_euler_time_is_step_times_count():
    problem, params0 = _width_two()
    steps, eta = 250, 4e-3
    result = solve_flow(problem, params0, method="euler", step=eta, max_steps=steps)
    # t = k eta with one rounding, which log turns into an absolute error of
    # about eps, and log rounds once more.
    assert abs(result.log_t - math.log(steps * eta)) <= 4 * EPS


@pytest.mark.parametrize(
    ("method", "eta", "t_max", "steps"),
    [
        ("euler", 2e-3, 1.0, 500),
        ("euler", 0.3, 1.0, 4),
        ("loss_scaled", 1e-2, 5.0, None),
    ],
)
def test_fixed_step_run_ends_on_t_max(method, eta, t_max, steps):
    # A step that would pass t_max is cut to end on it. Plain Euler counts
    # t = k eta, so 500 steps of 2e-3 do not take a 501st for the roundoff of
    # a running sum.
    problem, params0 = _width_two()
    result = solve_flow(problem, params0, method=method, step=eta, t_max=t_max)
    assert result.status == res.STATUS_END_OF_SPAN
    assert result.log_t == math.log(t_max)
    if steps is not None:
        assert result.n_accepted == steps


@pytest.mark.parametrize("t_max", [2.3e-308, 1e-300, 1e-20, 2e-19, 1e-15])
def test_adaptive_run_ends_on_tiny_t_max(t_max):
    # t_max far inside the first step: the step is cut there. The clock keeps
    # log t to (atol + rtol) max(1, |log t|) per step.
    problem, params0 = _width_two()
    rtol, atol = 1e-6, 1e-12
    result = solve_flow(problem, params0, t_max=t_max, rtol=rtol, atol=atol)
    allowed = (atol + rtol) * max(1.0, abs(math.log(t_max)))
    assert result.status == res.STATUS_END_OF_SPAN
    assert abs(result.log_t - math.log(t_max)) <= allowed


def test_t_max_within_roundoff_ends_span():
    # At rtol = 1e-14 and atol = 0 the binary benchmark run came within 1.8e-16
    # of log t_max = 0 and then took ever smaller steps to land on it, until the
    # clock of a step that left R unchanged raised "math domain error".
    from benchmarks.problems import binary_problem

    case = binary_problem()
    rtol = 1e-14
    result = solve_flow(case.problem, case.params0, t_max=1.0, rtol=rtol, atol=0.0)
    assert result.status == res.STATUS_END_OF_SPAN, result.message
    assert abs(result.log_t) <= rtol


def test_t_near_float64_limit_is_finite():
    # exp(709.2) is 1e308, inside the float64 range, but t read inf for
    # every log t above 709.
    problem, params0 = _width_two()
    result = solve_flow(problem, params0, t_max=1e308, rtol=1e-6, atol=1e-12)
    assert result.status == res.STATUS_END_OF_SPAN, result.message
    assert result.t == pytest.approx(1e308, rel=1e-3)
    assert result.summary()["t"] == pytest.approx(1e308, rel=1e-3)


def _lone_sample_problem(n: int, D: int, h: int, seed: int):
    """Return ``n`` samples in a cone of half-angle 0.05 rad around an axis as
    class 0, one sample on the opposite axis as class 1, and a balanced start."""
    rng = np.random.default_rng(seed)
    axis = np.linalg.qr(rng.standard_normal((D, D)))[0][:, 0]
    spread = rng.standard_normal((n, D))
    spread -= np.outer(spread @ axis, axis)
    spread /= np.linalg.norm(spread, axis=1, keepdims=True)
    angles = 0.05 * rng.uniform(size=(n, 1))
    X = np.cos(angles) * axis + np.sin(angles) * spread
    X *= rng.uniform(0.9, 1.1, size=(n, 1))
    problem = Problem(np.vstack([X, -axis]), np.array([0] * n + [1]), 2, "exponential")
    return problem, balanced_init(balanced_shapes(rng, D, h, 1), 1e-6)


def test_crossing_landings_are_not_stall(monkeypatch):
    # In the norm clock a neuron turning through a narrow cone of samples lands
    # on them one by one, each step as short as the next change is near. Those
    # steps counted towards STALL_STEPS, and a run with 500 samples in the cone
    # stopped at ||theta||^2 = 15 as "limited by roundoff". Three in a row
    # stop this smaller run the same way.
    monkeypatch.setattr(adaptive, "STALL_STEPS", 3)
    problem, params0 = _lone_sample_problem(100, 4, 8, seed=3)
    result = solve_flow(problem, params0, rtol=1e-6, events=[Norm2Above(1e8)])
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    assert len(result.activation_events) > 100


def test_stall_names_a_class_without_neuron():
    # One neuron with v > 0: nothing can fit class 1, whose samples stay
    # misclassified until the flow stops moving in tau. The message blamed
    # only float64 resolution.
    X = np.array([[1.0, 0.1], [0.9, -0.2], [-1.0, 0.2], [-0.8, -0.1]])
    problem = Problem(X, np.array([0, 0, 1, 1]), 2, "exponential")
    params0 = Parameters(np.array([[6e-4], [0.0]]), np.array([[6e-4]]))
    result = solve_flow(problem, params0, rtol=1e-6, events=[Norm2Above(1e8)])
    assert result.status == res.STATUS_STEP_FAILURE
    assert "class 1 has no neuron of its own" in result.message


def _far_from_small(scale: float) -> tuple[Problem, Parameters]:
    """Two orthogonal samples, one neuron on each with the right output sign,
    at ``scale``: the loss is about exp(-scale^2), so N and the flow's speed
    are of that order."""
    problem = Problem(np.eye(2), np.array([0, 1]), 2, "exponential")
    return problem, Parameters(scale * np.eye(2), scale * np.array([[1.0, -1.0]]))


def test_unreachable_t_max_keeps_start():
    # At scale 30, dt/dtau = 1/N is about exp(899), so t_max = 1 lies at a
    # fraction of about exp(-899) of the first step: below any float64 step
    # size. The state moves by less than its rounding up to t_max.
    problem, params0 = _far_from_small(30.0)
    result = solve_flow(problem, params0, t_max=1.0)
    assert result.status == res.STATUS_END_OF_SPAN, result.message
    assert result.log_t == 0.0
    # The result went through the polar state and back: a log, an exp, a
    # norm and a division, each within an eps or two of the entry's neuron.
    for got, start in ((result.params.W, params0.W), (result.params.V, params0.V)):
        assert np.max(np.abs(got - start)) <= 8 * EPS * np.max(np.abs(start))


def test_record_grid_starts_at_tiny_float():
    # Misclassified samples at scale 1e4 make log N about 1e8. The grid still
    # starts at one hundredth of 1/N, but no earlier than the smallest normal
    # float64 t, and so reaches t = 1 in finitely many records.
    problem = Problem(np.eye(2), np.array([0, 1]), 2, "exponential")
    params0 = Parameters(1e4 * np.eye(2), 1e4 * np.array([[-1.0, 1.0]]))
    result = solve_flow(problem, params0, t_max=1.0, rtol=1e-6)
    assert result.status == res.STATUS_END_OF_SPAN, result.message
    grid = result.trajectory.select("grid").log_t
    assert grid[0] >= adaptive.LOG_T_GRID_FLOOR
    assert np.all(np.diff(grid) > 0)
    # Eight records per decade of t from 2.2e-308 to 1, and the end.
    decades = -adaptive.LOG_T_GRID_FLOOR / math.log(10.0)
    assert len(grid) <= 8 * decades + 2


@pytest.mark.parametrize("target", [-700.0, -300.0, -40.0])
def test_early_record_grid_is_geometric(target):
    # Below RECORD_LINEAR_BELOW the grid steps log t by log(ratio) instead of
    # forming log(1 + t), which exp(target) would underflow. Against the
    # exact grid step, log(expm1(ratio log1p(t))), in 60 digits:
    flow = adaptive.AdaptiveFlow.__new__(adaptive.AdaptiveFlow)
    flow.record_ratio = 10.0 ** (1.0 / 8)
    flow.next_record = target
    flow._advance_record_time()
    with decimal.localcontext() as context:
        context.prec = 60
        t = decimal.Decimal(target).exp()
        ratio = decimal.Decimal(flow.record_ratio)
        # log1p and expm1 by their series: t < 1e-17, so four terms leave
        # an error below t^4, far below 60 digits of t.
        ell = ratio * (t - t**2 / 2 + t**3 / 3 - t**4 / 4)
        exact = float((ell + ell**2 / 2 + ell**3 / 6 + ell**4 / 24).ln())
    assert abs(flow.next_record - exact) <= 4 * EPS * abs(target)


@pytest.mark.parametrize("t_max", [5e-324, 1e-320])
def test_adaptive_rejects_subnormal_t_max(t_max):
    problem, params0 = _width_two()
    with pytest.raises(InvalidArgument, match="smallest normal float64"):
        solve_flow(problem, params0, t_max=t_max)


def test_shortened_last_step_takes_that_fraction():
    # One step of 1.0 cut to t_max = 0.25 is one Euler step of 0.25.
    problem, params0 = _width_two()
    cut = solve_flow(problem, params0, method="euler", step=1.0, t_max=0.25)
    whole = solve_flow(problem, params0, method="euler", step=0.25, max_steps=1)
    assert cut.n_accepted == 1
    assert np.array_equal(cut.params.W, whole.params.W)
    assert np.array_equal(cut.params.V, whole.params.V)


def test_loss_scaled_huge_steps_end_on_t_max():
    # Late loss-scaled steps eta / L exceed 1e308; the end is still found.
    problem, params0 = _width_two()
    result = solve_flow(problem, params0, method="loss_scaled", step=1.0, t_max=1e200)
    assert result.status == res.STATUS_END_OF_SPAN
    assert result.log_t == math.log(1e200)


# --- Failure and stopping modes -------------------------------------------------------


def _tie_problem() -> tuple[Problem, Parameters]:
    """Two copies of x = (1, 0) with opposite labels, linear activation, one neuron.

    The loss exp(-f) + exp(f) with f = w_1 v is minimal at f = 0, so gradient descent
    with a large step overshoots further at each step and diverges.
    """
    X = np.array([[1.0, 0.0], [1.0, 0.0]])
    problem = Problem(X, np.array([0, 1]), 2, "exponential", activation="linear")
    return problem, Parameters(np.array([[0.5], [0.0]]), np.array([[0.5]]))


def _tie_iterates(step: float, params0: Parameters) -> list[tuple[float, float]]:
    """Finite iterates ``(w_1, v)`` of gradient descent on the tie problem.

    ``dL/dw_1 = v (exp(f) - exp(-f))`` and ``dL/dv = w_1 (exp(f) - exp(-f))``.
    """
    w, v = float(params0.W[0, 0]), float(params0.V[0, 0])
    iterates = [(w, v)]
    with np.errstate(over="ignore", invalid="ignore"):
        while True:
            f = w * v
            slope = np.exp(f) - np.exp(-f)
            w, v = w - step * v * slope, v - step * w * slope
            if not (np.isfinite(w) and np.isfinite(v)):
                return iterates
            iterates.append((float(w), float(v)))


def test_divergent_euler_step_warns_nothing():
    # The integrator reports an overflow inside the run by its status, so no
    # numpy warning may reach the caller.
    problem, params0 = _tie_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = solve_flow(problem, params0, method="euler", step=10.0, max_steps=100)
    assert result.status == res.STATUS_NONFINITE


def test_divergent_euler_step_keeps_last_finite_iterate():
    problem, params0 = _tie_problem()
    step = 10.0
    result = solve_flow(problem, params0, method="euler", step=step, max_steps=100)
    assert result.status == res.STATUS_NONFINITE
    assert not result.success
    assert result.message.startswith(STATUS_MESSAGES[res.STATUS_NONFINITE])
    assert "reduce the step" in result.message

    iterates = _tie_iterates(step, params0)
    assert result.n_accepted == len(iterates) - 1
    w, v = iterates[-1]
    assert np.all(np.isfinite(result.params.flat()))
    # Both computations apply the same three float64 operations per entry.
    assert result.params.W[0, 0] == pytest.approx(w, rel=8 * EPS)
    assert result.params.V[0, 0] == pytest.approx(v, rel=8 * EPS)
    assert result.params.W[1, 0] == 0.0


def test_linear_activation_runs_without_events():
    problem, params0 = _width_two()
    linear = Problem(
        problem.X, problem.labels, 2, problem.loss, "linear", signs=problem.signs
    )
    result = solve_flow(linear, params0, t_max=5.0)
    assert result.status == res.STATUS_END_OF_SPAN, result.message
    assert result.activation_events == []
    assert np.all(result.trajectory.patterns)


def _dead_parameters(orthogonal: bool) -> tuple[Problem, Parameters]:
    """Data in the plane x_3 = 0 and two neurons inactive on every sample.

    ``orthogonal``: both w_j along -e_3, so every pre-activation is exactly 0.0,
    which is inactive under relu'(0) = 0 and gets no gradient. Otherwise the w_j lie
    in the plane with negative inner product with every sample.
    """
    X = np.array([[2.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    problem = Problem(X, np.array([0, 1]), 2, "exponential")
    if orthogonal:
        W = np.array([[0.0, 0.0], [0.0, 0.0], [-0.1, -0.2]])
    else:
        W = 0.1 * np.array([[-1.0, -1.0], [1.5, 1.2], [0.0, 0.0]])
    V = np.array([[0.1, -0.1]])
    return problem, Parameters(W, V)


@pytest.mark.parametrize("orthogonal", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_dead_network_stops_as_stationary(method, orthogonal):
    problem, params0 = _dead_parameters(orthogonal)
    assert np.all(problem.X @ params0.W <= 0)
    step = 1e-2 if method != "adaptive" else None
    result = solve_flow(problem, params0, method=method, step=step, t_max=1.0)
    assert result.status == res.STATUS_STATIONARY, result.message
    assert result.success
    # No neuron receives a gradient, so nothing moves. The fixed-step methods
    # subtract exact zeros; the adaptive method converts to polar coordinates
    # (log-norm and unit direction) and back, a few roundoffs of each neuron's norm.
    theta_norms = np.sqrt(np.sum(params0.W**2, axis=0) + np.sum(params0.V**2, axis=0))
    tol = 0.0 if method != "adaptive" else 8 * EPS * theta_norms
    assert np.all(np.abs(result.params.W - params0.W) <= tol)
    assert np.all(np.abs(result.params.V - params0.V) <= tol)


@pytest.mark.parametrize("method", METHODS)
def test_step_budget_ends_with_budget_status(method):
    problem, params0 = _width_two()
    step = 1e-3 if method != "adaptive" else None
    result = solve_flow(
        problem,
        params0,
        method=method,
        step=step,
        events=[Norm2Above(1e8)],
        max_steps=3,
    )
    assert result.status == res.STATUS_BUDGET
    assert not result.success
    assert result.message.startswith(STATUS_MESSAGES[res.STATUS_BUDGET])
    assert "max_steps=3" in result.message
    assert result.n_accepted + result.n_rejected == 3


def test_unmet_rtol_fails_with_time_step_and_reason(monkeypatch):
    # A minimum step of 0.1 (in tau, relative) makes the first rejection near an
    # activation change at rtol=1e-12 end the run, the path taken whenever the step
    # that rtol needs is below the minimum.
    monkeypatch.setattr(adaptive, "MIN_STEP", 0.1)
    X = np.array([[1.0, 0.2], [0.8, -0.5], [-1.0, 0.1], [-0.7, -0.6]])
    problem = Problem(X, np.array([0, 0, 1, 1]), 2, "exponential")
    W = 1e-2 * np.array([[0.6, 0.9, -0.8, 0.2], [0.8, -0.4, 0.6, -1.0]])
    V = 1e-2 * np.array([[1.0, 1.0, -1.0, -1.0]])
    params0 = Parameters(W, V)
    result = solve_flow(
        problem, params0, rtol=1e-12, atol=0.0, events=[Norm2Above(1e8)]
    )
    assert result.status == res.STATUS_STEP_FAILURE, result.message
    assert not result.success
    assert result.message.startswith(STATUS_MESSAGES[res.STATUS_STEP_FAILURE])
    assert f"at log t = {result.log_t:.6g}" in result.message
    assert "step " in result.message
    assert "times the tolerance" in result.message
    # The run ends at the last accepted state, which is finite and recorded.
    assert np.all(np.isfinite(result.params.flat()))
    assert result.trajectory.kind[-1] == "end"
    assert result.trajectory.log_t[-1] == result.log_t


def test_norm_clock_minimum_step_relative_to_R(monkeypatch):
    # NORM_CLOCK_MIN is 1, so no run enters the norm clock at a small R. Allowed
    # from ||theta||^2 = 1e-100 on, this run from eps = 1e-10 enters it at about
    # 1e-14, where steps in R are of order R itself. A minimum step of 1e-13 in
    # absolute terms ended the run there at rtol=1e-7; relative to R it does not.
    monkeypatch.setattr(adaptive, "NORM_CLOCK_MIN", 1e-100)
    # Frozen-gradient steps would carry the run past R = 1e-14 before the
    # norm clock starts.
    monkeypatch.setattr(adaptive, "FROZEN_STEPS", False)
    alpha = 1e-5
    angles = np.array([0.0, alpha, alpha, math.pi + 0.3])
    X = np.column_stack([np.cos(angles), np.sin(angles)])
    problem = Problem(X, np.array([0, 0, 0, 1]), 2, "exponential")
    neurons = np.array([alpha / 2, math.pi + 0.3])
    W = 0.5e-10 * np.vstack([np.cos(neurons), np.sin(neurons)])
    V = 0.5e-10 * np.array([[1.0, -1.0]])
    result = solve_flow(
        problem, Parameters(W, V), rtol=1e-7, atol=1e-12, events=[Norm2Above(1.0)]
    )
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    # In the norm clock R is the independent variable, so the event sits at
    # R = 1 exactly; the reported norm is summed again from the m parameters,
    # each exp(sigma_j) times a direction entry and squared (about 5 roundoffs),
    # then added up (m - 1 more).
    m = W.size + V.size
    assert result.norm2 >= 1.0 - (m + 5) * np.finfo(float).eps


@pytest.mark.parametrize(
    "event, quantity",
    [(Norm2Above(1e-12), "||theta(0)||^2 = 0.0156"), (LossBelow(1e6), "L(0) = 1.99")],
)
def test_event_past_at_start_warns(event, quantity):
    # ||theta(0)||^2 is about 2e-2 and L(0) about 2 (two samples at outputs near
    # 0), so both thresholds lie behind the initial value: the event can only fire
    # after the flow comes back across it. The warning gives the quantity, not
    # the event's value (a log of its ratio to the threshold).
    problem, params0 = _width_two()
    with pytest.warns(NcflowWarning, match=r"events\[0\]=.* is already past") as caught:
        solve_flow(problem, params0, events=[event], max_steps=2)
    assert quantity in str(caught[0].message)


@pytest.mark.parametrize("target", [4.12e4, 3.46e5, 1e6])
def test_events_at_one_root_both_fire(target):
    # The search lands on the first event's root, within the tolerance. A second
    # event whose root lies between that root and the landing point starts the
    # next step past 0, so it was never counted: these runs fired it on none of
    # the three targets.
    from tests.flow.test_accuracy import PROBLEMS

    problem, params0 = PROBLEMS["binary"]()
    events = [
        Norm2Above(target, terminal=False),
        Norm2Above(target * (1 + 1e-14), terminal=False),
        Norm2Above(10 * target),
    ]
    result = solve_flow(problem, params0, rtol=1e-6, events=events)
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    first, second, _ = result.t_events
    assert len(first) == 1
    assert len(second) == 1
    assert second[0] == first[0]


@pytest.mark.parametrize(
    ("rtol", "target", "gap"),
    [(1e-3, 0.3, 0.0), (1e-3, 3.0, 1e-14), (1e-4, 1.0, 0.0), (1e-4, 30.0, 1e-14)],
)
def test_events_at_one_root_fire_once(rtol, target, gap):
    # The step taken to an event's root may end short of it, within the
    # tolerance. The landing of the second event then read the first one's
    # value there again, the flow crossed the root once more, and the first
    # event fired twice on each of these runs.
    from tests.flow.test_accuracy import PROBLEMS

    problem, params0 = PROBLEMS["binary"]()
    events = [
        Norm2Above(target, terminal=False),
        Norm2Above(target * (1 + gap), terminal=False),
        Norm2Above(10 * target),
    ]
    result = solve_flow(problem, params0, rtol=rtol, events=events)
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    first, second, _ = result.t_events
    assert len(first) == 1
    assert len(second) == 1
    assert second[0] == first[0]


def _log_loss(problem: Problem, params: Parameters) -> float:
    """``log L`` as the events read it."""
    return FlowState(problem, params, 0.0, None).log_loss


@pytest.mark.parametrize("method", ["adaptive", "euler"])
def test_params_events_are_firing_states(method):
    # params_events[k][m] is theta where event k fired for the m-th time, on
    # the far side of its root. The norm there is at or above the target, up
    # to the float64 roundoff of the norm (4 eps relative), and the loss is at
    # or below its level.
    from tests.flow.test_accuracy import PROBLEMS

    problem, params0 = PROBLEMS["binary"]()
    level = 0.5 * float(np.exp(_log_loss(problem, params0)))
    events = [LossBelow(level, terminal=False), Norm2Above(3.0, terminal=False)]
    events.append(Norm2Above(30.0))
    options = {"rtol": 1e-6} if method == "adaptive" else {"step": 1e-2}
    result = solve_flow(problem, params0, method=method, events=events, **options)
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    assert [len(p) for p in result.params_events] == [len(t) for t in result.t_events]
    assert [len(t) for t in result.t_events] == [1, 1, 1]
    (below,), (above,), (last,) = result.params_events
    assert _log_loss(problem, below) <= math.log(level)
    assert above.norm2() >= 3.0 * (1 - 4 * np.finfo(float).eps)
    assert last.norm2() >= 30.0 * (1 - 4 * np.finfo(float).eps)
    np.testing.assert_array_equal(last.W, result.params.W)
    np.testing.assert_array_equal(last.V, result.params.V)


def test_event_ahead_at_start_does_not_warn():
    problem, params0 = _width_two()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NcflowWarning)
        solve_flow(problem, params0, events=[Norm2Above(1e8)], max_steps=2)


def test_noise_floor_message_states_rtol_met():
    # Two samples 1e-3 rad apart. Runs from eps = 1e-12 to 1e-8 at rtol = 1e-6 to
    # 1e-10 stop the Newton iteration of some Radau step at its roundoff floor, at
    # 6e-4 to 2.4e-3 of the tolerance: 7 of the 12 runs below did. Which runs do
    # depends on roundoff, so several are made, and at least one must show it.
    # With the norm clock in R, runs to R = 1e8 reached it at up to 0.83 of the
    # tolerance. In the clock u none of those do.
    # Every such message must state that the floor stayed below the tolerance,
    # not read as a loss of accuracy.
    angles = np.array([0.0, 1e-3, 1e-3, math.pi + 0.3])
    X = np.column_stack([np.cos(angles), np.sin(angles)])
    problem = Problem(X, np.array([0, 0, 0, 1]), 2, "exponential")
    neurons = np.array([0.5e-3, math.pi + 0.3, 1.0])
    floors = 0
    for eps in (1e-12, 1e-10, 1e-9, 1e-8):
        for rtol in (1e-6, 1e-8, 1e-10):
            W = 0.5 * eps * np.vstack([np.cos(neurons), np.sin(neurons)])
            V = 0.5 * eps * np.array([[1.0, -1.0, 1.0]])
            result = solve_flow(
                problem,
                Parameters(W, V),
                rtol=rtol,
                atol=1e-14,
                events=[Norm2Above(1e12)],
            )
            assert result.status == res.STATUS_TERMINAL_EVENT, result.message
            assert "not rtol, bounds the error" not in result.message
            if "on its float64 noise floor" in result.message:
                floors += 1
                assert "so rtol was still met" in result.message
    assert floors >= 1


_FIRST_CALL_SCRIPT = """
import numpy as np
from ncflow.flow import Norm2Above, solve_flow
from ncflow.init import balanced_init, balanced_shapes, semilocal_shapes
from ncflow.network import Problem
X = np.array([[1.0, 0.3, 0, 0], [0.8, 0.5, 0, 0], [1.0, 0.1, 0, 0],
              [0, 0, 1.0, 0.2], [0, 0, 0.6, 0.9]])
problem = Problem(X, np.array([0, 0, 0, 1, 1]), 2, "exponential")
params = balanced_init(balanced_shapes(np.random.default_rng(0), 4, 6, 1), 1e-3)
runs = [solve_flow(problem, params, events=Norm2Above(1e6)) for _ in range(2)]
print(runs[0].log_t == runs[1].log_t and
      bool(np.array_equal(runs[0].params.W, runs[1].params.W)))
"""


def test_first_call_matches_later_calls():
    # The BLAS thread limit applies only to the libraries loaded when it is set.
    # The first call of a process loads SciPy's, so it must do so before the
    # limit, or it runs on several threads (with two cores or more) and its
    # reductions may end in a different last bit. The test needs a fresh
    # process without the thread variables that conftest.py sets, because a
    # user's shell does not set them.
    import os
    import subprocess
    import sys

    threads = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {key: value for key, value in os.environ.items() if key not in threads}
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=env,
    )
    assert done.stdout.strip() == "True", done.stderr


def test_separated_uses_run_groups():
    # With the default groups (by argmax v_j0) this start never separates. With
    # the groups given to solve_flow it does, so an event without groups of its
    # own must fire there.
    X = np.array(
        [
            [1.0, 0.3, 0, 0, 0, 0],
            [0.7, 0.6, 0, 0, 0, 0],
            [0, 0, 1.0, 0.2, 0, 0],
            [0, 0, 0.5, 0.9, 0, 0],
            [0, 0, 0, 0, 1.0, 0.4],
            [0, 0, 0, 0, 0.3, 1.0],
        ]
    )
    problem = Problem(X, np.array([0, 0, 1, 1, 2, 2]), 3, "cross_entropy")
    params0 = balanced_init(balanced_shapes(np.random.default_rng(0), 6, 9, 3), 1e-3)
    groups = np.array([0, 1, 2, 1, 2, 2, 0, 2, 2])
    assert not np.array_equal(groups, default_groups(problem, params0.V))
    result = solve_flow(
        problem, params0, events=[Separated(), Norm2Above(1e6)], groups=groups
    )
    assert result.separation_log_t is not None
    assert result.fired == [0]
    assert result.t_events[0][0] == result.separation_log_t


# With D = 1 a boundary of neuron j is w_j = 0 for every sample at once, so a
# crossing projects w_j onto 0. In D = 2 the same happens where w_j passes through
# 0, or where the samples lie on one line and w_j keeps only a part orthogonal to
# it. Each case has a direction u with y_i <x_i, u> > 0 for every sample, so under
# the exponential loss <dw_j/dt, u> has the sign of v_j whichever side is active.
# A neuron with sign(<w_j, u>) != sign(v_j) therefore moves through the boundary
# and grows on the other side, and every neuron ends with sign(<w_j, u>) = sign(v_j).
# A neuron left on the boundary, with no field once every pair is inactive, fails.
_LINE = np.array([[1.0], [1.5], [0.7], [-1.2], [-0.6], [-2.0]])
_LINE_W = np.array([[0.2, -0.3, 0.8, -0.5]])  # neurons 0 and 1 on the wrong side
_LINE_V = np.array([[-1.0, 0.9, 0.9, -0.6]])
_CROSSING_CASES = {
    "one input": (_LINE, _LINE_W, _LINE_V, [1.0], {0, 1}),
    # A second input that no sample uses: w_j keeps its tiny second entry.
    "unused input": (
        np.hstack([_LINE, np.zeros((6, 1))]),
        np.vstack([_LINE_W, np.full((1, 4), 1e-20)]),
        _LINE_V,
        [1.0, 0.0],
        {0, 1},
    ),
    # Samples +-e_1, +-e_2; neuron 0 moves down the diagonal through w_0 = 0.
    "through zero": (
        np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]),
        np.array([[0.2, 0.5, -0.4], [0.2, 0.5, -0.4]]),
        np.array([[-0.9, 0.5, -0.4]]),
        [1.0, 1.0],
        {0},
    ),
}


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("case", sorted(_CROSSING_CASES))
def test_neurons_cross_boundary_without_field(monkeypatch, case, frozen):
    monkeypatch.setattr(adaptive, "FROZEN_STEPS", frozen)
    X, W, V, u, expected = _CROSSING_CASES[case]
    half = len(X) // 2
    problem = Problem(X, np.repeat([0, 1], half), 2, "exponential")
    params0 = Parameters(1e-3 * W, 1e-3 * V)

    result = solve_flow(problem, params0, rtol=1e-8, atol=1e-12, t_max=1e3)

    assert result.status == res.STATUS_END_OF_SPAN, result.message
    crossed = {j for event in result.activation_events for _, j, _ in event.pairs}
    assert crossed == expected
    W1, V1 = result.params.W, result.params.V[0]
    assert np.all(np.sign(np.asarray(u) @ W1) == np.sign(V1)), (W1, V1)
    residuals = [event.residual for event in result.activation_events]
    assert max(residuals) <= 1e-8

    # C1: c_j = ||v_j||^2 - ||w_j||^2 is conserved through the crossings. Each
    # accepted step errs by at most delta = atol + rtol in sigma_j and in each of
    # the D + 1 entries of the unit omega_j (by its error estimate), and each
    # projection onto a boundary moves omega_j by its residual. Either changes c_j
    # by at most 2 delta (1 + sqrt(D + 1)) ||theta_j||^2, and the changes add up.
    # ||theta_j||^2 falls before a crossing and grows 1e7-fold after it, so its
    # largest record bounds it over the run.
    delta = max(1e-8 + 1e-12, max(residuals))
    count = result.n_accepted + len(residuals)
    trajectory = result.trajectory
    records2 = np.sum(trajectory.W**2, axis=1) + np.sum(trajectory.V**2, axis=1)
    norm2 = records2.max(axis=0)
    size = problem.D + 1
    tol = (2 * delta * (1 + math.sqrt(size)) * count + size * EPS) * norm2
    balance0 = 1e-6 * (V[0] ** 2 - np.sum(W**2, axis=0))
    drift = np.abs((V1**2 - np.sum(W1**2, axis=0)) - balance0)
    assert np.all(drift <= tol), (drift, tol)


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize(
    "X, W",
    [
        (np.array([[1.0], [2.0]]), np.array([[0.0]])),
        (np.array([[1.0, 0.2], [2.0, 0.1]]), np.array([[0.0], [0.0]])),
    ],
)
def test_neuron_starting_at_zero_stays(monkeypatch, X, W, frozen):
    # With relu'(0) = 0 a neuron with w_j = 0 has no gradient, so the flow keeps it
    # at theta_j(0): it did not arrive there, and no crossing continues it.
    monkeypatch.setattr(adaptive, "FROZEN_STEPS", frozen)
    problem = Problem(X, np.array([0, 1]), 2, "exponential")
    params0 = Parameters(W, np.array([[-0.1]]))

    result = solve_flow(problem, params0, rtol=1e-8, atol=1e-12, t_max=10.0)

    assert result.status == res.STATUS_STATIONARY, result.message
    assert result.activation_events == []
    assert np.all(result.params.W == 0.0)


# Each method of solve_flow with the options it needs.
EVERY_METHOD = [
    ("adaptive", {}),
    ("euler", {"step": 0.1}),
    ("loss_scaled", {"step": 0.1}),
]


@pytest.mark.parametrize("method, options", EVERY_METHOD)
def test_all_inactive_start_stops_at_zero(method, options):
    # No pair is active, so every gradient is 0: each method reports rest at
    # t = 0 without taking a step.
    problem = Problem(np.array([[1.0], [2.0]]), np.array([0, 1]), 2, "exponential")
    params0 = Parameters(np.array([[-1.0, -0.5]]), np.array([[0.3, -0.2]]))
    result = solve_flow(problem, params0, method=method, t_max=10.0, **options)
    assert result.status == res.STATUS_STATIONARY, result.message
    assert result.log_t == -math.inf
    assert result.n_accepted == 0
    assert np.array_equal(result.params.W, params0.W)


def _separated_start() -> tuple[Problem, Parameters]:
    """Two classes on orthogonal axes, one neuron on each class's sample."""
    problem = Problem(np.eye(2), np.array([0, 1]), 2, "exponential")
    params0 = Parameters(1e-4 * np.eye(2), 1e-4 * np.array([[1.0, -1.0]]))
    return problem, params0


@pytest.mark.parametrize("method, options", EVERY_METHOD)
def test_separated_start_fires_at_zero(method, options):
    # Each method fires Separated at log t = -inf when the start is already
    # separated, and the terminal event ends the run there.
    problem, params0 = _separated_start()
    result = solve_flow(
        problem, params0, method=method, t_max=10.0, events=[Separated()], **options
    )
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    assert result.fired == [0]
    assert list(result.t_events[0]) == [-math.inf]
    assert result.separation_log_t == -math.inf


def _orthant_classes(scale: float = 1.0) -> tuple[Problem, Parameters]:
    """Two classes in orthogonal quadrants of R^4 and a Gaussian balanced start:
    its neurons start active on both classes, and the flow turns some pairs off
    before separation."""
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(6, 4))) * np.repeat([[1, 1, 0, 0], [0, 0, 1, 1]], 3, 0)
    problem = Problem(scale * X, np.repeat([0, 1], 3), 2, "exponential")
    params0 = balanced_init(balanced_shapes(np.random.default_rng(1), 4, 6, 1), 1e-4)
    return problem, params0


@pytest.mark.parametrize("method", ["euler", "loss_scaled"])
def test_norm_overflow_stops_fixed_steps(method):
    # With X scaled by 1e100 the weights after a step or two are finite but
    # their squares sum past the float64 range. The run must end on that state,
    # as on one whose outputs overflow, not run on with inf records (it took
    # 40002 steps to t_max, with a finite log L).
    problem, params0 = _orthant_classes(1e100)
    result = solve_flow(problem, params0, method=method, step=1e-2, t_max=100.0)
    assert result.status == res.STATUS_NONFINITE, result.message
    assert result.n_accepted <= 3
    # Only the final state may have an infinite ||theta||^2 (recorded on the
    # grid and at the end).
    trajectory = result.trajectory
    overflowed = ~np.isfinite(trajectory.norm2)
    assert np.all(trajectory.log_t[overflowed] == result.log_t)
    step_text = "of eta / L, eta = 0.01" if method == "loss_scaled" else "of size 0.01"
    assert step_text in result.message


def test_huge_outputs_failure_names_them():
    # With X scaled by 1e30 the start's outputs are about 1e22 in size, and the
    # first step's error estimate is inf. The message names the output size.
    problem, params0 = _orthant_classes(1e30)
    result = solve_flow(problem, params0, t_max=100.0)
    assert result.status == res.STATUS_STEP_FAILURE, result.message
    assert "with outputs up to" in result.message
    assert "rescale X or the initial weights" in result.message


@pytest.mark.parametrize("record_events", [True, False])
def test_adaptive_follows_record_events(record_events):
    problem, params0 = _orthant_classes()
    result = solve_flow(
        problem,
        params0,
        events=Norm2Above(1e3),
        record_events=record_events,
    )
    kinds = set(result.trajectory.kind)
    assert result.activation_events
    assert ("event" in kinds) == record_events


def test_decaying_network_comes_to_rest():
    # Each neuron is active on the other class's sample only, so every margin is
    # negative and the network shrinks towards theta = 0 for good. The polar
    # coordinates would follow that decay without end, so the run must stop at rest
    # once ||theta||^2 is far below the float64 range, well within the budget.
    problem = Problem(np.array([[1.0], [-2.0]]), np.array([0, 1]), 2, "exponential")
    params0 = Parameters(np.array([[-1e-3, 1e-3]]), np.array([[1e-3, -1e-3]]))
    result = solve_flow(problem, params0, events=Norm2Above(1.0), max_steps=5000)
    assert result.status == res.STATUS_STATIONARY, result.message
    assert "decays to theta = 0" in result.message
    assert np.all(result.params.W == 0.0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"events": "loss"}, "events='loss' is invalid"),
        ({"events": 5}, "events=5 is invalid"),
        ({"events": [1]}, "events[0]=1 is not callable"),
        (
            {"method": "euler", "step": 0.1, "progress": 5},
            "progress=5 is not callable",
        ),
    ],
)
def test_invalid_events_and_progress_rejected(options, message):
    # A string was read one character at a time ("events[0]='l' is not
    # callable"), and a progress that is not callable failed with a bare
    # TypeError at the first step.
    problem = Problem(np.array([[1.0], [-2.0]]), np.array([0, 1]), 2, "exponential")
    params0 = Parameters(np.array([[1e-3, -1e-3]]), np.array([[1e-3, -1e-3]]))
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        solve_flow(problem, params0, t_max=1.0, **options)


def test_newton_from_zero_start_meets_tolerance(monkeypatch):
    # After an activation change a Radau step has no previous step to start its
    # Newton iteration from, so it starts from Z = 0. The first correction is
    # then the whole step (the clock variable alone moves by about 1e7
    # tolerances), and its ratio to the second stopped the iteration as
    # converged while it was 5 tolerances from its solution. Every step is
    # compared here with its collocation solution, solved again to 1e-6 of the
    # tolerance from the step's own stages; the iteration stops once its
    # predicted remaining correction is NEWTON_TOLERANCE, so a stop 1 tolerance
    # away is far outside what a converging iteration leaves.
    X = np.array(
        [
            [1.4642252868587216, 1.037739567852123],
            [-0.6198431168240404, -0.5304187431648717],
            [1.0567156015999442, -0.13395334400530506],
            [-1.5287514897496501, -0.33476634467847294],
            [1.0367382762174548, -1.274658503322918],
        ]
    )
    W = np.array(
        [
            [-0.0235608336043979, 0.00462742643576029, -0.02853123573938711,
             0.00423285106509198, -0.00952121536879448, -0.00037594686245639],
            [0.08373477998672706, -0.01475996093758044, 0.03045762359858041,
             -0.0408600044039573, 0.01678569513615037, 0.02986926984108102],
        ]
    )  # fmt: skip
    V = np.array(
        [
            [
                0.08698635674380041,
                -0.01546833935163286,
                0.04173365845560729,
                0.04107866828453255,
                0.01929800775475931,
                -0.02987163565797332,
            ]
        ]
    )
    problem = Problem(X, np.array([0, 1, 0, 1, 0]), 2, "logistic")
    worst = []
    original = adaptive.radau_step

    def checked(rhs, y0, f0, jacobian, size, scale, guess=None, **options):
        step, nfev = original(rhs, y0, f0, jacobian, size, scale, guess, **options)
        if np.all(np.isfinite(step.y1)):
            stages = step.interpolate(radau.C_NODES) - y0
            exact, _ = original(
                rhs, y0, f0, jacobian, size, 1e-6 * scale, stages, **options
            )
            if np.all(np.isfinite(exact.y1)):
                worst.append(float(np.max(np.abs(step.y1 - exact.y1) / scale)))
        return step, nfev

    monkeypatch.setattr(adaptive, "radau_step", checked)
    result = solve_flow(
        problem, Parameters(W, V), rtol=9.454134252888853e-09, events=[Norm2Above(1450)]
    )
    assert result.status == res.STATUS_TERMINAL_EVENT, result.message
    assert worst
    assert max(worst) <= 1.0
