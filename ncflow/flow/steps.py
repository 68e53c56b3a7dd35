"""Steps of the adaptive integrator: container, explicit method and noise probe.

- ``Step``: an attempted step, its error estimate and its cubic dense output,
  ``y(s) = (1 - s) y_0 + s (y_1 + (1 - s)(d_1 + s d_2))`` for ``s`` in [0, 1].
- ``dopri5_step``: one explicit Dormand-Prince 5(4) step, for the non-stiff
  early phase.
- ``error_noise``: how much of an implicit step's error estimate roundoff alone
  can produce (the implicit method itself is in ``radau.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dgetrf, dgetrs, zgetrf, zgetrs


@dataclass
class Step:
    """An attempted step: its end state, error estimate and dense output."""

    y0: np.ndarray
    y1: np.ndarray
    error: np.ndarray
    size: float
    dense_1: np.ndarray
    dense_2: np.ndarray
    # Last Newton correction, in tolerances, of an implicit step accepted at its
    # roundoff floor (0 otherwise).
    newton_noise: float = 0.0

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

    def restricted(self, fraction: float, y1: np.ndarray, error: np.ndarray) -> Step:
        """Return the part of the step up to ``fraction`` as a step of its own.

        Its dense output is the same cubic, reparametrised to [0, 1], but ending
        at ``y1``: the point where the step lands, which may be the continuous
        extension's value there rather than the cubic's.
        """
        c = self.polynomial() * (fraction ** np.arange(4))[:, None]
        dense_2 = -c[3]
        dense_1 = dense_2 - c[2]
        return Step(self.y0, y1, error, fraction * self.size, dense_1, dense_2)


def error_noise(rhs, step: Step, perturbation: np.ndarray) -> np.ndarray:
    """Part of an implicit step's error estimate that roundoff alone can produce.

    The estimate solves ``(gamma/h I - J) e = f(y) + ...`` for a point ``y`` of
    the step (``step.last_stage`` holds ``y``, ``f(y)`` and the factorisation);
    perturbing ``y`` by a few units of roundoff (``perturbation``, relative)
    and solving again for the change of ``f(y)`` shows how much of ``e`` is
    noise: late in the flow the loss weights depend on margin differences of
    order 1 that are computed from margins of order ``||theta||^2``, so the
    right-hand side carries a relative noise of about ``eps ||theta||^2``.
    """
    y6, f6, solver = step.last_stage
    shifted = rhs(y6 * (1.0 + perturbation))
    return solver.solve(shifted - f6)


def lu_factor(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factor a square matrix by LAPACK's ``getrf``; return the LU factors and
    pivots.

    ``scipy.linalg.lu_factor`` and ``lu_solve`` call the same routines, and add
    about 5 and 9 microseconds of argument handling per call (measured on 109
    rows), which the implicit steps pay several times per step. ``matrix`` is
    overwritten. A singular matrix gives infinite solutions, which fail the
    step.
    """
    getrf = zgetrf if np.iscomplexobj(matrix) else dgetrf
    lu, pivots, info = getrf(matrix, overwrite_a=True)
    if info < 0:
        raise ValueError(f"LAPACK getrf: argument {-info} is invalid")
    return lu, pivots


def lu_solve(factors: tuple[np.ndarray, np.ndarray], rhs: np.ndarray) -> np.ndarray:
    """Solve ``A x = rhs`` from :func:`lu_factor`'s factors, by LAPACK's ``getrs``."""
    lu, pivots = factors
    getrs = zgetrs if np.iscomplexobj(lu) else dgetrs
    solution, info = getrs(lu, pivots, rhs)
    if info < 0:
        raise ValueError(f"LAPACK getrs: argument {-info} is invalid")
    return solution


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
_DP_A_ROWS = [np.array(row) for row in DP_A]
_DP_B_ROW = np.array(DP_B)
_DP_E_ROW = np.array(DP_E)
# Real stability boundary of the method: h * rho beyond about 3.3 is unstable.
DP_STABILITY_LIMIT = 3.3
# Continuous extension of order 4 (Shampine, Math. Comp. 46, 1986; the dense
# output of Hairer, Norsett and Wanner, "Solving ODEs I", sec. II.6): the state
# at the fraction s of a step is y_0 + h sum_i b_i(s) k_i over the seven stages,
# with b_i(s) = sum_k DP_DENSE[i, k] s^(k+1). At s = 1 it is the 5th-order step.
DP_DENSE = np.array(
    [
        [1.0, -8048581381 / 2820520608, 8663915743 / 2820520608,
         -12715105075 / 11282082432],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 131558114200 / 32700410799, -68118460800 / 10900136933,
         87487479700 / 32700410799],
        [0.0, -1754552775 / 470086768, 14199869525 / 1410260304,
         -10690763975 / 1880347072],
        [0.0, 127303824393 / 49829197408, -318862633887 / 49829197408,
         701980252875 / 199316789632],
        [0.0, -282668133 / 205662961, 2019193451 / 616988883,
         -1453857185 / 822651844],
        [0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423],
    ]
)  # fmt: skip


def dense_weights(fraction: float) -> np.ndarray:
    """Weights ``b_i(s)`` of the seven stages at ``s = fraction``, shape (7,)."""
    powers = fraction ** np.arange(1, 5)
    return DP_DENSE @ powers


def dense_state(step: Step, fraction: float) -> np.ndarray:
    """State at ``fraction`` of an explicit step by the continuous extension."""
    return step.y0 + step.size * (dense_weights(fraction) @ step.stages)


def dense_velocity(step: Step, fraction: float) -> np.ndarray:
    """Derivative in ``fraction`` of :func:`dense_state`, ``h sum_i b_i'(s) k_i``."""
    slopes = np.arange(1, 5) * fraction ** np.arange(4)
    return step.size * ((DP_DENSE @ slopes) @ step.stages)


def dopri5_step(rhs, y0: np.ndarray, f0: np.ndarray, size: float):
    """Take one explicit Dormand-Prince 5(4) step of ``size`` from ``y0``.

    Returns
    -------
    Step, ndarray, float
        The step (with a cubic Hermite dense output from ``y0, f0, y1, f1``),
        ``f1 = rhs(y1)`` and the estimate ``||f(y1) - f(y6)|| / ||y1 - y6||`` of
        the stiffness ``rho`` (``y6`` the last stage point, Hairer's test).
    """
    k = np.empty((7, y0.size))
    k[0] = f0
    y = y0
    for stage in range(1, 6):
        y = y0 + size * (_DP_A_ROWS[stage] @ k[:stage])
        k[stage] = rhs(y)
    y_stage6 = y
    y1 = y0 + size * (_DP_B_ROW @ k[:6])
    f1 = rhs(y1)
    k[6] = f1
    error = size * (_DP_E_ROW @ k)
    difference = float(np.linalg.norm(y1 - y_stage6))
    rho = float(np.linalg.norm(f1 - k[5])) / difference if difference > 0 else 0.0
    delta = y1 - y0
    dense_1 = size * f0 - delta
    dense_2 = delta - size * f1 - dense_1
    step = Step(y0, y1, error, size, dense_1, dense_2)
    step.stages = k
    return step, f1, rho
