"""Landing on an activation change by the dense output of the step that found it.

An explicit step that crosses an activation boundary ends on the crossing without
a second step when the cubic dense output there is within the tolerance of the
4th-order continuous extension. The landing point is the crossing on the
extension, and the time gained is taken from the extension applied to
``dt/dtau`` at the stages. These tests compare that landing with the second step
it replaces, and the time rule with a closed-form integral.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow.flow import FlowResult, Separated, adaptive, solve_flow, step_time
from ncflow.flow.steps import DP_C
from tests.flow.test_events import ATOL, _problem

EPS = float(np.finfo(np.float64).eps)


@pytest.fixture(autouse=True)
def _explicit_crossings(monkeypatch):
    """Turn frozen-gradient steps off: they carry every activation change of the
    test problem, and these tests are about explicit steps that land on one."""
    monkeypatch.setattr(adaptive, "FROZEN_STEPS", False)


def _nodes() -> np.ndarray:
    return np.array(DP_C + (1.0,))


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("rate", [0.1, 1.0])
def test_dense_time_matches_closed_form(fraction, rate):
    # dt/dtau = exp(psi) with psi = log 2 + rate * tau over a step of size h: the
    # stages see psi at tau = c_i h, and int_0^(s h) exp(psi) = 2 (e^(r s h) - 1)/r.
    h = 0.5
    log_rates = math.log(2.0) + rate * h * _nodes()
    log_dt, error = step_time.dense_log_integral(log_rates, h, fraction)
    exact = math.log(2.0 * math.expm1(rate * fraction * h) / rate)
    # Order 4: the error is of order (rate h)^5 relative, and the estimate (the
    # distance to the cubic Hermite interpolant, order 3) is larger than it.
    assert abs(log_dt - exact) <= error + 16 * EPS * abs(exact)
    assert error <= (rate * h) ** 4


def test_dense_time_rejects_nonpositive_extension():
    # A rate that peaks at the 4th stage alone (c = 0.8): there the weight
    # b_4(0.2) = -0.078 dominates, the extension is negative at s = 0.2, and the
    # caller must take the step again.
    log_rates = np.zeros(7)
    log_rates[3] = 10.0
    assert step_time.dense_log_integral(log_rates, 1.0, 0.2) is None
    assert step_time.dense_log_integral(log_rates, 1.0, 1.0) is not None


def _without_dense_landing(monkeypatch) -> None:
    monkeypatch.setattr(
        adaptive.AdaptiveFlow, "_land_on_dense_output", lambda *args: None
    )


def _separation_run(rtol: float) -> FlowResult:
    problem, params0 = _problem()
    return solve_flow(
        problem, params0, rtol=rtol, atol=ATOL, events=[Separated()], max_steps=5000
    )


def _record_dense_landings(monkeypatch) -> list[int]:
    """Patch the integrator to list, for each dense landing, how many activation
    events preceded it; returns that list, filled in as runs go."""
    landed: list[int] = []
    original = adaptive.AdaptiveFlow._land_on_dense_output

    def recording(self, step, s, cluster):
        landing = original(self, step, s, cluster)
        if landing is not None:
            landed.append(len(self.activation_events))
        return landing

    monkeypatch.setattr(adaptive.AdaptiveFlow, "_land_on_dense_output", recording)
    return landed


def test_dense_landing_counted_in_settings(monkeypatch):
    landed = _record_dense_landings(monkeypatch)
    result = _separation_run(1e-6)
    assert result.success, result.message
    assert len(landed) >= 1
    assert result.settings["dense_landings"] == len(landed)


@pytest.mark.parametrize("rtol", [1e-6, 1e-7])
def test_dense_landing_agrees_with_second_step(rtol, monkeypatch):
    # Up to the first dense landing both runs take the same steps. There one lands
    # on the dense output and the other takes the step again; each point is within
    # the local tolerance delta = atol + rtol of the flow in every polar component,
    # so they differ by at most 2 delta there, and the log-time by at most twice
    # the clock tolerance delta * max(1, |log t|).
    landed = _record_dense_landings(monkeypatch)
    dense = _separation_run(rtol)
    assert landed, "no crossing was landed on by the dense output"
    first = landed[0]
    _without_dense_landing(monkeypatch)
    again = _separation_run(rtol)
    assert again.settings["dense_landings"] == 0

    events_dense = dense.trajectory.select("event")
    events_again = again.trajectory.select("event")
    for k in range(first):
        assert events_dense.log_t[k] == events_again.log_t[k]
        assert np.array_equal(events_dense.W[k], events_again.W[k])

    log_t_dense, log_t_again = events_dense.log_t[first], events_again.log_t[first]
    delta = ATOL + rtol
    assert abs(log_t_dense - log_t_again) <= 2 * delta * max(1.0, abs(log_t_again))
    # The unit directions omega_j = (w_j, v_j) / ||(w_j, v_j)|| are the polar
    # components (the state is normalised after each step); each entry is within
    # 2 delta, plus the roundoff of forming and normalising them again.
    omega_dense = _directions(events_dense.W[first], events_dense.V[first])
    omega_again = _directions(events_again.W[first], events_again.V[first])
    assert np.max(np.abs(omega_dense - omega_again)) <= 2 * delta + 16 * EPS


def _directions(W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Return the unit ``omega_j`` of each neuron, as columns, shape (D + d_y, h)."""
    omega = np.vstack([W, V])
    return omega / np.linalg.norm(omega, axis=0)


def test_dense_landing_is_on_the_extension(monkeypatch):
    # The landing point is the 4th-order continuous extension at the crossing,
    # not the cubic dense output there. The same step taken again to the same end
    # is shorter, so its error is far smaller, and the extension is the closer of
    # the two points to it.
    distances = []
    original = adaptive.AdaptiveFlow._land_on_dense_output

    def compare(self, step, s, cluster):
        landing = original(self, step, s, cluster)
        if landing is not None:
            fraction = landing.step.size / step.size
            again, _ = self._attempt(landing.step.size)
            scale = self.coords.scale(step.y0, self.rtol, self.atol)
            extension = np.max(np.abs(landing.step.y1 - again.y1) / scale)
            cubic = np.max(np.abs(step.interpolate(fraction) - again.y1) / scale)
            distances.append((extension, cubic))
        return landing

    monkeypatch.setattr(adaptive.AdaptiveFlow, "_land_on_dense_output", compare)
    result = _separation_run(1e-6)
    assert result.success, result.message
    assert len(distances) >= 3
    for extension, cubic in distances:
        assert extension < cubic
