"""`harness history`'s view: the trend per scenario x board x output over the last nights, as sparklines."""

from typing import List, Optional

from rich.console import Console
from rich.text import Text

from ..record.numbers import format_metric
from ..record.history import last_value, row_label_metric, sparkline
from .fold import Column, FoldingTable

MARKS = {"pass": "[green]●[/]", "fail": "[red]✗[/]", "error": "[red]E[/]", "unusable": "[yellow]U[/]",
         None: "[dim]·[/]"}
"""A night's verdict of a row, one character each."""


def render_trend(nights: list, rows: List[dict], scenario: Optional[str], console: Console) -> None:
    first, last = (nights[0]["started_at"], nights[-1]["started_at"]) if nights else ("–", "–")
    table = FoldingTable([Column("Scenario", key=True), Column("Board", key=True), Column("Output", key=True),
                          Column("max abs"), Column("last", "right", label="max abs last"), Column("labels"),
                          Column("last", "right", label="labels last"), Column("Verdicts"),
                          Column("Now", key=True)],
                         title=f"History: {len(nights)} night(s), {first} .. {last}",
                         legend=["labels: argmax agreement (class logits) or mask IoU (probability maps); "
                                 "verdicts per night: ● pass, ✗ fail, E did not run, U unusable, · absent"])
    for row in rows:
        label = row_label_metric(row)
        status = last_value(row["status"])
        table.add_row(row["scenario"], row["board"], row["output"], sparkline(row["max_abs"], log=True),
                      format_metric(last_value(row["max_abs"]), "max_abs"),
                      sparkline(row[label]) if label else "–",
                      format_metric(last_value(row[label]), label) if label else "–",
                      Text.from_markup("".join(MARKS.get(s, "?") for s in row["status"])),
                      Text.from_markup({"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]"}.get(
                          status, f"[red]{status}[/]")))
    console.print(table)
    if not rows:
        console.print("[dim]nothing recorded" + (f" for scenario {scenario}" if scenario else "") + "[/]")
