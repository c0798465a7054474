"""The agent as one file: a deterministic zipapp of agent/, built once per content, run as the script runs.

The boards run it under the real aarch64 MNN: tests/test_warm_boards.py checks
what their stores hold.
"""

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.core import agent_bundle

from .test_agent import AGENT, make_job, run_agent, tiny_model  # noqa: F401  (the fixture, shared)

AGENT_DIR = AGENT.parent
PACKAGE = AGENT_DIR / "mnnagent"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_of_the_sources(directory: Path) -> Path:
    """agent/ copied with other times and modes than the repo's, and the litter a run leaves (bytecode)."""
    copy = directory / "agent"
    shutil.copytree(AGENT_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
        path.chmod(0o700 if path.is_dir() else 0o600)
    (copy / "mnnagent" / "__pycache__").mkdir()
    (copy / "mnnagent" / "__pycache__" / "job.cpython-311.pyc").write_bytes(b"\x00stale bytecode")
    (copy / "mnnagent" / "stray.pyc").write_bytes(b"\x00stale bytecode")
    return copy


def test_the_bundle_is_byte_identical_across_builds_from_a_clean_cache(tmp_path):
    here = agent_bundle.bundle(cache_dir=tmp_path / "cache-a")
    # Another process, clock zone, umask and locale, from a copy whose files have other times and modes.
    code = ("import sys; from pathlib import Path; from harness.core import agent_bundle; "
            "print(agent_bundle.bundle(Path(sys.argv[1]), Path(sys.argv[2])))")
    env = {**os.environ, "TZ": "Pacific/Kiritimati", "LC_ALL": "C", "PYTHONHASHSEED": "123"}
    there = subprocess.run(["sh", "-c", 'umask 077; exec "$@"', "sh", sys.executable, "-c", code,
                            str(copy_of_the_sources(tmp_path)), str(tmp_path / "cache-b")],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(there).parent == tmp_path / "cache-b"
    assert Path(there).read_bytes() == here.read_bytes()
    with zipfile.ZipFile(here) as bundle:
        names = bundle.namelist()
        assert names == sorted(names)
        assert names == ["__main__.py"] + sorted(f"mnnagent/{path.name}" for path in PACKAGE.glob("*.py"))
        assert bundle.read("__main__.py") == AGENT.read_bytes()
        assert {info.date_time for info in bundle.infolist()} == {agent_bundle.ZIP_TIME}
        assert {info.compress_type for info in bundle.infolist()} == {zipfile.ZIP_STORED}


def test_a_source_edit_builds_a_new_bundle_with_another_sha_and_a_lookup_builds_nothing(tmp_path):
    sources, cache = copy_of_the_sources(tmp_path), tmp_path / "cache"
    first = agent_bundle.bundle(sources, cache)
    first_sha, first_inode = sha256(first), first.stat().st_ino
    assert agent_bundle.bundle(sources, cache) == first and first.stat().st_ino == first_inode  # found, not rebuilt
    with open(sources / "mnnagent" / "protocol.py", "a") as f:
        f.write("# an edit\n")
    second = agent_bundle.bundle(sources, cache)
    assert second != first and sha256(second) != first_sha
    assert sha256(first) == first_sha  # the old bundle is left as it was
    with zipfile.ZipFile(second) as bundle:
        assert bundle.read("mnnagent/protocol.py").endswith(b"# an edit\n")
    assert sorted(path.name for path in cache.iterdir()) == sorted([first.name, second.name])  # no temp left


def test_missing_sources_are_a_setup_error_that_names_the_place(tmp_path):
    (tmp_path / "agent").mkdir()
    with pytest.raises(agent_bundle.AgentSourceError, match=f"not in {tmp_path / 'agent'}: it needs mnn_agent.py"):
        agent_bundle.bundle(tmp_path / "agent", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()

def test_the_bundle_runs_a_job_and_the_probe_as_the_script_does(tmp_path, tiny_model):
    _, mnn_path = tiny_model
    bundle = agent_bundle.bundle(cache_dir=tmp_path / "cache")
    script_dir, bundle_dir = tmp_path / "script", tmp_path / "bundle"
    for directory in (script_dir, bundle_dir):
        directory.mkdir()
        make_job(directory, mnn_path)
    completed, expected = run_agent(script_dir)
    assert completed.returncode == 0, expected
    ran = subprocess.run([sys.executable, str(bundle), str(bundle_dir)], capture_output=True, text=True,
                         cwd=tmp_path)  # nowhere near agent/: the bundle brings its package
    result = json.loads((bundle_dir / "result.json").read_text())
    assert ran.returncode == 0 and ran.stdout == "", (ran.stderr, result)
    assert set(result) == set(expected)
    for key in ("status", "api", "backend", "inputs", "outputs", "mnn_version", "mnn_banner", "agent"):
        if key != "agent":
            assert result[key] == expected[key], key
    assert result["agent"]["mode"] == "one-shot"
    with np.load(script_dir / "outputs.npz") as a, np.load(bundle_dir / "outputs.npz") as b:
        assert np.array_equal(a["logits"], b["logits"])
    probed = subprocess.run([sys.executable, str(bundle), "--probe", str(tmp_path / "probe.json")],
                            capture_output=True, text=True, cwd=tmp_path)
    facts = json.loads((tmp_path / "probe.json").read_text())
    assert probed.returncode == 0 and facts["errors"] == [] and facts["mnn_version"] == expected["mnn_version"]
    usage = subprocess.run([sys.executable, str(bundle)], capture_output=True, text=True, cwd=tmp_path)
    assert usage.returncode == 2 and "usage: mnn_agent.py JOB_DIR" in usage.stderr


# Modules new in the standard library after Python 3.8, which a board with 3.8 lacks.
AFTER_3_8 = {"graphlib", "zoneinfo", "tomllib"}
REQUIRED = {"numpy", "MNN"}
OPTIONAL = {"cv2"}
"""Used when the board has it, behind `except ImportError` (OpenCV for the preprocessing check)."""


def agent_sources():
    return [AGENT, *sorted(PACKAGE.glob("*.py"))]


def test_the_agent_is_python_3_8_and_imports_only_numpy_mnn_and_the_standard_library():
    stdlib = set(sys.stdlib_module_names) - AFTER_3_8
    local = {path.stem for path in PACKAGE.glob("*.py")} | {"mnnagent"}
    found = set()
    for path in agent_sources():
        tree = ast.parse(path.read_text(), str(path), feature_version=(3, 8))  # a SyntaxError past 3.8 grammar
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(handler.type, ast.Name) and handler.type.id == "ImportError"
                    for handler in node.handlers):
                guarded.update(id(child) for statement in node.body for child in ast.walk(statement))
            # Run-time subscripted builtins (list[int]) and `X | Y` annotations need 3.9 / 3.10.
            annotations = [node.returns] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else []
            if isinstance(node, ast.arg) or isinstance(node, ast.AnnAssign):
                annotations.append(node.annotation)
            for annotation in filter(None, annotations):
                for part in ast.walk(annotation):
                    assert not (isinstance(part, ast.BinOp) and isinstance(part.op, ast.BitOr)), (path, part.lineno)
                    assert not (isinstance(part, ast.Subscript) and isinstance(part.value, ast.Name)
                                and part.value.id in ("list", "dict", "tuple", "set", "frozenset", "type")), \
                        (path, part.lineno)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module.split(".")[0]]
            else:
                continue
            for name in names:
                found.add(name)
                if name in OPTIONAL:
                    assert id(node) in guarded, f"{path.name}:{node.lineno}: {name} is optional, import it in " \
                                                "a try that catches ImportError"
                else:
                    assert name in stdlib | REQUIRED | local, f"{path.name}:{node.lineno} imports {name}"
    assert REQUIRED <= found  # the check saw the agent's real imports
