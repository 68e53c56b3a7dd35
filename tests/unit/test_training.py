"""Unit tests of ncflow.training and ncflow.report_io.

Error bounds use ``EPS``, the float64 machine epsilon (twice the unit roundoff): an
``m``-term sum computed in float64 is off by at most ``m EPS / 2`` times the sum of
the absolute values of its terms.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings

import numpy as np
import pytest
import torch

import ncflow.training as training
from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.flow import solve_flow
from ncflow.flow.result import STATUS_NONFINITE
from ncflow.metrics import MetricUndefined
from ncflow.network import Parameters, Problem, gradient_arrays
from ncflow.report_io import read_json, to_jsonable, write_json_atomic
from ncflow.training import (
    curvature_bound,
    default_step,
    minibatch_loss_and_gradient,
    rank_relative_error,
    record_steps,
    steps_for_time,
    train,
    trajectory_metrics,
)

EPS = float(np.finfo(np.float64).eps)


def _orthonormal(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.standard_normal((rows, columns)))
    return Q


def _antipodal_dataset() -> Dataset:
    """Two classes of 4 samples in cones around e_1 and -e_1 (A1 holds)."""
    angles = np.array([-0.3, -0.1, 0.2, 0.35])
    plus = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    minus = -np.stack([np.cos(angles + 0.1), np.sin(angles + 0.1)], axis=1)
    X = np.vstack(
        [plus * [[1.0], [1.5], [0.8], [1.2]], minus * [[1.1], [0.9], [1.3], [1.0]]]
    )
    return Dataset.from_arrays(X, np.repeat([0, 1], 4))


def _dyadic_problem() -> tuple[Problem, np.ndarray, np.ndarray]:
    """A 3-class problem whose outputs are exact in float64.

    Inputs are small integers and weights multiples of 1/4, so every product and
    sum in ``V relu(W^T x)`` is a dyadic number of a few bits, computed exactly.
    """
    rng = np.random.default_rng(5)
    n, D, width = 6, 3, 4
    X = rng.integers(-2, 3, size=(n, D)).astype(np.float64)
    X[np.all(X == 0, axis=1), 0] = 1.0
    W = rng.integers(-4, 5, size=(D, width)) / 4.0
    V = rng.integers(-4, 5, size=(3, width)) / 4.0
    problem = Problem(X, np.arange(n) % 3, 3, "cross_entropy")
    return problem, W, V


# --------------------------------------------------------------------------------
# Rank-3 relative error
# --------------------------------------------------------------------------------


def test_rank_error_known_singular_values():
    rng = np.random.default_rng(0)
    singular = np.array([4.0, 3.0, 2.0, 1.0])
    M = _orthonormal(rng, 7, 4) @ np.diag(singular) @ _orthonormal(rng, 5, 4).T
    expected = 1.0 / math.sqrt(30.0)  # sqrt(1^2 / (16 + 9 + 4 + 1))

    # LAPACK returns each singular value with an absolute error of about
    # max(n, m) EPS s_1. Only s_4 is in the numerator, so its relative error
    # max(n, m) EPS s_1 / s_4 dominates, and forming M adds the same order again.
    tol = 8 * max(M.shape) * EPS * singular[0] / singular[3]
    assert rank_relative_error(M, 3) == pytest.approx(expected, rel=tol)


def test_rank_error_is_zero_at_full_rank():
    M = np.arange(1.0, 7.0).reshape(2, 3)
    assert rank_relative_error(M, 3) == 0.0


def test_rank_error_of_rank_one_matrix():
    rng = np.random.default_rng(1)
    M = np.outer(rng.standard_normal(6), rng.standard_normal(4))

    # The trailing singular values of an exact rank-1 matrix are roundoff, about
    # max(n, m) EPS s_1 each, and there are 3 of them.
    tol = 8 * math.sqrt(3) * max(M.shape) * EPS
    assert rank_relative_error(M, 1) <= tol


def test_rank_error_rejects_zero_matrix():
    with pytest.raises(MetricUndefined, match="zero"):
        rank_relative_error(np.zeros((3, 4)), 3)


# --------------------------------------------------------------------------------
# Step, grid and curvature
# --------------------------------------------------------------------------------


def test_default_step_is_one_over_n_x_max():
    X = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, -2.0]])
    assert default_step(X) == 1.0 / (3 * 5.0)


def test_steps_for_time_rounds_exact_multiples():
    step = 0.1
    assert steps_for_time(100 * step, step) == 100


def test_steps_for_time_rounds_up_otherwise():
    assert steps_for_time(1.05, 0.1) == 11


def test_record_steps_are_dense_then_geometric():
    steps = record_steps(20_000, per_decade=10)
    assert steps[0] == 0
    assert steps[-1] == 20_000
    assert np.all(np.diff(steps) > 0)
    assert np.array_equal(steps[:11], np.arange(11))
    # 10 per decade: consecutive ratios past the dense start are about 10**0.1.
    ratios = steps[12:] / steps[11:-1]
    assert np.all(ratios < 10**0.1 * 1.1)


@pytest.mark.parametrize("loss", ["exponential", "logistic", "cross_entropy"])
def test_curvature_bound_holds_at_random_parameters(loss):
    rng = np.random.default_rng(2)
    n, D, width = 8, 3, 4
    num_classes = 3 if loss == "cross_entropy" else 2
    problem = Problem(rng.standard_normal((n, D)), np.arange(n) % num_classes,
                      num_classes, loss)  # fmt: skip
    W = rng.standard_normal((D, width))
    V = rng.standard_normal((problem.num_outputs, width))

    # Exact Hessian of the summed loss on the current activation pattern.
    mask = torch.tensor(problem.X @ W > 0, dtype=torch.float64)
    X = torch.tensor(problem.X)

    def summed_loss(theta: torch.Tensor) -> torch.Tensor:
        W_t = theta[: D * width].reshape(D, width)
        V_t = theta[D * width :].reshape(-1, width)
        f = (mask * (X @ W_t)) @ V_t.T
        if loss == "cross_entropy":
            labels = torch.tensor(problem.labels)
            return torch.nn.functional.cross_entropy(f, labels, reduction="sum")
        margins = torch.tensor(problem.signs) * f[:, 0]
        if loss == "exponential":
            return torch.exp(-margins).sum()
        return 2 * torch.nn.functional.softplus(-margins).sum()

    theta = torch.tensor(np.concatenate([W.ravel(), V.ravel()]))
    hessian = torch.autograd.functional.hessian(summed_loss, theta).numpy()
    spectral_norm = np.max(np.abs(np.linalg.eigvalsh(hessian)))
    bound = curvature_bound(problem, Parameters(W, V))

    # eigvalsh is backward stable: eigenvalues off by about size * EPS * ||H||.
    tol = 8 * hessian.shape[0] * EPS * spectral_norm
    assert spectral_norm <= bound + tol


def test_curvature_bound_rejects_overflowing_outputs():
    rng = np.random.default_rng(4)
    problem = Problem(rng.standard_normal((6, 3)), np.arange(6) % 3, 3,
                      "cross_entropy")  # fmt: skip
    # Finite weights of size 1e160 give outputs of size 1e320, which overflow.
    params = Parameters(
        1e160 * rng.standard_normal((3, 4)), 1e160 * rng.standard_normal((3, 4))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidArgument, match="scale params.W and params.V down"):
            curvature_bound(problem, params)


def test_default_step_is_stable_at_small_initialisation():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20, 5))
    problem = Problem(X, np.arange(20) % 3, 3, "cross_entropy")
    params = Parameters(
        1e-4 * rng.standard_normal((5, 6)), 1e-4 * rng.standard_normal((3, 6))
    )

    # At f ~ 0 the bound is sum_i ||x_i|| sqrt(1 - 1/K) <= n X_max sqrt(2/3), plus
    # a term ||H_i|| ||x_i||^2 ||theta||^2 of relative size X_max ||theta||^2.
    x_max = np.max(np.linalg.norm(X, axis=1))
    slack = x_max * params.norm2()
    assert (
        default_step(X) * curvature_bound(problem, params) <= math.sqrt(2 / 3) + slack
    )


# --------------------------------------------------------------------------------
# SGD loss scaling
# --------------------------------------------------------------------------------


def _per_sample_gradient_magnitude(
    problem: Problem, W, V
) -> tuple[np.ndarray, np.ndarray]:
    """Sum over samples of the absolute per-sample gradients, entrywise."""
    total_W, total_V = np.zeros_like(W), np.zeros_like(V)
    for i in range(problem.n):
        _, grad_W, grad_V = minibatch_loss_and_gradient(problem, W, V, np.array([i]))
        total_W += np.abs(grad_W) / problem.n
        total_V += np.abs(grad_V) / problem.n
    return total_W, total_V


def test_minibatch_loss_averages_to_summed_loss():
    problem, W, V = _dyadic_problem()
    batches = [np.array(b) for b in itertools.combinations(range(problem.n), 2)]
    full_log_loss, _, _ = gradient_arrays(problem, W, V)
    scaled = [
        math.exp(minibatch_loss_and_gradient(problem, W, V, b)[0]) for b in batches
    ]

    # The outputs are exact, so each l_i is the same in every batch. Only the sums
    # of n and 2 terms, the scale n/B and the mean over C batches round, by at most
    # (n + C + 2) EPS relative in all.
    full_loss = math.exp(full_log_loss)
    tol = (problem.n + len(batches) + 2) * EPS * full_loss
    assert abs(np.mean(scaled) - full_loss) <= tol


def test_minibatch_gradient_averages_to_full_gradient():
    problem, W, V = _dyadic_problem()
    batches = [np.array(b) for b in itertools.combinations(range(problem.n), 2)]
    _, full_W, full_V = gradient_arrays(problem, W, V)
    results = [minibatch_loss_and_gradient(problem, W, V, b) for b in batches]
    mean_W = np.mean([r[1] for r in results], axis=0)
    mean_V = np.mean([r[2] for r in results], axis=0)

    # Sums of n per-sample terms and a mean over C batches: at most (n + C + 2) EPS
    # times the sum of the absolute per-sample contributions.
    magnitude_W, magnitude_V = _per_sample_gradient_magnitude(problem, W, V)
    size = problem.n + len(batches) + 2
    assert np.all(np.abs(mean_W - full_W) <= size * EPS * magnitude_W)
    assert np.all(np.abs(mean_V - full_V) <= size * EPS * magnitude_V)


def test_minibatch_of_all_samples_is_full_loss():
    problem, W, V = _dyadic_problem()
    full_log_loss, full_W, _ = gradient_arrays(problem, W, V)
    log_loss, grad_W, _ = minibatch_loss_and_gradient(
        problem, W, V, np.arange(problem.n)
    )
    assert log_loss == full_log_loss
    assert np.array_equal(grad_W, full_W)


def test_sgd_run_records_nominal_time():
    dataset = _antipodal_dataset()
    run = train(dataset, width=4, steps=30, batch_size=3, seed=1, init="balanced")
    assert run.sgd is not None
    assert run.flow is None
    assert run.steps == 30
    # An epoch of n = 8 samples in batches of 3 is 3 steps (3 + 3 + 2 samples).
    assert run.sgd.epochs == 10.0
    assert training.summarize(run)["result"]["time_is_nominal"] is True


def test_sgd_run_is_reproducible_for_a_seed():
    dataset = _antipodal_dataset()
    first = train(dataset, width=4, steps=30, batch_size=3, seed=7)
    second = train(dataset, width=4, steps=30, batch_size=3, seed=7)
    assert np.array_equal(first.params.W, second.params.W)


# --------------------------------------------------------------------------------
# Full-batch gradient descent in several solve_flow calls
# --------------------------------------------------------------------------------


def _one_call(run, steps: int):
    """The steps of a training run as one ``solve_flow`` call."""
    return solve_flow(
        run.problem,
        run.params0,
        method="euler",
        step=run.settings.step,
        max_steps=steps,
        groups=run.groups0,
    )


def test_chained_calls_match_one_long_call(monkeypatch):
    dataset = _antipodal_dataset()
    # 128 bytes per record here (8 (D + d_y) h + n h), so 9 records: 7 steps a call.
    monkeypatch.setattr(training, "RECORD_MEMORY_BUDGET", 9 * 128)
    run = train(dataset, width=4, steps=400, seed=3, init="balanced")
    assert run.flow.settings["steps_per_call"] == 7

    single = _one_call(run, 400)
    assert single.separation_log_t is not None
    assert np.array_equal(run.params.W, single.params.W)
    assert np.array_equal(run.params.V, single.params.V)
    assert len(run.flow.activation_events) == len(single.activation_events)

    # The single call accumulates t over k <= 400 steps by logaddexp, each off by a
    # few EPS relative in t; the chain adds one shift. 4 EPS per step in log t.
    tol = 4 * 400 * EPS
    assert run.separation_log_t == pytest.approx(single.separation_log_t, abs=tol)


def test_gradient_descent_reports_divergence():
    dataset = _antipodal_dataset()
    run = train(dataset, width=4, steps=200, step=50.0, seed=0, init_scale=1.0)
    assert run.status < 0
    assert "non-finite" in run.message
    assert run.steps < 200
    assert np.all(np.isfinite(run.params.W))


def test_divergence_across_calls_matches_one_call():
    # From this start the third step leaves finite weights whose outputs
    # overflow, and the record grid ends a call there. The chain must stop as
    # the single call does, on the same step.
    dataset = _antipodal_dataset()
    run = train(dataset, width=4, steps=400, step=1.2, seed=0, init_scale=0.3)
    single = _one_call(run, 400)
    assert single.status == STATUS_NONFINITE
    assert run.status == STATUS_NONFINITE
    assert run.steps == single.n_accepted
    assert f"after step {single.n_accepted} of" in single.message
    assert f"at step {single.n_accepted} of" in run.message
    assert np.array_equal(run.params.W, single.params.W)
    assert np.array_equal(run.params.V, single.params.V)


def test_overflow_on_last_step_is_divergence():
    # The third and last step leaves finite weights whose outputs overflow:
    # the run diverged, though it took every step it was given.
    dataset = _antipodal_dataset()
    run = train(dataset, width=4, steps=3, step=1.2, seed=0, init_scale=0.3)
    single = _one_call(run, 3)
    assert single.status == STATUS_NONFINITE
    assert not math.isfinite(single.log_loss)
    assert run.status == STATUS_NONFINITE
    assert "at step 3 of" in run.message


def test_trajectory_metrics_mark_undefined_records():
    dataset = _antipodal_dataset()
    run = train(dataset, width=4, steps=5, seed=0)
    run.flow.trajectory.W[2] = 0.0  # every feature zero: all class means coincide
    metrics = trajectory_metrics(run)
    assert math.isnan(metrics.nc1[2])
    assert [index for index, _ in metrics.undefined["nc1"]] == [2]
    assert np.isfinite(metrics.nc1[3])


def test_trajectory_metrics_leave_out_diverged_state():
    # Step 3 overflows, as in test_overflow_on_last_step_is_divergence.
    run = train(_antipodal_dataset(), width=4, steps=3, step=1.2, seed=0,
                init_scale=0.3)  # fmt: skip
    metrics = trajectory_metrics(run)
    records_before = run.records_before_divergence
    assert run.diverged
    assert records_before == len(run.trajectory) - 1
    assert np.isfinite(metrics.nc1[records_before - 1])
    for name in ("nc1", "nc2", "nc3"):
        assert math.isnan(getattr(metrics, name)[records_before])
        index, reason = metrics.undefined[name][-1]
        assert index == records_before
        assert reason.startswith("the run diverged (")


def test_completed_run_keeps_every_record():
    run = train(_antipodal_dataset(), width=4, steps=5, seed=0)
    assert not run.diverged
    assert run.records_before_divergence == len(run.trajectory)


def test_train_rejects_steps_and_time_together():
    with pytest.raises(InvalidArgument, match="steps=10 and time=1.0"):
        train(_antipodal_dataset(), steps=10, time=1.0)


def test_train_rejects_semilocal_with_binary_loss():
    with pytest.raises(InvalidArgument, match="semilocal"):
        train(_antipodal_dataset(), init="semilocal", steps=1)


# --------------------------------------------------------------------------------
# JSON reports
# --------------------------------------------------------------------------------


def test_json_encodes_nonfinite_floats_as_strings(tmp_path):
    path = write_json_atomic(
        tmp_path / "r.json",
        {"a": math.nan, "b": [math.inf, -math.inf], "c": np.float64(np.nan)},
    )
    assert json.loads(path.read_text()) == {
        "a": "nan",
        "b": ["inf", "-inf"],
        "c": "nan",
    }


def test_json_converts_numpy_values(tmp_path):
    data = {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True),
            "a": np.arange(3), "m": np.eye(2)}  # fmt: skip
    assert read_json(write_json_atomic(tmp_path / "r.json", data)) == {
        "i": 3,
        "f": 0.5,
        "b": True,
        "a": [0, 1, 2],
        "m": [[1.0, 0.0], [0.0, 1.0]],
    }


def test_json_rejects_unknown_types():
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"x": object()})


def test_json_write_leaves_no_temporary_file(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    write_json_atomic(tmp_path / "r.json", {"a": 2})
    assert os.listdir(tmp_path) == ["r.json"]
    assert read_json(tmp_path / "r.json") == {"a": 2}


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_json_write_gives_mode_of_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = write_json_atomic(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_json_failed_serialisation_keeps_old_file(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_json_failed_replace_keeps_old_file(tmp_path, monkeypatch):
    path = write_json_atomic(tmp_path / "r.json", {"a": 1})

    def failing_replace(source, target):
        raise OSError("simulated failure of os.replace")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        write_json_atomic(path, {"a": 2})
    assert read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_json_failed_sync_keeps_old_file(tmp_path, monkeypatch):
    path = write_json_atomic(tmp_path / "r.json", {"a": 1})

    def failing_fsync(descriptor):
        raise OSError("simulated failure of os.fsync")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated"):
        write_json_atomic(path, {"a": 2})
    assert read_json(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_read_json_names_missing_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(FileNotFoundError, match="absent.json"):
        read_json(path)


def test_read_json_names_invalid_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"a": 1,\n')
    with pytest.raises(
        InvalidArgument, match=r"broken\.json is not valid JSON.*line 2"
    ):
        read_json(path)


@pytest.mark.parametrize("names", [("1", "-1"), ("-1", "1"), ("a", "b")])
def test_signed_class_names_keep_nc3_and_nc4(names):
    # With classes named 1 and -1 in the order (-1, 1), class 0 (named -1) is the
    # - class of the scalar head, while the NC metrics take class 0 as +. A
    # collapsed network that classified every sample read NC3 = 2 and NC4 = 0.
    base = _antipodal_dataset()
    y = np.array(names)[base.labels]
    dataset = Dataset.from_arrays(base.X, y, class_order=names)
    run = train(dataset, width=4, steps=2000, seed=0, init="balanced")
    summary = training.summarize(run)
    assert summary["result"]["train_accuracy"] == 1.0
    assert summary["nc"]["nc4"] == 1.0
    assert summary["nc"]["nc3"] < 1.0
    metrics = training.trajectory_metrics(run)
    assert metrics.nc3[-1] == pytest.approx(summary["nc"]["nc3"], rel=1e-12)


def test_summary_counts_sgd_epochs():
    # Each epoch over 8 samples takes batches of 3, 3 and 2, so 30 steps are
    # 10 epochs. The paper counts its training in epochs; a full-batch run
    # has none.
    dataset = _antipodal_dataset()
    sgd = train(dataset, width=4, steps=30, batch_size=3, seed=1, init="balanced")
    full = train(dataset, width=4, steps=30, seed=1, init="balanced")
    assert training.summarize(sgd)["result"]["epochs"] == 10.0
    assert training.summarize(full)["result"]["epochs"] is None
