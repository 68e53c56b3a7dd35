"""Tests of the ``ncflow verify`` engine: options, aggregation, reliability."""

from __future__ import annotations

import gc
import io
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import hypothesis.strategies as st
import numpy as np
import pytest

from ncflow import cli
from ncflow.cli import main
from ncflow.data import Dataset
from ncflow.network import Parameters
from theory_checks import explorations, interrupts, verify
from theory_checks.records import read_record, write_record
from theory_checks.runs import Example
from theory_checks.verdict import Outcome, Verdict
from theory_checks.verify import (
    Interrupted,
    Task,
    TaskResult,
    VerifyConfig,
    claim_rows,
    table_lines,
    validate_config,
)

# -- options -------------------------------------------------------------------------


def test_unknown_profile_is_rejected_with_choices():
    with pytest.raises(verify.InvalidArgument) as error:
        validate_config(VerifyConfig(profile="fast"))
    assert "profile='fast'" in str(error.value)
    assert "dev, ci, thorough" in str(error.value)


def test_zero_jobs_is_rejected():
    with pytest.raises(verify.InvalidArgument) as error:
        validate_config(VerifyConfig(jobs=0))
    assert "jobs=0" in str(error.value)
    assert ">= 1" in str(error.value)


def test_too_many_jobs_are_rejected(monkeypatch):
    monkeypatch.setattr(verify.os, "cpu_count", lambda: 2)
    assert validate_config(VerifyConfig(jobs=8)).jobs == 8
    with pytest.raises(verify.InvalidArgument) as error:
        validate_config(VerifyConfig(jobs=9))
    assert "jobs=9" in str(error.value)
    assert "up to 8 (4 per CPU)" in str(error.value)


def test_unknown_claim_id_is_rejected():
    with pytest.raises(verify.InvalidArgument) as error:
        validate_config(VerifyConfig(claims=("C1", "C99")))
    assert "'C99' is not a claim id" in str(error.value)
    assert "X8" in str(error.value)


def test_lower_case_claim_id_gets_hint():
    # theory_checks.check gives this hint; verify printed only the id list.
    with pytest.raises(verify.InvalidArgument) as error:
        validate_config(VerifyConfig(claims=("c1",)))
    assert "(ids are upper case: 'C1')" in str(error.value)


def test_out_below_a_file_is_rejected(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(verify.InvalidArgument) as error:
        verify.prepare_out(blocker / "report")
    assert str(blocker / "report") in str(error.value)
    assert "--out" in str(error.value)


def test_out_that_is_a_file_is_rejected(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(verify.InvalidArgument) as error:
        verify.prepare_out(blocker)
    assert "is a file" in str(error.value)


def test_cli_bad_profile_exits_2(capsys, tmp_path):
    status = main(["verify", "--profile", "fast", "--out", str(tmp_path / "r")])
    message = capsys.readouterr().err
    assert status == 2
    assert "ncflow verify: error: profile='fast'" in message


@pytest.mark.parametrize("claims", ["C1,,C2", "C1,", ",C1", "C1, ,C2"])
def test_cli_empty_claim_entry_exits_2(capsys, tmp_path, claims):
    out = tmp_path / "r"
    status = main(["verify", "--claims", claims, "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2
    assert f"--claims={claims!r} is invalid: it has an empty entry" in captured.err
    assert "C1,C7,X1" in captured.err
    assert captured.out == ""
    assert not out.exists()


@pytest.mark.parametrize("out", ["", " "])
def test_cli_empty_out_exits_2(capsys, tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    status = main(["verify", "--claims", "C2", "--max-examples", "1", "--out", out])
    captured = capsys.readouterr()
    assert status == 2
    assert f"out={out!r} is invalid: it is empty" in captured.err
    assert "--out" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_jobs_exits_2(capsys, tmp_path):
    status = main(["verify", "--jobs", "0", "--out", str(tmp_path / "r")])
    assert status == 2
    assert "jobs=0" in capsys.readouterr().err


def test_cli_max_examples_above_limit_exits_2(capsys, tmp_path):
    out = tmp_path / "r"
    limit = verify.MAX_EXAMPLES_LIMIT
    arguments = ["--claims", "C2", "--max-examples", str(limit + 1)]
    status = main(["verify", *arguments, "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2
    assert f"max_examples={limit + 1} is invalid: it must be <= {limit}" in captured.err
    assert "--max-examples" in captured.err
    assert "another --seed" in captured.err
    assert captured.out == ""
    assert not out.exists()


def test_max_examples_limit_is_valid():
    limit = verify.MAX_EXAMPLES_LIMIT
    config = validate_config(VerifyConfig(max_examples=limit))
    assert config.budget().binary_examples == limit


def test_cli_help_states_max_examples_limit(capsys):
    status = main(["verify", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert status == 0
    assert f"(1 to {verify.MAX_EXAMPLES_LIMIT})" in help_text


def test_max_examples_overrides_every_count():
    budget = VerifyConfig(profile="thorough", max_examples=2).budget()
    assert budget.binary_examples == 2
    assert budget.multiclass_examples == 2
    assert budget.exploration_examples == 2


def test_plan_keeps_selected_claims_only():
    config = validate_config(VerifyConfig(claims=("C2", "X8"), max_examples=2))
    tasks = verify.plan(config)
    assert [task.key[0] for task in tasks] == [0, 0, 1]
    assert all(task.family in ("binary", None) for task in tasks)
    assert tasks[-1].claims == ("X8",)


def test_plan_draws_the_same_examples_twice():
    config = validate_config(VerifyConfig(claims=("C2",), max_examples=3))
    first = [task.example.fingerprint() for task in verify.plan(config)]
    second = [task.example.fingerprint() for task in verify.plan(config)]
    assert first == second


# -- aggregation ---------------------------------------------------------------------


def _entry(outcome: str, margin: float | None = 0.5, record=None) -> dict:
    return {
        "claim": "C7",
        "family": "binary",
        "outcome": outcome,
        "margin": margin,
        "reason": f"{outcome} reason",
        "record": record,
    }


def _rows(outcomes: list) -> dict:
    tasks = [Task((0, "binary", i), ("C7",)) for i in range(len(outcomes))]
    tasks = [Task(t.key, t.claims, family="binary") for t in tasks]
    results = [
        TaskResult(task.key, verdicts=[_entry(outcome)])
        for task, outcome in zip(tasks, outcomes)
    ]
    (row,) = claim_rows(results, tasks)
    return row


def test_one_fail_makes_the_claim_fail():
    assert _rows(["PASS", "FAIL", "PASS"])["verdict"] == "FAIL"


def test_inconclusive_share_above_limit_is_inconclusive():
    # 1 of 4 is 25 %, above the 20 % limit.
    assert _rows(["PASS", "PASS", "PASS", "INCONCLUSIVE"])["verdict"] == "INCONCLUSIVE"


def test_inconclusive_share_at_limit_passes():
    # 1 of 5 is exactly 20 %, which the limit allows.
    assert _rows(["PASS"] * 4 + ["INCONCLUSIVE"])["verdict"] == "PASS"


def test_unavailable_module_gives_not_available():
    row = _rows([verify.NOT_AVAILABLE, verify.NOT_AVAILABLE])
    assert row["verdict"] == verify.NOT_AVAILABLE
    assert row["examples"] == 0


def test_rows_do_not_depend_on_result_order():
    tasks = [Task((0, "binary", i), ("C7",), family="binary") for i in range(6)]
    results = [
        TaskResult(task.key, verdicts=[_entry("PASS", margin=0.1 * i)])
        for i, task in enumerate(tasks)
    ]
    shuffled = list(results)
    random.Random(1).shuffle(shuffled)
    assert claim_rows(shuffled, tasks) == claim_rows(results, tasks)


def test_worst_margin_is_the_largest():
    tasks = [Task((0, "binary", i), ("C7",), family="binary") for i in range(3)]
    margins = [0.25, 0.75, 0.5]
    results = [
        TaskResult(task.key, verdicts=[_entry("PASS", margin=m)])
        for task, m in zip(tasks, margins)
    ]
    (row,) = claim_rows(results, tasks)
    assert row["worst_margin"] == 0.75


# -- reliability ---------------------------------------------------------------------


def _tiny(out, jobs: int) -> VerifyConfig:
    return VerifyConfig(
        claims=("C2", "X1"), max_examples=1, jobs=jobs, out=out, plots=False
    )


def test_verdicts_agree_across_jobs_and_runs(tmp_path):
    first = verify.verify(_tiny(tmp_path / "one", 1)).verdicts()
    pooled = verify.verify(_tiny(tmp_path / "two", 2)).verdicts()
    again = verify.verify(_tiny(tmp_path / "again", 1)).verdicts()
    # X1 finds and shrinks a counterexample, so the compared verdicts include
    # a search and the content-named file of its record.
    assert first["explorations"][0]["status"] == "found"
    assert pooled == first
    assert again == first


def test_report_lists_only_this_runs_records(tmp_path):
    old = tmp_path / verify.COUNTEREXAMPLE_DIR / "X6-0000000000000000.npz"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"a record of an earlier run")
    os.utime(old, (0, 0))

    report = verify.verify(
        VerifyConfig(claims=("C2",), max_examples=1, jobs=1, out=tmp_path, plots=False)
    )

    assert old.name not in report.records


def test_report_lists_earlier_records_apart(tmp_path):
    old = tmp_path / verify.COUNTEREXAMPLE_DIR / "X6-0000000000000000.npz"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"a record of an earlier run")
    # Not named in the form of a record, so not listed as one.
    (old.parent / "C7-junk.npz").write_bytes(b"junk")

    report = verify.verify(
        VerifyConfig(claims=("C2",), max_examples=1, jobs=1, out=tmp_path, plots=False)
    )

    markdown = (tmp_path / "report.md").read_text()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert report.earlier_records == [old.name]
    assert saved["earlier_records"] == [old.name]
    assert "## Records left from an earlier run" in markdown
    assert f"- `counterexamples/{old.name}`" in markdown
    assert old.read_bytes() == b"a record of an earlier run"


def test_cli_reused_out_lists_earlier_record(tmp_path, capsys):
    options = ["--max-examples", "1", "--jobs", "1", "--no-plots", "--quiet"]
    first = main(["verify", "--claims", "X1", "--out", str(tmp_path), *options])
    (record,) = json.loads((tmp_path / "report.json").read_text())["records"]
    capsys.readouterr()

    second = main(["verify", "--claims", "C2", "--out", str(tmp_path), *options])
    err = capsys.readouterr().err
    saved = json.loads((tmp_path / "report.json").read_text())
    assert first == 0
    assert second == 0
    assert record.startswith("X1-")
    assert saved["records"] == []
    assert saved["earlier_records"] == [record]
    assert "1 record(s) in" in err
    assert "left from an earlier run" in err
    assert f"  {record}\n" in err


def _example() -> Example:
    X = np.array([[1.0, 0.0], [-1.0, 0.0]])
    dataset = Dataset.from_arrays(X, np.array([1, -1]))
    shapes = Parameters(np.array([[0.5, -0.5], [0.0, 0.0]]), np.array([[0.5, -0.5]]))
    return Example(dataset, shapes, 1e-4, "exponential", label="test")


def _interrupting_task(calls: list):
    def run_task(task: Task, out: str) -> TaskResult:
        calls.append(task.key)
        if len(calls) > 1:
            raise KeyboardInterrupt
        verdict = Verdict("C2", Outcome.FAIL, "planted", margin=2.0)
        path = write_record(
            os.path.join(out, verify.COUNTEREXAMPLE_DIR),
            "C2",
            _example(),
            verify.suite.SETTINGS,
            verdict,
        )
        entry = _entry("FAIL", 2.0, path.name) | {"claim": "C2"}
        return TaskResult(task.key, verdicts=[entry])

    return run_task


def test_interrupt_keeps_written_records(tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "run_task", _interrupting_task([]))
    with pytest.raises(Interrupted) as stop:
        verify.verify(_tiny(tmp_path, 1))
    (name,) = stop.value.report.records
    assert read_record(tmp_path / verify.COUNTEREXAMPLE_DIR / name).claim == "C2"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["complete"] is False
    assert saved["records"] == [name]


def test_cli_interrupt_exits_130_listing_records(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(verify, "run_task", _interrupting_task([]))
    status = main(
        ["verify", "--claims", "C2", "--max-examples", "2", "--jobs", "1"]
        + ["--out", str(tmp_path), "--no-plots", "--quiet"]
    )
    message = capsys.readouterr().err
    assert status == 130
    assert "interrupted" in message
    assert "C2-" in message


def _interrupt_drawing(strategy, count, seed):
    raise KeyboardInterrupt


def _stopped_run(config: VerifyConfig) -> Interrupted:
    """Run verify and return its Interrupted, failing on a bare KeyboardInterrupt."""
    try:
        verify.verify(config)
    except Interrupted as stop:
        return stop
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped verify()")
    pytest.fail("verify() finished without raising Interrupted")


def test_interrupt_while_drawing_removes_new_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(verify.suite, "draw_examples", _interrupt_drawing)
    out = tmp_path / "new" / "report"
    stop = _stopped_run(VerifyConfig(claims=("C2",), max_examples=1, out=out))
    assert stop.report is None
    assert stop.results == []
    assert not (tmp_path / "new").exists()


def test_interrupt_while_drawing_keeps_existing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(verify.suite, "draw_examples", _interrupt_drawing)
    kept = tmp_path / "notes.txt"
    kept.write_text("a file of the user")
    _stopped_run(VerifyConfig(claims=("C2",), max_examples=1, out=tmp_path))
    assert kept.read_text() == "a file of the user"
    assert not (tmp_path / verify.COUNTEREXAMPLE_DIR).exists()


def test_cli_interrupt_while_drawing_exits_130(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(verify.suite, "draw_examples", _interrupt_drawing)
    try:
        status = main(
            ["verify", "--claims", "C2", "--max-examples", "2", "--jobs", "1"]
            + ["--out", str(tmp_path / "report"), "--no-plots"]
        )
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped ncflow verify")
    captured = capsys.readouterr()
    assert status == 130
    assert captured.out == ""
    assert "verify: drawing 2 binary examples" in captured.err
    assert "verify: interrupted while drawing examples" in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "report").exists()


def test_interrupt_while_plotting_writes_report(tmp_path, monkeypatch, capsys):
    def interrupt(report):
        raise KeyboardInterrupt

    monkeypatch.setattr(verify, "write_plots", interrupt)
    config = replace(_tiny(tmp_path, 1), claims=("C2",), plots=True)
    report = _stopped_run(config).report
    assert report.complete is True
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["complete"] is True
    assert saved["claims"][0]["examples"] == 1
    assert (tmp_path / "report.md").is_file()


@pytest.mark.parametrize("complete", [True, False])
def test_interrupt_message_lists_kept_records(tmp_path, complete):
    # A stand-in for the report that Interrupted carries.
    report = SimpleNamespace(
        complete=complete,
        config=SimpleNamespace(out=tmp_path),
        records=["C9-0123456789abcdef.npz"],
        earlier_records=[],
    )
    stream = io.StringIO()
    cli._print_interrupted(SimpleNamespace(report=report), stream)
    lines = stream.getvalue().splitlines()

    kept = tmp_path / "counterexamples"
    assert f"verify: 1 counterexample record(s) kept in {kept}:" in lines
    assert "  C9-0123456789abcdef.npz" in lines
    drawing = any("while drawing the figures" in line for line in lines)
    partial = any("partial report" in line for line in lines)
    assert drawing is complete
    assert partial is not complete


@pytest.fixture
def sigint_handled():
    """Give this process Python's Ctrl-C handler for the test.

    A shell starts a background job with SIGINT ignored, and Python keeps it
    ignored, so a test suite started that way (``bash .ci/run &``) would
    otherwise find no KeyboardInterrupt to check.
    """
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_in_gc_callback_stops_drawing(sigint_handled):
    # Python ignores an exception raised in a gc callback, and Hypothesis runs
    # one at every collection, so a Ctrl-C handled there must not be lost.
    state = {"armed": False, "sent": False}

    def callback(phase, info):
        if phase == "start" and state["armed"] and not state["sent"]:
            state["sent"] = True
            signal.raise_signal(signal.SIGINT)
            state["after"] = True  # bytecode after the signal runs its handler

    def key(case: int) -> int:
        state["armed"] = True  # from the first draw on, inside draw_cases
        return case

    threshold = gc.get_threshold()
    gc.set_threshold(10)
    gc.callbacks.append(callback)
    try:
        with pytest.raises(KeyboardInterrupt):
            explorations.draw_cases(st.integers(), 1000, seed=0, key=key)
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*threshold)
    assert state["sent"] is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_ctrl_c_raises_on_exit(sigint_handled):
    # The first Ctrl-C inside deferred() is only recorded; where deferred()
    # installed the handler itself, leaving it raises the interrupt.
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            signal.raise_signal(signal.SIGINT)
            reached.append("after the signal")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_swallowed_ctrl_c_stops_run(sigint_handled, tmp_path, monkeypatch):
    # A Ctrl-C whose KeyboardInterrupt is swallowed inside a task stops the
    # run once the task is done. Python ignores it in a gc callback; here an
    # except clause swallows it.
    calls = []

    def run_task(task: Task, out: str) -> TaskResult:
        calls.append(task.key)
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        return TaskResult(task.key)

    monkeypatch.setattr(verify, "run_task", run_task)
    config = VerifyConfig(claims=("C2",), max_examples=2, jobs=1, out=tmp_path)
    stop = _stopped_run(config)
    assert len(calls) == 1
    assert [result.key for result in stop.results] == calls
    assert json.loads((tmp_path / "report.json").read_text())["complete"] is False
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _read_lines(stream, lines: list) -> None:
    for line in stream:
        lines.append(line)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_verify(arguments: list, marker: str, delay: float) -> tuple[int, str]:
    """Run ncflow verify in its own process group, send SIGINT to the whole
    group ``delay`` seconds after a stderr line contains ``marker``, as Ctrl-C
    in a terminal does, and return the exit status and stderr."""
    command = [sys.executable, "-m", "ncflow", "verify", *arguments]
    # The child starts with SIGINT at its default, as from a terminal, also
    # where the tests themselves run with it ignored (a background job).
    child = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    lines: list = []
    reader = threading.Thread(target=_read_lines, args=(child.stderr, lines))
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(marker in line for line in lines):
            if time.monotonic() > deadline or child.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(delay)
        os.killpg(child.pid, signal.SIGINT)
        status = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        reader.join(timeout=10)
    return status, "".join(lines)


def test_sigint_while_drawing_exits_130(tmp_path):
    # A real Ctrl-C reaches the process inside Hypothesis's generation loop.
    # The maximum count takes minutes to draw, so the signal arrives while it draws.
    limit = str(verify.MAX_EXAMPLES_LIMIT)
    arguments = ["--claims", "C7", "--max-examples", limit, "--jobs", "1"]
    arguments += ["--out", str(tmp_path / "report")]
    status, err = _interrupt_verify(arguments, "drawing", delay=0.0)
    assert status == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        "verify: interrupted while drawing examples; nothing was written"
    )
    assert not (tmp_path / "report").exists()


@pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(),
    reason="the pool starts a forkserver only where the platform has one",
)
def test_sigint_while_pool_starts_exits_130(tmp_path):
    # Ctrl-C reaches the whole process group, here while the forkserver imports
    # its preload modules (torch among them, about a second) after the drawing.
    arguments = ["--claims", "C1", "--max-examples", "1", "--jobs", "2"]
    arguments += ["--no-plots", "--out", str(tmp_path / "report")]
    status, err = _interrupt_verify(arguments, "multiclass examples", delay=0.2)
    assert status == 130, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert "verify: interrupted" in err


def _dying_task(task: Task, out: str) -> TaskResult:
    if task.key[2] == 1:
        os._exit(3)
    return TaskResult(task.key)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(),
    reason="the dying task reaches the workers only through fork",
)
def test_killed_worker_loses_only_its_task(tmp_path, monkeypatch):
    # With fork the workers inherit the patched run_task and pool context.
    monkeypatch.setattr(verify, "run_task", _dying_task)
    monkeypatch.setattr(
        verify, "_pool_context", lambda: multiprocessing.get_context("fork")
    )
    tasks = [Task((0, "binary", i), ("C2",), family="binary") for i in range(2)]
    results, lost = verify.execute(tasks, tmp_path, 2)
    assert [result.key for result in results] == [(0, "binary", 0)]
    assert len(lost) == 1
    assert "binary example 1" in lost[0]


def test_table_lists_claims_and_explorations(tmp_path):
    report = verify.verify(_tiny(tmp_path, 1))
    text = "\n".join(table_lines(report))
    assert "C2    binary" in text
    assert "sign of v_j never changes" in text
    assert "X1    explore" in text


def test_trajectory_series_shapes_and_nc2():
    from theory_checks.runs import train

    run = train(_example(), verify.suite.SETTINGS)
    series = verify.trajectory_series(run)
    records = len(run.result.trajectory)
    assert series["norm2"].shape == (records,)
    assert series["patterns"].shape == (records, 2, 2)
    assert series["nc2"].shape == (records,)
    # At every t neuron 0 is active on sample 0 only and neuron 1 on sample 1
    # only, so the unit class means are e_0 and e_1. NC2 = ||I/sqrt(2) -
    # I/sqrt(2)|| = 0, up to the roundoff of normalising a 2 x 2 Gram matrix.
    tol = 8 * np.finfo(float).eps
    assert np.all(np.isfinite(series["nc2"]))
    assert np.max(np.abs(series["nc2"])) <= tol


def test_check_that_raises_fails_the_run(tmp_path, monkeypatch):
    import theory_checks

    def broken(claim, example, settings=None, **options):
        raise TypeError("planted bug")

    monkeypatch.setattr(theory_checks, "check", broken)
    config = VerifyConfig(claims=("C2",), max_examples=1, out=tmp_path, plots=False)
    report = verify.verify(config)
    (row,) = report.claims
    assert row["errors"] == 1
    assert row["verdict"] == "INCONCLUSIVE"
    assert report.failed
    assert "planted bug" in row["reasons"][0]


def _report(verdict: str, claim: str = "C7") -> verify.VerifyReport:
    row = {"claim": claim, "verdict": verdict, "errors": 0}
    return verify.VerifyReport(VerifyConfig(), [row], [], [], True, 0.0, [], {})


@pytest.mark.parametrize("claim", ["C7", "E2"])
@pytest.mark.parametrize("verdict", ["FAIL", "INCONCLUSIVE"])
def test_claim_fail_or_inconclusive_fails_run(verdict, claim):
    assert _report(verdict, claim=claim).failed


@pytest.mark.parametrize("verdict", ["PASS", verify.NOT_AVAILABLE])
def test_claim_pass_or_unavailable_passes_run(verdict):
    assert not _report(verdict).failed
