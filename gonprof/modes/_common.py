"""Pieces the training modes share: compatibility checks, latents, gradient switches,
the GAN step skeleton.

Every random draw goes through torch's global RNG (``torch.randn`` / ``torch.rand``
/ ``torch.randperm`` without a ``generator=``), which the trainer seeds and
checkpoints, so a step is reproducible and a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .. import stops
from .base import IncompatibleError, TrainStep, no_phase


def output_kind(D_spec) -> str:
    return getattr(D_spec, "output", "score") if D_spec is not None else "score"


# -- latents ----------------------------------------------------------------

def latent_dim(G: nn.Module, G_spec) -> int:
    dim = getattr(G_spec, "latent_dim", None) or getattr(G, "latent_dim", None)
    if not dim:
        raise IncompatibleError(
            f"generator {getattr(G_spec, 'name', type(G).__name__)} declares no latent_dim")
    return int(dim)


def latent_kind(G_spec) -> str:
    return getattr(G_spec, "latent", "normal") or "normal"


def sample_latent(n: int, dim: int, kind: str, device) -> torch.Tensor:
    """``n`` latents: N(0, 1) for "normal", U(0, 1) for "uniform" (ImprovedGAN's ``torch.rand``)."""
    if kind == "uniform":
        return torch.rand(n, dim, device=device)
    if kind == "normal":
        return torch.randn(n, dim, device=device)
    raise IncompatibleError(f"unknown latent distribution {kind!r} (normal or uniform)")


# -- gradient switches ----------------------------------------------------------

@contextlib.contextmanager
def frozen(module: nn.Module | None) -> Iterator[None]:
    """Parameters of ``module`` have ``requires_grad=False`` inside the block (restored after)."""
    if module is None:
        yield
        return
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """``module.eval()`` inside the block; every submodule's own flag restored after."""
    flags = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        yield
    finally:
        for m, f in flags:
            m.training = f


# -- exact identities -------------------------------------------------------------

def identity_ops(module: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """``(parent, child name, child)`` for every activation inside ``module`` that is exactly the identity.

    ``LeakyReLU(negative_slope=1.0)`` computes ``x`` for ``x > 0`` and ``x * 1.0``
    otherwise, and its backward multiplies the gradient by 1.0: the same bits as
    doing nothing, NaN and infinities included.
    """
    return [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
            if isinstance(child, nn.LeakyReLU) and float(child.negative_slope) == 1.0]


@contextlib.contextmanager
def identity_ops_skipped(targets: list[tuple[nn.Module, str, nn.Module]]) -> Iterator[None]:
    """Inside the block each target is replaced by ``nn.Identity`` in its parent; the originals return after.

    The model keeps its own identity (its parameters, buffers, hooks and the
    names a profiler knows it by); only the skipped activations are out of
    the tree while the block runs.
    """
    try:
        for parent, name, _ in targets:
            setattr(parent, name, nn.Identity())
        yield
    finally:
        for parent, name, child in targets:
            setattr(parent, name, child)


def identity_skip_check(module: nn.Module, targets, probe: torch.Tensor) -> str:
    """Why skipping ``targets`` would not be exact for ``module``, or "" when it is.

    ``nn.Identity`` hands back its input where the activation made a new
    tensor, so a later in-place layer would write into a tensor the forward or
    backward still needs.  Refused outright when any layer is in place;
    otherwise the output and the input gradient on ``probe`` (a couple of
    samples) must match to the bit, skipped and not.  Meta tensors have no
    values: there only the structural rule applies.
    """
    inplace = sorted({type(m).__name__ for m in module.modules() if getattr(m, "inplace", False) is True})
    if inplace:
        return f"in-place layers ({', '.join(inplace)}) could write into a skipped activation's input"
    if probe.device.type == "meta":
        return ""

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        x = probe.detach().clone().requires_grad_(True)
        out = module(x)
        (g,) = torch.autograd.grad(out.float().square().sum(), x)
        return out.detach(), g

    try:
        with eval_mode(module):
            kept = run()
            with identity_ops_skipped(targets):
                skipped = run()
    except Exception as exc:  # noqa: BLE001 - any failure means "do not skip"
        return f"a probe with them skipped failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    if not (torch.equal(kept[0], skipped[0]) and torch.equal(kept[1], skipped[1])):
        return "a probe with them skipped gave different outputs or gradients"
    return ""


def detached(losses: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in losses.items():
        if not torch.is_tensor(v):
            v = torch.tensor(float(v))
        out[k] = v.detach().reshape(())
    return out


# -- the GAN skeleton -------------------------------------------------------------

class GANStep(TrainStep):
    """A discriminator D trained against a generator G.

    Subclasses implement :meth:`step`; this class holds the models, makes
    latents and fakes, and samples (G in eval mode, without gradients).
    """

    sample_chunk = 500

    def __init__(self, D: nn.Module, D_spec, G: nn.Module, G_spec, hparams: dict, device,
                 opt_D: torch.optim.Optimizer, opt_G: torch.optim.Optimizer):
        super().__init__({"D": D, "G": G}, {"D": opt_D, "G": opt_G}, hparams, torch.device(device))
        self.D, self.G = D, G
        self.D_spec, self.G_spec = D_spec, G_spec
        self.z_dim = latent_dim(G, G_spec)
        self.z_kind = latent_kind(G_spec)
        self.kind = output_kind(D_spec)
        if self.kind == "logits[2]":
            self.notes.append("logits[2] discriminator: its realness logit is logits[:, 0] - logits[:, 1] "
                              "(softmax[:, 0] == sigmoid of it; class 0 = real, as in GON_MNIST)")

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """D's realness logit, (N, 1): the score itself, or ``l_real - l_fake`` for a logits[2] head."""
        out = self.D(x)
        if self.kind == "logits[2]":
            return out[:, 0:1] - out[:, 1:2]
        return out.reshape(out.shape[0], -1)[:, :1]

    def latent(self, n: int) -> torch.Tensor:
        return sample_latent(n, self.z_dim, self.z_kind, self.device)

    def fake(self, n: int) -> torch.Tensor:
        return self.G(self.latent(n))

    def fake_nograd(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self.G(self.latent(n))

    def sample(self, n: int) -> torch.Tensor:
        out = []
        with torch.no_grad(), eval_mode(self.G):
            for i in range(0, n, self.sample_chunk):
                if i:
                    stops.check()  # a sampler of many chunks (grids, scores) stops between them
                out.append(self.G(self.latent(min(self.sample_chunk, n - i))))
        return torch.cat(out).clamp(-1, 1)

    # levers (gonprof.levers.apply_levers): slices per update, fp16's loss scaling
    micro_batches = 1
    grad_scaling = False

    def update(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        self._backward(opt, loss)
        self._opt_step(opt)

    def accumulate(self, opt: torch.optim.Optimizer, loss_of: Callable[[int, int], torch.Tensor], n: int,
                   mean: bool) -> torch.Tensor:
        """One update of ``opt`` from the loss of the batch's ``n`` images, computed as
        :attr:`micro_batches` slices: ``loss_of(start, stop)`` is the loss of images ``start:stop`` (a mean
        over them when ``mean``, else a sum), each slice's backward accumulates into the gradients, then one
        optimizer step.  A mean is weighted by the slice's share of the batch, so the gradient and the loss
        returned are the whole batch's.  One slice: exactly :meth:`update`."""
        from ..levers import micro_slices

        opt.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None
        for lo, hi in micro_slices(n, self.micro_batches):
            loss = loss_of(lo, hi)
            if mean and hi - lo != n:
                loss = loss * ((hi - lo) / n)
            self._backward(opt, loss)
            total = loss.detach() if total is None else total + loss.detach()
        self._opt_step(opt)
        assert total is not None
        return total

    def _scaler(self, opt: torch.optim.Optimizer) -> Any:
        scalers = self.__dict__.setdefault("_scalers", {})
        if id(opt) not in scalers:
            scalers[id(opt)] = torch.amp.GradScaler(self.device.type)
        return scalers[id(opt)]

    def _backward(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        if self.grad_scaling:
            self._scaler(opt).scale(loss).backward()
        else:
            loss.backward()

    def _opt_step(self, opt: torch.optim.Optimizer) -> None:
        if self.grad_scaling:
            scaler = self._scaler(opt)
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()


def adam(params, hp: dict, prefix: str = "") -> torch.optim.Adam:
    """Adam from ``hp[prefix+'lr']`` and ``hp[prefix+'betas']``."""
    lr = hp.get(prefix + "lr", hp["lr"])
    betas = tuple(hp.get(prefix + "betas", hp.get("betas", (0.9, 0.999))))
    return torch.optim.Adam(params, lr=lr, betas=betas)


__all__ = ["GANStep", "frozen", "eval_mode", "detached", "sample_latent", "adam", "no_phase", "output_kind",
           "identity_ops", "identity_ops_skipped", "identity_skip_check"]
