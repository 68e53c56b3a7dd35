"""Verdicts of the theory checks: PASS, FAIL or INCONCLUSIVE, with their numbers.

A check compares one measured quantity with the theorem's prediction:

- PASS: every hypothesis was verified on the example and the deviation is
  within the tolerance;
- FAIL: every hypothesis was verified and the deviation exceeds the tolerance;
- INCONCLUSIVE: some hypothesis could not be verified (or the integrator did
  not reach the state the claim speaks about); the reason says which.

A tolerance is a sum of named parts (integrator error, float64 roundoff,
distance to the limit still allowed at the reached ``||theta||^2``), each with
the derivation that produced it, so that a report can print where every part
comes from.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any


class Outcome(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class ToleranceTerm:
    """One named part of a tolerance.

    Attributes
    ----------
    name : str
        ``"integrator"``, ``"roundoff"``, ``"asymptotic"`` or another short name.
    value : float
        Its size, in the units of the checked quantity.
    derivation : str
        How the value was obtained, as a formula with the numbers put in.
    """

    name: str
    value: float
    derivation: str


@dataclass(frozen=True)
class Tolerance:
    """A tolerance as the sum of its parts."""

    terms: tuple[ToleranceTerm, ...]

    @property
    def total(self) -> float:
        return math.fsum(term.value for term in self.terms)

    def describe(self) -> str:
        parts = [
            f"{term.name} {term.value:.3g} ({term.derivation})" for term in self.terms
        ]
        if not parts:
            # An exact quantity, such as a yes-or-no outcome, has no part.
            return f"{self.total:.3g} (exact comparison)"
        return f"{self.total:.3g} = " + " + ".join(parts)


@dataclass(frozen=True)
class HypothesisReport:
    """Whether one hypothesis (A1..A5, or a run condition) holds on an example.

    Attributes
    ----------
    name : str
        ``"A1"`` .. ``"A5"``, or e.g. ``"separation"`` for a condition of a run.
    holds : bool
    measured : dict
        The measured values behind the answer (``mu_s``, ``mu_d``, ...).
    message : str
        Why it fails, in words, with the offending values.
    """

    name: str
    holds: bool
    measured: dict = field(default_factory=dict)
    message: str = ""


@dataclass
class Verdict:
    """The outcome of one claim on one example.

    Attributes
    ----------
    claim : str
        Claim id (``"C1"`` .. ``"C14"``, ``"E1"`` .. ``"E3"``, ``"X1"`` .. ``"X8"``).
    outcome : Outcome
    reason : str
        One sentence: what was compared, or which hypothesis failed.
    measured, predicted : float or None
        The compared quantities (None where a hypothesis failed first).
    tolerance : Tolerance or None
    margin : float or None
        ``|measured - predicted| / tolerance``; PASS needs ``margin <= 1``.
    worst : str
        The sample, neuron or class where the deviation is largest.
    integrator : dict
        Status, message and counters of the run the check used.
    eps_sequence : list of float
        Initial scales tried, in order (the refinement before a FAIL).
    hypotheses : list of HypothesisReport
    details : dict
        Further numbers of the check (per class, per neuron, ...).
    """

    claim: str
    outcome: Outcome
    reason: str
    measured: float | None = None
    predicted: float | None = None
    tolerance: Tolerance | None = None
    margin: float | None = None
    worst: str = ""
    integrator: dict = field(default_factory=dict)
    eps_sequence: list = field(default_factory=list)
    hypotheses: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (floats may be inf or nan; the writer maps them)."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        if self.tolerance is not None:
            data["tolerance"]["total"] = self.tolerance.total
        return data

    def describe(self) -> str:
        """Multi-line text for a failure message or a report."""
        lines = [f"{self.claim} {self.outcome.value}: {self.reason}"]
        if self.measured is not None or self.predicted is not None:
            lines.append(f"  measured {self.measured!r}, predicted {self.predicted!r}")
        if self.tolerance is not None:
            lines.append(f"  tolerance {self.tolerance.describe()}")
        if self.margin is not None:
            lines.append(f"  deviation / tolerance = {self.margin:.3g}")
        if self.worst:
            lines.append(f"  worst: {self.worst}")
        if self.eps_sequence:
            lines.append(
                "  eps tried: " + ", ".join(f"{e:.3g}" for e in self.eps_sequence)
            )
        if self.integrator:
            status = self.integrator.get("message", "")
            lines.append(f"  integrator: {status}")
        for report in self.hypotheses:
            if not report.holds:
                lines.append(f"  {report.name} not verified: {report.message}")
        return "\n".join(lines)


def inconclusive(claim: str, reason: str, **extra: Any) -> Verdict:
    return Verdict(claim=claim, outcome=Outcome.INCONCLUSIVE, reason=reason, **extra)
