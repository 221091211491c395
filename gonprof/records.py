"""Typed, schema-versioned results of a profiled run.

Every quantity carries its unit in its field name (``..._bytes``, ``..._s``,
``flops_...``), so a record read back from JSON or a CSV row needs no legend.
Nothing here imports torch: records load and render without it.

Main type: :class:`ProfileRecord` (one profiled run).  Its parts:

- :class:`Environment`: torch / python / device / host facts.
- :class:`ModelParams`: per-model parameter and buffer counts and bytes.
- :class:`PersistentBytes`: parameter / buffer / gradient / optimizer-state
  bytes held between steps (exact, from the tensors).
- :class:`FlopFigures`: FLOPs of one whole step (FLOPs = 2 x MACs), per phase,
  per module and per operator, plus the ops that ran without a formula.
- :class:`LiveMemory`: tensor-level live bytes during the measuring step
  (peak, split by category).
- :class:`RssFigures`: the process's resident-set high-water mark per timed step.
- :class:`CudaMemory`: ``max_memory_allocated`` / ``max_memory_reserved``.
- :class:`TimingStats`: median / p10 / p90 / mean of step (or phase) times.
- :class:`StepRecord`: the raw figures of each timed step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

SCHEMA_VERSION = 1

#: Allowed values of ``ProfileRecord.status``.
STATUSES = ("ok", "oom", "nan", "error", "interrupted")

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
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _from_plain(args[0], value)
        return value
    if dataclasses.is_dataclass(tp):
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


def _dataclass_from_dict(cls: type, data: dict) -> Any:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _from_plain(hints[f.name], data[f.name])
    return cls(**kwargs)


class _Serialisable:
    def to_dict(self) -> dict:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict):
        return _dataclass_from_dict(cls, data)


# --------------------------------------------------------------------------
# parts
# --------------------------------------------------------------------------


def host_load() -> dict:
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
    out = {"load_average_1m": load, "cpu_count": cores, "overloaded": load > cores}
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
    cuda_version: Optional[str] = None
    gonprof_version: str = ""
    torch_threads: Optional[int] = None  # torch.get_num_threads() when captured
    load_average_1m: Optional[float] = None  # the host's 1-minute load average when captured

    @classmethod
    def capture(cls, device: Any = "cpu") -> "Environment":
        """Facts about this process (imports torch)."""
        import os
        import platform as _platform
        import socket

        import torch

        from ._version import __version__

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
    method: str = "TorchDispatchMode over torch.utils.flop_counter.flop_registry; FLOPs = 2 x MACs"


@dataclass(frozen=True)
class LiveMemory(_Serialisable):
    """Tensor-level live bytes during the measuring step (storage bytes, device-independent).

    Live = persistent state known at the step's start (parameters, buffers,
    gradients, optimizer state) plus every storage allocated by an op during
    the step, until it is freed.  The ``peak_live_*`` split is taken at the
    moment of the peak; a storage counts as gradient / optimizer state when it
    is one at the end of the step (or was one at the start).
    ``peak_live_activation_bytes`` = activations and temporaries.
    Tensors made before the step and not known to the profiler (e.g. the
    input batch) are not counted.
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

    @property
    def peak_live_delta_bytes(self) -> int:
        return self.peak_live_bytes - self.start_live_bytes


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
    rss_start_bytes: Optional[int] = None
    peak_rss_bytes: Optional[int] = None
    phase_time_s: dict[str, float] = field(default_factory=dict)
    cuda_max_memory_allocated_bytes: Optional[int] = None
    cuda_max_memory_reserved_bytes: Optional[int] = None

    @property
    def peak_rss_delta_bytes(self) -> Optional[int]:
        if self.peak_rss_bytes is None or self.rss_start_bytes is None:
            return None
        return self.peak_rss_bytes - self.rss_start_bytes


# --------------------------------------------------------------------------
# the record
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRecord(_Serialisable):
    """One profiled run: what was measured, on what, and whether it went well."""

    schema_version: int = SCHEMA_VERSION
    status: str = "ok"
    message: str = ""
    environment: Environment = field(default_factory=Environment)
    # context, filled by callers (CLI / api)
    arch: Optional[str] = None
    mode: Optional[str] = None
    batch_size: Optional[int] = None
    generator: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    # schedule
    warmup_steps: int = 0
    active_steps: int = 0
    timed_steps: int = 0
    measuring_step: Optional[int] = None
    measuring_step_time_s: Optional[float] = None
    # figures
    models: tuple[ModelParams, ...] = ()
    persistent: Optional[PersistentBytes] = None
    flops: Optional[FlopFigures] = None
    live_memory: Optional[LiveMemory] = None
    rss: Optional[RssFigures] = None
    cuda_memory: Optional[CudaMemory] = None
    step_time: Optional[TimingStats] = None
    phase_time: dict[str, TimingStats] = field(default_factory=dict)
    steps: tuple[StepRecord, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    # -- convenience figures -------------------------------------------------
    @property
    def params_total(self) -> int:
        return sum(m.params_total for m in self.models)

    @property
    def flops_per_step(self) -> Optional[int]:
        return self.flops.flops_per_step if self.flops else None

    @property
    def peak_live_bytes(self) -> Optional[int]:
        return self.live_memory.peak_live_bytes if self.live_memory else None

    @property
    def peak_rss_delta_bytes(self) -> Optional[int]:
        return self.rss.peak_rss_delta_bytes if self.rss else None

    @property
    def step_time_s_median(self) -> Optional[float]:
        return self.step_time.time_s_median if self.step_time else None

    def model(self, name: str) -> ModelParams:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    # -- (de)serialisation ---------------------------------------------------
    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> "ProfileRecord":
        data = json.loads(text)
        version = data.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"record schema_version {version} is newer than this gonprof understands ({SCHEMA_VERSION})"
            )
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "ProfileRecord":
        return dataclasses.replace(self, **changes)

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
        for m in self.models:
            p = f"model_{m.name}_"
            row[p + "params_total"] = m.params_total
            row[p + "params_trainable"] = m.params_trainable
            row[p + "params_frozen"] = m.params_frozen
            row[p + "buffer_elements"] = m.buffer_elements
            row[p + "param_bytes"] = m.param_bytes
            row[p + "buffer_bytes"] = m.buffer_bytes
        if self.persistent is not None:
            pb = self.persistent
            row.update(
                param_bytes=pb.param_bytes,
                buffer_bytes=pb.buffer_bytes,
                grad_bytes=pb.grad_bytes,
                optimizer_state_bytes=pb.optimizer_state_bytes,
                persistent_bytes=pb.total_bytes,
            )
        if self.flops is not None:
            f = self.flops
            row.update(
                flops_per_step=f.flops_per_step,
                forward_flops=f.forward_flops,
                backward_flops=f.backward_flops,
                flops_outside_modules=f.flops_outside_modules,
            )
            for ph, v in f.flops_by_phase.items():
                row[f"phase_{ph}_flops"] = v
            row["uncounted_ops"] = ";".join(f"{k}x{v}" for k, v in sorted(f.uncounted_ops.items()))
        if self.live_memory is not None:
            lm = self.live_memory
            for fl in dataclasses.fields(lm):
                if fl.name.endswith("_bytes"):
                    row[fl.name] = getattr(lm, fl.name)
            row["peak_live_delta_bytes"] = lm.peak_live_delta_bytes
            for ph, v in lm.peak_live_bytes_by_phase.items():
                row[f"phase_{ph}_peak_live_bytes"] = v
        if self.rss is not None:
            row.update(
                rss_method=self.rss.method,
                peak_rss_bytes=self.rss.peak_rss_bytes,
                peak_rss_delta_bytes=self.rss.peak_rss_delta_bytes,
                peak_rss_delta_bytes_median=self.rss.peak_rss_delta_bytes_median,
                rss_baseline_bytes=self.rss.rss_baseline_bytes,
            )
        if self.cuda_memory is not None:
            row.update(
                cuda_max_memory_allocated_bytes=self.cuda_memory.max_memory_allocated_bytes,
                cuda_max_memory_reserved_bytes=self.cuda_memory.max_memory_reserved_bytes,
            )

        def timing(prefix: str, t: TimingStats) -> None:
            for fl in dataclasses.fields(t):
                if fl.name == "n":
                    row[prefix + "n"] = t.n
                elif fl.name.startswith("time_s"):
                    row[prefix + fl.name] = getattr(t, fl.name)
                else:
                    row[prefix + "time_" + fl.name] = getattr(t, fl.name)

        if self.step_time is not None:
            timing("step_", self.step_time)
        for ph, t in self.phase_time.items():
            timing(f"phase_{ph}_", t)
        for k, v in self.extra.items():
            if isinstance(v, (str, int, float, bool)) or v is None:
                row[f"extra_{k}"] = v
            else:
                row[f"extra_{k}"] = json.dumps(v)
        return row


def records_to_csv(records: "list[ProfileRecord]", path_or_file: Any) -> None:
    """Write records as CSV (union of the rows' keys, in first-seen order)."""
    import csv

    rows = [r.to_row() for r in records]
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
        with open(path_or_file, "w", newline="") as fh:
            write(fh)


@dataclass(frozen=True)
class QualityRecord(_Serialisable):
    """Quality of one sample set; every figure is at ``n_samples`` vs ``n_reference``."""

    fid: float
    kid_mean: float
    kid_std: float
    precision: float
    recall: float
    density: float
    coverage: float
    class_coverage: float
    class_entropy_nats: float
    mean_confidence: float
    classifier_score: float
    n_samples: int
    n_reference: int
    extractor: str = "gonprof-mnist-cnn-v1"  # gonprof.metrics.classifier.EXTRACTOR_NAME
    weights_hash: str = ""
    seed: int = 0
    kid_subsets: int = 100  # gonprof.metrics.kid.KID_SUBSETS
    kid_subset_size: int = 1000  # gonprof.metrics.kid.KID_SUBSET_SIZE
    classes: Optional[list] = None  # the kept classes scored against (None: all); coverage / entropy are over them
    predicted_classes: dict = dataclasses.field(default_factory=dict)  # class -> samples predicted as it
    on_class_fraction: Optional[float] = None  # share of samples predicted as a kept class (None: no selection)
    n_held_out: Optional[int] = None  # held-out real images of the kept classes the reference was drawn from

    @classmethod
    def from_dict(cls, d: dict) -> "QualityRecord":
        """Inverse of ``to_dict``; keys this version does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class RunRecord(_Serialisable):
    """One row of ``gonprof compare``: a (mode, architecture) pair trained, profiled and scored.

    ``kind`` is ``"run"`` for a trained pair and ``"floor"`` for the real-vs-real
    row (real held-out images scored like samples, at the same N).  A run that
    failed keeps its status and message and whatever was measured before.
    """

    schema_version: int = SCHEMA_VERSION
    kind: str = "run"
    status: str = "ok"
    message: str = ""
    mode: Optional[str] = None
    arch: Optional[str] = None
    generator: Optional[str] = None
    preset: Optional[str] = None
    batch_size: Optional[int] = None
    seed: int = 0
    device: str = "cpu"
    d_params: Optional[int] = None  # discriminator parameters (count)
    g_params: Optional[int] = None  # generator parameters (count); None when the mode has none
    train_steps: Optional[int] = None  # optimization steps trained before scoring
    train_time_s: Optional[float] = None  # wall time of those steps
    time_budget_s: Optional[float] = None
    profile: Optional[ProfileRecord] = None  # figures of steps profiled after training
    quality: Optional[QualityRecord] = None
    samples_png: Optional[str] = None  # the run's final sample grid
    run_dir: Optional[str] = None
    wall_time_s: Optional[float] = None  # the whole row: train + profile + score
    variant: Optional[str] = None  # a preset row's name for its own hyper-parameters (e.g. "inner sgd")
    hparams: dict = field(default_factory=dict)  # the overrides this row ran with
    classes: Optional[list] = None  # data selection: kept labels (None: all)
    per_class: Optional[int] = None  # data selection: first N training images of each kept class

    @property
    def label(self) -> str:
        if self.kind == "floor":
            return "real (floor)"
        return f"{self.mode} / {self.arch}" + (f" ({self.variant})" if self.variant else "")

    @classmethod
    def from_json(cls, text: str) -> "RunRecord":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "RunRecord":
        return dataclasses.replace(self, **changes)

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "kind": self.kind, "status": self.status, "message": self.message, "mode": self.mode,
            "arch": self.arch, "generator": self.generator, "batch_size": self.batch_size, "seed": self.seed,
            "device": self.device, "d_params": self.d_params, "g_params": self.g_params,
            "train_steps": self.train_steps, "train_time_s": self.train_time_s, "wall_time_s": self.wall_time_s,
            "variant": self.variant, "classes": self.classes, "per_class": self.per_class,
        }
        if self.profile is not None:
            row.update({f"profile.{k}": v for k, v in self.profile.to_row().items()
                        if k not in ("arch", "mode", "batch_size", "generator", "status", "message")})
        if self.quality is not None:
            row.update({f"quality.{k}": v for k, v in self.quality.to_dict().items()})
        return row


def peak_memory_bytes(rec: RunRecord) -> Optional[int]:
    """The memory figure compare rows are ranked by: the tensor-level peak of a profiled step."""
    return rec.profile.peak_live_bytes if rec.profile is not None else None


def pareto_front(rows: "list[RunRecord]") -> set[int]:
    """Indices of the trained rows no other row beats on both peak memory and FID (lower is better)."""
    pts = [(i, peak_memory_bytes(r), r.quality.fid) for i, r in enumerate(rows)
           if r.kind == "run" and r.status == "ok" and r.quality is not None and peak_memory_bytes(r) is not None
           and math.isfinite(r.quality.fid)]
    front = set()
    for i, m, f in pts:
        dominated = any((m2 <= m and f2 <= f) and (m2 < m or f2 < f) for j, m2, f2 in pts if j != i)
        if not dominated:
            front.add(i)
    return front


class RequestError(ValueError):
    """A request that cannot be made as asked (a device that is not here, a bad option value); one line."""


class RecordError(ValueError):
    """A results file is missing, unreadable or not gonprof's; the message is one line."""


#: Record types a results file may hold, by the ``kind`` written beside them.
RECORD_KINDS: dict[str, type] = {"profile": ProfileRecord, "compare": RunRecord}


def save_records(records: "list[Any]", path: Any) -> None:
    """Write records to a JSON file, atomically (a crash never leaves half a file).

    The file is ``{"gonprof": version, "kind": ..., "schema_version": ...,
    "records": [...]}``; :func:`load_records` reads it back.
    """
    from pathlib import Path

    from ._version import __version__

    kinds = {_kind_of(r) for r in records}
    if len(kinds) > 1:
        raise ValueError(f"cannot save records of different kinds together: {sorted(kinds)}")
    payload = {"gonprof": __version__, "kind": kinds.pop() if kinds else "profile",
               "schema_version": SCHEMA_VERSION, "records": [r.to_dict() for r in records]}
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(payload, indent=2, allow_nan=True))


def atomic_write(path: Any, data: "str | bytes | Any") -> None:
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


def classify_failure(exc: BaseException) -> "tuple[str, str]":
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


def load_records(path: Any) -> "list[Any]":
    """Read a file written by :func:`save_records` (or one bare record)."""
    from pathlib import Path

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict) and "records" in data:
        kind, items = data.get("kind", "profile"), data["records"]
    elif isinstance(data, dict) and "schema_version" in data:
        kind, items = "profile", [data]
    else:
        raise RecordError(f"{path}: not a gonprof results file")
    cls = RECORD_KINDS.get(kind)
    if cls is None:
        raise RecordError(f"{path}: unknown record kind {kind!r}")
    try:
        return [cls.from_json(json.dumps(item)) for item in items]
    except (TypeError, ValueError, KeyError) as exc:
        raise RecordError(f"{path}: malformed {kind} record ({exc})") from None


def _kind_of(record: Any) -> str:
    for kind, cls in RECORD_KINDS.items():
        if isinstance(record, cls):
            return kind
    raise TypeError(f"not a gonprof record: {type(record).__name__}")


# --------------------------------------------------------------------------
# memory budget records: estimates, batch-size fits, scaling fits
# --------------------------------------------------------------------------


class _JsonRecord(_Serialisable):
    """to_json / from_json / replace for the records below (same file format as ProfileRecord)."""

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=True)

    @classmethod
    def from_json(cls, text: str):
        data = json.loads(text)
        version = data.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"record schema_version {version} is newer than this gonprof understands ({SCHEMA_VERSION})"
            )
        return cls.from_dict(data)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class MemoryEstimate(_JsonRecord):
    """A step's memory predicted without allocating it (meta tensors through the live-bytes tracker).

    ``peak_live_bytes`` and its ``peak_live_*`` split mean what they mean in
    :class:`LiveMemory` (tensor storages incl. the persistent state; the input
    batch not counted), taken as the worst over the steps run and over the
    ways data-dependent branches can go.  ``input_bytes`` is the batch (images
    float32 + int64 labels).  ``peak_bytes`` is the figure to hold against a
    memory budget: on ``cpu`` ``peak_live_bytes + input_bytes``; on ``cuda``
    ``cuda_max_memory_allocated_bytes``, the same storages each rounded up as
    the CUDA caching allocator does (``rounding``).  Reserved memory
    (``max_memory_reserved``) is not estimated.
    """

    schema_version: int = SCHEMA_VERSION
    arch: Optional[str] = None
    mode: Optional[str] = None
    generator: Optional[str] = None
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
    start_live_bytes: int = 0
    end_live_bytes: int = 0
    peak_live_bytes_by_step: tuple[int, ...] = ()
    peak_live_bytes_by_phase: dict[str, int] = field(default_factory=dict)
    input_bytes: int = 0
    persistent: Optional[PersistentBytes] = None
    cuda_max_memory_allocated_bytes: Optional[int] = None
    cuda_peak_live_rounded_bytes: Optional[int] = None
    rounding: str = "none (storage bytes)"
    worst_case: str = ""
    data_dependent_reads: int = 0
    steps_run: int = 0
    elapsed_s: float = 0.0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchTrial(_JsonRecord):
    """One trial of a batch-size search or scaling sweep.

    ``peak_bytes`` is the figure compared with the budget (see
    ``FitRecord.compared``); the others are shown beside it.  ``status``:
    ``fits``, ``too-big``, ``oom`` (the step raised out-of-memory), ``killed``
    (the trial process died, e.g. at the memory cap or by the OOM killer),
    ``error`` (anything else; stops a search) or ``measured`` (a scaling
    point, no budget).
    """

    batch_size: int
    status: str
    peak_bytes: Optional[int] = None
    peak_live_bytes: Optional[int] = None
    input_bytes: Optional[int] = None
    peak_rss_delta_bytes: Optional[int] = None
    peak_rss_bytes: Optional[int] = None
    rss_baseline_bytes: Optional[int] = None
    cuda_max_memory_allocated_bytes: Optional[int] = None
    cuda_max_memory_reserved_bytes: Optional[int] = None
    step_time_s: Optional[float] = None
    elapsed_s: Optional[float] = None
    message: str = ""


@dataclass(frozen=True)
class _BatchSweepRecord(_JsonRecord):
    """What a run over several batch sizes was asked, and how it went (``gonprof fit``, ``profile --scaling``).

    ``preset`` and ``hparams`` (the ``--set`` overrides, on top of the preset)
    are the request as given; ``compared`` says which peak each trial reports
    as ``peak_bytes``.
    """

    schema_version: int = SCHEMA_VERSION
    status: str = "ok"
    message: str = ""
    arch: Optional[str] = None
    mode: Optional[str] = None
    generator: Optional[str] = None
    preset: Optional[str] = None
    hparams: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    estimate: bool = False
    compared: str = ""
    environment: Optional[Environment] = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FitRecord(_BatchSweepRecord):
    """The largest batch size whose step peak stays within ``memory_bytes``.

    ``batch_size`` is the answer (0: not even a batch of 1 fits; None: the
    search stopped on an error).  ``first_too_big`` is the smallest size seen
    not to fit (None if ``max_batch`` fitted).  ``compared`` says which peak
    was held against the budget; ``trials`` lists every trial in the order run.
    """

    memory_bytes: int = 0
    batch_size: Optional[int] = None
    first_too_big: Optional[int] = None
    max_batch: int = 0
    search: str = "exponential (1, 2, 4, ...) then binary search between the last fit and the first failure"
    trials: tuple[BatchTrial, ...] = ()

    def trial(self, batch_size: int) -> BatchTrial:
        for t in self.trials:
            if t.batch_size == batch_size:
                return t
        raise KeyError(batch_size)


@dataclass(frozen=True)
class LinearFit(_JsonRecord):
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
    memory_fit: Optional[LinearFit] = None
    time_fit: Optional[LinearFit] = None


RECORD_KINDS.update({"estimate": MemoryEstimate, "fit": FitRecord, "scaling": ScalingRecord})
