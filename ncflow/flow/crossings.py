"""Activation crossings of the adaptive driver: find, land, switch.

Each step of ``adaptive.py`` is searched for its first activation crossing (a
pre-activation ``<x_i, w_j>`` reaching 0) on its cubic dense output. The step
is cut back to the crossing, the end point is refined until the pre-activation
is 0 to tolerance and projected to exactly 0, and the pattern switches by the
``relu'(0) = 0`` rule (the module docstring of ``adaptive.py`` states it).

``ActivationCrossings`` contains those methods of ``AdaptiveFlow``, which
inherits them; they read and change the run's state (``pattern``,
``touching``, ``offsets``, ``z``) as its other methods do. The frozen steps of
``frozen_phase.py`` use the same pattern choice (``_frozen_rates`` and
``_choose_pattern``).
"""

from __future__ import annotations

import math

import numpy as np

from ncflow.flow.cubic_roots import first_roots
from ncflow.flow.frozen import FrozenStep
from ncflow.flow.step_time import (
    STAGE_RULE_SPREAD,
    Landing,
    StepTime,
    dense_log_integral,
)
from ncflow.flow.steps import Step, dense_state, dense_velocity

EVENT_REFINEMENTS = 8  # Newton corrections of an event location before giving up
# A touching pair leaves its boundary once its cosine exceeds this many times its
# offset: it has then moved well past the roundoff that the offset covers.
RELEASE_FACTOR = 10
# Relative singular value of a cluster's unit samples below which they count as
# parallel when a direction is projected onto their common boundary. The driver
# raises it to half the tolerance. Two unit samples at a small angle delta have
# singular values of ratio about delta / 2. A direction projected onto the first
# one's boundary has a cosine of at most delta with the second one, so at that
# tolerance the two share one boundary. Projected onto both, a direction in D = 2
# is 0: a trial with samples 1e-7 rad apart, taken in one cluster at rtol = 1e-3,
# set w_j to 0 and ended the run.
PROJECTION_RANK = 1e-8
# Relative size below which a derivative of a pre-activation counts as 0 when
# the new pattern is chosen at a boundary: a few hundred float64 roundoffs.
ZERO_SLOPE = 256 * np.finfo(np.float64).eps


def direction_shift(block: np.ndarray, a: np.ndarray, D: int) -> float:
    """Return how far a projection moved the unit direction of a neuron whose
    block is now ``block`` and whose ``a_j`` was ``a``, relative to what is left
    of its direction (inf where nothing is left: no certified choice then)."""
    difference = block[1 : 1 + D] - a
    moved = math.sqrt(float(difference @ difference))
    left = math.sqrt(float(block[1:] @ block[1:]))
    return moved / left if left > 0 else math.inf


class UncertainSlope(Exception):
    """A slope at a boundary whose sign the frozen gradients do not certify."""


# Returned by the pattern choice where the flow slides along a boundary.
SLIDING = object()


class ActivationCrossings:
    """The crossing methods of ``AdaptiveFlow`` (see the module docstring)."""

    def _crossing_polynomials(self, step: Step) -> np.ndarray:
        """Coefficients (4, n, h) of ``s -> g_ij(s)``: the cosine of ``x_i`` and
        ``a_j(s)`` (normalised at the step start, where ``a_j = 0`` by the
        unit ``omega_j``), signed to be positive on the side of the current
        pattern."""
        D = self.system.D
        a_coef = self.coords.blocks(step.polynomial())[:, :, 1 : 1 + D]
        a_norms = np.linalg.norm(self._directions(step.y0), axis=1)
        a_norms[a_norms == 0] = 1.0
        norms = np.outer(self.x_norms, a_norms)
        g = np.einsum("nd,khd->knh", self.problem.X, a_coef) / norms
        g *= np.where(self.pattern, 1.0, -1.0)
        g[0] += np.where(self.touching, self.offsets, 0.0)
        return g

    def _first_crossing(self, step: Step):
        """First ``s`` in (0, 1] where some ``g_ij`` reaches 0, and the pairs that
        reach it together; ``(None, None)`` if none does."""
        if self.system.linear:
            return None, None
        g = self._crossing_polynomials(step)
        reach = np.abs(g[1]) + np.abs(g[2]) + np.abs(g[3])
        candidates = np.argwhere(g[0] <= reach)
        if candidates.size == 0:
            return None, None
        # Crossings closer than this (as a step fraction) change the state by
        # less than 1% of the tolerance in between, so they are taken together.
        scale = self.coords.scale(step.y0, self.rtol, self.atol)
        rate = float(np.max(np.abs(step.y1 - step.y0) / scale))
        window = 0.01 / max(rate, 1e-300)
        roots = first_roots(g[:, candidates[:, 0], candidates[:, 1]], window)
        found = np.isfinite(roots)
        if not found.any():
            return None, None
        first = float(roots[found].min())
        together = first + window
        near = np.flatnonzero(roots <= together)
        cluster = [(int(candidates[k, 0]), int(candidates[k, 1])) for k in near]
        return first, cluster

    def _land_on_crossing(self, step: Step, s: float, cluster: list):
        if s <= 0.0:
            return Landing(None, None, 0.0, cluster=cluster)
        landing = self._land_on_dense_output(step, s, cluster)
        if landing is not None:
            self.dense_landings += 1
            return landing
        for _ in range(EVENT_REFINEMENTS):
            sub, err = self._attempt(s * step.size)
            if not math.isfinite(err):
                return self._failed_landing(sub, s * step.size, "an activation change")
            earlier, other = self._first_crossing(sub)
            if (
                earlier is not None
                and earlier < 1.0 - 1e-9
                and not set(other) <= set(cluster)
            ):
                s, cluster = s * earlier, other
                continue
            residual = self._residual(sub.y1, cluster)
            if residual <= self._landing_tolerance():
                return Landing(
                    sub, self._clock(sub), err, cluster=cluster, residual=residual
                )
            # Newton step on the worst pair along this sub-step's dense output.
            cos = self._cosines(sub.y1)
            i, j = max(cluster, key=lambda pair: abs(cos[pair]))
            g = self._crossing_polynomials(sub)[:, i, j]
            offset = self.offsets[i, j] if self.touching[i, j] else 0.0
            slope = g[1] + 2 * g[2] + 3 * g[3]
            value = g[0] + g[1] + g[2] + g[3] - offset
            if slope == 0:
                return None
            s *= 1.0 - value / slope
            if not 0.0 < s <= 1.0:
                return None
        return None

    def _land_on_dense_output(self, step: Step, s: float, cluster: list):
        """Land on a crossing at the fraction ``s`` of an explicit step without
        taking the step again, or return None where that is not accurate enough.

        The crossing was located on the step's cubic dense output. The landing
        point is on the 4th-order continuous extension of the same step, at the
        crossing moved onto it by Newton's method. Its error is estimated by the
        distance between the cubic and the extension there, which is that of
        the cubic, the lower-order one. The time gained comes from the extension
        applied to ``dt/dtau`` at the stages, with the error estimate of
        ``dense_log_integral``. Both estimates must be within the tolerance, as
        for a step; otherwise the step is taken again up to ``s``.
        """
        stages = getattr(step, "stages", None)
        rates = getattr(step, "stage_log_rates", None)
        if self.stiff or stages is None or rates is None:
            return None
        if np.ptp(rates) > STAGE_RULE_SPREAD:
            return None
        moved = self._crossing_on_extension(step, s, cluster)
        if moved is None:
            return None
        s, y1 = moved
        difference = y1 - step.interpolate(s)
        scale = self.coords.scale(step.y0, self.rtol, self.atol)
        err = float(np.max(np.abs(difference) / scale))
        if not err <= 1.0:
            return None
        residual = self._residual(y1, cluster)
        if residual > self._landing_tolerance():
            return None
        partial = dense_log_integral(rates, step.size, s)
        if partial is None:
            return None
        sub = step.restricted(s, y1, difference)
        # Interior states (records, events) come from the extension, as for a
        # whole step: the cubic's error is controlled at s only.
        sub.extension = (step, s)
        clock = StepTime(self, sub)
        clock._full = partial
        if self._clock_error(clock) > 1.0:
            return None
        return Landing(sub, clock, err, cluster=cluster, residual=residual)

    def _crossing_on_extension(self, step: Step, s: float, cluster: list):
        """Move the crossing at ``s`` (found on the cubic) onto the continuous
        extension by Newton's method on ``<x_i, a_j(s)>``, for the pair of
        ``cluster`` farthest from its boundary there.

        Returns the new ``s`` and the extension's state there, or None if the
        iteration leaves (0, 1].
        """
        D = self.system.D
        blocks = self.coords.blocks
        y = dense_state(step, s)
        cos = self._cosines(y)
        i, j = max(cluster, key=lambda pair: abs(cos[pair]))
        x = self.problem.X[i]
        for _ in range(EVENT_REFINEMENTS):
            value = x @ blocks(y)[j, 1 : 1 + D]
            slope = x @ blocks(dense_velocity(step, s))[j, 1 : 1 + D]
            if slope == 0 or not math.isfinite(value / slope):
                return None
            correction = value / slope
            s -= correction
            if not 0.0 < s <= 1.0:
                return None
            y = dense_state(step, s)
            if abs(correction) <= 4 * np.finfo(float).eps * s:
                break
        return s, y

    def _switch(
        self, cluster: list, arrived: bool = True, frozen: tuple | None = None
    ) -> list | None:
        """Project the pairs of ``cluster`` onto their boundaries and choose the
        new pattern. Returns the changed pairs, or None if the flow slides.
        ``arrived``: the flow reached the boundaries (False for pairs that
        start on them). ``frozen``: ``(step, T)`` of a landing within a frozen
        step, whose gradients choose the pattern where they certify the choice
        (``_frozen_rates``)."""
        D = self.system.D
        blocks = self.coords.blocks(self.z)
        shift = 0.0
        # With D = 1 every boundary of a neuron is w_j = 0, so this projection
        # sets w_j to 0; _cross_through then lets the neuron go on through it.
        for j in sorted({j for _, j in cluster}):
            rows = [i for i, jj in cluster if jj == j]
            a = blocks[j, 1 : 1 + D].copy()
            blocks[j, 1 : 1 + D] = self._project(a, rows)
            if frozen is not None:
                shift = max(shift, direction_shift(blocks[j], a, D))
        self.z = self.coords.normalize(self.z)
        self._set_offsets(cluster)

        before = self.pattern.copy()
        trial = self.pattern.copy()
        if self.problem.activation == "relu_derivative_one":
            # The planted fault: a pair at 0 is active, and turns inactive only
            # when the active field moves its pre-activation down.
            for i, j in cluster:
                trial[i, j] = True
            rates = self._boundary_rates(trial)
            for (i, j), slope in zip(cluster, rates(trial, cluster)):
                trial[i, j] = not slope < 0
            chosen = trial
        else:
            for i, j in cluster:
                trial[i, j] = False
            chosen = None
            if frozen is not None:
                try:
                    rates = self._frozen_rates(*frozen, shift, trial)
                    chosen = self._choose_pattern(
                        cluster, before, trial, rates, arrived
                    )
                except UncertainSlope:
                    chosen = None
            if chosen is None:
                rates = self._boundary_rates(trial)
                chosen = self._choose_pattern(cluster, before, trial, rates, arrived)
            if chosen is SLIDING:
                return None
        self.pattern = chosen
        for i, j in cluster:
            self.touching[i, j] = True
        return [
            (i, j, bool(chosen[i, j]))
            for i, j in cluster
            if chosen[i, j] != before[i, j]
        ]

    def _choose_pattern(
        self, cluster: list, before: np.ndarray, cleared: np.ndarray, rates, arrived
    ):
        """Return the pattern after the landing on ``cluster``, chosen by the
        slopes ``rates`` at the boundaries, or ``SLIDING`` where the flow
        slides along one. ``cleared``: ``before`` with the cluster's pairs
        inactive."""
        trial = cleared.copy()
        slopes = rates(trial, cluster)
        for (i, j), slope in zip(cluster, slopes):
            trial[i, j] = slope > 0
        if arrived:
            self._cross_through(cluster, slopes, before, trial, rates)
        for (i, j), slope in zip(cluster, rates(trial, cluster)):
            if trial[i, j] and not slope > 0:
                self.detail = (
                    f"pair (sample {i}, neuron {j}) at log t = {self.log_t:.6g}: the "
                    "inactive side moves <x_i, w_j> up and the active side moves it "
                    "down"
                )
                return SLIDING
        return trial

    def _cross_through(
        self, cluster: list, slopes: list, before: np.ndarray, trial, rates
    ) -> None:
        """Let a neuron that the flow moved onto its boundaries with no field
        left there cross through them.

        The choice above starts from the cluster's pairs inactive. That can
        leave a neuron without an active pair and with no field across any of
        its cluster's boundaries, so that it would stay there for good. This
        happens where the projection removed all of ``a_j`` (with ``D = 1``, at
        every crossing), or left ``a_j`` orthogonal to every sample it could
        act on. The flow only passes through such a state, since it arrived
        with a nonzero velocity. The crossing, every pair of the neuron
        changing side, is taken instead where it is consistent: the newly
        active pairs move up and the others do not. Otherwise the neuron
        stays, as the flow does when both sides push it back.
        """
        for j in sorted({j for _, j in cluster}):
            pairs = [k for k, (_, jj) in enumerate(cluster) if jj == j]
            if trial[:, j].any() or any(slopes[k] != 0.0 for k in pairs):
                continue
            crossed = trial.copy()
            for k in pairs:
                i = cluster[k][0]
                crossed[i, j] = not before[i, j]
            neuron_pairs = [cluster[k] for k in pairs]
            crossed_slopes = rates(crossed, neuron_pairs)
            if all(
                slope > 0 if crossed[i, j] else slope <= 0
                for (i, _), slope in zip(neuron_pairs, crossed_slopes)
            ):
                trial[:, j] = crossed[:, j]

    def _project(self, a: np.ndarray, rows: list) -> np.ndarray:
        """Return ``a`` projected onto the boundaries of the samples ``rows``."""
        if len(rows) == 1:
            x = self.problem.X[rows[0]]
            return a - (x @ a) / (x @ x) * x
        # Samples of a cluster may be parallel (equal directions, other norms)
        # or nearly so: their small singular values are roundoff or below the
        # tolerance (see PROJECTION_RANK), and inverting them would move a_j far.
        unit = self.problem.X[rows] / self.x_norms[rows, None]
        _, singular, Vt = np.linalg.svd(unit, full_matrices=False)
        rank = max(PROJECTION_RANK, 0.5 * (self.atol + self.rtol))
        basis = Vt[singular > rank * singular[0]]
        return a - basis.T @ (basis @ a)

    def _set_offsets(self, cluster: list) -> None:
        """Set the offset of each just-projected pair above the cosine left on it."""
        cosines = self._cosines(self.z)
        for i, j in cluster:
            self.offsets[i, j] = self._pair_offset(cosines[i, j])

    def _pair_offset(self, cosine: float) -> float:
        """Return the offset of a pair whose projection left ``cosine``."""
        return max(self.touch_offset, 2 * abs(cosine))

    def _boundary_rates(self, pattern: np.ndarray):
        """Evaluate the flow at the current state under ``pattern`` and return
        ``slopes(trial, pairs)``: for each pair, ``d<x_i, a_j>/dtau`` under
        ``trial`` (at the boundary its sign is that of ``d<x_i, w_j>/dt``), or 0
        within roundoff of 0.

        ``trial`` may differ from ``pattern`` only at pairs on their boundary.
        Their pre-activations are 0 to roundoff, so the outputs, the loss
        gradients and ``q_j`` are those of ``pattern``, and only the sum
        ``sum_i P_ij <G_i, b_j> x_i`` of ``d a_j`` changes. One evaluation
        serves every trial.
        """
        self.nfev += 1
        y = self.coords.to_polar(self.z)
        ev = self.system.evaluate(y, pattern)
        _, a, _ = self.system.split(y)
        X = self.problem.X

        def slopes(trial: np.ndarray, pairs: list) -> list:
            values = []
            for i, j in pairs:
                da = (ev.GB[:, j] * trial[:, j]) @ X - ev.q[j] * a[j]
                value = float(X[i] @ da)
                size = self.x_norms[i] * float(np.linalg.norm(da))
                values.append(0.0 if abs(value) <= ZERO_SLOPE * size else value)
            return values

        return slopes

    def _frozen_rates(self, step: FrozenStep, T: float, shift: float, pattern, y=None):
        """Return ``slopes(trial, pairs)`` as :meth:`_boundary_rates` does, from
        the frozen gradients of ``step``, at the current state: the step's state
        after ``T``, moved by ``shift`` (the projection onto the boundaries), or
        the polar state ``y`` where given. It needs no evaluation of the flow.

        A slope is returned only where the true gradients give it the same sign
        and also put it above the roundoff threshold ``ZERO_SLOPE``. Otherwise
        ``UncertainSlope`` is raised, so that the caller evaluates the flow. With
        ``d = step.gradient_drift(T, shift)`` bounding ``sum_i ||x_i|| ||dG_i||``
        over all samples, and ``||omega_j|| = 1``, the true ``da_j`` differs from
        this one by at most ``d ||b_j||`` in its sum over samples and
        ``|dq_j| ||a_j|| <= 2 d ||a_j||^2 ||b_j|| <= d ||a_j||`` in its radial
        term, so by ``2 d``, and ``<x_i, da_j>`` by ``2 d ||x_i||``.
        """
        drift = step.gradient_drift(T, shift)
        if not math.isfinite(drift):
            raise UncertainSlope
        if y is None:
            y = self.coords.to_polar(self.z)
        _, a, b = self.system.split(y)
        omega = y.reshape(self.system.h, self.system.block)[:, 1:]
        X = self.problem.X
        terms: dict = {}

        def slopes(trial: np.ndarray, pairs: list) -> list:
            values = []
            for i, j in pairs:
                if j not in terms:
                    GB = step.G @ b[j]
                    active = (X @ a[j]) * pattern[:, j]
                    terms[j] = GB, 2 * float(active @ GB) / float(omega[j] @ omega[j])
                GB, q = terms[j]
                da = (GB * trial[:, j]) @ X - q * a[j]
                value = float(X[i] @ da)
                spread = 2 * drift * self.x_norms[i]
                size = self.x_norms[i] * math.sqrt(float(da @ da)) + spread
                if not abs(value) > spread + ZERO_SLOPE * size:
                    raise UncertainSlope
                values.append(value)
            return values

        return slopes
