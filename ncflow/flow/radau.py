"""One step of the 3-stage Radau IIA collocation method, with its dense output.

Radau IIA with three stages (Hairer and Wanner, *Solving Ordinary Differential
Equations II*, 2nd ed., Springer 1996, section IV.8) is fully implicit, of order
5, stiffly accurate and L-stable. Its stage equations are solved by a
simplified Newton iteration, so a strong nonlinearity of the stiff part costs
iterations, not order. The late phase of a multi-class flow needs that. Its
loss weights are a soft minimum of margins of order ``||theta||^2``, and two
support margins of one class (or the smallest margins of two classes) stay
within ``O(1)`` of each other. So the fast, exponentially nonlinear part of
the flow lives at relative scale ``1/||theta||^2`` of the directions. A linearly
implicit method (RODAS4, which this module replaced) linearises that part once
per step. Measured on the three-class problem of the tests at ``rtol = 1e-8``,
its steps in ``R`` collapsed to about 75 near ``R = 1.5e10``. This method takes
that run to ``R = 1e12`` in about 250 steps in the clock ``R`` and 149 accepted
steps in the clock ``u`` of ``coordinates.py``, provided its Newton iteration
starts from the previous step's collocation polynomial (the driver passes it
as ``guess``). From ``Z = 0`` the iteration failed on most steps past
``R = 1e10``, because only a start within ``O(1/||theta||^2)`` of the solution
is in its basin.

Everything the method needs is derived below from its three nodes, the zeros of
the Radau polynomial ``d^2/ds^2 (s^2 (s - 1)^3)`` on [0, 1]:

- the collocation matrix ``A_ij = int_0^{c_i} l_j(s) ds`` (``l_j`` the Lagrange
  polynomials of the nodes), with ``b`` its last row;
- the eigen-decomposition ``A^-1 = T diag(lambda) T^-1``: one real eigenvalue
  ``gamma`` and a complex pair, so that a Newton iteration costs one real and
  one complex LU factorisation of the size of the state;
- the embedded solution of order 3, ``y_hat = y_0 + h (gamma_0 f(y_0) +
  sum_i b_hat_i f(Y_i))`` with ``gamma_0 = 1/gamma``, whose weights solve the
  three order conditions; its difference from ``y_1`` is filtered by
  ``(I - h gamma_0 J)^-1`` so that stiff components do not inflate it.

The dense output is the collocation cubic through ``y_0`` and the three stage
values.
"""

from __future__ import annotations

import numpy as np

from ncflow.flow.linear import Jacobian
from ncflow.flow.steps import Step

# Newton iterations per step before the step is given up.
MAX_NEWTON = 7
# Newton stops once the predicted remaining correction is this fraction of the
# error tolerance (Hairer and Wanner's "kappa * Tol", with kappa in [0.01, 0.1]).
NEWTON_TOLERANCE = 0.03
# An iteration whose corrections stop shrinking has reached the roundoff noise of
# the right-hand side. It is accepted when its last correction is within this
# many tolerances, and the step reports the correction as ``newton_noise``.
NOISE_CORRECTION = 1.0
ERROR_ORDER = 3  # order of the embedded solution: the controller uses 1/(3 + 1)


def _nodes() -> np.ndarray:
    """Zeros of ``d^2/ds^2 (s^2 (s - 1)^3)``, sorted; the last one is 1."""
    radau = np.polynomial.Polynomial([0, 0, 1]) * np.polynomial.Polynomial([-1, 1]) ** 3
    roots = np.sort(radau.deriv(2).roots().real)
    roots[-1] = 1.0
    return roots


def _collocation_matrix(c: np.ndarray) -> np.ndarray:
    """``A_ij = int_0^{c_i} l_j(s) ds`` for the Lagrange basis ``l_j`` of ``c``."""
    matrix = np.empty((len(c), len(c)))
    for j in range(len(c)):
        others = np.delete(c, j)
        basis = np.polynomial.Polynomial.fromroots(others) / np.prod(c[j] - others)
        antiderivative = basis.integ()
        matrix[:, j] = antiderivative(c) - antiderivative(0.0)
    return matrix


def _eigen(A: np.ndarray):
    """Return ``values, T, T^-1`` with ``A^-1 = T diag(values) T^-1``.

    Order: the real eigenvalue, then the one with negative imaginary part, then
    its conjugate. The third eigenvector is set to the conjugate of the second,
    so a real Z has conjugate second and third transformed components.
    """
    values, T = np.linalg.eig(np.linalg.inv(A))
    order = sorted(range(3), key=lambda k: (values[k].imag != 0, values[k].imag))
    values, T = values[order], T[:, order]
    T[:, 2] = np.conj(T[:, 1])
    values[2] = np.conj(values[1])
    return values, T, np.linalg.inv(T)


def _tableau():
    c = _nodes()
    A = _collocation_matrix(c)
    b = A[-1].copy()
    values, T, T_inv = _eigen(A)
    gamma = float(values[0].real)
    # Embedded weights: gamma_0 [k == 1] + sum_i b_hat_i c_i^(k-1) = 1/k, k = 1..3.
    gamma_0 = 1.0 / gamma
    powers = np.vander(c, 3, increasing=True).T  # row k: c_i^k
    targets = 1.0 / np.arange(1, 4) - np.array([gamma_0, 0.0, 0.0])
    b_hat = np.linalg.solve(powers, targets)
    # y_hat - y_1 = h gamma_0 f_0 + h (b_hat - b)^T F, and F = A^-1 Z / h.
    error_weights = np.linalg.solve(A.T, b_hat - b)
    # Dense output: y(s) = y_0 + sum_k q_k s^k with sum_k q_k c_i^k = Z_i.
    to_cubic = np.linalg.inv(np.vander(c, 4, increasing=True)[:, 1:])
    return c, A, values, T, T_inv, gamma, error_weights, to_cubic


C_NODES, A_MATRIX, EIGENVALUES, T_MATRIX, T_INVERSE, GAMMA, E_WEIGHTS, TO_CUBIC = (
    _tableau()
)


def radau_step(
    rhs,
    y0: np.ndarray,
    f0: np.ndarray,
    jacobian: np.ndarray,
    size: float,
    scale: np.ndarray,
    guess: np.ndarray | None = None,
    rhs_many=None,
    stage_scale: np.ndarray | None = None,
):
    """Take one Radau IIA step of ``size`` from ``y0``.

    Parameters
    ----------
    rhs : callable
        ``rhs(y) -> ndarray``, the autonomous right-hand side.
    y0, f0 : ndarray, shape (m,)
        State and ``rhs(y0)``.
    jacobian : ndarray, shape (m, m)
        ``d rhs/dy`` at ``y0``; the Newton iteration tolerates an inexact one.
    size : float
        Step size ``h > 0``.
    scale : ndarray, shape (m,)
        Error tolerance per component; the Newton iteration is stopped in
        these units.
    guess : ndarray, shape (3, m), optional
        Start of the iteration for the stage increments ``Z_i = Y_i - y_0``;
        zero by default.
    rhs_many : callable, optional
        ``rhs_many(Y) -> ndarray``, the right-hand side at each row of ``Y``;
        used for the three stages when given, in place of three calls of ``rhs``.
    stage_scale : ndarray, shape (3,), optional
        Factors ``d_i`` by which the right-hand side's scale grows from ``y0``
        to each stage: ``rhs = d(s) g(y)`` with ``g``'s Jacobian about
        ``jacobian`` over the step. The Newton iteration then solves
        ``(h A D)^-1 Z = g(Y)``, ``D = diag(d)``, whose Newton matrix it forms
        exactly from the eigenvectors of ``A D``. The norm clock passes the
        growth of ``dR/du``. With the plain tableau and the Jacobian scaled to
        the middle of the step instead, the three-class benchmark run to error
        1e-6 took up to 7 iterations per step and 802 evaluations in all,
        against 618 this way (both with norm-clock steps growing ``R`` by up to
        half, before the rate test skipped the first correction from ``Z = 0``).

    Returns
    -------
    Step, int
        The step and the number of right-hand-side evaluations it used. When
        the Newton iteration does not converge, ``y1`` is NaN, which the
        caller treats as a rejected step. ``step.newton_noise`` is 0, or the
        last correction (in tolerances) of an iteration that was accepted at
        its roundoff floor.
    """
    m = y0.shape[0]
    if not isinstance(jacobian, Jacobian):
        jacobian = Jacobian(jacobian, np.zeros((m, 0)), np.zeros((m, 0)))
    if stage_scale is None:
        values, T, T_inv, inverse_scale = EIGENVALUES, T_MATRIX, T_INVERSE, None
    else:
        # F_i = d_i g(Y_i) with g's Jacobian about `jacobian` at every stage, so
        # the stage equations (h A)^-1 Z = F read (h A D)^-1 Z = g, D = diag(d):
        # an exact Newton matrix for such a scale, from the eigenvectors of A D.
        values, T, T_inv = _eigen(A_MATRIX * stage_scale[None, :])
        inverse_scale = (1.0 / stage_scale)[:, None]
    real_lu = jacobian.factor(values[0].real / size)
    complex_lu = jacobian.factor(values[1] / size)
    Z = np.zeros((3, m)) if guess is None else guess.copy()
    W = (T_inv @ Z).astype(complex)
    nfev = 0
    previous = None
    converged = False
    noise = 0.0
    for iteration in range(MAX_NEWTON):
        if rhs_many is None:
            F = np.stack([rhs(y0 + Z[i]) for i in range(3)])
        else:
            F = rhs_many(y0 + Z)
        nfev += 3
        if not np.all(np.isfinite(F)):
            break
        G = T_inv @ (F if inverse_scale is None else F * inverse_scale)
        residual = G - (values / size)[:, None] * W
        delta = np.empty_like(W)
        delta[0] = real_lu.solve(residual[0].real)
        delta[1] = complex_lu.solve(residual[1])
        delta[2] = np.conj(delta[1])
        W = W + delta
        Z = (T @ W).real
        correction = float(np.max(np.abs((T @ delta).real) / scale))
        if not np.isfinite(correction):
            break
        if previous is not None:
            rate = correction / previous if previous > 0 else 0.0
            if rate >= 1.0:
                noise = correction if correction <= NOISE_CORRECTION else 0.0
                converged = noise > 0
                break
            if rate / (1.0 - rate) * correction <= NEWTON_TOLERANCE:
                converged = True
                break
        elif correction <= 1e-3 * NEWTON_TOLERANCE:
            converged = True
            break
        # From Z = 0 the first correction is the whole step, so its ratio to the
        # second does not measure the contraction, and the rate test starts a
        # round later. Trusting it, a norm-clock step after an activation change
        # stopped at corrections of 9.2e6 and 236 tolerances, with the iteration
        # 5 tolerances from its solution (the estimate read 0.7).
        previous = correction if guess is not None or iteration > 0 else None
    if not converged:
        nan = np.full(m, np.nan)
        return Step(y0, nan, nan, size, nan, nan), nfev

    y1 = y0 + Z[-1]
    raw = f0 + (GAMMA / size) * (E_WEIGHTS @ Z)
    # With a stage scale the filter is (values[0] / h - J)^-1, rescaled so
    # that it still tends to h / GAMMA on the non-stiff components.
    error = real_lu.solve(raw) * (values[0].real / GAMMA)
    q = TO_CUBIC @ Z  # (3, m): coefficients of s, s^2, s^3
    dense_2 = -q[2]
    dense_1 = -q[2] - q[1]
    step = Step(y0, y1, error, size, dense_1, dense_2, newton_noise=noise)
    step.last_stage = (y0, f0, real_lu)
    return step, nfev
