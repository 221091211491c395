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
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import torch


class IncompatibleError(ValueError):
    """A mode cannot train this discriminator (or generator); one-line reason."""


def no_phase(name: str) -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")

#: Old or other-paper names of settings, accepted everywhere a setting is named (``--set``, the api, old
#: records and run folders) and read as the one name every mode uses.
ALIASES = {"n_critic": "d_steps"}


def canonical_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` with every alias (:data:`ALIASES`) read as its setting's name; a one-line
    IncompatibleError when both names are given."""
    out: dict[str, Any] = {}
    for k, v in hparams.items():
        name = ALIASES.get(k, k)
        if name in out:  # keys are unique, so the other spelling was given too
            raise IncompatibleError(f"hyper-parameter {name} given twice (as {k} and as {name}); give one")
        out[name] = v
    return out
DEFAULT_BATCH_SIZE = 64  # the batch of a mode that names none

#: Integer hyper-parameters that must be at least 1 (other integers: at least 0), where a mode declares
#: no rule of its own.
POSITIVE_INTS = ("batch_size", "d_steps", "inner_steps", "inner_t_max", "sample_chunk", "buffer")

#: Upper bounds of the rules :func:`infer_param` gives settings their mode declares none for: sizes (images
#: in a batch or a buffer), counts (iterations of a loop) and numbers (weights, scales).
MAX_SIZE = 1_000_000
MAX_COUNT = 100_000
MAX_NUMBER = 1e6
#: Learning rates: above 0, at most 10.
MAX_LR = 10.0


def _bound(v: float) -> str:
    """A bound as a reader reads it: whole numbers with thousands separators, others as %g."""
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:g}"


@dataclass(frozen=True)
class Param:
    """The type and range one hyper-parameter accepts.

    ``kind``: ``int``, ``float``, ``bool``, ``choice`` (one of ``choices``) or
    ``betas`` (two numbers in [0, 1)).  Numbers lie in ``[low, high]``, or in
    ``(low, high]`` when ``low_open``.  Every int and float rule has both bounds,
    finite, so that a setting of 1e308 or infinity is refused, never run: a rule
    declared without ``high`` gets :data:`MAX_COUNT` (int) or :data:`MAX_NUMBER`
    (float), and without ``low`` minus that.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple = ()

    def __post_init__(self) -> None:
        if self.kind not in ("int", "float", "bool", "choice", "betas"):
            raise ValueError(f"Param kind {self.kind!r}: expected int, float, bool, choice or betas")
        if self.kind not in ("int", "float"):
            return
        if self.high is None:
            object.__setattr__(self, "high", MAX_COUNT if self.kind == "int" else MAX_NUMBER)
        if self.low is None:
            object.__setattr__(self, "low", -self.high)  # type: ignore[operator]
        bounds = (self.low, self.high)
        if any(isinstance(b, bool) or not math.isfinite(b) for b in bounds):  # type: ignore[arg-type]
            raise ValueError(f"a {self.kind} Param needs finite bounds, got {bounds}")
        if self.low > self.high:  # type: ignore[operator]
            raise ValueError(f"Param bounds {bounds}: low above high")

    def type_name(self) -> str:
        """``int``, ``float``, ``bool``, ``choice`` or ``betas``: the type ``gonprof info --mode`` shows."""
        return self.kind

    def range_text(self) -> str:
        """The values accepted, as ``gonprof info --mode`` shows them: ``from 1 to 10,000``,
        ``> 0 and <= 10``, ``true or false``, ``sum | mean``."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return " | ".join(map(str, self.choices))
        if self.kind == "betas":
            return "two numbers in [0, 1)"
        return self._interval()

    def _interval(self) -> str:
        low, high = _bound(self.low), _bound(self.high)  # type: ignore[arg-type]
        return f"> {low} and <= {high}" if self.low_open else f"from {low} to {high}"

    def allowed(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "betas":
            return "two numbers in [0, 1), e.g. [0.5, 0.999]"
        return ("an integer " if self.kind == "int" else "a number ") + self._interval()

    def check(self, name: str, value: Any) -> Any:
        """``value`` as the type this parameter takes; a one-line IncompatibleError naming the setting and
        what it accepts when it cannot be (text, a bool for a number, a non-whole number for an integer,
        NaN or infinity, or a value out of range)."""
        bad = IncompatibleError(f"hyper-parameter {name}={_shown(value)}: expected {self.allowed()}")
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise bad
        if self.kind == "choice":
            if isinstance(value, (str, int, float)) and value in self.choices:
                return value
            raise bad
        if self.kind == "betas":
            if isinstance(value, (list, tuple)) and len(value) == 2:
                betas = [_as_float(v) for v in value]
                if all(b is not None and 0 <= b < 1 for b in betas):
                    return tuple(betas)
            raise bad
        v = _as_int(value) if self.kind == "int" else _as_float(value)
        if v is None:
            raise bad
        if v < self.low or (self.low_open and v == self.low) or v > self.high:  # type: ignore[operator]
            raise bad
        return v


def _shown(value: Any) -> str:
    """A setting's value in a message: its repr, cut short (a 309-digit integer stays one short line)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**16:
        digits = int(abs(value).bit_length() * math.log10(2)) + 1  # repr may refuse past 4,300 digits
        return f"{'-' if value < 0 else ''}<an integer of about {digits} digits>"
    text = " ".join(repr(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


def _as_int(value: Any) -> int | None:
    """An integer (or a float with a whole value: 5.0) as an int; None for anything else (bool, text, 2.5,
    NaN, infinity)."""
    import numbers

    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        return int(v) if math.isfinite(v) and v.is_integer() else None
    return None


def _as_float(value: Any) -> float | None:
    """A finite real number as a float; None for anything else (bool, text, NaN, infinity, an integer too
    large for a float)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        v = float(value)
    except (OverflowError, ValueError):
        return None
    return v if math.isfinite(v) else None


def infer_param(name: str, default: Any) -> Param:
    """The rule a hyper-parameter gets from its default when its mode declares none: booleans; integers
    from 0 (1 for :data:`POSITIVE_INTS`) to :data:`MAX_SIZE` (names with ``batch`` or ``size``) or
    :data:`MAX_COUNT`; non-negative numbers up to :data:`MAX_NUMBER` (learning rates: above 0, up to
    :data:`MAX_LR`); betas; and a text default as the only choice."""
    if isinstance(default, bool):
        return Param("bool")
    if isinstance(default, int):
        words = name.split("_")
        high = MAX_SIZE if {"batch", "size", "chunk", "buffer"} & set(words) else MAX_COUNT
        return Param("int", low=1 if name in POSITIVE_INTS else 0, high=high)
    if isinstance(default, float):
        if "lr" in name.split("_"):
            return Param("float", low=0.0, high=MAX_LR, low_open=True)
        return Param("float", low=0.0, high=MAX_NUMBER)
    if isinstance(default, (tuple, list)) and len(default) == 2:
        return Param("betas")
    return Param("choice", choices=(default,))


# Rules the built-in modes share (each mode declares every numeric setting it has).
#: Images in one batch (a step's real batch, a chunk of samples, a buffer of fakes).
BATCH_SIZE = Param("int", low=1, high=MAX_SIZE)
#: A learning rate.
LEARNING_RATE = Param("float", low=0.0, high=MAX_LR, low_open=True)


def updates(low: int = 1, high: int = 10_000) -> Param:
    """Updates of one network per step (``d_steps``, ``g_steps``): ``low`` to ``high``."""
    return Param("int", low=low, high=high)


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
    # levers (gonprof.levers): the step splits each update into slices of the batch (``--micro-batches``);
    # its updates go through GANStep.update, where fp16's loss scaling is applied (``--precision fp16``)
    micro_batches: bool = False
    scaled_updates: bool = False

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
        # a message names a setting as it was given (n_critic, not d_steps)
        given_as: dict[str, str] = {ALIASES[k]: k for k in overrides if k in ALIASES}
        overrides = canonical_hparams(overrides)
        unknown = set(overrides) - set(hp)
        if unknown:
            raise IncompatibleError(
                f"mode {self.name!r} has no hyper-parameter {', '.join(sorted(unknown))} "
                f"(it has: {', '.join(sorted(hp))})")
        hp.update(overrides)
        # every value is checked against its rule before anything is built (defaults and presets included)
        return {k: self.param(k).check(given_as.get(k) or k, v) for k, v in hp.items()}


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

    # -- optional hooks: a mode overrides the ones it has; ``has_*`` / ``takes_*`` say which ---------------

    def test_error(self, images: torch.Tensor, labels: torch.Tensor) -> float | None:
        """Optional: the classification error on held-out labelled images (a classifier discriminator, such as
        improved-gan's).  Steps without one return None."""
        return None

    def set_labelled(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Optional: the labelled subset a semi-supervised step trains on (improved-gan's ``labels``)."""
        raise NotImplementedError(f"mode {self.mode or type(self).__name__} takes no labelled subset")

    def sample_with_unrefined(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Optional: (unrefined, refined) samples from the same draw, for a step whose sampler refines its
        generator's output (dcd's Langevin steps)."""
        raise NotImplementedError(f"mode {self.mode or type(self).__name__} does not refine its samples")

    @property
    def has_test_error(self) -> bool:
        return _overrides(self, "test_error")

    @property
    def takes_labelled(self) -> bool:
        return _overrides(self, "set_labelled")

    @property
    def refines_samples(self) -> bool:
        return _overrides(self, "sample_with_unrefined")

    def chains_per_step(self, batch: int) -> int | None:
        """Optional: the samples the step's inner loop advances for a real batch of ``batch`` (GON's chains),
        for sample-iterations per second.  Default: None, no inner loop."""
        return None

    def state_tensors(self) -> dict[str, list[torch.Tensor]]:
        """Optional: persistent tensors the step keeps besides its models' and optimizers' state, by category of
        :data:`gonprof.records.LIVE_CATEGORIES` (``{"replay": [buffer]}`` for a replay buffer of past
        samples), so that the live-bytes tracker counts them as that state, not as external storages.
        Read when the profiler's measuring step begins.  Default: none."""
        return {}

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


def _overrides(step: TrainStep, hook: str) -> bool:
    """Whether ``step``'s class overrides :class:`TrainStep`'s optional ``hook``."""
    return getattr(type(step), hook) is not getattr(TrainStep, hook)


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
