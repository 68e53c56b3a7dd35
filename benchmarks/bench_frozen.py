"""Frozen-gradient steps against Runge-Kutta steps, up to the end of the plateau.

Run ``python -m benchmarks.bench_frozen``; it prints a table and writes
``results/bench_frozen.json``.

From a small initialisation the activation changes happen while the outputs are
tiny, where the adaptive integrator takes exact frozen-gradient steps
(``ncflow/flow/frozen.py``). With one output direction each crossing is a root in
closed form; with ``K >= 3`` classes it comes from the certified search of
``CrossingTable``. Each row runs one start twice, with frozen steps and with
``adaptive.FROZEN_STEPS = False``, at ``rtol = 1e-8`` to ``||theta||^2 = 1``,
past the escape from the plateau. It reports the best process time of each,
the gradient evaluations, the activation changes, whether both runs changed the
same pairs in the same order, and the largest difference of the final neurons
relative to their norms.

The starts: the binary benchmark problem, and the data of the three-class benchmark
problem from balanced Gaussian shapes (``balanced_shapes``, seeds 0 to 5) in place
of its semi-local ones, which are separated from the start. Some of those runs
stop where the flow slides along a boundary (status -2), the same in both modes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.problems import (
    best_patched_time,
    binary_problem,
    three_class_problem,
    write_report,
)
from ncflow.flow import adaptive
from ncflow.init import balanced_init, balanced_shapes

RESULTS = Path(__file__).resolve().parent / "results"
RTOL = 1e-8
ATOL = 1e-12
STOP_NORM2 = 1.0
EPS_VALUES = (1e-6, 1e-12)
SHAPE_SEEDS = range(6)


def _run(problem, params0, frozen: bool, repeats: int) -> tuple[float, object]:
    """Return the best process time of ``repeats`` runs, with or without frozen
    steps, and the last result."""
    return best_patched_time(
        adaptive,
        "FROZEN_STEPS",
        frozen,
        problem,
        params0,
        repeats,
        rtol=RTOL,
        atol=ATOL,
        stop_norm2=STOP_NORM2,
    )


def _largest_difference(a, b) -> float:
    """Return the largest difference of two networks' neurons, relative to the
    neuron's norm."""
    worst = 0.0
    for j in range(a.width):
        left = np.append(a.W[:, j], a.V[:, j])
        right = np.append(b.W[:, j], b.V[:, j])
        worst = max(worst, float(np.linalg.norm(left - right) / np.linalg.norm(right)))
    return worst


def bench_start(name: str, problem, params0, repeats: int) -> dict:
    row = {"problem": name}
    results = {}
    for mode, frozen in (("frozen", True), ("without", False)):
        seconds, result = _run(problem, params0, frozen, repeats)
        results[mode] = result
        row[mode] = {
            "time_s": seconds,
            "status": result.status,
            "steps": result.n_accepted,
            "frozen_steps": result.settings["frozen_steps"],
            "gradient_evaluations": result.nfev,
            "activation_changes": len(result.activation_events),
        }
    frozen, without = results["frozen"], results["without"]
    row["same_pairs"] = [e.pairs for e in frozen.activation_events] == [
        e.pairs for e in without.activation_events
    ]
    row["relative_difference"] = _largest_difference(frozen.params, without.params)
    row["speed_up"] = row["without"]["time_s"] / row["frozen"]["time_s"]
    return row


def starts():
    """Yield ``(name, problem, params0)`` for every row."""
    binary = binary_problem()
    yield "binary", binary.problem, binary.params0
    problem = three_class_problem().problem
    D, width = problem.X.shape[1], 12
    for eps in EPS_VALUES:
        for seed in SHAPE_SEEDS:
            shapes = balanced_shapes(np.random.default_rng(seed), D, width, 3)
            name = f"3-class s{seed} eps={eps:g}"
            yield name, problem, balanced_init(shapes, eps)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode")
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "bench_frozen.json", help="JSON path"
    )
    args = parser.parse_args(argv)
    rows = []
    print(
        f"{'start':>24} {'status':>6} {'frozen s':>9} {'without s':>9} "
        f"{'speed-up':>8} {'evals':>11} {'changes':>7} {'same':>5} {'difference':>10}"
    )
    for name, problem, params0 in starts():
        row = bench_start(name, problem, params0, args.repeats)
        rows.append(row)
        frozen, without = row["frozen"], row["without"]
        print(
            f"{name:>24} {frozen['status']:>6} {frozen['time_s']:>9.3f} "
            f"{without['time_s']:>9.3f} {row['speed_up']:>8.2f} "
            f"{frozen['gradient_evaluations']:>5}/"
            f"{without['gradient_evaluations']:<5} "
            f"{frozen['activation_changes']:>7} {str(row['same_pairs']):>5} "
            f"{row['relative_difference']:>10.2g}",
            flush=True,
        )
    settings = {
        "rtol": RTOL,
        "atol": ATOL,
        "stop_norm2": STOP_NORM2,
        "repeats": args.repeats,
    }
    write_report(args.output, settings, rows)


if __name__ == "__main__":
    main()
