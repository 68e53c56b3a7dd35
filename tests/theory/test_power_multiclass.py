"""Planted multi-class faults: the checks must tell each from the right implementation.

Each fault is planted on an example where it is known to matter, the right
implementation must PASS the claim and the faulty one must FAIL it:

- ``wrong_pseudo_labels`` predicts ``V_bar`` with ``E~`` lacking its factor
  ``sqrt(K/(K-1))``: C9 compares the trained ``V_bar`` with that prediction;
- ``softmax_wrong_axis`` trains with the softmax normalised over the samples:
  with unequal class sizes its gradient at ``f = 0`` is ``e_k - (n_l/n)_l``, not
  ``e_k - 1/K``, so the alignment velocities leave the ``eps = 0`` dynamics of
  Lemma 3 of Min, Zhu and Vidal (NeurIPS 2025) by an amount of order one (E3);
- ``mean_loss`` trains with the mean instead of the sum: every velocity is
  ``1/n`` of the summed loss's, so the same E3 comparison sees a deviation of
  ``(1 - 1/n)`` times the velocity, and every time constant the theory derives
  (``T``, ``T*``) is off by the factor ``n``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ncflow.data import Dataset
from ncflow.geometry import pseudo_labels
from ncflow.network import Parameters
from tests.theory.support import SETTINGS
from theory_checks import check
from theory_checks.runs import Example
from theory_checks.verdict import Outcome

# No eps refinement: a planted fault does not depend on eps, and one run shows it.
FAST = replace(SETTINGS, eps_floor=1.0)


def _unbalanced() -> Example:
    """Three classes of sizes 1, 1 and 3 near the simplex-ETF directions, one
    semi-local neuron per class (A1, A2, A4 and A5 hold)."""
    E = pseudo_labels(3)
    tilts = [np.zeros(3), np.array([0.08, 0.0, 0.0]), np.array([0.0, 0.08, 0.0])]
    X = np.array([E[:, 0], E[:, 1]] + [E[:, 2] + tilt for tilt in tilts])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    dataset = Dataset.from_arrays(X, np.array([0, 1, 2, 2, 2]), name="unbalanced")
    W = X[[0, 1, 3]].T.copy()
    return Example(
        dataset,
        Parameters(W, E.copy()),
        1e-4,
        "cross_entropy",
        groups=(0, 1, 2),
        label="unbalanced",
    )


CASES = [
    # (fault, claim): the claim that must detect the fault on _unbalanced().
    ("wrong_pseudo_labels", "C9"),
    ("softmax_wrong_axis", "E3"),
    ("mean_loss", "E3"),
]
IDS = [f"{fault}-{claim}" for fault, claim in CASES]


@pytest.mark.parametrize(("fault", "claim"), CASES, ids=IDS)
def test_right_implementation_passes(fault, claim):
    verdict = check(claim, _unbalanced(), FAST)
    assert verdict.outcome is Outcome.PASS, verdict.describe()


@pytest.mark.parametrize(("fault", "claim"), CASES, ids=IDS)
def test_planted_fault_fails(fault, claim):
    verdict = check(claim, replace(_unbalanced(), faults=(fault,)), FAST)
    assert verdict.outcome is Outcome.FAIL, verdict.describe()


def test_wrong_axis_gradient_at_zero_balanced():
    # With equal class sizes n_l/n = 1/K, so both gradients at f = 0 are
    # e_k - 1/K: the fault needs unequal sizes to show in the alignment phase.
    from ncflow.losses import loss_terms

    labels = np.array([0, 0, 1, 1, 2, 2])
    zero = np.zeros((6, 3))
    right = loss_terms(zero, labels, "cross_entropy").gradients()
    wrong = loss_terms(zero, labels, "cross_entropy_wrong_axis").gradients()
    # Both are formed from a few float64 operations on numbers of order 1.
    assert np.allclose(right, wrong, rtol=0, atol=8 * np.finfo(float).eps)
