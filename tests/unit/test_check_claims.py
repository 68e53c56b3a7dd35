"""Validation of the claim id and example given to ``theory_checks.check``."""

from __future__ import annotations

import numpy as np
import pytest

from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.geometry import pseudo_labels
from ncflow.network import Parameters
from theory_checks import CLAIM_IDS, check
from theory_checks.runs import Example


def _binary_example() -> Example:
    X = np.array([[1.0, 0.2], [-0.1, -1.0]])
    dataset = Dataset.from_arrays(X, [0, 1])
    shapes = Parameters(np.array([[0.6, -0.6], [0.8, -0.8]]), np.array([[1.0, -1.0]]))
    return Example(dataset, shapes, 1e-3, "exponential")


def _multiclass_example() -> Example:
    dataset = Dataset.from_arrays(np.eye(3), [0, 1, 2])
    shapes = Parameters(np.eye(3), pseudo_labels(3))
    return Example(dataset, shapes, 1e-3, "cross_entropy")


@pytest.mark.parametrize("claim", [None, 7, "C99", "C0", "E4", "X9", "", " C7"])
def test_unknown_claim_id_lists_valid_ids(claim):
    with pytest.raises(InvalidArgument) as error:
        check(claim, _binary_example())
    message = str(error.value)
    assert message.startswith(f"claim={claim!r} is invalid")
    assert "C1, C2" in message
    assert "C14, E1, E2, E3, X1" in message
    assert message.endswith("X8")


def test_lower_case_claim_id_names_upper_case():
    with pytest.raises(InvalidArgument) as error:
        check("c7", _binary_example())
    assert "claim='c7' is invalid" in str(error.value)
    assert "ids are upper case: 'C7'" in str(error.value)


def test_claim_ids_match_the_check_modules():
    from theory_checks import binary, errata, explorations, multiclass

    known = {*binary.CLAIMS, *multiclass.CLAIMS, *errata.CLAIMS, *explorations.IDS}
    assert known == set(CLAIM_IDS)
    assert len(CLAIM_IDS) == len(set(CLAIM_IDS))


@pytest.mark.parametrize(
    ("claim", "build", "kind"),
    [
        ("C14", _binary_example, "binary"),
        ("C2", _multiclass_example, "multi-class"),
    ],
)
def test_claim_outside_family_names_family(claim, build, kind):
    with pytest.raises(InvalidArgument) as error:
        check(claim, build())
    assert f"claim={claim!r} is not a {kind} claim" in str(error.value)


def test_check_rejects_non_example():
    with pytest.raises(InvalidArgument, match="example must be .*Example, got dict"):
        check("C1", {"eps": 1e-3})


@pytest.mark.parametrize("settings", ["x", {"rtol": 1e-8}, 1e-8])
def test_check_rejects_non_settings(settings):
    with pytest.raises(InvalidArgument) as error:
        check("C1", _binary_example(), settings)
    message = str(error.value)
    assert message.startswith(f"settings={settings!r} is invalid")
    assert f"got {type(settings).__name__}" in message
    assert "RunSettings(" in message
