"""First roots of cubics on [0, 1], for locating activation crossings.

The adaptive driver writes each pre-activation along a step as a cubic in the
step fraction ``s`` (the step's dense output), signed to be positive on the
side of the current pattern. A crossing is the first root in (0, 1] of that
cubic. ``first_roots`` finds it for many cubics at once: it brackets the first
sign change between the critical points and pins it by a safeguarded Newton
search, to float64 resolution.
"""

from __future__ import annotations

import math

import numpy as np

BISECTIONS = 56  # halvings of a root bracket: 2**-56 is below float64 resolution
# Up to this many crossing cubics are searched one by one in Python floats,
# where the vectorised search would spend its time on array-call overhead.
SCALAR_ROOTS = 4
# Points at which all crossing cubics of a step are evaluated to pick the one
# whose root is searched first (the earliest to turn non-positive).
_SEARCH_GRID = np.linspace(0.0, 1.0, 17)


def first_roots(c: np.ndarray, within: float = math.inf) -> np.ndarray:
    """First root in (0, 1] of each cubic ``sum_k c[k] s^k`` with ``c[0] > 0``.

    The cubic is monotone between its critical points, so the first sign change
    at the sorted points ``{0, critical points, 1}`` brackets the first root,
    which a safeguarded Newton search (``bracketed_roots``) then pins to
    float64 resolution. Returns ``inf`` where the cubic stays positive on
    (0, 1], and 0 where ``c[0] <= 0`` already (a crossing that roundoff hid
    from the previous step).

    Only roots up to the earliest one plus ``within`` are searched: a cubic
    whose root is certainly later gets ``inf`` too. The caller needs the
    earliest crossing and those just after it, and this skips the Newton
    search on the many cubics of a step that cross far later.
    """
    c0, c1, c2, c3 = c
    m = c0.shape[0]
    # Critical points: roots of c1 + 2 c2 s + 3 c3 s^2, in the stable form.
    qa, qb, qc = 3 * c3, 2 * c2, c1
    disc = qb * qb - 4 * qa * qc
    with np.errstate(divide="ignore", invalid="ignore"):
        real = disc >= 0
        q = -0.5 * (qb + np.copysign(np.sqrt(np.where(real, disc, 0.0)), qb))
        r1 = np.where(qa != 0, q / qa, np.where(qb != 0, -qc / qb, np.nan))
        r2 = np.where(q != 0, qc / q, np.nan)
    inner = []
    for r in (r1, r2):
        ok = real & np.isfinite(r) & (r > 0) & (r < 1)
        inner.append(np.where(ok, r, 0.0))
    knots = np.column_stack(
        [np.zeros(m), np.sort(np.column_stack(inner), axis=1), np.ones(m)]
    )

    values = cubic_values(c[:, :, None], knots)
    below = values <= 0
    below[:, 0] = False
    roots = np.full(m, np.inf)
    already = c0 <= 0
    roots[already] = 0.0
    below[already] = False
    rows = np.flatnonzero(below.any(axis=1))
    if rows.size == 0:
        return roots
    k = np.argmax(below[rows], axis=1)
    lo = knots[rows, k - 1]
    hi = knots[rows, k]
    # The earliest root is 0 where a cubic starts at or below 0. Otherwise the
    # root of the cubic that is first non-positive on a grid bounds the earliest
    # one from above: each cubic falls monotonically over its bracket, so its
    # root is at most the first grid point in the bracket where it is <= 0.
    bound = within
    if math.isfinite(within) and not already.any():
        grid = np.where(
            (_SEARCH_GRID >= lo[:, None])
            & (cubic_values(c[:, rows, None], _SEARCH_GRID) <= 0),
            _SEARCH_GRID,
            np.inf,
        )
        first = int(np.argmin(np.minimum(grid.min(axis=1), hi)))
        root = bracketed_root(*c[:, rows[first]], lo[first], hi[first])
        roots[rows[first]] = root
        bound = root + within
        rest = np.arange(rows.size) != first
        rows, lo, hi = rows[rest], lo[rest], hi[rest]
    # A bracket that starts past the bound, or whose cubic is still positive at
    # the bound, has its root past the bound.
    keep = lo <= bound
    inside = keep & (hi > bound)
    if inside.any():
        keep[inside] = (
            cubic_values(c[:, rows[inside]], np.full(inside.sum(), bound)) <= 0
        )
    rows, lo, hi = rows[keep], lo[keep], hi[keep]
    if rows.size <= SCALAR_ROOTS:
        for row, low, high in zip(rows, lo, hi):
            roots[row] = bracketed_root(*c[:, row], low, high)
    else:
        roots[rows] = bracketed_roots(c[:, rows], lo, hi)
    return roots


def cubic_values(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Evaluate ``sum_k c[k] s^k`` by Horner's rule, elementwise."""
    return ((c[3] * s + c[2]) * s + c[1]) * s + c[0]


def bracketed_roots(c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Find the root of each cubic ``c[:, r]`` on a bracket ``[lo, hi]`` where it falls
    monotonically from a positive value to a non-positive one.

    Safeguarded Newton: a Newton step that leaves the bracket is replaced by
    bisection. Once the Newton correction is below ``4 eps s``, the point two
    corrections and ``4 eps s`` past the Newton point is checked. Where the
    cubic is non-positive there, that point is the result: it lies on the far
    side of the root, as the upper end of a bisection bracket would. Where
    roundoff hides the sign (a nearly tangential root), bisection goes on to
    float64 resolution.
    """
    tiny = np.finfo(float).tiny
    unit = 4 * np.finfo(float).eps
    result = hi.copy()
    active = np.arange(lo.size)
    s = 0.5 * (lo + hi)
    for _ in range(BISECTIONS):
        cc = c[:, active]
        value = cubic_values(cc, s)
        positive = value > 0
        lo = np.where(positive, s, lo)
        hi = np.where(positive, hi, s)
        slope = (3 * cc[3] * s + 2 * cc[2]) * s + cc[1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            newton = s - value / slope
            correction = np.abs(newton - s)
            settled = np.isfinite(newton) & (correction <= unit * np.maximum(s, tiny))
            past = np.minimum(newton + 2 * correction + unit * np.abs(newton), hi)
            at_past = cubic_values(cc, past)
        done = (settled & (at_past <= 0)) | (hi - lo <= unit * np.maximum(hi, tiny))
        result[active[done]] = np.where(
            settled[done] & (at_past[done] <= 0), past[done], hi[done]
        )
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi) & ~settled
        s = np.where(inside, newton, 0.5 * (lo + hi))
        keep = ~done
        if not keep.any():
            break
        active, lo, hi, s = active[keep], lo[keep], hi[keep], s[keep]
    else:
        # Out of iterations: the narrowed upper ends are the best far-side points.
        result[active] = hi
    return result


def bracketed_root(
    c0: float, c1: float, c2: float, c3: float, lo: float, hi: float
) -> float:
    """``bracketed_roots`` for one cubic, in Python floats.

    It repeats the vectorised iteration operation by operation, so it returns
    the same point. When only a few cubics are left, a few scalar operations
    cost far less than the array calls of the vectorised search.
    """
    tiny = np.finfo(float).tiny
    unit = 4 * np.finfo(float).eps
    c0, c1, c2, c3, lo, hi = map(float, (c0, c1, c2, c3, lo, hi))
    s = 0.5 * (lo + hi)
    for _ in range(BISECTIONS):
        value = ((c3 * s + c2) * s + c1) * s + c0
        if value > 0:
            lo = s
        else:
            hi = s
        slope = (3 * c3 * s + 2 * c2) * s + c1
        try:
            newton = s - value / slope
        except (ZeroDivisionError, OverflowError):
            newton = math.nan
        finite = math.isfinite(newton)
        correction = abs(newton - s) if finite else math.nan
        settled = finite and correction <= unit * max(s, tiny)
        if settled:
            past = min(newton + 2 * correction + unit * abs(newton), hi)
            if ((c3 * past + c2) * past + c1) * past + c0 <= 0:
                return past
        if hi - lo <= unit * max(hi, tiny):
            return hi
        s = newton if finite and lo < newton < hi and not settled else 0.5 * (lo + hi)
    return hi
