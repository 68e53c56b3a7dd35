"""Gradient flow of the two-layer network: ``solve_flow`` and its result."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from ncflow._validation import (
    InvalidArgument,
    NcflowWarning,
    check_choice,
    check_int,
    check_positive,
    check_range,
)
from ncflow.flow.events import (
    FlowState,
    LossBelow,
    Norm2Above,
    Separated,
    as_event,
    check_direction,
    check_groups,
    default_groups,
    event_value,
    separation_report,
)
from ncflow.flow.polar import check_neuron_norms, neuron_norms
from ncflow.flow.result import STATUS_MESSAGES, FlowResult, Trajectory
from ncflow.network import Parameters, Problem, activation_mask, check_outputs

METHODS = ("adaptive", "euler", "loss_scaled")
_MAX_STEPS_FIX = "give a positive step budget, or leave it out for the default"
# Range of rtol that solve_flow accepts, for every method.
RTOL_MIN = 1e-14
RTOL_MAX = 1e-2

__all__ = [
    "METHODS",
    "RTOL_MAX",
    "RTOL_MIN",
    "STATUS_MESSAGES",
    "FlowResult",
    "FlowState",
    "LossBelow",
    "Norm2Above",
    "Separated",
    "Trajectory",
    "default_groups",
    "separation_report",
    "solve_flow",
]


def solve_flow(
    problem: Problem,
    params0: Parameters,
    *,
    method: str = "adaptive",
    t_max: float | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    step: float | None = None,
    events: Sequence = (),
    groups: np.ndarray | None = None,
    max_steps: int | None = None,
    records_per_decade: int = 8,
    record_events: bool = True,
    progress=None,
) -> FlowResult:
    """Integrate the gradient flow ``d theta/dt = -grad L(theta)`` from ``params0``.

    Parameters
    ----------
    problem : Problem
        Data, targets, loss (a sum over samples) and activation.
    params0 : Parameters
        ``theta(0) = (W(0), V(0))``, shapes (D, h) and (d_y, h).
    method : {"adaptive", "euler", "loss_scaled"}
        ``"adaptive"``: exact frozen-gradient steps through the plateau of a
        small initialisation, Dormand-Prince from there, then Radau IIA once
        stiff, with local error control and located activation events, in
        per-neuron polar coordinates. The binary and three-class runs of the
        tests reach ``||theta||^2 = 1e12`` in a few hundred steps.
        ``"euler"``: fixed-step gradient descent with step ``step``, so
        ``t = step * k``.
        ``"loss_scaled"``: steps ``step / L``.
    t_max : float, optional
        End of the time span, in gradient-flow time. At least one of
        ``t_max``, a terminal event and ``max_steps`` must end the run.
    rtol, atol : float
        Local error tolerances of the adaptive method (see
        ``ncflow.flow.adaptive``): ``rtol`` is the relative accuracy per step of
        every neuron's norm and direction and of ``1 + t``. In the late phase
        (the ``||theta||^2`` clock) the directions are kept to
        ``min(rtol, max(1 / (||theta||^2 max_i ||x_i||), 1e-10))``,
        because a looser state stalls the implicit method there (see
        ``coordinates.late_rtol``). Each step's tolerance on a component is
        ``atol + rtol`` (the components are log-norms and unit directions, of
        order 1), so an ``rtol`` below ``atol`` changes little: pass a smaller
        ``atol`` with it, such as ``atol=0`` for ``rtol=1e-13``.
    step : float
        Step ``eta`` of the fixed-step methods, which need it. With
        ``method="adaptive"`` it must be left out.
    events : callable or sequence of callables
        Event functions of a :class:`FlowState` with ``terminal`` and
        ``direction`` attributes, e.g. ``LossBelow(1e-8)``,
        ``Norm2Above(1e12)``, ``Separated()``.
    groups : ndarray of int, shape (h,), optional
        Class of each neuron, used to track the separation time ``T*``.
        Default: by the sign of ``v_j(0)`` (binary) or ``argmax_k v_j(0)[k]``.
    max_steps : int, optional
        Budget of attempted steps (default 200000 adaptive, 10**7 fixed-step).
    records_per_decade : int
        Trajectory records per decade of ``log(1 + t)``.
    record_events : bool
        Also record the full state at every activation change (the changes
        themselves are always listed in ``activation_events``). Turn off for
        fixed-step runs on real data, where nearly every step changes a pair.
    progress : callable, optional
        ``progress(steps, log_t)``, called after each fixed step (for bars).

    Returns
    -------
    FlowResult
        ``status``, ``message``, ``success``, counters, the final state, the
        activation events, the event firings and the recorded trajectory.
        Unlike ``solve_ivp``, whose ``t_events`` contains times ``t``,
        ``t_events[k]`` contains ``log t`` of each firing of ``events[k]``,
        because ``t`` overflows float64 late in a run. ``numpy.exp`` gives
        ``t`` where it is below about ``1e308``. ``params_events[k]`` holds
        ``theta`` at each of those firings, as ``y_events`` does.
    """
    check_choice("method", method, METHODS)
    if method == "adaptive" and step is not None:
        raise InvalidArgument(
            f"step={step!r} is invalid with method='adaptive', which chooses its own "
            "steps: step sets the fixed step of method='euler' and "
            "method='loss_scaled' only. Drop step, or choose one of those methods"
        )
    if not isinstance(problem, Problem):
        raise InvalidArgument(
            f"problem must be an ncflow.network.Problem, got {type(problem).__name__}"
        )
    if not isinstance(params0, Parameters):
        raise InvalidArgument(
            f"params0 must be ncflow.network.Parameters, got {type(params0).__name__}"
        )
    # The arrays of Parameters stay writable, and a caller can make those of a
    # Problem writable again, so check again what construction checked. NaN
    # written into them, or weights whose outputs overflow, would otherwise end
    # the run with only an infinite error estimate.
    problem.check_arrays()
    check_outputs(problem, params0, "params0")
    if method == "adaptive":
        check_neuron_norms(neuron_norms(params0), "params0")
    # The separation time is tracked per class, so every class needs a sample.
    missing = np.setdiff1d(np.arange(problem.num_classes), problem.labels)
    if missing.size:
        raise InvalidArgument(
            f"class {int(missing[0])} of num_classes={problem.num_classes} has no "
            "sample; give every class at least one sample, or lower num_classes"
        )
    if t_max is not None:
        t_max = check_positive(
            "t_max", t_max, fix="give the end time of the run, e.g. t_max=100.0"
        )
        tiny = float(np.finfo(np.float64).tiny)
        if method == "adaptive" and t_max < tiny:
            # The first step's part up to t_max would be a subnormal number of
            # tau, which carries too few bits to end the run at rtol.
            raise InvalidArgument(
                f"t_max={t_max!r} is invalid for method='adaptive': it must be at "
                f"least {tiny:.3g}, the smallest normal float64 number; use "
                "method='euler' for shorter spans"
            )
    check_int(
        "records_per_decade",
        records_per_decade,
        1,
        1000,
        fix="give an integer from 1 to 1000 (default 8)",
    )
    # One event may be given alone, and None stands for none, as SciPy's
    # solve_ivp allows.
    if events is None:
        events = ()
    iterable = hasattr(events, "__iter__") and not isinstance(events, (str, bytes))
    if not callable(events) and not iterable:
        raise InvalidArgument(
            f"events={events!r} is invalid: give an event (a callable such as "
            "LossBelow(1e-3), Norm2Above(1e8) or Separated()), a list of them, "
            "or None"
        )
    events = [events] if callable(events) else list(events)
    for index, event in enumerate(events):
        if not callable(event):
            raise InvalidArgument(
                f"events[{index}]={event!r} is not callable; give an event such "
                "as LossBelow(1e-3) or a function of the flow state"
            )
    if progress is not None and not callable(progress):
        raise InvalidArgument(
            f"progress={progress!r} is not callable; give a function "
            "progress(steps, log_t), or None"
        )
    if groups is None:
        groups = default_groups(problem, params0.V)
    groups = check_groups("groups", groups, params0.width, problem.num_classes)
    # A Separated event without groups of its own uses the run's.
    events = [
        event.bind(problem, params0, groups) if isinstance(event, Separated) else event
        for event in events
    ]
    # A plain function gets SciPy's defaults: not terminal, either direction.
    events = [as_event(event) for event in events]
    for event in events:
        check_direction(event, event.direction)
    _warn_events_past_at_start(problem, params0, events)
    has_end = t_max is not None or any(getattr(e, "terminal", False) for e in events)
    if not has_end and max_steps is None:
        raise InvalidArgument(
            "nothing ends the run: give t_max, a terminal event (e.g. Norm2Above(1e8)) "
            "or max_steps"
        )

    # Small dense products and factorisations run fastest on one BLAS thread;
    # with several, threads contend (measured up to 27 times slower on two busy
    # cores), and the order of reductions would depend on the thread count.
    # The limit applies only to the BLAS libraries loaded when the controller
    # is made, and the adaptive method loads SciPy's, so the methods are
    # imported first. Imported inside the block, the first call of a process
    # ran on two threads and, on a test problem, ended 4e-13 away from later
    # identical calls.
    with _import_methods().limit(limits=1, user_api="blas"):
        return _solve(
            problem,
            params0,
            method,
            t_max,
            rtol,
            atol,
            step,
            events,
            groups,
            max_steps,
            records_per_decade,
            record_events,
            progress,
        )


_CONTROLLER: list = []


def _import_methods() -> ThreadpoolController:
    """Import the integrators (kept out of ``import ncflow``, for start-up time)
    and return a controller of the thread pools they load.

    The controller is made once per process: finding the loaded libraries took
    0.2 ms per call of ``threadpool_limits``, and 0.54 ms once torch was
    imported, against 0.01 ms for a kept controller's limit.
    """
    import ncflow.flow.adaptive  # noqa: F401
    import ncflow.flow.euler  # noqa: F401

    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def _warn_events_past_at_start(problem, params0, events) -> None:
    """Warn about a terminal event whose value at ``t = 0`` is already on the far
    side of 0 for its direction: it fires only on a crossing, so it may never end
    the run (``Norm2Above(1e-3)`` from ``||theta(0)||^2 = 1``, say)."""
    state = None
    for index, event in enumerate(events):
        direction = getattr(event, "direction", 0.0)
        if not getattr(event, "terminal", False) or direction == 0:
            continue
        if getattr(event, "discrete", False):
            continue
        if state is None:
            pattern = activation_mask(problem.X @ params0.W, problem.activation)
            state = FlowState(problem, params0, -np.inf, pattern)
        value = event_value(event, state)
        if value * direction > 0:
            warnings.warn(
                f"events[{index}]={event!r} is already past its threshold at t = 0 "
                f"({_initial_value_text(event, state, value)}); it fires only when "
                "its value crosses 0 in its direction, so it may never end the "
                "run. Give a threshold on the other side of the initial value.",
                NcflowWarning,
                stacklevel=3,
            )


def _initial_value_text(event, state: FlowState, value: float) -> str:
    """Describe an event's value at the start: the quantity itself for the
    built-in events, whose values are logs of ratios to their thresholds."""
    if isinstance(event, Norm2Above):
        return f"||theta(0)||^2 = {np.exp(state.log_norm2):.3g}"
    if isinstance(event, LossBelow):
        return f"L(0) = {np.exp(state.log_loss):.3g}"
    return f"value {value:.3g}"


def _solve(
    problem,
    params0,
    method,
    t_max,
    rtol,
    atol,
    step,
    events,
    groups,
    max_steps,
    records_per_decade,
    record_events,
    progress,
) -> FlowResult:
    # The fixed-step methods do not use rtol and atol, but an invalid value is
    # still a mistake worth naming.
    # The checks return Python floats: a NumPy float32 tolerance would make every
    # later sum with it float32 (NumPy 2 casting), far too coarse for the times
    # and states of a run.
    rtol = check_range(
        "rtol",
        rtol,
        RTOL_MIN,
        RTOL_MAX,
        fix=f"use a value in [{RTOL_MIN:g}, {RTOL_MAX:g}]",
    )
    atol = check_range(
        "atol", atol, 0.0, 1e-2, fix="use a value in [0, 0.01], e.g. atol=1e-12"
    )
    if method == "adaptive":
        from ncflow.flow.adaptive import AdaptiveFlow

        return AdaptiveFlow(
            problem,
            params0,
            t_max=t_max,
            rtol=rtol,
            atol=atol,
            events=events,
            max_steps=200_000
            if max_steps is None
            else check_int("max_steps", max_steps, 1, fix=_MAX_STEPS_FIX),
            records_per_decade=records_per_decade,
            groups=groups,
            record_events=record_events,
        ).run()

    if step is None:
        raise InvalidArgument(f"method={method!r} needs step=eta > 0 (e.g. step=1e-3)")
    step = check_positive("step", step, fix="give a positive step such as 1e-3")
    from ncflow.flow.euler import solve_euler

    return solve_euler(
        problem,
        params0,
        step=step,
        t_max=t_max,
        events=events,
        max_steps=10**7
        if max_steps is None
        else check_int("max_steps", max_steps, 1, fix=_MAX_STEPS_FIX),
        records_per_decade=records_per_decade,
        groups=groups,
        loss_scaled=method == "loss_scaled",
        progress=progress,
        record_events=record_events,
    )
