"""Training a two-layer ReLU network on a dataset: the main job of ``ncflow train``.

Full-batch training is fixed-step gradient descent on the summed loss, run by
:func:`ncflow.flow.solve_flow` with ``method="euler"``, so that after ``k`` steps of
size ``eta`` the run is at gradient-flow time ``t = eta k``. Minibatch SGD is a plain
loop in this module. Both record the state on the same geometric grid of step
counts, and :func:`summarize` reports the quantities of the MNIST experiment of Min,
Zhu and Vidal (NeurIPS 2025, "Neural Collapse under Gradient Flow on Shallow ReLU
Networks for Orthogonally Separable Data").

| symbol | code name | shape | meaning |
|---|---|---|---|
| `X` | `dataset.X`, `problem.X` | (n, D) | samples, one row `x_i` per sample |
| `X_max` | `x_max` | scalar | largest sample norm `max_i ||x_i||` |
| `W` | `params.W` | (D, h) | input weights, column `w_j` per neuron |
| `V` | `params.V` | (d_y, h) | output weights; `d_y = 1` for a binary loss, else `K` |
| `phi` | `phi` | (n, h) | learned features `relu(W^T x_i)`, one row per sample |
| `theta` | `params` | | `(W, V)`, with `||theta||^2 = ||W||_F^2 + ||V||_F^2` |
| `L` | `log_loss` (as `log L`) | scalar | loss summed over the samples (not averaged) |
| `eta` | `step` | scalar | fixed step size |
| `k` | `steps` | int | number of steps taken |
| `t` | `log_t` (as `log t`) | scalar | gradient-flow time `eta k` |
| `B` | `batch_size` | int | minibatch size of SGD |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np

from ncflow._numeric import power_of_two_scale
from ncflow._validation import (
    InvalidArgument,
    check_choice,
    check_int,
    check_positive,
)
from ncflow.data import Dataset
from ncflow.flow import FlowResult, FlowState, Trajectory, default_groups, solve_flow
from ncflow.flow import separation_report as _separation_report
from ncflow.flow.result import (
    STATUS_BUDGET,
    STATUS_END_OF_SPAN,
    STATUS_MESSAGES,
    STATUS_NONFINITE,
    STATUS_STATIONARY,
    ActivationEvent,
)
from ncflow.geometry import separability
from ncflow.init import balanced_init, balanced_shapes, gaussian_init, semilocal_shapes
from ncflow.losses import loss_terms_unchecked
from ncflow.metrics import MetricUndefined, nc1_paper, nc2_paper, nc3_paper, nc_summary
from ncflow.network import (
    ACTIVATIONS,
    Parameters,
    Problem,
    activation_mask,
    check_outputs,
    features,
    gradient_arrays,
    outputs,
)

INITS = ("gaussian", "balanced", "semilocal")

DEFAULT_WIDTH = 50
# Variance of every weight under the Gaussian initialisation, as in the MNIST
# experiment of Min, Zhu and Vidal.
DEFAULT_GAUSSIAN_VARIANCE = 1e-6
# Initial scale eps of the balanced and semi-local initialisations. It gives each
# neuron ||w_j(0)|| <= 1e-3, the order of one Gaussian weight at variance 1e-6.
DEFAULT_EPS = 1e-3
# Steps of the default run. On digits 0, 1, 2 with the default step this reaches
# t = 12.6, 100 % training accuracy and a summed loss of about 0.02. From step
# 10000 to 20000, NC1 and the rank-3 feature error change by less than 1 %, NC3 by
# 1.3 % and NC2 by 5 % (measured once, seed 0).
DEFAULT_STEPS = 20_000
# Most steps of one run: about 12 days at 1 ms a step, and far inside int64 (the
# record grid is built in int64).
MAX_STEPS = 10**9
# Default step eta = STEP_FACTOR / (n X_max); see default_step for why it is stable.
STEP_FACTOR = 1.0
RECORDS_PER_DECADE = 10
# Largest memory that the records of one solve_flow call may take. The Euler solver
# stores a record at every step that changes the activation pattern, which on data
# that break A1 is nearly every step, so a long run is split into calls of at most
# this many bytes of records.
RECORD_MEMORY_BUDGET = 64 * 2**20


def default_step(X: np.ndarray) -> float:
    """Return the default fixed step ``eta = 1 / (n X_max)`` for a summed loss.

    Stability at the start: on a fixed activation pattern ``f(x_i)`` is bilinear in
    ``(W, V)``, so the Hessian of ``L = sum_i l_i`` is
    ``sum_i J_i^T H_i J_i + sum_i <g_i, d^2 f_i>``, with ``g_i`` and ``H_i`` the
    first and second derivatives of ``l_i`` in ``f_i``. Since
    ``||J_i||^2 <= ||x_i||^2 ||theta||^2`` and ``|<g_i, d^2 f_i>| <= ||g_i|| ||x_i||``,

        lambda_max <= sum_i ||x_i|| (||g_i|| + ||H_i|| ||x_i|| ||theta||^2).

    At a small initialisation ``f ~ 0``, so ``||g_i||`` is ``sqrt(1 - 1/K)`` for the
    cross-entropy and 1 for the binary losses, and ``lambda_max <= n X_max`` up to a
    term of relative order ``X_max ||theta(0)||^2`` (1 % at the default Gaussian
    initialisation on the digits). The step therefore has ``eta lambda_max <= 1``,
    below the limit 2 of gradient descent on a quadratic. The same bound holds for
    the SGD loss ``(n/B) sum_{i in batch} l_i``.

    Stability later: for all three losses ``||g_i|| <= sqrt(2) l_i`` and
    ``||H_i|| <= 2 l_i``, so ``lambda_max <= X_max L (sqrt(2) + 2 X_max ||theta||^2)``.
    Once the data are fitted ``L`` falls like ``1/(t log t)`` while ``||theta||^2``
    grows like ``log t``, so the curvature falls like ``1/t``.

    NOTE: between the two phases the bound is loose and proves nothing. On digits
    0, 1, 2 with the default settings, ``eta lambda_max`` (Lanczos on the exact
    Hessian of the current pattern) peaks at 0.17 at the start and is 0.004 at
    step 3000; other data may behave differently.

    Parameters
    ----------
    X : ndarray, shape (n, D)
        Samples, none of them zero.

    Returns
    -------
    float
        ``STEP_FACTOR / (n X_max)``, in units of gradient-flow time per step.
    """
    n = X.shape[0]
    x_max = float(np.max(np.linalg.norm(X, axis=1)))
    return STEP_FACTOR / (n * x_max)


def curvature_bound(problem: Problem, params: Parameters) -> float:
    """Bound the Hessian's spectral norm on the current activation pattern.

    The bound, derived in :func:`default_step`, is
    ``||grad^2 L||_2 <= sum_i ||x_i|| (||g_i|| + ||H_i||_2 ||x_i|| ||theta||^2)``.
    Gradient descent with step ``eta`` is stable near ``theta`` when ``eta`` times
    this bound is below 2.

    Parameters
    ----------
    problem : Problem
    params : Parameters

    Returns
    -------
    float
        The bound, in units of loss per squared parameter.
    """
    f = check_outputs(problem, params)
    terms = loss_terms_unchecked(f, problem.targets, problem.loss)
    scales = np.exp(terms.log_scales)
    gradient_norms = scales * np.linalg.norm(terms.unit_gradients, axis=1)
    hessian_norms = scales * np.linalg.norm(terms.unit_hessians, ord=2, axis=(1, 2))
    sample_norms = np.linalg.norm(problem.X, axis=1)
    norm2 = params.norm2()
    return float(
        np.sum(sample_norms * (gradient_norms + hessian_norms * sample_norms * norm2))
    )


def steps_for_time(time: float, step: float) -> int:
    """Return the number of steps ``ceil(time / step)`` that reach ``time``, at least 1.

    A ratio within 4 eps (relative) below an integer ``N`` counts as ``N``: the
    product ``time = N * step`` and the division ``time / step`` each round once,
    by at most eps/2 relative, so ``time = 100 * step`` gives 100 steps.
    """
    time = check_positive("time", time)
    step = check_positive("step", step)
    ratio = time / step
    return max(1, math.ceil(ratio * (1.0 - 4.0 * np.finfo(np.float64).eps)))


def record_steps(total: int, per_decade: int = RECORDS_PER_DECADE) -> np.ndarray:
    """Return the step counts at which a run of ``total`` steps is recorded.

    Every step up to ``per_decade``, then ``per_decade`` geometric points per decade,
    and always step 0 and step ``total``; int64, increasing, without repeats.
    """
    total = check_int("total", total, 1)
    decades = math.log10(total)
    geometric = np.round(np.logspace(0.0, decades, int(per_decade * decades) + 2))
    dense = np.arange(0, min(per_decade, total) + 1)
    steps = np.concatenate([dense, geometric.astype(np.int64), [total]])
    return np.unique(steps[steps <= total]).astype(np.int64)


def initial_parameters(
    problem: Problem,
    init: str,
    init_scale: float,
    width: int,
    rng: np.random.Generator,
) -> Parameters:
    """Draw ``theta(0)`` for ``problem`` with one of the initialisations of ``INITS``.

    ``"gaussian"``: every weight from ``N(0, init_scale)`` (``init_scale`` is the
    variance). ``"balanced"``: balanced Gaussian shapes scaled by ``eps =
    init_scale``. ``"semilocal"``: neuron ``j`` belongs to class ``j mod K`` and
    copies ``(x_i / ||x_i||, e~_{y_i})`` of a random sample of that class, scaled by
    ``eps = init_scale``. It needs ``K`` outputs and ``width >= K``.
    """
    init = check_choice("init", init, INITS)
    if init == "gaussian":
        return gaussian_init(rng, problem.D, width, problem.num_outputs, init_scale)
    if init == "balanced":
        shapes = balanced_shapes(rng, problem.D, width, problem.num_outputs)
        return balanced_init(shapes, init_scale)

    if problem.binary:
        raise InvalidArgument(
            f"init='semilocal' is invalid with the binary loss {problem.loss!r}: "
            "semi-local shapes need K outputs; use loss='cross_entropy' or "
            "init='balanced'"
        )
    if width < problem.num_classes:
        raise InvalidArgument(
            f"width={width} is invalid with init='semilocal': every class needs a "
            f"neuron, so the width must be >= K={problem.num_classes}"
        )
    groups = np.arange(width) % problem.num_classes
    shapes = semilocal_shapes(
        rng, problem.X, problem.labels, groups, problem.num_classes
    )
    return balanced_init(shapes, init_scale)


@dataclass(frozen=True)
class TrainingSettings:
    """Every setting that determines a training run.

    ``batch_size`` is None for full-batch gradient descent. ``steps`` is the number
    of steps requested; a run that stops early reports the steps it took.
    """

    width: int
    init: str
    init_scale: float
    loss: str
    activation: str
    steps: int
    step: float
    batch_size: int | None
    seed: int

    @property
    def method(self) -> str:
        """``"gradient_descent"`` (full batch) or ``"sgd"`` (minibatches)."""
        return "gradient_descent" if self.batch_size is None else "sgd"


@dataclass
class SgdHistory:
    """Outcome of a minibatch SGD run, recorded like a flow.

    Attributes
    ----------
    status : int
        A status of :data:`ncflow.flow.STATUS_MESSAGES`: 0 when every step was taken.
    message : str
    params : Parameters
        Final ``theta``. After a divergence: finite weights, whose outputs may
        have overflowed.
    steps : int
        Steps taken.
    epochs : float
        Passes over the data: samples visited divided by ``n``.
    separation_log_t : float or None
        ``log t`` of the first step after which the pattern was separated, with
        the groups of ``v_j(0)``; None if never.
    trajectory : Trajectory
        Records on the grid of :func:`record_steps`, with the full summed loss.
    pattern : ndarray of bool, shape (n, h)
        Final activation pattern.
    """

    status: int
    message: str
    params: Parameters
    steps: int
    epochs: float
    separation_log_t: float | None
    trajectory: Trajectory
    pattern: np.ndarray


@dataclass
class TrainingRun:
    """A finished training run: data, settings, result and recorded trajectory.

    Exactly one of ``flow`` (full batch) and ``sgd`` (minibatches) is set.

    Attributes
    ----------
    dataset : Dataset
    problem : Problem
    settings : TrainingSettings
    params0, params : Parameters
        ``theta(0)`` and the final ``theta``.
    groups0 : ndarray of int, shape (h,)
        Class of each neuron from ``v_j(0)`` (sign or argmax), used to track the
        separation time.
    flow : FlowResult or None
        The gradient-descent run, with counters summed over its ``solve_flow`` calls
        and the trajectory on the grid of :func:`record_steps`.
    sgd : SgdHistory or None
    runtime_s : float
        Wall-clock seconds of the training loop.
    """

    dataset: Dataset
    problem: Problem
    settings: TrainingSettings
    params0: Parameters
    params: Parameters
    groups0: np.ndarray
    flow: FlowResult | None
    sgd: SgdHistory | None
    runtime_s: float

    @property
    def status(self) -> int:
        return self.flow.status if self.flow is not None else self.sgd.status

    @property
    def message(self) -> str:
        return self.flow.message if self.flow is not None else self.sgd.message

    @property
    def completed(self) -> bool:
        """Whether every requested step was taken."""
        return self.status == STATUS_END_OF_SPAN

    @property
    def diverged(self) -> bool:
        """Whether the run stopped on a non-finite state (see :func:`summarize`)."""
        return self.status == STATUS_NONFINITE

    @property
    def records_before_divergence(self) -> int:
        """Number of leading trajectory records that precede a diverged last state.

        The last state of a diverged run is recorded at the final step count, by the
        end record and sometimes a grid record before it, and these come last. For
        a run that did not diverge, this is the number of records.
        """
        trajectory = self.trajectory
        if not self.diverged:
            return len(trajectory)
        return int(np.count_nonzero(trajectory.log_t < self.log_t))

    @property
    def trajectory(self) -> Trajectory:
        return self.flow.trajectory if self.flow is not None else self.sgd.trajectory

    @property
    def steps(self) -> int:
        """Steps taken."""
        return self.flow.n_accepted if self.flow is not None else self.sgd.steps

    @property
    def log_t(self) -> float:
        """``log t`` of the final state, ``t = eta k`` (nominal for SGD)."""
        return math.log(self.settings.step * self.steps) if self.steps else -math.inf

    @property
    def separation_log_t(self) -> float | None:
        if self.flow is not None:
            return self.flow.separation_log_t
        return self.sgd.separation_log_t


def train(
    dataset: Dataset,
    *,
    width: int = DEFAULT_WIDTH,
    init: str = "gaussian",
    init_scale: float | None = None,
    loss: str | None = None,
    activation: str = "relu",
    steps: int | None = None,
    time: float | None = None,
    step: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingRun:
    """Train ``f(x) = V relu(W^T x)`` on ``dataset`` from a small initialisation.

    Full batch (``batch_size=None``): gradient descent on the summed loss, by
    :func:`ncflow.flow.solve_flow` with ``method="euler"``, so the run ends at
    gradient-flow time ``t = step * steps``. Minibatch SGD (``batch_size=B``): each
    epoch visits the samples in a fresh random order, in batches of ``B`` (the last
    one smaller when ``B`` does not divide ``n``), and each step descends on
    ``(n/|batch|) sum_{i in batch} l_i``, whose expectation is the summed loss ``L``.
    SGD time ``t = step * k`` is gradient-flow time only nominally, because the
    iterates follow a noisy discretisation and not the flow.

    Parameters
    ----------
    dataset : Dataset
    width : int
        Number of neurons ``h >= 1``.
    init : {"gaussian", "balanced", "semilocal"}
        See :func:`initial_parameters`.
    init_scale : float, optional
        Variance of the Gaussian weights (default ``1e-6``), or ``eps`` of the
        balanced and semi-local initialisations (default ``1e-3``).
    loss : {"exponential", "logistic", "cross_entropy"}, optional
        Default: ``"cross_entropy"`` for ``K > 2``, ``"exponential"`` for ``K = 2``.
    activation : {"relu", "linear"}
    steps, time : int or float, optional
        Number of steps, or the gradient-flow time ``T`` to reach
        (``ceil(T / step)`` steps); at most one. Default: ``DEFAULT_STEPS`` steps.
    step : float, optional
        Fixed step ``eta``; default :func:`default_step` of the data.
    batch_size : int, optional
        Minibatch size ``1 <= B <= n``; None for full-batch gradient descent.
    seed : int
        Seed of the initialisation and of the minibatch order, ``>= 0``.
    progress : callable, optional
        ``progress(steps_done, steps_total)``, called after every step.

    Returns
    -------
    TrainingRun

    Raises
    ------
    InvalidArgument
        If a setting is invalid for the dataset.
    """
    if not isinstance(dataset, Dataset):
        raise InvalidArgument(
            f"dataset={dataset!r} is invalid: it must be an ncflow.data.Dataset"
        )
    settings, problem = _validated_settings(
        dataset, width, init, init_scale, loss, activation, steps, time, step,
        batch_size, seed,
    )  # fmt: skip

    init_rng = np.random.default_rng(settings.seed)
    params0 = initial_parameters(
        problem, settings.init, settings.init_scale, settings.width, init_rng
    )
    groups0 = default_groups(problem, params0.V)

    start = perf_counter()
    # Overflow and invalid-value warnings of a diverging run are replaced by the
    # run's status and message.
    with np.errstate(over="ignore", invalid="ignore"):
        if settings.batch_size is None:
            flow = _gradient_descent(problem, params0, settings, groups0, progress)
            sgd, params = None, flow.params
        else:
            batch_rng = np.random.default_rng([settings.seed, 1])
            sgd = _sgd(problem, params0, settings, groups0, batch_rng, progress)
            flow, params = None, sgd.params
    runtime = perf_counter() - start

    return TrainingRun(
        dataset=dataset,
        problem=problem,
        settings=settings,
        params0=params0,
        params=params,
        groups0=groups0,
        flow=flow,
        sgd=sgd,
        runtime_s=runtime,
    )


def _validated_settings(
    dataset: Dataset,
    width,
    init,
    init_scale,
    loss,
    activation,
    steps,
    time,
    step,
    batch_size,
    seed,
) -> tuple[TrainingSettings, Problem]:
    width = check_int("width", width, 1, fix="use at least one neuron, e.g. 50")
    init = check_choice("init", init, INITS)
    if init_scale is None:
        init_scale = DEFAULT_GAUSSIAN_VARIANCE if init == "gaussian" else DEFAULT_EPS
    init_scale = check_positive(
        "init_scale", init_scale, fix="use a small positive scale such as 1e-6"
    )
    activation = check_choice("activation", activation, ACTIVATIONS)
    problem = Problem.from_dataset(dataset, loss, activation)

    if step is None:
        step = default_step(problem.X)
    step = check_positive(
        "step", step, fix=f"the default is {default_step(problem.X):.3g}"
    )
    if steps is not None and time is not None:
        raise InvalidArgument(
            f"steps={steps!r} and time={time!r} are both given; give one of them"
        )
    if time is not None:
        steps = steps_for_time(time, step)
        if steps > MAX_STEPS:
            raise InvalidArgument(
                f"time={time!r} needs {steps:.3g} steps of {step:.3g}, more than "
                f"{MAX_STEPS:.0e}; give a shorter time or a larger step"
            )
    elif steps is None:
        steps = DEFAULT_STEPS
    steps = check_int(
        "steps", steps, 1, MAX_STEPS, fix=f"take between 1 and {MAX_STEPS:.0e} steps"
    )

    if batch_size is not None:
        batch_size = check_int(
            "batch_size",
            batch_size,
            1,
            problem.n,
            fix=f"use 1..n={problem.n}, or None for full-batch gradient descent",
        )
    seed = check_int("seed", seed, 0)

    settings = TrainingSettings(
        width=width,
        init=init,
        init_scale=init_scale,
        loss=problem.loss,
        activation=activation,
        steps=steps,
        step=step,
        batch_size=batch_size,
        seed=seed,
    )
    return settings, problem


# --------------------------------------------------------------------------------
# Full-batch gradient descent
# --------------------------------------------------------------------------------


class _Records:
    """Rows of a :class:`Trajectory`, collected one state at a time."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, kind: str, log_t: float, state: FlowState) -> None:
        params = state.params
        self.rows.append(
            (log_t, state.log_loss, params.norm2(), params.W.copy(), params.V.copy(),
             state.pattern.copy(), kind)
        )  # fmt: skip

    def trajectory(self) -> Trajectory:
        columns = list(zip(*self.rows, strict=True))
        return Trajectory(
            log_t=np.array(columns[0]),
            log_loss=np.array(columns[1]),
            norm2=np.array(columns[2]),
            W=np.stack(columns[3]),
            V=np.stack(columns[4]),
            patterns=np.stack(columns[5]),
            kind=np.array(columns[6]),
        )


def _log_time(steps: int, step: float) -> float:
    return math.log(steps * step) if steps > 0 else -math.inf


def _shifted_log_time(offset_log_t: float, log_t: float) -> float:
    """``log(t_0 + t)`` from ``log t_0`` and ``log t``, where either may be ``-inf``."""
    if offset_log_t == -math.inf:
        return log_t
    return float(np.logaddexp(offset_log_t, log_t))


def _state(problem: Problem, params: Parameters, log_t: float) -> FlowState:
    pattern = activation_mask(problem.X @ params.W, problem.activation)
    return FlowState(problem, params, log_t, pattern)


def _steps_per_call(problem: Problem, width: int) -> int:
    """Steps per ``solve_flow`` call whose records fit ``RECORD_MEMORY_BUDGET``."""
    record_bytes = 8 * (problem.D + problem.num_outputs) * width + problem.n * width
    # Each call also keeps its start and end records.
    return max(1, RECORD_MEMORY_BUDGET // record_bytes - 2)


def _outputs_finite(problem: Problem, params: Parameters) -> bool:
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.all(np.isfinite(outputs(problem, params))))


def _divergence_message(failed_step: int, step: float) -> str:
    return (
        f"{STATUS_MESSAGES[STATUS_NONFINITE]}: at step {failed_step} of "
        f"step={step:.6g}; reduce the step"
    )


def _gradient_descent(
    problem: Problem,
    params0: Parameters,
    settings: TrainingSettings,
    groups0: np.ndarray,
    progress: Callable[[int, int], None] | None,
) -> FlowResult:
    """Run ``settings.steps`` steps of gradient descent as a chain of Euler calls.

    Each call starts from the previous call's final state. Since a step depends on
    the current ``theta`` only, the chain takes exactly the steps of one long call.
    A call ends at the next recorded step count, or earlier when its records would
    exceed ``RECORD_MEMORY_BUDGET``.
    """
    step, total = settings.step, settings.steps
    grid = record_steps(total)
    grid_set = set(grid.tolist())
    per_call = _steps_per_call(problem, params0.width)

    records = _Records()
    records.add("start", -math.inf, _state(problem, params0, -math.inf))
    params = params0
    done = 0
    nfev = 0
    events: list[ActivationEvent] = []
    separation_log_t = None
    status, message = STATUS_END_OF_SPAN, STATUS_MESSAGES[STATUS_END_OF_SPAN]

    while done < total:
        next_record = int(grid[np.searchsorted(grid, done, side="right")])
        budget = min(per_call, next_record - done)
        offset = done

        def report(steps_in_call: int, _log_t: float, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + steps_in_call, total)

        result = solve_flow(
            problem,
            params,
            method="euler",
            step=step,
            max_steps=budget,
            groups=groups0,
            progress=report,
        )
        nfev += result.nfev
        done = offset + result.n_accepted
        params = result.params
        offset_log_t = _log_time(offset, step)
        for event in result.activation_events:
            log_t = _shifted_log_time(offset_log_t, event.log_t)
            events.append(ActivationEvent(log_t, event.pairs, event.residual))
        if separation_log_t is None and result.separation_log_t is not None:
            separation_log_t = _shifted_log_time(offset_log_t, result.separation_log_t)

        if result.status == STATUS_NONFINITE:
            # The call's message counts the steps of this call only. It ends on
            # the state whose outputs overflowed, or on the last finite weights
            # when the next step overflowed the weights themselves.
            status = STATUS_NONFINITE
            failed = done if not _outputs_finite(problem, params) else done + 1
            message = _divergence_message(failed, step)
            break
        if result.status != STATUS_BUDGET:
            status, message = result.status, result.message
            break
        if done in grid_set and done < total:
            log_t = _log_time(done, step)
            records.add("grid", log_t, _state(problem, params, log_t))

    final = _state(problem, params, _log_time(done, step))
    records.add("end", final.log_t, final)
    trajectory = records.trajectory()
    return FlowResult(
        status=status,
        message=message,
        method="euler",
        params=params,
        log_t=final.log_t,
        log_loss=final.log_loss,
        norm2=final.norm2,
        nfev=nfev,
        njev=0,
        nlu=0,
        n_accepted=done,
        n_rejected=0,
        activation_events=events,
        t_events=[],
        fired=[],
        separation_log_t=separation_log_t,
        trajectory=trajectory,
        problem=problem,
        params0=params0,
        settings={
            "method": "euler",
            "step": step,
            "steps": total,
            "steps_per_call": per_call,
            "dtype": "float64",
        },
        pattern=final.pattern.copy(),
    )


# --------------------------------------------------------------------------------
# Minibatch SGD
# --------------------------------------------------------------------------------


def minibatch_loss_and_gradient(
    problem: Problem, W: np.ndarray, V: np.ndarray, batch: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Return the SGD loss ``(n/B) sum_{i in batch} l_i`` and its gradient.

    For a batch of ``B`` distinct samples drawn uniformly, every sample is in the
    batch with probability ``B/n``, so the expectation of this loss (and of its
    gradient) is the summed loss ``L`` over all ``n`` samples (and ``grad L``).

    Parameters
    ----------
    problem : Problem
    W : ndarray, shape (D, h)
    V : ndarray, shape (d_y, h)
    batch : ndarray of int, shape (B,)
        Distinct sample indices.

    Returns
    -------
    log_loss : float
        ``log((n/B) sum_{i in batch} l_i)``.
    grad_W, grad_V : ndarray, shapes (D, h) and (d_y, h)
    """
    batch = np.asarray(batch, dtype=np.int64)
    sub_problem = Problem(
        problem.X[batch],
        problem.labels[batch],
        problem.num_classes,
        problem.loss,
        problem.activation,
        None if problem.signs is None else problem.signs[batch],
    )
    log_loss, grad_W, grad_V = gradient_arrays(sub_problem, W, V)
    scale = problem.n / batch.size
    return log_loss + math.log(scale), scale * grad_W, scale * grad_V


def _sgd(
    problem: Problem,
    params0: Parameters,
    settings: TrainingSettings,
    groups0: np.ndarray,
    rng: np.random.Generator,
    progress: Callable[[int, int], None] | None,
) -> SgdHistory:
    step, total, batch_size = settings.step, settings.steps, settings.batch_size
    n = problem.n
    grid = set(record_steps(total).tolist())
    W, V = params0.W.copy(), params0.V.copy()

    records = _Records()
    state = _state(problem, params0, -math.inf)
    records.add("start", -math.inf, state)
    pattern = state.pattern
    separation_log_t = None
    if _separated(pattern, problem, groups0):
        separation_log_t = -math.inf

    status, message = STATUS_END_OF_SPAN, STATUS_MESSAGES[STATUS_END_OF_SPAN]
    order = rng.permutation(n)
    position = 0
    done = 0
    visited = 0
    while done < total:
        if position >= n:
            order, position = rng.permutation(n), 0
        batch = order[position : position + batch_size]
        position += batch_size

        _, grad_W, grad_V = minibatch_loss_and_gradient(problem, W, V, batch)
        W_next, V_next = W - step * grad_W, V - step * grad_V
        if not (np.all(np.isfinite(W_next)) and np.all(np.isfinite(V_next))):
            status = STATUS_NONFINITE
            message = _divergence_message(done + 1, step)
            break
        W, V = W_next, V_next
        done += 1
        visited += batch.size
        if progress is not None:
            progress(done, total)

        new_pattern = activation_mask(problem.X @ W, problem.activation)
        if not np.array_equal(new_pattern, pattern):
            pattern = new_pattern
            if separation_log_t is None and _separated(pattern, problem, groups0):
                separation_log_t = _log_time(done, step)
        if not pattern.any():
            status = STATUS_STATIONARY
            message = STATUS_MESSAGES[STATUS_STATIONARY]
            break
        if done in grid and done < total:
            log_t = _log_time(done, step)
            records.add("grid", log_t, _state(problem, Parameters(W, V), log_t))

    params = Parameters(W, V)
    final = _state(problem, params, _log_time(done, step))
    records.add("end", final.log_t, final)
    return SgdHistory(
        status=status,
        message=message,
        params=params,
        steps=done,
        epochs=visited / n,
        separation_log_t=separation_log_t,
        trajectory=records.trajectory(),
        pattern=final.pattern,
    )


def _separated(pattern: np.ndarray, problem: Problem, groups: np.ndarray) -> bool:
    separated, _ = _separation_report(
        pattern, problem.labels, groups, problem.num_classes
    )
    return separated


# --------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------


def rank_relative_error(M: np.ndarray, rank: int = 3) -> float:
    """Return the relative Frobenius error of the best rank-``rank`` approximation.

    ``||M - M_r||_F / ||M||_F = sqrt(sum_{i > r} s_i^2 / sum_i s_i^2)`` with ``s_i``
    the singular values of ``M`` itself, not centred (Eckart-Young). This is the
    measure of the MNIST experiment of Min, Zhu and Vidal (NeurIPS 2025), where 3
    components leave about 61 % of the raw digits 0-2 and 0.2 % of the learned
    features.

    Parameters
    ----------
    M : ndarray, shape (n, m)
    rank : int
        ``r >= 1``; the error is 0 when ``r >= min(n, m)``.

    Returns
    -------
    float
        In ``[0, 1]``.

    Raises
    ------
    MetricUndefined
        If ``M`` is zero.
    """
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2:
        raise InvalidArgument(f"M is invalid: it must be 2-D, got shape {M.shape}")
    rank = check_int("rank", rank, 1)
    # The error does not depend on the scale of M, whose squares must not
    # underflow (features of a start of scale 1e-300) or overflow.
    singular = np.linalg.svd(power_of_two_scale(M), compute_uv=False)
    total = float(np.sum(singular**2))
    if total == 0.0:
        raise MetricUndefined("the matrix is zero, so its relative error is undefined")
    return math.sqrt(float(np.sum(singular[rank:] ** 2)) / total)


def train_accuracy(problem: Problem, params: Parameters) -> float:
    """Return the share of samples that the network classifies correctly.

    A binary sample counts when its margin ``y_i f(x_i)`` is positive, a
    multi-class sample when its own class has the strictly largest output.
    """
    f = outputs(problem, params)
    if problem.binary:
        return float(np.mean(problem.signs * f[:, 0] > 0))
    own = f[np.arange(problem.n), problem.labels]
    others = f.copy()
    others[np.arange(problem.n), problem.labels] = -np.inf
    return float(np.mean(own > others.max(axis=1)))


def _head_class0_positive(problem: Problem, V: np.ndarray) -> np.ndarray:
    """Return the head as the NC metrics read it.

    They take class 0 as the ``+`` class of a scalar head (``ncflow.metrics``).
    Data whose classes are named -1 and +1 keep those signs
    (``Dataset.signs``), so with ``class_order=(-1, 1)`` class 0, named -1, is
    the ``-`` class. Its scalar head is then negated: read with class 0 as
    ``+``, a network that classified every sample scored NC3 = 2 and NC4 = 0.
    """
    if V.shape[0] != 1:
        return V
    class0 = problem.signs[problem.labels == 0]
    return V * class0[0] if class0.size else V


def summarize(run: TrainingRun) -> dict:
    """Summarise a run as a JSON-ready dict of the quantities of the MNIST experiment.

    Keys:

    - ``dataset``: name, ``n``, ``D``, ``K`` and class names;
    - ``settings``: every training setting, and
      ``step_times_curvature_bound_at_start``, ``eta`` times
      :func:`curvature_bound` at ``theta(0)`` (at most about 1 for the default step);
    - ``result``: status, steps, final ``t``, ``log L`` and ``L``, ``||theta||^2``
      and training accuracy;
    - ``rank3_relative_error``: :func:`rank_relative_error` of ``X`` and of ``phi``,
      None where undefined;
    - ``rankK_relative_error``: the same at rank ``K`` (with ``rank``), the rank of
      collapsed features whose class means form an orthogonal frame;
    - ``nc``: :func:`ncflow.metrics.nc_summary` of the final features;
    - ``a1``: how far the data are from A1 (``mu_s``, ``mu_d``, violating shares);
    - ``separation``: ``first_t`` and ``first_log_t``, the first step after which
      the pattern was separated with the groups of ``v_j(0)`` (None if never).
      Then ``at_end`` and ``reason_at_end``, with groups from the final output
      weights (argmax for ``K`` outputs, sign for one output), and
      ``regrouped_neurons``, the number of neurons whose group changed;
    - ``undefined``: the reason for each value reported as None;
    - ``runtime_s``: wall-clock seconds of training.

    A run that stopped on a non-finite state (``result["diverged"]``) keeps its
    last finite weights, whose outputs or loss overflow. Every value computed
    from that state other than ``L`` and ``||theta||^2`` would be noise, so the
    training accuracy, the rank errors of ``phi``, ``nc`` and the separation at
    the end are None, each with the reason under ``undefined``.
    """
    # Only a diverged run overflows here, because its last weights are huge.
    # Its metrics then come out as inf, NaN or undefined, as the summary reports.
    with np.errstate(over="ignore", invalid="ignore"):
        return _summary(run)


def _summary(run: TrainingRun) -> dict:
    dataset, problem, settings = run.dataset, run.problem, run.settings
    params = run.params
    phi = features(problem.X, params.W, problem.activation)
    log_loss = float(run.trajectory.log_loss[-1])
    diverged = run.diverged

    undefined: dict[str, str] = {}
    rank3: dict = {}
    rank_K: dict = {"rank": dataset.K}
    for name, errors, rank in (
        ("rank3_relative_error", rank3, 3),
        ("rankK_relative_error", rank_K, dataset.K),
    ):
        for key, matrix in (("X", problem.X), ("phi", phi)):
            try:
                errors[key] = rank_relative_error(matrix, rank)
            except MetricUndefined as error:
                errors[key] = None
                undefined[f"{name}.{key}"] = str(error)

    accuracy = None
    nc = None
    separation = _separation_summary(run, diverged=diverged)
    if diverged:
        reason = _divergence_reason(run)
        for key in ("rank3_relative_error.phi", "rankK_relative_error.phi"):
            undefined[key] = reason
        rank3["phi"] = rank_K["phi"] = None
        undefined["result.train_accuracy"] = reason
        undefined["nc"] = reason
        undefined["separation.at_end"] = reason
    else:
        accuracy = train_accuracy(problem, params)
        V = _head_class0_positive(problem, params.V)
        nc = nc_summary(V, phi, problem.labels, problem.num_classes)

    return {
        "dataset": {
            "name": dataset.name,
            "n": dataset.n,
            "D": dataset.D,
            "K": dataset.K,
            "class_names": list(dataset.class_names),
        },
        "settings": {
            "method": settings.method,
            "width": settings.width,
            "init": settings.init,
            "init_scale": settings.init_scale,
            "loss": settings.loss,
            "loss_reduction": "sum",
            "activation": settings.activation,
            "steps": settings.steps,
            "step": settings.step,
            "batch_size": settings.batch_size,
            "seed": settings.seed,
            "step_times_curvature_bound_at_start": settings.step
            * curvature_bound(problem, run.params0),
        },
        "result": {
            "status": run.status,
            "message": run.message,
            "completed": run.completed,
            "steps": run.steps,
            # Passes over the data (SGD), as the paper counts its training.
            "epochs": None if run.sgd is None else run.sgd.epochs,
            "t": _exp(run.log_t),
            "log_t": run.log_t,
            "time_is_nominal": settings.batch_size is not None,
            "log_loss": log_loss,
            "loss": _exp(log_loss),
            "norm2": float(run.trajectory.norm2[-1]),
            "train_accuracy": accuracy,
            "diverged": diverged,
        },
        "rank3_relative_error": rank3,
        "rankK_relative_error": rank_K,
        "nc": nc,
        "a1": _a1_summary(dataset),
        "separation": separation,
        "undefined": undefined,
        "runtime_s": run.runtime_s,
    }


def _divergence_reason(run: TrainingRun) -> str:
    return (
        f"the run diverged ({run.message}), so the metrics of its last state "
        "are not reported"
    )


def _exp(value: float) -> float:
    """Return ``exp(value)``, with ``inf`` where it exceeds the float64 range and
    NaN for NaN (a diverged run's log-loss)."""
    if math.isnan(value):
        return math.nan
    return math.exp(value) if value < 709.0 else math.inf


def _a1_summary(dataset: Dataset) -> dict:
    report = separability(dataset)
    return {
        "mu_s": report.mu_s,
        "mu_d": report.mu_d,
        "holds": report.holds_a1,
        "violating_within_share": report.violating_within_share,
        "violating_cross_share": report.violating_cross_share,
        "x_max": report.x_max,
        "x_min": report.x_min,
    }


def _separation_summary(run: TrainingRun, *, diverged: bool) -> dict:
    problem = run.problem
    first_log_t = run.separation_log_t
    summary = {
        "first_log_t": first_log_t,
        "first_t": None if first_log_t is None else _exp(first_log_t),
        "groups_from": "initial output weights v_j(0)",
    }
    if diverged:
        # The pattern of the last state does not describe the run.
        summary.update(at_end=None, reason_at_end="the run diverged")
        return summary

    pattern = activation_mask(problem.X @ run.params.W, problem.activation)
    try:
        groups = default_groups(problem, run.params.V)
    except InvalidArgument as error:
        summary.update(at_end=False, reason_at_end=str(error), regrouped_neurons=None)
        return summary
    at_end, reason = _separation_report(
        pattern, problem.labels, groups, problem.num_classes
    )
    summary.update(
        at_end=at_end,
        reason_at_end=reason,
        groups_at_end_from="final output weights",
        group_sizes_at_end=np.bincount(groups, minlength=problem.num_classes).tolist(),
        regrouped_neurons=int(np.sum(groups != run.groups0)),
    )
    return summary


@dataclass
class TrajectoryMetrics:
    """NC1, NC2 and NC3 of Min, Zhu and Vidal (NeurIPS 2025) at each record.

    Attributes
    ----------
    log_t : ndarray, shape (r,)
        ``log t`` of each record (``-inf`` at the start).
    nc1, nc2, nc3 : ndarray, shape (r,)
        Metric values, NaN where the metric is undefined for that record.
    undefined : dict of str to list of (int, str)
        For each metric, the record indices where it is undefined and why.
    """

    log_t: np.ndarray
    nc1: np.ndarray
    nc2: np.ndarray
    nc3: np.ndarray
    undefined: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def head(self, count: int) -> TrajectoryMetrics:
        """Return the metrics of the first ``count`` records."""
        undefined = {
            name: [(index, reason) for index, reason in items if index < count]
            for name, items in self.undefined.items()
        }
        return TrajectoryMetrics(
            log_t=self.log_t[:count],
            nc1=self.nc1[:count],
            nc2=self.nc2[:count],
            nc3=self.nc3[:count],
            undefined={name: items for name, items in undefined.items() if items},
        )


def trajectory_metrics(run: TrainingRun) -> TrajectoryMetrics:
    """Compute NC1, NC2 and NC3 (consistent target) of Min, Zhu and Vidal per record.

    The features of each record are ``relu(W^T x_i)`` with that record's ``W``. A
    record where a metric is undefined (a class mean of zero, for instance) gets
    NaN for that metric and an entry in ``undefined``. As in :func:`summarize`,
    the last state of a diverged run gets no metrics, so its records get NaN with
    the divergence as the reason.
    """
    trajectory = run.trajectory
    records_before = run.records_before_divergence
    # Large but finite records, such as the last ones before a divergence, can
    # overflow in the squares that the metrics take.
    with np.errstate(over="ignore", invalid="ignore"):
        metrics = metrics_along(run.problem, trajectory.head(records_before))
    if records_before == len(trajectory):
        return metrics

    left_out = np.full(len(trajectory) - records_before, np.nan)
    reason = _divergence_reason(run)
    undefined = {}
    for name in ("nc1", "nc2", "nc3"):
        items = metrics.undefined.get(name, [])
        left_out_items = [(i, reason) for i in range(records_before, len(trajectory))]
        undefined[name] = items + left_out_items
    return TrajectoryMetrics(
        log_t=trajectory.log_t.copy(),
        nc1=np.concatenate([metrics.nc1, left_out]),
        nc2=np.concatenate([metrics.nc2, left_out]),
        nc3=np.concatenate([metrics.nc3, left_out]),
        undefined=undefined,
    )


def metrics_along(problem: Problem, trajectory: Trajectory) -> TrajectoryMetrics:
    """Compute :func:`trajectory_metrics` for any recorded trajectory of ``problem``.

    Parameters
    ----------
    trajectory : Trajectory
        Records with ``log_t`` (shape (r,)), ``W`` (shape (r, D, h)) and ``V``
        (shape (r, d_y, h)): the trajectory of a :class:`TrainingRun` or of a
        :class:`ncflow.flow.FlowResult`.
    """
    X, labels, K = problem.X, problem.labels, problem.num_classes
    count = len(trajectory)
    values = {name: np.full(count, np.nan) for name in ("nc1", "nc2", "nc3")}
    undefined: dict[str, list[tuple[int, str]]] = {name: [] for name in values}

    for index in range(count):
        phi = features(X, trajectory.W[index], problem.activation)
        V = _head_class0_positive(problem, trajectory.V[index])
        compute = {
            "nc1": lambda phi=phi: nc1_paper(phi, labels, K),
            "nc2": lambda phi=phi: nc2_paper(phi, labels, K),
            "nc3": lambda phi=phi, V=V: nc3_paper(V, phi, labels, K),
        }
        for name, metric in compute.items():
            try:
                values[name][index] = metric()
            except MetricUndefined as error:
                undefined[name].append((index, str(error)))

    return TrajectoryMetrics(
        log_t=trajectory.log_t.copy(),
        nc1=values["nc1"],
        nc2=values["nc2"],
        nc3=values["nc3"],
        undefined={name: items for name, items in undefined.items() if items},
    )
