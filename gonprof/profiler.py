"""The step profiler: a context manager around anyone's own training loop.

.. code-block:: python

    with gonprof.Profiler(models={"D": D, "G": G}, optimizers={"D": opt_d, "G": opt_g},
                          warmup=2, active=10) as prof:
        for batch in prof.iterate(loader):   # prof.step() after each batch; stops when done
            with prof.phase("d_update"):
                ...
            with prof.phase("g_update"):
                ...
    record = prof.report()       # a gonprof.records.ProfileRecord

``prof.iterate(loader)`` fetches each batch outside the measured interval and calls ``prof.step()`` after
each; a loop over anything else calls ``prof.step()`` at the end of each step and stops at ``prof.done``.

Schedule (steps are the intervals between consecutive ``prof.step()`` calls,
the first starting at ``__enter__``):

- ``warmup`` untimed steps (at least one when ``measure`` is on).  The last of
  them is the **measuring step**: it runs under the FLOP counter and the
  tensor-level live-bytes tracker (both dispatch modes, 1.1-1.5x slower) and
  torch.profiler's memory events (the allocator-level peak, see
  :mod:`gonprof.measure.allocator`), and the persistent state (parameters,
  gradients, optimizer state) is read at its end.  With ``warmup=0`` and
  ``measure=True`` one extra untimed step is added to measure on.
- Where the step runs torch.compile'd code (a model is an ``OptimizedModule``,
  or the measuring step entered a compiled frame), the measuring step runs it
  eagerly (``torch.compiler.set_stance("force_eager")`` for compiled models;
  Dynamo skips any other compiled frame under a dispatch mode), so FLOPs and
  the tensor-level peak describe the eager maths.  One more untimed
  **allocator step** follows the measuring step, with only the allocator's
  events, so the step runs compiled: its peak is the record's step peak
  (``step_peak_bytes``, ``step_peak_execution="compiled"``).
  An allocator step during which torch.compile compiled a graph is measured
  again on the next step (at most twice).  ``record.execution`` says, per
  figure, which execution it describes.
- ``active`` **timed steps**: only the clock (CUDA synchronised), the RSS
  high-water mark (VmHWM reset, about 15 us per step) and, on CUDA,
  ``max_memory_allocated`` / ``max_memory_reserved`` reset per step.
- Further ``prof.step()`` calls are ignored; ``prof.done`` becomes True.

A step's time includes everything between its two ``prof.step()`` calls,
so data loading in the loop counts unless it sits outside them: put it in
``with prof.between():`` (before the step's work), which begins the step
again after the block, clock, RSS and instruments alike.  Phases time
each ``with prof.phase(name)`` block on timed steps (summed if a phase runs
several times in a step) and label FLOPs and live bytes on the measuring step.
Where the timed steps ran phases the measuring step did not, or the reverse (a
GAN loop that updates G every fifth step), the record carries one warning
naming them, and a spread in step time that comes from timed steps of several
kinds is said to be that, not noise.

An exception leaving the ``with`` block sets the record's ``status``
(``oom``, ``interrupted`` or ``error``, with the message) and propagates;
non-finite parameters after the run set ``status="nan"``.  A report taken
before the measuring step ended (the loop left early, or ``prof.step()`` was
never called) has ``status="incomplete"`` and a warning saying what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal, TypedDict, TypeVar

from gonprof.measure.timing import make_sync, summarize
from gonprof.records import (
    COMPILED,
    DEFAULT_NOISY_THRESHOLD,
    EAGER,
    CudaMemory,
    Environment,
    ModelParams,
    PersistentBytes,
    ProfileRecord,
    RssFigures,
    StepRecord,
    classify_failure,
    peak_tolerance_bytes,
)


class _Context(TypedDict):
    """What a profiled step is, for its record (each None when not given)."""

    arch: str | None
    mode: str | None
    batch_size: int | None
    generator: str | None


_B = TypeVar("_B")

_WARMUP, _MEASURE, _ALLOC, _TIMED, _DONE = "warmup", "measure", "allocator", "timed", "done"

#: Allocator steps measured again when torch.compile compiled a graph during one (compilation is not the step).
MAX_ALLOCATOR_RETRIES = 2


def _force_eager() -> Any:
    """``torch.compiler.set_stance("force_eager")``: torch.compile'd code runs as written until the returned
    object's ``__exit__`` restores the previous stance (None where torch has no stances)."""
    import torch

    try:
        return torch.compiler.set_stance("force_eager")
    except (AttributeError, RuntimeError):
        return None


def compiled_models(models: Mapping[str, Any]) -> list[str]:
    """Names of the models wrapped by torch.compile (``OptimizedModule``)."""
    return [name for name, m in models.items() if type(m).__name__ == "OptimizedModule"]


def _as_dict(obj: Any, default: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj.items())
    if isinstance(obj, (list, tuple)):
        if len(obj) == 1:
            return {default: obj[0]}
        return {f"{default}{i}": v for i, v in enumerate(obj)}
    return {default: obj}


def _shown(value: Any) -> str:
    """A given value as an error message names it: its type and a short repr."""
    text = repr(value)
    if len(text) > 60 or "\n" in text:
        text = text.splitlines()[0][:57] + "..."
    return f"{type(value).__name__} {text}"


def _named(argument: str, given: Any, default: str, cls: type, what: str, *, required: bool) -> dict[str, Any]:
    """``given`` (one object, a list or a dict name -> object) as a dict name -> ``cls`` instance; a TypeError
    or ValueError saying what was given and what is expected where it is not one."""
    expected = f"a {what}, a list of them or a dict name -> {what}"
    named = _as_dict(given, default)
    for name, obj in named.items():
        if not isinstance(name, str):
            raise TypeError(f"Profiler({argument}=...): names must be text; got {_shown(name)} for {_shown(obj)}")
        if not isinstance(obj, cls):
            hint = " (pass the module that owns the parameters)" if type(obj).__name__ in ("Tensor", "Parameter") \
                else ""
            raise TypeError(f"Profiler({argument}=...): {argument}[{name!r}] is {_shown(obj)}; expected a {what}{hint}")
    if required and not named:
        raise ValueError(f"Profiler({argument}=...): no models to measure; expected {expected} with at least one")
    return named


def _step_count(argument: str, value: Any) -> int:
    """``warmup`` / ``active``: a non-negative integer (not a bool, float or text), else TypeError / ValueError."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Profiler({argument}=...): expected a non-negative integer (a count of steps); "
                        f"got {_shown(value)}")
    if value < 0:
        raise ValueError(f"Profiler({argument}=...): expected a non-negative integer (a count of steps); got {value}")
    return int(value)


def _usable_device(device: Any) -> str:
    """An explicit ``device`` as text, where the Profiler can measure on it: ``cpu``, or ``cuda`` / ``cuda:N``
    where CUDA is available and has device N; else TypeError / ValueError."""
    import torch

    expected = "expected 'cpu', 'cuda' or 'cuda:N' (a str or torch.device)"
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"Profiler(device=...): {expected}; got {_shown(device)}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"Profiler(device=...): {device!r} is not a device; {expected}") from None
    if dev.type == "cpu":
        return str(device)
    if dev.type != "cuda":
        raise ValueError(f"Profiler(device=...): cannot measure on {str(dev)!r}; {expected}")
    if not torch.cuda.is_available():
        raise ValueError(f"Profiler(device=...): {str(dev)!r} is not usable here: CUDA is not available; "
                         "expected 'cpu'")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"Profiler(device=...): {str(dev)!r} is not usable here: this machine has {count} CUDA "
                         f"device{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})")
    return str(device)


def step_kinds(measured: list[str] | None, steps: tuple[StepRecord, ...],
               measuring_step: int | None) -> tuple[str, bool]:
    """(warning, several): one warning naming the phases that timed steps ran and the measuring step did not,
    and those the measuring step ran and some timed steps did not ("" when the steps are all of the measuring
    step's kind, or no measuring step ended); ``several`` when the timed steps are of more than one kind
    (sets of phases), so that their spread in time is the kinds' and not noise."""
    if measured is None or not steps:
        return "", False
    counts: dict[str, int] = {}
    for s in steps:
        for name in s.phase_time_s:
            counts[name] = counts.get(name, 0) + 1
    n = len(steps)
    extra = [f"{name} (in {k} of {n} timed steps)" for name, k in counts.items() if name not in measured]
    missing = [f"{name} (not in {n - counts.get(name, 0)} of {n} timed steps)" for name in measured
               if counts.get(name, 0) < n]
    if not extra and not missing:
        return "", False
    parts = []
    if extra:
        parts.append(f"timed steps ran phases the measuring step did not: {', '.join(extra)}")
    if missing:
        parts.append(f"the measuring step ran phases some timed steps did not: {', '.join(missing)}")
    ran = ", ".join(measured) if measured else "none named"
    warning = (f"steps of several kinds: {'; '.join(parts)}; FLOPs and live bytes describe the measuring step "
               f"(step {measuring_step}, phases: {ran}) only")
    return warning, len({frozenset(s.phase_time_s) for s in steps}) > 1


class _NullPhase:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NULL_PHASE = _NullPhase()


class _TimedPhase:
    __slots__ = ("prof", "name", "t0")

    def __init__(self, prof: Profiler, name: str) -> None:
        self.prof = prof
        self.name = name

    def __enter__(self) -> None:
        self.t0 = self.prof._now()

    def __exit__(self, *exc: Any) -> None:
        dt = self.prof._now() - self.t0
        times = self.prof._phase_times
        times[self.name] = times.get(self.name, 0.0) + dt


class _MeasuredPhase:
    __slots__ = ("prof", "name", "cms")

    def __init__(self, prof: Profiler, name: str) -> None:
        self.prof = prof
        self.name = name

    def __enter__(self) -> None:
        self.cms = []
        for instrument in self.prof._instruments:
            cm = instrument.phase(self.name)
            cm.__enter__()
            self.cms.append(cm)

    def __exit__(self, *exc: Any) -> None:
        for cm in reversed(self.cms):
            cm.__exit__(*exc)


#: RSS growth beyond the tensor-level growth above which a record warns (and beyond the tensor growth itself).
UNTRACKED_FLAG_BYTES = 32 * 2**20

#: How FLOPs and the tensor-level peak of a step with torch.compile'd code are taken.
EAGER_MATHS = ("eager maths of the compiled step: torch.compile'd code runs as written on the measuring step "
               "(torch.compiler.set_stance('force_eager') for compiled models; Dynamo skips any other compiled "
               "frame while a TorchDispatchMode is active), so every op of the original code is seen")


def peak_difference_note(tensor_peak_bytes: int, alloc: Any, external_bytes: int = 0) -> str:
    """Why the allocator-level peak differs from the tensor-level one (less its ``external_bytes``, see
    :func:`allocator_basis`), where the two differ by more than the tolerance
    (:func:`gonprof.records.peak_tolerance_bytes`); "" where they agree."""
    basis = tensor_peak_bytes - external_bytes
    diff = alloc.peak_bytes - basis
    tol = peak_tolerance_bytes(basis)
    if abs(diff) <= tol:
        return ""
    less = f" less its {external_bytes / 2**20:,.2f} MiB of external storages" if external_bytes else ""
    size = f"{abs(diff) / 2**20:,.2f} MiB {'above' if diff > 0 else 'below'} the tensor-level peak{less}"
    limit = f"(tolerance {tol / 2**20:,.2f} MiB: 5% + 1 MiB)"
    if alloc.execution == COMPILED:
        return (f"the allocator peak is {size} {limit}: compiled buffers; the compiled step fuses ops and allocates "
                "its own buffers, the tensor-level peak follows every op of the eager maths")
    if diff > 0:
        return (f"the allocator peak is {size} {limit}: memory no op's output tensor holds, kernel scratch "
                "(convolution and BLAS workspaces, temporaries inside an op)")
    return (f"the allocator peak is {size} {limit}: tensor storages this allocator did not serve in the step "
            "(foreign memory, another device's allocator) or blocks it freed that the tracker did not know")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def oom_where(tracker: Any, measured: Any) -> str:
    """Where a step that ran out of memory was, for its one-line message: the phase and module of the op that
    failed on the measuring step (``tracker``, still holding what was live), or the phase and the top module
    at the peak of the measuring step (``measured``, a LiveMemory) when a later step failed; "" when
    neither is known."""
    from gonprof.measure.memory import top_modules

    failure = getattr(tracker, "failure", None)
    if failure is not None:
        module = f"in {failure['module']}'s {failure['direction']}" if failure["module"] else "outside the modules"
        top = failure["top"]
        most = f", the most made by {top[0][0]} ({_mib(top[0][1])})" if top else ""
        phase = f"in phase {failure['phase']!r}, " if failure["phase"] else ""
        return (f" [where: {phase}{module} ({failure['op']}), with "
                f"{_mib(failure['live_bytes'])} live{most}]")
    lm, when = measured, "on the measuring step, its peak"
    if tracker is not None and getattr(tracker, "_result", None) is not None:
        lm, when = tracker.figures(), "at the peak so far"
    if lm is None:
        return ""
    top = top_modules([(m.module, m.bytes_at_peak) for m in lm.peak_modules], 1)
    parts = [f"{when} ({_mib(lm.peak_live_bytes)})"]
    if lm.peak_phase:
        parts.append(f"in phase {lm.peak_phase!r}")
    if top:
        parts.append(f"top module {top[0][0]} ({_mib(top[0][1])})")
    return f" [where: {', '.join(parts)}]"


class Profiler:
    """Profile the steps of a training loop.  See the module docstring for the schedule.

    Parameters
    ----------
    models:
        the ``torch.nn.Module`` s the step trains: one module, a list, or a dict name -> module (e.g. a
        GAN's ``D`` and ``G``); at least one.
    optimizers:
        their ``torch.optim.Optimizer`` s, in the same forms (or None).
    warmup:
        untimed steps before the timed ones (a non-negative integer); the last one is the measuring step.
    active:
        timed steps (a non-negative integer).
    device:
        the device the step runs on: ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` where CUDA has that device
        (a str or ``torch.device``); default: the first model parameter's device.
        CUDA devices get synchronised timing and CUDA memory figures.

    Arguments it cannot measure with are refused at construction: a TypeError for the wrong kind of
    object (a model that is not an ``nn.Module``, ``active=2.7`` or ``"3"``), a ValueError for a value
    out of range (no models, ``warmup=-1``, a device that is not here); each says what was given and
    what is expected.  :meth:`step` outside the ``with`` block and :meth:`report` before it raise
    RuntimeError.
    measure:
        run the measuring step (FLOPs, live bytes, persistent state).
    clock:
        zero-argument callable returning seconds (default ``time.perf_counter``).
    noisy_threshold:
        flag timing as noisy when (p90 - p10) / median exceeds it.
    rss_method:
        ``"auto"`` (VmHWM, else a 1 ms psutil poller), ``"vmhwm"`` or ``"poll"``.
    arch, mode, batch_size, generator, extra:
        context copied into the record.
    state:
        persistent state the models and optimizers do not hold, by category, counted as such on the
        measuring step: ``{"replay": [tensors]}`` (a GON replay buffer), or a callable returning that
        mapping (read when the measuring step begins; e.g. a TrainStep's ``state_tensors``).
    """

    def __init__(
        self,
        models: Any = None,
        optimizers: Any = None,
        warmup: int = 2,
        active: int = 10,
        device: Any = None,
        measure: bool = True,
        clock: Callable[[], float] | None = None,
        noisy_threshold: float = DEFAULT_NOISY_THRESHOLD,
        rss_method: str = "auto",
        arch: str | None = None,
        mode: str | None = None,
        batch_size: int | None = None,
        generator: str | None = None,
        extra: dict[str, Any] | None = None,
        state: Any = None,
    ) -> None:
        import torch

        self.models = _named("models", models, "model", torch.nn.Module, "torch.nn.Module", required=True)
        self.optimizers = _named("optimizers", optimizers, "optimizer", torch.optim.Optimizer,
                                 "torch.optim.Optimizer", required=False)
        self.warmup = _step_count("warmup", warmup)
        self.active = _step_count("active", active)
        self.measure = bool(measure)
        self.clock = clock or time.perf_counter
        self.noisy_threshold = noisy_threshold
        self.rss_method = rss_method
        self.context: _Context = {"arch": arch, "mode": mode, "batch_size": batch_size, "generator": generator}
        self.extra = dict(extra or {})
        self.state = state
        self.device = self._infer_device(device)
        self._sync = make_sync(self.device)
        self._is_cuda = self._sync is not None

        self.untimed_steps = max(self.warmup, 1 if self.measure else 0)
        self.measuring_step = self.untimed_steps - 1 if self.measure else None
        self.total_steps = self.untimed_steps + self.active
        self.compiled_models = compiled_models(self.models)
        self.allocator_steps: list[int] = []  # untimed steps after the measuring step: allocator events only
        if self.measure and self.compiled_models:
            self._add_allocator_step()

        self._index = 0
        self._kind = _DONE
        self._entered = False
        self._environment: Environment | None = None
        self._exited = False
        self._status = "ok"
        self._message = ""
        self._model_params: tuple[ModelParams, ...] = ()
        self._persistent: PersistentBytes | None = None
        self._figures: dict[str, Any] = {}  # ProfileRecord field -> an instrument's figures
        self._instruments: list[Any] = []  # entered on the measuring step, innermost last
        self._measure_t0 = 0.0
        self._measuring_step_time_s: float | None = None
        self._rss: Any = None
        self._rss_start: int | None = None
        self._t0 = 0.0
        self._phase_times: dict[str, float] = {}
        self._steps: list[StepRecord] = []
        self._phase_names: list[str] = []
        self._measured_phases: list[str] = []  # the phases the measuring step ran, in order
        self._stance: Any = None  # torch.compile's stance set for the measuring step, restored after it
        self._allocator: Any = None  # the allocator step's AllocatorMemory (compiled execution where it ran)
        self._allocator_unavailable = ""
        self._compiles_in_allocator_step = 0

    # -- helpers ---------------------------------------------------------------------
    def _infer_device(self, device: Any) -> Any:
        if device is not None:
            return _usable_device(device)
        for m in self.models.values():
            for p in m.parameters():
                return str(p.device)
        return "cpu"

    def _now(self) -> float:
        if self._sync is not None:
            self._sync()
        return self.clock()

    def _kind_of(self, i: int) -> str:
        if i >= self.total_steps:
            return _DONE
        if i < self.untimed_steps:
            if i == self.measuring_step:
                return _MEASURE
            return _ALLOC if i in self.allocator_steps else _WARMUP
        return _TIMED

    def _add_allocator_step(self) -> None:
        """One more untimed step, before the timed ones, measured by the allocator's events only."""
        self.allocator_steps.append(self.untimed_steps)
        self.untimed_steps += 1
        self.total_steps += 1

    @property
    def done(self) -> bool:
        """True once all timed steps have run (further ``step()`` calls are ignored)."""
        return self._index >= self.total_steps

    @property
    def step_index(self) -> int:
        """Index of the step in progress (0-based)."""
        return self._index

    @property
    def step_kind(self) -> str:
        """``"warmup"``, ``"measure"``, ``"allocator"`` (compiled code only), ``"timed"`` or ``"done"``."""
        return self._kind

    # -- context -----------------------------------------------------------------------
    def __enter__(self) -> Profiler:
        if self._entered:
            raise RuntimeError("a Profiler can be entered once")
        self._entered = True
        from gonprof.measure.params import count_params

        self._model_params = tuple(count_params(m, name) for name, m in self.models.items())
        self._environment = Environment.capture(self.device)  # threads and load average at the start
        if self.active > 0:
            from gonprof.measure.rss import RssPeak

            self._rss = RssPeak(self.rss_method)
        self._index = 0
        self._begin(0)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        tracker = next((i for i in self._instruments if i.record_field == "live_memory"), None)
        try:
            self._abort_current()
        finally:
            self._exited = True
            if self._rss is not None:
                self._rss.close()
        if exc_type is not None:
            self._status, self._message = classify_failure(exc if exc is not None else exc_type())
            if self._status == "oom":
                self._message += oom_where(tracker, self._figures.get("live_memory"))
        elif self._status == "ok":
            bad = self._nonfinite_params()
            if bad:
                self._status, self._message = "nan", f"non-finite parameters after the run: {bad}"
        return False

    def step(self) -> None:
        """Mark the end of one step (and the start of the next); a RuntimeError outside the ``with`` block."""
        if not self._entered or self._exited:
            where = "after" if self._exited else "before"
            raise RuntimeError(f"Profiler.step() {where} its `with` block: call it inside `with Profiler(...) as "
                               "prof:`, once at the end of each step")
        if self._index >= self.total_steps:
            return
        self._end(self._index)
        self._index += 1
        self._begin(self._index)

    @contextlib.contextmanager
    def between(self) -> Iterator[None]:
        """``with prof.between():`` work between two steps (loading or preparing the next batch), kept out
        of every measured interval: the step that ``prof.step()`` (or entering) just began is begun again
        after the block, so its clock, RSS and instruments start after it.  Use it before the step's work."""
        index, kind = self._index, self._kind
        if kind not in (_MEASURE, _ALLOC, _TIMED) or not self._entered or self._exited:
            yield
            return
        self._abort_current()
        try:
            yield
        finally:
            self._begin(index)

    def iterate(self, batches: Iterable[_B]) -> Iterator[_B]:
        """``for batch in prof.iterate(loader):`` the batches of ``batches`` until :attr:`done`, with
        ``prof.step()`` after each, so a loop needs no ``prof.step()``, no ``if prof.done: break`` (nested
        loops included: once done, every later ``iterate`` yields nothing and never starts ``batches``) and no
        other change.  The loader is started (``iter``) and each batch fetched inside :meth:`between`, outside
        every measured interval: a loader's work (starting workers, collation, a transfer) is not the step's.
        A body that calls ``prof.step()`` itself is not stepped twice.  A RuntimeError outside the ``with``
        block."""
        if not self._entered or self._exited:
            where = "after" if self._exited else "before"
            raise RuntimeError(f"Profiler.iterate() {where} its `with` block: loop over it inside `with "
                               "Profiler(...) as prof:`")
        if self.done:
            return
        source: Iterator[_B] | None = None
        while not self.done:
            with self.between():  # starting the loader (its workers) and each fetch: outside the step
                if source is None:
                    source = iter(batches)
                try:
                    batch = next(source)
                except StopIteration:
                    return
            index = self._index
            yield batch
            if self._index == index:
                self.step()

    def phase(self, name: str) -> Any:
        """``with prof.phase("name"):`` labels part of a step."""
        kind = self._kind
        if kind == _TIMED:
            if name not in self._phase_names:
                self._phase_names.append(name)
            return _TimedPhase(self, name)
        if kind == _MEASURE:
            if name not in self._phase_names:
                self._phase_names.append(name)
            if name not in self._measured_phases:
                self._measured_phases.append(name)
            return _MeasuredPhase(self, name)
        return _NULL_PHASE

    def set_status(self, status: str, message: str = "") -> None:
        """Let the caller record a status (e.g. ``"nan"`` when its loss went non-finite)."""
        self._status, self._message = status, message

    # -- the schedule ----------------------------------------------------------------------
    def _begin(self, i: int) -> None:
        kind = self._kind = self._kind_of(i)
        if kind == _MEASURE:
            from gonprof.measure.allocator import AllocatorPeak
            from gonprof.measure.flops import FlopCounter
            from gonprof.measure.memory import LiveBytesTracker

            self._measure_t0 = self._now()
            if self.compiled_models:  # their eager maths, as documented (fullgraph=True models included)
                self._stance = _force_eager()
            # the allocator's events outermost; the live-bytes mode below the FLOP mode, so that it sees
            # the ops that really run when the FLOP mode decomposes an op without a formula
            self._enter_instruments(AllocatorPeak(self.models, self.optimizers, self.device, step=i, state=self.state),
                                    LiveBytesTracker(self.models, self.optimizers, state=self.state),
                                    FlopCounter(self.models))
        elif kind == _ALLOC:
            from gonprof.measure.allocator import AllocatorPeak

            self._enter_instruments(AllocatorPeak(self.models, self.optimizers, self.device, step=i, state=self.state))
        elif kind == _TIMED:
            self._phase_times = {}
            if self._is_cuda:
                import torch

                assert self._sync is not None  # there is a sync exactly on cuda (see __init__)
                self._sync()
                torch.cuda.reset_peak_memory_stats(self.device)
            self._rss_start = self._rss.start() if self._rss is not None else None
            self._t0 = self._now()

    def _enter_instruments(self, *instruments: Any) -> None:
        for instrument in instruments:
            try:
                instrument.__enter__()
            except BaseException:
                self._exit_instruments()
                raise
            self._instruments.append(instrument)

    def _end(self, i: int) -> None:
        kind = self._kind
        if kind == _MEASURE:
            from gonprof.measure.params import persistent_state

            instruments = list(self._instruments)
            self._exit_instruments()
            self._measuring_step_time_s = self._now() - self._measure_t0
            self._figures = {inst.record_field: inst.figures() for inst in instruments}
            self._allocator_unavailable = instruments[0].unavailable
            self._persistent = persistent_state(self.models, self.optimizers)
            alloc = self._figures.get("allocator_memory")
            if alloc is not None and alloc.dynamo_frames and not self.allocator_steps:
                self._add_allocator_step()  # a torch.compile'd frame ran (eagerly, under the dispatch modes)
        elif kind == _ALLOC:
            (inst,) = self._instruments
            self._exit_instruments()
            self._allocator = inst.figures()
            self._allocator_unavailable = self._allocator_unavailable or inst.unavailable
            self._compiles_in_allocator_step = inst.compiles_during
            if inst.compiles_during and len(self.allocator_steps) <= MAX_ALLOCATOR_RETRIES:
                self._add_allocator_step()  # it compiled: measure the step again
        elif kind == _TIMED:
            t1 = self._now()
            dt = t1 - self._t0
            peak = None
            if self._rss is not None:
                peak = self._rss.stop().peak_rss_bytes
            cuda_alloc = cuda_res = None
            if self._is_cuda:
                import torch

                cuda_alloc = int(torch.cuda.max_memory_allocated(self.device))
                cuda_res = int(torch.cuda.max_memory_reserved(self.device))
            self._steps.append(
                StepRecord(
                    index=i,
                    step_time_s=dt,
                    rss_start_bytes=self._rss_start,
                    peak_rss_bytes=peak,
                    phase_time_s=self._phase_times,
                    cuda_max_memory_allocated_bytes=cuda_alloc,
                    cuda_max_memory_reserved_bytes=cuda_res,
                )
            )
        self._kind = _DONE

    def _exit_instruments(self) -> None:
        """Leave the instruments entered so far, innermost first; every one is left even if one fails; then
        torch.compile's stance is restored."""
        first: BaseException | None = None
        while self._instruments:
            try:
                self._instruments.pop().__exit__(None, None, None)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others are left
                first = first or exc
        stance, self._stance = self._stance, None
        if stance is not None:
            stance.__exit__(None, None, None)
        if first is not None:
            raise first

    def _abort_current(self) -> None:
        """Drop the step in progress at exit (begun by the last ``step()``, never ended)."""
        if self._kind in (_MEASURE, _ALLOC):
            self._exit_instruments()
        elif self._kind == _TIMED and self._rss is not None:
            self._rss.stop()
        self._kind = _DONE

    def _missing_figures(self, steps: tuple[StepRecord, ...]) -> tuple[str, str]:
        """(message, warning) of a report taken before the figures it asks for were measured: the measuring
        step has not ended, or, with ``measure=False``, no timed step has; ("", "") when nothing is missing."""
        advice = "call prof.step() at the end of every step, and prof.report() after the loop"
        if self.measure and not self._figures:
            return ("the report was taken before the measuring step ended",
                    f"incomplete record: the measuring step (step {self.measuring_step}) had not ended when the "
                    f"report was taken, after {self._index} prof.step() calls, so it has no FLOPs, memory or "
                    f"persistent-state figures; {advice}")
        if not self.measure and self.active > 0 and not steps:
            return ("the report was taken before any timed step ended",
                    f"incomplete record: no timed step had ended when the report was taken, so it has no step "
                    f"times; {advice}")
        return "", ""

    def _nonfinite_params(self) -> list[str]:
        import torch

        bad = []
        with torch.no_grad():
            for name, m in self.models.items():
                for pname, p in m.named_parameters():
                    if p.is_floating_point() and p.device.type != "meta" and not bool(torch.isfinite(p).all()):
                        bad.append(f"{name}.{pname}")
                        break
        return bad

    # -- the record ------------------------------------------------------------------------
    def _memory_figures(self, rss: RssFigures | None) -> dict[str, Any]:
        """The record's figures that depend on how the step ran: FLOPs and the tensor-level and allocator-level
        peaks, the step peak, which execution each figure describes, why the peaks differ, the RSS beyond
        them, and the warnings."""
        live = self._figures.get("live_memory")
        measured_alloc = self._figures.get("allocator_memory")  # on the measuring step, under the dispatch modes
        alloc = self._allocator if self._allocator is not None else measured_alloc
        entered = bool(self.compiled_models or (measured_alloc is not None and measured_alloc.dynamo_frames)
                       or (alloc is not None and alloc.dynamo_frames))
        # the timed steps run as the allocator step ran; without its figures, as the compiled models say
        if alloc is not None and alloc is self._allocator:
            run = alloc.execution
        else:
            run = COMPILED if entered else EAGER
        warnings: list[str] = []
        execution: dict[str, str] = {}
        flops = self._figures.get("flops")
        if flops is not None:
            execution["flops"] = EAGER
            if entered:
                flops = dataclasses.replace(flops, method=flops.method + "; " + EAGER_MATHS)
        if live is not None:
            execution["live_memory"] = EAGER
            if entered:
                live = dataclasses.replace(live, method=live.method + "; " + EAGER_MATHS)
        if alloc is not None:
            execution["allocator_memory"] = alloc.execution
        if self._steps:
            execution["step_time"] = run
            if rss is not None:
                execution["rss"] = run
            if self._is_cuda:
                execution["cuda_memory"] = run
        step_peak = execution_peak = source = None
        if alloc is not None and alloc.execution == COMPILED:
            step_peak, execution_peak, source = alloc.peak_bytes, COMPILED, "allocator"
            growth = alloc.peak_delta_bytes
        elif live is not None:
            step_peak, execution_peak, source = live.peak_live_bytes, EAGER, "tensor-level"
            growth = live.peak_live_delta_bytes
        note = ""
        if live is not None and alloc is not None:
            note = peak_difference_note(live.peak_live_bytes, alloc, live.peak_live_external_bytes)
        if self.measure and self._figures and alloc is None:
            why = self._allocator_unavailable or "no allocator figures"
            warnings.append(f"no allocator-level peak: {why}")
        if entered:
            who = f"{', '.join(self.compiled_models)} compiled with torch.compile" if self.compiled_models \
                else "torch.compile'd code ran in the step"
            if run == COMPILED:
                if source == "allocator":
                    assert alloc is not None  # the allocator peak is the source
                    peak = f"the step peak is the allocator peak of untimed step {alloc.step}, which ran compiled"
                elif source is not None:
                    peak = "the step peak is the tensor-level one (eager maths): no allocator peak of the compiled step"
                else:
                    peak = "no memory figures were taken"
                warnings.append(
                    f"{who}: FLOPs and the tensor-level peak describe the eager maths of the step (compiled code "
                    f"runs as written on the measuring step); {peak}; step times and RSS describe the compiled "
                    "execution")
            else:
                warnings.append(f"{who}, but no compiled frame ran in the measured steps: every figure describes "
                                "eager execution")
        if alloc is not None and alloc is self._allocator and self._compiles_in_allocator_step:
            warnings.append(f"torch.compile compiled graphs during untimed step {alloc.step} as well; its allocator "
                            "peak may include compilation")
        untracked = None
        if rss is not None and step_peak is not None:
            untracked = rss.peak_rss_delta_bytes_median - growth
            if untracked > max(UNTRACKED_FLAG_BYTES, growth):
                warnings.append(f"the step's RSS grew {untracked / 2**20:,.1f} MiB beyond its live tensors: memory "
                                "neither the tensor-level tracker nor the allocator sees (memory outside torch such "
                                "as numpy arrays no tensor wraps, tensors made elsewhere that no op reads, "
                                "allocator caching); read peak RSS beside the step peak")
        return dict(flops=flops, live_memory=live, allocator_memory=alloc, step_peak_bytes=step_peak,
                    step_peak_execution=execution_peak, step_peak_source=source, execution=execution,
                    peak_difference_note=note, untracked_bytes=untracked, warnings=tuple(warnings))

    def report(self) -> ProfileRecord:
        """The figures so far as a :class:`~gonprof.records.ProfileRecord`: inside the ``with`` block or after it
        (a RuntimeError before it).  A report taken before the measuring step ended (or, with ``measure=False``,
        before any timed step ended) has status ``incomplete`` and says so in a warning."""
        if not self._entered:
            raise RuntimeError("Profiler.report() before its `with` block: run the steps inside `with Profiler(...) "
                               "as prof:` (prof.step() after each), then call prof.report()")
        steps = tuple(self._steps)
        status, message = self._status, self._message
        missing, warning = self._missing_figures(steps)
        if status == "ok" and missing:
            status, message = "incomplete", missing
        elif status == "ok" and len(steps) < self.active:
            message = f"only {len(steps)} of {self.active} timed steps ran"
        rss = None
        # (peak, start) of the steps with both
        with_rss = [(peak, start) for s in steps
                    if (peak := s.peak_rss_bytes) is not None and (start := s.rss_start_bytes) is not None]
        if with_rss:
            deltas = sorted(peak - start for peak, start in with_rss)
            starts = sorted(start for _, start in with_rss)
            rss = RssFigures(
                method=self._rss.method if self._rss is not None else "",
                peak_rss_bytes=max(peak for peak, _ in with_rss),
                peak_rss_delta_bytes=deltas[-1],
                peak_rss_delta_bytes_median=int(statistics.median(deltas)),
                rss_baseline_bytes=int(statistics.median(starts)),
            )
        cuda = None
        # (allocated, reserved) of the steps on cuda (both are read together, see _end)
        with_cuda = [(alloc, res) for s in steps
                     if (alloc := s.cuda_max_memory_allocated_bytes) is not None
                     and (res := s.cuda_max_memory_reserved_bytes) is not None]
        if with_cuda:
            cuda = CudaMemory(
                max_memory_allocated_bytes=max(alloc for alloc, _ in with_cuda),
                max_memory_reserved_bytes=max(res for _, res in with_cuda),
            )
        step_time = summarize([s.step_time_s for s in steps], self.noisy_threshold) if steps else None
        kinds_warning, several_kinds = step_kinds(self._measured_phases if self._figures else None, steps,
                                                     self.measuring_step)
        if several_kinds and step_time is not None:  # the spread is the kinds', not noise: the warning says so
            kinds_warning += (f"; the step-time spread ({step_time.spread:.0%}) comes from timed steps of "
                              "several kinds, not from noise: read each phase's time")
            step_time = dataclasses.replace(step_time, noisy=False)
        phase_time = {}
        for name in self._phase_names:
            ts = [s.phase_time_s[name] for s in steps if name in s.phase_time_s]
            if ts:
                phase_time[name] = summarize(ts, self.noisy_threshold)
        mem = self._memory_figures(rss)
        if status == "incomplete":
            mem["warnings"] = (warning, *mem["warnings"])
        if kinds_warning:
            mem["warnings"] = (*mem["warnings"], kinds_warning)
        return ProfileRecord(
            **mem,
            status=status,
            message=message,
            environment=self._environment or Environment.capture(self.device),
            arch=self.context["arch"],
            mode=self.context["mode"],
            batch_size=self.context["batch_size"],
            generator=self.context["generator"],
            extra=dict(self.extra),
            warmup_steps=self.untimed_steps,
            active_steps=self.active,
            timed_steps=len(steps),
            measuring_step=self.measuring_step if self._figures else None,
            measuring_step_time_s=self._measuring_step_time_s,
            models=self._model_params,
            persistent=self._persistent,
            rss=rss,
            cuda_memory=cuda,
            step_time=step_time,
            phase_time=phase_time,
            steps=steps,
        )
