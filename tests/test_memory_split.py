"""Where the memory goes: the split of the peak by category (decided when a storage is made or becomes a
gradient / optimizer state), external storages, per-module attribution and the timeline, against bytes
counted by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from clean_process import run_clean
from gonprof.measure.memory import LiveBytesTracker, downsample, track_live_bytes

F32 = 4
MiB = 2**20


def _split_sum(lm) -> int:
    return (lm.peak_live_param_bytes + lm.peak_live_buffer_bytes + lm.peak_live_grad_bytes
            + lm.peak_live_optimizer_state_bytes + lm.peak_live_replay_bytes + lm.peak_live_activation_bytes
            + lm.peak_live_external_bytes)


def test_two_sgd_updates_count_the_first_updates_gradients_as_gradients():
    """Linear(2048, 2048), two SGD updates with zero_grad(set_to_none=True) between.  By hand: parameters
    2048*2048*4 + 2048*4 = 16,785,408 B.  The peak is in the first update's backward, when the weight's
    gradient (2048 x 2048, made by the mm of addmm's backward and stored as .grad without a copy) is made;
    the bias's gradient exists by then: 16,785,408 B of gradients.  Beside them: the batch x (64 x 2048 = 524,288 B,
    made before the step: external), the gradient of the loss w.r.t. the layer's output (524,288 B) and the
    loss and its seed gradient (4 B each).  Those gradients are freed by the second zero_grad, so a split
    read from what exists at the step's end calls them activations."""
    torch.manual_seed(0)
    lin = nn.Linear(2048, 2048)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    x = torch.randn(64, 2048)

    def step():
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            lin(x).pow(2).sum().backward()
            opt.step()

    lm = track_live_bytes(step, models={"L": lin}, optimizers={"L": opt})
    params = 2048 * 2048 * F32 + 2048 * F32
    assert params == 16_785_408
    assert lm.peak_live_param_bytes == params
    assert lm.peak_live_grad_bytes == params  # 16 MiB + 8 KiB of gradients live at the peak
    assert lm.peak_live_external_bytes == 64 * 2048 * F32 == 524_288
    assert lm.peak_live_activation_bytes == 64 * 2048 * F32 + 2 * F32
    assert lm.peak_live_optimizer_state_bytes == 0
    assert lm.peak_live_bytes == _split_sum(lm) == 2 * params + 2 * 524_288 + 8
    grads = [m for m in lm.peak_modules if m.category == "grad"]
    assert [(m.module, m.direction, m.bytes_at_peak) for m in grads] == [("L", "backward", params)]


class _TinyG(nn.Module):
    latent_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z).view(-1, 1, 1, 64)


def test_wgan_gp_round_counts_the_critic_updates_gradients_at_the_peak():
    """gonprof's wgan-gp step (3 critic updates, then G) with a critic D = Linear(64, 16) - Tanh -
    Linear(16, 1) and G = Linear(4, 64), batch 4096, after one round that made Adam's state.  By hand:
    D's parameters (64*16 + 16 + 16 + 1) * 4 = 4,228 B, G's (4*64 + 64) * 4 = 1,280 B; Adam's two moments
    2 * 5,508 B and a 4 B step count for each of the 6 tensors: 11,040 B; the real batch 4096 * 64 * 4 =
    1,048,576 B (external).  Each critic update begins with zero_grad(set_to_none=True), so at the step's
    peak, in a critic update's gradient penalty before its backward has made D's new gradients, the
    gradients live are G's from the last round (1,280 B) and none of D's, although D's exist at the
    step's end: the split is what was live at the peak, not what exists at the end."""
    from gonprof.modes.wgan_gp import make_wgan_gp

    torch.manual_seed(0)
    D = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 1))
    hp = {"batch_size": 4096, "lr": 1e-4, "betas": (0.5, 0.9), "d_steps": 3, "gp_weight": 10.0}
    step = make_wgan_gp(D, None, _TinyG(), None, hp, "cpu")
    real = torch.rand(4096, 1, 1, 64)
    step.step(real)  # Adam's state
    with LiveBytesTracker(step.models, step.optimizers) as mt:
        step.step(real, phase=mt.phase)
    lm = mt.figures()
    d_bytes, g_bytes = 4_228, 1_280
    assert sum(p.numel() for p in D.parameters()) * F32 == d_bytes
    assert lm.peak_live_param_bytes == d_bytes + g_bytes
    assert lm.peak_live_grad_bytes == g_bytes
    assert all(p.grad is not None for p in D.parameters())  # D's gradients exist at the end
    assert lm.peak_live_optimizer_state_bytes == 2 * (d_bytes + g_bytes) + 6 * F32 == 11_040
    assert lm.peak_live_external_bytes == 4096 * 64 * F32
    assert lm.peak_phase == "d_step"
    assert lm.peak_live_bytes == _split_sum(lm)
    d_grads = sum(m.bytes_at_peak for m in lm.peak_modules if m.category == "grad" and m.module.startswith("D."))
    assert d_grads == 0


def test_gon_step_split_and_attribution_through_autograd_grad():
    """GON on gon-mnist-mlp (batch 16, 2 inner steps).  By hand: D's 582,914 parameters, 2,331,656 B; Adam's
    moments 2 * 2,331,656 B and 10 step counts of 4 B; the real batch 16 * 784 * 4 = 50,176 B (external; the
    labels are never read); the replay buffer of 1,000 chains, 1,000 * 784 * 4 B, and their ages, 1,000 * 8 B
    (replay).  The peak is in d_step, with D's new gradients (2,331,656 B) live.  The inner
    loop's tensors (autograd.grad w.r.t. the input) are attributed to D's modules, backward."""
    from gonprof.modes.build import build_step

    step = build_step("gon", "gon-mnist-mlp", batch_size=16, inner_steps=2)
    real, labels = torch.rand(16, 1, 28, 28) * 2 - 1, torch.zeros(16, dtype=torch.long)
    step.step(real, labels)
    with LiveBytesTracker(step.models, step.optimizers, state=step.state_tensors, max_points=100_000) as mt:
        step.step(real, labels, phase=mt.phase)
    lm = mt.figures()
    assert lm.peak_live_replay_bytes == 1000 * 784 * F32 + 1000 * 8
    p = 582_914 * F32
    assert lm.peak_live_param_bytes == p
    assert lm.peak_live_grad_bytes == p
    assert lm.peak_live_optimizer_state_bytes == 2 * p + 10 * F32
    assert lm.peak_live_external_bytes == 16 * 784 * F32
    assert lm.peak_phase == "d_step" and lm.peak_live_bytes == _split_sum(lm)
    grads = {m.module for m in lm.peak_modules if m.category == "grad"}
    assert grads and all(name.startswith("D.") for name in grads)


def test_autograd_grad_and_double_backward_are_attributed_to_modules():
    """A gradient penalty: autograd.grad w.r.t. the input with create_graph, then backward through it.  Every
    hidden-sized tensor (64 x 4096 x 4 = 1 MiB) live at the peak was made by a module of D, forward or
    backward; none is left unattributed."""
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(256, 4096), nn.Tanh(), nn.Linear(4096, 1))
    x = torch.randn(64, 256, requires_grad=True)

    def step():
        (g,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
        g.pow(2).sum().backward()

    lm = track_live_bytes(step, models={"D": d})
    big = [m for m in lm.peak_modules if m.category == "act" and m.bytes_at_peak >= MiB]
    assert big and all(m.module in ("D.0", "D.1", "D.2") for m in big)
    assert any(m.direction == "backward" for m in big)
    unattributed = sum(m.bytes_at_peak for m in lm.peak_modules if m.category == "act" and not m.module)
    assert unattributed < 64 * 256 * F32  # only the loss-side temporaries, smaller than one input


def test_per_module_bytes_of_a_wide_and_a_narrow_layer():
    """Linear(1024, 8192) + ReLU, then Linear(8192, 16), batch 256.  Forward without grad: the peak is at the
    ReLU, whose output (256 * 8192 * 4 = 8 MiB) is made while the wide layer's (8 MiB) is live; the narrow
    layer has not run.  Training (sum of squares, backward): the peak is at the wide layer's weight gradient
    (8192 * 1024 * 4 B + bias 32 KiB), with the ReLU's backward output (8 MiB, the gradient w.r.t. the wide
    layer's output), the narrow layer's gradients (16 * 8192 * 4 + 64 B) and its output (256 * 16 * 4 B)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(1024, 8192), nn.ReLU(), nn.Linear(8192, 16))
    x = torch.randn(256, 1024)
    wide, narrow = (1024 * 8192 + 8192) * F32, (8192 * 16 + 16) * F32
    act = 256 * 8192 * F32
    assert act == 8 * MiB

    with LiveBytesTracker({"M": m}) as mt, torch.no_grad():
        m(x)
    rows = {(r.module, r.direction, r.category): r.bytes_at_peak for r in mt.figures().peak_modules}
    assert rows == {("M.0", "outside", "param"): wide, ("M.2", "outside", "param"): narrow,
                    ("M.0", "forward", "act"): act, ("M.1", "forward", "act"): act,
                    ("", "outside", "external"): 256 * 1024 * F32}

    with LiveBytesTracker({"M": m}) as mt:
        out = m(x)
        out.pow(2).sum().backward()
    lm = mt.figures()
    rows = {(r.module, r.direction, r.category): r.bytes_at_peak for r in lm.peak_modules}
    assert rows[("M.0", "backward", "grad")] == wide
    assert rows[("M.2", "backward", "grad")] == narrow
    assert rows[("M.1", "backward", "act")] == act
    assert rows[("M.2", "forward", "act")] == 256 * 16 * F32
    assert ("M.0", "forward", "act") not in rows  # the wide layer's output was freed after the ReLU
    assert all(r.phase == "" for r in lm.peak_modules)  # no phases named
    assert lm.peak_live_bytes == _split_sum(lm) == sum(rows.values())


def test_replay_state_is_its_own_category():
    lin = nn.Linear(8, 8)
    buffer = torch.zeros(1000, 8)  # 32,000 B a mode keeps between steps

    def body():
        buffer[:10] = lin(torch.ones(10, 8)).detach()

    with LiveBytesTracker({"D": lin}, state={"replay": [buffer]}) as mt:
        body()
    lm = mt.figures()
    assert lm.peak_live_replay_bytes == 32_000 and lm.peak_live_external_bytes == 0
    assert lm.start_live_bytes == 72 * F32 + 32_000
    try:
        LiveBytesTracker(state={"act": [buffer]}).__enter__()
    except ValueError as exc:
        assert "not persistent state" in str(exc)
    else:
        raise AssertionError("a category that is not persistent state was accepted")


# ---------------------------------------------------------------------------
# external storages
# ---------------------------------------------------------------------------


class _Images(torch.utils.data.Dataset):
    """Images made per item from uint8 arrays, as torchvision's datasets and transforms make them."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.x = rng.integers(0, 256, (256, 16, 16, 3), dtype=np.uint8)
        self.y = rng.integers(0, 10, 256)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.x[i]).permute(2, 0, 1).float().div(255), int(self.y[i])


def _loader_peak(num_workers: int):
    from torch.utils.data import DataLoader

    from gonprof.profiler import Profiler

    torch.manual_seed(0)
    loader = DataLoader(_Images(), batch_size=32, num_workers=num_workers)
    # the step's peak is in its backward (the first layer's 6 MiB gradient), not at the collate, where the
    # main process holds the items and the batch made from them together
    model = nn.Sequential(nn.Flatten(), nn.Linear(768, 2048), nn.ReLU(), nn.Linear(2048, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Profiler(models={"D": model}, optimizers={"D": opt}, warmup=2, active=1) as prof:
        for images, labels in loader:  # the fetch is inside the step, as in most training scripts
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(images), labels).backward()
            opt.step()
            prof.step()
            if prof.done:
                break
    return prof.report().live_memory


def test_a_batch_from_loader_workers_counts_the_same_as_one_made_in_the_process():
    """DataLoader(num_workers=0) makes the batch in the step (per-item conversion, then the collate's stack: ops
    allocate it, activations); with num_workers=2 it arrives in shared memory made by other processes, and is
    counted as external from the first op that reads it (a prefetched batch is not).  The tensor-level peaks
    are equal; the batch is 32 * 3 * 16 * 16 * 4 + 32 * 8 = 98,560 B either way."""
    main, workers = _loader_peak(0), _loader_peak(2)
    batch = 32 * 3 * 16 * 16 * F32 + 32 * 8
    assert main.peak_live_bytes == workers.peak_live_bytes
    assert workers.peak_live_external_bytes == batch
    assert main.peak_live_external_bytes == 0
    assert main.peak_live_activation_bytes == workers.peak_live_activation_bytes + batch


def test_a_from_numpy_tensor_is_counted_exactly_after_a_large_free():
    """A 64 MiB torch.from_numpy tensor read by the step is external, counted to the byte, in a process that
    first freed 512 MiB (so that malloc can reuse those pages and RSS would not show it)."""
    out = run_clean("""
import numpy as np
from gonprof.profiler import Profiler
big = np.ones(128 * 2**20, dtype=np.float32)  # 512 MiB
del big
prof = Profiler(models={"D": torch.nn.Identity()}, optimizers={}, warmup=1, active=1)
peaks = []
with prof:
    while not prof.done:
        t = torch.from_numpy(np.ones(16 * 2**20, dtype=np.float32))  # 64 MiB
        t.sum()
        t = None
        prof.step()
rec = prof.report()
print(json.dumps({"external": rec.live_memory.peak_live_external_bytes, "live": rec.live_memory.peak_live_bytes,
                  "note": rec.peak_difference_note, "warnings": list(rec.warnings)}))
""")
    assert out["external"] == 64 * MiB
    assert out["live"] == 64 * MiB + F32  # and the sum's 4 B
    assert "kernel scratch" not in out["note"]
    assert not any("beyond its live tensors" in w for w in out["warnings"])


# ---------------------------------------------------------------------------
# the timeline
# ---------------------------------------------------------------------------


class _FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


def test_timeline_points_phases_and_fake_clock():
    """Three ops: ones (4 MB), ones (8 MB), add (8 MB), under phases "a" (first two) and "b" (the add).  The
    clock advances 0.5 s per read; the step starts at the first read."""
    clock = _FakeClock()
    with LiveBytesTracker(clock=clock) as mt:
        with mt.phase("a"):
            x = torch.ones(1_000_000)
            y = torch.ones(2_000_000)
        with mt.phase("b"):
            z = y + 1
        del x, y, z
    tl = mt.figures().timeline
    assert tl is not None
    assert tl.op_index == [0, 1, 2, 3]
    assert tl.time_s == [0.5, 1.0, 1.5, 2.0]
    assert tl.bytes_by_category["act"] == [0, 4_000_000, 12_000_000, 20_000_000]
    assert all(v == [0, 0, 0, 0] for c, v in tl.bytes_by_category.items() if c != "act")
    assert tl.peak_point == 3 and tl.ops_total == 3
    assert [(p.name, p.first_op, p.last_op) for p in tl.phases] == [("a", 1, 2), ("b", 3, 3)]
    assert mt.figures().peak_phase == "b"


def test_timeline_downsampled_keeps_the_peak_exactly():
    totals = [i % 97 for i in range(10_000)]
    totals[6_543] = 10_000
    keep = downsample(totals, 101)
    assert len(keep) <= 101 and keep == sorted(keep)
    assert 6_543 in keep and keep[0] == 0 and keep[-1] == 9_999
    assert downsample([1, 2, 3], 10) == [0, 1, 2]

    lin = nn.Linear(64, 64)
    with LiveBytesTracker({"D": lin}, max_points=20) as mt:
        for _ in range(50):
            lin(torch.ones(8, 64)).sum().backward()
    lm = mt.figures()
    tl = lm.timeline
    assert len(tl.op_index) <= 20 and tl.ops_total > 20
    at_peak = sum(v[tl.peak_point] for v in tl.bytes_by_category.values())
    assert at_peak == lm.peak_live_bytes


# ---------------------------------------------------------------------------
# CUDA: the same figures (storage bytes do not depend on the device)
# ---------------------------------------------------------------------------


def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


@pytest.mark.cuda
def test_cuda_per_module_bytes_split_and_timeline_match_the_hand_count():
    dev = _cuda()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(1024, 8192), nn.ReLU(), nn.Linear(8192, 16)).to(dev)
    x = torch.randn(256, 1024, device=dev)
    wide, narrow, act = (1024 * 8192 + 8192) * F32, (8192 * 16 + 16) * F32, 256 * 8192 * F32
    with LiveBytesTracker({"M": m}) as mt:
        out = m(x)
        out.pow(2).sum().backward()
    lm = mt.figures()
    rows = {(r.module, r.direction, r.category): r.bytes_at_peak for r in lm.peak_modules}
    assert rows[("M.0", "backward", "grad")] == wide and rows[("M.2", "backward", "grad")] == narrow
    assert rows[("M.1", "backward", "act")] == act
    assert lm.peak_live_bytes == _split_sum(lm)
    tl = lm.timeline
    assert sum(v[tl.peak_point] for v in tl.bytes_by_category.values()) == lm.peak_live_bytes


@pytest.mark.cuda
def test_cuda_profile_split_two_updates_and_the_allocator_peak():
    """The two-update Linear step on CUDA under the Profiler: the same split as on the CPU, and the allocator
    peak (max_memory_allocated over the measuring step) within the tolerance of the tensor peak less the
    external batch (blocks rounded to 512 B; cuBLAS workspace)."""
    from gonprof.profiler import Profiler
    from gonprof.records import peak_tolerance_bytes

    dev = _cuda()
    torch.manual_seed(0)
    lin = nn.Linear(2048, 2048).to(dev)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    x = torch.randn(64, 2048, device=dev)
    with Profiler(models={"L": lin}, optimizers={"L": opt}, warmup=2, active=2) as prof:
        while not prof.done:
            for _ in range(2):
                opt.zero_grad(set_to_none=True)
                lin(x).pow(2).sum().backward()
                opt.step()
            prof.step()
    rec = prof.report()
    lm, am = rec.live_memory, rec.allocator_memory
    params = 2048 * 2048 * F32 + 2048 * F32
    assert lm.peak_live_param_bytes == lm.peak_live_grad_bytes == params
    assert lm.peak_live_external_bytes == 64 * 2048 * F32
    assert lm.peak_live_bytes == _split_sum(lm)
    basis = lm.peak_live_bytes - lm.peak_live_external_bytes
    assert abs(am.peak_bytes - basis) <= peak_tolerance_bytes(basis)
    assert rec.peak_difference_note == ""


def test_the_embedded_api_returns_the_timeline_with_the_modes_phases():
    from gonprof import api
    from gonprof.records import ProfileRecord

    rec = api.profile("inception-k8", "lsgan", batch_size=8, warmup=1, steps=1)
    lm = rec.live_memory
    tl = lm.timeline
    assert tl is not None and 0 < len(tl.op_index) <= tl.max_points
    assert {p.name for p in tl.phases} == {"d_step", "g_step"}
    assert all(0 < p.first_op <= p.last_op <= tl.ops_total for p in tl.phases)
    assert sum(v[tl.peak_point] for v in tl.bytes_by_category.values()) == lm.peak_live_bytes
    assert tl.time_s == sorted(tl.time_s) and tl.time_s[0] >= 0
    assert lm.peak_phase in ("d_step", "g_step") and lm.peak_modules
    assert all(m.module == "" or m.module.split(".")[0] in ("D", "G") for m in lm.peak_modules)
    again = ProfileRecord.from_json(rec.to_json()).live_memory
    assert again.timeline == tl and again.peak_modules == lm.peak_modules


def test_the_profiler_counts_a_steps_declared_state_as_replay():
    """A train step that keeps a replay buffer declares it (TrainStep.state_tensors); the Profiler counts it as
    replay, read when the measuring step begins, not as external storage."""
    from gonprof.modes.base import TrainStep
    from gonprof.profiler import Profiler

    assert TrainStep({}, {}, {}, "cpu").state_tensors() == {}
    lin = nn.Linear(8, 8)
    buffer = torch.zeros(500, 8)  # 16,000 B

    class Step(TrainStep):
        def state_tensors(self):
            return {"replay": [buffer]}

    step = Step({"D": lin}, {}, {}, "cpu")
    with Profiler(models=step.models, warmup=1, active=1, state=step.state_tensors) as prof:
        while not prof.done:
            buffer[:4] = lin(torch.ones(4, 8)).detach()
            prof.step()
    lm = prof.report().live_memory
    assert lm.peak_live_replay_bytes == 16_000 and lm.peak_live_external_bytes == 0
    assert lm.start_live_bytes == 72 * F32 + 16_000
