"""`harness doctor`: everything this host needs, each checked and said ok or missing, with the fix.

Grouped by what it is for, so a user sees at once what works here: runs on the
x86 host and real boards need the Python packages and the shipped files; the
emulated boards need qemu-user and sshd (Debian packages) and, once, apt to
build their aarch64 sysroot; a few features need optional packages. Only what
every run needs makes the exit code 2; the rest is said, and its fix given.
"""

import importlib.metadata
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from ..core import host
from ..core.agent_bundle import digest
from ..core.cache import cache_root
from ..core.errors import HarnessError
from ..core.shipped import agent_dir, default_inventory, examples, scenarios_dir
from ..emulation.sysroot import sysroot_path

DISTRIBUTION = "mnn-harness"
CORE = "x86 runs and SSH boards"
EMULATED = "emulated boards"
MINIMUM_PYTHON = (3, 10)
OPTIONAL = "optional features"
EXTRAS = {"ai-edge-litert": "TFLite models' reference", "labgrid": "kind: labgrid boards",
          "torch": "building SegFormer"}
FALLBACK_REQUIREMENTS = ("MNN", "numpy", "fabric", "paramiko", "rich", "PyYAML", "opencv-python-headless",
                         "scikit-image", "scipy", "onnx", "onnxruntime")
"""What to check when the harness runs from a clone that was never installed (no metadata to read)."""


@dataclass
class Check:
    group: str
    """What it is needed for."""
    name: str
    ok: bool
    detail: str = ""
    """What was found (a version, a path)."""
    fix: str = ""
    required: bool = True
    """Missing, nothing runs (exit 2); else only `group` is out of reach."""


@dataclass
class HostChecks:
    checks: List[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 2 if any(not check.ok and check.required for check in self.checks) else 0

    def summary(self) -> List[str]:
        groups = list(dict.fromkeys(check.group for check in self.checks))
        ready = [group for group in groups if group != OPTIONAL
                 and all(c.ok for c in self.checks if c.group == group)]
        lines = [f"ready for: {', '.join(ready) or 'nothing yet'}"]
        tools = [tool for tool in host.EMULATED_BOARD_TOOLS + host.OPTIONAL_TOOLS if tool.path() is None]
        if tools:
            lines.append(f"missing Debian packages: {host.install_line(tools)} (as root)")
        return lines

    def as_dict(self) -> dict:
        return {"checks": [asdict(check) for check in self.checks], "exit_code": self.exit_code,
                "summary": self.summary()}


def diagnose_host() -> HostChecks:
    checks = HostChecks()
    add = checks.checks.append
    version = sys.version_info[:3]
    add(Check(CORE, "Python >= 3.10", version[:2] >= MINIMUM_PYTHON, ".".join(map(str, version)),
              "install Python 3.10 or newer"))
    for name, wanted in requirements():
        add(package_check(CORE, name, wanted, required=True))
    add(_shipped(CORE, "the agent (sent to every board)", lambda: f"{agent_dir()} (digest {digest()[:16]})"))
    add(_shipped(CORE, "example scenarios", lambda: f"{scenarios_dir()}: {', '.join(examples())}"))
    add(_shipped(CORE, "default inventory", lambda: str(default_inventory()) if default_inventory().is_file()
                 else _raise(f"{default_inventory()} is missing")))
    add(_cache())
    for tool in host.EMULATED_BOARD_TOOLS:
        add(tool_check(EMULATED, tool))
    sysroot = sysroot_path()
    if sysroot.is_dir():
        add(Check(EMULATED, "aarch64 sysroot", True, str(sysroot), required=False))
    else:
        for tool in host.SYSROOT_TOOLS:
            add(tool_check(EMULATED, tool))
        add(Check(EMULATED, "aarch64 sysroot", False, fix=f"not built yet: the first emulated board builds it "
                  f"(~180 MB, apt and pip downloads) into {sysroot}", required=False))
        add(arm64_check())
    for distribution, purpose in EXTRAS.items():
        check = package_check(OPTIONAL, distribution, None, required=False)
        check.name = f"{distribution} ({purpose})"
        add(check)
    for tool in host.OPTIONAL_TOOLS:
        add(tool_check(OPTIONAL, tool))
    return checks


def requirements() -> List[tuple]:
    """(distribution, specifier) of the harness's own dependencies, from its installed metadata."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return [(name, None) for name in FALLBACK_REQUIREMENTS]
    found = []
    for text in declared:
        if "extra ==" in text:
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)", text)
        if match:
            found.append((match.group(1), match.group(3).strip() or None))
    return found


def package_check(group: str, name: str, wanted: Optional[str], required: bool) -> Check:
    label = f"{name} {wanted}" if wanted else name
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return Check(group, label, False, fix=f"pip install '{name}{wanted or ''}'", required=required)
    ok = satisfies(installed, wanted)
    return Check(group, label, ok, installed, fix=f"{installed} installed: pip install '{name}{wanted}'",
                 required=required)


def satisfies(version: str, wanted: Optional[str]) -> bool:
    """Whether version meets a specifier; packaging's rules where it is importable, else `>=`/`==` on release
    numbers (the only forms the harness's metadata writes)."""
    if not wanted:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return Version(version) in SpecifierSet(wanted)
    except ImportError:
        pass

    def release(text: str) -> tuple:
        return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:4])
    for clause in wanted.split(","):
        operator, _, bound = clause.strip().partition("=")
        if operator == ">" and release(version) < release(bound.lstrip("=")):
            return False
        if operator == "=" and release(version) != release(bound.lstrip("=")):
            return False
    return True


def tool_check(group: str, tool: host.HostTool) -> Check:
    path = tool.path()
    return Check(group, f"{tool.command.rsplit('/', 1)[-1]} ({tool.needed_for.split(': ', 1)[-1]})",
                 path is not None, path or "", f"apt-get install {tool.package}", required=False)


def arm64_check() -> Check:
    """dpkg must know arm64 as a foreign architecture for `apt-get download` to fetch the sysroot's packages."""
    try:
        foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True,
                                 timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        foreign = []
    return Check(EMULATED, "arm64 foreign architecture (dpkg)", "arm64" in foreign, "arm64",
                 "as root: dpkg --add-architecture arm64 && apt-get update", required=False)


def _shipped(group: str, name: str, describe) -> Check:
    try:
        return Check(group, name, True, describe())
    except (HarnessError, OSError) as error:
        return Check(group, name, False, fix=f"{error}; reinstall mnn-harness", required=True)


def _raise(message: str):
    raise OSError(message)


def _cache() -> Check:
    try:
        root = cache_root()
        writable = os.access(root, os.W_OK)
    except OSError as error:
        return Check(CORE, "cache directory", False, fix=f"{error}: set MNN_HARNESS_CACHE to a writable directory")
    return Check(CORE, "cache directory", writable, str(root), f"{root} is not writable: set MNN_HARNESS_CACHE",
                 required=True)

