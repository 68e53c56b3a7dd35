"""Boundary examples with a known verdict, each reported as its own test."""

from __future__ import annotations

import pytest

from strategies import orthogonal_cross_class_example, zero_preactivation_example
from tests.theory.support import SETTINGS
from theory_checks import binary
from theory_checks.runs import Example
from theory_checks.verdict import Outcome


def _example(case, label: str) -> Example:
    return Example(case.dataset, case.shapes, 1e-4, "exponential", label=label)


ORTHOGONAL = _example(orthogonal_cross_class_example(), "orthogonal_cross_class")
ZERO = _example(zero_preactivation_example(), "zero_preactivation")


@pytest.mark.parametrize(
    "claim", [c for c in binary.CLAIMS if c not in ("C1", "C2", "C3")]
)
def test_orthogonal_pairs_are_inconclusive(claim):
    # mu_d = 0 exactly: outside A1, so nothing may be concluded.
    verdict = binary.check(claim, ORTHOGONAL, SETTINGS)
    assert verdict.outcome is Outcome.INCONCLUSIVE, verdict.describe()
    assert "A1" in verdict.reason


@pytest.mark.parametrize("claim", ["C1", "C2"])
def test_invariants_hold_outside_a1(claim):
    # C1 needs no hypothesis and C2 only the balanced start.
    verdict = binary.check(claim, ORTHOGONAL, SETTINGS)
    assert verdict.outcome is Outcome.PASS, verdict.describe()


@pytest.mark.parametrize("claim", binary.CLAIMS)
def test_zero_preactivation_start_passes(claim):
    # <w_20, x_i> = 0.0 exactly: inactive under relu'(0) = 0, then the flow decides.
    verdict = binary.check(claim, ZERO, SETTINGS)
    assert verdict.outcome is Outcome.PASS, verdict.describe()
