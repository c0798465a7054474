"""Resident mode: many job dirs, one process, each run exactly as one-shot mode runs it.

Replies go on a duplicate of the original stdout taken before descriptors 1
and 2 are pointed at SESSION_DIR/serve.log (during a job: at the job's
agent.log), so nothing MNN prints can reach the replies. End of stdin ends
the agent; a job past its deadline_s ends it too (SIGALRM).
"""

import json
import os
import platform
import re
import signal
import sys
import time

from .cache import CACHE_MB, CACHE_MODELS, ModelCache
from .contract import JobError
from .files import write_atomically
from .job import run_and_write
from .machine import current_rss_mb, peak_rss_mb
from .native import flush_c_stdio
from .protocol import PROTOCOL, ProtocolError, read_frame, write_frame

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
        flush_c_stdio()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        flush_c_stdio()
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
