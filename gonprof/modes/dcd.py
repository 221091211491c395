"""DCD: Discriminator Contrastive Divergence (Song et al. 2020), after MinkaiXu/Discriminator-Contrastive-Divergence.

One step = one iteration of the source's ``Updater.update_core`` (``updater.py``):

``sample``
    negatives start at ``G(z)`` and are refined by Langevin dynamics on the
    critic's energy ``D(x)`` (``temperature`` 1), gradients w.r.t. the input
    only (the critic's parameters frozen):

    * pixel space (``langevin.py``), 20 steps, each: ``x <- x + N(0, 0.005^2)``;
      ``g = grad_x sum D(x)``, clipped to ``[-1, 1]`` (``proj_norm`` 1, "li");
      ``x <- x + 1.0 * g``; ``x <- clamp(x, -1, 1)``.  (Noise first, then the
      gradient at the noised point, as the source.)
    * latent space (``langevin_z.py``, hparam ``langevin="latent"``), 20 steps,
      each: ``g = grad_z sum D(G(z))``; ``z <- z + (eps / 2) g + sqrt(eps) N(0, 0.005^2)``
      with ``eps`` = the step size 1.0; no clipping, no prior term (as the
      source); the negatives are ``G(z)`` at the final ``z``.

``d_step``
    ``n_dis = 5`` critic updates, all on the same real batch and the same
    refined negatives (the source samples once per iteration), hinge loss
    ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``, Adam 2e-4 (0, 0.9).

``g_step``
    one generator update with the hinge generator loss ``-mean(D(G(z)))``,
    D frozen.  The released updater has this block commented out (it
    fine-tunes the critic of a pre-trained SNGAN, generator fixed); gonprof
    trains from scratch, so the default keeps it (``g_steps`` 1) and preset
    ``critic-only`` (``g_steps`` 0) is the released updater exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from .. import stops
from ._common import GANStep, adam, detached, frozen
from .base import BATCH_SIZE, LEARNING_RATE, IncompatibleError, Param, no_phase, register_mode, updates

DEFAULTS = {
    "batch_size": 64,          # configs/sn_cifar10_unconditional.yml batchsize: 64
    "lr": 2e-4,                # adam alpha: 0.0002
    "betas": (0.0, 0.9),       # beta1: 0.0, beta2: 0.9
    "d_steps": 5,              # updater n_dis: 5 (the critic updates; old name n_critic)
    "g_steps": 1,              # the (commented-out) generator update: once per iteration
    "langevin": "pixel",       # argparser --sampling_space ('latent' or 'pixel'; gonprof default pixel)
    "langevin_steps": 20,      # --num_steps 20
    "step_size": 1.0,          # --step_lr 1.0
    "noise": 0.005,            # --noise_scale 0.005
    "grad_clip": 1.0,          # --proj_norm 1.0, --proj_norm_type li (pixel space only)
    "temperature": 1.0,        # --temperature 1
}
PRESETS = {"latent": {"langevin": "latent"}, "critic-only": {"g_steps": 0}}


class DCDStep(GANStep):
    mode = "dcd"
    phases = ("sample", "d_step", "g_step")

    def langevin_pixel(self, x: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        steps, lr, sigma = int(hp["langevin_steps"]), float(hp["step_size"]), float(hp["noise"])
        clip, temp = float(hp["grad_clip"]), float(hp["temperature"])
        x = x.detach()
        with frozen(self.D):
            for _ in range(steps):
                stops.check()  # the sampling comes before any update: a stop leaves the last whole step
                x = (x + sigma * torch.randn_like(x)).requires_grad_(True)
                (g,) = torch.autograd.grad((self.score(x) * temp).sum(), x)
                if clip > 0:
                    g = g.clamp(-clip, clip)
                x = (x.detach() + lr * g).clamp_(-1.0, 1.0)
        return x.detach()

    def langevin_latent(self, z: torch.Tensor) -> torch.Tensor:
        hp = self.hparams
        steps, lr, sigma = int(hp["langevin_steps"]), float(hp["step_size"]), float(hp["noise"])
        temp = float(hp["temperature"])
        z = z.detach()
        with frozen(self.D), frozen(self.G):
            for _ in range(steps):
                stops.check()
                z = z.requires_grad_(True)
                (g,) = torch.autograd.grad((self.score(self.G(z)) * temp).sum(), z)
                z = z.detach() + (lr / 2) * g + math.sqrt(lr) * sigma * torch.randn_like(z)
            with torch.no_grad():
                return self.G(z)

    def refine(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G(z), its Langevin refinement): the same starting samples before and after."""
        start = self.fake_from(z)
        if self.hparams["langevin"] == "latent":
            return start, self.langevin_latent(z)
        return start, self.langevin_pixel(start)

    def fake_from(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.G(z)

    def negatives(self, n: int) -> torch.Tensor:
        z = self.latent(n)
        if self.hparams["langevin"] == "latent":
            return self.langevin_latent(z)
        return self.langevin_pixel(self.fake_from(z))

    def sample_with_unrefined(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(G(z), the same samples refined by the Langevin steps), each clamped to [-1, 1].

        The refined half is what :meth:`sample` draws; the unrefined half is
        what refinement is judged against (same z, same critic, same N).
        """
        raw, refined = [], []
        with frozen(self.G):
            for i in range(0, n, self.sample_chunk):
                a, b = self.refine(self.latent(min(self.sample_chunk, n - i)))
                raw.append(a)
                refined.append(b)
        return torch.cat(raw).clamp(-1, 1), torch.cat(refined).clamp(-1, 1)

    def sample(self, n: int) -> torch.Tensor:
        """Refined samples: G(z) followed by the Langevin steps (the semi-amortized sampler)."""
        return self.sample_with_unrefined(n)[1]

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None,
             phase: Callable[[str], Any] = no_phase) -> dict[str, torch.Tensor]:
        hp = self.hparams
        n = real.shape[0]
        with phase("sample"):
            fake = self.negatives(n)
        d_losses = []
        with phase("d_step"):
            for _ in range(int(hp["d_steps"])):
                loss = F.relu(1.0 - self.score(real)).mean() + F.relu(1.0 + self.score(fake)).mean()
                self.update(self.optimizers["D"], loss)
                d_losses.append(loss.detach())
        losses = {"d_loss": torch.stack(d_losses).mean()}
        with phase("g_step"):
            g_losses = []
            with frozen(self.D):
                for _ in range(int(hp["g_steps"])):
                    loss = -self.score(self.fake(n)).mean()
                    self.update(self.optimizers["G"], loss)
                    g_losses.append(loss.detach())
            if g_losses:
                losses["g_loss"] = torch.stack(g_losses).mean()
        return detached(losses)


@register_mode(
    "dcd",
    summary="Discriminator Contrastive Divergence: hinge critic on Langevin-refined G(z), 5 critic updates",
    phases=DCDStep.phases,
    default_arch="dcd-mnist-sn",
    needs_generator=True,
    scaled_updates=True,
    outputs=("score", "logits[2]"),
    params={"batch_size": BATCH_SIZE, "lr": LEARNING_RATE, "d_steps": updates(),
            "g_steps": updates(low=0),  # 0: the released updater (preset critic-only)
            "langevin": Param("choice", choices=("pixel", "latent")),
            "langevin_steps": Param("int", low=0, high=10_000),
            "step_size": Param("float", low=0.0, high=100.0),
            "noise": Param("float", low=0.0, high=10.0),  # a standard deviation, on images in [-1, 1]
            "grad_clip": Param("float", low=0.0, high=1_000.0),  # 0: no clipping
            "temperature": Param("float", low=0.0, high=1_000.0, low_open=True)},
    defaults=DEFAULTS,
    presets=PRESETS,
    source="Song et al. 2020, Discriminator Contrastive Divergence; MinkaiXu/Discriminator-Contrastive-Divergence "
           "(updater.py, langevin.py, langevin_z.py, argparser.py, configs/sn_cifar10_unconditional.yml)",
    notes=(
        "Negatives are sampled once per step and reused by the 5 critic updates, as the source's updater.",
        "The generator update (hinge, -mean D(G(z))) is commented out in the released updater, which "
        "fine-tunes a pre-trained critic; gonprof keeps one G update per step (preset critic-only drops it).",
        "Pixel Langevin: noise N(0, 0.005^2) added before each gradient step; gradient clipped to +-1; step 1.0; "
        "clamp [-1, 1].  Latent Langevin: z += (eps/2) grad_z + sqrt(eps) N(0, 0.005^2), eps = 1.0.",
        "Fallback generator when the discriminator names none: dcd-mnist-generator.",
    ),
)
def make_dcd(D, D_spec, G, G_spec, hparams, device) -> DCDStep:
    if hparams["langevin"] not in ("pixel", "latent"):
        raise IncompatibleError(f"dcd: langevin must be 'pixel' or 'latent', not {hparams['langevin']!r}")
    return DCDStep(D, D_spec, G, G_spec, hparams, device, adam(D.parameters(), hparams),
                   adam(G.parameters(), hparams))
