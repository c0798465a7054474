"""The inventory: every board the harness may use, as data (host, port, user, key, tags).

Four kinds of board, each its own type, one interface later on:
- local:    this machine, running the same agent in a subprocess (the x86 reference);
- ssh:      a real board reached over SSH;
- emulated: an aarch64 board the harness starts itself (sshd + qemu-user), for
            users without hardware and for the tests;
- labgrid:  a place of a labgrid coordinator (a shared lab): reserved and
            acquired for the run, reached over SSH through its NetworkService.

`InventoryFile` and the four board types are the schema of an inventory file
(docs/reference.md and schemas/inventory.schema.json come from them); a key
of another kind (`cpu:` on an ssh board) is refused where the data enters.

The inventory is found at `--inventory PATH`, else $MNN_HARNESS_INVENTORY,
else ./inventory.yaml, else the default shipped with the harness (the x86
host and one emulated Cortex-A76 board).
"""

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from pydantic import BeforeValidator, Field, ValidationError, WithJsonSchema, model_validator
from pydantic.json_schema import SkipJsonSchema

from ..core.clients.wheels import EMULATED_MNN_VERSION
from ..core.endpoint import HOST, IPV6, JumpHost
from ..core.errors import ConfigError
from ..core.fields import (Choice, Flag, Integer, MnnVersion, Number, Problem, Section, Text, check_name, check_text,
                           describe_file_type, key_text, section, shown, type_name)
from ..core.shipped import default_inventory
from .validation import adapter, describe, inline_json_schema, validate
from .yamlfile import load_yaml

KINDS = ("local", "ssh", "emulated", "labgrid")
QEMU_CPUS = ("cortex-a53", "cortex-a55", "cortex-a57", "cortex-a72", "cortex-a76", "cortex-a710",
             "neoverse-n1", "neoverse-v1", "neoverse-n2", "a64fx", "max")
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
DEFAULT_EMULATED_MNN = EMULATED_MNN_VERSION
"""The MNN wheel an emulated board (not bare) carries unless its `mnn_version` says another."""


def Seconds(key: str):
    default, largest = TIMEOUTS[key]
    return Number(above=0.0, maximum=largest, why="seconds the harness waits on the board")


def check_tag(value) -> str:
    return check_text(str(value) if isinstance(value, (int, float)) else value)


def check_key_file(value) -> str:
    """A private key file that exists (checked here: a typo is exit 2, not a refused login later)."""
    key = check_text(value)
    what = describe_file_type(Path(key).expanduser())
    if what:
        raise Problem(f"private key {key!r} is {what}, not a key file", "give the path of the private key file")
    if not Path(key).expanduser().is_file():
        raise Problem(f"private key {key!r} does not exist",
                      "give the path of the private key, or leave `key` out to use ~/.ssh/config and the SSH agent")
    return key


KeyFile = Annotated[str, BeforeValidator(check_key_file), WithJsonSchema({"type": "string", "format": "path"})]
"""A private key file (relative paths start at the current directory)."""


# ---- jump hosts ---------------------------------------------------------------------------------------

@section
class JumpHop(Section):
    """One jump host (bastion) written as a mapping, with its own key and known_hosts."""

    host: Text
    """Address or ~/.ssh/config alias (its HostName, User, Port, IdentityFile and own ProxyJump are honoured)."""
    port: Optional[Integer(1, 65535, why="TCP ports are 1 to 65535")] = None
    """Default: from ~/.ssh/config, else 22."""
    user: Optional[Text] = None
    """Default: from ~/.ssh/config, else the local user name."""
    key: Optional[KeyFile] = None
    """Private key file for this hop (default: ~/.ssh/config's IdentityFile, the SSH agent, the default keys)."""
    known_hosts: Optional[Text] = None
    """known_hosts file holding this hop's host key, besides ~/.ssh/known_hosts."""

    @model_validator(mode="after")
    def _a_host(self) -> "JumpHop":
        if not re.fullmatch(rf"{HOST}|\[?{IPV6}\]?", self.host):
            raise Problem(f"{self.host!r} is not a host name or address",
                          "give the bastion's address or ~/.ssh/config alias; put user and port in `user:` and "
                          "`port:`", at="host")
        return self

    def jump_host(self) -> JumpHost:
        return JumpHost(host=self.host.strip("[]"), port=self.port, user=self.user, key=self.key,
                        known_hosts=self.known_hosts)


JUMP_EXAMPLE = "write `jump: user@bastion:2222` (as ProxyJump and ssh -J do), or `jump: {host: bastion, key: ...}`"


def check_jump(value, info) -> Tuple[JumpHost, ...]:
    """`jump:` as ProxyJump writes it ("lab@bastion:2222", "a,b"), a mapping with the hop's own key and
    known_hosts, or a list of those, nearest first; `none`: straight to the board."""
    if isinstance(value, tuple) and all(isinstance(hop, JumpHost) for hop in value):
        return value  # made in code, or already resolved
    if value == "none":
        return ()
    if isinstance(value, list):
        if not value:
            raise Problem("is an empty list", JUMP_EXAMPLE + ", or `jump: none` to go straight to the board")
        items = [(f"[{index}]", item) for index, item in enumerate(value)]
    elif isinstance(value, (str, dict)):
        items = [("", value)]
    else:
        raise Problem(f"must be a jump host, a mapping or a list of them, got {type_name(value)}", JUMP_EXAMPLE)
    hops: list = []
    for where, item in items:
        if isinstance(item, str):
            try:
                check_text(item)
            except Problem as problem:
                raise Problem(problem.problem, problem.fix, at=where) from None
            hops += [_jump_text(where, piece.strip()) for piece in item.split(",")]
        elif isinstance(item, dict):
            try:
                hops.append(adapter(JumpHop).validate_python(item, context=info.context).jump_host())
            except ValidationError as error:
                key, problem, fix = describe(error.errors(include_url=False)[0], item)
                raise Problem(problem, fix, at=f"{where}.{key}" if where else key) from None
        else:
            raise Problem(f"must be a jump host or a mapping, got {type_name(item)}", JUMP_EXAMPLE, at=where)
    if len(hops) > MAX_JUMPS:
        raise Problem(f"lists {len(hops)} jump hosts", f"a route of at most {MAX_JUMPS} hops")
    seen = set()
    for hop in hops:
        if (hop.host, hop.port, hop.user) in seen:
            raise Problem(f"names the jump host {hop} twice", "list each jump host once, nearest first")
        seen.add((hop.host, hop.port, hop.user))
    return tuple(hops)


def _jump_text(where: str, text: str) -> JumpHost:
    if text == "none":
        raise Problem("says `none` among other jump hosts", "write `jump: none` alone, or leave it out", at=where)
    hop = JumpHost.parse(text)
    if hop is None:
        raise Problem(f"{text!r} is not a jump host (or its port is not 1 to 65535)", JUMP_EXAMPLE, at=where)
    return hop


def _jump_schema() -> dict:
    hop = inline_json_schema(JumpHop)
    text = {"type": "string", "description": "[user@]host[:port] as ProxyJump writes it; several: a,b"}
    return {"anyOf": [{"const": "none", "description": "straight to the board, whatever ~/.ssh/config says"},
                      text, hop, {"type": "array", "items": {"anyOf": [text, hop]}, "minItems": 1,
                                  "maxItems": MAX_JUMPS}]}


Jump = Annotated[Tuple[Any, ...], BeforeValidator(check_jump), WithJsonSchema(_jump_schema())]


# ---- labgrid places --------------------------------------------------------------------------------------

def check_place(value) -> str:
    place = check_text(value)
    if not PLACE_NAME.fullmatch(place):
        raise Problem(f"{place!r} is not a labgrid place name",
                      "use letters, digits, '.', '_' and '-' (as `labgrid-client places` lists them)")
    return place


def check_match(value) -> Tuple[Tuple[str, str], ...]:
    """Tags any free place must carry, as labgrid checks them (a bad one is exit 2, not a hang)."""
    if isinstance(value, tuple):
        return value  # already resolved
    if not isinstance(value, dict):
        raise Problem(f"must be a mapping of keys to values, got {type_name(value)}",
                      "give the tags a place must carry, e.g. `match: {soc: rk3588}`")
    if not value:
        raise Problem("is empty: it would match every place of the lab",
                      "give the tags a place must carry, e.g. `match: {soc: rk3588}`, or name a `place:`")
    pairs = []
    for key, tag in value.items():
        where = key_text(key)
        if not isinstance(key, str) or not TAG_KEY.fullmatch(key):
            raise Problem(f"{key!r} is not a labgrid tag key",
                          "use lowercase letters, digits and '_', starting with a letter (two or more)", at=where)
        if not isinstance(tag, str):
            raise Problem(f"must be a string, got {type_name(tag)} {tag!r}",
                          f"quote it: `{key}: \"{tag}\"` (labgrid tags are strings; YAML reads yes/no as true/false "
                          "and 3.10 as a number)", at=where)
        if not TAG_VALUE.fullmatch(tag):
            raise Problem(f"{tag!r} is not a labgrid tag value",
                          "use letters, digits, '.', '_', '+' and '-', without spaces or '='", at=where)
        pairs.append((key, tag))
    return tuple(sorted(pairs))


def coordinator_address(text: str, where: Optional[str] = None) -> str:
    """host:port of the coordinator, the port checked, labgrid's default added."""
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
        raise Problem(problem, "write it as HOST:PORT, e.g. `coordinator: 127.0.0.1:20408`")
    return f"{host}:{int(port)}"


# ---- the boards ------------------------------------------------------------------------------------------

@section
class BoardSpec(Section):
    """One board of the inventory: what every kind has. Each kind is its own type below; an attribute of
    another kind reads as NOT_APPLICABLE says (an emulated board's `host` is None)."""

    INTERNAL = frozenset({"name"})
    KIND: ClassVar[str] = ""
    """The `kind:` that picks this type."""
    name: SkipJsonSchema[str] = ""
    """The board's key under `boards:` (reports/<run>/targets/<board>, the lock's holder), set by the loader."""
    kind: Text
    """The board's type: local, ssh, emulated or labgrid; it decides which other keys the board takes."""
    tags: Tuple[Annotated[str, BeforeValidator(check_tag)], ...] = ()
    """Labels a scenario's `tags:` picks boards by (all of them must match)."""
    python: Text = "python3"
    """The board's Python (>= 3.8), by name or path."""
    connect_timeout: Seconds("connect_timeout") = TIMEOUTS["connect_timeout"][0]
    """Seconds to reach the board."""
    run_timeout: Seconds("run_timeout") = TIMEOUTS["run_timeout"][0]
    """Seconds one job may run on the board."""
    transfer_timeout: Seconds("transfer_timeout") = TIMEOUTS["transfer_timeout"][0]
    """Seconds a transfer may stall (no progress) before the board is given up."""
    dead_after: Seconds("dead_after") = TIMEOUTS["dead_after"][0]
    """Seconds without an answer from the board after which it is taken for dead, mid-run."""
    store_max_mb: Number(above=0.0, maximum=1 << 30, why="MB the board's store of models and inputs may hold") \
        = 2048.0
    """The most the board's store (models, inputs, agents by SHA-256) may hold; least recently used files go first."""
    resident: Flag = True
    """Run jobs on a resident agent started once per session (false: a new agent process per job)."""
    agent_cache_models: Integer(0, 1000, why="models the resident agent keeps loaded") = 4
    """Loaded models the resident agent keeps between jobs (least recently used go first)."""
    agent_cache_mb: Number(above=0.0, maximum=1 << 20,
                           why="MB of memory above which the resident agent evicts models") = 1024.0
    """The resident agent's memory (RSS, MB) above which it evicts cached models."""

    @classmethod
    def unknown_key_fix(cls, key) -> str:
        owners = [kind for kind, board in BOARD_TYPES.items() if key in board.keys()]
        if owners and cls is not BoardSpec:
            return f"`{key}` applies to {' and '.join(owners)} boards, not to this {cls.KIND} board"
        return super().unknown_key_fix(key)


@section
class LocalBoard(BoardSpec):
    """This machine, running the same agent in a subprocess: the x86 reference."""

    KIND = "local"
    kind: Literal["local"]
    python: Text = ""
    """The Python that runs the agent (default: the harness's own)."""


@section
class EmulatedBoard(BoardSpec):
    """An aarch64 board the harness starts itself: sshd and qemu-user, real aarch64 MNN, no hardware."""

    KIND = "emulated"
    kind: Literal["emulated"]
    cpu: Choice(*QEMU_CPUS) = "cortex-a76"
    """The qemu CPU model, which decides the CPU features MNN sees (cortex-a76: FP16 and dotprod; cortex-a53: no
    FP16; max: everything)."""
    bare: Flag = False
    """A board as it comes: its Python without numpy and MNN, provisioned by the harness."""
    mnn: Choice(*MNN_MODES) = "system"
    """system: the MNN wheel the board carries; provision: the harness brings MNN (the default of a bare board)."""
    mnn_version: Optional[MnnVersion] = DEFAULT_EMULATED_MNN
    """The MNN wheel the board carries, in quotes (a bare board: the one the harness brings; default: the
    host's)."""

    @model_validator(mode="before")
    @classmethod
    def _bare_defaults(cls, data):
        if isinstance(data, dict) and data.get("bare") is True:
            if data.get("mnn") == "system":
                raise Problem("is system, and a bare board has no MNN of its own",
                              "leave `mnn` out: the harness brings MNN to a bare board", at="mnn")
            data = {"mnn": "provision", "mnn_version": None, **data}
        return data


@section
class SshLogin(BoardSpec):
    """What an ssh and a labgrid board share: how to log in and where the agent lives."""

    key: Optional[KeyFile] = None
    """Private key file (default: ~/.ssh/config's IdentityFile, the SSH agent, the default keys)."""
    known_hosts: Optional[Text] = None
    """known_hosts file holding the board's host key, besides ~/.ssh/known_hosts."""
    trust_on_first_use: Flag = False
    """Accept and record an unknown host key on the first connection (said in the report). Off: an unknown key
    stops the board."""
    jump: Optional[Jump] = None
    """Jump hosts (bastions) to pass through, nearest first: `user@bastion:2222`, `a,b`, mappings with their
    own key, or `none` (straight to the board). Default: as ~/.ssh/config says (ProxyJump, ProxyCommand)."""
    workdir: Text = "/tmp/mnn-harness"
    """Where the agent, models and inputs live on the board (labgrid: `{place}` is the place's name)."""
    mnn: Choice(*MNN_MODES) = "provision"
    """provision: the harness brings MNN and numpy (wheels for the board's Python, unpacked in its workdir);
    system: the board's own MNN."""
    mnn_version: Optional[MnnVersion] = None
    """The MNN the board runs, in quotes: the one the harness brings (default: the host's), or with `mnn: system`
    the one expected of the board's own (a different one is reported)."""


@section
class SshBoard(SshLogin):
    """A real board reached over SSH."""

    KIND = "ssh"
    kind: Literal["ssh"]
    host: Text
    """Address or ~/.ssh/config alias (its ProxyJump, ProxyCommand and UserKnownHostsFile come with it)."""
    port: Optional[Integer(1, 65535, why="TCP ports are 1 to 65535")] = None
    """Default: from ~/.ssh/config, else 22."""
    user: Optional[Text] = None
    """Default: from ~/.ssh/config, else the local user name."""


@section
class LabgridBoard(SshLogin):
    """A place of a labgrid coordinator (a shared lab): reserved and acquired for the run, reached over SSH through
    its NetworkService (address, user and port come from there)."""

    KIND = "labgrid"
    kind: Literal["labgrid"]
    place: Optional[Annotated[str, BeforeValidator(check_place)]] = None
    """The place to reserve, by name (or `match:`)."""
    match: Annotated[Tuple[Tuple[str, str], ...], BeforeValidator(check_match),
                     WithJsonSchema({"type": "object", "minProperties": 1,
                                     "propertyNames": {"pattern": f"^{TAG_KEY.pattern}$"},
                                     "additionalProperties": {"type": "string",
                                                              "pattern": f"^{TAG_VALUE.pattern}$"}}),
                     Field(json_schema_extra={"default": {}})] = ()
    """Instead of a place: any free place carrying all these tags, e.g. `{soc: rk3588}`."""
    coordinator: Optional[Text] = None
    """The coordinator as HOST:PORT (default: $LG_COORDINATOR; the port defaults to labgrid's 20408)."""

    @model_validator(mode="before")
    @classmethod
    def _a_place_and_its_lab(cls, data):
        if not isinstance(data, dict):
            return data
        if ("place" in data) == ("match" in data):
            raise Problem("a labgrid board needs exactly one of `place:` and `match:`",
                          "name the place (`place: rk3588-1`) or the tags any free place must carry "
                          "(`match: {soc: rk3588}`)", at="place")
        if "coordinator" in data:
            text, where = data["coordinator"], None
            try:
                text = check_text(text)
            except Problem as problem:
                raise Problem(problem.problem, problem.fix, at="coordinator") from None
        elif os.environ.get("LG_COORDINATOR"):
            text, where = os.environ["LG_COORDINATOR"], "$LG_COORDINATOR"
        else:
            raise Problem("is missing and $LG_COORDINATOR is not set",
                          "add `coordinator: HOST:PORT` (the labgrid coordinator) or export LG_COORDINATOR",
                          at="coordinator")
        try:
            return {**data, "coordinator": coordinator_address(text, where)}
        except Problem as problem:
            raise Problem(problem.problem, problem.fix, at="coordinator") from None


BOARD_TYPES: Dict[str, type] = {board.KIND: board for board in (LocalBoard, SshBoard, EmulatedBoard, LabgridBoard)}
"""Board kind -> its type: the `kind:` an inventory writes."""

NOT_APPLICABLE = dict(host=None, port=None, user=None, key=None, known_hosts=None, trust_on_first_use=False,
                      jump=None, workdir="/tmp/mnn-harness", cpu="cortex-a76", bare=False, mnn="system",
                      mnn_version=None, place=None, match=(), coordinator=None)
"""What a board answers for an attribute its kind does not have (an emulated board's `host`, a local board's
`place`): the neutral value, so that code reading any board (`board.place` of every board) needs no kind test.
Set on BoardSpec after the kinds are defined, so that no kind takes them as its defaults."""
for _name, _value in NOT_APPLICABLE.items():
    setattr(BoardSpec, _name, _value)

Board = Annotated[Union[LocalBoard, SshBoard, EmulatedBoard, LabgridBoard], Field(discriminator="kind")]


@section
class InventoryFile(Section):
    """Every board the harness may use, by name."""

    boards: Dict[str, Board]
    """Boards by name (the name is a folder name: letters, digits, '.', '_', '-')."""

    @model_validator(mode="before")
    @classmethod
    def _named_boards(cls, data):
        """Board names become folder names; a missing kind is said here, with the kinds there are."""
        if not isinstance(data, dict) or not isinstance(data.get("boards"), (dict, type(None))):
            return data
        boards = {}
        for name, board in (data["boards"] or {}).items():
            where = f"boards.{key_text(name)}"
            if not isinstance(name, str):
                raise Problem("board names must be strings", "quote it: `\"7\": {kind: ssh, ...}`", at=where)
            try:
                check_name(name)  # reports/<run>/targets/<board>, the lock's holder, the farm's state
            except Problem as problem:
                raise Problem(problem.problem, problem.fix, at=where) from None
            if not isinstance(board, dict):
                raise Problem(f"must be a mapping of keys to values, got {type_name(board)}",
                              "write it as `key: value` lines (indented under its name)", at=where)
            if "kind" not in board:
                raise Problem("is missing", f"set `kind:` to one of {', '.join(KINDS)}", at=f"{where}.kind")
            if not isinstance(board["kind"], str):  # (a kind that is text but no kind is the union's to say)
                raise Problem(f"must be one of {', '.join(KINDS)}, got {type_name(board['kind'])} "
                              f"{shown(board['kind'])}", "write the kind as a word", at=f"{where}.kind")
            if "name" in board:
                raise Problem("is not a known key", "a board's name is its key under `boards:`", at=f"{where}.name")
            boards[name] = board
        return {**data, "boards": boards}

    @model_validator(mode="after")
    def _boards_that_can_run(self) -> "InventoryFile":
        if not self.boards:
            raise Problem("lists no board", "add at least one board", at="boards")
        # Two boards naming one place of one coordinator would queue a run behind itself.
        seen: Dict[tuple, str] = {}
        for name, board in self.boards.items():
            if board.kind == "labgrid" and board.place:
                other = seen.setdefault((board.coordinator, board.place), name)
                if other != name:
                    raise Problem(f"place {board.place!r} of {board.coordinator} is board {other!r} already",
                                  "list each labgrid place once", at=f"boards.{name}.place")
        return self


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
    """Read and validate an inventory file; raise ConfigError naming the board, the key and the fix."""
    path = Path(path)
    file: InventoryFile = validate(path, load_yaml(path), InventoryFile)
    return Inventory(path=path, boards={name: dataclasses.replace(board, name=name)
                                        for name, board in file.boards.items()})


def boards_named(inventory: Inventory, names: List[str], asked_in=None) -> List[BoardSpec]:
    return [inventory.board(name, asked_in, f"targets[{index}]") for index, name in enumerate(names)]
