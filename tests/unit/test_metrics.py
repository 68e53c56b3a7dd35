"""Unit tests of the Neural Collapse metrics against cases with exact values.

"The paper" is Min, Zhu, Vidal, NeurIPS 2025, "Neural Collapse under Gradient Flow
on Shallow ReLU Networks for Orthogonally Separable Data"; the standard metrics are
those of Papyan, Han, Donoho, PNAS 2020.
``u`` below is the float64 unit roundoff ``eps / 2``; tolerances use ``eps`` and
state the error bound they come from.
"""

from __future__ import annotations

import numpy as np
import pytest

from ncflow._validation import InvalidArgument
from ncflow.metrics import (
    MetricUndefined,
    activation_pattern,
    class_means,
    class_rank_ratios,
    nc1_paper,
    nc1_paper_limit,
    nc1_standard,
    nc2_paper,
    nc2_standard,
    nc3_paper,
    nc3_paper_limit_empirical,
    nc3_standard,
    nc4_ncc_agreement,
    nc_summary,
)

EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------


def simplex_pseudo_labels(num_classes: int) -> np.ndarray:
    """Build ``E~`` column by column: ``e~_k = sqrt(K/(K-1)) (e_k - 1/K)``."""
    columns = [
        np.sqrt(num_classes / (num_classes - 1))
        * (np.eye(num_classes)[k] - 1.0 / num_classes)
        for k in range(num_classes)
    ]
    return np.stack(columns, axis=1)


def nonnegative_frame(num_classes: int, width: int, rng) -> np.ndarray:
    """Return orthonormal ``phibar_k >= 0`` as columns, on disjoint coordinates."""
    frame = np.zeros((width, num_classes))
    blocks = np.array_split(np.arange(width), num_classes)
    for k, block in enumerate(blocks):
        entries = rng.uniform(0.5, 1.5, size=block.size)
        frame[block, k] = entries / np.linalg.norm(entries)
    return frame


def signed_frame(num_classes: int, width: int, rng) -> np.ndarray:
    """Return a random orthonormal frame as columns (QR of a Gaussian matrix)."""
    frame, _ = np.linalg.qr(rng.standard_normal((width, num_classes)))
    return frame


FRAMES = {"nonnegative": nonnegative_frame, "signed": signed_frame}


def limit_case(num_classes: int, frame_kind: str, seed: int):
    """Build features exactly at the limit of directional collapse.

    Returns ``a`` (n,), ``labels`` (n,), ``frame`` (h, K) with ``phi_i = a_i
    phibar_{y_i}``, the features (n, h), ``s`` (K,) and ``V = E~ [s_k phibar_k]^T``.
    """
    rng = np.random.default_rng(seed)
    width = 3 * num_classes
    labels = np.repeat(np.arange(num_classes), [4 + k for k in range(num_classes)])
    a = rng.uniform(0.5, 2.0, size=labels.size)
    frame = FRAMES[frame_kind](num_classes, width, rng)
    features = a[:, None] * frame[:, labels].T
    s = rng.uniform(0.5, 1.5, size=num_classes)
    V = simplex_pseudo_labels(num_classes) @ (frame * s).T
    return a, labels, frame, features, s, V


def class_mean_lengths(a: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([a[labels == k].mean() for k in range(labels.max() + 1)])


# --------------------------------------------------------------------------------
# Collapsed features
# --------------------------------------------------------------------------------


def collapsed_case(num_classes: int, per_class: int = 5):
    """Every sample of class k equals r_k e_k, with unequal r_k."""
    lengths = 1.1 + 0.3 * np.arange(num_classes)
    labels = np.repeat(np.arange(num_classes), per_class)
    features = np.zeros((labels.size, num_classes + 2))
    features[np.arange(labels.size), labels] = lengths[labels]
    return features, labels, lengths


@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_nc1_paper_of_collapsed_features_is_zero(num_classes):
    features, labels, lengths = collapsed_case(num_classes)
    value = nc1_paper(features, labels)

    # Each computed mean is off r_k e_k by at most 2 (n_k + 1) u r_k, so the
    # numerator is at most K (2 (n_k + 1) u r_max)^2. The denominator is exactly
    # (1 - 1/K) sum_k r_k^2 for orthogonal means.
    per_class = 5
    numerator_bound = num_classes * ((per_class + 1) * EPS * lengths.max()) ** 2
    tol = numerator_bound / ((1 - 1 / num_classes) * np.sum(lengths**2))
    assert 0.0 <= value <= tol


@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_nc2_paper_of_collapsed_features_is_zero(num_classes):
    features, labels, _ = collapsed_case(num_classes)

    # Off-diagonal Gram entries are exactly 0 (disjoint supports); each diagonal
    # entry is 1 up to 4u from normalising and squaring, so ||G/||G|| - I/sqrt(K)||
    # is at most 2 sqrt(K) 4u / sqrt(K) = 4 eps.
    tol = 4 * EPS
    assert nc2_paper(features, labels) <= tol


@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_class_rank_ratios_of_rays_are_zero(num_classes):
    # Unequal lengths along one ray per class: rank 1 without equal samples.
    rng = np.random.default_rng(1)
    features, labels, _ = collapsed_case(num_classes)
    features *= rng.uniform(0.5, 2.0, size=(labels.size, 1))
    ratios = class_rank_ratios(features, labels)

    # The SVD returns s_2 <= c max(n_k, h) u s_1 for an exactly rank-1 matrix, with a
    # modest LAPACK constant c, taken as 10.
    tol = 10 * max(5, features.shape[1]) * EPS
    assert ratios.shape == (num_classes,)
    assert np.all(ratios <= tol)


def test_class_rank_ratio_of_diagonal_rows():
    # Rows (3, 0) and (0, 1): singular values 3 and 1 exactly.
    features = np.array([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array([0, 0, 1])
    ratios = class_rank_ratios(features, labels)

    # SVD of a 2x2 diagonal matrix: a few u relative.
    tol = 10 * EPS
    assert abs(ratios[0] - 1.0 / 3.0) <= tol
    assert ratios[1] == 0.0


def test_class_rank_ratio_of_all_zero_class_raises():
    features = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    labels = np.array([0, 1, 1])
    with pytest.raises(MetricUndefined, match="class 1 is zero"):
        class_rank_ratios(features, labels)


# --------------------------------------------------------------------------------
# NC3 of the paper, consistent and printed targets
# --------------------------------------------------------------------------------


def orthogonal_frame_case(num_classes: int, seed: int):
    """Orthogonal means of unequal lengths and the self-dual head ``V = E~ Phi^T``.

    ``M = E~ Phi^T Phi (Phi^T Phi)^-1 = E~`` for every full-rank ``Phi``.
    """
    rng = np.random.default_rng(seed)
    width = num_classes + 3
    frame = signed_frame(num_classes, width, rng)
    labels = np.repeat(np.arange(num_classes), 3)
    a = rng.uniform(0.5, 2.0, size=labels.size)
    features = a[:, None] * frame[:, labels].T
    Phi = frame * class_mean_lengths(a, labels)
    V = simplex_pseudo_labels(num_classes) @ Phi.T
    condition = (
        class_mean_lengths(a, labels).max() / class_mean_lengths(a, labels).min()
    )
    return features, labels, V, condition


def nc3_tolerance(width: int, num_classes: int, per_class: int, condition: float):
    # The class means carry a relative error of about 2 (n_k + 1) u; the
    # least-squares solve adds condition * max(h, K) u (backward-stable SVD). The
    # normalised difference at most doubles these; 10 covers the constants.
    return 10 * condition * (max(width, num_classes) + 2 * (per_class + 1)) * EPS


@pytest.mark.parametrize("num_classes", [3, 4])
def test_nc3_consistent_of_self_dual_head(num_classes):
    features, labels, V, condition = orthogonal_frame_case(num_classes, seed=2)
    tol = nc3_tolerance(features.shape[1], num_classes, 3, condition)
    assert nc3_paper(V, features, labels) <= tol


@pytest.mark.parametrize("num_classes", [3, 4])
def test_nc3_printed_of_self_dual_head(num_classes):
    # M/||M|| = E~/sqrt(K) and ||E~||_F = sqrt(K), so the distance to E~/sqrt(K-1) is
    # sqrt(K) (1/sqrt(K-1) - 1/sqrt(K)) = sqrt(K/(K-1)) - 1.
    features, labels, V, condition = orthogonal_frame_case(num_classes, seed=3)
    expected = np.sqrt(num_classes / (num_classes - 1)) - 1
    value = nc3_paper(V, features, labels, target="printed")
    tol = nc3_tolerance(features.shape[1], num_classes, 3, condition)
    assert abs(value - expected) <= tol


def test_nc3_paper_of_binary_scalar_head():
    # Means phi_0 = (2, 0, 0), phi_1 = (0, 1, 0), so Phi^+ = [[1/2, 0, 0], [0, 1, 0]]
    # and V = [1, -1, 1/2] gives M = V (Phi^+)^T = [1/2, -1]; the third entry of V is
    # orthogonal to the means and drops out. Its cosine with [1, -1]/sqrt(2) is
    # 1.5 / sqrt(1.25 * 2), so NC3 = sqrt(2 - 3/sqrt(2.5)).
    features = np.array(
        [[1.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 1.5, 0.0]]
    )
    labels = np.array([0, 0, 1, 1])
    V = np.array([[1.0, -1.0, 0.5]])
    expected = np.sqrt(2 - 3 / np.sqrt(2.5))

    # The means are exact. The SVD of Phi, of condition 2, adds about 2 * 3 u, and
    # the subtraction 2 - 1.897 loses a factor 1/0.32 against the value.
    tol = 10 * 2 * 3 * EPS / expected
    assert abs(nc3_paper(V, features, labels) - expected) <= tol
    assert abs(nc3_paper(V, features, labels, target="printed") - expected) <= tol


def test_nc3_paper_of_coincident_means():
    # Phi = [e_1, e_1, e_2] is rank 2. The minimum-norm solution of Phi x = b is
    # (b_1/2, b_1/2, b_2), so Phi^+ = [[1/2, 0, 0], [1/2, 0, 0], [0, 1, 0]] and
    # M = V (Phi^+)^T has columns V[:, 0]/2, V[:, 0]/2, V[:, 1].
    features = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 1, 2])
    V = np.array([[1.0, 2.0, 5.0], [-1.0, 0.5, 0.0], [3.0, -2.0, 1.0]])
    M = np.stack([V[:, 0] / 2, V[:, 0] / 2, V[:, 1]], axis=1)
    target = simplex_pseudo_labels(3) / np.sqrt(3)
    expected = np.linalg.norm(M / np.linalg.norm(M) - target)

    # Exact entries; the SVD and the normalisation add a few u per entry of a 3x3
    # matrix.
    tol = 10 * 3 * EPS
    assert abs(nc3_paper(V, features, labels) - expected) <= tol


def test_nc3_paper_of_head_orthogonal_to_means_raises():
    features = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 1])
    V = np.array([[0.0, 0.0, 1.0]])
    with pytest.raises(MetricUndefined, match="orthogonal to every class mean"):
        nc3_paper(V, features, labels)


def test_nc3_paper_of_zero_means_raises():
    features = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    labels = np.array([0, 0, 1])
    with pytest.raises(MetricUndefined, match="every class mean is zero"):
        nc3_paper(np.ones((1, 2)), features, labels)


def test_nc3_paper_with_wrong_head_shape_raises():
    features = np.eye(3)
    labels = np.array([0, 1, 2])
    with pytest.raises(InvalidArgument, match=r"V is invalid.*\(3, 3\)"):
        nc3_paper(np.ones((1, 3)), features, labels)


# --------------------------------------------------------------------------------
# NC2: paper and standard
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_nc2_standard_of_simplex_etf_means_is_zero(num_classes):
    # Means r Q e~_k + b: a rotated simplex ETF shifted by an arbitrary offset b,
    # with samples on either side of each mean.
    rng = np.random.default_rng(4)
    width = num_classes + 3
    rotation = signed_frame(num_classes, width, rng)
    offset = rng.standard_normal(width)
    means = (2.0 * rotation @ simplex_pseudo_labels(num_classes)).T + offset
    step = rng.standard_normal((num_classes, width))
    features = np.concatenate([means + step, means - step])
    labels = np.tile(np.arange(num_classes), 2)

    # Each centred mean is off by about (2 n_k + K) u R (R the largest feature norm)
    # against its length 2, and the Gram matrix and its normalisation add h u and a
    # factor 2. 10 covers the constants.
    largest = np.linalg.norm(features, axis=1).max()
    tol = 10 * (4 + num_classes + width) * EPS * largest / 2.0
    assert nc2_standard(features, labels) <= tol


@pytest.mark.parametrize("num_classes", [3, 4])
def test_orthonormal_means_have_zero_nc2_of_both_kinds(num_classes):
    # Orthonormal means e_k: G = I for the paper's NC2, and Mc = I - 11^T/K gives
    # Mc^T Mc = I - 11^T/K, the standard ETF target itself.
    features = np.eye(num_classes + 2)[:num_classes]
    labels = np.arange(num_classes)

    # Entries of size 1/K formed with a few roundings each, over K^2 entries.
    tol = 10 * num_classes * EPS
    assert nc2_paper(features, labels) <= tol
    assert nc2_standard(features, labels) <= tol


def test_nc2_of_unequal_orthogonal_means():
    # Means r_k e_k with r = (1, 1, 2): the paper's NC2 ignores lengths and is 0.
    # For the standard NC2, Mc = diag(r) C with C = I - 11^T/3, and
    # A = Mc^T Mc = C diag(r^2) C = [[1, 0, -1], [0, 1, -1], [-1, -1, 2]], so
    # ||A||_F = sqrt(10), <A, C> = Tr(A) = 4 and ||C||_F = sqrt(2). The distance of
    # the two unit matrices is sqrt(2 - 2 * 4 / sqrt(20)) = sqrt(2 - 4/sqrt(5)).
    # Equal norms are needed for 0 once K >= 3.
    features = np.diag([1.0, 1.0, 2.0])
    labels = np.arange(3)
    expected = np.sqrt(2 - 4 / np.sqrt(5))

    # 3x3 matrices of entries up to 2, with a few roundings each; the value 0.46 is
    # far from the cancellation near 0.
    tol = 100 * EPS
    assert nc2_paper(features, labels) <= tol
    assert abs(nc2_standard(features, labels) - expected) <= tol


def test_nc2_standard_of_two_classes():
    # K = 2: Mc = [c, -c] for any two distinct means, so this proves nothing about
    # collapse.
    features = np.array([[3.0, 1.0, 0.5], [-1.0, 2.0, 7.0]])
    labels = np.array([0, 1])
    tol = 10 * EPS
    assert nc2_standard(features, labels) <= tol


def test_nc2_paper_of_zero_class_mean_raises():
    features = np.array([[1.0, 0.0], [1.0, -1.0], [-1.0, 1.0]])
    labels = np.array([0, 1, 1])
    with pytest.raises(MetricUndefined, match="mean of class 1 is zero"):
        nc2_paper(features, labels)


# --------------------------------------------------------------------------------
# Closed forms at the limit of directional collapse
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_kind", ["nonnegative", "signed"])
@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_nc1_limit_matches_nc1_paper_at_limit(num_classes, frame_kind):
    a, labels, _, features, _, _ = limit_case(num_classes, frame_kind, seed=5)
    expected = nc1_paper_limit(a, labels)
    value = nc1_paper(features, labels)

    # Both sides are ratios of sums over n terms, with relative error about
    # (n + h) u each, and the frame is orthonormal to h u (QR). Residuals a_i - m_k
    # carry an absolute error (n_k + 1) u max|a|, so the sums of their squares lose
    # a factor max|a| / std_k(a) in relative accuracy. 20 covers the constants.
    spread = min(np.std(a[labels == k]) for k in range(num_classes))
    tol = 20 * (labels.size + features.shape[1]) * EPS * a.max() / spread
    assert abs(value - expected) <= tol * expected


@pytest.mark.parametrize("frame_kind", ["nonnegative", "signed"])
@pytest.mark.parametrize("num_classes", [2, 3, 4])
def test_nc3_limit_matches_nc3_paper_at_limit(num_classes, frame_kind):
    a, labels, _, features, s, V = limit_case(num_classes, frame_kind, seed=6)
    m = class_mean_lengths(a, labels)
    expected = nc3_paper_limit_empirical(s, m)
    value = nc3_paper(V, features, labels)

    condition = m.max() / m.min()
    tol = nc3_tolerance(features.shape[1], num_classes, labels.size, condition)
    assert abs(value - expected) <= tol


@pytest.mark.parametrize("frame_kind", ["nonnegative", "signed"])
def test_nc3_limit_matches_binary_scalar_head_at_limit(frame_kind):
    # Binary limit head V = s_+ phibar_+^T - s_- phibar_-^T against [1, -1]/sqrt(2).
    a, labels, frame, features, s, _ = limit_case(2, frame_kind, seed=7)
    V = (s[0] * frame[:, 0] - s[1] * frame[:, 1])[None, :]
    m = class_mean_lengths(a, labels)
    expected = nc3_paper_limit_empirical(s, m)
    value = nc3_paper(V, features, labels)

    tol = nc3_tolerance(features.shape[1], 2, labels.size, m.max() / m.min())
    assert abs(value - expected) <= tol


def test_nc3_limit_equals_mean_over_rms_formula():
    # NC3 = sqrt(2 (1 - mean(d)/rms(d))) with d = s/m, since ||e~_k|| = 1.
    s = np.array([0.5, 1.0, 1.5, 0.8])
    m = np.array([1.0, 2.0, 0.7, 1.1])
    d = s / m
    expected = np.sqrt(2 * (1 - d.mean() / np.sqrt(np.mean(d**2))))

    # The formula's 1 - cos loses accuracy to about K u absolute; the square root
    # turns that into K u / value.
    tol = 10 * 4 * EPS / expected
    assert abs(nc3_paper_limit_empirical(s, m) - expected) <= tol


def test_nc3_limit_of_equal_ratios_is_zero():
    s = np.array([0.5, 1.0, 1.5])
    m = 2.0 * s
    # E~ scaled by one factor: a few u per entry of a 3x3 matrix.
    tol = 10 * 3 * EPS
    assert nc3_paper_limit_empirical(s, m) <= tol


def test_nc3_limit_of_zero_class_mean_raises():
    with pytest.raises(MetricUndefined, match=r"m\[1\] is zero"):
        nc3_paper_limit_empirical(np.array([1.0, 1.0]), np.array([1.0, 0.0]))


def test_nc1_limit_of_equal_lengths_is_zero():
    a = np.array([2.0, 2.0, 3.0, 3.0])
    labels = np.array([0, 0, 1, 1])
    assert nc1_paper_limit(a, labels) == 0.0


# --------------------------------------------------------------------------------
# NC1 standard: truncated pseudo-inverse
# --------------------------------------------------------------------------------


def dense_sigmas(features: np.ndarray, labels: np.ndarray, dtype=np.float64):
    """Form Sigma_W and Sigma_B as dense h x h matrices, in ``dtype``."""
    features = features.astype(dtype)
    num_classes = labels.max() + 1
    means = np.stack([features[labels == k].mean(axis=0) for k in range(num_classes)])
    centred = means - means.mean(axis=0)
    between = centred.T @ centred / num_classes
    residuals = features - means[labels]
    within = residuals.T @ residuals / features.shape[0]
    return within, between, centred


def test_nc1_standard_matches_dense_pinv_when_well_conditioned():
    # K = 3, h = 5: means far apart with comparable spread in both directions of
    # their span, Gaussian within-class noise in all five coordinates.
    rng = np.random.default_rng(8)
    means = np.array(
        [
            [3.0, 0.0, 0.0, 1.0, 0.0],
            [0.0, 3.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 3.0, 1.0, 1.0],
        ]
    )
    labels = np.repeat(np.arange(3), 10)
    features = means[labels] + 0.5 * rng.standard_normal((labels.size, 5))
    within, between, _ = dense_sigmas(features, labels)

    # Sigma_B has two eigenvalues within a factor 10 of each other and three
    # roundoff eigenvalues below h u lambda_1 = 6e-16 lambda_1. Any cut-off between
    # them gives the rank-2 pseudo-inverse; 1e-8 is far from both.
    eigenvalues = np.linalg.eigvalsh(between)[::-1]
    assert eigenvalues[1] / eigenvalues[0] >= 0.1
    expected = np.trace(within @ np.linalg.pinv(between, rcond=1e-8)) / 3

    # Both are backward stable: relative error about condition * (n + h) u with
    # condition lambda_1 / lambda_2 <= 10; 10 covers the constants.
    condition = eigenvalues[0] / eigenvalues[1]
    tol = 10 * condition * (labels.size + 5) * EPS
    assert abs(nc1_standard(features, labels) - expected) <= tol * expected


def float32_case():
    """Features exactly representable in float32, with centred means of rank K - 1.

    Means are integers and noise entries are multiples of 1/8 in [-1, 1], so the
    float32 cast is exact and both pipelines see the same numbers.
    """
    rng = np.random.default_rng(0)
    num_classes, width, per_class = 3, 8, 20
    means = rng.integers(-4, 5, size=(num_classes, width)).astype(np.float64)
    labels = np.repeat(np.arange(num_classes), per_class)
    noise = rng.integers(-8, 9, size=(labels.size, width)) / 8.0
    features = (means[labels] + noise).astype(np.float32)
    return features, labels


def projected_nc1_reference(features: np.ndarray, labels: np.ndarray) -> float:
    """Tr(Sigma_W Sigma_B^+)/K from an exact basis Q of the range of Sigma_B.

    ``Sigma_B = Q B Q^T`` with ``B = Q^T Sigma_B Q`` invertible, so
    ``Tr(Sigma_W Sigma_B^+) = Tr(B^-1 Q^T Sigma_W Q)``; ``Q`` comes from a QR of K - 1
    centred means, independent of any eigenvalue cut-off.
    """
    within, between, centred = dense_sigmas(features.astype(np.float64), labels)
    num_classes = centred.shape[0]
    basis, _ = np.linalg.qr(centred[: num_classes - 1].T)
    reduced = basis.T @ between @ basis
    return np.trace(np.linalg.solve(reduced, basis.T @ within @ basis)) / num_classes


def test_nc1_standard_of_float32_features_matches_projected_reference():
    features, labels = float32_case()
    expected = projected_nc1_reference(features, labels)

    # Both sides are float64 computations on the same exact inputs: relative error
    # about condition * (n + h) u, with condition lambda_1/lambda_2 of Sigma_B.
    _, between, _ = dense_sigmas(features.astype(np.float64), labels)
    eigenvalues = np.linalg.eigvalsh(between)[::-1]
    condition = eigenvalues[0] / eigenvalues[1]
    tol = 10 * condition * (labels.size + features.shape[1]) * EPS
    assert abs(nc1_standard(features, labels) - expected) <= tol * expected


def test_float32_default_pinv_overshoots_on_float32_case():
    # The trap the truncation avoids: Sigma_B formed in float32 has roundoff
    # eigenvalues near 1e-7 lambda_1, far above the default relative cut-off 1e-15,
    # and inverting them multiplies Sigma_W's spread outside the range of Sigma_B.
    features, labels = float32_case()
    within, between, _ = dense_sigmas(features, labels, dtype=np.float32)
    naive = np.trace(within @ np.linalg.pinv(between)) / 3
    expected = projected_nc1_reference(features, labels)
    # Roundoff eigenvalues of either sign get inverted, so the error can be negative.
    assert abs(naive - expected) > 1e3 * expected


def test_nc1_standard_of_collinear_means_raises():
    # Three means on one line: Sigma_B has rank 1 < K - 1 = 2.
    features = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    labels = np.arange(3)
    with pytest.raises(MetricUndefined, match="rank below K-1=2"):
        nc1_standard(features, labels)


# --------------------------------------------------------------------------------
# Degenerate classes and labels
# --------------------------------------------------------------------------------


def test_nc1_paper_of_singleton_classes():
    # The mean of one row is that row exactly, so every residual is exactly 0.
    features = np.array([[1.0, 0.3, 0.0], [0.2, 1.0, 0.7], [0.0, 0.1, 2.0]])
    labels = np.array([2, 0, 1])
    assert nc1_paper(features, labels) == 0.0


def test_nc1_paper_of_equal_class_means_raises():
    features = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(MetricUndefined, match="all 2 class means coincide"):
        nc1_paper(features, labels)


def test_nc1_paper_of_roundoff_equal_means():
    # (0.1 + 0.2)/2 and (0.3 + 0.0)/2 differ only through the binary rounding of the
    # decimals, far below the roundoff bound of computing a mean.
    features = np.array([[0.1], [0.2], [0.3], [0.0]])
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(MetricUndefined, match="coincide"):
        nc1_paper(features, labels)


def test_labels_out_of_range_raise_naming_label():
    features = np.eye(3)
    with pytest.raises(InvalidArgument, match=r"labels\[1\]=-1 is invalid"):
        nc1_paper(features, np.array([1, -1, 0]))


def test_labels_above_num_classes_raise_naming_label():
    features = np.eye(3)
    with pytest.raises(InvalidArgument, match=r"labels\[2\]=2 is invalid.*0\.\.1"):
        nc1_paper(features, np.array([0, 1, 2]), num_classes=2)


def test_labels_with_empty_class_raise():
    features = np.eye(3)
    with pytest.raises(InvalidArgument, match="class 1 of 0..2 has no samples"):
        class_means(features, np.array([0, 2, 2]))


def test_float_labels_raise():
    with pytest.raises(InvalidArgument, match="dtype float64"):
        class_means(np.eye(2), np.array([0.0, 1.0]))


def test_class_means_of_two_classes():
    features = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    means = class_means(features, np.array([0, 0, 1]))
    assert np.array_equal(means, np.array([[2.0, 3.0], [5.0, 6.0]]))


# --------------------------------------------------------------------------------
# NC3 standard and NC4
# --------------------------------------------------------------------------------


def test_nc3_standard_of_self_dual_head_is_zero():
    rng = np.random.default_rng(9)
    features = rng.standard_normal((9, 6))
    labels = np.repeat(np.arange(3), 3)
    means = class_means(features, labels)
    V = 3.0 * (means - means.mean(axis=0))
    # Entries of order 1 with a few roundings each over K h entries.
    tol = 10 * 3 * 6 * EPS
    assert nc3_standard(V, features, labels) <= tol


def test_nc3_standard_at_45_degrees():
    # V^T = Mc + N with N orthogonal to Mc and ||N||_F = ||Mc||_F: cosine 1/sqrt(2),
    # so NC3 = sqrt(2 - sqrt(2)).
    features = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 1])
    centred = np.array([[0.5, -0.5], [-0.5, 0.5], [0.0, 0.0]])
    orthogonal = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, -1.0]]) / np.sqrt(2.0)
    V = (centred + orthogonal).T
    expected = np.sqrt(2 - np.sqrt(2))
    tol = 10 * 6 * EPS
    assert abs(nc3_standard(V, features, labels) - expected) <= tol


def test_nc3_standard_of_binary_head():
    features = np.array([[2.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    labels = np.array([0, 0, 1])
    # mu_0 - mu_1 = (1.5, -0.5, -2.5).
    V = np.array([[3.0, -1.0, -5.0]])
    tol = 10 * 3 * EPS
    assert nc3_standard(V, features, labels) <= tol


def ncc_case():
    """Equal-norm means 4 e_k and noise in symmetric pairs, so means are exact.

    Noise entries are multiples of 1/8, so every sum is exact in float64. The first
    pair of class 0 lies closer to the class-1 mean than to its own.
    """
    means = 4.0 * np.eye(3, 5)
    rng = np.random.default_rng(10)
    step = rng.integers(-4, 5, size=(3, 3, 5)) / 8.0
    step[0, 0] = [-2.5, 2.5, 0.0, 0.0, 0.0]
    features = np.concatenate([means[:, None] + step, means[:, None] - step], axis=1)
    labels = np.repeat(np.arange(3), 6)
    return features.reshape(-1, 5), labels, means


def test_nc4_of_head_equal_to_means_is_one():
    # Equal mean norms: argmin ||phi - mu_k||^2 = argmax <phi, mu_k>, so V = means
    # is the nearest-class-mean rule.
    features, labels, means = ncc_case()
    assert nc4_ncc_agreement(means, features, labels) == 1.0


def test_nc4_of_swapped_head_counts_disagreements():
    # Swapping rows 0 and 1 of V changes the prediction on every sample whose
    # nearest mean is 0 or 1, and on no other.
    features, labels, means = ncc_case()
    V = means[[1, 0, 2]]
    distances = ((features[:, None, :] - means[None]) ** 2).sum(axis=2)
    nearest = np.argmin(distances, axis=1)
    expected = np.mean(nearest == 2)
    assert nc4_ncc_agreement(V, features, labels) == expected


def test_nc4_of_binary_scalar_head():
    features, labels, means = ncc_case()
    binary = labels < 2
    V = (means[0] - means[1])[None, :]
    assert nc4_ncc_agreement(V, features[binary], labels[binary]) == 1.0


# --------------------------------------------------------------------------------
# Activation pattern and summary
# --------------------------------------------------------------------------------


def test_activation_pattern_counts_zero_pre_activation_as_inactive():
    W = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, 1.0]])
    X = np.array([[1.0, -1.0], [2.0, 0.0]])
    # Pre-activations X @ W = [[0, -2, -1], [2, -2, 0]].
    expected = np.array([[False, False, False], [True, False, False]])
    assert np.array_equal(activation_pattern(W, X), expected)


def test_activation_pattern_with_mismatched_shapes_raises():
    with pytest.raises(InvalidArgument, match="X is invalid"):
        activation_pattern(np.ones((3, 2)), np.ones((4, 2)))


def test_nc_summary_of_multiclass_case_has_all_keys():
    features, labels, V, _ = orthogonal_frame_case(3, seed=11)
    summary = nc_summary(V, features, labels)
    expected_keys = {
        "nc1",
        "nc2",
        "nc3",
        "nc3_printed",
        "nc1_standard",
        "nc2_standard",
        "nc3_standard",
        "nc4",
        "rank_ratio_max",
        "undefined",
    }
    assert set(summary) == expected_keys
    assert summary["undefined"] == {}
    assert summary["nc3"] == nc3_paper(V, features, labels)


def test_nc_summary_of_binary_case_omits_printed_target():
    features, labels, V, _ = orthogonal_frame_case(2, seed=12)
    summary = nc_summary(V, features, labels)
    assert "nc3_printed" not in summary
    assert "nc3" in summary


def test_nc_summary_lists_undefined_metrics_with_reasons():
    # Equal class means: every metric that divides by the between-class spread is
    # undefined, while the paper's NC2, NC3 and NC4 still exist.
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    labels = np.array([0, 0, 1, 1])
    V = np.array([[1.0, 0.0], [0.0, 1.0]])
    summary = nc_summary(V, features, labels)
    undefined = summary["undefined"]
    assert set(undefined) == {"nc1", "nc1_standard", "nc2_standard", "nc3_standard"}
    assert "coincide" in undefined["nc1"]
    assert "nc1" not in summary
    assert "nc2" in summary


@pytest.mark.parametrize("power", [-700, -500, 500, 700])
def test_metrics_ignore_the_feature_scale(power):
    # Every metric of the summary is scale-free. Scaled by a power of two the
    # features carry no new rounding, so the values must agree exactly, also
    # where their squares would underflow or overflow float64.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    features = np.abs(rng.normal(size=(12, 5))) + 3 * np.repeat(np.eye(3, 5), 4, 0)
    V = rng.normal(size=(3, 5))
    plain = nc_summary(V, features, labels)
    scaled = nc_summary(V, np.ldexp(features, power), labels)
    assert plain["undefined"] == {}
    assert scaled == plain
