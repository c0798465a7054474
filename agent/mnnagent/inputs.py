"""The job's inputs: checked against the host's hashes, counted in samples, fed as the model takes them.

Inputs may be float32, int32, int64 or uint8, of any rank (a scalar has shape []).
MNN stores int64 inputs as int32: the agent casts them, after checking that every
value fits. numpy arrives as a parameter (np): it is imported when a job runs,
so the probe still works on a board without it.
"""

from .contract import INPUT_DTYPES, JobError
from .files import read_npz, resolve, sha256_file


def check_file(path, expected, kind, what, cache=None):
    if expected and (cache.sha256(path) if cache is not None else sha256_file(path)) != expected:
        raise JobError(kind, "%s %s does not have the SHA-256 the host sent (%s): the transfer corrupted "
                       "it or a stale file was used" % (what, path, expected))


def check_job_files(job_dir, job, cache=None):
    """The model and inputs paths, after checking both hashes: the board runs the host's bytes."""
    inputs_path = resolve(job_dir, job["inputs"])
    check_file(inputs_path, job.get("inputs_sha256"), "bad-inputs", "inputs", cache)
    model_path = resolve(job_dir, job["model"])
    check_file(model_path, job.get("model_sha256"), "bad-model", "model", cache)
    return model_path, inputs_path


def load_inputs(job_dir, job, np, cache=None):
    """The model path and the input arrays (tensor names encoded as members), after checking both hashes."""
    model_path, inputs_path = check_job_files(job_dir, job, cache)
    arrays = read_npz(inputs_path, np)
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
