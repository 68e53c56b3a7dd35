"""Strategies of whole examples and the shared run settings of the property suite."""

from __future__ import annotations

import os
import random
import zlib

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import seed

from strategies import (
    init_scales,
    multiclass_datasets,
    semilocal_shapes_for,
)
from theory_checks.runs import Example, RunSettings
from theory_checks.suite import binary_family_examples
from theory_checks.verdict import Outcome

# The late-phase target of the suite: limit claims are checked at this
# ||theta||^2, where the distance to the limit left by the slowest mechanism
# (of order ||theta||^-1) is about 1e-4 of its value at ||theta||^2 = 1.
# A limit claim that fails there is repeated once at 100 times that norm
# (common.refine_norm), where a quantity still turning at 1e8 has settled.
_NORM2_TARGET = float(os.environ.get("NCFLOW_NORM2_TARGET", "1e8"))
SETTINGS = RunSettings(
    rtol=1e-7, norm2_target=_NORM2_TARGET, norm2_max=100 * _NORM2_TARGET
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


def binary_examples():
    """Binary examples that satisfy A1, A2 and A3 by construction."""
    return binary_family_examples(label="binary_examples")


@st.composite
def multiclass_examples(draw) -> Example:
    """Examples with 3 or 4 classes that satisfy A1, A2, A4 and A5 by construction.

    A few samples per class and one or two semi-local neurons per class keep one
    example (two runs to ``||theta||^2 = 1e8``) at about a second. Two thirds of
    the examples turn their input weights towards another class first
    (:func:`_tilted`), so that the alignment phase (C4, C14) starts unseparated.
    """
    dataset = draw(
        multiclass_datasets(
            min_K=3,
            max_K=4,
            min_n_per_class=1,
            max_n_per_class=3,
            max_extra_D=1,
            with_a5=True,
        )
    )
    shapes, groups = draw(
        semilocal_shapes_for(dataset, min_per_class=1, max_per_class=2)
    )
    tilt = draw(st.sampled_from([0.0, 0.6, 1.2]))
    if tilt > 0:
        shapes = _tilted(dataset, shapes, groups, tilt, draw(st.integers(0, 2**16)))
    eps = draw(init_scales(min_exponent=-8, max_exponent=-4))
    return Example(
        dataset,
        shapes,
        eps,
        "cross_entropy",
        groups=tuple(int(k) for k in groups),
        label="multiclass_examples",
    )


def _tilted(dataset, shapes, groups, tilt: float, choice: int):
    """Turn each input weight towards a sample of another class, so that the
    neuron starts active on some of it and the alignment phase has work to do.

    Neuron ``j`` moves to ``x_j/||x_j|| + t x_o/||x_o||`` for a sample ``o`` of
    the next class; ``t`` starts at ``tilt`` and halves, 6 times at most, until
    the neuron meets A4 (``t = 0`` is the semi-local copy, which always does).
    """
    from ncflow.network import Parameters
    from theory_checks.hypotheses import check_a4

    X = dataset.X / np.linalg.norm(dataset.X, axis=1, keepdims=True)
    W = shapes.W.copy()
    for j, k in enumerate(groups):
        others = np.flatnonzero(dataset.labels == (k + 1) % dataset.K)
        other = X[others[(choice + j) % others.size]]
        base = shapes.W[:, j]
        t = tilt
        for _ in range(6):
            column = base + t * other
            W[:, j] = column / np.linalg.norm(column)
            trial = Parameters(W, shapes.V)
            if check_a4(dataset, trial, np.asarray(groups)).holds:
                break
            t /= 2
        else:
            W[:, j] = base
    return Parameters(W, shapes.V)


def counterexample_directory(config) -> str:
    return config.getoption("--counterexamples")


def _shrinking() -> bool:
    """Return whether this call is a Hypothesis example other than the final
    replay of a failure (the minimal example, or an explicit one)."""
    from hypothesis import currently_in_test_context
    from hypothesis.control import current_build_context

    return currently_in_test_context() and not current_build_context().is_final


def report(request, claim: str, example: Example, verdict) -> None:
    """Collect the verdict, save a FAIL as a record, and fail the test on it.

    Inside a Hypothesis test a claim's FAIL is saved and collected on the final
    replay only, the minimal example that Hypothesis shrank to. Saving every
    failing call wrote one record per shrink step: 37 records for one planted
    fault.
    """
    from conftest import record_verdict

    record = None
    exploration = bool(verdict.details.get("exploration", False))
    failed = verdict.outcome is Outcome.FAIL
    if failed and not exploration and _shrinking():
        # An exploration's FAIL does not fail the test, so Hypothesis neither
        # shrinks nor replays it: it is saved where it is found.
        pytest.fail(verdict.describe(), pytrace=False)
    if failed:
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
