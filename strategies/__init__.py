"""Hypothesis strategies for the property tests of ``ncflow``.

``strategies.datasets`` draws data that meet hypothesis A1 (and, on request, A5) by
construction, and data that lie just outside A1 for the explorations.
``strategies.shapes`` draws initial shapes that meet A2, A3 or A4, Gaussian shapes
for the explorations, and initial scales. It also builds concrete boundary examples
for ``@example``.
"""

from strategies.datasets import (
    a1_breaking_datasets,
    binary_datasets,
    cosine_slack,
    multiclass_datasets,
    near_etf_datasets,
    orthogonal_boundary_datasets,
)
from strategies.shapes import (
    BoundaryExample,
    balanced_binary_shapes,
    duplicated_samples_example,
    gaussian_shapes,
    init_scales,
    orthogonal_cross_class_example,
    semilocal_shapes_for,
    unbalanced_gaussian,
    width_two_example,
    zero_preactivation_example,
)

__all__ = [
    "BoundaryExample",
    "a1_breaking_datasets",
    "balanced_binary_shapes",
    "binary_datasets",
    "cosine_slack",
    "duplicated_samples_example",
    "gaussian_shapes",
    "init_scales",
    "multiclass_datasets",
    "near_etf_datasets",
    "orthogonal_boundary_datasets",
    "orthogonal_cross_class_example",
    "semilocal_shapes_for",
    "unbalanced_gaussian",
    "width_two_example",
    "zero_preactivation_example",
]
