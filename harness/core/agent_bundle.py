"""The agent as the one file every target runs: a zipapp of agent/mnn_agent.py and the package agent/mnnagent/.

The entry script becomes the archive's __main__.py and the package sits at its
root, so `python3 mnn_agent-<sha16>.pyz JOB_DIR` on a board runs exactly what
`python3 agent/mnn_agent.py JOB_DIR` runs from the repository (Python runs a
zip with a __main__.py by itself, from 3.5 on).

The archive is deterministic: entries sorted, one fixed timestamp and mode,
sources only (no .pyc, no __pycache__), and stored rather than deflated
(deflate's bytes depend on the zlib build, stored bytes do not: the bundle is
~75 kB either way). The same sources give the same bytes, so the same SHA-256
and the same store name on every machine and every run.

It is built once per content: the cache key is a digest of the sources (and
BUNDLE_FORMAT), so a run reads ~75 kB of sources, hashes them and finds the
bundle under the cache dir; an edited source builds a new one.
"""

import hashlib
import io
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

from .cache import cache_root
from .errors import SetupError
from .files import write_atomic
from .shipped import agent_dir

ENTRY = "mnn_agent.py"
"""The entry script in the agent's directory: the contract's documentation and the command line; the bundle's __main__.py."""
PACKAGE = "mnnagent"
BUNDLE_FORMAT = 1
"""The archive's layout; part of the cache key, so a change in how bundles are made cannot reuse an old one."""
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""Every entry's timestamp: the earliest a zip can hold, never the sources' own times."""
ZIP_MODE = 0o644


class AgentSourceError(SetupError):
    """The agent's sources are missing where the harness expects them (a broken checkout)."""


def sources(directory: Optional[Path] = None) -> List[Tuple[str, bytes]]:
    """(name in the archive, bytes) of every file the bundle holds, sorted by name. `directory` defaults to the
    agent that ships with the harness (shipped.agent_dir: the installed package's, else the clone's)."""
    directory = agent_dir() if directory is None else Path(directory)
    entry = directory / ENTRY
    package = directory / PACKAGE
    if not entry.is_file() or not (package / "__init__.py").is_file():
        raise AgentSourceError(f"the agent's sources are not in {directory}: it needs {ENTRY} and {PACKAGE}/ "
                               "(reinstall the harness, or use a complete checkout of the repository)")
    files = [("__main__.py", entry.read_bytes())]
    for path in package.rglob("*.py"):
        relative = path.relative_to(directory)
        if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
            continue
        files.append((relative.as_posix(), path.read_bytes()))
    return sorted(files)


def source_digest(files: List[Tuple[str, bytes]]) -> str:
    digest = hashlib.sha256(f"mnn-harness agent bundle {BUNDLE_FORMAT}\n".encode())
    for name, data in files:
        digest.update(f"{name}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def archive(files: List[Tuple[str, bytes]]) -> bytes:
    """The zipapp's bytes: the same files give the same bytes, whatever the machine, clock, umask or locale."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system = 3  # Unix, so external_attr carries the mode
            info.external_attr = (0o100000 | ZIP_MODE) << 16
            info.compress_type = zipfile.ZIP_STORED
            bundle.writestr(info, data)
    return buffer.getvalue()


def digest() -> str:
    """The shipped agent's source digest: what `harness --version` names and what a bundle's file name starts
    with; the same for a wheel's install and a clone of the same commit."""
    return source_digest(sources())


def bundle(directory: Optional[Path] = None, cache_dir: Optional[Path] = None) -> Path:
    """The bundle of the agent's current sources (those in `directory`, default the shipped agent): found in the
    cache, or built there now (written atomically, so parallel runs building the same bundle each rename the
    same bytes into place)."""
    files = sources(directory)
    directory = Path(cache_dir) if cache_dir is not None else cache_root() / "agent"
    path = directory / f"mnn_agent-src-{source_digest(files)[:16]}.pyz"
    if path.is_file():
        return path
    return write_atomic(path, archive(files), ZIP_MODE)
