"""The one serializer of the records: a dataclass to JSON's data and back as the same type, checked field by field.

Every record the harness keeps (summary.json, matrix.json, layers.json, bisect.json) is a tree of dataclasses
saved with to_data and loaded with from_data, in the manner of Polygraphy's RunResults: what is read back is
the type that was written, or a SchemaError naming the field that is not what the type says. A field's type
hint is its schema: float, int, str, bool, Optional[...], List[...], Tuple[...], Dict[str, ...], another
dataclass, or Any (kept as JSON has it, for what a record holds verbatim: an agent's facts, a decoder's own
sub-record).

JSON has no infinity and no NaN. Every record writes them one way: the strings "inf", "-inf" and "nan" where
a number stands (an SNR of identical outputs is "inf"; null is a number that is not there). A field whose
metadata says OMIT_EMPTY is left out of the data when it holds its default, so a record stays as small as
what it says.
"""

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, Dict, Tuple, Type, TypeVar, Union

from ..core.errors import HarnessError

T = TypeVar("T")
Number = Union[int, float]
"""A metric: a count stays an integer, a statistic a float (each reads back as what it was written as)."""

NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
"""How a record writes a number JSON cannot hold."""
OMIT_EMPTY = {"omit_empty": True}
"""Field metadata: leave the field out of the data when it holds its default (None, [], {}), which it reads back
as; a value that only looks empty ([] where the default is None) is written."""
TRANSIENT = {"transient": True}
"""Field metadata: what a live record carries and never writes (a run's arrays, its folder)."""
KEY = {"key": True}
"""Field metadata: the name the value is filed under in its parent's mapping ({"logits": {...}}): written as
that key, not again inside, and set from it when read."""


class SchemaError(HarnessError):
    """A stored record that is not what its type says: the file, the field ("boards.x86.status"), the problem."""

    def __init__(self, field: str, problem: str, file: str = ""):
        self.field, self.problem, self.file = field, problem, file
        super().__init__(": ".join(part for part in (file, field, problem) if part))

    def in_file(self, file: str) -> "SchemaError":
        return SchemaError(self.field, self.problem, file)


def _at(where: str, name: str) -> str:
    """A field's path below where ("boards" + "x86" -> "boards.x86")."""
    return f"{where}.{name}" if where else str(name)


def number_data(value: float):
    """A float as a record writes it: itself when finite, else "inf", "-inf" or "nan"."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def to_data(value: Any) -> Any:
    """A record (or any part of one) as JSON's data: dataclasses as objects, numbers JSON can hold.

    A dataclass that defines its own to_data() is written by it (it may call fields_data for the rest).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        own = getattr(value, "to_data", None)
        return own() if callable(own) else fields_data(value)
    if isinstance(value, dict):
        return {str(key): to_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return number_data(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # a numpy scalar
        return to_data(value.item())
    raise TypeError(f"a record cannot hold {type(value).__name__}: {value!r}")


def fields_data(value: Any, skip: Tuple[str, ...] = ()) -> dict:
    """A dataclass's fields as data, and its DERIVED properties for readers of the JSON (a comparison's
    "passed"); TRANSIENT fields (a live run's arrays) left out, OMIT_EMPTY ones left out when empty."""
    data = {}
    for item in dataclasses.fields(value):
        if item.name in skip or item.metadata.get("transient") or item.metadata.get("key"):
            continue
        field_value = getattr(value, item.name)
        if item.metadata.get("omit_empty") and _is_default(item, field_value):
            continue
        data[item.name] = to_data(field_value)
    for name in getattr(type(value), "DERIVED", ()):
        data[name] = to_data(getattr(value, name))
    return data


def _is_default(item: dataclasses.Field, value: Any) -> bool:
    if item.default is not dataclasses.MISSING:
        default = item.default
    elif item.default_factory is not dataclasses.MISSING:
        default = item.default_factory()
    else:
        return False
    return type(value) is type(default) and value == default


def from_data(kind: Type[T], data: Any, where: str = "") -> T:
    """data read back as kind (a type hint), every field checked; SchemaError naming the first that is wrong
    (its path below where)."""
    return _read(kind, data, where)


def load(kind: Type[T], data: Any, file: str, current: int, upgrades: Dict[int, Any]) -> T:
    """A stored record (a file's data) as its type: brought to the current schema (check_schema), then read
    field by field. A SchemaError names the file and the field."""
    try:
        data, _ = check_schema(data, current, upgrades)
        return read_fields(kind, data, "")
    except SchemaError as error:
        raise error.in_file(file) from None


def _read(kind, data, where: str):
    if kind is Any:
        return data
    origin = typing.get_origin(kind)
    arguments = typing.get_args(kind)
    if origin is typing.Union:
        options = [option for option in arguments if option is not type(None)]
        if data is None:
            if type(None) in arguments:
                return None
            raise wrong(where, data, _name(kind))
        if len(options) == 1:
            return _read(options[0], data, where)
        for option in options:
            try:
                return _read(option, data, where)
            except SchemaError:
                continue
        raise wrong(where, data, _name(kind))
    if origin in (list, typing.List):
        if not isinstance(data, list):
            raise wrong(where, data, "a list")
        (item,) = arguments or (Any,)
        return [_read(item, value, f"{where}[{index}]") for index, value in enumerate(data)]
    if origin in (tuple, typing.Tuple):
        if not isinstance(data, list):
            raise wrong(where, data, "a list")
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_read(arguments[0], value, f"{where}[{index}]") for index, value in enumerate(data))
        if len(arguments) != len(data):
            raise wrong(where, data, f"a list of {len(arguments)}")
        return tuple(_read(item, value, f"{where}[{index}]") for index, (item, value) in enumerate(zip(arguments,
                                                                                                    data)))
    if origin in (dict, typing.Dict):
        if not isinstance(data, dict):
            raise wrong(where, data, "an object")
        _, item = arguments or (str, Any)
        found = {key: _read(item, value, _at(where, key)) for key, value in data.items()}
        keyed = [f.name for f in dataclasses.fields(item) if f.metadata.get("key")] \
            if dataclasses.is_dataclass(item) else []
        for key, value in found.items():
            for name in keyed:
                object.__setattr__(value, name, key)
        return found
    if dataclasses.is_dataclass(kind):
        own = getattr(kind, "from_data", None)
        return own(data, where) if callable(own) else read_fields(kind, data, where)
    if kind is float:
        if isinstance(data, str) and data in NONFINITE:
            return NONFINITE[data]
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        raise wrong(where, data, "a number")
    if kind is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise wrong(where, data, "an integer")
    if kind is str:
        if isinstance(data, str):
            return data
        raise wrong(where, data, "a string")
    if kind is bool:
        if isinstance(data, bool):
            return data
        raise wrong(where, data, "true or false")
    if kind in (dict, list):
        if isinstance(data, kind):
            return data
        raise wrong(where, data, "an object" if kind is dict else "a list")
    raise TypeError(f"{where or 'a record'}: a record cannot hold the type {kind!r}")


def read_fields(kind, data, where: str):
    """A dataclass from its fields' data, each checked against its type hint (the generic reading, which a class
    with its own from_data() calls for what it does not read itself). Its DERIVED properties in the data are
    left to the class to compute again."""
    if not isinstance(data, dict):
        raise wrong(where, data, "an object")
    hints = typing.get_type_hints(kind)
    fields = {item.name: item for item in dataclasses.fields(kind) if item.init and not item.metadata.get("key")}
    derived = set(getattr(kind, "DERIVED", ()))
    unknown = sorted(set(data) - set(fields) - derived)
    if unknown:
        raise SchemaError(where, f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a field of "
                          f"{kind.__name__} (a record written by another version of the harness?)")
    values = {}
    for name, item in fields.items():
        if name in data:
            values[name] = _read(hints[name], data[name], _at(where, name))
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            raise SchemaError(where, f"{name} is missing")
    return kind(**values)


def wrong(where: str, data, expected: str) -> SchemaError:
    """The error of a field that holds something else than its type says."""
    shown = repr(data)
    return SchemaError(where, f"expected {expected}, found {shown if len(shown) <= 60 else shown[:57] + '...'}")


def _name(kind) -> str:
    """What a type hint expects, in words: "a number" for a metric (Number), else the type's own name."""
    options = set(typing.get_args(kind)) - {type(None)} if typing.get_origin(kind) is typing.Union else set()
    if options and options <= {int, float}:
        return "a number" + (" or null" if type(None) in typing.get_args(kind) else "")
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def check_schema(data: Any, current: int, upgrades: Dict[int, Any]) -> Tuple[dict, int]:
    """data brought to the current schema: refused when it is not an object, written by a newer harness, or
    older than any upgrade knows; else each upgrade from its schema to the next applied in turn. Returns the
    data and the schema it was written with. A record without a schema field is of schema 1."""
    if not isinstance(data, dict):
        raise wrong("", data, "an object (a record)")
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise wrong("schema", schema, "an integer")
    if schema > current:
        raise SchemaError("schema", f"is {schema}, written by a newer harness; this one reads up to {current}: "
                          "update the harness to read it")
    written = schema
    while schema < current:
        upgrade = upgrades.get(schema)
        if upgrade is None:
            raise SchemaError("schema", f"is {schema}, which this harness can no longer read (it reads "
                              f"{min(upgrades, default=current)} to {current})")
        data = upgrade(dict(data))
        schema += 1
        data["schema"] = schema
    return data, written
