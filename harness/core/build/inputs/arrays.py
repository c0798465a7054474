"""Providers of plain arrays: saved ones (npz), seeded random ones (random) and constants (value).

    input_ids:  {npz: tokens.npz}                      # the array named input_ids, samples on axis 0
    features:   {npz: {file: batch.npz, key: x}}
    noise:      {random: {shape: [1, 16], dtype: int64, low: 0, high: 1000, seed: 1, samples: 4}}
    sr:         {value: 16000}                         # shape and type from the model
    state:      {value: {data: 0, shape: [2, 1, 128], dtype: float32}}
"""

from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
from pydantic import BeforeValidator, WithJsonSchema, field_validator, model_validator

from ...fields import FilePath, Integer, Number, Problem, Text, check_finite, section, shown, type_name
from .base import (DTYPES, MAX_ELEMENTS, MAX_INPUT_BYTES, MAX_SAMPLES, BuildContext, DType, ModelInput, Provider,
                   Samples, Shape, describe_shape, fits_dtype, input_error)


@section
class NpzInput(Provider):
    """Arrays saved with numpy: by default the one named like the input; samples on axis 0, or one sample."""

    keyword = "npz"
    SHORT_FORM = {"type": "string", "description": "the .npz file; its array named like the input"}
    file: FilePath()
    """The .npz file (numpy.savez), relative to the scenario's directory."""
    key: Optional[Text] = None
    """The array's name in the file (default: the input's name)."""

    @classmethod
    def from_short_form(cls, value):
        return {"file": value} if isinstance(value, str) else value

    @field_validator("key")
    @classmethod
    def _named(cls, key: Optional[str]) -> Optional[str]:
        if key is not None and not key:
            raise Problem("is empty", "name the array in the file, or leave `key` out")
        return key

    @property
    def path(self) -> Path:
        return self.file

    def build(self, want: ModelInput, context: BuildContext, where: str) -> Samples:
        name = self.key or want.name
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if name not in data.files:
                    raise input_error(context.scenario_path, where, f"{self.path.name} has no array {name!r}; "
                                      f"it holds {', '.join(data.files) or 'nothing'}",
                                      "name the array with `npz: {file: ..., key: NAME}`")
                array = np.asarray(data[name])
        except (OSError, ValueError) as error:
            raise input_error(context.scenario_path, where, f"cannot read {self.path} as .npz: {error}",
                              "save it with numpy.savez") from error
        rank = len(want.shape) if want.shape is not None else array.ndim - 1
        if array.ndim == rank:
            array, shared = array[np.newaxis], True
        elif array.ndim == rank + 1:
            shared = False
        else:
            raise input_error(context.scenario_path, where, f"{self.path.name}:{name} has shape "
                              f"{describe_shape(array.shape)}; the model's input {want.name!r} is "
                              f"{want.shown_shape()} (rank {rank})",
                              "store one sample of that rank, or samples stacked on a first axis")
        if len(array) > MAX_SAMPLES:
            raise input_error(context.scenario_path, where, f"{self.path.name}:{name} holds {len(array)} samples, "
                              f"more than {MAX_SAMPLES}")
        return Samples(array, shared=shared, detail=f"{self.path.name}:{name}")


@section
class RandomInput(Provider):
    """Seeded uniform values, low <= x < high; the shape and type default to the model's."""

    keyword = "random"
    shape: Optional[Shape] = None
    """One sample's shape (default: the model input's, when it is fixed)."""
    dtype: Optional[DType] = None
    """float32, int32, int64 or uint8 (default: the model input's)."""
    low: Number() = 0.0
    """The smallest value (integers: rounded up)."""
    high: Number() = 1.0
    """Values stay below it."""
    seed: Integer(0, 2 ** 63 - 1) = 0
    """The generator's seed: the same seed, the same values, on every run."""
    samples: Integer(1, MAX_SAMPLES) = 1
    """How many samples (one is shared by every sample of the other inputs)."""

    @model_validator(mode="after")
    def _a_range(self) -> "RandomInput":
        if not self.low < self.high:
            raise Problem(f"must be above low ({self.low:g}), got {self.high:g}", "give a range low < high", at="high")
        return self

    def build(self, want: ModelInput, context: BuildContext, where: str) -> Samples:
        dtype = self.dtype or want.dtype
        if dtype not in DTYPES:
            raise input_error(context.scenario_path, f"{where}.random.dtype", f"the model's input {want.name!r} is "
                              f"{dtype or 'of an unknown type'}", f"give `dtype:` (one of {', '.join(DTYPES)})")
        shape = list(self.shape) if self.shape is not None else want.fixed_shape
        if shape is None:
            raise input_error(context.scenario_path, f"{where}.random.shape", f"the model's input {want.name!r} "
                              f"has open dimensions {want.shown_shape()}", "give `shape:` for one sample")
        size = [self.samples] + shape
        total = int(np.prod(size, dtype=np.float64)) * np.dtype(dtype).itemsize
        if total > MAX_INPUT_BYTES:
            raise input_error(context.scenario_path, f"{where}.random", f"{self.samples} sample(s) of "
                              f"{describe_shape(shape)} {dtype} make {total / 1024 ** 2:,.0f} MB, more than "
                              f"{MAX_INPUT_BYTES // 1024 ** 2} MB", "use fewer samples or a smaller shape")
        rng = np.random.default_rng(self.seed)
        if np.dtype(dtype).kind == "f":
            array = rng.uniform(self.low, self.high, size=size).astype(dtype)
        else:
            low, high = int(np.ceil(self.low)), int(np.ceil(self.high))
            if not (fits_dtype(np.array([low]), dtype) and fits_dtype(np.array([high - 1]), dtype)) or low >= high:
                raise input_error(context.scenario_path, f"{where}.random", f"low {self.low:g} .. high {self.high:g} "
                                  f"holds no {dtype} values or leaves its range", f"pick a range inside {dtype}")
            array = rng.integers(low, high, size=size, dtype=dtype)
        return Samples(array, shared=self.samples == 1,
                       detail=f"uniform [{self.low:g}, {self.high:g}) seed {self.seed}, {self.samples} sample(s)")


def check_data(value, key: str = "") -> Any:
    """A number or a rectangular nested list of finite numbers."""
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            try:
                items.append(check_data(item))
            except Problem as problem:
                raise Problem(problem.problem, problem.fix, at=f"[{index}]{problem.at}") from None
        shapes = {np.shape(item) for item in items}
        if len(shapes) > 1:
            raise Problem("is not rectangular: its rows differ in length", "give every row the same length")
        if np.size(items) > MAX_ELEMENTS:
            raise Problem("is too large to write in YAML", "use `npz:` for big arrays")
        return items
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Problem(f"must be a number or a list of numbers, got {type_name(value)} {shown(value)}",
                      "write a number, or nested lists of numbers")
    if isinstance(value, int):
        return value
    return check_finite(value)


Data = Annotated[Any, BeforeValidator(check_data),
                 WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "array"}]})]
"""A number, or nested lists of numbers."""


@section
class ValueInput(Provider):
    """A constant: a number or a nested list, broadcast to `shape` (default: the model's shape when fixed)."""

    keyword = "value"
    SHORT_FORM = {"anyOf": [{"type": "number"}, {"type": "array"}],
                  "description": "the value; its shape and type the model's"}
    data: Data
    """The value: a number, or nested lists of numbers."""
    shape: Optional[Shape] = None
    """The shape to fill with it (default: the model input's, when it is fixed)."""
    dtype: Optional[DType] = None
    """float32, int32, int64 or uint8 (default: the model input's)."""

    @classmethod
    def from_short_form(cls, value):
        return {"data": value}

    def build(self, want: ModelInput, context: BuildContext, where: str) -> Samples:
        dtype = self.dtype or want.dtype
        if dtype not in DTYPES:
            raise input_error(context.scenario_path, where, f"the model's input {want.name!r} is "
                              f"{dtype or 'of an unknown type'}", f"give `dtype:` (one of {', '.join(DTYPES)})")
        data = np.array(self.data, dtype=np.float64)
        if not fits_dtype(data, dtype):
            raise input_error(context.scenario_path, where, f"{self.data!r} does not fit in {dtype}",
                              "give values the type can hold, or another `dtype:`")
        shape = list(self.shape) if self.shape is not None else (want.fixed_shape if data.ndim == 0 else None)
        if shape is None and data.ndim == 0 and want.shape is not None and want.fixed_shape is None:
            raise input_error(context.scenario_path, where, f"the model's input {want.name!r} has open dimensions "
                              f"{want.shown_shape()}", "give the shape: `value: {data: 0, shape: [...]}`")
        array = data.astype(dtype)
        if shape is not None:
            try:
                array = np.broadcast_to(array, shape).copy()
            except ValueError:
                raise input_error(context.scenario_path, where, f"a value of shape {describe_shape(data.shape)} "
                                  f"cannot fill shape {describe_shape(shape)}") from None
        return Samples(array[np.newaxis], shared=True, detail=_value_text(self.data, array))


def _value_text(data, array: np.ndarray) -> str:
    if np.ndim(data) == 0:
        return f"{data!r}" + (f" in every element of {describe_shape(array.shape)}" if array.ndim else "")
    return f"a {describe_shape(np.shape(data))} list"
