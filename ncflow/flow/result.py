"""Result of a flow run: status table, counters, trajectory and event records."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ncflow._numeric import exp_or_inf
from ncflow.network import Parameters, Problem

# Integer status of a run, in the style of scipy.integrate.solve_ivp: >= 0 is a
# success, < 0 a failure.
STATUS_END_OF_SPAN = 0
STATUS_TERMINAL_EVENT = 1
STATUS_STATIONARY = 2
STATUS_STEP_FAILURE = -1
STATUS_SLIDING = -2
STATUS_BUDGET = -3
STATUS_NONFINITE = -4

# Detail of STATUS_STATIONARY where no neuron is active on any sample.
INACTIVE_DETAIL = "every neuron is inactive on every sample"

STATUS_MESSAGES = {
    STATUS_END_OF_SPAN: "reached the end of the time span",
    STATUS_TERMINAL_EVENT: "a terminal event occurred",
    STATUS_STATIONARY: "the flow came to rest",
    STATUS_STEP_FAILURE: "the integrator could not continue at the requested rtol",
    STATUS_SLIDING: (
        "the flow slides along an activation boundary (both sides push towards it), "
        "where relu'(0) = 0 does not define a unique continuation"
    ),
    STATUS_BUDGET: "the step budget was exhausted before the end condition",
    STATUS_NONFINITE: "the state or its derivative became non-finite",
}


@dataclass
class Trajectory:
    """States recorded on a geometric grid of ``log(1 + t)`` and at every event.

    All arrays have one row per record, in time order.

    Attributes
    ----------
    log_t : ndarray, shape (r,)
        ``log t`` (gradient-flow time ``t``; ``-inf`` at ``t = 0``).
    log_loss : ndarray, shape (r,)
        ``log L``.
    norm2 : ndarray, shape (r,)
        ``||theta||_F^2``.
    W : ndarray, shape (r, D, h)
    V : ndarray, shape (r, d_y, h)
    patterns : ndarray of bool, shape (r, n, h)
    kind : ndarray of str, shape (r,)
        ``"grid"``, ``"event"`` (an activation change), ``"start"`` or ``"end"``.
    """

    log_t: np.ndarray
    log_loss: np.ndarray
    norm2: np.ndarray
    W: np.ndarray
    V: np.ndarray
    patterns: np.ndarray
    kind: np.ndarray

    @property
    def t(self) -> np.ndarray:
        """Gradient-flow time; ``inf`` where it exceeds the float64 range."""
        with np.errstate(over="ignore"):
            return np.exp(self.log_t)

    def __len__(self) -> int:
        return self.log_t.shape[0]

    def parameters(self, index: int) -> Parameters:
        return Parameters(self.W[index], self.V[index])

    def select(self, kind: str) -> Trajectory:
        return self._rows(self.kind == kind)

    def head(self, count: int) -> Trajectory:
        """Return the first ``count`` records."""
        return self._rows(slice(0, count))

    @classmethod
    def from_arrays(cls, kind, log_t, log_loss, W, V, patterns) -> Trajectory:
        """Build a trajectory from stacked records (``W`` of shape (m, D, h))."""
        with np.errstate(over="ignore"):
            norm2 = (W**2).sum(axis=(1, 2)) + (V**2).sum(axis=(1, 2))
        return cls(
            np.asarray(log_t, dtype=np.float64),
            np.asarray(log_loss, dtype=np.float64),
            norm2,
            W,
            V,
            np.asarray(patterns),
            np.asarray(kind),
        )

    def _rows(self, keep: np.ndarray | slice) -> Trajectory:
        return Trajectory(
            *(
                getattr(self, name)[keep]
                for name in ("log_t", "log_loss", "norm2", "W", "V", "patterns", "kind")
            )
        )


class TrajectoryRecorder:
    """Accumulates records; ``finish()`` returns the :class:`Trajectory`."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []

    def add(
        self,
        kind: str,
        log_t: float,
        log_loss: float,
        params: Parameters,
        pattern: np.ndarray,
    ) -> None:
        self.add_arrays(
            kind, log_t, log_loss, params.W.copy(), params.V.copy(), pattern.copy()
        )

    def add_arrays(
        self,
        kind: str,
        log_t: float,
        log_loss: float,
        W: np.ndarray,
        V: np.ndarray,
        pattern: np.ndarray,
    ) -> None:
        """Add a record whose arrays the recorder may keep without copying."""
        with np.errstate(over="ignore"):
            norm2 = float(np.sum(W**2) + np.sum(V**2))
        self._rows.append((log_t, log_loss, norm2, W, V, pattern, kind))

    def finish(self) -> Trajectory:
        if not self._rows:
            raise ValueError("no records")
        columns = list(zip(*self._rows))
        return Trajectory(
            log_t=np.array(columns[0]),
            log_loss=np.array(columns[1]),
            norm2=np.array(columns[2]),
            W=np.stack(columns[3]),
            V=np.stack(columns[4]),
            patterns=np.stack(columns[5]),
            kind=np.array(columns[6]),
        )


@dataclass
class ActivationEvent:
    """One located activation change (or a cluster of simultaneous ones).

    Attributes
    ----------
    log_t : float
        ``log t`` of the change.
    pairs : list of (int, int, bool)
        ``(sample i, neuron j, active after)`` for each pre-activation
        ``<x_i, w_j>`` that crossed 0.
    residual : float
        Largest ``|<x_i, w_j>| / (||x_i|| ||(w_j, v_j)||)`` at the located
        point, before it is projected to 0: the location error, in the units of
        the integrator's tolerance on the neuron's direction.
    """

    log_t: float
    pairs: list
    residual: float


@dataclass
class FlowResult:
    """Outcome of :func:`ncflow.flow.solve_flow`.

    Attributes
    ----------
    status : int
        One of the ``STATUS_*`` constants; ``>= 0`` is a success.
    message : str
        ``STATUS_MESSAGES[status]``, with the details of a failure (reached
        ``t``, step, reason).
    success : bool
    method : str
    params : Parameters
        Final ``theta``.
    log_t : float
        Final ``log t``. ``t`` itself is ``exp(log_t)`` (``inf`` past float64).
    log_loss, norm2 : float
        Final ``log L`` and ``||theta||_F^2``.
    nfev, njev, nlu : int
        Right-hand-side (gradient) evaluations, Jacobians and LU factorisations.
    n_accepted, n_rejected : int
        Accepted and rejected steps.
    activation_events : list of ActivationEvent
    t_events : list of ndarray
        ``log t`` of the firings of each user event, in the order given. SciPy's
        ``solve_ivp`` stores ``t`` there, but ``t`` overflows float64 late in a
        run.
    params_events : list of list of Parameters
        ``theta`` at each firing of each user event, as ``y_events`` of
        ``solve_ivp``: ``params_events[k][m]`` goes with ``t_events[k][m]``.
    fired : list of int
        Indices (into the events given) of the events that fired, in order.
    separation_log_t : float or None
        ``log T*``: the first time the pattern is separated (None if never or
        not checked).
    trajectory : Trajectory
    problem : Problem
    params0 : Parameters
    settings : dict
        Every setting that affects the result (method, rtol, atol, ...).
    """

    status: int
    message: str
    method: str
    params: Parameters
    log_t: float
    log_loss: float
    norm2: float
    nfev: int
    njev: int
    nlu: int
    n_accepted: int
    n_rejected: int
    activation_events: list
    t_events: list
    fired: list
    separation_log_t: float | None
    trajectory: Trajectory
    problem: Problem
    params0: Parameters
    settings: dict = field(default_factory=dict)
    pattern: np.ndarray | None = None
    params_events: list = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.status >= 0

    @property
    def t(self) -> float:
        """Gradient-flow time; ``inf`` once it exceeds the float64 range."""
        return exp_or_inf(self.log_t)

    @property
    def separation_time(self) -> float | None:
        """``T*`` in gradient-flow time (None if the pattern never separated)."""
        if self.separation_log_t is None:
            return None
        return float(np.exp(self.separation_log_t))

    def summary(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {
            "status": self.status,
            "message": self.message,
            "success": self.success,
            "method": self.method,
            "log_t": self.log_t,
            "t": self.t,
            "log_loss": self.log_loss,
            "norm2": self.norm2,
            "nfev": self.nfev,
            "njev": self.njev,
            "nlu": self.nlu,
            "n_accepted": self.n_accepted,
            "n_rejected": self.n_rejected,
            "n_activation_events": len(self.activation_events),
            "separation_log_t": self.separation_log_t,
            "settings": self.settings,
        }
