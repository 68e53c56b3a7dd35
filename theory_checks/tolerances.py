"""Derived tolerance parts: float64 roundoff, integration error, distance to the limit.

Every check states its tolerance as a sum of these parts, each with the
formula and the numbers that produced it:

- ``roundoff``: a sum of ``m`` products of magnitude ``scale`` in float64 has
  an error of at most ``m * eps * scale`` (the ``gamma_m`` bound of Higham,
  *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 3.1), with
  ``eps = 2**-52``;
- ``integrator``: for a limit quantity, the change of its value when the flow
  is integrated again at ten times the tolerance: if the global error is
  proportional to rtol, the tight run's error is a ninth of that change, so the
  change itself bounds it; for an invariant, the sum of the local error bounds
  over the accepted steps (``n_steps * per_step``);
- ``asymptotic``: the distance of the trajectory from its own limit, which a
  finite run cannot close. If a quantity approaches its limit like
  ``c g(R)`` with ``R = ||theta||^2``, its change between ``R_ref`` and ``R``
  fixes ``c``, and the remaining distance is
  ``|q(R) - q(R_ref)| g(R) / (g(R_ref) - g(R))``. The rate ``g`` is the one the
  theory gives. ``(1 + log R) / R`` is the rate of the rotation of each group
  towards its max-margin direction (the linear max-margin rate, class by class),
  which is what the margins (C11) and the block norms see. ``R**-1/2`` is the
  rate of two things that do not rotate away: a dead neuron keeps its weights,
  so its share of ``theta_bar`` falls like ``1/||theta||``; and once the pattern
  is separated each group is a linear network, for which
  ``C_k = W_k^T W_k - V_k^T V_k`` is conserved, so the second singular value of
  ``W_k`` stays at about ``sqrt(||C_k||)`` while the first grows like ``sqrt(R)``
  (our derivation; ``C_k`` is of the order of ``||theta||^2`` at separation).
  The checks use ``"slow"``, ``(1 + log R) R**-1/2``: the two-point
  extrapolation is conservative exactly when the model's ratio
  ``g(R_ref)/g(R)`` is below the true ratio of remaining distances, and this
  model's ratio (7.6 for ``R = 1e8`` and a reference ratio of 100) stays below
  that of every mechanism above (10 for ``R**-1/2``, 75 for ``log R / R``)
  even when corrections of up to a quarter of the leading term remain at
  ``R_ref``. For a quantity converging like ``1/R`` it overestimates the
  remaining distance about elevenfold, which is the price of that safety.
  This part needs no knowledge of the predicted value: a run that converges
  to the wrong limit keeps its deviation while this part shrinks;
- ``conditioning``: how well float64 fixes ``u_k`` and the run's direction
  when a class has near-active samples at a small angle ``alpha`` (at best
  ``(3 D + n_k) eps / alpha``), times the quantity's change per unit change of
  ``u_k``;
- ``unresolved``: infinite while such a pair is not yet resolved at ``R_ref``
  (``rho_k gamma_k alpha^2 < RESOLVED_R``), because the group then rests at
  the pair's weighted mean and no rate read there extrapolates; the verdict is
  INCONCLUSIVE. Both are derived in ``theory_checks.limits``.
"""

from __future__ import annotations

import math

import numpy as np

from theory_checks.limits import RESOLVED_R
from theory_checks.verdict import Tolerance, ToleranceTerm

EPS = float(np.finfo(np.float64).eps)

RATES = {
    "log": lambda R: (1.0 + math.log(R)) / R,
    "sqrt": lambda R: R**-0.5,
    "slow": lambda R: (1.0 + math.log(R)) * R**-0.5,
}


def roundoff(terms: int, scale: float, what: str) -> ToleranceTerm:
    """``terms * eps * scale``: a sum of ``terms`` products of size ``scale``."""
    value = terms * EPS * scale
    return ToleranceTerm("roundoff", value, f"{terms} * eps * {scale:.3g} ({what})")


def scaled(term: ToleranceTerm, factor: float) -> ToleranceTerm:
    """Return ``term`` times ``factor``, with the factor in its derivation."""
    return ToleranceTerm(
        term.name, term.value * factor, f"{term.derivation} * {factor:.3g}"
    )


def integrator_change(tight: float, loose: float | None, what: str) -> ToleranceTerm:
    """``|q(rtol) - q(10 rtol)|``; infinite when there is no loose run."""
    if loose is None or not math.isfinite(loose):
        return ToleranceTerm(
            "integrator", math.inf, f"no run at 10 rtol to estimate the error ({what})"
        )
    value = abs(tight - loose)
    return ToleranceTerm(
        "integrator",
        value,
        f"|q(rtol) - q(10 rtol)| = |{tight:.10g} - {loose:.10g}| ({what})",
    )


def integrator_steps(steps: int, per_step: float, what: str) -> ToleranceTerm:
    """``steps * per_step``: local error bounds summed over the accepted steps."""
    return ToleranceTerm(
        "integrator",
        steps * per_step,
        f"{steps} steps * {per_step:.3g} per step ({what})",
    )


def asymptotic(
    value: float,
    reference: float,
    R: float,
    R_ref: float,
    rate: str = "log",
    earlier: float | None = None,
    R_earlier: float | None = None,
) -> ToleranceTerm:
    """Remaining distance to the trajectory's own limit at ``R``; see the module.

    ``earlier`` is the quantity one reference ratio before ``R_ref``, at
    ``||theta||^2 = R_earlier``. Take the two changes ``d1 = q(R_ref) -
    q(earlier)`` and ``d2 = q(R) - q(R_ref)``. When they have one sign and
    shrink (``rho = |d2 / d1| < 1``), Aitken's estimate ``|d2| rho / (1 - rho)``
    also bounds the distance. It assumes only that changes over equal ratios of
    ``R`` shrink geometrically, not the rate ``g``, and the larger of the two
    bounds is used.

    Changes of opposite signs mean the quantity is not yet in its asymptotic
    regime: it is the sum of parts of opposite signs that decay at different
    rates, and the one-rate model underestimates what remains once the faster
    part has faded. When ``R_earlier`` is given, the three points then also fix
    the two-rate model of :func:`two_rate_tail`, and the larger estimate is
    used. The derivation text states the turn. A check repeats a FAIL at a
    larger ``R`` (``common.refine_norm``).
    """
    g = RATES[rate]
    denominator = g(R_ref) - g(R)
    if not denominator > 0:
        return ToleranceTerm(
            "asymptotic", math.inf, f"R_ref={R_ref:.3g} is not before R={R:.3g}"
        )
    change = abs(value - reference)
    model = change * g(R) / denominator
    formula = {"log": "(1 + log R)/R", "sqrt": "R^-1/2", "slow": "(1 + log R) R^-1/2"}[
        rate
    ]
    derivation = (
        f"|q(R) - q(R_ref)| g(R) / (g(R_ref) - g(R)), g = {formula}, "
        f"R = {R:.3g}, R_ref = {R_ref:.3g}, change {change:.3g}"
    )
    if earlier is None or not math.isfinite(earlier):
        return ToleranceTerm("asymptotic", model, derivation)

    d1, d2 = reference - earlier, value - reference
    if d1 * d2 < 0:
        derivation += (
            f"; not yet asymptotic: the changes {d1:.3g} then {d2:.3g} have "
            "opposite signs"
        )
        if R_earlier is None or not R_earlier < R_ref:
            return ToleranceTerm("asymptotic", model, derivation)
        two_rate = two_rate_tail((earlier, reference, value), (R_earlier, R_ref, R))
        return ToleranceTerm(
            "asymptotic",
            max(model, two_rate),
            derivation + f"; two-rate model {two_rate:.3g} (R_earlier = "
            f"{R_earlier:.3g}); the larger is used",
        )
    if d2 == 0 or abs(d2) >= abs(d1):
        return ToleranceTerm("asymptotic", model, derivation)
    rho = abs(d2 / d1)
    aitken = abs(d2) * rho / (1 - rho)
    return ToleranceTerm(
        "asymptotic",
        max(model, aitken),
        derivation + f"; Aitken |d2| rho / (1 - rho) = {aitken:.3g} with rho = "
        f"{rho:.3g}; the larger is used",
    )


def two_rate_tail(values: tuple, norms: tuple) -> float:
    """Return ``|A g_slow(R_3) + B g_log(R_3)|``, the two-rate model's distance left.

    The model ``q(R) = q_inf + A g_slow(R) + B g_log(R)`` pairs the slowest rate
    of the module, ``g_slow = (1 + log R) R^-1/2``, with the rotation rate
    ``g_log = (1 + log R) / R``. Its two changes over three points fix ``A`` and
    ``B`` (a 2 x 2 linear solve), and ``q_inf`` drops out. Take a quantity made of
    a part decaying like ``R^-1/2`` and one of the other sign decaying like
    ``1/R`` (a dead or unrotated share beside the rotation). Its bases decay no
    faster than its parts, so the slow part's remaining share is overestimated.
    On ``R^-1/2 - 750/R`` sampled at ``1e6, 1e8, 1e10`` the estimate is 1.26
    times the true distance, and on ``R^-1/2 + 1/R`` 1.23 times.

    NOTE: this is an estimate, not a bound. Where the fast part still dominates
    at ``R_3`` and has a ``log R`` factor, it can fall short: on
    ``R^-1/2 - 1e4 (1 + log R)/R`` at the same points it gives 0.84 times the
    true distance.

    Parameters
    ----------
    values : tuple of 3 float
        ``q_1, q_2, q_3``.
    norms : tuple of 3 float
        ``R_1 < R_2 < R_3``, ``||theta||^2`` of the points.

    Returns
    -------
    float
        ``inf`` when the solve is singular or any input is not finite.
    """
    q = np.asarray(values, dtype=np.float64)
    R = np.asarray(norms, dtype=np.float64)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(R)) and np.all(R > 0)):
        return math.inf
    slow = np.array([RATES["slow"](float(r)) for r in R])
    fast = np.array([RATES["log"](float(r)) for r in R])
    system = np.column_stack([np.diff(slow), np.diff(fast)])
    try:
        A, B = np.linalg.solve(system, np.diff(q))
    except np.linalg.LinAlgError:
        return math.inf
    tail = abs(float(A * slow[-1] + B * fast[-1]))
    return tail if math.isfinite(tail) else math.inf


def unresolved_pair(
    resolution, R_ref: float, scale: float = math.inf
) -> ToleranceTerm | None:
    """Return the part ``"unresolved"`` for a class with a near-active pair not
    yet resolved at ``R_ref``, or None when every pair is resolved.

    Until ``r = rho_k gamma_k alpha^2`` passes ``RESOLVED_R`` the group's
    direction rests near the weighted mean of the pair, and no rate fitted from
    ``R_ref`` on gives how far it still has to turn (``theory_checks.limits``).
    That mean and ``u_k`` lie on the pair's arc, so the direction is within
    ``resolution.plateau`` of ``u_k``, and the part is ``scale`` times that, with
    ``scale`` the quantity's change per unit change of ``u_k``. A quantity whose
    sensitivity is not sized passes ``scale = inf``. ``common.combine`` reports
    FAIL when a deviation exceeds a tolerance with this part, and INCONCLUSIVE
    when it stays within: the plateau leaves the claim undecided.
    """
    if resolution.unresolved is None:
        return None
    i, j, alpha, r = resolution.unresolved
    value = scale * resolution.plateau if math.isfinite(scale) else math.inf
    return ToleranceTerm(
        "unresolved",
        value,
        f"class {resolution.k}: samples {i} and {j} at angle {alpha:.3g} are not "
        f"yet resolved at R_ref = {R_ref:.3g}: rho gamma alpha^2 = {r:.3g} < "
        f"{RESOLVED_R:g} "
        f"(rho = s_k^2 R_ref = {resolution.rho:.3g}), so the group has not begun "
        f"its turn from their weighted mean to u_k; its direction is within "
        f"{resolution.plateau:.3g} of u_k, times {scale:.3g}",
    )


def conditioning(resolution, scale: float, what: str) -> ToleranceTerm:
    """Return the part ``scale * conditioning_k``, the float64 limit on ``u_k`` and
    on the run's direction.

    ``scale`` converts a direction error into the quantity (``s_k`` for a
    block residual, since ``min_g ||W - s u g^T||_F`` is ``s``-Lipschitz in ``u``).
    """
    return ToleranceTerm(
        "conditioning",
        scale * resolution.conditioning,
        f"{scale:.3g} * max over near-active pairs of min(alpha, (3 D + n_k) eps / "
        f"alpha) = {scale:.3g} * {resolution.conditioning:.3g} ({what})",
    )


def tolerance(*terms: ToleranceTerm) -> Tolerance:
    return Tolerance(tuple(terms))
