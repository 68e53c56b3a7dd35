"""The engine of ``ncflow verify``: every claim and exploration, in one report.

A run is planned as a list of :class:`Task` objects, each with a sort key:

- one task per drawn example of each family of :mod:`theory_checks.suite`. The
  example is trained once and every claim of its family is checked on that
  trajectory (C1, C2, C4 .. C13 on binary examples; C1, C3 .. C14 and E1 .. E3
  on three-class examples);
- one task per exploration X1 .. X8 (:func:`theory_checks.explorations.explore`).

Examples are drawn in the main process from one seed, before any task runs, and
each task is deterministic given its inputs. Results are sorted by task key
before they are aggregated, so the verdicts depend neither on the number of
worker processes nor on the order in which tasks finish. Every worker runs with
one torch and one BLAS thread, since the thread count changes the order of
reductions and hence the last bits of a long flow.

A FAIL is written as a counterexample record (:func:`theory_checks.records.
write_record`) by the worker that found it, as soon as it is found, so that an
interrupted run keeps every record already written. An exploration writes the
smallest violation it finds the same way.

Claim verdicts of a run (one row per claim and family):

- FAIL when any example FAILs;
- INCONCLUSIVE when no example was checked, or more than
  :data:`MAX_INCONCLUSIVE_SHARE` of them were INCONCLUSIVE (such a run verified
  too little to pass);
- NOT AVAILABLE when the module that decides the claim is not importable;
- PASS otherwise.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence, Set
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ncflow._validation import InvalidArgument, check_int, check_path
from theory_checks import case_hint, explorations, suite
from theory_checks.interrupts import StickyInterrupt, checkpoint, deferred
from theory_checks.runs import Example, RunSettings
from theory_checks.verdict import Outcome, Verdict, inconclusive

DEFAULT_PROFILE = "dev"
DEFAULT_SEED = 20251021
DEFAULT_OUT = "ncflow-report"
COUNTEREXAMPLE_DIR = "counterexamples"
PLOT_DIR = "plots"
REPORT_FORMAT = "ncflow-verify/1"
# A claim whose examples are more often INCONCLUSIVE than this is INCONCLUSIVE.
MAX_INCONCLUSIVE_SHARE = 0.2
NOT_AVAILABLE = "NOT AVAILABLE"
# Status of a task whose check or search raised an unexpected exception.
ERROR = "error"
# Errors a check may raise on an example it was not written for; each is counted
# as an INCONCLUSIVE verdict with the error text.
CHECK_ERRORS = explorations.CHECK_ERRORS
# A task whose worker process died is run once more in a fresh pool; a second
# death marks it lost.
WORKER_RETRIES = 1

# progress(task, result, message): called as each task ends, with result None
# for a message about the run (a retry, or drawing examples, where task is None).
Progress = Callable[["Task | None", "TaskResult | None", str], None]


@dataclass(frozen=True)
class Profile:
    """Budget of a run.

    Attributes
    ----------
    name : str
    binary_examples, multiclass_examples : int
        Examples drawn from each family.
    exploration_examples : int
        Cases each exploration generates before it reports no violation.
    exploration_shrinks : int
        New cases an exploration evaluates while shrinking a violation.
    sweep_examples : int
        Drawn examples of the sweeps of X2 (eps) and X8 (step).
    """

    name: str
    binary_examples: int
    multiclass_examples: int
    exploration_examples: int
    exploration_shrinks: int
    sweep_examples: int

    def limited(self, max_examples: int) -> Profile:
        """Return the profile with every example count set to ``max_examples``."""
        return replace(
            self,
            binary_examples=max_examples,
            multiclass_examples=max_examples,
            exploration_examples=max_examples,
            sweep_examples=min(self.sweep_examples, max_examples),
        )


# Upper limit of max_examples (--max-examples). Hypothesis 6.170 accepts any
# max_examples, but its documentation of the setting advises coverage-guided
# fuzzing beyond 100,000 test cases per test. Every example of a family is drawn
# before the first check runs, and suite.draw_examples took 149 s and 427 MB of
# peak memory for 40,000 binary examples (Hypothesis 6.170.27, one core of a
# shared 2-core machine). At that rate, drawing 10**12 examples would take over a
# century.
MAX_EXAMPLES_LIMIT = 100_000

PROFILES = {
    # About 15 s on two cores: a handful of examples per claim.
    "dev": Profile("dev", 6, 3, 3, 2, 3),
    "ci": Profile("ci", 25, 25, 25, 8, 2),
    "thorough": Profile("thorough", 500, 500, 500, 32, 5),
}


@dataclass(frozen=True)
class VerifyConfig:
    """Options of one run; :func:`validate_config` checks them.

    Attributes
    ----------
    profile : str
        A key of :data:`PROFILES`.
    seed : int
        Seed of every draw (examples and exploration searches), ``>= 0``.
    jobs : int
        Worker processes, ``>= 1``; 1 runs every task in this process.
    out : Path
        Report directory.
    claims : tuple of str or None
        Claim and exploration ids to run (None: all).
    max_examples : int or None
        Overrides every example count of the profile, 1 to
        :data:`MAX_EXAMPLES_LIMIT`.
    plots : bool
        Whether to draw the report's PNG figures.
    """

    profile: str = DEFAULT_PROFILE
    seed: int = DEFAULT_SEED
    jobs: int = 1
    out: Path = Path(DEFAULT_OUT)
    claims: tuple | None = None
    max_examples: int | None = None
    plots: bool = True

    def budget(self) -> Profile:
        profile = PROFILES[self.profile]
        if self.max_examples is not None:
            profile = profile.limited(self.max_examples)
        return profile


def known_ids() -> tuple:
    """Return every claim and exploration id a run can select, in report order."""
    ids = []
    for family in suite.FAMILIES.values():
        ids.extend(claim for claim in family.claims if claim not in ids)
    ids.sort(key=_id_order)
    return tuple(ids) + explorations.IDS


def _id_order(claim: str) -> tuple:
    return ("CEX".index(claim[0]), int(claim[1:]))


def validate_config(config: VerifyConfig) -> VerifyConfig:
    """Check every option and return the config with ``out`` as a Path.

    Raises
    ------
    InvalidArgument
        Naming the option, its value and the fix.
    """
    if config.profile not in PROFILES:
        raise InvalidArgument(
            f"profile={config.profile!r} is invalid: it must be one of "
            f"{', '.join(PROFILES)}; dev runs a few examples per claim, ci 25, "
            "thorough 500"
        )
    check_int("seed", config.seed, 0, fix="give a seed of 0 or more (--seed)")
    max_jobs = MAX_JOBS_PER_CPU * (os.cpu_count() or 1)
    check_int(
        "jobs",
        config.jobs,
        1,
        max_jobs,
        fix=(
            f"give 1 to run in this process, or a worker count up to {max_jobs} "
            f"({MAX_JOBS_PER_CPU} per CPU) (--jobs)"
        ),
    )
    if config.max_examples is not None:
        check_int(
            "max_examples",
            config.max_examples,
            1,
            fix="give at least 1 example per claim (--max-examples)",
        )
        check_int(
            "max_examples",
            config.max_examples,
            high=MAX_EXAMPLES_LIMIT,
            fix=f"give at most {MAX_EXAMPLES_LIMIT} examples per claim "
            "(--max-examples), and run again with another --seed to check more",
        )
    claims = config.claims
    if claims is not None:
        known = known_ids()
        unknown = [claim for claim in claims if claim not in known]
        if unknown or not claims:
            raise InvalidArgument(
                f"claims={','.join(claims)!r} is invalid: "
                + (
                    f"{unknown[0]!r} is not a claim id{case_hint(unknown[0], known)}; "
                    if unknown
                    else "it is empty; "
                )
                + f"use a comma-separated list of {', '.join(known)} (--claims)"
            )
        claims = tuple(dict.fromkeys(claims))
    out = check_path(
        "out",
        config.out,
        fix=f"give a directory for the report with --out, such as {DEFAULT_OUT}",
    )
    return replace(config, out=out, claims=claims)


def prepare_out(out: Path) -> list[Path]:
    """Create the report directory and its record directory, or raise clearly.

    Returns
    -------
    list of Path
        The directories created, outermost first (:func:`~ncflow.report_io.
        make_directories`), so that an interrupted run can remove them again.

    Raises
    ------
    InvalidArgument
        When ``out`` is a file, or cannot be created or written.
    """
    from ncflow.report_io import make_directories

    if out.exists() and not out.is_dir():
        raise InvalidArgument(
            f"out={str(out)!r} is invalid: it is a file, not a directory; give a "
            "directory path for the report"
        )
    try:
        created = make_directories(out / COUNTEREXAMPLE_DIR)
        probe = out / ".ncflow-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise InvalidArgument(
            f"out={str(out)!r} is invalid: it cannot be written ({error.strerror}); "
            "give a writable directory with --out"
        ) from None
    return created


# -- tasks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One unit of work: an example with its claims, or one exploration.

    Attributes
    ----------
    key : tuple
        Sort key: ``(0, family, index)`` for examples, ``(1, xid)`` for
        explorations.
    claims : tuple of str
        Claims checked on the example, or ``(xid,)``.
    example : Example or None
    family : str or None
    budget : dict
        Keyword arguments of :func:`explorations.explore` (explorations only).
    """

    key: tuple
    claims: tuple
    example: Example | None = None
    family: str | None = None
    budget: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.family is not None:
            return f"{self.family} example {self.key[2]}"
        return f"exploration {self.key[1]}"


def plan(config: VerifyConfig, progress: Progress | None = None) -> list[Task]:
    """Plan the tasks of a run, drawing examples from ``config.seed``, by key.

    ``progress(None, None, message)`` is called before each family is drawn.
    """
    budget = config.budget()
    selected = config.claims
    counts = {
        "binary": budget.binary_examples,
        "multiclass": budget.multiclass_examples,
    }
    tasks = []
    for name, family in suite.FAMILIES.items():
        claims = tuple(c for c in family.claims if selected is None or c in selected)
        if not claims:
            continue
        if progress:
            progress(None, None, f"drawing {counts[name]} {name} examples")
        drawn = suite.draw_examples(family.strategy(), counts[name], config.seed)
        for index, example in enumerate(drawn):
            tasks.append(Task((0, name, index), claims, example, name))
    for xid in explorations.IDS:
        if selected is not None and xid not in selected:
            continue
        options = {
            "max_examples": budget.exploration_examples,
            "max_shrinks": budget.exploration_shrinks,
            "sweep_examples": budget.sweep_examples,
            "seed": config.seed,
        }
        tasks.append(Task((1, xid), (xid,), budget=options))
    return sorted(tasks, key=lambda task: task.key)


@dataclass
class TaskResult:
    """The result a task sends back to the main process (plain data, picklable).

    Attributes
    ----------
    key : tuple
    verdicts : list of dict
        One entry per claim: ``claim``, ``family``, ``outcome`` (an outcome or
        :data:`NOT_AVAILABLE`), ``margin``, ``reason``, ``record``.
    exploration : dict or None
        ``ExplorationResult.to_dict()`` of an exploration task.
    trajectories : dict
        Record file name -> trajectory series (:func:`trajectory_series`) of
        each counterexample, for the report's figures.
    example : dict
        A summary of the example (sizes, eps, loss).
    seconds : float
    """

    key: tuple
    verdicts: list = field(default_factory=list)
    exploration: dict | None = None
    trajectories: dict = field(default_factory=dict)
    example: dict = field(default_factory=dict)
    seconds: float = 0.0


def run_task(task: Task, out: str) -> TaskResult:
    """Run one task; FAIL records go to ``out/counterexamples`` at once."""
    start = time.perf_counter()
    if task.family is None:
        result = _run_exploration(task, Path(out))
    else:
        result = _run_example(task, Path(out))
    result.seconds = time.perf_counter() - start
    return result


def _check_one(claim: str, example: Example, settings: RunSettings) -> Verdict | str:
    """Check one claim; return the reason instead where its module is missing."""
    from theory_checks import check

    try:
        return check(claim, example, settings)
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    except CHECK_ERRORS as error:
        return inconclusive(claim, f"the check raised {type(error).__name__}: {error}")
    except Exception as error:
        # Any other exception is a bug of the check. The run goes on, counts the
        # example INCONCLUSIVE, and exits with status 1 (VerifyReport.failed).
        return inconclusive(
            claim,
            f"the check failed with {type(error).__name__}: {error}",
            details={"error": True},
        )


def _run_example(task: Task, out: Path) -> TaskResult:
    from theory_checks.records import write_record
    from theory_checks.runs import train

    example = task.example
    settings = suite.SETTINGS
    result = TaskResult(task.key, example=_example_summary(example))
    for claim in task.claims:
        verdict = _check_one(claim, example, settings)
        entry = {"claim": claim, "family": task.family, "record": None}
        if isinstance(verdict, str):
            entry.update(outcome=NOT_AVAILABLE, margin=None, reason=verdict)
            result.verdicts.append(entry)
            continue
        entry.update(
            outcome=verdict.outcome.value,
            margin=verdict.margin,
            reason=verdict.reason,
            error=bool(verdict.details.get("error", False)),
        )
        if verdict.outcome is Outcome.FAIL:
            path = write_record(
                out / COUNTEREXAMPLE_DIR, claim, example, settings, verdict
            )
            entry["record"] = path.name
            run = train(example, settings)
            result.trajectories[path.name] = trajectory_series(run)
        result.verdicts.append(entry)
    return result


def _run_exploration(task: Task, out: Path) -> TaskResult:
    from theory_checks.records import read_record
    from theory_checks.runs import train

    xid = task.claims[0]
    try:
        found = explorations.explore(
            xid, record_dir=out / COUNTEREXAMPLE_DIR, **task.budget
        )
    except Exception as error:
        # A bug of the search; reported as status "error", exit status 1.
        exploration = explorations.EXPLORATIONS[xid]
        found = explorations.ExplorationResult(
            xid,
            exploration.question,
            ERROR,
            note=f"the search failed with {type(error).__name__}: {error}",
        )
    result = TaskResult(task.key, exploration=found.to_dict())
    if found.record is not None:
        name = Path(found.record).name
        result.exploration["record"] = name
        # Reading the record back checks that it replays from the file alone.
        record = read_record(found.record)
        run = train(record.example, record.settings)
        result.trajectories[name] = trajectory_series(run)
    return result


def _example_summary(example: Example) -> dict:
    dataset = example.dataset
    return {
        "n": dataset.n,
        "D": dataset.D,
        "K": dataset.K,
        "h": example.shapes.width,
        "eps": example.eps,
        "loss": example.loss,
        "fingerprint": example.fingerprint()[:16],
    }


def trajectory_series(run: Any) -> dict[str, Any]:
    """Loss, ``||theta||^2``, NC metrics and activation patterns over the records.

    Parameters
    ----------
    run : theory_checks.runs.Run

    Returns
    -------
    dict
        ``log_t``, ``log_loss``, ``norm2``, ``nc1``, ``nc2``, ``nc3`` (shape
        ``(r,)``, NaN where a metric is undefined), ``patterns`` (bool, shape
        ``(r, n, h)``) and ``kind`` (shape ``(r,)``).
    """
    from ncflow.training import metrics_along

    trajectory = run.result.trajectory
    labels = run.problem.labels
    along = metrics_along(run.problem, trajectory)
    metrics = {"nc1": along.nc1, "nc2": along.nc2, "nc3": along.nc3}
    return {
        "log_t": trajectory.log_t.copy(),
        "log_loss": trajectory.log_loss.copy(),
        "norm2": trajectory.norm2.copy(),
        "patterns": trajectory.patterns.copy(),
        "kind": np.asarray(trajectory.kind, dtype=str),
        "labels": np.asarray(labels).copy(),
        **metrics,
    }


# -- running -------------------------------------------------------------------------


# Each worker imports torch and the checks (a few hundred MB), and the tasks are
# CPU-bound, so more workers than this per CPU only cost memory.
MAX_JOBS_PER_CPU = 4


class Interrupted(Exception):
    """A run stopped by Ctrl-C; carries the results of the tasks that finished.

    :func:`verify` sets ``report`` to the report it wrote, or leaves it None when
    the run stopped before any task ran.
    """

    def __init__(self, results: list) -> None:
        super().__init__("interrupted")
        self.results = results
        self.report: VerifyReport | None = None


def limit_threads() -> None:
    """Limit this process to one torch and one BLAS thread (module docstring)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(limits=1)


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; only the main process handles it,
    # and it stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads()


def _pool_context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Workers fork from a server that has imported torch and the checks once.
    context.set_forkserver_preload(["theory_checks.verify"])
    return context


def _start_forkserver(context: multiprocessing.context.BaseContext) -> None:
    """Start the forkserver of ``context``, if it uses one, with SIGINT ignored.

    Ctrl-C reaches the whole process group. A forkserver started with SIGINT
    handled would print a KeyboardInterrupt traceback while it imports its
    preload modules. An ignored signal stays ignored across exec, so the server
    starts with it ignored, and the workers it forks inherit that. SIGINT is
    ignored in this process only while the server is spawned, which does not
    wait for the imports, so a Ctrl-C is lost only in that short window.
    """
    if context.get_start_method() != "forkserver":
        return
    import multiprocessing.forkserver

    # Only the main thread may set a signal handler.
    if threading.current_thread() is not threading.main_thread():
        multiprocessing.forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back SIGINT while the pool starts its workers, and raise it after.

    ``submit`` starts the workers and, with a forkserver, waits until the server
    has imported its preload modules. A worker still starting when this process
    stops finds the pool's semaphores removed and prints a traceback, so a
    Ctrl-C meanwhile is raised only once every worker has started, and then
    stops the pool.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(
        signal.SIGINT, lambda signum, frame: received.append(signum)
    )
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        # Delivered to the restored handler: KeyboardInterrupt by default.
        signal.raise_signal(signal.SIGINT)


def execute(
    tasks: Sequence[Task],
    out: Path,
    jobs: int,
    progress: Progress | None = None,
) -> tuple[list[TaskResult], list[str]]:
    """Run ``tasks`` (in this process when ``jobs == 1``), results sorted by key.

    ``progress(task, result, message)`` is called as each task ends. Returns the
    results and the messages of tasks lost to dying worker processes, whose
    results are missing.

    Raises
    ------
    Interrupted
        On KeyboardInterrupt, with the results of the finished tasks.
    """
    results: list[TaskResult] = []
    lost: list[str] = []
    try:
        if jobs == 1:
            # A KeyboardInterrupt raised while torch imports its C++ parts
            # aborted the process (seen: status -6), so Ctrl-C is held until
            # the import is done.
            with deferred():
                limit_threads()
            checkpoint()
            for task in tasks:
                result = run_task(task, str(out))
                results.append(result)
                if progress:
                    progress(task, result, "")
                checkpoint()
        else:
            lost = _execute_pool(tasks, out, jobs, results, progress)
    except KeyboardInterrupt:
        raise Interrupted(sorted(results, key=lambda r: r.key)) from None
    return sorted(results, key=lambda r: r.key), lost


def _execute_pool(tasks, out, jobs, results, progress) -> list[str]:
    # Long tasks (explorations) go first, so that they do not finish last alone.
    pending = sorted(tasks, key=lambda task: (task.family is not None, task.key))
    lost: list[str] = []
    for attempt in range(WORKER_RETRIES + 1):
        if not pending:
            break
        context = _pool_context()
        _start_forkserver(context)
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=min(jobs, len(pending)),
            mp_context=context,
            initializer=_worker_init,
        )
        failed = []
        try:
            with _sigint_deferred():
                futures = {
                    executor.submit(run_task, task, str(out)): task for task in pending
                }
            for future in concurrent.futures.as_completed(futures):
                task = futures[future]
                try:
                    result = future.result()
                except concurrent.futures.process.BrokenProcessPool as error:
                    failed.append((task, str(error)))
                    continue
                results.append(result)
                if progress:
                    progress(task, result, "")
                checkpoint()
        except KeyboardInterrupt:
            _stop(executor)
            raise
        executor.shutdown(wait=True)
        pending = [task for task, _ in failed]
        final = attempt == WORKER_RETRIES
        for task, message in failed:
            text = f"{task.name}: a worker process died ({message})" + (
                "; the task is lost" if final else "; running it again"
            )
            if final:
                lost.append(text)
            if progress:
                progress(task, None, text)
    return lost


def _stop(executor: concurrent.futures.ProcessPoolExecutor) -> None:
    """Cancel queued tasks and end the workers now.

    ``ProcessPoolExecutor`` has no public way to end running workers, so this
    terminates the processes it keeps in ``_processes`` (CPython 3.9 and later).
    A record being written when its worker ends is left as a temporary file,
    never as a partial record (``write_record`` links a complete file).
    """
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


# -- aggregating ---------------------------------------------------------------------


def claim_rows(results: Sequence[TaskResult], tasks: Sequence[Task]) -> list[dict]:
    """Aggregate one row per (claim, family): counts and verdict (module docstring)."""
    rows: dict[tuple, dict] = {}
    for task in tasks:
        if task.family is None:
            continue
        for claim in task.claims:
            rows.setdefault(
                (claim, task.family),
                {
                    "claim": claim,
                    "family": task.family,
                    "statement": suite.claim_statement(task.family, claim),
                    "planned": 0,
                    "examples": 0,
                    "PASS": 0,
                    "FAIL": 0,
                    "INCONCLUSIVE": 0,
                    "unavailable": 0,
                    "errors": 0,
                    "margins": [],
                    "worst_margin": None,
                    "records": [],
                    "reasons": [],
                },
            )
            rows[(claim, task.family)]["planned"] += 1

    for result in sorted(results, key=lambda r: r.key):
        for entry in result.verdicts:
            row = rows[(entry["claim"], entry["family"])]
            if entry["outcome"] == NOT_AVAILABLE:
                row["unavailable"] += 1
                if entry["reason"] not in row["reasons"]:
                    row["reasons"].append(entry["reason"])
                continue
            row["examples"] += 1
            row[entry["outcome"]] += 1
            row["errors"] += int(entry.get("error", False))
            margin = entry["margin"]
            if margin is not None and entry["outcome"] != "INCONCLUSIVE":
                row["margins"].append(margin)
            if entry["record"]:
                row["records"].append(entry["record"])
            if entry["outcome"] != "PASS" and len(row["reasons"]) < 3:
                row["reasons"].append(entry["reason"])

    for row in rows.values():
        finite = [m for m in row["margins"] if m is not None]
        row["worst_margin"] = max(finite) if finite else None
        row["verdict"] = _row_verdict(row)
    return sorted(
        rows.values(), key=lambda row: (_id_order(row["claim"]), row["family"])
    )


def _row_verdict(row: dict) -> str:
    if row["FAIL"]:
        return Outcome.FAIL.value
    if row["examples"] == 0 and row["unavailable"]:
        return NOT_AVAILABLE
    if row["examples"] == 0:
        return Outcome.INCONCLUSIVE.value
    if row["INCONCLUSIVE"] / row["examples"] > MAX_INCONCLUSIVE_SHARE:
        return Outcome.INCONCLUSIVE.value
    return Outcome.PASS.value


def exploration_rows(results: Sequence[TaskResult]) -> list[dict]:
    """Collect one row per exploration that ran, in id order."""
    rows = []
    for result in sorted(results, key=lambda r: r.key):
        if result.exploration is None:
            continue
        data = result.exploration
        verdict = data.get("verdict") or {}
        rows.append(
            {
                "claim": data["xid"],
                "statement": data["question"],
                "status": data["status"],
                "tried": data["tried"],
                "tried_before_found": data["tried_before_found"],
                "outcomes": data["outcomes"],
                "margin": verdict.get("margin"),
                "record": data["record"],
                "note": data["note"],
                "example": data["example"],
                "table": data["table"],
                "errors": data["errors"],
                "reasons": data.get("reasons", []),
                "seconds": data["seconds"],
            }
        )
    return rows


@dataclass
class VerifyReport:
    """The outcome of a run, as printed and written.

    Attributes
    ----------
    config : VerifyConfig
    claims : list of dict
        :func:`claim_rows`.
    explorations : list of dict
        :func:`exploration_rows`.
    lost : list of str
        Tasks lost to dying worker processes.
    complete : bool
        False for an interrupted run.
    seconds : float
        Wall-clock time of the run.
    records : list of str
        The record files of this run in the report's record directory.
    trajectories : dict
        Record name -> trajectory series, for the figures.
    earlier_records : list of str
        The other record files there: left from an earlier run into the same
        directory, never deleted, but not part of this report. ``ncflow replay``
        on the directory replays them too.
    """

    config: VerifyConfig
    claims: list
    explorations: list
    lost: list
    complete: bool
    seconds: float
    records: list
    trajectories: dict
    earlier_records: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether the run fails (exit status 1).

        It fails when a claim (C1-C14 or an erratum E1-E3) is FAIL, or
        INCONCLUSIVE (the run verified too little of it to pass), or when a check
        or search raised an error, as the pytest gate does. An erratum states a
        derivation of this suite, so its failure is a regression too. NOT
        AVAILABLE claims and exploration findings do not fail the run.
        """
        failing = (Outcome.FAIL.value, Outcome.INCONCLUSIVE.value)
        claim_failed = any(row["verdict"] in failing for row in self.claims)
        errors = any(row["errors"] for row in self.claims) or any(
            row["status"] == ERROR for row in self.explorations
        )
        return claim_failed or errors

    def verdicts(self) -> dict:
        """The parts of the report that must not depend on jobs or scheduling."""
        claims = [
            {
                key: row[key]
                for key in (
                    "claim",
                    "family",
                    "examples",
                    "PASS",
                    "FAIL",
                    "INCONCLUSIVE",
                    "unavailable",
                    "verdict",
                    "worst_margin",
                    "records",
                )
            }
            for row in self.claims
        ]
        found = [
            {
                key: row[key]
                for key in ("claim", "status", "tried", "outcomes", "record")
            }
            for row in self.explorations
        ]
        return {"claims": claims, "explorations": found}

    def to_dict(self) -> dict[str, Any]:
        config = self.config
        return {
            "format": REPORT_FORMAT,
            "complete": self.complete,
            "profile": config.profile,
            "budget": _plain(config.budget()),
            "seed": config.seed,
            "jobs": config.jobs,
            "selected": None if config.claims is None else list(config.claims),
            "settings": _plain(suite.SETTINGS),
            "exploration_settings": _plain(explorations.SETTINGS),
            "max_inconclusive_share": MAX_INCONCLUSIVE_SHARE,
            "seconds": self.seconds,
            "failed": self.failed,
            "claims": self.claims,
            "explorations": self.explorations,
            "lost": self.lost,
            "records": self.records,
            "earlier_records": self.earlier_records,
        }


def _plain(value: Any) -> dict:
    from dataclasses import asdict

    return asdict(value)


def build_report(
    config: VerifyConfig,
    tasks: Sequence[Task],
    results: Sequence[TaskResult],
    lost: Sequence[str],
    *,
    complete: bool,
    seconds: float,
    existing: Set[str] = frozenset(),
) -> VerifyReport:
    """Aggregate the results into a report.

    ``existing`` contains the names of the record files that the record directory
    contained when the run started (:func:`record_names`).
    """
    trajectories = {}
    for result in sorted(results, key=lambda r: r.key):
        trajectories.update(result.trajectories)
    claims, found = claim_rows(results, tasks), exploration_rows(results)

    # This run's records: those its finished tasks name (a record found before
    # keeps its old file, since the name is the content), and those written
    # since it started, which includes the records of tasks cut off by an
    # interruption. The other files are left from earlier runs.
    records = {name for row in claims for name in row["records"]}
    records |= {row["record"] for row in found if row["record"]}
    present = record_names(config.out)
    records |= present - existing
    earlier = present - records
    return VerifyReport(
        config,
        claims,
        found,
        list(lost),
        complete,
        seconds,
        sorted(records),
        trajectories,
        sorted(earlier),
    )


def record_names(out: Path) -> set[str]:
    """Return the names of the record files in the record directory of ``out``:
    ``.npz`` files named as records are (a file such as ``C7-junk.npz`` is not
    counted, though its contents are not read)."""
    from theory_checks.records import NAME_PATTERN

    return {
        path.name
        for path in (out / COUNTEREXAMPLE_DIR).glob("*.npz")
        if NAME_PATTERN.match(path.name)
    }


def verify(config: VerifyConfig, progress: Progress | None = None) -> VerifyReport:
    """Run every selected claim and exploration and write the report directory.

    Raises
    ------
    InvalidArgument
        For an invalid option (:func:`validate_config`, :func:`prepare_out`).
    Interrupted
        On KeyboardInterrupt. While examples are drawn, nothing has been written,
        so the directories this run created are removed again where empty, and
        ``report`` is None. Later, the report of the finished tasks is written
        (``report.json`` with ``"complete": false``, or complete without figures
        when every task had finished) and carried as ``report``.
    """
    config = validate_config(config)
    with StickyInterrupt():
        return _verify(config, progress)


def _verify(config: VerifyConfig, progress: Progress | None) -> VerifyReport:
    created = prepare_out(config.out)
    existing = record_names(config.out)
    start = time.perf_counter()
    try:
        tasks = plan(config, progress)
        checkpoint()
    except KeyboardInterrupt:
        from ncflow.report_io import remove_empty_directories

        remove_empty_directories(created)
        raise Interrupted([]) from None
    try:
        results, lost = execute(tasks, config.out, config.jobs, progress)
    except Interrupted as stop:
        report = build_report(
            config,
            tasks,
            stop.results,
            [],
            complete=False,
            seconds=time.perf_counter() - start,
            existing=existing,
        )
        write_report(report, plots=False)
        stop.report = report
        raise
    report = build_report(
        config,
        tasks,
        results,
        lost,
        complete=True,
        seconds=time.perf_counter() - start,
        existing=existing,
    )
    try:
        write_report(report, plots=config.plots)
        checkpoint()
    except KeyboardInterrupt:
        # Every task finished, so only the figures are left out.
        write_report(report, plots=False)
        stop = Interrupted(results)
        stop.report = report
        raise stop from None
    return report


# -- writing -------------------------------------------------------------------------


def write_report(report: VerifyReport, *, plots: bool = True) -> list[Path]:
    """Write ``report.json``, ``report.md`` and (optionally) the figures."""
    from ncflow.report_io import write_json_atomic

    out = report.config.out
    written = []
    figures = write_plots(report) if plots else {}
    written.append(write_json_atomic(out / "report.json", report.to_dict()))
    markdown = format_markdown(report, figures)
    path = out / "report.md"
    temporary = out / ".report.md.tmp"
    temporary.write_text(markdown)
    os.replace(temporary, path)
    written.append(path)
    return written + list(figures.values())


def write_plots(report: VerifyReport) -> dict[str, Path]:
    """Margin distributions and counterexample trajectories, under ``plots/``."""
    from ncflow import report_plots

    directory = report.config.out / PLOT_DIR
    directory.mkdir(exist_ok=True)
    figures = {}
    margins = {
        f"{row['claim']} {row['family']}": row["margins"]
        for row in report.claims
        if row["margins"]
    }
    if margins:
        figures["margins"] = report_plots.plot_margins(
            margins, directory / "margins.png"
        )
    for name, series in sorted(report.trajectories.items()):
        stem = Path(name).stem
        figures[stem] = report_plots.plot_counterexample(
            series, directory / f"{stem}.png", title=stem
        )
    return figures


def format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.3g}"
    return str(value)


# Printed under the table, in the terminal and in report.md.
TABLE_LEGEND = (
    "worst: the largest |measured - predicted| / tolerance over a claim's "
    "examples (a PASS stays below 1); (k inc): k examples were INCONCLUSIVE; "
    "FOUND: an exploration found a counterexample outside the theorem's "
    "hypotheses, which does not fail the run"
)


def table_lines(report: VerifyReport) -> list[str]:
    """Format the printed table: one line per claim row and per exploration."""
    # The statement column is as wide as the longest statement, so that no
    # formula is cut.
    width = max(
        [len("statement")]
        + [len(row["statement"]) for row in (*report.claims, *report.explorations)]
    )
    header = (
        f"{'claim':<5} {'family':<10} {'statement':<{width}} {'examples':>10}  "
        f"{'verdict':<13} {'worst':>9}  counterexamples"
    )
    lines = [header, "-" * len(header)]
    for row in report.claims:
        counts = f"{row['examples']}"
        if row["INCONCLUSIVE"]:
            counts += f" ({row['INCONCLUSIVE']} inc)"
        if row["errors"]:
            counts += f" ({row['errors']} err)"
        records = ", ".join(row["records"]) or "-"
        lines.append(
            f"{row['claim']:<5} {row['family']:<10} {row['statement']:<{width}} "
            f"{counts:>10}  {row['verdict']:<13} {format_cell(row['worst_margin']):>9}"
            f"  {records}"
        )
    for row in report.explorations:
        status = {
            "found": "FOUND",
            "not found": "NONE FOUND",
            ERROR: "ERROR",
        }.get(row["status"], NOT_AVAILABLE)
        counts = f"{row['tried']}"
        if row["outcomes"].get("INCONCLUSIVE"):
            counts += f" ({row['outcomes']['INCONCLUSIVE']} inc)"
        lines.append(
            f"{row['claim']:<5} {'explore':<10} {row['statement']:<{width}} "
            f"{counts:>10}  {status:<13} {format_cell(row['margin']):>9}  "
            f"{row['record'] or '-'}"
        )
    return lines


def sweep_lines(report: VerifyReport) -> list[str]:
    """Markdown tables of the X2 eps sweep and the X8 step sweep."""
    lines = []
    for row in report.explorations:
        if row["claim"] == "X2" and row["table"]:
            lines += [
                "### X2: separation (C4) against eps",
                "",
                "| n | D | h | mu_s | mu_d | X_max/X_min | loss | largest eps "
                "separated | smallest eps failed | C4 by eps |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for item in row["table"]:
                by_eps = ", ".join(
                    f"{eps}: {outcome}" for eps, outcome in item["C4_by_eps"].items()
                )
                lines.append(
                    f"| {item['n']} | {item['D']} | {item['h']} | "
                    f"{format_cell(item['mu_s'])} | {format_cell(item['mu_d'])} | "
                    f"{format_cell(item['x_max_over_x_min'])} | {item['loss']} | "
                    f"{format_cell(item['largest_eps_separated'])} | "
                    f"{format_cell(item['smallest_eps_failed'])} | {by_eps} |"
                )
            lines.append("")
        if row["claim"] == "X8" and row["table"]:
            lines += [
                "### X8: fixed-step descent against the flow",
                "",
                "| n | h | eps | run | step | C1 | C2 | C4 |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for item in row["table"]:
                for run in item["runs"]:
                    lines.append(
                        f"| {item['n']} | {item['h']} | {format_cell(item['eps'])} | "
                        f"{run['run']} | {format_cell(run['step'])} | {run['C1']} | "
                        f"{run['C2']} | {run['C4']} |"
                    )
            lines.append("")
    return lines


def format_markdown(report: VerifyReport, figures: dict[str, Path]) -> str:
    """Format the text of ``report.md``."""
    config = report.config
    budget = config.budget()
    state = "complete" if report.complete else "INTERRUPTED (partial results)"
    lines = [
        "# ncflow verify report",
        "",
        f"- run: {state}, {report.seconds:.1f} s wall time, {config.jobs} job(s)",
        f"- profile {config.profile}: {budget.binary_examples} binary and "
        f"{budget.multiclass_examples} three-class examples, "
        f"{budget.exploration_examples} cases per exploration; seed {config.seed}",
        f"- run settings: rtol {suite.SETTINGS.rtol:g}, ||theta||^2 target "
        f"{suite.SETTINGS.norm2_target:g}",
        f"- a claim's verdict is INCONCLUSIVE when more than "
        f"{MAX_INCONCLUSIVE_SHARE:.0%} of its examples are INCONCLUSIVE",
        "",
        "## Verdicts",
        "",
        "```",
        *table_lines(report),
        "```",
        "",
        TABLE_LEGEND + ".",
        "",
    ]
    if report.lost:
        lines += ["## Lost tasks", "", *[f"- {text}" for text in report.lost], ""]
    reasons = [
        f"- {row['claim']} ({row['family']}): {reason}"
        for row in report.claims
        for reason in row["reasons"]
    ]
    if reasons:
        lines += ["## Reasons of non-PASS verdicts", "", *reasons, ""]
    if report.explorations:
        lines += ["## Explorations", ""]
        for row in report.explorations:
            lines.append(f"- {row['claim']} ({row['statement']}): {row['note']}")
            for reason in row["reasons"]:
                lines.append(f"  - INCONCLUSIVE case: {reason}")
        lines.append("")
    lines += sweep_lines(report)
    if report.records:
        lines += ["## Counterexample records", ""]
        lines += [f"- `{COUNTEREXAMPLE_DIR}/{name}`" for name in report.records]
        lines += ["", "Replay one with `ncflow replay FILE`.", ""]
    if report.earlier_records:
        lines += [
            "## Records left from an earlier run",
            "",
            f"These files in `{COUNTEREXAMPLE_DIR}/` were not written by this run "
            "and are not part of this report, but `ncflow replay` on the directory "
            "replays them too. Delete them, or use a new `--out`, to keep only "
            "this run's records.",
            "",
        ]
        lines += [f"- `{COUNTEREXAMPLE_DIR}/{name}`" for name in report.earlier_records]
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for name, path in figures.items():
            lines.append(f"![{name}]({path.relative_to(config.out)})")
        lines.append("")
    return "\n".join(lines)


__all__ = [
    "COUNTEREXAMPLE_DIR",
    "DEFAULT_OUT",
    "DEFAULT_PROFILE",
    "DEFAULT_SEED",
    "Interrupted",
    "MAX_EXAMPLES_LIMIT",
    "MAX_INCONCLUSIVE_SHARE",
    "PROFILES",
    "Profile",
    "Task",
    "TaskResult",
    "VerifyConfig",
    "VerifyReport",
    "build_report",
    "claim_rows",
    "execute",
    "known_ids",
    "plan",
    "prepare_out",
    "record_names",
    "run_task",
    "table_lines",
    "trajectory_series",
    "validate_config",
    "verify",
    "write_report",
]
