"""Tables of gonprof's records, for the terminal (rich), for documents (Markdown) and for a report page
(HTML).  Render never measures: it only reads records.

Every column header says its unit: bytes are shown in MiB (2**20 bytes),
FLOPs in MFLOP / GFLOP (10**6 / 10**9; FLOPs = 2 x MACs), times in ms.
Each table is built once as a :class:`~.sheet.Sheet` (headers and cells as text) and drawn each way,
so all show the same columns with the same rounding.  One module per record kind, and one dispatch
(:func:`blocks_any`; :func:`render_any` draws it with rich, :func:`markdown_any` as Markdown):

- :mod:`.sheet`: the Sheet and Note blocks and their renderings;
- :mod:`.formats`: single values (:func:`format_bytes`, :func:`format_flops`, ...);
- :mod:`.profile`: ProfileRecords; :mod:`.compare`: compare and score rows;
- :mod:`.distributed`: data-parallel profiles (one row per rank and their spread);
- :mod:`.budget`: estimates, fits, scaling; :mod:`.zoo`: ``list`` and ``info``;
- :mod:`.width`: tables fitted to the terminal (:func:`fit_width`);
- :mod:`.markdown`: a results file as ``gonprof report --markdown`` prints it, with where it was measured;
- :mod:`.timeline`: where the memory goes, arranged for drawing (the measuring step's live bytes over the
  step, each module's bytes at the peak) and drawn as SVG;
- :mod:`.html`: a results file as one self-contained HTML page (``gonprof report --html``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group

from .budget import estimate_blocks, fit_blocks, render_estimate, render_fit, render_scaling, scaling_blocks
from .compare import claims_sheet, claims_table, compare_sheets, compare_table, score_sheet, score_table
from .distributed import allreduce_table, distributed_blocks, ranks_table, render_distributed
from .formats import MIB, format_bytes, format_count, format_flops, format_seconds
from .levers import lever_blocks, lever_sheet, render_levers
from .profile import (
    flops_table,
    memory_table,
    params_table,
    print_record,
    record_blocks,
    records_sheet,
    render_record,
    render_records,
    summary_table,
    timing_table,
    uncounted_table,
)
from .sheet import Note, Sheet, to_markdown, to_rich
from .width import DESCRIPTIVE, fit_width, stacked, whole_numbers
from .zoo import arch_report, architectures_table, mode_report, modes_table

__all__ = [
    "lever_blocks", "lever_sheet", "render_levers",
    "MIB", "format_bytes", "format_count", "format_flops", "format_seconds",
    "summary_table", "params_table", "memory_table", "flops_table", "uncounted_table", "timing_table",
    "render_record", "render_records", "print_record",
    "claims_table", "compare_table", "score_table", "render_distributed", "ranks_table", "allreduce_table",
    "render_estimate", "render_fit", "render_scaling",
    "architectures_table", "modes_table", "mode_report", "arch_report",
    "DESCRIPTIVE", "fit_width", "stacked", "whole_numbers", "render_any",
    "Sheet", "Note", "to_rich", "to_markdown", "blocks_any", "markdown_any", "record_blocks", "records_sheet",
    "compare_sheets", "score_sheet", "claims_sheet", "estimate_blocks", "fit_blocks", "scaling_blocks",
    "distributed_blocks",
]


def blocks_any(records: Iterable[Any], preset: str | None = None, verdicts: Sequence[Any] = ()) -> list[Sheet | Note]:
    """Whatever a results file held, by record type, as tables and notes: compare rows as their tables,
    estimates / fits / scaling / data-parallel records each their way, one profile in full, several
    profiles as one table; then the claims table when there are ``verdicts`` on ``preset``'s claims."""
    from gonprof.records import (
        DistributedProfileRecord,
        FitRecord,
        LeverRecord,
        MemoryEstimate,
        RunRecord,
        ScalingRecord,
    )

    records = list(records)
    blocks: list[Sheet | Note]
    if records and isinstance(records[0], RunRecord):
        if all(r.kind == "floor" or r.mode == "score" for r in records):  # written by `gonprof score`
            blocks = [score_sheet(records)]
        else:
            blocks = list(compare_sheets(records))
    elif len(records) == 1 and not isinstance(records[0], (MemoryEstimate, FitRecord, ScalingRecord,
                                                          DistributedProfileRecord, LeverRecord)):
        blocks = record_blocks(records[0])
    else:
        blocks = []
        for cls, fn in ((MemoryEstimate, estimate_blocks), (FitRecord, fit_blocks), (ScalingRecord, scaling_blocks),
                        (DistributedProfileRecord, distributed_blocks), (LeverRecord, lever_blocks)):
            if records and all(isinstance(r, cls) for r in records):
                blocks = [b for r in records for b in fn(r)]
                break
        else:
            blocks = [records_sheet(records)]
    if verdicts:
        blocks.append(claims_sheet(verdicts, f"the claims of preset {preset}"))
    return blocks


def render_any(records: Iterable[Any], preset: str | None = None, verdicts: Sequence[Any] = ()) -> Group:
    """:func:`blocks_any` drawn for the terminal."""
    return to_rich(blocks_any(records, preset, verdicts))


def markdown_any(records: Iterable[Any], preset: str | None = None, verdicts: Sequence[Any] = ()) -> str:
    """:func:`blocks_any` as GitHub-flavoured Markdown: the same columns and rounding as :func:`render_any`."""
    return to_markdown(blocks_any(records, preset, verdicts))
