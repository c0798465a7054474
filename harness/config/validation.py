"""A file's data checked against its schema, and what pydantic found said as the house says it.

The schema (the sections of config/scenario.py, inventory.py and nightly.py,
made of core/fields.py's types) does every check; this module only runs it
with the file's directory as context (relative paths start there) and turns
the first problem into a ConfigError that names the file, the key path as the
user wrote it (`outputs.logits.tolerance.max_abs`, `boards.lab.jump[1]`), the
problem and the fix. Later problems of the same file follow it, so that one
edit can fix them all.
"""

import functools
from pathlib import Path
from typing import Any, List, Optional, Tuple

from pydantic import TypeAdapter, ValidationError

from ..core.errors import ConfigError
from ..core.fields import Problem, did_you_mean, key_text, shown, type_name

MAX_ALSO = 3
"""Further problems named after the first one (a file of wrong values need not print a page)."""


@functools.lru_cache(maxsize=None)
def adapter(schema) -> TypeAdapter:
    return TypeAdapter(schema)


def inline_json_schema(schema) -> dict:
    """The JSON Schema of a section with its definitions written in place: a piece another key's schema can hold
    (`WithJsonSchema`) without references that point nowhere."""
    document = adapter(schema).json_schema()
    definitions = document.pop("$defs", {})

    def inline(node):
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = inline(definitions[node["$ref"].split("/")[-1]])
            return {**target, **{key: inline(value) for key, value in node.items() if key != "$ref"}}
        return {key: inline(value) for key, value in node.items()}
    return inline(document)


def validate(path: Path, data: Any, schema, **context) -> Any:
    """data (a loaded YAML document; None is an empty one) as an instance of schema, or ConfigError."""
    data = {} if data is None else data
    try:
        return adapter(schema).validate_python(data, context={"base": Path(path).parent, "file": Path(path),
                                                              **context})
    except ValidationError as error:
        problems = [describe(item, data) for item in error.errors(include_url=False)]
        key, problem, fix = problems[0]
        also = [f"{other_key or '(top level)'}: {other_problem}" for other_key, other_problem, _ in problems[1:]]
        raise ConfigError(path, key or "(top level)", problem, fix, also=also[:MAX_ALSO],
                          more=max(0, len(also) - MAX_ALSO)) from None


def describe(error: dict, data: Any) -> Tuple[str, str, Optional[str]]:
    """(key path, problem, fix) of one pydantic error, the key path resolved against the data as written."""
    parts, value, complete = _walk(error["loc"], data)
    kind = error["type"]
    cause = (error.get("ctx") or {}).get("error")
    last = parts[-1] if parts else ""
    if isinstance(cause, Problem):
        fix = cause.fix.replace("{key}", last.split("[")[0]) if cause.fix else cause.fix
        return _join(parts, cause.at), cause.problem, fix
    if kind in ("missing", "missing_keyword_only_argument", "missing_argument"):
        name = key_text(error["loc"][-1])
        where = _join(parts)
        return _join(parts, name), "is missing", f"add `{name}:` under `{where or 'the top level'}`"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return _join(parts), "is not a known key", None
    if kind in ("dataclass_type", "dict_type", "model_type", "dataclass_exact_type", "model_attributes_type"):
        return _join(parts), f"must be a mapping of keys to values, got {type_name(value)}", \
            "write it as `key: value` lines (indented under its name)"
    if kind in ("list_type", "tuple_type", "set_type", "frozen_set_type", "iterable_type"):
        name = last.split("[")[0] or "it"
        return _join(parts), f"must be a list, got {type_name(value)} {shown(value)}", \
            f"write it as `{name}: [a, b]` or one `- item` per line"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = error["ctx"]["discriminator"].strip("'")
        tags = [tag.strip().strip("'") for tag in str(error["ctx"].get("expected_tags", "")).split(",") if tag.strip()]
        if kind == "union_tag_not_found" or not tags:
            return _join(parts, field), "is missing", f"set `{field}:` to one of {', '.join(tags) or 'its kinds'}"
        given = error["ctx"]["tag"]
        return _join(parts, field), f"is {shown(given)}, not one of {', '.join(tags)}", \
            did_you_mean(given, tags) + "use one of those"
    if kind == "string_type" and not complete:  # a key of a mapping (`7: {...}`) that is not a string
        return _join(parts), f"the key {shown(error['input'])} is not a string", "quote it: `\"7\": ...`"
    if kind == "literal_error":
        expected = error["ctx"]["expected"]
        return _join(parts), f"is {shown(value)}, not one of {expected}", "use one of those"
    # A check of pydantic's own that the house types do not wrap: its words, and where to read the reference.
    return _join(parts), f"{error['msg'][0].lower()}{error['msg'][1:]}, got {type_name(value)} {shown(value)}", \
        "see the key in the reference (docs/reference.md, or `harness schema`)"


def _walk(loc, data) -> Tuple[List[str], Any, bool]:
    """The key path parts of a pydantic location that are in the data, the value there, and whether the
    location was followed to its end. Parts that are not in the data are the schema's own (the tag of a
    board's kind, a union member) and are left out; `[key]` means the error is about a mapping's key."""
    parts: List[str] = []
    node = data
    for part in loc:
        if part == "[key]":
            return parts, node, False
        if isinstance(node, dict) and part in node:
            parts.append(key_text(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parts.append(f"[{part}]")
            node = node[part]
    return parts, node, True


def _join(parts: List[str], *more: str) -> str:
    text = ""
    for part in list(parts) + [m for m in more if m]:
        text += part if part.startswith("[") or not text else f".{part}"
    return text
