"""The explicit Dormand-Prince step of ``ncflow.flow.steps`` and its dense outputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ncflow.flow import steps

EPS = np.finfo(np.float64).eps
STAGES = 7
# Nodes of the seven stages; the 7th is the end point, f(y1).
C = np.array(steps.DP_C + (1.0,))


def _a(i: int, j: int) -> float:
    row = steps.DP_A[i] if i < len(steps.DP_A) else steps.DP_B
    return row[j] if j < len(row) else 0.0


# The eight order conditions of orders 1 to 4 for the weights b_i(s) of a
# continuous extension (Hairer, Norsett and Wanner, "Solving ODEs I", sec. II.6):
# each is a sum over stages of b_i(s) times a product of tableau entries, and must
# equal s^q / gamma for the tree's order q and density gamma.
CONDITIONS = {
    "sum b": (lambda i, j, k: 1.0 if j == 0 and k == 0 else 0.0, 1, 1),
    "sum b c": (lambda i, j, k: C[i] if j == 0 and k == 0 else 0.0, 2, 2),
    "sum b c^2": (lambda i, j, k: C[i] ** 2 if j == 0 and k == 0 else 0.0, 3, 3),
    "sum b a c": (lambda i, j, k: _a(i, j) * C[j] if k == 0 else 0.0, 3, 6),
    "sum b c^3": (lambda i, j, k: C[i] ** 3 if j == 0 and k == 0 else 0.0, 4, 4),
    "sum b c a c": (lambda i, j, k: C[i] * _a(i, j) * C[j] if k == 0 else 0.0, 4, 8),
    "sum b a c^2": (lambda i, j, k: _a(i, j) * C[j] ** 2 if k == 0 else 0.0, 4, 12),
    "sum b a a c": (lambda i, j, k: _a(i, j) * _a(j, k) * C[k], 4, 24),
}


@pytest.mark.parametrize("name", sorted(CONDITIONS))
@pytest.mark.parametrize("s", [0.25, 0.5, 0.9, 1.0])
def test_dense_weights_meet_order_conditions(name, s):
    term, order, density = CONDITIONS[name]
    weights = steps.dense_weights(s)
    triples = list(itertools.product(range(STAGES), repeat=3))
    products = [weights[i] * term(i, j, k) for i, j, k in triples]
    total = math.fsum(products)
    # Each weight sums four terms of at most 10.1 (the largest DP_DENSE entry)
    # times a power of s <= 1, so its absolute error is below 4 * 4 * 10.1 eps,
    # under 200 eps. The tableau entries are float64 roundings of rationals, and
    # each product of at most three of them and a weight adds a few eps relative.
    # So 8 eps times the sum of |products| plus 200 eps times the sum of |terms|
    # bounds the error of the total.
    magnitude = math.fsum(abs(p) for p in products)
    terms = math.fsum(abs(term(i, j, k)) for i, j, k in triples)
    bound = 8 * EPS * magnitude + 200 * EPS * terms
    assert abs(total - s**order / density) <= bound


def test_dense_weights_at_one_are_the_step_weights():
    expected = np.array(steps.DP_B + (0.0,))
    # Each weight at s = 1 is the sum of one row of DP_DENSE, whose entries add
    # up to at most 19.5 in absolute value: 4 roundings of at most 20 eps each.
    bound = 4 * 20 * EPS
    assert np.max(np.abs(steps.dense_weights(1.0) - expected)) <= bound


def _rotation(y: np.ndarray) -> np.ndarray:
    return np.array([y[1], -y[0]])


def _exact_rotation(t: float) -> np.ndarray:
    return np.array([math.cos(t), -math.sin(t)])


def _rotation_step(size: float) -> steps.Step:
    y0 = np.array([1.0, 0.0])
    step, _, _ = steps.dopri5_step(_rotation, y0, _rotation(y0), size)
    return step


def _slope(errors: list[float], sizes: list[float]) -> float:
    return math.log(errors[0] / errors[-1]) / math.log(sizes[0] / sizes[-1])


SIZES = [0.4, 0.2, 0.1]


def test_continuous_extension_order_is_four():
    # Order 4 at interior points: the error at s = 1/2 is C h^5 (1 + O(h)). A
    # weight of order 3 would give a slope of 4; the O(h) term moves the slope by
    # about h = 0.4 at most over these sizes, so 4.5 separates the two.
    errors = [
        float(np.max(np.abs(steps.dense_state(_rotation_step(h), 0.5)
                            - _exact_rotation(h / 2))))
        for h in SIZES
    ]  # fmt: skip
    assert _slope(errors, SIZES) >= 4.5


def test_continuous_extension_beats_cubic_hermite():
    # The cubic Hermite interpolant has order 3 (error O(h^4) at s = 1/2), the
    # extension order 4, so at h = 0.1 the extension is closer by about a factor
    # h. Half of that factor leaves room for the constants of the two errors.
    step = _rotation_step(0.1)
    exact = _exact_rotation(0.05)
    quartic = float(np.max(np.abs(steps.dense_state(step, 0.5) - exact)))
    cubic = float(np.max(np.abs(step.interpolate(0.5) - exact)))
    assert quartic <= 0.5 * cubic


@pytest.mark.parametrize("fraction", [0.3, 0.75])
def test_restricted_step_keeps_the_cubic(fraction):
    step = _rotation_step(0.3)
    end = step.interpolate(fraction)
    part = step.restricted(fraction, end, np.zeros(2))
    assert part.size == pytest.approx(0.3 * fraction, rel=4 * EPS)
    assert np.array_equal(part.y1, end)
    # Points of the part are points of the whole cubic. Reparametrising scales
    # the coefficients by fraction^k, each with one rounding, and the end point
    # enters through y1, which matches the cubic to a few roundoffs.
    for u in (0.0, 0.2, 0.5, 0.9, 1.0):
        whole = step.interpolate(u * fraction)
        assert np.max(np.abs(part.interpolate(u) - whole)) <= 32 * EPS


def test_dense_velocity_matches_end_slopes():
    # The extension matches the slope h f at both ends of the step: b'(0) picks
    # the first stage, f(y0), and b'(1) the seventh, f(y1). The weights' sums
    # at s = 1 cancel to within a few roundoffs of the entries (up to 10.1).
    step = _rotation_step(0.3)
    start = steps.dense_velocity(step, 0.0)
    end = steps.dense_velocity(step, 1.0)
    assert np.array_equal(start, 0.3 * step.stages[0])
    bound = 0.3 * 64 * 10.1 * EPS * np.max(np.abs(step.stages))
    assert np.max(np.abs(end - 0.3 * step.stages[6])) <= bound


def test_dense_velocity_is_derivative_of_state():
    # Central differences of the quartic with spacing e have error e^2/6 times
    # its third derivative, h sum_i b_i'''(s) k_i, whose size is at most
    # h max|k| sum_i (6 |P_i2| + 24 |P_i3|); roundoff adds about eps |y| / e.
    step = _rotation_step(0.3)
    e = 1e-4
    third = np.sum(6 * np.abs(steps.DP_DENSE[:, 2]) + 24 * np.abs(steps.DP_DENSE[:, 3]))
    for s in (0.2, 0.6):
        difference = steps.dense_state(step, s + e) - steps.dense_state(step, s - e)
        slope = difference / (2 * e)
        bound = e**2 / 6 * third * 0.3 * np.max(np.abs(step.stages)) + 4 * EPS / e
        assert np.max(np.abs(steps.dense_velocity(step, s) - slope)) <= bound
