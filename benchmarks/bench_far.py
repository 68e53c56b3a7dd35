"""Cost of carrying the flow to ``||theta||^2 = 1e12`` on both benchmark problems.

Run ``python -m benchmarks.bench_far``; it prints one table and writes
``results/bench_far.json``.

Each row is one adaptive run of the binary or three-class problem of
``benchmarks.problems`` from ``theta(0)`` to ``R = 1e12`` at one ``rtol``. It
reports the wall time (median of the repeats), the steps, the evaluations and the
steps taken at the noise floor. It also reports ``log t`` at the end, which is
past the float64 range of ``t`` (from ``log t`` of about 709 on), and the C11
margin error there. The margin
error of a run that is accurate to ``rtol`` does not depend on ``rtol`` in its
leading digits, so the spread across the rows shows the integrator's share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from benchmarks.problems import PROBLEMS, environment, margin_error
from ncflow.flow import Norm2Above, solve_flow

RESULTS = Path(__file__).resolve().parent / "results"
STOP_NORM2 = 1e12
RTOLS = (1e-6, 1e-8, 1e-10)
ATOL = 1e-12


def measure(name: str, rtol: float, repeats: int) -> dict:
    bp = PROBLEMS[name]()
    events = [Norm2Above(STOP_NORM2)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = solve_flow(bp.problem, bp.params0, rtol=rtol, atol=ATOL, events=events)
        times.append(time.perf_counter() - start)
    return {
        "problem": name,
        "rtol": rtol,
        "time_s": statistics.median(times),
        "repeats": repeats,
        "status": result.status,
        "message": result.message,
        "steps": result.n_accepted,
        "rejected": result.n_rejected,
        "gradient_evaluations": result.nfev,
        "lu_factorisations": result.nlu,
        "noise_limited_steps": result.settings["noise_limited_steps"],
        "norm2": result.norm2,
        "log_t": result.log_t,
        "error": margin_error(bp.problem, result.params, bp.predicted),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (median)")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_far.json")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    started = environment()

    rows = [measure(name, rtol, args.repeats) for name in PROBLEMS for rtol in RTOLS]
    header = ("problem", "rtol", "time s", "steps", "rejected", "evals", "noise", "R")
    print("  ".join(header), " log t  error")
    for row in rows:
        print(
            f"{row['problem']:>11}  {row['rtol']:.0e}  {row['time_s']:6.3f}  "
            f"{row['steps']:5d}  {row['rejected']:4d}  "
            f"{row['gradient_evaluations']:6d}  "
            f"{row['noise_limited_steps']:3d}  {row['norm2']:.4g}  {row['log_t']:.6g}  "
            f"{row['error']:.3e}"
        )

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "environment": started,
        "settings": {
            "stop_norm2": STOP_NORM2,
            "atol": ATOL,
            "repeats": args.repeats,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "rows": rows,
    }
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
