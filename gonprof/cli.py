"""The ``gonprof`` command line: thin Typer commands over :mod:`gonprof.api`.

Results go to stdout, diagnostics and progress to stderr.  Exit codes:
0 success, 1 a run or data failure, 2 a usage error (unknown name, bad shape,
incompatible choice, a number out of range, an output path that cannot be written),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM; 129 for SIGHUP).

This module must not import torch at import time: ``gonprof --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from ._version import __version__
from .records.base import _int_text, seed_problem, threads_problem

if TYPE_CHECKING:
    from .api import Selection
    from .records import MemoryEstimate

_T = TypeVar("_T")
_P = ParamSpec("_P")

app = typer.Typer(
    name="gonprof",
    help="Profile the memory, compute and time of GAN and GON discriminators, beside the sample quality they buy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143

PluginOpt = Annotated[
    list[Path] | None,
    typer.Option("--plugin", help="Python file that registers architectures or modes (repeatable).",
                 exists=False, dir_okay=False),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a hyper-parameter of the mode: NAME=VALUE (repeatable)."),
]
ClassesOpt = Annotated[
    str | None,
    typer.Option("--classes", help="Keep only these labels, e.g. 0 or 0,3,7 (training and scoring alike)."),
]
PerClassOpt = Annotated[
    int | None,
    typer.Option("--per-class", help="Keep the first N training images of each kept class (few-shot)."),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Run a step even when its memory estimate exceeds the memory available."),
]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="fp32, bf16 or fp16 (CUDA): the models' forwards under autocast, float32 master weights."),
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option("--checkpoint", help="Activation checkpointing of D, G or D,G: each block recomputed in the backward."),
]
MicroBatchesOpt = Annotated[
    int, typer.Option("--micro-batches", help="K slices of the batch per update, gradients accumulated (same effective batch)."),
]
ChannelsLastOpt = Annotated[
    bool, typer.Option("--channels-last", help="Convolutional models' weights and inputs in channels-last layout."),
]


def lever_fields(precision: str, checkpoint: str | None, micro_batches: int, channels_last: bool) -> dict[str, Any]:
    """The request's lever fields from the command line (checked with the rest of the request)."""
    return {"precision": precision, "checkpoint": checkpoint or (), "micro_batches": micro_batches,
            "channels_last": channels_last}


#: --batch-sizes: the largest batch any mode takes (gonprof.modes.base.MAX_SIZE; not imported here, so that
#: parsing the command line imports no torch).
MAX_BATCH_SIZE = 1_000_000


def parse_batch_sizes(text: str) -> tuple[list[int], str]:
    """(the batch sizes of --batch-sizes, "") or ([], why they cannot be used): integers from 1 to
    :data:`MAX_BATCH_SIZE` separated by commas, each named once."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    expected = f"expected integers from 1 to {MAX_BATCH_SIZE:,} separated by commas, each once (e.g. 1,2,4,8)"
    parts = [part.strip() for part in text.split(",")]
    if "" in parts:
        return [], f"--batch-sizes {shown!r} has an empty item; {expected}"
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        return [], f"--batch-sizes {shown!r}: {expected}"
    for size in sizes:
        if not 1 <= size <= MAX_BATCH_SIZE:
            return [], f"--batch-sizes {shown!r}: batch size {_int_text(size)} is out of range; {expected}"
    seen = {size for size in sizes if sizes.count(size) > 1}
    if seen:
        return [], f"--batch-sizes {shown!r} names batch size {min(seen)} twice; {expected}"
    return sizes, ""


def _refuse(problem: str) -> None:
    if problem:
        raise fail(problem, EXIT_USAGE)


def _check_threads(value: int | None) -> int | None:
    _refuse(threads_problem(value))
    return value


def _check_seed(value: int) -> int:
    _refuse(seed_problem(value))
    return value


def _check_batch_sizes(value: str) -> str:
    _refuse(parse_batch_sizes(value)[1])
    return value


ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", callback=_check_threads,
                 help="torch threads, 1 to 4 per core (default: torch's own; recorded either way)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", callback=_check_seed, help="Random seed, 0 to 2**63-1.")]
# Where independent runs go (compare's rows, fit's trials, --scaling's points): gonprof.executors
JobsOpt = Annotated[int, typer.Option("--jobs", min=1, help="Run up to N at once, each in its own process pinned to its own cores (torch threads to match).")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="local (one subprocess each, the default) or ray (each a task in a fresh Ray worker; needs the ray extra).")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="ray: the cluster to join (default: start a local one for this run).")]
CpusPerRunOpt = Annotated[int, typer.Option("--cpus-per-run", min=1, help="ray: CPUs each run reserves (and its torch threads).")]
GpusPerRunOpt = Annotated[int, typer.Option("--gpus-per-run", min=0, help="ray: whole GPUs each run reserves (runs never share one).")]


def executor_options(jobs: int, executor: str, address: str | None, cpus_per_run: int, gpus_per_run: int) -> Any:
    """The executor options as the api's :class:`~gonprof.executors.Placement` (checked by the verb)."""
    from .api import Placement

    return Placement(executor=executor, jobs=jobs, address=address, cpus_per_run=cpus_per_run,
                     gpus_per_run=gpus_per_run)


def check_outputs(**paths: Path | None) -> None:
    """Refuse, before any work, an output path that cannot be written: one line, exit 2.

    ``paths`` maps an option name (``json``) to the file (or, for ``out``, folder) it names.  Each is
    tried by creating it: an output file is created (with its missing folders) and removed again, or,
    where it exists, opened for appending (nothing in it changes); an output folder gets a temporary file
    in it, or in its nearest existing parent.  So /proc, read-only mounts and names the file system
    refuses fail here, not after the work.
    """
    for option, path in paths.items():
        if path is None:
            continue
        flag = "--" + option.replace("_", "-")
        try:
            _check_output(option, flag, Path(path))
        except OSError as exc:  # a name the file system refuses even to look up (too long, a loop of links)
            raise fail(f"{flag} {path}: {exc.strerror or exc}", EXIT_USAGE) from None


def _check_output(option: str, flag: str, path: Path) -> None:
    """One output of :func:`check_outputs`."""
    if option == "out":
        if path.exists() and not path.is_dir():
            raise fail(f"{flag} {path}: is a file, not a folder", EXIT_USAGE)
    elif path.is_dir():
        raise fail(f"{flag} {path}: is a folder; give a file name", EXIT_USAGE)
    elif path.exists() and not path.is_file():
        raise fail(f"{flag} {path}: is not a regular file (a device, pipe or socket); give a file name",
                   EXIT_USAGE)
    ancestor = path if option == "out" and path.is_dir() else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise fail(f"{flag} {path}: {ancestor} is a file, not a folder", EXIT_USAGE)
    if not os.access(ancestor, os.W_OK):
        raise fail(f"{flag} {path}: {ancestor} is not writable", EXIT_USAGE)
    problem = _try_folder(ancestor) if option == "out" else _try_file(path)
    if problem:
        raise fail(f"{flag} {path}: {problem}", EXIT_USAGE)
    if option in ("plot", "timeline"):
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise fail(f"{flag} needs matplotlib: pip install -e \".[plot]\"", EXIT_USAGE)


def _try_file(path: Path) -> str:
    """Why the output file ``path`` cannot be written ("" when it can), found by creating it (and its missing
    folders) and removing it again, or, where it exists, by opening it to append (its content unchanged)."""
    if path.exists():
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            return f"cannot be written ({exc.strerror or exc})"
        return ""
    made = [p for p in path.parents if not p.exists()]  # the folders this check creates, deepest first
    fd = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        return f"cannot be created ({exc.strerror or exc})"
    finally:
        if fd is not None:
            os.close(fd)
            path.unlink()
        for folder in made:  # nothing is left behind: the work creates them again when it writes
            with contextlib.suppress(OSError):
                folder.rmdir()
    return ""


def _try_folder(folder: Path) -> str:
    """Why no file can be made in ``folder`` ("" when one can), found by making a temporary one there."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".gonprof-check-"):
            pass
    except OSError as exc:
        return f"cannot create files in {folder} ({exc.strerror or exc})"
    return ""


class Outputs:
    """Writes of a command's output files: a write that fails is remembered, the results are still
    printed, and :meth:`finish` then reports each failure in one line and exits 1."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def write(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        from .plots import PlotError

        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            self.errors.append(f"{what} not written: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        except PlotError as exc:
            self.errors.append(f"{what} not written: {exc}")
        return None

    def finish(self) -> None:
        from rich.markup import escape

        for message in self.errors[:-1]:
            _stderr().print(f"[bold red]gonprof: error:[/] {escape(message)}", soft_wrap=True)
        if self.errors:
            raise fail(self.errors[-1], EXIT_FAILURE)


def parse_selection(classes: str | None, per_class: int | None) -> Selection:
    """The data selection of --classes / --per-class; a bad one is a usage error."""
    from . import api

    return api.selection(classes, per_class)


def apply_threads(threads: int | None) -> None:
    """Apply --threads (None: torch's own default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def warn_if_loaded() -> None:
    """One warning line when the machine is busier than its cores (timings then do not compare)."""
    from .records import host_load

    load = host_load()
    if load.get("overloaded"):
        _stderr().print(f"[yellow]gonprof: warning: {load['warning']}[/]", soft_wrap=True)


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


class _Results:
    """The results console: what it prints is first fitted to its width (tables that cannot keep every
    number whole become one block per row, render.fit_width)."""

    def __init__(self, console):
        self.console = console

    def print(self, renderable, *args, **kwargs):
        from . import render

        self.console.print(render.fit_width(renderable, self.console), *args, **kwargs)


def _stdout():
    """Results console; when stdout is a file or pipe, wide enough that tables keep their columns."""
    from rich.console import Console

    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return _Results(Console(highlight=False, width=200 if wide else None))


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    from rich.markup import escape

    _stderr().print(f"[bold red]gonprof: error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def _usage_errors() -> tuple[type, ...]:
    from .api import USAGE_ERRORS

    return USAGE_ERRORS


def _run_errors() -> tuple[type, ...]:
    from .api import RUN_ERRORS
    from .plots import PlotError

    return (*RUN_ERRORS, PlotError)


#: The signal that sent the running command down the Ctrl-C path (empty after Ctrl-C itself, or none).
_stopped_by: dict[str, int] = {}


def _stop_as_interrupt(signum, frame):
    _stopped_by["signal"] = signum
    raise KeyboardInterrupt


def interrupted_exit_code() -> int:
    """The exit code of a command that was stopped: 128 + the signal's number where a signal took the Ctrl-C
    path (143 for SIGTERM, 129 for SIGHUP), else 130 (Ctrl-C), as ``gonprof train`` exits."""
    signum = _stopped_by.get("signal")
    return 128 + signum if signum else EXIT_INTERRUPTED


def stop_workers_on_termination() -> None:
    """SIGTERM and SIGHUP take the Ctrl-C path, so that the worker processes a command started are
    stopped and the rows already finished kept (profile, compare, fit); the command then exits 143
    (SIGTERM) or 129 (SIGHUP) instead of 130 (:func:`interrupted_exit_code`)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _stop_as_interrupt)


def guarded(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """Turn the project's known errors into one line and a meaningful exit code."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        _stopped_by.clear()
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            raise fail("interrupted", interrupted_exit_code()) from None
        except Exception as exc:
            if isinstance(exc, _usage_errors()):
                raise fail(str(exc), EXIT_USAGE) from None
            if isinstance(exc, _run_errors()):
                raise fail(str(exc), EXIT_FAILURE) from None
            if os.environ.get("GONPROF_DEBUG"):
                raise
            raise fail(f"unexpected {type(exc).__name__}: {exc} (set GONPROF_DEBUG=1 for a traceback)") from None

    return wrapper


def load_plugins(paths: list[Path] | None) -> None:
    if paths:
        from . import api

        api.load_plugins(paths)


def parse_shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise fail(f"--input-shape must be C,H,W with three positive integers (e.g. 1,28,28), got {text!r}",
                   EXIT_USAGE)
    return shape


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gonprof {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Profile the memory, compute and time of GAN and GON discriminators, beside the sample quality they buy."""


@app.command("list")
@guarded
def list_cmd(
    pattern: Annotated[str | None, typer.Argument(help="Glob (inception-*) or substring to filter names.")] = None,
    role: Annotated[str | None, typer.Option(help="discriminator or generator.")] = None,
    modes: Annotated[bool, typer.Option("--modes", help="List training modes instead of architectures.")] = False,
    json_out: JsonFlag = False,
    plugin: PluginOpt = None,
) -> None:
    """List registered architectures (or training modes) with their parameter counts."""
    from . import api, render

    load_plugins(plugin)
    if modes:
        _emit(api.list_modes(pattern), json_out, render.modes_table)
        return
    if role is not None and role not in ("discriminator", "generator"):
        raise fail(f"--role must be discriminator or generator, not {role!r}", EXIT_USAGE)
    rows = api.list_architectures(pattern, role=role)
    if not rows and not json_out:
        _stderr().print(f"no architecture matches {pattern!r}")
    _emit(rows, json_out, render.architectures_table)


@app.command()
@guarded
def info(
    arch: Annotated[str | None, typer.Option("--arch", help="Architecture name (see `gonprof list`).")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="Describe a training mode instead: defaults, presets, notes.")] = None,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="C,H,W; default: the architecture's own.")] = None,
    json_out: JsonFlag = False,
    plugin: PluginOpt = None,
) -> None:
    """Per-layer table of an architecture (output shape, parameters, forward FLOPs), or a mode's settings."""
    from . import api, render

    load_plugins(plugin)
    if (arch is None) == (mode is None):
        raise fail("give --arch NAME (an architecture) or --mode NAME (a training mode)", EXIT_USAGE)
    if mode is not None:
        _emit(api.describe_mode(mode), json_out, render.mode_report)
        return
    assert arch is not None  # exactly one of --arch and --mode (checked above)
    report = api.describe(arch, parse_shape(input_shape))
    _emit(report, json_out, render.arch_report)


DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")]


@app.command()
@guarded
def profile(
    arch: Annotated[list[str], typer.Option("--arch", help="Architecture name or glob; repeat to profile several.")],
    mode: Annotated[str | None, typer.Option(help="Training mode; default: the one each architecture was published with.")] = None,
    generator: Annotated[str | None, typer.Option(help="Generator for GAN modes; default: the architecture's own.")] = None,
    preset: Annotated[str | None, typer.Option(help="Named hyper-parameter preset of the mode (e.g. gon: seed).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Default: the mode's seed batch size.")] = None,
    device: DeviceOpt = "cpu",
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps; the last one counts FLOPs and live bytes.")] = 2,
    timed_steps: Annotated[int, typer.Option("--timed-steps", min=1, help="Timed steps (after --warmup).")] = 10,
    old_steps: Annotated[int | None, typer.Option("--steps", min=1, help="Deprecated: the old spelling of --timed-steps (elsewhere --steps counts training steps).")] = None,
    seed: SeedOpt = 0,
    data: Annotated[str | None, typer.Option(help="IDX folder; default: the embedded MNIST test split.")] = None,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="C,H,W.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the records to this JSON file.")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write one CSV row per record.")] = None,
    estimate: Annotated[bool, typer.Option("--estimate", help="Predict the step's peak memory without allocating it (any device, cuda too without a GPU), beside the measured figure when one can be measured.")] = False,
    scaling: Annotated[bool, typer.Option("--scaling", help="Peak memory and step time against batch size, fitted as fixed + per sample.")] = False,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", callback=_check_batch_sizes, help="Batch sizes for --scaling: integers from 1 to 1,000,000, each once.")] = "1,2,4,8,16,32",
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    cpus_per_run: CpusPerRunOpt = 1,
    gpus_per_run: GpusPerRunOpt = 0,
    classes: ClassesOpt = None,
    per_class: PerClassOpt = None,
    threads: ThreadsOpt = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Profile the step on N data-parallel ranks (DistributedDataParallel, started by torch.distributed's elastic launcher; gloo on the CPU, nccl with one GPU per rank): one row per rank. --batch-size is per rank; --threads each rank's.")] = None,
    force: ForceOpt = False,
    precision: PrecisionOpt = "fp32",
    checkpoint: CheckpointOpt = None,
    micro_batches: MicroBatchesOpt = 1,
    channels_last: ChannelsLastOpt = False,
    levers: Annotated[bool, typer.Option("--levers", help="Profile the baseline and each memory lever alone (and the best pair), one row each.")] = False,
    hparam: SetOpt = None,
    plugin: PluginOpt = None,
    timeline: Annotated[Path | None, typer.Option("--timeline", help="Draw the measuring step's live bytes over the step, stacked by category, phases and peak marked, to this PNG (plot extra; one --arch).")] = None,
) -> None:
    """Profile optimization steps: parameters, FLOPs, peak memory and time per step."""
    from . import api, render

    steps = timed_steps
    if old_steps is not None:
        _stderr().print("[yellow]gonprof: warning: profile --steps is deprecated; it is --timed-steps (--steps "
                        "counts training steps in train and compare)[/]", soft_wrap=True)
        steps = old_steps
    load_plugins(plugin)
    check_outputs(json=json_path, csv=csv_path, timeline=timeline)
    names = api.match_architectures(arch)
    if timeline is not None and (len(names) > 1 or nproc is not None or estimate or scaling):
        raise fail("--timeline draws one profile's measuring step: give one --arch, without --nproc, --estimate "
                   f"or --scaling (--arch matched {len(names)}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''})"
                   if len(names) > 1 else "--timeline draws one profile's measuring step: not with --nproc, "
                   "--estimate or --scaling", EXIT_USAGE)
    shape = parse_shape(input_shape)
    hparams = parse_sets(hparam)
    selection = parse_selection(classes, per_class)
    lever = lever_fields(precision, checkpoint, micro_batches, channels_last)
    if levers:
        clash = [flag for flag, given in (("--precision", precision != "fp32"), ("--checkpoint", checkpoint),
                                          ("--micro-batches", micro_batches != 1), ("--channels-last", channels_last),
                                          ("--estimate", estimate), ("--scaling", scaling), ("--nproc", nproc),
                                          ("--csv", csv_path), ("--timeline", timeline)) if given]
        if clash:
            raise fail(f"--levers profiles the baseline and each lever itself; drop {clash[0]}", EXIT_USAGE)
        _profile_levers(names, dict(mode=mode, generator=generator, preset=preset, batch_size=batch_size,
                                    device=device, seed=seed, data=data, input_shape=shape, hparams=hparams,
                                    classes=selection.classes, per_class=selection.per_class),
                        warmup=warmup, steps=steps, threads=threads, json_path=json_path)
        return
    if not scaling and (jobs, executor, address, cpus_per_run, gpus_per_run) != (1, "local", None, 1, 0):
        raise fail("--jobs, --executor, --address, --cpus-per-run and --gpus-per-run place --scaling's points; "
                   "a profile runs its steps in this process" + (" (--nproc: in torch.distributed's ranks)"
                                                                 if nproc is not None else ""), EXIT_USAGE)
    if nproc is not None:
        if scaling or estimate:
            raise fail("--nproc does not apply to --estimate / --scaling: they size one process's step", EXIT_USAGE)
        _profile_ranks(names, nproc, dict(mode=mode, generator=generator, preset=preset, batch_size=batch_size,
                                          device=device, warmup=warmup, steps=steps, seed=seed, data=data,
                                          input_shape=shape, hparams=hparams, classes=selection.classes,
                                          per_class=selection.per_class, force=force, threads=threads,
                                          plugins=list(plugin or ()), **lever), json_path, csv_path)
        return
    apply_threads(threads)
    stop_workers_on_termination()  # SIGTERM: the records finished so far are kept and written, exit 143
    placement = executor_options(jobs, executor, address, cpus_per_run, gpus_per_run)
    if scaling or estimate:
        ignored = [flag for flag, given in (("--csv", csv_path), ("--data", data), ("--classes", classes),
                                            ("--per-class", per_class), ("--force", force)) if given]
        if ignored:
            raise fail(f"{ignored[0]} does not apply to --estimate / --scaling (their records go to --json)", EXIT_USAGE)
        request = dict(mode=mode, generator=generator, preset=preset, batch_size=batch_size, device=device,
                       input_shape=shape, seed=seed, hparams=hparams, **lever)
        _profile_memory(names, request, estimate=estimate, scaling=scaling, batch_sizes=batch_sizes,
                        json_path=json_path, placement=placement)
        return
    _profile_each(
        names, lambda name: api.profile(name, mode, generator=generator, preset=preset, batch_size=batch_size,
                                        device=device, warmup=warmup, steps=steps, seed=seed, data=data,
                                        input_shape=shape, hparams=hparams, classes=selection.classes,
                                        per_class=selection.per_class, force=force, **lever),
        status="profiling {name} ...", json_path=json_path, csv_path=csv_path,
        environments=lambda rec: [rec.environment],
        show=lambda recs: render.render_record(recs[0]) if len(recs) == 1 else render.render_records(recs),
        who=lambda r: f"{r.arch} ({r.mode})", timeline=timeline)


def _profile_levers(names, request: dict, *, warmup: int, steps: int, threads, json_path) -> None:
    """``profile --levers``: one lever table per architecture (api.levers), written to --json after each."""
    from . import api, render
    from .records import save_records

    apply_threads(threads)
    recs = []
    for name in names:
        with _stderr().status(f"profiling {name} under each lever ..."):
            rec = api.levers(name, warmup=warmup, steps=steps, **request)
        recs.append(rec)
        _stdout().print(render.render_levers(rec))
        if json_path:
            save_records(recs, json_path)
    if any(r.status != "ok" for r in recs):
        raise typer.Exit(EXIT_FAILURE)


def _profile_each(names, run, *, status: str, json_path, csv_path, environments, show, who, timeline=None) -> None:
    """Run ``run(name)`` for each architecture, writing --json after each (nothing finished is lost), then
    --csv, one warning if any run started on an overloaded machine, the tables, and the failures; exits 130
    when interrupted, 1 when any run failed."""
    from rich.markup import escape

    from .records import records_to_csv, save_records

    err, outputs, records = _stderr(), Outputs(), []
    for name in names:
        with err.status(status.format(name=name)):
            rec = run(name)
        records.append(rec)
        if json_path:
            outputs.write(f"--json {json_path}", save_records, records, json_path)
        if rec.status == "interrupted":
            break
    if csv_path:
        outputs.write(f"--csv {csv_path}", records_to_csv, records, csv_path)
    busy = [(env.load_average_1m, env.cpu_count) for rec in records for env in environments(rec)
            if env is not None and env.load_average_1m is not None and env.load_average_1m > (env.cpu_count or 1)]
    if busy:
        load, cores = max(busy)
        err.print(f"[yellow]gonprof: warning: load average {load:g} exceeded this machine's {cores} cores: "
                  "timings are not comparable with a quiet machine's[/]", soft_wrap=True)
    _stdout().print(show(records))
    if timeline is not None and records:
        from .plots import timeline_plot

        if outputs.write(f"--timeline {timeline}", timeline_plot, records[0], timeline):
            err.print(f"timeline: {timeline}", soft_wrap=True)
    failed = [r for r in records if r.status != "ok"]
    for r in failed:
        err.print(f"[yellow]{escape(who(r))}: {r.status}: {escape(r.message)}[/]", soft_wrap=True)
    outputs.finish()
    if any(r.status == "interrupted" for r in records):
        raise typer.Exit(interrupted_exit_code())
    if failed:
        raise typer.Exit(EXIT_FAILURE)


def _profile_ranks(names, nproc, request: dict, json_path, csv_path) -> None:
    """``profile --nproc N`` (api.profile_distributed), per architecture: one table of ranks each."""
    from rich.console import Group

    from . import api, render

    stop_workers_on_termination()  # SIGTERM stops the launcher and its ranks, as Ctrl-C does
    _profile_each(
        names, lambda name: api.profile_distributed(name, nproc=nproc, **request),
        status=f"profiling {{name}} on {nproc} data-parallel rank{'s' if nproc != 1 else ''} ...",
        json_path=json_path, csv_path=csv_path,
        environments=lambda rec: [r.profile.environment for r in rec.ranks if r.profile is not None],
        show=lambda recs: Group(*(render.render_distributed(rec) for rec in recs)),
        who=lambda r: f"{r.arch} ({r.mode}, {r.world_size} ranks)")


def _profile_memory(names: list[str], request: dict, *, estimate: bool, scaling: bool, batch_sizes: str,
                    json_path: Path | None, placement: Any) -> None:
    """``profile --estimate`` (api.estimate) and ``profile --scaling`` (api.scaling, its points placed by
    ``placement``: the executor options), per architecture; ``request`` are the step's fields."""
    from . import api, render
    from .records import ScalingRecord, save_records

    if scaling:
        sizes, problem = parse_batch_sizes(batch_sizes)
        _refuse(problem)
    err, out, failed = _stderr(), _stdout(), []
    records: list[ScalingRecord | MemoryEstimate] = []
    if scaling:
        stop_workers_on_termination()
    for name in names:
        if scaling:
            with err.status(f"scaling {name} over batch sizes {sizes} ..."):
                rec = api.scaling(name, batch_sizes=sizes, estimate=estimate, placement=placement,
                                  progress=None if estimate else lambda p: err.print(_trial_line(p)), **request)
            records.append(rec)
            out.print(render.render_scaling(rec))
            if rec.status == "interrupted":
                break
            if rec.status != "ok":
                failed.append(f"{name}: {rec.message or rec.status}")
            continue
        with err.status(f"estimating {name} on {request['device']} (and measuring it where the device is here) ..."):
            est, measured = api.estimate(name, **request)
        records.append(est)
        out.print(render.render_estimate(est, measured=measured))
    if json_path:
        outputs = Outputs()
        outputs.write(f"--json {json_path}", save_records, records, json_path)
        outputs.finish()
    if scaling and any(isinstance(r, ScalingRecord) and r.status == "interrupted" for r in records):
        raise fail("interrupted; the finished points are kept" + (f" in {json_path}" if json_path else ""),
                   interrupted_exit_code())
    if failed:
        raise fail(f"scaling failed: {failed[0]}")


@app.command()
@guarded
def fit(
    arch: Annotated[str, typer.Option("--arch", help="Discriminator to fit.")],
    memory: Annotated[str, typer.Option("--memory", help="Memory budget for one step's peak, e.g. 4GiB, 512MB.")],
    mode: Annotated[str | None, typer.Option(help="Training mode; default: the architecture's own.")] = None,
    device: DeviceOpt = "cpu",
    estimate: Annotated[bool, typer.Option("--estimate", help="Trials estimated on meta tensors, nothing allocated (cuda works without a GPU).")] = False,
    generator: str | None = None,
    preset: str | None = None,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1)] = 65536,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the fit record (every trial) here.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Peak memory against batch size, to this PNG (plot extra).")] = None,
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    cpus_per_run: CpusPerRunOpt = 1,
    gpus_per_run: GpusPerRunOpt = 0,
    precision: PrecisionOpt = "fp32",
    checkpoint: CheckpointOpt = None,
    micro_batches: MicroBatchesOpt = 1,
    channels_last: ChannelsLastOpt = False,
    hparam: SetOpt = None,
    plugin: PluginOpt = None,
) -> None:
    """The largest batch whose step peak stays within a memory budget; each trial isolated.

    The search depends on its earlier trials, so --jobs N (or a Ray cluster) runs it in rounds of N
    independent trials: the estimate's answer and the sizes above it, or the interval cut into N + 1 parts.
    """
    from . import api, render
    from .records import save_records

    load_plugins(plugin)
    check_outputs(json=json_path, plot=plot)
    stop_workers_on_termination()
    err = _stderr()

    def on_plan():
        err.print(f"fitting {arch} on {device} into {memory}"
                  + (" by estimates" if estimate else ", measuring each trial in its own process (guided by estimates)"))

    rec = api.fit(arch, mode, memory=memory, device=device, estimate=estimate, generator=generator, preset=preset,
                  max_batch=max_batch, hparams=parse_sets(hparam), progress=lambda trial: err.print(_trial_line(trial)),
                  on_plan=on_plan, placement=executor_options(jobs, executor, address, cpus_per_run, gpus_per_run),
                  **lever_fields(precision, checkpoint, micro_batches, channels_last))
    _stdout().print(render.render_fit(rec))
    outputs = Outputs()
    if json_path:
        outputs.write(f"--json {json_path}", save_records, [rec], json_path)
    if plot:
        from .plots import fit_plot

        if outputs.write(f"--plot {plot}", fit_plot, rec, plot):
            err.print(f"plot: {plot}")
    outputs.finish()
    if rec.status == "interrupted":
        from rich.markup import escape

        err.print(f"[yellow]{escape(rec.message)}[/]", soft_wrap=True)
        raise typer.Exit(interrupted_exit_code())
    if rec.status != "ok":
        raise typer.Exit(EXIT_FAILURE)


def _trial_line(trial) -> str:
    """One line per finished trial or point (they may finish out of order)."""
    where = f" (cores {','.join(map(str, trial.cpus))})" if trial.cpus else ""
    return f"  batch {trial.batch_size}: {trial.status}{where}"


@app.command()
@guarded
def train(
    arch: Annotated[str | None, typer.Option("--arch", help="Discriminator to train.")] = None,
    mode: Annotated[str | None, typer.Option(help="Training mode; default: the architecture's own.")] = None,
    generator: Annotated[str | None, typer.Option(help="Generator for GAN modes.")] = None,
    preset: Annotated[str | None, typer.Option(help="Hyper-parameter preset (e.g. gon: seed).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimization steps (default 1000).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Passes over the data, instead of --steps.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Default: the mode's seed batch size.")] = None,
    seed: SeedOpt = 0,
    data: Annotated[str | None, typer.Option(help="IDX folder, or 'synthetic'; default: embedded MNIST test split.")] = None,
    device: DeviceOpt = "cpu",
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<arch>-<mode>-<time>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    sample_every: Annotated[int | None, typer.Option("--sample-every", min=0, help="Sample grid every K steps (0: only at the end).")] = None,
    labels: Annotated[int | None, typer.Option(help="improved-gan: labelled examples for the semi-supervised variant.")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", min=0, help="Stop after this many seconds of training, inside a step where the mode's long loops allow (status ok); the final grid may take 10% more.")] = None,
    classes: ClassesOpt = None,
    per_class: PerClassOpt = None,
    threads: ThreadsOpt = None,
    force: ForceOpt = False,
    precision: PrecisionOpt = "fp32",
    checkpoint: CheckpointOpt = None,
    micro_batches: MicroBatchesOpt = 1,
    channels_last: ChannelsLastOpt = False,
    hparam: SetOpt = None,
    plugin: PluginOpt = None,
) -> None:
    """Train a discriminator in a mode; writes a run directory with logs, checkpoints and sample grids."""
    from . import api
    from .progress import RichProgress

    load_plugins(plugin)
    check_outputs(out=out)
    hparams = parse_sets(hparam)
    if labels is not None:
        hparams["labels"] = labels
    selection = parse_selection(classes, per_class)
    fields = dict(arch=arch, mode=mode, generator=generator, preset=preset, steps=steps, epochs=epochs,
                  batch_size=batch_size, seed=seed, data=data, device=device, out=str(out) if out else None,
                  sample_every=sample_every, hparams=hparams, time_budget_s=time_budget, threads=threads,
                  **selection.to_dict(), **lever_fields(precision, checkpoint, micro_batches, channels_last))
    if resume and arch is None:  # continue the run stored in --out
        fields = {k: fields[k] for k in ("out", "steps", "epochs", "batch_size", "threads", "time_budget_s")}
    result = api.train(resume=resume, progress=RichProgress(console=_stderr()), force=force, **fields)
    out_console = _stdout()
    losses = ", ".join(f"{k} {v:.4g}" for k, v in (result.final_losses or {}).items() if v is not None)
    of_total = "" if result.time_bounded else f"/{result.steps_total}"
    out_console.print(f"{result.status}: {result.steps_done}{of_total} steps in {result.wall_time_s:.1f} s; {losses}")
    if result.test_error is not None:
        out_console.print(f"test error on held-out images: {result.test_error:.2%}")
    out_console.print(f"run directory: {result.path}")
    if result.status == "interrupted":
        _stderr().print(f"interrupted; continue with: gonprof train --out {result.path} --resume")
        raise typer.Exit(EXIT_TERMINATED if result.stopped_by == "SIGTERM" else EXIT_INTERRUPTED)
    if result.status != "ok":
        raise fail(result.message if result.status == "error" else f"{result.status}: {result.message}")
    if result.stopped_by:  # a signal cut the final grid of a run that had trained all its steps
        raise typer.Exit(EXIT_TERMINATED if result.stopped_by == "SIGTERM" else EXIT_INTERRUPTED)


def parse_sets(items: list[str] | None) -> dict:
    """NAME=VALUE pairs; values are read as JSON when they parse (numbers, true, lists), else as text."""
    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise fail(f"--set expects NAME=VALUE, got {item!r}", EXIT_USAGE)
        if value.lower() in ("true", "false"):  # True/False as Python spells them, too
            out[name] = value.lower() == "true"
            continue
        try:
            out[name] = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, an integer past Python's 4,300 digits, deep nesting
            out[name] = value
    return out


@app.command()
@guarded
def compare(
    modes: Annotated[list[str] | None, typer.Argument(help="Training modes to compare (e.g. gon lsgan).")] = None,
    arch: Annotated[list[str] | None, typer.Option("--arch", help="Discriminators (names or globs); default: each mode's own.")] = None,
    preset: Annotated[str | None, typer.Option(help="A seed's study with its claims: gas, gon, improved-gan, improved-gan-100 (its 100-label row alone), dcd (WGAN-GP to a quality gate, then DCD refinement), mlp-gan; or gon-vs-gan, gon-digit (GON and GANs on one digit), gon-inner (GON's inner optimisers), gon-chains / gon-chains-all (GON's persistent chains against fresh noise, beside LSGAN: zeros / all ten), gon-bf16 (GON's chains under bf16 autocast against float32, zeros).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps per run.")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", min=0, help="Training seconds per run (default 120 when no --steps).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Default: each mode's seed batch size.")] = None,
    seed: SeedOpt = 0,
    data: Annotated[str | None, typer.Option(help="IDX folder; default: the embedded MNIST test split.")] = None,
    device: DeviceOpt = "cpu",
    samples: Annotated[int, typer.Option("--samples", min=10, help="Samples scored per run (and real images in the floor row).")] = 1000,
    profile_steps: Annotated[int, typer.Option("--profile-steps", min=1, help="Timed steps profiled after training.")] = 5,
    memory_limit: Annotated[str | None, typer.Option("--memory-limit", help="Cap each run's memory (e.g. 4GiB): the worker process's data segment (RLIMIT_DATA), which counts torch's own start-up footprint too; a run past it is a row with status oom.")] = None,
    classes: ClassesOpt = None,
    per_class: PerClassOpt = None,
    threads: ThreadsOpt = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the comparison in this folder: rows that finished with the same settings are kept, the others run (repeat the command as first given).")] = None,
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    cpus_per_run: CpusPerRunOpt = 1,
    gpus_per_run: GpusPerRunOpt = 0,
    quick: Annotated[bool, typer.Option("--quick", help="The preset's short budget (minutes, not hours); a quality not reached yet, or a run's end state, is inconclusive until the full budget.")] = False,
    force: ForceOpt = False,
    precision: PrecisionOpt = "fp32",
    checkpoint: CheckpointOpt = None,
    micro_batches: MicroBatchesOpt = 1,
    channels_last: ChannelsLastOpt = False,
    hparam: Annotated[list[str] | None, typer.Option("--set", help="NAME=VALUE for every mode that has NAME, or MODE.NAME=VALUE for one mode (repeatable); levers too: lsgan.precision=bf16.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for runs, logs and grids (default runs/compare-<time>).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Results file (default OUT/results.json).")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write the rows as CSV.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw FID against peak memory to this PNG (needs the plot extra).")] = None,
    plugin: PluginOpt = None,
) -> None:
    """Train, profile and score each (mode, architecture) pair; one table of quality beside memory."""
    from rich.markup import escape

    from . import api, render
    from .records import records_to_csv

    load_plugins(plugin)
    if resume is not None:
        if out is not None and Path(out) != resume:
            raise fail(f"--resume {resume} continues that folder; drop --out {out}", EXIT_USAGE)
        from .api import compare_resume_problem

        problem = compare_resume_problem(resume, json_path)
        if problem:
            raise fail(f"--resume {problem}", EXIT_USAGE)
        out = resume
    check_outputs(out=out, json=json_path, csv=csv_path, plot=plot)
    stop_workers_on_termination()
    selection = parse_selection(classes, per_class)
    err = _stderr()

    def on_plan(specs, n, held):
        warn_if_loaded()  # --threads applies inside each row's worker
        budget = specs[0].steps and f"{specs[0].steps} steps" or f"{specs[0].time_budget_s:g} s"
        err.print(f"comparing {len(specs)} runs ({budget} of training each, {specs[0].step.selection().label()}) and "
                  f"the real-vs-real floor; scored on {n} samples against {n} of {held} held-out images",
                  soft_wrap=True)

    def on_start(i, total, spec):
        where = f" on cores {','.join(map(str, spec.cpus))}" if spec.cpus else ""
        err.print(escape(f"[floor] real images scored as samples{where} ..." if spec.kind == "floor" else
                         f"[{i}/{total - 1}] {spec.label}{where} ..."))

    def on_reuse(rec):
        err.print(escape(f"[kept] {rec.label}: finished earlier with the same settings"))

    def on_row(rec):
        who = f"{rec.label}: " if jobs > 1 or executor == "ray" else ""  # rows may end out of order
        err.print(f"      {escape(who)}{rec.status}" + (f": {escape(rec.message)}" if rec.message else "")
                  + (f" ({rec.wall_time_s:.0f} s)" if rec.wall_time_s else ""))

    res = api.compare(list(modes or []), list(arch) if arch else None, preset=preset, out=out, json_path=json_path,
                      events=api.CompareEvents(on_plan=on_plan, on_start=on_start, on_row=on_row, on_reuse=on_reuse),
                      steps=steps, time_budget_s=time_budget,
                      batch_size=batch_size, seed=seed, data=data, device=device, n_samples=samples,
                      profile_steps=profile_steps, memory_limit_bytes=memory_limit, threads=threads,
                      hparams=parse_sets(hparam), **lever_fields(precision, checkpoint, micro_batches, channels_last),
                      **selection.to_dict(), force=force, resume=resume is not None,
                      placement=executor_options(jobs, executor, address, cpus_per_run, gpus_per_run), quick=quick)
    _stdout().print(render.compare_table(res.rows))
    if res.claims:
        _stdout().print(render.claims_table(res.claims, f"the claims of preset {preset}"))
    outputs = Outputs()
    outputs.errors += res.write_errors
    if csv_path:
        outputs.write(f"--csv {csv_path}", records_to_csv, res.rows, csv_path)
    if res.grid:
        err.print(f"sample grids side by side: {res.grid}")
    if plot:
        from .plots import compare_plot

        if outputs.write(f"--plot {plot}", compare_plot, res.rows, plot):
            err.print(f"plot: {plot}")
    if not res.write_errors:
        err.print(f"results: {res.json_path} (gonprof report re-renders them)")
    outputs.finish()
    if any(r.status == "interrupted" for r in res.rows):
        raise typer.Exit(interrupted_exit_code())
    runs = [r for r in res.rows if r.kind == "run"]
    failed = [r for r in runs if r.status != "ok"]
    if failed:
        err.print(f"[yellow]{len(failed)} of {len(runs)} runs failed[/]")
    if runs and len(failed) == len(runs):
        raise typer.Exit(EXIT_FAILURE)


@app.command()
@guarded
def score(
    samples_path: Annotated[Path, typer.Argument(metavar="SAMPLES", help="PNG grid (28x28 tiles, make_grid padding), folder of 28x28 PNGs, or .pt / .npy tensor N x 1 x 28 x 28 in [-1, 1] or [0, 1].")],
    classes: Annotated[str | None, typer.Option("--classes", help="The digits the samples should be, e.g. 0 or 0,3: scored against held-out real images of these (default: all ten).")] = None,
    samples: Annotated[int | None, typer.Option("--samples", help="N: images scored, and real images in the floor row (default: all, up to half the held-out images of the classes).")] = None,
    seed: Annotated[int, typer.Option(callback=_check_seed, help="Seeds the subsets of samples and real images (0 to 2**63-1).")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the quality records (and what was read) to this JSON file; gonprof report re-renders it.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Score images from anywhere against held-out real digits, beside the real-vs-real floor at the same N."""
    from . import api, render

    apply_threads(threads)
    check_outputs(json=json_path)
    err = _stderr()
    with err.status("scoring ..."):
        res = api.score(samples_path, classes=classes, n=samples, seed=seed)
    if res.n < res.n_read:
        err.print(f"scoring {res.n:,} of the {res.n_read:,} images (seed {seed})"
                  + ("" if samples is not None else f"; a floor at N needs 2N held-out real images, "
                                                     f"and there are {res.n_held_out:,}"), soft_wrap=True)
    _stdout().print(render.score_table(res.rows, res.source))
    if json_path:
        from .records import atomic_write

        def write_json() -> None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(json_path, json.dumps(res.to_json(), indent=2, allow_nan=True) + "\n")

        outputs = Outputs()
        outputs.write(f"--json {json_path}", write_json)
        if not outputs.errors:
            err.print(f"results: {json_path} (gonprof report re-renders them)", soft_wrap=True)
        outputs.finish()


@app.command()
@guarded
def report(
    path: Annotated[Path, typer.Argument(help="JSON written by --json (profile or compare).")],
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write the rows as CSV.")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print GitHub-flavoured Markdown tables (the same columns and rounding), under a line saying the command, machine, threads and load they were measured with.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write one self-contained HTML page (inline SVG and CSS, nothing fetched): the tables, each profile's timeline and modules at the peak, a compare file's quality / memory plot.")] = None,
    timeline: Annotated[Path | None, typer.Option("--timeline", help="Draw the profile's measuring step (live bytes by category over the step, phases, peak) to this PNG (plot extra; a file of one profile).")] = None,
) -> None:
    """Render saved results again, without re-running anything."""
    from . import api, render
    from .records import records_to_csv

    check_outputs(csv=csv_path, html=html, timeline=timeline)
    if timeline is not None:
        _one_profile(api.report(path), path)
    if markdown:
        from .render.markdown import results_markdown

        typer.echo(results_markdown(path), nl=False)
    else:
        records = api.report(path)
        preset, verdicts = api.report_claims(path, records)
        _stdout().print(render.render_any(records, preset, verdicts))
    outputs, err = Outputs(), _stderr()
    if csv_path:
        outputs.write(f"--csv {csv_path}", records_to_csv, api.report(path), csv_path)
    if html is not None:
        from .render.html import results_html

        if outputs.write(f"--html {html}", _write_text, html, results_html(path)):
            err.print(f"page: {html}", soft_wrap=True)
    if timeline is not None:
        from .plots import timeline_plot

        if outputs.write(f"--timeline {timeline}", timeline_plot, _one_profile(api.report(path), path), timeline):
            err.print(f"timeline: {timeline}", soft_wrap=True)
    outputs.finish()


def _one_profile(records: list, path: Path):
    """The one profile of a results file, for ``--timeline``; a usage error naming what the file holds else."""
    from .records import ProfileRecord

    if len(records) == 1 and isinstance(records[0], ProfileRecord):
        return records[0]
    kinds = sorted({type(r).__name__ for r in records})
    raise fail(f"--timeline draws one profile's measuring step; {path} holds {len(records)} record"
               f"{'s' if len(records) != 1 else ''} ({', '.join(kinds) or 'none'})", EXIT_USAGE)


def _write_text(path: Path, text: str) -> Path:
    """``text`` to ``path``, its missing folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _emit(obj, json_out: bool, renderer) -> None:
    """Print ``obj`` as JSON (records and lists of records) or through ``renderer``."""
    if json_out:
        from .records import to_jsonable

        typer.echo(json.dumps(to_jsonable(obj), indent=2))
    else:
        _stdout().print(renderer(obj))


def main() -> None:
    from .records.files import set_command

    set_command(["gonprof", *sys.argv[1:]])  # results files written by this command record it
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
