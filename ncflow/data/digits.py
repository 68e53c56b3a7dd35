"""The 8x8 handwritten digits bundled with scikit-learn, as a :class:`Dataset`.

scikit-learn ships the 1797 images of ``sklearn.datasets.load_digits`` inside the
package, so loading them needs no download. Each image has 64 pixels with integer
values 0..16.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from ncflow._validation import InvalidArgument, check_int
from ncflow.data.dataset import Dataset

# Largest pixel value of the bundled images. Dividing by it maps pixels to [0, 1],
# and since 16 is a power of two the division is exact in float64.
_PIXEL_MAX = 16.0


@lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's images, shape (1797, 64), and digits, read once."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = np.array(bunch.data, dtype=np.float64)
    digits = np.array(bunch.target, dtype=np.int64)
    images.flags.writeable = False
    digits.flags.writeable = False
    return images, digits


def load_digits(classes: Sequence[int] = (0, 1, 2), *, center: bool = True) -> Dataset:
    """Load the bundled 8x8 digits of the chosen classes.

    Pixels are float64 in [0, 1]: scikit-learn's values 0..16 divided by 16. With
    ``center=True`` the mean image of the selected samples is subtracted from every
    image, the pre-processing of the MNIST experiment in Min, Zhu and Vidal (NeurIPS
    2025, "Neural Collapse under Gradient Flow on Shallow ReLU Networks for
    Orthogonally Separable Data"). No selected image of the real data equals that
    mean, so no sample becomes zero.

    Parameters
    ----------
    classes : sequence of int
        Digits to keep, each in 0..9, at least two, no repeats. Class ``k`` of the
        result is the digit ``classes[k]``.
    center : bool
        Whether to subtract the mean image of the selected samples.

    Returns
    -------
    Dataset
        ``X`` of shape (n, 64), class names the digits as strings, named for example
        ``"digits[0,1,2]-centered"`` (``"digits[0,1,2]"`` without centring).

    Raises
    ------
    InvalidArgument
        If ``classes`` is invalid, or if centring made an image zero.
    """
    digits = _validated_digits(classes)
    if not isinstance(center, bool | np.bool_):
        raise InvalidArgument(f"center={center!r} is invalid: it must be a bool")

    images, targets = _sklearn_digits()
    keep = np.flatnonzero(np.isin(targets, digits))
    X = images[keep] / _PIXEL_MAX
    if center:
        X = X - X.mean(axis=0)

    name = "digits[" + ",".join(str(digit) for digit in digits) + "]"
    if center:
        name += "-centered"
    return Dataset.from_arrays(X, targets[keep], name=name, class_order=digits)


def _validated_digits(classes: Sequence[int]) -> list[int]:
    if isinstance(classes, str | bytes) or not isinstance(classes, Iterable):
        raise InvalidArgument(
            f"classes={classes!r} is invalid: it must be a sequence of digits such as "
            "(0, 1, 2)"
        )
    digits = [
        check_int("classes entry", digit, 0, 9, fix="digits run from 0 to 9")
        for digit in classes
    ]
    if len(set(digits)) != len(digits):
        raise InvalidArgument(
            f"classes={tuple(digits)!r} is invalid: it repeats a digit; name each "
            "digit once"
        )
    if len(digits) < 2:
        raise InvalidArgument(
            f"classes={tuple(digits)!r} is invalid: it must name at least two digits"
        )
    return digits
