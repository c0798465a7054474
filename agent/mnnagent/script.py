"""A job's script: a standalone Python file run by the board's own Python, in a child process (`harness repro`).

A reproduction bundle proves itself by running its own script where a user
would: the board's Python, with only numpy and MNN on its path (this agent
is not on the child's path), in the job dir. The child gets the job's model
and inputs file by option; what it writes to --save becomes the job's
outputs, its exit status and the end of what it printed go to result.json.
A crash of MNN in the script ends the child, never the (resident) agent.
"""

import os
import re
import signal
import subprocess
import sys
import time

from .contract import JobError
from .files import open_regular, resolve

OUTPUTS_FILE = "script-outputs.npz"
LOG_FILE = "script.log"
OUTPUT_KEEP = 16 << 10
"""Bytes kept of what the script printed (its end): the numbers it prints come last."""
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\.py$")
DEADLINE_MARGIN_S = 5
"""The child must end this long before the job's deadline kills the agent, so its failure is reported."""


def check_script(spec, output_names):
    """job["script"], checked: a safe file name, the source as text, the arguments as strings, and the names of
    the arrays it saves for the job's outputs (tensor names need not be names the host takes in outputs.npz)."""
    if not isinstance(spec, dict):
        raise JobError("bad-job", "script must be a mapping, not %r" % (spec,))
    name, source, args = spec.get("name"), spec.get("source"), spec.get("args", [])
    saves = spec.get("saves", output_names)
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise JobError("bad-job", "script.name must be a plain file name ending in .py, not %r" % (name,))
    if not isinstance(source, str) or not source:
        raise JobError("bad-job", "script.source must be the script's text")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise JobError("bad-job", "script.args must be a list of strings")
    if not isinstance(saves, list) or not all(isinstance(s, str) for s in saves) or len(saves) != len(output_names):
        raise JobError("bad-job", "script.saves must name what the script saves, one per output name")
    python = spec.get("python")
    if python is None:
        python = [sys.executable]
    if not isinstance(python, list) or not python or not all(isinstance(p, str) and p for p in python):
        raise JobError("bad-job", "script.python must be the command that runs Python here, as a list of strings")
    return name, source, args, saves, python


def tail(path, keep=OUTPUT_KEEP):
    try:
        with open_regular(path) as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - keep))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def seconds_left():
    """Seconds until the job's deadline (arm_deadline's SIGALRM), None when there is none."""
    if not hasattr(signal, "alarm"):
        return None
    left = signal.alarm(0)
    if left:
        signal.alarm(left)
    return left or None


def create(path):
    """A new file at path for writing, never through a symlink planted there."""
    if os.path.lexists(path):
        os.unlink(path)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644), "wb")


def run_script(np, job, job_dir, result):
    """Run the job's script; result["script"] gets its facts (also when it fails); returns the outputs it saved
    ({output name: array}, a sample axis first as every job's outputs).

    The child runs `PYTHON SCRIPT --model MODEL --tensors INPUTS --save script-outputs.npz ARGS...` in the job
    dir, PYTHON the board's Python as the host names it (the inventory's `python`, found on PATH: on an emulated
    board a wrapper that runs qemu; default: this interpreter), with this process's environment (the board's MNN
    site on PYTHONPATH, QEMU_CPU on an emulated board) but not this agent's own code on its path.
    """
    name, source, args, saves, python = check_script(job["script"], job["output_names"])
    with create(os.path.join(job_dir, name)) as f:
        f.write(source.encode("utf-8"))
    saved = os.path.join(job_dir, OUTPUTS_FILE)
    if os.path.lexists(saved):
        os.unlink(saved)
    argv = python + [name, "--model", resolve(job_dir, job["model"]), "--tensors", resolve(job_dir, job["inputs"]),
                     "--save", OUTPUTS_FILE] + args
    left = seconds_left()
    timeout = max(1, left - DEADLINE_MARGIN_S) if left else None
    started = time.time()

    def facts(code):
        result["script"] = {"name": name, "exit": code, "seconds": time.time() - started,
                            "output": tail(os.path.join(job_dir, LOG_FILE)), "argv": argv[len(python):]}
        return result["script"]

    with create(os.path.join(job_dir, LOG_FILE)) as log:
        try:
            code = subprocess.call(argv, cwd=job_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   timeout=timeout)
        except subprocess.TimeoutExpired:  # the child was killed
            log.flush()
            facts(None)
            raise JobError("script-timeout", "%s did not finish in %d s" % (name, timeout))
    if code != 0:
        how = "was killed by signal %d" % -code if code < 0 else "exited %d" % code
        last = "\n".join(facts(code)["output"].strip().splitlines()[-8:])
        raise JobError("script-failed", "%s %s:\n%s" % (name, how, last))
    facts(code)
    try:
        with open_regular(saved) as f, np.load(f, allow_pickle=False) as data:
            outputs = dict((key, np.array(data[key])) for key in data.files)
    except (OSError, ValueError) as error:
        raise JobError("script-failed", "%s wrote no readable %s: %s" % (name, OUTPUTS_FILE, error))
    missing = [saved_name for saved_name in saves if saved_name not in outputs]
    if missing:
        raise JobError("missing-output", "%s saved no output named %s" % (name, ", ".join(repr(m) for m in missing)))
    return dict((output, outputs[saved_name][np.newaxis]) for output, saved_name in zip(job["output_names"], saves))
