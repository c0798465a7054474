"""The errors a user can meet. Each names the file, field or board, and the fix.

The CLI maps them to exit codes: configuration errors are 2 (nothing ran),
board errors are 3 (a board could not be used), an interrupted run 130
(SIGINT) or 143 (SIGTERM).
"""


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code = 2


class ConfigError(HarnessError):
    """A scenario or inventory file is wrong; nothing was run."""

    def __init__(self, file, key_path, problem, fix=None, also=(), more: int = 0):
        self.file = str(file)
        self.key_path = key_path
        self.problem = problem
        self.fix = fix
        self.also = list(also)
        """Further problems of the same file, "key: problem" each (one edit can fix them all)."""
        where = f"{self.file}: {key_path}" if key_path else self.file
        message = f"{where}: {problem}"
        if fix:
            message += f"\n  fix: {fix}"
        for other in self.also:
            message += f"\n  also: {other}"
        if more:
            message += f"\n  and {more} more"
        super().__init__(message)


class SetupError(HarnessError):
    """Something the harness needs on the host is missing (a package, a tool, the sysroot)."""


class BoardError(HarnessError):
    """A board could not be reached or used."""

    exit_code = 3


class JumpHostError(BoardError):
    """A jump host (bastion) on the way to a board could not be reached or used, or died: the board behind it
    was not tried, or was cut off with it."""


class BoardResultError(HarnessError):
    """What a board sent back breaks the contract (too big, a symlink, wrong types, no hash): that board failed."""

    exit_code = 3


class Interrupted(HarnessError):
    """The run was asked to stop (Ctrl-C, SIGTERM) before this board finished."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code
        """130 for SIGINT, 143 for SIGTERM (the Interruption's exit_code), as a shell reports them."""


class ModelError(HarnessError):
    """The model could not be built, read or converted to .mnn (names the file, the options and the fix)."""
