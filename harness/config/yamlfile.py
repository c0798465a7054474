"""Reading a YAML configuration file, whatever it holds, without being hurt by it.

The loader reads only a regular UTF-8 file of bounded size (a FIFO, a device
or a directory is refused without being opened for long), refuses duplicate
keys (YAML would keep the last one silently) and aliases that would expand
beyond a small bound (measured on the node graph, never by expanding it), and
bounds the nesting. What the document then says is checked against its schema
(config/validation.py): these rules protect every file and every key, present
and future, before any schema sees them.
"""

import os
import stat
from pathlib import Path
from typing import Any, Dict

import yaml

from ..core.errors import ConfigError
from ..core.fields import describe_file_type

MAX_FILE_BYTES = 1024 * 1024
"""A configuration file is a page of settings (the shipped ones are under 5 KB), not data."""
MAX_EXPANDED_VALUES = 100_000
"""Values a document may hold once its aliases are expanded: a billion-laughs file holds 10^9."""
MAX_DEPTH = 64
"""Nesting depth of mappings and lists: a scenario needs 5."""


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
