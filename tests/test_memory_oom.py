"""Where an out-of-memory step would fail: the guard's refusal and a step that runs out of memory name the
phase and the top module at the (estimated) peak."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from gonprof.profiler import Profiler
from gonprof.records import TooBigError
from gonprof.request import StepSpec

F32 = 4


def test_the_guard_names_the_phase_and_the_top_module_at_the_estimated_peak(monkeypatch):
    import gonprof.guard as guard

    monkeypatch.setattr(guard, "available_bytes", lambda device="cpu": 1)
    spec = StepSpec("gon-mnist-mlp", "gon", batch_size=16, hparams={"inner_steps": 2})
    with pytest.raises(TooBigError) as info:
        guard.check_fits(spec)
    message = str(info.value)
    assert "\n" not in message
    est = guard.check_fits(spec, force=True)
    totals: dict[str, int] = {}
    for m in est.peak_modules:
        if m.module:
            totals[m.module] = totals.get(m.module, 0) + m.bytes_at_peak
    top = max(totals, key=lambda k: totals[k])
    # GON's MLP: the first layer (784 x 2048 weights) holds the most at the peak (its parameter, gradient and
    # the Adam state counted outside the modules); the peak is in the discriminator's update
    assert top == "D.net.0"
    assert est.peak_phase == "d_step"
    assert "at its peak in phase 'd_step', top module D.net.0" in message


class _Huge(nn.Module):
    """Asks for 2**48 float32 elements (1 PiB): the CPU allocator refuses at once."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(2**48)


def _run(model: nn.Module, fail_at: int, warmup: int = 1, active: int = 2) -> str:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 64)
    prof = Profiler(models={"D": model}, optimizers={"D": opt}, warmup=warmup, active=active)
    with pytest.raises(RuntimeError), prof:
        i = 0
        while not prof.done:
            with prof.phase("d_step"):
                opt.zero_grad(set_to_none=True)
                out = model[0](x)
                if i == fail_at:
                    model[1](out)
                out.sum().backward()
                opt.step()
            prof.step()
            i += 1
    rec = prof.report()
    assert rec.status == "oom"
    return rec.message


def test_a_step_that_runs_out_of_memory_names_where():
    model = nn.Sequential(nn.Linear(64, 512), _Huge())
    message = _run(model, fail_at=0)  # the measuring step
    assert "\n" not in message and message.startswith("RuntimeError:")
    assert "[where: in phase 'd_step', in D.1's forward (aten.new_empty)" in message
    # live then: the parameters (64*512 + 512) * 4 = 133,120 B, x (8 * 64 * 4 = 2,048 B) and D.0's output
    # (8 * 512 * 4 = 16,384 B): 151,552 B, the most made by D.0 (its parameters and output, 149,504 B)
    assert "with 0.14 MiB live, the most made by D.0 (0.14 MiB)" in message

    model = nn.Sequential(nn.Linear(64, 512), _Huge())
    message = _run(model, fail_at=2)  # a timed step: where the measuring step peaked
    assert "[where: on the measuring step, its peak (" in message
    assert "in phase 'd_step', top module D.0 (" in message
