"""Time to reach a given C11 margin error, for four ways of integrating the flow.

Run ``python -m benchmarks.bench_integrators``; ``--help`` lists the options. The
script prints one table per problem and writes ``results/bench_integrators.json``.

Methods, each started from the same ``theta(0)`` of ``benchmarks.problems``:

- ``adaptive``: ``solve_flow(method="adaptive")`` stopped by ``Norm2Above(R)`` at
  the ``||theta||^2`` where a reference adaptive run first stays below the target
  error. The median over repeats is reported. The integrator pins BLAS to one
  thread.
- ``torch_euler``: fixed-step gradient descent with torch autograd
  (``ncflow.torch_model.autograd_euler``), in chunks of steps, with the error
  measured after each chunk. The step comes from a short sweep.
- ``loss_scaled``: ``solve_flow(method="loss_scaled")``, steps ``eta / L``; ``eta``
  comes from a sweep, and the wall-clock time of each trajectory record is taken
  from the ``progress`` callback.
- ``bdf``: ``scipy.integrate.BDF`` on ``d theta/dt = -grad L(theta)`` in the raw
  parameters, Jacobian by finite differences (SciPy's default), from the
  separated state of an adaptive run. Two independent variables: ``t`` itself,
  and ``s = log t`` (``d theta/ds = -t grad L``), because ``t`` overflows float64
  (and ``grad L`` underflows) long before the late phase.

Every row reports the wall time, the gradient evaluations (for ``bdf`` including
those of the finite-difference Jacobian) and the error reached.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.integrate
import scipy.optimize
import torch
from threadpoolctl import threadpool_limits

from benchmarks.problems import PROBLEMS, BenchmarkProblem, environment, margin_error
from ncflow.flow import Norm2Above, Separated, solve_flow
from ncflow.losses import loss_terms_unchecked
from ncflow.network import Parameters, gradient_arrays, outputs
from ncflow.torch_model import autograd_euler

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = (1e-3, 1e-6)
# rtol = 1e-3 is the coarse target itself. The error at the end is the distance of
# the state to its limit, which the flow contracts towards, so it reaches the
# fine target too: each row also reports its difference from the reference run's
# error at the same ||theta||^2, the integration error's share.
ADAPTIVE_RTOLS = (1e-3, 1e-6, 1e-8)
ATOL = 1e-12
# The reference run that maps each target error to the ||theta||^2 where it is
# first reached for good. Past 1e10 the three-class run needs far more steps.
REFERENCE_RTOL = 1e-8
REFERENCE_NORM2 = 1e10
EULER_STEPS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
# The torch Euler step is the largest of EULER_STEPS for which halving it moves
# theta(EULER_CHECK_TIME) by at most EULER_CHECK_RTOL (both problems have escaped
# their small start well before t = 10).
EULER_CHECK_TIME = 10.0
EULER_CHECK_RTOL = 1e-2
EULER_CHUNK = 1000
LOSS_SCALED_STEPS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# A method reaches a target error only past the escape from the small start. The
# semi-local three-class start has error 1.6e-3 at t = 0, which dips to 7e-4 during
# the alignment and rises to 2e-3 before the late phase brings it down for good.
ESCAPED_NORM2 = 1.0
BDF_RTOL = 1e-8
BDF_ATOL = 1e-12


def _row(**fields) -> dict:
    return {
        key: (float(value) if isinstance(value, np.floating) else value)
        for key, value in fields.items()
    }


# --- adaptive -------------------------------------------------------------------------


def reference_norm2(bp: BenchmarkProblem) -> dict:
    """``||theta||^2`` from which the reference run's error stays below each target."""
    result = solve_flow(
        bp.problem,
        bp.params0,
        rtol=REFERENCE_RTOL,
        atol=ATOL,
        events=[Norm2Above(REFERENCE_NORM2)],
    )
    trajectory = result.trajectory
    errors = np.array(
        [
            margin_error(bp.problem, trajectory.parameters(k), bp.predicted)
            for k in range(len(trajectory))
        ]
    )
    found = {}
    found_errors = {}
    for target in TARGETS:
        above = np.flatnonzero(errors > target)
        first = 0 if above.size == 0 else above[-1] + 1
        found[target] = float(trajectory.norm2[first]) if first < len(errors) else None
        found_errors[target] = float(errors[first]) if first < len(errors) else None
    return {
        "norm2": found,
        "error": found_errors,
        "status": result.status,
        "separation_log_t": result.separation_log_t,
    }


def bench_adaptive(
    bp: BenchmarkProblem, norm2: float, rtol: float, repeats: int
) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = solve_flow(
            bp.problem, bp.params0, rtol=rtol, atol=ATOL, events=[Norm2Above(norm2)]
        )
        times.append(time.perf_counter() - start)
    return _row(
        method="adaptive",
        setting=f"rtol={rtol:g}",
        time_s=statistics.median(times),
        time_min_s=min(times),
        time_max_s=max(times),
        repeats=repeats,
        gradient_evaluations=result.nfev,
        jacobians=result.njev,
        lu=result.nlu,
        steps=result.n_accepted,
        rejected=result.n_rejected,
        status=result.status,
        norm2=result.norm2,
        error=margin_error(bp.problem, result.params, bp.predicted),
    )


# --- torch Euler ----------------------------------------------------------------------


def _torch_euler_history(bp: BenchmarkProblem, step: float, seconds: float) -> list:
    """``(elapsed s, steps, norm2, error, log L)`` after each chunk of autograd Euler.

    The chunks run back to back; only the error and loss evaluations between them
    are excluded from the elapsed time.
    """
    params = bp.params0
    history = []
    steps = 0
    elapsed = 0.0
    while True:
        start = time.perf_counter()
        params = autograd_euler(bp.problem, params, step, EULER_CHUNK)
        elapsed += time.perf_counter() - start
        steps += EULER_CHUNK
        with np.errstate(over="ignore", invalid="ignore"):
            finite = bool(np.all(np.isfinite(params.flat())))
            log_loss = _log_loss(bp, params) if finite else math.inf
        error = margin_error(bp.problem, params, bp.predicted)
        history.append((elapsed, steps, params.norm2(), error, log_loss))
        if elapsed >= seconds or not finite:
            return history


def _log_loss(bp: BenchmarkProblem, params: Parameters) -> float:
    f = outputs(bp.problem, params)
    return loss_terms_unchecked(f, bp.problem.targets, bp.problem.loss).log_total


def _first_hit(history: list, target: float):
    """First entry past the escape (``R >= ESCAPED_NORM2``) with error <= target,
    and whether every later entry stays below the target."""
    for index, entry in enumerate(history):
        if entry[2] >= ESCAPED_NORM2 and entry[3] <= target:
            stays = all(later[3] <= target for later in history[index:])
            return entry, stays
    return None, False


def bench_torch_euler(bp: BenchmarkProblem, seconds: float, checkpoints: dict) -> dict:
    """Sweep the step, then run the largest one that still follows the flow.

    A step follows the flow when halving it moves ``theta`` at gradient-flow time
    ``EULER_CHECK_TIME`` by at most ``EULER_CHECK_RTOL`` relative: Euler's error is
    first order, so that difference estimates the step's own error. The loss alone
    is no guide, because steps of 1 and more still lower it from chunk to chunk
    while the iterates leave the flow (measured C11 error 0.8 at step 3).
    """
    torch.set_num_threads(1)
    sweep = []
    for step in EULER_STEPS:
        count = round(EULER_CHECK_TIME / step)
        coarse = autograd_euler(bp.problem, bp.params0, step, count)
        fine = autograd_euler(bp.problem, bp.params0, step / 2, 2 * count)
        with np.errstate(over="ignore", invalid="ignore"):
            difference = float(
                np.linalg.norm(coarse.flat() - fine.flat())
                / np.linalg.norm(fine.flat())
            )
        sweep.append(
            _row(
                step=step,
                check_time=count * step,
                relative_change_on_halving=difference,
                error=margin_error(bp.problem, coarse, bp.predicted),
            )
        )
    following = [
        entry["step"]
        for entry in sweep
        if entry["relative_change_on_halving"] <= EULER_CHECK_RTOL
    ]
    best = max(following) if following else min(EULER_STEPS)

    history = _torch_euler_history(bp, best, seconds)
    rows = []
    for label, moment in [*checkpoints.items(), (f"after {seconds:g} s", seconds)]:
        after = [entry for entry in history if entry[0] >= moment]
        elapsed, steps, norm2, error, _ = after[0] if after else history[-1]
        rows.append(
            _row(
                method="torch_euler",
                setting=f"step={best:g}",
                checkpoint=label,
                time_s=elapsed,
                gradient_evaluations=steps,
                steps=steps,
                t=steps * best,
                norm2=norm2,
                error=error,
            )
        )
    reached = {}
    for target in TARGETS:
        hit, stays = _first_hit(history, target)
        reached[target] = None if hit is None else {"time_s": hit[0], "stays": stays}
    return {"sweep": sweep, "step": best, "rows": rows, "reached": reached}


# --- loss-scaled steps ----------------------------------------------------------------


def _loss_scaled_run(bp: BenchmarkProblem, step: float, seconds: float) -> dict:
    """Run loss-scaled steps for about ``seconds`` and time every record."""
    probe_steps = 200
    start = time.perf_counter()
    solve_flow(
        bp.problem, bp.params0, method="loss_scaled", step=step, max_steps=probe_steps
    )
    per_step = (time.perf_counter() - start) / probe_steps
    max_steps = max(probe_steps, int(seconds / per_step))

    log_ts, clock = [], []

    def progress(steps, log_t):
        log_ts.append(log_t)
        clock.append(time.perf_counter())

    start = time.perf_counter()
    # Large steps grow ||theta|| geometrically until it overflows, which ends the
    # run with STATUS_NONFINITE. The overflow warnings on the way add nothing.
    with np.errstate(over="ignore", invalid="ignore"):
        result = solve_flow(
            bp.problem,
            bp.params0,
            method="loss_scaled",
            step=step,
            max_steps=max_steps,
            record_events=False,
            progress=progress,
        )
    total = time.perf_counter() - start
    log_ts = np.array(log_ts)
    clock = np.array(clock) - start
    trajectory = result.trajectory
    records = []
    for k in range(len(trajectory)):
        if trajectory.kind[k] == "start":
            continue
        index = min(int(np.searchsorted(log_ts, trajectory.log_t[k])), len(log_ts) - 1)
        error = margin_error(bp.problem, trajectory.parameters(k), bp.predicted)
        records.append(
            (float(clock[index]), index + 1, float(trajectory.norm2[k]), error)
        )
    final_error = margin_error(bp.problem, result.params, bp.predicted)
    records.append((total, result.n_accepted, result.norm2, final_error))
    reached = {}
    for target in TARGETS:
        hit, stays = _first_hit(records, target)
        reached[target] = (
            None
            if hit is None
            else {
                "time_s": hit[0],
                "steps": hit[1],
                "norm2": hit[2],
                "error": hit[3],
                "stays_below": stays,
            }
        )
    return _row(
        step=step,
        time_s=total,
        steps=result.n_accepted,
        status=result.status,
        norm2=result.norm2,
        error=final_error,
        best_error=min([final_error] + [entry[3] for entry in records]),
        reached=reached,
    )


def bench_loss_scaled(bp: BenchmarkProblem, seconds: float) -> dict:
    sweep = [_loss_scaled_run(bp, step, seconds) for step in LOSS_SCALED_STEPS]

    def key(entry):
        hit = entry["reached"][TARGETS[0]]
        return (0, hit["time_s"]) if hit else (1, entry["best_error"])

    best = min(sweep, key=key)
    return {"sweep": sweep, "step": best["step"], "best": best}


# --- SciPy BDF ------------------------------------------------------------------------


class _Flow:
    """``d theta/dv = -grad L`` in ``v = t`` or ``v = log t``, with a call counter."""

    def __init__(self, bp: BenchmarkProblem, variable: str) -> None:
        self.problem = bp.problem
        self.D, self.width = bp.params0.W.shape
        self.variable = variable
        self.calls = 0

    def params(self, theta: np.ndarray) -> Parameters:
        return Parameters.from_flat(theta, self.D, self.width)

    def __call__(self, v: float, theta: np.ndarray) -> np.ndarray:
        self.calls += 1
        split = self.D * self.width
        W = theta[:split].reshape(self.D, self.width)
        V = theta[split:].reshape(-1, self.width)
        if self.variable == "t":
            _, grad_W, grad_V = gradient_arrays(self.problem, W, V)
            scale = 1.0
        else:
            # t grad L = exp(log t + log L) (grad L / L), finite where L underflows.
            log_loss, grad_W, grad_V = gradient_arrays(
                self.problem, W, V, relative=True
            )
            scale = math.exp(v + log_loss)
        return -scale * np.concatenate([grad_W.ravel(), grad_V.ravel()])


def bdf_start(bp: BenchmarkProblem) -> tuple[Parameters, float, float]:
    """``theta(T*)``, ``log T*`` and the wall time of the adaptive run to ``T*``.

    A problem separated from the start begins at ``t = 1`` instead, after the escape:
    ``log t = -inf`` is no starting point for the ``log t`` variable.
    """
    begin = time.perf_counter()
    result = solve_flow(
        bp.problem, bp.params0, rtol=REFERENCE_RTOL, atol=ATOL, events=[Separated()]
    )
    if result.separation_log_t == -math.inf:
        result = solve_flow(
            bp.problem, bp.params0, rtol=REFERENCE_RTOL, atol=ATOL, t_max=1.0
        )
    return result.params, result.log_t, time.perf_counter() - begin


def bench_bdf(
    bp: BenchmarkProblem,
    start: tuple[Parameters, float],
    norm2: float,
    variable: str,
    seconds: float,
) -> dict:
    params0, log_t0, prefix_s = start
    flow = _Flow(bp, variable)
    v0 = math.exp(log_t0) if variable == "t" else log_t0
    bound = 1e300 if variable == "t" else 1e300
    theta0 = params0.flat()
    outcome = "reached"
    with threadpool_limits(limits=1, user_api="blas"):
        begin = time.perf_counter()
        solver = scipy.integrate.BDF(
            flow, v0, theta0, bound, rtol=BDF_RTOL, atol=BDF_ATOL
        )
        theta_end = None
        while True:
            previous = (solver.t, solver.y.copy())
            message = solver.step()
            if message is not None:
                outcome = f"solver failed: {message}"
                break
            if float(solver.y @ solver.y) >= norm2:
                dense = solver.dense_output()

                def gap(v, dense=dense):
                    theta = dense(v)
                    return float(theta @ theta) - norm2

                crossing = scipy.optimize.brentq(
                    gap, previous[0], solver.t, xtol=1e-300, rtol=1e-15
                )
                theta_end = dense(crossing)
                break
            if solver.status != "running":
                outcome = f"reached the end of the span, {variable} = {solver.t:.3g}"
                break
            if time.perf_counter() - begin > seconds:
                outcome = f"not reached in {seconds:g} s"
                break
        elapsed = time.perf_counter() - begin
    if theta_end is None:
        theta_end = solver.y
    params = flow.params(theta_end)
    return _row(
        method="bdf",
        setting=f"in {variable}, rtol={BDF_RTOL:g}, atol={BDF_ATOL:g}",
        outcome=outcome,
        time_s=elapsed,
        prefix_time_s=prefix_s,
        gradient_evaluations=flow.calls,
        jacobians=solver.njev,
        lu=solver.nlu,
        norm2=params.norm2(),
        target_norm2=norm2,
        error=margin_error(bp.problem, params, bp.predicted),
    )


# --- driver ---------------------------------------------------------------------------


def run_problem(name: str, args) -> dict:
    load_before = os.getloadavg()
    bp = PROBLEMS[name]()
    print(f"\n== {bp.description}")
    print(f"   predicted C11 margin {bp.predicted:.12g}")
    reference = reference_norm2(bp)
    print(
        f"   reference (rtol={REFERENCE_RTOL:g}): error first stays below",
        ", ".join(f"{t:g} from R = {r:.4g}" for t, r in reference["norm2"].items()),
    )

    adaptive = {}
    for target in TARGETS:
        for rtol in ADAPTIVE_RTOLS:
            row = bench_adaptive(bp, reference["norm2"][target], rtol, args.repeats)
            row["target"] = target
            row["reference_error"] = reference["error"][target]
            row["error_change"] = abs(row["error"] - reference["error"][target])
            adaptive[f"{target:g}/{rtol:g}"] = row
    best_adaptive = {
        target: min(
            (
                row
                for row in adaptive.values()
                if row["target"] == target and row["error"] <= target
            ),
            key=lambda row: row["time_s"],
            default=None,
        )
        for target in TARGETS
    }
    checkpoints = {
        f"when adaptive reaches {target:g}": row["time_s"]
        for target, row in best_adaptive.items()
        if row is not None
    }
    euler = bench_torch_euler(bp, args.euler_seconds, checkpoints)
    scaled = bench_loss_scaled(bp, args.loss_scaled_seconds)

    start = bdf_start(bp)
    bdf = []
    for variable in ("t", "log_t"):
        for target in TARGETS:
            row = bench_bdf(
                bp, start, reference["norm2"][target], variable, args.bdf_seconds
            )
            row["target"] = target
            bdf.append(row)

    report = {
        "problem": name,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "description": bp.description,
        "predicted": bp.predicted,
        "reference": reference,
        "adaptive": adaptive,
        "torch_euler": euler,
        "loss_scaled": scaled,
        "bdf_start_log_t": start[1],
        "bdf_prefix_time_s": start[2],
        "bdf": bdf,
    }
    _print_problem(report)
    report["targets"] = _assess(report, best_adaptive)
    return report


COLUMNS = ("method", "setting", "target", "time s", "grad evals", "R", "error", "note")


def _format_row(method, setting, target, time_s, evaluations, norm2, error, note=""):
    target_text = "" if target is None else f"{target:.0e}"
    return [
        method,
        setting,
        target_text,
        f"{time_s:.3f}",
        str(evaluations),
        f"{norm2:.4g}",
        f"{error:.3e}",
        note,
    ]


def print_table(rows: list[list[str]]) -> None:
    """Print rows of strings under ``COLUMNS``, each column as wide as needed."""
    table = [list(COLUMNS), *rows]
    widths = [max(len(row[k]) for row in table) for k in range(len(COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


def _print_problem(report: dict) -> None:
    rows = []
    for row in report["adaptive"].values():
        rows.append(
            _format_row(
                "adaptive",
                row["setting"],
                row["target"],
                row["time_s"],
                row["gradient_evaluations"],
                row["norm2"],
                row["error"],
                f"median of {row['repeats']}; "
                f"{row['error_change']:.1e} from the reference",
            )
        )
    for row in report["torch_euler"]["rows"]:
        rows.append(
            _format_row(
                "torch_euler",
                row["setting"],
                None,
                row["time_s"],
                row["gradient_evaluations"],
                row["norm2"],
                row["error"],
                row["checkpoint"],
            )
        )
    for entry in report["loss_scaled"]["sweep"]:
        setting = f"step={entry['step']:g}"
        for target, hit in entry["reached"].items():
            if hit:
                rows.append(
                    _format_row(
                        "loss_scaled",
                        setting,
                        target,
                        hit["time_s"],
                        hit["steps"],
                        hit["norm2"],
                        hit["error"],
                        "first record at the target",
                    )
                )
        rows.append(
            _format_row(
                "loss_scaled",
                setting,
                None,
                entry["time_s"],
                entry["steps"],
                entry["norm2"],
                entry["error"],
                "end of run",
            )
        )
    for row in report["bdf"]:
        rows.append(
            _format_row(
                "bdf",
                row["setting"],
                row["target"],
                row["time_s"],
                row["gradient_evaluations"],
                row["norm2"],
                row["error"],
                row["outcome"],
            )
        )
    print()
    print_table(rows)


def _assess(report: dict, best_adaptive: dict) -> dict:
    """Judge the three targets and return each verdict with its numbers."""
    fine = best_adaptive[TARGETS[1]]
    coarse = best_adaptive[TARGETS[0]]
    verdicts = {
        "1e-6 in under 0.1 s (median)": {
            "adaptive_time_s": None if fine is None else fine["time_s"],
            "met": fine is not None and fine["time_s"] < 0.1,
        }
    }

    scaled = report["loss_scaled"]["best"]["reached"][TARGETS[0]]
    known = scaled is not None and coarse is not None
    verdicts[">= 100x faster than loss-scaled steps to 1e-3"] = {
        "adaptive_time_s": None if coarse is None else coarse["time_s"],
        "loss_scaled_time_s": None if scaled is None else scaled["time_s"],
        "loss_scaled_step": report["loss_scaled"]["step"],
        "loss_scaled_stays_below": None if scaled is None else scaled["stays_below"],
        "ratio": scaled["time_s"] / coarse["time_s"] if known else None,
        "met": scaled["time_s"] >= 100 * coarse["time_s"] if known else None,
    }

    comparisons = []
    for row in report["bdf"]:
        adaptive_row = best_adaptive[row["target"]]
        if row["outcome"] != "reached" or row["error"] > row["target"]:
            continue
        if adaptive_row is None:
            continue
        comparisons.append(
            {
                "target": row["target"],
                "bdf": row["setting"],
                "bdf_time_s": row["time_s"],
                "bdf_with_prefix_s": row["time_s"] + row["prefix_time_s"],
                "adaptive_time_s": adaptive_row["time_s"],
            }
        )
    faster = all(c["adaptive_time_s"] < c["bdf_with_prefix_s"] for c in comparisons)
    verdicts["faster than BDF at equal error"] = {
        "comparisons": comparisons,
        "met": bool(comparisons) and faster,
    }

    print("\ntargets:")
    for name, verdict in verdicts.items():
        print(f"  {name}: {verdict}")
    return verdicts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS)
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="adaptive repeats (median)"
    )
    parser.add_argument(
        "--euler-seconds",
        type=float,
        default=60.0,
        help="wall time of the torch Euler run, s",
    )
    parser.add_argument(
        "--loss-scaled-seconds",
        type=float,
        default=20.0,
        help="wall time per step size of the loss-scaled sweep, s",
    )
    parser.add_argument(
        "--bdf-seconds",
        type=float,
        default=60.0,
        help="wall-time cap of each BDF run, s",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "bench_integrators.json"
    )
    args = parser.parse_args(argv)

    # The source revision that is imported now is the one that runs.
    started = environment()
    reports = [run_problem(name, args) for name in args.problems]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in vars(args).items()
    }
    args.output.write_text(
        json.dumps(
            {
                "environment": started,
                "environment_at_end": environment(),
                "settings": settings,
                "problems": reports,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
