"""A labgrid coordinator as a Python object: its places, reservations and resources, in-process over gRPC.

The labgrid board session (execution/targets/labgrid.py) reserves, acquires
and releases places through it; `harness farm up --labgrid`
(emulation/labgrid_farm.py) sets places up with it. What it relies on,
measured with labgrid 26.0.1:
- The in-process gRPC API, not the CLI: a reserve-acquire-read-cancel-release
  cycle takes ~10 ms against 0.3 s per `labgrid-client` call. The session and
  its asyncio loop live on a thread of their own (one per coordinator in this
  process), so every board thread, and the main thread on Ctrl-C, can call it.
- `AcquirePlace` through the stub skips the CLI's check that the place's
  resources exist: network_service() checks them after acquiring.
- Importing labgrid's client replaces sys.excepthook; labgrid logs through
  the root logger. Both are undone here.
"""

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, List, Optional, Tuple

from ..errors import BoardError, SetupError


class CoordinatorError(BoardError):
    """The labgrid coordinator could not be reached, or refused a request."""


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
                         "`pip install 'mnn-harness[labgrid]'` (labgrid >= 26.0.1, Python >= 3.10)")


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
