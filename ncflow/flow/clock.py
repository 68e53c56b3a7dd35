"""Gradient-flow time along a step, by quadrature in the log domain.

The integrator advances in the clock ``tau`` with ``dt/dtau = exp(Phi)``, where
``Phi = -log N`` is smooth along a step but reaches ``1e12`` in the late phase,
so ``t = int exp(Phi) dtau`` is kept as ``log t``. Over one step of size ``h``
with dense output ``y(s)``, ``s`` in [0, 1],

    t(s) - t(0) = h int_0^s exp(Phi(y(u))) du.

``Phi`` is sampled at Chebyshev-Lobatto points of the step and interpolated by
a polynomial. Late in the flow ``Phi`` grows like ``exp(2 sigma)``, so there
the interpolated quantity is ``log Phi``, which is close to a polynomial in
``s`` (``sigma`` is one); elsewhere it is ``Phi`` itself. The integral of the
exponential of the interpolant needs no further network evaluations:

- where the integrand is concentrated at the upper limit (``dPhi/ds`` there
  above ``LAPLACE_SLOPE``), the endpoint (Laplace) expansion
  ``exp(Phi) / Phi' * (1 + Phi''/Phi'^2 + 3 Phi''^2/Phi'^4 - Phi'''/Phi'^3)``
  is used; its truncation error is of relative order ``Phi'^-3``;
- otherwise adaptive Gauss-Legendre panels, split until ``Phi`` varies by less
  than ``PANEL_SPREAD`` on each.

The interpolation error is estimated by comparing with the interpolant through
one node fewer.
"""

from __future__ import annotations

import math

import numpy as np

from ncflow._numeric import logsumexp


def lobatto_nodes(count: int) -> np.ndarray:
    """``count`` Chebyshev-Lobatto nodes on [0, 1], endpoints included."""
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(count) / (count - 1))


# Phi is sampled at these nodes of a step. (Four nodes in the norm clock, where
# Phi grows nearly linearly, were measured to double the step count there: the
# error estimate against three nodes then limits the steps.)
NODES = lobatto_nodes(6)
NORM_NODES = NODES
# Gauss-Legendre rule used on each quadrature panel, mapped from [-1, 1].
_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)
_GL_X = 0.5 + 0.5 * _GL_X
_GL_W = 0.5 * _GL_W
# A panel is split until Phi varies by less than this across it; a 10-point
# Gauss rule integrates exp of a polynomial of that spread to float64 accuracy.
PANEL_SPREAD = 2.0
# Integrand values below exp(-DROP) times the maximum are dropped (relative
# contribution below 1e-26).
DROP = 60.0
# Phi above this everywhere on the step: interpolate log(Phi) instead of Phi.
LOG_SWITCH = 8.0
# Endpoint expansion once dPhi/ds at the upper limit exceeds this: the
# truncation error, of relative order slope**-3, is then below 1e-15.
LAPLACE_SLOPE = 1e5


_INVERSE_VANDERMONDE: dict = {}


def _fitters(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse Vandermonde matrices (monomials, highest degree first) for the
    ``count`` nodes and for the nodes without the one next to the end, and the
    index of the nodes kept in the second."""
    if count not in _INVERSE_VANDERMONDE:
        nodes = lobatto_nodes(count)
        keep = np.r_[0 : count - 2, count - 1]
        _INVERSE_VANDERMONDE[count] = (
            np.linalg.inv(np.vander(nodes)),
            np.linalg.inv(np.vander(nodes[keep])),
            keep,
        )
    return _INVERSE_VANDERMONDE[count]


def _horner(coef: np.ndarray, s):
    out = np.zeros_like(np.asarray(s, dtype=np.float64)) + coef[0]
    for c in coef[1:]:
        out = out * s + c
    return out


class StepClock:
    """Interpolant of ``Phi`` over one step and the time integrals it gives.

    Parameters
    ----------
    phi_values : ndarray, shape (m,)
        ``Phi`` at ``lobatto_nodes(m)`` (``NODES`` or ``NORM_NODES``).
    size : float
        Step size ``h`` in ``tau``.
    """

    def __init__(self, phi_values: np.ndarray, size: float) -> None:
        self.size = size
        self.log_size = math.log(size)
        phi_values = np.asarray(phi_values, dtype=np.float64)
        self.logarithmic = bool(np.min(phi_values) > LOG_SWITCH)
        data = np.log(phi_values) if self.logarithmic else phi_values
        inverse, inverse_low, keep = _fitters(data.shape[0])
        self.coef = inverse @ data
        # Interpolant through the nodes without the one next to the end: the
        # difference of the two integrals estimates the interpolation error.
        self.coef_low = inverse_low @ data[keep]
        self._whole: dict[str, float] = {}
        self._coef_list: list[float] | None = None

    def phi(self, s, low: bool = False) -> np.ndarray:
        values = _horner(self.coef_low if low else self.coef, s)
        return np.exp(values) if self.logarithmic else values

    def phi_at(self, s: float) -> float:
        """Return ``Phi(s)`` at one point, in Python floats.

        The records on the time grid ask for single points, where array calls
        cost more than the arithmetic.
        """
        if self._coef_list is None:
            self._coef_list = self.coef.tolist()
        value = 0.0
        for c in self._coef_list:
            value = value * s + c
        return math.exp(value) if self.logarithmic else value

    def _phi_derivatives(
        self, s: float, coef: np.ndarray
    ) -> tuple[float, float, float, float]:
        """``Phi`` and its first three derivatives in ``s`` at ``s``."""
        u = [0.0, 0.0, 0.0, 0.0]  # value and derivatives, by synthetic division
        for c in coef:
            u[3] = u[3] * s + 3 * u[2]
            u[2] = u[2] * s + u[1]
            u[1] = u[1] * s + u[0]
            u[0] = u[0] * s + c
        u = (u[0], u[1], 2 * u[2], 2 * u[3])
        if not self.logarithmic:
            return u
        # Phi = exp(u): chain rule.
        e = math.exp(u[0])
        return (
            e,
            e * u[1],
            e * (u[2] + u[1] ** 2),
            e * (u[3] + 3 * u[1] * u[2] + u[1] ** 3),
        )

    def log_integral(self, upper: float = 1.0, low: bool = False) -> float:
        """``log( h int_0^upper exp(Phi(u)) du )`` (``-inf`` for ``upper = 0``)."""
        if upper <= 0.0:
            return -math.inf
        if upper == 1.0:
            # The whole-step integrals are requested several times (the step's
            # time, its error estimate, event searches), so each is computed once.
            key = "low" if low else "high"
            if key not in self._whole:
                self._whole[key] = self._log_integral(1.0, low)
            return self._whole[key]
        return self._log_integral(upper, low)

    def _log_integral(self, upper: float, low: bool) -> float:
        coef = self.coef_low if low else self.coef
        values = self.phi(upper * _ENDS, low)
        top = float(values.max())
        if values[1] == top and values[0] < top - DROP:
            phi0, d1, d2, d3 = self._phi_derivatives(upper, coef)
            if d1 > LAPLACE_SLOPE:
                series = 1 + d2 / d1**2 + 3 * d2**2 / d1**4 - d3 / d1**3
                return self.log_size + phi0 - math.log(d1) + math.log(series)
        return self.log_size + _panels(self, 0.0, upper, low)

    def error_estimate(self) -> float:
        """Absolute error estimate of ``log_integral(1.0)`` from interpolation."""
        return abs(self.log_integral(1.0) - self.log_integral(1.0, low=True))


def _panels(clock: StepClock, a: float, b: float, low: bool) -> float:
    """``log int_a^b exp(Phi)`` by Gauss-Legendre panels where the integrand lives.

    ``Phi`` is sampled on a uniform grid; each grid cell whose values come within
    ``DROP`` of the maximum is split into equal panels, as many as its spread
    of ``Phi`` needs for every panel to stay within ``PANEL_SPREAD``. Two
    polynomial evaluations in all.
    """
    if _spread_bound(clock, a, b, low) <= PANEL_SPREAD / 2:
        # The grid below would find the same small spread: skip it.
        return _one_panel(clock, a, b, low)
    grid = np.linspace(a, b, _GRID + 1)
    values = clock.phi(grid, low)
    top = float(values.max())
    if top - float(values.min()) <= PANEL_SPREAD / 2:
        return _one_panel(clock, a, b, low)
    cell_max = np.maximum(values[:-1], values[1:])
    cell_min = np.minimum(values[:-1], values[1:])
    live = np.flatnonzero(cell_max >= top - DROP)
    # The spread of a cell is at least its endpoint difference; the polynomial
    # may bulge between grid points, which twice the endpoint spread covers for
    # a degree-5 interpolant on a grid this fine.
    pieces = np.maximum(1, np.ceil(2 * (cell_max - cell_min)[live] / PANEL_SPREAD))
    pieces = pieces.astype(np.int64)
    starts = np.repeat(grid[live], pieces)
    widths = np.repeat((grid[live + 1] - grid[live]) / pieces, pieces)
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    offsets = np.arange(first.size) - first
    lo = starts + offsets * widths
    x = lo[:, None] + widths[:, None] * _GL_X[None, :]
    weights = widths[:, None] * _GL_W[None, :]
    return logsumexp(clock.phi(x, low), weights=weights)


def _one_panel(clock: StepClock, a: float, b: float, low: bool) -> float:
    """``log int_a^b exp(Phi)`` by one Gauss-Legendre panel."""
    x = a + (b - a) * _GL_X
    return logsumexp(clock.phi(x, low), weights=(b - a) * _GL_W)


def _spread_bound(clock: StepClock, a: float, b: float, low: bool) -> float:
    """Upper bound on ``max Phi - min Phi`` over ``[a, b]``, from the coefficients.

    ``|p'(s)| <= sum_k k |c_k| M^(k-1)`` with ``M = max(|a|, |b|)``, times the
    length of the interval. Where ``Phi = exp(p)`` the bound is ``inf``.
    """
    if clock.logarithmic:
        return math.inf
    coef = clock.coef_low if low else clock.coef
    degree = coef.size - 1
    largest = max(abs(a), abs(b))
    slope = 0.0
    for k, c in enumerate(coef[:-1]):
        power = degree - k
        slope += power * abs(c) * largest ** (power - 1)
    return slope * (b - a)


# Points at which log_integral decides whether the endpoint expansion applies:
# the maximum must be at the upper end and the start far below it.
_ENDS = np.array([0.0, 1.0, 0.5, 0.9, 0.99])
# Uniform cells of the first sampling of Phi in _panels.
_GRID = 64


def add_log(log_a: float, log_b: float) -> float:
    """``log(exp(log_a) + exp(log_b))``, also for ``-inf`` arguments."""
    if log_a == -math.inf:
        return log_b
    if log_b == -math.inf:
        return log_a
    top = max(log_a, log_b)
    return top + math.log1p(math.exp(min(log_a, log_b) - top))
