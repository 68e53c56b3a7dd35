"""Small numerical kernels used on hot paths.

``scipy.special.logsumexp`` handles many input types and costs tens of
microseconds per call on small arrays; the integrator calls it thousands of
times per run, so the plain float64 version below is used instead.
"""

from __future__ import annotations

import numpy as np


def logsumexp(values: np.ndarray, axis: int | None = None, weights=None) -> np.ndarray:
    """``log sum exp(values)`` (times ``weights`` if given), stable for large values.

    Entries of ``-inf`` contribute 0; an all ``-inf`` reduction returns ``-inf``.
    """
    values = np.asarray(values, dtype=np.float64)
    top = np.max(values, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    shifted = np.exp(values - top)
    if weights is not None:
        shifted = shifted * weights
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(shifted, axis=axis, keepdims=True)) + top
    if axis is None:
        return float(out.reshape(()))
    return np.squeeze(out, axis=axis)
