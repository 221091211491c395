"""The permutation-invariant MNIST networks of Salimans et al. (2016).

Discriminator (a 10-class classifier whose log-sum-exp is the realness score):
Gaussian noise (sigma 0.3) on the input, then five weight-normalised dense
layers 1000-500-250-250-250 with ReLU, each followed by Gaussian noise
(sigma 0.5), then a weight-normalised dense layer to 10 logits.  Feature
matching compares batch means of the last hidden layer's ReLU output, taken
before that layer's noise (``layers[-3]`` in openai/improved-gan, ``x_f`` in
Sleepychord/ImprovedGAN-pytorch); :meth:`ImprovedGANDiscriminator.features`
returns exactly that.

Generator: U(0, 1)^100 -> 500 -> 500 (linear without bias, batch norm with a
learned shift only, softplus) -> 784 (weight-normalised dense layer, sigmoid in
the original code).

Weight normalisation here is ``W = g * V / ||V||`` with one norm per output
unit.  Following the PyTorch port, only the discriminator's last layer and the
generator's last layer have a learned gain ``g``; the discriminator's hidden
layers use ``g = 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gonprof.arch import Source, register_arch

_SOURCE = Source(
    paper="Salimans et al., Improved Techniques for Training GANs (NeurIPS 2016)",
    repo="Sleepychord/ImprovedGAN-pytorch",
    url="https://github.com/openai/improved-gan/blob/master/mnist_svhn_cifar10/train_mnist_feature_matching.py",
)

LATENT_DIM = 100
HIDDEN = (1000, 500, 250, 250, 250)
N_CLASSES = 10
INPUT_NOISE = 0.3
HIDDEN_NOISE = 0.5


class WeightNormLinear(nn.Module):
    """Dense layer with ``W = gain * V / ||V||_row``.

    ``learn_gain=False`` fixes the gain at 1 (no parameter): the direction-only
    normalisation the reference PyTorch port uses for the hidden layers.
    """

    def __init__(self, in_features: int, out_features: int, learn_gain: bool, init_std: float = 0.1):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * init_std)
        self.bias = nn.Parameter(torch.zeros(out_features))
        if learn_gain:
            self.gain = nn.Parameter(torch.ones(out_features, 1))
        else:
            self.register_parameter("gain", None)

    def effective_weight(self) -> torch.Tensor:
        direction = self.weight / self.weight.pow(2).sum(dim=1, keepdim=True).sqrt()
        return direction if self.gain is None else direction * self.gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, learned_gain={self.gain is not None}"


def _gaussian_noise(x: torch.Tensor, sigma: float, training: bool) -> torch.Tensor:
    if not training or sigma == 0:
        return x
    return x + torch.randn_like(x) * sigma


class ImprovedGANDiscriminator(nn.Module):
    def __init__(self, input_shape=(1, 28, 28)):
        super().__init__()
        c, h, w = input_shape
        widths = (c * h * w,) + HIDDEN
        self.hidden = nn.ModuleList(
            WeightNormLinear(a, b, learn_gain=False) for a, b in zip(widths[:-1], widths[1:])
        )
        self.final = WeightNormLinear(widths[-1], N_CLASSES, learn_gain=True)
        self.input_noise = INPUT_NOISE
        self.hidden_noise = HIDDEN_NOISE

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (last hidden ReLU output before its noise, the noised version)."""
        # gonprof images are in [-1, 1]; the source trains on pixels in [0, 1].
        x = (torch.flatten(x, 1) + 1) * 0.5
        x = _gaussian_noise(x, self.input_noise, self.training)
        feat = x
        for layer in self.hidden:
            feat = F.relu(layer(x))
            x = _gaussian_noise(feat, self.hidden_noise, self.training)
        return feat, x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 250) activations of the last hidden layer, the ones feature matching uses."""
        return self._trunk(x)[0]

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both at the cost of one pass (same noise draw for both)."""
        feat, h = self._trunk(x)
        return feat, self.final(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self._trunk(x)[1])


class ImprovedGANGenerator(nn.Module):
    def __init__(self, input_shape=(1, 28, 28), latent_dim: int = LATENT_DIM):
        super().__init__()
        self.image_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        c, h, w = input_shape
        self.fc1 = nn.Linear(latent_dim, 500, bias=False)
        self.bn1 = nn.BatchNorm1d(500, eps=1e-6, momentum=0.1, affine=False)
        self.shift1 = nn.Parameter(torch.zeros(500))
        self.fc2 = nn.Linear(500, 500, bias=False)
        self.bn2 = nn.BatchNorm1d(500, eps=1e-6, momentum=0.1, affine=False)
        self.shift2 = nn.Parameter(torch.zeros(500))
        self.out = WeightNormLinear(500, c * h * w, learn_gain=True)
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.xavier_uniform_(self.fc2.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.softplus(self.bn1(self.fc1(z)) + self.shift1)
        x = F.softplus(self.bn2(self.fc2(x)) + self.shift2)
        y = torch.sigmoid(self.out(x))  # pixels in [0, 1] as in the source
        return (2 * y - 1).view(z.shape[0], *self.image_shape)


@register_arch(
    "improved-gan-mlp",
    family="improved-gan",
    role="discriminator",
    source=_SOURCE,
    expected_params=1_538_770,
    input_shape=(1, 28, 28),
    output="logits[10]",
    default_mode="improved-gan",
    default_generator="improved-gan-generator",
    blocks=tuple(f"hidden.{i}" for i in range(5)) + ("final",),  # the layers (hidden is a ModuleList)
    notes=(
        "Weight-norm gains: as in Sleepychord/ImprovedGAN-pytorch only the output layer has a learned gain "
        "(10 parameters); the hidden layers normalise the direction with a fixed gain of 1. openai/improved-gan "
        "keeps a gain per unit on every layer but trains only the output layer's; its hidden gains are set once "
        "by data-dependent initialisation and then frozen. That initialisation is not ported (weights start "
        "N(0, 0.1^2), biases 0, gains 1, as in the PyTorch port).",
        "Gaussian noise (sigma 0.3 on the input, 0.5 after each of the five hidden ReLUs, including the last "
        "one before the output layer) is drawn only in training mode; eval mode is deterministic.",
        "Input scale: gonprof images are in [-1, 1] but the source trains on pixels in [0, 1]; the port maps "
        "x -> (x + 1) / 2 before the input noise so that sigma 0.3 and the fixed-gain hidden layers see the "
        "source's scale.",
        "features(x) returns the (N, 250) ReLU output of the last hidden layer before its noise, the tensor "
        "the source's feature-matching loss averages; features_and_logits(x) returns both from one pass.",
        "Output: the 10 raw class logits (no softmax), as the source's losses take them.",
        "Other input shapes: the first layer takes C*H*W inputs (3072 at 3x32x32).",
    ),
    params_arithmetic=(
        "weights+biases (784*1000+1000) + (1000*500+500) + (500*250+250) + 2*(250*250+250) + (250*10+10) "
        "= 785,000 + 500,500 + 125,250 + 125,500 + 2,510 = 1,538,760; + output-layer weight-norm gains 10 "
        "= 1,538,770"
    ),
)
def build_improved_gan_mlp(input_shape=(1, 28, 28)) -> nn.Module:
    return ImprovedGANDiscriminator(tuple(input_shape))


@register_arch(
    "improved-gan-generator",
    family="improved-gan",
    role="generator",
    source=_SOURCE,
    expected_params=694_568,
    input_shape=(1, 28, 28),
    output="image",
    latent_dim=LATENT_DIM,
    latent="uniform",
    default_mode="improved-gan",
    notes=(
        "Output nonlinearity: openai/improved-gan (the paper's code) ends in a sigmoid, giving pixels in [0, 1]; "
        "Sleepychord/ImprovedGAN-pytorch uses softplus there, which is unbounded. The port uses the original "
        "sigmoid and maps it to gonprof's range with 2*y - 1, so images are in [-1, 1].",
        "Latents: the source samples U(0, 1)^100 inside forward(batch_size); the port takes the (N, 100) latent "
        "as input (spec latent='uniform').",
        "Hidden layers: Linear without bias, BatchNorm1d(affine=False, eps=1e-6) plus a learned shift, softplus, "
        "as in both sources. Running-statistics momentum 0.1 follows openai's 0.9/0.1 moving average "
        "(the PyTorch port uses 0.5); this does not change training-mode outputs or parameter counts.",
        "Output layer: weight-normalised with a learned per-unit gain and a bias (784 + 784 parameters).",
        "Initialisation as in the PyTorch port: Xavier-uniform hidden weights, N(0, 0.1^2) output direction; "
        "openai's data-dependent initialisation is not ported.",
        "Other image shapes: the output layer has C*H*W units (3072 at 3x32x32).",
        "Batch norm uses batch statistics in train mode, so a train-mode batch needs N >= 2 (as in the source); "
        "eval mode uses the running statistics and takes any N.",
    ),
    params_arithmetic=(
        "100*500 + 500 (BN shift) + 500*500 + 500 (BN shift) + (500*784 + 784 bias + 784 gain) "
        "= 50,000 + 500 + 250,000 + 500 + 393,568 = 694,568"
    ),
)
def build_improved_gan_generator(input_shape=(1, 28, 28)) -> nn.Module:
    return ImprovedGANGenerator(tuple(input_shape))
