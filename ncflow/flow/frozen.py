"""Exact steps of the flow while the loss gradients stay frozen.

From a small initialisation the outputs ``f_i`` stay tiny for a long time, and
so do the changes of the loss gradients ``g_i = -dl/df_i``. With the gradients
held at their values at the start of a step, each neuron follows a linear flow
with constant coefficients (see ``polar.py``),

    d(w_j, v_j)/dt = M_j (w_j, v_j),   M_j = [[0, A_j], [A_j^T, 0]],
    A_j = sum_i P_ij x_i g_i^T,

and that flow has a closed form. With the thin singular value decomposition
``A_j = U S V^T`` and ``alpha_r = <u_r, w_j>``, ``beta_r = <v_r, v_j>``,

    alpha_r(t) = alpha_r cosh(s_r t) + beta_r sinh(s_r t),
    beta_r(t)  = beta_r cosh(s_r t) + alpha_r sinh(s_r t),

while the parts of ``w_j`` outside the span of ``U`` and of ``v_j`` outside the
span of ``V`` stay where they are. A step costs one evaluation of the gradients
instead of the six of an explicit Runge-Kutta step, and it places activation
changes exactly: a pre-activation along the step is

    <x_i, w_j(t)> = F_0 + sum_r (P_r (exp(s_r t) - 1) + Q_r (exp(-s_r t) - 1)),

with ``P_r = <x_i, u_r> (alpha_r + beta_r) / 2`` and
``Q_r = <x_i, u_r> (alpha_r - beta_r) / 2``. With one output direction (a
binary loss, or the cross-entropy of two classes) there is one singular value,
and the first root is that of a quadratic in ``exp(s t)``.

NOTE: with several output directions the pre-activation is a sum of
exponentials at different rates, and no search for its first root was found
that is both safe and fast. Interval bounds on a grid reported roots where the
function stayed above 0. Resolving them made three-class runs up to 15 times
slower than the Runge-Kutta steps. So frozen steps are taken for one
output direction only (``frozen_applies``).

The code measures time in units of ``1/N`` at the step's start (``tau - tau_0``
with ``N`` frozen), and ``T``, ``s`` and ``m`` below with it, so every rate
``s_r`` is at most 1.

An activation change inside a step changes ``A_j`` of its neurons only, so the
step goes on with the same gradients: those neurons start a new piece of linear
flow from their state at the change (``FrozenStep.restart``), and the others
keep theirs. ``M_j`` is then piecewise constant in ``t``, and the bound below is
valid with ``s`` and ``m_j`` the largest over the pieces, because the flow of
each piece grows by at most ``exp(s t)``. On the binary benchmark problem this
takes the 132 changes before ``T*`` with 134 evaluations of the gradients,
where a step per change took 265.

Error bound
-----------
Let ``theta`` be the true flow of one neuron and ``phi`` the frozen one, both
from ``theta_0``. The true coefficient matrix is ``M + dM(t)``, so
``e = theta - phi`` obeys ``e' = M e + dM theta`` and, with
``||exp(M t)|| = exp(s t)`` (``M`` is symmetric, ``s`` its largest singular
value) and ``m = sup ||dM||``,

    ||e(T)|| <= T m exp((s + m) T) ||theta_0||,
    ||theta(T)|| >= exp(-(s + m) T) ||theta_0||,

so the relative error is at most ``E = T m exp(2 (s + m) T)``. ``E`` bounds
the error of the log-norm, and ``2 E`` that of the unit direction. The perturbation
``dM`` comes from ``dg_i = g_i(t) - g_i(t_0)``:
``||dA_j|| <= sum_i P_ij ||x_i|| ||dg_i||``, with ``||dg_i||`` at most the
Hessian bound times ``||df_i||``. Every loss here has a Hessian whose entries
are at most ``exp(lambda_i)`` (``losses.LossTerms``), so its norm is at most
``K exp(lambda_i)`` for ``K`` outputs. The log-scale ``lambda_i`` changes by at
most ``2 ||df_i||``: the cross-entropy's is ``log sigmoid(z_i)`` with
``|dz_i| <= 2 max |df_i|``, and the binary losses' have slope 1 or less. While
``||df_i|| <= MAX_OUTPUT_CHANGE`` that factor is below 2. The outputs move at
``||df_i/dt|| <= ||x_i|| sum_j ||theta_j'|| ||theta_j|| <= ||x_i|| (s + m) R``
with ``R = ||theta||^2`` (Cauchy-Schwarz on ``v' w + v w'``), and ``R`` grows
at most like ``exp(2 (s + m) t)``. Taking ``m <= s / 2`` (checked), so that
``s + m <= 1.5 s``,

    m_j <= 2 K T (1.5 s) R_max sum_i P_ij ||x_i||^2 exp(lambda_i) / N,
    R_max = R_0 exp(3 s T).

Both ``m_j`` and ``E`` grow at least like ``T`` and ``T^2``: a step ``T`` that
is a fraction ``c`` of one whose bound is ``E_1`` has a bound at most ``c^2 E_1``.
"""

from __future__ import annotations

import math

import numpy as np

from ncflow.flow.polar import Evaluation, PolarSystem
from ncflow.losses import _OWN_TERMS

# Largest s T of a frozen step. cosh(4) = 27, so the exact solution and the
# error bound stay well scaled.
MAX_EXPONENT = 4.0
# The Hessian bound of the module docstring is valid while every output moves
# by at most this much over a step, because its log-scale then changes by less
# than log 2.
MAX_OUTPUT_CHANGE = 0.3
# Relative accuracy of the search for the longest step that meets the bound.
STEP_SEARCH = 0.05


def frozen_applies(problem) -> bool:
    """Return whether frozen steps may start a run of ``problem``.

    They need one output direction (see the NOTE of the module docstring) and
    the per-sample Hessian bound of the error bound, which the planted fault
    that normalises across samples does not have. They also need the
    ``relu'(0) = 0`` rule of the driver, so the planted ``relu'(0) = 1`` fault
    is integrated by the Runge-Kutta steps only.
    """
    if problem.activation not in ("relu", "linear"):
        return False
    # One output direction: a scalar output, or the cross-entropy of two
    # classes, whose loss depends on f_1 - f_2 only (polar.PolarSystem).
    if not (problem.binary or problem.num_outputs == 2):
        return False
    return problem.loss not in _OWN_TERMS


class FrozenStep:
    """The frozen-gradient flow from one state under one activation pattern.

    Parameters
    ----------
    system : PolarSystem
    y : ndarray
        Polar state, every ``omega_j`` of norm 1.
    pattern : ndarray of bool, shape (n, h)
    ev : Evaluation
        ``system.evaluate(y, pattern)``.
    """

    def __init__(
        self, system: PolarSystem, y: np.ndarray, pattern: np.ndarray, ev: Evaluation
    ) -> None:
        self.system = system
        h, D = system.h, system.D
        if system.d_y != 1:
            raise ValueError(
                f"frozen steps need a scalar output direction, got d_y = {system.d_y}"
            )
        self.G = ev.G
        self.log_norm2 = system.log_norm2(y)
        self._last: tuple[float, np.ndarray] | None = None

        # Error-bound constants (module docstring).
        x_norm2 = system._x_norms**2
        self._weights = x_norm2 * np.exp(ev.terms.log_scales - ev.log_N)
        self._coupling_factor = 2.0 * system.problem.num_outputs
        self.max_x_norm = float(system._x_norms.max())

        # Every neuron's linear flow, set by restart from the start of the step.
        self.sigma = np.zeros(h)
        self.a = np.zeros((h, D))
        self.b = np.zeros((h, 1))
        # With one output direction the decomposition is A_j = u_j s_j [1].
        self.U = np.zeros((h, D, 1))
        self.S = np.zeros((h, 1))
        self.Vt = np.ones((h, 1, 1))
        self.alpha = np.zeros((h, 1))
        self.beta = np.zeros((h, 1))
        # Start of each neuron's current piece, shape (h, 1).
        self.origin = np.zeros((h, 1))
        # Largest rate and coupling of each neuron over its pieces, for the bound.
        self.S_bound = np.zeros(h)
        self.coupling = np.zeros(h)
        self.rate = 0.0
        self.restart(range(h), y, pattern, 0.0)

    def restart(self, columns, y: np.ndarray, pattern: np.ndarray, T: float) -> None:
        """Start a new piece of the neurons in ``columns`` at ``T``, from their
        blocks of the polar state ``y`` and their columns of ``pattern``.

        The loss gradients stay frozen, so after an activation change only the
        neurons whose pattern changed get a new linear flow: the others go on
        along theirs. The error bound takes the largest rate and coupling of
        every piece, which bounds the coefficients of the whole step.
        """
        system = self.system
        D = system.D
        blocks = y.reshape(system.h, system.block)
        columns = np.asarray(sorted(columns), dtype=int)
        self.sigma[columns] = blocks[columns, 0]
        self.a[columns] = blocks[columns, 1 : 1 + D]
        self.b[columns] = blocks[columns, 1 + D :]
        self.origin[columns] = T
        active = pattern[:, columns].astype(float)
        # A_j / N, shape (c, D, 1).
        A = np.einsum("ij,id,ik->jdk", active, system.X, self.G)
        S = np.linalg.norm(A[:, :, 0], axis=1)
        safe = np.where(S > 0, S, 1.0)
        self.U[columns] = A / safe[:, None, None]
        self.S[columns, 0] = S
        self.S_bound[columns] = np.maximum(self.S_bound[columns], S)
        self.alpha[columns] = np.einsum("jdr,jd->jr", self.U[columns], self.a[columns])
        self.beta[columns] = np.einsum("jrk,jk->jr", self.Vt[columns], self.b[columns])
        if S.size:
            self.rate = max(self.rate, float(S.max()))
        self.coupling[columns] = np.maximum(
            self.coupling[columns], self._coupling_factor * (active.T @ self._weights)
        )
        self._last = None

    # -- the exact solution ------------------------------------------------

    def _changes(self, T: float):
        x = self.S * (T - self.origin)
        sh = np.sinh(x)
        ch_minus_1 = 2.0 * np.sinh(0.5 * x) ** 2
        d_alpha = self.alpha * ch_minus_1 + self.beta * sh
        d_beta = self.beta * ch_minus_1 + self.alpha * sh
        return d_alpha, d_beta

    def state_at(self, T: float) -> np.ndarray:
        """Return the polar state after ``T`` (in units of ``1/N``), with unit
        directions.

        The last state is kept: the driver asks for the end of a step twice,
        for the events there and for the step itself.
        """
        if self._last is not None and self._last[0] == T:
            return self._last[1].copy()
        d_alpha, d_beta = self._changes(T)
        a = self.a + np.einsum("jdr,jr->jd", self.U, d_alpha)
        b = self.b + np.einsum("jrk,jr->jk", self.Vt, d_beta)
        norms = np.sqrt(np.einsum("jd,jd->j", a, a) + np.einsum("jk,jk->j", b, b))
        y = np.empty(self.system.size)
        blocks = y.reshape(self.system.h, self.system.block)
        blocks[:, 0] = self.sigma + np.log(norms)
        blocks[:, 1 : 1 + self.system.D] = a / norms[:, None]
        blocks[:, 1 + self.system.D :] = b / norms[:, None]
        self._last = (T, y.copy())
        return y

    # -- step size ---------------------------------------------------------

    def bound(self, T: float) -> float:
        """Return the relative error bound ``max_j E_j`` of a step ``T``, or inf
        where its assumptions (``m_j <= s / 2``, small output moves) fail."""
        fast = 1.5 * self.rate
        log_R_max = self.log_norm2 + 3.0 * self.rate * T
        if log_R_max > 0.0:
            return math.inf  # the outputs may reach order 1: far from frozen
        R_max = math.exp(log_R_max)
        if T * fast * self.max_x_norm * R_max > MAX_OUTPUT_CHANGE:
            return math.inf
        m = self.coupling * (T * fast * R_max)
        if float(m.max()) > 0.5 * self.rate:
            return math.inf
        return float(np.max(T * m * np.exp(2.0 * (self.S_bound + m) * T)))

    def step_limit(self, tolerance: float) -> float:
        """Return the longest step up to ``MAX_EXPONENT / s`` whose relative
        error bound is at most ``tolerance``, or 0 if there is none."""
        if self.rate <= 0.0:
            return 0.0
        high = MAX_EXPONENT / self.rate
        bound = self.bound(high)
        if bound <= tolerance:
            return high
        low = high
        if math.isfinite(bound) and bound > 0:
            # The bound grows at least like T^2 (module docstring), so this
            # step meets the tolerance, if its assumptions hold there.
            low *= 0.99 * math.sqrt(tolerance / bound)
        for _ in range(60):
            if self.bound(low) <= tolerance:
                break
            high, low = low, 0.5 * low
        else:
            return 0.0
        # The bound grows much faster than T^2 near the cap (its exponentials),
        # so the longest step that meets the tolerance lies further on: bisect
        # in log T to within STEP_SEARCH of it.
        while high > low * (1.0 + STEP_SEARCH):
            middle = math.sqrt(low * high)
            if self.bound(middle) <= tolerance:
                low = middle
            else:
                high = middle
        return low

    # -- activation crossings ---------------------------------------------

    def crossing_terms(self, signs: np.ndarray, offsets: np.ndarray, columns=None):
        """Return the coefficients of the signed, scaled pre-activations along
        the current pieces of the neurons in ``columns`` (all by default).

        Returns ``F0`` (n, c) and ``P``, ``Q`` (n, c, r): with ``T`` counted from
        each piece's start, ``F0 + sum_r P_r (exp(s_r T) - 1) + Q_r (exp(-s_r T)
        - 1)`` is the cosine of ``x_i`` and ``a_j(T)`` (scaled by the norm of
        ``a_j`` at the piece's start), signed to be positive on the side of the
        pattern, plus ``offsets``. ``signs`` and ``offsets`` have ``c`` columns.
        """
        if columns is None:
            columns = slice(None)
        X = self.system.X
        a = self.a[columns]
        a_norms = np.linalg.norm(a, axis=1)
        scale = np.outer(self.system._x_norms, np.where(a_norms > 0, a_norms, 1.0))
        factor = signs / scale
        F0 = (X @ a.T) * factor + offsets
        XU = np.einsum("id,jdr->ijr", X, self.U[columns]) * factor[:, :, None]
        P = 0.5 * XU * (self.alpha[columns] + self.beta[columns])[None]
        Q = 0.5 * XU * (self.alpha[columns] - self.beta[columns])[None]
        return F0, P, Q

    def first_crossings(
        self, signs: np.ndarray, offsets: np.ndarray, limit: float, columns=None
    ) -> np.ndarray:
        """Return the first ``T`` in [piece start, limit] at which each signed
        pre-activation of the neurons in ``columns`` (all by default) reaches 0:
        inf where it does not, the piece's start where it is not positive there.
        ``T`` is counted from the start of the step."""
        if columns is None:
            columns = slice(None)
        F0, P, Q = self.crossing_terms(signs, offsets, columns)
        origin = self.origin[columns, 0]
        span = np.maximum(limit - origin, 0.0)
        roots = _first_roots_one_rate(
            F0, P[..., 0], Q[..., 0], self.S[columns, 0], span
        )
        roots[F0 <= 0] = 0.0
        return roots + origin[None, :]


def _first_roots_one_rate(
    F0: np.ndarray, P: np.ndarray, Q: np.ndarray, s: np.ndarray, limit
) -> np.ndarray:
    """Return the first roots of ``F0 + P (E - 1) + Q (1/E - 1)``, with
    ``E = exp(s T)``, for ``T`` in (0, limit], and inf where there is none.
    ``limit`` is one number or one per column.

    With ``u = E - 1 > -1``, multiplying by ``1 + u > 0`` gives the quadratic
    ``P u^2 + (F0 + P - Q) u + F0``, whose positive roots are solved in the
    stable form (no cancellation between ``-b`` and the square root).
    """
    a2 = P
    a1 = F0 + P - Q
    a0 = F0
    u_max = np.expm1(s * limit)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        disc = a1 * a1 - 4.0 * a2 * a0
        real = disc >= 0
        root_disc = np.sqrt(np.where(real, disc, 0.0))
        q = -0.5 * (a1 + np.copysign(root_disc, a1))
        r1 = np.where(a2 != 0, q / a2, np.inf)
        r2 = np.where(q != 0, a0 / q, np.inf)
        # A linear polynomial (P = 0) has its one root in r2 = -a0 / a1.
        r1 = np.where(real & (r1 > 0), r1, np.inf)
        r2 = np.where(real & (r2 > 0), r2, np.inf)
        u = np.minimum(r1, r2)
        u = np.where((u <= u_max) & (s > 0)[None, :], u, np.inf)
        T = np.log1p(u) / s[None, :]
    return np.where(np.isfinite(T), np.minimum(T, limit), np.inf)
