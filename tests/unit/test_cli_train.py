"""Unit tests of ``ncflow train``, run in-process through ``ncflow.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncflow import cli
from ncflow.cli import main
from ncflow.report_io import read_json

PLOTS = ("loss_norm.png", "nc_metrics.png", "pca.png", "group_weights.png")
SUMMARY_KEYS = {
    "dataset",
    "settings",
    "result",
    "rank3_relative_error",
    "rankK_relative_error",
    "nc",
    "a1",
    "separation",
    "undefined",
    "runtime_s",
    "notes",
}


@pytest.fixture
def npz_path(tmp_path):
    """Three classes of 5 samples in D = 4, each near one coordinate axis."""
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3]
    X = np.repeat(centres, 5, axis=0) + 0.1 * rng.standard_normal((15, 4))
    path = tmp_path / "tiny.npz"
    np.savez(path, X=X, y=np.repeat(["a", "b", "c"], 5))
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["train", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_json_summary_of_npz_file(capsys, npz_path):
    status, out, _ = _run(capsys, "--data", str(npz_path), "--width", "4",
                          "--steps", "50", "--json")  # fmt: skip
    summary = json.loads(out)
    assert status == 0
    assert set(summary) == SUMMARY_KEYS
    assert summary["dataset"]["n"] == 15
    assert summary["dataset"]["K"] == 3
    assert summary["dataset"]["class_names"] == ["a", "b", "c"]
    assert summary["settings"]["loss"] == "cross_entropy"
    assert summary["result"]["steps"] == 50
    assert summary["result"]["completed"] is True
    assert isinstance(summary["result"]["log_loss"], float)
    assert isinstance(summary["result"]["norm2"], float)
    assert isinstance(summary["rank3_relative_error"]["X"], float)
    assert summary["rankK_relative_error"]["rank"] == summary["dataset"]["K"]
    assert isinstance(summary["nc"]["nc1"], float)
    assert isinstance(summary["a1"]["holds"], bool)
    assert isinstance(summary["separation"]["at_end"], bool)
    assert isinstance(summary["runtime_s"], float)


def test_json_output_time_matches_steps(capsys, npz_path):
    status, out, _ = _run(capsys, "--data", str(npz_path), "--width", "4",
                          "--step", "0.01", "--time", "0.5", "--json")  # fmt: skip
    result = json.loads(out)["result"]
    assert status == 0
    assert result["steps"] == 50
    # t = 50 * 0.01 in float64: one rounding of the product.
    assert result["t"] == pytest.approx(0.5, rel=np.finfo(float).eps)


def test_digits_out_writes_report_and_plots(capsys, tmp_path):
    out_dir = tmp_path / "report"
    status, out, err = _run(capsys, "--classes", "0,1", "--width", "4", "--steps",
                            "50", "--json", "--out", str(out_dir))  # fmt: skip
    assert status == 0
    report = read_json(out_dir / "report.json")
    assert report["summary"] == json.loads(out)
    assert report["summary"]["dataset"]["n"] == 360
    assert report["summary"]["settings"]["loss"] == "exponential"
    assert len(report["trajectory"]["log_t"]) == len(report["trajectory"]["nc1"])
    assert report["trajectory"]["steps"][-1] == 50
    for name in PLOTS:
        assert (out_dir / name).stat().st_size > 0
    assert "not MNIST" in err


def test_file_out_has_no_group_images(capsys, npz_path, tmp_path):
    out_dir = tmp_path / "report"
    status, _, _ = _run(capsys, "--data", str(npz_path), "--width", "4", "--steps",
                        "5", "--quiet", "--out", str(out_dir))  # fmt: skip
    assert status == 0
    assert (out_dir / "report.json").is_file()
    assert (out_dir / "pca.png").is_file()
    assert not (out_dir / "group_weights.png").exists()


def test_sgd_run_on_npz_file(capsys, npz_path):
    status, out, _ = _run(capsys, "--data", str(npz_path), "--width", "4", "--steps",
                          "20", "--batch-size", "4", "--json")  # fmt: skip
    summary = json.loads(out)
    assert status == 0
    assert summary["settings"]["method"] == "sgd"
    assert summary["result"]["time_is_nominal"] is True


def test_text_summary_names_the_measures(capsys, npz_path):
    status, out, _ = _run(capsys, "--data", str(npz_path), "--width", "4",
                          "--steps", "5", "--quiet")  # fmt: skip
    assert status == 0
    assert "rank-3 relative error" in out
    assert "NC (paper)" in out
    assert "mu_s" in out


def test_diverging_run_exits_with_status_one(capsys, npz_path):
    # Two classes take the exponential loss, which overflows within a few steps.
    status, out, _ = _run(capsys, "--data", str(npz_path), "--classes", "a,b",
                          "--steps", "200", "--step", "100", "--init-scale", "1",
                          "--json")  # fmt: skip
    assert status == 1
    assert "non-finite" in json.loads(out)["result"]["message"]


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _run_interrupted(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``ncflow train``, failing where KeyboardInterrupt escapes main."""
    try:
        return _run(capsys, *args)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped ncflow train")


def test_interrupted_training_removes_new_out(capsys, npz_path, monkeypatch):
    monkeypatch.setattr(cli, "train", _interrupt)
    out = npz_path.parent / "new" / "out"
    status, stdout, err = _run_interrupted(
        capsys, "--data", str(npz_path), "--out", str(out)
    )
    assert status == 130
    assert stdout == ""
    assert err == "ncflow train: interrupted during training; nothing was written\n"
    assert not (npz_path.parent / "new").exists()


def test_interrupted_training_keeps_existing_out(capsys, npz_path, monkeypatch):
    monkeypatch.setattr(cli, "train", _interrupt)
    status, _, _ = _run_interrupted(
        capsys, "--data", str(npz_path), "--out", str(npz_path.parent)
    )
    assert status == 130
    assert npz_path.is_file()


def test_interrupted_writing_prints_summary(capsys, npz_path, monkeypatch):
    monkeypatch.setattr(cli, "_write_plots", _interrupt)
    out = npz_path.parent / "out"
    status, stdout, err = _run_interrupted(
        capsys, "--data", str(npz_path), "--width", "4", "--steps", "5",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert status == 130
    assert json.loads(stdout)["result"]["steps"] == 5
    assert err.endswith("ncflow train: interrupted\n")
    assert "Traceback" not in err


def test_diverged_json_reports_no_final_metrics(capsys, npz_path):
    status, out, _ = _run(capsys, "--data", str(npz_path), "--step", "1e300",
                          "--steps", "10", "--json")  # fmt: skip
    summary = json.loads(out)
    assert status == 1
    assert summary["result"]["diverged"] is True
    assert summary["result"]["train_accuracy"] is None
    # The log-loss of the overflowed state is NaN, and so is the loss (not inf).
    assert summary["result"]["log_loss"] == "nan"
    assert summary["result"]["loss"] == "nan"
    assert summary["nc"] is None
    assert summary["rank3_relative_error"]["phi"] is None
    assert isinstance(summary["rank3_relative_error"]["X"], float)
    assert summary["separation"]["at_end"] is None
    assert "diverged" in summary["undefined"]["result.train_accuracy"]
    assert "diverged" in summary["undefined"]["nc"]


def test_diverged_text_reports_divergence(capsys, npz_path):
    status, out, err = _run(capsys, "--data", str(npz_path), "--step", "1e300",
                            "--steps", "10")  # fmt: skip
    assert status == 1
    assert "result: DIVERGED" in out
    assert "training accuracy" in out  # named among the values not reported
    assert "%, learned features phi" not in out
    assert "NC (paper)" not in out
    assert " 1 step of " in out
    assert "training stopped after 1 step:" in err
    assert "1 steps" not in out + err


def test_diverged_out_plots_records_before(capsys, npz_path, tmp_path):
    # The exponential loss overflows at step 3, after the records of steps 1 and 2.
    out_dir = tmp_path / "report"
    status, out, err = _run(capsys, "--data", str(npz_path), "--classes", "a,b",
                            "--width", "4", "--steps", "200", "--step", "1",
                            "--init-scale", "0.1", "--json",
                            "--out", str(out_dir))  # fmt: skip
    assert status == 1
    report = read_json(out_dir / "report.json")
    assert report["summary"] == json.loads(out)
    assert report["summary"]["result"]["diverged"] is True
    assert report["plots"] == ["loss_norm.png", "nc_metrics.png"]
    written = sorted(path.name for path in out_dir.iterdir())
    assert written == ["loss_norm.png", "nc_metrics.png", "report.json"]

    trajectory = report["trajectory"]
    steps = trajectory["steps"]
    last_state = [i for i, count in enumerate(steps) if count == steps[-1]]
    before = [i for i, count in enumerate(steps) if count < steps[-1]]
    assert len(before) == 3
    assert isinstance(trajectory["nc1"][before[-1]], float)
    for name in ("nc1", "nc2", "nc3"):
        reasons = dict(trajectory["undefined"][name])
        for index in last_state:
            assert trajectory[name][index] == "nan"
            assert reasons[index].startswith("the run diverged (")
    note = (
        "note: the run diverged, so --out has no figures of its last state. "
        "loss_norm.png and nc_metrics.png end at the last record before it, at "
        f"step {steps[before[-1]]}\n"
    )
    assert note in err


def test_diverged_at_first_step_out_has_no_plots(capsys, tmp_path):
    out_dir = tmp_path / "report"
    status, _, err = _run(capsys, "--classes", "0,1", "--step", "1e300", "--steps",
                          "10", "--out", str(out_dir))  # fmt: skip
    assert status == 1
    report = read_json(out_dir / "report.json")
    assert report["plots"] == []
    assert [path.name for path in out_dir.iterdir()] == ["report.json"]
    assert "so --out has no figures. report.json has the records" in err
    assert report["summary"]["nc"] is None


def test_completed_run_is_not_diverged(capsys, npz_path):
    status, out, _ = _run(capsys, "--data", str(npz_path), "--width", "4",
                          "--steps", "1", "--json")  # fmt: skip
    summary = json.loads(out)
    assert status == 0
    assert summary["result"]["diverged"] is False
    assert isinstance(summary["result"]["train_accuracy"], float)


def test_no_subcommand_prints_help(capsys):
    status = main([])
    captured = capsys.readouterr()
    assert status == 2
    assert "usage: ncflow" in captured.err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--width", "0"], "--width=0"),
        (["--classes", "0,0"], "'0,0'"),
        (["--classes", "0,11"], "'11'"),
        (["--classes", "0,x"], "'x'"),
        (["--steps", "10", "--time", "1"], "--time"),
        (["--steps", "0"], "--steps=0"),
        (["--init-scale", "-1"], "--init-scale=-1.0"),
        (["--step", "0"], "--step=0.0"),
        (["--batch-size", "1000"], "--batch-size=1000"),
        (["--loss", "exponential"], "--loss=exponential"),
        (["--width", "abc"], "'abc'"),
    ],
)
def test_bad_digits_argument_exits_2(capsys, args, fragment):
    status, out, err = _run(capsys, *args)
    assert status == 2
    assert fragment in err
    assert out == ""
    assert "Traceback" not in err


@pytest.mark.parametrize("out", ["", " "])
def test_empty_out_exits_2(capsys, npz_path, monkeypatch, out):
    monkeypatch.chdir(npz_path.parent)
    status, stdout, err = _run(capsys, "--data", str(npz_path), "--out", out)
    assert status == 2
    assert f"--out={out!r} is invalid: it is empty" in err
    assert "--out train-report" in err
    assert stdout == ""
    assert [path.name for path in npz_path.parent.iterdir()] == [npz_path.name]


def test_unknown_file_type_exits_2(capsys, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("1,2,0\n")
    status, _, err = _run(capsys, "--data", str(path))
    assert status == 2
    assert "'.txt'" in err


def test_missing_file_exits_2(capsys, tmp_path):
    path = tmp_path / "absent.npz"
    status, _, err = _run(capsys, "--data", str(path))
    assert status == 2
    assert "absent.npz" in err
    assert "not found" in err


def test_non_utf8_csv_exits_2(capsys, tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(b"\xff\xfe1,0,a\n")
    status, out, err = _run(capsys, "--data", str(path))
    assert status == 2
    assert "b.csv" in err
    assert "not UTF-8 text" in err
    assert out == ""


def test_npy_renamed_npz_exits_2(capsys, tmp_path):
    path = tmp_path / "a.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros(3))
    status, out, err = _run(capsys, "--data", str(path))
    assert status == 2
    # The loader's argument is path=; the command line names its option.
    assert f"--data={str(path)!r} is invalid" in err
    assert "not an .npz archive" in err
    assert out == ""


def test_unknown_file_class_exits_2(capsys, npz_path):
    status, _, err = _run(capsys, "--data", str(npz_path), "--classes", "a,z")
    assert status == 2
    assert "'z'" in err


def test_no_center_with_file_exits_2(capsys, npz_path):
    status, _, err = _run(capsys, "--data", str(npz_path), "--no-center")
    assert status == 2
    assert "--no-center" in err


@pytest.mark.parametrize(
    "option, value, message",
    [
        # A count past int64 overflowed while the record grid was built, and a
        # long time started 1.6e15 steps without a word.
        ("--steps", "99999999999999999999", "--steps=99999999999999999999 is invalid"),
        ("--time", "1e12", "more than 1e+09; give a shorter time or a larger step"),
        # argparse reads "-1e-3" and "-1,2" as option names, so a negative value
        # after a space must reach the checks as "--step=-1e-3" would.
        # float("1e-400") is 0.0, and the range check then named
        # --init-scale=0.0, not the text on the line.
        ("--step", "-1e-3", "--step=-0.001 is invalid"),
        ("--step", "-2", "--step=-2.0 is invalid"),
        ("--classes", "-1,2", "'-1' is not a digit 0..9"),
        ("--init-scale", "1e-400", "argument --init-scale: 1e-400 underflows to 0"),
        ("--step", "1e400", "argument --step: 1e400 overflows float64"),
        ("--time", "abc", "argument --time: invalid number: 'abc'; give a decimal"),
    ],
)
def test_bad_option_value_message(capsys, option, value, message):
    status, out, err = _run(capsys, option, value)
    assert status == 2
    assert message in err
    assert "Traceback" not in err
    assert out == ""


def test_underflowing_start_is_noted_and_measured(capsys, npz_path):
    # A balanced start at scale 1e-300 has weights of that size, whose
    # products underflow, so ||theta||^2 prints as 0, and the notes report it. The
    # scale-free measures are still computed (features and V are scaled by
    # powers of two first).
    status, out, _ = _run(
        capsys, "--data", str(npz_path), "--init", "balanced",
        "--init-scale", "1e-300", "--steps", "1", "--json",
    )  # fmt: skip
    summary = json.loads(out)
    assert status == 0
    assert any("underflow float64" in note for note in summary["notes"])
    assert summary["undefined"] == {}


@pytest.mark.parametrize(("classes", "marked"), [("a,b", True), ("a,b,c", False)])
def test_two_class_nc2_standard_is_marked(capsys, npz_path, classes, marked):
    # Papyan et al.'s NC2 is 0 for any two class means, and the text marks it.
    status, out, _ = _run(capsys, "--data", str(npz_path), "--classes", classes,
                          "--steps", "5", "--quiet")  # fmt: skip
    assert status == 0
    assert ("(0 for any two classes)" in out) == marked


def test_linear_network_pattern_is_marked(capsys, npz_path):
    # The pattern line reads the signs of W^T x, which a linear network does not
    # use, and marks them as unused.
    status, out, _ = _run(capsys, "--data", str(npz_path), "--activation", "linear",
                          "--steps", "5", "--quiet")  # fmt: skip
    assert status == 0
    assert "the linear network does not use them" in out


def test_time_shorter_than_step_is_noted(capsys, npz_path):
    # A time shorter than one step still takes a whole step, so the run ends
    # past it, and a note reports that.
    status, out, _ = _run(
        capsys, "--data", str(npz_path), "--time", "1e-6", "--step", "0.01", "--json"
    )
    summary = json.loads(out)
    assert status == 0
    assert any("is past --time 1e-06" in note for note in summary["notes"])


def test_quiet_keeps_underflow_note(capsys, npz_path):
    # --quiet drops the notes on stderr, but not the one that reports the printed
    # ||theta||^2 = 0 as an underflow.
    status, out, err = _run(
        capsys, "--data", str(npz_path), "--init", "balanced",
        "--init-scale", "1e-300", "--steps", "1", "--quiet",
    )  # fmt: skip
    assert status == 0
    assert "||theta||^2 = 0" in out
    assert "underflow float64" in err


def test_normal_start_has_no_underflow_note(capsys, npz_path):
    status, out, _ = _run(capsys, "--data", str(npz_path), "--steps", "1", "--json")
    assert status == 0
    assert not any("underflow" in note for note in json.loads(out)["notes"])


def test_rising_loss_fails_the_run(capsys, npz_path):
    # Steps far too large for the curvature stay finite here but raise the
    # loss, which the gradient flow never does: the run exits with 1.
    status, out, _ = _run(
        capsys, "--data", str(npz_path), "--step", "1e4", "--steps", "3", "--json"
    )
    summary = json.loads(out)
    assert summary["result"]["diverged"] is False
    assert status == 1
    assert any("the loss rose" in note for note in summary["notes"])


def test_falling_loss_passes(capsys, npz_path):
    status, out, _ = _run(capsys, "--data", str(npz_path), "--steps", "3", "--json")
    assert status == 0
    assert not any("the loss rose" in note for note in json.loads(out)["notes"])
