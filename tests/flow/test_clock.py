"""Gradient-flow time along one step: ``ncflow.flow.clock`` on closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow.flow import clock
from ncflow.flow.step_time import StepTime, hermite_start

EPS = float(np.finfo(np.float64).eps)


def _linear_clock(intercept: float, slope: float, size: float) -> clock.StepClock:
    """Return a clock with ``Phi(s) = intercept + slope * s`` on a step of ``size``."""
    return clock.StepClock(intercept + slope * clock.NODES, size)


def _roundoff(step_clock: clock.StepClock, values: np.ndarray) -> float:
    """Return a bound on the roundoff error of the fitted ``Phi``: the inverse
    Vandermonde matrix's row-sum norm times eps times the largest sample."""
    inverse, _, _ = clock._fitters(values.size)
    return float(np.max(np.sum(np.abs(inverse), axis=1))) * EPS * np.max(np.abs(values))


@pytest.mark.parametrize("slope", [1e-3, 0.5, 3.0, 30.0])
@pytest.mark.parametrize("upper", [0.3, 1.0])
def test_log_integral_of_linear_phi(slope, upper):
    # int_0^u exp(a + b s) ds = exp(a) (exp(b u) - 1) / b, times the step size.
    intercept, size = -2.0, 0.7
    step_clock = _linear_clock(intercept, slope, size)
    exact = math.log(size) + intercept + math.log(math.expm1(slope * upper) / slope)
    # A degree-5 interpolant reproduces a linear Phi up to the roundoff of its
    # fit, which shifts the log-integral by at most that much. The Gauss panels
    # and the summation add a few eps relative.
    values = intercept + slope * clock.NODES
    bound = _roundoff(step_clock, values) + 16 * EPS * max(1.0, abs(exact))
    assert abs(step_clock.log_integral(upper) - exact) <= bound


@pytest.mark.parametrize("offset", [0.0, 20.0])
@pytest.mark.parametrize("seed", range(6))
def test_spread_bound_is_above_sampled_spread(seed, offset):
    # An offset above LOG_SWITCH makes the clock fit log(Phi), and the bound then
    # goes through exp. A random scale up to 10 makes some of those bounds
    # infinite.
    rng = np.random.default_rng(seed)
    values = offset + rng.normal(
        scale=10.0 ** rng.uniform(-9, 1), size=clock.NODES.size
    )
    step_clock = clock.StepClock(values, 1.0)
    assert step_clock.logarithmic == (offset > clock.LOG_SWITCH)
    a, b = np.sort(rng.uniform(0.0, 1.0, size=2))
    grid = np.linspace(a, b, 2001)
    for low in (False, True):
        sampled = step_clock.phi(grid, low)
        spread = float(sampled.max() - sampled.min())
        assert clock._spread_bound(step_clock, a, b, low) >= spread


@pytest.mark.parametrize("rate", [1e-3, 0.05])
def test_spread_bound_holds_for_linear_log_phi(rate):
    # With log(Phi) = 3 + rate s, Phi spreads by exp(p(a)) (exp(S) - 1) on
    # [a, b], more than exp(p(a)) S: a bound that drops the exponential's
    # curvature fails here.
    step_clock = clock.StepClock(np.exp(3.0 + rate * clock.NODES), 1.0)
    assert step_clock.logarithmic
    for a, b in [(0.0, 1.0), (0.2, 0.9)]:
        sampled = step_clock.phi(np.linspace(a, b, 2001))
        spread = float(sampled.max() - sampled.min())
        assert clock._spread_bound(step_clock, a, b, False) >= spread


@pytest.mark.parametrize("offset", [0.0, 20.0])
def test_panels_skip_grid_only_below_spread(offset):
    # A Phi that varies by 1e-6 over the step takes the single panel, also when
    # it is fitted in the log domain. The grid path would have chosen the same
    # panel, so the points are equal.
    step_clock = _linear_clock(offset, 1e-6, 1.0)
    assert clock._spread_bound(step_clock, 0.0, 1.0, False) <= clock.PANEL_SPREAD / 2
    x, weights = clock._panel_points(step_clock, 0.0, 1.0, False)
    one_x, one_weights = clock._one_panel_points(0.0, 1.0)
    assert np.array_equal(x, one_x)
    assert np.array_equal(weights, one_weights)
    # A steep logarithmic clock does not.
    steep = _linear_clock(20.0, 60.0, 1.0)
    assert steep.logarithmic
    assert clock._spread_bound(steep, 0.0, 1.0, False) == math.inf


@pytest.mark.parametrize(
    "values", [-2.0 + 5.0 * clock.NODES + clock.NODES**2, 30.0 * np.exp(clock.NODES)]
)
def test_integral_between_adds_up(values):
    # log int_0^b = log(int_0^a + int_a^b) where one panel covers [a, b]. Both
    # sides are sums of exp(Phi) at Gauss points with positive weights, each
    # accurate to a few eps relative; Phi itself carries the fit's roundoff.
    step_clock = clock.StepClock(values, 0.3)
    a, b = 0.55, 0.56
    between = step_clock.log_integral_between(a, b)
    assert between is not None
    combined = clock.add_log(step_clock.log_integral(a), between)
    expected = step_clock.log_integral(b)
    bound = _roundoff(step_clock, values) + 16 * EPS * max(1.0, abs(expected))
    assert abs(combined - expected) <= bound
    # And backwards: int_0^a = int_0^b - int_a^b.
    back = clock.sub_log(expected, between)
    assert abs(back - step_clock.log_integral(a)) <= 2 * bound
    # Over the whole step Phi varies by more than one panel allows.
    assert step_clock.log_integral_between(0.0, 1.0) is None


@pytest.mark.parametrize(
    "values",
    [
        np.linspace(-2.0, 3.0, 6),
        np.linspace(10.0, 80.0, 6),
        10.0 + 1e-3 * np.arange(6.0) ** 3,
    ],
)
def test_error_estimate_on_shared_points(values):
    # The lower interpolant is summed on the higher one's points, which resolve
    # its exp(Phi) to float64 accuracy as its own points would. So the two
    # integrals agree up to roundoff, also for the second set, which varies by
    # 70 and takes many panels.
    step_clock = clock.StepClock(values, 1.0)
    alone = clock.StepClock(values, 1.0)._log_integral(1.0, True)
    bound = _roundoff(step_clock, values) + 16 * EPS * max(1.0, abs(alone))
    assert abs(step_clock.log_integral(1.0, low=True) - alone) <= bound
    high = clock.StepClock(values, 1.0)._log_integral(1.0, False)
    assert step_clock.log_integral(1.0) == high


@pytest.mark.parametrize(
    ("m0", "m1", "goal"), [(0.1, 2.5, 0.3), (1.0, 1.0, 0.7), (0.01, 2.9, 0.05)]
)
def test_record_start_inverts_cubic(m0, m1, goal):
    # When log t is itself the cubic with these end values and slopes, the start
    # is the exact place of the target. Newton on a monotone cubic converges to
    # roundoff within HERMITE_NEWTON iterations from the chord's point.
    log_t0, span = 5.0, 2.0

    def log_t(x):
        return log_t0 + span * (
            x * x * (3 - 2 * x) + m0 * x * (1 - x) ** 2 - m1 * x * x * (1 - x)
        )

    x = hermite_start(log_t0, log_t0 + span, m0 * span, m1 * span, log_t(goal))
    # The target and the cubic carry a few roundoffs of log t, which is at most
    # log_t0 + span, in units of span. The slope of the cubic at the goal turns
    # that into a distance in x.
    slope = (
        6 * goal * (1 - goal)
        + m0 * (1 - goal) * (1 - 3 * goal)
        - m1 * goal * (2 - 3 * goal)
    )
    assert abs(x - goal) <= 8 * EPS * (log_t0 + span) / span / slope


def test_record_start_chord_fallback():
    # Slopes this large at both ends make the cubic fall in the middle of the
    # step, so Newton on it has no reliable root. The chord's point is used.
    assert hermite_start(0.0, 1.0, 8.0, 8.0, 0.3) == 0.3
    assert hermite_start(1.0, 1.0, 1.0, 1.0, 1.0) is None


@pytest.mark.parametrize(
    "values", [np.linspace(-2.0, 3.0, 6), np.linspace(10.0, 80.0, 6)]
)
def test_phi_at_matches_array_form(values):
    # The second set is above LOG_SWITCH, so Phi is fitted in the log domain and
    # exponentiated. math.exp and numpy's exp may differ in the last bit.
    step_clock = clock.StepClock(values, 0.5)
    for s in (0.0, 0.3, 1.0):
        expected = float(step_clock.phi(s))
        assert abs(step_clock.phi_at(s) - expected) <= 2 * EPS * abs(expected)


class _NodeClockOnly:
    """Stand-in for the integrator, which StepTime only calls for the interpolant."""

    def __init__(self, step_clock: clock.StepClock) -> None:
        self.step_clock = step_clock

    def _node_clock(self, step):
        return self.step_clock


@pytest.mark.parametrize(
    "values", [-2.0 + 5.0 * clock.NODES + clock.NODES**2, 30.0 * np.exp(clock.NODES)]
)
def test_bridged_partials_match_direct(values):
    # A Newton search requests nearby points, forwards and backwards. Each is
    # bridged from the last by one panel where that is accurate, and integrated
    # from 0 otherwise (the jump to 0.9). Each bridge adds the error of one
    # panel sum. A backward one at most doubles what it carries, because it
    # subtracts at most half. Along 0.3, 0.305, 0.2999, 0.31 that is 1 + 1 + 2
    # + 1 = 5 units next to the direct integral's own 1, hence 6.
    step_clock = clock.StepClock(values, 0.3)
    step_time = StepTime(_NodeClockOnly(step_clock), step=None)
    for s in (0.3, 0.305, 0.2999, 0.31, 0.9, 0.8999):
        expected = step_clock.log_integral(s)
        bound = _roundoff(step_clock, values) + 16 * EPS * max(1.0, abs(expected))
        assert abs(step_time.partial(s) - expected) <= 6 * bound


@pytest.mark.parametrize("scale", [2e7, 1.1e8])
@pytest.mark.parametrize("rate", [0.05, 0.223])
def test_late_log_integral_keeps_phi_to_roundoff(scale, rate):
    # Late in the flow Phi is of the size of log t and log(Phi) near 17, but it
    # varies by a fraction over a step. With log(Phi) = c0 + rate * s the
    # endpoint expansion is exact to order Phi'^-3 (below 1e-20 here), so the
    # integral's error is Phi's. The centred fit errs in log(Phi) by eps times
    # twice the end value plus the inverse Vandermonde matrix's absolute entry
    # sum times the spread. Exp and log add a few eps. A fit of the raw values
    # errs by that entry sum times the end value instead: 1.6e3 to 1.5e4 eps here.
    data = math.log(scale) + rate * clock.NODES
    values = np.exp(data)
    step_clock = clock.StepClock(values, 1.0)
    phi1 = float(values[-1])
    d1, d2, d3 = phi1 * rate, phi1 * rate**2, phi1 * rate**3
    series = 1 + d2 / d1**2 + 3 * d2**2 / d1**4 - d3 / d1**3
    exact = phi1 - math.log(d1) + math.log(series)
    inverse, _, _ = clock._fitters(data.size)
    fit = 2 * abs(data[-1]) + float(np.sum(np.abs(inverse))) * float(np.ptp(data))
    assert abs(step_clock.log_integral(1.0) - exact) <= (4 + fit) * EPS * phi1


@pytest.mark.parametrize("slope", [0.5, 3.0, 30.0])
def test_plain_fit_of_large_linear_phi(slope):
    # In the norm clock Phi = log dt/dR is nearly linear and above LOG_SWITCH.
    # Fitted plain, a linear Phi is reproduced up to the roundoff of the fit, so
    # both the integral and the error estimate are within that. Fitted in the
    # log, log(13 + slope s) is not a polynomial, and the estimate shows it.
    intercept, size = 13.0, 25.0
    values = intercept + slope * clock.NODES
    plain = clock.StepClock(values, size, allow_log=False)
    assert not plain.logarithmic
    exact = math.log(size) + intercept + math.log(math.expm1(slope) / slope)
    bound = _roundoff(plain, values) + 16 * EPS * abs(exact)
    assert abs(plain.log_integral(1.0) - exact) <= bound
    assert plain.error_estimate() <= 2 * bound
    logged = clock.StepClock(values, size)
    assert logged.logarithmic
    assert logged.error_estimate() > 100 * bound


@pytest.mark.parametrize("slope", [1e-3, 1.0, 1e3])
def test_norm_step_clock_integrates_in_R(slope):
    # The norm clock steps in u = -R^(-1/2). With Phi = log dt/dR = a + b R,
    # t(s) - t(0) = exp(a) (exp(b R(s)) - exp(b R_0)) / b in closed form, while
    # log dt/du = a + b R + log(2 R^(3/2)) is far from a polynomial in u once
    # b R is large. The clock samples Phi at nodes of R, so a linear Phi is
    # reproduced up to the roundoff of its fit.
    u0, size, a = -0.05, 0.02, -1.0  # R from 400 to 1111
    R_nodes = (u0 + size * clock.NormStepClock.node_fractions(u0, size, 6)) ** -2
    values = a + slope * R_nodes
    step_clock = clock.NormStepClock(values, u0, size)
    R0 = u0**-2
    # An error delta of the fitted Phi moves the log-integral by at most delta.
    # R(s) itself carries a few eps relative, which Phi multiplies by b R.
    fit = _roundoff(step_clock.inner, values)
    for s in (0.3, 1.0):
        R = (u0 + s * size) ** -2
        x = slope * (R - R0)
        log_expm1 = x + math.log(-math.expm1(-x))  # log(exp(x) - 1)
        exact = a + slope * R0 + log_expm1 - math.log(slope)
        bound = fit + 16 * EPS * (abs(exact) + slope * R)
        assert abs(step_clock.log_integral(s) - exact) <= bound
        speed = a + slope * R + math.log(2 * R**1.5 * size)
        assert abs(step_clock.log_size + step_clock.phi_at(s) - speed) <= bound
    # The fractions map onto the nodes of R: Chebyshev-Lobatto points of [R0, R1].
    R1 = (u0 + size) ** -2
    expected = R0 + (R1 - R0) * clock.lobatto_nodes(6)
    assert np.allclose(R_nodes, expected, rtol=16 * EPS)


def test_norm_step_clock_below_resolution_of_R():
    # A step of 2.4e-17 in u from u = -0.369 leaves R = 7.34 unchanged in
    # float64, and the clock raised "math domain error". Its gain in R is
    # 2 size / |u|^3 to first order, with a relative error of about
    # 3 size / |u|, and with Phi = 0 the gain in t is that too. A few roundoffs
    # of the formula and of the log come on top.
    u0, size = -0.36904031512914326, 2.4384027269110046e-17
    step_clock = clock.NormStepClock(np.zeros(6), u0, size)
    gain = 2 * size / abs(u0) ** 3
    bound = 3 * size / abs(u0) + 16 * EPS
    assert abs(step_clock.log_integral(1.0) - math.log(gain)) <= bound
