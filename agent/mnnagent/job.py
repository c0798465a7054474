"""One job dir, start to end: read job.json, run every sample or stream step, write outputs.npz and result.json.

The same in both modes: one-shot (one process per job) and resident (serve.py
calls run_and_write for each request, with its ModelCache).
"""

import json
import os
import platform
import signal
import sys
import time
import traceback

from .contract import APIS, BACKENDS, IO_MODES, JOB_SCHEMAS, PRECISIONS, RESULT_SCHEMA, JobError
from .dump import dump_ops
from .files import open_regular, sha256_file, write_atomically, write_npz
from .inputs import check_job_files, load_inputs, sample_count, sample_of
from .machine import cpu_features, current_rss_mb, peak_rss_mb
from .model import CONTROL_FLOW_OPS, choose_api, model_facts
from .native import import_mnn
from .preprocess import board_preprocess
from .runners import ModuleRunner, SessionRunner, runner_key
from .script import run_script


def arm_deadline(job):
    """End this process at the job's deadline even if nobody is left to stop it (SIGALRM's default action
    kills, whatever the process is doing: no Python handler is involved)."""
    deadline = job.get("deadline_s")
    if isinstance(deadline, int) and deadline > 0 and hasattr(signal, "alarm"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(deadline)


def load_job(job_dir):
    """job.json, checked: the settings the agent knows, a schema it speaks, a stream it can run."""
    path = os.path.join(job_dir, "job.json")
    with open_regular(path) as f:
        job = json.loads(f.read().decode("utf-8"))
    if job.get("schema", 1) not in JOB_SCHEMAS:
        raise JobError("bad-job", "job.json has schema %r; this agent reads %s: update the agent"
                       % (job.get("schema"), ", ".join(str(s) for s in JOB_SCHEMAS)))
    settings = job.get("settings", {})
    for key, allowed, default in (("precision", PRECISIONS, "normal"), ("api", APIS, "session"),
                                  ("io", IO_MODES, "copy"), ("backend", BACKENDS, "cpu")):
        if str(settings.get(key, default)).lower() not in allowed:
            raise JobError("bad-job", "%s must be one of %s, not %r" % (key, ", ".join(allowed), settings.get(key)))
    stream = job.get("stream")
    if stream:
        steps = stream.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise JobError("bad-job", "stream.steps must be a positive integer, not %r" % (steps,))
        for output, fed in (stream.get("carry") or {}).items():
            if output not in job["output_names"] or fed not in job["input_names"]:
                raise JobError("bad-job", "stream.carry %s -> %s names an output or input the job lacks"
                               % (output, fed))
    return job


def run_all(runner, job, inputs, result, np):
    """Every sample (or every stream step, in order), timed; returns {output: [one array per sample]}."""
    names, outputs = job["input_names"], job["output_names"]
    count = sample_count(job, inputs)
    iterations = max(1, int(job.get("iterations", 1)))
    warmup = max(0, int(job.get("warmup", 0)))
    stream = job.get("stream") or {}
    carry = stream.get("carry") or {}
    carried = {}
    collected = dict((name, []) for name in outputs)
    for index in range(count):
        feeds = dict((name, sample_of(inputs, name, index)) for name in names)
        feeds.update(carried)
        for _ in range(warmup):
            runner.run(feeds)
        for _ in range(iterations):
            begin = time.perf_counter()
            produced = runner.run(feeds)
            result["latency_ms"].append((time.perf_counter() - begin) * 1000.0)
        for name in outputs:
            if name not in produced:
                raise JobError("missing-output", "the model produced no output named %r" % name)
            collected[name].append(produced[name])
        for output, fed in carry.items():
            value = produced[output]
            want = sample_of(inputs, fed, 0)
            if value.shape != want.shape:
                raise JobError("bad-stream", "step %d: output %r has shape %s but input %r takes %s"
                               % (index, output, list(value.shape), fed, list(want.shape)))
            carried[fed] = np.ascontiguousarray(value.astype(want.dtype))
    if stream:
        result["steps"] = count
    return collected


def describe_inputs(job, inputs, runner):
    return dict((name, {"shape": list(inputs[name].shape[1:]), "dtype": str(inputs[name].dtype),
                        "fed_dtype": runner.input_types.get(name) or str(inputs[name].dtype)})
                for name in job["input_names"])


def bf16_ran(runner_class, MNN, np, model_path, settings, job, layout, input_types, inputs, outputs):
    """What precision low_bf16 really computed in, as the backend check reads the backend that ran.

    MNN takes BF16 kernels only when its build has them and the CPU has bf16; otherwise it computes in FP32
    with no word. The first sample (a stream's first step) is run again at precision normal: outputs
    bit-identical to it mean FP32 ran. {"asked", "ran": "FP32" | "BF16", "evidence"}.
    """
    normal = runner_class(MNN, np, model_path, dict(settings, precision="normal"), job["input_names"],
                          job["output_names"], layout, input_types)
    produced = normal.run(dict((name, sample_of(inputs, name, 0)) for name in job["input_names"]))
    same = all(np.array_equal(produced[name], outputs[name][0]) for name in job["output_names"])
    return {"asked": "low_bf16", "ran": "FP32" if same else "BF16",
            "evidence": ("its outputs are bit-identical to precision normal's" if same
                         else "its outputs differ from precision normal's")}


def script_ran(result, started, outputs):
    """The result of a job whose script ran the model (harness repro). Its outputs may hold NaN/Inf, as any job's
    may: that can be exactly what the script reproduces."""
    for name, array in outputs.items():
        result["outputs"][name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    result["status"] = "ok"
    result["peak_rss_mb"] = peak_rss_mb()
    result["wall_s"] = time.time() - started
    return result, outputs


def run_job(job_dir, cache=None):
    """Run the job; return the result dict (also on failure) and the outputs (None on failure).

    cache: a resident agent's ModelCache (loaded models, file hashes, model facts kept between jobs);
    None in one-shot mode.
    """
    started = time.time()
    result = {
        "schema": RESULT_SCHEMA, "status": "error", "error": None, "error_kind": None,
        "machine": platform.machine(), "python": platform.python_version(),
        "platform": platform.platform(), "hostname": platform.node(),
        "cpu_features": cpu_features(), "mnn_version": None, "mnn_banner": None,
        "settings": None, "api": None, "api_reason": None, "control_flow": [], "backend": None, "precision": None,
        "inputs": {}, "latency_ms": [], "peak_rss_mb": None, "outputs": {}, "dump": None, "script": None,
        "agent": {"mode": "resident" if cache is not None else "one-shot", "pid": os.getpid(),
                  "jobs": cache.jobs if cache is not None else 1, "cached": False, "rss_mb": None, "cache": None},
    }
    outputs = None
    try:
        import numpy as np
        result["numpy_version"] = np.__version__
        job = load_job(job_dir)
        arm_deadline(job)
        settings = dict(job.get("settings", {}))
        result["settings"] = settings
        MNN, banner = import_mnn()
        result["mnn_version"] = MNN.version()
        result["mnn_banner"] = banner
        if job.get("script"):
            # A repro bundle's own tensors file: its script reads it (plain names, as a user's np.load does).
            check_job_files(job_dir, job, cache)
            return script_ran(result, started, run_script(np, job, job_dir, result))
        model_path, inputs = load_inputs(job_dir, job, np, cache)
        if job.get("preprocess"):
            result["preprocess"] = board_preprocess(job_dir, job, np, MNN)
        model_sha = cache.sha256(model_path) if cache is not None else None
        if cache is not None:
            op_types, input_types = cache.model_facts(model_sha, lambda: model_facts(MNN.expr, model_path))
        else:
            op_types, input_types = model_facts(MNN.expr, model_path)
        result["control_flow"] = sorted(op_types & set(CONTROL_FLOW_OPS))
        api, result["api_reason"] = choose_api(settings, op_types)
        runner_class = ModuleRunner if api == "module" else SessionRunner
        layout = job.get("layout", "NCHW")

        def load():
            return runner_class(MNN, np, model_path, settings, job["input_names"], job["output_names"], layout,
                                input_types)
        if cache is not None:
            runner, result["agent"]["cached"] = cache.runner(runner_key(model_sha, api, settings, job), load)
            runner.use(settings, layout)
        else:
            runner = load()
        result["api"], result["backend"] = runner.api, runner.backend
        result["inputs"] = describe_inputs(job, inputs, runner)
        if job.get("dump"):
            if api != "session":
                raise JobError("bad-job", "the layer dump needs MNN's Session API (its op callbacks); "
                               + (result["api_reason"] or "the job asks for the Module API"))
            result["dump"], outputs = dump_ops(MNN, np, job, inputs, runner, model_path, settings, layout, job_dir)
        else:
            collected = run_all(runner, job, inputs, result, np)
            outputs = dict((name, np.stack(arrays)) for name, arrays in collected.items())
        if str(settings.get("precision", "normal")).lower() == "low_bf16":
            result["precision"] = bf16_ran(runner_class, MNN, np, model_path, settings, job, layout,
                                           input_types, inputs, outputs)
        # NaN and Inf are the board's answer (an FP16 overflow, a NaN the model makes): they travel like any
        # value, and the host counts, locates and judges them.
        for name, array in outputs.items():
            result["outputs"][name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
        result["status"] = "ok"
    except JobError as error:
        result["error"], result["error_kind"] = str(error), error.kind
    except Exception as error:  # the board's failure is a value the host reports, never a crash
        result["error"] = "%s: %s" % (type(error).__name__, error)
        result["error_kind"] = "exception"
        result["traceback"] = traceback.format_exc()[-4000:]
    result["peak_rss_mb"] = peak_rss_mb()
    result["wall_s"] = time.time() - started
    return result, (outputs if result["status"] == "ok" else None)


def run_and_write(job_dir, cache=None):
    """Run the job in job_dir and write its files (outputs.npz, then result.json, each atomically).

    The same in both modes; returns (exit code, the result dict).
    """
    result, outputs = run_job(job_dir, cache)
    if cache is not None:
        cache.trim()  # before result.json: it says what the agent holds after this job
        result["agent"].update(rss_mb=current_rss_mb(), cache=cache.describe())
    if outputs is not None:
        import numpy as np
        write_atomically(os.path.join(job_dir, "outputs.npz"), lambda f: write_npz(f, np, outputs))
        result["outputs_sha256"] = sha256_file(os.path.join(job_dir, "outputs.npz"))
    payload = json.dumps(result, indent=1, sort_keys=True).encode()
    write_atomically(os.path.join(job_dir, "result.json"), lambda f: f.write(payload))
    if result["status"] != "ok":
        sys.stderr.write("mnn_agent: %s\n" % result["error"])
        return 1, result
    return 0, result
