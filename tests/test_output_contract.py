"""The output contract: each architecture's declared output (N x 1 score, N x K logits; a generator's N x C x H x W
images) checked by one forward of a batch of 2 where every command builds its step, and a model that returns
another shape refused in one line naming the shape it returned and the one its mode needs (exit 2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gonprof.arch import ARCHITECTURES, Source, register_arch
from gonprof.cli import app
from gonprof.modes.base import IncompatibleError
from gonprof.modes.build import PROBE_BATCH, build_step, check_outputs


class _Image(nn.Module):
    """Returns an image where a score belongs (N x 1 x 28 x 28)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class _Flat(nn.Module):
    """One score per image as a flat N vector."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 1)

    def forward(self, x):
        return self.lin(x.flatten(1)).squeeze(1)


class _SmallImages(nn.Module):
    """A generator whose images are 14 x 14 where the discriminator takes 28 x 28."""

    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 196)

    def forward(self, z):
        return torch.tanh(self.lin(z)).view(-1, 1, 14, 14)


@pytest.fixture
def plugins(monkeypatch):
    """Plugin-style architectures, registered for this test only."""
    ARCHITECTURES.load_plugins()  # the zoo first, so that the copy holds it
    monkeypatch.setattr(ARCHITECTURES, "_entries", dict(ARCHITECTURES._entries))

    def disc(name, output, build, params, **kw):
        register_arch(name, family="test", role="discriminator", source=Source("test"), expected_params=params,
                      output=output, default_mode="gan", **kw)(lambda input_shape=(1, 28, 28): build())

    disc("t-score-returns-ten", "score", lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), 7_850)
    disc("t-score-returns-image", "score", _Image, 10)
    disc("t-score-flat", "score", _Flat, 785)
    disc("t-logits-returns-one", "logits[10]", lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 1)), 785)
    register_arch("t-small-images", family="test", role="generator", source=Source("test"), expected_params=980,
                  output="image", latent_dim=4)(lambda input_shape=(1, 28, 28): _SmallImages())
    disc("t-disc-with-small-gen", "score", lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 1)), 785,
         default_generator="t-small-images")


@pytest.mark.parametrize("device", ["cpu", "meta"])  # meta: the estimator's build, where the forward is free
def test_a_score_discriminator_returning_ten_scores_or_an_image_is_refused(plugins, device):
    with pytest.raises(IncompatibleError) as caught:
        build_step("gan", "t-score-returns-ten", device=device)
    assert str(caught.value) == ("t-score-returns-ten returned 2 x 10 for a batch of 2 images; mode gan needs "
                                 "2 x 1 from it (its declared output, score: one score per image)")
    with pytest.raises(IncompatibleError, match=r"returned 2 x 1 x 28 x 28 .* mode gon needs 2 x 1"):
        build_step("gon", "t-score-returns-image", device=device)


def test_a_logits_discriminator_must_return_its_k_logits(plugins):
    with pytest.raises(IncompatibleError, match=r"returned 2 x 1 .* mode improved-gan needs 2 x 10 .* "
                                                r"logits\[10\]: 10 logits per image"):
        build_step("improved-gan", "t-logits-returns-one")


def test_one_score_per_image_as_a_flat_vector_is_accepted_and_the_zoo_keeps_its_contract(plugins):
    step = build_step("lsgan", "t-score-flat")
    assert step.score(torch.zeros(3, 1, 28, 28)).shape == (3, 1)
    for mode, arch in (("gon", "gon-mnist-mlp"), ("improved-gan", "improved-gan-mlp"), ("dcd", "dcd-mnist-sn")):
        assert build_step(mode, arch).arch == arch


def test_a_generator_making_images_of_another_shape_is_refused(plugins):
    with pytest.raises(IncompatibleError, match=r"generator t-small-images returned 2 x 1 x 14 x 14 for 2 latents; "
                                                r"mode gan needs 2 x 1 x 28 x 28 images"):
        build_step("gan", "t-disc-with-small-gen")


def test_the_probe_forward_changes_nothing():
    """Buffers (BatchNorm's running statistics), train flags and the global RNG are as they were: a run's
    trajectory does not depend on the check."""
    torch.manual_seed(3)
    D = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 1))
    spec = type("Spec", (), {"name": "t", "output": "score", "output_dim": 1})()
    before = [b.clone() for b in D.buffers()]
    rng = torch.get_rng_state()
    check_outputs("gan", spec, D, None, None, (1, 28, 28), torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(before, D.buffers()))
    assert all(m.training for m in D.modules()) and torch.equal(rng, torch.get_rng_state())
    assert PROBE_BATCH == 2


@pytest.mark.parametrize("command", [
    ("train", "--steps", "1"),
    ("profile",),
    ("profile", "--estimate"),
    ("fit", "--memory", "1GiB", "--estimate"),
    ("compare", "gan", "--steps", "1"),
])
def test_every_command_refuses_it_in_one_line_with_exit_2_before_writing_anything(plugins, tmp_path, command):
    out = tmp_path / "out"
    extra = ("--out", str(out)) if command[0] in ("train", "compare") else ()
    res = CliRunner().invoke(app, [*command, "--arch", "t-score-returns-ten", *extra])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "returned 2 x 10" in lines[0] and "needs 2 x 1" in lines[0], res.output
    assert not out.exists()
