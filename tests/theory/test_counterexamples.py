"""Kept counterexample records, replayed as regression cases.

Every record under ``tests/counterexamples`` is re-run from its arrays and
settings alone and must give the outcome listed for it in ``expected.json``: a
counterexample that once mattered (a fixed bug, a planted fault) stays checked.
A record of a fault since fixed also lists the outcome it was written with.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from theory_checks.records import read_record, replay

DIRECTORY = Path(__file__).resolve().parents[1] / "counterexamples"
EXPECTED = json.loads((DIRECTORY / "expected.json").read_text())
RECORDS = sorted(DIRECTORY.glob("*.npz"))


def test_every_record_has_an_expected_outcome():
    assert RECORDS, f"no records under {DIRECTORY}"
    assert {path.name for path in RECORDS} == set(EXPECTED)


@pytest.mark.parametrize("path", RECORDS, ids=[path.stem for path in RECORDS])
def test_record_replays_to_expected_outcome(path):
    entry = EXPECTED[path.name]
    expected = entry["outcome"]
    record = read_record(path)
    verdict, recorded = replay(record)
    # A record of a fault since fixed keeps its old outcome, listed as "recorded".
    assert recorded["outcome"] == entry.get("recorded", expected), entry["why"]
    assert verdict.outcome.value == expected, verdict.describe()
