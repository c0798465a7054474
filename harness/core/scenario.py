"""A scenario: which model, which inputs, which preprocessing, which boards, which tolerances.

`load_scenario(path)` reads and validates the YAML once; everything after it
works on the typed `Scenario` and never looks at the YAML again.
"""

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .build.inputs import SKIMAGE_IMAGES, ImageRef, InputSpec, parse_inputs  # noqa: F401  (re-exported)
from .build.inputs.base import MAX_SAMPLES, whole_number
from .decoded import DecodedSpec, parse_decoded
from .inventory import MNN_VERSION, mnn_version_of
from .build.model import ModelSource
from .build.preprocess import Preprocess  # noqa: F401  (re-exported: part of a Scenario)
from .yamlfile import Section, load_yaml, slug

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


@dataclass(frozen=True)
class ParitySpec:
    """Preprocess on the board too and compare with the host's tensors (preprocessing drift)."""

    board: Preprocess
    """What the app on the board does: the scenario's preprocessing with the overrides given."""
    max_abs: float = 0.05
    """Largest tolerated difference in the normalized tensor (about 3 gray levels at std 0.229)."""


@dataclass(frozen=True)
class RunSettings:
    """How the agent runs MNN on every target."""

    precision: str = "normal"
    threads: int = 1
    api: str = "session"
    io: str = "copy"
    """"copy" is correct tensor I/O; "host" reads the session tensor's own buffer (the classic bug)."""
    iterations: int = 1
    warmup: int = 0
    backend: str = "cpu"
    """The MNN backend asked for: cpu, opencl, vulkan or auto. What really ran is read on every board."""
    allow_fallback: bool = False
    """Accept a board whose MNN falls back to the CPU from the backend asked for (else that is a failure)."""

    def as_dict(self) -> dict:
        return {"precision": self.precision, "threads": self.threads, "api": self.api, "io": self.io,
                "backend": self.backend}


@dataclass(frozen=True)
class StreamSpec:
    """Run the samples as steps of one stream, in order, carrying outputs into the next step's inputs."""

    steps: Optional[int] = None
    """How many steps (None: one per sample the inputs give)."""
    carry: Dict[str, str] = field(default_factory=dict)
    """Output name -> input name: fed back on the board itself, so its own drift accumulates."""


@dataclass(frozen=True)
class Tolerance:
    """Limits an output must stay within against the reference; None means not checked.

    Upper limits on an error statistic (max_*, mean_*, median_*, p99_*), lower
    limits on a similarity (min_*), and Polygraphy's elementwise check: every
    element must satisfy |target - reference| <= atol + rtol * |reference|.
    """

    atol: Optional[float] = None
    rtol: Optional[float] = None
    max_abs: Optional[float] = None
    mean_abs: Optional[float] = None
    median_abs: Optional[float] = None
    p99_abs: Optional[float] = None
    max_rel: Optional[float] = None
    mean_rel: Optional[float] = None
    p99_rel: Optional[float] = None
    min_cosine: Optional[float] = None
    min_snr_db: Optional[float] = None
    min_psnr_db: Optional[float] = None
    min_argmax_agreement: Optional[float] = None
    """Fraction (0..1) of positions whose top class must agree; class_logits outputs only."""
    min_miou: Optional[float] = None
    """Mean IoU of the two label maps (class_logits) or of the two masks (probability_map)."""
    min_decision_agreement: Optional[float] = None
    """Fraction (0..1) of elements (frames) whose decision at `threshold` must agree; decision outputs only."""
    max_hard_flips: Optional[float] = None
    """Fraction (0..1) of positions whose confident label changed; class_logits outputs only."""


UPPER_LIMITS = ("max_abs", "mean_abs", "median_abs", "p99_abs", "max_rel", "mean_rel", "p99_rel")
"""Tolerance fields that cap the metric of the same name."""
LOWER_LIMITS = {"min_cosine": "cosine", "min_snr_db": "snr_db", "min_psnr_db": "psnr_db",
                "min_argmax_agreement": "argmax_agreement", "min_miou": "miou",
                "min_decision_agreement": "decision_agreement"}
"""Tolerance fields that set a floor under a metric."""
FRACTION_LIMITS = ("min_cosine", "min_argmax_agreement", "min_miou", "max_hard_flips", "min_decision_agreement")
KIND_TOLERANCES = {
    "tensor": Tolerance(min_snr_db=60.0),
    "class_logits": Tolerance(min_argmax_agreement=0.999, max_hard_flips=0.0),
    "probability_map": Tolerance(min_miou=0.999),
    "decision": Tolerance(min_decision_agreement=0.999),
}
"""The limits an output of each kind gets unless the scenario says otherwise, picked from measured runs.

Measured (README, "Tolerances"): faithful runs (MNN on x86 against ONNX
Runtime / LiteRT, a Cortex-A76 at precision normal against x86) gave SNR
82-132 dB, 100% argmax agreement, mask IoU >= 99.995% and no hard flip, while
their max abs ranged from 1.7e-5 to 2.6e-3 with the output's scale; FP16
(precision low on the A76) gave SNR 30-46 dB, argmax agreement 99.6%, mask
IoU 99.56%. So a tensor is judged by a scale-free SNR floor, class logits by
their labels, probability maps by their masks and decisions by the decisions
(Silero VAD: no frame flipped, FP16 included); an absolute max_abs is the
user's to set, for outputs whose scale they know.
"""


@dataclass(frozen=True)
class OutputSpec:
    kind: str = "tensor"
    """tensor, class_logits (per-position class scores), probability_map (a mask after a threshold) or
    decision (a score a threshold turns into yes/no per element: speech or not, per frame)."""
    class_axis: int = 1
    """Axis of the class scores in the model's output (1 for NCHW logits)."""
    benign_margin: float = 0.1
    """class_logits: a flip where the reference's top-1 minus top-2 score is below this is a near-tie (benign)."""
    threshold: float = 0.5
    """probability_map and decision: values above it are the mask / the yes (PP-OCR's detector uses 0.3)."""
    tolerance: Tolerance = Tolerance()
    given_tolerance: Optional[Tolerance] = None
    """The limits the scenario sets itself, without the kind's defaults: those of a tensor that feeds a decoded
    output (None: the same as tolerance)."""
    decoded_by: Tuple[str, ...] = ()
    """The decoded outputs this tensor feeds: what it decodes to is judged, and decides (core/decoded.py)."""


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    model: ModelSource
    inputs: List[InputSpec]
    """Each model input and the provider that makes it (harness/inputs)."""
    preprocess: Optional[Preprocess]
    """How images become tensors; None when no input is an image."""
    run: RunSettings
    targets: List[str]
    reference: str
    default_tolerance: Tolerance
    """The limits of an output the scenario does not list (a tensor): its kind's defaults and `tolerance:`."""
    outputs: Dict[str, OutputSpec] = field(default_factory=dict)
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
        sets itself: what it decodes to decides, as the labels decide for class_logits (README "Tolerances")."""
        spec = self.outputs.get(name, OutputSpec(tolerance=self.default_tolerance,
                                                 given_tolerance=self.given_tolerance))
        feeds = tuple(decoded for decoded, entry in self.decoded.items()
                      if name in entry.sources or not entry.sources)
        if not feeds or spec.kind != "tensor":
            return spec
        return replace(spec, tolerance=spec.given_tolerance or spec.tolerance, decoded_by=feeds)

    @property
    def images(self) -> List[ImageRef]:
        """The images of the image input (empty when no input is an image)."""
        return [image for spec in self.inputs if spec.provider.is_image for image in spec.provider.images]

    def compared_outputs(self, model_outputs: List[str]) -> List[str]:
        return [name for name in model_outputs if self.compare is None or name in self.compare]


def load_scenario(path) -> Scenario:
    """Read and validate a scenario file; raise ConfigError naming the key and the fix."""
    path = Path(path)
    top = Section(path, load_yaml(path))
    # The name is a folder name under --reports and a key of the history: one safe path component.
    name = top.name("name", None) or slug(path.stem, "scenario")
    description = top.str("description", "")
    model = _model(top.section("model"))
    inputs = parse_inputs(top.section("inputs"))
    has_image = any(spec.provider.is_image for spec in inputs)
    if has_image:
        preprocess = _preprocess(top.section("preprocess"), len([image for spec in inputs
                                                                 if spec.provider.is_image
                                                                 for image in spec.provider.images]))
    elif top.has("preprocess"):
        raise top.error("preprocess", "applies to image inputs, and no input of this scenario is an image",
                        "leave it out, or feed an input with `image: [...]`")
    else:
        preprocess = None
    run = _run(top.section("run", {}))
    targets = top.str_list("targets", [])
    tags = top.str_list("tags", [])
    if not targets and not tags:
        raise top.error("targets", "is missing", "name boards from the inventory (`targets: [x86, arm-a76]`) "
                        "or pick them by tag (`tags: [fp16]`)")
    reference = top.str("reference", "x86")
    require_same_mnn = top.bool("require_same_mnn", False)
    source_reference = top.bool("source_reference", True)
    find_layer = top.bool("find_layer", False)
    matrix = _matrix(top.section("matrix", {}))
    if model.mnn is not None and "converter" in matrix:
        raise top.error("matrix.converter", "converts the model, and a deployed `mnn:` model is run as it is",
                        "give the ONNX/TFLite file as `onnx:`/`tflite:` to try converter variants")
    if top.has("preprocess_parity") and preprocess is None:
        raise top.error("preprocess_parity", "compares image preprocessing, and no input of this scenario is an image")
    parity = _parity(top.section("preprocess_parity"), preprocess) if top.has("preprocess_parity") else None
    stream = _stream(top.section("stream")) if top.has("stream") else None
    compare = _unique_names(top, "compare") if top.has("compare") else None
    mnn_version = mnn_version_of(top, None)
    given = _tolerance_given(top.section("tolerance", {}))
    default_tolerance = _tolerance_of("tensor", given)
    outputs = {}
    outputs_section = top.section("outputs", {})
    for output_name in list(outputs_section.data):
        outputs[output_name] = _output(outputs_section.section(output_name), given)
    outputs_section.done()
    decoded = parse_decoded(top)
    top.done()
    return Scenario(path=path, name=name, model=model, inputs=inputs, preprocess=preprocess,
                    run=run, targets=targets, reference=reference,
                    default_tolerance=default_tolerance, outputs=outputs, description=description,
                    tags=tags, require_same_mnn=require_same_mnn, source_reference=source_reference,
                    matrix=matrix, parity=parity, find_layer=find_layer, stream=stream, compare=compare,
                    mnn_version=mnn_version, decoded=decoded, given_tolerance=_given_only(given))


def _given_only(*layers: Dict[str, Optional[float]]) -> Tolerance:
    """Only the limits the layers set (a tensor that feeds a decoded output has no default floor of its own)."""
    values: Dict[str, Optional[float]] = {}
    for layer in layers:
        values.update(layer)
    if values.get("rtol") is not None and values.get("atol") is None:
        values["atol"] = 0.0
    return Tolerance(**values)


def _unique_names(section: Section, key: str) -> List[str]:
    names = section.str_list(key)
    if not names:
        raise section.error(key, "is empty", "list the outputs to compare, or leave it out to compare all")
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise section.error(f"{key}[{index}]", f"names {name!r} twice")
    return names


def _stream(section: Section) -> StreamSpec:
    """stream: {steps: 62, carry: {stateN: state}}"""
    steps = section.raw("steps", None)
    carry = section.raw("carry", {})
    if not isinstance(carry, dict):
        raise section.error("carry", "must map an output to the input it feeds next step",
                            "e.g. `carry: {stateN: state}`")
    for output, fed in carry.items():
        if not isinstance(output, str) or not isinstance(fed, str) or not output or not fed:
            raise section.error(f"carry.{output}", f"must map an output name to an input name, got {fed!r}")
    fed: Dict[str, str] = {}
    for output, target in carry.items():
        if target in fed:
            raise section.error(f"carry.{output}", f"feeds {target!r}, which {fed[target]!r} feeds already",
                                "carry one output into each input")
        fed[target] = output
    spec = StreamSpec(steps=whole_number(section, "steps", steps, 1, MAX_SAMPLES) if steps is not None else None,
                      carry=dict(carry))
    section.done()
    return spec


def _model(section: Section) -> ModelSource:
    sources = [key for key in ("onnx", "tflite", "build", "mnn") if section.has(key)]
    if len(sources) != 1:
        raise section.error(None, "needs exactly one of `onnx`, `tflite`, `build` or `mnn`"
                            + (f" (found {', '.join(sources)})" if sources else ""),
                            "give the ONNX/TFLite file, the script that builds the model, or the deployed .mnn")
    if section.has("mnn"):
        return _deployed_model(section)
    if section.has("source"):
        raise section.error("source", "names the source of a deployed `mnn:` model",
                            "with `onnx`/`tflite` the file itself is the source; leave `source` out")
    converter_args = _converter_args(section, "converter_args",
                                     section.list("converter_args", ["--useGeluApproximation", "0"]))
    build_args = section.raw("build_args", {})
    if not isinstance(build_args, dict):
        raise section.error("build_args", "must be a mapping of option to value", "e.g. `build_args: {height: 512}`")
    for option, value in build_args.items():
        key = f"build_args.{option}"
        if not isinstance(option, str):
            raise section.error(key, "option names must be strings", "name the script's option, e.g. `height: 512`")
        section.to_str(key, option)
        if isinstance(value, float):
            section.to_number(key, value)  # refuses NaN and infinities
        elif isinstance(value, str):
            section.to_str(key, value)
        elif not isinstance(value, (int, bool)):
            raise section.error(key, f"is {type(value).__name__}; build scripts take strings and numbers",
                                "give a plain value")
    source = ModelSource(
        onnx=section.path_value("onnx", None),
        tflite=section.path_value("tflite", None),
        build_script=section.path_value("build", None),
        build_args=dict(build_args),
        converter_args=converter_args,
        converter_version=mnn_version_of(section, None, "converter_version"),
    )
    section.done()
    return source


def _converter_args(section: Section, key: str, args: list) -> tuple:
    for index, arg in enumerate(args):
        if isinstance(arg, float):
            section.to_number(f"{key}[{index}]", arg)
        elif isinstance(arg, (dict, list)) or arg is None:
            raise section.error(f"{key}[{index}]", f"must be a converter option or its value, got {arg!r}",
                                "list options and values as plain items: [--fp16, --weightQuantBits, 8]")
        section.to_str(f"{key}[{index}]", str(arg))
        if str(arg) in ("-f", "--framework", "--modelFile", "--MNNModel", "--bizCode"):
            raise section.error(f"{key}[{index}]", f"{arg} is set by the harness",
                                "leave it out; the harness names the files and the format")
    return tuple(str(arg) for arg in args)


def _deployed_model(section: Section) -> ModelSource:
    """model: {mnn: app/model.mnn, source: model.onnx}: the .mnn as it is, no conversion."""
    for key in ("converter_args", "build_args", "converter_version"):
        if section.has(key):
            raise section.error(key, "does not apply to a deployed `mnn:` model: it is run as it is",
                                "leave it out, or give the ONNX/TFLite file as `onnx:`/`tflite:` to convert")
    mnn = section.path_value("mnn")
    if mnn.suffix.lower() != ".mnn" or not mnn.is_file():
        raise section.error("mnn", f"{mnn.name!r} is not a .mnn file", "name the .mnn file your app ships")
    source = section.path_value("source", None)
    if source is not None and source.suffix.lower() not in (".onnx", ".tflite"):
        raise section.error("source", f"{source.name!r} is neither .onnx nor .tflite",
                            "name the ONNX or TFLite file the .mnn was converted from, or leave it out")
    section.done()
    return ModelSource(mnn=mnn, source=source, converter_args=())


def _triple(section: Section, name: str, default) -> Tuple[float, float, float]:
    values = section.list(name, list(default))
    if len(values) != 3:
        raise section.error(name, f"must list 3 numbers (one per channel), got {len(values)}",
                            f"write `{name}: [a, b, c]`, in the model's channel order")
    return tuple(section.to_number(f"{name}[{i}]", v) for i, v in enumerate(values))


def _std(section: Section, default) -> Tuple[float, float, float]:
    std = _triple(section, "std", default)
    if any(value == 0 for value in std):
        raise section.error("std", "has a zero: it divides", "use 1 for channels without scaling")
    return std


def _preprocess(section: Section, image_count: int = 1) -> Preprocess:
    resize = section.section("resize")
    why = "the input is a float32 tensor of 3 x height x width per image, " \
          "built on the host and sent to every board"
    height = resize.int("height", minimum=1, maximum=MAX_SIDE, why=why)
    width = resize.int("width", minimum=1, maximum=MAX_SIDE, why=why)
    interpolation = resize.str("interpolation", "linear", INTERPOLATIONS)
    resize.done()
    tensor_bytes = 3 * height * width * 4 * image_count
    if tensor_bytes > MAX_INPUT_BYTES:
        raise section.error("resize", f"{height}x{width} for {image_count} image(s) makes "
                            f"{tensor_bytes / 1024 ** 2:.0f} MB of float32 input, more than "
                            f"{MAX_INPUT_BYTES // 1024 ** 2} MB: it is built in the host's memory and sent to "
                            "every board", "resize to a smaller size or use fewer images")
    std = _std(section, (1.0, 1.0, 1.0))
    preprocess = Preprocess(
        color=section.str("color", "rgb", ("rgb", "bgr")),
        height=height, width=width, interpolation=interpolation,
        scale=_scale(section),
        mean=_triple(section, "mean", (0.0, 0.0, 0.0)),
        std=std,
        layout=section.str("layout", "NCHW", LAYOUTS),
    )
    section.done()
    return preprocess


def _scale(section: Section) -> float:
    scale = section.number("scale", 1.0 / 255.0)
    if scale == 0:
        raise section.error("scale", "is 0: every input would be zeros", "use 1/255 for 8-bit images, 1 to keep them")
    return scale


def _parity(section: Section, host: Preprocess) -> ParitySpec:
    """preprocess_parity: {board: {color: bgr, interpolation: nearest}, max_abs: 0.05}; {} checks the same spec."""
    board = section.section("board", {})
    overrides = {}
    if board.has("color"):
        overrides["color"] = board.str("color", None, ("rgb", "bgr"))
    if board.has("interpolation"):
        overrides["interpolation"] = board.str("interpolation", None, INTERPOLATIONS)
    if board.has("scale"):
        overrides["scale"] = _scale(board)
    if board.has("mean"):
        overrides["mean"] = _triple(board, "mean", host.mean)
    if board.has("std"):
        overrides["std"] = _std(board, host.std)
    board.done()
    spec = ParitySpec(board=replace(host, **overrides), max_abs=section.number("max_abs", 0.05, minimum=0.0))
    section.done()
    return spec


def _matrix(section: Section) -> Dict[str, object]:
    """matrix: {precision: [normal, low], threads: [1, 4], api: [session, module], io: [copy, host],
    backend: [cpu, opencl], converter: {fp32: [], fp16: [--fp16], w8: [--weightQuantBits, "8"]}}"""
    matrix: Dict[str, object] = {}
    for key, choices in (("precision", PRECISIONS), ("api", APIS), ("io", IO_MODES), ("backend", BACKENDS)):
        values = section.str_list(key, [])
        for index, value in enumerate(values):
            if value not in choices:
                raise section.error(f"{key}[{index}]", f"is {value!r}, not one of {', '.join(choices)}",
                                    "use one of those")
            if values.index(value) != index:
                raise section.error(f"{key}[{index}]", f"names {value!r} twice", "list each value once")
        if values:
            matrix[key] = values
    threads = section.list("threads", [])
    for index, value in enumerate(threads):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
            raise section.error(f"threads[{index}]", f"must be an integer from 1 to {MAX_THREADS}, got {value!r}",
                                "list thread counts such as [1, 4]")
    if threads:
        matrix["threads"] = threads
    converter = section.raw("converter", {})
    if not isinstance(converter, dict):
        raise section.error("converter", "must map a variant's name to its converter arguments",
                            "e.g. `converter: {fp32: [], fp16: [--fp16]}`")
    variants = {}
    for name, args in converter.items():
        key = f"converter.{name}"
        if not isinstance(name, str):
            raise section.error(key, "a variant's name must be a string", "e.g. `fp16: [--fp16]`")
        section.check_name(key, name)  # it names a folder: reports/<matrix-id>/<setting>-<variant>
        if not isinstance(args, list):
            raise section.error(key, "must be a list of converter arguments", "e.g. `fp16: [--fp16]`; `[]` for none")
        variants[name] = list(_converter_args(section, key, args))
    if variants:
        matrix["converter"] = variants
    versions = section.list("mnn_version", [])
    for index, value in enumerate(versions):
        if not isinstance(value, str) or not MNN_VERSION.fullmatch(value):
            raise section.error(f"mnn_version[{index}]", f"{value!r} is not an MNN version",
                                "list versions in quotes, e.g. [\"3.4.1\", \"3.6.1\"] (YAML reads 3.10 as 3.1)")
        if versions.index(value) != index:
            raise section.error(f"mnn_version[{index}]", f"names {value!r} twice", "list each version once")
    if versions:
        matrix["mnn_version"] = versions
    section.done()
    return matrix


def _run(section: Section) -> RunSettings:
    settings = RunSettings(
        precision=section.str("precision", "normal", PRECISIONS),
        threads=section.int("threads", 1, minimum=1, maximum=MAX_THREADS, why="more than any board has cores"),
        api=section.str("api", "session", APIS),
        io=section.str("io", "copy", IO_MODES),
        iterations=section.int("iterations", 1, minimum=1, maximum=MAX_ITERATIONS),
        warmup=section.int("warmup", 0, minimum=0, maximum=MAX_ITERATIONS),
        backend=section.str("backend", "cpu", BACKENDS),
        allow_fallback=section.bool("allow_fallback", False),
    )
    section.done()
    return settings


def _tolerance_given(section: Section) -> Dict[str, Optional[float]]:
    """The limits a tolerance section sets; `null` switches a default limit off."""
    values: Dict[str, Optional[float]] = {}
    for name in Tolerance.__dataclass_fields__:
        if not section.has(name):
            continue
        if section.raw(name) is None:
            values[name] = None
        elif name.endswith("_db"):
            values[name] = section.number(name)  # a floor in dB may be below 0
        else:
            values[name] = section.number(name, minimum=0.0,
                                          why="a limit below 0 fails every comparison, even of identical outputs")
        if name in FRACTION_LIMITS and values[name] is not None and values[name] > 1.0:
            raise section.error(name, f"must be between 0 and 1, got {values[name]:g}",
                                "write agreement as a fraction: 0.999 means 99.9%")
    section.done()
    return values


def _tolerance_of(kind: str, *layers: Dict[str, Optional[float]]) -> Tolerance:
    """The kind's default limits, overridden by each layer in turn (the scenario's, then the output's)."""
    values = {name: getattr(KIND_TOLERANCES[kind], name) for name in Tolerance.__dataclass_fields__}
    for layer in layers:
        values.update(layer)
    if values["rtol"] is not None and values["atol"] is None:
        values["atol"] = 0.0  # rtol alone: |a - b| <= rtol * |b|
    return Tolerance(**values)


def _output(section: Section, given: Dict[str, Optional[float]]) -> OutputSpec:
    kind = section.str("kind", "tensor", OUTPUT_KINDS)
    own_given = _tolerance_given(section.section("tolerance", {}))
    spec = OutputSpec(
        kind=kind,
        class_axis=section.int("class_axis", 1, minimum=-MAX_AXES, maximum=MAX_AXES - 1),
        benign_margin=section.number("benign_margin", 0.1, minimum=0.0),
        threshold=section.number("threshold", 0.5),
        tolerance=_tolerance_of(kind, given, own_given),
        given_tolerance=_given_only(given, own_given),
    )
    own = section.data.get("tolerance") or {}
    for name in ("min_argmax_agreement", "max_hard_flips"):
        if spec.kind != "class_logits" and name in own:
            raise section.error(f"tolerance.{name}", "applies to class_logits outputs only",
                                "set `kind: class_logits` or drop the limit")
    if spec.kind != "decision" and "min_decision_agreement" in own:
        raise section.error("tolerance.min_decision_agreement", "applies to decision outputs only",
                            "set `kind: decision` or drop the limit")
    if not math.isfinite(spec.threshold) or not math.isfinite(spec.benign_margin):
        raise section.error("threshold" if not math.isfinite(spec.threshold) else "benign_margin",
                            "must be a finite number")
    section.done()
    return spec
