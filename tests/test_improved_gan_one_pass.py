"""Improved-GAN's D step in one pass through D: the same losses and update as one pass per batch."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
from torch import nn

from gonprof.arch import get_arch
from gonprof.modes.improved_gan import ImprovedGANStep, make_improved_gan


def _step(D: nn.Module, name: str = "improved-gan-mlp", labels: int = 20) -> ImprovedGANStep:
    torch.manual_seed(0)
    G_spec = get_arch("improved-gan-generator")
    hp = {"batch_size": 8, "lr": 0.003, "betas": (0.5, 0.999), "labels": labels, "unlabel_weight": 1.0,
          "g_steps": 1}
    D_spec = SimpleNamespace(name=name, output_dim=10)
    return make_improved_gan(D, D_spec, G_spec.build(input_shape=(1, 28, 28)), G_spec, hp, "cpu")


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 1, 28, 28, generator=g) * 2 - 1, torch.arange(8) % 10


def test_one_pass_gives_the_losses_and_update_of_three_passes():
    """With D's noise layers off (D then draws no random numbers), both paths draw the same fakes and
    labelled batch, so the losses and D's and G's weights after the step agree to float rounding.  (Plain
    SGD here: Adam's first step moves each weight by about lr times the sign of its gradient, which float
    rounding can flip for a gradient near zero.)"""
    D = get_arch("improved-gan-mlp").build(input_shape=(1, 28, 28))
    D.input_noise = D.hidden_noise = 0.0
    step = _step(D)
    x, y = _batch()
    step.set_labelled(x, y)
    step.optimizers["D"] = torch.optim.SGD(step.D.parameters(), lr=0.1)
    step.optimizers["G"] = torch.optim.SGD(step.G.parameters(), lr=0.1)
    assert step.one_pass  # improved-gan-mlp has no batch statistics
    twin = copy.deepcopy(step)
    twin.one_pass = False
    before = copy.deepcopy(step.models)
    torch.manual_seed(5)
    a = step.step(x, y)
    torch.manual_seed(5)
    b = twin.step(x, y)
    assert a.keys() == b.keys() and {"d_loss_labelled", "d_loss_unlabelled", "train_acc", "g_loss"} <= set(a)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k
    for m in ("D", "G"):
        moved = 0
        for p0, p, q in zip(before[m].parameters(), step.models[m].parameters(), twin.models[m].parameters()):
            moved += not torch.equal(p0, p)
            assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
        assert moved  # the step updated the model: the comparison above is of two updates


def test_d_logits_of_one_pass_are_those_of_each_batch_alone():
    D = get_arch("improved-gan-mlp").build(input_shape=(1, 28, 28)).eval()  # eval: no noise
    step = _step(D)
    x, _ = _batch()
    parts = [x, x.flip(0), x[:3]]
    with torch.no_grad():
        one = step.d_logits(parts)
        step.one_pass = False
        each = step.d_logits(parts)
    assert one.shape == (19, 10) and torch.allclose(one, each, atol=1e-5)


def test_a_discriminator_with_batch_norm_runs_each_batch_alone():
    D = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    step = _step(D, name="bn-mlp")
    assert not step.one_pass
    x, y = _batch()
    losses = step.step(x, y)
    assert torch.isfinite(losses["d_loss"])
