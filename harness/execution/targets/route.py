"""How an SSH board is reached: straight, through jump hosts (ProxyJump, the inventory's `jump:`), or through a
ProxyCommand; each host key checked, and a death on the way noticed and named.

A route is legs, nearest first: one SSH connection per jump host, each carried by a direct-tcpip channel of
the one before, and the board's connection last. OpenSSH's rules are followed: the hosts of `ProxyJump a,b`
are visited in the order written, the first one reached as ~/.ssh/config says (its own ProxyJump or
ProxyCommand too), each later one as its Host entry says but for its route; `jump:` takes the place of the
board's ProxyJump. fabric's own gateway is not used: it visits several ProxyJump hosts in reverse order,
accepts any host key of a jump host (AutoAddPolicy), opens the forwarding channel with no timeout and never
closes the jump hosts' connections. A ProxyCommand runs with /bin/sh (as ssh runs it) in a session of its
own: a Ctrl-C at the terminal reaches the harness, which still needs the proxy to clean up the board.

Host keys are always verified, on every leg: against ~/.ssh/known_hosts, the UserKnownHostsFile of its
Host entry and the known_hosts files the inventory names. An unknown key stops with the `ssh-keyscan` line
that fixes it, run from where that host can be reached (a board behind a bastion: on the bastion). An
unknown board key is accepted only where the inventory says `trust_on_first_use: true`, and the report
says so; fabric's own default (accept anything) is replaced on every leg.

A death on the way: keepalives on every leg keep bytes in flight on the first leg's TCP socket, whose
TCP_USER_TIMEOUT then drops it when they stay unacknowledged for dead_after (a power cut, a pulled cable,
anywhere on the way); while the agent runs, every leg is asked for an answer now and then (Heartbeat), so a
jump host that freezes is named as the jump host, not as the board behind it.
"""

import os
import select
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import paramiko
from fabric import Config, Connection

from ...core.endpoint import JumpHost, SshEndpoint
from ...core.errors import BoardError, Interrupted, JumpHostError

CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_S = 1.0
MAX_HOPS = 8
"""More hops than any lab has: a ProxyJump chain that long goes round in a loop."""
PROXY_STDERR_KEEP = 4096
"""Bytes of a ProxyCommand's stderr kept for the error that names it."""


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Accept an unknown host key, remember it in known_hosts and note that we did."""

    def __init__(self, known_hosts: Path, accepted: list):
        self.known_hosts = known_hosts
        self.accepted = accepted

    def missing_host_key(self, client, hostname, key):
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        self.accepted.append(f"{hostname} {key.get_name()} SHA256 fingerprint "
                             f"{key.fingerprint if hasattr(key, 'fingerprint') else key.get_fingerprint().hex()}")


class ProxyProcess(paramiko.ProxyCommand):
    """A ProxyCommand as ssh runs it (`/bin/sh -c "exec COMMAND"`), in a session of its own, its stderr kept.

    paramiko's own runs it without a shell, in the harness's process group (a Ctrl-C kills it before the
    board is cleaned up through it), leaves its stderr in a pipe nobody reads (a chatty proxy blocks), and
    never reports the end of its output (the transport spins instead of ending).
    """

    def __init__(self, command: str):  # noqa: super().__init__ would start paramiko's own process
        self.cmd = ["/bin/sh", "-c", f"exec {command}"]
        self.command = command
        self.process = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
        self.timeout: Optional[float] = None
        self.stderr_tail = bytearray()
        threading.Thread(target=self._keep_stderr, name="proxycommand-stderr", daemon=True).start()

    def _keep_stderr(self) -> None:
        for line in iter(lambda: self.process.stderr.read(1024), b""):
            self.stderr_tail += line
            del self.stderr_tail[:-PROXY_STDERR_KEEP]

    def recv(self, size: int) -> bytes:
        """What the proxy wrote, up to size bytes; b"" once it ended (the transport then ends too)."""
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        if not ready:
            raise socket.timeout()
        return os.read(self.process.stdout.fileno(), size)

    def ended(self) -> Optional[str]:
        """How the proxy ended (its exit status and the end of its stderr), or None while it runs."""
        status = self.process.poll()
        if status is None:
            return None
        said = self.stderr_tail.decode("utf-8", "replace").strip().splitlines()
        return f"exit {status}" + (f": {said[-1][:300]}" if said else "")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=2)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=2)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


@dataclass
class Leg:
    """One SSH connection of a route: a jump host, or the board (the last leg)."""

    name: str
    """A jump host as written (`bastion`, `lab@10.0.0.1:2222`); the board's name for the board."""
    connection: Connection
    jump: bool
    known_hosts: List[Path]
    """Files holding the host keys this leg may have, besides ~/.ssh/known_hosts."""
    settings: str
    """Where its user, key and address are set, for a fix: the inventory, or its Host entry in ~/.ssh/config."""
    key: Optional[str] = None
    """The key named for it in the inventory, if any (for an `ssh` line the user can run)."""

    @property
    def address(self) -> str:
        host = self.connection.host
        return f"{self.connection.user}@{f'[{host}]' if ':' in host else host}:{self.connection.port}"

    @property
    def label(self) -> str:
        """How messages name it: "the jump host bastion (lab@10.0.0.1:22)" or just the address for the board."""
        if not self.jump:
            return self.address
        return f"the jump host {self.name}" + ("" if self.name == self.address else f" ({self.address})")

    @property
    def transport(self) -> Optional[paramiko.Transport]:
        return self.connection.client.get_transport()

    @property
    def active(self) -> bool:
        """Connected, and its transport has not ended (saved_exception is set before it says inactive)."""
        transport = self.transport
        return transport is not None and transport.is_active() and transport.saved_exception is None


class Heartbeat:
    """Asks one SSH server for an answer now and then while the agent runs.

    A host whose sshd froze (or whose network drops packets both ways) sends
    no reset, and keepalives want no reply: without asking, the harness would
    wait until run_timeout. One request at a time, in a thread of its own
    (paramiko's global_request blocks until the answer comes).
    """

    def __init__(self, transport: paramiko.Transport, every: float):
        self.transport = transport
        self.every = every
        self.asked_at = 0.0
        self.answered: Optional[threading.Event] = None

    def silent_for(self) -> float:
        """Seconds the server has left a question unanswered (0 when it answers); asks again when due."""
        now = time.monotonic()
        if self.answered is not None and not self.answered.is_set():
            return now - self.asked_at
        if now - self.asked_at >= self.every:
            self.answered, self.asked_at = threading.Event(), now
            threading.Thread(target=self._ask, args=(self.answered,), name="heartbeat", daemon=True).start()
        return 0.0

    def _ask(self, answered: threading.Event) -> None:
        try:
            # sshd answers an unknown global request at once (with a failure): that answer is the heartbeat.
            self.transport.global_request("keepalive@openssh.com", wait=True)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        answered.set()


class HopLost(EOFError):
    """Something on the way to the board (a jump host, the ProxyCommand) ended or stopped answering."""

    def __init__(self, who: str, why: str, short: str):
        super().__init__(f"{who}: {why}")
        self.who = who
        """It in full: "the jump host bastion (lab@10.0.0.1:22)", "the ProxyCommand `ssh -W ...`"."""
        self.why = why
        self.short = short
        """Its name alone, for the fix: "the jump host bastion", "the ProxyCommand"."""


class BoardSilent(EOFError):
    """The board left a heartbeat unanswered for dead_after while everything on the way still answers."""


class RouteHeartbeat:
    """A Heartbeat per leg, nearest first: the one that went silent first along the way is the one that died."""

    def __init__(self, route: "Route", every: float):
        self.route = route
        self.every = every
        self.beats = [(leg, Heartbeat(leg.transport, every)) for leg in route.legs if leg.transport is not None]

    def check(self, dead_after: float) -> None:
        """Raise HopLost or BoardSilent once a leg has been silent for dead_after (asking each when due)."""
        silences = [(leg, beat.silent_for()) for leg, beat in self.beats]
        if max((silence for _, silence in silences), default=0.0) <= dead_after:
            return
        why = f"no answer to a heartbeat for dead_after={dead_after:g} s"
        # What sits behind a frozen hop is silent too, and may have been asked a moment earlier: the hop that
        # left its own question unanswered longer than the interval between questions is the one that froze.
        for leg, silence in silences:
            if leg.jump and (silence > self.every or not leg.active):
                raise HopLost(leg.label, why, f"the jump host {leg.name}")
        raise BoardSilent(why)


@dataclass
class Route:
    """The legs to a board, nearest first, and the ProxyCommand that carries the first one, if any."""

    board_name: str
    legs: List[Leg]
    proxy_command: Optional[str] = None
    trust_on_first_use: bool = False
    accepted: List[str] = field(default_factory=list)
    """Host keys accepted on first use while opening (for the report)."""
    proxy: Optional[ProxyProcess] = None
    closed: bool = False
    """Closed by the harness (the session's end, a heartbeat's verdict, abort): nothing on the way was lost."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def board(self) -> Leg:
        return self.legs[-1]

    @property
    def hops(self) -> List[Leg]:
        return self.legs[:-1]

    @property
    def via(self) -> List[str]:
        """How the board is reached, for `harness boards` and the report: the jump hosts as written, nearest
        first, after "ProxyCommand" if one carries the first leg; [] for a board reached straight."""
        return (["ProxyCommand"] if self.proxy_command else []) + [leg.name for leg in self.hops]

    @property
    def alive(self) -> bool:
        return all(leg.active for leg in self.legs)

    # -- opening ---------------------------------------------------------------------------------------

    def open(self, connect_timeout: float, interrupted: threading.Event, notes: List[str]) -> Connection:
        """Open every leg in order, retrying what a reboot or a busy sshd explains; the board's Connection.

        BoardError (JumpHostError for a jump host) when a leg cannot be used: its host key unknown or
        changed, our key refused, no answer after CONNECT_ATTEMPTS.
        """
        for attempt in range(CONNECT_ATTEMPTS):
            if interrupted.is_set():
                raise Interrupted(f"{self.board_name}: interrupted during connect")
            try:
                self._open_legs(connect_timeout)
                return self.board.connection
            except _Retry as retry:
                self.close()
                failure = retry
            if attempt + 1 < CONNECT_ATTEMPTS:
                # A board that reboots or a sshd at its MaxStartups limit refuses for a moment: retry with
                # backoff before calling the board unusable.
                notes.append(f"connect attempt {attempt + 1} failed ({failure.message}); retrying")
                if interrupted.wait(CONNECT_BACKOFF_S * 2 ** attempt):
                    raise Interrupted(f"{self.board_name}: interrupted during connect")
        error = JumpHostError if failure.leg.jump else BoardError
        raise error(f"{self.board_name}: {failure.message} (after {CONNECT_ATTEMPTS} attempts)"
                    + (f"; {failure.fix}" if failure.fix else ""))

    def _open_legs(self, connect_timeout: float) -> None:
        self.closed = False
        sock = None
        if self.proxy_command:
            try:
                with self.lock:
                    self.proxy = sock = ProxyProcess(self.proxy_command)
            except OSError as error:
                raise BoardError(f"{self.board_name}: the ProxyCommand `{self.proxy_command}` could not start: "
                                 f"{error}; check ProxyCommand for this host in ~/.ssh/config") from error
        for index, leg in enumerate(self.legs):
            if index > 0:
                sock = self._forward(self.legs[index - 1], leg, connect_timeout)
            if sock is not None:
                leg.connection.connect_kwargs["sock"] = sock
            self._open_leg(index, leg)

    def _forward(self, before: Leg, leg: Leg, timeout: float) -> paramiko.Channel:
        """A channel from the jump host before to leg's address: the socket leg's SSH connection runs on."""
        target = (leg.connection.host, int(leg.connection.port))
        where = f"{target[0]}:{target[1]}"
        try:
            return before.transport.open_channel("direct-tcpip", dest_addr=target, src_addr=("", 0), timeout=timeout)
        except paramiko.ChannelException as error:
            if error.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                raise JumpHostError(
                    f"{self.board_name}: {before.label} refused to pass the connection on to {where} "
                    "(administratively prohibited); its sshd needs `AllowTcpForwarding yes` (and a PermitOpen "
                    "that allows that address)") from error
            raise _Retry(leg, f"{before.label} could not connect to {where} ({error.text or error})",
                         f"is {'that jump host' if leg.jump else 'the board'} up with sshd on port {target[1]}, "
                         f"and is {target[0]} its address as {before.name} sees it?") from error
        except paramiko.SSHException as error:
            if not before.active:
                raise _Retry(before, f"{before.label} dropped the connection", "") from error
            raise _Retry(leg, f"no answer from {where} through {before.label} within {timeout:g} s "
                         "(connect_timeout)", f"is {'that jump host' if leg.jump else 'the board'} up?") from error

    def _open_leg(self, index: int, leg: Leg) -> None:
        client = leg.connection.client
        client.load_system_host_keys()
        for path in leg.known_hosts:
            if path.is_file():
                client.load_system_host_keys(str(path))
        if self.trust_on_first_use and not leg.jump:
            known_hosts = leg.known_hosts[0] if leg.known_hosts else Path("~/.ssh/known_hosts").expanduser()
            client.set_missing_host_key_policy(_TrustOnFirstUse(known_hosts, self.accepted))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        error_type = JumpHostError if leg.jump else BoardError
        where = leg.label
        try:
            leg.connection.open()
        except paramiko.BadHostKeyException as error:
            raise error_type(f"{self.board_name}: the host key of {where} CHANGED since it was recorded (got "
                             f"{error.key.get_name()}): the host was reinstalled or someone is in the middle; check "
                             "it, then update known_hosts") from error
        except paramiko.AuthenticationException as error:
            raise error_type(f"{self.board_name}: {where} refused our key ({error}); check the user and key of "
                             f"{leg.settings}") from error
        except paramiko.SSHException as error:
            if "not found in known_hosts" in str(error):
                raise error_type(f"{self.board_name}: {where} has a host key that is not in known_hosts; check its "
                                 f"fingerprint and add it ({self.keyscan(index)})"
                                 + ("" if leg.jump else ", or set `trust_on_first_use: true` for this board in the "
                                    "inventory")) from error
            raise _Retry(leg, self._lost_on_the_way(leg) or f"SSH to {where} failed: {error}",
                         self._fix_on_the_way(leg)) from error
        except (socket.timeout, TimeoutError) as error:
            raise _Retry(leg, f"no answer from {where} within {leg.connection.connect_timeout:g} s "
                         "(connect_timeout)", self._reach_fix(leg)) from error
        except paramiko.ssh_exception.NoValidConnectionsError as error:
            # paramiko's own words are "[Errno None] Unable to connect": say what the socket said.
            why = "; ".join(sorted({os.strerror(e.errno) if e.errno else str(e)
                                    for e in error.errors.values()})) or str(error)
            raise _Retry(leg, f"cannot connect to {where}: {why}", self._reach_fix(leg)) from error
        except OSError as error:
            raise _Retry(leg, f"cannot connect to {where}: {error}", self._reach_fix(leg)) from error

    def _lost_on_the_way(self, leg: Leg) -> Optional[str]:
        """Why a leg's handshake broke when what carries it ended: the ProxyCommand, or the jump host before."""
        index = self.legs.index(leg)
        if index == 0 and self.proxy is not None:
            time.sleep(0.1)  # its stderr, read by a thread, to say why
            ended = self.proxy.ended()
            if ended:
                return f"the ProxyCommand `{self.proxy_command}` ended ({ended}) before {leg.label} answered"
        if index > 0 and not self.legs[index - 1].active:
            return f"{self.legs[index - 1].label} dropped the connection before {leg.label} answered"
        return None

    def _fix_on_the_way(self, leg: Leg) -> str:
        if self.legs.index(leg) == 0 and self.proxy is not None:
            return "run it by hand to see why (ProxyCommand in ~/.ssh/config)"
        return ""

    def _reach_fix(self, leg: Leg) -> str:
        what = "the jump host" if leg.jump else "the board"
        return (f"is {what} up, with sshd on port {leg.connection.port}? (check {leg.settings})"
                + ("; the board behind it was not tried" if leg.jump else ""))

    def keyscan(self, index: int) -> str:
        """How to record leg index's host key, from where that leg can be reached (in backquotes, to run)."""
        leg = self.legs[index]
        host, port = leg.connection.host, leg.connection.port
        file = str(leg.known_hosts[0]) if leg.known_hosts else "~/.ssh/known_hosts"
        scan = f"ssh-keyscan -p {port} {host}"
        if index == 0 and self.proxy_command:
            return (f"ssh-keyscan cannot pass through the ProxyCommand: on a machine that reaches {host}, run "
                    f"`{scan}` and add its line to {file}")
        if index == 0:
            return f"`{scan} >> {file}`"
        # Only the jump hosts reach it: log in once through them as OpenSSH would, which shows the fingerprint
        # to check and records the key (ssh-keyscan cannot pass a jump host that runs no commands).
        ssh = ["ssh", "-J", ",".join(hop.name for hop in self.legs[:index]), "-p", str(port)]
        if file != "~/.ssh/known_hosts":
            ssh += ["-o", f"UserKnownHostsFile={file}"]
        keys = [hop.key for hop in self.legs[:index] if hop.key]
        agent = f" (with {', '.join(keys)} in your SSH agent: ssh-add)" if keys else ""
        return (f"log in once through the jump host{'s' if index > 1 else ''}, check the fingerprint ssh shows "
                f"and accept it: `{' '.join(shlex.quote(part) for part in ssh + [f'{leg.connection.user}@{host}'])} "
                f"true`{agent}")

    # -- while it runs ---------------------------------------------------------------------------------

    def watch_for_death(self, dead_after: float) -> None:
        """Notice a death anywhere on the way in seconds, not in TCP's 15 minutes.

        A dead host sends no reset: the connection just stops. Keepalives on
        every leg keep data in flight on the first leg's socket, and
        TCP_USER_TIMEOUT drops that socket when its data stays unacknowledged
        for dead_after seconds (a ProxyCommand's own connection is its own).
        """
        interval = max(1, int(dead_after / 6))
        for leg in self.legs:
            if leg.transport is not None:
                leg.transport.set_keepalive(interval)
        first = self.legs[0].transport
        if first is not None and isinstance(first.sock, socket.socket) and hasattr(socket, "TCP_USER_TIMEOUT"):
            first.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(dead_after * 1000))

    def heartbeat(self, every: float) -> RouteHeartbeat:
        return RouteHeartbeat(self, every)

    def lost_on_the_way(self) -> Optional[HopLost]:
        """What ended on the way to the board, nearest first (the ProxyCommand, a jump host), or None."""
        if self.closed:
            return None
        if self.proxy is not None and self.proxy.ended():
            return HopLost(f"the ProxyCommand `{self.proxy_command}`", f"it ended ({self.proxy.ended()})",
                           "the ProxyCommand")
        for leg in self.hops:
            if not leg.active:
                return HopLost(leg.label, "the connection to it dropped", f"the jump host {leg.name}")
        return None

    def still_there(self) -> str:
        """What a board's silence leaves standing on the way, for its error ("" for a board reached straight)."""
        said = ""
        if self.proxy_command:
            said += "; it is reached through a ProxyCommand, whose far side may be what stopped"
        hops = [leg.name for leg in self.hops]
        if hops:
            said += f"; the jump host{'s' if len(hops) > 1 else ''} {', '.join(hops)} on the way still answered"
        return said

    def close(self) -> None:
        """Close every leg, the board's first, then the ProxyCommand. Safe from another thread (abort)."""
        self.closed = True
        for leg in reversed(self.legs):
            leg.connection.close()
            leg.connection.client.close()  # fabric's close does nothing while the handshake is still under way
            leg.connection.connect_kwargs.pop("sock", None)
        with self.lock:
            proxy, self.proxy = self.proxy, None
        if proxy is not None:
            proxy.close()


class _Retry(Exception):
    """A leg could not be opened for a reason a moment may cure (refused, no answer): the route is retried."""

    def __init__(self, leg: Leg, message: str, fix: str):
        super().__init__(message)
        self.leg = leg
        self.message = message
        self.fix = fix


# -- planning: which legs, from the inventory and ~/.ssh/config ----------------------------------------


def plan_route(board_name: str, endpoint: SshEndpoint, port: Optional[int], connect_timeout: float,
               straight: bool = False, config: Optional[Config] = None) -> Route:
    """The legs to the board, none of them open yet.

    port None lets ~/.ssh/config (or 22) decide, for an inventory that names none; straight=True ignores any
    ProxyJump or ProxyCommand (an emulated board on this machine).
    """
    config = config or Config()
    board_settings = "this board in the inventory"
    board = Leg(board_name, _connection(config, endpoint.host, endpoint.user, port, connect_timeout,
                                        endpoint.key_filename),
                jump=False, known_hosts=_known_hosts(config, endpoint.host, endpoint.known_hosts),
                settings=board_settings, key=endpoint.key_filename)
    if straight:
        return Route(board_name, [board], trust_on_first_use=endpoint.trust_on_first_use)
    if endpoint.jump is not None:
        listed, proxy_command = list(endpoint.jump), None
        if listed:
            proxy_command, before = _route_to(config, listed[0], board_name, [JumpHost(endpoint.host, port)])
            listed = before + listed
        settings = {hop: "`jump:` of this board in the inventory" for hop in endpoint.jump}
    else:
        proxy_command, listed = _route_to(config, JumpHost(endpoint.host, port, endpoint.user), board_name, [])
        settings = {}
    hops = [Leg(str(hop), _connection(config, hop.host, hop.user, hop.port, connect_timeout, hop.key),
                jump=True, known_hosts=_known_hosts(config, hop.host, hop.known_hosts, endpoint.known_hosts),
                settings=settings.get(hop, f"~/.ssh/config (Host {hop.host}) and `ssh -G {hop.host}`"), key=hop.key)
            for hop in listed]
    return Route(board_name, hops + [board], proxy_command=proxy_command,
                 trust_on_first_use=endpoint.trust_on_first_use)


def _route_to(config: Config, target: JumpHost, board_name: str,
              seen: List[JumpHost]) -> Tuple[Optional[str], List[JumpHost]]:
    """(ProxyCommand, jump hosts) before target, as ~/.ssh/config says: its ProxyJump (the first hop's own
    route before it) or its ProxyCommand. seen: the hosts whose route this is part of (a loop check)."""
    here = JumpHost(target.host, target.port)
    if len(seen) > MAX_HOPS or here in seen:
        chain = " -> ".join(str(hop) for hop in seen + [here])
        raise BoardError(f"{board_name}: ProxyJump in ~/.ssh/config goes round in a loop or is longer than "
                         f"{MAX_HOPS} hops ({chain}); fix the ProxyJump lines of those Host entries")
    options = config.base_ssh_config.lookup(target.host)
    jump = (options.get("proxyjump") or "").strip()
    if jump and jump.lower() != "none":
        listed = []
        for text in jump.split(","):
            hop = JumpHost.parse(text)
            if hop is None:
                raise BoardError(f"{board_name}: ProxyJump {jump!r} for {target.host} in ~/.ssh/config: {text!r} is "
                                 "not [user@]host[:port]; fix it there")
            listed.append(hop)
        proxy_command, before = _route_to(config, listed[0], board_name, seen + [here])
        return proxy_command, before + listed
    return options.get("proxycommand") or None, []


def _connection(config: Config, host: str, user: Optional[str], port: Optional[int], connect_timeout: float,
                key: Optional[str]) -> Connection:
    """A fabric Connection that takes user, port, HostName and IdentityFile from ~/.ssh/config where not given,
    and no gateway of its own (the route is the gateway)."""
    connect_kwargs = {"banner_timeout": connect_timeout, "auth_timeout": connect_timeout}
    if key:
        # Only the named key: offering every key in ~/.ssh can exhaust
        # the server's MaxAuthTries before the right one is tried.
        connect_kwargs.update(key_filename=str(Path(key).expanduser()), look_for_keys=False, allow_agent=False)
    return Connection(host, user=user, port=port, config=config, gateway=False, connect_timeout=connect_timeout,
                      connect_kwargs=connect_kwargs)


def _known_hosts(config: Config, host: str, *named: Optional[str]) -> List[Path]:
    """The known_hosts files for host besides ~/.ssh/known_hosts: those the inventory names, then the
    UserKnownHostsFile of its Host entry in ~/.ssh/config."""
    files = [Path(path).expanduser() for path in named if path]
    for path in (config.base_ssh_config.lookup(host).get("userknownhostsfile") or "").split():
        files.append(Path(path).expanduser())
    unique: List[Path] = []
    for path in files:
        if path not in unique:
            unique.append(path)
    return unique

