"""The repetition at smaller ``eps`` before a FAIL is reported (``refine_eps``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from theory_checks.common import refine_eps
from theory_checks.runs import RunSettings
from theory_checks.verdict import Outcome, Verdict

SETTINGS = RunSettings(eps_factor=100.0, eps_floor=1e-9)


@dataclass(frozen=True)
class _Scale:
    """Stand-in for an example: refine_eps reads only its eps."""

    eps: float

    def with_eps(self, eps: float) -> _Scale:
        return replace(self, eps=eps)


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
