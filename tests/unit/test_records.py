"""Unit tests of counterexample records and ``ncflow replay``.

The example is three samples in the plane: the ``+`` class at angles 0 and 30
degrees (norms 1 and 2), the ``-`` class at 200 degrees (norm 1.5). Every
cross-class cosine is at most cos(160 deg) < 0 and the within-class cosine is
cos(30 deg) > 0, so A1 holds. One neuron per class copies a sample direction with
unit norm and output weight +1 or -1: ``||w_j0|| = ||v_j0|| = 1`` (A2), and each
sign group has a neuron active on a sample of its class (A3). The two classes
have different max margins, so the planted fault ``wrong_s`` (``gamma_k`` in place
of ``1/gamma_k`` in ``s_k``) changes the predicted output weights of C9.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import zipfile
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import theory_checks.records as records_module
from ncflow import cli
from ncflow.cli import main
from ncflow.data import Dataset
from ncflow.network import Parameters
from ncflow.report_io import to_jsonable
from theory_checks import check
from theory_checks.common import Quantity, combine
from theory_checks.records import (
    FORMAT,
    RecordError,
    content_hash,
    read_record,
    replay,
    write_record,
)
from theory_checks.runs import Example, RunSettings, clear_cache
from theory_checks.verdict import Outcome, Tolerance, ToleranceTerm

# The run ends at ||theta||^2 = 1e4, about a second of integration on 2 cores.
# eps_floor at the initial eps stops the repetition at smaller eps before a FAIL, so
# the planted fault is reported after one run.
SETTINGS = RunSettings(norm2_target=1e4, eps_floor=1e-3)
EPS = 1e-3
ARRAY_NAMES = ("X", "y", "labels", "W0", "V0")


def _samples() -> np.ndarray:
    angles = np.deg2rad([0.0, 30.0, 200.0])
    norms = np.array([1.0, 2.0, 1.5])
    return norms[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _example(eps: float = EPS, **changes) -> Example:
    X = _samples()
    dataset = Dataset.from_arrays(
        X, ["+", "+", "-"], name="three-in-plane", class_order=["+", "-"]
    )
    W0 = np.stack([X[0] / np.linalg.norm(X[0]), X[2] / np.linalg.norm(X[2])], axis=1)
    shapes = Parameters(W0, np.array([[1.0, -1.0]]))
    example = Example(dataset, shapes, eps, "exponential", label="hand-made")
    return replace(example, **changes)


def _verdict(claim: str = "C7", measured: float = 0.25):
    """A FAIL verdict built by hand, with no integration."""
    tolerance = Tolerance(
        (
            ToleranceTerm("integrator", 1e-9, "|q(rtol) - q(10 rtol)|"),
            ToleranceTerm("roundoff", 4.4e-16, "2 * eps"),
        )
    )
    quantity = Quantity("a test quantity", measured, 0.0, tolerance)
    return combine(claim, "a test quantity", [quantity], None, [])


def _write(directory: Path, eps: float = EPS, **keywords) -> Path:
    return write_record(
        directory, "C7", _example(eps), SETTINGS, _verdict(), **keywords
    )


def _rewrite(path: Path, change) -> None:
    """Apply ``change(contents, meta)`` to a record and save it without a new hash."""
    with np.load(path) as archive:
        contents = {name: archive[name] for name in archive.files}
    meta = json.loads(contents.pop("meta").item())
    change(contents, meta)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **contents)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["replay", "--quiet", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- round trip ------------------------------------------------------------------


def test_round_trip_keeps_arrays_bit_identical(tmp_path):
    example = _example()
    record = read_record(_write(tmp_path))

    originals = {
        "X": example.dataset.X,
        "labels": example.dataset.labels,
        "W0": example.shapes.W,
        "V0": example.shapes.V,
    }
    rebuilt = {
        "X": record.example.dataset.X,
        "labels": record.example.dataset.labels,
        "W0": record.example.shapes.W,
        "V0": record.example.shapes.V,
    }
    for name, original in originals.items():
        assert rebuilt[name].dtype == original.dtype, name
        assert rebuilt[name].shape == original.shape, name
        assert rebuilt[name].tobytes() == original.tobytes(), name


def test_round_trip_keeps_class_names_and_labels(tmp_path):
    path = _write(tmp_path)
    record = read_record(path)
    with np.load(path) as archive:
        y = archive["y"]

    assert record.example.dataset.class_names == ("+", "-")
    assert y.tolist() == ["+", "+", "-"]
    assert record.example.dataset.signs.tolist() == [1.0, 1.0, -1.0]


def test_round_trip_keeps_every_setting(tmp_path):
    example = _example(groups=(0, 1), faults=("wrong_s",))
    verdict = _verdict()
    path = write_record(tmp_path, "C7", example, SETTINGS, verdict)
    record = read_record(path)

    assert record.claim == "C7"
    assert record.settings == SETTINGS
    assert record.verdict == to_jsonable(verdict.to_dict())
    for name in ("eps", "loss", "activation", "groups", "balanced", "faults", "label"):
        assert getattr(record.example, name) == getattr(example, name), name
    assert record.example.dataset.name == example.dataset.name
    assert record.example.fingerprint() == example.fingerprint()


def test_round_trip_rebuilds_recorded_verdict(tmp_path):
    verdict = _verdict()
    record = read_record(_write(tmp_path))

    assert record.recorded_verdict().describe() == verdict.describe()


def test_record_stores_environment(tmp_path):
    record = read_record(_write(tmp_path))
    environment = record.environment

    assert environment["packages"]["numpy"] == np.__version__
    assert environment["threads"]["integrator_blas_threads"] == 1
    assert environment["threads"]["OMP_NUM_THREADS"] == os.environ.get(
        "OMP_NUM_THREADS"
    )


def test_record_stores_reproduction_blob(tmp_path):
    reproduction = {"blob": "AXicY2BgAAAABAAB", "hypothesis_version": "6.100.0"}
    record = read_record(_write(tmp_path, reproduction=reproduction))

    assert record.reproduction["blob"] == "AXicY2BgAAAABAAB"
    assert record.reproduction["hypothesis_version"] == "6.100.0"
    assert record.reproduction["decorator"] == (
        "@reproduce_failure('6.100.0', b'AXicY2BgAAAABAAB')"
    )


def test_record_without_reproduction_stores_none(tmp_path):
    record = read_record(_write(tmp_path))

    assert record.reproduction is None


# -- content hash and names ------------------------------------------------------


def _independent_hash(path: Path) -> tuple[str, dict]:
    """The hash recipe of the record format, written out again with hashlib."""
    with np.load(path) as archive:
        contents = {name: archive[name] for name in archive.files}
    meta = json.loads(contents.pop("meta").item())
    digest = hashlib.sha256()
    for name in sorted(contents):
        array = contents[name]
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape!r}\0".encode())
        digest.update(array.tobytes())
    hashed = {key: meta[key] for key in meta if key not in ("created", "hash")}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    digest.update(b"meta\0" + text.encode("ascii"))
    return digest.hexdigest(), meta


def test_stored_hash_matches_independent_recomputation(tmp_path):
    path = _write(tmp_path)
    expected, meta = _independent_hash(path)
    record = read_record(path)

    assert meta["format"] == FORMAT
    assert meta["hash"] == expected
    assert record.hash == expected


def _independent_identity(path: Path) -> str:
    """The identity recipe: arrays and the format, claim, example, settings only."""
    with np.load(path) as archive:
        contents = {name: archive[name] for name in archive.files}
    meta = json.loads(contents.pop("meta").item())
    digest = hashlib.sha256()
    for name in sorted(contents):
        array = contents[name]
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape!r}\0".encode())
        digest.update(array.tobytes())
    hashed = {key: meta[key] for key in ("format", "claim", "example", "settings")}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    digest.update(b"meta\0" + text.encode("ascii"))
    return digest.hexdigest()


def test_record_name_comes_from_identity_not_environment(tmp_path):
    path = _write(tmp_path)
    identity = _independent_identity(path)

    assert read_record(path).hash != identity
    assert path.name == f"C7-{identity[:16]}.npz"


def test_record_contains_the_listed_arrays(tmp_path):
    with np.load(_write(tmp_path)) as archive:
        names = set(archive.files)

    assert names == {*ARRAY_NAMES, "meta"}


def test_same_content_gives_same_file(tmp_path):
    first = _write(tmp_path)
    inode = first.stat().st_ino
    second = _write(tmp_path)

    assert second == first
    assert second.stat().st_ino == inode  # the first file was kept, not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_write_keeps_record_that_appears_meanwhile(tmp_path, monkeypatch):
    first = _write(tmp_path)
    inode = first.stat().st_ino
    # As if another process created the file after this one looked for it.
    monkeypatch.setattr(Path, "exists", lambda self: False)
    second = _write(tmp_path)
    monkeypatch.undo()

    assert second == first
    assert second.stat().st_ino == inode
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_record_gets_mode_of_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = _write(tmp_path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_different_eps_gives_different_file(tmp_path):
    first = _write(tmp_path, eps=1e-3)
    second = _write(tmp_path, eps=1e-4)

    assert second != first
    assert read_record(second).example.eps == 1e-4


def test_write_rejects_verdict_of_another_claim(tmp_path):
    with pytest.raises(ValueError, match="verdict.claim='C9'"):
        write_record(tmp_path, "C7", _example(), SETTINGS, _verdict("C9"))


def test_write_rejects_unknown_claim(tmp_path):
    with pytest.raises(ValueError, match="claim='C99'"):
        write_record(tmp_path, "C99", _example(), SETTINGS, _verdict("C99"))


# -- concurrent writers ----------------------------------------------------------

WRITERS_PER_RECORD = 3
WRITES_PER_PROCESS = 4
DISTINCT_EPS = (1e-3, 2e-3, 3e-3)


def _concurrent_writer(directory: str, example: Example, barrier, results) -> None:
    verdict = _verdict()
    barrier.wait()
    paths = {
        str(write_record(Path(directory), "C7", example, SETTINGS, verdict))
        for _ in range(WRITES_PER_PROCESS)
    }
    results.put((example.eps, sorted(paths)))


# Python 3.12 and later warn when a process with threads (an xdist worker) forks.
@pytest.mark.filterwarnings("ignore:This process:DeprecationWarning")
def test_concurrent_writers_leave_complete_records(tmp_path):
    # fork starts a writer in milliseconds, where spawn spent about 1.7 s importing
    # the modules again on a busy 2-core machine. The examples are built here, so
    # the writers only hash, compress and write, and never use the BLAS threads a
    # forked child inherits.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    jobs = [_example(eps) for eps in DISTINCT_EPS for _ in range(WRITERS_PER_RECORD)]
    barrier = context.Barrier(len(jobs))
    results = context.Queue()
    processes = [
        context.Process(
            target=_concurrent_writer, args=(str(tmp_path), job, barrier, results)
        )
        for job in jobs
    ]
    for process in processes:
        process.start()
    reported = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)

    assert [process.exitcode for process in processes] == [0] * len(jobs)
    paths_by_eps = {}
    for eps, paths in reported:
        assert len(paths) == 1, paths
        paths_by_eps.setdefault(eps, set()).update(paths)
    for eps, paths in paths_by_eps.items():
        assert len(paths) == 1, f"eps={eps}: {sorted(paths)}"
    files = sorted(tmp_path.iterdir())
    assert [path.suffix for path in files] == [".npz"] * len(DISTINCT_EPS)
    for path in files:
        assert read_record(path).example.eps in DISTINCT_EPS


# -- rejected files --------------------------------------------------------------


def _change_measured(contents: dict, meta: dict) -> None:
    meta["verdict"]["measured"] = 0.0


def _change_sample(contents: dict, meta: dict) -> None:
    contents["X"] = contents["X"].copy()
    contents["X"][0, 0] = np.nextafter(contents["X"][0, 0], np.inf)


def _change_format(contents: dict, meta: dict) -> None:
    meta["format"] = "ncflow-counterexample/99"


@pytest.mark.parametrize(
    "change", [_change_measured, _change_sample], ids=["metadata", "array"]
)
def test_modified_record_is_rejected(tmp_path, change):
    path = _write(tmp_path)
    _rewrite(path, change)

    with pytest.raises(RecordError, match="modified after it was written") as error:
        read_record(path)
    assert str(path) in str(error.value)


def test_flipped_byte_is_rejected(tmp_path):
    path = _write(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(RecordError) as error:
        read_record(path)
    assert str(path) in str(error.value)


def test_flipped_byte_anywhere_gives_record_error_or_record(tmp_path):
    path = _write(tmp_path)
    original = path.read_bytes()
    damaged = tmp_path / "damaged.npz"

    # Bytes of zip header fields that readers ignore may change without harm;
    # any other change must raise RecordError, never another exception. The
    # zip central directory sits in the last few hundred bytes, so every byte
    # there is tried, and the rest at 200 evenly spaced offsets.
    step = max(1, len(original) // 200)
    offsets = sorted(
        set(range(0, len(original), step))
        | set(range(len(original) - 600, len(original)))
    )
    for offset in offsets:
        data = bytearray(original)
        data[offset] ^= 0xFF
        damaged.write_bytes(bytes(data))
        try:
            read_record(damaged)
        except RecordError:
            pass


def test_text_file_named_npz_is_not_an_archive(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not a record\n")

    with pytest.raises(RecordError, match="not a NumPy .npz archive"):
        read_record(path)


def test_unknown_format_version_is_rejected(tmp_path):
    path = _write(tmp_path)
    _rewrite(path, _change_format)

    with pytest.raises(RecordError, match="unsupported record format"):
        read_record(path)


def _rewrite_rehashed(path: Path, change) -> None:
    """Apply ``change(contents, meta)`` to a record and store the new content hash,
    as a record written with those values would have."""
    with np.load(path) as archive:
        contents = {name: archive[name] for name in archive.files}
    meta = json.loads(contents.pop("meta").item())
    change(contents, meta)
    meta["hash"] = content_hash(contents, meta)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **contents)


def test_record_with_text_groups_names_groups(tmp_path):
    path = _write(tmp_path)
    _rewrite_rehashed(path, lambda contents, meta: meta["example"].update(groups="ab"))

    with pytest.raises(RecordError) as error:
        read_record(path)
    assert "groups has shape ()" in str(error.value)
    assert "invalid literal" not in str(error.value)


@pytest.mark.parametrize(
    ("setting", "value"), [("method", "bogus"), ("norm2_target", -1.0)]
)
def test_replay_rejects_invalid_recorded_setting(tmp_path, capsys, setting, value):
    # Such a record replayed as INCONCLUSIVE before RunSettings checked its values.
    path = _write(tmp_path)
    _rewrite_rehashed(
        path, lambda contents, meta: meta["settings"].update({setting: value})
    )

    with pytest.raises(RecordError, match=f"{setting}={value!r} is invalid"):
        read_record(path)
    status, out, err = _cli(capsys, path)
    assert status == 2
    assert out == ""
    assert f"{setting}={value!r} is invalid" in err


def test_npz_without_metadata_is_rejected(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=_samples(), y=np.array(["+", "+", "-"]))

    with pytest.raises(RecordError, match="not an ncflow counterexample record"):
        read_record(path)


def test_text_file_is_rejected(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not an archive\n")

    with pytest.raises(RecordError, match="not an ncflow counterexample record"):
        read_record(path)


def test_missing_file_is_rejected(tmp_path):
    path = tmp_path / "C7-0000000000000000.npz"

    with pytest.raises(RecordError, match="not found") as error:
        read_record(path)
    assert str(path) in str(error.value)


# -- replay ----------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["C1", "C11"])
def test_replay_repeats_recorded_verdict(tmp_path, claim):
    example = _example()
    verdict = check(claim, example, SETTINGS)
    path = write_record(
        tmp_path, claim, example, SETTINGS, verdict, reproduction="unused-blob"
    )
    clear_cache()  # integrate again instead of taking the cached run
    replayed, recorded = replay(path)

    # A1-A3 hold on the example, so the theorem predicts PASS.
    assert recorded["outcome"] == "PASS"
    assert replayed.outcome is Outcome.PASS
    # One BLAS thread and the same arrays and settings repeat the run bit for bit.
    assert replayed.measured == recorded["measured"]
    assert replayed.margin == recorded["margin"]


def test_replay_accepts_record_object(tmp_path):
    example = _example(balanced=False)
    verdict = check("C11", example, SETTINGS)
    record = read_record(write_record(tmp_path, "C11", example, SETTINGS, verdict))
    replayed, recorded = replay(record)

    assert recorded["outcome"] == "INCONCLUSIVE"
    assert replayed.outcome is Outcome.INCONCLUSIVE


# -- ncflow replay ---------------------------------------------------------------


def _checked_record(directory: Path, claim: str, **changes) -> Path:
    example = _example(**changes)
    verdict = check(claim, example, SETTINGS)
    return write_record(directory, claim, example, SETTINGS, verdict)


def test_cli_exits_0_when_claim_holds(tmp_path, capsys):
    path = _checked_record(tmp_path, "C1")
    status, out, err = _cli(capsys, path)

    assert status == 0
    assert out.count("C1 PASS") == 2  # recorded and replayed
    assert "the claim holds" in out
    assert err == ""


def test_cli_exits_1_for_planted_fault(tmp_path, capsys):
    path = _checked_record(tmp_path, "C9", faults=("wrong_s",))
    status, out, _ = _cli(capsys, path)

    assert read_record(path).verdict["outcome"] == "FAIL"
    assert status == 1
    assert out.count("C9 FAIL") == 2
    assert "still fails" in out


def test_cli_exits_1_when_inconclusive(tmp_path, capsys):
    path = _checked_record(tmp_path, "C11", balanced=False)
    status, out, _ = _cli(capsys, path)

    assert status == 1
    assert "does not hold as verified" in out
    assert "0 PASS, 0 FAIL, 1 INCONCLUSIVE" in out


def test_cli_exits_2_for_missing_file(tmp_path, capsys):
    path = tmp_path / "C1-0000000000000000.npz"
    status, out, err = _cli(capsys, path)

    assert status == 2
    assert out == ""
    assert err.startswith("ncflow replay: error: ")
    assert str(path) in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def _text_file(path: Path) -> None:
    path.write_text("not a record\n")


def _npy_file(path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, _samples())


def _npz_without_meta(path: Path) -> None:
    np.savez(path, X=_samples(), y=np.array(["+", "+", "-"]))


def _missing_file(path: Path) -> None:
    pass


@pytest.mark.parametrize(
    "make", [_text_file, _npy_file, _npz_without_meta, _missing_file]
)
def test_cli_non_record_error_gives_fix(tmp_path, capsys, make):
    path = tmp_path / "data.npz"
    make(path)
    status, out, err = _cli(capsys, path)

    assert status == 2
    assert out == ""
    assert str(path) in err
    assert "pass a .npz record that ncflow verify or the pytest gate wrote" in err
    assert "or a directory of them" in err
    assert err.count("\n") == 1


def test_cli_exits_2_for_modified_file(tmp_path, capsys):
    path = _checked_record(tmp_path, "C1")
    _rewrite(path, _change_sample)
    status, out, err = _cli(capsys, path)

    assert status == 2
    assert out == ""
    assert "modified after it was written" in err
    assert err.count("\n") == 1


def test_cli_checks_all_files_before_replaying(tmp_path, capsys):
    good = _checked_record(tmp_path, "C1")
    status = main(["replay", str(good), str(tmp_path / "missing.npz")])
    captured = capsys.readouterr()

    assert status == 2
    assert "replaying" not in captured.err  # the progress line of a replay
    assert "missing.npz" in captured.err


def test_cli_replays_a_directory(tmp_path, capsys):
    _checked_record(tmp_path, "C1")
    _checked_record(tmp_path, "C11", balanced=False)
    status, out, _ = _cli(capsys, tmp_path)

    assert status == 1
    assert "replayed 2 records: 1 PASS, 0 FAIL, 1 INCONCLUSIVE" in out


def _replay_once(calls: list):
    """A replay that repeats the recorded verdict once, then is interrupted."""

    def replay(record):
        calls.append(record.path)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return record.recorded_verdict(), record.verdict

    return replay


def test_cli_interrupt_prints_finished_replays(tmp_path, capsys, monkeypatch):
    first = min(_write(tmp_path), _write(tmp_path, eps=2 * EPS))
    monkeypatch.setattr(records_module, "replay", _replay_once([]))
    try:
        status, out, err = _cli(capsys, tmp_path)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped ncflow replay")

    assert status == 130
    assert f"{first}: claim C7" in out
    assert "replayed 1 record: 0 PASS, 1 FAIL, 0 INCONCLUSIVE" in out
    assert err == (
        "ncflow replay: interrupted after 1 of 2 records; the output lists those "
        "replayed\n"
    )


def test_cli_interrupt_json_lists_finished(tmp_path, capsys, monkeypatch):
    first = min(_write(tmp_path), _write(tmp_path, eps=2 * EPS))
    monkeypatch.setattr(records_module, "replay", _replay_once([]))
    try:
        status, out, _ = _cli(capsys, "--json", tmp_path)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped ncflow replay")

    entries = json.loads(out)
    assert status == 130
    assert [entry["path"] for entry in entries] == [str(first)]


KEPT_RECORDS = Path(__file__).parents[1] / "counterexamples"


def test_cli_exploration_record_reads_found(capsys):
    path = sorted(KEPT_RECORDS.glob("X*.npz"))[0]
    status, out, _ = _cli(capsys, path)

    assert status == 1
    assert "result: the exploration's counterexample is found again" in out
    assert "(FOUND, as recorded)" in out
    assert "still fails" not in out
    assert "replayed 1 record: 0 PASS, 0 FAIL, 1 FOUND, 0 INCONCLUSIVE" in out


def _outcome_pair(claim: str, recorded: str, outcome: str):
    record = SimpleNamespace(claim=claim, verdict={"outcome": recorded})
    return record, SimpleNamespace(outcome=Outcome(outcome))


@pytest.mark.parametrize(
    ("claim", "recorded", "outcome", "expected"),
    [
        ("X6", "FAIL", "FAIL", "found again (FOUND, as recorded)"),
        ("X6", "FAIL", "PASS", "no longer a counterexample (PASS, recorded FOUND)"),
        ("X6", "FAIL", "INCONCLUSIVE", "INCONCLUSIVE (recorded FOUND)"),
        ("C9", "FAIL", "FAIL", "the claim still fails (FAIL, as recorded)"),
        ("C9", "FAIL", "PASS", "the claim holds (PASS, recorded FAIL)"),
    ],
)
def test_replay_result_wording(claim, recorded, outcome, expected):
    assert expected in cli._replay_result(*_outcome_pair(claim, recorded, outcome))


@pytest.mark.parametrize(
    ("claim", "outcome", "shown"),
    [("X6", "FAIL", "FOUND"), ("X6", "PASS", "PASS"), ("C9", "FAIL", "FAIL")],
)
def test_json_shown_outcome_matches_text(claim, outcome, shown):
    # The text output reads an exploration's FAIL as FOUND, and the JSON entry
    # gives that reading beside the raw outcome.
    record, verdict = _outcome_pair(claim, "FAIL", outcome)
    assert cli._shown_outcome(record, verdict.outcome.value) == shown


def test_cli_clean_verify_report_replays_nothing(tmp_path, capsys):
    # A verify run whose claims all hold writes report.json and no record:
    # replaying its directory is no error.
    (tmp_path / "report.json").write_text("{}")
    status, out, err = _cli(capsys, tmp_path)

    assert status == 0
    assert "replayed 0 records" in out
    assert "without counterexample records" in err


def test_cli_json_lists_both_verdicts(tmp_path, capsys):
    path = _checked_record(tmp_path, "C9", faults=("wrong_s",))
    status, out, _ = _cli(capsys, "--json", path)
    entries = json.loads(out)

    assert status == 1
    assert len(entries) == 1
    assert entries[0]["path"] == str(path)
    assert entries[0]["claim"] == "C9"
    assert entries[0]["recorded_outcome"] == "FAIL"
    assert entries[0]["outcome"] == "FAIL"
    assert entries[0]["holds"] is False
    assert entries[0]["replayed"]["measured"] == entries[0]["recorded"]["measured"]


def test_run_settings_fields_all_recorded(tmp_path):
    with np.load(_write(tmp_path)) as archive:
        meta = json.loads(archive["meta"].item())

    assert meta["settings"] == to_jsonable(asdict(SETTINGS))


def test_damaged_array_header_gives_record_error(tmp_path):
    # A flipped byte of the compressed data can inflate to a .npy header that is
    # no longer a Python literal. numpy then raises SyntaxError or
    # tokenize.TokenError, which must surface as RecordError. Here the header of
    # one member gets a null byte in place of its closing brace, and the archive is
    # rewritten with valid CRCs so that only the header is wrong.
    path = _write(tmp_path)
    damaged = tmp_path / "damaged.npz"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "X.npy":
                end = data.index(b"}")
                data = data[:end] + b"\x00" + data[end + 1 :]
            target.writestr(info, data)
    with pytest.raises(RecordError, match="a damaged .npz archive"):
        read_record(damaged)


def test_truncated_record_is_reported_as_cut_short(tmp_path):
    # A copy cut short keeps the zip header and loses the directory at the end.
    # It is a record, only damaged, so the message names the damage and does
    # not call it "not a record".
    path = _write(tmp_path)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(RecordError) as error:
        read_record(truncated)
    assert "cut short or corrupted" in str(error.value)
    assert "not an ncflow counterexample record" not in str(error.value)


# -- records whose hash matches but whose content is invalid ----------------------


def _kept_copy(directory: Path, change) -> Path:
    """Copy the kept C1 record into ``directory``, apply ``change(contents, meta)``
    and store the new content hash, as a hand-edited record would have."""
    path = directory / "C1-edited.npz"
    path.write_bytes((KEPT_RECORDS / "C1-65cebd506c4b5d1b.npz").read_bytes())
    _rewrite_rehashed(path, change)
    return path


def _set_outcome(contents: dict, meta: dict) -> None:
    meta["verdict"]["outcome"] = "MAYBE"


def _drop_reason(contents: dict, meta: dict) -> None:
    del meta["verdict"]["reason"]


def _drop_rtol(contents: dict, meta: dict) -> None:
    del meta["settings"]["rtol"]


def _drop_eps_floor(contents: dict, meta: dict) -> None:
    del meta["settings"]["eps_floor"]


def _float32_X(contents: dict, meta: dict) -> None:
    contents["X"] = contents["X"].astype(np.float32)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (_float32_X, "the array X has shape"),
        (_set_outcome, "verdict.outcome='MAYBE' is invalid"),
        (_drop_reason, "the entry 'reason' is missing"),
        (_drop_rtol, "settings.rtol is missing"),
        (_drop_eps_floor, "settings.eps_floor is missing"),
    ],
)
def test_invalid_record_content_is_rejected(tmp_path, capsys, change, fragment):
    path = _kept_copy(tmp_path, change)

    with pytest.raises(RecordError) as error:
        read_record(path)
    assert fragment in str(error.value)
    assert "not a valid counterexample record" in str(error.value)

    status, out, err = _cli(capsys, path)
    assert status == 2
    assert out == ""
    assert fragment in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_renamed_record_is_rejected(tmp_path, capsys):
    # A copy renamed in the form of another record's name would be cited as
    # that counterexample. A free name such as my-case.npz is fine.
    original = (KEPT_RECORDS / "C1-65cebd506c4b5d1b.npz").read_bytes()
    renamed = tmp_path / "C7-0000000000000000.npz"
    renamed.write_bytes(original)
    with pytest.raises(RecordError, match="is that of another record") as error:
        read_record(renamed)
    # One fix only: the generic advice to write the record again does not apply.
    assert "restore the file" not in str(error.value)

    free = tmp_path / "my-case.npz"
    free.write_bytes(original)
    assert read_record(free).claim == "C1"


def test_record_without_norm2_max_uses_default(tmp_path):
    # Records written before RunSettings had norm2_max do not store it.
    path = _kept_copy(
        tmp_path, lambda contents, meta: meta["settings"].pop("norm2_max", None)
    )

    assert read_record(path).settings.norm2_max == RunSettings().norm2_max


def test_cli_replays_records_of_verify_out(tmp_path, capsys):
    # The --out directory of ncflow verify contains report.md and counterexamples/.
    (tmp_path / "report.md").write_text("# report\n")
    _checked_record(tmp_path / "counterexamples", "C1")
    status, out, _ = _cli(capsys, tmp_path)

    assert status == 0
    assert "replayed 1 record: 1 PASS, 0 FAIL, 0 INCONCLUSIVE" in out


def test_cli_prefers_records_in_directory(tmp_path, capsys):
    _checked_record(tmp_path, "C11", balanced=False)
    _checked_record(tmp_path / "counterexamples", "C1")
    status, out, _ = _cli(capsys, tmp_path)

    assert status == 1
    assert "replayed 1 record: 0 PASS, 0 FAIL, 1 INCONCLUSIVE" in out


def test_cli_directory_without_records(tmp_path, capsys):
    (tmp_path / "counterexamples").mkdir()
    status, out, err = _cli(capsys, tmp_path)

    assert status == 2
    assert out == ""
    assert "neither the directory nor its counterexamples/ subdirectory" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("faults", "wrong_s", "faults='wrong_s' is invalid"),
        ("balanced", "no", "balanced='no' is invalid"),
        ("label", None, "label=None is invalid"),
    ],
)
def test_record_with_invalid_example_field(tmp_path, field, value, fragment):
    path = _write(tmp_path)
    _rewrite_rehashed(
        path, lambda contents, meta: meta["example"].update({field: value})
    )

    with pytest.raises(RecordError) as error:
        read_record(path)
    assert fragment in str(error.value)


def test_cli_bad_file_among_several_names_it(tmp_path, capsys):
    good = _checked_record(tmp_path, "C1")
    bad = tmp_path / "bad.npz"
    _text_file(bad)
    status, out, err = _cli(capsys, good, bad)

    assert status == 2
    assert out == ""
    assert "No record was replayed" in err
    assert "reads all 2 files before it replays any" in err
    assert f"fix or remove {bad}, then run the command again" in err
    assert "1 of 2 files are not valid records" in err


def test_cli_names_every_bad_file(tmp_path, capsys):
    good = _checked_record(tmp_path, "C1")
    first, second = tmp_path / "bad1.npz", tmp_path / "bad2.npz"
    _text_file(first)
    _text_file(second)
    status, _, err = _cli(capsys, good, first, second)

    assert status == 2
    assert "2 of 3 files are not valid records" in err
    assert f"fix or remove {first}, {second}, then run" in err
