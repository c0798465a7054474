"""Providers of plain arrays: saved ones (npz), seeded random ones (random) and constants (value).

    input_ids:  {npz: tokens.npz}                      # the array named input_ids, samples on axis 0
    features:   {npz: {file: batch.npz, key: x}}
    noise:      {random: {shape: [1, 16], dtype: int64, low: 0, high: 1000, seed: 1, samples: 4}}
    sr:         {value: 16000}                         # shape and type from the model
    state:      {value: {data: 0, shape: [2, 1, 128], dtype: float32}}
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ...yamlfile import Section, type_name
from .base import (DTYPES, MAX_ELEMENTS, MAX_INPUT_BYTES, MAX_SAMPLES, BuildContext, ModelInput, Provider, Samples, describe_shape,
                   dtype_value, finite_number, fits_dtype, input_error, shape_value, whole_number)


@dataclass(frozen=True)
class NpzInput(Provider):
    """Arrays saved with numpy: by default the one named like the input; samples on axis 0, or one sample."""

    key = "npz"
    path: Path
    array: Optional[str] = None
    """The array's name in the file (default: the input's name)."""

    @classmethod
    def parse(cls, entry: Section) -> "NpzInput":
        value = entry.raw(cls.key)
        if isinstance(value, str):
            return cls(entry.path_value(cls.key))
        options = entry.section(cls.key)
        array = options.str("key", None)
        if array is not None and not array:
            raise options.error("key", "is empty", "name the array in the file, or leave `key` out")
        provider = cls(options.path_value("file"), array)
        options.done()
        return provider

    def build(self, want: ModelInput, context: BuildContext, where: str) -> Samples:
        name = self.array or want.name
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


@dataclass(frozen=True)
class RandomInput(Provider):
    """Seeded uniform values, low <= x < high; the shape and type default to the model's."""

    key = "random"
    shape: Optional[Tuple[int, ...]] = None
    dtype: Optional[str] = None
    low: float = 0.0
    high: float = 1.0
    seed: int = 0
    samples: int = 1

    @classmethod
    def parse(cls, entry: Section) -> "RandomInput":
        options = entry.section(cls.key)
        shape = options.raw("shape", None)
        dtype = options.raw("dtype", None)
        provider = cls(
            shape=tuple(shape_value(options, "shape", shape)) if shape is not None else None,
            dtype=dtype_value(options, "dtype", dtype) if dtype is not None else None,
            low=finite_number(options, "low", options.raw("low", 0.0)),
            high=finite_number(options, "high", options.raw("high", 1.0)),
            seed=whole_number(options, "seed", options.raw("seed", 0), 0, 2 ** 63 - 1),
            samples=whole_number(options, "samples", options.raw("samples", 1), 1, MAX_SAMPLES))
        if not provider.low < provider.high:
            raise options.error("high", f"must be above low ({provider.low:g}), got {provider.high:g}")
        options.done()
        return provider

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


@dataclass(frozen=True)
class ValueInput(Provider):
    """A constant: a number or a nested list, broadcast to `shape` (default: the model's shape when fixed)."""

    key = "value"
    data: object
    shape: Optional[Tuple[int, ...]] = None
    dtype: Optional[str] = None

    @classmethod
    def parse(cls, entry: Section) -> "ValueInput":
        value = entry.raw(cls.key)
        if not isinstance(value, dict):
            return cls(_checked_data(entry, cls.key, value))
        options = entry.section(cls.key)
        shape = options.raw("shape", None)
        dtype = options.raw("dtype", None)
        provider = cls(data=_checked_data(options, "data", options.raw("data")),
                       shape=tuple(shape_value(options, "shape", shape)) if shape is not None else None,
                       dtype=dtype_value(options, "dtype", dtype) if dtype is not None else None)
        options.done()
        return provider

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


def _checked_data(section: Section, key: str, value):
    """A number or a rectangular nested list of finite numbers."""
    if isinstance(value, list):
        items = [_checked_data(section, f"{key}[{index}]", item) for index, item in enumerate(value)]
        shapes = {np.shape(item) for item in items}
        if len(shapes) > 1:
            raise section.error(key, "is not rectangular: its rows differ in length")
        if np.size(items) > MAX_ELEMENTS:
            raise section.error(key, "is too large to write in YAML", "use `npz:` for big arrays")
        return items
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise section.error(key, f"must be a number or a list of numbers, got {type_name(value)} {value!r}")
    if isinstance(value, int):
        return value
    return finite_number(section, key, value)


def _value_text(data, array: np.ndarray) -> str:
    if np.ndim(data) == 0:
        return f"{data!r}" + (f" in every element of {describe_shape(array.shape)}" if array.ndim else "")
    return f"a {describe_shape(np.shape(data))} list"
