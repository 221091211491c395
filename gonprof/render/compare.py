"""``gonprof compare`` and ``gonprof score``: cost and quality tables over RunRecords."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .formats import _mib, _ms, format_count
from .sheet import Sheet, to_rich


def on_class_note(scored) -> str:
    """What the on-class column counts, for a caption ("" without a class selection)."""
    if scored is None or scored.classes is None:
        return ""
    if scored.on_class_confidence is None:  # a record from before the confidence threshold
        return "; on-class: samples whose argmax is a kept class"
    return (f"; on-class: samples read as a kept class with confidence >= {scored.on_class_confidence:g} "
            "(maximum softmax probability)")


# -- gonprof compare ------------------------------------------------------------------

def compare_table(rows, baseline: int | None = None, title: str = "gonprof compare") -> Group:
    """Two tables over the same rows: what each run cost, and what its samples are worth (:func:`compare_sheets`)."""
    return to_rich(compare_sheets(rows, baseline, title))


def compare_sheets(rows, baseline: int | None = None, title: str = "gonprof compare") -> list[Sheet]:
    """Two tables over the same rows: what each run cost, and what its samples are worth.

    ``*`` marks Pareto-optimal rows: no other row has both a lower peak of live
    tensor memory and a lower FID.  Ratios are to the ``baseline`` row
    (default: the first trained row that finished).
    """
    from gonprof.records import pareto_front, peak_memory_bytes

    front = pareto_front(rows)
    runs = [i for i, r in enumerate(rows) if r.kind == "run" and r.status == "ok" and r.profile is not None]
    base_i = baseline if baseline is not None else (runs[0] if runs else None)
    base = rows[base_i] if base_i is not None else None
    bmem = peak_memory_bytes(base) if base is not None else None
    bt = base.profile.step_time_s_median if base is not None and base.profile is not None else None
    has_cuda = any(r.profile is not None and r.profile.cuda_memory is not None for r in rows)
    inner = any(r.inner_iters_per_step is not None for r in rows)

    def label(i, r):
        return r.label + (" *" if i in front else "") + (" (base)" if i == base_i else "")

    cost = Sheet(title=f"{title}: cost of one optimization step", title_justify="left",
                 caption=_cost_caption(inner), caption_justify="left")
    cols = ["run", "D params (count)", "G params (count)", "FLOPs/step (GFLOP)", "peak live (MiB)",
            "peak RSS delta (MiB)"] + (["CUDA max alloc (MiB)"] if has_cuda else []) + (
            ["inner iters/step (mean)", "sample-iters/s"] if inner else []) + [
            "step median (ms)", "trained (steps / s)", "memory vs base (x)", "time vs base (x)"]
    for c in cols:
        cost.add_column(c, "left" if c == "run" else "right", no_wrap=c == "run")
    for i, r in enumerate(rows):
        if r.kind != "run":
            continue
        p = r.profile
        mem = peak_memory_bytes(r)
        t = p.step_time_s_median if p is not None else None
        cells = [label(i, r), format_count(r.d_params), format_count(r.g_params),
                 f"{p.flops_per_step / 1e9:,.2f}" if p is not None and p.flops_per_step else "-",
                 _mib(mem), _mib(p.peak_rss_delta_bytes) if p is not None else "-"]
        cells += _optional_cost_cells(r, has_cuda, inner)
        cells += [_ms(t), (f"{r.train_steps} / " + (f"{r.train_time_s:,.0f}" if r.train_time_s is not None else "-"))
                  if r.train_steps is not None else "-",
                  f"{mem / bmem:.2f}" if mem and bmem else "-", f"{t / bt:.2f}" if t and bt else "-"]
        cost.add_row(*cells)

    scored = next((r.quality for r in rows if r.quality is not None), None)
    n = scored.n_samples if scored is not None else None
    extractor = f"{scored.extractor} (weights {scored.weights_hash})" if scored is not None else "-"
    kept = scored.classes if scored is not None else None
    held = f" of {scored.n_held_out}" if scored is not None and scored.n_held_out else ""
    what = "held-out real images" + (f" of class{'es' if len(kept) > 1 else ''} {','.join(map(str, kept))}"
                                     if kept is not None else "")
    refined = any(r.quality_unrefined is not None for r in rows)
    tested = any(r.test_error_fraction is not None for r in rows)
    quality = Sheet(title=f"{title}: quality of the samples", title_justify="left",
                    caption=f"N={n} samples vs {n}{held} {what} in the features of {extractor}; "
                            "the floor row scores real images the same way; * Pareto-optimal on "
                            "(peak live memory, FID)" + ("; FID before refinement: the same samples as drawn by G, "
                                                         "before the critic's Langevin steps" if refined else "")
                            + ("; test error: argmax D(x) on the held-out images" if tested else "")
                            + on_class_note(scored),
                    caption_justify="left")
    cols = ["run", "FID"] + (["FID before refinement"] if refined else []) + [
        "KID", "precision", "recall", "classes (%)", "class entropy (nats)"] + \
        (["on-class (%)"] if kept is not None else []) + (["test error (%)"] if tested else []) + ["status"]
    for c in cols:
        quality.add_column(c, "left" if c in ("run", "status") else "right", no_wrap=c == "run")
    for i, r in enumerate(rows):
        q = r.quality
        cells = [label(i, r)]
        if q is not None:
            cells.append(f"{q.fid:,.2f}")
            if refined:
                cells.append(f"{r.quality_unrefined.fid:,.2f}" if r.quality_unrefined is not None else "-")
            cells += [f"{q.kid_mean:,.2f}", f"{q.precision:.3f}", f"{q.recall:.3f}",
                      f"{100 * q.class_coverage:.0f}", f"{q.class_entropy_nats:.3f}"]
            if kept is not None:
                cells.append(f"{100 * q.on_class_fraction:.0f}" if q.on_class_fraction is not None else "-")
            if tested:
                cells.append(f"{100 * r.test_error_fraction:.2f}" if r.test_error_fraction is not None else "-")
        else:
            cells += ["-"] * (len(cols) - 2)
        cells.append(_status_cell(r))
        quality.add_row(*cells, style="dim" if r.kind == "floor" else None)
    return [cost, quality]


def _cost_caption(inner: bool) -> str:
    return ("FLOPs = 2 x MACs, whole step; peak live = tensor storages during one step; RSS delta over the "
            "step's start; ratios vs the row marked (base)"
            + ("; sample-iters/s = chains a step x inner iters/step (mean of the trained steps) / step median"
               if inner else ""))


def _optional_cost_cells(r, has_cuda: bool, inner: bool) -> list[str]:
    """The cost table's columns some rows have: CUDA's allocator peak, inner-loop iterations per step."""
    p = r.profile
    cells = []
    if has_cuda:
        cells.append(_mib(p.cuda_memory.max_memory_allocated_bytes) if p is not None and p.cuda_memory else "-")
    if inner:
        cells.append(f"{r.inner_iters_per_step:,.1f}" if r.inner_iters_per_step is not None else "-")
        rate = r.sample_iters_per_s
        cells.append(f"{rate:,.0f}" if rate is not None else "-")
    return cells


def _status_cell(r) -> str | Text:
    """``ok``, or the status (red unless ok) and the row's message."""
    if r.status == "ok" and not r.message:
        return r.status
    return Text.assemble((r.status, "red" if r.status != "ok" else ""), ": " + r.message)


# -- gonprof score --------------------------------------------------------------------

def score_table(rows, source: str = "") -> Group:
    """``gonprof score``'s table (:func:`score_sheet`) for the terminal."""
    return Group(score_sheet(rows, source).to_rich())


def score_sheet(rows, source: str = "") -> Sheet:
    """``gonprof score``: compare's quality columns over (floor, samples) RunRecords, with confidence and
    the predicted-class counts; ``source`` (what was read, and how) goes in the caption."""
    scored = next((r.quality for r in rows if r.quality is not None), None)
    kept = scored.classes if scored is not None else None
    n = scored.n_samples if scored is not None else None
    held = f" of {scored.n_held_out}" if scored is not None and scored.n_held_out else ""
    what = "held-out real images" + (f" of class{'es' if len(kept) > 1 else ''} {','.join(map(str, kept))}"
                                     if kept is not None else "")
    extractor = f"{scored.extractor} (weights {scored.weights_hash})" if scored is not None else "-"
    t = Sheet(title="gonprof score: quality of the samples", title_justify="left",
              caption=(f"{source}\n" if source else "") + f"N={n} images vs {n}{held} {what} in the features "
                      f"of {extractor}; the floor row scores real images the same way" + on_class_note(scored),
              caption_justify="left")
    cols = ["run", "FID", "KID", "precision", "recall", "classes (%)", "class entropy (nats)"] + \
        (["on-class (%)"] if kept is not None else []) + ["confidence", "predicted (class: count)"]
    for c in cols:
        t.add_column(c, "left" if c in ("run", "predicted (class: count)") else "right", no_wrap=c == "run")
    for r in rows:
        q = r.quality
        if q is None:
            t.add_row(r.label, *(["-"] * (len(cols) - 1)))
            continue
        cells = [r.label, f"{q.fid:,.2f}", f"{q.kid_mean:,.2f}", f"{q.precision:.3f}", f"{q.recall:.3f}",
                 f"{100 * q.class_coverage:.0f}", f"{q.class_entropy_nats:.3f}"]
        if kept is not None:
            cells.append(f"{100 * q.on_class_fraction:.0f}" if q.on_class_fraction is not None else "-")
        counts = sorted((q.predicted_classes or {}).items(), key=lambda kv: (-kv[1], int(kv[0])))
        shown = ", ".join(f"{k}: {v}" for k, v in counts[:5]) + (", ..." if len(counts) > 5 else "")
        cells += [f"{q.mean_confidence:.3f}", shown or "-"]
        t.add_row(*cells, style="dim" if r.kind == "floor" else None)
    return t


def claims_table(verdicts, title: str = "the source's claims") -> Table:
    """The claims table (:func:`claims_sheet`) for the terminal."""
    return claims_sheet(verdicts, title).to_rich()


def claims_sheet(verdicts, title: str = "the source's claims") -> Sheet:
    """Claim | source figure | measured here | verdict (with its reason); the mapping of each source
    quantity to a defined figure goes in the last column."""
    t = Sheet(title=f"gonprof compare: {title}", title_justify="left")
    for c in ("claim", "source figure", "measured here", "verdict", "measured as"):
        t.add_column(c)
    colour = {"holds": "green", "does not hold": "red"}
    for v in verdicts:
        verdict = Text.assemble((v.verdict, colour.get(v.verdict, "yellow")), f": {v.reason}" if v.reason else "")
        t.add_row(v.claim, v.source_figure, v.measured, verdict, v.maps_to)
    return t

