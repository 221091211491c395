"""Improved-GAN (Salimans et al. 2016) MLPs: counts, noise, features, weight norm, generator range."""


import pytest
import torch

from gonprof.arch import get_arch
from zoo_helpers import _seed, built, count  # noqa: F401  (_seed is an autouse fixture)


def test_discriminator_param_count():
    spec = get_arch("improved-gan-mlp")
    model = built(spec.name)
    weights_and_biases = (
        (784 * 1000 + 1000)
        + (1000 * 500 + 500)
        + (500 * 250 + 250)
        + (250 * 250 + 250)
        + (250 * 250 + 250)
        + (250 * 10 + 10)
    )
    assert weights_and_biases == 1_538_760
    output_gains = 10  # only the output layer learns a weight-norm gain
    assert count(model) == spec.expected_params == weights_and_biases + output_gains == 1_538_770
    gains = [p.numel() for n, p in model.named_parameters() if n.endswith("gain")]
    assert gains == [10]


def test_generator_param_count():
    spec = get_arch("improved-gan-generator")
    model = built(spec.name)
    assert count(model) == spec.expected_params == (
        100 * 500 + 500  # linear without bias + BN shift
        + 500 * 500 + 500  # linear without bias + BN shift
        + (500 * 784 + 784 + 784)  # weight-norm output: direction + bias + gain
    ) == 694_568


def test_spec_fields():
    d, g = get_arch("improved-gan-mlp"), get_arch("improved-gan-generator")
    assert (d.family, d.role, d.output, d.output_dim) == ("improved-gan", "discriminator", "logits[10]", 10)
    assert d.default_mode == "improved-gan" and d.default_generator == "improved-gan-generator"
    assert (g.role, g.output, g.latent, g.latent_dim) == ("generator", "image", "uniform", 100)


@pytest.mark.parametrize("batch", [1, 64])
def test_discriminator_forward_and_features(batch):
    model = built("improved-gan-mlp").eval()
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        feats2, logits2 = model.features_and_logits(x)
    assert logits.shape == (batch, 10)
    assert feats.shape == (batch, 250)
    assert (feats >= 0).all()  # ReLU output, taken before the hidden noise
    assert torch.equal(feats, feats2)
    assert torch.equal(logits, logits2)


def test_noise_only_in_train_mode():
    model = built("improved-gan-mlp")
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        assert torch.equal(model.features(x), model.features(x))
        model.train()
        assert not torch.equal(model(x), model(x))
        assert not torch.equal(model.features(x), model.features(x))
    assert model.input_noise == 0.3 and model.hidden_noise == 0.5


def test_weight_norm_is_scale_invariant():
    """Scaling the stored direction V changes nothing: W = g * V / ||V||."""
    model = get_arch("improved-gan-mlp").build().eval()  # mutated below: a fresh one
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        before = model(x)
        for p_name, p in model.named_parameters():
            if p_name.endswith("weight"):
                p.mul_(7.0)
        after = model(x)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-5)


def test_generator_forward_and_range():
    model = built("improved-gan-generator")
    z = torch.rand(64, 100)
    with torch.no_grad():
        img = model.train()(z)  # batch norm with batch statistics, as in the source's training
        assert img.shape == (64, 1, 28, 28)
        assert img.min() >= -1 and img.max() <= 1
        one = model.eval()(torch.rand(1, 100))  # running statistics allow batch size 1
        assert one.shape == (1, 1, 28, 28)
        assert one.min() >= -1 and one.max() <= 1


def test_three_channel_32():
    d = built("improved-gan-mlp", (3, 32, 32)).eval()
    g = built("improved-gan-generator", (3, 32, 32)).eval()
    assert count(d) == 1_538_770 + (3072 - 784) * 1000
    assert count(g) == 694_568 + (3072 - 784) * (500 + 2)
    with torch.no_grad():
        img = g(torch.rand(2, 100))
        assert img.shape == (2, 3, 32, 32)
        assert d(img).shape == (2, 10) and d.features(img).shape == (2, 250)


def test_feature_matching_gradient_reaches_generator():
    d = built("improved-gan-mlp").train()
    g = built("improved-gan-generator").train()
    fake = g(torch.rand(8, 100))
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    loss = (d.features(fake).mean(0) - d.features(real).mean(0)).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for p in g.parameters())
