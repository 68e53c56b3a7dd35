"""First roots of the crossing cubics that locate activation changes in a step.

Each cubic is built from its roots, so the first root in (0, 1] is known in
closed form and the search can be compared with it.
"""

import numpy as np
import pytest

from ncflow.flow.cubic_roots import (
    bracketed_root,
    bracketed_roots,
    cubic_values,
    first_roots,
)

EPS = np.finfo(float).eps


def cubic_with_roots(roots) -> np.ndarray:
    """Coefficients ``c_0..c_3`` of ``+-(s - r_1)(s - r_2)(s - r_3)``, shape (4,),
    the sign chosen so that ``c_0 > 0`` (positive at the start of the step)."""
    coef = np.poly(roots)[::-1]  # np.poly gives the highest degree first
    return coef * np.sign(coef[0])


def stack(*cubics) -> np.ndarray:
    return np.column_stack(cubics)


def root_tolerance(c: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Distance from ``root`` within which the search must report it.

    Horner's rule evaluates a cubic with an error below ``6 eps sum |c_k| s^k``,
    which moves the computed root by that amount over the slope. The search
    stops once its Newton correction is below ``4 eps s`` and reports the point
    two corrections and ``4 eps s`` further on: ``12 eps s`` past the iterate,
    which is itself within ``4 eps s`` of the computed root.
    """
    noise = 6 * EPS * sum(np.abs(c[k]) * root**k for k in range(4))
    slope = np.abs(c[1] + 2 * c[2] * root + 3 * c[3] * root**2)
    return noise / slope + 16 * EPS * root


def test_first_roots_simple_roots_to_roundoff():
    rng = np.random.default_rng(3)
    first = rng.uniform(0.05, 0.95, size=40)
    c = stack(*[cubic_with_roots([r, 1.5 + r, -0.5 - r]) for r in first])
    found = first_roots(c)
    assert np.all(np.abs(found - first) <= root_tolerance(c, first))


def test_first_roots_point_past_the_root():
    rng = np.random.default_rng(4)
    first = rng.uniform(0.05, 0.95, size=40)
    c = stack(*[cubic_with_roots([r, 2.0, -1.0]) for r in first])
    found = first_roots(c)
    assert np.all(cubic_values(c, found) <= 0)


def test_first_roots_earliest_of_three():
    c = stack(cubic_with_roots([0.7, 0.2, 0.45]))
    found = first_roots(c)
    assert abs(found[0] - 0.2) <= root_tolerance(c, np.array([0.2]))[0]


def test_first_roots_none_in_step_gives_inf():
    c = stack(cubic_with_roots([1.2, 1.5, -0.3]), np.array([1.0, 0.5, 0.0, 0.0]))
    found = first_roots(c)
    assert np.all(np.isinf(found))


def test_first_roots_zero_at_start_gives_zero():
    c = stack(np.array([0.0, -1.0, 0.0, 0.0]), np.array([-1e-18, -1.0, 0.0, 0.0]))
    assert np.all(first_roots(c) == 0.0)


@pytest.mark.parametrize("gap", [1e-3, 1e-6])
def test_first_roots_close_pair_gives_first(gap):
    # The cubic dips below 0 only between 0.4 and 0.4 + gap: a nearly tangential
    # crossing, whose slope of about 2.6 gap magnifies the roundoff.
    c = stack(cubic_with_roots([0.4, 0.4 + gap, 3.0]))
    found = first_roots(c)
    assert abs(found[0] - 0.4) <= root_tolerance(c, np.array([0.4]))[0]


def test_first_roots_root_at_step_end():
    c = stack(cubic_with_roots([1.0, 2.0, -2.0]))
    found = first_roots(c)
    assert abs(found[0] - 1.0) <= root_tolerance(c, np.array([1.0]))[0]


def test_first_roots_exhausted_keeps_narrowed_bracket():
    # 1e-30 - s^3 has its root at 1e-10, and Newton from the bracket midpoint
    # contracts it by only 2/3 per iteration, so the iterations run out. The
    # result must still be a point past the root from the narrowed bracket, not
    # the bracket's original end 1.
    c = stack(np.array([1e-30, 0.0, 0.0, -1.0]))
    found = first_roots(c)[0]
    assert cubic_values(c, np.array([found]))[0] <= 0
    # 56 contractions by 2/3 from 0.5 end at 0.5 (2/3)^56 = 7.4e-11, below the
    # root, so the iterate has reached the root's neighbourhood: within a factor
    # of 2 of it once the last quadratic steps have begun.
    assert found < 2e-10


@pytest.mark.parametrize(
    ("roots", "within", "expected"),
    [
        # Only the earliest root lies in the window; the later ones give inf.
        ([0.2, 0.5, 0.9], 0.1, [0.2, np.inf, np.inf]),
        # The earliest is not the first cubic, and 0.5 is within 0.35 of it.
        ([0.5, 0.2, 0.9], 0.35, [0.5, 0.2, np.inf]),
    ],
)
def test_first_roots_within_window(roots, within, expected):
    c = stack(*[cubic_with_roots([r, 1.5, -1.0]) for r in roots])
    found = first_roots(c, within=within)
    expected = np.array(expected)
    inside = np.isfinite(expected)
    tolerance = root_tolerance(c[:, inside], expected[inside])
    assert np.all(np.abs(found[inside] - expected[inside]) <= tolerance)
    assert np.all(np.isinf(found[~inside]))


def test_first_roots_within_matches_row_by_row_search():
    # Where a root lies within the window of the first, the pruned search returns
    # the same point as a search of that cubic alone. Past the window it returns
    # inf or, again, the same point.
    rng = np.random.default_rng(5)
    c = stack(*[cubic_with_roots(rng.uniform(-1.0, 1.5, size=3)) for _ in range(60)])
    c = c[:, c[0] > 0]
    alone = np.array([first_roots(c[:, [k]])[0] for k in range(c.shape[1])])
    within = 0.05
    pruned = first_roots(c, within=within)
    inside = alone <= alone.min() + within
    assert inside.sum() >= 1
    assert np.array_equal(pruned[inside], alone[inside])
    outside = ~inside
    assert np.all(np.isinf(pruned[outside]) | (pruned[outside] == alone[outside]))


def test_scalar_root_search_matches_vectorised():
    # The scalar search repeats the vectorised iteration operation by operation,
    # so both must return the same float.
    rng = np.random.default_rng(6)
    first = rng.uniform(0.01, 0.99, size=50)
    c = stack(*[cubic_with_roots([r, 1.2 + r, -0.7]) for r in first])
    lo = np.zeros(first.size)
    hi = np.minimum(1.0, first + rng.uniform(0.0, 0.5, size=first.size))
    vectorised = bracketed_roots(c, lo, hi)
    scalar = [bracketed_root(*c[:, k], lo[k], hi[k]) for k in range(first.size)]
    assert np.array_equal(vectorised, np.array(scalar))
