"""Progress display for ``gonprof train``: a rich bar on stderr.

The library never prints; the CLI hands a :class:`RichProgress` to
:func:`gonprof.train.run_training` as its ``progress`` callback.  Any object
with some of the methods below works (missing ones are skipped):

``start(total, initial, description)``  the run begins (``initial`` > 0 on resume)
``update(step, losses)``                one step done; ``losses`` maps names to floats
``note(text)``                          a one-line event (a grid written, stopping...)
``finish(result)``                      the run ended; ``result`` is a TrainResult

On a terminal the bar shows the step, the latest losses, steps/s, elapsed time
and ETA.  When stderr is not a terminal (a log file, CI), it prints one plain
line every ``plain_every_s`` seconds instead of redrawing.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from rich.progress import ProgressColumn

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task, TaskID
    from rich.text import Text


def format_losses(losses: dict[str, Any], digits: int = 4) -> str:
    parts = []
    for k, v in losses.items():
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            parts.append(f"{k}={v}")
        else:
            parts.append(f"{k}={float(v):.{digits}g}")
    return " ".join(parts)


class RichProgress:
    """Step, losses, steps/s and ETA on stderr (rich), for :func:`run_training`."""

    def __init__(self, console: Console | None = None, plain_every_s: float = 10.0) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.plain_every_s = plain_every_s
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total: int | None = 0
        self._t0 = 0.0
        self._initial = 0
        self._last_plain = 0.0

    # -- protocol ---------------------------------------------------------
    def start(self, total: int | None, initial: int = 0, description: str = "") -> None:
        """``total`` None: the run is bounded by time, not steps (no bar, no ETA)."""
        self._total, self._initial = (int(total) if total is not None else None), int(initial)
        self._t0 = self._last_plain = time.perf_counter()
        if not self.console.is_terminal:
            self.console.print(f"{description}: step {initial}/{total if total is not None else '?'}",
                               highlight=False)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=self.console,
            refresh_per_second=4,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=initial, losses="")

    def update(self, step: int, losses: dict[str, float]) -> None:
        if self._progress is not None:
            assert self._task is not None  # set with the bar, in start()
            self._progress.update(self._task, completed=step, losses=format_losses(losses))
            return
        now = time.perf_counter()
        total = self._total
        if now - self._last_plain >= self.plain_every_s or (total is not None and step >= total):
            self._last_plain = now
            rate = (step - self._initial) / max(now - self._t0, 1e-9)
            eta = (total - step) / rate if rate > 0 and total is not None else float("inf")
            self.console.print(f"step {step}/{total if total is not None else '?'}  {rate:.2f} steps/s  "
                               f"eta {_fmt_s(eta)}  {format_losses(losses)}", highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def finish(self, result: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        status = getattr(result, "status", "?")
        msg = getattr(result, "message", "")
        style = "green" if status == "ok" else "yellow" if status == "interrupted" else "red"
        path = getattr(result, "path", "")
        self.console.print(f"[{style}]{status}[/{style}]: {msg}" + (f" ({path})" if path else ""), highlight=False)


def _fmt_s(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


class _RateColumn(ProgressColumn):
    """Steps per second, from rich's recent-speed estimate."""

    def render(self, task: Task) -> Text:
        from rich.text import Text

        speed = task.speed
        if speed is None:
            return Text("-- steps/s", style="progress.data.speed")
        return Text(f"{speed:.2f} steps/s" if speed < 100 else f"{speed:.0f} steps/s",
                    style="progress.data.speed")
