"""The values configuration files are made of: each a type that checks itself where the data enters.

The scenario, inventory and nightly schemas (harness/config) and the input providers are built from these
types. `Number(minimum=0.0)` refuses NaN, infinities, text that is no number and values below 0, says what
was wrong and what to write instead, and gives the JSON Schema its bounds, for every key that uses it: the
rules that protect every key live here, not key by key. A check raises `Problem(problem, fix)`; config/
adds the file and the key path and raises ConfigError.

Sections are frozen pydantic dataclasses (`@section`): typed, documented by a docstring per field (the
reference and the JSON Schema read them), and strict about keys, so that a typo is an error and not a
silently ignored setting.
"""

import difflib
import importlib.util
import math
import os
import re
import reprlib
import stat
from pathlib import Path
from typing import Annotated, ClassVar, FrozenSet, Literal, Optional

import pydantic
from pydantic_core import ArgsKwargs
from pydantic import BeforeValidator, ConfigDict, ValidationInfo, WithJsonSchema, model_validator

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A name that becomes a file or folder name (scenario, board, run id, converter variant): one safe
path component, never `..`, `/` or a hidden file."""
MAX_NAME = 64
"""Longest name a user gives; a run id made of a name, a time stamp and a setting may be longer."""
SAFE_KEY = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")
"""A key name shown as it is in messages; any other is shown as its repr (an ESC must not reach the terminal)."""
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters other than tab and newlines: a NUL breaks every path and command, an ESC
rewrites the user's terminal."""
MNN_VERSION = re.compile(r"[0-9]{1,4}(\.[0-9]{1,4}){1,3}")
"""An MNN version names a directory of the cache and on boards, and a pip requirement: a plain version."""
NUMBER_TEXT = r"^\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?(\s*/\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?)?\s*$"
"""Numbers YAML leaves as text: 1e-3 (YAML 1.1 wants a dot) and fractions such as 1/255."""


class Problem(ValueError):
    """What is wrong with one value, and the fix. `at` continues the key path below the value's own
    ("[2]", "tolerance.max_abs"): a check of a whole section names the key it blames."""

    def __init__(self, problem: str, fix: Optional[str] = None, at: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.at = at


# ---- how values are shown in messages -------------------------------------------------------------

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 60, 60, 4, 4, 2


def shown(value) -> str:
    """value as an error message shows it: repr, cut short (a hostile value can be a megabyte)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 15:
        return f"{str(value)[:12]}... ({len(str(abs(value)))} digits)"
    if isinstance(value, float):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}.get(repr(value), f"{value:g}")
    return _REPR.repr(value)


def type_name(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false",
            int: "an integer", float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


def key_text(key) -> str:
    """A key as a key path shows it: as written, or its repr when it holds control characters."""
    return str(key) if SAFE_KEY.fullmatch(str(key)) else repr(key)


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
    return (f"{shown(value)} cannot be a file name: use up to {max_length} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")


def slug(text: str, fallback: str = "run") -> str:
    """text as a safe path component: runs of other characters become '-', at most 64 long."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip("._-")[:MAX_NAME].rstrip("-")
    return cleaned or fallback


def did_you_mean(value: str, choices) -> str:
    close = difflib.get_close_matches(str(value), [str(choice) for choice in choices], n=1)
    return f"did you mean `{close[0]}`? " if close else ""


# ---- the checks ------------------------------------------------------------------------------------

def check_text(value) -> str:
    """A string without control characters (a NUL breaks paths and commands, an ESC the terminal)."""
    if not isinstance(value, str):
        raise Problem(f"must be a string, got {type_name(value)} {shown(value)}",
                      "write it as text (in quotes if it looks like a number)")
    control = CONTROL.search(value)
    if control:
        raise Problem(f"contains the control character {control.group()!r}",
                      "write plain text; control characters are refused in every value")
    return value


def check_range(value, minimum=None, maximum=None, above=None, why: str = "") -> None:
    because = f" ({why})" if why else ""
    if above is not None and not value > above:
        raise Problem(f"must be more than {shown(above)}, got {shown(value)}{because}",
                      f"give a value above {shown(above)}")
    if minimum is not None and value < minimum:
        raise Problem(f"must be at least {shown(minimum)}, got {shown(value)}{because}",
                      f"give a value of {shown(minimum)} or more")
    if maximum is not None and value > maximum:
        raise Problem(f"must be at most {shown(maximum)}, got {shown(value)}{because}",
                      f"give a value of {shown(maximum)} or less")


def to_number(value) -> float:
    """A number, or a number YAML left as text ("1/255", "1e-3"); not yet checked for being finite."""
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
        raise Problem(f"must be a number, got {type_name(value)} {shown(value)}",
                      "write a number such as 0.001, or a fraction such as 1/255")
    try:
        return float(value)
    except OverflowError:
        return math.inf  # an integer with hundreds of digits: refused as not finite


def check_finite(value) -> float:
    """A finite number: NaN and infinities are refused for every key. A NaN limit makes every comparison
    pass (NaN > limit is false), a NaN timeout never expires."""
    number = to_number(value)
    if not math.isfinite(number):
        raise Problem(f"must be a finite number, got {shown(value)}",
                      "write a finite number (YAML reads .nan as not-a-number and .inf as infinity)")
    return number


def check_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Problem(f"must be an integer, got {type_name(value)} {shown(value)}",
                      "write a whole number, without quotes")
    return value


def check_flag(value) -> bool:
    if not isinstance(value, bool):
        raise Problem(f"must be true or false, got {shown(value)}", "write true or false")
    return value


def check_choice(value, choices) -> str:
    check_text(value)
    if value not in choices:
        raise Problem(f"is {shown(value)}, not one of {', '.join(choices)}",
                      did_you_mean(value, choices) + "use one of those")
    return value


def check_name(value) -> str:
    problem = name_problem(check_text(value))
    if problem:
        raise Problem(problem, f"rename it, e.g. `{slug(value)}`; names become folder names under --reports, and "
                      "must not reach outside it")
    return value


def check_mnn_version(value) -> str:
    if not isinstance(value, str):
        raise Problem(f"is not an MNN version in quotes: got {type_name(value)} {shown(value)}",
                      "write it in quotes, e.g. \"3.6.1\" (YAML reads 3.10 as the number 3.1)")
    if not MNN_VERSION.fullmatch(check_text(value)):
        raise Problem(f"{shown(value)} is not an MNN version",
                      "write it as a plain version in quotes, e.g. \"3.6.1\" (releases with wheels: 3.0.0 to 3.6.1)")
    return value


def package_file(value: str) -> Path:
    """`pkg:PACKAGE/path/in/it`: a file shipped inside an installed package (a model in a wheel)."""
    package, _, inner = value[len("pkg:"):].partition("/")
    try:
        spec = importlib.util.find_spec(package) if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", package) else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise Problem(f"the package {package!r} is not installed",
                      f"install it (`pip install {package}`; scenarios' model packages are in "
                      "`pip install 'mnn-harness[model]'`, in a clone `pip install -e .[model]`)")
    path = Path(list(spec.submodule_search_locations)[0]) / inner
    if not path.is_file():
        what = describe_file_type(path)
        raise Problem(f"the package {package!r} has no file {inner!r} (looked at {path}"
                      + (f", which is {what})" if what else ")"),
                      f"list the package's files (`pip show -f {package}`) and give one of them")
    return path


def resolve_path(value, base: Optional[Path], must_exist: bool = True) -> Path:
    """A file path as a configuration writes it, relative to base (the YAML file's directory); `pkg:` names a
    file inside an installed package. With must_exist, an existing regular file."""
    text = check_text(value)
    if text.startswith("pkg:"):
        return package_file(text)
    try:
        path = Path(text).expanduser()
    except RuntimeError as error:  # ~someone who has no home here
        raise Problem(f"{text!r}: {error}", "give the path without ~user") from None
    if not path.is_absolute() and base is not None:
        path = base / path
    if must_exist and not path.exists():
        raise Problem(f"file {text!r} does not exist (looked at {path})",
                      "fix the path; relative paths are taken from the YAML file's directory")
    what = describe_file_type(path) if must_exist else None
    if what:
        raise Problem(f"{text!r} is {what}, not a file (looked at {path})", "give the path of the file itself")
    return path


def file_base(info: Optional[ValidationInfo]) -> Optional[Path]:
    """The directory relative paths start at: the YAML file's, given as validation context."""
    context = info.context if info is not None else None
    return Path(context["base"]) if context and context.get("base") is not None else None


# ---- the types ---------------------------------------------------------------------------------------


def _bounds(minimum=None, maximum=None, above=None) -> dict:
    bounds = {"minimum": minimum, "maximum": maximum, "exclusiveMinimum": above}
    return {key: value for key, value in bounds.items() if value is not None}


def Number(minimum: Optional[float] = None, maximum: Optional[float] = None, above: Optional[float] = None,
           why: str = ""):
    """A finite number within the bounds given (minimum/maximum inclusive, above exclusive); why says, in the
    message, what the bound protects. It may be written as text YAML 1.1 leaves unparsed (1e-3, 1/255)."""
    def check(value) -> float:
        number = check_finite(value)
        check_range(number, minimum, maximum, above, why)
        return number
    schema = {"anyOf": [{"type": "number", **_bounds(minimum, maximum, above)},
                        {"type": "string", "pattern": NUMBER_TEXT}]}
    return Annotated[float, BeforeValidator(check), WithJsonSchema(schema)]


def Fraction():
    """A share from 0 to 1 (agreement, cosine): 0.999 means 99.9%."""
    def check(value) -> float:
        number = check_finite(value)
        check_range(number, minimum=0.0, why="a limit below 0 fails every comparison, even of identical outputs")
        if number > 1.0:
            raise Problem(f"must be between 0 and 1, got {number:g}",
                          "write agreement as a fraction: 0.999 means 99.9%")
        return number
    schema = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string", "pattern": NUMBER_TEXT}]}
    return Annotated[float, BeforeValidator(check), WithJsonSchema(schema)]


def Integer(minimum: Optional[int] = None, maximum: Optional[int] = None, why: str = ""):
    """A whole number (not true/false, not 2.0, not "2") within the bounds given."""
    def check(value) -> int:
        check_range(check_int(value), minimum, maximum, None, why)
        return value
    return Annotated[int, BeforeValidator(check), WithJsonSchema({"type": "integer", **_bounds(minimum, maximum)})]


def Choice(*choices: str):
    """One of the words given; a near miss is answered with "did you mean"."""
    return Annotated[Literal[choices], BeforeValidator(lambda value: check_choice(value, choices))]


def FilePath(must_exist: bool = True):
    """A file, written relative to the YAML file's directory (or absolute, or `pkg:PACKAGE/file`)."""
    def check(value, info: ValidationInfo) -> Path:
        if isinstance(value, Path):
            return value  # made in code, or already resolved (dataclasses.replace validates again)
        return resolve_path(value, file_base(info), must_exist)
    return Annotated[Path, BeforeValidator(check), WithJsonSchema({"type": "string", "format": "path"})]


Text = Annotated[str, BeforeValidator(check_text)]
"""A string without control characters."""
Flag = Annotated[bool, BeforeValidator(check_flag)]
"""true or false (YAML's yes/no are true/false too); never 1 or "yes please"."""
Name = Annotated[str, BeforeValidator(check_name),
                 WithJsonSchema({"type": "string", "pattern": f"^{SAFE_NAME.pattern}$", "maxLength": MAX_NAME})]
"""A name that becomes a folder name: letters, digits, '.', '_', '-', starting with a letter or digit."""
MnnVersion = Annotated[str, BeforeValidator(check_mnn_version),
                       WithJsonSchema({"type": "string", "pattern": f"^{MNN_VERSION.pattern}$"})]
"""An MNN release as a plain version in quotes ("3.6.1"): YAML reads 3.10 as the number 3.1."""


# ---- sections ----------------------------------------------------------------------------------------

SECTION_CONFIG = ConfigDict(extra="forbid", use_attribute_docstrings=True, arbitrary_types_allowed=True)


def section(cls):
    """A mapping of a configuration file as a frozen pydantic dataclass (keyword-only, keys checked). A field's
    docstring is its description: the reference and the JSON Schema show it."""
    return pydantic.dataclasses.dataclass(cls, config=SECTION_CONFIG, frozen=True, kw_only=True)


@section
class Section:
    """Base of every mapping a configuration file holds: a key nobody defined stops the run, with the key
    that was probably meant."""

    INTERNAL: ClassVar[FrozenSet[str]] = frozenset()
    """Fields the loader sets, never written in a file (a board's name is its key under `boards:`)."""
    SHORT_FORM: ClassVar[Optional[dict]] = None
    """The JSON Schema of a shorter way to write the section (`npz: x.npz` for `npz: {file: x.npz}`), if any;
    `from_short_form` turns it into the mapping."""

    @classmethod
    def from_short_form(cls, value):
        """The mapping a short form stands for; the value as it is when it is no short form (its error says)."""
        return value

    @classmethod
    def description_of(cls, key: str) -> Optional[str]:
        """A key's docstring, from the class that defines its field (pydantic reads a class's own docstrings only)."""
        name = cls.field_of(key)
        for klass in cls.__mro__:
            info = getattr(klass, "__pydantic_fields__", {}).get(name)
            if info is not None and info.description:
                return info.description
        return None

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        schema = handler(core_schema)
        definition = handler.resolve_ref_schema(schema)
        for name, value in definition.get("properties", {}).items():
            if "description" not in value and cls.description_of(name):
                value["description"] = cls.description_of(name)
        if cls.SHORT_FORM is None:
            return schema
        # The section itself, not a reference to it: what is returned here becomes its definition, and a
        # reference would point at itself (pydantic < 2.10 hands this hook a reference).
        return {"anyOf": [cls.SHORT_FORM, dict(definition)]}

    @classmethod
    def keys(cls) -> list:
        """The keys a file may write here, in the order the reference lists them (a field's alias where it has
        one: `from`, a Python keyword, is the field `from_`)."""
        return [info.alias or name for name, info in cls.__pydantic_fields__.items() if name not in cls.INTERNAL]

    @classmethod
    def field_of(cls, key: str) -> str:
        """The field a key of the file sets."""
        return next((name for name, info in cls.__pydantic_fields__.items() if (info.alias or name) == key), key)

    @classmethod
    def unknown_key_fix(cls, key) -> str:
        close = difflib.get_close_matches(str(key), cls.keys(), n=1)
        return f"did you mean `{close[0]}`?" if close else f"known keys here: {', '.join(cls.keys())}"

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data):
        if cls.SHORT_FORM is not None and not isinstance(data, (dict, ArgsKwargs)):
            data = cls.from_short_form(data)
        elif data is None:
            data = {}  # `run:` with nothing under it: every default
        if isinstance(data, dict):  # (made in code, data is the constructor's arguments: those are checked by name)
            for key in data:
                if key not in cls.keys():
                    raise Problem("is not a known key", cls.unknown_key_fix(key), at=key_text(key))
        return data
