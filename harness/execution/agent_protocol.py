"""The host's side of the resident agent's protocol: frames, the hello, requests and replies, as data.

The agent (agent/mnn_agent.py, `--serve`) documents the protocol; this module
speaks it and checks what comes back, nothing more: no I/O, so the local and
the SSH agent links share it. A frame is MAGIC, the body's length (4 bytes,
big endian) and the body, a JSON object. Anything else on the agent's reply
stream (a board whose `python` is not our agent, junk, a flood) is a
ProtocolError after at most one header: it is never buffered without bound.
"""

import json
import struct
from dataclasses import dataclass
from typing import List, Optional

from ..core.errors import HarnessError

PROTOCOL = 1
"""The version this host speaks; an agent saying another in its hello is not used (one-shot instead)."""
MAGIC = b"MNNA"
FRAME_MAX = 16 << 20
"""The largest body either side sends: a job.json with a layer dump's op lists fits many times."""
REPLY_MAX = 1 << 20
"""The largest reply the host accepts: replies are a few hundred bytes."""
_HEADER = struct.Struct(">4sI")


class ProtocolError(HarnessError):
    """The agent's reply stream broke the protocol: not a frame, too long, not a JSON object."""

    exit_code = 3


def encode(message: dict) -> bytes:
    body = json.dumps(message, sort_keys=True).encode("utf-8")
    if len(body) > FRAME_MAX:
        raise ProtocolError(f"a request of {len(body)} bytes is more than the protocol's {FRAME_MAX}")
    return _HEADER.pack(MAGIC, len(body)) + body


class FrameReader:
    """Bytes in, whole messages out: feed() what arrived, then take() each complete frame."""

    def __init__(self, limit: int = REPLY_MAX):
        self.buffer = bytearray()
        self.limit = limit
        self.frames: List[dict] = []

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _HEADER.size:
            magic, length = _HEADER.unpack_from(self.buffer)
            if magic != MAGIC:
                raise ProtocolError(f"the agent sent {bytes(self.buffer[:16])!r}..., not a frame of protocol "
                                    f"{PROTOCOL}")
            if length > self.limit:
                raise ProtocolError(f"the agent announced a frame of {length} bytes (at most {self.limit})")
            if len(self.buffer) < _HEADER.size + length:
                return
            body = bytes(self.buffer[_HEADER.size:_HEADER.size + length])
            del self.buffer[:_HEADER.size + length]
            try:
                message = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                raise ProtocolError(f"a frame from the agent is not JSON: {error}") from None
            if not isinstance(message, dict):
                raise ProtocolError("a frame from the agent is not a JSON object")
            self.frames.append(message)

    def take(self) -> Optional[dict]:
        return self.frames.pop(0) if self.frames else None


@dataclass(frozen=True)
class Hello:
    """What a resident agent says once it is ready."""

    protocol: int
    pid: int
    pgid: int
    python: str = ""
    machine: str = ""


def read_hello(message: dict) -> Hello:
    """The hello, checked: the right type and protocol, integer pids."""
    if message.get("type") != "hello":
        raise ProtocolError(f"the agent's first frame is {message.get('type')!r}, not a hello")
    if message.get("protocol") != PROTOCOL:
        raise ProtocolError(f"the agent speaks protocol {message.get('protocol')!r}, this host {PROTOCOL}")
    pid, pgid = message.get("pid"), message.get("pgid")
    if not all(isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in (pid, pgid)):
        raise ProtocolError("the agent's hello has no usable pid and process group")
    return Hello(PROTOCOL, pid, pgid, str(message.get("python") or ""), str(message.get("machine") or ""))


def run_request(seq: int, job_dir: str, job: Optional[dict] = None, remove: Optional[List[str]] = None) -> dict:
    """Run the job in job_dir; with job, the agent makes job_dir (a child of its session dir) and writes it."""
    request = {"op": "run", "seq": seq, "dir": job_dir}
    if job is not None:
        request["job"] = job
    if remove:
        request["remove"] = list(remove)
    return request


@dataclass(frozen=True)
class Reply:
    """The agent's answer to a run request."""

    seq: Optional[int]
    done: bool
    """True: the job ran (its files tell how); False: the request was refused (error says why)."""
    status: str = ""
    error: str = ""
    wall_s: float = 0.0
    rss_mb: Optional[float] = None
    cache: Optional[dict] = None


def read_reply(message: dict) -> Reply:
    kind = message.get("type")
    seq = message.get("seq") if isinstance(message.get("seq"), int) else None
    if kind == "error":
        return Reply(seq, False, error=str(message.get("error") or "the agent refused the request")[:2000])
    if kind != "done":
        raise ProtocolError(f"the agent answered a {kind!r} frame to a run request")
    number = (lambda value: float(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
              else None)
    return Reply(seq, True, status=str(message.get("status") or ""), wall_s=number(message.get("wall_s")) or 0.0,
                 rss_mb=number(message.get("rss_mb")),
                 cache=message.get("cache") if isinstance(message.get("cache"), dict) else None)
