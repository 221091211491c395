"""The small API the CLI calls: specs in, typed records out.  Nothing here prints."""

from __future__ import annotations

from .arch import ARCHITECTURES, Shape, get_arch
from .modes.build import default_mode
from .records import to_jsonable
from .summary import ArchReport, ArchSummary, ModeSummary, summarize


def list_architectures(pattern: str | None = None, role: str | None = None) -> list[ArchSummary]:
    rows = []
    for name in ARCHITECTURES.list(pattern):
        spec = ARCHITECTURES.get(name)
        if role is None or spec.role == role:
            rows.append(summarize(spec, ARCHITECTURES.origin(name)))
    return rows


def list_modes(pattern: str | None = None) -> list[ModeSummary]:
    from .modes import list_modes as _list

    return [
        ModeSummary(m.name, m.summary, tuple(m.phases), m.needs_generator, tuple(m.outputs), dict(m.defaults),
                    tuple(m.presets), m.source, m.default_arch, tuple(m.notes),
                    {k: dict(v) for k, v in m.presets.items()})
        for m in _list(pattern)
    ]


def describe_mode(mode: str) -> ModeSummary:
    """One training mode: its defaults, presets (what each changes) and notes on where it departs from its seed."""
    from .modes import get_mode

    name = get_mode(mode).name  # an unknown name fails here with a did-you-mean
    return next(m for m in list_modes() if m.name == name)


def describe(arch: str, input_shape: Shape | None = None) -> ArchReport:
    """Layer-by-layer parameters and forward FLOPs of ``arch`` for one sample."""
    from .measure.flops import forward_table
    from .summary import LayerRow, count_params

    spec = get_arch(arch)
    shape = tuple(input_shape) if input_shape else tuple(spec.input_shape)
    model = spec.build(shape)
    model_input = (1, spec.latent_dim) if spec.role == "generator" else (1, *shape)
    table = forward_table(model, model_input)
    rows = tuple(
        LayerRow(name=r.module, type=r.module_type, depth=r.depth,
                 output_shape=tuple(r.output_shape[1:]) if r.output_shape else None,
                 params=r.params, forward_flops=r.forward_flops)
        for r in table.rows if r.depth > 0
    )
    total, trainable = count_params(model)
    return ArchReport(
        arch=summarize(spec, ARCHITECTURES.origin(arch)), input_shape=shape, layers=rows,
        total_params=total, trainable_params=trainable, forward_flops=table.total_forward_flops,
        uncounted_ops=dict(table.unsupported_ops), flops_note=table.note,
    )


def _profile_data(data, shape, selection=None):
    """The source's training images (of the selection) when their shape matches the step's input,
    synthetic ones otherwise."""
    from .data import load_split, synthetic

    dataset = load_split(data, selection)[0]
    if tuple(dataset.shape) == tuple(shape):
        return dataset
    if data is not None or (selection is not None and not selection.everything):
        from .arch import ShapeError

        raise ShapeError(f"data {dataset.name} has shape {dataset.shape}, the step expects {tuple(shape)}")
    return synthetic(2048, tuple(shape))


def profile(arch: str, mode: str | None = None, *, generator: str | None = None, preset: str | None = None,
            batch_size: int | None = None, device: str = "cpu", warmup: int = 2, steps: int = 10,
            seed: int = 0, data=None, input_shape: Shape | None = None, hparams: dict | None = None,
            classes=None, per_class: int | None = None):
    """Profile ``steps`` optimization steps of ``arch`` trained as ``mode``; returns a ProfileRecord.

    Builds the step, feeds it batches of real (embedded MNIST) or synthetic
    images, and runs it under :class:`gonprof.Profiler`: ``warmup`` untimed
    steps (the last one counts FLOPs and live bytes), then ``steps`` timed ones.
    ``classes`` / ``per_class`` select the training images the batches are
    drawn from (see :class:`gonprof.data.Selection`); a batch larger than the
    selection repeats its images.
    A failure inside a step (out of memory, NaN, Ctrl-C) comes back as the
    record's ``status``; errors in the request itself (unknown names, shapes,
    an impossible selection) raise before anything runs.
    """
    from .data import Selection
    from .modes.build import build_step

    selection = Selection.parse(classes, per_class)
    mode = mode or default_mode(arch)
    step = build_step(mode, arch, generator=generator, preset=preset, device=device, input_shape=input_shape,
                      seed=seed, **(hparams or {}))
    batch_size = int(batch_size or step.hparams.get("batch_size", 64))
    if batch_size <= 0:
        from .modes.base import IncompatibleError

        raise IncompatibleError(f"--batch-size must be positive, got {batch_size}")
    shape = tuple(input_shape) if input_shape else tuple(get_arch(arch).input_shape)
    dataset = _profile_data(data, shape, selection)
    context = {"preset": preset, "seed": seed, "data": dataset.name, "selection": selection.to_dict(),
               "train_images": len(dataset), "input_shape": list(shape),
               "hparams": to_jsonable(step.hparams), "notes": list(step.notes)}
    from .runner import profile_step

    return profile_step(step, dataset, batch_size=batch_size, warmup=warmup, steps=steps, seed=seed,
                        arch=arch, mode=mode, generator=step.generator or generator, extra=context)


def train(**config):
    """Train one (architecture, mode) pair; see :func:`gonprof.train.run_training`.

    Keyword arguments are :class:`gonprof.train.TrainConfig` fields plus
    ``resume``, ``make_step``, ``progress`` and ``overwrite``.
    """
    from .train import train as _train

    return _train(**config)


def compare(modes: list[str] | None = None, archs: list[str] | None = None, *, out, preset: str | None = None,
            json_path=None, isolate: bool = True, **settings):
    """Train, profile and score each (mode, architecture) pair; returns the RunRecords (floor row first).

    ``settings`` are :class:`gonprof.comparison.RunSpec` fields shared by every
    row (``steps`` or ``time_budget_s``, ``batch_size``, ``n_samples``, ...).
    """
    from . import comparison

    specs = comparison.plan(list(modes or []), archs, preset=preset, **settings)
    return comparison.compare(specs, out=out, json_path=json_path, isolate=isolate)
