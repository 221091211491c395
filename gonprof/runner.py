"""Run a built training step under the :class:`~gonprof.profiler.Profiler`: the one loop that
``gonprof profile``, ``gonprof compare`` rows and the API share.

Nothing here prints; a failure inside a step is the record's status.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import os

    from .data import ImageData, Selection
    from .records import ProfileRecord
    from .request import StepSpec


def profile_step(step: Any, dataset: ImageData, *, batch_size: int, warmup: int = 2, steps: int = 10,
                 seed: int = 0, arch: str | None = None, mode: str | None = None, generator: str | None = None,
                 extra: dict[str, Any] | None = None) -> ProfileRecord:
    """Run a built TrainStep under the Profiler on batches of ``dataset``; returns the ProfileRecord.

    A failure inside a step (out of memory, NaN, Ctrl-C) comes back as the
    record's ``status``, with what was measured before it.
    """
    import torch

    from .profiler import Profiler

    dev = torch.device(step.device)
    prof = Profiler(models=step.models, optimizers=step.optimizers, warmup=warmup, active=steps, device=dev,
                    arch=arch, mode=mode or step.mode, batch_size=batch_size, generator=generator, extra=extra,
                    state=getattr(step, "state_tensors", None))
    if batch_size > len(dataset):
        dataset = _repeat(dataset, batch_size)
    batches = dataset.batches(batch_size, seed=seed)
    try:
        with prof:
            while not prof.done:
                with prof.between():  # the batch (its shuffle, the copy to the device) is not the step
                    real, labels = next(batches)
                    real, labels = real.to(dev, non_blocking=True), labels.to(dev)
                losses = step.step(real, labels, phase=prof.phase)
                prof.step()
                bad = [k for k, v in losses.items() if not bool(torch.isfinite(v).all())]
                if bad:
                    prof.set_status("nan", f"non-finite {', '.join(bad)} at step {prof.step_index}")
                    break
    except (KeyboardInterrupt, Exception):
        # The profiler recorded the status (interrupted / oom / error) and its
        # message on the way out; the record keeps what was measured before.
        pass
    return prof.report()


def profile_request(spec: StepSpec, *, warmup: int = 2, steps: int = 10) -> ProfileRecord:
    """Build the step a checked request names and profile it on batches of its data (:func:`profile_step`);
    the record's ``extra`` holds the request's context (preset, seed, data, selection, shape, hyper-parameters,
    the build's notes)."""
    from .modes.base import batch_size_of
    from .records import to_jsonable

    step = spec.build()
    batch_size = spec.batch_size or batch_size_of(step.hparams)
    shape = spec.shape()
    selection = spec.selection()
    dataset = profile_data(spec.data, shape, selection)
    context = {"preset": spec.preset, "seed": spec.seed, "data": dataset.name, "selection": selection.to_dict(),
               "train_images": len(dataset), "input_shape": list(shape),
               "hparams": to_jsonable(step.hparams), "notes": list(step.notes), "levers": spec.levers}
    return profile_step(step, dataset, batch_size=batch_size, warmup=warmup, steps=steps, seed=spec.seed,
                        arch=spec.arch, mode=spec.mode_name, generator=step.generator or spec.generator,
                        extra=context)


def profile_data(data: str | os.PathLike[str] | None, shape: Sequence[int],
                 selection: Selection | None = None) -> ImageData:
    """The source's training images (of the selection) when their shape matches the step's input,
    synthetic ones otherwise (a named source or a selection of the wrong shape is a ShapeError)."""
    from .data import load_split, synthetic

    dataset = load_split(data, selection)[0]
    if tuple(dataset.shape) == tuple(shape):
        return dataset
    if data is not None or (selection is not None and not selection.everything):
        from .arch import ShapeError

        raise ShapeError(f"data {dataset.name} has shape {dataset.shape}, the step expects {tuple(shape)}")
    return synthetic(2048, tuple(shape))


def _repeat(dataset: ImageData, n: int) -> ImageData:
    """``dataset`` repeated to ``n`` images (a batch larger than a small selection)."""
    from .data import ImageData

    reps = -(-n // len(dataset))
    return ImageData(dataset.images.repeat(reps, 1, 1, 1)[:n], dataset.labels.repeat(reps)[:n], dataset.name,
                     dataset.num_classes)
