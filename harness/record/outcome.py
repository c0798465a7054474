"""What a run's record says happened, read the same way by every view.

The terminal report, junit.xml, report.html, the matrix table, the history and the dashboard read verdicts,
causes and the metric a user acts on from the record (RunRecord) through these functions only, so that no two
views can disagree on which number to show or on why a board failed.
"""

import math
import statistics
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Dict, List, Optional, Tuple

from ..config.scenario import LOWER_LIMITS, UPPER_LIMITS
from .numbers import KIND_LABEL_METRIC, LABEL_METRICS, format_metric
from .run import (INTERRUPTED, UNUSABLE as BOARD_UNUSABLE, Decoded, LimitFailure, RunRecord,
                  SettingFailure, versions_differ)

ATTRIBUTION_LABELS = {"conversion": "conversion", "platform": "platform", "both": "both", "io": "app I/O",
                      "version": "MNN version", "backend": "backend", "precision": "precision", "none": ""}
"""How a board's attribution (diagnose.attributions) reads in every view."""
PASS, FAIL, ERROR, UNUSABLE = "pass", "fail", "error", "unusable"
WHOLE_RUN = "*"
"""The output of a verdict about a board whose model did not run and whose outputs are not known."""
PREPROCESSING = "(preprocessing)"
"""The output name of a preprocessing-parity verdict: the board's own input tensor against the host's."""


def label_metric(metrics: dict, kind: Optional[str] = None) -> Optional[str]:
    """The label metric of an output: argmax agreement of class logits, mask IoU of a probability map.

    None for a plain tensor. A record without output kinds (older runs) is read by which metric it has, class
    logits first.
    """
    if kind in KIND_LABEL_METRIC:
        return KIND_LABEL_METRIC[kind]
    if kind == "tensor":
        return None
    return next((name for name in LABEL_METRICS if metrics.get(name) is not None), None)


def attribution_label(value: Optional[str]) -> str:
    """"platform", "conversion + app I/O", ...; "" when there is nothing to attribute."""
    if not value:
        return ""
    return " + ".join(ATTRIBUTION_LABELS.get(part, part) for part in value.split("+") if part != "none")


@dataclass
class Verdict:
    """One row of every verdict table: a board (or the conversion check) and one output."""

    board: str
    """Board name, or the conversion check's label ("x86 vs onnxruntime")."""
    output: str
    status: str
    """pass, fail, error (the model did not run there) or unusable (the board could not be used)."""
    failures: List[LimitFailure] = field(default_factory=list)
    """The limits it broke (a failing output's)."""
    problems: List[SettingFailure] = field(default_factory=list)
    """Its setting failed (asked OpenCL, ran on the CPU): the failure to read first."""
    requirements: List[str] = field(default_factory=list)
    """Requirements it broke whatever its numbers (require_same_mnn)."""
    error: Optional[str] = None
    """Why it did not run (status error or unusable)."""
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)
    cause: str = ""
    """Where the difference comes from (attribution_label), for a failing board."""
    failure_type: str = ""
    """backend, tolerance (the numbers), requirement (require_same_mnn, the numbers aside) or preprocessing;
    "" when it passed."""
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

    @property
    def reasons(self) -> List[str]:
        """Why it failed, in words: its setting, then the limits it broke, then the requirements; or its error."""
        if self.error is not None:
            return [self.error]
        return [problem.text for problem in self.problems] + [failure.sentence for failure in self.failures] \
            + list(self.requirements)

    @property
    def first_reason(self) -> str:
        reasons = self.reasons
        return reasons[0] if reasons else ""

    @property
    def first_failure(self) -> Optional[LimitFailure]:
        return self.failures[0] if self.failures else None


def verdicts(record: RunRecord, failing_first: bool = True) -> List[Verdict]:
    """Every verdict of the record: the conversion check first, then the boards (failing first, or by name)."""
    compared = [(record.conversion_label, record.conversion, True)] if record.conversion is not None else []
    by_board = sorted(record.comparisons.items(),
                      key=lambda item: (item[1].passed, item[0]) if failing_first else item[0])
    compared += [(name, comparison, False) for name, comparison in by_board]
    found: List[Verdict] = []
    for board, comparison, is_conversion in compared:
        host = record.reference if is_conversion else board
        if comparison.error is not None:
            state = record.boards.get(board)
            status = UNUSABLE if state is not None and state.status == BOARD_UNUSABLE else ERROR
            for output in list(comparison.outputs) or list(record.model.outputs) or [WHOLE_RUN]:
                found.append(Verdict(board, output, status, error=comparison.error, host=host,
                                     is_conversion=is_conversion))
            continue
        problems = list(comparison.problems)
        cause = attribution_label("backend" if problems else None) if is_conversion \
            else attribution_label(record.attribution.get(board))
        # What the application sees first (decoded outputs), as labels come first in a verdict's reasons.
        ordered = sorted(comparison.outputs.values(), key=lambda output: output.decoded is None)
        for output in ordered:
            limits = list(output.failures) if not output.passed else []
            # A setting that fell back makes the numbers another setting's: that is the failure to read first.
            failure_type = ("backend" if problems else "tolerance" if limits
                            else "requirement" if comparison.failed_requirements else "")
            failed = bool(failure_type)
            found.append(Verdict(board, output.output, FAIL if failed else PASS, limits, problems,
                                 list(comparison.failed_requirements), None, output.metrics,
                                 cause if failed else "", failure_type, host, is_conversion, list(output.notes),
                                 output.decoded))
    return found


def parity_verdicts(record: RunRecord) -> List[Verdict]:
    """preprocess_parity: per board, its own preprocessing of the raw images against the host's tensors."""
    found = []
    for name, parity in sorted(record.preprocess_parity.items()):
        reason = parity.hint or parity.error or "differs from the host's"
        found.append(Verdict(name, PREPROCESSING, PASS if parity.passed else FAIL,
                             [] if parity.passed else [LimitFailure.check("preprocessing", reason)],
                             metrics=parity.metrics, cause="" if parity.passed else "preprocessing",
                             failure_type="" if parity.passed else "preprocessing", host=name))
    return found


def labels_text(record: RunRecord, verdict: Verdict) -> str:
    """The labels column of a verdict: a decoded output's label, else the kind's label metric, else "–"."""
    if verdict.decoded is not None:
        return verdict.decoded.label
    metric = label_metric(verdict.metrics, record.output_kind(verdict.output))
    return format_metric(verdict.metrics.get(metric), metric) if metric else "–"


def headline(record: RunRecord, verdict: Verdict) -> Tuple[str, Optional[float]]:
    """The one number of a verdict a user reads first: its label metric, else max abs."""
    metric = label_metric(verdict.metrics, record.output_kind(verdict.output)) or "max_abs"
    return metric, verdict.metrics.get(metric)


def severity(record: RunRecord, verdict: Verdict, by: Optional[str] = None) -> tuple:
    """A sort key, worst first: a model that did not run, then failed numbers by how far they are (NaN/Inf,
    then the metric `by` when given: the limit every failure broke first, so the worst is worst by the number
    its line shows; then the labels users act on, the SNR, max abs), then a setting or a requirement the
    numbers pass."""
    m = verdict.metrics
    rank = 0 if verdict.status == ERROR else 1 if verdict.failure_type == "tolerance" else 2
    label = label_metric(m, record.output_kind(verdict.output))
    labels = m.get(label) if label else None
    snr = _finite(m.get("snr_db"))
    shown = m.get(by) if by else None
    first = 0.0 if shown is None else (-shown if by in UPPER_LIMITS else shown)
    return (rank, -((m.get("nan_count") or 0) + (m.get("inf_count") or 0)), first,
            labels if labels is not None else math.inf, snr if snr is not None else math.inf,
            -(m.get("max_abs") or 0.0))


def _finite(value: Optional[float]) -> Optional[float]:
    """An SNR of identical outputs (infinite) sorts as one the record does not have: last."""
    return value if value is not None and math.isfinite(value) else None


def broken_first(rows: List[Verdict]) -> Optional[str]:
    """The metric every failing row's first failure names ("max_abs 0.07 > 0.001"), when they all name one."""
    named = {row.first_failure.metric for row in rows
             if row.failure_type == "tolerance" and not row.passed and row.first_failure is not None}
    known = set(UPPER_LIMITS) | set(LOWER_LIMITS.values())
    return next(iter(named)) if len(named) == 1 and named <= known else None


def failures(record: RunRecord) -> List[Tuple[str, str]]:
    """Every failure of the record as (who, what broke): the conversion check first, then the boards, worst
    first (severity), then preprocessing, backends and boards that could not be used."""
    named: List[Tuple[str, str]] = []
    reference = record.boards.get(record.reference)
    if reference is not None and reference.status != "ok":
        named.append((record.reference, f"the reference {record.reference} did not run: "
                                        f"{first_line(reference.error)}"))
        return named  # every comparison failed with it; the cause is the reference
    rows = verdicts(record)
    by = broken_first(rows)
    rows = sorted(rows, key=lambda verdict: (not verdict.is_conversion, severity(record, verdict, by)))
    for verdict in rows:
        if verdict.passed or verdict.status == UNUSABLE:
            continue
        if verdict.status == ERROR and verdict.is_conversion:
            # x86 ran (a reference that did not is named above): the source model's runtime did not.
            why = first_line((record.source.error if record.source else None) or verdict.first_reason)
            text = f"the source model did not run on {record.source_runtime}: {why}"
        elif verdict.status == ERROR:
            text = f"{verdict.board} did not run: {short_error(verdict.board, verdict.first_reason)}"
        elif verdict.failure_type == "backend":
            # "asked opencl, ran cpu": the whole story is in the lines above the last one.
            problem = verdict.problems[0]
            text = f"{verdict.host}: {problem.short} ({problem.setting})"
        elif verdict.is_conversion:
            text = f"conversion: {verdict.board} {verdict.output} {verdict.first_reason}"
        elif verdict.failure_type == "requirement":
            metric, value = headline(record, verdict)
            text = (f"{verdict.board}: {verdict.first_reason} (it ran, and its outputs match: "
                    f"{metric} {format_metric(value, metric, 'text')})")
        else:
            text = f"{verdict.board}: {verdict.output} {verdict.first_reason}"
        if text not in [known for _, known in named]:
            named.append((verdict.board, text))
    for verdict in parity_verdicts(record):
        if not verdict.passed:
            named.append((verdict.board, f"preprocessing parity on {verdict.board}: {verdict.first_reason}"))
    for name, problem in sorted(record.backend_failures.items()):
        text = f"{name}: {problem.short} ({problem.setting})"
        if text not in [known for _, known in named]:  # the reference's, with no conversion check to carry it
            named.append((name, text))
    unusable = [name for name, board in record.boards.items() if board.status == BOARD_UNUSABLE]
    if unusable:
        why = "; ".join(f"{name}: {short_error(name, record.boards[name].error)}" for name in unusable)
        named.append((UNUSABLE, f"{len(unusable)} board(s) could not be used ({why})"))
    return named


def what_failed(record: RunRecord) -> List[str]:
    """Every failure of the record, each named with what broke: the words of a report's last line."""
    return [text for _, text in failures(record)]


def failing_boards_text(record: RunRecord, at_most: int = 2) -> str:
    """One failure per board (or check), its worst: every one up to at_most of them, else their count and the
    worst. A matrix's last line says this for each setting that diverges."""
    per_board: Dict[str, str] = {}
    for who, text in failures(record):
        per_board.setdefault(who, text)
    texts = list(per_board.values())
    if len(texts) <= at_most:
        return "; ".join(texts) or "see above"
    return f"{len(texts)} fail, the worst {texts[0]}"


def version_note(record: RunRecord, board: str) -> Optional[str]:
    """What a board's MNN version means in this run, for every view's notes (None: it is the host's)."""
    check = record.mnn_versions.get(board)
    return check.sentence() if check is not None else None


def short_error(board: str, error: Optional[str]) -> str:
    """A board's error in a few words for a last line: its first line, without the board's own name again."""
    text = first_line(error)
    return text[len(board) + 2:] if text.startswith(f"{board}: ") else text


def without_board(board: str, error: str) -> str:
    """A board's error without its own name in front: board errors name their board (they are read alone too,
    in logs and JUnit), and a line that names the board already need not say it twice."""
    return error[len(board) + 2:] if error.startswith(f"{board}: ") else error


def first_line(text: Optional[str]) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no reason given"


def summary_text(record: RunRecord, at_most: int = 3) -> Tuple[str, str]:
    """(label, sentence) of a run's last line: PASS/FAIL/BOARD ERROR/INTERRUPTED and what happened, whole."""
    code = record.exit_code
    reference = record.reference
    compared = record.compared_boards
    if record.interrupted:
        stopped = [name for name, board in record.boards.items() if board.status == INTERRUPTED]
        finished = [name for name in record.boards if name not in stopped]
        return (f"INTERRUPTED ({record.interrupted})",
                f"finished: {', '.join(finished) or 'none'}; stopped: {', '.join(stopped) or 'none'} "
                "(agents killed, locks released)")
    conversion = record.conversion
    if code == 0:
        if compared:
            text = f"{len(compared)} board(s) match {reference} within tolerance"
            if conversion:
                text += f", and {reference} matches {record.source_runtime}"
        elif conversion:
            text = (f"only the reference {reference} and the source model ({record.source_runtime}) ran: "
                    f"MNN on {reference} matches it within tolerance; no board was compared")
        else:
            text = f"only the reference {reference} ran: nothing was compared"
        return "PASS", text
    named = what_failed(record)
    shown = "; ".join(named[:at_most])
    if len(named) > at_most:
        shown += f"; and {len(named) - at_most} more (above)"
    if not compared and conversion is not None and code != 3:
        shown += (f" (only the reference {reference} ran; the source model did not)" if conversion.error
                  else f" (only the reference {reference} and the source model ran)")
    return ("FAIL" if code == 1 else "BOARD ERROR" if code == 3 else f"EXIT {code}"), shown or "see above"


def worst(record: RunRecord, rows: List[Verdict]) -> Tuple[str, Optional[float]]:
    """The number a user reads first over a board's outputs (a matrix cell, a bisect step): the worst label
    metric, else the largest max abs."""
    labelled = [headline(record, v) for v in rows if label_metric(v.metrics, record.output_kind(v.output))]
    labelled = [(metric, value) for metric, value in labelled if value is not None]
    if labelled:
        return min(labelled, key=lambda item: item[1])
    return "max_abs", max((v.metrics.get("max_abs") or 0.0 for v in rows), default=None)


def board_passed(record: RunRecord, board: str) -> Optional[bool]:
    """Whether every output of a board passed; None when it did not run or could not be used."""
    rows = [v for v in verdicts(record) if v.board == board and not v.is_conversion]
    if not rows or any(v.status in (ERROR, UNUSABLE) for v in rows):
        return None
    return all(v.passed for v in rows)


def precision_attributions(records: List[Tuple[str, RunRecord]]) -> Dict[Tuple[str, str], str]:
    """A matrix's (setting, board) that fails where the same board passes a setting differing only in its
    precision -> that passing precision: the precision setting, not the platform, makes the board differ."""
    def rest(record: RunRecord) -> str:
        settings = {k: v for k, v in record.settings.items() if k != "precision"}
        return repr((sorted(settings.items()), record.model.converter_args))

    found: Dict[Tuple[str, str], str] = {}
    for label, record in records:
        for board in record.comparisons:
            if board_passed(record, board) is not False:
                continue
            precision = record.settings.get("precision")
            passing = sorted({other.settings.get("precision") for _, other in records
                              if rest(other) == rest(record) and other.settings.get("precision") != precision
                              and board_passed(other, board)})
            if passing:
                found[(label, board)] = passing[0]
    return found


def decoded_outputs(record: RunRecord) -> List[str]:
    """The decoded outputs of the record (what the application sees), in the scenario's order."""
    return [name for name, spec in record.output_specs.items() if spec.decoded]


# -- the record read as words: what every view's header and boards table say --------------------------------

FEATURES_SHOWN = ("asimdhp", "fphp", "asimddp", "i8mm", "bf16", "sve", "sve2",
                  "avx2", "avx512f", "avx512_fp16", "avx512_bf16", "avx_vnni", "f16c")
"""The CPU features that change what MNN's kernels compute (FP16, dot products, wide vectors): what the boards
tables show."""
GROWS = 4.0
"""error_growth (last third's median error over the first third's) from which a stream's error is said to grow."""
SETTINGS_ORDER = ("precision", "threads", "api", "io")


@dataclass
class BoardRow:
    """One board in every boards table: what explains a difference (machine, MNN, CPU features) and its cost."""

    name: str
    kind: str
    status: str
    is_reference: bool
    via: List[str]
    machine: str
    mnn: str
    mnn_differs: bool
    """Its MNN is not the reference's: every table marks it."""
    python: str
    features: List[str]
    latency_ms: Optional[float]
    """The median latency, None when it did not run."""
    peak_rss_mb: Optional[float]
    wall_s: float


def board_rows(record: RunRecord, reference_first: bool = True) -> List[BoardRow]:
    """The boards of the record as every boards table shows them: the reference first (or in the record's
    order), each with the facts that explain a difference."""
    reference_mnn = record.boards[record.reference].mnn_version if record.reference in record.boards else None
    boards = record.reference_first() if reference_first else list(record.boards.items())
    rows = []
    for name, board in boards:
        facts = board.facts
        latency = facts.get("latency_ms") or []
        rows.append(BoardRow(name, board.kind, board.status, name == record.reference, list(board.via),
                             facts.get("machine", "?"), facts.get("mnn_version") or "?",
                             versions_differ(facts.get("mnn_version"), reference_mnn), facts.get("python", "?"),
                             [f for f in FEATURES_SHOWN if f in (facts.get("cpu_features") or [])],
                             statistics.median(latency) if latency else None, facts.get("peak_rss_mb"),
                             board.wall_s))
    return rows


def settings_text(settings: dict) -> str:
    """precision=normal threads=1 api=session io=copy: in this order, live or stored (JSON sorts keys)."""
    keys = [k for k in SETTINGS_ORDER if k in settings] + sorted(k for k in settings if k not in SETTINGS_ORDER)
    return " ".join(f"{k}={settings[k]}" for k in keys)


def targets_text(record: RunRecord) -> str:
    """"x86, farm-a53: from the command line (--targets farm-a53), not the scenario's targets"."""
    boards = ", ".join(name for name, _ in record.reference_first())
    where = record.targets_from or ""
    source = "the command line" if where.startswith("--") else "the nightly file"
    return f"{boards}: from {source} ({where}), not the scenario's targets"


def model_line(record: RunRecord) -> str:
    """"built by segformer.py -> .mnn 1a2b...", "model.onnx -> .mnn ...", or a deployed .mnn as it is."""
    model = record.model
    sha = model.mnn_sha256[:12]
    if not model.converted:
        source = f", source {PurePath(model.source).name}" if model.source else ""
        return f"{PurePath(model.mnn_path or '?').name} {sha} as deployed (no conversion{source})"
    source = f"built by {model.built_by}" if model.built_by else PurePath(model.source or "?").name
    return f"{source} -> .mnn {sha}  converter: {' '.join(model.converter_args) or '(defaults)'}"


def input_rows(record: RunRecord) -> List[Tuple[str, str, str]]:
    """(label, text, detail) per input: name, provider, samples x shape, dtype, sha256, and what it is."""
    inputs = record.inputs
    if not inputs.tensors:  # a record from before inputs by name
        return [("inputs", f"{len(inputs.samples)} x {list(inputs.shape)}  sha256 {inputs.sha256[:12]}", "")]
    rows = []
    for tensor in inputs.tensors:
        count = "shared" if tensor.get("shared") else f"{tensor.get('samples')} x"
        shape = list(tensor.get("shape") or [])
        rows.append((f"input {tensor.get('name')}", f"{tensor.get('provider')}  {count} {shape} {tensor.get('dtype')}"
                     f"  sha256 {str(tensor.get('sha256', ''))[:12]}", tensor.get("detail") or ""))
    return rows
