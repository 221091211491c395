"""DCD MNIST critic (with spectral norm, and without: dcd-mnist) and generator: counts, shapes, spectral norm,
range."""


import pytest
import torch
from torch import nn

from gonprof.arch import ShapeError, get_arch
from zoo_helpers import _seed, built, count  # noqa: F401  (_seed is an autouse fixture)


def test_critic_param_count():
    spec = get_arch("dcd-mnist-sn")
    model = built(spec.name)
    assert model.flat_dim == 4 * 4 * 256 == 4096  # 28 -> 14 -> 7 -> 4 with k5 s2 p2
    assert count(model) == spec.expected_params == (
        (1 * 64 * 25 + 64) + (64 * 128 * 25 + 128) + (128 * 256 * 25 + 256) + (4096 * 1 + 1)
    ) == 1_030_145


def test_critic_without_spectral_norm_has_the_same_count_and_no_parametrization():
    spec = get_arch("dcd-mnist")
    model = built(spec.name)
    assert count(model) == spec.expected_params == (
        (1 * 64 * 25 + 64) + (64 * 128 * 25 + 128) + (128 * 256 * 25 + 256) + (4096 * 1 + 1)
    ) == 1_030_145
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4 and not any(hasattr(m, "parametrizations") for m in layers)
    # torch's default init (kaiming uniform, a = sqrt(5)): |w| <= 1 / sqrt(fan_in), not the N(0, 1) of dcd-mnist-sn
    first = layers[0].weight
    assert first.abs().max() <= 1 / (1 * 25) ** 0.5
    assert (spec.family, spec.default_mode, spec.default_generator) == ("dcd", "dcd", "dcd-mnist-generator")


def test_generator_param_count():
    spec = get_arch("dcd-mnist-generator")
    assert count(built(spec.name)) == spec.expected_params == (
        (128 * 4096 + 4096) + (256 * 128 * 25 + 128) + (128 * 64 * 25 + 64) + (64 * 1 * 8 * 8 + 1)
    ) == 1_556_673


def test_spec_fields():
    d, g = get_arch("dcd-mnist-sn"), get_arch("dcd-mnist-generator")
    assert (d.family, d.role, d.output, d.default_mode) == ("dcd", "discriminator", "score", "dcd")
    assert d.default_generator == "dcd-mnist-generator"
    assert (g.family, g.role, g.output, g.latent_dim, g.latent) == ("dcd", "generator", "image", 128, "normal")


@pytest.mark.parametrize("name", ["dcd-mnist-sn", "dcd-mnist"])
@pytest.mark.parametrize("batch", [1, 64])
def test_critic_forward(batch, name):
    model = built(name).eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 1, 28, 28) * 2 - 1)
    assert out.shape == (batch, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize("batch", [1, 64])
def test_generator_forward_and_range(batch):
    model = built("dcd-mnist-generator").eval()
    with torch.no_grad():
        img = model(torch.randn(batch, 128))
    assert img.shape == (batch, 1, 28, 28)
    assert img.min() >= -1 and img.max() <= 1


def test_critic_three_channel_32():
    model = built("dcd-mnist-sn", (3, 32, 32)).eval()
    assert model.flat_dim == 4096  # 32 -> 16 -> 8 -> 4
    assert count(model) == 1_030_145 + 2 * 64 * 25
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 1)


def test_generator_rejects_32():
    with pytest.raises(ShapeError, match="dcd-mnist-generator"):
        get_arch("dcd-mnist-generator").build((3, 32, 32))


def test_generator_three_channel_28():
    g = built("dcd-mnist-generator", (3, 28, 28)).eval()
    assert count(g) == 1_556_673 + 2 * (64 * 64 + 1)
    with torch.no_grad():
        assert g(torch.randn(2, 128)).shape == (2, 3, 28, 28)


def test_spectral_norm_bounds_each_layer():
    """Every layer's effective weight has largest singular value ~1 (from above: u'Wv <= sigma)."""
    model = built("dcd-mnist-sn").train()
    with torch.no_grad():
        for _ in range(3):  # one power iteration per train-mode call
            model(torch.rand(1, 1, 28, 28) * 2 - 1)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4
    for m in layers:
        assert hasattr(m, "parametrizations") and "weight" in m.parametrizations
        w = m.weight.detach().flatten(1).double()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        sigma = torch.linalg.eigvalsh(gram).max().sqrt().item()
        assert 1 - 1e-3 <= sigma <= 1.05


def test_critic_gradient_reaches_input():
    """DCD runs Langevin steps on the critic's input gradient."""
    model = built("dcd-mnist-sn")
    x = torch.zeros(3, 1, 28, 28, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
