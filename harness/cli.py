"""The `harness` command.

    harness run SCENARIO.yaml [--inventory FILE] [--targets a,tag:fp16] [--reports DIR]
    harness init MODEL [--board USER@HOST]     a starter scenario (and inventory) for a model
    harness doctor                             what this host needs, each ok or missing
    harness prepare SCENARIO.yaml...          build and convert models ahead of time
    harness boards [--json] [--clean]         every board with live health (--clean: remove leftovers)
    harness farm up [--size N] [--farm F] [--labgrid] | down [NAME...] [--farm F] [--all] [--remove] | status
    harness inspect MODEL                    inputs and outputs (names, shapes, dtypes) of an ONNX/TFLite/MNN file
    harness nightly NIGHTLY.yaml [--reports DIR] [--json]   many scenarios, stored in reports/history.sqlite
    harness bisect SCENARIO --board B --mnn 3.0.0..3.6.1 [--all] [--converter]   which MNN release breaks it
    harness repro LAYERS_FOLDER [--op NAME] [--board B]      cut the op out into a bundle for MNN's maintainers
    harness report RUN-ID [--reports DIR] [--json]          show a stored run again
    harness history [--scenario S] [--nights N] [--json]    the trend per scenario x board
    harness schema scenario|inventory|nightly [--path]      the JSON Schema of a file, for editors and CI
    harness completion bash|zsh|tcsh                          a shell completion script

Every command takes -v/--debug (the SSH and agent conversation into a log file), -q (only the verdict and
errors) and --inventory; errors go to stderr, and with --json stdout carries only the JSON.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.markup import escape

from .record.run import EXIT_CONFIG
from .core.errors import ConfigError, HarnessError
from .config.inventory import find_inventory, load_inventory
from .config.scenario import PRECISIONS
from .core.shipped import scenario_path
from .execution.interrupt import signals_handled
from .execution.targets.lock import LOCK_TIMEOUT_S
from .record.history import HISTORY_TIMEOUT_S


WEEK_S = 7 * 86400.0
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


EXIT_CODES = """\
exit codes:
  0    every board matched (other commands: done, everything ok)
  1    some comparison failed, or the model did not run on a board
  2    usage or configuration error, or something the host needs is missing: nothing ran
  3    a board could not be used (unreachable, host key refused, held past --lock-timeout)
  4    (nightly) the night ran but could not be written to the history
  130  stopped by Ctrl-C (SIGINT)
  143  stopped by SIGTERM"""


class VersionAction(argparse.Action):
    """`harness --version`: the harness, the host's MNN and the agent's digest (what a board runs), then exit 0."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__
        from .core.agent_bundle import digest
        from .core.build.model import mnn_version

        lines = [f"mnn-harness {__version__}"]
        for label, read in (("host MNN", mnn_version), ("agent", lambda: digest()[:16])):
            try:
                lines.append(f"{label} {read()}")
            except HarnessError as error:
                lines.append(f"{label} missing ({str(error).splitlines()[0]})")
        lines.append(f"Python {sys.version.split()[0]} ({sys.executable})")
        print("\n".join(lines))
        parser.exit()


def add_common_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The options every command takes, before or after its name (`harness -v run x.yaml`, `harness run x.yaml
    -v`). On the subcommands their defaults are SUPPRESS, so a subcommand never resets what the top level got."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--inventory", default=default(None), help="inventory YAML (default: "
                        "$MNN_HARNESS_INVENTORY, ./inventory.yaml, or the built-in x86 + emulated Cortex-A76)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default(False),
                        help="write the SSH conversation (paramiko) and the agents' into a log file, moved into the "
                        "run folder as harness.log; its path is the last line on stderr")
    parser.add_argument("--debug", action="store_true", default=default(False),
                        help="as -v, with every SSH packet, command output and agent message")
    parser.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="print only the verdict line and errors (the exit code says the rest)")


def add_lock_timeout(parser: argparse.ArgumentParser, board: str = "a board") -> None:
    parser.add_argument("--lock-timeout", type=bounded(float, minimum=0.0, maximum=WEEK_S), default=LOCK_TIMEOUT_S,
                        metavar="SECONDS", help=f"wait this long for another run's lock on {board} "
                        "(default %(default)g)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Does your MNN model give the same answers "
                                     "on the ARM board as on x86?", epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction, help="the harness's version, the host's MNN and the "
                        "agent's digest")
    add_common_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a scenario on its boards and compare with x86")
    run.add_argument("scenario", help="scenario YAML, e.g. scenarios/segformer.yaml, or a shipped example: "
                     "example:quick")
    run.add_argument("--targets", metavar="BOARD[,BOARD|tag:TAG...]",
                     help="run on these boards of the inventory instead of the scenario's targets; tag:TAG takes "
                     "every board carrying that tag (the reference always runs)")
    run.add_argument("--reports", default="reports", help="directory for reports/<run-id>/ (default: reports)")
    run.add_argument("--json", action="store_true", help="print summary.json on stdout instead of the report")
    run.add_argument("--details", action="store_true",
                     help="a matrix: under its table, each setting's broken limits and, for a stream, the error "
                     "per step of every board")
    run.add_argument("--find-layer", action="store_true",
                     help="when a board fails, find the first op whose output leaves tolerance on it")
    run.add_argument("--keep-outputs", type=bounded(float, minimum=0.0), default=0.0, metavar="MB",
                     help="keep the boards' raw outputs (outputs.npz) in the run folder, up to MB in all "
                     "(default 0: the report keeps metrics and pictures, not raw tensors)")
    add_lock_timeout(run)

    layers = commands.add_parser("layers", help="find the first op that goes wrong on a board, and whether it "
                                 "introduced the error or inherited it")
    layers.add_argument("scenario", help="scenario YAML, e.g. scenarios/quick.yaml (its model, inputs and run "
                        "settings)")
    layers.add_argument("--board", required=True, metavar="NAME[,NAME...]",
                        help="the board(s) to search, comma-separated, each against the same reference")
    layers.add_argument("--against", metavar="NAME", help="compare with this board instead of the x86 host "
                        "(board against board, e.g. an A76 at low against an A53)")
    layers.add_argument("--precision", choices=PRECISIONS, help="the boards' precision (default: the "
                        "scenario's)")
    layers.add_argument("--threads", type=bounded(int, minimum=1, maximum=256), help="the boards' threads")
    layers.add_argument("--against-precision", choices=PRECISIONS, help="the reference's precision")
    layers.add_argument("--against-threads", type=bounded(int, minimum=1, maximum=256),
                        help="the reference's threads")
    layers.add_argument("--tolerance", type=bounded(float, above=0.0, maximum=1.0),
                        help="one relative error (max |board - ref| / max |ref|) for every op, instead of the "
                        "default that follows the arithmetic (FP16's resolution at low on an FP16 board)")
    layers.add_argument("--budget", type=bounded(float, above=0.0, maximum=1e6), default=256.0, metavar="MB",
                        help="whole tensors fetched from each board for the replay (default 256)")
    layers.add_argument("--all", action="store_true", help="show every op in the table")
    layers.add_argument("--json", action="store_true", help="print layers.json on stdout")
    layers.add_argument("--reports", default="reports", help="directory for reports/<run-id>-layers/ "
                        "(default: reports)")
    add_lock_timeout(layers)
    layers.add_argument("--repro", action="store_true", help="then, for each board, cut the first op that introduces "
                        "error out of the model into a bundle for MNN's maintainers and verify it (harness repro)")

    repro = commands.add_parser("repro", help="cut an op a layer search found out of the model into a bundle for "
                                "MNN's maintainers (model, inputs, script, C++, ISSUE.md), verified on the board")
    repro.add_argument("folder", metavar="RUN_OR_LAYERS_FOLDER",
                       help="the folder `harness layers` wrote (reports/<run-id>-layers), or a run's folder whose "
                       "search `--find-layer` made; a path or a name under --reports")
    repro.add_argument("--op", metavar="NAME", help="the op, as the search names it (default: the first op that "
                       "introduces error, else the first NaN/Inf)")
    repro.add_argument("--board", metavar="NAME", help="the board of the search (needed when it searched several)")
    repro.add_argument("--widen", type=bounded(int, minimum=0, maximum=64), default=3, metavar="LEVELS",
                       help="when the op alone does not show the error, grow the cut this many producer levels "
                       "upstream at most, one at a time (default 3)")
    repro.add_argument("--tolerance", type=bounded(float, above=0.0, maximum=1.0),
                       help="the relative error the bundle must show (default: the search's tolerance for the op)")
    repro.add_argument("--json", action="store_true", help="print repro.json on stdout")
    repro.add_argument("--reports", default="reports", help="directory where a folder given by name is looked "
                       "for (default: reports)")
    add_lock_timeout(repro)

    bisect = commands.add_parser("bisect", help="from which MNN release does the model go wrong on a board: the "
                                 "runtime (on the board and x86) or, with --converter, the converter")
    bisect.add_argument("scenario", help="scenario YAML whose model and inputs each release runs")
    bisect.add_argument("--board", required=True, metavar="NAME", help="the board (the harness brings each "
                        "release there; not a `mnn: system` board unless --converter)")
    bisect.add_argument("--mnn", required=True, metavar="FIRST..LAST|V1,V2,...",
                        help="the releases: a range (3.0.0..3.6.1: every release with wheels in it) or a list")
    bisect.add_argument("--converter", action="store_true",
                        help="move the converter (each release's, on the host) instead of the runtime")
    bisect.add_argument("--all", action="store_true", help="run every release and show the metric of each "
                        "(default: both ends, then a binary search when the verdict flips)")
    bisect.add_argument("--reports", default="reports", help="directory for reports/<run-id>-bisect/ (a run folder "
                        "per release)")
    bisect.add_argument("--json", action="store_true", help="print bisect.json on stdout")
    add_lock_timeout(bisect, "the board")

    boards = commands.add_parser("boards", help="every board of the inventory with live health")
    boards.add_argument("--json", action="store_true", help="print the health as JSON on stdout")
    boards.add_argument("--clean", action="store_true",
                        help="first remove what failed or interrupted runs left on each board (job dirs, partial "
                        "uploads) and evict its store down to store_max_mb, saying what that freed")

    prepare = commands.add_parser("prepare", help="build and convert the scenarios' models now (cached)")
    prepare.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files whose models to "
                         "build and convert (e.g. scenarios/*.yaml)")

    farm = commands.add_parser("farm", help="start, stop or show emulated boards and farms of them")
    farm.add_argument("action", choices=("up", "down", "status"), help="up: start boards, down: stop them, status: "
                      "list every emulated board of this machine")
    farm.add_argument("boards", nargs="*", metavar="NAME", help="down: stop only these boards")
    farm.add_argument("--size", type=bounded(int, minimum=0, maximum=249), default=0, metavar="N",
                      help="up: start a farm of N boards (Cortex-A53, A76, max, A76 with MNN 3.4.1, then again "
                      "with -2, -3 suffixes; at most 249, one link-local subnet each) and write its inventory; "
                      "without --size, start the inventory's emulated boards")
    farm.add_argument("--farm", metavar="NAME", help="the farm's name (default: farm): up names its boards "
                      "NAME-a53, ... and its inventory; down and status take only its boards")
    farm.add_argument("--labgrid", action="store_true",
                      help="up: also start a labgrid coordinator and exporter on 127.0.0.1, make each board of the "
                      "farm (--size, default 4) a place, and write an inventory of kind: labgrid boards")
    farm.add_argument("--bare", action="store_true",
                      help="up: also start NAME-bare, a Cortex-A76 whose Python has no numpy and no MNN, which the "
                      "harness provisions with the MNN each run asks for (alone without --size)")
    farm.add_argument("--all", action="store_true", help="down: every emulated board and labgrid lab of this "
                      "machine, whoever started it (other farms, other users' and tests' boards too)")
    farm.add_argument("--remove", action="store_true", help="down: also delete the boards' state (keys, "
                      "address, home); for boards that are stale")
    farm.add_argument("--json", action="store_true", help="print the boards (down: what was stopped) as JSON on "
                      "stdout")

    inspect = commands.add_parser("inspect", help="a model's inputs and outputs: names, shapes, dtypes")
    inspect.add_argument("model", help="an .onnx, .tflite or .mnn file, or pkg:PACKAGE/path/in/it")
    inspect.add_argument("--json", action="store_true", help="print the inputs and outputs as JSON on stdout")

    init = commands.add_parser("init", help="write a starter scenario for a model (and, with --board, an "
                               "inventory with that board, after checking its host key and Python)")
    init.add_argument("model", help="an .onnx, .tflite or .mnn file")
    init.add_argument("--board", metavar="USER@HOST[:PORT]", help="a real board reached over SSH: checked now "
                      "(known host key; a CPython >= 3.8 on a 64-bit ARM or x86 machine with glibc >= 2.17, to "
                      "which the first run brings MNN and numpy), then written into inventory.yaml beside the "
                      "scenario (a new one, or appended)")
    init.add_argument("--name", help="the board's name in the inventory (default: its host)")
    init.add_argument("--key", metavar="FILE", help="the SSH private key for --board (default: your agent and "
                      "~/.ssh keys)")
    init.add_argument("--known-hosts", metavar="FILE", help="known_hosts that holds the board's host key "
                      "(default: ~/.ssh/known_hosts)")
    init.add_argument("--python", default="python3", help="the board's Python (default: python3)")
    init.add_argument("--mnn", choices=("provision", "system"), help="how --board gets MNN: provision (default: "
                      "the harness brings the host's MNN and numpy; nothing installed there) or system (the board's "
                      "own Python must have numpy and MNN; their version is written)")
    init.add_argument("--output", metavar="FILE", help="the scenario to write (default: ./MODEL-NAME.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite the scenario if it exists")
    init.add_argument("--json", action="store_true", help="print what was written as JSON on stdout")

    doctor = commands.add_parser("doctor", help="everything this host needs, each ok or missing, and the fix")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON on stdout")

    schema = commands.add_parser("schema", help="the JSON Schema of a scenario, inventory or nightly file, for "
                                 "editors (`# yaml-language-server: $schema=PATH` as the file's first line) and CI")
    schema.add_argument("kind", choices=("scenario", "inventory", "nightly"), help="which file's schema")
    schema.add_argument("--path", action="store_true", help="print the path of the installed schema file instead "
                        "(for the modeline)")

    completion = commands.add_parser("completion", help="print a shell completion script: "
                                     "`eval \"$(harness completion bash)\"`")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to write the script for")

    nightly = commands.add_parser("nightly", help="run every scenario of a nightly file, store the results in "
                                  "the history and compare with the previous night")
    nightly.add_argument("file", help="nightly YAML, e.g. scenarios/nightly.yaml")
    nightly.add_argument("--reports", default="reports", help="directory for the runs and history.sqlite "
                         "(default: reports)")
    nightly.add_argument("--json", action="store_true", help="print the night's outcome as JSON on stdout")
    add_lock_timeout(nightly)
    nightly.add_argument("--history-timeout", type=bounded(float, minimum=0.0, maximum=WEEK_S),
                         default=HISTORY_TIMEOUT_S, metavar="SECONDS", help="wait this long for another writer of "
                         "history.sqlite before giving up on recording the night (exit 4; its runs stay in their "
                         "folders; default %(default)g)")

    show = commands.add_parser("report", help="show a stored run again, from reports/<run-id>/summary.json")
    show.add_argument("run_id", metavar="RUN-ID", help="a directory name under --reports (or its path)")
    show.add_argument("--reports", default="reports", help="directory of the runs (default: reports)")
    show.add_argument("--json", action="store_true", help="print summary.json on stdout")
    show.add_argument("--details", action="store_true",
                      help="a matrix: each setting's broken limits and per-step stream errors under the table")

    history = commands.add_parser("history", help="the trend per scenario x board over the last nights")
    history.add_argument("--scenario", help="only this scenario (its name)")
    history.add_argument("--nights", type=bounded(int, minimum=1, maximum=100000), default=14,
                         help="how many nights back (default 14)")
    history.add_argument("--reports", default="reports", help="directory of history.sqlite (default: reports)")
    history.add_argument("--json", action="store_true", help="print the trend as JSON on stdout")

    for subcommand in commands.choices.values():
        # Every command, those added later too: the common options after its name, and the exit codes in its help.
        add_common_options(subcommand, top=False)
        subcommand.epilog = EXIT_CODES
        subcommand.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "farm" and not any(arg.startswith("-") for arg in extra):
        args.boards += extra  # `farm down --remove a b`: names after an option (argparse stops at the option)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # With --json, stdout carries only the JSON; the human display goes to stderr. Errors always go to stderr.
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    console = Console(stderr=stream is sys.stderr, width=console_width(stream), quiet=args.quiet)
    errors = Console(stderr=True, width=console_width(sys.stderr))
    args.verdict = Console(stderr=stream is sys.stderr, width=console_width(stream))
    """Where -q still prints: the verdict line."""
    args.run_dir = None
    """The run folder the command made, if any: where the -v log goes."""
    debug_log = None
    if args.verbose or args.debug:
        from .record.debug_log import DebugLog

        debug_log = DebugLog(args.debug, args.command)
    # Ctrl-C and SIGTERM: while boards run they stop cleanly (see interrupt.py); a second one quits at once.
    with signals_handled() as interruption:
        args.interruption = interruption
        try:
            commands = {"run": cmd_run, "prepare": cmd_prepare, "layers": cmd_layers, "boards": cmd_boards,
                        "nightly": cmd_nightly, "report": cmd_report, "history": cmd_history, "farm": cmd_farm,
                        "inspect": cmd_inspect, "bisect": cmd_bisect, "init": cmd_init, "doctor": cmd_doctor,
                        "completion": cmd_completion, "repro": cmd_repro, "schema": cmd_schema}
            return commands[args.command](args, console)
        except HarnessError as error:
            errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
            return error.exit_code
        except BrokenPipeError:
            # `harness inspect --json m.onnx | head`: the reader left; no traceback, and nothing more to write.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except KeyboardInterrupt:
            labgrid = sys.modules.get(f"{__package__}.execution.targets.labgrid")
            if labgrid is not None:  # places held while no board ran (a probe): back to the lab at once
                labgrid.release_held_places()
            errors.print(f"[red]interrupted ({interruption.signal_name or 'SIGINT'})[/]")
            return interruption.exit_code
        finally:
            if debug_log is not None:
                errors.print(f"log: {escape(str(debug_log.finish(args.run_dir)))}", highlight=False, soft_wrap=True)


def console_width(stream) -> Optional[int]:
    """A terminal's own width; else $COLUMNS (rich reads it); else, for CI logs and files, 100 columns."""
    if stream.isatty() or os.environ.get("COLUMNS", "").strip().isdigit():
        return None
    return 100


def cmd_run(args, console: Console) -> int:
    from .config.scenario import load_scenario
    from .core.errors import ConfigError
    from .execution.executor import Executor, Progress
    from .plans.layers import boards_to_search
    from .plans.run import run_scenario, write_run_files
    from .views.progress import TerminalProgress
    from .views.terminal import render, show_files

    scenario = load_scenario(scenario_path(args.scenario))
    inventory = load_inventory(find_inventory(args.inventory))
    only = None
    if args.targets is not None:
        only = [name.strip() for name in args.targets.split(",") if name.strip()]
        if not only:
            raise ConfigError("--targets", None, "names no board", "give board names of the inventory or tag:TAG, "
                              "separated by commas, or leave --targets out for the scenario's targets")
    if scenario.matrix:
        return run_matrix_command(scenario, inventory, only, args, console)
    # The boards' sessions stay open for the layer search when it follows (--find-layer on a failing board).
    with Executor(interruption=args.interruption, lock_timeout=args.lock_timeout) as executor:
        with TerminalProgress(console) as progress:
            executor.progress = progress
            judged = run_scenario(scenario, inventory, Path(args.reports), progress, only, executor=executor)
        executor.progress = Progress()
        failing = boards_to_search(judged, args.find_layer or scenario.find_layer)
        searching = bool(failing)
        if not searching:
            executor.close()  # before the record is written: what closing the sessions says is in it
        args.run_dir = judged.folder
        record = write_run_files(judged, console, keep_outputs_mb=args.keep_outputs)
        if args.json:
            print(json.dumps(record.to_dict(), indent=1, sort_keys=True))
        render(record, console, record.folder)
        show_files(record.folder, console)
        show_verdict(args, record)
        if searching:
            from .plans.layers import search_layers, write_layers_files
            from .views.layers import render_layers

            console.print(f"[bold]Looking for the first op that goes wrong on {', '.join(failing)}[/]")
            with console.status("tracing every op"):
                layers = search_layers(scenario, inventory, failing, Path(args.reports),
                                       lock_timeout=args.lock_timeout, interruption=args.interruption,
                                       executor=executor)
            write_layers_files(layers)
            render_layers(layers, console)
    return record.exit_code


def cmd_layers(args, console: Console) -> int:
    from .config.scenario import load_scenario
    from .execution.executor import Executor
    from .plans.layers import search_layers, write_layers_files
    from .views.layers import render_layers

    scenario = load_scenario(scenario_path(args.scenario))
    inventory = load_inventory(find_inventory(args.inventory))
    boards = [name.strip() for name in args.board.split(",") if name.strip()]
    # One session per board for the search and, with --repro, the bundles after it.
    with Executor(interruption=args.interruption, lock_timeout=args.lock_timeout) as executor:
        with console.status("tracing every op") as status:
            report = search_layers(scenario, inventory, boards, Path(args.reports), against=args.against,
                                   board_overrides={"precision": args.precision, "threads": args.threads},
                                   against_overrides={"precision": args.against_precision,
                                                      "threads": args.against_threads},
                                   tolerance=args.tolerance, budget_mb=args.budget,
                                   log=lambda message: status.update(message), executor=executor)
        args.run_dir = Path(report.run_dir)
        write_layers_files(report)
        if args.json:
            print(json.dumps(report.to_dict(), indent=1))
        render_layers(report, console, show_all=args.all)
        if args.repro:
            repro_found(report, inventory, executor, console)
    return report.exit_code


def repro_found(report, inventory, executor, console: Console) -> None:
    """`layers --repro`: a bundle for the first op that introduces error (or the first NaN/Inf) on each board."""
    from .core.errors import ConfigError
    from .plans.repro import make_repro
    from .views.repro import render_repro

    for board in report.boards:
        if board.error or (board.first_introduced is None and board.first_nonfinite is None):
            continue
        with console.status(f"repro on {board.board.board}") as status:
            try:
                record = make_repro(Path(report.run_dir), inventory, board=board.board.board,
                                    log=lambda message: status.update(message), executor=executor)
            except ConfigError as error:  # this op cannot be cut (e.g. a Raster MNN made): said, the others go on
                console.print(f"[yellow]no repro for {escape(board.board.board)}: {escape(str(error))}[/]")
                continue
        render_repro(record, console)


def cmd_repro(args, console: Console) -> int:
    from .plans.repro import find_layers_folder, make_repro
    from .views.repro import render_repro

    folder = find_layers_folder(Path(args.reports), args.folder)
    inventory = load_inventory(find_inventory(args.inventory))
    with console.status("repro") as status:
        record = make_repro(folder, inventory, op=args.op, board=args.board, widen=args.widen,
                            tolerance=args.tolerance, log=lambda message: status.update(message),
                            lock_timeout=args.lock_timeout, interruption=args.interruption)
    if args.json:
        print(json.dumps(record.to_dict(), indent=1))
    render_repro(record, console)
    return record.exit_code


def run_matrix_command(scenario, inventory, only, args, console: Console) -> int:
    """A scenario with a matrix: every setting is a run of its own; one table says which diverge where."""
    from .plans.matrix import expand, run_matrix
    from .plans.run import write_run_files
    from .views.matrix import render_matrix
    from .views.progress import TerminalProgress

    settings = expand(scenario)
    console.print(f"[bold]{len(settings)} settings[/]: {', '.join(s.label for s in settings)}")
    with TerminalProgress(console) as progress:
        report = run_matrix(scenario, inventory, Path(args.reports), progress, only,
                            lock_timeout=args.lock_timeout, interruption=args.interruption,
                            after_run=lambda setting, single: write_run_files(single, console,
                                                                              keep_outputs_mb=args.keep_outputs))
    args.run_dir = report.run_dir
    matrix = report.record()
    if args.json:
        print(json.dumps(matrix.to_dict(), indent=1))
    render_matrix(matrix, report.run_dir, console, details=args.details)
    return report.exit_code


def cmd_bisect(args, console: Console) -> int:
    from .config.scenario import load_scenario
    from .plans.bisect import releases_between, run_bisect
    from .plans.run import write_run_files
    from .views.bisect import render_bisect
    from .views.progress import TerminalProgress

    scenario = load_scenario(args.scenario)
    inventory = load_inventory(find_inventory(args.inventory))
    versions = releases_between(args.mnn)
    console.print(f"[bold]bisect[/] {escape(scenario.name)} on {escape(args.board)}: "
                  f"{'converter' if args.converter else 'runtime'} releases {', '.join(versions)}", highlight=False)
    with TerminalProgress(console) as progress:
        report = run_bisect(scenario, inventory, args.board, versions, Path(args.reports), converter=args.converter,
                            every=args.all, progress=progress, lock_timeout=args.lock_timeout,
                            interruption=args.interruption,
                            after_run=lambda label, single: write_run_files(single, console),
                            log=lambda message: progress.step(message))
    record = report.record()
    if args.json:
        print(json.dumps(record.to_dict(), indent=1))
    render_bisect(record, report.run_dir, console)
    return report.exit_code


def cmd_nightly(args, console: Console) -> int:
    from .plans.night import load_nightly, run_nightly
    from .views.night import nightly_json, render_night

    config = load_nightly(args.file)
    result = run_nightly(config, Path(args.reports), console, args.inventory, args.lock_timeout,
                         args.history_timeout, interruption=args.interruption)
    render_night(result, console)
    if args.json:
        print(nightly_json(result))
    return result.exit_code


def cmd_report(args, console: Console) -> int:
    from .record.run_folder import find_run, is_matrix, read_matrix, read_record
    from .views.matrix import render_matrix
    from .views.terminal import render, show_files

    run_dir = find_run(Path(args.reports), args.run_id)
    if is_matrix(run_dir):
        matrix = read_matrix(run_dir)
        if args.json:  # the record in this harness's schema (an older matrix.json upgraded)
            print(json.dumps(matrix.to_dict(), indent=1))
        render_matrix(matrix, run_dir, console, details=args.details)
        return matrix.exit_code
    record = read_record(run_dir)
    if args.json:  # the record in this harness's schema: summary.json as written today, an older one upgraded
        print(json.dumps(record.to_dict(), indent=1, sort_keys=True))
    render(record, console, run_dir)
    show_files(run_dir, console)
    show_verdict(args, record)
    return record.exit_code


def show_verdict(args, record) -> None:
    """-q: the report's last line alone (the full report printed it already otherwise)."""
    if args.quiet:
        from .views.terminal import summary_line

        args.verdict.print(summary_line(record))


def cmd_history(args, console: Console) -> int:
    from .core.errors import ConfigError
    from .record.history import HISTORY_FILE, TREND_METRICS, read_trend
    from .views.history import render_trend

    path = Path(args.reports) / HISTORY_FILE
    if not path.is_file():
        raise ConfigError(path, None, "no history yet", "run `harness nightly scenarios/nightly.yaml` first, "
                          "or pass --reports DIR")
    nights, rows = read_trend(path, args.scenario, args.nights, TREND_METRICS)
    if args.json:
        print(json.dumps({"history": str(path), "nights": [dict(n) for n in nights], "trend": rows}, indent=1))
        return 0
    render_trend(nights, rows, args.scenario, console)
    return 0


def cmd_prepare(args, console: Console) -> int:
    from .core.build.model import prepare_model
    from .config.scenario import load_scenario

    for path in args.scenarios:
        scenario = load_scenario(scenario_path(path))
        model = prepare_model(scenario.model, log=lambda message: console.print(f"[dim]{message}[/]"))
        console.print(f"[green]ready[/] {scenario.name}: {model.mnn_path} (sha256 {model.mnn_sha256[:12]}, "
                      f"converter {' '.join(model.converter_args) or 'defaults'})")
    return 0


def cmd_boards(args, console: Console) -> int:
    from .execution.health import clean_boards, probe_boards
    from .views.boards import render_cleaned, render_health

    inventory = load_inventory(find_inventory(args.inventory))
    count = len(inventory.boards)
    if args.clean:
        with console.status(f"cleaning {count} board(s)"):
            cleaned = clean_boards(inventory)
        render_cleaned(cleaned, console)
    with console.status(f"probing {count} board(s)"):
        health = probe_boards(inventory)
    if args.json:
        print(json.dumps(health, indent=1))
    else:
        render_health(health, inventory.path, console)
    return 0 if all(item["reachable"] for item in health) else 3


def cmd_farm(args, console: Console) -> int:
    from .core.errors import ConfigError
    from .emulation import control
    from .emulation import farm as farms
    from .emulation.labgrid_farm import labgrid_status, labgrid_up

    def log(message):
        console.print(f"[dim]{escape(message)}[/]")

    if args.boards and args.action != "down":
        raise ConfigError("harness farm", None, f"`farm {args.action}` takes no board names ({' '.join(args.boards)})",
                          "name boards with `harness farm down NAME...`")
    known = control.known_farms()
    if args.farm and args.farm not in known and not (args.action == "up" and (args.size or args.labgrid
                                                                              or args.bare)):
        raise ConfigError(farms.farm_inventory_path(args.farm), None, f"there is no farm {args.farm!r} on this "
                          f"machine (farms: {', '.join(known) or 'none'})",
                          f"start it with `harness farm up --size N --farm {args.farm}`")
    if args.action == "down":
        return farm_down_command(args, console)
    if args.action == "up" and args.labgrid:
        name = args.farm or farms.DEFAULT_FARM
        size = args.size or len(farms.FARM_BOARDS)
        path = labgrid_up(size, log, prefix=name)
        address = next(lab["address"] for lab in labgrid_status() if lab["prefix"] == name)
        console.print(f"[green]labgrid lab {name!r} of {size} place(s) up[/]: coordinator {address}; "
                      f"its inventory: {path}\n  harness --inventory {path} boards\n"
                      f"  labgrid-client -x {address} places")
        args.farm = name  # the status below: this lab's boards
    elif args.action == "up" and (args.size or args.bare):
        name = args.farm or farms.DEFAULT_FARM
        previous = farms.farm_members(name)
        path = farms.farm_inventory_path(name)
        count = args.size + args.bare
        if previous and len(previous) != count:
            console.print(f"[yellow]farm {name!r} had {len(previous)} board(s); its inventory {path} is "
                          f"rewritten for {count}[/] (start another farm beside it with --farm NAME)")
        path = farms.farm_up(args.size, log, prefix=name, bare=args.bare)
        console.print(f"[green]farm {name!r} of {count} board(s) up[/]; its inventory: {path}\n"
                      f"  harness --inventory {path} boards")
        args.farm = name  # the status below: this farm's boards
    elif args.action == "up" and args.farm:
        members = farms.farm_members(args.farm)
        bare = f"{args.farm}-bare" in members
        farms.farm_up(len(members) - bare, log, prefix=args.farm, bare=bare)
    elif args.action == "up":
        inventory = load_inventory(find_inventory(args.inventory))
        if not control.inventory_boards_up(inventory, log):
            raise ConfigError(inventory.path, None, "has no emulated board", "start a farm with "
                              "`harness farm up --size 4`, or give an inventory with `kind: emulated` boards")
    farm_status(args, console)
    return 0


def farm_down_command(args, console: Console) -> int:
    """Stop exactly what was named: boards, one farm (or lab), the inventory's emulated boards, or (--all) all."""
    from .emulation import board as emulated
    from .emulation import control
    from .views.farm import render_stopped

    if args.all:
        names = emulated.list_boards()
    elif args.boards:
        names = list(args.boards)
    elif args.farm:
        names = None  # the farm's own, and with --remove its inventory too
    else:
        # The inventory's boards that are emulated on this machine: `farm up` without --size, undone.
        inventory = load_inventory(find_inventory(args.inventory))
        names = control.inventory_boards_here(inventory)
        if not names:
            console.print(f"no board of {inventory.path} is emulated on this machine; "
                          f"name boards, or pass --farm NAME or --all (see `harness farm status`)")
            return 0
    stopped = control.stop(names, args.farm, remove=args.remove, every_lab=args.all)
    if args.json:
        print(json.dumps(dataclasses.asdict(stopped), indent=1))
    render_stopped(dataclasses.asdict(stopped), console)
    return EXIT_CONFIG if "unknown" in stopped.boards.values() else 0


def farm_status(args, console: Console) -> None:
    """Every emulated board of this machine with the farm it belongs to; stale ones, and an offer to remove them."""
    from .emulation import control
    from .emulation import farm as farms
    from .views.farm import render_overview

    overview = control.overview(getattr(args, "farm", None))
    record = overview.as_dict()
    if args.json:
        print(json.dumps(record, indent=1))
    render_overview(record, console)
    if overview.stale and sys.stdin.isatty() and console.is_terminal:
        from rich.prompt import Confirm

        if Confirm.ask(f"Remove these {len(overview.stale)} stale board(s) now?", console=console, default=False):
            for name, what in farms.stop_boards(overview.stale, remove=True).items():
                console.print(f"{name}: {what}")


def cmd_inspect(args, console: Console) -> int:
    from .core.build.inspect_model import inspect_model, resolve_model_path
    from .views.inspect import render_signature

    path = resolve_model_path(args.model)
    record = {"model": str(path), **dataclasses.asdict(inspect_model(path))}
    if args.json:
        print(json.dumps(record, indent=1))
    render_signature(record, console)
    return 0


def cmd_init(args, console: Console) -> int:
    from .plans.init import init_files
    from .views.init import render_init

    written = init_files(args.model, board=args.board, name=args.name, key=args.key,
                         known_hosts=args.known_hosts, python=args.python, output=args.output, force=args.force,
                         mnn=args.mnn, log=lambda message: console.print(f"[dim]{escape(message)}[/]"))
    record = written.as_dict()
    if args.json:
        print(json.dumps(record, indent=1))
    render_init(record, console)
    return 0


def cmd_doctor(args, console: Console) -> int:
    from .plans.doctor import diagnose_host
    from .views.doctor import render_checks

    checks = diagnose_host()
    record = checks.as_dict()
    if args.json:
        print(json.dumps(record, indent=1))
    render_checks(record, console)
    return checks.exit_code


def cmd_schema(args, console: Console) -> int:
    from .core.shipped import schema_path

    # The published file (config/schema.py wrote it, a test holds it to the loader): the same for everyone,
    # whatever pydantic this environment has.
    path = schema_path(args.kind)
    if args.path:
        print(path)
    else:
        sys.stdout.write(path.read_text())
    return 0


def cmd_completion(args, console: Console) -> int:
    import shtab

    parser = build_parser()
    subcommands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    for name in ("run", "layers", "prepare", "nightly", "inspect", "init"):
        for action in subcommands.choices[name]._actions:
            if action.dest in ("scenario", "scenarios", "file", "model"):
                action.complete = shtab.FILE
    print(shtab.complete(parser, shell=args.shell))
    return 0


if __name__ == "__main__":
    sys.exit(main())
