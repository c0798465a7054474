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

The verdicts themselves are analysis/decoded/; this module is only what was asked, typed.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import ConfigError
from .yamlfile import Section, type_name

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


@dataclass(frozen=True)
class TensorRef:
    """A model output, or a slice of it, read as [positions, values] per sample."""

    output: str
    axis: int = -1
    """The axis of the values (box coordinates, class scores, a point's coordinates) in the model's output."""
    values: Optional[Tuple[int, int]] = None
    """A slice [start, stop) of that axis (YOLO's [4 box values + 80 class scores] in one tensor), or all."""


@dataclass(frozen=True)
class SsdAnchors:
    """MediaPipe's SSD anchors (SsdAnchorsCalculator, fixed anchor size) for BlazeFace-like detectors."""

    input_size: Tuple[int, int]
    """The model's input height and width."""
    strides: Tuple[int, ...]
    """Per layer; consecutive layers of one stride share a grid, as MediaPipe's calculator merges them."""
    per_layer: int = 2
    """Anchors per cell a layer adds (2 with interpolated_scale_aspect_ratio 1.0 and one aspect ratio)."""
    offset: float = 0.5
    """Where in a cell its anchor's centre is (MediaPipe's anchor_offset_x/y)."""

    def count(self) -> int:
        total, layer = 0, 0
        while layer < len(self.strides):
            stride, repeats = self.strides[layer], 0
            while layer < len(self.strides) and self.strides[layer] == stride:
                repeats += self.per_layer
                layer += 1
            total += (self.input_size[0] // stride) * (self.input_size[1] // stride) * repeats
        return total


@dataclass(frozen=True)
class DetectionSpec:
    boxes: TensorRef
    scores: TensorRef
    classes: Optional[TensorRef] = None
    """Class ids per box; None: the arg max of the scores (one class when scores have one value)."""
    box_format: str = "xyxy"
    box_units: str = "pixels"
    """Where the boxes are drawn: pixels of the model's input, or fractions of it."""
    anchors: object = None
    """anchors format: SsdAnchors, or the Path of a .npy of [N, 2] centres or [N, 4] cx, cy, w, h."""
    box_scale: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    """anchors format: the raw x, y, w, h offsets are divided by these (MediaPipe's x/y/w/h_scale)."""
    score_activation: str = "none"
    threshold: float = 0.5
    nms_iou: Optional[float] = 0.45
    """Boxes of a class overlapping a better one by more than this IoU are dropped; None: no NMS."""
    match_iou: float = 0.5
    """Two sides' boxes are the same object from this IoU on (matched one-to-one, Hungarian)."""
    benign_margin: float = 0.1
    """A missed or extra box is benign when its score on both sides is within this of the threshold."""
    max_detections: int = 100


@dataclass(frozen=True)
class CtcSpec:
    logits: TensorRef
    charset: Tuple[str, ...]
    """The characters of every class but the blank, in class order."""
    blank: int = 0
    benign_margin: float = 0.1


@dataclass(frozen=True)
class ClassSpec:
    scores: TensorRef
    top_k: int = 5
    labels: Tuple[str, ...] = ()
    """Class names, shown instead of numbers (optional)."""
    benign_margin: float = 0.1


@dataclass(frozen=True)
class KeypointSpec:
    points: TensorRef
    dims: int = 2
    """Values per point in the tensor (x, y, and z or a visibility beyond); x and y are the first two."""
    pck_threshold: float = 0.05
    """A point is correct within this fraction of the larger side of the reference points' bounding box."""


@dataclass(frozen=True)
class UserDecoder:
    script: Path
    function: str
    args: Tuple[Tuple[str, object], ...] = ()
    sources: Tuple[str, ...] = ()
    """The model outputs it is given; () means every output of the model."""


@dataclass(frozen=True)
class DecodedTolerance:
    min_matched: Optional[float] = None
    """detections: matched boxes over all boxes of both sides (matched + missed + extra)."""
    max_hard_misses: Optional[float] = None
    """detections: missed or extra boxes that were not near the threshold (a count)."""
    min_box_iou: Optional[float] = None
    """detections: the lowest IoU of a matched pair."""
    min_exact_match: Optional[float] = None
    """ctc_text: the share of samples whose text is exactly the reference's."""
    max_cer: Optional[float] = None
    """ctc_text: character error rate, edits over the reference's characters."""
    min_top1_agreement: Optional[float] = None
    """class_scores: the share of samples (positions) with the reference's top class."""
    min_topk_overlap: Optional[float] = None
    """class_scores: the mean share of the reference's top k among the board's top k."""
    max_hard_flips: Optional[float] = None
    """class_scores: the share whose top class changed where the reference's margin was not a near-tie."""
    min_pck: Optional[float] = None
    """keypoints: the share of points within pck_threshold of the reference's."""


KIND_LIMITS = {
    "detections": ("min_matched", "max_hard_misses", "min_box_iou"),
    "ctc_text": ("min_exact_match", "max_cer"),
    "class_scores": ("min_top1_agreement", "min_topk_overlap", "max_hard_flips"),
    "keypoints": ("min_pck",),
}
COUNT_LIMITS = ("max_hard_misses",)
"""Limits that count (every other is a fraction from 0 to 1)."""
DEFAULT_LIMITS = {
    "detections": DecodedTolerance(min_matched=0.999, max_hard_misses=0, min_box_iou=0.8),
    "ctc_text": DecodedTolerance(min_exact_match=0.999),
    "class_scores": DecodedTolerance(min_top1_agreement=0.999, max_hard_flips=0.0),
    "keypoints": DecodedTolerance(min_pck=0.999),
}
"""What users act on stays the same for 99.9% of it: boxes found, texts read, classes picked, points placed (the
policy of class_logits, whose labels decide; README "Tolerances" has the measurements). A miss far from the
threshold never passes, and a matched box must overlap its reference by 0.8 (the FP16 runs measured kept
0.93 or more)."""


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
        params = {name: _plain(getattr(self.params, name)) for name in self.params.__dataclass_fields__
                  if name not in ("charset", "labels")}
        return {"kind": self.kind, "decoded": True, "sources": list(self.sources),
                "decode": None if self.decoder is None else f"{self.decoder.script.name}:{self.decoder.function}",
                "params": params,
                "tolerance": {name: getattr(self.tolerance, name) for name in KIND_LIMITS[self.kind]}}


def _plain(value):
    if isinstance(value, (TensorRef, SsdAnchors)):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


# -- reading it ----------------------------------------------------------------------------------------------


def parse_decoded(top: Section) -> Dict[str, DecodedSpec]:
    """The scenario's `decoded:` section; ConfigError names the key and the fix."""
    section = top.section("decoded", {})
    found: Dict[str, DecodedSpec] = {}
    for name in list(section.data):
        if not isinstance(name, str) or not name.strip():
            raise section.error(str(name), f"a decoded output's name must be text, got {type_name(name)} {name!r}",
                                "name what the application sees, e.g. `faces:`")
        section.to_str(name, name)
        found[name] = _entry(section.section(name), name)
    section.done()
    return found


def _entry(entry: Section, name: str) -> DecodedSpec:
    kind = entry.str("kind", None, DECODED_KINDS)
    if kind is None:
        raise entry.error("kind", "is missing", f"say which verdict judges it: one of {', '.join(DECODED_KINDS)}")
    decoder = _decoder(entry) if entry.has("decode") else None
    if decoder is None and entry.has("from"):
        raise entry.error("from", "names the outputs a `decode:` function is given",
                          "add `decode: file.py:function`, or leave `from` out (the built-in decoder names its "
                          "tensors itself)")
    params = {"detections": _detections, "ctc_text": _ctc, "class_scores": _classes,
              "keypoints": _keypoints}[kind](entry, decoder is not None)
    tolerance = _tolerance(entry.section("tolerance", {}), kind)
    entry.done()
    return DecodedSpec(name, kind, params, tolerance, decoder)


def _decoder(entry: Section) -> UserDecoder:
    from .build.inputs.loader import _target  # the same `script.py:function` rule as a loader's

    value = entry.raw("decode")
    args: tuple = ()
    if isinstance(value, dict):
        options = entry.section("decode")
        script, function = _target(options, "call", options.str("call"))
        raw_args = options.raw("args", {})
        if not isinstance(raw_args, dict) or not all(isinstance(k, str) and k.isidentifier() for k in raw_args):
            raise options.error("args", f"must map argument names to values, got {type_name(raw_args)} {raw_args!r}",
                                "e.g. `args: {threshold: 0.25}`")
        args = tuple(sorted(raw_args.items()))
        options.done()
    else:
        script, function = _target(entry, "decode", value)
    sources = ()
    if entry.has("from"):
        sources = tuple(entry.str_list("from"))
        if not sources:
            raise entry.error("from", "is empty", "name the model outputs the function reads, or leave `from` out "
                              "to give it every output")
        for index, output in enumerate(sources):
            if sources.index(output) != index:
                raise entry.error(f"from[{index}]", f"names {output!r} twice", "list each output once")
    return UserDecoder(script, function, args, sources)


def _ref(entry: Section, key: str, user: bool) -> Optional[TensorRef]:
    """A tensor reference: `boxes: regressors`, or `boxes: {output: output0, axis: 1, values: [0, 4]}`."""
    if user:
        if entry.has(key):
            raise entry.error(key, "names a tensor of the built-in decoder, and `decode:` replaces it",
                              "leave it out: the function gets the outputs of `from`")
        return None
    if not entry.has(key):
        raise entry.error(key, "is missing", f"name the model output that holds the {key}")
    value = entry.raw(key)
    if isinstance(value, str):
        return TensorRef(entry.to_str(key, value))
    options = entry.section(key)
    output = options.str("output")
    axis = options.int("axis", -1, minimum=-32, maximum=31)
    values = None
    if options.has("values"):
        pair = options.list("values")
        if len(pair) != 2:
            raise options.error("values", f"must be [start, stop], got {pair!r}", "e.g. `values: [0, 4]`")
        start = _whole(options, "values[0]", pair[0], 0, MAX_CLASSES)
        stop = _whole(options, "values[1]", pair[1], 1, MAX_CLASSES)
        if stop <= start:
            raise options.error("values", f"[{start}, {stop}] is empty", "give stop above start: [start, stop)")
        values = (start, stop)
    options.done()
    return TensorRef(output, axis, values)


def _whole(section: Section, key: str, value, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise section.error(key, f"must be an integer, got {type_name(value)} {value!r}", "write a whole number")
    if not minimum <= value <= maximum:
        raise section.error(key, f"must be from {minimum} to {maximum}, got {value}")
    return value


def _fraction(section: Section, key: str, default: float) -> float:
    return section.number(key, default, minimum=0.0, maximum=1.0)


def _detections(entry: Section, user: bool) -> DetectionSpec:
    box_format = entry.str("box_format", "xyxy", BOX_FORMATS)
    boxes = _ref(entry, "boxes", user)
    scores = _ref(entry, "scores", user)
    classes = None if user or not entry.has("classes") else _ref(entry, "classes", user)
    anchors, scale = None, (1.0, 1.0, 1.0, 1.0)
    if box_format == "anchors" and not user:
        anchors = _anchors(entry)
        scale = _box_scale(entry)
    else:
        for key in ("anchors", "box_scale"):
            if entry.has(key):
                raise entry.error(key, "applies to `box_format: anchors` only",
                                  "set `box_format: anchors`, or leave it out")
    units = entry.str("box_units", "normalized" if box_format == "anchors" else "pixels", BOX_UNITS)
    nms = entry.raw("nms_iou", 0.45)
    return DetectionSpec(
        boxes=boxes, scores=scores, classes=classes, box_format=box_format, box_units=units, anchors=anchors,
        box_scale=scale, score_activation=entry.str("score_activation", "none", ACTIVATIONS),
        threshold=entry.number("threshold", 0.5),
        nms_iou=None if nms is None else entry.to_number("nms_iou", nms, minimum=0.0, maximum=1.0),
        match_iou=entry.number("match_iou", 0.5, above=0.0, maximum=1.0,
                               why="two boxes that do not overlap are never the same object"),
        benign_margin=entry.number("benign_margin", 0.1, minimum=0.0),
        max_detections=entry.int("max_detections", 100, minimum=1, maximum=MAX_DETECTIONS,
                                 why="boxes kept per sample, compared pair by pair"))


def _anchors(entry: Section):
    if not entry.has("anchors"):
        raise entry.error("anchors", "is missing: `box_format: anchors` decodes offsets from anchors",
                          "give `anchors: {ssd: {input_size: [128, 128], strides: [8, 16, 16, 16]}}` (MediaPipe's "
                          "generator) or `anchors: anchors.npy` ([N, 2] centres or [N, 4] cx, cy, w, h)")
    value = entry.raw("anchors")
    if isinstance(value, str):
        path = entry.path_value("anchors")
        if path.suffix != ".npy":
            raise entry.error("anchors", f"{path.name!r} is not a .npy file", "save the anchors with numpy.save")
        return path
    options = entry.section("anchors")
    ssd = options.section("ssd")
    options.done()
    size = ssd.list("input_size")
    if len(size) != 2:
        raise ssd.error("input_size", f"must be [height, width], got {size!r}", "e.g. `input_size: [128, 128]`")
    input_size = tuple(_whole(ssd, f"input_size[{i}]", v, 1, 8192) for i, v in enumerate(size))
    strides = ssd.list("strides")
    if not strides or len(strides) > MAX_ANCHOR_LAYERS:
        raise ssd.error("strides", f"must list 1 to {MAX_ANCHOR_LAYERS} strides, got {len(strides)}",
                        "one stride per layer, e.g. [8, 16, 16, 16]")
    strides = tuple(_whole(ssd, f"strides[{i}]", v, 1, min(input_size)) for i, v in enumerate(strides))
    anchors = SsdAnchors(input_size, strides, ssd.int("per_layer", 2, minimum=1, maximum=16),
                         ssd.number("offset", 0.5, minimum=0.0, maximum=1.0))
    ssd.done()
    if anchors.count() > MAX_ANCHORS:
        raise ssd.error("strides", f"make {anchors.count():,} anchors, more than {MAX_ANCHORS:,}",
                        "check input_size and strides")
    return anchors


def _box_scale(entry: Section) -> Tuple[float, float, float, float]:
    value = entry.raw("box_scale", 1.0)
    values = value if isinstance(value, list) else [value]
    if len(values) not in (1, 4):
        raise entry.error("box_scale", f"must be one number or [x, y, w, h], got {len(values)} numbers",
                          "e.g. `box_scale: 128` (MediaPipe's x_scale ... h_scale)")
    scale = [entry.to_number(f"box_scale[{i}]" if isinstance(value, list) else "box_scale", v, above=0.0,
                             why="the raw offsets are divided by it") for i, v in enumerate(values)]
    return tuple(scale * 4 if len(scale) == 1 else scale)


def _ctc(entry: Section, user: bool) -> CtcSpec:
    logits = _ref(entry, "logits", user)
    charset = _charset(entry) if not user else ()
    if user and (entry.has("charset") or entry.has("characters")):
        raise entry.error("charset", "belongs to the built-in CTC decoder, and `decode:` returns the text itself",
                          "leave it out")
    blank = entry.int("blank", 0, minimum=-1, maximum=MAX_CHARSET) if not user else 0
    return CtcSpec(logits, charset, blank, entry.number("benign_margin", 0.1, minimum=0.0))


def _charset(entry: Section) -> Tuple[str, ...]:
    """charset: a file of one character per line (PaddleOCR's dictionaries), or characters: "0123456789"."""
    given = [key for key in ("charset", "characters") if entry.has(key)]
    if len(given) != 1:
        raise entry.error("charset", "is missing" if not given else "and `characters` are both given",
                          "give `charset: charset.txt` (one character per line, in class order after the blank) "
                          "or `characters: \"0123456789\"`")
    if given == ["characters"]:
        text = entry.str("characters")
        characters, where = list(text), [f"character {index + 1}" for index in range(len(text))]
        key = "characters"
    else:
        key = "charset"
        path = entry.path_value("charset")
        if path.stat().st_size > 16 * MAX_CHARSET:
            raise entry.error(key, f"{path.name} is {path.stat().st_size:,} bytes: not a charset",
                              "give a file of one character per line")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise entry.error(key, f"{path.name} is not UTF-8 ({error.reason} at byte {error.start})",
                              "save it as UTF-8") from error
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the newline that ends the last line
        characters = [line.rstrip("\r") for line in lines]
        where = [f"line {index + 1}" for index in range(len(characters))]
        for index, character in enumerate(characters):
            if character == "":
                raise entry.error(key, f"{path.name} {where[index]} is empty",
                                  "one character per line (a space is a line holding one space)")
    if not characters or len(characters) > MAX_CHARSET:
        raise entry.error(key, f"has {len(characters)} characters", f"give 1 to {MAX_CHARSET:,} characters")
    seen: Dict[str, int] = {}
    for index, character in enumerate(characters):
        if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in character):
            raise entry.error(key, f"{where[index]} holds a control character {character!r}",
                              "write printable characters only")
        if character in seen:
            raise entry.error(key, f"{where[index]} repeats {character!r} of {where[seen[character]]}: two classes "
                              "would read as one", "list each character once, in the model's class order")
        seen[character] = index
    return tuple(characters)


def _classes(entry: Section, user: bool) -> ClassSpec:
    scores = _ref(entry, "scores", user)
    labels: Tuple[str, ...] = ()
    if entry.has("labels"):
        value = entry.raw("labels")
        if isinstance(value, list):
            labels = tuple(entry.to_str(f"labels[{i}]", str(v) if isinstance(v, (int, float)) and
                                        not isinstance(v, bool) else v) for i, v in enumerate(value))
        else:
            path = entry.path_value("labels")
            labels = tuple(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
        for index, label in enumerate(labels):
            if labels.index(label) != index:
                raise entry.error("labels", f"names {label!r} twice (classes {labels.index(label)} and {index})",
                                  "give each class its own name")
    return ClassSpec(scores, entry.int("top_k", 5, minimum=1, maximum=MAX_TOP_K), labels,
                     entry.number("benign_margin", 0.1, minimum=0.0))


def _keypoints(entry: Section, user: bool) -> KeypointSpec:
    return KeypointSpec(_ref(entry, "points", user), entry.int("dims", 2, minimum=2, maximum=16),
                        entry.number("pck_threshold", 0.05, above=0.0, maximum=1.0))


def _tolerance(section: Section, kind: str) -> DecodedTolerance:
    values = {name: getattr(DEFAULT_LIMITS[kind], name) for name in KIND_LIMITS[kind]}
    for name in list(section.data):
        if name not in DecodedTolerance.__dataclass_fields__:
            continue  # done() names it with the known keys
        if name not in KIND_LIMITS[kind]:
            owner = next(k for k, limits in KIND_LIMITS.items() if name in limits)
            raise section.error(name, f"applies to {owner} outputs, and this one is {kind}",
                                f"its limits are {', '.join(KIND_LIMITS[kind])}")
        if section.raw(name) is None:
            values[name] = None
        elif name in COUNT_LIMITS:
            values[name] = section.int(name, minimum=0, maximum=MAX_DETECTIONS * 10_000)
        else:
            values[name] = section.number(name, minimum=0.0, maximum=1.0,
                                          why="a share: 0.999 means 99.9%")
    for name in KIND_LIMITS[kind]:
        section.used.add(name)
    section.done()
    return DecodedTolerance(**values)


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
