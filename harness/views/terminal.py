"""The terminal view of a run's record (RunRecord).

The terminal report reads only the record, as junit.xml, report.html and the
history do, so a live run and `harness report RUN-ID` (the record read back
from summary.json) print the same thing.

Colours mean one thing each: green passed, red failed, yellow a warning a
user should read (a version mismatch, a host key accepted on first use),
dim is context.
"""

import math
from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..record.backend import fallback, precision_fallback, ran_text
from ..record.history import sparkline
from ..record.numbers import format_metric, human_size, step_errors_text
from ..record.outcome import (ERROR, GROWS, UNUSABLE, WHOLE_RUN, board_rows, headline, input_rows, labels_text,
                              model_line, settings_text, summary_text, targets_text, verdicts, version_note,
                              without_board)
from ..record.run import OK, BoardRecord, RunRecord
from ..record.run_folder import kept_views
from .fold import Column, FoldingTable


def verdict_table(record: RunRecord) -> FoldingTable:
    """Board x output: the numbers and the verdict, the conversion check first, then failures first."""
    kinds = {record.output_kind(output) for output in record.model.outputs}
    legend = [text for kind, text in (("class_logits", "argmax agreement (class_logits)"),
                                       ("probability_map", "mask IoU at the threshold (probability_map)"),
                                       ("decision", "decisions that agree at the threshold (decision)"))
              if kind in kinds]
    decoded = sorted({spec.kind for spec in record.output_specs.values() if spec.decoded})
    if decoded:
        legend.append(f"what the application sees, decoded ({', '.join(DECODED_LEGEND.get(k, k) for k in decoded)})")
    table = FoldingTable([Column("Board", key=True), Column("Output", key=True),
                          *[Column(header, "right") for header in METRIC_HEADERS],
                          Column("labels", "right"), Column("Verdict", key=True, wrap=True)],
                         title=f"Accuracy against [bold]{record.reference}[/] (the x86 host)",
                         legend=[f"labels: {', '.join(legend)}"] if legend else [])
    for verdict in verdicts(record):
        m = verdict.metrics
        if verdict.status in (ERROR, UNUSABLE):
            table.add_row(verdict.board, verdict.output if verdict.output != WHOLE_RUN else "–",
                          *[""] * (len(METRIC_HEADERS) + 1), Text("ERROR", "bold red"))
            continue
        shown = Text("PASS", "bold green") if verdict.passed else Text("FAIL", "bold red")
        if verdict.cause:
            shown.append(f" {verdict.cause}", "red")
        table.add_row(verdict.board, verdict.output,
                      # a decoded output has no tensor of its own: blank, and left out where rows stack
                      *[format_metric(m.get(metric), metric) if verdict.decoded is None else ""
                        for metric in METRIC_HEADERS.values()],
                      labels_text(record, verdict), shown)
    return table


DECODED_LEGEND = {"detections": "boxes matched of the reference's, +extra",
                  "ctc_text": "texts read exactly, character error rate", "class_scores": "top classes that agree",
                  "keypoints": "points within PCK"}


METRIC_HEADERS = {"max abs": "max_abs", "mean abs": "mean_abs", "p99 abs": "p99_abs", "cosine": "cosine"}
"""The terminal's metric columns (header -> metric); the labels column follows them."""


def failure_reasons(record: RunRecord) -> List[Text]:
    """A line per failing board and output with every limit it broke (or why it did not run); then what a
    verdict rests on where it is not the usual (a mask empty on both sides, judged as a tensor)."""
    lines, seen = [], set()
    for verdict in verdicts(record, failing_first=False):
        if verdict.passed:
            continue
        if verdict.status in (ERROR, UNUSABLE):
            line = f"✗ {verdict.board}: {without_board(verdict.board, verdict.first_reason)}"
        elif verdict.failure_type == "requirement":
            metric, value = headline(record, verdict)
            line = (f"✗ {verdict.board}: {'; '.join(verdict.reasons)}. It ran and its outputs match "
                    f"({verdict.output} {metric} {format_metric(value, metric, 'text')})")
        else:
            line = f"✗ {verdict.board} {verdict.output}: {'; '.join(verdict.reasons)}"
        if line not in seen:
            seen.add(line)
            lines.append(Text(line, "red"))
    for verdict in verdicts(record, failing_first=False):
        lines += [Text(f"• {verdict.board} {verdict.output}: {note}", "yellow") for note in verdict.notes]
    return lines


def boards_table(record: RunRecord) -> FoldingTable:
    """Each board's facts that explain a difference: machine, MNN version, CPU features, time, memory."""
    table = FoldingTable([Column("Board", key=True), Column("Status", key=True), Column("Machine"), Column("MNN"),
                          Column("Python"), Column("CPU features", wrap=True), Column("Latency", "right"),
                          Column("Peak RSS", "right"), Column("Wall", "right")], title="Boards")
    for row in board_rows(record):
        table.add_row(Text.assemble(row.name, (" (ref)", "dim") if row.is_reference else "",
                                    (f" via {', '.join(row.via)}", "dim") if row.via else ""),
                      Text(row.status, "green" if row.status == OK else "red"), row.machine,
                      Text(row.mnn, "yellow bold" if row.mnn_differs else ""), row.python,
                      " ".join(row.features) or "–",
                      f"{row.latency_ms:.1f} ms" if row.latency_ms is not None else "–",
                      f"{row.peak_rss_mb:.0f} MB" if row.peak_rss_mb else "–", f"{row.wall_s:.1f} s")
    return table


def notes(record: RunRecord) -> List[Text]:
    lines = []
    for name, board in record.reference_first():
        facts = board.facts
        found = facts.get("mnn_version")
        version = version_note(record, name)
        if version:
            lines.append(Text(f"{name}: {version}", "yellow"))
        expected = board.expected_mnn_version
        if expected and found and expected != found:
            lines.append(Text(f"{name}: the inventory expects MNN {expected}, the board has {found}", "yellow"))
        if board.bytes_uploaded or board.bytes_downloaded:
            lines.append(Text(f"{name}: sent {human_size(board.bytes_uploaded)}, fetched {human_size(board.bytes_downloaded)}",
                              "dim"))
        for note in board.notes:
            lines.append(Text(f"{name}: {note}", "yellow"))
        if facts.get("api_reason"):
            lines.append(Text(f"{name}: {facts['api_reason']}", "dim"))
        lines += backend_notes(record, name, board)
        if board.status != OK and board.error:
            lines.append(Text(f"{name}: {without_board(name, board.error)}", "red"))
        if facts.get("mnn_banner"):
            lines.append(Text(f"{name}: MNN says \"{facts['mnn_banner']}\"", "dim"))
    for note in record.source.notes if record.source else []:
        lines.append(Text(f"{record.source_runtime}: {note}", "yellow"))
    return lines


def backend_notes(record: RunRecord, name: str, board: BoardRecord) -> List[Text]:
    """What ran where a scenario asked for another backend than the CPU, and a fallback that was allowed."""
    failures = record.backend_failures
    fell_back = fallback(board.facts, board.ok)
    if fell_back and name not in failures:
        return [Text(f"{name}: {fell_back} (allowed: run.allow_fallback)", "yellow")]
    computed = precision_fallback(board.facts, board.ok)
    if computed and name not in failures:
        why = "the reference: the FP32 baseline" if name == record.reference else "allowed: run.allow_fallback"
        return [Text(f"{name}: {computed} ({why})", "yellow")]
    if name == record.reference and name in failures and not record.conversion:
        return [Text(f"{name}: {failures[name].text}", "red")]
    if ran_text(board.facts) and (board.facts.get("backend") or {}).get("asked") not in (None, "cpu"):
        return [Text(f"{name}: ran on {ran_text(board.facts)}", "dim")]
    return []


def summary_line(record: RunRecord) -> Text:
    """The last line: PASS or what failed, every kind of failure named, and the exit code."""
    label, text = summary_text(record)
    code = record.exit_code
    if code == 0:
        return Text(f"PASS  {text} ({record.name}, {record.wall_s:.0f} s)", "bold green")
    return Text(f"{label}  {text}  [exit {code}]", "bold yellow" if record.interrupted else "bold red")


def downsample(values: List[Optional[float]], width: int, pick=max) -> List[Optional[float]]:
    """At most width values: each the max (or another pick) of its bucket, so a spike is never lost; a value that
    is no finite number (no error a sparkline can scale) counts as missing."""
    values = [v if v is not None and math.isfinite(v) else None for v in values]
    if len(values) <= width:
        return list(values)
    buckets = []
    for index in range(width):
        chunk = [v for v in values[index * len(values) // width:(index + 1) * len(values) // width] if v is not None]
        buckets.append(pick(chunk) if chunk else None)
    return buckets


def stream_lines(record: RunRecord, width: int) -> List[Text]:
    """Per board and output: the max abs error per step as a sparkline (log scale), both sides' values per
    step on one scale when a step has one value, and the decisions that flip. Fits `width` columns."""
    rows = [(label, comparison, output) for label, comparison, _ in record.sides()
            for output in comparison.outputs.values() if output.series is not None and output.series.max_abs]
    if record.stream is None or not rows:
        return []
    steps = len(rows[0][2].series.max_abs)
    carry = ", ".join(f"{out} -> {fed}" for out, fed in record.stream.carry.items()) or "nothing carried"
    lines = [Text(f"Stream: {steps} steps, {carry} on each board", "bold")]
    sides = [record.reference] + list(record.boards) + [comparison.reference or "" for _, comparison, _ in rows]
    # Board names whole (never cut to fit): the sparklines take what is left.
    name_width = min(max(12, *(len(name) for name in sides)), max(12, width // 3))
    spark = max(8, min(steps, width - name_width - 4))
    for label, comparison, result in rows:
        series = result.series
        errors = series.max_abs
        growth = result.metrics.get("error_growth")
        trend = "" if growth is None else f" (x{growth:.2g}" + (": grows)" if growth >= GROWS else ")")
        lines.append(Text.assemble((label, "bold"), f" {result.output}: max |err| per step ",
                                   (f"{step_errors_text(errors)}{trend}", "dim")))
        lines.append(_spark_line(("  " + "|err|".ljust(name_width) + " ", "dim"),
                                 sparkline(downsample(errors, spark), log=True)))
        if series.target is not None:
            values = [v for v in series.reference + series.target if v is not None and math.isfinite(v)] or [0.0]
            low, high = min(values), max(values)
            board = label.split(" vs ")[0] if label == record.conversion_label else label
            against = comparison.reference or record.reference
            for side, name in ((series.reference, against), (series.target, board)):
                if len(name) > name_width:  # longer than a third of the terminal: on a line of its own
                    lines.append(Text("  " + name, "dim"))
                    name = ""
                lines.append(_spark_line(("  " + name.ljust(name_width) + " ", "dim"),
                                         _scaled_spark(downsample(side, spark, _mean), low, high)))
            lines.append(Text(f"  {'':{name_width}} {result.output} per step, {low:.3g} .. {high:.3g} on both lines",
                              "dim"))
        if series.flipped is not None:
            flipped = series.flipped
            shown = ", ".join(str(step) for step in flipped[:8]) + (", ..." if len(flipped) > 8 else "")
            threshold = record.output_spec(result.output).threshold
            lines.append(Text(f"  decisions at {threshold:g}: {len(flipped)} of {steps} steps flip"
                              + (f" (steps {shown})" if flipped else ""), "red" if flipped else "green"))
    return lines


def _spark_line(*parts) -> Text:
    """A sparkline row: sized to the terminal, never wrapped (a wrapped sparkline reads as two series)."""
    return Text.assemble(*parts, no_wrap=True, overflow="crop")


def _mean(values: List[float]) -> float:
    return sum(values) / len(values)


def _scaled_spark(values: List[Optional[float]], low: float, high: float) -> str:
    """A sparkline on a shared scale, so x86's and the board's lines can be read against each other."""
    blocks = "▁▂▃▄▅▆▇█"
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        elif high <= low:
            out.append(blocks[3])
        else:
            out.append(blocks[round((value - low) / (high - low) * (len(blocks) - 1))])
    return "".join(out)


def render(record: RunRecord, console: Console, run_dir: Optional[Path] = None) -> None:
    """The terminal report of a run's record, live or stored: the same view of the same data."""
    header = Table.grid(padding=(0, 1))
    header.add_column(style="dim", no_wrap=True)
    header.add_column(overflow="fold")
    header.add_row("scenario", f"[bold]{escape(record.name)}[/]  run {record.run_id}")
    header.add_row("model", escape(model_line(record)))
    for label, text, detail in input_rows(record):
        header.add_row(escape(label), escape(text) + (f"  [dim]{escape(detail)}[/]" if detail else ""))
    header.add_row("settings", settings_text(record.settings))
    if record.targets_from:
        header.add_row("boards", escape(targets_text(record)))
    console.print(Panel(header, title="mnn-harness", title_align="left", expand=False))
    console.print(verdict_table(record))
    for line in failure_reasons(record):
        console.print(line)
    for line in stream_lines(record, console.width):
        console.print(line)  # the sparklines are sized to the width (and crop); the words wrap
    for name, parity in record.preprocess_parity.items():
        m = parity.metrics
        shown = (f"max abs {format_metric(m.get('max_abs'), 'max_abs', 'text')} "
                 f"(~{m.get('gray_levels') or 0:.0f} gray levels)" if m.get("max_abs") is not None
                 else parity.error or "")
        verdict = ("PASS", "bold green") if parity.passed else ("FAIL", "bold red")
        console.print(Text.assemble(("preprocessing on ", "dim"), (name, "bold"),
                                    (f" ({parity.backend or '?'}) vs host: ", "dim"), shown, " ", verdict,
                                    (f": {parity.hint}" if parity.hint and not parity.passed else "", "red")))
    if record.findings:
        console.print(Text("Likely causes", "bold"))
        for finding in record.findings:
            where = f"{finding.board}: " if finding.board else ""
            console.print(Text.assemble(("● ", "yellow"), (finding.title, "bold yellow"),
                                        f" — {where}{finding.message}"))
    console.print(boards_table(record))
    for line in notes(record):
        console.print(line)
    if run_dir is not None:
        console.print(f"[dim]results: {escape(str(run_dir))}[/]")
    console.print(summary_line(record))


def show_files(run_dir: Path, console: Console) -> None:
    """Where the run folder's views are (junit.xml, report.html), those that were written."""
    for path in kept_views(run_dir):
        console.print(f"[dim]{path.name}: {escape(str(path))}[/]")
