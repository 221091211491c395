"""Run a measurement in a fresh Python process, so the state earlier tests left behind cannot leak in.

A process-wide figure such as peak RSS counts every page any thread of the
process touches during the interval.  Inside a long pytest run that includes
whatever earlier tests left: free heap pages still resident, leftover threads,
malloc arenas.  A known-allocation check is only a fair test of the meter when
it runs in a process that did nothing else.

The child first makes every large malloc a fresh mmap (glibc
``M_MMAP_THRESHOLD``), so that a 16 MB tensor always adds 16 MB of RSS instead
of reusing pages a heap kept resident.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

_PRELUDE = """
import ctypes, ctypes.util, json, sys
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _ok = _libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
except (OSError, AttributeError):
    _ok = 0
if _ok != 1:
    print(json.dumps({"skip": "needs glibc mallopt"}))
    sys.exit(0)
import torch
torch.ones(1_000_000).fill_(1.0)  # start the op machinery and the thread pool before measuring
"""


def run_clean(body: str, timeout: float = 120) -> dict:
    """Run ``body`` after the prelude in a new interpreter; it must print one JSON object last."""
    code = _PRELUDE + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"child process failed ({r.returncode}):\n{r.stderr[-4000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    return out
