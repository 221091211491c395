"""Run one piece of work in a fresh Python process: the isolation compare rows and fit trials share.

:func:`run_worker` writes the work's spec as JSON into a folder, starts
``python -m gonprof.worker KIND SPEC.json RESULT.json`` in a new session (so
that Ctrl-C reaches this process, which then stops the worker), sends the
worker's output to a log file, waits, and reads the worker's JSON result back.
What happened is an :class:`Outcome`, never an exception: the result when
there is one, else the exit code, the signal that ended the worker and the
last line it printed, classified by :meth:`Outcome.failure`.

A memory cap is the worker's business (each kind applies its own: compare
rows an ``RLIMIT_DATA``, fit trials an RSS watchdog); here a worker killed by
SIGKILL is most likely the kernel's out-of-memory killer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .records import looks_oom


@dataclass(frozen=True)
class Outcome:
    """How one worker process ended."""

    result: Optional[dict]  # what the worker wrote to RESULT.json (None: it wrote nothing readable)
    returncode: Optional[int]  # negative: killed by that signal
    tail: str  # the last non-empty line of its output
    wall_s: float
    interrupted: bool = False  # Ctrl-C here stopped it
    timed_out: bool = False
    unreadable: str = ""  # why RESULT.json could not be read, when it exists

    @property
    def signal_name(self) -> Optional[str]:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return str(-self.returncode)

    def failure(self) -> tuple[str, str]:
        """(status, one-line message) for a worker that left no result: ``interrupted``, ``oom``
        (killed by SIGKILL, or its last words say memory ran out) or ``error``."""
        if self.interrupted:
            return "interrupted", "interrupted (Ctrl-C)"
        if self.timed_out:
            return "error", f"worker timed out after {self.wall_s:.0f} s"
        if self.unreadable:
            return "error", f"unreadable worker result: {self.unreadable}"
        if self.signal_name == "SIGKILL":
            return "oom", "worker killed by SIGKILL (most likely the kernel's out-of-memory killer)"
        if self.signal_name:
            return "error", f"worker killed by {self.signal_name}"
        status = "oom" if looks_oom(self.tail) else "error"
        return status, f"worker exited with status {self.returncode}: {self.tail}"


def last_line(path: Path) -> str:
    """The last non-empty line of a log (at most 300 characters); "" when there is none."""
    try:
        lines = [x for x in Path(path).read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def run_worker(kind: str, spec: dict[str, Any], workdir: Path, *, log_path: Optional[Path] = None,
               timeout_s: Optional[float] = None) -> Outcome:
    """Run ``python -m gonprof.worker KIND`` on ``spec`` in a fresh process; see the module docstring."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = workdir / "spec.json", workdir / "result.json"
    log_path = Path(log_path) if log_path is not None else workdir / "worker.log"
    spec_path.write_text(json.dumps(spec, indent=2))
    result_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    interrupted = timed_out = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gonprof.worker", kind, str(spec_path), str(result_path)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            code, timed_out = proc.wait(), True
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGKILL)
            code, interrupted = proc.wait(), True
    wall = time.perf_counter() - t0
    result, unreadable = None, ""
    if result_path.is_file() and not interrupted:
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError) as exc:
            unreadable = str(exc)
    return Outcome(result=result, returncode=code, tail=last_line(log_path), wall_s=wall, interrupted=interrupted,
                   timed_out=timed_out, unreadable=unreadable)
