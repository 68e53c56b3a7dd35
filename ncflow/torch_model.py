"""A PyTorch reference of the two-layer network, for autograd cross-checks.

| symbol | code | shape | meaning |
|---|---|---|---|
| ``X`` | ``X`` | ``(n, D)`` | one sample per row |
| ``W`` | ``TwoLayerNet.W`` | ``(D, h)`` | input weights, column ``w_j`` per neuron |
| ``V`` | ``TwoLayerNet.V`` | ``(d_y, h)`` | output weights, column ``v_j`` per neuron |
| ``phi`` | ``features(X)`` | ``(n, h)`` | ``relu(W^T x_i)`` per row |
| ``f`` | ``forward(X)`` | ``(n, d_y)`` | network outputs ``V phi(x_i)`` per row |
| ``y_i`` | ``targets[i]`` | scalar | binary sign in ``{+1, -1}``, or a class index |

This module computes the same network and summed losses as
:mod:`ncflow.network` and :mod:`ncflow.losses`, but lets torch autograd take
the derivatives. It follows the paper's set-up (Min, Zhu, Vidal, NeurIPS 2025,
"Neural Collapse under Gradient Flow on Shallow ReLU Networks for Orthogonally
Separable Data"): ``f(x) = V relu(W^T x)``, no biases, no width scaling, and a
loss summed over the samples. The ReLU is ``torch.relu``, whose derivative at
0 is 0, the same convention as ``relu'(z) = 1[z > 0]`` in
:mod:`ncflow.network`.

:func:`autograd_euler` is plain gradient descent written as a user of torch
would write it, with no log-domain scaling. Its gradient underflows to 0 once
every margin exceeds about 745, where ``exp(-m)`` leaves the float64 range, and
from then on the iteration stops moving. The cross-entropy gradient entry
``p_k - 1`` of the true class rounds to 0 already beyond a margin of about 37.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ncflow._validation import check_choice, check_int, check_positive
from ncflow.losses import BINARY_LOSSES, check_loss
from ncflow.network import ACTIVATIONS, Parameters, Problem


def _as_tensor(
    values: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    # torch.as_tensor shares the memory of an ndarray and (torch 2.13) warns when
    # it is read-only, as the arrays of a Problem are, so those are copied.
    if isinstance(values, np.ndarray) and not values.flags.writeable:
        return torch.tensor(values, dtype=dtype)
    return torch.as_tensor(values, dtype=dtype)


class TwoLayerNet(nn.Module):
    """The network ``f(x) = V relu(W^T x)`` with float64 torch parameters.

    Parameters
    ----------
    W : array_like, shape (D, h)
        Input weights; copied into a float64 ``nn.Parameter``.
    V : array_like, shape (d_y, h)
        Output weights; copied into a float64 ``nn.Parameter``.
    activation : {"relu", "linear"}
        ``"relu"`` uses ``torch.relu``; ``"linear"`` is the identity.

    Raises
    ------
    InvalidArgument
        If ``W`` or ``V`` is not a finite 2-D array, if their widths differ, or
        if ``activation`` is unknown.
    """

    def __init__(self, W: np.ndarray, V: np.ndarray, activation: str = "relu") -> None:
        super().__init__()
        checked = Parameters(W, V)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.W = nn.Parameter(torch.tensor(checked.W, dtype=torch.float64))
        self.V = nn.Parameter(torch.tensor(checked.V, dtype=torch.float64))

    @classmethod
    def from_parameters(
        cls, params: Parameters, activation: str = "relu"
    ) -> TwoLayerNet:
        """Build the network of ``params``, copying ``W`` and ``V``."""
        return cls(params.W, params.V, activation)

    def to_parameters(self) -> Parameters:
        """Copy the current weights out as :class:`ncflow.network.Parameters`."""
        W = self.W.detach().cpu().numpy().copy()
        V = self.V.detach().cpu().numpy().copy()
        return Parameters(W, V)

    def features(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Compute ``phi(x_i) = relu(W^T x_i)`` for every row.

        Parameters
        ----------
        X : ndarray or Tensor, shape (n, D)

        Returns
        -------
        Tensor, shape (n, h)
        """
        preactivations = _as_tensor(X) @ self.W
        if self.activation == "linear":
            return preactivations
        return torch.relu(preactivations)

    def forward(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Compute ``f(x_i) = V relu(W^T x_i)`` for every row.

        Parameters
        ----------
        X : ndarray or Tensor, shape (n, D)

        Returns
        -------
        Tensor, shape (n, d_y)
        """
        return self.features(X) @ self.V.T


def summed_loss(
    outputs: torch.Tensor, targets: torch.Tensor, loss: str
) -> torch.Tensor:
    """Sum one of the training losses over the samples.

    - ``"exponential"``: ``sum_i exp(-y_i f_i)``;
    - ``"logistic"``: ``sum_i 2 log(1 + exp(-y_i f_i))``, as
      ``2 * logaddexp(0, -y_i f_i)``;
    - ``"cross_entropy"``: ``sum_i (logsumexp(f_i) - f_i[k_i])``, by
      ``F.cross_entropy`` with ``reduction="sum"``.

    The logistic loss avoids ``F.softplus``, because its default threshold 20
    switches to the identity and drops the term ``log1p(exp(-20))``, about
    2e-9, from the value and its gradient.

    Parameters
    ----------
    outputs : Tensor, shape (n, d_y)
        Network outputs, float64.
    targets : Tensor, shape (n,)
        Signs ``y_i`` in ``{+1, -1}`` for a binary loss (``d_y = 1``), class
        indices ``0..d_y-1`` for ``"cross_entropy"``.
    loss : {"exponential", "logistic", "cross_entropy"}

    Returns
    -------
    Tensor, shape ()
        The summed loss ``L``; it overflows to inf or underflows to 0 where the
        float64 ``exp`` does.
    """
    check_loss(loss, outputs.shape[1])
    if loss == "cross_entropy":
        labels = _as_tensor(targets, torch.int64)
        return F.cross_entropy(outputs, labels, reduction="sum")

    margins = _as_tensor(targets) * outputs[:, 0]
    if loss == "exponential":
        return torch.exp(-margins).sum()
    return 2.0 * torch.logaddexp(torch.zeros_like(margins), -margins).sum()


def autograd_gradient(problem: Problem, params: Parameters) -> tuple[float, Parameters]:
    """Evaluate ``L(theta)`` and ``grad L(theta)`` by torch autograd.

    Unlike :func:`ncflow.network.loss_and_gradient`, which returns ``log L``,
    this returns ``L`` itself, with no log-domain scaling.

    Parameters
    ----------
    problem : Problem
    params : Parameters
        ``W`` of shape (D, h) and ``V`` of shape (d_y, h).

    Returns
    -------
    loss : float
        The summed loss ``L``.
    gradient : Parameters
        ``(dL/dW, dL/dV)``, shapes (D, h) and (d_y, h).
    """
    problem.check_parameters(params)
    model = TwoLayerNet.from_parameters(params, problem.activation)
    total = summed_loss(model(problem.X), _targets(problem), problem.loss)
    total.backward()
    gradient = Parameters(model.W.grad.numpy().copy(), model.V.grad.numpy().copy())
    return float(total.detach()), gradient


def autograd_euler(
    problem: Problem, params0: Parameters, step: float, num_steps: int
) -> Parameters:
    """Run fixed-step gradient descent ``theta <- theta - step * grad L(theta)``.

    This is the explicit Euler method for the gradient flow, with the gradient
    from torch autograd and the update under ``torch.no_grad``. After
    ``num_steps`` steps it is at gradient-flow time ``step * num_steps``.

    Parameters
    ----------
    problem : Problem
    params0 : Parameters
        Start ``theta(0)``, ``W`` of shape (D, h) and ``V`` of shape (d_y, h).
    step : float
        Step size ``eta > 0``, in units of gradient-flow time.
    num_steps : int
        Number of steps, ``>= 0``.

    Returns
    -------
    Parameters
        The weights after ``num_steps`` steps.
    """
    step = check_positive("step", step)
    num_steps = check_int("num_steps", num_steps, 0)
    problem.check_parameters(params0)

    model = TwoLayerNet.from_parameters(params0, problem.activation)
    X = _as_tensor(problem.X)
    targets = _targets(problem)
    for _ in range(num_steps):
        model.zero_grad(set_to_none=True)
        summed_loss(model(X), targets, problem.loss).backward()
        with torch.no_grad():
            for weights in model.parameters():
                weights -= step * weights.grad
    return model.to_parameters()


def _targets(problem: Problem) -> torch.Tensor:
    if problem.loss in BINARY_LOSSES:
        return _as_tensor(problem.signs)
    return _as_tensor(problem.labels, torch.int64)
