"""The two-layer network ``f(x) = V relu(W^T x)`` and its training problem.

| symbol | code | shape | meaning |
|---|---|---|---|
| ``X`` | ``X`` | ``(n, D)`` | one sample per row |
| ``W`` | ``W`` | ``(D, h)`` | input weights, column ``w_j`` per neuron |
| ``V`` | ``V`` | ``(d_y, h)`` | output weights, column ``v_j`` per neuron |
| ``Z`` | ``Z`` | ``(n, h)`` | pre-activations ``<x_i, w_j>`` |
| ``phi`` | ``features`` | ``(n, h)`` | ``relu(W^T x_i)`` per row |
| ``f`` | ``outputs`` | ``(n, d_y)`` | network outputs |

No biases and no width scaling; both layers are trained. ``d_y = 1`` for
binary problems (signs ``y_i = +-1``) and ``d_y = K`` for the softmax
cross-entropy. The ReLU derivative is ``relu'(z) = 1[z > 0]``: a pre-activation
exactly 0 is inactive, as in ``torch.relu``. The ``"linear"`` activation (the
identity) is there for the exploration that replaces the ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ncflow._validation import (
    InvalidArgument,
    check_array,
    check_choice,
    check_int,
    check_labels,
    check_signs,
)
from ncflow.losses import check_loss, is_binary, loss_terms_unchecked

ACTIVATIONS = ("relu", "linear")
# Planted fault for the power tests: a ReLU whose derivative at 0 is 1, as
# ``clamp_min`` gives; never offered by the CLI.
FAULT_ACTIVATIONS = ("relu_derivative_one",)


@dataclass(frozen=True)
class Parameters:
    """Network weights ``theta = (W, V)``.

    Attributes
    ----------
    W : ndarray, shape (D, h)
    V : ndarray, shape (d_y, h)
    """

    W: np.ndarray
    V: np.ndarray

    def __post_init__(self) -> None:
        W = check_array("W", self.W, ndim=2)
        V = check_array("V", self.V, ndim=2)
        if W.shape[1] != V.shape[1]:
            raise InvalidArgument(
                f"W has {W.shape[1]} neurons (columns) but V has {V.shape[1]}; "
                "both must have shape (*, h) with the same width h"
            )
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "V", V)

    @property
    def width(self) -> int:
        return self.W.shape[1]

    @property
    def num_outputs(self) -> int:
        return self.V.shape[0]

    def norm2(self) -> float:
        """``||theta||_F^2 = ||W||_F^2 + ||V||_F^2``; inf where it overflows."""
        with np.errstate(over="ignore"):
            return float(np.sum(self.W**2) + np.sum(self.V**2))

    def neuron_norms2(self) -> tuple[np.ndarray, np.ndarray]:
        """``(||w_j||^2, ||v_j||^2)`` per neuron, each shape (h,)."""
        return np.sum(self.W**2, axis=0), np.sum(self.V**2, axis=0)

    def flat(self) -> np.ndarray:
        return np.concatenate([self.W.ravel(), self.V.ravel()])

    @classmethod
    def from_flat(cls, theta: np.ndarray, D: int, width: int) -> Parameters:
        split = D * width
        return cls(theta[:split].reshape(D, width), theta[split:].reshape(-1, width))

    def scaled(self, factor: float) -> Parameters:
        return Parameters(self.W * factor, self.V * factor)


@dataclass(frozen=True)
class Problem:
    """Data, targets, loss and activation of one training run.

    The problem stores read-only copies of ``X``, ``labels`` and ``signs``, so
    changing the caller's arrays afterwards does not change the problem.

    Attributes
    ----------
    X : ndarray, shape (n, D)
    labels : ndarray of int, shape (n,)
        Class indices ``0..K-1``.
    num_classes : int
        ``K``.
    loss : str
        One of ``ncflow.losses.LOSSES``; a binary loss means a scalar output.
    activation : {"relu", "linear"}
    signs : ndarray of float, shape (n,), optional
        Binary losses only: ``y_i = +1`` or ``-1``, one sign per class and
        opposite signs for the two classes. Default: +1 for class 0, -1 for
        class 1.
    """

    X: np.ndarray
    labels: np.ndarray
    num_classes: int
    loss: str
    activation: str = "relu"
    signs: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        num_classes = check_int(
            "num_classes",
            self.num_classes,
            2,
            fix="a classification problem needs two classes or more; give K",
        )
        object.__setattr__(self, "num_classes", num_classes)
        X = _read_only_copy(check_array("X", self.X, ndim=2))
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise InvalidArgument(
                f"X has shape {X.shape}; give at least one sample of at least one "
                "feature"
            )
        _check_rows("X", X)
        raw = np.asarray(self.labels)
        if raw.shape != (X.shape[0],):
            raise InvalidArgument(
                f"labels has shape {raw.shape} but X has {X.shape[0]} rows; "
                "give one label per sample, with X of shape (n, D), one row per "
                "sample (transpose X if its samples are columns)"
            )
        if not np.issubdtype(raw.dtype, np.integer):
            raise InvalidArgument(
                f"labels must be integer class indices 0..K-1, got dtype {raw.dtype}; "
                "map labels with ncflow.data.Dataset.from_arrays"
            )
        labels = _read_only_copy(raw.astype(np.int64))
        check_labels("labels", labels, self.num_classes)
        # The planted fault is accepted but not offered in the message.
        if self.activation not in FAULT_ACTIVATIONS:
            check_choice("activation", self.activation, ACTIVATIONS)
        check_loss(self.loss, 1 if is_binary(self.loss) else self.num_classes)
        if is_binary(self.loss):
            if self.num_classes != 2:
                raise InvalidArgument(
                    f"loss={self.loss!r} needs two classes, got num_classes="
                    f"{self.num_classes}; use loss='cross_entropy'"
                )
            signs = self.signs
            if signs is None:
                signs = np.where(labels == 0, 1.0, -1.0)
            signs = _read_only_copy(np.asarray(signs, dtype=np.float64))
            _check_signs("signs", signs, labels)
        else:
            signs = None
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "signs", signs)

    @classmethod
    def from_dataset(cls, dataset, loss: str | None = None, activation: str = "relu"):
        """Build the problem of a ``ncflow.data.Dataset``.

        The default loss is ``"exponential"`` for two classes and
        ``"cross_entropy"`` otherwise.
        """
        if loss is None:
            loss = "exponential" if dataset.K == 2 else "cross_entropy"
        signs = dataset.signs if is_binary(loss) else None
        return cls(dataset.X, dataset.labels, dataset.K, loss, activation, signs)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def D(self) -> int:
        return self.X.shape[1]

    @property
    def binary(self) -> bool:
        """True when the network has a scalar output (a binary loss)."""
        return is_binary(self.loss)

    @property
    def num_outputs(self) -> int:
        return 1 if self.binary else self.num_classes

    @property
    def targets(self) -> np.ndarray:
        """Signs for a binary loss, class indices otherwise."""
        return self.signs if self.binary else self.labels

    def check_arrays(self) -> None:
        """Check ``X``, ``labels`` and ``signs`` again, as construction does.

        The arrays are read-only copies, but a caller can set their
        ``writeable`` flag again, and NaN, inf or a zero row then written into
        ``problem.X`` would reach the flow. ``solve_flow`` calls this once at its
        start. It takes O(n D) time.
        """
        check_array("problem.X", self.X, ndim=2)
        _check_rows("problem.X", self.X)
        check_labels("problem.labels", self.labels, self.num_classes)
        if self.binary:
            _check_signs("problem.signs", self.signs, self.labels)

    def check_parameters(self, params: Parameters) -> None:
        if params.W.ndim == 2 and params.W.shape[1] == 0:
            raise InvalidArgument(
                f"parameters have width 0 (W of shape {params.W.shape}); give at "
                "least one neuron"
            )
        if params.W.shape[0] != self.D or params.num_outputs != self.num_outputs:
            raise InvalidArgument(
                f"parameters of shapes W {params.W.shape}, V {params.V.shape} do not "
                f"fit this problem: W must be ({self.D}, h) and V "
                f"({self.num_outputs}, h)"
            )


def _read_only_copy(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, copy=True)
    copy.flags.writeable = False
    return copy


def _check_rows(name: str, X: np.ndarray) -> None:
    """Reject rows of finite ``X`` whose squared norm overflows or is zero."""
    with np.errstate(over="ignore"):
        norms2 = np.einsum("ij,ij->i", X, X)
    if not np.all(np.isfinite(norms2)):
        raise InvalidArgument(
            f"{name} has entries up to {np.max(np.abs(X)):.3g}, whose squared norms "
            f"overflow float64; rescale {name}"
        )
    # A zero sample has output 0 for every theta, with either activation, so it
    # adds nothing to the gradient and its loss term stays at l(0).
    zero_rows = np.flatnonzero(norms2 == 0)
    tiny = zero_rows[np.any(X[zero_rows] != 0, axis=1)]
    if tiny.size:
        i = int(tiny[0])
        raise InvalidArgument(
            f"{name}[{i}] has entries up to {np.max(np.abs(X[i])):.3g}, whose "
            f"squared norm underflows float64 to 0; rescale {name}, or remove the "
            "row if the sample is meant to be zero"
        )
    if zero_rows.size:
        raise InvalidArgument(
            f"{name}[{zero_rows[0]}] is invalid: the sample is a zero vector "
            f"(zero rows: {zero_rows.size} of {X.shape[0]}). The network's "
            "output on a zero sample is 0 for all weights, so its loss term is "
            "constant and it adds nothing to the gradient; remove the zero rows"
        )


def _check_signs(name: str, signs: np.ndarray, labels: np.ndarray) -> None:
    check_signs(name, signs, labels.shape[0])
    # The neurons' classes and the separation checks read each class's sign from
    # its first sample, so a class must have one sign, and the two classes
    # opposite ones.
    first_of_class = {}
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        other = members[signs[members] != signs[members[0]]]
        if other.size:
            raise InvalidArgument(
                f"{name}[{int(other[0])}]={float(signs[other[0]]):+g} differs from "
                f"{name}[{int(members[0])}]={float(signs[members[0]]):+g} in class "
                f"{int(k)}: give all samples of a class the same sign"
            )
        first_of_class[int(k)] = int(members[0])
    if len(first_of_class) == 2:
        i, j = first_of_class.values()
        if signs[i] == signs[j]:
            raise InvalidArgument(
                f"both classes have sign {float(signs[i]):+g} ({name}[{i}] and "
                f"{name}[{j}]): give the two classes opposite signs"
            )


def activation_mask(preactivations: np.ndarray, activation: str) -> np.ndarray:
    """``relu'(Z) = 1[Z > 0]`` (all ones for the linear activation), as bool."""
    if activation == "linear":
        return np.ones(preactivations.shape, dtype=bool)
    if activation == "relu_derivative_one":
        return preactivations >= 0
    return preactivations > 0


def features(X: np.ndarray, W: np.ndarray, activation: str = "relu") -> np.ndarray:
    """``phi_theta(x_i) = relu(W^T x_i)``, shape (n, h)."""
    Z = X @ W
    return Z if activation == "linear" else np.maximum(Z, 0.0)


def outputs(problem: Problem, params: Parameters) -> np.ndarray:
    """``f(x_i; theta)``, shape (n, d_y)."""
    return features(problem.X, params.W, problem.activation) @ params.V.T


def check_outputs(
    problem: Problem, params: Parameters, name: str = "params"
) -> np.ndarray:
    """Validate ``params`` and return its outputs on ``problem.X``, shape (n, d_y).

    Raises InvalidArgument if ``params`` does not fit ``problem``, if ``params.W``
    or ``params.V`` has a NaN or inf entry, or if an output overflows float64.
    Messages call the parameters ``name``. The entries are checked again because
    the arrays of a Parameters stay writable after construction.
    """
    check_array(f"{name}.W", params.W)
    check_array(f"{name}.V", params.V)
    problem.check_parameters(params)
    with np.errstate(over="ignore", invalid="ignore"):
        f = outputs(problem, params)
    overflowed = np.argwhere(~np.isfinite(f))
    if overflowed.size:
        i, k = overflowed[0]
        raise InvalidArgument(
            f"the outputs of {name} overflow float64: f[{i}, {k}] = "
            f"{float(f[i, k])!r}; scale {name}.W and {name}.V down, because "
            "scaling both by c scales the outputs by c**2"
        )
    return f


def sample_margins(problem: Problem, f: np.ndarray) -> np.ndarray:
    """Margin of each sample for outputs ``f``, shape (n,).

    ``y_i f_i`` for one output (``y_i`` the sign of the class) and
    ``[f_i]_{y_i} - max_{l != y_i} [f_i]_l`` for ``K`` outputs.

    Parameters
    ----------
    f : ndarray, shape (n, d_y)
        Network outputs, for example :func:`outputs`.
    """
    if problem.binary:
        return problem.signs * f[:, 0]
    rows = np.arange(problem.n)
    others = np.array(f, dtype=np.float64)
    others[rows, problem.labels] = -np.inf
    return f[rows, problem.labels] - others.max(axis=1)


def loss_and_gradient(
    problem: Problem, params: Parameters, *, relative: bool = False
) -> tuple[float, Parameters]:
    """Return ``log L(theta)`` and ``grad L(theta)`` with the gradient written out.

    ``dL/dV = -G^T phi`` and ``dL/dW = -X^T ((G V) * relu'(Z))``, where
    ``G[i] = g_i = -dl_i/df_i``.

    Parameters
    ----------
    relative : bool
        Return ``grad L / L`` instead, formed in the log domain, so that it is
        finite where ``L`` and ``grad L`` underflow (for loss-scaled steps).

    Returns
    -------
    log_loss : float
        ``log L``, finite even where ``L`` underflows.
    gradient : Parameters
        ``(dL/dW, dL/dV)`` (or divided by ``L``), shapes (D, h) and (d_y, h).
    """
    check_outputs(problem, params)
    log_loss, grad_W, grad_V = gradient_arrays(problem, params.W, params.V, relative)
    return log_loss, Parameters(grad_W, grad_V)


def gradient_arrays(
    problem: Problem, W: np.ndarray, V: np.ndarray, relative: bool = False
) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`loss_and_gradient` on bare arrays, without validation (inner loops)."""
    Z = problem.X @ W
    mask = activation_mask(Z, problem.activation)
    phi = Z * mask
    terms = loss_terms_unchecked(phi @ V.T, problem.targets, problem.loss)
    log_loss = terms.log_total
    shift = log_loss if relative else 0.0
    G = np.exp(terms.log_scales - shift)[:, None] * terms.unit_gradients
    grad_V = -(G.T @ phi)
    grad_W = -(problem.X.T @ ((G @ V) * mask))
    return log_loss, grad_W, grad_V
