"""The polar system's growth rate of ``||theta||^2`` without the backward pass."""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest

from ncflow.flow.adaptive import frozen_output_part
from ncflow.flow.coordinates import NormCoordinates
from ncflow.flow.frozen_phase import quiet_margin
from ncflow.flow.polar import PolarSystem
from ncflow.init import balanced_init, balanced_shapes
from ncflow.network import Parameters, Problem

EPS = float(np.finfo(np.float64).eps)


def _system(loss: str, scale: float) -> tuple[PolarSystem, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    n, D, h = 12, 5, 7
    X = rng.standard_normal((n, D))
    if loss.startswith("cross_entropy"):
        labels, outputs = np.arange(n) % 3, 3
    else:
        labels, outputs = np.arange(n) % 2, 1
    problem = Problem(X, labels, 3 if outputs == 3 else 2, loss)
    params = balanced_init(balanced_shapes(rng, D, h, outputs), scale)
    system = PolarSystem(problem, h, frozen_output_part(problem, params))
    state = system.from_parameters(params)
    return system, state, system.initial_pattern(state)


@pytest.mark.parametrize("loss", ["exponential", "logistic", "cross_entropy"])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_norm_rate_from_outputs_matches_rhs(loss, scale):
    system, state, pattern = _system(loss, scale)
    ev = system.evaluate(state, pattern)
    sigma, _, b = system.split(state)
    # From the right-hand side: dR/dtau = 2 sum_j exp(2 sigma_j) ||omega_j||^2 q_j.
    from_rhs = float(2 * np.sum(np.exp(2 * sigma) * ev.omega_norm2 * ev.q))
    log_N, from_outputs = system.norm_clock_terms(state, pattern)
    assert log_N == ev.log_N
    # Both are sums of the same n h d_y products 4 P_ij exp(2 sigma_j) <G_i, b_j>,
    # grouped differently; any grouping rounds by at most (terms + a few) eps
    # times the sum of their magnitudes.
    products = np.abs(ev.active * np.exp(2 * sigma)) * (np.abs(ev.G) @ np.abs(b).T)
    magnitude = 4 * float(np.sum(products))
    terms = ev.active.size * system.d_y
    assert abs(from_outputs - from_rhs) <= 2 * (terms + 8) * EPS * magnitude


def test_norm_clock_log_speed_matches_rhs():
    # One neuron along each of two samples of opposite classes, so both samples
    # are classified and dR/dtau > 0, as the norm clock requires.
    X = np.array([[1.0, 0.0], [-0.6, 0.8]])
    problem = Problem(X, np.array([0, 1]), 2, "exponential")
    a = 3.0
    params = Parameters(a * X.T, np.array([[a, -a]]))
    system = PolarSystem(problem, 2)
    state = system.from_parameters(params)
    pattern = system.initial_pattern(state)
    coords = NormCoordinates(system, pattern.any(axis=0))
    z = coords.from_polar(state)
    _, ev = coords.evaluate(z, pattern)
    expected = -ev.log_N + coords.log_norm_rate(ev)
    assert math.isfinite(expected)
    # The rates agree to a few eps relative (the bound of the test above, with
    # four products), so their logarithms agree to a few eps absolute.
    assert abs(coords.log_speed_many(z[None], pattern)[0] - expected) <= 64 * EPS


def _states(system: PolarSystem, state: np.ndarray, count: int) -> np.ndarray:
    """Return ``count`` states near ``state``, as the stages of an implicit step are."""
    rng = np.random.default_rng(12)
    return state + 0.01 * rng.standard_normal((count, state.size))


LOSSES = [
    "exponential",
    "logistic",
    "cross_entropy",
    "exponential_mean",
    "cross_entropy_wrong_axis",
]


@pytest.mark.parametrize("loss", LOSSES)
def test_evaluate_many_matches_one_by_one(loss):
    system, state, pattern = _system(loss, 1.0)
    states = _states(system, state, 3)
    rhs, q, omega_norm2 = system.evaluate_many(states, pattern)
    for k in range(3):
        ev = system.evaluate(states[k], pattern)
        # The stacked arithmetic repeats the single one with a leading axis, so
        # the results agree to a few roundoffs of the largest entry.
        scale = np.max(np.abs(ev.rhs))
        assert np.max(np.abs(rhs[k] - ev.rhs)) <= 16 * EPS * scale
        assert np.max(np.abs(q[k] - ev.q)) <= 16 * EPS * np.max(np.abs(ev.q))
        assert np.array_equal(omega_norm2[k], ev.omega_norm2)


@pytest.mark.parametrize("loss", LOSSES)
def test_norm_clock_terms_many_match_one_by_one(loss):
    system, state, pattern = _system(loss, 1.0)
    states = _states(system, state, 5)
    log_N, rates = system.norm_clock_terms_many(states, pattern)
    for k in range(5):
        single_log_N, single_rate = system.norm_clock_terms(states[k], pattern)
        assert abs(log_N[k] - single_log_N) <= 16 * EPS * max(1.0, abs(single_log_N))
        # Both are the same sum of n d_y products; see the bound above.
        _, outputs, G, _ = system._forward_many(states[k : k + 1], pattern)
        magnitude = 4 * float(np.sum(np.abs(G * outputs)))
        assert abs(rates[k] - single_rate) <= 2 * (outputs.size + 8) * EPS * magnitude


def test_norm_clock_rhs_many_matches_evaluate():
    system, state, pattern = _system("cross_entropy", 3.0)
    coords = NormCoordinates(system, pattern.any(axis=0))
    z = coords.from_polar(state)
    zs = _states(system, z, 3)
    zs[:, -1] = z[-1] * np.array([1.0, 1.1, 1.3])
    many = coords.rhs_many(zs, pattern)
    for k in range(3):
        single, _ = coords.evaluate(zs[k], pattern)
        assert np.max(np.abs(many[k] - single)) <= 64 * EPS * np.max(np.abs(single))


@pytest.mark.parametrize("seed", range(6))
def test_log_norm2_roundoff_is_within_the_quiet_margin(seed):
    # quiet_margin derives a bound on the roundoff of log ||theta||^2; compare
    # it with the error of the float computation against 50 digits. The
    # margin also covers the roundings of the comparison, so the value's own
    # error must stay below it with room to spare.
    rng = np.random.default_rng(seed)
    problem = Problem(rng.standard_normal((6, 9)), np.arange(6) % 2, 2, "exponential")
    h = 24
    system = PolarSystem(problem, h)
    blocks = rng.standard_normal((h, system.block))
    blocks[:, 0] = rng.uniform(-40.0, 10.0, h)  # sigma_j over 50 e-folds
    computed = system.log_norm2(blocks.reshape(-1))
    with decimal.localcontext() as context:
        context.prec = 50
        total = sum(
            (2 * decimal.Decimal(row[0])).exp()
            * sum(decimal.Decimal(x) ** 2 for x in row[1:])
            for row in blocks
        )
        exact = float(total.ln())
    error = abs(computed - exact)
    assert error <= 0.5 * quiet_margin(system, computed)
    # The margin stays a roundoff bound: a few hundred eps at most.
    assert quiet_margin(system, computed) <= 512 * EPS * max(1.0, abs(computed))
