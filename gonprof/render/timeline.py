"""Where the memory goes, as drawings: the measuring step's live bytes over the step (:func:`timeline_view`,
:func:`timeline_svg`) and the bytes each module holds at the peak (:func:`module_bars`, :func:`modules_svg`).

A *view* is the record's figures arranged for drawing (MiB = 2**20 bytes, ms, stacked by category in
:data:`gonprof.records.LIVE_CATEGORIES` order); the SVG here and the PNG of :func:`gonprof.plots.timeline_plot`
both draw it, so the two cannot differ.  The SVG is written by hand (no matplotlib, no script, no external
reference), for pages that must stand alone.  Render never measures: a record without a timeline (written by a
gonprof before it took one) gives ``None`` and the views say :data:`NO_TIMELINE` / :data:`NO_MODULES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from gonprof.records import LIVE_CATEGORIES, PhaseSpan, ProfileRecord

from .formats import _title

MIB = 2**20

NO_TIMELINE = "no timeline in this record (made by an older gonprof)"
NO_MODULES = "no per-module bytes at the peak in this record (made by an older gonprof)"

#: The bar of the bytes made outside every module.
OUTSIDE = "(outside modules)"


def missing_timeline(rec: ProfileRecord) -> str:
    """Why ``rec`` has no timeline, in one line: no live-memory figures at all (its measuring step did not
    end), or a record made by a gonprof before timelines (:data:`NO_TIMELINE`)."""
    if rec.live_memory is None:
        return (f"no timeline in this record: it has no live-memory figures (status {rec.status}: its measuring "
                "step did not end)")
    return NO_TIMELINE

#: What each category holds, as the legends name it.
CATEGORY_NAMES = {
    "param": "parameters",
    "buffer": "buffers",
    "grad": "gradients",
    "optim": "optimizer state",
    "replay": "replay (samples kept between steps)",
    "act": "activations + temporaries",
    "external": "external (inputs, foreign storages)",
}

#: One colour per category (colour-blind-safe, Okabe-Ito), the same in the SVG and the PNG.
CATEGORY_COLOURS = {
    "param": "#0072B2",
    "buffer": "#56B4E9",
    "grad": "#009E73",
    "optim": "#F0E442",
    "replay": "#CC79A7",
    "act": "#E69F00",
    "external": "#D55E00",
}


@dataclass(frozen=True)
class Band:
    """One category's band of the stacked timeline: at point ``i`` it spans ``bottom_mib[i]`` to ``top_mib[i]``."""

    category: str
    bottom_mib: list[float]
    top_mib: list[float]
    peak_mib: float  # the category's bytes at the peak point, in MiB


@dataclass(frozen=True)
class TimelineView:
    """A record's timeline arranged for drawing: points ``(op_index[i], time_ms[i])``, one band per category
    that holds any bytes, the phases, and the peak (``peak_op`` at ``peak_time_ms``, in ``peak_phase``)."""

    title: str
    op_index: list[int]
    time_ms: list[float]
    bands: list[Band]
    phases: list[PhaseSpan]
    ops_total: int
    peak_op: int
    peak_time_ms: float
    peak_mib: float
    peak_phase: str
    points: int
    max_points: int

    @property
    def x_end(self) -> int:
        """Where the x axis ends: the state after op ``i`` holds from ``i`` to ``i + 1``, so the step's ops end at
        ``ops_total`` (or one past the last point, where that is later)."""
        return max(self.ops_total, (self.op_index[-1] + 1) if self.op_index else 1)

    @property
    def peak_label(self) -> str:
        where = f" in phase {self.peak_phase}" if self.peak_phase else ""
        return f"peak {self.peak_mib:,.2f} MiB at op {self.peak_op:,} ({self.peak_time_ms:,.3f} ms){where}"

    @property
    def caption(self) -> str:
        kept = (f"{self.points:,} of {self.ops_total:,} ops drawn (downsampled, the peak kept exactly)"
                if self.points < self.ops_total else f"all {self.ops_total:,} ops drawn")
        return f"live tensor bytes after each op of the measuring step, stacked by category; {kept}"

    def time_at(self, op: float) -> float:
        """The time (ms from the step's start) at op ``op``, linear between the points."""
        xs, ts = self.op_index, self.time_ms
        if not xs:
            return 0.0
        if op <= xs[0]:
            return ts[0]
        for i in range(1, len(xs)):
            if op <= xs[i]:
                span = xs[i] - xs[i - 1]
                return ts[i - 1] + (ts[i] - ts[i - 1]) * ((op - xs[i - 1]) / span if span else 1.0)
        return ts[-1]


def timeline_view(rec: ProfileRecord) -> TimelineView | None:
    """``rec``'s measuring-step timeline arranged for drawing; None where the record has none."""
    lm = rec.live_memory
    tl = lm.timeline if lm is not None else None
    if tl is None or not tl.op_index:
        return None
    n = len(tl.op_index)
    peak = min(max(tl.peak_point, 0), n - 1)
    bottom = [0.0] * n
    bands: list[Band] = []
    categories = [c for c in LIVE_CATEGORIES if c in tl.bytes_by_category]
    categories += [c for c in tl.bytes_by_category if c not in LIVE_CATEGORIES]  # a newer gonprof's categories
    for c in categories:
        values = [v / MIB for v in tl.bytes_by_category[c]]
        if not any(values):
            continue
        top = [b + v for b, v in zip(bottom, values)]
        bands.append(Band(c, bottom, top, values[peak]))
        bottom = top
    peak_op = tl.op_index[peak]
    phase = next((p.name for p in tl.phases if p.first_op <= peak_op <= p.last_op), "")
    return TimelineView(title=_title(rec), op_index=list(tl.op_index), time_ms=[t * 1e3 for t in tl.time_s],
                        bands=bands, phases=list(tl.phases), ops_total=tl.ops_total, peak_op=peak_op,
                        peak_time_ms=tl.time_s[peak] * 1e3, peak_mib=bottom[peak], peak_phase=phase, points=n,
                        max_points=tl.max_points)


@dataclass(frozen=True)
class ModuleBar:
    """One module's bytes live at the peak (``module`` ``"(outside modules)"`` for storages made outside every
    module), by category, with what made them (``made_by``: direction / phase)."""

    module: str
    bytes_total: int
    bytes_by_category: dict[str, int]
    made_by: tuple[str, ...]


def module_bars(rec: ProfileRecord) -> list[ModuleBar] | None:
    """Every module's bytes at the peak, summed over directions and phases, largest first; None where the
    record has no per-module figures."""
    lm = rec.live_memory
    if lm is None or not lm.peak_modules:
        return None
    by: dict[str, dict[str, int]] = {}
    made: dict[str, list[str]] = {}
    for m in lm.peak_modules:
        name = m.module or OUTSIDE
        cats = by.setdefault(name, {})
        cats[m.category] = cats.get(m.category, 0) + m.bytes_at_peak
        how = m.direction + (f" in {m.phase}" if m.phase else "")
        if how not in made.setdefault(name, []):
            made[name].append(how)
    bars = [ModuleBar(name, sum(cats.values()), cats, tuple(made[name])) for name, cats in by.items()]
    return sorted(bars, key=lambda b: (-b.bytes_total, b.module))


# --------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------

FONT = "system-ui, sans-serif"


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def el(tag: str, content: str | None = None, **attrs: Any) -> str:
    """One SVG element: attributes from keywords (``_`` in a name becomes ``-``, floats rounded to 0.1, values
    escaped), ``content`` (already markup) inside it, or self-closing without content."""
    text = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(_num(v) if isinstance(v, float) else str(v))}"'
                   for k, v in attrs.items() if v is not None)
    return f"<{tag}{text}/>" if content is None else f"<{tag}{text}>{content}</{tag}>"


def label(x: float, y: float, text: str, size: int = 11, **attrs: Any) -> str:
    """A ``<text>`` of plain ``text`` (escaped) at (x, y)."""
    return el("text", escape(text), x=float(x), y=float(y), font_size=size, font_family=FONT, **attrs)


def nice_ceiling(v: float) -> float:
    """The smallest of 1, 1.2, 1.6, 2, 2.4, 3, 4, 6, 8 x 10**k at or above ``v`` (an axis' top, whose quarters
    are round numbers)."""
    if v <= 0:
        return 1.0
    k = 1.0
    while k * 10 <= v:
        k *= 10
    while k > v:
        k /= 10
    for m in (1, 1.2, 1.6, 2, 2.4, 3, 4, 6, 8, 10):
        if m * k >= v:
            return m * k
    return 10 * k


def nice_step(span: int, ticks: int = 8) -> int:
    """A whole step of 1, 2 or 5 x 10**k that cuts ``span`` into at most about ``ticks`` parts."""
    k = 1
    while True:
        for m in (1, 2, 5):
            if m * k * ticks >= span:
                return m * k
        k *= 10


def _legend(categories: list[str], x: float, y: float) -> list[str]:
    out = []
    for c in categories:
        name = CATEGORY_NAMES.get(c, c)
        out.append(el("rect", x=float(x), y=float(y - 9), width=10, height=10, fill=CATEGORY_COLOURS.get(c, "#999"))
                   + label(x + 14, y, name))
        x += 24 + 6.2 * len(name)
    return out


def _svg(cls: str, width: int, height: int, aria: str, parts: list[str]) -> str:
    return el("svg", "".join(parts), class_=cls, viewBox=f"0 0 {width} {height}", width=width, height=height,
              role="img", aria_label=aria)


def _steps(xs: list[float], ys: list[float]) -> list[str]:
    """The corners of a step line through (xs[i], ys[i]) held until xs[i + 1] (``xs`` one longer)."""
    pts = [f"{_num(xs[0])},{_num(ys[0])}"]
    for i in range(1, len(xs)):
        pts.append(f"{_num(xs[i])},{_num(ys[i - 1])}")
        if i < len(ys):
            pts.append(f"{_num(xs[i])},{_num(ys[i])}")
    return pts


def timeline_svg(view: TimelineView, width: int = 960, height: int = 340) -> str:
    """The stacked timeline as one ``<svg>`` element: bands by category (a step drawn after each point),
    phases shaded and named, the peak marked, ops on the x axis with the time under each tick."""
    left, right, top, bottom = 72, 40, 44, 84
    pw, ph = width - left - right, height - top - bottom
    ymax = nice_ceiling(view.peak_mib * 1.08)
    last = view.x_end

    def x(op: float) -> float:
        return left + pw * op / last

    def y(mib: float) -> float:
        return top + ph * (1 - mib / ymax)

    parts = [el("title", escape(f"{view.title}: {view.peak_label}"))]
    for i, p in enumerate(view.phases):
        x0, x1 = x(p.first_op), x(min(p.last_op + 1, last))
        parts.append(el("rect", class_="phase", data_phase=p.name, x=x0, y=top, width=max(x1 - x0, 0.5), height=ph,
                        fill="#eef1f5" if i % 2 == 0 else "#f8f9fb")
                     + label((x0 + x1) / 2, top - 8, p.name, text_anchor="middle"))
    xs = [x(o) for o in [*view.op_index, last]]
    for band in view.bands:
        upper = _steps(xs, [y(v) for v in band.top_mib])
        lower = _steps(xs, [y(v) for v in band.bottom_mib])
        name = CATEGORY_NAMES.get(band.category, band.category)
        parts.append(el("polygon", el("title", escape(f"{name}: {band.peak_mib:,.2f} MiB at the peak")),
                        class_="band", data_category=band.category, fill=CATEGORY_COLOURS.get(band.category, "#999"),
                        fill_opacity="0.85", points=" ".join(upper + lower[::-1])))
    parts += _timeline_axes(view, x, y, ymax, (left, top, pw, ph))
    px, py = x(view.peak_op), y(view.peak_mib)
    end = px > left + pw * 0.6
    parts.append(el("g", el("line", x1=px, y1=top, x2=px, y2=top + ph, stroke="#b00", stroke_dasharray="4 3")
                    + el("circle", cx=px, cy=py, r=4, fill="#b00")
                    + label(px - 6 if end else px + 6, max(py - 6, top + 12), view.peak_label, 12,
                            text_anchor="end" if end else "start", font_weight="bold", fill="#b00"),
                    class_="peak", data_op=view.peak_op, data_mib=f"{view.peak_mib:.2f}"))
    parts += _legend([b.category for b in view.bands], left, height - 8)
    return _svg("timeline", width, height, view.caption, parts)


def _timeline_axes(view: TimelineView, x: Any, y: Any, ymax: float, box: tuple[int, int, int, int]) -> list[str]:
    """The axes of :func:`timeline_svg`: MiB on the left, ops below with the time (ms) under each op."""
    left, top, pw, ph = box
    base = top + ph
    out = [el("line", x1=left, y1=base, x2=left + pw, y2=base, stroke="#333"),
           el("line", x1=left, y1=top, x2=left, y2=base, stroke="#333")]
    for k in range(5):
        v = ymax * k / 4
        out.append(el("line", x1=left - 4, y1=y(v), x2=left + pw, y2=y(v), stroke="#ccc", stroke_width="0.5")
                   + label(left - 6, y(v) + 4, f"{v:,.4g}", text_anchor="end"))
    mid = top + ph / 2
    out.append(label(14, mid, "live bytes (MiB)", text_anchor="middle", transform=f"rotate(-90 14 {_num(mid)})"))
    step = nice_step(view.x_end)
    for op in range(0, view.x_end + 1, step):
        out.append(el("line", x1=x(op), y1=base, x2=x(op), y2=base + 4, stroke="#333")
                   + label(x(op), base + 16, f"{op:,}", text_anchor="middle")
                   + label(x(op), base + 29, f"{view.time_at(op):,.2f} ms", 10, text_anchor="middle", fill="#555"))
    out.append(label(left + pw / 2, base + 48, "op index of the measuring step (time from the step's start below it)",
                     text_anchor="middle"))
    return out


def modules_svg(bars: list[ModuleBar], top: int = 15, width: int = 960) -> str:
    """The ``top`` modules' bytes at the peak as horizontal bars stacked by category, one row each, the
    largest first; one more row sums the modules not drawn."""
    shown, rest = bars[:top], bars[top:]
    row, left, right, head = 22, 260, 130, 8
    height = head + row * (len(shown) + (1 if rest else 0)) + 30
    widest = max((b.bytes_total for b in bars), default=0) or 1
    pw = width - left - right
    parts = []
    for i, b in enumerate(shown):
        yy = head + i * row
        inner = [label(left - 8, yy + 14, _short(b.module), 12, text_anchor="end")]
        xx = float(left)
        for c in [*LIVE_CATEGORIES, *(c for c in b.bytes_by_category if c not in LIVE_CATEGORIES)]:
            v = b.bytes_by_category.get(c, 0)
            if not v:
                continue
            w = pw * v / widest
            tip = f"{b.module}: {CATEGORY_NAMES.get(c, c)} {v / MIB:,.2f} MiB (made {', '.join(b.made_by)})"
            inner.append(el("rect", el("title", escape(tip)), class_="segment", data_category=c, data_bytes=v, x=xx,
                            y=float(yy + 3), width=w, height=row - 6, fill=CATEGORY_COLOURS.get(c, "#999")))
            xx += w
        inner.append(label(xx + 6, yy + 14, f"{b.bytes_total / MIB:,.2f} MiB", 12))
        parts.append(el("g", "".join(inner), class_="module-bar", data_module=b.module, data_bytes=b.bytes_total))
    if rest:
        yy = head + len(shown) * row
        parts.append(label(left - 8, yy + 14, f"{len(rest)} more modules", 12, text_anchor="end", fill="#555")
                     + label(left, yy + 14, f"{sum(b.bytes_total for b in rest) / MIB:,.2f} MiB in all", 12,
                             fill="#555"))
    parts += _legend([c for c in LIVE_CATEGORIES if any(b.bytes_by_category.get(c) for b in shown)], left, height - 8)
    return _svg("modules", width, height, "bytes each module holds at the peak", parts)


def _short(name: str, limit: int = 38) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]
