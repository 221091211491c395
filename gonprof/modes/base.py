"""The contract between training modes, the trainer and the profiler.

* :class:`ModeSpec` says what a mode is: its phases, what it needs (a
  generator or not, which discriminator output kinds it accepts), its seed
  hyper-parameters and named presets, and a ``factory`` that binds models.
* :class:`TrainStep` is one mode bound to built models and optimizers.  Calling
  :meth:`TrainStep.step` performs exactly one optimization step (for a GAN mode:
  the whole iteration, its D updates and G updates) and returns the step's
  losses as detached tensors (no ``.item()``, so timing is not forced to sync).

The ``phase`` argument of :meth:`TrainStep.step` is a callable
``phase(name) -> context manager``; a step wraps each of its phases in it, so
that a profiler can attribute time, FLOPs and memory per phase.  The default
does nothing.

This module does not import torch at import time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import torch


class IncompatibleError(ValueError):
    """A mode cannot train this discriminator (or generator); one-line reason."""


def no_phase(name: str):
    return contextlib.nullcontext()


@dataclass(frozen=True)
class ModeSpec:
    name: str
    summary: str
    factory: Callable[..., "TrainStep"]
    phases: tuple[str, ...]
    needs_generator: bool
    outputs: tuple[str, ...] = ("score",)  # accepted discriminator output kinds; "logits[*]" allowed
    defaults: dict = field(default_factory=dict)  # the seed's hyper-parameters
    presets: dict = field(default_factory=dict)  # name -> overrides of defaults (e.g. gon: "seed")
    source: str = ""
    notes: tuple[str, ...] = ()
    default_arch: str | None = None  # the discriminator `gonprof compare MODE` trains when none is named
    # What the memory estimator must know of the mode (gonprof.estimate):
    inner_loop_hparams: tuple[str, ...] = ()  # count iterations of a loop whose peak repeats (capped)
    cpu_only_hparams: dict = field(default_factory=dict)  # CPU-only fast paths -> the value that turns them off

    def accepts(self, output_kind: str) -> bool:
        import fnmatch

        # "[" and "]" are literal in output kinds ("logits[2]"); only "*" and "?" are wildcards.
        def literal_brackets(pat: str) -> str:
            return "".join({"[": "[[]", "]": "[]]"}.get(ch, ch) for ch in pat)

        return any(fnmatch.fnmatchcase(output_kind, literal_brackets(pat)) for pat in self.outputs)

    def hparams(self, preset: str | None = None, **overrides) -> dict:
        """Defaults, then a preset's overrides, then explicit overrides (unknown keys are an error)."""
        hp = dict(self.defaults)
        if preset:
            if preset not in self.presets:
                raise IncompatibleError(
                    f"mode {self.name!r} has no preset {preset!r} (presets: {', '.join(self.presets) or 'none'})")
            hp.update(self.presets[preset])
        unknown = set(overrides) - set(hp)
        if unknown:
            raise IncompatibleError(
                f"mode {self.name!r} has no hyper-parameter {', '.join(sorted(unknown))} "
                f"(it has: {', '.join(sorted(hp))})")
        hp.update(overrides)
        return hp


class TrainStep:
    """One training mode bound to models.  Subclasses implement :meth:`step` and :meth:`sample`.

    Attributes every step has:
      ``mode``        the ModeSpec name
      ``phases``      phase names, in the order a step runs them
      ``models``      dict role -> nn.Module ("D", and "G" where there is one)
      ``optimizers``  dict role -> torch.optim.Optimizer
      ``hparams``     the resolved hyper-parameters
      ``device``      torch.device
      ``notes``       what the build decided (generator chosen, fast-path choices), for records
      ``arch``, ``generator``, ``preset``, ``input_shape``: what it was built from
                      (set by :func:`gonprof.modes.build.build_step`; None when built by hand)
    """

    mode: str = ""
    phases: tuple[str, ...] = ()

    def __init__(self, models: dict, optimizers: dict, hparams: dict, device):
        self.models = models
        self.optimizers = optimizers
        self.hparams = hparams
        self.device = device
        self.notes: list[str] = []
        self.arch: str | None = None
        self.generator: str | None = None
        self.preset: str | None = None
        self.input_shape: tuple | None = None

    def prepare(self) -> None:
        """One-off work after the step is built and before the first step (so no measured step pays for it)."""

    def step(self, real: "torch.Tensor", labels: "torch.Tensor | None" = None,
             phase: Callable[[str], Any] = no_phase) -> dict[str, "torch.Tensor"]:
        raise NotImplementedError

    def sample(self, n: int) -> "torch.Tensor":
        """``n`` images in [-1, 1] made the mode's way (generator, or optimisation for GON)."""
        raise NotImplementedError

    def extra_state(self) -> dict:
        """Mode state beyond models and optimizers (buffers of fakes, schedulers...), for checkpoints."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.models.items():
            m.load_state_dict(state["models"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.load_extra_state(state.get("extra", {}))


MODES: Registry[ModeSpec] = Registry("mode", "gonprof.modes")


def register_mode(name: str, **meta) -> Callable:
    """Decorator registering a TrainStep factory as mode ``name``.

    The factory is called as ``factory(D, D_spec, G, G_spec, hparams, device)``
    (G and G_spec are None for modes that need no generator) and returns a
    :class:`TrainStep`.
    """

    def deco(fn):
        MODES.add(name, ModeSpec(name=name, factory=fn, **meta), origin=f"{fn.__module__}.{fn.__qualname__}")
        return fn

    return deco


def get_mode(name: str) -> ModeSpec:
    return MODES.get(name)


def list_modes(pattern: str | None = None) -> list[ModeSpec]:
    return [MODES.get(n) for n in MODES.list(pattern)]
