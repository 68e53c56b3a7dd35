"""Helpers of the argument checks in ``ncflow._validation``."""

from __future__ import annotations

import math

import pytest

from ncflow._validation import round_up


@pytest.mark.parametrize(
    ("value", "expected"),
    [(4.4101e-154, 4.42e-154), (4.42e-154, 4.42e-154), (1.0001, 1.01), (999.1, 1000.0)],
)
def test_round_up_keeps_lower_bound(value, expected):
    rounded = round_up(value)
    assert rounded >= value
    assert math.isclose(rounded, expected, rel_tol=1e-12)
