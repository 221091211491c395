"""Tensor-level live bytes during a step, from a dispatch mode (no allocator, no data pointers).

:class:`LiveBytesTracker` counts *storage* bytes (``untyped_storage().nbytes()``),
the logical size of what tensors hold, so the figure is deterministic and the
same on any device (a CUDA caching allocator's rounding and a CPU allocator's
pages are the business of the RSS and CUDA figures).

What is live, and in which category (:data:`~gonprof.records.LIVE_CATEGORIES`):

- at the start, the known persistent state: the models' parameters
  (``param``) and buffers (``buffer``), the ``.grad`` tensors present
  (``grad``), every tensor in the optimizers' ``state`` (``optim``) and the
  extra state the caller names (``state={"replay": [...]}``: ``replay``);
- every storage an op allocates (an op output whose storage is not yet
  tracked): ``act`` (activations and temporaries);
- every storage an op *reads* that the tracker did not allocate and that is
  not known state (the input batch however it was made, ``torch.from_numpy``
  arrays, a loader worker's shared memory): ``external``, from that op on;

each until it is freed (a ``weakref`` on the storage object fires when its
last reference goes; PyTorch keeps one Python storage object per storage,
so this is exact, and works for meta and fake tensors too).

A storage's category is decided when it is first tracked and changes only
when it becomes persistent state: a gradient when the autograd engine
accumulates it into a parameter's ``.grad`` (``register_post_accumulate_grad_hook``
on every known parameter) or when an optimizer step begins with it as a
``.grad`` (a gradient assigned by hand), optimizer state when the optimizer's
step that made it returns (``register_step_post_hook``).  The split of the
peak is a snapshot of what was live at the peak, by the categories it had
then, so a step with several optimizer updates counts the gradients of the
update in progress as gradients.

Each storage also keeps where it was made: the innermost module of the given
models whose forward was running (global module hooks) or, during backward,
the module whose forward created the autograd node being run (a node-creation
hook tags every node; nodes created in a backward inherit the tag of the node
being run, so ``autograd.grad`` w.r.t. inputs and double backward are
attributed), with the direction (``forward`` / ``backward`` / ``outside``)
and the phase.  Known state is attributed to the module that owns the
parameter or buffer (``outside``, phase ``""``: made before the step).

A timeline records the live bytes by category after every op (and after a
category change), with the time from the step's start.

It does not touch the autograd engine, so ``autograd.grad`` w.r.t. leaf
inputs and double backward are tracked like anything else (``torch``'s own
``MemTracker`` fails on those in torch 2.14).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gonprof.measure.flops import _NODE_KEY, ModuleScope
from gonprof.measure.instrument import Instrument
from gonprof.measure.params import optimizer_state_tensors
from gonprof.records import (
    LIVE_CATEGORIES,
    OUTSIDE_PHASES,
    LiveMemory,
    MemoryTimeline,
    ModuleMemory,
    PhaseSpan,
)

if TYPE_CHECKING:
    from torch._ops import OpOverload

PARAM, BUFFER, GRAD, OPTIM, REPLAY, ACT, EXTERNAL = LIVE_CATEGORIES
_I = {c: i for i, c in enumerate(LIVE_CATEGORIES)}
I_PARAM, I_BUFFER, I_GRAD, I_OPTIM, I_REPLAY, I_ACT, I_EXTERNAL = range(len(LIVE_CATEGORIES))
FORWARD, BACKWARD, OUTSIDE = "forward", "backward", "outside"
#: The phase of storages made before the step (the known state).
BEFORE_STEP = ""
#: Categories a caller may name in ``state=``: persistent state the models and optimizers do not hold.
STATE_CATEGORIES = (PARAM, BUFFER, GRAD, OPTIM, REPLAY)
#: The timeline's default size bound (points).
MAX_POINTS = 2000

_LIFT = (torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default)
#: ``Tensor.set_(storage)``: how a loader worker's batch in shared memory is rebuilt in this process.
_SET = torch.ops.aten.set_


def _storage(t: torch.Tensor) -> Any | None:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def _tensors(args: Any, kwargs: Any) -> Iterator[torch.Tensor]:
    """The tensors among an op's arguments (aten ops nest at most one level: lists of tensors)."""
    for group in (args, kwargs.values() if kwargs else ()):
        for a in group:
            if isinstance(a, torch.Tensor):
                yield a
            elif isinstance(a, (list, tuple)):
                for b in a:
                    if isinstance(b, torch.Tensor):
                        yield b


def _outputs(out: Any) -> Iterator[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (list, tuple)):
        for o in out:
            if isinstance(o, torch.Tensor):
                yield o
            elif isinstance(o, (list, tuple)):
                yield from (b for b in o if isinstance(b, torch.Tensor))


class _Entry:
    __slots__ = ("nbytes", "cat", "ref", "origin", "born", "cover")

    def __init__(self, nbytes: int, cat: int, ref: Any, origin: tuple[str, str, str], born: int) -> None:
        self.nbytes = nbytes
        self.cat = cat
        self.ref = ref
        self.origin = origin  # (module, direction, phase)
        self.born = born  # the first timeline point that holds it
        self.cover: list[tuple[int, int]] | None = None  # external storage read in part: byte ranges read


def _span(t: torch.Tensor) -> tuple[int, int]:
    """The byte range of its storage that a tensor spans (from its offset to its last element)."""
    size = int(t.element_size())
    lo = int(t.storage_offset()) * size
    if t.numel() == 0:
        return lo, lo
    last = sum((int(n) - 1) * int(st) for n, st in zip(t.shape, t.stride()))
    return lo, lo + (last + 1) * size


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


StateArg = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None


def _state_items(state: StateArg) -> list[tuple[torch.Tensor, str]]:
    """(tensor, category) of the extra state: a mapping category -> tensors, or a callable returning one; a
    ValueError for a category that is not persistent state."""
    if state is None:
        return []
    mapping = state() if callable(state) else state
    out: list[tuple[torch.Tensor, str]] = []
    for cat, tensors in (mapping or {}).items():
        if cat not in STATE_CATEGORIES:
            raise ValueError(f"LiveBytesTracker(state=...): category {cat!r} is not persistent state; expected one "
                             f"of {', '.join(STATE_CATEGORIES)}")
        items = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors or [])
        out.extend((t, cat) for t in items if isinstance(t, torch.Tensor))
    return out


def _owners(models: Mapping[str, torch.nn.Module]) -> dict[int, str]:
    """id(parameter or buffer) -> the qualified name of the module that owns it (``"D.main.0"``)."""
    owner: dict[int, str] = {}
    for mname, model in models.items():
        for sub, mod in model.named_modules():
            name = f"{mname}.{sub}" if sub else mname
            for t in (*mod.parameters(recurse=False), *mod.buffers(recurse=False)):
                owner.setdefault(id(t), name)
    return owner


def _params(models: Mapping[str, torch.nn.Module], optimizers: Mapping[str, Any]) -> list[torch.Tensor]:
    """The known parameters, each once: the models' and those in the optimizers' param groups."""
    seen: set[int] = set()
    out: list[torch.Tensor] = []
    groups = [g.get("params", []) for opt in optimizers.values() for g in getattr(opt, "param_groups", [])]
    for p in [*(p for m in models.values() for p in m.parameters()), *(p for g in groups for p in g)]:
        if isinstance(p, torch.Tensor) and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def known_state(
    models: Mapping[str, torch.nn.Module], optimizers: Mapping[str, Any], state: StateArg = None
) -> list[tuple[torch.Tensor, str]]:
    """(tensor, category) for the persistent state of ``models`` and ``optimizers`` (and ``state``)."""
    params = _params(models, optimizers)
    out: list[tuple[torch.Tensor, str]] = [(p, PARAM) for p in params]
    out.extend((b, BUFFER) for m in models.values() for b in m.buffers())
    out.extend((p.grad, GRAD) for p in params if p.grad is not None)
    out.extend((t, OPTIM) for opt in optimizers.values() for t in optimizer_state_tensors(opt))
    out.extend(_state_items(state))
    return out


class _TrackingMode(TorchDispatchMode):
    def __init__(self, tracker: LiveBytesTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_dispatch__(self, func: OpOverload, types: Collection[type], args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        try:
            out = func(*args, **kwargs)
        except BaseException:
            self.tracker._failed(func)
            raise
        self.tracker._on_op(func, args, kwargs, out)
        return out


class LiveBytesTracker(Instrument):

    """``with LiveBytesTracker(models, optimizers) as mt: <step>``; then :meth:`figures`.

    ``models`` / ``optimizers``: mappings name -> object (either may be empty).
    ``state``: extra persistent state by category, e.g. ``{"replay": [buffer]}``
    (or a callable returning such a mapping, read on entry).
    ``with mt.phase("name"):`` records the peak inside each phase.
    ``round_bytes``: maps a storage's size to the bytes it is counted as
    (default: exact; e.g. an allocator's block rounding for estimates).
    ``timeline``: record live bytes by category after every op, kept to at most
    ``max_points`` points (the peak's point always kept); ``clock``: seconds
    (default ``time.perf_counter``).
    """

    record_field = "live_memory"

    def __init__(
        self,
        models: Mapping[str, torch.nn.Module] | None = None,
        optimizers: Mapping[str, Any] | None = None,
        round_bytes: Callable[[int], int] | None = None,
        state: StateArg = None,
        timeline: bool = True,
        max_points: int = MAX_POINTS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        self.round_bytes = round_bytes
        self.models = dict(models or {})
        self.optimizers = dict(optimizers or {})
        self.state = state
        self.max_points = max(3, int(max_points))
        self.clock = clock or time.perf_counter
        self._timeline_on = bool(timeline)
        self._entries: dict[int, _Entry] = {}  # id(storage) -> entry (live only)
        self._lock = threading.RLock()
        self.live_bytes = 0
        self.cat_bytes = [0] * len(LIVE_CATEGORIES)
        self.peak_bytes = 0
        self.start_bytes = 0
        self.allocated_bytes = 0
        self.ops = 0
        self._peak_dirty = False
        self._peak_snapshot: dict[_Entry, tuple[int, int]] = {}  # entry -> (bytes, category) at the peak
        self._opt_born = -1  # the first timeline point of the optimizer step running (-1: none)
        self._peak_phase: str | None = None
        self.peak_by_phase: dict[str | None, int] = {}
        self._active = False
        self._result: LiveMemory | None = None
        self._origins: dict[tuple[str, str, str], tuple[str, str, str]] = {}
        self._owner: dict[int, str] = {}
        self._scope = ModuleScope(self.models)
        self._hooks: list[Any] = []
        self._node_hook: Any = None
        self._t0 = 0.0
        self._tl_t: list[float] = []
        self._tl_op: list[int] = []
        self._tl_b: list[list[int]] = []
        self._spans: list[PhaseSpan] = []
        self._open_spans: list[tuple[str, int]] = []
        self.failure: dict[str, Any] | None = None  # where an op raised (out of memory), see _failed

    # -- where a storage is made ---------------------------------------------------
    def _origin(self, module: str, direction: str, phase: str) -> tuple[str, str, str]:
        key = (module, direction, phase)
        return self._origins.setdefault(key, key)

    def _here(self) -> tuple[str, str, str]:
        """(module, direction, phase) of the code running now."""
        phase = self._phase if self._phase is not None else (OUTSIDE_PHASES if self.phases_used else "")
        module = self._scope.current
        node = torch._C._current_autograd_node()
        if node is not None:
            if module is None:
                module = node.metadata.get(_NODE_KEY)  # type: ignore[attr-defined]  # a dict property
            return self._origin(module or "", BACKWARD, phase)
        return self._origin(module or "", FORWARD if module is not None else OUTSIDE, phase)

    def _on_node(self, node: Any) -> None:
        tag = self._scope.current
        if tag is None:
            cur = torch._C._current_autograd_node()
            if cur is not None:
                tag = cur.metadata.get(_NODE_KEY)  # type: ignore[attr-defined]  # a dict property
        if tag is not None:
            node.metadata[_NODE_KEY] = tag

    # -- bookkeeping -----------------------------------------------------------
    def _track(self, st: Any, cat: int, origin: tuple[str, str, str], nbytes: int | None = None) -> _Entry:
        key = id(st)
        nbytes = int(st.nbytes()) if nbytes is None else nbytes
        if self.round_bytes is not None:
            nbytes = self.round_bytes(nbytes)
        ref = weakref.ref(st, self._make_callback(key))
        e = _Entry(nbytes, cat, ref, origin, len(self._tl_b))
        self._entries[key] = e
        self._change(nbytes, cat)
        return e

    def _resized(self, e: _Entry, st: Any) -> None:
        nbytes = int(st.nbytes())
        if self.round_bytes is not None:
            nbytes = self.round_bytes(nbytes)
        if nbytes != e.nbytes:
            delta, e.nbytes = nbytes - e.nbytes, nbytes
            self._change(delta, e.cat)

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
                tracker._change(-e.nbytes, e.cat)  # snapshots a pending peak first
                del tracker._entries[key]

        return cb

    def _change(self, delta: int, cat: int) -> None:
        if delta < 0 and self._peak_dirty:
            self._snapshot()
        self.live_bytes += delta
        self.cat_bytes[cat] += delta
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes
            self._peak_dirty = True
            self._peak_phase = self._phase
        if self.phases_used or self._phase is not None:
            ph = self._phase
            if self.live_bytes > self.peak_by_phase.get(ph, -1):
                self.peak_by_phase[ph] = self.live_bytes

    def _recategorise(self, e: _Entry, cat: int, since_made: bool) -> None:
        """``e`` becomes ``cat``.  ``since_made``: it was ``cat`` from the op that made it (a gradient the
        engine stores as ``.grad`` without a copy, optimizer state made by the step that keeps it), so the
        peak snapshot and the timeline points since are corrected; otherwise from now on (a pending peak is
        snapshotted first, with the old category)."""
        if e.cat == cat:
            return
        old, n = e.cat, e.nbytes
        if since_made:
            if e in self._peak_snapshot:
                self._peak_snapshot[e] = (self._peak_snapshot[e][0], cat)
            for row in self._tl_b[e.born:]:
                row[old] -= n
                row[cat] += n
        elif self._peak_dirty:
            self._snapshot()
        self.cat_bytes[old] -= n
        self.cat_bytes[cat] += n
        e.cat = cat
        if not since_made:
            self._point()

    def _snapshot(self) -> None:
        self._peak_snapshot = {e: (e.nbytes, e.cat) for e in self._entries.values()}
        self._peak_dirty = False

    def _point(self) -> None:
        if self._timeline_on:
            self._tl_op.append(self.ops)
            self._tl_t.append(self.clock() - self._t0)
            self._tl_b.append(list(self.cat_bytes))

    def _on_op(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        with self._lock:
            self.ops += 1
            shares = getattr(func, "is_view", False) or getattr(func, "_overloadpacket", None) is _SET
            if shares and func not in _LIFT:
                # reads nothing, makes nothing: its output shares a storage made elsewhere (set_ points a tensor
                # at one: a loader worker's batch rebuilt here, external once an op reads it); lift_fresh
                # (torch.tensor(data), torch.from_numpy) is an alias too, but says where its storage came from
                self._point()
                return
            entries = self._entries
            here = None
            for a in _tensors(args, kwargs):
                st = _storage(a)
                if st is None:
                    continue
                e = entries.get(id(st))
                if e is not None:
                    if e.cover is not None:
                        self._read_more(e, a, st)
                    continue
                here = here or self._here()
                if func in _LIFT and st.resizable():  # torch.tensor(data) in the step: made by the step
                    self.allocated_bytes += int(st.nbytes())
                    self._track(st, I_ACT, here)
                else:  # read for the first time: the batch, from_numpy, shared memory
                    self._external(a, st, here[2])
            for t in _outputs(out):
                st = _storage(t)
                if st is None:
                    continue
                e = entries.get(id(st))
                if e is not None:  # a view, an in-place result, or resized in place
                    if e.cover is None and (self.round_bytes is not None or e.nbytes != st.nbytes()):
                        self._resized(e, st)
                    continue
                here = here or self._here()
                self.allocated_bytes += int(st.nbytes())
                self._track(st, I_ACT, here)
            self._point()

    def _external(self, a: torch.Tensor, st: Any, phase: str) -> None:
        """Track a storage the step reads and did not make: all of it where ``a`` spans it, else the byte
        range ``a`` spans (a row of an in-memory dataset is not the dataset), grown as more of it is read."""
        origin = self._origin("", OUTSIDE, phase)
        lo, hi = _span(a)
        if lo <= 0 and hi >= st.nbytes():
            self._track(st, I_EXTERNAL, origin)
            return
        e = self._track(st, I_EXTERNAL, origin, nbytes=hi - lo)
        e.cover = [(lo, hi)]

    def _read_more(self, e: _Entry, a: torch.Tensor, st: Any) -> None:
        lo, hi = _span(a)
        cover = e.cover
        assert cover is not None
        if any(c_lo <= lo and hi <= c_hi for c_lo, c_hi in cover):
            return
        e.cover = _merge([*cover, (lo, hi)])
        total = sum(c_hi - c_lo for c_lo, c_hi in e.cover)
        if self.round_bytes is not None:
            total = self.round_bytes(total)
        if total >= st.nbytes():
            e.cover = None
        if total != e.nbytes:
            delta, e.nbytes = total - e.nbytes, total
            self._change(delta, e.cat)

    def _failed(self, func: Any) -> None:
        """An op raised (e.g. out of memory): note where (the last failure before the step ends is its cause;
        a failure the step caught is overwritten by the next)."""
        if not self._active:
            return
        with self._lock:
            module, direction, phase = self._here()
            self.failure = {"op": str(getattr(func, "_overloadpacket", func)), "module": module,
                            "direction": direction, "phase": phase, "live_bytes": self.live_bytes,
                            "top": top_modules([(e.origin[0], e.nbytes) for e in self._entries.values()], 1)}

    # -- hooks: categories that change --------------------------------------------------
    def _on_grad(self, p: torch.Tensor) -> None:
        g = p.grad
        st = _storage(g) if g is not None else None
        if st is None or not self._active:
            return
        with self._lock:
            e = self._entries.get(id(st))
            if e is None:
                self._track(st, I_GRAD, self._origin(self._owner.get(id(p), ""), BACKWARD, self._here()[2]))
                self._point()
            elif e.cat != I_GRAD:  # stored without a copy: the gradient the backward op made
                self._recategorise(e, I_GRAD, since_made=e.cat == I_ACT and e.origin[1] == BACKWARD)

    def _on_step_pre(self, opt: Any, *_: Any) -> None:
        self._opt_born = len(self._tl_b)
        for group in getattr(opt, "param_groups", []):
            for p in group.get("params", []):
                if isinstance(p, torch.Tensor) and p.grad is not None:
                    self._on_grad(p)

    def _on_step_post(self, opt: Any, *_: Any) -> None:
        if not self._active:
            return
        with self._lock:
            for t in optimizer_state_tensors(opt):
                st = _storage(t)
                if st is None:
                    continue
                e = self._entries.get(id(st))
                if e is None:
                    self._track(st, I_OPTIM, self._origin("", OUTSIDE, self._here()[2]))
                    self._point()
                elif e.cat != I_OPTIM:  # made by this step for its state: optimizer state since made
                    self._recategorise(e, I_OPTIM, since_made=e.cat == I_ACT and 0 <= self._opt_born <= e.born)
            self._opt_born = -1

    def _add_hooks(self) -> None:
        for p in _params(self.models, self.optimizers):
            if p.requires_grad and p.is_leaf:
                self._hooks.append(p.register_post_accumulate_grad_hook(self._on_grad))
        for opt in self.optimizers.values():
            if hasattr(opt, "register_step_pre_hook"):
                self._hooks.append(opt.register_step_pre_hook(self._on_step_pre))
                self._hooks.append(opt.register_step_post_hook(self._on_step_post))

    # -- phases ------------------------------------------------------------------
    def _phase_started(self, name: str) -> None:
        with self._lock:  # a phase's peak is at least what was live when it began
            if self.live_bytes > self.peak_by_phase.get(name, -1):
                self.peak_by_phase[name] = self.live_bytes
            self._open_spans.append((name, self.ops + 1))

    def _phase_ended(self, name: str) -> None:
        with self._lock:
            for i in range(len(self._open_spans) - 1, -1, -1):
                if self._open_spans[i][0] == name:
                    _, first = self._open_spans.pop(i)
                    if self.ops >= first:
                        self._spans.append(PhaseSpan(name, first, self.ops))
                    break

    # -- context -----------------------------------------------------------------
    def __enter__(self) -> LiveBytesTracker:
        self._active = True
        self._owner = _owners(self.models)
        self._t0 = self.clock()
        with self._lock:
            params = {id(p): p for p in _params(self.models, self.optimizers)}
            grad_of = {id(p.grad): self._owner.get(i, "") for i, p in params.items() if p.grad is not None}
            for t, cat in known_state(self.models, self.optimizers, self.state):
                st = _storage(t)
                if st is None or id(st) in self._entries:
                    continue
                module = self._owner.get(id(t), "") if cat in (PARAM, BUFFER) else grad_of.get(id(t), "")
                self._track(st, _I[cat], self._origin(module, OUTSIDE, BEFORE_STEP))
            self.start_bytes = self.live_bytes
            self.peak_bytes = self.live_bytes
            self._snapshot()
            self._point()
        self._scope.__enter__()
        self._node_hook = torch.autograd.graph.node_creation_hook(self._on_node)
        self._node_hook.__enter__()
        self._add_hooks()
        self._watch(_TrackingMode(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._unwatch(*exc)
        finally:
            for h in self._hooks:
                h.remove()
            self._hooks = []
            if self._node_hook is not None:
                self._node_hook.__exit__(*exc)
                self._node_hook = None
            self._scope.__exit__(*exc)
            with self._lock:
                if self._peak_dirty:
                    self._snapshot()
                for name, _first in list(self._open_spans):  # phases a failure left open
                    self._phase_ended(name)
                self._result = self._build()
                self._active = False
                self._entries.clear()
                self._peak_snapshot = {}

    # -- results -------------------------------------------------------------------
    def _build(self) -> LiveMemory:
        split = [0] * len(LIVE_CATEGORIES)
        by_origin: dict[tuple[str, str, str, int], int] = {}
        for e, (nbytes, cat) in self._peak_snapshot.items():
            split[cat] += nbytes
            key = (*e.origin, cat)
            by_origin[key] = by_origin.get(key, 0) + nbytes
        modules = [ModuleMemory(module=m, direction=d, phase=ph, category=LIVE_CATEGORIES[c], bytes_at_peak=n)
                   for (m, d, ph, c), n in sorted(by_origin.items(), key=lambda kv: (-kv[1], kv[0]))]
        by_phase: dict[str, int] = {}
        if self.phases_used:
            for k, v in self.peak_by_phase.items():
                by_phase[OUTSIDE_PHASES if k is None else k] = v
        peak_phase = self._peak_phase if self._peak_phase is not None else (
            OUTSIDE_PHASES if self.phases_used else "")
        return LiveMemory(
            peak_live_bytes=self.peak_bytes,
            peak_live_param_bytes=split[I_PARAM],
            peak_live_buffer_bytes=split[I_BUFFER],
            peak_live_grad_bytes=split[I_GRAD],
            peak_live_optimizer_state_bytes=split[I_OPTIM],
            peak_live_activation_bytes=split[I_ACT],
            start_live_bytes=self.start_bytes,
            end_live_bytes=self.live_bytes,
            allocated_bytes=self.allocated_bytes,
            peak_live_bytes_by_phase=by_phase,
            peak_live_external_bytes=split[I_EXTERNAL],
            peak_live_replay_bytes=split[I_REPLAY],
            peak_modules=modules,
            timeline=self._timeline() if self._timeline_on else None,
            peak_phase=peak_phase,
        )

    def _timeline(self) -> MemoryTimeline:
        totals = [sum(b) for b in self._tl_b]
        keep = downsample(totals, self.max_points)
        peak = max(keep, key=lambda i: (totals[i], -i))
        return MemoryTimeline(
            op_index=[self._tl_op[i] for i in keep],
            time_s=[round(self._tl_t[i], 9) for i in keep],
            bytes_by_category={c: [self._tl_b[i][k] for i in keep] for k, c in enumerate(LIVE_CATEGORIES)},
            phases=list(self._spans),
            peak_point=keep.index(peak),
            ops_total=self.ops,
            max_points=self.max_points,
        )

    def figures(self) -> LiveMemory:
        if self._result is None:
            raise RuntimeError("figures() is available after the tracked block ends")
        return self._result


def downsample(totals: list[int], max_points: int) -> list[int]:
    """Indices of at most ``max_points`` of ``totals`` (at least 3) that keep its shape: the first, the last,
    the first maximum exactly, and in each of ``(max_points - 3) // 2`` equal runs of the rest its lowest and
    highest point, in order.  All indices when there are no more than ``max_points``."""
    n = len(totals)
    if n <= max_points:
        return list(range(n))
    peak = max(range(n), key=lambda i: (totals[i], -i))
    keep = {0, n - 1, peak}
    buckets = max(1, (max_points - 3) // 2)
    inner = n - 2
    for b in range(buckets):
        lo, hi = 1 + b * inner // buckets, 1 + (b + 1) * inner // buckets
        if lo >= hi:
            continue
        run = range(lo, hi)
        keep.add(min(run, key=lambda i: totals[i]))
        keep.add(max(run, key=lambda i: totals[i]))
    out = sorted(keep)
    return out if len(out) <= max_points else _trim(out, peak, max_points)


def _trim(keep: list[int], peak: int, max_points: int) -> list[int]:
    """``keep`` cut to ``max_points`` evenly, the first, last and peak kept."""
    rest = [i for i in keep if i not in (keep[0], keep[-1], peak)]
    step = len(rest) / (max_points - 3)
    chosen = {rest[int(j * step)] for j in range(max_points - 3)}
    return sorted(chosen | {keep[0], keep[-1], peak})


def top_modules(rows: list[tuple[str, int]], n: int = 5) -> list[tuple[str, int]]:
    """The ``n`` modules holding the most bytes, from (module, bytes) rows (storages made outside every
    module, module ``""``, left out), largest first."""
    total: dict[str, int] = {}
    for module, nbytes in rows:
        if module:
            total[module] = total.get(module, 0) + nbytes
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


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
