"""GAS: shrinking LSGAN discriminators with inception, depthwise and dense blocks (seed 002).

Port of SunnerLi/GAS (``module.py``, ``ops.py``, ``model.py`` at commit 2dc78a5, January
2018).  The source is TensorFlow 1.x written with TensorLayer 1.7 layers and
``tf.contrib.slim`` helpers (not Keras); this module rebuilds every network layer for layer
in PyTorch.  What the port has to reproduce from those libraries' defaults:

* ``tl.layers.Conv2d``: 3x3 by default, stride 1, ``SAME`` padding, a bias, no activation,
  weights from a normal truncated at 2 sigma with sigma 0.02, zero bias.
* ``tl.layers.BatchNormLayer``: ``is_train=False`` by default, and the GAS code never passes
  it.  Such a layer normalises with its *moving* statistics (initialised to mean 0 and
  variance 1 and never updated), and it creates beta and gamma with ``trainable=is_train``,
  i.e. *not trainable*.  So the "frozen BN" of the GAS discriminators is a fixed per-channel
  affine map ``gamma * x / sqrt(1 + 1e-5) + beta`` with gamma ~ N(1, 0.002), beta = 0.
  gamma and beta are constants (never trained, never updated), so the port keeps them as
  buffers, like the moving statistics, and evaluates the layer in inference form whatever
  ``train()`` says.
* ``tl.layers.MaxPool2d``: 2x2 window, stride 2, ``SAME`` padding (output ceil(H/2)),
  which is ``nn.MaxPool2d(2, 2, ceil_mode=True)``.
* ``tl.layers.DenseLayer``: weights from a normal truncated at 2 sigma with sigma 0.1.
  It reads the NHWC-flattened features; the port flattens in the same (H, W, C) order.
* ``slim.separable_convolution2d`` / ``slim.convolution2d``: ReLU by default, a bias,
  Glorot-uniform weights.
* ``slim.batch_norm`` / ``tf.contrib.layers.batch_norm``: ``center=True, scale=False``
  (beta only, no gamma), epsilon 1e-3, decay 0.999, batch statistics while training.

Parameter counts: the frozen TensorLayer gamma/beta are buffers because they are constants,
so ``parameters()`` (and any optimizer) sees only what trains, and every GAS network has
``expected_params`` == trainable parameters.  A TensorFlow variable count would add the frozen
gamma/beta and all batch-norm moving statistics (non-trainable variables there, buffers here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gonprof.arch import ShapeError, Source, register_arch

_SOURCE = Source(
    paper=(
        "SunnerLi, 'GAS - Generative Auxiliary Strategy to Accelerate Unconditional GAN "
        "Training' (code and slides, 2018), on LSGAN (Mao et al., arXiv 1611.04076)"
    ),
    repo="SunnerLi/GAS",
    url="https://github.com/SunnerLi/GAS",
)

LATENT_DIM = 100  # evaluate.py: z placeholder [None, 100], generateNoice = N(0, 1)

TL_BN_EPS = 1e-5  # tl.layers.BatchNormLayer default epsilon
SLIM_BN_EPS = 1e-3  # tf.contrib.layers.batch_norm default epsilon
SLIM_BN_DECAY = 0.999  # tf.contrib.layers.batch_norm default decay (PyTorch momentum 0.001)


# --------------------------------------------------------------------------------------
# initialisers (TensorFlow / TensorLayer defaults)
# --------------------------------------------------------------------------------------
def _tf_truncated_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    """tf.truncated_normal_initializer(stddev=std): redraw beyond two standard deviations."""
    return nn.init.trunc_normal_(t, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def _tl_conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    """tl.layers.Conv2d with its defaults: stride 1, SAME padding, bias, N_trunc(0, 0.02)."""
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    _tf_truncated_normal_(conv.weight, 0.02)
    assert conv.bias is not None  # built with a bias
    nn.init.zeros_(conv.bias)
    return conv


def _slim_conv(cin: int, cout: int, k: int, groups: int = 1) -> nn.Conv2d:
    """slim conv (or depthwise conv when groups == cin): SAME padding, bias, Glorot-uniform.

    Glorot's bound depends on fan_in + fan_out only, and for a depthwise kernel TensorFlow's
    [3, 3, C, 1] and PyTorch's (C, 1, 3, 3) give the same sum, so xavier_uniform_ matches.
    """
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups)
    nn.init.xavier_uniform_(conv.weight)
    assert conv.bias is not None  # built with a bias
    nn.init.zeros_(conv.bias)
    return conv


# --------------------------------------------------------------------------------------
# normalisation layers
# --------------------------------------------------------------------------------------
class FrozenTLBatchNorm2d(nn.Module):
    """tl.layers.BatchNormLayer(is_train=False): a batch norm that never trains.

    gamma and beta are buffers: TensorLayer creates them with trainable=False and nothing
    ever updates them, so they are constants, not parameters.  The moving mean and variance
    are buffers fixed at 0 and 1 and the layer always normalises with them, in train() as in
    eval() mode.
    """

    weight: torch.Tensor  # buffers, registered in __init__
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, eps: float = TL_BN_EPS):
        super().__init__()
        self.channels = channels
        self.eps = eps
        gamma = torch.empty(channels).normal_(mean=1.0, std=0.002)
        self.register_buffer("weight", gamma)
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            training=False, momentum=0.0, eps=self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, frozen (TensorLayer is_train=False)"


class SlimBatchNorm(nn.Module):
    """tf.contrib.layers.batch_norm with its defaults: beta only (scale=False), eps 1e-3.

    Batch statistics while training, running statistics in eval mode (decay 0.999, i.e.
    PyTorch momentum 0.001).  Works on (N, C) and (N, C, H, W).
    """

    running_mean: torch.Tensor  # buffers, registered in __init__
    running_var: torch.Tensor

    def __init__(self, channels: int, eps: float = SLIM_BN_EPS, decay: float = SLIM_BN_DECAY):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.momentum = 1.0 - decay
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, None, self.bias,
            training=self.training, momentum=self.momentum, eps=self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, momentum={self.momentum:g}, center only"


# --------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------
class Inception(nn.Module):
    """ops.inception_conv2d: concat[1x1 conv -> n/2, 3x3 conv -> n/2], no activation.

    The source also builds a 1x1 "bottleneck" conv for the 3x3 branch, but then feeds the
    3x3 conv from the block input, so the bottleneck's output is never used; the port
    leaves that dead layer out (see the notes).
    """

    def __init__(self, cin: int, n: int):
        super().__init__()
        half = n // 2
        self.branch1x1 = _tl_conv(cin, half, 1)
        self.branch3x3 = _tl_conv(cin, half, 3)
        self.out_channels = 2 * half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x)], dim=1)


class DepthwiseInception(nn.Module):
    """ops.inception_conv2d_with_pwconv: concat[1x1 -> n/2, 1x1 -> n/2 -> depthwise-separable].

    The separable branch (ops.depthwise_separable_conv2d) is: depthwise 3x3 conv with bias
    and ReLU, slim batch norm, pointwise 1x1 conv to round(n/2 * width) channels with bias
    and ReLU, slim batch norm.  Here the 1x1 squeeze conv *is* used.
    """

    def __init__(self, cin: int, n: int, width_multiplier: float):
        super().__init__()
        half = n // 2
        wide = int(round(half * width_multiplier))
        self.branch1x1 = _tl_conv(cin, half, 1)
        self.squeeze = _tl_conv(cin, half, 1)
        self.depthwise = _slim_conv(half, half, 3, groups=half)
        self.dw_bn = SlimBatchNorm(half)
        self.pointwise = _slim_conv(half, wide, 1)
        self.pw_bn = SlimBatchNorm(wide)
        self.out_channels = half + wide

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw_bn(F.relu(self.depthwise(self.squeeze(x))))
        y = self.pw_bn(F.relu(self.pointwise(y)))
        return torch.cat([self.branch1x1(x), y], dim=1)


class DownBlock(nn.Module):
    """Discriminator_*.add_layer: body -> [frozen BN] -> ReLU -> 2x2 max pool (SAME)."""

    def __init__(self, body: nn.Module, channels: int, with_bn: bool):
        super().__init__()
        self.body = body
        self.bn = FrozenTLBatchNorm2d(channels) if with_bn else nn.Identity()
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)  # TF "SAME": ceil(H / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.body(x))))


class DenseLayer(nn.Module):
    """Discriminator_dense.add_layer: concat[inception(relu(frozen_bn(x))) -> growth, x]."""

    def __init__(self, cin: int, growth: int = 16):
        super().__init__()
        self.bn = FrozenTLBatchNorm2d(cin)
        self.conv = Inception(cin, growth)
        self.out_channels = self.conv.out_channels + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(F.relu(self.bn(x))), x], dim=1)


class Transition(nn.Module):
    """Discriminator_dense.add_transition: frozen BN, ReLU, inception -> 4, 2x2 avg pool (VALID)."""

    def __init__(self, cin: int, n: int = 4):
        super().__init__()
        self.bn = FrozenTLBatchNorm2d(cin)
        self.conv = Inception(cin, n)
        self.pool = nn.AvgPool2d(2, 2)  # tf.layers.average_pooling2d(l, 2, 2): padding 'valid'
        self.out_channels = self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(F.relu(self.bn(x))))


class GASDiscriminator(nn.Module):
    """Feature extractor, then Dense(1) on the NHWC-flattened features; raw score out."""

    def __init__(self, features: nn.Module, channels: int, height: int, width: int):
        super().__init__()
        self.features = features
        self.head = nn.Linear(channels * height * width, 1)
        _tf_truncated_normal_(self.head.weight, 0.1)  # tl.layers.DenseLayer default
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        # TensorFlow flattens NHWC: keep its (H, W, C) order so weights line up.
        h = h.permute(0, 2, 3, 1).flatten(1)
        return self.head(h)


class GASGenerator(nn.Module):
    """model.Generator: fc -> BN -> ReLU, two 5x5 convs whose outputs are reshaped to twice
    the size (a raw NHWC reshape, not a pixel shuffle), and a 5x5 conv with tanh.
    """

    def __init__(self, input_shape=(1, 28, 28), latent_dim: int = LATENT_DIM):
        super().__init__()
        c, h, w = input_shape
        self.image_shape = (c, h, w)
        self.latent_dim = latent_dim
        self.h0, self.w0 = h // 4, w // 4
        self.fc = nn.Linear(latent_dim, self.h0 * self.w0 * 128, bias=False)
        self.bn0 = SlimBatchNorm(self.h0 * self.w0 * 128)
        self.conv1 = nn.Conv2d(128, 4 * 64, 5, padding=2, bias=False)
        self.bn1 = SlimBatchNorm(4 * 64)
        self.conv2 = nn.Conv2d(64, 4 * 32, 5, padding=2, bias=False)
        self.bn2 = SlimBatchNorm(4 * 32)
        self.conv3 = nn.Conv2d(32, c, 5, padding=2)  # no normaliser: has a bias
        init = 0.02  # tf.truncated_normal_initializer(stddev=0.02) on fc, conv1, conv2
        for m in (self.fc, self.conv1, self.conv2):
            _tf_truncated_normal_(m.weight, init)
        nn.init.xavier_uniform_(self.conv3.weight)  # g_conv3 keeps the contrib default
        assert self.conv3.bias is not None  # built with a bias
        nn.init.zeros_(self.conv3.bias)

    @staticmethod
    def _nhwc_reshape(x: torch.Tensor, h: int, w: int, c: int) -> torch.Tensor:
        """tf.reshape of an NHWC tensor to [N, h, w, c], on and back to NCHW tensors."""
        n = x.shape[0]
        return x.permute(0, 2, 3, 1).reshape(n, h, w, c).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        x = F.relu(self.bn0(self.fc(z)))
        x = x.view(n, self.h0, self.w0, 128).permute(0, 3, 1, 2)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self._nhwc_reshape(x, 2 * self.h0, 2 * self.w0, 64)
        x = F.relu(self.bn2(self.conv2(x)))
        x = self._nhwc_reshape(x, 4 * self.h0, 4 * self.w0, 32)
        return torch.tanh(self.conv3(x))


# --------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------
def _same_pooled(size: int, times: int = 4) -> int:
    for _ in range(times):
        size = math.ceil(size / 2)
    return size


def _four_block_discriminator(input_shape, make_body) -> GASDiscriminator:
    """Discriminator_{large,small,inception}.build: four add_layer blocks of width k, 2k, 4k, 8k
    (frozen BN in blocks 2-4 only), then Dense(1).  ``make_body(cin, n)`` -> (module, cout)."""
    c, h, w = input_shape
    blocks, cin = [], c
    for i, n in enumerate((32, 64, 128, 256)):
        body, cout = make_body(cin, n)
        blocks.append(DownBlock(body, cout, with_bn=i > 0))
        cin = cout
    return GASDiscriminator(nn.Sequential(*blocks), cin, _same_pooled(h), _same_pooled(w))


def build_lsgan_original(input_shape=(1, 28, 28)) -> GASDiscriminator:
    def body(cin, n):
        return _tl_conv(cin, n, 3), n

    return _four_block_discriminator(input_shape, body)


def build_inception(input_shape=(1, 28, 28), base: int = 32, name: str = "inception") -> GASDiscriminator:
    c, h, w = input_shape
    blocks, cin = [], c
    for i, mult in enumerate((1, 2, 4, 8)):
        body = Inception(cin, base * mult)
        blocks.append(DownBlock(body, body.out_channels, with_bn=i > 0))
        cin = body.out_channels
    return GASDiscriminator(nn.Sequential(*blocks), cin, _same_pooled(h), _same_pooled(w))


def build_depthwise_inception(input_shape=(1, 28, 28), base: int = 32) -> GASDiscriminator:
    c, h, w = input_shape
    blocks, cin = [], c
    for i, mult in enumerate((1, 2, 4, 8)):
        body = DepthwiseInception(cin, base * mult, width_multiplier=4)
        blocks.append(DownBlock(body, body.out_channels, with_bn=i > 0))
        cin = body.out_channels
    return GASDiscriminator(nn.Sequential(*blocks), cin, _same_pooled(h), _same_pooled(w))


def build_depthwise_inception_dense(input_shape=(1, 28, 28), base: int = 16, growth: int = 16,
                                    n_blocks: int = 3, layers_per_block: int = 3) -> GASDiscriminator:
    c, h, w = tuple(input_shape)
    hf, wf = h, w
    for _ in range(n_blocks):
        hf, wf = hf // 2, wf // 2
    if hf < 1 or wf < 1:
        need = 2 ** n_blocks
        raise ShapeError(
            f"depthwise-inception-dense: {n_blocks} unpadded 2x2 average pools need H and W >= {need}, "
            f"got {h}x{w}"
        )
    stem = DepthwiseInception(c, base, width_multiplier=1)
    mods: list[nn.Module] = [stem]
    cin = stem.out_channels
    for _ in range(n_blocks):
        for _ in range(layers_per_block):
            layer = DenseLayer(cin, growth)
            mods.append(layer)
            cin = layer.out_channels
        trans = Transition(cin, 4)
        mods.append(trans)
        cin = trans.out_channels
    return GASDiscriminator(nn.Sequential(*mods), cin, hf, wf)


def build_generator(input_shape=(1, 28, 28)) -> GASGenerator:
    c, h, w = tuple(input_shape)
    if h % 4 or w % 4:
        raise ShapeError(f"gas-generator: H and W must be multiples of 4 (two 2x reshapes from H/4), got {h}x{w}")
    return GASGenerator((c, h, w))


# --------------------------------------------------------------------------------------
# registry entries
# --------------------------------------------------------------------------------------
_COMMON_D = dict(
    family="gas",
    role="discriminator",
    source=_SOURCE,
    output="score",
    default_mode="lsgan",
    default_generator="gas-generator",
    extra={"source_score_activation": "sigmoid"},
    # --checkpoint D recomputes one add_layer block (conv body, BN, pool) at a time
    blocks=tuple(f"features.{i}" for i in range(4)),
)

_SIGMOID_NOTE = (
    "The source ends in DenseLayer(1, act=sigmoid) and applies the least-squares losses to that "
    "sigmoid output ((sigmoid(D)-1)^2 / 2 summed over the batch); the port returns the raw "
    "pre-sigmoid score, so a faithful LSGAN step applies the sigmoid inside its loss."
)
_FROZEN_NOTE = (
    "Frozen BN (blocks 2-4): tl.layers.BatchNormLayer is built with its default is_train=False, which "
    "makes beta and gamma non-trainable and normalises with moving statistics that stay at mean 0 / "
    "variance 1 forever, so the layer is the fixed map gamma*x/sqrt(1+1e-5)+beta (gamma ~ N(1, 0.002), "
    "beta 0). gamma/beta are constants, so the port keeps them as buffers, like the moving statistics, "
    "and uses them in train and eval mode alike: parameters() (and optimizers) see only what trains."
)
_COUNT_NOTE = (
    "Counting: TensorFlow lists 4 variables per TensorLayer BN channel (beta, gamma, moving mean, moving "
    "variance; none trainable here) and 3 per slim BN channel (beta trainable, 2 moving stats). In the "
    "port the frozen gamma/beta and all moving statistics are buffers, so expected_params = trainable "
    "parameters; a TensorFlow variable count would add those buffers on top."
)
_POOL_NOTE = (
    "tl.layers.MaxPool2d in TensorLayer 1.7 (the version of January 2018) is 2x2, stride 2, SAME padding "
    "(ceil(H/2): 28->14->7->4->2), ported as nn.MaxPool2d(2, 2, ceil_mode=True); any H, W >= 1 is accepted. "
    "Later TensorLayer versions default to a 3x3 window, which would not change any count."
)
_SHAPE_NOTE = (
    "The pinned count is for 1x28x28; the first conv's input channels and the Dense(1) width "
    "(C_last * ceil(H/16) * ceil(W/16)) follow the input shape. The Dense(1) reads features in "
    "TensorFlow's NHWC flatten order."
)
_DEAD_BOTTLENECK_NOTE = (
    "Source bug kept as behaviour: ops.inception_conv2d builds a 1x1 'bottleneck' conv for the 3x3 branch "
    "but then applies the 3x3 conv to the block input, so the bottleneck's output is never used (its "
    "variables exist in the TF graph but never receive a gradient). The port omits the dead conv; with it "
    "the TF variable list would hold {dead} more weights. (The repo's later PyTorch wrapper does chain the "
    "bottleneck; the studied TF model does not.)"
)


@register_arch(
    "lsgan-original",
    expected_params=388_865,
    expected_trainable=388_865,
    notes=(
        "GAS case 1 (Discriminator_large): the original LSGAN discriminator of the study.",
        _FROZEN_NOTE,
        _COUNT_NOTE,
        _POOL_NOTE,
        _SHAPE_NOTE,
        _SIGMOID_NOTE,
    ),
    params_arithmetic=(
        "conv (1*9*32+32) + (32*9*64+64) + (64*9*128+128) + (128*9*256+256) "
        "+ dense (2*2*256+1) = 320 + 18,496 + 73,856 + 295,168 + 1,025 = 388,865 (all trainable) "
        "+ frozen BN gamma/beta 2*(64+128+256) = 896 and moving stats 896 as buffers "
        "(TensorFlow would count them as variables: 390,657)"
    ),
    **_COMMON_D,
)
def lsgan_original(input_shape=(1, 28, 28)):
    return build_lsgan_original(input_shape)


def _inception_arith(k: int) -> tuple[str, int, int]:
    parts, cin, trainable = [], 1, 0
    for n in (k, 2 * k, 4 * k, 8 * k):
        half = n // 2
        parts.append(f"({cin}*{half}+{half}) + (9*{cin}*{half}+{half})")
        trainable += (cin * half + half) + (9 * cin * half + half)
        cin = n
    parts.append(f"(2*2*{cin}+1)")
    trainable += 4 * cin + 1
    frozen = 2 * (2 * k + 4 * k + 8 * k)
    text = (
        f"{' + '.join(parts)} = {trainable:,} (all trainable) + frozen BN gamma/beta "
        f"2*({2 * k}+{4 * k}+{8 * k}) = {frozen:,} and moving stats {frozen:,} as buffers "
        f"(TensorFlow would count them as variables: {trainable + 2 * frozen:,})"
    )
    return text, trainable, frozen


def _register_inception(k: int, case: int, total_pin: int):
    text, trainable, _ = _inception_arith(k)
    assert trainable == total_pin, (k, trainable)
    dead = sum(c * (n // 2) + n // 2 for c, n in zip((1, k, 2 * k, 4 * k), (k, 2 * k, 4 * k, 8 * k)))
    name = f"inception-k{k}"

    def builder(input_shape=(1, 28, 28)):
        return build_inception(input_shape, base=k, name=name)

    builder.__name__ = builder.__qualname__ = f"inception_k{k}"
    register_arch(
        name,
        expected_params=total_pin,
        notes=(
            f"GAS case {case} (Discriminator_inception, base_filter={k}): four inception blocks of widths "
            f"{k}, {2 * k}, {4 * k}, {8 * k}, each concat[1x1 conv -> n/2, 3x3 conv -> n/2] (no activation "
            "inside), then frozen BN (blocks 2-4), ReLU, 2x2 max pool.",
            _DEAD_BOTTLENECK_NOTE.format(dead=f"{dead:,}"),
            _FROZEN_NOTE,
            _COUNT_NOTE,
            _POOL_NOTE,
            _SHAPE_NOTE,
            _SIGMOID_NOTE,
        ),
        params_arithmetic=text,
        **_COMMON_D,
    )(builder)


_register_inception(32, 3, 216_705)
_register_inception(16, 5, 54_593)
_register_inception(8, 6, 13_857)


@register_arch(
    "depthwise-inception",
    expected_params=202_193,
    notes=(
        "GAS case 2 (Discriminator_small): the four blocks of case 3 with ops.inception_conv2d_with_pwconv "
        "(width_multiplier 4): concat[1x1 -> n/2, 1x1 -> n/2 -> depthwise 3x3 (+bias, ReLU) -> slim BN -> "
        "pointwise 1x1 -> 2n (+bias, ReLU) -> slim BN], so a block of width n emits n/2 + 2n = 5n/2 "
        "channels (80, 160, 320, 640 for k=32), then frozen BN (blocks 2-4), ReLU, 2x2 max pool.",
        "Here the 1x1 squeeze conv of the separable branch is used (unlike the plain inception blocks).",
        "slim BN = tf.contrib.layers.batch_norm defaults: beta only (scale=False), eps 1e-3, decay 0.999 "
        "(momentum 0.001), batch statistics in training. The source never runs the UPDATE_OPS that update "
        "its moving statistics and never switches is_training off; the port updates PyTorch running "
        "statistics in train mode and uses them in eval mode.",
        _FROZEN_NOTE,
        _COUNT_NOTE,
        _POOL_NOTE,
        _SHAPE_NOTE,
        _SIGMOID_NOTE,
    ),
    params_arithmetic=(
        "per block of width n on c input channels: (c*n/2+n/2) 1x1 + (c*n/2+n/2) squeeze + (9*n/2+n/2) "
        "depthwise + n/2 beta + (n/2*2n+2n) pointwise + 2n beta: "
        "[(1*16+16) + (1*16+16) + (9*16+16) + 16 + (16*64+64) + 64] "
        "+ [(80*32+32) + (80*32+32) + (9*32+32) + 32 + (32*128+128) + 128] "
        "+ [(160*64+64) + (160*64+64) + (9*64+64) + 64 + (64*256+256) + 256] "
        "+ [(320*128+128) + (320*128+128) + (9*128+128) + 128 + (128*512+512) + 512] "
        "+ (2*2*640+1) = 1,392 + 9,888 + 38,208 + 150,144 + 2,561 = 202,193 (all trainable) "
        "+ frozen BN gamma/beta 2*(160+320+640) = 2,240 and moving stats 2,240 as buffers "
        "(+ slim moving stats 2*1,200 = 2,400 buffers; TensorFlow would count all 6,880 as variables: 209,073)"
    ),
    **_COMMON_D,
)
def depthwise_inception(input_shape=(1, 28, 28)):
    return build_depthwise_inception(input_shape)


@register_arch(
    "depthwise-inception-dense",
    expected_params=21_033,
    notes=(
        "GAS case 4 (Discriminator_dense, base_filter=16): stem inception_conv2d_with_pwconv(16, width 1) "
        "-> 8 + 8 = 16 channels (no BN/ReLU/pool after it), then 3 dense blocks, each 3 dense layers "
        "(frozen BN + ReLU -> inception(16) -> concat[new 16, input]) and a transition (frozen BN + ReLU -> "
        "inception(4) -> 2x2 average pool, VALID), then Dense(1) on 4 x 3 x 3 features.",
        "The README says '4 dense block'; the code builds 3 (blocks '2', '3', '4'); the port follows the code. "
        "add_block's n_filter argument is unused in the source: growth rate 16 and transition width 4 are fixed.",
        "The transition squeezes every block's output to 4 channels, which is why this net is so small.",
        "The dense blocks use ops.inception_conv2d, so they carry the same dead 1x1 bottleneck as cases 3/5/6 "
        "(the port omits it; the TF graph would hold (136+264+392+130) + 2*(40+168+296+106) = 922 + 2*610 "
        "= 2,142 more weights).",
        _FROZEN_NOTE,
        _COUNT_NOTE,
        "Needs H, W >= 8 (three unpadded 2x2 average pools); smaller inputs raise ShapeError. The pinned count "
        "is for 1x28x28; Dense(1) reads 4 * (H//8) * (W//8) features in NHWC order.",
        _SIGMOID_NOTE,
    ),
    params_arithmetic=(
        "stem (1*8+8) + (1*8+8) + (9*8+8) + 8 + (8*8+8) + 8 = 200; "
        "block 1 (16 -> 64 ch): [(16*8+8) + (9*16*8+8)] + [(32*8+8) + (9*32*8+8)] + [(48*8+8) + (9*48*8+8)] "
        "+ transition [(64*2+2) + (9*64*2+2)] = 9,012; "
        "blocks 2 and 3 (4 -> 52 ch): [(4*8+8) + (9*4*8+8)] + [(20*8+8) + (9*20*8+8)] + [(36*8+8) + (9*36*8+8)] "
        "+ transition [(52*2+2) + (9*52*2+2)] = 5,892 each; dense (4*3*3+1) = 37; "
        "total 200 + 9,012 + 2*5,892 + 37 = 21,033 (all trainable) + frozen BN gamma/beta "
        "2*[(16+32+48+64) + 2*(4+20+36+52)] = 768 and moving stats 768 as buffers "
        "(+ stem slim moving stats 2*(8+8) = 32 buffers; TensorFlow would count all 1,568 as variables: 22,601)"
    ),
    **{**_COMMON_D, "blocks": tuple(f"features.{i}" for i in range(13))},  # stem, 3 x (3 layers, transition)
)
def depthwise_inception_dense(input_shape=(1, 28, 28)):
    return build_depthwise_inception_dense(input_shape)


@register_arch(
    "gas-generator",
    family="gas",
    role="generator",
    source=_SOURCE,
    output="image",
    latent_dim=LATENT_DIM,
    latent="normal",
    default_mode="lsgan",
    expected_params=1_658_657,
    notes=(
        "model.Generator (TF, the one every GAS case trains against): z ~ N(0, 1)^100 -> fully_connected "
        "7*7*128 (no bias: it has a normaliser) -> BN -> ReLU -> reshape 7x7x128 -> conv5x5 256 (no bias) -> "
        "BN -> ReLU -> reshape 14x14x64 -> conv5x5 128 (no bias) -> BN -> ReLU -> reshape 28x28x32 -> "
        "conv5x5 1 (+bias) -> tanh.",
        "The 2x upsamplings are raw tf.reshape calls on NHWC tensors (they interleave channel groups across "
        "pixels; not depth_to_space); the port reproduces that exact element order.",
        "Batching fix: the source hard-codes the batch size 32 in its reshapes; the port uses the actual batch.",
        "BN = tf.contrib.layers.batch_norm defaults: beta only (scale=False), eps 1e-3, decay 0.999. The "
        "source never runs its UPDATE_OPS and never leaves is_training=True (it samples with batch "
        "statistics); the port uses batch statistics in train mode and running statistics in eval mode. "
        "In train mode a batch of 1 cannot be normalised by the fc BN (PyTorch raises); use eval mode.",
        "Parameters: all trainable; the BN moving statistics are 2*(6,272+256+128) = 13,312 buffers "
        "(TensorFlow would count them as non-trainable variables: 1,671,969 in all).",
        "Shapes: H and W must be multiples of 4 (the fc emits (H/4)x(W/4)x128); C output channels. The "
        "pinned count is for 1x28x28.",
        "The source feeds real images in [0, 1] (pixels / 255) against this tanh output in [-1, 1]; gonprof "
        "feeds reals in [-1, 1].",
        "The repo's wrapper/generator.py is a different (transposed-conv) PyTorch generator that the study "
        "does not use; it is not ported.",
    ),
    params_arithmetic=(
        "(100*7*7*128) fc + 7*7*128 beta + (5*5*128*256) + 256 beta + (5*5*64*128) + 128 beta "
        "+ (5*5*32*1+1) = 627,200 + 6,272 + 819,200 + 256 + 204,800 + 128 + 801 = 1,658,657"
    ),
)
def gas_generator(input_shape=(1, 28, 28)):
    return build_generator(input_shape)
