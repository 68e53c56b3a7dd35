"""One step of the L-stable Rosenbrock method RODAS4, with its dense output.

RODAS4 (Hairer and Wanner, *Solving Ordinary Differential Equations II*, 2nd ed.,
Springer 1996, section IV.7) is a 6-stage linearly implicit method of order 4
with an embedded solution of order 3. It is stiffly accurate and L-stable, so it
takes steps set by the slow part of the solution however stiff the fast part is:
that is what the late phase of the flow needs, where the relaxation rate of the
direction grows like ``||theta||^2``. Each step costs one Jacobian, one LU
factorisation of ``I/(gamma h) - J`` and six right-hand sides. The method needs
the exact Jacobian, which ``PolarSystem.jacobian`` provides.

Stage ``i`` solves ``(I/(gamma h) - J) k_i = f(y_0 + sum_j a_ij k_j) +
sum_j (c_ij / h) k_j``; the solution is ``y_1 = y_0 + sum_j m_j k_j`` and the
error estimate is ``k_6``. The dense output is
``y(s) = (1 - s) y_0 + s (y_1 + (1 - s)(d_1 + s d_2))`` for ``s`` in [0, 1],
with ``d_1, d_2`` fixed combinations of the stages (order 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

# Coefficients of RODAS4 in the transformed form of Hairer and Wanner.
GAMMA = 0.25
A = {
    2: (1.544,),
    3: (0.9466785280815826, 0.2557011698983284),
    4: (3.314825187068521, 2.896124015972201, 0.9986419139977817),
    5: (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895),
}
C = {
    2: (-5.6688,),
    3: (-2.430093356833875, -0.2063599157091915),
    4: (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
    5: (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616),
    6: (
        8.083246795921522,
        -7.981132988064893,
        -31.52159432874371,
        16.31930543123136,
        -6.058818238834054,
    ),
}
DENSE_1 = (
    10.12623508344586,
    -7.487995877610167,
    -34.80091861555747,
    -7.992771707568823,
    1.025137723295662,
)
DENSE_2 = (
    -0.6762803392801253,
    6.087714651680015,
    16.43084320892478,
    24.76722511418386,
    -6.594389125716872,
)
ERROR_ORDER = 3  # order of the embedded solution: the step controller uses 1/(3 + 1)


@dataclass
class Step:
    """An attempted step: its end state, error estimate and dense output."""

    y0: np.ndarray
    y1: np.ndarray
    error: np.ndarray
    size: float
    dense_1: np.ndarray
    dense_2: np.ndarray

    def interpolate(self, fraction: float | np.ndarray) -> np.ndarray:
        """Dense output at ``fraction`` in [0, 1] of the step; shape (..., size)."""
        s = np.asarray(fraction, dtype=np.float64)[..., None]
        return (1 - s) * self.y0 + s * (
            self.y1 + (1 - s) * (self.dense_1 + s * self.dense_2)
        )

    def polynomial(self) -> np.ndarray:
        """Coefficients ``c_0..c_3`` of ``y(s) = sum_k c_k s^k``, shape (4, size)."""
        y0, y1, d1, d2 = self.y0, self.y1, self.dense_1, self.dense_2
        return np.stack([y0, y1 - y0 + d1, d2 - d1, -d2])


def rodas4_step(rhs, y0: np.ndarray, f0: np.ndarray, jacobian: np.ndarray, size: float):
    """Take one RODAS4 step of ``size`` from ``y0``.

    Parameters
    ----------
    rhs : callable
        ``rhs(y) -> ndarray``, the autonomous right-hand side.
    y0, f0 : ndarray, shape (m,)
        State and ``rhs(y0)``.
    jacobian : ndarray, shape (m, m)
        Exact ``d rhs/dy`` at ``y0``.
    size : float
        Step size ``h > 0``.

    Returns
    -------
    Step, int
        The step and the number of right-hand-side evaluations it used.
    """
    m = y0.shape[0]
    matrix = np.eye(m) / (GAMMA * size) - jacobian
    lu = scipy.linalg.lu_factor(matrix, check_finite=False)
    solve = scipy.linalg.lu_solve
    k = [solve(lu, f0, check_finite=False)]
    for stage in (2, 3, 4, 5):
        y = y0 + sum(coef * kj for coef, kj in zip(A[stage], k))
        extra = sum(coef * kj for coef, kj in zip(C[stage], k)) / size
        k.append(solve(lu, rhs(y) + extra, check_finite=False))
    y = y + k[4]
    f6 = rhs(y)
    extra = sum(coef * kj for coef, kj in zip(C[6], k)) / size
    k.append(solve(lu, f6 + extra, check_finite=False))
    y1 = y + k[5]
    dense_1 = sum(coef * kj for coef, kj in zip(DENSE_1, k))
    dense_2 = sum(coef * kj for coef, kj in zip(DENSE_2, k))
    step = Step(y0, y1, k[5], size, dense_1, dense_2)
    step.last_stage = (y, f6, lu)
    return step, 5


def error_noise(rhs, step: Step, perturbation: np.ndarray) -> np.ndarray:
    """Part of a RODAS4 error estimate that roundoff alone can produce.

    The estimate ``k_6`` solves ``(I/(gamma h) - J) k_6 = f(y_6) + ...``;
    perturbing ``y_6`` by a few units of roundoff (``perturbation``, relative)
    and solving again for the change of ``f(y_6)`` shows how much of ``k_6`` is
    noise: late in the flow the loss weights depend on margin differences of
    order 1 that are computed from margins of order ``||theta||^2``, so the
    right-hand side carries a relative noise of about ``eps ||theta||^2``.
    """
    y6, f6, lu = step.last_stage
    shifted = rhs(y6 * (1.0 + perturbation))
    return scipy.linalg.lu_solve(lu, shifted - f6, check_finite=False)


# Dormand-Prince 5(4) for the non-stiff early phase: the Butcher tableau of
# Dormand and Prince (J. Comput. Appl. Math. 6, 1980), with the 4th-order
# embedded weights for the error estimate.
DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# b - b_hat, the weights of the error estimate (the 7th entry multiplies f(y1)).
DP_E = (
    35 / 384 - 5179 / 57600,
    0.0,
    500 / 1113 - 7571 / 16695,
    125 / 192 - 393 / 640,
    -2187 / 6784 + 92097 / 339200,
    11 / 84 - 187 / 2100,
    -1 / 40,
)
DP_ERROR_ORDER = 4
# Real stability boundary of the method: h * rho beyond about 3.3 is unstable.
DP_STABILITY_LIMIT = 3.3


def dopri5_step(rhs, y0: np.ndarray, f0: np.ndarray, size: float):
    """Take one explicit Dormand-Prince 5(4) step of ``size`` from ``y0``.

    Returns
    -------
    Step, ndarray, float
        The step (with a cubic Hermite dense output from ``y0, f0, y1, f1``),
        ``f1 = rhs(y1)`` and the estimate ``||f(y1) - f(y6)|| / ||y1 - y6||`` of
        the stiffness ``rho`` (``y6`` the last stage point, Hairer's test).
    """
    k = [f0]
    y = y0
    for stage in range(1, 6):
        y = y0 + size * sum(coef * kj for coef, kj in zip(DP_A[stage], k))
        k.append(rhs(y))
    y_stage6 = y
    y1 = y0 + size * sum(coef * kj for coef, kj in zip(DP_B, k))
    f1 = rhs(y1)
    k.append(f1)
    error = size * sum(coef * kj for coef, kj in zip(DP_E, k))
    difference = float(np.linalg.norm(y1 - y_stage6))
    rho = float(np.linalg.norm(f1 - k[5])) / difference if difference > 0 else 0.0
    delta = y1 - y0
    dense_1 = size * f0 - delta
    dense_2 = delta - size * f1 - dense_1
    return Step(y0, y1, error, size, dense_1, dense_2), f1, rho
