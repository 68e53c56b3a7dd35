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
