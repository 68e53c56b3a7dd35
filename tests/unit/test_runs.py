"""Training of theory-check examples: the end of a run."""

from __future__ import annotations

import numpy as np

from ncflow.data import Dataset
from ncflow.init import balanced_shapes
from theory_checks.runs import Example, RunSettings, train


def _example(eps: float) -> Example:
    X = np.array([[1.0, 0.2], [0.9, 0.1], [-0.1, -1.0], [-0.2, -0.8]])
    dataset = Dataset.from_arrays(X, np.array([0, 0, 1, 1]))
    shapes = balanced_shapes(np.random.default_rng(3), 2, 4, 1)
    return Example(dataset, shapes, eps, "exponential")


def test_run_starting_above_target_ends_at_ten_times_its_start():
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
