"""Examples, run settings and trained runs shared by the theory checks.

An :class:`Example` is everything a check needs to reproduce a trajectory: the
data, the initial shapes and scale, the loss, the activation, the neuron groups
and any planted fault. :func:`train` integrates it once and caches the
:class:`Run` per process, so that every claim checked on the same example uses
the same trajectory ("train once, check many") and still reports on its own.

Each run is integrated twice: at ``rtol`` and at ``LOOSE_FACTOR * rtol``. The
difference of a quantity between the two estimates the integration error of the
tight run, assuming the global error is proportional to the tolerance (what the
accuracy study of the integrator measures), and is the ``integrator`` part of
every tolerance on a limit quantity.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from ncflow._validation import (
    InvalidArgument,
    check_choice,
    check_int,
    check_positive,
    check_range,
    round_up,
)
from ncflow.data import Dataset
from ncflow.flow import RTOL_MAX, RTOL_MIN, FlowResult, Norm2Above, solve_flow
from ncflow.flow.events import binary_groups, check_groups, default_groups
from ncflow.flow.polar import MIN_NEURON_NORM2, neuron_norms
from ncflow.losses import BINARY_LOSSES, LOSSES
from ncflow.network import ACTIVATIONS, FAULT_ACTIVATIONS, Parameters, Problem

# A second run at this multiple of rtol estimates the integration error.
LOOSE_FACTOR = 10.0
# Largest RunSettings.rtol, so that the loose run stays within solve_flow's range.
RTOL_MAX_TIGHT = RTOL_MAX / LOOSE_FACTOR
# Trained runs kept per process. A suite example's tight and loose runs pickle
# to about 60 kB, so 1024 runs hold about 60 MB, and a thorough profile of 500
# examples trains each example once for all the claims that share it.
CACHE_SIZE = 1024

# Methods of a trained run: the adaptive integrator, or fixed-step gradient
# descent with RunSettings.step.
RUN_METHODS = ("adaptive", "euler")

FAULTS = (
    "relu_derivative_one",
    "wrong_s",
    "logistic_without_factor_2",
    "large_step",
    "preactivation_features",
    "wrong_pseudo_labels",
    "softmax_wrong_axis",
    "mean_loss",
)


@dataclass(frozen=True)
class Example:
    """One example of the theorem's setting.

    Attributes
    ----------
    dataset : Dataset
    shapes : Parameters
        ``theta_0``; the initial weights are ``eps * shapes``.
    eps : float
        Initial scale.
    loss : str
        ``"exponential"``, ``"logistic"`` (scalar output) or ``"cross_entropy"``.
    activation : str
        ``"relu"``, or ``"linear"`` for the exploration without ReLU.
    groups : sequence of int, optional
        Class of each neuron (the partition ``N_1..N_K``), stored as a tuple;
        default by the sign of ``v_j0`` (binary) or ``argmax_k v_j0[k]``. Binary
        groups must be that default, the theorem's ``N_+`` and ``N_-``.
    balanced : bool
        Whether the shapes are meant to satisfy A2 (balanced, norm <= 1).
    faults : tuple of str
        Planted implementation faults (``FAULTS``), for the power tests.
    label : str
        Where the example came from (strategy, explicit case, record file).
    """

    dataset: Dataset
    shapes: Parameters
    eps: float
    loss: str
    activation: str = "relu"
    groups: tuple | None = None
    balanced: bool = True
    faults: tuple = ()
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, Dataset):
            raise InvalidArgument(
                f"dataset must be an ncflow.data.Dataset, got "
                f"{type(self.dataset).__name__}; build one with "
                "Dataset.from_arrays(X, y)"
            )
        if not isinstance(self.shapes, Parameters):
            raise InvalidArgument(
                f"shapes must be ncflow.network.Parameters, got "
                f"{type(self.shapes).__name__}; pass Parameters(W0, V0)"
            )
        check_positive("eps", self.eps, fix="give a small positive scale such as 1e-6")
        self._check_eps_above_underflow()
        self._check_loss_and_activation()
        self._check_flags()
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise InvalidArgument(
                f"faults contains {unknown[0]!r}; known faults are {', '.join(FAULTS)}"
            )
        if self.groups is not None:
            # Stored as a tuple of int, so that a list read from a record and
            # the same tuple give one fingerprint.
            groups = check_groups(
                "groups", self.groups, self.shapes.width, self.dataset.K
            )
            object.__setattr__(self, "groups", tuple(int(k) for k in groups))
            if self.binary:
                self._check_binary_groups()

    def _check_binary_groups(self) -> None:
        """Reject binary groups that are not ``N_+`` and ``N_-`` by the sign of
        ``v_j0``: the binary claims are about that partition, and with another
        one C4 failed on an example that meets A1 to A3."""
        expected = binary_groups(self.problem(), self.shapes.V)
        wrong = np.flatnonzero(np.asarray(self.groups) != expected)
        if wrong.size:
            j = int(wrong[0])
            raise InvalidArgument(
                f"groups[{j}]={self.groups[j]} disagrees with the sign of "
                f"v_{j}(0) = {float(self.shapes.V[0, j]):.6g}: a binary example's "
                f"groups are N_+ and N_- by that sign, so neuron {j} is in class "
                f"{int(expected[j])}; omit groups or pass {tuple(expected.tolist())}"
            )

    def _check_eps_above_underflow(self) -> None:
        """Reject an ``eps`` at which ``eps^2 ||(w_j0, v_j0)||^2`` of a neuron is
        below float64's smallest normal number, the limit of the polar
        coordinates that every adaptive run uses.

        Such an example cannot be trained, but its hypotheses hold, so it is an
        invalid input rather than an INCONCLUSIVE verdict. A zero shape is left
        to ``solve_flow``, which names it.
        """
        norms = neuron_norms(self.shapes)
        nonzero = np.flatnonzero(norms > 0)
        if nonzero.size == 0:
            return
        j = int(nonzero[np.argmin(norms[nonzero])])
        eps_min = self.min_eps()
        if self.eps < eps_min:
            raise InvalidArgument(
                f"eps={self.eps!r} is invalid: it must be >= {round_up(eps_min):.3g} "
                f"for these shapes. That is sqrt({MIN_NEURON_NORM2:.3g}) / "
                f"{norms[j]:.3g}, with {MIN_NEURON_NORM2:.3g} the smallest normal "
                f"float64 number and {norms[j]:.3g} the smallest shape norm "
                f"||(w_j0, v_j0)|| (neuron {j}). Below it the squares of the "
                "weights underflow, and the adaptive method needs them"
            )

    def _check_flags(self) -> None:
        """Check the types of ``faults``, ``balanced`` and ``label``, and store
        ``faults`` as a tuple, so that a list read from a record and the same
        tuple give one fingerprint."""
        if not isinstance(self.faults, (tuple, list)):
            raise InvalidArgument(
                f"faults={self.faults!r} is invalid: it must be a tuple or list of "
                f"fault names, such as ('wrong_s',), not {type(self.faults).__name__}"
            )
        object.__setattr__(self, "faults", tuple(self.faults))
        if not isinstance(self.balanced, (bool, np.bool_)):
            raise InvalidArgument(
                f"balanced={self.balanced!r} is invalid: it must be True or False, "
                f"not {type(self.balanced).__name__}"
            )
        object.__setattr__(self, "balanced", bool(self.balanced))
        if not isinstance(self.label, str):
            raise InvalidArgument(
                f"label={self.label!r} is invalid: it must be a string, such as "
                f"'hand-made' or '' for none, not {type(self.label).__name__}"
            )

    def min_eps(self) -> float:
        """Return the smallest ``eps`` these shapes accept: ``sqrt(MIN_NEURON_NORM2)``
        over the smallest nonzero shape norm ``||(w_j0, v_j0)||``, or 0.0 when every
        shape is zero."""
        norms = neuron_norms(self.shapes)
        nonzero = norms[norms > 0]
        if nonzero.size == 0:
            return 0.0
        return math.sqrt(MIN_NEURON_NORM2) / float(np.min(nonzero))

    def _check_loss_and_activation(self) -> None:
        check_choice("loss", self.loss, LOSSES)
        if self.loss in BINARY_LOSSES and self.dataset.K != 2:
            raise InvalidArgument(
                f"loss={self.loss!r} has a scalar output for two classes, but the "
                f"dataset {self.dataset.name!r} has K={self.dataset.K} classes; "
                "use loss='cross_entropy'"
            )
        # The planted fault is accepted but not offered in the message.
        if self.activation not in FAULT_ACTIVATIONS:
            check_choice("activation", self.activation, ACTIVATIONS)

    @property
    def binary(self) -> bool:
        return self.loss != "cross_entropy"

    def problem(self) -> Problem:
        loss = self.loss
        if "logistic_without_factor_2" in self.faults and loss == "logistic":
            loss = "logistic_half"
        if "mean_loss" in self.faults:
            loss = loss + "_mean"
        if "softmax_wrong_axis" in self.faults and loss.startswith("cross_entropy"):
            loss = "cross_entropy_wrong_axis"
        signs = self.dataset.signs if self.binary else None
        return Problem(
            self.dataset.X,
            self.dataset.labels,
            self.dataset.K,
            loss,
            self.activation,
            signs,
        )

    def params0(self) -> Parameters:
        return self.shapes.scaled(self.eps)

    def neuron_groups(self) -> np.ndarray:
        if self.groups is not None:
            return np.asarray(self.groups, dtype=np.int64)
        return default_groups(self.problem(), self.shapes.V)

    def with_eps(self, eps: float) -> Example:
        return replace(self, eps=float(eps))

    def fingerprint(self) -> str:
        """Content hash of everything that determines the trained run.

        It covers every input of :meth:`problem` and of :func:`train`: ``X``,
        the class indices, ``K``, the shapes, ``eps``, the loss, the
        activation, the groups and the faults. For a binary loss it also covers
        the signs ``y_i``, because ``Dataset.signs`` derives them from the class
        names. ``balanced`` and ``label`` change no run and are left out.
        """
        digest = hashlib.sha256()
        arrays = [self.dataset.X, self.dataset.labels, self.shapes.W, self.shapes.V]
        if self.binary:
            arrays.append(self.dataset.signs)
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
            digest.update(str(array.shape).encode())
        text = repr(
            (
                self.dataset.K,
                self.eps,
                self.loss,
                self.activation,
                self.groups,
                self.faults,
            )
        )
        digest.update(text.encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class RunSettings:
    """Integrator settings and the late-phase target of the checks.

    Attributes
    ----------
    rtol, atol : float
        Tolerances of the adaptive integrator.
    norm2_target : float
        The run ends at ``||theta||_F^2 = norm2_target``; limit claims are
        checked there.
    reference_ratio : float
        Limit claims extrapolate the trajectory's own remaining distance to its
        limit from the change between ``norm2_target / reference_ratio`` and
        the end.
    norm2_max : float
        Before a limit claim FAILs, the run is repeated at ``norm2_target``
        times ``reference_ratio``, ``reference_ratio^2``, ... up to this
        ``||theta||_F^2`` (``common.refine_norm``). The binary and three-class
        flows of the tests reach ``1e12`` in well under a second.
    max_steps : int
        Step budget of each run.
    eps_factor, eps_floor : float
        Before a FAIL where the theorem leaves ``eps`` unquantified, the example
        is repeated at ``eps / eps_factor``, ``eps / eps_factor^2``, ... down to
        ``eps_floor``, or to ``Example.min_eps()`` where that is larger (the
        reason of the FAIL then states that ``eps_floor`` was not reached).
    method, step : str, float
        ``"adaptive"``, or ``"euler"`` with the fixed ``step`` (planted
        large-step fault).

    Raises
    ------
    InvalidArgument
        At construction, for a value that no run can use: ``rtol`` outside
        ``[RTOL_MIN, RTOL_MAX_TIGHT]`` (``solve_flow``'s range, with room for
        the loose run at ``LOOSE_FACTOR * rtol``), ``atol`` outside
        ``[0, 1e-2]``, a target or floor that is not positive,
        ``norm2_max < norm2_target``, ``reference_ratio`` or ``eps_factor`` at
        most 1, ``max_steps < 1``, an unknown method, or a ``step`` missing for
        ``"euler"`` or given with ``"adaptive"``.
    """

    rtol: float = 1e-8
    atol: float = 1e-12
    norm2_target: float = 1e10
    reference_ratio: float = 100.0
    norm2_max: float = 1e12
    max_steps: int = 100_000
    eps_factor: float = 100.0
    eps_floor: float = 1e-12
    method: str = "adaptive"
    step: float | None = None

    def __post_init__(self) -> None:
        check_range(
            "rtol",
            self.rtol,
            RTOL_MIN,
            RTOL_MAX_TIGHT,
            fix=(
                f"use a value in [{RTOL_MIN:g}, {RTOL_MAX_TIGHT:g}]. Each run is "
                f"repeated at {LOOSE_FACTOR:g} * rtol to estimate its error, and "
                f"solve_flow accepts rtol up to {RTOL_MAX:g}"
            ),
        )
        check_range(
            "atol", self.atol, 0.0, 1e-2, fix="use a value in [0, 0.01], e.g. 1e-12"
        )
        self._check_targets()
        check_int(
            "max_steps", self.max_steps, 1, fix="give a positive budget, e.g. 100000"
        )
        check_range(
            "eps_factor",
            self.eps_factor,
            1.0,
            low_open=True,
            fix="each repeat divides eps by it, such as eps_factor=100",
        )
        check_positive(
            "eps_floor", self.eps_floor, fix="give a small positive floor, e.g. 1e-12"
        )
        self._check_method()

    def _check_targets(self) -> None:
        check_positive(
            "norm2_target",
            self.norm2_target,
            fix="give the ||theta||_F^2 at which the run ends, such as 1e8",
        )
        check_range(
            "reference_ratio",
            self.reference_ratio,
            1.0,
            low_open=True,
            fix="each repeat multiplies norm2_target by it, such as 100",
        )
        check_positive("norm2_max", self.norm2_max)
        if self.norm2_max < self.norm2_target:
            raise InvalidArgument(
                f"norm2_max={self.norm2_max!r} is invalid: it must be >= "
                f"norm2_target={self.norm2_target!r}, the ||theta||_F^2 of the first "
                "run; raise norm2_max or lower norm2_target"
            )

    def _check_method(self) -> None:
        check_choice("method", self.method, RUN_METHODS)
        if self.method == "adaptive":
            if self.step is not None:
                raise InvalidArgument(
                    f"step={self.step!r} is invalid with method='adaptive', which "
                    "chooses its own steps: step sets the fixed step of "
                    "method='euler' only. Drop step, or set method='euler'"
                )
        elif self.step is None:
            raise InvalidArgument(
                "method='euler' needs step=eta > 0, the fixed step (e.g. step=1e-3)"
            )
        else:
            check_positive("step", self.step)


@dataclass
class Run:
    """A trained example: the tight run and the loose run of the same flow."""

    example: Example
    settings: RunSettings
    result: FlowResult
    loose: FlowResult | None
    problem: Problem
    groups: np.ndarray
    derived: dict = field(default_factory=dict)

    @property
    def reached_target(self) -> bool:
        """True when the run ended at ``||theta||^2 >= norm2_target``."""
        return (
            self.result.success
            and self.result.norm2 >= self.settings.norm2_target * (1 - 1e-6)
        )

    def integrator_summary(self) -> dict:
        summary = self.result.summary()
        if self.loose is not None:
            summary["loose_run"] = {
                "rtol": self.loose.settings.get("rtol"),
                "status": self.loose.status,
                "norm2": self.loose.norm2,
            }
        return summary


_CACHE: OrderedDict[tuple, Run] = OrderedDict()


def _integrate(
    example: Example, settings: RunSettings, problem: Problem, rtol: float
) -> FlowResult:
    params0 = example.params0()
    # Norm2Above fires on an upward crossing. A start at or above the target (a
    # large eps) would never cross it, so the run stops at ten times its
    # starting ||theta||^2 instead, and never runs without an end.
    events = [Norm2Above(max(settings.norm2_target, 10 * params0.norm2()))]
    groups = example.neuron_groups()
    if settings.method == "euler" or "large_step" in example.faults:
        step = settings.step
        if "large_step" in example.faults:
            step = large_fault_step(problem)
        return solve_flow(
            problem,
            params0,
            method="euler",
            step=step,
            events=events,
            groups=groups,
            max_steps=settings.max_steps,
            records_per_decade=8,
        )
    return solve_flow(
        problem,
        params0,
        method="adaptive",
        rtol=rtol,
        atol=settings.atol,
        events=events,
        groups=groups,
        max_steps=settings.max_steps,
        records_per_decade=8,
    )


def large_fault_step(problem: Problem) -> float:
    """A fixed step far beyond stability: ten times ``2 / (n X_max^2)``, where
    ``n X_max^2`` bounds the curvature of the summed loss at small weights once
    ``||theta||`` is of order one."""
    x_max = float(np.max(np.linalg.norm(problem.X, axis=1)))
    return 10 * 2.0 / (problem.n * x_max**2)


def train(example: Example, settings: RunSettings, *, loose: bool = True) -> Run:
    """Integrate ``example`` (cached per process); see the module docstring."""
    key = (example.fingerprint(), settings, loose)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    problem = example.problem()
    result = _integrate(example, settings, problem, settings.rtol)
    loose_result = None
    if loose and settings.method == "adaptive" and "large_step" not in example.faults:
        loose_rtol = LOOSE_FACTOR * settings.rtol
        loose_result = _integrate(example, settings, problem, loose_rtol)
    run = Run(example, settings, result, loose_result, problem, example.neuron_groups())
    _CACHE[key] = run
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return run


def clear_cache() -> None:
    _CACHE.clear()


def late_records(result: FlowResult, norm2_min: float) -> list[int]:
    """Indices of the trajectory records with ``||theta||^2 >= norm2_min``."""
    norm2 = result.trajectory.norm2
    return [int(i) for i in np.flatnonzero(norm2 >= norm2_min)]


def record_at_or_below(result: FlowResult, norm2: float) -> int | None:
    """Index of the last record with ``||theta||^2 <= norm2`` (grid or end)."""
    trajectory = result.trajectory
    keep = np.flatnonzero(
        (trajectory.norm2 <= norm2 * (1 + 1e-9)) & (trajectory.kind != "event")
    )
    return int(keep[-1]) if keep.size else None


def direction(params: Parameters) -> Parameters:
    """``theta / ||theta||_F``."""
    return params.scaled(1.0 / math.sqrt(params.norm2()))


__all__ = [
    "CACHE_SIZE",
    "FAULTS",
    "LOOSE_FACTOR",
    "RTOL_MAX_TIGHT",
    "Example",
    "Run",
    "RunSettings",
    "clear_cache",
    "direction",
    "late_records",
    "large_fault_step",
    "record_at_or_below",
    "train",
    "Dataset",
]
