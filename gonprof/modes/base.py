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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import torch


class IncompatibleError(ValueError):
    """A mode cannot train this discriminator (or generator); one-line reason."""


def no_phase(name: str):
    return contextlib.nullcontext()


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
#: Integer hyper-parameters that must be at least 1 (other integers: at least 0).
DEFAULT_BATCH_SIZE = 64  # the batch of a mode that names none

POSITIVE_INTS = ("batch_size", "n_critic", "inner_steps", "inner_t_max", "sample_chunk", "buffer")


@dataclass(frozen=True)
class Param:
    """The type and range one hyper-parameter accepts.

    ``kind``: ``int``, ``float``, ``bool``, ``choice`` (one of ``choices``) or
    ``betas`` (two numbers in [0, 1)).  Numbers lie in ``[low, high]``, or
    above ``low`` when ``low_open``.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple = ()

    def allowed(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "betas":
            return "two numbers in [0, 1), e.g. [0.5, 0.999]"
        what = "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            return f"{what} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        return what

    def check(self, name: str, value: Any) -> Any:
        """``value`` as the type this parameter takes; a one-line IncompatibleError when it cannot be."""
        bad = IncompatibleError(f"hyper-parameter {name}={value!r}: expected {self.allowed()}")
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise bad
        if self.kind == "choice":
            if value in self.choices:
                return value
            raise bad
        if self.kind == "betas":
            if (isinstance(value, (list, tuple)) and len(value) == 2
                    and all(_is_number(v) and 0 <= v < 1 for v in value)):
                return tuple(float(v) for v in value)
            raise bad
        if not _is_number(value) or (self.kind == "int" and float(value) != int(value)):
            raise bad
        v = int(value) if self.kind == "int" else float(value)
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            raise bad
        if self.high is not None and v > self.high:
            raise bad
        return v


def _is_number(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def infer_param(name: str, default: Any) -> Param:
    """The rule a hyper-parameter gets from its default when its mode declares none: booleans, integers
    >= 0 (>= 1 for :data:`POSITIVE_INTS`), non-negative numbers (> 0 for learning rates), betas, and a
    text default as the only choice."""
    if isinstance(default, bool):
        return Param("bool")
    if isinstance(default, int):
        return Param("int", low=1 if name in POSITIVE_INTS else 0)
    if isinstance(default, float):
        return Param("float", low=0.0, low_open="lr" in name.split("_"))
    if isinstance(default, (tuple, list)) and len(default) == 2:
        return Param("betas")
    return Param("choice", choices=(default,))


def batch_size_of(hparams: dict) -> int:
    """The batch size resolved hyper-parameters ask for (``batch_size``, else :data:`DEFAULT_BATCH_SIZE`)."""
    return int(hparams.get("batch_size") or DEFAULT_BATCH_SIZE)


@dataclass(frozen=True)
class ModeSpec:
    name: str
    summary: str
    factory: Callable[..., TrainStep]
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
    params: dict = field(default_factory=dict)  # name -> Param, where the rule inferred from the default won't do
    # hyper-parameter -> (value, why): a setting under which the step cannot run data-parallel (DDP)
    ddp_refused: dict = field(default_factory=dict)

    def batch_size(self, preset: str | None = None, **overrides) -> int:
        """The batch size a step of this mode takes: ``batch_size`` among the (checked) hyper-parameters,
        else :data:`DEFAULT_BATCH_SIZE`."""
        return batch_size_of(self.hparams(preset, **overrides))

    def check_ddp(self, hparams: dict) -> None:
        """Refuse, in one line, resolved hyper-parameters under which a step cannot run data-parallel."""
        for name, (value, why) in self.ddp_refused.items():
            if name in hparams and hparams[name] == value:
                shown = str(value).lower() if isinstance(value, bool) else value
                raise IncompatibleError(f"mode {self.name} with {name}={shown} cannot run data-parallel: {why}")

    def param(self, name: str) -> Param:
        """The rule hyper-parameter ``name`` is checked against (declared, else inferred from its default)."""
        return self.params.get(name) or infer_param(name, self.defaults[name])

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
        # every value is checked against its rule before anything is built (defaults and presets included)
        return {k: self.param(k).check(k, v) for k, v in hp.items()}


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

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None,
             phase: Callable[[str], Any] = no_phase) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:
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
