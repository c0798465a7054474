"""The aarch64 root file system an emulated board's Python runs in, built once and cached.

Debian's arm64 python3.11 and its libraries are fetched with `apt-get
download` and unpacked with `dpkg -x` (no debootstrap: its second stage needs
binfmt), numpy's aarch64 wheel is unpacked into dist-packages. MNN is kept
apart, one directory per version (`ensure_mnn`), so that boards of one farm
can carry different MNN versions over the same sysroot.

    python -m harness.emulation.sysroot      # build (or find) the sysroot and the default MNN
"""

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, List

from ..cache import cache_root, sha256_json
from ..errors import SetupError

PYTHON_VERSION = "3.11"
NUMPY_VERSION = "2.4.6"  # the host's pin: both sides read and write the same .npz
DEFAULT_MNN_VERSION = "3.6.1"
DEB_PACKAGES = (
    "libc6", "libgcc-s1", "gcc-12-base", "libstdc++6", "libgomp1", "zlib1g", "libexpat1", "libffi8",
    "libssl3", "libsqlite3-0", "libbz2-1.0", "liblzma5", "libcrypt1", "libuuid1", "libncursesw6",
    "libtinfo6", "libreadline8", "libdb5.3", "libnsl2", "libtirpc3", "libtirpc-common",
    "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0", "libkeyutils1", "libcom-err2",
    "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11-minimal", "python3.11", "media-types",
)
ARCH_ALL = ("libtirpc-common", "media-types")  # "Architecture: all": no :arm64 variant to ask for
WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64", "manylinux_2_17_aarch64")
SETUP_FIX = "run `make setup` (it installs qemu-user-static and adds arm64 as a foreign architecture)"

Log = Callable[[str], None]


def sysroot_key() -> str:
    return sha256_json({"debs": sorted(DEB_PACKAGES), "python": PYTHON_VERSION, "numpy": NUMPY_VERSION,
                        "layout": 1})[:16]


def sysroot_path() -> Path:
    return cache_root() / "sysroot" / sysroot_key()


def mnn_path(version: str) -> Path:
    return cache_root() / "board-mnn" / version


def qemu_binary() -> str:
    path = shutil.which("qemu-aarch64-static")
    if not path:
        raise SetupError(f"qemu-aarch64-static is not installed; {SETUP_FIX}")
    return path


@contextmanager
def _locked(path: Path):
    """An exclusive lock beside path: two runs must not build the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: List[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    completed = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip()[-800:]
        raise SetupError(f"{what} failed: {' '.join(argv[:4])} ... exited {completed.returncode}\n{tail}\n"
                         f"  fix: {SETUP_FIX}")
    return completed


def _download_debs(log: Log) -> List[Path]:
    debs = cache_root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if "arm64" not in subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                                     text=True).stdout.split():
        raise SetupError(f"arm64 is not a foreign architecture of this machine's dpkg; {SETUP_FIX}")
    wanted = [name if name in ARCH_ALL else f"{name}:arm64" for name in DEB_PACKAGES]
    log(f"downloading {len(wanted)} arm64 Debian packages")
    _run(["apt-get", "download", *wanted], "apt-get download of the arm64 packages", cwd=debs)
    found = []
    for name in DEB_PACKAGES:
        matches = sorted(debs.glob(f"{name}_*_arm64.deb")) + sorted(debs.glob(f"{name}_*_all.deb"))
        if not matches:
            raise SetupError(f"apt-get download gave no package file for {name}; {SETUP_FIX}")
        found.append(matches[-1])
    return found


def _download_wheel(requirement: str, log: Log) -> Path:
    wheels = cache_root() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    name, _, version = requirement.partition("==")
    pattern = f"{name}-{version}-*aarch64*.whl"
    existing = sorted(wheels.glob(pattern)) + sorted(wheels.glob(pattern.replace(name, name.upper())))
    if existing:
        return existing[0]
    log(f"downloading the aarch64 wheel of {requirement}")
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--python-version", PYTHON_VERSION, "--implementation", "cp", "-d", str(wheels)]
    for platform in WHEEL_PLATFORMS:
        argv += ["--platform", platform]
    _run(argv + [requirement], f"pip download of the aarch64 wheel of {requirement}")
    existing = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(name.lower() + "-" + version)
                and "aarch64" in p.name]
    if not existing:
        raise SetupError(f"pip download of {requirement} gave no aarch64 wheel")
    return existing[0]


def ensure_sysroot(log: Log = print) -> Path:
    """The sysroot's path, building it first if this machine has none for the current key."""
    final = sysroot_path()
    if (final / "usr" / "bin" / f"python{PYTHON_VERSION}").is_file():
        return final
    with _locked(final):
        if (final / "usr" / "bin" / f"python{PYTHON_VERSION}").is_file():
            return final
        qemu_binary()
        debs = _download_debs(log)
        numpy_wheel = _download_wheel(f"numpy=={NUMPY_VERSION}", log)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
        try:
            log(f"unpacking {len(debs)} packages into the sysroot")
            for deb in debs:
                _run(["dpkg", "-x", str(deb), str(building)], f"dpkg -x {deb.name}")
            site = building / "usr" / "lib" / "python3" / "dist-packages"
            site.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(numpy_wheel) as wheel:
                wheel.extractall(site)
            _check_python(building, site, "import numpy; print(numpy.__version__)", NUMPY_VERSION)
            building.rename(final)
        finally:
            if building.exists():
                shutil.rmtree(building, ignore_errors=True)
    log(f"sysroot ready: {final}")
    return final


def ensure_mnn(version: str = DEFAULT_MNN_VERSION, log: Log = print) -> Path:
    """A directory holding the aarch64 MNN package of `version`, for the board's PYTHONPATH."""
    final = mnn_path(version)
    if (final / "MNN").is_dir():
        return final
    sysroot = ensure_sysroot(log)
    with _locked(final):
        if (final / "MNN").is_dir():
            return final
        wheel_path = _download_wheel(f"MNN=={version}", log)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
        try:
            with zipfile.ZipFile(wheel_path) as wheel:
                wheel.extractall(building)
            _check_python(sysroot, building, "import MNN; print(MNN.version())", version)
            building.rename(final)
        finally:
            if building.exists():
                shutil.rmtree(building, ignore_errors=True)
    log(f"aarch64 MNN {version} ready: {final}")
    return final


def python_command(sysroot: Path, cpu: str) -> List[str]:
    """The argv prefix that runs the sysroot's Python on an emulated `cpu`."""
    return [qemu_binary(), "-cpu", cpu, "-L", str(sysroot), str(sysroot / "usr" / "bin" / f"python{PYTHON_VERSION}")]


def _check_python(sysroot: Path, path: Path, code: str, expected: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(path), PYTHONNOUSERSITE="1")
    completed = subprocess.run(python_command(sysroot, "max") + ["-c", code], capture_output=True,
                               text=True, env=env, timeout=300)
    if completed.returncode != 0 or expected not in completed.stdout:
        raise SetupError(f"the emulated aarch64 Python could not run {code!r}: "
                         f"{(completed.stderr or completed.stdout).strip()[-800:]}")


def main() -> int:
    try:
        ensure_sysroot()
        ensure_mnn(DEFAULT_MNN_VERSION)
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
