"""Targets: where a job runs. The x86 host, an SSH board and an emulated board share one interface."""

from ..inventory import BoardSpec
from .base import Target


def make_target(board: BoardSpec, lock_timeout: float = 300.0) -> Target:
    if board.kind == "local":
        from .local import LocalTarget
        return LocalTarget(board, lock_timeout)
    from .ssh import SshTarget
    return SshTarget(board, lock_timeout)
