"""Durable counterexample records: one ``.npz`` file per verdict, replayable alone.

A Hypothesis example database and ``@reproduce_failure`` blobs stop reproducing a
failure once the source, the strategies or Hypothesis itself change. A record keeps
the data instead: the arrays of the :class:`~theory_checks.runs.Example`, every
setting of the example and of the run, the verdict with its tolerance derivation,
and the software environment, so that :func:`replay` repeats the check from the
file alone.

Layout of a record (written by :func:`write_record`, read by :func:`read_record`):

| entry | shape | dtype | contents |
|---|---|---|---|
| ``X`` | (n, D) | float64 | samples ``x_i``, one per row |
| ``y`` | (n,) | str | class name of each sample, ``class_names[labels[i]]`` |
| ``labels`` | (n,) | int64 | class index of each sample, in ``0..K-1`` |
| ``W0`` | (D, h) | float64 | input-weight shapes; ``W(0) = eps * W0`` |
| ``V0`` | (d_y, h) | float64 | output-weight shapes; ``V(0) = eps * V0`` |
| ``meta`` | () | str | JSON document, described below |

``meta`` contains ``format`` (:data:`FORMAT`), ``claim``, ``example`` (``eps``,
``loss``, ``activation``, ``groups``, ``balanced``, ``faults``, ``label``, the
dataset's ``name`` and ``class_names``, and ``Example.fingerprint()``), ``arrays``
(shape and dtype of each array above), ``settings`` (every field of
:class:`~theory_checks.runs.RunSettings`), ``verdict`` (``Verdict.to_dict()``),
``environment`` (package versions, Python, platform, BLAS thread settings),
``reproduction`` (the Hypothesis blob, or null), ``created`` (UTC time of writing)
and ``hash``.

``hash`` is the SHA-256 of the arrays and the metadata, computed as follows. For
each array name in sorted order, feed ``name``, ``dtype.str``, ``repr(shape)``, each
followed by a zero byte, and then the array's C-order bytes. Then feed ``b"meta\\0"``
and the canonical JSON of ``meta`` without ``created`` and ``hash``: sorted keys,
separators ``","`` and ``":"``, ASCII only, NaN and infinities as the strings
``"nan"``, ``"inf"`` and ``"-inf"``. ``identity`` is the same digest of the
arrays and of ``format``, ``claim``, ``example`` and ``settings`` only. The file is
named ``<claim>-<first 16 hex digits of identity>.npz``, so the same
counterexample (claim, data, initialisation and run settings) found twice, also
on another machine or with other package versions, is stored once; ``hash``
detects any change to the file.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ncflow._validation import InvalidArgument
from ncflow.data import Dataset
from ncflow.data.io import DAMAGED_ARCHIVE, ArchiveError, read_npz
from ncflow.network import Parameters
from ncflow.report_io import set_default_mode, sync_directory, to_jsonable
from theory_checks.runs import Example, RunSettings
from theory_checks.verdict import (
    HypothesisReport,
    Outcome,
    Tolerance,
    ToleranceTerm,
    Verdict,
)

FORMAT = "ncflow-counterexample/1"
SUFFIX = ".npz"
# Hex digits of the content hash in a record's file name: 64 bits, so two different
# records of one claim collide with probability about N^2 / 2^65 for N records.
NAME_HASH_DIGITS = 16
CLAIM_PATTERN = re.compile(r"^(C(1[0-4]|[1-9])|E[1-3]|X[1-8])$")
# A record's file name: its claim, then the first hex digits of its identity.
NAME_PATTERN = re.compile(
    rf"^(C(1[0-4]|[1-9])|E[1-3]|X[1-8])-[0-9a-f]{{{NAME_HASH_DIGITS}}}\.npz$"
)
ARRAY_NAMES = ("X", "y", "labels", "W0", "V0")
# Packages whose versions can change the numbers a check produces.
PACKAGES = ("ncflow", "numpy", "scipy", "torch", "hypothesis", "threadpoolctl")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# ``ncflow.flow.solve_flow`` runs every integration under
# ``threadpool_limits(limits=1, user_api="blas")``.
INTEGRATOR_BLAS_THREADS = 1


# RunSettings fields that records written before the field existed do not store.
# Such a record replays with the field's default.
SETTINGS_ADDED_LATER = ("norm2_max",)

# The fix that the errors of read_record give for a file that is not a record.
RECORD_FIX = (
    "pass a .npz record that ncflow verify or the pytest gate wrote (in their "
    "counterexamples/ directory), or a directory of them"
)


class RecordError(InvalidArgument):
    """A counterexample record that is missing, unreadable, unsupported or modified."""


@dataclass(frozen=True)
class Record:
    """A counterexample record as read back from its file.

    Attributes
    ----------
    claim : str
        Claim id, such as ``"C7"``.
    example : Example
        Rebuilt from the record's arrays and settings.
    settings : RunSettings
    verdict : dict
        The recorded verdict, as ``Verdict.to_dict()`` wrote it (NaN and infinite
        floats as the strings ``"nan"``, ``"inf"``, ``"-inf"``).
    environment : dict
        Package versions, Python, platform and thread settings of the writer.
    reproduction : dict or None
        Hypothesis reproduction data (``blob``, ``hypothesis_version``,
        ``decorator``), when the writer had it. Replaying does not use it.
    hash : str
        SHA-256 content hash, 64 hex digits, verified on reading.
    created : str
        UTC time of writing, ISO 8601.
    path : Path or None
        The file it was read from.
    """

    claim: str
    example: Example
    settings: RunSettings
    verdict: dict
    environment: dict
    reproduction: dict | None
    hash: str
    created: str = ""
    path: Path | None = None

    def recorded_verdict(self) -> Verdict:
        """Rebuild the recorded verdict as a :class:`Verdict`, for ``describe()``."""
        return verdict_from_dict(self.verdict)


# -- writing ---------------------------------------------------------------------


def write_record(
    directory: str | os.PathLike[str],
    claim: str,
    example: Example,
    settings: RunSettings,
    verdict: Verdict,
    *,
    reproduction: str | Mapping[str, Any] | None = None,
) -> Path:
    """Write one counterexample record into ``directory`` and return its path.

    The file is ``<claim>-<hash prefix>.npz`` (module docstring). It is written to a
    temporary file in ``directory``, synced, and then hard-linked to its name, which
    fails instead of replacing a file that is already there. If a record of that name
    exists, it is the same counterexample (the name comes from the content), so it is
    left as it is and its path returned. Several processes may write the same or
    different records at once.

    Parameters
    ----------
    directory : str or path-like
        Where to write; created if missing.
    claim : str
        Claim id, ``"C1"`` .. ``"C14"``, ``"E1"`` .. ``"E3"`` or ``"X1"`` .. ``"X8"``.
    example : Example
    settings : RunSettings
        The settings the verdict was computed with.
    verdict : Verdict
        Its ``claim`` must equal ``claim``.
    reproduction : str or mapping, optional
        Hypothesis's ``@reproduce_failure`` blob as a string, or a mapping with the
        key ``"blob"`` and optionally ``"hypothesis_version"`` (default: the
        installed version) and further string entries such as the test id.

    Returns
    -------
    Path
        The record's path (an existing file of the same name included).

    Raises
    ------
    InvalidArgument
        If an argument has the wrong type or value.
    OSError
        If ``directory`` cannot be created or written.
    """
    _check_claim(claim)
    _check_type("example", example, Example)
    _check_type("settings", settings, RunSettings)
    _check_type("verdict", verdict, Verdict)
    if verdict.claim != claim:
        raise InvalidArgument(
            f"verdict.claim={verdict.claim!r} is invalid: it must equal claim="
            f"{claim!r}; pass the verdict of that claim"
        )

    arrays = example_arrays(example)
    meta = {
        "format": FORMAT,
        "claim": claim,
        "example": _example_meta(example),
        "arrays": {
            name: {"shape": list(array.shape), "dtype": array.dtype.name}
            for name, array in arrays.items()
        },
        "settings": asdict(settings),
        "verdict": verdict.to_dict(),
        "environment": environment(),
        "reproduction": _reproduction_meta(reproduction),
    }
    meta = to_jsonable(meta)
    # The name comes from what makes the counterexample (claim, arrays, example
    # and run settings), not from the verdict or the environment, so the same
    # counterexample found again, on another machine or after an upgrade, is
    # the same file.
    identity_fields = ("format", "claim", "example", "settings")
    identity = content_hash(arrays, {key: meta[key] for key in identity_fields})
    meta["identity"] = identity
    digest = content_hash(arrays, meta)
    meta["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"
    )
    meta["hash"] = digest

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{claim}-{identity[:NAME_HASH_DIGITS]}{SUFFIX}"
    if path.exists():
        return path
    return _write_new(path, arrays, meta)


def example_arrays(example: Example) -> dict[str, np.ndarray]:
    """Collect the arrays of ``example`` as a record stores them (module docstring)."""
    dataset = example.dataset
    names = np.array(dataset.class_names, dtype=np.str_)
    return {
        "X": np.ascontiguousarray(dataset.X, dtype=np.float64),
        "y": np.ascontiguousarray(names[dataset.labels]),
        "labels": np.ascontiguousarray(dataset.labels, dtype=np.int64),
        "W0": np.ascontiguousarray(example.shapes.W, dtype=np.float64),
        "V0": np.ascontiguousarray(example.shapes.V, dtype=np.float64),
    }


def content_hash(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of ``arrays`` and ``meta`` (module docstring).

    ``meta`` may contain ``created`` and ``hash``, which are left out.
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        for part in (name, array.dtype.str, repr(array.shape)):
            digest.update(part.encode("utf-8") + b"\0")
        digest.update(array.tobytes())

    hashed = {
        key: value for key, value in meta.items() if key not in ("created", "hash")
    }
    digest.update(b"meta\0")
    digest.update(canonical_json(hashed).encode("ascii"))
    return digest.hexdigest()


def canonical_json(data: Any) -> str:
    """Serialise ``data`` as JSON with sorted keys and no spaces, for the hash."""
    return json.dumps(
        to_jsonable(data),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )


def environment() -> dict[str, Any]:
    """Collect the package versions, Python, platform and thread settings here."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "packages": versions,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
        "threads": {
            **{name: os.environ.get(name) for name in THREAD_VARIABLES},
            "integrator_blas_threads": INTEGRATOR_BLAS_THREADS,
        },
    }


def _example_meta(example: Example) -> dict[str, Any]:
    groups = example.groups
    if groups is not None:
        groups = [int(group) for group in groups]
    return {
        "eps": float(example.eps),
        "loss": example.loss,
        "activation": example.activation,
        "groups": groups,
        "balanced": bool(example.balanced),
        "faults": [str(fault) for fault in example.faults],
        "label": example.label,
        "dataset": {
            "name": example.dataset.name,
            "class_names": list(example.dataset.class_names),
        },
        "fingerprint": example.fingerprint(),
    }


def _reproduction_meta(reproduction: str | Mapping[str, Any] | None) -> dict | None:
    if reproduction is None:
        return None
    if isinstance(reproduction, str):
        reproduction = {"blob": reproduction}
    if not isinstance(reproduction, Mapping) or not isinstance(
        reproduction.get("blob"), str
    ):
        raise InvalidArgument(
            f"reproduction={reproduction!r} is invalid: it must be the blob string of "
            "@reproduce_failure, or a mapping with a string entry 'blob'"
        )

    data = {str(key): str(value) for key, value in reproduction.items()}
    if "hypothesis_version" not in data:
        try:
            data["hypothesis_version"] = importlib.metadata.version("hypothesis")
        except importlib.metadata.PackageNotFoundError:
            data["hypothesis_version"] = "unknown"
    version, blob = data["hypothesis_version"], data["blob"]
    data.setdefault("decorator", f"@reproduce_failure({version!r}, {blob.encode()!r})")
    return data


def _write_new(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write the record to a temporary file, then link it to ``path`` unless taken."""
    handle = tempfile.NamedTemporaryFile(
        "wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    temporary = Path(handle.name)
    try:
        with handle:
            text = json.dumps(meta, indent=1, sort_keys=True)
            np.savez_compressed(handle, meta=np.array(text), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        set_default_mode(temporary)
        _link_unless_exists(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)

    sync_directory(path.parent)
    return path


def _link_unless_exists(source: Path, target: Path) -> None:
    """Give ``source`` the name ``target`` atomically, keeping an existing target."""
    try:
        os.link(source, target)
    except FileExistsError:
        return
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # NOTE: a file system without hard links falls back to os.replace, which is
        # atomic but may replace a record written in the same instant by another
        # process. Both have the same content hash, so only ``created`` differs.
        if not target.exists():
            os.replace(source, target)


# -- reading ---------------------------------------------------------------------


def read_record(path: str | os.PathLike[str]) -> Record:
    """Read a counterexample record and verify its content hash.

    Parameters
    ----------
    path : str or path-like
        A file that :func:`write_record` wrote.

    Returns
    -------
    Record

    Raises
    ------
    RecordError
        If the file does not exist, is not a counterexample record, has a format
        version other than :data:`FORMAT`, was modified after writing (its
        content does not match its hash), or contains an example, settings or
        verdict that this version rejects, such as an unknown outcome or a
        missing setting. The message names the file.
    """
    path = Path(path)
    arrays, meta = _load(path)
    version = meta.get("format")
    if version != FORMAT:
        raise RecordError(
            f"{path}: unsupported record format {version!r}; this version of ncflow "
            f"reads {FORMAT!r} records only"
        )

    stored = meta.get("hash")
    actual = content_hash(arrays, meta)
    if stored != actual:
        raise RecordError(
            f"{path}: the record was modified after it was written: its content hash "
            f"is {actual[:NAME_HASH_DIGITS]}..., but the stored hash is "
            f"{str(stored)[:NAME_HASH_DIGITS]}...; restore the original file"
        )

    try:
        return _build_record(path, arrays, meta)
    except RecordError:
        raise
    except (InvalidArgument, KeyError, TypeError, ValueError) as error:
        detail = f"missing field {error}" if isinstance(error, KeyError) else error
        raise RecordError(
            f"{path}: not a valid counterexample record: {detail}; restore the file "
            "that ncflow wrote, or write the record again with "
            "theory_checks.records.write_record"
        ) from None


def _load(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Return the arrays and the parsed ``meta`` of a record file."""
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "not found"
        raise RecordError(
            f"{path}: counterexample record {reason}; check the path, or {RECORD_FIX}"
        )
    try:
        contents = read_npz(path)
    except ArchiveError as error:
        if str(error).startswith(DAMAGED_ARCHIVE):
            raise RecordError(
                f"{path}: {error}; copy the record again from where it was "
                "written, or write it again with theory_checks.records.write_record"
            ) from None
        raise _not_a_record(path, str(error)) from None

    meta_array = contents.pop("meta", None)
    if meta_array is None:
        raise _not_a_record(path, "no 'meta' entry")
    if meta_array.ndim != 0 or meta_array.dtype.kind != "U":
        raise _not_a_record(path, "'meta' is not a JSON string")
    try:
        meta = json.loads(meta_array.item())
    except json.JSONDecodeError as error:
        raise _not_a_record(path, f"'meta' is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or "format" not in meta:
        raise _not_a_record(path, "'meta' has no 'format' field")
    return contents, meta


def _not_a_record(path: Path, detail: str) -> RecordError:
    return RecordError(
        f"{path}: not an ncflow counterexample record ({detail}); {RECORD_FIX}"
    )


def _build_record(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> Record:
    missing = [name for name in ARRAY_NAMES if name not in arrays]
    if missing:
        raise InvalidArgument(f"the arrays {missing} are missing")
    for name, array in arrays.items():
        stated = meta["arrays"][name]
        if stated != {"shape": list(array.shape), "dtype": array.dtype.name}:
            raise InvalidArgument(
                f"the array {name} has shape {list(array.shape)} and dtype "
                f"{array.dtype.name}, but the metadata states {stated}"
            )
    claim = meta["claim"]
    _check_claim(claim)
    _check_verdict(meta["verdict"], claim)
    identity = meta.get("identity")
    own_name = f"{claim}-{str(identity)[:NAME_HASH_DIGITS]}{SUFFIX}"
    if identity is not None and NAME_PATTERN.match(path.name) and path.name != own_name:
        # A name in the form of a record's must be this record's: a renamed
        # copy would be cited as another counterexample.
        raise RecordError(
            f"{path}: the name {path.name!r} is that of another record: this one "
            f"is {own_name}; rename it to that"
        )

    return Record(
        claim=claim,
        example=_build_example(arrays, meta["example"]),
        settings=_build_settings(meta["settings"]),
        verdict=meta["verdict"],
        environment=meta["environment"],
        reproduction=meta["reproduction"],
        hash=meta["hash"],
        created=str(meta.get("created", "")),
        path=path,
    )


def _build_example(arrays: dict[str, np.ndarray], data: dict) -> Example:
    dataset_meta = data["dataset"]
    class_names = tuple(dataset_meta["class_names"])
    dataset = Dataset(
        X=arrays["X"],
        labels=arrays["labels"],
        class_names=class_names,
        name=dataset_meta["name"],
    )
    expected_y = np.array(class_names, dtype=np.str_)[dataset.labels]
    if not np.array_equal(arrays["y"], expected_y):
        raise InvalidArgument("the arrays y and labels name different classes")

    return Example(
        dataset=dataset,
        shapes=Parameters(arrays["W0"], arrays["V0"]),
        eps=data["eps"],
        loss=data["loss"],
        activation=data["activation"],
        groups=data["groups"],
        balanced=data["balanced"],
        faults=data["faults"],
        label=data["label"],
    )


def _check_verdict(data: Any, claim: str) -> None:
    """Check that the recorded verdict is of ``claim`` and rebuilds into a Verdict,
    so that a replay can print it beside the new one."""
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"verdict={data!r} is invalid: it must be a JSON object, as "
            "Verdict.to_dict() writes it"
        )
    outcomes = [outcome.value for outcome in Outcome]
    if data.get("outcome") not in outcomes:
        raise InvalidArgument(
            f"verdict.outcome={data.get('outcome')!r} is invalid: it must be one of "
            f"{', '.join(outcomes)}"
        )
    if data.get("claim") != claim:
        raise InvalidArgument(
            f"verdict.claim={data.get('claim')!r} is invalid: it must equal the "
            f"record's claim {claim!r}"
        )
    try:
        verdict_from_dict(data)
    except KeyError as error:
        raise InvalidArgument(
            f"the verdict cannot be rebuilt: the entry {error} is missing or has an "
            "invalid value"
        ) from None
    except (AttributeError, TypeError, ValueError) as error:
        raise InvalidArgument(f"the verdict cannot be rebuilt: {error}") from None


def _build_settings(data: dict) -> RunSettings:
    known = {field.name for field in fields(RunSettings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidArgument(
            f"settings {unknown} are unknown to this version of RunSettings, so the "
            "run cannot be repeated as recorded"
        )
    missing = sorted(known - set(data) - set(SETTINGS_ADDED_LATER))
    if missing:
        raise InvalidArgument(
            f"settings.{missing[0]} is missing, so the run cannot be repeated as "
            f"recorded (missing: {', '.join(missing)}); a record stores every field "
            "of RunSettings"
        )
    return RunSettings(**data)


# -- replaying -------------------------------------------------------------------


def replay(path_or_record: str | os.PathLike[str] | Record) -> tuple[Verdict, dict]:
    """Check the recorded claim again on the recorded example and settings.

    Only the record's arrays and settings are used (never the Hypothesis blob).
    Within one process, :func:`theory_checks.runs.train` may return a cached run of
    the same example and settings instead of integrating again.

    Returns
    -------
    verdict : Verdict
        The new verdict.
    recorded : dict
        The recorded verdict, as ``Verdict.to_dict()`` wrote it.

    Raises
    ------
    RecordError
        If the record cannot be read (see :func:`read_record`), or if this version
        of the checks rejects its claim or example.
    """
    from theory_checks import check

    if isinstance(path_or_record, Record):
        record = path_or_record
    else:
        record = read_record(path_or_record)

    try:
        verdict = check(record.claim, record.example, record.settings)
    except (ValueError, ModuleNotFoundError) as error:
        where = record.path if record.path is not None else "record"
        raise RecordError(
            f"{where}: claim {record.claim} cannot be checked on the recorded "
            f"example by this version of the checks: {error}"
        ) from None
    return verdict, record.verdict


def verdict_from_dict(data: Mapping[str, Any]) -> Verdict:
    """Rebuild a :class:`Verdict` from ``Verdict.to_dict()`` output read from JSON."""
    tolerance = None
    if data.get("tolerance") is not None:
        terms = tuple(
            ToleranceTerm(term["name"], _number(term["value"]), term["derivation"])
            for term in data["tolerance"]["terms"]
        )
        tolerance = Tolerance(terms)
    hypotheses = [
        HypothesisReport(
            report["name"],
            bool(report["holds"]),
            dict(report.get("measured", {})),
            report.get("message", ""),
        )
        for report in data.get("hypotheses", [])
    ]
    return Verdict(
        claim=data["claim"],
        outcome=Outcome(data["outcome"]),
        reason=data["reason"],
        measured=_number(data.get("measured")),
        predicted=_number(data.get("predicted")),
        tolerance=tolerance,
        margin=_number(data.get("margin")),
        worst=data.get("worst", ""),
        integrator=dict(data.get("integrator", {})),
        eps_sequence=[_number(eps) for eps in data.get("eps_sequence", [])],
        hypotheses=hypotheses,
        details=dict(data.get("details", {})),
    )


def _number(value: Any) -> float | None:
    """Convert a JSON number, or ``"nan"``, ``"inf"`` or ``"-inf"``, to a float."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[value]
    return float(value)


def _check_claim(claim: Any) -> None:
    if not isinstance(claim, str) or not CLAIM_PATTERN.match(claim):
        raise InvalidArgument(
            f"claim={claim!r} is invalid: it must be a claim id C1..C14, E1..E3 or "
            "X1..X8"
        )


def _check_type(name: str, value: Any, expected: type) -> None:
    if not isinstance(value, expected):
        raise InvalidArgument(
            f"{name}={value!r} is invalid: it must be a {expected.__name__}, not "
            f"{type(value).__name__}"
        )


__all__ = [
    "FORMAT",
    "Record",
    "RecordError",
    "canonical_json",
    "content_hash",
    "environment",
    "example_arrays",
    "read_record",
    "replay",
    "verdict_from_dict",
    "write_record",
]
