"""What `harness farm up | down | status` does to this machine's emulated boards, farms and labgrid labs.

Which boards a command means (named ones, a farm or lab, the inventory's
kind: emulated boards, or every one with --all), starting and stopping them,
and what is here now (Overview), for views/farm.py to show. Stopping goes
exactly by what was named: one farm's `down` never stops another farm, a
test's boards or the default inventory's `arm-a76`.
"""

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..config.inventory import Inventory
from . import board as emulated
from . import farm as farms
from .labgrid_farm import lab_dir, labgrid_down, labgrid_status

Log = Callable[[str], None]


def lab_boards() -> Dict[str, List[str]]:
    """labgrid lab (its farm's name) -> the emulated boards it exports as places."""
    return {lab["prefix"]: list(lab["places"]) for lab in labgrid_status()}


def known_farms() -> List[str]:
    """Every farm and labgrid lab of this machine, by name."""
    return sorted(set(farms.farm_names()) | {lab["prefix"] for lab in labgrid_status()})


def inventory_boards_up(inventory: Inventory, log: Log) -> List[str]:
    """Start the inventory's kind: emulated boards (those running already are kept); their names."""
    boards = [b for b in inventory.boards.values() if b.kind == "emulated"]
    for board in boards:
        emulated.ensure_running(emulated.emulated_spec(board), log=log)
    return [board.name for board in boards]


def inventory_boards_here(inventory: Inventory) -> List[str]:
    """The inventory's boards that are emulated on this machine: what `farm up` without --size started."""
    return [name for name, board in inventory.boards.items()
            if board.kind != "local" and emulated.status(name) is not None]


@dataclass
class Stopped:
    """What a `farm down` did: board -> what happened to it, and the labgrid processes stopped."""

    boards: Dict[str, str] = field(default_factory=dict)
    """"stopped", "was not running", "removed", "unknown" (no emulated board of that name here), ..."""
    lab_processes: List[str] = field(default_factory=list)


def stop(names: Optional[List[str]], farm: Optional[str], remove: bool, every_lab: bool) -> Stopped:
    """Stop the boards named (None: the farm's own, or a lab's places), then the labs concerned.

    remove: also delete the boards' state (keys, address, home), and a lab's places, key and inventory.
    every_lab: --all; else only the lab named by farm, if it is one.
    """
    labs = lab_boards()
    if names is None and farm in labs:
        names = labs[farm]  # a labgrid lab of that name: its boards, then its coordinator
    outcome = farms.farm_down(farm, remove=remove) if names is None else farms.stop_boards(names, remove=remove)
    stopped = Stopped(boards=outcome)
    for lab in list(labs) if every_lab else [farm] if farm in labs else []:
        stopped.lab_processes += labgrid_down(lab)
        if remove:  # forget the lab too: its places, key and inventory
            shutil.rmtree(lab_dir(lab), ignore_errors=True)
    return stopped


@dataclass
class Overview:
    """The emulated boards of this machine (or of one farm), their farms and labs, and the stale ones."""

    boards: List[Tuple[Optional[str], str, dict]]
    """(farm or lab it belongs to, board, its status) in the order to show: farms' boards first."""
    farms: List[Tuple[str, List[str], Path, List[str]]]
    """(farm, its members, its inventory, members with no state here)."""
    labs: List[dict]
    """labgrid_farm.labgrid_status() of each lab shown."""
    stale: List[str]
    """Stopped boards that belong to no farm: candidates for `farm down --remove`."""

    def as_dict(self) -> dict:
        """`farm status --json` (and what its view shows): every board with its farm and status, the farms, the
        labs, the stale boards."""
        return {"boards": [{"name": name, "farm": farm, **status} for farm, name, status in self.boards],
                "farms": [{"name": name, "members": members, "inventory": str(path), "missing": missing}
                          for name, members, path, missing in self.farms],
                "labs": self.labs, "stale": self.stale}


def overview(farm: Optional[str] = None) -> Overview:
    member_of = {**{board: lab for lab, boards in lab_boards().items() for board in boards}, **farms.farm_of()}
    names = emulated.list_boards()
    if farm:
        names = [name for name in names if member_of.get(name) == farm]
    rows, stale = [], []
    for name in sorted(names, key=lambda n: (member_of.get(n) is None, member_of.get(n) or "", n)):
        status = emulated.status(name) or {}
        if not status.get("running") and name not in member_of:
            stale.append(name)
        rows.append((member_of.get(name), name, status))
    shown_farms = []
    for name in farms.farm_names():
        if farm and name != farm:
            continue
        members = farms.farm_members(name)
        shown_farms.append((name, members, farms.farm_inventory_path(name),
                            [member for member in members if emulated.status(member) is None]))
    labs = [lab for lab in labgrid_status() if not farm or lab["prefix"] == farm]
    return Overview(rows, shown_farms, labs, stale)
