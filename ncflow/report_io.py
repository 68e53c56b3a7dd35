"""Reading and writing JSON reports, with atomic replacement of the target file.

JSON has no NaN or infinity, so :func:`to_jsonable` writes them as the strings
``"nan"``, ``"inf"`` and ``"-inf"``. :func:`read_json` returns those strings as they
are, because a string field cannot be distinguished from an encoded number.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ncflow._validation import InvalidArgument

# Strings that stand for the float64 values JSON cannot represent.
NAN_STRING = "nan"
INF_STRING = "inf"
NEG_INF_STRING = "-inf"


def _float_value(value: float) -> float | str:
    if math.isnan(value):
        return NAN_STRING
    if math.isinf(value):
        return INF_STRING if value > 0 else NEG_INF_STRING
    return value


def to_jsonable(data: Any) -> Any:
    """Convert ``data`` to plain Python values that :func:`json.dumps` accepts.

    Mappings become dicts with ``str`` keys, tuples, lists and numpy arrays become
    lists, numpy scalars become Python scalars, paths become strings, and NaN and
    infinite floats become ``"nan"``, ``"inf"`` or ``"-inf"``.

    Raises
    ------
    TypeError
        If ``data`` contains a value of another type, or a mapping key that is not a
        string, number or bool.
    """
    if data is None or isinstance(data, bool | str):
        return data
    if isinstance(data, np.bool_):
        return bool(data)
    if isinstance(data, int | np.integer):
        return int(data)
    if isinstance(data, float | np.floating):
        return _float_value(float(data))
    if isinstance(data, os.PathLike):
        return os.fspath(data)
    if isinstance(data, np.ndarray):
        return to_jsonable(data.tolist())
    if isinstance(data, Mapping):
        converted = {}
        for key, value in data.items():
            if not isinstance(key, str | int | float | bool | np.integer):
                raise TypeError(
                    f"cannot write the mapping key {key!r} of type "
                    f"{type(key).__name__} to JSON; use str keys"
                )
            converted[str(key)] = to_jsonable(value)
        return converted
    if isinstance(data, list | tuple):
        return [to_jsonable(value) for value in data]
    raise TypeError(
        f"cannot write a value of type {type(data).__name__} to JSON: {data!r}"
    )


def dumps(data: Any) -> str:
    """Serialise ``data`` after :func:`to_jsonable`, indented, ending in a newline."""
    return json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` so that no reader sees a partial file.

    The whole document is serialised first, then written to a temporary file in the
    destination directory, flushed and synced to disk, and moved onto ``path`` with
    :func:`os.replace`, which is atomic on POSIX and Windows file systems. The file
    gets the mode ``open()`` would give it (:func:`set_default_mode`). A failure at
    any stage removes the temporary file and leaves an existing ``path`` unchanged.

    Parameters
    ----------
    path : str or path-like
        Destination. Its directory must exist.
    data : object
        Anything :func:`to_jsonable` accepts.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    TypeError
        If ``data`` cannot be converted to JSON.
    OSError
        If the directory does not exist or cannot be written.
    """
    path = Path(path)
    text = dumps(data)

    handle = tempfile.NamedTemporaryFile(
        "w",
        encoding="utf-8",
        dir=path.parent,
        prefix=f".{path.name}.",
        suffix=".tmp",
        delete=False,
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        set_default_mode(handle.name)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise

    sync_directory(path.parent)
    return path


def set_default_mode(path: str | os.PathLike[str]) -> None:
    """Set the mode of ``path`` to 0o666 masked by the process umask.

    That is the mode ``open()`` gives a new file. :mod:`tempfile` creates its files
    with mode 0o600, so a file written through a temporary file needs this before
    it replaces its target, or only its owner could read it.
    """
    # os.umask can only be read by setting it, so it is set back at once. Another
    # thread that creates a file in between gets the mode 0o666.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def make_directories(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return those created.

    The list runs from the outermost directory created to ``directory``, and is
    empty when ``directory`` existed. :func:`remove_empty_directories` takes it.

    Raises
    ------
    OSError
        If a directory cannot be created.
    """
    missing = []
    for path in (directory, *directory.parents):
        if path.is_dir():
            break
        missing.append(path)
    directory.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def remove_empty_directories(created: list[Path]) -> None:
    """Remove the directories of :func:`make_directories` that are still empty.

    The innermost goes first, and the first one that is not empty (or cannot be
    removed) stops the removal, so no file is ever deleted.
    """
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            return


def sync_directory(directory: Path) -> None:
    """Sync the directory entry of a replaced file, where the platform allows it."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        # Some platforms and file systems (Windows, some network mounts) cannot sync
        # a directory; the file itself was synced before the replace.
        pass
    finally:
        os.close(descriptor)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON document, raising an error that names the file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InvalidArgument
        If the file is not valid UTF-8 JSON; the message gives the line and column.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, "JSON file not found", str(path)
        ) from None
    except UnicodeDecodeError as error:
        raise InvalidArgument(
            f"{path} is not valid JSON: it is not UTF-8 text ({error.reason} at byte "
            f"{error.start})"
        ) from None

    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno}, column "
            f"{error.colno}"
        ) from None
