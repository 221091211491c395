"""Run one piece of work in a fresh Python process: the isolation compare rows and fit trials share.

:class:`Worker` writes the work's spec as JSON into a folder, starts
``python -m gonprof.worker KIND SPEC.json RESULT.json`` in a new session (so
that Ctrl-C reaches this process, which then passes it on to the worker: a
training worker ends its step, writes its checkpoint and result, and is
killed only if it has not ended within ``STOP_GRACE_S``), sends the
worker's output to a log file and, once it ends (:meth:`Worker.poll`,
:meth:`Worker.wait`), reads the worker's JSON result back.  The executors
(:mod:`gonprof.executors`) start and watch workers.
What happened is an :class:`Outcome`, never an exception: the result when
there is one, else the exit code, the signal that ended the worker and the
last line it printed, classified by :meth:`Outcome.failure`.

A memory cap is the worker's business (each kind applies its own: compare
rows an ``RLIMIT_DATA``, fit trials an RSS watchdog); here a worker killed by
SIGKILL is most likely the kernel's out-of-memory killer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .records import looks_oom


@dataclass(frozen=True)
class Outcome:
    """How one worker process ended."""

    result: dict[str, Any] | None  # what the worker wrote to RESULT.json (None: it wrote nothing readable)
    returncode: int | None  # negative: killed by that signal
    tail: str  # the last non-empty line of its output
    wall_s: float
    interrupted: bool = False  # Ctrl-C here stopped it
    timed_out: bool = False
    unreadable: str = ""  # why RESULT.json could not be read, when it exists
    lost: str = ""  # the worker was lost with the Ray worker or node that held it (gonprof.executors)
    error: str = ""  # the worker could not be run at all (e.g. its folder could not be made on a Ray node)
    oom: str = ""  # the worker was killed for memory by something other than its own cap (Ray's memory monitor)

    @property
    def signal_name(self) -> str | None:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return str(-self.returncode)

    def failure(self) -> tuple[str, str]:
        """(status, one-line message) for a worker that left no result: ``interrupted``, ``lost``
        (with its Ray worker or node), ``oom`` (killed by SIGKILL or by Ray's memory monitor, or its last
        words say memory ran out) or ``error``."""
        if self.interrupted:
            return "interrupted", "interrupted (Ctrl-C)"
        if self.oom:
            return "oom", self.oom
        if self.lost:
            return "lost", self.lost
        if self.error:
            return "error", self.error
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


class Worker:
    """One worker process; :meth:`poll` without blocking, :meth:`wait`, :meth:`kill`."""

    def __init__(self, kind: str, spec: dict[str, Any], workdir: Path, log_path: Path | None = None,
                 timeout_s: float | None = None, die_with_parent: bool = False, start: bool = True):
        self.kind, self.die_with_parent = kind, die_with_parent
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.spec_path, self.result_path = self.workdir / "spec.json", self.workdir / "result.json"
        self.log_path = Path(log_path) if log_path is not None else self.workdir / "worker.log"
        self.spec_path.write_text(json.dumps(spec, indent=2))
        self.result_path.unlink(missing_ok=True)
        self.t0 = time.perf_counter()
        self.timeout_s = timeout_s
        self.interrupted = self.timed_out = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[str] | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Start the process (``start=False`` builds a worker to keep track of before it starts, so that
        whoever holds it can always stop it)."""
        self.t0 = time.perf_counter()
        self._log = open(self.log_path, "w")
        # a new session: Ctrl-C reaches the parent only, which then stops the worker
        # die_with_parent: killed with this process (a cancelled Ray task must not leave its worker running)
        # (the worker asks for that itself at its start, see die_with_parent(): no code runs between fork and exec)
        env = dict(os.environ, **{PARENT_ENV: str(os.getpid())}) if self.die_with_parent else None
        self.proc = subprocess.Popen([sys.executable, "-m", "gonprof.worker", self.kind, str(self.spec_path),
                                      str(self.result_path)], stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)

    def poll(self) -> Outcome | None:
        """The outcome once the process has ended (or was stopped past its ``timeout_s``), else None."""
        assert self.proc is not None, "poll() before start()"
        if self.proc.poll() is None:
            if self.timeout_s is None or time.perf_counter() - self.t0 <= self.timeout_s:
                return None
            self.timed_out = True
            self.kill()
        return self._outcome()

    def wait(self, timeout_s: float | None = None) -> Outcome:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        assert self.proc is not None, "wait() before start()"
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.kill()
        except KeyboardInterrupt:
            self.interrupted = True
            self.interrupt()
            self.kill(grace_s=STOP_GRACE_S)
        return self._outcome()

    def interrupt(self) -> None:
        """Pass Ctrl-C on to the worker (which runs in its own session, out of the terminal's reach): a
        training worker finishes its step, writes its checkpoint and its result, and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def kill(self, grace_s: float = 0.0) -> None:
        """Stop the process (if it started and still runs; after up to ``grace_s`` seconds for it to end by
        itself, as it does after :meth:`interrupt`) and close its log."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()

    def _outcome(self) -> Outcome:
        if self._log is not None:
            self._log.close()
        result, unreadable = None, ""
        if self.result_path.is_file():  # after Ctrl-C too: an interrupted row's record says where it stopped
            try:
                result = json.loads(self.result_path.read_text())
            except (OSError, ValueError) as exc:
                unreadable = str(exc)
        return Outcome(result=result, returncode=self.proc.returncode if self.proc is not None else None,
                       tail=last_line(self.log_path),
                       wall_s=time.perf_counter() - self.t0, interrupted=self.interrupted,
                       timed_out=self.timed_out, unreadable=unreadable)


#: seconds a worker has, after Ctrl-C is passed on to it, to finish its step and write its checkpoint and
#: result before it is killed (a second Ctrl-C in the meantime stops it at once)
STOP_GRACE_S = 60.0

PARENT_ENV = "GONPROF_DIE_WITH_PARENT"  # set to the parent's pid for a worker that must not outlive it


def die_with_parent() -> None:
    """In a worker started with ``die_with_parent``: ask Linux to SIGKILL this process when its parent dies
    (prctl PR_SET_PDEATHSIG), and exit at once if the parent has already gone.  A no-op elsewhere."""
    parent = os.environ.pop(PARENT_ENV, None)
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # no prctl here (not Linux)
    if os.getppid() != int(parent):  # the parent died before the request took effect
        os._exit(1)
