"""Typed records that describe architectures and modes (``gonprof list`` / ``info``).

Counts here are measured on a model built on the meta device (no memory is
allocated), and set beside the count the spec declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .arch import ArchSpec, ShapeError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ArchSummary:
    name: str
    family: str
    role: str
    params: int  # counted on the built model (meta device), all parameters
    trainable_params: int
    expected_params: int  # declared by the spec
    input_shape: tuple[int, ...]  # (C, H, W)
    output: str
    source: str
    repo: str
    default_mode: str | None
    default_generator: str | None
    origin: str  # the module or plugin file that registered it
    notes: tuple[str, ...] = ()
    error: str = ""  # why it could not be built ("" when it was)

    @property
    def matches_expected(self) -> bool:
        return self.params == self.expected_params

    def to_dict(self) -> dict:
        d = asdict(self)
        d["matches_expected"] = self.matches_expected
        return d


@dataclass(frozen=True)
class LayerRow:
    name: str  # module path inside the model ("" is the model itself)
    type: str
    depth: int
    output_shape: tuple[int, ...] | None  # per sample, without the batch dimension
    params: int  # parameters owned directly by this module and its children
    forward_flops: int  # for one sample; FLOPs = 2 x MACs

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SettingSummary:
    """One hyper-parameter of a mode as ``gonprof info --mode`` shows it: its type (int, float, bool, choice,
    betas), the values it accepts (``from 1 to 10,000``, ``> 0 and <= 10``) and its default."""

    name: str
    type: str
    range: str
    default: Any

    def to_dict(self) -> dict:
        return asdict(self)


def mode_settings(spec: Any) -> tuple[SettingSummary, ...]:
    """Every hyper-parameter of a :class:`~gonprof.modes.ModeSpec`, with the rule it is checked against."""
    settings = []
    for name, default in spec.defaults.items():
        rule = spec.param(name)
        settings.append(SettingSummary(name, rule.type_name(), rule.range_text(), default))
    return tuple(settings)


@dataclass(frozen=True)
class ModeSummary:
    name: str
    summary: str
    phases: tuple[str, ...]
    needs_generator: bool
    outputs: tuple[str, ...]
    defaults: dict
    presets: tuple[str, ...]
    source: str
    default_arch: str | None = None
    notes: tuple[str, ...] = ()
    preset_overrides: dict = field(default_factory=dict)  # preset name -> the hyper-parameters it changes
    settings: tuple[SettingSummary, ...] = ()  # each hyper-parameter's type, range and default

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ArchReport:
    """What ``gonprof info`` shows: one architecture, layer by layer."""

    arch: ArchSummary
    input_shape: tuple[int, ...]  # (C, H, W)
    layers: tuple[LayerRow, ...]
    total_params: int
    trainable_params: int
    forward_flops: int  # one sample, whole model, 2 x MACs
    uncounted_ops: dict = field(default_factory=dict)  # op -> calls with no FLOP formula (not counted)
    flops_note: str = "FLOPs = 2 x multiply-accumulates, per sample, counted as `gonprof profile` counts"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        return d


def param_totals(model) -> tuple[int, int]:
    """(all, trainable) parameter counts; shared parameters count once."""
    seen = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return total, trainable


def build_on_meta(spec: ArchSpec, input_shape: Sequence[int] | None = None) -> nn.Module:
    """Build without allocating: on the meta device where the builder allows it."""
    import torch

    try:
        with torch.device("meta"):
            return spec.build(input_shape)
    except Exception:
        return spec.build(input_shape)


def summarize(spec: ArchSpec, origin: str = "") -> ArchSummary:
    """What ``gonprof list`` shows of one architecture; a broken builder is a summary with its ``error``."""
    from .arch import ArchError

    error = ""
    try:
        total, trainable = param_totals(build_on_meta(spec))
    except (ArchError, ShapeError) as exc:
        total, trainable, error = 0, 0, str(exc)
    return ArchSummary(
        name=spec.name, family=spec.family, role=spec.role, params=total, trainable_params=trainable,
        expected_params=spec.expected_params, input_shape=tuple(spec.input_shape), output=spec.output,
        source=spec.source.paper, repo=spec.source.repo, default_mode=spec.default_mode,
        default_generator=spec.default_generator, origin=origin, notes=tuple(spec.notes), error=error,
    )
