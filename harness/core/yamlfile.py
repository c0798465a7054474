"""Reading YAML configuration with errors that name the file, the key path and the fix.

Scenarios and inventories are both validated where they enter (labgrid's
rule): a `Section` wraps one mapping, hands out typed fields and, when the
caller is done, rejects every key nobody asked for, so a typo is an error
and not a silently ignored setting.

The rules that protect every key, present and future, live here and not key
by key: the loader reads only a regular UTF-8 file of bounded size, refuses
duplicate keys and aliases that would expand beyond a small bound (measured
on the node graph, never by expanding it), and the typed getters refuse NaN,
infinities, control characters and values outside the bounds a caller gives.
"""

import difflib
import math
import os
import re
import reprlib
import stat
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import yaml

from .errors import ConfigError

_MISSING = object()

MAX_FILE_BYTES = 1024 * 1024
"""A configuration file is a page of settings (the shipped ones are under 5 KB), not data."""
MAX_EXPANDED_VALUES = 100_000
"""Values a document may hold once its aliases are expanded: a billion-laughs file holds 10^9."""
MAX_DEPTH = 64
"""Nesting depth of mappings and lists: a scenario needs 5."""
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A name that becomes a file or folder name (scenario, board, run id, converter variant): one safe
path component, never `..`, `/` or a hidden file."""
MAX_NAME = 64
"""Longest name a user gives; a run id made of a name, a time stamp and a setting may be longer."""
SAFE_KEY = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")
"""A key name shown as it is in messages; any other is shown as its repr (an ESC must not reach the terminal)."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters other than tab and newlines: a NUL breaks every path and command, an ESC
rewrites the user's terminal."""


def describe_file_type(path) -> Optional[str]:
    """What a path that exists but is not a regular file is ("a directory", "a FIFO", ...); None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                                        (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                                        (stat.S_ISSOCK, "a socket")) if test(mode)), "not a regular file")


def name_problem(value: str, max_length: int = MAX_NAME) -> Optional[str]:
    """Why value cannot be a path component on the host, or None when it can."""
    if SAFE_NAME.fullmatch(value) and len(value) <= max_length:
        return None
    return (f"{_shown(value)} cannot be a file name: use up to {max_length} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")


def slug(text: str, fallback: str = "run") -> str:
    """text as a safe path component: runs of other characters become '-', at most 64 long."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip("._-")[:MAX_NAME].rstrip("-")
    return cleaned or fallback


def load_yaml(path) -> Any:
    """The document in path, read as a bounded regular UTF-8 file, without duplicate keys or alias bombs."""
    path = Path(path)
    text = _read_text(path)
    loader = _DepthLimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _GraphCheck(path).walk(node, "", 0)
        return loader.construct_document(node)
    except _TooDeep as error:
        raise ConfigError(path, None, f"nests more than {MAX_DEPTH} levels deep (at line {error.line})",
                          "flatten the configuration") from None
    except yaml.YAMLError as error:
        raise ConfigError(path, None, f"not valid YAML: {error}",
                          "fix the line it names (indentation, a missing `:` or bracket, a tab)") from error
    except RecursionError:  # a net: the depth limit stops composing long before Python's own
        raise ConfigError(path, None, "is nested too deeply to read",
                          f"a configuration nests at most {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


class _TooDeep(Exception):
    def __init__(self, line: int):
        super().__init__(line)
        self.line = line


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer stops at twice MAX_DEPTH: PyYAML composes recursively, so 100000
    nested brackets would otherwise take seconds to end in a RecursionError. (Up to there, the graph
    check refuses depth beyond MAX_DEPTH with the key path.)"""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > 2 * MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _read_text(path: Path) -> str:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below like any non-file.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found", "check the path") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory, not a YAML file", "give the YAML file inside it") from None
    except OSError as error:
        raise ConfigError(path, None, f"cannot read it: {error.strerror or error}",
                          "check the file's permissions") from error
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ConfigError(path, None, f"is {describe_file_type(path) or 'not a regular file'}, not a YAML file",
                          "give the path of the YAML file itself")
    with os.fdopen(descriptor, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(path, None, f"is larger than {MAX_FILE_BYTES // 1024} KB: a configuration file is a page "
                          "of settings", "check that this is the scenario, inventory or nightly file you meant")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError(path, None, f"is not UTF-8 text: byte 0x{data[error.start]:02x} at line {line}, "
                          f"column {column}", "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None


class _GraphCheck:
    """One walk over the composed nodes, each node once: the expanded size of every alias is summed from
    its parts (memoised), so a billion laughs is measured in microseconds and refused, never expanded."""

    def __init__(self, path: Path):
        self.path = path
        self.sizes: Dict[int, int] = {}
        self.open: set = set()
        self.keys = yaml.constructor.SafeConstructor()

    def error(self, key_path: str, problem: str, fix: str) -> ConfigError:
        shown = key_path if len(key_path) <= 80 else key_path[:77] + "..."
        return ConfigError(self.path, shown or "(top level)", problem, fix)

    def walk(self, node, key_path: str, depth: int) -> int:
        known = self.sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in self.open:
            raise self.error(key_path, "refers to itself through an alias (a recursive anchor)",
                             "write the value out instead of the alias")
        if depth > MAX_DEPTH:
            raise self.error(key_path, f"nests more than {MAX_DEPTH} levels deep", "flatten the configuration")
        self.open.add(id(node))
        size = 1
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                size += self.walk(item, f"{key_path}[{index}]", depth + 1)
        elif isinstance(node, yaml.MappingNode):
            seen: Dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = self._scalar_key(key_node)
                child = f"{key_path}.{key}" if key_path else str(key)
                if key is not None and key_node.tag != "tag:yaml.org,2002:merge":
                    if key in seen:
                        raise self.error(child, f"appears twice in the same mapping (lines {seen[key]} and "
                                         f"{key_node.start_mark.line + 1}); YAML would keep the last one silently",
                                         "keep one of them")
                    seen[key] = key_node.start_mark.line + 1
                size += self.walk(key_node, child, depth + 1) + self.walk(value_node, child, depth + 1)
        self.open.discard(id(node))
        if size > MAX_EXPANDED_VALUES:
            raise self.error(key_path, f"expands to more than {MAX_EXPANDED_VALUES} values through YAML aliases "
                             "(*name): an alias bomb, or a configuration far larger than any needs",
                             "write the values out, or use fewer aliases")
        self.sizes[id(node)] = size
        return size

    def _scalar_key(self, node) -> Any:
        """The key as YAML reads it (`1` and `01` are the same integer); None for a non-scalar key."""
        if not isinstance(node, yaml.ScalarNode):
            return None
        try:
            return self.keys.construct_object(node)
        except yaml.YAMLError:
            return node.value


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 60, 60, 4, 4, 2


def _shown(value) -> str:
    """value as an error message shows it: repr, cut short (a hostile value can be a megabyte)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 15:
        return f"{str(value)[:12]}... ({len(str(abs(value)))} digits)"
    if isinstance(value, float):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}.get(repr(value), f"{value:g}")
    return _REPR.repr(value)


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
                              f"must be a mapping of keys to values, got {type_name(data)}",
                              "write it as `key: value` lines (indented under its name)")
        self.data = data
        self.used = set()

    def key(self, name) -> str:
        name = str(name) if SAFE_KEY.fullmatch(str(name)) else repr(name)
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
        return self.to_str(name, value, choices)

    def to_str(self, name, value, choices: Optional[Iterable[str]] = None) -> str:
        """A string without control characters (a NUL breaks paths and commands, an ESC the terminal)."""
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {type_name(value)} {_shown(value)}",
                             "write it as text (in quotes if it looks like a number)")
        control = _CONTROL.search(value)
        if control:
            raise self.error(name, f"contains the control character {control.group()!r}",
                             "write plain text; control characters are refused in every value")
        if choices is not None and value not in choices:
            choices = list(choices)
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise self.error(name, f"is {_shown(value)}, not one of {', '.join(choices)}", hint + "use one of those")
        return value

    def name(self, key, default=_MISSING) -> str:
        """A string that becomes a file or folder name on the host: one safe path component."""
        value = self.str(key, default)
        if value is default and default is not _MISSING:
            return value
        self.check_name(key, value)
        return value

    def check_name(self, key, value: str) -> None:
        problem = name_problem(value)
        if problem:
            raise self.error(key, problem, f"rename it, e.g. `{slug(value)}`; names become folder names "
                             "under --reports, and must not reach outside it")

    def int(self, name, default=_MISSING, minimum: Optional[int] = None, maximum: Optional[int] = None,
            why: str = "") -> int:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, got {type_name(value)} {_shown(value)}",
                             "write a whole number, without quotes")
        self._check_range(name, value, minimum, maximum, None, why)
        return value

    def number(self, name, default=_MISSING, minimum: Optional[float] = None, maximum: Optional[float] = None,
               above: Optional[float] = None, why: str = "") -> float:
        """A finite number within the bounds given (minimum/maximum inclusive, above exclusive).

        NaN and infinities are refused for every key: a NaN limit makes every
        comparison pass (NaN > limit is false), a NaN timeout never expires.
        """
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        return self.to_number(name, value, minimum, maximum, above, why)

    def to_number(self, name, value, minimum: Optional[float] = None, maximum: Optional[float] = None,
                  above: Optional[float] = None, why: str = "") -> float:
        """A number, or a fraction written as "1/255" (YAML would read that as a string); finite, within bounds."""
        number = self._parse_number(name, value)
        if not math.isfinite(number):
            raise self.error(name, f"must be a finite number, got {_shown(value)}",
                             "write a finite number (YAML reads .nan as not-a-number and .inf as infinity)")
        self._check_range(name, number, minimum, maximum, above, why)
        return number

    def _parse_number(self, name, value) -> float:
        if isinstance(value, str) and "/" in value:
            top, _, bottom = value.partition("/")
            try:
                return float(top) / float(bottom)
            except (ValueError, ZeroDivisionError, OverflowError):
                pass
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"must be a number, got {type_name(value)} {_shown(value)}",
                             "write a number such as 0.001, or a fraction such as 1/255")
        try:
            return float(value)
        except OverflowError:
            return math.inf  # an integer with hundreds of digits: refused as not finite

    def _check_range(self, name, value, minimum, maximum, above, why: str) -> None:
        because = f" ({why})" if why else ""
        if above is not None and not value > above:
            raise self.error(name, f"must be more than {_shown(above)}, got {_shown(value)}{because}",
                             f"give a value above {_shown(above)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {_shown(minimum)}, got {_shown(value)}{because}",
                             f"give a value of {_shown(minimum)} or more")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {_shown(maximum)}, got {_shown(value)}{because}",
                             f"give a value of {_shown(maximum)} or less")

    def bool(self, name, default=_MISSING) -> bool:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {_shown(value)}", "write true or false")
        return value

    def list(self, name, default=_MISSING) -> list:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self.error(name, f"must be a list, got {type_name(value)} {_shown(value)}",
                             f"write it as `{name}: [a, b]` or one `- item` per line")
        return value

    def str_list(self, name, default=_MISSING) -> list:
        value = self.list(name, default)
        if value is default and default is not _MISSING:
            return value
        for index, item in enumerate(value):
            self.to_str(f"{name}[{index}]", item)
        return value

    def section(self, name, default=_MISSING) -> "Section":
        value = self.raw(name, {} if default is not _MISSING else default)
        return Section(self.file, value, self.key(name))

    def path_value(self, name, default=_MISSING, must_exist=True) -> Optional[Path]:
        """A file path, relative to the YAML file's own directory; with must_exist, an existing regular file."""
        value = self.str(name, default)
        if value is None or (value is default and default is not _MISSING):
            return value
        if value.startswith("pkg:"):
            return self._package_file(name, value)
        try:
            path = Path(value).expanduser()
        except RuntimeError as error:  # ~someone who has no home here
            raise self.error(name, f"{value!r}: {error}", "give the path without ~user") from None
        if not path.is_absolute():
            path = self.file.parent / path
        if must_exist and not path.exists():
            raise self.error(name, f"file {value!r} does not exist (looked at {path})",
                             "fix the path; relative paths are taken from the YAML file's directory")
        what = describe_file_type(path) if must_exist else None
        if what:
            raise self.error(name, f"{value!r} is {what}, not a file (looked at {path})",
                             "give the path of the file itself")
        return path

    def _package_file(self, name: str, value: str) -> Path:
        """`pkg:PACKAGE/path/in/it`: a file shipped inside an installed package (a model in a wheel)."""
        import importlib.util

        package, _, inner = value[len("pkg:"):].partition("/")
        try:
            spec = importlib.util.find_spec(package) if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", package) else None
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise self.error(name, f"the package {package!r} is not installed",
                             f"install it (`pip install {package}`; scenarios' model packages are in "
                             "`pip install 'mnn-harness[model]'`, in a clone `pip install -e .[model]`)")
        path = Path(list(spec.submodule_search_locations)[0]) / inner
        if not path.is_file():
            what = describe_file_type(path)
            raise self.error(name, f"the package {package!r} has no file {inner!r} (looked at {path}"
                             + (f", which is {what})" if what else ")"),
                             f"list the package's files (`pip show -f {package}`) and give one of them")
        return path

    def done(self):
        """Reject keys nobody read: a typo must not pass as a setting silently ignored."""
        unknown = [key for key in self.data if key not in self.used]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), sorted(self.used), n=1)
            fix = f"did you mean `{close[0]}`?" if close else f"known keys here: {', '.join(sorted(self.used))}"
            raise self.error(str(key), "is not a known key", fix)
