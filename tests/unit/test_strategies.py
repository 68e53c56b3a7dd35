"""Tests of the Hypothesis strategies: every drawn example meets what it guarantees.

The guarantees are checked with functions that do not share the strategies' code:
``ncflow.geometry`` for A1 and A5, ``ncflow.init.check_balanced`` for balance and the
predicates of ``theory_checks.hypotheses`` for A2, A3 and A4.
"""

from __future__ import annotations

import math
import re

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings

from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.geometry import a5_ratio, cosine_matrix, pseudo_labels, separability
from ncflow.init import check_balanced
from strategies import (
    a1_breaking_datasets,
    balanced_binary_shapes,
    binary_datasets,
    cosine_slack,
    duplicated_samples_example,
    gaussian_shapes,
    init_scales,
    multiclass_datasets,
    near_etf_datasets,
    orthogonal_boundary_datasets,
    orthogonal_cross_class_example,
    semilocal_shapes_for,
    unbalanced_gaussian,
    width_two_example,
    zero_preactivation_example,
)
from theory_checks.hypotheses import check_a1, check_a2, check_a3, check_a4

EPS = float(np.finfo(np.float64).eps)

PROPERTY = settings(max_examples=50, deadline=None)

# find() with only the phases it needs: the explain and target phases would add
# seconds without changing the minimal example. REACH only shows that an example
# exists, so it skips shrinking too.
SEARCH = settings(
    database=None, phases=[Phase.generate, Phase.shrink], max_examples=500
)
REACH = settings(database=None, phases=[Phase.generate], max_examples=500)


def _norm_ratio_tol(D: int) -> float:
    """Return the relative roundoff of a ratio of two computed sample norms.

    A sample is a drawn norm times a unit vector with about D + 4 roundoffs from its
    spherical coordinates. The D(D-1)/2 Givens rotations add about 2 each, and the
    computed norm adds D more. Two samples enter the ratio, so 4 (D^2 + D + 4) eps
    covers it.
    """
    return 4 * (D * D + D + 4) * EPS


def _same_class(dataset: Dataset) -> np.ndarray:
    return dataset.labels[:, None] == dataset.labels[None, :]


def _upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def _has_duplicate_rows(dataset: Dataset) -> bool:
    return len({row.tobytes() for row in dataset.X}) < dataset.n


# --- binary_datasets ---------------------------------------------------------------


@PROPERTY
@given(binary_datasets())
def test_binary_datasets_meet_default_margins(dataset):
    report = separability(dataset)
    assert report.mu_s >= 0.1
    assert report.mu_d >= 0.05
    assert report.holds_a1


@PROPERTY
@given(st.data())
def test_binary_datasets_meet_drawn_margins(data):
    slack = cosine_slack(6, 2)
    min_mu_s = data.draw(st.floats(1e-6, 1.0 - slack), label="min_mu_s")
    min_mu_d = data.draw(st.floats(1e-6, min_mu_s), label="min_mu_d")
    dataset = data.draw(binary_datasets(min_mu_s=min_mu_s, min_mu_d=min_mu_d))
    report = separability(dataset)
    assert report.mu_s >= min_mu_s
    assert report.mu_d >= min_mu_d


@pytest.mark.parametrize(
    "min_mu_s, min_mu_d",
    [
        pytest.param(1.0 - cosine_slack(6, 2), 1.0 - cosine_slack(6, 2), id="tightest"),
        pytest.param(0.3, 0.3, id="mu_d-equal-mu_s"),
        pytest.param(1e-300, 1e-300, id="tiny"),
    ],
)
def test_binary_datasets_meet_extreme_margins(min_mu_s, min_mu_d):
    @PROPERTY
    @given(binary_datasets(min_mu_s=min_mu_s, min_mu_d=min_mu_d))
    def check(dataset):
        report = separability(dataset)
        assert report.mu_s >= min_mu_s
        assert report.mu_d >= min_mu_d

    check()


@PROPERTY
@given(
    binary_datasets(
        min_n_per_class=2, max_n_per_class=5, min_D=3, max_D=4, max_norm_ratio=2.0
    )
)
def test_binary_datasets_respect_sizes_and_norms(dataset):
    norms = np.linalg.norm(dataset.X, axis=1)
    assert dataset.K == 2
    assert dataset.class_names == ("1", "-1")
    assert np.all(dataset.class_sizes >= 2)
    assert np.all(dataset.class_sizes <= 5)
    assert 3 <= dataset.D <= 4
    assert norms.max() / norms.min() <= 2.0 * (1 + _norm_ratio_tol(dataset.D))


@PROPERTY
@given(binary_datasets(imbalance=False))
def test_binary_datasets_equal_sizes_without_imbalance(dataset):
    assert dataset.class_sizes[0] == dataset.class_sizes[1]


def test_binary_datasets_shrink_to_minimum():
    dataset = find(binary_datasets(min_D=3), lambda d: True, settings=SEARCH)
    assert dataset.class_sizes.tolist() == [1, 1]
    assert dataset.D == 3


def test_binary_datasets_shrink_to_smallest_failing_size():
    dataset = find(binary_datasets(), lambda d: d.n >= 5, settings=SEARCH)
    assert dataset.n == 5
    assert dataset.D == 2


def test_binary_datasets_reach_one_against_many():
    dataset = find(
        binary_datasets(max_n_per_class=4),
        lambda d: sorted(d.class_sizes.tolist()) == [1, 4],
        settings=REACH,
    )
    assert sorted(dataset.class_sizes.tolist()) == [1, 4]


def test_binary_datasets_repeat_samples():
    dataset = find(
        binary_datasets(min_n_per_class=3), _has_duplicate_rows, settings=REACH
    )
    assert _has_duplicate_rows(dataset)
    assert separability(dataset).holds_a1


# --- multiclass_datasets and near_etf_datasets -------------------------------------


@PROPERTY
@given(multiclass_datasets())
def test_multiclass_datasets_meet_default_margins(dataset):
    report = separability(dataset)
    assert 3 <= dataset.K <= 6
    assert dataset.K <= dataset.D <= dataset.K + 2
    assert np.all(dataset.class_sizes <= 6)
    assert report.mu_s >= 0.1
    assert report.mu_d >= 0.05


@PROPERTY
@given(st.data())
def test_multiclass_datasets_meet_drawn_margins(data):
    max_K = data.draw(st.integers(3, 5), label="max_K")
    slack = cosine_slack(max_K + 2, max_K)
    min_mu_s = data.draw(st.floats(1e-6, 1.0 - slack), label="min_mu_s")
    min_mu_d = data.draw(st.floats(1e-6, 1.0 / (max_K - 1) - slack), label="min_mu_d")
    strategy = multiclass_datasets(
        max_K=max_K, max_n_per_class=3, min_mu_s=min_mu_s, min_mu_d=min_mu_d
    )
    report = separability(data.draw(strategy))
    assert report.mu_s >= min_mu_s
    assert report.mu_d >= min_mu_d


@PROPERTY
@given(multiclass_datasets(max_K=5, max_n_per_class=4, with_a5=True))
def test_multiclass_datasets_with_a5_meet_a5(dataset):
    report = separability(dataset)
    assert report.mu_s >= 0.1
    assert report.mu_d >= 0.05
    assert a5_ratio(dataset).holds


@pytest.mark.parametrize("K", [3, 4, 6, 10])
def test_a5_budget_holds_at_its_worst_corner(K):
    # Random draws seldom put angles and norms at their extremes together, so
    # the budget is checked where they meet. One sample has the largest norm,
    # two samples of a class are 2 alpha apart, and a sample of each of the
    # first two classes is turned alpha towards the other. A budget f = b^(1/2)
    # in place of b^(1/4) passed every random draw of the suite.
    from strategies.datasets import _a5_budget, _etf_centres

    alpha, largest = _a5_budget(K)
    centres = _etf_centres(K, K)
    towards = centres[1] - (centres[1] @ centres[0]) * centres[0]
    towards /= np.linalg.norm(towards)
    back = centres[0] - (centres[0] @ centres[1]) * centres[1]
    back /= np.linalg.norm(back)
    turned = [
        largest * (np.cos(alpha) * centres[0] + np.sin(alpha) * towards),
        np.cos(alpha) * centres[0] - np.sin(alpha) * towards,
        np.cos(alpha) * centres[1] + np.sin(alpha) * back,
    ]
    X = np.vstack([*turned, centres[2:]])
    labels = np.array([0, 0, 1, *range(2, K)])
    report = a5_ratio(Dataset.from_arrays(X, labels))
    assert report.holds, report


@PROPERTY
@given(multiclass_datasets(max_K=5, max_n_per_class=4, with_a5=False))
def test_multiclass_datasets_without_a5_break_a5(dataset):
    assert separability(dataset).holds_a1
    assert not a5_ratio(dataset).holds


def test_multiclass_datasets_shrink_to_etf():
    dataset = find(multiclass_datasets(), lambda d: True, settings=SEARCH)
    # One sample per class on the unrotated ETF columns. pseudo_labels(3) is
    # symmetric, so its rows are its columns. Each entry is a single rounding of
    # sqrt(3/2) times (1 - 1/3) or 1/3, so 4 eps absolute covers it.
    assert dataset.K == 3
    assert dataset.D == 3
    assert dataset.class_sizes.tolist() == [1, 1, 1]
    np.testing.assert_allclose(dataset.X, pseudo_labels(3), rtol=0, atol=4 * EPS)


@pytest.mark.parametrize("K", [2, 3, 5])
def test_near_etf_datasets_reach_e1_bound(K):
    gap = 1e-3
    bound = 1.0 / (K - 1)

    @PROPERTY
    @given(near_etf_datasets(K=K, gap=gap, max_n_per_class=3))
    def check(dataset):
        report = separability(dataset)
        # E1 bounds the exact cosines of the float64 samples; each computed cosine
        # differs from its exact value by at most about D + 3 roundoffs, D <= K + 2.
        tol = 4 * (K + 5) * EPS
        assert dataset.K == K
        assert report.mu_d >= bound - gap
        assert report.mu_d <= bound + tol

    check()


# --- Exploration datasets ------------------------------------------------------


def _wrong_sign_pairs(dataset: Dataset) -> list[tuple[int, int]]:
    """Return the pairs ``i < j`` whose cosine has the sign A1 excludes."""
    cosines = cosine_matrix(dataset.X)
    same = _same_class(dataset)
    wrong = (same & (cosines <= 0)) | (~same & (cosines >= 0))
    rows, cols = _upper_pairs(dataset.n)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if wrong[i, j]]


@PROPERTY
@given(a1_breaking_datasets(max_K=4, max_n_per_class=4))
def test_a1_breaking_datasets_break_one_pair(dataset):
    kind, i, j = re.search(r"(within|cross) pair (\d+),(\d+)\)$", dataset.name).groups()
    i, j = int(i), int(j)
    cosine = cosine_matrix(dataset.X)[i, j]
    assert _wrong_sign_pairs(dataset) == [(i, j)]
    assert (dataset.labels[i] == dataset.labels[j]) == (kind == "within")
    assert abs(cosine) >= 0.5 * (1 - 64 * EPS)  # |cos 2 beta| >= 1/2, derived there
    assert not separability(dataset).holds_a1


def test_a1_breaking_datasets_reach_both_kinds():
    for kind in ("within", "cross"):
        dataset = find(
            a1_breaking_datasets(),
            lambda d, k=kind: f"{k} pair" in d.name,
            settings=REACH,
        )
        assert f"{kind} pair" in dataset.name


@PROPERTY
@given(orthogonal_boundary_datasets())
def test_orthogonal_boundary_datasets_have_zero_mu_d(dataset):
    signs = dataset.signs
    cross = dataset.X[signs > 0] @ dataset.X[signs < 0].T
    report = separability(dataset)
    assert report.mu_d == 0.0
    assert report.mu_s > 0
    assert not report.holds_a1
    assert cross.max() == 0.0


# --- Shapes ------------------------------------------------------------------------


def _binary_with_shapes(**shape_bounds):
    return binary_datasets(max_n_per_class=4, max_D=4).flatmap(
        lambda dataset: st.tuples(
            st.just(dataset), balanced_binary_shapes(dataset, **shape_bounds)
        )
    )


@PROPERTY
@given(_binary_with_shapes(), init_scales())
def test_balanced_binary_shapes_meet_a2_and_a3(example, eps):
    dataset, shapes = example
    a2 = check_a2(shapes, eps)
    a3 = check_a3(dataset, shapes)
    assert a2.holds, a2.message
    assert a3.holds, a3.message
    check_balanced(shapes)


@PROPERTY
@given(_binary_with_shapes(min_width=3, max_width=5))
def test_balanced_binary_shapes_respect_width(example):
    _, shapes = example
    assert 3 <= shapes.width <= 5
    assert shapes.V.shape == (1, shapes.width)


def test_balanced_binary_shapes_shrink_to_width_two():
    dataset = width_two_example().dataset
    shapes = find(balanced_binary_shapes(dataset), lambda s: True, settings=SEARCH)
    assert shapes.width == 2
    assert check_a3(dataset, shapes).holds


def _multiclass_with_semilocal():
    return multiclass_datasets(max_K=4, max_n_per_class=3).flatmap(
        lambda dataset: st.tuples(
            st.just(dataset), semilocal_shapes_for(dataset, max_per_class=2)
        )
    )


@PROPERTY
@given(_multiclass_with_semilocal())
def test_semilocal_shapes_meet_a4(example):
    dataset, (shapes, groups) = example
    sizes = np.bincount(groups, minlength=dataset.K)
    a4 = check_a4(dataset, shapes, groups)
    assert a4.holds, a4.message
    assert check_a2(shapes, 1e-6).holds
    assert np.all(sizes >= 1)
    assert np.all(sizes <= 2)


def test_semilocal_shapes_shrink_to_one_per_class():
    dataset = find(multiclass_datasets(), lambda d: True, settings=SEARCH)
    shapes, groups = find(
        semilocal_shapes_for(dataset), lambda s: True, settings=SEARCH
    )
    assert groups.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(shapes.V, pseudo_labels(3))


@PROPERTY
@given(gaussian_shapes(4, 5, 3))
def test_gaussian_shapes_are_balanced(shapes):
    norms = np.linalg.norm(shapes.W, axis=0)
    # The largest drawn norm is divided by itself (exactly 1.0) and multiplies a unit
    # vector of about D + 4 roundoffs; 4 (D + 4) eps covers that and the norm itself.
    tol = 4 * (4 + 4) * EPS
    assert shapes.W.shape == (4, 5)
    assert shapes.V.shape == (3, 5)
    assert check_a2(shapes, 1e-3).holds
    assert abs(norms.max() - 1.0) <= tol


@PROPERTY
@given(unbalanced_gaussian(3, 4, 2, 1e-6))
def test_unbalanced_gaussian_has_nonzero_columns(shapes):
    std = 1e-3
    assert shapes.W.shape == (3, 4)
    assert shapes.V.shape == (2, 4)
    assert np.all(np.abs(shapes.W).max(axis=0) >= std * (1 - EPS))
    assert np.all(np.abs(shapes.V).max(axis=0) >= std * (1 - EPS))
    assert np.abs(shapes.W).max() <= 4 * std * (1 + EPS)


@PROPERTY
@given(init_scales(min_exponent=-10, max_exponent=-4))
def test_init_scales_stay_in_range(eps):
    # pow is accurate to about 1 ulp, so the bounds hold to 2 eps relative.
    assert 1e-10 * (1 - 2 * EPS) <= eps <= 1e-4 * (1 + 2 * EPS)


def test_init_scales_shrink_to_smallest():
    eps = find(init_scales(), lambda e: True, settings=SEARCH)
    assert math.isclose(eps, 1e-12, rel_tol=2 * EPS, abs_tol=0.0)


# --- Invalid bounds ----------------------------------------------------------------


def _multiclass_example() -> Dataset:
    return Dataset.from_arrays(pseudo_labels(3).T, [0, 1, 2], name="etf3")


INVALID = [
    (lambda: binary_datasets(min_mu_s=1.5), "min_mu_s=1.5 is invalid: it must be <= 1"),
    (lambda: binary_datasets(min_mu_s=0.0), "min_mu_s=0.0 is invalid: it must be > 0"),
    (lambda: binary_datasets(min_mu_s=1.0), "min_mu_s=1.0 is infeasible"),
    (
        lambda: binary_datasets(min_mu_s=0.2, min_mu_d=0.3),
        "min_mu_d=0.3 is infeasible with min_mu_s=0.2",
    ),
    (lambda: binary_datasets(min_n_per_class=0), "min_n_per_class=0 is invalid"),
    (
        lambda: binary_datasets(min_n_per_class=3, max_n_per_class=2),
        "max_n_per_class=2 is invalid: it must be >= 3",
    ),
    (lambda: binary_datasets(min_D=1), "min_D=1 is invalid: it must be >= 2"),
    (lambda: binary_datasets(max_D=13), "max_D=13 is invalid: it must be <= 12"),
    (lambda: binary_datasets(max_norm_ratio=0.5), "max_norm_ratio=0.5 is invalid"),
    (lambda: binary_datasets(imbalance="yes"), "imbalance='yes' is invalid"),
    (
        lambda: multiclass_datasets(min_mu_d=0.3),
        "min_mu_d=0.3 is infeasible with max_K=6",
    ),
    (lambda: multiclass_datasets(min_K=1), "min_K=1 is invalid: it must be >= 2"),
    (
        lambda: multiclass_datasets(min_K=2, with_a5=True),
        "min_K=2 is infeasible with with_a5=True",
    ),
    (
        lambda: multiclass_datasets(with_a5=False, max_norm_ratio=1.2),
        "max_norm_ratio=1.2 is infeasible with with_a5=False",
    ),
    (lambda: multiclass_datasets(with_a5="no"), "with_a5='no' is invalid"),
    (lambda: multiclass_datasets(max_extra_D=7), "max_extra_D=7 is invalid"),
    (lambda: near_etf_datasets(K=3, gap=0.6), "gap=0.6 is invalid: it must be < 0.5"),
    (lambda: near_etf_datasets(K=3, gap=1e-16), "gap=1e-16 is infeasible"),
    (lambda: a1_breaking_datasets(max_K=11), "max_K=11 is invalid"),
    (
        lambda: orthogonal_boundary_datasets(min_n_per_class=0),
        "min_n_per_class=0 is invalid",
    ),
    (
        lambda: balanced_binary_shapes(_multiclass_example()),
        "binary shapes need exactly two classes, got K=3",
    ),
    (
        lambda: balanced_binary_shapes(width_two_example().dataset, min_width=1),
        "min_width=1 is invalid: it must be >= 2",
    ),
    (
        lambda: semilocal_shapes_for(_multiclass_example(), min_per_class=0),
        "min_per_class=0 is invalid",
    ),
    (lambda: gaussian_shapes(0, 2, 1), "D=0 is invalid"),
    (lambda: unbalanced_gaussian(2, 2, 1, 0.0), "variance=0.0 is invalid"),
    (lambda: init_scales(min_exponent=-400), "min_exponent=-400 is invalid"),
    (
        lambda: init_scales(min_exponent=-3, max_exponent=-12),
        "max_exponent=-12 is invalid",
    ),
]


@pytest.mark.parametrize(
    "build, message", INVALID, ids=[message.split(" is ")[0] for _, message in INVALID]
)
def test_strategy_rejects_invalid_bound(build, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        build()


def test_infeasible_margin_names_largest_value():
    slack = cosine_slack(6, 2)
    with pytest.raises(InvalidArgument, match=re.escape(repr(1.0 - slack))):
        binary_datasets(min_mu_s=1.0)


def test_e1_rejection_names_bound():
    largest = 1.0 / 5 - cosine_slack(8, 6)
    with pytest.raises(InvalidArgument, match=re.escape("mu_d <= 1/(K-1) = 0.2")):
        multiclass_datasets(min_mu_d=0.3)
    with pytest.raises(InvalidArgument, match=re.escape(repr(largest))):
        multiclass_datasets(min_mu_d=0.3)


# --- Boundary examples -------------------------------------------------------------


BOUNDARY = {
    "width_two": width_two_example,
    "duplicated": duplicated_samples_example,
    "zero_preactivation": zero_preactivation_example,
    "orthogonal": orthogonal_cross_class_example,
}


@pytest.mark.parametrize("name", list(BOUNDARY))
def test_boundary_example_meets_a2_and_a3(name):
    dataset, shapes = BOUNDARY[name]()
    a2 = check_a2(shapes, 1e-6)
    a3 = check_a3(dataset, shapes)
    assert a2.holds, a2.message
    assert a3.holds, a3.message


@pytest.mark.parametrize("name", ["width_two", "duplicated", "zero_preactivation"])
def test_boundary_example_meets_a1(name):
    dataset, _ = BOUNDARY[name]()
    assert check_a1(dataset).holds


def test_width_two_example_has_two_neurons():
    _, shapes = width_two_example()
    assert shapes.width == 2


def test_duplicated_example_repeats_a_row():
    dataset, _ = duplicated_samples_example()
    assert np.array_equal(dataset.X[0], dataset.X[1])
    assert dataset.labels[0] == dataset.labels[1]


def test_zero_preactivation_example_is_exactly_zero():
    dataset, shapes = zero_preactivation_example()
    preactivations = dataset.X @ shapes.W
    assert preactivations[0, 2] == 0.0
    assert preactivations[2, 2] == 0.0
    assert preactivations[1, 2] > 0.0


def test_orthogonal_example_has_zero_mu_d():
    dataset, _ = orthogonal_cross_class_example()
    signs = dataset.signs
    cross = dataset.X[signs > 0] @ dataset.X[signs < 0].T
    assert cross.max() == 0.0
    assert separability(dataset).mu_d == 0.0
    assert not check_a1(dataset).holds
