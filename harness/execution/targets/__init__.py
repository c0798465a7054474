"""Targets: where a job runs. The x86 host, SSH, emulated and labgrid boards and the source model share one
interface; each target is a board session (see base.Target).

A board's kind names its session class (TARGET_KINDS), as labgrid registers a driver per resource: a new kind
is a class and a line here. Each class is imported when a board of its kind is first used (paramiko and labgrid
load only for the boards that need them).
"""

import importlib
from typing import Dict, Tuple, Type

from ...config.inventory import BoardSpec
from .base import Target
from .lock import LOCK_TIMEOUT_S

TARGET_KINDS: Dict[str, Tuple[str, str]] = {
    "local": ("local", "LocalTarget"),
    "ssh": ("ssh", "SshTarget"),
    "emulated": ("ssh", "EmulatedTarget"),
    "labgrid": ("labgrid", "LabgridTarget"),
    "source": ("source", "SourceModelTarget"),
}
"""A board's kind -> the module (of this package) and the class of its session."""


def target_class(kind: str) -> Type[Target]:
    """The session class of a board kind; ValueError for a kind no class serves."""
    if kind not in TARGET_KINDS:
        raise ValueError(f"no board session serves kind {kind!r} (kinds: {', '.join(TARGET_KINDS)})")
    module, name = TARGET_KINDS[kind]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def make_target(board: BoardSpec, lock_timeout: float = LOCK_TIMEOUT_S) -> Target:
    return target_class(board.kind)(board, lock_timeout)
