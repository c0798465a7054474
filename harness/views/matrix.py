"""The matrix's views: settings by boards (or boards by settings), a cell per setting and board, read from each
setting's record (summary.json) as every view reads one; live (`harness run` of a matrix) or stored
(`harness report MATRIX-ID`) alike."""

from pathlib import Path
from typing import List, Optional, Tuple

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from ..analysis.compare import format_metric
from ..analysis.diagnose import CAUSES, low_precision_message
from ..analysis.nonfinite import counts_short
from ..analysis.outcome import (ERROR, UNUSABLE, Verdict, conversion_label, failing_boards_text, headline, label_metric,
                                output_kind, precision_attributions, verdicts)
from ..core.results import INTERRUPTED
from .fold import Column, FoldingTable
from .terminal import failure_reasons, stream_lines


def cell(record: dict, board: str, passes_at: Optional[str] = None) -> Text:
    """One setting on one board, from its record: ok and the headline number, or FAIL, the cause and the limit.

    The reference's column is the conversion check (MNN on x86 against the
    source model), for that setting's converter variant. passes_at: the precision at which the same board
    passes an otherwise equal setting (outcome.precision_attributions): its failure here is the precision's.
    """
    if board not in (record.get("boards") or {}) and board != conversion_label(record):
        return Text("–", "dim")
    if ((record.get("boards") or {}).get(board) or {}).get("status") == INTERRUPTED:
        return Text("STOPPED\ninterrupted", "bold yellow")
    rows = [v for v in verdicts(record) if v.board == board]
    if not rows:
        return Text("ref", "dim")
    failing = [v for v in rows if not v.passed]
    if not failing:
        decoded = [v for v in rows if v.decoded is not None]
        if decoded:  # what the application sees, first: the worst decoded agreement
            shown = min(decoded, key=lambda v: v.metrics.get("decoded_agreement", 1.0) or 0.0)
            return Text(f"ok {shown.decoded.label}", "green")
        metric, value = worst(record, rows)
        return Text(f"ok {format_metric(value, metric)}", "green")
    first = failing[0]  # verdicts() puts decoded outputs first: what the application sees
    if first.status in (ERROR, UNUSABLE):
        return Text(f"ERROR\n{'unusable' if first.status == UNUSABLE else 'did not run'}", "bold red")
    cause = first.cause or ("conversion" if first.is_conversion else "")
    if passes_at and first.failure_type == "tolerance":
        cause = "precision"
    nonfinite = counts_short(first.metrics.get("nan_count") or 0, first.metrics.get("inf_count") or 0)
    limit = {"tolerance": (first.decoded.label if first.decoded is not None
                           else nonfinite or short_limit(first.reasons[0])),
             "requirement": "require_same_mnn",
             # asked a backend the board lacks: its numbers are the CPU's
             "backend": first.reasons[0].split(" (")[0].split(":")[0]}.get(first.failure_type, first.reasons[0])
    return Text(f"FAIL {cause}\n{limit}".replace("FAIL \n", "FAIL\n"), "bold red")


ABBREVIATIONS = {"argmax_agreement": "agree", "miou": "IoU", "decision_agreement": "decide", "hard_flips": "hard",
                 "max_abs": "max|d|", "mean_abs": "mean|d|", "p99_abs": "p99|d|", "cosine": "cos"}
"""Short names of the limits in matrix cells; the legend under the table spells them out."""
ABBREVIATION_LEGEND = ("agree: argmax agreement, IoU: mIoU or mask IoU, decide: decision agreement, hard: hard flips, "
                       "max|d|/mean|d|/p99|d|: max/mean/p99 of |board - x86|, cos: cosine")


def short_limit(reason: str) -> str:
    """"argmax_agreement 99.219% < 99.900%" as "agree 99.219%<99.900%": a broken limit that fits a cell."""
    parts = reason.split(" ")
    if len(parts) == 4 and parts[2] in ("<", ">"):
        return f"{ABBREVIATIONS.get(parts[0], parts[0])} {parts[1]}{parts[2]}{parts[3]}"
    return reason


def worst(record: dict, rows: List[Verdict]) -> Tuple[str, Optional[float]]:
    """The number a user reads first over a board's outputs: the worst label metric, else the largest max abs."""
    labelled = [headline(record, v) for v in rows if label_metric(v.metrics, output_kind(record, v.output))]
    labelled = [(metric, value) for metric, value in labelled if value is not None]
    if labelled:
        return min(labelled, key=lambda item: item[1])
    return "max_abs", max((v.metrics.get("max_abs") or 0.0 for v in rows), default=None)


LEGEND = ("cell: ok and the worst labels of the board's outputs (what the application sees for decoded outputs, "
          "faces 2/2; argmax agreement, mask IoU or decisions; max abs for tensors), or FAIL, where the difference comes "
          "from (conversion, platform, both, app I/O, MNN version, backend, precision: the board passes at another "
          "precision) and the first limit it broke (the decoded verdict first), or its NaN/Inf count (9 Inf)")

STOPPED_LEGEND = "STOPPED: Ctrl-C or SIGTERM came before the board finished this setting"


def matrix_view(scenario_name: str, records: List[Tuple[str, dict]]) -> FoldingTable:
    """Settings by boards; with more boards than settings, boards by settings (S1, S2, ... and a legend).

    Either way failures come first. Every cell reads its setting's record (summary.json), as every view does.
    """
    boards: List[str] = []
    for _, record in records:
        labels = ([conversion_label(record)] if record.get("conversion") else [record["reference"]]) + \
            [name for name in record["boards"] if name != record["reference"]]
        boards += [name for name in labels if name not in boards]
    ordered = sorted(records, key=lambda item: (item[1]["exit_code"] == 0, item[0]))
    precision = precision_attributions(records)
    title = f"Which settings diverge on which boards ({scenario_name})"
    stopped = any((board or {}).get("status") == INTERRUPTED for _, record in records
                  for board in (record.get("boards") or {}).values())
    legends = [LEGEND, ABBREVIATION_LEGEND] + ([STOPPED_LEGEND] if stopped else [])
    if len(boards) <= len(ordered):
        table = FoldingTable([Column("Setting", key=True)] + [Column(board, wrap=True) for board in boards],
                             title=title, legend=legends)
        for label, record in ordered:
            table.add_row(label, *[cell(record, board, precision.get((label, board))) for board in boards])
        return table
    failing_first = sorted(boards, key=lambda b: (b != boards[0], all(not cell(r, b).plain.startswith(("FAIL", "ERROR"))
                                                                      for _, r in ordered), b))
    labels = {id(record): label for label, record in ordered}
    table = FoldingTable([Column("Board", key=True)] + [Column(f"S{index}", wrap=True)
                                                        for index in range(1, len(ordered) + 1)],
                         title=title, legend=[f"S{index} = {label}"
                                              for index, (label, _) in enumerate(ordered, 1)] + legends)
    for board in failing_first:
        table.add_row(board, *[cell(record, board, precision.get((labels[id(record)], board))) for _, record in ordered])
    return table


def render_details(records: List[Tuple[str, dict]], console: Console) -> None:
    """Under the table, per setting (failing ones first): the limits each board broke and, for a stream, the
    error per step of every board and output, as the run of that setting alone shows them."""
    for label, record in sorted(records, key=lambda item: (item[1].get("exit_code") == 0, item[0])):
        console.print(Rule(Text(label, "bold"), align="left"))
        reasons = failure_reasons(record)
        for line in reasons:
            console.print(line)
        streams = stream_lines(record, console.width)
        for line in streams:
            console.print(line)
        if not reasons and not streams:
            console.print(Text("every board matches within tolerance", "green"))


def render_records(scenario_name: str, records: List[Tuple[str, dict]], exit_code: int, run_dir: Path,
                   console: Console, planned: Optional[int] = None, interrupted: Optional[str] = None,
                   details: bool = False) -> None:
    """The matrix report of the settings' records, live or stored (`harness report MATRIX-ID`); details: each
    setting's broken limits and per-step stream errors under the table (`--details`)."""
    console.print(matrix_view(scenario_name, records))
    if details:
        render_details(records, console)
    for (label, board), passes_at in sorted(precision_attributions(records).items()):
        record = dict(records)[label]
        asked = (record.get("settings") or {}).get("precision")
        facts = ((record.get("boards") or {}).get(board) or {}).get("facts") or {}
        known = low_precision_message(board, facts.get("cpu_features") or [], facts.get("machine")) \
            if asked == "low" else None
        console.print(Text.assemble(("● ", "yellow"), (CAUSES["precision"], "bold yellow"),
                                    f" — {board}: passes at precision {passes_at} and fails at {asked} ({label}): "
                                    "the precision setting makes it differ, not the platform"
                                    + (f". {known}" if known else "")))
    seen = set()
    for label, record in records:
        for finding in record.get("findings") or []:
            key = (finding["cause"], finding.get("board"), finding["message"])
            if key in seen or (finding["cause"] == "platform" and (label, finding.get("board")) in
                               precision_attributions(records)):
                continue  # the run alone could only say "platform"; the matrix knows better (above)
            seen.add(key)
            where = f"{finding['board']}: " if finding.get("board") else ""
            console.print(Text.assemble(("● ", "yellow"), (finding["title"], "bold yellow"),
                                        f" — {where}{finding['message']} [first in {label}]"))
    console.print(f"[dim]results: {run_dir}/<setting>/[/]")
    streams = any(record.get("stream") for _, record in records)
    if not details and (streams or any(record.get("exit_code") for _, record in records)):
        console.print(Text(f"each setting's {'errors per stream step and ' if streams else ''}broken limits: "
                           f"`harness report {Path(run_dir).name} --details` (all settings), or `harness report "
                           f"{Path(run_dir).name}/SETTING` (one)", "dim"))
    console.print(matrix_summary_line(records, exit_code, planned, interrupted))


def matrix_summary_line(records: List[Tuple[str, dict]], exit_code: int, planned: Optional[int] = None,
                        interrupted: Optional[str] = None) -> Text:
    """The last line: which settings diverge, each with every board that fails in it (or their count and the
    worst); for an interrupted matrix, how far it got first (a setting stopped midway is not a divergence)."""
    stopped = [label for label, record in records if record.get("interrupted")]
    finished = [(label, record) for label, record in records if not record.get("interrupted")]
    failing = sorted((label, record) for label, record in finished if record.get("exit_code"))
    named = "; ".join(f"{label} ({failing_boards_text(record)})" for label, record in failing)
    if interrupted or stopped:
        total = max(planned or 0, len(records))
        so_far = f"{len(failing)} diverge: {named}" if failing else "none diverge"
        return Text(f"INTERRUPTED ({interrupted or 'a signal'})  {len(finished)} of {total} setting(s) finished "
                    f"({so_far}), {len(stopped)} stopped midway, {total - len(records)} not started  "
                    f"[exit {exit_code}]", "bold yellow")
    if not failing:
        return Text(f"PASS  all {len(records)} setting(s) match on every board", "bold green")
    return Text(f"FAIL  {len(failing)} of {len(records)} setting(s) diverge: {named}  [exit {exit_code}]",
                "bold red")
