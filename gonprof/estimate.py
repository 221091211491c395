"""A training step's memory predicted without allocating it: meta tensors through the live-bytes tracker.

:func:`estimate_step_memory` builds the step on the ``meta`` device (no data,
no real memory: a batch of 100,000 images costs nothing), runs it under the
project's :class:`~gonprof.measure.memory.LiveBytesTracker` and reports the
tensor-level peak with its split, as the profiler does for a real step.

Why meta and not ``FakeTensorMode``: a FakeTensor parameter cannot be moved
(``nn.Module.to`` swaps fake parameters, and the swap fails on the weak
references FakeTensorMode keeps, torch 2.14), which ``build_step`` and GON's
channels_last switch both do.  Meta tensors run forward, backward,
``torch.autograd.grad`` w.r.t. a leaf input, double backward and Adam.  Two
things meta does not do as a real device does are patched by a dispatch mode
below the tracker (so the tracker sees only the corrected results):

- data-dependent scalars (``.item()``, ``bool(t)``, ``int(t)``: GON's early
  stop, label checks, init code) have no value on meta; they are answered by
  a *policy*, all False/0 ("no early stop, every branch that needs a True
  skipped") and, when any such read happened, the step is run again with all
  True/1, and the worse of the two peaks is reported (``worst_case`` says so);
- a copy off the meta device (``.cpu()`` of labels for bookkeeping) becomes
  a real tensor of the policy's value (0 or 1);
- a convolution's output layout: the CPU and cuDNN kernels return
  channels_last when the input or the weight is channels_last, the meta kernel
  always contiguous, which changes later reshapes (copies or views).

Inner loops (the hyper-parameters a mode lists in ``inner_loop_hparams``:
GON's ``inner_steps``) are capped at ``max_inner_steps`` iterations: every
iteration of GON's loop starts from the same live set (the input ``x``, its
Adam moments ``m`` / ``v`` when the inner optimiser is Adam, the per-sample ``prev``,
``equal`` and ``active``, all replaced by same-size tensors), so the peak of
iteration 3 repeats in iterations 4, 5, ...; the first iterations are run so
that both branches of the early stop (all samples active; some stopped, the
``torch.where`` update) are reached.

Two steps are run by default: the first creates the optimizers' state and
GON's buffer, the second is the steady state (the one the profiler measures);
the peak is the larger.

CUDA without a GPU: the step runs on meta as above and each storage is
rounded up as the CUDA caching allocator rounds a request (to a multiple of
512 bytes; 0 bytes take no block), which is what ``max_memory_allocated``
counts.  Not estimated: ``max_memory_reserved`` (segments of 2 MiB for
requests up to 1 MiB, 20 MiB for requests up to 10 MiB, larger ones rounded
to 2 MiB, plus fragmentation), cuBLAS / cuDNN workspaces and the CUDA
context itself (several hundred MiB outside the allocator).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gonprof.measure.memory import LiveBytesTracker
from gonprof.records import MemoryEstimate, to_jsonable
from gonprof.request import StepSpec

#: The CUDA caching allocator's minimum block size: requests are rounded up to a multiple of it.
CUDA_BLOCK_BYTES = 512
CUDA_ROUNDING = "each storage rounded up to a multiple of 512 bytes (CUDA caching allocator; 0 bytes -> 0)"

_aten = torch.ops.aten


def cuda_round(nbytes: int) -> int:
    """Bytes the CUDA caching allocator hands out for a request of ``nbytes`` (what max_memory_allocated counts)."""
    n = int(nbytes)
    if n <= 0:
        return 0
    return -(-n // CUDA_BLOCK_BYTES) * CUDA_BLOCK_BYTES


class _MetaFixes(TorchDispatchMode):
    """Answers data-dependent scalars on meta tensors by ``policy`` and gives convolutions the device's layout."""

    def __init__(self, policy: bool = False) -> None:
        super().__init__()
        self.policy = bool(policy)
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is _aten._local_scalar_dense.default:
            t = args[0]
            if isinstance(t, torch.Tensor) and t.device.type == "meta":
                self.reads += 1
                if t.dtype == torch.bool:
                    return self.policy
                if t.dtype.is_floating_point or t.dtype.is_complex:
                    return 1.0 if self.policy else 0.0
                return 1 if self.policy else 0
        if func is _aten._to_copy.default and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta":
            dev = kwargs.get("device")
            if dev is not None and torch.device(dev).type != "meta":
                # a copy off the device (e.g. labels to the CPU for bookkeeping): a real tensor of the
                # policy's value, of the requested dtype
                self.reads += 1
                t = args[0]
                fill = torch.ones if self.policy else torch.zeros
                return fill(t.shape, dtype=kwargs.get("dtype") or t.dtype, device=dev)
        out = func(*args, **kwargs)
        if func is _aten.convolution.default and isinstance(out, torch.Tensor) and out.device.type == "meta":
            out = _conv_layout(args, out)
        return out


def _channels_last(t: Any) -> bool:
    return (isinstance(t, torch.Tensor) and t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


def _conv_layout(args: tuple, out: torch.Tensor) -> torch.Tensor:
    # ATen's mkldnn / thnn / cudnn rule: channels_last out when input or weight suggests it
    if out.dim() == 4 and (_channels_last(args[0]) or _channels_last(args[1])):
        if not out.is_contiguous(memory_format=torch.channels_last):
            return out.contiguous(memory_format=torch.channels_last)
    return out


def build_on_meta(spec: StepSpec) -> Any:
    """``spec``'s step built on the meta device (nothing allocated, no data): its names, settings and
    output contract (:func:`gonprof.modes.build.check_outputs`, a meta forward) refused in one line, as a
    real build would refuse them, at no cost."""
    with torch.device("meta"), _MetaFixes(False):
        return spec.build(device="meta")


def track_meta_steps(step: Any, real_shape: tuple[int, ...], steps: int = 2, policy: bool = False,
                     cuda: bool = False) -> tuple[list, list, int]:
    """Run ``step.step(real, labels, phase)`` ``steps`` times on a meta batch of ``real_shape`` under the tracker.

    ``step``: anything with ``.models``, ``.optimizers`` and ``.step(real, labels, phase=...)`` whose
    tensors live on the meta device (build it under ``with torch.device("meta")``).  Returns
    (LiveMemory per step, rounded-to-CUDA-blocks LiveMemory per step or [], data-dependent reads).
    """
    fixes = _MetaFixes(policy)
    real = torch.empty(tuple(real_shape), device="meta")
    labels = torch.zeros((real.shape[0],), dtype=torch.long, device="meta")
    live, rounded = [], []
    state = getattr(step, "state_tensors", None)
    for _ in range(max(1, int(steps))):
        mt = LiveBytesTracker(step.models, step.optimizers, state=state, timeline=False)
        rt = LiveBytesTracker(step.models, step.optimizers, cuda_round, state, timeline=False) if cuda else None
        with fixes:  # below the trackers: they see corrected results only
            with mt:
                if rt is not None:
                    with rt:
                        step.step(real, labels, phase=mt.phase)
                else:
                    step.step(real, labels, phase=mt.phase)
        live.append(mt.figures())
        if rt is not None:
            rounded.append(rt.figures())
    return live, rounded, fixes.reads


def input_bytes(batch_size: int, shape: tuple[int, ...]) -> int:
    """Bytes of one batch as the profiler feeds it: float32 images and int64 labels."""
    return int(batch_size) * (math.prod(shape) * 4 + 8)


def _estimate_overrides(spec: StepSpec, max_inner_steps: int, is_cuda: bool, notes: list[str]) -> dict[str, Any]:
    """The settings the estimate runs with instead of the request's: inner loops capped at
    ``max_inner_steps`` (their peak repeats), CPU-only fast paths off on cuda; each change noted."""
    mode_spec, given = spec.mode_spec(), dict(spec.hparams)
    resolved = spec.resolved_hparams()  # cheap: the build is on meta
    capped: dict[str, Any] = {}
    for k in mode_spec.inner_loop_hparams:  # the mode declares them (gon: inner_steps)
        if k in resolved and isinstance(resolved[k], int) and resolved[k] > max_inner_steps:
            capped[k] = max_inner_steps
            notes.append(
                f"{k} = {resolved[k]} capped at {max_inner_steps}: each inner iteration starts from the same "
                "live set (input, its optimiser state, per-sample counters), so the peak of the first iterations "
                "repeats in the later ones")
    if is_cuda:
        for k, v in mode_spec.cpu_only_hparams.items():
            if k in resolved and resolved[k] != v and k not in given:
                capped[k] = v
                notes.append(f"{k} set to {v}: a CPU-only fast path the step skips on cuda")
    return capped


def _run_worst_case(spec: StepSpec, overrides: dict, real_shape: tuple[int, ...], steps: int,
                    is_cuda: bool) -> tuple[Any, _MetaFixes, list, str]:
    """(step, fixes, per-step (live, rounded) figures, what was done about data-dependent reads): the step run
    on meta tensors, and where it reads data to branch (early stops), run again with every such read taken
    the other way, keeping the run with the larger peak."""
    def run(policy: bool) -> tuple[Any, _MetaFixes, list]:
        fixes = _MetaFixes(policy)
        with torch.device("meta"), fixes:
            step = spec.replace(hparams=overrides).build(device="meta")
        live, rounded, reads = track_meta_steps(step, real_shape, steps, policy, is_cuda)
        fixes.reads += reads
        return step, fixes, list(zip(live, rounded or [None] * len(live)))

    step, fixes, results = run(False)
    if not fixes.reads:
        return step, fixes, results, "no data-dependent branch: the step ran as it always runs"
    step_t, fixes_t, results_t = run(True)
    a = max(r[0].peak_live_bytes for r in results)
    b = max(r[0].peak_live_bytes for r in results_t)
    worst = (f"{fixes.reads} data-dependent read(s) (early stops, checks); run with all of them False/0 "
             f"(no early stop: peak {a:,} B) and True/1 (stops taken: peak {b:,} B); the larger is reported")
    if b > a:
        return step_t, fixes_t, results_t, worst
    return step, fixes, results, worst


def estimate_step_memory(spec: StepSpec, *, steps: int = 2, max_inner_steps: int = 4) -> MemoryEstimate:
    """Predict the peak memory of one training step of ``spec`` (a :class:`~gonprof.request.StepSpec`) at
    its batch size.

    Nothing real is allocated (models, batch and every intermediate are meta
    tensors), so any batch size and ``device="cuda"`` on a machine without a
    GPU work.  See the module docstring for what is estimated and how; the
    returned record's ``notes`` repeat what applies.
    """
    from gonprof.measure.params import persistent_state

    t0 = time.perf_counter()
    spec = spec.checked(need_device=False)
    mode, arch, device = spec.mode_name, spec.arch, spec.device
    batch_size = spec.effective_batch_size()
    dev = torch.device(device)
    is_cuda = dev.type == "cuda"
    shape = spec.shape()
    given = dict(spec.hparams)
    notes: list[str] = [
        "meta tensors through the live-bytes tracker: nothing real allocated; "
        f"{steps} step(s) run (the first creates optimizer state), the peak is the largest",
    ]

    overrides = {**given, **_estimate_overrides(spec, max_inner_steps, is_cuda, notes)}
    step, fixes, results, worst = _run_worst_case(spec, overrides, (batch_size, *shape), steps, is_cuda)
    if fixes.reads:
        notes.append("data-dependent control flow estimated at its worst case: " + worst)

    live = [r[0] for r in results]
    i_peak = max(range(len(live)), key=lambda i: live[i].peak_live_bytes)
    lm = live[i_peak]
    by_phase: dict[str, int] = {}
    for f in live:
        for k, v in f.peak_live_bytes_by_phase.items():
            by_phase[k] = max(by_phase.get(k, 0), v)
    inp = input_bytes(batch_size, shape)
    cuda_alloc = cuda_live = None
    rounding = "none (storage bytes)"
    if is_cuda:
        cuda_live = max(r[1].peak_live_bytes for r in results)
        # the batch as the allocator serves it, in place of the part of it the tracker saw (external)
        cuda_alloc = max(r[1].peak_live_bytes - r[1].peak_live_external_bytes for r in results) + \
            cuda_round(batch_size * math.prod(shape) * 4) + cuda_round(batch_size * 8)
        rounding = CUDA_ROUNDING
        notes.append("cuda: the step ran on meta tensors (fake cuda backward needs a GPU); max_memory_allocated "
                     "= rounded live peak (less the batch the step read) + rounded input batch; "
                     "max_memory_reserved, cuBLAS/cuDNN workspaces and the CUDA context are not estimated")
    # the whole batch in place of the part of it the step read (external): the batch is held all step
    peak = cuda_alloc if cuda_alloc is not None else lm.peak_live_bytes - lm.peak_live_external_bytes + inp
    notes.extend(str(n) for n in step.notes)
    return MemoryEstimate(
        arch=arch,
        mode=mode,
        generator=step.generator,
        batch_size=batch_size,
        device=str(dev),
        method="meta",
        input_shape=shape,
        hparams=to_jsonable(step.hparams),
        peak_bytes=int(peak),
        peak_live_bytes=lm.peak_live_bytes,
        peak_live_param_bytes=lm.peak_live_param_bytes,
        peak_live_buffer_bytes=lm.peak_live_buffer_bytes,
        peak_live_grad_bytes=lm.peak_live_grad_bytes,
        peak_live_optimizer_state_bytes=lm.peak_live_optimizer_state_bytes,
        peak_live_activation_bytes=lm.peak_live_activation_bytes,
        peak_live_external_bytes=lm.peak_live_external_bytes,
        peak_live_replay_bytes=lm.peak_live_replay_bytes,
        peak_phase=lm.peak_phase,
        peak_modules=lm.peak_modules,
        start_live_bytes=lm.start_live_bytes,
        end_live_bytes=live[-1].end_live_bytes,
        peak_live_bytes_by_step=tuple(f.peak_live_bytes for f in live),
        peak_live_bytes_by_phase=by_phase,
        input_bytes=inp,
        persistent=persistent_state(step.models, step.optimizers),
        cuda_max_memory_allocated_bytes=cuda_alloc,
        cuda_peak_live_rounded_bytes=cuda_live,
        rounding=rounding,
        worst_case=worst,
        data_dependent_reads=fixes.reads,
        steps_run=len(live),
        elapsed_s=time.perf_counter() - t0,
        notes=tuple(notes),
        levers=spec.levers,
    )
