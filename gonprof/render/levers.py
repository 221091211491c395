"""The lever table (``gonprof profile --levers``): one row per lever, drawn as a Sheet."""

from __future__ import annotations

from typing import Any

from rich.console import Group

from .formats import MIB, format_flops
from .sheet import Note, Sheet, to_rich


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MIB:,.1f}"


def _pct(f: float | None) -> str:
    return "-" if f is None else f"{f * 100:+.1f}%".replace("+-", "-") if f else "0.0%"


def lever_sheet(rec: Any) -> Sheet:
    """Each row of a :class:`~gonprof.records.LeverRecord`: peaks, saving, estimate, FLOPs, time ratio, note."""
    t = Sheet(title=f"memory levers: {rec.arch} / {rec.mode}, batch {rec.batch_size}, {rec.device} "
                    "(MiB = 2**20 bytes)", header_style="bold")
    for col, just in (("lever", "left"), ("tensor peak (MiB)", "right"), ("allocator peak (MiB)", "right"),
                      ("saving", "right"), ("estimate (MiB)", "right"), ("FLOPs per step", "right"),
                      ("float32 FLOPs", "right"), ("step time ratio", "right"), ("note", "left")):
        t.add_column(col, just)  # type: ignore[arg-type]
    for r in rec.rows:
        saving = "-" if r.saving_fraction is None else f"{r.saving_fraction * 100:.1f}%"
        ratio = "-" if r.time_ratio is None else f"{r.time_ratio:.2f}x"
        fp32 = "-" if r.float32_flops_fraction is None else f"{r.float32_flops_fraction * 100:.0f}%"
        note = r.note if r.status == "ok" else f"{r.status}: {r.message}"
        t.add_row(r.label, _mib(r.tensor_peak_bytes), _mib(r.allocator_peak_bytes), saving,
                  _mib(r.estimated_peak_bytes), format_flops(r.flops_per_step), fp32, ratio, note)
    return t


def lever_blocks(rec: Any) -> list[Sheet | Note]:
    """A :class:`~gonprof.records.LeverRecord`: the table, the levers skipped (why), the notes, and the
    operators autocast left in float32."""
    lines = [f"- {label} not run: {why}" for label, why in rec.skipped.items()]
    lines += [f"- {n}" for n in rec.notes]
    fp32 = sorted({op for r in rec.rows for op in r.float32_operators})
    if fp32:
        lines.append(f"- operators that computed in float32 under autocast: {', '.join(fp32)}")
    return [lever_sheet(rec), Note("\n".join(lines), style="dim")]


def render_levers(rec: Any) -> Group:
    return to_rich(lever_blocks(rec))
