"""The analytic Jacobians of the polar system and the norm clock against central
differences of their right-hand sides."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ncflow.flow.coordinates import NormCoordinates
from ncflow.flow.polar import PolarSystem
from tests.flow.test_polar import _system

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2

# The losses the package offers, each with a scalar output (binary) or K = 3
# outputs (cross-entropy). The planted fault "cross_entropy_wrong_axis" couples
# the samples, and its Jacobian is knowingly approximate (see ncflow.losses),
# so it is the subject of the power test at the end.
LOSSES = [
    "exponential",
    "logistic",
    "cross_entropy",
    "exponential_mean",
    "logistic_mean",
    "cross_entropy_mean",
]
SCALES = [1e-3, 1.0, 30.0]

# Step of column k: the cube root of the unit roundoff times the scale of x_k,
# which is max(1, |x_k|) except for the norm clock's variable -||theta||^-1, whose
# scale is its own size. The truncation error of a central difference grows like
# step^2 and the rounding error like (unit roundoff) / step, so this step
# balances the two when F and its third derivative are of similar size.
STEP_FACTOR = UNIT_ROUNDOFF ** (1 / 3)


def _random_point(
    loss: str, scale: float, seed: int
) -> tuple[PolarSystem, np.ndarray, np.ndarray]:
    """Return a system, a random state near a balanced start, and a random pattern.

    The perturbation leaves ``||omega_j||`` away from 1, and the pattern has
    zeros at random plus one dead neuron (a zero column).
    """
    system, state, _ = _system(loss, scale)
    rng = np.random.default_rng(seed)
    state = state + 0.3 * rng.standard_normal(state.size)
    pattern = rng.random((system.n, system.h)) < 0.6
    pattern[:, 0] = False
    return system, state, pattern


def _steps(x: np.ndarray) -> np.ndarray:
    return STEP_FACTOR * np.maximum(1.0, np.abs(x))


def _evaluation_error(
    system: PolarSystem, state: np.ndarray, pattern: np.ndarray, rhs_size: float
) -> float:
    """Estimate the rounding error of one evaluation of a right-hand side of size
    ``rhs_size`` at ``state``.

    A component is built from sums of at most ``n h d_y`` terms: the outputs sum
    over the neurons, the rhs over the samples and outputs. A sum of that many
    rounded products errs by at most about ``(n h d_y + 8) u`` times the sum of
    the magnitudes of its terms. The loss gradients are exponentials of
    the outputs, so the rounding error ``u |f_i|`` of an output becomes a
    relative error of about ``u |f_i|`` in ``G_i``. The factor 4 leaves room for
    the magnitudes to exceed ``rhs_size`` through cancellation.
    """
    outputs, _ = system.forward(state, pattern)
    terms = system.n * system.h * system.d_y + 8
    largest_output = float(np.max(np.abs(outputs)))
    return 4 * UNIT_ROUNDOFF * rhs_size * (terms + largest_output)


def _difference_error(
    rhs: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    J: np.ndarray,
    steps: np.ndarray,
    delta: float,
) -> tuple[float, int, float]:
    """Compare ``J`` with central differences of ``rhs`` at ``x``, column by column.

    ``steps[k]`` is the step of column ``k``, and ``delta`` bounds the rounding
    error of one evaluation of ``F = rhs``. Returns the largest ratio of
    ``|D(step) - J e_k|`` to its tolerance, the column where it occurs, and the
    largest tolerance relative to ``max |J|``.

    With ``D(s) = (F(x + s e_k) - F(x - s e_k)) / (2 s)``,
    ``D(s) = J e_k + c s^2 + O(s^4) + r(s)``, where ``c`` is the third
    derivative of ``F`` along ``e_k`` over 6 and the rounding error is
    ``|r(s)| <= delta / s`` for an evaluation error ``delta``. Then
    ``D(s) - D(2 s) = -3 c s^2 + r(s) - r(2 s)``, so
    ``|c s^2| <= (|D(s) - D(2 s)| + 1.5 delta / s) / 3``, and
    ``|D(s) - J e_k| <= |D(s) - D(2 s)| / 3 + 1.5 delta / s``. The tolerance is
    twice that, for the O(s^4) terms that the two-step estimate leaves out.
    The rounding error of ``J`` itself, a few u times its entries, is far below
    ``delta / s`` and is not counted.
    """
    worst_ratio, worst_column, worst_tolerance = 0.0, -1, 0.0
    for k in range(x.size):
        quotients = []
        for s in (steps[k], 2 * steps[k]):
            forward, backward = x.copy(), x.copy()
            forward[k] += s
            backward[k] -= s
            # The step actually taken, after rounding x[k] +- s.
            actual_step = (forward[k] - backward[k]) / 2
            quotients.append((rhs(forward) - rhs(backward)) / (2 * actual_step))
        near, far = quotients
        tolerance = 2 * (np.abs(near - far) / 3 + 1.5 * delta / steps[k])
        ratio = float(np.max(np.abs(near - J[:, k]) / tolerance))
        if ratio > worst_ratio:
            worst_ratio, worst_column = ratio, k
        worst_tolerance = max(worst_tolerance, float(np.max(tolerance)))
    return worst_ratio, worst_column, worst_tolerance / float(np.max(np.abs(J)))


def _polar_error(loss: str, scale: float) -> tuple[float, int, float]:
    system, state, pattern = _random_point(loss, scale, seed=1)
    J = system.jacobian(state, pattern, system.evaluate(state, pattern))
    rhs_size = float(np.max(np.abs(system.rhs(state, pattern))))
    delta = _evaluation_error(system, state, pattern, rhs_size)
    return _difference_error(
        lambda y: system.rhs(y, pattern), state, J, _steps(state), delta
    )


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("scale", SCALES)
def test_polar_jacobian_matches_differences(loss, scale):
    ratio, column, tolerance = _polar_error(loss, scale)
    assert ratio <= 1.0, f"column {column}: error {ratio:.3g} times the tolerance"
    # The check has power: an entry of J wrong by more than twice the tolerance,
    # so by more than 2e-5 max |J|, fails it.
    assert tolerance <= 1e-5, f"tolerance {tolerance:.3g} of max |J|"


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("scale", SCALES)
def test_norm_clock_jacobian_matches_differences(loss, scale):
    system, state, pattern = _random_point(loss, scale, seed=2)
    coords = NormCoordinates(system, pattern.any(axis=0))
    z = coords.from_polar(state)
    rhs, ev = coords.evaluate(z, pattern)
    assert ev.norm_rate != 0.0  # the norm clock divides by dR/dtau
    J = coords.jacobian(z, pattern, ev)
    steps = _steps(z)
    steps[-1] = STEP_FACTOR * abs(z[-1])
    # The last component, dR/dR = 1, is exact and left out of the size.
    delta = _evaluation_error(system, state, pattern, float(np.max(np.abs(rhs[:-1]))))
    # F divides the polar rhs by dR/dtau = sum_j 2 exp(2 sigma_j) ||omega_j||^2 q_j,
    # whose relative rounding error is that of its terms times this factor.
    sigma = state.reshape(system.h, system.block)[:, 0]
    rate_terms = 2 * np.exp(2 * sigma) * ev.omega_norm2 * ev.q
    delta *= float(np.sum(np.abs(rate_terms))) / abs(ev.norm_rate)
    ratio, column, tolerance = _difference_error(
        lambda x: coords.evaluate(x, pattern)[0], z, J, steps, delta
    )
    assert ratio <= 1.0, f"column {column}: error {ratio:.3g} times the tolerance"
    assert tolerance <= 1e-5, f"tolerance {tolerance:.3g} of max |J|"


def test_differences_reject_approximate_jacobian():
    # The wrong-axis fault's Jacobian leaves out the Hessian blocks between
    # samples, which are of the size of the others at this scale, so the check
    # must fail.
    ratio, _, _ = _polar_error("cross_entropy_wrong_axis", 1.0)
    assert ratio > 100.0
