"""How the property suite saves FAIL verdicts: one record per failing test."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import conftest
from tests.theory import support
from theory_checks.verdict import Outcome, Verdict


def _verdict(outcome: Outcome, exploration: bool = False) -> Verdict:
    details = {"exploration": True} if exploration else {}
    return Verdict(claim="C1", outcome=outcome, reason="planted", details=details)


@pytest.fixture
def saved(monkeypatch):
    """The examples that report() saves, with the session's summary untouched."""
    examples = []

    def save(config, claim, example, verdict):
        examples.append(example)
        return f"record-{example}"

    monkeypatch.setattr(support, "_save", save)
    monkeypatch.setattr(conftest, "record_verdict", lambda *args: None)
    return examples


def test_failing_property_saves_only_minimal_example(request, saved):
    # Every n >= 10 fails, so Hypothesis shrinks to n = 10 and replays it once.
    @settings(max_examples=50, database=None, derandomize=True)
    @given(st.integers(0, 1000))
    def planted(n):
        outcome = Outcome.FAIL if n >= 10 else Outcome.PASS
        support.report(request, "C1", n, _verdict(outcome))

    with pytest.raises(pytest.fail.Exception):
        planted()
    assert saved == [10]


def test_exploration_finding_is_saved_where_found(request, saved):
    # An exploration's FAIL does not fail the test, so there is no replay.
    @settings(max_examples=5, database=None, derandomize=True)
    @given(st.integers(0, 3))
    def finding(n):
        support.report(request, "C1", n, _verdict(Outcome.FAIL, exploration=True))

    finding()
    assert len(saved) >= 1


def test_fail_outside_hypothesis_is_saved(request, saved):
    with pytest.raises(pytest.fail.Exception):
        support.report(request, "C1", 7, _verdict(Outcome.FAIL))
    assert saved == [7]
