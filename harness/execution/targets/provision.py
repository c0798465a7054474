"""Bringing the MNN under test to a board that has only a Python: probe it, ship its wheels, unpack them there.

A board whose inventory entry does not say `mnn: system` gets, for each MNN
version a job asks for (the job's, else the board's `mnn_version`, else the
host's), the MNN and numpy wheels that fit its machine, CPython and C
library (core/clients/wheels: fetched once on the host, then offline). They travel
into the board's store like any file (by SHA-256, evicted least recently used
first) and each is unpacked once, by the board's own Python (zipfile: no
unzip, no pip, no network on the board), into a site of its own,
`<workdir>/sites/<wheel>-<sha8>/`, numpy apart from MNN so that the versions
of one board share it. The agent then runs with `env PYTHONPATH=MNN:numpy`:
nothing is installed system-wide. A site is published by a rename once its
import was checked, with site.json written last: a half-unpacked site is
never used. MNN's converter (`_tools`, 34 MB) stays out of a board's sites:
the agent never converts.

The board's Python is probed first, with code any Python runs (2.7 too): a
board without a usable one, an unsupported machine (armv7l, a 32-bit
userland) or a C library older than the wheels' fails before anything is
sent, saying what it lacks and what to do.
"""

import json
import posixpath
import stat
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import paramiko

from ...core.clients.wheels import MACHINES, Platform, Wheel, host_mnn_version, unsupported, wheels_for
from ...core.errors import BoardError, SetupError
from ...config.inventory import BoardSpec
from ...core.results import TargetResult
from . import remote
from .remote import StoreFile
from .transport import BoardConnection, SshTransport

SITE_MARKER = "site.json"
UNPACK_TIMEOUT_S = 900.0
"""Unpacking MNN and numpy and importing them once: seconds on a board, a minute under qemu."""
SKIPPED_MEMBERS = ("_tools.", "MNN/tools/")
"""MNN's converter and its wrappers: 34 MB a board never uses."""

PYTHON_FACTS = r"""
import platform, struct, sys
libc = ""
try:
    import os
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
except Exception:
    pass
if not libc:
    name, version = platform.libc_ver()
    libc = (name + " " + version).strip()
sys.stdout.write("MNN-HARNESS-PYTHON %s %d.%d.%d %s %d %s\n" % (
    platform.python_implementation(), sys.version_info[0], sys.version_info[1], sys.version_info[2],
    platform.machine() or "unknown", struct.calcsize("P") * 8, libc.replace(" ", "-") or "unknown"))
"""
"""What a board's Python is, in one line, from code that Python 2.7 runs too (so an old one says its version)."""

PROBE_PYTHON = r"""
# $1 python, $2 the code: run it; 127 (no such program) is the shell's own word for "not there".
"$1" -c "$2" 2>&1
"""

_UNPACK = r"""
import sys, zipfile
destination, skip = sys.argv[1], tuple(sys.argv[2].split(","))
with zipfile.ZipFile(sys.argv[3]) as archive:
    for member in archive.infolist():
        name = member.filename
        if name.startswith("/") or ".." in name.split("/") or name.startswith(skip):
            continue
        archive.extract(member, destination)
"""

_CHECK = r"""
import sys
import numpy
import MNN
sys.stderr.write("\nMNN-HARNESS-SITE %s %s %s\n" % (MNN.version(), numpy.__version__, MNN.__file__))
"""

SITES = r"""
# $1 workdir, then site ids: say which are there ("have ID", their site.json touched: last used now) and which
# are not ("need ID").
w=$1; shift
for id in "$@"; do
  if [ -f "$w/sites/$id/site.json" ] && [ ! -L "$w/sites/$id" ]; then touch -c -- "$w/sites/$id/site.json"; echo "have $id"
  else echo "need $id"; fi
done
"""

UNPACK = r"""
# $1 workdir, $2 python, $3 unpack code, $4 check code, $5 members to skip, then pairs of (site id, stored wheel):
# unpack each missing site into a partial dir, import MNN and numpy from all of them, then rename each into place
# with its site.json last. Nothing half-made is ever a site.
w=$1; py=$2; unpack=$3; check=$4; skip=$5; shift 5
mkdir -p -- "$w/sites" || exit 3
path=""; made=""
while [ $# -ge 2 ]; do
  id=$1; wheel=$2; shift 2
  final="$w/sites/$id"
  if [ -f "$final/site.json" ]; then path="$path${path:+:}$final"; continue; fi
  rm -rf -- "$final" "$w/sites/.$id.partial"
  part="$w/sites/.$id.partial"
  mkdir -- "$part" || exit 3
  "$py" -c "$unpack" "$part" "$skip" "$wheel" || { rm -rf -- "$part"; echo "unpack-failed $id"; exit 4; }
  path="$path${path:+:}$part"; made="$made $id"
done
out=$(PYTHONPATH="$path" PYTHONNOUSERSITE=1 "$py" -c "$check" 2>&1 >/dev/null)
status=$?
line=$(printf '%s\n' "$out" | grep '^MNN-HARNESS-SITE ' | tail -n 1)
if [ $status -ne 0 ] || [ -z "$line" ]; then
  for id in $made; do rm -rf -- "$w/sites/.$id.partial"; done
  printf 'import-failed\n%s\n' "$out" | tail -n 20
  exit 5
fi
for id in $made; do
  kb=$(du -sk -- "$w/sites/.$id.partial" | cut -f1)
  mv -- "$w/sites/.$id.partial" "$w/sites/$id" || exit 3
  printf '{"id": "%s", "kb": %s}\n' "$id" "${kb:-0}" >"$w/sites/$id/site.json.tmp" && \
    mv -- "$w/sites/$id/site.json.tmp" "$w/sites/$id/site.json"
  echo "made $id ${kb:-0}"
done
echo "$line"
"""

REMOVE_SITES = r"""
# $1 workdir, then site ids: remove those sites (least recently used first), saying what each freed.
w=$1; shift
for id in "$@"; do
  [ -d "$w/sites/$id" ] || continue
  kb=$(du -sk -- "$w/sites/$id" 2>/dev/null | cut -f1)
  rm -rf -- "$w/sites/$id" && echo "evicted $id ${kb:-0}"
done
"""


@dataclass(frozen=True)
class PythonFacts:
    """A board's Python as its probe saw it."""

    implementation: str
    version: Tuple[int, int, int]
    machine: str
    bits: int
    libc: str
    """"glibc 2.36", or whatever the board's C library says (empty for none known)."""

    @property
    def glibc(self) -> Tuple[int, int]:
        name, _, version = self.libc.partition(" ")
        parts = version.split(".")
        if name != "glibc" or len(parts) < 2 or not all(part.isdigit() for part in parts[:2]):
            return (0, 0)
        return int(parts[0]), int(parts[1])

    @property
    def platform(self) -> Platform:
        machine = MACHINES.get(self.machine.lower(), self.machine)
        if self.bits != 64:
            machine = f"{self.machine} with a {self.bits}-bit Python"
        return Platform(machine, self.version[:2], self.glibc)  # type: ignore[arg-type]

    def describe(self) -> str:
        return (f"{self.implementation} {'.'.join(map(str, self.version))} on {self.machine}"
                f"{'' if self.bits == 64 else f' ({self.bits}-bit)'}, {self.libc or 'an unknown C library'}")

    def as_dict(self) -> dict:
        return {"implementation": self.implementation, "python": ".".join(map(str, self.version)),
                "machine": self.machine, "bits": self.bits, "libc": self.libc}


@dataclass(frozen=True)
class Site:
    """A provisioned site on a board."""

    id: str
    kb: int
    last_used: float
    """The site.json's modification time: touched whenever a session uses the site."""

    @property
    def mnn_version(self) -> Optional[str]:
        """The MNN version of an MNN site (mnn-3.6.1-...), None for numpy's."""
        name, _, rest = self.id.partition("-")
        return rest.split("-", 1)[0] if name.lower() == "mnn" else None


def parse_python_facts(output: str) -> Optional[PythonFacts]:
    for line in output.splitlines():
        words = line.split()
        if len(words) == 6 and words[0] == "MNN-HARNESS-PYTHON":
            version = words[2].split(".")
            if len(version) == 3 and all(part.isdigit() for part in version) and words[4].isdigit():
                return PythonFacts(words[1], tuple(int(part) for part in version), words[3],  # type: ignore[arg-type]
                                   int(words[4]), words[5].replace("-", " ", 1) if words[5] != "unknown" else "")
    return None


def site_id(wheel: Wheel) -> str:
    """A wheel's site on a board: its name and version readable, its bytes in the digest."""
    return remote.check_name(f"{wheel.name.lower()}-{wheel.version}-{wheel.sha256[:12]}", "site")


class Provisioner:
    """One SSH board session's provisioning: its Python probed once, the sites its jobs need made once.

    sync() has files in the board's store (store.BoardStore.sync): the wheels travel like any file there.
    """

    def __init__(self, spec: BoardSpec, transport: SshTransport,
                 sync: Callable[[List[StoreFile], TargetResult], None]):
        self.spec = spec
        self.transport = transport
        self.sync = sync
        self.facts: Optional[PythonFacts] = None
        self.ready: Dict[str, List[str]] = {}
        """MNN version -> the site paths (MNN first) this session checked or made."""
        self.in_use: List[str] = []
        """Site ids of the runtime the session's agent runs with now: never evicted."""
        self.version: Optional[str] = None
        """The MNN version the session's last job was provisioned with."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def enabled(self) -> bool:
        return self.spec.mnn == "provision"

    def wanted_version(self, job_version: Optional[str]) -> str:
        """What a job runs on this board: the job's version, else the board's mnn_version, else the host's."""
        return job_version or self.spec.mnn_version or host_mnn_version()

    def python(self) -> PythonFacts:
        """The board's Python, probed once per session; BoardError when it cannot run MNN's wheels."""
        board = self.transport.board
        if self.facts is None:
            python = board.endpoint.python
            run = self.transport.exec_script(PROBE_PYTHON, [python, PYTHON_FACTS], "probing its Python", check=False)
            facts = parse_python_facts(run.stdout)
            if facts is None:
                said = (run.stdout or run.stderr).strip().splitlines()
                if run.status == 127 or not said:
                    raise BoardError(f"{self.name}: the board has no Python at {python!r} (exit {run.status}); "
                                     "install Python >= 3.8 there (numpy, MNN and pip are not needed: the harness "
                                     "brings MNN), or set `python` for this board in the inventory")
                raise BoardError(f"{self.name}: {python!r} on the board is not a usable Python (exit {run.status}: "
                                 f"{said[-1][:200]}); point `python` for this board at a CPython >= 3.8")
            self.facts = facts
        if self.facts.implementation != "CPython":
            raise BoardError(f"{self.name}: {board.endpoint.python!r} is {self.facts.describe()}; MNN publishes "
                             "wheels for CPython only: point `python` for this board at a CPython >= 3.8")
        problem = unsupported(self.facts.platform)
        if problem:
            raise BoardError(f"{self.name}: {problem} (found {self.facts.describe()})")
        return self.facts

    def runtime(self, job_version: Optional[str], keep_files: List[StoreFile], result: TargetResult) -> List[str]:
        """The site paths (MNN's, then numpy's) to put on the agent's PYTHONPATH for this job: made on the board
        if they are not there yet (the wheels sent into its store first). keep_files: the job's store files,
        which the eviction must not take for the wheels."""
        version = self.wanted_version(job_version)
        self.version = version
        if version in self.ready:
            self.in_use = [posixpath.basename(path) for path in self.ready[version]]
            return self.ready[version]
        facts = self.python()
        board = self.transport.board
        try:
            wheels = wheels_for(version, facts.platform, log=lambda message: None)
        except SetupError as error:
            raise BoardError(f"{self.name}: {error}") from None
        pairs = [(site_id(wheel), wheel) for wheel in (wheels.mnn, wheels.numpy)]
        self.in_use = [site for site, _ in pairs]
        sites_dir = board.paths.workdir + "/sites"
        run = self.transport.exec_script(SITES, [board.paths.workdir, *self.in_use], "looking for its sites")
        missing = [(site, wheel) for site, wheel in pairs if f"need {site}" in run.stdout.splitlines()]
        if missing:
            self.make(pairs, missing, keep_files, version, result)
        self.ready[version] = [board.paths.under(f"{sites_dir}/{site}") for site, _ in pairs]
        return self.ready[version]

    def make(self, pairs: List[Tuple[str, Wheel]], missing: List[Tuple[str, Wheel]], keep_files: List[StoreFile],
             version: str, result: TargetResult) -> None:
        """Send the missing sites' wheels into the store and unpack them there, then import MNN and numpy from
        all the runtime's sites (one remote call)."""
        board = self.transport.board
        files = [StoreFile(wheel.path.name, wheel.path, wheel.sha256) for _, wheel in missing]
        self.sync(list(keep_files) + files, result)
        args = [board.paths.workdir, board.endpoint.python, _UNPACK, _CHECK, ",".join(SKIPPED_MEMBERS)]
        for site, wheel in pairs:
            args += [site, board.paths.store_file(wheel.path.name)]
        run = self.transport.exec_script(UNPACK, args, f"unpacking MNN {version}", timeout=UNPACK_TIMEOUT_S,
                                         check=False)
        lines = run.stdout.splitlines()
        said = next((line.split() for line in lines if line.startswith("MNN-HARNESS-SITE ")), None)
        if run.status != 0 or said is None:
            why = "\n    ".join(line for line in lines[-12:] if line.strip()) or run.stderr.strip()[-400:]
            raise BoardError(f"{self.name}: MNN {version} did not import on the board after it was unpacked "
                             f"({self.facts.describe() if self.facts else 'its Python'}; exit {run.status}):\n    "
                             f"{why}")
        if said[1] != version:
            raise BoardError(f"{self.name}: the MNN {version} wheel imports as MNN {said[1]} on the board")
        made = [line.split() for line in lines if line.startswith("made ")]
        size = sum(int(words[2]) for words in made if len(words) == 3 and words[2].isdigit())
        result.notes.append(f"provisioned MNN {version} with numpy {said[2]} for {self.facts.describe()}: "
                            f"{len(made)} site(s) unpacked ({size / 1024:.1f} MB) under {board.paths.workdir}/sites")

    def forget(self, site_ids: List[str]) -> None:
        """Sites evicted from the board: a version that used one is looked for (and made) again."""
        gone = set(site_ids)
        self.ready = {version: paths for version, paths in self.ready.items()
                      if not gone & {posixpath.basename(path) for path in paths}}

    def command(self, python: str) -> List[str]:
        """How the agent is started: with this session's current sites first on its path (none: the board's own
        Python as it is)."""
        sites = self.ready.get(self.version or "") if self.enabled else None
        if not sites:
            return [python]
        return ["env", f"PYTHONPATH={':'.join(sites)}", "PYTHONNOUSERSITE=1", python]

    def expected_version(self) -> Optional[str]:
        """The MNN version the last job was provisioned with (None for `mnn: system`)."""
        return self.version if self.enabled else None


def list_sites(board: BoardConnection) -> List[Site]:
    """The sites on a board, from their site.json (size as unpacked, last use as its modification time)."""
    directory = board.paths.workdir + "/sites"
    try:
        entries = board.sftp.listdir_attr(directory)
    except FileNotFoundError:
        return []
    sites = []
    for entry in entries:
        if entry.filename.startswith(".") or not stat.S_ISDIR(entry.st_mode or 0):
            continue
        try:
            remote.check_name(entry.filename, "site")
            marker = f"{directory}/{entry.filename}/{SITE_MARKER}"
            attributes = board.sftp.lstat(marker)
            if not stat.S_ISREG(attributes.st_mode or 0) or (attributes.st_size or 0) > 4096:
                continue
            with board.sftp.open(marker) as f:
                kb = json.loads(f.read(4096).decode("utf-8", "replace")).get("kb")
        except (BoardError, OSError, ValueError, AttributeError, paramiko.SSHException):
            continue
        if isinstance(kb, int) and kb >= 0:
            sites.append(Site(entry.filename, kb, float(attributes.st_mtime or 0)))
    return sites


def remove_sites(transport: SshTransport, ids: List[str]) -> int:
    """Remove these sites from the board; the kB freed."""
    board = transport.board
    for site in ids:
        board.paths.under(f"{board.paths.workdir}/sites/{remote.check_name(site, 'site')}")
    run = transport.exec_script(REMOVE_SITES, [board.paths.workdir, *ids], "evicting sites", check=False)
    return sum(int(words[2]) for words in (line.split() for line in run.stdout.splitlines())
               if len(words) == 3 and words[0] == "evicted" and words[2].isdigit())

