"""The memory views, from records built by hand (tests/memview_records.py holds the table every figure here
is computed from): the timeline and per-module views, their SVG, the self-contained HTML page (parsed), the
PNG, and the CLI options that write them; and that a record without them says so in one line."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

import memview_records as hand
from gonprof.cli import app
from gonprof.records import save_records
from gonprof.render.html import page, quality_memory_svg, results_html
from gonprof.render.timeline import NO_MODULES, NO_TIMELINE, module_bars, modules_svg, timeline_svg, timeline_view

MIB = 2**20


def test_timeline_view_stacks_the_categories_and_finds_the_peak_by_hand():
    view = timeline_view(hand.profile())
    # categories that hold any bytes, in LIVE_CATEGORIES order (buffer and replay stay 0 and are left out)
    assert [b.category for b in view.bands] == ["param", "grad", "optim", "act", "external"]
    # point 2 (op 4): param 0-4, grad and optim 4-4, act 4-10, external 10-11 MiB
    assert [(b.bottom_mib[2], b.top_mib[2]) for b in view.bands] == [(0, 4), (4, 4), (4, 4), (4, 10), (10, 11)]
    # point 4 (op 7): param 4, grad 1, optim 2, act 1, external 1: tops 4, 5, 7, 8, 9
    assert [b.top_mib[4] for b in view.bands] == [4, 5, 7, 8, 9]
    assert [b.peak_mib for b in view.bands] == [4, 0, 0, 6, 1]
    assert (view.peak_op, view.peak_mib, view.peak_time_ms, view.peak_phase) == (4, 11, 4.0, "forward")
    assert view.peak_label == "peak 11.00 MiB at op 4 (4.000 ms) in phase forward"
    assert view.x_end == 10 and view.points == 6
    assert "6 of 10 ops drawn (downsampled, the peak kept exactly)" in view.caption
    # time between points is linear: op 3 lies half-way between op 2 (2 ms) and op 4 (4 ms)
    assert view.time_at(3) == pytest.approx(3.0) and view.time_at(6) == pytest.approx(6.0)


def test_module_bars_sum_each_module_over_categories_largest_first():
    bars = module_bars(hand.profile())
    assert [(b.module, b.bytes_total) for b in bars] == [
        ("D.block", 7 * MIB), ("D.head", 3 * MIB), ("(outside modules)", 1 * MIB)]
    assert bars[0].bytes_by_category == {"act": 4 * MIB, "param": 3 * MIB}
    assert sum(b.bytes_total for b in bars) == hand.profile().live_memory.peak_live_bytes  # 11 MiB


def test_a_record_without_the_views_gives_none():
    old = hand.profile(with_views=False)
    assert timeline_view(old) is None and module_bars(old) is None


class Page(HTMLParser):
    """A parsed page: whether every element closes in order, the elements' tags, attributes and text."""

    VOID = {"meta", "br", "img", "hr", "input", "link", "source", "col", "wbr", "area", "base", "embed"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k.rstrip("_").replace("_", "-")) == v
                                                               for k, v in attrs.items())]

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def _page_of(records, tmp_path, name="r.json") -> tuple[str, Page]:
    save_records(records, tmp_path / name)
    text = results_html(tmp_path / name)
    return text, Page(text)


def _self_contained(text: str) -> None:
    assert not re.search(r"https?:|//[a-z]", text, re.I), "the page references something outside itself"
    assert "<script" not in text and "<link" not in text and " src=" not in text and "url(" not in text


def test_the_page_of_a_profile_is_well_formed_self_contained_and_has_tables_timeline_and_module_bars(tmp_path):
    text, html = _page_of([hand.profile()], tmp_path)
    assert html.errors == [] and html.stack == []
    _self_contained(text)
    captions = {c.strip() for c in re.findall(r"<caption>(.*?)</caption>", text)}
    assert {"memory (MiB = 2**20 bytes)", "parameters", "time (ms), timed steps only"} <= captions
    assert "1,048,576" in html.words  # the parameters, as the terminal shows them
    [_] = html.all("svg", class_="timeline")
    assert [a["data-category"] for a in html.all("polygon", class_="band")] == ["param", "grad", "optim", "act",
                                                                               "external"]
    assert [a["data-phase"] for a in html.all("rect", class_="phase")] == ["forward", "backward", "optimizer"]
    [peak] = html.all("g", class_="peak")
    assert (peak["data-op"], peak["data-mib"]) == ("4", "11.00")
    assert "peak 11.00 MiB at op 4 (4.000 ms) in phase forward" in html.words
    bars = html.all("g", class_="module-bar")
    assert [(b["data-module"], int(b["data-bytes"])) for b in bars] == [
        ("D.block", 7 * MIB), ("D.head", 3 * MIB), ("(outside modules)", 1 * MIB)]
    # bar lengths in proportion to the bytes: D.block's 7 MiB the full 570 px, D.head's 3 MiB 3/7 of it
    widths = [sum(float(s["width"]) for s in html.all("rect", class_="segment")[i:j]) for i, j in ((0, 2), (2, 4))]
    assert widths == pytest.approx([570.0, 570.0 * 3 / 7], abs=0.1)
    assert NO_TIMELINE not in text and NO_MODULES not in text


def test_the_page_of_an_older_record_says_what_it_lacks_in_one_line_and_keeps_the_tables(tmp_path):
    text, html = _page_of([hand.profile(with_views=False)], tmp_path)
    assert html.errors == [] and html.stack == []
    assert NO_TIMELINE in html.words and NO_MODULES in html.words
    assert not html.all("svg") and "memory (MiB = 2**20 bytes)" in text


def test_the_page_of_a_compare_file_plots_quality_against_memory(tmp_path):
    text, html = _page_of(hand.compare_rows(), tmp_path)
    assert html.errors == [] and html.stack == []
    _self_contained(text)
    runs = {a["data-label"]: a for a in html.all("g", class_="run")}
    # gan / a: 11 MiB and FID 30 beats gon / b (22 MiB, FID 40) on both: only a is Pareto-optimal
    assert {k: (int(a["data-peak-bytes"]), float(a["data-fid"]), a["data-pareto"]) for k, a in runs.items()} == {
        "gan / a": (11 * MIB, 30.0, "1"), "gon / b": (22 * MIB, 40.0, "0")}
    assert html.all("line", class_="floor") and "real-vs-real floor (N=1,000)" in html.words
    assert "gonprof compare" in text  # the compare tables


def test_the_quality_plot_is_empty_without_a_row_to_plot():
    floor, a, _ = hand.compare_rows()
    assert quality_memory_svg([floor, a.replace(quality=None)]) == ""


def test_svgs_escape_names():
    rec = hand.profile()
    odd = [m.__class__(**{**m.to_dict(), "module": 'D.<b>&"x"'}) for m in rec.live_memory.peak_modules]
    svg = modules_svg(module_bars(rec.replace(live_memory=rec.live_memory.__class__(
        **{**rec.live_memory.to_dict(), "peak_modules": odd, "timeline": rec.live_memory.timeline}))))
    assert "<b>" not in svg and "D.&lt;b&gt;&amp;&quot;x&quot;" in svg
    assert Page(timeline_svg(timeline_view(rec))).errors == []


def test_the_page_renders_without_torch(tmp_path):
    """Render never measures: the page is built in a process where importing torch fails."""
    save_records([hand.profile()], tmp_path / "p.json")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        from gonprof.records import load_records
        from gonprof.render import blocks_any
        from gonprof.render.html import page
        records = load_records({str(tmp_path / "p.json")!r})
        print(len(page(records, blocks_any(records), "t")))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and int(r.stdout) > 1000, r.stderr[-2000:]


def test_page_puts_the_summary_first_then_the_drawings_then_the_other_tables():
    from gonprof.render import blocks_any

    rec = hand.profile()
    text = page([rec], blocks_any([rec]), "t")
    assert text.index("gonprof profile: toy-mlp") < text.index('class="timeline"') < text.index("Tables") \
        < text.index("memory (MiB = 2**20 bytes)")


runner = CliRunner()


def test_report_html_and_timeline_write_the_page_and_the_png(tmp_path):
    from PIL import Image

    save_records([hand.profile()], tmp_path / "p.json")
    page_path, png = tmp_path / "out" / "r.html", tmp_path / "out" / "t.png"
    r = runner.invoke(app, ["report", str(tmp_path / "p.json"), "--html", str(page_path), "--timeline", str(png)])
    assert r.exit_code == 0, r.output
    assert Page(page_path.read_text()).all("svg", class_="timeline")
    with Image.open(png) as im:  # 11 x 4.6 inches at 120 dpi
        assert im.format == "PNG" and im.size == (1320, 552)
        assert len(im.convert("RGB").getcolors(1 << 20)) > 50  # drawn, not blank


def test_report_timeline_of_an_older_record_is_one_line_and_exit_1_and_the_page_is_still_written(tmp_path):
    save_records([hand.profile(with_views=False)], tmp_path / "old.json")
    r = runner.invoke(app, ["report", str(tmp_path / "old.json"), "--html", str(tmp_path / "r.html"),
                            "--timeline", str(tmp_path / "t.png")])
    assert r.exit_code == 1
    assert f"--timeline {tmp_path / 't.png'} not written: {NO_TIMELINE}" in " ".join(r.output.split())
    assert "Traceback" not in r.output and not (tmp_path / "t.png").exists() and (tmp_path / "r.html").exists()


def test_report_timeline_of_a_file_that_is_not_one_profile_is_a_usage_error(tmp_path):
    save_records(hand.compare_rows(), tmp_path / "c.json")
    r = runner.invoke(app, ["report", str(tmp_path / "c.json"), "--timeline", str(tmp_path / "t.png")])
    assert r.exit_code == 2 and "--timeline draws one profile's measuring step" in r.output
    assert "holds 3 records (RunRecord)" in " ".join(r.output.split())


def test_profile_timeline_with_several_architectures_is_a_usage_error_before_any_work(tmp_path):
    r = runner.invoke(app, ["profile", "--arch", "inception-*", "--timeline", str(tmp_path / "t.png")])
    assert r.exit_code == 2 and "give one --arch" in r.output and not (tmp_path / "t.png").exists()


def test_report_html_to_a_folder_is_a_usage_error(tmp_path):
    save_records([hand.profile()], tmp_path / "p.json")
    r = runner.invoke(app, ["report", str(tmp_path / "p.json"), "--html", str(tmp_path)])
    assert r.exit_code == 2 and "is a folder" in r.output


def test_axis_steps_and_tops_are_round():
    from gonprof.render.timeline import nice_ceiling, nice_step

    assert [nice_step(n) for n in (1, 10, 13, 1225, 100_000)] == [1, 2, 2, 200, 20_000]
    assert [nice_ceiling(v) for v in (0, 0.7, 11.88, 27.5, 48.29 * 1.08)] == pytest.approx([1, 0.8, 12, 30, 60])


def test_profile_timeline_draws_the_profiles_measuring_step(tmp_path, monkeypatch):
    """The option's wiring (the step itself is the api's: a hand-built record stands in for it)."""
    from gonprof import api

    monkeypatch.setattr(api, "profile", lambda *a, **k: hand.profile(arch="inception-k8"))
    png = tmp_path / "t.png"
    r = runner.invoke(app, ["profile", "--arch", "inception-k8", "--timeline", str(png), "--json",
                            str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    assert f"timeline: {png}" in " ".join(r.output.split()) and png.stat().st_size > 10_000


def test_a_timeline_without_matplotlib_is_one_line_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    save_records([hand.profile()], tmp_path / "p.json")
    for args in (["report", str(tmp_path / "p.json")], ["profile", "--arch", "inception-k8"]):
        r = runner.invoke(app, [*args, "--timeline", str(tmp_path / "t.png")])
        assert r.exit_code == 2 and r.output.strip().splitlines() == [
            'gonprof: error: --timeline needs matplotlib: pip install -e ".[plot]"'], r.output


def test_the_page_of_several_profiles_draws_each_under_its_name(tmp_path):
    text, html = _page_of([hand.profile(arch="a"), hand.profile(with_views=False, arch="b")], tmp_path)
    assert html.errors == [] and len(html.all("svg", class_="timeline")) == 1
    assert "Live memory over the measuring step — a / gan" in html.words
    assert "Live memory over the measuring step — b / gan" in html.words and NO_TIMELINE in html.words


def test_a_score_file_gets_no_quality_memory_plot(tmp_path):
    floor, a, _ = hand.compare_rows()
    text, html = _page_of([floor, a.replace(mode="score", arch="grid.png", profile=None)], tmp_path)
    assert html.errors == [] and "Quality against memory" not in text and not html.all("svg")


def test_the_module_bars_caption_counts_modules_apart_from_the_bytes_made_outside_them(tmp_path):
    _, html = _page_of([hand.profile()], tmp_path)
    # D.block 7 MiB and D.head 3 MiB are modules; the batch's 1 MiB was made outside every module
    assert "2 modules and 1.00 MiB made outside every module, 11.00 MiB in all." in html.words
