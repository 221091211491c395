"""Records of a profiled run: :class:`ProfileRecord` and its parts.

- :class:`Environment`: torch / python / device / host facts, threads and load average.
- :class:`ModelParams`: per-model parameter and buffer counts and bytes.
- :class:`PersistentBytes`: parameter / buffer / gradient / optimizer-state bytes held between steps.
- :class:`FlopFigures`: FLOPs of one whole step (FLOPs = 2 x MACs), per phase, module and operator.
- :class:`LiveMemory`: tensor-level live bytes during the measuring step (peak, split by category).
- :class:`AllocatorMemory`: the allocator-level peak of an untimed step, from the allocator's own figures.
- :class:`RssFigures`: the process's resident-set high-water mark per timed step.
- :class:`CudaMemory`: ``max_memory_allocated`` / ``max_memory_reserved``.
- :class:`TimingStats`: median / p10 / p90 / mean of step (or phase) times.
- :class:`StepRecord`: the raw figures of each timed step.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .base import DEFAULT_NOISY_THRESHOLD, SCHEMA_VERSION, STATUSES, JsonRecord, _Serialisable

# --------------------------------------------------------------------------
# parts
# --------------------------------------------------------------------------


def host_load() -> dict[str, Any]:
    """The machine's load at this moment: 1-minute load average, cores, and whether it exceeds them.

    ``warning`` is one line to show when the load average exceeds the cores
    (timings taken then are not comparable with a quiet machine's).
    """
    import os

    cores = os.cpu_count() or 1
    try:
        load = round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not every platform has a load average
        return {"load_average_1m": None, "cpu_count": cores, "overloaded": False}
    out: dict[str, Any] = {"load_average_1m": load, "cpu_count": cores, "overloaded": load > cores}
    if out["overloaded"]:
        out["warning"] = (f"load average {load:g} exceeds this machine's {cores} cores: "
                          "timings are not comparable with a quiet machine's")
    return out


@dataclass(frozen=True)
class Environment(_Serialisable):
    torch_version: str = ""
    python_version: str = ""
    platform: str = ""
    host: str = ""
    cpu_count: int = 0
    device: str = "cpu"
    device_name: str = ""
    cuda_version: str | None = None
    gonprof_version: str = ""
    torch_threads: int | None = None  # torch.get_num_threads() when captured
    load_average_1m: float | None = None  # the host's 1-minute load average when captured

    @classmethod
    def capture(cls, device: Any = "cpu") -> Environment:
        """Facts about this process (imports torch)."""
        import os
        import platform as _platform
        import socket

        import torch

        from .._version import __version__

        dev = torch.device(device) if device is not None else torch.device("cpu")
        if dev.type == "cuda" and torch.cuda.is_available():
            name = torch.cuda.get_device_name(dev)
        else:
            name = _platform.processor() or _platform.machine()
        return cls(
            torch_version=torch.__version__,
            python_version=_platform.python_version(),
            platform=_platform.platform(),
            host=socket.gethostname(),
            cpu_count=os.cpu_count() or 0,
            device=str(dev),
            device_name=name,
            cuda_version=torch.version.cuda,
            gonprof_version=__version__,
            torch_threads=torch.get_num_threads(),
            load_average_1m=host_load()["load_average_1m"],
        )


@dataclass(frozen=True)
class ModelParams(_Serialisable):
    """Structure of one model: counts are elements, bytes are ``numel * element_size``."""

    name: str
    params_total: int
    params_trainable: int
    params_frozen: int
    param_tensors: int
    buffer_tensors: int
    buffer_elements: int
    param_bytes: int
    buffer_bytes: int
    param_bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    buffer_bytes_by_dtype: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PersistentBytes(_Serialisable):
    """State held between steps, exact from the tensors (each storage counted once).

    Taken at the end of the measuring step: parameters, buffers, the ``.grad``
    tensors present, and every tensor in ``optimizer.state``.
    """

    param_bytes: int = 0
    buffer_bytes: int = 0
    grad_bytes: int = 0
    optimizer_state_bytes: int = 0
    param_bytes_by_model: dict[str, int] = field(default_factory=dict)
    grad_bytes_by_model: dict[str, int] = field(default_factory=dict)
    optimizer_state_bytes_by_optimizer: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes + self.grad_bytes + self.optimizer_state_bytes


@dataclass(frozen=True)
class ModuleFlops(_Serialisable):
    """FLOPs attributed to one module, inclusive of its submodules."""

    module: str
    module_type: str
    forward_flops: int
    backward_flops: int

    @property
    def flops(self) -> int:
        return self.forward_flops + self.backward_flops


@dataclass(frozen=True)
class FlopFigures(_Serialisable):
    """FLOPs of one whole step (FLOPs = 2 x MACs), from torch.utils.flop_counter formulas.

    ``flops_per_step`` = ``forward_flops`` + ``backward_flops``: everything that
    ran in the step (every forward, every backward including ``autograd.grad``
    and double backward, the optimizer).  Ops without a formula add nothing to
    the totals and are listed in ``uncounted_ops`` (arithmetic ops, name -> calls)
    or ``no_arithmetic_ops`` (views, copies, allocation, fills).
    ``flops_by_module`` rows are inclusive; FLOPs that ran outside every known
    module (e.g. losses, penalties, optimizer) are in ``flops_outside_modules``.
    ``flops_by_dtype``: the counted FLOPs by the dtype the op computed in (its first floating input's);
    ``float32_flops_by_operator``: the operators that computed in float32, with their FLOPs (under
    ``--precision bf16`` / ``fp16``, the ops autocast left in float32).
    """

    flops_per_step: int
    forward_flops: int
    backward_flops: int
    flops_by_phase: dict[str, int] = field(default_factory=dict)
    flops_by_operator: dict[str, int] = field(default_factory=dict)
    flops_by_module: tuple[ModuleFlops, ...] = ()
    flops_outside_modules: int = 0
    uncounted_ops: dict[str, int] = field(default_factory=dict)
    no_arithmetic_ops: dict[str, int] = field(default_factory=dict)
    flops_by_dtype: dict[str, int] = field(default_factory=dict)
    float32_flops_by_operator: dict[str, int] = field(default_factory=dict)
    method: str = "TorchDispatchMode over torch.utils.flop_counter.flop_registry; FLOPs = 2 x MACs"


#: The categories of live bytes, in the order tables and the timeline stack them.
#: ``replay``: samples a mode keeps between steps (GON's replay buffer of past chains).
LIVE_CATEGORIES = ("param", "buffer", "grad", "optim", "replay", "act", "external")


@dataclass(frozen=True)
class ModuleMemory(_Serialisable):
    """Bytes live at the peak that one module made: ``module`` is its qualified name under its model
    (``"D.main.0"``; ``""`` for storages made outside every module), ``direction`` ``forward`` /
    ``backward`` / ``outside``, ``phase`` the step's phase when they were made, ``category`` one of
    :data:`LIVE_CATEGORIES`."""

    module: str
    direction: str
    phase: str
    category: str
    bytes_at_peak: int


@dataclass(frozen=True)
class PhaseSpan(_Serialisable):
    """A phase of the measuring step on the timeline: ops ``first_op`` to ``last_op`` (inclusive)."""

    name: str
    first_op: int
    last_op: int


@dataclass(frozen=True)
class MemoryTimeline(_Serialisable):
    """Live bytes by category against op index and time over the measuring step.

    Point ``i`` is the state after op ``op_index[i]`` at ``time_s[i]`` seconds from the step's start;
    ``bytes_by_category[c][i]`` the bytes of category ``c`` live then.  Downsampled to at most
    ``max_points`` points; the point of the peak (``peak_point``) is always kept exactly.  ``ops_total``:
    ops the step ran."""

    op_index: list[int]
    time_s: list[float]
    bytes_by_category: dict[str, list[int]]
    phases: list[PhaseSpan] = field(default_factory=list)
    peak_point: int = 0
    ops_total: int = 0
    max_points: int = 2000


@dataclass(frozen=True)
class LiveMemory(_Serialisable):
    """Tensor-level live bytes during the measuring step (storage bytes, device-independent).

    Live = persistent state known at the step's start (parameters, buffers,
    gradients, optimizer state, extra state such as a replay buffer) plus
    every storage allocated by an op during the step (activations and
    temporaries) plus every storage an op reads that the step did not
    allocate and that is not known state (``external``: the input batch
    however it was made, ``torch.from_numpy`` arrays, loader workers' shared
    memory), from the op that first reads it, until it is freed.  The
    ``peak_live_*`` split is what was live at the moment of the peak, by the
    categories those storages had then: a storage becomes a gradient when the
    autograd engine accumulates it into a ``.grad`` (or an optimizer step
    begins with it as one), optimizer state when the optimizer step that made
    it returns.  ``peak_live_activation_bytes`` = activations and temporaries.
    The categories sum to ``peak_live_bytes``.
    """

    peak_live_bytes: int
    peak_live_param_bytes: int
    peak_live_buffer_bytes: int
    peak_live_grad_bytes: int
    peak_live_optimizer_state_bytes: int
    peak_live_activation_bytes: int
    start_live_bytes: int
    end_live_bytes: int
    allocated_bytes: int
    peak_live_bytes_by_phase: dict[str, int] = field(default_factory=dict)
    method: str = "TorchDispatchMode storage tracker (weakref on untyped storages)"
    #: storages the step used that it did not allocate and that are not persistent state (the input batch
    #: however it was made, ``torch.from_numpy`` arrays, loader workers' shared memory), live at the peak,
    #: counted from the op that first reads them
    peak_live_external_bytes: int = 0
    #: samples a mode keeps between steps (GON's replay buffer), live at the peak
    peak_live_replay_bytes: int = 0
    #: every module's bytes live at the peak, by the module whose forward or backward made them
    peak_modules: list[ModuleMemory] = field(default_factory=list)
    #: live bytes by category over the step (downsampled; the peak kept exactly); None when not taken
    timeline: MemoryTimeline | None = None
    #: the phase running when the peak was reached ("" when the step named no phases)
    peak_phase: str = ""

    @property
    def peak_live_delta_bytes(self) -> int:
        return self.peak_live_bytes - self.start_live_bytes


#: Execution a figure describes: the step as written (``eager``) or as torch.compile runs it (``compiled``).
EAGER, COMPILED = "eager", "compiled"

#: The allocator-level and tensor-level peaks are said to differ when they differ by more than
#: ``PEAK_TOLERANCE_FRACTION`` of the tensor-level peak plus ``PEAK_TOLERANCE_BYTES``.  Both are exact
#: counts of the same step, so any difference has a cause; the tolerance only decides which ones a reader
#: is told about: 1 MiB absorbs the small scratch buffers every step has (reductions, BLAS packing), 5 %
#: a few percent of workspace on large steps, neither of which changes what fits in memory.
PEAK_TOLERANCE_FRACTION = 0.05
PEAK_TOLERANCE_BYTES = 2**20


def peak_tolerance_bytes(tensor_peak_bytes: int) -> int:
    """The difference between allocator-level and tensor-level peaks above which a record says why."""
    return int(PEAK_TOLERANCE_FRACTION * tensor_peak_bytes) + PEAK_TOLERANCE_BYTES


@dataclass(frozen=True)
class AllocatorMemory(_Serialisable):
    """The allocator-level peak of one untimed step, from the allocator's own figures (no dispatch mode, so
    torch.compile'd code runs compiled).

    ``peak_bytes`` = ``start_bytes`` + ``peak_delta_bytes``, on the basis of
    :attr:`LiveMemory.peak_live_bytes`: ``start_bytes`` is the storage bytes of
    the known persistent state (parameters, buffers, gradients, optimizer
    state) at the step's start, and ``peak_delta_bytes`` the most bytes the
    allocator held, over the whole step, beyond what it held at the start.
    On the CPU that is a running sum of torch.profiler's memory events (every
    allocation made in the step and its free, and the free of a known-state
    block; frees of other blocks made before the step, such as the batch, are
    not counted).  It compares with the tensor-level peak less its external
    storages (``peak_live_external_bytes``: the batch and other storages the
    step read but did not allocate, which no allocator served in it).  On CUDA it
    is ``max_memory_allocated`` minus ``memory_allocated`` at the start (every
    free counts; blocks rounded to 512 bytes).  ``allocated_bytes``: the sum
    of the step's allocations.  ``execution``: ``compiled`` when compiled
    frames ran in the step (``compiled_frames`` of them, torch.profiler's
    ``Torch-Compiled Region`` events), else ``eager``; ``dynamo_frames``: calls
    that entered a torch.compile'd frame with compiled code (``TorchDynamo Cache
    Lookup``) plus frames Dynamo saw for the first time, compiled or not.
    """

    peak_bytes: int
    peak_delta_bytes: int
    start_bytes: int
    allocated_bytes: int
    execution: str = EAGER
    step: int | None = None
    compiled_frames: int = 0
    dynamo_frames: int = 0
    method: str = ""


@dataclass(frozen=True)
class RssFigures(_Serialisable):
    """Process resident set size during the timed steps.

    For each timed step the baseline is the RSS at the step's start and the
    peak is the high-water mark during the step.  ``method`` is ``"vmhwm"``
    (VmHWM from /proc/self/status after writing 5 to /proc/self/clear_refs) or
    ``"psutil-poll-1ms"`` (a sampling thread; may miss short spikes).
    """

    method: str
    peak_rss_bytes: int
    peak_rss_delta_bytes: int
    peak_rss_delta_bytes_median: int
    rss_baseline_bytes: int


@dataclass(frozen=True)
class CudaMemory(_Serialisable):
    """``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``, reset per timed step (max over steps)."""

    max_memory_allocated_bytes: int
    max_memory_reserved_bytes: int


@dataclass(frozen=True)
class TimingStats(_Serialisable):
    """Statistics of wall times in seconds (percentiles linearly interpolated).

    ``spread`` = (p90 - p10) / median; ``noisy`` when spread > ``noisy_threshold``.
    """

    n: int
    time_s_median: float
    time_s_p10: float
    time_s_p90: float
    time_s_mean: float
    time_s_min: float
    time_s_max: float
    spread: float
    noisy: bool
    noisy_threshold: float = DEFAULT_NOISY_THRESHOLD


@dataclass(frozen=True)
class StepRecord(_Serialisable):
    """Raw figures of one timed step."""

    index: int
    step_time_s: float
    rss_start_bytes: int | None = None
    peak_rss_bytes: int | None = None
    phase_time_s: dict[str, float] = field(default_factory=dict)
    cuda_max_memory_allocated_bytes: int | None = None
    cuda_max_memory_reserved_bytes: int | None = None

    @property
    def peak_rss_delta_bytes(self) -> int | None:
        if self.peak_rss_bytes is None or self.rss_start_bytes is None:
            return None
        return self.peak_rss_bytes - self.rss_start_bytes


# --------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRecord(JsonRecord):
    """One profiled run: what was measured, on what, and whether it went well."""

    schema_version: int = SCHEMA_VERSION
    status: str = "ok"
    message: str = ""
    environment: Environment = field(default_factory=Environment)
    # context, filled by callers (CLI / api)
    arch: str | None = None
    mode: str | None = None
    batch_size: int | None = None
    generator: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # schedule
    warmup_steps: int = 0
    active_steps: int = 0
    timed_steps: int = 0
    measuring_step: int | None = None
    measuring_step_time_s: float | None = None
    # figures
    models: tuple[ModelParams, ...] = ()
    persistent: PersistentBytes | None = None
    flops: FlopFigures | None = None
    live_memory: LiveMemory | None = None
    rss: RssFigures | None = None
    cuda_memory: CudaMemory | None = None
    step_time: TimingStats | None = None
    phase_time: dict[str, TimingStats] = field(default_factory=dict)
    steps: tuple[StepRecord, ...] = ()
    # RSS growth beyond the step peak: median timed-step RSS delta minus the step peak's growth (peak - start;
    # the tensor-level peak, or the allocator peak where the step ran compiled).  Memory neither the dispatcher
    # nor the allocator sees: memory outside torch (numpy arrays no tensor wraps), tensors made elsewhere that no
    # op reads, allocator caching.  None without both figures.
    untracked_bytes: int | None = None
    warnings: tuple[str, ...] = ()  # what a reader must know before trusting a figure
    # the allocator-level peak beside the tensor-level one (None in records made before it existed)
    allocator_memory: AllocatorMemory | None = None
    # the step's peak memory as the step runs: the tensor-level peak, or, where compiled code ran, the
    # allocator peak of the step that ran compiled; its execution ("eager" / "compiled") and source
    step_peak_bytes: int | None = None
    step_peak_execution: str | None = None
    step_peak_source: str | None = None  # "tensor-level" or "allocator"
    # per figure (flops, live_memory, allocator_memory, step_time, rss, cuda_memory): "eager" or "compiled"
    execution: dict[str, str] = field(default_factory=dict)
    # why the allocator-level and tensor-level peaks differ, where they differ by more than the tolerance
    # (records.profile.peak_tolerance_bytes); "" when they agree or either is missing
    peak_difference_note: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    # -- convenience figures -------------------------------------------------
    @property
    def params_total(self) -> int:
        return sum(m.params_total for m in self.models)

    @property
    def flops_per_step(self) -> int | None:
        return self.flops.flops_per_step if self.flops else None

    @property
    def peak_live_bytes(self) -> int | None:
        return self.live_memory.peak_live_bytes if self.live_memory else None

    @property
    def peak_rss_delta_bytes(self) -> int | None:
        return self.rss.peak_rss_delta_bytes if self.rss else None

    @property
    def allocator_peak_bytes(self) -> int | None:
        return self.allocator_memory.peak_bytes if self.allocator_memory else None

    @property
    def compiled(self) -> bool:
        """Whether compiled code ran in the profiled steps (some figure describes compiled execution)."""
        return COMPILED in self.execution.values()

    @property
    def step_time_s_median(self) -> float | None:
        return self.step_time.time_s_median if self.step_time else None

    def model(self, name: str) -> ModelParams:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_row(self) -> dict[str, Any]:
        """One flat dict of scalars (for CSV): units in every key."""
        row: dict[str, Any] = {
            "schema_version": self.schema_version,
            "status": self.status,
            "message": self.message,
            "arch": self.arch,
            "mode": self.mode,
            "batch_size": self.batch_size,
            "generator": self.generator,
        }
        for k, v in self.environment.to_dict().items():
            row[f"env_{k}"] = v
        row.update(
            warmup_steps=self.warmup_steps,
            active_steps=self.active_steps,
            timed_steps=self.timed_steps,
            measuring_step_time_s=self.measuring_step_time_s,
            params_total=self.params_total,
        )
        _row_static(self, row)
        _row_memory(self, row)
        _row_timing(self, row)
        return row


def _row_static(rec: ProfileRecord, row: dict[str, Any]) -> None:
    """The CSV columns of the models' parameters, the persistent state and the FLOPs."""
    for m in rec.models:
        p = f"model_{m.name}_"
        row[p + "params_total"] = m.params_total
        row[p + "params_trainable"] = m.params_trainable
        row[p + "params_frozen"] = m.params_frozen
        row[p + "buffer_elements"] = m.buffer_elements
        row[p + "param_bytes"] = m.param_bytes
        row[p + "buffer_bytes"] = m.buffer_bytes
    if rec.persistent is not None:
        pb = rec.persistent
        row.update(
            param_bytes=pb.param_bytes,
            buffer_bytes=pb.buffer_bytes,
            grad_bytes=pb.grad_bytes,
            optimizer_state_bytes=pb.optimizer_state_bytes,
            persistent_bytes=pb.total_bytes,
        )
    if rec.flops is not None:
        f = rec.flops
        row.update(
            flops_per_step=f.flops_per_step,
            forward_flops=f.forward_flops,
            backward_flops=f.backward_flops,
            flops_outside_modules=f.flops_outside_modules,
        )
        for ph, v in f.flops_by_phase.items():
            row[f"phase_{ph}_flops"] = v
        row["uncounted_ops"] = ";".join(f"{k}x{v}" for k, v in sorted(f.uncounted_ops.items()))


def _row_memory(rec: ProfileRecord, row: dict[str, Any]) -> None:
    """The CSV columns of the step's memory peaks: tensor-level, allocator, RSS and CUDA."""
    if rec.live_memory is not None:
        lm = rec.live_memory
        for fl in dataclasses.fields(lm):
            if fl.name.endswith("_bytes"):
                row[fl.name] = getattr(lm, fl.name)
        row["peak_live_delta_bytes"] = lm.peak_live_delta_bytes
        for ph, v in lm.peak_live_bytes_by_phase.items():
            row[f"phase_{ph}_peak_live_bytes"] = v
    if rec.allocator_memory is not None:
        am = rec.allocator_memory
        row.update(
            allocator_peak_bytes=am.peak_bytes,
            allocator_peak_delta_bytes=am.peak_delta_bytes,
            allocator_allocated_bytes=am.allocated_bytes,
            allocator_execution=am.execution,
            allocator_compiled_frames=am.compiled_frames,
        )
    if rec.step_peak_bytes is not None:
        row.update(step_peak_bytes=rec.step_peak_bytes, step_peak_execution=rec.step_peak_execution,
                   step_peak_source=rec.step_peak_source)
    for fig, ex in rec.execution.items():
        row[f"execution_{fig}"] = ex
    if rec.peak_difference_note:
        row["peak_difference_note"] = rec.peak_difference_note
    if rec.untracked_bytes is not None:
        row["untracked_bytes"] = rec.untracked_bytes
    if rec.rss is not None:
        row.update(
            rss_method=rec.rss.method,
            peak_rss_bytes=rec.rss.peak_rss_bytes,
            peak_rss_delta_bytes=rec.rss.peak_rss_delta_bytes,
            peak_rss_delta_bytes_median=rec.rss.peak_rss_delta_bytes_median,
            rss_baseline_bytes=rec.rss.rss_baseline_bytes,
        )
    if rec.cuda_memory is not None:
        row.update(
            cuda_max_memory_allocated_bytes=rec.cuda_memory.max_memory_allocated_bytes,
            cuda_max_memory_reserved_bytes=rec.cuda_memory.max_memory_reserved_bytes,
        )


def _row_timing(rec: ProfileRecord, row: dict[str, Any]) -> None:
    """The CSV columns of the step and phase times, and the record's extra context."""
    def timing(prefix: str, t: TimingStats) -> None:
        for fl in dataclasses.fields(t):
            if fl.name == "n":
                row[prefix + "n"] = t.n
            elif fl.name.startswith("time_s"):
                row[prefix + fl.name] = getattr(t, fl.name)
            else:
                row[prefix + "time_" + fl.name] = getattr(t, fl.name)

    if rec.step_time is not None:
        timing("step_", rec.step_time)
    for ph, t in rec.phase_time.items():
        timing(f"phase_{ph}_", t)
    for k, v in rec.extra.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            row[f"extra_{k}"] = v
        else:
            row[f"extra_{k}"] = json.dumps(v)


def records_to_csv(records: list[ProfileRecord], path_or_file: Any) -> None:
    """Write records as CSV (union of the rows' keys, in first-seen order); a record with ``to_rows``
    (a data-parallel profile) writes one row per rank."""
    import csv

    rows = [row for r in records for row in (r.to_rows() if hasattr(r, "to_rows") else [r.to_row()])]
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)

    def write(fh: Any) -> None:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)

    if hasattr(path_or_file, "write"):
        write(path_or_file)
    else:
        from pathlib import Path

        Path(path_or_file).parent.mkdir(parents=True, exist_ok=True)
        with open(path_or_file, "w", newline="") as fh:
            write(fh)


