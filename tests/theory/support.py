"""Strategies of whole examples and the shared run settings of the property suite."""

from __future__ import annotations

import os
import random
import zlib

import hypothesis.strategies as st
import pytest
from hypothesis import seed

from strategies import (
    balanced_binary_shapes,
    binary_datasets,
    init_scales,
)
from theory_checks.runs import Example, RunSettings
from theory_checks.verdict import Outcome

# The late-phase target of the suite: limit claims are checked at this
# ||theta||^2, where the distance to the limit left by the slowest mechanism
# (of order ||theta||^-1) is about 1e-4 of its value at ||theta||^2 = 1.
SETTINGS = RunSettings(
    rtol=1e-7, norm2_target=float(os.environ.get("NCFLOW_NORM2_TARGET", "1e8"))
)


def _suite_seed() -> int:
    """One Hypothesis seed for every claim property of a run.

    All claims then draw the same examples, so each example is trained once per
    process. ``ci`` uses seed 0 (the same examples on every run); the other
    profiles draw a seed per run, the same on every xdist worker (derived from
    the run id xdist gives its workers), unless ``NCFLOW_SEED`` fixes it.
    """
    if "NCFLOW_SEED" in os.environ:
        return int(os.environ["NCFLOW_SEED"])
    if os.environ.get("NCFLOW_PROFILE", "ci") == "ci":
        return 0
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run_id:
        return zlib.crc32(run_id.encode())
    return random.randrange(2**32)


SUITE_SEED = _suite_seed()
same_examples = seed(SUITE_SEED)


@st.composite
def binary_examples(draw) -> Example:
    """Binary examples that satisfy A1, A2 and A3 by construction."""
    dataset = draw(
        binary_datasets(
            min_n_per_class=1,
            max_n_per_class=5,
            min_D=2,
            max_D=5,
            min_mu_s=0.2,
            min_mu_d=0.1,
        )
    )
    shapes = draw(balanced_binary_shapes(dataset, min_width=2, max_width=6))
    eps = draw(init_scales(min_exponent=-8, max_exponent=-3))
    loss = draw(st.sampled_from(["exponential", "logistic"]))
    return Example(dataset, shapes, eps, loss, label="binary_examples")


def counterexample_directory(config) -> str:
    return config.getoption("--counterexamples")


def report(request, claim: str, example: Example, verdict) -> None:
    """Collect the verdict, save a FAIL as a record, and fail the test on it."""
    from conftest import record_verdict

    record = None
    exploration = bool(verdict.details.get("exploration", False))
    if verdict.outcome is Outcome.FAIL:
        record = _save(request.config, claim, example, verdict)
    record_verdict(request.config, claim, verdict, record)
    if verdict.outcome is Outcome.FAIL and not exploration:
        where = f"\n  counterexample record: {record}" if record else ""
        pytest.fail(verdict.describe() + where, pytrace=False)


def _save(config, claim: str, example: Example, verdict) -> str | None:
    try:
        from theory_checks.records import write_record
    except ImportError:  # NOTE: records land with the counterexample module.
        return None
    path = write_record(
        counterexample_directory(config), claim, example, SETTINGS, verdict
    )
    return str(path)
