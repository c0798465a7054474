"""The job dir's files: read never through a symlink, hashed, written whole or not at all; tensors in .npz.

The agent never reads through a symlink in its job dir or store (O_NOFOLLOW),
and writes only by creating a new temp file and renaming it over the target,
so the host never reads a half-written result.

Tensors travel in .npz files whose members are named after the tensors,
percent-encoded (npz_member): a model's names may hold "/" (Paddle's
`save_infer_model/scale_0.tmp_1`), "%" or anything else, and a member name
is a path inside the zip. The host (harness/core/npz.py) encodes and decodes
the same way; tests/test_agent.py holds the two to it.
"""

import hashlib
import os
import stat
import tempfile
import zipfile
from urllib.parse import quote, unquote

NPZ_SAFE = ":"
"""Kept as they are in member names besides letters, digits and `_.-~` (TFLite's `StatefulPartitionedCall:0`)."""

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


def npz_member(name):
    """The .npz member (without .npy) that holds the tensor called name: safe as a path, one-to-one."""
    return quote(name, safe=NPZ_SAFE)


def tensor_name(member):
    """The tensor name of an .npz member (without .npy), or None when the member is not an encoded name."""
    name = unquote(member)
    return name if npz_member(name) == member else None  # a stray "%", "/" or bad UTF-8 does not round-trip


def write_npz(f, np, arrays):
    """arrays ({tensor name: array}) into the open binary file f as an .npz numpy.load reads.

    Not numpy.savez(f, **arrays): a tensor named "file" (or "allow_pickle")
    would collide with savez's own parameters, and its names become paths.
    """
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(npz_member(name) + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def read_npz(path, np):
    """{tensor name: array} of an .npz the host wrote (names decoded), read without following a symlink."""
    arrays = {}
    with open_regular(path) as f, np.load(f, allow_pickle=False) as data:
        for member in data.files:
            name = tensor_name(member)
            if name is None:
                raise JobError("bad-inputs", "%s holds a member %r that is not an encoded tensor name"
                               % (os.path.basename(path), member))
            arrays[name] = np.ascontiguousarray(data[member])
    return arrays
