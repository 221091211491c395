"""Generative Optimization Network discriminators from imperial-qore/GON_MNIST.

GON trains a single network: fake samples are made by gradient descent on the
input of the discriminator itself, so there is no generator.  The repository
has two MNIST discriminators (``src/models.py``): ``mnist``, a six-layer
convolutional net with a four-layer dense head, and ``mnist2``, a five-layer
Tanh MLP.  Both end in ``2 * N_CLASSES`` units with ``N_CLASSES = 1``
(class 0 = real digit, class 1 = generated) and a softmax.

Ports, in brief:

* the softmax head is dropped: the module returns the two raw logits;
* the source flattens the *whole batch* (``x.flatten()``), which only works for
  batch size 1; here each sample is flattened on its own;
* the convolutional net's activation is ``nn.LeakyReLU(True)``: the ``True``
  lands in ``negative_slope`` and means slope 1.0, i.e. the identity.  The port
  keeps that behaviour with ``nn.LeakyReLU(negative_slope=1.0)`` so that the
  profiled network runs the same elementwise kernels as the source (GON's fast
  sampling path skips them, to the same bits: ``gonprof.modes.gon``).
"""

from __future__ import annotations

import torch
from torch import nn

from gonprof.arch import Source, register_arch

_SOURCE = Source(
    paper="Tuli et al., Generative Optimization Networks for Memory Efficient Data Generation (2021)",
    repo="imperial-qore/GON_MNIST",
    url="https://github.com/imperial-qore/GON_MNIST/blob/master/src/models.py",
)

_COMMON_NOTES = (
    "Output: the source ends in Softmax(dim=0) over 2*N_CLASSES = 2 units; the port returns the 2 raw "
    "logits (index 0 = real, index 1 = generated, as in the source's labels); the softmax belongs to the loss.",
    "Batching fix: the source's forward calls x.flatten() on the whole batch, so it only works for batch "
    "size 1 (its loaders and GON loop use batch size 1); the port flattens per sample, which gives "
    "identical outputs at batch size 1 and makes batches of N work.",
    "Input: the source normalises MNIST to [-1, 1] (Normalize(0.5, 0.5)) and clamps GON samples to "
    "[-1, 1], matching gonprof's image convention, so no rescaling is added.",
)


def _source_activation() -> nn.Module:
    # The source writes nn.LeakyReLU(True): True lands in negative_slope, i.e. 1.0, the identity.
    return nn.LeakyReLU(negative_slope=1.0)


class GONConvDiscriminator(nn.Module):
    """Six 'same'-padded convolutions, then 16*H*W -> 1024 -> 256 -> 128 -> 2."""

    def __init__(self, input_shape=(1, 28, 28)):
        super().__init__()
        c, h, w = input_shape
        widths = [c, 128, 64, 32, 16, 16, 16]
        kernels = [5, 3, 3, 3, 3, 3]
        convs: list[nn.Module] = []
        for cin, cout, k in zip(widths[:-1], widths[1:], kernels):
            convs += [nn.Conv2d(cin, cout, k, stride=1, padding=k // 2), _source_activation()]
        self.convs = nn.Sequential(*convs)
        flat = widths[-1] * h * w  # 16 * 28 * 28 = 12544 for MNIST
        self.head = nn.Sequential(
            nn.Linear(flat, 1024), _source_activation(),
            nn.Linear(1024, 256), _source_activation(),
            nn.Linear(256, 128), _source_activation(),
            nn.Linear(128, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        return self.head(torch.flatten(x, 1))


class GONMLPDiscriminator(nn.Module):
    """C*H*W -> 512 -> 256 -> 128 -> 128 -> 2 with Tanh (``mnist2`` in the source)."""

    def __init__(self, input_shape=(1, 28, 28)):
        super().__init__()
        c, h, w = input_shape
        widths = [c * h * w, 512, 256, 128, 128]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        layers.append(nn.Linear(widths[-1], 2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.flatten(x, 1))


@register_arch(
    "gon-mnist-conv",
    family="gon",
    role="discriminator",
    source=_SOURCE,
    expected_params=13_246_482,
    input_shape=(1, 28, 28),
    output="logits[2]",
    default_mode="gon",
    notes=_COMMON_NOTES
    + (
        "Activation kept as in the source: nn.LeakyReLU(True) sets negative_slope=True, i.e. 1.0, so every "
        "'activation' is the identity and the whole network is affine until the loss. Ported as "
        "nn.LeakyReLU(negative_slope=1.0), which computes the identity but runs the same elementwise ops "
        "as the source (so memory and time are profiled faithfully). GON's fast path skips them while "
        "sampling (same bits; hparam skip_identity); its seed preset and every other mode run them.",
        "Other input shapes: conv1 takes C input channels and fc1 takes 16*H*W inputs (12544 at 1x28x28, "
        "16384 at 3x32x32); the source itself only defines 1x28x28 models.",
    ),
    params_arithmetic=(
        "conv (1*128*25+128) + (128*64*9+64) + (64*32*9+32) + (32*16*9+16) + 2*(16*16*9+16) "
        "+ fc (12544*1024+1024) + (1024*256+256) + (256*128+128) + (128*2+2) "
        "= 3,328 + 73,792 + 18,464 + 4,624 + 4,640 + 12,846,080 + 262,400 + 32,896 + 258 = 13,246,482"
    ),
)
def build_gon_mnist_conv(input_shape=(1, 28, 28)) -> nn.Module:
    return GONConvDiscriminator(tuple(input_shape))


@register_arch(
    "gon-mnist-mlp",
    family="gon",
    role="discriminator",
    source=_SOURCE,
    expected_params=582_914,
    input_shape=(1, 28, 28),
    output="logits[2]",
    default_mode="gon",
    notes=_COMMON_NOTES
    + (
        "This is the source's `mnist2` model; its Tanh activations are kept as they are (no LeakyReLU bug here).",
        "Other input shapes: the first layer takes C*H*W inputs (3072 at 3x32x32).",
    ),
    params_arithmetic=(
        "(784*512+512) + (512*256+256) + (256*128+128) + (128*128+128) + (128*2+2) "
        "= 401,920 + 131,328 + 32,896 + 16,512 + 258 = 582,914"
    ),
)
def build_gon_mnist_mlp(input_shape=(1, 28, 28)) -> nn.Module:
    return GONMLPDiscriminator(tuple(input_shape))
