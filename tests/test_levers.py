"""Memory levers (gonprof.levers): their rules, what each does to a step, its estimate, the lever table, and
the levers in compare rows and fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gonprof import api
from gonprof.cli import app
from gonprof.comparison.plan import plan, split_levers
from gonprof.levers import blocks_of, check_levers, lever_label, micro_slices, parse_checkpoint
from gonprof.modes import IncompatibleError, get_mode
from gonprof.modes._common import GANStep
from gonprof.records import LeverRecord, RequestError, load_records, save_records
from gonprof.render import lever_blocks, to_markdown
from gonprof.request import StepSpec

SMALL = dict(arch="inception-k8", mode="lsgan", batch_size=16)


def _profile(**levers):
    return api.profile(StepSpec(**SMALL, **levers), warmup=2, steps=1)


def _estimate(**levers):
    est, _ = api.estimate(StepSpec(**SMALL, **levers), measure=False)
    return est


def _close(measured: int, estimated: int, within: float = 0.05) -> bool:
    return abs(estimated - measured) <= within * measured


# -- rules: one line each ---------------------------------------------------------------------------

@pytest.mark.parametrize("levers, words", [
    ({"precision": "fp8"}, "--precision must be one of fp32, bf16, fp16"),
    ({"precision": "fp16"}, "needs a CUDA device"),
    ({"micro_batches": 3}, "does not divide the batch (16)"),
    ({"micro_batches": 32}, "larger than the batch (16)"),
    ({"micro_batches": 0}, "positive integer"),
    ({"checkpoint": "X"}, "D, G or D,G"),
])
def test_a_bad_lever_is_one_request_error(levers, words):
    with pytest.raises(RequestError, match=words.replace("(", r"\(").replace(")", r"\)")):
        StepSpec(**SMALL, **levers).checked()


def test_checkpointing_a_model_without_blocks_is_refused():
    class Flat(nn.Module):  # parameters, no submodules: nothing to checkpoint block by block
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(784, 1))

    class Named:
        name, blocks = "flat", ()

    assert blocks_of(Named(), Flat()) == []
    with pytest.raises(RequestError, match="flat has no blocks to checkpoint"):
        check_levers("fp32", ("D",), 1, False, device="cpu", batch_size=8, mode=get_mode("lsgan"),
                     models={"D": (Named(), Flat())})


def test_checkpointing_a_generator_a_mode_lacks_is_refused():
    with pytest.raises(RequestError, match="mode gon has no generator"):
        StepSpec(arch="gon-mnist-mlp", mode="gon", checkpoint="G").checked()


def test_channels_last_without_convolutions_is_refused():
    with pytest.raises(RequestError, match="mlp-gan has no 2-d convolution"):
        StepSpec(arch="mlp-gan", channels_last=True).checked()


def test_micro_batches_in_a_mode_that_cannot_split_is_refused():
    with pytest.raises(RequestError, match="mode gon cannot run micro-batches"):
        StepSpec(arch="gon-mnist-mlp", mode="gon", batch_size=8, micro_batches=2).checked()


def test_fit_refuses_micro_batches():
    with pytest.raises(RequestError, match="does not apply to fit"):
        api.fit("inception-k8", memory="1GiB", estimate=True, micro_batches=2)


def test_the_cli_refuses_a_bad_precision_in_one_line_with_exit_2():
    res = CliRunner().invoke(app, ["profile", "--arch", "inception-k8", "--precision", "fp8"])
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and "--precision" in res.output


def test_checked_is_idempotent_and_normalises_the_checkpoint():
    spec = StepSpec(**SMALL, checkpoint="G,D", precision="bf16").checked()
    assert spec.checkpoint == ("D", "G")
    assert spec.checked() == spec
    assert StepSpec.from_dict(spec.to_dict()).checked() == spec
    assert parse_checkpoint(["G"]) == ("G",) and parse_checkpoint(None) == ()
    assert lever_label(spec.levers) == "bf16, checkpoint D,G"


# -- micro-batches: the same gradient as the whole batch -------------------------------------------

def test_micro_slices_cover_the_batch_in_order():
    assert list(micro_slices(16, 4)) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    assert list(micro_slices(10, 1)) == [(0, 10)]


@pytest.mark.parametrize("mean", [True, False])
def test_accumulated_slices_give_the_whole_batch_gradient_and_loss(mean):
    torch.manual_seed(0)
    x = torch.randn(12, 3)
    model = nn.Linear(3, 1)

    def grads(k: int):
        step = GANStep.__new__(GANStep)  # only accumulate's attributes
        step.micro_batches, step.grad_scaling = k, False
        m = nn.Linear(3, 1)
        m.load_state_dict(model.state_dict())
        opt = torch.optim.SGD(m.parameters(), lr=0.0)  # lr 0: the step leaves the gradient to compare

        def loss_of(lo: int, hi: int) -> torch.Tensor:
            out = m(x[lo:hi]).square()
            return out.mean() if mean else out.sum()

        loss = step.accumulate(opt, loss_of, 12, mean)
        return loss, m.weight.grad.clone()

    whole, sliced = grads(1), grads(4)
    assert torch.allclose(whole[0], sliced[0], rtol=1e-6)
    assert torch.allclose(whole[1], sliced[1], rtol=1e-6)


# -- each lever measured on a small step, and estimated --------------------------------------------

@pytest.fixture(scope="module")
def baseline():
    torch.set_num_threads(1)
    return _profile()


def test_bf16_runs_in_bf16_says_so_and_is_estimated(baseline):
    rec = _profile(precision="bf16")
    assert rec.status == "ok"
    assert rec.extra["levers"]["precision"] == "bf16"
    assert rec.flops.flops_by_dtype.get("bfloat16", 0) > 0.9 * rec.flops.flops_per_step
    assert baseline.flops.flops_by_dtype == {"float32": baseline.flops.flops_per_step}
    assert any("precision bf16" in n for n in rec.extra["notes"])
    assert _close(rec.live_memory.peak_live_bytes, _estimate(precision="bf16").peak_live_bytes)


def test_checkpoint_recomputes_forwards_and_is_estimated(baseline):
    rec = _profile(checkpoint="D")
    assert rec.status == "ok"
    assert rec.flops.flops_per_step > baseline.flops.flops_per_step
    assert rec.flops.forward_flops == baseline.flops.forward_flops  # the recomputations run in the backward
    assert _close(rec.live_memory.peak_live_bytes, _estimate(checkpoint="D").peak_live_bytes)


def test_micro_batches_keep_the_flops_and_are_estimated(baseline):
    rec = _profile(micro_batches=4)
    assert rec.status == "ok"
    assert abs(rec.flops.flops_per_step - baseline.flops.flops_per_step) <= 0.01 * baseline.flops.flops_per_step
    assert rec.live_memory.peak_live_activation_bytes < baseline.live_memory.peak_live_activation_bytes
    assert _close(rec.live_memory.peak_live_bytes, _estimate(micro_batches=4).peak_live_bytes)


def test_channels_last_runs_and_is_estimated(baseline):
    rec = _profile(channels_last=True)
    assert rec.status == "ok"
    assert rec.flops.flops_per_step == baseline.flops.flops_per_step
    assert _close(rec.live_memory.peak_live_bytes, _estimate(channels_last=True).peak_live_bytes)


def test_micro_batches_lower_a_batch_dominated_peak():
    """mlp-gan under gan at batch 256: activations dominate, so four slices cut the peak."""
    spec = StepSpec(arch="mlp-gan", mode="gan", batch_size=256)
    base = api.profile(spec, warmup=2, steps=1)
    four = api.profile(spec.replace(micro_batches=4), warmup=2, steps=1)
    assert four.live_memory.peak_live_activation_bytes < 0.5 * base.live_memory.peak_live_activation_bytes
    assert abs(four.flops.flops_per_step - base.flops.flops_per_step) <= 0.01 * base.flops.flops_per_step


@pytest.mark.parametrize("arch, mode, extra", [
    ("inception-k8", "wgan-gp", {}),  # the gradient penalty: a double backward through checkpointed blocks
    ("gon-mnist-mlp", "gon", {"hparams": {"inner_steps": 2}}),  # input gradients through checkpointed blocks
    ("dcd-mnist-sn", "dcd", {}),  # Langevin input gradients
])
def test_double_backward_through_checkpointed_blocks_runs(arch, mode, extra):
    rec = api.profile(StepSpec(arch=arch, mode=mode, batch_size=4, checkpoint="D", **extra), warmup=1, steps=1)
    assert rec.status == "ok", rec.message
    est, _ = api.estimate(StepSpec(arch=arch, mode=mode, batch_size=4, checkpoint="D", **extra), measure=False)
    assert est.peak_live_bytes > 0


# -- the lever table --------------------------------------------------------------------------------

def test_lever_table_rows_save_load_and_render(tmp_path):
    rec = api.levers(StepSpec(arch="inception-k8", mode="lsgan", batch_size=8), warmup=2, steps=1)
    labels = [r.label for r in rec.rows]
    assert labels[:6] == ["baseline", "bf16", "checkpoint D", "checkpoint G", "4 micro-batches", "channels-last"]
    base = rec.row("baseline")
    assert base.saving_fraction == 0.0 and base.time_ratio == 1.0
    for r in rec.rows[1:]:
        assert r.saving_fraction == pytest.approx(1 - r.tensor_peak_bytes / base.tensor_peak_bytes)
        assert r.time_ratio == pytest.approx(r.step_time_s / base.step_time_s)
    assert "quality may change" in rec.row("bf16").note
    path = tmp_path / "levers.json"
    save_records([rec], path)
    (back,) = load_records(path)
    assert isinstance(back, LeverRecord) and back == rec
    md = to_markdown(lever_blocks(back))
    assert "| lever |" in md and "| bf16 |" in md


# -- compare rows and fit -----------------------------------------------------------------------------

def test_compare_takes_levers_per_row():
    hp, levers = split_levers({"lsgan.precision": "bf16", "lr": 1e-3, "micro_batches": 2}, ["lsgan", "gan"])
    assert hp == {"lr": 1e-3}
    assert levers == {"lsgan": {"precision": "bf16", "micro_batches": 2}, "gan": {"micro_batches": 2}}
    specs = plan(["lsgan", "gan"], steps=1, hparams={"lsgan.precision": "bf16"})
    by_mode = {s.mode: s for s in specs}
    assert by_mode["lsgan"].step.precision == "bf16" and by_mode["lsgan"].variant == "bf16"
    assert by_mode["gan"].step.precision == "fp32" and by_mode["gan"].variant is None


def test_a_preset_row_that_sets_a_lever_is_named_by_it():
    """gon-bf16's rows differ only by the precision a row sets itself: the labels tell them apart."""
    specs = plan([], preset="gon-bf16", steps=1)
    assert [(s.step.precision, s.variant) for s in specs] == [("fp32", "fp32"), ("bf16", "bf16")]
    assert [s.step.hparams for s in specs] == [{}, {}]
    with pytest.raises(IncompatibleError, match="--precision: preset gon-bf16 sets it per row"):
        plan([], preset="gon-bf16", steps=1, precision="bf16")  # would run the fp32 row in bf16
    with pytest.raises(IncompatibleError, match="--precision: preset gon-bf16 sets it per row"):
        plan([], preset="gon-bf16", steps=1, hparams={"gon.precision": "bf16"})


def test_fit_finds_a_larger_batch_under_bf16():
    plain = api.fit("inception-k8", "lsgan", memory="64MiB", estimate=True, max_batch=4096)
    bf16 = api.fit("inception-k8", "lsgan", memory="64MiB", estimate=True, max_batch=4096, precision="bf16")
    assert bf16.levers["precision"] == "bf16"
    assert bf16.batch_size > plain.batch_size


def test_loss_scaling_path_updates_like_an_unscaled_step():
    """fp16's GradScaler path (CUDA's; run here with the CPU's GradScaler on a float32 step): the scaled
    backward and the unscaling step give the same weights as the plain update, to float32 rounding."""
    spec = StepSpec(arch="inception-k8", mode="lsgan", batch_size=4, hparams={"g_steps": 1})
    real = torch.rand(4, 1, 28, 28) * 2 - 1
    after = []
    for scaled in (False, True):
        step = spec.build()
        step.grad_scaling = scaled
        torch.manual_seed(1)
        step.step(real)
        after.append(torch.cat([p.detach().flatten() for p in step.D.parameters()]))
        if scaled:
            scaler = step._scalers[id(step.optimizers["D"])]
            assert scaler.get_scale() == 65536.0  # the default initial scale, kept: no overflow
    assert torch.allclose(after[0], after[1], rtol=1e-4, atol=1e-6)


def test_zoo_blocks_are_declared_and_exist():
    from gonprof.arch import get_arch

    for name, first in (("inception-k32", "features.0"), ("depthwise-inception-dense", "features.12"),
                        ("improved-gan-mlp", "hidden.0")):
        spec = get_arch(name)
        names = [n for n, _ in blocks_of(spec, spec.build())]
        assert first in names and names == list(spec.blocks)


def test_bf16_reaches_the_parts_a_mode_calls_itself_and_recomputes_under_it():
    """improved-gan's feature matching calls D.features, not D's forward: its blocks run under autocast too
    (every FLOP in bf16), and a checkpointed block recomputes under the same policy (its estimate runs)."""
    spec = StepSpec(arch="improved-gan-mlp", batch_size=8, precision="bf16", checkpoint="D")
    rec = api.profile(spec, warmup=2, steps=1)
    assert rec.status == "ok", rec.message
    assert set(rec.flops.flops_by_dtype) == {"bfloat16"}
    est, _ = api.estimate(spec, measure=False)
    assert _close(rec.live_memory.peak_live_bytes, est.peak_live_bytes)


def test_levers_with_a_lever_of_its_own_is_one_line_and_exit_2():
    res = CliRunner().invoke(app, ["profile", "--arch", "inception-k8", "--levers", "--precision", "bf16"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == ("gonprof: error: --levers profiles the baseline and each lever itself; "
                                  "drop --precision")
