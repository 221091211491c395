"""Data-parallel profiling on one rank, and the records of every rank gathered to one.

- :func:`wrap_step`: a built step's models wrapped in DistributedDataParallel (the step calls them through
  DDP; the Profiler keeps counting the plain modules), each with an
  :class:`~gonprof.measure.comm.AllreduceCounter` hook.
- :func:`profile_rank`: one rank's profile of the step: one settling step, then
  :func:`gonprof.runner.profile_step` with every step's all-reduce counted; a
  :class:`~gonprof.records.RankRecord`.
- :func:`gather_records`: inside anyone's own DDP script, every rank's ProfileRecord (and all-reduce
  count) gathered to rank 0 as one :class:`~gonprof.records.DistributedProfileRecord`.

The process group is the caller's: ``gonprof profile --nproc`` starts it in each rank
(:mod:`gonprof.distributed`), a user's script starts its own.  Nothing here prints.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from .measure.comm import AllreduceCounter
from .modes.base import IncompatibleError, no_phase
from .records import DistributedProfileRecord, ProfileRecord, RankRecord, classify_failure

#: Untimed steps run before the profile's own schedule.  DDP rebuilds its gradient buckets once, in the
#: first forward after the first backward (the second step); settling two steps first keeps that one-off
#: allocation out of the measuring step, whose live bytes are then the steady state's.
SETTLE_STEPS = 2


def ddp_options() -> dict[str, Any]:
    """The options gonprof wraps a step's models with: buffers not synchronised at each forward (the
    step all-reduces gradients only), every parameter expected to get a gradient, gradients copied into
    DDP's buckets (not views of them)."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
    return {**sync, "find_unused_parameters": False, "gradient_as_bucket_view": False}


class StepDDP(DistributedDataParallel):
    """DistributedDataParallel that runs the plain module where DDP has nothing to reduce: under
    ``torch.no_grad()``, and while every parameter is frozen (a GAN's D during the generator's update:
    gonprof's modes freeze D with ``requires_grad_(False)``, and plain DDP would wait for D's gradients
    at the next step).  Attributes the module has and DDP has not (a discriminator's ``features``) are
    the module's."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled() or not any(p.requires_grad for p in self.module.parameters()):
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)


def wrap_step(step: Any, counter: AllreduceCounter, *, device_ids: list[int] | None = None,
              process_group: Any = None) -> dict[str, Any]:
    """Wrap each trainable model of ``step`` in :class:`StepDDP` with ``counter``'s hook, in place: the
    attributes the step calls the model by (``step.D``, ``step.G``) become the wrapper, while
    ``step.models`` keeps the plain modules (what the Profiler counts and checkpoints save).  Returns the
    options, for the record."""
    options = ddp_options()
    wrapped = []
    for role, model in step.models.items():
        if not any(p.requires_grad for p in model.parameters()):
            continue  # nothing to all-reduce
        names = [k for k, v in vars(step).items() if v is model and k != "models"]
        if not names:
            raise IncompatibleError(f"mode {step.mode}: its step holds model {role} only in step.models, so it "
                                    f"cannot be run through DistributedDataParallel (gonprof replaces the "
                                    f"attribute the step calls the model by, e.g. step.{role})")
        ddp = StepDDP(model, device_ids=device_ids, process_group=process_group, **options)
        counter.attach(ddp, role, process_group)
        for k in names:
            setattr(step, k, ddp)
        wrapped.append(role)
    return {"wrapped_models": wrapped, **options, "comm_hook": "allreduce (counting)", "settle_steps": SETTLE_STEPS}


class _BothPhases:
    __slots__ = ("outer", "inner")

    def __init__(self, outer: Any, inner: Any) -> None:
        self.outer, self.inner = outer, inner

    def __enter__(self) -> None:
        self.outer.__enter__()
        self.inner.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self.inner.__exit__(*exc)
        finally:
            self.outer.__exit__(*exc)


class _CountedStep:
    """A built step whose every call closes one step of the all-reduce counter, its phases labelling the
    counter's as well as the profiler's."""

    def __init__(self, step: Any, counter: AllreduceCounter) -> None:
        self.inner, self.counter = step, counter
        self.device, self.models, self.optimizers, self.mode = step.device, step.models, step.optimizers, step.mode

    def step(self, real: Any, labels: Any = None, phase: Any = no_phase) -> Any:
        counter = self.counter
        try:
            return self.inner.step(real, labels, phase=lambda name: _BothPhases(phase(name), counter.phase(name)))
        finally:
            counter.step()


def profile_rank(step: Any, dataset: Any, counter: AllreduceCounter, *, rank: int, batch_size: int,
                 warmup: int = 2, steps: int = 10, seed: int = 0, about: dict[str, Any] | None = None) -> RankRecord:
    """Profile a step whose models :func:`wrap_step` wrapped: :data:`SETTLE_STEPS` untimed steps, then
    :func:`gonprof.runner.profile_step` (batches shuffled with ``seed``), the all-reduce of every step
    counted; the counter's figures are the measuring step's.  ``about`` are what the record says the step
    is (``arch``, ``mode``, ``generator``, ``extra``: :func:`~gonprof.runner.profile_step`'s keywords).  A
    failure is the record's status."""
    from .runner import _repeat, profile_step

    data = _repeat(dataset, batch_size) if batch_size > len(dataset) else dataset
    try:
        batches = data.batches(batch_size, seed=seed)
        for _ in range(SETTLE_STEPS):
            real, labels = next(batches)
            step.step(real.to(step.device), labels.to(step.device))
    except (KeyboardInterrupt, Exception) as exc:
        status, message = classify_failure(exc)
        return RankRecord(rank=rank, status=status, message=f"settling step: {message}")
    counter.discard()
    rec = profile_step(_CountedStep(step, counter), data, batch_size=batch_size, warmup=warmup, steps=steps,
                       seed=seed, **(about or {}))
    index = rec.measuring_step
    comm = counter.figures(index if index is not None and index < len(counter.steps) else None)
    if rec.measuring_step is not None and rec.status == "ok" and rec.persistent is not None:
        grads = rec.persistent.grad_bytes_by_model
        silent = [m for m, b in comm.allreduce_bytes_by_model.items() if b == 0 and grads.get(m, 0) > 0]
        if silent:
            rec = rec.replace(warnings=rec.warnings + (
                f"{', '.join(silent)} got gradients on the measuring step but all-reduced nothing: the step "
                "ran backward without its DDP wrapper, so those gradients stayed local to each rank",))
    return RankRecord(rank=rank, status=rec.status, message=rec.message, profile=rec, comm=comm)


def gather_records(record: ProfileRecord, comm: Any = None, *, dst: int = 0, group: Any = None,
                   launcher: str = "user script", **fields: Any) -> DistributedProfileRecord | None:
    """Gather every rank's ``record`` (and ``comm``: an AllreduceCounter or CommFigures) to rank ``dst``.

    Call it on every rank of an initialised process group, after ``prof.report()``.  Returns the
    :class:`~gonprof.records.DistributedProfileRecord` on rank ``dst`` and None on the others.  With
    the nccl backend, set each rank's device (``torch.cuda.set_device``) first, as
    ``torch.distributed.gather_object`` needs.  ``fields`` go into the record (e.g. ``extra``).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("gather_records needs an initialised process group (torch.distributed.init_process_group)")
    if isinstance(comm, AllreduceCounter):
        comm = comm.figures()
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    mine = RankRecord(rank=rank, status=record.status, message=record.message, profile=record, comm=comm).to_dict()
    gathered: list[Any] | None = [None] * world if rank == dst else None
    dist.gather_object(mine, gathered, dst=dst, group=group)
    if rank != dst:
        return None
    assert gathered is not None  # allocated on dst, and this is dst
    ranks = [RankRecord.from_dict(d) for d in gathered]
    env = record.environment
    fields.setdefault("backend", str(dist.get_backend(group)))
    fields.setdefault("device", env.device)
    fields.setdefault("threads_per_rank", env.torch_threads)
    for name in ("arch", "mode", "generator", "batch_size"):
        fields.setdefault(name, getattr(record, name))
    return DistributedProfileRecord.assemble(ranks, world_size=world, launcher=launcher, **fields)
