"""The resident mode's frames: MAGIC, the body's length (4 bytes, big endian), a JSON object in UTF-8.

The messages are documented in agent/mnn_agent.py; harness/agent_protocol.py is
the host's side, and a test pins the two to the same PROTOCOL, MAGIC and FRAME_MAX.
"""

import json
import os
import struct

PROTOCOL = 1
"""The resident mode's protocol (its messages: agent/mnn_agent.py); the host refuses an agent that speaks another."""
MAGIC = b"MNNA"
FRAME_MAX = 16 << 20


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
