"""Cooperative stops: how a signal or a time budget reaches into a long loop inside a training step.

The trainer (:func:`gonprof.train.run_training`) makes one :class:`StopToken` per run, arms it with the
time budget's deadline, lets its signal handler :meth:`~StopToken.request` a stop, and makes it the
*active* token while the run's steps and grids run (:func:`watching`).  A long loop inside a step (GON's
inner loop, DCD's Langevin steps, the chunks of a sampler) calls :func:`check` once per iteration: with no
active token that is one context-variable read; with one, a float compare against ``time.perf_counter()``
(no device sync).  When the token asks to stop, :func:`check` raises :class:`Stopped`, which the trainer
turns into the same outcome as a stop between steps.

A mode calls :func:`check` only where its step has not yet changed its models, optimizers or own state
(the sampling that comes first in a step, and sampling for grids and scores), so that a stopped step
leaves the state of the last whole step; the trainer puts back the random-number state it had before
the step.  Loops that update the models (``d_steps``, ``g_steps``) are not polled: a stop waits for them.

This module does not import torch.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

#: The reason of a stop the time budget asked for (a signal's stop carries the signal's name).
BUDGET = "time budget"


class Stopped(BaseException):
    """Raised by :func:`check` when the active token asks to stop.  ``reason`` is :data:`BUDGET` or the
    signal's name (``"SIGINT"``, ``"SIGTERM"``).  A ``BaseException``, like ``KeyboardInterrupt``, so that
    code catching ``Exception`` (a sample grid that may fail, say) lets it through."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    @property
    def by_budget(self) -> bool:
        return self.reason == BUDGET


class StopToken:
    """Whether a run should stop: a signal asked (:meth:`request`) or its deadline (``time.perf_counter()``
    seconds, :meth:`arm`) passed."""

    def __init__(self, deadline: float | None = None):
        self.deadline = deadline
        self.reason: str | None = None

    def arm(self, deadline: float | None) -> None:
        """Stop from ``deadline`` (a ``time.perf_counter()`` value) on; None: no deadline."""
        self.deadline = deadline

    def request(self, reason: str) -> None:
        """Ask for a stop (a signal handler's call; the first reason given stays)."""
        if self.reason is None:
            self.reason = reason

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def why(self) -> str | None:
        """The reason to stop now (a signal's name, or :data:`BUDGET`), or None to go on."""
        if self.reason is not None:
            return self.reason
        return BUDGET if self.expired() else None

    def check(self) -> None:
        """Raise :class:`Stopped` when this token asks to stop."""
        why = self.why()
        if why is not None:
            raise Stopped(why)


_ACTIVE: contextvars.ContextVar[StopToken | None] = contextvars.ContextVar("gonprof_stop_token", default=None)


def check() -> None:
    """Raise :class:`Stopped` when the active token (:func:`watching`) asks to stop; without one, nothing."""
    token = _ACTIVE.get()
    if token is not None:
        token.check()


def active() -> StopToken | None:
    """The token :func:`check` consults here (None outside :func:`watching`)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def watching(token: StopToken | None) -> Iterator[StopToken | None]:
    """Make ``token`` the one :func:`check` consults inside the block (in this thread and context)."""
    reset = _ACTIVE.set(token)
    try:
        yield token
    finally:
        _ACTIVE.reset(reset)
