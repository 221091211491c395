"""The Profiler: schedule, figures against hand values, statuses, records, rendering."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn

import gonprof
from clean_process import run_clean
from fake_clock import FakeClock
from gonprof.profiler import Profiler
from gonprof.records import ProfileRecord, records_to_csv
from gonprof.render import format_bytes, format_count, format_flops, render_record, render_records

N, I, O = 8, 16, 4
F32 = 4


def _linear_setup():
    torch.manual_seed(0)
    lin = nn.Linear(I, O)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    x = torch.randn(N, I)
    return lin, opt, x


def _train_profiled(lin, opt, x, **profiler_kwargs) -> ProfileRecord:
    """Plain training steps of ``lin`` on ``x`` under a Profiler until it is done; its record."""
    with Profiler(models=lin, optimizers=opt, **profiler_kwargs) as prof:
        while not prof.done:
            opt.zero_grad()
            lin(x).sum().backward()
            opt.step()
            prof.step()
    return prof.report()


def test_schedule_and_fake_clock_step_times():
    lin, opt, x = _linear_setup()
    clock = FakeClock()
    kinds = []
    with Profiler(models=lin, optimizers=opt, warmup=2, active=3, clock=clock) as prof:
        for i in range(10):
            kinds.append(prof.step_kind)
            with prof.phase("fwd_bwd"):
                opt.zero_grad()
                lin(x).sum().backward()
                clock.t += 0.010 * (i + 1)
            with prof.phase("update"):
                opt.step()
                clock.t += 0.001
            prof.step()
    assert kinds == ["warmup", "measure", "timed", "timed", "timed"] + ["done"] * 5
    assert prof.done
    rec = prof.report()
    assert rec.status == "ok" and rec.message == ""
    assert (rec.warmup_steps, rec.active_steps, rec.timed_steps, rec.measuring_step) == (2, 3, 3, 1)
    assert [s.index for s in rec.steps] == [2, 3, 4]
    assert [s.step_time_s for s in rec.steps] == pytest.approx([0.031, 0.041, 0.051])
    assert rec.step_time.n == 3
    assert rec.step_time.time_s_median == pytest.approx(0.041)
    assert rec.phase_time["fwd_bwd"].time_s_median == pytest.approx(0.040)
    assert rec.phase_time["update"].time_s_median == pytest.approx(0.001)
    assert rec.measuring_step_time_s == pytest.approx(0.021)


def test_measuring_step_figures_equal_hand_values():
    lin, opt, x = _linear_setup()
    with Profiler(models={"D": lin}, optimizers={"D": opt}, warmup=2, active=2) as prof:
        for _ in range(4):
            with prof.phase("fwd_bwd"):
                opt.zero_grad(set_to_none=True)
                lin(x).sum().backward()
            with prof.phase("update"):
                opt.step()
            prof.step()
    rec = prof.report()
    # FLOPs: forward 2NIO + grad_weight 2NIO (x needs no grad); Adam has no formula
    assert rec.flops.flops_per_step == 4 * N * I * O
    assert rec.flops.flops_by_phase == {"fwd_bwd": 4 * N * I * O, "update": 0}
    assert "aten.lerp_" in rec.flops.uncounted_ops or "aten.mul_" in rec.flops.uncounted_ops
    # persistent state at the end of the measuring step: params, grads, Adam state
    p = (I * O + O) * F32
    adam = 2 * p + 2 * F32
    assert (rec.persistent.param_bytes, rec.persistent.grad_bytes, rec.persistent.optimizer_state_bytes) == (p, p, adam)
    assert rec.live_memory.start_live_bytes == p + p + adam
    assert rec.live_memory.peak_live_optimizer_state_bytes == adam
    assert rec.models[0].name == "D" and rec.models[0].params_total == I * O + O
    assert rec.rss is not None and rec.rss.peak_rss_delta_bytes >= 0
    assert rec.cuda_memory is None
    assert rec.environment.torch_version == torch.__version__


def test_gan_models_dict_with_gradient_penalty_and_leaf_input_grads():
    """A WGAN-GP iteration and a GON-style inner loop under the Profiler (both use autograd.grad on leaves)."""
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(I, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    G = nn.Sequential(nn.Linear(3, I), nn.Tanh())
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
    real = torch.randn(N, I)
    with Profiler(models={"D": D, "G": G}, optimizers={"D": opt_d, "G": opt_g}, warmup=1, active=2) as prof:
        for _ in range(3):
            with prof.phase("critic"):
                fake = G(torch.randn(N, 3)).detach()
                eps = torch.rand(N, 1)
                x_hat = (eps * real + (1 - eps) * fake).requires_grad_()
                (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
                loss_d = D(fake).mean() - D(real).mean() + 10 * ((g.norm(2, dim=1) - 1) ** 2).mean()
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
            with prof.phase("generator"):
                opt_g.zero_grad()
                (-D(G(torch.randn(N, 3))).mean()).backward()
                opt_g.step()
            with prof.phase("gon_sample"):
                z = torch.rand(N, I).requires_grad_()
                for _ in range(2):
                    (gz,) = torch.autograd.grad(D(z).sum(), z)
                    z = (z + 0.1 * gz).detach().requires_grad_()
            prof.step()
    rec = prof.report()
    assert rec.status == "ok"
    assert [m.name for m in rec.models] == ["D", "G"]
    f = rec.flops
    assert set(f.flops_by_phase) == {"critic", "generator", "gon_sample"}
    assert sum(f.flops_by_phase.values()) == f.flops_per_step
    rows = {r.module: r for r in f.flops_by_module}
    assert rows["D"].flops + rows["G"].flops + f.flops_outside_modules == f.flops_per_step
    # GON sampling: 2 x (forward + grad_input through both Linear layers)
    per = 2 * N * I * 8 + 2 * N * 8 * 1
    assert f.flops_by_phase["gon_sample"] == 2 * (per + per)
    assert "aten.leaky_relu" in f.uncounted_ops
    assert set(rec.phase_time) == {"critic", "generator", "gon_sample"}


def test_warmup_zero_adds_a_measuring_step_and_measure_false_skips_it():
    lin, opt, x = _linear_setup()
    rec = _train_profiled(lin, opt, x, warmup=0, active=2)
    assert (rec.warmup_steps, rec.timed_steps, rec.measuring_step) == (1, 2, 0)
    assert rec.flops is not None
    with Profiler(models=lin, optimizers=opt, warmup=0, active=2, measure=False) as prof:
        while not prof.done:
            lin(x).sum().backward()
            prof.step()
    rec = prof.report()
    assert rec.flops is None and rec.live_memory is None and rec.timed_steps == 2


def test_fewer_steps_than_scheduled_is_said():
    lin, _, x = _linear_setup()
    with Profiler(models=lin, warmup=1, active=5) as prof:
        for _ in range(3):
            lin(x)
            prof.step()
    rec = prof.report()
    assert rec.status == "ok" and rec.timed_steps == 2
    assert "only 2 of 5 timed steps" in rec.message


@pytest.mark.parametrize(
    "exc, status",
    [
        (RuntimeError("boom"), "error"),
        (KeyboardInterrupt(), "interrupted"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "oom"),
        (MemoryError(), "oom"),
    ],
)
def test_status_from_exceptions(exc, status):
    lin, _, x = _linear_setup()
    prof = Profiler(models=lin, warmup=1, active=3)
    with pytest.raises(type(exc)):
        with prof:
            lin(x)
            prof.step()  # the measuring step ends; a timed step starts
            raise exc
    rec = prof.report()
    assert rec.status == status
    assert type(exc).__name__ in rec.message


def test_exception_inside_the_measuring_step_leaves_no_mode_behind():
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    lin, _, x = _linear_setup()
    prof = Profiler(models=lin, warmup=1, active=1)
    with pytest.raises(ValueError):
        with prof:
            with prof.phase("p"):
                lin(x)
                raise ValueError("in the measuring step")
    assert _get_current_dispatch_mode() is None
    assert prof.report().status == "error"


def test_nan_status():
    lin, _, x = _linear_setup()
    with Profiler(models=lin, warmup=1, active=1) as prof:
        for _ in range(2):
            with torch.no_grad():
                lin.weight.fill_(float("nan"))
            prof.step()
    rec = prof.report()
    assert rec.status == "nan" and "weight" in rec.message


def _record() -> ProfileRecord:
    lin, opt, x = _linear_setup()
    with Profiler(models={"D": lin}, optimizers=opt, warmup=2, active=3, arch="toy", mode="gan", batch_size=N) as prof:
        while not prof.done:
            with prof.phase("update"):
                opt.zero_grad()
                lin(x).sum().backward()
                opt.step()
            prof.step()
    return prof.report().replace(extra={"note": "test", "list": [1, 2.5, None]})


def test_json_round_trip_is_exact_and_row_is_flat():
    rec = _record()
    text = rec.to_json()
    back = ProfileRecord.from_json(text)
    assert back == rec
    assert back.to_json() == text
    assert json.loads(text)["schema_version"] == 1
    row = rec.to_row()
    assert all(not isinstance(v, (dict, list, tuple)) for v in row.values())
    for key in ("flops_per_step", "peak_live_bytes", "peak_rss_delta_bytes", "step_time_s_median", "step_time_s_p10",
                "step_time_noisy", "grad_bytes", "optimizer_state_bytes", "arch", "batch_size", "env_torch_version"):
        assert key in row, key
    assert row["flops_per_step"] == 4 * N * I * O and row["arch"] == "toy"
    buf = io.StringIO()
    records_to_csv([rec, rec], buf)
    assert buf.getvalue().count("\n") == 3
    with pytest.raises(ValueError):
        ProfileRecord.from_json(json.dumps({**json.loads(text), "schema_version": 999}))
    with pytest.raises(ValueError):
        rec.replace(status="fine")


def test_render_headers_say_units_and_render_does_not_measure(monkeypatch):
    from rich.console import Console

    rec = ProfileRecord.from_json(_record().to_json())
    import gonprof.measure.flops as flops_mod

    monkeypatch.setattr(flops_mod.FlopCounter, "__enter__", lambda self: pytest.fail("render measured"))
    console = Console(file=io.StringIO(), width=200)
    console.print(render_record(rec))
    console.print(render_records([rec, rec]))
    out = console.file.getvalue()
    for unit in ("(MiB)", "(MFLOP)", "(ms)", "(count)"):
        assert unit in out
    assert "toy" in out
    assert format_bytes(16_000_000) == "15.26 MiB"
    assert format_bytes(16_000_000, binary=False) == "16.00 MB"
    assert format_bytes(512) == "512 B"
    assert format_flops(1_500_000_000) == "1.50 GFLOP"
    assert format_count(13246482) == "13,246,482"


def test_lazy_top_level_names():
    assert gonprof.Profiler is Profiler
    assert gonprof.ProfileRecord is ProfileRecord
    r = subprocess.run(
        [sys.executable, "-c", "import sys, gonprof, gonprof.records, gonprof.render, gonprof.measure, "
         "gonprof.measure.rss, gonprof.measure.timing; print('torch' in sys.modules)"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.stdout.strip() == "False", r.stderr


def test_known_tensor_step_live_bytes_exact_and_rss_within_5_percent():
    # In a fresh process: peak RSS counts every page the process touches (see clean_process).
    out = run_clean("""
        from torch import nn
        from gonprof import Profiler
        lin = nn.Linear(10, 10)
        with Profiler(models=lin, warmup=2, active=3) as prof:
            while not prof.done:
                x = torch.empty(4_000_000)  # 16,000,000 bytes
                x.fill_(1.0)  # touch the pages
                del x
                prof.step()
        rec = prof.report()
        lm = rec.live_memory
        print(json.dumps({"live_delta": lm.peak_live_bytes - lm.start_live_bytes,
                          "activations": lm.peak_live_activation_bytes,
                          "rss_median": rec.rss.peak_rss_delta_bytes_median,
                          "rss_max": rec.rss.peak_rss_delta_bytes,
                          "rss_steps": [s.peak_rss_delta_bytes for s in rec.steps]}))
    """)
    assert out["live_delta"] == 16_000_000
    assert out["activations"] == 16_000_000
    assert out["rss_median"] == pytest.approx(16_000_000, rel=0.05)
    assert out["rss_max"] == pytest.approx(16_000_000, rel=0.05)
    assert len(out["rss_steps"]) == 3
    for delta in out["rss_steps"]:
        assert delta == pytest.approx(16_000_000, rel=0.05)


@pytest.mark.cuda
def test_cuda_memory_figures():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    lin = nn.Linear(256, 256).cuda()
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    x = torch.randn(64, 256, device="cuda")
    rec = _train_profiled(lin, opt, x, warmup=1, active=3)
    assert rec.environment.device.startswith("cuda")
    assert rec.cuda_memory is not None
    assert rec.cuda_memory.max_memory_allocated_bytes >= (256 * 256 + 256) * F32
    assert rec.cuda_memory.max_memory_reserved_bytes >= rec.cuda_memory.max_memory_allocated_bytes
    assert rec.flops.flops_per_step == 4 * 64 * 256 * 256


@pytest.mark.benchmark
def test_overhead_on_timed_steps_is_small():
    """Median step time profiled / unprofiled over interleaved blocks (they share the machine's noise)."""
    import statistics

    torch.set_num_threads(1)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.Flatten(),
                        nn.Linear(16 * 28 * 28, 1))
    opt = torch.optim.Adam(net.parameters())
    x = torch.randn(16, 1, 28, 28)

    def step():
        opt.zero_grad()
        net(x).mean().backward()
        opt.step()

    for _ in range(5):
        step()
    plain, profiled = [], []
    for _ in range(10):
        for _ in range(10):
            t = time.perf_counter()
            step()
            plain.append(time.perf_counter() - t)
        with Profiler(models=net, optimizers=opt, warmup=0, active=10, measure=False) as prof:
            while not prof.done:
                step()
                prof.step()
        profiled += [s.step_time_s for s in prof.report().steps]
    ratio = statistics.median(profiled) / statistics.median(plain)
    print(f"overhead ratio profiled/unprofiled median step time: {ratio:.3f}")
    assert ratio <= 1.03


def test_an_empty_step_measures_zero_bytes_when_its_batch_is_made_between_steps():
    """Batch preparation inside prof.between() is no part of the step: an empty step's peak is 0 B,
    and the timed steps do not include it."""
    import time

    from gonprof.profiler import Profiler

    prof = Profiler(models={"D": nn.Identity()}, optimizers={}, warmup=1, active=2)
    with prof:
        while not prof.done:
            with prof.between():
                batch = torch.randperm(10_000)  # 80,000 B, as a loader's shuffle makes
                time.sleep(0.05)
            prof.step()
    rec = prof.report()
    assert rec.live_memory.peak_live_bytes == 0 and rec.live_memory.start_live_bytes == 0
    assert rec.allocator_memory.peak_bytes == 0 and rec.step_peak_bytes == 0  # the allocator saw nothing either
    assert all(s.step_time_s < 0.04 for s in rec.steps)  # the 50 ms of preparation are not in the steps
    assert batch.numel() == 10_000


def test_batch_preparation_inside_the_interval_is_counted_without_between():
    from gonprof.profiler import Profiler

    prof = Profiler(models={"D": nn.Identity()}, optimizers={}, warmup=1, active=1)
    with prof:
        while not prof.done:
            batch = torch.randperm(10_000)
            prof.step()
    assert prof.report().live_memory.peak_live_bytes == 80_000  # 10,000 int64
    assert batch.numel() == 10_000


def test_memory_the_tracker_cannot_see_shows_as_a_flagged_gap():
    """A 64 MiB numpy array made inside each step (no tensor over it) is invisible to the tensor-level tracker;
    the record shows it as RSS beyond the live tensors, with a warning.  The same memory as a torch.from_numpy
    tensor is seen (from_numpy enters the dispatcher as lift_fresh over a storage no allocator made) and
    counted as external, to the byte, with no warning.  In a fresh process, so that no earlier test's resident
    pages blur the RSS figures."""
    from clean_process import run_clean

    out = run_clean("""
import numpy as np
from gonprof.profiler import Profiler
def run(wrap):
    prof = Profiler(models={"D": torch.nn.Identity()}, optimizers={}, warmup=1, active=3)
    with prof:
        while not prof.done:
            a = np.ones(16 * 2**20, dtype=np.float32)  # 64 MiB, outside torch
            t = torch.from_numpy(a) if wrap else None
            a = t = None
            prof.step()
    rec = prof.report()
    return {"untracked": rec.untracked_bytes, "live": rec.live_memory.peak_live_bytes,
            "external": rec.live_memory.peak_live_external_bytes, "allocator": rec.allocator_peak_bytes,
            "step_peak": rec.step_peak_bytes, "warnings": list(rec.warnings)}
print(json.dumps({"numpy": run(False), "from_numpy": run(True)}))
""")
    numpy, wrapped = out["numpy"], out["from_numpy"]
    assert numpy["live"] == 0  # the tracker saw nothing
    assert numpy["allocator"] == 0 and numpy["step_peak"] == 0  # numpy's memory is not torch's allocator's
    assert numpy["untracked"] >= 60 * 2**20
    assert numpy["warnings"] and "beyond its live tensors" in numpy["warnings"][0]
    assert wrapped["live"] == wrapped["external"] == wrapped["step_peak"] == 64 * 2**20
    assert wrapped["allocator"] == 0 and not wrapped["warnings"]


def test_an_ordinary_step_has_no_untracked_warning():
    from gonprof import api

    rec = api.profile("inception-k8", batch_size=8, warmup=1, steps=2)
    assert rec.untracked_bytes is not None and not rec.warnings


def test_a_compiled_model_that_never_ran_compiled_says_every_figure_is_eager():
    """A torch.compile'd model gets an allocator step; where no compiled frame ran in it, the record says every
    figure describes eager execution (tests/test_measure_allocator.py runs compiled code)."""
    import torch.nn as nn

    from gonprof.profiler import Profiler

    model = nn.Linear(4, 1)
    compiled = torch.compile(model)  # the wrapper is enough to be detected; nothing is compiled here
    prof = Profiler(models={"D": compiled}, optimizers={}, warmup=1, active=1)
    with prof:
        while not prof.done:
            prof.step()
    rec = prof.report()
    assert prof.allocator_steps == [1] and rec.warmup_steps == 2
    assert any("compiled with torch.compile, but no compiled frame ran" in w for w in rec.warnings)
    assert set(rec.execution.values()) == {"eager"} and rec.step_peak_execution == "eager"
    plain = Profiler(models={"D": model}, optimizers={}, warmup=1, active=1)
    with plain:
        while not plain.done:
            plain.step()
    assert not plain.report().warnings


def test_allocator_peak_beside_the_tensor_peak_on_every_profile():
    """The measuring step also takes the allocator-level peak; for a plain Linear step the two agree within the
    tolerance, the step peak is the tensor-level one, and every figure says it describes eager execution."""
    lin, opt, x = _linear_setup()
    rec = _train_profiled(lin, opt, x, warmup=2, active=2)
    am, lm = rec.allocator_memory, rec.live_memory
    assert am.step == rec.measuring_step == 1 and am.execution == "eager"
    # By hand, Linear(16, 4) with Adam: parameters 16*4*4 + 4*4 = 272 B, their gradients 272 B, Adam's two
    # moments 2 * 272 B and its two step counts 2 * 4 B: 1,096 B at the start of the measuring step.  The
    # step's peak is in Adam's update of the weight: sqrt(exp_avg_sq) and its quotient by the bias
    # correction, 256 B each, live together beside the 1,096 B (the loss is freed by then): 1,608 B.
    # The batch x (made before the step, read by it) is external: N * 16 * 4 B beside them.
    batch = N * I * 4
    assert am.start_bytes == lm.start_live_bytes == 1_096
    assert lm.peak_live_external_bytes == batch
    assert lm.peak_live_bytes == 1_096 + 2 * 256 + batch == 1_608 + batch
    # The allocator also sees the small blocks each op with a scalar argument makes below the dispatcher
    # (three 8 B and one 4 B, freed as the op ends; read from the allocator's events, the tensor tracker
    # never sees them): 1,608 + 28 = 1,636 B against the tensor peak less the external batch (which no
    # allocator served in the step), within the tolerance, so no note.
    assert am.peak_bytes == 1_608 + 3 * 8 + 4 == 1_636 and rec.peak_difference_note == ""
    assert (rec.step_peak_bytes, rec.step_peak_execution, rec.step_peak_source) == (lm.peak_live_bytes, "eager",
                                                                                      "tensor-level")
    assert rec.execution == {"flops": "eager", "live_memory": "eager", "allocator_memory": "eager",
                             "step_time": "eager", "rss": "eager"}
    row = rec.to_row()
    assert row["allocator_peak_bytes"] == am.peak_bytes and row["step_peak_execution"] == "eager"


def test_a_record_from_before_the_allocator_peak_still_loads_and_renders():
    from rich.console import Console

    doc = json.loads(_record().to_json())
    for key in ("allocator_memory", "step_peak_bytes", "step_peak_execution", "step_peak_source", "execution",
                "peak_difference_note"):
        del doc[key]
    old = ProfileRecord.from_json(json.dumps(doc))
    assert old.allocator_memory is None and old.step_peak_bytes is None and old.execution == {}
    assert not old.compiled
    console = Console(file=io.StringIO(), width=200)
    console.print(render_record(old))
    assert "allocator peak" not in console.file.getvalue()


def test_render_shows_the_allocator_peak_its_difference_and_why():
    import dataclasses

    from rich.console import Console

    from gonprof.profiler import peak_difference_note
    from gonprof.records import AllocatorMemory

    mib = 2**20
    rec = _record()
    lm = dataclasses.replace(rec.live_memory, peak_live_bytes=100 * mib)
    am = AllocatorMemory(peak_bytes=30 * mib, peak_delta_bytes=30 * mib, start_bytes=0, allocated_bytes=30 * mib,
                         execution="compiled", step=3, compiled_frames=1)
    compiled = rec.replace(live_memory=lm, allocator_memory=am, step_peak_bytes=30 * mib,
                           step_peak_execution="compiled", step_peak_source="allocator",
                           execution={"flops": "eager", "live_memory": "eager", "allocator_memory": "compiled",
                                      "step_time": "compiled"},
                           peak_difference_note=peak_difference_note(100 * mib, am))
    console = Console(file=io.StringIO(), width=250)
    console.print(render_record(ProfileRecord.from_json(compiled.to_json())))
    out = console.file.getvalue()
    assert "│ step peak" in out and "compiled execution" in out
    assert "allocator peak" in out and "30.00 MiB" in out and "untimed step 3" in out
    assert "-70.00 MiB" in out and "compiled buffers" in out
    assert "eager maths of the compiled step" in out
    console = Console(file=io.StringIO(), width=250)
    console.print(render_record(rec))
    out = console.file.getvalue()
    assert "within tolerance" in out and "│ step peak" not in out
