"""Executable checks of the theorem's claims: verdicts PASS, FAIL or INCONCLUSIVE.

``check(claim, example, settings)`` runs one claim (``"C1"`` .. ``"C14"``,
``"E1"`` .. ``"E3"``, or an exploration ``"X1"`` .. ``"X8"``) on one
:class:`~theory_checks.runs.Example` and returns a
:class:`~theory_checks.verdict.Verdict`. Explorations go to
``theory_checks.explorations``, errata to ``theory_checks.errata``, binary
examples (a scalar-output loss) to ``theory_checks.binary`` and cross-entropy
examples to ``theory_checks.multiclass``.
"""

from __future__ import annotations

from theory_checks.runs import Example, RunSettings
from theory_checks.verdict import Outcome, Verdict


def check(
    claim: str,
    example: Example,
    settings: RunSettings | None = None,
    *,
    require_hypotheses: bool = True,
) -> Verdict:
    """Verdict of ``claim`` on ``example``; see the module docstring."""
    if claim.startswith("X"):
        from theory_checks import explorations

        return explorations.check(
            claim, example, settings, require_hypotheses=require_hypotheses
        )
    if claim.startswith("E"):
        from theory_checks import errata

        return errata.check(
            claim, example, settings, require_hypotheses=require_hypotheses
        )
    if example.binary:
        from theory_checks import binary

        return binary.check(
            claim, example, settings, require_hypotheses=require_hypotheses
        )
    from theory_checks import multiclass

    return multiclass.check(
        claim, example, settings, require_hypotheses=require_hypotheses
    )


__all__ = ["Example", "Outcome", "RunSettings", "Verdict", "check"]
