"""`harness inspect MODEL`: a model's inputs and outputs (names, shapes, dtypes), for ONNX, TFLite and MNN.

What a scenario's `outputs:` keys must be named, and what `preprocess`
must make, read from the file itself. ONNX is read with the onnx package;
TFLite (LiteRT) and MNN in a child process, as both print on the process's
own stdout/stderr (MNN a CPU banner, LiteRT its delegate) and a broken file
may crash them.
"""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from .errors import ConfigError, ModelError

FORMATS = {".onnx": "ONNX", ".tflite": "TFLITE", ".mnn": "MNN"}
CHILD_TIMEOUT_S = 120.0

_CHILD = r"""
import json, sys
path, fmt = sys.argv[1], sys.argv[2]
tensors, notes = [], []
if fmt == "TFLITE":
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=path)
    for role, details in (("input", interpreter.get_input_details()), ("output", interpreter.get_output_details())):
        for d in details:
            shape = [int(s) if int(s) >= 0 else None for s in d["shape_signature"]]
            tensors.append({"role": role, "name": d["name"], "shape": shape, "dtype": d["dtype"].__name__})
else:
    import MNN
    names = {"Float": "float32", "Double": "float64", "Int": "int32", "Int64": "int64", "Uint8": "uint8",
             "Bool": "bool", "String": "string"}
    types = {n: getattr(MNN, n) for n in dir(MNN) if n.startswith("Halide_Type_")}
    def dtype(t):
        found = [n[len("Halide_Type_"):] for n, v in types.items() if v == t.getDataType()]
        return names.get(found[0], found[0].lower()) if found else "?"
    info = MNN.nn.load_module_from_file(path, [], []).get_info()
    interpreter = MNN.Interpreter(path)
    session = interpreter.createSession({})
    inputs = interpreter.getSessionInputAll(session)
    outputs = interpreter.getSessionOutputAll(session)
    for name in info["inputNames"]:
        t = inputs.get(name)
        tensors.append({"role": "input", "name": name, "shape": list(t.getShape()) if t else None,
                        "dtype": dtype(t) if t else "?"})
    for name in info["outputNames"]:
        t = outputs.get(name)
        tensors.append({"role": "output", "name": name, "shape": list(t.getShape()) if t else None,
                        "dtype": dtype(t) if t else "?"})
    notes.append("converted by MNN %s (bizCode %s)" % (info.get("version"), info.get("bizCode")))
sys.stderr.write("\nSIGNATURE " + json.dumps({"tensors": tensors, "notes": notes}) + "\n")
"""


@dataclass
class TensorInfo:
    role: str
    """input or output."""
    name: str
    shape: List[Optional[int]]
    """None for a dimension the model leaves open."""
    dtype: str


@dataclass
class Signature:
    format: str
    tensors: List[TensorInfo] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    """What stops the model from running under MNN as it is (custom ops its converter cannot convert)."""


def resolve_model_path(value: str) -> Path:
    """A file path, or `pkg:PACKAGE/path/in/it` as scenarios write it; checked, with the fix."""
    from .fields import Problem, package_file

    if value.startswith("pkg:"):
        try:
            return package_file(value)
        except Problem as problem:
            raise ConfigError("harness inspect", value, problem.problem, problem.fix) from None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(path, None, "no such model file", "give an .onnx, .tflite or .mnn file, "
                          "or pkg:PACKAGE/path/in/it for a model inside an installed package")
    return path


def inspect_model(path: Path) -> Signature:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        what = f"{path.suffix} is not a model format the harness reads" if path.suffix else \
            "has no suffix, and the harness tells a model's format by it (.onnx, .tflite or .mnn)"
        raise ConfigError(path, None, what, "give an .onnx, .tflite or .mnn file (rename a model file that has "
                          "lost its suffix)")
    if fmt == "ONNX":
        return _onnx(path)
    try:
        completed = subprocess.run([sys.executable, "-c", _CHILD, str(path), fmt], capture_output=True, text=True,
                                   timeout=CHILD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        raise ModelError(f"reading {path} did not finish in {CHILD_TIMEOUT_S:.0f} s") from error
    notes, warnings = custom_op_notes(path) if fmt == "TFLITE" else ([], [])
    for line in completed.stderr.splitlines():
        if line.startswith("SIGNATURE "):
            data = json.loads(line[len("SIGNATURE "):])
            return Signature(fmt, [TensorInfo(**t) for t in data["tensors"]], data["notes"] + notes, warnings)
    tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-8:])
    raise ModelError(f"{'LiteRT' if fmt == 'TFLITE' else 'MNN'} could not read {path}:\n{tail}\n"
                     + "".join(f"  {warning}\n" for warning in warnings)
                     + "  fix: check the file (is it complete, and of this format?)")


def custom_op_notes(path: Path) -> Tuple[List[str], List[str]]:
    """(notes, warnings) on a TFLite model's custom ops: those MNN's converter converts, and those it cannot
    (named once: no converter option helps)."""
    from .tflite_ops import MNN_CONVERTS, custom_ops, describe, unconvertible_note

    try:
        ops = custom_ops(path)
    except (ModelError, OSError):
        return [], []  # LiteRT's own reading says what is wrong with the file
    known = {name: count for name, count in ops.items() if name in MNN_CONVERTS}
    notes = [f"custom ops MNN's converter converts: {describe(known)}"] if known else []
    missing, sentence = unconvertible_note(path)
    return notes, [sentence] if missing else []


def _onnx(path: Path) -> Signature:
    try:
        import onnx
        from onnx import helper
    except ImportError as error:
        raise ModelError("reading ONNX needs the onnx package: `pip install onnx`") from error
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001  onnx raises several types for a broken file
        raise ModelError(f"{path} is not a readable ONNX model: {error}") from error
    initializers = {initializer.name for initializer in model.graph.initializer}
    signature = Signature("ONNX", notes=[f"opset {', '.join(str(o.version) for o in model.opset_import)}, "
                                         f"{len(model.graph.node)} nodes, producer {model.producer_name or '?'}"])
    for role, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if value.name in initializers:  # old exporters list weights as inputs
                continue
            tensor = value.type.tensor_type
            shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
            try:
                dtype = str(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
            except (KeyError, ValueError, TypeError):
                dtype = "?"
            signature.tensors.append(TensorInfo(role, value.name, shape, dtype))
    return signature
