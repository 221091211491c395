"""The small API the CLI calls: specs in, typed records out.  Nothing here prints."""

from __future__ import annotations

from .arch import ARCHITECTURES, Shape, get_arch
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
                    tuple(m.presets), m.source)
        for m in _list(pattern)
    ]


def describe(arch: str, input_shape: Shape | None = None) -> ArchReport:
    """Layer-by-layer parameters and forward FLOPs of ``arch`` for one sample."""
    from .measure.flops import forward_table

    spec = get_arch(arch)
    shape = tuple(input_shape) if input_shape else tuple(spec.input_shape)
    model = spec.build(shape)
    table = forward_table(model, shape, generator_latent=spec.latent_dim if spec.role == "generator" else None)
    return ArchReport(
        arch=summarize(spec, ARCHITECTURES.origin(arch)), input_shape=shape, layers=tuple(table.rows),
        total_params=table.total_params, trainable_params=table.trainable_params,
        forward_flops=table.total_flops, uncounted_ops=dict(table.uncounted_ops),
    )
