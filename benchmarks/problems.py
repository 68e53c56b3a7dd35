"""Fixed, seeded benchmark problems and the error measure the benchmarks report.

Both problems are orthogonally separable by construction (every class is a cone of
small half-angle around its own centre), and the constructors check A1 (and A5 for
the three-class problem) with ``ncflow.geometry`` before returning.

| symbol | code | meaning |
|---|---|---|
| ``X`` | ``problem.X`` | samples, shape (n, D) |
| ``eps`` | ``eps`` | initial scale, ``theta(0) = eps theta_0`` |
| ``gamma_k`` | ``gammas[k]`` | one-class max margin of class ``k`` |
| C11 margin | ``predicted`` | ``c_K / (2 sum_k 1/gamma_k)`` (see below) |

The reported error is the C11 margin error of Min, Zhu and Vidal (NeurIPS 2025,
"Neural Collapse under Gradient Flow on Shallow ReLU Networks for Orthogonally
Separable Data"): the largest over classes ``k`` of
``|min_{i in I_k} margin_i(theta / ||theta||) - predicted| / predicted``, with
``margin_i = y_i f(x_i)`` (binary) or ``f_k(x_i) - max_{l != k} f_l(x_i)``.
The constant ``c_K`` is 1 for a scalar output and ``sqrt(K/(K-1))`` for ``K``
outputs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from ncflow.data import Dataset
from ncflow.flow import Norm2Above, solve_flow
from ncflow.geometry import (
    a5_ratio,
    class_max_margins,
    predicted_margin,
    pseudo_labels,
    separability,
)
from ncflow.init import balanced_init, balanced_shapes, semilocal_shapes
from ncflow.network import Parameters, Problem, outputs, sample_margins

# Half-angle of the binary cones: below pi/4, so that two samples of one cone are
# less than pi/2 apart and samples of opposite cones more than pi/2 apart (A1).
BINARY_HALF_ANGLE = 0.5
BINARY_NORMS = (1.0, 2.0)
# Half-angle and norm range of the three-class cones around the simplex-ETF
# centres. A5 for K = 3 with norms within 2 % of each other needs a half-angle
# below about 0.027 rad.
THREE_CLASS_HALF_ANGLE = 0.025
THREE_CLASS_NORMS = (1.0, 1.02)


@dataclass(frozen=True)
class BenchmarkProblem:
    """A problem, its start and the C11 prediction it is measured against."""

    name: str
    problem: Problem
    params0: Parameters
    predicted: float
    description: str


def _cone(
    rng: np.random.Generator,
    centre: np.ndarray,
    count: int,
    half_angle: float,
    norm_range: tuple[float, float],
) -> np.ndarray:
    """Samples at uniform angles up to ``half_angle`` around the unit ``centre``,
    in uniform random directions and with norms uniform in ``norm_range``."""
    rows = np.empty((count, centre.size))
    for row in range(count):
        offset = rng.standard_normal(centre.size)
        offset -= (offset @ centre) * centre
        offset /= np.linalg.norm(offset)
        angle = rng.uniform(0.0, half_angle)
        direction = math.cos(angle) * centre + math.sin(angle) * offset
        rows[row] = direction * rng.uniform(*norm_range)
    return rows


def _predicted(problem: Problem) -> float:
    dataset = Dataset.from_arrays(problem.X, problem.labels)
    gammas = [margin.gamma for margin in class_max_margins(dataset)]
    return predicted_margin(gammas, multiclass=not problem.binary)


def binary_problem(
    n: int = 24, D: int = 8, width: int = 16, eps: float = 1e-6, seed: int = 0
) -> BenchmarkProblem:
    """Binary cones around ``+e_1`` and ``-e_1``, exponential loss, balanced
    Gaussian shapes with output signs alternating ``+, -`` (both groups non-empty).

    ``seed`` fixes the data; the shapes use ``seed + 1000`` so that the data stay
    fixed when only the start changes (``shape_seed``).
    """
    return binary_problem_with_start(n, D, width, eps, seed, seed + 1000)


def binary_problem_with_start(
    n: int, D: int, width: int, eps: float, seed: int, shape_seed: int
) -> BenchmarkProblem:
    rng = np.random.default_rng(seed)
    centre = np.zeros(D)
    centre[0] = 1.0
    half = n // 2
    X = np.vstack(
        [
            _cone(rng, centre, half, BINARY_HALF_ANGLE, BINARY_NORMS),
            _cone(rng, -centre, n - half, BINARY_HALF_ANGLE, BINARY_NORMS),
        ]
    )
    labels = np.repeat([0, 1], [half, n - half])
    problem = Problem(X, labels, 2, "exponential")
    _check_separable(problem)

    shapes = balanced_shapes(np.random.default_rng(shape_seed), D, width, 1)
    signs = np.where(np.arange(width) % 2 == 0, 1.0, -1.0)
    shapes = Parameters(shapes.W, np.abs(shapes.V) * signs)
    return BenchmarkProblem(
        name="binary",
        problem=problem,
        params0=balanced_init(shapes, eps),
        predicted=_predicted(problem),
        description=(
            f"binary n={n}, D={D}, h={width}: cones of half-angle "
            f"{BINARY_HALF_ANGLE} rad around +-e_1, norms in {list(BINARY_NORMS)}, "
            f"exponential loss, balanced Gaussian shapes (signs alternating), "
            f"eps={eps:g}, data seed {seed}, shape seed {shape_seed}"
        ),
    )


def three_class_problem(
    n: int = 30, D: int = 6, width: int = 12, eps: float = 1e-4, seed: int = 0
) -> BenchmarkProblem:
    """Three classes in cones around the simplex-ETF centres (padded into R^D),
    cross-entropy, semi-local shapes with neuron ``j`` in group ``j mod 3``."""
    K = 3
    rng = np.random.default_rng(seed)
    centres = np.zeros((K, D))
    centres[:, :K] = pseudo_labels(K).T
    per_class = [n // K + (1 if k < n % K else 0) for k in range(K)]
    X = np.vstack(
        [
            _cone(
                rng, centres[k], per_class[k], THREE_CLASS_HALF_ANGLE, THREE_CLASS_NORMS
            )
            for k in range(K)
        ]
    )
    labels = np.repeat(np.arange(K), per_class)
    problem = Problem(X, labels, K, "cross_entropy")
    _check_separable(problem)
    dataset = Dataset.from_arrays(X, labels)
    if not a5_ratio(dataset).holds:
        raise RuntimeError("the three-class construction no longer meets A5")

    groups = np.arange(width) % K
    shapes = semilocal_shapes(rng, X, labels, groups, K)
    return BenchmarkProblem(
        name="three_class",
        problem=problem,
        params0=balanced_init(shapes, eps),
        predicted=_predicted(problem),
        description=(
            f"3-class n={n}, D={D}, h={width}: cones of half-angle "
            f"{THREE_CLASS_HALF_ANGLE} rad around the simplex-ETF centres, norms in "
            f"{list(THREE_CLASS_NORMS)} (A5 holds), cross-entropy, semi-local shapes, "
            f"eps={eps:g}, seed {seed}"
        ),
    )


def _check_separable(problem: Problem) -> None:
    report = separability(Dataset.from_arrays(problem.X, problem.labels))
    if not report.holds_a1:
        raise RuntimeError(
            f"the construction no longer meets A1: mu_s={report.mu_s:.3g}, "
            f"mu_d={report.mu_d:.3g}"
        )


PROBLEMS = {"binary": binary_problem, "three_class": three_class_problem}


def margin_error(problem: Problem, params: Parameters, predicted: float) -> float:
    """C11 margin error of ``params`` (see the module docstring); ``inf`` when a
    class has a non-positive minimum margin or the parameters are not finite."""
    flat = params.flat()
    if not np.all(np.isfinite(flat)) or not np.any(flat):
        return math.inf
    with np.errstate(over="ignore"):
        norm2 = params.norm2()
    if not math.isfinite(norm2):
        # Past sqrt(float64 max) the sum of squares overflows; scale first.
        largest = float(np.max(np.abs(flat)))
        norm2 = largest**2 * params.scaled(1.0 / largest).norm2()
    unit = params.scaled(1.0 / math.sqrt(norm2))
    f = outputs(problem, unit)
    margins = sample_margins(problem, f)
    per_class = np.array(
        [margins[problem.labels == k].min() for k in range(problem.num_classes)]
    )
    if np.any(per_class <= 0):
        return math.inf
    return float(np.max(np.abs(per_class - predicted)) / predicted)


def best_process_time(run, repeats: int) -> tuple[float, object]:
    """Call ``run()`` ``repeats`` times; return the best process time and the
    last result."""
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        result = run()
        best = min(best, time.process_time() - start)
    return best, result


def best_patched_time(
    target, name: str, value, problem, params0, repeats: int, **options
) -> tuple[float, object]:
    """Return the best process time of ``repeats`` adaptive runs to
    ``||theta||^2 = stop_norm2`` with ``target.name`` set to ``value``, and the
    last result. ``options``: ``rtol``, ``atol`` and ``stop_norm2``."""
    stop = options.pop("stop_norm2")

    def run():
        return solve_flow(problem, params0, events=[Norm2Above(stop)], **options)

    with mock.patch.object(target, name, value):
        return best_process_time(run, repeats)


def write_report(output: Path, settings: dict, rows: list) -> None:
    """Write the environment, ``settings`` and ``rows`` as JSON to ``output``."""
    report = {"environment": environment(), "settings": settings, "rows": rows}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output}")


def environment() -> dict:
    """Command, machine, versions, CPU count, load average and source revision.

    The revision is ``git rev-parse HEAD`` plus the files under ``ncflow/`` that
    differ from it, because a timing belongs to the code that produced it.
    """
    import scipy

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*command):
        try:
            return subprocess.run(
                ["git", *command], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    changed = git("status", "--porcelain", "ncflow")
    return {
        "command": _command(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "revision": git("rev-parse", "HEAD"),
        "changed_ncflow_files": None if changed is None else changed.splitlines(),
    }


def _cpu_model() -> str | None:
    """Read the ``model name`` line of ``/proc/cpuinfo`` (Linux only), else None."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _command() -> str:
    """Return this process's command line, as ``python -m module args`` when run so."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = ["-m", spec.name] if spec is not None else sys.argv[:1]
    return " ".join(["python", *program, *sys.argv[1:]])
