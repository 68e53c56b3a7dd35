"""Adaptive integration of the gradient flow with located activation events.

The flow is piecewise smooth: between two activation changes (a pre-activation
``<x_i, w_j>`` crossing 0) it is a polynomial vector field. The driver below
integrates each smooth piece under local error control in the polar
coordinates of ``polar.py``:

- from a small initialisation, while the outputs are so small that holding the
  loss gradients fixed over a step meets the tolerance, with exact steps of
  the resulting linear flow (``frozen.py``), which place every activation
  change in closed form (one output direction) or by a search certified not
  to pass a root (three classes or more);
- while the flow is not stiff (small initialisation, alignment, escape), with
  the explicit Dormand-Prince 5(4) method in the clock ``tau``;
- once it is (the step is held by stability, not accuracy: in ``tau`` the
  stiffness grows like ``||theta||^2``), or once every sample is classified
  and the explicit steps grow ``log R`` only slowly or ``R`` reaches
  ``LATE_EXPLICIT_MAX``, with the L-stable, fully implicit
  Radau IIA method of ``radau.py``, in the clock ``u = -||theta||^-1`` when
  every sample is classified correctly and ``R = ||theta||^2 >= 1``
  (``coordinates.NormCoordinates``, ``NORM_CLOCK_MIN``) and in ``tau``
  otherwise. Its Newton iteration starts
  from the previous step's collocation polynomial, extended over the new step:
  late in a multi-class run the fast part of the flow is exponentially
  nonlinear at the scale ``1/||theta||^2`` of the directions, and only a start
  that close converges
  (from ``Z = 0`` the iteration failed on most steps past ``R = 1e10``).

Each step is searched for its first activation crossing on the cubic dense
output. An explicit step ends there when that cubic is within tolerance of the
step's 4th-order continuous extension; otherwise the step is re-taken to end on
the crossing. The end point is refined until the pre-activation is 0 to
tolerance and projected to exactly 0, and the pattern switches by the
``relu'(0) = 0`` rule:

- at ``z_ij = 0`` the pair is inactive; if the inactive vector field moves
  ``z_ij`` up, the pair becomes active, provided the active field moves it up
  as well;
- if the two fields point towards each other, the flow would slide along the
  boundary, which ``relu'(0) = 0`` does not define: the run stops with
  ``STATUS_SLIDING``.

Error control is per component, in the max norm, with tolerance
``atol + rtol`` on the log-norms and on the unit directions ``omega_j``:
``rtol`` is the relative accuracy per step of every neuron's norm and
direction, however small the neuron. Gradient-flow time is accumulated by
quadrature along each step (``clock.py``); a step is also rejected when the
quadrature error estimate exceeds ``rtol * max(1, |log t|)``.

``AdaptiveFlow`` is the run loop: steps, error control, events, records. It
inherits the methods of two parts from their own modules: the activation
crossings (``crossings.py``: find, land, switch) and the frozen-gradient phase
(``frozen_phase.py``). The gradient-flow time along a step is in
``step_time.py`` and the root search on the crossing cubics in
``cubic_roots.py``.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from ncflow._numeric import find_root, find_root_newton
from ncflow.flow import result as res
from ncflow.flow.clock import (
    NODES,
    NORM_NODES,
    NormStepClock,
    StepClock,
    add_log,
    sub_log,
)
from ncflow.flow.coordinates import (
    LATE_MARGIN_SHIFT,
    NormCoordinates,
    TauCoordinates,
    late_rtol,
    margins,
)
from ncflow.flow.crossings import (
    EVENT_REFINEMENTS,
    RELEASE_FACTOR,
    ActivationCrossings,
)
from ncflow.flow.events import (
    FlowState,
    crosses,
    event_value,
    network_log_losses,
    separation_report,
    terminal_after,
)
from ncflow.flow.frozen import frozen_applies
from ncflow.flow.frozen_phase import FrozenPhase
from ncflow.flow.linear import neuron_groups
from ncflow.flow.polar import PolarSystem
from ncflow.flow.radau import C_NODES as RADAU_NODES
from ncflow.flow.radau import ERROR_ORDER, radau_step
from ncflow.flow.step_time import RETRY, Landing, StepTime, hermite_start
from ncflow.flow.steps import (
    DP_ERROR_ORDER,
    DP_STABILITY_LIMIT,
    Step,
    dense_state,
    dopri5_step,
    error_noise,
)
from ncflow.network import Parameters, Problem, sample_margins

SAFETY = 0.9  # fraction of the predicted optimal step that is taken
MAX_GROWTH = 5.0  # largest step increase after an accepted step
MAX_SHRINK = 0.2  # largest step decrease after a rejected step
# In the norm clock a step may grow R by at most a quarter, because larger steps put
# the stages far from the solution, where the error estimate stops being reliable.
# The Newton iteration's basin in the fast part of the state shrinks like 1/R. There
# the support margins are of order R and their differences of order 1. An error of
# tol = atol + late_rtol(rtol, R, x_max) in the unit directions moves a difference
# by up to about R max||x_i|| tol (an estimate, see coordinates.LATE_MARGIN_SHIFT),
# so a step may double R while that shift is at most EARLY_NORM_SHIFT, or below
# EARLY_NORM_BELOW. late_rtol keeps the shift at 1 up to R max||x_i|| = 1e10,
# where its floor takes over. The stalls of the NOTE below began at R tol >= 38,
# with tol = atol + min(rtol, 1e-6) and data norms up to 2.
# Measured in the clock u = -R^(-1/2) on 21 runs to R = 1e12 (the two benchmark
# problems, the binary one with X scaled by 30 and 100, the cross-entropy problem
# of the tests with X scaled by 1, 30 and 100; rtol 1e-2, 1e-6 and 1e-10), with
# EARLY_NORM_STEP = 1, 2 and 3: each time 20 runs reached 1e12, and the
# cross-entropy run scaled by 100 stopped on roundoff (at R = 9.0e11, rtol = 1e-2;
# 9.2e11, rtol = 1e-6; 5.8e11, rtol = 1e-2). A cap of 2 took 3 % fewer
# evaluations over the 20 (542 against 575 on the binary benchmark run to error
# 1e-6). It cost accuracy between the step ends, though. On the 853 examples of
# `ncflow verify --profile thorough --seed 2026` the worst C13 margins rose from
# 0.25 and 0.16 to 0.53 and 0.84 of the tolerance, and C6's from 0.003 to 0.064
# (three classes). Against 0.5, a cap of 1 takes the benchmark runs to error 1e-6
# at rtol = 1e-6 from 824 to 755 (binary) and from 631 to 621 (three classes)
# evaluations.
# NOTE: caps of 0.4 and 0.5 at every R made runs to R = 1e12 stall on roundoff in
# the clock R, from R = 3.8e7 (rtol = 1e-2) and 1.3e11 (rtol = 1e-6) on. In one
# such run (rtol = 1e-8, the binary problem of the tests) a step of 0.5 R from
# R = 1.19e10 met rtol but moved the difference of two support margins, which are
# of order R, by about 10: their loss weights fell from 0.05 to 0. From that
# state the Newton iteration failed at every step size down to 1e-6 R. In the
# clock u, MAX_NORM_STEP = 0.5 stopped 5 of the 21 runs above on roundoff, all
# with X scaled by 100, between R = 1.7e11 and 5.4e11. Why smaller caps keep that
# error below 1 was not worked out.
MAX_NORM_STEP = 0.25
EARLY_NORM_STEP = 1.0
EARLY_NORM_BELOW = 1e4
# Twice the shift late_rtol allows, so that atol and roundoff do not end the larger
# steps while late_rtol's bound applies.
EARLY_NORM_SHIFT = 2 * LATE_MARGIN_SHIFT
# The norm clock starts only once R = ||theta||^2 is at least this. Below R = 1
# the outputs are small, the flow is not stiff in tau (its stiffness grows like
# R), and the neurons' log-norms less log(R) / 2 still change like log R, which
# the norm clock follows only in steps of about 1 % of R. Measured at rtol = 1e-8
# to R = 1e8 from eps = 1e-150, with the floor at 1e-100 and at 1: the binary
# benchmark problem took 6.36 s and 1.06 s, the three-class one 0.90 s and
# 0.40 s, at the same C11 error. From the problems' default eps the runs at
# rtol = 1e-6 did not change (they enter the norm clock at R = 13.6 and 2.8),
# and the three-class one at rtol = 1e-8 took 1647 evaluations, not 1677. The
# floor must also stay far above 1e-154, below which the norm clock's Jacobian,
# with entries kappa_j / R^2 and rhs / (dR/dtau)^2 (coordinates.py), overflows
# float64.
NORM_CLOCK_MIN = 1.0
# Frozen-gradient steps (frozen.py, frozen_phase.py) start every run whose
# problem allows them.
FROZEN_STEPS = True
# Lower end of the search for the end of the span in log s. Its exp is 0, so
# log t there is that of the step's start.
LOG_S_FLOOR = -800.0
MIN_STEP = 1e-13  # smallest step, relative to the independent variable
# A pair that sits on its activation boundary registers a new crossing only
# once its pre-activation has moved this far (times rtol, in cosine units) to
# the other side, so that the roundoff left by the projection to 0 is never
# read as a crossing.
TOUCH_OFFSET = 1e-3
# Floor of that offset, in cosine units: the cosine of a projected pair keeps a
# roundoff of order 1e-17 to 1e-16, which TOUCH_OFFSET * rtol falls below for rtol
# near 1e-14. Below the floor a just-projected pair reads as crossing again at
# s = 0 on every step, and the run makes no progress (seen at rtol=1e-14).
TOUCH_FLOOR = 16 * np.finfo(np.float64).eps
# The explicit method hands over to Radau IIA once h * rho has exceeded this
# fraction of its stability limit on STIFF_STEPS consecutive accepted steps:
# the step is then limited by stability, not accuracy.
STIFF_FRACTION = 0.5
STIFF_STEPS = 3
# The explicit method also hands over after SLOW_STEPS consecutive accepted steps
# that each grew log R by less than SLOW_LOG_R, once every sample is classified
# correctly and R >= NORM_CLOCK_MIN. A four-class run at rtol = 3e-3 took 393 such
# steps in a row (480 explicit steps to R = 1e8, never limited by stability), and
# its log t ended 2 % off that of a run in the norm clock. On the benchmark problems
# at rtol from 1e-2 to 1e-8 and eps down to 1e-150, at most 20 came in a row, and
# the stiffness test took over after them. Handing over after 3 made the binary run
# from eps = 1e-150 take 4203 evaluations instead of 2785: the norm clock there
# took steps of 0.005 in log R, against 0.045 for the explicit ones. The rule
# applies only where rtol > SLOW_RULE_RTOL: at rtol = 1e-10 it fired at R = 6 and
# took binary runs from 5400 to 8753 and from 6606 to 14902 evaluations.
SLOW_LOG_R = 0.05
SLOW_STEPS = 50
SLOW_RULE_RTOL = 1e-6
# The explicit method hands over at once where those conditions hold and R is at
# least this. In tau, Phi = log dt/dtau grows like R, and the quadrature of t over
# an explicit step needs ever more panels: a three-class run at rtol = 1e-2 that
# stayed explicit took 0.38 s to R = 1e10 and 113 s to R = 1e12, nearly all in
# that quadrature. The benchmark runs hand over by the stiffness test, at R from
# 2.8 to 42 where checked, and this bound changes none of their counts.
LATE_EXPLICIT_MAX = 1e4
# An explicit step counts as held by the quadrature of t when the clock error
# exceeds both the state error and this fraction of the tolerance.
CLOCK_BOUND = 0.1
# A rejected norm-clock step whose error estimate is within this factor of the
# estimate's own roundoff noise is accepted: shrinking the step cannot make the
# estimate smaller. Such steps are counted and reported.
NOISE_MARGIN = 4.0
# Largest step in tau. Every rate is at most 1 in tau, so a step this long that
# meets the tolerance means the flow no longer moves there at float64 resolution
# (it still moves in t: t = exp(-log N) tau can grow without bound).
MAX_TAU_STEP = 1e300
# A run in the norm clock stops once this many accepted steps in a row have each
# advanced R by less than STALL_FRACTION * rtol**(1/4) of itself. The local error
# of the slow part of the state is of order (h/R)^4 (third-order embedded
# estimate), so accuracy alone never limits the step that far below rtol**(1/4) R.
# Such steps are limited by roundoff (measured with the clock R: from R = 5e13 on
# at rtol = 1e-8, where eps R is 1e-2. With the clock u the benchmark problems stop
# on it between R = 5.7e13 and 4.4e14 at rtol 1e-6 to 1e-10).
STALL_STEPS = 50
STALL_FRACTION = 1e-3
# A run stops after this many landings in a row on a crossing at the start of a
# step that changed no pattern: each would repeat forever.
IDLE_LANDINGS = 3


# A trajectory record is placed where log t is within this fraction of one
# step's tolerance on log t of its grid time: far below the error that the
# integration itself allows there.
RECORD_TIME_FRACTION = 1e-3
# Below this log t the record grid steps in log t by log(record ratio):
# log(1 + t) and t differ there by t / 2 < 2.2e-16 relative.
RECORD_LINEAR_BELOW = math.log(2 * np.finfo(np.float64).eps)
# Earliest time of the record grid: the smallest normal float64 t.
LOG_T_GRID_FLOOR = math.log(np.finfo(np.float64).tiny)


# A run whose ||theta||^2 falls below exp(LOG_NORM2_FLOOR), the square of the
# smallest normal float64 number, has decayed to theta = 0 (AdaptiveFlow._decayed).
# Starts must have ||theta||^2 above that number itself, so a run gets here only
# by shrinking by a factor of more than 1e-308.
LOG_NORM2_FLOOR = 2 * math.log(np.finfo(np.float64).tiny)


def _norm_step_cap(u: float, shift: float) -> float:
    """Return the largest step in the norm clock from ``u = -R^(-1/2)``: the
    step that grows ``R`` by ``EARLY_NORM_STEP R`` below ``EARLY_NORM_BELOW`` or
    while the margin shift that the tolerance allows, ``shift = R max||x_i||
    tol``, is at most ``EARLY_NORM_SHIFT``, and by ``MAX_NORM_STEP R`` from there
    on."""
    early = u**-2 < EARLY_NORM_BELOW or shift <= EARLY_NORM_SHIFT
    growth = EARLY_NORM_STEP if early else MAX_NORM_STEP
    return -u * (1.0 - (1.0 + growth) ** -0.5)


class AdaptiveFlow(ActivationCrossings, FrozenPhase):
    """State machine of one adaptive run; :meth:`run` returns a FlowResult."""

    def __init__(
        self,
        problem: Problem,
        params0: Parameters,
        *,
        t_max: float | None,
        rtol: float,
        atol: float,
        events: list,
        max_steps: int,
        records_per_decade: int,
        groups: np.ndarray,
        record_events: bool = True,
    ) -> None:
        self.problem = problem
        self.params0 = params0
        self.system = PolarSystem(
            problem, params0.width, frozen_output_part(problem, params0)
        )
        self.rtol, self.atol = rtol, atol
        self.touch_offset = max(TOUCH_OFFSET * rtol, TOUCH_FLOOR)
        self.events = events
        self.log_t_max = math.log(t_max) if t_max is not None else math.inf
        self.t_max = t_max
        self.max_steps = max_steps
        self.records_per_decade = records_per_decade
        self.record_events = record_events
        self.groups = groups

        self.x_norms = np.linalg.norm(problem.X, axis=1)
        self.coords = TauCoordinates(self.system)
        self.z = self.coords.from_polar(self.system.from_parameters(params0))
        self.log_t = -math.inf
        self.nfev = self.njev = self.nlu = 0
        self.n_accepted = self.n_rejected = 0
        self.activation_events: list[res.ActivationEvent] = []
        self.t_events: list[list[float]] = [[] for _ in events]
        self.params_events: list[list[Parameters]] = [[] for _ in events]
        self.fired: list[int] = []
        self.separation_log_t: float | None = None
        self.pending_records: list[tuple] = []
        self.status: int | None = None
        self.detail = ""
        self.phases: list[tuple[str, float]] = []
        self._stages: list | None = None
        self.last_step = None
        # (size, err) of the last explicit step, for the predictive proposal.
        self.last_explicit = None
        self.landing_failure = ""
        self.short_steps = 0  # consecutive short norm-clock steps (STALL_STEPS)
        self.idle_landings = 0  # consecutive landings that moved nothing
        self.noise = 0.0
        self.noise_limited = 0
        self.dense_landings = 0  # crossings landed on without a second step
        self.noise_floor = 0.0
        # Whether a step was accepted on the floor of its error estimate (not only
        # on that of its Newton iteration, which stays within one tolerance).
        self.estimate_floor = False
        self.attempts = 0  # attempted steps, against max_steps
        self.frozen_steps = 0
        # Whether self.ev is older than the state (a frozen step in progress).
        self.ev_stale = False
        # Whether values0 is older than the state (quiet frozen landings).
        self.values0_stale = False
        self._groups_of: tuple[bytes, list] = (b"", [])
        # Fixed seed: the roundoff probe must not make runs irreproducible.
        self.noise_rng = np.random.default_rng(0)

    # -- evaluations -------------------------------------------------------

    def _rhs(self, z: np.ndarray) -> np.ndarray:
        self.nfev += 1
        rhs, ev = self.coords.evaluate(z, self.pattern)
        if self._stages is not None:
            self._stages.append(-ev.log_N + self.coords.log_rate(z, ev))
        return rhs

    def _rhs_many(self, zs: np.ndarray) -> np.ndarray:
        self.nfev += zs.shape[0]
        return self.coords.rhs_many(zs, self.pattern)

    def _refresh(self) -> None:
        self.ev_stale = False
        self.nfev += 1
        self.f, self.ev = self.coords.evaluate(self.z, self.pattern)
        if self.stiff:
            self.J = self.coords.structured_jacobian(self.z, self.pattern, self.ev)
            self.J.use_groups(self._neuron_groups(), self.system.block)
            self.njev += 1

    def _neuron_groups(self) -> list[np.ndarray]:
        """Return ``neuron_groups`` of the current pattern, kept until it changes."""
        key = self.pattern.tobytes()
        if self._groups_of[0] != key:
            self._groups_of = (key, neuron_groups(self.pattern))
        return self._groups_of[1]

    def _state(self, z: np.ndarray, log_t: float) -> FlowState:
        y = self.coords.to_polar(z)
        params = partial(self.system.to_parameters, y)
        return FlowState(self.problem, params, log_t, self.pattern, self._log_norm2(y))

    def _directions(self, z: np.ndarray) -> np.ndarray:
        """Input-weight directions ``a_j`` (rows), shape (h, D)."""
        return self.coords.blocks(z)[:, 1 : 1 + self.system.D]

    def _cosines(self, z: np.ndarray) -> np.ndarray:
        """Cosine of each ``x_i`` and ``a_j``, shape (n, h); 0 where ``a_j = 0``,
        which lies on every boundary of its neuron."""
        a = self._directions(z)
        norms = np.linalg.norm(a, axis=1)
        norms[norms == 0] = 1.0
        return (self.problem.X @ a.T) / np.outer(self.x_norms, norms)

    def _residual(self, z: np.ndarray, cluster: list) -> float:
        """Location error of a landing on the boundaries of ``cluster``: the
        largest ``|<x_i, a_j>| / (||x_i|| ||omega_j||)``.

        That is the distance of the state from the boundary in the units of
        the state's tolerance, and so the move of the projection onto it. A
        cosine (scale ``||a_j||``) would be the sign of the pre-activation
        where ``a_j`` passes through 0 (with ``D = 1``, at every crossing), so
        no landing there could meet a tolerance in it.
        """
        blocks = self.coords.blocks(z)
        D = self.system.D
        worst = 0.0
        for i, j in cluster:
            value = abs(float(self.problem.X[i] @ blocks[j, 1 : 1 + D]))
            scale = self.x_norms[i] * float(np.linalg.norm(blocks[j, 1:]))
            worst = max(worst, value / scale)
        return worst

    def _record(self, kind: str, z: np.ndarray, log_t: float) -> None:
        """Keep the polar state of a record; :meth:`_trajectory` converts them all."""
        y = np.array(self.coords.to_polar(z), copy=True)
        self._keep_record(kind, log_t, y, self.pattern)

    def _keep_record(
        self, kind: str, log_t: float, y: np.ndarray, pattern: np.ndarray
    ) -> None:
        """Keep a record's polar state ``y`` and a packed copy of ``pattern``;
        an activation-change record only with ``record_events``.

        A pattern takes ``n h`` bytes as booleans, 8 times more than packed. A
        binary run with n = 1000 and h = 64 kept 29000 activation-change records
        and peaked at 4.5 GB, most of it in patterns; 2.3 GB without
        ``record_events``, whose records were dropped only at the end.
        """
        if kind == "event" and not self.record_events:
            return
        self.pending_records.append((kind, log_t, y, np.packbits(pattern)))

    def _trajectory(self) -> res.Trajectory:
        """Convert the kept records in one batch: parameters, outputs, losses."""
        kinds, log_ts, ys, packed = zip(*self.pending_records)
        W, V = self.system.parameters_many(np.stack(ys))
        log_losses = network_log_losses(self.problem, W, V)
        n, h = self.pattern.shape
        bits = np.unpackbits(np.stack(packed), axis=1, count=n * h)
        patterns = bits.reshape(len(packed), n, h).view(np.bool_)
        return res.Trajectory.from_arrays(kinds, log_ts, log_losses, W, V, patterns)

    # -- one step ------------------------------------------------------------

    def _late_rtol(self) -> float:
        """Return the ``rtol`` of the norm clock at the current state."""
        return late_rtol(self.rtol, self.coords.norm2(self.z), self.coords.x_max)

    def _landing_tolerance(self) -> float:
        """Return the largest landing residual accepted: ``rtol``, and in the
        norm clock the ``rtol`` its error scale uses, so that the projection
        onto a boundary moves the state by no more than a step may."""
        if self.coords.clock == "norm2":
            return self._late_rtol()
        return self.rtol

    def _late_shift(self) -> float:
        """Return the margin shift ``R max||x_i|| (atol + late rtol)`` that the
        norm clock's tolerance allows at the current state."""
        R = self.coords.norm2(self.z)
        return R * self.coords.x_max * (self.atol + self._late_rtol())

    def _stage_scale(self, size: float) -> np.ndarray | None:
        """Return the growth of the right-hand side's scale ``dR/du = 2 R^(3/2)``
        from the step start to each Radau stage in the norm clock, else None."""
        if self.coords.clock != "norm2":
            return None
        u = float(self.z[-1])
        return (u / (u + RADAU_NODES * size)) ** 3

    @property
    def _exponent(self) -> float:
        """Exponent of the step-size controller, ``1 / (q + 1)`` for error order q."""
        return 1.0 / ((ERROR_ORDER if self.stiff else DP_ERROR_ORDER) + 1)

    def _attempt(self, size: float) -> tuple[Step, float]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if self.stiff:
                scale = self.coords.scale(self.z, self.rtol, self.atol)
                step, _ = radau_step(
                    self._rhs,
                    self.z,
                    self.f,
                    self.J,
                    size,
                    scale,
                    self._guess(size),
                    rhs_many=self._rhs_many,
                    stage_scale=self._stage_scale(size),
                )
                self.nlu += 2  # one real and one complex factorisation
                self.noise = 0.0
                if step.newton_noise > 0:
                    self.noise_limited += 1
                    self.noise_floor = max(self.noise_floor, step.newton_noise)
            else:
                self._stages = [-self.ev.log_N]
                step, _, rho = dopri5_step(self._rhs, self.z, self.f, size)
                step.stage_log_rates = np.array(self._stages)
                self._stages = None
                self.stiffness = size * rho
        if not np.all(np.isfinite(step.y1)):
            return step, math.inf
        scale = self.coords.scale(self.z, self.rtol, self.atol)
        err = float(np.max(np.abs(step.error) / scale))
        if not math.isfinite(err):
            return step, math.inf
        if self.stiff and err > 1.0 and self.coords.clock == "norm2":
            noise = error_noise(self._rhs, step, self._roundoff_perturbation(step.y0))
            self.noise = float(np.max(np.abs(noise) / scale))
            if err <= NOISE_MARGIN * self.noise:
                # The estimate is roundoff: the local error cannot be resolved
                # below it, so the step is taken and the floor is reported.
                self.noise_limited += 1
                self.noise_floor = max(self.noise_floor, self.noise)
                self.estimate_floor = True
                return step, min(err, 1.0)
        return step, err

    def _failed_landing(self, sub: Step, size: float, target: str):
        """Handle a shortened step that failed on the way to ``target``.

        A Newton failure of the implicit method returns ``RETRY``: the whole
        step is rejected and tried again shorter, as after a large error
        estimate. Any other non-finite step ends the run.
        """
        if self.stiff and not np.all(np.isfinite(sub.y1)):
            return RETRY
        self.landing_failure = (
            f"the step of {size:.3e} in {self.coords.clock} that ends on {target} "
            "has a non-finite error estimate"
        )
        return None

    def _guess(self, size: float) -> np.ndarray | None:
        """Start of the Newton iteration: the last step's dense output, extended."""
        last = self.last_step
        if last is None:
            return None
        return last.interpolate(1.0 + RADAU_NODES * (size / last.size)) - self.z

    def _roundoff_perturbation(self, z: np.ndarray) -> np.ndarray:
        """Return a random relative perturbation of two units of roundoff, with
        the clock variable ``u`` kept exact."""
        signs = self.noise_rng.choice((-1.0, 1.0), size=z.shape)
        perturbation = 2 * np.finfo(np.float64).eps * signs
        perturbation[-1] = 0.0
        return perturbation

    def _clock(self, step: Step) -> StepTime:
        return StepTime(self, step)

    def _node_clock(self, step: Step) -> StepClock:
        """Return the interpolant of ``log dt/ds`` over the step, sampled at the
        clock's nodes (in the norm clock at nodes of ``R``, see ``NormStepClock``)."""
        if self.coords.clock == "norm2":
            u0 = float(self.z[-1])
            nodes = NormStepClock.node_fractions(u0, step.size, len(NORM_NODES))
            psi = np.empty(len(nodes))
            psi[0] = -self.ev.log_N + self.coords.log_norm_rate(self.ev)
            zs = step.interpolate(nodes[1:])
            self.nfev += zs.shape[0]
            psi[1:] = self.coords.log_speed_many(zs, self.pattern)
            return NormStepClock(psi, u0, step.size)
        psi = np.empty(len(NODES))
        psi[0] = -self.ev.log_N
        zs = step.interpolate(NODES[1:])
        self.nfev += zs.shape[0]
        psi[1:] = -self.system.log_N_many(zs, self.pattern)
        return StepClock(psi, step.size)

    def _clock_tolerance(self, log_t: float) -> float:
        """Absolute tolerance of one step on ``log t`` ending at ``log_t``."""
        return (self.atol + self.rtol) * max(1.0, abs(log_t))

    def _clock_error(self, clock: StepTime) -> float:
        """Quadrature error estimate in units of the tolerance on ``log t``."""
        log_dt, error = clock.full()
        log_t1 = add_log(self.log_t, log_dt)
        if not math.isfinite(log_t1):
            return math.inf
        allowed = self._clock_tolerance(log_t1)
        # The error of log(t0 + dt) is the error of log dt times dt / (t0 + dt).
        weight = math.exp(log_dt - log_t1)
        return error * weight / allowed

    def _log_t_at(self, clock: StepTime, s: float) -> float:
        return add_log(self.log_t, clock.partial(s))

    # -- continuous events -------------------------------------------------

    def _event_values(self, z: np.ndarray, log_t: float) -> list:
        """Value of each continuous event at ``z`` (None for a discrete one)."""
        if all(event.discrete for event in self.events):
            return [None] * len(self.events)
        state = self._state(z, log_t)
        return [
            None if event.discrete else event_value(event, state)
            for event in self.events
        ]

    def _first_event(self, step: Step, clock: StepTime, limit: float):
        """Earliest ``(s, index)`` in (0, limit] of a continuous event or the end
        of the span (index -1), or None."""
        best = None
        log_t_end = self._log_t_at(clock, limit)
        if self.log_t < self.log_t_max <= log_t_end:
            # On a first step log t(s) falls like log s towards s = 0, where a
            # t_max far below the step's end puts the root, so the root is
            # searched in log s, where the function is nearly linear. The search
            # starts below the smallest subnormal float, where exp(u) is 0 and
            # the function is log t at the step's start, below log t_max.
            log_s = find_root(
                lambda u: self._log_t_at(clock, math.exp(u)) - self.log_t_max,
                LOG_S_FLOOR,
                math.log(limit),
            )
            s = math.exp(log_s)
            best = (s, -1)
        if not self.events:
            return best
        values1 = self._event_values(self._interpolated_state(step, limit), log_t_end)
        for index, (event, v0, v1) in enumerate(
            zip(self.events, self.values0, values1)
        ):
            if event.discrete or not crosses(v0, v1, event.direction):
                continue

            def along(s, event=event):
                state = self._state(
                    self._interpolated_state(step, s), self._log_t_at(clock, s)
                )
                return event_value(event, state)

            s = find_root(along, 0.0, limit)
            if best is None or s < best[0]:
                best = (s, index)
        return best

    def _check_discrete(self) -> None:
        """Fire the discrete events that the pattern change crossed, and note
        the first separated pattern.

        Only discrete events need the state, so the separation check, which
        runs after every activation change, reads the pattern alone."""
        if any(event.discrete for event in self.events):
            state = self._state(self.z, self.log_t)
            for index, event in enumerate(self.events):
                if not event.discrete:
                    continue
                value = event_value(event, state)
                if crosses(self.discrete_values[index], value, event.direction):
                    self._fire(index)
                self.discrete_values[index] = value
        self._note_separation(self.pattern, self.log_t)

    def _note_separation(self, pattern: np.ndarray, log_t: float) -> None:
        """Keep ``log_t`` as the separation time if ``pattern`` is the first
        separated one."""
        if self.separation_log_t is not None:
            return
        problem = self.problem
        separated, _ = separation_report(
            pattern, problem.labels, self.groups, problem.num_classes
        )
        if separated:
            self.separation_log_t = log_t

    def _fire(self, index: int) -> None:
        self.t_events[index].append(self.log_t)
        y = self.coords.to_polar(self.z)
        self.params_events[index].append(self.system.to_parameters(y))
        self.fired.append(index)
        occurrences = len(self.t_events[index])
        if terminal_after(self.events[index], occurrences) and self.status is None:
            self.status = res.STATUS_TERMINAL_EVENT

    # -- records -----------------------------------------------------------

    @staticmethod
    def _interpolated_state(step: Step, s: float) -> np.ndarray:
        """Return the state at the fraction ``s`` of an accepted step.

        An explicit step taken whole keeps its stages, and its 4th-order
        continuous extension is used. An explicit step cut back to an
        activation change (``_land_on_dense_output``) uses the extension of the
        whole step too. Its cubic dense output is checked against the extension
        at the change only, and records inside it were up to 400 times rtol off
        at rtol = 1e-10. Other steps use their cubic dense output.
        """
        if getattr(step, "stages", None) is not None:
            return dense_state(step, s)
        extension = getattr(step, "extension", None)
        if extension is not None:
            whole, fraction = extension
            return dense_state(whole, fraction * s)
        return step.interpolate(s)

    def _record_grid(self, step: Step, clock: StepTime, log_t_end: float) -> None:
        while self.next_record <= log_t_end:
            target = self.next_record
            if target > self.log_t:

                def gap(s, target=target):
                    log_t = self._log_t_at(clock, s)
                    # d log t / ds = (dt/ds) / t
                    return log_t - target, math.exp(clock.log_speed(s) - log_t)

                # The search starts on the cubic through the step's ends.
                start = None
                if math.isfinite(self.log_t):
                    start = hermite_start(
                        self.log_t,
                        log_t_end,
                        math.exp(clock.log_speed(0.0) - self.log_t),
                        math.exp(clock.log_speed(1.0) - log_t_end),
                        target,
                    )
                # A record may sit off its grid time by a small fraction of the
                # tolerance that each step keeps log t to.
                ftol = RECORD_TIME_FRACTION * self._clock_tolerance(target)
                s = find_root_newton(gap, 0.0, 1.0, start=start, ftol=ftol)
                self._record("grid", self._interpolated_state(step, s), target)
            self._advance_record_time()

    def _advance_record_time(self) -> None:
        """Move ``next_record`` to the next time of the record grid, which is
        geometric in log(1 + t): dense in t early, in log t late."""
        target = self.next_record
        if target < RECORD_LINEAR_BELOW:
            # log(1 + t) = t to float64 here (the next term, t / 2 relative, is
            # below eps), so the grid is geometric in t itself. exp(target)
            # would underflow far below this, where N is huge at the start.
            self.next_record = target + math.log(self.record_ratio)
            return
        ell = math.log1p(math.exp(target)) if target < 700 else target
        ell *= self.record_ratio
        if ell > 1:
            self.next_record = ell + math.log(-math.expm1(-ell))
        else:
            self.next_record = math.log(math.expm1(ell))

    # -- coordinates -------------------------------------------------------

    def _choose_coordinates(self, size: float) -> float:
        """Move to the clock that suits the current state; returns the step size
        converted to the new independent variable."""
        if not self.stiff:
            return size
        # self.ev is the evaluation at self.z, whose outputs are the margins'.
        want_norm = bool(np.all(sample_margins(self.problem, self.ev.outputs) > 0))
        if want_norm and self.coords.clock == "tau":
            log_R = self.system.log_norm2(self.coords.to_polar(self.z))
            want_norm = log_R >= math.log(NORM_CLOCK_MIN)
        growing = self.pattern.any(axis=0)
        if want_norm and self.coords.clock == "norm2":
            if np.array_equal(growing, self.coords.kappa > 0):
                return size
        if not want_norm and self.coords.clock == "tau":
            return size
        old_rate = self.coords.log_rate(self.z, self.ev)
        y = self.coords.to_polar(self.z)
        self.coords = (
            NormCoordinates(self.system, growing)
            if want_norm
            else TauCoordinates(self.system)
        )
        self.z = self.coords.from_polar(y)
        self.last_step = None
        self._refresh()
        new_rate = self.coords.log_rate(self.z, self.ev)
        self.phases.append((self.coords.clock, self.log_t))
        # The same step in tau is h * exp(log dtau/ds) in either variable.
        converted = size * math.exp(old_rate - new_rate)
        if self.coords.clock == "norm2":
            cap = _norm_step_cap(self.z[-1], self._late_shift())
            converted = min(converted, cap)
        return converted

    def _late_explicit_step(self) -> tuple[bool, bool]:
        """Return ``(slow, far)`` for the explicit step that ended at the current
        state.

        ``slow``: the step grew ``log R`` by less than ``SLOW_LOG_R``, at an
        ``rtol`` above ``SLOW_RULE_RTOL``. ``far``: ``R >= LATE_EXPLICIT_MAX``.
        Both are False unless every sample is classified correctly and
        ``R >= NORM_CLOCK_MIN`` (the norm clock's conditions). Each call records
        ``log R`` for the next one, so it is called once per accepted explicit
        step."""
        log_R = self._log_norm2()
        previous, self.last_log_R = self.last_log_R, log_R
        if log_R < math.log(NORM_CLOCK_MIN):
            return False, False
        if not np.all(sample_margins(self.problem, self.ev.outputs) > 0):
            return False, False
        slow = log_R - previous < SLOW_LOG_R and self.rtol > SLOW_RULE_RTOL
        return slow, log_R >= math.log(LATE_EXPLICIT_MAX)

    # -- main loop ---------------------------------------------------------

    def _initial_step(self) -> float:
        rate = float(np.max(np.abs(self.f))) / (self.atol + self.rtol)
        if rate == 0:
            return 1.0
        return min(1.0, 0.1 * rate**-self._exponent)

    def _start(self) -> None:
        self.pattern = self.system.initial_pattern(self.z)
        self.touching = np.zeros(self.pattern.shape, dtype=bool)
        # Offset of each touching pair: touch_offset, or twice the cosine that its
        # projection left (samples parallel to within the projection rank are
        # projected out together, which leaves their cosines at up to about twice
        # that rank).
        self.offsets = np.full(self.pattern.shape, self.touch_offset)
        self.stiff = False
        self.stiff_count = 0
        self.slow_count = 0
        self.last_log_R = -math.inf
        self.stiffness = 0.0
        # Pairs that start exactly on their boundary choose a side by the rule
        # (the planted relu'(0) = 1 fault keeps them active instead).
        if not self.system.linear and self.problem.activation == "relu":
            on_boundary = np.argwhere(
                np.abs(self._cosines(self.z)) <= 4 * np.finfo(float).eps
            )
            if on_boundary.size:
                cluster = [(int(i), int(j)) for i, j in on_boundary]
                changed = self._switch(cluster, arrived=False)
                if changed is None:
                    self.status = res.STATUS_SLIDING
                elif changed:
                    self.activation_events.append(
                        res.ActivationEvent(self.log_t, changed, 0.0)
                    )
        self._refresh()
        self._record("start", self.z, self.log_t)
        self.discrete_values = [1.0 if e.discrete else None for e in self.events]
        self._check_discrete()
        self.values0 = self._event_values(self.z, self.log_t)
        self.record_ratio = 10.0 ** (1.0 / self.records_per_decade)
        # First record at one hundredth of the initial time scale 1/N, but not
        # below the smallest normal float64 t. A start far from small (wrong
        # signs, large scale) can have log N of 1e8, from which the grid of
        # records_per_decade per decade of t would never reach t = 1.
        self.next_record = max(math.log(1e-2) - self.ev.log_N, LOG_T_GRID_FLOOR)

    def run(self) -> res.FlowResult:
        self._start()
        if FROZEN_STEPS and frozen_applies(self.problem):
            self._frozen_phase()
        self.phases.append(("tau-explicit", self.log_t))
        size = self._initial_step()
        while self.status is None:
            if not self.system.linear and not self.pattern.any():
                self.status = res.STATUS_STATIONARY
                self.detail = res.INACTIVE_DETAIL
                break
            if self.coords.clock == "tau" and self._decayed():
                break
            if self.attempts >= self.max_steps:
                self.status = res.STATUS_BUDGET
                self.detail = f"max_steps={self.max_steps} attempted steps"
                break
            self.attempts += 1
            step, err = self._attempt(size)
            clock = self._clock(step) if err <= 1.0 else None
            clock_err = self._clock_error(clock) if clock is not None else 0.0
            clock_bound = clock_err > max(err, CLOCK_BOUND)
            err = max(err, clock_err)
            if err > 1.0:
                size = self._reject(size, err)
                if size is None:
                    break
                continue

            self.landing_failure = (
                f"could not locate an activation change to rtol={self.rtol:g}"
            )
            landing = self._choose_end(step, clock, err)
            if landing is RETRY:
                self.n_rejected += 1
                size *= MAX_SHRINK
                continue
            if landing is None:
                self.status = res.STATUS_STEP_FAILURE
                self.detail = f"{self.landing_failure} after log t = {self.log_t:.6g}"
                break
            if landing.err > 1.0:
                # The step taken again to a landing (an activation change, an
                # event, the end of the span) is shorter, yet its error estimate
                # can exceed the tolerance where the step lies outside the
                # estimate's asymptotic range. In a trial at rtol = 1e-2 such a
                # landing (error 1.55 tolerances) ended 0.23 off in
                # log ||theta||^2, so it is rejected as any step is.
                size = self._reject(size, landing.err)
                if size is None:
                    break
                continue
            growth = SAFETY * max(err, 1e-10) ** -self._exponent
            was_stiff = self.stiff
            if not self.stiff:
                # Stiff: the step is held by stability, or by the quadrature of
                # t, whose integrand exp(Phi) then varies at the rate dPhi/dtau,
                # the rate that grows like ||theta||^2.
                limited = self.stiffness > STIFF_FRACTION * DP_STABILITY_LIMIT
                stiff_step = limited or clock_bound
                self.stiff_count = self.stiff_count + 1 if stiff_step else 0
                slow, far = self._late_explicit_step()
                self.slow_count = self.slow_count + 1 if slow else 0
                self.stiff = (
                    self.stiff_count >= STIFF_STEPS
                    or self.slow_count >= SLOW_STEPS
                    or far
                )
            norm_clock = self.coords.clock == "norm2"
            u0 = self.z[-1]
            self._commit(landing)
            if self.status is None and not np.all(np.isfinite(self.f)):
                self.status = res.STATUS_NONFINITE
                self.detail = f"at log t = {self.log_t:.6g}"
            # Explicit steps also take the predictive proposal h (h / h_prev)
            # (1 / err)^k (err_prev / err)^k, k = 1/5, where it is the smaller.
            # While the network leaves the plateau, the error constant grows 4
            # to 10 times per step. The plain proposal then grows the step after
            # every accepted one, and the next attempt fails: 12 of the 34
            # attempts on the binary benchmark problem, and 4 with this proposal.
            previous, self.last_explicit = self.last_explicit, None
            if not was_stiff and self.last_step is not None:
                estimate = max(err, 1e-10)
                if previous is not None:
                    ratio = previous[1] / estimate
                    trend = (size / previous[0]) * ratio ** (1 / (DP_ERROR_ORDER + 1))
                    growth = min(growth, growth * trend)
                self.last_explicit = (size, estimate)
            size *= min(MAX_GROWTH, max(MAX_SHRINK, growth))
            if norm_clock and self.coords.clock == "norm2":
                # In the norm clock the flow's scale is |u| = R^(-1/2) itself,
                # so an error estimate depends on the step relative to |u|.
                # Without this factor the controller lags, and the benchmark
                # runs to error 1e-6 at rtol = 1e-6 take 796 and 709
                # evaluations (20 and 22 rejected steps) instead of 755 and 621.
                size *= self.z[-1] / u0
            if self.stiff and not was_stiff:
                self.phases.append(("tau-implicit", self.log_t))
            if self.status is None:
                size = self._choose_coordinates(size)
                if self.coords.clock == "norm2":
                    size = min(size, _norm_step_cap(self.z[-1], self._late_shift()))
                self._check_progress(landing, size)
        return self._finish()

    # -- frozen-gradient phase --------------------------------------------

    def _reject(self, size: float, err: float) -> float | None:
        """Count a rejected step of ``size`` with error estimate ``err`` (in
        tolerances) and return the next size to try, or None where it falls
        below the smallest step, which ends the run with a failure status."""
        self.n_rejected += 1
        factor = SAFETY * err**-self._exponent if math.isfinite(err) else 0.0
        size *= max(MAX_SHRINK, factor)
        if size < self._min_step():
            self.status = res.STATUS_STEP_FAILURE
            self.detail = (
                f"step {size:.3e} in {self.coords.clock} at log t = "
                f"{self.log_t:.6g}; the last error estimate was {err:.3g} "
                "times the tolerance"
            )
            if not math.isfinite(err):
                # Seen where the data scale made the outputs huge at the start
                # (X scaled by 1e30: outputs of 1e22), so their size is named.
                largest = float(np.max(np.abs(self.ev.outputs)))
                self.detail += (
                    f", with outputs up to {largest:.3g} in size; where they are "
                    "large, rescale X or the initial weights"
                )
            return None
        return size

    def _grid_times(self, log_t_end: float) -> list:
        """Return the record grid's times after the current ``log t`` and up to
        ``log_t_end``, and move ``next_record`` past them."""
        times = []
        while self.next_record <= log_t_end:
            if self.next_record > self.log_t:
                times.append(self.next_record)
            self._advance_record_time()
        return times

    def _min_step(self) -> float:
        """Return the smallest step before a rejection ends the run.

        It is ``MIN_STEP`` in tau and ``MIN_STEP |u|`` in the norm clock, whose
        variable ``u = -R^(-1/2)`` may start far from 1 after a small
        initialisation."""
        if self.coords.clock == "norm2":
            return MIN_STEP * abs(self.z[-1])
        return MIN_STEP

    def _check_progress(self, landing: Landing, size: float) -> None:
        """End a run whose clock cannot carry it further (see MAX_TAU_STEP and
        STALL_STEPS), with a message that gives the state and the reason."""
        if self.coords.clock == "tau" and not size <= MAX_TAU_STEP:
            R = self._norm2()
            wrong = self._misclassified()
            self.status = res.STATUS_STEP_FAILURE
            self.detail = (
                f"the step in tau grew past {MAX_TAU_STEP:g} at log t = "
                f"{self.log_t:.6g}, ||theta||^2 = {R:.6g}: the flow no longer moves "
                f"in tau at float64 resolution, and {len(wrong)} "
                f"sample{'s' if len(wrong) != 1 else ''} "
                f"({'first 5: ' if len(wrong) > 5 else 'indices '}{wrong[:5]}) "
                f"{'are' if len(wrong) != 1 else 'is'} not classified correctly, "
                "so the norm clock cannot take over"
            )
            empty = self._empty_groups()
            if empty:
                named = (
                    f"classes {empty} have"
                    if len(empty) > 1
                    else (f"class {empty[0]} has")
                )
                self.detail += (
                    f"; {named} no neuron of its own (by the output weights at the "
                    "start), so no neuron grows towards its samples"
                )
            return
        if self.coords.clock != "norm2" or landing.step is None:
            return
        if landing.cluster is not None:
            # A step cut at an activation change is as short as the next change
            # is near. A neuron turning through a narrow cone of 500 samples
            # landed on them one by one, and counted as a roundoff stall.
            return
        floor = STALL_FRACTION * self._late_rtol() ** 0.25
        u1 = self.z[-1]
        short = ((u1 - landing.step.size) / u1) ** 2 - 1.0 < floor
        self.short_steps = self.short_steps + 1 if short else 0
        if self.short_steps >= STALL_STEPS:
            R = self._norm2()
            self.status = res.STATUS_STEP_FAILURE
            self.detail = (
                f"{STALL_STEPS} steps in a row each advanced ||theta||^2 by less "
                f"than {floor:.2g} of itself, at ||theta||^2 = {R:.6g}, log t = "
                f"{self.log_t:.6g}: the steps are limited by roundoff (the margins' "
                "roundoff, float64 eps times ||theta||^2 max_i ||x_i||, is "
                f"{np.finfo(float).eps * R * self.coords.x_max:.2g}), not by rtol"
            )

    def _empty_groups(self) -> list[int]:
        """Return the classes that no neuron belongs to (``groups``)."""
        if self.groups is None:
            return []
        present = set(np.asarray(self.groups).tolist())
        return [k for k in range(self.problem.num_classes) if k not in present]

    def _decayed(self) -> bool:
        """Stop the run at rest once ``||theta||^2`` is below
        ``exp(LOG_NORM2_FLOOR)``, and return whether it stopped.

        The polar coordinates keep ``log ||theta_j||`` exact at any scale, so
        a network that shrinks towards ``theta = 0`` would be followed without
        end, while every weight it reports is 0 in float64. In a trial, two
        neurons, each active on the other class's sample only, used up 200000
        steps in 76 s.
        """
        log_norm2 = self._log_norm2()
        if log_norm2 >= LOG_NORM2_FLOOR:
            return False
        self.status = res.STATUS_STATIONARY
        self.detail = (
            f"||theta||^2 fell to exp({log_norm2:.6g}) at log t = {self.log_t:.6g}, "
            "far below the float64 range, as the network decays to theta = 0"
        )
        return True

    def _log_norm2(self, y: np.ndarray | None = None) -> float:
        """Return ``log ||theta||^2`` of the polar state ``y`` (the current state
        by default), frozen part included."""
        if y is None:
            y = self.coords.to_polar(self.z)
        log_norm2 = self.system.log_norm2(y)
        if self.system.frozen_norm2 > 0:
            log_norm2 = add_log(log_norm2, math.log(self.system.frozen_norm2))
        return log_norm2

    def _norm2(self) -> float:
        """``||theta||^2`` at the current state, frozen part included."""
        return math.exp(self._log_norm2())

    def _misclassified(self) -> list[int]:
        """Indices of the samples with a non-positive margin at the current state."""
        values = margins(self.system, self.coords.to_polar(self.z), self.pattern)
        return [int(i) for i in np.flatnonzero(values <= 0)]

    def _choose_end(self, step: Step, clock: StepTime, err: float):
        """Return the landing of an accepted step: the first activation change,
        event or end of the span in it, or else its end.

        A step that crosses an activation boundary is first cut back to the
        crossing, and the events are then searched on that shorter step. Its
        clock comes from its own stages, while a search of the longer step up to
        the crossing would need the interpolated clock, at five more evaluations.
        """
        s_cross, cluster = self._first_crossing(step)
        if s_cross is None:
            return self._land_on_event(step, clock, err, Landing(step, clock, err))
        landing = self._land_on_crossing(step, s_cross, cluster)
        if landing is None:
            # An event before the crossing still ends the step there, so a
            # terminal one ends the run before the landing that failed.
            return self._land_on_event(step, clock, err, None, limit=s_cross)
        if landing is RETRY or landing.step is None:
            return landing
        err = max(err, landing.err)
        return self._land_on_event(landing.step, landing.clock, err, landing)

    def _land_on_event(
        self, step: Step, clock: StepTime, err: float, otherwise, limit: float = 1.0
    ):
        """Return the landing on the first event or end of the span in ``step`` up
        to the fraction ``limit``, or ``otherwise`` where it contains none."""
        found = self._first_event(step, clock, limit)
        if found is None:
            return otherwise
        s, index = found
        if s <= 0.0:
            return Landing(None, None, err, event_index=index)
        if s >= 1.0:
            # The event is at the end of the step, which is kept as it is.
            return Landing(step, clock, err, event_index=index)
        size = s * step.size
        if index == -1 and np.array_equal(self.z + size * self.f, self.z):
            # t_max lies so close to the start that even the first-order change
            # of the state rounds away (size may underflow to 0): the state at
            # t_max is this one, to float64.
            return Landing(None, None, err, event_index=-1, log_t=self.log_t_max)
        sub, sub_err = self._attempt(size)
        if not math.isfinite(sub_err):
            return self._failed_landing(sub, size, f"event {index}")
        full_clock, clock = clock, self._clock(sub)
        if index >= 0:
            sub, sub_err, clock = self._past_event_root(
                step, full_clock, limit, (sub, sub_err, clock), index
            )
            if not math.isfinite(sub_err):
                return self._failed_landing(sub, sub.size, f"event {index}")
        if index == -1:
            sub, sub_err, clock = self._end_on_t_max(sub, sub_err, clock, step.size)
            if sub is None:
                # The clock varies too fast over this step to place t_max on it:
                # a shorter step is tried.
                return RETRY
            if not math.isfinite(sub_err):
                return self._failed_landing(sub, sub.size, "the end of the span")
        return Landing(sub, clock, max(err, sub_err), event_index=index)

    def _past_event_root(
        self, step: Step, clock: StepTime, limit: float, landing: tuple, index: int
    ):
        """Take the step ``landing = (sub, sub_err, sub_clock)`` to event
        ``index`` again until it ends on the far side of the event's root, or on
        it, and return the same triple for the step kept.

        The root was found on the interpolant of ``step`` (with time ``clock``),
        and the step taken to it ends off the interpolant by up to the
        tolerance, on either side. An end short of the root left the event's
        value on the side it came from. The next landing, of another event,
        then read that value again in place of 0, so the flow crossed the root
        a second time. With two events on one root, one fired twice on 14 of 54
        runs at rtol 1e-3 to 1e-6. Regula falsi on the size, between this
        end and ``limit`` of ``step``, aims past the root by the shortfall.
        Where ``EVENT_REFINEMENTS`` tries do not get past, the last step is
        kept: its end is within the tolerance of the root.
        """
        event = self.events[index]
        short = (lambda v: v < 0) if self.values0[index] < 0 else (lambda v: v > 0)
        sub, sub_err, sub_clock = landing

        def value_at_end(sub: Step, sub_clock: StepTime) -> float:
            log_t = self._log_t_at(sub_clock, 1.0)
            return event_value(event, self._state(sub.y1, log_t))

        value = value_at_end(sub, sub_clock)
        if not short(value):
            return landing
        high = limit * step.size
        far = event_value(
            event,
            self._state(
                self._interpolated_state(step, limit), self._log_t_at(clock, limit)
            ),
        )
        low = sub.size
        for _ in range(EVENT_REFINEMENTS):
            if short(far) or value == far:
                break
            root = low + (high - low) * value / (value - far)
            size = min(root + (root - low), 0.5 * (root + high))
            if not low < size <= high:
                break
            sub, sub_err = self._attempt(size)
            if not math.isfinite(sub_err):
                return sub, sub_err, None
            sub_clock = self._clock(sub)
            value = value_at_end(sub, sub_clock)
            if not short(value):
                break
            low = size
        return sub, sub_err, sub_clock

    def _end_on_t_max(self, sub: Step, sub_err: float, clock: StepTime, full: float):
        """Take the step to the end of the span again until its own clock ends
        on ``t_max`` to the clock's tolerance.

        The end was located on the clock interpolated over the longer step of
        size ``full``, which may be further off than the tolerance at interior
        points: after the frozen phase, one explicit step at rtol = 1e-2 put
        t_max = 100 at t = 109 there. Newton's method on the size, with the
        slope from the step's own clock, is kept inside (0, full), where the
        gain in t brackets t_max. An iteration that does not halve the gap
        bisects the bracket instead: late in a run at rtol = 1e-2, Newton
        alternated between two sizes whose ends were 0.7 below and 0.5 above
        log t_max. Returns ``(None, inf, None)`` where the end is not found
        within ``EVENT_REFINEMENTS`` iterations, and the caller retries a
        shorter step.
        """
        if self.log_t > -math.inf:
            log_gain = sub_log(self.log_t_max, self.log_t)
        else:
            log_gain = self.log_t_max
        tolerance = self._clock_tolerance(self.log_t_max)
        low, high = 0.0, full
        previous_gap = math.inf
        for _ in range(EVENT_REFINEMENTS):
            log_dt = clock.full()[0]
            gap = log_dt - log_gain
            if self._lands_on_t_max(gap, log_dt, tolerance):
                return sub, sub_err, clock
            if gap > 0:
                high = sub.size
            else:
                low = sub.size
            # d log(dt) / d size = (dt/ds at s = 1) / (size dt).
            slope = math.exp(clock.log_speed(1.0) - log_dt) / sub.size
            size = sub.size - gap / slope
            if not low < size < high or abs(gap) > 0.5 * previous_gap:
                size = 0.5 * (low + high)
            previous_gap = abs(gap)
            sub, sub_err = self._attempt(size)
            if not math.isfinite(sub_err):
                return sub, sub_err, clock
            clock = self._clock(sub)
        log_dt = clock.full()[0]
        if self._lands_on_t_max(log_dt - log_gain, log_dt, tolerance):
            return sub, sub_err, clock
        return None, math.inf, None

    def _lands_on_t_max(self, gap: float, log_dt: float, tolerance: float) -> bool:
        """Return whether a step whose gain ``log dt`` is ``gap`` off the gain
        that reaches ``t_max`` ends on ``t_max`` to ``tolerance`` in ``log t``.

        The error of ``log(t0 + dt)`` is that of ``log dt`` times
        ``dt / (t0 + dt)``, as in ``_clock_error``. Asked of ``log dt`` itself,
        a span ending 1.8e-16 in log t short of ``t_max`` (rtol = 1e-14) took
        steps below the resolution of the clock, until one raised an error.
        """
        weight = min(1.0, math.exp(log_dt - self.log_t_max))
        return abs(gap) * weight <= tolerance

    def _commit(self, landing: Landing) -> None:
        step, clock = landing.step, landing.clock
        if step is not None:
            log_t_end = self._log_t_at(clock, 1.0)
            self._record_grid(step, clock, log_t_end)
            self.n_accepted += 1
            self.log_t = log_t_end
            self.z = self.coords.normalize(step.y1)
        elif landing.log_t is not None:
            for target in self._grid_times(landing.log_t):
                self._record("grid", self.z, target)
            self.log_t = landing.log_t
        self.last_step = step
        self._settle(landing, moved=step is not None or landing.log_t is not None)

    def _settle(
        self,
        landing: Landing,
        moved: bool,
        refresh: bool = True,
        frozen: tuple | None = None,
        values: list | None = None,
        quiet: bool = False,
    ) -> None:
        """Finish a landing at the new state: switch the pattern at a crossing,
        fire events, evaluate the flow there. ``moved``: whether time passed.
        ``refresh=False`` leaves the evaluation to the caller (a frozen step
        goes on with its gradients). ``frozen`` is passed to ``_switch``.
        ``values``: the events' values at the landing, where known. ``quiet``:
        no continuous event can change sign here (``_quiet_events``), so their
        values are not evaluated."""
        if self.touching.any():
            cosines = np.abs(self._cosines(self.z))
            self.touching &= cosines <= RELEASE_FACTOR * self.offsets

        idle_landings, self.idle_landings = self.idle_landings, 0
        unswitched = None
        if landing.cluster is not None:
            # The projection onto the boundary moves the state by up to the
            # tolerance, and may move an event's value onto or across 0 there.
            unswitched = values
            if unswitched is None and not quiet:
                unswitched = self._event_values(self.z, self.log_t)
            changed = self._switch(landing.cluster, frozen=frozen)
            if changed is None:
                self.status = res.STATUS_SLIDING
                return
            # A crossing found at the very start of a step that changes nothing
            # would be found again by the next step: count such landings in a row.
            if not moved and not changed:
                self.idle_landings = idle_landings + 1
            if self.idle_landings >= IDLE_LANDINGS:
                self.status = res.STATUS_STEP_FAILURE
                self.detail = (
                    f"the activation change of pairs {sorted(landing.cluster)} "
                    f"(sample, neuron) at log t = {self.log_t:.6g} is found again at "
                    f"the start of every step and changes no pattern "
                    f"({IDLE_LANDINGS} times in a row)"
                )
                return
            if changed:
                self.activation_events.append(
                    res.ActivationEvent(self.log_t, changed, landing.residual)
                )
                self._record("event", self.z, self.log_t)
                self.last_step = None  # a new vector field: no history to extend
        elif landing.event_index == -1:
            self.status = res.STATUS_END_OF_SPAN
        elif landing.event_index is not None:
            self._fire(landing.event_index)
        if refresh:
            self._refresh()
        if landing.cluster is not None:
            self._check_discrete()
        if quiet:
            # values0 keeps the last values: _frozen_step evaluates the events
            # again before a piece that is not quiet and at its end.
            self.values0_stale = True
            return
        previous = self.values0
        self.values0 = self._event_values(self.z, self.log_t)
        self.values0_stale = False
        if not moved:
            # No time passed: a switch at the start of a step only projects the
            # state onto a boundary, so an event located here keeps its value 0
            # rather than its roundoff, which could count it a second time.
            for index, value in enumerate(previous):
                if value == 0.0:
                    self.values0[index] = 0.0
                    if unswitched is not None:
                        unswitched[index] = 0.0
        if unswitched is not None:
            # The projection onto the boundary may have moved an event's value
            # onto or across 0.
            self._fire_crossed(unswitched)
        if landing.event_index is not None and landing.event_index >= 0:
            # The landing point is the located root, so the event's value there is
            # 0 up to roundoff, which may sit on the side it came from. It is taken
            # as exactly 0, so that the next step cannot count a second crossing.
            self.values0[landing.event_index] = 0.0
            if moved:
                # The search lands on the earliest root, within the tolerance, so
                # another event may have crossed between that root and the
                # landing point. Two events 1e-14 apart in ||theta||^2 lost the
                # second one this way on 53 of 80 runs to 1e7.
                self._fire_crossed(previous, skip=landing.event_index)

    def _fire_crossed(self, before: list, skip: int | None = None) -> None:
        """Fire each continuous event (but ``skip``) whose value crossed 0 from
        ``before`` to the current ``values0``.

        The next step starts on the far side of such a crossing and would not
        see it.
        """
        for index, event in enumerate(self.events):
            if index == skip or event.discrete or before[index] is None:
                continue
            if crosses(before[index], self.values0[index], event.direction):
                self._fire(index)

    def _finish(self) -> res.FlowResult:
        message = res.STATUS_MESSAGES[self.status]
        if self.detail:
            message += f": {self.detail}"
        if self.noise_limited:
            count = self.noise_limited
            steps = f"{count} step{'s' if count != 1 else ''}"
            floor = f"{self.noise_floor:.3g} times the tolerance"
            # A Newton iteration stops on its floor only within NOISE_CORRECTION
            # (one tolerance) of convergence. A step accepted on the floor of its
            # error estimate has an estimate above 1, and only roundoff bounds it.
            if not self.estimate_floor:
                message += (
                    f"; {steps} ended a Newton iteration on its float64 noise "
                    f"floor, at most {floor}, so rtol was still met"
                )
            else:
                message += (
                    f"; {steps} reached the float64 noise floor of the error "
                    f"estimate or of the Newton iteration, up to {floor}: on those "
                    "steps roundoff, not rtol, bounds the error"
                )
        self._record("end", self.z, self.log_t)
        state = self._state(self.z, self.log_t)
        return res.FlowResult(
            status=self.status,
            message=message,
            method="adaptive",
            params=state.params,
            log_t=self.log_t,
            log_loss=state.log_loss,
            norm2=state.norm2,
            nfev=self.nfev,
            njev=self.njev,
            nlu=self.nlu,
            n_accepted=self.n_accepted,
            n_rejected=self.n_rejected,
            activation_events=self.activation_events,
            t_events=[np.array(v) for v in self.t_events],
            params_events=self.params_events,
            fired=self.fired,
            separation_log_t=self.separation_log_t,
            trajectory=self._trajectory(),
            problem=self.problem,
            params0=self.params0,
            settings={
                "method": "adaptive",
                "rtol": self.rtol,
                "atol": self.atol,
                "t_max": self.t_max,
                "max_steps": self.max_steps,
                "integrator": (
                    "exact frozen-gradient steps while the outputs are small "
                    "(one output direction), "
                    "Dormand-Prince 5(4) in tau until stiff, then Radau IIA in "
                    "u = -1/||theta|| (tau while a sample is misclassified or "
                    "||theta||^2 < 1), per-neuron polar coordinates"
                ),
                "dtype": "float64",
                "phases": [list(p) for p in self.phases],
                "noise_limited_steps": self.noise_limited,
                "dense_landings": self.dense_landings,
                "frozen_steps": self.frozen_steps,
                "noise_floor": self.noise_floor,
            },
            pattern=self.pattern.copy(),
        )


def frozen_output_part(problem: Problem, params0: Parameters) -> np.ndarray | None:
    """``(1 1^T / K) V(0)`` for the cross-entropy (constant along the flow, see
    ``PolarSystem``); None for a scalar output."""
    if problem.binary:
        return None
    K = params0.num_outputs
    return np.full((K, K), 1.0 / K) @ params0.V
