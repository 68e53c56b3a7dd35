"""Solves with ``c I - J`` by neuron groups (``ncflow.flow.linear``) against the
whole matrix, and the grouping itself."""

from __future__ import annotations

import numpy as np
import pytest

from ncflow.flow.coordinates import NormCoordinates, TauCoordinates
from ncflow.flow.linear import (
    MAX_CANCELLATION,
    BlockSolver,
    DenseSolver,
    Jacobian,
    neuron_groups,
)
from ncflow.flow.radau import EIGENVALUES, GAMMA
from tests.flow.test_polar import _system

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2
SHIFTS = [GAMMA, EIGENVALUES[1]]  # the two shifts of a Radau step of size 1


def test_groups_split_neurons_without_a_shared_sample():
    # Neurons 0 and 2 share sample 0, neurons 1 and 3 share sample 2, and
    # neuron 4 is active nowhere.
    pattern = np.array(
        [
            [1, 0, 1, 0, 0],
            [1, 0, 0, 0, 0],
            [0, 1, 0, 1, 0],
        ],
        dtype=bool,
    )
    groups = neuron_groups(pattern)
    assert [g.tolist() for g in groups] == [[0, 2], [1, 3], [4]]


def test_groups_follow_chains_of_shared_samples():
    # 0 and 1 share sample 0, 1 and 2 share sample 1: one group, though 0 and 2
    # share nothing.
    pattern = np.array([[1, 1, 0], [0, 1, 1]], dtype=bool)
    assert [g.tolist() for g in neuron_groups(pattern)] == [[0, 1, 2]]


def _structured(
    rng: np.random.Generator, groups: list, block: int, rank: int, bordered: bool
) -> Jacobian:
    """A random Jacobian whose block part is zero between the groups."""
    h = sum(len(g) for g in groups)
    m = h * block
    block_part = np.zeros((m, m))
    for group in groups:
        index = (group[:, None] * block + np.arange(block)).reshape(-1)
        block_part[np.ix_(index, index)] = rng.standard_normal((index.size,) * 2)
    U = rng.standard_normal((m, rank))
    V = rng.standard_normal((m, rank))
    border = rng.standard_normal(m) if bordered else None
    jacobian = Jacobian(block_part, U, V, border)
    jacobian.use_groups(groups, block)
    return jacobian


def _relative_bound(matrix: np.ndarray) -> float:
    """Bound on the relative error of a solve with ``matrix`` by blocks.

    An LU solve is backward stable: it solves a system perturbed by about
    ``m u`` relative (with pivoting growth, small for these matrices), which
    moves the solution by the condition number times that. The Woodbury
    correction can cancel up to ``MAX_CANCELLATION`` of the block solve's size
    before the solver falls back to the whole matrix, and that cancellation
    multiplies the error of the block solve.
    """
    m = matrix.shape[0]
    return np.linalg.cond(matrix) * m * UNIT_ROUNDOFF * MAX_CANCELLATION


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("bordered", [False, True])
@pytest.mark.parametrize("rank", [1, 2])
def test_block_solve_matches_whole_matrix(shift, bordered, rank):
    rng = np.random.default_rng(rank + 2 * bordered)
    groups = [np.array([0, 2, 4]), np.array([1, 3]), np.array([5, 6])]
    jacobian = _structured(rng, groups, 9, rank, bordered)
    matrix = shift * np.eye(jacobian.matrix.shape[0]) - jacobian.matrix
    solver = jacobian.factor(shift)
    assert isinstance(solver, BlockSolver)
    for rhs in (rng.standard_normal(matrix.shape[0]), rng.standard_normal(len(matrix))):
        rhs = rhs.astype(np.result_type(rhs, shift))
        exact = np.linalg.solve(matrix, rhs)
        error = np.max(np.abs(solver.solve(rhs) - exact)) / np.max(np.abs(exact))
        assert error <= _relative_bound(matrix)
    assert jacobian.dense_fallbacks == 0


def test_cancellation_falls_back_to_whole_matrix():
    # B has the eigenvalue c on its first block, so c I - B is singular, while
    # c I - (B - U V^T) is not: the Woodbury correction would cancel all digits.
    rng = np.random.default_rng(7)
    groups = [np.arange(4), np.arange(4, 8)]
    jacobian = _structured(rng, groups, 7, 1, False)
    shift = 0.5
    first = jacobian.block_part[:28, :28]
    first += first.T.copy()  # symmetric, so that its eigenvalues are real
    first += np.eye(28) * (shift - np.linalg.eigvalsh(first)[0])
    jacobian = Jacobian(jacobian.block_part, jacobian.U, jacobian.V)
    jacobian.use_groups(groups, 7)
    matrix = shift * np.eye(56) - jacobian.matrix
    rhs = rng.standard_normal(56)
    exact = np.linalg.solve(matrix, rhs)
    error = np.max(np.abs(jacobian.factor(shift).solve(rhs) - exact))
    assert error <= _relative_bound(matrix) * np.max(np.abs(exact))
    assert jacobian.dense_fallbacks == 1


def test_small_or_single_groups_solve_whole():
    rng = np.random.default_rng(3)
    small = _structured(rng, [np.array([0]), np.array([1])], 9, 1, False)
    assert isinstance(small.factor(GAMMA), DenseSolver)  # 18 entries
    one = _structured(rng, [np.arange(8)], 9, 1, False)
    assert isinstance(one.factor(GAMMA), DenseSolver)


def _separated_state(loss: str):
    """A state of the polar system of the tests with a pattern in which the
    neurons of each class are active on that class only."""
    system, state, _ = _system(loss, 1.0)
    labels = system.problem.labels
    neuron_class = np.arange(system.h) % system.problem.num_classes
    pattern = labels[:, None] == neuron_class[None, :]
    return system, state, pattern


@pytest.mark.parametrize("loss", ["exponential", "cross_entropy"])
@pytest.mark.parametrize("clock", ["tau", "norm2"])
def test_flow_block_part_zero_between_groups(loss, clock):
    system, state, pattern = _separated_state(loss)
    if clock == "tau":
        coords = TauCoordinates(system)
    else:
        coords = NormCoordinates(system, pattern.any(axis=0))
    z = coords.from_polar(state)
    _, ev = coords.evaluate(z, pattern)
    jacobian = coords.structured_jacobian(z, pattern, ev)
    groups = neuron_groups(pattern)
    assert len(groups) == system.problem.num_classes
    neuron = np.arange(system.size) // system.block
    group_of = np.empty(system.h, dtype=int)
    for k, group in enumerate(groups):
        group_of[group] = k
    between = group_of[neuron][:, None] != group_of[neuron][None, :]
    assert np.all(jacobian.block_part[between] == 0.0)
    # The parts add up to the Jacobian that the dense path uses.
    np.testing.assert_array_equal(jacobian.matrix, coords.jacobian(z, pattern, ev))
