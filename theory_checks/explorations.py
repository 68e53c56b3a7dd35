"""Counterexample searches just outside the theorem's hypotheses: explorations X1-X8.

The theorem of Min, Zhu and Vidal (NeurIPS 2025, "Neural Collapse under Gradient
Flow on Shallow ReLU Networks for Orthogonally Separable Data") is silent outside
its hypotheses. Each exploration draws examples that leave exactly one of them (or
change the setting: the activation, biases, a finite step) and searches for one on
which a claim is violated. A violation found there is a finding about the
theorem's reach, not a bug, so :func:`explore` reports it and never raises on it.

An exploration has

- a Hypothesis strategy of :class:`Case` objects (an example and the run settings
  that differ from the base settings);
- a measurement: verdicts of the claims it asks about, measured with
  ``require_hypotheses=False`` (``verdict.details["outside"]`` names the
  hypotheses that fail on the example);
- a predicate: the case violates the claim when one of the deciding claims is
  FAIL and the example breaks no hypothesis that the exploration keeps.

:func:`explore` runs the predicate under :func:`hypothesis.find`, so the first
violation is shrunk to a small one, saves it as a counterexample record whose
claim is the exploration id, and returns an :class:`ExplorationResult`.
:func:`check` repeats the predicate on one example and is what a replay of such a
record runs.

| id | departure from the theorem | claims measured | hypotheses allowed to fail |
|---|---|---|---|
| X1 | linear activation in place of ReLU | C8 (class-mean frame) | none |
| X2 | large ``eps``, without the repetition at smaller ``eps`` | C4 | none |
| X3 | one pair of samples breaks A1 | C4 | A1 |
| X4 | multi-class, Gaussian shapes in place of A4 | C4, C11 | A4 |
| X5 | multi-class, A5 violated | C4, C11 | A5 |
| X6 | unbalanced Gaussian initialisation | C4, C11 | A2 |
| X7 | biases, as inputs augmented by a constant 1 | C4, C11 | A1 |
| X8 | fixed-step gradient descent in place of the flow | C1, C2, C4 | none |
"""

from __future__ import annotations

import importlib
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, find, given
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as HypothesisSettings
from hypothesis.errors import NoSuchExample
from hypothesis.strategies import SearchStrategy

from ncflow._validation import InvalidArgument, check_int
from ncflow.flow.result import STATUS_NONFINITE
from strategies import (
    a1_breaking_datasets,
    balanced_binary_shapes,
    binary_datasets,
    gaussian_shapes,
    init_scales,
    multiclass_datasets,
    semilocal_shapes_for,
    unbalanced_gaussian,
)
from theory_checks.common import combine, features, limit_points, limit_quantities
from theory_checks.hypotheses import check_a1, check_a3, check_a4, check_a5
from theory_checks.interrupts import checkpoint, deferred
from theory_checks.runs import Example, RunSettings, train
from theory_checks.verdict import Outcome, Verdict, inconclusive

# Base settings of every exploration. Separation (C4) is decided in the alignment
# phase, at ||theta||^2 far below 1e4, and the limit claims (C8, C11) carry the
# asymptotic part of their tolerance at the reached ||theta||^2, so a FAIL at 1e4
# is beyond the distance to the limit still allowed there. 20000 steps bound one
# run of a small example to a few seconds; a harder example ends INCONCLUSIVE. A
# FAIL is repeated at eps / 100, ... down to 1e-8 where eps is unquantified.
SETTINGS = RunSettings(rtol=1e-7, norm2_target=1e4, max_steps=20_000, eps_floor=1e-8)
# Examples generated per search, and evaluations spent on shrinking a violation.
DEFAULT_MAX_EXAMPLES = 4
DEFAULT_MAX_SHRINKS = 8
# Drawn examples of the sweeps of X2 (eps) and X8 (step).
DEFAULT_SWEEP_EXAMPLES = 2
# X2 sweeps eps = 1e-6, 1e-5, ..., 10. Shapes have ||w_j0|| = |v_j0| <= 1, so
# eps = 10 starts at ||theta||^2 <= 200 h, still below the run's target.
X2_EPS_SWEEP = tuple(10.0**exponent for exponent in range(-6, 2))
# X8 runs fixed-step descent with step = factor * 2 / (n X_max^2): the summed
# loss has curvature at most about n X_max^2 once ||theta|| is of order one, so
# factor 1 is the classical stability limit 2 / curvature.
X8_STEP_FACTORS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
# X8 stops at ||theta||^2 = 10, reached by fixed-step descent in a few thousand
# steps, after the alignment phase in which separation is decided.
X8_NORM2_TARGET = 10.0
# Flows from Gaussian multi-class shapes can need many steps: one with n = 3 and
# h = 3 used up 20000 steps, about 1 ms each, for the tight run and again for
# the loose run (40 s, measured on a 2-core machine). X4 stops a run after this
# many steps and counts the case INCONCLUSIVE.
X4_MAX_STEPS = 5_000
# Errors a check may raise on an example outside the domain it was written for
# (an undefined metric, a degenerate class); each is counted as INCONCLUSIVE.
CHECK_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)

# INCONCLUSIVE reasons kept per search, for the report.
MAX_REASONS = 3

FOUND = "found"
NOT_FOUND = "not found"
NOT_AVAILABLE = "not available"


@dataclass(frozen=True)
class Case:
    """One drawn example of an exploration with the settings it is run under.

    Attributes
    ----------
    example : Example
    overrides : tuple of (str, object)
        Fields of :class:`RunSettings` that differ from the base settings.
    """

    example: Example
    overrides: tuple = ()

    def settings(self, base: RunSettings) -> RunSettings:
        return replace(base, **dict(self.overrides))

    def key(self) -> tuple:
        return (self.example.fingerprint(), self.overrides)


@dataclass(frozen=True)
class Exploration:
    """One counterexample search; see the module docstring.

    Attributes
    ----------
    xid : str
        ``"X1"`` .. ``"X8"``.
    question : str
        What the search asks, in a few words.
    departure : str
        How its examples leave the theorem's setting.
    claims : tuple of str
        Claims measured on every case.
    deciding : tuple of str
        Claims whose FAIL is a violation (the others are reported only).
    allowed : tuple of str
        Hypotheses that the examples may break.
    cases : callable
        Returns the strategy of :class:`Case` objects.
    needs : str or None
        A module the measurement needs (``"theory_checks.multiclass"``).
    overrides : tuple of (str, object)
        Fields of :class:`RunSettings` that this exploration changes in the base
        settings given to :func:`explore`.
    """

    xid: str
    question: str
    departure: str
    claims: tuple
    deciding: tuple
    allowed: tuple
    cases: Callable[[], SearchStrategy]
    needs: str | None = None
    overrides: tuple = ()


@dataclass
class ExplorationResult:
    """Outcome of one :func:`explore` call.

    Attributes
    ----------
    xid, question : str
    status : str
        ``"found"``, ``"not found"`` or ``"not available"``.
    tried : int
        Distinct cases evaluated, shrinking included.
    tried_before_found : int or None
        Cases evaluated up to and including the first violation.
    outcomes : dict
        Count of each outcome over the distinct cases evaluated.
    errors : list of str
        Errors the checks raised (each such case counts as INCONCLUSIVE).
    reasons : list of str
        Reasons of the first few INCONCLUSIVE cases.
    record : str or None
        The counterexample record of the smallest violation found.
    verdict : Verdict or None
        Its verdict (claim ``xid``).
    example : dict or None
        A summary of its example and settings.
    table : list of dict
        The sweep of X2 (eps) or X8 (step); empty for the others.
    note : str
        Why the search did not run, or what limits its result.
    seconds : float
        Wall-clock time of the call.
    """

    xid: str
    question: str
    status: str
    tried: int = 0
    tried_before_found: int | None = None
    outcomes: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    record: str | None = None
    verdict: Verdict | None = None
    example: dict | None = None
    table: list = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    @property
    def found(self) -> bool:
        return self.status == FOUND

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the writer maps infinite and NaN floats)."""
        return {
            "xid": self.xid,
            "question": self.question,
            "status": self.status,
            "found": self.found,
            "tried": self.tried,
            "tried_before_found": self.tried_before_found,
            "outcomes": dict(self.outcomes),
            "errors": list(self.errors),
            "reasons": list(self.reasons),
            "record": self.record,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "example": self.example,
            "table": list(self.table),
            "note": self.note,
            "seconds": self.seconds,
        }


# -- strategies --------------------------------------------------------------------


def _binary_data() -> SearchStrategy:
    # Small problems keep a run to a second or two and shrinking cheap.
    return binary_datasets(
        min_n_per_class=1,
        max_n_per_class=4,
        min_D=2,
        max_D=4,
        min_mu_s=0.2,
        min_mu_d=0.1,
    )


@st.composite
def _binary_examples(draw, *, activation: str = "relu", min_exponent: float = -6.0):
    dataset = draw(_binary_data())
    shapes = draw(balanced_binary_shapes(dataset, min_width=2, max_width=5))
    eps = draw(init_scales(min_exponent=min_exponent, max_exponent=-3))
    loss = draw(st.sampled_from(["exponential", "logistic"]))
    return Example(dataset, shapes, eps, loss, activation=activation)


def _x1_cases() -> SearchStrategy:
    return _binary_examples(activation="linear").map(
        lambda example: Case(replace(example, label="X1: linear activation"))
    )


@st.composite
def _x2_cases(draw):
    example = draw(_binary_examples())
    # Shrinks towards the smallest eps of the range.
    eps = draw(init_scales(min_exponent=-3, max_exponent=0))
    example = replace(example.with_eps(eps), label="X2: large eps")
    # eps_floor = eps turns off the repetition at smaller eps before a FAIL.
    return Case(example, (("eps_floor", eps),))


@st.composite
def _x3_cases(draw):
    dataset = draw(
        a1_breaking_datasets(min_K=2, max_K=2, max_n_per_class=4, max_extra_D=1)
    )
    shapes = draw(balanced_binary_shapes(dataset, min_width=2, max_width=5))
    eps = draw(init_scales(min_exponent=-6, max_exponent=-3))
    loss = draw(st.sampled_from(["exponential", "logistic"]))
    return Case(Example(dataset, shapes, eps, loss, label="X3: one pair breaks A1"))


@st.composite
def _x4_cases(draw):
    # A5 is kept, so that the Gaussian shapes are the only departure.
    dataset = draw(
        multiclass_datasets(
            min_K=3, max_K=3, max_n_per_class=3, max_extra_D=1, with_a5=True
        )
    )
    width = draw(st.integers(dataset.K, 2 * dataset.K))
    shapes = draw(gaussian_shapes(dataset.D, width, dataset.K))
    eps = draw(init_scales(min_exponent=-6, max_exponent=-3))
    label = "X4: Gaussian shapes in place of A4"
    return Case(Example(dataset, shapes, eps, "cross_entropy", label=label))


@st.composite
def _x5_cases(draw):
    dataset = draw(
        multiclass_datasets(
            min_K=3, max_K=3, max_n_per_class=3, max_extra_D=1, with_a5=False
        )
    )
    shapes, groups = draw(semilocal_shapes_for(dataset, max_per_class=2))
    eps = draw(init_scales(min_exponent=-6, max_exponent=-3))
    example = Example(
        dataset,
        shapes,
        eps,
        "cross_entropy",
        groups=tuple(int(group) for group in groups),
        label="X5: A5 violated",
    )
    return Case(example)


@st.composite
def _x6_cases(draw):
    dataset = draw(_binary_data())
    width = draw(st.integers(2, 5))
    # Unit-variance entries as shapes and eps as the standard deviation: the
    # paper's experiments use variance 1e-6, that is eps = 1e-3.
    shapes = draw(unbalanced_gaussian(dataset.D, width, 1, 1.0))
    eps = draw(init_scales(min_exponent=-4, max_exponent=-2))
    loss = draw(st.sampled_from(["exponential", "logistic"]))
    label = "X6: unbalanced Gaussian initialisation"
    example = Example(dataset, shapes, eps, loss, balanced=False, label=label)
    return Case(example)


def _keeps_a3(case: Case) -> bool:
    """Whether the shapes meet A3, so that A2 is the only hypothesis X6 breaks."""
    return check_a3(case.example.dataset, case.example.shapes).holds


@st.composite
def _x7_cases(draw):
    dataset = draw(_binary_data()).with_bias()
    # Shapes are drawn for the augmented inputs, so A2 and A3 hold on them.
    shapes = draw(balanced_binary_shapes(dataset, min_width=2, max_width=5))
    eps = draw(init_scales(min_exponent=-6, max_exponent=-3))
    loss = draw(st.sampled_from(["exponential", "logistic"]))
    label = "X7: inputs augmented by a constant 1"
    return Case(Example(dataset, shapes, eps, loss, label=label))


def x8_unit_step(dataset) -> float:
    """``2 / (n X_max^2)``, the stability limit of fixed-step descent (see X8)."""
    x_max = float(np.max(np.linalg.norm(dataset.X, axis=1)))
    return 2.0 / (dataset.n * x_max**2)


def x8_overrides(dataset, factor: float) -> tuple:
    return (
        ("method", "euler"),
        ("step", float(factor * x8_unit_step(dataset))),
        ("norm2_target", X8_NORM2_TARGET),
    )


@st.composite
def _x8_cases(draw):
    example = replace(draw(_binary_examples()), label="X8: fixed-step descent")
    # The step factor is 10**u with u in [0, 3]; it shrinks towards factor 1.
    factor = 10.0 ** draw(st.floats(0.0, 3.0, allow_nan=False))
    return Case(example, x8_overrides(example.dataset, factor))


# -- measurements ------------------------------------------------------------------


def _hypothesis_reports(example: Example) -> list:
    from theory_checks.binary import hypotheses

    return hypotheses(example, "C8")


def class_mean_frame(example: Example, settings: RunSettings) -> Verdict:
    """C8 measured at ``theta_bar`` without the premise ``t >= T*``.

    The binary check of C8 needs a separated pattern, which a linear network never
    has (every unit is active on every sample). This measures the cosine of the
    two class-mean feature directions at the end of the run directly, against the
    claim's 0, with the tolerance parts of the limit claims. For a linear network
    ``W_bar`` tends to rank one, so every feature lies on one line and the cosine
    tends to -1 (our derivation).
    """
    reports = _hypothesis_reports(example)
    outside = [report.name for report in reports if not report.holds]
    run = train(example, settings)
    if not run.reached_target:
        return inconclusive(
            "C8",
            f"the run ended at ||theta||^2 = {run.result.norm2:.3g} before the target "
            f"{settings.norm2_target:.3g}: {run.result.message}",
            hypotheses=reports,
            details={"outside": outside},
        )
    points = limit_points(run)
    if points is None:
        return inconclusive(
            "C8",
            "no trajectory record before R / reference_ratio",
            hypotheses=reports,
            details={"outside": outside},
        )

    X, labels = example.dataset.X, example.dataset.labels
    name = "cos(phibar_0, phibar_1) of the class-mean feature directions"

    def measure(theta) -> dict:
        phi = features(example, X, theta.W)
        sums = np.stack([phi[labels == k].sum(axis=0) for k in range(2)])
        norms = np.linalg.norm(sums, axis=1)
        if not np.all(norms > 0):
            return {name: math.nan}
        return {name: float(sums[0] @ sums[1] / (norms[0] * norms[1]))}

    if not math.isfinite(measure(points.end)[name]):
        return inconclusive(
            "C8",
            "a class-mean feature is zero at theta_bar, so it has no direction",
            hypotheses=reports,
            details={"outside": outside},
        )
    quantities = limit_quantities(
        points,
        measure,
        {name: 0.0},
        roundoff=(example.dataset.n + example.shapes.width, 1.0),
    )
    verdict = combine(
        "C8",
        "class-mean frame at theta_bar, measured without the separation premise",
        quantities,
        run,
        reports,
    )
    verdict.details["outside"] = outside
    verdict.details["cosine"] = quantities[0].value
    return verdict


def _claim_verdicts(claims: tuple) -> Callable[[Example, RunSettings], list]:
    def measure(example: Example, settings: RunSettings) -> list:
        from theory_checks import check as check_claim

        return [
            check_claim(claim, example, settings, require_hypotheses=False)
            for claim in claims
        ]

    return measure


def _x1_measure(example: Example, settings: RunSettings) -> list:
    return [class_mean_frame(example, settings)]


def _x8_measure(example: Example, settings: RunSettings) -> list:
    verdicts = _claim_verdicts(("C1", "C2", "C4"))(example, settings)
    run = train(example, settings)
    if run.result.status == STATUS_NONFINITE:
        # A diverged descent has no sign or pattern to compare; C2 and C4 would
        # measure NaN. It is reported, not counted as a violation.
        step = settings.step
        for verdict in verdicts[1:]:
            verdict.outcome = Outcome.INCONCLUSIVE
            verdict.reason = (
                f"fixed-step descent with step {step:.3g} diverged "
                f"({run.result.message}), so {verdict.claim} has no trajectory to "
                "measure"
            )
    return verdicts


EXPLORATIONS: dict[str, Exploration] = {
    exploration.xid: exploration
    for exploration in (
        Exploration(
            "X1",
            "linear activation: antipodal class features, no orthogonal frame",
            "linear activation in place of ReLU",
            ("C8",),
            ("C8",),
            (),
            _x1_cases,
        ),
        Exploration(
            "X2",
            "large eps: the scale at which separation stops",
            "large eps, without the repetition at smaller eps",
            ("C4",),
            ("C4",),
            (),
            _x2_cases,
        ),
        Exploration(
            "X3",
            "one pair breaks A1: does separation still happen",
            "one within-class or cross-class pair breaks A1",
            ("C4",),
            ("C4",),
            ("A1",),
            _x3_cases,
        ),
        Exploration(
            "X4",
            "multi-class with Gaussian shapes in place of A4",
            "Gaussian shapes in place of semi-local ones",
            ("C4", "C11"),
            ("C4", "C11"),
            ("A4",),
            _x4_cases,
            needs="theory_checks.multiclass",
            overrides=(("max_steps", X4_MAX_STEPS),),
        ),
        Exploration(
            "X5",
            "multi-class with A5 violated",
            "data that violate A5",
            ("C4", "C11"),
            ("C4", "C11"),
            ("A5",),
            _x5_cases,
            needs="theory_checks.multiclass",
        ),
        Exploration(
            "X6",
            "unbalanced Gaussian initialisation, as in the paper's experiments",
            "unbalanced Gaussian initialisation",
            ("C4", "C11"),
            ("C4", "C11"),
            ("A2",),
            lambda: _x6_cases().filter(_keeps_a3),
        ),
        Exploration(
            "X7",
            "biases, as inputs augmented by a constant 1",
            "inputs augmented by a constant 1",
            ("C4", "C11"),
            ("C4", "C11"),
            ("A1",),
            _x7_cases,
        ),
        Exploration(
            "X8",
            "fixed-step gradient descent in place of the flow",
            "fixed-step gradient descent",
            ("C1", "C2", "C4"),
            ("C2", "C4"),
            (),
            _x8_cases,
        ),
    )
}
STATEMENTS = {xid: exploration.question for xid, exploration in EXPLORATIONS.items()}
IDS = tuple(EXPLORATIONS)
_MEASURES = {
    "X1": _x1_measure,
    "X2": _claim_verdicts(("C4",)),
    "X3": _claim_verdicts(("C4",)),
    "X4": _claim_verdicts(("C4", "C11")),
    "X5": _claim_verdicts(("C4", "C11")),
    "X6": _claim_verdicts(("C4", "C11")),
    "X7": _claim_verdicts(("C4", "C11")),
    "X8": _x8_measure,
}


def unavailable_reason(xid: str) -> str | None:
    """Why exploration ``xid`` cannot run here, or None when it can."""
    needs = _exploration(xid).needs
    if needs is None:
        return None
    try:
        importlib.import_module(needs)
    except ImportError as error:
        return f"{needs} is not importable ({type(error).__name__}: {error})"
    return None


# -- the predicate -----------------------------------------------------------------


def combine_verdicts(xid: str, verdicts: list) -> Verdict:
    """The exploration's verdict from the verdicts of its claims.

    FAIL (a violation found) when a deciding claim FAILs and the example breaks no
    hypothesis outside the exploration's ``allowed`` set; PASS when every deciding
    claim PASSes; INCONCLUSIVE otherwise. The worst deciding verdict gives the
    numbers.
    """
    exploration = _exploration(xid)
    deciding = [v for v in verdicts if v.claim in exploration.deciding]
    outside = sorted({name for v in verdicts for name in v.details.get("outside", [])})
    kept_broken = [name for name in outside if name not in exploration.allowed]
    details = {
        "exploration": True,
        "departure": exploration.departure,
        "outside": outside,
        "claims": {v.claim: v.outcome.value for v in verdicts},
        "measured": {v.claim: v.measured for v in verdicts},
        "verdicts": [v.to_dict() for v in verdicts],
    }

    failed = [v for v in deciding if v.outcome is Outcome.FAIL]
    if failed and kept_broken:
        return inconclusive(
            xid,
            f"{failed[0].claim} fails, but the example also breaks "
            f"{', '.join(kept_broken)}, which {xid} keeps",
            details=details,
        )
    if failed:
        main = max(failed, key=lambda v: -1.0 if v.margin is None else v.margin)
        reason = f"{main.claim} violated ({exploration.departure}"
        if outside:
            reason += f"; outside {', '.join(outside)}"
        reason += f"): {main.reason}"
        outcome = Outcome.FAIL
    elif deciding and all(v.outcome is Outcome.PASS for v in deciding):
        main = max(deciding, key=lambda v: -1.0 if v.margin is None else v.margin)
        claims = ", ".join(v.claim for v in deciding)
        verb = "holds" if len(deciding) == 1 else "hold"
        reason = f"{claims} {verb} on this example ({exploration.departure})"
        outcome = Outcome.PASS
    else:
        main = next(v for v in deciding if v.outcome is Outcome.INCONCLUSIVE)
        reason = f"{main.claim} INCONCLUSIVE: {main.reason}"
        outcome = Outcome.INCONCLUSIVE
    details["violated"] = main.claim if outcome is Outcome.FAIL else None
    return Verdict(
        claim=xid,
        outcome=outcome,
        reason=reason,
        measured=main.measured,
        predicted=main.predicted,
        tolerance=main.tolerance,
        margin=main.margin,
        worst=main.worst,
        integrator=main.integrator,
        eps_sequence=list(main.eps_sequence),
        hypotheses=list(main.hypotheses),
        details=details,
    )


def check(
    xid: str,
    example: Example,
    settings: RunSettings | None = None,
    *,
    require_hypotheses: bool = False,
) -> Verdict:
    """Verdict of exploration ``xid`` on one example: FAIL when the claim is violated.

    This is what a replay of an exploration's record runs, with the record's
    settings. An example that does not depart as ``xid`` requires
    (:func:`missing_departure`) is INCONCLUSIVE without a run.
    ``require_hypotheses`` is accepted for the signature of
    :func:`theory_checks.check` and ignored: an exploration always measures
    outside the hypotheses.

    Raises
    ------
    InvalidArgument
        For an unknown ``xid``, or where the exploration's measurement needs a
        module that is not importable here.
    """
    del require_hypotheses
    _exploration(xid)
    reason = unavailable_reason(xid)
    if reason is not None:
        raise InvalidArgument(f"exploration {xid} is not available: {reason}")
    settings = SETTINGS if settings is None else settings
    missing = missing_departure(xid, example, settings)
    if missing is not None:
        departure = _exploration(xid).departure
        return inconclusive(
            xid,
            f"the example does not depart as {xid} requires ({departure}): {missing}; "
            "check the theorem's claims with theory_checks.check(claim, example), "
            f"or give {xid} an example that departs",
            details={"exploration": True, "departure": departure, "departs": False},
        )
    return combine_verdicts(xid, _MEASURES[xid](example, settings))


def missing_departure(xid: str, example: Example, settings: RunSettings) -> str | None:
    """Return what keeps ``example`` (run under ``settings``) from departing from
    the theorem's setting as exploration ``xid`` requires, or None where it departs.

    The searches draw only departing examples, but :func:`check` takes any. On
    one that does not depart, an exploration's verdict would name a departure
    that never happened.
    """
    if xid == "X1" and example.activation != "linear":
        return f"activation={example.activation!r}, not 'linear'"
    if xid == "X2" and not settings.eps_floor >= example.eps:
        return (
            f"eps_floor={settings.eps_floor:g} is below eps={example.eps:g}, so the "
            "run is repeated at smaller eps; set eps_floor=eps"
        )
    if xid == "X3" and check_a1(example.dataset).holds:
        return "A1 holds on its dataset"
    if xid == "X4":
        groups = example.neuron_groups()
        if check_a4(example.dataset, example.shapes, groups).holds:
            return "its shapes meet A4"
    if xid == "X5" and check_a5(example.dataset).holds:
        return "A5 holds on its dataset"
    if xid == "X6" and example.balanced:
        return "balanced=True"
    if xid == "X7" and not np.all(example.dataset.X[:, -1] == 1.0):
        return "the last input coordinate is not a constant 1 (Dataset.with_bias)"
    if xid == "X8" and settings.method != "euler":
        return f"method={settings.method!r}, not 'euler'"
    return None


def _evaluate(xid: str, case: Case, base: RunSettings) -> tuple[Verdict, str | None]:
    """The case's verdict, and the text of an error a check raised (else None)."""
    try:
        return check(xid, case.example, case.settings(base)), None
    except CHECK_ERRORS as error:
        text = f"{type(error).__name__}: {error}"
        return inconclusive(xid, f"a check raised {text}"), text


class _Search:
    """The predicate given to :func:`hypothesis.find`, with a cache and a budget.

    Every distinct case is evaluated once. After the first violation, at most
    ``max_shrinks`` new cases are evaluated; later new cases count as no
    violation, while cases seen before keep their verdict, so that Hypothesis's
    final replay of the smallest violation agrees with its first evaluation.

    NOTE: Hypothesis also stops shrinking after 300 s of wall time
    (``MAX_SHRINKING_SECONDS`` in Hypothesis 6.155). A search whose shrink
    evaluations take longer than that together can end at another smallest
    violation from run to run.
    """

    def __init__(self, xid: str, base: RunSettings, max_shrinks: int) -> None:
        self.xid = xid
        self.base = base
        self.max_shrinks = max_shrinks
        self.verdicts: dict[tuple, Verdict] = {}
        self.errors: list[str] = []
        self.reasons: list[str] = []
        self.shrinks = 0
        self.tried_before_found: int | None = None

    def __call__(self, case: Case) -> bool:
        key = case.key()
        if key in self.verdicts:
            return self.verdicts[key].outcome is Outcome.FAIL
        if self.tried_before_found is not None:
            if self.shrinks >= self.max_shrinks:
                return False
            self.shrinks += 1

        verdict, error = _evaluate(self.xid, case, self.base)
        if error is not None:
            self.errors.append(error)
        inconclusive = verdict.outcome is Outcome.INCONCLUSIVE
        if inconclusive and len(self.reasons) < MAX_REASONS:
            self.reasons.append(verdict.reason)
        self.verdicts[key] = verdict
        violated = verdict.outcome is Outcome.FAIL
        if violated and self.tried_before_found is None:
            self.tried_before_found = len(self.verdicts)
        return violated

    def outcomes(self) -> dict[str, int]:
        counts = {outcome.value: 0 for outcome in Outcome}
        for verdict in self.verdicts.values():
            counts[verdict.outcome.value] += 1
        return counts


@contextmanager
def without_local_constants() -> Iterator[None]:
    """Keep Hypothesis from mixing literals of the loaded project modules into draws.

    Hypothesis 6.131 and later draw, now and then, a literal found in the source
    of the project's modules that are loaded at that moment, so the same seed
    draws different examples in a process that has imported more of the
    project. Inside this context the pool of such literals is empty and the
    draws depend on the seed alone.

    NOTE: this replaces ``_get_local_constants`` of Hypothesis's private
    ``providers`` module (checked with Hypothesis 6.155); where that name is
    missing the context does nothing, and draws may again depend on the loaded
    modules.
    """
    try:
        from hypothesis.internal.conjecture import providers

        original = providers._get_local_constants
        empty = providers.Constants()
        cache = providers.CONSTANTS_CACHE
    except (ImportError, AttributeError):
        yield
        return
    providers._get_local_constants = lambda: empty
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def _search_settings(max_examples: int) -> HypothesisSettings:
    return HypothesisSettings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
    )


# -- the search --------------------------------------------------------------------


def explore(
    xid: str,
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    settings: RunSettings | None = None,
    record_dir: str | Path | None = None,
    max_shrinks: int = DEFAULT_MAX_SHRINKS,
    sweep_examples: int = DEFAULT_SWEEP_EXAMPLES,
    seed: int = 0,
) -> ExplorationResult:
    """Search for a violation of exploration ``xid``'s claims; see the module docstring.

    Parameters
    ----------
    xid : str
        ``"X1"`` .. ``"X8"``.
    max_examples : int
        Cases Hypothesis generates before it gives up, at least 1.
    settings : RunSettings, optional
        Base run settings (default :data:`SETTINGS`); a case's own overrides (the
        eps floor of X2, the method and step of X8) are applied on top.
    record_dir : str or path, optional
        Where the smallest violation is written as a counterexample record (claim
        ``xid``); no record is written when omitted.
    max_shrinks : int
        New cases evaluated while shrinking a violation, at least 0.
    sweep_examples : int
        Drawn examples of the eps sweep of X2 and the step sweep of X8 (0: none).
    seed : int
        Seed of the search: the same seed draws the same cases.

    Returns
    -------
    ExplorationResult
        ``status`` ``"found"`` with the record, ``"not found"`` with the number of
        cases tried, or ``"not available"`` with the reason.

    Raises
    ------
    InvalidArgument
        For an unknown ``xid`` or an invalid budget. A violation is never raised.
    """
    exploration = _exploration(xid)
    max_examples = check_int(
        "max_examples", max_examples, 1, fix="give at least 1 example"
    )
    max_shrinks = check_int(
        "max_shrinks", max_shrinks, 0, fix="give 0 or more shrinking steps"
    )
    sweep_examples = check_int(
        "sweep_examples", sweep_examples, 0, fix="give 0 or more sweep examples"
    )
    seed = check_int("seed", seed, 0, fix="give a seed of 0 or more")
    base = SETTINGS if settings is None else settings
    base = replace(base, **dict(exploration.overrides))
    start = time.perf_counter()

    reason = unavailable_reason(xid)
    if reason is not None:
        return ExplorationResult(
            xid,
            exploration.question,
            NOT_AVAILABLE,
            note=f"not available: {reason}",
        )

    search = _Search(xid, base, max_shrinks)
    try:
        with without_local_constants():
            smallest = find(
                exploration.cases(),
                search,
                settings=_search_settings(max_examples),
                random=random.Random(seed),
            )
    except NoSuchExample:
        smallest = None

    result = ExplorationResult(
        xid,
        exploration.question,
        NOT_FOUND if smallest is None else FOUND,
        tried=len(search.verdicts),
        tried_before_found=search.tried_before_found,
        outcomes=search.outcomes(),
        errors=search.errors,
        reasons=search.reasons,
    )
    if smallest is not None:
        _attach_counterexample(result, search, smallest, base, record_dir)
    else:
        result.note = (
            f"no violation in {result.tried} cases ({_outcome_text(result.outcomes)})"
        )
    if xid in _SWEEPS and sweep_examples:
        result.table = _SWEEPS[xid](exploration, base, sweep_examples, seed)
    result.seconds = time.perf_counter() - start
    return result


def _attach_counterexample(
    result: ExplorationResult,
    search: _Search,
    case: Case,
    base: RunSettings,
    record_dir: str | Path | None,
) -> None:
    from theory_checks.records import write_record

    verdict = search.verdicts[case.key()]
    settings = case.settings(base)
    result.verdict = verdict
    result.example = describe_case(case, base)
    shrunk = "" if search.shrinks == 0 else f", shrunk in {search.shrinks} evaluations"
    cases = "case" if result.tried_before_found == 1 else "cases"
    result.note = (
        f"violation after {result.tried_before_found} {cases}{shrunk}: {verdict.reason}"
    )
    if record_dir is not None:
        path = write_record(record_dir, result.xid, case.example, settings, verdict)
        result.record = str(path)


def describe_case(case: Case, base: RunSettings) -> dict[str, Any]:
    """Summary of a case's example and settings, for reports."""
    example = case.example
    dataset = example.dataset
    a1 = check_a1(dataset)
    settings = case.settings(base)
    return {
        "label": example.label,
        "dataset": dataset.name,
        "n": dataset.n,
        "D": dataset.D,
        "K": dataset.K,
        "h": example.shapes.width,
        "eps": example.eps,
        "loss": example.loss,
        "activation": example.activation,
        "balanced": example.balanced,
        "mu_s": a1.measured["mu_s"],
        "mu_d": a1.measured["mu_d"],
        "method": settings.method,
        "step": settings.step,
        "norm2_target": settings.norm2_target,
    }


def _outcome_text(outcomes: dict) -> str:
    return ", ".join(f"{count} {name}" for name, count in outcomes.items() if count)


def _exploration(xid: Any) -> Exploration:
    if xid not in EXPLORATIONS:
        raise InvalidArgument(
            f"xid={xid!r} is not an exploration; use one of {', '.join(IDS)}"
        )
    return EXPLORATIONS[xid]


# -- sweeps ------------------------------------------------------------------------


def sweep_cases(strategy: SearchStrategy, count: int, seed: int) -> list:
    """``count`` drawn cases for a sweep, leaving out Hypothesis's first one.

    Hypothesis generates the strategy's simplest case first (two samples, one
    direction per class, ``mu_s = mu_d = 1``), which shows nothing about how the
    answer depends on the data margins.
    """
    return draw_cases(strategy, count + 1, seed)[1:]


def draw_cases(
    strategy: SearchStrategy,
    count: int,
    seed: int,
    key: Callable[[Any], Any] = lambda case: case.key(),
) -> list:
    """The first ``count`` distinct cases Hypothesis generates with ``seed``.

    The same strategy, count and seed give the same cases in the same order:
    there is no example database, only the generation phase runs, and no
    literals of loaded modules are drawn (:func:`without_local_constants`).
    Cases with equal ``key`` count once, so fewer than ``count`` may come back.
    """
    drawn: dict[Any, Any] = {}

    @hypothesis_seed(seed)
    @HypothesisSettings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(strategy)
    def collect(case: Any) -> None:
        checkpoint()
        drawn.setdefault(key(case), case)

    with without_local_constants(), deferred():
        collect()
    return list(drawn.values())[:count]


def _sweep_x2(
    exploration: Exploration, base: RunSettings, count: int, seed: int
) -> list:
    """C4 at eps = 1e-6, 1e-5, ..., 1 on drawn examples, until it fails."""
    rows = []
    for case in sweep_cases(exploration.cases(), count, seed):
        example = case.example
        a1 = check_a1(example.dataset)
        outcomes = {}
        largest_separated = smallest_failed = None
        for eps in X2_EPS_SWEEP:
            if eps**2 * example.shapes.norm2() >= base.norm2_target:
                # The run would start beyond its end condition.
                outcomes[f"{eps:.0e}"] = "start above target"
                break
            trial = Case(example.with_eps(eps), (("eps_floor", eps),))
            verdict, _ = _evaluate("X2", trial, base)
            c4 = verdict.details.get("claims", {}).get("C4", verdict.outcome.value)
            outcomes[f"{eps:.0e}"] = c4
            if c4 == Outcome.PASS.value:
                largest_separated = eps
            if c4 == Outcome.FAIL.value:
                smallest_failed = eps
                break
        rows.append(
            {
                "n": example.dataset.n,
                "D": example.dataset.D,
                "h": example.shapes.width,
                "mu_s": a1.measured["mu_s"],
                "mu_d": a1.measured["mu_d"],
                "x_max_over_x_min": a1.measured["x_max"] / a1.measured["x_min"],
                "loss": example.loss,
                "largest_eps_separated": largest_separated,
                "smallest_eps_failed": smallest_failed,
                "C4_by_eps": outcomes,
            }
        )
    return rows


def _sweep_x8(
    exploration: Exploration, base: RunSettings, count: int, seed: int
) -> list:
    """C1, C2 and C4 under the flow and fixed steps ``factor * 2 / (n X_max^2)``."""
    rows = []
    for case in sweep_cases(exploration.cases(), count, seed):
        example = case.example
        unit = x8_unit_step(example.dataset)
        flow = (("norm2_target", X8_NORM2_TARGET),)
        runs = [("flow", None, flow)] + [
            (f"{factor:g}", factor, x8_overrides(example.dataset, factor))
            for factor in X8_STEP_FACTORS
        ]
        first_c2 = first_c4 = None
        steps = []
        for name, factor, overrides in runs:
            verdict, _ = _evaluate("X8", Case(example, overrides), base)
            claims = verdict.details.get("claims", {})
            measured = verdict.details.get("measured", {})
            step = None if factor is None else factor * unit
            if factor is not None and claims.get("C2") == Outcome.FAIL.value:
                first_c2 = step if first_c2 is None else first_c2
            if factor is not None and claims.get("C4") == Outcome.FAIL.value:
                first_c4 = step if first_c4 is None else first_c4
            steps.append(
                {
                    "run": name if factor is None else f"step {name} x 2/(n X_max^2)",
                    "step": step,
                    "C1_deviation": measured.get("C1"),
                    "C1": claims.get("C1"),
                    "C2_min_sign_ratio": measured.get("C2"),
                    "C2": claims.get("C2"),
                    "C4": claims.get("C4"),
                }
            )
        rows.append(
            {
                "n": example.dataset.n,
                "D": example.dataset.D,
                "h": example.shapes.width,
                "eps": example.eps,
                "loss": example.loss,
                "unit_step": unit,
                "first_step_C2_fails": first_c2,
                "first_step_C4_fails": first_c4,
                "runs": steps,
            }
        )
    return rows


_SWEEPS = {"X2": _sweep_x2, "X8": _sweep_x8}


__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "DEFAULT_MAX_SHRINKS",
    "DEFAULT_SWEEP_EXAMPLES",
    "EXPLORATIONS",
    "IDS",
    "SETTINGS",
    "STATEMENTS",
    "Case",
    "Exploration",
    "ExplorationResult",
    "check",
    "class_mean_frame",
    "combine_verdicts",
    "describe_case",
    "draw_cases",
    "sweep_cases",
    "explore",
    "unavailable_reason",
    "without_local_constants",
    "x8_unit_step",
]
