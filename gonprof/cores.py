"""The cores this process may use, on any system (a core module: no torch, imports nothing of gonprof's)."""

from __future__ import annotations

import os


def usable_cores() -> list[int]:
    """The cores this process may run on: its CPU affinity where the system keeps one (Linux), else every
    core of the machine (``os.cpu_count()``; macOS and Windows have no ``sched_getaffinity``)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def can_pin() -> bool:
    """Whether this system can pin a process to cores (``os.sched_setaffinity``, Linux)."""
    return hasattr(os, "sched_setaffinity")
