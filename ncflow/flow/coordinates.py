"""The two clocks the adaptive integrator runs the polar system in.

``TauCoordinates``: state ``(sigma_j, omega_j)_j``, independent variable ``tau``
(``dt/dtau = 1/N``). Every rate is bounded by 1, which suits the early phase,
where the weights grow exponentially (``sigma`` grows linearly) and the
directions align.

``NormCoordinates``: state ``(s_j, omega_j)_j`` plus ``u``, independent variable
``u = -R^(-1/2)`` with ``R = ||theta||_F^2`` (``u`` grows from ``-R_0^(-1/2)``
towards 0), with ``sigma_j = s_j + kappa_j log R`` and ``kappa_j`` = 1/2 for a
neuron with an active sample and 0 for a dead one. This is the late phase
clock. There the flow relaxes fast (at a rate that grows like ``R`` in
``tau``) onto a slowly moving manifold, and the margins grow like ``R``. On
that manifold each neuron's direction keeps the part of ``w_j`` that its
class's gradient never moves, so it tends to its limit like ``R^(-1/2)``
(measured on the binary benchmark problem: ``||omega_j - lim|| R^(1/2)`` stays
between 0.42 and 0.50 from ``R = 850`` to ``2e7``). In the clock ``R`` that term
is as rough at every scale, so the error estimate held the steps to about 0.2
of ``R`` from ``R = 14`` to ``1e4``. In ``u`` it is linear, and ``s_j`` and the
directions are smooth functions of ``u`` near ``u = 0``, so the steps are
limited by the cap on the growth of ``R`` (``adaptive.EARLY_NORM_STEP``), not by
accuracy, once the flow nears its limit. Measured to ``R = 1e12`` at
``rtol = 1e-10``: 627 accepted steps and 5375 evaluations on the binary
benchmark problem against 979 and 9545 in the clock ``R``, 370 and 4410 against
570 and 6749 on the three-class one. The right-hand side is that of the clock
``R`` times ``dR/du = 2 R^(3/2)``, whose growth across a step the Radau step's
Newton iteration takes into account (``radau_step``'s ``stage_scale``).
``dR/dtau > 0`` is needed, which is true once every sample is classified
correctly.

The manifold is not smooth at every scale. The loss weights are a soft minimum
of the margins, so the difference of two support margins (of one class, or the
smallest margins of two classes) stays of order 1 while the margins grow like
``R``: that fast part of the state lives at relative scale ``1/R`` of ``s_j``
and ``omega_j`` and is exponentially nonlinear there. A linearly implicit
method (RODAS4, used here before) linearised it once per step and stalled on
the three-class problem near ``R = 1.5e10``, with steps of about 75 in ``R``;
see ``radau.py`` for what works instead.

Both expose the same small interface to the driver: conversion to and from the
polar state, ``evaluate``, ``jacobian``, ``normalize``, the error scale, the
neuron blocks (for the activation crossings) and the log of ``dtau`` per unit
of the independent variable (for the gradient-flow time).
"""

from __future__ import annotations

import math

import numpy as np

from ncflow.flow.linear import Jacobian
from ncflow.flow.polar import Evaluation, PolarSystem
from ncflow.network import sample_margins

# Largest shift of a margin that an error of the tolerance in the unit directions
# may cause, relative to the margins' scale 1. The loss weights are exponentials of
# the margins, which grow like R, so an error delta in a direction moves a margin
# by up to about R max||x_i|| delta and multiplies a weight by exp of that. Above
# 1 the Newton iteration starts outside its basin: in a two-class cross-entropy run
# (n = 36, D = 6, h = 2, max||x_i|| about 2.5) Newton's iteration first failed at
# R delta = 13 and the run stopped at R delta = 138, and the stalls of a larger step
# cap began at R delta = 38. With this bound (and LATE_RTOL_MIN) that run
# reaches R = 1e12 at rtol 1e-2 to 1e-10, also with X scaled by 30.
LATE_MARGIN_SHIFT = 1.0
# The bound above stops at this rtol. Below it the late steps reach the float64
# noise floor of their error estimate once R max||x_i|| is large, because the loss
# weights carry a relative roundoff of about eps R max||x_i||. Measured to R = 1e12
# on the benchmark problems with X scaled by 1, 30 and 100, at rtol 1e-2, 1e-6 and
# 1e-10: with a floor of 0, 1e-12 or 1e-11, runs at scales 30 and 100 stopped on
# roundoff between R = 1.7e11 and 9.6e11; with 1e-10 all 18 runs reached 1e12 with
# the norm-clock step cap of that time. With the present cap (EARLY_NORM_SHIFT in
# adaptive.py) the binary problem at scale 100 stops at R = 7.6e11 and 8.5e11 at
# rtol 1e-2 and 1e-6, where eps R max||x_i|| = 0.034 to 0.038: the roundoff limit
# that the README gives for every run.
# Against a fixed cap of rtol at 1e-6 alone, at rtol 1e-2 and 1e-6 and scale 1,
# the benchmark problems then take 3 % fewer to 2 % more gradient evaluations to
# R = 1e12, and three random two-class problems 6 to 14 % more, with the same
# margins to 1e-14.
# NOTE: from R max||x_i|| = 1e10 on the floor lets R max||x_i|| delta grow past 1
# again, as before the bound. No run measured here stalled there before the
# roundoff limit: the two-class run above with X scaled by 100 stops at R = 3.2e11
# and 8.4e11 at rtol 1e-2 and 1e-6 (eps R max||x_i|| of 0.015 and 0.04), where it
# stopped near 3.5e6 without the bound, and reaches 1e12 at rtol = 1e-10.
LATE_RTOL_MIN = 1e-10
# The late rtol has no fixed cap. A cap of 1e-6 predates the bound above, for the
# same reason: Newton starts from the last step's dense output, and its basin in
# the fast part of the state shrinks like 1/R. Without either, runs of the tests'
# problems at rtol 2e-4 to 1e-2 stalled near R = 2e10. With the bound, the cap
# changed no run at rtol <= 1e-6 and slowed the looser ones. Measured on 28 runs
# to R = 1e12 (the two benchmark problems, the binary one with X scaled by 30 and
# 100, the cross-entropy problem of the tests with X scaled by 1, 30 and 100;
# rtol 1e-2, 1e-4, 1e-6 and 1e-10): without the cap all 28 reach 1e12, with it 27
# (the cross-entropy run scaled by 100 at rtol 1e-2 stopped on roundoff at
# R = 9.0e11). At rtol 1e-2 and 1e-4 they take 6 to 18 % fewer evaluations. Their
# final directions stay as close to those at rtol 1e-10: the largest difference
# the cap changes is 1.4e-11 without it against 4.2e-12 with it.


def late_rtol(rtol: float, R: float, x_max: float) -> float:
    """Return the ``rtol`` of the norm clock at ``||theta||^2 = R`` for data of
    largest norm ``x_max``: ``rtol`` capped by ``LATE_MARGIN_SHIFT / (R x_max)``,
    the cap not below ``LATE_RTOL_MIN``."""
    shift_bound = max(LATE_MARGIN_SHIFT / (R * x_max), LATE_RTOL_MIN)
    return min(rtol, shift_bound)


class TauCoordinates:
    """The polar state itself, advanced in ``tau``."""

    clock = "tau"

    def __init__(self, system: PolarSystem) -> None:
        self.system = system
        self.size = system.size

    def from_polar(self, y: np.ndarray) -> np.ndarray:
        return y.copy()

    def to_polar(self, z: np.ndarray) -> np.ndarray:
        return z

    def blocks(self, z: np.ndarray) -> np.ndarray:
        """View of the neuron blocks, shape (..., h, B)."""
        return z.reshape(z.shape[:-1] + (self.system.h, self.system.block))

    def evaluate(
        self, z: np.ndarray, pattern: np.ndarray
    ) -> tuple[np.ndarray, Evaluation]:
        ev = self.system.evaluate(z, pattern)
        return ev.rhs, ev

    def jacobian(
        self, z: np.ndarray, pattern: np.ndarray, ev: Evaluation
    ) -> np.ndarray:
        return self.system.jacobian(z, pattern, ev)

    def structured_jacobian(
        self, z: np.ndarray, pattern: np.ndarray, ev: Evaluation
    ) -> Jacobian:
        """Return the Jacobian with its block and low-rank parts (``linear.py``)."""
        J, u, v = self.system.jacobian_parts(z, pattern, ev)
        return Jacobian(J, u[:, None], v[:, None])

    def rhs_many(self, zs: np.ndarray, pattern: np.ndarray) -> np.ndarray:
        """Right-hand side at each row of ``zs``, shape (m, size)."""
        return self.system.evaluate_many(zs, pattern)[0]

    def log_rate(self, z: np.ndarray, ev: Evaluation) -> float:
        """``log(dtau / d(independent variable))``: 0 for ``tau`` itself."""
        return 0.0

    def normalize(self, z: np.ndarray) -> np.ndarray:
        return self.system.normalize(z)

    def scale(self, z: np.ndarray, rtol: float, atol: float) -> np.ndarray:
        return np.full(z.shape, atol + rtol)


class NormCoordinates:
    """State ``(s_j, omega_j)_j, u``, advanced in ``u = -||theta||_F^-1``.

    Parameters
    ----------
    system : PolarSystem
    growing : ndarray of bool, shape (h,)
        Neurons whose norm grows with ``R`` (``kappa_j = 1/2``); the others
        (dead neurons, which do not move) keep ``sigma_j`` as their coordinate.
    """

    clock = "norm2"

    def __init__(self, system: PolarSystem, growing: np.ndarray) -> None:
        self.system = system
        self.size = system.size + 1
        self.kappa = np.where(growing, 0.5, 0.0)
        self.h, self.B = system.h, system.block
        self.sigma_columns = np.arange(self.h) * self.B
        self.x_max = float(np.max(np.linalg.norm(system.problem.X, axis=1)))

    def from_polar(self, y: np.ndarray) -> np.ndarray:
        log_R = self.system.log_norm2(y)
        z = np.empty(self.size)
        z[:-1] = y
        z[:-1].reshape(self.h, self.B)[:, 0] -= self.kappa * log_R
        z[-1] = -np.exp(-0.5 * log_R)
        return z

    @staticmethod
    def _log_R(u):
        """Return ``log R`` at the clock value ``u = -R^(-1/2)`` (float or array)."""
        if np.ndim(u) == 0 and u < 0:
            # The usual case, without the cost of errstate (2 us per call).
            return -2.0 * np.log(-u)
        with np.errstate(invalid="ignore", divide="ignore"):
            return -2.0 * np.log(-u)

    def norm2(self, z: np.ndarray) -> float:
        """Return ``R = ||theta||^2`` of the state ``z``."""
        return float(z[-1]) ** -2

    def to_polar(self, z: np.ndarray) -> np.ndarray:
        y = z[:-1].copy()
        y.reshape(self.h, self.B)[:, 0] += self.kappa * self._log_R(z[-1])
        return y

    def _to_polar_many(self, zs: np.ndarray) -> np.ndarray:
        """Apply :meth:`to_polar` to each row of ``zs``, shape (m, size - 1)."""
        ys = zs[:, :-1].copy()
        log_R = self._log_R(zs[:, -1])
        ys.reshape(-1, self.h, self.B)[:, :, 0] += self.kappa * log_R[:, None]
        return ys

    def blocks(self, z: np.ndarray) -> np.ndarray:
        return z[..., :-1].reshape(z.shape[:-1] + (self.h, self.B))

    def _norm_rate(self, ys: np.ndarray, omega_norm2, q):
        """Return ``dR/dtau = 2 sum_j exp(2 sigma_j) ||omega_j||^2 q_j`` of a polar
        state, or of each row of a stack of them."""
        sigma = ys.reshape(ys.shape[:-1] + (self.h, self.B))[..., 0]
        return 2 * np.sum(np.exp(2 * sigma) * omega_norm2 * q, axis=-1)

    def evaluate(
        self, z: np.ndarray, pattern: np.ndarray
    ) -> tuple[np.ndarray, Evaluation]:
        y = self.to_polar(z)
        ev = self.system.evaluate(y, pattern)
        rate = float(self._norm_rate(y, ev.omega_norm2, ev.q))
        ev.norm_rate = rate
        R = self.norm2(z)
        rhs = np.empty(self.size)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            rhs[:-1] = ev.rhs * (2 * R**1.5 / rate)
            rhs[:-1].reshape(self.h, self.B)[:, 0] -= 2 * self.kappa * R**0.5
        rhs[-1] = 1.0
        return rhs, ev

    def rhs_many(self, zs: np.ndarray, pattern: np.ndarray) -> np.ndarray:
        """Right-hand side at each row of ``zs``, shape (m, size), as
        :meth:`evaluate` computes it for one."""
        ys = self._to_polar_many(zs)
        rhs, q, omega_norm2 = self.system.evaluate_many(ys, pattern)
        rate = self._norm_rate(ys, omega_norm2, q)
        out = np.empty(zs.shape)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            root = -1.0 / zs[:, -1]  # R^(1/2)
            out[:, :-1] = rhs * (2 * root**3 / rate)[:, None]
            out[:, :-1].reshape(-1, self.h, self.B)[:, :, 0] -= (
                2 * self.kappa * root[:, None]
            )
        out[:, -1] = 1.0
        return out

    def jacobian(
        self, z: np.ndarray, pattern: np.ndarray, ev: Evaluation
    ) -> np.ndarray:
        """Exact Jacobian of ``(c (f_tau / Rdot - kappa/R), 1)``, shape (size,
        size), with ``c = dR/du``; see :meth:`structured_jacobian`."""
        return self.structured_jacobian(z, pattern, ev).matrix

    def structured_jacobian(
        self, z: np.ndarray, pattern: np.ndarray, ev: Evaluation
    ) -> Jacobian:
        """Return the exact Jacobian of ``(c (f_tau / Rdot - kappa/R), 1)``,
        ``c = dR/du = 2 R^(3/2)``, from the polar one, with its block and
        low-rank parts (``linear.py``).

        With ``Rdot = 2 sum_j rho_j ||omega_j||^2 q_j`` and ``rho_j = exp(2 sigma_j)``,
        ``d Rdot/dy = 2 sum_j rho_j ||omega_j||^2 dq_j/dy`` plus the terms from
        ``rho_j ||omega_j||^2``; ``s_j`` enters as ``sigma_j`` does, and ``R``
        through ``kappa_j log R``. The polar Jacobian is ``J_b - p q^T``, and the
        factor ``1/Rdot`` adds a second rank-one term,
        ``-(f_tau / Rdot^2) (d Rdot/dy)^T``. The factor ``c`` scales the whole
        of it; the column of ``u`` also differentiates ``c``.
        """
        y = self.to_polar(z)
        J_b, p, q = self.system.jacobian_parts(y, pattern, ev)
        h, B = self.h, self.B
        sigma = y.reshape(h, B)[:, 0]
        omega = y.reshape(h, B)[:, 1:]
        rho = np.exp(2 * sigma)
        rate = ev.norm_rate
        weights = rho * ev.omega_norm2
        # Rows sigma_j of the polar Jacobian J_b - p q^T.
        sigma_rows = J_b[self.sigma_columns] - np.multiply.outer(
            p[self.sigma_columns], q
        )
        grad_rate = 2 * weights @ sigma_rows
        blocks = grad_rate.reshape(h, B)
        blocks[:, 0] += 4 * weights * ev.q
        blocks[:, 1:] += (4 * rho * ev.q)[:, None] * omega
        U = np.column_stack([p / rate, ev.rhs / rate**2])
        V = np.column_stack([q, grad_rate])
        block_part = J_b / rate
        R = self.norm2(z)
        # Columns sigma_j of the inner Jacobian block_part - U V^T.
        sigma_columns = block_part[:, self.sigma_columns] - U @ V[self.sigma_columns].T
        # d f_R/dR of the clock R's right-hand side f_R = f_tau / Rdot - kappa/R.
        border = sigma_columns @ self.kappa / R
        border[self.sigma_columns] += self.kappa / R**2
        # The column of u: dR/du (c' f_R + c df_R/dR) with c' = dc/dR = 3 R^(1/2).
        c = 2 * R**1.5
        f_R = ev.rhs / rate
        f_R[self.sigma_columns] -= self.kappa / R
        border = c * (3 * R**0.5 * f_R + c * border)
        return Jacobian(c * block_part, c * U, V, border)

    def log_rate(self, z: np.ndarray, ev: Evaluation) -> float:
        """Return ``log(dtau/du) = log(dR/du) - log(dR/dtau)``."""
        return self.log_norm_rate(ev) + _log_growth(self._log_R(z[-1]))

    @staticmethod
    def log_norm_rate(ev: Evaluation) -> float:
        """Return ``log(dtau/dR) = -log(dR/dtau)``, the clock's rate in ``R``."""
        return _log_inverse(ev.norm_rate)

    def log_speed_many(self, zs: np.ndarray, pattern: np.ndarray) -> np.ndarray:
        """Return ``log(dt/dR) = -log N - log(dR/dtau)`` at each row of ``zs``,
        shape (m,), without the right-hand side (see
        ``PolarSystem.norm_clock_terms``)."""
        ys = self._to_polar_many(zs)
        log_N, rates = self.system.norm_clock_terms_many(ys, pattern)
        return np.array([-ln + _log_inverse(r) for ln, r in zip(log_N, rates)])

    def normalize(self, z: np.ndarray) -> np.ndarray:
        """Return the state with unit ``omega_j`` and ``u = -R^(-1/2)`` of its norm.

        Both are exact changes of coordinates: ``sigma_j`` is kept. Resetting
        ``u`` stops the clock from drifting away from ``||theta||^2`` by the
        accumulated integration error.
        """
        y = self.system.normalize(self.to_polar(z))
        return self.from_polar(y)

    def scale(self, z: np.ndarray, rtol: float, atol: float) -> np.ndarray:
        """Error tolerance per component, with ``rtol`` capped by :func:`late_rtol`."""
        rtol = late_rtol(rtol, self.norm2(z), self.x_max)
        scale = np.full(z.shape, atol + rtol)
        scale[-1] = atol + rtol * abs(z[-1])
        return scale


def _log_growth(log_R):
    """Return ``log(dR/du) = log 2 + 1.5 log R`` of the clock ``u = -R^(-1/2)``."""
    return math.log(2.0) + 1.5 * log_R


def _log_inverse(rate: float) -> float:
    """Return ``-log(rate)``, or ``inf`` where the rate is not positive."""
    return -float(np.log(rate)) if rate > 0 else np.inf


def margins(system: PolarSystem, y: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """Return the margin of each sample at the polar state ``y``, shape (n,)."""
    outputs, _ = system.forward(y, pattern)
    return sample_margins(system.problem, outputs)
