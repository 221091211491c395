"""Keras-tutorial MLP GAN: parameter counts, shapes, dropout and output range."""


import pytest
import torch
from torch import nn

from gonprof.arch import get_arch
from zoo_helpers import _seed, built, count  # noqa: F401  (_seed is an autouse fixture)


def test_discriminator_param_count():
    spec = get_arch("mlp-gan")
    assert count(built(spec.name)) == spec.expected_params == (
        (784 * 1024 + 1024) + (1024 * 512 + 512) + (512 * 256 + 256) + (256 * 1 + 1)
    ) == 1_460_225


def test_generator_param_count():
    spec = get_arch("mlp-gan-generator")
    assert count(built(spec.name)) == spec.expected_params == (
        (100 * 256 + 256) + (256 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)
    ) == 1_486_352


def test_spec_fields():
    d, g = get_arch("mlp-gan"), get_arch("mlp-gan-generator")
    assert (d.family, d.role, d.output, d.default_mode) == ("mlp-gan", "discriminator", "score", "gan")
    assert d.default_generator == "mlp-gan-generator"
    assert (g.family, g.role, g.output, g.latent_dim, g.latent) == ("mlp-gan", "generator", "image", 100, "normal")


@pytest.mark.parametrize("batch", [1, 64])
def test_discriminator_forward(batch):
    model = built("mlp-gan").eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 1, 28, 28) * 2 - 1)
    assert out.shape == (batch, 1)
    assert not any(isinstance(m, nn.Sigmoid) for m in model.modules())


@pytest.mark.parametrize("batch", [1, 64])
def test_generator_forward_and_range(batch):
    model = built("mlp-gan-generator").eval()
    with torch.no_grad():
        img = model(torch.randn(batch, 100) * 10)  # large latents drive tanh to its limits
    assert img.shape == (batch, 1, 28, 28)
    assert img.min() >= -1 and img.max() <= 1


def test_three_channel_32():
    d = built("mlp-gan", (3, 32, 32)).eval()
    g = built("mlp-gan-generator", (3, 32, 32)).eval()
    assert count(d) == 1_460_225 + (3072 - 784) * 1024
    assert count(g) == 1_486_352 + (3072 - 784) * (1024 + 1)
    with torch.no_grad():
        img = g(torch.randn(2, 100))
        assert img.shape == (2, 3, 32, 32)
        assert d(img).shape == (2, 1)


def test_leaky_slope_and_dropout():
    d = built("mlp-gan")
    g = built("mlp-gan-generator")
    assert {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    assert {m.negative_slope for m in g.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    assert [m.p for m in d.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3, 0.3]
    assert not any(isinstance(m, nn.Dropout) for m in g.modules())
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        d.eval()
        assert torch.equal(d(x), d(x))
        d.train()
        assert not torch.equal(d(x), d(x))  # dropout is live in train mode


def test_keras_init():
    d = built("mlp-gan")
    for m in d.modules():
        if isinstance(m, nn.Linear):
            assert torch.count_nonzero(m.bias) == 0
            bound = (6 / (m.in_features + m.out_features)) ** 0.5
            assert m.weight.abs().max() <= bound
