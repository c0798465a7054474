"""The source model on the host (ONNX Runtime, or LiteRT for TFLite): the third corner of the comparison.

MNN on x86 against this tells whether the conversion changed the model; MNN on
a board against MNN on x86 tells whether the platform did. It writes the
agent's result.json and outputs.npz, so it is read like every other target.
In-process; a session keeps each source model it loaded (the job names it:
Job.source_path) for the jobs after.
"""

import json
import platform
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ...core.cache import sha256_file
from ...core.errors import BoardError
from ...config.inventory import BoardSpec
from ...core.job import Job
from ...core.npz import load_npz, save_npz
from ...core.results import TargetResult
from .base import StageCallback, Target

SOURCE_NAMES = {"ONNX": "onnxruntime", "TFLITE": "litert"}


def source_board(source_format: str = "ONNX") -> BoardSpec:
    return BoardSpec(name=SOURCE_NAMES[source_format], kind="source", tags=("reference", "source"))


class SourceModelTarget(Target):
    """Runs the scenario's source model: ONNX with ONNX Runtime's CPU provider, TFLite with LiteRT."""

    def __init__(self, board: BoardSpec, lock_timeout: float = 0.0):
        super().__init__(board, lock_timeout)
        self.loaded: Dict[Tuple[str, str], tuple] = {}
        """(source path, format) -> (run function, runtime): the models this session loaded."""

    def session_for(self, source_path: Path, source_format: str):
        key = (str(source_path), source_format)
        if key not in self.loaded:
            self.loaded[key] = self.load(source_path, source_format)
        return self.loaded[key]

    @staticmethod
    def load(source_path: Path, source_format: str = "ONNX"):
        """A function sample_inputs -> outputs in job order, and the runtime's name and version."""
        try:
            if source_format == "TFLITE":
                from ai_edge_litert.interpreter import Interpreter, OpResolverType

                import ai_edge_litert
                # TFLite's own kernels, not the XNNPACK delegate: a reference rather than the fastest path,
                # and no "INFO: Created TensorFlow Lite XNNPACK delegate" line on the report's stderr.
                builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                interpreter = Interpreter(model_path=str(source_path), num_threads=1,
                                          experimental_op_resolver_type=builtin)
                interpreter.allocate_tensors()
                inputs = {d["name"]: d["index"] for d in interpreter.get_input_details()}
                outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}

                def run(feeds, names):
                    for name, value in feeds.items():
                        interpreter.set_tensor(inputs[name], value)
                    interpreter.invoke()
                    return [interpreter.get_tensor(outputs[name]) for name in names]
                return run, f"litert {getattr(ai_edge_litert, '__version__', '?')}"
            import onnxruntime
        except ImportError as error:
            package = "ai-edge-litert" if source_format == "TFLITE" else "onnxruntime"
            raise BoardError(f"the {source_format} runtime is not installed: `pip install {package}`") \
                from error
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # a reference, not a race: deterministic reductions
        session = onnxruntime.InferenceSession(str(source_path), options, providers=["CPUExecutionProvider"])
        return (lambda feeds, names: session.run(names, feeds)), f"onnxruntime {onnxruntime.__version__}"

    def expected_mnn_version(self, job: Job) -> Optional[str]:
        return None  # ONNX Runtime or LiteRT: no MNN runs here

    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        self.enter("run", on_stage)
        started = time.perf_counter()
        if job.source_path is None:
            raise BoardError(f"{self.name}: the job names no source model")
        run, runtime = self.session_for(job.source_path, job.source_format or "ONNX")
        stored = load_npz(job.inputs_path)
        inputs = {name: stored[name] for name in job.input_names}
        carry = (job.stream or {}).get("carry") or {}
        latency, collected, carried = [], {name: [] for name in job.output_names}, {}
        for sample in range(job.samples):
            self.check_interrupted()
            # The same walk as the agent's: one shared sample for every step, carried outputs fed back.
            feeds = {name: inputs[name][sample if len(inputs[name]) > 1 else 0, ...] for name in job.input_names}
            feeds.update(carried)
            begin = time.perf_counter()
            outputs = dict(zip(job.output_names, run(feeds, job.output_names)))
            latency.append((time.perf_counter() - begin) * 1000.0)
            for name in job.output_names:
                value = np.asarray(outputs[name])
                collected[name].append(value.astype(np.float32) if value.dtype.kind == "f" else value)
            carried = {fed: np.asarray(outputs[output]).astype(inputs[fed].dtype) for output, fed in carry.items()}
        arrays = {name: np.stack(values) for name, values in collected.items()}
        save_npz(local_dir / "outputs.npz", arrays)
        facts = {"schema": 2, "status": "ok", "error": None, "machine": platform.machine(),
                 "python": platform.python_version(), "runtime": runtime,
                 "outputs_sha256": sha256_file(local_dir / "outputs.npz"),
                 "mnn_version": None, "latency_ms": latency, "settings": {"threads": 1},
                 "inputs": {name: {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for name, a in inputs.items()},
                 "outputs": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in arrays.items()}}
        if job.stream:
            facts["steps"] = job.samples
        (local_dir / "result.json").write_text(json.dumps(facts, indent=1))
        result.timings["run"] = time.perf_counter() - started

    def close(self) -> None:
        self.loaded.clear()

    def probe_impl(self, health: dict) -> None:
        health["facts"] = {"machine": platform.machine(), "runtime": "in-process"}
