"""Implicit steps by neuron groups against the whole matrix.

Run ``python -m benchmarks.bench_blocks``; it prints a table and writes
``results/bench_blocks.json``.

After separation the adaptive integrator factors ``shift I - J`` one neuron group
at a time (``ncflow/flow/linear.py``) once the state has
``linear.MIN_BLOCK_SIZE`` entries. Each row runs one problem twice from the
same start, with the blocks and with ``MIN_BLOCK_SIZE`` raised past the state
size (the whole matrix), at ``rtol = 1e-8`` to ``||theta||^2 = 1e8``. It
reports the best process time of each, the counters and the C11 error. The last
column is the largest difference of the two final states, relative to their
largest entry.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.problems import (
    best_patched_time,
    binary_problem,
    margin_error,
    three_class_problem,
    write_report,
)
from ncflow.flow import linear

RESULTS = Path(__file__).resolve().parent / "results"
RTOL = 1e-8
ATOL = 1e-12
STOP_NORM2 = 1e8
# (constructor, n, D, h): the two benchmark problems, then larger D and h.
CASES = [
    (binary_problem, 24, 8, 16),
    (binary_problem, 24, 32, 16),
    (binary_problem, 24, 8, 64),
    (three_class_problem, 30, 6, 12),
    (three_class_problem, 30, 32, 24),
    (three_class_problem, 30, 16, 48),
]


def _run(bp, smallest: int, repeats: int) -> tuple[float, object]:
    """Best process time of ``repeats`` runs with ``MIN_BLOCK_SIZE = smallest``."""
    return best_patched_time(
        linear,
        "MIN_BLOCK_SIZE",
        smallest,
        bp.problem,
        bp.params0,
        repeats,
        rtol=RTOL,
        atol=ATOL,
        stop_norm2=STOP_NORM2,
    )


def bench_case(make, n: int, D: int, h: int, repeats: int) -> dict:
    bp = make(n=n, D=D, width=h)
    # Output weights in the polar state: 1 (binary) or K - 1 (cross-entropy).
    d_y = 1 if bp.problem.binary else bp.problem.num_outputs - 1
    entries = h * (1 + D + d_y)
    row = {"problem": bp.name, "n": n, "D": D, "h": h, "state_entries": entries}
    finals = {}
    for mode, smallest in (("blocks", linear.MIN_BLOCK_SIZE), ("whole", 10**9)):
        seconds, result = _run(bp, smallest, repeats)
        finals[mode] = result.params.flat()
        row[mode] = {
            "time_s": seconds,
            "status": result.status,
            "steps": result.n_accepted,
            "rejected": result.n_rejected,
            "gradient_evaluations": result.nfev,
            "error": margin_error(bp.problem, result.params, bp.predicted),
        }
    difference = np.max(np.abs(finals["blocks"] - finals["whole"]))
    row["relative_difference"] = float(difference / np.max(np.abs(finals["whole"])))
    row["speed_up"] = row["whole"]["time_s"] / row["blocks"]["time_s"]
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode")
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "bench_blocks.json", help="JSON path"
    )
    args = parser.parse_args(argv)
    rows = []
    print(
        f"{'problem':>12} {'n':>3} {'D':>3} {'h':>3} {'entries':>7} "
        f"{'blocks s':>9} {'whole s':>8} {'speed-up':>8} {'steps':>11} "
        f"{'evals':>11} {'error':>9} {'difference':>10}"
    )
    for make, n, D, h in CASES:
        row = bench_case(make, n, D, h, args.repeats)
        rows.append(row)
        blocks, whole = row["blocks"], row["whole"]
        print(
            f"{row['problem']:>12} {n:>3} {D:>3} {h:>3} {row['state_entries']:>7} "
            f"{blocks['time_s']:>9.3f} {whole['time_s']:>8.3f} "
            f"{row['speed_up']:>8.2f} "
            f"{blocks['steps']:>5}/{whole['steps']:<5} "
            f"{blocks['gradient_evaluations']:>5}/{whole['gradient_evaluations']:<5} "
            f"{blocks['error']:>9.3g} {row['relative_difference']:>10.2g}",
            flush=True,
        )
    settings = {
        "rtol": RTOL,
        "atol": ATOL,
        "stop_norm2": STOP_NORM2,
        "repeats": args.repeats,
        "min_block_size": linear.MIN_BLOCK_SIZE,
    }
    write_report(args.output, settings, rows)


if __name__ == "__main__":
    main()
