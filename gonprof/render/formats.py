"""Formatting of single values (bytes, FLOPs, counts, seconds) and the cells the tables share."""

from __future__ import annotations

import math

from rich.text import Text

from gonprof.records import ProfileRecord, TimingStats

MIB = 1024 * 1024

# --------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------


def format_bytes(n: float | None, binary: bool = True, precision: int = 2) -> str:
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


def format_flops(n: float | None, precision: int = 2) -> str:
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


def format_count(n: int | None) -> str:
    """``13246482`` -> ``"13,246,482"``."""
    return "-" if n is None else f"{int(n):,}"


def format_seconds(s: float | None) -> str:
    """Seconds in the most readable unit: ``0.0123`` -> ``"12.30 ms"``."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s >= 1.0:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MIB:,.2f}"


def _ms(s: float | None) -> str:
    return "-" if s is None or (isinstance(s, float) and math.isnan(s)) else f"{s * 1e3:,.3f}"


def _mflop(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.3f}"


#: The style of each status: ok green; stopped or partly measured yellow; failed red.
STATUS_STYLES = {"ok": "green", "interrupted": "yellow", "incomplete": "yellow"}


def _status(rec: ProfileRecord) -> Text:
    return Text(rec.status, style=STATUS_STYLES.get(rec.status, "red"))


def _timing_cell(t: TimingStats | None) -> str:
    if t is None or t.n == 0:
        return "-"
    cell = f"{t.time_s_median * 1e3:,.3f}"
    return cell + (" (noisy)" if t.noisy else "")


def _title(rec: ProfileRecord) -> str:
    parts = [p for p in (rec.arch, rec.mode) if p]
    if rec.batch_size is not None:
        parts.append(f"batch {rec.batch_size}")
    return "gonprof profile" + (": " + " / ".join(parts) if parts else "")
