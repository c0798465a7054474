"""The source model on the host (ONNX Runtime): the third corner of the comparison.

MNN on x86 against this tells whether the conversion changed the model; MNN on
a board against MNN on x86 tells whether the platform did. It writes the
agent's result.json and outputs.npz, so it is read like every other target.
"""

import json
import platform
import time
from pathlib import Path

import numpy as np

from ..errors import BoardError
from ..inventory import BoardSpec
from ..job import Job
from ..results import TargetResult
from .base import StageCallback, Target

SOURCE_NAME = "onnxruntime"


def source_board() -> BoardSpec:
    return BoardSpec(name=SOURCE_NAME, kind="source", tags=("reference", "source"))


class SourceModelTarget(Target):
    """Runs the scenario's ONNX source model with ONNX Runtime's CPU provider."""

    def __init__(self, source_path: Path, lock_timeout: float = 0.0):
        super().__init__(source_board(), lock_timeout)
        self.source_path = source_path

    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise BoardError("onnxruntime is not installed: `pip install -e .[model]`") from error
        on_stage("run")
        started = time.perf_counter()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # a reference, not a race: deterministic reductions
        session = onnxruntime.InferenceSession(str(self.source_path), options, providers=["CPUExecutionProvider"])
        with np.load(job.inputs_path, allow_pickle=False) as data:
            inputs = {name: data[name] for name in job.input_names}
        samples = len(inputs[job.input_names[0]])
        latency, collected = [], {name: [] for name in job.output_names}
        for sample in range(samples):
            begin = time.perf_counter()
            outputs = session.run(job.output_names, {name: inputs[name][sample] for name in job.input_names})
            latency.append((time.perf_counter() - begin) * 1000.0)
            for name, value in zip(job.output_names, outputs):
                collected[name].append(np.asarray(value, dtype=np.float32))
        arrays = {name: np.stack(values) for name, values in collected.items()}
        np.savez(local_dir / "outputs.npz", **arrays)
        facts = {"schema": 1, "status": "ok", "error": None, "machine": platform.machine(),
                 "python": platform.python_version(), "runtime": f"onnxruntime {onnxruntime.__version__}",
                 "mnn_version": None, "latency_ms": latency, "settings": {"threads": 1},
                 "outputs": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in arrays.items()}}
        (local_dir / "result.json").write_text(json.dumps(facts, indent=1))
        result.timings["run"] = time.perf_counter() - started

    def probe_impl(self, health: dict) -> None:
        import onnxruntime
        health["facts"] = {"machine": platform.machine(), "runtime": f"onnxruntime {onnxruntime.__version__}"}
