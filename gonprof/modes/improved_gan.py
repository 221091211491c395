"""Improved-GAN (Salimans et al. 2016): feature matching and the semi-supervised K+1 trick.

After openai/improved-gan ``train_mnist_feature_matching.py`` and its PyTorch
port Sleepychord/ImprovedGAN-pytorch (``ImprovedGAN.py``).  The discriminator
is a K-class classifier (``logits[K]``); its realness logit is
``lse(l) = logsumexp_k l_k`` (the K+1-th "fake" class has logit 0).

``d_step`` (``trainD``)
    * unlabelled loss, on the real batch ``x`` and fakes ``G(z)`` (detached):
      ``0.5 * (-mean(lse(D(x))) + mean(softplus(lse(D(x)))) + mean(softplus(lse(D(G(z))))))``
      (the sources' 0.5 factor kept);
    * labelled loss, on a batch of the labelled examples the step holds:
      cross-entropy ``-mean(l_y) + mean(lse(l))``;
    * ``loss = labelled + unlabel_weight * unlabelled`` (weight 1).
``g_step`` (``trainG``)
    feature matching: ``mean((mean_batch f(G(z)) - mean_batch f(x))^2)`` where ``f``
    is the discriminator's last hidden layer (``D.features(x)``; for a
    discriminator without ``features`` the input of its last ``nn.Linear`` is
    taken through a forward hook), D's parameters frozen.

Adam lr 0.003, betas (0.5, 0.999) for both, batch 100, latent ``U(0, 1)^100``.

Labelled examples.  hparam ``labels`` is how many (the paper's 20 / 50 / 100 /
200; default 100 = 10 per class, the source's ``MnistLabel(10)``); ``0``
trains with feature matching only (no labelled loss).  The trainer chooses
them balanced per class from the training split, deterministically by seed,
and hands them over with :meth:`ImprovedGANStep.set_labelled` ``(x, y)``.  A
step that was given none collects them itself from the first batches it sees
(the first ``labels / K`` images of each class, in batch order) so that the
mode also works inside anyone's own loop.  Each step draws a labelled batch of
``batch`` examples from the held set with ``torch.randint`` (the source tiles
the labelled set and shuffles it).

:meth:`ImprovedGANStep.test_error` ``(images, labels)`` is the classification
error of ``argmax D(x)`` (D in eval mode: no noise layers) on held-out images;
with ``labels=0`` there is none (None; ``has_test_error`` is False): a
discriminator trained without labels has no reason to put class k in logit k,
so its "error" (88.74% in one run) would be read as a result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._common import GANStep, adam, detached, eval_mode, frozen
from .base import BATCH_SIZE, LEARNING_RATE, IncompatibleError, Param, no_phase, register_mode, updates

DEFAULTS = {
    "batch_size": 100,        # --batch-size 100
    "lr": 0.003,              # --lr 0.003
    "betas": (0.5, 0.999),    # --momentum 0.5 -> betas (0.5, 0.999)
    "labels": 100,            # MnistLabel(10): 10 per class; the paper reports 20 / 50 / 100 / 200
    "unlabel_weight": 1.0,    # --unlabel-weight 1
    "g_steps": 1,
}
PRESETS = {
    "labels-20": {"labels": 20}, "labels-50": {"labels": 50}, "labels-100": {"labels": 100},
    "labels-200": {"labels": 200}, "unsupervised": {"labels": 0},
}


class _LastLinearInput:
    """Captures the input of a module (the features feeding the classifier head)."""

    def __init__(self, module: nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self.value = inputs[0]


class ImprovedGANStep(GANStep):
    mode = "improved-gan"
    phases = ("d_step", "g_step")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_classes = int(getattr(self.D_spec, "output_dim", 0) or 0)
        self.labelled_x: torch.Tensor | None = None
        self.labelled_y: torch.Tensor | None = None
        self._collecting = True
        self._hook: _LastLinearInput | None = None
        #: whether the D step runs its real, fake and labelled batches in one pass (no batch statistics in D)
        self.one_pass = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.D.modules())
        if not callable(getattr(self.D, "features", None)):
            last = [m for m in self.D.modules() if isinstance(m, nn.Linear)]
            if not last:
                raise IncompatibleError(
                    f"improved-gan needs D.features(x) or a final nn.Linear for feature matching; "
                    f"{getattr(self.D_spec, 'name', type(self.D).__name__)} has neither")
            self._hook = _LastLinearInput(last[-1])
            self.notes.append("feature matching on the input of the discriminator's last nn.Linear (no .features)")
        if not self.has_test_error:
            self.notes.append("labels=0: unsupervised (feature matching only), so no test error is reported: the "
                              "discriminator's logits are not trained to the data's classes")

    # -- labelled data -------------------------------------------------------------
    def set_labelled(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The labelled examples the semi-supervised loss uses (images in [-1, 1], int labels)."""
        if len(x) != len(y):
            raise ValueError(f"set_labelled: {len(x)} images but {len(y)} labels")
        if self.num_classes and len(y) and (int(y.max()) >= self.num_classes or int(y.min()) < 0):
            raise IncompatibleError(
                f"improved-gan: labels run from {int(y.min())} to {int(y.max())} but "
                f"{getattr(self.D_spec, 'name', 'the discriminator')} has {self.num_classes} classes")
        self.labelled_x = x.detach().to(self.device)
        self.labelled_y = y.detach().to(self.device).long()
        self._collecting = False

    def _collect(self, real: torch.Tensor, labels: torch.Tensor | None) -> None:
        want = int(self.hparams["labels"])
        if not self._collecting or want <= 0 or labels is None:
            return
        k = self.num_classes or int(labels.max()) + 1
        per = [want // k + (1 if c < want % k else 0) for c in range(k)]
        have = torch.zeros(k, dtype=torch.long)
        if self.labelled_y is not None:
            have += torch.bincount(self.labelled_y.cpu(), minlength=k)[:k]
        take = []
        for i, c in enumerate(labels.tolist()):
            if 0 <= c < k and have[c] < per[c]:
                have[c] += 1
                take.append(i)
        if take:
            idx = torch.tensor(take, device=real.device)
            xs, ys = real[idx].detach(), labels[idx].detach().long()
            self.labelled_x = xs if self.labelled_x is None else torch.cat([self.labelled_x, xs])
            self.labelled_y = ys if self.labelled_y is None else torch.cat([self.labelled_y, ys])
        if int(have.sum()) >= want:
            self._collecting = False

    @property
    def has_test_error(self) -> bool:
        """Only the semi-supervised variant (``labels`` > 0) has one: trained without labels (``labels=0``,
        preset ``unsupervised``), the discriminator's K logits are not the data's classes."""
        return int(self.hparams.get("labels", 0)) > 0

    # -- pieces ------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        features = getattr(self.D, "features", None)
        if callable(features):
            return features(x)
        assert self._hook is not None  # hooked in __init__ when D has no features
        self.D(x)
        value = self._hook.value
        assert value is not None  # the forward above ran through the hooked layer
        return value

    def test_error(self, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float | None:
        """Fraction of ``images`` whose ``argmax D(x)`` differs from ``labels`` (D in eval mode); None when the
        step trains without labels (``labels=0``), where that fraction would mean nothing."""
        if not self.has_test_error:
            return None
        wrong = 0
        with torch.no_grad(), eval_mode(self.D):
            for i in range(0, len(images), batch):
                x = images[i:i + batch].to(self.device)
                y = labels[i:i + batch].to(self.device)
                wrong += int((self.D(x).argmax(1) != y).sum())
        return wrong / max(1, len(images))

    def d_logits(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """D's logits of the batches in ``parts``, concatenated.  With :attr:`one_pass` (a discriminator without
        batch statistics) in one forward pass: one weight normalisation and one larger matrix product per
        layer instead of one per batch, and one backward through them; each row's logits are those of its
        own pass (only the order of the noise draws differs).  Otherwise one pass per batch, so that batch
        norm sees each batch alone."""
        if self.one_pass:
            return self.D(torch.cat(parts))
        return torch.cat([self.D(x) for x in parts])

    # -- one step ------------------------------------------------------------------------
    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None,
             phase: Callable[[str], Any] = no_phase) -> dict[str, torch.Tensor]:
        hp = self.hparams
        n = real.shape[0]
        self._collect(real, labels)
        with phase("d_step"):
            parts = [real, self.fake_nograd(n)]
            lab_x, lab_y, y = self.labelled_x, self.labelled_y, None
            if int(hp["labels"]) > 0 and lab_x is not None and lab_y is not None and len(lab_x):
                idx = torch.randint(len(lab_x), (n,), device=lab_x.device)
                parts.append(lab_x[idx])
                y = lab_y[idx]
            logits = self.d_logits(parts)
            lse = torch.logsumexp(logits[:2 * n], dim=1)
            lse_real, lse_fake = lse[:n], lse[n:]
            loss_unl = 0.5 * (-lse_real.mean() + F.softplus(lse_real).mean() + F.softplus(lse_fake).mean())
            loss = float(hp["unlabel_weight"]) * loss_unl
            losses = {"d_loss_unlabelled": loss_unl}
            if y is not None:
                out = logits[2 * n:]
                loss_lab = F.cross_entropy(out, y)
                loss = loss + loss_lab
                losses["d_loss_labelled"] = loss_lab
                losses["train_acc"] = (out.detach().argmax(1) == y).float().mean()
            self.update(self.optimizers["D"], loss)
            losses["d_loss"] = loss
        with phase("g_step"):
            g_losses = []
            with frozen(self.D):
                for _ in range(int(hp["g_steps"])):
                    f_fake = self.features(self.fake(n)).mean(0)
                    with torch.no_grad():  # the target of feature matching: no graph kept for it
                        f_real = self.features(real).mean(0)
                    g_loss = ((f_fake - f_real.detach()) ** 2).mean()
                    self.update(self.optimizers["G"], g_loss)
                    g_losses.append(g_loss.detach())
            losses["g_loss"] = torch.stack(g_losses).mean()
        return detached(losses)


@register_mode(
    "improved-gan",
    summary="Improved-GAN: feature matching for G, K+1-class semi-supervised D (labels 20/50/100/200 or 0)",
    phases=ImprovedGANStep.phases,
    default_arch="improved-gan-mlp",
    needs_generator=True,
    scaled_updates=True,
    outputs=("logits[*]",),
    # labels: 0 trains with feature matching only (preset unsupervised); at most MNIST's 60,000 training images
    params={"batch_size": BATCH_SIZE, "lr": LEARNING_RATE, "labels": Param("int", low=0, high=60_000),
            "unlabel_weight": Param("float", low=0.0, high=1_000.0), "g_steps": updates()},
    defaults=DEFAULTS,
    presets=PRESETS,
    source="Salimans et al. 2016, arXiv 1606.03498; openai/improved-gan train_mnist_feature_matching.py; "
           "Sleepychord/ImprovedGAN-pytorch ImprovedGAN.py",
    notes=(
        "The sources' 0.5 factor on the unlabelled loss is kept.",
        "The labelled examples come from set_labelled(x, y) (the trainer: balanced per class, by seed); "
        "without it the step collects labels/K per class from the first batches it sees.",
        "The PyTorch port's second G update when epoch > 1 and the G loss > 1 is not reproduced; the "
        "openai script's learning-rate decay is not either (constant 0.003).",
        "Feature matching uses the real batch of the D update (the port draws a second unlabelled batch).",
        "Fallback generator when the discriminator names none: improved-gan-generator.",
    ),
)
def make_improved_gan(D, D_spec, G, G_spec, hparams, device) -> ImprovedGANStep:
    return ImprovedGANStep(D, D_spec, G, G_spec, hparams, device, adam(D.parameters(), hparams),
                           adam(G.parameters(), hparams))
