"""The lever table of ``gonprof profile --levers``: one step profiled under each memory lever, side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import SCHEMA_VERSION, JsonRecord
from .profile import Environment


@dataclass(frozen=True)
class LeverRow(JsonRecord):
    """One lever (or none: the baseline, or the best pair) profiled.

    ``tensor_peak_bytes``: the tensor-level step peak (:attr:`LiveMemory.peak_live_bytes`);
    ``allocator_peak_bytes``: the allocator's (:attr:`AllocatorMemory.peak_bytes`), where one was taken;
    ``estimated_peak_bytes``: the estimator's tensor-level peak for the same request (meta tensors);
    ``saving_fraction``: ``1 - tensor_peak_bytes / baseline's`` (0.35: 35% below the baseline);
    ``flops_per_step``: every FLOP the step ran (a checkpoint's recomputed forwards included);
    ``step_time_s``: the median timed step; ``time_ratio``: it over the baseline's (measured in the same run);
    ``float32_flops_fraction``: the share of the FLOPs that computed in float32 (under bf16: what autocast
    left in float32); ``note``: where the lever may change what the step learns.
    """

    label: str
    levers: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    message: str = ""
    tensor_peak_bytes: int | None = None
    allocator_peak_bytes: int | None = None
    estimated_peak_bytes: int | None = None
    saving_fraction: float | None = None
    flops_per_step: int | None = None
    step_time_s: float | None = None
    time_ratio: float | None = None
    float32_flops_fraction: float | None = None
    float32_operators: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class LeverRecord(JsonRecord):
    """``gonprof profile --levers``: the baseline, each lever alone and the best pair of the two that saved
    most, for one request, profiled one after another in one process (so the time ratios compare like with
    like)."""

    schema_version: int = SCHEMA_VERSION
    status: str = "ok"
    message: str = ""
    arch: str | None = None
    mode: str | None = None
    generator: str | None = None
    batch_size: int | None = None
    device: str = "cpu"
    environment: Environment | None = None
    rows: tuple[LeverRow, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # lever -> why it was not run (its rule refused it)
    notes: tuple[str, ...] = ()

    def row(self, label: str) -> LeverRow:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(label)
