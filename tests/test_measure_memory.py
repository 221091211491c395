"""Tensor-level live bytes (to the byte) and the process RSS peak (within 5 %)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from clean_process import run_clean
from gonprof.measure.memory import LiveBytesTracker, track_live_bytes
from gonprof.measure.rss import METHOD_POLL, METHOD_VMHWM, RssPeak

F32 = 4


def test_known_tensor_in_peak_to_the_byte():
    lin = nn.Linear(10, 10)

    def step():
        x = torch.empty(4_000_000)  # float32: 16,000,000 bytes
        x.fill_(1.0)
        del x

    lm = track_live_bytes(step, models={"m": lin})
    assert lm.start_live_bytes == 110 * F32  # parameters (no grads yet)
    assert lm.peak_live_bytes - lm.start_live_bytes == 16_000_000
    assert lm.peak_live_activation_bytes == 16_000_000
    assert lm.peak_live_param_bytes == 110 * F32
    assert lm.end_live_bytes == lm.start_live_bytes
    assert lm.allocated_bytes == 16_000_000


def test_peak_is_the_maximum_of_simultaneously_live_tensors():
    def step():
        a = torch.ones(1_000_000)  # 4 MB
        b = torch.ones(2_000_000)  # 8 MB   -> 12 MB live
        del a
        c = torch.ones(500_000)  # 2 MB    -> 10 MB live
        d = b + 1  # 8 MB                 -> 18 MB live: the peak
        del b, c, d

    with LiveBytesTracker() as mt:
        with mt.phase("first"):
            step()
        with mt.phase("second"):
            torch.ones(250_000)  # 1 MB, freed at once
    lm = mt.figures()
    assert lm.peak_live_bytes == 18_000_000
    assert lm.peak_live_bytes_by_phase == {"first": 18_000_000, "second": 1_000_000}
    assert lm.allocated_bytes == 4_000_000 + 8_000_000 + 2_000_000 + 8_000_000 + 1_000_000
    assert lm.end_live_bytes == 0


def test_views_and_inplace_ops_on_untracked_tensors_allocate_nothing():
    batch = torch.randn(1000, 10)  # made before the step: external from the first op that reads it

    def step():
        v = batch.view(10_000)
        v.add_(1.0)
        batch.t().mul_(2.0)

    lm = track_live_bytes(step)
    assert lm.allocated_bytes == 0
    assert lm.peak_live_external_bytes == lm.peak_live_bytes == 40_000


def test_split_at_peak_params_grads_adam_state_activations():
    d_in, d_out, n = 64, 32, 16
    lin = nn.Linear(d_in, d_out)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    x = torch.randn(n, d_in)

    def step():
        opt.zero_grad(set_to_none=True)
        lin(x).pow(2).sum().backward()
        opt.step()

    step()  # creates Adam state and gradients
    lm = track_live_bytes(step, models={"D": lin}, optimizers={"D": opt})
    p = (d_in * d_out + d_out) * F32
    adam = 2 * p + 2 * F32  # exp_avg + exp_avg_sq + a float32 step scalar per tensor
    assert lm.start_live_bytes == p + p + adam  # params + grads + Adam state
    assert lm.peak_live_param_bytes == p
    assert lm.peak_live_optimizer_state_bytes == adam
    assert lm.peak_live_grad_bytes == p  # new gradients (old ones were freed by zero_grad)
    assert lm.peak_live_activation_bytes > 0
    assert lm.peak_live_external_bytes == n * d_in * F32  # the batch, made before the step, read by it
    assert lm.peak_live_bytes == (p + adam + lm.peak_live_grad_bytes + lm.peak_live_activation_bytes
                                  + lm.peak_live_external_bytes)
    assert lm.end_live_bytes == lm.start_live_bytes + lm.peak_live_external_bytes  # the batch is still held


def test_autograd_grad_wrt_leaf_and_double_backward_are_tracked():
    d = nn.Sequential(nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, 1))
    x = torch.randn(8, 20, requires_grad=True)

    def step():
        (g,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
        g.pow(2).sum().backward()

    lm = track_live_bytes(step, models={"D": d})
    assert lm.peak_live_bytes > lm.start_live_bytes
    assert lm.end_live_bytes - lm.start_live_bytes >= sum(p.numel() for p in d.parameters()) * F32  # grads


def test_meta_and_fake_tensors_need_no_real_memory():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with torch.device("meta"):
        lin = nn.Linear(1000, 1000)
        lm = track_live_bytes(lambda: torch.empty(4_000_000), models={"m": lin})
    assert lm.peak_live_bytes - lm.start_live_bytes == 16_000_000
    assert lm.start_live_bytes == 1_001_000 * F32
    with FakeTensorMode():
        lin = nn.Linear(100, 50)
        x = torch.randn(8, 100)
        lm = track_live_bytes(lambda: lin(x).sum().backward(), models={"m": lin})
    assert lm.peak_live_external_bytes == 8 * 100 * F32  # x, made before the step
    assert lm.end_live_bytes - lm.start_live_bytes == 5050 * F32 + 8 * 100 * F32  # the gradients and x


# ---------------------------------------------------------------------------
# RSS
# ---------------------------------------------------------------------------


def test_rss_methods_report_themselves():
    rp = RssPeak()
    try:
        assert rp.method in (METHOD_VMHWM, METHOD_POLL)
        base = rp.start()
        s = rp.stop()
        assert s.rss_start_bytes == base and s.peak_rss_bytes >= base
    finally:
        rp.close()
    poll = RssPeak("poll")
    try:
        assert poll.method == METHOD_POLL
        poll.start()
        assert poll.stop().peak_rss_delta_bytes >= 0
    finally:
        poll.close()


@pytest.mark.parametrize("method", ["vmhwm", "poll"])
def test_rss_peak_of_a_known_tensor_within_5_percent(method):
    # In a fresh process: peak RSS counts every page the process touches (see clean_process).
    s = run_clean(f"""
        import time
        from gonprof.measure.rss import RssPeak
        rp = RssPeak({method!r})
        rp.start()
        x = torch.empty(4_000_000)  # 16,000,000 bytes
        x.fill_(1.0)  # touch every page
        if {method!r} == "poll":
            time.sleep(0.05)  # let the 1 ms poller see it
        s = rp.stop()
        rp.close()
        print(json.dumps({{"method": s.method, "start": s.rss_start_bytes, "peak": s.peak_rss_bytes,
                          "delta": s.peak_rss_delta_bytes}}))
    """)
    assert s["method"] == (METHOD_VMHWM if method == "vmhwm" else METHOD_POLL)
    assert s["delta"] == pytest.approx(16_000_000, rel=0.05)
    assert s["peak"] == s["start"] + s["delta"]
