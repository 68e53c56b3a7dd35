"""The scalar root finders of ``ncflow._numeric`` on functions with known roots."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow._numeric import find_root, find_root_newton

EPS = np.finfo(np.float64).eps


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
