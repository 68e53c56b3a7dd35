"""Checks of the errata: exact bounds that correct statements of the paper.

The paper is Min, Zhu and Vidal (NeurIPS 2025), "Neural Collapse under Gradient
Flow on Shallow ReLU Networks for Orthogonally Separable Data". The three
statements below are our derivations.

| symbol | code | shape | meaning |
|---|---|---|---|
| ``mu_d`` | ``mu_d`` | scalar | A1 cross-class margin, ``cos(x_i, x_j) <= -mu_d`` |
| ``K`` | ``K`` | int | number of classes |
| ``E~`` | ``pseudo_labels(K)`` | ``(K, K)`` | ``sqrt(K/(K-1)) (I - 11^T/K)`` |
| ``omega_w`` | ``omega_w`` | ``(D, h)`` | angular velocity of each ``w_j/||w_j||`` |
| ``omega_v`` | ``omega_v`` | ``(d_y, h)`` | angular velocity of each ``v_j/||v_j||`` |
| ``xi_i`` | ``active[i, j]`` | bool | ``1[<x_i, w_j> > 0]`` |
| ``T`` | ``T`` | scalar | ``log(1/(sqrt(h) eps)) / (4 n X_max)`` |

- E1: a ``K``-class dataset that meets A1 has ``mu_d <= 1/(K-1)``: the sum of one
  unit vector per class has squared norm at most ``K - K(K-1) mu_d``, and it is
  not negative. The paper states ``1/sqrt(K-1)``.
- E2: the printed NC3 target ``E~/sqrt(K-1)`` has Frobenius norm ``sqrt(K/(K-1))``,
  so the printed NC3 of a unit-norm ``M/||M||_F`` is never below
  ``sqrt(K/(K-1)) - 1``. With the consistent target ``E~/sqrt(K)`` NC3 reaches 0
  at the limit, where the printed value equals that floor.
- E3: Lemma 3 bounds the difference between the angular velocities of every
  neuron and those of the ``eps = 0`` dynamics by
  ``(16/sqrt(K)) eps n X_max^2 sqrt(h)`` up to ``T``, with the square on
  ``X_max`` as the proof gives. The ``eps = 0`` dynamics use the loss gradient
  at ``f = 0``: ``sqrt((K-1)/K) e~_k`` for the cross-entropy and ``y`` for the
  binary losses (the factor 2 of the logistic loss gives it that gradient), so
  a logistic loss without its factor 2 moves at half the predicted speed.
"""

from __future__ import annotations

import math

import numpy as np

from ncflow import metrics
from ncflow.data import Dataset
from ncflow.geometry import pseudo_labels
from ncflow.network import Parameters
from theory_checks import multiclass
from theory_checks import tolerances as tol
from theory_checks.common import (
    Quantity,
    class_rays,
    combine,
    early_run,
    first_unverified,
    refine_eps,
    separated_run,
)
from theory_checks.hypotheses import check_a1, check_a2, early_time_T
from theory_checks.limits import predict
from theory_checks.runs import Example, RunSettings
from theory_checks.verdict import HypothesisReport, Verdict, inconclusive

STATEMENTS = {
    "E1": "mu_d <= 1/(K-1) under A1 (the paper states 1/sqrt(K-1))",
    "E2": "printed NC3 target never below sqrt(K/(K-1)) - 1; consistent one reaches 0",
    "E3": "Lemma 3 bound (16/sqrt(K)) eps n X_max^2 sqrt(h) on angular velocities",
}
CLAIMS = tuple(STATEMENTS)


def e1_bound(K: int) -> float:
    """Return the exact bound ``1/(K-1)`` of E1."""
    return 1.0 / (K - 1)


def printed_bound(K: int) -> float:
    """Return the paper's bound ``1/sqrt(K-1)`` on ``mu_d``."""
    return 1.0 / math.sqrt(K - 1)


def nc3_printed_floor(K: int) -> float:
    """Return ``sqrt(K/(K-1)) - 1``, the lowest value of the printed NC3 (E2)."""
    return math.sqrt(K / (K - 1)) - 1.0


def lemma3_bound(eps: float, n: int, x_max: float, width: int, K: int) -> float:
    """Return ``(16/sqrt(K)) eps n X_max^2 sqrt(h)``, the E3 form of Lemma 3."""
    return 16.0 / math.sqrt(K) * eps * n * x_max**2 * math.sqrt(width)


def check(
    claim: str,
    example: Example,
    settings: RunSettings | None = None,
    *,
    require_hypotheses: bool = True,
) -> Verdict:
    """Return the verdict of one erratum on one example.

    E1 needs A1 only and no run. E2 needs what the limit claims need (A1, A2, A4,
    A5) and a multi-class example. E3 needs A2 and ``eps <= 1/(16 X_max sqrt(h))``
    and takes binary and multi-class examples.
    """
    if claim not in STATEMENTS:
        raise ValueError(f"claim={claim!r} is not an erratum; use one of {CLAIMS}")
    settings = settings or RunSettings()
    if claim == "E1":
        return check_e1(example.dataset)
    if claim == "E2":
        if example.binary:
            raise ValueError(
                f"E2 is about K >= 3 outputs; example {example.label!r} has the "
                f"scalar-output loss {example.loss!r}"
            )
        return _check_e2(example, settings, require_hypotheses)
    return _check_e3(example, settings, require_hypotheses)


# -- E1 ----------------------------------------------------------------------------


def check_e1(dataset: Dataset) -> Verdict:
    """Check E1 on one dataset: the measured ``mu_d`` against ``1/(K-1)``.

    The tolerance is the float64 error of one computed cosine: a ``D``-term inner
    product and two norms, ``(D + 2) eps`` relative, on a value of at most 1.
    """
    report = check_a1(dataset)
    if not report.holds:
        return inconclusive(
            "E1", f"hypothesis A1 not verified: {report.message}", hypotheses=[report]
        )
    K = dataset.K
    mu_d = float(report.measured["mu_d"])
    witness = _unit_sum_norm2(dataset)
    quantities = [
        Quantity(
            "mu_d",
            mu_d,
            e1_bound(K),
            tol.tolerance(tol.roundoff(dataset.D + 2, 1.0, "one cosine")),
            kind="at_most",
            details={"printed_bound": printed_bound(K)},
        ),
        # The argument itself: ||sum_k x_k/||x_k|| ||^2 <= K - K(K-1) mu_d, and
        # it is >= 0; a K-term sum of unit vectors and K^2 cosines.
        Quantity(
            "||sum of one unit sample per class||^2 - (K - K(K-1) mu_d)",
            witness - (K - K * (K - 1) * mu_d),
            0.0,
            tol.tolerance(tol.roundoff(K * K * (dataset.D + 2), 1.0, "K^2 cosines")),
            kind="at_most",
        ),
    ]
    return combine(
        "E1",
        f"cross-class margin against 1/(K-1) = {e1_bound(K):.6g} (printed "
        f"1/sqrt(K-1) = {printed_bound(K):.6g})",
        quantities,
        None,
        [report],
    )


def _unit_sum_norm2(dataset: Dataset) -> float:
    """Return ``||sum_k x_{i_k}/||x_{i_k}|| ||^2``, first sample of each class."""
    unit = dataset.X / np.linalg.norm(dataset.X, axis=1, keepdims=True)
    first = [int(members[0]) for members in dataset.class_indices]
    return float(np.sum(unit[first].sum(axis=0) ** 2))


# -- E2 ----------------------------------------------------------------------------


def _check_e2(example: Example, settings: RunSettings, require: bool) -> Verdict:
    def once(ex: Example, st: RunSettings) -> Verdict:
        reports = multiclass.hypotheses(ex, "C12")
        missing = first_unverified(reports)
        if missing is not None and require:
            return inconclusive(
                "E2",
                f"hypothesis {missing.name} not verified: {missing.message}",
                hypotheses=reports,
            )
        return check_e2(ex, st, reports)

    return refine_eps(once, example, settings, unquantified=True)


def check_e2(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check E2 at ``theta_bar``: the printed and the consistent NC3, with class
    means ``s_k phibar_k``.

    The printed value is a distance from a unit-norm matrix to one of norm
    ``sqrt(K/(K-1))``, so it is at least their difference in any state (the
    roundoff of normalising a ``K x K`` matrix is the only allowance); at the
    limit it equals that floor, and the consistent value is 0.
    """
    found, verdict = separated_run("E2", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    limit = predict(example.dataset, multiclass=True, faults=example.faults)
    K = limit.K
    classes = np.arange(K)
    floor = nc3_printed_floor(K)

    def measure(theta: Parameters) -> dict:
        _, ray = class_rays(example, theta)
        means = limit.s[:, None] * ray
        return {
            "NC3, printed target": metrics.nc3_paper(
                theta.V, means, classes, K, target="printed"
            ),
            "NC3, consistent target": metrics.nc3_paper(
                theta.V, means, classes, K, target="consistent"
            ),
        }

    end = measure(points.end)
    quantities = [
        Quantity(
            "NC3, printed target, against its floor",
            end["NC3, printed target"],
            floor,
            tol.tolerance(tol.roundoff(4 * K * K, 1.0, "a normalised K x K matrix")),
            kind="at_least",
        )
    ]
    quantities += multiclass._limit_quantities(
        run,
        points,
        measure,
        {"NC3, printed target": floor, "NC3, consistent target": 0.0},
        roundoff=(example.dataset.n * example.shapes.width, 1.0),
    )
    return combine(
        "E2",
        f"NC3 targets at theta_bar (printed floor sqrt(K/(K-1)) - 1 = {floor:.6g})",
        quantities,
        run,
        reports,
    )


# -- E3 ----------------------------------------------------------------------------


def _check_e3(example: Example, settings: RunSettings, require: bool) -> Verdict:
    if example.balanced:
        reports = [check_a2(example.shapes, example.eps)]
    else:
        reports = [
            HypothesisReport("A2", False, {}, "the initialisation is not balanced")
        ]
    missing = first_unverified(reports)
    if missing is not None and require:
        return inconclusive(
            "E3",
            f"hypothesis {missing.name} not verified: {missing.message}",
            hypotheses=reports,
        )
    return check_e3(example, settings, reports)


def check_e3(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check E3 along the early phase: the largest difference between each
    neuron's angular velocities and those of the ``eps = 0`` dynamics, up to ``T``.

    Lemma 3 needs ``eps <= 1/(16 X_max sqrt(h))``; above it the verdict is
    INCONCLUSIVE.
    """
    dataset, h = example.dataset, example.shapes.width
    x_max = float(np.max(np.linalg.norm(dataset.X, axis=1)))
    bound_eps = 1.0 / (16.0 * x_max * math.sqrt(h))
    if example.eps > bound_eps:
        return inconclusive(
            "E3",
            f"eps={example.eps:.3g} is above the bound 1/(16 X_max sqrt(h)) = "
            f"{bound_eps:.3g} of Lemma 3",
            hypotheses=reports,
        )
    T = early_time_T(dataset, h, example.eps)
    problem = example.problem()
    result = early_run(example, settings, T, records=8)
    if not result.success:
        return inconclusive(
            "E3", f"integrator failed before T: {result.message}", hypotheses=reports
        )

    trajectory = result.trajectory
    K = dataset.K
    worst, where = 0.0, ""
    for r in range(len(trajectory)):
        W, V = trajectory.W[r], trajectory.V[r]
        difference = velocity_difference(example, problem, W, V)
        j = int(np.argmax(difference))
        if difference[j] > worst:
            worst, where = float(difference[j]), f"neuron {j} at record {r}"
    bound = lemma3_bound(example.eps, dataset.n, x_max, h, K)
    printed = 16.0 / math.sqrt(K) * example.eps * dataset.n * x_max * math.sqrt(h)
    # A state with relative error delta moves a velocity (at most
    # n X_max max||g_i|| <= 2 n X_max) by about delta times that; delta per step
    # is atol + rtol on each component of a neuron's direction.
    steps = result.n_accepted + len(result.activation_events)
    scale = 2.0 * dataset.n * x_max
    quantity = Quantity(
        "max_t,j ||angular velocity - eps = 0 dynamics|| (w and v parts)",
        worst,
        bound,
        tol.tolerance(
            tol.integrator_steps(
                steps,
                (settings.atol + settings.rtol) * scale,
                "velocity of a state with relative error atol + rtol",
            ),
            tol.roundoff(dataset.n * (dataset.D + h + K), scale, "n-term velocities"),
        ),
        kind="at_most",
        details={"where": where, "printed_bound_with_X_max": printed},
    )
    return combine(
        "E3",
        f"Lemma 3 up to T = {T:.4g}, bound (16/sqrt(K)) eps n X_max^2 sqrt(h) = "
        f"{bound:.4g} (printed with X_max: {printed:.4g})",
        [quantity],
        None,
        reports,
    )


def velocity_difference(example: Example, problem, W: np.ndarray, V: np.ndarray):
    """Return, per neuron, the larger of ``||omega_w - omega_w^0||`` and
    ``||omega_v - omega_v^0||``, shape (h,).

    ``omega_w = P_w(dw/dt)/||w||`` and ``omega_v = P_v(dv/dt)/||v||`` come from the
    example's own loss gradient ``g_i = -dl_i/df_i``; ``omega^0`` replaces ``g_i`` by
    its value at ``f = 0`` that the theory predicts, as in Lemma 3.
    """
    from ncflow.losses import loss_terms

    X = problem.X
    Z = X @ W
    active = Z > 0
    phi = Z * active
    terms = loss_terms(phi @ V.T, problem.targets, problem.loss)
    G = terms.gradients()  # (n, d_y)
    G0 = _gradient_at_zero(example)  # (n, d_y)
    w_norm = np.linalg.norm(W, axis=0)
    v_norm = np.linalg.norm(V, axis=0)
    w_unit = W / w_norm
    v_unit = V / v_norm

    def project(u: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return vectors - u * np.sum(u * vectors, axis=0)

    # dw_j/dt = sum_i xi_ij <g_i, v_j> x_i and dv_j/dt = sum_i xi_ij <x_i, w_j> g_i.
    dW = X.T @ (active * (G @ V))
    dV = G.T @ phi
    omega_w = project(w_unit, dW) / w_norm
    omega_v = project(v_unit, dV) / v_norm
    # The same formulas with g_i at f = 0. Lemma 3 writes them with the unit
    # vectors, which is the same under balance; keeping the measured norms
    # leaves the integrator's drift of ||v_j|| / ||w_j|| (C1 measures it) out
    # of the difference.
    omega_w0 = project(w_unit, X.T @ (active * (G0 @ V))) / w_norm
    omega_v0 = project(v_unit, G0.T @ phi) / v_norm
    return np.maximum(
        np.linalg.norm(omega_w - omega_w0, axis=0),
        np.linalg.norm(omega_v - omega_v0, axis=0),
    )


def _gradient_at_zero(example: Example) -> np.ndarray:
    """Return ``g_i`` at ``f = 0`` as the theory predicts it.

    It is ``y_i`` for the binary losses (exponential, and logistic with its factor
    2) and ``sqrt((K-1)/K) e~_{y_i} = e_{y_i} - 1/K`` for the cross-entropy.
    """
    dataset = example.dataset
    if example.binary:
        return dataset.signs[:, None].astype(np.float64)
    K = dataset.K
    return math.sqrt((K - 1) / K) * pseudo_labels(K)[:, dataset.labels].T


__all__ = [
    "CLAIMS",
    "STATEMENTS",
    "check",
    "check_e1",
    "check_e2",
    "check_e3",
    "e1_bound",
    "lemma3_bound",
    "nc3_printed_floor",
    "printed_bound",
    "velocity_difference",
]
