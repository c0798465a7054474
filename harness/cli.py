"""The `harness` command.

    harness run SCENARIO.yaml [--inventory FILE] [--targets a,b] [--reports DIR]
    harness prepare SCENARIO.yaml...          build and convert models ahead of time
    harness farm up|down|status [--inventory FILE]

Exit codes: 0 every board matched, 1 some comparison failed, 2 usage or
configuration error (nothing ran), 3 a board could not be used.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

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

    prepare = commands.add_parser("prepare", help="build and convert the scenarios' models now (cached)")
    prepare.add_argument("scenarios", nargs="+")

    farm = commands.add_parser("farm", help="start, stop or show the emulated boards of the inventory")
    farm.add_argument("action", choices=("up", "down", "status"))

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
        report = run_scenario(scenario, inventory, Path(args.reports), progress, only)
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


def cmd_farm(args, console: Console) -> int:
    from rich.table import Table

    from .emulation import board as emulated

    inventory = load_inventory(find_inventory(args.inventory))
    boards = [b for b in inventory.boards.values() if b.kind == "emulated"]
    if not boards:
        console.print(f"the inventory {inventory.path} has no emulated board")
        return EXIT_CONFIG if args.action == "up" else 0
    if args.action == "down":
        names = sorted(set(emulated.list_boards()) | {b.name for b in boards})
        for name in names:
            if emulated.stop(name):
                console.print(f"stopped {name}")
        return 0
    if args.action == "up":
        for board in boards:
            endpoint = emulated.ensure_running(
                emulated.EmulatedBoardSpec(name=board.name, cpu=board.cpu, mnn_version=board.mnn_version or "3.6.1"),
                log=lambda message: console.print(f"[dim]{message}[/]"))
            console.print(f"[green]up[/] {board.name}: {endpoint.user}@{endpoint.host}:{endpoint.port} "
                          f"(qemu -cpu {board.cpu})")
    table = Table("Board", "CPU", "MNN", "Address", "PID", "Running", title="Emulated boards")
    for board in boards:
        status = emulated.status(board.name) or {}
        table.add_row(board.name, status.get("cpu", board.cpu), status.get("mnn_version", board.mnn_version or "?"),
                      f"127.0.0.1:{status['port']}" if status.get("port") else "–", str(status.get("pid") or "–"),
                      "[green]yes[/]" if status.get("running") else "[dim]no[/]")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
