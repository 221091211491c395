"""Peak resident set size (RSS) of this process during a step.

Method ``"vmhwm"`` (Linux): write ``5`` to ``/proc/self/clear_refs``, which
resets the kernel's high-water mark VmHWM to the current RSS; after the step,
read VmHWM from ``/proc/self/status``.  Exact to the page, no sampling, about
15 microseconds per step.

Fallback ``"psutil-poll-1ms"``: a daemon thread samples ``psutil``'s RSS every
millisecond and keeps the maximum; spikes shorter than the period can be missed.
The method used is reported with every result.

Figures are absolute bytes plus the delta over the baseline, the RSS at the
step's start.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

METHOD_VMHWM = "vmhwm"
METHOD_POLL = "psutil-poll-1ms"


@dataclass(frozen=True)
class RssSample:
    method: str
    rss_start_bytes: int
    peak_rss_bytes: int

    @property
    def peak_rss_delta_bytes(self) -> int:
        return self.peak_rss_bytes - self.rss_start_bytes


def _parse_kb(status: bytes, key: bytes) -> int:
    i = status.find(key)
    if i < 0:
        raise OSError(f"{key!r} not in /proc/self/status")
    j = status.find(b"\n", i)
    parts = status[i + len(key) : j].split()
    return int(parts[0]) * 1024


class _VmHwm:
    method = METHOD_VMHWM

    def __init__(self) -> None:
        self._clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
        self._status = os.open("/proc/self/status", os.O_RDONLY)
        # check that the reset works here: after it, VmHWM must equal VmRSS-ish
        os.write(self._clear, b"5")
        s = self._read()
        hwm, rss = _parse_kb(s, b"VmHWM:"), _parse_kb(s, b"VmRSS:")
        if hwm < rss or hwm > rss + 64 * 1024 * 1024:
            self.close()
            raise OSError("VmHWM reset through clear_refs did not take effect")

    def _read(self) -> bytes:
        os.lseek(self._status, 0, os.SEEK_SET)
        return os.read(self._status, 16384)

    def start(self) -> int:
        os.write(self._clear, b"5")
        return _parse_kb(self._read(), b"VmRSS:")

    def peak(self) -> int:
        return _parse_kb(self._read(), b"VmHWM:")

    def current(self) -> int:
        return _parse_kb(self._read(), b"VmRSS:")

    def close(self) -> None:
        for fd in (getattr(self, "_clear", None), getattr(self, "_status", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._clear = self._status = None  # type: ignore[assignment]


class _Poller:
    method = METHOD_POLL

    def __init__(self, interval_s: float = 0.001) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gonprof-rss-poll", daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            r = self._rss()
            if r > self._max:
                self._max = r
            time.sleep(self._interval)

    def start(self) -> int:
        r = self._rss()
        self._max = r
        return r

    def peak(self) -> int:
        r = self._rss()
        return max(self._max, r)

    def current(self) -> int:
        return self._rss()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


class RssPeak:
    """Peak RSS per interval.  ``method``: ``"auto"`` (VmHWM, else polling), ``"vmhwm"`` or ``"poll"``.

    >>> rp = RssPeak()
    >>> rp.start(); ...; sample = rp.stop()
    """

    def __init__(self, method: str = "auto", poll_interval_s: float = 0.001) -> None:
        self._impl: _VmHwm | _Poller
        if method not in ("auto", "vmhwm", "poll", METHOD_POLL, METHOD_VMHWM):
            raise ValueError(f"unknown RSS method {method!r}")
        if method in ("auto", "vmhwm", METHOD_VMHWM):
            try:
                self._impl = _VmHwm()
            except OSError:
                if method != "auto":
                    raise
                self._impl = _Poller(poll_interval_s)
        else:
            self._impl = _Poller(poll_interval_s)
        self._start: int | None = None

    @property
    def method(self) -> str:
        return self._impl.method

    def start(self) -> int:
        """Reset the high-water mark; return the baseline (RSS now) in bytes."""
        self._start = self._impl.start()
        return self._start

    def stop(self) -> RssSample:
        peak = self._impl.peak()
        start = self._start if self._start is not None else peak
        self._start = None
        return RssSample(self.method, start, max(peak, start))

    def current(self) -> int:
        return self._impl.current()

    def close(self) -> None:
        self._impl.close()

    def __enter__(self) -> RssPeak:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.last = self.stop()
