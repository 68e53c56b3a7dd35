"""Tests of the counterexample searches X1-X8 with tiny budgets."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.network import Parameters
from theory_checks import explorations
from theory_checks.explorations import (
    EXPLORATIONS,
    FOUND,
    NOT_AVAILABLE,
    combine_verdicts,
    explore,
)
from theory_checks.records import read_record
from theory_checks.runs import Example
from theory_checks.verdict import HypothesisReport, Outcome, Verdict


def _linear_example() -> Example:
    # Two antipodal samples; a linear network maps them to antipodal features,
    # so the class-mean cosine is exactly -1 at every t > 0.
    X = np.array([[1.0, 0.0], [-1.0, 0.0]])
    dataset = Dataset.from_arrays(X, np.array([1, -1]))
    W = np.array([[0.5, -0.5], [0.25, 0.25]])
    V = np.array([[np.hypot(0.5, 0.25), -np.hypot(0.5, 0.25)]])
    return Example(dataset, Parameters(W, V), 1e-4, "exponential", activation="linear")


def test_x1_finds_a_counterexample_at_once(tmp_path):
    result = explore("X1", max_examples=2, max_shrinks=0, record_dir=tmp_path)
    assert result.status == FOUND
    assert result.tried_before_found == 1


def test_x1_record_replays_as_fail(tmp_path):
    result = explore("X1", max_examples=1, max_shrinks=0, record_dir=tmp_path)
    record = read_record(result.record)
    verdict = explorations.check("X1", record.example, record.settings)
    assert record.claim == "X1"
    assert verdict.outcome is Outcome.FAIL


def test_linear_network_class_means_are_antipodal():
    verdict = explorations.class_mean_frame(_linear_example(), explorations.SETTINGS)
    # Both features are W^T x_1 and -W^T x_1 exactly, so the cosine is -1 up to
    # the roundoff of a 2-term dot product over norms: a few units of 1e-16.
    tol = 16 * np.finfo(float).eps
    assert abs(verdict.details["cosine"] + 1.0) <= tol
    assert verdict.outcome is Outcome.FAIL


@pytest.mark.parametrize("xid", ["X1", "X2", "X3", "X6", "X7", "X8"])
def test_example_without_departure_is_inconclusive(xid):
    # A ReLU network, balanced, on data that meet A1 and have no bias column, run
    # by the adaptive method with the eps repetition: none of the departures.
    # The verdict used to name the departure it never saw.
    example = replace(_linear_example(), activation="relu")
    verdict = explorations.check(xid, example)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "does not depart" in verdict.reason
    assert verdict.details["departs"] is False


def test_unknown_exploration_is_rejected():
    with pytest.raises(InvalidArgument) as error:
        explore("X9")
    assert "xid='X9'" in str(error.value)


def test_zero_budget_is_rejected():
    with pytest.raises(InvalidArgument) as error:
        explore("X1", max_examples=0)
    assert "max_examples=0" in str(error.value)


def test_missing_module_reports_not_available(monkeypatch):
    missing = replace(EXPLORATIONS["X4"], needs="theory_checks.no_such_module")
    monkeypatch.setitem(EXPLORATIONS, "X4", missing)
    result = explore("X4", max_examples=1)
    assert result.status == NOT_AVAILABLE
    assert "no_such_module" in result.note


def _verdict(claim: str, outcome: Outcome, outside=()) -> Verdict:
    return Verdict(
        claim,
        outcome,
        f"{claim} {outcome.value}",
        margin=2.0 if outcome is Outcome.FAIL else 0.5,
        details={"outside": list(outside)},
        hypotheses=[HypothesisReport(name, False) for name in outside],
    )


def test_fail_outside_an_allowed_hypothesis_is_a_finding():
    verdict = combine_verdicts("X3", [_verdict("C4", Outcome.FAIL, ["A1"])])
    assert verdict.outcome is Outcome.FAIL
    assert verdict.details["violated"] == "C4"


def test_fail_outside_a_kept_hypothesis_is_inconclusive():
    verdict = combine_verdicts("X2", [_verdict("C4", Outcome.FAIL, ["A1"])])
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "A1" in verdict.reason


def test_all_deciding_claims_pass_gives_pass():
    verdicts = [_verdict("C4", Outcome.PASS), _verdict("C11", Outcome.PASS)]
    assert combine_verdicts("X6", verdicts).outcome is Outcome.PASS


def test_non_deciding_fail_is_not_a_finding():
    # X8 decides on C2 and C4 only; C1 is reported.
    verdicts = [
        _verdict("C1", Outcome.FAIL),
        _verdict("C2", Outcome.PASS),
        _verdict("C4", Outcome.PASS),
    ]
    assert combine_verdicts("X8", verdicts).outcome is Outcome.PASS


def test_draw_cases_repeats_with_a_seed():
    strategy = EXPLORATIONS["X8"].cases()
    first = [case.key() for case in explorations.draw_cases(strategy, 3, 5)]
    second = [case.key() for case in explorations.draw_cases(strategy, 3, 5)]
    assert first == second


def test_x8_unit_step_closed_form():
    X = np.array([[3.0, 4.0], [-1.0, 0.0], [0.0, -2.0]])
    dataset = Dataset.from_arrays(X, np.array([1, -1, -1]))
    # X_max = 5 and n = 3, so 2 / (n X_max^2) = 2 / 75.
    assert explorations.x8_unit_step(dataset) == pytest.approx(2 / 75, rel=1e-15)


def test_x2_sweep_rows_stop_at_first_fail(monkeypatch):
    monkeypatch.setattr(explorations, "X2_EPS_SWEEP", (1e-4, 1e-2))
    result = explore("X2", max_examples=1, max_shrinks=0, sweep_examples=1)
    (row,) = result.table
    outcomes = list(row["C4_by_eps"].values())
    assert set(row) >= {"n", "h", "mu_s", "mu_d", "largest_eps_separated"}
    assert "FAIL" not in outcomes[:-1]


PROBE = """
import sys
from theory_checks import explorations
strategy = explorations.EXPLORATIONS["X8"].cases()
before = [case.key() for case in explorations.draw_cases(strategy, 12, 3)]
sys.path.insert(0, sys.argv[1])
import ncflow_literals_probe
after = [case.key() for case in explorations.draw_cases(strategy, 12, 3)]
print("same" if after == before else "different")
"""


def test_draws_ignore_literals_of_loaded_modules(tmp_path):
    # A newly loaded project module full of float literals enters Hypothesis's
    # pool of constants, which draw_cases must keep out. It runs in a child
    # process, because the pool keeps the literals for the rest of a process.
    literals = ", ".join(f"{0.1 + i / 7:.6f}" for i in range(200))
    (tmp_path / "ncflow_literals_probe.py").write_text(f"VALUES = [{literals}]\n")
    child = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.stdout.strip() == "same"
