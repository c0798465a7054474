"""The `harness` command.

    harness run SCENARIO.yaml [--inventory FILE] [--targets a,b] [--reports DIR]
    harness prepare SCENARIO.yaml...          build and convert models ahead of time
    harness boards [--json]                   every board with live health
    harness farm up [--size N] [--labgrid] | down | status
    harness nightly NIGHTLY.yaml [--reports DIR] [--json]   many scenarios, stored in reports/history.sqlite
    harness report RUN-ID [--reports DIR] [--json]          show a stored run again
    harness history [--scenario S] [--nights N] [--json]    the trend per scenario x board

Exit codes: 0 every board matched, 1 some comparison failed, 2 usage or
configuration error (nothing ran), 3 a board could not be used, 4 (nightly)
the night ran but could not be written to the history.
"""

import argparse
import json
import math
import signal
import sys
from pathlib import Path
from typing import List, Optional

from rich import box
from rich.console import Console
from rich.markup import escape

from .errors import HarnessError
from .inventory import find_inventory, load_inventory
from .runner import EXIT_CONFIG


WEEK_S = 7 * 86400.0
PRECISION_CHOICES = ("normal", "high", "low", "low_bf16")
"""The longest wait any option accepts: longer is a typo, and too large for the clocks that wait on it."""


def bounded(kind=float, minimum: Optional[float] = None, above: Optional[float] = None,
            maximum: Optional[float] = None):
    """An argparse type: a finite number of `kind` within the bounds (minimum/maximum inclusive, above
    exclusive). NaN is refused: `--lock-timeout nan` would wait forever, `--keep-outputs nan` keep nothing."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") \
                from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be more than {above:g}, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


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
    run.add_argument("--find-layer", action="store_true",
                     help="when a board fails, find the first op whose output leaves tolerance on it")
    run.add_argument("--keep-outputs", type=bounded(float, minimum=0.0), default=0.0, metavar="MB",
                     help="keep the boards' raw outputs (outputs.npz) in the run folder, up to MB in all "
                     "(default 0: the report keeps metrics and pictures, not raw tensors)")
    run.add_argument("--lock-timeout", type=bounded(float, minimum=0.0, maximum=WEEK_S), default=300.0,
                     metavar="SECONDS",
                     help="wait this long for another run's lock on a board (default 300)")

    layers = commands.add_parser("layers", help="find the first op that goes wrong on a board, and whether it "
                                 "introduced the error or inherited it")
    layers.add_argument("scenario")
    layers.add_argument("--board", required=True, metavar="NAME[,NAME...]",
                        help="the board(s) to search, comma-separated, each against the same reference")
    layers.add_argument("--against", metavar="NAME", help="compare with this board instead of the x86 host "
                        "(board against board, e.g. an A76 at low against an A53)")
    layers.add_argument("--precision", choices=PRECISION_CHOICES, help="the boards' precision (default: the "
                        "scenario's)")
    layers.add_argument("--threads", type=bounded(int, minimum=1, maximum=256), help="the boards' threads")
    layers.add_argument("--against-precision", choices=PRECISION_CHOICES, help="the reference's precision")
    layers.add_argument("--against-threads", type=bounded(int, minimum=1, maximum=256),
                        help="the reference's threads")
    layers.add_argument("--tolerance", type=bounded(float, above=0.0, maximum=1.0),
                        help="one relative error (max |board - ref| / max |ref|) for every op, instead of the "
                        "default that follows the arithmetic (FP16's resolution at low on an FP16 board)")
    layers.add_argument("--budget", type=bounded(float, above=0.0, maximum=1e6), default=256.0, metavar="MB",
                        help="whole tensors fetched from each board for the replay (default 256)")
    layers.add_argument("--all", action="store_true", help="show every op in the table")
    layers.add_argument("--json", action="store_true", help="print layers.json on stdout")
    layers.add_argument("--reports", default="reports")
    layers.add_argument("--lock-timeout", type=bounded(float, minimum=0.0, maximum=WEEK_S), default=300.0,
                        metavar="SECONDS", help="wait this long for another run's lock on a board (default 300)")

    boards = commands.add_parser("boards", help="every board of the inventory with live health")
    boards.add_argument("--json", action="store_true", help="print the health as JSON on stdout")

    prepare = commands.add_parser("prepare", help="build and convert the scenarios' models now (cached)")
    prepare.add_argument("scenarios", nargs="+")

    farm = commands.add_parser("farm", help="start, stop or show the emulated boards of the inventory")
    farm.add_argument("action", choices=("up", "down", "status"))
    farm.add_argument("--size", type=bounded(int, minimum=0, maximum=249), default=0, metavar="N",
                      help="up: start a farm of N boards (Cortex-A53, A76, max, A76 with an older MNN, ...; at most "
                      "249, one link-local subnet each) and write its inventory; without --size, start the "
                      "inventory's emulated boards")
    farm.add_argument("--labgrid", action="store_true",
                      help="up: also start a labgrid coordinator and exporter on 127.0.0.1, make each board of the "
                      "farm (--size, default 4) a place, and write an inventory of kind: labgrid boards")

    nightly = commands.add_parser("nightly", help="run every scenario of a nightly file, store the results in "
                                  "the history and compare with the previous night")
    nightly.add_argument("file", help="nightly YAML, e.g. scenarios/nightly.yaml")
    nightly.add_argument("--reports", default="reports", help="directory for the runs and history.sqlite "
                         "(default: reports)")
    nightly.add_argument("--json", action="store_true", help="print the night's outcome as JSON on stdout")
    nightly.add_argument("--lock-timeout", type=bounded(float, minimum=0.0, maximum=WEEK_S), default=300.0,
                         metavar="SECONDS", help="wait this long for another run's lock on a board (default 300)")
    nightly.add_argument("--history-timeout", type=bounded(float, minimum=0.0, maximum=WEEK_S), default=300.0,
                         metavar="SECONDS", help="wait this long for another writer of history.sqlite before "
                         "giving up on recording the night (exit 4; its runs stay in their folders; default 300)")

    show = commands.add_parser("report", help="show a stored run again, from reports/<run-id>/summary.json")
    show.add_argument("run_id", metavar="RUN-ID", help="a directory name under --reports (or its path)")
    show.add_argument("--reports", default="reports", help="directory of the runs (default: reports)")
    show.add_argument("--json", action="store_true", help="print summary.json on stdout")

    history = commands.add_parser("history", help="the trend per scenario x board over the last nights")
    history.add_argument("--scenario", help="only this scenario (its name)")
    history.add_argument("--nights", type=bounded(int, minimum=1, maximum=100000), default=14,
                         help="how many nights back (default 14)")
    history.add_argument("--reports", default="reports", help="directory of history.sqlite (default: reports)")
    history.add_argument("--json", action="store_true", help="print the trend as JSON on stdout")

    args = parser.parse_args(argv)
    previous_sigterm = install_sigterm_handler()
    # With --json, stdout carries only the JSON; the human display goes to stderr.
    # Not a terminal (CI logs, files): 100 columns, the width the report is laid out for.
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    console = Console(stderr=stream is sys.stderr, width=None if stream.isatty() else 100)
    try:
        commands = {"run": cmd_run, "prepare": cmd_prepare, "layers": cmd_layers, "boards": cmd_boards,
                    "nightly": cmd_nightly, "report": cmd_report, "history": cmd_history, "farm": cmd_farm}
        return commands[args.command](args, console)
    except HarnessError as error:
        console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        return error.exit_code
    except Terminated:
        console.print("[red]terminated[/]")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run unwinds as on Ctrl-C: labgrid places go back at once."""


def install_sigterm_handler():
    """Turn SIGTERM into Terminated; the previous handler (None where signals cannot be set: not the main thread)."""
    def terminated(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, terminated)
    except ValueError:
        return None


def cmd_run(args, console: Console) -> int:
    from .report import TerminalProgress, render
    from .runner import run_scenario
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario)
    inventory = load_inventory(find_inventory(args.inventory))
    only = [name.strip() for name in args.targets.split(",")] if args.targets else None
    if scenario.matrix:
        return run_matrix_command(scenario, inventory, only, args, console)
    with TerminalProgress(console) as progress:
        report = run_scenario(scenario, inventory, Path(args.reports), progress, only,
                              lock_timeout=args.lock_timeout)
    data = write_run_files(report, console, keep_outputs_mb=args.keep_outputs)
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
    render(report, console)
    failing = [name for name in report.failed if report.boards[name].kind != "local"]
    if (args.find_layer or scenario.find_layer) and failing:
        from .layers import search_layers, write_layers_files
        from .layers_view import render_layers

        console.print(f"[bold]Looking for the first op that goes wrong on {', '.join(failing)}[/]")
        with console.status("tracing every op"):
            layers = search_layers(scenario, inventory, failing, Path(args.reports), lock_timeout=args.lock_timeout)
        write_layers_files(layers)
        render_layers(layers, console)
    return report.exit_code


def cmd_layers(args, console: Console) -> int:
    from .layers import search_layers, write_layers_files
    from .layers_view import render_layers
    from .scenario import load_scenario

    scenario = load_scenario(args.scenario)
    inventory = load_inventory(find_inventory(args.inventory))
    boards = [name.strip() for name in args.board.split(",") if name.strip()]
    with console.status("tracing every op") as status:
        report = search_layers(scenario, inventory, boards, Path(args.reports), against=args.against,
                               board_overrides={"precision": args.precision, "threads": args.threads},
                               against_overrides={"precision": args.against_precision,
                                                  "threads": args.against_threads},
                               tolerance=args.tolerance, budget_mb=args.budget,
                               log=lambda message: status.update(message), lock_timeout=args.lock_timeout)
    write_layers_files(report)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    render_layers(report, console, show_all=args.all)
    return report.exit_code


def run_matrix_command(scenario, inventory, only, args, console: Console) -> int:
    """A scenario with a matrix: every setting is a run of its own; one table says which diverge where."""
    from .matrix import expand, render_matrix, run_matrix
    from .report import TerminalProgress

    settings = expand(scenario)
    console.print(f"[bold]{len(settings)} settings[/]: {', '.join(s.label for s in settings)}")

    class SettingProgress(TerminalProgress):
        def __init__(self, setting):
            super().__init__(console)
            self.setting = setting
            console.print(f"[bold cyan]▶ {setting.label}[/]")
            self.bar.start()

        def target_done(self, name, result):
            super().target_done(name, result)
            if len(self.tasks) and all(self.bar.tasks[t].completed for t in self.tasks.values()):
                self.bar.stop()

    report = run_matrix(scenario, inventory, Path(args.reports), SettingProgress, only,
                        lock_timeout=args.lock_timeout,
                        after_run=lambda setting, single: write_run_files(single, console,
                                                                          keep_outputs_mb=args.keep_outputs))
    if args.json:
        print((report.run_dir / "matrix.json").read_text())
    render_matrix(report, console)
    return report.exit_code


def prune_raw_outputs(run_dir: Path, keep_mb: float) -> list:
    """Delete the boards' raw tensors beyond keep_mb (all of them at 0); return the files kept.

    A nightly farm of tens of boards would otherwise keep gigabytes of logits
    a night. The reference's are kept first: any board can be compared with it.
    """
    files = sorted(run_dir.glob("targets/*/outputs.npz"), key=lambda p: (p.parent.name != "x86", p.stat().st_size))
    files += sorted(run_dir.glob("targets/*/preprocessed.npz"))
    kept, budget = [], keep_mb * 1e6
    for path in files:
        size = path.stat().st_size
        if size <= budget:
            budget -= size
            kept.append(str(path.relative_to(run_dir)))
        else:
            path.unlink()
    return kept


def write_run_files(report, console: Console, keep_outputs_mb: float = 0.0) -> dict:
    """summary.json, junit.xml and report.html into reports/<run-id>/; returns the summary dict.

    Raw outputs are pruned to keep_outputs_mb first (the views use the arrays
    in memory); summary.json is the record and is written next; a JUnit or HTML
    writer that breaks is reported in yellow and does not change the exit code.
    """
    from .html_report import write_html
    from .junit import write_junit
    from .report import summary, write_summary

    report.raw_outputs = prune_raw_outputs(report.run_dir, keep_outputs_mb)
    write_summary(report)
    data = summary(report)
    for label, write in (("junit.xml", lambda: write_junit(data, report.run_dir)),
                         ("report.html", lambda: write_html(report, data))):
        try:
            write()
        except Exception as error:  # a view failing must not hide the run's verdict
            console.print(f"[yellow]could not write {label}: {type(error).__name__}: {escape(str(error))}[/]")
    return data


def cmd_nightly(args, console: Console) -> int:
    from .nightly import load_nightly, nightly_json, render_night, run_nightly

    config = load_nightly(args.file)
    result = run_nightly(config, Path(args.reports), console, args.inventory, args.lock_timeout,
                         args.history_timeout)
    render_night(result, console)
    if args.json:
        print(nightly_json(result))
    return result.exit_code


def stored_report(run_dir: Path, data: dict):
    """A RunReport rebuilt from summary.json, enough for report.render (nothing is re-run).

    The scenario, model and inputs are stand-ins carrying only what the
    summary stored; the board results and comparisons are the real types.
    """
    from types import SimpleNamespace

    from .compare import OutputComparison, TargetComparison
    from .results import TargetResult
    from .runner import RunReport

    from .inputs import InputTensor
    from .scenario import OutputSpec, StreamSpec

    settings = dict(data.get("settings") or {})
    stream = data.get("stream")
    specs = {name: OutputSpec(kind=spec.get("kind", "tensor"), threshold=spec.get("threshold", 0.5))
             for name, spec in (data.get("output_specs") or {}).items()}
    scenario = SimpleNamespace(name=data["scenario"]["name"], path=Path(data["scenario"]["path"]),
                               run=SimpleNamespace(as_dict=lambda: settings),
                               stream=StreamSpec(stream.get("steps"), dict(stream.get("carry") or {}))
                               if stream else None,
                               output_spec=lambda name: specs.get(name, OutputSpec()))
    source = data["model"].get("source")
    model = SimpleNamespace(source_path=Path(source) if source else None,
                            source_name=Path(source or data["model"].get("mnn_path") or "?").name,
                            mnn_path=Path(data["model"].get("mnn_path") or "?"),
                            converted=data["model"].get("converted", True),
                            mnn_sha256=data["model"].get("mnn_sha256", ""),
                            converter_args=data["model"].get("converter_args") or [],
                            outputs=data["model"].get("outputs") or [])
    tensors = [InputTensor(name=t["name"], provider=t["provider"], detail=t.get("detail", ""), shape=tuple(t["shape"]),
                           dtype=t["dtype"], samples=t.get("samples", 1), shared=t.get("shared", False),
                           sha256=t.get("sha256", "")) for t in data["inputs"].get("tensors") or []]
    inputs = SimpleNamespace(sample_names=data["inputs"].get("samples") or [], tensors=tensors,
                             shape=tuple(data["inputs"].get("shape") or ()), sha256=data["inputs"].get("sha256", ""))
    report = RunReport(run_id=data["run_id"], run_dir=run_dir, scenario=scenario, model=model, inputs=inputs,
                       reference=data["reference"],
                       boards={name: SimpleNamespace(name=name, kind=board.get("kind"), mnn_version=None)
                               for name, board in data["boards"].items()},
                       started_at=data.get("started_at", ""), wall_s=float(data.get("wall_s") or 0.0),
                       host=data.get("host") or {})
    # summary.json sorts its keys; the reference goes first again, as in the live report.
    for name, board in sorted(data["boards"].items(), key=lambda item: item[0] != data["reference"]):
        report.results[name] = TargetResult(
            target=name, kind=board.get("kind", "?"), status=board.get("status", "?"), error=board.get("error"),
            facts=board.get("facts") or {}, timings=board.get("timings") or {},
            locked_span=board.get("locked_span"), bytes_uploaded=board.get("bytes_uploaded") or 0,
            bytes_downloaded=board.get("bytes_downloaded") or 0, notes=board.get("notes") or [])
    def comparison_of(target: str, stored: dict) -> TargetComparison:
        return TargetComparison(
            target=target, reference=stored.get("reference") or data["reference"], error=stored.get("error"),
            problems=list(stored.get("problems") or []),
            outputs=[OutputComparison(output, result.get("passed", False), result.get("metrics") or {},
                                      result.get("reasons") or [], series=result.get("series") or {})
                     for output, result in (stored.get("outputs") or {}).items()])

    for name, comparison in data.get("comparisons", {}).items():
        report.comparisons[name] = comparison_of(name, comparison)
    if data.get("conversion"):
        report.conversion = comparison_of(data["reference"], data["conversion"])
    report.attribution = dict(data.get("attribution") or {})
    report.backend_failures = dict(data.get("backend_failures") or {})
    report.findings = [SimpleNamespace(**finding) for finding in data.get("findings") or []]
    return report


def find_run(reports: Path, run_id: str) -> Path:
    from .errors import ConfigError

    candidates = [Path(run_id), reports / run_id]
    for candidate in candidates:
        if (candidate / "summary.json").is_file():
            return candidate
    matches = sorted(p for p in reports.glob(f"*{run_id}*") if (p / "summary.json").is_file()) \
        if reports.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(reports, None, f"{run_id!r} names {len(matches)} runs: "
                          f"{', '.join(p.name for p in matches[:5])}", "give more of the run id")
    raise ConfigError(reports / run_id, None, "no stored run with this id (no summary.json)",
                      f"pick one of `ls {reports}`, or pass --reports DIR")


def cmd_report(args, console: Console) -> int:
    from .errors import ConfigError
    from .report import render

    run_dir = find_run(Path(args.reports), args.run_id)
    try:
        data = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(run_dir / "summary.json", None, f"cannot read it: {error}") from error
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
    render(stored_report(run_dir, data), console)
    for name in ("junit.xml", "report.html"):
        if (run_dir / name).exists():
            console.print(f"[dim]{name}: {run_dir / name}[/]")
    return int(data.get("exit_code", 0))


def cmd_history(args, console: Console) -> int:
    from rich.table import Table

    from .errors import ConfigError
    from .history import History, sparkline
    from .nightly import HISTORY_FILE

    path = Path(args.reports) / HISTORY_FILE
    if not path.is_file():
        raise ConfigError(path, None, "no history yet", "run `harness nightly scenarios/nightly.yaml` first, "
                          "or pass --reports DIR")
    with History(path) as history:
        nights = history.nights(args.nights)
        rows = history.trend(args.scenario, args.nights)
    if args.json:
        print(json.dumps({"history": str(path), "nights": [dict(n) for n in nights], "trend": rows}, indent=1))
        return 0
    first, last = (nights[0]["started_at"], nights[-1]["started_at"]) if nights else ("–", "–")
    table = Table(title=f"History: {len(nights)} night(s), {first} .. {last}", title_justify="left",
                  box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for column in ("Scenario", "Board", "Output", "max abs", "last", "argmax agree", "last", "Verdicts", "Now"):
        table.add_column(column, no_wrap=True, justify="right" if column == "last" else "left")
    marks = {"pass": "[green]●[/]", "fail": "[red]✗[/]", "error": "[red]E[/]", "unusable": "[yellow]U[/]",
             None: "[dim]·[/]"}
    for row in rows:
        last_abs = next((v for v in reversed(row["max_abs"]) if v is not None), None)
        last_agree = next((v for v in reversed(row["argmax_agreement"]) if v is not None), None)
        status = next((s for s in reversed(row["status"]) if s is not None), None)
        table.add_row(row["scenario"], row["board"], row["output"], sparkline(row["max_abs"], log=True),
                      f"{last_abs:.2e}" if last_abs is not None else "–", sparkline(row["argmax_agreement"]),
                      f"{last_agree:.3%}" if last_agree is not None else "–",
                      "".join(marks.get(s, "?") for s in row["status"]),
                      {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]"}.get(status, f"[red]{status}[/]"))
    console.print(table)
    if not rows:
        console.print("[dim]nothing recorded" + (f" for scenario {args.scenario}" if args.scenario else "") + "[/]")
    return 0


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
        # A holder's name is what a user of a shared lab looks for: room for it even at 80 columns,
        # where the board's kind goes under its name.
        min_widths = {"Lock": 16 if any(item.get("held") for item in health) else 6, "Tags": 6}
        kind_separator = " " if console.width >= 100 else "\n"
        for column in ("Board", "Up", "Machine", "Python", "MNN", "Features", "Disk", "Lock", "Tags"):
            table.add_column(column, no_wrap=column not in ("Tags", "Lock", "Features"),
                             min_width=min_widths.get(column))
        for item in health:
            facts = item["facts"]
            features = set(facts.get("cpu_features") or [])
            shown = [label for label, group in (("fp16", ("asimdhp", "avx512_fp16")),
                                                ("dot", ("asimddp", "avx_vnni", "avx512_vnni")),
                                                ("i8mm", ("i8mm", "amx_tile")), ("sve", ("sve", "sve2")))
                     if features & set(group)]
            mnn = facts.get("mnn_version") or "–"
            disk = facts.get("free_disk_mb")
            # held: a labgrid place someone else holds; it was not probed.
            up = "[yellow]held[/]" if item.get("held") else "[green]yes[/]" if item["reachable"] else "[red]no[/]"
            table.add_row(f"{item['board']}{kind_separator}[dim]({item['kind']})[/]", up,
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
    from .emulation.farm import FARM_BOARDS, farm_down, farm_up
    from .emulation.labgrid_farm import labgrid_down, labgrid_status, labgrid_up

    def log(message):
        console.print(f"[dim]{message}[/]")

    if args.action == "down":
        for name in farm_down():
            console.print(f"stopped {name}")
        for name in labgrid_down():
            console.print(f"stopped {name}")
        return 0
    if args.action == "up" and args.labgrid:
        size = args.size or len(FARM_BOARDS)
        path = labgrid_up(size, log)
        address = next(lab["address"] for lab in labgrid_status() if lab["prefix"] == "farm")
        console.print(f"[green]labgrid lab of {size} place(s) up[/]: coordinator {address}; its inventory: {path}\n"
                      f"  harness --inventory {path} boards\n"
                      f"  labgrid-client -x {address} places")
    elif args.action == "up" and args.size:
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
    for lab in labgrid_status():
        running = lab["coordinator_pid"] and lab["exporter_pid"]
        console.print(f"labgrid lab {lab['prefix']}: coordinator {lab['address']} "
                      f"(pid {lab['coordinator_pid'] or '–'}), exporter (pid {lab['exporter_pid'] or '–'}) "
                      + ("[green]running[/]" if running else "[dim]stopped[/]")
                      + f", places {', '.join(lab['places'])}; inventory {lab['inventory']}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
