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
5. seeds torch (``torch.manual_seed(seed)``), builds the models on ``device``;
6. checks the output contract (:func:`check_outputs`): one forward of a batch
   of :data:`PROBE_BATCH` images through the discriminator (and of as many
   latents through the generator) must give the shape its spec declares;
7. calls the mode's factory.

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

#: Images in the batch the output contract is checked on (:func:`check_outputs`).
PROBE_BATCH = 2
_FAILED = object()  # a probe forward that raised


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
    check_outputs(mode, D_spec, D, G_spec, G, shape, dev)  # the output contract, before any work
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


def _shape_text(shape) -> str:
    return " x ".join(str(int(d)) for d in shape)


def _declared(kind: str, k: int) -> str:
    return "one score per image" if kind == "score" else f"{k} logits per image"


def check_outputs(mode: str, D_spec, D, G_spec, G, shape: tuple, device) -> None:
    """The output contract, checked on one forward of :data:`PROBE_BATCH` inputs before any work: the
    discriminator maps ``N x C x H x W`` images to ``N x 1`` scores (``N`` accepted too) when it declares
    ``output="score"`` and to ``N x K`` logits for ``logits[K]``; a generator maps ``N x latent_dim`` latents
    to ``N x C x H x W`` images.  Anything else is an IncompatibleError in one line naming the shape the
    model returned and the one its mode needs (a forward that raises is left to the run, which reports it
    as it always has).  The forward runs in eval mode without gradients, with the
    random-number state and the models' buffers and train flags put back after, so it changes nothing; on
    the meta device (the estimator's build) it costs nothing."""
    import torch

    n, k = PROBE_BATCH, D_spec.output_dim
    x = _probe((n, *shape), device, uniform=True)
    out = _forward(D, x, device)
    if out is _FAILED:
        return
    shape_ok = isinstance(out, torch.Tensor) and (tuple(out.shape) == (n, k)
                                                  or (D_spec.output == "score" and tuple(out.shape) == (n,)))
    if not shape_ok:
        got = _shape_text(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise IncompatibleError(
            f"{D_spec.name} returned {got} for a batch of {n} images; mode {mode} needs {n} x {k} from it "
            f"(its declared output, {D_spec.output}: {_declared(D_spec.output, k)})")
    dim = (getattr(G_spec, "latent_dim", None) or getattr(G, "latent_dim", None)) if G is not None else None
    if not dim:  # no generator, or one whose latents the mode's own check refuses
        return
    img = _forward(G, _probe((n, int(dim)), device, uniform=False), device)
    if img is not _FAILED and (not isinstance(img, torch.Tensor) or tuple(img.shape) != (n, *shape)):
        got = _shape_text(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise IncompatibleError(f"generator {G_spec.name} returned {got} for {n} latents; mode {mode} needs "
                                f"{_shape_text((n, *shape))} images from it (the discriminator's input)")


def _probe(shape: tuple, device, uniform: bool):
    """A fixed input (its own generator, so the global RNG is not drawn from); empty on meta."""
    import torch

    if device.type == "meta":
        return torch.empty(shape, device=device)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(shape, generator=g, device="cpu") * 2 - 1 if uniform else \
        torch.randn(shape, generator=g, device="cpu")
    return x.to(device)


def _forward(model, x, device):
    """``model(x)`` in eval mode without gradients, the RNG state, buffers and train flags kept; ``_FAILED``
    when the forward raises, or the model is not an ``nn.Module`` (the step then fails, or runs, as it
    always did)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return _FAILED
    flags = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            return model(x)
    except Exception:  # noqa: BLE001 - not the contract's business: the run reports it as before
        return _FAILED
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                if b.shape == saved.shape:
                    b.copy_(saved)
        for m, was in flags:
            m.training = was
