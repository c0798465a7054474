"""How to reach a board over SSH: data only, no behaviour (labgrid's NetworkService)."""

import re
from dataclasses import dataclass, field
from typing import Optional, Tuple

HOST = r"[^@\s:/,\[\]]+"
"""A host name, ~/.ssh/config alias or IPv4 address: no space, '@', ':', '/', ',' or brackets."""
IPV6 = r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"
JUMP_HOST = re.compile(rf"(?:(?P<user>{HOST})@)?(?P<host>{HOST}|\[{IPV6}\])(?::(?P<port>[0-9]{{1,5}}))?")
"""One hop as ProxyJump and `ssh -J` write it: [user@]host[:port], an IPv6 address in brackets."""


@dataclass(frozen=True)
class JumpHost:
    """One jump host (bastion) on the way to a board, as the inventory's `jump:` names it."""

    host: str
    """Address or ~/.ssh/config alias (its HostName, User, Port, IdentityFile and own ProxyJump are honoured)."""
    port: Optional[int] = None
    """None: from ~/.ssh/config, else 22."""
    user: Optional[str] = None
    """None: from ~/.ssh/config or the local user name."""
    key: Optional[str] = None
    """Private key file for this hop; None: ~/.ssh/config's IdentityFile, the SSH agent, the default keys."""
    known_hosts: Optional[str] = None
    """known_hosts file holding this hop's host key, besides ~/.ssh/known_hosts (and the board's own file)."""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{host}{f':{self.port}' if self.port else ''}"

    @classmethod
    def parse(cls, text: str) -> Optional["JumpHost"]:
        """[user@]host[:port] as ProxyJump writes it; None if it is not that (or the port is not 1 to 65535)."""
        match = JUMP_HOST.fullmatch(text.strip())
        if not match or (match["port"] and not 1 <= int(match["port"]) <= 65535):
            return None
        return cls(host=match["host"].strip("[]"), port=int(match["port"]) if match["port"] else None,
                   user=match["user"])


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
    jump: Optional[Tuple[JumpHost, ...]] = None
    """The jump hosts to pass through, nearest first; None: as ~/.ssh/config says (ProxyJump, ProxyCommand);
    (): straight to the board, whatever ~/.ssh/config says."""
