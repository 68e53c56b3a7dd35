"""Unit tests of ncflow.losses against direct formulas, torch autograd and mpmath."""

from __future__ import annotations

import math
import pickle
import re
import warnings

# mpmath comes with torch (through sympy). A plain import, not importorskip: a
# missing mpmath must fail this module, not skip every loss test in it.
import mpmath
import numpy as np
import pytest
import torch

from ncflow._validation import InvalidArgument
from ncflow.losses import (
    check_loss,
    is_binary,
    log_softplus,
    loss_terms,
    loss_terms_unchecked,
)

EPS = float(np.finfo(np.float64).eps)
LOG2 = math.log(2.0)

# Outputs of the moderate-range tests: |f| <= 30 keeps exp(|f|) about 1e13, far
# from overflow, so that the naive formulas are valid references there.
OUTPUT_BOUND = 30.0

# A log-domain quantity of size up to |f| + log K + 1 <= 33 carries an absolute
# error of a few (say 4) ulps of that size in each method; exp turns it into the
# same relative error. Two methods compared: 2 * 4 * 33 eps, rounded up to 300 eps.
LOG_DOMAIN_RTOL = 300 * EPS

# The naive references lose absolute accuracy, not relative: log(1 + u) rounds
# 1 + u (an absolute error of eps/2 in the log), and -log(p_k) with p_k near 1
# rounds p_k (eps/2 again). 2 eps per reference, doubled for a second rounding.
NAIVE_ATOL = 4 * EPS

# Torch's softmax derivatives form p = exp(f - logsumexp(f)), so p carries the
# log-domain relative error above, and 1 - p_k in the gradient and p_k - p_k^2 in
# the Hessian turn it into an absolute error of the same size. The binary torch
# derivatives are products with no cancellation and need no absolute term.
DERIVATIVE_ATOL = {
    "exponential": 0.0,
    "logistic": 0.0,
    "cross_entropy": LOG_DOMAIN_RTOL,
}


def _binary_case(
    rng: np.random.Generator, n: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    outputs = rng.uniform(-OUTPUT_BOUND, OUTPUT_BOUND, size=(n, 1))
    signs = rng.choice([-1.0, 1.0], size=n)
    return outputs, signs


def _multiclass_case(
    rng: np.random.Generator, n: int = 12, num_classes: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    outputs = rng.uniform(-OUTPUT_BOUND, OUTPUT_BOUND, size=(n, num_classes))
    labels = rng.integers(num_classes, size=n)
    return outputs, labels


def _case(loss: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if loss == "cross_entropy":
        return _multiclass_case(rng)
    return _binary_case(rng)


def _naive_losses(outputs: np.ndarray, targets: np.ndarray, loss: str) -> np.ndarray:
    """Per-sample losses written out directly, with no stabilisation."""
    if loss == "exponential":
        return np.exp(-targets * outputs[:, 0])
    if loss == "logistic":
        return 2.0 * np.log(1.0 + np.exp(-targets * outputs[:, 0]))
    exponentials = np.exp(outputs)
    probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
    return -np.log(probabilities[np.arange(len(targets)), targets])


def _torch_sample_loss(loss: str):
    """Return ``l(f, y)`` for one sample as a torch function, for torch.func."""

    def exponential(output, sign):
        return torch.exp(-sign * output[0])

    def logistic(output, sign):
        return 2.0 * torch.logaddexp(torch.zeros_like(output[0]), -sign * output[0])

    def cross_entropy(output, one_hot):
        return torch.logsumexp(output, dim=0) - torch.sum(output * one_hot)

    return {"exponential": exponential, "logistic": logistic}.get(loss, cross_entropy)


def _torch_derivatives(
    outputs: np.ndarray, targets: np.ndarray, loss: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``g_i = -dl_i/df_i`` and ``H_i = dg_i/df_i`` by torch autograd."""
    sample_loss = _torch_sample_loss(loss)
    f = torch.tensor(outputs, dtype=torch.float64)
    if loss == "cross_entropy":
        # vmap cannot index by a batched label, so the target enters as one-hot.
        targets = np.eye(outputs.shape[1])[targets]
    y = torch.tensor(targets, dtype=torch.float64)
    gradient = torch.func.vmap(torch.func.grad(sample_loss))(f, y)
    # Reverse over reverse: torch.func.hessian goes through forward-mode AD,
    # whose decompositions emit a torch.jit DeprecationWarning in torch 2.13.
    second = torch.func.jacrev(torch.func.grad(sample_loss))
    hessian = torch.func.vmap(second)(f, y)
    return -gradient.numpy(), -hessian.numpy()


LOSS_NAMES = ["exponential", "logistic", "cross_entropy"]


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_values_match_direct_formulas(loss):
    outputs, targets = _case(loss, seed=1)
    terms = loss_terms(outputs, targets, loss)
    expected = _naive_losses(outputs, targets, loss)

    tol = LOG_DOMAIN_RTOL * expected + NAIVE_ATOL
    assert np.all(np.abs(np.exp(terms.log_losses) - expected) <= tol)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_total_matches_direct_sum(loss):
    outputs, targets = _case(loss, seed=2)
    expected = _naive_losses(outputs, targets, loss).sum()

    # The n-term sum of the reference adds n eps relative on top of each term.
    n = len(targets)
    tol = (LOG_DOMAIN_RTOL + n * EPS) * expected + n * NAIVE_ATOL
    assert abs(loss_terms(outputs, targets, loss).total - expected) <= tol


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_gradients_match_torch_autograd(loss):
    outputs, targets = _case(loss, seed=3)
    terms = loss_terms(outputs, targets, loss)
    expected, _ = _torch_derivatives(outputs, targets, loss)

    tol = LOG_DOMAIN_RTOL * np.abs(expected) + DERIVATIVE_ATOL[loss]
    assert np.all(np.abs(terms.gradients() - expected) <= tol)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_hessians_match_torch_autograd(loss):
    outputs, targets = _case(loss, seed=4)
    terms = loss_terms(outputs, targets, loss)
    _, expected = _torch_derivatives(outputs, targets, loss)
    hessians = np.exp(terms.log_scales)[:, None, None] * terms.unit_hessians

    tol = LOG_DOMAIN_RTOL * np.abs(expected) + DERIVATIVE_ATOL[loss]
    assert np.all(np.abs(hessians - expected) <= tol)


# Each case: loss, outputs, targets, exact log-loss (the asymptotic expansion,
# whose first dropped term is below exp(-1e3) relative), exact log-scale.
# Logistic: log(2 log(1 + e^-m)) = log 2 - m - e^-m/2 + ..., and for m -> -inf,
# log(2 softplus(-m)) = log 2 + log(-m + log1p(e^m)) = log 2 + log(-m).
# Cross-entropy [M, 0, 0] with label 0: l = log(1 + 2 e^-M), log l = log 2 - M.
# Cross-entropy [0, M, 0] with label 0: l = M + log(1 + 2 e^-M), log l = log M.
LOG_DOMAIN_CASES = [
    pytest.param("exponential", [[1e3]], [1.0], -1e3, -1e3, id="exponential-fit-1e3"),
    pytest.param(
        "exponential", [[1e12]], [1.0], -1e12, -1e12, id="exponential-fit-1e12"
    ),
    pytest.param(
        "exponential", [[1e12]], [-1.0], 1e12, 1e12, id="exponential-miss-1e12"
    ),
    pytest.param(
        "logistic", [[1e3]], [1.0], LOG2 - 1e3, LOG2 - 1e3, id="logistic-fit-1e3"
    ),
    pytest.param(
        "logistic", [[1e12]], [1.0], LOG2 - 1e12, LOG2 - 1e12, id="logistic-fit-1e12"
    ),
    pytest.param(
        "logistic",
        [[-1e12]],
        [1.0],
        LOG2 + math.log(1e12),
        LOG2,
        id="logistic-miss-1e12",
    ),
    pytest.param(
        "cross_entropy",
        [[1e3, 0.0, 0.0]],
        [0],
        LOG2 - 1e3,
        LOG2 - 1e3,
        id="cross-entropy-fit-1e3",
    ),
    pytest.param(
        "cross_entropy",
        [[1e12, 0.0, 0.0]],
        [0],
        LOG2 - 1e12,
        LOG2 - 1e12,
        id="cross-entropy-fit-1e12",
    ),
    pytest.param(
        "cross_entropy",
        [[1e12, 0.0]],
        [0],
        -1e12,
        -1e12,
        id="cross-entropy-two-classes-fit-1e12",
    ),
    pytest.param(
        "cross_entropy",
        [[0.0, 1e12, 0.0]],
        [0],
        math.log(1e12),
        0.0,
        id="cross-entropy-miss-1e12",
    ),
]


@pytest.mark.parametrize(
    ("loss", "outputs", "targets", "log_loss", "log_scale"), LOG_DOMAIN_CASES
)
def test_log_losses_match_asymptotics(loss, outputs, targets, log_loss, log_scale):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        terms = loss_terms(np.array(outputs), np.array(targets), loss)

    # log l is formed from |f| with a few additions, each rounding to half an ulp of
    # the result, and the expected value itself rounds once: 4 eps relative.
    tol = 4 * EPS * max(abs(log_loss), 1.0)
    assert abs(terms.log_losses[0] - log_loss) <= tol


@pytest.mark.parametrize(
    ("loss", "outputs", "targets", "log_loss", "log_scale"), LOG_DOMAIN_CASES
)
def test_log_scales_match_asymptotics(loss, outputs, targets, log_loss, log_scale):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        terms = loss_terms(np.array(outputs), np.array(targets), loss)

    # Same rounding count as the log-loss: 4 eps relative.
    tol = 4 * EPS * max(abs(log_scale), 1.0)
    assert abs(terms.log_scales[0] - log_scale) <= tol


@pytest.mark.parametrize(
    ("loss", "outputs", "targets", "log_loss", "log_scale"), LOG_DOMAIN_CASES
)
def test_log_domain_terms_stay_finite(loss, outputs, targets, log_loss, log_scale):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        terms = loss_terms(np.array(outputs), np.array(targets), loss)

    assert np.all(np.isfinite(terms.log_losses))
    assert np.all(np.isfinite(terms.log_scales))
    assert np.all(np.isfinite(terms.unit_gradients))
    assert np.all(np.isfinite(terms.unit_hessians))
    assert np.isfinite(terms.log_total)


@pytest.mark.parametrize("margin", [1e3, 1e6, 1e12])
def test_cross_entropy_unit_gradients_exact_at_large_margin(margin):
    # The true class has output M and the wrong classes have outputs 1 and 0, so
    # r = (sigmoid(1), sigmoid(-1)) whatever M is.
    terms = loss_terms(np.array([[margin, 1.0, 0.0]]), np.array([0]), "cross_entropy")
    expected = -np.array([1.0 / (1.0 + math.exp(-1.0)), 1.0 / (1.0 + math.exp(1.0))])

    # Two O(1) log-sum-exp and exp evaluations of about 4 roundings each, doubled
    # for the reference: 16 eps.
    assert np.all(np.abs(terms.unit_gradients[0, 1:] - expected) <= 16 * EPS)


def _extreme_case(loss: str) -> tuple[np.ndarray, np.ndarray]:
    magnitudes = np.array([0.0, 1e-3, 1.0, 30.0, 1e3, 1e12])
    values = np.concatenate([magnitudes, -magnitudes])
    if loss == "cross_entropy":
        rng = np.random.default_rng(5)
        outputs = rng.choice(values, size=(40, 3))
        return outputs, rng.integers(3, size=40)
    return values[:, None], np.ones(len(values))


# The ratios p_l / q and probabilities behind the unit terms are exp of a
# difference that is <= 0 in exact arithmetic; rounding of the log-sum-exp can
# make it a few ulps positive, so 1 + 4 eps bounds each entry.
UNIT_BOUND = 1.0 + 4 * EPS


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_unit_gradients_bounded_by_one(loss):
    outputs, targets = _extreme_case(loss)
    terms = loss_terms(outputs, targets, loss)
    assert np.all(np.abs(terms.unit_gradients) <= UNIT_BOUND)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_unit_hessians_bounded_by_one(loss):
    outputs, targets = _extreme_case(loss)
    terms = loss_terms(outputs, targets, loss)
    assert np.all(np.abs(terms.unit_hessians) <= UNIT_BOUND)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_terms_pickle_with_their_hessians(loss):
    # The Hessians are formed on first access. A copy pickled before that must
    # form the same ones, as a copy sent to a worker process would.
    outputs, targets = _extreme_case(loss)
    terms = loss_terms(outputs, targets, loss)
    copy = pickle.loads(pickle.dumps(terms))
    assert np.array_equal(copy.unit_hessians, terms.unit_hessians)


# Arguments where log(log1p(exp(z))) is representable in float64 (exp neither
# overflows nor falls below the smallest normal number), on both sides of the
# switch to the series at z = -20.
REPRESENTABLE_ARGUMENTS = [
    -700.0,
    -100.0,
    -20.000001,
    -20.0,
    -19.99,
    -5.0,
    -1e-8,
    0.0,
    0.5413248546129181,  # log(e - 1), where softplus = 1 and the result is 0
    1.0,
    20.0,
    35.0,
    700.0,
]


@pytest.mark.parametrize("z", REPRESENTABLE_ARGUMENTS)
def test_log_softplus_matches_direct_formula(z):
    expected = math.log(math.log1p(math.exp(z)))

    # The reference rounds in exp, log1p and log (the condition number of log1p is
    # <= 1), about 3 eps relative in log1p(exp z) and so 3 eps absolute after the
    # log; log_softplus has the same count. 8 eps absolute plus 8 eps relative.
    tol = 8 * EPS * (1.0 + abs(expected))
    assert abs(log_softplus(np.array([z]))[0] - expected) <= tol


# Beyond the float64 range of exp: log(log1p(e^z)) = z - e^z/2 + ... for z -> -inf,
# whose first correction is below 1e-300, and log(z + log1p(e^-z)) = log z for
# z -> +inf.
SERIES_CASES = [
    pytest.param(-800.0, -800.0, id="minus-800"),
    pytest.param(-1e12, -1e12, id="minus-1e12"),
    pytest.param(800.0, math.log(800.0), id="plus-800"),
    pytest.param(1e12, math.log(1e12), id="plus-1e12"),
]


@pytest.mark.parametrize(("z", "expected"), SERIES_CASES)
def test_log_softplus_matches_series_beyond_exp_range(z, expected):
    # One rounding in log_softplus and one in the expected value: 2 eps relative.
    tol = 2 * EPS * abs(expected)
    assert abs(log_softplus(np.array([z]))[0] - expected) <= tol


@pytest.mark.parametrize("z", [-745.5, -300.0, -40.0, -20.5, -20.0, -3.0, 3.0, 1e3])
def test_log_softplus_matches_mpmath(z):
    with mpmath.workdps(50):
        expected = float(mpmath.log(mpmath.log1p(mpmath.exp(mpmath.mpf(z)))))

    # The 50-digit reference is exact after rounding to float64 (half an ulp);
    # log_softplus rounds a few times: 4 eps absolute plus 4 eps relative.
    tol = 4 * EPS * (1.0 + abs(expected))
    assert abs(log_softplus(np.array([z]))[0] - expected) <= tol


@pytest.mark.parametrize(
    ("loss", "num_outputs"),
    [("exponential", 3), ("logistic", 2), ("cross_entropy", 1)],
)
def test_check_loss_rejects_wrong_output_count(loss, num_outputs):
    with pytest.raises(InvalidArgument, match=f"loss='{loss}' is invalid"):
        check_loss(loss, num_outputs)


@pytest.mark.parametrize(
    ("loss", "num_outputs"), [("exponential", 1), ("cross_entropy", 3)]
)
def test_check_loss_accepts_matching_output_count(loss, num_outputs):
    assert check_loss(loss, num_outputs) == loss


def test_check_loss_rejects_unknown_name():
    with pytest.raises(InvalidArgument, match="loss='hinge' is invalid"):
        check_loss("hinge", 1)


def test_cross_entropy_hessians_ignore_later_changes_to_outputs():
    # The Hessians are formed on first access; overwriting the caller's outputs
    # array in between must not change them.
    rng = np.random.default_rng(8)
    outputs = rng.standard_normal((5, 3))
    labels = np.array([0, 1, 2, 0, 1])
    expected = loss_terms(outputs.copy(), labels, "cross_entropy").unit_hessians
    terms = loss_terms(outputs, labels, "cross_entropy")
    outputs[:] = 0.0
    assert np.array_equal(terms.unit_hessians, expected)


@pytest.mark.parametrize("loss", ["exponential", "logistic"])
def test_binary_log_losses_are_their_own_array(loss):
    # Writing into the log-losses must not change the gradients' log-scales.
    terms = loss_terms(np.array([[0.5], [-1.0]]), np.array([1.0, -1.0]), loss)
    scales = terms.log_scales.copy()
    terms.log_losses[:] = 0.0
    assert np.array_equal(terms.log_scales, scales)


# Scales of the reference comparisons: from outputs far below 1 to margins of
# 1e12, where float64 keeps about 4 digits after the point of f.
REFERENCE_SCALES = [1e-6, 1.0, 30.0, 1e4, 1e8, 1e12]


def _cross_entropy_reference(
    outputs: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``log q``, the unit gradients and ``log l`` of each sample from the
    definitions, in 50-digit mpmath, rounded to float64."""
    n, num_classes = outputs.shape
    log_q = np.empty(n)
    unit_gradients = np.empty((n, num_classes))
    log_losses = np.empty(n)
    with mpmath.workdps(50):
        for i in range(n):
            f = [mpmath.mpf(float(value)) for value in outputs[i]]
            k = int(labels[i])
            wrong = [f[l] for l in range(num_classes) if l != k]
            log_wrong = mpmath.log(mpmath.fsum(mpmath.exp(value) for value in wrong))
            z = log_wrong - f[k]
            softplus_z = mpmath.log1p(mpmath.exp(z))
            log_q[i] = float(z - softplus_z)
            log_losses[i] = float(mpmath.log(softplus_z))
            for l in range(num_classes):
                ratio = mpmath.exp(f[l] - log_wrong)
                unit_gradients[i, l] = 1.0 if l == k else -float(ratio)
    return log_q, unit_gradients, log_losses


def _assert_cross_entropy_matches_reference(
    outputs: np.ndarray, labels: np.ndarray
) -> None:
    """Assert that ``loss_terms`` is within its roundoff bound of the reference."""
    n, num_classes = outputs.shape
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        terms = loss_terms(outputs, labels, "cross_entropy")
    log_q, unit_gradients, log_losses = _cross_entropy_reference(outputs, labels)

    # Each float64 step errs by at most one ulp of a value no larger than
    # B = 2 max_l |f_l| + log K + 1, the bound of every log-domain intermediate
    # (the log-sum-exp of the wrong classes, z, softplus(z), f_l minus that
    # log-sum-exp). Each later step passes an earlier error on with a factor of
    # at most 1. The wrong-class log-sum-exp takes up to K + 2 steps (shift,
    # exp, K - 2 additions, log, adding the shift back), z 1 more, and
    # log q = z - softplus(z) 5 more. log l = log softplus(z) takes up to 7
    # after z (the series branch), and r_l = exp(f_l - log-sum-exp) 2 after the
    # log-sum-exp, which exp turns into a relative error. The reference rounds
    # once more.
    bound = 2 * np.max(np.abs(outputs), axis=1) + math.log(num_classes) + 1
    log_q_steps = num_classes + 2 + 1 + 5 + 1
    log_loss_steps = num_classes + 2 + 1 + 7 + 1
    ratio_steps = num_classes + 2 + 2 + 1
    assert np.all(np.abs(terms.log_scales - log_q) <= log_q_steps * EPS * bound)
    assert np.all(np.abs(terms.log_losses - log_losses) <= log_loss_steps * EPS * bound)
    # The smallest normal number absorbs entries that underflow to subnormals.
    tiny = np.finfo(np.float64).tiny
    ratio_tol = ratio_steps * EPS * bound[:, None] * np.abs(unit_gradients) + tiny
    assert np.all(np.abs(terms.unit_gradients - unit_gradients) <= ratio_tol)
    assert np.all(terms.unit_gradients[np.arange(n), labels] == 1.0)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
@pytest.mark.parametrize("scale", REFERENCE_SCALES)
def test_cross_entropy_terms_match_mpmath(num_classes, scale):
    rng = np.random.default_rng(int(np.log10(scale)) + 40 + num_classes)
    outputs = rng.normal(size=(30, num_classes)) * scale
    labels = rng.integers(num_classes, size=30)
    _assert_cross_entropy_matches_reference(outputs, labels)


def test_cross_entropy_labels_changed_in_place():
    # Indices are cached by the labels' content, so an array changed in place
    # must give the terms of its new labels.
    rng = np.random.default_rng(11)
    outputs = rng.standard_normal((6, 3))
    labels = np.array([0, 1, 2, 0, 1, 2])
    loss_terms(outputs, labels, "cross_entropy")
    labels[:] = [2, 2, 1, 1, 0, 0]
    _assert_cross_entropy_matches_reference(outputs, labels)


def test_cross_entropy_terms_ignore_memory_layout():
    rng = np.random.default_rng(12)
    outputs = rng.standard_normal((8, 4)) * 100.0
    labels = rng.integers(4, size=8)
    expected = loss_terms(outputs, labels, "cross_entropy")
    for layout in (np.asfortranarray(outputs), np.repeat(outputs, 2, axis=1)[:, ::2]):
        terms = loss_terms(layout, labels, "cross_entropy")
        assert np.array_equal(terms.log_scales, expected.log_scales)
        assert np.array_equal(terms.unit_gradients, expected.unit_gradients)
        assert np.array_equal(terms.unit_hessians, expected.unit_hessians)


@pytest.mark.parametrize("label", [-1, 3])
def test_cross_entropy_rejects_label_outside_classes(label):
    labels = np.array([0, label, 1])
    with pytest.raises(InvalidArgument, match=rf"labels\[1\]={label} is outside 0..2"):
        loss_terms(np.zeros((3, 3)), labels, "cross_entropy")


@pytest.mark.parametrize(
    ("signs", "fragment"),
    [
        ([1.0, math.nan], "signs[1]=nan"),
        ([1.0, 0.0], "signs[1]=0.0"),
        ([1.0, 2.0], "signs[1]=2.0"),
        ([1.0], "signs has shape (1,)"),
        ([[1.0], [-1.0]], "signs has shape (2, 1)"),
    ],
)
def test_binary_loss_rejects_invalid_signs(signs, fragment):
    with pytest.raises(InvalidArgument, match=re.escape(fragment)):
        loss_terms(np.zeros((2, 1)), np.array(signs), "exponential")


def test_cross_entropy_rejects_fractional_labels():
    with pytest.raises(InvalidArgument, match="integer class indices"):
        loss_terms(np.zeros((2, 2)), np.array([0.5, 1.0]), "cross_entropy")


@pytest.mark.parametrize(
    ("columns", "loss", "fragment"),
    [
        (2, "exponential", "loss='exponential' is invalid for a network with 2"),
        (1, "cross_entropy", "loss='cross_entropy' is invalid for a scalar-output"),
        (1, "mse", "loss='mse' is invalid"),
    ],
)
def test_loss_must_fit_output_columns(columns, loss, fragment):
    targets = np.array([1.0, -1.0]) if columns == 1 else np.array([0, 1])
    with pytest.raises(InvalidArgument, match=re.escape(fragment)):
        loss_terms(np.zeros((2, columns)), targets, loss)


@pytest.mark.parametrize("shape", [(2,), (4,), (3, 1)])
def test_cross_entropy_rejects_labels_of_wrong_shape(shape):
    # Cached for the right shape first, so that the check cannot rely on a miss.
    loss_terms(np.zeros((3, 3)), np.zeros(3, dtype=np.int64), "cross_entropy")
    labels = np.zeros(shape, dtype=np.int64)
    with pytest.raises(InvalidArgument, match="give one label per row"):
        loss_terms(np.zeros((3, 3)), labels, "cross_entropy")


NONFINITE = [math.nan, math.inf, -math.inf]
NONFINITE_IDS = ["nan", "inf", "-inf"]
ALL_LOSS_VARIANTS = [
    "exponential",
    "logistic",
    "logistic_mean",
    "logistic_half",
    "cross_entropy",
    "cross_entropy_mean",
    "cross_entropy_wrong_axis",
]


def _outputs_with(loss: str, value: float) -> tuple[np.ndarray, np.ndarray]:
    """Return zero outputs of three samples, ``value`` at ``[1, 0]``, and targets."""
    if is_binary(loss):
        outputs, targets = np.zeros((3, 1)), np.array([1.0, -1.0, 1.0])
    else:
        outputs, targets = np.zeros((3, 3)), np.array([0, 1, 2])
    outputs[1, 0] = value
    return outputs, targets


@pytest.mark.parametrize("value", NONFINITE, ids=NONFINITE_IDS)
@pytest.mark.parametrize("loss", ALL_LOSS_VARIANTS)
def test_loss_terms_rejects_nonfinite_outputs(loss, value):
    outputs, targets = _outputs_with(loss, value)
    # Warnings become errors, so the test fails if numpy warns before the check.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidArgument) as error:
            loss_terms(outputs, targets, loss)
    message = str(error.value)
    assert f"outputs[1, 0] = {value!r}" in message
    assert "remove or replace NaN and inf entries" in message


@pytest.mark.parametrize("loss", ["exponential", "cross_entropy"])
def test_loss_terms_rejects_outputs_not_2d(loss):
    targets = _outputs_with(loss, 0.0)[1]
    with pytest.raises(InvalidArgument, match="outputs is invalid: it must have 2"):
        loss_terms(np.zeros(3), targets, loss)


@pytest.mark.parametrize("loss", ALL_LOSS_VARIANTS)
def test_unchecked_loss_terms_propagate_nan(loss):
    # The integrators call this path inside np.errstate and detect a non-finite
    # state by their status, so NaN must come back instead of an exception.
    outputs, targets = _outputs_with(loss, math.nan)
    with np.errstate(invalid="ignore"):
        terms = loss_terms_unchecked(outputs, targets, loss)
        log_total = terms.log_total
    assert math.isnan(log_total)
