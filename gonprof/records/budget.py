"""Records of the memory budget tools: estimates, batch-size fits, scaling fits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import SCHEMA_VERSION, JsonRecord
from .profile import Environment, ModuleMemory, PersistentBytes


@dataclass(frozen=True)
class MemoryEstimate(JsonRecord):
    """A step's memory predicted without allocating it (meta tensors through the live-bytes tracker).

    ``peak_live_bytes`` and its ``peak_live_*`` split mean what they mean in
    :class:`LiveMemory` (tensor storages incl. the persistent state; the part
    of the input batch the step reads is ``peak_live_external_bytes``), taken
    as the worst over the steps run and over the ways data-dependent branches
    can go.  ``input_bytes`` is the batch (images float32 + int64 labels).
    ``peak_bytes`` is the figure to hold against a memory budget: on ``cpu``
    ``peak_live_bytes - peak_live_external_bytes + input_bytes`` (the whole
    batch, read or not); on ``cuda`` ``cuda_max_memory_allocated_bytes``, the
    same storages each rounded up as the CUDA caching allocator does
    (``rounding``).  Reserved memory (``max_memory_reserved``) is not
    estimated.  ``peak_phase`` and ``peak_modules``: the phase running at the
    peak and every module's bytes there (as in :class:`LiveMemory`).
    """

    schema_version: int = SCHEMA_VERSION
    arch: str | None = None
    mode: str | None = None
    generator: str | None = None
    batch_size: int = 0
    device: str = "cpu"
    method: str = "meta"
    input_shape: tuple[int, ...] = ()
    hparams: dict[str, Any] = field(default_factory=dict)
    peak_bytes: int = 0
    peak_live_bytes: int = 0
    peak_live_param_bytes: int = 0
    peak_live_buffer_bytes: int = 0
    peak_live_grad_bytes: int = 0
    peak_live_optimizer_state_bytes: int = 0
    peak_live_activation_bytes: int = 0
    peak_live_external_bytes: int = 0
    peak_live_replay_bytes: int = 0
    peak_phase: str = ""
    peak_modules: list[ModuleMemory] = field(default_factory=list)
    start_live_bytes: int = 0
    end_live_bytes: int = 0
    peak_live_bytes_by_step: tuple[int, ...] = ()
    peak_live_bytes_by_phase: dict[str, int] = field(default_factory=dict)
    input_bytes: int = 0
    persistent: PersistentBytes | None = None
    cuda_max_memory_allocated_bytes: int | None = None
    cuda_peak_live_rounded_bytes: int | None = None
    rounding: str = "none (storage bytes)"
    worst_case: str = ""
    data_dependent_reads: int = 0
    steps_run: int = 0
    elapsed_s: float = 0.0
    notes: tuple[str, ...] = ()
    levers: dict[str, Any] = field(default_factory=dict)  # the request's memory levers (gonprof.levers)


@dataclass(frozen=True)
class BatchTrial(JsonRecord):
    """One trial of a batch-size search or scaling sweep.

    ``peak_bytes`` is the figure compared with the budget (see
    ``FitRecord.compared``); the others are shown beside it.  ``status``:
    ``fits``, ``too-big``, ``oom`` (the step raised out-of-memory), ``killed``
    (the trial process died, e.g. at the memory cap or by the OOM killer),
    ``error`` (anything else; stops a search), ``lost`` (its Ray worker or node
    died; stops a search) or ``measured`` (a scaling point, no budget).
    """

    batch_size: int
    status: str
    peak_bytes: int | None = None
    peak_live_bytes: int | None = None
    peak_live_external_bytes: int | None = None  # the part of the batch (and other external storages) in it
    input_bytes: int | None = None
    peak_rss_delta_bytes: int | None = None
    peak_rss_bytes: int | None = None
    rss_baseline_bytes: int | None = None
    cuda_max_memory_allocated_bytes: int | None = None
    cuda_max_memory_reserved_bytes: int | None = None
    step_time_s: float | None = None
    elapsed_s: float | None = None
    message: str = ""
    cpus: list[int] | None = None  # the cores the trial's worker was pinned to (--jobs N); None: any


@dataclass(frozen=True)
class _BatchSweepRecord(JsonRecord):
    """What a run over several batch sizes was asked, and how it went (``gonprof fit``, ``profile --scaling``).

    ``preset`` and ``hparams`` (the ``--set`` overrides, on top of the preset)
    are the request as given; ``compared`` says which peak each trial reports
    as ``peak_bytes``.
    """

    schema_version: int = SCHEMA_VERSION
    status: str = "ok"
    message: str = ""
    arch: str | None = None
    mode: str | None = None
    generator: str | None = None
    preset: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    estimate: bool = False
    compared: str = ""
    environment: Environment | None = None
    notes: tuple[str, ...] = ()
    levers: dict[str, Any] = field(default_factory=dict)  # the request's memory levers (gonprof.levers)


@dataclass(frozen=True)
class FitRecord(_BatchSweepRecord):
    """The largest batch size whose step peak stays within ``memory_bytes``.

    ``batch_size`` is the answer (0: not even a batch of 1 fits; None: the
    search stopped on an error).  ``first_too_big`` is the smallest size seen
    not to fit (None if ``max_batch`` fitted).  ``compared`` says which peak
    was held against the budget; ``trials`` lists every trial in the order run.
    """

    memory_bytes: int = 0
    batch_size: int | None = None
    first_too_big: int | None = None
    max_batch: int = 0
    search: str = "exponential (1, 2, 4, ...) then binary search between the last fit and the first failure"
    trials: tuple[BatchTrial, ...] = ()

    def trial(self, batch_size: int) -> BatchTrial:
        for t in self.trials:
            if t.batch_size == batch_size:
                return t
        raise KeyError(batch_size)


@dataclass(frozen=True)
class LinearFit(JsonRecord):
    """``y = intercept + slope * x`` by least squares; ``r2`` = 1 - SS_res / SS_tot (1.0 when SS_tot = 0)."""

    intercept: float
    slope: float
    r2: float
    n: int


@dataclass(frozen=True)
class ScalingRecord(_BatchSweepRecord):
    """Peak memory and step time against batch size, fitted as fixed + per-sample.

    ``memory_fit``: bytes = fixed bytes (``intercept``) + bytes per sample
    (``slope``) x batch size, on each point's ``peak_bytes`` (the same figure
    :class:`FitRecord` compares; see ``compared``).  ``time_fit``: seconds
    likewise (None for estimates, which do not time).
    """

    points: tuple[BatchTrial, ...] = ()
    memory_fit: LinearFit | None = None
    time_fit: LinearFit | None = None
