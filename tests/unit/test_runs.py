"""Training of theory-check examples: where a run ends, and repeats at larger norm."""

from __future__ import annotations

import math

import numpy as np

from ncflow.data import Dataset
from ncflow.init import balanced_shapes
from theory_checks.common import refine_norm
from theory_checks.runs import Example, RunSettings, train
from theory_checks.verdict import Outcome, Verdict


def _example(eps: float) -> Example:
    X = np.array([[1.0, 0.2], [0.9, 0.1], [-0.1, -1.0], [-0.2, -0.8]])
    dataset = Dataset.from_arrays(X, np.array([0, 0, 1, 1]))
    shapes = balanced_shapes(np.random.default_rng(3), 2, 4, 1)
    return Example(dataset, shapes, eps, "exponential")


def test_run_above_target_ends_at_ten_times_start():
    example = _example(eps=30.0)
    settings = RunSettings(rtol=1e-6, norm2_target=10.0)
    start = example.params0().norm2()
    assert start > settings.norm2_target

    run = train(example, settings, loose=False)

    assert run.result.success
    # The terminal event is located to rtol in log ||theta||^2.
    assert abs(run.result.norm2 / (10 * start) - 1) < 10 * settings.rtol


def test_run_starting_below_target_ends_at_the_target():
    example = _example(eps=1e-3)
    settings = RunSettings(rtol=1e-6, norm2_target=1e3)

    run = train(example, settings, loose=False)

    assert run.result.success
    assert abs(run.result.norm2 / settings.norm2_target - 1) < 10 * settings.rtol


def _fails_below(norm2: float):
    """A check that FAILs while the run's target is below ``norm2``."""
    targets = []

    def check_once(example, settings):
        targets.append(settings.norm2_target)
        outcome = Outcome.FAIL if settings.norm2_target < norm2 else Outcome.PASS
        return Verdict("C11", outcome, "stub")

    return check_once, targets


def test_refine_norm_passes_where_a_larger_norm_settles():
    check_once, targets = _fails_below(1e10)
    settings = RunSettings(norm2_target=1e8, norm2_max=1e12)

    verdict = refine_norm(check_once, _example(1e-3), settings)

    assert verdict.outcome is Outcome.PASS
    assert targets == [1e8, 1e10]
    assert "repeated at 1e+10" in verdict.reason


def test_refine_norm_fails_when_every_norm_fails():
    check_once, targets = _fails_below(math.inf)
    settings = RunSettings(norm2_target=1e8, norm2_max=1e12)

    verdict = refine_norm(check_once, _example(1e-3), settings)

    assert verdict.outcome is Outcome.FAIL
    assert targets == [1e8, 1e10, 1e12]
    assert verdict.details["norm2_targets"] == targets


def test_refine_norm_keeps_fail_after_inconclusive_repeat():
    def check_once(example, settings):
        if settings.norm2_target < 1e10:
            return Verdict("C11", Outcome.FAIL, "deviation beyond tolerance")
        return Verdict("C11", Outcome.INCONCLUSIVE, "the run stalled")

    settings = RunSettings(norm2_target=1e8, norm2_max=1e12)

    verdict = refine_norm(check_once, _example(1e-3), settings)

    assert verdict.outcome is Outcome.FAIL
    assert "the run stalled" in verdict.reason
