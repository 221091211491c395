"""GON_MNIST discriminators: parameter counts, shapes, and the ported source quirks."""


import pytest
import torch
from torch import nn

from gonprof.arch import get_arch
from zoo_helpers import _seed, built, count  # noqa: F401  (_seed is an autouse fixture)


def test_conv_param_count():
    spec = get_arch("gon-mnist-conv")
    model = built(spec.name)
    assert count(model) == spec.expected_params == (
        (1 * 128 * 25 + 128)
        + (128 * 64 * 9 + 64)
        + (64 * 32 * 9 + 32)
        + (32 * 16 * 9 + 16)
        + (16 * 16 * 9 + 16)
        + (16 * 16 * 9 + 16)
        + (12544 * 1024 + 1024)
        + (1024 * 256 + 256)
        + (256 * 128 + 128)
        + (128 * 2 + 2)
    ) == 13_246_482


def test_mlp_param_count():
    spec = get_arch("gon-mnist-mlp")
    model = built(spec.name)
    assert count(model) == spec.expected_params == (
        (784 * 512 + 512) + (512 * 256 + 256) + (256 * 128 + 128) + (128 * 128 + 128) + (128 * 2 + 2)
    ) == 582_914


@pytest.mark.parametrize("name", ["gon-mnist-conv", "gon-mnist-mlp"])
def test_spec_fields(name):
    spec = get_arch(name)
    assert spec.family == "gon" and spec.role == "discriminator"
    assert spec.output == "logits[2]" and spec.output_dim == 2
    assert spec.default_mode == "gon" and spec.input_shape == (1, 28, 28)
    assert spec.source.repo == "imperial-qore/GON_MNIST"
    assert any("batch size 1" in n for n in spec.notes)


@pytest.mark.parametrize("name", ["gon-mnist-conv", "gon-mnist-mlp"])
@pytest.mark.parametrize("batch", [1, 64])
def test_forward_shape(name, batch):
    model = built(name).eval()
    with torch.no_grad():
        out = model(torch.rand(batch, 1, 28, 28) * 2 - 1)
    assert out.shape == (batch, 2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["gon-mnist-conv", "gon-mnist-mlp"])
def test_batching_fix_matches_per_sample(name):
    """The source only runs batch size 1; a batch must give the same rows as one-by-one calls."""
    model = built(name).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_conv_three_channel_32():
    model = built("gon-mnist-conv", (3, 32, 32)).eval()
    assert count(model) == 13_246_482 + 2 * 128 * 25 + (16384 - 12544) * 1024 == (
        (3 * 128 * 25 + 128)
        + (128 * 64 * 9 + 64)
        + (64 * 32 * 9 + 32)
        + (32 * 16 * 9 + 16)
        + 2 * (16 * 16 * 9 + 16)
        + (16 * 32 * 32 * 1024 + 1024)
        + (1024 * 256 + 256)
        + (256 * 128 + 128)
        + (128 * 2 + 2)
    )
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


def test_mlp_three_channel_32():
    model = built("gon-mnist-mlp", (3, 32, 32)).eval()
    assert count(model) == 582_914 + (3072 - 784) * 512
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


def test_conv_leakyrelu_true_is_identity():
    """nn.LeakyReLU(True) in the source has slope 1.0: the conv net is one affine map."""
    model = built("gon-mnist-conv")
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {1.0}
    assert slopes == {nn.LeakyReLU(True).negative_slope}
    model.eval()
    x, y = torch.randn(2, 1, 1, 28, 28).unbind(0)
    a = 0.3
    with torch.no_grad():
        mixed = model(a * x + (1 - a) * y)
        combo = a * model(x) + (1 - a) * model(y)
    assert torch.allclose(mixed, combo, rtol=1e-3, atol=1e-4)


def test_mlp_uses_tanh():
    model = built("gon-mnist-mlp")
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 4
    assert not any(isinstance(m, (nn.Softmax, nn.Sigmoid)) for m in model.modules())


def test_gradient_reaches_input():
    """GON optimises the input through the discriminator."""
    model = built("gon-mnist-mlp")
    x = torch.zeros(3, 1, 28, 28, requires_grad=True)
    model(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and x.grad.abs().sum() > 0
