"""The ``gonprof`` command line: thin Typer commands over :mod:`gonprof.api`.

Results go to stdout, diagnostics and progress to stderr.  Exit codes:
0 success, 1 a run or data failure, 2 a usage error (unknown name, bad shape,
incompatible choice), 130 interrupted.

This module must not import torch at import time: ``gonprof --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from . import __version__

app = typer.Typer(
    name="gonprof",
    help="Profile the memory, compute and time of GAN and GON discriminators, beside the sample quality they buy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

PluginOpt = Annotated[
    Optional[List[Path]],
    typer.Option("--plugin", help="Python file that registers architectures or modes (repeatable).",
                 exists=False, dir_okay=False),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout():
    from rich.console import Console

    return Console(highlight=False)


def fail(message: str, code: int = EXIT_FAILURE) -> "typer.Exit":
    """Print one line to stderr and return the Exit to raise."""
    _stderr().print(f"[bold red]gonprof: error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def _usage_errors() -> tuple[type, ...]:
    from .arch import ShapeError
    from .modes.base import IncompatibleError
    from .registry import RegistryError

    return (RegistryError, ShapeError, IncompatibleError)


def _run_errors() -> tuple[type, ...]:
    errors: list[type] = []
    from .data import DataError

    errors.append(DataError)
    try:
        from .train import TrainError

        errors.append(TrainError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def guarded(fn):
    """Turn the project's known errors into one line and a meaningful exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            raise fail("interrupted", EXIT_INTERRUPTED) from None
        except Exception as exc:
            if isinstance(exc, _usage_errors()):
                raise fail(str(exc), EXIT_USAGE) from None
            if isinstance(exc, _run_errors()):
                raise fail(str(exc), EXIT_FAILURE) from None
            if os.environ.get("GONPROF_DEBUG"):
                raise
            raise fail(f"unexpected {type(exc).__name__}: {exc} (set GONPROF_DEBUG=1 for a traceback)") from None

    return wrapper


def load_plugins(paths: Optional[List[Path]]) -> None:
    from .registry import load_plugin_file

    for path in paths or ():
        load_plugin_file(path)


def parse_shape(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise fail(f"--input-shape must be C,H,W with three positive integers (e.g. 1,28,28), got {text!r}",
                   EXIT_USAGE)
    return shape  # type: ignore[return-value]


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
    pattern: Annotated[Optional[str], typer.Argument(help="Glob (inception-*) or substring to filter names.")] = None,
    role: Annotated[Optional[str], typer.Option(help="discriminator or generator.")] = None,
    modes: Annotated[bool, typer.Option("--modes", help="List training modes instead of architectures.")] = False,
    json_out: JsonFlag = False,
    plugin: PluginOpt = None,
) -> None:
    """List registered architectures (or training modes) with their parameter counts."""
    from . import api, render

    load_plugins(plugin)
    if modes:
        rows = api.list_modes(pattern)
        _emit(rows, json_out, render.modes_table)
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
    arch: Annotated[str, typer.Option("--arch", help="Architecture name (see `gonprof list`).")],
    input_shape: Annotated[Optional[str], typer.Option("--input-shape", help="C,H,W; default: the architecture's own.")] = None,
    json_out: JsonFlag = False,
    plugin: PluginOpt = None,
) -> None:
    """Per-layer table of an architecture: output shape, parameters, forward FLOPs."""
    from . import api, render

    load_plugins(plugin)
    report = api.describe(arch, parse_shape(input_shape))
    _emit(report, json_out, render.describe)


def _emit(obj, json_out: bool, renderer) -> None:
    """Print ``obj`` as JSON (records and lists of records) or through ``renderer``."""
    if json_out:
        typer.echo(json.dumps(_jsonable(obj), indent=2))
    else:
        _stdout().print(renderer(obj))


def _jsonable(obj):
    if isinstance(obj, list):
        return [_jsonable(o) for o in obj]
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return obj


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
