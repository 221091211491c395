"""A results file as one self-contained HTML page: what ``gonprof report FILE --html PAGE`` writes.

The page holds everything inline (CSS in a ``<style>``, drawings as ``<svg>`` elements written by
:mod:`.timeline` and here), references nothing outside itself (no network, no CDN, no script), and reads the
same in any browser offline.  It shows, from the file and nothing else (render never measures):

- the line saying where and how the file was measured (as ``--markdown`` shows it);
- every table ``gonprof report`` prints, the same columns and rounding (:meth:`.sheet.Sheet.to_html`);
- for each profile: the measuring step's live bytes over the step by category, phases shaded, the peak
  marked (:func:`.timeline.timeline_svg`), and each module's bytes at the peak (:func:`.timeline.modules_svg`);
  where the record predates them, one line saying so;
- for a compare file: FID against peak memory, Pareto-optimal rows marked (:func:`quality_memory_svg`).
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any

from gonprof.records import ProfileRecord, RunRecord, pareto_front, peak_memory_bytes

from .sheet import Note, Sheet, html_text
from .timeline import (
    MIB,
    NO_MODULES,
    OUTSIDE,
    _num,
    el,
    label,
    missing_timeline,
    module_bars,
    modules_svg,
    nice_ceiling,
    timeline_svg,
    timeline_view,
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1180px;
       color: #1d1d1f; background: #fff; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 4px; } h2 { font-size: 1.2em; margin-top: 28px; }
p.provenance { color: #555; font-size: 0.9em; }
table.sheet { border-collapse: collapse; margin: 14px 0; font-size: 0.9em; }
table.sheet caption { font-weight: bold; text-align: left; padding: 4px 0; }
table.sheet th, table.sheet td { border-bottom: 1px solid #e2e4e8; padding: 3px 10px; vertical-align: top; }
table.sheet th { background: #f3f4f6; text-align: left; }
table.sheet td:first-child { white-space: nowrap; }
div.scroll { overflow-x: auto; }
table.sheet .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sheet tr.section td { border-top: 2px solid #999; }
table.sheet tr.dim td { color: #777; }
p.caption { color: #555; font-size: 0.85em; margin-top: -8px; }
div.note { margin: 10px 0; padding: 6px 12px; border-left: 4px solid #bbb; background: #f7f7f7; }
div.note.yellow { border-color: #e0a800; background: #fff8e1; }
div.note p { margin: 4px 0; }
figure { margin: 12px 0 20px; } figcaption { color: #555; font-size: 0.85em; }
svg { max-width: 100%; height: auto; display: block; }
p.missing { color: #8a6d00; }
"""


def page(records: list[Any], blocks: list[Sheet | Note], title: str, provenance: str = "") -> str:
    """The page: ``title``, the ``provenance`` line, the first table (a profile's summary), the drawings of
    each profile in ``records`` (or the quality / memory plot of compare rows), then the other tables."""
    head = blocks[:1]
    rest = blocks[1:]
    body = [f"<h1>{html_text(title)}</h1>"]
    if provenance:
        body.append(f'<p class="provenance">{provenance}</p>')
    body += [_block(b) for b in head]
    body += figures(records)
    if rest:
        body.append("<h2>Tables</h2>")
        body += [_block(b) for b in rest]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def _block(block: Sheet | Note) -> str:
    """A table in a box that scrolls sideways where the page is narrower than it; a note as it is."""
    return f'<div class="scroll">{block.to_html()}</div>' if isinstance(block, Sheet) else block.to_html()


def figures(records: list[Any]) -> list[str]:
    """The drawings of ``records``: per profile the timeline and the modules at the peak; for compare rows
    the quality / memory plot."""
    out: list[str] = []
    profiles = [r for r in records if isinstance(r, ProfileRecord)]
    for rec in profiles:
        name = f" — {rec.arch}" + (f" / {rec.mode}" if rec.mode else "") if len(profiles) > 1 else ""
        out += profile_figures(rec, name)
    rows = [r for r in records if isinstance(r, RunRecord)]
    if any(r.profile is not None for r in rows):  # compare rows (score rows measure no memory)
        out.append("<h2>Quality against memory</h2>")
        svg = quality_memory_svg(rows)
        out.append(f"<figure>{svg}<figcaption>FID in gonprof's MNIST feature space (lower is better) against the "
                   "tensor-level peak of a profiled step; * Pareto-optimal: no other row has both less memory and "
                   "a lower FID.</figcaption></figure>" if svg else
                   '<p class="missing">no row has both a quality and a memory figure to plot</p>')
    return out


def profile_figures(rec: ProfileRecord, name: str = "") -> list[str]:
    """A profile's timeline and its modules at the peak, each a figure, or the line saying it is missing."""
    out = [f"<h2>Live memory over the measuring step{html_text(name)}</h2>"]
    view = timeline_view(rec)
    if view is None:
        out.append(f'<p class="missing">{html_text(missing_timeline(rec))}</p>')
    else:
        out.append(f"<figure>{timeline_svg(view)}<figcaption>{html_text(view.caption)}; "
                   f"{html_text(view.peak_label)}.</figcaption></figure>")
    out.append(f"<h2>Modules at the peak{html_text(name)}</h2>")
    bars = module_bars(rec)
    if bars is None:
        out.append(f'<p class="missing">{NO_MODULES}</p>')
    else:
        total = sum(b.bytes_total for b in bars)
        outside = sum(b.bytes_total for b in bars if b.module == OUTSIDE)
        modules = sum(1 for b in bars if b.module != OUTSIDE)
        out.append(f"<figure>{modules_svg(bars)}<figcaption>bytes live at the peak by the module whose forward or "
                   f"backward made them (parameters by the module that owns them), stacked by category; "
                   f"{modules} modules and {outside / MIB:,.2f} MiB made outside every module, "
                   f"{total / MIB:,.2f} MiB in all.</figcaption></figure>")
    return out


def quality_memory_svg(rows: list[RunRecord], width: int = 760, height: int = 420) -> str:
    """FID against peak live memory (MiB) of compare rows as one ``<svg>``: Pareto-optimal rows as stars, the
    others as dots, each labelled; the real-vs-real floor as a dashed line.  "" when no row has both."""
    front = pareto_front(rows)
    pts = [(i, r, m, r.quality.fid) for i, r in enumerate(rows)
           if r.kind == "run" and r.quality is not None and (m := peak_memory_bytes(r)) is not None]
    if not pts:
        return ""
    floor = next((r.quality for r in rows if r.kind == "floor" and r.quality is not None), None)
    left, right, top, bottom = 64, 24, 24, 52
    pw, ph = width - left - right, height - top - bottom
    xmax = nice_ceiling(max(p[2] for p in pts) / MIB * 1.1)
    ymax = nice_ceiling(max([p[3] for p in pts] + ([floor.fid] if floor else [])) * 1.1)

    def x(v: float) -> float:
        return left + pw * v / xmax

    def y(v: float) -> float:
        return top + ph * (1 - v / ymax)

    parts = [el("line", x1=left, y1=top + ph, x2=left + pw, y2=top + ph, stroke="#333"),
             el("line", x1=left, y1=top, x2=left, y2=top + ph, stroke="#333")]
    for k in range(5):
        parts.append(label(x(xmax * k / 4), top + ph + 16, f"{xmax * k / 4:,.4g}", text_anchor="middle")
                     + label(left - 6, y(ymax * k / 4) + 4, f"{ymax * k / 4:,.4g}", text_anchor="end"))
    parts.append(label(left + pw / 2, height - 12, "peak live tensor memory per step (MiB)", 12, text_anchor="middle")
                 + label(14, top + ph / 2, "FID (lower is better)", 12, text_anchor="middle",
                         transform=f"rotate(-90 14 {_num(top + ph / 2)})"))
    if floor is not None:
        parts.append(el("line", class_="floor", x1=left, y1=y(floor.fid), x2=left + pw, y2=y(floor.fid),
                        stroke="#888", stroke_dasharray="5 4")
                     + label(left + 4, y(floor.fid) - 4, f"real-vs-real floor (N={floor.n_samples:,})", fill="#555"))
    for i, r, mem, fid in pts:
        cx, cy = x(mem / MIB), y(fid)
        mark = (el("polygon", points=_star(cx, cy), fill="#D55E00") if i in front else
                el("circle", cx=cx, cy=cy, r=5, fill="#0072B2"))
        tip = el("title", escape(f"{r.label}: {mem / MIB:,.2f} MiB, FID {fid:,.2f}"))
        parts.append(el("g", mark + tip + label(cx + 8, cy - 6, r.label + (" *" if i in front else "")),
                        class_="run", data_label=r.label, data_peak_bytes=mem, data_fid=fid,
                        data_pareto=int(i in front)))
    return el("svg", "".join(parts), class_="quality-memory", viewBox=f"0 0 {width} {height}", width=width,
              height=height, role="img", aria_label="FID against peak memory")


def _star(cx: float, cy: float, r: float = 8.0) -> str:
    import math

    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * 0.45
        a = math.pi / 2 + k * math.pi / 5
        pts.append(f"{_num(cx + rr * math.cos(a))},{_num(cy - rr * math.sin(a))}")
    return " ".join(pts)


def markdown_inline_to_html(text: str) -> str:
    """One line of :func:`.markdown.provenance_markdown` as HTML: code spans as ``<code>``, Markdown's escapes
    undone, the rest escaped."""
    out = []
    for k, part in enumerate(re.split(r"``?", text)):
        if k % 2:
            out.append(f"<code>{escape(part.strip())}</code>")
        else:
            plain = re.sub(r"\\(.)", r"\1", part).replace("&lt;", "<").replace("&nbsp;", " ")
            out.append(escape(plain))
    return "".join(out)


def results_html(path: str | Path) -> str:
    """The page of one results file: its provenance line, every table ``gonprof report`` shows for it (claims
    included), and its drawings."""
    from gonprof.api import report, report_claims
    from gonprof.records import load_extra

    from . import blocks_any
    from .markdown import provenance_markdown

    records = report(path)
    preset, verdicts = report_claims(path, records)
    blocks = blocks_any(records, preset, verdicts)
    title = f"gonprof report: {Path(path).name}"
    return page(records, blocks, title, markdown_inline_to_html(provenance_markdown(records, load_extra(path))))
