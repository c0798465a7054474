"""A model file's signature: its inputs and outputs (names, shapes, dtypes), read from the file, one reader per
format and one name per dtype.

ONNX is read with the onnx package. MNN and TFLite are read in a child process: MNN prints a CPU banner on this
process's stdout and LiteRT its delegate, and a broken file may crash either. A dimension the file leaves open
(symbolic in ONNX, -1 or 0 in MNN before a resize) is None; a shape the file does not declare at all is None.

What reads it: the model's preparation (names, input types and output shapes before any board runs), `harness
inspect` and `harness init` (what the file says), and the output shapes MNN works out for given inputs (the caps
on what a board may send back, build/model_shapes.py).
"""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import ConfigError, ModelError

FORMATS = {".onnx": "ONNX", ".tflite": "TFLITE", ".mnn": "MNN"}
CHILD_TIMEOUT_S = 120.0

ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
"""ONNX TensorProto element types by number, as numpy names."""

MNN_TYPES = {"float": "float32", "double": "float64", "int": "int32", "int64": "int64", "uint8": "uint8",
             "int8": "int8", "bool": "bool", "string": "string"}
"""MNN's type names as numpy names: its expression dtypes (dtype.float) and its tensors' Halide types
(Halide_Type_Float) name the same types, lower-cased without their prefix. MNN stores int64 inputs as int32."""

_MNN_CHILD = r"""
import json, sys
import MNN
path, wanted = sys.argv[1], json.loads(sys.argv[2])
info = MNN.nn.load_module_from_file(path, [], []).get_info()
interpreter = MNN.Interpreter(path)
session = interpreter.createSession({"numThread": 1})
if wanted:
    for name, shape in wanted.items():
        interpreter.resizeTensor(interpreter.getSessionInput(session, name), tuple(shape))
    interpreter.resizeSession(session)
halide = {v: n[len("Halide_Type_"):].lower() for n, v in vars(MNN).items() if n.startswith("Halide_Type_")}
def tensor_type(tensor):
    code = tensor.getDataType()
    return next((name for value, name in halide.items() if value == code), None)
inputs = interpreter.getSessionInputAll(session)
outputs = interpreter.getSessionOutputAll(session)
tensors = []
for name, var in zip(info["inputNames"], info["inputs"]):
    tensors.append({"role": "input", "name": name, "shape": list(var.shape),
                    "type": str(var.dtype).split(".")[-1]})
for name in info["outputNames"]:
    t = outputs.get(name)
    tensors.append({"role": "output", "name": name, "shape": list(t.getShape()) if t is not None else None,
                    "type": tensor_type(t) if t is not None else None})
notes = ["converted by MNN %s (bizCode %s)" % (info.get("version"), info.get("bizCode"))]
sys.stderr.write("\nSIGNATURE " + json.dumps({"tensors": tensors, "notes": notes}) + "\n")
"""
"""Names, shapes and types from MNN: the module's own word for the inputs, a session's tensors for the outputs
(resized to the given input shapes, when there are any); the answer travels on stderr, past the banner."""

_TFLITE_CHILD = r"""
import json, sys
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1])
tensors = []
for role, details in (("input", interpreter.get_input_details()), ("output", interpreter.get_output_details())):
    for d in details:
        tensors.append({"role": role, "name": d["name"], "shape": [int(s) for s in d["shape_signature"]],
                        "type": d["dtype"].__name__})
sys.stderr.write("\nSIGNATURE " + json.dumps({"tensors": tensors, "notes": []}) + "\n")
"""


@dataclass
class TensorInfo:
    role: str
    """input or output."""
    name: str
    shape: Optional[List[Optional[int]]]
    """None for a dimension the model leaves open; None as a whole when the file does not declare the rank."""
    dtype: str
    """The numpy name ("float32"), "?" when the file does not say."""


@dataclass
class Signature:
    format: str
    """ONNX, TFLITE or MNN."""
    tensors: List[TensorInfo] = field(default_factory=list)
    """Inputs, then outputs, each in the file's order."""
    notes: List[str] = field(default_factory=list)
    """What the file says of itself (opset and producer, the MNN release that converted it)."""
    warnings: List[str] = field(default_factory=list)
    """What stops the model from running under MNN as it is (custom ops its converter cannot convert)."""

    def of(self, role: str) -> List[TensorInfo]:
        return [tensor for tensor in self.tensors if tensor.role == role]

    @property
    def inputs(self) -> Dict[str, list]:
        """Input name -> shape (None for an open dimension)."""
        return {tensor.name: list(tensor.shape or []) for tensor in self.of("input")}

    @property
    def outputs(self) -> List[str]:
        return [tensor.name for tensor in self.of("output")]

    @property
    def output_shapes(self) -> Dict[str, list]:
        """Output name -> shape, for the outputs whose rank the file declares."""
        return {tensor.name: list(tensor.shape) for tensor in self.of("output") if tensor.shape is not None}

    @property
    def input_dtypes(self) -> Dict[str, str]:
        return {tensor.name: tensor.dtype for tensor in self.of("input")}


def model_format(path: Path) -> str:
    """ONNX, TFLITE or MNN by the file's suffix; ConfigError for any other."""
    suffix = Path(path).suffix
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        what = f"{suffix} is not a model format the harness reads" if suffix else \
            "has no suffix, and the harness tells a model's format by it (.onnx, .tflite or .mnn)"
        raise ConfigError(path, None, what, "give an .onnx, .tflite or .mnn file (rename a model file that has "
                          "lost its suffix)")
    return fmt


def read_signature(path: Path, known: Sequence[str] = ()) -> Signature:
    """The signature of an ONNX, TFLite or MNN file, by its suffix. known: what is already known to be wrong
    with the file, said with the error when the file cannot be read."""
    fmt = model_format(path)
    if fmt == "ONNX":
        try:
            return onnx_signature(path)
        except ImportError as error:
            raise ModelError("reading ONNX needs the onnx package: `pip install onnx`") from error
    if fmt == "TFLITE":
        return _from_child(path, fmt, [sys.executable, "-c", _TFLITE_CHILD, str(path)], known)
    return mnn_signature(path)


def onnx_signature(path: Path) -> Signature:
    """From an ONNX file, with the onnx package (ImportError when it is missing; ModelError for a broken file)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001  onnx raises several types for a broken file
        raise ModelError(f"{path} is not a readable ONNX model: {error}\n  fix: check the file, or re-export it") \
            from error
    initializers = {initializer.name for initializer in model.graph.initializer}
    signature = Signature("ONNX", notes=[f"opset {', '.join(str(o.version) for o in model.opset_import)}, "
                                         f"{len(model.graph.node)} nodes, producer {model.producer_name or '?'}"])
    for role, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if value.name in initializers:  # old exporters list weights as inputs
                continue
            tensor = value.type.tensor_type
            shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim] \
                if tensor.HasField("shape") else None
            signature.tensors.append(TensorInfo(role, value.name, shape,
                                                ONNX_TYPES.get(tensor.elem_type, f"onnx type {tensor.elem_type}")))
    return signature


def mnn_signature(path: Path, input_shapes: Optional[Dict[str, List[int]]] = None) -> Signature:
    """From a .mnn file, by MNN in a child process. input_shapes: resize the inputs first, so that the outputs'
    shapes are those for these inputs (what MNN cannot know before a resize is None)."""
    return _from_child(path, "MNN", [sys.executable, "-c", _MNN_CHILD, str(path), json.dumps(input_shapes or {})])


def _from_child(path: Path, fmt: str, argv: List[str], known: Sequence[str] = ()) -> Signature:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                                   stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        raise ModelError(f"reading {path} did not finish in {CHILD_TIMEOUT_S:.0f} s\n"
                         "  fix: run `harness inspect` on it to see where it stops") from error
    for line in completed.stderr.splitlines():
        if line.startswith("SIGNATURE "):
            data = json.loads(line[len("SIGNATURE "):])
            tensors = [TensorInfo(t["role"], t["name"],
                                  None if t["shape"] is None else [d if d > 0 else None for d in t["shape"]],
                                  _dtype(fmt, t["type"])) for t in data["tensors"]]
            return Signature(fmt, tensors, data["notes"])
    tail = "\n".join(line for line in (completed.stdout + completed.stderr).strip().splitlines()[-8:]
                     if not line.startswith("The device supports:"))
    raise ModelError(f"{'LiteRT' if fmt == 'TFLITE' else 'MNN'} could not read the inputs and outputs of {path}:\n"
                     f"{tail}\n" + "".join(f"  {line}\n" for line in known)
                     + "  fix: check the file (is it complete, and of this format?)")


def _dtype(fmt: str, name: Optional[str]) -> str:
    if name is None:
        return "?"
    return MNN_TYPES.get(name, name) if fmt == "MNN" else name
