"""The allocator-level peak of a step, from the allocator's own figures: nothing here forces eager execution.

A ``TorchDispatchMode`` (the FLOP counter, the live-bytes tracker) makes
torch.compile run every frame eagerly, so the tensor-level figures describe the
eager maths.  :class:`AllocatorPeak` watches a step through the allocator
instead, which sees compiled code (inductor's buffers) as it runs:

- CPU: torch.profiler's memory events.  While a profiler with
  ``profile_memory`` runs, the c10 CPU allocator reports every allocation and
  free with its address, size and time.  It cannot report the free of a block
  allocated before its reporting began (it does not know the size), so the
  frees of the known persistent state (parameters, buffers, gradients,
  optimizer state, e.g. gradients dropped by ``zero_grad(set_to_none=True)``)
  are found through a weakref on each storage, whose callback leaves a marker
  in the same event stream (same clock).  Frees of other blocks made before
  the step (the batch, a tensor a previous step kept) are not counted, as the
  tensor-level tracker does not count them either, and neither is a free the
  allocator reports of a block allocated before the step (its size can be
  stale).  The peak is the running sum's maximum.
- CUDA: ``max_memory_allocated`` over the step (reset at its start) minus
  ``memory_allocated`` at its start.

Both are expressed on the basis of the tensor-level peak
(:attr:`LiveMemory.peak_live_bytes`): the known persistent state at the
start plus the most the allocator held beyond its start, so the two compare
directly once the tensor-level peak's external storages
(:attr:`LiveMemory.peak_live_external_bytes`: the batch, ``torch.from_numpy``
arrays, a loader worker's shared memory) are taken out of it: no allocator
served those during the step, so they are not in this peak.

The same event stream says whether compiled code ran: Dynamo wraps every
compiled frame it runs in a ``Torch-Compiled Region`` event and every call into
a torch.compile'd frame that has compiled code in a ``TorchDynamo Cache Lookup``
event (a frame entered under a dispatch mode has the latter and runs eagerly);
a compiled function entered for the first time adds to the code objects
Dynamo has seen.

The profiler start and stop cost tens of milliseconds and every op is
recorded, so this is for untimed steps only.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from gonprof.measure.instrument import Instrument
from gonprof.measure.memory import StateArg, known_state
from gonprof.records import COMPILED, EAGER, AllocatorMemory

METHOD_CPU = ("torch.profiler CPU memory events (c10 CPU allocator), running sum from the step's start; frees of "
              "the known persistent state from weakrefs on its storages")
METHOD_CUDA = "torch.cuda.max_memory_allocated over the step minus memory_allocated at its start"

COMPILED_REGION = "Torch-Compiled Region"
CACHE_LOOKUP = "TorchDynamo Cache Lookup"
_MARK = "gonprof.known_free#"

#: Lines the profiler's own start and stop write to stderr: the CPU allocator's (once per 1000 such frees)
#: when a block allocated before the profiler started is freed (accounted for here, or deliberately not
#: counted), and kineto's start / stop and device-count lines where its log level was set before gonprof's.
_PROFILER_NOISE = (b"Memory block of unknown size was allocated before the profiling started",
                   b"SyncActivityProfilerHandler.cpp", b"gpuGetDeviceCount failed")


def profiler_busy() -> bool:
    """Whether a torch profiler is already running in this thread (only one can)."""
    return bool(torch._C._autograd._profiler_enabled())


def dynamo_frames_seen() -> int:
    """How many code objects Dynamo's frame callback has seen in this process (0 when Dynamo was never loaded).
    A torch.compile'd function entered for the first time under a dispatch mode leaves no profiler event (it
    has no compiled code to look up yet), but its frames are seen."""
    convert = sys.modules.get("torch._dynamo.convert_frame")
    if convert is None:
        return 0
    try:
        return len(convert.input_codes.seen)
    except Exception:  # pragma: no cover - internal
        return 0


def dynamo_compile_count() -> int:
    """How many graphs torch.compile has compiled in this process so far (0 when Dynamo was never loaded)."""
    utils = sys.modules.get("torch._dynamo.utils")
    if utils is None:
        return 0
    try:
        return int(utils.counters["stats"]["unique_graphs"])
    except Exception:  # pragma: no cover - the counters are internal
        return 0


class _StderrFilter:
    """Keeps the profiler's own lines (:data:`_PROFILER_NOISE`) out of stderr: file descriptor 2 goes to a
    pipe while the profiler runs, and a thread copies every other line to the real stderr as it arrives, in
    order.  Nothing is held back: a line the step writes reaches stderr at once, even if the process dies
    during the step (a half line waits for its end, or for the filter's end).  The pipe's buffer is made
    1 MiB where the system allows, so that C++ code writing while it holds the GIL cannot fill it before
    the thread runs."""

    _PIPE_BYTES = 1 << 20

    def __enter__(self) -> _StderrFilter:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        read_fd = write_fd = out_fd = None
        try:
            read_fd, write_fd = os.pipe()
            try:
                import fcntl

                fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), self._PIPE_BYTES)
            except (ImportError, OSError):
                pass
            out_fd = os.dup(2)  # the thread's copy of the real stderr
            self._saved = os.dup(2)
            os.dup2(write_fd, 2)
        except (OSError, ValueError):
            for fd in (read_fd, write_fd, out_fd, self._saved):
                if fd is not None:
                    os.close(fd)
            self._saved = None
            return self
        os.close(write_fd)  # fd 2 is now the pipe's only writer here
        self._thread = threading.Thread(target=_copy_filtered, args=(read_fd, out_fd),
                                        name="gonprof-stderr-filter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError, OSError):
            pass
        os.dup2(self._saved, 2)  # closes this process's write end: the thread reads to the end
        os.close(self._saved)
        self._saved = None
        if self._thread is not None:
            # a process started during the step may still hold the write end: the thread then goes on
            # copying its lines until it exits
            self._thread.join(timeout=1.0)
            self._thread = None


def _copy_filtered(read_fd: int, out_fd: int) -> None:
    """Copy whole lines from ``read_fd`` to ``out_fd`` as they arrive, less the profiler's own; at the end
    of the pipe, whatever is left; then close both."""

    def write(data: bytes) -> None:
        while data:
            data = data[os.write(out_fd, data):]

    pending = b""
    try:
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not any(noise in line for noise in _PROFILER_NOISE))
            if kept:
                write(kept)
        if pending and not any(noise in pending for noise in _PROFILER_NOISE):
            write(pending)
    except OSError:
        pass
    finally:
        os.close(read_fd)
        os.close(out_fd)


class AllocatorPeak(Instrument):
    """``with AllocatorPeak(models, optimizers, device) as ap: <step>``; then :meth:`figures`.

    ``figures()`` is an :class:`~gonprof.records.AllocatorMemory`, or None when
    the peak could not be taken (:attr:`unavailable` says why: another torch
    profiler running, or a device with neither allocator events nor statistics).
    ``step``: the step's index, copied into the figures.
    ``state``: extra persistent state by category, as :class:`~gonprof.measure.memory.LiveBytesTracker` takes it.
    """

    record_field = "allocator_memory"

    def __init__(self, models: Mapping[str, torch.nn.Module] | None = None,
                 optimizers: Mapping[str, Any] | None = None, device: Any = "cpu",
                 step: int | None = None, state: StateArg = None) -> None:
        super().__init__()
        self.models = dict(models or {})
        self.optimizers = dict(optimizers or {})
        self.state = state
        self.device = torch.device(device)
        self.step = step
        self.unavailable = ""
        self.compiles_during = 0  # graphs torch.compile compiled during the step
        self._on = False
        self._known: dict[str, int] = {}
        self._refs: list[Any] = []
        self._start_bytes = 0
        self._filter: _StderrFilter | None = None
        self._compiles0 = self._frames0 = self._new_frames = 0
        self._cuda0 = 0
        self._result: AllocatorMemory | None = None

    # -- context ---------------------------------------------------------------
    def __enter__(self) -> AllocatorPeak:
        from torch._C._profiler import ProfilerActivity, ProfilerConfig, ProfilerState, _ExperimentalConfig

        self._result = None
        if self.device.type not in ("cpu", "cuda"):
            self.unavailable = f"no allocator figures on {self.device.type}"
            return self
        if profiler_busy():
            self.unavailable = "another torch profiler was running"
            return self
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # kineto's start / stop lines, read at its first use
        cpu = self.device.type == "cpu"
        self._watch_known_state(marks=cpu)
        config = ProfilerConfig(ProfilerState.KINETO, False, cpu, False, False, False, _ExperimentalConfig())
        activities = {ProfilerActivity.CPU}
        self._compiles0 = dynamo_compile_count()
        self._frames0 = dynamo_frames_seen()
        self._filter = _StderrFilter().__enter__()
        try:
            torch.autograd._prepare_profiler(config, activities)
            torch.autograd._enable_profiler(config, activities)
        except BaseException:
            self._leave_filter()
            self._refs = []
            raise
        self._on = True
        if not cpu:
            torch.cuda.synchronize(self.device)
            self._cuda0 = int(torch.cuda.memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def _watch_known_state(self, marks: bool) -> None:
        """Note the known state's storages; on the CPU their frees leave a marker in the event stream."""
        from torch._C._profiler import _RecordFunctionFast

        self._known, self._refs = {}, []
        seen: set[int] = set()
        total = 0
        for t, _cat in known_state(self.models, self.optimizers, self.state):
            try:
                st = t.untyped_storage()
            except (RuntimeError, NotImplementedError, TypeError):
                continue
            key = id(st)
            if key in seen:
                continue
            seen.add(key)
            nbytes = int(st.nbytes())
            total += nbytes
            if marks and nbytes:
                name = f"{_MARK}{key}"
                self._known[name] = nbytes

                def freed(_ref: Any, name: str = name) -> None:
                    with _RecordFunctionFast(name):
                        pass

                self._refs.append(weakref.ref(st, freed))
        self._start_bytes = total

    def _leave_filter(self) -> None:
        f, self._filter = self._filter, None
        if f is not None:
            f.__exit__(None, None, None)

    def __exit__(self, *exc: Any) -> None:
        if not self._on:
            return
        self._on = False
        cuda_peak = None
        try:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
                cuda_peak = int(torch.cuda.max_memory_allocated(self.device)) - self._cuda0
            result = torch.autograd._disable_profiler()
        finally:
            self._refs = []
            self._leave_filter()
        self.compiles_during = dynamo_compile_count() - self._compiles0
        self._new_frames = max(0, dynamo_frames_seen() - self._frames0)
        if exc and exc[0] is not None:
            return
        self._result = self._build(result, cuda_peak)

    # -- results -------------------------------------------------------------------
    def _build(self, result: Any, cuda_peak: int | None) -> AllocatorMemory:
        from torch._C._profiler import _EventType

        compiled_frames = dynamo_frames = 0
        events: list[tuple[int, int, int, int]] = []  # (time ns, order at equal times, ptr, bytes)
        stack = list(result.experimental_event_tree())
        while stack:
            ev = stack.pop()
            stack.extend(ev.children)
            kind, fields = ev.typed
            if kind == _EventType.Allocation:
                if cuda_peak is None and fields.device.type == "cpu":
                    size = int(fields.alloc_size)
                    events.append((ev.start_time_ns, 0 if size > 0 else 1, int(fields.ptr), size))
                continue
            name = ev.name
            if name.startswith(COMPILED_REGION):
                compiled_frames += 1
            elif name == CACHE_LOOKUP:
                dynamo_frames += 1
            elif name.startswith(_MARK) and cuda_peak is None:
                events.append((ev.start_time_ns, 1, -1, -self._known.get(name, 0)))
        if cuda_peak is not None:
            peak_delta, allocated, method = max(0, cuda_peak), 0, METHOD_CUDA
        else:
            peak_delta, allocated = _running_peak(events)
            method = METHOD_CPU
        return AllocatorMemory(
            peak_bytes=self._start_bytes + peak_delta,
            peak_delta_bytes=peak_delta,
            start_bytes=self._start_bytes,
            allocated_bytes=allocated,
            execution=COMPILED if compiled_frames else EAGER,
            step=self.step,
            compiled_frames=compiled_frames,
            dynamo_frames=dynamo_frames + self._new_frames,
            method=method,
        )

    def figures(self) -> AllocatorMemory | None:
        return self._result


def _running_peak(events: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """(peak of the running sum, bytes allocated) of (time, order, ptr, bytes) events: allocations (bytes > 0)
    and their frees by address, and known-state frees (ptr -1); frees of blocks allocated before are skipped.
    At equal times allocations come first (the larger peak), except that a free of a live block comes
    before an allocation at its address: the allocator reused the address, so the block was freed first
    (the events' recorded order is lost: they come from the profiler's event tree, not in time order)."""
    from itertools import groupby

    live: dict[int, int] = {}
    cur = peak = allocated = 0
    for _t, same_time in groupby(sorted(events), key=lambda e: e[0]):
        group = list(same_time)
        allocs = [e for e in group if e[3] > 0]
        frees = [e for e in group if e[3] <= 0]
        for ptr in dict.fromkeys(e[2] for e in allocs if e[2] in live):
            i = next((k for k, e in enumerate(frees) if e[2] == ptr), None)
            if i is not None:  # the old block at this address is freed before the new one is allocated
                frees.pop(i)
                cur -= live.pop(ptr)
        for _t2, _o, ptr, nbytes in allocs:
            live[ptr] = live.get(ptr, 0) + nbytes
            cur += nbytes
            allocated += nbytes
            if cur > peak:
                peak = cur
        for _t2, _o, ptr, nbytes in frees:
            if ptr == -1:
                cur += nbytes
            elif ptr in live:
                cur -= live.pop(ptr)
    return peak, allocated
