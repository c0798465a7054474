"""What a run's record says happened, read the same way by every view.

The record is summary.json (the dict `report.summary(report)` returns). The
terminal report, junit.xml, report.html, the matrix table, the history and
the dashboard read verdicts, causes and the metric a user acts on through
these functions only, so that no two views can disagree on which number to
show or on why a board failed.
"""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..config.scenario import LOWER_LIMITS, UPPER_LIMITS
from ..core.backend import is_precision_problem
from .compare import format_metric
from .versions import VersionCheck, versions_differ

LABEL_METRICS = {"class_logits": "argmax_agreement", "probability_map": "miou", "decision": "decision_agreement",
                 "detections": "decoded_agreement", "ctc_text": "decoded_agreement",
                 "class_scores": "decoded_agreement", "keypoints": "decoded_agreement"}
"""The metric users act on, per output kind: labels that agree, masks that overlap, decisions that hold, and
for a decoded output the share of what the application sees that stays the same (boxes matched, texts read
exactly, top classes, points within PCK)."""
LABEL_NAMES = {"argmax_agreement": "argmax agreement", "miou": "mask IoU", "decision_agreement": "decision agreement",
               "decoded_agreement": "decoded agreement"}
ATTRIBUTION_LABELS = {"conversion": "conversion", "platform": "platform", "both": "both", "io": "app I/O",
                      "version": "MNN version", "backend": "backend", "precision": "precision", "none": ""}
"""How a board's attribution (diagnose.attributions) reads in every view."""
PASS, FAIL, ERROR, UNUSABLE = "pass", "fail", "error", "unusable"
WHOLE_RUN = "*"
"""The output of a verdict about a board whose model did not run and whose outputs are not known."""


def step_errors_text(errors: List[Optional[float]]) -> str:
    """"8.0e-08 .. 1.2e-05, worst at step 26": a stream's max abs error per step, its range and its worst step.

    Steps count from 0, as the flipped decisions do. None is an infinite error (JSON has no infinity).
    """
    if not errors:
        return "no steps"
    ranked = [float("inf") if value is None else value for value in errors]
    least, worst = (pick(range(len(ranked)), key=ranked.__getitem__) for pick in (min, max))
    shown = ["inf" if errors[step] is None else f"{errors[step]:.1e}" for step in (least, worst)]
    return f"{shown[0]} .. {shown[1]}, worst at step {worst}"


def output_kind(summary: dict, output: str) -> str:
    return ((summary.get("output_specs") or {}).get(output) or {}).get("kind", "tensor")


def label_metric(metrics: dict, kind: Optional[str] = None) -> Optional[str]:
    """The label metric of an output: argmax agreement of class logits, mask IoU of a probability map.

    None for a plain tensor. A record without output kinds (older runs) is
    read by which metric it has, class logits first.
    """
    if kind in LABEL_METRICS:
        return LABEL_METRICS[kind]
    if kind == "tensor":
        return None
    return next((name for name in ("argmax_agreement", "miou", "decision_agreement", "decoded_agreement")
                 if metrics.get(name) is not None), None)


@dataclass
class Decoded:
    """A decoded output's verdict as the record keeps it (summary.json's "decoded" sub-dict), for every view."""

    kind: str
    """detections, ctc_text, class_scores or keypoints."""
    label: str
    """What the labels column shows: "faces 2/2", "text 38/40 exact, CER 0.4%", "class top-1 8/8"."""
    samples: List[dict] = field(default_factory=list)
    """Per sample what each side decoded (boxes, texts, top classes) and what changed."""
    record: dict = field(default_factory=dict)
    """The whole sub-dict (threshold, box units, the traceback's file, ...)."""


def decoded_of(result: Optional[dict]) -> Optional[Decoded]:
    """The decoded verdict of one output's comparison in the record, or None for a tensor's."""
    record = (result or {}).get("decoded")
    if not isinstance(record, dict):
        return None
    return Decoded(str(record.get("kind", "?")), str(record.get("label", "?")), list(record.get("samples") or []),
                   record)


def labels_text(summary: dict, verdict: "Verdict") -> str:
    """The labels column of a verdict: a decoded output's label, else the kind's label metric, else "–"."""
    if verdict.decoded is not None:
        return verdict.decoded.label
    metric = label_metric(verdict.metrics, output_kind(summary, verdict.output))
    return format_metric(verdict.metrics.get(metric), metric) if metric else "–"


def attribution_label(value: Optional[str]) -> str:
    """"platform", "conversion + app I/O", ...; "" when there is nothing to attribute."""
    if not value:
        return ""
    return " + ".join(ATTRIBUTION_LABELS.get(part, part) for part in value.split("+") if part != "none")


def conversion_label(summary: dict) -> str:
    """"x86 vs onnxruntime": the conversion check's name in every view."""
    conversion = summary.get("conversion") or {}
    return f"{summary.get('reference', 'x86')} vs {conversion.get('reference') or source_runtime(summary)}"


def comparisons_of(summary: dict) -> List[Tuple[str, dict]]:
    """(label, comparison) of a summary: the conversion check first ("x86 vs onnxruntime"), then every board.

    The conversion check (MNN on x86 against the source model) is present
    when the scenario runs the source model; it counts in the exit code like
    a board, so every view shows it.
    """
    found = []
    conversion = summary.get("conversion")
    if conversion:
        found.append((conversion_label(summary), conversion))
    found += sorted(summary.get("comparisons", {}).items())
    return found


def source_runtime(summary: dict) -> str:
    source = summary.get("source") or {}
    runtime = source.get("runtime") or (summary.get("conversion") or {}).get("reference") or ""
    return runtime.split(" ")[0] or "the source model"


@dataclass
class Verdict:
    """One row of every verdict table: a board (or the conversion check) and one output."""

    board: str
    """Board name, or conversion_label() for the conversion check."""
    output: str
    status: str
    """pass, fail, error (the model did not run there) or unusable (the board could not be used)."""
    reasons: List[str] = field(default_factory=list)
    """Why it failed: broken limits first, then broken requirements, or the error."""
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)
    cause: str = ""
    """Where the difference comes from (attribution_label), for a failing board."""
    failure_type: str = ""
    """tolerance (the numbers) or requirement (require_same_mnn, the numbers aside); "" when it passed."""
    host: str = ""
    """The board that ran it (the reference, for the conversion check)."""
    is_conversion: bool = False
    notes: List[str] = field(default_factory=list)
    """What the verdict rests on when it is not the usual (a mask empty on both sides, judged as a tensor)."""
    decoded: Optional[Decoded] = None
    """A decoded output's verdict (what the application sees); None for a tensor."""

    @property
    def passed(self) -> bool:
        return self.status == PASS


def verdicts(summary: dict, failing_first: bool = True) -> List[Verdict]:
    """Every verdict of the record: the conversion check first, then the boards (failing first, or by name)."""
    outputs = list((summary.get("model") or {}).get("outputs") or [])
    boards = summary.get("boards") or {}
    attribution = summary.get("attribution") or {}
    found: List[Verdict] = []
    compared: List[Tuple[str, dict, bool]] = []
    if summary.get("conversion"):
        compared.append((conversion_label(summary), summary["conversion"], True))
    by_board = sorted((summary.get("comparisons") or {}).items(),
                      key=lambda item: ((item[1].get("passed", False), item[0]) if failing_first else item[0]))
    compared += [(name, comparison, False) for name, comparison in by_board]
    for board, comparison, is_conversion in compared:
        host = summary.get("reference", board) if is_conversion else board
        requirements = list(comparison.get("failed_requirements") or [])
        if comparison.get("error"):
            status = UNUSABLE if (boards.get(board) or {}).get("status") == UNUSABLE else ERROR
            for output in list(comparison.get("outputs") or {}) or outputs or [WHOLE_RUN]:
                found.append(Verdict(board, output, status, [comparison["error"]], host=host,
                                     is_conversion=is_conversion))
            continue
        problems = list(comparison.get("problems") or [])
        cause = attribution_label("backend" if problems else None) if is_conversion \
            else attribution_label(attribution.get(board))
        # What the application sees first (decoded outputs), as labels come first in a verdict's reasons.
        ordered = sorted((comparison.get("outputs") or {}).items(),
                         key=lambda item: decoded_of(item[1]) is None)
        for output, result in ordered:
            reasons = list(result.get("reasons") or []) if not result.get("passed") else []
            # A backend that fell back makes the numbers the CPU's: that is the failure to read first.
            failure_type = ("backend" if problems else "tolerance" if reasons
                            else "requirement" if requirements else "")
            failed = bool(failure_type)
            found.append(Verdict(board, output, FAIL if failed else PASS, problems + reasons + requirements,
                                 result.get("metrics") or {}, cause if failed else "", failure_type, host,
                                 is_conversion, list(result.get("notes") or []), decoded_of(result)))
    return found


PREPROCESSING = "(preprocessing)"
"""The output name of a preprocessing-parity verdict: the board's own input tensor against the host's."""


def parity_verdicts(summary: dict) -> List[Verdict]:
    """preprocess_parity: per board, its own preprocessing of the raw images against the host's tensors."""
    found = []
    for name, parity in sorted((summary.get("preprocess_parity") or {}).items()):
        passed = bool(parity.get("passed"))
        reason = parity.get("hint") or parity.get("error") or "differs from the host's"
        found.append(Verdict(name, PREPROCESSING, PASS if passed else FAIL, [] if passed else [reason],
                             parity.get("metrics") or {}, "" if passed else "preprocessing",
                             "" if passed else "preprocessing", name))
    return found


def first_reason(verdict: Verdict) -> str:
    return verdict.reasons[0] if verdict.reasons else ""


def headline(summary: dict, verdict: Verdict) -> Tuple[str, Optional[float]]:
    """The one number of a verdict a user reads first: its label metric, else max abs."""
    metric = label_metric(verdict.metrics, output_kind(summary, verdict.output)) or "max_abs"
    return metric, verdict.metrics.get(metric)


def severity(summary: dict, verdict: Verdict, by: Optional[str] = None) -> tuple:
    """A sort key, worst first: a model that did not run, then failed numbers by how far they are (NaN/Inf,
    then the metric `by` when given: the limit every failure broke first, so the worst is worst by the number
    its line shows; then the labels users act on, the SNR, max abs), then a setting or a requirement the
    numbers pass."""
    m = verdict.metrics
    rank = 0 if verdict.status == ERROR else 1 if verdict.failure_type == "tolerance" else 2
    label = label_metric(m, output_kind(summary, verdict.output))
    labels = m.get(label) if label else None
    snr = m.get("snr_db")
    shown = m.get(by) if by else None
    first = 0.0 if shown is None else (-shown if by in UPPER_LIMITS else shown)
    return (rank, -((m.get("nan_count") or 0) + (m.get("inf_count") or 0)), first,
            labels if labels is not None else math.inf, snr if snr is not None else math.inf,
            -(m.get("max_abs") or 0.0))


def broken_first(rows: List[Verdict]) -> Optional[str]:
    """The metric every failing row's first reason names ("max_abs 0.07 > 0.001"), when they all name one."""
    named = {first_reason(row).split(" ")[0] for row in rows if row.failure_type == "tolerance" and not row.passed}
    known = set(UPPER_LIMITS) | set(LOWER_LIMITS.values())
    return next(iter(named)) if len(named) == 1 and named <= known else None


def failures(summary: dict) -> List[Tuple[str, str]]:
    """Every failure of the record as (who, what broke): the conversion check first, then the boards, worst
    first (severity), then preprocessing, backends and boards that could not be used."""
    named: List[Tuple[str, str]] = []
    reference = summary.get("reference", "x86")
    boards = summary.get("boards") or {}
    reference_board = boards.get(reference) or {}
    if reference_board and reference_board.get("status") != "ok":
        named.append((reference, f"the reference {reference} did not run: "
                                 f"{first_line(reference_board.get('error'))}"))
        return named  # every comparison failed with it; the cause is the reference
    rows = verdicts(summary)
    by = broken_first(rows)
    rows = sorted(rows, key=lambda verdict: (not verdict.is_conversion, severity(summary, verdict, by)))
    for verdict in rows:
        if verdict.passed or verdict.status == UNUSABLE:
            continue
        if verdict.status == ERROR and verdict.is_conversion:
            # x86 ran (a reference that did not is named above): the source model's runtime did not.
            why = first_line((summary.get("source") or {}).get("error") or first_reason(verdict))
            text = f"the source model did not run on {source_runtime(summary)}: {why}"
        elif verdict.status == ERROR:
            text = f"{verdict.board} did not run: {short_error(verdict.board, first_reason(verdict))}"
        elif verdict.failure_type == "backend":
            # "asked opencl, ran cpu": the whole story is in the lines above the last one.
            kind = "precision" if is_precision_problem(first_reason(verdict)) else "backend"
            text = f"{verdict.host}: {first_reason(verdict).split(' (')[0].split(':')[0]} ({kind})"
        elif verdict.is_conversion:
            text = f"conversion: {verdict.board} {verdict.output} {first_reason(verdict)}"
        elif verdict.failure_type == "requirement":
            metric, value = headline(summary, verdict)
            text = (f"{verdict.board}: {first_reason(verdict)} (it ran, and its outputs match: "
                    f"{metric} {format_metric(value, metric, 'text')})")
        else:
            text = f"{verdict.board}: {verdict.output} {first_reason(verdict)}"
        if text not in [known for _, known in named]:
            named.append((verdict.board, text))
    for verdict in parity_verdicts(summary):
        if not verdict.passed:
            named.append((verdict.board, f"preprocessing parity on {verdict.board}: {first_reason(verdict)}"))
    for name, problem in sorted((summary.get("backend_failures") or {}).items()):
        kind = "precision" if is_precision_problem(problem) else "backend"
        text = f"{name}: {problem.split(' (')[0].split(':')[0]} ({kind})"
        if text not in [known for _, known in named]:  # the reference's, with no conversion check to carry it
            named.append((name, text))
    unusable = [name for name, board in boards.items() if board.get("status") == UNUSABLE]
    if unusable:
        why = "; ".join(f"{name}: {short_error(name, boards[name].get('error'))}" for name in unusable)
        named.append((UNUSABLE, f"{len(unusable)} board(s) could not be used ({why})"))
    return named


def what_failed(summary: dict) -> List[str]:
    """Every failure of the record, each named with what broke: the words of a report's last line."""
    return [text for _, text in failures(summary)]


def failing_boards_text(summary: dict, at_most: int = 2) -> str:
    """One failure per board (or check), its worst: every one up to at_most of them, else their count and the
    worst. A matrix's last line says this for each setting that diverges."""
    per_board: Dict[str, str] = {}
    for who, text in failures(summary):
        per_board.setdefault(who, text)
    texts = list(per_board.values())
    if len(texts) <= at_most:
        return "; ".join(texts) or "see above"
    return f"{len(texts)} fail, the worst {texts[0]}"


def version_note(summary: dict, board: str) -> Optional[str]:
    """What a board's MNN version means in this run, for every view's notes (None: it is the host's).

    The run's own check (versions.py) when the record has one; a record from before the checks says what it
    said then, that a mismatch can explain a difference.
    """
    check = (summary.get("mnn_versions") or {}).get(board)
    if isinstance(check, dict):
        fields = {key: check.get(key) for key in ("board", "board_version", "host_version", "peer", "evidence")}
        return VersionCheck(**fields, identical=bool(check.get("identical")),
                            agree=bool(check.get("agree"))).sentence()
    boards = summary.get("boards") or {}
    found = ((boards.get(board) or {}).get("facts") or {}).get("mnn_version")
    host = ((boards.get(summary.get("reference")) or {}).get("facts") or {}).get("mnn_version")
    if board == summary.get("reference") or not versions_differ(found, host):
        return None
    return f"MNN {found} on the board, {host} on the host: a version mismatch can explain a difference"


def short_error(board: str, error: Optional[str]) -> str:
    """A board's error in a few words for a last line: its first line, without the board's own name again."""
    text = first_line(error)
    return text[len(board) + 2:] if text.startswith(f"{board}: ") else text


def first_line(text: Optional[str]) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no reason given"


def summary_text(summary: dict, at_most: int = 3) -> Tuple[str, str]:
    """(label, sentence) of a run's last line: PASS/FAIL/BOARD ERROR/INTERRUPTED and what happened, whole."""
    code = summary.get("exit_code", 0)
    reference = summary.get("reference", "x86")
    compared = [name for name in (summary.get("boards") or {}) if name != reference]
    if summary.get("interrupted"):
        boards = summary.get("boards") or {}
        stopped = [name for name, board in boards.items() if board.get("status") == "interrupted"]
        finished = [name for name in boards if name not in stopped]
        return (f"INTERRUPTED ({summary['interrupted']})",
                f"finished: {', '.join(finished) or 'none'}; stopped: {', '.join(stopped) or 'none'} "
                "(agents killed, locks released)")
    conversion = summary.get("conversion")
    if code == 0:
        if compared:
            text = f"{len(compared)} board(s) match {reference} within tolerance"
            if conversion:
                text += f", and {reference} matches {source_runtime(summary)}"
        elif conversion:
            text = (f"only the reference {reference} and the source model ({source_runtime(summary)}) ran: "
                    f"MNN on {reference} matches it within tolerance; no board was compared")
        else:
            text = f"only the reference {reference} ran: nothing was compared"
        return "PASS", text
    named = what_failed(summary)
    shown = "; ".join(named[:at_most])
    if len(named) > at_most:
        shown += f"; and {len(named) - at_most} more (above)"
    if not compared and conversion is not None and code != 3:
        shown += (f" (only the reference {reference} ran; the source model did not)" if conversion.get("error")
                  else f" (only the reference {reference} and the source model ran)")
    return ("FAIL" if code == 1 else "BOARD ERROR" if code == 3 else f"EXIT {code}"), shown or "see above"


def precision_attributions(records: List[Tuple[str, dict]]) -> Dict[Tuple[str, str], str]:
    """A matrix's (setting, board) that fails where the same board passes a setting differing only in its
    precision -> that passing precision: the precision setting, not the platform, makes the board differ."""
    def rest(record: dict) -> str:
        settings = {k: v for k, v in (record.get("settings") or {}).items() if k != "precision"}
        return repr((sorted(settings.items()), (record.get("model") or {}).get("converter_args")))

    def board_passed(record: dict, board: str) -> Optional[bool]:
        rows = [v for v in verdicts(record) if v.board == board and not v.is_conversion]
        if not rows or any(v.status in (ERROR, UNUSABLE) for v in rows):
            return None
        return all(v.passed for v in rows)

    found: Dict[Tuple[str, str], str] = {}
    for label, record in records:
        for board in (record.get("comparisons") or {}):
            if board_passed(record, board) is not False:
                continue
            precision = (record.get("settings") or {}).get("precision")
            passing = sorted({(other.get("settings") or {}).get("precision") for _, other in records
                              if rest(other) == rest(record) and (other.get("settings") or {}).get("precision")
                              != precision and board_passed(other, board)})
            if passing:
                found[(label, board)] = passing[0]
    return found

