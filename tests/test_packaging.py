"""The package as users get it: a wheel installed into a fresh virtual environment, run from an empty directory.

The wheel is built from a copy of the repository (never in the clone: no build/ or egg-info left there),
installed with pip into a new venv under /tmp (its dependencies from pip's cache after the first time), and
used as a stranger would: `harness --version`, `harness doctor`, `harness init` on the quick model and
`harness run` of what init wrote, on the built-in inventory's emulated Cortex-A76. The lower bounds of the
metadata get their own venv, built once per set of bounds and kept in the cache, where the harness of this
checkout runs the quick model. The lock is checked against the metadata and the environment the tests run in.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml

from harness.core import agent_bundle
from harness.core.cache import cache_root
from harness.core.build.model import build_model
from harness.emulation import board as emulated

from .conftest import REPO, TINY_SEGNET
from .lockfile import EXTRAS, canonical, read_lock

PIP_TIMEOUT_S = 1800
DEFAULT_BOARD = "arm-a76"
"""The built-in inventory's emulated board, which an installed harness starts by itself."""


def metadata() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirement(text: str):
    """(canonical name, operator, version) of a `name>=X` / `name==X` requirement (comments stripped)."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(>=|==)\s*([^\s,;]+)\s*", text)
    assert match, f"{text!r}: the metadata writes `name>=lower` (a lower bound) for every dependency"
    return canonical(match.group(1)), match.group(2), match.group(3)


def source_copy(directory: Path) -> Path:
    """The files git tracks (what a clone has), copied: the wheel is built from them, not from the work tree."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    copy = directory / "src"
    if listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            if name and (REPO / name).is_file():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, copy / name)
    else:  # a tarball without .git
        shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv", "reports", "__pycache__",
                                                                  "build", "*.egg-info"))
    return copy


def run(argv: List[str], cwd: Path, env: Optional[Dict[str, str]] = None, timeout: float = 900.0,
        check: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
    if check:
        assert completed.returncode == 0, f"{' '.join(map(str, argv))}: exit {completed.returncode}\n" \
                                          f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    return completed


def user_env(venv: Path, **extra) -> Dict[str, str]:
    """A user's shell with the venv's bin first: no PYTHONPATH into the clone, the same cache as the tests."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}", COLUMNS="100", **extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = source_copy(work)
    # The running venv's setuptools (no isolated build env to download): the same backend pyproject names.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
         str(source)], cwd=work)
    found = list((work / "dist").glob("mnn_harness-*.whl"))
    assert len(found) == 1, found
    return found[0]


def test_the_wheel_carries_the_agent_the_examples_and_the_inventory_and_no_tests_or_built_models(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        agent = {name for name in names if name.startswith("harness/agent/")}
        assert agent == {"harness/agent/mnn_agent.py"} | {f"harness/agent/mnnagent/{path.name}"
                                                           for path in (REPO / "agent" / "mnnagent").glob("*.py")}
        assert archive.read("harness/agent/mnn_agent.py") == (REPO / "agent" / "mnn_agent.py").read_bytes()
        examples = {path.name for path in (REPO / "scenarios").glob("*.yaml")}
        assert {name.split("/")[-1] for name in names if re.fullmatch(r"harness/scenarios/[^/]+\.yaml", name)} \
            == examples and "quick.yaml" in examples
        assert "harness/scenarios/models/tiny_segnet.py" in names
        assert "harness/config/default_inventory.yaml" in names
        # The JSON Schemas beside the examples, as in a clone: an example's `$schema=../schemas/...` holds.
        assert {name for name in names if name.startswith("harness/schemas/")} == {
            f"harness/schemas/{path.name}" for path in (REPO / "schemas").glob("*.schema.json")}
        assert archive.read("harness/schemas/scenario.schema.json") == \
            (REPO / "schemas" / "scenario.schema.json").read_bytes()
        dependencies = [line for line in archive.read(next(n for n in names if n.endswith("METADATA")))
                        .decode().splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [name for name in names if name.startswith(("tests/", "reports/")) or "/tests/" in name]
    assert not [name for name in names if name.endswith((".onnx", ".tflite", ".npz", ".pyc"))]
    assert dependencies and all(">=" in line and "==" not in line for line in dependencies), dependencies


# -- installed into a fresh venv, used from an empty directory -------------------------------------------------


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("user") / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    # --no-compile: no bytecode for the dependencies (a user's pip writes it; here it would only cost time).
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile", str(wheel)], cwd=venv.parent,
        timeout=PIP_TIMEOUT_S)
    return venv


@pytest.fixture(scope="module")
def default_board(emulated_boards):
    """The built-in inventory's board: stopped at the end only if the tests started it."""
    if not (emulated.status(DEFAULT_BOARD) or {}).get("running"):
        emulated_boards.add(DEFAULT_BOARD)
    return DEFAULT_BOARD


def test_the_installed_bundle_has_the_clones_digest_and_bytes(installed, tmp_path):
    code = ("import sys; from pathlib import Path; from harness.core import agent_bundle, shipped; "
            "print(shipped.agent_dir()); print(agent_bundle.bundle(cache_dir=Path(sys.argv[1])))")
    lines = run([str(installed / "bin" / "python"), "-c", code, str(tmp_path / "cache")], cwd=tmp_path,
                env=user_env(installed)).stdout.split()
    assert Path(lines[0]).is_relative_to(installed)  # the package data, not the clone's agent/
    clone = agent_bundle.bundle(cache_dir=tmp_path / "clone-cache")
    assert Path(lines[1]).name == clone.name
    assert Path(lines[1]).read_bytes() == clone.read_bytes()


@pytest.mark.emulated
def test_version_init_and_run_work_from_an_empty_directory(installed, default_board, tmp_path):
    empty = tmp_path / "anywhere"
    empty.mkdir()
    env = user_env(installed, MNN_HARNESS_CACHE=str(cache_root()))
    version = run(["harness", "--version"], cwd=empty, env=env).stdout
    assert version.splitlines()[0] == "mnn-harness 0.1.0"
    assert f"agent {agent_bundle.digest()[:16]}" in version and "host MNN 3.6.1" in version

    doctor = run(["harness", "doctor", "--json"], cwd=empty, env=env)
    checks = json.loads(doctor.stdout)
    assert checks["exit_code"] == 0 and all(check["ok"] for check in checks["checks"]
                                            if check["group"] in ("x86 runs and SSH boards", "emulated boards"))

    model = build_model(TINY_SEGNET, {"height": 64, "width": 64, "num_classes": 8, "seed": 0})
    shutil.copy(model, empty / "segnet.onnx")
    init = run(["harness", "init", "segnet.onnx"], cwd=empty, env=env)
    assert "wrote segnet.yaml" in init.stdout
    written = yaml.safe_load((empty / "segnet.yaml").read_text())
    assert written["model"] == {"onnx": "segnet.onnx"} and written["targets"] == ["x86", DEFAULT_BOARD]
    assert written["outputs"]["logits"]["kind"] == "class_logits"

    ran = run(["harness", "run", "segnet.yaml", "-v"], cwd=empty, env=env, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "PASS 1 board(s) match x86 within tolerance, and x86 matches onnxruntime" in " ".join(ran.stdout.split())
    (run_dir,) = (empty / "reports").iterdir()
    log = (run_dir / "harness.log").read_text()
    assert ran.stderr.strip().splitlines()[-1] == f"log: {Path('reports') / run_dir.name / 'harness.log'}"
    assert "paramiko.transport" in log and "Authentication (publickey) successful" in log  # the SSH conversation
    assert f"{DEFAULT_BOARD}: agent says hello" in log  # the agent's
    assert sorted(path.name for path in empty.iterdir()) == ["reports", "segnet.onnx", "segnet.yaml"]

    example = run(["harness", "run", "example:quick", "--targets", "x86", "-q"], cwd=empty, env=env)
    assert example.stdout.startswith("PASS  only the reference x86 and the source model (onnxruntime) ran")
    assert len(example.stdout.strip().splitlines()) <= 2  # -q: the verdict line (wrapped at 100 columns)


def test_a_missing_qemu_and_sshd_is_one_line_naming_the_debian_packages(installed, tmp_path):
    empty = tmp_path / "anywhere"
    empty.mkdir()
    env = user_env(installed, MNN_HARNESS_CACHE=str(cache_root()))
    env["PATH"] = str(installed / "bin")  # no /usr/bin: neither qemu-aarch64-static nor ssh-keygen
    ran = run(["harness", "run", "example:quick", "--json"], cwd=empty, env=env, check=False)
    assert ran.returncode == 3, ran.stderr
    error = json.loads(ran.stdout)["boards"][DEFAULT_BOARD]["error"]
    assert "emulated boards need the Debian package(s) qemu-user-static, openssh-server" in error
    assert "`apt-get install qemu-user-static openssh-server`" in error and "\n" not in error
    doctor = run(["harness", "doctor", "--json"], cwd=empty, env=env, check=False)
    missing = {check["name"].split()[0] for check in json.loads(doctor.stdout)["checks"] if not check["ok"]}
    assert {"qemu-aarch64-static", "ssh-keygen"} <= missing
    assert doctor.returncode == 0  # x86 runs and SSH boards still work


# -- the lower bounds ------------------------------------------------------------------------------------------


@contextmanager
def locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")
def lower_bounds_venv() -> Path:
    """A venv with exactly the lower bound of every dependency (their own dependencies as pip resolves them),
    built once per set of bounds and Python, and kept in the cache."""
    pins = [f"{name}=={version}" for name, _, version in map(requirement, metadata()["dependencies"])]
    key = hashlib.sha256(json.dumps([sys.version.split()[0], sorted(pins)]).encode()).hexdigest()[:16]
    venv = cache_root() / "lower-bounds" / key
    with locked(venv.with_suffix(".lock")):
        if not (venv / "complete").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
            run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *pins], cwd=venv.parent,
                timeout=PIP_TIMEOUT_S)
            (venv / "complete").write_text("\n".join(pins) + "\n")
    return venv


@pytest.mark.emulated
def test_the_lower_bounds_run_the_quick_model_on_x86_and_an_emulated_board(lower_bounds_venv, default_board,
                                                                           tmp_path):
    versions = run([str(lower_bounds_venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                   cwd=tmp_path).stdout
    installed = {canonical(item["name"]): item["version"] for item in json.loads(versions)}
    for name, _, lower in map(requirement, metadata()["dependencies"]):
        assert installed[name] == lower, name
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}  # this checkout's harness, their packages
    ran = run([str(lower_bounds_venv / "bin" / "python"), "-m", "harness.cli", "run", "example:quick",
               "--reports", str(tmp_path / "reports"), "--json"], cwd=tmp_path, env=env, check=False)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    summary = json.loads(ran.stdout)
    assert summary["boards"]["x86"]["facts"]["mnn_version"] == installed["mnn"]
    assert summary["boards"][DEFAULT_BOARD]["status"] == "ok"
    script = run([str(lower_bounds_venv / "bin" / "python"), "-m", "harness.cli", "completion", "bash"],
                 cwd=tmp_path, env=env).stdout
    assert "harness" in script and "init" in script


# -- the lock --------------------------------------------------------------------------------------------------


def test_the_lock_pins_every_dependency_within_the_metadatas_ranges():
    lock = read_lock()
    project = metadata()
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    for text in wanted:
        name, operator, bound = requirement(text.split("#")[0])
        assert name in lock, f"{name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        version = tuple(int(part) for part in re.findall(r"\d+", lock[name])[:3])
        lower = tuple(int(part) for part in re.findall(r"\d+", bound)[:3])
        assert operator == ">=" and version >= lower, (name, lock[name], bound)


def test_the_tests_run_in_the_locked_environment():
    import importlib.metadata

    lock = read_lock()
    drifted = {}
    for name, version in lock.items():
        try:
            found = importlib.metadata.version(name).split("+")[0]
        except importlib.metadata.PackageNotFoundError:
            found = None
        if found != version:
            drifted[name] = (version, found)
    assert not drifted, f"(locked, installed) differ: {drifted}; `make setup` installs the lock"
