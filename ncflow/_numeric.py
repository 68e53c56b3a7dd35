"""Small numerical kernels used on hot paths.

``scipy.special.logsumexp`` handles many input types and costs tens of
microseconds per call on small arrays; the integrator calls it thousands of
times per run, so the plain float64 version below is used instead.
"""

from __future__ import annotations

import math

import numpy as np


def logsumexp(values: np.ndarray, axis: int | None = None, weights=None) -> np.ndarray:
    """``log sum exp(values)`` (times ``weights`` if given), stable for large values.

    Entries of ``-inf`` contribute 0; an all ``-inf`` reduction returns ``-inf``.
    With ``axis=None`` the result is a Python float, otherwise an array with
    ``axis`` removed.
    """
    values = np.asarray(values, dtype=np.float64)
    if axis is None:
        return _logsumexp_all(values, weights)
    return _logsumexp_along(values, axis, weights)


def is_number(text: str) -> bool:
    """Return whether ``float(text)`` parses ``text`` (``"inf"`` and ``"nan"``
    included)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


# Largest x with a finite math.exp(x): log of the largest float64.
LOG_MAX_FLOAT = math.log(np.finfo(np.float64).max)


def exp_or_inf(x: float) -> float:
    """Return ``math.exp(x)``, or ``inf`` where it overflows float64."""
    return math.exp(x) if x <= LOG_MAX_FLOAT else math.inf


def power_of_two_scale(values: np.ndarray) -> np.ndarray:
    """Return ``values`` times the power of two that brings the largest
    ``|entry|`` into ``[0.5, 1)`` (unchanged where all are 0 or one is not finite).

    A power of two scales without rounding, so a quantity that does not depend
    on the scale keeps its value, while the squares and Gram matrices formed
    from the result can neither overflow nor underflow. Features of size 1e-150
    gave the standard NC2 as inf, and of size 1e150 as 1, against 0.073 at 1.
    """
    top = float(np.max(np.abs(values))) if values.size else 0.0
    if top == 0.0 or not math.isfinite(top):
        return values
    _, exponent = math.frexp(top)
    return np.ldexp(values, -exponent)


# The two helpers below call ufuncs, their reduce methods and argmax directly,
# because on arrays of tens of entries the ndarray methods (values.max(), .sum(),
# .all()) and np.squeeze cost more than the arithmetic.


def _logsumexp_all(values: np.ndarray, weights) -> float:
    # argmax returns the first nan if there is one, as np.max would.
    top = values.item(values.argmax())
    if not math.isfinite(top):
        if weights is None:
            return top  # +inf, nan, or -inf when every entry is -inf
        top = 0.0
    shifted = np.subtract(values, top)
    np.exp(shifted, out=shifted)
    if weights is not None:
        shifted = shifted * weights
    total = float(np.add.reduce(shifted, axis=None))
    if total > 0.0:
        return top + math.log(total)
    # Only weights reach this line, because unweighted, the term exp(0) = 1 of
    # the maximum makes the total at least 1. A total of 0 gives -inf, and a
    # negative one gives nan with numpy's "invalid value" warning.
    with np.errstate(divide="ignore"):
        return float(np.log(np.float64(total)) + top)


def _logsumexp_along(values: np.ndarray, axis, weights) -> np.ndarray:
    top = np.maximum.reduce(values, axis=axis, keepdims=True)
    # argmin and argmax return the first nan if there is one, so the maxima are
    # all finite when their smallest and largest are.
    all_finite = math.isfinite(top.item(top.argmin())) and math.isfinite(
        top.item(top.argmax())
    )
    if not all_finite:
        top = np.where(np.isfinite(top), top, 0.0)
    shifted = np.subtract(values, top)
    np.exp(shifted, out=shifted)
    if weights is not None:
        shifted = shifted * weights
    total = np.add.reduce(shifted, axis=axis, keepdims=True)
    if (all_finite and weights is None) or np.minimum.reduce(total, axis=None) > 0:
        # Unweighted, every finite maximum adds exp(0) = 1, so no total is 0.
        np.log(total, out=total)
    else:
        with np.errstate(divide="ignore"):
            np.log(total, out=total)
    total += top
    if isinstance(axis, int):
        # Drop the kept axis by a reshape, which is cheaper than np.squeeze.
        position = axis % total.ndim
        return total.reshape(total.shape[:position] + total.shape[position + 1 :])
    return np.squeeze(total, axis=axis)


def find_root(function, low: float, high: float, *, xtol: float = 1e-15) -> float:
    """Root of ``function`` in ``[low, high]``, where its values have opposite signs
    (or one is 0), by the Illinois variant of regula falsi.

    This avoids importing ``scipy.optimize`` (about half a second at start-up)
    for the scalar root finding that the integrator does on dense outputs.
    """
    f_low, f_high = function(low), function(high)
    if f_low == 0:
        return low
    if f_high == 0:
        return high
    if (f_low > 0) == (f_high > 0):
        raise ValueError(
            f"find_root needs a sign change: f({low!r}) = {f_low!r}, "
            f"f({high!r}) = {f_high!r}"
        )
    side = 0
    for _ in range(200):
        mid = (low * f_high - high * f_low) / (f_high - f_low)
        if not low < mid < high:
            mid = 0.5 * (low + high)
        f_mid = function(mid)
        if f_mid == 0 or high - low <= xtol * max(1.0, abs(mid)):
            return mid
        if (f_mid > 0) == (f_high > 0):
            high, f_high = mid, f_mid
            if side == -1:
                f_low *= 0.5
            side = -1
        else:
            low, f_low = mid, f_mid
            if side == 1:
                f_high *= 0.5
            side = 1
    return 0.5 * (low + high)


def find_root_newton(
    function_and_slope,
    low: float,
    high: float,
    *,
    start: float | None = None,
    xtol: float = 1e-15,
    ftol: float = 0.0,
) -> float:
    """Find the root of ``function`` in ``[low, high]`` by Newton's method kept
    inside the bracket. ``function`` must rise from a value ``<= 0`` at ``low``
    to one ``>= 0`` at ``high``.

    ``function_and_slope(s)`` returns the value and the derivative at ``s``. A
    Newton step that leaves the bracket, or a value or slope that is not finite
    (``log t`` is ``-inf`` at ``t = 0``), falls back to bisection. Returns once
    a step or the bracket is below ``xtol * max(1, |s|)``. Where the slope is
    cheap, this takes a few evaluations where ``find_root`` takes about ten.
    The search starts at ``start`` if it is inside the bracket, else at the
    midpoint, and also returns once ``|function| <= ftol``.
    """
    tiny = xtol * max(1.0, abs(low), abs(high))
    s = start if start is not None and low < start < high else 0.5 * (low + high)
    for _ in range(200):
        value, slope = function_and_slope(s)
        if abs(value) <= ftol:
            return s
        if value > 0:
            high = s
        else:
            low = s
        if high - low <= tiny:
            return 0.5 * (low + high)
        newton = s - value / slope if slope > 0 and math.isfinite(value) else math.nan
        if low < newton < high:
            if abs(newton - s) <= xtol * max(1.0, abs(newton)):
                return newton
            s = newton
        else:
            s = 0.5 * (low + high)
    return 0.5 * (low + high)
