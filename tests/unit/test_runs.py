"""Training of theory-check examples: where a run ends, and repeats at larger norm."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.flow import RTOL_MAX, RTOL_MIN
from ncflow.init import balanced_shapes
from ncflow.network import Parameters
from theory_checks.common import refine_norm
from theory_checks.runs import LOOSE_FACTOR, Example, RunSettings, clear_cache, train
from theory_checks.verdict import Outcome, Verdict

SAMPLES = np.array([[1.0, 0.2], [0.9, 0.1], [-0.1, -1.0], [-0.2, -0.8]])


def _example(eps: float, y=(0, 0, 1, 1), class_order=None) -> Example:
    dataset = Dataset.from_arrays(SAMPLES, np.array(y), class_order=class_order)
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


# -- fingerprint and run cache ---------------------------------------------------


def test_class_names_that_flip_signs_get_own_runs():
    # Class names "-1" and "1" keep each sample's sign, while "a" and "b" make
    # class 0 the + class. X, class indices and shapes agree, so only the signs
    # differ.
    numeric = _example(1e-3, y=(-1, -1, 1, 1), class_order=(-1, 1))
    named = _example(1e-3, y=("a", "a", "b", "b"))
    assert np.array_equal(numeric.dataset.labels, named.dataset.labels)
    assert np.array_equal(numeric.problem().signs, -named.problem().signs)
    settings = RunSettings(rtol=1e-6, norm2_target=10.0)
    clear_cache()

    run_numeric = train(numeric, settings, loose=False)
    run_named = train(named, settings, loose=False)

    assert numeric.fingerprint() != named.fingerprint()
    assert run_named is not run_numeric
    assert np.array_equal(run_numeric.problem.signs, numeric.problem().signs)
    assert np.array_equal(run_named.problem.signs, named.problem().signs)


def test_binary_groups_against_v_signs_are_rejected():
    # N_+ and N_- are fixed by the signs of v_j0; swapped groups made C4 fail
    # on an example that meets A1 to A3.
    example = _example(1e-3)
    default = example.neuron_groups()
    swapped = tuple(int(1 - k) for k in default)
    with pytest.raises(InvalidArgument, match=r"groups\[0\]=.*omit groups"):
        replace(example, groups=swapped)
    assert replace(example, groups=tuple(default.tolist())).groups == tuple(default)


def _with_dataset(example: Example, X=None, y=None) -> Example:
    X = example.dataset.X if X is None else X
    y = example.dataset.labels if y is None else y
    return replace(example, dataset=Dataset.from_arrays(X, np.array(y)))


TRAINING_INPUT_CHANGES = {
    "X": lambda ex: _with_dataset(ex, X=2 * SAMPLES),
    "labels": lambda ex: _with_dataset(ex, y=(1, 1, 0, 0)),
    "class names": lambda ex: _with_dataset(ex, y=(-1, -1, 1, 1)),
    "W shapes": lambda ex: replace(
        ex, shapes=Parameters(0.5 * ex.shapes.W, ex.shapes.V)
    ),
    "V shapes": lambda ex: replace(
        ex, shapes=Parameters(ex.shapes.W, 0.5 * ex.shapes.V)
    ),
    "eps": lambda ex: ex.with_eps(2e-3),
    "loss": lambda ex: replace(ex, loss="logistic"),
    "activation": lambda ex: replace(ex, activation="linear"),
    "faults": lambda ex: replace(ex, faults=("mean_loss",)),
}


@pytest.mark.parametrize("field", sorted(TRAINING_INPUT_CHANGES))
def test_fingerprint_covers_training_input(field):
    example = _example(1e-3)
    changed = TRAINING_INPUT_CHANGES[field](example)
    assert changed.fingerprint() != example.fingerprint()


@pytest.mark.parametrize(
    "changes", [{"label": "another source"}, {"balanced": False}], ids=str
)
def test_fingerprint_ignores_description(changes):
    example = _example(1e-3)
    assert replace(example, **changes).fingerprint() == example.fingerprint()


# -- Example validation ------------------------------------------------------------


def _three_class_dataset() -> Dataset:
    X = np.vstack([SAMPLES, [[0.1, 1.0], [0.2, 0.9]]])
    return Dataset.from_arrays(X, np.array([0, 0, 1, 1, 2, 2]))


INVALID_EXAMPLE_FIELDS = {
    "unknown loss": (
        {"loss": "bogus"},
        ["loss='bogus'", "'exponential'", "'cross_entropy'"],
    ),
    "fault loss": ({"loss": "exponential_mean"}, ["loss='exponential_mean'"]),
    "unknown activation": (
        {"activation": "tanh"},
        ["activation='tanh'", "'relu'", "'linear'"],
    ),
    "binary loss on K=3": (
        {"dataset": _three_class_dataset()},
        ["K=3", "use loss='cross_entropy'"],
    ),
    "groups string": ({"groups": "ab"}, ["groups has shape ()", "shape (4,)"]),
    "groups too short": ({"groups": (0, 1)}, ["groups has shape (2,)"]),
    "groups outside classes": (
        {"groups": (0, 1, 2, 0)},
        ["groups[2]=2 is not a class", "0..1"],
    ),
    "groups float": ({"groups": (0.0, 1.0, 0.0, 1.0)}, ["groups has dtype float64"]),
    "dataset array": ({"dataset": SAMPLES}, ["dataset must be an ncflow.data.Dataset"]),
    "shapes tuple": (
        {"shapes": (SAMPLES, SAMPLES)},
        ["shapes must be ncflow.network.Parameters"],
    ),
    "faults string": (
        {"faults": "wrong_s"},
        ["faults='wrong_s' is invalid", "tuple or list of fault names", "not str"],
    ),
    "faults unknown": ({"faults": ("bogus",)}, ["faults contains 'bogus'"]),
    "balanced text": (
        {"balanced": "no"},
        ["balanced='no' is invalid", "True or False"],
    ),
    "label None": ({"label": None}, ["label=None is invalid", "a string"]),
}


@pytest.mark.parametrize("case", sorted(INVALID_EXAMPLE_FIELDS))
def test_example_rejects_invalid_field(case):
    changes, fragments = INVALID_EXAMPLE_FIELDS[case]
    example = _example(1e-3)
    with pytest.raises(InvalidArgument) as error:
        replace(example, **changes)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_example_stores_groups_as_tuple():
    example = _example(1e-3)
    default = example.neuron_groups().tolist()
    from_list = replace(example, groups=list(default))
    from_array = replace(example, groups=np.array(default))

    assert from_list.groups == tuple(default)
    assert from_array.groups == tuple(default)
    assert from_list.fingerprint() == from_array.fingerprint()


def test_fingerprint_covers_multiclass_groups():
    # Binary groups are fixed by the signs of v_j0, so only a multi-class
    # example can change them.
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    dataset = Dataset.from_arrays(X, np.array([0, 1, 2]))
    shapes = balanced_shapes(np.random.default_rng(3), 2, 3, 3)
    example = Example(dataset, shapes, 1e-3, "cross_entropy", groups=(0, 1, 2))
    regrouped = replace(example, groups=(1, 2, 0))
    assert example.fingerprint() != regrouped.fingerprint()


def test_example_stores_faults_as_tuple():
    example = _example(1e-3)
    from_list = replace(example, faults=["wrong_s"])
    from_tuple = replace(example, faults=("wrong_s",))

    assert from_list.faults == ("wrong_s",)
    assert from_list.fingerprint() == from_tuple.fingerprint()


def test_example_accepts_planted_fault_activation():
    example = replace(_example(1e-3), activation="relu_derivative_one")
    assert example.activation == "relu_derivative_one"


# -- eps below the float64 range of the squared neuron norms -----------------------


def _eps_bound(example: Example) -> float:
    columns = np.vstack([example.shapes.W, example.shapes.V]).T
    smallest = min(math.hypot(*column) for column in columns)
    return math.sqrt(np.finfo(np.float64).tiny) / smallest


def test_example_rejects_eps_whose_squares_underflow():
    example = _example(1e-3)
    bound = _eps_bound(example)

    with pytest.raises(InvalidArgument) as error:
        example.with_eps(1e-200)
    message = str(error.value)
    printed = float(message.split("must be >= ")[1].split()[0])

    assert message.startswith("eps=1e-200 is invalid")
    assert "underflow" in message
    assert bound <= printed <= 1.01 * bound


def test_example_accepts_printed_eps_bound():
    example = _example(1e-3)
    with pytest.raises(InvalidArgument) as error:
        example.with_eps(1e-200)
    printed = float(str(error.value).split("must be >= ")[1].split()[0])

    assert example.with_eps(printed).eps == printed
    with pytest.raises(InvalidArgument, match="underflow"):
        example.with_eps(printed / 2)


# -- RunSettings validation --------------------------------------------------------

INVALID_SETTINGS = {
    "unknown method": ({"method": "bogus"}, "method='bogus'"),
    "loss-scaled method": ({"method": "loss_scaled"}, "'adaptive', 'euler'"),
    "rtol too large": ({"rtol": 0.1}, "rtol=0.1 is invalid"),
    "rtol zero": ({"rtol": 0.0}, "rtol=0.0 is invalid"),
    "rtol NaN": ({"rtol": math.nan}, "rtol=nan is invalid"),
    "atol negative": ({"atol": -1e-12}, "atol=-1e-12 is invalid"),
    "target negative": ({"norm2_target": -1.0}, "norm2_target=-1.0 is invalid"),
    "target infinite": ({"norm2_target": math.inf}, "norm2_target=inf is invalid"),
    "target text": ({"norm2_target": "1e8"}, "norm2_target='1e8' is invalid"),
    "ratio one": ({"reference_ratio": 1.0}, "reference_ratio=1.0 is invalid"),
    "max below target": (
        {"norm2_target": 1e8, "norm2_max": 1e6},
        "norm2_max=1000000.0 is invalid: it must be >= norm2_target=100000000.0",
    ),
    "max_steps zero": ({"max_steps": 0}, "max_steps=0 is invalid"),
    "max_steps float": ({"max_steps": 10.5}, "max_steps=10.5 is invalid"),
    "eps_factor one": ({"eps_factor": 1.0}, "eps_factor=1.0 is invalid"),
    "eps_floor zero": ({"eps_floor": 0.0}, "eps_floor=0.0 is invalid"),
    "euler without step": ({"method": "euler"}, "method='euler' needs step"),
    "euler negative step": (
        {"method": "euler", "step": -0.1},
        "step=-0.1 is invalid",
    ),
    "adaptive with step": (
        {"step": 0.1},
        "step=0.1 is invalid with method='adaptive'",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_SETTINGS))
def test_run_settings_reject_invalid_value(case):
    changes, fragment = INVALID_SETTINGS[case]
    with pytest.raises(InvalidArgument) as error:
        RunSettings(**changes)
    assert fragment in str(error.value)


def test_run_settings_accept_euler_with_step():
    settings = RunSettings(method="euler", step=0.1)
    assert settings.step == 0.1


def test_run_settings_reject_rtol_of_loose_run():
    # rtol=5e-3 is within solve_flow's range, but its loose run at 5e-2 is not.
    assert RTOL_MAX / LOOSE_FACTOR < 5e-3 <= RTOL_MAX
    with pytest.raises(InvalidArgument) as error:
        RunSettings(rtol=5e-3)
    message = str(error.value)
    assert message.startswith("rtol=0.005 is invalid")
    assert f"use a value in [{RTOL_MIN:g}, {RTOL_MAX / LOOSE_FACTOR:g}]" in message


def test_largest_rtol_trains_loose_run():
    settings = RunSettings(rtol=RTOL_MAX / LOOSE_FACTOR, norm2_target=10.0)
    run = train(_example(eps=1e-2), settings)

    assert run.result.success
    assert run.loose is not None
    assert run.loose.settings["rtol"] == pytest.approx(RTOL_MAX)
