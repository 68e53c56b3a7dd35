"""The implicit method keeps its Jacobian across steps without losing accuracy.

A Radau step's Newton iteration converges to the same collocation solution with
any Jacobian close enough to contract, and only the number of iterations depends
on it. So a run that keeps its Jacobian must agree with one that forms a fresh
one at every implicit step, up to the error each is allowed. A Newton failure
with a kept Jacobian must be retried with a fresh one before the step is blamed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow.flow import Norm2Above, adaptive, radau, solve_flow
from ncflow.flow.result import STATUS_TERMINAL_EVENT
from tests.flow.test_accuracy import PROBLEMS

RTOL = 1e-8
ATOL = 1e-12
NORM2 = 1e8


def _run(name: str):
    problem, params0 = PROBLEMS[name]()
    return solve_flow(
        problem, params0, rtol=RTOL, atol=ATOL, events=[Norm2Above(NORM2)]
    )


def _directions(result) -> np.ndarray:
    flat = result.params.flat()
    return flat / np.linalg.norm(flat)


@pytest.mark.parametrize("name", ["binary", "three-class"])
def test_kept_jacobian_matches_fresh(name, monkeypatch):
    kept = _run(name)
    # No contraction factor is negative, so this forms a Jacobian at every step.
    monkeypatch.setattr(adaptive, "JACOBIAN_REUSE_RATE", -1.0)
    fresh = _run(name)
    for result in (kept, fresh):
        assert result.status == STATUS_TERMINAL_EVENT, result.message
    assert kept.njev < fresh.njev / 4, (kept.njev, fresh.njev)

    # Both runs are the same computation up to the first implicit step, and past
    # it the flow contracts towards its limit directions, so the global error of
    # each is at most the sum of its local errors. A local error is at most
    # rtol |y| + atol per state component. The direction entries are at most 1,
    # and theta / ||theta|| changes by at most as much as they do.
    local = RTOL + ATOL
    bound = (kept.n_accepted + fresh.n_accepted) * local
    gap = float(np.max(np.abs(_directions(kept) - _directions(fresh))))
    assert gap <= bound, f"directions differ by {gap:.3e} > {bound:.3e}"
    # log t: each step adds at most (atol + rtol) max(1, |log t|) (the clock's
    # tolerance), and both runs end on the same R.
    clock = (kept.n_accepted + fresh.n_accepted) * local * max(1.0, abs(fresh.log_t))
    assert abs(kept.log_t - fresh.log_t) <= clock


def test_failed_newton_retries_fresh_jacobian(monkeypatch):
    # Every iteration with a kept Jacobian (one formed at an earlier state) is
    # made to fail. The run must still finish: each failure is followed by a
    # fresh Jacobian at the same state, with which the step succeeds. Without the
    # retry the step is rejected and shrunk with the same kept Jacobian until it
    # falls below the minimum step.
    formed_at = []  # (Jacobian, the state of its first use)
    calls = []
    real_step = radau.radau_step

    def failing_when_kept(rhs, y0, f0, jacobian, *args, **kwargs):
        origin = next((y for J, y in formed_at if J is jacobian), None)
        if origin is None:
            formed_at.append((jacobian, y0.copy()))
        kept = origin is not None and not np.array_equal(origin, y0)
        calls.append((kept, y0.copy()))
        step, nfev = real_step(rhs, y0, f0, jacobian, *args, **kwargs)
        if kept:
            step.y1 = np.full_like(step.y1, math.nan)
        return step, nfev

    monkeypatch.setattr(adaptive, "radau_step", failing_when_kept)
    result = _run("three-class")
    assert result.status == STATUS_TERMINAL_EVENT, result.message
    failures = [i for i, (kept, _) in enumerate(calls) if kept]
    assert failures, "no step was tried with a kept Jacobian"
    for i in failures:
        retried, y0 = calls[i + 1]
        assert not retried
        np.testing.assert_array_equal(y0, calls[i][1])
