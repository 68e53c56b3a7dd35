"""Helpers of the argument checks in ``ncflow._validation``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncflow._validation import InvalidArgument, check_array, round_up


@pytest.mark.parametrize(
    ("value", "expected"),
    [(4.4101e-154, 4.42e-154), (4.42e-154, 4.42e-154), (1.0001, 1.01), (999.1, 1000.0)],
)
def test_round_up_keeps_lower_bound(value, expected):
    rounded = round_up(value)
    assert rounded >= value
    assert math.isclose(rounded, expected, rel_tol=1e-12)


def test_complex_array_rejected():
    # NumPy casts a complex array to float64 with a ComplexWarning only, dropping
    # the imaginary part.
    with pytest.raises(InvalidArgument, match="X is invalid: it is complex"):
        check_array("X", np.ones((2, 2), dtype=complex))
