"""Tables of ProfileRecords: one profile in full, or several as one table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gonprof.records import ProfileRecord, TimingStats, peak_tolerance_bytes

from ..levers import lever_label
from .formats import (
    _mflop,
    _mib,
    _ms,
    _status,
    _timing_cell,
    _title,
    format_bytes,
    format_count,
    format_flops,
    format_seconds,
)
from .sheet import Note, Sheet, to_rich
from .width import fit_width

# --------------------------------------------------------------------------
# one record
# --------------------------------------------------------------------------


def summary_table(rec: ProfileRecord) -> Table:
    return summary_sheet(rec).to_rich()


def summary_sheet(rec: ProfileRecord) -> Sheet:
    t = Sheet(title=_title(rec), header_style="bold")
    t.add_column("figure")
    t.add_column("value", "right")
    t.add_column("what it counts")
    t.add_row("status", _status(rec), rec.message or "")
    t.add_row("device", rec.environment.device, rec.environment.device_name)
    t.add_row(
        "steps (count)",
        f"{rec.warmup_steps} + {rec.timed_steps}",
        "untimed (incl. the measuring step"
        + (", and the allocator step that ran compiled" if rec.step_peak_source == "allocator" else "") + ") + timed",
    )
    t.add_row("params (count)", format_count(rec.params_total), "all models, total")
    levers = rec.extra.get("levers") if isinstance(rec.extra, dict) else None
    if levers:
        t.add_row("precision", str(levers.get("precision", "fp32")),
                  "forwards under autocast, float32 master weights" if levers.get("precision", "fp32") != "fp32"
                  else "float32 throughout")
        others = ", ".join(p for p in lever_label({**levers, "precision": "fp32"}).split(", ") if p)
        if others:
            t.add_row("levers", others, "activation checkpointing, micro-batches per update, memory layout")
    eager_maths = "; eager maths of the compiled step" if rec.compiled else ""
    if rec.flops is not None:
        f = rec.flops
        t.add_row("FLOPs / step", format_flops(f.flops_per_step), "whole step, FLOPs = 2 x MACs" + eager_maths)
        t.add_row("  forward", format_flops(f.forward_flops), "outside the autograd engine")
        t.add_row("  backward", format_flops(f.backward_flops), "inside the autograd engine")
        if levers and levers.get("precision", "fp32") != "fp32" and f.float32_flops_by_operator:
            kept = sum(f.float32_flops_by_operator.values())
            t.add_row("  in float32", format_flops(kept),
                      "left in float32 by autocast: " + ", ".join(sorted(f.float32_flops_by_operator)))
    if rec.persistent is not None:
        p = rec.persistent
        t.add_row("persistent state", format_bytes(p.total_bytes), "params + buffers + grads + optimizer state")
    if rec.step_peak_bytes is not None and rec.step_peak_source == "allocator":
        t.add_row(Text("step peak", style="bold"), format_bytes(rec.step_peak_bytes),
                  f"{rec.step_peak_execution} execution: the allocator peak below")
    if rec.live_memory is not None:
        lm = rec.live_memory
        t.add_row("peak live tensors", format_bytes(lm.peak_live_bytes),
                  "tensor storages, incl. persistent state" + eager_maths)
        t.add_row("  activations", format_bytes(lm.peak_live_activation_bytes), "activations + temporaries at the peak")
    for row in allocator_rows(rec):
        t.add_row(*row)
    if rec.rss is not None:
        t.add_row(
            "peak RSS delta",
            format_bytes(rec.rss.peak_rss_delta_bytes),
            f"over RSS at step start ({format_bytes(rec.rss.rss_baseline_bytes)}), method {rec.rss.method}",
        )
    if rec.untracked_bytes is not None:
        t.add_row("RSS beyond the step peak", format_bytes(rec.untracked_bytes),
                  "median RSS delta minus the step peak's growth: memory neither tracker nor allocator sees")
    if rec.cuda_memory is not None:
        t.add_row("CUDA max allocated", format_bytes(rec.cuda_memory.max_memory_allocated_bytes), "reset per step")
        t.add_row("CUDA max reserved", format_bytes(rec.cuda_memory.max_memory_reserved_bytes), "reset per step")
    if rec.step_time is not None and rec.step_time.n:
        st = rec.step_time
        t.add_row(
            "step time median",
            format_seconds(st.time_s_median),
            f"p10 {format_seconds(st.time_s_p10)}, p90 {format_seconds(st.time_s_p90)}, n={st.n}"
            + (f"; NOISY: spread {st.spread:.0%} > {st.noisy_threshold:.0%}" if st.noisy else ""),
        )
    return t


def allocator_rows(rec: ProfileRecord) -> list[tuple[Any, str, Any]]:
    """The allocator-level peak beside the tensor-level one, their difference, and why they differ."""
    am = rec.allocator_memory
    if am is None:
        return []
    source = "CUDA max_memory_allocated" if am.method.startswith("torch.cuda") else "CPU allocator events"
    rows: list[tuple[Any, str, Any]] = [(
        "allocator peak", format_bytes(am.peak_bytes),
        f"{source}, untimed step {am.step}, {am.execution} execution; persistent state + allocator growth")]
    lm = rec.live_memory
    if lm is not None:
        basis = lm.peak_live_bytes - lm.peak_live_external_bytes  # no allocator served the external storages
        diff = am.peak_bytes - basis
        value = ("+" if diff > 0 else "") + format_bytes(diff)
        less = " (tensors less external)" if lm.peak_live_external_bytes else ""
        if rec.peak_difference_note:
            rows.append((f"  allocator - tensors{less}", value, Text(rec.peak_difference_note, style="yellow")))
        else:
            tol = peak_tolerance_bytes(basis)
            rows.append((f"  allocator - tensors{less}", value,
                         f"within tolerance ({format_bytes(tol)}: 5% + 1 MiB)"))
    return rows


def params_table(rec: ProfileRecord) -> Table:
    return params_sheet(rec).to_rich()


def params_sheet(rec: ProfileRecord) -> Sheet:
    t = Sheet(title="parameters", header_style="bold")
    for col in ("model", "total (count)", "trainable (count)", "frozen (count)", "buffers (elements)", "params (MiB)",
                "buffers (MiB)", "dtypes"):
        t.add_column(col, "left" if col in ("model", "dtypes") else "right")
    for m in rec.models:
        t.add_row(
            m.name,
            format_count(m.params_total),
            format_count(m.params_trainable),
            format_count(m.params_frozen),
            format_count(m.buffer_elements),
            _mib(m.param_bytes),
            _mib(m.buffer_bytes),
            ", ".join(sorted(m.param_bytes_by_dtype)),
        )
    return t


def memory_table(rec: ProfileRecord) -> Table | None:
    return _rich(memory_sheet(rec))


def memory_sheet(rec: ProfileRecord) -> Sheet | None:
    p, lm = rec.persistent, rec.live_memory
    if p is None and lm is None:
        return None
    t = Sheet(title="memory (MiB = 2**20 bytes)", header_style="bold")
    t.add_column("category")
    t.add_column("persistent, end of step (MiB)", "right")
    t.add_column("at peak of live tensors (MiB)", "right")
    rows = [
        ("parameters", p.param_bytes if p else None, lm.peak_live_param_bytes if lm else None),
        ("buffers", p.buffer_bytes if p else None, lm.peak_live_buffer_bytes if lm else None),
        ("gradients", p.grad_bytes if p else None, lm.peak_live_grad_bytes if lm else None),
        ("optimizer state", p.optimizer_state_bytes if p else None, lm.peak_live_optimizer_state_bytes if lm else None),
        ("replay buffer", None, lm.peak_live_replay_bytes if lm else None),
        ("activations + temporaries", None, lm.peak_live_activation_bytes if lm else None),
        ("external (batch, foreign memory)", None, lm.peak_live_external_bytes if lm else None),
        ("total", p.total_bytes if p else None, lm.peak_live_bytes if lm else None),
    ]
    for name, a, b in rows:
        t.add_row(name, _mib(a), _mib(b))
    return t


#: Modules the profile table shows at the peak (the record holds every one).
TOP_MODULES = 5


def peak_modules_sheet(rec: ProfileRecord, top: int = TOP_MODULES) -> Sheet | None:
    """The ``top`` modules holding the most bytes at the peak of live tensors, each with its largest parts
    (category, direction, phase)."""
    lm = rec.live_memory
    if lm is None or not lm.peak_modules:
        return None
    parts: dict[str, list[tuple[int, str]]] = {}
    for m in lm.peak_modules:
        if m.module:
            where = " ".join(x for x in (m.category, m.direction if m.direction != "outside" else "", m.phase) if x)
            parts.setdefault(m.module, []).append((m.bytes_at_peak, where))
    if not parts:
        return None
    ranked = sorted(parts.items(), key=lambda kv: (-sum(b for b, _ in kv[1]), kv[0]))
    t = Sheet(title=f"modules at the peak of live tensors (top {min(top, len(ranked))} of {len(ranked)}; "
                    "MiB = 2**20 bytes)", header_style="bold")
    t.add_column("module")
    t.add_column("at peak (MiB)", "right")
    t.add_column("share of peak (%)", "right")
    t.add_column("made as (MiB): category, direction, phase")
    for name, rows in ranked[:top]:
        total = sum(b for b, _ in rows)
        share = f"{100 * total / lm.peak_live_bytes:.1f}" if lm.peak_live_bytes else ""
        made = "; ".join(f"{w} {_mib(b)}" for b, w in sorted(rows, key=lambda r: (-r[0], r[1]))[:3])
        t.add_row(name, _mib(total), share, made + ("; ..." if len(rows) > 3 else ""))
    return t


def flops_table(rec: ProfileRecord, max_modules: int = 25) -> Table | None:
    return _rich(flops_sheet(rec, max_modules))


def flops_sheet(rec: ProfileRecord, max_modules: int = 25) -> Sheet | None:
    f = rec.flops
    if f is None:
        return None
    t = Sheet(title="FLOPs of one step (MFLOP = 10**6 FLOPs; FLOPs = 2 x MACs)", header_style="bold")
    t.add_column("where")
    t.add_column("type")
    t.add_column("forward (MFLOP)", "right")
    t.add_column("backward (MFLOP)", "right")
    t.add_column("total (MFLOP)", "right")
    for m in f.flops_by_module[:max_modules]:
        depth = m.module.count(".")
        t.add_row("  " * depth + m.module, m.module_type, _mflop(m.forward_flops), _mflop(m.backward_flops),
                  _mflop(m.flops))
    if len(f.flops_by_module) > max_modules:
        t.add_row(f"... {len(f.flops_by_module) - max_modules} more modules", "", "", "", "")
    t.add_row("(outside modules)", "", "", "", _mflop(f.flops_outside_modules))
    for ph, v in f.flops_by_phase.items():
        t.add_row(f"phase {ph}", "", "", "", _mflop(v))
    t.add_row(Text("step total", style="bold"), "", _mflop(f.forward_flops), _mflop(f.backward_flops),
              _mflop(f.flops_per_step))
    return t


def uncounted_table(rec: ProfileRecord) -> Table | None:
    return _rich(uncounted_sheet(rec))


def uncounted_sheet(rec: ProfileRecord) -> Sheet | None:
    f = rec.flops
    if f is None or not f.uncounted_ops:
        return None
    t = Sheet(title="ops that ran with no FLOP formula (not in the totals)", header_style="bold")
    t.add_column("op")
    t.add_column("calls (count)", "right")
    for k, v in sorted(f.uncounted_ops.items(), key=lambda kv: (-kv[1], kv[0])):
        t.add_row(k, format_count(v))
    return t


def timing_table(rec: ProfileRecord) -> Table | None:
    return _rich(timing_sheet(rec))


def timing_sheet(rec: ProfileRecord) -> Sheet | None:
    if rec.step_time is None and not rec.phase_time:
        return None
    t = Sheet(title="time (ms), timed steps only", header_style="bold")
    for col in ("what", "median (ms)", "p10 (ms)", "p90 (ms)", "mean (ms)", "n (steps)", "spread (p90-p10)/median"):
        t.add_column(col, "left" if col == "what" else "right")

    def row(name: str, s: TimingStats) -> None:
        t.add_row(
            name,
            _ms(s.time_s_median),
            _ms(s.time_s_p10),
            _ms(s.time_s_p90),
            _ms(s.time_s_mean),
            str(s.n),
            Text(f"{s.spread:.1%}" + (" noisy" if s.noisy else ""), style="yellow" if s.noisy else ""),
        )

    if rec.step_time is not None:
        row("step", rec.step_time)
    for name, s in rec.phase_time.items():
        row(f"phase {name}", s)
    if rec.measuring_step_time_s is not None:
        t.add_row("measuring step (untimed, 1 step)", _ms(rec.measuring_step_time_s), "", "", "", "1", "")
    return t


def record_blocks(rec: ProfileRecord) -> list[Sheet | Note]:
    """All tables of one record, with its warnings, in the order they print."""
    parts: list[Sheet | Note] = [summary_sheet(rec)]
    if rec.warnings:
        parts.append(Note("\n".join(f"warning: {w}" for w in rec.warnings), style="yellow"))
    if rec.models:
        parts.append(params_sheet(rec))
    for fn in (memory_sheet, peak_modules_sheet, flops_sheet, uncounted_sheet, timing_sheet):
        sheet = fn(rec)
        if sheet is not None:
            parts.append(sheet)
    return parts


def render_record(rec: ProfileRecord) -> Group:
    """All tables of one record as a rich renderable."""
    return to_rich(record_blocks(rec))


def _rich(sheet: Sheet | None) -> Table | None:
    return sheet.to_rich() if sheet is not None else None


# --------------------------------------------------------------------------
# several records
# --------------------------------------------------------------------------

COMPARE_COLUMNS = (
    "arch",
    "mode",
    "status",
    "params (count)",
    "FLOPs/step (MFLOP)",
    "persistent (MiB)",
    "peak live (MiB)",
    "activations at peak (MiB)",
    "peak RSS delta (MiB)",
    "step median (ms)",
    "step p10-p90 (ms)",
)


def render_records(records: Sequence[ProfileRecord], title: str = "gonprof profiles") -> Table:
    """One row per record; each column header says its unit."""
    return records_sheet(records, title).to_rich()


def records_sheet(records: Sequence[ProfileRecord], title: str = "gonprof profiles") -> Sheet:
    """One row per record; each column header says its unit."""
    t = Sheet(title=title, header_style="bold")
    for col in COMPARE_COLUMNS:
        t.add_column(col, "left" if col in ("arch", "mode", "status") else "right")
    for r in records:
        st = r.step_time
        t.add_row(
            r.arch or "-",
            r.mode or "-",
            _status(r),
            format_count(r.params_total),
            _mflop(r.flops_per_step),
            _mib(r.persistent.total_bytes if r.persistent else None),
            _mib(r.peak_live_bytes),
            _mib(r.live_memory.peak_live_activation_bytes if r.live_memory else None),
            _mib(r.peak_rss_delta_bytes),
            _timing_cell(st),
            "-" if st is None or st.n == 0 else f"{st.time_s_p10 * 1e3:,.3f}-{st.time_s_p90 * 1e3:,.3f}",
        )
    return t


def print_record(rec: ProfileRecord | Iterable[ProfileRecord], console: Console | None = None) -> None:
    """Print one record's tables, or a comparison table of several, fitted to ``console``'s width as
    ``gonprof report`` fits them (:func:`~.width.fit_width`): every number whole at any width."""
    console = console or Console()
    tables = render_record(rec) if isinstance(rec, ProfileRecord) else render_records(list(rec))
    console.print(fit_width(tables, console))
