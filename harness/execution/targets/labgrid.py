"""A board of a labgrid lab: its place is reserved and acquired on the coordinator for the run, then released.

Labs where many people and tools (flashing, power switching, consoles) share
boards coordinate through a labgrid coordinator: places, acquire/release, and
reservations that queue users fairly. A `kind: labgrid` board is one place
(`place: NAME`) or any free place carrying some tags (`match: {k: v}`). The
run reserves it, waits its turn (saying who holds it, since when), acquires
it, reads address, user and port from the place's NetworkService resource,
runs exactly as over SSH (SshTarget, with its on-board lock as a second
guard), and gives the place back.

What the code relies on, measured with labgrid 26.0.1:
- The in-process gRPC API, not the CLI: a reserve-acquire-read-cancel-release
  cycle takes ~10 ms against 0.3 s per `labgrid-client` call. The session and
  its asyncio loop live on a thread of their own (one per coordinator in this
  process), so every board thread, and the main thread on Ctrl-C, can call it.
- A waiting or allocated reservation expires 60 s after its last poll: it is
  polled every POLL_S while waiting. An acquired one does not expire.
- Hand-over: cancel the reservation first, then release; the next waiter then
  gets the place in ~1.4 s instead of the scheduler's 5-15 s.
- `AcquirePlace` through the stub skips the CLI's check that the place's
  resources exist: the NetworkService is checked after acquiring.
- Acquisitions never expire: a run that dies without releasing keeps the
  place until someone kicks it. So the place is released in `finally`, and on
  Ctrl-C or SIGTERM the runner calls `release_held_places()` from the main
  thread at once, without waiting for the boards' threads to end.
"""

import logging
import os
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from ...core.endpoint import SshEndpoint
from ...core.errors import BoardError, SetupError
from ...core.inventory import BoardSpec
from ...core.job import Job
from ...core.results import TargetResult
from .base import StageCallback
from .ssh import SshTarget

POLL_S = 1.0
"""How often a waiting reservation is polled (it expires 60 s after the last poll) and the wait is shown."""


class CoordinatorError(BoardError):
    """The labgrid coordinator could not be reached, or refused a request."""


class PlaceBusy(BoardError):
    """The place (or every place matching) stayed held by others for the whole --lock-timeout."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status
        """Who holds it, short, for a table."""


@dataclass(frozen=True)
class PlaceState:
    """One place as the coordinator sees it right now."""

    name: str
    tags: Dict[str, str]
    acquired: Optional[str]
    """"host/user" of the holder, or None."""
    changed: float
    """When the place last changed (for an acquired place: when it was acquired)."""
    reserved_for: Optional[str]
    """"host/user" owning the reservation the place is allocated to, or None."""
    reservation: Optional[str] = None
    """That reservation's token."""

    def carries(self, wanted: Dict[str, str]) -> bool:
        tags = {**self.tags, "name": self.name}
        return all(tags.get(key) == value for key, value in wanted.items())

    def holder(self, me: str, now: Optional[float] = None) -> Optional[str]:
        """Who keeps this place from a run waiting for it, in words ("held by host/alice since 10:04:12 (35 s)").

        me is this process's identity: another run of the same user holds places under the same name.
        """
        if self.acquired:
            who = self.acquired + (" (you, in another run)" if self.acquired == me else "")
            return f"held by {who} since {self.since()} ({(now or time.time()) - self.changed:.0f} s)"
        if self.reserved_for:
            return f"reserved for {self.reserved_for}" + (" (you, in another run)" if self.reserved_for == me else "")
        return None

    def since(self) -> str:
        return datetime.fromtimestamp(self.changed).strftime("%H:%M:%S")

    def status(self) -> str:
        """Short, for a table: "free", "host/alice since 10:04:12", "reserved: host/bob"."""
        if self.acquired:
            return f"{self.acquired} since {self.since()}"
        if self.reserved_for:
            return f"reserved: {self.reserved_for}"
        return "free"


def require_labgrid() -> None:
    """labgrid is an extra of the harness: say how to get it rather than fail on an import."""
    import importlib.util

    if importlib.util.find_spec("labgrid") is None:
        raise SetupError("labgrid is not installed in this Python; `make setup` installs it, or "
                         "`pip install -e '.[labgrid]'` (labgrid 26.0.1, Python >= 3.10)")


def _quiet_labgrid_logging() -> None:
    """labgrid logs with the root logger's functions, which install a stderr handler that would print
    "ERROR:root:coordinator is unavailable" into the terminal report. The harness reports that itself:
    keep Python's last-resort output (warnings of other libraries) and drop labgrid's records."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    labgrid_dir = os.sep + "labgrid" + os.sep
    handler.addFilter(lambda record: labgrid_dir not in record.pathname)
    root.addHandler(handler)


class Coordinator:
    """One client session with a labgrid coordinator, its asyncio loop on a thread of its own.

    Shared by every board of this process that names the same address; a
    session that lost its coordinator is replaced by a new one on next use.
    The identity is labgrid's: $LG_HOSTNAME/$LG_USERNAME, else host and login name.
    """

    _shared: Dict[str, "Coordinator"] = {}
    _failed: Dict[str, Tuple[float, BoardError]] = {}
    _shared_lock = threading.Lock()
    REMEMBER_FAILURE_S = 10.0
    """A coordinator that just failed is not asked again by every board of the run (a hung one costs timeout)."""

    @classmethod
    def connect(cls, address: str, timeout: float = 15.0) -> "Coordinator":
        with cls._shared_lock:
            failed = cls._failed.get(address)
            if failed and time.monotonic() - failed[0] < cls.REMEMBER_FAILURE_S:
                raise failed[1]
            coordinator = cls._shared.get(address)
            if coordinator is None or not coordinator.alive:
                if coordinator is not None:
                    coordinator.close()
                try:
                    coordinator = cls._shared[address] = cls(address, timeout)
                except BoardError as error:
                    cls._shared.pop(address, None)
                    cls._failed[address] = (time.monotonic(), error)
                    raise
                cls._failed.pop(address, None)
            return coordinator

    @classmethod
    def forget(cls, address: Optional[str]) -> None:
        """Close this process's session with a coordinator that is about to stop."""
        with cls._shared_lock:
            coordinator = cls._shared.pop(address, None) if address else None
        if coordinator is not None:
            coordinator.close()

    def __init__(self, address: str, timeout: float = 15.0):
        import asyncio

        require_labgrid()
        # Importing labgrid's client replaces sys.excepthook (a workaround of theirs for Python 3.12).
        hook = sys.excepthook
        from labgrid.remote.client import ClientSession
        from labgrid.remote.generated import labgrid_coordinator_pb2
        sys.excepthook = hook
        _quiet_labgrid_logging()

        self.address = address
        self.timeout = timeout
        self.pb = labgrid_coordinator_pb2
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"labgrid {address}", daemon=True)
        self.thread.start()

        async def start():
            # Made inside the loop: the gRPC channel belongs to the loop it is created in.
            session = ClientSession(address, self.loop)
            await session.start()
            return session

        try:
            self.session = self._run(start(), "connect")
        except BaseException:
            self._stop_loop()
            raise

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5.0)
        if not self.thread.is_alive():
            self.loop.close()

    @property
    def alive(self) -> bool:
        return not self.session.stopping.is_set()

    @property
    def me(self) -> str:
        """This process's identity on the coordinator: "host/user"."""
        return f"{self.session.gethostname()}/{self.session.getuser()}"

    def _run(self, coroutine, what: str):
        """Run a coroutine on the session's loop; coordinator trouble becomes CoordinatorError naming it."""
        import asyncio
        import concurrent.futures

        import grpc

        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise CoordinatorError(f"the labgrid coordinator {self.address} did not answer within "
                                   f"{self.timeout:g} s ({what}); is it hung?") from None
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                raise CoordinatorError(f"the labgrid coordinator {self.address} is not reachable ({what}): "
                                       f"{error.details()}") from None
            raise CoordinatorError(f"the labgrid coordinator {self.address} refused to {what}: "
                                   f"{error.details()}") from None
        except Exception as error:  # labgrid's own ServerError/UserError when the session cannot start
            if type(error).__module__.startswith("labgrid"):
                raise CoordinatorError(f"cannot use the labgrid coordinator {self.address} ({what}): "
                                       f"{' '.join(str(a) for a in error.args) or type(error).__name__}; is "
                                       "`labgrid-coordinator` running there?") from None
            raise

    def _rpc(self, method: str, what: str, **request):
        """One unary call of the coordinator's gRPC service, then a sync so that places/resources are current."""
        stub, pb = self.session.stub, self.pb

        async def call():
            response = await getattr(stub, method)(getattr(pb, f"{method}Request")(**request))
            await self.session.sync_with_coordinator()
            return response

        return self._run(call(), what)

    # -- reading -------------------------------------------------------------------------------------

    def places(self) -> Dict[str, PlaceState]:
        """Every place with its tags, holder and reservation owner."""

        async def read():
            await self.session.sync_with_coordinator()
            reservations = await self.session.stub.GetReservations(self.pb.GetReservationsRequest())
            owners = {r.token: r.owner for r in reservations.reservations}
            return {name: PlaceState(name=name, tags=dict(place.tags), acquired=place.acquired,
                                     changed=float(place.changed or 0.0),
                                     reserved_for=owners.get(place.reservation) if place.reservation else None,
                                     reservation=place.reservation or None)
                    for name, place in self.session.places.items()}

        return self._run(read(), "list places")

    def network_service(self, place: str) -> dict:
        """The NetworkService parameters (address, username, port) of a place we hold."""

        async def read():
            # Read on the loop's thread: the session's dicts change there.
            await self.session.sync_with_coordinator()
            state = self.session.places.get(place)
            if state is None:
                return None, []
            found = []
            for exporter, group, cls, name in state.acquired_resources:
                if cls == "NetworkService":
                    resource = self.session.resources.get(exporter, {}).get(group, {}).get(name)
                    found.append((exporter, group, None if resource is None else (resource.avail,
                                                                                   dict(resource.args))))
            return state, found

        state, found = self._run(read(), "read the place's resources")
        if state is None:
            raise CoordinatorError(f"the place {place} vanished from the coordinator {self.address}")
        for exporter, group, resource in found:
            if resource is None:
                raise BoardError(f"the NetworkService of place {place} is orphaned: its exporter {exporter} is "
                                 f"gone (`labgrid-client -x {self.address} -p {place} show`)")
            avail, args = resource
            if not avail:
                raise BoardError(f"the NetworkService of place {place} ({exporter}/{group}) is not available")
            return args
        raise BoardError(f"the place {place} has no NetworkService resource, so the harness cannot tell where the "
                         f"board is; add one to its exporter and `labgrid-client -x {self.address} -p {place} "
                         f"add-match EXPORTER/GROUP/NetworkService`")

    # -- reserving, acquiring, releasing -------------------------------------------------------------

    def reserve(self, filters: Dict[str, str]) -> str:
        fltr = self.pb.Reservation.Filter(filter=filters)
        response = self._rpc("CreateReservation", "create a reservation", filters={"main": fltr}, prio=0.0)
        return response.reservation.token

    def poll(self, token: str) -> Tuple[str, Optional[str]]:
        """(state name, allocated place or None) of a reservation; polling also keeps it from expiring."""
        from labgrid.remote.common import ReservationState

        response = self._rpc("PollReservation", "poll a reservation", token=token)
        reservation = response.reservation
        return ReservationState(reservation.state).name, (dict(reservation.allocations).get("main") or None)

    def cancel(self, token: str) -> None:
        self._rpc("CancelReservation", "cancel a reservation", token=token)

    def acquire(self, place: str) -> None:
        self._rpc("AcquirePlace", f"acquire place {place}", placename=place)

    def release(self, place: str) -> None:
        """Release the place if we hold it; never someone else's (fromuser)."""
        self._rpc("ReleasePlace", f"release place {place}", placename=place, fromuser=self.me)

    # -- setting places up (harness farm up --labgrid) -----------------------------------------------

    def ensure_place(self, place: str, matches: List[str], tags: Dict[str, str]) -> None:
        """Create the place if needed, make it match these resource patterns, and set its tags."""
        if place not in self.places():
            self._rpc("AddPlace", f"add place {place}", name=place)
        known = set(self.matches().get(place, []))
        for pattern in matches:
            if pattern not in known:
                self._rpc("AddPlaceMatch", f"add a match to place {place}", placename=place, pattern=pattern)
        self._rpc("SetPlaceTags", f"tag place {place}", placename=place, tags=tags)

    def delete_place(self, place: str) -> None:
        self._rpc("DeletePlace", f"delete place {place}", name=place)

    def matches(self) -> Dict[str, List[str]]:
        """place -> its resource patterns ("exporter/group/class")."""

        async def read():
            await self.session.sync_with_coordinator()
            return {name: [repr(match) for match in place.matches] for name, place in self.session.places.items()}

        return self._run(read(), "list places")

    def resources(self) -> Dict[str, Dict[str, Dict[str, dict]]]:
        """exporter -> group -> resource name -> its parameters, as the coordinator has them now."""

        async def read():
            await self.session.sync_with_coordinator()
            return {exporter: {group: {name: dict(entry.args) for name, entry in resources.items()}
                               for group, resources in groups.items()}
                    for exporter, groups in self.session.resources.items()}

        return self._run(read(), "list resources")

    def close(self) -> None:
        async def stop():
            await self.session.stop()
            await self.session.close()

        try:
            self._run(stop(), "disconnect")
        except BoardError:
            pass  # it is gone already
        self._stop_loop()


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
                           python=board.python, workdir=board.workdir.replace("{place}", str(self.name)))

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

    def __init__(self, board: BoardSpec, lock_timeout: float = 300.0):
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
