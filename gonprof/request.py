"""A step's request: :class:`StepSpec`, one frozen value checked once where it enters.

Every verb of the api, every fit trial and scaling point, every compare row, every training run and every
data-parallel rank carries one :class:`StepSpec` instead of a dozen loose keywords.  :meth:`StepSpec.checked`
resolves the names (a did-you-mean on a miss) and validates everything the request holds, once, before any
work; :meth:`StepSpec.build` builds the :class:`~gonprof.modes.base.TrainStep` it names.  Records serialise it
through the one records base (``to_dict`` / ``from_dict``).

Where the work runs (jobs, executor, address, CPUs and GPUs per run) is the other half of a request:
:class:`gonprof.executors.Placement`.

Adding an option to a step is one field here and one rule in :meth:`StepSpec.checked`.

This module does not import torch at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .records import RequestError
from .records.base import _Serialisable, seed_problem, threads_problem

if TYPE_CHECKING:  # pragma: no cover
    from .data import Selection
    from .modes.base import ModeSpec, TrainStep



@dataclass(frozen=True)
class StepSpec(_Serialisable):
    """What one optimization step is: which models, trained how, on what data, where.

    ``mode`` None is the architecture's own (resolved by :meth:`checked`).  ``hparams`` are overrides of
    the mode's seed hyper-parameters (after ``preset``'s).  ``input_shape`` None is the architecture's
    default.  ``batch_size`` None is the mode's (``hparams["batch_size"]``, else 64).  ``data``: None (the
    embedded MNIST test split), ``"synthetic"`` or an IDX folder; ``classes`` / ``per_class`` select its
    images (:class:`gonprof.data.Selection`).
    """

    arch: str
    mode: str | None = None
    generator: str | None = None
    preset: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    device: str = "cpu"
    seed: int = 0
    batch_size: int | None = None
    data: str | None = None
    classes: tuple[int, ...] | None = None
    per_class: int | None = None
    # memory levers (gonprof.levers): autocast precision, models checkpointed, micro-batches per update, layout
    precision: str = "fp32"
    checkpoint: tuple[str, ...] = ()
    micro_batches: int = 1
    channels_last: bool = False

    # -- checking ----------------------------------------------------------------------

    def checked(self, need_device: bool = True, device_hint: str = "") -> StepSpec:
        """This request with its names resolved and every field validated; a one-line error otherwise.

        Raises :class:`~gonprof.records.RequestError` (device, seed, batch size, shape),
        :class:`~gonprof.registry.UnknownNameError` (a did-you-mean), or
        :class:`~gonprof.modes.base.IncompatibleError` (a mode that cannot train this model, a bad
        hyper-parameter).  ``need_device=False`` accepts a CUDA device this machine lacks (estimates).
        Idempotent: checking a checked spec returns an equal one.
        """
        from .arch import get_arch
        from .modes.base import IncompatibleError, batch_size_of, canonical_hparams, get_mode
        from .modes.build import default_mode

        if not isinstance(self.arch, str) or not self.arch:
            raise RequestError(f"--arch must name an architecture, not {self.arch!r}")
        d_spec = get_arch(self.arch)
        if d_spec.role != "discriminator":
            raise IncompatibleError(f"{self.arch} is a {d_spec.role}, not a discriminator; pass it as --generator")
        mode = self.mode or default_mode(self.arch)
        mode_spec = get_mode(mode)
        if not mode_spec.accepts(d_spec.output):
            raise IncompatibleError(f"mode {mode} cannot train {self.arch}: its output is {d_spec.output}, "
                                    f"mode {mode} accepts {' or '.join(mode_spec.outputs)}")
        self._check_generator(mode_spec)
        resolved = mode_spec.hparams(self.preset, **dict(self.hparams))  # names, types and ranges
        overrides = {k: resolved[k] for k in canonical_hparams(dict(self.hparams))}  # old names read as today's
        shape = _check_shape(self.input_shape)
        check_device(self.device, need_real=need_device, hint=device_hint)
        check_seed(self.seed)
        if self.batch_size is not None:
            check_positive("--batch-size", self.batch_size)
        selection = self.selection()
        batch = int(self.batch_size) if self.batch_size is not None else batch_size_of(resolved)
        levers = self._check_levers(mode_spec, batch, shape)
        return dataclasses.replace(
            self, mode=get_mode(mode).name, hparams=overrides, input_shape=shape, seed=int(self.seed),
            batch_size=None if self.batch_size is None else int(self.batch_size),
            classes=tuple(selection.classes) if selection.classes is not None else None,
            per_class=selection.per_class, **levers)

    def _check_levers(self, mode_spec: ModeSpec, batch: int, shape: tuple[int, ...] | None) -> dict[str, Any]:
        """The lever fields checked (:func:`gonprof.levers.check_levers`); the models are built on meta, for
        their blocks and convolutions, only when a lever needs to look at them."""
        from .levers import check_levers, parse_checkpoint

        models: dict[str, Any] = {}
        roles = parse_checkpoint(self.checkpoint)
        if roles or self.channels_last is True:
            models = _meta_models(self, mode_spec, shape)
        return check_levers(self.precision, roles, self.micro_batches, self.channels_last, device=self.device,
                            batch_size=batch, mode=mode_spec, models=models)

    @property
    def levers(self) -> dict[str, Any]:
        """The lever fields, as the records keep them."""
        return {"precision": self.precision, "checkpoint": list(self.checkpoint),
                "micro_batches": self.micro_batches, "channels_last": self.channels_last}

    def has_levers(self) -> bool:
        """Whether any lever differs from its default (fp32, no checkpoint, one micro-batch, contiguous)."""
        return (self.precision != "fp32" or bool(self.checkpoint) or self.micro_batches != 1
                or self.channels_last is True)

    def checked_place(self) -> StepSpec:
        """The checks that need no registry (device, seed, batch size, shape, selection), for a request whose
        step the caller builds itself (``run_training(make_step=...)``)."""
        check_device(self.device)
        check_seed(self.seed)
        if self.batch_size is not None:
            check_positive("--batch-size", self.batch_size)
        _check_shape(self.input_shape)
        self.selection()
        return self

    def _check_generator(self, mode_spec: ModeSpec) -> None:
        from .arch import get_arch
        from .modes.base import IncompatibleError

        if self.generator is None:
            return
        if not mode_spec.needs_generator:
            raise IncompatibleError(f"mode {mode_spec.name} trains without a generator; drop --generator "
                                    f"{self.generator}")
        g_spec = get_arch(self.generator)
        if g_spec.role != "generator":
            raise IncompatibleError(f"{self.generator} is a {g_spec.role}, not a generator")

    # -- what the request resolves to ---------------------------------------------------

    @property
    def mode_name(self) -> str:
        """The mode, resolved to the architecture's own when none was named."""
        if self.mode:
            return self.mode
        from .modes.build import default_mode

        return default_mode(self.arch)

    def mode_spec(self) -> ModeSpec:
        from .modes.base import get_mode

        return get_mode(self.mode_name)

    def resolved_hparams(self) -> dict[str, Any]:
        """The hyper-parameters a step of this request runs with: defaults, the preset's, the overrides."""
        return self.mode_spec().hparams(self.preset, **dict(self.hparams))

    def effective_batch_size(self) -> int:
        """``batch_size``, else the mode's (``hparams["batch_size"]``, else 64)."""
        from .modes.base import batch_size_of

        return int(self.batch_size) if self.batch_size is not None else batch_size_of(self.resolved_hparams())

    def shape(self) -> tuple[int, ...]:
        """The input shape a sample has (C, H, W): ``input_shape``, else the architecture's default."""
        if self.input_shape is not None:
            return tuple(self.input_shape)
        from .arch import get_arch

        return tuple(get_arch(self.arch).input_shape)

    def selection(self) -> Selection:
        from .data import Selection

        return Selection.parse(list(self.classes) if self.classes is not None else None, self.per_class)

    def replace(self, **changes: Any) -> StepSpec:
        return dataclasses.replace(self, **changes)

    # -- building -------------------------------------------------------------------------

    def build(self, device: str | None = None, input_shape: tuple[int, ...] | None = None) -> TrainStep:
        """The :class:`~gonprof.modes.base.TrainStep` this request names, seeded with ``seed``, on ``device``
        (default: the request's; the estimator builds on ``"meta"``) for ``input_shape`` (default: the
        request's, else the architecture's)."""
        from .modes.build import build_step

        shape = input_shape if input_shape is not None else self.input_shape
        step = build_step(self.mode_name, self.arch, generator=self.generator, preset=self.preset,
                          device=device or self.device, input_shape=shape, seed=self.seed, **dict(self.hparams))
        if self.has_levers():
            from .arch import get_arch
            from .levers import apply_levers, parse_checkpoint

            specs = {"D": get_arch(self.arch)}
            if step.generator:
                specs["G"] = get_arch(step.generator)
            levers = {**self.levers, "checkpoint": parse_checkpoint(self.checkpoint)}
            apply_levers(step, levers, specs)
        return step

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        spec = super().from_dict({k: v for k, v in data.items() if k in names})
        assert isinstance(spec, StepSpec)
        return spec


#: StepSpec's field names: the keywords the api verbs accept for a request given in parts.
STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepSpec))


class CarriesStep(_Serialisable):
    """The base of a dataclass that carries a step's request as ``step`` beside fields of its own (a compare
    row's :class:`~gonprof.comparison.RunSpec`, a run's :class:`~gonprof.train.TrainConfig`): ``replace`` sends
    the request's fields to ``step``, and ``from_dict`` also reads the flat form written before requests were
    one object (through the subclass's ``of``, which takes flat keywords)."""

    step: StepSpec

    @classmethod
    def of(cls, **fields: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        if "step" not in data:
            return cls.of(**{k: v for k, v in data.items() if k in names or k in STEP_FIELDS})
        return super().from_dict({k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes``, the request's fields among them going to ``step``."""
        step = {k: changes.pop(k) for k in list(changes) if k in STEP_FIELDS}
        if step:
            changes["step"] = changes.get("step", self.step).replace(**step)
        return dataclasses.replace(self, **changes)


def as_spec(spec: StepSpec | str | None, fields: Mapping[str, Any], verb: str = "") -> StepSpec:
    """The request an api verb was given: a :class:`StepSpec` (``fields`` replace its own), or an
    architecture's name with the other fields as keywords.  Unknown keywords are one line."""
    unknown = sorted(set(fields) - set(STEP_FIELDS))
    if unknown:
        where = f"{verb}() " if verb else ""
        raise TypeError(f"{where}got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"a step's request takes {', '.join(STEP_FIELDS)}")
    given = {k: v for k, v in fields.items() if not (k == "hparams" and v is None)}
    for k in ("classes", "input_shape"):
        if given.get(k) is not None and not isinstance(given[k], str):
            given[k] = tuple(given[k])
    if "checkpoint" in given:
        from .levers import parse_checkpoint

        given["checkpoint"] = parse_checkpoint(given["checkpoint"])
    if isinstance(spec, StepSpec):
        return dataclasses.replace(spec, **given) if given else spec
    if spec is None:
        spec = given.pop("arch", None)
    if not isinstance(spec, str) or not spec:
        raise RequestError(f"--arch is required: name an architecture (gonprof list), not {spec!r}")
    given.pop("arch", None)
    return StepSpec(arch=spec, **given)


def _meta_models(spec: StepSpec, mode_spec: ModeSpec, shape: tuple[int, ...] | None) -> dict[str, Any]:
    """role -> (ArchSpec, the model built on the meta device): what the lever rules look at."""
    import torch

    from .arch import get_arch
    from .modes.build import resolve_generator

    d_spec = get_arch(spec.arch)
    dims = shape or tuple(d_spec.input_shape)
    with torch.device("meta"):
        models: dict[str, Any] = {"D": (d_spec, d_spec.build(dims))}
        if mode_spec.needs_generator:
            g_spec = get_arch(resolve_generator(mode_spec.name, d_spec, spec.generator)[0])
            models["G"] = (g_spec, g_spec.build(dims))
    return models


# -- the checks every request shares -------------------------------------------------------

def check_device(device: str, need_real: bool = True, hint: str = "") -> str:
    """``device`` if it names the CPU or a CUDA device (one that is here, when ``need_real``)."""
    if not isinstance(device, str) or (device != "cpu" and not _is_cuda_name(device)):
        raise RequestError(f"--device must be cpu or cuda[:N], not {device!r}")
    if need_real and device != "cpu" and not cuda_here():
        raise RequestError(f"--device {device}: no CUDA device is available on this machine{hint}")
    return device


def _is_cuda_name(device: str) -> bool:
    if device == "cuda":
        return True
    head, _, index = device.partition(":")
    return head == "cuda" and index.isdigit()


def cuda_here() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_seed(seed: Any) -> int:
    """``seed`` as an int in 0..2**63-1 (:data:`~gonprof.records.base.MAX_SEED`); a one-line RequestError with
    the CLI's message otherwise."""
    problem = seed_problem(seed)
    if problem:
        raise RequestError(problem)
    return int(seed)


def check_threads(threads: Any) -> int | None:
    """``threads`` (None: torch's default) if it is an integer from 1 to 4 per core; a one-line RequestError with
    the CLI's message otherwise."""
    problem = threads_problem(threads)
    if problem:
        raise RequestError(problem)
    return None if threads is None else int(threads)


def check_positive(name: str, value: Any) -> int:
    """``value`` as a positive int; a one-line RequestError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _check_shape(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    dims = tuple(shape)
    if len(dims) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise RequestError(f"--input-shape must be three positive integers C,H,W, not {shape!r}")
    return dims
