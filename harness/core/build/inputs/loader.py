"""The loader provider: a Python function that yields the samples (Polygraphy's data-loader idea).

    input_ids: {loader: data.py:token_batches}
    attention_mask: {loader: {call: data.py:token_batches, args: {length: 16}, count: 8}}

The function is called once per run on the host, with `args` as keyword
arguments, and yields one sample per item: a dict of arrays by input name
(several inputs may name the same loader; it runs once), or an array for this
input alone. At most `count` items are taken (an endless generator is fine).
"""

import importlib.util
import itertools
import sys
from dataclasses import field
from pathlib import Path
from typing import Annotated, Tuple

import numpy as np
from pydantic import BeforeValidator, ValidationInfo, WithJsonSchema

from ...fields import Integer, Problem, check_text, file_base, section, shown, type_name
from .base import MAX_SAMPLES, BuildContext, ModelInput, Provider, Samples, input_error


def check_call(value, info: ValidationInfo) -> Tuple[Path, str]:
    """`script.py:function`, the script relative to the scenario's directory."""
    if isinstance(value, tuple):
        return value  # already resolved
    value = check_text(value)
    if value.count(":") != 1:
        raise Problem(f"must be `script.py:function`, got {value!r}", "name a Python file and a function in it")
    script, function = value.split(":")
    if not function.isidentifier():
        raise Problem(f"{function!r} is not a function name", "name a function defined in that file")
    path = Path(script).expanduser()
    base = file_base(info)
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file() or path.suffix != ".py":
        raise Problem(f"{script!r} is not a Python file (looked at {path})",
                      "relative paths start at the scenario's directory")
    return path, function


Call = Annotated[Tuple[Path, str], BeforeValidator(check_call),
                 WithJsonSchema({"type": "string", "pattern": r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$"})]


def check_args(value) -> dict:
    if not isinstance(value, dict) or not all(isinstance(name, str) and name.isidentifier() for name in value):
        raise Problem(f"must map argument names to values, got {type_name(value)} {shown(value)}",
                      "e.g. `args: {length: 16}`")
    return value


@section
class LoaderInput(Provider):
    """A Python function that yields the samples, called once per run on the host (Polygraphy's data loader)."""

    keyword = "loader"
    SHORT_FORM = {"type": "string", "pattern": r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
                  "description": "script.py:function"}
    call: Call
    """`script.py:function`: a generator of samples (a dict of arrays by input name, or an array)."""
    args: Annotated[dict, BeforeValidator(check_args), WithJsonSchema({"type": "object"})] = \
        field(default_factory=dict)
    """Keyword arguments of the function."""
    count: Integer(1, MAX_SAMPLES) = MAX_SAMPLES
    """At most this many items are taken (an endless generator is fine)."""

    @classmethod
    def from_short_form(cls, value):
        return {"call": value} if isinstance(value, str) else value

    @property
    def script(self) -> Path:
        return self.call[0]

    @property
    def function(self) -> str:
        return self.call[1]

    def build(self, want: ModelInput, context: BuildContext, where: str) -> Samples:
        items = self.load(context, where)
        arrays = []
        for index, item in enumerate(items):
            value = item.get(want.name) if isinstance(item, dict) else item
            if value is None:
                raise input_error(context.scenario_path, where, f"{self.script.name}:{self.function} yielded item "
                                  f"{index} without {want.name!r} (keys: {', '.join(map(str, item))})",
                                  "yield a dict with every input the loader feeds")
            array = np.asarray(value)
            if arrays and array.shape != arrays[0].shape:
                raise input_error(context.scenario_path, where, f"{self.script.name}:{self.function} yielded "
                                  f"{want.name!r} of shape {list(array.shape)} at item {index}, "
                                  f"{list(arrays[0].shape)} before", "yield samples of one shape")
            arrays.append(array)
        if not arrays:
            raise input_error(context.scenario_path, where, f"{self.script.name}:{self.function} yielded nothing")
        return Samples(np.stack(arrays), detail=f"{self.script.name}:{self.function}, {len(arrays)} sample(s)")

    def load(self, context: BuildContext, where: str) -> list:
        key = (str(self.script), self.function, repr(sorted(self.args.items())), self.count)
        if key not in context.loaded:
            context.loaded[key] = self.run_loader(context, where)
        return context.loaded[key]

    def run_loader(self, context: BuildContext, where: str) -> list:
        name = f"mnn_harness_loader_{abs(hash(str(self.script)))}"
        spec = importlib.util.spec_from_file_location(name, self.script)
        module = importlib.util.module_from_spec(spec)
        shown = f"{self.script.name}:{self.function}"
        try:
            sys.modules[name] = module
            spec.loader.exec_module(module)
            function = getattr(module, self.function, None)
            if not callable(function):
                raise input_error(context.scenario_path, where, f"{self.script.name} has no function "
                                  f"{self.function!r}", "name a function defined in that file")
            items = list(itertools.islice(function(**self.args), self.count + 1))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, ImportError, OSError,
                ArithmeticError, RuntimeError, AssertionError) as error:
            raise input_error(context.scenario_path, where, f"the loader {shown} failed: "
                              f"{type(error).__name__}: {error}", "run it by hand to see why") from error
        finally:
            sys.modules.pop(name, None)
        if len(items) > self.count:
            if self.count == MAX_SAMPLES:
                raise input_error(context.scenario_path, where, f"{shown} yields more than {MAX_SAMPLES} items",
                                  "give `count:` to take the first ones")
            items = items[: self.count]
        return items
