"""What DistributedDataParallel all-reduces: a counting communication hook.

:class:`AllreduceCounter` registers, on each DDP-wrapped model it is given, a communication hook that
adds up the bytes of every gradient bucket (``bucket.buffer()``) and then does exactly what DDP does
without a hook: divide the bucket by the world size and all-reduce it
(``torch.distributed.algorithms.ddp_comm_hooks.default_hooks.allreduce_hook``).  So the training is
unchanged and the count is exact: each backward pass through a wrapped model of P float32 parameters
that all get gradients all-reduces 4 * P bytes.

Counts are kept by model name and by phase (``with counter.phase("d_step"):``); ``counter.step()`` closes
one step, and :meth:`AllreduceCounter.figures` turns the steps counted into a
:class:`~gonprof.records.CommFigures`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from gonprof.records import OUTSIDE_PHASES
from gonprof.records.distributed import CommFigures, median_int


class _Tally:
    __slots__ = ("bytes", "calls", "by_model", "by_phase")

    def __init__(self) -> None:
        self.bytes = 0
        self.calls = 0
        self.by_model: dict[str, int] = {}
        self.by_phase: dict[str, int] = {}


class AllreduceCounter:
    """Counts the bytes DDP all-reduces, per model, per phase and per step.

    ``attach(ddp_model, name)`` registers the counting hook (once per model, before its first backward
    pass, as DDP requires of any communication hook).  The hook runs inside backward, on whichever thread
    the autograd engine runs it; the phase it is counted under is the one open when backward began.
    """

    def __init__(self) -> None:
        self._phase: str | None = None
        self._current = _Tally()
        self.steps: list[_Tally] = []  # closed steps, in order
        self.models: list[str] = []

    # -- wiring ------------------------------------------------------------------
    def attach(self, ddp_model: Any, name: str, process_group: Any = None) -> Any:
        """Register the counting hook on ``ddp_model`` (a DistributedDataParallel) as model ``name``."""
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        counter = self

        # unannotated: DDP checks a hook's annotations against its own types (and these would be strings)
        def hook(state, bucket):  # type: ignore[no-untyped-def]
            buf = bucket.buffer()
            counter._count(name, int(buf.numel()) * int(buf.element_size()))
            return allreduce_hook(state, bucket)

        ddp_model.register_comm_hook(process_group, hook)
        self.models.append(name)
        return ddp_model

    def _count(self, model: str, nbytes: int) -> None:
        t = self._current
        t.bytes += nbytes
        t.calls += 1
        t.by_model[model] = t.by_model.get(model, 0) + nbytes
        phase = self._phase or OUTSIDE_PHASES
        t.by_phase[phase] = t.by_phase.get(phase, 0) + nbytes

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count what is all-reduced inside the block under phase ``name``."""
        outer, self._phase = self._phase, name
        try:
            yield
        finally:
            self._phase = outer

    def step(self) -> None:
        """Close the step in progress (call it beside ``prof.step()``)."""
        self.steps.append(self._current)
        self._current = _Tally()

    def discard(self) -> None:
        """Forget what was counted so far (steps closed and the one in progress)."""
        self.steps.clear()
        self._current = _Tally()

    # -- figures -------------------------------------------------------------------
    def figures(self, step: int | None = None) -> CommFigures:
        """The steps counted as CommFigures: ``step`` (an index into the closed steps) gives the per-step
        figures of that step; None gives their median over the closed steps (model and phase split of the
        step whose total is that median)."""
        steps = list(self.steps)
        each = tuple(t.bytes for t in steps)
        if not steps:
            return CommFigures(allreduce_bytes_each_step=each)
        if step is None:
            mid = median_int(each)
            chosen = next(t for t in steps if t.bytes == mid)
        else:
            chosen = steps[step]
        models = {m: chosen.by_model.get(m, 0) for m in self.models}
        return CommFigures(allreduce_bytes_per_step=chosen.bytes, allreduce_calls_per_step=chosen.calls,
                           allreduce_bytes_by_model=models, allreduce_bytes_by_phase=dict(chosen.by_phase),
                           allreduce_bytes_each_step=each)


def count_allreduce(*models: Any, names: list[str] | None = None) -> AllreduceCounter:
    """An :class:`AllreduceCounter` attached to each DDP-wrapped model (names: ``model``, ``model1``, ...
    unless given).  Call ``counter.step()`` after each step, beside ``prof.step()``."""
    counter = AllreduceCounter()
    if names is None:
        names = ["model"] if len(models) == 1 else [f"model{i}" for i in range(len(models))]
    if len(names) != len(models):
        raise ValueError(f"{len(models)} models but {len(names)} names")
    for m, n in zip(models, names):
        counter.attach(m, n)
    return counter
