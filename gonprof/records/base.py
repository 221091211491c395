"""The base of every record: constants, JSON conversion, one JSON base class with its schema check,
atomic writes and the failure classes.  No torch here."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union

SCHEMA_VERSION = 1

#: Allowed values of ``ProfileRecord.status``: ``ok``; ``oom``, ``nan``, ``error`` and ``interrupted`` (how a
#: run failed or stopped); ``incomplete``: a report taken before the figures it asks for were measured (the
#: embedded Profiler's ``report()`` before its measuring step ended; the message and a warning say which).
STATUSES = ("ok", "oom", "nan", "error", "interrupted", "incomplete")

#: Spread threshold above which timing is flagged noisy: (p90 - p10) / median.
DEFAULT_NOISY_THRESHOLD = 0.2


#: The phase name of work a step did outside every ``with prof.phase(...)`` block.
OUTSIDE_PHASES = "(outside phases)"


# --------------------------------------------------------------------------
# generic (de)serialisation of the dataclasses below
# --------------------------------------------------------------------------


def to_jsonable(obj: Any, finite: bool = False) -> Any:
    """``obj`` as JSON types: dataclasses and dicts as dicts (keys as text), lists and tuples as lists,
    one-element tensors and numpy scalars as numbers, paths / devices / dtypes as text, anything
    else as its ``repr``; an object with a ``to_dict()`` method is what that returns.
    ``finite=True`` writes NaN and infinities as None (strict JSON)."""
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict) and not isinstance(obj, type):
        return to_jsonable(to_dict(), finite)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name), finite) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, finite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, finite) for v in obj]
    if isinstance(obj, float):
        return None if finite and not math.isfinite(obj) else obj
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    item = getattr(obj, "item", None)  # one-element tensors, numpy scalars
    size = getattr(obj, "size", None)
    if callable(item) and (getattr(obj, "ndim", 0) == 0 or (callable(getattr(obj, "numel", None)) and obj.numel() == 1)
                           or size == 1):
        return to_jsonable(item(), finite)
    if type(obj).__name__ in ("PosixPath", "WindowsPath", "device", "dtype"):
        return str(obj)
    return repr(obj)




def _from_plain(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _from_plain(members[0], value)
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_from_dict(tp, value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v) for v in value)
        return tuple(_from_plain(a, v) for a, v in zip(args, value))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return [_from_plain(arg, v) for v in value]
    if origin is dict:
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {k: _from_plain(vt, v) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _from_plain(hints[f.name], data[f.name])
    return cls(**kwargs)


def _json_kind(value: Any) -> str:
    """What a parsed JSON value is, in words (for messages)."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


_S = TypeVar("_S", bound="_Serialisable")


class _Serialisable:
    """The base of the record dataclasses: ``to_dict`` / ``from_dict`` by their fields."""

    if TYPE_CHECKING:  # every subclass is a dataclass; this tells the type checker so
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[_S], data: dict[str, Any]) -> _S:
        result: _S = _dataclass_from_dict(cls, data)
        return result



_R = TypeVar("_R", bound="JsonRecord")


class JsonRecord(_Serialisable):
    """The base of every record the tool writes: ``to_json`` / ``from_json`` (refusing what is not such a
    record, and a schema newer than this version understands) / ``replace``."""

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=True)

    @classmethod
    def from_json(cls: type[_R], text: str | bytes) -> _R:
        """The record ``text`` holds, as written by :meth:`to_json`.  Anything else is a one-line
        :class:`RecordError` (a ValueError): text that is not JSON, JSON that is not an object, an object
        without the record's ``schema_version`` or with keys the record does not have, a newer schema, or
        values the record cannot take."""
        name = cls.__name__
        if not isinstance(text, (str, bytes, bytearray)):
            raise RecordError(f"{name}.from_json: expected the JSON text of a record, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"not a {name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except (UnicodeDecodeError, RecursionError) as exc:
            raise RecordError(f"not a {name}: not valid JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise RecordError(f"not a {name}: the JSON is {_json_kind(data)}, not an object")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            raise RecordError(f"not a {name}: keys it does not have ({shown})")
        if "schema_version" in fields:
            version = data.get("schema_version")
            if isinstance(version, bool) or not isinstance(version, int):
                raise RecordError(f"not a {name}: no integer schema_version (got {version!r})")
            if version > SCHEMA_VERSION:
                raise RecordError(f"record schema_version {version} is newer than this gonprof understands "
                                  f"({SCHEMA_VERSION})")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RecordError(f"malformed {name}: {first}") from None

    def replace(self: _R, **changes: Any) -> _R:
        return dataclasses.replace(self, **changes)



class RequestError(ValueError):
    """A request that cannot be made as asked (a device that is not here, a bad option value); one line."""


class TooBigError(Exception):
    """A step that, by its estimate, needs more memory than the process or device has; one line."""


class RecordError(ValueError):
    """A results file is missing, unreadable or not gonprof's; the message is one line."""


def atomic_write(path: Any, data: str | bytes | Any) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half of one.

    ``data`` is text, bytes, or a callable ``data(tmp_path)`` that writes the
    file itself (``lambda p: torch.save(obj, p)``).  It goes to a temporary
    file beside ``path`` (named after this process, so two processes never
    share one) that replaces ``path`` in one rename.
    """
    import os
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        elif isinstance(data, str):
            tmp.write_text(data)
        else:
            data(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def looks_oom(text: str) -> bool:
    """Whether an error message says memory ran out (torch, the C allocator, the kernel)."""
    text = text.lower()
    return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def classify_failure(exc: BaseException) -> tuple[str, str]:
    """(status, one-line message) of an exception that ended a run: ``interrupted``, ``oom`` or ``error``.

    ``oom`` is a MemoryError, torch's OutOfMemoryError (by name: this module does
    not import torch) or any error whose message says memory ran out.
    """
    first = (str(exc).strip().splitlines() or [""])[0]
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", message
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, MemoryError) or "OutOfMemoryError" in names or looks_oom(first):
        return "oom", message
    return "error", message


# --------------------------------------------------------------------------
# the numeric rules a request's settings share (the CLI at its door, the api in its checks)
# --------------------------------------------------------------------------

#: --threads: at most this many torch threads per core (more only adds hand-offs; 100,000 cannot be started).
THREADS_PER_CORE = 4
#: --seed: the seeds torch.manual_seed takes (a signed 64-bit integer, non-negative).
MAX_SEED = 2**63 - 1


def _int_text(n: int) -> str:
    """An integer for a message: a huge one by its size, never thousands of digits."""
    if abs(n) >= 10**16:
        digits = int(abs(n).bit_length() * 0.30103) + 1  # str() refuses past 4,300 digits
        return f"{'-' if n < 0 else ''}<an integer of about {digits} digits>"
    return str(n)


def threads_problem(threads: int | None) -> str:
    """Why --threads cannot be used ("" when it can): an integer from 1 to 4 per core of this machine."""
    import os

    if threads is None:
        return ""
    cores = os.cpu_count() or 1
    limit = THREADS_PER_CORE * cores
    if not isinstance(threads, bool) and isinstance(threads, int) and 1 <= threads <= limit:
        return ""
    shown = _int_text(threads) if isinstance(threads, int) and not isinstance(threads, bool) else repr(threads)
    return (f"--threads {shown}: expected an integer from 1 to {limit:,} "
            f"({THREADS_PER_CORE} per core; this machine has {cores})")


def seed_problem(seed: int | None) -> str:
    """Why --seed cannot be used ("" when it can): an integer from 0 to 2**63-1."""
    if seed is None or (not isinstance(seed, bool) and isinstance(seed, int) and 0 <= seed <= MAX_SEED):
        return ""
    shown = _int_text(seed) if isinstance(seed, int) and not isinstance(seed, bool) else repr(seed)
    return f"--seed {shown}: expected an integer from 0 to 2**63-1 ({MAX_SEED:,})"
