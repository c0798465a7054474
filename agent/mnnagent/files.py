"""The job dir's files: read never through a symlink, hashed, written whole or not at all.

The agent never reads through a symlink in its job dir or store (O_NOFOLLOW),
and writes only by creating a new temp file and renaming it over the target,
so the host never reads a half-written result.
"""

import hashlib
import os
import stat
import tempfile

from .contract import JobError


def open_regular(path):
    """Open a file for reading without following a symlink (O_NOFOLLOW): the job dir's files are the host's,
    and a link planted there must not make the agent read (or hash) anything else."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JobError("bad-job", "%s is not a regular file" % path)
    return os.fdopen(fd, "rb")


def sha256_file(path):
    digest = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path, write):
    """Call write(file_object) on a temp file beside path, then rename it over path."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve(job_dir, path):
    return path if os.path.isabs(path) else os.path.join(job_dir, path)
