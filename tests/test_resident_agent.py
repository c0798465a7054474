"""The resident agent's protocol, pinned against the real agent (x86 MNN): the host's side and the agent's agree.

`mnn_agent.py --serve` runs job directories one after another in one process;
each must end exactly as the one-shot agent ends it (the same files, the same
numbers), its replies must be the only bytes on its stdout, and the end of its
input must end it.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.execution import agent_protocol
from harness.execution.agent_protocol import FrameReader, encode, read_hello, read_reply, run_request

from .test_agent import AGENT, make_job, run_agent, tiny_model  # noqa: F401  (the fixture, shared)


class Served:
    """A real resident agent on this machine, read frame by frame; every byte of its stdout must be a frame."""

    def __init__(self, session: Path, *options: str):
        self.process = subprocess.Popen([sys.executable, str(AGENT), "--serve", *options, str(session)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reader = FrameReader()

    def send(self, message: dict) -> None:
        self.process.stdin.write(encode(message))
        self.process.stdin.flush()

    def receive(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.reader.take()
            if frame is not None:
                return frame
            assert time.monotonic() < deadline, "no frame from the agent"
            data = os.read(self.process.stdout.fileno(), 65536)
            assert data, f"the agent ended: {self.process.wait()} {self.process.stderr.read()!r}"
            self.reader.feed(data)  # raises ProtocolError on any byte that is not a frame

    def close(self) -> int:
        self.process.stdin.close()
        return self.process.wait(timeout=30)


def job_dict(directory: Path, mnn_path: Path, settings: dict) -> dict:
    x = np.random.default_rng(0).normal(size=(2, 1, 3, 32, 32)).astype(np.float32)
    np.savez(directory / "inputs.npz", pixel_values=x)
    return {"schema": 2, "id": "j", "model": str(mnn_path), "inputs": str(directory / "inputs.npz"),
            "inputs_sha256": hashlib.sha256((directory / "inputs.npz").read_bytes()).hexdigest(),
            "model_sha256": hashlib.sha256(mnn_path.read_bytes()).hexdigest(),
            "input_names": ["pixel_values"], "output_names": ["logits"], "layout": "NCHW",
            "settings": {"precision": "normal", "threads": 1, "api": "session", "io": "copy", **settings},
            "iterations": 2}


def test_the_agent_speaks_the_hosts_protocol_version():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mnn_agent_as_shipped", AGENT)
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    assert (agent.PROTOCOL, agent.MAGIC, agent.FRAME_MAX) == (agent_protocol.PROTOCOL, agent_protocol.MAGIC,
                                                              agent_protocol.FRAME_MAX)


@pytest.mark.parametrize("api", ["session", "module"])
def test_a_served_job_writes_what_the_one_shot_agent_writes(tmp_path, tiny_model, api):
    _, mnn_path = tiny_model
    one_shot = tmp_path / "one-shot"
    one_shot.mkdir()
    (one_shot / "job.json").write_text(json.dumps(job_dict(one_shot, mnn_path, {"api": api})))
    completed, expected = run_agent(one_shot)
    assert completed.returncode == 0, expected

    session = tmp_path / "session"
    session.mkdir()
    served = Served(session)
    try:
        hello = read_hello(served.receive())
        assert hello.protocol == agent_protocol.PROTOCOL and hello.pid == served.process.pid
        assert (session / "agent.pid").read_text().strip() == str(hello.pid)
        replies, results = [], []
        for number in range(3):  # the same settings again: the second and third find the model loaded
            job = job_dict(session, mnn_path, {"api": api})
            served.send(run_request(number + 1, str(session / f"job{number}"), job,
                                    remove=[f"job{number - 1}"] if number else None))
            replies.append(read_reply(served.receive()))
            results.append(json.loads((session / f"job{number}" / "result.json").read_text()))
            assert not (session / f"job{number - 1}").exists() or number == 0  # removed with the next request
        assert served.close() == 0  # the end of its input ends it
    finally:
        if served.process.poll() is None:
            served.process.kill()
    assert [reply.seq for reply in replies] == [1, 2, 3] and all(reply.done and reply.status == "ok"
                                                                 for reply in replies)
    assert [result["agent"]["cached"] for result in results] == [False, True, True]
    assert {result["agent"]["pid"] for result in results} == {hello.pid}
    assert [result["agent"]["jobs"] for result in results] == [1, 2, 3]
    assert replies[-1].cache["hits"] == 2 and replies[-1].cache["misses"] == 1
    last = session / "job2"
    assert sorted(path.name for path in last.iterdir()) == ["agent.log", "job.json", "outputs.npz", "result.json"]
    assert not list(last.glob("*.tmp")) and not list(last.glob(".*"))
    for result in results:
        # Every fact of the one-shot result, with the same values where they do not measure time or memory.
        assert set(result) == set(expected)
        for key in ("status", "api", "backend", "inputs", "outputs", "settings", "mnn_version", "mnn_banner",
                    "cpu_features", "machine"):
            assert result[key] == expected[key], key
    with np.load(one_shot / "outputs.npz") as alone, np.load(last / "outputs.npz") as resident:
        assert np.array_equal(alone["logits"], resident["logits"])
    assert results[-1]["outputs_sha256"] == hashlib.sha256((last / "outputs.npz").read_bytes()).hexdigest()
    assert expected["agent"] == {"mode": "one-shot", "pid": expected["agent"]["pid"], "jobs": 1, "cached": False,
                                 "rss_mb": None, "cache": None}
    assert results[-1]["agent"]["cache"] == replies[-1].cache and results[-1]["agent"]["rss_mb"] > 10


def test_bad_requests_are_refused_and_the_agent_goes_on(tmp_path, tiny_model):
    _, mnn_path = tiny_model
    session = tmp_path / "session"
    session.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    served = Served(session, "--cache-models", "1")
    try:
        read_hello(served.receive())
        job = job_dict(session, mnn_path, {})
        served.send(run_request(1, str(outside / "escape"), job))          # a new dir outside the session
        refused = read_reply(served.receive())
        served.send(run_request(2, str(session / "x"), job, remove=["../outside"]))
        escaped = read_reply(served.receive())
        served.send({"op": "reboot", "seq": 3})
        unknown = read_reply(served.receive())
        served.send(run_request(4, str(session / "ok"), job))
        ok = read_reply(served.receive())
        served.send(run_request(5, str(session / "ok"), job))               # the dir exists already
        again = read_reply(served.receive())
        served.process.stdin.write(b"GET / HTTP/1.1\r\n\r\n")               # not a frame: it stops reading
        served.process.stdin.flush()
        broken = served.receive()
        assert served.process.wait(timeout=30) == 2
    finally:
        if served.process.poll() is None:
            served.process.kill()
    assert not refused.done and "child of the session dir" in refused.error and not (outside / "escape").exists()
    assert not escaped.done and outside.is_dir()
    assert not unknown.done and "unknown op" in unknown.error
    assert ok.done and ok.status == "ok"
    assert not again.done and "exists" in again.error
    assert broken["type"] == "error" and "protocol" in broken["error"]


def test_the_cache_is_bounded_by_count_and_by_memory(tmp_path, tiny_model):
    _, mnn_path = tiny_model
    session = tmp_path / "session"
    session.mkdir()
    served = Served(session, "--cache-models", "2")
    try:
        read_hello(served.receive())
        for number, (precision, threads) in enumerate([("normal", 1), ("low", 1), ("high", 1), ("normal", 2),
                                                       ("normal", 1)]):
            served.send(run_request(number, str(session / f"j{number}"),
                                    job_dict(session, mnn_path, {"precision": precision, "threads": threads})))
            reply = read_reply(served.receive())
            assert reply.done and reply.cache["entries"] <= 2
        assert reply.cache["evicted"] == 3 and reply.cache["hits"] == 0  # (normal, 1) was evicted meanwhile
        served.close()
    finally:
        if served.process.poll() is None:
            served.process.kill()
    # A memory bound below what the process needs keeps only the model just used.
    tight = tmp_path / "tight"
    tight.mkdir()
    served = Served(tight, "--cache-mb", "1")
    try:
        read_hello(served.receive())
        for number, precision in enumerate(["normal", "low", "high"]):
            served.send(run_request(number, str(tight / f"j{number}"),
                                    job_dict(tight, mnn_path, {"precision": precision})))
            reply = read_reply(served.receive())
            assert reply.done and reply.cache["entries"] == 1 and reply.rss_mb > 1
        assert reply.cache["evicted"] == 2
        served.close()
    finally:
        if served.process.poll() is None:
            served.process.kill()


def test_a_local_agent_that_closes_its_replies_but_runs_on_is_given_up_at_once():
    """The end of a resident agent's replies while its process still runs: no reply can come, so the wait ends
    after a short grace (an agent that ends closes its replies first) instead of at run_timeout."""
    from harness.execution.targets.local import ProcessLink
    from harness.execution.targets.resident import AgentClosedReplies, ResidentAgent
    from .faults.test_interrupts import STUCK_AGENT

    script = STUCK_AGENT.format(magic=agent_protocol.MAGIC, protocol=agent_protocol.PROTOCOL)
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               start_new_session=True)
    agent = ResidentAgent(ProcessLink(process), "x86")
    try:
        agent.handshake(60, lambda: None)
        started = time.monotonic()
        with pytest.raises(AgentClosedReplies):
            agent.call(run_request(0, "/nowhere"), 600, lambda: None)
        assert time.monotonic() - started < 10
        assert process.poll() is None  # it runs on: closing the link is what stops it
    finally:
        agent.close()
    assert process.wait(timeout=10) is not None
