"""`harness init MODEL [--board USER@HOST]`: a starter scenario read from the model, and a board checked before
it is written into an inventory.

The scenario holds what the file says (its inputs with their shapes and types, its outputs) and guesses the
rest where the file makes it likely: an image input gets the shipped photo and a resize to its size, an output
of per-pixel or per-class scores is judged by its labels. Every guess has a comment saying what to check; the
file runs as written, so the first run shows the numbers before anyone edits anything.

With --board, the board is probed as `harness boards` probes it (its host key against known_hosts, never
trusted silently) and only a board that can run the scenario is written, beside the scenario, into
inventory.yaml: a new file with the x86 host and that board, or the entry appended to an inventory that has its
`boards:` last. By default (`--mnn provision`) the board needs only a CPython >= 3.8 and glibc: its Python,
machine and C library are probed as the provisioner probes them, and the entry leaves `mnn` out, so the first
run brings the host's MNN and numpy there (init fetches and ships nothing: the run does, once, cached by
content). `--mnn system` writes `mnn: system` and the MNN version the agent's probe found in the board's own
Python, which must have numpy and MNN. The CPU features boards are picked by (`--targets tag:fp16`) become tags
beside the machine.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import yaml

from ..analysis.diagnose import FP16_FEATURES
from ..config.inventory import MNN_MODES, BoardSpec, SshBoard, load_inventory
from ..config.schema import MODELINE
from ..core.errors import BoardError, ConfigError
from ..core.build.inspect_model import inspect_model, resolve_model_path
from ..core.build.signature import Signature, TensorInfo
from ..core.files import write_atomic
from ..core.shipped import schema_path
from ..core.clients.wheels import NUMPY_CANDIDATES, VERSION, cached_wheel, host_mnn_version
from ..record.numbers import shape_text
from ..execution.targets import make_target
from ..execution.targets.provision import PythonFacts

Log = Callable[[str], None]
MODEL_KEYS = {"ONNX": "onnx", "TFLITE": "tflite", "MNN": "mnn"}
DEFAULT_SIDE = 224
"""The image size written where the model leaves height and width open."""
BOARD = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
"""USER@HOST[:PORT]; an IPv6 address in brackets."""
FEATURE_TAGS = (("fp16", FP16_FEATURES), ("dotprod", {"asimddp"}), ("i8mm", {"i8mm"}), ("sve2", {"sve2"}))
"""Tags from the CPU features the agent's probe reports, named as the farm's and the docs' boards are tagged
(fp16 by the same features the diagnosis reads as "computes in FP16 at precision low")."""


@dataclass
class InitResult:
    """What `harness init` wrote."""

    model: Path
    signature: Signature
    scenario: Path
    inventory: Optional[Path] = None
    inventory_action: Optional[str] = None
    """"written" (a new inventory.yaml) or "added to" (an existing one)."""
    board: Optional[str] = None
    board_facts: dict = field(default_factory=dict)
    """The agent's probe of the board's own Python: machine, Python, CPU features (and, with --mnn system, its
    MNN version)."""
    mnn: Optional[str] = None
    """The board's `mnn`: provision (the harness brings MNN) or system (the board's own)."""
    provisioning: dict = field(default_factory=dict)
    """For a provisioned board: its Python as the provisioner saw it (python, machine, libc), the MNN version
    the first run brings (mnn_version), whether the board holds it already (on_board) and, when this host has
    the wheels already, their size (wheels_mb, else None: the first run fetches them)."""
    guesses: List[str] = field(default_factory=list)
    """What the scenario guessed and the user should check, one line each."""

    def as_dict(self) -> dict:
        return {"model": str(self.model), "format": self.signature.format, "scenario": str(self.scenario),
                "inventory": str(self.inventory) if self.inventory else None,
                "inventory_action": self.inventory_action, "board": self.board, "board_facts": self.board_facts,
                "mnn": self.mnn, "provisioning": self.provisioning, "guesses": self.guesses}


def init_files(model: str, board: Optional[str] = None, name: Optional[str] = None, key: Optional[str] = None,
               known_hosts: Optional[str] = None, python: str = "python3", output: Optional[str] = None,
               force: bool = False, mnn: Optional[str] = None, log: Log = lambda message: None) -> InitResult:
    """mnn: how the board gets MNN (provision, the default, or system); only with a board."""
    if mnn is not None and board is None:
        raise ConfigError("harness init", "--mnn", "says how a board gets MNN, and no --board was given",
                          "add --board USER@HOST, or leave --mnn out")
    if mnn is not None and mnn not in MNN_MODES:
        raise ConfigError("harness init", "--mnn", f"{mnn!r} is not one of {', '.join(MNN_MODES)}",
                          "provision: the harness brings MNN; system: the board's own")
    path = resolve_model_path(model).resolve()
    scenario_path = Path(output) if output else Path(f"{_slug(path.stem)}.yaml")
    if scenario_path.suffix not in (".yaml", ".yml"):
        raise ConfigError(scenario_path, None, "a scenario is a .yaml file", "give --output NAME.yaml")
    if scenario_path.exists() and not force:
        raise ConfigError(scenario_path, None, "exists already", "pass --force to overwrite it, or --output "
                          "OTHER.yaml")
    log(f"reading {path}")
    signature = inspect_model(path)
    if not [t for t in signature.tensors if t.role == "input"] or not [t for t in signature.tensors
                                                                       if t.role == "output"]:
        raise ConfigError(path, None, "the model declares no inputs or no outputs", "check the file")
    spec = None
    inventory_path = scenario_path.parent / "inventory.yaml"
    if board is not None:
        spec = board_spec(board, name, key, known_hosts, python, mnn or "provision")
        check_inventory_room(inventory_path, spec.name)
        log(f"checking {spec.name} ({spec.user + '@' if spec.user else ''}{spec.host}"
            f"{':' + str(spec.port) if spec.port else ''}): host key, "
            + ("Python, machine and C library" if spec.mnn == "provision" else "Python, numpy and MNN"))
    result = InitResult(model=path, signature=signature, scenario=scenario_path, board=spec.name if spec else None,
                        mnn=spec.mnn if spec else None)
    if spec is not None:
        result.board_facts, python_facts = probe(spec)
        if python_facts is not None:
            result.provisioning = first_run(python_facts)
    text, result.guesses = scenario_text(path, signature, scenario_path.parent,
                                         targets=["x86", spec.name] if spec else ["x86", "arm-a76"],
                                         written_as=model if model.startswith("pkg:") else None)
    write_atomic(scenario_path, text)
    if spec is not None:
        result.inventory, result.inventory_action = write_inventory(inventory_path, spec, result.board_facts,
                                                                    result.provisioning)
    return result


# -- the board -----------------------------------------------------------------------------------------------


def board_spec(text: str, name: Optional[str], key: Optional[str], known_hosts: Optional[str],
               python: str, mnn: str = "provision") -> BoardSpec:
    match = BOARD.fullmatch(text.strip())
    if not match or (match.group("port") and not 1 <= int(match.group("port")) <= 65535):
        raise ConfigError("harness init", "--board", f"{text!r} is not USER@HOST[:PORT]",
                          "e.g. --board root@192.168.1.42 or --board pi@rk3588.lab:2222")
    host = match.group("host").strip("[]")
    board_name = name or _slug(host.replace(":", "-"))
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", board_name):
        raise ConfigError("harness init", "--name", f"{board_name!r} is not a board name",
                          "letters, digits, '.', '_' and '-' (it names folders)")
    files = {}
    for option, value in (("--key", key), ("--known-hosts", known_hosts)):
        if value is not None:
            file = Path(value).expanduser().resolve()
            if not file.is_file():
                raise ConfigError(value, option, "no such file", "give the path of the file itself")
            files[option] = str(file)
    if not python.strip():
        raise ConfigError("harness init", "--python", "is empty", "give the board's Python, e.g. python3")
    return SshBoard(name=board_name, kind="ssh", host=host, user=match.group("user"),
                    port=int(match.group("port")) if match.group("port") else None, key=files.get("--key"),
                    known_hosts=files.get("--known-hosts"), python=python, mnn=mnn)


def probe(spec: BoardSpec) -> Tuple[dict, Optional[dict]]:
    """The agent's probe of the board, and (for a provisioned board) its Python as the provisioner sees it;
    BoardError (exit 3) naming what is wrong there, and what to do."""
    health = make_target(spec).probe()
    if not health["reachable"]:
        raise BoardError(f"{health['error']}\n  fix: the inventory was not written; make `ssh "
                         f"{spec.user + '@' if spec.user else ''}{spec.host}"
                         f"{' -p ' + str(spec.port) if spec.port else ''}` work first (its host key in known_hosts)")
    facts = dict(health.get("facts") or {})
    if spec.mnn == "provision":
        if health.get("provision_error"):
            raise BoardError(f"{health['provision_error']}\n  nothing was written (for `harness init`: `python` is "
                             "--python PATH, `mnn: system` is --mnn system)")
        # The board's own numpy and MNN are not needed: that they are missing is no error here.
        facts.pop("errors", None)
        return facts, {**health["python_facts"], "provisioned": health.get("provisioned") or []}
    problems = facts.get("errors") or []
    if problems:
        raise BoardError(f"{spec.name}: its Python ({spec.python}) cannot run the agent: {'; '.join(problems)}\n"
                         "  fix: install numpy and MNN for that Python on the board (`pip install MNN numpy`), "
                         "or leave out --mnn system: the harness then brings them (the board needs only "
                         "Python >= 3.8)")
    return facts, None


def first_run(python_facts: dict) -> dict:
    """What the first run brings to a provisioned board: the host's MNN version (an entry written by init pins
    none), whether the board holds it already (an earlier run brought it) and, if this host has both wheels for
    that Python already, their size. Nothing is fetched here: the run fetches once and keeps the wheels by
    content."""
    facts = PythonFacts(python_facts["implementation"], tuple(int(part) for part in python_facts["python"].split(".")),
                        python_facts["machine"], python_facts["bits"], python_facts["libc"])
    version = host_mnn_version()
    mnn = cached_wheel("MNN", version, facts.platform)
    numpy = next((wheel for wheel in (cached_wheel("numpy", candidate, facts.platform)
                                      for candidate in NUMPY_CANDIDATES) if wheel), None)
    size = sum(wheel.path.stat().st_size for wheel in (mnn, numpy)) / 1e6 if mnn and numpy else None
    return {"python": python_facts["python"], "machine": python_facts["machine"], "libc": python_facts["libc"],
            "mnn_version": version, "numpy_version": numpy.version if numpy else None, "wheels_mb": size,
            "on_board": version in python_facts["provisioned"]}


def check_inventory_room(path: Path, name: str) -> None:
    """Before probing: the board must be new to an existing inventory, which must take an appended entry."""
    if not path.exists():
        return
    inventory = load_inventory(path)
    if name in inventory.boards:
        raise ConfigError(path, f"boards.{name}", "exists already", "give the new board another --name")
    _append_column(path)


def write_inventory(path: Path, spec: BoardSpec, facts: dict, provisioning: dict) -> Tuple[Path, str]:
    entry = inventory_entry(spec, facts, provisioning)
    if not path.exists():
        write_atomic(path, schema_line("inventory", path.parent) + "\n"
                     "# Written by `harness init`: this machine (the reference) and your board.\n"
                     "boards:\n  x86:\n    kind: local\n    tags: [x86_64, reference]\n" + _indent(entry, 2))
        return path, "written"
    column = _append_column(path)
    text = path.read_text()
    write_atomic(path, text + ("" if text.endswith("\n") else "\n") + _indent(entry, column))
    load_inventory(path)  # what was appended reads back, or the error names it
    return path, "added to"


def inventory_entry(spec: BoardSpec, facts: dict, provisioning: dict) -> str:
    lines = [f"{spec.name}:", "  kind: ssh", f"  host: {_quote(spec.host)}"]
    if spec.port:
        lines.append(f"  port: {spec.port}")
    if spec.user:
        lines.append(f"  user: {_quote(spec.user)}")
    if spec.key:
        lines.append(f"  key: {_quote(spec.key)}")
    if spec.known_hosts:
        lines.append(f"  known_hosts: {_quote(spec.known_hosts)}")
    if spec.python != "python3":
        lines.append(f"  python: {_quote(spec.python)}")
    tags = [tag for tag in (facts.get("machine"),) if isinstance(tag, str) and re.fullmatch(r"[A-Za-z0-9._-]+", tag)]
    tags += feature_tags(facts.get("cpu_features"))
    if tags:
        lines.append(f"  tags: [{', '.join(tags)}]")
    if spec.mnn == "system":
        lines.append("  mnn: system                     # the board's own numpy and MNN, not brought by the harness")
        if isinstance(facts.get("mnn_version"), str) and VERSION.fullmatch(facts["mnn_version"]):  # a board's word
            lines.append(f"  mnn_version: \"{facts['mnn_version']}\"   # found by `harness init`; another is "
                         "reported")
    else:
        lines += ["  # The harness brings MNN and numpy to this board; nothing is installed there",
                  f"  # (Python {provisioning['python']}, {provisioning['libc']}). MNN {provisioning['mnn_version']} "
                  "as on the host, unless",
                  "  # `mnn_version: \"X.Y.Z\"` asks for another; `mnn: system` runs the board's own."]
    return "\n".join(lines) + "\n"


def feature_tags(features) -> list:
    """The tags boards are picked by that these CPU features give (fp16, dotprod, i8mm, sve2)."""
    have = set(features) if isinstance(features, list) else set()
    return [tag for tag, flags in FEATURE_TAGS if have & set(flags)]


def _append_column(path: Path) -> int:
    """The column of the entries under `boards:`, when `boards:` is the file's last key and a block mapping."""
    try:
        root = yaml.compose(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(path, None, f"is not YAML: {error}", "fix the file") from None
    last = root.value[-1] if isinstance(root, yaml.MappingNode) and root.value else None
    if last is None or last[0].value != "boards" or not isinstance(last[1], yaml.MappingNode) \
            or last[1].flow_style or not last[1].value:
        raise ConfigError(path, "boards", "cannot take an appended entry (it is not the file's last key, or is "
                          "written inline)", "pass --output into another directory, or move `boards:` last")
    return last[1].value[0][0].start_mark.column


# -- the scenario --------------------------------------------------------------------------------------------


def scenario_text(model: Path, signature: Signature, directory: Path, targets: List[str],
                  written_as: Optional[str] = None) -> Tuple[str, List[str]]:
    """The scenario's YAML, with a comment on every guess, and the guesses as lines for the terminal.
    written_as: how the scenario names the model (`pkg:PACKAGE/path`, which survives a reinstall), if not by path."""
    inputs = [t for t in signature.tensors if t.role == "input"]
    outputs = [t for t in signature.tensors if t.role == "output"]
    nhwc = signature.format == "TFLITE"
    images = [t for t in inputs if _image_layout(t, nhwc)]
    guesses: List[str] = []
    relative = written_as or (os.path.relpath(model, directory.resolve()) if _same_tree(model, directory)
                              else str(model))
    lines = [schema_line("scenario", directory),
             f"# Written by `harness init` from {model.name} ({signature.format}). It runs as it is (`harness run",
             "# FILE`); then make what the comments point at your app's, and run it again.",
             f"name: {_slug(model.stem)}",
             "model:",
             f"  {MODEL_KEYS[signature.format]}: {_quote(relative)}"]
    if signature.format == "MNN":
        lines.append("  # source: model.onnx           # the file it came from: adds the x86 vs ONNX Runtime check")
    lines.append("inputs:")
    for tensor in inputs:
        layout = _image_layout(tensor, nhwc)
        shape = shape_text(tensor.shape)
        if layout and len(inputs) == 1:
            lines += [f"  images: [skimage:astronaut]     # {tensor.name} {shape} {tensor.dtype}: "
                      "your own images here (files, globs)"]
        elif layout:
            lines += [f"  {_key(tensor.name)}: {{image: [skimage:astronaut]}}   # {shape} {tensor.dtype}: "
                      "your own images here"]
        else:
            dims = [1 if d is None else d for d in tensor.shape or []]
            dtype = tensor.dtype if tensor.dtype in ("float32", "int32", "int64", "uint8") else "float32"
            high = "1" if dtype == "float32" else "2"
            lines += [f"  {_key(tensor.name)}:   # {shape} {tensor.dtype}: seeded random values; give real data "
                      "(npz:, value:, loader:)",
                      f"    random: {{shape: {dims}, dtype: {dtype}, low: 0, high: {high}, seed: 0}}"]
            guesses.append(f"input {tensor.name}: random {dtype} values in [0, {high}) of shape {dims}; "
                           "real data shows real differences")
    if images:
        height, width = _image_size(images[0], nhwc)
        guessed_size = (height, width) != tuple(d for d in _hw(images[0], nhwc))
        lines += ["preprocess:                       # guessed: make it what your app does before the model",
                  "  color: rgb                      # images are read as BGR; rgb converts, bgr keeps",
                  f"  resize: {{height: {height}, width: {width}, interpolation: linear}}"
                  + ("   # the model leaves the size open: pick yours" if guessed_size else ""),
                  "  scale: 1/255",
                  "  # mean: [0.485, 0.456, 0.406]   # your model's normalisation, if it has one",
                  "  # std: [0.229, 0.224, 0.225]",
                  f"  layout: {'NHWC' if nhwc else 'NCHW'}"]
        guesses.append(f"preprocess: rgb, resize to {height}x{width}, scale 1/255, no mean/std: make it your app's")
    lines += ["run:",
              "  precision: normal               # low: FP16 where the board has it (the classic ARM difference)",
              f"targets: [{', '.join(targets)}]" + ("           # boards of the inventory (the built-in one: "
                                                    "this machine and an emulated Cortex-A76)"
                                                    if targets == ["x86", "arm-a76"] else ""),
              "outputs:"]
    for tensor in outputs:
        kind, axis, why = guess_kind(tensor, nhwc)
        lines.append(f"  {_key(tensor.name)}:   # {shape_text(tensor.shape)} {tensor.dtype}")
        if why:
            lines.append(f"    # guessed: {why}")
        lines.append(f"    kind: {kind}")
        if kind == "class_logits":
            lines.append(f"    class_axis: {axis}")
        guesses.append(f"output {tensor.name}: kind {kind}" + (f" ({why})" if why else ""))
    return "\n".join(lines) + "\n", guesses


def guess_kind(tensor: TensorInfo, nhwc: bool) -> Tuple[str, int, str]:
    """(kind, class axis, why): class_logits only where the shape says scores over classes; else a tensor."""
    shape = tensor.shape
    if not tensor.dtype.startswith("float"):
        return "tensor", 1, "integers are compared exactly"
    if shape is None or any(d is None for d in shape[1:]):
        return "tensor", 1, "its shape is open: judged by its SNR"
    if len(shape) == 4:
        axis = 3 if nhwc else 1
        if shape[axis] > 1 and all(shape[i] > 1 for i in ((1, 2) if nhwc else (2, 3))):
            return ("class_logits", axis, f"{shape[axis]} scores per pixel, judged by their argmax labels "
                    "(not classes? make it tensor)")
    if len(shape) == 2 and shape[1] > 1:
        return ("class_logits", 1, f"{shape[1]} scores per sample, judged by the top class (not classes? make "
                "it tensor)")
    if len(shape) == 4:
        return "tensor", 1, "judged by its SNR (a probability per pixel? probability_map, threshold: 0.5)"
    return "tensor", 1, "judged by its SNR (one yes/no per element? decision, threshold: 0.5)"


def _image_layout(tensor: TensorInfo, nhwc: bool) -> Optional[str]:
    """NCHW or NHWC for a float input of 3 channels (an image), else None."""
    if tensor.shape is None or len(tensor.shape) != 4 or not tensor.dtype.startswith("float"):
        return None
    if not nhwc and tensor.shape[1] == 3:
        return "NCHW"
    if nhwc and tensor.shape[3] == 3:
        return "NHWC"
    return None


def _hw(tensor: TensorInfo, nhwc: bool) -> Tuple[Optional[int], Optional[int]]:
    return (tensor.shape[1], tensor.shape[2]) if nhwc else (tensor.shape[2], tensor.shape[3])


def _image_size(tensor: TensorInfo, nhwc: bool) -> Tuple[int, int]:
    height, width = _hw(tensor, nhwc)
    return height or DEFAULT_SIDE, width or DEFAULT_SIDE


def schema_line(kind: str, directory: Path) -> str:
    """The first line that gives an editor the file's JSON Schema (checks and completion as one types): the
    installed schema, by a relative path when it lives near the file (a project's .venv), else absolute."""
    schema = schema_path(kind).resolve()
    where = os.path.relpath(schema, directory.resolve()) if _same_tree(schema, directory) else str(schema)
    return MODELINE.format(where)


def _same_tree(model: Path, directory: Path) -> bool:
    """Whether a relative path from the scenario's directory reads well (the model is beneath or beside it)."""
    try:
        model.relative_to(directory.resolve().parent)
        return True
    except ValueError:
        return False


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"
    return slug[:64]


def _key(name: str) -> str:
    """A tensor name as a YAML key (quoted when YAML would read it as something else)."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name) else _quote(name)


def _quote(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_./@+-]+", text) and not text[0] in "-." else \
        '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _indent(text: str, column: int) -> str:
    return "".join(" " * column + line if line.strip() else line for line in text.splitlines(keepends=True))

