"""Rendering, plots and progress on their own: every record kind the tool writes renders from its JSON,
the numbers in it appear whole, and rendering never measures (it runs with torch made unimportable)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from gonprof import api, render
from gonprof.progress import RichProgress, format_losses
from gonprof.records import load_records, save_records


def _text(renderable, width: int = 160) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(renderable)
    return buf.getvalue()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, one_thread):
    """One small record of every kind, measured once and saved as the CLI saves them."""
    d = tmp_path_factory.mktemp("records")
    prof = api.profile("inception-k8", batch_size=4, warmup=1, steps=2)
    save_records([prof], d / "profile.json")
    est, _ = api.estimate("inception-k8", batch_size=4, measure=False)
    save_records([est], d / "estimate.json")
    fit = api.fit("inception-k8", memory="64MiB", estimate=True, max_batch=64)
    save_records([fit], d / "fit.json")
    scl = api.scaling("inception-k8", batch_sizes=[1, 2, 4], estimate=True)
    save_records([scl], d / "scaling.json")
    rows = api.compare(["gan"], ["mlp-gan"], out=d / "cmp", steps=1, batch_size=8, n_samples=20, profile_steps=1,
                       placement=api.Placement("inline"))
    return {"dir": d, "profile": prof, "estimate": est, "fit": fit, "scaling": scl, "compare": list(rows)}


@pytest.mark.parametrize("kind", ["profile", "estimate", "fit", "scaling"])
def test_every_record_kind_renders_from_its_file(saved, kind):
    path = saved["dir"] / (f"{kind}.json")
    text = _text(render.render_any(load_records(path)))
    rec = saved[kind]
    if kind == "profile":
        assert "inception-k8" in text and render.format_flops(rec.flops_per_step) in text
        assert "13,857" in text  # the discriminator's parameters
    elif kind == "estimate":
        assert f"{rec.peak_live_bytes / 2**20:,.2f}" in text and "peak live tensors" in text  # MiB column
    elif kind == "fit":
        assert str(rec.batch_size) in text
    else:
        assert all(str(p.batch_size) in text for p in rec.points)


def test_compare_rows_render_from_their_file_with_the_floor_and_pareto_marks(saved):
    rows = load_records(saved["dir"] / "cmp" / "results.json")
    assert rows == saved["compare"]
    text = _text(render.render_any(rows))
    assert "real (floor)" in text and "gan / mlp-gan" in text and "1,460,225" in text
    assert f"{rows[1].quality.fid:,.2f}" in text and "*" in text


def test_compare_shows_fid_before_refinement_and_test_error_only_for_rows_that_have_them(saved):
    rows = load_records(saved["dir"] / "cmp" / "results.json")
    plain = _text(render.render_any(rows), width=250)
    assert "FID before refinement" not in plain and "test error" not in plain
    run = rows[1]
    dcd = run.replace(variant="pixel", quality_unrefined=run.quality.replace(fid=432.5))
    igan = run.replace(variant="labels-100", test_error_fraction=0.0433, n_test_images=5000)
    text = _text(render.render_any([rows[0], dcd, igan]), width=250)
    assert "FID before refinement" in text and "432.50" in text  # the unrefined FID of the dcd row
    assert "test error (%)" in text and "4.33" in text  # 0.0433 as a percentage


def test_rendering_never_measures(saved):
    """Every renderer runs in a process where importing torch fails: what it shows it only reads."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        from rich.console import Console
        from gonprof import render
        from gonprof.records import load_records
        out = Console(file=open("/dev/null", "w"), width=120)
        for name in ("profile", "estimate", "fit", "scaling", "cmp/results"):
            out.print(render.render_any(load_records({str(saved["dir"])!r} + "/" + name + ".json")))
        print("rendered")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "rendered", r.stderr[-2000:]


def test_plots_write_pngs(saved, tmp_path):
    pytest.importorskip("matplotlib")  # the plot extra (part of dev)
    from gonprof.plots import compare_plot, fit_plot

    for path in (compare_plot(saved["compare"], tmp_path / "c.png"), fit_plot(saved["fit"], tmp_path / "f.png")):
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_plain_lines_when_not_a_terminal():
    buf = io.StringIO()
    p = RichProgress(Console(file=buf, width=100, color_system=None), plain_every_s=0)
    p.start(None, 0, "gon-mnist-mlp gon")  # a time-bounded run: no total
    p.update(1, {"d_loss": 0.25, "inner_iters": 400.0})
    p.note("grid written")
    text = buf.getvalue()
    assert "step 0/?" in text and "d_loss=0.25" in text and "grid written" in text
    buf2 = io.StringIO()
    p2 = RichProgress(Console(file=buf2, width=100, color_system=None), plain_every_s=0)
    p2.start(10, 3, "resumed")
    p2.update(4, {"d_loss": float("nan")})
    assert "step 3/10" in buf2.getvalue() and "d_loss=nan" in buf2.getvalue()


def test_format_losses():
    assert format_losses({"a": 0.123456, "b": None, "c": float("inf")}) == "a=0.1235 b=None c=inf"


def test_score_rows_render_with_the_score_table(tmp_path, saved):
    floor, run = saved["compare"][0], saved["compare"][1].replace(mode="score", arch="grid.png", profile=None)
    save_records([floor, run], tmp_path / "s.json")
    text = _text(render.render_any(load_records(tmp_path / "s.json")))
    assert "gonprof score" in text and "predicted" in text


def test_saved_json_is_strict_enough_to_reload(saved):
    for name in ("profile", "estimate", "fit", "scaling"):
        payload = json.loads((saved["dir"] / f"{name}.json").read_text())
        assert payload["records"] and payload["kind"]


_NUM = __import__("re").compile(r"\d[\d,]*(?:\.\d+)?")


def _numbers(text: str) -> set[str]:
    return set(_NUM.findall(text))


def _fitted(renderable, width: int) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None)
    console.print(render.fit_width(renderable, console))
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_every_table_keeps_every_number_whole_at_narrow_widths(saved, width):
    """Each table kind, rendered at 80 and 120 columns, shows every number the 300-column rendering shows
    (tables that cannot fit drop descriptive columns, then turn into one block per row)."""
    kinds = {
        "list": lambda: render.architectures_table(api.list_architectures()),
        "profile": lambda: render.render_any([saved["profile"]]),
        "profiles": lambda: render.render_records([saved["profile"], saved["profile"]]),
        "compare": lambda: render.compare_table(saved["compare"]),
        "estimate": lambda: render.render_estimate(saved["estimate"]),
        "fit": lambda: render.render_fit(saved["fit"]),
        "scaling": lambda: render.render_scaling(saved["scaling"]),
    }
    def descriptive_numbers(r) -> set[str]:
        """Numbers in the columns a narrow terminal may drop (render.DESCRIPTIVE: sources, shapes)."""
        from rich.console import Group
        from rich.table import Table

        if isinstance(r, Group):
            return set().union(*(descriptive_numbers(x) for x in r.renderables)) if r.renderables else set()
        if isinstance(r, Table):
            return {n for c in r.columns if render.width._plain(c.header) in render.DESCRIPTIVE
                    for cell in c._cells for n in _numbers(render.width._plain(cell))}
        return set()

    for kind, make in kinds.items():
        wide = _numbers(_fitted(make(), 300)) - descriptive_numbers(make())
        narrow = _fitted(make(), width)
        missing = wide - _numbers(narrow)
        assert not missing, f"{kind} at {width} columns cuts {sorted(missing)[:8]}"
        assert max(len(line) for line in narrow.splitlines()) <= width, kind
