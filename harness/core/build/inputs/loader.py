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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...yamlfile import Section, type_name
from .base import MAX_SAMPLES, BuildContext, ModelInput, Provider, Samples, input_error, whole_number


@dataclass(frozen=True)
class LoaderInput(Provider):
    key = "loader"
    script: Path
    function: str
    args: tuple = field(default_factory=tuple)
    """Keyword arguments as sorted (name, value) pairs (hashable: one call per loader and arguments)."""
    count: int = MAX_SAMPLES

    @classmethod
    def parse(cls, entry: Section) -> "LoaderInput":
        value = entry.raw(cls.key)
        if isinstance(value, str):
            return cls(*_target(entry, cls.key, value))
        options = entry.section(cls.key)
        script, function = _target(options, "call", options.str("call"))
        args = options.raw("args", {})
        if not isinstance(args, dict) or not all(isinstance(name, str) and name.isidentifier() for name in args):
            raise options.error("args", f"must map argument names to values, got {type_name(args)} {args!r}")
        count = whole_number(options, "count", options.raw("count", MAX_SAMPLES), 1, MAX_SAMPLES)
        options.done()
        return cls(script, function, tuple(sorted(args.items(), key=lambda item: item[0])), count)

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
        key = (str(self.script), self.function, self.args, self.count)
        if key not in context.loaded:
            context.loaded[key] = self.call(context, where)
        return context.loaded[key]

    def call(self, context: BuildContext, where: str) -> list:
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
            items = list(itertools.islice(function(**dict(self.args)), self.count + 1))
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


def _target(section: Section, key: str, value: str):
    if not isinstance(value, str) or value.count(":") != 1:
        raise section.error(key, f"must be `script.py:function`, got {value!r}")
    script, function = value.split(":")
    if not function.isidentifier():
        raise section.error(key, f"{function!r} is not a function name")
    path = Path(script).expanduser()
    if not path.is_absolute():
        path = section.file.parent / path
    if not path.is_file() or path.suffix != ".py":
        raise section.error(key, f"{script!r} is not a Python file (looked at {path})",
                            "relative paths start at the scenario's directory")
    return path, function
