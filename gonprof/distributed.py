"""``gonprof profile --nproc N``: the same step profiled on N data-parallel ranks.

:func:`launch` writes the request (:class:`RankSpec`) as JSON into a fresh folder and starts
``python -m torch.distributed.run --standalone --nproc-per-node N -m gonprof.worker ddp-rank SPEC OUT``
(torch.distributed's elastic launcher) in a new session, its output and each rank's output going to log
files there.  Each rank (:func:`run_rank`) joins the process group (gloo on the CPU, nccl with one GPU per
rank), builds the step with the same seed as every other rank, wraps its models in
DistributedDataParallel (:func:`gonprof.ddp.wrap_step`), reseeds torch with ``seed + rank`` for its own
batches and noise, profiles the step (:func:`gonprof.ddp.profile_rank`) and writes its
:class:`~gonprof.records.RankRecord` to ``OUT/rank-R.json``.  The launcher then assembles a
:class:`~gonprof.records.DistributedProfileRecord`.

A rank that fails writes its record with the failure and exits 1; the elastic launcher then stops the
other ranks (a rank waiting in an all-reduce would wait for ever), which leave no record.  Ctrl-C here
stops the launcher, which stops the ranks (a second Ctrl-C kills its process group at once); ranks left
running are killed by the pid each wrote.  The folder is removed when every rank succeeded (or the run
was interrupted) and kept, named in the record's message, when one failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .isolation import last_line
from .records import DistributedProfileRecord, RankRecord, RequestError, TooBigError
from .records.base import _Serialisable
from .request import StepSpec

#: How long a rank waits in a collective for the others before it fails (gloo's own default is 30 min).
COLLECTIVE_TIMEOUT_S = 600
LAUNCHER = "torch.distributed.run --standalone"


@dataclass(frozen=True)
class RankSpec(_Serialisable):
    """What every rank profiles: the step's request (``step``, its batch size per rank), the schedule, and
    the launch (``threads`` each rank's torch threads, the backend, plugin files, the collective timeout)."""

    step: StepSpec
    warmup: int = 2
    steps: int = 10
    threads: int = 1
    backend: str = "gloo"
    plugins: list[str] = field(default_factory=list)
    timeout_s: float = COLLECTIVE_TIMEOUT_S


def plan_ranks(spec: StepSpec, *, nproc: int, warmup: int = 2, steps: int = 10, force: bool = False,
               threads: int | None = None, plugins: Sequence[str | os.PathLike[str]] = ()) -> DistributedProfileRecord:
    """Check a data-parallel profile of the checked request ``spec`` on ``nproc`` ranks (backend, DDP
    settings, memory for every rank), then :func:`launch` it.  Errors in the request raise before any rank
    starts."""
    from .cores import usable_cores
    from .guard import available_bytes, check_fits

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise RequestError(f"--nproc must be a whole number of ranks, at least 1; got {nproc!r}")
    if threads is not None and threads < 1:
        raise RequestError(f"--threads must be at least 1, got {threads}")
    backend = check_backend(spec.device, nproc)
    spec.mode_spec().check_ddp(spec.resolved_hparams())
    spec = spec.replace(batch_size=spec.effective_batch_size())
    est = check_fits(spec, force=force)
    free = available_bytes("cpu")
    if spec.device == "cpu" and nproc > 1 and est.peak_bytes * nproc > free and not force:
        raise TooBigError(f"{spec.arch} ({spec.mode}) at batch {spec.batch_size} per rank: {nproc} ranks on this "
                          f"machine need about {est.peak_bytes * nproc / 2**30:,.2f} GiB together (estimated on "
                          f"meta tensors), more than the {free / 2**30:,.2f} GiB available; fewer ranks or a "
                          "smaller batch, or --force to run it anyway")
    cores = len(usable_cores())
    rank_spec = RankSpec(step=spec, warmup=warmup, steps=steps, threads=int(threads or max(1, cores // nproc)),
                         backend=backend, plugins=[str(Path(p).resolve()) for p in plugins or ()])
    return launch(rank_spec, nproc)


def check_backend(device: str, nproc: int) -> str:
    """The backend for ``nproc`` ranks on ``device`` (gloo on the CPU, nccl on CUDA, one GPU per rank);
    a one-line RequestError when this machine cannot run them."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RequestError("--nproc needs torch.distributed, which this torch build lacks")
    if device == "cpu":
        if not dist.is_gloo_available():
            raise RequestError("--nproc on the CPU needs torch.distributed's gloo backend, which this torch "
                               "build lacks")
        return "gloo"
    if device != "cuda":
        raise RequestError(f"--nproc puts rank r on cuda:r; give --device cuda, not {device}")
    import torch

    have = torch.cuda.device_count()
    if have < nproc:
        raise RequestError(f"--nproc {nproc} --device cuda needs one GPU per rank; this machine has {have}")
    if not dist.is_nccl_available():
        raise RequestError("--nproc with --device cuda needs torch.distributed's nccl backend, which this torch "
                           "build lacks")
    return "nccl"


# -- the launcher's side ----------------------------------------------------------------

def launcher_command(nproc: int, spec_path: Path, out_dir: Path) -> list[str]:
    """The elastic launcher's command line for ``nproc`` ranks on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "--max-restarts=0", f"--log-dir={out_dir / 'logs'}", "--redirects=3",
            "-m", "gonprof.worker", "ddp-rank", str(spec_path), str(out_dir)]


def launch(spec: RankSpec, nproc: int, workdir: Path | None = None) -> DistributedProfileRecord:
    """Profile ``spec`` on ``nproc`` ranks through the elastic launcher; the assembled record.  Never
    raises for a failed or interrupted run: that is the record's status."""
    import shutil

    out = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="gonprof-ddp-"))
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec.to_dict(), indent=2))
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.threads))
    interrupted, proc, settled, keep = False, None, False, False
    try:
        with open(out / "launcher.log", "w") as log:
            proc = subprocess.Popen(launcher_command(nproc, spec_path, out), stdout=log,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)  # Ctrl-C reaches this process only
            try:
                proc.wait()
            except KeyboardInterrupt:
                interrupted = True
                _stop(proc)
        _stop_leftover_ranks(out, spec_path, nproc)
        settled = True
        record = _assemble(spec, nproc, out, interrupted)
        if not interrupted and not (record.status == "ok" and proc.returncode == 0):
            keep = True  # the folder's logs are named in the record's message
            if record.status == "ok":  # every rank wrote a good record, yet the launcher failed
                tail = last_line(out / "launcher.log")
                record = record.replace(status="error", message=f"the launcher exited with status "
                                                                f"{proc.returncode}: {tail}")
            record = record.replace(message=f"{record.message} (launcher and rank logs: {out})")
        return record
    except KeyboardInterrupt:
        raise
    except BaseException:
        keep = True  # an unexpected error: its logs stay beside the traceback
        raise
    finally:
        if not settled:  # something escaped before the run was settled: nothing of it keeps running
            if proc is not None and proc.poll() is None:
                _stop(proc, grace_s=0.0)
            _stop_leftover_ranks(out, spec_path, nproc)
        if workdir is None and not keep:
            shutil.rmtree(out, ignore_errors=True)


def _assemble(spec: RankSpec, nproc: int, out: Path, interrupted: bool) -> DistributedProfileRecord:
    """The record from the ranks' files in ``out``; a rank without one failed (or was interrupted)."""
    ranks = []
    for r in range(nproc):
        rec = _read_rank(out, r)
        if rec is None:
            if interrupted:
                rec = RankRecord(rank=r, status="interrupted", message="interrupted (Ctrl-C)")
            else:
                tail = _rank_log_tail(out, r)
                rec = RankRecord(rank=r, status="error",
                                 message="left no record" + (f" (its last words: {tail})" if tail else ""))
        ranks.append(rec)
    first = next((r.profile for r in ranks if r.profile is not None), None)
    step = spec.step
    return DistributedProfileRecord.assemble(
        ranks, world_size=nproc, backend=spec.backend, launcher=LAUNCHER, device=step.device,
        threads_per_rank=spec.threads, arch=step.arch, mode=step.mode,
        generator=first.generator if first is not None else step.generator, batch_size=step.batch_size,
        ddp=dict(first.extra.get("ddp", {})) if first is not None else {},
        extra={"seed": step.seed, "rank_seeds": "seed + rank", "preset": step.preset},
        warnings=tuple(dict.fromkeys(w for r in ranks if r.profile is not None for w in r.profile.warnings)))


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """Stop the launcher's process group: SIGTERM (the launcher stops its ranks), then SIGKILL after
    ``grace_s`` or at once on another Ctrl-C while waiting (``grace_s`` 0: SIGKILL straight away)."""
    if proc.poll() is not None:
        return
    try:
        if grace_s > 0:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
                return
            except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a second Ctrl-C: no more waiting
                pass
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:  # SIGKILL cannot be refused: this wait is short, and further Ctrl-Cs do not cut it off
        try:
            proc.wait()
            return
        except KeyboardInterrupt:
            continue


def _stop_leftover_ranks(out: Path, spec_path: Path, nproc: int) -> None:
    """SIGKILL any rank still running once the launcher has gone (each wrote its pid at start).

    A pid is only this run's rank when its command line is this run's (``gonprof.worker ddp-rank`` with
    this run's spec and folder) and the process started no later than its pid file was written: a pid
    reused since by another process (another run's rank, a compare row, a fit trial) is left alone.
    """
    for r in range(nproc):
        pid_file = out / f"rank-{r}.pid"
        try:
            pid = int(pid_file.read_text())
            written = pid_file.stat().st_mtime
        except (OSError, ValueError):
            continue
        _kill_if_rank(pid, written, spec_path, out)


def _kill_if_rank(pid: int, written: float, spec_path: Path, out: Path) -> bool:
    """SIGKILL ``pid`` when it is the rank of this run that wrote its pid file at ``written`` (the
    file's mtime); whether it did."""
    import psutil

    try:
        p = psutil.Process(pid)
        cmdline = p.cmdline()
        # the process's start (/proc/PID/stat field 22, from boot, plus the boot time, which the kernel
        # gives in whole seconds rounded down: never later than the true start)
        started = p.create_time()
    except (psutil.Error, OSError):
        return False
    args = " ".join(cmdline)
    if not ("gonprof.worker" in args and "ddp-rank" in cmdline and str(spec_path) in cmdline
            and str(out) in cmdline):
        return False
    if started > written:  # started after the rank wrote its pid: the pid was reused
        return False
    try:
        p.kill()
    except psutil.Error:
        return False
    return True


def _read_rank(out: Path, r: int) -> RankRecord | None:
    path = out / f"rank-{r}.json"
    try:
        return RankRecord.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _rank_log_tail(out: Path, r: int) -> str:
    """The last line rank ``r`` wrote to its stderr (the elastic launcher's per-rank log)."""
    for path in sorted((out / "logs").glob(f"**/{r}/stderr.log")):
        tail = last_line(path)
        if tail:
            return tail
    return ""


# -- the rank's side -----------------------------------------------------------------------

def run_rank(spec_path: str, out_dir: str) -> int:
    """One rank, under the elastic launcher (RANK, WORLD_SIZE, LOCAL_RANK in the environment): profile the
    step, write ``OUT/rank-R.json``; exit status 0 when the rank's record is ok, else 1."""
    from .records import atomic_write, classify_failure

    rank = int(os.environ.get("RANK", "0"))
    out = Path(out_dir)
    (out / f"rank-{rank}.pid").write_text(str(os.getpid()))
    try:
        spec = RankSpec.from_dict(json.loads(Path(spec_path).read_text()))
        rec = _profile_this_rank(spec, rank, int(os.environ.get("WORLD_SIZE", "1")),
                                 int(os.environ.get("LOCAL_RANK", str(rank))))
    except (KeyboardInterrupt, Exception) as exc:
        status, message = classify_failure(exc)
        rec = RankRecord(rank=rank, status=status, message=message)
    atomic_write(out / f"rank-{rank}.json", json.dumps(rec.to_dict(), allow_nan=True))
    return 0 if rec.status == "ok" else 1


def _profile_this_rank(spec: RankSpec, rank: int, world: int, local_rank: int) -> RankRecord:
    import datetime

    import torch
    import torch.distributed as dist

    from .ddp import profile_rank, wrap_step
    from .measure.comm import AllreduceCounter
    from .records import to_jsonable
    from .registry import load_plugin_file
    from .runner import profile_data

    torch.set_num_threads(int(spec.threads))
    for path in spec.plugins:
        load_plugin_file(Path(path))
    request = spec.step
    device, device_ids = request.device, None
    if request.device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device, device_ids = f"cuda:{local_rank}", [local_rank]
    dist.init_process_group(spec.backend, timeout=datetime.timedelta(seconds=float(spec.timeout_s)))
    try:
        step = request.build(device=device)  # the same seed, so one init on every rank
        selection = request.selection()
        assert step.input_shape is not None  # set by build()
        shape = tuple(step.input_shape)
        dataset = profile_data(request.data, shape, selection)
        counter = AllreduceCounter()
        options = wrap_step(step, counter, device_ids=device_ids)
        torch.manual_seed(request.seed + rank)  # this rank's own noise
        extra = {"preset": request.preset, "seed": request.seed + rank, "data": dataset.name,
                 "selection": selection.to_dict(), "train_images": len(dataset), "input_shape": list(shape),
                 "hparams": to_jsonable(step.hparams), "notes": list(step.notes), "rank": rank,
                 "world_size": world, "backend": spec.backend, "ddp": options}
        return profile_rank(step, dataset, counter, rank=rank, batch_size=request.effective_batch_size(),
                            warmup=spec.warmup, steps=spec.steps, seed=request.seed + rank,
                            about=dict(arch=request.arch, mode=request.mode_name,
                                       generator=step.generator or request.generator, extra=extra))
    finally:
        dist.destroy_process_group()
