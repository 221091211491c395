"""The MLP GAN of the Keras MNIST tutorial (seed 003).

Discriminator: 784 -> 1024 -> 512 -> 256 -> 1, LeakyReLU(0.2) and Dropout(0.3)
after each hidden layer, sigmoid output.  Generator: 100 -> 256 -> 512 -> 1024
-> 784, LeakyReLU(0.2), tanh output.  Keras ``Dense`` layers start from
Glorot-uniform weights and zero biases; the port does the same.
"""

from __future__ import annotations

import torch
from torch import nn

from gonprof.arch import Source, register_arch

_SOURCE = Source(
    paper="A. Sawarn, 'GANs using MNIST Dataset' (Towards AI, 2020): Keras MLP GAN tutorial",
    repo="",
    url="",
)

LATENT_DIM = 100
SLOPE = 0.2
DROPOUT = 0.3


def _keras_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class MLPDiscriminator(nn.Module):
    def __init__(self, input_shape=(1, 28, 28)):
        super().__init__()
        c, h, w = input_shape
        widths = [c * h * w, 1024, 512, 256]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(SLOPE), nn.Dropout(DROPOUT)]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)
        _keras_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.flatten(x, 1))


class MLPGenerator(nn.Module):
    def __init__(self, input_shape=(1, 28, 28), latent_dim: int = LATENT_DIM):
        super().__init__()
        self.image_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        c, h, w = input_shape
        widths = [latent_dim, 256, 512, 1024]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(SLOPE)]
        layers += [nn.Linear(widths[-1], c * h * w), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _keras_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.image_shape)


_SLOPE_NOTE = (
    "The captured seed page shows the layer summaries only as images; LeakyReLU slope 0.2 and Dropout 0.3 "
    "come from the Keras MNIST GAN code the tutorial reproduces (Dense(1024)/LeakyReLU(0.2)/Dropout(0.3) ... "
    "in the discriminator, LeakyReLU(0.2) in the generator). Keras' own LeakyReLU default would be 0.3."
)


@register_arch(
    "mlp-gan",
    family="mlp-gan",
    role="discriminator",
    source=_SOURCE,
    expected_params=1_460_225,
    input_shape=(1, 28, 28),
    output="score",
    default_mode="gan",
    default_generator="mlp-gan-generator",
    notes=(
        "Output: the source ends in Dense(1, activation='sigmoid'); the port returns the raw logit "
        "(the sigmoid belongs to the BCE-with-logits loss).",
        "Dropout(0.3) follows each of the three hidden LeakyReLUs (active in train mode only, as in Keras).",
        _SLOPE_NOTE,
        "Initialisation follows Keras Dense defaults: Glorot-uniform weights, zero biases.",
        "Input: the tutorial feeds flattened MNIST scaled to [-1, 1]; the port flattens (N, C, H, W) per sample, "
        "so any C*H*W works (3072 inputs at 3x32x32).",
    ),
    params_arithmetic=(
        "(784*1024+1024) + (1024*512+512) + (512*256+256) + (256*1+1) "
        "= 803,840 + 524,800 + 131,328 + 257 = 1,460,225"
    ),
)
def build_mlp_gan(input_shape=(1, 28, 28)) -> nn.Module:
    return MLPDiscriminator(tuple(input_shape))


@register_arch(
    "mlp-gan-generator",
    family="mlp-gan",
    role="generator",
    source=_SOURCE,
    expected_params=1_486_352,
    input_shape=(1, 28, 28),
    output="image",
    latent_dim=LATENT_DIM,
    latent="normal",
    default_mode="gan",
    notes=(
        "Output: tanh as in the source, already in [-1, 1]; the 784 outputs are reshaped to (N, C, H, W) "
        "(the tutorial reshapes to 28x28 only for plotting).",
        _SLOPE_NOTE,
        "Initialisation follows Keras Dense defaults: Glorot-uniform weights, zero biases.",
        "Other image shapes: the last layer has C*H*W outputs (3072 at 3x32x32).",
    ),
    params_arithmetic=(
        "(100*256+256) + (256*512+512) + (512*1024+1024) + (1024*784+784) "
        "= 25,856 + 131,584 + 525,312 + 803,600 = 1,486,352"
    ),
)
def build_mlp_gan_generator(input_shape=(1, 28, 28)) -> nn.Module:
    return MLPGenerator(tuple(input_shape))
