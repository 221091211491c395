"""Training modes: every mode with every compatible registered discriminator, GON's and
DCD's samplers, the fast and seed GON paths, build_step's errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gonprof.arch import get_arch, list_archs
from gonprof.data import synthetic
from gonprof.modes import IncompatibleError, get_mode, list_modes
from gonprof.modes.build import FALLBACK_GENERATORS, build_step
from gonprof.registry import RegistryError

MODES = ["gon", "gan", "lsgan", "wgan-gp", "improved-gan", "dcd"]
DISCRIMINATORS = [s.name for s in list_archs(role="discriminator")]
# Small settings so that the whole grid runs in seconds.
SMALL = {
    "gon": {"inner_steps": 3},
    "gan": {},
    "lsgan": {"g_steps": 1},
    "wgan-gp": {"d_steps": 1},
    "improved-gan": {"labels": 4},
    "dcd": {"langevin_steps": 2, "d_steps": 1},
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data():
    return synthetic(64, seed=3)


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    return msg


def test_all_six_modes_registered_with_their_contract():
    names = {m.name for m in list_modes()}
    assert set(MODES) <= names
    for name in MODES:
        spec = get_mode(name)
        assert spec.phases and spec.outputs and spec.defaults and spec.source and spec.notes
        assert isinstance(spec.needs_generator, bool)
        for preset in spec.presets:
            spec.hparams(preset)  # every preset names real hyper-parameters
    assert get_mode("gon").phases == ("sample", "d_step")  # the same phase names as the GAN modes
    assert get_mode("dcd").phases == ("sample", "d_step", "g_step")
    for name in ("gan", "lsgan", "wgan-gp", "improved-gan"):
        assert get_mode(name).phases == ("d_step", "g_step")
    assert not get_mode("gon").needs_generator
    assert all(get_mode(m).needs_generator for m in MODES if m != "gon")
    assert set(FALLBACK_GENERATORS) == set(MODES) - {"gon"}


def test_seed_defaults():
    gon = get_mode("gon").defaults
    assert gon["buffer"] == 10 and gon["early_stop"] == 30
    seed = get_mode("gon").hparams("seed")
    assert (seed["batched"], seed["lr"], seed["inner_opt"], seed["batch_size"]) == (False, 5e-6, "adam", 10)
    assert (seed["inner_lr"], seed["inner_t_max"], seed["inner_steps"], seed["init"]) == (0.02, 50, 1000, "noise")
    # the fast path's defaults depart from the seed where it does not generate (the mode's notes say why):
    # persistent chains, short inner loops (the gon-chains study)
    assert (gon["lr"], gon["inner_opt"], gon["init"], gon["inner_steps"]) == (1e-4, "normalized", "buffer", 20)
    assert any("1 D update per step" in n for n in get_mode("gon").notes)
    lsgan = get_mode("lsgan").defaults
    assert (lsgan["lr"], lsgan["d_steps"], lsgan["g_steps"], lsgan["batch_size"]) == (1e-3, 1, 4, 32)
    wg = get_mode("wgan-gp")
    assert (wg.defaults["gp_weight"], wg.defaults["d_steps"], wg.defaults["betas"]) == (10.0, 5, (0.5, 0.9))
    assert wg.hparams("beta0")["betas"] == (0.0, 0.9)
    ig = get_mode("improved-gan").defaults
    assert (ig["lr"], ig["betas"], ig["batch_size"]) == (0.003, (0.5, 0.999), 100)
    dcd = get_mode("dcd").defaults
    assert (dcd["langevin_steps"], dcd["step_size"], dcd["noise"], dcd["grad_clip"], dcd["d_steps"]) == \
        (20, 1.0, 0.005, 1.0, 5)
    assert dcd["betas"] == (0.0, 0.9) and dcd["lr"] == 2e-4


def _pairs(compatible: bool) -> list:
    out = []
    for mode in MODES:
        for d_spec in list_archs(role="discriminator"):
            if get_mode(mode).accepts(d_spec.output) == compatible:
                out.append(pytest.param(mode, d_spec.name, id=f"{mode}-{d_spec.name}"))
    return out


@pytest.mark.parametrize("mode, arch", _pairs(compatible=False))
def test_mode_refuses_a_discriminator_it_cannot_train(mode, arch):
    spec, d_spec = get_mode(mode), next(s for s in list_archs(role="discriminator") if s.name == arch)
    with pytest.raises(IncompatibleError) as err:
        build_step(mode, arch, **SMALL[mode])
    msg = one_line(err.value)
    assert d_spec.output in msg and " or ".join(spec.outputs) in msg


@pytest.mark.parametrize("mode, arch", _pairs(compatible=True))
def test_mode_trains_discriminator(mode, arch, data):
    spec = get_mode(mode)
    step = build_step(mode, arch, seed=1, **SMALL[mode])
    assert step.mode == mode and step.phases == spec.phases
    D = step.models["D"]
    before = [p.detach().clone() for p in D.parameters() if p.requires_grad]
    seen: list[str] = []

    def phase(name):
        seen.append(name)
        return torch.autograd.profiler.record_function(name)

    n = 2
    for i in range(2):
        x, y = data.images[i * n:(i + 1) * n], data.labels[i * n:(i + 1) * n]
        losses = step.step(x, y, phase=phase)
        assert losses, "a step returns its losses"
        for k, v in losses.items():
            assert torch.is_tensor(v) and v.dim() == 0 and not v.requires_grad, k
            assert math.isfinite(float(v)), f"{k} = {float(v)}"
    assert set(seen) == set(spec.phases)
    after = [p.detach() for p in D.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "D's parameters did not change"
    sample = step.sample(3)
    assert sample.shape == (3, *get_arch(arch).input_shape)
    assert torch.isfinite(sample).all() and sample.min() >= -1 and sample.max() <= 1


def test_gon_inner_loop_raises_realness():
    for arch in ("gon-mnist-mlp", "mlp-gan"):  # a logits[2] and a score discriminator
        step = build_step("gon", arch, seed=0, inner_steps=25)
        torch.manual_seed(5)
        x0 = step.noise(8)
        r0 = step.realness(x0)
        x = step.optimise(x0)
        r1 = step.realness(x)
        assert x.min() >= -1 and x.max() <= 1
        assert r1.mean() > r0.mean() + 1e-3, (arch, r0.mean().item(), r1.mean().item())


def _fast_vs_seed(arch, **hp):
    step = build_step("gon", arch, seed=0, inner_opt="adam", **hp)  # the seed's optimiser on the input
    torch.manual_seed(7)
    x0 = step.noise(1)
    fast = step.optimise(x0, batched=True)
    it_fast = step.last_iters
    step.last_iters = 0
    grads_before = [p.grad for p in step.models["D"].parameters()]
    seed = step.optimise(x0, batched=False)
    it_seed = step.last_iters
    assert all(g is None for g in grads_before)
    assert all(p.grad is None for p in step.models["D"].parameters()), "seed path leaves D's grads zeroed"
    return fast, seed, it_fast, it_seed


def test_gon_fast_and_seed_paths_agree_for_batch_one():
    fast, seed, it_fast, it_seed = _fast_vs_seed("gon-mnist-mlp", inner_steps=60)
    assert it_fast == it_seed == 60
    assert (fast - seed).abs().max() < 1e-4
    # the conv discriminator, run channels_last on the fast path
    fast, seed, it_fast, it_seed = _fast_vs_seed("gon-mnist-conv", inner_steps=6)
    assert it_fast == it_seed == 6
    assert (fast - seed).abs().max() < 1e-4


def test_gon_early_stop_same_in_both_paths():
    # a loose threshold makes the source's criterion fire early; both paths must stop at the same iteration
    fast, seed, it_fast, it_seed = _fast_vs_seed("gon-mnist-mlp", inner_steps=200, early_stop_eps=0.05,
                                                 early_stop=2)
    assert it_fast == it_seed < 200
    assert (fast - seed).abs().max() < 1e-4


def test_gon_batched_early_stop_is_per_sample():
    step = build_step("gon", "gon-mnist-mlp", seed=0, inner_steps=200, early_stop_eps=0.05, early_stop=2)
    torch.manual_seed(11)
    x0 = step.noise(3)
    batch = step.optimise(x0, batched=True)
    singles = torch.cat([step.optimise(x0[i:i + 1], batched=True) for i in range(3)])
    assert (batch - singles).abs().max() < 1e-4


def test_gon_seed_preset_and_buffer_state(data):
    step = build_step("gon", "gon-mnist-mlp", preset="seed", seed=0, inner_steps=3)
    assert step.hparams["batched"] is False and step.hparams["update_batch"] == 1
    real = data.images[:10]
    first = step.step(real)
    assert "sample_loss" not in first  # the first step uses noise negatives, as the source's first epoch
    assert step.buffer.shape[0] == 10
    old = step.buffer.clone()
    step.step(real)
    assert step.buffer.shape[0] == 10 and torch.equal(step.buffer[:9], old[1:])  # FIFO: one new fake
    # resuming from state_dict continues exactly
    state = copy.deepcopy(step.state_dict())  # state_dict() holds live tensors
    rng = torch.get_rng_state()
    a = step.step(real)
    other = build_step("gon", "gon-mnist-mlp", preset="seed", seed=99, inner_steps=3)
    other.load_state_dict(state)
    torch.set_rng_state(rng)
    b = other.step(real)
    assert {k: float(v) for k, v in a.items()} == {k: float(v) for k, v in b.items()}
    assert torch.equal(step.buffer, other.buffer)


def test_dcd_langevin_raises_critic_score():
    for space in ("pixel", "latent"):
        step = build_step("dcd", "dcd-mnist-sn", seed=0, langevin=space, langevin_steps=5)
        torch.manual_seed(3)
        z = step.latent(16)
        with torch.no_grad():
            x0 = step.G(z)
            s0 = step.score(x0).mean()
        torch.manual_seed(4)
        x = step.langevin_pixel(x0) if space == "pixel" else step.langevin_latent(z)
        with torch.no_grad():
            s1 = step.score(x).mean()
        assert x.min() >= -1 and x.max() <= 1
        assert s1 > s0, (space, float(s0), float(s1))


def test_steps_are_reproducible(data):
    for mode, arch in (("lsgan", "inception-k8"), ("improved-gan", "improved-gan-mlp")):
        runs = []
        for _ in range(2):
            step = build_step(mode, arch, seed=4, **SMALL[mode])
            torch.manual_seed(4)
            runs.append([{k: float(v) for k, v in step.step(data.images[:4], data.labels[:4]).items()}
                         for _ in range(2)])
        assert runs[0] == runs[1]


def test_improved_gan_labelled_and_test_error(data):
    step = build_step("improved-gan", "improved-gan-mlp", seed=0, labels=20)
    x, y = data.images[:20], data.labels[:20]
    step.set_labelled(x, y)
    losses = step.step(data.images[20:24], data.labels[20:24])
    assert "d_loss_labelled" in losses
    err = step.test_error(data.images[:50], data.labels[:50])
    assert 0.0 <= err <= 1.0
    with pytest.raises(IncompatibleError) as e:
        build_step("improved-gan", "gon-mnist-mlp", labels=4).set_labelled(x, y)
    one_line(e.value)
    unsup = build_step("improved-gan", "improved-gan-mlp", preset="unsupervised")
    assert "d_loss_labelled" not in unsup.step(data.images[:4], data.labels[:4])
    # without set_labelled the step collects a balanced labelled set from the batches it sees
    collect = build_step("improved-gan", "improved-gan-mlp", labels=10)
    for i in range(0, 64, 8):
        collect.step(data.images[i:i + 8], data.labels[i:i + 8])
    counts = torch.bincount(collect.labelled_y, minlength=10)
    assert len(collect.labelled_y) <= 10 and counts.max() <= 1


def test_generator_choice_and_notes():
    step = build_step("lsgan", "inception-k8")
    assert step.generator == "gas-generator" and "default of inception-k8" in step.notes[0]
    step = build_step("lsgan", "gon-mnist-mlp")  # no generator of that family: the mode's fallback
    assert step.generator == FALLBACK_GENERATORS["lsgan"]
    assert "falls back" in step.notes[0]
    step = build_step("gan", "inception-k8", generator="mlp-gan-generator")
    assert step.generator == "mlp-gan-generator"
    assert build_step("improved-gan", "improved-gan-mlp").G_spec.latent == "uniform"


@pytest.mark.parametrize("call", [
    lambda: build_step("nope", "mlp-gan"),
    lambda: build_step("lsgn", "mlp-gan"),
    lambda: build_step("gan", "no-such-arch"),
    lambda: build_step("gan", "improved-gan-mlp"),
    lambda: build_step("gon", "improved-gan-mlp"),
    lambda: build_step("improved-gan", "mlp-gan"),
    lambda: build_step("gan", "mlp-gan-generator"),
    lambda: build_step("gan", "mlp-gan", generator="mlp-gan"),
    lambda: build_step("gon", "gon-mnist-mlp", generator="mlp-gan-generator"),
    lambda: build_step("gan", "mlp-gan", no_such_hparam=1),
    lambda: build_step("gan", "mlp-gan", preset="nope"),
    lambda: build_step("dcd", "dcd-mnist-sn", langevin="sideways"),
])
def test_build_step_errors_are_one_line(call):
    with pytest.raises((IncompatibleError, RegistryError)) as err:
        call()
    one_line(err.value)


def test_incompatible_message_names_accepted_kinds():
    with pytest.raises(IncompatibleError, match=r"accepts score or logits\[2\]"):
        build_step("lsgan", "improved-gan-mlp")
    with pytest.raises(IncompatibleError, match=r"accepts logits\[\*\]"):
        build_step("improved-gan", "mlp-gan")


# -- exact-identity activations (GON's fast path skips them) --------------------------------

def _net_with_identities(inplace_after=False):
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(1.0), nn.Conv2d(4, 2, 3, padding=1),
                         nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(2 * 6 * 6, 3), nn.LeakyReLU(negative_slope=1.0),
                         nn.ReLU(inplace=inplace_after), nn.Linear(3, 2))


def test_identity_ops_skipped_swaps_only_exact_identities_and_restores_them():
    from torch import nn

    from gonprof.modes._common import identity_ops, identity_ops_skipped, identity_skip_check

    torch.manual_seed(0)
    net = _net_with_identities()
    targets = identity_ops(net)
    assert [(name, type(child).__name__) for _, name, child in targets] == [("1", "LeakyReLU"), ("6", "LeakyReLU")]
    originals = [net[1], net[6]]
    x = torch.randn(5, 1, 6, 6, requires_grad=True)
    (g_net,) = torch.autograd.grad(net(x).square().sum(), x)
    with identity_ops_skipped(targets):
        assert isinstance(net[1], nn.Identity) and isinstance(net[6], nn.Identity)
        assert isinstance(net[3], nn.LeakyReLU)  # slope 0.2 is a real activation
        out = net(x)
        (g_skip,) = torch.autograd.grad(out.square().sum(), x)
    assert [net[1], net[6]] == originals  # the same module objects are back
    assert torch.equal(net(x), out) and torch.equal(g_net, g_skip)  # to the bit
    assert identity_skip_check(net, targets, x[:2]) == ""
    # an in-place layer after a skipped activation would write into its input: refused
    risky = _net_with_identities(inplace_after=True)
    assert "in-place layers (ReLU)" in identity_skip_check(risky, identity_ops(risky), x[:2])
    # nothing to skip
    assert identity_ops(nn.Sequential(nn.Linear(3, 3), nn.Tanh())) == []


def test_identity_skip_check_catches_a_forward_that_reuses_the_activation_in_place():
    from torch import nn

    from gonprof.modes._common import identity_ops, identity_skip_check

    class Reuses(nn.Module):  # a plugin-style forward: in-place tensor maths no layer flag reveals
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.LeakyReLU(1.0)

        def forward(self, x):
            h = self.act(x)
            h.add_(1.0)  # with the activation skipped, this writes into x itself
            return self.fc(h) + x

    m = Reuses()
    why = identity_skip_check(m, identity_ops(m), torch.randn(2, 4))
    assert why.startswith("a probe with them skipped")


def test_skipping_identities_frees_their_saved_tensors_exactly():
    # Without the skip each LeakyReLU(1.0) keeps its input (the conv/linear output) for backward, and the
    # next layer keeps the LeakyReLU's output: two tensors where the skip keeps one.  Held after a forward
    # of gon-mnist-conv at batch B (float32, contiguous): the 9 pre-activation outputs,
    # B * 4 * (784 * (128 + 64 + 32 + 16 + 16 + 16) + 1024 + 256 + 128) = B * 4 * 214,656 = B * 858,624 bytes.
    from gonprof.arch import get_arch
    from gonprof.measure.memory import track_live_bytes
    from gonprof.modes._common import frozen, identity_ops, identity_ops_skipped

    D = get_arch("gon-mnist-conv").build(None).eval()
    targets = identity_ops(D)
    assert len(targets) == 9
    B = 2
    x = torch.rand(B, 1, 28, 28)

    def held_after_forward():
        keep = []

        def fwd():
            xg = x.clone().requires_grad_(True)
            keep.append(D(xg))  # the graph, and every tensor it saved, stays alive to the end

        with frozen(D):
            return track_live_bytes(fwd).end_live_bytes

    kept = held_after_forward()
    with identity_ops_skipped(targets):
        skipped = held_after_forward()
    assert kept - skipped == B * 858_624


def test_gon_fast_path_skips_identities_with_the_same_bits_and_keeps_flops_on_d():
    from torch import nn

    from gonprof.measure.flops import FlopCounter

    kept = build_step("gon", "gon-mnist-conv", seed=0, inner_steps=3, skip_identity=False)
    skip = build_step("gon", "gon-mnist-conv", seed=0, inner_steps=3)
    assert skip.hparams["skip_identity"] is True
    assert get_mode("gon").hparams("seed")["skip_identity"] is False
    torch.manual_seed(3)
    x0 = skip.noise(4)
    with FlopCounter({"D": skip.D}) as fc:
        a = skip.optimise(x0)
    assert torch.equal(a, kept.optimise(x0))
    assert torch.equal(skip.last_loss, kept.last_loss)
    assert len(skip.skipped_identities(x0)) == 9 and kept.skipped_identities(x0) == []
    assert any("skips D's 9 exact-identity" in n for n in skip.notes)
    # D is whole again after sampling, in its usual memory format, and its FLOPs stayed its own
    assert sum(isinstance(m, nn.LeakyReLU) for m in skip.D.modules()) == 9
    assert all(p.is_contiguous() for p in skip.D.parameters())
    figures = fc.figures()
    assert figures.flops_per_step > 0 and figures.flops_outside_modules == 0


def test_gon_keeps_identities_when_d_has_in_place_layers():
    from torch import nn

    from gonprof.modes.gon import GONStep

    torch.manual_seed(0)
    D = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(1.0), nn.ReLU(inplace=True), nn.Linear(8, 1))
    step = GONStep(D, None, get_mode("gon").hparams(inner_steps=2), "cpu")
    step.input_shape = (1, 4, 4)
    step.optimise(step.noise(3))
    assert step.skipped_identities(step.noise(2)) == []
    assert any("identity activations kept: in-place layers (ReLU)" in n for n in step.notes)


def test_one_name_for_the_discriminator_updates_and_the_old_name_an_alias():
    from gonprof.modes.base import IncompatibleError

    for mode in ("gan", "lsgan", "wgan-gp", "dcd"):
        assert "d_steps" in get_mode(mode).defaults and "n_critic" not in get_mode(mode).defaults
    assert get_mode("wgan-gp").hparams(n_critic=3)["d_steps"] == 3  # WGAN-GP's own name still works
    with pytest.raises(IncompatibleError, match="d_steps given twice"):
        get_mode("dcd").hparams(n_critic=3, d_steps=2)


@pytest.mark.parametrize("mode, setting", [("gan", "d_steps"), ("lsgan", "d_steps"), ("gan", "g_steps"),
                                           ("wgan-gp", "n_critic"), ("dcd", "d_steps")])
def test_a_zero_update_count_is_one_line_and_exit_2(mode, setting):
    from typer.testing import CliRunner

    from gonprof.cli import app

    res = CliRunner().invoke(app, ["profile", "--arch", "dcd-mnist-sn", "--mode", mode, "--estimate",
                                   "--set", f"{setting}=0"])
    assert res.exit_code == 2, res.output
    name = setting  # the message names the setting as given (n_critic is read as d_steps)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"hyper-parameter {name}=0" in lines[0], res.output
