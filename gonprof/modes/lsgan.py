"""LSGAN as GAS trains it (SunnerLi/GAS, ``evaluate.py`` and ``model.py``).

One step = one GAS iteration: **one discriminator update, then four generator
updates** (``for j in range(4): sess.run(gen_train_op)``: "Should update
generator to avoid mode collapse"), each with fresh ``z ~ N(0, 1)^100``,
batch 32.

Losses (``model.py`` ``LSGAN.build``), on the discriminator's output after the
sigmoid its TF head applies (``DenseLayer(n_units=1, act=tf.nn.sigmoid)``;
gonprof's discriminators return the raw score, so the mode applies the
sigmoid: hparam ``sigmoid``):

* D: ``sum((D(x) - 1)^2 + D(G(z))^2) / 2``
* G: ``sum((D(G(z)) - 1)^2) / 2``

summed over the batch (``tf.reduce_sum``), D and G called separately on real
and fake batches.  Optimiser ``tf.train.RMSPropOptimizer(0.001)`` for both:
TF 1.x semantics are decay 0.9, epsilon 1e-10, and the mean square
initialised to **1** (not 0); gonprof reproduces them with ``torch.optim.RMSprop
(alpha=0.9, eps=1e-10)`` whose ``square_avg`` state starts at ones (hparam
``tf_rmsprop``; ``False`` gives plain ``torch.optim.RMSprop(lr)``).  TF adds
epsilon inside the square root, torch outside: at 1e-10 the difference is
below float32 resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._common import GANStep, detached, frozen
from .base import BATCH_SIZE, LEARNING_RATE, Param, no_phase, register_mode, updates

DEFAULTS = {
    "batch_size": 32,      # evaluate.py: batch_size = 32
    "lr": 1e-3,            # RMSPropOptimizer(0.001) for D and G
    "d_steps": 1,          # one dis_train_op ...
    "g_steps": 4,          # ... then `for j in range(4)` gen_train_op
    "sigmoid": True,       # the TF discriminators end in a sigmoid; the loss is on D's probability
    "reduction": "sum",    # tf.reduce_sum(...) / 2
    "tf_rmsprop": True,    # TF 1.x RMSProp: decay 0.9, eps 1e-10, mean square initialised to 1
}
PRESETS = {
    "pytorch-wrapper": {"batch_size": 128, "d_steps": 5, "g_steps": 1, "tf_rmsprop": False, "sigmoid": False},
}


def rmsprop(params, lr: float, tf_style: bool) -> torch.optim.RMSprop:
    params = [p for p in params if p.requires_grad]
    if not tf_style:
        return torch.optim.RMSprop(params, lr=lr)
    opt = torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-10)
    for p in params:  # TF 1.x initialises the "rms" slot to ones
        opt.state[p] = {"step": torch.tensor(0.0),
                        "square_avg": torch.ones_like(p, memory_format=torch.preserve_format)}
    return opt


class LSGANStep(GANStep):
    mode = "lsgan"
    phases = ("d_step", "g_step")

    def _score(self, out):
        out = out.reshape(out.shape[0], -1)[:, :1]
        return torch.sigmoid(out) if self.hparams["sigmoid"] else out

    def _reduce(self, t):
        return t.sum() if self.hparams["reduction"] == "sum" else t.mean()

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None,
             phase: Callable[[str], Any] = no_phase) -> dict[str, torch.Tensor]:
        hp = self.hparams
        n = real.shape[0]
        d_losses, g_losses = [], []
        mean = hp["reduction"] == "mean"

        def d_loss(lo: int, hi: int) -> torch.Tensor:
            fake = self.fake_nograd(hi - lo)
            s_real = self._score(self.score(real[lo:hi]))
            s_fake = self._score(self.score(fake))
            return (self._reduce((s_real - 1) ** 2) + self._reduce(s_fake ** 2)) / 2

        def g_loss(lo: int, hi: int) -> torch.Tensor:
            s_fake = self._score(self.score(self.fake(hi - lo)))
            return self._reduce((s_fake - 1) ** 2) / 2

        with phase("d_step"):
            for _ in range(int(hp["d_steps"])):
                d_losses.append(self.accumulate(self.optimizers["D"], d_loss, n, mean))
        with phase("g_step"):
            with frozen(self.D):
                for _ in range(int(hp["g_steps"])):
                    g_losses.append(self.accumulate(self.optimizers["G"], g_loss, n, mean))
        return detached({"d_loss": torch.stack(d_losses).mean(), "g_loss": torch.stack(g_losses).mean()})


@register_mode(
    "lsgan",
    summary="least-squares GAN as in GAS: RMSProp 1e-3, 1 D step then 4 G steps, batch 32",
    phases=LSGANStep.phases,
    default_arch="lsgan-original",
    needs_generator=True,
    micro_batches=True,
    scaled_updates=True,
    outputs=("score", "logits[2]"),
    params={"batch_size": BATCH_SIZE, "lr": LEARNING_RATE, "d_steps": updates(), "g_steps": updates(),
            "reduction": Param("choice", choices=("sum", "mean"))},
    defaults=DEFAULTS,
    presets=PRESETS,
    source="SunnerLi/GAS (evaluate.py train(), model.py LSGAN.build); Mao et al. 2016",
    notes=(
        "Ratio: 1 discriminator update then 4 generator updates per iteration (GAS evaluate.py).",
        "The least-squares loss is taken on sigmoid(score), as GAS's TF discriminators output a sigmoid.",
        "TF 1.x RMSProp emulated: alpha 0.9, eps 1e-10, square_avg initialised to ones.",
        "Preset pytorch-wrapper: GAS's wrapper/evaluate.py variant (batch 128, torch RMSprop defaults, no "
        "sigmoid, a G update after every 5th D update: d_steps 5, g_steps 1).",
        "Fallback generator when the discriminator names none: gas-generator.",
    ),
)
def make_lsgan(D, D_spec, G, G_spec, hparams, device) -> LSGANStep:
    tf = bool(hparams["tf_rmsprop"])
    return LSGANStep(D, D_spec, G, G_spec, hparams, device, rmsprop(D.parameters(), hparams["lr"], tf),
                     rmsprop(G.parameters(), hparams["lr"], tf))
