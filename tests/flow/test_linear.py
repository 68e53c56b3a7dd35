"""Solves with ``c I - J`` by neuron groups (``ncflow.flow.linear``) against the
whole matrix, and the grouping itself."""

from __future__ import annotations

import numpy as np
import pytest

from ncflow.flow import Norm2Above, linear, solve_flow
from ncflow.flow.coordinates import NormCoordinates, TauCoordinates
from ncflow.flow.linear import (
    MAX_CANCELLATION,
    MIN_BLOCK_SIZE,
    MIN_GROUP_SIZE,
    BlockSolver,
    DenseSolver,
    Jacobian,
    neuron_groups,
)
from ncflow.flow.radau import EIGENVALUES, GAMMA, NEWTON_TOLERANCE
from ncflow.flow.result import STATUS_TERMINAL_EVENT
from ncflow.init import balanced_init, balanced_shapes
from ncflow.network import Parameters, Problem
from tests.flow.test_accuracy import _cone
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
    block = -(-MIN_BLOCK_SIZE // 7)  # large enough for the blocks to be used
    jacobian = _structured(rng, groups, block, rank, bordered)
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
    block = -(-MIN_BLOCK_SIZE // 8)
    jacobian = _structured(rng, groups, block, 1, False)
    shift = 0.5
    half = 4 * block
    first = jacobian.block_part[:half, :half]
    first += first.T.copy()  # symmetric, so that its eigenvalues are real
    first += np.eye(half) * (shift - np.linalg.eigvalsh(first)[0])
    jacobian = Jacobian(jacobian.block_part, jacobian.U, jacobian.V)
    jacobian.use_groups(groups, block)
    matrix = shift * np.eye(2 * half) - jacobian.matrix
    rhs = rng.standard_normal(2 * half)
    exact = np.linalg.solve(matrix, rhs)
    error = np.max(np.abs(jacobian.factor(shift).solve(rhs) - exact))
    assert error <= _relative_bound(matrix) * np.max(np.abs(exact))
    assert jacobian.dense_fallbacks == 1


def test_small_groups_merge_into_blocks():
    # 32 one-neuron groups of 6 entries: merged into blocks of at least
    # MIN_GROUP_SIZE entries, which still solve like the whole matrix.
    rng = np.random.default_rng(9)
    groups = [np.array([j]) for j in range(32)]
    jacobian = _structured(rng, groups, 6, 2, True)
    sizes = [b - a for a, b in jacobian.bounds]
    assert min(sizes) >= MIN_GROUP_SIZE
    assert len(sizes) == 32 * 6 // (-(-MIN_GROUP_SIZE // 6) * 6)
    matrix = GAMMA * np.eye(jacobian.matrix.shape[0]) - jacobian.matrix
    rhs = rng.standard_normal(matrix.shape[0])
    exact = np.linalg.solve(matrix, rhs)
    error = np.max(np.abs(jacobian.factor(GAMMA).solve(rhs) - exact))
    assert error <= _relative_bound(matrix) * np.max(np.abs(exact))


def test_small_or_single_groups_solve_whole():
    rng = np.random.default_rng(3)
    small = _structured(rng, [np.array([0]), np.array([1])], 9, 1, False)
    assert isinstance(small.factor(GAMMA), DenseSolver)  # 18 entries
    single_group = _structured(rng, [np.arange(8)], MIN_BLOCK_SIZE, 1, False)
    assert isinstance(single_group.factor(GAMMA), DenseSolver)


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


def _wide_binary() -> tuple[Problem, Parameters]:
    """Binary cones around +e_1 and -e_1 in R^8, 16 neurons: a state of
    16 * (1 + 8 + 1) = 160 entries, large enough for the blocks to be used."""
    rng = np.random.default_rng(5)
    centre = np.eye(8)[0]
    X = np.vstack(
        [
            _cone(rng, centre, 8, 0.5, (1.0, 2.0)),
            _cone(rng, -centre, 8, 0.5, (1.0, 2.0)),
        ]
    )
    problem = Problem(X, np.repeat([0, 1], 8), 2, "exponential")
    shapes = balanced_shapes(rng, 8, 16, 1)
    signs = np.where(np.arange(16) % 2 == 0, 1.0, -1.0)
    return problem, balanced_init(Parameters(shapes.W, np.abs(shapes.V) * signs), 1e-4)


def test_block_and_whole_solves_give_one_run(monkeypatch):
    problem, params0 = _wide_binary()
    rtol = 1e-8
    runs = {}
    factored = {"blocks": 0, "whole": 0}
    original = BlockSolver.__init__
    current = []

    def counting(self, jacobian, shift):
        factored[current[-1]] += 1
        original(self, jacobian, shift)

    monkeypatch.setattr(BlockSolver, "__init__", counting)
    for name, smallest in (("blocks", MIN_BLOCK_SIZE), ("whole", 10**9)):
        monkeypatch.setattr(linear, "MIN_BLOCK_SIZE", smallest)
        current.append(name)
        runs[name] = solve_flow(
            problem, params0, rtol=rtol, atol=1e-12, events=[Norm2Above(1e4)]
        )
    blocks, whole = runs["blocks"], runs["whole"]
    assert blocks.status == whole.status == STATUS_TERMINAL_EVENT
    assert factored["blocks"] > 0
    # The layouts of the first run are kept, but not for other limits.
    assert factored["whole"] == 0
    assert blocks.n_accepted == whole.n_accepted
    assert blocks.n_rejected == whole.n_rejected
    # The two runs differ only in the roundoff of the linear solves. Each step's
    # Newton iteration stops within NEWTON_TOLERANCE * rtol of the collocation
    # solution in both runs, so two steps can part by twice that. The flow keeps
    # such differences (it contracts the directions and keeps the norms), so
    # they add up over the steps.
    bound = 2 * NEWTON_TOLERANCE * rtol * blocks.n_accepted
    for a, b in ((blocks.params.W, whole.params.W), (blocks.params.V, whole.params.V)):
        scale = np.max(np.abs(b))
        assert np.max(np.abs(a - b)) <= bound * scale
