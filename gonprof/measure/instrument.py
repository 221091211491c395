"""The base of gonprof's instruments: what the Profiler drives on its measuring step.

An :class:`Instrument` is a context manager around one step (``with inst:``),
labels parts of it (``with inst.phase("sample"):``) and afterwards reports its
figures (:meth:`figures`), a typed record that goes into the
:class:`~gonprof.records.ProfileRecord` field named :attr:`record_field`.  The
FLOP counter and the live-bytes tracker are instruments; the Profiler holds a
list of them and treats them alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class Instrument:
    """Enter / exit around a step, phases inside it, figures after it."""

    record_field: str = ""  # the ProfileRecord field the figures fill

    def __init__(self) -> None:
        self._phase: str | None = None
        self.phases_used = False
        self._mode: Any = None  # the dispatch mode that watches the step's ops, while entered

    def _watch(self, mode: Any) -> None:
        """Start watching the step's ops through ``mode`` (a TorchDispatchMode)."""
        self._mode = mode
        mode.__enter__()

    def _unwatch(self, *exc: Any) -> None:
        """Stop watching (idempotent)."""
        mode, self._mode = self._mode, None
        if mode is not None:
            mode.__exit__(*exc)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute what runs inside the block to phase ``name`` (blocks nest; the innermost wins)."""
        prev = self._phase
        self._phase = name
        self.phases_used = True
        self._phase_started(name)
        try:
            yield
        finally:
            self._phase = prev
            self._phase_ended(name)

    def _phase_started(self, name: str) -> None:
        """Hook: a phase block begins (instruments note their per-phase starting point here)."""

    def _phase_ended(self, name: str) -> None:
        """Hook: a phase block ends (after the enclosing phase, if any, is current again)."""

    def __enter__(self) -> Instrument:
        raise NotImplementedError

    def __exit__(self, *exc: Any) -> None:
        raise NotImplementedError

    def figures(self) -> Any:
        raise NotImplementedError
