"""Initialisations: small balanced shapes, Gaussian weights and semi-local shapes.

| symbol | code | meaning |
|---|---|---|
| ``eps`` | ``eps`` | initial scale: ``w_j(0) = eps w_j0``, ``v_j(0) = eps v_j0`` |
| ``w_j0``, ``v_j0`` | columns of ``shapes`` | shapes, norms equal, ``<= 1`` |
| ``e~_k`` | ``pseudo_labels(K)[:, k]`` | simplex-ETF pseudo-label of class ``k`` |

All random draws come from a ``numpy.random.Generator`` that the caller seeds,
so that property tests can draw the seed through Hypothesis and replay it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ncflow._validation import InvalidArgument, check_int, check_positive
from ncflow.network import Parameters

# Relative tolerance of the balance check ||w_j0|| = ||v_j0||: the shapes are
# built by scaling two vectors to a common norm, which leaves a few float64
# roundoffs per entry; 64 units of roundoff leave room for D up to thousands.
BALANCE_RTOL = 64 * np.finfo(np.float64).eps


def _pseudo_labels(num_classes: int) -> np.ndarray:
    K = num_classes
    return np.sqrt(K / (K - 1)) * (np.eye(K) - np.ones((K, K)) / K)


def _check_rng(rng: object) -> np.random.Generator:
    """Return ``rng`` if it is a NumPy Generator, or raise naming the fix."""
    if not isinstance(rng, np.random.Generator):
        raise InvalidArgument(
            f"rng={rng!r} is not a numpy.random.Generator; pass one, "
            "e.g. numpy.random.default_rng(0)"
        )
    return rng


def balanced_shapes(
    rng: np.random.Generator, D: int, width: int, num_outputs: int
) -> Parameters:
    """Draw balanced Gaussian shapes ``(w_j0, v_j0)`` with ``||w_j0|| = ||v_j0|| <= 1``.

    Directions are Gaussian; neuron ``j`` gets the norm ``||z_j|| / max_l ||z_l||``
    of its Gaussian input draw ``z_j``, so the largest shape has norm 1. For a
    scalar output ``v_j0 = +-||w_j0||`` with a Gaussian sign.
    """
    _check_rng(rng)
    check_int("D", D, 1)
    check_int("width", width, 1)
    check_int("num_outputs", num_outputs, 1)
    W = rng.standard_normal((D, width))
    V = rng.standard_normal((num_outputs, width))
    norms_w = np.linalg.norm(W, axis=0)
    norms_v = np.linalg.norm(V, axis=0)
    if np.any(norms_w == 0) or np.any(norms_v == 0):
        raise InvalidArgument("a Gaussian shape drew an all-zero column; draw again")
    target = norms_w / norms_w.max()
    return Parameters(W * (target / norms_w), V * (target / norms_v))


def check_balanced(shapes: Parameters) -> None:
    """Raise unless every ``||w_j0|| = ||v_j0||`` and ``0 < ||w_j0|| <= 1``."""
    norms_w = np.linalg.norm(shapes.W, axis=0)
    norms_v = np.linalg.norm(shapes.V, axis=0)
    gap = np.abs(norms_w - norms_v)
    worst = int(np.argmax(gap - BALANCE_RTOL * np.maximum(norms_w, norms_v)))
    if gap[worst] > BALANCE_RTOL * max(norms_w[worst], norms_v[worst]):
        raise InvalidArgument(
            f"shapes are not balanced: neuron {worst} has ||w_j0|| = "
            f"{float(norms_w[worst])!r} but ||v_j0|| = {float(norms_v[worst])!r}; "
            "rescale so they agree"
        )
    if np.any(norms_w == 0):
        raise InvalidArgument(
            f"shape of neuron {int(np.argmin(norms_w))} is zero; all shapes must be "
            "non-zero"
        )
    if norms_w.max() > 1 + BALANCE_RTOL:
        raise InvalidArgument(
            f"shape of neuron {int(np.argmax(norms_w))} has norm "
            f"{float(norms_w.max())!r}; "
            "the balanced initialisation needs ||w_j0|| <= 1"
        )


def balanced_init(shapes: Parameters, eps: float) -> Parameters:
    """Scale balanced shapes by ``eps``: ``theta(0) = eps * theta_0``."""
    check_positive("eps", eps, fix="the initial scale must be a positive number")
    check_balanced(shapes)
    return shapes.scaled(eps)


def gaussian_init(
    rng: np.random.Generator, D: int, width: int, num_outputs: int, variance: float
) -> Parameters:
    """Draw every weight independently from ``N(0, variance)`` (unbalanced).

    This is the initialisation of the paper's experiments (variance ``1e-6``).
    """
    _check_rng(rng)
    check_int("D", D, 1)
    check_int("width", width, 1)
    check_int("num_outputs", num_outputs, 1)
    std = np.sqrt(check_positive("variance", variance))
    return Parameters(
        std * rng.standard_normal((D, width)),
        std * rng.standard_normal((num_outputs, width)),
    )


def semilocal_shapes(
    rng: np.random.Generator,
    X: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[int],
    num_classes: int,
) -> Parameters:
    """Copy ``(x_i / ||x_i||, e~_{y_i})`` of a random sample of each neuron's class.

    Parameters
    ----------
    X : ndarray, shape (n, D)
    labels : ndarray of int, shape (n,)
    groups : sequence of int, length h
        Class ``k`` of neuron ``j`` (the partition ``N_1..N_K``).
    num_classes : int
        ``K >= 2``; the output weights are the columns of the pseudo-label
        matrix ``E~ = sqrt(K/(K-1)) (I_K - 11^T/K)``.

    Returns
    -------
    Parameters
        Shapes with ``||w_j0|| = ||v_j0|| = 1``, which satisfy the semi-local
        condition: every inequality holds with the sample itself active.
    """
    K = check_int("num_classes", num_classes, 2)
    raw = np.asarray(groups)
    if raw.ndim != 1 or raw.size == 0 or not np.issubdtype(raw.dtype, np.integer):
        raise InvalidArgument(
            f"groups={raw!r} is invalid: it must list one class per neuron, as integers"
        )
    groups = raw.astype(np.int64)
    if groups.ndim != 1 or groups.size == 0:
        raise InvalidArgument(f"groups={groups!r} must list one class per neuron")
    bad = groups[(groups < 0) | (groups >= K)]
    if bad.size:
        raise InvalidArgument(
            f"groups contains class {int(bad[0])}; classes are 0..{K - 1}"
        )
    empty = [k for k in range(K) if not np.any(groups == k)]
    if empty:
        raise InvalidArgument(
            f"groups={groups.tolist()!r} is invalid: class {empty[0]} has no "
            "neuron, so the network cannot classify it; give every class 0.."
            f"{K - 1} at least one neuron, e.g. groups = np.arange(h) % {K}"
        )
    _check_rng(rng)
    E = _pseudo_labels(K)
    W = np.empty((X.shape[1], groups.size))
    V = np.empty((K, groups.size))
    for j, k in enumerate(groups):
        members = np.flatnonzero(labels == k)
        if members.size == 0:
            raise InvalidArgument(f"class {int(k)} of neuron {j} has no samples")
        i = members[rng.integers(members.size)]
        W[:, j] = X[i] / np.linalg.norm(X[i])
        V[:, j] = E[:, k]
    return Parameters(W, V)
