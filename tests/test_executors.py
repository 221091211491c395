"""The executors (gonprof.executors) of compare's rows, fit's trials and --scaling's points: one run at a
time, --jobs N on disjoint cores, and a real local Ray cluster (every run in a fresh worker, a lost run is
a run with its status, not a hang); bad combinations and a missing Ray are one line."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types

import pytest
from typer.testing import CliRunner

import gonprof.comparison as cmp
import gonprof.executors as ex
from gonprof import api
from gonprof.budget import run_trial
from gonprof.cli import app
from gonprof.executors import Job, Placement, core_slots
from gonprof.records import FitRecord, RequestError, ScalingRecord, load_records
from gonprof.request import StepSpec

N = 20
MLP = dict(hparams={"inner_steps": 2})  # gon-mnist-mlp with a short inner loop: a trial is a few seconds
ENDLESS_STEP = {"arch": "gon-mnist-mlp", "mode": "gon", "batch_size": 8, **MLP}
CORES = len(os.sched_getaffinity(0))
two_cores = pytest.mark.skipif(CORES < 2, reason="needs two cores to run two at once")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(res) -> str:
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


# -- the local executor: cores, bad combinations, Ctrl-C ------------------------------------------------

def test_core_slots_are_disjoint_and_refuse_sharing():
    assert core_slots(2, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    assert core_slots(3, [0, 1, 2, 3, 4, 5, 6]) == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(RequestError, match="--jobs 3: this process may use 2 cores"):
        core_slots(3, [0, 1])


@pytest.mark.parametrize("kwargs, words", [
    (dict(executor="dask"), "--executor must be local or ray"),
    (dict(jobs=CORES + 1), f"--jobs {CORES + 1}: this process may use {CORES} cores"),
    (dict(address="auto"), "--address is the ray executor's"),
    (dict(cpus_per_run=2), "--cpus-per-run and --gpus-per-run are the ray executor's"),
    (dict(jobs=2, device="cuda"), "would run side by side on one GPU"),
    (dict(executor="ray", jobs=2), "--jobs is the local executor's"),
    (dict(executor="ray", device="cuda"), "needs --gpus-per-run 1 or more"),
    (dict(executor="ray", cpus_per_run=0), "--cpus-per-run must be at least 1"),
])
def test_combinations_that_cannot_be_are_refused(kwargs, words):
    with pytest.raises(RequestError) as e:
        device = kwargs.pop("device", "cpu")
        Placement(**kwargs).checked(device)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("args, words", [
    (["fit", "--arch", "gon-mnist-mlp", "--memory", "16MiB", "--jobs", CORES + 1], "this process may use"),
    (["fit", "--arch", "gon-mnist-mlp", "--memory", "16MiB", "--estimate", "--jobs", 2], "--estimate runs its trials"),
    (["fit", "--arch", "gon-mnist-mlp", "--memory", "16MiB", "--address", "auto"], "the ray executor's"),
    (["profile", "--arch", "gon-mnist-mlp", "--jobs", 2], "place --scaling's points"),
    (["profile", "--arch", "gon-mnist-mlp", "--nproc", 2, "--jobs", 2], "place --scaling's points"),
    (["profile", "--arch", "gon-mnist-mlp", "--nproc", 2, "--executor", "ray"], "(--nproc: in torch.distributed"),
    (["profile", "--arch", "gon-mnist-mlp", "--nproc", 2, "--address", "auto"], "place --scaling's points"),
    (["profile", "--arch", "gon-mnist-mlp", "--nproc", 2, "--cpus-per-run", 2], "place --scaling's points"),
    (["profile", "--arch", "gon-mnist-mlp", "--scaling", "--estimate", "--executor", "ray"], "--estimate runs"),
    (["profile", "--arch", "gon-mnist-mlp", "--scaling", "--cpus-per-run", 2], "the ray executor's"),
])
def test_bad_combinations_on_the_command_line_are_one_line(args, words):
    res = invoke(*args)
    assert res.exit_code == 2 and words in one_line(res)


@pytest.mark.parametrize("args", [
    ["compare", "gan", "--steps", 1, "--executor", "ray"],
    ["fit", "--arch", "gon-mnist-mlp", "--memory", "16MiB", "--executor", "ray"],
    ["profile", "--arch", "gon-mnist-mlp", "--scaling", "--batch-sizes", "2,4", "--executor", "ray"],
])
def test_without_ray_the_executor_is_one_line_saying_how_to_install_it(args, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as without the extra
    res = invoke(*args, "--json", tmp_path / "out" / "r.json")
    assert res.exit_code == 2 and 'pip install -e ".[ray]"' in one_line(res)
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


@two_cores
def test_ctrl_c_stops_the_running_jobs_and_keeps_the_finished(tmp_path):
    quick = Job("fit-trial", {"step": {"arch": "no-such-arch", "mode": "gon", "batch_size": 1}}, tmp_path / "quick")
    endless = Job("fit-trial", {"step": ENDLESS_STEP,
                                "time_steps": 10**7}, tmp_path / "endless", timeout_s=300)
    started, done = {}, []

    def on_done(k, outcome):
        done.append(k)
        raise KeyboardInterrupt  # Ctrl-C as the first job ends

    with Placement(jobs=2).session() as session:
        outcomes = session.run([quick, endless], on_start=lambda k, spec: started.update({k: spec["cpus"]}),
                               on_done=on_done)
    assert session.interrupted and done == [0]
    assert outcomes[0].result["status"] == "error" and "no-such-arch" in outcomes[0].result["message"]
    # Ctrl-C passed on: the endless trial ended by itself and said why (not killed)
    assert outcomes[1].interrupted and outcomes[1].returncode == 0
    assert "KeyboardInterrupt" in outcomes[1].result["message"]
    assert sorted(started) == [0, 1] and not set(started[0]) & set(started[1])  # each its own cores


def test_ctrl_c_lets_a_training_row_end_its_step_and_record_where_it_stopped(tmp_path):
    """Ctrl-C (or SIGTERM, which takes its path) while a compare row trains: the worker is not killed but
    finishes its step, writes its checkpoint and a record with the step it reached, so --resume goes on."""
    folder = tmp_path / "row"
    (spec,) = cmp.plan(["gan"], steps=10**6, batch_size=8, n_samples=20, profile_steps=1)
    spec = dataclasses.replace(spec, run_dir=str(folder / "run"))  # as compare places it
    log = folder / "run" / "log.jsonl"

    def ctrl_c_once_it_trains(k, spec):
        def later():
            t0 = time.monotonic()
            while time.monotonic() - t0 < 120 and not (log.is_file() and log.read_text().strip()):
                time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=later, daemon=True).start()

    with Placement().session() as session:
        outcomes = session.run([Job("compare-row", spec.to_dict(), folder)], on_start=ctrl_c_once_it_trains)
    out = outcomes[0]
    assert session.interrupted and out.interrupted and out.returncode == 0, out.tail  # ended, not killed
    rec = out.result
    assert rec["status"] == "interrupted" and rec["train_steps"] >= 1, rec
    assert "--resume continues from step" in rec["message"] and (folder / "run" / "checkpoint.pt").is_file()


# -- fit and --scaling with --jobs 2 ----------------------------------------------------------------------

@two_cores
def test_fit_with_two_jobs_measures_a_round_of_two_on_disjoint_cores(tmp_path):
    path = tmp_path / "fit.json"
    res = invoke("fit", "--arch", "gon-mnist-mlp", "--memory", "16MiB", "--set", "inner_steps=2", "--jobs", 2,
                 "--json", path)
    assert res.exit_code == 0, res.output
    [rec] = load_records(path)
    assert isinstance(rec, FitRecord) and rec.status == "ok"
    b = rec.batch_size
    assert rec.trial(b).peak_bytes <= 16 * 2**20 < rec.trial(b + 1).peak_bytes
    # the cores each trial's worker ran on, as the kernel reported them: one each, none shared
    cores = [tuple(t.cpus) for t in rec.trials]
    assert all(len(c) == 1 for c in cores) and len(set(cores)) == 2, cores
    assert "rounds of up to 2 trials" in rec.search and any("up to 2 at once" in n for n in rec.notes)
    assert "(cores " in res.output


@two_cores
def test_scaling_with_two_jobs_runs_points_on_disjoint_cores_with_the_same_figures(tmp_path):
    path = tmp_path / "scaling.json"
    res = invoke("profile", "--arch", "gon-mnist-mlp", "--scaling", "--batch-sizes", "4,8", "--set", "inner_steps=2",
                 "--jobs", 2, "--json", path)
    assert res.exit_code == 0, res.output
    [rec] = load_records(path)
    assert isinstance(rec, ScalingRecord) and [p.status for p in rec.points] == ["measured", "measured"]
    assert sorted(tuple(p.cpus) for p in rec.points) == [(c,) for c in sorted(os.sched_getaffinity(0))[:2]]
    assert rec.memory_fit.slope > 0
    # a point measured beside another on its own core has the tensor-level peak it has alone
    alone = run_trial(StepSpec("gon-mnist-mlp", "gon", batch_size=8, **MLP), steps=2, time_steps=3)
    assert alone.cpus is None and rec.points[1].peak_live_bytes == alone.peak_live_bytes


# -- the Ray executor -------------------------------------------------------------------------------------

def test_compare_on_a_local_ray_cluster(tmp_path):
    # through the command line, which starts a local cluster and stops it (before this module's own cluster)
    out = tmp_path / "c"
    p = subprocess.run([sys.executable, "-m", "gonprof.cli", "compare", "gan", "lsgan", "--steps", "3", "--samples",
                        str(N), "--profile-steps", "1", "--executor", "ray", "--out", str(out), "--json",
                        str(tmp_path / "out.json")], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = load_records(tmp_path / "out.json")
    assert [(r.kind, r.status) for r in rows] == [("floor", "ok"), ("run", "ok"), ("run", "ok")]
    assert [r.mode for r in rows[1:]] == ["gan", "lsgan"]
    assert json.loads((out / "01-gan-mlp-gan" / "spec.json").read_text())["threads"] == 1  # --cpus-per-run 1
    assert (out / "01-gan-mlp-gan" / "worker.log").is_file()  # the row's worker ran in the row's folder


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (two CPUs) for the tests below; an executor joins a cluster it finds started."""
    ray = pytest.importorskip("ray")  # the optional extra (dev installs it)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _worker_dies(monkeypatch):
    def dies(*args):  # defined here, so that Ray sends it by value
        os._exit(1)  # the Ray worker dies, as it does with its node

    monkeypatch.setattr(ex, "_ray_job", dies)


def test_a_row_whose_worker_dies_is_lost_not_a_hang(tmp_path, monkeypatch, ray_cluster):
    _worker_dies(monkeypatch)
    specs = cmp.plan(["gan"], steps=1, n_samples=N, profile_steps=1)
    rows = cmp.compare(specs, out=tmp_path, floor=False, placement=Placement("ray"))
    assert [r.status for r in rows] == ["lost"] and "WorkerCrashedError" in rows[0].message
    assert load_records(tmp_path / "results.json")[0].status == "lost"


def test_scaling_points_whose_workers_die_are_lost(monkeypatch, ray_cluster):
    _worker_dies(monkeypatch)
    rec = api.scaling("gon-mnist-mlp", batch_sizes=(2, 4), placement=Placement("ray"), **MLP)
    assert [p.status for p in rec.points] == ["lost", "lost"] and rec.status == "error"
    assert "WorkerCrashedError" in rec.points[0].message and rec.memory_fit is None


def test_fit_and_scaling_on_a_local_ray_cluster(ray_cluster):
    seen = []
    rec = api.fit("gon-mnist-mlp", memory="16MiB", placement=Placement("ray"), progress=seen.append, **MLP)
    assert rec.status == "ok", rec.message
    b = rec.batch_size
    assert rec.trial(b).peak_bytes <= 16 * 2**20 < rec.trial(b + 1).peak_bytes
    assert "rounds of up to 2 trials" in rec.search  # the cluster's two CPUs, one per trial
    assert any("Ray tasks" in n for n in rec.notes) and len(seen) == len(rec.trials)
    sc = api.scaling("gon-mnist-mlp", batch_sizes=(4, 8), placement=Placement("ray"), **MLP)
    assert [p.status for p in sc.points] == ["measured", "measured"] and sc.memory_fit.slope > 0
    assert all(p.cpus is None for p in sc.points)  # Ray reserves CPUs; it does not pin cores


# -- Ray errors, with a stand-in for Ray (no cluster) -----------------------------------------------------

class _RayError(Exception):
    pass


def fake_ray(result_of):
    """A stand-in for the ``ray`` module with the parts RaySession uses: each task runs at once, here, as
    ``result_of(spec)``, which returns the task's Outcome fields or raises one of the Ray errors below."""
    rx = types.SimpleNamespace(RayError=_RayError)
    for name in ("OutOfMemoryError", "TaskUnschedulableError", "RaySystemError", "WorkerCrashedError",
                 "NodeDiedError", "ObjectLostError", "RayTaskError"):
        setattr(rx, name, type(name, (_RayError,), {}))
    rx.OwnerDiedError = type("OwnerDiedError", (rx.ObjectLostError,), {})
    cancelled = []

    class Ref:
        def __init__(self, spec):
            self.spec = spec

    def remote(**options):
        return lambda fn: types.SimpleNamespace(remote=lambda kind, spec, *rest: Ref(spec))

    def get(ref):
        return result_of(ref.spec)

    ray = types.SimpleNamespace(
        exceptions=rx, cancelled=cancelled, is_initialized=lambda: True, remote=remote, get=get,
        cluster_resources=lambda: {"CPU": 2}, wait=lambda refs, num_returns=1: (refs[:1], refs[1:]),
        cancel=lambda ref, force=False: cancelled.append(ref), shutdown=lambda: None)
    return ray


def measured(peak):
    return dict(result={"status": "measured", "peak_live_bytes": peak, "input_bytes": 0}, returncode=0, tail="",
                wall_s=0.1)


def test_ray_errors_of_every_kind_are_outcomes_not_crashes(monkeypatch):
    ray = None

    def result_of(spec):
        b = spec["batch_size"]
        if b == 1:
            return measured(100)
        raise {2: ray.exceptions.OutOfMemoryError, 3: ray.exceptions.TaskUnschedulableError,
               4: ray.exceptions.RaySystemError, 5: ray.exceptions.WorkerCrashedError}[b]("it went\nwrong")

    ray = fake_ray(result_of)
    monkeypatch.setitem(sys.modules, "ray", ray)
    with Placement("ray").checked().session() as session:
        outcomes = session.run([Job("fit-trial", {"batch_size": b}) for b in (1, 2, 3, 4, 5)])
    assert outcomes[0].result["status"] == "measured"
    assert outcomes[1].failure() == ("oom", "killed by Ray's memory monitor: OutOfMemoryError: it went")
    assert [outcomes[k].failure() for k in (2, 3, 4)] == [
        ("lost", "TaskUnschedulableError: it went"), ("lost", "RaySystemError: it went"),
        ("lost", "WorkerCrashedError: it went")]
    assert not session.interrupted


def test_a_fit_trial_that_rays_memory_monitor_kills_is_too_big_and_the_search_goes_on(monkeypatch):
    ray = None

    def result_of(spec):  # 100 B a sample; past 8 Ray's memory monitor kills the trial
        if spec["step"]["batch_size"] > 8:
            raise ray.exceptions.OutOfMemoryError("task killed: memory used 95% > 95% threshold")
        return measured(100 * spec["step"]["batch_size"])

    ray = fake_ray(result_of)
    monkeypatch.setitem(sys.modules, "ray", ray)
    rec = api.fit("gon-mnist-mlp", memory=2000, placement=Placement("ray"))
    assert rec.status == "ok" and rec.batch_size == 8 and rec.first_too_big == 9, rec.message
    assert rec.trial(9).status == "killed" and "Ray's memory monitor" in rec.trial(9).message


def test_a_fit_trial_that_meets_another_ray_error_is_lost_and_the_finished_trials_are_kept(monkeypatch, tmp_path):
    ray = None
    # the command line starts from the estimate's answer at 16 MiB (fresh-noise chains)
    start = api.fit("gon-mnist-mlp", memory="16MiB", estimate=True, hparams={"init": "noise"}).batch_size

    def result_of(spec):
        if spec["step"]["batch_size"] > start:
            raise ray.exceptions.TaskUnschedulableError("no node can hold it")
        return measured(100 * spec["step"]["batch_size"])

    ray = fake_ray(result_of)
    monkeypatch.setitem(sys.modules, "ray", ray)
    path = tmp_path / "fit.json"
    res = invoke("fit", "--arch", "gon-mnist-mlp", "--memory", "16MiB", "--executor", "ray", "--json", path,
                 "--set", "init=noise")
    assert res.exit_code != 0 and "Traceback" not in res.output, res.output
    [rec] = load_records(path)
    assert rec.status == "error" and "TaskUnschedulableError: no node can hold it" in rec.message
    assert sorted((t.batch_size, t.status) for t in rec.trials) == [(start, "fits"), (start + 1, "lost")]


def test_a_ray_trials_cap_is_not_bounded_by_the_memory_of_this_machine(monkeypatch):
    import gonprof.budget as bud

    caps = []

    def result_of(spec):
        caps.append(spec["cap_bytes"])
        return measured(100 * spec["step"]["batch_size"])

    monkeypatch.setitem(sys.modules, "ray", fake_ray(result_of))
    monkeypatch.setattr(bud.trials, "available_bytes", lambda: 2**20)  # this machine: 1 MiB free
    rec = api.fit("gon-mnist-mlp", memory=2000, placement=Placement("ray"))
    assert rec.status == "ok" and rec.batch_size == 20, rec.message
    assert set(caps) == {2 * 2000 + 256 * 2**20} and not any("below the budget" in n for n in rec.notes)


# -- a callback that raises leaves nothing behind ---------------------------------------------------------

def live_workers() -> list:
    """This process's gonprof worker processes still alive (a Ray cluster's processes aside)."""
    import psutil

    def worker(p) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE and "gonprof.worker" in " ".join(p.cmdline())
        except psutil.Error:  # it ended meanwhile
            return False

    return [p for p in psutil.Process().children(recursive=True) if worker(p)]


class CallbackFailed(Exception):
    pass


@two_cores
@pytest.mark.parametrize("which", ["on_start", "on_done"])
def test_a_callback_that_raises_leaves_no_worker_running_and_no_temporary_folder(which, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the jobs' temporary folders go here
    quick = Job("fit-trial", {"step": {"arch": "no-such-arch", "mode": "gon", "batch_size": 1}})
    endless = Job("fit-trial", {"step": ENDLESS_STEP,
                                "time_steps": 10**7}, timeout_s=300)
    seen = []

    def on_start(k, spec):
        seen.append(("start", k))
        if which == "on_start" and k == 1:
            raise CallbackFailed

    def on_done(k, outcome):
        seen.append(("done", k))
        if which == "on_done":
            raise CallbackFailed

    with pytest.raises(CallbackFailed):
        with Placement(jobs=2).session() as session:
            session.run([endless, quick] if which == "on_start" else [quick, endless], on_start=on_start,
                        on_done=on_done)
    assert ("start", 1) in seen and (which == "on_start" or ("done", 0) in seen)
    assert live_workers() == [] and list(tmp_path.iterdir()) == []


def test_without_cpu_affinity_the_cores_are_the_machines_and_jobs_are_not_pinned(monkeypatch):
    from gonprof.cores import usable_cores

    assert usable_cores() == sorted(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS
    monkeypatch.delattr(os, "sched_setaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert usable_cores() == [0, 1, 2]
    assert core_slots(1) == [[0, 1, 2]]
    with pytest.raises(RequestError, match="--jobs 2 pins each run to its own cores, which this system cannot do"):
        core_slots(2)


def test_a_job_past_its_timeout_is_stopped_and_says_so(tmp_path):
    endless = Job("fit-trial", {"step": ENDLESS_STEP,
                                "time_steps": 10**7}, tmp_path / "endless", timeout_s=1)
    pids = []
    with Placement().session() as session:
        outcomes = session.run([endless], on_start=lambda k, spec: pids.append(k))
    out = outcomes[0]
    assert out.timed_out and out.result is None and out.returncode == -9 and 1 <= out.wall_s < 30
    assert out.failure() == ("error", f"worker timed out after {out.wall_s:.0f} s")
    assert not session.interrupted and pids == [0]
    assert live_workers() == []


def test_a_worker_started_to_die_with_its_parent_dies_with_it(tmp_path):
    """A Ray task's worker is started with die_with_parent: SIGKILL the process that started it (as Ray does
    to a cancelled task) and the worker, in its own session, is gone too."""
    import textwrap

    from gonprof.comparison import RunSpec

    spec = RunSpec.of(mode="gan", arch="mlp-gan", steps=10**6, n_samples=20, profile_steps=1, threads=1,
                   run_dir=str(tmp_path / "run"))
    starter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from gonprof.isolation import Worker
        w = Worker("compare-row", json.loads({json.dumps(json.dumps(spec.to_dict()))}), Path({str(tmp_path)!r}),
                   die_with_parent=True)
        print(w.proc.pid, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    pid = int(starter.stdout.readline())
    time.sleep(3)  # the worker is past its start-up (and its prctl)
    os.kill(pid, 0)  # alive while its parent lives
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        try:
            os.waitpid(pid, os.WNOHANG)  # not our child: only a zombie-free check
        except ChildProcessError:
            pass
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the worker outlived the process that started it")


def test_a_worker_whose_parent_is_already_gone_exits_at_once():
    env = dict(os.environ, GONPROF_DIE_WITH_PARENT="1")  # pid 1 is never this child's parent
    res = subprocess.run([sys.executable, "-m", "gonprof.worker", "compare-row", "no-spec", "no-result"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr
