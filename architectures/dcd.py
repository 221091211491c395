"""The MNIST critic and generator of Discriminator Contrastive Divergence (DCD).

Source: ``synthetic_exp/gan_mnist.py`` in MinkaiXu/Discriminator-Contrastive-Divergence
(the WGAN-GP MNIST networks with DIM = 64, critic under spectral norm).

Critic: three spectral-norm 5x5 stride-2 convolutions 1 -> 64 -> 128 -> 256
with padding 2 (28 -> 14 -> 7 -> 4) and ReLU, then a spectral-norm linear
layer 4*4*256 = 4096 -> 1.  ``dcd-mnist`` is the same critic without spectral
norm and with torch's default initialisation: the WGAN-GP MNIST critic the
source's script was written from (its PyTorch port, with ReLU).

Generator: 128 -> 4*4*256 (ReLU) -> deconv 256 -> 128 k5 (4 -> 8, ReLU), crop
to 7x7 -> deconv 128 -> 64 k5 (7 -> 11, ReLU) -> deconv 64 -> 1 k8 s2 (11 -> 28)
-> sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gonprof.arch import ShapeError, Source, register_arch

_SOURCE = Source(
    paper="Song et al., Discriminator Contrastive Divergence: Semi-Amortized Generative Modeling by "
    "Exploring Energy of the Discriminator (2020)",
    repo="MinkaiXu/Discriminator-Contrastive-Divergence",
    url="https://github.com/MinkaiXu/Discriminator-Contrastive-Divergence/blob/master/synthetic_exp/gan_mnist.py",
)

DIM = 64
LATENT_DIM = 128


def _sn(module: nn.Conv2d | nn.Linear) -> nn.Module:
    # The source's own spectral_norm re-initialises weights N(0, 1) and zeroes biases first.
    nn.init.normal_(module.weight, 0.0, 1.0)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return spectral_norm(module, n_power_iterations=1)


def _conv_out(n: int) -> int:
    # kernel 5, stride 2, padding 2
    return (n + 2 * 2 - 5) // 2 + 1


def _plain(module: nn.Conv2d | nn.Linear) -> nn.Module:
    return module


class DCDCritic(nn.Module):
    def __init__(self, input_shape=(1, 28, 28), spectral_norm: bool = True):
        super().__init__()
        c, h, w = input_shape
        wrap = _sn if spectral_norm else _plain
        widths = [c, DIM, 2 * DIM, 4 * DIM]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [wrap(nn.Conv2d(a, b, 5, stride=2, padding=2)), nn.ReLU()]
            h, w = _conv_out(h), _conv_out(w)
        self.main = nn.Sequential(*layers)
        self.flat_dim = widths[-1] * h * w  # 256 * 4 * 4 = 4096 at 28x28
        self.output = wrap(nn.Linear(self.flat_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.flatten(self.main(x), 1))


class DCDGenerator(nn.Module):
    def __init__(self, input_shape=(1, 28, 28), latent_dim: int = LATENT_DIM):
        super().__init__()
        c, h, w = input_shape
        self.image_shape = (c, h, w)
        self.latent_dim = latent_dim
        # deconv_out (k8, s2) maps s -> 2*(s-1)+8, so block2 must give s = h/2 - 3 and
        # block1's 8x8 output is cropped to s - 4 (7 for 28x28).
        self.crop = h // 2 - 7
        self.preprocess = nn.Sequential(nn.Linear(latent_dim, 4 * 4 * 4 * DIM), nn.ReLU())
        self.block1 = nn.Sequential(nn.ConvTranspose2d(4 * DIM, 2 * DIM, 5), nn.ReLU())
        self.block2 = nn.Sequential(nn.ConvTranspose2d(2 * DIM, DIM, 5), nn.ReLU())
        self.deconv_out = nn.ConvTranspose2d(DIM, c, 8, stride=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(z).view(-1, 4 * DIM, 4, 4)
        x = self.block1(x)[:, :, : self.crop, : self.crop]
        x = self.block2(x)
        y = torch.sigmoid(self.deconv_out(x))  # pixels in [0, 1] as in the source
        return 2 * y - 1


#: what the two critics (with spectral norm and without) register alike
_CRITIC = dict(
    family="dcd",
    role="discriminator",
    source=_SOURCE,
    expected_params=1_030_145,
    input_shape=(1, 28, 28),
    output="score",
    default_mode="dcd",
    default_generator="dcd-mnist-generator",
    params_arithmetic=(
        "(1*64*25+64) + (64*128*25+128) + (128*256*25+256) + (4096*1+1) "
        "= 1,664 + 204,928 + 819,456 + 4,097 = 1,030,145"
    ),
)


@register_arch(
    "dcd-mnist-sn",
    **_CRITIC,
    notes=(
        "Spectral norm via torch.nn.utils.parametrizations.spectral_norm (one power iteration per call, "
        "eps 1e-12) instead of the source's own SpectralNorm hook. Same parameter count (the unnormalised "
        "weight is the parameter; u, v are buffers). Differences: torch also keeps v and only updates u, v in "
        "train mode, while the source updates u on every forward and has no eps.",
        "Initialisation as in the source's spectral_norm helper: weights N(0, 1), biases 0.",
        "Activation: ReLU after each convolution, as in the source (the TF WGAN-GP original uses LeakyReLU).",
        "Output: the source returns shape (N,) via view(-1); the port returns (N, 1) raw critic values.",
        "Input: the source trains on MNIST pixels in [0, 1] (tflib loader); gonprof feeds [-1, 1]. The first "
        "layer is affine, so the change of range is absorbed by its weights and biases; no rescaling is added.",
        "Other input shapes: each conv maps n -> ceil(n/2); the linear layer takes 256*ceil(H/8)*ceil(W/8) "
        "inputs (4096 at 28x28 and at 32x32; C input channels at the first conv).",
    ),
)
def build_dcd_mnist_sn(input_shape=(1, 28, 28)) -> nn.Module:
    c, h, w = tuple(input_shape)
    return DCDCritic((c, h, w))


@register_arch(
    "dcd-mnist",
    **_CRITIC,
    notes=(
        "dcd-mnist-sn without spectral norm, with torch's default initialisation: the WGAN-GP MNIST critic "
        "(Gulrajani et al. 2017) as the PyTorch port the source's script copies has it, ReLU after each "
        "convolution (the TF original uses LeakyReLU).",
        "Why it is here: against the spectral-norm critic, dcd-mnist-generator draws one image for every z "
        "under every pretraining tried (benchmarks/dcd_saturation.py); against this one its output varies with "
        "z from a few hundred steps (docs: claims page, DCD). Preset dcd-no-sn runs the DCD study on it.",
        "Input: gonprof feeds [-1, 1] (the source [0, 1]); the first layer is affine, as for dcd-mnist-sn.",
    ),
)
def build_dcd_mnist(input_shape=(1, 28, 28)) -> nn.Module:
    c, h, w = tuple(input_shape)
    return DCDCritic((c, h, w), spectral_norm=False)


@register_arch(
    "dcd-mnist-generator",
    family="dcd",
    role="generator",
    source=_SOURCE,
    expected_params=1_556_673,
    input_shape=(1, 28, 28),
    output="image",
    latent_dim=LATENT_DIM,
    latent="normal",
    default_mode="dcd",
    notes=(
        "Output: the source ends in a sigmoid (pixels in [0, 1]); the port maps it to [-1, 1] with 2*y - 1.",
        "Output shape: the source returns (N, 784); the port returns (N, C, H, W), with C output channels "
        "in the last deconvolution (1 in the source).",
        "Image shapes: the source's crop of the 8x8 block1 output to 7x7 is what makes 28x28. The port "
        "generalises the crop to H/2 - 7, so square even sizes 16..30 work with C output channels; "
        "3x32x32 would need a 9x9 crop of an 8x8 map and raises ShapeError.",
    ),
    params_arithmetic=(
        "(128*4096+4096) + (256*128*25+128) + (128*64*25+64) + (64*1*64+1) "
        "= 528,384 + 819,328 + 204,864 + 4,097 = 1,556,673"
    ),
)
def build_dcd_mnist_generator(input_shape=(1, 28, 28)) -> nn.Module:
    c, h, w = tuple(input_shape)
    if h != w or h % 2 or not 1 <= h // 2 - 7 <= 8:
        raise ShapeError(
            f"dcd-mnist-generator: makes square images of even size 16..30 (28x28 in the source), "
            f"not {h}x{w}"
        )
    return DCDGenerator((c, h, w))
