"""GON: Generative Optimization Networks (Tuli et al. 2021), after imperial-qore/GON_MNIST.

The discriminator is the only network.  Its negatives are made by optimising
inputs against its own gradient:

``sample`` phase (``src/gen.py``, ``gen()``)
    start from ``U[-1, 1]`` noise; Adam (lr 0.02) *on the input* with cosine
    annealing (``CosineAnnealingLR(T_max=50)``, stepped every iteration), up to
    1000 iterations; after every Adam step the input is clamped to ``[-1, 1]``;
    early stop when, for more than 30 consecutive iterations (the 31st), either
    every pixel moved less than 1e-5 or the loss fell by less than 1e-5
    (``0 < previous - current < 1e-5``; the "previous" loss starts at 10).
    The loss is the source's ``CrossEntropyLoss`` applied to the
    discriminator's *softmax output* with target "real" (softmax twice):
    with ``r`` the realness probability it equals ``softplus(1 - 2 r)``.

``update`` phase (``main.py``, ``backprop()``)
    the new fakes join a FIFO buffer of the last 10 fakes; the discriminator
    takes Adam steps (lr 5e-6) on ``MSE(softmax(D(x)), one_hot)`` over the
    real batch and the buffered fakes, labels real = class 0, fake = class 1.

Realness ``r``: for a ``logits[2]`` discriminator ``softmax(logits)[:, real_class]``
(class 0 in GON_MNIST); for a ``score`` discriminator ``sigmoid(score)``, with
probabilities ``[r, 1 - r]``, so GON trains any score discriminator too and
the losses are the same functions of ``r``.

Two paths, same maths:

* preset ``seed`` (faithful): one sample at a time (batch 1), the inner loop
  calls ``loss.backward()`` with the discriminator's parameter gradients left
  on (they accumulate into ``D``'s ``.grad`` like the source and are zeroed
  after), ``torch.optim.Adam`` + ``CosineAnnealingLR`` on the input; the
  discriminator update goes one sample at a time over the shuffled real and
  buffered fake images (10 + 10 per step), one new fake per step, and the very
  first step uses 10 noise images as fakes without optimising (the source's
  first epoch, ``notstart == 0``).
* default (fast): the whole batch of negatives is optimised at once with
  gradients w.r.t. the input only (``torch.autograd.grad`` with the
  discriminator's parameters frozen), an in-place Adam on the input tensor
  written out (the same update as ``torch.optim.Adam``), the early stop
  applied per sample (a stopped sample is frozen while the others go on), and
  one discriminator update on the real batch plus the new fakes.  While
  sampling it takes D's activations that are exactly the identity
  (``LeakyReLU(negative_slope=1.0)``) out of the tree, which changes no bit of
  the outputs or gradients; it checks that on a probe of two samples first and
  keeps them when D has in-place layers (hparam ``skip_identity``).

The discriminator runs in eval mode during sampling (no batch-statistics or
noise layers coupling samples; the GON_MNIST networks have neither).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import stops
from ._common import detached, eval_mode, frozen, identity_ops, identity_ops_skipped, identity_skip_check
from .base import BATCH_SIZE, LEARNING_RATE, MAX_SIZE, Param, TrainStep, no_phase, register_mode

DEFAULTS = {
    "batch_size": 64,        # real images per step (seed: 10 = BATCH_SIZE in src/constants.py)
    "lr": 1e-4,              # D's Adam (seed: 5e-6, main.py load_model; see NOTES for why 1e-4 here)
    "betas": (0.9, 0.999),   # torch.optim.Adam defaults, as in the source
    "inner_lr": 0.05,        # src/gen.py: lr = 0.02, Adam on the input (fast path: 0.05, short chains)
    "inner_t_max": 20,       # CosineAnnealingLR(optimizer, T_max=50), stepped per iteration (fast path: 20)
    "inner_steps": 20,       # for _ in range(1000) (fast path: 20 iterations from a replayed chain)
    "early_stop": 30,        # break when `equal > 30`, i.e. after 31 nearly unchanged iterations
    "early_stop_eps": 1e-5,  # gen(..., epsilon=1e-5) during training
    "buffer": 10,            # fake_data[-BATCH_SIZE:]: the FIFO of the last 10 fakes
    "fakes": 0,              # new fakes per step; 0 = as many as the real batch (seed: 1 per epoch)
    "update_batch": 0,       # D update batch; 0 = one update on real + fakes together (seed: 1)
    "batched": True,         # optimise negatives as a batch with input-only gradients (seed: False)
    "noise_start": False,    # first step: noise fakes without optimising (seed: True)
    "real_class": 0,         # index of the "real" logit of a logits[2] discriminator (GON_MNIST: 0)
    "sample_chunk": 256,     # sample(n) optimises at most this many negatives at once
    "channels_last": True,   # run conv discriminators in channels_last on CPU (fast path; same maths)
    "skip_identity": True,   # fast path skips activations that are exactly the identity (same bits)
    "inner_opt": "normalized",  # optimiser on the input: adam (seed) | sgd | normalized | langevin
    "inner_noise": 0.005,    # langevin: noise sigma at the first iteration, annealed with the step size
    "init": "buffer",        # where a chain starts: noise (fresh U[-1, 1] every step; seed) | buffer (replay)
    "replay_size": 1000,     # init=buffer: past chains kept (IGEBM, JEM: 10,000)
    "replay_restart": 0.05,  # init=buffer: share of chains restarted from noise each step (IGEBM, JEM: 5%)
    "replay_reset": 0.2,     # init=buffer: a chain below this realness after replay_reset_age iterations is
                             # written back as a copy of a healthy chain of its step (0: off)
    "replay_reset_age": 100,  # init=buffer: inner iterations a chain runs before replay_reset judges it
    "replay_reset_noise": 0.03,  # sigma of the Gaussian noise on such a copy (clamped to [-1, 1])
    "sample_from": "newest",  # init=buffer: samples continue the newest ripe chains or the most real ones
    "sample_realness": 0.2,  # init=buffer, newest: chains D rates below this are passed over (0: off)
    "data_noise": 0.03,      # sigma of Gaussian noise added to the real images of D's update (clamped)
    "spectral_norm": False,  # spectral norm on D's linear and conv layers (IGEBM keeps it on)
}

INITS = ("noise", "buffer")

SAMPLE_FROM = ("newest", "realest")

INNER_OPTS = ("adam", "sgd", "normalized", "langevin")

#: Iterations of the inner loop (and its early stop and cosine period): at most 100,000 per sample.
MAX_INNER = 100_000

PARAMS = {
    "batch_size": BATCH_SIZE, "lr": LEARNING_RATE,
    # plain SGD on the input takes steps of about 50 (the gon-inner preset): the bound leaves room above it
    "inner_lr": Param("float", low=0.0, high=1000.0, low_open=True),
    "inner_t_max": Param("int", low=1, high=MAX_INNER),
    "inner_steps": Param("int", low=1, high=MAX_INNER),
    "early_stop": Param("int", low=0, high=MAX_INNER),
    "early_stop_eps": Param("float", low=0.0, high=1.0),
    "buffer": Param("int", low=1, high=MAX_SIZE),
    "fakes": Param("int", low=0, high=MAX_SIZE),  # 0: as many as the real batch
    "update_batch": Param("int", low=0, high=MAX_SIZE),  # 0: one update on the real batch and the fakes
    "real_class": Param("int", low=0, high=1),
    "sample_chunk": Param("int", low=1, high=MAX_SIZE),
    "inner_opt": Param("choice", choices=INNER_OPTS),
    "inner_noise": Param("float", low=0.0, high=10.0),  # a standard deviation, on images in [-1, 1]
    "init": Param("choice", choices=INITS),
    "replay_size": Param("int", low=1, high=MAX_SIZE),
    "replay_restart": Param("float", low=0.0, high=1.0),  # a share of the chains
    "replay_reset": Param("float", low=0.0, high=1.0),  # a realness probability; 0 turns the reset off
    "replay_reset_age": Param("int", low=0, high=1_000_000),  # inner iterations since the chain's noise
    "replay_reset_noise": Param("float", low=0.0, high=1.0),  # a standard deviation, on images in [-1, 1]
    "sample_from": Param("choice", choices=SAMPLE_FROM),
    "sample_realness": Param("float", low=0.0, high=1.0),  # a realness probability; 0 keeps every chain
    "data_noise": Param("float", low=0.0, high=1.0),  # a standard deviation, on images in [-1, 1]
    "spectral_norm": Param("bool"),
}

PRESETS = {
    "seed": {"batch_size": 10, "lr": 5e-6, "inner_opt": "adam", "batched": False, "fakes": 1, "update_batch": 1,
             "noise_start": True, "channels_last": False, "skip_identity": False,
             "init": "noise", "inner_lr": 0.02, "inner_steps": 1000, "inner_t_max": 50, "early_stop": 30,
             "data_noise": 0.0, "spectral_norm": False},
    # the fast path with the seed's own optimisers (Adam on the input, D's Adam at 5e-6)
    "seed-optimizers": {"lr": 5e-6, "inner_opt": "adam", "init": "noise", "inner_lr": 0.02, "inner_steps": 1000,
                        "inner_t_max": 50, "early_stop": 30, "data_noise": 0.0, "spectral_norm": False},
    # the fast path before persistent chains: every chain from fresh noise, the early-stopped inner loop
    "noise": {"init": "noise", "lr": 1e-4, "inner_lr": 0.02, "inner_steps": 1000, "inner_t_max": 50,
              "data_noise": 0.0},
    "fast": {},
}

NOTES = (
    "Persistent chains by default (init=buffer): each step continues 64 chains drawn from a replay buffer of "
    "the last 1,000 chains (5% restarted from U[-1, 1] noise) for 20 inner iterations, as IGEBM and JEM "
    "do, instead of optimising fresh noise for hundreds of iterations until the early stop, and adds "
    "N(0, 0.03^2) noise to the real images of D's update. Chosen from the first gon-chains study (zeros, 120 s a "
    "row; docs: GON's persistent chains): 3.3 GFLOP and 93-150 ms a step against fresh noise's 81.1 GFLOP "
    "and 2.5 s, FID 62.4 and recall 0.35 with the data noise against 103.4 and 0.29 without it and 287.4 "
    "and 0.00 from fresh noise (N=260; the machine was loaded). D's Adam stays at 1e-4: at "
    "3e-4 a 300 s run diverged after about 400 steps (D wins, chains drift to inverted and noisy images, "
    "FID 419 at N=64), at 1e-4 1,000 steps stay stable (FID 98.9, recall 0.69 at N=64). Tried and left "
    "off: spectral norm on D (FID 141 against 116 at 250 steps), D lr 1e-3 (139-188), a 10,000-chain buffer "
    "(404 at 250 steps: its chains are too young), 40 inner iterations (104 against 116, twice the cost a "
    "step). The replay buffer is the memory this trades for speed: replay_size x C x H x W float32 (3.1 MB "
    "for 1,000 MNIST chains) plus one int64 age per chain, the profile's 'replay' category "
    "(TrainStep.state_tensors). Samples (grids, scores) continue the newest chains that ran more than one "
    "step's loop for one more inner loop. Preset 'noise' is the fast path before persistent chains; preset "
    "'seed' the seed's procedure.",
    "Stuck chains (on by default since 2026-12-06): replay_reset=0.2 writes a chain that D still rates "
    "below realness 0.2 after replay_reset_age (100) inner iterations back as a copy of a healthy chain of "
    "its step plus N(0, replay_reset_noise^2), at no extra pass through D (realness read off the inner "
    "loss); sample_realness=0.2 makes samples pass over the chains D rates below 0.2 (D rates the newest "
    "ripe chains until enough pass). On a quiet machine 300 s on zeros train about 4,000 steps, and "
    "there the defaults before them drew half noise (3,146 steps beside another job: FID 388, on-class "
    "36% at N=64); the reset alone "
    "drew five noise tiles (FID 96, 92%), both together 64 zeros (FID 66.1, recall 0.48, on-class 100%). "
    "A slower D (lr 5e-5) drew noise. sample_from=realest (samples from the chains D rates most real) "
    "drew one zero 64 times (recall 0.00), so samples come from the newest chains (docs: Stuck chains).",
    "Precision stays float32: under --precision bf16 (preset gon-bf16, zeros, 300 s a row) the step buys "
    "1.12x the sample-iterations a second and saves no memory (the peak is weights, Adam and the buffer); "
    "its FID was lower (34.1 against 50.2 at N=260) but its recall less than half (0.19 against 0.41).",
    "Batched fast path: it makes a batch of fakes and takes 1 D update per step where the "
    "seed makes 1 fake and takes 20 single-sample D updates, so at the seed's D learning rate (5e-6) it "
    "learns 20x slower and draws noise for hundreds of steps; from fresh noise (preset noise) the D learning "
    "rate is 1e-4 (1e-3 collapses and oscillates). The default inner optimiser is 'normalized' (each sample "
    "moves by inner_lr "
    "per pixel in RMS along its own gradient) rather than the seed's Adam on the input, which gives "
    "near-zero-gradient background pixels full-size steps: on one digit it scored a better FID than Adam "
    "on both seeds tried, at about the same cost, and ties with langevin, which costs up to 30% more time "
    "(README, preset gon-inner).",
    "seed preset = GON_MNIST's procedure (batch 1, parameter gradients on in the inner loop, 1 new fake "
    "and 20 single-sample D updates per step); preset seed-optimizers runs the seed's optimisers batched "
    "with input-only gradients (the same inner-loop maths per sample). Sample grids and scoring always "
    "use the batched sampler.",
    "The inner loss is the source's CrossEntropyLoss on the softmax output (softmax applied twice), "
    "= softplus(1 - 2 r) for realness r; the D loss is MSE(softmax, one_hot) = (r - target)^2.",
    "The source trains on 10 images of one digit (src/utils.py filter(), CLASS = 0); which images to "
    "train on is the data's business (gonprof train --classes 0 --per-class 10), not the mode's.",
    "The source's early-stop counter `equal` is shared across restarts within one gen() call; with one "
    "fake per call (training) that is the same as per sample, which is what gonprof does.",
    "Fast path: D in eval mode and channels_last (CPU, conv nets) during sampling; stopped samples are "
    "frozen while the rest of the batch goes on.",
    "Fast path: activations that are exactly the identity (gon-mnist-conv's LeakyReLU(negative_slope=1.0), "
    "the source's LeakyReLU(True)) are skipped while sampling: same outputs and gradients to the bit, "
    "without their kernels or the tensors they keep for backward. skip_identity=False keeps them.",
)


@lru_cache(maxsize=16)
def cosine_lrs(base_lr: float, t_max: int, n: int) -> tuple[float, ...]:
    """The learning rate of each of ``n`` iterations, as torch's CosineAnnealingLR gives them.

    Uses torch's own recursive (chainable) formula, so that the fast path and the
    seed path (which steps a real scheduler) see the same floats.
    """
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)
    out = []
    for _ in range(n):
        stops.check()  # 100,000 iterations take seconds: a stop or a time budget must not wait for them
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return tuple(out)


class GONStep(TrainStep):
    mode = "gon"
    phases = ("sample", "d_step")
    input_shape: tuple[int, ...]  # never None here: the spec's, or (1, 28, 28)

    def __init__(self, D: nn.Module, D_spec, hparams: dict, device):
        if hparams.get("spectral_norm", False):
            with_spectral_norm(D)
        opt = torch.optim.Adam(D.parameters(), lr=hparams["lr"], betas=tuple(hparams["betas"]))
        super().__init__({"D": D}, {"D": opt}, hparams, torch.device(device))
        self.D, self.D_spec = D, D_spec
        self.kind = getattr(D_spec, "output", "score") if D_spec is not None else "score"
        self.real_class = int(hparams["real_class"])
        self.buffer: torch.Tensor | None = None  # (k, C, H, W) FIFO, oldest first
        self.replay: torch.Tensor | None = None  # init=buffer: (replay_size, C, H, W) past chains, a ring
        self.replay_head = 0  # the ring's next slot to write (the newest chain sits just before it)
        self.replay_age: torch.Tensor | None = None  # inner iterations each chain has run since its noise
        self.start_age: torch.Tensor | None = None  # the ages of the last step's chain starts
        self.last_restarts = 0  # chains of the last step started from noise
        self.last_resets = 0  # chains of the last step written back as copies of healthy ones (replay_reset)
        self.last_iters = 0
        self.last_loss: torch.Tensor | None = None  # final inner loss of each new fake (the source's `diffs`)
        self.input_shape = tuple(getattr(D_spec, "input_shape", None) or (1, 28, 28))
        self._has_conv = any(isinstance(m, nn.Conv2d) for m in D.modules())
        self._skipped: list | None = None  # D's identity activations the fast path skips; decided once
        if not hparams.get("batched", True) and hparams.get("inner_opt", "adam") != "adam":
            from .base import IncompatibleError

            raise IncompatibleError(f"inner_opt={hparams['inner_opt']} needs the batched path; the seed "
                                    "procedure (batched=false) optimises with torch's Adam")
        if not hparams.get("batched", True) and hparams.get("init", "noise") != "noise":
            from .base import IncompatibleError

            raise IncompatibleError("init=buffer needs the batched path; the seed procedure (batched=false) "
                                    "starts every chain from noise")

    def prepare(self) -> None:
        """Decide the identity skip now, on a fixed probe, so that no profiled step runs the check; make the
        replay buffer (init=buffer) now, as the step's persistent state beside D's parameters."""
        if self.hparams.get("init") == "buffer":
            self.replay_buffer()
        if self.hparams.get("batched", True):  # the seed path runs D as written
            g = torch.Generator(device=self.device if self.device.type != "meta" else "cpu").manual_seed(0)
            probe = torch.rand((2, *self.input_shape), generator=g, device=g.device).to(self.device) * 2 - 1
            self.skipped_identities(probe)

    def skipped_identities(self, probe: torch.Tensor) -> list:
        """The exact-identity activations of D that the fast inner loop leaves out (checked on first use)."""
        if self._skipped is None:
            self._skipped = []
            targets = identity_ops(self.D) if self.hparams.get("skip_identity", False) else []
            if targets:
                why = identity_skip_check(self.D, targets, probe)
                if why:
                    self.notes.append(f"skip_identity: D's {len(targets)} identity activations kept: {why}")
                else:
                    self._skipped = targets
                    self.notes.append(f"fast path skips D's {len(targets)} exact-identity activations while "
                                      "sampling (bit-identical; checked on a probe batch)")
        return self._skipped

    # -- the discriminator's view -------------------------------------------------
    def probs(self, out: torch.Tensor) -> torch.Tensor:
        """(N, 2) probabilities ``[real, fake]`` (column 0 is realness)."""
        if self.kind == "score":
            r = torch.sigmoid(out.reshape(out.shape[0], -1)[:, 0])
            return torch.stack([r, 1 - r], dim=1)
        p = torch.softmax(out, dim=1)
        if self.real_class != 0:
            p = torch.stack([p[:, self.real_class], p[:, 1 - self.real_class]], dim=1)
        return p

    def realness(self, x: torch.Tensor) -> torch.Tensor:
        """Realness probability of each image, (N,), without gradients, D in eval mode."""
        with torch.no_grad(), eval_mode(self.D):
            return self.probs(self.D(x))[:, 0]

    def inner_loss(self, out: torch.Tensor) -> torch.Tensor:
        """Per-sample loss of the inner loop: CrossEntropy(softmax output, real), as the source."""
        p = self.probs(out)
        return F.cross_entropy(p, torch.zeros(p.shape[0], dtype=torch.long, device=p.device), reduction="none")

    # -- sampling ---------------------------------------------------------------------
    def noise(self, n: int, shape=None) -> torch.Tensor:
        shape = tuple(shape or self.input_shape)
        return torch.rand((n, *shape), device=self.device) * 2 - 1

    def optimise(self, x0: torch.Tensor, batched: bool | None = None) -> torch.Tensor:
        """Run the inner loop from ``x0`` (N, C, H, W); returns the optimised images."""
        batched = self.hparams["batched"] if batched is None else batched
        if batched:
            return self._optimise_batched(x0)
        outs: list[torch.Tensor] = []
        losses: list[torch.Tensor] = []
        for i in range(x0.shape[0]):
            outs.append(self._optimise_seed(x0[i:i + 1]))
            assert self.last_loss is not None  # set by _optimise_seed
            losses.append(self.last_loss)
        self.last_loss = torch.cat(losses)
        return torch.cat(outs)

    def _optimise_seed(self, x0: torch.Tensor) -> torch.Tensor:
        """GON_MNIST's gen() for one sample: parameter gradients on, torch Adam + scheduler."""
        hp = self.hparams
        init = x0.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([init], lr=hp["inner_lr"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp["inner_t_max"])
        try:
            self._seed_loop(init, opt, sched)
        finally:
            self.D.zero_grad(set_to_none=True)  # the source's backprop() zeroes them before its update
        return init.detach()

    def _seed_loop(self, init: torch.Tensor, opt: torch.optim.Optimizer, sched) -> None:
        """The iterations of :meth:`_optimise_seed` (``init`` optimised in place)."""
        hp = self.hparams
        eps, patience = hp["early_stop_eps"], hp["early_stop"]
        copyz, equal, it, zv = 10.0, 0, 0, 10.0
        with eval_mode(self.D):
            for _ in range(int(hp["inner_steps"])):
                stops.check()  # before the iteration changes anything: a stop leaves the last whole step
                copy = init.detach().clone()
                z = self.inner_loss(self.D(init)).sum()
                opt.zero_grad()
                z.backward()  # also fills D's parameter .grad, as the source does
                opt.step()
                sched.step()
                with torch.no_grad():
                    init.clamp_(-1.0, 1.0)
                it += 1
                zv = z.item()
                same = bool(torch.all((copy - init.detach()).abs() < eps)) or (0 < copyz - zv < eps)
                equal = equal + 1 if same else 0
                if equal > patience:
                    break
                copyz = zv
        self.last_iters = max(self.last_iters, it)
        self.last_loss = torch.tensor([zv], device=init.device)

    def _optimise_batched(self, x0: torch.Tensor) -> torch.Tensor:
        """The same loop for a whole batch: input-only gradients, Adam written out in place."""
        hp = self.hparams
        eps, patience = float(hp["early_stop_eps"]), int(hp["early_stop"])
        steps = int(hp["inner_steps"])
        lrs = cosine_lrs(float(hp["inner_lr"]), int(hp["inner_t_max"]), steps)
        b1, b2, adam_eps = 0.9, 0.999, 1e-8  # torch.optim.Adam defaults, as the source uses
        rule = str(hp.get("inner_opt", "adam"))
        if rule not in INNER_OPTS:
            raise ValueError(f"inner_opt must be one of {', '.join(INNER_OPTS)}, not {rule!r}")
        noise_sigma = float(hp.get("inner_noise", 0.0)) if rule == "langevin" else 0.0
        n = x0.shape[0]
        cl = bool(hp.get("channels_last")) and self._has_conv and x0.dim() == 4 and self.device.type == "cpu"
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = x0.detach().clone().contiguous(memory_format=fmt)
        m = torch.zeros_like(x) if rule == "adam" else None
        v = torch.zeros_like(x) if rule == "adam" else None
        prev = torch.full((n,), 10.0, device=x.device)
        equal = torch.zeros(n, dtype=torch.long, device=x.device)
        active = torch.ones(n, dtype=torch.bool, device=x.device)
        all_active = True
        it = 0
        D = self.D
        skipped = self.skipped_identities(x0[:2])
        if cl:
            D = D.to(memory_format=torch.channels_last)
        try:
            with identity_ops_skipped(skipped), frozen(D), eval_mode(D):
                for t in range(1, steps + 1):
                    stops.check()  # no sync: a clock compare, and only while a run watches for stops
                    xg = x.detach().requires_grad_(True)
                    z = self.inner_loss(D(xg))
                    (g,) = torch.autograd.grad(z.sum(), xg)
                    z = z.detach()
                    with torch.no_grad():
                        if rule == "adam":
                            assert m is not None and v is not None  # allocated above for adam
                            m.lerp_(g, 1 - b1)
                            v.mul_(b2).addcmul_(g, g, value=1 - b2)
                            bc1 = 1 - b1 ** t
                            bc2 = 1 - b2 ** t
                            denom = (v.sqrt() / math.sqrt(bc2)).add_(adam_eps)
                            x_new = x.addcdiv(m, denom, value=-lrs[t - 1] / bc1).clamp_(-1.0, 1.0)
                        else:
                            x_new = self._plain_update(x, g, rule, lrs[t - 1], noise_sigma * lrs[t - 1] / lrs[0])
                        moved = (x_new - x).abs_().flatten(1).amax(1)
                        drop = prev - z
                        same = (moved < eps) | ((drop > 0) & (drop < eps))
                        equal = torch.where(same, equal + 1, torch.zeros_like(equal))
                        if all_active:
                            x = x_new
                        else:
                            x = torch.where(active.view(-1, *([1] * (x.dim() - 1))), x_new, x)
                        prev = z
                        stop = equal > patience
                        it = t
                        if bool(stop.any()):
                            active &= ~stop
                            all_active = False
                            if not bool(active.any()):
                                break
        finally:
            if cl:
                self.D.to(memory_format=torch.contiguous_format)
        self.last_iters = max(self.last_iters, it)
        self.last_loss = prev
        return x.contiguous()

    @staticmethod
    def _plain_update(x: torch.Tensor, g: torch.Tensor, rule: str, lr: float, sigma: float) -> torch.Tensor:
        """One descent step of the non-Adam inner optimisers (``x`` is left unchanged)."""
        if rule == "sgd":
            return x.add(g, alpha=-lr).clamp_(-1.0, 1.0)
        # normalised: every sample moves by lr per pixel in RMS, along its own gradient
        rms = g.flatten(1).norm(dim=1).div_(math.sqrt(g[0].numel())).clamp_min_(1e-12)
        x_new = x.addcdiv(g, rms.view(-1, *([1] * (g.dim() - 1))), value=-lr)
        if sigma > 0:  # langevin: the normalised step plus Gaussian noise, annealed with the step size
            x_new.add_(torch.randn_like(x_new), alpha=sigma)
        return x_new.clamp_(-1.0, 1.0)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` negatives drawn by the batched inner loop (the same maths as the seed's one-at-a-time loop).

        init=noise: chains from fresh noise.  init=buffer: the ``n`` newest chains of the replay buffer
        (noise for any it does not hold yet), each run one more inner loop; the buffer is left as it was."""
        chunk = max(1, int(self.hparams["sample_chunk"]))
        starts = None
        if self.hparams.get("init") == "buffer":
            realest = self.hparams.get("sample_from", "newest") == "realest"
            starts = self.realest_chains(n) if realest else self.newest_chains(n)
        out = []
        for i in range(0, n, chunk):
            x0 = self.noise(min(chunk, n - i)) if starts is None else starts[i:i + chunk]
            out.append(self.optimise(x0, batched=True))
        return torch.cat(out)

    # -- the replay buffer (init=buffer) ----------------------------------------------
    def replay_buffer(self) -> torch.Tensor:
        """The replay buffer, made on first use: ``replay_size`` chains of U[-1, 1] noise (as JEM starts),
        each of age 0 (``replay_age``: the inner iterations a chain has run since its noise)."""
        if self.replay is None or tuple(self.replay.shape[1:]) != tuple(self.input_shape):
            self.replay = self.noise(int(self.hparams["replay_size"]))
            self.replay_age = torch.zeros(self.replay.shape[0], dtype=torch.long, device=self.replay.device)
            self.replay_head = 0
        return self.replay

    def replay_starts(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` chain starts: buffer entries drawn uniformly with replacement, each replaced by fresh noise
        with probability ``replay_restart``; returns (starts, restarted mask).  The starts' ages are kept in
        ``start_age`` for :meth:`replay_push`."""
        buf = self.replay_buffer()
        assert self.replay_age is not None  # made with the buffer
        idx = torch.randint(0, buf.shape[0], (k,), device=buf.device)
        restart = torch.rand(k, device=buf.device) < float(self.hparams["replay_restart"])
        x0 = buf[idx].to(self.device)
        fresh = self.noise(k, x0.shape[1:])
        x0 = torch.where(restart.view(-1, *([1] * (x0.dim() - 1))).to(x0.device), fresh, x0)
        self.start_age = torch.where(restart, torch.zeros_like(idx), self.replay_age[idx])
        return x0, restart

    def replay_push(self, x: torch.Tensor, age: torch.Tensor | None = None) -> None:
        """Write chains ``x`` of ages ``age`` (default 0) into the ring over its oldest entries (IGEBM's
        buffer: the newest kept)."""
        buf = self.replay_buffer()
        assert self.replay_age is not None  # made with the buffer
        size = buf.shape[0]
        age = torch.zeros(x.shape[0], dtype=torch.long) if age is None else age
        x, age = x.detach()[-size:], age[-size:]
        slots = (self.replay_head + torch.arange(x.shape[0])) % size
        buf[slots.to(buf.device)] = x.to(buf.device, buf.dtype)
        self.replay_age[slots.to(buf.device)] = age.to(buf.device)
        self.replay_head = int((self.replay_head + x.shape[0]) % size)

    def reset_stuck(self, x: torch.Tensor, age: torch.Tensor, loss: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Chains ``x`` (ages ``age``, inner losses ``loss`` at their last iteration) as they go back to the
        buffer: with ``replay_reset`` > 0, a chain at least ``replay_reset_age`` iterations old whose realness
        is still below ``replay_reset`` is replaced by a copy of a random healthy chain of the same batch
        (realness at or above it) plus N(0, ``replay_reset_noise``^2), with that chain's age; when none is
        healthy the chains go back as they are.  Realness is read off the inner loss, which is
        ``softplus(1 - 2 r)``: no extra pass through D.  Counts the resets in ``last_resets``."""
        hp = self.hparams
        thr = float(hp.get("replay_reset", 0.0))
        self.last_resets = 0
        if thr <= 0:
            return x, age
        bad_loss = F.softplus(torch.tensor(1.0 - 2.0 * thr)).item()  # realness below thr <=> loss above this
        loss, age = loss.to(x.device), age.to(x.device)
        healthy = loss <= bad_loss
        stuck = ~healthy & (age >= int(hp.get("replay_reset_age", 0))) & healthy.any()
        # each chain's donor: a uniformly random healthy chain of the batch, in O(k) memory and with no
        # data-dependent shapes: the healthy chains first in a random order, then a uniform position among them
        order = torch.argsort(torch.rand(x.shape[0], device=x.device) + 2.0 * healthy.float(), descending=True)
        pos = (torch.rand(x.shape[0], device=x.device) * healthy.sum()).long().clamp_(max=x.shape[0] - 1)
        donor = order[pos]
        sigma = float(hp.get("replay_reset_noise", 0.0))
        copies = (x[donor] + sigma * torch.randn_like(x)).clamp_(-1.0, 1.0)
        x = torch.where(stuck.view(-1, *([1] * (x.dim() - 1))), copies, x)
        age = torch.where(stuck, age[donor], age)
        if x.device.type != "meta":
            self.last_resets = int(stuck.sum())
        return x, age

    def newest_chains(self, n: int) -> torch.Tensor:
        """The ``n`` newest chains that have run more than one step's inner loop (a chain restarted from
        noise in its last step is passed over) and that D rates at least ``sample_realness`` (a stuck chain
        is passed over; D rates the ripe chains newest first, ``sample_chunk`` at a time, until ``n`` pass;
        0 skips it), newest first; then the newest of the others, then noise."""
        buf = self.replay_buffer()
        assert self.replay_age is not None  # made with the buffer
        order = (self.replay_head - 1 - torch.arange(buf.shape[0])) % buf.shape[0]
        ripe = self.replay_age[order.to(buf.device)].cpu() > int(self.hparams["inner_steps"])
        floor = float(self.hparams.get("sample_realness", 0.0))
        if floor > 0:  # D rates the ripe chains newest first, a chunk at a time, until n of them pass
            chunk = max(1, int(self.hparams["sample_chunk"]))
            candidates = order[ripe]
            passed = torch.zeros(candidates.shape[0], dtype=torch.bool)
            for i in range(0, candidates.shape[0], chunk):
                part = candidates[i:i + chunk].to(buf.device)
                passed[i:i + chunk] = self.realness(buf[part].to(self.device)).cpu() >= floor
                if int(passed.sum()) >= n:
                    break
            rest = torch.cat([candidates[~passed], order[~ripe]])
            order = torch.cat([candidates[passed], rest])[:n]
        else:
            order = torch.cat([order[ripe], order[~ripe]])[:n]
        x = buf[order.to(buf.device)].to(self.device)
        return x if x.shape[0] == n else torch.cat([x, self.noise(n - x.shape[0], x.shape[1:])])

    def realest_chains(self, n: int) -> torch.Tensor:
        """The ``n`` chains that D rates most real among those that have run more than one step's inner
        loop, most real first; then the most real of the others, then noise.  One pass of D over the buffer."""
        buf = self.replay_buffer()
        assert self.replay_age is not None  # made with the buffer
        chunk = max(1, int(self.hparams["sample_chunk"]))
        r = torch.cat([self.realness(buf[i:i + chunk].to(self.device)).cpu() for i in range(0, buf.shape[0], chunk)])
        ripe = self.replay_age.cpu() > int(self.hparams["inner_steps"])
        order = torch.argsort(r + 2.0 * ripe.float(), descending=True, stable=True)[:n]  # ripe ones first
        x = buf[order.to(buf.device)].to(self.device)
        return x if x.shape[0] == n else torch.cat([x, self.noise(n - x.shape[0], x.shape[1:])])

    def chains_per_step(self, batch: int) -> int:
        """``fakes`` chains a step, or as many as the real batch (``fakes`` 0)."""
        return int(self.hparams["fakes"]) or batch

    def state_tensors(self) -> dict[str, list[torch.Tensor]]:
        """The replay buffer, the memory init=buffer trades for shorter chains (none for init=noise)."""
        if self.replay is None or self.replay_age is None:
            return {}
        return {"replay": [self.replay, self.replay_age]}

    def chain_starts(self, k: int) -> torch.Tensor:
        """Where a step's ``k`` chains start: fresh noise (init=noise), or the replay buffer (init=buffer)."""
        if self.hparams.get("init") != "buffer":
            self.last_restarts = k
            return self.noise(k)
        x0, restart = self.replay_starts(k)
        self.last_restarts = int(restart.sum())
        return x0

    # -- one step ----------------------------------------------------------------------
    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None,
             phase: Callable[[str], Any] = no_phase) -> dict[str, torch.Tensor]:
        hp = self.hparams
        self.input_shape = tuple(real.shape[1:])
        n = real.shape[0]
        k = self.chains_per_step(n)
        cap = max(int(hp["buffer"]), k)
        self.last_iters = 0
        with phase("sample"):
            sample_loss = None
            if hp["noise_start"] and (self.buffer is None or len(self.buffer) == 0):
                new = self.noise(cap)  # the source's first epoch: noise negatives, no optimisation
            else:
                new = self.optimise(self.chain_starts(k))
                assert self.last_loss is not None  # set by optimise
                sample_loss = self.last_loss.mean()
                if hp.get("init") == "buffer":
                    assert self.start_age is not None  # set by chain_starts
                    kept, age = self.reset_stuck(new, self.start_age + self.last_iters, self.last_loss)
                    self.replay_push(kept, age)
            buf = new if self.buffer is None else torch.cat([self.buffer.to(new.device), new])
            self.buffer = buf[-cap:].detach()
            fakes = self.buffer
        with phase("d_step"):
            sigma = float(hp.get("data_noise", 0.0))
            if sigma > 0:
                real = (real + sigma * torch.randn_like(real)).clamp_(-1.0, 1.0)
            x = torch.cat([real, fakes.to(real.dtype)])
            target = torch.zeros(x.shape[0], 2, device=x.device, dtype=x.dtype)
            target[:n, 0] = 1.0
            target[n:, 1] = 1.0
            ub = int(hp["update_batch"])
            opt = self.optimizers["D"]
            if ub <= 0:
                opt.zero_grad(set_to_none=True)
                loss = F.mse_loss(self.probs(self.D(x)), target)
                loss.backward()
                opt.step()
                d_loss = loss.detach()
            else:
                order = torch.randperm(x.shape[0], device=x.device)
                total = x.new_zeros(())
                for i in range(0, x.shape[0], ub):
                    idx = order[i:i + ub]
                    opt.zero_grad(set_to_none=True)
                    loss = F.mse_loss(self.probs(self.D(x[idx])), target[idx])
                    loss.backward()
                    opt.step()
                    total = total + loss.detach() * len(idx)
                d_loss = total / x.shape[0]
        losses = {"d_loss": d_loss, "inner_iters": float(self.last_iters)}
        if hp.get("init") == "buffer":
            losses["restarts"] = float(self.last_restarts)
            if float(hp.get("replay_reset", 0.0)) > 0:
                losses["resets"] = float(self.last_resets)
        if sample_loss is not None:
            losses["sample_loss"] = sample_loss
        return detached(losses)

    # -- checkpoints --------------------------------------------------------------------
    def extra_state(self) -> dict:
        def cpu(t):
            return None if t is None else t.detach().cpu().clone()
        return {"buffer": cpu(self.buffer), "replay": cpu(self.replay), "replay_age": cpu(self.replay_age),
                "replay_head": self.replay_head}

    def load_extra_state(self, state: dict) -> None:
        buf, replay = state.get("buffer"), state.get("replay")
        self.buffer = None if buf is None else buf.to(self.device)
        self.replay = None if replay is None else replay.to(self.device)
        self.replay_head = int(state.get("replay_head", 0))
        age = state.get("replay_age")
        if self.replay is not None:
            self.replay_age = (torch.zeros(self.replay.shape[0], dtype=torch.long) if age is None else age).to(
                self.device)


def with_spectral_norm(D: nn.Module) -> nn.Module:
    """Spectral norm (torch's parametrization, one power iteration per training forward) on every linear
    and conv layer of ``D``, in place."""
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(D.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            spectral_norm(m)
    return D


@register_mode(
    "gon",
    summary="Generative Optimization Network: negatives made by optimising the input against D itself",
    phases=GONStep.phases,
    default_arch="gon-mnist-mlp",
    needs_generator=False,
    outputs=("score", "logits[2]"),
    params=PARAMS,
    defaults=DEFAULTS,
    presets=PRESETS,
    source="Tuli et al. 2021, arXiv 2110.02912; imperial-qore/GON_MNIST (src/gen.py, main.py)",
    notes=NOTES,
    inner_loop_hparams=("inner_steps",),
    cpu_only_hparams={"channels_last": False},
    ddp_refused={"batched": (False, "the seed procedure back-propagates into D's parameters at every inner "
                                    "iteration and each rank stops its inner loop at its own iteration, so "
                                    "under DDP the ranks' gradient all-reduces would not match; the fast path "
                                    "(batched=true, the default) takes input gradients only")},
)
def make_gon(D, D_spec, G, G_spec, hparams, device) -> GONStep:
    return GONStep(D, D_spec, hparams, device)
