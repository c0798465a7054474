"""Every board of an inventory at once, outside any plan: probed for its health (`harness boards`), and first
cleaned of what failed runs left (`--clean`). Each board on a target of its own, in parallel; one board's
trouble is its own row, never the end of the others."""

from concurrent.futures import ThreadPoolExecutor
from typing import List

from ..config.inventory import Inventory
from .targets import make_target


def clean_boards(inventory: Inventory) -> List[dict]:
    """Each board's leftovers removed (job dirs, partial uploads) and its store evicted to store_max_mb."""
    targets = [make_target(board) for board in inventory.boards.values()]
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        return list(pool.map(lambda target: target.clean(), targets))


def probe_boards(inventory: Inventory) -> List[dict]:
    """Each board's health: reachable, machine, Python, MNN, CPU features, free disk, its lock, warnings."""
    targets = [make_target(board) for board in inventory.boards.values()]
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        return list(pool.map(lambda target: target.probe(), targets))
