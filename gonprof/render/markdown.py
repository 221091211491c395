"""A results file as Markdown: what ``gonprof report FILE --markdown`` prints and the documentation's pages
show, so that a page and its results file cannot disagree.

The tables come from :func:`gonprof.render.blocks_any` (the terminal's columns and rounding); above them
one line says, from the file, the command that wrote it, when, on what machine, with how many torch threads
and at what load average (:func:`provenance_markdown`).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from .sheet import md_escape, to_markdown


def environments(records: list[Any]) -> list[Any]:
    """The :class:`~gonprof.records.Environment` of every measurement in ``records``: a profile's own, a
    compare row's profile's, a fit's or scaling's, each data-parallel rank's (estimates measure nothing)."""
    envs: list[Any] = []
    for r in records:
        env = getattr(r, "environment", None)
        if env is not None:
            envs.append(env)
        profile = getattr(r, "profile", None)
        if profile is not None:
            envs.append(profile.environment)
        for rank in getattr(r, "ranks", ()) or ():
            if rank.profile is not None:
                envs.append(rank.profile.environment)
    return [e for e in envs if e.torch_version or e.cpu_count]


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def provenance_markdown(records: list[Any], extra: dict) -> str:
    """One paragraph: the command (``extra["command"]``), the date it was written, the machine, the torch
    threads and the load average, each as the file records it (and said to be missing where it does not)."""
    command = extra.get("command")
    written = str(extra.get("written_utc", ""))[:10]
    parts = [f"Measured with {_code(shlex.join(command))}" if command else
             "Measured with a command the file does not record (written through the API, or by a gonprof "
             "before results files recorded their command)"]
    if written:
        parts[0] += f" on {written}"
    envs = environments(records)
    if envs:
        machines = sorted({f"{e.device_name or 'cpu'} ({e.cpu_count} cores), device {e.device}, torch "
                           f"{e.torch_version}, Python {e.python_version}" for e in envs})
        parts.append("on " + "; ".join(md_escape(m) for m in machines))
        threads = sorted({e.torch_threads for e in envs if e.torch_threads is not None})
        if threads:
            count = str(threads[0]) if len(threads) == 1 else f"{threads[0]}-{threads[-1]}"
            parts.append(f"{count} torch thread{'s' if threads[-1] > 1 else ''}")
        loads = [e.load_average_1m for e in envs if e.load_average_1m is not None]
        parts.append(f"load average {_span(loads)} at the start of each measurement" if loads else
                     "load average not recorded")
    else:
        parts.append("no machine recorded (an estimate allocates nothing, so it measures no machine)")
    return ", ".join(parts) + "."


def results_markdown(path: str | Path) -> str:
    """The Markdown of one results file: the provenance line, then every table ``gonprof report`` shows for
    it (claims included), with the same columns and rounding."""
    from gonprof.api import report, report_claims
    from gonprof.records import load_extra

    from . import blocks_any

    records = report(path)
    preset, verdicts = report_claims(path, records)
    return provenance_markdown(records, load_extra(path)) + "\n\n" + to_markdown(
        blocks_any(records, preset, verdicts))
