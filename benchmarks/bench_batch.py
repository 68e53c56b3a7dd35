"""Several initialisations of one dataset: one at a time against a process pool.

Run ``python -m benchmarks.bench_batch``; it prints a table and writes
``results/bench_batch.json``.

The adaptive method has no batch mode: it integrates one start at a time. The
baseline for "as one batch" is therefore a ``concurrent.futures`` process pool of
two workers, each integrating whole runs, against the same runs one after another
in one process. Every run is the binary benchmark problem (data seed 0) with its
own shape seed, at ``eps = 1e-6`` and ``rtol = 1e-8``, stopped at
``||theta||^2 = 1e8``. The integrator pins BLAS to one thread, so each worker uses
one core.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.problems import (
    binary_problem_with_start,
    environment,
    margin_error,
)
from ncflow.flow import Norm2Above, solve_flow

RESULTS = Path(__file__).resolve().parent / "results"
RTOL = 1e-8
ATOL = 1e-12
STOP_NORM2 = 1e8
FIRST_SHAPE_SEED = 1000


def integrate(shape_seed: int) -> dict:
    """Integrate the start of ``shape_seed`` and return its counters and state."""
    bp = binary_problem_with_start(24, 8, 16, 1e-6, 0, shape_seed)
    start = time.perf_counter()
    result = solve_flow(
        bp.problem, bp.params0, rtol=RTOL, atol=ATOL, events=[Norm2Above(STOP_NORM2)]
    )
    return {
        "shape_seed": shape_seed,
        "time_s": time.perf_counter() - start,
        "status": result.status,
        "steps": result.n_accepted,
        "gradient_evaluations": result.nfev,
        "error": margin_error(bp.problem, result.params, bp.predicted),
        "theta": result.params.flat().tolist(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=8, help="initialisations")
    parser.add_argument("--workers", type=int, default=2, help="pool processes")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_batch.json")
    args = parser.parse_args(argv)
    seeds = [FIRST_SHAPE_SEED + k for k in range(args.starts)]
    load_before = os.getloadavg()
    started = environment()

    begin = time.perf_counter()
    serial = [integrate(seed) for seed in seeds]
    serial_s = time.perf_counter() - begin

    begin = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers) as pool:
        pooled = list(pool.map(integrate, seeds))
    pooled_s = time.perf_counter() - begin

    identical = all(
        np.array_equal(a["theta"], b["theta"]) for a, b in zip(serial, pooled)
    )
    header = ("seed", "steps", "grad evals", "serial s", "pool s", "error")
    print("  ".join(f"{name:>10}" for name in header))
    for a, b in zip(serial, pooled):
        cells = (
            str(a["shape_seed"]),
            str(a["steps"]),
            str(a["gradient_evaluations"]),
            f"{a['time_s']:.3f}",
            f"{b['time_s']:.3f}",
            f"{a['error']:.3e}",
        )
        print("  ".join(f"{cell:>10}" for cell in cells))
    print(
        f"\none at a time: {serial_s:.3f} s; pool of {args.workers}: {pooled_s:.3f} s "
        f"(speed-up {serial_s / pooled_s:.2f}, {os.cpu_count()} CPUs); "
        f"identical final states: {identical}"
    )

    for row in serial + pooled:
        del row["theta"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "environment": started,
        "settings": {
            "starts": args.starts,
            "workers": args.workers,
            "rtol": RTOL,
            "atol": ATOL,
            "stop_norm2": STOP_NORM2,
            "cpu_count": os.cpu_count(),
        },
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "serial_s": serial_s,
        "pool_s": pooled_s,
        "speedup": serial_s / pooled_s,
        "identical_final_states": identical,
        "serial": serial,
        "pool": pooled,
    }
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
