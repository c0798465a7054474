"""The inventory: every board the harness may use, as data (host, port, user, key, tags).

Four kinds of board, one interface later on:
- local:    this machine, running the same agent in a subprocess (the x86 reference);
- ssh:      a real board reached over SSH;
- emulated: an aarch64 board the harness starts itself (sshd + qemu-user), for
            users without hardware and for the tests;
- labgrid:  a place of a labgrid coordinator (a shared lab): reserved and
            acquired for the run, reached over SSH through its NetworkService.

The inventory is found at `--inventory PATH`, else $MNN_HARNESS_INVENTORY,
else ./inventory.yaml, else the default shipped with the harness (the x86
host and one emulated Cortex-A76 board).
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .clients.wheels import EMULATED_MNN_VERSION
from .endpoint import HOST, IPV6, JumpHost
from .errors import ConfigError
from .shipped import default_inventory
from .yamlfile import Section, describe_file_type, load_yaml, type_name

KINDS = ("local", "ssh", "emulated", "labgrid")
QEMU_CPUS = ("cortex-a53", "cortex-a55", "cortex-a57", "cortex-a72", "cortex-a76", "cortex-a710",
             "neoverse-n1", "neoverse-v1", "neoverse-n2", "a64fx", "max")
MNN_VERSION = re.compile(r"[0-9]{1,4}(\.[0-9]{1,4}){1,3}")
"""An MNN version names a directory of the cache and on boards, and a pip requirement: a plain version."""
MNN_MODES = ("provision", "system")
TIMEOUTS = {"connect_timeout": (15.0, 3600.0), "run_timeout": (1800.0, 7 * 86400.0),
            "transfer_timeout": (120.0, 86400.0), "dead_after": (30.0, 86400.0)}
"""Seconds: the default and the largest accepted (beyond it a board that hangs holds the run for days)."""
LABGRID_DEFAULT_PORT = 20408
"""labgrid's own default coordinator port, taken when `coordinator:` names only a host."""
PLACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TAG_KEY = re.compile(r"[a-z][a-z0-9_]+")
"""labgrid's rule for tag keys (labgrid.remote.common.TAG_KEY), checked here so that a bad key is exit 2."""
TAG_VALUE = re.compile(r"[A-Za-z0-9._+-]+")
"""Tag values as `labgrid-client set-tags k=v` can write them: no spaces, no '='."""
MAX_JUMPS = 8
"""More jump hosts than a lab has: a list that long is a mistake (or a loop written out)."""


@dataclass(frozen=True)
class BoardSpec:
    """One board of the inventory."""

    name: str
    kind: str
    tags: tuple = ()
    host: Optional[str] = None
    """ssh: address or ~/.ssh/config alias."""
    port: Optional[int] = None
    """ssh: None takes the port from ~/.ssh/config, else 22."""
    user: Optional[str] = None
    key: Optional[str] = None
    known_hosts: Optional[str] = None
    trust_on_first_use: bool = False
    python: str = "python3"
    workdir: str = "/tmp/mnn-harness"
    """labgrid: `{place}` in it is replaced by the name of the place the run got."""
    cpu: str = "cortex-a76"
    """emulated: the qemu CPU model, which decides the CPU features MNN sees."""
    mnn_version: Optional[str] = None
    """The MNN that runs on the board: the version the harness brings there (`mnn: provision`; None: the
    host's), or, for `mnn: system`, the version expected of the board's own (a different one is reported);
    emulated (not bare): the MNN wheel the board carries."""
    mnn: str = "system"
    """provision: the harness brings MNN and numpy (wheels for the board's Python, unpacked in its workdir);
    system: the board's own MNN. The inventory's default is provision for ssh and labgrid boards and bare
    emulated ones."""
    bare: bool = False
    """emulated: a board as it comes, its Python without numpy and MNN, provisioned by the harness."""
    connect_timeout: float = 15.0
    run_timeout: float = 1800.0
    dead_after: float = 30.0
    """Seconds without an answer from the board after which it is taken for dead, mid-run."""
    transfer_timeout: float = 120.0
    """Seconds a transfer may stall (no progress) before the board is given up."""
    store_max_mb: float = 2048.0
    """The most the board's store (models, inputs, agents by SHA-256) may hold; least recently used files go first."""
    place: Optional[str] = None
    """labgrid: the place to reserve, by name."""
    match: Tuple[Tuple[str, str], ...] = ()
    """labgrid: instead of a place, any place carrying all these (key, value) tags."""
    coordinator: Optional[str] = None
    """labgrid: the coordinator as host:port (from `coordinator:` or $LG_COORDINATOR)."""
    resident: bool = True
    """Run jobs on a resident agent started once per session (False: a new agent process per job)."""
    agent_cache_models: int = 4
    """Loaded models the resident agent keeps between jobs (least recently used go first)."""
    agent_cache_mb: float = 1024.0
    """The resident agent's memory (RSS, MB) above which it evicts cached models."""
    jump: Optional[Tuple[JumpHost, ...]] = None
    """ssh, labgrid: the jump hosts to pass through, nearest first (`jump:`); None: as ~/.ssh/config says
    (ProxyJump, ProxyCommand); (): `jump: none`, straight to the board."""


@dataclass(frozen=True)
class Inventory:
    path: Path
    boards: Dict[str, BoardSpec] = field(default_factory=dict)

    def board(self, name: str, asked_in=None, key_path: str = "targets") -> BoardSpec:
        if name not in self.boards:
            raise ConfigError(asked_in or self.path, key_path,
                              f"no board named {name!r} in the inventory {self.path}",
                              f"use one of {', '.join(self.boards)} or add it to the inventory")
        return self.boards[name]


def find_inventory(explicit: Optional[str] = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("MNN_HARNESS_INVENTORY"):
        return Path(os.environ["MNN_HARNESS_INVENTORY"])
    if Path("inventory.yaml").is_file():
        return Path("inventory.yaml")
    return default_inventory()


def load_inventory(path) -> Inventory:
    path = Path(path)
    top = Section(path, load_yaml(path))
    boards_section = top.section("boards")
    boards = {}
    for name in list(boards_section.data):
        if not isinstance(name, str):
            raise boards_section.error(str(name), "board names must be strings", "quote it: `\"7\": {kind: ssh, ...}`")
        boards_section.check_name(name, name)  # reports/<run>/targets/<board>, the lock's holder, the farm's state
        boards[name] = _board(name, boards_section.section(name))
    boards_section.done()
    top.done()
    if not boards:
        raise ConfigError(path, "boards", "lists no board", "add at least one board")
    inventory = Inventory(path=path, boards=boards)
    check_labgrid_places(inventory)
    return inventory


def _board(name: str, section: Section) -> BoardSpec:
    kind = section.str("kind", None, KINDS)
    if kind is None:
        raise section.error("kind", "is missing", f"set `kind:` to one of {', '.join(KINDS)}")
    tags = tuple(section.to_str(f"tags[{index}]", str(tag)) for index, tag in enumerate(section.list("tags", [])))
    common = dict(name=name, kind=kind, tags=tags,
                  python=section.str("python", "python3"),
                  store_max_mb=section.number("store_max_mb", 2048.0, above=0.0, maximum=1 << 30,
                                              why="MB the board's store of models and inputs may hold"),
                  resident=section.bool("resident", True),
                  agent_cache_models=section.int("agent_cache_models", 4, minimum=0, maximum=1000,
                                                 why="models the resident agent keeps loaded"),
                  agent_cache_mb=section.number("agent_cache_mb", 1024.0, above=0.0, maximum=1 << 20,
                                                why="MB of memory above which the resident agent evicts models"),
                  **{key: section.number(key, default, above=0.0, maximum=largest,
                                         why="seconds the harness waits on the board")
                     for key, (default, largest) in TIMEOUTS.items()})
    if kind == "local":
        board = BoardSpec(**{**common, "python": section.str("python", "") or ""})
    elif kind == "emulated":
        bare = section.bool("bare", False)
        mnn = _mnn_mode(section, "provision" if bare else "system")
        if bare and mnn == "system":
            raise section.error("mnn", "is system, and a bare board has no MNN of its own",
                                "leave `mnn` out: the harness brings MNN to a bare board")
        board = BoardSpec(**common, cpu=section.str("cpu", "cortex-a76", QEMU_CPUS), bare=bare, mnn=mnn,
                          mnn_version=mnn_version_of(section, None if bare else EMULATED_MNN_VERSION))
    elif kind == "labgrid":
        # Address, user and port come from the place's NetworkService; how to log in is as for ssh.
        board = BoardSpec(**common, **_ssh_login(section), **_labgrid_place(section))
    else:
        board = BoardSpec(**common, host=section.str("host"),
                          port=section.int("port", None, minimum=1, maximum=65535, why="TCP ports are 1 to 65535"),
                          user=section.str("user", None), **_ssh_login(section))
    section.done()
    return board


def _ssh_login(section: Section) -> dict:
    """The SSH fields shared by ssh and labgrid boards: key, host-key checking, jump hosts, where the agent lives."""
    return dict(key=_key_file(section, "key"), known_hosts=section.str("known_hosts", None), jump=_jump_hosts(section),
                trust_on_first_use=section.bool("trust_on_first_use", False),
                workdir=section.str("workdir", "/tmp/mnn-harness"),
                mnn=_mnn_mode(section, "provision"), mnn_version=mnn_version_of(section, None))


def _mnn_mode(section: Section, default: str) -> str:
    return section.str("mnn", default, MNN_MODES)


def mnn_version_of(section: Section, default: Optional[str], key: str = "mnn_version") -> Optional[str]:
    """A plain MNN version, given as a string, or default when the key is absent."""
    if not section.has(key):
        return default
    raw = section.raw(key)
    if not isinstance(raw, str):
        raise section.error(key, f"is not an MNN version in quotes: got {type_name(raw)} {raw!r}",
                            "write it in quotes, e.g. \"3.6.1\" (YAML reads 3.10 as the number 3.1)")
    version = section.to_str(key, raw)
    if not MNN_VERSION.fullmatch(version):
        raise section.error(key, f"{version!r} is not an MNN version",
                            "write it as a plain version in quotes, e.g. \"3.6.1\" (releases with wheels: "
                            "3.0.0 to 3.6.1)")
    return version


def _key_file(section: Section, name: str) -> Optional[str]:
    """A private key file that exists (checked here: a typo is exit 2, not a refused login later)."""
    key = section.str(name, None)
    what = describe_file_type(Path(key).expanduser()) if key is not None else None
    if what:
        raise section.error(name, f"private key {key!r} is {what}, not a key file",
                            "give the path of the private key file")
    if key is not None and not Path(key).expanduser().is_file():
        raise section.error(name, f"private key {key!r} does not exist",
                            "give the path of the private key, or leave `key` out to use ~/.ssh/config and the SSH agent")
    return key


def _jump_hosts(section: Section) -> Optional[Tuple[JumpHost, ...]]:
    """`jump:` as ProxyJump writes it ("lab@bastion:2222", "a,b"), a mapping with the hop's own key and
    known_hosts, or a list of those, nearest first; `none`: straight to the board; absent: ~/.ssh/config."""
    if not section.has("jump"):
        return None
    value = section.raw("jump")
    if value == "none":
        return ()
    example = "write `jump: user@bastion:2222` (as ProxyJump and ssh -J do), or `jump: {host: bastion, key: ...}`"
    if isinstance(value, list):
        if not value:
            raise section.error("jump", "is an empty list", example + ", or `jump: none` to go straight to the board")
        items = [(f"jump[{index}]", item) for index, item in enumerate(value)]
    elif isinstance(value, (str, dict)):
        items = [("jump", value)]
    else:
        raise section.error("jump", f"must be a jump host, a mapping or a list of them, got {type_name(value)}",
                            example)
    hops: list = []
    for where, item in items:
        if isinstance(item, str):
            section.to_str(where, item)
            hops += [_jump_text(section, where, piece.strip(), example) for piece in item.split(",")]
        elif isinstance(item, dict):
            hop = Section(section.file, item, section.key(where))
            host = hop.str("host")
            if not re.fullmatch(rf"{HOST}|\[?{IPV6}\]?", host):
                raise hop.error("host", f"{host!r} is not a host name or address",
                                "give the bastion's address or ~/.ssh/config alias; put user and port in "
                                "`user:` and `port:`")
            hops.append(JumpHost(host=host.strip("[]"),
                                 port=hop.int("port", None, minimum=1, maximum=65535, why="TCP ports are 1 to 65535"),
                                 user=hop.str("user", None), key=_key_file(hop, "key"),
                                 known_hosts=hop.str("known_hosts", None)))
            hop.done()
        else:
            raise section.error(where, f"must be a jump host or a mapping, got {type_name(item)}", example)
    if len(hops) > MAX_JUMPS:
        raise section.error("jump", f"lists {len(hops)} jump hosts", f"a route of at most {MAX_JUMPS} hops")
    seen = set()
    for hop in hops:
        if (hop.host, hop.port, hop.user) in seen:
            raise section.error("jump", f"names the jump host {hop} twice",
                                "list each jump host once, nearest first")
        seen.add((hop.host, hop.port, hop.user))
    return tuple(hops)


def _jump_text(section: Section, where: str, text: str, example: str) -> JumpHost:
    if text == "none":
        raise section.error(where, "says `none` among other jump hosts", "write `jump: none` alone, or leave it out")
    hop = JumpHost.parse(text)
    if hop is None:
        raise section.error(where, f"{text!r} is not a jump host (or its port is not 1 to 65535)", example)
    return hop


def _labgrid_place(section: Section) -> dict:
    """place or match, and the coordinator, checked as labgrid would (a bad one is exit 2, not a hang)."""
    if section.has("place") == section.has("match"):
        raise section.error("place", "a labgrid board needs exactly one of `place:` and `match:`",
                            "name the place (`place: rk3588-1`) or the tags any free place must carry "
                            "(`match: {soc: rk3588}`)")
    place = section.str("place", None)
    if place is not None and not PLACE_NAME.fullmatch(place):
        raise section.error("place", f"{place!r} is not a labgrid place name",
                            "use letters, digits, '.', '_' and '-' (as `labgrid-client places` lists them)")
    match = ()
    if section.has("match"):
        tags = section.section("match")
        if not tags.data:
            raise tags.error(None, "is empty: it would match every place of the lab",
                             "give the tags a place must carry, e.g. `match: {soc: rk3588}`, or name a `place:`")
        pairs = []
        for key in list(tags.data):
            if not isinstance(key, str) or not TAG_KEY.fullmatch(key):
                raise tags.error(str(key), f"{key!r} is not a labgrid tag key",
                                 "use lowercase letters, digits and '_', starting with a letter (two or more)")
            value = tags.raw(key)
            if not isinstance(value, str):
                raise tags.error(key, f"must be a string, got {type_name(value)} {value!r}",
                                 f"quote it: `{key}: \"{value}\"` (labgrid tags are strings; YAML reads yes/no "
                                 "as true/false and 3.10 as a number)")
            if not TAG_VALUE.fullmatch(value):
                raise tags.error(key, f"{value!r} is not a labgrid tag value",
                                 "use letters, digits, '.', '_', '+' and '-', without spaces or '='")
            pairs.append((key, value))
        tags.done()
        match = tuple(sorted(pairs))
    return dict(place=place, match=match, coordinator=_coordinator(section))


def _coordinator(section: Section) -> str:
    """host:port of the coordinator, from the board or $LG_COORDINATOR; the port checked, labgrid's default added."""
    if section.has("coordinator"):
        text, where = section.str("coordinator"), None
    elif os.environ.get("LG_COORDINATOR"):
        text, where = os.environ["LG_COORDINATOR"], "$LG_COORDINATOR"
    else:
        raise section.error("coordinator", "is missing and $LG_COORDINATOR is not set",
                            "add `coordinator: HOST:PORT` (the labgrid coordinator) or export LG_COORDINATOR")
    host, colon, port = text.strip().rpartition(":")
    if not colon:
        host, port = text.strip(), str(LABGRID_DEFAULT_PORT)
    problem = None
    if not host or any(c.isspace() for c in host) or "/" in host:
        problem = f"{text!r} names no host"
    elif not port.isdigit() or not 1 <= int(port) <= 65535:
        problem = f"{text!r} has no port between 1 and 65535"
    if problem:
        if where:
            problem += f" (from {where})"
        raise section.error("coordinator", problem, "write it as HOST:PORT, e.g. `coordinator: 127.0.0.1:20408`")
    return f"{host}:{int(port)}"


def check_labgrid_places(inventory: Inventory) -> None:
    """Two boards naming one place of one coordinator would queue a run behind itself: refuse that."""
    seen: Dict[tuple, str] = {}
    for board in inventory.boards.values():
        if board.kind == "labgrid" and board.place:
            other = seen.setdefault((board.coordinator, board.place), board.name)
            if other != board.name:
                raise ConfigError(inventory.path, f"boards.{board.name}.place",
                                  f"place {board.place!r} of {board.coordinator} is board {other!r} already",
                                  "list each labgrid place once")


def boards_named(inventory: Inventory, names: List[str], asked_in=None) -> List[BoardSpec]:
    return [inventory.board(name, asked_in, f"targets[{index}]") for index, name in enumerate(names)]
