"""Views of a layer search (opdiff.LayersReport): the terminal table, report.html, Model Explorer node data.

Each reads the report and changes nothing in it. The terminal table is a
FoldingTable: a table where the op names fit, else one op per line with its
errors under it, never a name or a number cut; the names' common prefix is
said once under it.
"""

import math
import os
from typing import List, Optional

from rich.console import Console
from rich.text import Text

from ..record.layers import BoardLayers, LayersReport, OpRow
from .fold import Column, FoldingTable

MARKS = {"introduced": ("✗", "bold red"), "inherited": ("~", "yellow"), "ok": ("✓", "green"),
         "over": ("?", "red"), "defect": ("!", "magenta"), "unmatched": (" ", "dim")}
LEGEND = "✗ introduces error  ~ inherits it  ✓ within tolerance  ? over tolerance, not replayed"
DEFECT_LEGEND = "! replay defect: introduced more than entry + exit allow, not judged"
SHOW_ALL_UP_TO = 40
"""Tables of more ops show the ones that matter (the start, around the first errors, the worst) and say so."""
FLOAT32_MAX = 3.4028234663852886e38
"""Model Explorer's values are JSON numbers, which have no infinity: NaN/Inf stands as float32's largest."""
COLOURS = {"introduced": "#e06666", "inherited": "#f6b26b", "ok": "#93c47d", "over": "#ea9999", "defect": "#b4a7d6",
           "unmatched": "#cccccc"}


def number(value: Optional[float], exact: bool = True) -> str:
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    return f"{'' if exact else '≈'}{value:.1e}"


def common_prefix(names: List[str]) -> str:
    """The longest prefix ending in '/' shared by the path-like names (SegFormer's /inner/segformer/...); the
    others (MNN's own `logits__before_tr_raster_0`) are shown whole."""
    paths = [name for name in names if "/" in name]
    if len(paths) < 2 or len(paths) < len(names) / 2:
        return ""
    prefix = os.path.commonprefix(paths)
    cut = prefix.rfind("/")
    return prefix[:cut + 1] if cut >= 3 else ""


def shown_rows(board: BoardLayers, show_all: bool) -> List[Optional[OpRow]]:
    """The rows to print, None standing for a run of rows left out."""
    rows = board.rows
    if show_all or len(rows) <= SHOW_ALL_UP_TO:
        return list(rows)
    keep = {0, 1, 2, len(rows) - 1}
    for anchor in (board.first_introduced, board.first_nonfinite):
        if anchor is not None:
            keep.update(range(max(0, anchor - 3), min(len(rows), anchor + 4)))
    worst = sorted((i for i, r in enumerate(rows) if r.introduced is not None and r.verdict != "unmatched"),
                   key=lambda i: -(rows[i].introduced if math.isfinite(rows[i].introduced) else 1e308))[:5]
    keep.update(worst)
    first_over = next((i for i, r in enumerate(rows) if r.verdict in ("over", "inherited", "introduced")), None)
    if first_over is not None:
        keep.update(range(max(0, first_over - 1), min(len(rows), first_over + 2)))
    out: List[Optional[OpRow]] = []
    for i, row in enumerate(rows):
        if i in keep:
            out.append(row)
        elif out and out[-1] is not None or not out:
            out.append(None)
    return out


def board_table(board: BoardLayers, show_all: bool = False) -> FoldingTable:
    """One row per op: as a table where the names fit, else stacked (the op on one line, its errors under it)."""
    prefix = common_prefix([row.name for row in board.rows])
    title = (f"{board.board.label} against {board.reference.label}"
             + (f", {board.sample_name}" if board.sample_name else ""))
    legend = ([f"op names under {prefix}"] if prefix else []) + [LEGEND]
    if any(row.verdict == "defect" for row in board.rows):
        legend.append(DEFECT_LEGEND)
    table = FoldingTable([Column("#", "right", key=True), Column("Op", key=True), Column("Type", key=True),
                          Column("", key=True), Column("on entry", "right"), Column("introduced", "right"),
                          Column("on exit", "right")], title=title, legend=legend)
    for row in shown_rows(board, show_all):
        if row is None:
            table.add_row("", Text("⋮", "dim"), "", "", "", "", "")
            continue
        mark, style = MARKS.get(row.verdict, ("", ""))
        name = row.name[len(prefix):] if prefix and row.name.startswith(prefix) else row.name
        table.add_row(str(row.index), Text(name, style="bold red" if row.verdict == "introduced" else ""),
                      Text(row.type, "dim"), Text(mark, style), number(row.entry, row.exact),
                      Text(number(row.introduced), style=style if row.introduced is not None else "dim"),
                      number(row.exit, row.exact))
    return table


def board_lines(board: BoardLayers) -> List[Text]:
    """What the table does not say: the first NaN/Inf, the op types that introduce the most, the tolerance."""
    lines = []
    if board.first_nonfinite is not None:
        row = board.rows[board.first_nonfinite]
        lines.append(Text(f"first NaN/Inf: #{row.index} {row.name} ({row.type}): {row.nonfinite} values on "
                          f"{board.board.board}, {row.reference_nonfinite} on {board.reference.board}", "red"))
    if board.first_introduced is not None:
        row = board.rows[board.first_introduced]
        source = (row.source or {})
        where = f"; from the source: {source_text(source)}" if source.get("kind") not in (None, "none") else ""
        lines.append(Text(f"first op that introduces error: #{row.index} {row.name} ({row.type}), "
                          f"{number(row.introduced)} against a tolerance of {row.tolerance:.1e}{where}", "bold red"))
    defects = [row for row in board.rows if row.verdict == "defect"]
    if defects:
        row = defects[0]
        more = f" (and {len(defects) - 1} more ops)" if len(defects) > 1 else ""
        lines.append(Text(f"replay defect at #{row.index} {row.name} ({row.type}){more}: it 'introduced' "
                          f"{number(row.introduced)}, more than its error on entry ({number(row.entry)}) and on exit "
                          f"({number(row.exit)}) can add up to, so the replay computed something else. It is neither "
                          "blamed nor counted: a defect of the harness, please report it with layers.json", "magenta"))
    if board.type_shares:
        shares = ", ".join(f"{item['type']} ×{item['count']} " + ("NaN/Inf" if item["share"] is None
                                                                  else f"{item['share']:.0%}")
                           for item in board.type_shares[:4])
        lines.append(Text(f"error introduced, by op type: {shares}"))
    lines.append(Text(f"tolerance per op: {board.tolerance.get('text', '')}", "dim"))
    if board.replayed is not None:
        first, last = board.replayed
        lines.append(Text(f"replayed on {board.reference.board} with {board.board.board}'s own inputs: ops "
                          f"#{board.rows[first].index} to #{board.rows[last].index} "
                          f"({board.fetched_mb:.1f} MB fetched, budget {board.budget_mb:g} MB)", "dim"))
    if board.samples > 1:
        firsts = "; ".join(f"{i}: {first or 'none'}" for i, first in enumerate(board.sample_firsts))
        why = board.sample_reason or "where the divergence starts earliest"
        making = ""
        if any(board.sample_nonfinite):
            making = ". First NaN/Inf, per sample: " + "; ".join(f"{i}: {first or 'none'}"
                                                                for i, first in enumerate(board.sample_nonfinite))
        lines.append(Text(f"{board.samples} samples traced; replayed sample {board.sample} ({board.sample_name}), "
                          f"{why}. First op over tolerance on exit, per sample: {firsts}{making}", "dim"))
    if board.unmatched:
        lines.append(Text(f"{board.unmatched} ops ran on one side only (no counterpart by name and type)", "yellow"))
    lines.extend(Text(note, "yellow") for note in board.notes)
    return lines


def source_text(source: dict) -> str:
    nodes = " + ".join(f"{name} ({kind})" for name, kind in zip(source.get("nodes") or [], source.get("types") or []))
    kind = source.get("kind")
    if kind == "exact":
        return f"exact, {nodes}"
    if kind == "fused":
        return f"fused group {nodes}"
    if kind == "nearest":
        return f"nearest named neighbour {source.get('via')}: {nodes}"
    return "none"


def render_layers(report: LayersReport, console: Console, show_all: bool = False) -> None:
    for board in report.boards:
        if board.error:
            console.print(Text(f"{board.board.board}: layer search failed: {board.error}", "red"))
            continue
        console.print(board_table(board, show_all))
        for line in board_lines(board):
            console.print(line)
    if report.mapping:
        console.print(Text(report.mapping, "dim"))
    console.print(f"[dim]files: {report.run_dir} (layers.json, report.html, model_explorer/)[/]", highlight=False)
    for board in report.boards:
        failed = board.error or board.first_introduced is not None or board.first_nonfinite is not None
        console.print(Text(board.headline(), "bold red" if failed else "bold green"))


# ---- report.html --------------------------------------------------------------------------------

def render_layers_html(report: LayersReport) -> str:
    from .html import CSS, esc, line_chart_svg

    css = CSS + "td.wrap{max-width:420px;overflow-wrap:anywhere;font-size:12px}\n"
    parts = [f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>mnn-harness layers "
             f"{esc(report.scenario)}</title><style>{css}</style></head><body>",
             f"<h1>mnn-harness layers: {esc(report.scenario)}</h1>",
             f'<div class="banner {"pass" if report.exit_code == 0 else "fail"}">'
             + "<br>".join(esc(board.headline()) for board in report.boards) + "</div>",
             f'<p class=dim>{esc(report.model.get("mnn"))} · {esc(report.mapping)}</p>']
    for board in report.boards:
        parts.append(f'<h2 id="board-{esc(board.board.board)}">{esc(board.board.label)} against '
                     f'{esc(board.reference.label)}</h2>')
        if board.error:
            parts.append(f'<p class="fail">{esc(board.error)}</p>')
            continue
        def drawn(value):  # a log scale has no place for 0 (a Raster op that only moves data) or inf
            return value if value is not None and 0 < value < math.inf else None

        introduced = [drawn(row.introduced) for row in board.rows]
        exits = [drawn(row.exit) for row in board.rows]
        tolerance = [row.tolerance for row in board.rows]
        parts.append("<p class=dim>Relative error per op, in execution order (log scale): introduced by the op "
                     "(its output against the reference running it on this board's inputs), accumulated on exit, "
                     "and the op's tolerance.</p>")
        parts.append(f'<div id="chart-{esc(board.board.board)}">' + line_chart_svg(
            [("introduced", "#c5221f", introduced), ("on exit", "#3b6fd4", exits),
             ("tolerance", "#9aa3b2", tolerance)], log=True, width=820, height=220, x_label="op") + "</div>")
        nonfinite = [row.index for row in board.rows if row.nonfinite > row.reference_nonfinite]
        if nonfinite:
            parts.append(f'<p class="fail">NaN/Inf on exit from op #{nonfinite[0]} on (not drawn on a log '
                         f'scale)</p>')
        parts.append("<ul>" + "".join(f"<li>{esc(line.plain)}</li>" for line in board_lines(board)) + "</ul>")
        head = "".join(f"<th>{h}</th>" for h in ("#", "Op", "Type", "on entry", "introduced", "on exit",
                                                  "tolerance", "verdict", "source"))
        body = []
        for row in board.rows:
            css = {"introduced": "fail", "inherited": "warn", "over": "fail", "defect": "warn"}.get(row.verdict, "")
            body.append(f"<tr><td class=num>{row.index}</td><td class=wrap>{esc(row.name)}</td><td>{esc(row.type)}</td>"
                        f"<td class=num>{esc(number(row.entry, row.exact))}</td>"
                        f"<td class=num>{esc(number(row.introduced))}</td>"
                        f"<td class=num>{esc(number(row.exit, row.exact))}</td>"
                        f"<td class=num>{row.tolerance:.1e}</td><td class='{css}'>{esc(row.verdict)}</td>"
                        f"<td class='wrap dim'>{esc(source_text(row.source or {}))}</td></tr>")
        parts.append(f'<table id="ops-{esc(board.board.board)}"><thead><tr>{head}</tr></thead>'
                     f'<tbody>{"".join(body)}</tbody></table>')
    parts.append("</body></html>\n")
    return "".join(parts)


# ---- Model Explorer ---------------------------------------------------------------------------

def model_explorer_data(board: BoardLayers) -> dict:
    """Node data for Google's Model Explorer (its GraphNodeData: results keyed by a node's output tensor name or
    id, each {"value", "bgColor"}), to load over the source model's graph.

    The value is the error the op introduced where it was replayed, else its error on exit; the colour its
    verdict. Keys are the source model's tensor names (exact and fused ops); without a source model, the op
    names of the .mnn. Several ops on one key (an op and the Raster ops made for it) keep the largest value.
    """
    results: dict = {}
    rank = {"introduced": 4, "over": 3, "defect": 3, "inherited": 2, "ok": 1, "unmatched": 0}
    for row in board.rows:
        if row.verdict == "unmatched":
            continue
        source = row.source or {}
        if source.get("kind") in ("exact", "fused"):
            keys = list(source.get("tensors") or [])
        elif source.get("kind") in (None, "none"):
            keys = [row.name]
        else:
            continue  # a generated op: its neighbour carries the value
        value = row.introduced if row.introduced is not None and row.verdict != "defect" else row.exit
        if value is None:
            continue
        value = FLOAT32_MAX if not math.isfinite(value) else float(value)
        for key in keys:
            previous = results.get(key)
            if previous is None or (rank[row.verdict], value) > (previous["rank"], previous["value"]):
                results[key] = {"value": value, "bgColor": COLOURS[row.verdict], "rank": rank[row.verdict]}
    for entry in results.values():
        del entry["rank"]
    return {
        "name": f"error introduced per op: {board.board.label} vs {board.reference.label}",
        "results": results,
        "thresholds": [{"value": board.rows[0].tolerance if board.rows else 1e-3, "bgColor": COLOURS["ok"]}],
    }
