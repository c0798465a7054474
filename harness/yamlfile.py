"""Reading YAML configuration with errors that name the file, the key path and the fix.

Scenarios and inventories are both validated where they enter (labgrid's
rule): a `Section` wraps one mapping, hands out typed fields and, when the
caller is done, rejects every key nobody asked for, so a typo is an error
and not a silently ignored setting.
"""

import difflib
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from .errors import ConfigError

_MISSING = object()


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a setting written twice is an error here."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"the key {key!r} appears twice (first on line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: PyYAML's own error says it
                pass
        return super().construct_mapping(node, deep=deep)


def load_yaml(path) -> Any:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found", "check the path") from None
    except OSError as error:
        raise ConfigError(path, None, f"cannot read it: {error}") from error
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise ConfigError(path, None, f"not valid YAML: {error}") from error


def type_name(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false",
            int: "an integer", float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


class Section:
    """One mapping of a YAML file, read field by field."""

    def __init__(self, file, data, path: str = ""):
        self.file = Path(file)
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(self.file, path or "(top level)",
                              f"must be a mapping of keys to values, got {type_name(data)}")
        self.data = data
        self.used = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: Optional[str], problem: str, fix: Optional[str] = None) -> ConfigError:
        return ConfigError(self.file, self.key(name) if name else (self.path or "(top level)"), problem, fix)

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default=_MISSING):
        self.used.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "is missing", f"add `{name}:` under `{self.path or 'the top level'}`")
            return default
        return self.data[name]

    def str(self, name, default=_MISSING, choices: Optional[Iterable[str]] = None) -> str:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {type_name(value)} {value!r}")
        if choices is not None and value not in choices:
            choices = list(choices)
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise self.error(name, f"is {value!r}, not one of {', '.join(choices)}", hint + "use one of those")
        return value

    def int(self, name, default=_MISSING, minimum: Optional[int] = None) -> int:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, got {type_name(value)} {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        return value

    def number(self, name, default=_MISSING) -> float:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        return self.to_number(name, value)

    def to_number(self, name, value) -> float:
        """A number, or a fraction written as "1/255" (YAML would read that as a string)."""
        if isinstance(value, str) and "/" in value:
            top, _, bottom = value.partition("/")
            try:
                return float(top) / float(bottom)
            except (ValueError, ZeroDivisionError):
                pass
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"must be a number, got {type_name(value)} {value!r}")
        return float(value)

    def bool(self, name, default=_MISSING) -> bool:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def list(self, name, default=_MISSING) -> list:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self.error(name, f"must be a list, got {type_name(value)} {value!r}",
                             f"write it as `{name}: [a, b]` or one `- item` per line")
        return value

    def str_list(self, name, default=_MISSING) -> list:
        value = self.list(name, default)
        if value is default and default is not _MISSING:
            return value
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{index}]", f"must be a string, got {type_name(item)} {item!r}")
        return value

    def section(self, name, default=_MISSING) -> "Section":
        value = self.raw(name, {} if default is not _MISSING else default)
        return Section(self.file, value, self.key(name))

    def path_value(self, name, default=_MISSING, must_exist=True) -> Optional[Path]:
        """A file path, relative to the YAML file's own directory."""
        value = self.str(name, default)
        if value is None or (value is default and default is not _MISSING):
            return value
        if value.startswith("pkg:"):
            return self._package_file(name, value)
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.file.parent / path
        if must_exist and not path.exists():
            raise self.error(name, f"file {value!r} does not exist (looked at {path})",
                             "fix the path; relative paths are taken from the YAML file's directory")
        return path

    def _package_file(self, name: str, value: str) -> Path:
        """`pkg:PACKAGE/path/in/it`: a file shipped inside an installed package (a model in a wheel)."""
        import importlib.util

        package, _, inner = value[len("pkg:"):].partition("/")
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations:
            raise self.error(name, f"the package {package!r} is not installed",
                             f"install it (`pip install {package}`; scenarios' model packages are in "
                             "`pip install -e .[model]`)")
        path = Path(list(spec.submodule_search_locations)[0]) / inner
        if not path.is_file():
            raise self.error(name, f"the package {package!r} has no file {inner!r} (looked at {path})")
        return path

    def done(self):
        """Reject keys nobody read: a typo must not pass as a setting silently ignored."""
        unknown = [key for key in self.data if key not in self.used]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), sorted(self.used), n=1)
            fix = f"did you mean `{close[0]}`?" if close else f"known keys here: {', '.join(sorted(self.used))}"
            raise self.error(str(key), "is not a known key", fix)
