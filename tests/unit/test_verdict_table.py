"""The end-of-run verdict table of ``conftest.py`` and its INCONCLUSIVE gate."""

from __future__ import annotations

import conftest


def _verdict(claim: str, outcome: str, exploration: bool) -> dict:
    return {
        "claim": claim,
        "outcome": outcome,
        "margin": None,
        "record": None,
        "exploration": exploration,
    }


def test_inconclusive_gate_ignores_arrival_order():
    # C3 is explored for binary problems and claimed for K >= 3. The gate must
    # fail five INCONCLUSIVE claim verdicts in either arrival order.
    explored = _verdict("C3", "PASS", True)
    claimed = [_verdict("C3", "INCONCLUSIVE", False)] * 5
    for verdicts in ([explored] + claimed, claimed + [explored]):
        assert conftest._inconclusive_claims(verdicts) == [("C3", 5, 5)]


def test_summary_splits_claim_and_exploration():
    verdicts = [_verdict("C3", "PASS", True), _verdict("C3", "FAIL", False)]
    table = conftest._summary(verdicts)
    assert table[("C3", True)]["PASS"] == 1
    assert table[("C3", False)]["FAIL"] == 1
