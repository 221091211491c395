"""The import contract: gonprof's modules form layers, and each imports only from its own layer or below.

Every ``import`` and ``from ... import`` statement of every module is read (those
inside functions too, since a lazy import is still a dependency), relative names
resolved.  A module missing from LAYERS fails the test, so a new module has to be
placed before it lands.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first.  A module may import modules of its own layer or of any layer below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core: records and registries, no torch",
     ("gonprof._version", "gonprof._lazy", "gonprof.registry", "gonprof.records", "gonprof.cores", "gonprof.arch",
      "gonprof.claims", "gonprof.summary", "gonprof.stops")),
    ("instruments and data: know torch, not modes",
     ("gonprof.data", "gonprof.sample_io", "gonprof.measure", "gonprof.metrics", "gonprof.architectures")),
    ("modes and the request", ("gonprof.modes", "gonprof.request", "gonprof.levers")),
    ("profiler and runner", ("gonprof.profiler", "gonprof.runner", "gonprof.ddp")),
    ("workflows", ("gonprof.isolation", "gonprof.executors", "gonprof.estimate", "gonprof.guard", "gonprof.budget",
                   "gonprof.budget_worker", "gonprof.comparison", "gonprof.lever_table", "gonprof.train",
                   "gonprof.distributed")),
    ("api", ("gonprof.api",)),
    ("presentation", ("gonprof.render", "gonprof.plots", "gonprof.progress")),
    ("entry points", ("gonprof.cli", "gonprof.worker", "gonprof")),
]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise KeyError(module)
    return best


def modules() -> dict[str, Path]:
    found = {}
    for base, pkg in ((ROOT / "gonprof", "gonprof"), (ROOT / "architectures", "gonprof.architectures")):
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([pkg, *parts])] = path
    return found


def imports_of(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported gonprof module, line) for every import statement in the file."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "gonprof"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gonprof":
                continue
            if node.module is None:
                # "from . import x" / "from gonprof import x": the names are submodules or attributes of target
                out += [(f"{target}.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((target, node.lineno))
    return out


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The module a name refers to: itself, or its longest prefix that is a module (an attribute import)."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def test_every_module_has_a_layer():
    missing = [m for m in modules() if _try_layer(m) is None]
    assert not missing, f"place these modules in tests/test_layers.py LAYERS: {missing}"


def _try_layer(m):
    try:
        return layer_of(m)
    except KeyError:
        return None


ALL = modules()


@pytest.mark.parametrize("module", sorted(ALL))
def test_imports_only_downward(module):
    mine = layer_of(module)
    upward = []
    for name, line in imports_of(module, ALL[module]):
        target = _resolve(name, ALL)  # "import gonprof" itself counts as the top layer (its lazy facade)
        theirs = layer_of(target)
        if theirs > mine:
            upward.append(f"line {line}: {target} ({LAYERS[theirs][0]})")
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports upward: " + "; ".join(upward)


def test_the_checker_catches_an_upward_import(tmp_path):
    # a layer-1 module importing the CLI must be reported
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from ..cli import app\n")
    found = [(_resolve(n, ALL), ln) for n, ln in imports_of("gonprof.measure.x", fake)]
    assert found == [("gonprof.cli", 2)]
    assert layer_of("gonprof.cli") > layer_of("gonprof.measure.x")
