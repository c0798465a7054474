"""Targets: where a job runs. The x86 host, SSH, emulated and labgrid boards and the source model share one
interface; each target is a board session (see base.Target)."""

from ...config.inventory import BoardSpec
from .base import Target


def make_target(board: BoardSpec, lock_timeout: float = 300.0) -> Target:
    if board.kind == "local":
        from .local import LocalTarget
        return LocalTarget(board, lock_timeout)
    if board.kind == "source":
        from .source import SourceModelTarget
        return SourceModelTarget(board, lock_timeout)
    if board.kind == "labgrid":
        from .labgrid import LabgridTarget
        return LabgridTarget(board, lock_timeout)
    from .ssh import SshTarget
    return SshTarget(board, lock_timeout)
