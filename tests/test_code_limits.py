"""The house rules the type checker and linter do not enforce: no function in gonprof/ takes more than 10
parameters or has a body over 80 lines, and cli.py imports nothing below the api but render, records and
the other front-end modules.

Exempt by design: the Typer commands in cli.py (one parameter per option, as Typer needs) and the
embeddable :class:`gonprof.profiler.Profiler`'s constructor (a public options list, as
``torch.profiler.profile``'s).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gonprof"
MAX_PARAMS = 10
MAX_BODY_LINES = 80
EXEMPT = {("profiler.py", "Profiler.__init__")}


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> int:
    a = fn.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    n = len(names) + (a.vararg is not None) + (a.kwarg is not None)
    if in_class and names and names[0].arg in ("self", "cls"):
        n -= 1
    return n


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    first = body[0]
    if len(body) > 1 and isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        first = body[1]  # the docstring does not count
    return (fn.end_lineno or fn.lineno) - first.lineno + 1


def _is_typer_command(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Attribute) and target.attr in ("command", "callback"):
            return True
    return False


def _functions(path: Path):
    tree = ast.parse(path.read_text())

    def walk(node: ast.AST, owner: str, in_class: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                yield from walk(child, f"{owner}{child.name}.", True)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{owner}{child.name}", child, in_class
                yield from walk(child, f"{owner}{child.name}.", False)
            else:
                yield from walk(child, owner, in_class)

    yield from walk(tree, "", False)


def offenders() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for name, fn, in_class in _functions(path):
            if (rel, name) in EXEMPT or (rel == "cli.py" and _is_typer_command(fn)):
                continue
            n, lines = _params(fn, in_class), _body_lines(fn)
            if n > MAX_PARAMS or lines > MAX_BODY_LINES:
                found.append(f"{rel}:{fn.lineno} {name}: {n} parameters, {lines} lines")
    return found


def test_no_function_is_beyond_the_limits():
    assert offenders() == []


def test_the_limits_checker_sees_a_long_and_a_wide_function(tmp_path):
    # the checker itself: a function of 11 parameters and one of 81 body lines are both reported
    pkg = tmp_path / "gonprof"
    pkg.mkdir()
    args = ", ".join(f"a{i}" for i in range(11))
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    (pkg / "m.py").write_text(f"def wide({args}):\n    pass\n\n\ndef long():\n    \"\"\"Doc.\"\"\"\n{body}\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, pkg
    try:
        got = offenders()
    finally:
        PACKAGE = saved
    assert got == ["m.py:1 wide: 11 parameters, 1 lines", "m.py:5 long: 0 parameters, 81 lines"]


#: What cli.py may import from the package: the api (and its exceptions), render, records, and the
#: front-end modules beside it that neither build nor run steps.
CLI_MAY_IMPORT = {"api", "render", "records", "plots", "progress", "_version"}


@pytest.mark.parametrize("path", [PACKAGE / "cli.py"], ids=["cli.py"])
def test_cli_imports_no_workflow_mode_or_instrument(path):
    tree = ast.parse(path.read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            if node.module:
                used.add(node.module.split(".")[0])
            else:
                used.update(a.name for a in node.names)
    assert used - CLI_MAY_IMPORT == set()
