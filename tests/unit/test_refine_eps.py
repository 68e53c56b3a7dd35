"""The repetition at smaller ``eps`` before a FAIL is reported (``refine_eps``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from ncflow.data import Dataset
from ncflow.network import Parameters
from theory_checks.common import refine_eps
from theory_checks.runs import Example, RunSettings
from theory_checks.verdict import Outcome, Verdict

SETTINGS = RunSettings(eps_factor=100.0, eps_floor=1e-9)


@dataclass(frozen=True)
class _Scale:
    """Stand-in for an example: refine_eps reads only its eps."""

    eps: float
    smallest_eps: float = 0.0

    def with_eps(self, eps: float) -> _Scale:
        return replace(self, eps=eps)

    def min_eps(self) -> float:
        return self.smallest_eps


def _check_in_turn(outcomes: list):
    """Return a check whose calls give ``outcomes`` in turn, each with a margin
    of ``1 / eps`` so that a test can tell the calls apart."""
    remaining = iter(outcomes)

    def check_once(example, settings):
        return Verdict(
            "C7",
            next(remaining),
            f"ran at {example.eps:.3g}",
            1.0,
            0.5,
            None,
            1.0 / example.eps,
        )

    return check_once


def test_persistent_fail_tries_down_to_floor():
    verdict = refine_eps(
        _check_in_turn([Outcome.FAIL] * 4), _Scale(1e-3), SETTINGS, unquantified=True
    )
    assert verdict.outcome is Outcome.FAIL
    assert verdict.eps_sequence == pytest.approx([1e-3, 1e-5, 1e-7, 1e-9])
    assert verdict.reason == "ran at 1e-09"


@pytest.mark.parametrize("later", [Outcome.PASS, Outcome.INCONCLUSIVE])
def test_repeat_that_does_not_fail_keeps_the_fail(later):
    check_once = _check_in_turn([Outcome.FAIL, Outcome.FAIL, later])
    verdict = refine_eps(check_once, _Scale(1e-3), SETTINGS, unquantified=True)
    assert verdict.outcome is later
    assert verdict.eps_sequence == pytest.approx([1e-3, 1e-5, 1e-7])
    assert "after a FAIL at eps=0.001" in verdict.reason
    earlier = verdict.details["fail_at_larger_eps"]
    # The last FAIL, at 1e-5, whose margin the stub set to 1 / eps.
    assert earlier["eps"] == pytest.approx(1e-5)
    assert earlier["margin"] == pytest.approx(1e5)
    assert earlier["reason"] == "ran at 1e-05"


def test_quantified_eps_fails_at_once():
    verdict = refine_eps(
        _check_in_turn([Outcome.FAIL]), _Scale(1e-3), SETTINGS, unquantified=False
    )
    assert verdict.outcome is Outcome.FAIL
    assert verdict.eps_sequence == [1e-3]
    assert "fail_at_larger_eps" not in verdict.details


def test_floor_below_underflow_stops_at_last_eps():
    verdict = refine_eps(
        _check_in_turn([Outcome.FAIL] * 2),
        _Scale(1e-3, smallest_eps=1e-6),
        SETTINGS,
        unquantified=True,
    )
    assert verdict.outcome is Outcome.FAIL
    assert verdict.eps_sequence == pytest.approx([1e-3, 1e-5])
    assert "stopped at eps=1e-05, above eps_floor=1e-09" in verdict.reason
    assert verdict.details["eps_floor_unreached"]["min_eps"] == 1e-6


def test_floor_below_underflow_with_real_example():
    # eps / 1e50 per repeat: 1e-3, 1e-53, 1e-103, 1e-153, and then 1e-203 is
    # below sqrt(float64 tiny) / ||(w_j0, v_j0)|| = 1.49e-154 / sqrt(2).
    dataset = Dataset.from_arrays(np.array([[1.0, 0.0], [0.0, -1.0]]), [0, 1])
    shapes = Parameters(np.eye(2), np.array([[1.0, -1.0]]))
    example = Example(dataset, shapes, 1e-3, "exponential")
    settings = RunSettings(eps_floor=1e-300, eps_factor=1e50)

    verdict = refine_eps(
        _check_in_turn([Outcome.FAIL] * 4), example, settings, unquantified=True
    )
    assert verdict.outcome is Outcome.FAIL
    assert verdict.eps_sequence == pytest.approx([1e-3, 1e-53, 1e-103, 1e-153])
    assert "eps_floor=1e-300" in verdict.reason
    assert verdict.details["eps_floor_unreached"]["min_eps"] == example.min_eps()
