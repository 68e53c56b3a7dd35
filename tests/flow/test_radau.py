"""The Radau IIA step of ``ncflow.flow.radau`` on problems with known solutions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow.flow import radau

EPS = np.finfo(np.float64).eps


def _rotation(y: np.ndarray) -> np.ndarray:
    return np.array([y[1], -y[0]])


ROTATION_J = np.array([[0.0, 1.0], [-1.0, 0.0]])
Y0 = np.array([1.0, 0.0])


def _exact_rotation(t: float) -> np.ndarray:
    return np.array([math.cos(t), -math.sin(t)])


def _step(rhs, y0, jacobian, size, scale=1e-12, guess=None):
    scale = np.full(y0.shape, scale)
    return radau.radau_step(rhs, y0, rhs(y0), jacobian, size, scale, guess)


def test_tableau_is_the_collocation_method_of_its_nodes():
    c, A = radau.C_NODES, radau.A_MATRIX
    # Simplifying condition C(3): sum_j A_ij c_j^(k-1) = c_i^k / k for k = 1, 2, 3,
    # which is what collocation at three nodes means. The entries are sums of three
    # terms of size at most 1, each within a few eps of exact.
    for k in (1, 2, 3):
        assert np.max(np.abs(A @ c ** (k - 1) - c**k / k)) <= 8 * EPS
    # Radau: the last node is 1, and the weights are the last row (stiffly accurate).
    assert c[-1] == 1.0
    # B(5): sum_i b_i c_i^(k-1) = 1/k for k = 1..5, the quadrature order 2s - 1.
    for k in range(1, 6):
        assert abs(A[-1] @ c ** (k - 1) - 1.0 / k) <= 8 * EPS
    # The transformation reproduces A^-1. T is well conditioned (cond < 10), so the
    # reconstruction is exact to a few eps times ||A^-1||.
    inverse = np.linalg.inv(A)
    rebuilt = (radau.T_MATRIX @ np.diag(radau.EIGENVALUES) @ radau.T_INVERSE).real
    assert np.linalg.cond(radau.T_MATRIX) < 10
    assert np.max(np.abs(rebuilt - inverse)) <= 64 * EPS * np.max(np.abs(inverse))


def _rotation_step(size: float):
    return _step(_rotation, Y0, ROTATION_J, size)[0]


def _max_abs(values: np.ndarray) -> float:
    return float(np.max(np.abs(values)))


def _slope(errors: list[float], sizes: list[float]) -> float:
    return math.log(errors[0] / errors[-1]) / math.log(sizes[0] / sizes[-1])


SIZES = [0.2, 0.1, 0.05]


def test_local_error_is_of_order_six():
    # Order 5: the local error is C h^6 (1 + O(h)). A wrong coefficient lowers the
    # order to at most 4 and the slope to at most 5 (plus the O(h) term, which moves
    # the slope over this range by about h = 0.2 at most), so 5.5 separates the two.
    errors = [_max_abs(_rotation_step(h).y1 - _exact_rotation(h)) for h in SIZES]
    assert _slope(errors, SIZES) >= 5.5


def test_error_estimate_order_is_four():
    # The embedded solution has order 3, so the estimate is C h^4 (1 + O(h)). Order
    # 3 would give a slope of 3, and 3.5 separates the two (as above, the O(h) term
    # moves the slope by at most about 0.2).
    estimates = [_max_abs(_rotation_step(h).error) for h in SIZES]
    slope = _slope(estimates, SIZES)
    assert slope >= 3.5
    assert slope <= 4.5


def test_dense_output_order_is_four():
    # The collocation cubic has stage order 3, so its error at s = 1/2 is O(h^4).
    # A dense output of order 2 would give a slope of 3.
    dense = [
        _max_abs(_rotation_step(h).interpolate(0.5) - _exact_rotation(h / 2))
        for h in SIZES
    ]
    assert _slope(dense, SIZES) >= 3.5


@pytest.mark.parametrize("z", [-1.0, -10.0, -1e4, -1e8])
def test_linear_step_is_the_stability_function(z):
    # On y' = lambda y one step multiplies y by the (2, 3) Pade approximant of e^z,
    # R(z) = (1 + 2z/5 + z^2/20) / (1 - 3z/5 + 3z^2/20 - z^3/60), which tends to 0
    # like -3/z (L-stability). The Newton iteration is exact on a linear problem, so
    # the step agrees with R(z) up to the roundoff of solving with (gamma/h - J),
    # whose condition number is at most 1 + |z| / gamma.
    lam = np.array([[z]])
    step, nfev = _step(lambda y: lam @ y, np.array([1.0]), lam, 1.0, scale=1.0)
    expected = (1 + 2 * z / 5 + z**2 / 20) / (1 - 3 * z / 5 + 3 * z**2 / 20 - z**3 / 60)
    condition = 1 + abs(z) / radau.GAMMA
    assert abs(step.y1[0] - expected) <= 64 * EPS * condition * max(abs(expected), EPS)
    assert nfev <= 6  # the second iteration finds a zero correction


def test_exact_guess_converges_at_once():
    # The collocation cubic passes through the three stage values, so a guess read
    # off it is the solution of the stage equations: the first correction is at
    # roundoff level and the iteration stops after one round of three evaluations.
    first, _ = _step(_rotation, Y0, ROTATION_J, 0.1, scale=1e-8)
    guess = first.interpolate(radau.C_NODES) - Y0
    second, nfev = _step(_rotation, Y0, ROTATION_J, 0.1, scale=1e-8, guess=guess)
    assert nfev == 3
    assert np.max(np.abs(second.y1 - first.y1)) <= 1e-3 * radau.NEWTON_TOLERANCE * 1e-8


def test_newton_failure_gives_a_nan_step():
    # A stiff problem (lambda h = -1e3) with the Jacobian left out: the simplified
    # Newton iteration is then a fixed-point iteration with contraction factor of
    # about |lambda h| max|A| > 1, so it diverges and the step must report it.
    lam = -1e3
    step, _ = radau.radau_step(
        lambda y: lam * y,
        np.array([1.0]),
        np.array([lam]),
        np.zeros((1, 1)),
        1.0,
        np.array([1e-8]),
    )
    assert np.all(np.isnan(step.y1))


@pytest.mark.parametrize("noise, accepted", [(1e-10, True), (1e-6, False)])
def test_newton_at_noise_floor(noise, accepted):
    # y' = -y plus a random error of relative size `noise` in every evaluation, like
    # the roundoff of a late-phase right-hand side, started from the exact stages.
    # Every correction is then noise, of about h * noise, and they do not shrink.
    # Against a tolerance of 1e-8, noise 1e-10 is 0.01 tolerances, so the step is
    # accepted and reports it. Noise 1e-6 is 100 tolerances, above
    # NOISE_CORRECTION, so the step fails.
    jacobian = -np.eye(4)
    y0 = np.ones(4)
    scale = np.full(4, 1e-8)
    exact, _ = radau.radau_step(lambda y: -y, y0, -y0, jacobian, 1.0, scale)
    guess = exact.interpolate(radau.C_NODES) - y0
    rng = np.random.default_rng(0)

    def rhs(y):
        return -y * (1.0 + noise * rng.standard_normal(y.shape))

    step, _ = radau.radau_step(rhs, y0, rhs(y0), jacobian, 1.0, scale, guess)
    if accepted:
        assert np.all(np.isfinite(step.y1))
        assert 0 < step.newton_noise <= radau.NOISE_CORRECTION
    else:
        assert np.all(np.isnan(step.y1))


@pytest.mark.parametrize("lam", [-1.0, -1e2, -1e4])
def test_stage_scale_newton_converges(lam):
    # The norm clock's right-hand side is c(u) g(y) with c = (u0 / u)^3 growing
    # across the step (here by 2^(3/2), as R doubles), and the Jacobian is the
    # one at the step start. Given the scale at the stages, the Newton matrix is
    # exact on y' = lam c(u) y: from Z = 0 one round places the stages' u, the
    # second solves the linear stage equations and the third confirms it (9
    # evaluations) at each stiffness here. Without it the iteration takes more
    # rounds, and it fails once lam h is large.
    u0 = -0.1
    size = -u0 * (1 - 2.0**-0.5)

    def rhs(z):
        return np.array([(u0 / z[1]) ** 3 * lam * z[0], 1.0])

    z0 = np.array([1.0, u0])
    jacobian = np.array([[lam, -3 * lam / u0], [0.0, 0.0]])
    scale = np.full(2, 1e-10)
    growth = (u0 / (u0 + radau.C_NODES * size)) ** 3
    scaled, nfev = radau.radau_step(
        rhs, z0, rhs(z0), jacobian, size, scale, stage_scale=growth
    )
    plain, plain_nfev = radau.radau_step(rhs, z0, rhs(z0), jacobian, size, scale)
    assert nfev == 9
    assert np.all(np.isfinite(scaled.y1))
    if lam == -1.0:
        # Both iterations solve the same stage equations; they stop within
        # NEWTON_TOLERANCE of the scale of the solution.
        assert plain_nfev > nfev
        assert abs(plain.y1[0] - scaled.y1[0]) <= 2 * radau.NEWTON_TOLERANCE * 1e-10
    else:
        assert np.all(np.isnan(plain.y1))
