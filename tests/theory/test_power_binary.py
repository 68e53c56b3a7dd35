"""Planted faults: the binary checks must tell a faulty implementation from a right one.

Each fault is planted on an example where the right implementation passes the
claim, and the same check must then report FAIL. A suite that cannot tell the
two apart has verified nothing about the theorem.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ncflow.data import Dataset
from ncflow.network import Parameters
from strategies import width_two_example
from tests.theory.support import SETTINGS
from theory_checks import binary
from theory_checks.runs import Example
from theory_checks.verdict import Outcome

# No eps refinement for the faulty runs: a planted fault does not depend on eps,
# and one run shows it.
FAST = replace(SETTINGS, eps_floor=1.0)


def _unequal_margins() -> Example:
    """Two classes with different one-class margins, so a wrong s_k shows."""
    X = np.array(
        [[3.0, 0.4, 0.0], [2.5, -0.3, 0.0], [-1.0, 0.1, 0.0], [-0.8, -0.6, 0.0]]
    )
    dataset = Dataset.from_arrays(X, np.array([1, 1, -1, -1]), name="unequal_margins")
    W = np.array([[0.6, -0.6], [0.0, 0.0], [0.0, 0.0]])
    V = np.array([[0.6, -0.6]])
    return Example(
        dataset, Parameters(W, V), 1e-4, "exponential", label="unequal_margins"
    )


def _dead_at_boundary() -> Example:
    """Samples in the plane x_3 = 0 and a neuron along e_3: every pre-activation of
    neuron 2 is exactly 0, so under relu'(0) = 0 it is dead and never moves."""
    base = _unequal_margins()
    W = np.array([[0.6, -0.6, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    V = np.array([[0.6, -0.6, 0.5]])
    return replace(base, shapes=Parameters(W, V), label="dead_at_boundary")


CASES = [
    # (fault, claim, example): the claim that must detect the fault.
    ("wrong_s", "C9", _unequal_margins()),
    ("wrong_s", "C10", _unequal_margins()),
    ("preactivation_features", "C5", _unequal_margins()),
    ("preactivation_features", "C8", _unequal_margins()),
    ("large_step", "C1", _unequal_margins()),
    ("relu_derivative_one", "C4", _dead_at_boundary()),
]


def _faulty(example: Example, fault: str) -> Example:
    if fault == "relu_derivative_one":
        return replace(example, activation="relu_derivative_one")
    return replace(example, faults=(fault,))


@pytest.mark.parametrize(
    ("fault", "claim", "case"), CASES, ids=[f"{f}-{c}" for f, c, _ in CASES]
)
def test_right_implementation_passes(fault, claim, case):
    verdict = binary.check(claim, case, FAST)
    assert verdict.outcome is Outcome.PASS, verdict.describe()


@pytest.mark.parametrize(
    ("fault", "claim", "case"), CASES, ids=[f"{f}-{c}" for f, c, _ in CASES]
)
def test_planted_fault_fails(fault, claim, case):
    verdict = binary.check(claim, _faulty(case, fault), FAST)
    assert verdict.outcome is Outcome.FAIL, verdict.describe()


def test_width_two_example_passes_every_claim():
    # The smallest valid network: one neuron per class.
    case = width_two_example()
    example = Example(case.dataset, case.shapes, 1e-4, "exponential")
    outcomes = {
        claim: binary.check(claim, example, FAST).outcome for claim in binary.CLAIMS
    }
    assert set(outcomes.values()) == {Outcome.PASS}, outcomes
