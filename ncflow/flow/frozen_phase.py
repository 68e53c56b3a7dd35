"""The frozen-gradient phase of the adaptive driver.

From a small initialisation the outputs are so small that holding the loss
gradients fixed over a step meets the tolerance. The flow is then linear in
each neuron, and ``frozen.py`` takes exact steps of it, with every activation
change placed in closed form (one output direction) or by a search certified
not to pass a root (three classes or more). The methods here drive those steps
inside a run. They apply the error bound that ends the phase, and land on the
activation changes, one neuron at a time (``_batch_plan``) or piece by piece
(``_frozen_pieces``). They also keep the records and watch the events.

``FrozenPhase`` contains those methods of ``AdaptiveFlow``, which inherits them;
they read and change the run's state as its other methods do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ncflow._numeric import exp_or_inf, find_root
from ncflow.flow import result as res
from ncflow.flow.clock import add_log, sub_log
from ncflow.flow.crossings import (
    RELEASE_FACTOR,
    SLIDING,
    UncertainSlope,
    direction_shift,
)
from ncflow.flow.events import Norm2Above, crosses, event_value
from ncflow.flow.frozen import MAX_EXPONENT, CrossingTable, FrozenStep
from ncflow.flow.polar import PolarSystem
from ncflow.flow.step_time import Landing

# Frozen steps take each activation change on its own neuron where they can
# (FrozenPhase._frozen_batch).
FROZEN_BATCH = True
# Frozen steps go on while their error bound, times FROZEN_SAFETY, meets the
# tolerance at steps of at least FROZEN_MIN_EXPONENT / s (s: the fastest rate of
# the step).
FROZEN_SAFETY = 0.5
FROZEN_MIN_EXPONENT = 0.25
# Largest s T between two points at which a frozen step compares the values of
# the continuous events. An event that crosses 0 and back between two points is
# not seen, as between the ends of an explicit step. Measured: an event above 0
# for 0.05 of t (s T of about 0.3) was missed at 0.5 and found at 0.1.
FROZEN_EVENT_SPACING = 0.1


def quiet_margin(system: PolarSystem, log_target: float) -> float:
    """Return the margin by which a ``Norm2Above`` target must exceed a frozen
    step's bound on ``log ||theta||^2`` for the event to count as quiet
    (``AdaptiveFlow._quiet_events``).

    The margin covers the roundoff of the event's value, which is what a
    landing would evaluate. ``PolarSystem.log_norm2`` sums ``h`` terms, each a
    dot product of ``B - 1`` entries times one ``exp``. A sum of ``n`` positive
    terms errs by at most ``n eps`` relative, so this one by ``(h + B + 1) eps``
    with the products, and its log by that much absolutely. Adding
    the log of the largest term, subtracting the target and forming the bound
    ``log R_0 + 3 s T`` each round once, by ``eps max(1, |log target|)``. The
    frozen output weights add one more rounding. Twice the sum leaves room for
    the ``exp`` of each term.
    """
    eps = float(np.finfo(np.float64).eps)
    per_term = system.h + system.block + 1
    return 2.0 * eps * (per_term + 4.0 * max(1.0, abs(log_target)))


@dataclass(frozen=True)
class _FrozenClock:
    """Gradient-flow time along a frozen step that starts at ``log_t0``, with
    the step's ``T`` in units of ``1/N`` at its start."""

    log_t0: float
    log_N: float

    def log_t(self, T: float) -> float:
        """Return ``log t`` after ``T``."""
        if not T > 0:
            return self.log_t0
        return add_log(self.log_t0, math.log(T) - self.log_N)

    def T(self, log_t: float) -> float:
        """Return the ``T`` at which the step reaches ``log_t``."""
        gap = sub_log(log_t, self.log_t0) if self.log_t0 > -math.inf else log_t
        # Past float64 (a start far from small, where N is huge) no step
        # reaches log_t.
        return exp_or_inf(gap + self.log_N)


@dataclass
class _BatchPlan:
    """A frozen step planned by ``AdaptiveFlow._batch_plan``, before the run
    takes it."""

    work: FrozenStep  # the step with the planned restarts
    landings: list  # (T, changed pairs, residual, {neuron: pattern column after})
    pattern: np.ndarray
    touching: np.ndarray
    offsets: np.ndarray
    end: float
    handover: bool  # whether the piecewise loop goes on from ``end``


class FrozenPhase:
    """The frozen-phase methods of ``AdaptiveFlow`` (see the module docstring)."""

    def _frozen_phase(self) -> None:
        """Take exact frozen-gradient steps (``frozen.py``) while their error
        bound allows steps of at least ``FROZEN_MIN_EXPONENT / s`` or reaches
        the next activation change. The Runge-Kutta steps take over from there."""
        # The bound is on the relative error of each neuron, which bounds the
        # error of its log-norm and twice that of its unit direction.
        tolerance = FROZEN_SAFETY * 0.5 * (self.atol + self.rtol)
        while self.status is None and self.pattern.any():
            if self.attempts >= self.max_steps:
                return
            step = FrozenStep(
                self.system, self.coords.to_polar(self.z), self.pattern, self.ev
            )
            goes_on = step.rate > 0 and self._frozen_step(step, tolerance)
            if self.ev_stale:
                self._refresh()
            if not goes_on:
                return

    def _frozen_step(self, step: FrozenStep, tolerance: float) -> bool:
        """Advance along one frozen step (``_frozen_pieces``) and leave the
        events' values evaluated at its end."""
        goes_on = self._frozen_batch(step, tolerance) if FROZEN_BATCH else None
        if goes_on is None:
            goes_on = self._frozen_pieces(step, tolerance)
        self._fresh_values()
        return goes_on

    def _quiet_events(self, step: FrozenStep, end: float) -> bool:
        """Return whether no continuous event can change sign along the frozen
        step up to ``end``: each one is a ``Norm2Above`` below 0 at the last
        evaluation whose target lies above the step's bound on ``||theta||^2``.

        Every activation change evaluated the events before and after its
        projection, about a tenth of the frozen phase of the binary benchmark
        run. Where the bound certifies that no event crosses, the values are
        not needed, because the last ones keep their sign.
        """
        log_R = step.log_norm2_bound(end)
        if self.system.frozen_norm2 > 0:
            log_R = add_log(log_R, math.log(self.system.frozen_norm2))
        for event, value in zip(self.events, self.values0):
            if event.discrete:
                continue
            if type(event) is not Norm2Above or not value < 0:
                return False
            if (
                not log_R + quiet_margin(self.system, event.log_target)
                < event.log_target
            ):
                return False
        return True

    def _fresh_values(self) -> None:
        """Evaluate the events at the current state where quiet landings
        (``_quiet_events``) skipped them."""
        if self.values0_stale:
            self.values0 = self._event_values(self.z, self.log_t)
            self.values0_stale = False

    def _landing_window(self, rate: float) -> float:
        """Return the window of ``T`` after a frozen step's first crossing
        within which every crossing is landed on with it. Crossings closer
        than this change the state by less than 1% of the tolerance in between,
        since every rate of the step is at most ``rate``."""
        return 0.01 * (self.atol + self.rtol) / rate

    def _frozen_span(self, clock: _FrozenClock) -> float:
        """Return the frozen step's ``T`` at the end of the time span, inf
        without ``t_max``."""
        if self.log_t_max == math.inf:
            return math.inf
        if self.log_t_max <= clock.log_t0:
            return 0.0
        return clock.T(self.log_t_max)

    def _frozen_batch(self, step: FrozenStep, tolerance: float) -> bool | None:
        """Take one frozen step with each landing on its own neurons, and
        return what ``_frozen_pieces`` returns, or None where this does not
        apply and nothing was changed.

        With the gradients frozen, the neurons do not interact: a change of one
        neuron's pattern restarts its own linear flow and no other. So the
        landings are taken in time order as in the piecewise loop, each on
        its own neurons only (``_batch_plan``). The run's bookkeeping (records,
        events, separation) follows, with the states at all the landings
        computed together. Piece by piece, every landing also computes the
        whole state and searches the whole crossing table.

        It applies where nothing can stop the step at a landing: no discrete
        event, every continuous one certified quiet (``_quiet_events``), the
        end of the span beyond the step, and the step budget enough. At a
        landing that the frozen gradients do not take (uncertain, sliding, or
        changing no pair), the piecewise loop goes on with the same step.
        """
        if self.system.linear or any(event.discrete for event in self.events):
            return None
        limit = step.step_limit(tolerance)
        if not limit * step.rate >= FROZEN_MIN_EXPONENT:
            return None
        clock = _FrozenClock(self.log_t, self.ev.log_N)
        # The step reaches at least the bound's limit (found to STEP_SEARCH),
        # so these must hold up to there. The plan itself checks the bound at
        # each landing, as the piecewise loop does, up to the longest step.
        shortest = min(limit, MAX_EXPONENT / step.rate)
        if not self._frozen_span(clock) > shortest:
            return None
        if not self._quiet_events(step, shortest):
            return None
        plan = self._batch_plan(step, MAX_EXPONENT / step.rate, tolerance)
        if plan is None:
            return None
        work, end = plan.work, plan.end
        if not self._frozen_span(clock) > end or not self._quiet_events(work, end):
            return None
        if self.attempts + len(plan.landings) + 1 > self.max_steps:
            return None
        self._commit_batch(plan, clock)
        if plan.handover:
            return self._frozen_pieces(work, tolerance, clock, end)
        if end == MAX_EXPONENT / work.rate:
            # As in _frozen_pieces: a whole step that did not grow the network.
            log_norm2 = self.system.log_norm2(self.coords.to_polar(self.z))
            return log_norm2 > step.log_norm2
        return True

    def _batch_plan(self, step: FrozenStep, end: float, tolerance: float):
        """Take the landings up to ``end`` in time order on a copy of ``step``,
        each on its own neurons.

        A landing is the first crossing and the pairs of any neuron within the
        window after it, all landed at its time, as in ``_frozen_pieces``. The
        step ends where the piecewise loop would end it: where the error bound,
        with the rates of the pieces so far, no longer allows the next landing,
        or at an uncertified point. At a landing that the frozen gradients do
        not take (uncertain, sliding, or changing no pair) the plan stops, and
        the piecewise loop goes on from the landing before it.

        Returns the plan, or None where the first landing is one the plan does
        not take. Nothing of the run is changed.
        """
        work = step.copy()
        work.keep_pieces()
        pattern = self.pattern.copy()
        touching = self.touching.copy()
        offsets = self.offsets.copy()
        y = self.coords.to_polar(self.z).copy()
        blocks = y.reshape(self.system.h, self.system.block)
        crossings = CrossingTable(work, 0.25 * self.touch_offset)

        def search(columns) -> None:
            # As search in _frozen_pieces, up to the end of the step.
            signs = np.where(pattern[:, columns], 1.0, -1.0)
            shifts = np.where(touching[:, columns], offsets[:, columns], 0.0)
            crossings.update(columns, signs, shifts, end)

        # Each neuron's first crossing. The table has each pair's first root or
        # a lower bound on it, so a neuron whose smallest entry lies past the
        # end has none.
        times = np.full(self.system.h, np.inf)
        # Each neuron's pairs within the landing window after its first
        # crossing, kept with the window they were found for.
        nears: dict = {}

        def first_crossing(j: int) -> None:
            window = self._landing_window(work.rate)
            times[j], near = crossings.first(window, column=j)
            nears[j] = window, near

        search(np.arange(self.system.h))
        for j in np.flatnonzero(crossings.values.min(axis=0) <= end):
            first_crossing(int(j))
        landings = []
        position = 0.0
        detail = self.detail
        handover = False
        while True:
            j = int(np.argmin(times))
            T = float(times[j])
            cap = MAX_EXPONENT / work.rate
            if not T <= min(end, cap):
                # The last piece, to the end, as the piecewise loop's last one.
                end = max(position, min(end, cap))
                if work.bound(end) > tolerance:
                    end = max(position, work.step_limit(tolerance))
                break
            if work.bound(T) > tolerance:
                end = max(position, work.step_limit(tolerance))
                break
            window = self._landing_window(work.rate)
            if nears[j][0] != window:
                first_crossing(j)
            near = nears[j][1]
            if near is None:
                # An uncertified point ends the step, as in the piecewise loop.
                if not landings:
                    return None
                end = T
                break
            group = {j: [i for i, _ in near]}
            for k in np.flatnonzero(times <= T + window):
                k = int(k)
                if k != j:
                    _, near = crossings.first(T + window - times[k], column=k)
                    if near:
                        group[k] = [i for i, _ in near]
            # Land each neuron of the group at T, as _switch lands a cluster.
            saved = {k: (touching[:, k].copy(), offsets[:, k].copy()) for k in group}
            residual = shift = 0.0
            for k, rows in group.items():
                block = work.blocks_at(T, slice(k, k + 1))[0]
                neuron_residual, neuron_shift = self._land_neuron(
                    block, rows, touching, offsets, k
                )
                blocks[k] = block
                residual = max(residual, neuron_residual)
                shift = max(shift, neuron_shift)
            cluster = sorted((i, k) for k, rows in group.items() for i in rows)
            before = pattern.copy()
            trial = pattern.copy()
            for i, k in cluster:
                trial[i, k] = False
            try:
                rates = self._frozen_rates(work, T, shift, trial, y)
                chosen = self._choose_pattern(cluster, before, trial, rates, True)
            except UncertainSlope:
                chosen = None
            changed = []
            if chosen is not None and chosen is not SLIDING:
                changed = [
                    (i, k, bool(chosen[i, k]))
                    for i, k in cluster
                    if chosen[i, k] != before[i, k]
                ]
            if not changed:
                # The piecewise loop takes this landing and the rest of the
                # step; a first landing leaves the whole step to it.
                self.detail = detail
                if not landings:
                    return None
                for k, (touched, offset) in saved.items():
                    touching[:, k], offsets[:, k] = touched, offset
                end, handover = position, True
                break
            for k in group:
                pattern[:, k] = chosen[:, k]
            for i, k in cluster:
                touching[i, k] = True
            columns = {k: pattern[:, k].copy() for k in group}
            landings.append((T, changed, residual, columns))
            position = T
            for k in group:
                work.restart(slice(k, k + 1), y, pattern, T)
                search(slice(k, k + 1))
                first_crossing(k)
        return _BatchPlan(work, landings, pattern, touching, offsets, end, handover)

    def _land_neuron(self, block, rows, touching, offsets, j: int):
        """Land neuron ``j`` (its polar ``block``, changed in place) on the
        boundaries of the samples ``rows``, as ``_settle`` and ``_switch`` do
        for the whole state: clear its pairs that left their boundaries,
        project, normalise and set the offsets of ``rows``. Returns the
        landing's location error (as ``_residual``) and the projection's shift
        of the unit direction.

        NOTE: ``_settle`` clears the marks of every neuron at each landing of
        the piecewise loop, and this only those of neuron ``j``. A pair of
        another neuron may leave its boundary by more than ``RELEASE_FACTOR``
        offsets and cross back within the same frozen step. It is then found
        where it passes minus its offset, not 0, so its landing is off by that
        offset (``touch_offset``, or twice the cosine its projection left). The
        tests that compare the two loops have not met such a pair.
        """
        X, x_norms, D = self.problem.X, self.x_norms, self.system.D
        a = block[1 : 1 + D].copy()
        a_norm = math.sqrt(float(a @ a)) or 1.0
        cosines = np.abs(X @ a) / (x_norms * a_norm)
        omega_norm = math.sqrt(float(block[1:] @ block[1:]))
        residual = max(float(cosines[i]) for i in rows) * a_norm / omega_norm
        touching[:, j] &= cosines <= RELEASE_FACTOR * offsets[:, j]
        block[1 : 1 + D] = self._project(a, rows)
        shift = direction_shift(block, a, D)
        norm = math.sqrt(float(block[1:] @ block[1:]))
        block[0] += math.log(norm)
        block[1:] /= norm
        a = block[1 : 1 + D]
        a_norm = math.sqrt(float(a @ a)) or 1.0
        for i in rows:
            cosine = float(X[i] @ a) / (x_norms[i] * a_norm)
            offsets[i, j] = self._pair_offset(cosine)
        return residual, shift

    def _commit_batch(self, plan: _BatchPlan, clock: _FrozenClock) -> None:
        """Apply a plan of ``_batch_plan`` to the run, in time order: records,
        activation events, the separation time and the counters.

        The run then lands at the plan's end. Where the piecewise loop goes on
        with the step, it keeps the state at the plan's last landing instead."""
        work, landings, end = plan.work, plan.landings, plan.end
        if self.frozen_steps == 0:
            self.phases.append(("frozen", self.log_t))
        # The grid times up to the end, and the state after each landing and at
        # each grid time, in one batch.
        log_t_end = clock.log_t(end)
        grid = self._grid_times(log_t_end)
        grid_T = [min(clock.T(target), end) for target in grid]
        # The states at the landings are kept only as activation-change records.
        landing_T = [landing[0] for landing in landings] if self.record_events else []
        states = work.states_at(landing_T + grid_T)
        grid_states = states[len(landing_T) :]
        landing_states = (
            states[: len(landing_T)] if landing_T else [None] * len(landings)
        )

        current = self.pattern.copy()
        position = 0.0
        next_grid = 0
        for (T, changed, residual, columns), state in zip(landings, landing_states):
            log_t = clock.log_t(T)
            while next_grid < len(grid) and grid[next_grid] <= log_t:
                self._keep_record(
                    "grid", grid[next_grid], grid_states[next_grid], current
                )
                next_grid += 1

            self.attempts += 1
            self.frozen_steps += 1
            if T > position:
                self.n_accepted += 1
            position = T
            for k, column in columns.items():
                current[:, k] = column
            self.activation_events.append(res.ActivationEvent(log_t, changed, residual))
            self._keep_record("event", log_t, state, current)
            self._note_separation(current, log_t)
        for target, state in zip(grid[next_grid:], grid_states[next_grid:]):
            self._keep_record("grid", target, state, plan.pattern)

        self.pattern = plan.pattern
        self.touching, self.offsets = plan.touching, plan.offsets
        self.last_step = None
        self.log_t = log_t_end
        self.z = self.coords.from_polar(work.state_at(end))
        if plan.handover:
            # The piecewise loop goes on from here with the step's gradients.
            self.ev_stale = True
            self.values0_stale = True
            return
        # The last piece, to the end of the step, counted as the piecewise loop
        # counts it: not where the step ends on its last landing.
        moved = end > position
        if moved:
            self.attempts += 1
            self.frozen_steps += 1
            self.n_accepted += 1
        self._settle(Landing(None, None, 0.0), moved=moved)

    def _frozen_pieces(
        self,
        step: FrozenStep,
        tolerance: float,
        clock: _FrozenClock | None = None,
        start: float = 0.0,
    ) -> bool:
        """Advance along one frozen step, from one evaluation of the gradients,
        while its error bound meets ``tolerance``.

        ``clock`` and ``start`` let it go on with a step that a batch
        (``_frozen_batch``) took up to ``start``, its ``T`` counted from the
        step's start.

        The step is taken in pieces that end on an activation change, an
        event, the end of the span or the bound's limit. After an activation
        change it goes on with the same gradients: only the neurons of the
        change start a new linear flow (``FrozenStep.restart``), so a change
        costs the pattern choice, not a new step. Returns False where the
        frozen phase ends: without a step where the bound allows only steps
        below ``FROZEN_MIN_EXPONENT / s`` that end on none of those, and after a
        step of the longest length that did not grow ``||theta||^2``.
        """
        if clock is None:
            clock = _FrozenClock(self.log_t, self.ev.log_N)
        log_t_at = clock.log_t
        span = self._frozen_span(clock)

        def search(columns) -> None:
            """Search the pairs of the neurons in ``columns`` for their first
            crossings, signed by the pattern and offset where a pair touches
            its boundary."""
            signs = np.where(self.pattern[:, columns], 1.0, -1.0)
            touching = self.touching[:, columns]
            offsets = np.where(touching, self.offsets[:, columns], 0.0)
            crossings.update(columns, signs, offsets, MAX_EXPONENT / step.rate)

        crossings = None
        if not self.system.linear:
            # A landing tolerance below half of every touching pair's offset,
            # so that no pair lands again where its last change left it.
            crossings = CrossingTable(step, 0.25 * self.touch_offset)
            search(np.arange(self.system.h))
        position = start
        while True:
            # A restart may raise step.rate, which shortens the longest step.
            cap = MAX_EXPONENT / step.rate
            if cap <= position:
                return True
            end, landing = cap, Landing(None, None, 0.0)
            if span <= end:
                end, landing = span, Landing(None, None, 0.0, event_index=-1)
            if crossings is not None:
                window = self._landing_window(step.rate)
                first, cluster = crossings.first(window)
                if first <= end and math.isfinite(first):
                    end, landing = first, Landing(None, None, 0.0, cluster=cluster)
            # Most pieces end on a crossing well within the bound: one
            # evaluation of the bound confirms that. Otherwise the step is cut
            # to the longest one that meets it.
            if step.bound(end) > tolerance:
                limit = step.step_limit(tolerance)
                if position == 0.0 and not limit * step.rate >= FROZEN_MIN_EXPONENT:
                    return False
                if limit <= position:
                    return True
                end, landing = limit, Landing(None, None, 0.0)
            if self.frozen_steps == 0:
                self.phases.append(("frozen", self.log_t))
            self.attempts += 1
            self.frozen_steps += 1
            values = None
            quiet = self._quiet_events(step, end)
            if end > position and self.events and not quiet:
                self._fresh_values()
                found, values = self._frozen_event(step, position, end, log_t_at)
                if found is not None:
                    end, index = found
                    landing = Landing(None, None, 0.0, event_index=index)
            self._frozen_records(step, end, clock)
            moved = end > position
            if moved:
                self.n_accepted += 1
                self.log_t = log_t_at(end)
                self.z = self.coords.from_polar(step.state_at(end))
            self.last_step = None
            if landing.cluster is not None:
                # Record the location error as the other landings do. A closed-form
                # root leaves roundoff, and a searched one up to its landing tolerance.
                landing.residual = self._residual(self.z, landing.cluster)
            if landing.cluster is None:
                self._settle(landing, moved=moved)
                if end == cap and landing.event_index is None:
                    # A whole step of s T = MAX_EXPONENT that did not grow the
                    # network means its neurons shrink along their linear flows.
                    # Frozen steps would follow that decay one MAX_EXPONENT at a
                    # time (83532 steps to t = 1e5 in a trial with D = 1, where
                    # explicit steps took 13), so the explicit steps take over.
                    log_norm2 = self.system.log_norm2(self.coords.to_polar(self.z))
                    return log_norm2 > step.log_norm2
                return True
            self._settle(
                landing,
                moved=moved,
                refresh=False,
                frozen=(step, end),
                values=values,
                quiet=quiet,
            )
            self.ev_stale = True
            if self.status is not None or self.attempts >= self.max_steps:
                return True
            # Only the neurons of the change start new pieces; the roots of the
            # others are those of their current pieces.
            columns = sorted({j for _, j in landing.cluster})
            step.restart(columns, self.coords.to_polar(self.z), self.pattern, end)
            search(columns)
            position = end

    def _frozen_records(self, step: FrozenStep, end: float, clock: _FrozenClock):
        """Record the grid times up to ``end`` of a frozen step."""
        for target in self._grid_times(clock.log_t(end)):
            self._record("grid", step.state_at(min(clock.T(target), end)), target)

    def _frozen_event(self, step: FrozenStep, start: float, end: float, log_t_at):
        """Return the earliest ``(T, index)`` in (start, end] at which a
        continuous event crosses 0 along a frozen step, or None, and the events'
        values at ``end`` where none does (else None).

        The values are compared at points ``FROZEN_EVENT_SPACING / s`` apart or
        closer, not only at the step's ends: a frozen step may be longer than
        the explicit steps, and an event that crosses 0 and back between two
        points is not seen. Where every continuous event is ``falling`` (as
        ``LossBelow``), which crosses 0 at most once, the ends are enough.
        """
        if all(event.discrete for event in self.events):
            return None, None
        pieces = 1
        if not all(event.discrete or event.falling for event in self.events):
            pieces = max(1, math.ceil(step.rate * (end - start) / FROZEN_EVENT_SPACING))
        T0, values0 = start, self.values0
        for piece in range(1, pieces + 1):
            T1 = end if piece == pieces else start + (end - start) * piece / pieces
            values1 = self._event_values(step.state_at(T1), log_t_at(T1))
            best = None
            for index, (event, v0, v1) in enumerate(zip(self.events, values0, values1)):
                if event.discrete or not crosses(v0, v1, event.direction):
                    continue

                def along(T, event=event):
                    state = self._state(step.state_at(T), log_t_at(T))
                    return event_value(event, state)

                T = find_root(along, T0, T1)
                if best is None or T < best[0]:
                    best = (T, index)
            if best is not None:
                return best, None
            T0, values0 = T1, values1
        return None, values1
