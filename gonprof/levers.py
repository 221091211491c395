"""Memory levers of a step: lower precision, activation checkpointing, micro-batches, channels-last.

The levers are fields of the step's request (:class:`~gonprof.request.StepSpec`): ``precision``,
``checkpoint``, ``micro_batches`` and ``channels_last``.  :func:`check_levers` holds their rules (one line
each, checked once with the rest of the request); :func:`apply_levers` puts them on a built
:class:`~gonprof.modes.base.TrainStep`, so every verb that builds a step (profile, train, compare, fit, the
estimator) runs them the same way:

* ``precision`` bf16 / fp16: each model's forward runs under ``torch.autocast`` (the weights stay float32,
  the master copy the optimizer updates) and its floating output leaves the model as float32, so the
  losses are computed in float32.  fp16 (CUDA only) scales the loss with a ``GradScaler`` per optimizer.
  On the ``meta`` device (the estimator) autocast does nothing, so :class:`MetaAutocast` replays its
  policy: the ops autocast runs in the low precision cast their floating inputs (a parameter's cast
  cached for the forward, as autocast caches it), the ops it keeps in float32 cast them back.
* ``checkpoint`` D / G: each block of the model (the architecture's declared ``blocks``, else its
  top-level children) runs under ``torch.utils.checkpoint`` (non-reentrant): its activations are not kept
  for the backward but recomputed there (more FLOPs, counted as backward).
* ``micro_batches`` K: every update of the step runs its forward and backward on K slices of the batch,
  accumulating the gradients before one optimizer step (a mode that declares it can).
* ``channels_last``: the models' 4-d weights and each 4-d input of a model's forward in channels-last layout.

This module does not import torch at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .records import RequestError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from .arch import ArchSpec
    from .modes.base import ModeSpec

#: The precisions a step runs in (``--precision``).
PRECISIONS = ("fp32", "bf16", "fp16")
#: The models a step may checkpoint (``--checkpoint``).
CHECKPOINT_ROLES = ("D", "G")
#: The lever fields of a request and their defaults (no lever).
LEVER_DEFAULTS: dict[str, Any] = {"precision": "fp32", "checkpoint": (), "micro_batches": 1,
                                  "channels_last": False}
#: A note for a row whose lever may change what the step learns, not only what it costs.
QUALITY_NOTES = {
    "bf16": "bf16 autocast: 8-bit mantissa in matmuls and convolutions; quality may change (compare it)",
    "fp16": "fp16 autocast with loss scaling: quality may change (compare it)",
    "micro_batches": "batch-norm statistics are taken per micro-batch",
}


def lever_label(levers: dict[str, Any]) -> str:
    """The levers that differ from their defaults, in words: ``bf16, checkpoint D, 4 micro-batches,
    channels-last``; "" for none."""
    parts = []
    if levers.get("precision", "fp32") != "fp32":
        parts.append(str(levers["precision"]))
    roles = levers.get("checkpoint") or ()
    if roles:
        parts.append("checkpoint " + (roles if isinstance(roles, str) else ",".join(roles)))
    k = levers.get("micro_batches", 1)
    if k not in (1, None):
        parts.append(f"{k} micro-batches")
    if levers.get("channels_last") is True:
        parts.append("channels-last")
    return ", ".join(parts)


def parse_checkpoint(value: Any) -> tuple[str, ...]:
    """``"D"``, ``"D,G"``, ``["G"]`` or ``()`` as a sorted tuple of roles; a one-line RequestError for
    anything else."""
    if value is None or value == "" or value == ():
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if parts is None or not all(isinstance(p, str) for p in parts):
        raise RequestError(f"--checkpoint must name models D, G or D,G, not {value!r}")
    roles = tuple(p.strip() for p in parts if p.strip())
    bad = [r for r in roles if r not in CHECKPOINT_ROLES]
    if bad or not roles:
        raise RequestError(f"--checkpoint must name models D, G or D,G, not {value!r}")
    return tuple(r for r in CHECKPOINT_ROLES if r in roles)


def check_precision(precision: Any, device: str) -> str:
    if precision not in PRECISIONS:
        raise RequestError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp16" and device == "cpu":
        raise RequestError("--precision fp16 needs a CUDA device (its loss scaling is CUDA's); on the CPU use bf16")
    return str(precision)


def check_micro_batches(k: Any, batch_size: int, mode: ModeSpec) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RequestError(f"--micro-batches must be a positive integer, not {k!r}")
    if k == 1:
        return 1
    if k > batch_size:
        raise RequestError(f"--micro-batches {k} is larger than the batch ({batch_size}); each micro-batch "
                           "needs at least one image")
    if batch_size % k:
        raise RequestError(f"--micro-batches {k} does not divide the batch ({batch_size}); pick a divisor so "
                           "every micro-batch is the same size")
    if not mode.micro_batches:
        raise RequestError(f"mode {mode.name} cannot run micro-batches: its step does not split its updates "
                           "into slices of the batch")
    return int(k)


def check_levers(precision: Any, checkpoint: Any, micro_batches: Any, channels_last: Any, *, device: str,
                 batch_size: int, mode: ModeSpec, models: dict[str, Any]) -> dict[str, Any]:
    """The lever fields, checked: a one-line RequestError for an unknown precision, fp16 on the CPU (or in a
    mode whose updates take no loss scaling), a checkpoint of a model with no blocks (or of a generator the
    mode does not have), micro-batches that do not divide the batch or exceed it, channels-last for a
    discriminator without 2-d convolutions.  ``models``: role -> (ArchSpec, built module on meta, or None)."""
    prec = check_precision(precision, device)
    if prec == "fp16" and not mode.scaled_updates:
        raise RequestError(f"--precision fp16: mode {mode.name} updates its models itself, without the loss "
                           "scaling fp16 needs; use bf16")
    roles = parse_checkpoint(checkpoint)
    for role in roles:
        if role not in models:
            raise RequestError(f"--checkpoint {role}: mode {mode.name} has no generator to checkpoint")
        spec, model = models[role]
        if not blocks_of(spec, model):
            raise RequestError(f"--checkpoint {role}: {spec.name} has no blocks to checkpoint (no submodules "
                               "and none declared)")
    k = check_micro_batches(micro_batches, batch_size, mode)
    if not isinstance(channels_last, bool):
        raise RequestError(f"--channels-last must be true or false, not {channels_last!r}")
    if channels_last:
        spec, model = models["D"]
        if not has_conv2d(model):
            raise RequestError(f"--channels-last: {spec.name} has no 2-d convolution; the layout changes nothing")
    return {"precision": prec, "checkpoint": roles, "micro_batches": k, "channels_last": channels_last}


def has_conv2d(model: nn.Module) -> bool:
    from torch import nn

    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


def blocks_of(spec: ArchSpec | None, model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the blocks a checkpoint wraps: ``spec.blocks`` (dotted submodule names) where the
    architecture declares them, else the model's top-level children (containers without a forward left out)."""
    declared = tuple(getattr(spec, "blocks", ()) or ())
    if declared:
        named = dict(model.named_modules())
        missing = [b for b in declared if b not in named]
        if missing:
            raise RequestError(f"{getattr(spec, 'name', '?')} declares blocks {', '.join(missing)} it does not have")
        return [(b, named[b]) for b in declared]
    from torch import nn

    # a ModuleList / ModuleDict has no forward of its own: its parent calls its members
    return [(n, m) for n, m in model.named_children() if not isinstance(m, (nn.ModuleList, nn.ModuleDict))]


# -- what runs --------------------------------------------------------------------------------

def _to_float(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, tuple):
        return tuple(_to_float(o) for o in out)
    if isinstance(out, list):
        return [_to_float(o) for o in out]
    return out


def _channels_last_args(args: tuple) -> tuple:
    import torch

    return tuple(a.contiguous(memory_format=torch.channels_last)
                 if isinstance(a, torch.Tensor) and a.dim() == 4 else a for a in args)


def autocast_context(precision: str, device: Any) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A factory of the context a model's forward runs in under ``precision`` on ``device``."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    dev = torch.device(device)
    if dev.type == "meta":
        return lambda: MetaAutocast(dtype, cuda=False)
    return lambda: torch.autocast(dev.type, dtype=dtype)


def wrap_forward(module: nn.Module, precision: str, device: Any, channels_last: bool, to_float: bool = True) -> None:
    """Run ``module``'s forward under ``precision``'s autocast (its floating outputs returned as float32 when
    ``to_float``), with 4-d inputs in channels-last layout when asked."""
    inner = module.forward
    ctx = autocast_context(precision, device)
    cast_back = to_float and precision != "fp32"

    def forward(*args: Any, **kwargs: Any) -> Any:
        if channels_last:
            args = _channels_last_args(args)
        with ctx():
            out = inner(*args, **kwargs)
        return _to_float(out) if cast_back else out

    module.forward = forward


def checkpoint_blocks(blocks: Sequence[tuple[str, nn.Module]]) -> None:
    """Run each block's forward under non-reentrant ``torch.utils.checkpoint`` when gradients are on (a
    block's own autocast, :func:`apply_levers` puts it inside, is entered again when it is recomputed)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    for _, block in blocks:
        inner = block.forward

        def forward(*args: Any, _inner: Callable[..., Any] = inner, **kwargs: Any) -> Any:
            if not torch.is_grad_enabled():
                return _inner(*args, **kwargs)
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = forward


def apply_levers(step: Any, levers: dict[str, Any], specs: dict[str, Any]) -> None:
    """Put ``levers`` (checked) on a built step; its ``notes`` and ``levers`` say what was put.

    Autocast wraps each model's forward and, inside it, each of its blocks (:func:`blocks_of`), so a mode
    that calls a model's parts itself (improved-gan's feature matching calls ``D.features``) runs them under
    it too; a checkpointed block recomputes under its own autocast."""
    import torch

    models = {k: m for k, m in step.models.items() if m is not None}
    precision = levers["precision"]
    if levers["channels_last"]:
        for m in models.values():
            m.to(memory_format=torch.channels_last)
    blocks = {role: blocks_of(specs.get(role), m) for role, m in models.items()} if (
        precision != "fp32" or levers["checkpoint"]) else {}
    if precision != "fp32":
        for role_blocks in blocks.values():
            for _, block in role_blocks:
                wrap_forward(block, precision, step.device, channels_last=False, to_float=False)
    for role in levers["checkpoint"]:
        checkpoint_blocks(blocks[role])
        step.notes.append(f"checkpoint {role}: {len(blocks[role])} block(s) recomputed in the backward "
                          f"({', '.join(n for n, _ in blocks[role])})")
    if precision != "fp32" or levers["channels_last"]:
        for m in models.values():
            wrap_forward(m, precision, step.device, levers["channels_last"])
    if precision != "fp32":
        step.notes.append(f"precision {precision}: each model's forward and blocks under autocast, float32 master "
                          "weights, the models' outputs (so the losses) in float32")
    if precision == "fp16":
        step.grad_scaling = True
    step.micro_batches = int(levers["micro_batches"])
    step.levers = dict(levers)


def micro_slices(n: int, k: int) -> Iterator[tuple[int, int]]:
    """``k`` (start, stop) slices of ``n`` items, in order, sizes differing by at most one."""
    k = max(1, min(int(k), int(n)))
    for i in range(k):
        yield n * i // k, n * (i + 1) // k


# -- autocast on the meta device (the estimator) ----------------------------------------------------

def _lower_ops() -> tuple[Any, ...]:
    import torch
    import torch.nn.functional as F

    return (F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
            F.linear, F.prelu, F.scaled_dot_product_attention, torch.matmul, torch.mm, torch.bmm, torch.addmm,
            torch.baddbmm, torch.addbmm, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.mm,
            torch.Tensor.bmm, torch.conv2d, torch.conv1d, torch.conv3d, torch.conv_transpose2d)


def _fp32_ops() -> tuple[Any, ...]:
    import torch.nn.functional as F

    return (F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss, F.binary_cross_entropy,
            F.binary_cross_entropy_with_logits, F.cross_entropy, F.nll_loss, F.kl_div, F.avg_pool3d,
            F.max_pool3d, F.adaptive_avg_pool3d, F.grid_sample)


class MetaAutocast:
    """Autocast's CPU policy replayed for meta tensors (which torch's autocast skips), above autograd (a
    TorchFunctionMode), so the casts are recorded and saved for the backward as autocast's are: the ops
    autocast runs in the low precision (:func:`_lower_ops`: convolutions, linear, matmuls) cast their
    float32 inputs to ``dtype``, a parameter's cast kept until the outermost region ends (autocast's cache
    of leaf tensors that require grad, cleared when its nesting count returns to 0); the ops it keeps in
    float32 (:func:`_fp32_ops`: losses, 3-d pooling)
    cast low-precision inputs to float32."""

    def __init__(self, dtype: torch.dtype, cuda: bool = False) -> None:
        self.dtype = dtype
        self.cuda = cuda
        self._mode: Any = None

    def __enter__(self) -> MetaAutocast:
        from torch.overrides import TorchFunctionMode

        policy = self

        class _Mode(TorchFunctionMode):
            def __init__(self) -> None:
                super().__init__()
                self.cache = _META_CAST_CACHE  # shared by nested regions, as autocast's one cache is
                self.lower = set(_lower_ops())
                self.fp32 = set(_fp32_ops())

            def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                kwargs = kwargs or {}
                if func in self.lower:
                    args, kwargs = self._cast(args, kwargs, policy.dtype)
                elif func in self.fp32:
                    import torch

                    args, kwargs = self._cast(args, kwargs, torch.float32)
                return func(*args, **kwargs)

            def _cast(self, args: tuple, kwargs: dict, dtype: Any) -> tuple[tuple, dict]:
                return (tuple(self._one(a, dtype) for a in args),
                        {k: self._one(v, dtype) for k, v in kwargs.items()})

            def _one(self, t: Any, dtype: Any) -> Any:
                import torch

                if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dtype == dtype:
                    return t
                if t.dtype == torch.float64:
                    return t
                cacheable = t.is_leaf and t.requires_grad and dtype != torch.float32
                if cacheable and id(t) in self.cache:
                    return self.cache[id(t)][1]
                with torch._C.DisableTorchFunction():
                    out = t.to(dtype)
                if cacheable:
                    self.cache[id(t)] = (t, out)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        _META_NESTING[0] += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        mode, self._mode = self._mode, None
        if mode is not None:
            _META_NESTING[0] -= 1
            if _META_NESTING[0] == 0:  # autocast clears its cache when the outermost region ends
                _META_CAST_CACHE.clear()
            mode.__exit__(*exc)


#: The casts of leaf tensors that require grad, kept until the outermost :class:`MetaAutocast` region ends
#: (id -> (tensor, its cast)), and how deep the regions are nested: autocast's cache and nesting count.
_META_CAST_CACHE: dict[int, Any] = {}
_META_NESTING = [0]
