"""Where heavy artefacts live (sysroot, wheels, converted models, farm state), and content hashes.

Everything here sits outside the repository, keyed by content, so that a
fresh clone on the same machine reuses what an earlier one built.
"""

import hashlib
import json
import os
from pathlib import Path


def cache_root() -> Path:
    """The cache directory: $MNN_HARNESS_CACHE, else ~/.cache/mnn-harness."""
    root = os.environ.get("MNN_HARNESS_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "mnn-harness"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path, chunk_size=1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value) -> str:
    """Hash of a JSON-able value, stable across runs (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
