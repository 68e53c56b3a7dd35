"""Small pure helpers of the multi-class checks and errata, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ncflow.losses import loss_terms
from theory_checks import errata
from theory_checks.multiclass import (
    class_margins,
    declining_tail,
    local_exponent,
    measured_tail,
    neuron_separated,
    zeta_lower_bound,
)

EPS = np.finfo(float).eps


@pytest.mark.parametrize("p", [0.3, 0.5, 1.0, 2.0])
def test_measured_tail_recovers_a_power_law(p):
    # q(R) = 2 + 3 R^-p: the distance left at R_3 is 3 R_3^-p exactly.
    norms = (1e4, 1e6, 1e8)
    values = tuple(2 + 3 * R**-p for R in norms)
    # The bisection pins p to 1e-12 relative, and q carries 2 eps of roundoff on
    # a value near 2, which the differences amplify by 1 / (R_2^-p - R_3^-p).
    expected = 3 * norms[2] ** -p
    assert measured_tail(values, norms) == pytest.approx(expected, rel=1e-6)


def test_measured_tail_with_unequal_spacing():
    norms = (1e3, 1e4, 1e8)
    values = tuple(1 - 0.5 * R**-0.4 for R in norms)
    assert measured_tail(values, norms) == pytest.approx(0.5 * 1e8**-0.4, rel=1e-6)


def test_measured_tail_is_zero_without_change():
    assert measured_tail((1.0, 1.0, 1.0), (1e4, 1e6, 1e8)) == 0.0


def test_measured_tail_is_infinite_when_the_change_grows():
    assert measured_tail((1.0, 1.1, 1.5), (1e4, 1e6, 1e8)) == math.inf


def test_class_margins_of_a_known_output():
    outputs = np.array([[3.0, 1.0, -1.0], [0.0, 2.0, 2.5]])
    margins = class_margins(outputs, np.array([0, 1]))
    assert margins.tolist() == [2.0, -0.5]


def test_neuron_separated_reads_the_pattern():
    labels = np.array([0, 0, 1])
    groups = np.array([0, 1])
    pattern = np.array([[True, False], [True, False], [False, True]])
    leaky = pattern.copy()
    leaky[2, 0] = True
    result = neuron_separated(np.stack([pattern, leaky]), labels, groups)
    assert result.tolist() == [[True, True], [False, True]]


def test_zeta_lower_bound_is_mu_s_capped_at_one():
    assert zeta_lower_bound(0.4) == 0.4
    assert zeta_lower_bound(1.0) == 1.0


def test_e1_bound_for_four_classes():
    assert errata.e1_bound(4) == pytest.approx(1 / 3, rel=0, abs=EPS)


def test_lemma3_bound_has_the_square_on_x_max():
    one = errata.lemma3_bound(1e-3, 5, 1.0, 4, 3)
    two = errata.lemma3_bound(1e-3, 5, 2.0, 4, 3)
    assert two == pytest.approx(4 * one, rel=4 * EPS)


def _wrong_axis_reference(F: np.ndarray, labels: np.ndarray):
    """Loss and gradient by autograd: log-softmax over the samples (dim 0) of the
    row-centred outputs."""
    outputs = torch.tensor(F, requires_grad=True)
    centred = outputs - outputs.mean(dim=1, keepdim=True)
    log_probs = torch.log_softmax(centred, dim=0)
    loss = -log_probs[torch.arange(F.shape[0]), torch.tensor(labels)].sum()
    loss.backward()
    return float(loss.detach()), outputs.grad.numpy()


@pytest.mark.parametrize(
    "labels",
    [np.array([0, 1, 2]), np.array([0, 0, 1, 2, 2, 2])],
    ids=["1-1-1", "2-1-3"],
)
def test_wrong_axis_loss_against_autograd(labels):
    rng = np.random.default_rng(0)
    F = 3 * rng.normal(size=(labels.size, 3))
    terms = loss_terms(F, labels, "cross_entropy_wrong_axis")
    loss, gradient = _wrong_axis_reference(F, labels)
    # n-term log-sum-exps of numbers up to about 10 in float64.
    tol = 64 * labels.size * EPS * max(1.0, loss)
    assert abs(math.exp(terms.log_total) - loss) <= tol
    assert np.max(np.abs(terms.gradients() + gradient)) <= 64 * labels.size * EPS


def test_wrong_axis_hessian_blocks_against_autograd():
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 1, 2])
    F = rng.normal(size=(4, 3))
    terms = loss_terms(F, labels, "cross_entropy_wrong_axis")

    def loss(x):
        centred = x - x.mean(dim=1, keepdim=True)
        log_probs = torch.log_softmax(centred, dim=0)
        return -log_probs[torch.arange(4), torch.tensor(labels)].sum()

    hessian = torch.autograd.functional.hessian(loss, torch.tensor(F)).numpy()
    own = np.stack([hessian[i, :, i, :] for i in range(4)])
    mine = np.exp(terms.log_scales)[:, None, None] * terms.unit_hessians
    # H_i = -d g_i / d f_i; a few products of probabilities in float64.
    assert np.max(np.abs(mine + own)) <= 64 * EPS


def test_local_exponent_of_a_power_law():
    norms = (1e2, 1e3, 1e5)
    values = tuple(4 - R**-0.7 for R in norms)
    # Bisection to 1e-12 relative on a ratio formed from values near 4.
    assert local_exponent(values, norms) == pytest.approx(0.7, rel=1e-8)


def test_declining_tail_at_a_steady_rate():
    norms = (1e4, 1e5, 1e6, 1e7, 1e8)
    values = tuple(1 + R**-0.5 for R in norms)
    assert declining_tail(values, norms) == pytest.approx(1e-4, rel=1e-6)


def test_declining_tail_grows_as_rate_slows():
    # q = R^-1 up to 1e6, then R^-0.4 (matched there): the early exponent is 1,
    # the late one 0.4, so the tail uses 0.16 and exceeds the steady 0.4 tail.
    norms = (1e4, 1e5, 1e6, 1e7, 1e8)

    def q(R):
        return R**-1.0 if R <= 1e6 else 1e-6 * (R / 1e6) ** -0.4

    values = tuple(q(R) for R in norms)
    steady = measured_tail(values[2:], norms[2:])
    assert declining_tail(values, norms) > 2 * steady


def test_e1_check_passes_on_the_exact_simplex():
    # The simplex-ETF columns have pairwise cosine exactly -1/(K-1) up to
    # roundoff, so mu_d meets the bound with equality.
    from ncflow.data import Dataset
    from ncflow.geometry import pseudo_labels

    dataset = Dataset.from_arrays(pseudo_labels(4).T.copy(), np.arange(4))
    verdict = errata.check_e1(dataset)
    assert verdict.outcome.value == "PASS", verdict.describe()
    mu_d = next(q for q in verdict.details["quantities"] if q["name"] == "mu_d")
    assert mu_d["measured"] == pytest.approx(1 / 3, rel=0, abs=16 * EPS)
