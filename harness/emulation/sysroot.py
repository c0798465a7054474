"""The aarch64 root file system an emulated board's Python runs in, built once and cached.

Debian's arm64 python3.11 and the libraries it loads are fetched with
`apt-get download` and unpacked with `dpkg -x`: no debootstrap, whose second
stage needs binfmt_misc, and nothing arm64 is installed on the host. numpy's
aarch64 wheel is unzipped into dist-packages. MNN is kept apart, one
directory per version (`ensure_mnn`), so that boards of one farm can carry
different MNN versions over the same sysroot, as real boards do.

Every Python module is compiled to bytecode at build time by the emulated
interpreter itself: Debian ships no .pyc files (its postinst compiles them),
and without them each emulated `python3` spends ~3 s compiling the standard
library instead of ~0.7 s starting, and would write into the shared cache on
every first import.

Both builds happen in a temporary directory next to the final one, under an
exclusive lock, and are renamed into place when complete, so no process ever
uses a half-built tree and two processes never build the same thing at once.

A bare variant (`ensure_bare_sysroot`, for boards the harness provisions) shares
the sysroot's files as hard links, with an empty dist-packages: no numpy, no MNN.

    python -m harness.emulation.sysroot [MNN_VERSION ...]   # build (or find) the sysroot and MNN
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

from ..core import host
from ..core.cache import cache_root, sha256_file, sha256_json
from ..core.errors import SetupError
from ..core.files import building, lock_file, locked
from ..core.clients.wheels import EMULATED_MNN_VERSION, Platform, fetch_wheel

Log = Callable[[str], None]

PYTHON_VERSION = "3.11"
"""The board's Python: Debian 12's python3.11, the same minor version as the host's."""
NUMPY_VERSION = "2.4.6"
"""The host's pin. numpy publishes a cp311 manylinux_2_28_aarch64 wheel of exactly this version, so
both sides of a comparison read and write .npz files with the same numpy; no fallback was needed."""

DEB_PACKAGES = (
    "libc6", "libgcc-s1", "gcc-12-base", "libstdc++6", "libgomp1", "zlib1g", "libexpat1", "libffi8",
    "libssl3", "libsqlite3-0", "libbz2-1.0", "liblzma5", "libcrypt1", "libuuid1", "libncursesw6",
    "libtinfo6", "libreadline8", "libdb5.3", "libnsl2", "libtirpc3", "libtirpc-common",
    "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0", "libkeyutils1", "libcom-err2",
    "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11-minimal", "python3.11", "media-types",
)
"""python3.11 and the closure of its run-time dependencies (Debian 12), unpacked without maintainer scripts."""
ARCH_ALL = frozenset({"libtirpc-common", "media-types"})
"""Packages that are "Architecture: all": there is no `:arm64` variant to ask apt for."""
LAYOUT = 1
"""Bump when the way a sysroot is assembled changes: a new cache key rebuilds it."""

SETUP_FIX = ("as root, `apt-get install qemu-user-static && dpkg --add-architecture arm64 && apt-get update` "
             "(a clone's `make setup` does it)")
MARKER = ".mnn-harness.json"
"""Written last into a finished tree, before it is renamed into place."""
DOWNLOAD_TIMEOUT_S = 1800
EMULATED_TIMEOUT_S = 600


class DebFile(NamedTuple):
    """One package file as apt resolves it: its file name in the pool and its SHA-256."""

    package: str
    filename: str
    sha256: str


def sysroot_key() -> str:
    """The sysroot's cache key: the package list and every pin that shapes its contents."""
    return sha256_json({"debs": sorted(DEB_PACKAGES), "python": PYTHON_VERSION, "numpy": NUMPY_VERSION,
                        "layout": LAYOUT})[:16]


def sysroot_path() -> Path:
    return cache_root() / "sysroot" / sysroot_key()


def bare_sysroot_path() -> Path:
    return cache_root() / "sysroot" / f"{sysroot_key()}-bare"


def mnn_path(version: str) -> Path:
    """Where the aarch64 MNN of `version` is unpacked; this directory goes on the board's PYTHONPATH."""
    _check_version(version)
    return cache_root() / "board-mnn" / version


def qemu_binary() -> str:
    """The qemu-user emulator's path. It runs aarch64 binaries directly, so binfmt_misc is not needed."""
    host.require([host.QEMU], "emulated boards")
    return host.QEMU.path()


def python_command(sysroot: Path, cpu: str) -> List[str]:
    """The argv prefix that runs the sysroot's Python on an emulated `cpu` (a qemu -cpu model)."""
    return [qemu_binary(), "-cpu", cpu, "-L", str(sysroot), str(sysroot / "usr" / "bin" / f"python{PYTHON_VERSION}")]


def ensure_sysroot(log: Log = print) -> Path:
    """The sysroot's path, building it first if this machine has none for the current key.

    A warm call only looks at the file system: no apt, no pip, no network.
    """
    final = sysroot_path()
    if (final / MARKER).is_file():
        return final
    with locked(lock_file(final)):
        if (final / MARKER).is_file():  # another process built it while we waited for the lock
            return final
        started = time.monotonic()
        if _adopted(final, final, _python_dirs(final), None, "import numpy; print(numpy.__version__)",
                    NUMPY_VERSION, log):
            return final
        qemu_binary()
        debs = _download_debs(log)
        numpy_wheel = _download_wheel("numpy", NUMPY_VERSION, log)
        with building(final) as tree:
            log(f"unpacking {len(debs)} arm64 packages into the sysroot")
            for deb in debs:
                _run(["dpkg", "-x", str(cache_root() / "debs" / deb.filename), str(tree)],
                     f"unpacking {deb.filename} with dpkg -x")
            site = tree / "usr" / "lib" / "python3" / "dist-packages"
            site.mkdir(parents=True, exist_ok=True)
            _unzip(numpy_wheel, site)
            log("byte-compiling the sysroot's Python modules under emulation (once)")
            _compile(tree, _python_dirs(tree), log)
            _check_import(tree, None, "import numpy; print(numpy.__version__)", NUMPY_VERSION)
            _write_marker(tree, {"key": sysroot_key(), "debs": [d._asdict() for d in debs],
                                     "numpy_wheel": numpy_wheel.name, "numpy_sha256": sha256_file(numpy_wheel)})
        log(f"sysroot ready in {time.monotonic() - started:.0f} s: {final}")
    return final


def ensure_bare_sysroot(log: Log = print) -> Path:
    """The sysroot as a board comes: its Python 3.11 without numpy (MNN is never in a sysroot).

    For emulated boards the harness provisions (`bare: true`). It shares the
    sysroot's files as hard links, so it costs directory entries, not a second
    150 MB; only dist-packages, where numpy lives, is left empty.
    """
    final = bare_sysroot_path()
    if (final / MARKER).is_file():
        return final
    sysroot = ensure_sysroot(log)
    skipped = sysroot / "usr" / "lib" / "python3" / "dist-packages"
    with locked(lock_file(final)):
        if (final / MARKER).is_file():
            return final
        with building(final) as tree:
            for root, directories, files in os.walk(sysroot):
                here = Path(root)
                into = tree / here.relative_to(sysroot)
                for name in directories:
                    source = here / name
                    if source.is_symlink():
                        os.symlink(os.readlink(source), into / name)
                    else:
                        (into / name).mkdir(mode=0o755, exist_ok=True)
                directories[:] = [name for name in directories
                                  if not (here / name).is_symlink() and here / name != skipped]
                for name in files:
                    source = here / name
                    if here == sysroot and name == MARKER:
                        continue
                    if source.is_symlink():
                        os.symlink(os.readlink(source), into / name)
                    else:
                        os.link(source, into / name)
            _check_import(tree, None, "import sys; print(sys.version_info[0])", "3")
            _write_marker(tree, {"key": sysroot_key(), "bare": True, "linked_from": str(sysroot)})
        log(f"bare sysroot ready (hard links, no numpy): {final}")
    return final


def ensure_mnn(version: str = EMULATED_MNN_VERSION, log: Log = print) -> Path:
    """A directory holding the aarch64 MNN package of `version`, for the board's PYTHONPATH.

    The wheel is checked by importing it under emulation before the directory
    is published, so a board never starts with an MNN that cannot load.
    """
    final = mnn_path(version)
    if (final / MARKER).is_file():
        return final
    sysroot = ensure_sysroot(log)
    check = "import MNN; print(MNN.version())"
    with locked(lock_file(final)):
        if (final / MARKER).is_file():
            return final
        if _adopted(final, sysroot, [final], final, check, version, log):
            return final
        wheel = _download_wheel("MNN", version, log)
        with building(final) as tree:
            _unzip(wheel, tree)
            _compile(sysroot, [tree], log)
            _check_import(sysroot, tree, check, version)
            _write_marker(tree, {"mnn_version": version, "wheel": wheel.name, "sha256": sha256_file(wheel)})
    log(f"aarch64 MNN {version} ready: {final}")
    return final


def _adopted(final: Path, sysroot: Path, directories: Sequence[Path], pythonpath: Optional[Path], code: str,
             expected: str, log: Log) -> bool:
    """Take over a complete tree that has no marker yet (built before markers existed) instead of rebuilding.

    Earlier builds were renamed into place whole, so an unmarked tree is
    complete; it is byte-compiled and checked in place, because boards may be
    using it right now. One that fails the check is moved aside and rebuilt.
    """
    if not final.is_dir():
        return False
    qemu_binary()  # a missing emulator is the host's problem, not the tree's: let it raise before anything moves
    _compile(sysroot, directories, log)
    try:
        _check_import(sysroot, pythonpath, code, expected)
    except SetupError as error:
        log(f"{final} is unusable, rebuilding it: {error}")
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.stale-", dir=final.parent))
        final.rename(aside / final.name)
        shutil.rmtree(aside, ignore_errors=True)
        return False
    _write_marker(final, {"adopted": True, "checked": expected})
    return True


# -- Debian packages ------------------------------------------------------------------------------------


def _download_debs(log: Log) -> List[DebFile]:
    """The arm64 package files, downloaded into cache_root()/debs unless there already, SHA-256 verified."""
    for tool in ("dpkg", "apt-get"):
        if not shutil.which(tool):
            raise SetupError(f"{tool} is not on PATH: the sysroot is built from Debian packages and needs a "
                             f"Debian host with apt")
    _ensure_arm64_architecture(log)
    wanted = [name if name in ARCH_ALL else f"{name}:arm64" for name in DEB_PACKAGES]
    resolved = _resolve_debs(wanted, log)
    directory = cache_root() / "debs"
    directory.mkdir(parents=True, exist_ok=True)
    missing = [deb for deb in resolved if not _deb_ok(directory / deb.filename, deb)]
    if missing:
        log(f"downloading {len(missing)} of {len(resolved)} arm64 Debian packages")
        _run(["apt-get", "download", *[wanted[DEB_PACKAGES.index(deb.package)] for deb in missing]],
             "apt-get download of the arm64 packages", cwd=directory, timeout=DOWNLOAD_TIMEOUT_S)
        for deb in missing:
            if not _deb_ok(directory / deb.filename, deb):
                raise SetupError(f"apt-get download did not produce {deb.filename} with SHA-256 {deb.sha256} in "
                                 f"{directory}; delete that file and run `make setup` again")
    return resolved


def _ensure_arm64_architecture(log: Log) -> None:
    """Make arm64 a foreign architecture of dpkg, which is what lets apt resolve and fetch arm64 packages."""
    foreign = _run(["dpkg", "--print-foreign-architectures"], "dpkg --print-foreign-architectures").stdout.split()
    if "arm64" in foreign:
        return
    if os.geteuid() != 0:
        raise SetupError("arm64 is not a foreign architecture of this machine's dpkg and adding it needs root; "
                         f"{SETUP_FIX} as root")
    log("adding arm64 as a foreign dpkg architecture (nothing arm64 gets installed) and updating apt's lists")
    _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
    _run(["apt-get", "update"], "apt-get update", timeout=DOWNLOAD_TIMEOUT_S)


def _resolve_debs(wanted: Sequence[str], log: Log) -> List[DebFile]:
    """Ask apt which file and hash each package resolves to, without downloading anything.

    If apt's lists lack arm64 (the architecture was added but `apt-get update`
    never ran) or are stale, one `apt-get update` is tried when we are root.
    """
    argv = ["apt-get", "download", "--print-uris", *wanted]
    completed = _run_quiet(argv, timeout=DOWNLOAD_TIMEOUT_S)
    if completed.returncode != 0 and os.geteuid() == 0:
        log("apt cannot resolve the arm64 packages; updating apt's lists once")
        _run(["apt-get", "update"], "apt-get update", timeout=DOWNLOAD_TIMEOUT_S)
        completed = _run_quiet(argv, timeout=DOWNLOAD_TIMEOUT_S)
    if completed.returncode != 0:
        raise SetupError(f"apt cannot resolve the sysroot's arm64 packages:\n{_tail(completed)}\n"
                         f"  fix: run `apt-get update` as root, then `make setup`")
    by_name: Dict[str, DebFile] = {}
    for line in completed.stdout.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[3].startswith("SHA256:"):
            continue
        filename = fields[1]
        package = filename.split("_", 1)[0]
        by_name[package] = DebFile(package, filename, fields[3].split(":", 1)[1])
    absent = [name for name in DEB_PACKAGES if name not in by_name]
    if absent:
        raise SetupError(f"apt resolved no arm64 package file for {', '.join(absent)}; is this Debian 12 "
                         f"(bookworm)? The sysroot's package list is written for it")
    return [by_name[name] for name in DEB_PACKAGES]


def _deb_ok(path: Path, deb: DebFile) -> bool:
    return path.is_file() and sha256_file(path) == deb.sha256


# -- wheels ---------------------------------------------------------------------------------------------


BOARD_PLATFORM = Platform("aarch64", (3, 11), (2, 36))
"""What the sysroot's Python loads: Debian 12's CPython 3.11 on aarch64 with glibc 2.36."""


def _download_wheel(name: str, version: str, log: Log) -> Path:
    """The aarch64 cp311 wheel of name==version, from the host's wheel cache (fetched with pip once)."""
    return fetch_wheel(name, version, BOARD_PLATFORM, log).path


def _unzip(wheel: Path, destination: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(destination)
    except (OSError, zipfile.BadZipFile) as error:
        raise SetupError(f"cannot unpack {wheel}: {error}; delete it and run `make setup` again") from error


# -- building -------------------------------------------------------------------------------------------


def _python_dirs(sysroot: Path) -> List[Path]:
    """Where a sysroot keeps Python modules: the standard library and Debian's dist-packages."""
    return [sysroot / "usr" / "lib" / f"python{PYTHON_VERSION}", sysroot / "usr" / "lib" / "python3" / "dist-packages"]


def _compile(sysroot: Path, directories: Sequence[Path], log: Log) -> None:
    """Byte-compile with the emulated interpreter, the one that will load the .pyc files.

    A module that does not compile (a test file written for another Python)
    is not worth failing the build for; it is only named in the log.
    """
    argv = python_command(sysroot, "max") + ["-m", "compileall", "-q", "-j", "0", *map(str, directories)]
    completed = _run_quiet(argv, timeout=EMULATED_TIMEOUT_S, env=_emulated_env(None))
    if completed.returncode != 0:
        log(f"some modules did not byte-compile (they compile on first import instead):\n{_tail(completed, 400)}")


def _check_import(sysroot: Path, pythonpath: Optional[Path], code: str, expected: str) -> None:
    """Run `code` on the emulated Python and expect a line `expected` in its output.

    Any line, not the last: MNN prints its CPU-feature line from C at import,
    and through a pipe it comes out after Python's own output.
    """
    completed = _run_quiet(python_command(sysroot, "max") + ["-c", code], timeout=EMULATED_TIMEOUT_S,
                           env=_emulated_env(pythonpath))
    if completed.returncode != 0 or expected not in (line.strip() for line in completed.stdout.splitlines()):
        raise SetupError(f"the emulated aarch64 Python could not run {code!r} (expected {expected!r}):\n"
                         f"{_tail(completed)}\n  fix: delete {cache_root()} and run `make setup` again")


def _emulated_env(pythonpath: Optional[Path]) -> Dict[str, str]:
    """The host environment minus anything that would point the aarch64 Python at host packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_"))}
    env["PYTHONNOUSERSITE"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _write_marker(building: Path, content: dict) -> None:
    (building / MARKER).write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")


# -- processes ------------------------------------------------------------------------------------------


def _run_quiet(argv: List[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run and capture; a missing program or a timeout becomes a SetupError naming the command."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    except FileNotFoundError as error:
        raise SetupError(f"{argv[0]} is not installed; {SETUP_FIX}") from error
    except subprocess.TimeoutExpired as error:
        raise SetupError(f"`{' '.join(argv[:4])} ...` did not finish within {timeout:g} s; "
                         f"check the network to the package registries, then run `make setup` again") from error


def _run(argv: List[str], what: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    completed = _run_quiet(argv, timeout=timeout, **kwargs)
    if completed.returncode != 0:
        raise SetupError(f"{what} failed (exit {completed.returncode}):\n{_tail(completed)}\n  fix: {SETUP_FIX}")
    return completed


def _tail(completed: subprocess.CompletedProcess, chars: int = 800) -> str:
    text = "\n".join(s.strip() for s in (completed.stderr, completed.stdout) if s and s.strip())
    return text[-chars:] or "(no output)"


def _check_version(version: str) -> None:
    """A version becomes a directory name and a pip requirement: only a plain version string will do."""
    if not re.fullmatch(r"[0-9]+(\.[0-9A-Za-z]+)*", version):
        raise SetupError(f"{version!r} is not an MNN version (expected something like {EMULATED_MNN_VERSION})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    versions = list(argv if argv is not None else sys.argv[1:]) or [EMULATED_MNN_VERSION]
    try:
        print(f"sysroot: {ensure_sysroot()}")
        for version in versions:
            print(f"MNN {version}: {ensure_mnn(version)}")
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
