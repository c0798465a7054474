"""A night's views: the table of its runs, what changed since the previous night, and its outcome as JSON."""

import json

from rich.console import Console
from rich.text import Text

from ..analysis.outcome import summary_text
from ..record.history import EXIT_HISTORY, NightResult, regressions_text
from .fold import Column, FoldingTable


def _key(key) -> str:
    scenario, board, output = key
    return f"{scenario} / {board} / {output}"


def render_night(result: NightResult, console: Console) -> None:
    title = f"Night {result.night}" if result.night is not None else f"Night of {result.started_at} (not in the history)"
    table = FoldingTable([Column("Scenario", key=True), Column("Run"), Column("Boards"),
                          Column("Verdict", key=True, wrap=True)], title=title)
    for run in result.runs:
        if run.summary is None:
            table.add_row(run.scenario, "–", "–", Text(f"ERROR {run.error.splitlines()[0]}", "bold red"))
            continue
        comparisons = run.summary.get("comparisons", {})
        passed = [name for name, c in comparisons.items() if c.get("passed")]
        label, text = summary_text(run.summary, at_most=1)
        table.add_row(run.scenario, run.summary.get("run_id", "?"), f"{len(passed)}/{len(comparisons)} pass",
                      Text(label, "bold green") if run.exit_code == 0 else Text(f"{label}: {text}", "bold red"))
    console.print(table)
    diff = result.diff
    if result.history_error:
        folders = [str(run_dir) for run_dir in result.run_dirs if run_dir is not None]
        console.print(Text(f"the night could not be written to {result.history_path}: {result.history_error}",
                           "bold red"))
        console.print(Text("  its runs are safe in their folders: " + (", ".join(folders) or "(none ran)"), "red"))
        if result.history_fix:
            console.print(Text(f"  fix: {result.history_fix}", "red"))
    elif diff.previous is None:
        console.print("[dim]first night in the history: nothing to compare with[/]")
    else:
        console.print(f"[bold]Since night {diff.previous}[/]")
        lines = []
        for key, reason in diff.new_failures:
            lines.append(Text(f"  new failure  {_key(key)}: {reason}", "bold red"))
        for key in diff.fixed:
            lines.append(Text(f"  fixed        {_key(key)}", "green"))
        style = "bold red" if result.policy.fail_on_regression else "yellow"
        by_key = {}
        for regression in diff.regressions:
            by_key.setdefault(regression.key, []).append(regression)
        for key, found in by_key.items():
            lines.append(Text(f"  regression   {_key(key)}: {regressions_text(found)}", style))
        for key, reason in diff.still_failing:
            lines.append(Text(f"  still failing {_key(key)}: {reason}", "red"))
        for scenario, before, after in diff.settings_changed:
            changed = ", ".join(f"{k} {before.get(k)} -> {after.get(k)}" for k in sorted(set(before) | set(after))
                                if before.get(k) != after.get(k))
            lines.append(Text(f"  settings     {scenario}: {changed}", "yellow"))
        for key in diff.new_keys:
            lines.append(Text(f"  new          {_key(key)}", "dim"))
        for key in diff.gone_keys:
            lines.append(Text(f"  gone         {_key(key)}", "dim"))
        for line in lines or [Text("  no change in verdicts, no regression", "green")]:
            console.print(line)
    if not result.history_error:
        console.print(f"[dim]history: {result.history_path}[/]")
    if result.dashboard:
        console.print(f"[dim]dashboard: {result.dashboard}[/]")
    counts = (f"{len(result.runs)} run(s), {len(diff.new_failures)} new failure(s), {len(diff.fixed)} fixed, "
              f"{len(diff.regressions)} regression(s)")
    if result.exit_code == 0 and diff.regressions:
        counts += " (fail_on_regression: false)"
    label = {0: ("NIGHT OK", "bold yellow" if diff.regressions else "bold green"), 1: ("NIGHT FAILED", "bold red"), 2: ("CONFIG ERROR", "bold red"),
             3: ("BOARD ERROR", "bold red"), EXIT_HISTORY: ("NOT IN HISTORY", "bold red")}.get(result.exit_code, ("?", "red"))
    console.print(Text(f"{label[0]}  {counts}  [exit {result.exit_code}]", label[1]))


def nightly_json(result: NightResult) -> str:
    return json.dumps(result.as_dict(), indent=1, sort_keys=True)
