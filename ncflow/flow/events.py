"""Stopping conditions of the flow, as event callables in the style of SciPy.

An event is a callable ``event(state) -> float`` of a :class:`FlowState`, with
the attributes ``terminal`` (stop the run when it fires) and ``direction``
(fire only on crossings of that sign; 0 for both). A continuous event fires
where its value crosses zero and is located to tolerance on the dense output.
An event with ``discrete = True`` depends on the activation pattern only; it is
evaluated at the start and after every activation change, which is where it can
change value.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from ncflow._numeric import exp_or_inf, logsumexp
from ncflow._validation import InvalidArgument, check_positive
from ncflow.losses import is_per_sample, loss_terms_unchecked
from ncflow.network import Parameters, Problem, activation_mask


class FlowState:
    """A point of a trajectory, as seen by event functions and recorders.

    Attributes
    ----------
    problem : Problem
    params : Parameters
        ``theta = (W, V)`` at this point.
    log_t : float
        ``log t`` in gradient-flow time (``-inf`` at ``t = 0``).
    pattern : ndarray of bool, shape (n, h)
        Activation pattern in force on the current smooth segment.

    The constructor also takes, in place of ``params``, a callable without
    arguments that returns them. The adaptive integrator passes one, with
    ``log_norm2`` known, so that an event that reads only ``log_norm2`` or
    ``log_t`` does not pay for the conversion from its coordinates.
    """

    def __init__(
        self,
        problem: Problem,
        params,
        log_t: float,
        pattern: np.ndarray,
        log_norm2: float | None = None,
    ) -> None:
        self.problem = problem
        self._params = params
        self.log_t = log_t
        self.pattern = pattern
        self._log_norm2 = log_norm2

    @property
    def params(self) -> Parameters:
        if callable(self._params):
            self._params = self._params()
        return self._params

    def __repr__(self) -> str:
        return (
            f"FlowState(log_t={self.log_t!r}, log_norm2={self.log_norm2!r}, "
            f"params={self.params!r})"
        )

    @property
    def t(self) -> float:
        """Gradient-flow time; ``inf`` once it exceeds the float64 range."""
        return exp_or_inf(self.log_t)

    @cached_property
    def outputs(self) -> np.ndarray:
        """``f(x_i; theta)``, shape (n, d_y); inf or NaN where it overflows, as
        at the last state of a diverged fixed-step run."""
        W, V = self.params.W[None], self.params.V[None]
        return stacked_outputs(self.problem, W, V)[0]

    @cached_property
    def log_loss(self) -> float:
        """``log L(theta)``, finite where ``L`` underflows."""
        return float(stacked_log_losses(self.problem, self.outputs[None])[0])

    @property
    def log_norm2(self) -> float:
        """``log ||theta||_F^2``, finite where ``||theta||_F^2`` underflows."""
        if self._log_norm2 is None:
            self._log_norm2 = _log_norm2(self.params)
        return self._log_norm2

    @property
    def norm2(self) -> float:
        return float(np.exp(self.log_norm2))


def _log_norm2(params: Parameters) -> float:
    """Return ``log ||theta||_F^2``, from the weights divided by their largest
    entry where the sum of squares is below the smallest normal float64."""
    norm2 = params.norm2()
    if norm2 >= np.finfo(np.float64).tiny:
        return math.log(norm2)
    theta = params.flat()
    largest = float(np.max(np.abs(theta)))
    if largest == 0:
        return -math.inf
    scaled = theta / largest
    return 2 * math.log(largest) + math.log(float(scaled @ scaled))


def stacked_outputs(problem: Problem, W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Return the outputs (m, n, d_y) of a stack of networks, ``W`` (m, D, h)
    and ``V`` (m, d_y, h); inf or NaN where they overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        Z = problem.X @ W
        phi = Z * activation_mask(Z, problem.activation)
        return phi @ V.transpose(0, 2, 1)


def stacked_log_losses(problem: Problem, outputs: np.ndarray) -> np.ndarray:
    """Return ``log L`` of each network of a stack from its outputs (m, n, d_y)."""
    m, n = outputs.shape[:2]
    if not is_per_sample(problem.loss):
        return np.array(
            [
                loss_terms_unchecked(f, problem.targets, problem.loss).log_total
                for f in outputs
            ]
        )
    terms = loss_terms_unchecked(
        outputs.reshape(m * n, -1), np.tile(problem.targets, m), problem.loss
    )
    return np.atleast_1d(logsumexp(terms.log_losses.reshape(m, n), axis=1))


# Largest number of pre-activations (records times samples times neurons) that
# network_log_losses computes at once: 2**22 float64 entries are 32 MiB. A run of
# 30483 records with n = 500 and h = 128 needed 14.5 GiB in one batch.
LOSS_BATCH_ENTRIES = 2**22


def network_log_losses(problem: Problem, W: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Return ``log L`` of each network of a stack, ``W`` (m, D, h) and ``V``
    (m, d_y, h), computed in batches of at most ``LOSS_BATCH_ENTRIES``
    pre-activations so that memory does not grow with ``m``."""
    m = W.shape[0]
    per_network = max(1, problem.X.shape[0] * W.shape[2])
    batch = max(1, LOSS_BATCH_ENTRIES // per_network)
    parts = [
        stacked_log_losses(
            problem, stacked_outputs(problem, W[k : k + batch], V[k : k + batch])
        )
        for k in range(0, m, batch)
    ]
    return np.concatenate(parts) if parts else np.empty(0)


def binary_groups(problem: Problem, V0: np.ndarray) -> np.ndarray:
    """Class index of each neuron of a binary problem, by the sign of ``v_j0``.

    Neuron ``j`` belongs to the class whose sign ``y`` equals ``sign(v_j0)``.
    """
    signs = problem.signs
    class_sign = np.array([signs[problem.labels == k][0] for k in range(2)])
    neuron_sign = np.sign(V0[0])
    if np.any(neuron_sign == 0):
        j = int(np.flatnonzero(neuron_sign == 0)[0])
        raise InvalidArgument(f"v_{j}(0) = 0 has no sign, so neuron {j} has no group")
    return np.where(neuron_sign == class_sign[0], 0, 1)


def pseudo_label_groups(V0: np.ndarray) -> np.ndarray:
    """Class index of each neuron of a K-output network: ``argmax_k <e~_k, v_j0>``.

    For the columns of the simplex ETF this is the class with the largest
    ``v_j0[k]``, because ``<e~_k, v> = sqrt(K/(K-1)) (v_k - mean(v))``.
    """
    return np.argmax(V0, axis=0)


def default_groups(problem: Problem, V0: np.ndarray) -> np.ndarray:
    if problem.binary:
        return binary_groups(problem, V0)
    return pseudo_label_groups(V0)


def check_groups(name: str, groups, width: int, num_classes: int) -> np.ndarray:
    """Return ``groups`` as int64 after checking shape ``(width,)`` and range
    ``0..num_classes-1``. A binary problem has the classes 0 and 1."""
    array = np.asarray(groups)
    if array.shape != (width,):
        raise InvalidArgument(
            f"{name} has shape {array.shape}; give one class per neuron, shape "
            f"({width},)"
        )
    if array.dtype.kind not in "iu":
        raise InvalidArgument(
            f"{name} has dtype {array.dtype}; give integer class indices in "
            f"0..{num_classes - 1}"
        )
    outside = np.flatnonzero((array < 0) | (array >= num_classes))
    if outside.size:
        j = int(outside[0])
        raise InvalidArgument(
            f"{name}[{j}]={int(array[j])} is not a class; give a class index in "
            f"0..{num_classes - 1}"
        )
    return array.astype(np.int64)


def separation_report(
    pattern: np.ndarray, labels: np.ndarray, groups: np.ndarray, num_classes: int
) -> tuple[bool, str]:
    """Check the separated pattern: each neuron of group ``k`` active exactly on
    class ``k`` or on nothing, and every class with at least one active neuron.

    Returns
    -------
    separated : bool
    reason : str
        Why the pattern is not separated (empty when it is).
    """
    # One array pass for all neurons: the adaptive integrator checks this after
    # every activation change.
    own_class = labels[:, None] == groups[None, :]  # (n, h)
    used = pattern.any(axis=0)
    wrong_neurons = np.flatnonzero(used & (pattern != own_class).any(axis=0))
    if wrong_neurons.size:
        j = int(wrong_neurons[0])
        k = int(groups[j])
        wrong = int(np.flatnonzero(pattern[:, j] != own_class[:, j])[0])
        state = "active" if pattern[wrong, j] else "inactive"
        return False, f"neuron {j} of group {k} is {state} on sample {wrong}"
    covered = np.zeros(num_classes, dtype=bool)
    covered[groups[used]] = True
    if not covered.all():
        return False, f"class {int(np.flatnonzero(~covered)[0])} has no active neuron"
    return True, ""


def crosses(before: float, after: float, direction: float) -> bool:
    """True when an event value moving from ``before`` to ``after`` crosses 0 in
    ``direction`` (> 0 upwards, < 0 downwards, 0 either way)."""
    if direction > 0:
        return before < 0 <= after
    if direction < 0:
        return before > 0 >= after
    return (before < 0 <= after) or (before > 0 >= after)


class _Event:
    terminal = True
    direction = 0.0
    discrete = False
    # True for an event whose value cannot rise along the flow, so that it
    # crosses 0 at most once: an integrator may then compare its values at the
    # ends of a step only.
    falling = False


class CallableEvent(_Event):
    """A plain event function, with SciPy's defaults for what it leaves unset.

    ``solve_ivp`` reads ``terminal`` and ``direction`` from a function's
    attributes, and takes False and 0 where they are missing. A missing
    ``discrete`` is False too, so the function is evaluated along every step.
    As in SciPy 1.17, ``terminal`` may also be a number of occurrences after
    which the run stops.
    """

    def __init__(self, function) -> None:
        self.function = function
        self.terminal = _occurrences(function, getattr(function, "terminal", False))
        self.direction = check_direction(function, getattr(function, "direction", 0.0))
        self.discrete = bool(getattr(function, "discrete", False))

    def __call__(self, state: FlowState) -> float:
        return self.function(state)

    def __repr__(self) -> str:
        return repr(self.function)


def check_direction(event, direction) -> float:
    """Return an event's ``direction`` as a float, or raise an InvalidArgument
    that names the event where it is not a finite real number."""
    if (
        isinstance(direction, (bool, np.bool_))
        or not isinstance(direction, (int, float, np.integer, np.floating))
        or not math.isfinite(direction)
    ):
        raise InvalidArgument(
            f"event {event!r} has direction={direction!r}; give a finite number: "
            "> 0 fires on upward crossings only, < 0 on downward ones, 0 on both"
        )
    return float(direction)


def _occurrences(function, terminal) -> int:
    """Return the number of occurrences after which the run stops (0: never)."""
    if isinstance(terminal, (bool, np.bool_)):
        return int(terminal)
    if isinstance(terminal, (int, np.integer)) and terminal >= 0:
        return int(terminal)
    raise InvalidArgument(
        f"event {function!r} has terminal={terminal!r}; give True, False or a "
        "number of occurrences >= 0 after which the run stops"
    )


def event_value(event, state: FlowState) -> float:
    """Return ``event(state)`` as a float, or raise an InvalidArgument that names
    the event where the value is not a number (None, NaN, a string)."""
    value = event(state)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number):
        raise InvalidArgument(
            f"event {event!r} returned {value!r} at log t = {state.log_t:.6g}; an "
            "event must return a number, whose sign tells the side of the event"
        )
    return number


def terminal_after(event, occurrences: int) -> bool:
    """Return whether ``event`` ends the run at its ``occurrences``-th firing."""
    terminal = getattr(event, "terminal", False)
    return bool(terminal) and occurrences >= int(terminal)


def as_event(event) -> _Event:
    """Return ``event`` itself if it is one of this module's events, else wrapped."""
    return event if isinstance(event, _Event) else CallableEvent(event)


class LossBelow(_Event):
    """Fires when ``L`` falls below ``level`` (compared as ``log L - log level``)."""

    direction = -1.0
    falling = True  # gradient flow never increases L

    def __init__(self, level: float, terminal: bool = True) -> None:
        self.level = check_positive("level", level)
        self.log_level = float(np.log(self.level))
        self.terminal = _occurrences(self, terminal)

    def __call__(self, state: FlowState) -> float:
        return state.log_loss - self.log_level

    def __repr__(self) -> str:
        return f"LossBelow({self.level!r})"


class Norm2Above(_Event):
    """Fires when ``||theta||_F^2`` rises through ``target``.

    Like every event, it fires on a sign change only: a run that starts above
    ``target`` fires only after ``||theta||_F^2`` has fallen below it and risen
    again.
    """

    direction = 1.0

    def __init__(self, target: float, terminal: bool = True) -> None:
        self.target = check_positive("target", target)
        self.log_target = float(np.log(self.target))
        self.terminal = _occurrences(self, terminal)

    def __call__(self, state: FlowState) -> float:
        return state.log_norm2 - self.log_target

    def __repr__(self) -> str:
        return f"Norm2Above({self.target!r})"


class Separated(_Event):
    """Fires when the activation pattern becomes separated (see
    :func:`separation_report`); value ``+1`` before, ``-1`` after.

    Parameters
    ----------
    groups : ndarray of int, shape (h,), optional
        Class of each neuron. Default: the ``groups`` given to ``solve_flow``,
        whose own default is by the sign of ``v_j0`` (binary) or
        ``argmax_k v_j0[k]`` (K outputs), taken from the initial parameters.
    """

    direction = -1.0
    discrete = True

    def __init__(self, groups: np.ndarray | None = None, terminal: bool = True) -> None:
        # Kept as given, so that bind() can name a float or out-of-range entry
        # instead of a cast to int64 hiding it.
        self.groups = None if groups is None else np.asarray(groups)
        self.terminal = _occurrences(self, terminal)

    def bind(
        self,
        problem: Problem,
        params0: Parameters,
        run_groups: np.ndarray | None = None,
    ) -> Separated:
        """Return a copy with ``groups`` checked against ``problem`` and the width
        of ``params0``. Without groups of its own, the copy takes ``run_groups``
        (the run's, already checked), or else the default groups."""
        if self.groups is None:
            groups = (
                default_groups(problem, params0.V) if run_groups is None else run_groups
            )
        else:
            groups = check_groups(
                "Separated groups", self.groups, params0.width, problem.num_classes
            )
        bound = Separated(groups, self.terminal)
        return bound

    def __call__(self, state: FlowState) -> float:
        if self.groups is None:
            raise InvalidArgument("Separated event used before bind(problem, params0)")
        separated, _ = separation_report(
            state.pattern, state.problem.labels, self.groups, state.problem.num_classes
        )
        return -1.0 if separated else 1.0

    def __repr__(self) -> str:
        if self.groups is None:
            return "Separated()"
        return f"Separated(groups={self.groups.tolist()!r})"
