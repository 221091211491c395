"""Data-parallel profiles: `gonprof profile --nproc N` on real gloo ranks, the all-reduce counter, the
DDP wrapper of a step, gathering records, and the record and its table.

The bytes all-reduced are checked against hand arithmetic: DDP all-reduces every gradient of a wrapped
model once per backward pass, so a model of P float32 parameters adds 4 * P bytes per update.  The
parameter counts are the zoo's (pinned with their arithmetic in tests/test_zoo_*.py):

- mlp-gan D:           784*1024+1024 + 1024*512+512 + 512*256+256 + 256*1+1       = 1,460,225
- mlp-gan-generator:   100*256+256 + 256*512+512 + 512*1024+1024 + 1024*784+784     = 1,486,352
"""

from __future__ import annotations

import io
import json
import os
import textwrap

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gonprof.cli import app
from gonprof.records import (
    CommFigures,
    DistributedProfileRecord,
    Environment,
    ProfileRecord,
    RankRecord,
    TimingStats,
    load_records,
)
from gonprof.request import StepSpec

runner = CliRunner()

P_D = 784 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 256 + 256 + 256 * 1 + 1
P_G = 100 * 256 + 256 + 256 * 512 + 512 + 512 * 1024 + 1024 + 1024 * 784 + 784
assert (P_D, P_G) == (1_460_225, 1_486_352)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------------
# two real gloo ranks through the CLI
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "ddp.json"
    res = invoke("profile", "--arch", "mlp-gan", "--mode", "gan", "--nproc", 2, "--batch-size", 8,
                 "--warmup", 1, "--steps", 1, "--json", path, "--csv", path.with_suffix(".csv"))
    return res, path


@pytest.fixture(scope="module")
def single_process():
    import torch

    from gonprof import api

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # warmup 2: its measuring step has Adam's state, as every rank's has (after DDP's settling steps)
        return api.profile("mlp-gan", "gan", batch_size=8, warmup=2, steps=1)
    finally:
        torch.set_num_threads(n)


def test_two_ranks_write_one_record_with_both(two_ranks):
    res, path = two_ranks
    assert res.exit_code == 0, res.output
    [rec] = load_records(path)
    assert isinstance(rec, DistributedProfileRecord) and rec.status == "ok", rec.message
    assert (rec.world_size, rec.backend, rec.arch, rec.mode) == (2, "gloo", "mlp-gan", "gan")
    assert [r.rank for r in rec.ranks] == [0, 1] and all(r.status == "ok" for r in rec.ranks)
    assert rec.batch_size == 8 and rec.global_batch_size == 16  # --batch-size is per rank
    assert all(r.profile.batch_size == 8 and r.profile.timed_steps == 1 for r in rec.ranks)
    assert [r.profile.extra["seed"] for r in rec.ranks] == [0, 1]  # rank r: seed + r
    threads = max(1, cores() // 2)  # the machine's cores shared out between the ranks
    assert rec.threads_per_rank == threads
    assert all(r.profile.environment.torch_threads == threads for r in rec.ranks)
    assert rec.ddp["wrapped_models"] == ["D", "G"] and rec.ddp["settle_steps"] == 2


def test_each_rank_measures_what_one_process_measures_at_the_per_rank_batch(two_ranks, single_process):
    [rec] = load_records(two_ranks[1])
    assert single_process.status == "ok"
    for r in rec.ranks:
        assert r.profile.flops_per_step == single_process.flops_per_step
        # DDP's gradient buckets are allocated when the model is wrapped, before the step, and read by the
        # step's all-reduces: external storages, every bucket live at the peak; the rest is one process's step
        lm, one = r.profile.live_memory, single_process.live_memory
        assert r.comm is not None and lm is not None and one is not None
        assert lm.peak_live_external_bytes == one.peak_live_external_bytes + r.comm.allreduce_bytes_per_step
        assert (lm.peak_live_bytes - lm.peak_live_external_bytes
                == one.peak_live_bytes - one.peak_live_external_bytes)
        assert r.profile.rss is not None and r.profile.step_time.n == 1


def test_bytes_all_reduced_are_4_bytes_per_parameter_per_update(two_ranks):
    [rec] = load_records(two_ranks[1])
    for r in rec.ranks:
        c = r.comm
        # gan: one D update (d_step) and one G update (g_step) per step, every parameter float32
        assert c.allreduce_bytes_by_phase == {"d_step": 4 * P_D, "g_step": 4 * P_G}
        assert c.allreduce_bytes_by_model == {"D": 4 * 1_460_225, "G": 4 * 1_486_352}
        assert c.allreduce_bytes_per_step == 5_840_900 + 5_945_408 == 11_786_308
        assert c.allreduce_bytes_each_step == (11_786_308, 11_786_308)  # measuring step, timed step
        assert c.allreduce_calls_per_step >= 2
    assert rec.spread()["allreduce_bytes_per_step"] == (11_786_308, 11_786_308)
    assert rec.spread()["flops_per_step"][1] - rec.spread()["flops_per_step"][0] == 0


def test_the_record_round_trips_and_report_renders_it(two_ranks):
    res, path = two_ranks
    [rec] = load_records(path)
    assert DistributedProfileRecord.from_json(rec.to_json()) == rec
    assert "spread" in res.stdout and "11,786,308" in res.stdout and "5,840,900" in res.stdout
    again = invoke("report", path)
    assert again.exit_code == 0, again.output
    assert "spread" in again.stdout and "11,786,308" in again.stdout
    import csv

    rows = list(csv.DictReader(path.with_suffix(".csv").open()))
    assert [r["rank"] for r in rows] == ["0", "1"]
    assert {r["allreduce_bytes_per_step"] for r in rows} == {"11786308"}
    assert {r["phase_d_step_allreduce_bytes_per_step"] for r in rows} == {str(4 * P_D)}


def test_the_record_renders_without_torch(two_ranks):
    import subprocess
    import sys

    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        from rich.console import Console
        from gonprof import render
        from gonprof.records import load_records
        Console(width=160).print(render.render_any(load_records({str(two_ranks[1])!r})))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "spread" in p.stdout and "11,786,308" in p.stdout


PLUGIN = textwrap.dedent('''
    import os

    import torch.nn as nn
    from gonprof.arch import Source, register_arch


    class FailsOnRank1(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 1)

        def forward(self, x):
            if os.environ.get("RANK") == "1":
                raise RuntimeError("rank 1 cannot run this")
            return self.lin(x.flatten(1))


    @register_arch("fails-on-rank-1", family="test", role="discriminator", source=Source("test"),
                   expected_params=785, params_arithmetic="784*1 + 1 = 785", default_mode="gan")
    def fails(input_shape=(1, 28, 28)):
        return FailsOnRank1()
''')


def test_a_failing_rank_is_one_line_naming_it_and_the_record_is_kept(tmp_path, monkeypatch):
    from gonprof.arch import ARCHITECTURES

    monkeypatch.setattr(ARCHITECTURES, "_entries", dict(ARCHITECTURES._entries))  # the plugin's entry goes after
    plugin = tmp_path / "fails.py"
    plugin.write_text(PLUGIN)
    path = tmp_path / "f.json"
    res = invoke("profile", "--arch", "fails-on-rank-1", "--plugin", plugin, "--nproc", 2, "--batch-size", 2,
                 "--warmup", 1, "--steps", 1, "--json", path)
    assert res.exit_code == 1, res.output
    [rec] = load_records(path)
    assert rec.status == "error" and rec.rank(1).status == "error"
    # the rank that failed first is named, not its peer that lost the connection to it
    assert rec.message.startswith("rank 1: ") and "rank 1 cannot run this" in rec.message
    assert "rank 1 cannot run this" in res.stderr and "launcher and rank logs: " in rec.message
    import shutil
    from pathlib import Path

    logs = Path(rec.message.rsplit("launcher and rank logs: ", 1)[1].rstrip(")"))
    assert (logs / "launcher.log").is_file() and (logs / "rank-1.json").is_file()  # kept for the reader
    shutil.rmtree(logs)


# --------------------------------------------------------------------------------------------------
# requests refused before any rank starts
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (("--nproc", 0), "--nproc must be a whole number of ranks, at least 1"),
    (("--nproc", -3), "--nproc must be a whole number of ranks, at least 1"),
    (("--nproc", 2, "--scaling"), "--nproc does not apply to --estimate / --scaling"),
    (("--nproc", 2, "--estimate"), "--nproc does not apply to --estimate / --scaling"),
    (("--nproc", 2, "--device", "cuda"), "cuda"),
    (("--nproc", 2, "--mode", "gon", "--preset", "seed"), "cannot run data-parallel"),
    (("--nproc", 2, "--set", "nope=1"), "has no hyper-parameter nope"),
])
def test_bad_requests_are_one_line_and_exit_2(args, words):
    import torch

    if "cuda" in args and torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the GPUs the request asks for")
    arch = "gon-mnist-mlp" if "gon" in args else "mlp-gan"
    res = invoke("profile", "--arch", arch, *args)
    assert res.exit_code == 2, res.output
    assert words in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_more_ranks_than_gpus_is_refused(monkeypatch):
    import torch

    from gonprof import distributed
    from gonprof.records import RequestError

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RequestError, match="needs one GPU per rank; this machine has 1"):
        distributed.check_backend("cuda", 2)
    with pytest.raises(RequestError, match="give --device cuda, not cuda:1"):
        distributed.check_backend("cuda:1", 1)
    assert distributed.check_backend("cpu", 3) == "gloo"


def test_gon_fast_path_is_accepted_and_its_seed_procedure_refused():
    from gonprof.modes import get_mode
    from gonprof.modes.base import IncompatibleError

    gon = get_mode("gon")
    gon.check_ddp(gon.hparams())  # batched=true: input gradients only
    with pytest.raises(IncompatibleError, match="gon with batched=false cannot run data-parallel"):
        gon.check_ddp(gon.hparams("seed"))


# --------------------------------------------------------------------------------------------------
# in this process: a one-rank gloo group (DDP still all-reduces through the hook)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def group(tmp_path_factory, one_thread):
    import torch.distributed as dist

    store = tmp_path_factory.mktemp("pg") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_the_counter_adds_4_bytes_per_parameter_for_each_backward(group):
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from gonprof.ddp import StepDDP
    from gonprof.measure.comm import count_allreduce

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))  # 3*4+4 + 4*2+2 = 26 parameters
    ddp = DistributedDataParallel(net)
    counter = count_allreduce(ddp, names=["net"])
    with counter.phase("two updates"):
        for _ in range(2):
            ddp(torch.randn(5, 3)).sum().backward()
    counter.step()
    frozen = StepDDP(torch.nn.Linear(3, 1))  # 4 parameters
    counter.attach(frozen, "frozen")
    for p in frozen.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 3, requires_grad=True)
    frozen(x).sum().backward()  # gradients reach the input only: nothing to all-reduce
    with torch.no_grad():
        frozen(x)
    counter.step()
    for p in frozen.parameters():
        p.requires_grad_(True)
    frozen(x).sum().backward()
    counter.step()
    assert [t.bytes for t in counter.steps] == [2 * 4 * 26, 0, 4 * 4]
    first = counter.figures(0)
    assert first.allreduce_bytes_per_step == 208 and first.allreduce_bytes_by_phase == {"two updates": 208}
    assert first.allreduce_bytes_by_model == {"net": 208, "frozen": 0}
    assert counter.figures().allreduce_bytes_per_step == 16  # the median of 208, 0, 16
    assert counter.figures().allreduce_bytes_each_step == (208, 0, 16)


# mode, default discriminator, (D updates, D parameters), (G updates, G parameters) per step
MODES = [
    ("gan", "mlp-gan", (1, 1_460_225), (1, 1_486_352), {}),
    ("lsgan", "lsgan-original", (1, 388_865), (4, 1_658_657), {}),                 # 1 D update, 4 G updates
    ("wgan-gp", "dcd-mnist-sn", (5, 1_030_145), (1, 1_556_673), {}),               # 5 critic updates
    ("improved-gan", "improved-gan-mlp", (1, 1_538_770), (1, 694_568), {}),
    ("dcd", "dcd-mnist-sn", (5, 1_030_145), (1, 1_556_673), {"langevin_steps": 2}),
    ("gon", "gon-mnist-mlp", (1, 582_914), None, {"inner_steps": 3}),              # no generator
]


# the penalty's double backward leaves a conv weight's gradient in another memory layout than DDP's bucket:
# torch notes that it may cost speed (the gradient is copied all the same)
@pytest.mark.filterwarnings("ignore:Grad strides do not match bucket view strides")
@pytest.mark.parametrize("mode, arch, d, g, hparams", MODES, ids=[m[0] for m in MODES])
def test_every_mode_runs_under_ddp_and_all_reduces_each_update(group, mode, arch, d, g, hparams):
    from gonprof.data import synthetic
    from gonprof.ddp import profile_rank, wrap_step
    from gonprof.measure.comm import AllreduceCounter
    from gonprof.modes.build import build_step

    step = build_step(mode, arch, seed=0, **hparams)
    counter = AllreduceCounter()
    options = wrap_step(step, counter)
    rank = profile_rank(step, synthetic(8, step.input_shape), counter, rank=0, batch_size=2, warmup=1, steps=1,
                        about=dict(arch=arch, mode=mode))
    assert rank.status == "ok", rank.message
    expected = {"D": 4 * d[0] * d[1]}
    if g is not None:
        expected["G"] = 4 * g[0] * g[1]
    assert options["wrapped_models"] == list(expected)
    assert rank.comm.allreduce_bytes_by_model == expected
    assert rank.comm.allreduce_bytes_each_step == (sum(expected.values()),) * 2
    assert rank.profile.flops_per_step > 0 and not rank.profile.warnings


def test_a_model_trained_around_its_wrapper_is_a_warning(group):
    from gonprof.data import synthetic
    from gonprof.ddp import profile_rank, wrap_step
    from gonprof.measure.comm import AllreduceCounter
    from gonprof.modes.build import build_step

    step = build_step("gan", "mlp-gan", seed=0)
    counter = AllreduceCounter()
    wrap_step(step, counter)
    step.D = step.models["D"]  # a mode that calls the plain module: D's gradients never reach DDP
    rank = profile_rank(step, synthetic(8, step.input_shape), counter, rank=0, batch_size=2, warmup=1, steps=1)
    assert rank.comm.allreduce_bytes_by_model == {"D": 0, "G": 4 * P_G}
    [warning] = rank.profile.warnings
    assert warning.startswith("D got gradients on the measuring step but all-reduced nothing")


def test_gather_records_returns_the_record_on_rank_0(group):
    from gonprof import gather_records

    rec = ProfileRecord(arch="a", mode="m", batch_size=4, environment=Environment(device="cpu", torch_threads=1))
    comm = CommFigures(allreduce_bytes_per_step=16)
    out = gather_records(rec, comm, extra={"note": "x"})
    assert isinstance(out, DistributedProfileRecord)
    assert out.world_size == 1 and out.backend == "gloo" and out.launcher == "user script"
    assert out.ranks == (RankRecord(rank=0, profile=rec, comm=comm),) and out.extra == {"note": "x"}
    assert (out.arch, out.batch_size, out.threads_per_rank) == ("a", 4, 1)


# --------------------------------------------------------------------------------------------------
# the record and its table, from figures written by hand
# --------------------------------------------------------------------------------------------------

def _rank(r, flops, peak, step_s, sent):
    timing = TimingStats(n=1, time_s_median=step_s, time_s_p10=step_s, time_s_p90=step_s, time_s_mean=step_s,
                         time_s_min=step_s, time_s_max=step_s, spread=0.0, noisy=False)
    from gonprof.records import FlopFigures, LiveMemory

    live = LiveMemory(peak_live_bytes=peak, peak_live_param_bytes=0, peak_live_buffer_bytes=0,
                      peak_live_grad_bytes=0, peak_live_optimizer_state_bytes=0, peak_live_activation_bytes=0,
                      start_live_bytes=0, end_live_bytes=0, allocated_bytes=0)
    prof = ProfileRecord(flops=FlopFigures(flops_per_step=flops, forward_flops=flops, backward_flops=0),
                         live_memory=live, step_time=timing)
    return RankRecord(rank=r, profile=prof, comm=CommFigures(allreduce_bytes_per_step=sent,
                                                             allreduce_bytes_by_model={"D": sent}))


def test_spread_is_max_minus_min_over_the_ranks_and_the_table_shows_it():
    from gonprof.render import render_distributed

    ranks = [_rank(0, 1000, 3 * 2**20, 0.010, 4096), _rank(1, 1000, 5 * 2**20, 0.012, 4096)]
    rec = DistributedProfileRecord.assemble(ranks, world_size=2, backend="gloo", batch_size=4)
    assert rec.status == "ok" and rec.global_batch_size == 8
    spread = rec.spread()
    assert spread["peak_live_bytes"] == (3 * 2**20, 5 * 2**20) and spread["step_time_s_median"] == (0.010, 0.012)
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(render_distributed(rec))
    row = next(line for line in buf.getvalue().splitlines() if "spread" in line and "│" in line)
    # FLOPs 0.000 MFLOP apart; peak live 5 - 3 = 2.00 MiB; step median 12 - 10 = 2.000 ms, 12 / 10 = x1.20
    assert "0.000" in row and "2.00" in row and "2.000 (x1.20)" in row
    assert len(rec.to_rows()) == 2 and [r["rank"] for r in rec.to_rows()] == [0, 1]


def test_a_rank_without_a_record_fails_the_run_and_the_first_cause_is_named():
    ranks = [RankRecord(rank=0, status="error", message="RuntimeError: Connection closed by peer [127.0.0.1]:1"),
             RankRecord(rank=1, status="oom", message="OutOfMemoryError: out of memory")]
    rec = DistributedProfileRecord.assemble(ranks, world_size=3)
    assert rec.status == "oom" and rec.message == "rank 1: OutOfMemoryError: out of memory"
    assert rec.rank(2).status == "error" and rec.rank(2).message == "left no record"
    loaded = json.loads(rec.to_json())
    assert loaded["ranks"][2]["profile"] is None


def test_a_bare_distributed_record_loads_as_one_and_report_renders_every_rank(tmp_path):
    # what record.to_json() writes (no results-file wrapper): read as the distributed record it is, not as
    # an empty profile
    ranks = [_rank(0, 1000, 3 * 2**20, 0.010, 4096), _rank(1, 1000, 5 * 2**20, 0.012, 4096)]
    rec = DistributedProfileRecord.assemble(ranks, world_size=2, backend="gloo", batch_size=4)
    path = tmp_path / "bare.json"
    path.write_text(rec.to_json())
    [loaded] = load_records(path)
    assert isinstance(loaded, DistributedProfileRecord) and loaded == rec
    res = invoke("report", path)
    assert res.exit_code == 0, res.output
    assert "spread" in res.stdout and "4,096" in res.stdout


def test_a_bare_record_that_is_no_profile_is_one_line_not_an_empty_profile(tmp_path):
    from gonprof.records import RecordError

    path = tmp_path / "other.json"
    path.write_text(json.dumps({"schema_version": 1, "world": 2, "figures": {"flops": 1}}))
    with pytest.raises(RecordError, match=r"not a profile or distributed record \(keys figures, world\)"):
        load_records(path)
    res = invoke("report", path)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "not a profile or distributed record" in res.output
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1, res.stderr


# --------------------------------------------------------------------------------------------------
# stopping the launcher and its ranks
# --------------------------------------------------------------------------------------------------

def _sleeper(*args, ignore_term=False):
    """A process that sleeps, with ``args`` on its command line, once it has started (exec'd)."""
    import subprocess
    import sys
    import time

    import psutil

    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)" if ignore_term
            else "import time; time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], start_new_session=True)
    for _ in range(500):
        if "-c" in psutil.Process(proc.pid).cmdline():
            break
        time.sleep(0.01)
    time.sleep(0.2 if ignore_term else 0)  # the SIGTERM handler is set
    return proc


def test_only_this_runs_ranks_are_killed_by_their_pid_files(tmp_path):
    import time

    from gonprof.distributed import _stop_leftover_ranks

    out, other = tmp_path / "run", tmp_path / "other-run"
    out.mkdir()
    spec = out / "spec.json"
    rank0 = _sleeper("-m", "gonprof.worker", "ddp-rank", spec, out)  # this run's rank
    stranger = _sleeper("-m", "gonprof.worker", "ddp-rank", other / "spec.json", other)  # another run's
    late = _sleeper("-m", "gonprof.worker", "ddp-rank", spec, out)  # a pid reused after the file was written
    try:
        time.sleep(0.05)
        for r, proc in enumerate((rank0, stranger, late)):
            (out / f"rank-{r}.pid").write_text(str(proc.pid))
        old = time.time() - 3600  # rank 2's pid file was written an hour before its process started
        os.utime(out / "rank-2.pid", (old, old))
        _stop_leftover_ranks(out, spec, 3)
        assert rank0.wait(timeout=10) == -9
        time.sleep(0.2)
        assert stranger.poll() is None and late.poll() is None
    finally:
        for proc in (rank0, stranger, late):
            proc.kill()
            proc.wait()


def test_a_second_ctrl_c_while_the_launcher_stops_kills_it_at_once():
    import time

    from gonprof.distributed import _stop

    proc = _sleeper(ignore_term=True)  # a launcher that would take its whole grace period
    wait = proc.wait

    def ctrl_c_while_waiting(timeout=None):
        if timeout is not None:  # the grace wait after SIGTERM: the user presses Ctrl-C again
            raise KeyboardInterrupt
        return wait()

    proc.wait = ctrl_c_while_waiting
    stubborn = proc
    t0 = time.monotonic()
    _stop(stubborn, grace_s=30.0)
    assert stubborn.returncode == -9 and time.monotonic() - t0 < 10


def test_a_second_ctrl_c_during_launch_still_gives_a_record_and_removes_its_folder(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    from gonprof import distributed

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    monkeypatch.setattr(distributed, "launcher_command", lambda n, spec, out: [sys.executable, "-c", code])
    presses, launched = [], []

    class CtrlCTwice(subprocess.Popen):
        def wait(self, timeout=None):
            if len(presses) < 2:  # Ctrl-C while the run goes, and again while it stops
                import time

                time.sleep(0.3)
                presses.append(timeout)
                launched.append(self)
                raise KeyboardInterrupt
            return super().wait(timeout)

    monkeypatch.setattr(distributed.subprocess, "Popen", CtrlCTwice)
    spec = distributed.RankSpec(step=StepSpec("mlp-gan", "gan", batch_size=2))
    rec = distributed.launch(spec, 2)
    assert presses == [None, 30.0] and launched[0].returncode == -9  # SIGKILLed, not waited for
    assert rec.status == "interrupted" and [r.status for r in rec.ranks] == ["interrupted"] * 2
    assert list(tmp_path.glob("gonprof-ddp-*")) == []  # the folder went with the run
