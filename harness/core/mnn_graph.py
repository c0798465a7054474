""".mnn files read as data: every op's name, type code and input and output tensor names.

A .mnn is a FlatBuffer (schema MNN.fbs, root table Net). MNN's Python API
lists tensor names (`MNN.expr.load_as_dict`) but not which op made which
tensor, and op names are not tensor names (tiny_segnet's op `conv1` writes the
tensor `conv1.relu`, its Relu folded in). Mapping an executed op back to the
ONNX or TFLite node it came from needs both, so this module reads the few
fields it needs straight from the bytes. FlatBuffers only ever append fields
to a table, so the slots below hold for every MNN version:

    Net: 3 oplists [Op], 4 outputName [string], 7 tensorName [string]
    Op:  0 inputIndexes [int], 1-2 main (union), 3 name, 4 outputIndexes [int], 5 type (int)
"""

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .errors import HarnessError

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


class _Reader:
    """Bounds-checked FlatBuffer access: a hostile file raises MnnFileError, never reads past the end."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path = data, path

    def fail(self, what: str) -> MnnFileError:
        return MnnFileError(f"{self.path}: not a .mnn file this harness can read ({what})")

    def u32(self, offset: int) -> int:
        if not 0 <= offset <= len(self.data) - 4:
            raise self.fail(f"offset {offset} outside the file")
        return struct.unpack_from("<I", self.data, offset)[0]

    def i32(self, offset: int) -> int:
        if not 0 <= offset <= len(self.data) - 4:
            raise self.fail(f"offset {offset} outside the file")
        return struct.unpack_from("<i", self.data, offset)[0]

    def field(self, table: int, slot: int) -> Optional[int]:
        """Absolute position of a table's field, or None when the field is absent."""
        vtable = table - self.i32(table)
        if not 0 <= vtable <= len(self.data) - 4:
            raise self.fail("a vtable outside the file")
        vtable_size = struct.unpack_from("<H", self.data, vtable)[0]
        entry = 4 + 2 * slot
        if entry + 2 > vtable_size or vtable + entry + 2 > len(self.data):
            return None
        offset = struct.unpack_from("<H", self.data, vtable + entry)[0]
        return table + offset if offset else None

    def indirect(self, position: int) -> int:
        return position + self.u32(position)

    def string(self, position: int) -> str:
        start = self.indirect(position)
        length = self.u32(start)
        if start + 4 + length > len(self.data):
            raise self.fail("a string past the end")
        return self.data[start + 4:start + 4 + length].decode("utf-8", "replace")

    def vector(self, position: int) -> tuple:
        """(first element's position, count) of the vector a field points at."""
        start = self.indirect(position)
        count = self.u32(start)
        if count > (len(self.data) - start) // 4:
            raise self.fail("a vector longer than the file")
        return start + 4, count

    def strings(self, table: int, slot: int) -> List[str]:
        position = self.field(table, slot)
        if position is None:
            return []
        first, count = self.vector(position)
        return [self.string(first + 4 * i) for i in range(count)]

    def ints(self, table: int, slot: int) -> List[int]:
        position = self.field(table, slot)
        if position is None:
            return []
        first, count = self.vector(position)
        return [self.i32(first + 4 * i) for i in range(count)]


def read_mnn_graph(path: Path) -> MnnGraph:
    """The ops of a .mnn file in file order (raises MnnFileError on a file it cannot read)."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise MnnFileError(f"{path}: {size} bytes, more than a .mnn this reader takes ({MAX_BYTES})")
    reader = _Reader(path.read_bytes(), path)
    net = reader.indirect(0)
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
