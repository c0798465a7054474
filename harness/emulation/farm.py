"""An emulated board farm on one machine: boards of different CPUs and MNN versions, as a lab would have.

`farm_up(size)` starts `size` emulated boards (cycling through FARM_BOARDS),
each a real sshd in its own network namespace, and writes an inventory in
which they are plain `kind: ssh` boards with host, port, user, key and a
known_hosts file: the harness then drives them exactly as it drives real
hardware. The x86 host is in it too, as the reference.

A farm has a name (its prefix; "farm" by default) and its inventory says
which boards are its own: `farm down` and `farm status` go by it, so that
stopping one farm never stops another farm, a test's boards or the default
inventory's `arm-a76`.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Tuple

import yaml

from ..core.clients.wheels import EMULATED_MNN_VERSION
from ..core.endpoint import SshEndpoint
from ..core.files import write_atomic
from . import board as emulated


@dataclass(frozen=True)
class FarmBoard:
    name: str
    cpu: str
    mnn_version: str
    tags: Tuple[str, ...]
    bare: bool = False
    """A board as it comes (Python, no numpy, no MNN): the harness provisions it, its inventory says so."""

    def spec(self) -> "emulated.EmulatedBoardSpec":
        return emulated.EmulatedBoardSpec(name=self.name, cpu=self.cpu, bare=True) if self.bare else \
            emulated.EmulatedBoardSpec(name=self.name, cpu=self.cpu, mnn_version=self.mnn_version)

    def inventory_mnn(self) -> dict:
        """How the farm's inventory says where the board's MNN comes from: its own, or the harness's."""
        return {"mnn": "provision"} if self.bare else {"mnn": "system", "mnn_version": self.mnn_version}


FARM_BOARDS = (
    FarmBoard("farm-a53", "cortex-a53", EMULATED_MNN_VERSION, ("a53", "no-fp16")),
    FarmBoard("farm-a76", "cortex-a76", EMULATED_MNN_VERSION, ("a76", "fp16", "dotprod")),
    FarmBoard("farm-max", "max", EMULATED_MNN_VERSION, ("max", "fp16", "dotprod", "i8mm", "sve2")),
    # An older MNN beside 3.6.1: a version mismatch shown for real, not simulated.
    FarmBoard("farm-a76-old", "cortex-a76", "3.4.1", ("a76", "fp16", "dotprod", "old-mnn")),
)


def farm_inventory_path(prefix: str = "farm") -> Path:
    """The farm's inventory: inventory.yaml for the default farm, PREFIX-inventory.yaml for the others."""
    return emulated.farm_dir() / ("inventory.yaml" if prefix == "farm" else f"{prefix}-inventory.yaml")


BARE_BOARD = FarmBoard("farm-bare", "cortex-a76", "", ("a76", "fp16", "dotprod", "bare"), bare=True)
"""`farm up --bare`: a Cortex-A76 whose Python has no numpy and no MNN, for the harness to provision."""


def farm_boards(size: int, prefix: str = "farm", bare: bool = False) -> List[FarmBoard]:
    boards = []
    for index in range(size):
        base = FARM_BOARDS[index % len(FARM_BOARDS)]
        lap = index // len(FARM_BOARDS)
        name = base.name.replace("farm", prefix, 1)
        boards.append(FarmBoard(name if lap == 0 else f"{name}-{lap + 1}", base.cpu, base.mnn_version, base.tags))
    if bare:
        boards.append(FarmBoard(BARE_BOARD.name.replace("farm", prefix, 1), BARE_BOARD.cpu, "", BARE_BOARD.tags,
                                bare=True))
    return boards


def start_boards(size: int, log: Callable[[str], None] = print,
                 prefix: str = "farm", bare: bool = False) -> List[Tuple[FarmBoard, SshEndpoint]]:
    """Start the farm's boards in parallel (those running already are kept); each with how to reach it."""
    boards = farm_boards(size, prefix, bare)

    def start(board: FarmBoard):
        return board, emulated.ensure_running(board.spec(), log)

    with ThreadPoolExecutor(max_workers=min(8, len(boards))) as pool:
        return list(pool.map(start, boards))


def farm_up(size: int = len(FARM_BOARDS), log: Callable[[str], None] = print, prefix: str = "farm",
            bare: bool = False) -> Path:
    """Start the farm (in parallel) and write its inventory and known_hosts; return the inventory's path.

    bare: one more board, PREFIX-bare, a Cortex-A76 with a Python and nothing else, which the harness
    provisions (its inventory entry leaves `mnn` at provision).

    prefix names the farm and its boards (farm-a53, ...): tests use their own so they never touch a
    user's farm. A farm started again with another size gets its inventory rewritten for that size;
    its boards beyond the new size are stopped (they are this farm's, and no inventory lists them now).
    """
    previous = farm_members(prefix)
    started = start_boards(size, log, prefix, bare)
    known_hosts = emulated.farm_dir() / f"{prefix}-known_hosts"
    known_hosts.write_text("".join(Path(endpoint.known_hosts).read_text() for _, endpoint in started))
    inventory = {"boards": {"x86": {"kind": "local", "tags": ["x86_64", "reference"]}}}
    for board, endpoint in started:
        inventory["boards"][board.name] = {
            "kind": "ssh", "host": endpoint.host, "port": endpoint.port, "user": endpoint.user,
            "key": endpoint.key_filename, "known_hosts": str(known_hosts), "workdir": endpoint.workdir,
            "python": endpoint.python, **board.inventory_mnn(),
            "tags": ["emulated", *board.tags],
        }
    path = write_atomic(farm_inventory_path(prefix), "# Written by `harness farm up`: the emulated farm as SSH "
                        "boards.\n" + yaml.safe_dump(inventory, sort_keys=False))
    for name in previous:
        if name not in inventory["boards"] and emulated.stop(name):
            log(f"{name}: stopped, it is no longer in the farm {prefix!r} of {size}")
    return path


DEFAULT_FARM = "farm"


def farm_names() -> List[str]:
    """The farms `farm up` made on this machine (each has an inventory), the default one first."""
    directory = emulated.farm_dir()
    if not directory.is_dir():
        return []
    found = [path.name[:-len("-inventory.yaml")] for path in directory.glob("*-inventory.yaml")]
    if (directory / "inventory.yaml").is_file():
        found.append(DEFAULT_FARM)
    return sorted(set(found), key=lambda name: (name != DEFAULT_FARM, name))


def farm_members(name: str = DEFAULT_FARM) -> List[str]:
    """The boards of a farm, as its inventory lists them (empty when there is no such farm)."""
    path = farm_inventory_path(name)
    try:
        boards = (yaml.safe_load(path.read_text()) or {}).get("boards") or {}
    except (OSError, yaml.YAMLError):
        return []
    return [board for board, spec in boards.items() if isinstance(spec, dict) and spec.get("kind") != "local"]


def farm_of() -> Dict[str, str]:
    """Board name -> the farm it belongs to, for every board some farm's inventory lists."""
    return {board: farm for farm in farm_names() for board in farm_members(farm)}


def stop_boards(names: Iterable[str], remove: bool = False) -> Dict[str, str]:
    """Stop (with remove: and delete the state of) exactly these boards; name -> what happened.

    "stopped", "was not running", "removed" or "unknown" (no board of that name
    on this machine). Never more than the names given: other farms, the default
    inventory's board and other users' boards keep running.
    """
    outcome = {}
    for name in names:
        state = emulated.status(name)
        if state is None:
            outcome[name] = "unknown"
        elif remove:
            emulated.remove(name)
            outcome[name] = "removed"
        else:
            emulated.stop(name)
            outcome[name] = "stopped" if state["running"] else "was not running"
    return outcome


def farm_down(name: str = DEFAULT_FARM, remove: bool = False) -> Dict[str, str]:
    """Stop the boards of one farm; name -> what happened.

    Its inventory stays (`farm up --farm NAME` restarts them), unless remove: then the boards'
    state, the farm's inventory and its known_hosts go too.
    """
    outcome = stop_boards(farm_members(name), remove)
    if remove:
        farm_inventory_path(name).unlink(missing_ok=True)
        (emulated.farm_dir() / f"{name}-known_hosts").unlink(missing_ok=True)
    return outcome

