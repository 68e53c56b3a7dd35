"""Limit tolerances where a class has nearly coincident samples or a turning quantity.

Cases with closed-form results: a class of two unit samples at angle ``alpha``
has ``gamma = cos(alpha / 2)`` and ``u`` along their bisector, and a sum of two
power laws has a known distance to its limit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ncflow.data import Dataset
from ncflow.network import Parameters
from tests.theory.support import SETTINGS
from theory_checks import binary
from theory_checks import tolerances as tol
from theory_checks.common import refine_norm
from theory_checks.limits import RESOLVED_R, direction_resolution, predict
from theory_checks.runs import Example, RunSettings
from theory_checks.verdict import Outcome, Verdict

EPS = float(np.finfo(np.float64).eps)
ALPHA = 1e-5


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _pair_dataset(copies: int = 1) -> Dataset:
    """Return class 0 as one sample at angle 0 and ``copies`` at ``ALPHA``, and
    class 1 as one sample at angle pi + 0.3, which makes the classes
    orthogonally separable."""
    rows = [_unit(0.0)] + [_unit(ALPHA)] * copies + [_unit(math.pi + 0.3)]
    labels = [0] * (1 + copies) + [1]
    return Dataset.from_arrays(np.array(rows), np.array(labels))


# -- the two-rate model for turning sequences --------------------------------------

R_EARLIER, R_REF, R = 1e6, 1e8, 1e10


def _turning(slow: float, fast: float):
    """``2 + slow R^-1/2 + fast / R``: a part falling like ``R^-1/2`` and one of
    the other sign falling like ``1/R``, as a dead share beside a rotation."""
    return lambda R_: 2.0 + slow * R_**-0.5 + fast / R_


@pytest.mark.parametrize(("slow", "fast"), [(-1.9e-4, 0.79), (1e-4, -0.5)])
def test_turning_sequence_tail_covers_true_distance(slow, fast):
    q = _turning(slow, fast)
    d1, d2 = q(R_REF) - q(R_EARLIER), q(R) - q(R_REF)
    assert d1 * d2 < 0, "the case must turn between the three points"
    remaining = abs(q(R) - 2.0)

    one_rate = tol.asymptotic(q(R), q(R_REF), R, R_REF, "slow", q(R_EARLIER))
    two_rate = tol.asymptotic(
        q(R), q(R_REF), R, R_REF, "slow", q(R_EARLIER), R_earlier=R_EARLIER
    )

    assert one_rate.value < remaining
    assert two_rate.value >= remaining
    assert "two-rate model" in two_rate.derivation


def test_two_rate_tail_overestimates_sqrt_and_inverse_parts():
    q = _turning(1.0, -750.0)
    norms = (R_EARLIER, R_REF, R)

    estimate = tol.two_rate_tail(tuple(q(r) for r in norms), norms)

    # The bases decay no faster than the parts, so the estimate is above the
    # truth. The docstring gives the ratio as 1.26, rounded to two decimals, so
    # it must lie within half a unit of the last digit.
    assert estimate / abs(q(R) - 2.0) == pytest.approx(1.26, abs=0.005)


def test_two_rate_tail_nan_gives_inf():
    assert tol.two_rate_tail((1.0, math.nan, 1.0), (R_EARLIER, R_REF, R)) == math.inf


# -- direction_resolution on a pair at a known angle --------------------------------


def test_pair_is_unresolved_below_threshold_r():
    dataset = _pair_dataset()
    limit = predict(dataset, multiclass=False)
    gamma = math.cos(ALPHA / 2)
    # r = s^2 R gamma alpha^2 = 1 lies far below RESOLVED_R.
    R_small = 1.0 / (limit.s[0] ** 2 * gamma * ALPHA**2)

    resolution = direction_resolution(dataset.X, dataset.labels, limit, R_small)[0]

    assert resolution.unresolved is not None
    i, j, alpha, r = resolution.unresolved
    assert (i, j) == (0, 1)
    # The angle comes from the chord of two unit vectors built from cos and
    # sin to 1 ulp each: a relative error of a few eps / alpha.
    assert alpha == pytest.approx(ALPHA, rel=10 * EPS / ALPHA)
    assert r == pytest.approx(1.0, rel=10 * EPS / ALPHA)


def test_pair_is_resolved_above_threshold_r():
    dataset = _pair_dataset()
    limit = predict(dataset, multiclass=False)
    gamma = math.cos(ALPHA / 2)
    R_large = 2 * RESOLVED_R / (limit.s[0] ** 2 * gamma * ALPHA**2)

    resolution = direction_resolution(dataset.X, dataset.labels, limit, R_large)[0]

    assert resolution.unresolved is None


def test_pair_conditioning_is_roundoff_over_angle():
    dataset = _pair_dataset()
    limit = predict(dataset, multiclass=False)

    resolution = direction_resolution(dataset.X, dataset.labels, limit, 1e20)[0]

    # c = 3 D + n_k = 3 * 2 + 2; the pair is separable in float64, so the
    # bound is c eps / alpha, up to the angle's own relative error above.
    expected = (3 * 2 + 2) * EPS / ALPHA
    assert resolution.conditioning == pytest.approx(expected, rel=10 * EPS / ALPHA)


def test_identical_samples_are_not_a_pair():
    X = np.array([_unit(0.0), _unit(0.0), _unit(math.pi + 0.3)])
    dataset = Dataset.from_arrays(X, np.array([0, 0, 1]))
    limit = predict(dataset, multiclass=False)

    resolution = direction_resolution(dataset.X, dataset.labels, limit, 1.0)[0]

    assert resolution.unresolved is None
    assert resolution.conditioning == 0.0


def test_sample_far_above_margin_is_not_near_active():
    # u_0 = x_0, since <x_1 - x_0, x_0> = 2 cos(0.3) - 1 > 0; the second
    # sample's margin exceeds gamma = 1 by 0.91, so rho * gap = 0.91 s^2 R is
    # about 2300 > 40 for R = 1e4 and s^2 near 1/4.
    X = np.array([_unit(0.0), 2 * _unit(0.3), _unit(math.pi + 0.3)])
    dataset = Dataset.from_arrays(X, np.array([0, 0, 1]))
    limit = predict(dataset, multiclass=False)

    resolution = direction_resolution(dataset.X, dataset.labels, limit, 1e4)[0]

    assert resolution.near_active.tolist() == [0]
    assert resolution.unresolved is None


# -- refine_norm and the C10 check ---------------------------------------------------


def _unresolved_verdict() -> Verdict:
    part = {"name": "unresolved", "value": math.inf, "derivation": "stub"}
    return Verdict(
        "C10",
        Outcome.INCONCLUSIVE,
        "stub",
        details={"quantities": [{"name": "q", "tolerance_parts": [part]}]},
    )


def test_refine_norm_repeats_unresolved_inconclusive():
    targets = []

    def check_once(example, settings):
        targets.append(settings.norm2_target)
        if settings.norm2_target < 1e12:
            return _unresolved_verdict()
        return Verdict("C10", Outcome.PASS, "stub")

    settings = RunSettings(norm2_target=1e8, norm2_max=1e12)

    verdict = refine_norm(check_once, None, settings)

    assert verdict.outcome is Outcome.PASS
    assert targets == [1e8, 1e10, 1e12]
    assert "after INCONCLUSIVE at ||theta||^2 = 1e+08" in verdict.reason


def test_refine_norm_leaves_other_inconclusive_alone():
    targets = []

    def check_once(example, settings):
        targets.append(settings.norm2_target)
        return Verdict("C10", Outcome.INCONCLUSIVE, "the run stalled")

    verdict = refine_norm(check_once, None, RunSettings(norm2_target=1e8))

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert targets == [1e8]


# One norm and one eps: the eps floor keeps a FAIL from being repeated at
# smaller eps, so each test reads the run at eps = 1e-6 itself.
PAIR_SETTINGS = RunSettings(rtol=1e-7, norm2_target=1e8, norm2_max=1e8, eps_floor=1e-6)


def _pair_example() -> Example:
    """One neuron per class, each starting on its class; class 0 has a lone
    sample and two copies of a second one at angle ``ALPHA``."""
    dataset = _pair_dataset(copies=2)
    scale = 0.5
    W0 = scale * np.column_stack([_unit(ALPHA / 2), _unit(math.pi + 0.3)])
    V0 = scale * np.array([[1.0, -1.0]])
    return Example(dataset, Parameters(W0, V0), 1e-6, "exponential")


def test_c10_is_inconclusive_on_unresolved_pair():
    # At R_ref = 1e6, r = s^2 R_ref gamma alpha^2 is about 2.5e-5: the group
    # rests at the weighted mean of the pair, alpha/6 from u_0, so the residual
    # s_0 alpha / 6 = 8e-7 is far beyond the one-rate tolerance. The eps floor
    # keeps the check at one eps, so that a FAIL is not repeated.
    verdict = binary.check("C10", _pair_example(), PAIR_SETTINGS)

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "not yet resolved" in verdict.reason


def test_c10_plateau_residual_is_weighted_mean_offset():
    # The same run, read without the verdict: the class-0 residual is the
    # offset of the weighted mean (1 x_a + 2 x_b)/3 from the bisector, alpha/6,
    # times s_0. The group has begun its turn by a relative O(r), with
    # r = s_0^2 R gamma alpha^2 at the measured R = norm2_target (2.5e-3).
    example = _pair_example()
    limit = predict(example.dataset, multiclass=False)
    r = limit.s[0] ** 2 * PAIR_SETTINGS.norm2_target * limit.gammas[0] * ALPHA**2

    verdict = binary.check("C10", example, PAIR_SETTINGS)

    name = "class 0: ||W_bar_k - s_k u_k g_k^T||_F"
    measured = next(
        q["measured"] for q in verdict.details["quantities"] if q["name"] == name
    )
    assert measured == pytest.approx(limit.s[0] * ALPHA / 6, rel=r)


def test_c10_plateau_is_not_integration_error():
    # The residual must not come from the integrator: the loose run at 10 rtol
    # gives the same plateau to far below its size.
    verdict = binary.check("C10", _pair_example(), PAIR_SETTINGS)
    name = "class 0: ||W_bar_k - s_k u_k g_k^T||_F"
    quantity = next(q for q in verdict.details["quantities"] if q["name"] == name)

    integrator = next(
        p["value"] for p in quantity["tolerance_parts"] if p["name"] == "integrator"
    )

    assert integrator < 1e-3 * quantity["measured"]


def _rotated(vector: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def _wrong_u0(monkeypatch, angle: float) -> None:
    """Rotate the predicted u_0 of the binary checks by ``angle``."""
    original = binary._limit

    def wrong_limit(example):
        limit = original(example)
        u = limit.u.copy()
        u[0] = _rotated(u[0], angle)
        return dataclasses.replace(limit, u=u)

    monkeypatch.setattr(binary, "_limit", wrong_limit)


def test_c12_wrong_u_fails_despite_pair(monkeypatch):
    # Two classes of unequal margins in R^3 (as in the power tests), and a copy
    # of sample 1 turned by 1e-5 rad, an unresolved pair of class 1. A predicted
    # u_1 rotated by 1e-3 moves the empirical-mean closed forms through the
    # lengths a_i by far more than the plateau part allows, so C12 must FAIL.
    X = np.array(
        [[3.0, 0.4, 0.0], [2.5, -0.3, 0.0], [-1.0, 0.1, 0.0], [-0.8, -0.6, 0.0]]
    )
    turn = 1e-5
    copy = np.array(
        [
            math.cos(turn) * X[1, 0] - math.sin(turn) * X[1, 1],
            math.sin(turn) * X[1, 0] + math.cos(turn) * X[1, 1],
            0.0,
        ]
    )
    # Class 1 is the one named 1, which contains the pair.
    y = np.array([1, 1, -1, -1, 1])
    dataset = Dataset.from_arrays(np.vstack([X, copy]), y, class_order=(-1, 1))
    W = np.array([[0.6, -0.6], [0.0, 0.0], [0.0, 0.0]])
    V = np.array([[0.6, -0.6]])
    example = Example(dataset, Parameters(W, V), 1e-4, "exponential")
    original = binary._limit

    def wrong_limit(example):
        limit = original(example)
        u = limit.u.copy()
        u[1] = np.concatenate([_rotated(u[1][:2], 1e-3), u[1][2:]])
        return dataclasses.replace(limit, u=u)

    monkeypatch.setattr(binary, "_limit", wrong_limit)
    settings = dataclasses.replace(SETTINGS, eps_floor=1.0)
    verdict = binary.check("C12", example, settings)

    assert verdict.outcome is Outcome.FAIL, verdict.reason


def test_c12_is_inconclusive_on_unresolved_pair():
    # With the right u_0 the NC1 deviation is within the plateau part, which
    # leaves the claim undecided.
    verdict = binary.check("C12", _pair_example(), PAIR_SETTINGS)

    assert verdict.outcome is Outcome.INCONCLUSIVE, verdict.reason


def test_c10_wrong_u_fails_despite_pair(monkeypatch):
    # A predicted u_0 rotated by beta = 1e-3, a thousand times the pair's angle:
    # the plateau keeps the group within alpha of the true u_0, so a residual of
    # about s_0 beta cannot be the plateau and must FAIL, not hide as INCONCLUSIVE.
    _wrong_u0(monkeypatch, 1e-3)
    verdict = binary.check("C10", _pair_example(), PAIR_SETTINGS)

    assert verdict.outcome is Outcome.FAIL, verdict.reason
