"""Argument checks shared by the public functions, the strategies and the CLI.

Each checker names the parameter, shows the value it received and, where one is
known, the fix, so that ``eps=0.0`` reads as ``eps=0.0 is invalid: it must be > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


class InvalidArgument(ValueError):
    """An argument that fails validation: the message names it and shows its value."""


class NcflowWarning(UserWarning):
    """Base category of the warnings this package emits."""


def _fail(name: str, value: Any, requirement: str, fix: str | None) -> None:
    message = f"{name}={value!r} is invalid: it must be {requirement}"
    if fix:
        message += f"; {fix}"
    raise InvalidArgument(message)


def round_up(value: float, digits: int = 3) -> float:
    """Return ``value > 0`` rounded up to ``digits`` significant digits, so that a
    lower bound printed in a message with ``digits`` digits still holds."""
    unit = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return math.ceil(value / unit) * unit


def check_real(name: str, value: Any, fix: str | None = None) -> float:
    """Return ``value`` as a finite float, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.floating, np.integer)
    ):
        _fail(name, value, "a real number", fix)
    value = float(value)
    if not math.isfinite(value):
        _fail(name, value, "finite", fix)
    return value


def check_positive(name: str, value: Any, *, fix: str | None = None) -> float:
    value = check_real(name, value, fix)
    if value <= 0:
        _fail(name, value, "> 0", fix)
    return value


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    fix: str | None = None,
) -> float:
    """Check ``low <= value <= high`` (``<`` where the end is open)."""
    value = check_real(name, value, fix)
    if low is not None and (value < low or (low_open and value == low)):
        _fail(name, value, f"{'>' if low_open else '>='} {low}", fix)
    if high is not None and (value > high or (high_open and value == high)):
        _fail(name, value, f"{'<' if high_open else '<='} {high}", fix)
    return value


def check_int(
    name: str,
    value: Any,
    low: int | None = None,
    high: int | None = None,
    *,
    fix: str | None = None,
) -> int:
    """Check that ``value`` is an integer (not a bool) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(name, value, "an integer", fix)
    value = int(value)
    if low is not None and value < low:
        _fail(name, value, f">= {low}", fix)
    if high is not None and value > high:
        _fail(name, value, f"<= {high}", fix)
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        _fail(name, value, "one of " + ", ".join(repr(c) for c in choices), None)
    return value


def check_path(name: str, value: str | Path, *, fix: str | None = None) -> Path:
    """Return ``value`` as a Path, rejecting an empty or blank string.

    ``Path("")`` is the current directory, so an empty option value would silently
    write there. A Path object is returned as it is.
    """
    if isinstance(value, str) and not value.strip():
        message = f"{name}={value!r} is invalid: it is empty"
        if fix:
            message += f"; {fix}"
        raise InvalidArgument(message)
    return Path(value)


def check_array(
    name: str,
    value: Any,
    *,
    ndim: int | None = None,
    shape: tuple[int | None, ...] | None = None,
    finite: bool = True,
) -> np.ndarray:
    """Return ``value`` as a float64 array after checking rank, shape and finiteness.

    ``shape`` may contain ``None`` for a free dimension.
    """
    if np.iscomplexobj(value):
        raise InvalidArgument(
            f"{name} is invalid: it is complex; give real numbers (take .real "
            "if the imaginary part is meant to be dropped)"
        )
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(
            f"{name} is invalid: it must be numeric ({error})"
        ) from None
    if ndim is not None and array.ndim != ndim:
        raise InvalidArgument(
            f"{name} is invalid: it must have {ndim} dimensions, "
            f"got shape {array.shape}"
        )
    if shape is not None:
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        if array.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, array.shape)
        ):
            raise InvalidArgument(
                f"{name} is invalid: it must have shape {expected}, got {array.shape}"
            )
    if finite and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        where = ", ".join(map(str, bad))
        raise InvalidArgument(
            f"{name} is invalid: it must be finite, but {name}[{where}] = "
            f"{float(array[tuple(bad)])!r}; remove or replace NaN and inf entries"
        )
    return array


def check_signs(name: str, signs: np.ndarray, n: int) -> None:
    """Raise an InvalidArgument unless ``signs`` contains one value ``+1`` or ``-1``
    for each of ``n`` samples, shape (n,)."""
    if signs.shape != (n,):
        raise InvalidArgument(
            f"{name} has shape {signs.shape}, but {name} must be +1 or -1, one per "
            f"sample, shape ({n},)"
        )
    invalid = np.flatnonzero(np.abs(signs) != 1.0)
    if invalid.size:
        i = int(invalid[0])
        raise InvalidArgument(
            f"{name}[{i}]={float(signs[i])!r} is invalid: {name} must be +1 or -1, "
            "one per sample"
        )


def check_labels(name: str, labels: np.ndarray, num_classes: int) -> None:
    """Raise an InvalidArgument naming the first of ``labels`` outside
    ``0..num_classes-1``."""
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        i = int(outside[0])
        raise InvalidArgument(
            f"{name}[{i}]={int(labels[i])} is outside 0..{num_classes - 1} for "
            f"{num_classes} classes; give class indices 0..{num_classes - 1}"
        )
