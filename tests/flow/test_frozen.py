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
import scipy.optimize

from ncflow.flow import (
    Norm2Above,
    Separated,
    adaptive,
    crossings,
    frozen_phase,
    solve_flow,
)
from ncflow.flow.frozen import (
    MAX_EXPONENT,
    FrozenStep,
    _first_roots_one_rate,
    _grid_bounds,
    _search_root,
    frozen_applies,
)
from ncflow.flow.polar import PolarSystem
from ncflow.flow.result import STATUS_END_OF_SPAN, STATUS_SLIDING
from ncflow.init import balanced_init, balanced_shapes
from ncflow.network import Parameters, Problem
from tests.flow.test_events import _cone, _problem

EPS = float(np.finfo(np.float64).eps)


KINDS = ["binary", "two-class cross-entropy", "three-class cross-entropy"]


def _random_problem(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, D, h = 12, 4, 6
    X = rng.standard_normal((n, D))
    if kind == "binary":
        problem = Problem(X, rng.integers(0, 2, n), 2, "exponential")
        shapes = balanced_shapes(rng, D, h, 1)
    elif kind == "two-class cross-entropy":
        # One output direction, f_1 - f_2.
        problem = Problem(X, rng.integers(0, 2, n), 2, "cross_entropy")
        shapes = balanced_shapes(rng, D, h, 2)
    else:
        # Two output directions: each A_j has two singular values.
        problem = Problem(X, np.arange(n) % 3, 3, "cross_entropy")
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


@pytest.mark.parametrize("kind", KINDS)
def test_state_matches_matrix_exponential(kind):
    problem, params = _random_problem(kind)
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


@pytest.mark.parametrize("kind", KINDS)
def test_restart_matches_fresh_step(kind):
    # After a restart at T1 with a changed pattern column, the step goes on as a
    # fresh frozen step from the state at T1 with the same gradients: every
    # neuron follows the same linear flow in both. The fresh step starts from a
    # state within the roundoff bound of the test above, 64 eps cosh(s T) with
    # s T <= MAX_EXPONENT, and its flow over d grows that error by at most
    # cosh(MAX_EXPONENT) more, hence the square.
    problem, params = _random_problem(kind)
    system, y, pattern, ev, step = _frozen_at_start(problem, params)
    T1 = 0.5 * MAX_EXPONENT / step.rate
    y1 = step.state_at(T1)
    changed = pattern.copy()
    changed[0, 1] = not changed[0, 1]
    changed[3, 4] = not changed[3, 4]
    step.restart([1, 4], y1, changed, T1)
    fresh = FrozenStep(system, y1, changed, ev)
    fresh.log_norm2 = step.log_norm2  # the same start of the error bound
    d = 0.4 * MAX_EXPONENT / max(step.rate, fresh.rate)
    tol = 64 * EPS * math.cosh(MAX_EXPONENT) ** 2
    assert np.max(np.abs(step.state_at(T1 + d) - fresh.state_at(d))) <= tol
    # The restarted neurons' rates are those of the fresh step: the same
    # arithmetic on their columns, to a few roundoffs.
    assert np.allclose(step.S[[1, 4]], fresh.S[[1, 4]], rtol=16 * EPS, atol=0)
    assert step.rate >= fresh.rate


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
    # the coefficients. A root's condition number is about |u| / |u1 - u2|, at
    # most 6 / 0.01 = 600 here, so below 1e3.
    tol = 1e3 * 16 * EPS * np.maximum(expected, 1.0)
    assert np.all(np.abs(roots[inside] - expected[inside]) <= tol[inside])
    assert np.all(np.isinf(roots[~inside]))


def _multi_rate_search(F0, P, Q, s, span, landing):
    """Search one pair as CrossingTable does: the grid's lower bound, then the
    certified steps from there."""
    F0_cell, span_cell = np.array([[F0]]), np.array([span])
    bound, exact = _grid_bounds(
        F0_cell, P[None, None], Q[None, None], s[None], span_cell, landing
    )
    if exact[0, 0]:
        return float(bound[0, 0]), float(bound[0, 0]), True
    T, certified = _search_root(
        F0, list(P), list(Q), list(s), bound[0, 0], span, landing
    )
    return float(bound[0, 0]), T, certified


def _exponential_sum(F0, P, Q, s, T):
    E = np.exp(np.outer(T, s))
    return F0 + (E - 1.0) @ P + (1.0 / E - 1.0) @ Q


@pytest.mark.parametrize(
    ("rates", "nearly_equal"),
    [(2, False), (3, False), (2, True)],
    ids=["two rates", "three rates", "two nearly equal rates"],
)
def test_multi_rate_search_passes_no_root(rates, nearly_equal):
    # Random sums of exponentials, and ones shifted so that their minimum on
    # the piece is 1e-3 or 1e-7 above 0 or 1e-7 below. The first two are near
    # touches, which must not count as crossings. The last has two close roots,
    # and the first must be found. A dense scan checks that f stays positive
    # before the point returned and that f <= landing there. With nearly equal
    # rates and opposite growth terms, most of f cancels, and the search may
    # stop uncertified: then only the first check applies.
    rng = np.random.default_rng(rates + 10 * nearly_equal)
    landing = 1e-10
    # f is a sum of terms up to |P| e^4 + |Q| in size, a few of each: its
    # roundoff is below 1e-13, so values under -1e-12 are true roots.
    floor = 1e-12
    for case in range(300):
        P = rng.normal(size=rates) * 0.5
        Q = rng.normal(size=rates) * 0.5
        s = rng.uniform(0.05, 1.0, rates)
        if nearly_equal:
            s[1] = s[0] * (1.0 + 1e-6)
            P[1] = -P[0] * (1.0 + rng.uniform(-1e-3, 1e-3))
        span = MAX_EXPONENT / s.max()
        T = np.linspace(0.0, span, 100001)
        shift = case % 4
        if shift == 0:
            F0 = rng.uniform(1e-3, 1.0)
        else:
            h = _exponential_sum(0.0, P, Q, s, T)
            k = int(np.argmin(h))

            def terms(t, P=P, Q=Q, s=s):
                return float(_exponential_sum(0.0, P, Q, s, np.array([t]))[0])

            result = scipy.optimize.minimize_scalar(
                terms,
                bounds=(T[max(k - 1, 0)], T[min(k + 1, len(T) - 1)]),
                method="bounded",
                options={"xatol": 1e-12},
            )
            F0 = [1e-3, 1e-7, -1e-7][shift - 1] - min(result.fun, 0.0)
            if F0 <= landing:
                continue
        f = _exponential_sum(F0, P, Q, s, T)
        bound, root, certified = _multi_rate_search(F0, P, Q, s, span, landing)
        assert certified or nearly_equal, case
        roots = T[f <= -floor]
        assert bound <= root
        if len(roots):
            assert root <= roots[0], case
        assert np.all(f[T < root] > -floor), case
        if certified and math.isfinite(root):
            assert root <= span
            value = float(_exponential_sum(F0, P, Q, s, np.array([root]))[0])
            assert value <= landing + floor, case


# --- the error bound --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_bound_covers_the_true_flow(kind, monkeypatch):
    # From eps = 3e-3 the outputs are about 1e-5: the frozen flow drifts from the
    # true one by a visible amount, which the bound must cover. The reference is
    # the Runge-Kutta integration at rtol = 1e-13.
    problem, params = _random_problem(kind, seed=2)
    params = params.scaled(3.0)
    system, y, pattern, ev, step = _frozen_at_start(problem, params)
    signs = np.where(pattern, 1.0, -1.0)
    first = float(step.first_crossings(signs, np.zeros(pattern.shape), 1e3).min())
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


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("exponent", "shift"), [(0.1, 0.0), (1.0, 0.0), (0.01, 0.05)])
def test_gradient_drift_covers_the_true_gradients(kind, exponent, shift):
    # From eps = 3e-3 the loss gradients move visibly along a frozen step. At
    # the frozen state after s T = exponent, with every a_j then moved by
    # ``shift``, the true gradients (in the units 1/N of the step's start)
    # differ from the frozen ones by at most gradient_drift(T, shift), summed
    # with weights ||x_i||. The bound is 30 to 1600 times the drift here.
    problem, params = _random_problem(kind, seed=2)
    params = params.scaled(3.0)
    system, y, pattern, ev, step = _frozen_at_start(problem, params)
    T = exponent / step.rate
    bound = step.gradient_drift(T, shift)
    assert math.isfinite(bound)
    moved = step.state_at(T)
    blocks = moved.reshape(system.h, system.block)
    turn = np.random.default_rng(1).standard_normal((system.h, system.D))
    blocks[:, 1 : 1 + system.D] += shift * turn / np.linalg.norm(turn, axis=1)[:, None]
    at_T = system.evaluate(moved, pattern)
    G_T = at_T.G * math.exp(at_T.log_N - ev.log_N)
    x_norms = np.linalg.norm(problem.X, axis=1)
    drift = float(x_norms @ np.linalg.norm(G_T - ev.G, axis=1))
    assert drift <= bound, (drift, bound)
    # The gradients move by far more than roundoff, so the comparison measures
    # the bound.
    assert drift >= 1e6 * EPS * float(x_norms @ np.linalg.norm(ev.G, axis=1))


@pytest.mark.parametrize("fallback", ["drift too large", "always evaluate"])
def test_frozen_choice_matches_evaluated(fallback, monkeypatch):
    # Within a frozen step the new pattern at an activation change is chosen
    # by the frozen gradients where gradient_drift certifies every slope's
    # sign, and by an evaluation of the flow otherwise. Both must give the
    # same run, state for state, the first with one evaluation fewer per change.
    # The piecewise loop: a batch that meets an uncertain slope leaves the
    # step to it, so the batch's choices are checked by test_batch_matches_pieces.
    monkeypatch.setattr(frozen_phase, "FROZEN_BATCH", False)
    problem, params0 = _problem()
    params0 = params0.scaled(1e-6 / math.sqrt(params0.norm2()))
    frozen_changes = []
    switch = adaptive.AdaptiveFlow._switch

    def counted(self, cluster, arrived=True, frozen=None):
        if frozen is not None:
            frozen_changes.append(cluster)
        return switch(self, cluster, arrived, frozen)

    monkeypatch.setattr(adaptive.AdaptiveFlow, "_switch", counted)
    certified = solve_flow(problem, params0, t_max=20.0, rtol=1e-8, atol=1e-12)
    if fallback == "drift too large":
        monkeypatch.setattr(FrozenStep, "gradient_drift", lambda *args: math.inf)
    else:

        def uncertain(*args):
            raise crossings.UncertainSlope

        monkeypatch.setattr(adaptive.AdaptiveFlow, "_frozen_rates", uncertain)
    changes = len(frozen_changes)
    evaluated = solve_flow(problem, params0, t_max=20.0, rtol=1e-8, atol=1e-12)
    assert certified.success and evaluated.success
    assert changes >= 3
    assert len(frozen_changes) == 2 * changes
    assert certified.activation_events == evaluated.activation_events
    np.testing.assert_array_equal(certified.params.W, evaluated.params.W)
    np.testing.assert_array_equal(certified.params.V, evaluated.params.V)
    assert evaluated.nfev - certified.nfev == changes


def test_applies_except_planted_faults():
    for kind in KINDS:
        assert frozen_applies(_random_problem(kind)[0]), kind
    problem, _ = _random_problem("binary")
    faulty = Problem(problem.X, problem.labels, 2, "exponential", "relu_derivative_one")
    assert not frozen_applies(faulty)
    wrong_axis = Problem(
        problem.X, np.arange(len(problem.X)) % 3, 3, "cross_entropy_wrong_axis"
    )
    assert not frozen_applies(wrong_axis)


# --- whole runs -------------------------------------------------------------------


def _assert_frozen_runs_agree(problem, params0, t_max, rtol, changes, monkeypatch):
    """Run to ``t_max`` with and without frozen steps, and check that the first
    run is all frozen steps with at least ``changes`` activation changes, the
    same as the second, and that the states agree within the integration's
    bound."""
    runs = []
    for frozen in (True, False):
        monkeypatch.setattr(adaptive, "FROZEN_STEPS", frozen)
        result = solve_flow(problem, params0, t_max=t_max, rtol=rtol, atol=1e-12)
        assert result.status == STATUS_END_OF_SPAN, result.message
        runs.append(result)
    with_frozen, without = runs
    assert with_frozen.settings["frozen_steps"] == with_frozen.n_accepted
    assert without.settings["frozen_steps"] == 0
    assert len(with_frozen.activation_events) >= changes
    assert [e.pairs for e in with_frozen.activation_events] == [
        e.pairs for e in without.activation_events
    ]
    # Frozen landings report their location error like the others: up to rtol
    # in cosine units, and above 0 for roots in floating point.
    residuals = [e.residual for e in with_frozen.activation_events]
    assert max(residuals) <= rtol
    assert max(residuals) > 0

    # Each step of either run moves theta_j by at most 2 (atol + rtol) ||theta_j||
    # from the flow (see test_accuracy), and each located change projects a_j by
    # its residual cosine, at most rtol. Before separation each neuron's flow is
    # linear and grows it, which amplifies no relative error, so the runs differ
    # by at most the sum of those terms.
    _assert_neurons_agree(with_frozen, without, rtol)


def _assert_neurons_agree(first, second, rtol):
    """Check that two runs' neurons agree within the bound derived above:
    each step of either run moves theta_j by at most 2 (atol + rtol)
    ||theta_j|| and each located change by its residual, up to rtol."""
    local = 1e-12 + rtol
    steps = first.n_accepted + second.n_accepted
    projections = 2 * len(second.activation_events)
    tol = 2 * steps * local + projections * rtol
    for j in range(first.params.width):
        a = np.append(first.params.W[:, j], first.params.V[:, j])
        b = np.append(second.params.W[:, j], second.params.V[:, j])
        assert np.linalg.norm(a - b) <= tol * np.linalg.norm(b), j


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
    _assert_frozen_runs_agree(problem, params0, t_max, rtol, 3, monkeypatch)


def _three_cones(rng):
    """Four samples of each of three classes in R^4, around e_1, e_2 and e_3,
    with small negative entries on the other two axes: orthogonally separable
    (inner products positive within a class, negative across)."""
    X = np.zeros((12, 4))
    labels = np.repeat(np.arange(3), 4)
    for row, k in enumerate(labels):
        X[row, :3] = -rng.uniform(0.05, 0.15, 3)
        X[row, k] = rng.uniform(0.5, 2.0)
        X[row, 3] = rng.uniform(-0.05, 0.05)
    return X, labels


@pytest.mark.parametrize("rtol", [1e-6, 1e-9])
def test_three_class_frozen_runs_agree(rtol, monkeypatch):
    # Two output directions: the crossings come from the certified search of
    # CrossingTable, not from a closed form. From eps = 1e-8 the run to
    # t = exp(-0.5) has its activation changes in the frozen phase.
    rng = np.random.default_rng(0)
    X, labels = _three_cones(rng)
    gram = X @ X.T
    same = labels[:, None] == labels[None, :]
    assert np.all(gram[same] > 0)
    assert np.all(gram[~same] < 0)

    problem = Problem(X, labels, 3, "cross_entropy")
    params0 = balanced_init(balanced_shapes(rng, 4, 6, 3), 1e-8)
    _assert_frozen_runs_agree(problem, params0, math.exp(-0.5), rtol, 10, monkeypatch)


@pytest.mark.parametrize("t_max", [30.0, 100.0])
def test_span_ends_on_t_max_after_frozen_phase(t_max):
    # From 1e-10 at rtol = 1e-2 the first explicit step after the frozen phase
    # spans the escape, and its interpolated clock put t_max = 100 at t = 109.
    # The step to t_max is taken again until its own clock ends there to the
    # clock's tolerance of (atol + rtol) max(1, |log t|).
    problem, params0 = _problem()
    params0 = params0.scaled(1e-10 / math.sqrt(params0.norm2()))
    rtol, atol = 1e-2, 1e-14
    result = solve_flow(problem, params0, rtol=rtol, atol=atol, t_max=t_max)
    assert result.status == STATUS_END_OF_SPAN, result.message
    assert result.settings["frozen_steps"] >= 1
    tolerance = (atol + rtol) * max(1.0, math.log(t_max))
    assert abs(result.log_t - math.log(t_max)) <= tolerance


def test_large_start_hands_over_at_once(monkeypatch):
    # From ||theta|| = 3 the outputs are of order 1 and the error bound fails at
    # every step length, so the first frozen step hands over without moving. A
    # frozen step that returned without moving and without handing over would
    # be built again forever: more than a hundred of them fail the test.
    built = []

    class Counting(FrozenStep):
        def __init__(self, *args):
            built.append(1)
            if len(built) > 100:
                raise AssertionError("frozen steps built again without progress")
            super().__init__(*args)

    monkeypatch.setattr(frozen_phase, "FrozenStep", Counting)
    problem, params0 = _problem()
    params0 = params0.scaled(3.0 / math.sqrt(params0.norm2()))
    result = solve_flow(problem, params0, rtol=1e-6, atol=1e-12, t_max=5.0)
    assert result.status == STATUS_END_OF_SPAN, result.message
    assert result.settings["frozen_steps"] == 0
    assert len(built) == 1


def test_shrinking_network_hands_over():
    # The only neuron starts on the shrinking direction of its linear flow, so
    # the network decays and every frozen step has the longest length. The
    # frozen phase must end after the first step that did not grow
    # ||theta||^2, not follow the decay step by step up to t_max: the count of
    # frozen steps must not grow with t_max.
    X = np.array([[-1.0, 0.3, 0], [-1.0, -0.3, 0], [1.0, 0, 0.3], [1.0, 0, -0.3]])
    problem = Problem(X, np.array([1, 1, 0, 0]), 2, "exponential")
    shapes = Parameters(np.array([[-1.0], [0.0], [0.0]]), np.array([[1.0]]))
    params0 = balanced_init(shapes, 1e-20)
    counts = []
    for t_max in (1e3, 1e4):
        result = solve_flow(problem, params0, rtol=1e-6, atol=1e-12, t_max=t_max)
        assert result.status == STATUS_END_OF_SPAN, result.message
        counts.append(result.settings["frozen_steps"])
    assert counts[0] == counts[1]


def test_event_bump_fires_twice(monkeypatch):
    # A direction entry of neuron 0 rises above 0.19741 for about 0.05 of t and
    # falls back, with a maximum of 0.19841. The event must fire on the way up
    # and on the way down, as in a run without frozen steps.
    problem, params0 = _problem()
    params0 = params0.scaled(1e-8 / math.sqrt(params0.norm2()))

    def entry(state):
        W, V = state.params.W, state.params.V
        norm = math.sqrt(float(np.sum(W[:, 0] ** 2) + np.sum(V[:, 0] ** 2)))
        return float(W[3, 0]) / norm - 0.19741

    entry.terminal = False
    counts = []
    for frozen in (True, False):
        monkeypatch.setattr(adaptive, "FROZEN_STEPS", frozen)
        result = solve_flow(
            problem, params0, rtol=1e-6, atol=1e-14, t_max=1.0, events=[entry]
        )
        assert result.status == STATUS_END_OF_SPAN, result.message
        counts.append(len(result.t_events[0]))
        if frozen:
            assert result.settings["frozen_steps"] >= 1
    assert counts == [2, 2]


def _watch(monkeypatch, name: str, record) -> None:
    """Replace ``AdaptiveFlow.<name>`` with itself followed by
    ``record(self, result, *args)``."""
    method = getattr(adaptive.AdaptiveFlow, name)

    def watched(self, *args):
        result = method(self, *args)
        record(self, result, *args)
        return result

    monkeypatch.setattr(adaptive.AdaptiveFlow, name, watched)


def _tiny_start():
    problem, params0 = _problem()
    return problem, params0.scaled(1e-6 / math.sqrt(params0.norm2()))


@pytest.mark.parametrize("batch", [True, False])
def test_norm_bound_covers_the_frozen_flow(batch, monkeypatch):
    # _quiet_events skips the event values where log_norm2_bound keeps every
    # Norm2Above target out of reach, so the bound must hold along the frozen
    # flow, activation changes included.
    monkeypatch.setattr(frozen_phase, "FROZEN_BATCH", batch)
    problem, params0 = _tiny_start()
    gaps = []

    def checked(self, result, step, end):
        log_norm2 = step.system.log_norm2(step.state_at(end))
        gaps.append((step.log_norm2_bound(end) - log_norm2, log_norm2 - step.log_norm2))

    _watch(monkeypatch, "_quiet_events", checked)
    result = solve_flow(problem, params0, t_max=20.0, rtol=1e-8, atol=1e-12)
    assert result.success, result.message
    assert len(gaps) >= (5 if batch else 10)
    assert min(slack for slack, _ in gaps) >= 0.0, gaps
    # The norm grows along the pieces, so a bound without the growth term fails.
    assert max(growth for _, growth in gaps) > 1.0


@pytest.mark.parametrize(
    "targets", [(1e-11, 1e-3), (1e-10, 5e-10), (2e-9, 1.0), (1e-3,)]
)
def test_quiet_landings_fire_as_evaluated(targets, monkeypatch):
    # Landings that skip the event values must give the run in which every
    # landing evaluates them: the same firings, states and evaluations. Both
    # take the frozen steps piece by piece (a batch needs quiet events).
    monkeypatch.setattr(frozen_phase, "FROZEN_BATCH", False)
    problem, params0 = _tiny_start()
    quiet = []
    _watch(
        monkeypatch, "_quiet_events", lambda self, result, *args: quiet.append(result)
    )

    runs = []
    for skip in (True, False):
        if not skip:
            monkeypatch.setattr(
                adaptive.AdaptiveFlow, "_quiet_events", lambda *a: False
            )
        events = [Norm2Above(target, terminal=False) for target in targets]
        runs.append(
            solve_flow(
                problem, params0, t_max=20.0, rtol=1e-8, atol=1e-12, events=events
            )
        )
    skipped, evaluated = runs

    assert skipped.success, skipped.message
    assert evaluated.success, evaluated.message
    assert any(quiet)
    # The frozen phase ends near ||theta||^2 = 2e-9: a target below that must
    # stop some landings from skipping.
    assert all(quiet) == (min(targets) > 1e-8)
    assert all(len(times) == 1 for times in evaluated.t_events)
    for skipped_times, evaluated_times in zip(skipped.t_events, evaluated.t_events):
        np.testing.assert_array_equal(skipped_times, evaluated_times)
    assert skipped.activation_events == evaluated.activation_events
    assert skipped.nfev == evaluated.nfev
    np.testing.assert_array_equal(skipped.params.W, evaluated.params.W)
    np.testing.assert_array_equal(skipped.params.V, evaluated.params.V)


def _binary_cones():
    """24 samples in R^8 in cones of half-angle 0.5 rad around +e_1 and -e_1,
    and 16 balanced Gaussian neurons at eps = 1e-6: over a hundred activation
    changes before the pattern separates, most of them in one frozen step."""
    rng = np.random.default_rng(3)
    centre = np.eye(8)[0]
    X = np.vstack([_cone(rng, centre, 12, 0.5), _cone(rng, -centre, 12, 0.5)])
    problem = Problem(X, np.repeat([0, 1], 12), 2, "exponential")
    return problem, balanced_init(balanced_shapes(rng, 8, 16, 1), 1e-6)


def _three_class_cones():
    rng = np.random.default_rng(0)
    X, labels = _three_cones(rng)
    problem = Problem(X, labels, 3, "cross_entropy")
    return problem, balanced_init(balanced_shapes(rng, 4, 6, 3), 1e-8)


@pytest.mark.parametrize("case", ["binary cones", "events problem", "three classes"])
@pytest.mark.parametrize("rtol", [1e-6, 1e-9])
def test_batch_matches_pieces(case, rtol, monkeypatch):
    # A frozen step taken neuron by neuron (_frozen_batch) must give the run
    # taken piece by piece: the same activation changes and records, and states
    # within the integration's bound. The batch computes each neuron from its
    # own piece, not from the whole state, so the runs differ in the last bits.
    if case == "binary cones":
        problem, params0 = _binary_cones()
    elif case == "events problem":
        problem, params0 = _tiny_start()
    else:
        problem, params0 = _three_class_cones()
    commits = []

    def counted_commit(self, result, plan, clock):
        # The batch's step meets the error bound with the rates of all its
        # pieces, as the piecewise loop's steps do.
        tolerance = frozen_phase.FROZEN_SAFETY * 0.5 * (self.atol + self.rtol)
        assert plan.work.bound(plan.end) <= tolerance
        commits.append(len(plan.landings))

    _watch(monkeypatch, "_commit_batch", counted_commit)
    runs = []
    for batch in (True, False):
        monkeypatch.setattr(frozen_phase, "FROZEN_BATCH", batch)
        events = [Norm2Above(1e-2, terminal=False), Norm2Above(1.0)]
        result = solve_flow(problem, params0, rtol=rtol, atol=1e-12, events=events)
        assert result.success, result.message
        runs.append(result)
    batched, pieces = runs
    assert sum(commits) >= {"binary cones": 100, "events problem": 10}.get(case, 3)
    # The batch ends its steps where the piecewise loop does.
    assert batched.n_accepted == pieces.n_accepted
    assert batched.nfev == pieces.nfev
    assert batched.settings["frozen_steps"] == pieces.settings["frozen_steps"]
    assert [e.pairs for e in batched.activation_events] == [
        e.pairs for e in pieces.activation_events
    ]
    assert [len(times) for times in batched.t_events] == [1, 1]
    assert len(batched.trajectory) == len(pieces.trajectory)
    np.testing.assert_array_equal(batched.trajectory.kind, pieces.trajectory.kind)
    np.testing.assert_array_equal(
        batched.trajectory.patterns, pieces.trajectory.patterns
    )
    # Each step keeps log t to (atol + rtol) max(1, |log t|), so the times of
    # the records and of the separation differ by at most that per step.
    steps = batched.n_accepted + pieces.n_accepted
    log_t = pieces.trajectory.log_t
    clock = steps * (1e-12 + rtol) * np.maximum(1.0, np.abs(log_t))
    finite = np.isfinite(log_t)
    gaps = np.abs(batched.trajectory.log_t[finite] - log_t[finite])
    assert np.all(gaps <= clock[finite])
    assert (batched.separation_log_t is None) == (pieces.separation_log_t is None)
    if pieces.separation_log_t is not None:
        gap = abs(batched.separation_log_t - pieces.separation_log_t)
        assert gap <= steps * (1e-12 + rtol) * max(1.0, abs(pieces.separation_log_t))

    # The runs end on the same ||theta||^2 = 1.
    _assert_neurons_agree(batched, pieces, rtol)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_batch_lands_copies_together(scale, monkeypatch):
    # A neuron and a copy of it (scaled or not) cross their boundaries at the
    # same time. The piecewise loop lands on both at once, as one activation
    # event and one step, and so must the batch. With max_steps = 40 a landing
    # per neuron used up the budget before the terminal event.
    rng = np.random.default_rng(1)
    centre = np.eye(4)[0]
    X = np.vstack([_cone(rng, centre, 5, 0.7), _cone(rng, -centre, 5, 0.7)])
    problem = Problem(X, np.repeat([0, 1], 5), 2, "exponential")
    shapes = balanced_shapes(rng, 4, 3, 1)
    copied = Parameters(
        np.hstack([shapes.W, scale * shapes.W[:, :1]]),
        np.hstack([shapes.V, scale * shapes.V[:, :1]]),
    )
    params0 = balanced_init(copied, 1e-6)

    runs = {}
    for batch in (True, False):
        monkeypatch.setattr(frozen_phase, "FROZEN_BATCH", batch)
        for max_steps in (None, 40):
            runs[batch, max_steps] = solve_flow(
                problem,
                params0,
                rtol=1e-8,
                atol=1e-12,
                events=[Norm2Above(1e-4)],
                max_steps=max_steps,
            )

    pieces = runs[False, None]
    together = [e.pairs for e in pieces.activation_events if len(e.pairs) > 1]
    assert any({j for _, j, _ in pairs} == {0, 3} for pairs in together)
    for max_steps in (None, 40):
        batched, pieces = runs[True, max_steps], runs[False, max_steps]
        assert batched.status == pieces.status == 1, batched.message
        assert [e.pairs for e in batched.activation_events] == [
            e.pairs for e in pieces.activation_events
        ]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", KINDS)
def test_batch_leaves_a_slide_to_pieces(kind, seed, monkeypatch):
    # These random problems slide along a boundary after a few changes. The
    # batch takes the changes before the slide and leaves the slide to the
    # piecewise loop, within the same step. A batch step ended just before the
    # slide used to be followed by ever shorter ones that never reached it,
    # until the budget ran out.
    problem, params0 = _random_problem(kind, seed)
    params0 = params0.scaled(1e-6 / math.sqrt(params0.norm2()))
    commits = []
    _watch(
        monkeypatch,
        "_commit_batch",
        lambda self, result, plan, clock: commits.append(len(plan.landings)),
    )

    runs = []
    for batch in (True, False):
        monkeypatch.setattr(frozen_phase, "FROZEN_BATCH", batch)
        runs.append(
            solve_flow(
                problem, params0, rtol=1e-8, atol=1e-12, events=[Norm2Above(1.0)]
            )
        )
    batched, pieces = runs

    assert pieces.status == STATUS_SLIDING, pieces.message
    assert batched.status == pieces.status, batched.message
    assert sum(commits) >= 1
    assert [e.pairs for e in batched.activation_events] == [
        e.pairs for e in pieces.activation_events
    ]
    # The piecewise loop goes on within the batch's step, so the steps and
    # evaluations are the same.
    assert batched.n_accepted == pieces.n_accepted
    assert batched.nfev == pieces.nfev
    assert batched.settings["frozen_steps"] == pieces.settings["frozen_steps"]


def _cone_problem(seed, n, D, half_angle, loss):
    """Two cones of ``n`` shuffled samples in R^D around +e_1 and -e_1."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    X = np.zeros((n, D))
    for k, centre in enumerate([np.eye(D)[0], -np.eye(D)[0]]):
        rows = np.flatnonzero(labels == k)
        X[rows] = _cone(rng, centre, rows.size, half_angle)
    return rng, Problem(X, labels, 2, loss)


def _copied(shapes, rng, copies):
    """Return ``shapes`` with ``copies`` of its neurons appended again."""
    index = rng.integers(0, shapes.width, copies)
    return Parameters(
        np.hstack([shapes.W, shapes.W[:, index]]),
        np.hstack([shapes.V, shapes.V[:, index]]),
    )


@pytest.mark.parametrize("case", ["slide on a budget", "copies on a budget"])
def test_batch_matches_pieces_on_budget(case, monkeypatch):
    # Two of 1020 random run pairs of a trial. With max_steps = 10 the batch
    # ran out of steps before a slide that the piecewise loop reached. With a
    # copied neuron two neurons' changes 5e-4 apart in log t were one landing
    # of the piecewise loop and two of the batch, and the runs ended on their
    # budget 0.13 apart.
    if case == "slide on a budget":
        rng = np.random.default_rng(760)
        labels = np.arange(20) % 2
        rng.shuffle(labels)
        problem = Problem(rng.standard_normal((20, 6)), labels, 2, "cross_entropy")
        params0 = balanced_init(
            balanced_shapes(rng, 6, 8, 2), 10.0**-26.511492548721115
        )
        events = [Norm2Above(min(params0.norm2() * 10**5.695983311316725, 1e-2))]
        max_steps = 10
    else:
        rng, problem = _cone_problem(665, 21, 6, 1.1805865117228023, "logistic")
        shapes = _copied(balanced_shapes(rng, 6, 3, 1), rng, 1)
        params0 = balanced_init(shapes, 10.0**-20.751617461392357)
        target = min(params0.norm2() * 10**7.772580865553045, 1e-2)
        events = [Norm2Above(target, terminal=False), Norm2Above(1.0)]
        max_steps = 80

    runs = []
    for batch in (True, False):
        monkeypatch.setattr(frozen_phase, "FROZEN_BATCH", batch)
        runs.append(
            solve_flow(
                problem,
                params0,
                rtol=1e-2,
                atol=1e-12,
                events=events,
                max_steps=max_steps,
            )
        )
    batched, pieces = runs

    assert batched.status == pieces.status, (batched.message, pieces.message)
    assert batched.n_accepted == pieces.n_accepted
    assert batched.nfev == pieces.nfev
    assert [e.pairs for e in batched.activation_events] == [
        e.pairs for e in pieces.activation_events
    ]


def test_states_in_chunks_match_one_batch(monkeypatch):
    # states_at gathers the pieces for at most STATES_CHUNK neuron states at a
    # time, to bound its memory. On the binary benchmark problem (16 neurons)
    # its first call reads 151 states at once, and chunks of 40 neuron states
    # split them at 2 times per chunk: the records must not change.
    from benchmarks.problems import binary_problem
    from ncflow.flow import frozen

    case = binary_problem()
    target = [Norm2Above(1.0)]

    def run():
        return solve_flow(case.problem, case.params0, rtol=1e-6, events=target)

    whole = run()
    monkeypatch.setattr(frozen, "STATES_CHUNK", 40)
    chunked = run()
    assert whole.settings["frozen_steps"] > 0
    assert np.array_equal(whole.trajectory.log_t, chunked.trajectory.log_t)
    assert np.array_equal(whole.trajectory.W, chunked.trajectory.W)
    assert np.array_equal(whole.trajectory.patterns, chunked.trajectory.patterns)
