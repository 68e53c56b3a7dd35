"""Gradient-flow time along a step, by quadrature in the log domain.

The integrator advances in the clock ``tau`` with ``dt/dtau = exp(Phi)``, where
``Phi = -log N`` is smooth along a step but reaches ``1e12`` in the late phase,
so ``t = int exp(Phi) dtau`` is kept as ``log t``. Over one step of size ``h``
with dense output ``y(s)``, ``s`` in [0, 1],

    t(s) - t(0) = h int_0^s exp(Phi(y(u))) du.

``Phi`` is sampled at Chebyshev-Lobatto points of the step and interpolated by
a polynomial. Late in the flow, in the clock ``tau``, ``Phi`` grows like
``exp(2 sigma)``, so there the interpolated quantity is ``log Phi``, which is
close to a polynomial in ``s`` (``sigma`` is one); elsewhere it is ``Phi``
itself. The norm clock steps in ``u = -R^(-1/2)`` but integrates the time in
``R`` (``NormStepClock``), where ``Phi = log dt/dR`` grows about linearly
(``log t`` does), so ``Phi`` is fitted there however large it is: the log of a
linear function is the worse fit. On the three-class benchmark problem the
error estimate of a step at ``R = 96`` was 3.9 tolerances fitted in the log and
0.03 fitted plain. The log fit held the steps from ``R = 100`` to ``1000`` to
0.15 to 0.22 of ``R``; fitted plain, they take the cap of 0.25. The integral of the
exponential of the interpolant needs no further network evaluations:

- where the integrand is concentrated at the upper limit (``dPhi/ds`` there
  above ``LAPLACE_SLOPE``), the endpoint (Laplace) expansion
  ``exp(Phi) / Phi' * (1 + Phi''/Phi'^2 + 3 Phi''^2/Phi'^4 - Phi'''/Phi'^3)``
  is used; its truncation error is of relative order ``Phi'^-3``;
- otherwise adaptive Gauss-Legendre panels, split until ``Phi`` varies by less
  than ``PANEL_SPREAD`` on each.

The interpolation error is estimated by comparing with the interpolant through
one node fewer, integrated on the same quadrature points.
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
_GL_X_LIST, _GL_W_LIST = _GL_X.tolist(), _GL_W.tolist()
# A panel is split until Phi varies by less than this across it. On a grid cell
# Phi is close to linear, and a 10-point Gauss rule integrates exp of it to
# float64 accuracy. A single panel over a longer interval is taken only where
# the coefficient bound of _spread_bound allows, which also limits how far Phi
# bends. NOTE: a spread alone is not enough: exp(T5(2s - 1)), of spread 2, errs
# by 3e-3 in the log on one panel.
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
        Step size ``h`` in the independent variable.
    allow_log : bool
        Fit ``log Phi`` where ``Phi`` exceeds ``LOG_SWITCH`` at every node. The
        norm clock passes False.
    """

    def __init__(
        self, phi_values: np.ndarray, size: float, allow_log: bool = True
    ) -> None:
        self.size = size
        self.log_size = math.log(size)
        phi_values = np.asarray(phi_values, dtype=np.float64)
        self.logarithmic = allow_log and bool(np.min(phi_values) > LOG_SWITCH)
        data = np.log(phi_values) if self.logarithmic else phi_values
        inverse, inverse_low, keep = _fitters(data.shape[0])
        # The fit is of the values less the one at the end, which is added back
        # to the constant. On [0, 1] a monomial fit errs by up to the sum of
        # its inverse Vandermonde matrix's absolute entries (3363 for six nodes)
        # times eps times the largest value it fits. Late in the flow log(Phi) is near
        # 17 but varies by about 0.2 over a step, and Phi, of the size of log t,
        # multiplies that error. Fitted whole, log t at ||theta||^2 = 1e8
        # scattered by 7e-5 across rtol from 1e-8 to 1e-12; centred, by 1e-6.
        offset = data[-1]
        self.coef = inverse @ (data - offset)
        self.coef[-1] += offset
        # Interpolant through the nodes without the one next to the end: the
        # difference of the two integrals estimates the interpolation error.
        self.coef_low = inverse_low @ (data[keep] - offset)
        self.coef_low[-1] += offset
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
        value = _value_at(self._coef_list, s)
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
            self._whole_pair()
            return self._whole["low" if low else "high"]
        return self._log_integral(upper, low)

    def _endpoint(self, upper: float, low: bool) -> float | None:
        """Return the endpoint expansion of ``log int_0^upper exp(Phi)``, or None
        where the integrand is not concentrated enough at ``upper`` for it."""
        values = self.phi(upper * _ENDS, low)
        top = float(values.max())
        if values[1] == top and values[0] < top - DROP:
            coef = self.coef_low if low else self.coef
            phi0, d1, d2, d3 = self._phi_derivatives(upper, coef)
            if d1 > LAPLACE_SLOPE:
                series = 1 + d2 / d1**2 + 3 * d2**2 / d1**4 - d3 / d1**3
                return phi0 - math.log(d1) + math.log(series)
        return None

    def _log_integral(self, upper: float, low: bool) -> float:
        endpoint = self._endpoint(upper, low)
        if endpoint is not None:
            return self.log_size + endpoint
        x, weights = _panel_points(self, 0.0, upper, low)
        return self.log_size + self._log_sum(x, weights, low)

    def _log_sum(self, x: np.ndarray, weights: np.ndarray, low: bool) -> float:
        """Return ``log sum weights exp(Phi(x))`` for quadrature points ``x``."""
        return logsumexp(self.phi(x, low), weights=weights)

    def _whole_pair(self) -> None:
        """Integrate both interpolants over the whole step.

        Where the higher one needs panels, the lower one is summed on the same
        points: the two differ by a polynomial that vanishes at all but one
        node. While they are close, which is where the estimate decides a step,
        those points resolve it as well as they resolve ``exp(Phi)``. A large
        estimate is only approximate, but it rejects the step either way. One
        set of points costs half of two.
        """
        if "high" in self._whole:
            return
        endpoint = self._endpoint(1.0, False)
        if endpoint is not None:
            self._whole["high"] = self.log_size + endpoint
            self._whole["low"] = self._log_integral(1.0, True)
            return
        x, weights = _panel_points(self, 0.0, 1.0, False)
        for key, low in (("high", False), ("low", True)):
            self._whole[key] = self.log_size + self._log_sum(x, weights, low)

    def log_integral_between(self, a: float, b: float) -> float | None:
        """Return ``log( h int_a^b exp(Phi(u)) du )``, for ``a < b``, by one
        Gauss-Legendre panel.

        Returns None where ``Phi`` may vary by more than ``PANEL_SPREAD`` on
        [a, b], because one panel may then be inaccurate.
        """
        if _spread_bound(self, a, b, False) > PANEL_SPREAD:
            return None
        # One panel of _one_panel_points, in Python floats: at ten points the
        # array calls would cost more than the arithmetic.
        width = b - a
        values = [self.phi_at(a + width * x) for x in _GL_X_LIST]
        top = max(values)
        total = sum(w * math.exp(v - top) for w, v in zip(_GL_W_LIST, values))
        return self.log_size + top + math.log(width * total)

    def error_estimate(self) -> float:
        """Absolute error estimate of ``log_integral(1.0)`` from interpolation."""
        return abs(self.log_integral(1.0) - self.log_integral(1.0, low=True))


def _panel_points(
    clock: StepClock, a: float, b: float, low: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return Gauss-Legendre points and weights on [a, b] where ``exp(Phi)``
    lives.

    ``Phi`` is sampled on a uniform grid; each grid cell whose values come within
    ``DROP`` of the maximum is split into equal panels, as many as its spread
    of ``Phi`` needs for every panel to stay within ``PANEL_SPREAD``.
    """
    if _spread_bound(clock, a, b, low) <= PANEL_SPREAD / 2:
        # The grid below would find the same small spread: skip it.
        return _one_panel_points(a, b)
    grid = np.linspace(a, b, _GRID + 1)
    values = clock.phi(grid, low)
    top = float(values.max())
    if top - float(values.min()) <= PANEL_SPREAD / 2:
        return _one_panel_points(a, b)
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
    return x, weights


def _one_panel_points(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the points and weights of one Gauss-Legendre panel on [a, b]."""
    return a + (b - a) * _GL_X, (b - a) * _GL_W


def _value_at(coefficients: list, s: float) -> float:
    """Return the polynomial with ``coefficients`` (highest degree first) at
    ``s``, by Horner's rule in Python floats."""
    value = 0.0
    for c in coefficients:
        value = value * s + c
    return value


def _spread_bound(clock: StepClock, a: float, b: float, low: bool) -> float:
    """Upper bound on ``max Phi - min Phi`` over ``[a, b]``, from the coefficients.

    For the interpolant ``p``, ``|p'(s)| <= sum_k k |c_k| M^(k-1)`` with
    ``M = max(|a|, |b|)``, times the length of the interval, bounds the spread
    ``S`` of ``p``. Where ``Phi = exp(p)``, ``Phi`` lies between
    ``exp(p(a) - S)`` and ``exp(p(a) + S)``, a spread of ``2 exp(p(a)) sinh(S)``.
    """
    coef = clock.coef_low if low else clock.coef
    degree = coef.size - 1
    largest = max(abs(a), abs(b))
    slope = 0.0
    for k, c in enumerate(coef[:-1]):
        power = degree - k
        slope += power * abs(c) * largest ** (power - 1)
    spread = slope * (b - a)
    if not clock.logarithmic:
        return spread
    if spread > 1.0:
        # Phi is above LOG_SWITCH, so the bound is then above PANEL_SPREAD anyway.
        return math.inf
    return 2 * math.exp(_value_at(coef.tolist(), a)) * math.sinh(spread)


# Points at which log_integral decides whether the endpoint expansion applies:
# the maximum must be at the upper end and the start far below it.
_ENDS = np.array([0.0, 1.0, 0.5, 0.9, 0.99])
# Uniform cells of the first sampling of Phi in _panel_points.
_GRID = 64


def sub_log(log_a: float, log_b: float) -> float:
    """``log(exp(log_a) - exp(log_b))`` for ``log_b < log_a``."""
    return log_a + math.log(-math.expm1(log_b - log_a))


def add_log(log_a: float, log_b: float) -> float:
    """``log(exp(log_a) + exp(log_b))``, also for ``-inf`` arguments."""
    if log_a == -math.inf:
        return log_b
    if log_b == -math.inf:
        return log_a
    top = max(log_a, log_b)
    return top + math.log1p(math.exp(min(log_a, log_b) - top))


class NormStepClock:
    """The clock of a step in the variable ``u = -R^(-1/2)`` of the norm clock,
    integrated in ``R``.

    ``Phi = log dt/dR`` grows about linearly in ``R``, while ``log dt/du`` is
    about ``c / u^2``, which a polynomial in the step fraction fits badly. So the
    nodes are placed at Chebyshev-Lobatto points of ``R`` over the step, and
    every question in the step fraction ``s`` (linear in ``u``) is answered by
    the interpolant in ``r = (R(s) - R_0) / (R_1 - R_0)``. Sampled at nodes of
    ``u`` instead, the clock's error estimate held the steps of the three-class
    benchmark problem from ``R = 28`` to 500 to a growth of ``R`` by a quarter,
    at 0.5 to 0.8 tolerances. At nodes of ``R`` it is 0.01 to 0.5 tolerances
    on steps that grow ``R`` by 1.3 to 1.5 times.

    Parameters
    ----------
    phi_values : ndarray, shape (m,)
        ``log dt/dR`` at the states of ``node_fractions(u0, size, m)``.
    u0, size : float
        Start of the step in ``u`` and its size.
    """

    def __init__(self, phi_values: np.ndarray, u0: float, size: float) -> None:
        self.u0, self.h = u0, size
        self.R0, R1 = u0**-2, (u0 + size) ** -2
        self.span = R1 - self.R0
        if not self.span > 0:
            # A step below the resolution of R, where R1 - R0 rounds to 0 (and
            # log(0) raised): the difference written without cancellation.
            self.span = -size * (2 * u0 + size) / (u0 * u0 * (u0 + size) ** 2)
        self.inner = StepClock(phi_values, self.span, allow_log=False)
        self.log_size = self.inner.log_size

    @staticmethod
    def node_fractions(u0: float, size: float, count: int) -> np.ndarray:
        """Return the step fractions ``s`` of the Chebyshev-Lobatto points of ``R``."""
        R0, R1 = u0**-2, (u0 + size) ** -2
        R = R0 + (R1 - R0) * lobatto_nodes(count)
        s = (-(R**-0.5) - u0) / size
        s[0], s[-1] = 0.0, 1.0
        return s

    def _r(self, s: float) -> float:
        if s >= 1.0:
            return 1.0
        # R(s) - R_0 = (u_0^2 - u^2) / (u^2 u_0^2), written without cancellation.
        u0 = self.u0
        u = u0 + s * self.h
        return -s * self.h * (u0 + u) / (u * u * u0 * u0 * self.span)

    def log_integral(self, upper: float = 1.0, low: bool = False) -> float:
        return self.inner.log_integral(self._r(upper), low)

    def error_estimate(self) -> float:
        return self.inner.error_estimate()

    def log_integral_between(self, a: float, b: float) -> float | None:
        low, high = self._r(a), self._r(b)
        if high <= low:
            return -math.inf
        return self.inner.log_integral_between(low, high)

    def phi_at(self, s: float) -> float:
        """Return ``log dt/ds - log_size``, so that ``log_size + phi_at(s)`` is
        ``log dt/ds`` as for :class:`StepClock`."""
        u = self.u0 + s * self.h
        # dr/ds = (dR/du) h / (R_1 - R_0), with dR/du = 2 R^(3/2) = 2 / (-u)^3.
        log_dr = math.log(2.0 * self.h / self.span) - 3.0 * math.log(-u)
        return self.inner.phi_at(self._r(s)) + log_dr
