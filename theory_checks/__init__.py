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

from ncflow._validation import InvalidArgument
from theory_checks.runs import Example, RunSettings
from theory_checks.verdict import Outcome, Verdict

# Ids of the theorem's claims (C), the errata (E) and the explorations (X).
CLAIM_IDS = (
    *(f"C{number}" for number in range(1, 15)),
    *(f"E{number}" for number in range(1, 4)),
    *(f"X{number}" for number in range(1, 9)),
)


def check(
    claim: str,
    example: Example,
    settings: RunSettings | None = None,
    *,
    require_hypotheses: bool = True,
) -> Verdict:
    """Verdict of ``claim`` on ``example``; see the module docstring.

    Raises
    ------
    InvalidArgument
        For a claim id not in ``CLAIM_IDS``, a C claim that the example's family
        (binary or multi-class) does not have, an ``example`` that is not an
        :class:`Example`, or ``settings`` that are neither None nor a
        :class:`RunSettings`. An example that cannot be integrated at all, such as
        one whose ``eps`` underflows, cannot be constructed. A run that fails
        gives an INCONCLUSIVE verdict instead.
    """
    _check_claim_id(claim)
    if not isinstance(example, Example):
        raise InvalidArgument(
            f"example must be a theory_checks.runs.Example, got "
            f"{type(example).__name__}; build one with "
            "Example(dataset, shapes, eps, loss)"
        )
    if settings is not None and not isinstance(settings, RunSettings):
        raise InvalidArgument(
            f"settings={settings!r} is invalid: it must be a "
            f"theory_checks.runs.RunSettings or None, got {type(settings).__name__}; "
            "build one with RunSettings(rtol=..., norm2_target=...), or leave it out "
            "for the default settings"
        )
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
        from theory_checks import binary as family
    else:
        from theory_checks import multiclass as family
    if claim not in family.CLAIMS:
        kind = "binary" if example.binary else "multi-class"
        raise InvalidArgument(
            f"claim={claim!r} is not a {kind} claim; use one of "
            f"{', '.join(family.CLAIMS)}"
        )
    return family.check(claim, example, settings, require_hypotheses=require_hypotheses)


def _check_claim_id(claim: object) -> None:
    if isinstance(claim, str) and claim in CLAIM_IDS:
        return
    message = (
        f"claim={claim!r} is invalid: it must be one of the claim ids "
        f"{', '.join(CLAIM_IDS)}"
    )
    raise InvalidArgument(message + case_hint(claim, CLAIM_IDS))


def case_hint(claim: object, known) -> str:
    """Return the hint `` (ids are upper case: 'C1')`` for a lower-case id in
    ``known``, else an empty string."""
    if isinstance(claim, str) and claim.upper() in known:
        return f" (ids are upper case: {claim.upper()!r})"
    return ""


__all__ = ["CLAIM_IDS", "Example", "Outcome", "RunSettings", "Verdict", "check"]
