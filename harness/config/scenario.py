"""A scenario: which model, which inputs, which preprocessing, which boards, which tolerances.

`ScenarioFile` and its sections are the schema of a scenario file, defined
once: every key with its type, bounds, default and meaning. The loader's
checks, docs/reference.md and schemas/scenario.schema.json all come from it.
`load_scenario(path)` reads and validates the YAML once and resolves it into
the typed `Scenario` the run uses (each output's limits merged with its kind's
defaults, paths absolute); everything after it works on `Scenario` and never
looks at the YAML again.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional, Tuple

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator
from pydantic.json_schema import SkipJsonSchema

from ..core.fields import (NUMBER_TEXT, Choice, FilePath, Flag, Fraction, Integer, MnnVersion, Name, Number, Problem,
                           Section, Text, check_finite, check_mnn_version, check_name, check_text, section, shown,
                           slug, type_name)
from ..core.build.inputs import SKIMAGE_IMAGES, ImageRef, Inputs, InputSpec, input_specs  # noqa: F401  (re-exported)
from ..core.build.inputs.base import MAX_SAMPLES
from ..core.build.model import ModelSource
from ..core.build.preprocess import Preprocess  # noqa: F401  (re-exported: part of a Scenario)
from .decoded import Decoded, DecodedSpec
from .validation import validate
from .yamlfile import load_yaml

INTERPOLATIONS = ("nearest", "linear", "area", "cubic")
PRECISIONS = ("normal", "high", "low", "low_bf16")
APIS = ("session", "module")
IO_MODES = ("copy", "host")
BACKENDS = ("cpu", "opencl", "vulkan", "auto")
"""MNN backends a run may ask for; `auto` takes the first non-CPU backend MNN has, else the CPU."""
LAYOUTS = ("NCHW", "NHWC")
OUTPUT_KINDS = ("tensor", "class_logits", "probability_map", "decision")
MAX_SIDE = 8192
"""Largest resize height or width. A dynamic model takes any size, and 100000x100000 would be a
120 GB float32 tensor per image, built on the host and sent to every board."""
MAX_INPUT_BYTES = 1024 ** 3
"""Largest inputs.npz (every image's tensor): it is built in the host's memory and sent to every board."""
MAX_THREADS = 256
"""More threads than any board has cores."""
MAX_ITERATIONS = 100_000
"""Iterations (and warmup runs) of the whole model on every board; the run_timeout still applies."""
MAX_AXES = 32
"""A class axis beyond this cannot be an axis of any model's output (MNN tensors have at most 8)."""
HARNESS_SETS = ("-f", "--framework", "--modelFile", "--MNNModel", "--bizCode")
"""Converter options the harness gives itself: it names the files and the format."""

SIDE_WHY = "the input is a float32 tensor of 3 x height x width per image, built on the host and sent to every board"
BELOW_ZERO_WHY = "a limit below 0 fails every comparison, even of identical outputs"
NUMBER_OR_TEXT = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": NUMBER_TEXT}]}


# ---- value types of a scenario ---------------------------------------------------------------------

def _problem_at(index: int, check, value):
    try:
        return check(value)
    except Problem as problem:
        raise Problem(problem.problem, problem.fix, at=f"[{index}]{problem.at}") from None


def _list_of(value) -> list:
    if not isinstance(value, list):
        raise Problem(f"must be a list, got {type_name(value)} {shown(value)}",
                      "write it as `{key}: [a, b]` or one `- item` per line")
    return value


def check_triple(value) -> Tuple[float, float, float]:
    if isinstance(value, tuple):
        value = list(value)
    values = _list_of(value)
    if len(values) != 3:
        raise Problem(f"must list 3 numbers (one per channel), got {len(values)}",
                      "write `{key}: [a, b, c]`, in the model's channel order")
    return tuple(_problem_at(index, check_finite, item) for index, item in enumerate(values))


def _no_zero(std: Tuple[float, float, float]) -> Tuple[float, float, float]:
    if any(value == 0 for value in std):
        raise Problem("has a zero: it divides", "use 1 for channels without scaling")
    return std


def _not_zero_scale(scale: float) -> float:
    if scale == 0:
        raise Problem("is 0: every input would be zeros", "use 1/255 for 8-bit images, 1 to keep them")
    return scale


Triple = Annotated[Tuple[float, float, float], BeforeValidator(check_triple),
                   WithJsonSchema({"type": "array", "items": NUMBER_OR_TEXT, "minItems": 3, "maxItems": 3})]
"""Three numbers, one per channel, in the model's channel order."""
Std = Annotated[Triple, AfterValidator(_no_zero)]
Scale = Annotated[Number(), AfterValidator(_not_zero_scale)]


def check_converter_args(value) -> Tuple[str, ...]:
    """Converter options and their values as plain items, never the ones the harness sets itself."""
    def one(arg) -> str:
        if isinstance(arg, float):
            check_finite(arg)
        elif isinstance(arg, (dict, list)) or arg is None:
            raise Problem(f"must be a converter option or its value, got {arg!r}",
                          "list options and values as plain items: [--fp16, --weightQuantBits, 8]")
        text = check_text(str(arg))
        if text in HARNESS_SETS:
            raise Problem(f"{arg} is set by the harness", "leave it out; the harness names the files and the format")
        return text
    if isinstance(value, tuple):
        value = list(value)
    return tuple(_problem_at(index, one, arg) for index, arg in enumerate(_list_of(value)))


ConverterArgs = Annotated[Tuple[str, ...], BeforeValidator(check_converter_args),
                          WithJsonSchema({"type": "array", "items": {"type": ["string", "number"]}})]
"""Options of MNN's converter (`--fp16`, `--weightQuantBits`, `8`, ...)."""


def check_build_args(value) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise Problem("must be a mapping of option to value", "e.g. `build_args: {height: 512}`")
    for option, item in value.items():
        where = str(option)
        if not isinstance(option, str):
            raise Problem("option names must be strings", "name the script's option, e.g. `height: 512`", at=where)
        try:
            check_text(option)
            if isinstance(item, float):
                check_finite(item)  # refuses NaN and infinities
            elif isinstance(item, str):
                check_text(item)
            elif not isinstance(item, (int, bool)):
                raise Problem(f"is {type(item).__name__}; build scripts take strings and numbers", "give a plain value")
        except Problem as problem:
            raise Problem(problem.problem, problem.fix, at=where) from None
    return dict(value)


BuildArgs = Annotated[Dict[str, Any], BeforeValidator(check_build_args),
                      WithJsonSchema({"type": "object",
                                      "additionalProperties": {"type": ["string", "number", "boolean"]}})]


def unique(check, what: str = "value"):
    """A list of values each passing check, none twice."""
    def check_list(value) -> Tuple:
        if isinstance(value, tuple):
            value = list(value)
        items = [_problem_at(index, check, item) for index, item in enumerate(_list_of(value))]
        for index, item in enumerate(items):
            if items.index(item) != index:
                raise Problem(f"names {item!r} twice", f"list each {what} once", at=f"[{index}]")
        return tuple(items)
    return check_list


def _choice_of(choices):
    def check(value):
        check_text(value)
        if value not in choices:
            raise Problem(f"is {value!r}, not one of {', '.join(choices)}", "use one of those")
        return value
    return check


def _thread_count(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise Problem(f"must be an integer from 1 to {MAX_THREADS}, got {shown(value)}",
                      "list thread counts such as [1, 4]")
    return value


def _matrix_version(value) -> str:
    try:
        return check_mnn_version(value)
    except Problem:
        raise Problem(f"{value!r} is not an MNN version",
                      "list versions in quotes, e.g. [\"3.4.1\", \"3.6.1\"] (YAML reads 3.10 as 3.1)") from None


def ChoiceList(choices):
    return Annotated[Tuple[str, ...], BeforeValidator(unique(_choice_of(choices))),
                     WithJsonSchema({"type": "array", "items": {"enum": list(choices)}, "uniqueItems": True})]


def check_variants(value) -> Dict[str, Tuple[str, ...]]:
    if not isinstance(value, dict):
        raise Problem("must map a variant's name to its converter arguments",
                      "e.g. `converter: {fp32: [], fp16: [--fp16]}`")
    variants = {}
    for name, args in value.items():
        where = str(name)
        if not isinstance(name, str):
            raise Problem("a variant's name must be a string", "e.g. `fp16: [--fp16]`", at=where)
        try:
            check_name(name)  # it names a folder: reports/<matrix-id>/<setting>-<variant>
        except Problem as problem:
            raise Problem(problem.problem, problem.fix, at=where) from None
        if not isinstance(args, list):
            raise Problem("must be a list of converter arguments", "e.g. `fp16: [--fp16]`; `[]` for none", at=where)
        try:
            variants[name] = check_converter_args(args)
        except Problem as problem:
            raise Problem(problem.problem, problem.fix, at=f"{where}{problem.at}") from None
    return variants


def check_carry(value) -> Dict[str, str]:
    if not isinstance(value, dict):
        raise Problem("must map an output to the input it feeds next step", "e.g. `carry: {stateN: state}`")
    fed: Dict[str, str] = {}
    for output, target in value.items():
        if not isinstance(output, str) or not isinstance(target, str) or not output or not target:
            raise Problem(f"must map an output name to an input name, got {target!r}", "e.g. `carry: {stateN: state}`",
                          at=str(output))
        check_text(output), check_text(target)
        if target in fed:
            raise Problem(f"feeds {target!r}, which {fed[target]!r} feeds already", "carry one output into each input",
                          at=output)
        fed[target] = output
    return dict(value)


# ---- the sections -----------------------------------------------------------------------------------

@section
class ModelSection(Section):
    """Where the model comes from: exactly one of `onnx`, `tflite`, `build` (a script that writes an ONNX
    file) or `mnn` (a deployed .mnn, run as it is)."""

    onnx: Optional[FilePath()] = None
    """An ONNX file, converted to .mnn once (cached by its hash and the converter options)."""
    tflite: Optional[FilePath()] = None
    """A TFLite file, converted to .mnn once."""
    build: Optional[FilePath()] = None
    """A script run as `python SCRIPT --output OUT.onnx --key value ...` that writes an ONNX file."""
    build_args: BuildArgs = field(default_factory=dict)
    """The build script's options: `num_classes: 8` becomes `--num-classes 8`."""
    converter_args: ConverterArgs = ("--useGeluApproximation", "0")
    """Extra options of MNN's converter. The default keeps GELU exact: the converter approximates it unless told."""
    converter_version: Optional[MnnVersion] = None
    """The MNN release whose converter converts the model (default: the installed MNN's)."""
    mnn: Optional[FilePath()] = None
    """A deployed .mnn file, run as it is: no conversion, its own bytes are shipped."""
    source: Optional[FilePath()] = None
    """With `mnn`: the ONNX or TFLite file it was converted from, run only as the source reference."""

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data):
        if not isinstance(data, dict):
            return data
        sources = [key for key in ("onnx", "tflite", "build", "mnn") if key in data]
        if len(sources) != 1:
            raise Problem("needs exactly one of `onnx`, `tflite`, `build` or `mnn`"
                          + (f" (found {', '.join(sources)})" if sources else ""),
                          "give the ONNX/TFLite file, the script that builds the model, or the deployed .mnn")
        if "mnn" in data:
            for key in ("converter_args", "build_args", "converter_version"):
                if key in data:
                    raise Problem("does not apply to a deployed `mnn:` model: it is run as it is",
                                  "leave it out, or give the ONNX/TFLite file as `onnx:`/`tflite:` to convert", at=key)
        elif "source" in data:
            raise Problem("names the source of a deployed `mnn:` model",
                          "with `onnx`/`tflite` the file itself is the source; leave `source` out", at="source")
        return data

    @model_validator(mode="after")
    def _deployed_files(self) -> "ModelSection":
        if self.mnn is not None and (self.mnn.suffix.lower() != ".mnn" or not self.mnn.is_file()):
            raise Problem(f"{self.mnn.name!r} is not a .mnn file", "name the .mnn file your app ships", at="mnn")
        if self.source is not None and self.source.suffix.lower() not in (".onnx", ".tflite"):
            raise Problem(f"{self.source.name!r} is neither .onnx nor .tflite",
                          "name the ONNX or TFLite file the .mnn was converted from, or leave it out", at="source")
        return self

    def model_source(self) -> ModelSource:
        if self.mnn is not None:
            return ModelSource(mnn=self.mnn, source=self.source, converter_args=())
        return ModelSource(onnx=self.onnx, tflite=self.tflite, build_script=self.build,
                           build_args=dict(self.build_args), converter_args=self.converter_args,
                           converter_version=self.converter_version)


@section
class Resize(Section):
    """The size every image is resized to: the model's input height and width."""

    height: Integer(1, MAX_SIDE, why=SIDE_WHY)
    """Pixels."""
    width: Integer(1, MAX_SIDE, why=SIDE_WHY)
    """Pixels."""
    interpolation: Choice(*INTERPOLATIONS) = "linear"
    """OpenCV's interpolation: nearest, linear, area or cubic."""


@section
class PreprocessSection(Section):
    """How an image becomes the model's input tensor, in this order: read as BGR (OpenCV's order), convert
    colour, resize, multiply by `scale`, subtract `mean`, divide by `std`, lay out, add the batch axis."""

    resize: Resize
    """The model's input size."""
    color: Choice("rgb", "bgr") = "rgb"
    """Channel order the model wants: rgb converts from BGR, bgr keeps it."""
    scale: Annotated[Scale, Field(json_schema_extra={"default": "1/255"})] = 1.0 / 255.0
    """Multiplies the 8-bit pixel values (1/255: to 0..1; 1: keep 0..255)."""
    mean: Triple = (0.0, 0.0, 0.0)
    """Subtracted per channel, after scale."""
    std: Std = (1.0, 1.0, 1.0)
    """Divides per channel, after mean."""
    layout: Choice(*LAYOUTS) = "NCHW"
    """NCHW or NHWC."""

    def preprocess(self) -> Preprocess:
        return Preprocess(color=self.color, height=self.resize.height, width=self.resize.width,
                          interpolation=self.resize.interpolation, scale=self.scale, mean=self.mean, std=self.std,
                          layout=self.layout)


@section
class BoardPreprocess(Section):
    """What the app on the board does differently: each key replaces the scenario's own."""

    color: Optional[Choice("rgb", "bgr")] = None
    """The board's channel order (e.g. an app that feeds OpenCV's BGR as it is)."""
    interpolation: Optional[Choice(*INTERPOLATIONS)] = None
    """The board's resize interpolation."""
    scale: Optional[Scale] = None
    """The board's scale."""
    mean: Optional[Triple] = None
    """The board's mean."""
    std: Optional[Std] = None
    """The board's std."""


@section
class ParitySection(Section):
    """Preprocess on the board too and compare with the host's tensors: preprocessing drift, measured."""

    board: BoardPreprocess = BoardPreprocess()
    """How the board preprocesses (`{}`: the same as the scenario, checked)."""
    max_abs: Number(minimum=0.0) = 0.05
    """Largest tolerated difference in the normalized tensor (about 3 gray levels at std 0.229)."""


@dataclass(frozen=True)
class ParitySpec:
    """Preprocess on the board too and compare with the host's tensors (preprocessing drift)."""

    board: Preprocess
    """What the app on the board does: the scenario's preprocessing with the overrides given."""
    max_abs: float = 0.05
    """Largest tolerated difference in the normalized tensor (about 3 gray levels at std 0.229)."""


@section
class RunSettings(Section):
    """How the agent runs MNN on every target."""

    precision: Choice(*PRECISIONS) = "normal"
    """MNN's precision mode: normal, high, low (FP16 where the CPU has it, approximate kernels everywhere) or
    low_bf16."""
    threads: Integer(1, MAX_THREADS, why="more than any board has cores") = 1
    """MNN's thread count."""
    api: Choice(*APIS) = "session"
    """session (Interpreter and Session) or module (MNN.nn.load_module_from_file)."""
    io: Choice(*IO_MODES) = "copy"
    """copy is correct tensor I/O; host reads the session tensor's own buffer (the classic bug, on purpose)."""
    iterations: Integer(1, MAX_ITERATIONS) = 1
    """Timed runs of the whole model per sample."""
    warmup: Integer(0, MAX_ITERATIONS) = 0
    """Untimed runs before them."""
    backend: Choice(*BACKENDS) = "cpu"
    """The MNN backend asked for: cpu, opencl, vulkan or auto. What really ran is read on every board."""
    allow_fallback: Flag = False
    """Accept a board whose MNN falls back to the CPU from the backend asked for (else that is a failure)."""

    def as_dict(self) -> dict:
        return {"precision": self.precision, "threads": self.threads, "api": self.api, "io": self.io,
                "backend": self.backend}


@section
class StreamSpec(Section):
    """Run the samples as steps of one stream, in order, carrying outputs into the next step's inputs."""

    steps: Optional[Integer(1, MAX_SAMPLES)] = None
    """How many steps (default: one per sample the inputs give)."""
    carry: Annotated[Dict[str, str], BeforeValidator(check_carry),
                     WithJsonSchema({"type": "object", "additionalProperties": {"type": "string"}})] = \
        field(default_factory=dict)
    """Output name -> input name: fed back on the board itself, so its own drift accumulates."""


@section
class Tolerance(Section):
    """Limits an output must stay within against the reference; null (or absent) means not checked.

    Upper limits on an error statistic (max_*, mean_*, median_*, p99_*), lower
    limits on a similarity (min_*), and Polygraphy's elementwise check: every
    element must satisfy |target - reference| <= atol + rtol * |reference|.
    """

    atol: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """Elementwise: absolute part of |target - reference| <= atol + rtol * |reference|."""
    rtol: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """Elementwise: relative part (rtol alone: atol 0)."""
    max_abs: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """Largest absolute difference."""
    mean_abs: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """Mean absolute difference."""
    median_abs: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """Median absolute difference."""
    p99_abs: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """99th percentile of the absolute differences."""
    max_rel: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """Largest relative difference."""
    mean_rel: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """Mean relative difference."""
    p99_rel: Optional[Number(minimum=0.0, why=BELOW_ZERO_WHY)] = None
    """99th percentile of the relative differences."""
    min_cosine: Optional[Fraction()] = None
    """Cosine similarity of target and reference, from 0 to 1."""
    min_snr_db: Optional[Number()] = None
    """Signal-to-noise ratio of the reference against the difference, in dB: scale-free."""
    min_psnr_db: Optional[Number()] = None
    """Peak signal-to-noise ratio, in dB."""
    min_argmax_agreement: Optional[Fraction()] = None
    """Fraction (0..1) of positions whose top class must agree; class_logits outputs only."""
    min_miou: Optional[Fraction()] = None
    """Mean IoU of the two label maps (class_logits) or of the two masks (probability_map)."""
    min_decision_agreement: Optional[Fraction()] = None
    """Fraction (0..1) of elements (frames) whose decision at `threshold` must agree; decision outputs only."""
    max_hard_flips: Optional[Fraction()] = None
    """Fraction (0..1) of positions whose confident label changed; class_logits outputs only."""


UPPER_LIMITS = ("max_abs", "mean_abs", "median_abs", "p99_abs", "max_rel", "mean_rel", "p99_rel")
"""Tolerance fields that cap the metric of the same name."""
LOWER_LIMITS = {"min_cosine": "cosine", "min_snr_db": "snr_db", "min_psnr_db": "psnr_db",
                "min_argmax_agreement": "argmax_agreement", "min_miou": "miou",
                "min_decision_agreement": "decision_agreement"}
"""Tolerance fields that set a floor under a metric."""
FRACTION_LIMITS = ("min_cosine", "min_argmax_agreement", "min_miou", "max_hard_flips", "min_decision_agreement")
KIND_LIMITS = {"class_logits": ("min_argmax_agreement", "max_hard_flips"), "decision": ("min_decision_agreement",)}
"""Limits that only an output of that kind has."""
KIND_TOLERANCES = {
    "tensor": Tolerance(min_snr_db=60.0),
    "class_logits": Tolerance(min_argmax_agreement=0.999, max_hard_flips=0.0),
    "probability_map": Tolerance(min_miou=0.999),
    "decision": Tolerance(min_decision_agreement=0.999),
}
"""The limits an output of each kind gets unless the scenario says otherwise, picked from measured runs.

Measured (docs/tolerances.md): faithful runs (MNN on x86 against ONNX
Runtime / LiteRT, a Cortex-A76 at precision normal against x86) gave SNR
82-132 dB, 100% argmax agreement, mask IoU >= 99.995% and no hard flip, while
their max abs ranged from 1.7e-5 to 2.6e-3 with the output's scale; FP16
(precision low on the A76) gave SNR 30-46 dB, argmax agreement 99.6%, mask
IoU 99.56%. So a tensor is judged by a scale-free SNR floor, class logits by
their labels, probability maps by their masks and decisions by the decisions
(Silero VAD: no frame flipped, FP16 included); an absolute max_abs is the
user's to set, for outputs whose scale they know.
"""


@section
class OutputSpec(Section):
    """How one output is judged: its kind picks the metrics and the default limits."""

    kind: Choice(*OUTPUT_KINDS) = "tensor"
    """tensor, class_logits (per-position class scores), probability_map (a mask after a threshold) or
    decision (a score a threshold turns into yes/no per element: speech or not, per frame)."""
    class_axis: Integer(-MAX_AXES, MAX_AXES - 1) = 1
    """Axis of the class scores in the model's output (1 for NCHW logits)."""
    benign_margin: Number(minimum=0.0) = 0.1
    """class_logits: a flip where the reference's top-1 minus top-2 score is below this is a near-tie (benign)."""
    threshold: Number() = 0.5
    """probability_map and decision: values above it are the mask / the yes (PP-OCR's detector uses 0.3)."""
    tolerance: Tolerance = Tolerance()
    """This output's limits, over the scenario's `tolerance:` and the kind's defaults."""
    given_tolerance: SkipJsonSchema[Optional[Tolerance]] = None
    """The limits the scenario sets itself, without the kind's defaults: those of a tensor that feeds a decoded
    output (None: the same as tolerance). Set by the loader."""
    decoded_by: SkipJsonSchema[Tuple[str, ...]] = ()
    """The decoded outputs this tensor feeds: what it decodes to is judged, and decides (config/decoded.py)."""

    INTERNAL = frozenset({"given_tolerance", "decoded_by"})

    @model_validator(mode="before")
    @classmethod
    def _limits_of_its_kind(cls, data):
        if isinstance(data, dict) and isinstance(data.get("tolerance"), dict):
            kind = data.get("kind", "tensor")
            if kind not in OUTPUT_KINDS:
                return data  # the kind's own check says what is wrong with it
            for owner, names in KIND_LIMITS.items():
                for name in names:
                    if kind != owner and name in data["tolerance"]:
                        raise Problem(f"applies to {owner} outputs only", f"set `kind: {owner}` or drop the limit",
                                      at=f"tolerance.{name}")
        return data


def _check_compare(value):
    names = unique(check_text, "output")(value)
    if not names:
        raise Problem("is empty", "list the outputs to compare, or leave it out to compare all")
    return names


@section
class Matrix(Section):
    """Settings to try in every combination, each a run of its own; one table says which diverge where."""

    precision: ChoiceList(PRECISIONS) = ()
    """Precisions to try (`run.precision`'s values)."""
    threads: Annotated[Tuple[int, ...], BeforeValidator(unique(_thread_count)),
                       WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 1,
                                                                  "maximum": MAX_THREADS}})] = ()
    """Thread counts to try."""
    api: ChoiceList(APIS) = ()
    """APIs to try: session, module."""
    io: ChoiceList(IO_MODES) = ()
    """Tensor I/O to try: copy, host."""
    backend: ChoiceList(BACKENDS) = ()
    """Backends to try: cpu, opencl, vulkan, auto."""
    converter: Annotated[Dict[str, Tuple[str, ...]], BeforeValidator(check_variants),
                         WithJsonSchema({"type": "object", "additionalProperties": {"type": "array"}})] = \
        field(default_factory=dict)
    """Converter variants by name: `{fp32: [], fp16: [--fp16], w8: [--weightQuantBits, "8"]}`."""
    mnn_version: Annotated[Tuple[str, ...], BeforeValidator(unique(_matrix_version, "version")),
                           WithJsonSchema({"type": "array", "items": {"type": "string"}})] = ()
    """MNN releases (in quotes): the x86 reference and every provisioned board run each."""

    def as_dict(self) -> Dict[str, object]:
        """The dimensions given, as lists (converter: name -> arguments)."""
        matrix: Dict[str, object] = {}
        for key in ("precision", "threads", "api", "io", "backend"):
            if getattr(self, key):
                matrix[key] = list(getattr(self, key))
        if self.converter:
            matrix["converter"] = {name: list(args) for name, args in self.converter.items()}
        if self.mnn_version:
            matrix["mnn_version"] = list(self.mnn_version)
        return matrix


@section
class ScenarioFile(Section):
    """A scenario: which model, which inputs, which preprocessing, which boards, which tolerances."""

    name: Optional[Name] = None
    """A folder name under --reports and the key of the history (default: the file's name)."""
    description: Text = ""
    """One line the reports show."""
    model: ModelSection
    """Where the model comes from."""
    inputs: Inputs
    """Each model input by name and the provider that makes it, or `images: [...]` for a model with one
    image input."""
    preprocess: Optional[PreprocessSection] = None
    """How images become tensors (image inputs only)."""
    run: RunSettings = RunSettings()
    """How the agent runs MNN on every target."""
    targets: List[Text] = field(default_factory=list)
    """Boards of the inventory to run on, the reference among them."""
    tags: List[Text] = field(default_factory=list)
    """Also run on every board of the inventory that carries all of these tags."""
    reference: Text = "x86"
    """The board every other is compared with."""
    require_same_mnn: Flag = False
    """Fail a board whose MNN version differs from the reference's, whatever its numbers."""
    source_reference: Flag = True
    """Also run the ONNX/TFLite source model (ONNX Runtime / LiteRT): conversion told from platform."""
    find_layer: Flag = False
    """After a board fails, look for the first op whose output leaves tolerance there, by itself."""
    matrix: Matrix = Matrix()
    """Settings to try in every combination."""
    preprocess_parity: Optional[ParitySection] = None
    """Preprocess on the board too and compare the tensors."""
    stream: Optional[StreamSpec] = None
    """Run the samples as the steps of one stream."""
    compare: Optional[Annotated[Tuple[str, ...], BeforeValidator(_check_compare),
                                WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1})]] = None
    """The outputs to compare (default: every output of the model)."""
    mnn_version: Optional[MnnVersion] = None
    """The MNN release every MNN of the run runs, the x86 reference's and each provisioned board's (default:
    each board's own `mnn_version`, else the host's)."""
    tolerance: Tolerance = Tolerance()
    """Limits for every output, over each kind's defaults."""
    outputs: Dict[Text, OutputSpec] = field(default_factory=dict)
    """Outputs by name: their kind and limits (an output not listed is a tensor)."""
    decoded: Decoded = field(default_factory=dict)
    """What the application makes of the tensors (boxes, text, classes, points), by a name of its own, judged as it
    acts on them."""

    @model_validator(mode="after")
    def _fits_together(self) -> "ScenarioFile":
        images = [image for spec in input_specs(self.inputs) if spec.provider.is_image
                  for image in spec.provider.images]
        if images and self.preprocess is None:
            raise Problem("is missing", "add `preprocess:` under `the top level`: image inputs need it",
                          at="preprocess")
        if not images and self.preprocess is not None:
            raise Problem("applies to image inputs, and no input of this scenario is an image",
                          "leave it out, or feed an input with `image: [...]`", at="preprocess")
        if self.preprocess is not None:
            resize = self.preprocess.resize
            tensor_bytes = 3 * resize.height * resize.width * 4 * len(images)
            if tensor_bytes > MAX_INPUT_BYTES:
                raise Problem(f"{resize.height}x{resize.width} for {len(images)} image(s) makes "
                              f"{tensor_bytes / 1024 ** 2:.0f} MB of float32 input, more than "
                              f"{MAX_INPUT_BYTES // 1024 ** 2} MB: it is built in the host's memory and sent to "
                              "every board", "resize to a smaller size or use fewer images", at="preprocess.resize")
        if not self.targets and not self.tags:
            raise Problem("is missing", "name boards from the inventory (`targets: [x86, arm-a76]`) or pick them by "
                          "tag (`tags: [fp16]`)", at="targets")
        if self.model.mnn is not None and self.matrix.converter:
            raise Problem("converts the model, and a deployed `mnn:` model is run as it is",
                          "give the ONNX/TFLite file as `onnx:`/`tflite:` to try converter variants",
                          at="matrix.converter")
        if self.preprocess_parity is not None and not images:
            raise Problem("compares image preprocessing, and no input of this scenario is an image",
                          "leave it out", at="preprocess_parity")
        return self


# ---- the scenario a run uses ----------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """A scenario file, validated and resolved: what every later step reads."""

    path: Path
    name: str
    model: ModelSource
    inputs: List[InputSpec]
    """Each model input and the provider that makes it (core/build/inputs)."""
    preprocess: Optional[Preprocess]
    """How images become tensors; None when no input is an image."""
    run: RunSettings
    targets: List[str]
    reference: str
    default_tolerance: Tolerance
    """The limits of an output the scenario does not list (a tensor): its kind's defaults and `tolerance:`."""
    outputs: Dict[str, OutputSpec] = field(default_factory=dict)
    """Each listed output with its limits merged: its kind's defaults, then `tolerance:`, then its own."""
    description: str = ""
    tags: List[str] = field(default_factory=list)
    """Also run on every board of the inventory that carries all of these tags."""
    find_layer: bool = False
    """After a board fails, look for the first op whose output leaves tolerance there, by itself."""
    parity: Optional[ParitySpec] = None
    """Preprocessing parity: None, or how the board preprocesses and the tolerance."""
    matrix: Dict[str, object] = field(default_factory=dict)
    """Settings to try in every combination: precision, threads, api, io lists and converter variants."""
    source_reference: bool = True
    """Also run the ONNX source model with ONNX Runtime, to tell conversion from platform differences."""
    require_same_mnn: bool = False
    """Fail a board whose MNN version differs from the reference's, whatever its numbers."""
    stream: Optional[StreamSpec] = None
    """Run the samples as the steps of one stream (None: independent samples)."""
    compare: Optional[List[str]] = None
    """The outputs to compare (None: every output of the model)."""
    mnn_version: Optional[str] = None
    """The MNN release every MNN of the run runs: the x86 reference's and each provisioned board's (None: each
    board's own `mnn_version`, else the host's). A `mnn: system` board with another one cannot run it."""
    decoded: Dict[str, DecodedSpec] = field(default_factory=dict)
    """What the application makes of the tensors (boxes, text, classes, points), judged as it acts on them."""
    given_tolerance: Tolerance = Tolerance()
    """The scenario's own `tolerance:` without any kind's defaults."""

    def output_spec(self, name: str) -> OutputSpec:
        """How an output is judged. A plain tensor that feeds a decoded output keeps only the limits the scenario
        sets itself: what it decodes to decides, as the labels decide for class_logits (docs/tolerances.md)."""
        spec = self.outputs.get(name, OutputSpec(tolerance=self.default_tolerance,
                                                 given_tolerance=self.given_tolerance))
        feeds = tuple(decoded for decoded, entry in self.decoded.items()
                      if name in entry.sources or not entry.sources)
        if not feeds or spec.kind != "tensor":
            return spec
        return dataclasses.replace(spec, tolerance=spec.given_tolerance or spec.tolerance, decoded_by=feeds)

    @property
    def images(self) -> List[ImageRef]:
        """The images of the image input (empty when no input is an image)."""
        return [image for spec in self.inputs if spec.provider.is_image for image in spec.provider.images]

    def compared_outputs(self, model_outputs: List[str]) -> List[str]:
        return [name for name in model_outputs if self.compare is None or name in self.compare]


def load_scenario(path) -> Scenario:
    """Read and validate a scenario file; raise ConfigError naming the key and the fix."""
    path = Path(path)
    data = load_yaml(path)
    file: ScenarioFile = validate(path, data, ScenarioFile)
    raw = data or {}
    given = _given(file.tolerance, raw.get("tolerance"))
    outputs = {}
    for name, spec in file.outputs.items():
        own = _given(spec.tolerance, (raw["outputs"][name] or {}).get("tolerance"))
        outputs[name] = dataclasses.replace(spec, tolerance=_tolerance_of(spec.kind, given, own),
                                            given_tolerance=_given_only(given, own))
    preprocess = file.preprocess.preprocess() if file.preprocess is not None else None
    parity = None
    if file.preprocess_parity is not None:
        board = file.preprocess_parity.board
        overrides = {key: getattr(board, key) for key in board.keys() if getattr(board, key) is not None}
        parity = ParitySpec(board=dataclasses.replace(preprocess, **overrides), max_abs=file.preprocess_parity.max_abs)
    # The name is a folder name under --reports and a key of the history: one safe path component.
    return Scenario(path=path, name=file.name or slug(path.stem, "scenario"), model=file.model.model_source(),
                    inputs=input_specs(file.inputs), preprocess=preprocess, run=file.run, targets=list(file.targets),
                    reference=file.reference, default_tolerance=_tolerance_of("tensor", given), outputs=outputs,
                    description=file.description, tags=list(file.tags), require_same_mnn=file.require_same_mnn,
                    source_reference=file.source_reference, matrix=file.matrix.as_dict(), parity=parity,
                    find_layer=file.find_layer, stream=file.stream,
                    compare=list(file.compare) if file.compare is not None else None, mnn_version=file.mnn_version,
                    decoded={name: entry.spec(name) for name, entry in file.decoded.items()},
                    given_tolerance=_given_only(given))


def _given(tolerance: Tolerance, written) -> Dict[str, Optional[float]]:
    """The limits a tolerance section sets, as written (`null` switches a default limit off)."""
    return {name: getattr(tolerance, name) for name in (written or {})}


def _given_only(*layers: Dict[str, Optional[float]]) -> Tolerance:
    """Only the limits the layers set (a tensor that feeds a decoded output has no default floor of its own)."""
    values: Dict[str, Optional[float]] = {}
    for layer in layers:
        values.update(layer)
    if values.get("rtol") is not None and values.get("atol") is None:
        values["atol"] = 0.0
    return Tolerance(**values)


def _tolerance_of(kind: str, *layers: Dict[str, Optional[float]]) -> Tolerance:
    """The kind's default limits, overridden by each layer in turn (the scenario's, then the output's)."""
    values = {name: getattr(KIND_TOLERANCES[kind], name) for name in Tolerance.keys()}
    for layer in layers:
        values.update(layer)
    if values["rtol"] is not None and values["atol"] is None:
        values["atol"] = 0.0  # rtol alone: |a - b| <= rtol * |b|
    return Tolerance(**values)
