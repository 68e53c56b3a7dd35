"""Tests of the hypothesis predicates on hand-built cases with closed-form values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.geometry import class_sum_directions, pseudo_labels
from ncflow.network import Parameters
from strategies import width_two_example
from theory_checks.hypotheses import (
    a3_threshold,
    a4_quantities,
    check_a1,
    check_a2,
    check_a3,
    check_a4,
    check_a5,
    early_time_T,
    eps_bound_c3,
)

EPS = float(np.finfo(np.float64).eps)

# A cosine of two samples built from cos and sin of an angle in R^2. Each
# coordinate carries 1 roundoff, the inner product and the norms add about 4, and
# the expected value from math.cos 1 more, so 16 eps covers them.
COSINE_TOL = 16 * EPS


def _ray(angle_degrees: float, norm: float = 1.0) -> list[float]:
    angle = math.radians(angle_degrees)
    return [norm * math.cos(angle), norm * math.sin(angle)]


def _cos_degrees(angle_degrees: float) -> float:
    return math.cos(math.radians(angle_degrees))


def _rays(angles: list[float], labels: list[int], norms=None) -> Dataset:
    norms = norms or [1.0] * len(angles)
    X = np.array([_ray(angle, norm) for angle, norm in zip(angles, norms, strict=True)])
    return Dataset.from_arrays(X, labels, class_order=(1, -1))


def _separated() -> Dataset:
    """Class + at 0 and 20 degrees, class - at 130 and 190 degrees.

    Within-class angles are 20 and 60 degrees, so mu_s = cos 60. Cross-class angles
    are 130, 190 - 0 = 190 (that is 170), 110 and 170 degrees, so mu_d = -cos 110,
    attained by samples 1 and 2.
    """
    return _rays([0, 20, 130, 190], [1, 1, -1, -1], norms=[1.0, 2.0, 0.5, 3.0])


# --- A1 ----------------------------------------------------------------------------


def test_a1_holds_on_separated_rays():
    report = check_a1(_separated())
    assert report.holds
    assert report.message == ""
    assert report.measured["mu_s"] == pytest.approx(_cos_degrees(60), abs=COSINE_TOL)
    assert report.measured["mu_d"] == pytest.approx(-_cos_degrees(110), abs=COSINE_TOL)
    assert report.measured["worst_within_pair"][:2] == (2, 3)
    assert report.measured["worst_cross_pair"][:2] == (1, 2)
    assert report.measured["x_max"] == pytest.approx(3.0, rel=4 * EPS)
    assert report.measured["x_min"] == pytest.approx(0.5, rel=4 * EPS)


def test_a1_fails_below_requested_mu_d():
    # mu_d = -cos 110 = 0.342, below the requested 0.4.
    report = check_a1(_separated(), min_mu_d=0.4)
    assert not report.holds
    assert "mu_d = 0.34202 (needed >= 0.4)" in report.message
    # Classes are named by the dataset's labels, +1 and -1 here.
    assert "samples 1 (class '1') and 2 (class '-1')" in report.message


def test_a1_holds_at_requested_bounds():
    report = check_a1(_separated(), min_mu_s=0.4, min_mu_d=0.3)
    assert report.holds


def test_a1_fails_on_positive_cross_pair():
    # Class + at 0 degrees, class - at 80 and 180 degrees: one of the two
    # cross-class pairs has cosine cos 80 > 0.
    report = check_a1(_rays([0, 80, 180], [1, -1, -1]))
    assert not report.holds
    assert report.measured["mu_d"] == pytest.approx(-_cos_degrees(80), abs=COSINE_TOL)
    assert report.measured["violating_cross_share"] == 0.5
    assert "mu_d = -0.173648" in report.message


def test_a1_fails_on_negative_within_pair():
    # Class + at 0 and 100 degrees (cosine cos 100 < 0), class - at 230 degrees.
    report = check_a1(_rays([0, 100, 230], [1, 1, -1]))
    assert not report.holds
    assert report.measured["mu_s"] == pytest.approx(_cos_degrees(100), abs=COSINE_TOL)
    assert report.measured["violating_within_share"] == 1.0
    assert "mu_s = -0.173648" in report.message


def test_a1_fails_on_orthogonal_classes():
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    report = check_a1(Dataset.from_arrays(X, [1, -1]))
    assert not report.holds
    assert report.measured["mu_d"] == 0.0


def test_a1_holds_with_one_sample_per_class():
    report = check_a1(_rays([0, 180], [1, -1]))
    assert report.holds
    assert report.measured["mu_s"] == 1.0
    assert report.measured["worst_within_pair"] is None


def test_a1_rejects_bound_above_one():
    with pytest.raises(InvalidArgument, match=r"min_mu_s=1\.5 is invalid"):
        check_a1(_separated(), min_mu_s=1.5)


# --- A2 ----------------------------------------------------------------------------

# Columns (0.5, 0.375) and (0, 0.625) have norm 0.625 exactly (a 3-4-5 triangle
# scaled by 1/8), so balance and the norms hold bit for bit.
_W_EXACT = np.array([[0.5, 0.0], [0.375, 0.625]])


def test_a2_holds_on_exact_balanced_shapes():
    report = check_a2(Parameters(_W_EXACT, np.array([[0.625, -0.625]])), 1e-6)
    assert report.holds
    assert report.measured["max_imbalance"] == 0.0
    assert report.measured["max_norm"] == 0.625


def test_a2_fails_on_unbalanced_neuron():
    report = check_a2(Parameters(_W_EXACT, np.array([[0.625, -0.5]])), 1e-6)
    # | 0.625 - 0.5 | / 0.625 = 0.2, from three exactly representable numbers.
    assert not report.holds
    assert report.measured["max_imbalance"] == 0.2
    assert report.measured["worst_neuron"] == 1
    assert "neuron 1 is unbalanced" in report.message


def test_a2_fails_on_norm_above_one():
    W = np.array([[1.25, 0.5], [0.0, 0.375]])
    report = check_a2(Parameters(W, np.array([[1.25, 0.625]])), 1e-6)
    assert not report.holds
    assert report.measured["max_norm"] == 1.25
    assert "neuron 0 has ||w_j0|| = 1.25 > 1" in report.message


def test_a2_fails_on_zero_shape():
    W = np.array([[0.5, 0.0], [0.375, 0.0]])
    report = check_a2(Parameters(W, np.array([[0.625, 0.0]])), 1e-6)
    assert not report.holds
    assert report.measured["min_norm"] == 0.0
    assert "neurons [1] have a zero shape" in report.message


@pytest.mark.parametrize("eps", [0.0, -1e-3])
def test_a2_fails_on_nonpositive_eps(eps):
    report = check_a2(Parameters(_W_EXACT, np.array([[0.625, 0.625]])), eps)
    assert not report.holds
    assert f"eps = {eps!r} must be > 0" in report.message


def test_a2_rejects_nan_eps():
    with pytest.raises(InvalidArgument, match="eps=nan is invalid"):
        check_a2(Parameters(_W_EXACT, np.array([[0.625, 0.625]])), float("nan"))


# --- A3 ----------------------------------------------------------------------------


def _axis_pair() -> Dataset:
    """x_+ = (3, 4), x_- = (-3, -4), so xbar_+ = (0.6, 0.8) and xbar_- = -xbar_+."""
    X = np.array([[3.0, 4.0], [-3.0, -4.0]])
    return Dataset.from_arrays(X, [1, -1], class_order=(1, -1))


def test_a3_holds_on_width_two_example():
    dataset, shapes = width_two_example()
    report = check_a3(dataset, shapes)
    assert report.holds
    assert report.measured["n_plus"] == 1
    assert report.measured["n_minus"] == 1
    assert report.measured["active_plus"] == 1
    assert report.measured["active_minus"] == 1


def test_a3_fails_without_negative_group():
    dataset, shapes = width_two_example()
    positive = Parameters(shapes.W, np.abs(shapes.V))
    report = check_a3(dataset, positive)
    assert not report.holds
    assert report.measured["n_minus"] == 0
    assert "N_- is empty" in report.message


def test_a3_fails_when_positive_group_is_inactive():
    # Both neurons point along (-0.6, -0.8) * 0.625: inactive on x_+, active on x_-.
    W = np.array([[-0.375, -0.375], [-0.5, -0.5]])
    report = check_a3(_axis_pair(), Parameters(W, np.array([[0.625, -0.625]])))
    assert not report.holds
    assert report.measured["active_plus"] == 0
    assert report.measured["active_minus"] == 1
    assert "no neuron of N_+ is active on a positive sample" in report.message


def test_a3_fails_on_neuron_at_opposite_class_direction():
    dataset = _axis_pair()
    xbar_minus = class_sum_directions(dataset)[1]
    W = np.column_stack([[0.375, 0.5], 0.5 * xbar_minus, [-0.375, -0.5]])
    V = np.array([[0.625, 0.5, -0.625]])
    report = check_a3(dataset, Parameters(W, V))
    assert not report.holds
    assert report.measured["distance_plus_to_xbar_minus"] <= a3_threshold(2, 2)
    assert "neuron 1 of N_+ starts on xbar_-" in report.message


def test_a3_holds_just_off_opposite_class_direction():
    # A rotation by 1e-9 rad moves the unit direction by 1e-9, far above the
    # threshold of about 1e-13, so the neuron no longer counts as on xbar_-.
    dataset = _axis_pair()
    angle = math.atan2(-4.0, -3.0) + 1e-9
    W = np.column_stack(
        [[0.375, 0.5], [math.cos(angle), math.sin(angle)], [-0.375, -0.5]]
    )
    norm = float(np.linalg.norm(W[:, 1]))
    V = np.array([[0.625, norm, -0.625]])
    report = check_a3(dataset, Parameters(W, V))
    assert report.holds
    assert report.measured["distance_plus_to_xbar_minus"] == pytest.approx(
        1e-9, rel=1e-6
    )


def test_a3_threshold_grows_with_size():
    assert a3_threshold(16, 6) == 16 * (16 * 4 + 6) * EPS


def test_a3_rejects_multiclass_dataset():
    dataset = Dataset.from_arrays(pseudo_labels(3).T, [0, 1, 2])
    shapes = Parameters(np.eye(3), np.ones((1, 3)))
    with pytest.raises(InvalidArgument, match="A3 is the binary condition"):
        check_a3(dataset, shapes)


# --- A4 ----------------------------------------------------------------------------


def _etf_pairs() -> Dataset:
    """Two samples per class at e~_k and 2 e~_k, for K = 3.

    The e~_k are unit vectors with pairwise inner product -1/2, so a neuron along
    e~_k is active on exactly its own class.
    """
    E = pseudo_labels(3)
    X = np.vstack([E.T, 2.0 * E.T])
    return Dataset.from_arrays(X, [0, 1, 2, 0, 1, 2])


# Roundoff of an A_k or B_k value: a few inner products of 3 terms with unit
# vectors that carry a few roundoffs each; 32 eps covers them.
A4_TOL = 32 * EPS


def test_a4_quantities_of_copied_sample():
    E = pseudo_labels(3)
    quantities = a4_quantities(_etf_pairs().X, _etf_pairs().labels, E[:, 0], E[:, 0], 0)
    assert quantities.counts.tolist() == [2, 0, 0]
    np.testing.assert_allclose(quantities.alignments, [3.0, 0.0, 0.0], atol=A4_TOL)
    np.testing.assert_allclose(
        quantities.output_alignments, [1.0, -0.5, -0.5], atol=A4_TOL
    )
    assert quantities.count_sides == (4.0, 0.0)
    assert quantities.failed_conditions() == []


def test_a4_quantities_of_neuron_between_classes():
    # e~_0 + e~_1 = -e~_2, which has inner product 1/2 with e~_0 and e~_1: active
    # on classes 0 and 1 with A = 0.5 (1 + 2) = 1.5 each.
    E = pseudo_labels(3)
    quantities = a4_quantities(
        _etf_pairs().X, _etf_pairs().labels, -E[:, 2], E[:, 0], 0
    )
    assert quantities.counts.tolist() == [2, 2, 0]
    np.testing.assert_allclose(quantities.alignments, [1.5, 1.5, 0.0], atol=A4_TOL)
    assert quantities.count_sides == (4.0, 4.0)
    assert quantities.alignment_sides[1] == pytest.approx(3.0, abs=A4_TOL)
    assert quantities.failed_conditions() == ["counts", "alignment"]


def test_a4_holds_on_copied_samples():
    E = pseudo_labels(3)
    report = check_a4(_etf_pairs(), Parameters(E, E), np.array([0, 1, 2]))
    assert report.holds
    assert report.measured["failures"] == []
    assert report.measured["output_right"] == 0.75


def test_a4_fails_on_low_output_alignment():
    # v = -e~_2 has B_0 = <e~_0, -e~_2> = 1/2 < 1 - 1/(2(K-1)) = 3/4.
    E = pseudo_labels(3)
    V = E.copy()
    V[:, 0] = -E[:, 2]
    report = check_a4(_etf_pairs(), Parameters(E, V), np.array([0, 1, 2]))
    assert not report.holds
    assert report.measured["failures"] == [(0, "output")]
    assert report.measured["output_left"][0] == pytest.approx(0.5, abs=A4_TOL)
    assert "B_k = 0.5 is not >= 1 - 1/(2(K-1)) = 0.75" in report.message


def test_a4_fails_on_neuron_between_classes():
    E = pseudo_labels(3)
    W = E.copy()
    W[:, 0] = -E[:, 2]
    report = check_a4(_etf_pairs(), Parameters(W, E), np.array([0, 1, 2]))
    assert not report.holds
    assert report.measured["failures"] == [(0, "counts"), (0, "alignment")]
    assert report.measured["count_left"][0] == 4.0
    assert report.measured["count_right"][0] == 4.0
    assert "|I_k|^2 = 4 is not > sum_(l != k) |I_l|^2 = 4" in report.message


def test_a4_fails_on_empty_group():
    E = pseudo_labels(3)
    report = check_a4(_etf_pairs(), Parameters(E[:, :1], E[:, :1]), np.array([0]))
    assert not report.holds
    assert report.measured["empty_groups"] == [1, 2]
    assert "group N_1 is empty" in report.message


def test_a4_rejects_wrong_group_length():
    E = pseudo_labels(3)
    with pytest.raises(InvalidArgument, match="groups is invalid"):
        check_a4(_etf_pairs(), Parameters(E, E), np.array([0, 1]))


# --- A5 and the early-phase constants ----------------------------------------------


def _etf(norms: list[float]) -> Dataset:
    X = pseudo_labels(3).T * np.array(norms)[:, None]
    return Dataset.from_arrays(X, [0, 1, 2])


def test_a5_holds_on_unit_etf():
    # mu_s = 1 (no pairs), mu_d = 1/2: ratio 1 / (1/2) = 2 < 2K - 3 = 3.
    report = check_a5(_etf([1.0, 1.0, 1.0]))
    assert report.holds
    assert report.measured["ratio"] == pytest.approx(2.0, rel=A4_TOL)
    assert report.measured["bound"] == 3


def test_a5_fails_on_unequal_norms():
    # X_max / X_min = 2: ratio 4 / (1/2) = 8 >= 3.
    report = check_a5(_etf([1.0, 2.0, 1.0]))
    assert not report.holds
    assert report.measured["ratio"] == pytest.approx(8.0, rel=A4_TOL)
    assert "is not < 2K - 3 = 3" in report.message


def test_a5_fails_for_two_classes():
    # Antipodal unit samples: ratio 1 is not < 2K - 3 = 1.
    report = check_a5(_rays([0, 180], [1, -1]))
    assert not report.holds
    assert report.measured["bound"] == 1


def test_eps_bound_c3_matches_formula():
    # K = 3, X_max = 2, h = 4: sqrt(3) / (16 * 2 * 2); a few roundings.
    bound = eps_bound_c3(_etf([1.0, 2.0, 1.0]), 4)
    assert bound == pytest.approx(math.sqrt(3) / 64, rel=4 * EPS)


def test_early_time_matches_formula():
    # n = 3, X_max = 2, h = 4, eps = 1e-4: log(1 / (2e-4)) / (4 * 3 * 2).
    T = early_time_T(_etf([1.0, 2.0, 1.0]), 4, 1e-4)
    assert T == pytest.approx(math.log(5000.0) / 24, rel=8 * EPS)


def test_early_time_is_negative_for_large_eps():
    # sqrt(h) eps = 2 > 1: T = -log 2 / 24.
    T = early_time_T(_etf([1.0, 2.0, 1.0]), 4, 1.0)
    assert T == pytest.approx(-math.log(2.0) / 24, rel=8 * EPS)


def test_early_time_rejects_zero_eps():
    with pytest.raises(InvalidArgument, match="eps=0.0 is invalid"):
        early_time_T(_etf([1.0, 1.0, 1.0]), 4, 0.0)
