"""Linear solves with ``c I - J`` for the implicit steps, by blocks where the flow
decouples.

A Radau IIA step factors ``c I - J`` twice, for a real ``c`` and for a complex
one, and the complex factorisation costs about four times the real one. Both
grow like the cube of the state size ``h (1 + D + d_y)``.

The Jacobian of the polar flow has a structure that makes most of that work
unnecessary. Neurons ``j`` and ``k`` interact through the loss only where they
share an active sample ``i`` (``P_ij = P_ik = 1``). The exceptions are the clock
terms: the normalisation ``N = sum_i ||g_i|| ||x_i||`` of the clock ``tau``,
and in the norm clock the rate ``dR/dtau``. Each enters the right-hand side as
one scalar factor, and so adds a rank-one term to ``J``. With the neurons split
into groups that share no active sample (after separation, one group per
class), the Jacobian of the polar state is

    A = B - U V^T,

with ``B`` block diagonal (one block per group) and ``U``, ``V`` of one column
per clock term. In the norm clock the state has one more entry, the clock
variable ``u``, whose row of ``J`` is 0 (``du/du = 1`` is constant), so
``J = [[A, e], [0, 0]]``.

``c I - A = M + U V^T`` with ``M = c I - B`` block diagonal, and the
Sherman-Morrison-Woodbury identity solves it from the blocks of ``M``:

    x = y - W (I + V^T W)^{-1} V^T y,   y = M^{-1} r,   W = M^{-1} U.

On the binary benchmark problem (two groups of 80 entries), LAPACK's ``getrf``
alone took about 190 us for the four block factorisations of a step against
850 us for the two whole ones (timeit, one thread).

| symbol | code | shape |
|---|---|---|
| ``B`` | ``block_part`` | ``(m, m)``, zero outside the diagonal blocks |
| ``U``, ``V`` | ``U``, ``V`` | ``(m, k)`` |
| ``e`` | ``border`` | ``(m,)``, the column of ``u`` (norm clock only) |
"""

from __future__ import annotations

import numpy as np

from ncflow.flow.steps import lu_factor, lu_solve

# The blocks cost a Python call per group, factorisation and solve, plus the
# Woodbury correction, so below this state size the whole matrix is faster.
# Measured (median of 7 runs to C11 error 1e-6): the three-class benchmark
# problem (109 entries, three groups) took 0.100 s by blocks and 0.095 s whole,
# the binary one (161 entries, two groups) 0.293 s and 0.298 s.
MIN_BLOCK_SIZE = 128
# Groups are used only when the largest contains at most this fraction of the
# state, because with one dominant group the saving is small.
MAX_GROUP_FRACTION = 0.75
# Groups smaller than this (in entries) are merged with their neighbours: a
# union of groups is still a block, and each block costs Python calls. Timed
# on one step's linear algebra with a synthetic Jacobian of 32 one-neuron
# groups of 6 entries, the blocks took 1.09 times as long as the whole matrix.
MIN_GROUP_SIZE = 32
# The Woodbury correction subtracts W (I + V^T W)^{-1} V^T y from y = M^{-1} r.
# M can be nearly singular where c I - J is not. Where y exceeds the result by
# more than this factor, the solve is repeated with the whole matrix, so the
# correction cancels at most 4 of the 16 digits.
MAX_CANCELLATION = 1e4


def neuron_groups(pattern: np.ndarray) -> list[np.ndarray]:
    """Split the neurons into groups that share no active sample.

    Two neurons are in one group when a chain of neurons links them, each
    sharing an active sample with the next: the connected components of the
    graph with an edge wherever ``P_ij = P_ik = 1``. Neurons with no active
    sample are gathered into one group of their own (they interact with no
    other neuron). Returns the neuron indices of each group, sorted.
    """
    h = pattern.shape[1]
    active = pattern.astype(np.float64)
    linked = (active.T @ active) > 0  # (h, h), True on the diagonal where active
    labels = np.arange(h)
    while True:
        # Each neuron takes the smallest label among the neurons it is linked to.
        spread = np.where(linked, labels[None, :], h).min(axis=1)
        spread = np.minimum(spread, labels)
        if np.array_equal(spread, labels):
            break
        labels = spread
    dead = ~pattern.any(axis=0)
    groups = [np.flatnonzero(labels == label) for label in np.unique(labels[~dead])]
    if dead.any():
        groups.append(np.flatnonzero(dead))
    return groups


class Jacobian:
    """The Jacobian of one state, dense, with its block and low-rank parts.

    Parameters
    ----------
    block_part : ndarray, shape (m, m)
        ``B``: entries between neurons of different groups are 0.
    U, V : ndarray, shape (m, k)
        The low-rank part: the polar Jacobian is ``B - U V^T``.
    border : ndarray, shape (m,), optional
        The column of ``u`` in the norm clock, whose state is one longer.
    """

    def __init__(
        self,
        block_part: np.ndarray,
        U: np.ndarray,
        V: np.ndarray,
        border: np.ndarray | None = None,
    ) -> None:
        self.block_part = block_part
        self.U, self.V = U, V
        self.border = border
        self._matrix: np.ndarray | None = None
        self.order: np.ndarray | None = None
        self.bounds: list[tuple[int, int]] = []
        self.dense_fallbacks = 0  # factorisations whole after a cancellation

    @property
    def matrix(self) -> np.ndarray:
        """The whole Jacobian, formed on first use."""
        if self._matrix is None:
            inner = self.block_part - self.U @ self.V.T
            if self.border is None:
                self._matrix = inner
            else:
                m = inner.shape[0]
                self._matrix = np.zeros((m + 1, m + 1))
                self._matrix[:m, :m] = inner
                self._matrix[:m, m] = self.border
        return self._matrix

    def use_groups(self, groups: list[np.ndarray], block: int) -> None:
        """Solve by the blocks of these neuron groups (``block`` entries per
        neuron), where that is cheaper than the whole matrix."""
        m = self.block_part.shape[0]
        layout = _layout(m, groups, block)
        if layout is None:
            return
        self.order, self.bounds, flat = layout
        # Both factorisations of a step use the same blocks and vectors, taken
        # out once in the grouped order.
        self.blocks = [
            self.block_part.take(index).reshape(b - a, b - a)
            for (a, b), index in zip(self.bounds, flat)
        ]
        self.grouped_U = self.U[self.order]
        self.grouped_V = self.V[self.order]

    def factor(self, shift: complex | float):
        """Return a solver of ``(shift I - J) x = r``."""
        if self.order is None:
            return DenseSolver(self.matrix, shift)
        return BlockSolver(self, shift)


class DenseSolver:
    """``shift I - J`` factored whole."""

    def __init__(self, matrix: np.ndarray, shift: complex | float) -> None:
        self.factors = lu_factor(shifted(matrix, shift))

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return lu_solve(self.factors, rhs)


class BlockSolver:
    """``shift I - J`` factored by the blocks of ``B``, with the Woodbury
    correction for ``U V^T`` and the border column of ``u``."""

    def __init__(self, jacobian: Jacobian, shift: complex | float) -> None:
        self.shift = shift
        self.jacobian = jacobian
        self.dense: DenseSolver | None = None
        self.border = jacobian.border
        self.order = jacobian.order
        self.bounds = jacobian.bounds
        # Everything below is in the grouped order of the entries.
        self.factors = [lu_factor(shifted(block, shift)) for block in jacobian.blocks]
        self.V = jacobian.grouped_V
        self.W = self._block_solve(jacobian.grouped_U)  # M^{-1} U
        self.capacitance = _inverse(np.eye(self.V.shape[1]) + self.V.T @ self.W)

    def _block_solve(self, rhs: np.ndarray) -> np.ndarray:
        dtype = np.result_type(rhs, self.shift)
        out = np.empty(rhs.shape, dtype=dtype)
        for (a, b), factors in zip(self.bounds, self.factors):
            out[a:b] = lu_solve(factors, rhs[a:b].astype(dtype, copy=False))
        return out

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        m = self.order.size
        inner = rhs[:m]
        dtype = np.result_type(rhs, self.shift)
        if self.border is not None:
            last = rhs[m] / self.shift
            inner = inner + self.border * last
        y = self._block_solve(inner[self.order])
        x = y - self.W @ (self.capacitance @ (self.V.T @ y))
        if not np.max(np.abs(y)) <= MAX_CANCELLATION * np.max(np.abs(x)):
            return self._dense_solve(rhs)
        out = np.empty(rhs.shape, dtype=dtype)
        out[self.order] = x
        if self.border is not None:
            out[m] = last
        return out

    def _dense_solve(self, rhs: np.ndarray) -> np.ndarray:
        """Solve with the whole matrix, factored on first use (also where ``y``
        is not finite)."""
        if self.dense is None:
            self.dense = DenseSolver(self.jacobian.matrix, self.shift)
            self.jacobian.dense_fallbacks += 1
        return self.dense.solve(rhs)


# Layouts of recent groupings, keyed by the sizes, the limits above and the
# groups. A run keeps one pattern for many steps, and the index arithmetic of a
# layout took about as long as taking the blocks out with it.
_LAYOUTS: dict[tuple, tuple | None] = {}
_MAX_LAYOUTS = 64


def _layout(m: int, groups: list[np.ndarray], block: int):
    """Return the grouped order of the ``m`` entries, the bounds of each group
    in it, and each block's flat indices into the ``(m, m)`` matrix; None where
    the groups do not pay (``MIN_BLOCK_SIZE``, ``MAX_GROUP_FRACTION``)."""
    limits = (MIN_BLOCK_SIZE, MAX_GROUP_FRACTION, MIN_GROUP_SIZE)
    key = (m, block, limits, tuple(group.tobytes() for group in groups))
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    layout = None
    if m >= MIN_BLOCK_SIZE:
        merged = _merge_small(groups, -(-MIN_GROUP_SIZE // block))
        sizes = [len(group) * block for group in merged]
        if max(sizes) <= MAX_GROUP_FRACTION * m:
            offsets = np.arange(block)
            entries = [
                (group[:, None] * block + offsets).reshape(-1) for group in merged
            ]
            ends = np.cumsum(sizes)
            bounds = [(int(a), int(b)) for a, b in zip(ends - sizes, ends)]
            flat = [
                (index[:, None] * m + index[None, :]).reshape(-1) for index in entries
            ]
            layout = (np.concatenate(entries), bounds, flat)
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[key] = layout
    return layout


def _merge_small(groups: list[np.ndarray], smallest: int) -> list[np.ndarray]:
    """Merge consecutive groups until each has at least ``smallest`` neurons; a
    small remainder joins the last merged group."""
    merged: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    for group in groups:
        pending.append(group)
        if sum(len(part) for part in pending) >= smallest:
            merged.append(np.sort(np.concatenate(pending)))
            pending = []
    if pending:
        if merged:
            pending.insert(0, merged.pop())
        merged.append(np.sort(np.concatenate(pending)))
    return merged


def shifted(matrix: np.ndarray, shift: complex | float) -> np.ndarray:
    """Return ``shift I - matrix`` as a new array, complex where ``shift`` is."""
    # Written into a zeroed array through its real view: a casting ufunc, or
    # astype, takes three times as long on 110 rows (32 against 9 us).
    out = np.zeros(matrix.shape, dtype=np.result_type(matrix, shift))
    np.negative(matrix, out=out.real)
    out.flat[:: out.shape[0] + 1] += shift
    return out


def _inverse(matrix: np.ndarray) -> np.ndarray:
    """Return the inverse of a small square matrix.

    Up to 2 x 2 the closed form is used, because there ``np.linalg.inv`` costs
    more in argument handling than in arithmetic.
    """
    k = matrix.shape[0]
    if k == 1:
        return 1.0 / matrix
    if k == 2:
        (a, b), (c, d) = matrix
        return np.array([[d, -b], [-c, a]]) / (a * d - b * c)
    return np.linalg.inv(matrix)
