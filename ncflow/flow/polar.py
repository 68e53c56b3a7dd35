"""Gradient flow in per-neuron polar coordinates, with a scale-free clock.

Neuron ``j`` is stored as a log-norm ``sigma_j`` and a direction
``omega_j = (a_j, b_j)``, so that ``w_j = exp(sigma_j) a_j`` and
``v_j = exp(sigma_j) b_j``. Between activation changes the flow of one neuron is
linear in its own weights,

    d(w_j, v_j)/dt = M_j (w_j, v_j),   M_j = [[0, A_j], [A_j^T, 0]],
    A_j = sum_i 1[<x_i, w_j> > 0] x_i g_i^T,

with ``g_i = -dl_i/df_i``. In polar form this reads

    d sigma_j/dt = q_j = omega_j^T M_j omega_j / ||omega_j||^2,
    d omega_j/dt = M_j omega_j - q_j omega_j,

which reproduces ``d(w, v)/dt`` exactly for any ``||omega_j||``. The
independent variable is the clock ``tau`` with ``dt/dtau = 1/N``,
``N = sum_i ||g_i|| ||x_i||``: every rate is then bounded (``|d sigma_j/dtau|
<= 1``) whatever the loss scale, and ``N`` is handled as ``log N``, so neither
the small-initialisation plateau nor the late phase, where ``L`` falls below
``1e-300``, under- or overflows. Gradient-flow time ``t = int exp(-log N) dtau``
does not feed back into the flow; the driver accumulates it by quadrature.

| symbol | code | shape | meaning |
|---|---|---|---|
| ``sigma_j`` | ``sigma`` | ``(h,)`` | log-norm of neuron ``j`` |
| ``a_j`` | ``a`` | ``(h, D)`` | input-weight direction (rows) |
| ``b_j`` | ``b`` | ``(h, d_y)`` | output-weight direction (rows) |
| ``P`` | ``pattern`` | ``(n, h)`` | activation pattern, fixed between events |
| ``G`` | ``G`` | ``(n, d_y)`` | ``g_i / N`` |

The activation pattern is an argument, not a function of the state: inside a
smooth segment the pre-activation ``z_ij`` enters as ``P_ij z_ij``, the smooth
continuation of ``relu`` past its kink, and the driver switches ``P`` at each
located crossing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ncflow._numeric import logsumexp
from ncflow._validation import InvalidArgument, round_up
from ncflow.losses import is_per_sample, loss_terms_unchecked
from ncflow.network import Parameters, Problem, activation_mask

# Smallest squared neuron norm ||w_j||^2 + ||v_j||^2 that the polar coordinates
# take: the smallest normal float64 number, 2.2e-308. Below it a square is
# subnormal, with fewer significant bits, and below 2.5e-324 it is 0.
MIN_NEURON_NORM2 = float(np.finfo(np.float64).tiny)


@dataclass
class Evaluation:
    """Intermediate quantities of one right-hand-side evaluation."""

    rhs: np.ndarray
    Z: np.ndarray  # (n, h) scale-free pre-activations <x_i, a_j>
    active: np.ndarray  # (n, h) P * Z
    outputs: np.ndarray  # (n, d_y)
    G: np.ndarray  # (n, d_y)
    GB: np.ndarray  # (n, h) <G_i, b_j>
    q: np.ndarray  # (h,)
    omega_norm2: np.ndarray  # (h,)
    log_N: float
    terms: object
    norm_rate: float = 0.0  # dR/dtau, filled in by the norm clock


class PolarSystem:
    """Right-hand side and Jacobian of the flow in ``(sigma, omega, ell)``.

    Parameters
    ----------
    problem : Problem
        Data, targets, loss and activation.
    width : int
        Number of neurons ``h``.
    frozen_V : ndarray, shape (d_y, h), optional
        A part of ``V`` that the flow never moves and that no other weight
        depends on, kept out of the state. The cross-entropy is invariant to
        adding ``c 1`` to the outputs, so its gradients ``g_i`` sum to 0 and the
        component ``(1 1^T / K) v_j`` of every output weight is constant. Left
        in the state it would decay like ``1 / ||theta_j||`` in the polar
        direction, multiplied by the stiff growth rate ``q_j``, which costs a
        linearly implicit method its order; outside the state it is exact.
    """

    def __init__(
        self, problem: Problem, width: int, frozen_V: np.ndarray | None = None
    ) -> None:
        self.problem = problem
        self.X = problem.X
        self.n, self.D = problem.X.shape
        self.h = width
        self.num_outputs = problem.num_outputs
        # Output weights are stored in the coordinates of ``Q`` (d_y x m): all
        # of R^{d_y} for a scalar output, the complement of 1 for the
        # cross-entropy, whose loss does not see the 1 direction (see frozen_V).
        self.Q = _output_basis(self.num_outputs, problem.binary)
        self.d_y = self.Q.shape[1]
        # With a scalar output Q = [[1]], and every unit gradient y_i = +-1 has
        # norm exactly 1. So the products with Q and the log-norms of the unit
        # gradients change nothing, and they are skipped.
        self.scalar_output = self.Q.shape == (1, 1) and problem.binary
        self.block = 1 + self.D + self.d_y
        self.size = self.h * self.block
        self.log_x_norms = np.log(np.linalg.norm(self.X, axis=1))
        self.linear = problem.activation == "linear"
        self._init_jacobian_constants()
        if frozen_V is None:
            frozen_V = np.zeros((self.num_outputs, width))
        self.frozen_V = np.asarray(frozen_V, dtype=np.float64)
        self.frozen_norm2 = float(np.sum(self.frozen_V**2))
        self._targets_by_count: dict[int, np.ndarray] = {}

    # -- conversions -------------------------------------------------------

    def from_parameters(self, params: Parameters) -> np.ndarray:
        """Polar state of ``params`` less ``frozen_V``, every ``omega_j`` of norm 1."""
        reduced = self.Q.T @ (params.V - self.frozen_V)
        omega = np.concatenate([params.W.T, reduced.T], axis=1)
        norms = row_norms(omega)
        # solve_flow has checked the whole weights. Here the part of v_j along
        # the all-ones vector, which the cross-entropy ignores, is left out.
        part = "" if self.problem.binary else ", less its all-ones part"
        check_neuron_norms(norms, "params0", part)
        state = np.empty(self.size)
        blocks = state.reshape(self.h, self.block)
        blocks[:, 0] = np.log(norms)
        blocks[:, 1:] = omega / norms[:, None]
        return state

    def split(self, state: np.ndarray):
        blocks = state.reshape(self.h, self.block)
        return blocks[:, 0], blocks[:, 1 : 1 + self.D], blocks[:, 1 + self.D :]

    def to_parameters(self, state: np.ndarray) -> Parameters:
        W, V = self.parameters_many(state[None])
        return Parameters(W[0], V[0])

    def parameters_many(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``W`` and ``V`` of each row of ``states`` (m, size), shapes
        (m, D, h) and (m, d_y, h), ``frozen_V`` included."""
        blocks = states.reshape(states.shape[0], self.h, self.block)
        scale = np.exp(blocks[:, :, :1])
        W = (scale * blocks[:, :, 1 : 1 + self.D]).transpose(0, 2, 1)
        V = self.Q @ (scale * blocks[:, :, 1 + self.D :]).transpose(0, 2, 1)
        return W, V + self.frozen_V

    def normalize(self, state: np.ndarray) -> np.ndarray:
        """Move the norm of each ``omega_j`` into ``sigma_j`` (an exact change)."""
        state = state.copy()
        blocks = state.reshape(self.h, self.block)
        norms = np.linalg.norm(blocks[:, 1:], axis=1)
        blocks[:, 0] += np.log(norms)
        blocks[:, 1:] /= norms[:, None]
        return state

    def preactivation_directions(self, state: np.ndarray) -> np.ndarray:
        """``<x_i, a_j>``, shape (n, h); its sign is the sign of ``<x_i, w_j>``."""
        _, a, _ = self.split(state)
        return self.X @ a.T

    def log_norm2(self, state: np.ndarray) -> float:
        """Return ``log ||theta||_F^2 = log sum_j exp(2 sigma_j) ||omega_j||^2``."""
        blocks = state.reshape(self.h, self.block)
        omega = blocks[:, 1:]
        two_sigma = 2 * blocks[:, 0]
        top = float(two_sigma.max())
        if not math.isfinite(top):
            return top
        total = float(np.exp(two_sigma - top) @ np.einsum("jk,jk->j", omega, omega))
        return top + math.log(total) if total > 0 else -math.inf

    def initial_pattern(self, state: np.ndarray) -> np.ndarray:
        return activation_mask(
            self.preactivation_directions(state), self.problem.activation
        )

    # -- right-hand side ---------------------------------------------------

    def evaluate(self, state: np.ndarray, pattern: np.ndarray) -> Evaluation:
        sigma, a, b = self.split(state)
        Z = self.X @ a.T
        active = Z * pattern
        outputs, terms = self._loss_terms(sigma, b, active)
        log_N = self._log_N(terms)
        G = np.exp(terms.log_scales - log_N)[:, None] * terms.unit_gradients
        if not self.scalar_output:
            G = G @ self.Q

        GB = G @ b.T  # (n, h)
        omega = state.reshape(self.h, self.block)[:, 1:]
        omega_norm2 = np.einsum("jk,jk->j", omega, omega)
        q = 2 * np.einsum("ij,ij->j", active, GB) / omega_norm2
        rhs = np.empty(self.size)
        blocks = rhs.reshape(self.h, self.block)
        blocks[:, 0] = q
        blocks[:, 1 : 1 + self.D] = (GB * pattern).T @ self.X - q[:, None] * a
        blocks[:, 1 + self.D :] = active.T @ G - q[:, None] * b
        return Evaluation(rhs, Z, active, outputs, G, GB, q, omega_norm2, log_N, terms)

    def rhs(self, state: np.ndarray, pattern: np.ndarray) -> np.ndarray:
        return self.evaluate(state, pattern).rhs

    def evaluate_many(self, states: np.ndarray, pattern: np.ndarray):
        """Evaluate the right-hand side at several states under one pattern.

        Parameters
        ----------
        states : ndarray, shape (m, size)

        Returns
        -------
        rhs : ndarray, shape (m, size)
        q : ndarray, shape (m, h)
            ``d sigma_j / dtau`` of each state.
        omega_norm2 : ndarray, shape (m, h)

        The same arithmetic as :meth:`evaluate`, with a leading axis: the
        implicit method evaluates its three stages together, which costs little
        more than one evaluation on these small arrays. Losses that are not a
        sum of per-sample terms (``is_per_sample``) are evaluated state by state.
        """
        m = states.shape[0]
        if not is_per_sample(self.problem.loss):
            evaluations = [self.evaluate(state, pattern) for state in states]
            return (
                np.stack([ev.rhs for ev in evaluations]),
                np.stack([ev.q for ev in evaluations]),
                np.stack([ev.omega_norm2 for ev in evaluations]),
            )
        blocks = states.reshape(m, self.h, self.block)
        a = blocks[:, :, 1 : 1 + self.D]
        b = blocks[:, :, 1 + self.D :]
        active, _, G, _ = self._forward_many(states, pattern)
        if not self.scalar_output:
            G = G @ self.Q
        GB = G @ b.transpose(0, 2, 1)  # (m, n, h)
        omega = blocks[:, :, 1:]
        omega_norm2 = np.einsum("mjk,mjk->mj", omega, omega)
        q = 2 * np.einsum("mij,mij->mj", active, GB) / omega_norm2
        rhs = np.empty((m, self.h, self.block))
        rhs[:, :, 0] = q
        rhs[:, :, 1 : 1 + self.D] = (GB * pattern).transpose(0, 2, 1) @ self.X - (
            q[:, :, None] * a
        )
        rhs[:, :, 1 + self.D :] = active.transpose(0, 2, 1) @ G - q[:, :, None] * b
        return rhs.reshape(m, self.size), q, omega_norm2

    def _forward_many(self, states: np.ndarray, pattern: np.ndarray):
        """Compute ``P * Z``, the outputs, ``g / N`` and ``log N`` of ``m`` states.

        The shapes are (m, n, h), (m, n, K), (m, n, K) and (m,) for ``K``
        outputs. The loss must be a sum of per-sample terms.
        """
        m = states.shape[0]
        blocks = states.reshape(m, self.h, self.block)
        sigma = blocks[:, :, 0]
        a = blocks[:, :, 1 : 1 + self.D]
        b = blocks[:, :, 1 + self.D :]
        Z = self.X @ a.transpose(0, 2, 1)  # (m, n, h)
        active = Z * pattern
        outputs = (active * np.exp(2 * sigma)[:, None, :]) @ b
        if not self.scalar_output:
            outputs = outputs @ self.Q.T
        terms = loss_terms_unchecked(
            outputs.reshape(m * self.n, -1), self._stacked_targets(m), self.problem.loss
        )
        log_scales = terms.log_scales.reshape(m, self.n)
        unit_gradients = terms.unit_gradients.reshape(m, self.n, -1)
        log_N = logsumexp(self._log_weights(log_scales, unit_gradients), axis=1)
        G = np.exp(log_scales - log_N[:, None])[:, :, None] * unit_gradients
        return active, outputs, G, log_N

    def norm_clock_terms_many(self, states: np.ndarray, pattern: np.ndarray):
        """Return ``log N`` and ``dR/dtau`` of each row of ``states``, both of
        shape (m,); see :meth:`norm_clock_terms`."""
        if not is_per_sample(self.problem.loss):
            pairs = [self.norm_clock_terms(state, pattern) for state in states]
            return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        _, outputs, G, log_N = self._forward_many(states, pattern)
        return log_N, 4 * np.sum(G * outputs, axis=(1, 2))

    def log_N_many(self, states: np.ndarray, pattern: np.ndarray) -> np.ndarray:
        """Return ``log N = log sum_i ||g_i|| ||x_i||``, the clock rate
        ``dtau/dt``, of each row of ``states``, shape (m,)."""
        return self.norm_clock_terms_many(states, pattern)[0]

    def _stacked_targets(self, m: int) -> np.ndarray:
        """Return the targets repeated for ``m`` stacked states, cached by ``m``."""
        if m not in self._targets_by_count:
            self._targets_by_count[m] = np.tile(self.problem.targets, m)
        return self._targets_by_count[m]

    def forward(self, state: np.ndarray, pattern: np.ndarray):
        """Outputs and loss terms at ``state`` (no derivatives)."""
        sigma, a, b = self.split(state)
        active = (self.X @ a.T) * pattern
        return self._loss_terms(sigma, b, active)

    def _loss_terms(self, sigma: np.ndarray, b: np.ndarray, active: np.ndarray):
        outputs = (active * np.exp(2 * sigma)) @ b
        if not self.scalar_output:
            outputs = outputs @ self.Q.T
        return outputs, loss_terms_unchecked(
            outputs, self.problem.targets, self.problem.loss
        )

    def norm_clock_terms(self, state: np.ndarray, pattern: np.ndarray):
        """Return ``log N`` and ``dR/dtau`` at ``state``, from the outputs alone.

        ``R = ||theta||^2`` of a 2-homogeneous network grows at
        ``dR/dt = -2 <theta, grad L> = 4 sum_i <g_i, f_i>``, so in the clock tau
        ``dR/dtau = 4 sum_i <G_i, f_i>``: no backward pass is needed.
        """
        outputs, terms = self.forward(state, pattern)
        log_N = self._log_N(terms)
        G = np.exp(terms.log_scales - log_N)[:, None] * terms.unit_gradients
        return log_N, 4 * float(np.sum(G * outputs))

    def _log_N(self, terms) -> float:
        return float(
            logsumexp(self._log_weights(terms.log_scales, terms.unit_gradients))
        )

    def _log_weights(
        self, log_scales: np.ndarray, unit_gradients: np.ndarray
    ) -> np.ndarray:
        """Return ``log(||g_i|| ||x_i||)`` of each sample, for one state or a stack.

        ``N`` is their sum. The shapes are (..., n) and (..., n, d_y).
        """
        if self.scalar_output:
            return log_scales + self.log_x_norms
        return log_scales + _log_row_norms(unit_gradients) + self.log_x_norms

    # -- Jacobian ----------------------------------------------------------

    def _init_jacobian_constants(self) -> None:
        """Store the arrays of :meth:`jacobian` that depend on the problem alone."""
        h, B, d_y, K = self.h, self.block, self.d_y, self.num_outputs
        self._x_norms = np.exp(self.log_x_norms)
        self._X_T = np.ascontiguousarray(self.X.T)
        # Entry (row (d, c), column (k, l)) is Q[k, c] Q[l, d], so that this matrix
        # times the flattened K x K Hessian U gives (Q^T U Q)[c, d] in row (d, c).
        self._hessian_basis = np.einsum("kc,ld->dckl", self.Q, self.Q).reshape(
            d_y * d_y, K * K
        )
        # Flat indices into J of the entries (row (j, r), column (j, c)) with
        # c >= 1: the diagonal blocks without their sigma column.
        neurons = np.arange(h)[:, None, None]
        rows = np.arange(B)[None, :, None]
        columns = np.arange(1, B)[None, None, :]
        self._direct_index = (
            (neurons * B + rows) * (h * B) + neurons * B + columns
        ).reshape(-1)

    def jacobian(self, state: np.ndarray, pattern: np.ndarray, ev: Evaluation):
        """Exact Jacobian ``d rhs / d state`` for a fixed pattern, shape (size, size).

        ``ev`` must be ``self.evaluate(state, pattern)``; see :meth:`jacobian_parts`.
        """
        J, u, v = self.jacobian_parts(state, pattern, ev)
        J -= np.multiply.outer(u, v)
        return J

    def jacobian_parts(self, state: np.ndarray, pattern: np.ndarray, ev: Evaluation):
        """Return the Jacobian ``J_b - u v^T`` (:meth:`jacobian`) as ``(J_b, u, v)``.

        ``ev`` must be ``self.evaluate(state, pattern)``. The rhs depends on the
        state directly and through ``G(f(state))``:
        ``J = J_direct + (d rhs/dG) (dG/df) (df/dstate)``, with
        ``dG_i = (H_i/N) df_i - G_i d log N``, ``H_i = dg_i/df_i`` and
        ``d log N = sum_i rho_i^T df_i``,
        ``rho_i = ||x_i|| H_i g_i / (N ||g_i||)`` (from ``N = sum_i ||g_i|| ||x_i||``).
        The term ``- G_i d log N`` is the rank-one part ``- u v^T``, with
        ``v = d log N / dstate``. The rest, ``J_b``, couples two neurons only
        through a sample active on both (see ``linear.py``).
        """
        n, h, D, d_y, B = self.n, self.h, self.D, self.d_y, self.block
        # The cross part is (d rhs/dG) times dG/dstate, a product over the
        # samples and outputs (i, c). That axis is ordered (c, i), so that the
        # sample axis is the long last axis of each broadcast product below.
        m = d_y * n
        neurons = state.reshape(h, B)
        b = neurons[:, 1 + D :]
        scale2 = np.exp(2 * neurons[:, 0])
        active_T = ev.active.T  # (h, n)
        terms = ev.terms

        # Loss Hessians in units of N, in the output coordinates Q:
        # hessians[(d, c), i] = (Q^T H_i Q)[c, d] / N.
        weights = np.exp(terms.log_scales - ev.log_N)
        hessians = self._hessian_basis @ terms.unit_hessians.reshape(n, -1).T
        hessians *= weights
        unit = terms.unit_gradients
        if self.scalar_output:
            # Q = [[1]] and every unit gradient has norm 1 (see __init__).
            rho = self._x_norms * weights * unit[:, 0] * terms.unit_hessians[:, 0, 0]
            rho = rho[:, None]
        else:
            unit_norms = np.sqrt(np.einsum("ik,ik->i", unit, unit))
            rho = np.einsum("ik,ikl->il", unit, terms.unit_hessians) @ self.Q
            rho *= (self._x_norms * weights / unit_norms)[:, None]

        # df_i / d(sigma_j, a_j) = exp(2 sigma_j) b_j [2 P_ij z_ij, P_ij x_i^T]
        # and df_i / db_j = exp(2 sigma_j) P_ij z_ij I. features[j] contains the
        # bracket, and PX[j, a, i] = P_ij x_ia.
        features = np.empty((h, 1 + D, n))
        features[:, 0] = 2 * active_T
        PX = features[:, 1:]
        np.multiply(pattern.T.astype(np.float64)[:, None, :], self._X_T, out=PX)

        # dG/dstate transposed: row (k, col), column (c, i).
        HB = (b @ hessians.reshape(d_y, m)).reshape(h, 1, d_y, n)
        HB *= scale2[:, None, None, None]  # exp(2 sigma_k) (H_i b_k)_c / N
        dG = np.empty((h, B, d_y, n))
        np.multiply(features[:, :, None, :], HB, out=dG[:, : 1 + D])
        np.multiply(
            (active_T * scale2[:, None])[:, None, None, :],
            hessians.reshape(d_y, d_y, n),
            out=dG[:, 1 + D :],
        )
        # d log N / dstate = sum_i rho_i^T df_i / dstate, shape (h, B).
        d_log_N = np.empty((h, B))
        np.matmul(features, (b @ rho.T)[:, :, None], out=d_log_N[:, : 1 + D, None])
        d_log_N[:, 1 + D :] = active_T @ rho
        d_log_N *= scale2[:, None]
        dG = dG.reshape(h * B, m)

        # d rhs / dG: row (j, r), column (c, i). The rhs of neuron j is
        # (q_j, M_j omega_j - q_j omega_j) with
        # q_j = 2 sum_i P_ij z_ij <G_i, b_j> / ||omega_j||^2. Row r depends on G
        # through q_j with the factor (1, -a_j, -b_j)[r], and q_factor is that
        # factor times 2 / ||omega_j||^2.
        q_factor = neurons.copy()
        q_factor[:, 0] = -1.0
        q_factor *= (-2 / ev.omega_norm2)[:, None]
        by_sample = q_factor[:, :, None] * active_T[:, None, :]  # (h, B, n)
        by_sample[:, 1 : 1 + D] += PX  # from sum_i P_ij x_i <G_i, b_j>
        d_rhs = np.empty((h, B, d_y, n))
        np.multiply(b[:, None, :, None], by_sample[:, :, None, :], out=d_rhs)
        for c in range(d_y):
            d_rhs[:, 1 + D + c, c] += active_T  # from sum_i P_ij z_ij G_i
        # A C-contiguous right factor: with numpy 2.4 (OpenBLAS 0.3.31, one
        # thread, AMD EPYC), timeit measured this product about 6 us faster
        # than with the transposed view, on 108 x 60 x 108 and 160 x 24 x 160.
        d_rhs = d_rhs.reshape(h * B, m)
        J = d_rhs @ np.ascontiguousarray(dG.T)
        u = d_rhs @ ev.G.T.reshape(-1)

        # Direct dependence of each neuron's rhs on its own direction (G fixed):
        # one (B, B - 1) block per neuron, in the columns of omega_j, because
        # at fixed G the rhs does not depend on sigma_j. As
        # dq_j/domega_j = 2 (M_j omega_j - q_j omega_j) / ||omega_j||^2, and
        # M_j omega_j - q_j omega_j is the omega part of the rhs, the block is
        # q_factor (rhs of omega_j)^T, plus M_j - q_j I in the omega rows, with
        # M_j = [[0, A_j], [A_j^T, 0]] and A_j = sum_i P_ij x_i G_i^T.
        direct = q_factor[:, :, None] * ev.rhs.reshape(h, B)[:, None, 1:]
        # Entries (r, r - 1) of each block, the diagonal of its omega rows.
        direct.reshape(h, B * (B - 1))[:, B - 1 :: B] -= ev.q[:, None]
        A_hat = (PX.reshape(h * D, n) @ ev.G).reshape(h, D, d_y)
        direct[:, 1 : 1 + D, D:] += A_hat
        direct[:, 1 + D :, :D] += A_hat.transpose(0, 2, 1)
        J.reshape(-1)[self._direct_index] += direct.reshape(-1)
        return J, u, d_log_N.reshape(-1)


def row_norms(rows: np.ndarray) -> np.ndarray:
    """Return the Euclidean norm of each row of ``rows`` (h, k).

    A row whose squared norm is below ``MIN_NEURON_NORM2`` is divided by its
    largest entry first, so that no square underflows. The other rows get
    ``np.linalg.norm`` itself, so that their polar states, and every run from
    them, keep the last bit they had before this guard.
    """
    norms = np.linalg.norm(rows, axis=1)
    low = np.flatnonzero(norms < math.sqrt(MIN_NEURON_NORM2))
    if low.size:
        largest = np.max(np.abs(rows[low]), axis=1)
        divisor = np.where(largest > 0, largest, 1.0)
        norms[low] = largest * np.linalg.norm(rows[low] / divisor[:, None], axis=1)
    return norms


def neuron_norms(params: Parameters) -> np.ndarray:
    """Return ``||(w_j, v_j)||`` of each neuron, shape (h,), without underflow."""
    return row_norms(np.concatenate([params.W, params.V]).T)


def check_neuron_norms(norms: np.ndarray, name: str, part: str = "") -> None:
    """Raise an InvalidArgument for the first neuron of ``name`` that the polar
    coordinates cannot take: one of norm 0, or one whose squared norm is below
    ``MIN_NEURON_NORM2``. ``part`` names the part of the weights that ``norms``
    measures, when it is not all of them."""
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        j = int(zero[0])
        raise InvalidArgument(
            f"neuron {j} of {name} is zero (w_j = 0 and v_j = 0{part}), but the "
            "adaptive method's polar coordinates need every neuron non-zero. A "
            f"zero neuron gets no gradient and never moves, so remove it from "
            f"{name}, or use method='euler'"
        )

    j = int(np.argmin(norms))
    floor = math.sqrt(MIN_NEURON_NORM2)
    if norms[j] < floor:
        factor = round_up(floor / norms[j])
        raise InvalidArgument(
            f"neuron {j} of {name} has norm ||(w_j, v_j)|| = {norms[j]:.3g}{part}, "
            "so the squares of its weights underflow float64, whose smallest "
            f"normal number is {MIN_NEURON_NORM2:.3g}, and the adaptive method's "
            "polar coordinates need those squares. Multiply the weights by at least "
            f"{factor:.3g} = sqrt({MIN_NEURON_NORM2:.3g}) / {norms[j]:.3g}, the "
            f"factor that lifts this squared norm to {MIN_NEURON_NORM2:.3g} (for "
            "balanced_init(shapes, eps), an eps that many times larger; for "
            "gaussian_init, a variance that factor squared larger)"
        )


def _log_row_norms(rows: np.ndarray) -> np.ndarray:
    """Return ``log ||r||`` of each row along the last axis of ``rows``."""
    return 0.5 * np.log(np.einsum("...k,...k->...", rows, rows))


def _output_basis(num_outputs: int, binary: bool) -> np.ndarray:
    """Orthonormal basis of the output directions the loss depends on."""
    if binary or num_outputs == 1:
        return np.eye(num_outputs)
    K = num_outputs
    centred = np.eye(K) - np.full((K, K), 1.0 / K)
    basis, _ = np.linalg.qr(centred[:, : K - 1])
    return basis
