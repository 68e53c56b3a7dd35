"""Reading datasets from ``.npz`` and ``.csv`` files, and writing ``.npz`` files.

An ``.npz`` file contains the array ``X`` of shape (n, D) and the array ``y`` of shape
(n,) with the original labels. Files written by :func:`save_npz` also contain
``class_names``, the class order, so that a round trip keeps class ``k`` as class
``k``. A ``.csv`` file has one sample per line with numeric features; see
:func:`load_dataset` for where the label column is found.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ncflow._numeric import is_number
from ncflow._validation import InvalidArgument
from ncflow.data.dataset import Dataset

# Column names, compared without case or surrounding blanks, that mark the label
# column of a ``.csv`` file.
_LABEL_COLUMN_NAMES = ("y", "label")

# The canonical decimal form of an integer, as ``str(int(value))`` writes it.
_INTEGER_NAME = re.compile(r"-?(0|[1-9][0-9]*)")

# The expected form of a .csv file, named in the error for a file that is not UTF-8.
_CSV_FORMAT = (
    "UTF-8 text with one sample per line, comma-separated numeric features and a "
    "label column (the last one, or one named y or label)"
)

# Exceptions that reading a damaged .npz archive can raise. A damaged zip
# directory makes zipfile raise NotImplementedError (a version or flag bit it
# does not support) or RuntimeError (an encryption bit), besides the usual ones.
# A damaged .npy header inside the archive is parsed as Python literals, so
# numpy raises SyntaxError or tokenize.TokenError for it (seen with a null byte).
ARCHIVE_ERRORS = (
    OSError,
    EOFError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


# Start of the reason of an ArchiveError for a file that is a zip archive but
# cannot be read whole: damaged or cut short.
DAMAGED_ARCHIVE = "a damaged .npz archive"
# The first bytes of a zip archive, and so of every .npz file.
_ZIP_MAGIC = b"PK\x03\x04"


class ArchiveError(InvalidArgument):
    """A file that numpy cannot read as an ``.npz`` archive.

    The message is the reason alone, without the path, such as ``a single .npy
    array, not an .npz archive``, so that each caller words its own error.
    """


def _starts_as_zip(path: str | os.PathLike[str]) -> bool:
    """Return whether the file begins with the bytes of a zip archive."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    except OSError:
        return False


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` archive into memory, refusing pickled data.

    Raises
    ------
    ArchiveError
        If the file is not an ``.npz`` archive (text, a pickle, a single ``.npy``
        array, an empty file) or the archive is damaged.
    """
    try:
        empty = os.path.getsize(path) == 0
    except OSError:
        empty = False  # np.load below reports it
    if empty:
        # numpy's own message for it is "No data left in file".
        raise ArchiveError("an empty file, not an .npz archive")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        # numpy reads any file that is neither .npy nor .npz as a pickle, which
        # allow_pickle=False rejects: the file is not an .npz archive.
        if "pickle" in str(error):
            raise ArchiveError("not a NumPy .npz archive") from None
        raise ArchiveError(f"numpy cannot read it: {error}") from None
    except ARCHIVE_ERRORS as error:
        if _starts_as_zip(path):
            # A truncated copy keeps the zip header but loses the directory at
            # the end, so zipfile reads "File is not a zip file".
            raise ArchiveError(
                f"{DAMAGED_ARCHIVE} (cut short or corrupted): {error}"
            ) from None
        raise ArchiveError(f"numpy cannot read it: {error}") from None
    if not hasattr(loaded, "files"):
        raise ArchiveError("a single .npy array, not an .npz archive")
    try:
        with loaded as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            # A sound archive that contains an object array, which only a pickle
            # can restore.
            raise ArchiveError(
                "an .npz archive with an object (pickled) array, which is not "
                "read for safety"
            ) from None
        raise ArchiveError(f"{DAMAGED_ARCHIVE}: {error}") from None
    except ARCHIVE_ERRORS as error:
        raise ArchiveError(f"{DAMAGED_ARCHIVE}: {error}") from None


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read a dataset from an ``.npz`` or ``.csv`` file, chosen by the suffix.

    ``.npz``: the arrays ``X`` (n, D) and ``y`` (n,) are required. An optional array
    ``class_names``, as :func:`save_npz` writes it, fixes the class order. It must
    list the labels that occur in ``y``, not names for integer labels.

    ``.csv``: comma-separated, one sample per line, blank lines skipped. The first
    line is a header when it names a column ``y`` or ``label`` (any case), or when no
    field other than the last one is a number. The label column is the one named
    ``y`` or ``label`` if the header has one, and the last column otherwise. Labels
    that all parse as numbers are read as numbers, others as strings. Feature
    columns must be numbers. A header made only of numbers cannot be distinguished
    from data and is read as a sample.

    Parameters
    ----------
    path : str or path-like
        File to read.

    Returns
    -------
    Dataset
        Named after the file stem (``"digits"`` for ``data/digits.csv``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InvalidArgument
        If the suffix is neither ``.npz`` nor ``.csv``, if a required array or value
        is missing or malformed, or if the data fail the checks of
        :meth:`Dataset.from_arrays`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: unknown file type {path.suffix!r}; use "
            ".npz or .csv"
        )
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "dataset file not found", str(path))
    if suffix == ".npz":
        return _load_npz(path)
    return _load_csv(path)


def save_npz(dataset: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` to an ``.npz`` file that :func:`load_dataset` reads back.

    The file contains ``X``, ``y`` (each sample's original label: integers when every
    class name is an integer, strings otherwise) and ``class_names`` (the class
    order). The dataset's ``name`` is not stored, because loading names the dataset
    after the file stem.

    Parameters
    ----------
    dataset : Dataset
        Data to write.
    path : str or path-like
        Destination, ending in ``.npz``. An existing file is overwritten.

    Returns
    -------
    Path
        The path written.
    """
    if not isinstance(dataset, Dataset):
        raise InvalidArgument(
            f"dataset={dataset!r} is invalid: it must be an ncflow.data.Dataset"
        )
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: it must end in .npz, got suffix "
            f"{path.suffix!r}"
        )

    names = np.array(dataset.class_names, dtype=str)
    if all(_INTEGER_NAME.fullmatch(name) for name in dataset.class_names):
        y = np.array([int(name) for name in dataset.class_names])[dataset.labels]
    else:
        y = names[dataset.labels]
    # Writing to an open file keeps numpy from appending a second ".npz".
    with path.open("wb") as handle:
        np.savez_compressed(handle, X=dataset.X, y=y, class_names=names)
    return path


def _load_npz(path: Path) -> Dataset:
    try:
        arrays = read_npz(path)
    except ArchiveError as error:
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: it cannot be read as an .npz archive "
            f"({error}); save the arrays X and y with numpy.savez or "
            "ncflow.data.save_npz"
        ) from None

    missing = [key for key in ("X", "y") if key not in arrays]
    if missing:
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: the archive has no array "
            f"{' or '.join(repr(key) for key in missing)}; it contains "
            f"{sorted(arrays)!r}. Store the samples as X and the labels as y"
        )
    class_order = None
    if "class_names" in arrays:
        class_order = [str(name) for name in arrays["class_names"].tolist()]
    return Dataset.from_arrays(
        arrays["X"], arrays["y"], name=path.stem, class_order=class_order
    )


def _load_csv(path: Path) -> Dataset:
    # "utf-8-sig" drops a byte-order mark, which would otherwise make the first field
    # non-numeric and turn the first sample into a header.
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            numbered_rows = [
                (line_number, [field.strip() for field in row])
                for line_number, row in enumerate(csv.reader(handle), start=1)
                if any(field.strip() for field in row)
            ]
    except UnicodeDecodeError as error:
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: it is not UTF-8 text ({error.reason} at "
            f"byte {error.start}); a .csv file must be {_CSV_FORMAT}"
        ) from None
    if not numbered_rows:
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: the file contains no samples (n=0); "
            f"a .csv file must be {_CSV_FORMAT}"
        )

    first_fields = numbered_rows[0][1]
    label_positions = [
        position
        for position, field in enumerate(first_fields)
        if field.lower() in _LABEL_COLUMN_NAMES
    ]
    # A header has no numeric feature field. A first line with some numbers and
    # some text is a sample with a bad value. Read as a header, "1,abc,0" lost
    # its sample, and the error was about the number of classes.
    has_header = bool(label_positions) or not any(
        is_number(field) for field in first_fields[:-1]
    )
    if len(label_positions) > 1:
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: the header names more than one label "
            f"column ({[first_fields[p] for p in label_positions]!r}); keep one"
        )
    label_column = label_positions[0] if label_positions else len(first_fields) - 1
    width = len(first_fields)
    data_rows = numbered_rows[1:] if has_header else numbered_rows
    if not data_rows:
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: the file has a header but no samples "
            f"(n=0); a .csv file must be {_CSV_FORMAT}"
        )
    if width < 2:
        raise InvalidArgument(
            f"path={str(path)!r} is invalid: each line needs at least one feature "
            "column and a label column"
        )

    features: list[list[float]] = []
    raw_labels: list[str] = []
    for line_number, fields in data_rows:
        if len(fields) != width:
            raise InvalidArgument(
                f"{path}, line {line_number}: expected {width} fields, got "
                f"{len(fields)}; every line needs the same columns"
            )
        row = []
        for position, field in enumerate(fields):
            if position == label_column:
                continue
            if not is_number(field):
                raise InvalidArgument(
                    f"{path}, line {line_number}, column {position + 1}: feature "
                    f"value {field!r} is not a number"
                )
            row.append(float(field))
        features.append(row)
        raw_labels.append(fields[label_column])

    y: np.ndarray
    if all(is_number(label) for label in raw_labels):
        y = np.array([float(label) for label in raw_labels])
    else:
        y = np.array(raw_labels, dtype=str)
    return Dataset.from_arrays(np.array(features), y, name=path.stem)
