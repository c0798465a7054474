"""Files the host writes whole or not at all, and the locks that keep two processes from making the same thing:
the one way the harness does both (the agent, which imports nothing of the harness, has its own in
agent/mnnagent/files.py).

A reader (a view, `harness report`, another run, a board's sshd) must never see half a file: everything is
written under a temporary name in the same directory and renamed over the final one when complete. The
temporary name is unique per writer (mkstemp), so two processes writing the same file never share one.
"""

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union


@contextmanager
def replacing(path: Path, mode: Optional[int] = None) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed over `path` when the block completes, removed if not.

    mode: the file's permissions (default: mkstemp's 0600 widened to 0644, as a plain write would make it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644 if mode is None else mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, content: Union[str, bytes], mode: Optional[int] = None) -> Path:
    """path holding content (text as UTF-8), written to a temporary name and renamed when complete."""
    with replacing(path, mode) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
    return Path(path)


def lock_file(entry: Path) -> Path:
    """The lock of a cache entry (a file or directory): ENTRY.lock beside it."""
    return Path(entry).with_name(Path(entry).name + ".lock")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file path (made with its directory if missing), across processes, for the block.

    The lock goes with the process: a run that dies holding it frees it, and the next one finds what it left
    (a temporary file, a half-built directory) stale and removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """A fresh directory beside `final` to build in, renamed to `final` when the block completes (an incomplete
    `final` left by an older, interrupted harness is replaced), removed if it does not.

    Call it under `locked`: the leftovers of builds that died are then known to be stale and are removed
    first, and no one else builds `final` at the same time.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.building-*"):
        shutil.rmtree(stale, ignore_errors=True)
    directory = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    try:
        yield directory
        directory.chmod(0o755)  # mkdtemp makes it 0700; other tools of the same host may read the cache
        if final.exists():
            shutil.rmtree(final)
        directory.rename(final)
    finally:
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
