"""What every decoded verdict shares: its result, the tensors it reads per sample, and the user's decoder.

A decoded verdict reads both sides' outputs sample by sample (samples are stacked on axis 0, as every
board's outputs are), decodes each side as the application would and compares what came out. Its result
is data: passed, metrics (numbers the history keeps), failures, notes, and `record`, the record's Decoded
(record/run.py: kind, label, samples and the kind's own details) kept under the output's comparison.
"""

import importlib.util
import sys
import traceback as traceback_module
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from ...config.decoded import DecodedSpec, TensorRef, UserDecoder
from ...record.numbers import format_metric
from ...record.run import Decoded, LimitFailure

MAX_SAMPLES_KEPT = 1000
"""Samples whose decoded detail the record keeps (the metrics count every sample)."""


@dataclass
class DecodedResult:
    """One decoded output of one side against the other's."""

    name: str
    passed: bool
    metrics: Dict[str, Optional[float]] = field(default_factory=dict)
    failures: List[LimitFailure] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    record: Optional[Decoded] = None
    """What the record keeps of it: kind, label (the labels column), passed, samples, error."""
    traceback: Optional[str] = None
    """The user decoder's traceback, kept in the run folder (never in summary.json)."""


class DecodeError(Exception):
    """Decoding one side failed: the user's function raised or returned what its kind cannot judge."""

    def __init__(self, message: str, side: str, traceback_text: Optional[str] = None):
        super().__init__(message)
        self.side = side
        self.traceback_text = traceback_text


def percent(value: Optional[float]) -> str:
    return format_metric(value, "percent")


def values_of(outputs: Dict[str, np.ndarray], ref: TensorRef, sample: int) -> np.ndarray:
    """One sample's tensor as [positions, values]: the values axis last, every other axis flattened."""
    array = np.asarray(outputs[ref.output][sample], dtype=np.float64)
    if array.ndim == 0:
        array = array.reshape(1)
    array = np.moveaxis(array, ref.axis, -1)
    array = array.reshape(-1, array.shape[-1])
    if ref.values is not None:
        array = array[:, ref.values[0]:ref.values[1]]
    return array


def sample_count(outputs: Dict[str, np.ndarray], names) -> int:
    return min(len(outputs[name]) for name in names) if names else 0


# -- the user's decoder --------------------------------------------------------------------------------------

_loaded: Dict[tuple, Callable] = {}


def user_function(decoder: UserDecoder) -> Callable:
    """The user's function, its file executed once per content (a second board reuses it)."""
    stat = decoder.script.stat()
    key = (str(decoder.script), decoder.function, stat.st_mtime_ns, stat.st_size)
    if key not in _loaded:
        name = f"mnn_harness_decoder_{abs(hash(key))}"
        spec = importlib.util.spec_from_file_location(name, decoder.script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            sys.modules.pop(name, None)
        function = getattr(module, decoder.function, None)
        if not callable(function):
            raise AttributeError(f"{decoder.script.name} has no function {decoder.function!r}")
        _loaded[key] = function
    return _loaded[key]


def call_user(spec: DecodedSpec, outputs: Dict[str, np.ndarray], sample: int, side: str):
    """What the user's function returns for one sample of one side; DecodeError with the traceback if it raises.

    It gets a dict of the model's outputs for that sample, each as MNN gives it to the application (the
    model's own shape, batch axis included), and the scenario's `args` as keyword arguments.
    """
    decoder = spec.decoder
    shown = f"{decoder.script.name}:{decoder.function}"
    names = decoder.sources or tuple(outputs)
    given = {name: np.array(outputs[name][sample], copy=True) for name in names}
    try:
        return user_function(decoder)(given, **dict(decoder.args))
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001  the user's code: any error is this output's failure
        text = "".join(traceback_module.format_exception(type(error), error, error.__traceback__))
        raise DecodeError(f"{shown} raised {type(error).__name__}: {error} on {side}, sample {sample}", side,
                          f"{shown} on {side}, sample {sample}:\n{text}") from error


def failed(spec: DecodedSpec, error: DecodeError, reference_name: str) -> DecodedResult:
    """A decoder that failed: that output fails, with the reason and the traceback for the run folder."""
    where = ("the reference" if error.side == reference_name else "this board") + f" ({error.side})"
    reason = f"could not decode on {where}: {error}"
    return DecodedResult(spec.name, False, {}, [LimitFailure.check("decode", reason)], [],
                         Decoded(spec.kind, "decode failed", False, error=str(error), failed_side=error.side),
                         error.traceback_text)
