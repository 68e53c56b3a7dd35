"""Checks of Theorem 1 for binary problems (scalar output, exponential or logistic).

| symbol | code | shape | meaning |
|---|---|---|---|
| ``theta_bar`` | ``points.end`` | ``(W, V)`` | ``theta / ||theta||_F`` at the end |
| ``R`` | ``points.R`` | scalar | ``||theta||_F^2`` there |
| ``phi_i`` | ``phi[i]`` | ``(h,)`` | features ``relu(W_bar^T x_i)`` |
| ``phibar_k`` | ``ray[k]`` | ``(h,)`` | unit class-mean feature direction |
| ``N_+``, ``N_-`` | ``groups == k`` | | neurons by the sign of ``v_j0`` |
| ``a_i`` | ``lengths[i]`` | scalar | predicted feature length ``<s_k u_k, x_i>`` |
| ``y_k`` | ``limit.class_signs[k]`` | ``+-1`` | label sign of class ``k`` |

The hypotheses are A1 (orthogonal separability with margins), A2 (small
balanced initialisation) and A3 (non-degenerate shapes); ``eps`` is not
quantified by the binary theorem, so a failure is repeated at smaller ``eps``
before it is reported (``common.refine_eps``). C3 is stated for ``K > 2``;
here it is an exploration.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ncflow.flow import separation_report
from ncflow.network import Parameters
from theory_checks import tolerances as tol
from theory_checks.common import (
    Quantity,
    add_resolution_terms,
    alive_neurons,
    block_quantities,
    class_rays,
    collapse_quantities,
    combine,
    direction_change_integrator,
    early_run,
    features,
    first_unverified,
    frame_quantity,
    length_sensitivities,
    limit_quantities,
    rate_quantities,
    refine_eps,
    refine_norm,
    run_or_reason,
    separated_run,
    unresolved_direction_part,
)
from theory_checks.hypotheses import (
    check_a1,
    check_a2,
    check_a3,
    early_time_T,
    eps_bound_c3,
)
from theory_checks.limits import Limit, predict
from theory_checks.runs import Example, Run, RunSettings, train
from theory_checks.verdict import Verdict, inconclusive

STATEMENTS = {
    "C1": "||w_j||^2 - ||v_j||^2 constant",
    "C2": "sign of v_j never changes",
    "C3": "early phase: small norms and outputs up to T",
    "C4": "finite separation time T*, separation kept",
    "C5": "cross-class features exactly orthogonal after T*",
    "C6": "theta/||theta|| converges",
    "C7": "features of a class on one ray, lengths <s_k u_k, x_i>",
    "C8": "class-mean directions orthogonal",
    "C9": "V_bar = s_+ phibar_+^T - s_- phibar_-^T",
    "C10": "blocks s_k u_k g_k^T, norms s_k, dead neurons vanish",
    "C11": "equal normalised margins 1/(2 sum 1/gamma_k)",
    "C12": "NC metrics at theta_bar take their closed forms",
    "C13": "||theta||^2 ~ log t and L ~ 1/(t log t)",
}
CLAIMS = tuple(STATEMENTS)
# Claims whose hypotheses leave eps unquantified: FAIL only after refinement.
UNQUANTIFIED_EPS = ("C4", "C5", "C6", "C7", "C8", "C9", "C10", "C11", "C12", "C13")
# C3 is an exploration for K = 2.
EXPLORATIONS = ("C3",)
# Claims about the limit theta_bar, checked at a finite ||theta||^2: FAIL only
# after the run is repeated at larger ||theta||^2 (common.refine_norm).
LIMIT_CLAIMS = ("C6", "C7", "C8", "C9", "C10", "C11", "C12", "C13")


def hypotheses(example: Example, claim: str) -> list:
    """The hypothesis reports a claim needs (C1: none; C2, C3: A2; others A1-A3)."""
    if claim == "C1":
        return []
    reports = [check_a2(example.shapes, example.eps)] if example.balanced else []
    if not example.balanced:
        from theory_checks.verdict import HypothesisReport

        reports = [
            HypothesisReport("A2", False, {}, "the initialisation is not balanced")
        ]
    if claim in ("C2", "C3"):
        return reports
    return [
        check_a1(example.dataset),
        *reports,
        check_a3(example.dataset, example.shapes),
    ]


def check(
    claim: str,
    example: Example,
    settings: RunSettings | None = None,
    *,
    require_hypotheses: bool = True,
) -> Verdict:
    """Verdict of one binary claim on one example (with the eps refinement).

    ``require_hypotheses=False`` measures the claim even where a hypothesis
    fails (the explorations do this, outside the theorem); the verdict then
    still lists the hypothesis reports, and its ``details["outside"]`` names
    the failed ones.
    """
    if claim not in STATEMENTS:
        raise ValueError(f"claim={claim!r} is not a binary claim; use one of {CLAIMS}")
    settings = settings or RunSettings()
    function = _CHECKS[claim]

    def once(ex: Example, st: RunSettings) -> Verdict:
        reports = hypotheses(ex, claim)
        missing = first_unverified(reports)
        if missing is not None and not require_hypotheses:
            verdict = function(ex, st, reports)
            verdict.details["outside"] = [r.name for r in reports if not r.holds]
            return verdict
        if missing is not None:
            return inconclusive(
                claim,
                f"hypothesis {missing.name} not verified: {missing.message}",
                hypotheses=reports,
            )
        verdict = function(ex, st, reports)
        if claim in EXPLORATIONS:
            verdict.details["exploration"] = True
        return verdict

    def at_larger_norm(ex: Example, st: RunSettings) -> Verdict:
        if claim in LIMIT_CLAIMS:
            return refine_norm(once, ex, st)
        return once(ex, st)

    return refine_eps(
        at_larger_norm, example, settings, unquantified=claim in UNQUANTIFIED_EPS
    )


# -- invariants ------------------------------------------------------------------


def _per_step_bound(run: Run) -> float:
    """Local error bound per step on a relative quantity of one neuron.

    The direction ``omega_j`` has error <= atol + rtol per component, so
    ``(||a||^2 - ||b||^2) / ||omega||^2`` moves by at most
    ``2 sqrt(B) (atol + rtol)`` per step.
    """
    settings = run.result.settings
    if run.result.method != "adaptive":
        return 0.0
    block = 1 + run.problem.D + run.problem.num_outputs
    return 2 * math.sqrt(block) * (settings["atol"] + settings["rtol"])


def check_c1(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C1: ``||w_j||^2 - ||v_j||^2`` keeps its value of ``t = 0``.

    Measures the largest drift of that difference over the neurons and the
    trajectory records, relative to ``||theta_j(t)||^2``. The tolerance is the
    adaptive run's per-step bound summed over its steps, plus roundoff.
    """
    run = train(example, settings)
    trajectory = run.result.trajectory
    W0, V0 = run.result.params0.W, run.result.params0.V
    start = np.sum(W0**2, axis=0) - np.sum(V0**2, axis=0)
    w2 = np.sum(trajectory.W**2, axis=1)
    v2 = np.sum(trajectory.V**2, axis=1)
    deviation = np.abs(w2 - v2 - start[None, :]) / (w2 + v2)
    record, neuron = np.unravel_index(int(np.argmax(deviation)), deviation.shape)
    steps = run.result.n_accepted + len(run.result.activation_events)
    integrator = tol.integrator_steps(steps, _per_step_bound(run), "relative balance")
    if run.result.method != "adaptive":
        integrator = tol.ToleranceTerm(
            "integrator", 0.0, "fixed-step run: no error control, no allowance"
        )
    quantity = Quantity(
        "max_j |Delta_j(t) - Delta_j(0)| / ||theta_j(t)||^2",
        float(deviation.max()),
        0.0,
        tol.tolerance(integrator, tol.roundoff(4 * (run.problem.D + 1), 1.0, "norms")),
        details={"record": int(record), "neuron": int(neuron)},
    )
    verdict = combine(
        "C1", "balance ||w_j||^2 - ||v_j||^2 along the run", [quantity], run, reports
    )
    verdict.worst = f"neuron {int(neuron)} at record {int(record)}"
    return verdict


def check_c2(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C2: ``sign(v_j)`` never changes.

    Measures ``min_j,t sign(v_j0) v_j(t) / ||theta_j(t)||`` over the records,
    which must stay at or above 0 within the integrator and roundoff parts.
    """
    run = train(example, settings)
    trajectory = run.result.trajectory
    signs = np.sign(run.result.params0.V[0])
    norms = np.sqrt(np.sum(trajectory.W**2, axis=1) + np.sum(trajectory.V**2, axis=1))
    aligned = signs[None, :] * trajectory.V[:, 0, :] / norms
    record, neuron = np.unravel_index(int(np.argmin(aligned)), aligned.shape)
    steps = run.result.n_accepted + len(run.result.activation_events)
    integrator = tol.integrator_steps(steps, _per_step_bound(run), "v_j / ||theta_j||")
    if run.result.method != "adaptive":
        integrator = tol.ToleranceTerm(
            "integrator", 0.0, "fixed-step run: no error control, no allowance"
        )
    quantity = Quantity(
        "min_j,t sign(v_j0) v_j(t) / ||theta_j(t)||",
        float(aligned.min()),
        0.0,
        tol.tolerance(integrator, tol.roundoff(4, 1.0, "one division")),
        kind="at_least",
    )
    verdict = combine("C2", "sign of every v_j along the run", [quantity], run, reports)
    verdict.worst = f"neuron {int(neuron)} at record {int(record)}"
    return verdict


def check_c3(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C3 (an exploration for two classes): small norms and outputs up to ``T``.

    Integrates to the early time ``T`` and measures ``max ||w_j||^2`` against
    ``eps / sqrt(h)`` and the largest output against ``2 eps X_max sqrt(h)``.
    INCONCLUSIVE where ``eps`` is above the bound the claim assumes.
    """
    dataset, h = example.dataset, example.shapes.width
    bound = eps_bound_c3(dataset, h)
    if example.eps > bound:
        return inconclusive(
            "C3",
            f"eps={example.eps:.3g} is above the bound sqrt(K)/(16 X_max sqrt(h)) = "
            f"{bound:.3g} that the claim assumes",
            hypotheses=reports,
        )
    T = early_time_T(dataset, h, example.eps)
    result = early_run(example, settings, T)
    if not result.success:
        return inconclusive(
            "C3", f"integrator failed before T: {result.message}", hypotheses=reports
        )
    trajectory = result.trajectory
    x_max = float(np.max(np.linalg.norm(dataset.X, axis=1)))
    norm_bound = example.eps / math.sqrt(h)
    output_bound = 2 * example.eps * x_max * math.sqrt(h)
    w2 = np.sum(trajectory.W**2, axis=1).max(axis=1)
    outputs = np.stack(
        [
            np.abs(features(example, dataset.X, W) @ V.T).max()
            for W, V in zip(trajectory.W, trajectory.V)
        ]
    )
    rtol = settings.rtol
    quantities = [
        Quantity(
            "max_t,j ||w_j(t)||^2 / (eps / sqrt(h))",
            float(w2.max() / norm_bound),
            1.0,
            tol.tolerance(
                tol.integrator_steps(
                    result.n_accepted, 2 * (settings.atol + rtol), "relative norm"
                ),
                tol.roundoff(example.dataset.D + 1, 1.0, "norms"),
            ),
            kind="at_most",
        ),
        Quantity(
            "max_t,i |f(x_i; theta(t))| / (2 eps X_max sqrt(h))",
            float(outputs.max() / output_bound),
            1.0,
            tol.tolerance(
                tol.integrator_steps(
                    result.n_accepted, 4 * (settings.atol + rtol), "relative output"
                ),
                tol.roundoff(dataset.D + h, 1.0, "outputs"),
            ),
            kind="at_most",
        ),
    ]
    return combine(
        "C3",
        f"early phase up to T = {T:.4g}",
        quantities,
        None,
        reports,
        details={"T": T, "records": len(trajectory)},
    )


# -- separation -----------------------------------------------------------------


def check_c4(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C4: the pattern separates at a finite ``T*`` and stays separated.

    Counts whether the final pattern is separated, how many activation changes
    after ``T*`` leave separation, and how far a neuron moves once it is
    inactive on every sample (``relu'(0) = 0`` keeps it still).
    """
    run, reason = run_or_reason(example, settings)
    if reason:
        return inconclusive(
            "C4", reason, hypotheses=reports, integrator=run.integrator_summary()
        )
    result, problem = run.result, run.problem
    K = problem.num_classes
    trajectory = result.trajectory
    separated_end, why = separation_report(
        result.pattern, problem.labels, run.groups, K
    )

    # After T*, no activation change may leave the separated pattern.
    left = 0
    first_left = ""
    if result.separation_log_t is not None:
        after = (trajectory.kind == "event") & (
            trajectory.log_t > result.separation_log_t
        )
        for index in np.flatnonzero(after):
            ok, text = separation_report(
                trajectory.patterns[index], problem.labels, run.groups, K
            )
            if not ok:
                left += 1
                first_left = (
                    first_left or f"at log t = {trajectory.log_t[index]:.6g}: {text}"
                )

    # A neuron inactive on every sample does not move (relu'(0) = 0).
    movement, moved = _dead_neuron_movement(example, run)
    steps = result.n_accepted + len(result.activation_events)
    quantities = [
        Quantity(
            "separated at the end (1 = yes)",
            1.0 if separated_end else 0.0,
            1.0,
            tol.tolerance(),
            details={"reason": why},
        ),
        Quantity(
            "activation changes that leave separation after T*",
            float(left),
            0.0,
            tol.tolerance(),
            details={"first": first_left},
        ),
        Quantity(
            "max relative movement of a neuron after it is inactive on every sample",
            movement,
            0.0,
            tol.tolerance(
                tol.integrator_steps(
                    steps,
                    2 * (settings.atol + settings.rtol),
                    "relative weights of a static neuron",
                ),
                tol.roundoff(4, 1.0, "one difference"),
            ),
            details={"neuron": moved},
        ),
    ]
    verdict = combine(
        "C4",
        "separation of the activation pattern",
        quantities,
        run,
        reports,
        details={"separation_log_t": result.separation_log_t},
    )
    return verdict


def _dead_neuron_movement(example: Example, run: Run) -> tuple[float, int | None]:
    """Return the largest relative change of a neuron between the first record
    from which it is dead and the end, and that neuron.

    A neuron is dead at a record where all of its pre-activations are <= 0, if it
    is the first record or if no later record has a positive one. A neuron that
    the flow carries onto the boundary of its last active sample has no gradient
    there (relu'(0) = 0), but it arrives with a nonzero velocity. Where the field
    on the other side points away from the boundary (antipodal samples of two
    classes, for example), the flow goes on through it, as the Filippov solution
    does, and the neuron grows again. Such a record is no sign of a dead neuron.
    """
    trajectory = run.result.trajectory
    X = run.problem.X
    worst, where = 0.0, None
    for j in range(trajectory.W.shape[2]):
        pre = np.einsum("nd,rd->rn", X, trajectory.W[:, :, j])
        positive = np.any(pre > 0, axis=1)
        # positive_later[r]: a record after r has a positive pre-activation.
        positive_later = np.append(np.cumsum(positive[::-1])[::-1][1:], 0) > 0
        stays = ~positive_later
        stays[0] = True
        dead = np.flatnonzero(~positive & stays)
        if dead.size == 0:
            continue
        first = dead[0]
        before = np.concatenate([trajectory.W[first, :, j], trajectory.V[first, :, j]])
        after = np.concatenate([trajectory.W[-1, :, j], trajectory.V[-1, :, j]])
        change = float(np.linalg.norm(after - before) / np.linalg.norm(before))
        if change > worst:
            worst, where = change, j
    return worst, where


def check_c5(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C5: features of different classes are orthogonal after ``T*``.

    Measures the largest ``|cos(phi_i, phi_j)|`` over cross-class pairs and the
    records from ``T*`` on, against 0 within roundoff.
    """
    found, verdict = separated_run("C5", example, settings, reports)
    if verdict is not None:
        return verdict
    run, _ = found
    result, X, labels = run.result, run.problem.X, run.problem.labels
    trajectory = result.trajectory
    cross = labels[:, None] != labels[None, :]
    worst, where = 0.0, -1
    for index in np.flatnonzero(trajectory.log_t >= result.separation_log_t):
        phi = features(example, X, trajectory.W[index])
        norms = np.linalg.norm(phi, axis=1)
        gram = phi @ phi.T
        scale = np.outer(norms, norms)
        cosine = np.where(
            scale > 0, np.abs(gram) / np.where(scale > 0, scale, 1.0), 0.0
        )
        value = float(np.max(np.where(cross, cosine, 0.0)))
        if value > worst:
            worst, where = value, int(index)
    quantity = Quantity(
        "max |cos(phi_i, phi_j)| over cross-class pairs and records after T*",
        worst,
        0.0,
        tol.tolerance(
            tol.roundoff(
                run.problem.D + example.shapes.width, 1.0, "features and cosines"
            )
        ),
    )
    return combine(
        "C5",
        "exact orthogonality of cross-class features",
        [quantity],
        run,
        reports,
        details={"record": where},
    )


# -- limit claims -----------------------------------------------------------------


def _limit(example: Example) -> Limit:
    return predict(example.dataset, multiclass=False, faults=example.faults)


def _quantities_of(run: Run, points) -> Callable:
    """``limit_quantities`` bound to this run and its limit points."""

    def quantities_of(measure, predictions, **options) -> list:
        return limit_quantities(points, measure, predictions, run=run, **options)

    return quantities_of


def check_c6(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C6: ``theta/||theta||`` converges.

    Compares the change of the direction over the last interval of
    ``||theta||^2``, ``||theta_bar(R) - theta_bar(R/r)||``, with the change over
    the interval before it carried forward at the theory's slowest rate
    (``R^-1/2``). Pairs of samples not yet resolved add their plateau part.
    """
    found, verdict = separated_run("C6", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    result = run.result
    trajectory = result.trajectory
    ratio = settings.reference_ratio
    from theory_checks.runs import direction, record_at_or_below

    index_a = record_at_or_below(result, points.R / ratio**2)
    if index_a is None:
        return inconclusive(
            "C6", "no record at R / reference_ratio^2", hypotheses=reports
        )
    theta_a = direction(trajectory.parameters(index_a))
    R_a = trajectory.norm2[index_a]
    d1 = float(np.linalg.norm(points.reference.flat() - theta_a.flat()))
    d2 = float(np.linalg.norm(points.end.flat() - points.reference.flat()))
    # Dead neurons and the within-group rank-one structure approach their
    # limits like R^-1/2 (see theory_checks.tolerances), slower than the
    # rotation of the groups.
    rate = "slow"
    g = tol.RATES[rate]
    bound = d1 * (g(points.R_ref) - g(points.R)) / (g(R_a) - g(points.R_ref))
    terms = [
        direction_change_integrator(points),
        tol.roundoff(result.params.flat().size, 1.0, "difference of unit vectors"),
    ]
    # As in the multi-class C6, a pair not yet resolved at R_a can hold d_2
    # above the rate bound by up to its plateau angle.
    unresolved = unresolved_direction_part(example, _limit(example), float(R_a))
    if unresolved is not None:
        terms.append(unresolved)
    quantity = Quantity(
        "||theta_bar(R) - theta_bar(R/r)|| against the theory's rate from the "
        "previous interval",
        d2,
        bound,
        tol.tolerance(*terms),
        kind="at_most",
        details={
            "d_previous": d1,
            "rate": rate,
            "R": points.R,
            "R_ref": points.R_ref,
            "R_a": float(R_a),
        },
    )
    return combine("C6", "convergence of theta/||theta||", [quantity], run, reports)


def check_c7(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C7: each class's features lie on one ray, of lengths ``<s_k u_k, x_i>``.

    Compares the class rays and feature lengths at ``theta_bar`` with the
    max-margin prediction (``limits.predict``), with the limit claims' tolerance
    parts (``common.limit_quantities``).
    """
    found, verdict = separated_run("C7", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    quantities = collapse_quantities(
        example, _limit(example), points, _quantities_of(run, points)
    )
    return combine(
        "C7", "directional collapse of the features", quantities, run, reports
    )


def check_c8(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C8: the two class-mean feature directions are orthogonal."""
    found, verdict = separated_run("C8", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    _, ray = class_rays(example, points.end)
    quantity = frame_quantity(example, ray, "class means and their products")
    return combine("C8", "orthogonal class-mean frame", [quantity], run, reports)


def check_c9(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C9: ``V_bar = s_+ phibar_+^T - s_- phibar_-^T`` on the alive neurons.

    Measures the Frobenius distance of the output weights at ``theta_bar`` from
    that combination of the class rays, against 0.
    """
    found, verdict = separated_run("C9", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    limit = _limit(example)
    alive = alive_neurons(example, run.result.params)

    def measure(theta: Parameters) -> dict:
        _, ray = class_rays(example, theta)
        predicted = sum(
            limit.class_signs[k] * limit.s[k] * ray[k] for k in range(limit.K)
        )
        difference = (theta.V[0] - predicted)[alive]
        return {
            "||V_bar - (s_+ phibar_+ - s_- phibar_-)||_F over alive neurons": float(
                np.linalg.norm(difference)
            )
        }

    quantities = limit_quantities(
        points,
        measure,
        {k: 0.0 for k in measure(points.end)},
        roundoff=(example.dataset.n + example.shapes.width, 1.0),
        run=run,
    )
    return combine(
        "C9", "projected self-duality of the classifier", quantities, run, reports
    )


def check_c10(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C10: ``W_bar`` and ``V_bar`` have the predicted block structure.

    Each group's blocks are ``s_k u_k g_k^T`` with norms ``s_k``, and dead
    neurons vanish (``common.block_quantities``).
    """
    found, verdict = separated_run("C10", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    alive = alive_neurons(example, run.result.params)
    quantities = block_quantities(
        example, _limit(example), points, run.groups, alive, _quantities_of(run, points)
    )
    return combine(
        "C10", "block structure of W_bar and V_bar", quantities, run, reports
    )


def check_c11(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C11: every class has the normalised margin ``1/(2 sum_k 1/gamma_k)``.

    Measures ``min_i y_i f(x_i; theta_bar)`` of each class over the predicted
    margin, against 1.
    """
    found, verdict = separated_run("C11", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    limit = _limit(example)
    X, labels = example.dataset.X, example.dataset.labels
    signs = run.problem.signs

    def measure(theta: Parameters) -> dict:
        margins = signs * (features(example, X, theta.W) @ theta.V[0])
        return {
            f"class {k}: min_i y_i f(x_i; theta_bar) / predicted": float(
                margins[labels == k].min() / limit.margin
            )
            for k in range(limit.K)
        }

    quantities = limit_quantities(
        points,
        measure,
        {k: 1.0 for k in measure(points.end)},
        roundoff=(X.shape[1] + example.shapes.width, 1.0),
        run=run,
    )
    return combine(
        "C11",
        f"normalised margins against {limit.margin:.6g}",
        quantities,
        run,
        reports,
    )


def check_c12(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C12: the NC metrics at ``theta_bar`` take their closed forms.

    Measures NC2, NC1 (of the features and of their unit directions) and NC3
    (with the predicted and with the empirical class means) against the limits
    derived from the predicted lengths ``a_i``. The empirical-mean metrics get
    a term for their sensitivity to the predicted ``u_k``.
    """
    from ncflow import metrics

    found, verdict = separated_run("C12", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    limit = _limit(example)
    X, labels = example.dataset.X, example.dataset.labels
    lengths = limit.feature_lengths(X, labels)
    K = limit.K
    means = np.array([lengths[labels == k].mean() for k in range(K)])
    nc1_limit = metrics.nc1_paper_limit(lengths, labels, K)
    # At the limit M = V_bar Phi (Phi^T Phi)^-1 with Phi = [m_k phibar_k] is
    # [y_k s_k / m_k]_k, against the target [y_k]_k / sqrt(2).
    target = limit.class_signs[None, :] / math.sqrt(2)
    M_limit = (limit.class_signs * limit.s / means)[None, :]
    nc3_limit = float(np.linalg.norm(M_limit / np.linalg.norm(M_limit) - target))

    def nc3(V: np.ndarray, Phi: np.ndarray) -> float:
        M = V @ Phi @ np.linalg.pinv(Phi.T @ Phi)
        return float(np.linalg.norm(M / np.linalg.norm(M) - target))

    def measure(theta: Parameters) -> dict:
        phi, ray = class_rays(example, theta)
        unit = phi / np.maximum(np.linalg.norm(phi, axis=1, keepdims=True), 1e-300)
        class_means = metrics.class_means(phi, labels, K).T  # (h, K)
        return {
            "NC2 (paper)": metrics.nc2_paper(phi, labels, K),
            "NC3 with class means s_k phibar_k": nc3(
                theta.V, (limit.s[:, None] * ray).T
            ),
            "NC1 (paper, empirical means)": metrics.nc1_paper(phi, labels, K),
            "NC3 (paper, empirical means)": nc3(theta.V, class_means),
            "NC1 of unit-normalised features": metrics.nc1_paper(unit, labels, K),
        }

    predictions = {
        "NC2 (paper)": 0.0,
        "NC3 with class means s_k phibar_k": 0.0,
        "NC1 (paper, empirical means)": nc1_limit,
        "NC3 (paper, empirical means)": nc3_limit,
        "NC1 of unit-normalised features": 0.0,
    }
    quantities = limit_quantities(
        points,
        measure,
        predictions,
        roundoff=(X.shape[0] * example.shapes.width, 1.0),
        run=run,
    )

    # The closed forms of the empirical-mean metrics use a_i = <s_k u_k, x_i>,
    # so they depend on every u_k through the lengths.
    def nc3_of(a: np.ndarray) -> float:
        class_means = np.array([a[labels == k].mean() for k in range(K)])
        M = (limit.class_signs * limit.s / class_means)[None, :]
        return float(np.linalg.norm(M / np.linalg.norm(M) - target))

    sensitivities = {
        "NC1 (paper, empirical means)": length_sensitivities(
            lambda a: metrics.nc1_paper_limit(a, labels, K), lengths, labels, limit, X
        ),
        "NC3 (paper, empirical means)": length_sensitivities(
            nc3_of, lengths, labels, limit, X
        ),
    }
    add_resolution_terms(quantities, example, limit, points, sensitivities)
    return combine("C12", "NC metrics at theta_bar", quantities, run, reports)


def check_c13(example: Example, settings: RunSettings, reports: list) -> Verdict:
    """Check C13: ``||theta||^2 ~ log t`` and ``L ~ 1/(t log t)``.

    Compares ``||theta||^2 / log t`` and ``L t log t`` with the constants that
    ``theory_checks.limits`` derives. The theorem states the orders only.
    """
    found, verdict = separated_run("C13", example, settings, reports)
    if verdict is not None:
        return verdict
    run, points = found
    roundoff_terms = example.dataset.D + example.shapes.width
    quantities = rate_quantities(example, run, points, _limit(example), roundoff_terms)
    return combine(
        "C13",
        "late-phase rates (our derivation of the constants)",
        quantities,
        run,
        reports,
    )


_CHECKS = {
    "C1": check_c1,
    "C2": check_c2,
    "C3": check_c3,
    "C4": check_c4,
    "C5": check_c5,
    "C6": check_c6,
    "C7": check_c7,
    "C8": check_c8,
    "C9": check_c9,
    "C10": check_c10,
    "C11": check_c11,
    "C12": check_c12,
    "C13": check_c13,
}
