"""Exact frozen-gradient steps of the plateau (``ncflow/flow/frozen.py``).

The closed-form solution is compared with a matrix exponential, the
crossing searches with roots known by construction or found by a dense scan,
the error bound with the true flow, and whole runs with and without the frozen
steps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow.flow import Separated, adaptive, solve_flow
from ncflow.flow.frozen import (
    MAX_EXPONENT,
    FrozenStep,
    _first_roots_many_rates,
    _first_roots_one_rate,
    frozen_applies,
)
from ncflow.flow.polar import PolarSystem
from ncflow.init import balanced_init, balanced_shapes
from ncflow.network import Parameters, Problem
from tests.flow.test_events import _problem

EPS = float(np.finfo(np.float64).eps)


def _random_problem(binary: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, D, h = 12, 4, 6
    X = rng.standard_normal((n, D))
    if binary:
        problem = Problem(X, rng.integers(0, 2, n), 2, "exponential")
        shapes = balanced_shapes(rng, D, h, 1)
    else:
        problem = Problem(X, rng.integers(0, 3, n), 3, "cross_entropy")
        shapes = balanced_shapes(rng, D, h, 3)
    return problem, balanced_init(shapes, 1e-3)


def _frozen_at_start(problem: Problem, params: Parameters, pattern=None):
    system = PolarSystem(problem, params.width)
    y = system.from_parameters(params)
    if pattern is None:
        pattern = system.initial_pattern(y)
    ev = system.evaluate(y, pattern)
    return system, y, pattern, ev, FrozenStep(system, y, pattern, ev)


# --- the closed form --------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "three-class"])
def test_state_matches_matrix_exponential(binary):
    problem, params = _random_problem(binary)
    system, y, pattern, ev, step = _frozen_at_start(problem, params)
    # One neuron with no active sample: A_j = 0, and it must not move.
    pattern[:, 0] = False
    ev = system.evaluate(y, pattern)
    step = FrozenStep(system, y, pattern, ev)
    h, D, B = system.h, system.D, system.block
    blocks = y.reshape(h, B)
    T = MAX_EXPONENT / step.rate
    moved = step.state_at(T).reshape(h, B)
    assert np.array_equal(moved[0], blocks[0])
    for j in range(h):
        A = np.einsum("i,id,ik->dk", pattern[:, j].astype(float), problem.X, ev.G)
        M = np.block([[np.zeros((D, D)), A], [A.T, np.zeros((B - 1 - D, B - 1 - D))]])
        # M is symmetric: its exponential from the eigendecomposition is
        # accurate to roundoff, where scipy.linalg.expm's Pade approximation was
        # measured 5e-13 off at s T = 4 (against 40-digit mpmath).
        values, vectors = np.linalg.eigh(M)
        omega = vectors @ (np.exp(values * T) * (vectors.T @ blocks[j, 1:]))
        norm = np.linalg.norm(omega)
        # Both sides are sums of terms up to cosh(s T) <= cosh(MAX_EXPONENT) in
        # size, each within a few roundoffs; 64 roundoffs of the largest term
        # covers both evaluations.
        tol = 64 * EPS * math.cosh(MAX_EXPONENT)
        assert abs(moved[j, 0] - (blocks[j, 0] + math.log(norm))) <= tol
        assert np.max(np.abs(moved[j, 1:] - omega / norm)) <= tol


# --- crossing searches ------------------------------------------------------------


def test_one_rate_roots_are_the_constructed_ones():
    # F0 + P (E - 1) + Q (1/E - 1) times E is P (u - u1)(u - u2) with u = E - 1
    # when F0 = P u1 u2 and Q = F0 + P + P (u1 + u2).
    rng = np.random.default_rng(4)
    count = 200
    P = rng.choice([-1.0, 1.0], count) * rng.uniform(0.1, 2.0, count)
    u1 = rng.uniform(0.01, 3.0, count)
    # The second root on the far side of 0 where P < 0 (so that F0 > 0).
    u2 = np.where(
        P > 0, u1 + rng.uniform(0.01, 3.0, count), -rng.uniform(0.1, 0.9, count)
    )
    F0 = P * u1 * u2
    Q = F0 + P + P * (u1 + u2)
    s = rng.uniform(0.2, 1.0, count)
    limit = 10.0
    roots = _first_roots_one_rate(F0[None], P[None], Q[None], s, limit)[0]
    expected = np.log1p(u1) / s
    inside = expected <= limit
    # The stable quadratic formula gives each root to a few roundoffs relative to
    # the coefficients; the roots here are at least 0.01 apart, which keeps the
    # condition number of each below 1e3.
    tol = 1e3 * 16 * EPS * np.maximum(expected, 1.0)
    assert np.all(np.abs(roots[inside] - expected[inside]) <= tol[inside])
    assert np.all(np.isinf(roots[~inside]))


def _scan_first_root(function, limit: float, points: int = 20001) -> float:
    """First root of ``function`` on [0, limit] by a dense scan and bisection."""
    grid = np.linspace(0.0, limit, points)
    values = np.array([function(T) for T in grid])
    below = np.flatnonzero(values <= 0)
    if below.size == 0:
        return math.inf
    k = int(below[0])
    if k == 0:
        return 0.0
    lo, hi = grid[k - 1], grid[k]
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if function(mid) > 0:
            lo = mid
        else:
            hi = mid
    return hi


def test_many_rate_roots_match_a_dense_scan():
    rng = np.random.default_rng(7)
    n, h, r = 6, 5, 2
    S = rng.uniform(0.1, 1.0, (h, r))
    P = rng.standard_normal((n, h, r))
    Q = rng.standard_normal((n, h, r))
    F0 = rng.uniform(0.05, 1.0, (n, h))
    limit = MAX_EXPONENT / S.max()
    roots = _first_roots_many_rates(F0, P, Q, S, limit, window=math.inf)
    found = 0
    for i in range(n):
        for j in range(h):

            def F(T, i=i, j=j):
                return F0[i, j] + float(
                    np.sum(P[i, j] * np.expm1(S[j] * T) + Q[i, j] * np.expm1(-S[j] * T))
                )

            expected = _scan_first_root(F, limit)
            if math.isinf(expected):
                assert math.isinf(roots[i, j])
                continue
            found += 1
            # The scan's cells are limit / 20000 wide: a root it finds is the
            # first unless two roots share a cell, which these coefficients (drawn
            # at unit scale) do not produce. Both searches end at float64
            # resolution of T up to the roundoff of F over its slope.
            slope = abs(
                float(
                    np.sum(
                        S[j]
                        * (
                            P[i, j] * np.exp(S[j] * expected)
                            - Q[i, j] * np.exp(-S[j] * expected)
                        )
                    )
                )
            )
            size = float(np.sum(np.abs(P[i, j]) + np.abs(Q[i, j]))) * math.cosh(
                MAX_EXPONENT
            )
            tol = 64 * EPS * (size / slope + limit)
            assert abs(roots[i, j] - expected) <= tol, (i, j, roots[i, j], expected)
    assert found >= 5


def test_many_rate_search_finds_a_brief_dip():
    # F(T) = 2 a (cosh(T - c) - 1) - depth dips below 0 and back within one cell
    # of the prefilter's grid, positive at every grid point: only the interval
    # bounds see it. With P = a exp(-c) and Q = a exp(c) (rate 1),
    # P (e^T - 1) + Q (e^-T - 1) = 2 a cosh(T - c) - 2 a cosh(c).
    a, depth, limit = 1.0, 1e-3, 4.0
    c = 1.3 * limit / 16  # inside the second of 16 cells
    S = np.array([[1.0, 0.5]])  # the second rate has no terms
    F0 = np.array([[2 * a * math.cosh(c) - 2 * a - depth]])
    P = np.array([[[a * math.exp(-c), 0.0]]])
    Q = np.array([[[a * math.exp(c), 0.0]]])

    def F(T):
        return 2 * a * (math.cosh(T - c) - 1) - depth

    assert all(F(T) > 0 for T in np.linspace(0.0, limit, 17))
    roots = _first_roots_many_rates(F0, P, Q, S, limit, window=math.inf)
    expected = c - math.acosh(1 + depth / (2 * a))
    # F's roundoff is a few eps times the terms (about 2); over the slope at the
    # root, 2 a sinh(0.03) = 0.06, that moves the root by below 1e-13.
    assert abs(roots[0, 0] - expected) <= 1e-13


# --- the error bound --------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "three-class"])
def test_bound_covers_the_true_flow(binary, monkeypatch):
    # From eps = 3e-3 the outputs are about 1e-5: the frozen flow drifts from the
    # true one by a visible amount, which the bound must cover. The reference is
    # the Runge-Kutta integration at rtol = 1e-13.
    problem, params = _random_problem(binary, seed=2)
    params = params.scaled(3.0)
    system, y, pattern, ev, step = _frozen_at_start(problem, params)
    signs = np.where(pattern, 1.0, -1.0)
    first = float(step.first_crossings(signs, np.zeros(pattern.shape), 1e3, 0.0).min())
    T = min(MAX_EXPONENT / step.rate, first)
    bound = step.bound(T)
    assert math.isfinite(bound)
    monkeypatch.setattr(adaptive, "FROZEN_STEPS", False)
    reference = solve_flow(
        problem, params, t_max=T * math.exp(-ev.log_N), rtol=1e-13, atol=1e-15
    )
    assert reference.success, reference.message
    assert reference.activation_events == []
    frozen = system.to_parameters(step.state_at(T))
    truth = reference.params
    reduced = system.Q.T @ (truth.V - system.frozen_V)
    errors = []
    for j in range(system.h):
        theta = np.concatenate([truth.W[:, j], reduced[:, j]])
        approx = np.concatenate(
            [frozen.W[:, j], system.Q.T @ (frozen.V[:, j] - system.frozen_V[:, j])]
        )
        error = float(np.linalg.norm(approx - theta) / np.linalg.norm(theta))
        errors.append(error)
    # The reference carries at most 2 (atol + rtol) of relative error per step
    # (see test_accuracy).
    reference_error = reference.n_accepted * 2 * (1e-13 + 1e-15)
    assert max(errors) <= bound + reference_error, (errors, bound)
    # The drift is far above the reference's error, so the comparison measures it.
    assert max(errors) >= 100 * reference_error


def test_applies_to_the_per_sample_losses_only():
    problem, _ = _random_problem(True)
    assert frozen_applies(problem)
    faulty = Problem(problem.X, problem.labels, 2, "exponential", "relu_derivative_one")
    assert not frozen_applies(faulty)


# --- whole runs -------------------------------------------------------------------


@pytest.mark.parametrize("rtol", [1e-6, 1e-9])
def test_runs_with_and_without_frozen_steps_agree(rtol, monkeypatch):
    # The problem of the event tests, from ||theta(0)|| = 1e-6: its activation
    # changes fall in the frozen phase. Both runs stop at 0.99 T*, after all but
    # the last change.
    problem, params0 = _problem()
    params0 = params0.scaled(1e-6 / math.sqrt(params0.norm2()))
    separation = solve_flow(
        problem, params0, rtol=1e-9, atol=1e-12, events=[Separated()]
    ).separation_log_t
    t_max = 0.99 * math.exp(separation)
    runs = []
    for frozen in (True, False):
        monkeypatch.setattr(adaptive, "FROZEN_STEPS", frozen)
        result = solve_flow(problem, params0, t_max=t_max, rtol=rtol, atol=1e-12)
        assert result.success, result.message
        runs.append(result)
    with_frozen, without = runs
    assert with_frozen.settings["frozen_steps"] == with_frozen.n_accepted
    assert without.settings["frozen_steps"] == 0
    assert len(with_frozen.activation_events) >= 3
    assert [e.pairs for e in with_frozen.activation_events] == [
        e.pairs for e in without.activation_events
    ]
    # Each step of either run moves theta_j by at most 2 (atol + rtol) ||theta_j||
    # from the flow (see test_accuracy), and each located change projects a_j by
    # its residual cosine, at most rtol. Before separation each neuron's flow is
    # linear and grows it, which amplifies no relative error, so the runs differ
    # by at most the sum of those terms.
    local = 1e-12 + rtol
    steps = with_frozen.n_accepted + without.n_accepted
    changes = 2 * len(without.activation_events)
    tol = 2 * steps * local + changes * rtol
    for j in range(with_frozen.params.width):
        a = np.append(with_frozen.params.W[:, j], with_frozen.params.V[:, j])
        b = np.append(without.params.W[:, j], without.params.V[:, j])
        assert np.linalg.norm(a - b) <= tol * np.linalg.norm(b), j
