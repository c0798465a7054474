"""`harness inspect MODEL`: a model's inputs and outputs (names, shapes, dtypes), for ONNX, TFLite and MNN.

What a scenario's `outputs:` keys must be named, and what `preprocess` must make, read from the file itself
(signature.py reads it, as it does for every run), with what to know of a TFLite model's custom ops.
"""

from pathlib import Path
from typing import List, Tuple

from ..errors import ConfigError, ModelError
from .signature import Signature, model_format, read_signature


def resolve_model_path(value: str) -> Path:
    """A file path, or `pkg:PACKAGE/path/in/it` as scenarios write it; checked, with the fix."""
    from ..fields import Problem, package_file

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
    """The file's signature; a TFLite model's with notes on its custom ops (and a warning for those MNN's
    converter cannot convert, also when LiteRT cannot read the file)."""
    notes, warnings = custom_op_notes(path) if model_format(path) == "TFLITE" else ([], [])
    signature = read_signature(path, known=warnings)
    signature.notes += notes
    signature.warnings += warnings
    return signature


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
