"""What the harness does on a board: its paths, checked, and its shell scripts, quoted.

Paths: every remote path comes from BoardPaths, built from the board's
workdir and names of safe characters, and is checked to lie under the workdir
before anything is removed there.

Scripts: POSIX sh (dash, busybox ash and bash all run them), sent as
`sh -c SCRIPT sh ARG...` with every argument quoted, so the board user's
login shell does not matter. Each script is one remote call.

The agent runs under AGENT_RUN (one job) or SERVE (the resident agent, job
after job), whose watchdog is the kill switch: it holds the SSH channel's
stdin and, when that ends (the host closed the channel at the end of the
session, on Ctrl-C or run_timeout, or the session dropped), kills the
session's process group, agent included. sshd makes every session the leader
of its own process group, so `kill 0` reaches exactly the session's processes.
"""

import posixpath
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence

from ...core.errors import BoardError

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, limit: int = 120) -> str:
    """text as one safe path component: letters, digits, '.', '_', '-', not starting with '.' or '-'."""
    slug = _UNSAFE_CHARS.sub("_", text).lstrip("._-")[:limit]
    return slug or "x"


def check_name(name: str, what: str) -> str:
    if not _SAFE.fullmatch(name) or name in (".", ".."):
        raise BoardError(f"{what} {name!r} is not a safe name for a file on a board (letters, digits, '.', '_', '-')")
    return name


@dataclass(frozen=True)
class BoardPaths:
    """Where things live on a board, all under its workdir."""

    workdir: str

    def __post_init__(self) -> None:
        given = self.workdir
        if not given or "\0" in given or "\n" in given:
            raise BoardError(f"workdir {given!r} is not a usable path on a board")
        normal = posixpath.normpath(given)
        if ".." in normal.split("/") or normal in ("/", "."):
            raise BoardError(f"workdir {given!r} must be a directory of its own (not '/', no '..'); "
                             "fix `workdir` for this board in the inventory")
        object.__setattr__(self, "workdir", normal)

    @property
    def store(self) -> str:
        return self.workdir + "/store"

    @property
    def jobs(self) -> str:
        return self.workdir + "/jobs"

    @property
    def lock(self) -> str:
        return self.workdir + "/lock"

    def job_dir(self, job_id: str) -> str:
        return self.under(self.jobs + "/" + check_name(job_id, "job id"))

    def store_file(self, name: str) -> str:
        return self.under(self.store + "/" + check_name(name, "store file"))

    def under(self, path: str) -> str:
        """path, after checking it lies strictly inside the workdir (what may be removed there)."""
        normal = posixpath.normpath(path)
        if normal != path or not normal.startswith(self.workdir + "/"):
            raise BoardError(f"refusing {path!r}: it is not inside the board's workdir {self.workdir}")
        return normal


@dataclass
class StoreFile:
    """A file a board's store must hold, named by its content: the agent, a model, inputs, a wheel."""

    name: str
    local: Path
    sha256: str


def sh(script: str, args: Sequence[str]) -> str:
    """A command line that runs script with POSIX sh, whatever the login shell, args quoted.

    `exec`: the login shell (dash does not exec the last command of its -c by itself) becomes the script's sh
    and holds none of the channel's descriptors, so the channel's output ends when the script's own holders
    let go of it (SERVE: when the agent closes its replies)."""
    return "exec " + " ".join(shlex.quote(part) for part in ["sh", "-c", script, "sh", *args])


PREPARE = r"""
# $1 workdir: make it (with its parents) before anything else; say whether it was new.
if [ -d "$1" ]; then echo existed; else mkdir -p -- "$1" || exit 3; echo created; fi
mkdir -p -- "$1/store" "$1/jobs" || exit 3
"""

_AGENT_ALIVE = r"""
agent_alive() {  # $1 job dir: true while the agent recorded in it still runs (its command line names the dir)
  [ -f "$1/agent.pid" ] && [ ! -L "$1/agent.pid" ] || return 1
  p=$(cat -- "$1/agent.pid" 2>/dev/null)
  case $p in ''|*[!0-9]*) return 1;; esac
  tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qxF -- "$1"
}
"""

BEGIN_JOB = _AGENT_ALIVE + r"""
# $1 workdir, $2 "clean" or "keep", $3 our job id (or ""), $4 python, then the store files the job needs.
# "clean" only under the board's lock: no other run is here then, so every other job dir whose agent is gone,
# every .partial upload and every lock moved aside is a leftover. Then our job dir, then the store's hashes.
w=$1; mode=$2; ours=$3; py=$4; shift 4
[ "$mode" = clean ] && for d in "$w"/jobs/*; do
  [ -d "$d" ] || [ -L "$d" ] || continue
  id=${d##*/}
  [ "$id" = "$ours" ] && continue
  if agent_alive "$d"; then echo "busy $id"; continue; fi
  kb=$(du -sk -- "$d" 2>/dev/null | cut -f1)
  rm -rf -- "$d" && echo "job $id ${kb:-0}"
done
[ "$mode" = clean ] && for f in "$w"/store/*.partial; do
  [ -f "$f" ] || [ -L "$f" ] || continue
  kb=$(du -sk -- "$f" 2>/dev/null | cut -f1)
  rm -f -- "$f" && echo "partial ${f##*/} ${kb:-0}"
done
[ "$mode" = clean ] && for d in "$w"/sites/.*.partial; do
  [ -d "$d" ] || continue
  kb=$(du -sk -- "$d" 2>/dev/null | cut -f1)
  rm -rf -- "$d" && echo "partial ${d##*/} ${kb:-0}"
done
[ "$mode" = clean ] && for d in "$w"/lock.stale-*; do
  [ -e "$d" ] || [ -L "$d" ] || continue
  rm -rf -- "$d" && echo "stale-lock ${d##*/} 0"
done
[ -n "$ours" ] && { mkdir -- "$w/jobs/$ours" || exit 4; }
echo "--store"
cd -- "$w/store" || exit 3
have=""
for f in "$@"; do
  if [ -L "$f" ]; then rm -f -- "$f"; echo "link $f"; continue; fi
  [ -f "$f" ] || continue
  touch -c -- "$f"
  have="$have $f"
done
[ -n "$have" ] || exit 0
if command -v sha256sum >/dev/null 2>&1; then
  sha256sum -- $have
else
  "$py" -c 'import hashlib, sys
for p in sys.argv[1:]:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    print(h.hexdigest() + "  " + p)' $have
fi
"""
"""One remote call per job: clean leftovers, make the job dir, hash what the store holds of the job's files."""

AGENT_RUN = r"""
# $1 job dir, then the command (python agent): run it with its log in the job dir, print its pid and process
# group, and kill the whole session's process group as soon as the channel's stdin ends.
j=$1; shift
cd -- "$j" || exit 125
exec 3<&0 </dev/null
"$@" "$j" >agent.log 2>&1 &
agent=$!
echo "$agent" >agent.pid
s=$(cat "/proc/$agent/stat" 2>/dev/null); s=${s##*) }
set -- $s
echo "agent-pid $agent ${3:-0}"
( while IFS= read -r _ <&3; do :; done; kill -s KILL 0 ) &
watchdog=$!
wait "$agent"; status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
"""

SERVE = r"""
# $1 session dir, then the command (python agent --serve ... DIR): the resident agent, in the session dir. Its
# requests come from the channel's stdin through cat; when that ends (the host closed the channel, or the session
# dropped) the whole session's process group is killed, agent included. Replies go straight to the channel's
# stdout; the shell ends when the agent does (a crash, a kill), and the channel says with which status.
# Only the agent holds the channel's stdout (fd 4 until it starts) and nothing its stderr: an agent that closes
# its replies but keeps running ends the channel's output at once (sshd sends EOF), instead of leaving the host
# to wait out run_timeout on a channel the shells keep open.
# (A background job's stdin is /dev/null in a non-interactive shell: the channel's goes to cat as fd 3, and the
# pipe from cat to the agent as fd 5. Descriptors are closed with `exec`: a redirection on a { group } makes
# dash keep a copy of the old one while the group runs.)
# When the agent ends first, it stops cat (whose pid the pump left in pump.pid): dash's `wait` waits for the
# whole pipeline, and cat would otherwise hold it until the host closes the channel. A cat stopped so fails,
# and only a cat that saw the end of its input kills the group.
s=$1; shift
cd -- "$s" || exit 125
exec 3<&0 4>&1 </dev/null >/dev/null 2>/dev/null
rm -f pump.pid
{ exec 4>&-; sh -c 'echo "$$" >pump.pid; exec cat' <&3 && kill -s KILL 0; } | {
  exec 5<&0 3<&-
  "$@" <&5 >&4 2>>serve.log 4>&- 5<&- &
  agent=$!
  exec 4>&- 5<&-
  wait "$agent"; status=$?
  while [ ! -s pump.pid ]; do sleep 1; done
  kill "$(cat pump.pid)" 2>/dev/null
  exit "$status"
} &
exec 4>&-
wait "$!"
"""

END_JOB = _AGENT_ALIVE + r"""
# $1 job dir: stop its agent if it still runs (a run that ends early), then remove the dir.
if agent_alive "$1"; then kill -s KILL "$p" 2>/dev/null; sleep 0.2; fi
rm -rf -- "$1"
"""

AGENT_STATE = _AGENT_ALIVE + r"""
# $1 job dir, $2 "kill" or "": say whether the job's agent runs ("running PID" / "gone"); kill it if asked.
if agent_alive "$1"; then
  if [ "$2" = kill ]; then kill -s KILL "$p" 2>/dev/null; echo "killed $p"; else echo "running $p"; fi
else
  echo gone
fi
"""

PROBE = r"""
# The agent's --probe (python agent --probe OUT), its output on the channel, killed if the channel closes.
exec 3<&0 </dev/null
"$@" 2>&1 &
agent=$!
( while IFS= read -r _ <&3; do :; done; kill -s KILL 0 ) &
watchdog=$!
wait "$agent"; status=$?
kill "$watchdog" 2>/dev/null
exit "$status"
"""

REMOVE_STORE_FILES = r"""
# $1 store dir, then file names: remove them (least recently used first), saying what each freed.
cd -- "$1" || exit 3; shift
for f in "$@"; do
  [ -f "$f" ] || [ -L "$f" ] || continue
  kb=$(du -sk -- "$f" 2>/dev/null | cut -f1)
  rm -f -- "$f" && echo "evicted $f ${kb:-0}"
done
"""

DISK_FREE = r"""
# $1 a directory: the kB available on its file system (POSIX df).
df -Pk -- "$1" 2>/dev/null | awk 'NR == 2 { print $4 }'
"""


@dataclass
class Leftovers:
    """What BEGIN_JOB (or `harness boards --clean`) found and removed."""

    jobs: List[str]
    partials: List[str]
    busy: List[str]
    """Job dirs left alone because their agent still runs."""
    freed_kb: int = 0

    def describe(self) -> str:
        parts = []
        if self.jobs:
            parts.append(f"{len(self.jobs)} stale job dir(s)")
        if self.partials:
            parts.append(f"{len(self.partials)} partial upload(s)")
        text = "removed " + " and ".join(parts) + f" ({self.freed_kb / 1024:.1f} MB)" if parts else ""
        if self.busy:
            text += ("; " if text else "") + f"left {len(self.busy)} job dir(s) whose agent still runs"
        return text


def parse_begin(output: str) -> "tuple[Leftovers, dict, List[str]]":
    """BEGIN_JOB's output: the leftovers removed, {store file: sha256} found, and store symlinks removed."""
    leftovers = Leftovers([], [], [])
    hashes, links = {}, []
    store = False
    for line in output.splitlines():
        if line == "--store":
            store = True
            continue
        words = line.split()
        if not words:
            continue
        if store:
            if words[0] == "link" and len(words) == 2:
                links.append(words[1])
            elif len(words) == 2 and re.fullmatch(r"[0-9a-f]{64}", words[0]):
                hashes[words[1]] = words[0]
            continue
        if words[0] in ("job", "partial", "stale-lock") and len(words) == 3:
            (leftovers.jobs if words[0] == "job" else leftovers.partials if words[0] == "partial"
             else []).append(words[1])
            leftovers.freed_kb += int(words[2]) if words[2].isdigit() else 0
        elif words[0] == "busy" and len(words) == 2:
            leftovers.busy.append(words[1])
    return leftovers, hashes, links


def quoted(paths: Iterable[str]) -> str:
    return " ".join(shlex.quote(path) for path in paths)
