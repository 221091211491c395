"""GAN: the standard (non-saturating) GAN with binary cross-entropy, after the Keras MNIST MLP tutorial.

One step = one discriminator update then one generator update (``d_step``, ``g_step``):

* ``d_step``: fakes ``G(z)`` (no gradient into G), ``z ~ N(0, 1)^100``; the
  discriminator is trained on the real and fake images *as one batch*
  (Keras' ``discriminator.train_on_batch(concat(real, fake), y)``), loss
  ``BCEWithLogits`` averaged over the 2N images, real labels 1, fake 0;
* ``g_step``: fresh ``z``; ``BCEWithLogits(D(G(z)), 1)`` with D's parameters
  frozen (Keras sets ``discriminator.trainable = False`` inside the GAN model).

Adam lr 2e-4, beta1 0.5, batch 128.  The tutorial's text (seed 003) says
"Learning rate=0.02"; the Keras MNIST GAN code it follows (and every copy of
it) builds ``Adam(lr=0.0002, beta_1=0.5)``; gonprof uses the code's value and
offers the text's as preset ``article-lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ._common import GANStep, adam, detached, frozen
from .base import BATCH_SIZE, LEARNING_RATE, Param, no_phase, register_mode, updates

DEFAULTS = {
    "batch_size": 128,     # "we define a batch (say batch_size=128)"
    "lr": 2e-4,            # Adam(lr=0.0002, beta_1=0.5) in the tutorial's Keras code
    "betas": (0.5, 0.999),
    "d_steps": 1,          # alternate: one D batch, one G batch
    "g_steps": 1,
    "real_label": 1.0,     # some copies of the tutorial smooth to 0.9
}
PRESETS = {"article-lr": {"lr": 0.02}, "smooth": {"real_label": 0.9}}


class GANBCEStep(GANStep):
    mode = "gan"
    phases = ("d_step", "g_step")

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None,
             phase: Callable[[str], Any] = no_phase) -> dict[str, torch.Tensor]:
        hp = self.hparams
        n = real.shape[0]
        d_losses, g_losses = [], []

        def d_loss(lo: int, hi: int) -> torch.Tensor:
            m = hi - lo
            fake = self.fake_nograd(m)
            out = self.score(torch.cat([real[lo:hi], fake]))
            target = torch.cat([torch.full((m, 1), float(hp["real_label"]), device=out.device),
                                torch.zeros(m, 1, device=out.device)]).to(out.dtype)
            return F.binary_cross_entropy_with_logits(out.reshape(2 * m, -1)[:, :1], target)

        def g_loss(lo: int, hi: int) -> torch.Tensor:
            out = self.score(self.fake(hi - lo))
            return F.binary_cross_entropy_with_logits(out.reshape(hi - lo, -1)[:, :1], torch.ones_like(out[:, :1]))

        with phase("d_step"):
            for _ in range(int(hp["d_steps"])):
                d_losses.append(self.accumulate(self.optimizers["D"], d_loss, n, mean=True))
        with phase("g_step"):
            for _ in range(int(hp["g_steps"])):
                with frozen(self.D):
                    g_losses.append(self.accumulate(self.optimizers["G"], g_loss, n, mean=True))
        return detached({"d_loss": torch.stack(d_losses).mean(), "g_loss": torch.stack(g_losses).mean()})


@register_mode(
    "gan",
    summary="standard GAN, BCE with logits (non-saturating G loss), Adam 2e-4 (0.5, 0.999)",
    phases=GANBCEStep.phases,
    default_arch="mlp-gan",
    needs_generator=True,
    micro_batches=True,
    scaled_updates=True,
    outputs=("score", "logits[2]"),
    params={"batch_size": BATCH_SIZE, "lr": LEARNING_RATE, "d_steps": updates(), "g_steps": updates(),
            "real_label": Param("float", low=0.0, high=1.0)},
    defaults=DEFAULTS,
    presets=PRESETS,
    source="Keras MNIST MLP GAN tutorial (seed 003, Sawarn, Towards AI)",
    notes=(
        "lr: the article's text says 0.02, the Keras code it follows uses Adam(lr=0.0002, beta_1=0.5); "
        "gonprof uses 2e-4 (preset article-lr gives 0.02).",
        "D sees real and fake images as one concatenated batch (Keras train_on_batch); G is trained "
        "through D with D's parameters frozen.",
        "Fallback generator when the discriminator names none: mlp-gan-generator.",
    ),
)
def make_gan(D, D_spec, G, G_spec, hparams, device) -> GANBCEStep:
    return GANBCEStep(D, D_spec, G, G_spec, hparams, device, adam(D.parameters(), hparams),
                      adam(G.parameters(), hparams))
