"""Parameter counts and persistent-state bytes, exact from the tensors.

- :func:`count_params`: per model, total / trainable / frozen parameters,
  buffers (tensors and elements), bytes by dtype.  Bytes are
  ``numel * element_size`` of each tensor; a parameter shared inside a model
  is counted once.
- :func:`persistent_state`: parameters, buffers, the ``.grad`` tensors present
  and every tensor reachable in ``optimizer.state`` (Adam: ``exp_avg``,
  ``exp_avg_sq`` and the ``step`` scalar tensor per parameter), each tensor
  counted once across all models and optimizers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from gonprof.records import ModelParams, PersistentBytes


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def count_params(model: torch.nn.Module, name: str = "model") -> ModelParams:
    total = trainable = n_tensors = 0
    by_dtype: dict[str, int] = {}
    pbytes = 0
    for p in model.parameters():  # deduplicated by identity
        n = p.numel()
        total += n
        n_tensors += 1
        if p.requires_grad:
            trainable += n
        b = tensor_bytes(p)
        pbytes += b
        k = dtype_name(p.dtype)
        by_dtype[k] = by_dtype.get(k, 0) + b
    b_tensors = b_elems = bbytes = 0
    b_by_dtype: dict[str, int] = {}
    for b_ in model.buffers():
        b_tensors += 1
        b_elems += b_.numel()
        b = tensor_bytes(b_)
        bbytes += b
        k = dtype_name(b_.dtype)
        b_by_dtype[k] = b_by_dtype.get(k, 0) + b
    return ModelParams(
        name=name,
        params_total=total,
        params_trainable=trainable,
        params_frozen=total - trainable,
        param_tensors=n_tensors,
        buffer_tensors=b_tensors,
        buffer_elements=b_elems,
        param_bytes=pbytes,
        buffer_bytes=bbytes,
        param_bytes_by_dtype=by_dtype,
        buffer_bytes_by_dtype=b_by_dtype,
    )


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested dicts / lists / tuples."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from iter_tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from iter_tensors(v)


def optimizer_state_tensors(optimizer: Any) -> Iterator[torch.Tensor]:
    state = getattr(optimizer, "state", None)
    if state is None:
        return
    for v in state.values():
        yield from iter_tensors(v)


def persistent_state(
    models: Mapping[str, torch.nn.Module], optimizers: Mapping[str, Any] | None = None
) -> PersistentBytes:
    optimizers = optimizers or {}
    seen: set[int] = set()

    def once(t: torch.Tensor) -> int:
        if id(t) in seen:
            return 0
        seen.add(id(t))
        return tensor_bytes(t)

    p_by_model: dict[str, int] = {}
    g_by_model: dict[str, int] = {}
    bbytes = 0
    for name, m in models.items():
        pb = gb = 0
        for p in m.parameters():
            pb += once(p)
            if p.grad is not None:
                gb += once(p.grad)
        for b in m.buffers():
            bbytes += once(b)
        p_by_model[name] = pb
        g_by_model[name] = gb
    o_by_opt: dict[str, int] = {}
    for name, opt in optimizers.items():
        ob = 0
        for t in optimizer_state_tensors(opt):
            ob += once(t)
        # gradients of parameters the optimizer holds but no model lists
        for group in getattr(opt, "param_groups", []):
            for p in group.get("params", []):
                if id(p) not in seen and isinstance(p, torch.Tensor):
                    p_by_model.setdefault(f"{name}.params", 0)
                    p_by_model[f"{name}.params"] += once(p)
                    if p.grad is not None:
                        g_by_model.setdefault(f"{name}.params", 0)
                        g_by_model[f"{name}.params"] += once(p.grad)
        o_by_opt[name] = ob
    return PersistentBytes(
        param_bytes=sum(p_by_model.values()),
        buffer_bytes=bbytes,
        grad_bytes=sum(g_by_model.values()),
        optimizer_state_bytes=sum(o_by_opt.values()),
        param_bytes_by_model=p_by_model,
        grad_bytes_by_model=g_by_model,
        optimizer_state_bytes_by_optimizer=o_by_opt,
    )
