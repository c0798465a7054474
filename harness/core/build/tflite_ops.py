"""The custom operators of a .tflite file, read as data, and which of them MNN's converter can convert.

A TFLite model may use custom ops its own runtime registers (MediaPipe's
Landmarks2TransformMatrix, TransformLandmarks, TransformTensorBilinear). MNN
3.6.1's TFLite converter knows two (tools/converter/source/tflite/
CustomTflite.cpp): Convolution2DTransposeBias and TFLite_Detection_PostProcess;
for any other it prints "Now Only support Custom op of
'TFLite_Detection_PostProcess'" once per op and crashes with signal 11. No
converter option changes that, so a failed conversion says which ops, once.

The file is read from its bytes (schema.fbs, FlatBuffers never move a field):

    Model: 1 operator_codes [OperatorCode], 2 subgraphs [SubGraph]
    OperatorCode: 0 deprecated_builtin_code (byte), 1 custom_code (string), 3 builtin_code (int)
    SubGraph: 3 operators [Operator]          Operator: 0 opcode_index (uint)
"""

from pathlib import Path
from typing import Dict, Tuple

from ..errors import ModelError
from .flatbuffer import FlatBuffer

MODEL_OPERATOR_CODES, MODEL_SUBGRAPHS = 1, 2
CODE_DEPRECATED_BUILTIN, CODE_CUSTOM, CODE_BUILTIN = 0, 1, 3
SUBGRAPH_OPERATORS, OPERATOR_OPCODE_INDEX = 3, 0
BUILTIN_CUSTOM = 32
"""BuiltinOperator_CUSTOM."""
MNN_CONVERTS = ("Convolution2DTransposeBias", "TFLite_Detection_PostProcess")
"""The custom ops MNN's TFLite converter converts (3.6.1); every other one ends the conversion."""
MAX_BYTES = 2 << 30


def custom_ops(path: Path) -> Dict[str, int]:
    """{custom op name: how many operators use it} over every subgraph of a .tflite file, in first use order.

    Raises ModelError for a file that is not a TFLite FlatBuffer this reader understands.
    """
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise ModelError(f"{path}: larger than the {MAX_BYTES >> 30} GB a .tflite file can be")
    data = path.read_bytes()
    if data[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite model (its file identifier is not TFL3)")
    reader = FlatBuffer(data, lambda what: ModelError(f"{path}: not a TFLite model this harness can read ({what})"))
    model = reader.root()
    names = []
    for code in reader.tables(model, MODEL_OPERATOR_CODES):
        builtin = max(_value(reader, code, CODE_DEPRECATED_BUILTIN, reader.i8),
                      _value(reader, code, CODE_BUILTIN, reader.i32))
        custom = reader.field(code, CODE_CUSTOM)
        names.append(reader.string(custom) if builtin == BUILTIN_CUSTOM and custom is not None else None)
    counts: Dict[str, int] = {}
    for subgraph in reader.tables(model, MODEL_SUBGRAPHS):
        for operator in reader.tables(subgraph, SUBGRAPH_OPERATORS):
            index = _value(reader, operator, OPERATOR_OPCODE_INDEX, reader.u32)
            name = names[index] if 0 <= index < len(names) else None
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
    return counts


def _value(reader: FlatBuffer, table: int, slot: int, read) -> int:
    position = reader.field(table, slot)
    return read(position) if position is not None else 0


def unconvertible(counts: Dict[str, int]) -> Dict[str, int]:
    """The custom ops MNN's converter cannot convert, with their counts."""
    return {name: count for name, count in counts.items() if name not in MNN_CONVERTS}


def describe(counts: Dict[str, int]) -> str:
    """"Landmarks2TransformMatrix x3, TransformLandmarks x5": each op once, with how often it is used."""
    return ", ".join(f"{name} x{count}" for name, count in counts.items())


def unconvertible_note(path: Path) -> Tuple[Dict[str, int], str]:
    """(the ops MNN cannot convert, one sentence saying so) for a .tflite file; ({}, "") when there are none."""
    ops = unconvertible(custom_ops(path))
    if not ops:
        return ops, ""
    return ops, (f"custom ops MNN's converter cannot convert: {describe(ops)}. MNN converts only the custom ops "
                 f"{' and '.join(MNN_CONVERTS)}; no converter option changes that")
