"""GON's inner optimisers on the input, its batched sampler, and the compare/record plumbing
that the one-digit GON study needs (scoped --set, threads and load recorded)."""

from __future__ import annotations

import math

import pytest
import torch

from gonprof.comparison import PRESETS, plan, scope_hparams
from gonprof.modes import IncompatibleError
from gonprof.modes.build import build_step
from gonprof.modes.gon import GONStep
from gonprof.records import Environment, host_load

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_sgd_step_is_x_minus_lr_g_clamped():
    x = torch.tensor([[0.0, 0.5, 0.99]]).view(1, 1, 1, 3)
    g = torch.tensor([[1.0, -2.0, -1.0]]).view(1, 1, 1, 3)
    out = GONStep._plain_update(x, g, "sgd", 0.1, 0.0)
    assert out.flatten().tolist() == pytest.approx([-0.1, 0.7, 1.0])  # 0.99 + 0.1 clamps to 1
    assert x.flatten().tolist() == pytest.approx([0.0, 0.5, 0.99])  # x itself untouched


def test_normalized_step_moves_each_sample_by_lr_in_rms():
    # sample 0: g = (3, 4) -> rms = 5 / sqrt(2); step = lr * g / rms
    # sample 1: g 1000x larger, same direction -> the same step
    x = torch.zeros(2, 1, 1, 2)
    g = torch.tensor([[3.0, 4.0], [3000.0, 4000.0]]).view(2, 1, 1, 2)
    out = GONStep._plain_update(x, g, "normalized", 0.1, 0.0)
    want = [-0.1 * 3 / (5 / math.sqrt(2)), -0.1 * 4 / (5 / math.sqrt(2))]
    assert out[0].flatten().tolist() == pytest.approx(want)
    assert out[1].flatten().tolist() == pytest.approx(want)
    assert out.pow(2).mean().sqrt().item() == pytest.approx(0.1)


def test_langevin_adds_noise_of_the_given_sigma():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    g = torch.zeros_like(x)  # no gradient: only the noise moves x (the norm is floored, so no division by 0)
    out = GONStep._plain_update(x, g, "langevin", 0.1, 0.05)
    assert out.std().item() == pytest.approx(0.05, rel=0.02)


@pytest.mark.parametrize("rule", ["adam", "sgd", "normalized", "langevin"])
def test_every_inner_optimiser_raises_realness(rule):
    lr = {"sgd": 50.0}.get(rule, 0.02)
    step = build_step("gon", "gon-mnist-mlp", seed=0, inner_steps=25, inner_opt=rule, inner_lr=lr)
    torch.manual_seed(5)
    x0 = step.noise(8)
    r0 = step.realness(x0)
    x = step.optimise(x0)
    assert x.min() >= -1 and x.max() <= 1
    assert step.realness(x).mean() > r0.mean() + 1e-3


def test_unknown_inner_optimiser_and_seed_path_refusal():
    with pytest.raises(IncompatibleError, match="inner_opt='rmsprop': expected one of adam, sgd, normalized"):
        build_step("gon", "gon-mnist-mlp", seed=0, inner_steps=2, inner_opt="rmsprop")
    with pytest.raises(IncompatibleError, match="batched path"):
        build_step("gon", "gon-mnist-mlp", preset="seed", seed=0, inner_opt="sgd")


def test_sample_uses_the_batched_sampler_even_under_the_seed_preset(monkeypatch):
    step = build_step("gon", "gon-mnist-mlp", preset="seed", seed=0, inner_steps=2)
    seen = []
    real = GONStep.optimise

    def spy(self, x0, batched=None):
        seen.append((x0.shape[0], batched))
        return real(self, x0, batched)

    monkeypatch.setattr(GONStep, "optimise", spy)
    out = step.sample(5)
    assert out.shape == (5, 1, 28, 28) and seen == [(5, True)]


def test_scoped_set_goes_to_its_mode_and_unscoped_to_every_mode_that_has_it():
    got = scope_hparams({"gon.lr": 1e-4, "lr": 2e-4, "inner_steps": 3}, ["gon", "lsgan"])
    assert got["gon"] == {"lr": 1e-4, "inner_steps": 3}  # the scoped value wins for gon
    assert got["lsgan"] == {"lr": 2e-4}
    specs = plan(["gon", "lsgan"], steps=1, hparams={"gon.lr": 1e-4})
    assert [s.step.hparams for s in specs] == [{"lr": 1e-4}, {}]


@pytest.mark.parametrize("hparams, message", [
    ({"gon.nope": 1}, "mode gon has no hyper-parameter 'nope'"),
    ({"gan.lr": 1}, "no 'gan' row"),
    ({"nope": 1}, "none of gon, lsgan has"),
])
def test_scoped_set_errors(hparams, message):
    with pytest.raises(IncompatibleError, match=message):
        plan(["gon", "lsgan"], steps=1, hparams=hparams)


def test_presets_carry_their_selection_and_variants():
    specs = plan([], preset="gon-inner")
    assert [s.variant for s in specs] == ["adam", "normalized", "langevin", "sgd"]
    assert all(s.step.classes == (0,) and s.mode == "gon" for s in specs)
    assert [s.step.hparams.get("inner_opt") for s in specs] == ["adam", "normalized", "langevin", "sgd"]
    digit = plan([], preset="gon-digit")
    assert {s.mode for s in digit} >= {"gon", "gan", "lsgan"} and all(s.step.classes == (0,) for s in digit)
    assert {s.time_budget_s for s in digit} == {PRESETS["gon-digit"]["time_budget_s"]}
    # explicit settings win over the preset's
    assert {s.steps for s in plan([], preset="gon-digit", steps=2)} == {2}
    assert {tuple(s.step.classes) for s in plan([], preset="gon-digit", classes=[3])} == {(3,)}


def test_environment_records_threads_and_load():
    torch.set_num_threads(1)
    env = Environment.capture("cpu")
    assert env.torch_threads == 1
    load = host_load()
    assert load["cpu_count"] >= 1
    if load["load_average_1m"] is not None:
        assert env.load_average_1m is not None and env.load_average_1m >= 0
        assert load["overloaded"] == (load["load_average_1m"] > load["cpu_count"])
        assert ("warning" in load) == load["overloaded"]


def test_host_load_warns_when_the_load_exceeds_the_cores(monkeypatch):
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 4.0, 3.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    load = host_load()
    assert load["overloaded"] and load["load_average_1m"] == 5.0
    assert "load average 5 exceeds this machine's 2 cores" in load["warning"]
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert not host_load()["overloaded"]
