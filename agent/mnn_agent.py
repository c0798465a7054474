#!/usr/bin/env python3
"""The board-side agent of mnn-harness: run one MNN job directory, write the results.

    python3 mnn_agent.py JOB_DIR
    python3 mnn_agent.py --probe OUT.json     # the board's facts: Python, MNN, CPU features, disk

JOB_DIR holds job.json (what to run), the model and the inputs (paths in
job.json, relative to JOB_DIR or absolute). The agent writes outputs.npz and
result.json into JOB_DIR, each to a temporary name renamed when complete, so
the host never reads a half-written result. result.json is written even when
the run fails: status "error" and the reason.

This file stands alone: Python >= 3.8, numpy and MNN only, nothing from the
host's `harness` package. Nothing travels on stdout (MNN prints a banner there
at import); diagnostics go to stderr, results go to files.

Exit codes: 0 the run succeeded, 1 it failed (result.json says why), 2 the job
directory could not be read at all.
"""

import hashlib
import json
import os
import platform
import signal
import stat
import struct
import sys
import tempfile
import time
import traceback

RESULT_SCHEMA = 1
PRECISIONS = ("normal", "high", "low", "low_bf16")
APIS = ("session", "module")
IO_MODES = ("copy", "host")
PROBE_COUNT = 64  # values per op output in a layer dump's summary, at fixed positions

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


def import_mnn():
    """Import MNN with file descriptor 1 redirected, and return (MNN, the banner it printed).

    MNN's native code prints "The device supports: ..." on stdout at import: it
    is MNN's own view of the CPU (fp16, i8sdot, i8mm, sve2), worth keeping, and
    it must not reach our stdout.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            import MNN  # noqa: F401  (imported for its side effect on sys.modules)
            import MNN.expr  # noqa: F401
            import MNN.nn  # noqa: F401
        finally:
            sys.stdout.flush()
            _flush_c_stdio()
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        banner = capture.read().decode("utf-8", "replace").strip()
    return sys.modules["MNN"], banner


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


def load_job(job_dir):
    path = os.path.join(job_dir, "job.json")
    with open_regular(path) as f:
        job = json.loads(f.read().decode("utf-8"))
    settings = job.get("settings", {})
    if settings.get("precision", "normal") not in PRECISIONS:
        raise JobError("bad-job", "precision must be one of %s" % ", ".join(PRECISIONS))
    if settings.get("api", "session") not in APIS:
        raise JobError("bad-job", "api must be one of %s" % ", ".join(APIS))
    if settings.get("io", "copy") not in IO_MODES:
        raise JobError("bad-job", "io must be one of %s" % ", ".join(IO_MODES))
    return job


def load_inputs(job_dir, job, np):
    """The inputs, after checking their SHA-256: the board must run exactly the host's tensors."""
    inputs_path = resolve(job_dir, job["inputs"])
    expected = job.get("inputs_sha256")
    actual = sha256_file(inputs_path)
    if expected and actual != expected:
        raise JobError("bad-inputs", "inputs %s have SHA-256 %s, the host sent %s: the transfer "
                       "corrupted them or a stale file was used" % (inputs_path, actual, expected))
    model_path = resolve(job_dir, job["model"])
    expected = job.get("model_sha256")
    if expected and sha256_file(model_path) != expected:
        raise JobError("bad-model", "model %s does not have the SHA-256 the host sent (%s)"
                       % (model_path, expected))
    with open_regular(inputs_path) as f, np.load(f, allow_pickle=False) as data:
        arrays = {name: np.ascontiguousarray(data[name], dtype=np.float32) for name in data.files}
    missing = [name for name in job["input_names"] if name not in arrays]
    if missing:
        raise JobError("bad-inputs", "inputs.npz lacks the model input(s) %s" % ", ".join(missing))
    return model_path, arrays


def check_names(what, wanted, known):
    missing = [name for name in wanted if name not in known]
    if missing:
        raise JobError("missing-" + what, "the model has no %s named %s; its %ss are %s"
                       % (what, ", ".join(repr(m) for m in missing), what, ", ".join(sorted(known))))


class SessionRunner(object):
    """MNN's Session API, with the copies that convert layout and precision to host format.

    io "copy" is the right way (the Python face of map/unmap): Caffe-layout host
    tensors filled with copyFrom, outputs read back with copyToHostTensor.
    io "host" reads the session output's own buffer (getNumpyData on the session
    tensor): the classic bug, kept so a user can see what it does on their board.
    """

    def __init__(self, MNN, np, model_path, settings, input_names, output_names, layout):
        self.MNN, self.np = MNN, np
        self.io = settings.get("io", "copy")
        self.input_names, self.output_names = input_names, output_names
        self.dimension_type = (MNN.Tensor_DimensionType_Tensorflow if layout == "NHWC"
                               else MNN.Tensor_DimensionType_Caffe)
        self.interpreter = MNN.Interpreter(model_path)
        config = {"precision": settings.get("precision", "normal"),
                  "numThread": int(settings.get("threads", 1)),
                  "backend": settings.get("backend", "CPU")}
        self.session = self.interpreter.createSession(config)
        check_names("input", input_names, self.interpreter.getSessionInputAll(self.session))
        check_names("output", output_names, self.interpreter.getSessionOutputAll(self.session))
        self.shapes = {}

    def run(self, feeds):
        MNN, np = self.MNN, self.np
        resized = False
        for name in self.input_names:
            tensor = self.interpreter.getSessionInput(self.session, name)
            shape = list(feeds[name].shape)
            if self.shapes.get(name) != shape:
                # Without a resize, dynamic-shape models run on shape (0,0,0,0):
                # runSession returns 3 and every output is empty, with no exception.
                self.interpreter.resizeTensor(tensor, tuple(shape))
                self.shapes[name] = shape
                resized = True
        if resized:
            self.interpreter.resizeSession(self.session)
        for name in self.input_names:
            tensor = self.interpreter.getSessionInput(self.session, name)
            host = MNN.Tensor(tuple(feeds[name].shape), MNN.Halide_Type_Float, feeds[name],
                              self.dimension_type)
            tensor.copyFrom(host)
        code = self.interpreter.runSession(self.session)
        if code != 0:
            raise JobError("run-failed", "runSession returned %d (0 is success; 3 usually means "
                           "an input shape was not resized)" % code)
        outputs = {}
        for name in self.output_names:
            tensor = self.interpreter.getSessionOutput(self.session, name)
            shape = tuple(tensor.getShape())
            if not shape or any(dim <= 0 for dim in shape):
                raise JobError("empty-output", "output %r has shape %s" % (name, list(shape)))
            if self.io == "host":
                data = np.array(tensor.getNumpyData(), copy=True).reshape(-1)
                count = int(np.prod(shape))
                data = data[:count] if data.size >= count else np.resize(data, count)
                outputs[name] = data.reshape(shape).astype(np.float32)
            else:
                host = MNN.Tensor(shape, MNN.Halide_Type_Float,
                                  np.zeros(shape, dtype=np.float32), self.dimension_type)
                tensor.copyToHostTensor(host)
                outputs[name] = np.array(host.getNumpyData(), dtype=np.float32, copy=True).reshape(shape)
        return outputs


def dump_layers(MNN, np, model_path, settings, input_names, layout, feeds, spec, job_dir):
    """Run once more keeping the intermediate tensors the host names, and record what each holds.

    The tensors are kept with the session's saveTensors and read like outputs
    (copyToHostTensor converts layout and FP16 to float32; an op callback's
    tensors are not converted reliably at precision low). Summaries of every
    tensor go to dump.json (shape, mean, std, min, max, NaN/Inf counts and
    PROBE_COUNT values at fixed positions); whole tensors only of the names in
    spec["keep"] go to dump.npz. A SegFormer has hundreds of intermediate
    tensors: only their summaries cross the wire.
    """
    names = list(spec.get("tensors") or [])
    keep = set(spec.get("keep") or [])
    interpreter = MNN.Interpreter(model_path)
    session = interpreter.createSession({"precision": settings.get("precision", "normal"),
                                         "numThread": int(settings.get("threads", 1)),
                                         "saveTensors": tuple(names)})
    dimension_type = MNN.Tensor_DimensionType_Tensorflow if layout == "NHWC" else MNN.Tensor_DimensionType_Caffe
    for name in input_names:
        tensor = interpreter.getSessionInput(session, name)
        interpreter.resizeTensor(tensor, tuple(feeds[name].shape))
    interpreter.resizeSession(session)
    for name in input_names:
        interpreter.getSessionInput(session, name).copyFrom(
            MNN.Tensor(tuple(feeds[name].shape), MNN.Halide_Type_Float, feeds[name], dimension_type))
    code = interpreter.runSession(session)
    if code != 0:
        raise JobError("run-failed", "runSession returned %d in the layer dump" % code)
    summaries, tensors = [], {}
    for name in names:
        try:
            tensor = interpreter.getSessionOutput(session, name)
        except Exception:  # fused away by MNN (a Relu folded into its Conv): nothing to read
            continue
        shape = tuple(tensor.getShape())
        if not shape or any(d <= 0 for d in shape):
            continue
        host = MNN.Tensor(shape, MNN.Halide_Type_Float, np.zeros(shape, dtype=np.float32),
                          MNN.Tensor_DimensionType_Caffe)
        tensor.copyToHostTensor(host)
        array = np.array(host.getNumpyData(), dtype=np.float32, copy=True).reshape(shape)
        flat = array.ravel()
        finite = flat[np.isfinite(flat)].astype(np.float64)
        positions = np.linspace(0, flat.size - 1, num=min(PROBE_COUNT, flat.size)).astype(np.int64)
        summaries.append({
            "name": name, "shape": list(shape),
            "mean": float(finite.mean()) if finite.size else None,
            "std": float(finite.std()) if finite.size else None,
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "nan": int(np.isnan(flat).sum()), "inf": int(np.isinf(flat).sum()),
            "probe": [float(v) if np.isfinite(v) else None for v in flat[positions]],
        })
        if name in keep:
            tensors[name] = array
    payload = json.dumps({"tensors": summaries}).encode()
    write_atomically(os.path.join(job_dir, "dump.json"), lambda f: f.write(payload))
    if tensors:
        write_atomically(os.path.join(job_dir, "dump.npz"), lambda f: np.savez(f, **tensors))
    return len(summaries), len(tensors)


class ModuleRunner(object):
    """MNN's Module (expression) API: load_module_from_file, forward, convert back to NCHW."""

    PRECISION = {"normal": "Normal", "high": "High", "low": "Low", "low_bf16": "Low_BF16"}

    def __init__(self, MNN, np, model_path, settings, input_names, output_names, layout):
        self.F, self.np = MNN.expr, np
        self.layout = self.F.NHWC if layout == "NHWC" else self.F.NCHW
        self.input_names, self.output_names = input_names, output_names
        precision = getattr(self.F.PrecisionMode, self.PRECISION[settings.get("precision", "normal")])
        self.module = MNN.nn.load_module_from_file(
            model_path, input_names, output_names,
            precision_mode=precision, thread_num=int(settings.get("threads", 1)))

    def run(self, feeds):
        F, np = self.F, self.np
        variables = [F.const(feeds[name], list(feeds[name].shape), self.layout)
                     for name in self.input_names]
        results = self.module.forward(variables)
        if not isinstance(results, (list, tuple)):
            results = [results]
        outputs = {}
        for name, value in zip(self.output_names, results):
            array = np.array(F.convert(value, self.layout).read(), dtype=np.float32, copy=True)
            if array.size == 0:
                raise JobError("empty-output", "output %r is empty" % name)
            outputs[name] = array
        return outputs


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
        write_atomically(os.path.join(job_dir, "preprocessed.npz"),
                         lambda f: np.savez(f, **{job["input_names"][0]: stacked}))
        facts["status"] = "ok"
        facts["sha256"] = sha256_file(os.path.join(job_dir, "preprocessed.npz"))
    except Exception as error:  # the preprocessing check must not cost the inference result
        facts["error"] = "%s: %s" % (type(error).__name__, error)
    return facts


def run_job(job_dir):
    """Run the job; return the result dict (also on failure) and the outputs (None on failure)."""
    started = time.time()
    result = {
        "schema": RESULT_SCHEMA, "status": "error", "error": None, "error_kind": None,
        "machine": platform.machine(), "python": platform.python_version(),
        "platform": platform.platform(), "hostname": platform.node(),
        "cpu_features": cpu_features(), "mnn_version": None, "mnn_banner": None,
        "settings": None, "latency_ms": [], "peak_rss_mb": None, "outputs": {},
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
        model_path, inputs = load_inputs(job_dir, job, np)
        if job.get("preprocess"):
            result["preprocess"] = board_preprocess(job_dir, job, np, MNN)
        runner_class = ModuleRunner if settings.get("api", "session") == "module" else SessionRunner
        runner = runner_class(MNN, np, model_path, settings, job["input_names"],
                              job["output_names"], job.get("layout", "NCHW"))
        sample_count = len(inputs[job["input_names"][0]])
        if job.get("dump"):
            sample = int(job["dump"].get("sample", 0))
            feeds = {name: inputs[name][sample] for name in job["input_names"]}
            found, saved = dump_layers(MNN, np, model_path, settings, job["input_names"], job.get("layout", "NCHW"),
                                       feeds, job["dump"], job_dir)
            result["dump"] = {"tensors": found, "kept": saved, "sample": sample}
        iterations = max(1, int(job.get("iterations", 1)))
        warmup = max(0, int(job.get("warmup", 0)))
        collected = {name: [] for name in job["output_names"]}
        for sample in range(sample_count):
            feeds = {name: inputs[name][sample] for name in job["input_names"]}
            for _ in range(warmup):
                runner.run(feeds)
            for iteration in range(iterations):
                begin = time.perf_counter()
                produced = runner.run(feeds)
                result["latency_ms"].append((time.perf_counter() - begin) * 1000.0)
            for name in job["output_names"]:
                if name not in produced:
                    raise JobError("missing-output", "the model produced no output named %r" % name)
                collected[name].append(produced[name])
        outputs = {name: np.stack(arrays) for name, arrays in collected.items()}
        for name, array in outputs.items():
            result["outputs"][name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--probe":
        return probe(argv[1])
    if len(argv) != 1 or not os.path.isfile(os.path.join(argv[0], "job.json")):
        sys.stderr.write("usage: mnn_agent.py JOB_DIR   (JOB_DIR must hold job.json)\n")
        return 2
    job_dir = argv[0]
    result, outputs = run_job(job_dir)
    if outputs is not None:
        import numpy as np
        write_atomically(os.path.join(job_dir, "outputs.npz"), lambda f: np.savez(f, **outputs))
        result["outputs_sha256"] = sha256_file(os.path.join(job_dir, "outputs.npz"))
    payload = json.dumps(result, indent=1, sort_keys=True).encode()
    write_atomically(os.path.join(job_dir, "result.json"), lambda f: f.write(payload))
    if result["status"] != "ok":
        sys.stderr.write("mnn_agent: %s\n" % result["error"])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
