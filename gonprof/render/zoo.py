"""``gonprof list`` and ``gonprof info``: the zoo, the modes, one architecture layer by layer."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table

from .formats import format_flops


def architectures_table(rows) -> Table:
    """``gonprof list``: one row per architecture; counts were measured on the built model."""
    from rich.table import Table

    table = Table(title="gonprof architectures", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("family")
    table.add_column("role")
    table.add_column("params (count)", justify="right")
    table.add_column("input (C,H,W)")
    table.add_column("output")
    table.add_column("default mode")
    table.add_column("source repository", max_width=48)
    for r in rows:
        if r.error:
            table.add_row(r.name, r.family, r.role, "[red]broken[/]", ",".join(map(str, r.input_shape)), r.output,
                          r.default_mode or "", r.repo or r.source)
            continue
        params = f"{r.params:,}"
        if not r.matches_expected:
            params += f" [red](spec says {r.expected_params:,})[/]"
        elif r.trainable_params != r.params:
            params += f" [dim]({r.trainable_params:,} trainable)[/]"
        table.add_row(r.name, r.family, r.role, params, ",".join(map(str, r.input_shape)), r.output,
                      r.default_mode or "", r.repo or r.source)
    broken = [r.error for r in rows if r.error]
    if broken:
        table.caption = "\n".join(broken)
        table.caption_style = "red"
        table.caption_justify = "left"
    return table


def modes_table(rows) -> Table:
    from rich.table import Table

    table = Table(title="gonprof training modes", title_justify="left")
    for col in ("name", "default arch", "phases", "needs generator", "discriminator outputs", "presets", "summary"):
        table.add_column(col, no_wrap=col == "name")
    for m in rows:
        table.add_row(m.name, m.default_arch or "-", ", ".join(m.phases), "yes" if m.needs_generator else "no",
                      ", ".join(m.outputs), ", ".join(m.presets) or "-", m.summary)
    return table


def mode_report(m) -> Group:
    """``gonprof info --mode``: a mode's hyper-parameters (type, range, default), its presets' changes and its
    notes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(f"{m.name}: {m.summary}\nsource: {m.source}\ndefault discriminator: {m.default_arch or '-'}; "
                f"phases: {', '.join(m.phases)}")
    table = Table(title="hyper-parameters (--set NAME=VALUE)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("type")
    table.add_column("range")
    table.add_column("default")
    for p in sorted(m.preset_overrides):
        table.add_column(f"preset {p}")
    rules = {s.name: s for s in getattr(m, "settings", ())}
    for k, v in m.defaults.items():
        rule = rules.get(k)
        table.add_row(k, rule.type if rule else "", rule.range if rule else "", str(v),
                      *[str(m.preset_overrides[p].get(k, "")) for p in sorted(m.preset_overrides)])
    parts: list[RenderableType] = [head, table]
    if m.notes:
        parts.append(Text("notes:\n" + "\n".join(f"  - {n}" for n in m.notes), style="dim"))
    return Group(*parts)


def arch_report(report) -> Group:
    """``gonprof info``: header, notes and the per-layer table with totals."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    a = report.arch
    head = Text.assemble((a.name, "bold"), f"  {a.family} {a.role}, output {a.output}, "
                         f"input {','.join(map(str, report.input_shape))}\n", ("source: ", "dim"),
                         a.source + (f" ({a.repo})" if a.repo else ""))
    parts: list[RenderableType] = [head]
    if a.notes:
        parts.append(Text("notes:\n" + "\n".join(f"  - {n}" for n in a.notes), style="dim"))
    table = Table(caption=report.flops_note, caption_justify="left")
    table.add_column("layer", no_wrap=True)
    table.add_column("type")
    table.add_column("output shape (per sample)")
    table.add_column("params (count)", justify="right")
    table.add_column("forward FLOPs (per sample)", justify="right")
    for r in report.layers:
        shape = "x".join(map(str, r.output_shape)) if r.output_shape else ""
        table.add_row("  " * (r.depth - 1) + (r.name.rsplit(".", 1)[-1] or "(model)"), r.type, shape,
                      f"{r.params:,}", format_flops(r.forward_flops))
    frozen = report.total_params - report.trainable_params
    table.add_section()
    table.add_row("total", "", "", f"{report.total_params:,}" + (f" ({frozen:,} frozen)" if frozen else ""),
                  format_flops(report.forward_flops), style="bold")
    parts.append(table)
    if report.uncounted_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(report.uncounted_ops.items()))
        parts.append(Text(f"ops with no FLOP formula (not counted): {ops}", style="yellow"))
    return Group(*parts)
