"""`harness farm`'s views: the emulated boards of this machine with their farms and labs, and what a `down` did, each
from what `--json` prints."""

from rich.console import Console
from rich.text import Text

from .fold import Column, FoldingTable


def render_overview(overview: dict, console: Console) -> None:
    """Every emulated board with the farm it belongs to; the farms, the labs, and the stale boards
    (emulation/control.py's Overview.as_dict())."""
    table = FoldingTable([Column("Farm"), Column("Board", key=True), Column("CPU"), Column("MNN"),
                          Column("Address"), Column("Network"), Column("PID", "right"), Column("Running")],
                         title="Emulated boards",
                         legend=["Farm: the `harness farm up` farm (or labgrid lab) whose inventory lists the "
                                 "board; – none (started by a run from an inventory's kind: emulated board, or left "
                                 "by one)"])
    for status in overview["boards"]:
        running = bool(status.get("running"))
        table.add_row(status["farm"] or "–", status["name"], status.get("cpu", "?"), status.get("mnn_version", "?"),
                      f"{status.get('address', '127.0.0.1')}:{status.get('port', '?')}", status.get("network", "?"),
                      str(status.get("pid") or "–"), Text("yes", "green") if running else Text("no", "dim"))
    console.print(table)
    for farm in overview["farms"]:
        name, missing = farm["name"], farm["missing"]
        console.print(f"[dim]farm {name!r}: {len(farm['members'])} board(s), inventory {farm['inventory']}[/]"
                      + (f" [yellow](no state for {', '.join(missing)}: `harness farm up --farm {name}`)[/]"
                         if missing else ""))
    for lab in overview["labs"]:
        running = lab["coordinator_pid"] and lab["exporter_pid"]
        console.print(f"labgrid lab {lab['prefix']}: coordinator {lab['address']} "
                      f"(pid {lab['coordinator_pid'] or '–'}), exporter (pid {lab['exporter_pid'] or '–'}) "
                      + ("[green]running[/]" if running else "[dim]stopped[/]")
                      + f", places {', '.join(lab['places'])}; inventory {lab['inventory']}", highlight=False)
    stale = overview["stale"]
    if stale:
        command = f"harness farm down --remove {' '.join(stale)}"
        console.print(Text(f"{len(stale)} stopped board(s) belong to no farm: {', '.join(stale)}. "
                           "To delete their state (keys, home):", "yellow"))
        # One line whatever its length, so it can be copied whole: the terminal wraps it, rich does not break it.
        console.print(Text(command, "yellow"), soft_wrap=True)


def render_stopped(stopped: dict, console: Console) -> None:
    """What `farm down` did to each board, then to the labs' processes (emulation/control.py's Stopped, as data)."""
    for name, what in stopped["boards"].items():
        style = {"unknown": "red", "was not running": "dim"}.get(what, "")
        console.print(Text(f"{name}: {what}" + (" (no emulated board of that name here)" if what == "unknown"
                                                else ""), style))
    for process in stopped["lab_processes"]:
        console.print(f"{process}: stopped")
    if not stopped["boards"]:
        console.print("no board to stop")
