"""Tensor-level live bytes during a step, from a dispatch mode (no allocator, no data pointers).

:class:`LiveBytesTracker` counts *storage* bytes (``untyped_storage().nbytes()``),
the logical size of what tensors hold, so the figure is deterministic and the
same on any device (a CUDA caching allocator's rounding and a CPU allocator's
pages are the business of the RSS and CUDA figures).

What is live:

- at the start: every storage of the known persistent state, i.e. the models'
  parameters and buffers, the ``.grad`` tensors present and every tensor in
  the optimizers' ``state``;
- during the step: every storage an op allocates (an op output whose storage is
  not one of the op's inputs' storages and not already tracked), from the op
  until the storage is freed (a ``weakref`` on the storage object fires when
  its last reference goes; PyTorch keeps one Python storage object per storage,
  so this is exact, and works for meta and fake tensors too).

The peak's split is taken at the moment of the peak: a storage counts as a
parameter / buffer / gradient / optimizer-state storage if it is one at the
end of the step or was one at the start; everything else is activations and
temporaries.  Tensors made before the step that the tracker does not know
(e.g. a data batch) are not counted; tensors the step makes are.

It does not touch autograd, so ``autograd.grad`` w.r.t. leaf inputs and
double backward are tracked like anything else (``torch``'s own
``MemTracker`` fails on those in torch 2.14).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_iter

from gonprof.measure.instrument import Instrument
from gonprof.measure.params import optimizer_state_tensors
from gonprof.records import OUTSIDE_PHASES, LiveMemory

if TYPE_CHECKING:
    from torch._ops import OpOverload

PARAM, BUFFER, GRAD, OPTIM, ACT = "param", "buffer", "grad", "optim", "act"


def _storage(t: torch.Tensor) -> Any | None:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None


class _Entry:
    __slots__ = ("serial", "nbytes", "category", "ref")

    def __init__(self, serial: int, nbytes: int, category: str, ref: Any) -> None:
        self.serial = serial
        self.nbytes = nbytes
        self.category = category
        self.ref = ref


def known_state(
    models: Mapping[str, torch.nn.Module], optimizers: Mapping[str, Any]
) -> list[tuple[torch.Tensor, str]]:
    """(tensor, category) for the persistent state of ``models`` and ``optimizers``."""
    out: list[tuple[torch.Tensor, str]] = []
    params: list[torch.Tensor] = []
    p: torch.Tensor
    for m in models.values():
        for p in m.parameters():
            out.append((p, PARAM))
            params.append(p)
        for b in m.buffers():
            out.append((b, BUFFER))
    for opt in optimizers.values():
        for group in getattr(opt, "param_groups", []):
            for p in group.get("params", []):
                if isinstance(p, torch.Tensor):
                    out.append((p, PARAM))
                    params.append(p)
    for p in params:
        if p.grad is not None:
            out.append((p.grad, GRAD))
    for opt in optimizers.values():
        for t in optimizer_state_tensors(opt):
            out.append((t, OPTIM))
    return out


class _TrackingMode(TorchDispatchMode):
    def __init__(self, tracker: LiveBytesTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_dispatch__(self, func: OpOverload, types: Collection[type], args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.tracker._on_op(args, kwargs, out)
        return out


class LiveBytesTracker(Instrument):

    """``with LiveBytesTracker(models, optimizers) as mt: <step>``; then :meth:`figures`.

    ``models`` / ``optimizers``: mappings name -> object (either may be empty).
    ``with mt.phase("name"):`` records the peak inside each phase.
    ``round_bytes``: maps a storage's size to the bytes it is counted as
    (default: exact; e.g. an allocator's block rounding for estimates).
    """

    record_field = "live_memory"

    def __init__(
        self,
        models: Mapping[str, torch.nn.Module] | None = None,
        optimizers: Mapping[str, Any] | None = None,
        round_bytes: Callable[[int], int] | None = None,
    ) -> None:
        super().__init__()
        self.round_bytes = round_bytes
        self.models = dict(models or {})
        self.optimizers = dict(optimizers or {})
        self._entries: dict[int, _Entry] = {}  # id(storage) -> entry (live only)
        self._lock = threading.RLock()
        self._serial = 0
        self.live_bytes = 0
        self.peak_bytes = 0
        self.start_bytes = 0
        self.allocated_bytes = 0
        self._peak_dirty = False
        self._peak_snapshot: list[tuple[_Entry, int]] = []
        self.peak_by_phase: dict[str | None, int] = {}
        self._active = False
        self._result: LiveMemory | None = None

    # -- bookkeeping -----------------------------------------------------------
    def _track(self, st: Any, category: str) -> bool:
        key = id(st)
        e = self._entries.get(key)
        nbytes = int(st.nbytes())
        if self.round_bytes is not None:
            nbytes = self.round_bytes(nbytes)
        if e is not None:
            if e.nbytes != nbytes:  # resized in place
                self._change(nbytes - e.nbytes)
                e.nbytes = nbytes
            return False
        self._serial += 1
        ref = weakref.ref(st, self._make_callback(key))
        e = _Entry(self._serial, nbytes, category, ref)
        self._entries[key] = e
        self._change(nbytes)
        return True

    def _make_callback(self, key: int) -> Any:
        self_ref = weakref.ref(self)

        def cb(_ref: Any) -> None:
            tracker = self_ref()
            if tracker is None or not tracker._active:
                return
            with tracker._lock:
                e = tracker._entries.get(key)
                if e is None or e.ref is not _ref:
                    return
                tracker._change(-e.nbytes)  # snapshots a pending peak first
                del tracker._entries[key]

        return cb

    def _change(self, delta: int) -> None:
        if delta < 0 and self._peak_dirty:
            self._snapshot()
        self.live_bytes += delta
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes
            self._peak_dirty = True
        if self.phases_used or self._phase is not None:
            ph = self._phase
            if self.live_bytes > self.peak_by_phase.get(ph, -1):
                self.peak_by_phase[ph] = self.live_bytes

    def _snapshot(self) -> None:
        self._peak_snapshot = [(e, e.nbytes) for e in self._entries.values()]
        self._peak_dirty = False

    def _on_op(self, args: Any, kwargs: Any, out: Any) -> None:
        outs = [t for t in tree_iter(out) if isinstance(t, torch.Tensor)]
        if not outs:
            return
        with self._lock:
            inputs: set[int] | None = None
            for t in outs:
                st = _storage(t)
                if st is None:
                    continue
                key = id(st)
                e = self._entries.get(key)
                if e is not None:
                    if e.nbytes != st.nbytes():
                        self._track(st, e.category)
                    continue
                if inputs is None:
                    inputs = set()
                    for a in tree_iter((args, kwargs)):
                        if isinstance(a, torch.Tensor):
                            s = _storage(a)
                            if s is not None:
                                inputs.add(id(s))
                if key in inputs:  # a view / in-place result on an untracked tensor
                    continue
                nbytes = int(st.nbytes())
                self.allocated_bytes += nbytes
                self._track(st, ACT)

    # -- phases ------------------------------------------------------------------
    def _phase_started(self, name: str) -> None:
        with self._lock:  # a phase's peak is at least what was live when it began
            if self.live_bytes > self.peak_by_phase.get(name, -1):
                self.peak_by_phase[name] = self.live_bytes

    # -- context -----------------------------------------------------------------
    def __enter__(self) -> LiveBytesTracker:
        self._active = True
        with self._lock:
            for t, cat in known_state(self.models, self.optimizers):
                st = _storage(t)
                if st is not None:
                    self._track(st, cat)
            self.start_bytes = self.live_bytes
            self.peak_bytes = self.live_bytes
            self._snapshot()
        self._watch(_TrackingMode(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._unwatch(*exc)
        finally:
            with self._lock:
                if self._peak_dirty:
                    self._snapshot()
                self._result = self._build()
                self._active = False
                self._entries.clear()
                self._peak_snapshot = []

    # -- results -------------------------------------------------------------------
    def _build(self) -> LiveMemory:
        end_cat: dict[int, str] = {}
        for t, cat in known_state(self.models, self.optimizers):
            st = _storage(t)
            if st is not None:
                end_cat.setdefault(id(st), cat)
        split = {PARAM: 0, BUFFER: 0, GRAD: 0, OPTIM: 0, ACT: 0}
        for e, nbytes in self._peak_snapshot:
            cat = e.category
            st = e.ref()
            if st is not None and id(st) in end_cat:
                cat = end_cat[id(st)]
            split[cat] += nbytes
        by_phase: dict[str, int] = {}
        if self.phases_used:
            for k, v in self.peak_by_phase.items():
                by_phase[OUTSIDE_PHASES if k is None else k] = v
        return LiveMemory(
            peak_live_bytes=self.peak_bytes,
            peak_live_param_bytes=split[PARAM],
            peak_live_buffer_bytes=split[BUFFER],
            peak_live_grad_bytes=split[GRAD],
            peak_live_optimizer_state_bytes=split[OPTIM],
            peak_live_activation_bytes=split[ACT],
            start_live_bytes=self.start_bytes,
            end_live_bytes=self.live_bytes,
            allocated_bytes=self.allocated_bytes,
            peak_live_bytes_by_phase=by_phase,
        )

    def figures(self) -> LiveMemory:
        if self._result is None:
            raise RuntimeError("figures() is available after the tracked block ends")
        return self._result


def track_live_bytes(
    fn: Any,
    *args: Any,
    models: Mapping[str, torch.nn.Module] | None = None,
    optimizers: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> LiveMemory:
    """Run ``fn(*args, **kwargs)`` once under a :class:`LiveBytesTracker`; return its figures."""
    with LiveBytesTracker(models, optimizers) as mt:
        fn(*args, **kwargs)
    return mt.figures()
