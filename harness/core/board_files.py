"""Files that come from a board, validated and bounded before the host believes or loads any of them.

A board is another machine: its agent may be broken, out of date or hostile.
Nothing it sends may end the run, exhaust the host's memory, or reach the
terminal as control sequences:

- every file is a regular file (a symlink is refused: lstat, never stat) of
  a bounded size, checked before it is read or even fetched;
- result.json is JSON of a known shape: each field a view reads has its type
  checked, `outputs_sha256` is required when the agent says ok, and strings
  lose their control characters;
- an .npz is opened as a zip whose members are checked before one byte is
  decompressed: only `<encoded name>.npy` members (npz.py: a tensor's name,
  percent-encoded) of the expected tensors, declared sizes within the cap,
  an npy header with a plain numeric dtype whose shape accounts for the
  member's size; then numpy reads it with allow_pickle=False;
- the agent's log keeps its last LOG_KEEP_BYTES, the rest is counted.

Any violation raises BoardResultError naming the file and the rule: that
board fails with the reason, the others go on.
"""

import json
import math
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import BoardResultError
from .npz import member_name, tensor_name

RESULT_JSON_MAX = 8 << 20
"""result.json holds facts and a latency per iteration: a few kB; 8 MiB leaves room for long runs."""
PROBE_JSON_MAX = 1 << 20
DUMP_JSON_MAX = 64 << 20
"""A layer dump's summaries: 64 values and statistics per op, hundreds of ops."""
DUMP_NPZ_MAX = 1 << 30
"""A layer dump's whole tensors: only the few ops around a candidate."""
LOG_KEEP_BYTES = 1 << 20
"""The agent's log is kept up to this much (its end, where errors are); the rest is only counted."""
ITEM_BYTES_MAX = 8
"""The widest element a board may send (float64, int64): the size caps assume it."""
NPZ_MEMBER_OVERHEAD = 4096
"""An .npy header and a zip entry per member, generously."""
UNKNOWN_OUTPUT_ELEMENTS = 16 << 20
"""Per sample and output, when the host could not work out the output's shape: 16 Mi elements."""
ALLOWED_KINDS = "biuf"
"""bool, signed and unsigned integers, floats: what tensors are; objects (pickles) and records are refused."""

_CONTROL = {code: None for code in list(range(0x20)) + [0x7F] + list(range(0x80, 0xA0)) if code not in (0x09, 0x0A)}
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"  # CSI: colours, cursor moves, clearing the screen
    # OSC (a window title), DCS, SOS, PM, APC: a string up to BEL or ST, or to the end of the line when unended
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?")  # any other escape sequence (ECMA-48: intermediates, then a final byte)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def clean_text(text: str) -> str:
    """text without escape sequences and control characters (newline and tab stay): nothing from a board
    reaches a terminal as a control, and no sequence leaves its printable remainder (`]0;title[2J`) behind."""
    return _ESCAPE_SEQUENCE.sub("", text).translate(_CONTROL)


def clean_value(value):
    """A JSON value with every string (keys too) cleaned."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_value(item) for item in value]
    if isinstance(value, dict):
        return {clean_text(str(key)): clean_value(item) for key, item in value.items()}
    return value


def check_regular(path: Path, limit: int, what: Optional[str] = None) -> int:
    """The size of path, after checking it is a regular file (not a symlink) of at most limit bytes."""
    what = what or path.name
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise BoardResultError(f"{what} is missing") from None
    if stat.S_ISLNK(info.st_mode):
        raise BoardResultError(f"{what} is a symbolic link; a board must send a regular file")
    if not stat.S_ISREG(info.st_mode):
        raise BoardResultError(f"{what} is not a regular file")
    if info.st_size > limit:
        raise BoardResultError(f"{what} is {human_size(info.st_size)}, more than the {human_size(limit)} it may be")
    return info.st_size


def human_size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


# -- result.json ----------------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value) -> Optional[str]:
    return None if isinstance(value, str) else "a string"


def _optional(check: Callable) -> Callable:
    return lambda value: None if value is None else check(value)


def _number(value) -> Optional[str]:
    return None if _is_number(value) else "a finite number"


def _integer(value) -> Optional[str]:
    return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"


def _texts(value) -> Optional[str]:
    return None if isinstance(value, list) and all(isinstance(v, str) for v in value) else "a list of strings"


def _integers(value) -> Optional[str]:
    return None if isinstance(value, list) and all(_integer(v) is None for v in value) else "a list of integers"


def _numbers(value) -> Optional[str]:
    return None if isinstance(value, list) and all(_is_number(v) for v in value) else "a list of finite numbers"


def _scalars(value) -> Optional[str]:
    ok = isinstance(value, dict) and all(v is None or isinstance(v, (str, bool)) or _is_number(v)
                                         for v in value.values())
    return None if ok else "a mapping of names to plain values"


def _sha256(value) -> Optional[str]:
    return None if isinstance(value, str) and _SHA256.fullmatch(value) else "a SHA-256 in hex"


def _output_facts(value) -> Optional[str]:
    expected = "a mapping of output names to {shape: [integers], dtype: string}"
    if not isinstance(value, dict):
        return expected
    for facts in value.values():
        if not isinstance(facts, dict) or not isinstance(facts.get("dtype"), str):
            return expected
        shape = facts.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            return expected
    return None


def _fields(checks: Dict[str, Callable]) -> Callable:
    def check(value) -> Optional[str]:
        if not isinstance(value, dict):
            return "a mapping"
        for key, field_check in checks.items():
            if key in value and field_check(value[key]) is not None:
                return f"a mapping whose {key} is {field_check(value[key])}"
        return None
    return check


RESULT_FIELDS: Dict[str, Callable] = {
    "schema": _integer,
    "status": lambda v: None if v in ("ok", "error") else '"ok" or "error"',
    "error": _optional(_text), "error_kind": _optional(_text), "traceback": _optional(_text),
    "machine": _optional(_text), "python": _optional(_text), "platform": _optional(_text),
    "hostname": _optional(_text), "numpy_version": _optional(_text), "runtime": _optional(_text),
    "mnn_version": _optional(_text), "mnn_banner": _optional(_text),
    "cpu_features": _texts, "settings": _optional(_scalars), "latency_ms": _numbers,
    "peak_rss_mb": _optional(_number), "wall_s": _optional(_number),
    "outputs": _output_facts, "outputs_sha256": _optional(_sha256),
    "preprocess": _optional(_fields({"status": _text, "backend": _optional(_text), "error": _optional(_text),
                                     "sha256": _optional(_sha256)})),
    "precision": _optional(_fields({"asked": _text, "ran": _text, "evidence": _optional(_text)})),
    "dump": _optional(_fields({"samples": _integers, "ops": _integer, "tensors": _integer, "replayed": _integer,
                               "json_sha256": _sha256, "npz_sha256": _sha256})),
    "agent": _optional(_fields({"mode": _text, "pid": _integer, "jobs": _integer, "rss_mb": _optional(_number),
                                "cache": _optional(_scalars)})),
    "script": _optional(_fields({"name": _text, "exit": _optional(_integer), "seconds": _number, "output": _text,
                                 "argv": _texts})),
}
"""result.json fields and what each must be; a field not named here is kept (cleaned) for newer agents."""
RESULT_REQUIRED = ("status",)


def read_json(path: Path, limit: int, what: Optional[str] = None) -> object:
    """A JSON file from a board: regular, at most limit bytes, valid UTF-8 JSON; strings cleaned."""
    what = what or path.name
    check_regular(path, limit, what)
    try:
        return clean_value(json.loads(path.read_bytes().decode("utf-8")))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise BoardResultError(f"{what} is not valid JSON: {clean_text(str(error))[:200]}") from None


def read_result_json(path: Path) -> dict:
    """The agent's result.json, schema-checked: a wrong type is the board's failure, never a crash of a view."""
    facts = read_json(path, RESULT_JSON_MAX, "result.json")
    if not isinstance(facts, dict):
        raise BoardResultError("result.json is not a JSON object")
    for key in RESULT_REQUIRED:
        if key not in facts:
            raise BoardResultError(f"result.json has no {key!r}")
    for key, check in RESULT_FIELDS.items():
        if key in facts:
            problem = check(facts[key])
            if problem is not None:
                raise BoardResultError(f"result.json: {key} must be {problem}, got {_shown(facts[key])}")
    if facts["status"] == "ok" and not facts.get("outputs_sha256"):
        raise BoardResultError("result.json says ok but has no outputs_sha256: the outputs cannot be verified")
    return facts


PROBE_FIELDS: Dict[str, Callable] = {
    "schema": _integer, "machine": _optional(_text), "python": _optional(_text), "platform": _optional(_text),
    "hostname": _optional(_text), "cpu_features": _texts, "cpu_count": _optional(_integer),
    "mnn_version": _optional(_text), "mnn_banner": _optional(_text), "numpy_version": _optional(_text),
    "errors": _texts, "free_disk_mb": _optional(_number), "runtime": _optional(_text),
}
"""The agent's --probe facts that `harness boards` shows."""


def check_probe(facts: object) -> dict:
    """The agent's --probe facts, schema-checked and cleaned."""
    facts = clean_value(facts)
    if not isinstance(facts, dict):
        raise BoardResultError("probe.json is not a JSON object")
    for key, check in PROBE_FIELDS.items():
        if key in facts:
            problem = check(facts[key])
            if problem is not None:
                raise BoardResultError(f"probe.json: {key} must be {problem}, got {_shown(facts[key])}")
    return facts


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- npz ------------------------------------------------------------------------------------------------


def npz_limit(shapes: Dict[str, Optional[Sequence[int]]], samples: int) -> int:
    """The most bytes an .npz of these outputs may take: samples x elements x ITEM_BYTES_MAX, plus headers.

    A shape the host does not know (None, or a dimension that is not a
    positive integer) counts as UNKNOWN_OUTPUT_ELEMENTS per sample.
    """
    total = NPZ_MEMBER_OVERHEAD
    for shape in shapes.values():
        known = shape is not None and all(isinstance(d, int) and d > 0 for d in shape)
        elements = int(np.prod(shape, dtype=np.int64)) if known else UNKNOWN_OUTPUT_ELEMENTS
        total += max(1, samples) * elements * ITEM_BYTES_MAX + NPZ_MEMBER_OVERHEAD
    return total


def load_npz(path: Path, names: Optional[Iterable[str]], limit: int, what: Optional[str] = None) -> Dict[str, np.ndarray]:
    """The arrays of an .npz from a board, after checking everything that could make loading it dangerous.

    names: the tensors it must hold (None: any names), keyed by their names
    as the model gives them; their members are the encoded names (npz.py).
    limit: the most bytes the file and its decompressed members may take.
    Refused: a symlink, a file or member over the limit, a member that is not
    `<encoded name>.npy` of a wanted tensor, an npy header whose dtype is not
    plain numbers (a pickle, a record) or whose shape does not account for
    the member's size, a corrupt zip.
    """
    what = what or path.name
    check_regular(path, limit, what)
    wanted = None if names is None else {member_name(name): name for name in names}
    try:
        with open(path, "rb") as raw:
            end = zipfile._EndRecData(raw)  # the entry count, read before the central directory is parsed
            if end is None:
                raise BoardResultError(f"{what} is not a readable npz: it has no zip directory")
            entries = end[zipfile._ECD_ENTRIES_TOTAL]
            most = len(wanted) if wanted is not None else 4096
            if entries > most:
                raise BoardResultError(f"{what} has {entries} members; at most {most} are expected")
            with zipfile.ZipFile(raw) as archive:
                infos = archive.infolist()
                declared = 0
                headers: List[Tuple[zipfile.ZipInfo, str]] = []
                for info in infos:
                    member = info.filename[:-4] if info.filename.endswith(".npy") else None
                    name = None if member is None else tensor_name(member) if wanted is None else wanted.get(member)
                    if name is None:
                        raise BoardResultError(f"{what} holds an unexpected member {clean_text(info.filename)!r}")
                    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                        raise BoardResultError(f"{what}: member {name!r} uses an unexpected compression")
                    declared += info.file_size
                    if declared > limit:
                        raise BoardResultError(f"{what} would decompress to more than {human_size(limit)} (its members "
                                               f"declare {human_size(declared)} so far): refused before loading")
                    headers.append((info, name))
                missing = sorted(set(wanted.values()) - {name for _, name in headers}) if wanted is not None else []
                if missing:
                    raise BoardResultError(f"{what} lacks {', '.join(missing)}")
                arrays = {}
                for info, name in headers:
                    with archive.open(info) as member:
                        _check_npy_header(member, info, name, what)
                    with archive.open(info) as member:
                        arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
                return arrays
    except BoardResultError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError,
            NotImplementedError, RuntimeError, MemoryError) as error:
        raise BoardResultError(f"{what} is not a readable npz: {type(error).__name__}: "
                               f"{clean_text(str(error))[:200]}") from None


def _check_npy_header(member, info: zipfile.ZipInfo, name: str, what: str) -> None:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise BoardResultError(f"{what}: {name!r} has npy format {version}, not 1.0 or 2.0")
    if dtype.hasobject or dtype.kind not in ALLOWED_KINDS or dtype.itemsize > ITEM_BYTES_MAX:
        raise BoardResultError(f"{what}: {name!r} has dtype {dtype}; only plain numbers are accepted "
                               "(no pickled objects, no records)")
    elements = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if elements * dtype.itemsize + member.tell() != info.file_size:
        raise BoardResultError(f"{what}: {name!r} claims shape {list(shape)} of {dtype}, which does not fit its "
                               f"{human_size(info.file_size)}")


# -- the agent's log ------------------------------------------------------------------------------------


@dataclass
class LogTail:
    text: str
    """The last LOG_KEEP_BYTES at most, cleaned of control characters."""
    skipped: int
    """Bytes before that which were not kept."""


def read_log_tail(path: Path, keep: int = LOG_KEEP_BYTES) -> Optional[LogTail]:
    """The end of a log file, cleaned; None when there is no such regular file."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    with open(path, "rb") as f:
        skipped = max(0, info.st_size - keep)
        f.seek(skipped)
        data = f.read(keep)
    return LogTail(clean_text(data.decode("utf-8", "replace")), skipped)


def cap_log_file(path: Path, keep: int = LOG_KEEP_BYTES) -> int:
    """Cut a local log file down to its last `keep` bytes (with a line saying so); the bytes dropped."""
    tail = read_log_tail(path, keep)
    if tail is None or tail.skipped == 0:
        return 0
    path.write_text(f"[{tail.skipped} bytes of the agent's output before this were not kept]\n" + tail.text)
    return tail.skipped
