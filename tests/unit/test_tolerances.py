"""The asymptotic part of a limit tolerance on sequences with known limits."""

from __future__ import annotations

import math

import pytest

from theory_checks import tolerances as tol

R_EARLIER, R_REF, R = 1e4, 1e6, 1e8


def _power_law(exponent: float, limit: float = 2.0, scale: float = 3.0):
    return lambda R_: limit + scale * R_**-exponent


def test_model_estimate_is_exact_for_its_own_rate():
    g = tol.RATES["sqrt"]
    q = lambda R_: 2.0 + 3.0 * g(R_)  # noqa: E731

    term = tol.asymptotic(q(R), q(R_REF), R, R_REF, "sqrt")

    # Exact up to the roundoff of differences of numbers near 2.
    assert term.value == pytest.approx(3.0 * g(R), rel=1e-9)


def test_aitken_bounds_a_rate_slower_than_the_model():
    q = _power_law(0.3)
    remaining = q(R) - 2.0

    without = tol.asymptotic(q(R), q(R_REF), R, R_REF, "slow")
    with_earlier = tol.asymptotic(q(R), q(R_REF), R, R_REF, "slow", q(R_EARLIER))

    assert without.value < remaining
    # Equal ratios of R make the changes of a power law exactly geometric, so
    # Aitken's estimate is exact up to roundoff.
    assert with_earlier.value == pytest.approx(remaining, rel=1e-9)
    assert "Aitken" in with_earlier.derivation


def test_model_kept_when_it_is_the_larger_bound():
    q = _power_law(1.0)

    with_earlier = tol.asymptotic(q(R), q(R_REF), R, R_REF, "slow", q(R_EARLIER))
    without = tol.asymptotic(q(R), q(R_REF), R, R_REF, "slow")

    assert with_earlier.value == without.value
    assert with_earlier.value > q(R) - 2.0


def test_turning_sequence_is_reported_as_not_asymptotic():
    # Rises from R_EARLIER to R_REF, then falls: the two changes differ in sign.
    values = {R_EARLIER: 1.0, R_REF: 1.5, R: 1.4}

    term = tol.asymptotic(values[R], values[R_REF], R, R_REF, "slow", values[R_EARLIER])

    assert "not yet asymptotic" in term.derivation
    assert math.isfinite(term.value)


def test_infinite_tolerance_gives_inconclusive_not_pass():
    from theory_checks.common import Quantity, combine
    from theory_checks.verdict import Outcome

    unbounded = tol.tolerance(
        tol.integrator_change(1.0, None, "q"), tol.roundoff(1, 1.0, "q")
    )
    quantity = Quantity("q", 1.0, 0.0, unbounded)

    verdict = combine("C9", "a limit quantity", [quantity], None, [])

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "not finite" in verdict.reason


def test_empty_tolerance_described_exact():
    # A yes-or-no quantity has no tolerance part, and its description must not
    # end in a bare "=".
    assert tol.tolerance().describe() == "0 (exact comparison)"


@pytest.mark.parametrize(
    ("kind", "sign"), [("equal", 1.0), ("equal", -1.0), ("at_most", 1.0)]
)
@pytest.mark.parametrize(("over", "outcome"), [(0.99, "PASS"), (1.01, "FAIL")])
def test_combine_decides_at_one_tolerance(kind, sign, over, outcome):
    # A deviation of 0.99 tolerances passes and one of 1.01 fails. The power
    # tests plant faults that miss by more than ten tolerances, so a threshold
    # moved to 3 or 10 tolerances went unnoticed by every other test.
    from theory_checks.common import Quantity, combine

    tolerance = tol.tolerance(tol.ToleranceTerm("integrator", 1e-3, "planted"))
    quantity = Quantity("q", 2.0 + sign * over * 1e-3, 2.0, tolerance, kind=kind)

    verdict = combine("C11", "a limit quantity", [quantity], None, [])

    assert verdict.outcome.value == outcome
    assert verdict.margin == pytest.approx(over)


@pytest.mark.parametrize("over", [0.99, 1.01])
def test_combine_at_least_decides_at_one_tolerance(over):
    from theory_checks.common import Quantity, combine

    tolerance = tol.tolerance(tol.ToleranceTerm("integrator", 1e-3, "planted"))
    quantity = Quantity("q", -over * 1e-3, 0.0, tolerance, kind="at_least")

    verdict = combine("C2", "a lower bound", [quantity], None, [])

    assert verdict.outcome.value == ("PASS" if over < 1 else "FAIL")


@pytest.mark.parametrize("n", [2, 10, 1000])
def test_roundoff_bounds_dot_products_within_factor_two(n):
    # A float64 sum of n products errs by at most gamma_n s, with s = sum |x_i
    # y_i|, gamma_n = n u / (1 - n u) and u = eps / 2, the error bound of
    # recursive summation. roundoff(n, s) = n eps s must bound the error of such
    # a sum, and stay within twice that bound.
    import random
    from fractions import Fraction

    rng = random.Random(n)
    x = [rng.uniform(-1, 1) for _ in range(n)]
    y = [rng.uniform(-1, 1) for _ in range(n)]
    computed = 0.0
    for a, b in zip(x, y):
        computed += a * b
    exact = sum(Fraction(a) * Fraction(b) for a, b in zip(x, y))
    scale = sum(abs(a * b) for a, b in zip(x, y))
    bound = tol.roundoff(n, scale, "a dot product").value
    unit = 2.0**-53
    assert abs(Fraction(computed) - exact) <= bound
    assert bound <= 2 * (n * unit / (1 - n * unit)) * scale * (1 + 1e-12)
