"""The theorem's predictions for the direction limit ``theta_bar``.

| symbol | code | shape | meaning |
|---|---|---|---|
| ``gamma_k`` | ``gammas[k]`` | scalar | one-class max margin of class ``k`` |
| ``u_k`` | ``u[k]`` | ``(D,)`` | its maximiser, a unit vector |
| ``s_k`` | ``s[k]`` | scalar | ``sqrt((1/gamma_k) / (2 sum_l 1/gamma_l))`` |
| ``a_i`` | ``feature_lengths[i]`` | scalar | limit feature length ``<s_k u_k, x_i>`` |
| ``E~`` | ``pseudo_labels`` | ``(K, K)`` | ``sqrt(K/(K-1)) (I - 11^T/K)`` |
| ``c_K`` | ``rate_constant`` | scalar | 1 (scalar output) or ``sqrt((K-1)/K)`` |
| ``rho_k`` | ``resolution.rho`` | scalar | margin scale ``s_k^2 R`` of class ``k`` |
| ``alpha_ij`` | ``alpha`` | scalar | angle between ``x_i`` and ``x_j`` |

Claims (Min, Zhu, Vidal, NeurIPS 2025, Theorem 1): features of class ``k``
converge to ``a_i phibar_k`` (C7) with orthonormal ``phibar_k`` (C8),
``V_bar = s_+ phibar_+^T - s_- phibar_-^T`` or ``E~ [s_k phibar_k]^T`` (C9),
input blocks ``s_k u_k g_k^T`` (C10), and every class has the normalised
margin ``1 / (2 sum_k 1/gamma_k)`` (times ``sqrt(K/(K-1))`` for K outputs, C11).

The late-phase rates of C13 are our derivation, from the linear max-margin
asymptotics applied class by class (``gamma_k ||beta_k|| ~ log t`` for the
block product ``beta_k``): ``||theta||^2 / log t -> 2 c_K sum_k 1/gamma_k``
and ``L t log t -> (c_K / 2) sum_k 1/gamma_k``; measured on a binary and a
3-class example to 1e-9 and 1e-4 relative at ``||theta||^2 = 1e12``.

How far a finite run can see ``u_k`` (our derivation, :func:`direction_resolution`).
Once separated, group ``k`` is a linear model on class ``k`` with outputs
``rho_k <omega, x_i>``, ``rho_k = ||W_k||_F^2 ~ s_k^2 R``, and its direction
``omega`` sits where the exponential loss of the class is stationary on the
sphere. Two near-active samples at a small angle ``alpha`` pull ``omega`` to
the multiplicity-weighted mean of their directions until
``r = rho_k gamma_k alpha^2`` is large; only then does ``omega`` move to the
max-margin direction, where the offset falls like ``log(M) / r`` of ``alpha``
(``M`` the ratio of the multiplicities). Solving the two-sample stationarity
``(y + 1/2) + M e^{-r y} (y - 1/2) = 0`` for the offset ``y alpha`` gives
``y r / log M`` = 0.71, 0.83, 0.93 at ``r`` = 10, 20, 50 for every ``M``
from 2 to 100, so below ``r = RESOLVED_R = 40`` the offset is more than 10 %
off its asymptotic law and a rate fitted there does not extrapolate. A pair
that float64 cannot separate at all (``alpha^2 <= c eps``) leaves ``u_k``
anywhere on its arc, and a separable pair pins the direction across it only to
``c eps / alpha``, the margin roundoff over the pair's distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ncflow.data import Dataset
from ncflow.geometry import class_max_margins, predicted_margin, pseudo_labels


@dataclass(frozen=True)
class Limit:
    """Predicted limit quantities of one dataset.

    Attributes
    ----------
    gammas : ndarray, shape (K,)
    u : ndarray, shape (K, D)
    s : ndarray, shape (K,)
    margin : float
        Predicted normalised margin of every class (C11).
    multiclass : bool
        True for K outputs (cross-entropy), False for a scalar output.
    class_signs : ndarray, shape (K,) or None
        Binary: the label sign ``y`` of each class index.
    pseudo_labels : ndarray, shape (K, K)
    """

    gammas: np.ndarray
    u: np.ndarray
    s: np.ndarray
    margin: float
    multiclass: bool
    class_signs: np.ndarray | None
    pseudo_labels: np.ndarray

    @property
    def K(self) -> int:
        return self.gammas.shape[0]

    @property
    def rate_constant(self) -> float:
        """``c_K`` of the C13 rates."""
        return float(np.sqrt((self.K - 1) / self.K)) if self.multiclass else 1.0

    def feature_lengths(self, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``a_i = <s_k u_k, x_i>`` with ``k`` the class of sample ``i``, shape (n,)."""
        return self.s[labels] * np.einsum("id,id->i", X, self.u[labels])

    def norm_rate(self) -> float:
        """Predicted limit of ``||theta||^2 / log t`` (C13)."""
        return 2 * self.rate_constant * float(np.sum(1 / self.gammas))

    def loss_rate(self) -> float:
        """Predicted limit of ``L t log t`` (C13)."""
        return 0.5 * self.rate_constant * float(np.sum(1 / self.gammas))


def predict(dataset: Dataset, *, multiclass: bool, faults: tuple = ()) -> Limit:
    """Compute the predictions for ``dataset``.

    ``faults`` may contain the planted faults ``"wrong_s"`` (``s_k`` with
    ``gamma_k`` in place of ``1/gamma_k``) and ``"wrong_pseudo_labels"`` (``E~``
    without its factor ``sqrt(K/(K-1))``), for the power tests.
    """
    margins = class_max_margins(dataset)
    gammas = np.array([m.gamma for m in margins])
    u = np.stack([m.u for m in margins])
    if "wrong_s" in faults:
        s = np.sqrt(gammas / (2 * np.sum(gammas)))
    else:
        s = np.sqrt((1 / gammas) / (2 * np.sum(1 / gammas)))
    K = dataset.K
    E = pseudo_labels(K)
    if "wrong_pseudo_labels" in faults:
        E = E / np.sqrt(K / (K - 1))
    class_signs = None
    if not multiclass:
        class_signs = np.array(
            [dataset.signs[dataset.labels == k][0] for k in range(K)]
        )
    margin = predicted_margin(gammas, multiclass=multiclass)
    return Limit(gammas, u, s, float(margin), multiclass, class_signs, E)


# Below this r = rho_k gamma_k alpha^2 a near-active pair is not yet resolved
# (the offset is more than 10 % off its log(M)/r law; see the module).
RESOLVED_R = 40.0
EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class DirectionResolution:
    """Resolution of ``u_k`` of one class by a run at ``||theta||^2 = R`` in float64.

    Attributes
    ----------
    k : int
        Class index.
    rho : float
        Margin scale ``rho_k = s_k^2 R`` (the smaller of the binary and the
        multi-class scale, which has a further factor ``K/(K-1)``).
    near_active : ndarray of int
        Samples of class ``k`` with ``rho_k (<x_i, u_k> - gamma_k) < RESOLVED_R``.
        The loss of every other sample is below ``e^-40`` times the support's,
        which float64 sums do not resolve.
    unresolved : tuple (i, j, alpha, r) or None
        The near-active pair with the smallest ``r = rho_k gamma_k alpha^2``
        below ``RESOLVED_R``, among pairs that float64 can separate.
    conditioning : float
        Bound on ``||u_k - u_k*||`` and on the float64 limit of the group's
        direction: the largest ``min(alpha, c eps / alpha)`` over near-active
        pairs, with ``c = 3 D + n_k`` (two margins of ``D`` terms in the flow,
        the ``(n_k + D) eps`` roundoff scale of the max-margin solver).
    plateau : float
        The largest angle ``alpha`` over the unresolved pairs (0 if none). The
        group rests at a weighted mean of such a pair's directions, and
        ``u_k`` lies on the same arc, so the group's direction is within
        ``plateau`` of ``u_k`` while the pair is unresolved.
    """

    k: int
    rho: float
    near_active: np.ndarray
    unresolved: tuple | None
    conditioning: float
    plateau: float = 0.0


def direction_resolution(
    X: np.ndarray, labels: np.ndarray, limit: Limit, R: float
) -> list[DirectionResolution]:
    """Find the near-active sample pairs that a run at ``R`` has not resolved.

    Parameters
    ----------
    X : ndarray, shape (n, D)
    labels : ndarray of int, shape (n,)
    limit : Limit
    R : float
        ``||theta||_F^2`` at which the run's rate is read (the reference point).

    Returns
    -------
    list of DirectionResolution, one per class
    """
    D = X.shape[1]
    out = []
    for k in range(limit.K):
        members = np.flatnonzero(labels == k)
        rho = float(limit.s[k] ** 2 * R)
        gap = X[members] @ limit.u[k] - limit.gammas[k]
        near = members[rho * gap < RESOLVED_R]
        c = 3 * D + members.size
        floor = math.sqrt(c * EPS)
        directions = X[near] / np.linalg.norm(X[near], axis=1, keepdims=True)

        # Angles from chords, accurate for small angles, over pairs a < b.
        first, second = np.triu_indices(near.size, k=1)
        chords = np.linalg.norm(directions[first] - directions[second], axis=1)
        alphas = 2.0 * np.arcsin(np.minimum(chords / 2.0, 1.0))
        distinct = alphas > 0.0
        first, second, alphas = first[distinct], second[distinct], alphas[distinct]
        conditioning = 0.0
        if alphas.size:
            conditioning = float(np.max(np.minimum(alphas, c * EPS / alphas)))

        r = rho * limit.gammas[k] * alphas**2
        open_pairs = np.flatnonzero((alphas > floor) & (r < RESOLVED_R))
        unresolved = None
        plateau = 0.0
        if open_pairs.size:
            worst = open_pairs[np.argmin(r[open_pairs])]
            unresolved = (
                int(near[first[worst]]),
                int(near[second[worst]]),
                float(alphas[worst]),
                float(r[worst]),
            )
            plateau = float(np.max(alphas[open_pairs]))
        out.append(DirectionResolution(k, rho, near, unresolved, conditioning, plateau))
    return out
