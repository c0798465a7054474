"""An emulated board farm on one machine: boards of different CPUs and MNN versions, as a lab would have.

`farm_up(size)` starts `size` emulated boards (cycling through FARM_BOARDS),
each a real sshd in its own network namespace, and writes an inventory in
which they are plain `kind: ssh` boards with host, port, user, key and a
known_hosts file: the harness then drives them exactly as it drives real
hardware. The x86 host is in it too, as the reference.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Tuple

import yaml

from ..endpoint import SshEndpoint
from . import board as emulated


@dataclass(frozen=True)
class FarmBoard:
    name: str
    cpu: str
    mnn_version: str
    tags: Tuple[str, ...]


FARM_BOARDS = (
    FarmBoard("farm-a53", "cortex-a53", "3.6.1", ("a53", "no-fp16")),
    FarmBoard("farm-a76", "cortex-a76", "3.6.1", ("a76", "fp16", "dotprod")),
    FarmBoard("farm-max", "max", "3.6.1", ("max", "fp16", "dotprod", "i8mm", "sve2")),
    # An older MNN beside 3.6.1: a version mismatch shown for real, not simulated.
    FarmBoard("farm-a76-old", "cortex-a76", "3.4.1", ("a76", "fp16", "dotprod", "old-mnn")),
)


def farm_inventory_path(prefix: str = "farm") -> Path:
    return emulated.farm_dir() / ("inventory.yaml" if prefix == "farm" else f"{prefix}-inventory.yaml")


def farm_boards(size: int, prefix: str = "farm") -> List[FarmBoard]:
    boards = []
    for index in range(size):
        base = FARM_BOARDS[index % len(FARM_BOARDS)]
        lap = index // len(FARM_BOARDS)
        name = base.name.replace("farm", prefix, 1)
        boards.append(FarmBoard(name if lap == 0 else f"{name}-{lap + 1}", base.cpu, base.mnn_version, base.tags))
    return boards


def start_boards(size: int, log: Callable[[str], None] = print,
                 prefix: str = "farm") -> List[Tuple[FarmBoard, SshEndpoint]]:
    """Start the farm's boards in parallel (those running already are kept); each with how to reach it."""
    boards = farm_boards(size, prefix)

    def start(board: FarmBoard):
        return board, emulated.ensure_running(
            emulated.EmulatedBoardSpec(name=board.name, cpu=board.cpu, mnn_version=board.mnn_version), log)

    with ThreadPoolExecutor(max_workers=min(8, len(boards))) as pool:
        return list(pool.map(start, boards))


def farm_up(size: int = len(FARM_BOARDS), log: Callable[[str], None] = print, prefix: str = "farm") -> Path:
    """Start the farm (in parallel) and write its inventory and known_hosts; return the inventory's path.

    prefix names the boards (farm-a53, ...): tests use their own so they never touch a user's farm.
    """
    started = start_boards(size, log, prefix)
    known_hosts = emulated.farm_dir() / f"{prefix}-known_hosts"
    known_hosts.write_text("".join(Path(endpoint.known_hosts).read_text() for _, endpoint in started))
    inventory = {"boards": {"x86": {"kind": "local", "tags": ["x86_64", "reference"]}}}
    for board, endpoint in started:
        inventory["boards"][board.name] = {
            "kind": "ssh", "host": endpoint.host, "port": endpoint.port, "user": endpoint.user,
            "key": endpoint.key_filename, "known_hosts": str(known_hosts), "workdir": endpoint.workdir,
            "python": endpoint.python, "mnn_version": board.mnn_version,
            "tags": ["emulated", *board.tags],
        }
    path = farm_inventory_path(prefix)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("# Written by `harness farm up`: the emulated farm as SSH boards.\n"
                   + yaml.safe_dump(inventory, sort_keys=False))
    tmp.replace(path)
    return path


def farm_down() -> List[str]:
    """Stop every emulated board of this machine; return the names of those that were running."""
    return [name for name in emulated.list_boards() if emulated.stop(name)]
