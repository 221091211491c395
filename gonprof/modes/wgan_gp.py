"""WGAN-GP (Gulrajani et al. 2017, ``improved_wgan_training/gan_mnist.py``).

One step = one generator iteration: ``d_steps = 5`` critic updates (``n_critic``, the name WGAN-GP
uses, is an alias), then one generator update.

* critic (``d_step``): ``mean(D(fake)) - mean(D(real)) + lambda * mean((||grad_x D(x_hat)||_2 - 1)^2)``
  with ``x_hat = a * real + (1 - a) * fake``, ``a ~ U[0, 1]`` per sample, lambda 10;
  the penalty's gradient is taken with ``create_graph=True`` (double backward);
* generator (``g_step``): ``-mean(D(G(z)))``, ``z ~ N(0, 1)``, D's parameters frozen.

Adam lr 1e-4, betas (0.5, 0.9) as in the MNIST script (``beta1=0.5, beta2=0.9``);
the paper's Algorithm 1 uses (0, 0.9): preset ``beta0``.  Batch 50 (``BATCH_SIZE = 50``).

Each critic update of a step draws fresh noise and fresh interpolation weights
but reuses the step's real batch (the source draws a new real batch for each
of the 5 critic updates; gonprof's trainer hands a step one batch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._common import GANStep, adam, detached, frozen
from .base import BATCH_SIZE, LEARNING_RATE, Param, no_phase, register_mode, updates

DEFAULTS = {
    "batch_size": 50,         # gan_mnist.py BATCH_SIZE = 50
    "lr": 1e-4,               # tf.train.AdamOptimizer(learning_rate=1e-4, beta1=0.5, beta2=0.9)
    "betas": (0.5, 0.9),
    "d_steps": 5,             # CRITIC_ITERS = 5 (the critic updates; old name n_critic)
    "gp_weight": 10.0,        # LAMBDA = 10
}
PRESETS = {"beta0": {"betas": (0.0, 0.9)}}


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    a = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    out = D(x_hat)
    (g,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


class WGANGPStep(GANStep):
    mode = "wgan-gp"
    phases = ("d_step", "g_step")

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None,
             phase: Callable[[str], Any] = no_phase) -> dict[str, torch.Tensor]:
        hp = self.hparams
        n = real.shape[0]
        d_losses, gps, wds = [], [], []
        parts: dict[str, list[torch.Tensor]] = {"gp": [], "wd": []}

        def d_loss(lo: int, hi: int) -> torch.Tensor:
            fake = self.fake_nograd(hi - lo)
            d_real = self.score(real[lo:hi]).mean()
            d_fake = self.score(fake).mean()
            gp = gradient_penalty(self.score, real[lo:hi], fake)
            w = (hi - lo) / n
            parts["gp"].append(gp.detach() * w)
            parts["wd"].append((d_real - d_fake).detach() * w)
            return d_fake - d_real + float(hp["gp_weight"]) * gp

        with phase("d_step"):
            for _ in range(int(hp["d_steps"])):
                parts["gp"].clear()
                parts["wd"].clear()
                d_losses.append(self.accumulate(self.optimizers["D"], d_loss, n, mean=True))
                gps.append(torch.stack(parts["gp"]).sum())
                wds.append(torch.stack(parts["wd"]).sum())
        with phase("g_step"):
            with frozen(self.D):
                g_loss = self.accumulate(self.optimizers["G"], lambda lo, hi: -self.score(self.fake(hi - lo)).mean(),
                                         n, mean=True)
        return detached({"d_loss": torch.stack(d_losses).mean(), "g_loss": g_loss,
                         "gp": torch.stack(gps).mean(), "wasserstein": torch.stack(wds).mean()})


@register_mode(
    "wgan-gp",
    summary="Wasserstein GAN with gradient penalty 10, 5 critic updates per G update, Adam 1e-4 (0.5, 0.9)",
    phases=WGANGPStep.phases,
    default_arch="dcd-mnist-sn",
    needs_generator=True,
    micro_batches=True,
    scaled_updates=True,
    outputs=("score", "logits[2]"),
    params={"batch_size": BATCH_SIZE, "lr": LEARNING_RATE, "d_steps": updates(),
            "gp_weight": Param("float", low=0.0, high=10_000.0)},
    defaults=DEFAULTS,
    presets=PRESETS,
    source="Gulrajani et al. 2017, arXiv 1704.00028; igul222/improved_wgan_training gan_mnist.py",
    notes=(
        "The 5 critic updates of a step reuse the step's real batch (fresh noise and interpolation each); "
        "the source draws a new real batch for each.",
        "Preset beta0: Adam betas (0, 0.9) as in the paper's Algorithm 1.",
        "Fallback generator when the discriminator names none: dcd-mnist-generator (the WGAN-GP MNIST "
        "generator that DCD reuses).",
    ),
)
def make_wgan_gp(D, D_spec, G, G_spec, hparams, device) -> WGANGPStep:
    return WGANGPStep(D, D_spec, G, G_spec, hparams, device, adam(D.parameters(), hparams),
                      adam(G.parameters(), hparams))
