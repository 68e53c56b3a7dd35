"""Neural Collapse metrics of the features of a shallow ReLU network.

Two families are offered. The paper's metrics follow H. Min, Z. Zhu, R. Vidal,
"Neural Collapse under Gradient Flow on Shallow ReLU Networks for Orthogonally
Separable Data", NeurIPS 2025: NC2 targets an orthonormal frame of uncentred means
(ReLU features are non-negative) and NC3 compares the head restricted to the class
means with the pseudo-label matrix. The standard metrics follow V. Papyan, X. Y. Han,
D. L. Donoho, "Prevalence of neural collapse during the terminal phase of deep
learning training", PNAS 2020.

| symbol | code | shape | meaning |
|---|---|---|---|
| ``phi_i`` | ``features[i]`` | ``(h,)`` | raw post-ReLU feature ``relu(W^T x_i)`` |
| ``I_k`` | ``labels == k`` | | samples of class ``k``, ``k = 0..K-1`` |
| ``K`` | ``num_classes`` | | number of classes, at least 2 |
| ``phi_k`` | ``means[k]`` | ``(h,)`` | class mean over ``I_k`` (``mu_k``) |
| ``phi_G`` | ``global_mean`` | ``(h,)`` | unweighted mean of class means (``mu_G``) |
| ``Phi`` | ``means.T`` | ``(h, K)`` | class means as columns |
| ``Mc`` | ``centred`` | ``(h, K)`` | centred means ``phi_k - phi_G`` as columns |
| ``V`` | ``V`` | ``(d_y, h)`` | output weights; ``d_y = 1`` (binary) or ``K`` |
| ``M`` | ``head_on_means`` | ``(d_y, K)`` | ``V Phi (Phi^T Phi)^+`` |
| ``E~`` | ``pseudo_labels(K)`` | ``(K, K)`` | ``sqrt(K/(K-1)) (I_K - 11^T/K)`` |
| ``Sigma_W`` | | ``(h, h)`` | within-class covariance |
| ``Sigma_B`` | | ``(h, h)`` | between-class covariance, rank at most ``K - 1`` |
| ``a_i`` | ``a`` | ``(n,)`` | feature length ``<s_k u_k, x_i>`` at the limit |
| ``m_k`` | ``m`` | ``(K,)`` | class mean of ``a_i`` |
| ``s_k`` | ``s`` | ``(K,)`` | class scale of the limit head |
| ``phibar_k`` | | ``(h,)`` | unit direction of class ``k``'s features at the limit |
| ``W`` | ``W`` | ``(D, h)`` | input weights |
| ``X`` | ``X`` | ``(n, D)`` | inputs, one sample per row |

Binary problems: class 0 is the paper's class ``+`` (``y = +1``) and class 1 the
class ``-`` (``y = -1``), so a scalar head ``V`` of shape ``(1, h)`` predicts class 0
where ``f > 0``. Labels in ``{+1, -1}`` map to ``(1 - y) // 2``, as
``Dataset.from_arrays`` maps them without a ``class_order``.

Every metric returns a finite float or raises: ``InvalidArgument`` for malformed
input and ``MetricUndefined`` where the value does not exist for valid input (all
class means coincide, a class mean is zero, ...). Norms are Frobenius norms unless
stated otherwise. All arithmetic is float64.
"""

from __future__ import annotations

import numpy as np

from ncflow._numeric import power_of_two_scale
from ncflow._validation import InvalidArgument, check_array, check_choice, check_int
from ncflow.geometry import pseudo_labels

# Unit roundoff of float64.
_UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2

NC3_TARGETS = ("consistent", "printed")


class MetricUndefined(InvalidArgument):
    """A metric that has no value for valid input; the message gives the reason."""


# --------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------


def _check_features(features: object) -> np.ndarray:
    features = check_array("features", features, ndim=2)
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise InvalidArgument(
            f"features is invalid: it must have at least one row and one column, "
            f"got shape {features.shape}"
        )
    return features


def _check_labels(
    labels: object, num_samples: int, num_classes: int | None
) -> tuple[np.ndarray, int]:
    """Return the labels as int64 and the number of classes ``K``.

    Every class ``0..K-1`` must have at least one sample, so that an empty class
    (labels ``{0, 2}``) is reported here and not as a division by zero later.
    """
    labels = np.asarray(labels)
    if num_samples == 0:
        raise InvalidArgument("labels is invalid: it must contain at least one sample")
    if labels.shape != (num_samples,):
        raise InvalidArgument(
            f"labels is invalid: it must have shape ({num_samples},) to match the "
            f"{num_samples} samples, got shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArgument(
            f"labels is invalid: it must hold integers 0..K-1, got dtype "
            f"{labels.dtype}; map the class names to 0..K-1 first"
        )
    labels = labels.astype(np.int64)

    if num_classes is None:
        num_classes = max(int(labels.max()) + 1, 1)
    else:
        num_classes = check_int("num_classes", num_classes, low=2)

    out_of_range = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if out_of_range.size:
        index = int(out_of_range[0])
        raise InvalidArgument(
            f"labels[{index}]={int(labels[index])} is invalid: it must be in "
            f"0..{num_classes - 1} (K={num_classes}); map the class names to 0..K-1 "
            f"first, for example y in {{+1, -1}} to (1 - y) // 2"
        )
    if num_classes < 2:
        raise InvalidArgument(
            "labels is invalid: it must contain at least 2 classes, got only class 0"
        )

    counts = np.bincount(labels, minlength=num_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise InvalidArgument(
            f"labels is invalid: class {int(empty[0])} of 0..{num_classes - 1} has no "
            f"samples; relabel the classes as 0..K-1 without gaps, or pass the right "
            f"num_classes"
        )
    return labels, num_classes


def _check_head(V: object, width: int, num_classes: int) -> np.ndarray:
    """Return ``V`` of shape ``(K, h)``, or ``(1, h)`` for a binary problem."""
    V = check_array("V", V, ndim=2)
    allowed_rows = (1, num_classes) if num_classes == 2 else (num_classes,)
    if V.shape[1] != width or V.shape[0] not in allowed_rows:
        expected = " or ".join(f"({rows}, {width})" for rows in allowed_rows)
        raise InvalidArgument(
            f"V is invalid: it must have shape {expected} for K={num_classes} classes "
            f"and width h={width}, got {V.shape}"
        )
    # The metrics that take V depend on its direction only.
    return power_of_two_scale(V)


def _check_inputs(
    features: object, labels: object, num_classes: int | None, rescale: bool = True
) -> tuple[np.ndarray, np.ndarray, int]:
    """Check the inputs; with ``rescale``, for the metrics that do not depend on
    the scale of the features, return them scaled by ``power_of_two_scale``."""
    features = _check_features(features)
    labels, num_classes = _check_labels(labels, features.shape[0], num_classes)
    if rescale:
        features = power_of_two_scale(features)
    return features, labels, num_classes


# --------------------------------------------------------------------------------
# Class means and their roundoff
# --------------------------------------------------------------------------------


def _class_means(features: np.ndarray, labels: np.ndarray, num_classes: int):
    return np.stack([features[labels == k].mean(axis=0) for k in range(num_classes)])


def _mean_error_bound(features: np.ndarray, labels: np.ndarray, num_classes: int):
    """Bound on the Euclidean float64 error of each computed class mean.

    Summing ``n_k`` vectors (recursive summation) and dividing by ``n_k`` has a
    componentwise error of at most ``(n_k + 1) u mean_i |phi_i|``, with ``u`` the
    unit roundoff. In norm that is at most ``(n_k + 1) u R_k`` with
    ``R_k = max_{i in I_k} ||phi_i||``, and the factor 2 covers the second-order
    terms. Returns shape ``(K,)``.
    """
    counts = np.bincount(labels, minlength=num_classes)
    norms = np.linalg.norm(features, axis=1)
    largest = np.array([norms[labels == k].max() for k in range(num_classes)])
    return 2.0 * (counts + 1) * _UNIT_ROUNDOFF * largest


def _centred_mean_error(
    features: np.ndarray, labels: np.ndarray, num_classes: int, means: np.ndarray
) -> float:
    """Bound ``delta`` on the Euclidean float64 error of each centred mean.

    ``phi_G`` is the mean of ``K`` computed means, so its error is at most
    ``(K + 1) u max_k ||phi_k||`` plus the largest error ``e_k`` of a mean, and the
    error of ``phi_k - phi_G`` is at most
    ``delta = 2 max_k e_k + (K + 1) u max_k ||phi_k||``.
    """
    mean_errors = _mean_error_bound(features, labels, num_classes)
    largest_mean = np.linalg.norm(means, axis=1).max()
    return 2.0 * mean_errors.max() + (num_classes + 1) * _UNIT_ROUNDOFF * largest_mean


def _centred_means(features: np.ndarray, labels: np.ndarray, num_classes: int):
    """Return the class means ``(K, h)`` and ``Mc`` ``(h, K)``, or raise if ``Mc = 0``.

    If the exact centred means all vanish, the computed ``||Mc||_F`` is at most
    ``sqrt(K) delta`` (``delta`` from ``_centred_mean_error``), so a value at or
    below that is indistinguishable from coincident means.
    """
    means = _class_means(features, labels, num_classes)
    global_mean = means.mean(axis=0)
    centred = (means - global_mean).T

    delta = _centred_mean_error(features, labels, num_classes, means)
    spread = np.linalg.norm(centred)
    if spread <= np.sqrt(num_classes) * delta:
        raise MetricUndefined(
            f"all {num_classes} class means coincide: the centred means have "
            f"Frobenius norm sqrt(sum_k ||phi_k - phi_G||^2) = {spread:.3g}, at or "
            f"below the float64 roundoff level {np.sqrt(num_classes) * delta:.3g} of "
            f"computing them, so the between-class spread is zero"
        )
    return means, centred


def class_means(
    features: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> np.ndarray:
    """Compute the class means ``phi_k = (1/|I_k|) sum_{i in I_k} phi_i``.

    Parameters
    ----------
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    ndarray, shape (K, h)
        Row ``k`` is ``phi_k``.

    Raises
    ------
    InvalidArgument
        If a label is outside ``0..K-1`` or a class has no samples.
    """
    features, labels, num_classes = _check_inputs(
        features, labels, num_classes, rescale=False
    )
    return _class_means(features, labels, num_classes)


# --------------------------------------------------------------------------------
# The paper's metrics
# --------------------------------------------------------------------------------


def _nc1_paper(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    means, centred = _centred_means(features, labels, num_classes)

    residuals = features - means[labels]
    squared = np.einsum("ij,ij->i", residuals, residuals)
    counts = np.bincount(labels, minlength=num_classes)
    within = np.bincount(labels, weights=squared, minlength=num_classes) / counts

    return float(within.sum() / np.sum(centred**2))


def nc1_paper(
    features: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> float:
    """Compute the paper's NC1, within-class spread over between-class spread.

    ``NC1 = [sum_k (1/|I_k|) sum_{i in I_k} ||phi_i - phi_k||^2]
    / [sum_k ||phi_k - phi_G||^2]`` with ``phi_k`` the class means of ``features``
    and ``phi_G = (1/K) sum_k phi_k`` (Min, Zhu, Vidal, NeurIPS 2025). A class with
    one sample contributes 0 to the numerator.

    Parameters
    ----------
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    float
        NC1, at least 0; 0 when every class's features equal its mean.

    Raises
    ------
    MetricUndefined
        If all class means coincide up to the float64 roundoff of computing them, so
        that the denominator is zero.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    return _nc1_paper(features, labels, num_classes)


def _nc2_paper(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    means = _class_means(features, labels, num_classes)
    lengths = np.linalg.norm(means, axis=1)

    # A mean at or below its own roundoff bound has no direction.
    mean_errors = _mean_error_bound(features, labels, num_classes)
    zero = np.flatnonzero(lengths <= mean_errors)
    if zero.size:
        k = int(zero[0])
        raise MetricUndefined(
            f"the mean of class {k} is zero (norm {lengths[k]:.3g}, float64 roundoff "
            f"level {mean_errors[k]:.3g}), so it has no unit vector for the NC2 Gram "
            f"matrix"
        )

    directions = means / lengths[:, None]
    gram = directions @ directions.T
    target = np.eye(num_classes) / np.sqrt(num_classes)
    return float(np.linalg.norm(gram / np.linalg.norm(gram) - target))


def nc2_paper(
    features: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> float:
    """Compute the paper's NC2, the distance of the means from an orthonormal frame.

    ``NC2 = || G/||G||_F - I_K/sqrt(K) ||_F`` with ``G_kl = <phi_k, phi_l> /
    (||phi_k|| ||phi_l||)`` the Gram matrix of the unit vectors along the uncentred
    class means of ``features`` (Min, Zhu, Vidal, NeurIPS 2025). The target is an
    orthonormal frame rather than a simplex ETF because ReLU features are
    non-negative. NC2 is 0 exactly when the class means are pairwise orthogonal,
    whatever their lengths.

    Parameters
    ----------
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    float
        NC2, in ``[0, 2]``.

    Raises
    ------
    MetricUndefined
        If a class mean is zero up to the float64 roundoff of computing it.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    return _nc2_paper(features, labels, num_classes)


def _head_on_means(V: np.ndarray, means: np.ndarray, mean_error: float) -> np.ndarray:
    """Return ``M = V Phi (Phi^T Phi)^+``, shape ``(d_y, K)``, or raise if it is 0.

    ``Phi (Phi^T Phi)^+ = (Phi^+)^T`` for every ``Phi``, so ``M^T`` is the
    minimum-norm least-squares solution of ``Phi M^T = V^T``. It is computed from the
    thin SVD ``Phi = U S W^T`` as ``V U_r S_r^-1 W_r^T``, keeping the singular values
    above ``max(h, K) u s_1``, the cut-off below which a singular value is SVD
    roundoff (the same cut-off as ``numpy.linalg.lstsq``). ``mean_error`` bounds the
    float64 error of each class mean.
    """
    Phi = means.T
    size = max(Phi.shape)
    U, singular, Wt = np.linalg.svd(Phi, full_matrices=False)
    # ||Phi||_2 <= ||Phi||_F, so exact zero means give s_1 <= sqrt(K) mean_error.
    if singular[0] <= np.sqrt(Phi.shape[1]) * mean_error:
        raise MetricUndefined(
            f"every class mean is zero: the largest singular value of Phi is "
            f"{singular[0]:.3g}, at or below the float64 roundoff level "
            f"{np.sqrt(Phi.shape[1]) * mean_error:.3g}"
        )
    keep = singular > size * _UNIT_ROUNDOFF * singular[0]
    kept = singular[keep]
    head_on_means = ((V @ U[:, keep]) / kept) @ Wt[keep]

    # The computed U_r is off the exact range of Phi by an angle of at most about
    # size * u * s_1 / s_r (singular-subspace perturbation), so a V orthogonal to
    # that range still gives ||M|| up to ||V|| * angle / s_r; the factor 10 covers
    # the constant of the SVD's backward error.
    roundoff = (
        10.0 * size * _UNIT_ROUNDOFF * np.linalg.norm(V) * kept[0] / kept[-1] ** 2
    )
    norm = np.linalg.norm(head_on_means)
    if norm <= roundoff:
        raise MetricUndefined(
            f"V is orthogonal to every class mean: ||V Phi (Phi^T Phi)^+||_F = "
            f"{norm:.3g}, at or below the float64 roundoff level {roundoff:.3g}"
        )
    return head_on_means


def _nc3_target(num_classes: int, rows: int, target: str) -> np.ndarray:
    if rows == 1:
        return np.array([[1.0, -1.0]]) / np.sqrt(2.0)
    scale = num_classes if target == "consistent" else num_classes - 1
    return pseudo_labels(num_classes) / np.sqrt(scale)


def _nc3_paper(
    V: np.ndarray, features: np.ndarray, labels: np.ndarray, num_classes: int, target
) -> float:
    means = _class_means(features, labels, num_classes)
    mean_error = _mean_error_bound(features, labels, num_classes).max()
    head_on_means = _head_on_means(V, means, mean_error)
    goal = _nc3_target(num_classes, V.shape[0], target)
    return float(np.linalg.norm(head_on_means / np.linalg.norm(head_on_means) - goal))


def nc3_paper(
    V: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int | None = None,
    *,
    target: str = "consistent",
) -> float:
    """Compute the paper's NC3, the head restricted to the class means against ``E~``.

    ``NC3 = || M/||M||_F - T ||_F`` with ``M = V Phi (Phi^T Phi)^{-1}`` and
    ``Phi = [phi_1 ... phi_K]`` the class means of ``features`` as columns (Min, Zhu,
    Vidal, NeurIPS 2025). ``(Phi^T Phi)^{-1}`` is replaced by the Moore-Penrose
    pseudo-inverse, so ``M^T`` is the minimum-norm least-squares solution of
    ``Phi M^T = V^T``. It is computed from the thin SVD of ``Phi`` with singular
    values below ``max(h, K) u s_1`` treated as 0, and is defined when class means
    coincide or are linearly dependent. The part of ``V`` orthogonal to the class
    means does not enter ``M``.

    Targets for ``V`` of shape ``(K, h)``:

    - ``"consistent"``: ``T = E~/sqrt(K)``, of unit Frobenius norm, so NC3 is 0
      exactly when ``M`` is a positive multiple of ``E~``;
    - ``"printed"``: ``T = E~/sqrt(K-1)``, the target as printed in the paper. Its
      Frobenius norm is ``sqrt(K/(K-1))``, so this variant is never below
      ``sqrt(K/(K-1)) - 1`` (0.2247 for ``K = 3``).

    For a binary scalar head, ``V`` of shape ``(1, h)``, ``M`` has shape ``(1, 2)``
    and ``T = [1, -1]/sqrt(2)`` for both target names, because class 0 is the
    paper's class ``+``.

    Parameters
    ----------
    V : ndarray, shape (K, h) or (1, h)
        Output weights; shape ``(1, h)`` only when ``K = 2``.
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.
    target : {"consistent", "printed"}
        Which target ``T`` to compare with.

    Returns
    -------
    float
        NC3, in ``[0, 2]``; at most ``1 + sqrt(K/(K-1))`` for the printed target.

    Raises
    ------
    MetricUndefined
        If ``M`` is zero up to float64 roundoff: every class mean is zero, or ``V`` is
        orthogonal to all of them.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    V = _check_head(V, features.shape[1], num_classes)
    target = check_choice("target", target, NC3_TARGETS)
    return _nc3_paper(V, features, labels, num_classes, target)


# --------------------------------------------------------------------------------
# Standard metrics (Papyan, Han, Donoho, PNAS 2020)
# --------------------------------------------------------------------------------


def _nc1_standard(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    means, centred = _centred_means(features, labels, num_classes)
    num_samples, width = features.shape

    # Sigma_B = (1/K) Mc Mc^T, so its eigenvectors are the left singular vectors of
    # Mc and its eigenvalues are s_j^2 / K; no h x h matrix is formed.
    U, singular, _ = np.linalg.svd(centred, full_matrices=False)
    rank = num_classes - 1
    if singular.size < rank:
        raise MetricUndefined(
            f"Sigma_B has rank at most h={width}, below K-1={rank}, so its "
            f"pseudo-inverse cannot be truncated to rank K-1"
        )

    # An exact zero singular value of Mc is computed as at most the error of Mc plus
    # the SVD's backward error max(h, K) u s_1. The error of Mc is sqrt(K) times the
    # per-mean bound of _centred_mean_error, and the factor 2 covers both constants.
    delta = _centred_mean_error(features, labels, num_classes, means)
    roundoff = 2.0 * (
        np.sqrt(num_classes) * delta
        + max(width, num_classes) * _UNIT_ROUNDOFF * singular[0]
    )
    if singular[rank - 1] <= roundoff:
        raise MetricUndefined(
            f"Sigma_B has rank below K-1={rank}: its {rank}-th singular value of the "
            f"centred means is {singular[rank - 1]:.3g}, at or below the float64 "
            f"roundoff level {roundoff:.3g}"
        )
    eigenvalues = singular[:rank] ** 2 / num_classes

    # Tr(Sigma_W Sigma_B^+) = sum_j <u_j, Sigma_W u_j> / lambda_j over the kept pairs.
    projected = (features - means[labels]) @ U[:, :rank]
    within = np.sum(projected**2, axis=0) / num_samples
    return float(np.sum(within / eigenvalues) / num_classes)


def nc1_standard(
    features: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> float:
    """Compute the standard NC1, ``Tr(Sigma_W Sigma_B^+) / K``.

    ``Sigma_W = (1/n) sum_i (phi_i - phi_{y_i})(phi_i - phi_{y_i})^T`` and
    ``Sigma_B = (1/K) sum_k (phi_k - phi_G)(phi_k - phi_G)^T`` with ``phi_k`` the class
    means of ``features`` and ``phi_G`` the unweighted mean of the class means
    (Papyan, Han, Donoho, PNAS 2020). Papyan et al. centre on the mean of all
    samples instead, which agrees for balanced classes.

    ``Sigma_B`` has rank at most ``K - 1``. Its pseudo-inverse is truncated
    explicitly to the ``K - 1`` largest eigenvalues, in float64, from the thin SVD of
    the ``(h, K)`` centred means. A default-cut-off pseudo-inverse would instead
    invert roundoff eigenvalues whenever ``Sigma_B`` was computed in float32. No
    ``h x h`` inverse is formed.

    Parameters
    ----------
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    float
        NC1, at least 0.

    Raises
    ------
    MetricUndefined
        If the ``(K-1)``-th eigenvalue of ``Sigma_B`` is zero up to float64 roundoff
        (class means affinely dependent or coincident), or ``h < K - 1``.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    return _nc1_standard(features, labels, num_classes)


def _nc2_standard(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    _, centred = _centred_means(features, labels, num_classes)
    gram = centred.T @ centred
    centring = np.eye(num_classes) - 1.0 / num_classes
    target = centring / np.sqrt(num_classes - 1)
    return float(np.linalg.norm(gram / np.linalg.norm(gram) - target))


def nc2_standard(
    features: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> float:
    """Compute the standard NC2, the distance of the centred means from a simplex ETF.

    ``NC2 = || Mc^T Mc/||Mc^T Mc||_F - (I_K - 11^T/K)/||I_K - 11^T/K||_F ||_F`` with
    ``Mc`` the ``(h, K)`` matrix of centred class means ``phi_k - phi_G`` of
    ``features`` and ``||I_K - 11^T/K||_F = sqrt(K-1)`` (Papyan, Han, Donoho, PNAS
    2020). NC2 is 0 exactly when the centred means have equal norms and pairwise
    cosines ``-1/(K-1)``.

    For ``K = 2`` this is 0 for any two distinct means, because ``Mc = [c, -c]``
    always, so a binary NC2 test of this kind proves nothing. Equal-norm orthogonal
    means also give 0, for every ``K``: their centred means form a simplex ETF.

    Parameters
    ----------
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    float
        NC2, in ``[0, 2]``.

    Raises
    ------
    MetricUndefined
        If all class means coincide up to float64 roundoff.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    return _nc2_standard(features, labels, num_classes)


def _nc3_standard(
    V: np.ndarray, features: np.ndarray, labels: np.ndarray, num_classes: int
) -> float:
    norm_V = np.linalg.norm(V)
    if norm_V == 0.0:
        raise MetricUndefined("V is zero, so it has no direction to compare")
    _, centred = _centred_means(features, labels, num_classes)

    if V.shape[0] == 1:
        # Scalar head: compare V^T with mu_0 - mu_1 = Mc[:, 0] - Mc[:, 1].
        centred = (centred[:, 0] - centred[:, 1])[:, None]
    return float(np.linalg.norm(V.T / norm_V - centred / np.linalg.norm(centred)))


def nc3_standard(
    V: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int | None = None,
) -> float:
    """Compute the standard NC3, the self-duality of the head and the centred means.

    For ``V`` of shape ``(K, h)``, ``NC3 = || V^T/||V||_F - Mc/||Mc||_F ||_F`` with
    ``Mc`` the ``(h, K)`` centred class means ``phi_k - phi_G`` of ``features``
    (Papyan, Han, Donoho, PNAS 2020). For a binary scalar head, ``V`` of shape
    ``(1, h)``, the analogue is ``|| V^T/||V|| - (phi_0 - phi_1)/||phi_0 - phi_1|| ||``:
    class 0 is the class ``+``, so the head of a self-dual binary network points from
    the class-1 mean to the class-0 mean.

    Parameters
    ----------
    V : ndarray, shape (K, h) or (1, h)
        Output weights; shape ``(1, h)`` only when ``K = 2``.
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    float
        NC3, in ``[0, 2]``.

    Raises
    ------
    MetricUndefined
        If ``V`` is zero or all class means coincide up to float64 roundoff.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    V = _check_head(V, features.shape[1], num_classes)
    return _nc3_standard(V, features, labels, num_classes)


def _predictions(
    V: np.ndarray, features: np.ndarray, means: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the network's and the nearest-class-mean rule's classes, shape (n,)."""
    outputs = features @ V.T
    if V.shape[0] == 1:
        network = np.where(outputs[:, 0] >= 0.0, 0, 1)
    else:
        network = np.argmax(outputs, axis=1)

    distances = np.stack(
        [np.sum((features - mean) ** 2, axis=1) for mean in means], axis=1
    )
    nearest = np.argmin(distances, axis=1)
    return network, nearest


def _nc4_ncc_agreement(
    V: np.ndarray, features: np.ndarray, labels: np.ndarray, num_classes: int
) -> float:
    means = _class_means(features, labels, num_classes)
    network, nearest = _predictions(V, features, means)
    return float(np.mean(network == nearest))


def nc4_ncc_agreement(
    V: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int | None = None,
) -> float:
    """Compute NC4, the share of samples where the head agrees with the nearest mean.

    ``NC4 = (1/n) #{i : argmax_k [V phi_i]_k = argmin_k ||phi_i - phi_k||}`` with
    ``phi_k`` the class means of ``features`` and Euclidean distances (Papyan, Han,
    Donoho, PNAS 2020). For a binary scalar head, ``V`` of shape ``(1, h)``, the
    network predicts class 0 (the class ``+``) where ``V phi_i >= 0`` and class 1
    where it is negative. Ties go to the lowest class index in both rules.

    Parameters
    ----------
    V : ndarray, shape (K, h) or (1, h)
        Output weights; shape ``(1, h)`` only when ``K = 2``.
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``; used for the class means only.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    float
        The agreement share, in ``[0, 1]``; 1 when the head is the nearest-mean
        rule on every sample.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    V = _check_head(V, features.shape[1], num_classes)
    return _nc4_ncc_agreement(V, features, labels, num_classes)


# --------------------------------------------------------------------------------
# Per-class rank, activation patterns
# --------------------------------------------------------------------------------


def _class_rank_ratios(features: np.ndarray, labels: np.ndarray, num_classes: int):
    ratios = np.zeros(num_classes)
    for k in range(num_classes):
        singular = np.linalg.svd(features[labels == k], compute_uv=False)
        if singular[0] == 0.0:
            raise MetricUndefined(
                f"every feature of class {k} is zero, so its singular-value ratio "
                f"s_2/s_1 is 0/0"
            )
        if singular.size > 1:
            ratios[k] = singular[1] / singular[0]
    return ratios


def class_rank_ratios(
    features: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> np.ndarray:
    """Compute, per class, the second over the first singular value of its features.

    For class ``k`` the ratio is ``s_2 / s_1`` of the uncentred ``(|I_k|, h)`` matrix
    whose rows are the class's features. Features of a class that lie on one ray
    (directional collapse, lengths free) give a rank-1 matrix and a ratio of 0. A
    class of one sample, or width ``h = 1``, gives 0.

    Parameters
    ----------
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    ndarray, shape (K,)
        Ratios in ``[0, 1]``.

    Raises
    ------
    MetricUndefined
        If every feature of some class is exactly zero.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    return _class_rank_ratios(features, labels, num_classes)


def activation_pattern(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Return which neurons are active on which samples, ``<x_i, w_j> > 0``.

    The inequality is strict, matching ``relu'(0) = 0``: a pre-activation of exactly
    0 counts as inactive.

    Parameters
    ----------
    W : ndarray, shape (D, h)
        Input weights, one neuron ``w_j`` per column.
    X : ndarray, shape (n, D)
        Inputs, one sample ``x_i`` per row.

    Returns
    -------
    ndarray of bool, shape (n, h)
        Entry ``(i, j)`` is ``X[i] @ W[:, j] > 0``.
    """
    W = check_array("W", W, ndim=2)
    X = check_array("X", X, shape=(None, W.shape[0]))
    return X @ W > 0.0


# --------------------------------------------------------------------------------
# Closed forms at the limit of directional collapse (our derivation)
# --------------------------------------------------------------------------------


def nc1_paper_limit(
    a: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> float:
    """Compute the paper's NC1 at the limit of directional collapse, from ``a_i``.

    At the limit, ``phi_i = a_i phibar_k`` for ``i in I_k`` with orthonormal
    ``phibar_k`` and ``a_i = <s_k u_k, x_i>`` (Min, Zhu, Vidal, NeurIPS 2025). Then
    ``phi_k = m_k phibar_k`` and ``nc1_paper`` reduces to

    ``NC1 = sum_k Var_k(a) / ((1 - 1/K) sum_k m_k^2)``

    with ``m_k = mean_{i in I_k} a_i`` and ``Var_k`` the population variance over
    class ``k`` (our derivation: ``sum_k ||phi_k - phi_G||^2 = (1 - 1/K) sum_k
    m_k^2`` for orthonormal ``phibar_k``).

    Parameters
    ----------
    a : ndarray, shape (n,)
        Feature lengths ``a_i``.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    float
        The limit NC1, at least 0.

    Raises
    ------
    MetricUndefined
        If every ``m_k`` is zero up to float64 roundoff.
    """
    a = check_array("a", a, ndim=1)
    labels, num_classes = _check_labels(labels, a.shape[0], num_classes)
    lengths = a[:, None]
    m = _class_means(lengths, labels, num_classes)[:, 0]

    # If every exact m_k is 0, the computed sum of m_k^2 is at most K e^2 with e the
    # largest mean error bound.
    roundoff = num_classes * _mean_error_bound(lengths, labels, num_classes).max() ** 2
    spread = np.sum(m**2)
    if spread <= roundoff:
        raise MetricUndefined(
            f"every class mean m_k of a is zero: sum_k m_k^2 = {spread:.3g}, at or "
            f"below the float64 roundoff level {roundoff:.3g}"
        )

    counts = np.bincount(labels, minlength=num_classes)
    deviations = (a - m[labels]) ** 2
    variances = np.bincount(labels, weights=deviations, minlength=num_classes) / counts
    return float(np.sum(variances) / ((1.0 - 1.0 / num_classes) * spread))


def nc3_paper_limit_empirical(s: np.ndarray, m: np.ndarray) -> float:
    """Compute the paper's NC3 at the limit, with empirical class means.

    At the limit ``V = E~ [s_1 phibar_1 ... s_K phibar_K]^T`` and the empirical class
    means are ``m_k phibar_k`` with orthonormal ``phibar_k`` (Min, Zhu, Vidal,
    NeurIPS 2025), so ``M = V Phi (Phi^T Phi)^{-1} = E~ diag(s_k / m_k)`` and

    ``NC3 = || M/||M||_F - E~/sqrt(K) ||_F``  (consistent target).

    Equivalently ``NC3 = sqrt(2 (1 - mean(d)/rms(d)))`` with ``d_k = s_k/m_k`` (our
    derivation, from ``||e~_k|| = 1``), which is 0 exactly when all ``s_k/m_k`` are
    equal and positive. For ``K = 2`` the same value is the NC3 of the binary scalar
    head ``s_+ phibar_+^T - s_- phibar_-^T`` against ``[1, -1]/sqrt(2)``, because both
    have cosine ``(d_1 + d_2) / sqrt(2 (d_1^2 + d_2^2))`` with their targets.

    Parameters
    ----------
    s : ndarray, shape (K,)
        Class scales ``s_k`` of the limit head.
    m : ndarray, shape (K,)
        Class means ``m_k`` of the feature lengths ``a_i``.

    Returns
    -------
    float
        The limit NC3, in ``[0, 2]``.

    Raises
    ------
    MetricUndefined
        If some ``m_k`` is zero (no class mean to invert) or every ``s_k`` is zero.
    """
    s = check_array("s", s, ndim=1)
    num_classes = s.shape[0]
    if num_classes < 2:
        raise InvalidArgument(
            f"s is invalid: it must have one entry per class for K >= 2 classes, got "
            f"shape {s.shape}"
        )
    m = check_array("m", m, shape=(num_classes,))
    zero = np.flatnonzero(m == 0.0)
    if zero.size:
        raise MetricUndefined(
            f"m[{int(zero[0])}] is zero, so s_k/m_k and the class mean's inverse do "
            f"not exist"
        )
    if not np.any(s):
        raise MetricUndefined("every s_k is zero, so M = E~ diag(s_k/m_k) is zero")

    head_on_means = pseudo_labels(num_classes) * (s / m)
    goal = pseudo_labels(num_classes) / np.sqrt(num_classes)
    return float(np.linalg.norm(head_on_means / np.linalg.norm(head_on_means) - goal))


# --------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------


def nc_summary(
    V: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int | None = None,
) -> dict[str, float | dict[str, str]]:
    """Compute every metric of this module, for the CLI and reports.

    Keys: ``nc1``, ``nc2``, ``nc3`` (the paper's metrics, consistent NC3 target),
    ``nc3_printed`` (the printed NC3 target, only for ``K > 2``), ``nc1_standard``,
    ``nc2_standard``, ``nc3_standard``, ``nc4`` and ``rank_ratio_max`` (the largest
    of ``class_rank_ratios``). A metric that is undefined for the input is left out
    and listed under ``undefined``, a dict from its key to the reason, which is
    always present (empty when every metric is defined).

    Parameters
    ----------
    V : ndarray, shape (K, h) or (1, h)
        Output weights; shape ``(1, h)`` only when ``K = 2``.
    features : ndarray, shape (n, h)
        Features ``phi_i``, one sample per row.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    num_classes : int, optional
        ``K``; inferred as ``labels.max() + 1`` when omitted.

    Returns
    -------
    dict
        Metric key to float, and ``"undefined"`` to a dict of key to reason.

    Raises
    ------
    InvalidArgument
        For malformed input (shapes, labels). A ``MetricUndefined`` from one metric
        is caught and recorded under ``undefined`` instead.
    """
    features, labels, num_classes = _check_inputs(features, labels, num_classes)
    V = _check_head(V, features.shape[1], num_classes)

    metrics = {
        "nc1": lambda: _nc1_paper(features, labels, num_classes),
        "nc2": lambda: _nc2_paper(features, labels, num_classes),
        "nc3": lambda: _nc3_paper(V, features, labels, num_classes, "consistent"),
        "nc3_printed": lambda: _nc3_paper(V, features, labels, num_classes, "printed"),
        "nc1_standard": lambda: _nc1_standard(features, labels, num_classes),
        "nc2_standard": lambda: _nc2_standard(features, labels, num_classes),
        "nc3_standard": lambda: _nc3_standard(V, features, labels, num_classes),
        "nc4": lambda: _nc4_ncc_agreement(V, features, labels, num_classes),
        "rank_ratio_max": lambda: float(
            _class_rank_ratios(features, labels, num_classes).max()
        ),
    }
    if num_classes == 2:
        del metrics["nc3_printed"]

    summary: dict[str, float | dict[str, str]] = {}
    undefined: dict[str, str] = {}
    for key, compute in metrics.items():
        try:
            summary[key] = compute()
        except MetricUndefined as error:
            undefined[key] = str(error)
    summary["undefined"] = undefined
    return summary
