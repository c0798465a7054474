"""The shapes a model's outputs will have for given inputs, worked out by MNN on the host before any board runs.

They bound what a board may send back (board_files: an outputs.npz larger
than these shapes allow is refused before it is read), so a board cannot
make the host load gigabytes. MNN reads them in the child of signature.py,
resized to the inputs; the answer is cached by the model's hash and the
input shapes. A model MNN's Interpreter cannot size (dynamic outputs,
subgraphs) gets None per output: the caps then fall back to a generous bound.
"""

import json
from pathlib import Path
from typing import Dict, List, Optional

from ..cache import cache_root, sha256_json
from ..errors import HarnessError
from ..files import write_atomic
from .signature import mnn_signature


def output_shapes(mnn_path: Path, mnn_sha256: str, inputs: Dict[str, List[int]],
                  outputs: List[str]) -> Dict[str, Optional[List[int]]]:
    """Output name -> shape for one sample with these input shapes; None where MNN could not tell."""
    key = sha256_json({"model": mnn_sha256, "inputs": inputs, "outputs": outputs})
    cached = cache_root() / "models" / "output-shapes" / f"{key}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    try:
        found = mnn_signature(mnn_path, inputs).output_shapes
    except (HarnessError, OSError):
        return {name: None for name in outputs}  # the caps fall back to their generous bound
    shapes = {name: (found.get(name) if _usable(found.get(name)) else None) for name in outputs}
    write_atomic(cached, json.dumps(shapes))
    return shapes


def _usable(shape) -> bool:
    return isinstance(shape, list) and bool(shape) and all(isinstance(d, int) and d > 0 for d in shape)
