"""The terminal view of a run's record (summary.json), and the live progress while it runs.

The terminal report reads only the record (the dict record/run_folder.py's
summary() returns, or a stored summary.json read back by it), as junit.xml,
report.html and the history do, so a live run and `harness report RUN-ID`
print the same thing.

Colours mean one thing each: green passed, red failed, yellow a warning a
user should read (a version mismatch, a host key accepted on first use),
dim is context.
"""

import statistics
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..analysis.compare import format_metric
from ..analysis.versions import versions_differ
from ..analysis.outcome import (ERROR, UNUSABLE, WHOLE_RUN, conversion_label, headline, labels_text, output_kind,
                                source_runtime, step_errors_text, summary_text, verdicts, version_note)
from ..core.backend import fallback, precision_fallback, ran_text
from ..core.results import INTERRUPTED, OK, TargetResult
from ..execution.executor import Progress
from ..record.history import sparkline
from ..record.run_folder import kept_views
from .fold import Column, FoldingTable

FEATURES_SHOWN = ("asimdhp", "fphp", "asimddp", "i8mm", "bf16", "sve", "sve2",
                  "avx2", "avx512f", "avx512_fp16", "avx512_bf16", "avx_vnni", "f16c")


class TerminalProgress(Progress):
    """A line per target with its current stage, while the run works."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = RichProgress(SpinnerColumn(), TextColumn("[bold]{task.description:<14}"),
                                TextColumn("{task.fields[stage]}"), TimeElapsedColumn(),
                                console=console, transient=False)
        self.tasks: Dict[str, TaskID] = {}
        self.jobs: Dict[str, str] = {}
        """Board -> which of its jobs runs ("3/16 low-t1-session-copy-fp32"), when it has more than one."""

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def step(self, message: str) -> None:
        self.console.print(f"[dim]•[/] {message}")

    def add_target(self, name: str) -> None:
        self.tasks[name] = self.bar.add_task(name, total=1, stage="[dim]waiting")

    def job(self, name: str, label: str, number: int, count: int) -> None:
        if count > 1 or label:
            self.jobs[name] = escape(f"{number}/{count} {label}".strip() if count > 1 else label)

    def stage(self, name: str, stage: str) -> None:
        job = self.jobs.get(name)
        self.bar.update(self.tasks[name], stage=f"[dim]{job}[/] [cyan]{stage}" if job else f"[cyan]{stage}")

    def target_done(self, name: str, result: TargetResult) -> None:
        shown = {OK: "[green]done", UNUSABLE: "[red]unusable", INTERRUPTED: "[yellow]interrupted"}.get(
            result.status, "[red]failed")
        self.bar.update(self.tasks[name], stage=shown, completed=1)


def verdict_table(summary: dict) -> FoldingTable:
    """Board x output: the numbers and the verdict, the conversion check first, then failures first."""
    kinds = {output_kind(summary, output) for output in (summary.get("model") or {}).get("outputs") or []}
    legend = [text for kind, text in (("class_logits", "argmax agreement (class_logits)"),
                                       ("probability_map", "mask IoU at the threshold (probability_map)"),
                                       ("decision", "decisions that agree at the threshold (decision)"))
              if kind in kinds]
    decoded = sorted({kind for kind in (summary.get("output_specs") or {}).values()
                      if isinstance(kind, dict) and kind.get("decoded") for kind in [kind.get("kind")]})
    if decoded:
        legend.append(f"what the application sees, decoded ({', '.join(DECODED_LEGEND.get(k, k) for k in decoded)})")
    table = FoldingTable([Column("Board", key=True), Column("Output", key=True),
                          *[Column(header, "right") for header in METRIC_HEADERS],
                          Column("labels", "right"), Column("Verdict", key=True, wrap=True)],
                         title=f"Accuracy against [bold]{summary.get('reference')}[/] (the x86 host)",
                         legend=[f"labels: {', '.join(legend)}"] if legend else [])
    for verdict in verdicts(summary):
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
                      labels_text(summary, verdict), shown)
    return table


DECODED_LEGEND = {"detections": "boxes matched of the reference's, +extra",
                  "ctc_text": "texts read exactly, character error rate", "class_scores": "top classes that agree",
                  "keypoints": "points within PCK"}


METRIC_HEADERS = {"max abs": "max_abs", "mean abs": "mean_abs", "p99 abs": "p99_abs", "cosine": "cosine"}
"""The terminal's metric columns (header -> metric); the labels column follows them."""


def failure_reasons(summary: dict) -> List[Text]:
    """A line per failing board and output with every limit it broke (or why it did not run); then what a
    verdict rests on where it is not the usual (a mask empty on both sides, judged as a tensor)."""
    lines, seen = [], set()
    for verdict in verdicts(summary, failing_first=False):
        if verdict.passed:
            continue
        if verdict.status in (ERROR, UNUSABLE):
            reason = verdict.reasons[0]
            own = f"{verdict.board}: "  # a board's error often starts with its name already
            line = f"✗ {verdict.board}: {reason[len(own):] if reason.startswith(own) else reason}"
        elif verdict.failure_type == "requirement":
            metric, value = headline(summary, verdict)
            line = (f"✗ {verdict.board}: {'; '.join(verdict.reasons)}. It ran and its outputs match "
                    f"({verdict.output} {metric} {format_metric(value, metric, 'text')})")
        else:
            line = f"✗ {verdict.board} {verdict.output}: {'; '.join(verdict.reasons)}"
        if line not in seen:
            seen.add(line)
            lines.append(Text(line, "red"))
    for verdict in verdicts(summary, failing_first=False):
        lines += [Text(f"• {verdict.board} {verdict.output}: {note}", "yellow") for note in verdict.notes]
    return lines


def boards_table(summary: dict) -> FoldingTable:
    """Each board's facts that explain a difference: machine, MNN version, CPU features, time, memory."""
    table = FoldingTable([Column("Board", key=True), Column("Status", key=True), Column("Machine"), Column("MNN"),
                          Column("Python"), Column("CPU features", wrap=True), Column("Latency", "right"),
                          Column("Peak RSS", "right"), Column("Wall", "right")], title="Boards")
    reference = summary.get("reference")
    boards = summary.get("boards") or {}
    reference_mnn = ((boards.get(reference) or {}).get("facts") or {}).get("mnn_version")
    for name, board in reference_first(summary):
        facts = board.get("facts") or {}
        status = board.get("status", "?")
        mnn = facts.get("mnn_version") or "?"
        features = [f for f in FEATURES_SHOWN if f in (facts.get("cpu_features") or [])]
        latency = facts.get("latency_ms") or []
        rss = facts.get("peak_rss_mb")
        wall = sum((board.get("timings") or {}).values())
        via = board.get("via") or []
        table.add_row(Text.assemble(name, (" (ref)", "dim") if name == reference else "",
                                    (f" via {', '.join(via)}", "dim") if via else ""),
                      Text(status, "green" if status == OK else "red"), facts.get("machine", "?"),
                      Text(mnn, "yellow bold" if versions_differ(facts.get("mnn_version"), reference_mnn) else ""),
                      facts.get("python", "?"), " ".join(features) or "–",
                      f"{statistics.median(latency):.1f} ms" if latency else "–", f"{rss:.0f} MB" if rss else "–",
                      f"{wall:.1f} s")
    return table


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000.0
    return f"{count} B"


def notes(summary: dict) -> List[Text]:
    lines = []
    for name, board in reference_first(summary):
        facts = board.get("facts") or {}
        found = facts.get("mnn_version")
        version = version_note(summary, name)
        if version:
            lines.append(Text(f"{name}: {version}", "yellow"))
        expected = board.get("expected_mnn_version")
        if expected and found and expected != found:
            lines.append(Text(f"{name}: the inventory expects MNN {expected}, the board has {found}", "yellow"))
        if board.get("bytes_uploaded") or board.get("bytes_downloaded"):
            lines.append(Text(f"{name}: sent {_size(board.get('bytes_uploaded') or 0)}, fetched "
                              f"{_size(board.get('bytes_downloaded') or 0)}", "dim"))
        for note in board.get("notes") or []:
            lines.append(Text(f"{name}: {note}", "yellow"))
        if facts.get("api_reason"):
            lines.append(Text(f"{name}: {facts['api_reason']}", "dim"))
        lines += backend_notes(summary, name, board)
        if board.get("status") != OK and board.get("error"):
            # Board errors name their board (they are read alone too, in logs and junit): once is enough here.
            error = board["error"][len(name) + 2:] if board["error"].startswith(f"{name}: ") else board["error"]
            lines.append(Text(f"{name}: {error}", "red"))
        if facts.get("mnn_banner"):
            lines.append(Text(f"{name}: MNN says \"{facts['mnn_banner']}\"", "dim"))
    source = summary.get("source") or {}
    for note in source.get("notes") or []:
        lines.append(Text(f"{source_runtime(summary)}: {note}", "yellow"))
    return lines


def backend_notes(summary: dict, name: str, board: dict) -> List[Text]:
    """What ran where a scenario asked for another backend than the CPU, and a fallback that was allowed."""
    result = TargetResult(name, board.get("kind", "?"), board.get("status", "?"), facts=board.get("facts") or {})
    failures = summary.get("backend_failures") or {}
    fell_back = fallback(result)
    if fell_back and name not in failures:
        return [Text(f"{name}: {fell_back} (allowed: run.allow_fallback)", "yellow")]
    computed = precision_fallback(result)
    if computed and name not in failures:
        why = "the reference: the FP32 baseline" if name == summary.get("reference") else \
            "allowed: run.allow_fallback"
        return [Text(f"{name}: {computed} ({why})", "yellow")]
    if name == summary.get("reference") and name in failures and not summary.get("conversion"):
        return [Text(f"{name}: {failures[name]}", "red")]
    if ran_text(result) and ((board.get("facts") or {}).get("backend") or {}).get("asked") not in (None, "cpu"):
        return [Text(f"{name}: ran on {ran_text(result)}", "dim")]
    return []


def summary_line(summary: dict) -> Text:
    """The last line: PASS or what failed, every kind of failure named, and the exit code."""
    label, text = summary_text(summary)
    code = summary.get("exit_code", 0)
    if code == 0:
        return Text(f"PASS  {text} ({summary['scenario']['name']}, {float(summary.get('wall_s') or 0):.0f} s)",
                    "bold green")
    return Text(f"{label}  {text}  [exit {code}]", "bold yellow" if summary.get("interrupted") else "bold red")


SETTINGS_ORDER = ("precision", "threads", "api", "io")


def settings_text(settings: dict) -> str:
    """precision=normal threads=1 api=session io=copy: in this order, live or stored (JSON sorts keys)."""
    keys = [k for k in SETTINGS_ORDER if k in settings] + sorted(k for k in settings if k not in SETTINGS_ORDER)
    return " ".join(f"{k}={settings[k]}" for k in keys)


def reference_first(summary: dict) -> List[tuple]:
    """The boards of the record, the reference first, then in the record's order."""
    reference = summary.get("reference")
    return sorted((summary.get("boards") or {}).items(), key=lambda item: item[0] != reference)


def targets_text(summary: dict) -> str:
    """"x86, farm-a53: from the command line (--targets farm-a53), not the scenario's targets"."""
    boards = ", ".join(name for name, _ in reference_first(summary))
    where = summary["targets_from"]
    source = "the command line" if where.startswith("--") else "the nightly file"
    return f"{boards}: from {source} ({where}), not the scenario's targets"


def model_line(summary: dict) -> str:
    """"built by segformer.py -> .mnn 1a2b...", "model.onnx -> .mnn ...", or a deployed .mnn as it is."""
    model = summary.get("model") or {}
    sha = str(model.get("mnn_sha256", ""))[:12]
    if not model.get("converted", True):
        source = f", source {Path(model['source']).name}" if model.get("source") else ""
        return f"{Path(model.get('mnn_path') or '?').name} {sha} as deployed (no conversion{source})"
    built_by = model.get("built_by")
    source = f"built by {built_by}" if built_by else Path(model.get("source") or "?").name
    return f"{source} -> .mnn {sha}  converter: {' '.join(model.get('converter_args') or []) or '(defaults)'}"


def input_rows(summary: dict) -> List[Tuple[str, str, str]]:
    """(label, text, detail) per input: name, provider, samples x shape, dtype, sha256, and what it is."""
    inputs = summary.get("inputs") or {}
    tensors = inputs.get("tensors") or []
    if not tensors:
        return [("inputs", f"{len(inputs.get('samples') or [])} x {list(inputs.get('shape') or [])}  "
                           f"sha256 {str(inputs.get('sha256', ''))[:12]}", "")]
    rows = []
    for tensor in tensors:
        count = "shared" if tensor.get("shared") else f"{tensor.get('samples')} x"
        shape = list(tensor.get("shape") or [])
        rows.append((f"input {tensor.get('name')}", f"{tensor.get('provider')}  {count} {shape} {tensor.get('dtype')}"
                     f"  sha256 {str(tensor.get('sha256', ''))[:12]}", tensor.get("detail") or ""))
    return rows


def downsample(values: List[Optional[float]], width: int, pick=max) -> List[Optional[float]]:
    """At most width values: each the max (or another pick) of its bucket, so a spike is never lost."""
    if len(values) <= width:
        return list(values)
    buckets = []
    for index in range(width):
        chunk = [v for v in values[index * len(values) // width:(index + 1) * len(values) // width] if v is not None]
        buckets.append(pick(chunk) if chunk else None)
    return buckets


GROWS = 4.0
"""error_growth (last third's median error over the first third's) from which a stream's error is said to grow."""


def stream_lines(summary: dict, width: int) -> List[Text]:
    """Per board and output: the max abs error per step as a sparkline (log scale), both sides' values per
    step on one scale when a step has one value, and the decisions that flip. Fits `width` columns."""
    stream = summary.get("stream")
    compared = []
    if summary.get("conversion"):
        compared.append((conversion_label(summary), summary["conversion"]))  # first, as in the verdicts
    compared += sorted((summary.get("comparisons") or {}).items())
    rows = [(label, comparison, output, result) for label, comparison in compared
            for output, result in (comparison.get("outputs") or {}).items()
            if (result.get("series") or {}).get("max_abs")]
    if not stream or not rows:
        return []
    steps = len(rows[0][3]["series"]["max_abs"])
    carry = ", ".join(f"{out} -> {fed}" for out, fed in (stream.get("carry") or {}).items()) or "nothing carried"
    lines = [Text(f"Stream: {steps} steps, {carry} on each board", "bold")]
    reference = summary.get("reference", "x86")
    sides = [reference] + [name for name in summary.get("boards") or {}] + \
        [str(comparison.get("reference") or "") for _, comparison, _, _ in rows]
    # Board names whole (never cut to fit): the sparklines take what is left.
    name_width = min(max(12, *(len(name) for name in sides)), max(12, width // 3))
    spark = max(8, min(steps, width - name_width - 4))
    for label, comparison, output, result in rows:
        series = result["series"]
        errors = series["max_abs"]
        growth = (result.get("metrics") or {}).get("error_growth")
        trend = "" if growth is None else f" (x{growth:.2g}" + (": grows)" if growth >= GROWS else ")")
        lines.append(Text.assemble((label, "bold"), f" {output}: max |err| per step ",
                                   (f"{step_errors_text(errors)}{trend}", "dim")))
        lines.append(_spark_line(("  " + "|err|".ljust(name_width) + " ", "dim"),
                                 sparkline(downsample(errors, spark), log=True)))
        if "target" in series:
            values = [v for v in series["reference"] + series["target"] if v is not None] or [0.0]
            low, high = min(values), max(values)
            board = label.split(" vs ")[0] if label == conversion_label(summary) else label
            against = comparison.get("reference") or reference
            for side, name in ((series["reference"], against), (series["target"], board)):
                if len(name) > name_width:  # longer than a third of the terminal: on a line of its own
                    lines.append(Text("  " + name, "dim"))
                    name = ""
                lines.append(_spark_line(("  " + name.ljust(name_width) + " ", "dim"),
                                         _scaled_spark(downsample(side, spark, _mean), low, high)))
            lines.append(Text(f"  {'':{name_width}} {output} per step, {low:.3g} .. {high:.3g} on both lines",
                              "dim"))
        if "flipped" in series:
            flipped = series["flipped"]
            shown = ", ".join(str(step) for step in flipped[:8]) + (", ..." if len(flipped) > 8 else "")
            threshold = ((summary.get("output_specs") or {}).get(output) or {}).get("threshold", 0.5)
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


def render(summary: dict, console: Console, run_dir: Optional[Path] = None) -> None:
    """The terminal report of a run's record (summary.json), live or stored: the same view of the same data."""
    header = Table.grid(padding=(0, 1))
    header.add_column(style="dim", no_wrap=True)
    header.add_column(overflow="fold")
    header.add_row("scenario", f"[bold]{escape(summary['scenario']['name'])}[/]  run {summary.get('run_id')}")
    header.add_row("model", escape(model_line(summary)))
    for label, text, detail in input_rows(summary):
        header.add_row(escape(label), escape(text) + (f"  [dim]{escape(detail)}[/]" if detail else ""))
    header.add_row("settings", settings_text(summary.get("settings") or {}))
    if summary.get("targets_from"):
        header.add_row("boards", escape(targets_text(summary)))
    console.print(Panel(header, title="mnn-harness", title_align="left", expand=False))
    console.print(verdict_table(summary))
    for line in failure_reasons(summary):
        console.print(line)
    for line in stream_lines(summary, console.width):
        console.print(line)  # the sparklines are sized to the width (and crop); the words wrap
    for name, parity in (summary.get("preprocess_parity") or {}).items():
        m = parity.get("metrics") or {}
        shown = (f"max abs {format_metric(m.get('max_abs'), 'max_abs', 'text')} "
                 f"(~{m.get('gray_levels') or 0:.0f} gray levels)" if m.get("max_abs") is not None
                 else parity.get("error") or "")
        verdict = ("PASS", "bold green") if parity.get("passed") else ("FAIL", "bold red")
        console.print(Text.assemble(("preprocessing on ", "dim"), (name, "bold"),
                                    (f" ({parity.get('backend') or '?'}) vs host: ", "dim"), shown, " ", verdict,
                                    (f": {parity['hint']}" if parity.get("hint") and not parity.get("passed")
                                     else "", "red")))
    if summary.get("findings"):
        console.print(Text("Likely causes", "bold"))
        for finding in summary["findings"]:
            where = f"{finding['board']}: " if finding.get("board") else ""
            console.print(Text.assemble(("● ", "yellow"), (finding["title"], "bold yellow"),
                                        f" — {where}{finding['message']}"))
    console.print(boards_table(summary))
    for line in notes(summary):
        console.print(line)
    if run_dir is not None:
        console.print(f"[dim]results: {escape(str(run_dir))}[/]")
    console.print(summary_line(summary))


def show_files(run_dir: Path, console: Console) -> None:
    """Where the run folder's views are (junit.xml, report.html), those that were written."""
    for path in kept_views(run_dir):
        console.print(f"[dim]{path.name}: {escape(str(path))}[/]")
