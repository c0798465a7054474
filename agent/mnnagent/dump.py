"""Per-op dumps and replay for `harness layers`.

MNN's Session API calls back around every op it executes, in execution order
(runSessionWithCallBackInfo): before with the op's input tensors, after with
its outputs. A layer dump needs its own session (the default session mode;
release mode never calls back).
"""

import hashlib
import json
import os

from .contract import JobError
from .files import sha256_file, write_atomically, write_npz
from .inputs import sample_count, sample_of
from .native import CapturedStdout
from .runners import HALIDE, fill_session, session_config

PROBE_COUNT = 64  # values per op output in a layer dump's summary, at fixed positions


def fingerprint(np, array):
    """What identifies a tensor's content: its shape, dtype and a digest of its values (None: no elements).

    An op's input is linked to the op that produced it by this, never by the
    tensor's memory address: MNN's pipeline gives an op a converted copy of
    an input whenever the op runs on another backend, layout or precision
    than the op that made it (Pipeline.cpp, _InsertCopy: `workInputs` are
    wrap tensors, and the copy commands run without callbacks), and an op's
    output that needs converting is written to a temporary first. The copy's
    buffer reuses whatever a dead tensor held: on PP-OCR's detector at low
    on an A76 a Reduction (FP32, the Arm82 backend has none) read a copy at
    the address of a [1, 48, 24, 24] convolution output, and even on x86 an
    Add read, at a convolution's address, the Interp output copied there.
    """
    if array is None:
        return None
    return (array.shape, array.dtype.str, hashlib.sha1(np.ascontiguousarray(array).view(np.uint8)).digest())


def halide_dtype(MNN, tensor):
    kind = tensor.getDataType()
    for dtype, halide in HALIDE.items():
        if kind is getattr(MNN, halide):
            return dtype
    return "float32"


def read_op_tensor(MNN, np, tensor, dimension_type=None):
    """An op's tensor as a numpy array in the order of its getShape(), or None when it has no elements.

    Only copyToHostTensor reads it right: getNumpyData on the op's own tensor
    returns the backend's packed buffer (NC4HW4/NC8HW8, FP16 bits at precision
    low) while its metadata says float32 Caffe. The host tensor takes the op
    tensor's own dimension type: MNN converts between NHWC and NCHW whenever
    the two differ, and for a tensor that is NHWC (a model from TFLite: its
    Rasters, Reductions, its input) reading into Caffe permutes the values
    while the shape stays getShape()'s. Summaries barely notice (both sides
    are permuted alike), but writing such an array back (the replay) permutes
    it again, another way: a TFLite MEAN, run as Raster + Reduction, then
    averaged the wrong values.
    dimension_type: another host layout, for a model output read as the
    runners read it (Tensorflow for an NHWC model), so that its values come
    in the same order as a plain run's.
    """
    shape = tuple(tensor.getShape())
    if any(dim <= 0 for dim in shape):
        return None
    dtype = halide_dtype(MNN, tensor)
    host = MNN.Tensor(shape, getattr(MNN, HALIDE[dtype]), np.zeros(shape, dtype=dtype),
                      tensor.getDimensionType() if dimension_type is None else dimension_type)
    tensor.copyToHostTensor(host)
    return np.array(host.getNumpyData(), dtype=dtype, copy=True).reshape(shape)


def write_op_tensor(MNN, np, tensor, array):
    """Overwrite an op's input tensor with array (its getShape(), as read_op_tensor gives it), converting to the
    backend's packing and precision; in the tensor's own dimension type, so no axis is permuted."""
    dtype = halide_dtype(MNN, tensor)
    array = np.ascontiguousarray(array, dtype=dtype)
    tensor.copyFrom(MNN.Tensor(tuple(array.shape), getattr(MNN, HALIDE[dtype]), array, tensor.getDimensionType()))


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


def agreement(np, traced, plain):
    """How a traced run's output compares with a plain run's of the same sample (summaries only travel).

    MNN's op callbacks can change what runs (the issue of a trace that never
    overflows while the plain run does); the host judges these numbers.
    """
    t = np.asarray(traced, dtype=np.float64).ravel()
    p = np.asarray(plain, dtype=np.float64).ravel()
    if t.size != p.size:
        return {"size": [int(t.size), int(p.size)]}
    finite_t, finite_p = np.isfinite(t), np.isfinite(p)
    both = finite_t & finite_p
    return {"traced_nonfinite": int((~finite_t).sum()), "plain_nonfinite": int((~finite_p).sum()),
            "finiteness_differs": int((finite_t != finite_p).sum()),
            "max_abs": float(np.abs(t[both] - p[both]).max()) if both.any() else 0.0,
            "scale": float(np.abs(p[both]).max()) if both.any() else 0.0}


def same_layout(shape, other):
    """Whether an array of one shape holds its values in the order of the other: equal but for axes of 1 (a scalar
    is () on one machine and (1,) on another). Equal sizes are not enough: [16, 256, 1, 1] and [1, 256, 4, 4]
    order the same 4096 values differently."""
    return [d for d in shape if d != 1] == [d for d in other if d != 1]


def traced_run(MNN, np, interpreter, session, keep=(), inject=None):
    """One run of the session with a callback around every op.

    Returns (ops, kept, replayed). ops: one record per executed op, in order:
    name, type, flops (MNN's count, in 2^20 units), inputs (shape, layout:
    the order of its axes, NCHW or NHWC) and outputs (shape, dtype,
    summary). Each input is read as the op reads it and linked
    to the last op output with the same shape and values ("from": [op,
    output]); an input no output matches (a model input, a constant, a copy
    MNN converted to another precision) carries its own summary. kept: whole
    tensors of the ops in keep ("op{i}.out{k}", and "op{i}.in{k}" for inputs
    no kept op produced, as the op read them). inject: {op index: [array or
    None per input]}: those arrays are written into the op's inputs just
    before it runs, so the op computes on them (the replay of another
    machine's inputs); replayed holds what those ops then produced
    ("op{i}.out{k}").
    """
    keep = set(keep)
    inject = inject or {}
    produced, ops, kept, replayed, errors = {}, [], {}, {}, []

    def before(tensors, info):
        try:
            index = len(ops)
            record = {"name": info.getName(), "type": info.getType(), "flops": float(info.getFlops()),
                      "inputs": [], "outputs": []}
            ops.append(record)
            arrays = inject.get(index)
            for k, tensor in enumerate(tensors):
                shape = tuple(tensor.getShape())
                if arrays is not None and k < len(arrays) and arrays[k] is not None:
                    if not same_layout(arrays[k].shape, shape):
                        raise JobError("bad-replay", "op %d (%s) input %d has shape %s here, the replayed one %s"
                                       % (index, record["name"], k, list(shape), list(arrays[k].shape)))
                    write_op_tensor(MNN, np, tensor, arrays[k].reshape(shape))
                array = read_op_tensor(MNN, np, tensor)
                source = produced.get(fingerprint(np, array)) if array is not None else None
                entry = {"from": list(source) if source else None, "shape": list(shape),
                         "layout": "NHWC" if tensor.getDimensionType() == MNN.Tensor_DimensionType_Tensorflow
                         else "NCHW"}
                if source is None:
                    entry["summary"] = summarize(np, array)
                if index in keep and array is not None and (source is None or source[0] not in keep):
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
                if array is not None:
                    produced[fingerprint(np, array)] = (index, k)  # the last op that made these values wins
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
        plain     true: run each traced sample once more without callbacks (the job's own runner) and
                  compare its outputs with the traced run's, so the host can tell when the callbacks
                  changed what ran
    dump.json: {"traces": [{"sample": s, "ops": [...]}], "kept": [names], "replayed": [names],
                "plain": [{"sample": s, "outputs": {name: agreement(...)}}]};
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
        session = interpreter.createSession(session_config(settings.get("precision", "normal"),
                                                           settings.get("threads", 1), settings.get("backend", "cpu")))
    shapes = {}

    def dimension_type(rank):
        return MNN.Tensor_DimensionType_Tensorflow if layout == "NHWC" else MNN.Tensor_DimensionType_Caffe

    def run(sample, keep_ops=(), injected=None):
        # Re-fed before every run: MNN reuses the input buffers while it runs.
        feeds = runner.feeds(dict((name, sample_of(inputs, name, sample)) for name in job["input_names"]))
        fill_session(MNN, interpreter, session, feeds, job["input_names"], dimension_type, shapes)
        return traced_run(MNN, np, interpreter, session, keep_ops, injected)

    traces, tensors, replayed_names, outputs, plain = [], {}, [], None, []
    for sample in sorted(set(samples) | ({keep_sample} if keep else set())):
        ops, kept, _ = run(sample, keep.get("ops") or () if sample == keep_sample else ())
        if not ops:
            raise JobError("no-ops", "MNN called back for no op: the session ran nothing this agent can see")
        traced = {}
        for name in job["output_names"]:
            output = interpreter.getSessionOutput(session, name)
            array = read_op_tensor(MNN, np, output, dimension_type(len(output.getShape())))
            if array is None:
                raise JobError("empty-output", "output %r is empty" % name)
            traced[name] = array
        if outputs is None:  # the job's outputs: this traced run's, so the model does not run once more
            outputs = dict((name, array[np.newaxis]) for name, array in traced.items())
        if spec.get("plain") and sample in samples:
            produced = runner.run(dict((name, sample_of(inputs, name, sample)) for name in job["input_names"]))
            plain.append({"sample": sample, "outputs": dict((name, agreement(np, traced[name], produced[name]))
                                                            for name in job["output_names"] if name in produced)})
        traces.append({"sample": sample, "ops": ops})
        tensors.update(("s%d.%s" % (sample, name), array) for name, array in kept.items())
    if inject:
        _, _, replayed = run(replay_sample, (), inject)
        tensors.update(("replay." + name, array) for name, array in replayed.items())
        replayed_names = sorted(replayed)
    payload = json.dumps({"traces": traces, "kept": sorted(tensors), "replayed": replayed_names,
                          "plain": plain}).encode()
    facts = {"samples": [t["sample"] for t in traces], "ops": len(traces[0]["ops"]), "tensors": len(tensors),
             "replayed": len(replayed_names)}
    write_atomically(os.path.join(job_dir, "dump.json"), lambda f: f.write(payload))
    facts["json_sha256"] = sha256_file(os.path.join(job_dir, "dump.json"))
    if tensors:
        write_atomically(os.path.join(job_dir, "dump.npz"), lambda f: write_npz(f, np, tensors))
        facts["npz_sha256"] = sha256_file(os.path.join(job_dir, "dump.npz"))
    return facts, outputs
