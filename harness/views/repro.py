"""Views of a reproduction (analysis/repro.ReproRecord): the terminal lines and ISSUE.md for MNN's tracker.

Both read the record and change nothing in it. ISSUE.md follows the headings
of MNN's own issue template (Platform, Github Version, Compiling Method),
then says what a maintainer asks first: the op and its parameters as MNN's
JSON dump names them, the settings, the numbers, the exact commands and the
log of the run on the board, and the workaround that was measured.
"""

import json
import math
from typing import List, Optional

from rich.console import Console
from rich.text import Text

from ..analysis.repro import Attempt, Difference, ReproRecord, rounding_context
from ..core.board_files import human_size
from ..core.repro_files import CPP_FILE, ISSUE_FILE, MODEL_FILE, SCRIPT_FILE, SOURCE_FILE, TENSORS_FILE, shell_args


def value_text(value: Optional[float]) -> str:
    if value is None:
        return "–"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def difference_text(d: Difference, board: str, reference: str) -> str:
    """One output's difference in a sentence: NaN/Inf new on the board, else max abs, where, FP16 steps, relative."""
    where = "(" + ", ".join(str(i) for i in d.where) + ")"
    fed = (f" (it was fed NaN/Inf: {d.nonfinite} NaN/Inf values on {board} where {reference} has numbers count as "
           "inherited)") if d.fed_nonfinite and d.nonfinite else ""
    if d.nonfinite and not d.fed_nonfinite:
        return (f"{d.output}: {d.nonfinite} of {d.elements} values are NaN/Inf on {board} and finite on {reference} "
                f"(first at {where}: {value_text(d.board_value)} against {value_text(d.reference_value)}; "
                f"max |{reference}| {value_text(d.scale)}"
                + (", beyond FP16's largest, 65504)" if d.scale > 65504 else ")"))
    steps = (f"{d.fp16_steps:.3g} FP16 steps at that value" if d.fp16_steps is not None
             else "beyond FP16's range there")
    return (f"{d.output}: max |{board} - {reference}| {value_text(d.max_abs)} at {where} ({value_text(d.board_value)} "
            f"against {value_text(d.reference_value)}: {steps}); {value_text(d.relative)} of max |{reference}| "
            f"{value_text(d.scale)} ({d.relative / 2 ** -10:.3g} x FP16's 2^-10){fed}")


def range_note(record: ReproRecord) -> Optional[str]:
    """When NaN/Inf appear on an FP16 board where the reference's own values pass FP16's largest: what that means."""
    winner = record.reproducing
    if winner is None or record.board.get("arithmetic") != "FP16":
        return None
    beyond = [d for d in winner.differences if d.nonfinite and not d.fed_nonfinite and d.scale > 65504]
    if not beyond:
        return None
    d = max(beyond, key=lambda item: item.scale)
    return (f"{record.reference['board']}'s own values reach {value_text(d.scale)}, {d.scale / 65504:.3g} times "
            f"FP16's largest (65504): at precision {record.board['settings'].get('precision')} they cannot be held, "
            "so this is FP16's range rather than a wrong result of the kernel")


def attempt_line(attempt: Attempt, record: ReproRecord) -> str:
    ops = attempt.ops
    what = (f"{ops[-1]} alone" if len(ops) == 1 else f"{len(ops)} ops ({', '.join(ops[:3])}"
            + (", ..." if len(ops) > 3 else "") + ")") if ops else "no stretch"
    if attempt.problem:
        return f"{what}: {attempt.problem}"
    verdict = "shows it" if attempt.reproduces else "does not show it"
    return (f"{what}: cut {human_size(attempt.cut_bytes)}, {record.board['board']} against "
            f"{record.reference['board']} {value_text(attempt.error)} (the search: "
            f"{'' if record.claim.exact else '≈'}{value_text(record.claim.value)}): {verdict}")


def same_text(attempt: Attempt) -> str:
    if attempt.same_as_model is None:
        return "the op's output in the whole model was not captured to compare with"
    if attempt.same_as_model == 0:
        return "the cut's output on the board is bit for bit the op's output in the whole model"
    return ("the cut's output on the board differs from the op's in the whole model by "
            f"{value_text(attempt.same_as_model)}")


def render_repro(record: ReproRecord, console: Console) -> None:
    board, reference = record.board, record.reference
    console.print(Text(f"repro {record.op} ({record.op_type}) on {board['label']} against {reference['label']}"
                       + (f", {record.sample_name}" if record.sample_name else ""), "bold"))
    console.print(Text(f"the search: {record.op} {record.claim.describe()}", "dim"))
    for attempt in record.attempts:
        console.print(Text("  " + attempt_line(attempt, record), "green" if attempt.reproduces else "yellow"))
    winner = record.reproducing
    if winner is None:
        tried = [a for a in record.attempts if a.error is not None]
        if tried and not record.claim.nonfinite:
            largest = max(tried, key=lambda a: a.error)
            console.print(Text(f"up to {len(tried[-1].ops)} ops cut out, the board adds at most "
                               f"{value_text(largest.error)} against the search's {'' if record.claim.exact else '≈'}"
                               f"{value_text(record.claim.value)} "
                               f"(limit {record.claim.tolerance:.2g}): the error builds up over more of the net than "
                               "that (--widen grows it further)", "yellow"))
        console.print(Text(f"does not reproduce outside the model: no bundle is offered (what was tried: "
                           f"{record.bundle_dir}/repro.json)", "bold red"))
        return
    original = record.model.get("bytes") or 0
    share = f" ({winner.cut_bytes / original:.1%} of the model's {human_size(original)})" if original else ""
    console.print(Text(f"cut: {', '.join(winner.ops)} into {MODEL_FILE}, {human_size(winner.cut_bytes)}{share}; "
                       + same_text(winner)))
    for d in winner.differences:
        console.print(Text(difference_text(d, board["board"], reference["board"]), "red"))
    if range_note(record):
        console.print(Text(range_note(record), "yellow"))
    context = rounding_context(winner.error, board.get("arithmetic", ""), winner.reduction,
                               winner.reduction_op, len(winner.ops))
    if context:
        console.print(Text(context, "dim"))
    for workaround in record.workarounds:
        console.print(Text("workaround (measured): " + workaround_text(workaround, record),
                           "green" if workaround.removes else "yellow"))
    source = record.source or {}
    if source.get("file"):
        console.print(Text(source_text(source, reference["board"]), "dim"))
    elif source.get("note"):
        console.print(Text(f"source sub-graph: none ({source['note']})", "dim"))
    console.print(f"[dim]bundle ({ISSUE_FILE}, {SCRIPT_FILE}, {CPP_FILE}, {MODEL_FILE}, {TENSORS_FILE}):[/]",
                  highlight=False)
    console.print(Text(record.bundle_dir, "dim"), soft_wrap=True)  # a path is copied whole, never broken
    console.print(Text(f"reproduces: {record.op} ({record.op_type}) on {board['board']} at "
                       f"{board['settings'].get('precision', 'normal')}, verified on {board['board']} and "
                       f"{reference['board']}", "bold green"))


def workaround_text(workaround, record: ReproRecord) -> str:
    who = f"{record.op_type} at {workaround.label} on {record.board['board']}"
    if workaround.problem:
        return f"{who}: could not run ({workaround.problem})"
    nonfinite = sum(d.nonfinite for d in workaround.differences)
    what = f"{nonfinite} NaN/Inf, " if nonfinite else "no NaN/Inf, "
    verdict = ("the error goes away" if workaround.removes
               else "the error stays")
    return f"{who}: {what}{value_text(workaround.error)} (relative) against {record.reference['board']}: {verdict}"


def source_text(source: dict, reference: str) -> str:
    nodes = " + ".join(source.get("nodes") or [])
    against = source.get("against_reference") or []
    numbers = "; ".join(f"{value_text(item.get('relative'))} against {reference}" for item in against)
    return f"source sub-graph: {source['file']} ({nodes}); {source.get('runtime', '')} on the board's inputs: {numbers}"


# ---- ISSUE.md -------------------------------------------------------------------------------

def op_parameters(params: dict) -> List[str]:
    """MNN's JSON of one op as lines: its scalar fields by MNN's names, arrays by their size and range."""
    main = params.get("main") or {}
    lines: List[str] = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict) and set(value) >= {"values"} and set(value) <= {"values", "min", "max", "absmax"}:
            span = f" in [{value['min']:.6g}, {value['max']:.6g}]" if "min" in value else ""
            lines.append(f"{prefix}: {value['values']} values{span}")
        elif isinstance(value, dict):
            scalars = [f"{k} {json.dumps(v)}" for k, v in value.items() if not isinstance(v, (dict, list))]
            if scalars:
                lines.append(f"{prefix or 'main'}: {', '.join(scalars)}")
            for key, item in value.items():
                if isinstance(item, (dict, list)):
                    walk(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, list):
            lines.append(f"{prefix}: {json.dumps(value)}")

    walk("", main)
    return [f"{params.get('main_type') or 'main'} " + lines[0]] + lines[1:] if lines else []


def _platform(side: dict, run) -> str:
    parts = [f"{side['board']}: {side.get('machine') or (run.machine if run else '?')}"]
    if side.get("kind") == "emulated":
        parts.append(f"an emulated {side.get('cpu', '?')} (qemu-aarch64-static -cpu {side.get('cpu', '?')}, "
                     "real aarch64 MNN code under qemu-user)")
    elif side.get("kind") == "local":
        parts.append("the x86 host")
    features = " ".join(side.get("cpu_features") or (run.cpu_features if run else []))
    if features:
        parts.append(f"CPU features {features}")
    line = ", ".join(parts)
    banner = run.mnn_banner if run else ""
    return line + (f"; MNN says \"{banner}\"" if banner else "")


def issue_text(record: ReproRecord) -> str:
    """ISSUE.md: the report to paste into MNN's issue tracker, with the bundle's files attached."""
    winner = record.reproducing
    if winner is None:
        return ""
    board, reference = record.board, record.reference
    b, r = board["board"], reference["board"]
    bs, rs = board["settings"], reference["settings"]
    nonfinite = any(d.nonfinite for d in winner.differences)
    symptom = ("gives NaN/Inf" if nonfinite else f"differs by {value_text(winner.error)} (relative)")
    cpu = board.get("cpu") if board.get("kind") == "emulated" else board.get("machine")
    what = record.op_type if len(winner.ops) == 1 else f"{len(winner.ops)} ops ending in {record.op_type}"
    title = (f"{what} {symptom} on {cpu} ({board.get('arithmetic', '')}) at precision "
             f"{bs.get('precision', 'normal')}, not on {reference.get('machine') or r}")
    model = record.model
    args = " ".join(model.get("converter_args") or [])
    source_name = (model.get("source") or "").rsplit("/", 1)[-1]
    if model.get("converted") and source_name:
        converter = (f"`mnnconvert -f {model.get('source_format')} --modelFile {source_name} --MNNModel model.mnn "
                     f"--bizCode harness{(' ' + args) if args else ''}` (MNN "
                     f"{model.get('converter_version') or record.cut.get('converter_version') or '?'}'s converter, "
                     "called in-process as `_tools.mnnconvert`)")
    else:
        converter = (f"a deployed .mnn; its file says MNN {record.cut.get('converter_version') or '?'} converted it "
                     f"(bizCode {record.cut.get('biz_code') or '?'}); the command line is not known")
    lines = [f"# {title}", "",
             f"<!-- written by mnn-harness (`harness repro`); the commands below were run on {b} and {r} before "
             "this was offered -->", "",
             "## Platform", "",
             f"- Board: {_platform(board, winner.board)}",
             f"- Reference: {_platform(reference, winner.reference)}", "",
             "## Github Version", "",
             f"- MNN {winner.board.mnn_version if winner.board else board.get('mnn_version')} on {b} (Python "
             f"{winner.board.python if winner.board else '?'}), MNN "
             f"{winner.reference.mnn_version if winner.reference else reference.get('mnn_version')} on {r}: the PyPI "
             "wheels (`pip install MNN==VERSION`)", "",
             "## Compiling Method", "",
             "- None: the PyPI wheels as published", "",
             "## Model and conversion", "",
             f"- Converter: {converter}",
             f"- The model: {model.get('mnn', '').rsplit('/', 1)[-1]}, {human_size(int(model.get('bytes') or 0))}; "
             f"attached, the {len(winner.ops)} op(s) cut out of it with MNN's expression API (`load_as_dict`, "
             f"placeholders, `save`): {MODEL_FILE}, {human_size(winner.cut_bytes)}", "",
             "## Settings", "",
             f"- {b}: Session API, precision `{bs.get('precision', 'normal')}`, numThread {bs.get('threads', 1)}, "
             f"backend {str(bs.get('backend', 'cpu')).upper()} ({board.get('arithmetic', '')} arithmetic)",
             f"- {r}: Session API, precision `{rs.get('precision', 'normal')}`, numThread {rs.get('threads', 1)}, "
             f"backend {str(rs.get('backend', 'cpu')).upper()} ({reference.get('arithmetic', '')} arithmetic)", "",
             "## The op" + ("" if len(winner.ops) == 1 else "s"), ""]
    for op in record.cut.get("ops") or []:
        lines.append(f"- `{op['name']}`, {op['type']}:")
        lines.extend(f"  - {line}" for line in op_parameters(op.get("params") or {}))
    for item in record.cut.get("inputs") or []:
        lines.append(f"- input `{item['tensor']}`: {item['dtype']} {item['shape']} ({item.get('format') or '?'} in "
                     f"MNN), {b}'s own values ({item['from']})")
    for item in record.cut.get("outputs") or []:
        lines.append(f"- output `{item['name']}`: {item['dtype']} {item['shape']}")
    lines += ["", "## What happens", ""]
    lines += [f"- {difference_text(d, b, r)}" for d in winner.differences]
    if range_note(record):
        lines.append(f"- {range_note(record)}")
    own_limit = (f" (the search's own limit for it: {record.claim.search_tolerance:.2g})"
                 if record.claim.search_tolerance != record.claim.tolerance else "")
    lines.append(f"- {same_text(winner)}; the layer search of the whole model found that {record.op} "
                 f"{record.claim.describe()}{own_limit}")
    context = rounding_context(winner.error, board.get("arithmetic", ""), winner.reduction,
                               winner.reduction_op, len(winner.ops))
    if context:
        lines.append(f"- {context}")
    source = record.source or {}
    if source.get("file"):
        for item in source.get("against_reference") or []:
            lines.append(f"- The source's sub-graph ({SOURCE_FILE}: {' + '.join(source.get('nodes') or [])}) on "
                         f"{source.get('runtime', 'ONNX Runtime')}, same inputs: {value_text(item.get('relative'))} "
                         f"(relative) against {r}")
    lines += ["", "## To reproduce", "", "```",
              f"pip install MNN=={winner.board.mnn_version if winner.board else ''} numpy",
              f"python3 {SCRIPT_FILE}    # {b}'s settings are its defaults: {shell_args(bs)}",
              f"python3 {SCRIPT_FILE} {shell_args(rs)}    # the reference's settings ({r})", "```", "",
              f"What `python3 {SCRIPT_FILE}` printed on {b}:", "", "```",
              (winner.board.output.strip() if winner.board else ""), "```", "",
              f"The same with MNN's C++ API: {CPP_FILE} (build line at its top).", ""]
    if record.workarounds:
        lines += ["## Workaround (measured on the cut)", ""]
        lines += [f"- {workaround_text(w, record)}" for w in record.workarounds]
        lines.append("")
    lines += ["## Files", "",
              f"- {MODEL_FILE}: the op cut out of the model; {TENSORS_FILE}: `input/<tensor>` ({b}'s own inputs to "
              f"it), `reference/<tensor>` ({r}'s output), `board/<tensor>` ({b}'s output); input-N.bin, "
              "reference-N.bin: the same as raw arrays for the C++ snippet",
              f"- {SCRIPT_FILE} (MNN's Python API and numpy only), {CPP_FILE} (MNN's C++ API)"
              + (f", {SOURCE_FILE} (the source model's sub-graph)" if source.get("file") else ""), ""]
    return "\n".join(lines)
