#!/usr/bin/env python3
"""The board-side agent of mnn-harness: run one MNN job directory, write the results.

    python3 mnn_agent.py JOB_DIR
    python3 mnn_agent.py --probe OUT.json     # the board's facts: Python, MNN, CPU features, disk
    python3 mnn_agent.py --serve SESSION_DIR [--cache-models N] [--cache-mb MB]   # resident: jobs one after another

On a board the same runs as `python3 mnn_agent-<sha16>.pyz JOB_DIR` (or --probe, --serve): one file,
a zipapp of this script (its __main__.py) and the package beside it, agent/mnnagent/.

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

This file is the agent's contract and its entry; the agent itself is the package
mnnagent (one module per concept, listed in its __init__). The harness builds the
two into one zipapp (harness/core/agent_bundle.py) and ships that. Python >= 3.8, numpy
and MNN only, nothing from the host's `harness` package. Nothing travels on stdout
(MNN prints a banner there at import); diagnostics go to stderr, results go to files.

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
    dump            null, or the per-op dump of `harness layers` (see mnnagent/dump.py: samples to trace,
                    ops to keep whole, ops to replay on another machine's inputs)
    script          null, or {"name": "repro.py", "source": its text, "args": [...], "saves": [...],
                    "python": [the command that runs Python on the board; default: the agent's]}:
                    instead of running the model itself, the agent writes the script into the job dir and
                    runs `PYTHON NAME --model MODEL --tensors INPUTS --save script-outputs.npz ARGS...`
                    there with the board's Python (a `harness repro` bundle proving itself, see
                    mnnagent/script.py); the arrays it saves under the names in "saves" (default:
                    output_names) are the outputs, one per output name; input_names may be empty
    deadline_s      optional: seconds after which the agent ends itself (SIGALRM), even when
                    nobody is left to stop it (the host vanished, its session hung)

The agent never reads through a symlink in its job dir or store (O_NOFOLLOW), and
writes only by creating a new temp file and renaming it over the target.

Every .npz either side writes (inputs, outputs, preprocessed, dump) holds one member per
tensor, named by the tensor's name percent-encoded as urllib.parse.quote(name, safe=":")
does, plus ".npy": `logits.npy`, `save_infer_model%2Fscale_0.tmp_1.npy`. Names may hold
anything ("/", "%", "file"); members are flat, one-to-one, and numpy.load reads them.

Inputs may be float32, int32, int64 or uint8, of any rank (a scalar has shape []).
MNN stores int64 inputs as int32: the agent casts them, after checking that every
value fits. Outputs keep their type (integer outputs come back as integers) and their
values: NaN and Inf come back as they are, for the host to count, locate and judge.

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
    precision       null, or at low_bf16 {"asked": "low_bf16", "ran": "FP32" | "BF16", "evidence"}:
                    the first sample run again at normal; bit-identical outputs mean MNN computed FP32
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
                    "npz_sha256"}; a run whose outputs hold NaN/Inf leaves its whole dump, like any run
    script          null, or for a job with a script: {"name", "exit" (null: killed at the deadline),
                    "seconds", "output" (the end of what it printed), "argv"}; its outputs may hold
                    NaN/Inf (they may be what it reproduces), like any job's

Exit codes: 0 the run succeeded, 1 it failed (result.json says why), 2 the job
directory could not be read at all.
"""

import os
import sys

# From the repository, the package sits beside this file; in the zipapp, this file is __main__.py at the
# archive's root, which Python has already put first on sys.path. Loaded by path (a test reading PROTOCOL),
# neither holds, hence the insert.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from mnnagent.__main__ import main  # noqa: E402  (after the path is set)
from mnnagent.contract import JOB_SCHEMAS, RESULT_SCHEMA  # noqa: E402,F401  (the contract's versions, by name)
from mnnagent.protocol import FRAME_MAX, MAGIC, PROTOCOL  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
