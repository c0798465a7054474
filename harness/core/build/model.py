"""From a scenario's model source to the one .mnn file every target runs, cached by content.

Two caches, both outside the repository, both keyed by content so a fresh
clone on the same machine reuses them:
- a model built by a script: cache_root()/models/built/<hash of script bytes + options>/model.onnx;
- the converted model: cache_root()/models/mnn/<hash of source bytes + format + options + MNN version>/model.mnn.
Each entry is made in a temp directory next to its final place and renamed
into place when complete, under a lock file, so concurrent runs neither
collide nor ever see half a model. Converted files embed a random UUID:
converting once and shipping the same bytes everywhere is the only way every
board runs the same model.

The converter is MNN's own, `_tools.mnnconvert(argv)`, never the `mnnconvert`
console script nor the wrapper in the `MNN.tools` package (their logging wrapper
pip-installs a package and calls a logging service). With MNN 3.6.1 that
call returns True whatever happens, prints its log on stdout (after the CPU
banner MNN prints at import), silently ignores unknown options and
non-numeric values ("--weightQuantBits banana" converts unquantised), and
segfaults on some malformed inputs (a non-TFLite file given as TFLITE).
So it runs in a child Python whose output is captured, success is judged by
the file it writes and its log, and the options are checked here first
against the converter's own `--help`.
"""

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..cache import cache_root, sha256_file, sha256_json
from ..errors import ModelError
from ..files import building, lock_file, locked
from ..clients.wheels import host_mnn_version, host_site, site_env
from ..fields import describe_file_type
from .signature import Signature, mnn_signature, onnx_signature

__all__ = ["ModelSource", "ModelArtifact", "ModelError", "prepare_model", "build_model", "convert",
           "check_converter_args", "converter_options"]

Log = Callable[[str], None]

BUILD_TIMEOUT_S = 1800.0
"""A build script that has not finished in this time is stuck (SegFormer-B0 at 512x512 takes ~10 s)."""
CONVERT_TIMEOUT_S = 1800.0
"""The same for one conversion (SegFormer-B0 takes ~1 s)."""

CONVERTER_ARGV0 = "mnnconvert"
"""argv[0] handed to _tools.mnnconvert, in-process: a name only, no program is started."""

_CONVERT_CHILD = (
    "import sys\n"
    "import _tools\n"
    "result = _tools.mnnconvert(sys.argv[1:])\n"
    "sys.exit(0 if result in (None, 0, True) else 1)\n"
)
"""The child that runs the converter: its stdout (banner and log) and a crash stay out of this process."""

_FAILURE_MARKERS = ("Converted Failed", "Convert error")
"""Lines MNN's converter prints when it gave up (it still returns True)."""

HARNESS_OPTIONS = {"-f", "--framework", "--modelFile", "--MNNModel", "--bizCode"}
"""Converter options the harness sets itself: the files, the format and the model's tag."""

REFUSED_OPTIONS = {
    "-h": "prints the converter's help instead of converting",
    "--help": "prints the converter's help instead of converting",
    "-v": "prints the converter's version instead of converting",
    "--version": "prints the converter's version instead of converting",
    "--OP": "lists the supported operators instead of converting",
    "--info": "prints model information instead of converting",
    "--saveExternalData": "writes the weights to a second file, and the harness ships one .mnn file",
    "--benchmarkModel": "leaves the weights out, so the outputs would mean nothing",
}
"""Options that would not give one self-contained, runnable .mnn file, and why."""


def _integer_in(allowed: Tuple[int, ...]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return int(value) in allowed
        except ValueError:
            return False
    return check


def _integer(minimum: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return int(value) >= minimum
        except ValueError:
            return False
    return check


def _number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


_VALUE_RULES: Dict[str, Tuple[Callable[[str], bool], str]] = {
    "--useGeluApproximation": (_integer_in((0, 1)), "0 or 1"),
    "--convertMatmulToConv": (_integer_in((0, 1)), "0 or 1"),
    "--alignDenormalizedValue": (_integer_in((0, 1)), "0 or 1"),
    "--transformerFuseC4": (_integer_in((0, 1)), "0 or 1"),
    "--weightQuantBits": (_integer_in((0, 2, 3, 4, 5, 6, 7, 8)), "0 (off) or 2 to 8"),
    "--weightQuantScaleBit": (_integer_in((16, 32)), "16 or 32"),
    "--optimizeLevel": (_integer_in((0, 1, 2)), "0, 1 or 2"),
    "--optimizePrefer": (_integer_in((0, 1, 2)), "0, 1 or 2"),
    "--batch": (_integer(1), "a positive integer"),
    "--weightQuantBlock": (_integer(-1), "-1 (channel-wise) or a block size"),
    "--targetVersion": (_number, "a version number such as 3.6"),
    "--thredhold": (_number, "a number"),
}
"""Values the converter reads as numbers: it takes anything else as 0, silently, so they are checked here."""


@dataclass(frozen=True)
class ModelSource:
    """Where a scenario's model comes from: exactly one of `onnx`, `tflite`, `build_script` or `mnn`."""

    onnx: Optional[Path] = None
    """An existing ONNX file."""
    tflite: Optional[Path] = None
    """An existing TFLite file."""
    build_script: Optional[Path] = None
    """A script run as `python SCRIPT --output OUT.onnx --key value ...` that writes an ONNX file."""
    build_args: dict = field(default_factory=dict)
    """Options of the build script: key `num_classes` becomes `--num-classes`; values are str/int/float/bool."""
    converter_args: tuple = ("--useGeluApproximation", "0")
    """Extra options of MNN's converter. The default keeps GELU exact: the converter approximates it unless told."""
    mnn: Optional[Path] = None
    """A deployed .mnn file, run as it is: no conversion, its own bytes are shipped."""
    source: Optional[Path] = None
    """With `mnn`: the ONNX or TFLite file it was converted from, run only as the source reference."""
    converter_version: Optional[str] = None
    """The MNN release whose converter converts it (None: the installed MNN's); another release's runs from a
    cached site of its own (core/clients/wheels.host_site)."""


@dataclass(frozen=True)
class ModelArtifact:
    """The converted model every target runs, and what the harness knows of it."""

    source_path: Optional[Path]
    """The ONNX/TFLite file that was converted (in the build cache when a script made it); with a deployed
    .mnn, the source the scenario names, or None."""
    source_format: Optional[str]
    """"ONNX" or "TFLITE", as MNN's converter names them (None: no source model)."""
    mnn_path: Path
    """The .mnn file in the conversion cache; ship these bytes, never a re-conversion."""
    mnn_sha256: str
    """SHA-256 of the .mnn bytes: what boards check their copy against."""
    converter_args: tuple
    """The converter options it was made with."""
    inputs: Dict[str, list]
    """Input name -> shape (None or a negative number for a dimension the model leaves open)."""
    outputs: List[str]
    """Output names, in the model's order."""
    output_shapes: Dict[str, Optional[list]] = field(default_factory=dict)
    """Output name -> shape as the model file declares it (None for a dimension it leaves open); absent
    when the file does not say. The scenario's class_axis is checked against it before any board runs."""
    input_dtypes: Dict[str, str] = field(default_factory=dict)
    """Input name -> numpy dtype name the model declares (the source's when there is one: ONNX says int64
    where MNN stores int32)."""
    converted: bool = True
    """False for a deployed .mnn run as it is."""
    converter_version: Optional[str] = None
    """The MNN release whose converter wrote mnn_path (None for a deployed .mnn)."""


def prepare_model(source: ModelSource, log: Log = print) -> ModelArtifact:
    """Build (if a script makes it), read and convert a model, reusing every cached step.

    Raises ModelError when the source is missing or unreadable, the build
    script fails, or the converter refuses the model or the options.
    """
    if source.mnn is not None:
        return _deployed_model(source)
    path, source_format = _source_file(source, log)
    converter_args = tuple(str(arg) for arg in source.converter_args)
    signature = _onnx_signature_or_none(path) if source_format == "ONNX" else None
    converter_version = source.converter_version or mnn_version()
    mnn_path = convert(path, source_format, converter_args, log, converter_version)
    signature = signature or mnn_signature(mnn_path)
    return ModelArtifact(source_path=path, source_format=source_format, mnn_path=mnn_path,
                         mnn_sha256=sha256_file(mnn_path), converter_args=converter_args,
                         inputs=signature.inputs, outputs=signature.outputs, output_shapes=signature.output_shapes,
                         input_dtypes=signature.input_dtypes, converter_version=converter_version)


def _onnx_signature_or_none(path: Path) -> Optional[Signature]:
    try:
        return onnx_signature(path)
    except ImportError:
        return None  # no onnx package: read the names from the converted model


SOURCE_FORMATS = {".onnx": "ONNX", ".tflite": "TFLITE"}
"""Source model formats by file suffix (the `source:` of a deployed .mnn)."""


def _deployed_model(source: ModelSource) -> ModelArtifact:
    """A .mnn run as it is: its own bytes, its own signature; the named source only as the reference.

    Its input names and types come from the .mnn itself (MNN stores int64 as int32): what the app
    feeds. The source, when named, must have the same input and output names.
    """
    mnn_path = Path(source.mnn)
    if not mnn_path.is_file():
        raise ModelError(f"the MNN model {mnn_path} does not exist\n  fix: check `model.mnn` in the scenario")
    signature = mnn_signature(mnn_path)
    dtypes = dict(signature.input_dtypes)
    source_path = Path(source.source) if source.source is not None else None
    source_format = None
    if source_path is not None:
        source_format = SOURCE_FORMATS.get(source_path.suffix.lower())
        if source_format is None:
            raise ModelError(f"`model.source` {source_path} is neither .onnx nor .tflite\n"
                             "  fix: name the ONNX or TFLite file the .mnn was converted from")
        if source_format == "ONNX":
            original = _onnx_signature_or_none(source_path)
            if original is not None:
                missing = sorted((set(signature.inputs) ^ set(original.inputs))
                                 | (set(signature.outputs) - set(original.outputs)))
                if missing:
                    raise ModelError(f"`model.source` {source_path.name} does not match {mnn_path.name}: "
                                     f"{', '.join(missing)} is only in one of them\n"
                                     "  fix: name the source this .mnn was converted from")
                dtypes = {name: original.input_dtypes.get(name, dtype) for name, dtype in dtypes.items()}
    return ModelArtifact(source_path=source_path, source_format=source_format, mnn_path=mnn_path,
                         mnn_sha256=sha256_file(mnn_path), converter_args=(), inputs=signature.inputs,
                         outputs=signature.outputs, output_shapes=signature.output_shapes,
                         input_dtypes=dtypes, converted=False)


def _source_file(source: ModelSource, log: Log) -> Tuple[Path, str]:
    """The file to convert and its format, building it first when a script makes it."""
    given = [name for name in ("onnx", "tflite", "build_script") if getattr(source, name) is not None]
    if len(given) != 1:
        raise ModelError("a model source needs exactly one of onnx, tflite or build_script"
                         + (f", not {' and '.join(given)}" if given else "")
                         + "\n  fix: set one of `onnx`, `tflite` or `build` in the scenario's `model` section")
    if source.build_script is not None:
        script = Path(source.build_script)
        if not script.is_file():
            raise ModelError(f"the model build script {script} {_not_a_file(script)}\n"
                             "  fix: check `model.build` in the scenario (relative paths start at the scenario file)")
        return build_model(script, source.build_args, log), "ONNX"
    path, source_format = (Path(source.onnx), "ONNX") if source.onnx is not None else (Path(source.tflite), "TFLITE")
    if not path.is_file():
        raise ModelError(f"the {source_format} model {path} {_not_a_file(path)}\n"
                         f"  fix: check `model.{source_format.lower()}` in the scenario: give the model file itself")
    return path, source_format


def _not_a_file(path: Path) -> str:
    """Why path is not a file one can read: missing, or a directory, a device, a FIFO..."""
    what = describe_file_type(path)
    return f"is {what}, not a model file" if what else "does not exist"


def build_options(args: dict) -> List[str]:
    """Build arguments as command-line options: {"num_classes": 150} -> ["--num-classes", "150"]."""
    options: List[str] = []
    for name, value in args.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ModelError(f"build argument {name!r} is {type(value).__name__} {value!r}; "
                             "build scripts take strings and numbers\n"
                             "  fix: give `model.build_args` plain values")
        options += [f"--{str(name).replace('_', '-')}", str(value)]
    return options


def build_model(script: Path, args: dict, log: Log = print) -> Path:
    """Run a build script once per (script bytes, options) and return the ONNX file it wrote.

    The key is the options as the script sees them, so `512` and `"512"` are
    the same build.
    """
    options = build_options(args)
    key = sha256_json({"script": sha256_file(script), "options": options})[:20]
    final = cache_root() / "models" / "built" / key
    onnx_path = final / "model.onnx"
    with locked(lock_file(final)):
        if onnx_path.is_file():
            log(f"model: {script.name} [{' '.join(options)}] already built ({key})")
            return onnx_path
        with building(final) as directory:
            argv = [sys.executable, str(script), "--output", str(directory / "model.onnx"), *options]
            log(f"model: building {script.name} [{' '.join(options)}]")
            started = time.monotonic()
            completed = _run(argv, BUILD_TIMEOUT_S, f"the model build script {script}")
            seconds = time.monotonic() - started
            (directory / "build.log").write_text(completed.stdout + completed.stderr)
            if completed.returncode != 0 or not (directory / "model.onnx").is_file():
                raise _build_failure(script, options, completed)
            (directory / "build.json").write_text(json.dumps(
                {"script": str(script.resolve()), "options": options, "seconds": round(seconds, 2),
                 "python": sys.version.split()[0]}, indent=1))
        log(f"model: built {script.name} in {seconds:.1f} s")
    return onnx_path


def _build_failure(script: Path, options: List[str], completed: subprocess.CompletedProcess) -> ModelError:
    output = (completed.stderr.strip() or completed.stdout.strip())
    tail = _tail(output)
    missing = re.search(r"No module named '([^'.]+)", output) or re.search(r"(\w+) is not installed", output)
    if missing:
        fix = (f"{missing.group(1)} is missing: install the model extra with `pip install 'mnn-harness[model]'` "
               "(in a clone: `pip install -e .[model]`)")
    elif completed.returncode == 0:
        fix = "the script exited 0 but wrote no file at --output: it must write the ONNX file there"
    else:
        fix = f"run it by hand to see why: python {script} --output /tmp/model.onnx {' '.join(options)}"
    return ModelError(f"the model build script {script} failed ({_exit_text(completed.returncode)}):\n"
                      f"{tail}\n  fix: {fix}")


def convert(source: Path, source_format: str, converter_args: tuple, log: Log = print,
            converter_version: Optional[str] = None) -> Path:
    """Convert to .mnn once per (source bytes, format, options, MNN version) and return the .mnn path.

    converter_version: another MNN release's converter (None: the installed one's), run in a child with that
    release's site first on its path.
    """
    converter_args = tuple(str(arg) for arg in converter_args)
    version = converter_version or mnn_version()
    site = host_site(version, log)
    check_converter_args(converter_args, version)
    key = sha256_json({"source": sha256_file(source), "format": source_format,
                       "args": list(converter_args), "mnn": version})[:20]
    final = cache_root() / "models" / "mnn" / key
    mnn_path = final / "model.mnn"
    shown_args = " ".join(converter_args) or "(defaults)"
    name = _describe(source)
    with locked(lock_file(final)):
        if mnn_path.is_file():
            log(f"model: {name} already converted with {shown_args} ({key})")
            return mnn_path
        with building(final) as directory:
            argv = [CONVERTER_ARGV0, "-f", source_format, "--modelFile", str(source),
                    "--MNNModel", str(directory / "model.mnn"), "--bizCode", "harness", *converter_args]
            log(f"model: converting {name} with MNN {version}, options {shown_args}")
            started = time.monotonic()
            completed = _run([sys.executable, "-c", _CONVERT_CHILD, *argv], CONVERT_TIMEOUT_S,
                             f"MNN's converter on {source}", env=site_env(site))
            seconds = time.monotonic() - started
            converter_log = completed.stdout + completed.stderr
            (directory / "convert.log").write_text(converter_log)
            problem = _conversion_problem(completed.returncode, directory / "model.mnn", converter_log)
            if problem:
                raise _conversion_failure(source, source_format, shown_args, problem, version, converter_log)
            (directory / "convert.json").write_text(json.dumps(
                {"source": str(source), "format": source_format, "args": list(converter_args), "mnn": version,
                 "seconds": round(seconds, 2)}, indent=1))
        log(f"model: converted {name} in {seconds:.1f} s")
    return mnn_path


def _conversion_failure(source: Path, source_format: str, shown_args: str, problem: str, version: str,
                        converter_log: str) -> ModelError:
    """Why a conversion failed, with the fix: custom ops MNN cannot convert are named once, since no option helps."""
    if source_format == "TFLITE":
        from .tflite_ops import MNN_CONVERTS, describe, unconvertible, custom_ops

        try:
            ops = unconvertible(custom_ops(source))
        except (ModelError, OSError):
            ops = {}  # not readable as TFLite: the converter's own words below say what it made of it
        if ops:
            return ModelError(
                f"MNN's converter cannot convert {source.name}: it uses custom ops MNN does not know: "
                f"{describe(ops)} (MNN {version} converts only the custom ops {' and '.join(MNN_CONVERTS)}; "
                f"the converter {problem}). No converter option changes that.\n"
                "  fix: run these ops outside MNN (cut the model before them and do their work in the app), or "
                "use a variant of the model without them")
    return ModelError(f"MNN's converter failed on {source} ({source_format}) with options [{shown_args}] "
                      f"({problem}, MNN {version}):\n{_tail(converter_log)}\n"
                      "  fix: check the model file and `model.converter_args` in the scenario")


def _describe(source: Path) -> str:
    """A short name for log lines: a built model is named after its script, not `model.onnx`."""
    if source.parent.parent != cache_root() / "models" / "built":
        return source.name
    try:
        built = json.loads((source.parent / "build.json").read_text())
        return f"{Path(built['script']).name} [{' '.join(built['options'])}]"
    except (OSError, ValueError, KeyError):
        return source.name


def _conversion_problem(returncode: int, written: Path, converter_log: str) -> Optional[str]:
    """Why a conversion failed, or None: the converter's return value says nothing, so look at what it did."""
    if returncode != 0:
        return _exit_text(returncode)
    for marker in _FAILURE_MARKERS:
        if marker in converter_log:
            return f"it printed {marker!r}"
    if not written.is_file() or written.stat().st_size == 0:
        return "it wrote no model"
    return None


def check_converter_args(converter_args: tuple, converter_version: Optional[str] = None) -> None:
    """Refuse what the converter would ignore or misread: an unknown option, a missing or bad value.

    MNN's converter ignores unknown options and reads a bad number as 0, so
    a typo such as `--useGeluAproximation 0` would quietly give the default
    (approximated) GELU. Known options come from the converter's `--help` (of converter_version's
    converter; None: the installed one).
    """
    known = converter_options(converter_version)
    shown = f"model.converter_args [{' '.join(converter_args)}]"
    args = list(converter_args)
    index = 0
    while index < len(args):
        option = args[index]
        if not option.startswith("-"):
            after = f"; {args[index - 1]} takes no value" if index else ""
            raise ModelError(f"{shown}: {option!r} is not an option{after}\n"
                             "  fix: options start with --, and only some take a value")
        if option in HARNESS_OPTIONS:
            raise ModelError(f"{shown}: {option} is set by the harness\n"
                             "  fix: leave it out; the harness names the files and the format")
        if option in REFUSED_OPTIONS:
            raise ModelError(f"{shown}: {option} {REFUSED_OPTIONS[option]}\n  fix: leave it out")
        if known and option not in known:
            close = _close_match(option, list(known))
            raise ModelError(f"{shown}: MNN's converter has no option {option!r}; it would ignore it silently\n"
                             f"  fix: {f'did you mean {close}?' if close else 'use one of: ' + ' '.join(sorted(known))}")
        takes_value = known.get(option, option in _VALUE_RULES)
        if not takes_value:
            index += 1
            continue
        if index + 1 >= len(args) or args[index + 1].startswith("--"):
            raise ModelError(f"{shown}: {option} needs a value\n  fix: give it one, e.g. {option} 0")
        value = args[index + 1]
        rule = _VALUE_RULES.get(option)
        if rule is not None and not rule[0](value):
            misread = "read it as 0" if not _number(value) else "take it without a word"
            raise ModelError(f"{shown}: {option} takes {rule[1]}, not {value!r}; the converter would {misread}\n"
                             f"  fix: give {option} {rule[1]}")
        index += 2


def _close_match(option: str, known: List[str]) -> Optional[str]:
    import difflib

    lowered = {name.lower(): name for name in known}
    close = difflib.get_close_matches(option.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


def converter_options(converter_version: Optional[str] = None) -> Dict[str, bool]:
    """The converter's options (name -> takes a value), read from its own `--help`, once per MNN version.

    Empty when the help cannot be read: then only the built-in rules apply.
    """
    return dict(_converter_options(converter_version or mnn_version()))


@lru_cache(maxsize=None)
def _converter_options(version: str) -> Tuple[Tuple[str, bool], ...]:
    try:
        completed = _run([sys.executable, "-c", _CONVERT_CHILD, CONVERTER_ARGV0, "--help"], 120.0,
                         "MNN converter's --help", env=site_env(host_site(version, lambda message: None)))
    except ModelError:
        return ()
    options = re.findall(r"(?m)^\s+(?:-\w, )?(--[A-Za-z0-9_]+)( arg)?", completed.stdout)
    return tuple((name, bool(arg)) for name, arg in options)


def mnn_version() -> str:
    """The installed MNN's version, from its package metadata: importing MNN would print on stdout."""
    return host_mnn_version()


def _run(argv: List[str], timeout: float, what: str, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run a child with its output captured; a child that hangs is an error that names it."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              env=env)
    except subprocess.TimeoutExpired as error:
        # What the child printed before it was killed arrives as bytes, whatever `text` said.
        text = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part
                       for part in (error.stdout, error.stderr) if part)
        raise ModelError(f"{what} did not finish in {timeout:.0f} s:\n{_tail(text)}\n"
                         "  fix: run it by hand to see where it stops") from error


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        return f"crashed with signal {-returncode}"
    return f"exit {returncode}"


def _tail(text: str, lines: int = 15) -> str:
    """The last lines of a child's output, without MNN's CPU banner, each line once (with how often it came:
    the converter repeats its complaint per op), indented under the message."""
    counts: Dict[str, int] = {}
    for line in text.strip().splitlines():
        if not line.startswith("The device supports:"):
            key = re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line)  # the converter stamps every line with the time
            counts[key] = counts.get(key, 0) + 1
    kept = [line + (f"  (x{count})" if count > 1 else "") for line, count in counts.items()]
    return "\n".join("    " + line for line in kept[-lines:]) or "    (no output)"
