"""The docs cannot drift: every results file under docs/results/ renders to Markdown, `gonprof report --markdown`
draws the terminal's tables (the same columns and cells), the pages show exactly what it prints, results files
record the command that wrote them, and the site builds with `mkdocs build --strict`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Group
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from gonprof import api, render
from gonprof.cli import app
from gonprof.records import RunRecord, load_extra, load_records, save_records, set_command
from gonprof.render.markdown import provenance_markdown, results_markdown
from gonprof.render.sheet import Sheet, md_escape

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = sorted((DOCS / "results").glob("*.json"))
runner = CliRunner()


def _hook():
    spec = importlib.util.spec_from_file_location("docs_results_hook", DOCS / "hooks" / "results.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- reading Markdown tables back -------------------------------------------------------

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _unescape(cell: str) -> str:
    cell = cell.strip().replace("<br>", "\n").replace("&lt;", "<")
    cell = re.sub(r"^((?:&nbsp;)+)", lambda m: " " * (len(m[1]) // len("&nbsp;")), cell)
    return re.sub(r"\\(.)", r"\1", cell)


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """(headers, rows of cells) of every table in ``text``, cells unescaped to plain text."""
    def cells(row: str) -> list[str]:
        return [_unescape(c) for c in _CELL_SPLIT.split(row)[1:-1]]

    lines = text.splitlines()
    tables = []
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and re.fullmatch(r"\|(?:-{3}:?\|)+", lines[i + 1]):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("| "):
                    break
                rows.append(cells(row))
            tables.append((cells(line), rows))
    return tables


def terminal_tables(renderable) -> list[tuple[list[str], list[list[str]]]]:
    """(headers, rows of plain cells) of every rich Table the terminal would print, in order."""
    if isinstance(renderable, Group):
        return [t for r in renderable.renderables for t in terminal_tables(r)]
    if not isinstance(renderable, Table):
        return []

    def plain(c) -> str:
        return c.plain if isinstance(c, Text) else Text.from_markup(str(c)).plain

    rows = [[plain(col._cells[i]) for col in renderable.columns] for i in range(renderable.row_count)]
    return [([plain(c.header) for c in renderable.columns], rows)]


def _report_markdown(path: Path) -> str:
    res = runner.invoke(app, ["report", str(path), "--markdown"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return res.stdout


# -- the results files --------------------------------------------------------------------

def test_the_docs_hold_profile_compare_and_claims_results():
    kinds = {json.loads(p.read_text())["kind"] for p in RESULTS}
    assert {"profile", "compare"} <= kinds
    assert any(json.loads(p.read_text()).get("claims") for p in RESULTS), "no results file of a preset's claims"


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_every_results_file_renders_to_markdown_with_where_it_was_measured(path):
    records = load_records(path)
    extra = load_extra(path)
    text = results_markdown(path)
    assert text.startswith("Measured with ")
    assert extra.get("command"), f"{path.name} does not record the command that wrote it"
    assert f"`{shlex.join(extra['command'])}`" in text
    assert extra["written_utc"][:10] in text
    preset, verdicts = api.report_claims(path, records)
    sheets = [b for b in render.blocks_any(records, preset, verdicts) if isinstance(b, Sheet)]
    assert [h for h, _ in markdown_tables(text)] == [s.headers for s in sheets]
    if any(getattr(r, "environment", None) or getattr(r, "profile", None) or getattr(r, "ranks", None)
           for r in records):
        assert "torch thread" in text and "load average" in text


@pytest.mark.parametrize("name", ["profile-inception.json", "profile-inception-k32.json", "compare-gan-lsgan.json",
                                  "gon-quick.json"])
def test_report_markdown_draws_the_terminals_columns_and_cells(name):
    """`report --markdown` against the tables `report` prints: the same headers, the same cells, in order
    (profile tables, compare's cost and quality tables, a preset's claims table)."""
    path = DOCS / "results" / name
    records = api.report(path)
    preset, verdicts = api.report_claims(path, records)
    terminal = terminal_tables(render.render_any(records, preset, verdicts))
    markdown = markdown_tables(_report_markdown(path))
    assert terminal and len(markdown) == len(terminal)
    for (md_head, md_rows), (tty_head, tty_rows) in zip(markdown, terminal):
        assert md_head == tty_head
        assert md_rows == tty_rows
    if isinstance(records[0], RunRecord) and verdicts:
        assert markdown[-1][0][:4] == ["claim", "source figure", "measured here", "verdict"]


def test_a_page_shows_what_report_markdown_prints():
    hook = _hook()
    for path in RESULTS:
        page = hook.expand(f"before\n\n<!-- results: {path.name} -->\n\nafter\n", DOCS / "results")
        link = f"From [`docs/results/{path.name}`](results/{path.name}):\n\n"
        assert page == f"before\n\n{link}{_report_markdown(path)}\n\nafter\n"


def test_a_missing_results_file_is_a_note_and_a_marker_inside_a_sentence_stays():
    hook = _hook()
    page = hook.expand("<!-- results: not-yet.json | gonprof compare --preset gas --json x.json -->\n",
                       DOCS / "results")
    assert page.startswith('!!! note "Not measured yet"') and "`gonprof compare --preset gas --json x.json`" in page
    quoted = "a marker, `<!-- results: profile-inception.json -->`, quoted in a sentence\n"
    assert hook.expand(quoted, DOCS / "results") == quoted


# -- the command a results file records ---------------------------------------------------

def test_results_files_record_the_command_that_wrote_them(tmp_path, monkeypatch):
    """`gonprof.cli.main` names its argv; every results file written then carries it, with the time."""
    from gonprof.cli import main

    out = tmp_path / "estimate.json"
    argv = ["gonprof", "profile", "--arch", "inception-k8", "--batch-size", "2", "--estimate", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/gonprof", *argv[1:]])
    try:
        with pytest.raises(SystemExit) as stop:
            main()
        assert stop.value.code in (0, None)
    finally:
        set_command(None)
    extra = load_extra(out)
    assert extra["command"] == argv
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", extra["written_utc"])
    assert "`gonprof profile --arch inception-k8 --batch-size 2 --estimate --json" in results_markdown(out)


def test_a_file_written_through_the_api_says_it_does_not_record_its_command(tmp_path):
    rec = load_records(DOCS / "results" / "profile-inception-k32.json")[0]
    save_records([rec], tmp_path / "api.json")
    extra = load_extra(tmp_path / "api.json")
    assert "command" not in extra and "written_utc" in extra
    line = provenance_markdown([rec], extra)
    assert line.startswith("Measured with a command the file does not record")
    assert f"{rec.environment.torch_threads} torch thread" in line


def test_markdown_cells_are_literal():
    sheet = Sheet(title="t_1 *x*")
    sheet.add_column("a|b")
    sheet.add_column("n (MiB)", "right")
    sheet.add_row("  nested_name", "1,024.00")
    sheet.add_row("two\nlines `code` <tag> [x]", "-")
    text = sheet.to_markdown()
    assert text.splitlines()[:4] == ["**t\\_1 \\*x\\***", "", "| a\\|b | n (MiB) |", "|---|---:|"]
    assert "| &nbsp;&nbsp;nested\\_name | 1,024.00 |" in text
    assert md_escape("two\nlines `code` <tag> [x]") == "two<br>lines \\`code\\` &lt;tag> \\[x\\]"
    assert markdown_tables(text) == [(["a|b", "n (MiB)"], [["  nested_name", "1,024.00"],
                                                          ["two\nlines `code` <tag> [x]", "-"]])]


# -- the site ----------------------------------------------------------------------------

def test_the_site_builds_strictly_offline_with_every_results_table(tmp_path):
    pytest.importorskip("mkdocs")  # the docs extra (part of dev)
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    pages = {p: p.read_text() for p in site.rglob("*.html")}
    # every marker whose file exists renders once, with the command that wrote the file
    shown = sum(len(re.findall(r"Measured with <code>gonprof ", text)) for text in pages.values())
    marker_list = [m for page in DOCS.glob("*.md")
                   for m in re.findall(r"^<!-- results: ([\w.\-]+)", page.read_text(), re.M)]
    markers = set(marker_list)
    # the full-budget runs still to come, each a "not measured yet" note with its command until its file lands
    to_come = {"gas.json", "dcd.json", "improved-gan.json"}
    assert markers <= {p.name for p in RESULTS} | to_come
    assert shown == len([m for m in marker_list if m in {p.name for p in RESULTS}])
    # and each rendered table names its file: the page that holds the marker links to it
    for page in DOCS.glob("*.md"):
        html = pages.get(site / page.stem / "index.html") or pages.get(site / "index.html", "")
        for name in re.findall(r"^<!-- results: ([\w.\-]+)", page.read_text(), re.M):
            if name in {p.name for p in RESULTS}:
                assert f'results/{name}"' in html, f"{page.name}: no link to docs/results/{name}"


def test_the_readme_is_a_front_door_with_the_two_setup_commands_first():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 300
    start = readme.index("```bash")
    assert start < 20
    first_block = readme[start + 1:readme.index("```", start + 1)]
    assert first_block == ['pip install -e ".[dev]"', "pytest"]
    links = re.findall(r"\]\((docs/[\w\-./]+\.md)(?:#[\w\-]+)?\)", "\n".join(readme))
    assert links and all((ROOT / link).is_file() for link in links)
