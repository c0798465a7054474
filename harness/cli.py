"""The `harness` command.

    harness run SCENARIO.yaml [--inventory FILE] [--targets a,b] [--reports DIR]
    harness prepare SCENARIO.yaml...          build and convert models ahead of time
    harness boards [--json]                   every board with live health
    harness farm up [--size N] | down | status

Exit codes: 0 every board matched, 1 some comparison failed, 2 usage or
configuration error (nothing ran), 3 a board could not be used.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from rich import box
from rich.console import Console

from .errors import HarnessError
from .inventory import find_inventory, load_inventory
from .runner import EXIT_CONFIG


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="harness", description="Does your MNN model give the same answers "
                                     "on the ARM board as on x86?")
    parser.add_argument("--inventory", help="inventory YAML (default: $MNN_HARNESS_INVENTORY, ./inventory.yaml, "
                        "or the built-in x86 + emulated Cortex-A76)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a scenario on its boards and compare with x86")
    run.add_argument("scenario", help="scenario YAML, e.g. scenarios/segformer.yaml")
    run.add_argument("--targets", help="comma-separated subset of the scenario's targets")
    run.add_argument("--reports", default="reports", help="directory for reports/<run-id>/ (default: reports)")
    run.add_argument("--json", action="store_true", help="print summary.json on stdout instead of the report")
    run.add_argument("--lock-timeout", type=float, default=300.0, metavar="SECONDS",
                     help="wait this long for another run's lock on a board (default 300)")

    boards = commands.add_parser("boards", help="every board of the inventory with live health")
    boards.add_argument("--json", action="store_true", help="print the health as JSON on stdout")

    prepare = commands.add_parser("prepare", help="build and convert the scenarios' models now (cached)")
    prepare.add_argument("scenarios", nargs="+")

    farm = commands.add_parser("farm", help="start, stop or show the emulated boards of the inventory")
    farm.add_argument("action", choices=("up", "down", "status"))
    farm.add_argument("--size", type=int, default=0, metavar="N",
                      help="up: start a farm of N boards (Cortex-A53, A76, max, A76 with an older MNN, ...) and "
                      "write its inventory; without --size, start the inventory's emulated boards")

    args = parser.parse_args(argv)
    # With --json, stdout carries only the JSON; the human display goes to stderr.
    # Not a terminal (CI logs, files): 100 columns, the width the report is laid out for.
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    console = Console(stderr=stream is sys.stderr, width=None if stream.isatty() else 100)
    try:
        if args.command == "run":
            return cmd_run(args, console)
        if args.command == "prepare":
            return cmd_prepare(args, console)
        if args.command == "boards":
            return cmd_boards(args, console)
        return cmd_farm(args, console)
    except HarnessError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        return error.exit_code
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130


def cmd_run(args, console: Console) -> int:
    from .report import TerminalProgress, render, summary, write_summary
    from .runner import run_scenario
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario)
    inventory = load_inventory(find_inventory(args.inventory))
    only = [name.strip() for name in args.targets.split(",")] if args.targets else None
    with TerminalProgress(console) as progress:
        report = run_scenario(scenario, inventory, Path(args.reports), progress, only,
                              lock_timeout=args.lock_timeout)
    write_summary(report)
    if args.json:
        print(json.dumps(summary(report), indent=1, sort_keys=True))
    render(report, console)
    return report.exit_code


def cmd_prepare(args, console: Console) -> int:
    from .model import prepare_model
    from .scenario import load_scenario

    for path in args.scenarios:
        scenario = load_scenario(path)
        model = prepare_model(scenario.model, log=lambda message: console.print(f"[dim]{message}[/]"))
        console.print(f"[green]ready[/] {scenario.name}: {model.mnn_path} (sha256 {model.mnn_sha256[:12]}, "
                      f"converter {' '.join(model.converter_args) or 'defaults'})")
    return 0


def cmd_boards(args, console: Console) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from rich.table import Table

    from .targets import make_target

    inventory = load_inventory(find_inventory(args.inventory))
    targets = [make_target(board) for board in inventory.boards.values()]
    with console.status(f"probing {len(targets)} board(s)"):
        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            health = list(pool.map(lambda target: target.probe(), targets))
    if args.json:
        print(json.dumps(health, indent=1))
    else:
        table = Table(title=f"Boards of {inventory.path}", title_justify="left", header_style="bold",
                      box=box.SIMPLE_HEAD)
        for column in ("Board", "Up", "Machine", "Python", "MNN", "Features", "Disk", "Lock", "Tags"):
            table.add_column(column, no_wrap=column not in ("Tags", "Lock", "Features"),
                             min_width=6 if column in ("Lock", "Tags") else None)
        for item in health:
            facts = item["facts"]
            features = set(facts.get("cpu_features") or [])
            shown = [label for label, group in (("fp16", ("asimdhp", "avx512_fp16")),
                                                ("dot", ("asimddp", "avx_vnni", "avx512_vnni")),
                                                ("i8mm", ("i8mm", "amx_tile")), ("sve", ("sve", "sve2")))
                     if features & set(group)]
            mnn = facts.get("mnn_version") or "–"
            disk = facts.get("free_disk_mb")
            table.add_row(f"{item['board']} [dim]({item['kind']})[/]",
                          "[green]yes[/]" if item["reachable"] else "[red]no[/]",
                          facts.get("machine", "–"), facts.get("python", "–"),
                          f"[yellow]{mnn}[/]" if item.get("warning") else mnn, " ".join(shown) or "–",
                          f"{disk / 1024:.0f} GB" if disk else "–", item.get("lock") or "free",
                          " ".join(item["tags"]))
        console.print(table)
        for item in health:
            if item["error"]:
                console.print(f"[red]{item['board']}: {item['error']}[/]")
            if item.get("warning"):
                console.print(f"[yellow]{item['board']}: {item['warning']}[/]")
    return 0 if all(item["reachable"] for item in health) else 3


def cmd_farm(args, console: Console) -> int:
    from rich.table import Table

    from .emulation import board as emulated
    from .emulation.farm import farm_down, farm_up

    def log(message):
        console.print(f"[dim]{message}[/]")

    if args.action == "down":
        for name in farm_down():
            console.print(f"stopped {name}")
        return 0
    if args.action == "up" and args.size:
        path = farm_up(args.size, log)
        console.print(f"[green]farm of {args.size} board(s) up[/]; its inventory: {path}\n"
                      f"  harness --inventory {path} boards")
    elif args.action == "up":
        inventory = load_inventory(find_inventory(args.inventory))
        boards = [b for b in inventory.boards.values() if b.kind == "emulated"]
        if not boards:
            console.print(f"the inventory {inventory.path} has no emulated board; try `harness farm up --size 4`")
            return EXIT_CONFIG
        for board in boards:
            emulated.ensure_running(emulated.EmulatedBoardSpec(
                name=board.name, cpu=board.cpu, mnn_version=board.mnn_version or "3.6.1"), log=log)
    table = Table("Board", "CPU", "MNN", "Address", "Network", "PID", "Running", title="Emulated boards",
                  title_justify="left")
    for name in emulated.list_boards():
        status = emulated.status(name) or {}
        table.add_row(name, status.get("cpu", "?"), status.get("mnn_version", "?"),
                      f"{status.get('address', '127.0.0.1')}:{status.get('port', '?')}", status.get("network", "?"),
                      str(status.get("pid") or "–"), "[green]yes[/]" if status.get("running") else "[dim]no[/]")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
