"""mkdocs hook: every measured table in the docs comes from a results file under docs/results/.

A page writes a marker, on a line of its own, where a table belongs::

    <!-- results: gas.json -->
    <!-- results: gas.json | gonprof compare --preset gas --threads 1 --json docs/results/gas.json -->

and the build replaces it with a link to the file and what ``gonprof report docs/results/gas.json --markdown``
prints: a line
giving the command, date, machine, torch threads and load average the file records, then its tables
(claims included), with the terminal's columns and rounding.  A file not committed yet becomes a
"not measured yet" note naming the command after the ``|`` that would make it, so a page can wait for a
long run without failing ``mkdocs build --strict``; a file that is there but cannot be read fails the build.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

#: A marker on a line of its own (so that one quoted inside a sentence or code span stays as it is).
MARKER = re.compile(r"^<!--\s*results:\s*(?P<name>[\w.\-/]+?)\s*(?:\|\s*(?P<command>.*?)\s*)?-->[ \t]*$", re.M)

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # this checkout's gonprof renders its own results files
    sys.path.insert(0, str(_ROOT))


def render_marker(name: str, command: str | None, results_dir: Path) -> str:
    """The Markdown a marker becomes: the file's rendering, or a note that it is not measured yet."""
    from gonprof.render.markdown import results_markdown

    path = results_dir / name
    if not path.is_file():
        how = f" `{command}` makes it." if command else ""
        return (f'!!! note "Not measured yet"\n\n    `docs/results/{name}` is not in this checkout yet.{how}\n')
    return f"From [`docs/results/{name}`](results/{name}):\n\n" + results_markdown(path)


def expand(markdown: str, results_dir: Path) -> str:
    """``markdown`` with every results marker replaced (see the module's docstring)."""
    return MARKER.sub(lambda m: render_marker(m["name"], m["command"], results_dir), markdown)


#: Sphinx roles in the docstrings the API reference shows (``:func:`x```): the code span stays, the role goes.
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(?=<code>)")


def on_page_markdown(markdown: str, page, config, files) -> str:  # mkdocs's hook signature
    return expand(markdown, Path(config["docs_dir"]) / "results")


def on_page_content(html: str, page, config, files) -> str:
    return _ROLE.sub("", html)
