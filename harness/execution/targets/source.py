"""The source model on the host (ONNX Runtime, or LiteRT for TFLite): the third corner of the comparison.

MNN on x86 against this tells whether the conversion changed the model; MNN on
a board against MNN on x86 tells whether the platform did. It writes the
agent's result.json and outputs.npz, so it is read like every other target.
In-process; a session keeps each source model it loaded (the job names it:
Job.source_path) for the jobs after. It walks the samples and a stream's steps
with the agent's own code (mnnagent.job.run_all: which sample each input
gives, what a step carries to the next), so both sides feed the same tensors.
"""

import json
import os
import platform
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ...core.cache import sha256_file
from ...config.inventory import BoardSpec
from ...core.errors import BoardError, BoardResultError
from ...core.job import Job
from ...core.npz import load_npz, save_npz
from ...core.results import TargetResult
from ...core.shipped import agent_module
from .base import StageCallback, Target

SOURCE_NAMES = {"ONNX": "onnxruntime", "TFLITE": "litert"}
XNNPACK_LINE = b"Created TensorFlow Lite XNNPACK delegate"
"""What LiteRT's C++ prints on stderr when its default delegate starts: not for the report's terminal."""


class SourceModelError(BoardResultError):
    """The source runtime is there but cannot run the source model: the source comparison did not happen."""


@dataclass
class LoadedSource:
    run: Callable[[dict, list], list]
    """(feeds by input name, output names) -> the outputs in that order."""
    runtime: str
    """"onnxruntime 1.32.0", "litert 2.3.0", "litert 2.3.0 + XNNPACK delegate"."""
    notes: List[str] = field(default_factory=list)
    """What the report should say about how the reference ran (a delegate taken for custom ops)."""


def custom_ops(interpreter) -> List[str]:
    """The model's custom ops (MediaPipe's are CamelCase; TFLite's builtins are CONV_2D-style), in graph order."""
    names = []
    for op in interpreter._get_ops_details():  # LiteRT's only listing of a model's operators
        name = str(op.get("op_name", ""))
        if name and not re.fullmatch(r"[A-Z0-9_]+", name) and name not in names:
            names.append(name)
    return names


@contextmanager
def xnnpack_line_kept_off_stderr():
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on the process's stderr (fd 2)
    when its delegate starts: catch fd 2 meanwhile and give back everything else it received (another
    thread's words must not be lost)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = b"".join(line for line in caught.read().splitlines(keepends=True) if XNNPACK_LINE not in line)
            if kept:
                os.write(2, kept)


def load_tflite(source_path: Path) -> LoadedSource:
    """LiteRT with TFLite's own kernels; a model with custom ops that only the default delegate implements
    (MediaPipe's Convolution2DTransposeBias, in its XNNPACK delegate) runs with that delegate, and says so."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    import ai_edge_litert
    version = f"litert {getattr(ai_edge_litert, '__version__', '?')}"
    def unreadable(error: Exception) -> SourceModelError:
        return SourceModelError(f"LiteRT could not load {source_path.name}: {first_line(error)}\n  fix: check that "
                                "the source is the whole model the .mnn was converted from, or set "
                                "`source_reference: false` (the boards are still compared with x86)")
    try:
        # TFLite's own kernels, not the XNNPACK delegate: a reference rather than the fastest path.
        interpreter = Interpreter(model_path=str(source_path), num_threads=1,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except ValueError as error:  # not a TFLite flatbuffer
        raise unreadable(error) from error
    notes = []
    try:
        interpreter.allocate_tensors()
    except RuntimeError as error:
        custom = custom_ops(interpreter)
        if "custom op" not in str(error) or not custom:
            raise unreadable(error) from error
        try:
            with xnnpack_line_kept_off_stderr():
                interpreter = Interpreter(model_path=str(source_path), num_threads=1)
                interpreter.allocate_tensors()
        except RuntimeError as delegated:
            raise SourceModelError(
                f"LiteRT cannot run the custom op(s) {', '.join(custom)} of {source_path.name}: neither its builtin "
                f"kernels nor its XNNPACK delegate implement them ({first_line(delegated)})\n  fix: set "
                "`source_reference: false` to run without the source comparison (the boards are still compared "
                "with x86), or compare against the app that registers these ops") from delegated
        version += " + XNNPACK delegate"
        notes.append(f"the source model uses the custom op(s) {', '.join(custom)}, which only LiteRT's default "
                     "XNNPACK delegate implements: the reference ran with that delegate (XNNPACK's kernels for the "
                     "ops it takes, TFLite's for the rest)")
    inputs = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}

    def run(feeds, names):
        for name, value in feeds.items():
            interpreter.set_tensor(inputs[name], value)
        interpreter.invoke()
        return [interpreter.get_tensor(outputs[name]) for name in names]
    return LoadedSource(run, version, notes)


class SourceRunner:
    """A loaded source model as the agent's walk runs a model: feeds by input name -> outputs by name (floats
    as float32, as MNN gives them)."""

    def __init__(self, loaded: LoadedSource, output_names: List[str], check: Callable[[], None]):
        self.loaded, self.output_names, self.check = loaded, output_names, check

    def run(self, feeds: dict) -> Dict[str, np.ndarray]:
        self.check()
        produced = {}
        for name, value in zip(self.output_names, self.loaded.run(feeds, self.output_names)):
            value = np.asarray(value)
            produced[name] = value.astype(np.float32) if value.dtype.kind == "f" else value
        return produced


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def source_board(source_format: str = "ONNX") -> BoardSpec:
    return BoardSpec(name=SOURCE_NAMES[source_format], kind="source", tags=("reference", "source"))


class SourceModelTarget(Target):
    """Runs the scenario's source model: ONNX with ONNX Runtime's CPU provider, TFLite with LiteRT."""

    def __init__(self, board: BoardSpec, lock_timeout: float = 0.0):
        super().__init__(board, lock_timeout)
        self.loaded: Dict[Tuple[str, str], LoadedSource] = {}
        """(source path, format) -> the models this session loaded."""

    def session_for(self, source_path: Path, source_format: str) -> "LoadedSource":
        key = (str(source_path), source_format)
        if key not in self.loaded:
            self.loaded[key] = self.load(source_path, source_format)
        return self.loaded[key]

    @staticmethod
    def load(source_path: Path, source_format: str = "ONNX") -> "LoadedSource":
        """The source model ready to run: a function sample_inputs -> outputs in job order, and its runtime."""
        try:
            if source_format == "TFLITE":
                return load_tflite(source_path)
            import onnxruntime
        except ImportError as error:
            package = "ai-edge-litert" if source_format == "TFLITE" else "onnxruntime"
            raise BoardError(f"the {source_format} runtime is not installed: `pip install {package}`") \
                from error
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # a reference, not a race: deterministic reductions
        try:
            session = onnxruntime.InferenceSession(str(source_path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001  onnxruntime raises its own classes for a model it cannot load
            raise SourceModelError(f"ONNX Runtime could not load {source_path.name}: {type(error).__name__}: "
                                   f"{error}\n  fix: check that the source is the model the .mnn was converted "
                                   "from, or set `source_reference: false` (the boards are still compared with "
                                   "x86)") from error
        return LoadedSource(lambda feeds, names: session.run(names, feeds), f"onnxruntime {onnxruntime.__version__}")

    def expected_mnn_version(self, job: Job) -> Optional[str]:
        return None  # ONNX Runtime or LiteRT: no MNN runs here

    def run_impl(self, job: Job, local_dir: Path, on_stage: StageCallback, result: TargetResult) -> None:
        self.enter("run", on_stage)
        started = time.perf_counter()
        if job.source_path is None:
            raise BoardError(f"{self.name}: the job names no source model")
        loaded = self.session_for(job.source_path, job.source_format or "ONNX")
        runtime = loaded.runtime
        result.notes += [note for note in loaded.notes if note not in result.notes]
        stored = load_npz(job.inputs_path)
        inputs = {name: stored[name] for name in job.input_names}
        # The agent's walk: each sample (a shared input's one sample for all), a stream's outputs carried to
        # the next step. Once per sample: the reference is not timed against anything.
        walked = {"input_names": job.input_names, "output_names": job.output_names, "samples": job.samples,
                  "stream": job.stream, "iterations": 1, "warmup": 0}
        timed: dict = {"latency_ms": []}
        try:
            collected = agent_module("job").run_all(SourceRunner(loaded, job.output_names, self.check_interrupted),
                                                    walked, inputs, timed, np)
        except agent_module("contract").JobError as error:
            raise SourceModelError(f"{runtime}: {error}") from error
        latency = timed["latency_ms"]
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
