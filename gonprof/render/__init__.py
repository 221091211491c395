"""Rich tables of gonprof's records.  Render never measures: it only reads records.

Every column header says its unit: bytes are shown in MiB (2**20 bytes),
FLOPs in MFLOP / GFLOP (10**6 / 10**9; FLOPs = 2 x MACs), times in ms.
One module per record kind, and one dispatch (:func:`render_any`):

- :mod:`.formats`: single values (:func:`format_bytes`, :func:`format_flops`, ...);
- :mod:`.profile`: ProfileRecords; :mod:`.compare`: compare and score rows;
- :mod:`.distributed`: data-parallel profiles (one row per rank and their spread);
- :mod:`.budget`: estimates, fits, scaling; :mod:`.zoo`: ``list`` and ``info``;
- :mod:`.width`: tables fitted to the terminal (:func:`fit_width`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Group, RenderableType

from .budget import render_estimate, render_fit, render_scaling
from .compare import claims_table, compare_table, score_table
from .distributed import allreduce_table, ranks_table, render_distributed
from .formats import MIB, format_bytes, format_count, format_flops, format_seconds
from .profile import (
    flops_table,
    memory_table,
    params_table,
    print_record,
    render_record,
    render_records,
    summary_table,
    timing_table,
    uncounted_table,
)
from .width import DESCRIPTIVE, fit_width, stacked, whole_numbers
from .zoo import arch_report, architectures_table, mode_report, modes_table

__all__ = [
    "MIB", "format_bytes", "format_count", "format_flops", "format_seconds",
    "summary_table", "params_table", "memory_table", "flops_table", "uncounted_table", "timing_table",
    "render_record", "render_records", "print_record",
    "claims_table", "compare_table", "score_table", "render_distributed", "ranks_table", "allreduce_table",
    "render_estimate", "render_fit", "render_scaling",
    "architectures_table", "modes_table", "mode_report", "arch_report",
    "DESCRIPTIVE", "fit_width", "stacked", "whole_numbers", "render_any",
]


def render_any(records: Iterable[Any]) -> RenderableType:
    """Whatever a results file held, by record type: compare rows as their tables,
    estimates / fits / scaling / data-parallel records each their way, one profile in full, several
    profiles as one table."""
    from gonprof.records import DistributedProfileRecord, FitRecord, MemoryEstimate, RunRecord, ScalingRecord

    records = list(records)
    if records and isinstance(records[0], RunRecord):
        if all(r.kind == "floor" or r.mode == "score" for r in records):  # written by `gonprof score`
            return score_table(records)
        return compare_table(records)
    for cls, fn in ((MemoryEstimate, render_estimate), (FitRecord, render_fit), (ScalingRecord, render_scaling),
                    (DistributedProfileRecord, render_distributed)):
        if records and all(isinstance(r, cls) for r in records):
            return fn(records[0]) if len(records) == 1 else Group(*(fn(r) for r in records))
    if len(records) == 1:
        return render_record(records[0])
    return render_records(records)
