"""How to reach a board over SSH: data only, no behaviour (labgrid's NetworkService)."""

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class SshEndpoint:
    """Everything needed to open an SSH connection to one board and run the agent there."""

    host: str
    """Address or ssh_config alias."""
    port: int = 22
    user: Optional[str] = None
    """None: from ~/.ssh/config or the local user name."""
    key_filename: Optional[str] = None
    """Private key file; None: keys from ~/.ssh/config or the SSH agent."""
    known_hosts: Optional[str] = None
    """known_hosts file to verify the host key against, besides ~/.ssh/known_hosts."""
    trust_on_first_use: bool = False
    """Accept and remember an unknown host key. Only where the inventory says so."""
    python: str = "python3"
    """The board's Python interpreter (>= 3.8 with numpy and MNN)."""
    workdir: str = "/tmp/mnn-harness"
    """Directory on the board where jobs and the agent live."""
    env: dict = field(default_factory=dict, compare=False, hash=False)
    """Extra environment for commands on the board."""
