"""Labelled sample matrices with labels mapped once to class indices ``0..K-1``.

| symbol | code name | shape | meaning |
|---|---|---|---|
| `X` | `Dataset.X` | (n, D) | samples, one row `x_i` per sample, float64 |
| `y_i` | `Dataset.labels` | (n,) | class index of sample `i`, int64 in `0..K-1` |
| `I_k` | `Dataset.class_indices[k]` | (n_k,) | row indices of class `k` |
| `y_i in {+1, -1}` | `Dataset.signs` | (n,) | binary labels as float64 signs |

Raw labels (ints, integral floats, bools or strings) are mapped to class indices in
:meth:`Dataset.from_arrays`, and every later computation uses only the indices, so
labels such as ``{-1, +1}``, ``{0, 2}`` or ``{"cat", "dog"}`` need no special cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ncflow._validation import InvalidArgument, check_array

# Class names that ``Dataset.signs`` reads as the numbers -1 and +1.
_SIGN_OF_NAME = {"-1": -1.0, "1": 1.0, "+1": 1.0}


def _label_name(value: Any, parameter: str) -> str:
    """Return the class name of one raw label, or raise naming ``parameter``.

    Bools give ``"True"``/``"False"``, integers and integral floats give the decimal
    integer (so ``2``, ``2.0`` and ``np.int8(2)`` all give ``"2"``), and strings are
    kept as they are.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(bool(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value != math.floor(value):
            raise InvalidArgument(
                f"{parameter}={value!r} is invalid: a float label must be an integral "
                "number such as 0.0 or 1.0; round the labels or pass them as strings"
            )
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise InvalidArgument(
        f"{parameter}={value!r} is invalid: a label must be an int, an integral float, "
        f"a bool or a str, not {type(value).__name__}"
    )


def _unique_labels(y: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Map raw labels to their sorted distinct class names and an inverse index.

    Numbers sort numerically (so ``-1 < 1`` and ``2 < 10``), strings sort as strings,
    and ``False`` sorts before ``True``.
    """
    kind = y.dtype.kind
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.floor(y)))
        if bad.size:
            raise InvalidArgument(
                f"y[{bad[0]}]={y[bad[0]].item()!r} is invalid: float labels must be "
                f"integral numbers ({bad.size} of {y.size} are not); round the labels "
                "or pass them as strings"
            )
    if kind == "S":
        y = np.char.decode(y)
        kind = "U"
    if kind in "biufU":
        unique, inverse = np.unique(y, return_inverse=True)
        names = [_label_name(value, "label") for value in unique.tolist()]
        return names, inverse.reshape(-1)

    # Other dtypes (object, complex, datetime) are checked element by element: all
    # elements must be strings, or all bools, or all ints and floats.
    values = y.tolist()
    is_text = [isinstance(value, str | bytes) for value in values]
    is_bool = [isinstance(value, bool | np.bool_) for value in values]
    for kind_flags, kind_name in ((is_text, "strings"), (is_bool, "bools")):
        if any(kind_flags) and not all(kind_flags):
            first_in = kind_flags.index(True)
            first_out = kind_flags.index(False)
            raise InvalidArgument(
                f"y mixes {kind_name} (y[{first_in}]={values[first_in]!r}) with other "
                f"labels (y[{first_out}]={values[first_out]!r}); use one kind of label"
            )
    for i, value in enumerate(values):
        _label_name(value, f"y[{i}]")
    if all(is_text):
        converted = np.array([_label_name(value, "label") for value in values])
    else:
        converted = np.array(values)
    if converted.dtype.kind not in "biufU":
        raise InvalidArgument(
            f"y is invalid: its labels cannot be stored as one numeric or string "
            f"array (numpy gives dtype {converted.dtype}); pass them as strings"
        )
    return _unique_labels(converted)


def _order_classes(
    present: list[str], class_order: Iterable[Any]
) -> tuple[list[str], np.ndarray]:
    """Return the class names in ``class_order`` and, per present name, its index."""
    if isinstance(class_order, str | bytes):
        raise InvalidArgument(
            f"class_order={class_order!r} is invalid: it must be a sequence of labels, "
            "not a single string"
        )
    order = [_label_name(value, "class_order entry") for value in class_order]

    repeated = sorted({name for name in order if order.count(name) > 1})
    if repeated:
        raise InvalidArgument(
            f"class_order={tuple(order)!r} is invalid: it repeats {repeated!r}; name "
            "each class once"
        )

    missing = [name for name in present if name not in order]
    if missing:
        raise InvalidArgument(
            f"class_order={tuple(order)!r} is invalid: label(s) {missing!r} occur in y "
            "but not in class_order; add them or drop those samples"
        )

    absent = [name for name in order if name not in present]
    if absent:
        raise InvalidArgument(
            f"class_order={tuple(order)!r} is invalid: label(s) {absent!r} never occur "
            "in y, so their classes would be empty; remove them from class_order"
        )

    position = {name: index for index, name in enumerate(order)}
    lookup = np.array([position[name] for name in present], dtype=np.int64)
    return order, lookup


def _read_only_copy(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, copy=True)
    copy.flags.writeable = False
    return copy


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Samples ``X`` with class indices ``labels`` and the names of the classes.

    Construct one with :meth:`from_arrays` from raw labels. The direct constructor
    takes labels that are already class indices and validates everything again.
    ``X`` and ``labels`` are read-only private copies. Datasets compare by identity;
    compare the fields with :func:`numpy.array_equal` to test contents.

    Parameters
    ----------
    X : ndarray, shape (n, D)
        Samples, one row per sample. Finite, with no zero row, ``n >= 1``, ``D >= 1``.
    labels : ndarray of int, shape (n,)
        Class index of each sample, in ``0..K-1``. Every class has a sample.
    class_names : tuple of str, length K
        Original label of each class, so ``class_names[k]`` names class ``k``.
    name : str
        Short description, such as ``"digits[0,1,2]"``.
    """

    X: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        X = _validated_samples(self.X)
        class_names = _validated_class_names(self.class_names)
        labels = _validated_labels(self.labels, X.shape[0], class_names)
        if not isinstance(self.name, str):
            raise InvalidArgument(f"name={self.name!r} is invalid: it must be a str")

        object.__setattr__(self, "X", _read_only_copy(X))
        object.__setattr__(self, "labels", _read_only_copy(labels))
        object.__setattr__(self, "class_names", class_names)

    @classmethod
    def from_arrays(
        cls,
        X: Any,
        y: Any,
        *,
        name: str = "dataset",
        class_order: Sequence[Any] | None = None,
    ) -> Dataset:
        """Validate samples and raw labels, and map the labels to class indices.

        Parameters
        ----------
        X : array_like, shape (n, D)
            Samples, one row per sample.
        y : array_like, shape (n,)
            Raw labels: ints, integral floats, bools or strings.
        name : str
            Description stored in the dataset.
        class_order : sequence of labels, optional
            Class ``k`` is ``class_order[k]``. Without it the classes are the sorted
            distinct labels: numbers in numeric order, strings in string order and
            ``False`` before ``True``. Labels that are exactly the numbers -1 and
            +1 are the exception: +1 comes first, because a scalar head predicts
            class 0 where ``f > 0`` (``ncflow.metrics``).

        Returns
        -------
        Dataset

        Raises
        ------
        InvalidArgument
            If ``X`` is not a finite 2-D array with ``n >= 1`` rows, none of them
            zero, or if ``y`` is not 1-D with ``n`` entries. Also if a float label is
            not integral, if there are fewer than two classes, or if ``class_order``
            repeats a label, misses one that occurs or names one that never occurs.
        """
        X = _validated_samples(X)
        y = np.asarray(y)
        if y.ndim != 1:
            raise InvalidArgument(
                f"y is invalid: it must be 1-D with one label per sample, got shape "
                f"{y.shape}; flatten it or pass a single label column"
            )
        if y.shape[0] != X.shape[0]:
            raise InvalidArgument(
                f"X and y have different lengths: X has n={X.shape[0]} rows but y has "
                f"{y.shape[0]} labels; pass one label per row of X"
            )

        present, inverse = _unique_labels(y)
        if len(present) < 2:
            raise InvalidArgument(
                f"y is invalid: it has only one class ({present[0]!r}), but a dataset "
                "needs at least two classes"
            )
        if class_order is None:
            class_names, labels = present, inverse.astype(np.int64)
            if [_SIGN_OF_NAME.get(name) for name in present] == [-1.0, 1.0]:
                # Class 0 is the + class of a scalar head (ncflow.metrics), so
                # the labels -1 and +1 put +1 first.
                class_names, labels = present[::-1], 1 - labels
        else:
            class_names, lookup = _order_classes(present, class_order)
            labels = lookup[inverse]
        return cls(X=X, labels=labels, class_names=tuple(class_names), name=name)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n={self.n}, D={self.D}, K={self.K}, "
            f"class_names={self.class_names!r})"
        )

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.X.shape[0])

    @property
    def D(self) -> int:
        """Input dimension."""
        return int(self.X.shape[1])

    @property
    def K(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @cached_property
    def class_sizes(self) -> np.ndarray:
        """Number of samples ``|I_k|`` of each class, int64 ndarray of shape (K,)."""
        return _read_only_copy(np.bincount(self.labels, minlength=self.K))

    @cached_property
    def class_indices(self) -> tuple[np.ndarray, ...]:
        """Row indices ``I_k`` of each class, in increasing order."""
        return tuple(
            _read_only_copy(np.flatnonzero(self.labels == k)) for k in range(self.K)
        )

    @property
    def signs(self) -> np.ndarray:
        """Binary labels ``y_i`` in ``{+1, -1}``, float64 ndarray of shape (n,).

        When the class names are exactly the numbers -1 and +1 (written ``"-1"`` and
        ``"1"`` or ``"+1"``), each sample keeps its own sign. Otherwise class 0 is
        the ``+`` class and class 1 the ``-`` class. With bool labels and no
        ``class_order`` that makes ``False`` the ``+`` class.

        Raises
        ------
        InvalidArgument
            If the dataset does not have exactly two classes.
        """
        if self.K != 2:
            raise InvalidArgument(
                f"signs is only defined for two classes, but {self.name!r} has K="
                f"{self.K} classes {self.class_names!r}; use labels, or pick two "
                "classes with subset(...)"
            )
        named_signs = [_SIGN_OF_NAME.get(name) for name in self.class_names]
        if set(named_signs) == {-1.0, 1.0}:
            sign_of_class = np.array(named_signs, dtype=np.float64)
        else:
            sign_of_class = np.array([1.0, -1.0])
        return sign_of_class[self.labels]

    def subset(self, classes: Sequence[Any]) -> Dataset:
        """Return the samples of the named classes, re-indexed in the order given.

        Parameters
        ----------
        classes : sequence of labels
            Original class names (or labels that map to them, such as ``2`` for
            ``"2"``), at least two, each once. Class ``k`` of the result is
            ``classes[k]``.

        Returns
        -------
        Dataset
            The rows of ``X`` are taken as they are: a centred dataset is not centred
            again.
        """
        if isinstance(classes, str | bytes) or not isinstance(classes, Iterable):
            raise InvalidArgument(
                f"classes={classes!r} is invalid: it must be a sequence of class names "
                f"from {self.class_names!r}"
            )
        requested = [_label_name(value, "classes entry") for value in classes]
        unknown = [name for name in requested if name not in self.class_names]
        if unknown:
            raise InvalidArgument(
                f"classes={tuple(requested)!r} is invalid: {unknown!r} not among the "
                f"class names {self.class_names!r}"
            )
        if len(set(requested)) != len(requested) or len(requested) < 2:
            raise InvalidArgument(
                f"classes={tuple(requested)!r} is invalid: it must name at least two "
                "different classes, each once"
            )

        old_index = [self.class_names.index(name) for name in requested]
        new_index = np.full(self.K, -1, dtype=np.int64)
        new_index[old_index] = np.arange(len(requested))
        keep = np.flatnonzero(new_index[self.labels] >= 0)
        return Dataset(
            X=self.X[keep],
            labels=new_index[self.labels[keep]],
            class_names=tuple(requested),
            name=f"{self.name}[{','.join(requested)}]",
        )

    def with_bias(self) -> Dataset:
        """Return the dataset with a constant 1 appended to every sample.

        A bias-free network on the augmented inputs is a network with biases on the
        original inputs, so this is how biases are explored. ``D`` grows by one.
        """
        ones = np.ones((self.n, 1))
        return Dataset(
            X=np.hstack([self.X, ones]),
            labels=self.labels,
            class_names=self.class_names,
            name=f"{self.name}+bias",
        )

    def normalized(self) -> Dataset:
        """Return the dataset with every sample scaled to unit Euclidean norm."""
        norms = np.linalg.norm(self.X, axis=1)
        return Dataset(
            X=self.X / norms[:, None],
            labels=self.labels,
            class_names=self.class_names,
            name=f"{self.name}-normalized",
        )


def _validated_samples(X: Any) -> np.ndarray:
    """Return ``X`` as a finite float64 (n, D) array with n, D >= 1 and no zero row."""
    if np.iscomplexobj(X):
        raise InvalidArgument("X is invalid: it must be real, got a complex array")
    X = check_array("X", X, ndim=2)
    if X.shape[0] == 0:
        raise InvalidArgument(
            f"X is invalid: it has no samples (n=0, shape {X.shape}); pass at least "
            "one sample per class"
        )
    if X.shape[1] == 0:
        raise InvalidArgument(
            f"X is invalid: its samples have no features (D=0, shape {X.shape})"
        )

    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(X, axis=1)
    zero_rows = np.flatnonzero(norms == 0)
    tiny = zero_rows[np.any(X[zero_rows] != 0, axis=1)]
    if tiny.size:
        i = int(tiny[0])
        raise InvalidArgument(
            f"X[{i}] is invalid: it has entries up to {np.max(np.abs(X[i])):.3g}, "
            "whose squared norm underflows float64 to 0; rescale X, or remove the "
            "row if the sample is meant to be zero"
        )
    if zero_rows.size:
        raise InvalidArgument(
            f"X[{zero_rows[0]}] is invalid: the sample is a zero vector (norm 0; "
            f"{zero_rows.size} such rows in all), so its cosines are undefined; "
            "remove the zero rows"
        )
    overflow_rows = np.flatnonzero(~np.isfinite(norms))
    if overflow_rows.size:
        raise InvalidArgument(
            f"X[{overflow_rows[0]}] is invalid: its squared norm overflows float64; "
            "rescale X"
        )
    return X


def _validated_class_names(class_names: Any) -> tuple[str, ...]:
    if isinstance(class_names, str) or not isinstance(class_names, Iterable):
        raise InvalidArgument(
            f"class_names={class_names!r} is invalid: it must be a tuple of str"
        )
    names = tuple(class_names)
    if not all(isinstance(name, str) for name in names):
        raise InvalidArgument(
            f"class_names={names!r} is invalid: every class name must be a str"
        )
    if len(set(names)) != len(names):
        raise InvalidArgument(
            f"class_names={names!r} is invalid: the names must be distinct"
        )
    if len(names) < 2:
        raise InvalidArgument(
            f"class_names={names!r} is invalid: a dataset needs at least two classes"
        )
    return names


def _validated_labels(labels: Any, n: int, class_names: tuple[str, ...]) -> np.ndarray:
    labels = np.asarray(labels)
    K = len(class_names)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InvalidArgument(
            f"labels is invalid: it must be a 1-D integer array of class indices, got "
            f"shape {labels.shape} and dtype {labels.dtype}; build datasets from raw "
            "labels with Dataset.from_arrays"
        )
    if labels.shape[0] != n:
        raise InvalidArgument(
            f"X and labels have different lengths: X has n={n} rows but labels has "
            f"{labels.shape[0]} entries"
        )
    out_of_range = np.flatnonzero((labels < 0) | (labels >= K))
    if out_of_range.size:
        i = out_of_range[0]
        raise InvalidArgument(
            f"labels[{i}]={labels[i]} is invalid: class indices must lie in 0..{K - 1} "
            f"for the K={K} class names {class_names!r}"
        )
    sizes = np.bincount(labels, minlength=K)
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        k = empty[0]
        raise InvalidArgument(
            f"class {k} ({class_names[k]!r}) is empty: no label equals {k}; remove "
            "the class name or add its samples"
        )
    return labels.astype(np.int64)
