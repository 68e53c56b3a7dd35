"""Example families that ``ncflow verify`` draws, and the claims checked on each.

A family is a Hypothesis strategy of :class:`~theory_checks.runs.Example` objects
that meet the hypotheses of its claims by construction, with the list of claims
checked on every example it draws. Each drawn example is trained once and all of
its family's claims are checked on that one trajectory.

| family | data | shapes | ``eps`` | claims |
|---|---|---|---|---|
| ``binary`` | ``K = 2``, A1 | A2, A3 | ``1e-8 .. 1e-3`` | C1, C2, C4 .. C13 |
| ``multiclass`` | ``K = 3``, A1, A5 | A4 | ``1e-8 .. 1e-5`` | C1, C3 .. C14, E1 .. E3 |

Binary data have margins ``mu_s >= 0.2`` and ``mu_d >= 0.1``.

C3 is stated for ``K > 2``, so it is checked on the multi-class family only. The
multi-class claims and the errata come from ``theory_checks.multiclass`` and
``theory_checks.errata``; :func:`claim_statement` and :func:`claim_module` name
them without importing those modules, so that a family can be planned where one
of them is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis.strategies import SearchStrategy

from ncflow._validation import check_int
from strategies import (
    balanced_binary_shapes,
    binary_datasets,
    init_scales,
    multiclass_datasets,
    semilocal_shapes_for,
)
from theory_checks.explorations import draw_cases
from theory_checks.runs import Example, RunSettings

# Run settings of every family example. Limit claims are checked at
# ||theta||^2 = 1e8, where the distance to the limit left by the slowest
# mechanism (of order ||theta||^-1) is about 1e-4 of its value at
# ||theta||^2 = 1; a binary example of this size reaches it in 1 to 3 s.
# A limit claim that fails there is repeated once at 1e10 (common.refine_norm).
SETTINGS = RunSettings(rtol=1e-7, norm2_target=1e8, norm2_max=1e10)

BINARY_CLAIMS = ("C1", "C2", *(f"C{number}" for number in range(4, 14)))
MULTICLASS_CLAIMS = ("C1", *(f"C{number}" for number in range(3, 15)))
ERRATA = ("E1", "E2", "E3")

# Statements of the errata, used where theory_checks.errata is not importable.
ERRATA_STATEMENTS = {
    "E1": "A1 forces mu_d <= 1/(K-1)",
    "E2": "NC3 target E~/sqrt(K-1) has norm sqrt(K/(K-1)), not 1",
    "E3": "Lemma 3 bound carries X_max^2, not X_max",
}


@dataclass(frozen=True)
class Family:
    """A strategy of examples and the claims checked on each of them.

    Attributes
    ----------
    name : str
        ``"binary"`` or ``"multiclass"``.
    description : str
        What the examples are, in a few words.
    strategy : callable
        Returns the :class:`SearchStrategy` of :class:`Example` objects.
    claims : tuple of str
        Claim ids checked on every example, in report order.
    """

    name: str
    description: str
    strategy: Callable[[], SearchStrategy]
    claims: tuple


@st.composite
def binary_family_examples(draw, label: str = "verify: binary") -> Example:
    """Binary examples that meet A1, A2 and A3 by construction.

    The property suite draws the same family under its own ``label``.
    """
    dataset = draw(
        binary_datasets(
            min_n_per_class=1,
            max_n_per_class=5,
            min_D=2,
            max_D=5,
            min_mu_s=0.2,
            min_mu_d=0.1,
        )
    )
    shapes = draw(balanced_binary_shapes(dataset, min_width=2, max_width=6))
    eps = draw(init_scales(min_exponent=-8, max_exponent=-3))
    loss = draw(st.sampled_from(["exponential", "logistic"]))
    return Example(dataset, shapes, eps, loss, label=label)


@st.composite
def multiclass_family_examples(draw) -> Example:
    """Three-class examples that meet A1, A2, A4 and A5 by construction."""
    dataset = draw(
        multiclass_datasets(
            min_K=3, max_K=3, max_n_per_class=3, max_extra_D=1, with_a5=True
        )
    )
    shapes, groups = draw(semilocal_shapes_for(dataset, max_per_class=2))
    eps = draw(init_scales(min_exponent=-8, max_exponent=-5))
    return Example(
        dataset,
        shapes,
        eps,
        "cross_entropy",
        groups=tuple(int(group) for group in groups),
        label="verify: multiclass",
    )


FAMILIES: dict[str, Family] = {
    "binary": Family(
        "binary",
        "two classes, A1-A3 by construction",
        binary_family_examples,
        BINARY_CLAIMS,
    ),
    "multiclass": Family(
        "multiclass",
        "three classes, A1, A2, A4, A5 by construction",
        multiclass_family_examples,
        MULTICLASS_CLAIMS + ERRATA,
    ),
}


def claim_module(family: str, claim: str) -> str:
    """Return the module whose ``check`` decides ``claim`` on ``family``."""
    if claim.startswith("E"):
        return "theory_checks.errata"
    if family == "binary":
        return "theory_checks.binary"
    return "theory_checks.multiclass"


def claim_statement(family: str, claim: str) -> str:
    """Return a few words of what ``claim`` states (from its module if present)."""
    try:
        module = importlib.import_module(claim_module(family, claim))
    except ImportError:
        module = None
    statements = getattr(module, "STATEMENTS", {})
    if claim in statements:
        return statements[claim]
    return ERRATA_STATEMENTS.get(claim, "")


def draw_examples(strategy: SearchStrategy, count: int, seed: int) -> list[Example]:
    """Draw the first ``count`` distinct examples Hypothesis generates with ``seed``.

    Examples count as distinct by fingerprint; see
    :func:`~theory_checks.explorations.draw_cases`.
    """
    count = check_int("count", count, 1)
    return draw_cases(strategy, count, seed, key=lambda example: example.fingerprint())


__all__ = [
    "BINARY_CLAIMS",
    "ERRATA",
    "FAMILIES",
    "MULTICLASS_CLAIMS",
    "SETTINGS",
    "Family",
    "binary_family_examples",
    "claim_module",
    "claim_statement",
    "draw_examples",
    "multiclass_family_examples",
]
