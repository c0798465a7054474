"""The shapes a model's outputs will have for given inputs, worked out by MNN on the host before any board runs.

They bound what a board may send back (board_files: an outputs.npz larger
than these shapes allow is refused before it is read), so a board cannot
make the host load gigabytes. MNN runs in a child process (it prints on
stdout and may crash on an odd model); the answer is cached by the model's
hash and the input shapes. A model MNN's Interpreter cannot size (dynamic
outputs, subgraphs) gets None per output: the caps then fall back to a
generous bound.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..cache import cache_root, sha256_json
from ..files import write_atomic

_SHAPES_CHILD = (
    "import json, sys\n"
    "import MNN\n"
    "path, inputs, outputs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])\n"
    "interpreter = MNN.Interpreter(path)\n"
    "session = interpreter.createSession({'numThread': 1})\n"
    "for name, shape in inputs.items():\n"
    "    interpreter.resizeTensor(interpreter.getSessionInput(session, name), tuple(shape))\n"
    "interpreter.resizeSession(session)\n"
    "shapes = {name: list(interpreter.getSessionOutput(session, name).getShape()) for name in outputs}\n"
    "sys.stderr.write('\\nSHAPES ' + json.dumps(shapes) + '\\n')\n"
)
TIMEOUT_S = 120.0


def output_shapes(mnn_path: Path, mnn_sha256: str, inputs: Dict[str, List[int]],
                  outputs: List[str]) -> Dict[str, Optional[List[int]]]:
    """Output name -> shape for one sample with these input shapes; None where MNN could not tell."""
    key = sha256_json({"model": mnn_sha256, "inputs": inputs, "outputs": outputs})
    cached = cache_root() / "models" / "output-shapes" / f"{key}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    unknown: Dict[str, Optional[List[int]]] = {name: None for name in outputs}
    try:
        completed = subprocess.run([sys.executable, "-c", _SHAPES_CHILD, str(mnn_path), json.dumps(inputs),
                                    json.dumps(outputs)], capture_output=True, text=True, timeout=TIMEOUT_S,
                                   stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return unknown
    for line in completed.stderr.splitlines():
        if line.startswith("SHAPES "):
            try:
                found = json.loads(line[len("SHAPES "):])
            except ValueError:
                return unknown
            shapes = {name: (found.get(name) if _usable(found.get(name)) else None) for name in outputs}
            write_atomic(cached, json.dumps(shapes))
            return shapes
    return unknown


def _usable(shape) -> bool:
    return isinstance(shape, list) and bool(shape) and all(isinstance(d, int) and d > 0 for d in shape)
