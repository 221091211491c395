"""Run a built training step under the :class:`~gonprof.profiler.Profiler`: the one loop that
``gonprof profile``, ``gonprof compare`` rows and the API share.

Nothing here prints; a failure inside a step is the record's status.
"""

from __future__ import annotations


def profile_step(step, dataset, *, batch_size: int, warmup: int = 2, steps: int = 10, seed: int = 0,
                 arch: str | None = None, mode: str | None = None, generator: str | None = None,
                 extra: dict | None = None):
    """Run a built TrainStep under the Profiler on batches of ``dataset``; returns the ProfileRecord.

    A failure inside a step (out of memory, NaN, Ctrl-C) comes back as the
    record's ``status``, with what was measured before it.
    """
    import torch

    from .profiler import Profiler

    dev = torch.device(step.device)
    prof = Profiler(models=step.models, optimizers=step.optimizers, warmup=warmup, active=steps, device=dev,
                    arch=arch, mode=mode or step.mode, batch_size=batch_size, generator=generator, extra=extra)
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


def profile_data(data, shape, selection=None):
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


def _repeat(dataset, n):
    """``dataset`` repeated to ``n`` images (a batch larger than a small selection)."""
    from .data import ImageData

    reps = -(-n // len(dataset))
    return ImageData(dataset.images.repeat(reps, 1, 1, 1)[:n], dataset.labels.repeat(reps)[:n], dataset.name,
                     dataset.num_classes)
