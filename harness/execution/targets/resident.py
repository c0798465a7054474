"""A resident agent seen from the host: one agent process that runs job after job (`mnn_agent.py --serve`).

The host starts it once per board session and keeps it: numpy and MNN stay
imported and loaded models stay cached between jobs. Requests and replies
travel as frames (agent_protocol) over an AgentLink: the SSH channel of a
board, or the pipes of a subprocess on this machine. Closing the link is the
kill switch on both: a board's watchdog kills the agent's process group when
the channel closes, the local link kills its process group.

What can happen to a job, as the host sees it:
- a reply: the job ran, its files are in the job dir;
- the agent's process ended first (an MNN crash, the out-of-memory killer, a
  `kill -9`): AgentDied, that job fails with the exit status in words, and
  the next job gets a fresh agent;
- run_timeout passed: AgentTimedOut, the link is closed (the agent dies), the
  next job gets a fresh agent;
- the agent closed its replies but runs on (a hang after closing them, a bug):
  AgentClosedReplies, seen at once from the end of its output, handled as a
  death (the link is closed, the job fails, the next job gets a fresh agent);
- the agent never said hello, or not in this protocol: AgentCannotServe, the
  session runs its jobs one-shot (`mnn_agent.py JOB_DIR`) instead.
"""

import logging
import signal
import time
from abc import ABC, abstractmethod
from typing import Callable, Optional

from ...core.results import TargetResult

from ...core.errors import BoardError, BoardResultError
from ..agent_protocol import FrameReader, Hello, ProtocolError, Reply, encode, read_hello, read_reply

log = logging.getLogger(__name__)
"""The agent's conversation, for `-v`/`--debug` (record/debug_log.py): the hello, each request and reply."""

POLL_S = 0.05
"""How often a wait checks the interruption, the heartbeat and the agent's process."""
ENDED_GRACE_S = 2.0
"""After the end of the agent's replies, how long its exit status may take to follow (an agent that ends closes
its replies first); past that, the agent closed them and runs on."""
HELLO_BYTES_MAX = 64 << 10
"""What may arrive before the hello: a program that is not our agent says something else at once."""


class AgentCannotServe(Exception):
    """The agent did not become a resident agent (no hello, another protocol): run jobs one-shot instead."""


class AgentDied(Exception):
    """The agent's process ended before it answered: status is what its shell or Popen reported."""

    def __init__(self, status: Optional[int], reason: str):
        super().__init__(reason)
        self.status = status


class AgentTimedOut(Exception):
    """The job ran past run_timeout; the caller closes the link, which ends the agent."""


class AgentClosedReplies(Exception):
    """The agent closed its reply channel but still runs: no reply can come; the caller closes the link."""


class AgentDiedError(BoardResultError):
    """The job's agent died before it wrote a result: the job failed, for the reason given."""


def describe_status(status: Optional[int]) -> str:
    """An exit status in words: 137 from a shell is SIGKILL (the out-of-memory killer, or someone)."""
    if status is None:
        return "its connection closed"
    number = -status if status < 0 else status - 128 if status > 128 else None
    if number:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        why = {"SIGKILL": " (the out-of-memory killer, or a kill -9)", "SIGSEGV": " (a crash in native code)",
               "SIGABRT": " (an abort in native code)", "SIGALRM": " (its own deadline_s)"}.get(name, "")
        return f"killed by {name}{why}"
    return f"exited with status {status}"


class AgentLink(ABC):
    """The bytes between the host and one agent process."""

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Send all of data (a request frame)."""

    @abstractmethod
    def receive(self, wait: float) -> bytes:
        """What arrived, waiting up to `wait` seconds for something; b"" if nothing did."""

    @abstractmethod
    def exit_status(self) -> Optional[int]:
        """None while the agent runs; its exit status once it ended."""

    @abstractmethod
    def replies_ended(self) -> bool:
        """Whether the agent's replies reached their end (EOF): it closed them, or it is ending."""

    @abstractmethod
    def close(self) -> None:
        """End the agent (the kill switch). Idempotent, safe from another thread."""


class ResidentAgent:
    """The host's handle on one resident agent: its hello, then one request at a time."""

    def __init__(self, link: AgentLink, name: str):
        self.link = link
        self.name = name
        self.reader = FrameReader()
        self.hello: Optional[Hello] = None
        self.seq = 0
        self.jobs = 0
        self.received = 0
        """Bytes of reply frames, for the report's "fetched"."""
        self.last: Optional[Reply] = None

    @property
    def pid(self) -> Optional[int]:
        return self.hello.pid if self.hello else None

    def alive(self) -> bool:
        return self.link.exit_status() is None

    def handshake(self, timeout: float, check: Callable[[], None]) -> Hello:
        """Wait for the hello; AgentCannotServe when none comes (or something else does)."""
        deadline = time.monotonic() + timeout
        try:
            message = self._next(deadline, check, limit=HELLO_BYTES_MAX)
            log.info("%s: agent says hello: %s", self.name, message)
            self.hello = read_hello(message)
        except ProtocolError as error:
            log.info("%s: the agent's hello broke the protocol: %s", self.name, error)
            raise AgentCannotServe(str(error)) from None
        except AgentDied as died:
            raise AgentCannotServe(f"it ended before it was ready ({describe_status(died.status)})") from None
        except AgentTimedOut:
            raise AgentCannotServe(f"it said nothing within {timeout:g} s") from None
        except AgentClosedReplies:
            raise AgentCannotServe("it closed its replies before it was ready") from None
        return self.hello

    def call(self, request: dict, timeout: float, check: Callable[[], None]) -> Reply:
        """Send a run request and wait for its reply (AgentDied, AgentTimedOut, or whatever check raises)."""
        self.seq += 1
        request = {**request, "seq": self.seq}
        data = encode(request)
        log.debug("%s: request to the agent (%d bytes): %s", self.name, len(data), request)
        self.link.send(data)
        self.jobs += 1
        message = self._next(time.monotonic() + timeout, check)
        log.debug("%s: the agent's reply: %s", self.name, message)
        reply = read_reply(message)
        if reply.seq is not None and reply.seq != self.seq:
            raise ProtocolError(f"the agent answered request {reply.seq}, not {self.seq}")
        self.last = reply
        return reply

    def sent_bytes(self, request: dict) -> int:
        return len(encode({**request, "seq": self.seq + 1}))

    def _next(self, deadline: float, check: Callable[[], None], limit: Optional[int] = None) -> dict:
        """The next frame; the link's data first, so a reply that came just before the agent ended counts."""
        received = 0
        while True:
            frame = self.reader.take()
            if frame is not None:
                return frame
            check()
            status = self.link.exit_status()
            data = self.link.receive(POLL_S)
            if data:
                received += len(data)
                self.received += len(data)
                if limit is not None and received > limit:
                    raise ProtocolError(f"it sent {received} bytes that are not a frame of this protocol")
                self.reader.feed(data)
                continue
            if status is not None:
                raise AgentDied(status, describe_status(status))
            if self.link.replies_ended():
                ended = time.monotonic()
                while time.monotonic() - ended < ENDED_GRACE_S:
                    check()
                    status = self.link.exit_status()
                    if status is not None:
                        raise AgentDied(status, describe_status(status))
                    time.sleep(POLL_S)
                raise AgentClosedReplies()
            if time.monotonic() > deadline:
                raise AgentTimedOut()

    def close(self) -> None:
        self.link.close()


def run_on(session, agent: ResidentAgent, request: dict, run_timeout: float, check: Callable[[], None],
           after_death: Callable[[], None] = lambda: None) -> Reply:
    """One job on a session's resident agent, and what can go wrong in the words every board session uses.

    session is the board session (local or SSH): its name, its end_agent(), and its died (the note its next
    job carries). Whatever goes wrong ends the agent, so the session's next job starts a fresh one;
    after_death runs when the agent died on its own (the SSH session fetches the end of its log then).
    """
    try:
        reply = agent.call(request, run_timeout, check)
    except AgentTimedOut:
        session.end_agent()
        raise BoardError(f"{session.name}: the agent ran longer than run_timeout={run_timeout:g} s "
                         "and was stopped") from None
    except AgentClosedReplies:
        session.died = f"its agent (pid {agent.pid}) closed its replies during the previous job and was stopped"
        session.end_agent()
        after_death()
        raise AgentDiedError(f"{session.name}: the agent (pid {agent.pid}) closed its reply channel during this "
                             "job but kept running, so no result could come: it was stopped; the next job starts "
                             "a fresh agent") from None
    except AgentDied as died:
        session.died = f"its agent (pid {agent.pid}) died during the previous job, {died}"
        session.end_agent()
        after_death()
        raise AgentDiedError(f"{session.name}: the agent (pid {agent.pid}) died during this job, {died}; the "
                             "next job starts a fresh agent") from None
    except ProtocolError as error:
        session.end_agent()
        raise BoardResultError(f"{session.name}: the agent broke its protocol: {error}") from None
    except BaseException:
        session.end_agent()
        raise
    if not reply.done:
        raise BoardResultError(f"{session.name}: the agent refused the job: {reply.error}")
    return reply


def session_agent(session, result: TargetResult, start: Callable[[], ResidentAgent],
                  handshake: Callable[[ResidentAgent], Hello],
                  cannot_serve: Callable[[ResidentAgent, AgentCannotServe], None] = lambda agent, error: None
                  ) -> Optional[ResidentAgent]:
    """The agent a board session's next job runs on: the one it has while it lives, else a fresh one (the job's
    notes say what became of the last), or None when the session runs its jobs one-shot.

    session is the board session (local or SSH): its agent, died, one_shot and end_agent(). start() starts an
    agent; handshake() waits for its hello (and records what the session keeps of it). An agent that cannot
    serve (no hello, another protocol) makes the session run its jobs one-shot from then on, unless
    cannot_serve() finds a clearer error in why (and raises it).
    """
    if session.one_shot is not None:
        return None
    if session.agent is not None and session.agent.alive():
        return session.agent
    if session.agent is not None:
        session.died = session.died or f"its agent (pid {session.agent.pid}) ended between jobs"
        session.end_agent()
    agent = start()
    try:
        hello = handshake(agent)
    except AgentCannotServe as error:
        try:
            cannot_serve(agent, error)
        finally:
            agent.close()
        session.one_shot = f"its agent could not serve jobs ({error})"
        result.notes.append(f"{session.one_shot}: ran it once per job instead")
        return None
    except BaseException:
        agent.close()
        raise
    if session.died:
        result.notes.append(f"{session.died}; this job ran on a fresh agent (pid {hello.pid})")
        session.died = None
    session.agent = agent
    return agent
