"""Machinery shared by the binary and multi-class checks.

A check measures one or more *quantities* on a trained run, each with its
prediction and its derived tolerance, and combines them into one verdict: the
claim fails if any quantity deviates beyond its tolerance, and the worst one
(largest deviation / tolerance) is what the verdict reports. Limit quantities
are measured at the end of the run (``||theta||^2 = R``), at the record at or
below ``R / reference_ratio`` (for the asymptotic part of the tolerance) and at
the end of the loose run (for the integrator part).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ncflow.flow import solve_flow
from ncflow.network import Parameters, activation_mask
from theory_checks import tolerances as tol
from theory_checks.limits import Limit, direction_resolution
from theory_checks.runs import (
    Example,
    Run,
    RunSettings,
    direction,
    record_at_or_below,
    train,
)
from theory_checks.verdict import (
    HypothesisReport,
    Outcome,
    Tolerance,
    ToleranceTerm,
    Verdict,
    inconclusive,
)


@dataclass
class Quantity:
    """One measured quantity with its prediction and tolerance.

    ``kind`` is ``"equal"`` (``|value - predicted| <= tol``), ``"at_most"``
    (``value <= predicted + tol``) or ``"at_least"`` (``value >= predicted - tol``).
    """

    name: str
    value: float
    predicted: float
    tolerance: Tolerance
    kind: str = "equal"
    details: dict = field(default_factory=dict)

    @property
    def deviation(self) -> float:
        if self.kind == "at_most":
            return max(self.value - self.predicted, 0.0)
        if self.kind == "at_least":
            return max(self.predicted - self.value, 0.0)
        return abs(self.value - self.predicted)

    @property
    def ratio(self) -> float:
        """Deviation in units of the tolerance (PASS needs <= 1)."""
        total = self.tolerance.total
        deviation = self.deviation
        if not math.isfinite(deviation):
            return math.inf
        if total > 0:
            return deviation / total
        return 0.0 if deviation == 0 else math.inf

    def summary(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "measured": self.value,
            "predicted": self.predicted,
            "tolerance": self.tolerance.total,
            "tolerance_parts": [
                {"name": t.name, "value": t.value, "derivation": t.derivation}
                for t in self.tolerance.terms
            ],
            "deviation_over_tolerance": self.ratio,
            **self.details,
        }


def combine(
    claim: str,
    what: str,
    quantities: list[Quantity],
    run: Run | None,
    hypotheses: list[HypothesisReport],
    **extra,
) -> Verdict:
    """One verdict from the quantities of a claim: FAIL if any exceeds its tolerance."""
    if not quantities:
        return inconclusive(
            claim,
            f"{what}: nothing to measure on this example",
            hypotheses=hypotheses,
            **extra,
        )
    worst = max(quantities, key=lambda q: q.ratio)
    failed = [q for q in quantities if q.ratio > 1.0]
    unbounded = [q for q in quantities if not math.isfinite(q.tolerance.total)]
    # A deviation within an "unresolved" part may be the plateau itself, so a
    # quantity with one can fail but not pass.
    undecided = [
        q for q in quantities if any(t.name == "unresolved" for t in q.tolerance.terms)
    ]
    if (unbounded or undecided) and not failed:
        # An infinite tolerance passes any deviation, so it verifies nothing.
        quantity = (unbounded or undecided)[0]
        parts = "; ".join(
            f"{t.name}: {t.derivation}"
            for t in quantity.tolerance.terms
            if not math.isfinite(t.value) or t.name == "unresolved"
        )
        kind = "is not finite" if unbounded else "contains an unresolved part"
        return inconclusive(
            claim,
            f"{what}: the tolerance of '{quantity.name}' {kind} ({parts})",
            hypotheses=hypotheses,
            integrator=run.integrator_summary() if run is not None else {},
            details={
                "quantities": [q.summary() for q in quantities],
                **extra.pop("details", {}),
            },
            **extra,
        )
    outcome = Outcome.FAIL if failed else Outcome.PASS
    relation = "beyond" if failed else "within"
    bound = {"at_most": "<= ", "at_least": ">= "}.get(worst.kind, "")
    reason = (
        f"{what}: worst quantity '{worst.name}' measured {worst.value:.6g}, predicted "
        f"{bound}{worst.predicted:.6g}, deviation {worst.deviation:.3g} {relation} "
        f"tolerance {worst.tolerance.total:.3g}"
    )
    if failed and len(failed) > 1:
        reason += f" ({len(failed)} of {len(quantities)} quantities fail)"
    return Verdict(
        claim=claim,
        outcome=outcome,
        reason=reason,
        measured=worst.value,
        predicted=worst.predicted,
        tolerance=worst.tolerance,
        margin=worst.ratio,
        worst=worst.name,
        integrator=run.integrator_summary() if run is not None else {},
        hypotheses=hypotheses,
        details={
            "quantities": [q.summary() for q in quantities],
            **extra.pop("details", {}),
        },
        **extra,
    )


def features(example: Example, X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``phi = relu(X W)``, shape (n, h); the planted fault takes ``X W`` itself."""
    Z = X @ W
    if "preactivation_features" in example.faults or example.activation == "linear":
        return Z
    return Z * activation_mask(Z, "relu")


@dataclass
class LimitPoints:
    """The three states a limit quantity is measured at."""

    end: Parameters
    reference: Parameters
    loose: Parameters | None
    R: float
    R_ref: float
    # One reference ratio before R_ref, for the Aitken and two-rate parts of the
    # asymptotic tolerance; None when the trajectory does not reach back that far.
    earlier: Parameters | None = None
    R_earlier: float | None = None


def limit_points(run: Run) -> LimitPoints | None:
    """Directions ``theta/||theta||`` at the end, at the reference record and at the
    end of the loose run; None when the trajectory has no reference record."""
    result = run.result
    R = result.norm2
    index = record_at_or_below(result, R / run.settings.reference_ratio)
    if index is None:
        return None
    reference = result.trajectory.parameters(index)
    R_ref = reference.norm2()
    if not R_ref < R:
        return None
    loose = None
    if run.loose is not None and run.loose.success:
        loose = direction(run.loose.params)
    earlier, R_earlier = None, None
    index_earlier = record_at_or_below(result, R_ref / run.settings.reference_ratio)
    if index_earlier is not None and index_earlier < index:
        state = result.trajectory.parameters(index_earlier)
        earlier, R_earlier = direction(state), state.norm2()
    return LimitPoints(
        direction(result.params),
        direction(reference),
        loose,
        R,
        R_ref,
        earlier,
        R_earlier,
    )


def integration_roundoff(run: Run) -> tol.ToleranceTerm:
    """Return the float64 roundoff accumulated by the integration, in units of
    ``theta_bar``.

    Each step stores a neuron's log-norm ``sigma_j``, about ``log(R)/2``, so its
    absolute roundoff ``eps log(R)/2`` is a relative roundoff of the norm. Each
    step also forms the right-hand side from sums over the ``n`` samples, ``D``
    inputs and ``K`` outputs (one for a binary problem). Summed over the steps
    (without amplification, since the direction converges to a stable limit),
    this bounds the relative error that the rtol-independent noise floor of the
    run leaves in a normalised quantity. On an exactly symmetric three-class
    simplex example it is the only error left, and measured at about half of
    this bound.
    """
    result = run.result
    steps = result.n_accepted + len(result.activation_events)
    per_step = 0.5 * math.log(max(result.norm2, math.e)) + sum(
        (run.problem.n, run.problem.D, run.problem.num_outputs)
    )
    return tol.ToleranceTerm(
        "roundoff",
        steps * per_step * tol.EPS,
        f"{steps} steps * (log(R)/2 + n + D + K = {per_step:.3g}) * eps "
        "(accumulated by the integration)",
    )


def limit_quantities(
    points: LimitPoints,
    measure: Callable[[Parameters], dict],
    predictions: dict,
    *,
    rate: str = "slow",
    roundoff: tuple[int, float] = (1, 1.0),
    kinds: dict | None = None,
    run: Run | None = None,
) -> list[Quantity]:
    """Quantities ``measure(theta_bar)[name]`` against ``predictions[name]``.

    Each gets the integrator, asymptotic and roundoff parts of its tolerance;
    ``roundoff = (terms, scale)`` sizes the float64 part of the measurement. With
    ``run``, each also gets :func:`integration_roundoff`, the float64 part that
    the integration leaves in ``theta_bar``. That part is relative, so it is
    scaled by the quantity's size where the size is above 1.
    """
    end = measure(points.end)
    reference = measure(points.reference)
    loose = measure(points.loose) if points.loose is not None else None
    earlier = measure(points.earlier) if points.earlier is not None else None
    kinds = kinds or {}
    out = []
    for name, predicted in predictions.items():
        value = end[name]
        terms: list[ToleranceTerm] = [
            tol.integrator_change(value, None if loose is None else loose[name], name),
            tol.asymptotic(
                value,
                reference[name],
                points.R,
                points.R_ref,
                rate,
                None if earlier is None else earlier[name],
                points.R_earlier,
            ),
            tol.roundoff(roundoff[0], roundoff[1], name),
        ]
        if run is not None:
            part = integration_roundoff(run)
            size = abs(float(value))
            terms.append(tol.scaled(part, size) if size > 1.0 else part)
        out.append(
            Quantity(
                name,
                float(value),
                float(predicted),
                tol.tolerance(*terms),
                kinds.get(name, "equal"),
            )
        )
    return out


def add_resolution_terms(
    quantities: list[Quantity],
    example: Example,
    limit,
    points: LimitPoints,
    per_class: dict[str, tuple[int, float] | list[tuple[int, float]]],
) -> None:
    """Add the parts of a tolerance that come from how well ``u_k`` is resolved.

    ``per_class`` maps a quantity's name to ``(k, scale)``, or to a list of such
    pairs for a quantity that depends on several ``u_k``, where ``scale`` is the
    quantity's change per unit change of ``u_k``. Such a quantity gets each
    class's float64 conditioning part times ``scale``. When a near-active pair of
    class ``k`` is not yet resolved at ``R_ref``, it also gets a part named
    ``"unresolved"``: ``scale`` times the largest angle of such a pair, summed
    over those classes. A deviation beyond the tolerance then fails, and one
    within it makes the verdict INCONCLUSIVE (:func:`combine`);
    :func:`refine_norm` then repeats the run at a larger ``R``. The criterion is
    ``theory_checks.limits.direction_resolution``.
    """
    resolutions = direction_resolution(
        example.dataset.X, example.dataset.labels, limit, points.R_ref
    )
    for quantity in quantities:
        if quantity.name not in per_class:
            continue
        pairs = per_class[quantity.name]
        pairs = [pairs] if isinstance(pairs, tuple) else pairs
        extra = [
            tol.conditioning(resolutions[k], scale, quantity.name) for k, scale in pairs
        ]
        unresolved = unresolved_part(
            [(resolutions[k], scale) for k, scale in pairs], points.R_ref
        )
        if unresolved is not None:
            extra.append(unresolved)
        quantity.tolerance = tol.tolerance(*quantity.tolerance.terms, *extra)


def unresolved_part(pairs: list, R: float) -> ToleranceTerm | None:
    """Return one part ``"unresolved"`` that sums ``tol.unresolved_pair`` over
    ``pairs`` of ``(resolution, scale)`` at ``R``, or None where every class
    is resolved."""
    terms = [
        term
        for term in (tol.unresolved_pair(res, R, scale) for res, scale in pairs)
        if term is not None
    ]
    if not terms:
        return None
    return ToleranceTerm(
        "unresolved",
        sum(term.value for term in terms),
        "; ".join(term.derivation for term in terms),
    )


def direction_change_integrator(points: LimitPoints) -> ToleranceTerm:
    """Return the integrator part of a difference of two unit directions
    ``theta_bar``: each end carries at most the change to the run at 10 rtol."""
    if points.loose is None:
        return ToleranceTerm("integrator", math.inf, "no loose run")
    change = float(np.linalg.norm(points.end.flat() - points.loose.flat()))
    return ToleranceTerm(
        "integrator",
        2 * change,
        f"2 ||theta_bar(rtol) - theta_bar(10 rtol)|| = 2 * {change:.3g}",
    )


def unresolved_direction_part(
    example: Example, limit: Limit, R: float
) -> ToleranceTerm | None:
    """Return the ``"unresolved"`` part of a quantity that moves with the unit
    direction ``theta_bar`` (scale 1), or None where every class is resolved at
    ``R``: a class with a pair of samples not yet resolved rests near the pair's
    weighted mean and turns to ``u_k`` later, by at most the plateau angle."""
    resolutions = direction_resolution(
        example.dataset.X, example.dataset.labels, limit, R
    )
    return unresolved_part([(res, 1.0) for res in resolutions], R)


def length_sensitivities(
    closed_form: Callable[[np.ndarray], float],
    lengths: np.ndarray,
    labels: np.ndarray,
    limit,
    X: np.ndarray,
) -> list[tuple[int, float]]:
    """Return ``(k, scale_k)``: the change of ``closed_form(lengths)`` per unit
    change of ``u_k``, to first order.

    A direction within ``delta`` of ``u_k`` changes the length
    ``a_i = <s_k u_k, x_i>`` of each sample of class ``k`` by at most
    ``s_k ||x_i|| delta``, so ``scale_k = sum_{i in I_k} |dq/da_i| s_k ||x_i||``.
    The derivatives are central differences with steps ``1e-6 |a_i|``: their
    truncation error is of relative order ``1e-12`` and their roundoff about
    ``eps / 1e-6 = 2e-10`` relative.

    NOTE: this is first order in ``delta``. An unresolved pair has
    ``rho_k gamma_k alpha^2 < 40`` with ``rho_k >= 1e5`` at the usual ``R_ref``,
    so ``delta <= 0.02`` and the neglected term is an estimate of a few percent.
    """
    gradient = np.empty(lengths.size)
    for i in range(lengths.size):
        step = 1e-6 * max(abs(float(lengths[i])), 1e-300)
        up, down = lengths.copy(), lengths.copy()
        up[i] += step
        down[i] -= step
        gradient[i] = (closed_form(up) - closed_form(down)) / (2 * step)
    norms = np.linalg.norm(X, axis=1)
    return [
        (
            k,
            float(
                limit.s[k] * np.sum(np.abs(gradient[labels == k]) * norms[labels == k])
            ),
        )
        for k in range(limit.K)
    ]


def refine_eps(
    check_once: Callable[[Example, RunSettings], Verdict],
    example: Example,
    settings: RunSettings,
    *,
    unquantified: bool,
) -> Verdict:
    """Run a check, and before reporting FAIL repeat it at ``eps / eps_factor``,
    ``eps / eps_factor^2``, ... down to ``eps_floor`` while the theorem leaves
    ``eps`` unquantified; FAIL only if the violation persists at every ``eps``.

    A repeat that passes, or that cannot decide (INCONCLUSIVE), is reported,
    and its ``details["fail_at_larger_eps"]`` keeps the last FAIL's ``eps``,
    values and reason, so that the evidence is not lost.

    An ``eps_floor`` below ``example.min_eps()``, where the weights' squares
    underflow, cannot be reached. The repeats then stop at the last ``eps``
    above that bound, and the FAIL's reason and ``details["eps_floor_unreached"]``
    say so.
    """
    verdict = check_once(example, settings)
    sequence = [example.eps]
    if verdict.outcome is Outcome.FAIL and unquantified:
        eps = example.eps
        while eps / settings.eps_factor >= settings.eps_floor:
            if eps / settings.eps_factor < example.min_eps():
                _note_floor_unreached(verdict, eps, example.min_eps(), settings)
                break
            failed_eps = eps
            eps /= settings.eps_factor
            sequence.append(eps)
            retry = check_once(example.with_eps(eps), settings)
            if retry.outcome is not Outcome.FAIL:
                retry.reason += (
                    f" (after a FAIL at eps={example.eps:.3g}, repeated at smaller eps)"
                )
                retry.details["fail_at_larger_eps"] = {
                    "eps": failed_eps,
                    "measured": verdict.measured,
                    "predicted": verdict.predicted,
                    "margin": verdict.margin,
                    "reason": verdict.reason,
                }
                retry.eps_sequence = sequence
                return retry
            verdict = retry
    verdict.eps_sequence = sequence
    return verdict


def _note_floor_unreached(
    verdict: Verdict, eps: float, min_eps: float, settings: RunSettings
) -> None:
    """Record in a FAIL that the repeats stopped above ``eps_floor``."""
    verdict.reason += (
        f" (repeats at smaller eps stopped at eps={eps:.3g}, above "
        f"eps_floor={settings.eps_floor:.3g}: the next, "
        f"{eps / settings.eps_factor:.3g}, is below {min_eps:.3g}, the smallest "
        "eps at which the weights' squares do not underflow for these shapes; "
        "raise eps_floor to at least that)"
    )
    verdict.details["eps_floor_unreached"] = {
        "eps_floor": settings.eps_floor,
        "last_eps": eps,
        "min_eps": min_eps,
    }


def refine_norm(
    check_once: Callable[[Example, RunSettings], Verdict],
    example: Example,
    settings: RunSettings,
    *,
    norm2_max: float | None = None,
) -> Verdict:
    """Run a limit check, and before reporting FAIL repeat it at larger ``R``.

    The asymptotic part of a tolerance extrapolates from changes between
    ``R / reference_ratio`` and ``R``, which is valid once the quantity is in
    its asymptotic regime. A quantity whose changes still turn can fail at
    ``R`` and pass further on. The run is therefore repeated with
    ``norm2_target`` multiplied by ``reference_ratio`` while it stays at most
    ``norm2_max`` (default ``settings.norm2_max``). A PASS there replaces the
    FAIL, and an INCONCLUSIVE repeat (a run that cannot reach the larger norm)
    leaves it standing. A run converging to a wrong limit
    keeps its deviation while the tolerance shrinks, so it still fails.

    An INCONCLUSIVE verdict because a pair of samples is not yet resolved
    (:func:`add_resolution_terms`) is repeated the same way, since a larger
    ``R`` resolves the pair; the last repeat's verdict is kept.
    """
    norm2_max = settings.norm2_max if norm2_max is None else norm2_max
    verdict = check_once(example, settings)
    first = verdict.outcome.value
    targets = [settings.norm2_target]
    current = settings
    while (
        verdict.outcome is Outcome.FAIL or _unresolved(verdict)
    ) and current.norm2_target * current.reference_ratio <= norm2_max:
        current = replace(
            current, norm2_target=current.norm2_target * current.reference_ratio
        )
        targets.append(current.norm2_target)
        retry = check_once(example, current)
        if retry.outcome is Outcome.PASS:
            retry.reason += (
                f" (after {first} at ||theta||^2 = {settings.norm2_target:.3g}, "
                f"repeated at {current.norm2_target:.3g})"
            )
            verdict = retry
            break
        if retry.outcome is Outcome.INCONCLUSIVE and _unresolved(verdict):
            verdict = retry
            continue
        if retry.outcome is Outcome.INCONCLUSIVE:
            # The repeat neither confirms nor lifts the FAIL, so the FAIL is kept.
            verdict.reason += (
                f" (the repeat at ||theta||^2 = {current.norm2_target:.3g} was "
                f"INCONCLUSIVE: {retry.reason})"
            )
            break
        verdict = retry
    if len(targets) > 1:
        verdict.details["norm2_targets"] = targets
    return verdict


def _unresolved(verdict: Verdict) -> bool:
    """Return True for an INCONCLUSIVE verdict caused by a pair not yet resolved."""
    if verdict.outcome is not Outcome.INCONCLUSIVE:
        return False
    return any(
        part["name"] == "unresolved"
        for quantity in verdict.details.get("quantities", [])
        for part in quantity.get("tolerance_parts", [])
    )


def run_or_reason(example: Example, settings: RunSettings) -> tuple[Run, str]:
    """Train; the reason is non-empty when the run did not reach its target."""
    run = train(example, settings)
    if run.reached_target:
        return run, ""
    result = run.result
    return run, (
        f"the run ended at ||theta||^2 = {result.norm2:.3g} before the target "
        f"{settings.norm2_target:.3g}: {result.message}"
    )


def separated_run(claim: str, example: Example, settings: RunSettings, reports: list):
    """Train ``example`` and return its limit points, or INCONCLUSIVE without ``T*``.

    Returns ``((run, points), None)``, or ``(None, verdict)`` when the run did not
    reach its target, never separated, or has no record before
    ``R / reference_ratio``.
    """
    run, reason = run_or_reason(example, settings)
    if reason:
        return None, inconclusive(
            claim, reason, hypotheses=reports, integrator=run.integrator_summary()
        )
    if run.result.separation_log_t is None:
        return None, inconclusive(
            claim,
            "the pattern never separated, so the claim (about t >= T*) has no premise "
            "on this run; C4 reports the separation itself",
            hypotheses=reports,
            integrator=run.integrator_summary(),
        )
    points = limit_points(run)
    if points is None:
        return None, inconclusive(
            claim, "no trajectory record before R / reference_ratio", hypotheses=reports
        )
    return (run, points), None


def early_run(example: Example, settings: RunSettings, T: float, *, records: int = 32):
    """Integrate ``example`` up to ``t = T``, with ``records`` records per decade."""
    return solve_flow(
        example.problem(),
        example.params0(),
        t_max=T,
        rtol=settings.rtol,
        atol=settings.atol,
        groups=example.neuron_groups(),
        records_per_decade=records,
        max_steps=settings.max_steps,
    )


def alive_neurons(example: Example, params: Parameters) -> np.ndarray:
    """Mark the neurons active on some sample, shape (h,) bool."""
    return np.any(example.dataset.X @ params.W > 0, axis=0)


def frame_quantity(example: Example, ray: np.ndarray, what: str) -> Quantity:
    """C8: the largest ``|<phibar_k, phibar_l>|``, ``k != l``, against 0.

    ``ray`` holds the unit class-mean directions, shape (K, h). Each entry of the
    Gram matrix sums ``h`` products of vectors formed from ``n`` feature rows, so
    ``h + n`` roundoffs of unit size bound it.
    """
    gram = ray @ ray.T
    off = np.abs(gram - np.diag(np.diag(gram)))
    return Quantity(
        "max_k!=l |<phibar_k, phibar_l>|",
        float(off.max()),
        0.0,
        tol.tolerance(
            tol.roundoff(example.shapes.width + example.dataset.n, 1.0, what)
        ),
    )


def input_norm_max(example: Example) -> float:
    """``X_max = max_i ||x_i||``."""
    return float(np.max(np.linalg.norm(example.dataset.X, axis=1)))


def class_rays(example: Example, theta: Parameters) -> tuple[np.ndarray, np.ndarray]:
    """Features ``phi`` (n, h) and unit class-sum directions ``phibar_k`` (K, h).

    A class whose features sum to 0 keeps a zero row."""
    labels = example.dataset.labels
    phi = features(example, example.dataset.X, theta.W)
    ray = np.zeros((example.dataset.K, phi.shape[1]))
    for k in range(example.dataset.K):
        total = phi[labels == k].sum(axis=0)
        size = np.linalg.norm(total)
        ray[k] = total / size if size > 0 else total
    return phi, ray


# -- limit claims with one form in both families ------------------------------------
#
# ``quantities_of(measure, predictions, **options)`` is the family's
# ``limit_quantities``, bound to its run and limit points.


def collapse_quantities(
    example: Example, limit: Limit, points: LimitPoints, quantities_of: Callable
) -> list[Quantity]:
    """C7: for each class ``k``, ``max_i ||phi_i - a_i phibar_k|| / (s_k X_max)``
    over its samples, against 0, with ``a_i = <s_k u_k, x_i>``."""
    X, labels = example.dataset.X, example.dataset.labels
    lengths = limit.feature_lengths(X, labels)
    x_max = input_norm_max(example)

    def measure(theta: Parameters) -> dict:
        phi, ray = class_rays(example, theta)
        out = {}
        for k in range(limit.K):
            members = labels == k
            predicted = lengths[members, None] * ray[k][None, :]
            error = np.linalg.norm(phi[members] - predicted, axis=1).max()
            name = f"class {k}: max_i ||phi_i - a_i phibar_k|| / (s_k X_max)"
            out[name] = float(error / (limit.s[k] * x_max))
        return out

    return quantities_of(
        measure,
        {name: 0.0 for name in measure(points.end)},
        roundoff=(X.shape[1] + example.shapes.width, 1.0),
    )


def block_quantities(
    example: Example,
    limit: Limit,
    points: LimitPoints,
    groups: np.ndarray,
    alive: np.ndarray,
    quantities_of: Callable,
) -> list[Quantity]:
    """C10: the blocks ``W_bar_k = s_k u_k g_k^T`` of the alive neurons of each
    class, their norms ``s_k``, the rank ``K`` of ``W_bar``, and no weight left
    on the dead neurons."""
    K = limit.K

    def measure(theta: Parameters) -> dict:
        out = {}
        for k in range(K):
            members = (groups == k) & alive
            Wk, Vk = theta.W[:, members], theta.V[:, members]
            g = Wk.T @ limit.u[k]
            g_norm = np.linalg.norm(g)
            g_unit = g / g_norm if g_norm > 0 else g
            residual = np.linalg.norm(Wk - limit.s[k] * np.outer(limit.u[k], g_unit))
            out[f"class {k}: ||W_bar_k - s_k u_k g_k^T||_F"] = float(residual)
            out[f"class {k}: ||W_bar_k||_F"] = float(np.linalg.norm(Wk))
            out[f"class {k}: ||V_bar_k||_F"] = float(np.linalg.norm(Vk))
            out[f"class {k}: min entry of g_k"] = (
                float(g_unit.min()) if g_unit.size else 0.0
            )
        singular = np.linalg.svd(theta.W, compute_uv=False)
        out["sigma_{K+1}(W_bar) / sigma_1(W_bar)"] = (
            float(singular[K] / singular[0]) if singular.size > K else 0.0
        )
        return out

    predictions, kinds = {}, {}
    for k in range(K):
        predictions[f"class {k}: ||W_bar_k - s_k u_k g_k^T||_F"] = 0.0
        predictions[f"class {k}: ||W_bar_k||_F"] = limit.s[k]
        predictions[f"class {k}: ||V_bar_k||_F"] = limit.s[k]
        predictions[f"class {k}: min entry of g_k"] = 0.0
        kinds[f"class {k}: min entry of g_k"] = "at_least"
    predictions["sigma_{K+1}(W_bar) / sigma_1(W_bar)"] = 0.0
    quantities = quantities_of(
        measure,
        predictions,
        kinds=kinds,
        roundoff=(example.dataset.D * example.shapes.width, 1.0),
    )
    add_resolution_terms(quantities, example, limit, points, block_u_dependence(limit))

    dead_name = "||theta_bar restricted to dead neurons||_F"

    def dead_share(theta: Parameters) -> dict:
        dead = ~alive
        share = float(np.sum(theta.W[:, dead] ** 2) + np.sum(theta.V[:, dead] ** 2))
        return {dead_name: math.sqrt(share)}

    return quantities + quantities_of(dead_share, {dead_name: 0.0})


def block_u_dependence(limit: Limit) -> dict[str, tuple[int, float]]:
    """Map the C10 quantities that use ``u_k`` to ``(k, change per unit change
    of u_k)``.

    The residual is ``min_g ||W_k - s_k u g^T||_F``, which is ``s_k``-Lipschitz
    in ``u``. The unit ``g_k = W_k^T u / ||W_k^T u||`` changes by at most
    ``2 ||W_k||_F / ||W_k^T u_k||`` times the change of ``u``, which is 2 at
    the limit ``W_k = s_k u_k g_k^T``.
    """
    out = {}
    for k in range(limit.K):
        out[f"class {k}: ||W_bar_k - s_k u_k g_k^T||_F"] = (k, float(limit.s[k]))
        out[f"class {k}: min entry of g_k"] = (k, 2.0)
    return out


def rate_quantities(
    example: Example, run: Run, points: LimitPoints, limit: Limit, roundoff_terms: int
) -> list[Quantity]:
    """C13: ``||theta||^2 / log t`` and ``L t log t`` at the end of the run,
    against their limits.

    ``roundoff_terms`` counts the roundoffs of one output: ``D + h``, and ``K``
    more for a ``K``-class head.
    """
    result = run.result
    trajectory = result.trajectory
    index_ref = record_at_or_below(result, points.R_ref * (1 + 1e-12))

    def rates(norm2: float, log_t: float, log_loss: float) -> dict:
        return {
            "||theta||^2 / log t": norm2 / log_t,
            "L t log t": math.exp(log_loss + log_t + math.log(log_t)),
        }

    end = rates(result.norm2, result.log_t, result.log_loss)
    reference = rates(
        trajectory.norm2[index_ref],
        trajectory.log_t[index_ref],
        trajectory.log_loss[index_ref],
    )
    loose = None
    if run.loose is not None and run.loose.success:
        loose = rates(run.loose.norm2, run.loose.log_t, run.loose.log_loss)
    predictions = {
        "||theta||^2 / log t": limit.norm_rate(),
        "L t log t": limit.loss_rate(),
    }
    x_max = input_norm_max(example)
    # log t is a float64 sum over the steps, each rounded at eps |log t|. That is
    # an absolute error of log t, so a relative one of L t log t.
    steps = result.n_accepted + len(result.activation_events)
    quantities = []
    for name, predicted in predictions.items():
        # log L carries the absolute roundoff of the margins, at most
        # roundoff_terms * eps R X_max^2, which is a relative error of L t log t.
        scale = points.R * x_max**2 if name == "L t log t" else 1.0
        # NOTE: L t log t needs log t to an absolute accuracy of about 1e-4 near
        # R = 1e8, where log t is near 1e7 and each step keeps it only to
        # rtol |log t|. The change between rtol and 10 rtol estimates that error
        # without a bound. Measured on the benchmark problems, L t log t at
        # R = 1e8 agrees to 1e-6 across rtol from 1e-6 to 1e-10, and the worst
        # example of the ci profile sits at 0.09 of this tolerance. Before the
        # clock's fit was centred, log t carried a roundoff floor of 7e-5 there,
        # which the change did not bound. The roundoff of the sum of log t is of
        # that size too: on the worst binary example of a thorough verify, L t
        # log t at R = 1e8 (log t = 5.4e7) scatters by 5e-7 relative across rtol
        # from 1e-10 to 1e-12, and sat at 0.51 of the tolerance without that term.
        terms = [
            tol.integrator_change(
                end[name], None if loose is None else loose[name], name
            ),
            tol.asymptotic(end[name], reference[name], points.R, points.R_ref, "slow"),
            tol.roundoff(roundoff_terms, scale * abs(end[name]), name),
            tol.scaled(integration_roundoff(run), abs(end[name])),
        ]
        if name == "L t log t":
            terms.append(
                tol.roundoff(steps, abs(result.log_t) * abs(end[name]), "sum of log t")
            )
        quantities.append(Quantity(name, end[name], predicted, tol.tolerance(*terms)))
    return quantities


def first_unverified(reports: list[HypothesisReport]) -> HypothesisReport | None:
    for report in reports:
        if not report.holds:
            return report
    return None


__all__ = [
    "LimitPoints",
    "Quantity",
    "add_resolution_terms",
    "unresolved_part",
    "direction_change_integrator",
    "unresolved_direction_part",
    "alive_neurons",
    "block_quantities",
    "block_u_dependence",
    "class_rays",
    "collapse_quantities",
    "combine",
    "early_run",
    "features",
    "first_unverified",
    "frame_quantity",
    "input_norm_max",
    "length_sensitivities",
    "limit_points",
    "limit_quantities",
    "rate_quantities",
    "refine_eps",
    "refine_norm",
    "run_or_reason",
    "separated_run",
]
