"""A job: what one target runs (agent, model, inputs, settings), and reading back what it wrote.

The agent contract lives in agent/mnn_agent.py: a job directory with
job.json, results in result.json and outputs.npz. Every target runs the agent
as one file, the bundle of agent_bundle. This module is the host's
side of that contract, shared by every target so that local and remote runs
are read the same way.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .agent_bundle import bundle
from .board_files import (DUMP_JSON_MAX, DUMP_NPZ_MAX, ITEM_BYTES_MAX, NPZ_MEMBER_OVERHEAD, RESULT_JSON_MAX,
                          check_regular, load_npz, npz_limit, read_result_json)
from .cache import sha256_file
from .errors import BoardResultError

JOB_SCHEMA = 2
"""The job.json the host writes; the agent's docstring documents it (and reads schema 1 too)."""


@dataclass(frozen=True)
class Job:
    """One run of one model on one set of inputs with one group of settings."""

    id: str
    model_path: Path
    model_sha256: str
    inputs_path: Path
    inputs_sha256: str
    input_names: List[str]
    output_names: List[str]
    layout: str
    settings: dict
    iterations: int = 1
    warmup: int = 0
    agent_path: Optional[Path] = None
    """The agent file to run; None: the bundle of the repository's agent (see agent())."""
    preprocess: Optional[dict] = None
    """Board-side preprocessing to run for the parity check (None: none)."""
    images_path: Optional[Path] = None
    images_sha256: Optional[str] = None
    dump: Optional[dict] = None
    """The per-op dump of `harness layers` (samples to trace, ops to keep whole, ops to replay on another
    machine's inputs; documented in agent/mnnagent/dump.py). None: no dump."""
    samples: int = 1
    """Samples every target runs (stream steps for a stream)."""
    stream: Optional[dict] = None
    """{"steps": N, "carry": {output: input}} (None: independent samples)."""
    input_shapes: Optional[Dict[str, List[int]]] = None
    """Each input's shape per sample; bounds the board's own preprocessed tensors."""
    output_shapes: Optional[Dict[str, Optional[List[int]]]] = None
    """Each output's shape per sample as MNN works it out on the host (None: unknown); bounds outputs.npz."""
    source_path: Optional[Path] = None
    """The model a source-model side runs instead of the .mnn (ONNX or TFLite); host only, never in job.json."""
    source_format: Optional[str] = None
    """"ONNX" or "TFLITE" for source_path."""
    mnn_version: Optional[str] = None
    """The MNN release the job must run with (None: each board's own: its `mnn_version`, else the host's).
    Host only: the board learns it from the sites on its path, and the result says which MNN really ran."""
    script: Optional[dict] = None
    """{"name", "source", "args"}: the agent runs this standalone script on the job's model and inputs instead of
    running the model itself (a `harness repro` bundle proving itself; agent/mnnagent/script.py). None: none."""

    def agent(self) -> Path:
        """The one file every target runs for this job: agent_path, else the agent's bundle (built once per
        content, then found in the cache)."""
        return self.agent_path if self.agent_path is not None else bundle()

    def identity(self) -> str:
        """A digest of everything that goes into the agent's run, the job's own name and paths aside:
        two jobs with the same identity on the same board compute the same thing."""
        manifest = self.manifest("model", "inputs", "images" if self.images_path else None)
        del manifest["id"]
        manifest["agent_sha256"] = sha256_file(self.agent())
        manifest["mnn_version"] = self.mnn_version
        return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()

    def limits(self) -> Dict[str, int]:
        """The most bytes each file a target brings back may have; anything bigger is refused unread."""
        shapes = {name: (self.output_shapes or {}).get(name) for name in self.output_names}
        inputs = self.input_shapes or {}
        image = (self.preprocess or {}).get("input") or (self.input_names[0] if self.input_names else None)
        return {"result.json": RESULT_JSON_MAX,
                "outputs.npz": npz_limit(shapes, self.samples),
                "preprocessed.npz": npz_limit({"preprocessed": inputs.get(image)}, self.samples),
                "dump.json": DUMP_JSON_MAX, "dump.npz": DUMP_NPZ_MAX}

    def manifest(self, model_ref: str, inputs_ref: str, images_ref: Optional[str] = None,
                 deadline_s: Optional[float] = None) -> dict:
        """job.json (JOB_SCHEMA, documented in agent/mnn_agent.py), with files named as the target sees them.

        deadline_s: seconds after which the agent ends itself (SIGALRM), even
        when nobody is left to stop it (the host vanished, the session hung).
        """
        preprocess = None
        if self.preprocess is not None and images_ref is not None:
            preprocess = {**self.preprocess, "images": images_ref, "images_sha256": self.images_sha256}
        return {
            "preprocess": preprocess, "dump": self.dump, "script": self.script,
            "schema": JOB_SCHEMA, "id": self.id,
            "model": model_ref, "model_sha256": self.model_sha256,
            "inputs": inputs_ref, "inputs_sha256": self.inputs_sha256,
            "input_names": self.input_names, "output_names": self.output_names,
            "layout": self.layout, "settings": self.settings,
            "samples": self.samples, "stream": self.stream,
            "iterations": self.iterations, "warmup": self.warmup,
            **({"deadline_s": int(deadline_s)} if deadline_s else {}),
        }


ResultFileError = BoardResultError
"""result.json or outputs.npz is missing, unreadable, too big, or does not match its hash."""


def read_agent_result(job_dir: Path, job: Optional[Job] = None) -> Tuple[dict, Optional[Dict[str, np.ndarray]]]:
    """The agent's result.json and, when it succeeded, its outputs: validated, bounded, checked against their hash.

    Every check of board_files applies (see there); job gives the expected
    output names and the size caps (without it: any names, caps for unknown shapes).
    """
    if not (job_dir / "result.json").exists() and not (job_dir / "result.json").is_symlink():
        raise BoardResultError(f"the agent wrote no result.json in {job_dir}")
    facts = read_result_json(job_dir / "result.json")
    if facts["status"] != "ok":
        return facts, None
    outputs_path = job_dir / "outputs.npz"
    names = job.output_names if job else None
    limit = job.limits()["outputs.npz"] if job else npz_limit({name: None for name in facts.get("outputs") or {}}, 1)
    check_regular(outputs_path, limit, "outputs.npz")
    if sha256_file(outputs_path) != facts["outputs_sha256"]:
        raise BoardResultError(f"{outputs_path} does not match the SHA-256 in result.json: "
                               "the transfer was cut or corrupted")
    outputs = load_npz(outputs_path, names, limit, "outputs.npz")
    declared = facts.get("outputs") or {}
    for name, array in outputs.items():
        shape = (declared.get(name) or {}).get("shape")
        if shape is not None and list(array.shape) != shape:
            raise BoardResultError(f"outputs.npz: {name!r} has shape {list(array.shape)}, result.json says {shape}")
    return facts, outputs


def read_preprocessed(job_dir: Path, facts: dict, job: Optional[Job] = None) -> Optional[np.ndarray]:
    """The board's own preprocessed tensors, when the job asked for them and they arrived whole."""
    info = facts.get("preprocess") or {}
    path = job_dir / "preprocessed.npz"
    if info.get("status") != "ok" or not path.is_file() or path.is_symlink() \
            or sha256_file(path) != info.get("sha256"):
        return None
    limit = job.limits()["preprocessed.npz"] if job else NPZ_MEMBER_OVERHEAD + (256 << 20) * ITEM_BYTES_MAX
    arrays = load_npz(path, None, limit, "preprocessed.npz")
    if len(arrays) != 1:
        raise BoardResultError(f"preprocessed.npz holds {len(arrays)} arrays, not 1")
    return next(iter(arrays.values()))
