"""Errata E1 to E3: properties over drawn examples, and the fault E3 must catch."""

from __future__ import annotations

from dataclasses import replace

import hypothesis.strategies as st
import numpy as np
from hypothesis import given

from strategies import multiclass_datasets, near_etf_datasets, width_two_example
from tests.theory.support import (
    SETTINGS,
    binary_examples,
    multiclass_examples,
    report,
    same_examples,
)
from tests.theory.test_multiclass import SIMPLEX
from tests.theory.test_power_binary import _unequal_margins
from theory_checks import errata
from theory_checks.hypotheses import check_a1
from theory_checks.runs import Example
from theory_checks.verdict import Outcome

# The gap below 1/(K-1) of the near-simplex datasets: well above the float64
# slack of their construction (cosine_slack, about 1e-13 for D <= 12).
GAP = 1e-3


@same_examples
@given(dataset=multiclass_datasets(min_K=2, max_K=6, max_n_per_class=4))
def test_e1_bound_holds_on_drawn_datasets(request, dataset):
    case = Example(dataset, _any_shapes(dataset), 1.0, "cross_entropy", label="e1")
    report(request, "E1", case, errata.check("E1", case))


@same_examples
@given(
    dataset=st.integers(3, 5).flatmap(
        lambda K: near_etf_datasets(K=K, gap=GAP, max_n_per_class=3)
    )
)
def test_e1_bound_holds_near_the_simplex(request, dataset):
    case = Example(dataset, _any_shapes(dataset), 1.0, "cross_entropy", label="e1")
    report(request, "E1", case, errata.check("E1", case))


@same_examples
@given(
    dataset=st.integers(3, 5).flatmap(
        lambda K: near_etf_datasets(K=K, gap=GAP, max_n_per_class=3)
    )
)
def test_e1_bound_is_attained_up_to_the_gap(dataset):
    # A smaller bound would fail here, so 1/(K-1) cannot be lowered.
    mu_d = check_a1(dataset).measured["mu_d"]
    assert mu_d >= 1.0 / (dataset.K - 1) - GAP


def test_e1_printed_bound_looser_for_three():
    assert errata.printed_bound(3) > errata.e1_bound(3)


def test_e1_bounds_agree_for_two_classes():
    assert errata.printed_bound(2) == errata.e1_bound(2)


def test_nc3_printed_floor_for_three_classes():
    # sqrt(3/2) - 1, as a decimal to 4 places.
    assert abs(errata.nc3_printed_floor(3) - 0.2247) < 5e-5


@same_examples
@given(case=multiclass_examples())
def test_e2_printed_nc3_stays_at_its_floor(request, case):
    report(request, "E2", case, errata.check("E2", case, SETTINGS))


def test_e2_on_the_simplex_example():
    verdict = errata.check("E2", SIMPLEX, SETTINGS)
    assert verdict.outcome is Outcome.PASS, verdict.describe()


@same_examples
@given(case=binary_examples())
def test_e3_lemma3_bound_on_binary_examples(request, case):
    report(request, "E3", case, errata.check("E3", case, SETTINGS))


@same_examples
@given(case=multiclass_examples())
def test_e3_lemma3_bound_on_multiclass_examples(request, case):
    report(request, "E3", case, errata.check("E3", case, SETTINGS))


def _logistic_width_two() -> Example:
    case = width_two_example()
    return Example(case.dataset, case.shapes, 1e-4, "logistic", label="width_two")


def test_e3_passes_the_right_logistic():
    verdict = errata.check("E3", _logistic_width_two(), SETTINGS)
    assert verdict.outcome is Outcome.PASS, verdict.describe()


def test_e3_catches_the_halved_logistic_loss():
    faulty = replace(_logistic_width_two(), faults=("logistic_without_factor_2",))
    verdict = errata.check("E3", faulty, SETTINGS)
    assert verdict.outcome is Outcome.FAIL, verdict.describe()


def test_e3_catches_halved_logistic_unequal_margins():
    # Without the factor the velocity is half the eps = 0 one: a deviation of
    # order the velocity itself, against a bound of order eps = 1e-4.
    faulty = replace(
        _unequal_margins(), loss="logistic", faults=("logistic_without_factor_2",)
    )
    verdict = errata.check("E3", faulty, SETTINGS)
    assert verdict.outcome is Outcome.FAIL, verdict.describe()


def _any_shapes(dataset):
    from ncflow.network import Parameters

    return Parameters(np.ones((dataset.D, 1)), np.ones((dataset.K, 1)))
