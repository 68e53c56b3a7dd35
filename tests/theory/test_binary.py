"""Property suite for the binary claims: one property per claim, named for it.

Every claim is checked on the same derandomised examples (the strategy and the
test function are shared, so under the ``ci`` profile every claim sees the
same draws), and the trained trajectory of an example is cached per process,
so the flow is integrated once per example, not once per claim.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given

from strategies import (
    duplicated_samples_example,
    width_two_example,
)
from tests.theory.support import SETTINGS, binary_examples, report, same_examples
from theory_checks import binary
from theory_checks import tolerances as tol
from theory_checks.common import integration_roundoff
from theory_checks.runs import Example, train


def _boundary(case, label: str) -> Example:
    return Example(case.dataset, case.shapes, 1e-4, "exponential", label=label)


WIDTH_TWO = _boundary(width_two_example(), "width_two")
DUPLICATES = _boundary(duplicated_samples_example(), "duplicated_samples")


@pytest.mark.parametrize(
    "claim",
    binary.CLAIMS,
    ids=[
        f"{claim}-{binary.STATEMENTS[claim].split(',')[0]}" for claim in binary.CLAIMS
    ],
)
@same_examples
@given(case=binary_examples())
@example(case=WIDTH_TWO)
@example(case=DUPLICATES)
def test_binary_claim(request, claim, case):
    verdict = binary.check(claim, case, SETTINGS)
    report(request, claim, case, verdict)


@pytest.mark.parametrize("claim", ["C7", "C9", "C10", "C11", "C12"])
def test_limit_tolerance_has_integration_roundoff(claim):
    # A quantity that converges fast sits at the roundoff that the integration
    # leaves in theta_bar, and the measurement's own roundoff part does not cover
    # it. The multi-class checks add the same part through the same function.
    # It is relative, so a quantity larger than 1 gets it times its size.
    verdict = binary.check(claim, WIDTH_TWO, SETTINGS)
    unit = integration_roundoff(train(WIDTH_TWO, SETTINGS))
    for quantity in verdict.details["quantities"]:
        size = abs(quantity["measured"])
        expected = tol.scaled(unit, size) if size > 1.0 else unit
        parts = [
            part
            for part in quantity["tolerance_parts"]
            if part["derivation"] == expected.derivation
        ]
        assert len(parts) == 1, quantity["name"]
        assert parts[0]["value"] == expected.value


def test_loss_rate_tolerance_has_log_t_roundoff():
    # log t is summed over the steps in float64, each addition rounded at
    # eps |log t|. For L t log t that is a relative error, and near R = 1e8, where
    # log t is about 5e7, it was a third of the whole tolerance on the worst
    # binary example of a thorough verify.
    verdict = binary.check("C13", WIDTH_TWO, SETTINGS)
    result = train(WIDTH_TWO, SETTINGS).result
    steps = result.n_accepted + len(result.activation_events)
    (quantity,) = [q for q in verdict.details["quantities"] if q["name"] == "L t log t"]
    expected = tol.roundoff(
        steps, abs(result.log_t) * abs(quantity["measured"]), "sum of log t"
    )
    parts = [
        part
        for part in quantity["tolerance_parts"]
        if part["derivation"] == expected.derivation
    ]
    assert len(parts) == 1
    assert parts[0]["value"] == expected.value


def test_c6_unresolved_pair_is_not_a_failure():
    # Six copies of a sample 1e-3 rad from another hold the + group near their
    # weighted mean until rho gamma alpha^2 reaches about 40, beyond R = 1e10
    # here, so theta/||theta|| has not started its last turn. A1 to A3 hold,
    # and C6 failed by 2.3e9 tolerances against the rate bound; the multi-class
    # C6 already counted such a pair as unresolved.
    import numpy as np

    from ncflow.data import Dataset
    from ncflow.network import Parameters

    angle = 1e-3
    near = [np.cos(angle), np.sin(angle), 0.0]
    X = np.array([[1.0, 0.0, 0.0]] + [near] * 6 + [[-1.0, 0.3, 0.0], [-0.9, -0.4, 0.0]])
    dataset = Dataset.from_arrays(X, np.array([1] * 7 + [-1, -1]), name="near pair")
    shapes = Parameters(np.array([[0.6, -0.6], [0.0, 0.0], [0.0, 0.0]]),
                        np.array([[0.6, -0.6]]))  # fmt: skip
    case = Example(dataset, shapes, 1e-4, "exponential", label="near_pair")
    verdict = binary.check("C6", case, SETTINGS)
    assert all(report.holds for report in verdict.hypotheses)
    assert verdict.outcome.value == "INCONCLUSIVE", verdict.describe()
    assert "not yet resolved" in verdict.describe()


def test_c11_takes_each_class_minimum_margin():
    # One sample of class 0 of this example ends 16 % above the class's margin.
    # A C11 that read the class's mean margin in place of its minimum failed
    # only 1 of 53 drawn examples, whose samples mostly all end on the margin.
    import numpy as np

    from tests.theory.test_power_binary import _unequal_margins
    from theory_checks.common import features

    case = _unequal_margins()
    verdict = binary.check("C11", case, SETTINGS)
    params = train(case, SETTINGS).result.params
    unit = params.scaled(1.0 / np.sqrt(params.norm2()))
    X, labels = case.dataset.X, case.dataset.labels
    margins = case.problem().signs * (features(case, X, unit.W) @ unit.V[0])
    first = margins[labels == 0]
    worst_tolerance = max(q["tolerance"] for q in verdict.details["quantities"])
    assert first.mean() / first.min() - 1 > 100 * worst_tolerance
    assert verdict.outcome.value == "PASS", verdict.describe()
