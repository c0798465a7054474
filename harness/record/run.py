"""A run's record (summary.json) as one typed value: what every view, the likely causes, JUnit, the history and
the HTML page read, saved and loaded back as the same type.

    RunRecord                   the run: scenario, model, inputs, settings, what was judged and how it ended
      boards: {name: BoardRecord}       each board's status, facts (result.json), timings, notes
      comparisons: {name: Comparison}   each board against the reference; conversion: the reference against
                                        the source model
        outputs: {name: OutputComparison}   metrics, the limits broken (LimitFailure), notes, NaN/Inf, decoded
      findings, mnn_versions, preprocess_parity, attribution ...

One serializer (serde.py): RunRecord.to_dict() is summary.json's data, RunRecord.from_dict() reads it back,
checked field by field; a record of an older schema is upgraded on the way in (UPGRADES), one of a newer
schema is refused with the reason. Infinity and NaN are written as "inf", "-inf" and "nan", as in layers.json.

A record made by a live run also carries what summary.json does not: the run's tensors (RunTensors, for the
pictures of report.html) and its folder.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..core.results import FAILED, INTERRUPTED, OK, UNUSABLE  # noqa: F401 (a board's status, for the views)
from .numbers import limit_sentence
from .serde import KEY, OMIT_EMPTY, TRANSIENT, Number, fields_data, load, read_fields, to_data, wrong

SCHEMA = 3
"""3: typed limit failures (failures), NaN/Inf as "inf"/"nan" (null is a number that is not there), typed
setting failures. 2: inputs by name, streams, backends, per-step series. 1: the first."""

EXIT_PASS, EXIT_COMPARISON_FAILED, EXIT_CONFIG, EXIT_BOARD = 0, 1, 2, 3
"""A run's exit code: every board matched; a comparison failed (or a model did not run); nothing ran (a
configuration error); a board could not be used. An interrupted run exits 130 (SIGINT) or 143 (SIGTERM)."""


# -- what broke ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LimitFailure:
    """One limit an output broke (metric, value, limit, direction), or a check it failed (metric and text)."""

    metric: str
    """The metric ("max_abs", "argmax_agreement", "cer", ...) or the check ("nonfinite", "shape", "output",
    "class_axis", "mismatches", "required_atol", "mask_empty_margin", "decode")."""
    value: Optional[Number] = None
    limit: Optional[Number] = None
    direction: str = ""
    """">": the value is above an upper limit; "<": below a lower limit; "": a check, said in text."""
    text: str = field(default="", metadata=OMIT_EMPTY)
    """The sentence of a check, or of a limit whose sentence says more than its numbers (a decoded output's)."""

    @property
    def sentence(self) -> str:
        """What the failure reads as in every view: "max_abs 0.0782 > 0.001", or the check's own text."""
        if self.text or not self.direction or self.value is None or self.limit is None:
            return self.text
        return limit_sentence(self.metric, self.value, self.direction, self.limit)

    @property
    def is_limit(self) -> bool:
        """A plain limit of a metric, which a matrix cell can abbreviate."""
        return bool(self.direction) and not self.text and self.value is not None and self.limit is not None

    @staticmethod
    def check(metric: str, text: str) -> "LimitFailure":
        return LimitFailure(metric, text=text)


@dataclass(frozen=True)
class SettingFailure:
    """A board that ran another setting than the one asked (a backend it lacks, BF16 computed in FP32): its
    numbers are another setting's, whatever they are."""

    setting: str
    """backend or precision."""
    asked: str
    ran: str
    text: str
    """The whole sentence: what ran, MNN's own word, and the fix."""

    @property
    def short(self) -> str:
        """"asked opencl, ran cpu": what a last line or a matrix cell says."""
        return f"asked {self.asked}, ran {self.ran}"


# -- an output compared --------------------------------------------------------------------------------------


@dataclass
class NonFinite:
    """The NaN and Inf values of one output of one side (samples stacked on axis 0), against the reference."""

    nan: int
    inf: int
    size: int
    """Elements of the output, every sample."""
    samples: List[dict] = field(default_factory=list)
    """The samples that hold any: {"sample": index, "name", "nan", "inf"}, in order."""
    first: List[dict] = field(default_factory=list)
    """The first positions: {"sample", "index": within one sample's output, "value": "nan" | "inf" | "-inf",
    "reference": the reference's value there (None where the reference has NaN/Inf too)}."""
    reference_max: Optional[float] = None
    """The largest finite |reference| at those positions (None when the reference has none finite there)."""
    reference_nonfinite: int = 0
    """Of those positions, how many hold NaN/Inf in the reference too."""
    reference_only: int = 0
    """Positions where the reference holds NaN/Inf and this side a number."""

    SHOWN = 3
    """Positions a sentence names."""

    @property
    def count(self) -> int:
        return self.nan + self.inf

    def counts_text(self) -> str:
        """"9 Inf", "3 NaN and 9 Inf"."""
        return " and ".join(f"{n} {what}" for n, what in ((self.nan, "NaN"), (self.inf, "Inf")) if n) or "no NaN/Inf"

    def where_text(self) -> str:
        """"all in coffee", "astronaut: 4, coffee: 5"; then the first positions."""
        if len(self.samples) == 1:
            where = f"all in {self.samples[0]['name']}"
        else:
            where = ", ".join(f"{s['name']}: {s['nan'] + s['inf']}" for s in self.samples[:4])
            if len(self.samples) > 4:
                where += f", and {len(self.samples) - 4} more samples"
        shown = ", ".join(str(item["index"]) for item in self.first[:self.SHOWN])
        more = ", ..." if self.count > self.SHOWN else ""
        return f"{where}; at {shown}{more}" if shown else where

    def reason(self, reference: str) -> str:
        """The check this output failed, in words: counts, where, and what the reference has there."""
        if not self.count:
            return f"{reference} holds {self.reference_only} NaN/Inf values where this side has numbers"
        text = f"{self.counts_text()} values of {self.size} ({self.where_text()})"
        if self.reference_nonfinite == self.count:
            text += f"; {reference} has NaN/Inf at all of them too"
        elif self.reference_max is not None:
            text += f"; {reference} has |x| up to {self.reference_max:.2g} there"
        return text


@dataclass
class Series:
    """A stream's output step by step: the max abs error per step; for an output of one value per step both
    sides' values; for a decision output the steps whose decision flips."""

    max_abs: List[float]
    target: Optional[List[float]] = field(default=None, metadata=OMIT_EMPTY)
    reference: Optional[List[float]] = field(default=None, metadata=OMIT_EMPTY)
    flipped: Optional[List[int]] = field(default=None, metadata=OMIT_EMPTY)


@dataclass
class Decoded:
    """A decoded output's verdict (analysis/decoded/): what the application sees on both sides.

    Its kind's own details (boxes per sample, texts, top classes; the threshold, box units, ...) are kept as
    the kind writes them: `samples` and `details`, flattened into one object in the record.
    """

    kind: str
    """detections, ctc_text, class_scores or keypoints."""
    label: str
    """What the labels column shows: "faces 2/2", "text 38/40 exact, CER 0.4%", "class top-1 8/8"."""
    passed: bool = False
    samples: List[Any] = field(default_factory=list)
    """Per sample what each side decoded and what changed."""
    error: Optional[str] = field(default=None, metadata=OMIT_EMPTY)
    """Why it could not be decoded (a user decoder that raised)."""
    failed_side: Optional[str] = field(default=None, metadata=OMIT_EMPTY)
    traceback: Optional[str] = field(default=None, metadata=OMIT_EMPTY)
    """The run folder's file that keeps a user decoder's traceback."""
    details: Dict[str, Any] = field(default_factory=dict)
    """The kind's own parameters as it recorded them (threshold, match_iou, box_units, top_k, sources, ...)."""

    COMMON = ("kind", "label", "passed", "samples", "error", "failed_side", "traceback")

    def to_data(self) -> dict:
        return {**fields_data(self, skip=("details",)), **to_data(self.details)}

    @staticmethod
    def from_data(data: Any, where: str) -> "Decoded":
        if not isinstance(data, dict):
            raise wrong(where, data, "an object")
        common = {key: data[key] for key in Decoded.COMMON if key in data}
        details = {key: value for key, value in data.items() if key not in Decoded.COMMON}
        return read_fields(Decoded, {**common, "details": details}, where)


@dataclass
class OutputComparison:
    """One output of one side against the reference's."""

    output: str = field(default="", metadata=KEY)
    """Its name (the key it is filed under in its comparison's outputs)."""
    passed: bool = False
    metrics: Dict[str, Optional[Number]] = field(default_factory=dict)
    failures: List[LimitFailure] = field(default_factory=list)
    """Why it failed (empty when it passed): NaN/Inf first, then what users act on, then the statistics."""
    notes: List[str] = field(default_factory=list, metadata=OMIT_EMPTY)
    """What the verdict rests on when it is not the usual (a mask empty on both sides, a decoded output that
    decides)."""
    per_class_iou: Dict[str, float] = field(default_factory=dict, metadata=OMIT_EMPTY)
    """class_logits: IoU of each class present in either label map (by class index)."""
    series: Optional[Series] = field(default=None, metadata=OMIT_EMPTY)
    """A stream's output step by step (None for independent samples)."""
    nonfinite: Optional[NonFinite] = field(default=None, metadata=OMIT_EMPTY)
    """Where either side holds NaN/Inf (None: neither does)."""
    decoded: Optional[Decoded] = field(default=None, metadata=OMIT_EMPTY)
    """A decoded output's verdict (None for a tensor)."""
    traceback: Optional[str] = field(default=None, compare=False, metadata=TRANSIENT)
    """A user decoder's traceback: written into the run folder (the file decoded.traceback names), never into
    summary.json."""

    DERIVED = ("reasons",)
    """Written for readers of summary.json (jq, a CI script): each failure as the sentence the views show."""

    @property
    def reasons(self) -> List[str]:
        return [failure.sentence for failure in self.failures]


@dataclass
class Comparison:
    """One side against the reference, output by output: a board against x86, or x86 against the source."""

    reference: str
    outputs: Dict[str, OutputComparison] = field(default_factory=dict)
    error: Optional[str] = None
    """Set when there was nothing to compare (this side or the reference did not run)."""
    failed_requirements: List[str] = field(default_factory=list)
    """Requirements it broke whatever its numbers (require_same_mnn): it ran, and still fails."""
    problems: List[SettingFailure] = field(default_factory=list)
    """Its setting failed (asked OpenCL, ran on the CPU): its numbers are another setting's."""

    DERIVED = ("passed",)

    @property
    def outputs_passed(self) -> bool:
        """Every output within tolerance (the numbers alone, requirements and settings aside)."""
        return self.error is None and all(output.passed for output in self.outputs.values())

    @property
    def passed(self) -> bool:
        return self.outputs_passed and not self.failed_requirements and not self.problems


# -- the boards ------------------------------------------------------------------------------------------------


@dataclass
class BoardRecord:
    """One board of the run (the reference too): how it ran, and the agent's facts about it."""

    kind: str
    """local, ssh, emulated or labgrid."""
    status: str
    """ok, failed (the model did not run there), unusable (the board could not be used) or interrupted."""
    error: Optional[str] = None
    expected_mnn_version: Optional[str] = None
    """The MNN the run asked of it (the run's, else the inventory's); None when nothing was asked."""
    mnn: Optional[str] = None
    """Where its MNN came from: system (its own) or provision (the harness brought it)."""
    facts: Dict[str, Any] = field(default_factory=dict)
    """The agent's result.json, as the board wrote it (checked on arrival), without its traceback; output shapes
    are one sample's, with how many samples ran."""
    timings: Dict[str, float] = field(default_factory=dict)
    """Seconds per stage on the host's clock: connect, lock, upload, run, download, read."""
    notes: List[str] = field(default_factory=list)
    locked_span: Optional[Tuple[float, float]] = None
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    reused_from: Optional[str] = field(default=None, metadata=OMIT_EMPTY)
    """The job folder whose result this is, when the same job already ran on this board in this invocation."""
    via: List[str] = field(default_factory=list, metadata=OMIT_EMPTY)
    """Its jump hosts (nearest first), when it was not reached straight."""

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def mnn_version(self) -> Optional[str]:
        return self.facts.get("mnn_version")

    @property
    def wall_s(self) -> float:
        return float(sum(self.timings.values()))


@dataclass
class ParityRecord:
    """A board's own preprocessing of the raw images against the host's tensors (preprocess_parity)."""

    passed: bool
    backend: Optional[str] = None
    metrics: Dict[str, Optional[Number]] = field(default_factory=dict)
    hint: str = ""
    """What the difference looks like: swapped channels, or resize/rounding."""
    error: Optional[str] = None


@dataclass
class Finding:
    """A likely cause the run shows (analysis/diagnose.py), with the words users search for."""

    cause: str
    """Its key ("precision", "mnn-version", ...)."""
    title: str
    """What it is called ("FP16 / precision setting")."""
    board: Optional[str]
    """None when it concerns the model itself (the conversion)."""
    message: str


def versions_differ(board_version: Optional[str], host_version: Optional[str]) -> bool:
    """Both MNN versions are known and are not the same: the one rule of a version mismatch, for the checks,
    the likely causes, the requirement and every view that marks it."""
    return bool(board_version and host_version and board_version != host_version)


@dataclass
class VersionCheck:
    """A board whose MNN version is not the host's, and what the run says about it (analysis/versions.py)."""

    board: str
    board_version: str
    host_version: str
    peer: Optional[str] = None
    """A board with the host's version on the same CPU whose outputs were compared with this board's (None: no
    such board ran, or this board produced no outputs)."""
    identical: bool = False
    """The peer's outputs are bit for bit this board's."""
    agree: bool = False
    """The peer's outputs are within the scenario's tolerance of this board's (identical included)."""
    evidence: str = ""
    """One sentence: what the peer shows, or that no board could tell ("" in a record from before the checks)."""

    DERIVED = ("blamed",)

    @property
    def blamed(self) -> bool:
        """The version can explain a difference: no peer agrees with this board."""
        return not self.agree

    def sentence(self) -> str:
        """"MNN 3.4.1 on the board, 3.6.1 on the host: ..." for the views' notes."""
        versions = f"MNN {self.board_version} on the board, {self.host_version} on the host"
        if self.agree:
            return f"{versions}: not what makes a difference here: {self.evidence}"
        if self.peer:
            return f"{versions}, and it changes the outputs: {self.evidence}"
        if not self.evidence:
            return f"{versions}: a version mismatch can explain a difference"
        return f"{versions}: a version mismatch can explain a difference ({self.evidence})"


# -- what was run, and how it was judged ------------------------------------------------------------------------


@dataclass
class ModelRecord:
    source: Optional[str]
    """The source model (ONNX or TFLite) the .mnn was converted from, if any."""
    mnn_path: str
    mnn_sha256: str
    converted: bool = True
    """False for a deployed .mnn run as it is."""
    source_format: Optional[str] = None
    built_by: Optional[str] = None
    """The build script's name when a script made the model."""
    converter_args: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    converter_version: Optional[str] = None
    compared: List[str] = field(default_factory=list)
    """The outputs compared (all of them unless the scenario names some)."""


@dataclass
class InputsRecord:
    sha256: str
    samples: List[str] = field(default_factory=list)
    """The samples by name (a stream's steps)."""
    shape: List[Optional[int]] = field(default_factory=list)
    """One sample's shape of the image input (else the first)."""
    count: int = 1
    image_input: Optional[str] = None
    tensors: List[Dict[str, Any]] = field(default_factory=list)
    """Each input as it was sent: name, provider, detail, shape, dtype, samples, shared, sha256."""


@dataclass
class PreprocessRecord:
    """How the host made image inputs (the scenario's `preprocess:`): what the pictures of report.html undo."""

    color: str = "rgb"
    height: int = 512
    width: int = 512
    interpolation: str = "linear"
    scale: Optional[float] = None
    mean: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    layout: str = "NCHW"


@dataclass
class StreamRecord:
    steps: int
    carry: Dict[str, str] = field(default_factory=dict)


@dataclass
class OutputSpec:
    """How an output was judged: its kind and limits (a decoded output's kind, sources and parameters)."""

    kind: str = "tensor"
    class_axis: int = 1
    benign_margin: float = 0.1
    threshold: float = 0.5
    tolerance: Dict[str, Optional[Number]] = field(default_factory=dict)
    given_tolerance: Optional[Dict[str, Optional[Number]]] = field(default=None, metadata=OMIT_EMPTY)
    decoded_by: List[str] = field(default_factory=list, metadata=OMIT_EMPTY)
    """The decoded outputs this tensor feeds."""
    decoded: bool = field(default=False, metadata=OMIT_EMPTY)
    """A decoded output (what the application sees), not a tensor of the model."""
    sources: List[str] = field(default_factory=list, metadata=OMIT_EMPTY)
    decode: Optional[str] = field(default=None, metadata=OMIT_EMPTY)
    """The user's decoder ("decode.py:boxes"), when not a built-in kind."""
    params: Dict[str, Any] = field(default_factory=dict, metadata=OMIT_EMPTY)

    def stacked_axis(self) -> int:
        """The class axis in arrays whose samples are stacked on axis 0 (class_axis counts in one sample)."""
        return stacked_axis(self.class_axis)


def stacked_axis(axis: int) -> int:
    """An axis of one sample's output, in the arrays of every sample (stacked on axis 0): the one shift, for the
    comparison, the pictures and the layer search alike."""
    return axis + 1 if axis >= 0 else axis


@dataclass
class SourceRecord:
    status: str
    error: Optional[str] = None
    runtime: Optional[str] = None
    """"onnxruntime 1.32.0", "litert 2.3.0"."""
    notes: List[str] = field(default_factory=list)
    path: Optional[str] = None
    reused_from: Optional[str] = field(default=None, metadata=OMIT_EMPTY)
    """The job folder whose result this is, when another run of this invocation ran the same source job (a
    matrix's settings share it: no MNN setting reaches the source model)."""


@dataclass
class RunTensors:
    """A live run's arrays, for the pictures of report.html (never in summary.json): the image input's samples
    and every side's outputs (samples stacked on axis 0)."""

    image: Optional[np.ndarray] = None
    outputs: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    """Side (every board in the order they ran, the reference among them; the source model's runtime) -> output
    -> array (none for a board whose model did not run)."""


@dataclass
class RunRecord:
    """A run, as summary.json keeps it and every view reads it."""

    run_id: str
    scenario: Dict[str, str]
    """{"name", "path"}."""
    model: ModelRecord
    inputs: InputsRecord
    reference: str
    schema: int = SCHEMA
    started_at: str = ""
    wall_s: float = 0.0
    exit_code: int = 0
    interrupted: Optional[str] = None
    """The signal that stopped the run ("SIGINT", "SIGTERM"), or None; unfinished boards are "interrupted"."""
    stream: Optional[StreamRecord] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    """What the agent ran with: precision, threads, api, io, backend."""
    mnn_version: Optional[str] = None
    """The MNN release the run asked of every board (a matrix or bisect setting), None: each board's own."""
    allow_fallback: bool = False
    backend_failures: Dict[str, SettingFailure] = field(default_factory=dict)
    """Side -> why its setting failed (asked OpenCL, ran on the CPU), the reference's included."""
    preprocess: Optional[PreprocessRecord] = None
    """The scenario's preprocessing, None without images."""
    output_specs: Dict[str, OutputSpec] = field(default_factory=dict)
    targets_from: Optional[str] = None
    """Where the boards came from when not the scenario's own list ("--targets farm-a53,tag:fp16")."""
    host: Dict[str, Any] = field(default_factory=dict)
    boards: Dict[str, BoardRecord] = field(default_factory=dict)
    source: Optional[SourceRecord] = None
    conversion: Optional[Comparison] = None
    """The reference against the source model: what the conversion changed (when the source model ran)."""
    attribution: Dict[str, str] = field(default_factory=dict)
    """Board -> where its difference comes from: conversion, platform, both, io, version, backend, precision."""
    raw_outputs: List[str] = field(default_factory=list)
    """The raw output files kept in the run folder (relative paths)."""
    preprocess_parity: Dict[str, ParityRecord] = field(default_factory=dict)
    findings: List[Finding] = field(default_factory=list)
    mnn_versions: Dict[str, VersionCheck] = field(default_factory=dict)
    comparisons: Dict[str, Comparison] = field(default_factory=dict)
    folder: Optional[Path] = field(default=None, compare=False, metadata=TRANSIENT)
    """Where the run's folder is (not in summary.json)."""
    tensors: Optional[RunTensors] = field(default=None, compare=False, metadata=TRANSIENT)
    """A live run's arrays (not in summary.json): what report.html draws."""

    # -- reading --------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.scenario["name"]

    def output_spec(self, output: str) -> OutputSpec:
        return self.output_specs.get(output) or OutputSpec()

    def output_kind(self, output: str) -> str:
        return self.output_spec(output).kind

    @property
    def compared_boards(self) -> List[str]:
        return [name for name in self.boards if name != self.reference]

    @property
    def failed(self) -> List[str]:
        """Boards whose outputs did not match, or whose model did not run (not those that could not be used)."""
        return [name for name, comparison in self.comparisons.items()
                if not comparison.passed and self.boards[name].status not in (UNUSABLE, INTERRUPTED)]

    @property
    def source_runtime(self) -> str:
        """"onnxruntime", "litert": the source model's runtime by name, "the source model" when unknown."""
        runtime = (self.source.runtime if self.source else None) or (self.conversion.reference
                                                                     if self.conversion else None) or ""
        return runtime.split(" ")[0] or "the source model"

    @property
    def conversion_label(self) -> str:
        """"x86 vs onnxruntime": the conversion check's name in every view."""
        against = (self.conversion.reference if self.conversion else None) or self.source_runtime
        return f"{self.reference} vs {against}"

    def sides(self) -> List[Tuple[str, Comparison, bool]]:
        """(label, comparison, is it the conversion check): the conversion check first, then the boards by name."""
        found = [(self.conversion_label, self.conversion, True)] if self.conversion is not None else []
        return found + [(name, comparison, False) for name, comparison in sorted(self.comparisons.items())]

    def reference_first(self) -> List[Tuple[str, BoardRecord]]:
        """The boards, the reference first, then in the record's order."""
        return sorted(self.boards.items(), key=lambda item: item[0] != self.reference)

    # -- saving and loading ----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """summary.json's data."""
        return fields_data(self)

    @staticmethod
    def from_dict(data: Any, where: str = "summary.json") -> "RunRecord":
        """A stored record as the type it was written as: upgraded from an older schema (or refused with the
        reason), every field checked."""
        return load(RunRecord, data, where, SCHEMA, UPGRADES)


# -- older records ----------------------------------------------------------------------------------------------


def _upgrade_1(data: dict) -> dict:
    """Schema 1 -> 2: inputs by name, streams, backends (absent in 1: none of them existed)."""
    data.setdefault("stream", None)
    data.setdefault("backend_failures", {})
    data.setdefault("allow_fallback", False)
    data.setdefault("mnn_version", None)
    inputs = dict(data.get("inputs") or {})
    inputs.setdefault("tensors", [])
    data["inputs"] = inputs
    return data


INFINITE_WHEN_NULL = ("snr_db", "psnr_db", "mask_empty_snr_db", "error_growth")
"""Metrics a record of schema 2 or older wrote as null when they were infinite (JSON has no infinity)."""
_LIMIT_REASON = re.compile(r"^(\w+) (\S+(?: dB)?) ([<>]) (\S+(?: dB)?)$")


def _upgrade_2(data: dict) -> dict:
    """Schema 2 -> 3: reasons become typed failures, null infinities "inf", backend failures typed, and the
    fields later schemas added get their empty values."""
    data.setdefault("interrupted", None)
    data.setdefault("targets_from", None)
    if isinstance(data.get("source"), dict):
        data["source"] = {"notes": [], **data["source"]}
    specs = data.get("output_specs") or {}
    for key in ("conversion",):
        if isinstance(data.get(key), dict):
            data[key] = _upgrade_comparison(data[key], specs)
    data["comparisons"] = {name: _upgrade_comparison(item, specs) if isinstance(item, dict) else item
                           for name, item in (data.get("comparisons") or {}).items()}
    data["backend_failures"] = {name: _setting_failure(text) for name, text in
                                (data.get("backend_failures") or {}).items()}
    data["preprocess_parity"] = {name: {**item, "metrics": _metrics_inf(item.get("metrics") or {})}
                                 if isinstance(item, dict) else item
                                 for name, item in (data.get("preprocess_parity") or {}).items()}
    boards = data.get("boards") or {}
    for name, board in boards.items():
        if isinstance(board, dict):
            board.setdefault("expected_mnn_version", None)
            board.setdefault("mnn", None)
    if "mnn_versions" not in data:
        data["mnn_versions"] = _old_version_checks(data)
    for name, spec in specs.items():
        if isinstance(spec, dict) and isinstance(spec.get("decoded_by"), list) and not spec["decoded_by"]:
            del spec["decoded_by"]
    return data


def _metrics_inf(metrics: dict) -> dict:
    """A null infinity as "inf" (a null _db: +inf where the outputs are identical, -inf where the signal is 0)."""
    upgraded = dict(metrics)
    for name in INFINITE_WHEN_NULL:
        if name in upgraded and upgraded[name] is None:
            negative = name.endswith("_db") and (metrics.get("max_abs") or 0.0) > 0.0
            upgraded[name] = "-inf" if negative else "inf"
    return upgraded


def _upgrade_comparison(comparison: dict, specs: dict) -> dict:
    comparison = dict(comparison)
    comparison["problems"] = [_setting_failure(text) for text in comparison.get("problems") or []]
    comparison.setdefault("failed_requirements", [])
    outputs = {}
    for name, output in (comparison.get("outputs") or {}).items():
        output = dict(output)
        metrics = _metrics_inf(output.get("metrics") or {})
        output["metrics"] = metrics
        tolerance = ((specs.get(name) or {}).get("tolerance") or {})
        output["failures"] = [_failure_of(reason, metrics, tolerance) for reason in output.pop("reasons", []) or []]
        series = output.get("series")
        if isinstance(series, dict):
            output["series"] = {key: [("inf" if key == "max_abs" else "nan") if value is None else value
                                      for value in values] if key != "flipped" else values
                                for key, values in series.items()} if series else None
        outputs[name] = output
    comparison["outputs"] = outputs
    return comparison


def _failure_of(reason: str, metrics: dict, tolerance: dict) -> dict:
    """An old record's reason as a typed failure: a plain limit when its numbers (the metric's exact value and
    the scenario's limit) give back the very same sentence, else a check kept in its own words."""
    found = _LIMIT_REASON.match(reason)
    if found:
        metric, _, direction, _ = found.groups()
        value = metrics.get(metric)
        limit = tolerance.get(("max_" if direction == ">" and metric == "hard_flips" else
                               "" if direction == ">" else "min_") + metric)
        if isinstance(value, (int, float)) and isinstance(limit, (int, float)) \
                and limit_sentence(metric, float(value), direction, float(limit)) == reason:
            return {"metric": metric, "value": value, "limit": limit, "direction": direction}
    return {"metric": reason.split(" ")[0] if reason else "", "text": reason}


def _setting_failure(text: Any) -> Any:
    """An old record's backend problem ("asked opencl, ran cpu (MNN said ...): ...") as a typed one."""
    if not isinstance(text, str):
        return text
    found = re.match(r"^asked (\S+), ran (.+?) \(", text)
    asked, ran = (found.group(1), found.group(2)) if found else ("?", "?")
    return {"setting": "precision" if asked == "low_bf16" else "backend", "asked": asked, "ran": ran, "text": text}


def _old_version_checks(data: dict) -> dict:
    """A record from before the version checks: every board whose MNN is not the reference's is a check with no
    evidence, which reads as those records always did."""
    boards = data.get("boards") or {}
    reference = data.get("reference")
    host = ((boards.get(reference) or {}).get("facts") or {}).get("mnn_version")
    checks = {}
    for name, board in boards.items():
        version = ((board or {}).get("facts") or {}).get("mnn_version")
        if name != reference and version and host and version != host:
            checks[name] = {"board": name, "board_version": str(version), "host_version": str(host)}
    return checks


UPGRADES = {1: _upgrade_1, 2: _upgrade_2}
"""Schema N -> N + 1, for records written by older harnesses (reports/ of earlier runs, the history's)."""

