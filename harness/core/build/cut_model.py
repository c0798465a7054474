"""A stretch of a .mnn cut into a standalone .mnn with MNN's own expression API, and its ops as MNN describes them.

MNN.expr.load_as_dict reads a .mnn as variables named by tensor; replacing a
variable with a placeholder of its shape, format and type (Var.replace)
makes it an input, and MNN.expr.save writes the graph from those inputs to
the named outputs: every op of the stretch exactly as the deployed file has
it (its parameters and weights), the constants it reads, nothing else.
(Writing into a loaded variable instead, Var.write, crashes MNN 3.6.1.) The
cut's ops and their parameters come from MNN's own JSON dump of it
(the converter's `-f MNN --JsonFile`), so ISSUE.md quotes MNN's field names.

MNN runs in a child Python, as for conversion (core/build/model.py): it prints on
stdout and can crash on a file it does not like.
"""

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import ModelError
from .mnn_graph import MnnFileError, read_mnn_graph

CUT_TIMEOUT_S = 300.0
ARRAY_SHOWN = 16
"""Arrays longer than this (weights, biases) are summarized in an op's parameters: count, min, max."""

_CUT_CHILD = r"""
import json, sys
import MNN
import _tools
F = MNN.expr
spec = json.loads(sys.argv[1])
types = {"float32": F.float, "int32": F.int, "int64": F.int64, "uint8": F.uint8}
variables = F.load_as_dict(spec["model"])
missing = [name for name in [e["name"] for e in spec["entries"]] + spec["computed"] + spec["outputs"]
           if name not in variables]
if missing:
    sys.stderr.write("\nCUT " + json.dumps({"missing": missing}) + "\n")
    sys.exit(0)
for name, shape in spec["model_inputs"].items():
    # A model with open dimensions (-1) knows no tensor's shape or format until its inputs have one.
    if name in variables and variables[name].op_type == "Input":
        variables[name].resize(shape)
SHAPE_OPS = ("Shape", "Size", "Rank", "Const")
def from_shapes(variable):  # the value follows from tensor shapes and constants only, never from data
    pending, seen = [variable], set()
    while pending:
        current = pending.pop()
        if current.name in seen or current.op_type in SHAPE_OPS:
            continue
        seen.add(current.name)
        inputs = current.inputs
        if not inputs or len(seen) > 10000:
            return False
        pending.extend(inputs)
    return True
computed = {}
for name in spec["computed"]:
    variable = variables[name]
    if not from_shapes(variable):
        sys.stderr.write("\nCUT " + json.dumps({"data": name}) + "\n")
        sys.exit(0)
    value = variable.read().copy()
    computed[name] = value.tolist()
    variable.replace(F.const(value, list(value.shape), variable.data_format, variable.dtype))
formats = {}
for entry in spec["entries"]:
    variable = variables[entry["name"]]
    formats[entry["name"]] = str(variable.data_format).split(".")[-1]
    placeholder = F.placeholder(entry["shape"], variable.data_format, types[entry["dtype"]])
    placeholder.name = entry["name"]
    variable.replace(placeholder)
F.save([variables[name] for name in spec["outputs"]], spec["cut"])
info = MNN.nn.load_module_from_file(spec["model"], [], []).get_info()
_tools.mnnconvert(["mnnconvert", "-f", "MNN", "--modelFile", spec["cut"], "--JsonFile", spec["json"]])
sys.stderr.write("\nCUT " + json.dumps({"formats": formats, "computed": computed,
                                         "converter_version": info.get("version"), "biz_code": info.get("bizCode")})
                 + "\n")
"""
"""The child: cut, then MNN's JSON of the cut and what the original file says of its converter."""

CONSTANT_TYPES = {11, 266}
"""MNN OpType codes (schema/default/MNN.fbs) of ops that hold values: Const, TrainableParam."""
SHAPE_TYPES = {80, 82, 66}
"""OpType Shape, Size, Rank: their outputs follow from a tensor's shape, not from its values."""
INPUT_TYPE = 34
"""OpType Input."""


class CutError(ModelError):
    """The stretch could not be cut out of the .mnn as asked (names the tensor or op and why)."""


@dataclass(frozen=True)
class CutEntry:
    """An input of the cut: a tensor of the deployed model, fed from outside (the board's values)."""

    name: str
    shape: List[int]
    dtype: str


@dataclass
class CutOp:
    """One op of the cut as MNN's JSON dump describes it (arrays summarized)."""

    name: str
    type: str
    params: dict = field(default_factory=dict)
    """main_type and main, MNN's own field names: for a convolution its `common` (kernelX, strideX, group, ...)
    and a summary of its weight."""


@dataclass
class CutModel:
    path: Path
    bytes: int
    entries: List[CutEntry]
    outputs: List[str]
    formats: Dict[str, str]
    """Each input's data format in MNN (NC4HW4 for a convolution's input, else NCHW/NHWC)."""
    ops: List[CutOp]
    """The cut's ops but its inputs and constants, in file order."""
    computed: Dict[str, list] = field(default_factory=dict)
    """Inputs of the stretch no op ran with (an Interp's size), computed by MNN from the shapes and made constants
    of the cut, with their values."""
    converter_version: Optional[str] = None
    """The MNN version that converted the deployed model (the .mnn's own word)."""
    biz_code: Optional[str] = None


def summarize(value):
    """MNN's JSON of an op with every long array (weights) replaced by its size and range."""
    if isinstance(value, dict):
        return {key: summarize(item) for key, item in value.items()}
    if isinstance(value, list) and len(value) > ARRAY_SHOWN:
        numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(value):
            return {"values": len(value), "min": min(numbers), "max": max(numbers),
                    "absmax": max(abs(v) for v in numbers)}
        return {"values": len(value)}
    if isinstance(value, list):
        return [summarize(item) for item in value]
    return value


def cut_mnn(model: Path, entries: Sequence[CutEntry], outputs: Sequence[str], stretch: Sequence[str],
            destination: Path, model_inputs: Optional[Dict[str, List[int]]] = None,
            computed: Sequence[str] = ()) -> CutModel:
    """Cut the ops that compute `outputs` from `entries` out of model into destination.

    stretch: the op names the cut must hold (besides its inputs and what only computes from constants); a
    cut holding any other op pulled in more of the model than asked (an input left out), and is refused.
    model_inputs: the shapes the model's inputs had on the board, for a model that leaves dimensions open.
    computed: inputs of the stretch that follow from shapes alone (an Interp's size): MNN computes them here and
    they become constants of the cut; one that reads data is refused.
    """
    with tempfile.TemporaryDirectory(prefix="mnn-cut-") as work:
        dump = Path(work) / "cut.json"
        spec = {"model": str(model), "entries": [e.__dict__ for e in entries], "outputs": list(outputs),
                "cut": str(destination), "json": str(dump), "model_inputs": dict(model_inputs or {}),
                "computed": list(computed)}
        try:
            completed = subprocess.run([sys.executable, "-c", _CUT_CHILD, json.dumps(spec)], capture_output=True,
                                       text=True, timeout=CUT_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as error:
            raise CutError(f"cutting {', '.join(stretch)} out of {model} did not finish in {CUT_TIMEOUT_S:.0f} s") \
                from error
        said = next((line[4:] for line in completed.stderr.splitlines() if line.startswith("CUT ")), None)
        if completed.returncode != 0 or said is None:
            tail = "\n".join("    " + line for line in (completed.stdout + completed.stderr).strip().splitlines()[-12:])
            raise CutError(f"MNN could not cut {', '.join(stretch)} out of {model} (exit {completed.returncode}):\n"
                           f"{tail}")
        facts = json.loads(said)
        if facts.get("missing"):
            raise CutError(f"{model} has no tensor named {', '.join(repr(m) for m in facts['missing'])}")
        if facts.get("data"):
            raise CutError(f"no value of {facts['data']} on the board: no op ran with it, and it depends on data, "
                           "not only on shapes")
        try:
            described = json.loads(dump.read_text())
        except (OSError, ValueError) as error:
            raise CutError(f"MNN's JSON dump of the cut {destination} cannot be read: {error}") from error
    try:
        graph = read_mnn_graph(destination)
    except MnnFileError as error:
        raise CutError(f"the cut {destination} is not a .mnn MNN's reader takes: {error}") from error
    constant = constant_tensors(graph)
    allowed = set(stretch) | {e.name for e in entries} | set(computed)
    extra = [f"{op.name} (type {op.type_code})" for op in graph.ops if op.name not in allowed
             and op.type_code not in CONSTANT_TYPES and not all(t in constant for t in op.outputs)]
    if extra:
        raise CutError(f"the cut of {', '.join(stretch)} holds ops outside it ({', '.join(extra[:5])}): an input "
                       "of the stretch was not made an input of the cut")
    ops = [CutOp(name=str(op.get("name", "")), type=str(op.get("type", "")),
                 params=summarize({"main_type": op.get("main_type"), "main": op.get("main")}))
           for op in described.get("oplists") or [] if op.get("name") in set(stretch)]
    return CutModel(path=destination, bytes=destination.stat().st_size, entries=list(entries), outputs=list(outputs),
                    formats=facts.get("formats") or {}, computed=facts.get("computed") or {}, ops=ops,
                    converter_version=facts.get("converter_version"),
                    biz_code=facts.get("biz_code"))


def shape_tensors(graph, constant: set) -> set:
    """Tensors worked out from shapes and constants only (an Interp's output size from a Shape op): no op runs with
    them, and they are the same on every machine."""
    return _closure(graph, set(constant), SHAPE_TYPES) - constant


def constant_tensors(graph) -> set:
    """Tensors computed from constants only (Const ops and what computes from nothing else, e.g. a shape)."""
    return _closure(graph, set(), CONSTANT_TYPES)


def _closure(graph, known: set, sources) -> set:
    """`known` grown by the outputs of every op of a type in `sources`, and of every op whose inputs are all known."""
    changed = True
    while changed:  # graph.ops is in file order, which is topological; a second pass settles any other order
        changed = False
        for op in graph.ops:
            if op.type_code == INPUT_TYPE or all(t in known for t in op.outputs):
                continue
            if op.type_code in sources or (op.inputs and all(t in known for t in op.inputs)):
                known.update(op.outputs)
                changed = True
    return known


def extract_source(source: Path, inputs: Dict[str, Tuple[List[int], str]], outputs: Dict[str, Tuple[List[int], str]],
                   destination: Path) -> List[str]:
    """The ONNX sub-graph from the tensors `inputs` to `outputs` (name -> (shape, dtype) as the cut has them), with
    onnx's Extractor, written to destination; returns its nodes as "name (OpType)". CutError when a name is not a
    tensor of the source (the converter renamed or fused it) or the sub-graph needs more inputs than those."""
    import numpy as np
    import onnx
    from onnx import helper
    from onnx.utils import Extractor

    try:
        model = onnx.load(str(source))
    except Exception as error:  # noqa: BLE001  onnx raises several kinds for a file it cannot read
        raise CutError(f"{source} cannot be read as ONNX: {type(error).__name__}: {error}") from error
    known = {name for node in model.graph.node for name in node.output} | {i.name for i in model.graph.input}
    strangers = [name for name in list(inputs) + list(outputs) if name not in known]
    if strangers:
        raise CutError(f"{', '.join(strangers)} {'is' if len(strangers) == 1 else 'are'} no tensor of {source.name} "
                       "(the converter named it): the op does not map back to the source exactly")
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  shapes it cannot infer are given below, from the arrays themselves
        pass
    described = {vi.name for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    for name, (shape, dtype) in {**inputs, **outputs}.items():
        if name not in described:  # the Extractor types its inputs and outputs from value_info
            model.graph.value_info.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)))
    try:
        sub = Extractor(model).extract_model(list(inputs), list(outputs))
        onnx.checker.check_model(sub)
    except Exception as error:  # noqa: BLE001  onnx's extractor raises whatever its walk meets
        raise CutError(f"the sub-graph of {source.name} from {', '.join(inputs)} to {', '.join(outputs)} cannot be "
                       f"extracted: {type(error).__name__}: {error}") from error
    graph_inputs = {i.name for i in sub.graph.input} - {i.name for i in sub.graph.initializer}
    if graph_inputs - set(inputs):
        raise CutError(f"the sub-graph of {source.name} also needs {', '.join(sorted(graph_inputs - set(inputs)))}")
    onnx.save(sub, str(destination))
    return [f"{node.name or node.output[0]} ({node.op_type})" for node in sub.graph.node]
