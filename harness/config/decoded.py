"""Decoded outputs: what the application makes of the model's tensors (boxes, text, classes, points), as a scenario
says it under `decoded:`, checked where it enters.

    decoded:
      faces:                                  # a name of its own: a row in every view ("faces 2/2")
        kind: detections                      # detections | ctc_text | class_scores | keypoints
        boxes: regressors                     # the model outputs it reads (a name, or {output, axis, values})
        scores: classificators
        box_format: anchors                   # xyxy | cxcywh | anchors (offsets from anchors, as MediaPipe's SSD)
        anchors: {ssd: {input_size: [128, 128], strides: [8, 16, 16, 16], per_layer: 2}}
      cars:
        decode: post.py:decode                # the user's own post-processing instead of the built-in one
        from: [output0]
        kind: detections                      # which verdict judges what it returns

Each kind is a section of the scenario's schema (DetectionsEntry, ...: the keys every kind has, and its own);
what a run uses is a DecodedSpec whose params are the kind's settings (DetectionSpec, ...). The verdicts
themselves are analysis/decoded/; this module is only what was asked, typed.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from pydantic import (AfterValidator, BeforeValidator, Discriminator, Field, Tag, ValidationInfo, WithJsonSchema,
                      model_validator)

from ..core.errors import ConfigError
from ..core.fields import (Choice, Integer, Number, Problem, Section, Text, check_finite, check_int, check_range,
                           check_text, file_base, resolve_path, section, shown, type_name)
from ..core.build.inputs.loader import check_args, check_call
from .validation import inline_json_schema

DECODED_KINDS = ("detections", "ctc_text", "class_scores", "keypoints")
BOX_FORMATS = ("xyxy", "cxcywh", "anchors")
BOX_UNITS = ("pixels", "normalized")
ACTIVATIONS = ("none", "sigmoid", "softmax")
MAX_DETECTIONS = 10_000
"""Boxes kept per sample after the threshold and NMS: beyond, a threshold that keeps every anchor."""
MAX_CLASSES = 1_000_000
MAX_TOP_K = 1000
MAX_CHARSET = 100_000
"""Characters of a charset (PP-OCR's largest dictionary has about 18,000)."""
MAX_ANCHOR_LAYERS = 16
MAX_ANCHORS = 10_000_000
SHARE_WHY = "a share: 0.999 means 99.9%"


def _whole(value, minimum: int, maximum: int) -> int:
    check_int(value)
    if not minimum <= value <= maximum:
        raise Problem(f"must be from {minimum} to {maximum}, got {shown(value)}",
                      f"give a whole number from {minimum} to {maximum}")
    return value


def _items(value, check) -> list:
    return [_at(index, check, item) for index, item in enumerate(value)]


def _at(index: int, check, value):
    try:
        return check(value)
    except Problem as problem:
        raise Problem(problem.problem, problem.fix, at=f"[{index}]{problem.at}") from None


def check_values(value) -> Optional[Tuple[int, int]]:
    if value is None or isinstance(value, tuple):
        return value
    if not isinstance(value, list) or len(value) != 2:
        raise Problem(f"must be [start, stop], got {shown(value)}", "e.g. `values: [0, 4]`")
    start = _at(0, lambda item: _whole(item, 0, MAX_CLASSES), value[0])
    stop = _at(1, lambda item: _whole(item, 1, MAX_CLASSES), value[1])
    if stop <= start:
        raise Problem(f"[{start}, {stop}] is empty", "give stop above start: [start, stop)")
    return start, stop


@section
class TensorRef(Section):
    """A model output, or a slice of it, read as [positions, values] per sample."""

    SHORT_FORM = {"type": "string", "description": "the model output's name"}
    output: Text
    """The model output's name."""
    axis: Integer(-32, 31) = -1
    """The axis of the values (box coordinates, class scores, a point's coordinates) in the model's output."""
    values: Annotated[Optional[Tuple[int, int]], BeforeValidator(check_values),
                      WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 0},
                                      "minItems": 2, "maxItems": 2})] = None
    """A slice [start, stop) of that axis (YOLO's [4 box values + 80 class scores] in one tensor), or all."""

    @classmethod
    def from_short_form(cls, value):
        return {"output": value} if isinstance(value, str) else value


def check_input_size(value) -> Tuple[int, int]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, list) or len(value) != 2:
        raise Problem(f"must be [height, width], got {shown(value)}", "e.g. `input_size: [128, 128]`")
    return tuple(_items(value, lambda item: _whole(item, 1, 8192)))


def check_strides(value) -> Tuple[int, ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, list) or not value or len(value) > MAX_ANCHOR_LAYERS:
        raise Problem(f"must list 1 to {MAX_ANCHOR_LAYERS} strides, got {shown(value)}",
                      "one stride per layer, e.g. [8, 16, 16, 16]")
    return tuple(_items(value, lambda item: _whole(item, 1, 8192)))


@section
class SsdAnchors(Section):
    """MediaPipe's SSD anchors (SsdAnchorsCalculator, fixed anchor size) for BlazeFace-like detectors."""

    input_size: Annotated[Tuple[int, int], BeforeValidator(check_input_size),
                          WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 8192},
                                          "minItems": 2, "maxItems": 2})]
    """The model's input height and width."""
    strides: Annotated[Tuple[int, ...], BeforeValidator(check_strides),
                       WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 1},
                                       "minItems": 1, "maxItems": MAX_ANCHOR_LAYERS})]
    """Per layer; consecutive layers of one stride share a grid, as MediaPipe's calculator merges them."""
    per_layer: Integer(1, 16) = 2
    """Anchors per cell a layer adds (2 with interpolated_scale_aspect_ratio 1.0 and one aspect ratio)."""
    offset: Number(0.0, 1.0) = 0.5
    """Where in a cell its anchor's centre is (MediaPipe's anchor_offset_x/y)."""

    @model_validator(mode="after")
    def _a_grid(self) -> "SsdAnchors":
        for index, stride in enumerate(self.strides):
            if stride > min(self.input_size):
                raise Problem(f"must be from 1 to {min(self.input_size)}, got {stride}",
                              "a stride within the input size", at=f"strides[{index}]")
        if self.count() > MAX_ANCHORS:
            raise Problem(f"make {self.count():,} anchors, more than {MAX_ANCHORS:,}", "check input_size and strides",
                          at="strides")
        return self

    def count(self) -> int:
        total, layer = 0, 0
        while layer < len(self.strides):
            stride, repeats = self.strides[layer], 0
            while layer < len(self.strides) and self.strides[layer] == stride:
                repeats += self.per_layer
                layer += 1
            total += (self.input_size[0] // stride) * (self.input_size[1] // stride) * repeats
        return total


@section
class AnchorGenerator(Section):
    """Anchors made by a generator."""

    ssd: SsdAnchors
    """MediaPipe's SSD anchor generator."""


def check_anchors(value, info: ValidationInfo):
    """A .npy of anchors (a path, made absolute here), or `{ssd: {...}}`."""
    if isinstance(value, str):
        path = resolve_path(value, file_base(info))
        if path.suffix != ".npy":
            raise Problem(f"{path.name!r} is not a .npy file", "save the anchors with numpy.save")
        return path
    return value


def _anchors_form(value) -> str:
    return "path" if isinstance(value, (str, Path)) else "made" if isinstance(value, SsdAnchors) else "generator"


def _generated(value):
    return value.ssd if isinstance(value, AnchorGenerator) else value


Anchors = Annotated[Union[Annotated[AnchorGenerator, Tag("generator")], Annotated[SsdAnchors, Tag("made")],
                          Annotated[Path, Tag("path")]],
                    Discriminator(_anchors_form), BeforeValidator(check_anchors), AfterValidator(_generated),
                    WithJsonSchema({"anyOf": [{"type": "string", "format": "path"},
                                              inline_json_schema(AnchorGenerator)]})]
"""SsdAnchors (from `{ssd: {...}}`), or the Path of a .npy of [N, 2] centres or [N, 4] cx, cy, w, h."""


def check_box_scale(value) -> Tuple[float, float, float, float]:
    if isinstance(value, tuple):
        return value
    values = value if isinstance(value, list) else [value]
    if len(values) not in (1, 4):
        raise Problem(f"must be one number or [x, y, w, h], got {len(values)} numbers",
                      "e.g. `box_scale: 128` (MediaPipe's x_scale ... h_scale)")

    def one(item) -> float:
        number = check_finite(item)
        check_range(number, above=0.0, why="the raw offsets are divided by it")
        return number
    scale = _items(values, one) if isinstance(value, list) else [one(value)]
    return tuple(scale * 4 if len(scale) == 1 else scale)


@section
class DetectionSpec(Section):
    """detections: boxes, their scores and classes, decoded and matched one-to-one (Hungarian) with the
    reference's."""

    TENSORS: ClassVar[Tuple[str, ...]] = ("boxes", "scores")
    boxes: Optional[TensorRef] = None
    """The output holding the boxes (required without `decode:`)."""
    scores: Optional[TensorRef] = None
    """The output holding the scores (required without `decode:`)."""
    classes: Optional[TensorRef] = None
    """Class ids per box (default: the arg max of the scores; one class when scores have one value)."""
    box_format: Choice(*BOX_FORMATS) = "xyxy"
    """xyxy, cxcywh, or anchors (offsets from anchors, as MediaPipe's SSD)."""
    box_units: Choice(*BOX_UNITS) = "pixels"
    """Where the boxes are drawn: pixels of the model's input, or fractions of it (default with anchors:
    normalized)."""
    anchors: Optional[Anchors] = None
    """box_format anchors: `{ssd: {input_size, strides, per_layer, offset}}` (MediaPipe's generator), or a .npy of
    [N, 2] centres or [N, 4] cx, cy, w, h."""
    box_scale: Annotated[Tuple[float, float, float, float], BeforeValidator(check_box_scale),
                         WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                                                   {"type": "array", "items": {"type": "number"},
                                                    "minItems": 4, "maxItems": 4}]})] = (1.0, 1.0, 1.0, 1.0)
    """box_format anchors: the raw x, y, w, h offsets are divided by these (one number for all four)."""
    score_activation: Choice(*ACTIVATIONS) = "none"
    """none, sigmoid or softmax: what turns the raw scores into probabilities."""
    threshold: Number() = 0.5
    """A box is kept from this score on."""
    nms_iou: Optional[Number(0.0, 1.0)] = 0.45
    """Boxes of a class overlapping a better one by more than this IoU are dropped; null: no NMS."""
    match_iou: Number(above=0.0, maximum=1.0, why="two boxes that do not overlap are never the same object") = 0.5
    """Two sides' boxes are the same object from this IoU on (matched one-to-one, Hungarian)."""
    benign_margin: Number(minimum=0.0) = 0.1
    """A missed or extra box is benign when its score on both sides is within this of the threshold."""
    max_detections: Integer(1, MAX_DETECTIONS, why="boxes kept per sample, compared pair by pair") = 100
    """Boxes kept per sample."""

    @model_validator(mode="before")
    @classmethod
    def _anchors_with_anchors(cls, data):
        if not isinstance(data, dict):
            return data
        anchored = data.get("box_format") == "anchors" and "decode" not in data
        if anchored and "anchors" not in data:
            raise Problem("is missing: `box_format: anchors` decodes offsets from anchors",
                          "give `anchors: {ssd: {input_size: [128, 128], strides: [8, 16, 16, 16]}}` (MediaPipe's "
                          "generator) or `anchors: anchors.npy` ([N, 2] centres or [N, 4] cx, cy, w, h)", at="anchors")
        if not anchored:
            for key in ("anchors", "box_scale"):
                if key in data:
                    raise Problem("applies to `box_format: anchors` only", "set `box_format: anchors`, or leave it out",
                                  at=key)
        if data.get("box_format") == "anchors" and "box_units" not in data:
            data = {**data, "box_units": "normalized"}
        return data



def read_charset(value, info: ValidationInfo) -> Tuple[str, ...]:
    """charset: a file of one character per line (PaddleOCR's dictionaries), in class order after the blank."""
    if isinstance(value, tuple):
        return value
    path = resolve_path(value, file_base(info))
    if path.stat().st_size > 16 * MAX_CHARSET:
        raise Problem(f"{path.name} is {path.stat().st_size:,} bytes: not a charset",
                      "give a file of one character per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise Problem(f"{path.name} is not UTF-8 ({error.reason} at byte {error.start})", "save it as UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    characters = [line.rstrip("\r") for line in lines]
    where = [f"line {index + 1}" for index in range(len(characters))]
    for index, character in enumerate(characters):
        if character == "":
            raise Problem(f"{path.name} {where[index]} is empty",
                          "one character per line (a space is a line holding one space)")
    return _checked_characters(characters, where)


def _checked_characters(characters: List[str], where: List[str]) -> Tuple[str, ...]:
    if not characters or len(characters) > MAX_CHARSET:
        raise Problem(f"has {len(characters)} characters", f"give 1 to {MAX_CHARSET:,} characters")
    seen: Dict[str, int] = {}
    for index, character in enumerate(characters):
        if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in character):
            raise Problem(f"{where[index]} holds a control character {character!r}", "write printable characters only")
        if character in seen:
            raise Problem(f"{where[index]} repeats {character!r} of {where[seen[character]]}: two classes would read "
                          "as one", "list each character once, in the model's class order")
        seen[character] = index
    return tuple(characters)


def read_characters(value) -> Tuple[str, ...]:
    text = value if isinstance(value, str) else check_text(value)
    return _checked_characters(list(text), [f"character {index + 1}" for index in range(len(text))])


@section
class CtcSpec(Section):
    """ctc_text: a recognizer's per-position class scores read as text, greedy CTC (PP-OCR's CRNN)."""

    TENSORS: ClassVar[Tuple[str, ...]] = ("logits",)
    logits: Optional[TensorRef] = None
    """The output holding the per-position class scores (required without `decode:`)."""
    charset: Annotated[Tuple[str, ...], BeforeValidator(read_charset),
                       WithJsonSchema({"type": "string", "format": "path"})] = ()
    """A file of one character per line, in class order after the blank (or `characters:`)."""
    characters: Optional[Text] = None
    """The characters as one text (`"0123456789"`), instead of a charset file."""
    blank: Integer(-1, MAX_CHARSET) = 0
    """The blank's class: 0 (the first) or -1 (the last)."""
    benign_margin: Number(minimum=0.0) = 0.1
    """A changed character whose two best classes were within this is a near-tie."""

    @model_validator(mode="before")
    @classmethod
    def _one_charset(cls, data):
        if not isinstance(data, dict):
            return data
        if "decode" in data:
            for key in ("charset", "characters", "blank"):
                if key in data:
                    raise Problem("belongs to the built-in CTC decoder, and `decode:` returns the text itself",
                                  "leave it out", at=key)
            return data
        given = [key for key in ("charset", "characters") if key in data]
        if len(given) != 1:
            raise Problem("is missing" if not given else "and `characters` are both given",
                          "give `charset: charset.txt` (one character per line, in class order after the blank) or "
                          "`characters: \"0123456789\"`", at="charset")
        if given == ["characters"]:
            try:
                characters = read_characters(data["characters"])
            except Problem as problem:
                raise Problem(problem.problem, problem.fix, at="characters") from None
            data = {**data, "charset": characters}
        return data


@section
class ClassSpec(Section):
    """class_scores: a classifier's scores, judged by the top class and the top k."""

    TENSORS: ClassVar[Tuple[str, ...]] = ("scores",)
    scores: Optional[TensorRef] = None
    """The output holding the class scores (required without `decode:`)."""
    top_k: Integer(1, MAX_TOP_K) = 5
    """How many of the best classes the top-k overlap compares."""
    labels: Annotated[Tuple[str, ...], BeforeValidator(lambda value, info: read_labels(value, info)),
                      WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string"}},
                                                {"type": "string", "format": "path"}]})] = ()
    """Class names, shown instead of numbers: a list, or a file of one per line (optional)."""
    benign_margin: Number(minimum=0.0) = 0.1
    """A changed top class whose reference margin was below this is a near-tie."""


def read_labels(value, info: ValidationInfo) -> Tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, list):
        labels = tuple(_items(value, lambda item: check_text(str(item) if isinstance(item, (int, float)) and
                                                             not isinstance(item, bool) else item)))
    else:
        path = resolve_path(value, file_base(info))
        labels = tuple(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    for index, label in enumerate(labels):
        if labels.index(label) != index:
            raise Problem(f"names {label!r} twice (classes {labels.index(label)} and {index})",
                          "give each class its own name")
    return labels


@section
class KeypointSpec(Section):
    """keypoints: points (landmarks), judged by the share within a distance of the reference's (PCK)."""

    TENSORS: ClassVar[Tuple[str, ...]] = ("points",)
    points: Optional[TensorRef] = None
    """The output holding the points (required without `decode:`)."""
    dims: Integer(2, 16) = 2
    """Values per point in the tensor (x, y, and z or a visibility beyond); x and y are the first two."""
    pck_threshold: Number(above=0.0, maximum=1.0) = 0.05
    """A point is correct within this fraction of the larger side of the reference points' bounding box."""


KIND_LIMITS = {
    "detections": ("min_matched", "max_hard_misses", "min_box_iou"),
    "ctc_text": ("min_exact_match", "max_cer"),
    "class_scores": ("min_top1_agreement", "min_topk_overlap", "max_hard_flips"),
    "keypoints": ("min_pck",),
}
COUNT_LIMITS = ("max_hard_misses",)
"""Limits that count (every other is a fraction from 0 to 1)."""


@section
class DecodedTolerance(Section):
    """What a decoded output must keep against the reference; each kind has its own limits (null: not checked)."""

    min_matched: Optional[Number(0.0, 1.0, why=SHARE_WHY)] = None
    """detections: matched boxes over all boxes of both sides (matched + missed + extra)."""
    max_hard_misses: Optional[Integer(0, MAX_DETECTIONS * 10_000)] = None
    """detections: missed or extra boxes that were not near the threshold (a count)."""
    min_box_iou: Optional[Number(0.0, 1.0, why=SHARE_WHY)] = None
    """detections: the lowest IoU of a matched pair."""
    min_exact_match: Optional[Number(0.0, 1.0, why=SHARE_WHY)] = None
    """ctc_text: the share of samples whose text is exactly the reference's."""
    max_cer: Optional[Number(0.0, 1.0, why=SHARE_WHY)] = None
    """ctc_text: character error rate, edits over the reference's characters."""
    min_top1_agreement: Optional[Number(0.0, 1.0, why=SHARE_WHY)] = None
    """class_scores: the share of samples (positions) with the reference's top class."""
    min_topk_overlap: Optional[Number(0.0, 1.0, why=SHARE_WHY)] = None
    """class_scores: the mean share of the reference's top k among the board's top k."""
    max_hard_flips: Optional[Number(0.0, 1.0, why=SHARE_WHY)] = None
    """class_scores: the share whose top class changed where the reference's margin was not a near-tie."""
    min_pck: Optional[Number(0.0, 1.0, why=SHARE_WHY)] = None
    """keypoints: the share of points within pck_threshold of the reference's."""


DEFAULT_LIMITS = {
    "detections": DecodedTolerance(min_matched=0.999, max_hard_misses=0, min_box_iou=0.8),
    "ctc_text": DecodedTolerance(min_exact_match=0.999),
    "class_scores": DecodedTolerance(min_top1_agreement=0.999, max_hard_flips=0.0),
    "keypoints": DecodedTolerance(min_pck=0.999),
}
"""What users act on stays the same for 99.9% of it: boxes found, texts read, classes picked, points placed (the
policy of class_logits, whose labels decide; docs/tolerances.md has the measurements). A miss far from the
threshold never passes, and a matched box must overlap its reference by 0.8 (the FP16 runs measured kept
0.93 or more)."""


@dataclass(frozen=True)
class UserDecoder:
    script: Path
    function: str
    args: Tuple[Tuple[str, object], ...] = ()
    sources: Tuple[str, ...] = ()
    """The model outputs it is given; () means every output of the model."""


@section
class DecodeCall(Section):
    """The user's own decoding function, with keyword arguments."""

    SHORT_FORM = {"type": "string", "pattern": r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
                  "description": "script.py:function"}
    call: Annotated[Tuple[Path, str], BeforeValidator(check_call),
                    WithJsonSchema({"type": "string", "pattern": r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$"})]
    """`script.py:function`, relative to the scenario's directory: given the outputs, returns what the kind
    judges."""
    args: Annotated[dict, BeforeValidator(check_args), WithJsonSchema({"type": "object"})] = \
        field(default_factory=dict)
    """Keyword arguments of the function, e.g. `{threshold: 0.25}`."""

    @classmethod
    def from_short_form(cls, value):
        return {"call": value} if isinstance(value, str) else value


def check_sources(value) -> Tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    if not isinstance(value, list):
        raise Problem(f"must be a list, got {type_name(value)} {shown(value)}",
                      "write it as `from: [a, b]` or one `- item` per line")
    sources = tuple(_items(value, check_text))
    if not sources:
        raise Problem("is empty", "name the model outputs the function reads, or leave `from` out to give it every "
                      "output")
    for index, output in enumerate(sources):
        if sources.index(output) != index:
            raise Problem(f"names {output!r} twice", "list each output once", at=f"[{index}]")
    return sources


@section
class DecodedEntry(Section):
    """One decoded output: what the application makes of some of the model's tensors, judged as it acts on it."""

    KIND: ClassVar[str] = ""
    PARAMS: ClassVar[type] = Section
    """The kind's settings (DetectionSpec, ...): what a run's DecodedSpec holds."""
    kind: Text
    """detections, ctc_text, class_scores or keypoints: how it is decoded, and which verdict judges it."""
    decode: Optional[DecodeCall] = None
    """The user's own post-processing (`post.py:decode`, or `{call, args}`) instead of the built-in decoder."""
    from_: Optional[Annotated[Tuple[str, ...], BeforeValidator(check_sources),
                              WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1})]] = \
        Field(None, alias="from")
    """With `decode:`: the model outputs the function is given (default: every output)."""
    tolerance: DecodedTolerance = DecodedTolerance()
    """Its kind's limits over their defaults."""

    @model_validator(mode="before")
    @classmethod
    def _built_in_or_own(cls, data, info: ValidationInfo):
        if not isinstance(data, dict):
            return data
        user = "decode" in data
        if user:  # the function comes first: what else is wrong depends on it
            decode = data["decode"]
            call, where = (decode.get("call"), "decode.call") if isinstance(decode, dict) else (decode, "decode")
            if call is not None:
                try:
                    check_call(call, info)
                except Problem as problem:
                    raise Problem(problem.problem, problem.fix, at=where) from None
        if not user and "from" in data:
            raise Problem("names the outputs a `decode:` function is given",
                          "add `decode: file.py:function`, or leave `from` out (the built-in decoder names its "
                          "tensors itself)", at="from")
        for key in cls.PARAMS.TENSORS + ("classes",) * (cls.KIND == "detections"):
            if user and key in data:
                raise Problem("names a tensor of the built-in decoder, and `decode:` replaces it",
                              "leave it out: the function gets the outputs of `from`", at=key)
        for key in cls.PARAMS.TENSORS:
            if not user and key not in data:
                raise Problem("is missing", f"name the model output that holds the {key}", at=key)
        limits = data.get("tolerance")
        if limits is None or isinstance(limits, dict):
            limits = limits or {}
            for name in limits:
                owner = next((kind for kind, names in KIND_LIMITS.items() if name in names), None)
                if owner is not None and owner != cls.KIND:
                    raise Problem(f"applies to {owner} outputs, and this one is {cls.KIND}",
                                  f"its limits are {', '.join(KIND_LIMITS[cls.KIND])}", at=f"tolerance.{name}")
            defaults = {name: getattr(DEFAULT_LIMITS[cls.KIND], name) for name in KIND_LIMITS[cls.KIND]}
            data = {**data, "tolerance": {**defaults, **limits}}
        return data

    def spec(self, name: str) -> "DecodedSpec":
        params = self.PARAMS(**{name: getattr(self, name) for name in self.PARAMS.__pydantic_fields__})
        decoder = None
        if self.decode is not None:
            script, function = self.decode.call
            decoder = UserDecoder(script, function, tuple(sorted(self.decode.args.items())), self.from_ or ())
        return DecodedSpec(name, self.kind, params, self.tolerance, decoder)


@section
class DetectionsEntry(DecodedEntry, DetectionSpec):
    KIND = "detections"
    PARAMS = DetectionSpec
    kind: Literal["detections"]


@section
class CtcEntry(DecodedEntry, CtcSpec):
    KIND = "ctc_text"
    PARAMS = CtcSpec
    kind: Literal["ctc_text"]


@section
class ClassScoresEntry(DecodedEntry, ClassSpec):
    KIND = "class_scores"
    PARAMS = ClassSpec
    kind: Literal["class_scores"]


@section
class KeypointsEntry(DecodedEntry, KeypointSpec):
    KIND = "keypoints"
    PARAMS = KeypointSpec
    kind: Literal["keypoints"]


DECODED_TYPES = {entry.KIND: entry for entry in (DetectionsEntry, CtcEntry, ClassScoresEntry, KeypointsEntry)}


def check_decoded(value):
    """Names of their own, each with a kind (said here, with the kinds there are)."""
    if not isinstance(value, dict):
        return value
    for name, entry in value.items():
        where = str(name)
        if not isinstance(name, str) or not name.strip():
            raise Problem(f"a decoded output's name must be text, got {type_name(name)} {name!r}",
                          "name what the application sees, e.g. `faces:`", at=where)
        try:
            check_text(name)
        except Problem as problem:
            raise Problem(problem.problem, problem.fix, at=where) from None
        if isinstance(entry, dict) and "kind" not in entry:
            raise Problem("is missing", f"say which verdict judges it: one of {', '.join(DECODED_KINDS)}",
                          at=f"{where}.kind")
    return value


Decoded = Annotated[Dict[str, Annotated[Union[DetectionsEntry, CtcEntry, ClassScoresEntry, KeypointsEntry],
                                        Field(discriminator="kind")]], BeforeValidator(check_decoded)]
"""`decoded:` as a scenario writes it: decoded outputs by name."""


@dataclass(frozen=True)
class DecodedSpec:
    """One decoded output of a scenario: what the application makes of some of the model's tensors."""

    name: str
    kind: str
    params: object
    """DetectionSpec, CtcSpec, ClassSpec or KeypointSpec: how to decode and judge."""
    tolerance: DecodedTolerance = DecodedTolerance()
    decoder: Optional[UserDecoder] = None
    """The user's own decoding (`decode: file.py:function`), replacing the built-in one."""

    @property
    def sources(self) -> Tuple[str, ...]:
        """The model outputs it reads (() for a user decoder given every output)."""
        if self.decoder is not None:
            return self.decoder.sources
        refs = [getattr(self.params, name, None) for name in ("boxes", "scores", "classes", "logits", "points")]
        found: List[str] = []
        for ref in refs:
            if ref is not None and ref.output not in found:
                found.append(ref.output)
        return tuple(found)

    def as_dict(self) -> dict:
        """What the record keeps of it (summary.json's output_specs): a stored run is read without its YAML."""
        params = {item.name: _plain(getattr(self.params, item.name)) for item in dataclasses.fields(self.params)
                  if item.name not in ("charset", "labels", "characters")}
        return {"kind": self.kind, "decoded": True, "sources": list(self.sources),
                "decode": None if self.decoder is None else f"{self.decoder.script.name}:{self.decoder.function}",
                "params": params,
                "tolerance": {name: getattr(self.tolerance, name) for name in KIND_LIMITS[self.kind]}}


def _plain(value):
    if isinstance(value, (TensorRef, SsdAnchors)):
        return {item.name: _plain(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


# -- checked against the model -----------------------------------------------------------------------------


def check_against_model(path: Path, specs: Dict[str, DecodedSpec], outputs: List[str],
                        shapes: Dict[str, Optional[list]]) -> None:
    """Every tensor a decoded output reads is an output of the model, with the axes and values it names."""
    known = f"its outputs are {', '.join(outputs)}"
    for name, spec in specs.items():
        if name in outputs:
            raise ConfigError(path, f"decoded.{name}", f"is also the name of a model output",
                              "give the decoded output a name of its own (what the application sees: faces, text)")
        if spec.decoder is not None:
            for index, output in enumerate(spec.decoder.sources):
                if output not in outputs:
                    raise ConfigError(path, f"decoded.{name}.from[{index}]", f"the model has no output {output!r}",
                                      known)
            continue
        for key in ("boxes", "scores", "classes", "logits", "points"):
            ref = getattr(spec.params, key, None)
            if ref is None:
                continue
            if ref.output not in outputs:
                raise ConfigError(path, f"decoded.{name}.{key}", f"the model has no output {ref.output!r}", known)
            shape = shapes.get(ref.output)
            if shape is None:
                continue
            if not -len(shape) <= ref.axis < len(shape):
                raise ConfigError(path, f"decoded.{name}.{key}.axis", f"is {ref.axis}, but {ref.output!r} has "
                                  f"{len(shape)} axes ({_shown(shape)})", "name the axis of the values")
            size = shape[ref.axis]
            if ref.values is not None and size is not None and ref.values[1] > size:
                raise ConfigError(path, f"decoded.{name}.{key}.values", f"[{ref.values[0]}, {ref.values[1]}] goes "
                                  f"beyond the {size} values of {ref.output!r} ({_shown(shape)})",
                                  f"give a slice within [0, {size}]")
        params = spec.params
        if isinstance(params, CtcSpec) and shapes.get(params.logits.output) is not None:
            classes = shapes[params.logits.output][params.logits.axis]
            if classes is not None and classes != len(params.charset) + 1:
                raise ConfigError(path, f"decoded.{name}.charset", f"has {len(params.charset)} characters, and "
                                  f"{params.logits.output!r} scores {classes} classes: CTC needs the characters "
                                  "and one blank", f"give {classes - 1} characters, in the model's class order")
            if classes is not None and not -classes <= params.blank < classes:
                raise ConfigError(path, f"decoded.{name}.blank", f"is {params.blank}, not a class of the {classes}",
                                  "0 (the first class) or -1 (the last)")
        if isinstance(params, DetectionSpec) and isinstance(params.anchors, SsdAnchors):
            shape = shapes.get(params.boxes.output)
            if shape is not None and None not in shape:
                positions = math.prod(shape) // shape[params.boxes.axis]
                if positions != params.anchors.count():
                    raise ConfigError(path, f"decoded.{name}.anchors", f"make {params.anchors.count()} anchors, and "
                                      f"{params.boxes.output!r} ({_shown(shape)}) has {positions} boxes",
                                      "give the input_size and strides the model was trained with")


def _shown(shape) -> str:
    return "x".join("?" if dim is None else str(dim) for dim in shape)
