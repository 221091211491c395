"""Build a :class:`~gonprof.modes.base.TrainStep` from names: the one call the trainer, the
profiler and the CLI make.

``build_step(mode, arch, generator=None, preset=None, device="cpu", input_shape=None,
seed=0, **hparam_overrides)``

1. resolves the mode and the discriminator (unknown names raise the registry's
   one-line did-you-mean error);
2. checks the mode accepts the discriminator's output kind, else raises
   :class:`~gonprof.modes.base.IncompatibleError` with one line naming the
   accepted kinds;
3. for a mode that needs a generator, picks it: ``generator`` if given, else the
   discriminator spec's ``default_generator``, else the mode's documented
   fallback (:data:`FALLBACK_GENERATORS`), built for the same input shape; the
   step's ``notes`` say which and why;
4. resolves hyper-parameters (defaults, then the preset, then overrides;
   unknown keys are an error);
5. seeds torch (``torch.manual_seed(seed)``), builds the models on ``device``
   and calls the mode's factory.

A generator given for a mode that needs none (gon) is refused with one line.
"""

from __future__ import annotations

from .base import IncompatibleError, TrainStep, get_mode

#: The generator a GAN mode falls back to when the discriminator names none
#: (for example ``gon-mnist-conv`` trained with ``lsgan``).
FALLBACK_GENERATORS = {
    "gan": "mlp-gan-generator",          # the Keras tutorial's generator
    "lsgan": "gas-generator",            # GAS's LSGAN generator
    "wgan-gp": "dcd-mnist-generator",    # the WGAN-GP MNIST generator (DCD reuses it)
    "dcd": "dcd-mnist-generator",
    "improved-gan": "improved-gan-generator",
}
DEFAULT_FALLBACK = "mlp-gan-generator"


def resolve_generator(mode: str, D_spec, generator: str | None = None) -> tuple[str, str]:
    """(generator name, why) for a mode that needs one."""
    if generator:
        return generator, f"generator {generator} (given)"
    if getattr(D_spec, "default_generator", None):
        return D_spec.default_generator, f"generator {D_spec.default_generator} (the default of {D_spec.name})"
    name = FALLBACK_GENERATORS.get(mode, DEFAULT_FALLBACK)
    return name, (f"generator {name}: {D_spec.name} names no default generator, so mode {mode} "
                  f"falls back to its own default")


def build_step(mode: str, arch: str, generator: str | None = None, preset: str | None = None,
               device="cpu", input_shape=None, seed: int = 0, **hparam_overrides) -> TrainStep:
    import torch

    from ..arch import get_arch

    spec = get_mode(mode)
    D_spec = get_arch(arch)
    if D_spec.role != "discriminator":
        raise IncompatibleError(f"{arch} is a {D_spec.role}, not a discriminator; pass it as --generator")
    if not spec.accepts(D_spec.output):
        raise IncompatibleError(
            f"mode {mode} cannot train {arch}: its output is {D_spec.output}, "
            f"mode {mode} accepts {' or '.join(spec.outputs)}")
    hparams = spec.hparams(preset, **hparam_overrides)
    shape = tuple(input_shape) if input_shape is not None else tuple(D_spec.input_shape)
    notes: list[str] = []
    G_spec = None
    if spec.needs_generator:
        g_name, why = resolve_generator(mode, D_spec, generator)
        G_spec = get_arch(g_name)
        if G_spec.role != "generator":
            raise IncompatibleError(f"{g_name} is a {G_spec.role}, not a generator")
        notes.append(why)
    elif generator:
        raise IncompatibleError(f"mode {mode} trains without a generator; drop --generator {generator}")
    dev = torch.device(device)
    torch.manual_seed(int(seed))
    D = D_spec.build(shape)
    if shape == tuple(D_spec.input_shape):
        D_spec.check_count(D)  # a plugin that miscounts is refused before anything runs
    D = D.to(dev)
    G = G_spec.build(shape).to(dev) if G_spec is not None else None
    step = spec.factory(D, D_spec, G, G_spec, hparams, dev)
    step.input_shape = shape
    step.notes[:0] = notes
    step.arch, step.generator = arch, (G_spec.name if G_spec is not None else None)
    step.preset = preset
    step.prepare()
    return step


def default_mode(arch: str) -> str:
    """The mode ``arch`` was published with (its spec's ``default_mode``); one-line errors otherwise."""
    from ..arch import get_arch

    spec = get_arch(arch)
    if spec.role != "discriminator":
        raise IncompatibleError(f"{arch} is a {spec.role}; profile a discriminator (pass this one as --generator)")
    if not spec.default_mode:
        raise IncompatibleError(f"{arch} names no default mode; pass --mode")
    return spec.default_mode
