"""Deterministic, seeded corruptions of images in ``[-1, 1]``: what generative models get wrong.

Every function takes images ``(N, C, H, W)`` (or ``(N, H, W)``, or one image
``(H, W)``) in ``[-1, 1]`` and returns a new float32 tensor of the same
shape, clamped to ``[-1, 1]``; the input is never modified.  Background is
``-1`` (MNIST: white strokes on black), so whatever a corruption brings in
from outside the frame is ``-1``.  Random corruptions take a ``seed`` (or a
``torch.Generator``): the same seed gives the same bits.

- :func:`salt_and_pepper`: each pixel, with probability ``p``, becomes ``-1``
  or ``+1`` (equally likely);
- :func:`gaussian_noise`: ``x + sigma * N(0, 1)``;
- :func:`blur`: separable Gaussian blur of standard deviation ``sigma`` pixels
  (kernel radius ``ceil(3 sigma)``, borders padded with background);
- :func:`binarise`: ``+1`` where ``x > threshold``, else ``-1``;
- :func:`shift`: an exact integer translation, background coming in; with
  ``pixels`` and a seed, each image moves that far up, down, left or right;
- :func:`thicken` / :func:`thin`: grey-level dilation / erosion (max / min
  over a disc of radius ``r``: ``r = 1`` the 5-pixel plus, ``1.5`` the 3x3
  square, ``2`` the 13-pixel diamond-disc).

:data:`CORRUPTIONS` names three strengths of each (``mild``, ``moderate``,
``strong``), the ones the validation table uses (:mod:`gonprof.metrics.validation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

BACKGROUND = -1.0
STRENGTHS = ("mild", "moderate", "strong")

Seed = int | torch.Generator | None


def _gen(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def _as4d(x) -> tuple[torch.Tensor, tuple[int, ...]]:
    x = torch.as_tensor(x)
    shape = tuple(x.shape)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), (N, H, W) or (H, W), got shape {shape}")
    return x.detach().to("cpu", torch.float32), shape


def _out(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return x.clamp(-1.0, 1.0).reshape(shape).contiguous()


def salt_and_pepper(x, p: float, seed: Seed = 0) -> torch.Tensor:
    """Each pixel independently, with probability ``p``, set to ``-1`` or ``+1`` (a fair coin)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    x, shape = _as4d(x)
    g = _gen(seed)
    hit = torch.rand(x.shape, generator=g) < p
    value = torch.where(torch.rand(x.shape, generator=g) < 0.5, -1.0, 1.0)
    return _out(torch.where(hit, value, x), shape)


def gaussian_noise(x, sigma: float, seed: Seed = 0) -> torch.Tensor:
    """``x + sigma * N(0, 1)`` per pixel, clamped to ``[-1, 1]``."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    x, shape = _as4d(x)
    return _out(x + sigma * torch.randn(x.shape, generator=_gen(seed)), shape)


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-d Gaussian weights on ``-ceil(3 sigma) .. ceil(3 sigma)`` (``[1.]`` for sigma 0)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return torch.ones(1)
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    return (k / k.sum()).float()


def blur(x, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (standard deviation ``sigma`` pixels); the frame is padded with background."""
    x, shape = _as4d(x)
    k = gaussian_kernel1d(sigma)
    r = (len(k) - 1) // 2
    if r == 0:
        return _out(x.clone(), shape)
    n, c, h, w = x.shape
    y = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), value=BACKGROUND)
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return _out(y.reshape(n, c, h, w), shape)


def binarise(x, threshold: float = 0.0) -> torch.Tensor:
    """``+1`` where ``x > threshold``, ``-1`` elsewhere."""
    x, shape = _as4d(x)
    return _out(torch.where(x > threshold, 1.0, -1.0), shape)


def translate(x, dy: int, dx: int, fill: float = BACKGROUND) -> torch.Tensor:
    """Move every image ``dy`` pixels down and ``dx`` right (negative: up / left), exactly; ``fill`` comes in."""
    x, shape = _as4d(x)
    dy, dx = int(dy), int(dx)
    h, w = x.shape[-2:]
    out = torch.full_like(x, fill)
    if abs(dy) < h and abs(dx) < w:
        out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return _out(out, shape)


_DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right


def shift(x, pixels: int, seed: Seed = 0) -> torch.Tensor:
    """Each image moved ``pixels`` up, down, left or right (direction drawn per image with ``seed``)."""
    x, shape = _as4d(x)
    d = torch.randint(0, 4, (x.shape[0],), generator=_gen(seed))
    out = torch.empty_like(x)
    for k, (sy, sx) in enumerate(_DIRECTIONS):
        m = d == k
        if m.any():
            out[m] = translate(x[m], sy * pixels, sx * pixels)
    return _out(out, shape)


def disc_offsets(radius: float) -> list[tuple[int, int]]:
    """Integer offsets ``(dy, dx)`` with ``dy^2 + dx^2 <= radius^2``."""
    r = int(math.floor(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius]


def _morph(x, radius: float, op) -> torch.Tensor:
    x, shape = _as4d(x)
    acc = x.clone()
    for dy, dx in disc_offsets(radius):
        if (dy, dx) != (0, 0):
            acc = op(acc, translate(x, dy, dx))
    return _out(acc, shape)


def thicken(x, radius: float = 1.0) -> torch.Tensor:
    """Grey-level dilation: each pixel the maximum over a disc of ``radius`` (strokes grow)."""
    return _morph(x, radius, torch.maximum)


def thin(x, radius: float = 1.0) -> torch.Tensor:
    """Grey-level erosion: each pixel the minimum over a disc of ``radius`` (strokes shrink)."""
    return _morph(x, radius, torch.minimum)


@dataclass(frozen=True)
class Corruption:
    """A named corruption with its three named strengths (``levels``: the parameter at each)."""

    name: str
    parameter: str
    levels: tuple[float, float, float]
    fn: Callable[..., torch.Tensor]
    seeded: bool
    unit: str = ""

    def label(self, level: int) -> str:
        v = self.levels[level]
        if self.unit == "%":
            return f"{100 * v:g}%"
        return f"{self.parameter} {v:g}{self.unit}"

    def __call__(self, x, level: int | str, seed: Seed = 0) -> torch.Tensor:
        i = STRENGTHS.index(level) if isinstance(level, str) else int(level)
        v = self.levels[i]
        return self.fn(x, v, seed) if self.seeded else self.fn(x, v)


def _shift_px(x, v, seed):
    return shift(x, int(v), seed)


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("salt-and-pepper", "p", (0.05, 0.10, 0.20), salt_and_pepper, True, "%"),
    Corruption("gaussian-noise", "sigma", (0.1, 0.25, 0.5), gaussian_noise, True),
    Corruption("blur", "sigma", (0.5, 1.0, 1.5), blur, False, " px"),
    Corruption("binarise", "threshold", (0.0, 0.5, 0.9), binarise, False),
    Corruption("shift", "by", (1, 2, 3), _shift_px, True, " px"),
    Corruption("thicken", "radius", (1.0, 1.5, 2.0), thicken, False, " px"),
    Corruption("thin", "radius", (1.0, 1.5, 2.0), thin, False, " px"),
)}


def corrupt(x, name: str, level: int | str, seed: Seed = 0) -> torch.Tensor:
    """``CORRUPTIONS[name]`` at ``level`` (0-2 or mild / moderate / strong)."""
    try:
        c = CORRUPTIONS[name]
    except KeyError:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}") from None
    return c(x, level, seed)


def uniform_noise(n: int, shape: tuple[int, ...] = (1, 28, 28), seed: Seed = 0) -> torch.Tensor:
    """``n`` images of independent uniform noise in ``[-1, 1]``."""
    return torch.rand((n, *shape), generator=_gen(seed)) * 2 - 1
