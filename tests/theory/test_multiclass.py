"""Property suite for the multi-class claims: one property per claim, named for it.

The examples have 3 or 4 classes and meet A1, A2, A4 and A5 by construction.
Every claim is checked on the same derandomised examples, and the trained
trajectory of an example is cached per process, so the flow is integrated once
per example, not once per claim.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given

from ncflow.data import Dataset
from ncflow.geometry import pseudo_labels
from ncflow.network import Parameters
from tests.theory.support import SETTINGS, multiclass_examples, report, same_examples
from theory_checks import multiclass
from theory_checks.runs import Example


def _simplex_example() -> Example:
    """One sample per class on the simplex-ETF directions, one copied neuron each:
    the most symmetric case, where the limit is known in closed form."""
    E = pseudo_labels(3)
    dataset = Dataset.from_arrays(E.T.copy(), np.arange(3), name="simplex")
    return Example(
        dataset,
        Parameters(E.copy(), E.copy()),
        1e-4,
        "cross_entropy",
        groups=(0, 1, 2),
        label="simplex",
    )


SIMPLEX = _simplex_example()


@pytest.mark.parametrize(
    "claim",
    multiclass.CLAIMS,
    ids=[
        f"{claim}-{multiclass.STATEMENTS[claim].split(',')[0]}"
        for claim in multiclass.CLAIMS
    ],
)
@same_examples
@given(case=multiclass_examples())
@example(case=SIMPLEX)
def test_multiclass_claim(request, claim, case):
    verdict = multiclass.check(claim, case, SETTINGS)
    report(request, claim, case, verdict)
