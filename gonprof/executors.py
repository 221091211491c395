"""Run independent jobs, each in a fresh worker process: the one executor of compare rows, fit trials and
scaling points.

A :class:`Job` is one ``python -m gonprof.worker KIND`` run (:mod:`gonprof.isolation`) on a spec dict.
A :class:`Placement` says where jobs run; its :meth:`~Placement.session` runs lists of them, reporting
each as it starts (``on_start(k, spec)``, the spec as it runs: cores and threads set) and as it ends
(``on_done(k, outcome)``, in the order they finish):

- ``local``, ``jobs=1`` (the default): one worker process at a time, as gonprof always ran them;
- ``local``, ``jobs=N``: up to N at once, each worker pinned to its own disjoint set of this process's
  cores (:func:`core_slots`, CPU affinity) with torch threads to match (the spec's ``cpus`` and
  ``threads``);
- ``ray``: every job a Ray task that starts the same worker process on its node (the Ray worker is
  never reused, ``max_calls=1``, and never retried, ``max_retries=0``), reserving ``cpus_per_run`` CPUs
  (the job's torch threads) and ``gpus_per_run`` whole GPUs; a job whose Ray worker or node died (or that
  met any other Ray error: unschedulable, a failure of Ray itself) is an outcome with ``lost`` set, not a
  hang, and one that Ray's memory monitor killed an outcome with ``oom`` set (too big, as the OOM killer's).
  Without ``address`` a local cluster is started for the session and stopped after it.

Ctrl-C stops the jobs still running (their outcomes say ``interrupted``), starts no more, and keeps the
outcomes of those that finished; :attr:`Session.interrupted` says it happened.  Any other exception (from
an ``on_start`` or ``on_done``, say) stops the jobs still running too, and removes their temporary folders,
before it goes on up.  Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .cores import can_pin, usable_cores
from .isolation import STOP_GRACE_S, Outcome, Worker
from .records import RequestError, classify_failure
from .records.base import _Serialisable

RAY_MISSING = 'the ray executor needs Ray, an optional extra: pip install -e ".[ray]"'

#: What a session reports: on_start(k, spec as it runs), on_done(k, outcome).
OnStart = Callable[[int, dict[str, Any]], None] | None
OnDone = Callable[[int, Outcome], None] | None


@dataclass(frozen=True)
class Job:
    """One worker run: ``python -m gonprof.worker KIND`` on ``spec``.  ``workdir`` receives its spec.json,
    result.json and worker.log (None: a temporary folder, removed once its result is read)."""

    kind: str
    spec: dict[str, Any]
    workdir: Path | None = None
    timeout_s: float | None = None


def import_ray() -> ModuleType:
    """Ray, or a one-line RequestError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise RequestError(RAY_MISSING) from None
    return ray


def core_slots(jobs: int, cores: list[int] | None = None) -> list[list[int]]:
    """``jobs`` disjoint sets of this process's cores, as equal as they divide; an error when there are
    fewer cores than jobs (runs would share cores and their timings would not compare)."""
    if jobs > 1 and not can_pin():
        raise RequestError(f"--jobs {jobs} pins each run to its own cores, which this system cannot do "
                           "(no sched_setaffinity); use --jobs 1 or --executor ray")
    cores = usable_cores() if cores is None else list(cores)
    if jobs > len(cores):
        raise RequestError(f"--jobs {jobs}: this process may use {len(cores)} cores, so runs would share them; "
                           f"use --jobs {len(cores)} or fewer")
    per = len(cores) // jobs
    return [cores[k * per:(k + 1) * per] for k in range(jobs)]


@dataclass(frozen=True)
class Placement(_Serialisable):
    """Where jobs run: ``executor`` ``local`` (``jobs`` at once) or ``ray`` (the cluster at ``address``,
    None: a local one; ``cpus_per_run`` CPUs and ``gpus_per_run`` whole GPUs per job); ``inline`` runs
    compare rows in the calling process, one after another (tests, debugging).  The second half of
    a request, beside its :class:`~gonprof.request.StepSpec`; :meth:`checked` validates it once."""

    executor: str = "local"
    jobs: int = 1
    address: str | None = None
    cpus_per_run: int = 1
    gpus_per_run: int = 0

    def checked(self, device: str = "cpu") -> Placement:
        """This placement, or a one-line RequestError for a combination that cannot be (checked before
        anything runs)."""
        executor, jobs, address = self.executor, self.jobs, self.address
        cpus_per_run, gpus_per_run = self.cpus_per_run, self.gpus_per_run
        if executor not in ("local", "ray", "inline"):
            raise RequestError(f"--executor must be local or ray (or inline: in this process), not {executor!r}")
        if executor == "inline" and (jobs != 1 or address or cpus_per_run != 1 or gpus_per_run):
            raise RequestError("the inline executor runs one row at a time in this process; drop --jobs, --address, "
                               "--cpus-per-run and --gpus-per-run")
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise RequestError(f"--jobs must be a whole number, at least 1, not {jobs!r}")
        cuda = str(device).startswith("cuda")
        if executor == "ray":
            import_ray()  # without the extra: one line saying how to install it
            if jobs > 1:
                raise RequestError("--jobs is the local executor's; with --executor ray the cluster schedules the runs")
            if cpus_per_run < 1 or gpus_per_run < 0 or int(gpus_per_run) != gpus_per_run:
                raise RequestError("--cpus-per-run must be at least 1 and --gpus-per-run a whole number of GPUs")
            if cuda and gpus_per_run < 1:
                raise RequestError(f"--device {device} with --executor ray needs --gpus-per-run 1 or more "
                                   "(a run on the GPU reserves it whole)")
        else:
            if address is not None:
                raise RequestError("--address is the ray executor's; add --executor ray")
            if cpus_per_run != 1 or gpus_per_run != 0:
                raise RequestError("--cpus-per-run and --gpus-per-run are the ray executor's; add --executor ray "
                                   "(locally, --jobs N splits this machine's cores)")
            if jobs > 1 and cuda:
                raise RequestError(f"--jobs {jobs} on --device {device} would run side by side on one GPU and "
                                   "their figures would not be their own; use --executor ray --gpus-per-run 1 on "
                                   "a cluster with several GPUs")
            if jobs > 1:
                core_slots(int(jobs))  # runs that would share cores are refused before anything runs
        return Placement(executor, int(jobs), address, int(cpus_per_run), int(gpus_per_run))

    @property
    def default(self) -> bool:
        """One local worker at a time, as gonprof ran before executors."""
        return self.executor == "local" and self.jobs == 1

    def describe(self) -> str:
        """Where the runs go, in words (for records' notes)."""
        if self.executor == "inline":
            return "one run at a time, in the calling process"
        if self.executor == "ray":
            gpus = f" and {self.gpus_per_run} GPU{'s' if self.gpus_per_run > 1 else ''}" if self.gpus_per_run else ""
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
            return (f"on {where}, each in a fresh worker process with {self.cpus_per_run} "
                    f"CPU{'s' if self.cpus_per_run > 1 else ''}{gpus}")
        if self.jobs > 1:
            return f"up to {self.jobs} runs at once, each pinned to its own cores (torch threads to match)"
        return "one run at a time, each in its own process"

    def session(self) -> Session:
        return RaySession(self) if self.executor == "ray" else LocalSession(self)


class Session:
    """Runs lists of jobs (:meth:`run`) for the life of a ``with`` block; ``width`` is how many run at once."""

    width: int = 1
    interrupted: bool = False

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, jobs: Sequence[Job], on_start: OnStart = None, on_done: OnDone = None) -> dict[int, Outcome]:
        """The outcome of every job that started, by its index in ``jobs`` (see the module docstring)."""
        raise NotImplementedError

    @staticmethod
    def _workdir(job: Job) -> tuple[Path, bool]:
        if job.workdir is not None:
            return Path(job.workdir), False
        return Path(tempfile.mkdtemp(prefix=f"gonprof-{job.kind}-")), True


class LocalSession(Session):
    """Worker processes on this machine, ``jobs`` at once (pinned to disjoint cores when more than one)."""

    def __init__(self, executor: Placement):
        self.slots: list[list[int] | None] = list(core_slots(executor.jobs)) if executor.jobs > 1 else [None]
        self.width = len(self.slots)

    def run(self, jobs: Sequence[Job], on_start: OnStart = None, on_done: OnDone = None) -> dict[int, Outcome]:
        free = list(self.slots)
        pending = list(enumerate(jobs))
        running: dict[int, tuple[Worker, list[int] | None, Path, bool]] = {}
        outcomes: dict[int, Outcome] = {}

        def finish(k: int, outcome: Outcome) -> None:
            _, cores, folder, temporary = running.pop(k)
            free.append(cores)
            if temporary:
                shutil.rmtree(folder, ignore_errors=True)
            outcomes[k] = outcome

        try:
            while pending or running:
                while pending and free:
                    k, job = pending.pop(0)
                    cores = free.pop(0)
                    spec = dict(job.spec)
                    if cores is not None:  # this run's own cores, shared with no other
                        spec.update(cpus=list(cores), threads=spec.get("threads") or len(cores))
                    folder, temporary = self._workdir(job)
                    # held before it starts, so that whatever happens next, the finally below stops it
                    running[k] = (Worker(job.kind, spec, folder, timeout_s=job.timeout_s, start=False), cores,
                                  folder, temporary)
                    if on_start:
                        on_start(k, spec)
                    running[k][0].start()
                ended = False
                for k in list(running):
                    outcome = running[k][0].poll()
                    if outcome is None:
                        continue
                    finish(k, outcome)
                    ended = True
                    if on_done:
                        on_done(k, outcome)
                if not ended:
                    time.sleep(0.05)
        except KeyboardInterrupt:
            self.interrupted = True
            for k in list(running):  # every worker ends its step and writes what it has, side by side
                running[k][0].interrupted = True
                running[k][0].interrupt()
            deadline = time.monotonic() + STOP_GRACE_S
            for k in list(running):
                worker = running[k][0]
                worker.kill(grace_s=max(0.0, deadline - time.monotonic()))
                finish(k, worker._outcome())
        finally:  # any other exception (a callback's, say): no worker left running, no temporary folder left
            for k in list(running):
                worker, _, folder, temporary = running.pop(k)
                worker.kill()
                if temporary:
                    shutil.rmtree(folder, ignore_errors=True)
        return outcomes


def _ray_job(kind: str, spec: dict[str, Any], workdir: str | None, timeout_s: float | None, root: str
             ) -> dict[str, Any]:
    """One job inside a Ray task: the same fresh worker process the local executor starts, on this node,
    killed with the task if Ray cancels it; returns the :class:`Outcome`'s fields."""
    path = os.environ.get("PYTHONPATH")  # the worker imports the gonprof this task was sent from
    os.environ["PYTHONPATH"] = root + (os.pathsep + path if path else "")
    folder, temporary = Session._workdir(Job(kind, spec, Path(workdir) if workdir else None))
    try:
        outcome = Worker(kind, spec, folder, timeout_s=timeout_s, die_with_parent=True).wait()
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    return dataclasses.asdict(outcome)


def _first_line(exc: BaseException, prefix: str = "") -> str:
    """``Type: first line of the message`` (:func:`~gonprof.records.classify_failure`'s one line, at most
    300 characters), after ``prefix`` when given."""
    return (f"{prefix}: " if prefix else "") + classify_failure(exc)[1][:300]


class RaySession(Session):
    """Every job a Ray task in a fresh Ray worker that runs the job's worker process on its node."""

    def __init__(self, executor: Placement):
        self.executor = executor
        self.ray = import_ray()
        self.started_here = False

    def __enter__(self) -> RaySession:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.executor.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self.started_here = True
        # max_calls=1: a fresh Ray worker per job; max_retries=0: a job whose worker or node died is reported,
        # never silently run again
        self.remote = ray.remote(max_calls=1, max_retries=0, num_cpus=self.executor.cpus_per_run,
                                 num_gpus=self.executor.gpus_per_run)(_ray_job)
        total = ray.cluster_resources()
        width = int(total.get("CPU", 1) // self.executor.cpus_per_run)
        if self.executor.gpus_per_run:
            width = min(width, int(total.get("GPU", 0) // self.executor.gpus_per_run))
        self.width = max(1, width)  # how many jobs the cluster holds at once
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started_here:
            self.ray.shutdown()

    def run(self, jobs: Sequence[Job], on_start: OnStart = None, on_done: OnDone = None) -> dict[int, Outcome]:
        ray = self.ray
        from ray import exceptions as rx

        root = str(Path(__file__).resolve().parents[1])  # the folder gonprof imports from
        pending: dict[Any, tuple[int, float]] = {}
        outcomes: dict[int, Outcome] = {}
        try:
            for k, job in enumerate(jobs):
                spec = dict(job.spec)
                spec["threads"] = spec.get("threads") or self.executor.cpus_per_run
                if job.workdir is not None:  # the spec beside the results here too (the job may run elsewhere)
                    Path(job.workdir).mkdir(parents=True, exist_ok=True)
                    (Path(job.workdir) / "spec.json").write_text(json.dumps(spec, indent=2))
                if on_start:
                    on_start(k, spec)
                ref = self.remote.remote(job.kind, spec, str(job.workdir) if job.workdir is not None else None,
                                         job.timeout_s, root)
                pending[ref] = (k, time.perf_counter())
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    k, t0 = pending.pop(ref)
                    wall = time.perf_counter() - t0
                    try:
                        outcome = Outcome(**ray.get(ref))
                    except rx.OutOfMemoryError as exc:  # Ray's memory monitor killed the task: too big
                        outcome = Outcome(result=None, returncode=None, tail="", wall_s=wall,
                                          oom=_first_line(exc, "killed by Ray's memory monitor"))
                    except rx.RayTaskError as exc:
                        outcome = Outcome(result=None, returncode=None, tail="", wall_s=wall,
                                          error=_first_line(exc.as_instanceof_cause()))
                    except rx.RayError as exc:  # its worker or node died, it could not be scheduled, Ray failed
                        outcome = Outcome(result=None, returncode=None, tail="", wall_s=wall, lost=_first_line(exc))
                    outcomes[k] = outcome
                    if on_done:
                        on_done(k, outcome)
        except KeyboardInterrupt:
            self.interrupted = True
            for k, t0 in pending.values():
                outcomes[k] = Outcome(result=None, returncode=None, tail="", wall_s=time.perf_counter() - t0,
                                      interrupted=True)
        finally:  # Ctrl-C or any other exception (a callback's, say): no task left running on the cluster
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - a task that already ended, or a cluster already gone
                    pass
        return outcomes
