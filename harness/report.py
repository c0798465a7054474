"""Views of a RunReport: the rich terminal report, its live progress, and summary.json.

Colours mean one thing each: green passed, red failed, yellow a warning a
user should read (a version mismatch, a host key accepted on first use),
dim is context.
"""

import dataclasses
import json
import math
import os
import statistics
from pathlib import Path
from typing import Dict, List, Optional

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .backend import fallback, ran_text
from .history import sparkline
from .results import INTERRUPTED, OK, UNUSABLE, TargetResult
from .runner import Progress, RunReport, mnn_mismatch

SUMMARY_SCHEMA = 2
"""2: inputs by name (summary["inputs"]["tensors"]), streams, backends, per-step series."""
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

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def step(self, message: str) -> None:
        self.console.print(f"[dim]•[/] {message}")

    def add_target(self, name: str) -> None:
        self.tasks[name] = self.bar.add_task(name, total=1, stage="[dim]waiting")

    def stage(self, name: str, stage: str) -> None:
        self.bar.update(self.tasks[name], stage=f"[cyan]{stage}")

    def target_done(self, name: str, result: TargetResult) -> None:
        shown = {OK: "[green]done", UNUSABLE: "[red]unusable", INTERRUPTED: "[yellow]interrupted"}.get(
            result.status, "[red]failed")
        self.bar.update(self.tasks[name], stage=shown, completed=1)


def format_metric(value: Optional[float], kind: str) -> str:
    """A metric as the reports show it: kind "percent", "cosine", or anything else in e-notation."""
    if value is None:
        return "–"
    if kind == "percent":
        return f"{value:.3%}"
    if kind == "cosine":
        return f"{value:.6f}"
    return f"{value:.2e}"


def agreement_metric(metrics: dict) -> Optional[float]:
    """The "labels" column: argmax agreement of class logits, mask IoU, or the share of agreeing decisions."""
    for name in ("argmax_agreement", "miou", "decision_agreement"):
        if metrics.get(name) is not None:
            return metrics[name]
    return None


def verdict_table(report: RunReport) -> Table:
    table = Table(title=f"Accuracy against [bold]{report.reference}[/] (the x86 host)", title_justify="left",
                  box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    # "labels": argmax agreement of class logits, or the mask IoU of a probability map.
    for column in ("Board", "Output", "max abs", "mean abs", "p99 abs", "cosine", "labels", "Verdict"):
        table.add_column(column, justify="left" if column in ("Board", "Output", "Verdict") else "right",
                         no_wrap=True)
    rows = sorted(report.comparisons.values(), key=lambda c: (c.passed, c.target))
    if report.conversion is not None:
        rows.insert(0, report.conversion)  # the model itself before the boards: x86 MNN vs its source
    # Failures first: they are what the user came for.
    for comparison in rows:
        if comparison.error:
            table.add_row(comparison.target, "–", "", "", "", "", "", Text("ERROR", "bold red"))
            continue
        if comparison.problems and comparison.outputs and all(o.passed for o in comparison.outputs):
            table.add_row(comparison.target, "–", "", "", "", "", "", Text("FAIL backend", "bold red"))
        for output in comparison.outputs:
            m = output.metrics
            label = (f"{comparison.target} vs {comparison.reference}" if comparison is report.conversion
                     else comparison.target)
            cause = report.attribution.get(comparison.target) if comparison is not report.conversion else None
            verdict = Text("PASS", "bold green") if output.passed else Text("FAIL", "bold red")
            if not output.passed and cause and cause != "none":
                verdict.append(f" {cause}", "red")
            table.add_row(label, output.output, format_metric(m.get("max_abs"), "e"),
                          format_metric(m.get("mean_abs"), "e"), format_metric(m.get("p99_abs"), "e"),
                          format_metric(m.get("cosine"), "cosine"),
                          format_metric(agreement_metric(m), "percent"), verdict)
    return table


def failure_reasons(report: RunReport) -> list:
    lines = []
    comparisons = sorted(report.comparisons.values(), key=lambda c: c.target)
    if report.conversion is not None:
        comparisons.insert(0, report.conversion)
    for comparison in comparisons:
        if comparison.error:
            lines.append(Text(f"✗ {comparison.target}: {comparison.error}", "red"))
        for problem in comparison.problems:
            lines.append(Text(f"✗ {comparison.target}: {problem}", "red"))
        for output in comparison.outputs:
            if not output.passed:
                lines.append(Text(f"✗ {comparison.target} {output.output}: {'; '.join(output.reasons)}", "red"))
    return lines


def boards_table(report: RunReport) -> Table:
    table = Table(title="Boards", title_justify="left", box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for column in ("Board", "Status", "Machine", "MNN", "Python", "CPU features", "Latency", "Peak RSS", "Wall"):
        table.add_column(column, no_wrap=column != "CPU features",
                         justify="right" if column in ("Latency", "Peak RSS", "Wall") else "left")
    reference_mnn = report.results[report.reference].facts.get("mnn_version")
    for name, result in report.results.items():
        facts = result.facts
        status = Text(result.status, "green" if result.ok else "red")
        mnn = facts.get("mnn_version") or "?"
        mnn_text = Text(mnn, "yellow bold" if reference_mnn and mnn not in ("?", reference_mnn) else "")
        features = [f for f in FEATURES_SHOWN if f in (facts.get("cpu_features") or [])]
        latency = facts.get("latency_ms") or []
        latency_text = f"{statistics.median(latency):.1f} ms" if latency else "–"
        rss = facts.get("peak_rss_mb")
        wall = sum(result.timings.values())
        table.add_row(name + (" [dim](ref)[/]" if name == report.reference else ""), status,
                      facts.get("machine", "?"), mnn_text, facts.get("python", "?"),
                      " ".join(features) or "–", latency_text, f"{rss:.0f} MB" if rss else "–", f"{wall:.1f} s")
    return table


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000.0
    return f"{count} B"


def notes(report: RunReport) -> list:
    lines = []
    reference = report.results[report.reference]
    for name, result in report.results.items():
        mismatch = mnn_mismatch(result, reference)
        if mismatch:
            lines.append(Text(f"{name}: {mismatch}: a version mismatch can explain a difference", "yellow"))
        expected = report.boards[name].mnn_version
        found = result.facts.get("mnn_version")
        if expected and found and expected != found:
            lines.append(Text(f"{name}: the inventory expects MNN {expected}, the board has {found}", "yellow"))
        if result.bytes_uploaded or result.bytes_downloaded:
            lines.append(Text(f"{name}: sent {_size(result.bytes_uploaded)}, fetched "
                              f"{_size(result.bytes_downloaded)}", "dim"))
        for note in result.notes:
            lines.append(Text(f"{name}: {note}", "yellow"))
        if result.facts.get("api_reason"):
            lines.append(Text(f"{name}: {result.facts['api_reason']}", "dim"))
        fell_back = fallback(result)
        if fell_back and name not in report.backend_failures:
            lines.append(Text(f"{name}: {fell_back} (allowed: run.allow_fallback)", "yellow"))
        elif name == report.reference and name in report.backend_failures and report.conversion is None:
            lines.append(Text(f"{name}: {report.backend_failures[name]}", "red"))
        elif ran_text(result) and (result.facts.get("backend") or {}).get("asked") not in (None, "cpu"):
            lines.append(Text(f"{name}: ran on {ran_text(result)}", "dim"))
        if result.status != OK and result.error:
            lines.append(Text(f"{name}: {result.error}", "red"))
        banner = result.facts.get("mnn_banner")
        if banner:
            lines.append(Text(f"{name}: MNN says \"{banner}\"", "dim"))
    return lines


def summary_line(report: RunReport) -> Text:
    compared = len(report.compared_targets)
    failed = report.failed
    unusable = report.unusable
    if report.interrupted:
        stopped = report.interrupted_targets
        finished = [name for name in report.results if name not in stopped]
        return Text(f"INTERRUPTED ({report.interrupted})  finished: {', '.join(finished) or 'none'}; "
                    f"stopped: {', '.join(stopped) or 'none'} (agents killed, locks released)  "
                    f"[exit {report.exit_code}]", "bold yellow")
    if report.exit_code == 0:
        return Text(f"PASS  {compared} board(s) match {report.reference} within tolerance "
                    f"({report.scenario.name}, {report.wall_s:.0f} s)", "bold green")
    parts = []
    if failed:
        reasons = []
        for name in failed:
            comparison = report.comparisons[name]
            if comparison.error:
                reasons.append(f"{name}: did not run")
            else:
                bad = [f"{o.output} {o.reasons[0]}" for o in comparison.outputs if not o.passed]
                bad += [problem.split(":")[0] for problem in comparison.problems]
                reasons.append(f"{name}: {bad[0]}" if bad else name)
        parts.append(f"{len(failed)} of {compared} board(s) differ ({'; '.join(reasons)})")
    if unusable:
        parts.append(f"{len(unusable)} board(s) could not be used ({', '.join(unusable)})")
    fell_back = [name for name in report.backend_failures if name not in failed]
    if fell_back:
        parts.append(f"{', '.join(fell_back)} ran another backend than asked")
    if not parts and report.conversion is not None and not report.conversion.passed:
        parts.append(f"{report.reference} differs from the source model")
    label = "FAIL" if report.exit_code == 1 else "BOARD ERROR"
    return Text(f"{label}  " + "; ".join(parts) + f"  [exit {report.exit_code}]", "bold red")


def model_text(model) -> str:
    if not getattr(model, "converted", True):
        source = f", source {model.source_path.name}" if model.source_path is not None else ""
        return f"{model.mnn_path.name} {model.mnn_sha256[:12]} as deployed (no conversion{source})"
    return (f"{model.source_name} -> .mnn {model.mnn_sha256[:12]}  converter: "
            f"{' '.join(model.converter_args) or '(defaults)'}")


def input_rows(inputs) -> list:
    """(label, text) per input: name, provider, samples x shape, dtype, sha256, and what it is."""
    tensors = getattr(inputs, "tensors", None) or []
    if not tensors:
        return [("inputs", f"{len(inputs.sample_names)} x {list(inputs.shape)}  sha256 {inputs.sha256[:12]}")]
    rows = []
    for tensor in tensors:
        count = "shared" if tensor.shared else f"{tensor.samples} x"
        rows.append((f"input {tensor.name}", f"{tensor.provider}  {count} {list(tensor.shape)} {tensor.dtype}  "
                     f"sha256 {tensor.sha256[:12]}  [dim]{escape(tensor.detail)}[/]"))
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


def stream_lines(report: RunReport, width: int) -> List[Text]:
    """Per board and output: the max abs error per step as a sparkline (log scale), both sides' values per
    step on one scale when a step has one value, and the decisions that flip. Fits `width` columns."""
    stream = getattr(report.scenario, "stream", None)
    comparisons = sorted(report.comparisons.values(), key=lambda c: c.target)
    if report.conversion is not None:
        comparisons.insert(0, report.conversion)  # x86 against the source model first, as in the verdicts
    rows = [(c, o) for c in comparisons for o in c.outputs if o.series.get("max_abs")]
    if stream is None or not rows:
        return []
    steps = len(rows[0][1].series["max_abs"])
    carry = ", ".join(f"{out} -> {fed}" for out, fed in stream.carry.items()) or "nothing carried"
    lines = [Text(f"Stream: {steps} steps, {carry} on each board", "bold")]
    name_width = 12
    spark = max(8, min(steps, width - name_width - 4))
    for comparison, output in rows:
        series = output.series
        errors = series["max_abs"]
        label = (f"{comparison.target} vs {comparison.reference}" if comparison is report.conversion
                 else comparison.target)
        growth = output.metrics.get("error_growth")
        trend = "" if growth is None else f" (x{growth:.2g}" + (": grows)" if growth >= GROWS else ")")
        lines.append(Text.assemble((label, "bold"), f" {output.output}: max |err| per step ",
                                   (f"{_e(errors[0])} .. {_e(errors[-1])}{trend}", "dim")))
        lines.append(Text.assemble(("  " + "|err|".ljust(name_width) + " ", "dim"),
                                   sparkline(downsample(errors, spark), log=True)))
        if "target" in series:
            values = [v for v in series["reference"] + series["target"] if v is not None] or [0.0]
            low, high = min(values), max(values)
            for side, name in ((series["reference"], comparison.reference), (series["target"], comparison.target)):
                lines.append(Text.assemble(("  " + name[:name_width].ljust(name_width) + " ", "dim"),
                                           _scaled_spark(downsample(side, spark, _mean), low, high)))
            lines.append(Text(f"  {'':{name_width}} {output.output} per step, {low:.3g} .. {high:.3g} on both lines",
                              "dim"))
        if "flipped" in series:
            flipped = series["flipped"]
            shown = ", ".join(str(step) for step in flipped[:8]) + (", ..." if len(flipped) > 8 else "")
            threshold = report.scenario.output_spec(output.output).threshold
            lines.append(Text(f"  decisions at {threshold:g}: {len(flipped)} of {steps} steps flip"
                              + (f" (steps {shown})" if flipped else ""), "red" if flipped else "green"))
    return lines


def _e(value: Optional[float]) -> str:
    return "inf" if value is None else f"{value:.1e}"


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


def render(report: RunReport, console: Console) -> None:
    scenario, model, inputs = report.scenario, report.model, report.inputs
    header = Table.grid(padding=(0, 1))
    header.add_column(style="dim", no_wrap=True)
    header.add_column()
    header.add_row("scenario", f"[bold]{scenario.name}[/]  run {report.run_id}")
    header.add_row("model", escape(model_text(model)))
    for label, text in input_rows(inputs):
        header.add_row(escape(label), text)
    header.add_row("settings", " ".join(f"{k}={v}" for k, v in scenario.run.as_dict().items()))
    console.print(Panel(header, title="mnn-harness", title_align="left", expand=False))
    console.print(verdict_table(report))
    for line in failure_reasons(report):
        console.print(line)
    for line in stream_lines(report, console.width):
        console.print(line, overflow="crop", no_wrap=True)
    for name, parity in report.parity.items():
        shown = (f"max abs {parity.metrics['max_abs']:.3g} (~{parity.metrics['gray_levels']:.0f} gray levels)"
                 if parity.metrics else parity.error)
        console.print(Text.assemble(("preprocessing on ", "dim"), (name, "bold"),
                                    (f" ({parity.backend or '?'}) vs host: ", "dim"), shown or "", " ",
                                    ("PASS", "bold green") if parity.passed else ("FAIL", "bold red")))
    if report.findings:
        console.print(Text("Likely causes", "bold"))
        for finding in report.findings:
            where = f"{finding.board}: " if finding.board else ""
            console.print(Text.assemble(("● ", "yellow"), (finding.title, "bold yellow"), f" — {where}{finding.message}"))
    console.print(boards_table(report))
    for line in notes(report):
        console.print(line)
    console.print(f"[dim]results: {report.run_dir}[/]")
    console.print(summary_line(report))


def _json_metrics(metrics: dict) -> dict:
    """JSON has no infinity (an SNR of identical outputs): null stands for it."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def _comparison_json(comparison) -> dict:
    return {"passed": comparison.passed, "error": comparison.error, "reference": comparison.reference,
            "problems": list(comparison.problems),
            "outputs": {o.output: {"passed": o.passed, "metrics": _json_metrics(o.metrics), "reasons": o.reasons,
                                   **({"per_class_iou": {str(c): v for c, v in o.per_class_iou.items()}}
                                      if o.per_class_iou else {}),
                                   **({"series": {k: [_finite(v) for v in values] for k, values in o.series.items()}}
                                      if o.series else {})}
                        for o in comparison.outputs}}


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def summary(report: RunReport) -> dict:
    """summary.json: everything the terminal showed, as data for scripts and later runs."""
    return {
        "schema": SUMMARY_SCHEMA,
        "run_id": report.run_id,
        "started_at": report.started_at,
        "wall_s": report.wall_s,
        "exit_code": report.exit_code,
        "interrupted": report.interrupted,
        "scenario": {"name": report.scenario.name, "path": str(report.scenario.path)},
        "model": {"source": str(report.model.source_path) if report.model.source_path else None,
                  "mnn_path": str(report.model.mnn_path), "mnn_sha256": report.model.mnn_sha256,
                  "converted": report.model.converted, "source_format": report.model.source_format,
                  "converter_args": list(report.model.converter_args), "outputs": list(report.model.outputs),
                  "compared": report.scenario.compared_outputs(list(report.model.outputs))},
        "inputs": {"sha256": report.inputs.sha256, "samples": report.inputs.sample_names,
                   "shape": list(report.inputs.shape), "count": report.inputs.count,
                   "image_input": report.inputs.image_input,
                   "tensors": [tensor.as_dict() for tensor in report.inputs.tensors]},
        "stream": None if report.scenario.stream is None else {
            "steps": report.inputs.count, "carry": dict(report.scenario.stream.carry)},
        "settings": report.scenario.run.as_dict(),
        "allow_fallback": report.scenario.run.allow_fallback,
        "backend_failures": dict(report.backend_failures),
        # What the numbers were judged by, so a stored run can be read (and redrawn) without its YAML.
        "preprocess": None if report.scenario.preprocess is None else {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(report.scenario.preprocess).items()},
        "output_specs": {name: dataclasses.asdict(report.scenario.output_spec(name))
                         for name in report.model.outputs},
        "reference": report.reference,
        "host": report.host,
        "boards": {
            name: {"kind": result.kind, "status": result.status, "error": result.error,
                   "facts": {k: v for k, v in result.facts.items() if k != "traceback"},
                   "timings": result.timings, "notes": result.notes, "locked_span": result.locked_span,
                   "bytes_uploaded": result.bytes_uploaded, "bytes_downloaded": result.bytes_downloaded}
            for name, result in report.results.items()
        },
        "source": None if report.source is None else {
            "status": report.source.status, "error": report.source.error,
            "runtime": report.source.facts.get("runtime"),
            "path": str(report.model.source_path) if report.model.source_path else None},
        "conversion": None if report.conversion is None else _comparison_json(report.conversion),
        "attribution": report.attribution,
        "raw_outputs": report.raw_outputs,
        "preprocess_parity": {name: {"passed": p.passed, "backend": p.backend, "metrics": _json_metrics(p.metrics),
                                     "hint": p.hint, "error": p.error} for name, p in report.parity.items()},
        "findings": [{"cause": f.cause, "title": f.title, "board": f.board, "message": f.message}
                     for f in report.findings],
        "comparisons": {name: _comparison_json(comparison) for name, comparison in report.comparisons.items()},
    }


def write_summary(report: RunReport) -> Path:
    path = report.run_dir / "summary.json"
    tmp = path.with_name(".summary.json.tmp")
    tmp.write_text(json.dumps(summary(report), indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path

