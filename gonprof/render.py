"""Rich tables of ProfileRecords.  Render never measures: it only reads records.

Every column header says its unit: bytes are shown in MiB (2**20 bytes),
FLOPs in MFLOP / GFLOP (10**6 / 10**9; FLOPs = 2 x MACs), times in ms.
Helpers :func:`format_bytes`, :func:`format_flops`, :func:`format_count`,
:func:`format_seconds` give human-readable single values.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Optional, Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gonprof.records import ProfileRecord, TimingStats

MIB = 1024 * 1024

# --------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------


def format_bytes(n: Optional[float], binary: bool = True, precision: int = 2) -> str:
    """``16000000`` -> ``"15.26 MiB"`` (binary) or ``"16.00 MB"``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    base = 1024.0 if binary else 1000.0
    units = ["B", "KiB", "MiB", "GiB", "TiB"] if binary else ["B", "kB", "MB", "GB", "TB"]
    sign = "-" if n < 0 else ""
    v = float(abs(n))
    i = 0
    while v >= base and i < len(units) - 1:
        v /= base
        i += 1
    if i == 0:
        return f"{sign}{int(v)} B"
    return f"{sign}{v:.{precision}f} {units[i]}"


def format_flops(n: Optional[float], precision: int = 2) -> str:
    """``1.5e9`` -> ``"1.50 GFLOP"`` (decimal prefixes; FLOPs = 2 x MACs)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    units = ["FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"]
    v = float(n)
    i = 0
    while abs(v) >= 1000.0 and i < len(units) - 1:
        v /= 1000.0
        i += 1
    if i == 0:
        return f"{int(v)} FLOP"
    return f"{v:.{precision}f} {units[i]}"


def format_count(n: Optional[int]) -> str:
    """``13246482`` -> ``"13,246,482"``."""
    return "-" if n is None else f"{int(n):,}"


def format_seconds(s: Optional[float]) -> str:
    """Seconds in the most readable unit: ``0.0123`` -> ``"12.30 ms"``."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s >= 1.0:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _mib(n: Optional[int]) -> str:
    return "-" if n is None else f"{n / MIB:,.2f}"


def _ms(s: Optional[float]) -> str:
    return "-" if s is None or (isinstance(s, float) and math.isnan(s)) else f"{s * 1e3:,.3f}"


def _mflop(n: Optional[int]) -> str:
    return "-" if n is None else f"{n / 1e6:,.3f}"


def _status(rec: ProfileRecord) -> Text:
    style = "green" if rec.status == "ok" else "red"
    return Text(rec.status, style=style)


def _timing_cell(t: Optional[TimingStats]) -> str:
    if t is None or t.n == 0:
        return "-"
    cell = f"{t.time_s_median * 1e3:,.3f}"
    return cell + (" (noisy)" if t.noisy else "")


def _title(rec: ProfileRecord) -> str:
    parts = [p for p in (rec.arch, rec.mode) if p]
    if rec.batch_size is not None:
        parts.append(f"batch {rec.batch_size}")
    return "gonprof profile" + (": " + " / ".join(parts) if parts else "")


# --------------------------------------------------------------------------
# one record
# --------------------------------------------------------------------------


def summary_table(rec: ProfileRecord) -> Table:
    t = Table(title=_title(rec), show_header=True, header_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("what it counts")
    t.add_row("status", _status(rec), rec.message or "")
    t.add_row("device", rec.environment.device, rec.environment.device_name)
    t.add_row(
        "steps (count)",
        f"{rec.warmup_steps} + {rec.timed_steps}",
        "untimed (incl. the measuring step) + timed",
    )
    t.add_row("params (count)", format_count(rec.params_total), "all models, total")
    if rec.flops is not None:
        f = rec.flops
        t.add_row("FLOPs / step", format_flops(f.flops_per_step), "whole step, FLOPs = 2 x MACs")
        t.add_row("  forward", format_flops(f.forward_flops), "outside the autograd engine")
        t.add_row("  backward", format_flops(f.backward_flops), "inside the autograd engine")
    if rec.persistent is not None:
        p = rec.persistent
        t.add_row("persistent state", format_bytes(p.total_bytes), "params + buffers + grads + optimizer state")
    if rec.live_memory is not None:
        lm = rec.live_memory
        t.add_row("peak live tensors", format_bytes(lm.peak_live_bytes), "tensor storages, incl. persistent state")
        t.add_row("  activations", format_bytes(lm.peak_live_activation_bytes), "activations + temporaries at the peak")
    if rec.rss is not None:
        t.add_row(
            "peak RSS delta",
            format_bytes(rec.rss.peak_rss_delta_bytes),
            f"over RSS at step start ({format_bytes(rec.rss.rss_baseline_bytes)}), method {rec.rss.method}",
        )
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


def params_table(rec: ProfileRecord) -> Table:
    t = Table(title="parameters", header_style="bold")
    for col in ("model", "total (count)", "trainable (count)", "frozen (count)", "buffers (elements)", "params (MiB)", "buffers (MiB)", "dtypes"):
        t.add_column(col, justify="left" if col in ("model", "dtypes") else "right")
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


def memory_table(rec: ProfileRecord) -> Optional[Table]:
    p, lm = rec.persistent, rec.live_memory
    if p is None and lm is None:
        return None
    t = Table(title="memory (MiB = 2**20 bytes)", header_style="bold")
    t.add_column("category")
    t.add_column("persistent, end of step (MiB)", justify="right")
    t.add_column("at peak of live tensors (MiB)", justify="right")
    rows = [
        ("parameters", p.param_bytes if p else None, lm.peak_live_param_bytes if lm else None),
        ("buffers", p.buffer_bytes if p else None, lm.peak_live_buffer_bytes if lm else None),
        ("gradients", p.grad_bytes if p else None, lm.peak_live_grad_bytes if lm else None),
        ("optimizer state", p.optimizer_state_bytes if p else None, lm.peak_live_optimizer_state_bytes if lm else None),
        ("activations + temporaries", None, lm.peak_live_activation_bytes if lm else None),
        ("total", p.total_bytes if p else None, lm.peak_live_bytes if lm else None),
    ]
    for name, a, b in rows:
        t.add_row(name, _mib(a), _mib(b))
    return t


def flops_table(rec: ProfileRecord, max_modules: int = 25) -> Optional[Table]:
    f = rec.flops
    if f is None:
        return None
    t = Table(title="FLOPs of one step (MFLOP = 10**6 FLOPs; FLOPs = 2 x MACs)", header_style="bold")
    t.add_column("where")
    t.add_column("type")
    t.add_column("forward (MFLOP)", justify="right")
    t.add_column("backward (MFLOP)", justify="right")
    t.add_column("total (MFLOP)", justify="right")
    for m in f.flops_by_module[:max_modules]:
        depth = m.module.count(".")
        t.add_row("  " * depth + m.module, m.module_type, _mflop(m.forward_flops), _mflop(m.backward_flops), _mflop(m.flops))
    if len(f.flops_by_module) > max_modules:
        t.add_row(f"... {len(f.flops_by_module) - max_modules} more modules", "", "", "", "")
    t.add_row("(outside modules)", "", "", "", _mflop(f.flops_outside_modules))
    for ph, v in f.flops_by_phase.items():
        t.add_row(f"phase {ph}", "", "", "", _mflop(v))
    t.add_row(Text("step total", style="bold"), "", _mflop(f.forward_flops), _mflop(f.backward_flops), _mflop(f.flops_per_step))
    return t


def uncounted_table(rec: ProfileRecord) -> Optional[Table]:
    f = rec.flops
    if f is None or not f.uncounted_ops:
        return None
    t = Table(title="ops that ran with no FLOP formula (not in the totals)", header_style="bold")
    t.add_column("op")
    t.add_column("calls (count)", justify="right")
    for k, v in sorted(f.uncounted_ops.items(), key=lambda kv: (-kv[1], kv[0])):
        t.add_row(k, format_count(v))
    return t


def timing_table(rec: ProfileRecord) -> Optional[Table]:
    if rec.step_time is None and not rec.phase_time:
        return None
    t = Table(title="time (ms), timed steps only", header_style="bold")
    for col in ("what", "median (ms)", "p10 (ms)", "p90 (ms)", "mean (ms)", "n (steps)", "spread (p90-p10)/median"):
        t.add_column(col, justify="left" if col == "what" else "right")

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


def render_record(rec: ProfileRecord) -> Group:
    """All tables of one record as a rich renderable."""
    parts: list[Any] = [summary_table(rec)]
    if rec.models:
        parts.append(params_table(rec))
    for fn in (memory_table, flops_table, uncounted_table, timing_table):
        tbl = fn(rec)
        if tbl is not None:
            parts.append(tbl)
    return Group(*parts)


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
    t = Table(title=title, header_style="bold")
    for col in COMPARE_COLUMNS:
        t.add_column(col, justify="left" if col in ("arch", "mode", "status") else "right")
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


def print_record(rec: ProfileRecord | Iterable[ProfileRecord], console: Optional[Console] = None) -> None:
    """Print one record's tables, or a comparison table of several."""
    console = console or Console()
    if isinstance(rec, ProfileRecord):
        console.print(render_record(rec))
    else:
        console.print(render_records(list(rec)))


# -- architectures and modes (gonprof list / info) ----------------------------

_NUMBER = re.compile(r"^[-+]?[\d,.]+(e[-+]?\d+)?( ?[a-zA-Z%/]+)?( / [\d,.]+)?( \(.*\))?$|^-$")


def whole_numbers(table: Table) -> Table:
    """Keep every number of ``table`` whole on a narrow terminal: a column whose cells are all numbers
    (with or without a unit) gets no wrapping and a minimum width of its widest cell, so rich narrows the
    prose columns instead (they wrap).  Returns the table."""
    for col in table.columns:
        cells = [Text.from_markup(c).plain if isinstance(c, str) else getattr(c, "plain", str(c)) for c in col._cells]
        cells = [c for c in cells if c.strip()]
        if cells and all(_NUMBER.match(c.strip()) for c in cells):
            col.no_wrap = True
            col.min_width = max(max(len(c) for c in cells), col.min_width or 0)
            col.overflow = "fold"
        elif not col.no_wrap:
            col.overflow = "fold"
    return table


def fit_width(renderable: Any, console: Console) -> Any:
    """``renderable`` for ``console``'s width, every number whole.

    A table is tried as it is; if at this width it would cut a number or run past the edge, then without
    its descriptive columns (:data:`DESCRIPTIVE`); if that still does not fit, it becomes one block per
    row, each cell beside its column's header (:func:`stacked`).  Groups are walked.  Rendering only:
    nothing is measured but text.
    """
    if isinstance(renderable, Group):
        return Group(*(fit_width(r, console) for r in renderable.renderables))
    if not isinstance(renderable, Table):
        return renderable
    whole_numbers(renderable)
    width = console.width
    if _fits(renderable, width):
        return renderable
    narrower = _without(renderable, [c for c in renderable.columns if _plain(c.header) in DESCRIPTIVE])
    if narrower is not None and _fits(narrower, width):
        return narrower
    return stacked(renderable)


_NUMBERS_IN = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _as_text(table: Table, width: int) -> str:
    import io

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, highlight=False).print(table)
    return buf.getvalue()


def _fits(table: Table, width: int) -> bool:
    """Whether ``table`` at ``width`` stays within it and shows every number its unconstrained rendering
    shows (none cut, none wrapped across lines)."""
    narrow = _as_text(table, width)
    if max((len(line.rstrip()) for line in narrow.splitlines()), default=0) > width:
        return False
    return set(_NUMBERS_IN.findall(_as_text(table, 1000))) <= set(_NUMBERS_IN.findall(narrow))


#: Columns that describe rather than measure: the first dropped when a table does not fit.
DESCRIPTIVE = ("source repository", "family", "input (C,H,W)", "default mode", "what it counts", "summary")


def _without(table: Table, drop: list) -> Optional[Table]:
    """A copy of ``table`` without the columns in ``drop`` (None when there is nothing to drop)."""
    if not drop:
        return None
    keep = [c for c in table.columns if c not in drop]
    caption = _plain(table.caption) if table.caption else ""
    dropped = ", ".join(_plain(c.header) for c in drop)
    out = Table(title=table.title, title_justify=table.title_justify, box=table.box,
                caption=(caption + "\n" if caption else "") + f"(narrow terminal: {dropped} not shown)",
                caption_justify="left", show_header=table.show_header)
    for c in keep:
        out.add_column(c.header, justify=c.justify, no_wrap=c.no_wrap, min_width=c.min_width, style=c.style,
                       overflow=c.overflow)
    for i in range(table.row_count):
        out.add_row(*[c._cells[i] if i < len(c._cells) else "" for c in keep])
    return out


def _plain(c: Any) -> str:
    return Text.from_markup(c).plain if isinstance(c, str) else getattr(c, "plain", str(c))


def stacked(table: Table) -> Group:
    """``table`` as one small two-column block per row, titled by the row's first cell."""
    plain = _plain
    headers = [plain(c.header).replace("\n", " ") for c in table.columns]
    columns = [list(c._cells) for c in table.columns]
    parts: list[Any] = [Text(plain(table.title), style="bold")] if table.title else []
    for i in range(table.row_count):
        block = Table(show_header=False, box=None, padding=(0, 1), title=plain(columns[0][i]) if columns else None,
                      title_justify="left", title_style="bold")
        block.add_column("figure", style="dim")
        block.add_column("value", no_wrap=True)
        for h, col in zip(headers[1:], columns[1:]):
            cell = col[i] if i < len(col) else ""
            if plain(cell).strip():
                block.add_row(h, cell)
        parts.append(block)
    if table.caption:
        parts.append(Text(plain(table.caption), style="dim"))
    return Group(*parts)


def architectures_table(rows) -> "Table":
    """``gonprof list``: one row per architecture; counts were measured on the built model."""
    from rich.table import Table

    table = Table(title="gonprof architectures", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("family")
    table.add_column("role")
    table.add_column("params (count)", justify="right")
    table.add_column("input (C,H,W)")
    table.add_column("output")
    table.add_column("default mode")
    table.add_column("source repository", max_width=48)
    for r in rows:
        if r.error:
            table.add_row(r.name, r.family, r.role, "[red]broken[/]", ",".join(map(str, r.input_shape)), r.output,
                          r.default_mode or "", r.repo or r.source)
            continue
        params = f"{r.params:,}"
        if not r.matches_expected:
            params += f" [red](spec says {r.expected_params:,})[/]"
        elif r.trainable_params != r.params:
            params += f" [dim]({r.trainable_params:,} trainable)[/]"
        table.add_row(r.name, r.family, r.role, params, ",".join(map(str, r.input_shape)), r.output,
                      r.default_mode or "", r.repo or r.source)
    broken = [r.error for r in rows if r.error]
    if broken:
        table.caption = "\n".join(broken)
        table.caption_style = "red"
        table.caption_justify = "left"
    return table


def modes_table(rows) -> "Table":
    from rich.table import Table

    table = Table(title="gonprof training modes", title_justify="left")
    for col in ("name", "default arch", "phases", "needs generator", "discriminator outputs", "presets", "summary"):
        table.add_column(col, no_wrap=col == "name")
    for m in rows:
        table.add_row(m.name, m.default_arch or "-", ", ".join(m.phases), "yes" if m.needs_generator else "no",
                      ", ".join(m.outputs), ", ".join(m.presets) or "-", m.summary)
    return table


def mode_report(m) -> "Group":
    """``gonprof info --mode``: a mode's defaults, its presets' changes and its notes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(f"{m.name}: {m.summary}\nsource: {m.source}\ndefault discriminator: {m.default_arch or '-'}; "
                f"phases: {', '.join(m.phases)}")
    table = Table(title="hyper-parameters (--set NAME=VALUE)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("default")
    for p in sorted(m.preset_overrides):
        table.add_column(f"preset {p}")
    for k, v in m.defaults.items():
        table.add_row(k, str(v), *[str(m.preset_overrides[p].get(k, "")) for p in sorted(m.preset_overrides)])
    parts = [head, table]
    if m.notes:
        parts.append(Text("notes:\n" + "\n".join(f"  - {n}" for n in m.notes), style="dim"))
    return Group(*parts)


def arch_report(report) -> "Group":
    """``gonprof info``: header, notes and the per-layer table with totals."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    a = report.arch
    head = Text.assemble((a.name, "bold"), f"  {a.family} {a.role}, output {a.output}, "
                         f"input {','.join(map(str, report.input_shape))}\n", ("source: ", "dim"),
                         a.source + (f" ({a.repo})" if a.repo else ""))
    parts = [head]
    if a.notes:
        parts.append(Text("notes:\n" + "\n".join(f"  - {n}" for n in a.notes), style="dim"))
    table = Table(caption=report.flops_note, caption_justify="left")
    table.add_column("layer", no_wrap=True)
    table.add_column("type")
    table.add_column("output shape (per sample)")
    table.add_column("params (count)", justify="right")
    table.add_column("forward FLOPs (per sample)", justify="right")
    for r in report.layers:
        shape = "x".join(map(str, r.output_shape)) if r.output_shape else ""
        table.add_row("  " * (r.depth - 1) + (r.name.rsplit(".", 1)[-1] or "(model)"), r.type, shape,
                      f"{r.params:,}", format_flops(r.forward_flops))
    frozen = report.total_params - report.trainable_params
    table.add_section()
    table.add_row("total", "", "", f"{report.total_params:,}" + (f" ({frozen:,} frozen)" if frozen else ""),
                  format_flops(report.forward_flops), style="bold")
    parts.append(table)
    if report.uncounted_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(report.uncounted_ops.items()))
        parts.append(Text(f"ops with no FLOP formula (not counted): {ops}", style="yellow"))
    return Group(*parts)


def render_any(records):
    """Whatever a results file held, by record type: compare rows as their tables,
    estimates / fits / scaling records each their way, one profile in full, several
    profiles as one table."""
    from .records import FitRecord, MemoryEstimate, RunRecord, ScalingRecord

    records = list(records)
    if records and isinstance(records[0], RunRecord):
        if all(r.kind == "floor" or r.mode == "score" for r in records):  # written by `gonprof score`
            return score_table(records)
        return compare_table(records)
    for cls, fn in ((MemoryEstimate, render_estimate), (FitRecord, render_fit), (ScalingRecord, render_scaling)):
        if records and all(isinstance(r, cls) for r in records):
            return fn(records[0]) if len(records) == 1 else Group(*(fn(r) for r in records))
    if len(records) == 1:
        return render_record(records[0])
    return render_records(records)


# -- gonprof compare ------------------------------------------------------------------

def compare_table(rows, baseline: int | None = None, title: str = "gonprof compare") -> "Group":
    """Two tables over the same rows: what each run cost, and what its samples are worth.

    ``*`` marks Pareto-optimal rows: no other row has both a lower peak of live
    tensor memory and a lower FID.  Ratios are to the ``baseline`` row
    (default: the first trained row that finished).
    """
    from rich.console import Group
    from rich.table import Table

    from .records import pareto_front, peak_memory_bytes

    front = pareto_front(rows)
    runs = [i for i, r in enumerate(rows) if r.kind == "run" and r.status == "ok" and r.profile is not None]
    base_i = baseline if baseline is not None else (runs[0] if runs else None)
    base = rows[base_i] if base_i is not None else None
    bmem = peak_memory_bytes(base) if base is not None else None
    bt = base.profile.step_time_s_median if base is not None and base.profile is not None else None
    has_cuda = any(r.profile is not None and r.profile.cuda_memory is not None for r in rows)

    def label(i, r):
        return r.label + (" *" if i in front else "") + (" (base)" if i == base_i else "")

    cost = Table(title=f"{title}: cost of one optimization step", title_justify="left",
                 caption="FLOPs = 2 x MACs, whole step; peak live = tensor storages during one step; "
                         "RSS delta over the step's start; ratios vs the row marked (base)",
                 caption_justify="left")
    cols = ["run", "D params (count)", "G params (count)", "FLOPs/step (GFLOP)", "peak live (MiB)",
            "peak RSS delta (MiB)"] + (["CUDA max alloc (MiB)"] if has_cuda else []) + [
            "step median (ms)", "trained (steps / s)", "memory vs base (x)", "time vs base (x)"]
    for c in cols:
        cost.add_column(c, justify="left" if c == "run" else "right", no_wrap=c == "run")
    for i, r in enumerate(rows):
        if r.kind != "run":
            continue
        p = r.profile
        mem = peak_memory_bytes(r)
        t = p.step_time_s_median if p is not None else None
        cells = [label(i, r), format_count(r.d_params), format_count(r.g_params),
                 f"{p.flops_per_step / 1e9:,.2f}" if p is not None and p.flops_per_step else "-",
                 _mib(mem), _mib(p.peak_rss_delta_bytes) if p is not None else "-"]
        if has_cuda:
            cells.append(_mib(p.cuda_memory.max_memory_allocated_bytes) if p is not None and p.cuda_memory else "-")
        cells += [_ms(t), f"{r.train_steps} / {r.train_time_s:,.0f}" if r.train_steps is not None else "-",
                  f"{mem / bmem:.2f}" if mem and bmem else "-", f"{t / bt:.2f}" if t and bt else "-"]
        cost.add_row(*cells)

    scored = next((r.quality for r in rows if r.quality is not None), None)
    n = scored.n_samples if scored is not None else None
    extractor = f"{scored.extractor} (weights {scored.weights_hash})" if scored is not None else "-"
    kept = scored.classes if scored is not None else None
    held = f" of {scored.n_held_out}" if scored is not None and scored.n_held_out else ""
    what = "held-out real images" + (f" of class{'es' if len(kept) > 1 else ''} {','.join(map(str, kept))}"
                                     if kept is not None else "")
    quality = Table(title=f"{title}: quality of the samples", title_justify="left",
                    caption=f"N={n} samples vs {n}{held} {what} in the features of {extractor}; "
                            "the floor row scores real images the same way; * Pareto-optimal on "
                            "(peak live memory, FID)", caption_justify="left")
    cols = ["run", "FID", "KID", "precision", "recall", "classes (%)", "class entropy (nats)"] + \
        (["on-class (%)"] if kept is not None else []) + ["status"]
    for c in cols:
        quality.add_column(c, justify="left" if c in ("run", "status") else "right", no_wrap=c == "run")
    for i, r in enumerate(rows):
        q = r.quality
        cells = [label(i, r)]
        if q is not None:
            cells += [f"{q.fid:,.2f}", f"{q.kid_mean:,.2f}", f"{q.precision:.3f}", f"{q.recall:.3f}",
                      f"{100 * q.class_coverage:.0f}", f"{q.class_entropy_nats:.3f}"]
            if kept is not None:
                cells.append(f"{100 * q.on_class_fraction:.0f}" if q.on_class_fraction is not None else "-")
        else:
            cells += ["-"] * (len(cols) - 2)
        cells.append(r.status if r.status == "ok" and not r.message else
                     (f"[red]{r.status}[/]: " if r.status != "ok" else "ok: ") + r.message)
        quality.add_row(*cells, style="dim" if r.kind == "floor" else None)
    return Group(cost, quality)


# -- memory budgets: estimates, fits, scaling ------------------------------------

def render_estimate(e, measured=None) -> "Group":
    """A :class:`~gonprof.records.MemoryEstimate`; with ``measured`` (a ProfileRecord) the measured figures beside it."""
    t = Table(title=f"estimated step memory: {e.arch} / {e.mode} / batch {e.batch_size} on {e.device} "
                    f"({e.method} tensors, nothing allocated)", header_style="bold")
    t.add_column("figure")
    t.add_column("estimate (MiB)", justify="right")
    if measured is not None:
        t.add_column("measured (MiB)", justify="right")
    t.add_column("what it counts")
    lm = measured.live_memory if measured is not None else None

    def row(name, est, meas, what):
        cells = [name, _mib(est)] + ([meas if isinstance(meas, str) else _mib(meas)] if measured is not None
                                     else []) + [what]
        t.add_row(*cells)

    if e.cuda_max_memory_allocated_bytes is not None:
        cm = measured.cuda_memory if measured is not None else None
        row("CUDA max allocated", e.cuda_max_memory_allocated_bytes,
            cm.max_memory_allocated_bytes if cm else None, "live storages rounded to 512 B + input batch")
    row("peak live tensors", e.peak_live_bytes, lm.peak_live_bytes if lm else None,
        "tensor storages incl. persistent state")
    row("  parameters", e.peak_live_param_bytes, lm.peak_live_param_bytes if lm else None, "at the peak")
    row("  gradients", e.peak_live_grad_bytes, lm.peak_live_grad_bytes if lm else None, "at the peak")
    row("  optimizer state", e.peak_live_optimizer_state_bytes, lm.peak_live_optimizer_state_bytes if lm else None,
        "at the peak")
    row("  activations + temporaries", e.peak_live_activation_bytes, lm.peak_live_activation_bytes if lm else None,
        "at the peak")
    row("input batch", e.input_bytes, "not in it" if measured is not None else None,
        "float32 images + int64 labels, made before the step (in neither peak above)")
    if e.persistent is not None:
        row("persistent state", e.persistent.total_bytes,
            measured.persistent.total_bytes if measured is not None and measured.persistent else None,
            "params + buffers + grads + optimizer state, end of step")
    row("budget figure", e.peak_bytes, None, "what `gonprof fit --estimate` compares")
    notes = Text("\n".join(f"- {n}" for n in e.notes), style="dim")
    return Group(t, Text(f"rounding: {e.rounding}", style="dim"), notes)


def _trial_row(t) -> list:
    style = {"fits": "green", "measured": "green", "too-big": "yellow"}.get(t.status, "red")
    return [str(t.batch_size), Text(t.status, style=style), _mib(t.peak_bytes), _mib(t.peak_live_bytes),
            _mib(t.peak_rss_delta_bytes), _mib(t.cuda_max_memory_allocated_bytes),
            _mib(t.cuda_max_memory_reserved_bytes), _ms(t.step_time_s), (t.message or "")[:80]]


_TRIAL_COLUMNS = ("batch (samples)", "status", "compared peak (MiB)", "peak live tensors (MiB)",
                  "peak RSS delta (MiB)", "CUDA max allocated (MiB)", "CUDA max reserved (MiB)", "step (ms)", "note")


def render_fit(rec) -> "Group":
    """A :class:`~gonprof.records.FitRecord`: the answer, then every trial in batch-size order."""
    budget = format_bytes(rec.memory_bytes)
    if rec.status != "ok":
        head = Text(f"fit {rec.arch} / {rec.mode} on {rec.device} in {budget}: search stopped: {rec.message}",
                    style="red")
    else:
        nxt = "" if rec.first_too_big is None else f"; {rec.first_too_big} does not"
        head = Text.assemble(("largest batch", "bold"), f" for {rec.arch} / {rec.mode} on {rec.device} in {budget}"
                             f"{' (estimated)' if rec.estimate else ''}: ", (str(rec.batch_size), "bold green"),
                             nxt + (f" ({rec.message})" if rec.message else ""))
    t = Table(title="trials (MiB = 2**20 bytes)", header_style="bold")
    for col in _TRIAL_COLUMNS:
        t.add_column(col, justify="left" if col in ("status", "note") else "right")
    for tr in sorted(rec.trials, key=lambda x: x.batch_size):
        t.add_row(*_trial_row(tr))
    foot = Text(f"compared with the budget: {rec.compared}\nsearch: {rec.search}"
                + "".join(f"\n- {n}" for n in rec.notes), style="dim")
    return Group(head, t, foot)


def render_scaling(rec) -> "Group":
    """A :class:`~gonprof.records.ScalingRecord`: the points and the fixed + per-sample fits."""
    t = Table(title=f"scaling: {rec.arch} / {rec.mode} on {rec.device}{' (estimated)' if rec.estimate else ''}",
              header_style="bold")
    for col in _TRIAL_COLUMNS:
        t.add_column(col, justify="left" if col in ("status", "note") else "right")
    for p in rec.points:
        t.add_row(*_trial_row(p))
    f = Table(title="least-squares fits: fixed + per sample x batch", header_style="bold")
    for col in ("quantity", "fixed", "per sample", "R^2", "points"):
        f.add_column(col, justify="left" if col == "quantity" else "right")
    if rec.memory_fit is not None:
        m = rec.memory_fit
        f.add_row("peak memory", format_bytes(m.intercept), format_bytes(m.slope), f"{m.r2:.4f}", str(m.n))
    if rec.time_fit is not None:
        s = rec.time_fit
        f.add_row("step time", format_seconds(s.intercept), format_seconds(s.slope), f"{s.r2:.4f}", str(s.n))
    parts = [t, f, Text(f"memory figure: {rec.compared}" + "".join(f"\n- {n}" for n in rec.notes), style="dim")]
    if rec.message:
        parts.insert(0, Text(rec.message, style="red" if rec.status != "ok" else "yellow"))
    return Group(*parts)


# -- gonprof score --------------------------------------------------------------------

def score_table(rows, source: str = "") -> "Group":
    """``gonprof score``: compare's quality columns over (floor, samples) RunRecords, with confidence and
    the predicted-class counts; ``source`` (what was read, and how) goes in the caption."""
    scored = next((r.quality for r in rows if r.quality is not None), None)
    kept = scored.classes if scored is not None else None
    n = scored.n_samples if scored is not None else None
    held = f" of {scored.n_held_out}" if scored is not None and scored.n_held_out else ""
    what = "held-out real images" + (f" of class{'es' if len(kept) > 1 else ''} {','.join(map(str, kept))}"
                                     if kept is not None else "")
    extractor = f"{scored.extractor} (weights {scored.weights_hash})" if scored is not None else "-"
    t = Table(title="gonprof score: quality of the samples", title_justify="left",
              caption=(f"{source}\n" if source else "") + f"N={n} images vs {n}{held} {what} in the features "
                      f"of {extractor}; the floor row scores real images the same way", caption_justify="left")
    cols = ["run", "FID", "KID", "precision", "recall", "classes (%)", "class entropy (nats)"] + \
        (["on-class (%)"] if kept is not None else []) + ["confidence", "predicted (class: count)"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("run", "predicted (class: count)") else "right",
                     no_wrap=c == "run")
    for r in rows:
        q = r.quality
        if q is None:
            t.add_row(r.label, *(["-"] * (len(cols) - 1)))
            continue
        cells = [r.label, f"{q.fid:,.2f}", f"{q.kid_mean:,.2f}", f"{q.precision:.3f}", f"{q.recall:.3f}",
                 f"{100 * q.class_coverage:.0f}", f"{q.class_entropy_nats:.3f}"]
        if kept is not None:
            cells.append(f"{100 * q.on_class_fraction:.0f}" if q.on_class_fraction is not None else "-")
        counts = sorted((q.predicted_classes or {}).items(), key=lambda kv: (-kv[1], int(kv[0])))
        shown = ", ".join(f"{k}: {v}" for k, v in counts[:5]) + (", ..." if len(counts) > 5 else "")
        cells += [f"{q.mean_confidence:.3f}", shown or "-"]
        t.add_row(*cells, style="dim" if r.kind == "floor" else None)
    return Group(t)
