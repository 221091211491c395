"""Architecture specs and the architecture registry.

An :class:`ArchSpec` describes one published network: what it is, where it
comes from, how many parameters the port must have, and how to build it for an
input shape.  Builders live in the zoo (``architectures/`` in the source tree,
imported as ``gonprof.architectures``) and register themselves with
:func:`register_arch`; user plugins do exactly the same.

Conventions every builder follows:

* a discriminator's builder is ``fn(input_shape=(C, H, W)) -> nn.Module``; the
  module maps ``(N, C, H, W)`` images in ``[-1, 1]`` to raw scores of shape
  ``(N, K)`` (``K == 1`` for ``output="score"``, ``K`` for ``output="logits[K]"``),
  with no sigmoid or softmax (those belong to the losses);
* a generator's builder is ``fn(input_shape=(C, H, W)) -> nn.Module`` too, where
  the shape is that of the images it makes; the module maps latents of shape
  ``(N, latent_dim)`` to images ``(N, C, H, W)`` in ``[-1, 1]``;
* a shape the architecture cannot take raises :class:`ShapeError` with one line.

This module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .registry import Registry, RegistryError

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, int, int]
ROLES = ("discriminator", "generator")


class ShapeError(ValueError):
    """An architecture cannot be built for the requested input shape."""


class ArchError(RegistryError):
    """An architecture's builder is broken (it raised, returned no module, or miscounts); one line naming
    the architecture and the file that registered it."""


@dataclass(frozen=True)
class Source:
    paper: str
    repo: str = ""
    url: str = ""

    def __str__(self) -> str:
        return self.paper + (f" ({self.repo})" if self.repo else "")


@dataclass(frozen=True)
class ArchSpec:
    name: str
    family: str
    role: str
    builder: Callable[..., Any]
    source: Source
    expected_params: int  # all parameters (trainable + frozen) at ``input_shape``
    input_shape: Shape = (1, 28, 28)
    output: str = "score"  # "score" or "logits[K]" (discriminators); "image" (generators)
    expected_trainable: int | None = None  # when some parameters are frozen
    latent_dim: int | None = None  # generators only
    latent: str = "normal"  # generators: "normal" or "uniform" latent distribution
    default_mode: str | None = None  # the mode the architecture was published with
    default_generator: str | None = None  # discriminators: generator for GAN modes
    notes: tuple[str, ...] = ()
    params_arithmetic: str = ""  # how expected_params is reached, for humans
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    # the submodules (dotted names) ``--checkpoint`` recomputes one at a time; () = the top-level children
    blocks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role must be one of {ROLES}, not {self.role!r}")
        _ = self.output_dim  # validates the output kind

    @property
    def output_dim(self) -> int:
        if self.output in ("score", "image"):
            return 1
        if self.output.startswith("logits[") and self.output.endswith("]"):
            return int(self.output[7:-1])
        raise ValueError(f"{self.name}: unknown output kind {self.output!r}")

    @property
    def where(self) -> str:
        """The file that defines the builder (a plugin's path, or the zoo module's)."""
        code = getattr(self.builder, "__code__", None)
        return code.co_filename if code is not None else getattr(self.builder, "__module__", "?")

    def build(self, input_shape: Sequence[int] | None = None) -> nn.Module:
        """The model for ``input_shape`` (default: the spec's); a broken builder is an :class:`ArchError`."""
        shape = tuple(input_shape) if input_shape is not None else self.input_shape
        if len(shape) != 3 or any(int(d) <= 0 for d in shape):
            raise ShapeError(f"{self.name}: input shape must be C,H,W with positive sizes, got {shape}")
        try:
            model = self.builder(input_shape=tuple(int(d) for d in shape))
        except ShapeError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ArchError(f"architecture {self.name} ({self.where}): its builder failed: "
                            f"{type(exc).__name__}: {first}") from exc
        if not (callable(getattr(model, "parameters", None)) and callable(model)):
            raise ArchError(f"architecture {self.name} ({self.where}): its builder returned "
                            f"{type(model).__name__}, not a torch.nn.Module")
        return model

    def check_count(self, model) -> None:
        """Refuse a model built at the default shape whose parameter count is not the declared one."""
        seen = {id(p): p for p in model.parameters()}
        total = sum(p.numel() for p in seen.values())
        if total != self.expected_params:
            raise ArchError(f"architecture {self.name} ({self.where}): built with {total:,} parameters, "
                            f"its spec declares {self.expected_params:,}")


ARCHITECTURES: Registry[ArchSpec] = Registry("architecture", "gonprof.architectures")


def register_arch(name: str, **meta) -> Callable:
    """Decorator registering a builder as architecture ``name``.

    ``meta`` are the :class:`ArchSpec` fields other than ``name`` and ``builder``.
    """

    def deco(fn):
        spec = ArchSpec(name=name, builder=fn, **meta)
        ARCHITECTURES.add(name, spec, origin=f"{fn.__module__}.{fn.__qualname__}")
        return fn

    return deco


def get_arch(name: str) -> ArchSpec:
    return ARCHITECTURES.get(name)


def build(name: str, input_shape: Shape | None = None) -> nn.Module:
    """Build architecture ``name`` for ``input_shape`` (its default when None)."""
    return get_arch(name).build(input_shape)


def list_archs(pattern: str | None = None, role: str | None = None) -> list[ArchSpec]:
    specs = [ARCHITECTURES.get(n) for n in ARCHITECTURES.list(pattern)]
    return [s for s in specs if role is None or s.role == role]
