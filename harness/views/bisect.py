"""`harness bisect`'s views, read from its record (bisect.json): a table of the releases tried with their verdict
and metric, the one-line answer, and report.html with the metric drawn by version."""

import math
from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..record.bisect import BisectRecord
from ..record.numbers import format_metric
from .fold import Column, FoldingTable
from .html import CSS, esc

STYLES = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold yellow"}


def bisect_table(record: BisectRecord) -> FoldingTable:
    moving = "Runtime" if record.mode == "runtime" else "Converter"
    table = FoldingTable([Column("MNN", key=True), Column("Runtime"), Column("Converter"), Column("Verdict"),
                          Column(f"{record.board} vs x86", "right"), Column("x86 vs source", "right"),
                          Column("Why", wrap=True)])
    rows = list(record.steps) + ([record.cross] if record.cross else [])
    for index, step in enumerate(rows):
        cross = index == len(record.steps)
        name = f"{step.version} (cross-check)" if cross else step.version
        table.add_row(Text(name, "dim" if cross else ""),
                      Text(step.runtime, "bold" if moving == "Runtime" and not cross else ""),
                      Text(step.converter, "bold" if moving == "Converter" and not cross else ""),
                      Text(step.verdict, STYLES.get(step.verdict, "")),
                      _metric(step.metric, step.value), _metric(step.conversion_metric,
                                                                      step.conversion_value),
                      Text(step.why or "–", "dim" if not step.why else ""))
    return table


def _metric(name: Optional[str], value: Optional[float]) -> str:
    if name is None or value is None:
        return "–"
    return f"{'agree ' if name == 'argmax_agreement' else name.replace('_', ' ') + ' '}{format_metric(value, name)}"


def render_bisect(record: BisectRecord, run_dir: Path, console: Console) -> None:
    console.print(f"[bold]{'Runtime' if record.mode == 'runtime' else 'Converter'} bisect of "
                  f"{escape(record.scenario)} on {escape(record.board)}[/] ({record.mode} moves; the "
                  f"{'converter' if record.mode == 'runtime' else 'runtime'} stays at {record.fixed})",
                  highlight=False)
    console.print(bisect_table(record))
    untried = [v for v in record.versions if v not in {s.version for s in record.steps}]
    if untried:
        console.print(f"[dim]not run (binary search): {', '.join(untried)}; --all runs every release[/]",
                      highlight=False)
    console.print(f"results: {escape(str(run_dir))}/<version>/, bisect.json, report.html", highlight=False)
    style = {0: "green", 1: "bold red"}.get(record.exit_code, "bold yellow")
    console.print(Text(record.line, style))


def metric_by_version_svg(record: BisectRecord, width: int = 620, height: int = 200) -> str:
    """The board's metric against x86 at each release tried, its verdict as the point's colour."""
    steps = [s for s in record.steps if s.value is not None and math.isfinite(s.value)]
    versions: List[str] = record.versions
    if not steps:
        return "<p class=dim>No release gave a number to draw.</p>"
    metric = steps[0].metric
    low, high = min(s.value for s in steps), max(s.value for s in steps)
    if high == low:
        low, high = low - (abs(low) * 0.01 or 1), high + (abs(high) * 0.01 or 1)
    left, right, top, bottom = 70, 20, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom

    def x_of(version: str) -> float:
        return left + plot_w * versions.index(version) / max(len(versions) - 1, 1)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccd"/>',
             f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{esc(format_metric(high, metric))}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">{esc(format_metric(low, metric))}</text>',
             f'<text x="{left}" y="{height - 4}">{esc(metric)} of {esc(record.board)} against x86, by MNN '
             f'{esc(record.mode)} release</text>']
    for version in versions:
        parts.append(f'<text x="{x_of(version):.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                     f'{esc(version)}</text>')
    points = " ".join(f"{x_of(s.version):.1f},{y_of(s.value):.1f}" for s in steps)
    parts.append(f'<polyline fill="none" stroke="#5b6b8c" stroke-width="1.4" points="{points}"/>')
    for s in steps:
        colour = {"PASS": "#137333", "FAIL": "#c5221f"}.get(s.verdict, "#a05a00")
        parts.append(f'<circle cx="{x_of(s.version):.1f}" cy="{y_of(s.value):.1f}" r="4" fill="{colour}">'
                     f'<title>{esc(s.version)}: {esc(s.verdict)} {esc(format_metric(s.value, metric))}'
                     f'</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def bisect_html(record: BisectRecord) -> str:
    """report.html of a bisect: the answer, the metric by version, the table (self-contained, no JavaScript)."""
    rows = []
    for step in list(record.steps) + ([record.cross] if record.cross else []):
        verdict = step.verdict
        rows.append(f"<tr><td>{esc(step.version)}</td><td>{esc(step.runtime)}</td>"
                    f"<td>{esc(step.converter)}</td><td class={'pass' if verdict == 'PASS' else 'fail'}>"
                    f"{esc(verdict)}</td><td class=num>{esc(_metric(step.metric, step.value))}</td>"
                    f"<td class=num>{esc(_metric(step.conversion_metric, step.conversion_value))}</td>"
                    f"<td>{esc(step.why or '–')}</td><td><a href=\"{esc(step.run_id)}/report.html\">"
                    f"run</a></td></tr>")
    banner = "pass" if record.exit_code == 0 else "fail"
    return (f"<!doctype html><html><head><meta charset=utf-8><title>bisect {esc(record.scenario)} on "
            f"{esc(record.board)}</title><style>{CSS}</style></head><body>"
            f"<h1>MNN {esc(record.mode)} bisect: {esc(record.scenario)} on {esc(record.board)}</h1>"
            f"<div class='banner {banner}'>{esc(record.line)}</div>"
            f"<h2>Metric by release</h2>{metric_by_version_svg(record)}"
            f"<h2>Releases tried</h2><table><tr><th>MNN</th><th>runtime</th><th>converter</th><th>verdict</th>"
            f"<th>{esc(record.board)} vs x86</th><th>x86 vs source</th><th>why</th><th></th></tr>"
            f"{''.join(rows)}</table></body></html>")
