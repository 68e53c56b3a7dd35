"""The theorem's predictions for the direction limit ``theta_bar``.

| symbol | code | shape | meaning |
|---|---|---|---|
| ``gamma_k`` | ``gammas[k]`` | scalar | one-class max margin of class ``k`` |
| ``u_k`` | ``u[k]`` | ``(D,)`` | its maximiser, a unit vector |
| ``s_k`` | ``s[k]`` | scalar | ``sqrt((1/gamma_k) / (2 sum_l 1/gamma_l))`` |
| ``a_i`` | ``feature_lengths[i]`` | scalar | limit feature length ``<s_k u_k, x_i>`` |
| ``E~`` | ``pseudo_labels`` | ``(K, K)`` | ``sqrt(K/(K-1)) (I - 11^T/K)`` |
| ``c_K`` | ``rate_constant`` | scalar | 1 (scalar output) or ``sqrt((K-1)/K)`` |

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
"""

from __future__ import annotations

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
