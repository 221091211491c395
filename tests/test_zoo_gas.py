"""The GAS zoo (SunnerLi/GAS): parameter counts with their arithmetic, shapes, frozen BN."""

from __future__ import annotations

import functools

import pytest
import torch

from gonprof.arch import ShapeError, get_arch

DISCRIMINATORS = [
    "lsgan-original",
    "inception-k32",
    "inception-k16",
    "inception-k8",
    "depthwise-inception",
    "depthwise-inception-dense",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@functools.cache
def built(name: str, shape: tuple[int, int, int] | None = None) -> torch.nn.Module:
    """Build once per name and shape; tests that train or mutate build their own."""
    torch.manual_seed(0)
    return get_arch(name).build(shape)


def counts(model: torch.nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def buffer_count(model: torch.nn.Module) -> int:
    return sum(b.numel() for b in model.buffers())


def frozen_bn_buffers(channels: int) -> int:
    """TensorLayer BN: gamma, beta, moving mean, moving variance, all buffers."""
    return 4 * channels


def inception(cin: int, n: int) -> int:
    """One plain inception block: 1x1 conv -> n/2 plus 3x3 conv -> n/2, both with bias."""
    h = n // 2
    return (cin * h + h) + (9 * cin * h + h)


# ---------------------------------------------------------------- parameter counts
def test_lsgan_original_count():
    model = built("lsgan-original")
    total, trainable = counts(model)
    assert total == trainable == (
        (3 * 3 * 1 * 32 + 32)
        + (3 * 3 * 32 * 64 + 64)
        + (3 * 3 * 64 * 128 + 128)
        + (3 * 3 * 128 * 256 + 256)
        + (2 * 2 * 256 * 1 + 1)  # Dense(1) on 28 -> 14 -> 7 -> 4 -> 2 (SAME pooling)
    ) == 388_865
    # TensorLayer BN in blocks 2-4: gamma/beta and moving stats are constants, all buffers
    assert buffer_count(model) == frozen_bn_buffers(64 + 128 + 256) == 1_792
    spec = get_arch("lsgan-original")
    assert spec.expected_params == (spec.expected_trainable or spec.expected_params) == 388_865


def test_inception_k32_count():
    model = built("inception-k32")
    total, trainable = counts(model)
    assert total == trainable == (
        (1 * 16 + 16) + (3 * 3 * 1 * 16 + 16)
        + (32 * 32 + 32) + (3 * 3 * 32 * 32 + 32)
        + (64 * 64 + 64) + (3 * 3 * 64 * 64 + 64)
        + (128 * 128 + 128) + (3 * 3 * 128 * 128 + 128)
        + (2 * 2 * 256 + 1)
    ) == 216_705 == get_arch("inception-k32").expected_params
    assert buffer_count(model) == frozen_bn_buffers(64 + 128 + 256)


def test_inception_k16_count():
    model = built("inception-k16")
    total, trainable = counts(model)
    assert total == trainable == (
        (1 * 8 + 8) + (3 * 3 * 1 * 8 + 8)
        + (16 * 16 + 16) + (3 * 3 * 16 * 16 + 16)
        + (32 * 32 + 32) + (3 * 3 * 32 * 32 + 32)
        + (64 * 64 + 64) + (3 * 3 * 64 * 64 + 64)
        + (2 * 2 * 128 + 1)
    ) == 54_593 == get_arch("inception-k16").expected_params
    assert buffer_count(model) == frozen_bn_buffers(32 + 64 + 128)


def test_inception_k8_count():
    model = built("inception-k8")
    total, trainable = counts(model)
    assert total == trainable == (
        (1 * 4 + 4) + (3 * 3 * 1 * 4 + 4)
        + (8 * 8 + 8) + (3 * 3 * 8 * 8 + 8)
        + (16 * 16 + 16) + (3 * 3 * 16 * 16 + 16)
        + (32 * 32 + 32) + (3 * 3 * 32 * 32 + 32)
        + (2 * 2 * 64 + 1)
    ) == 13_857 == get_arch("inception-k8").expected_params
    assert buffer_count(model) == frozen_bn_buffers(16 + 32 + 64)


def test_depthwise_inception_count():
    def block(c, n):  # 1x1, squeeze 1x1, depthwise 3x3 (+bias), beta, pointwise -> 2n, beta
        h = n // 2
        return (c * h + h) + (c * h + h) + (9 * h + h) + h + (h * 2 * n + 2 * n) + 2 * n

    model = built("depthwise-inception")
    total, trainable = counts(model)
    assert total == trainable == (
        block(1, 32)  # -> 16 + 64 = 80 channels
        + block(80, 64)  # -> 160
        + block(160, 128)  # -> 320
        + block(320, 256)  # -> 640
        + (2 * 2 * 640 + 1)
    ) == 1_392 + 9_888 + 38_208 + 150_144 + 2_561 == 202_193
    assert total == get_arch("depthwise-inception").expected_params
    slim = 2 * ((16 + 64) + (32 + 128) + (64 + 256) + (128 + 512))  # slim BN moving stats
    assert buffer_count(model) == frozen_bn_buffers(160 + 320 + 640) + slim == 6_880


def test_depthwise_inception_dense_count():
    stem = (1 * 8 + 8) + (1 * 8 + 8) + (9 * 8 + 8) + 8 + (8 * 8 + 8) + 8

    def dense_block(c):  # three dense layers (growth 16), transition to 4 channels
        return inception(c, 16) + inception(c + 16, 16) + inception(c + 32, 16) + inception(c + 48, 4)

    model = built("depthwise-inception-dense")
    total, trainable = counts(model)
    assert total == trainable == (
        stem + dense_block(16) + dense_block(4) + dense_block(4) + (4 * 3 * 3 + 1)
    ) == 200 + 9_012 + 5_892 + 5_892 + 37 == 21_033
    assert total == get_arch("depthwise-inception-dense").expected_params
    frozen_channels = (16 + 32 + 48 + 64) + 2 * (4 + 20 + 36 + 52)
    assert buffer_count(model) == frozen_bn_buffers(frozen_channels) + 2 * (8 + 8) == 1_568


def test_generator_count():
    total, trainable = counts(built("gas-generator"))
    assert total == trainable == (
        (100 * 7 * 7 * 128) + 7 * 7 * 128  # fc without bias, BN beta only
        + (5 * 5 * 128 * 256) + 256
        + (5 * 5 * 64 * 128) + 128
        + (5 * 5 * 32 * 1 + 1)  # last conv: bias, tanh
    ) == 1_658_657


@pytest.mark.parametrize("name", DISCRIMINATORS + ["gas-generator"])
def test_spec_metadata(name):
    spec = get_arch(name)
    assert spec.family == "gas"
    assert spec.source.repo == "SunnerLi/GAS"
    assert spec.notes and spec.params_arithmetic
    total, trainable = counts(built(name))
    assert total == trainable == spec.expected_params
    assert spec.expected_trainable in (None, spec.expected_params)
    if spec.role == "discriminator":
        assert spec.output == "score"
        assert spec.default_mode == "lsgan" and spec.default_generator == "gas-generator"
    else:
        assert spec.output == "image" and spec.latent_dim == 100 and spec.latent == "normal"


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", DISCRIMINATORS)
@pytest.mark.parametrize("batch", [1, 64])
def test_discriminator_forward(name, batch):
    model = built(name)
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        model.train()
        assert model(x).shape == (batch, 1)
        model.eval()
        assert model(x).shape == (batch, 1)


@pytest.mark.parametrize("name", DISCRIMINATORS)
def test_discriminator_rgb32(name):
    model = built(name, (3, 32, 32))
    model.train()
    out = model(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.shape == (2, 1)
    grads = torch.autograd.grad(out.sum(), [p for p in model.parameters() if p.requires_grad])
    assert all(g is not None for g in grads)


def test_dense_width_follows_shape():
    # 3x32x32: 32 -> 16 -> 8 -> 4 -> 2, the same 2x2 grid, only the first convs change.
    total, trainable = counts(built("lsgan-original", (3, 32, 32)))
    assert total == trainable == 388_865 - (9 * 1 * 32) + (9 * 3 * 32)
    # 1x20x20: 20 -> 10 -> 5 -> 3 -> 2; 1x40x40: 40 -> 20 -> 10 -> 5 -> 3.
    assert built("inception-k8", (1, 40, 40)).head.in_features == 64 * 3 * 3
    # dense variant: three VALID average pools, 32 -> 16 -> 8 -> 4
    assert built("depthwise-inception-dense", (3, 32, 32)).head.in_features == 4 * 4 * 4


@pytest.mark.parametrize(
    "name,shape",
    [("depthwise-inception-dense", (1, 7, 28)), ("depthwise-inception-dense", (1, 4, 4)),
     ("gas-generator", (1, 30, 30)), ("gas-generator", (1, 28, 26))],
)
def test_impossible_shapes(name, shape):
    with pytest.raises(ShapeError) as err:
        get_arch(name).build(shape)
    assert "\n" not in str(err.value)


def test_same_pooling_takes_tiny_inputs():
    # TF "SAME" pooling never runs out of pixels: 1x1 stays 1x1.
    model = built("inception-k8", (1, 1, 1))
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 1, 1)).shape == (2, 1)


# ---------------------------------------------------------------- frozen BN
def test_frozen_bn_does_not_train():
    torch.manual_seed(0)
    model = get_arch("lsgan-original").build()
    frozen = [m for m in model.modules() if type(m).__name__ == "FrozenTLBatchNorm2d"]
    assert [m.channels for m in frozen] == [64, 128, 256]  # blocks 2-4 only
    params = {id(p) for p in model.parameters()}
    buffers = dict(model.named_buffers())
    for i, m in zip((1, 2, 3), frozen):  # gamma/beta are constants: buffers, not parameters
        assert f"features.{i}.bn.weight" in buffers and f"features.{i}.bn.bias" in buffers
        assert id(m.weight) not in params and id(m.bias) not in params
        assert not m.weight.requires_grad and not m.bias.requires_grad
    assert not any(".bn." in name for name, _ in model.named_parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}

    model.train()
    # Plain gradient steps on the LSGAN generator-side loss of the source (the optimizer
    # itself does not matter here, and torch.optim would import torch._dynamo: seconds).
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        loss = (torch.sigmoid(model(torch.rand(2, 1, 28, 28) * 2 - 1)) - 1).pow(2).sum() / 2
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p -= 0.1 * p.grad
    after = model.state_dict()
    for m in frozen:
        assert m.weight.grad is None and m.bias.grad is None
    bn_keys = [key for key in before if "bn." in key]
    assert len(bn_keys) == 3 * 4  # gamma, beta, moving mean / variance in each frozen BN
    for key in bn_keys:  # all untouched by the training steps
        assert torch.equal(before[key], after[key]), key
    assert torch.equal(after["features.1.bn.running_mean"], torch.zeros(64))
    assert torch.equal(after["features.1.bn.running_var"], torch.ones(64))
    # the convs did train
    assert not torch.equal(before["features.0.body.weight"], after["features.0.body.weight"])


def test_frozen_bn_same_in_train_and_eval():
    model = built("inception-k8")
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        a = model.train()(x)
        b = model.eval()(x)
    assert torch.equal(a, b)  # no batch statistics anywhere in the plain-inception nets


# ---------------------------------------------------------------- generator
def test_generator_output():
    torch.manual_seed(0)
    spec = get_arch("gas-generator")
    g = built("gas-generator")
    g.train()
    with torch.no_grad():
        imgs = g(torch.randn(64, spec.latent_dim))
    assert imgs.shape == (64, 1, 28, 28)
    assert imgs.min() >= -1 and imgs.max() <= 1
    g.eval()
    with torch.no_grad():
        one = g(torch.randn(1, spec.latent_dim))
    assert one.shape == (1, 1, 28, 28) and one.abs().max() <= 1
    with torch.no_grad():
        rgb = built("gas-generator", (3, 32, 32)).train()(torch.randn(4, spec.latent_dim))
    assert rgb.shape == (4, 3, 32, 32) and rgb.abs().max() <= 1


def test_generator_reshape_is_raw_nhwc():
    # The source's upsampling is tf.reshape on NHWC: pixel (0, 1) of the 14x14x64 map is
    # channels 64..127 of pixel (0, 0) of the 7x7x256 map.
    from gonprof.architectures.gas import GASGenerator

    x = torch.arange(2 * 256 * 7 * 7, dtype=torch.float32).view(2, 7, 7, 256).permute(0, 3, 1, 2)
    y = GASGenerator._nhwc_reshape(x, 14, 14, 64)
    assert y.shape == (2, 64, 14, 14)
    assert torch.equal(y[:, :, 0, 1], x[:, 64:128, 0, 0])
