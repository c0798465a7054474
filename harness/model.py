"""From a scenario's model source to the one .mnn file every target runs, cached by content.

Two caches, both outside the repository:
- a model built by a script: cache_root()/models/built/<hash of script + args>/model.onnx;
- the converted model: cache_root()/models/mnn/<hash of source bytes + converter args + MNN version>/.
Converted files embed a random UUID, so converting once and shipping the same
bytes everywhere is the only way every board runs the same model.

The converter is MNN's own, called in-process as `_tools.mnnconvert(argv)`,
never the `mnnconvert` console script (its logging wrapper pip-installs a
package and calls a logging service). It runs in a child Python: it prints
on stdout and a bad option can end the process that calls it.
"""

import difflib
import functools
import fcntl
import json
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .cache import cache_root, sha256_file, sha256_json
from .errors import HarnessError

Log = Callable[[str], None]

_CONVERT = ("import sys, _tools\n"
            "code = _tools.mnnconvert(sys.argv[1:])\n"
            "sys.exit(0 if code in (None, 0, True) else 1)\n")


class ModelError(HarnessError):
    """The model could not be built or converted."""


@dataclass(frozen=True)
class ModelSource:
    onnx: Optional[Path] = None
    tflite: Optional[Path] = None
    build_script: Optional[Path] = None
    """A script run as `python SCRIPT --output OUT.onnx --key value ...`."""
    build_args: dict = field(default_factory=dict)
    """Turned into `--key-with-dashes value` options of the build script."""
    converter_args: tuple = ("--useGeluApproximation", "0")


@dataclass(frozen=True)
class ModelArtifact:
    source_path: Path
    source_format: str
    """"ONNX" or "TFLITE", as MNN's converter names them."""
    mnn_path: Path
    mnn_sha256: str
    converter_args: tuple
    inputs: Dict[str, list]
    """Input name -> shape, read from the source model."""
    outputs: List[str]


@contextmanager
def _locked(directory: Path):
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(str(directory) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _publish(building: Path, final: Path) -> None:
    """Make a finished build directory visible in one rename: a half-built model is never found."""
    if final.exists():
        shutil.rmtree(final)
    building.rename(final)


def build_model(script: Path, args: dict, log: Log = print) -> Path:
    """Run a build script (cached by its bytes and arguments) and return the ONNX it wrote."""
    key = sha256_json({"script": sha256_file(script), "args": args})[:20]
    final = cache_root() / "models" / "built" / key
    onnx_path = final / "model.onnx"
    if onnx_path.is_file():
        return onnx_path
    with _locked(final):
        if onnx_path.is_file():
            return onnx_path
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
        argv = [sys.executable, str(script), "--output", str(building / "model.onnx")]
        for name, value in args.items():
            argv += [f"--{str(name).replace('_', '-')}", str(value)]
        log(f"building {script.name} {' '.join(argv[4:])}")
        completed = subprocess.run(argv, capture_output=True, text=True)
        if completed.returncode != 0 or not (building / "model.onnx").is_file():
            shutil.rmtree(building, ignore_errors=True)
            tail = (completed.stderr or completed.stdout).strip()[-1500:]
            fix = ("install the model extra: `pip install -e .[model]`" if "ModuleNotFoundError" in tail
                   else "run the script by hand to see why")
            raise ModelError(f"the model build script {script} failed (exit {completed.returncode}):\n{tail}\n"
                             f"  fix: {fix}")
        (building / "build.json").write_text(json.dumps({"script": str(script), "args": args}, indent=1))
        _publish(building, final)
    return onnx_path


def convert(source: Path, source_format: str, converter_args: tuple, log: Log = print) -> Path:
    """Convert to .mnn once per (source bytes, options, MNN version)."""
    check_converter_args(converter_args)
    version = _mnn_version()
    key = sha256_json({"source": sha256_file(source), "format": source_format,
                       "args": list(converter_args), "mnn": version})[:20]
    final = cache_root() / "models" / "mnn" / key
    mnn_path = final / "model.mnn"
    if mnn_path.is_file():
        return mnn_path
    with _locked(final):
        if mnn_path.is_file():
            return mnn_path
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
        argv = ["mnnconvert", "-f", source_format, "--modelFile", str(source),
                "--MNNModel", str(building / "model.mnn"), "--bizCode", "harness", *converter_args]
        log(f"converting {source.name} with MNN {version} {' '.join(converter_args)}")
        completed = subprocess.run([sys.executable, "-c", _CONVERT, *argv], capture_output=True, text=True)
        (building / "convert.log").write_text(completed.stdout + completed.stderr)
        if completed.returncode != 0 or not (building / "model.mnn").is_file() \
                or (building / "model.mnn").stat().st_size == 0:
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
            shutil.rmtree(building, ignore_errors=True)
            raise ModelError(f"MNN's converter failed on {source} with options {list(converter_args)} "
                             f"(exit {completed.returncode}):\n{tail}\n"
                             "  fix: check `model.converter_args` in the scenario")
        (building / "convert.json").write_text(json.dumps(
            {"source": str(source), "format": source_format, "args": list(converter_args), "mnn": version},
            indent=1))
        _publish(building, final)
    return mnn_path


# Options whose value MNN's converter reads as a number: it takes "banana" as 0, silently.
_NUMERIC_OPTIONS = {"--weightQuantBits", "--useGeluApproximation", "--optimizeLevel", "--optimizePrefer",
                    "--batch", "--weightQuantBlock", "--weightQuantScaleBit", "--convertMatmulToConv",
                    "--alignDenormalizedValue", "--transformerFuseC4", "--thredhold", "--targetVersion"}
_converter_options_cache: Dict[str, Dict[str, bool]] = {}


def converter_options() -> Dict[str, bool]:
    """The converter's options (name -> takes a value), read from its own --help."""
    version = _mnn_version()
    if version not in _converter_options_cache:
        completed = subprocess.run([sys.executable, "-c", _CONVERT, "mnnconvert", "--help"],
                                   capture_output=True, text=True)
        options = {}
        for match in re.finditer(r"(?m)^\s+(?:-\w, )?(--[A-Za-z0-9_]+)( arg)?", completed.stdout):
            options[match.group(1)] = bool(match.group(2))
        _converter_options_cache[version] = options
    return _converter_options_cache[version]


def check_converter_args(converter_args: tuple) -> None:
    """Refuse what the converter would silently ignore: an unknown flag, a missing or non-numeric value."""
    options = converter_options()
    if not options:
        return  # an MNN whose help we cannot read: let the converter judge
    args = list(converter_args)
    index = 0
    while index < len(args):
        flag = args[index]
        if flag not in options:
            close = difflib.get_close_matches(flag, list(options), n=1)
            raise ModelError(f"MNN's converter has no option {flag!r} (in model.converter_args)"
                             + (f"; did you mean {close[0]}?" if close else ""))
        if options[flag]:
            if index + 1 >= len(args):
                raise ModelError(f"converter option {flag} needs a value (in model.converter_args)")
            value = args[index + 1]
            if flag in _NUMERIC_OPTIONS:
                try:
                    float(value)
                except ValueError:
                    raise ModelError(f"converter option {flag} needs a number, got {value!r} "
                                     "(in model.converter_args); the converter would read it as 0") from None
            index += 2
        else:
            index += 1


@functools.lru_cache(maxsize=None)
def _mnn_version() -> str:
    # MNN prints its CPU banner on stdout at import; ask a child so ours stays clean.
    completed = subprocess.run([sys.executable, "-c", "import MNN, sys; sys.stderr.write(MNN.version())"],
                               capture_output=True, text=True)
    return completed.stderr.strip().splitlines()[-1] if completed.returncode == 0 else "unknown"


def onnx_signature(path: Path):
    """Input name -> shape (None for symbolic dimensions), and output names, from an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        inputs[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return inputs, [value.name for value in model.graph.output]


def tflite_signature(path: Path):
    from ai_edge_litert.interpreter import Interpreter  # optional: only TFLite sources need it

    interpreter = Interpreter(model_path=str(path))
    inputs = {d["name"]: [int(x) for x in d["shape"]] for d in interpreter.get_input_details()}
    return inputs, [d["name"] for d in interpreter.get_output_details()]


def prepare_model(source: ModelSource, log: Log = print) -> ModelArtifact:
    if source.build_script is not None:
        path, fmt = build_model(source.build_script, source.build_args, log), "ONNX"
    elif source.onnx is not None:
        path, fmt = source.onnx, "ONNX"
    elif source.tflite is not None:
        path, fmt = source.tflite, "TFLITE"
    else:
        raise ModelError("the scenario names no model source")
    try:
        inputs, outputs = onnx_signature(path) if fmt == "ONNX" else tflite_signature(path)
    except ImportError as error:
        raise ModelError(f"reading {path} needs {error.name}: `pip install -e .[model]`") from error
    except Exception as error:
        raise ModelError(f"{path} is not a readable {fmt} model: {error}") from error
    mnn_path = convert(path, fmt, tuple(source.converter_args), log)
    return ModelArtifact(source_path=path, source_format=fmt, mnn_path=mnn_path,
                         mnn_sha256=sha256_file(mnn_path), converter_args=tuple(source.converter_args),
                         inputs=inputs, outputs=outputs)

