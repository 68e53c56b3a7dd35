"""Fixed-step gradient descent: the reference discretisation of the flow.

``theta_{k+1} = theta_k - eta grad L(theta_k)`` (explicit Euler on the flow), in
float64 with the gradient written out, so that ``t = eta k`` is gradient-flow
time. With ``loss_scaled=True`` the step is ``eta / L(theta_k)`` instead (the
loss-scaled steps of the late-phase literature) and ``t`` accumulates
``sum_k eta / L_k`` in the log domain.

Events are evaluated after every step and fire at the first step past their
crossing (no location inside a step): the time resolution is one step. The last
step is shortened to end on ``t_max``.
"""

from __future__ import annotations

import math

import numpy as np

from ncflow.flow import result as res
from ncflow.flow.events import (
    FlowState,
    Separated,
    crosses,
    event_value,
    terminal_after,
)
from ncflow.flow.result import INACTIVE_DETAIL
from ncflow.network import Parameters, Problem, activation_mask, gradient_arrays


def solve_euler(
    problem: Problem,
    params0: Parameters,
    *,
    step: float,
    t_max: float | None,
    events: list,
    max_steps: int,
    records_per_decade: int,
    groups: np.ndarray | None,
    loss_scaled: bool = False,
    progress=None,
    record_events: bool = True,
) -> res.FlowResult:
    """Run fixed-step (or loss-scaled) gradient descent; see :func:`solve_flow`."""
    W = params0.W.copy()
    V = params0.V.copy()
    X = problem.X
    log_t = -math.inf
    log_eta = math.log(step)
    recorder = res.TrajectoryRecorder()
    separation = None if groups is None else Separated(groups, terminal=False)

    def state(log_t, pattern):
        return FlowState(problem, Parameters(W, V), log_t, pattern)

    pattern = activation_mask(X @ W, problem.activation)
    first = state(log_t, pattern)
    recorder.add("start", log_t, first.log_loss, first.params, pattern)
    values = [event_value(ev, first) for ev in events]
    t_events = [[] for _ in events]
    params_events = [[] for _ in events]
    fired: list[int] = []
    activation_events: list[res.ActivationEvent] = []
    separation_log_t = None
    if separation is not None and separation(first) < 0:
        separation_log_t = log_t
    status = None
    detail = ""

    def fire(index: int, current: FlowState) -> None:
        nonlocal status
        t_events[index].append(current.log_t)
        params_events[index].append(current.params)
        fired.append(index)
        if terminal_after(events[index], len(t_events[index])):
            status = res.STATUS_TERMINAL_EVENT

    # As in the adaptive method, a discrete event (Separated) counts from the
    # value it has before its crossing, so one already crossed at t = 0 fires
    # there.
    for index, event in enumerate(events):
        if getattr(event, "discrete", False) and crosses(
            1.0, values[index], event.direction
        ):
            fire(index, first)

    ell_grid = math.log1p(step)
    ratio = 10.0 ** (1.0 / records_per_decade)
    log_t_max = math.log(t_max) if t_max is not None else math.inf
    nfev = 0
    k = 0
    while status is None:
        if not pattern.any():
            # No pair is active, so every gradient is 0 and the flow stays here
            # for good: the run stops before the first step, as the adaptive
            # method does.
            status = res.STATUS_STATIONARY
            detail = INACTIVE_DETAIL
            break
        if k >= max_steps:
            status = res.STATUS_BUDGET
            detail = f"max_steps={max_steps} steps"
            break
        with np.errstate(over="ignore", invalid="ignore"):
            log_loss, grad_W, grad_V = gradient_arrays(
                problem, W, V, relative=loss_scaled
            )
            nfev += 1
            norm2 = float(np.vdot(W, W) + np.vdot(V, V))
        if k > 0 and not (math.isfinite(log_loss) and math.isfinite(norm2)):
            # The last step left finite weights whose outputs or squared sum
            # overflow; the run ends on that state, whose loss or ||theta||^2 is
            # not finite. Both are checked: with data scaled by 1e100, log L
            # came out finite (1.39) while ||theta||^2 was inf.
            status = res.STATUS_NONFINITE
            detail = _overflow_detail(k, step, loss_scaled)
            break
        with np.errstate(over="ignore", invalid="ignore"):
            log_dt = log_eta - log_loss if loss_scaled else log_eta
            fraction, ends = _step_to_end(log_t, log_dt, t_max, k)
            W_next = W - (fraction * step) * grad_W
            V_next = V - (fraction * step) * grad_V
        if not (np.all(np.isfinite(W_next)) and np.all(np.isfinite(V_next))):
            # The last finite iterate is kept as the result.
            status = res.STATUS_NONFINITE
            detail = (
                f"step {k + 1} {_step_text(step, loss_scaled)} overflowed; "
                "reduce the step"
            )
            break
        W, V = W_next, V_next
        k += 1
        if ends:
            log_t = log_t_max
        elif loss_scaled:
            log_t = float(np.logaddexp(log_t, log_dt))
        else:
            # t = k eta exactly, without the drift of a running sum.
            log_t = math.log(k * step)
        if progress is not None:
            progress(k, log_t)

        new_pattern = activation_mask(X @ W, problem.activation)
        current = None
        if not np.array_equal(new_pattern, pattern):
            changed = np.argwhere(new_pattern != pattern)
            pairs = [(int(i), int(j), bool(new_pattern[i, j])) for i, j in changed]
            activation_events.append(res.ActivationEvent(log_t, pairs, math.nan))
            pattern = new_pattern
            current = state(log_t, pattern)
            if record_events:
                recorder.add("event", log_t, current.log_loss, current.params, pattern)
            if separation_log_t is None and separation is not None:
                if separation(current) < 0:
                    separation_log_t = log_t

        ell = log_t if log_t > 30 else math.log1p(math.exp(log_t))
        if ell >= ell_grid:
            current = current or state(log_t, pattern)
            recorder.add("grid", log_t, current.log_loss, current.params, pattern)
            while ell_grid <= ell:
                ell_grid *= ratio

        if events:
            current = current or state(log_t, pattern)
            for index, event in enumerate(events):
                value = event_value(event, current)
                if crosses(values[index], value, event.direction):
                    fire(index, current)
                values[index] = value
        if status is None and log_t >= log_t_max:
            status = res.STATUS_END_OF_SPAN

    final = state(log_t, pattern)
    if status != res.STATUS_NONFINITE and k > 0:
        if not (math.isfinite(final.log_loss) and math.isfinite(final.norm2)):
            status = res.STATUS_NONFINITE
            detail = _overflow_detail(k, step, loss_scaled)
    recorder.add("end", log_t, final.log_loss, final.params, pattern)
    message = res.STATUS_MESSAGES[status] + (f": {detail}" if detail else "")
    method = "loss_scaled" if loss_scaled else "euler"
    return res.FlowResult(
        status=status,
        message=message,
        method=method,
        params=Parameters(W.copy(), V.copy()),
        log_t=log_t,
        log_loss=final.log_loss,
        norm2=final.norm2,
        nfev=nfev,
        njev=0,
        nlu=0,
        n_accepted=k,
        n_rejected=0,
        activation_events=activation_events,
        t_events=[np.array(v) for v in t_events],
        params_events=params_events,
        fired=fired,
        separation_log_t=separation_log_t,
        trajectory=recorder.finish(),
        problem=problem,
        params0=params0,
        settings={
            "method": method,
            "step": step,
            "t_max": t_max,
            "max_steps": max_steps,
            "dtype": "float64",
        },
        pattern=pattern.copy(),
    )


def _overflow_detail(steps: int, step: float, loss_scaled: bool) -> str:
    return (
        f"the outputs or ||theta||^2 after step {steps} "
        f"{_step_text(step, loss_scaled)} overflowed; reduce the step or rescale "
        "the data"
    )


def _step_text(step: float, loss_scaled: bool) -> str:
    """Describe the step of the run: ``eta`` itself, or ``eta / L``."""
    return f"of eta / L, eta = {step:g}" if loss_scaled else f"of size {step:g}"


def _step_to_end(
    log_t: float, log_dt: float, t_max: float | None, steps: int
) -> tuple[float, bool]:
    """Return the fraction of the next step to take, and whether it ends the
    span.

    A step that would pass ``t_max``, or end within the roundoff that a sum of
    ``steps`` times carries, is cut to end on ``t_max``.
    """
    if t_max is None:
        return 1.0, False
    remaining = t_max - (0.0 if log_t == -math.inf else math.exp(log_t))
    slack = 4 * (steps + 1) * np.finfo(np.float64).eps * t_max
    # Compared in logs: late loss-scaled steps exceed the float64 range.
    if remaining > slack and log_dt < math.log(remaining - slack):
        return 1.0, False
    if remaining <= 0.0:
        return 0.0, True  # t rounded onto t_max from below
    return min(1.0, math.exp(math.log(remaining) - log_dt)), True
