"""A job: what one target runs (agent, model, inputs, settings), and reading back what it wrote.

The agent contract lives in agent/mnn_agent.py: a job directory with
job.json, results in result.json and outputs.npz. This module is the host's
side of that contract, shared by every target so that local and remote runs
are read the same way.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .cache import sha256_file

AGENT_PATH = Path(__file__).resolve().parent.parent / "agent" / "mnn_agent.py"
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
    agent_path: Path = AGENT_PATH
    preprocess: Optional[dict] = None
    """Board-side preprocessing to run for the parity check (None: none)."""
    images_path: Optional[Path] = None
    images_sha256: Optional[str] = None
    dump: Optional[dict] = None
    """The per-op dump of `harness layers` (samples to trace, ops to keep whole, ops to replay on another
    machine's inputs; documented in the agent's dump_ops). None: no dump."""
    samples: int = 1
    """Samples every target runs (stream steps for a stream)."""
    stream: Optional[dict] = None
    """{"steps": N, "carry": {output: input}} (None: independent samples)."""

    def manifest(self, model_ref: str, inputs_ref: str, images_ref: Optional[str] = None) -> dict:
        """job.json (JOB_SCHEMA, documented in agent/mnn_agent.py), with files named as the target sees them."""
        preprocess = None
        if self.preprocess is not None and images_ref is not None:
            preprocess = {**self.preprocess, "images": images_ref, "images_sha256": self.images_sha256}
        return {
            "preprocess": preprocess, "dump": self.dump,
            "schema": JOB_SCHEMA, "id": self.id,
            "model": model_ref, "model_sha256": self.model_sha256,
            "inputs": inputs_ref, "inputs_sha256": self.inputs_sha256,
            "input_names": self.input_names, "output_names": self.output_names,
            "layout": self.layout, "settings": self.settings,
            "samples": self.samples, "stream": self.stream,
            "iterations": self.iterations, "warmup": self.warmup,
        }


class ResultFileError(Exception):
    """result.json or outputs.npz is missing, unreadable or does not match its hash."""


def read_agent_result(job_dir: Path) -> Tuple[dict, Optional[Dict[str, np.ndarray]]]:
    """The agent's result.json and, when it succeeded, its outputs (checked against their hash)."""
    result_path = job_dir / "result.json"
    if not result_path.is_file():
        raise ResultFileError(f"the agent wrote no result.json in {job_dir}")
    try:
        facts = json.loads(result_path.read_text())
    except ValueError as error:
        raise ResultFileError(f"{result_path} is not valid JSON: {error}") from error
    if facts.get("status") != "ok":
        return facts, None
    outputs_path = job_dir / "outputs.npz"
    if not outputs_path.is_file():
        raise ResultFileError(f"result.json says ok but {outputs_path} is missing")
    expected = facts.get("outputs_sha256")
    if expected and sha256_file(outputs_path) != expected:
        raise ResultFileError(f"{outputs_path} does not match the SHA-256 in result.json: "
                              "the transfer was cut or corrupted")
    with np.load(outputs_path, allow_pickle=False) as data:
        outputs = {name: data[name] for name in data.files}
    return facts, outputs


def read_preprocessed(job_dir: Path, facts: dict) -> Optional[np.ndarray]:
    """The board's own preprocessed tensors, when the job asked for them and they arrived whole."""
    info = facts.get("preprocess") or {}
    path = job_dir / "preprocessed.npz"
    if info.get("status") != "ok" or not path.is_file() or sha256_file(path) != info.get("sha256"):
        return None
    with np.load(path, allow_pickle=False) as data:
        return data[data.files[0]]
