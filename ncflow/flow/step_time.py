"""Gradient-flow time along a step of the adaptive driver, and what a landing keeps.

The driver integrates in a clock of its own (``tau``, or ``u`` in the norm
clock), so the gradient-flow time ``t`` of a step is a quadrature of ``dt/ds``
over it (``clock.py``). ``StepTime`` contains that quadrature for one step, built on
demand: the whole step for the error control, interior points for records and
located events. ``hermite_start`` starts the search for a record's place in a
step; ``Landing`` is the part of an accepted step that the driver keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ncflow.flow.clock import StepClock, add_log, sub_log
from ncflow.flow.steps import DP_B, DP_E, Step, dense_weights

if TYPE_CHECKING:
    from ncflow.flow.adaptive import AdaptiveFlow

# Spread of log dt/ds over an explicit step up to which its own Runge-Kutta
# weights integrate dt/ds (beyond, the node interpolant of clock.py does).
STAGE_RULE_SPREAD = 1.0
# Newton iterations on the cubic that starts the search for a record's place.
# The result is only a start, not the root, so a few are enough.
HERMITE_NEWTON = 8
# Returned in place of a landing when the step must be rejected and retried.
RETRY = object()


@dataclass
class Landing:
    """The part of an accepted step that is kept, and why it ends where it does."""

    step: Step | None  # None: the event is at the start of the step
    clock: StepTime | None
    err: float
    cluster: list | None = None
    event_index: int | None = None  # -1: end of the time span
    residual: float = 0.0
    # Where the step is None: the log t reached without a change of the state,
    # else None (no time passes).
    log_t: float | None = None


class StepTime:
    """Gradient-flow time gained along one step, ``log(t(s) - t(0))``.

    An explicit step integrates ``dt/ds`` with its own Runge-Kutta weights on
    the stage values it computed anyway (5th order, error from the embedded
    weights); a linearly implicit step, whose stages give no quadrature rule,
    interpolates ``log dt/ds`` at the nodes of ``clock.py``. Interior points
    (records, located events) always use the interpolant, built on demand.
    """

    def __init__(self, flow: AdaptiveFlow, step: Step) -> None:
        self.flow = flow
        self.step = step
        self._nodes: StepClock | None = None
        self._full: tuple[float, float] | None = None
        # The last interior point integrated to, as (s, log(t(s) - t(0))).
        self._last: tuple[float, float] = (0.0, -math.inf)

    def nodes(self) -> StepClock:
        if self._nodes is None:
            self._nodes = self.flow._node_clock(self.step)
        return self._nodes

    def full(self) -> tuple[float, float]:
        """``(log dt, absolute error estimate of log dt)`` over the whole step."""
        if self._full is None:
            rates = getattr(self.step, "stage_log_rates", None)
            # The Runge-Kutta weights integrate exp(psi) well only while psi
            # varies by O(1) over the step; past that the interpolant of psi
            # (or log psi) with its endpoint expansion is the accurate rule.
            if rates is not None and np.ptp(rates) <= STAGE_RULE_SPREAD:
                self._full = runge_kutta_log_integral(rates, self.step.size)
            else:
                clock = self.nodes()
                self._full = (clock.log_integral(1.0), clock.error_estimate())
        return self._full

    def partial(self, s: float) -> float:
        if s >= 1.0:
            return self.full()[0]
        clock = self.nodes()
        value = self._bridge(clock, s)
        if value is None:
            value = clock.log_integral(s)
        self._last = (s, value)
        return value

    def _bridge(self, clock: StepClock, s: float) -> float | None:
        """Return ``log(t(s) - t(0))`` from the last point integrated to, by one
        panel between the two, or None where that panel could be inaccurate.

        A Newton search for a record's place, and the next record of the step,
        request points close to the last one. Backwards, the panel's part is
        subtracted only while it is at most half of the total, so each bridge
        loses at most one bit to cancellation. A chain of backward bridges
        compounds that, but a record's search takes a few at most.
        """
        last_s, last_value = self._last
        if s == last_s:
            return last_value
        if s > last_s:
            between = clock.log_integral_between(last_s, s)
            return None if between is None else add_log(last_value, between)
        between = clock.log_integral_between(s, last_s)
        if between is None or between > last_value - math.log(2.0):
            return None
        return sub_log(last_value, between)

    def log_speed(self, s: float) -> float:
        """``log dt/ds`` at the fraction ``s`` of the step, from the interpolant."""
        clock = self.nodes()
        return clock.log_size + clock.phi_at(s)


def runge_kutta_log_integral(log_rates: np.ndarray, size: float) -> tuple[float, float]:
    """``log(h sum_i b_i exp(psi_i))`` with the Dormand-Prince weights, and the
    error estimate from the embedded ones, both in the log domain."""
    top = float(np.max(log_rates))
    values = np.exp(log_rates - top)
    total = float(np.dot(DP_B, values[:6]))
    error = abs(float(np.dot(DP_E, values[:7])))
    if total <= 0:
        return -math.inf, math.inf
    return math.log(size) + top + math.log(total), error / total


def dense_log_integral(
    log_rates: np.ndarray, size: float, fraction: float
) -> tuple[float, float] | None:
    """``log(t(s) - t(0))`` at ``s = fraction`` of an explicit step by the
    continuous extension, and an absolute error estimate of it; None where the
    extension is not positive there.

    ``t`` is integrated as one more component of the flow, with stage slopes
    ``exp(psi_i)``. The error estimate is relative to ``t(s)``. Its first part
    is the distance to the cubic Hermite interpolant of ``t`` through both ends
    of the step, which is an order lower and so bounds the extension's
    interpolation error. Its second part is the embedded estimate of the whole
    step, whose error both ends carry.
    """
    top = float(np.max(log_rates))
    slopes = np.exp(log_rates - top)  # dt/dtau at the stages, in units of exp(top)
    quartic = float(dense_weights(fraction) @ slopes)
    if not quartic > 0:
        return None
    whole = float(np.dot(DP_B, slopes[:6]))
    start, end = slopes[0], slopes[6]
    dense_1 = start - whole
    dense_2 = whole - end - dense_1
    cubic = fraction * (whole + (1 - fraction) * (dense_1 + fraction * dense_2))
    embedded = abs(float(np.dot(DP_E, slopes)))
    log_dt = math.log(size) + top + math.log(quartic)
    return log_dt, (abs(quartic - cubic) + embedded) / quartic


def hermite_start(
    log_t0: float, log_t1: float, slope0: float, slope1: float, target: float
) -> float | None:
    """Return the fraction of a step at which the cubic Hermite interpolant of
    ``log t``, from its values and slopes at both ends, reaches ``target``.

    It is the start of the Newton search for a record's place. The chord between
    the ends starts that search up to 0.06 of the step away, where ``log t`` bends
    (``t`` at the start dominates the first part of a step and the integral of
    ``dt/ds`` the rest). Returns None for a step that does not advance ``log t``,
    and the chord's point where the cubic is not increasing on the way.
    """
    span = log_t1 - log_t0
    if not span > 0:
        return None
    m0, m1 = slope0 / span, slope1 / span
    goal = (target - log_t0) / span
    x = goal
    for _ in range(HERMITE_NEWTON):
        # u(x) on [0, 1] with u(0) = 0, u(1) = 1, u'(0) = m0, u'(1) = m1.
        u = x * x * (3 - 2 * x) + m0 * x * (1 - x) ** 2 - m1 * x * x * (1 - x)
        du = 6 * x * (1 - x) + m0 * (1 - x) * (1 - 3 * x) - m1 * x * (2 - 3 * x)
        if not du > 0:
            return goal
        x = min(1.0, max(0.0, x - (u - goal) / du))
    return x
