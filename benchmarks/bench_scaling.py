"""Cost of the adaptive method as the problem grows and as ``eps`` shrinks.

Run ``python -m benchmarks.bench_scaling``; it prints two tables and writes
``results/bench_scaling.json``.

Every run starts from the binary construction of ``benchmarks.problems`` (data seed 0,
shape seed 1000) and stops at ``||theta||^2 = 1e8``, where the C11 margin error of the
base problem is about 1e-8, well past the 1e-6 target. One of ``n``, ``D``, ``h`` is
doubled or quadrupled at a time (base ``n = 24, D = 8, h = 16``, ``eps = 1e-6``), and
``eps`` runs from 1e-2 to 1e-12 on the base sizes. For the ``eps`` sweep the steps up
to the separation time ``T*`` are counted too (a run stopped by ``Separated()``),
and the step counts are fitted against ``log(1/eps)``. The small-initialisation
phase lasts ``log(1/eps) / rate``, so the step count should grow at most linearly
in ``log(1/eps)`` (log-log slope at most 1).
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

from benchmarks.problems import binary_problem, environment, margin_error
from ncflow.flow import Norm2Above, Separated, solve_flow

RESULTS = Path(__file__).resolve().parent / "results"
BASE = {"n": 24, "D": 8, "width": 16}
BASE_EPS = 1e-6
RTOL = 1e-8
ATOL = 1e-12
STOP_NORM2 = 1e8
EPS_VALUES = (1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12)


def _timed_run(bp, repeats: int, events) -> tuple[float, object]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = solve_flow(bp.problem, bp.params0, rtol=RTOL, atol=ATOL, events=events)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(sizes: dict, eps: float, repeats: int) -> dict:
    bp = binary_problem(eps=eps, **sizes)
    seconds, result = _timed_run(bp, repeats, [Norm2Above(STOP_NORM2)])
    return {
        **sizes,
        "eps": eps,
        "time_s": seconds,
        "repeats": repeats,
        "status": result.status,
        "steps": result.n_accepted,
        "rejected": result.n_rejected,
        "gradient_evaluations": result.nfev,
        "jacobians": result.njev,
        "activation_events": len(result.activation_events),
        "separation_log_t": result.separation_log_t,
        "norm2": result.norm2,
        "error": margin_error(bp.problem, result.params, bp.predicted),
    }


def measure_separation(eps: float) -> dict:
    bp = binary_problem(eps=eps, **BASE)
    seconds, result = _timed_run(bp, 1, [Separated()])
    return {
        "time_to_separation_s": seconds,
        "steps_to_separation": result.n_accepted,
        "evaluations_to_separation": result.nfev,
        "separation_status": result.status,
    }


def fit_against_log_eps(rows: list[dict], key: str) -> dict:
    """Least-squares fits of ``rows[key]`` against ``L = log(1/eps)``: the linear
    slope (per unit of ``L``) and the slope of ``log(value)`` against ``log L``."""
    L = np.array([math.log(1.0 / row["eps"]) for row in rows])
    values = np.array([float(row[key]) for row in rows])
    linear = np.polyfit(L, values, 1)
    loglog = np.polyfit(np.log(L), np.log(np.maximum(values, 1.0)), 1)
    return {
        "per_unit_log_inverse_eps": float(linear[0]),
        "loglog_slope": float(loglog[0]),
    }


COLUMNS = ("n", "D", "h", "eps", "time s", "steps", "rejected", "grad evals", "events")


def _print(rows: list[dict], extra: tuple = ()) -> None:
    header = [*COLUMNS, *extra, "R", "error"]
    table = [list(header)]
    for row in rows:
        cells = [
            str(row["n"]),
            str(row["D"]),
            str(row["width"]),
            f"{row['eps']:.0e}",
            f"{row['time_s']:.3f}",
            str(row["steps"]),
            str(row["rejected"]),
            str(row["gradient_evaluations"]),
            str(row["activation_events"]),
        ]
        cells += [str(row[name]) for name in extra]
        cells += [f"{row['norm2']:.3g}", f"{row['error']:.2e}"]
        table.append(cells)
    widths = [max(len(row[k]) for row in table) for k in range(len(header))]
    for row in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (median)")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_scaling.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    started = environment()

    sizes = [dict(BASE)]
    for key in ("n", "D", "width"):
        for factor in (2, 4):
            sizes.append({**BASE, key: BASE[key] * factor})
    size_rows = []
    for config in sizes:
        size_rows.append(measure(config, BASE_EPS, args.repeats))
    print(f"sizes (eps = {BASE_EPS:g}, rtol = {RTOL:g}, stop at R = {STOP_NORM2:g})")
    _print(size_rows)

    eps_rows = []
    for eps in EPS_VALUES:
        row = measure(dict(BASE), eps, args.repeats)
        row.update(measure_separation(eps))
        eps_rows.append(row)
    print(f"\neps (n, D, h = 24, 8, 16, rtol = {RTOL:g}, stop at R = {STOP_NORM2:g})")
    _print(eps_rows, ("steps_to_separation",))
    fits = {
        key: fit_against_log_eps(eps_rows, key)
        for key in ("steps", "steps_to_separation", "gradient_evaluations")
    }
    for key, fit in fits.items():
        print(
            f"  {key}: {fit['per_unit_log_inverse_eps']:.2f} per unit of log(1/eps), "
            f"log-log slope {fit['loglog_slope']:.3f}"
        )

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "environment": started,
        "settings": {
            "rtol": RTOL,
            "atol": ATOL,
            "stop_norm2": STOP_NORM2,
            "repeats": args.repeats,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "sizes": size_rows,
        "eps": eps_rows,
        "fits": fits,
    }
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
