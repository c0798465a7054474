"""`harness boards`'s views: every board's live health as a table, and what `--clean` freed on each."""

from pathlib import Path
from typing import List

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from .fold import Column, FoldingTable

FEATURE_GROUPS = (("fp16", ("asimdhp", "avx512_fp16")), ("dot", ("asimddp", "avx_vnni", "avx512_vnni")),
                  ("i8mm", ("i8mm", "amx_tile")), ("sve", ("sve", "sve2")))
"""The CPU features a board's row names, each for any of the flags that give it (ARM or x86)."""


def render_cleaned(cleaned: List[dict], console: Console) -> None:
    for item in cleaned:
        if item.get("cleaned"):
            busy = f"; left {len(item['busy'])} job dir(s) whose agent still runs" if item["busy"] else ""
            console.print(f"[green]cleaned[/] {escape(item['board'])}: freed {item['freed_mb']:.1f} MB "
                          f"({len(item['jobs'])} stale job dir(s), {len(item['partials'])} partial upload(s), "
                          f"{len(item['evicted'])} store file(s) evicted){busy}", highlight=False)
        elif item.get("note") and item["note"] != "nothing to clean on this kind of board":
            console.print(f"[yellow]not cleaned[/] {escape(item['board'])}: {escape(item['note'])}",
                          highlight=False)


def render_health(health: List[dict], inventory_path: Path, console: Console) -> None:
    console.print(f"[bold]Boards of[/] {escape(str(inventory_path))}")
    table = FoldingTable([Column("Board", key=True), Column("Up"), Column("Machine"), Column("Python"),
                          Column("MNN"), Column("Features", wrap=True), Column("Disk", "right"),
                          Column("Lock", wrap=True), Column("Tags", wrap=True)])
    for item in health:
        facts = item["facts"]
        features = set(facts.get("cpu_features") or [])
        shown = [label for label, group in FEATURE_GROUPS if features & set(group)]
        mnn = facts.get("mnn_version") or "–"
        if item.get("mnn") == "provision":  # the harness brings MNN: the versions its store holds
            mnn = "brought: " + (" ".join(item.get("provisioned") or []) or "none yet")
        disk = facts.get("free_disk_mb")
        # held: a labgrid place someone else holds; it was not probed.
        up = Text("held", "yellow") if item.get("held") else \
            Text("yes", "green") if item["reachable"] else Text("no", "red")
        # Text, not markup: what a board reports is shown as it is, never read as styles.
        via = f" via {', '.join(item['via'])}" if item.get("via") else ""
        table.add_row(Text.assemble(item["board"], (f" ({item['kind']}{via})", "dim")), up,
                      Text(str(facts.get("machine") or "–")), Text(str(facts.get("python") or "–")),
                      Text(str(mnn), "yellow" if item.get("warning") else ""), " ".join(shown) or "–",
                      f"{disk / 1024:.0f} GB" if disk else "–", Text(str(item.get("lock") or "free")),
                      Text(" ".join(item["tags"])))
    console.print(table)
    for item in health:
        if item.get("workdir_created"):
            console.print(f"[yellow]{escape(item['board'])}: its workdir {escape(item['workdir'])} did not exist "
                          "(a new board, or /tmp cleared by a reboot): made it[/]", highlight=False)
        # Board errors name their board already (they are read alone too, in logs).
        if item["error"]:
            console.print(f"[red]{escape(_named(item['board'], item['error']))}[/]", highlight=False)
        if item.get("warning"):
            console.print(f"[yellow]{escape(_named(item['board'], item['warning']))}[/]", highlight=False)


def _named(board: str, text: str) -> str:
    return text if text.startswith(f"{board}: ") else f"{board}: {text}"
