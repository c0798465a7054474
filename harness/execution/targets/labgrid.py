"""A board of a labgrid lab: its place is reserved and acquired on the coordinator for the run, then released.

Labs where many people and tools (flashing, power switching, consoles) share
boards coordinate through a labgrid coordinator: places, acquire/release, and
reservations that queue users fairly. A `kind: labgrid` board is one place
(`place: NAME`) or any free place carrying some tags (`match: {k: v}`). The
run reserves it, waits its turn (saying who holds it, since when), acquires
it, reads address, user and port from the place's NetworkService resource,
runs exactly as over SSH (SshTarget, with its on-board lock as a second
guard), and gives the place back.

What the code relies on, measured with labgrid 26.0.1 (the coordinator is
reached in-process, see core/clients/labgrid_client.py):
- A waiting or allocated reservation expires 60 s after its last poll: it is
  polled every POLL_S while waiting. An acquired one does not expire.
- Hand-over: cancel the reservation first, then release; the next waiter then
  gets the place in ~1.4 s instead of the scheduler's 5-15 s.
- Acquisitions never expire: a run that dies without releasing keeps the
  place until someone kicks it. So the place is released in `finally`, and on
  Ctrl-C or SIGTERM the runner calls `release_held_places()` from the main
  thread at once, without waiting for the boards' threads to end.
"""

import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from ...core.endpoint import SshEndpoint
from ...core.errors import BoardError
from ...config.inventory import BoardSpec
from ...core.job import Job
from ...core.clients.labgrid_client import Coordinator
from ...core.results import TargetResult
from .base import StageCallback
from .lock import LOCK_TIMEOUT_S
from .ssh import SshTarget

POLL_S = 1.0
"""How often a waiting reservation is polled (it expires 60 s after the last poll) and the wait is shown."""


class PlaceBusy(BoardError):
    """The place (or every place matching) stayed held by others for the whole --lock-timeout."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status
        """Who holds it, short, for a table."""


# -- holding a place for a run -----------------------------------------------------------------------


@dataclass
class HeldPlace:
    """A place this process reserved and acquired; released by whoever comes first: the run or Ctrl-C."""

    coordinator: Coordinator
    board: str
    token: Optional[str] = None
    name: Optional[str] = None
    """The place, once allocated."""
    acquired: bool = False
    service: dict = field(default_factory=dict)
    """The place's NetworkService parameters: address, username, port."""
    waited_for: Optional[str] = None
    """Who held the place while this run waited for it, if it waited."""
    waited_s: float = 0.0
    problems: List[str] = field(default_factory=list)
    """What went wrong while giving the place back (the run still has its result)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def endpoint(self, board: BoardSpec) -> SshEndpoint:
        """How to reach the board: address, user and port from the place, login as for an ssh board."""
        return SshEndpoint(host=str(self.service["address"]), port=int(self.service.get("port") or 22),
                           user=self.service.get("username") or None,
                           key_filename=str(Path(board.key).expanduser()) if board.key else None,
                           known_hosts=board.known_hosts, trust_on_first_use=board.trust_on_first_use,
                           python=board.python, workdir=board.workdir.replace("{place}", str(self.name)),
                           jump=board.jump)

    def let_go(self) -> None:
        """Cancel the reservation, then release the place (that order hands it over fastest). Idempotent."""
        with self.lock:
            token, self.token = self.token, None
            place, acquired, self.acquired = self.name, self.acquired, False
        if token:
            try:
                self.coordinator.cancel(token)
            except BoardError as error:
                if "does not exist" not in str(error):
                    self.problems.append(str(error))
        if place and acquired:
            try:
                self.coordinator.release(place)
            except BoardError as error:
                self.problems.append(f"{error}; the place may still be held by {self.coordinator.me}: release it "
                                     f"with `labgrid-client -x {self.coordinator.address} -p {place} release`")


_held: List[HeldPlace] = []
_held_lock = threading.Lock()
_stopping = threading.Event()


def release_held_places() -> List[str]:
    """Give back every place this process holds or waits for, now; later reservations are refused.

    Called from the main thread on Ctrl-C or SIGTERM, while the boards'
    threads may still be busy: the lab gets its places back at once.
    Returns the places released.
    """
    _stopping.set()
    with _held_lock:
        held = list(_held)
    released = []
    for place in held:
        name, was_acquired = place.name, place.acquired
        place.let_go()
        if name and was_acquired:
            released.append(name)
    return released


def _filters(board: BoardSpec) -> Dict[str, str]:
    # The coordinator's scheduler gives every place a `name` tag: a named place is a filter like any other.
    return {"name": board.place} if board.place else dict(board.match)


def _describe_filters(board: BoardSpec) -> str:
    return f"place {board.place}" if board.place else "places with " + " ".join(f"{k}={v}" for k, v in board.match)


def _who_blocks(coordinator: Coordinator, board: BoardSpec, token: str) -> Tuple[str, str]:
    """The holders of the places our reservation (token) waits for: in words, and short for a table."""
    wanted = _filters(board)
    now = time.time()
    words, short = [], []
    for place in sorted(coordinator.places().values(), key=lambda p: p.name):
        ours = place.reservation == token and not place.acquired  # allocated to us since the last poll
        holder = place.holder(coordinator.me, now) if place.carries(wanted) and not ours else None
        if holder:
            words.append(holder if board.place else f"{place.name} {holder}")
            short.append(place.status() if board.place else f"{place.name}: {place.status()}")
    if not words:
        return "other reservations were queued first", "queued"
    return "; ".join(words), "; ".join(short)


@contextmanager
def hold_place(board: BoardSpec, timeout: float,
               on_wait: Callable[[str], None] = lambda message: None) -> Iterator[HeldPlace]:
    """Reserve and acquire the board's place (waiting up to timeout), yield it, and always give it back."""
    coordinator = Coordinator.connect(board.coordinator, board.connect_timeout)
    wanted = _filters(board)
    candidates = [p for p in coordinator.places().values() if p.carries(wanted)]
    if not candidates:
        raise BoardError(f"{board.name}: the labgrid coordinator {board.coordinator} has no "
                         f"{_describe_filters(board)} (`labgrid-client -x {board.coordinator} places`)")
    held = HeldPlace(coordinator, board.name)
    with _held_lock:
        if _stopping.is_set():
            raise BoardError(f"{board.name}: interrupted before its labgrid place was reserved")
        _held.append(held)
    try:
        _wait_and_acquire(held, coordinator, board, wanted, timeout, on_wait)
        yield held
    finally:
        held.let_go()
        with _held_lock:
            _held.remove(held)


def _wait_and_acquire(held: HeldPlace, coordinator: Coordinator, board: BoardSpec, wanted: Dict[str, str],
                      timeout: float, on_wait: Callable[[str], None]) -> None:
    started = time.monotonic()
    deadline = started + timeout
    token = coordinator.reserve(wanted)
    with held.lock:
        held.token = token
    while True:
        if _stopping.is_set():
            raise BoardError(f"{board.name}: interrupted while waiting for {_describe_filters(board)}")
        state, place = coordinator.poll(token)
        if state in ("allocated", "acquired") and place:
            break
        if state in ("expired", "invalid"):
            raise BoardError(f"{board.name}: the reservation for {_describe_filters(board)} on "
                             f"{board.coordinator} became {state}")
        blockers, status = _who_blocks(coordinator, board, token)
        held.waited_for = blockers
        if time.monotonic() >= deadline:
            raise PlaceBusy(f"{board.name}: labgrid {_describe_filters(board)} on {board.coordinator}: "
                            f"{blockers}; waited {timeout:g} s (--lock-timeout). Wait for it or ask the holder; if "
                            f"the holder is gone: `labgrid-client -x {board.coordinator} -p "
                            f"{board.place or 'PLACE'} release --kick`", status)
        on_wait(f"waiting: {status}")
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    held.waited_s = time.monotonic() - started
    with held.lock:
        held.name = place
    if _stopping.is_set():
        raise BoardError(f"{board.name}: interrupted before acquiring place {place}")
    coordinator.acquire(place)
    with held.lock:
        held.acquired = True
    held.service = coordinator.network_service(place)


# -- the target ------------------------------------------------------------------------------------


class LabgridTarget(SshTarget):
    """An SSH board whose address comes from a labgrid place held for the length of the session."""

    def __init__(self, board: BoardSpec, lock_timeout: float = LOCK_TIMEOUT_S):
        super().__init__(board, lock_timeout)
        self.held: Optional[HeldPlace] = None
        self.place: Optional[ExitStack] = None

    def endpoint(self) -> SshEndpoint:
        if self.held is None:
            raise BoardError(f"{self.name}: no labgrid place is held")  # a programming error, said plainly
        return self.held.endpoint(self.board)

    def ssh_port(self, endpoint: SshEndpoint) -> Optional[int]:
        return endpoint.port  # the NetworkService says it (22 when it does not)

    def interrupt(self) -> None:
        """Ctrl-C, SIGTERM: the board stops as an SSH board does, and the lab gets its places back at once
        (a reservation still waiting is cancelled; later ones are refused)."""
        super().interrupt()
        release_held_places()

    def open_session(self, job: Job, on_stage: StageCallback, result: TargetResult):
        """Reserve and acquire the place (waiting in the lab's queue), then open the board as over SSH; the
        place stays ours until close()."""
        self.enter("reserve", on_stage)
        started = time.perf_counter()
        place = ExitStack()
        try:
            held = place.enter_context(hold_place(self.board, self.lock_timeout, on_wait=on_stage))
        except BoardError as error:
            place.close()
            if not self.interrupted.is_set():
                self.broken = str(error)
            raise
        except BaseException:
            place.close()
            raise
        self.held, self.place = held, place
        result.timings["reserve"] = time.perf_counter() - started
        if held.waited_for:
            result.notes.append(f"waited {held.waited_s:.0f} s for labgrid place {held.name} ({held.waited_for})")
        if self.board.match:
            result.notes.append(f"ran on labgrid place {held.name}")
        return super().open_session(job, on_stage, result)

    def close(self) -> None:
        try:
            super().close()  # the next holder of the place must not meet our session
        finally:
            held, place = self.held, self.place
            self.held, self.place = None, None
            if place is not None:
                place.close()
                self.closing_notes += [f"giving the labgrid place back: {problem}" for problem in held.problems]

    def probe_impl(self, health: dict) -> None:
        """Probe the board if its place is free (held for the probe only); else say who holds it."""
        health["address"] = f"labgrid {self.board.coordinator}"
        try:
            with hold_place(self.board, 0.0) as held:
                self.held = held
                try:
                    super().probe_impl(health)
                finally:
                    self.close()
                    self.held = None
                place = "" if self.board.place else f"{held.name}: "
                health["lock"] = place + (f"free; on the board: {health['lock']}" if health.get("lock") else "free")
                health["address"] = f"{health.get('address')} (place {held.name})"
        except PlaceBusy as busy:
            health["lock"] = busy.status
            health["held"] = True


# -- choosing places by tags -----------------------------------------------------------------------


def boards_for_tags(boards: List[BoardSpec], tags: List[str], taken: List[str]) -> List[BoardSpec]:
    """The labgrid boards a scenario's `tags:` select, a pool (`match:`) giving one board per matching place.

    A tag selects a board when the inventory tags it so, or, written `key=value`,
    when its place carries that tag on the coordinator. Places already named
    (`taken`, or by another board) are not taken twice. Runs on N places go in
    parallel like any other boards.
    """
    plain = [tag for tag in tags if "=" not in tag]
    pairs = dict(tag.split("=", 1) for tag in tags if "=" in tag)
    chosen: List[BoardSpec] = []
    seen = set()  # (coordinator, place)
    for board in boards:
        if board.place:
            seen.add((board.coordinator, board.place))
    for board in boards:
        if board.kind != "labgrid" or not set(plain) <= set(board.tags):
            continue
        if board.place:
            if board.name in taken:
                continue
            if pairs and not _place_matches(board, board.place, pairs):
                continue
            chosen.append(board)
            continue
        wanted = {**dict(board.match), **pairs}
        if any(dict(board.match).get(key, value) != value for key, value in pairs.items()):
            continue  # the scenario asks for another value of a tag the pool fixes
        coordinator = Coordinator.connect(board.coordinator, board.connect_timeout)
        names = {b.name for b in boards}
        for place in sorted(coordinator.places().values(), key=lambda p: p.name):
            if not place.carries(wanted) or (board.coordinator, place.name) in seen:
                continue
            seen.add((board.coordinator, place.name))
            name = place.name if place.name not in names else f"{board.name}-{place.name}"
            if name not in taken:
                chosen.append(replace(board, name=name, place=place.name, match=()))
    return chosen


def _place_matches(board: BoardSpec, place: str, pairs: Dict[str, str]) -> bool:
    inventory_tags = set(board.tags)
    state = Coordinator.connect(board.coordinator, board.connect_timeout).places().get(place)
    tags = state.tags if state else {}
    return all(f"{key}={value}" in inventory_tags or tags.get(key) == value for key, value in pairs.items())
