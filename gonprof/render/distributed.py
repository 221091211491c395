"""Tables of a DistributedProfileRecord: one row per rank, then the spread over the ranks, then what DDP
all-reduced per step."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from gonprof.records import DistributedProfileRecord, RankRecord
from gonprof.records.distributed import rank_figure

from .formats import MIB, STATUS_STYLES, _mflop, _mib, _ms, _timing_cell, format_count
from .sheet import Note, Sheet, to_rich

SPREAD_LABEL = "spread"


def _title(rec: DistributedProfileRecord) -> str:
    parts = [p for p in (rec.arch, rec.mode) if p]
    parts.append(f"{rec.world_size} ranks ({rec.backend or '?'})")
    if rec.batch_size is not None:
        parts.append(f"batch {rec.batch_size} per rank, {rec.global_batch_size} in all")
    return "gonprof profile: " + " / ".join(parts)


def _uses_cuda(rec: DistributedProfileRecord) -> bool:
    return any(rank_figure(r, "cuda_max_memory_allocated_bytes") is not None for r in rec.ranks)


def _status(r: RankRecord) -> Text:
    return Text(r.status, style=STATUS_STYLES.get(r.status, "red"))


def _spread_cell(span: tuple | None, fmt) -> str:
    if span is None:
        return "-"
    return fmt(span[1] - span[0])


def ranks_table(rec: DistributedProfileRecord) -> Table:
    """The ranks table (:func:`ranks_sheet`) for the terminal."""
    return ranks_sheet(rec).to_rich()


def ranks_sheet(rec: DistributedProfileRecord) -> Sheet:
    """One row per rank and a spread row (max - min over the ranks; step time also as max / min)."""
    cuda = _uses_cuda(rec)
    memory_col = "CUDA max allocated (MiB)" if cuda else "peak RSS delta (MiB)"
    memory_fig = "cuda_max_memory_allocated_bytes" if cuda else "peak_rss_delta_bytes"
    t = Sheet(title=_title(rec), header_style="bold",
              caption="spread: max - min over the ranks (step median also as max / min)")
    for col in ("rank", "status", "FLOPs/step (MFLOP)", "peak live (MiB)", memory_col, "step median (ms)",
                "all-reduced per step (MiB)"):
        t.add_column(col, "left" if col in ("rank", "status") else "right")
    for r in rec.ranks:
        st = r.profile.step_time if r.profile is not None else None
        t.add_row(
            str(r.rank),
            _status(r),
            _mflop(rank_figure(r, "flops_per_step")),
            _mib(rank_figure(r, "peak_live_bytes")),
            _mib(rank_figure(r, memory_fig)),
            _timing_cell(st),
            _mib(rank_figure(r, "allreduce_bytes_per_step")),
        )
    spread = rec.spread()
    step = spread.get("step_time_s_median")
    step_cell = "-"
    if step is not None:
        step_cell = _ms(step[1] - step[0]) + (f" (x{step[1] / step[0]:.2f})" if step[0] > 0 else "")
    t.add_row(
        Text(SPREAD_LABEL, style="bold"), "",
        _spread_cell(spread.get("flops_per_step"), _mflop),
        _spread_cell(spread.get("peak_live_bytes"), _mib),
        _spread_cell(spread.get(memory_fig), _mib),
        step_cell,
        _spread_cell(spread.get("allreduce_bytes_per_step"), _mib),
    )
    return t


def allreduce_table(rec: DistributedProfileRecord) -> Table | None:
    """The all-reduce table (:func:`allreduce_sheet`) for the terminal."""
    sheet = allreduce_sheet(rec)
    return sheet.to_rich() if sheet is not None else None


def allreduce_sheet(rec: DistributedProfileRecord) -> Sheet | None:
    """What the first rank with figures all-reduced per step, by model and by phase, in exact bytes."""
    r = next((r for r in rec.ranks if r.comm is not None), None)
    if r is None:
        return None
    c = r.comm
    assert c is not None  # the rank was chosen for its figures
    t = Sheet(title=f"all-reduced per step (rank {r.rank}; every rank all-reduces the same buckets)",
              header_style="bold")
    t.add_column("what")
    t.add_column("bytes", "right")
    t.add_column("MiB", "right")
    for name, b in c.allreduce_bytes_by_model.items():
        t.add_row(f"model {name}", format_count(b), f"{b / MIB:,.2f}")
    for name, b in c.allreduce_bytes_by_phase.items():
        t.add_row(f"phase {name}", format_count(b), f"{b / MIB:,.2f}")
    t.add_row(Text("step total", style="bold"), format_count(c.allreduce_bytes_per_step),
              f"{c.allreduce_bytes_per_step / MIB:,.2f}")
    t.add_row("all-reduce calls (buckets)", format_count(c.allreduce_calls_per_step), "")
    return t


def _notes(rec: DistributedProfileRecord) -> Note:
    threads = rec.threads_per_rank if rec.threads_per_rank is not None else "?"
    seeds = "; rank r seeds its batches and noise with seed + r" if rec.extra.get("rank_seeds") else ""
    lines = [f"launcher: {rec.launcher or '-'}; device {rec.device}; torch threads per rank: {threads}{seeds}"]
    if rec.ddp:
        opts = ", ".join(f"{k}={v}" for k, v in rec.ddp.items() if k != "wrapped_models")
        wrapped = ", ".join(rec.ddp.get("wrapped_models", []))
        lines.append(f"DistributedDataParallel around {wrapped or '-'}: {opts}")
    envs = [r.profile.environment for r in rec.ranks if r.profile is not None]
    loads = [e.load_average_1m for e in envs if e.load_average_1m is not None]
    if loads:
        lines.append(f"load average at the ranks' start: up to {max(loads):g}, on {envs[0].cpu_count} cores")
    return Note("\n".join(lines))


def render_distributed(rec: DistributedProfileRecord) -> Group:
    """A data-parallel profile for the terminal (:func:`distributed_blocks`)."""
    return to_rich(distributed_blocks(rec))


def distributed_blocks(rec: DistributedProfileRecord) -> list[Sheet | Note]:
    """A data-parallel profile: the ranks table, what was all-reduced, notes, warnings and failures."""
    parts: list[Sheet | Note] = [ranks_sheet(rec)]
    comm = allreduce_sheet(rec)
    if comm is not None:
        parts.append(comm)
    parts.append(_notes(rec))
    if rec.warnings:
        parts.append(Note("\n".join(f"warning: {w}" for w in rec.warnings), style="yellow"))
    failed = [r for r in rec.ranks if r.status != "ok"]
    if failed:
        parts.append(Note("\n".join(f"rank {r.rank}: {r.status}: {r.message}" for r in failed), style="red"))
    return parts
