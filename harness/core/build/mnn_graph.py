""".mnn files read as data: every op's name, type code and input and output tensor names.

A .mnn is a FlatBuffer (schema MNN.fbs, root table Net). MNN's Python API
lists tensor names (`MNN.expr.load_as_dict`) but not which op made which
tensor, and op names are not tensor names (tiny_segnet's op `conv1` writes the
tensor `conv1.relu`, its Relu folded in). Mapping an executed op back to the
ONNX or TFLite node it came from needs both, so this module reads the few
fields it needs straight from the bytes (flatbuffer.py). FlatBuffers only ever append fields
to a table, so the slots below hold for every MNN version:

    Net: 3 oplists [Op], 4 outputName [string], 7 tensorName [string]
    Op:  0 inputIndexes [int], 1-2 main (union), 3 name, 4 outputIndexes [int], 5 type (int)
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import HarnessError
from .flatbuffer import FlatBuffer

NET_OPLISTS, NET_OUTPUT_NAME, NET_TENSOR_NAME = 3, 4, 7
OP_INPUTS, OP_NAME, OP_OUTPUTS, OP_TYPE = 0, 3, 4, 5
MAX_BYTES = 4 << 30


class MnnFileError(HarnessError):
    """The .mnn file is not a FlatBuffer this reader understands."""


@dataclass(frozen=True)
class MnnOp:
    name: str
    type_code: int
    """MNN's OpType enum value (the callbacks give the type's name)."""
    inputs: List[str]
    """Input tensor names, in the op's order."""
    outputs: List[str]


@dataclass
class MnnGraph:
    ops: List[MnnOp]
    tensor_names: List[str]
    output_names: List[str]
    by_name: Dict[str, MnnOp] = field(default_factory=dict)
    producer: Dict[str, MnnOp] = field(default_factory=dict)
    """Tensor name -> the op that writes it."""

    def __post_init__(self) -> None:
        for op in self.ops:
            self.by_name.setdefault(op.name, op)
            for output in op.outputs:
                self.producer.setdefault(output, op)

    def op(self, name: str) -> Optional[MnnOp]:
        return self.by_name.get(name)


def read_mnn_graph(path: Path) -> MnnGraph:
    """The ops of a .mnn file in file order (raises MnnFileError on a file it cannot read)."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise MnnFileError(f"{path}: {size} bytes, more than a .mnn this reader takes ({MAX_BYTES})")
    reader = FlatBuffer(path.read_bytes(),
                        lambda what: MnnFileError(f"{path}: not a .mnn file this harness can read ({what})"))
    net = reader.root()
    tensor_names = reader.strings(net, NET_TENSOR_NAME)

    def named(indexes: List[int]) -> List[str]:
        return [tensor_names[i] if 0 <= i < len(tensor_names) else f"#{i}" for i in indexes]

    ops = []
    position = reader.field(net, NET_OPLISTS)
    if position is not None:
        first, count = reader.vector(position)
        for i in range(count):
            op = reader.indirect(first + 4 * i)
            name_at = reader.field(op, OP_NAME)
            type_at = reader.field(op, OP_TYPE)
            ops.append(MnnOp(name=reader.string(name_at) if name_at is not None else "",
                             type_code=reader.i32(type_at) if type_at is not None else 0,
                             inputs=named(reader.ints(op, OP_INPUTS)), outputs=named(reader.ints(op, OP_OUTPUTS))))
    return MnnGraph(ops=ops, tensor_names=tensor_names, output_names=reader.strings(net, NET_OUTPUT_NAME))
