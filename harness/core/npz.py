"""Tensors in .npz files as host and agent exchange them: a member per tensor, named by its encoded name.

A model's tensor names are whatever its exporter chose: Paddle writes
`save_infer_model/scale_0.tmp_1`, ONNX exporters `/model/conv/Conv_output_0`,
TFLite `StatefulPartitionedCall:0`. An .npz is a zip whose member names are
paths, so each tensor's member is its name percent-encoded (everything but
letters, digits, `_.-~` and `:`), plus `.npy`; the encoding is one-to-one and
leaves ordinary names as they are (`logits.npy`). The agent does the same
(agent/mnnagent/files.py: npz_member, tensor_name); tests/test_agent.py
holds the two sides to one rule. Files from a board are read through
board_files.load_npz, which checks every member against this rule before
loading anything; this module reads and writes the host's own files.
"""

import zipfile
from pathlib import Path
from typing import Dict, Mapping, Optional
from urllib.parse import quote, unquote

import numpy as np

from .files import replacing

SAFE = ":"
"""Kept as they are besides letters, digits and `_.-~`: the agent's NPZ_SAFE."""


def member_name(name: str) -> str:
    """The .npz member (without .npy) that holds the tensor called name."""
    return quote(name, safe=SAFE)


def tensor_name(member: str) -> Optional[str]:
    """The tensor name a member (without .npy) encodes, or None when it is not such an encoding."""
    name = unquote(member)
    return name if member_name(name) == member else None


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """arrays ({tensor name: array}) as an .npz at path, written to a temp name and renamed when complete.

    Not numpy.savez(path, **arrays): a tensor named "file" collides with its parameter, and names become paths.
    """
    path = Path(path)
    with replacing(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                with archive.open(member_name(name) + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return path


def load_npz(path: Path) -> Dict[str, np.ndarray]:
    """{tensor name: array} of an .npz this host wrote (inputs.npz, a replay's inputs), names decoded."""
    with np.load(path, allow_pickle=False) as stored:
        return {tensor_name(member) or member: stored[member] for member in stored.files}


def load_tensor(path: Path, name: str) -> Optional[np.ndarray]:
    """One tensor of an .npz this host wrote, or None when it has none of that name."""
    with np.load(path, allow_pickle=False) as stored:
        member = member_name(name)
        return stored[member] if member in stored.files else None
