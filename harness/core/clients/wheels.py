"""MNN and numpy wheels for any board, fetched once and kept by content; the host's own sites of other MNN releases.

A board the harness provisions needs the MNN and numpy wheels that fit its
machine, its CPython and its C library. They are fetched on this host with
`pip download --no-deps --only-binary=:all: --platform ... --python-version ...`
into cache_root()/wheels/, whose PEP 427 file names already say the name,
version, Python and platform; each wheel gets a `.sha256` beside it, written
when it arrived and checked at every later use. A wheel found there is never
fetched again: after the first run everything works offline.

The host needs other MNN releases too: their converters (bisecting the
converter) and their x86 runtimes (a run that asks for an MNN version runs
the x86 reference with it). One process cannot import two MNNs, so each
release's x86_64 wheel is unzipped into a site of its own,
cache_root()/sites/<machine>-<python>-mnn-<version>/, that a child Python
gets on its PYTHONPATH. The installed MNN (the host's pin) needs no site.
"""

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ..cache import cache_root, sha256_file
from ..errors import SetupError
from ..files import building, lock_file, locked, write_atomic

Log = Callable[[str], None]

RELEASES = ("3.0.0", "3.1.0", "3.2.0", "3.4.0", "3.4.1", "3.5.0", "3.6.0", "3.6.1")
"""MNN releases with manylinux2014 wheels for aarch64 and x86_64, CPython 3.8 to 3.12 (measured December 2026;
none older installs, none for armv7l). What a version range of `harness bisect` walks through."""
EMULATED_MNN_VERSION = "3.6.1"
"""The MNN an emulated board runs unless its inventory says otherwise: the release the host pins, so the default
farm compares like with like (boards of the farm may run another one: 3.4.1 and 3.2.0 are known to work too)."""
MACHINES = {"aarch64": "aarch64", "arm64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}
"""platform.machine() -> the wheels' architecture tag; a machine not here has no MNN wheel."""
MIN_PYTHON = (3, 8)
"""The oldest CPython MNN publishes wheels for (and the agent runs on)."""
MANYLINUX2014_GLIBC = (2, 17)
"""manylinux2014 is manylinux_2_17: the C library every MNN wheel needs at least."""
NUMPY_CANDIDATES = ("2.4.6", "2.2.6", "2.0.2", "1.24.4")
"""numpy versions a board may get, newest first: the host's pin, then the last release for each older Python
(2.2.6: 3.10, 2.0.2: 3.9, 1.24.4: 3.8), which also have manylinux2014 wheels for a C library older than 2.28.
The first with a wheel for the board's Python and C library wins."""
FETCH_TIMEOUT_S = 600.0
VERSION = re.compile(r"[0-9]+(\.[0-9]+){1,3}")
"""An MNN version as the harness takes it: it names a cache directory and a pip requirement."""
MARKER = ".mnn-harness-site.json"
"""Written last into a finished host site, before it is renamed into place."""


@dataclass(frozen=True)
class Platform:
    """What decides which wheels a Python can load: its machine, its CPython version and its C library."""

    machine: str
    """The wheels' architecture: aarch64 or x86_64."""
    python: Tuple[int, int]
    glibc: Tuple[int, int]

    @property
    def python_tag(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"

    @property
    def platform_tags(self) -> List[str]:
        """Every manylinux tag this C library can load, newest first (pip does not widen --platform itself)."""
        newest = max(self.glibc[1], MANYLINUX2014_GLIBC[1])
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(newest, MANYLINUX2014_GLIBC[1] - 1, -1)]
        return tags + [f"manylinux2014_{self.machine}"]

    def describe(self) -> str:
        return (f"CPython {self.python[0]}.{self.python[1]} on {self.machine} "
                f"(glibc {self.glibc[0]}.{self.glibc[1]})")


@dataclass(frozen=True)
class Wheel:
    """A wheel in the host's cache, checked against the SHA-256 recorded when it arrived."""

    path: Path
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class WheelSet:
    """What one provisioned site is made of: MNN and the numpy it runs with, for one platform."""

    mnn: Wheel
    numpy: Wheel
    platform: Platform

    @property
    def site_id(self) -> str:
        """The site's directory name on a board: readable, and different whenever a wheel's bytes are."""
        digest = self.mnn.sha256[:8] + self.numpy.sha256[:8]
        return f"mnn-{self.mnn.version}-{self.platform.python_tag}-{self.platform.machine}-{digest}"


def check_version(version: str, what: str = "MNN version") -> str:
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise SetupError(f"{version!r} is not an {what} (write it as a plain version, e.g. 3.6.1)")
    return version


def version_key(version: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def host_mnn_version() -> str:
    """The installed MNN's version, from its package metadata (importing MNN would print on stdout)."""
    try:
        return importlib.metadata.version("MNN")
    except importlib.metadata.PackageNotFoundError as error:
        raise SetupError("MNN is not installed on this host; the harness converts and runs models with it\n"
                         "  fix: `pip install MNN`") from error


def host_platform() -> Platform:
    """This host's Python as a wheel platform (its sites hold x86_64 or aarch64 wheels of its CPython)."""
    machine = MACHINES.get(platform.machine().lower())
    if machine is None:
        raise SetupError(f"this host is {platform.machine()}; MNN publishes wheels only for x86_64 and aarch64")
    libc, version = platform.libc_ver()
    glibc = tuple(int(part) for part in version.split(".")[:2]) if libc == "glibc" and version else (2, 17)
    return Platform(machine, sys.version_info[:2], glibc)  # type: ignore[arg-type]


# -- the wheel cache ------------------------------------------------------------------------------------


def wheels_dir() -> Path:
    path = cache_root() / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wheel_fits(path: Path, name: str, version: str, target: Platform) -> bool:
    """A wheel file of name==version that target's CPython and C library can load (from its PEP 427 name)."""
    parts = path.name[:-len(".whl")].split("-")
    if len(parts) not in (5, 6) or _normal(parts[0]) != _normal(name) or parts[1] != version:
        return False
    pythons, abis, platforms = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
    if target.python_tag not in pythons and not ("abi3" in abis and any(
            tag.startswith("cp3") and int(tag[3:] or 0) <= target.python[1] for tag in pythons)):
        return False
    return bool(set(platforms) & set(target.platform_tags))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def cached_wheel(name: str, version: str, target: Platform) -> Optional[Wheel]:
    """The cached wheel of name==version for target, checked against its recorded SHA-256; None if absent.

    A wheel whose bytes no longer match (a cut copy, a disk error) is removed, so the next fetch replaces it.
    """
    for path in sorted(wheels_dir().glob("*.whl")):
        if not wheel_fits(path, name, version, target):
            continue
        recorded = path.with_name(path.name + ".sha256")
        actual = sha256_file(path)
        if recorded.is_file():
            if recorded.read_text().split()[0:1] != [actual]:
                path.unlink(missing_ok=True)
                recorded.unlink(missing_ok=True)
                continue
        else:
            # A wheel fetched before hashes were recorded (the sysroot's): from now on it is held to these bytes.
            write_atomic(recorded, actual + "\n")
        return Wheel(path, name, version, actual)
    return None


def fetch_wheel(name: str, version: str, target: Platform, log: Log = print) -> Wheel:
    """The wheel of name==version for target: from the cache, else fetched with pip once (and kept).

    Raises SetupError naming the wheel, the platform and pip's words when none can be had.
    """
    check_version(version, f"{name} version")
    found = cached_wheel(name, version, target)
    if found is not None:
        return found
    with locked(wheels_dir() / ".fetch.lock"):
        found = cached_wheel(name, version, target)  # fetched by another process while we waited
        if found is not None:
            return found
        log(f"fetching the {name} {version} wheel for {target.describe()}")
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=wheels_dir()) as scratch:
            argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--implementation", "cp", "--python-version", f"{target.python[0]}{target.python[1]}",
                    "--dest", scratch, "--disable-pip-version-check"]
            for tag in target.platform_tags:
                argv += ["--platform", tag]
            try:
                completed = subprocess.run(argv + [f"{name}=={version}"], capture_output=True, text=True,
                                           timeout=FETCH_TIMEOUT_S, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as error:
                raise SetupError(f"fetching {name}=={version} did not finish in {FETCH_TIMEOUT_S:g} s; check the "
                                 "network to the package index") from error
            got = [path for path in Path(scratch).glob("*.whl") if wheel_fits(path, name, version, target)]
            if completed.returncode != 0 or not got:
                words = (completed.stderr or completed.stdout).strip().splitlines()
                raise SetupError(
                    f"no {name} {version} wheel for {target.describe()}: "
                    + ("; ".join(line.strip() for line in words[-3:]) or "pip found none")
                    + f"\n  fix: pick a version that publishes one (MNN: {', '.join(RELEASES)}), or, without "
                    f"network, copy the wheel into {wheels_dir()}")
            final = wheels_dir() / got[0].name
            digest = sha256_file(got[0])
            write_atomic(final.with_name(final.name + ".sha256"), digest + "\n")
            os.replace(got[0], final)
    return Wheel(final, name, version, digest)


def wheels_for(mnn_version: str, target: Platform, log: Log = print) -> WheelSet:
    """The MNN wheel of mnn_version and the newest fitting numpy for target (fetched once, then cached).

    Raises SetupError when target can have none: too old a Python, another machine, too old a C library.
    """
    problem = unsupported(target)
    if problem:
        raise SetupError(problem)
    mnn = fetch_wheel("MNN", mnn_version, target, log)
    cached = [wheel for wheel in (cached_wheel("numpy", version, target) for version in NUMPY_CANDIDATES) if wheel]
    if cached:
        return WheelSet(mnn, cached[0], target)
    failures = []
    for version in NUMPY_CANDIDATES:
        try:
            return WheelSet(mnn, fetch_wheel("numpy", version, target, log), target)
        except SetupError as error:
            failures.append(str(error).splitlines()[0])
    raise SetupError(f"no numpy wheel for {target.describe()} among {', '.join(NUMPY_CANDIDATES)}: "
                     f"{failures[-1] if failures else ''}")


def unsupported(target: Platform) -> Optional[str]:
    """Why no MNN wheel can run on target, with what to do; None when one can."""
    if target.machine not in MACHINES.values():
        return (f"the board is {target.machine}: MNN publishes wheels only for aarch64 and x86_64 (none for "
                f"armv7l or a 32-bit userland); install a 64-bit OS, or build MNN there and set `mnn: system`")
    if target.python < MIN_PYTHON:
        return (f"the board's Python is {target.python[0]}.{target.python[1]}, older than "
                f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} (the oldest MNN publishes wheels for); install python3.8 or "
                "newer there and set `python` for this board in the inventory")
    if target.glibc < MANYLINUX2014_GLIBC:
        return (f"the board's C library is {'glibc %d.%d' % target.glibc if target.glibc > (0, 0) else 'not glibc'}"
                f"; MNN's wheels need glibc {MANYLINUX2014_GLIBC[0]}.{MANYLINUX2014_GLIBC[1]} or newer "
                "(manylinux2014); use a glibc-based OS image, or build MNN there and set `mnn: system`")
    return None


# -- the host's sites of other releases -----------------------------------------------------------------


def host_site(version: str, log: Log = print) -> Optional[Path]:
    """A directory with this host's MNN of `version` for a child Python's PYTHONPATH; None for the installed one.

    Built once (the wheel unzipped, then imported in a child to check it says that version) and renamed into
    place, so no process ever uses half a site.
    """
    check_version(version)
    if version == host_mnn_version():
        return None
    target = host_platform()
    final = cache_root() / "sites" / f"{target.machine}-{target.python_tag}-mnn-{version}"
    if (final / MARKER).is_file():
        return final
    with locked(lock_file(final)):
        if (final / MARKER).is_file():
            return final
        wheel = fetch_wheel("MNN", version, target, log)
        log(f"unpacking MNN {version} for this host into {final}")
        with building(final) as directory:
            unzip(wheel.path, directory)
            said = check_site(directory)
            if said != version:
                raise SetupError(f"the MNN {version} wheel {wheel.path.name} imports as MNN {said}; delete it "
                                 f"and its .sha256 from {wheels_dir()} and try again")
            write_atomic(directory / MARKER, json.dumps({"mnn_version": version, "wheel": wheel.path.name,
                                                         "sha256": wheel.sha256}, indent=1) + "\n")
    return final


def check_site(site: Path) -> str:
    """The MNN version a child Python imports from site, as MNN itself says it."""
    code = "import MNN, sys; sys.stderr.write('\\nMNN-VERSION ' + MNN.version() + '\\n')"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               env=site_env(site), stdin=subprocess.DEVNULL)
    for line in completed.stderr.splitlines():
        if line.startswith("MNN-VERSION "):
            return line.split()[1]
    raise SetupError(f"MNN from {site} does not import: {completed.stderr.strip()[-400:]}")


def site_env(site: Optional[Path], base: Optional[dict] = None) -> dict:
    """An environment whose Python imports MNN from site first (None: the installed MNN, nothing changed)."""
    env = dict(os.environ if base is None else base)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONNOUSERSITE"] = "1"
    return env


def unzip(wheel: Path, destination: Path, skip: Sequence[str] = ()) -> None:
    """Unpack a wheel (members starting with one of `skip` left out), refusing paths that leave destination."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                name = member.filename
                if name.startswith("/") or ".." in name.split("/") or any(name.startswith(s) for s in skip):
                    continue
                archive.extract(member, destination)
    except (OSError, zipfile.BadZipFile) as error:
        raise SetupError(f"cannot unpack {wheel}: {error}; delete it and its .sha256 and try again") from error
