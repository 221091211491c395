"""Step memory predicted on meta tensors (gonprof.estimate) against measured tensor-level peaks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import gonprof.api as api
from gonprof.estimate import CUDA_BLOCK_BYTES, cuda_round, estimate_step_memory, input_bytes, track_meta_steps
from gonprof.measure.memory import LiveBytesTracker
from gonprof.records import MemoryEstimate, load_records, save_records
from gonprof.request import StepSpec

F32 = 4


@pytest.mark.parametrize("arch,mode,hparams", [
    ("gon-mnist-mlp", "gon", {"inner_steps": 6}),   # > the estimate's cap of 4 inner iterations
    ("inception-k8", "lsgan", {}),
    pytest.param("dcd-mnist-sn", "wgan-gp", {}, marks=pytest.mark.slow),
    pytest.param("dcd-mnist-sn", "dcd", {}, marks=pytest.mark.slow),
])
def test_estimate_within_5_percent_of_measured(arch, mode, hparams):
    b = 16
    est = estimate_step_memory(StepSpec(arch, mode, batch_size=b, hparams=hparams))
    rec = api.profile(arch, mode, batch_size=b, warmup=2, steps=1, hparams=hparams)
    assert rec.status == "ok", rec.message
    measured = rec.live_memory.peak_live_bytes
    assert abs(est.peak_live_bytes - measured) <= 0.05 * measured, (est.peak_live_bytes, measured)
    # persistent state of the fake run = the real one's, exactly
    assert est.persistent.param_bytes == rec.persistent.param_bytes
    assert est.persistent.optimizer_state_bytes == rec.persistent.optimizer_state_bytes
    assert est.peak_bytes == est.peak_live_bytes - est.peak_live_external_bytes + est.input_bytes
    assert est.peak_live_external_bytes == rec.live_memory.peak_live_external_bytes  # the part of the batch read
    assert est.method == "meta" and est.device == "cpu"


class _LinearStep:
    """W (out x in, no bias), loss = (x W^T).sum(), SGD without momentum (no optimizer state)."""

    def __init__(self, n_in, n_out, device):
        self.lin = nn.Linear(n_in, n_out, bias=False, device=device)
        self.opt = torch.optim.SGD(self.lin.parameters(), lr=0.1)
        self.models, self.optimizers = {"m": self.lin}, {"o": self.opt}

    def step(self, real, labels=None, phase=None):
        self.opt.zero_grad(set_to_none=True)
        out = self.lin(real.flatten(1))
        out.sum().backward()
        self.opt.step()


def test_linear_step_peak_to_the_byte():
    n_in, n_out, b = 1000, 500, 64
    with torch.device("meta"):
        step = _LinearStep(n_in, n_out, "meta")
    live, rounded, reads = track_meta_steps(step, (b, n_in), steps=2)
    w = n_in * n_out * F32
    out = b * n_out * F32
    # Hand-derived, second step: it starts with W and last step's grad (2 w); zero_grad(set_to_none)
    # frees the grad; forward: out (b x n_out, kept by autograd? no, but alive until .sum() and
    # backward end: the local `out` holds it) and the 4-byte loss; backward: the 4-byte ones seed,
    # SumBackward expands it (a view), MmBackward makes grad_W (stolen by AccumulateGrad).
    # Peak = W + grad_W + out + loss + seed.
    assert live[0].start_live_bytes == w  # first step: no grad yet, SGD keeps no state
    lm = live[-1]
    assert lm.start_live_bytes == 2 * w
    assert lm.peak_live_param_bytes == w
    assert lm.peak_live_grad_bytes == w
    assert lm.peak_live_external_bytes == b * n_in * F32  # the batch, made before the step, read by it
    assert lm.peak_live_bytes == 2 * w + out + 2 * F32 + b * n_in * F32
    # and the same step on real CPU tensors gives the same figure
    real_step = _LinearStep(n_in, n_out, "cpu")
    x = torch.randn(b, n_in)
    for _ in range(2):
        with LiveBytesTracker(real_step.models, real_step.optimizers) as mt:
            real_step.step(x)
    assert mt.figures().peak_live_bytes == lm.peak_live_bytes
    assert reads == 0


def test_cuda_rounding_rule_by_hand():
    assert CUDA_BLOCK_BYTES == 512
    assert cuda_round(0) == 0
    assert cuda_round(1) == 512
    assert cuda_round(512) == 512
    assert cuda_round(513) == 1024
    assert cuda_round(1024) == 1024
    assert cuda_round(4 * 1000) == 4096


def test_cuda_estimate_without_gpu_rounds_every_storage():
    e = estimate_step_memory(StepSpec("gon-mnist-conv", device="cuda", batch_size=64))
    assert e.device == "cuda"
    assert e.cuda_max_memory_allocated_bytes == e.peak_bytes
    # rounding only adds, by less than 512 bytes per live storage
    assert e.cuda_peak_live_rounded_bytes >= e.peak_live_bytes
    assert e.cuda_peak_live_rounded_bytes - e.peak_live_bytes < 512 * 1000
    # the images the step read are in the rounded live peak (external); the budget adds the labels it never reads
    assert e.peak_live_external_bytes == 64 * 784 * 4
    assert e.peak_bytes == e.cuda_peak_live_rounded_bytes + cuda_round(64 * 8)
    assert "512" in e.rounding
    assert any("capped" in n for n in e.notes) and any("worst case" in n for n in e.notes)
    assert e.hparams["channels_last"] is False


def test_estimate_of_a_huge_batch_allocates_nothing():
    # gon-mnist-conv at batch 20000: its real step needs far more than 20 GiB (about 6.8 MB a sample).
    # The RSS high-water mark is read in a fresh process (clean_process), so no earlier test's pages count.
    from clean_process import run_clean

    out = run_clean("""
import json, resource
from gonprof.estimate import estimate_step_memory
from gonprof.request import StepSpec
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
e = estimate_step_memory(StepSpec("gon-mnist-conv", "gon", batch_size=20000))
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": e.peak_bytes, "grew": rss1 - rss0}))
""")
    assert out["peak"] > 20 * 2**30
    assert out["grew"] < 512 * 2**20


def test_gon_worst_case_is_said():
    e = estimate_step_memory(StepSpec("gon-mnist-mlp", "gon", batch_size=8))
    assert e.data_dependent_reads > 0
    assert "worst case" in " ".join(e.notes)
    assert e.hparams["inner_steps"] == 4


def test_input_bytes_and_record_round_trip(tmp_path):
    assert input_bytes(3, (1, 28, 28)) == 3 * (784 * 4 + 8)
    e = estimate_step_memory(StepSpec("inception-k8", "lsgan", batch_size=4))
    back = MemoryEstimate.from_json(e.to_json())
    assert back == e
    save_records([e], tmp_path / "e.json")
    assert load_records(tmp_path / "e.json") == [e]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_estimate_within_10_percent_of_max_memory_allocated():
    from gonprof.budget import run_trial

    for arch, mode in (("gon-mnist-conv", "gon"), ("inception-k8", "lsgan")):
        hp = {"inner_steps": 5} if mode == "gon" else {}
        e = estimate_step_memory(StepSpec(arch, mode, batch_size=64, device="cuda", hparams=hp))
        t = run_trial(StepSpec(arch, mode, batch_size=64, device="cuda", hparams=hp))
        m = t.cuda_max_memory_allocated_bytes
        print(arch, mode, "estimate", e.peak_bytes, "max_memory_allocated", m)
        assert abs(e.peak_bytes - m) <= 0.10 * m
