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
and the first root is that of a quadratic in ``exp(s t)``. With more (the
cross-entropy of ``K >= 3`` classes has ``K - 1``), the pre-activation is a sum
of exponentials at different rates, with no closed-form root. ``CrossingTable``
searches it in steps that are certified free of roots by a bound on its second
derivative. It never passes a root, and it lands only where the pre-activation
comes within a small tolerance of 0. An earlier search by interval bounds on a
grid reported roots where the function stayed above 0, and resolving those made
three-class runs up to 15 times slower than the Runge-Kutta steps. On twelve
three-class starts (``benchmarks/bench_frozen.py``) the certified search took
the same activation changes as the Runge-Kutta steps with 3.4 to 12.8 times
fewer gradient evaluations.

The code measures time in units of ``1/N`` at the step's start (``tau - tau_0``
with ``N`` frozen), and ``T``, ``s`` and ``m`` below with it, so every rate
``s_r`` is at most 1.

An activation change inside a step changes ``A_j`` of its neurons only, so the
step goes on with the same gradients: those neurons start a new piece of linear
flow from their state at the change (``FrozenStep.restart``), and the others
keep theirs. ``M_j`` is then piecewise constant in ``t``, and the bound below is
valid with ``s`` and ``m_j`` the largest over the pieces, because the flow of
each piece grows by at most ``exp(s t)``. On the binary benchmark problem this
takes the 132 changes before ``T*`` with 2 evaluations of the gradients (the
driver also chooses each new pattern from the frozen gradients where their
drift bound certifies it), where a step per change took 265.

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
# Neuron states per batch of FrozenStep.states_at, which gathers a piece row
# (about (D + 2)(r + 1) floats, r = min(D, d_y)) and forms a few arrays of D
# floats for each.
STATES_CHUNK = 2**16


def frozen_applies(problem) -> bool:
    """Return whether frozen steps may start a run of ``problem``.

    They need the per-sample Hessian bound of the error bound, which the
    planted fault that normalises across samples does not have. They also need the
    ``relu'(0) = 0`` rule of the driver, so the planted ``relu'(0) = 1`` fault
    is integrated by the Runge-Kutta steps only.
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
        h, D, d_y = system.h, system.D, system.d_y
        self.G = ev.G
        # Each sample's x_i g_i^T, flattened: A_j = sum_i P_ij x_i g_i^T is
        # then one product with the pattern's column for each restart.
        self._outer = (system.X[:, :, None] * ev.G[:, None, :]).reshape(system.n, -1)
        self.log_norm2 = system.log_norm2(y)
        self._last: tuple[float, np.ndarray] | None = None

        # Error-bound constants (module docstring).
        x_norm2 = system._x_norms**2
        self._weights = x_norm2 * np.exp(ev.terms.log_scales - ev.log_N)
        self._weight_sum = float(self._weights.sum())
        self._coupling_factor = 2.0 * system.problem.num_outputs
        self.max_x_norm = float(system._x_norms.max())

        # Every neuron's linear flow, set by restart from the start of the step:
        # the thin decomposition A_j = U_j diag(S_j) Vt_j, of rank at most r.
        # A neuron's piece is one row of _pieces_now, and the fields are views
        # of it, so that a piece is kept or put back as one row.
        r = min(D, d_y)
        shapes = {
            "origin": (1,),  # start of the piece
            "sigma": (),
            "a": (D,),
            "b": (d_y,),
            "U": (D, r),
            "S": (r,),
            "Vt": (r, d_y),
            "alpha": (r,),
            "beta": (r,),
        }
        self._layout = []
        width = 0
        for name, shape in shapes.items():
            size = int(np.prod(shape))
            self._layout.append((name, width, size, shape))
            width += size
        self._pieces_now = np.zeros((h, width))
        self._bind_fields()
        if d_y == 1:
            self.Vt[:] = 1.0  # A_j = u_j s_j [1]
        # Largest rate and coupling of each neuron over its pieces, for the bound.
        self.S_bound = np.zeros(h)
        self.coupling = np.zeros(h)
        self.rate = 0.0
        # Every piece so far, as (columns, their rows of _pieces_now), once
        # keep_pieces is called: states_at reads the state at any time of the
        # step from them.
        self._pieces: list | None = None
        self.restart(range(h), y, pattern, 0.0)

    def restart(self, columns, y: np.ndarray, pattern: np.ndarray, T: float) -> None:
        """Start a new piece of the neurons in ``columns`` (indices or a
        slice) at ``T``, from their blocks of the polar state ``y`` and their
        columns of ``pattern``.

        The loss gradients stay frozen, so after an activation change only the
        neurons whose pattern changed get a new linear flow: the others go on
        along theirs. The error bound takes the largest rate and coupling of
        every piece, which bounds the coefficients of the whole step.
        """
        system = self.system
        D = system.D
        blocks = y.reshape(system.h, system.block)
        # A slice of one neuron indexes by views, cheaper than an index array.
        if isinstance(columns, slice):
            index = np.arange(system.h)[columns]
        else:
            columns = index = np.asarray(sorted(columns), dtype=int)
        self.sigma[columns] = blocks[columns, 0]
        self.a[columns] = blocks[columns, 1 : 1 + D]
        self.b[columns] = blocks[columns, 1 + D :]
        self.origin[columns] = T
        active = pattern[:, columns].astype(float)
        # A_j / N, shape (c, D, d_y).
        A = (active.T @ self._outer).reshape(-1, D, system.d_y)
        if system.d_y == 1:
            S = np.sqrt((A[:, :, 0] * A[:, :, 0]).sum(axis=1))
            safe = np.where(S > 0, S, 1.0)
            self.U[columns] = A / safe[:, None, None]
            self.S[columns, 0] = S
        else:
            U, singular, Vt = np.linalg.svd(A, full_matrices=False)
            self.U[columns], self.S[columns], self.Vt[columns] = U, singular, Vt
            S = singular[:, 0] if singular.size else np.zeros(0)
        self.S_bound[columns] = np.maximum(self.S_bound[columns], S)
        a, b = self.a[columns], self.b[columns]
        self.alpha[columns] = np.matmul(a[:, None, :], self.U[columns])[:, 0, :]
        self.beta[columns] = np.matmul(self.Vt[columns], b[:, :, None])[:, :, 0]
        if S.size:
            self.rate = max(self.rate, float(S.max()))
        self.coupling[columns] = np.maximum(
            self.coupling[columns], self._coupling_factor * (active.T @ self._weights)
        )
        self._last = None
        if self._pieces is not None:
            self._pieces.append((index, self._pieces_now[columns].copy()))

    def _fields(self, rows: np.ndarray) -> dict:
        """Return views of the fields of piece rows (shape (..., width))."""
        lead = rows.shape[:-1]
        return {
            name: rows[..., start : start + size].reshape(lead + shape)
            for name, start, size, shape in self._layout
        }

    def _bind_fields(self) -> None:
        self.__dict__.update(self._fields(self._pieces_now))

    def copy(self) -> FrozenStep:
        """Return an independent copy, so that a trial can restart its neurons."""
        other = object.__new__(FrozenStep)
        other.__dict__.update(self.__dict__)
        other._pieces_now = self._pieces_now.copy()
        other.S_bound = self.S_bound.copy()
        other.coupling = self.coupling.copy()
        other._bind_fields()
        if self._pieces is not None:
            other._pieces = list(self._pieces)
        return other

    def keep_pieces(self) -> None:
        """Keep every piece from now on (the current ones first), for states_at."""
        columns = np.arange(self.system.h)
        self._pieces = [(columns, self._pieces_now.copy())]

    def states_at(self, times) -> np.ndarray:
        """Return the polar states at ``times`` (shape (m, size)), each neuron on
        the piece in force at that time: the last one to start at or before
        it. Needs keep_pieces before the restarts."""
        h = self.system.h
        times = np.asarray(times, dtype=float)
        # Stack the pieces, and find each neuron's piece at each time.
        owners = np.concatenate([columns for columns, _ in self._pieces])
        stacked = np.concatenate([rows for _, rows in self._pieces])
        origins = stacked[:, 0]
        index = np.empty((times.size, h), dtype=int)
        for j in range(h):
            mine = np.flatnonzero(owners == j)
            # Pieces of one neuron are appended in time order.
            found = np.searchsorted(origins[mine], times, side="right") - 1
            index[:, j] = mine[np.maximum(found, 0)]
        states = np.empty((times.size, self.system.size))
        # The pieces are gathered for at most STATES_CHUNK neuron states at a
        # time: a step with 9400 landings on 48 neurons took 0.38 GB at once.
        chunk = max(1, STATES_CHUNK // h)
        for start in range(0, times.size, chunk):
            part = slice(start, start + chunk)
            f = self._fields(stacked[index[part]])
            x = f["S"] * (times[part, None, None] - f["origin"])
            blocks = _piece_blocks(
                f["sigma"], f["a"], f["b"], f["U"], f["Vt"], f["alpha"], f["beta"], x
            )
            states[part] = blocks.reshape(-1, self.system.size)
        return states

    # -- the exact solution ------------------------------------------------

    def state_at(self, T: float) -> np.ndarray:
        """Return the polar state after ``T`` (in units of ``1/N``), with unit
        directions, every neuron on its current piece.

        The last state is kept: the driver asks for the end of a step twice,
        for the events there and for the step itself.
        """
        if self._last is not None and self._last[0] == T:
            return self._last[1].copy()
        y = self.blocks_at(T).reshape(self.system.size)
        self._last = (T, y.copy())
        return y

    def blocks_at(self, T: float, columns=slice(None)) -> np.ndarray:
        """Return the blocks ``(sigma_j, omega_j)`` after ``T`` of the neurons in
        ``columns`` (all by default) on their current pieces, shape (c, block).
        ``columns`` is a slice or an index array."""
        return _piece_blocks(
            self.sigma[columns],
            self.a[columns],
            self.b[columns],
            self.U[columns],
            self.Vt[columns],
            self.alpha[columns],
            self.beta[columns],
            self.S[columns] * (T - self.origin[columns]),
        )

    # -- step size ---------------------------------------------------------

    def log_norm2_bound(self, T: float) -> float:
        """Return a bound on ``log ||theta||^2`` over the first ``T`` of the step
        (the polar part, frozen part not included).

        Each neuron's linear flow grows its norm at most by its rate ``S_j <=
        s``, so ``||theta||^2`` grows at most like ``exp(2 s T)``. The bound
        takes ``exp(3 s T)``, with the margin that the error bound uses. A
        restart raises ``s`` to the largest rate of every piece so far, so the
        bound is also valid across the activation changes taken up to ``T``.
        """
        return self.log_norm2 + 3.0 * self.rate * T

    def bound(self, T: float) -> float:
        """Return the relative error bound ``max_j E_j`` of a step ``T``, or inf
        where its assumptions (``m_j <= s / 2``, small output moves) fail."""
        fast = 1.5 * self.rate
        log_R_max = self.log_norm2_bound(T)
        if log_R_max > 0.0:
            return math.inf  # the outputs may reach order 1: far from frozen
        R_max = math.exp(log_R_max)
        if T * fast * self.max_x_norm * R_max > MAX_OUTPUT_CHANGE:
            return math.inf
        m = self.coupling * (T * fast * R_max)
        if float(m.max()) > 0.5 * self.rate:
            return math.inf
        return float(np.max(T * m * np.exp(2.0 * (self.S_bound + m) * T)))

    def gradient_drift(self, T: float, shift: float) -> float:
        """Return a bound on ``sum_i ||x_i|| ||g_i - g_i(0)|| / N`` over all
        samples, at the state after ``T`` moved by up to ``shift`` in the unit
        directions ``a_j`` (a projection onto a boundary), or inf where the
        Hessian bound does not apply.

        It bounds ``||dA_j||`` under any pattern. The derivation is the one of
        ``m_j`` (module docstring) with every ``P_ij = 1``, and with the outputs
        moved by ``||x_i|| R_max (1.5 s T + shift)``: the flow moves them by the
        first term, and the shift of the ``a_j`` by at most ``||x_i|| shift
        sum_j exp(2 sigma_j) <= ||x_i|| R_max shift``.
        """
        log_R_max = self.log_norm2_bound(T)
        if log_R_max > 0.0:
            return math.inf
        R_max = math.exp(log_R_max)
        exposure = R_max * (1.5 * self.rate * T + shift)
        if self.max_x_norm * exposure > MAX_OUTPUT_CHANGE:
            return math.inf
        return self._coupling_factor * self._weight_sum * exposure

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
        a_norms = np.sqrt((a * a).sum(axis=1))
        scale = self.system._x_norms[:, None] * np.where(a_norms > 0, a_norms, 1.0)
        factor = signs / scale
        F0 = (X @ a.T) * factor + offsets
        XU = np.matmul(X, self.U[columns]).transpose(1, 0, 2) * factor[:, :, None]
        P = 0.5 * XU * (self.alpha[columns] + self.beta[columns])[None]
        Q = 0.5 * XU * (self.alpha[columns] - self.beta[columns])[None]
        return F0, P, Q

    def first_crossings(
        self,
        signs: np.ndarray,
        offsets: np.ndarray,
        limit: float,
        columns=None,
        landing: float = 0.0,
    ) -> np.ndarray:
        """Return the first ``T`` in [piece start, limit] at which each signed
        pre-activation of the neurons in ``columns`` (all by default) reaches
        ``landing`` or less: inf where it does not, the piece's start where it
        does there. ``T`` is counted from the start of the step.

        With one rate the roots of 0 are solved in closed form (``landing`` is
        not used); with several, each is searched by ``CrossingTable``.
        """
        if columns is None:
            columns = slice(None)
        table = CrossingTable(self, landing)
        columns = np.arange(self.system.h)[columns]
        table.update(columns, signs, offsets, limit)
        if self.S.shape[1] > 1:
            for i, j in zip(*np.nonzero(~table.exact[:, columns])):
                table.resolve(i, columns[j])
        return table.values[:, columns]


def _piece_blocks(sigma, a, b, U, Vt, alpha, beta, x) -> np.ndarray:
    """Return the blocks ``(sigma_j + log ||omega||, omega / ||omega||)`` of
    pieces that started from ``(sigma, a, b)`` with ``A = U diag(S) Vt``, after
    ``x = S (T - origin)``. Every argument has the same leading shape."""
    sh = np.sinh(x)
    ch_minus_1 = 2.0 * np.sinh(0.5 * x) ** 2
    d_alpha = alpha * ch_minus_1 + beta * sh
    d_beta = beta * ch_minus_1 + alpha * sh
    a = a + np.matmul(U, d_alpha[..., None])[..., 0]
    b = b + np.matmul(d_beta[..., None, :], Vt)[..., 0, :]
    norms = np.sqrt((a * a).sum(axis=-1) + (b * b).sum(axis=-1))
    D = a.shape[-1]
    blocks = np.empty(a.shape[:-1] + (1 + D + b.shape[-1],))
    blocks[..., 0] = sigma + np.log(norms)
    blocks[..., 1 : 1 + D] = a / norms[..., None]
    blocks[..., 1 + D :] = b / norms[..., None]
    return blocks


class CrossingTable:
    """The first activation crossing of every pair along a frozen step.

    With one rate per neuron each first root is solved in closed form when the
    neuron's piece starts (``_first_roots_one_rate``). With several, the
    pre-activation ``f(T) = F0 + sum_r P_r (exp(s_r T) - 1) + Q_r (exp(-s_r T)
    - 1)`` (``FrozenStep.crossing_terms``, ``T`` from the piece's start) has no
    such form. Each pair then gets a certified lower bound on its first root,
    and the pairs whose bound is the smallest are searched on demand (``first``):

    - at the piece's start, ``f`` is evaluated at ``GRID_CELLS + 1`` points of
      the piece. ``M2 = sum_r s_r^2 (|P_r| exp(s_r b) + |Q_r| exp(-s_r a))``
      bounds ``|f''|`` over a cell [a, b], so the linear interpolant of ``f`` is
      within ``M2 (x - a)(b - x) / 2`` of it. A cell is free of roots where
      ``min(f(a), f(b)) - M2 (b - a)^2 / 8 > 0``, and the start of the first
      cell that is not free is the lower bound;
    - ``resolve`` goes on from there in steps that are free of roots by the
      bound ``f(a + d) >= f(a) + f'(a) d - M2 d^2 / 2``. Here ``M2`` is the
      smaller of the bound above and ``|f''(a)|`` plus a bound on the third
      derivative times ``d``, which keeps the cancellation of nearly equal
      rates. Each
      step is the first positive root of that quadratic, so none passes a root
      of ``f``. Near a simple root the steps are Newton's, taken from the safe
      side. The search ends where ``f <= landing``, a point that is then the
      crossing: the true root lies after it, by about ``landing / |f'|``, and
      the projection onto the boundary moves the state by ``landing`` at most.

    A pair whose ``f`` only comes within ``landing`` of 0 and turns back is
    landed on like a crossing, and the pattern choice at the boundary then
    keeps its side. No pair is reported to cross where ``f`` stays above
    ``landing``.
    A search that has not ended after ``MAX_SEARCH`` steps stops at its last
    point, before which ``f > 0`` is proven, and marks the pair
    ``uncertified``: the step then ends there without a change.
    """

    def __init__(self, step: FrozenStep, landing: float) -> None:
        self.step = step
        n, h = step.system.n, step.system.h
        r = step.S.shape[1]
        self.one_rate = r == 1
        self.landing = landing
        # First root, or a lower bound on it where not exact (from the step's start).
        self.values = np.full((n, h), np.inf)
        self.exact = np.ones((n, h), dtype=bool)
        self.uncertified = np.zeros((n, h), dtype=bool)
        if not self.one_rate:
            self.F0 = np.zeros((n, h))
            self.P = np.zeros((n, h, r))
            self.Q = np.zeros((n, h, r))
            self.span = np.zeros(h)

    def update(
        self, columns, signs: np.ndarray, offsets: np.ndarray, limit: float
    ) -> None:
        """Search the pairs of the neurons in ``columns`` (indices or a slice)
        along their current pieces, up to ``limit`` from the step's start."""
        step = self.step
        F0, P, Q = step.crossing_terms(signs, offsets, columns)
        origin = step.origin[columns, 0]
        span = np.maximum(limit - origin, 0.0)
        if self.one_rate:
            # Closed-form roots are exact and certified: uncertified stays False.
            roots = _first_roots_one_rate(
                F0, P[..., 0], Q[..., 0], step.S[columns, 0], span
            )
            roots[F0 <= 0] = 0.0
            self.values[:, columns] = roots + origin[None, :]
            return
        self.uncertified[:, columns] = False
        self.F0[:, columns], self.P[:, columns], self.Q[:, columns] = F0, P, Q
        self.span[columns] = span
        bound, exact = _grid_bounds(F0, P, Q, step.S[columns], span, self.landing)
        self.values[:, columns] = bound + origin[None, :]
        self.exact[:, columns] = exact

    def resolve(self, i: int, j: int) -> None:
        """Continue the search of pair ``(i, j)`` from its lower bound to its
        first root."""
        origin = float(self.step.origin[j, 0])
        start = float(self.values[i, j]) - origin
        T, certified = _search_root(
            float(self.F0[i, j]),
            self.P[i, j].tolist(),
            self.Q[i, j].tolist(),
            self.step.S[j].tolist(),
            start,
            float(self.span[j]),
            self.landing,
        )
        self.values[i, j] = T + origin
        self.exact[i, j] = True
        self.uncertified[i, j] = not certified

    def first(
        self, window: float, column: int | None = None
    ) -> tuple[float, list | None]:
        """Return the first crossing and the pairs within ``window`` after it:
        ``(T, pairs)``, ``(inf, [])`` where no pair crosses, and ``(T, None)``
        where the first is an uncertified point (see the class docstring).
        With ``column``, only the pairs of that neuron are searched."""
        part = slice(None) if column is None else slice(column, column + 1)
        # Views, so that resolve's updates show in them.
        values, exact = self.values[:, part], self.exact[:, part]
        uncertified = self.uncertified[:, part]
        start = 0 if column is None else column
        while True:
            i, j = divmod(int(np.argmin(values)), values.shape[1])
            first = float(values[i, j])
            if not math.isfinite(first):
                return math.inf, []
            if not exact[i, j]:
                self.resolve(int(i), start + int(j))
                continue
            if uncertified[i, j]:
                return first, None
            if self.one_rate:
                break  # every root is exact
            pending = np.argwhere((values <= first + window) & ~exact)
            if not len(pending):
                break
            for i, j in pending:
                self.resolve(int(i), start + int(j))
        near = np.argwhere((values <= first + window) & ~uncertified)
        return first, [(int(i), start + int(j)) for i, j in near]


# Number of grid cells for the lower bounds of CrossingTable.
GRID_CELLS = 16
# Maximum number of steps of one root search before it stops uncertified.
MAX_SEARCH = 200


def _grid_bounds(F0, P, Q, s, span, landing):
    """Return lower bounds on the first roots of the pairs (n, c) of
    ``CrossingTable``, from the piece's start, and whether each is exact: inf
    (exact) where the whole piece is free of roots, 0 (exact) where
    ``F0 <= landing``."""
    cells = GRID_CELLS
    points = span[:, None] * (np.arange(cells + 1) / cells)  # (c, cells + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        E = np.exp(s[:, None, :] * points[:, :, None])  # (c, cells + 1, r)
        f = (
            F0[:, :, None]
            + np.einsum("icr,cgr->icg", P, E - 1.0)
            + np.einsum("icr,cgr->icg", Q, 1.0 / E - 1.0)
        )
        s2 = s * s
        growing = np.einsum("icr,cgr->icg", np.abs(P), s2[:, None, :] * E[:, 1:])
        decaying = np.einsum("icr,cgr->icg", np.abs(Q), s2[:, None, :] / E[:, :-1])
        M2 = growing + decaying
        width = span / cells
        slack = M2 * (width * width / 8.0)[None, :, None]
        lower = np.minimum(f[..., :-1], f[..., 1:]) - slack
    free = lower > 0
    first_bad = np.argmin(free, axis=2)  # first cell that is not free
    all_free = np.all(free, axis=2)
    bound = np.where(all_free, np.inf, first_bad * width[None, :])
    exact = all_free.copy()
    at_start = F0 <= landing
    bound[at_start] = 0.0
    exact |= at_start
    return bound, exact


def _search_root(F0, P, Q, s, start, span, landing):
    """Search one pair of ``CrossingTable`` from ``start``, where ``f > 0`` on
    [0, start] is known, for the first point where ``f <= landing``.

    Returns ``(T, certified)``: the point, inf where ``f > 0`` on the whole piece, or
    after ``MAX_SEARCH`` steps the last certified point with ``certified`` False."""
    rates = list(zip(P, Q, s))

    def value(T):
        f, slope, curvature = F0, 0.0, 0.0
        for p, q, rate in rates:
            E = math.exp(rate * T)
            f += p * (E - 1.0) + q * (1.0 / E - 1.0)
            slope += rate * (p * E - q / E)
            curvature += rate * rate * (p * E + q / E)
        return f, slope, curvature

    def second_derivative_bound(a, b, curvature):
        """Bound the second derivative on [a, b] by the sizes of its terms, or by
        its value at a and a bound on the third derivative, which keeps the
        cancellation of nearly equal rates."""
        sizes = [
            (rate, abs(p) * math.exp(rate * b) + abs(q) * math.exp(-rate * a))
            for p, q, rate in rates
        ]
        by_terms = sum(rate * rate * size for rate, size in sizes)
        third = sum(rate**3 * size for rate, size in sizes)
        return min(by_terms, abs(curvature) + third * (b - a))

    a = start
    f, slope, curvature = value(a)
    width = span - a
    for _ in range(MAX_SEARCH):
        if f <= landing:
            return a, True
        if a >= span:
            return math.inf, True
        b = min(a + width, span)
        M2 = second_derivative_bound(a, b, curvature)
        # First positive root of f + slope d - M2 d^2 / 2, in the stable forms.
        root = math.sqrt(slope * slope + 2.0 * M2 * f)
        if slope >= 0.0:
            d = (slope + root) / M2 if M2 > 0 else math.inf
        else:
            d = 2.0 * f / (root - slope)
        if a + d >= b:
            if b >= span:
                return math.inf, True
            a, width = b, 2.0 * width
        elif a + d == a:
            # The next certified point is a itself in float64: the root is
            # within the roundoff of T from here.
            return a, True
        else:
            a, width = a + d, 4.0 * d
        f, slope, curvature = value(a)
    return a, False


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
    a1 = F0 + P - Q
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # A negative discriminant gives NaN here, a zero P or q an infinite or
        # NaN candidate, and no NaN passes the comparisons below.
        root_disc = np.sqrt(a1 * a1 - 4.0 * P * F0)
        q = -0.5 * (a1 + np.copysign(root_disc, a1))
        # The roots q / P and F0 / q; with P = 0, F0 / q = -F0 / a1 is the
        # root of the linear polynomial.
        r1 = q / P
        r2 = F0 / q
        u = np.minimum(np.where(r1 > 0, r1, np.inf), np.where(r2 > 0, r2, np.inf))
        u_max = np.where(s > 0, np.expm1(s * limit), -np.inf)
        T = np.log1p(u) / s
    found = (u <= u_max) & (u < np.inf)
    return np.where(found, np.minimum(T, limit), np.inf)
