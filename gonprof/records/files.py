"""Results files: several records of one kind in one JSON file, written atomically, read back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .base import SCHEMA_VERSION, JsonRecord, RecordError, atomic_write
from .budget import FitRecord, MemoryEstimate, ScalingRecord
from .compare import RunRecord
from .distributed import DistributedProfileRecord
from .levers import LeverRecord
from .profile import ProfileRecord

#: Record types a results file may hold, by the ``kind`` written beside them.
RECORD_KINDS: dict[str, type[JsonRecord]] = {"profile": ProfileRecord, "compare": RunRecord, "estimate": MemoryEstimate,
                                  "fit": FitRecord, "scaling": ScalingRecord, "distributed": DistributedProfileRecord,
                                  "levers": LeverRecord}


#: The command line this process carries out, when the CLI started it (:func:`set_command`).
_command: list[str] | None = None


def set_command(argv: Sequence[str] | None) -> None:
    """Name the command line this process carries out (``gonprof.cli.main`` passes its argv); every results
    file written after it records it as ``"command"``.  None forgets it."""
    global _command
    _command = list(argv) if argv is not None else None


def provenance() -> dict[str, Any]:
    """The keys a results file carries about how it came to be: ``"command"`` (the CLI's argv, when the CLI
    wrote it; absent from files written through the API) and ``"written_utc"`` (when, to the second)."""
    import time

    facts: dict[str, Any] = {"written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if _command is not None:
        facts["command"] = list(_command)
    return facts


def save_records(records: list[Any], path: Any, extra: dict[str, Any] | None = None) -> None:
    """Write records to a JSON file, atomically (a crash never leaves half a file).

    The file is ``{"gonprof": version, "kind": ..., "schema_version": ...,
    "records": [...]}`` with :func:`provenance` (the command and the time) and ``extra`` beside them;
    :func:`load_records` reads it back, :func:`load_extra` the keys beside the records.
    """
    from pathlib import Path

    from .._version import __version__

    kinds = {_kind_of(r) for r in records}
    if len(kinds) > 1:
        raise ValueError(f"cannot save records of different kinds together: {sorted(kinds)}")
    payload = {"gonprof": __version__, "kind": kinds.pop() if kinds else "profile",
               "schema_version": SCHEMA_VERSION, "records": [r.to_dict() for r in records], **provenance(),
               **(extra or {})}
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(payload, indent=2, allow_nan=True))


def load_extra(path: Any) -> dict[str, Any]:
    """The keys a results file holds beside its records (the command and time it was written, a compare preset's
    name and claims); {} when none
    (or when the file cannot be read: :func:`load_records` says why)."""
    try:
        data = _read_json(path)
    except RecordError:
        return {}
    if not isinstance(data, dict) or "records" not in data:
        return {}
    return {k: v for k, v in data.items() if k not in ("gonprof", "kind", "schema_version", "records")}


def _read_json(path: Any) -> Any:
    """The JSON a file holds; a missing, unreadable or invalid file is a one-line RecordError."""
    from pathlib import Path

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_records(path: Any) -> list[Any]:
    """Read a file written by :func:`save_records` (or one bare profile or distributed record)."""
    from pathlib import Path

    path = Path(path)
    data = _read_json(path)
    if isinstance(data, dict) and "records" in data:
        kind, items = data.get("kind", "profile"), data["records"]
    elif isinstance(data, dict) and "steps_done" in data and "path" in data:
        raise RecordError(f"{path}: the result of a training run (gonprof train); gonprof report renders "
                          f"profile, compare, score, estimate, fit, scaling and distributed files")
    elif isinstance(data, dict) and "schema_version" in data:
        kind, items = _bare_kind(path, data), [data]
    else:
        raise RecordError(f"{path}: not a gonprof results file")
    cls = RECORD_KINDS.get(kind)
    if cls is None:
        raise RecordError(f"{path}: unknown record kind {kind!r}")
    try:
        return [cls.from_json(json.dumps(item)) for item in items]
    except (TypeError, ValueError, KeyError) as exc:
        raise RecordError(f"{path}: malformed {kind} record ({exc})") from None


def _bare_kind(path: Any, data: dict[str, Any]) -> str:
    """The kind of one bare record (a record's own ``to_json``, not a results file): a distributed record
    (it has ``ranks`` and ``world_size``) or a profile record; any other keys are an error, never a profile
    with its figures dropped."""
    import dataclasses

    if "ranks" in data and "world_size" in data:
        return "distributed"
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(ProfileRecord)})
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise RecordError(f"{path}: a bare record that is not a profile or distributed record (keys {shown}); "
                          f"write results with gonprof.records.save_records")
    return "profile"


def _kind_of(record: Any) -> str:
    for kind, cls in RECORD_KINDS.items():
        if isinstance(record, cls):
            return kind
    raise TypeError(f"not a gonprof record: {type(record).__name__}")
