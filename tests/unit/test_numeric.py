"""The kernels of ``ncflow._numeric``: logsumexp against 50-digit mpmath and its
handling of infinities, and the scalar root finders on functions with known roots."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from ncflow._numeric import find_root, find_root_newton, logsumexp

EPS = np.finfo(np.float64).eps


def _reference_logsumexp(values: np.ndarray, weights: np.ndarray | None) -> float:
    """Return log sum weights exp(values) in 50-digit mpmath, rounded to float64."""
    import mpmath  # comes with torch through sympy, so a missing one fails

    if weights is None:
        weights = np.ones_like(values)
    with mpmath.workdps(50):
        terms = [
            mpmath.mpf(float(w)) * mpmath.exp(mpmath.mpf(float(v)))
            for v, w in zip(values.ravel(), weights.ravel(), strict=True)
        ]
        return float(mpmath.log(mpmath.fsum(terms)))


def _logsumexp_tolerance(values: np.ndarray, weighted: bool) -> float:
    """Bound the error of one reduction over ``values`` by counting ulps.

    With B = 2 max |v| + log m + 1 for m entries, every log-domain intermediate
    (v - max, the log of the sum, the result) is at most B in size for weights
    in [0.5, 1]. Each term exp(v - max) errs by one ulp of B from the shift and
    one from exp, relative to itself, and by one ulp more from a weight. The sum
    of these positive terms adds m - 1 roundings of its own size. log turns that
    relative error into an absolute one, and log, the final addition and the
    rounding of the reference add one ulp of B each.
    """
    m = values.size
    bound = 2 * float(np.max(np.abs(values))) + math.log(m) + 1
    return EPS * (2 * bound + (1 if weighted else 0) + (m - 1) + 3 * bound)


LOGSUMEXP_SHAPES = [(12,), (30,), (150,), (3, 30), (5, 30), (30, 3)]
LOGSUMEXP_SCALES = [1e-6, 1.0, 30.0, 1e4, 1e8, 1e12]


@pytest.mark.parametrize("shape", LOGSUMEXP_SHAPES)
@pytest.mark.parametrize("scale", LOGSUMEXP_SCALES)
def test_logsumexp_matches_mpmath(shape, scale):
    rng = np.random.default_rng(len(shape) * 1000 + shape[0] + int(np.log10(scale)))
    values = rng.normal(size=shape) * scale

    total = logsumexp(values)
    assert isinstance(total, float)
    expected = _reference_logsumexp(values, None)
    assert abs(total - expected) <= _logsumexp_tolerance(values, weighted=False)

    for axis in range(-len(shape), len(shape)):
        rows = logsumexp(values, axis=axis)
        position = axis % len(shape)
        expected_shape = tuple(size for i, size in enumerate(shape) if i != position)
        assert rows.shape == expected_shape
        moved = np.moveaxis(values, axis, -1).reshape(-1, shape[axis])
        for row, result in zip(moved, rows.ravel(), strict=True):
            expected = _reference_logsumexp(row, None)
            assert abs(result - expected) <= _logsumexp_tolerance(row, weighted=False)


@pytest.mark.parametrize("scale", LOGSUMEXP_SCALES)
def test_weighted_logsumexp_matches_mpmath(scale):
    rng = np.random.default_rng(int(np.log10(scale)) + 60)
    values = rng.normal(size=(16, 10)) * scale
    weights = rng.uniform(0.5, 1.0, size=(16, 10))

    total = logsumexp(values, weights=weights)
    expected = _reference_logsumexp(values, weights)
    assert abs(total - expected) <= _logsumexp_tolerance(values, weighted=True)

    rows = logsumexp(values, axis=1, weights=weights)
    for i in range(values.shape[0]):
        expected = _reference_logsumexp(values[i], weights[i])
        tolerance = _logsumexp_tolerance(values[i], weighted=True)
        assert abs(rows[i] - expected) <= tolerance


INF = math.inf

# Each case: values, expected log-sum-exp of all entries, expected per row.
INFINITE_CASES = [
    pytest.param([[-INF, -INF], [-INF, -INF]], -INF, [-INF, -INF], id="all-minus-inf"),
    pytest.param([[-INF, 2.0], [-INF, -INF]], 2.0, [2.0, -INF], id="minus-inf-skipped"),
    pytest.param([[1.0, INF], [0.0, 3.0]], INF, [INF, None], id="plus-inf"),
    pytest.param([[-INF, INF], [-INF, -INF]], INF, [INF, -INF], id="both-infinities"),
]


@pytest.mark.parametrize(("values", "total", "rows"), INFINITE_CASES)
def test_logsumexp_infinities_without_warnings(values, total, rows):
    values = np.array(values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result_total = logsumexp(values)
        result_weighted = logsumexp(values, weights=np.ones_like(values))
        result_rows = logsumexp(values, axis=1)
        result_weighted_rows = logsumexp(values, axis=1, weights=np.ones_like(values))

    assert result_total == total
    assert result_weighted == total
    for result in (result_rows, result_weighted_rows):
        for value, expected in zip(result, rows, strict=True):
            if expected is None:
                assert math.isfinite(value)
            else:
                assert value == expected


def test_logsumexp_propagates_nan():
    values = np.array([[1.0, math.nan], [0.0, 1.0]])
    assert math.isnan(logsumexp(values))
    rows = logsumexp(values, axis=1)
    assert math.isnan(rows[0])
    assert rows[1] == pytest.approx(math.log(1.0 + math.e), abs=4 * EPS)


def _log_time(s: float, log_start: float, rate: float) -> tuple[float, float]:
    """Return ``log(t0 + (exp(rate s) - 1) / rate)`` and its derivative in ``s``,
    with ``log t0 = log_start``: the shape of ``log t`` along a step."""
    gained = math.expm1(rate * s) / rate
    start = math.exp(log_start) if log_start > -math.inf else 0.0
    total = start + gained
    value = math.log(total) if total > 0 else -math.inf
    slope = math.exp(rate * s) / total if total > 0 else math.inf
    return value, slope


@pytest.mark.parametrize("log_start", [-math.inf, -3.0, 2.0])
@pytest.mark.parametrize("rate", [1e-3, 1.0, 30.0])
def test_newton_root_of_log_time(log_start, rate):
    def shifted(s):
        value, slope = _log_time(s, log_start, rate)
        return value - target, slope

    target = _log_time(0.37, log_start, rate)[0]
    root = find_root_newton(shifted, 0.0, 1.0)
    # The root is found to xtol = 1e-15 in s, plus the roundoff of evaluating
    # log t (a few eps relative to |log t|) over the slope d log t / ds.
    slope = _log_time(0.37, log_start, rate)[1]
    bound = 1e-15 + 8 * EPS * max(1.0, abs(target)) / slope
    assert abs(root - 0.37) <= bound


def test_newton_root_agrees_with_regula_falsi():
    def cubic(s):
        return (s - 0.6) * (s * s + 1.0)

    def cubic_and_slope(s):
        return cubic(s), (s * s + 1.0) + 2 * s * (s - 0.6)

    newton = find_root_newton(cubic_and_slope, 0.0, 1.0)
    falsi = find_root(cubic, 0.0, 1.0)
    assert abs(newton - 0.6) <= 4 * EPS
    assert abs(newton - falsi) <= 4 * EPS


def test_newton_root_at_bracket_end():
    root = find_root_newton(lambda s: (s - 1.0, 1.0), 0.0, 1.0)
    assert root == pytest.approx(1.0, abs=1e-15)


def test_newton_root_with_wrong_slope_still_converges():
    # A slope of the wrong sign sends every Newton step out of the bracket, so the
    # search must fall back to bisection and still narrow to the root.
    root = find_root_newton(lambda s: (s - 0.3, -1.0), 0.0, 1.0)
    assert abs(root - 0.3) <= 1e-15


def test_newton_root_stops_at_ftol():
    # With ftol the search returns the first point whose value is that small: a
    # start 0.01 from the root of s - 0.5 has value 0.01, which ftol = 0.02
    # accepts at once, and ftol = 0 does not.
    loose = find_root_newton(lambda s: (s - 0.5, 1.0), 0.0, 1.0, start=0.51, ftol=0.02)
    exact = find_root_newton(lambda s: (s - 0.5, 1.0), 0.0, 1.0, start=0.51)
    assert loose == 0.51
    assert abs(exact - 0.5) <= 4 * EPS
