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
``Q_r = <x_i, u_r> (alpha_r - beta_r) / 2``. For a scalar output (one singular
value) its first root is that of a quadratic in ``exp(s t)``. With several
singular values, interval bounds on a grid find it, and a safeguarded Newton
search refines it.

The code measures time in units of ``1/N`` at the step's start (``tau - tau_0``
with ``N`` frozen), and ``T``, ``s`` and ``m`` below with it, so every rate
``s_r`` is at most 1.

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

# Largest s T of a frozen step. cosh(4) = 27, so the exact solution, the grid
# bounds of the crossing search and the error bound all stay well scaled.
MAX_EXPONENT = 4.0
# The Hessian bound of the module docstring is valid while every output moves
# by at most this much over a step, because its log-scale then changes by less
# than log 2.
MAX_OUTPUT_CHANGE = 0.3
# Relative accuracy of the search for the longest step that meets the bound.
STEP_SEARCH = 0.05
# Cells of the grid on which the crossings of a multi-output step are bounded.
GRID_CELLS = 16
# A multi-output crossing search narrows its grid up to ZOOMS times, each time to
# the first grid point at which some pair is at or below 0. It stops narrowing
# once that point is past ZOOM_FACTOR of the span or SCALAR_CANDIDATES pairs
# are left.
ZOOMS = 4
ZOOM_FACTOR = 0.5
SCALAR_CANDIDATES = 4
# Subdivisions of a cell before a crossing search gives up resolving a touch of
# 0 and reports the cell's start.
MAX_SPLITS = 64
# Newton iterations of a bracketed crossing search.
NEWTON_STEPS = 60


def frozen_applies(problem) -> bool:
    """Return whether frozen steps may start a run of ``problem``.

    They need the per-sample Hessian bound of the module docstring, which the
    planted fault that normalises across samples does not have, and the
    ``relu'(0) = 0`` rule of the driver (the planted ``relu'(0) = 1`` fault is
    integrated by the Runge-Kutta steps only).
    """
    if problem.activation not in ("relu", "linear"):
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
        blocks = y.reshape(h, system.block)
        self.sigma = blocks[:, 0].copy()
        self.a = blocks[:, 1 : 1 + D].copy()
        self.b = blocks[:, 1 + D :].copy()
        self.pattern = pattern
        X = system.X
        # A_j / N, shape (h, D, d_y).
        A = np.einsum("ij,id,ik->jdk", pattern.astype(float), X, ev.G)
        if system.d_y == 1:
            S = np.linalg.norm(A[:, :, 0], axis=1)
            safe = np.where(S > 0, S, 1.0)
            self.U = A / safe[:, None, None]
            self.S = S[:, None]
            self.Vt = np.ones((h, 1, 1))
        else:
            self.U, self.S, self.Vt = np.linalg.svd(A, full_matrices=False)
        self.alpha = np.einsum("jdr,jd->jr", self.U, self.a)
        self.beta = np.einsum("jrk,jk->jr", self.Vt, self.b)
        self.rate = float(self.S.max()) if self.S.size else 0.0
        self.log_norm2 = system.log_norm2(y)

        # Error-bound constants (module docstring).
        x_norm2 = system._x_norms**2
        weights = x_norm2 * np.exp(ev.terms.log_scales - ev.log_N)
        self.coupling = 2.0 * system.problem.num_outputs * (pattern.T @ weights)
        self.max_x_norm = float(system._x_norms.max())

    # -- the exact solution ------------------------------------------------

    def _changes(self, T: float):
        x = self.S * T
        sh = np.sinh(x)
        ch_minus_1 = 2.0 * np.sinh(0.5 * x) ** 2
        d_alpha = self.alpha * ch_minus_1 + self.beta * sh
        d_beta = self.beta * ch_minus_1 + self.alpha * sh
        return d_alpha, d_beta

    def state_at(self, T: float) -> np.ndarray:
        """Return the polar state after ``T`` (in units of ``1/N``), with unit
        directions."""
        d_alpha, d_beta = self._changes(T)
        a = self.a + np.einsum("jdr,jr->jd", self.U, d_alpha)
        b = self.b + np.einsum("jrk,jr->jk", self.Vt, d_beta)
        norms = np.sqrt(np.einsum("jd,jd->j", a, a) + np.einsum("jk,jk->j", b, b))
        y = np.empty(self.system.size)
        blocks = y.reshape(self.system.h, self.system.block)
        blocks[:, 0] = self.sigma + np.log(norms)
        blocks[:, 1 : 1 + self.system.D] = a / norms[:, None]
        blocks[:, 1 + self.system.D :] = b / norms[:, None]
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
        s = self.S.max(axis=1) if self.S.shape[1] else np.zeros(len(m))
        return float(np.max(T * m * np.exp(2.0 * (s + m) * T)))

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

    def crossing_terms(self, signs: np.ndarray, offsets: np.ndarray):
        """Return the coefficients of the signed, scaled pre-activations along
        the step.

        Returns ``F0`` (n, h) and ``P``, ``Q`` (n, h, r): the function
        ``F0 + sum_r P_r (exp(s_r T) - 1) + Q_r (exp(-s_r T) - 1)`` is the
        cosine of ``x_i`` and ``a_j(T)`` (scaled by ``||a_j(0)||``), signed to be
        positive on the side of the pattern, plus ``offsets``.
        """
        X = self.system.X
        a_norms = np.linalg.norm(self.a, axis=1)
        scale = np.outer(self.system._x_norms, np.where(a_norms > 0, a_norms, 1.0))
        factor = signs / scale
        F0 = (X @ self.a.T) * factor + offsets
        XU = np.einsum("id,jdr->ijr", X, self.U) * factor[:, :, None]
        P = 0.5 * XU * (self.alpha + self.beta)[None]
        Q = 0.5 * XU * (self.alpha - self.beta)[None]
        return F0, P, Q

    def first_crossings(
        self, signs: np.ndarray, offsets: np.ndarray, limit: float, window: float
    ) -> np.ndarray:
        """Return the first ``T`` in [0, limit] at which each signed
        pre-activation reaches 0: inf where it does not, 0 where it is not
        positive at the start.

        Roots later than the earliest one plus ``window`` may be left at inf.
        """
        F0, P, Q = self.crossing_terms(signs, offsets)
        if P.shape[2] == 1:
            roots = _first_roots_one_rate(F0, P[..., 0], Q[..., 0], self.S[:, 0], limit)
        else:
            roots = _first_roots_many_rates(F0, P, Q, self.S, limit, window)
        roots[F0 <= 0] = 0.0
        return roots


def _first_roots_one_rate(
    F0: np.ndarray, P: np.ndarray, Q: np.ndarray, s: np.ndarray, limit: float
) -> np.ndarray:
    """Return the first roots of ``F0 + P (E - 1) + Q (1/E - 1)``, with
    ``E = exp(s T)``, for ``T`` in (0, limit], and inf where there is none.

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


def _terms(F0: float, P, Q, s, T: float) -> float:
    return F0 + sum(
        p * math.expm1(r * T) + q * math.expm1(-r * T) for p, q, r in zip(P, Q, s)
    )


def _slope(P, Q, s, T: float) -> float:
    return sum(
        r * (p * math.exp(r * T) - q * math.exp(-r * T)) for p, q, r in zip(P, Q, s)
    )


def _interval(F0: float, P, Q, s, lo: float, hi: float):
    """Return a lower bound of the function and lower and upper bounds of its
    slope on ``[lo, hi]``. Each term is monotone, so its extremes are at the
    ends."""
    low = F0
    slope_low = slope_high = 0.0
    for p, q, r in zip(P, Q, s):
        e_lo, e_hi = math.exp(r * lo), math.exp(r * hi)
        low += min(p * (e_lo - 1), p * (e_hi - 1))
        low += min(q * (1 / e_lo - 1), q * (1 / e_hi - 1))
        # Each of r p exp(r T) and -r q exp(-r T) is monotone: bound them apart.
        rising = (r * p * e_lo, r * p * e_hi)
        falling = (-r * q / e_lo, -r * q / e_hi)
        slope_low += min(rising) + min(falling)
        slope_high += max(rising) + max(falling)
    return low, slope_low, slope_high


def _first_root_scalar(F0, P, Q, s, cells: list, limit: float) -> float:
    """Return the first root of one pre-activation in the cells
    ``[(lo, hi), ...]`` (in time order) up to ``limit``, or inf if there is
    none."""
    stack = [cell for cell in reversed(cells) if cell[0] <= limit]
    splits = 0
    while stack:
        lo, hi = stack.pop()
        low, slope_low, slope_high = _interval(F0, P, Q, s, lo, hi)
        if low > 0:
            continue
        f_lo = _terms(F0, P, Q, s, lo)
        if f_lo <= 0:
            return lo
        if slope_high < 0:
            f_hi = _terms(F0, P, Q, s, hi)
            if f_hi > 0:
                continue
            return _bracketed_newton(F0, P, Q, s, lo, hi, f_lo, f_hi)
        if slope_low > 0:
            continue  # rising from a positive value
        splits += 1
        if splits > MAX_SPLITS or hi - lo <= 4 * np.finfo(float).eps * max(hi, 1.0):
            return lo
        mid = 0.5 * (lo + hi)
        stack.append((mid, hi))
        stack.append((lo, mid))
    return math.inf


def _bracketed_newton(
    F0, P, Q, s, lo: float, hi: float, f_lo: float, f_hi: float
) -> float:
    """Find the root of a falling function with ``F(lo) > 0 >= F(hi)`` by
    Newton's method kept in the bracket (bisection where a step leaves it).

    Returns a point at or just past the root (``F <= 0`` there): once the
    Newton correction is below ``4 eps T``, the point two corrections further
    on is tried, as in ``adaptive._bracketed_roots``.
    """
    unit = 4 * np.finfo(float).eps
    # Start on the chord between the ends.
    T = lo + (hi - lo) * f_lo / (f_lo - f_hi)
    if not lo < T < hi:
        T = 0.5 * (lo + hi)
    for _ in range(NEWTON_STEPS):
        value = _terms(F0, P, Q, s, T)
        if value > 0:
            lo = T
        else:
            hi = T
        if hi - lo <= unit * hi:
            return hi
        slope = _slope(P, Q, s, T)
        new = T - value / slope if slope != 0 else math.nan
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        elif abs(new - T) <= unit * T:
            past = min(new + 2 * abs(new - T) + unit * new, hi)
            if _terms(F0, P, Q, s, past) <= 0:
                return past
            lo = past
            new = 0.5 * (lo + hi)
        T = new
    return hi


def _first_roots_many_rates(
    F0: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    S: np.ndarray,
    limit: float,
    window: float,
) -> np.ndarray:
    """Return the first roots of
    ``F0 + sum_r P_r (exp(s_r T) - 1) + Q_r (exp(-s_r T) - 1)`` on (0, limit],
    up to the earliest root plus ``window``.

    Lower bounds on a grid of cells pick the pairs that may reach 0, and the
    first grid point where some pair is at or below 0 bounds the earliest root
    from above. The search then narrows to that bound and repeats (up to
    ``ZOOMS`` times), so that few pairs are left for the search in Python
    floats, each from its first possible cell.
    """
    n, h, r = P.shape
    roots = np.full((n, h), np.inf)
    rows, columns = np.nonzero(F0 > 0)
    end = limit
    for _ in range(ZOOMS):
        grid = np.linspace(0.0, end, GRID_CELLS + 1)
        up = np.expm1(S[columns][:, :, None] * grid)  # (pairs, r, M + 1)
        down = np.expm1(-S[columns][:, :, None] * grid)
        terms_up = P[rows, columns][..., None] * up
        terms_down = Q[rows, columns][..., None] * down
        values = F0[rows, columns][:, None] + np.sum(terms_up + terms_down, axis=1)
        low = F0[rows, columns][:, None] + np.sum(
            np.minimum(terms_up[..., :-1], terms_up[..., 1:])
            + np.minimum(terms_down[..., :-1], terms_down[..., 1:]),
            axis=1,
        )  # (pairs, M)
        possible = low <= 0
        reached = values <= 0
        if reached.any():
            first = np.argmax(reached[reached.any(axis=1)], axis=1)
            bound = float(grid[first.min()])
        else:
            bound = end
        horizon = min(end, bound + window)
        # A pair may reach 0 before the horizon only in a possible cell that
        # starts before it.
        keep = (possible & (grid[None, :-1] <= horizon)).any(axis=1)
        rows, columns = rows[keep], columns[keep]
        possible = possible[keep]
        narrowed = horizon < ZOOM_FACTOR * end
        end = horizon
        if rows.size <= SCALAR_CANDIDATES or not narrowed:
            break
    if rows.size == 0:
        return roots
    first_cell = np.argmax(possible, axis=1)
    order = np.argsort(first_cell, kind="stable")
    best = math.inf
    for k in order:
        i, j = rows[k], columns[k]
        start = grid[first_cell[k]]
        if start > best + window:
            break
        cells = [
            (grid[m], grid[m + 1])
            for m in range(first_cell[k], GRID_CELLS)
            if possible[k, m]
        ]
        root = _first_root_scalar(
            float(F0[i, j]),
            [float(v) for v in P[i, j]],
            [float(v) for v in Q[i, j]],
            [float(v) for v in S[j]],
            cells,
            min(end, best + window),
        )
        roots[i, j] = root
        best = min(best, root)
    return roots
