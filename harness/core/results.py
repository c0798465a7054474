"""What a target brings back: a value per board, whether the board worked or not.

Like fabric's GroupResult, one dead board is a `TargetResult` with its reason,
never an exception that ends the run for the others.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

OK = "ok"
"""The agent ran and produced outputs."""
FAILED = "failed"
"""The board was reached but the model did not run there (the agent's error, a crash, a timeout)."""
UNUSABLE = "unusable"
"""The board could not be used: unreachable, host key refused, upload failed."""
INTERRUPTED = "interrupted"
"""The run was stopped (Ctrl-C, SIGTERM) before this board finished; its agent was killed, its lock released."""


@dataclass
class TargetResult:
    target: str
    """Board name from the inventory."""
    kind: str
    """local, ssh or emulated."""
    status: str
    error: Optional[str] = None
    """Why the board failed, in words a user can act on."""
    facts: dict = field(default_factory=dict)
    """The agent's result.json: machine, MNN version, CPU features, latency, memory."""
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)
    preprocessed: Optional[np.ndarray] = None
    """The board's own preprocessing of the raw images (preprocessing parity), when asked for."""
    timings: Dict[str, float] = field(default_factory=dict)
    """Seconds per stage on the host's clock: connect, upload, run, download."""
    locked_span: Optional[tuple] = None
    """(acquired, released) wall-clock times of this run's lock on the board."""
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    notes: List[str] = field(default_factory=list)
    """Things the report must say, e.g. that a host key was accepted on first use."""
    via: List[str] = field(default_factory=list)
    """How the board was reached when not straight: its jump hosts as written, nearest first ("ProxyCommand"
    first when one carried the connection)."""
    reused_from: Optional[str] = None
    """The folder of the job whose result this is, when the same job (same model bytes, inputs and settings
    that reach the runtime) already ran on this target in this invocation: it did not run again."""

    @property
    def ok(self) -> bool:
        return self.status == OK

    def __bool__(self) -> bool:
        return self.ok
