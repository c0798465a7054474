"""The schemas as others read them: JSON Schema for editors and CI, and the reference page for people.

Both come from the sections that validate the files (config/scenario.py,
inventory.py, nightly.py), so that neither can say anything the loader does
not do. The JSON Schemas are draft-07 (what yaml-language-server, VS Code
and JetBrains read): a file that starts with

    # yaml-language-server: $schema=../schemas/scenario.schema.json

is checked and completed as it is typed. They are published in the
repository's schemas/ (and in the package, as harness/schemas), and
`harness schema KIND` prints them from an installed harness. The reference
is docs/reference.md. A test holds both to what this module writes:

    python -m harness.config.schema          # rewrite schemas/*.schema.json and docs/reference.md
"""

import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..core.fields import MNN_VERSION, SAFE_NAME
from .inventory import InventoryFile
from .nightly import NightlyFile
from .scenario import ScenarioFile
from .validation import adapter

FILES = {"scenario": ScenarioFile, "inventory": InventoryFile, "nightly": NightlyFile}
"""The kinds of configuration file, by the name `harness schema` and the schema files use."""
TITLES = {"scenario": "mnn-harness scenario", "inventory": "mnn-harness inventory",
          "nightly": "mnn-harness nightly file"}
DRAFT = "http://json-schema.org/draft-07/schema#"
MODELINE = "# yaml-language-server: $schema={}"
"""The first line that tells an editor (yaml-language-server: VS Code, Neovim, Helix; JetBrains) the schema."""


def schema_file_name(kind: str) -> str:
    return f"{kind}.schema.json"


def json_schema(kind: str) -> dict:
    """The JSON Schema (draft-07) of one kind of file."""
    schema = _fix_refs(_draft07(adapter(FILES[kind]).json_schema(mode="validation"), top=True))
    return {"$schema": DRAFT, "title": TITLES[kind], **{k: v for k, v in schema.items() if k != "title"}}


def _draft07(node: Any, top: bool = False) -> Any:
    """Pydantic writes 2020-12; editors read draft-07. A `$ref` with siblings (a description, a default) is
    wrapped in allOf (draft-07 ignores a $ref's siblings), the generated titles ("Max Abs") and the defaults
    of whole sections (pages of nulls) are left out."""
    if isinstance(node, list):
        return [_draft07(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _draft07(value) if key not in ("default", "const", "enum") else value
            for key, value in node.items()}
    if not top:
        node.pop("title", None)
    node.pop("discriminator", None)  # OpenAPI's, not JSON Schema's: `kind` is a const in each member
    if isinstance(node.get("description"), str):  # a docstring's lines joined, its paragraphs kept
        node["description"] = re.sub(r"[ \t]*(?<!\n)\n(?!\n)[ \t]*", " ", node["description"].strip())
    if isinstance(node.get("default"), dict) and ("$ref" in node or "allOf" in node or "anyOf" in node):
        node.pop("default")
    if "$ref" in node and len(node) > 1:
        node["allOf"] = [{"$ref": node.pop("$ref")}]
    if "$defs" in node:
        node["definitions"] = node.pop("$defs")
    return node


def _fix_refs(node: Any) -> Any:
    if isinstance(node, list):
        return [_fix_refs(item) for item in node]
    if isinstance(node, dict):
        return {key: (value.replace("#/$defs/", "#/definitions/") if key == "$ref" else _fix_refs(value))
                for key, value in node.items()}
    return node


def schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2) + "\n"


# ---- the reference page --------------------------------------------------------------------------------

INTRO = {
    "scenario": "What to run and how to judge it: the model, its inputs, the boards, the limits. "
                "`harness init MODEL` writes a minimal one; `harness run FILE` runs it.",
    "inventory": "Every board the harness may use, by name: `--inventory FILE`, else $MNN_HARNESS_INVENTORY, else "
                 "./inventory.yaml, else the built-in one (this machine and an emulated Cortex-A76). Each board's "
                 "`kind:` picks its keys; a key of another kind stops the run.",
    "nightly": "The scenarios a nightly CI job runs, stored in reports/history.sqlite and compared with the "
               "previous night: `harness nightly FILE`.",
}


def reference_markdown() -> str:
    """docs/reference.md: every key of every file, from the JSON Schemas (so from the sections themselves)."""
    lines = ["# Configuration reference", "",
             "Every key of the three files the harness reads, generated from the schema the loader checks them "
             "with (`python -m harness.config.schema` rewrites this page and `schemas/`; a test keeps them "
             "current). A wrong key or value stops the run before anything runs (exit 2), naming the file, the "
             "key and the fix.", "",
             "Editors check and complete the files as you type with the JSON Schemas in "
             "[`schemas/`](../schemas/) (an installed harness prints them: `harness schema scenario`, "
             "`inventory`, `nightly`). Start the file with", "",
             "```yaml", MODELINE.format("../schemas/scenario.schema.json"), "```", "",
             "(a path relative to the YAML file, or absolute; `harness init` writes this line for you).", "",
             "A number may also be written as a fraction (`scale: 1/255`) or as YAML 1.1 leaves it (`1e-3`); NaN "
             "and infinities are refused everywhere. MNN versions are written in quotes (`\"3.10.0\"`: YAML reads "
             "3.10 as the number 3.1). A key absent (—) takes its default; a section absent takes its keys' "
             "defaults.", ""]
    for kind in FILES:
        schema = json_schema(kind)
        lines += [f"## The {kind} file", "", INTRO[kind], ""]
        lines += _Reference(schema).section(schema, kind, level=3)
    return "\n".join(lines).rstrip() + "\n"


class _Reference:
    """The tables of one file's schema: a section's keys, then each section inside it, depth first; a section
    met twice (a jump host of ssh and of labgrid boards) is shown once."""

    def __init__(self, root: dict):
        self.root = root
        self.shown: Dict[str, str] = {}

    def section(self, node: dict, path: str, level: int, keys: Optional[List[str]] = None,
                intro: Optional[str] = None) -> List[str]:
        node = self.resolve(node)
        lines: List[str] = []
        text = intro if intro is not None else (node.get("description") if level > 3 else None)
        if text:
            lines += [text, ""]
        properties = {key: value for key, value in node.get("properties", {}).items()
                      if keys is None or key in keys}
        if properties:
            required = set(node.get("required", []))
            lines += ["| key | type | default | what it is |", "|---|---|---|---|"]
            for key, value in properties.items():
                default = "required" if key in required else _default_text(value)
                lines.append(f"| `{key}` | {_cell(self.type_text(value))} | {_cell(default)} | "
                             f"{_cell(self.description(value))} |")
            lines.append("")
        for key, value in properties.items():
            where = key if path in FILES else f"{path}.{key}"
            lines += self.inner(value, where, level)
        return lines

    def inner(self, value: dict, where: str, level: int) -> List[str]:
        """The sections a key holds: its own, a mapping's values (`.<name>`), the kinds of a union."""
        lines: List[str] = []
        for option in _options(value):
            reference = option.get("$ref") or next((item.get("$ref") for item in option.get("allOf", [])), None)
            option = self.resolve(option)
            seen_as = reference or json.dumps(option, sort_keys=True)  # an inline section: known by its content
            if _options(option) != [option]:
                lines += self.inner(option, where, level)
            elif option.get("type") == "object" and "properties" in option:
                if seen_as in self.shown:
                    if self.shown[seen_as] != where:
                        lines += [f"{'#' * level} `{where}`", "",
                                  f"As [`{self.shown[seen_as]}`](#{_anchor(self.shown[seen_as])}).", ""]
                    continue
                self.shown[seen_as] = where
                lines += [f"{'#' * level} `{where}`", ""]
                own = self.resolve({"$ref": reference}) if reference else option  # the section's docstring
                lines += self.section(option, where, level + 1, intro=own.get("description", ""))
            elif option.get("type") == "array" and isinstance(option.get("items"), dict):
                lines += self.inner(option["items"], where, level)
            elif option.get("type") == "object" and isinstance(option.get("additionalProperties"), dict):
                lines += self.members(option["additionalProperties"], f"{where}.<name>", level)
        return lines

    def members(self, value: dict, where: str, level: int) -> List[str]:
        """A mapping's values; several kinds (boards): the keys all kinds share once, then each kind's own."""
        kinds = [(self.kind_of(member), self.resolve(member)) for member in _options(value)]
        if len(kinds) < 2 or not all(kind for kind, _ in kinds):
            return self.inner(value, where, level)
        first = kinds[0][1]["properties"]
        common = {key: value for key, value in first.items() if key != "kind" and all(
            json.dumps(member["properties"].get(key), sort_keys=True) == json.dumps(value, sort_keys=True)
            for _, member in kinds)}
        every = {"properties": {"kind": {**first["kind"], "const": None, "enum": [kind for kind, _ in kinds]},
                                **common}, "required": ["kind"]}
        every["properties"]["kind"].pop("const")
        lines = [f"{'#' * level} `{where}`: every kind", ""]
        lines += self.section(every, where, level + 1,
                              intro=f"`kind:` picks the board's type, and with it the keys below it. Every kind "
                                    "has these:")
        for kind, member in kinds:
            own = [key for key in member["properties"] if key not in common and key != "kind"]
            lines += [f"{'#' * level} `{where}` with `kind: {kind}`", ""]
            lines += self.section(member, where, level + 1, keys=own, intro=member.get("description", ""))
        return lines

    def kind_of(self, member: dict) -> Optional[str]:
        return self.resolve(member).get("properties", {}).get("kind", {}).get("const")

    def resolve(self, node: dict) -> dict:
        while "$ref" in node:
            node = self.root["definitions"][node["$ref"].split("/")[-1]]
        if "allOf" in node and len(node["allOf"]) == 1:
            return {**self.resolve(node["allOf"][0]), **{k: v for k, v in node.items() if k != "allOf"}}
        return node

    def type_text(self, value: dict, joiner: str = ", or ") -> str:
        texts: List[str] = []
        for option in _options(value):
            resolved = self.resolve(option)
            text = self.type_text(resolved, " or ") if _options(resolved) != [resolved] else self.one_type(resolved)
            if text and text not in texts:
                texts.append(text)
        if any(text.startswith("number") for text in texts if text != "number as text"):
            texts = [text for text in texts if text != "number as text"]
        return joiner.join(texts)

    def one_type(self, option: dict) -> str:
        kind = option.get("type")
        if "const" in option:
            return f"`{option['const']}`"
        if "enum" in option:
            return "one of " + ", ".join(f"`{value}`" for value in option["enum"])
        if isinstance(kind, list):
            return " or ".join(self.one_type({**option, "type": item}) for item in kind if item != "null")
        if kind == "null":
            return ""
        if kind == "integer":
            return "integer" + _bounds(option)
        if kind == "number":
            return "number" + _bounds(option)
        if kind == "boolean":
            return "true/false"
        if kind == "string":
            pattern = option.get("pattern", "")
            if pattern == f"^{SAFE_NAME.pattern}$":
                return "name"
            if pattern == f"^{MNN_VERSION.pattern}$":
                return "MNN version"
            if pattern.startswith(r"^\s*[-+]?[0-9.]"):
                return "number as text"
            return "path" if option.get("format") == "path" else "text"
        if kind == "array":
            items = option.get("items")
            inner = self.type_text(items, " or ") if isinstance(items, dict) and items else "values"
            if option.get("minItems") and option.get("minItems") == option.get("maxItems"):
                return f"list of {option['minItems']} {inner}s" if " " not in inner else \
                    f"list of {option['minItems']} ({inner})"
            return f"list of ({inner})" if " " in inner else f"list of {inner}"
        if kind == "object":
            if "properties" in option:
                return "section"
            extra = option.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                return f"mapping of name to {self.type_text(extra, ' or ')}"
            return "mapping"
        return "any value" if not option else ""

    def description(self, value: dict) -> str:
        text = value.get("description")
        for option in ([] if text else _options(value)):
            text = self.resolve(option).get("description")
            if text:
                break
        return " ".join((text or "").split())


def _options(value: dict) -> List[dict]:
    for key in ("anyOf", "oneOf"):
        if key in value:
            return [option for item in value[key] for option in _options(item)]
    return [value]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading such as `a.b.<name>`."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def _bounds(option: dict) -> str:
    low, high, above = option.get("minimum"), option.get("maximum"), option.get("exclusiveMinimum")
    if low is not None and high is not None:
        return f" {_number(low)} to {_number(high)}"
    parts = [text for text in (above is not None and f"> {_number(above)}", low is not None and f">= {_number(low)}",
                               high is not None and f"<= {_number(high)}") if text]
    return (" " + ", ".join(parts)) if parts else ""


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default_text(value: dict) -> str:
    if "default" not in value or value["default"] is None:
        return "—"
    default = value["default"]
    return f"`{default}`" if isinstance(default, str) and default else f"`{json.dumps(default)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---- writing them ----------------------------------------------------------------------------------------

def published(repository: Path) -> Dict[Path, str]:
    """Every file this module writes in a clone, and its text."""
    files = {repository / "schemas" / schema_file_name(kind): schema_text(kind) for kind in FILES}
    files[repository / "docs" / "reference.md"] = reference_markdown()
    return files


def main(argv: Optional[List[str]] = None) -> int:
    repository = Path(__file__).resolve().parents[2]
    for path, text in published(repository).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(repository)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
