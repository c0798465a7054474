"""What every input provider shares: the model input it feeds, the samples it makes, the value types.

A provider is data (what the scenario said, checked where it entered: a
section of the scenario's schema) with one method that makes the samples.
The host builds every input once; the same bytes go to every board.
"""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
from pydantic import BeforeValidator, WithJsonSchema

from ...errors import ConfigError
from ...fields import Choice, Problem, Section, check_int, check_range, shown, type_name

DTYPES = ("float32", "int32", "int64", "uint8")
"""Input types the agent feeds (MNN's Halide types: Float, Int, Int64, Uint8)."""
MAX_SAMPLES = 10_000
"""More samples than this is a mistake (an endless loader, a wrong frame size), not a test."""
MAX_ELEMENTS = 1 << 27
"""Elements of one sample of one input (512 MB of float32): beyond, a typo in a shape."""
MAX_INPUT_BYTES = 1024 ** 3
"""All the inputs of a run together: built in the host's memory and sent to every board."""


@dataclass(frozen=True)
class ModelInput:
    """One input as the model declares it."""

    name: str
    shape: Optional[List[Optional[int]]]
    """Dimensions; None or a negative number where the model leaves one open. None: not known."""
    dtype: Optional[str]
    """numpy dtype name (the source model's when there is one), or None when not known."""

    @property
    def fixed_shape(self) -> Optional[List[int]]:
        """The shape when every dimension is fixed, else None."""
        if self.shape is None or any(d is None or d < 0 for d in self.shape):
            return None
        return [int(d) for d in self.shape]

    def shown_shape(self) -> str:
        if self.shape is None:
            return "?"
        return "[" + ", ".join("?" if d is None or d < 0 else str(d) for d in self.shape) + "]"


@dataclass
class Samples:
    """What a provider made for one input: samples stacked on axis 0."""

    arrays: np.ndarray
    shared: bool = False
    """One sample that every sample (or stream step) uses, e.g. a sample rate."""
    names: Optional[List[str]] = None
    """A name per sample (image names, frame numbers), when the provider has them."""
    detail: str = ""
    """What the samples are, in words, for the report header."""


@dataclass
class BuildContext:
    """What providers may need beyond their own settings."""

    scenario_path: Path
    preprocess: object = None
    """The scenario's image preprocessing (scenario.Preprocess), for image inputs."""
    loaded: Dict[tuple, list] = field(default_factory=dict)
    """Loader results by (script, function, args): a loader feeding several inputs runs once."""


class Provider(Section, ABC):
    """One way to make an input's samples: its settings, checked where they enter (a section of the
    scenario's `inputs.<name>`), and the method that makes the samples. Registered by `keyword`."""

    keyword: ClassVar[str]
    """The YAML key that picks this provider under `inputs.<name>`."""

    @abstractmethod
    def build(self, want: ModelInput, context: BuildContext, where: str) -> Samples:
        """Make the samples for the model input `want`; `where` is the key path for errors."""

    @property
    def is_image(self) -> bool:
        return False


# ---- value types the providers share --------------------------------------------------------------

DType = Choice(*DTYPES)
"""The input's element type; default: the model's."""


def check_shape(value) -> Tuple[int, ...]:
    """A list of positive dimensions, not too large in all ([] is a scalar)."""
    if not isinstance(value, (list, tuple)):
        raise Problem(f"must be a list of dimensions, got {type_name(value)} {shown(value)}",
                      "e.g. `shape: [1, 512]`, or `shape: []` for a scalar")
    for index, dim in enumerate(value):
        try:
            check_range(check_int(dim), 1, MAX_ELEMENTS)
        except Problem as problem:
            raise Problem(problem.problem, problem.fix, at=f"[{index}]") from None
    if math.prod(value) > MAX_ELEMENTS:
        raise Problem(f"{list(value)} makes {math.prod(value):,} elements per sample, more than {MAX_ELEMENTS:,}",
                      "check the shape")
    return tuple(value)


Shape = Annotated[Tuple[int, ...], BeforeValidator(check_shape),
                  WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 1}})]
"""One sample's dimensions ([] for a scalar)."""


def fits_dtype(values: np.ndarray, dtype: str) -> bool:
    """Every value is representable in dtype (an int64 token id in int32, a 300 in uint8, 1e40 in float32)."""
    if values.size == 0:
        return True
    if np.dtype(dtype).kind == "f":
        return bool(np.all(np.abs(values.astype(np.float64)) <= np.finfo(dtype).max))
    info = np.iinfo(dtype)
    as_float = values.astype(np.float64)
    return bool(np.all(as_float == np.round(as_float)) and as_float.min() >= info.min and as_float.max() <= info.max)


def input_error(scenario_path: Path, where: str, problem: str, fix: Optional[str] = None) -> ConfigError:
    return ConfigError(scenario_path, where, problem, fix)


def describe_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
