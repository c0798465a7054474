#!/usr/bin/env python3
"""The board-side agent of mnn-harness: run one MNN job directory, write the results.

    python3 mnn_agent.py JOB_DIR
    python3 mnn_agent.py --probe OUT.json     # the board's facts: Python, MNN, CPU features, disk
    python3 mnn_agent.py --serve SESSION_DIR [--cache-models N] [--cache-mb MB]   # resident: jobs one after another

JOB_DIR holds job.json (what to run), the model and the inputs (paths in
job.json, relative to JOB_DIR or absolute). The agent writes outputs.npz and
result.json into JOB_DIR, each to a temporary name renamed when complete, so
the host never reads a half-written result. result.json is written even when
the run fails: status "error" and the reason.

Resident mode (--serve, PROTOCOL 1) runs many job directories in one process,
each exactly as one-shot mode runs it (the same files, written the same way),
keeping numpy and MNN imported and a bounded cache of loaded models. Frames,
both ways: MAGIC (4 bytes "MNNA"), the length of the body (4 bytes, big
endian, at most FRAME_MAX), the body (a JSON object in UTF-8). Requests come
on stdin; replies go on a duplicate of the original stdout taken before
descriptors 1 and 2 are pointed at SESSION_DIR/serve.log (during a job: at
the job's agent.log), so nothing MNN prints can reach the replies. End of
stdin ends the agent.

    agent -> host   {"type": "hello", "protocol": 1, "pid", "pgid", "python", "machine",
                     "cache": {"models", "rss_mb"}}: once, when ready
    host -> agent   {"op": "run", "seq": n, "dir": JOB_DIR, "job": {...}?, "remove": [name, ...]?}
                    "job": the job.json to write into a new JOB_DIR (a direct child of SESSION_DIR);
                    without it JOB_DIR must hold job.json already. "remove": job dirs of earlier
                    requests (names of children of SESSION_DIR) to delete first.
    agent -> host   {"type": "done", "seq": n, "status": "ok" | "error", "exit": 0 | 1, "wall_s",
                     "rss_mb", "peak_rss_mb", "cache": {"entries", "hits", "misses", "evicted"}}
                    or {"type": "error", "seq": n, "error": text}: the request was not run
    host -> agent   {"op": "quit"}: exit (end of stdin does the same)

A job past its deadline_s ends the whole agent (SIGALRM): the host starts a
fresh one for the next job. SESSION_DIR/agent.pid holds the agent's pid.

This file stands alone: Python >= 3.8, numpy and MNN only, nothing from the
host's `harness` package. Nothing travels on stdout (MNN prints a banner there
at import); diagnostics go to stderr, results go to files.

The protocol (JOB_SCHEMA 2; the agent also reads schema 1, which had one float input):

job.json
    schema          2
    id              the job's name (unique per board and run)
    model           the .mnn file; model_sha256: its SHA-256 (refused when it does not match)
    inputs          an .npz with one array per model input, samples stacked on axis 0;
                    an array with one sample is shared by every sample (a constant such as
                    a sample rate); inputs_sha256: its SHA-256
    input_names     the model inputs to feed, in order
    output_names    the outputs to read back (every output the host wants to compare or carry)
    layout          NCHW or NHWC: the model's dimension order (models converted from TFLite are NHWC)
    settings        precision (normal|high|low|low_bf16), threads, api (session|module),
                    io (copy|host), backend (cpu|opencl|vulkan|auto)
    stream          null, or {"steps": N, "carry": {output: input}}: N steps in order, each
                    step's named outputs fed back as the next step's inputs, here on the board
    iterations, warmup   timed runs (and untimed ones before them) per sample or step
    preprocess      null, or the board-side preprocessing of the parity check
                    ({"input": name, "images": npz, color, width, height, ...})
    dump            null, or the per-op dump of `harness layers` (see dump_ops: samples to trace,
                    ops to keep whole, ops to replay on another machine's inputs)
    deadline_s      optional: seconds after which the agent ends itself (SIGALRM), even when
                    nobody is left to stop it (the host vanished, its session hung)

The agent never reads through a symlink in its job dir or store (O_NOFOLLOW), and
writes only by creating a new temp file and renaming it over the target.

Inputs may be float32, int32, int64 or uint8, of any rank (a scalar has shape []).
MNN stores int64 inputs as int32: the agent casts them, after checking that every
value fits. Outputs keep their type: integer outputs come back as integers.

result.json (RESULT_SCHEMA 2)
    status          "ok" or "error"; error, error_kind: why it failed
    machine, python, platform, hostname, cpu_features, numpy_version
    mnn_version, mnn_banner   MNN's version and its own line about the CPU
    settings        the settings the job asked for
    api             the API that ran: "session" or "module"; api_reason: why, when the
                    agent chose it (a model with control flow runs only with the Module API)
    control_flow    control-flow op types in the model (If, While, Loop)
    backend         {"asked", "ran", "code", "evidence", "mnn_said"}: the backend MNN really
                    used, read from the session (getSessionInfo BACKENDS) and from MNN's own
                    fallback line ("Can't Find type=3 backend, use 0 instead")
    inputs          {name: {"shape": one sample's shape, "dtype": as sent, "fed_dtype": as MNN took it}}
    outputs         {name: {"shape": [samples or steps, ...], "dtype"}}
    steps           the number of stream steps run (streams only)
    latency_ms      per timed run; peak_rss_mb; wall_s
    outputs_sha256  SHA-256 of outputs.npz (each output stacked over samples or steps)
    agent           {"mode": "one-shot" | "resident", "pid", "jobs": jobs this process ran, this one
                    included, "cached": whether the loaded model came from the resident cache;
                    resident only: "rss_mb" (resident memory after the job and the cache's trim),
                    "cache": {"entries", "hits", "misses", "evicted"}}
    dump            null, or for a job with a dump: {"samples", "ops", "tensors", "replayed", "json_sha256",
                    "npz_sha256"}; dump.json and dump.npz are written before the outputs are judged,
                    so a run whose outputs hold NaN/Inf still leaves its whole dump

Exit codes: 0 the run succeeded, 1 it failed (result.json says why), 2 the job
directory could not be read at all.
"""

import hashlib
import json
import os
import platform
import re
import signal
import stat
import struct
import sys
import tempfile
import time
import traceback

JOB_SCHEMAS = (1, 2)
RESULT_SCHEMA = 2
PROTOCOL = 1
"""The resident mode's protocol (see the module's docstring); the host refuses an agent that speaks another."""
MAGIC = b"MNNA"
FRAME_MAX = 16 << 20
CACHE_MODELS = 4
"""Loaded models a resident agent keeps by default (least recently used go first)."""
CACHE_MB = 1024.0
"""A resident agent's resident memory above which cached models are evicted, by default."""
PRECISIONS = ("normal", "high", "low", "low_bf16")
APIS = ("session", "module")
IO_MODES = ("copy", "host")
BACKENDS = ("cpu", "opencl", "vulkan", "auto")
PROBE_COUNT = 64  # values per op output in a layer dump's summary, at fixed positions
CONTROL_FLOW_OPS = ("If", "While", "Loop")
"""Op types MNN's Session API cannot run ("please use MNN::Express::Module to run it")."""
INPUT_DTYPES = ("float32", "int32", "int64", "uint8")

# MNNForwardType (MNN/MNNForwardType.h): what getSessionInfo(session, BACKENDS) returns.
# 13 is the CPU with its instruction-set extensions (AVX2/AVX512 on x86, ARMv8.2 on ARM).
FORWARD_TYPES = {0: "cpu", 1: "metal", 2: "cuda", 3: "opencl", 4: "auto", 5: "nn", 6: "opengl",
                 7: "vulkan", 13: "cpu"}
SESSION_BACKENDS = {"cpu": "CPU", "opencl": "OPENCL", "vulkan": "VULKAN", "auto": "AUTO"}
SESSION_INFO_BACKENDS = 2  # Interpreter::SessionInfoCode BACKENDS
FALLBACK_LINE = re.compile(r"Can't Find type=(\d+) backend, use (\d+) instead")
# Linux AT_HWCAP / AT_HWCAP2 bits on aarch64 (arch/arm64/include/uapi/asm/hwcap.h).
# Read from /proc/self/auxv rather than /proc/cpuinfo: under qemu-user,
# /proc/cpuinfo describes the x86 host while auxv describes the emulated CPU.
_AARCH64_HWCAP = {
    0: "fp", 1: "asimd", 3: "aes", 4: "pmull", 5: "sha1", 6: "sha2", 7: "crc32",
    8: "atomics", 9: "fphp", 10: "asimdhp", 12: "asimdrdm", 13: "jscvt", 14: "fcma",
    15: "lrcpc", 16: "dcpop", 17: "sha3", 20: "asimddp", 21: "sha512", 22: "sve",
    23: "asimdfhm",
}
_AARCH64_HWCAP2 = {1: "sve2", 9: "svei8mm", 12: "svebf16", 13: "i8mm", 14: "bf16"}
_AT_HWCAP, _AT_HWCAP2 = 16, 26
# x86 flags that matter to MNN's CPU kernels; the full list is noise in a report.
_X86_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
              "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile")


class JobError(Exception):
    """The job could not be run; the message says why and lands in result.json."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def open_regular(path):
    """Open a file for reading without following a symlink (O_NOFOLLOW): the job dir's files are the host's,
    and a link planted there must not make the agent read (or hash) anything else."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JobError("bad-job", "%s is not a regular file" % path)
    return os.fdopen(fd, "rb")


def arm_deadline(job):
    """End this process at the job's deadline even if nobody is left to stop it (SIGALRM's default action
    kills, whatever the process is doing: no Python handler is involved)."""
    deadline = job.get("deadline_s")
    if isinstance(deadline, int) and deadline > 0 and hasattr(signal, "alarm"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(deadline)


def sha256_file(path):
    digest = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path, write):
    """Call write(file_object) on a temp file beside path, then rename it over path."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cpu_features():
    """The CPU features MNN's kernels choose by, as the kernel reports them to this process."""
    machine = platform.machine()
    if machine in ("aarch64", "arm64"):
        hwcap, hwcap2 = _read_auxv()
        features = [name for bit, name in sorted(_AARCH64_HWCAP.items()) if hwcap >> bit & 1]
        features += [name for bit, name in sorted(_AARCH64_HWCAP2.items()) if hwcap2 >> bit & 1]
        return features
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in _X86_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def _read_auxv():
    hwcap = hwcap2 = 0
    try:
        with open("/proc/self/auxv", "rb") as f:
            data = f.read()
    except OSError:
        return hwcap, hwcap2
    for offset in range(0, len(data) - 15, 16):
        key, value = struct.unpack_from("<QQ", data, offset)
        if key == _AT_HWCAP:
            hwcap = value
        elif key == _AT_HWCAP2:
            hwcap2 = value
    return hwcap, hwcap2


class CapturedStdout(object):
    """File descriptor 1 redirected to a temp file while the block runs; .text is what was printed.

    MNN's native code prints on stdout: its banner at import, and the only sign
    of a backend fallback ("Can't Find type=3 backend, use 0 instead"). Both are
    worth keeping, and neither may reach our stdout.
    """

    def __enter__(self):
        sys.stdout.flush()
        self.saved = os.dup(1)
        self.capture = tempfile.TemporaryFile()
        os.dup2(self.capture.fileno(), 1)
        self.text = ""
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        _flush_c_stdio()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.capture.seek(0)
        self.text = self.capture.read().decode("utf-8", "replace").strip()
        self.capture.close()
        return False


_IMPORTED = []


def import_mnn():
    """Import MNN with stdout captured, and return (MNN, the banner it printed).

    The banner ("The device supports: ...") is MNN's own view of the CPU
    (fp16, i8sdot, i8mm, sve2). MNN prints it once, at its first import: a
    resident agent remembers it for every later job.
    """
    if not _IMPORTED:
        with CapturedStdout() as printed:
            import MNN  # noqa: F401  (imported for its side effect on sys.modules)
            import MNN.expr  # noqa: F401
            import MNN.nn  # noqa: F401
        _IMPORTED.append((sys.modules["MNN"], printed.text))
    return _IMPORTED[0]


def _flush_c_stdio():
    """Flush C's stdio buffers: MNN's banner sits there (printf into a file is fully buffered)."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except (ImportError, OSError, AttributeError):
        pass


def peak_rss_mb():
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except (ImportError, OSError):
        return None


def resolve(job_dir, path):
    return path if os.path.isabs(path) else os.path.join(job_dir, path)


# ---- the job ------------------------------------------------------------------------------

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


def check_file(path, expected, kind, what, cache=None):
    if expected and (cache.sha256(path) if cache is not None else sha256_file(path)) != expected:
        raise JobError(kind, "%s %s does not have the SHA-256 the host sent (%s): the transfer corrupted "
                       "it or a stale file was used" % (what, path, expected))


def load_inputs(job_dir, job, np, cache=None):
    """The model path and the input arrays, after checking both hashes: the board runs the host's bytes."""
    inputs_path = resolve(job_dir, job["inputs"])
    check_file(inputs_path, job.get("inputs_sha256"), "bad-inputs", "inputs", cache)
    model_path = resolve(job_dir, job["model"])
    check_file(model_path, job.get("model_sha256"), "bad-model", "model", cache)
    with open_regular(inputs_path) as f, np.load(f, allow_pickle=False) as data:
        arrays = {name: np.ascontiguousarray(data[name]) for name in data.files}
    missing = [name for name in job["input_names"] if name not in arrays]
    if missing:
        raise JobError("bad-inputs", "inputs.npz lacks the model input(s) %s" % ", ".join(missing))
    for name in job["input_names"]:
        if str(arrays[name].dtype) not in INPUT_DTYPES:
            raise JobError("bad-inputs", "input %r is %s; the agent feeds %s" % (name, arrays[name].dtype,
                                                                                 ", ".join(INPUT_DTYPES)))
        if arrays[name].ndim == 0 or len(arrays[name]) == 0:
            raise JobError("bad-inputs", "input %r has no sample axis or no sample" % name)
    return model_path, arrays


def sample_count(job, inputs):
    """How many samples (or stream steps) the job runs: arrays hold that many, or one that is shared."""
    counts = sorted(set(len(inputs[name]) for name in job["input_names"]) - {1})
    if len(counts) > 1:
        raise JobError("bad-inputs", "the inputs hold different numbers of samples (%s)"
                       % ", ".join(str(c) for c in counts))
    available = counts[0] if counts else 1
    stream = job.get("stream")
    if stream:
        if stream["steps"] > available and counts:
            raise JobError("bad-inputs", "stream.steps is %d but the inputs hold %d samples"
                           % (stream["steps"], available))
        return stream["steps"]
    return int(job.get("samples") or available)


def sample_of(inputs, name, index):
    array = inputs[name]
    return array[index if len(array) > 1 else 0, ...]  # `...` keeps a scalar sample a 0-d array


def check_names(what, wanted, known):
    missing = [name for name in wanted if name not in known]
    if missing:
        raise JobError("missing-" + what, "the model has no %s named %s; its %ss are %s"
                       % (what, ", ".join(repr(m) for m in missing), what, ", ".join(sorted(known))))


# ---- what the model holds -----------------------------------------------------------------

def model_facts(F, model_path):
    """Op types and declared input types of a .mnn file, read without running it.

    Returns (set of op types, {input name: dtype name}). Empty when MNN cannot
    list the graph: the run still tries, and MNN says what is wrong.
    """
    try:
        variables = F.load_as_list(model_path)
    except Exception:  # noqa: BLE001  a listing is a hint; running the model is the test
        return set(), {}
    op_types, input_types = set(), {}
    for var in variables:
        try:
            op_types.add(var.op_type)
            if var.op_type == "Input":
                input_types[var.name] = dtype_name(var.dtype)
        except Exception:  # noqa: BLE001  a variable MNN cannot describe
            continue
    return op_types, input_types


def dtype_name(dtype):
    """MNN.expr's dtype (dtype.float, dtype.int, ...) as a numpy name."""
    text = str(dtype).split(".")[-1]
    return {"float": "float32", "int": "int32", "int64": "int64", "uint8": "uint8", "int8": "int8",
            "double": "float64"}.get(text, text)


def feed_array(np, name, array, model_dtype):
    """The array as the model takes it: MNN stores int64 inputs as int32, so those are narrowed."""
    given = str(array.dtype)
    if not model_dtype or model_dtype == given:
        return array
    if given == "int64" and model_dtype == "int32":
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise JobError("bad-inputs", "input %r holds int64 values outside int32, which MNN uses for "
                           "it" % name)
        return array.astype(np.int32)
    if given == "int32" and model_dtype == "int64":
        return array.astype(np.int64)
    raise JobError("bad-inputs", "input %r is %s but the model takes %s" % (name, given, model_dtype))


# ---- backends -----------------------------------------------------------------------------

def fallback_lines(text):
    return [line.strip() for line in text.splitlines() if FALLBACK_LINE.search(line)]


def backend_facts(asked, code, evidence, said):
    ran = FORWARD_TYPES.get(code, "type %s" % code) if code is not None else None
    lines = fallback_lines(said)
    if ran is None and lines:  # no session to ask: MNN's own line says what it used
        ran = FORWARD_TYPES.get(int(FALLBACK_LINE.search(lines[-1]).group(2)), "cpu")
        evidence = "MNN's fallback line"
    if ran is None:
        ran = asked if asked != "auto" else None
        evidence = evidence or "no fallback line (the backend was taken as asked)"
    return {"asked": asked, "ran": ran, "code": code, "evidence": evidence, "mnn_said": lines}


def session_backend(interpreter, session):
    """The backend a session really runs on: MNNForwardType from getSessionInfo(BACKENDS)."""
    try:
        return int(interpreter.getSessionInfo(session, SESSION_INFO_BACKENDS))
    except Exception:  # noqa: BLE001  older MNN without getSessionInfo: the fallback line decides
        return None


# ---- the runners --------------------------------------------------------------------------

HALIDE = {"float32": "Halide_Type_Float", "int32": "Halide_Type_Int", "int64": "Halide_Type_Int64",
          "uint8": "Halide_Type_Uint8"}


class Runner(object):
    """One loaded model that runs feeds ({input name: array}) into outputs ({output name: array}).

    Subclasses fill input_types ({name: dtype the model takes}) and backend
    (the backend_facts dict) when they load; run() may be called many times.
    """

    api = None

    def __init__(self, MNN, np, model_path, settings, input_names, output_names, layout, input_types):
        self.MNN, self.np = MNN, np
        self.model_path = model_path
        self.settings = settings
        self.input_names, self.output_names = input_names, output_names
        self.layout = layout
        self.input_types = dict(input_types)
        self.precision = settings.get("precision", "normal")
        self.threads = int(settings.get("threads", 1))
        self.asked_backend = str(settings.get("backend", "cpu")).lower()
        self.backend = None

    def use(self, settings, layout):
        """Take a job's settings that do not reach MNN's loading (io, layout): a cached runner serves any."""
        self.settings = settings
        self.layout = layout

    def release(self):
        """Drop what MNN holds for this model (a resident agent evicting it from its cache)."""

    def feeds(self, feeds):
        return dict((name, feed_array(self.np, name, feeds[name], self.input_types.get(name)))
                    for name in self.input_names)

    def run(self, feeds):
        return self.run_impl(self.feeds(feeds))

    def run_impl(self, feeds):
        raise NotImplementedError


class SessionRunner(Runner):
    """MNN's Session API, with the copies that convert layout and precision to host format.

    io "copy" is the right way (the Python face of map/unmap): Caffe-layout host
    tensors filled with copyFrom, outputs read back with copyToHostTensor.
    io "host" reads the session output's own buffer (getNumpyData on the session
    tensor): the classic bug, kept so a user can see what it does on their board.
    """

    api = "session"

    def __init__(self, *args):
        Runner.__init__(self, *args)
        MNN = self.MNN
        self.io = self.settings.get("io", "copy")
        self.interpreter = MNN.Interpreter(self.model_path)
        config = {"precision": self.precision, "numThread": self.threads,
                  "backend": SESSION_BACKENDS[self.asked_backend]}
        with CapturedStdout() as said:
            self.session = self.interpreter.createSession(config)
        self.backend = backend_facts(self.asked_backend, session_backend(self.interpreter, self.session),
                                     "getSessionInfo(session, BACKENDS)", said.text)
        inputs = self.interpreter.getSessionInputAll(self.session)
        check_names("input", self.input_names, inputs)
        check_names("output", self.output_names, self.interpreter.getSessionOutputAll(self.session))
        for name in self.input_names:
            self.input_types.setdefault(name, self.dtype_of(inputs[name]))
        self.shapes = {}

    def use(self, settings, layout):
        Runner.use(self, settings, layout)
        self.io = settings.get("io", "copy")

    def release(self):
        try:
            self.interpreter.releaseSession(self.session)
        except Exception:  # noqa: BLE001  an MNN without releaseSession frees it with the interpreter
            pass
        self.session = self.interpreter = None

    def dtype_of(self, tensor):
        kind = tensor.getDataType()
        for dtype, halide in HALIDE.items():
            if kind is getattr(self.MNN, halide):
                return dtype
        return "float32"

    def dimension_type(self, rank):
        # A model laid out NHWC (converted from TFLite) is NHWC in every tensor, whatever its rank.
        if self.layout == "NHWC":
            return self.MNN.Tensor_DimensionType_Tensorflow
        return self.MNN.Tensor_DimensionType_Caffe

    def run_impl(self, feeds):
        MNN, np = self.MNN, self.np
        fill_session(MNN, self.interpreter, self.session, feeds, self.input_names, self.dimension_type, self.shapes)
        code = self.interpreter.runSession(self.session)
        if code != 0:
            raise JobError("run-failed", "runSession returned %d (0 is success; 3 usually means "
                           "an input shape was not resized)" % code)
        outputs = {}
        for name in self.output_names:
            tensor = self.interpreter.getSessionOutput(self.session, name)
            shape = tuple(tensor.getShape())
            if any(dim <= 0 for dim in shape):
                raise JobError("empty-output", "output %r has shape %s" % (name, list(shape)))
            dtype = self.dtype_of(tensor)
            if self.io == "host":
                data = np.array(tensor.getNumpyData(), copy=True).reshape(-1)
                count = int(np.prod(shape))
                data = data[:count] if data.size >= count else np.resize(data, count)
                outputs[name] = data.reshape(shape).astype(dtype)
            else:
                host = MNN.Tensor(shape, getattr(MNN, HALIDE[dtype]), np.zeros(shape, dtype=dtype),
                                  self.dimension_type(len(shape)))
                tensor.copyToHostTensor(host)
                outputs[name] = np.array(host.getNumpyData(), dtype=dtype, copy=True).reshape(shape)
        return outputs


def fill_session(MNN, interpreter, session, feeds, names, dimension_type, shapes):
    """Resize where a shape changed (else runSession returns 3 on shape (0,0,0,0)), then copy every input in.

    Inputs are re-fed before every run: MNN reuses the input buffer during a run.
    """
    resized = False
    for name in names:
        shape = list(feeds[name].shape)
        if shapes.get(name) != shape:
            interpreter.resizeTensor(interpreter.getSessionInput(session, name), tuple(shape))
            shapes[name] = shape
            resized = True
    if resized:
        interpreter.resizeSession(session)
    for name in names:
        array = feeds[name]
        host = MNN.Tensor(tuple(array.shape), getattr(MNN, HALIDE[str(array.dtype)]), array,
                          dimension_type(array.ndim))
        interpreter.getSessionInput(session, name).copyFrom(host)


class ModuleRunner(Runner):
    """MNN's Module (expression) API: load_module_from_file, forward, convert back to NCHW.

    The Module API has no Python call that names its backend (Module.get_info
    and RuntimeManager carry none): the backend that ran is read from MNN's own
    fallback line, printed while the module is created, and confirmed with a
    session of the same configuration on the same MNN.
    """

    api = "module"
    PRECISION = {"normal": "Normal", "high": "High", "low": "Low", "low_bf16": "Low_BF16"}

    def __init__(self, *args):
        Runner.__init__(self, *args)
        self.F = F = self.MNN.expr
        precision = getattr(F.PrecisionMode, self.PRECISION[self.precision])
        asked = self.asked_backend
        probed = self.probe_backend() if asked == "auto" else None
        # F.Backend has no AUTO: ask a session what auto gives on this MNN, and create the module for that.
        chosen = FORWARD_TYPES.get(probed[0], "cpu") if probed else asked
        options = {"precision_mode": precision, "thread_num": self.threads,
                   "backend": getattr(F.Backend, chosen.upper(), F.Backend.CPU)}
        with CapturedStdout() as said:
            self.module = self.MNN.nn.load_module_from_file(self.model_path, self.input_names, self.output_names,
                                                            **options)
        if asked == "cpu":
            code, evidence = 0, "the module was created for the CPU, as asked"
        elif fallback_lines(said.text):
            code, evidence = None, None  # MNN said it fell back: backend_facts reads its line
        elif probed:
            code, evidence = probed[0], "auto: " + probed[1]
        else:
            code, evidence = self.probe_backend()
        self.backend = backend_facts(asked, code, evidence, said.text)

    def release(self):
        self.module = None

    def probe_backend(self):
        """The backend a session of the same configuration gets on this MNN (the module's runtime is alike)."""
        with CapturedStdout():
            interpreter = self.MNN.Interpreter(self.model_path)
            session = interpreter.createSession({"precision": self.precision, "numThread": self.threads,
                                                 "backend": SESSION_BACKENDS[self.asked_backend]})
        return session_backend(interpreter, session), "a session with the same configuration"

    def variable(self, array):
        F = self.F
        layout = F.NHWC if self.layout == "NHWC" else F.NCHW
        dtype = {"float32": F.float, "int32": F.int, "uint8": F.uint8, "int64": F.int64}[str(array.dtype)]
        return F.const(array, list(array.shape), layout, dtype)

    def run_impl(self, feeds):
        F, np = self.F, self.np
        results = self.module.forward([self.variable(feeds[name]) for name in self.input_names])
        if not isinstance(results, (list, tuple)):
            results = [results]
        outputs = {}
        for name, value in zip(self.output_names, results):
            value = F.convert(value, F.NHWC if self.layout == "NHWC" else F.NCHW)  # unpacks NC4HW4
            array = np.array(value.read(), copy=True)
            if array.dtype.kind == "f":
                array = array.astype(np.float32)
            if array.size == 0:
                raise JobError("empty-output", "output %r is empty" % name)
            outputs[name] = array
        return outputs


def runner_key(model_sha, api, settings, job):
    """What reaches MNN when a model is loaded: a loaded runner serves every job with the same key."""
    return (model_sha, api, str(settings.get("precision", "normal")), int(settings.get("threads", 1)),
            str(settings.get("backend", "cpu")).lower(), tuple(job["input_names"]), tuple(job["output_names"]))


def choose_api(settings, op_types):
    """The API to run with, and why when the agent chose it over the job's."""
    asked = settings.get("api", "session")
    flow = sorted(op_types & set(CONTROL_FLOW_OPS))
    if asked == "session" and flow:
        return "module", ("the model has control flow (%s), which MNN's Session API cannot run: "
                          "ran it with the Module API" % ", ".join(flow))
    return asked, None


# ---- running samples and streams ----------------------------------------------------------

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


# ---- per-op dumps and replay: `harness layers` ----------------------------------------------
#
# MNN's Session API calls back around every op it executes, in execution order
# (runSessionWithCallBackInfo): before with the op's input tensors, after with
# its outputs. These functions sit beside the runners: a layer dump needs its
# own session (the default session mode; release mode never calls back).

def _capsule_address():
    """A function giving the address a PyCapsule holds, or None where ctypes cannot read capsules."""
    try:
        import ctypes
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    except (ImportError, AttributeError, OSError):
        return None
    return lambda capsule: get(capsule, None)


_CAPSULE_ADDRESS = _capsule_address()


def tensor_address(tensor):
    """The address of a tensor's host buffer (None if unknown): an op's input is the live output that
    last wrote the same address, which links every op to the ops that fed it."""
    if _CAPSULE_ADDRESS is None:
        return None
    try:
        return _CAPSULE_ADDRESS(tensor.getHost()) or None
    except Exception:  # noqa: BLE001  a device tensor without host memory, an MNN without getHost
        return None


def halide_dtype(MNN, tensor):
    kind = tensor.getDataType()
    for dtype, halide in HALIDE.items():
        if kind is getattr(MNN, halide):
            return dtype
    return "float32"


def read_op_tensor(MNN, np, tensor):
    """An op's tensor as a numpy array, or None when it has no elements.

    Only copyToHostTensor into a Caffe host tensor reads it right: getNumpyData
    on the op's own tensor returns the backend's packed buffer (NC4HW4/NC8HW8,
    FP16 bits at precision low) while its metadata says float32 Caffe.
    """
    shape = tuple(tensor.getShape())
    if any(dim <= 0 for dim in shape):
        return None
    dtype = halide_dtype(MNN, tensor)
    host = MNN.Tensor(shape, getattr(MNN, HALIDE[dtype]), np.zeros(shape, dtype=dtype),
                      MNN.Tensor_DimensionType_Caffe)
    tensor.copyToHostTensor(host)
    return np.array(host.getNumpyData(), dtype=dtype, copy=True).reshape(shape)


def write_op_tensor(MNN, np, tensor, array):
    """Overwrite an op's input tensor with array (same shape), converting to the backend's layout and precision."""
    dtype = halide_dtype(MNN, tensor)
    array = np.ascontiguousarray(array, dtype=dtype)
    tensor.copyFrom(MNN.Tensor(tuple(array.shape), getattr(MNN, HALIDE[dtype]), array,
                               MNN.Tensor_DimensionType_Caffe))


def summarize(np, array):
    """What crosses the wire for every op: its extremes, NaN/Inf counts and PROBE_COUNT values at fixed positions.

    Kept to a few passes over the tensor: under emulation this runs for every op.
    """
    if array is None:
        return None
    flat = array.ravel()
    positions = np.linspace(0, flat.size - 1, num=min(PROBE_COUNT, flat.size)).astype(np.int64)
    probe = flat[positions].astype(np.float64)
    nan = inf = 0
    if flat.dtype.kind == "f" and not np.isfinite(flat.max() - flat.min()):  # NaN/Inf somewhere: count them
        nan, inf = int(np.isnan(flat).sum()), int(np.isinf(flat).sum())
        flat = flat[np.isfinite(flat)]
    low, high = (float(flat.min()), float(flat.max())) if flat.size else (None, None)
    return {"min": low, "max": high, "absmax": max(abs(low), abs(high)) if flat.size else None,
            "nan": nan, "inf": inf, "probe": [float(v) if np.isfinite(v) else None for v in probe]}


def traced_run(MNN, np, interpreter, session, keep=(), inject=None):
    """One run of the session with a callback around every op.

    Returns (ops, kept, replayed). ops: one record per executed op, in order:
    name, type, flops (MNN's count, in 2^20 units), inputs (each linked to the
    op and output that produced it, or summarized when no op did: the model's
    inputs and constants) and outputs (shape, dtype, summary). kept: whole
    tensors of the ops in keep ("op{i}.out{k}", and "op{i}.in{k}" for inputs
    no kept op produced). inject: {op index: [array or None per input]}: those
    arrays are written into the op's inputs just before it runs, so the op
    computes on them (the replay of another machine's inputs); replayed holds
    what those ops then produced ("op{i}.out{k}").
    """
    keep = set(keep)
    inject = inject or {}
    live, ops, kept, replayed, errors = {}, [], {}, {}, []

    def before(tensors, info):
        try:
            index = len(ops)
            record = {"name": info.getName(), "type": info.getType(), "flops": float(info.getFlops()),
                      "inputs": [], "outputs": []}
            ops.append(record)
            arrays = inject.get(index)
            for k, tensor in enumerate(tensors):
                if arrays is not None and k < len(arrays) and arrays[k] is not None:
                    shape = tuple(tensor.getShape())
                    # Sizes, not shapes: a scalar is () on one machine and (1,) on another.
                    if arrays[k].size != int(np.prod(shape)):
                        raise JobError("bad-replay", "op %d (%s) input %d has shape %s here, the replayed one %s"
                                       % (index, record["name"], k, list(shape), list(arrays[k].shape)))
                    write_op_tensor(MNN, np, tensor, arrays[k].reshape(shape))
                address = tensor_address(tensor)
                source = live.get(address) if address else None
                entry = {"from": list(source) if source else None, "shape": list(tensor.getShape())}
                if source is None or (index in keep and source[0] not in keep):
                    array = read_op_tensor(MNN, np, tensor)
                    if source is None:
                        entry["summary"] = summarize(np, array)
                    if index in keep and array is not None:
                        kept["op%d.in%d" % (index, k)] = array
                record["inputs"].append(entry)
        except Exception as error:  # an exception must not cross into MNN's C++ (it cannot carry it)
            errors.append(error)
        return True  # False would skip the op

    def after(tensors, info):
        try:
            index = len(ops) - 1
            record = ops[index]
            for k, tensor in enumerate(tensors):
                array = read_op_tensor(MNN, np, tensor)
                address = tensor_address(tensor)
                if address:
                    live[address] = (index, k)
                record["outputs"].append({"shape": list(tensor.getShape()), "dtype": halide_dtype(MNN, tensor),
                                          "summary": summarize(np, array)})
                if array is not None and index in keep:
                    kept["op%d.out%d" % (index, k)] = array
                if array is not None and index in inject:
                    replayed["op%d.out%d" % (index, k)] = array
        except Exception as error:  # noqa: BLE001  as above
            errors.append(error)
        return True  # False would end the run (rc 11)

    code = interpreter.runSessionWithCallBackInfo(session, before, after)
    if errors:
        if isinstance(errors[0], JobError):
            raise errors[0]
        raise JobError("dump-failed", "reading an op's tensors failed: %s: %s" % (type(errors[0]).__name__, errors[0]))
    if code != 0:
        raise JobError("run-failed", "runSessionWithCallBackInfo returned %d in the layer dump" % code)
    return ops, kept, replayed


def dump_ops(MNN, np, job, inputs, runner, model_path, settings, layout, job_dir):
    """The layer dump the job asks for (job["dump"]), written to dump.json and dump.npz.

    Returns (facts for result.json, the outputs of the first traced sample: the job's outputs).

    dump (all keys optional):
        samples   the samples whose every op is traced (summaries only; default [0])
        keep      {"sample": s, "ops": [op indices]}: whole input and output tensors of those ops
        replay    {"sample": s, "ops": {op index: [inputs-npz key or null per input]}}: a second run
                  of sample s in which those ops compute on the named arrays of the job's inputs
                  file (another machine's tensors) instead of their own inputs
    dump.json: {"traces": [{"sample": s, "ops": [...]}], "kept": [names], "replayed": [names]};
    dump.npz: the kept tensors ("s{s}.op{i}.out{k}", "s{s}.op{i}.in{k}") and the replayed outputs
    ("replay.op{i}.out{k}"). A SegFormer has hundreds of ops: their summaries always travel,
    whole tensors only for the ops the host asks for.
    """
    spec = job["dump"]
    if not isinstance(spec, dict):
        raise JobError("bad-job", "dump must be a mapping, not %r" % (spec,))
    count = sample_count(dict(job, samples=None, stream=None), inputs)  # every sample the inputs hold

    def sample_index(value, what):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
            raise JobError("bad-job", "%s must be a sample from 0 to %d, not %r" % (what, count - 1, value))
        return value

    samples = [sample_index(s, "dump.samples[]") for s in (spec.get("samples") or [0])]
    keep = spec.get("keep") or {}
    replay = spec.get("replay") or {}
    keep_sample = sample_index(keep.get("sample", samples[0]), "dump.keep.sample") if keep else None
    replay_sample = sample_index(replay.get("sample", samples[0]), "dump.replay.sample") if replay else None
    inject = {}
    for op, keys in (replay.get("ops") or {}).items():
        arrays = []
        for key in keys:
            if key is not None and key not in inputs:
                raise JobError("bad-inputs", "the replay names %r, which the inputs file lacks" % key)
            arrays.append(inputs[key] if key is not None else None)
        inject[int(op)] = arrays
    interpreter = MNN.Interpreter(model_path)
    with CapturedStdout():
        session = interpreter.createSession({"precision": settings.get("precision", "normal"),
                                             "numThread": int(settings.get("threads", 1)),
                                             "backend": SESSION_BACKENDS[str(settings.get("backend", "cpu")).lower()]})
    shapes = {}

    def dimension_type(rank):
        return MNN.Tensor_DimensionType_Tensorflow if layout == "NHWC" else MNN.Tensor_DimensionType_Caffe

    def run(sample, keep_ops=(), injected=None):
        # Re-fed before every run: MNN reuses the input buffers while it runs.
        feeds = runner.feeds(dict((name, sample_of(inputs, name, sample)) for name in job["input_names"]))
        fill_session(MNN, interpreter, session, feeds, job["input_names"], dimension_type, shapes)
        return traced_run(MNN, np, interpreter, session, keep_ops, injected)

    traces, tensors, replayed_names, outputs = [], {}, [], None
    for sample in sorted(set(samples) | ({keep_sample} if keep else set())):
        ops, kept, _ = run(sample, keep.get("ops") or () if sample == keep_sample else ())
        if not ops:
            raise JobError("no-ops", "MNN called back for no op: the session ran nothing this agent can see")
        if outputs is None:  # the job's outputs: this traced run's, so the model does not run once more
            outputs = {}
            for name in job["output_names"]:
                array = read_op_tensor(MNN, np, interpreter.getSessionOutput(session, name))
                if array is None:
                    raise JobError("empty-output", "output %r is empty" % name)
                outputs[name] = array[np.newaxis]
        traces.append({"sample": sample, "ops": ops})
        tensors.update(("s%d.%s" % (sample, name), array) for name, array in kept.items())
    if inject:
        _, _, replayed = run(replay_sample, (), inject)
        tensors.update(("replay." + name, array) for name, array in replayed.items())
        replayed_names = sorted(replayed)
    payload = json.dumps({"traces": traces, "kept": sorted(tensors), "replayed": replayed_names}).encode()
    facts = {"samples": [t["sample"] for t in traces], "ops": len(traces[0]["ops"]), "tensors": len(tensors),
             "replayed": len(replayed_names)}
    write_atomically(os.path.join(job_dir, "dump.json"), lambda f: f.write(payload))
    facts["json_sha256"] = sha256_file(os.path.join(job_dir, "dump.json"))
    if tensors:
        write_atomically(os.path.join(job_dir, "dump.npz"), lambda f: np.savez(f, **tensors))
        facts["npz_sha256"] = sha256_file(os.path.join(job_dir, "dump.npz"))
    return facts, outputs


def board_preprocess(job_dir, job, np, MNN):
    """Preprocess the raw images on the board, as the app there would, for the host to compare.

    The board's own libraries do it: OpenCV where the board has it, else MNN's
    image functions (MNN.cv). The tensors go to preprocessed.npz; inference
    still runs on the host's tensors, so the two kinds of drift stay apart.
    Returns the facts for result.json; a failure here is reported, not fatal.
    """
    spec = job["preprocess"]
    facts = {"status": "error", "backend": None, "error": None}
    try:
        try:
            import cv2
            backend = "opencv %s" % cv2.__version__
        except ImportError:
            cv2 = None
            import MNN.cv as mnn_cv
            import MNN.expr as F
            backend = "MNN.cv %s" % MNN.version()
        facts["backend"] = backend
        images_path = resolve(job_dir, spec["images"])
        if spec.get("images_sha256") and sha256_file(images_path) != spec["images_sha256"]:
            raise JobError("bad-inputs", "images.npz does not match the SHA-256 the host sent")
        flags = {"nearest": 0, "linear": 1, "cubic": 2, "area": 3}  # same numbers in OpenCV and MNN.cv
        tensors = []
        with open_regular(images_path) as f, np.load(f, allow_pickle=False) as data:
            for key in sorted(data.files, key=lambda k: int(k[3:])):
                bgr = np.ascontiguousarray(data[key])
                size = (int(spec["width"]), int(spec["height"]))
                if cv2 is not None:
                    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if spec["color"] == "rgb" else bgr
                    image = cv2.resize(image, size, interpolation=flags[spec["interpolation"]])
                else:
                    var = F.const(bgr, list(bgr.shape), F.NHWC, F.uint8)
                    if spec["color"] == "rgb":
                        var = mnn_cv.cvtColor(var, mnn_cv.COLOR_BGR2RGB)
                    var = mnn_cv.resize(var, size, 0, 0, flags[spec["interpolation"]])
                    image = np.array(var.read(), dtype=np.uint8).reshape(size[1], size[0], 3)
                tensor = image.astype(np.float32) * np.float32(spec["scale"])
                tensor = (tensor - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
                if spec["layout"] == "NCHW":
                    tensor = tensor.transpose(2, 0, 1)
                tensors.append(np.ascontiguousarray(tensor[np.newaxis], dtype=np.float32))
        stacked = np.stack(tensors)
        name = spec.get("input") or job["input_names"][0]
        write_atomically(os.path.join(job_dir, "preprocessed.npz"), lambda f: np.savez(f, **{name: stacked}))
        facts["status"] = "ok"
        facts["sha256"] = sha256_file(os.path.join(job_dir, "preprocessed.npz"))
    except Exception as error:  # the preprocessing check must not cost the inference result
        facts["error"] = "%s: %s" % (type(error).__name__, error)
    return facts


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
        "settings": None, "api": None, "api_reason": None, "control_flow": [], "backend": None,
        "inputs": {}, "latency_ms": [], "peak_rss_mb": None, "outputs": {}, "dump": None,
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
        for name, array in outputs.items():
            result["outputs"][name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
            if array.dtype.kind != "f":
                continue
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            if bad and settings.get("io", "copy") == "copy":
                raise JobError("non-finite", "output %r holds %d NaN/Inf values of %d"
                               % (name, bad, array.size))
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


def probe(out_path):
    """What the host needs to know of a board before it sends work: written to out_path as JSON."""
    facts = {"schema": RESULT_SCHEMA, "machine": platform.machine(), "python": platform.python_version(),
             "platform": platform.platform(), "hostname": platform.node(), "cpu_features": cpu_features(),
             "cpu_count": os.cpu_count(), "mnn_version": None, "mnn_banner": None, "numpy_version": None,
             "errors": []}
    try:
        import numpy
        facts["numpy_version"] = numpy.__version__
    except ImportError as error:
        facts["errors"].append("numpy: %s" % error)
    try:
        MNN, banner = import_mnn()
        facts["mnn_version"], facts["mnn_banner"] = MNN.version(), banner
    except ImportError as error:
        facts["errors"].append("MNN: %s" % error)
    try:
        usage = os.statvfs(os.path.dirname(os.path.abspath(out_path)))
        facts["free_disk_mb"] = usage.f_bavail * usage.f_frsize / 2.0 ** 20
    except OSError:
        facts["free_disk_mb"] = None
    payload = json.dumps(facts, indent=1, sort_keys=True).encode()
    write_atomically(out_path, lambda f: f.write(payload))
    return 0 if not facts["errors"] else 1


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
        write_atomically(os.path.join(job_dir, "outputs.npz"), lambda f: np.savez(f, **outputs))
        result["outputs_sha256"] = sha256_file(os.path.join(job_dir, "outputs.npz"))
    payload = json.dumps(result, indent=1, sort_keys=True).encode()
    write_atomically(os.path.join(job_dir, "result.json"), lambda f: f.write(payload))
    if result["status"] != "ok":
        sys.stderr.write("mnn_agent: %s\n" % result["error"])
        return 1, result
    return 0, result


# ---- resident mode: many jobs, one process ------------------------------------------------


def current_rss_mb():
    """Resident memory now (not the peak): what the cache bound watches. None where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2.0 ** 20
    except (OSError, ValueError, IndexError):
        return None


class ModelCache(object):
    """What a resident agent keeps between jobs: loaded models (runners), model facts and file hashes.

    Runners are keyed by what reaches MNN when a model loads (runner_key) and
    evicted least recently used first: beyond max_models, and while the
    process's resident memory is above max_rss_mb (the model just used stays).
    File hashes are keyed by the file's identity and times: a store file
    replaced or rewritten is hashed again.
    """

    def __init__(self, max_models=CACHE_MODELS, max_rss_mb=CACHE_MB):
        from collections import OrderedDict

        self.max_models = max_models
        self.max_rss_mb = max_rss_mb
        self.entries = OrderedDict()
        self.facts = OrderedDict()
        self.hashes = {}
        self.hits = self.misses = self.evicted = 0
        self.jobs = 0

    def sha256(self, path):
        with open_regular(path) as f:
            info = os.fstat(f.fileno())
            key = (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if key not in self.hashes:
                digest = hashlib.sha256()
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
                if len(self.hashes) > 256:
                    self.hashes.clear()
                self.hashes[key] = digest.hexdigest()
        return self.hashes[key]

    def model_facts(self, sha, read):
        if sha not in self.facts:
            self.facts[sha] = read()
            while len(self.facts) > 64:
                self.facts.popitem(last=False)
        self.facts.move_to_end(sha)
        return self.facts[sha]

    def runner(self, key, load):
        """(runner, True) from the cache, or (a newly loaded runner, False), now the most recently used."""
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key], True
        self.misses += 1
        runner = load()
        self.entries[key] = runner
        return runner, False

    def trim(self):
        """Evict beyond the bounds; the most recently used runner stays (the next job may want it again)."""
        import gc

        while len(self.entries) > max(0, self.max_models):
            self._evict()
        rss = current_rss_mb()
        while rss is not None and rss > self.max_rss_mb and len(self.entries) > 1:
            self._evict()
            gc.collect()
            rss = current_rss_mb()

    def _evict(self):
        _, runner = self.entries.popitem(last=False)
        runner.release()
        self.evicted += 1

    def describe(self):
        return {"entries": len(self.entries), "hits": self.hits, "misses": self.misses, "evicted": self.evicted}


class ProtocolError(Exception):
    """The host sent something that is not a frame of this protocol: the agent cannot go on reading."""


def read_exactly(fd, count):
    data = b""
    while len(data) < count:
        chunk = os.read(fd, count - len(data))
        if not chunk:
            if data:
                raise ProtocolError("the input ended inside a frame")
            return None
        data += chunk
    return data


def read_frame(fd):
    """The next request (a dict), or None at the end of the input."""
    header = read_exactly(fd, 8)
    if header is None:
        return None
    magic, length = struct.unpack(">4sI", header)
    if magic != MAGIC or length > FRAME_MAX:
        raise ProtocolError("not a frame of protocol %d (%r, %d bytes)" % (PROTOCOL, magic, length))
    body = read_exactly(fd, length)
    if body is None:
        raise ProtocolError("the input ended inside a frame")
    message = json.loads(body.decode("utf-8"))
    if not isinstance(message, dict):
        raise ProtocolError("a frame's body must be a JSON object")
    return message


def write_frame(fd, message):
    body = json.dumps(message, sort_keys=True).encode("utf-8")
    data = struct.pack(">4sI", MAGIC, len(body)) + body
    while data:
        data = data[os.write(fd, data):]


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")


def session_child(session_dir, name):
    """SESSION_DIR/name, for a name of safe characters only: all a request may create or remove."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise JobError("bad-request", "%r is not a job directory name of this session" % (name,))
    return os.path.join(session_dir, name)


def prepare_job_dir(session_dir, request):
    """The job dir a run request names, made (with its job.json) when the request carries the job."""
    for name in request.get("remove") or []:
        path = session_child(session_dir, name)
        if os.path.islink(path):
            os.unlink(path)
        elif os.path.isdir(path):
            import shutil
            shutil.rmtree(path)
    job_dir = request.get("dir")
    if not isinstance(job_dir, str) or not os.path.isabs(job_dir) or "\0" in job_dir:
        raise JobError("bad-request", "dir must be an absolute path, not %r" % (job_dir,))
    if request.get("job") is not None:
        if os.path.dirname(os.path.normpath(job_dir)) != os.path.normpath(session_dir):
            raise JobError("bad-request", "a new job dir must be a child of the session dir %s" % session_dir)
        job_dir = session_child(session_dir, os.path.basename(os.path.normpath(job_dir)))
        os.mkdir(job_dir)
        payload = json.dumps(request["job"], indent=1).encode("utf-8")
        write_atomically(os.path.join(job_dir, "job.json"), lambda f: f.write(payload))
    elif not os.path.isfile(os.path.join(job_dir, "job.json")):
        raise JobError("bad-request", "%s holds no job.json" % job_dir)
    return job_dir


class JobOutput(object):
    """Descriptors 1 and 2 pointed at the job's agent.log while it runs, back at the session's log after."""

    def __init__(self, job_dir, session_log_fd):
        self.path = os.path.join(job_dir, "agent.log")
        self.session_log_fd = session_log_fd

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        _flush_c_stdio()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        _flush_c_stdio()
        os.dup2(self.session_log_fd, 1)
        os.dup2(self.session_log_fd, 2)
        return False


def serve(session_dir, max_models=CACHE_MODELS, max_rss_mb=CACHE_MB):
    """The resident mode: say hello, then run each request's job dir until the input ends."""
    session_dir = os.path.abspath(session_dir)
    replies = os.dup(1)  # taken before fd 1 is pointed at the log: MNN's prints cannot reach it
    log_fd = os.open(os.path.join(session_dir, "serve.log"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    pid = str(os.getpid()).encode()
    write_atomically(os.path.join(session_dir, "agent.pid"), lambda f: f.write(pid + b"\n"))
    cache = ModelCache(max_models, max_rss_mb)
    try:
        write_frame(replies, {"type": "hello", "protocol": PROTOCOL, "pid": os.getpid(), "pgid": os.getpgid(0),
                              "python": platform.python_version(), "machine": platform.machine(),
                              "cache": {"models": max_models, "rss_mb": max_rss_mb}})
        while True:
            try:
                request = read_frame(0)
            except (ProtocolError, ValueError) as error:
                write_frame(replies, {"type": "error", "seq": None, "error": "protocol: %s" % error})
                return 2
            if request is None or request.get("op") == "quit":
                return 0
            seq = request.get("seq")
            if request.get("op") != "run":
                write_frame(replies, {"type": "error", "seq": seq, "error": "unknown op %r" % request.get("op")})
                continue
            started = time.time()
            try:
                job_dir = prepare_job_dir(session_dir, request)
            except (JobError, OSError) as error:
                write_frame(replies, {"type": "error", "seq": seq, "error": str(error)})
                continue
            cache.jobs += 1
            try:
                with JobOutput(job_dir, log_fd):
                    code, result = run_and_write(job_dir, cache)
                status = result["status"]
            except Exception as error:  # noqa: BLE001  writing the results failed (a full disk): say so, go on
                write_frame(replies, {"type": "error", "seq": seq, "error": "%s: %s" % (type(error).__name__, error)})
                continue
            finally:
                if hasattr(signal, "alarm"):
                    signal.alarm(0)  # this job's deadline is over
            write_frame(replies, {"type": "done", "seq": seq, "status": status, "exit": code,
                                  "wall_s": time.time() - started, "rss_mb": current_rss_mb(),
                                  "peak_rss_mb": peak_rss_mb(), "cache": cache.describe()})
    except BrokenPipeError:
        return 0  # the host went away: nothing to tell anyone


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--probe":
        return probe(argv[1])
    if argv and argv[0] == "--serve":
        options = {"--cache-models": CACHE_MODELS, "--cache-mb": CACHE_MB}
        rest = argv[1:]
        try:
            while len(rest) > 1 and rest[0] in options:
                options[rest[0]] = type(options[rest[0]])(rest[1])
                rest = rest[2:]
        except ValueError:
            rest = []
        if len(rest) != 1 or not os.path.isdir(rest[0]):
            sys.stderr.write("usage: mnn_agent.py --serve SESSION_DIR [--cache-models N] [--cache-mb MB]\n")
            return 2
        return serve(rest[0], options["--cache-models"], options["--cache-mb"])
    if len(argv) != 1 or not os.path.isfile(os.path.join(argv[0], "job.json")):
        sys.stderr.write("usage: mnn_agent.py JOB_DIR   (JOB_DIR must hold job.json)\n")
        return 2
    return run_and_write(argv[0])[0]


if __name__ == "__main__":
    sys.exit(main())
