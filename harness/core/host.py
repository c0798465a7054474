"""What the x86 host needs besides Python packages: the programs, the Debian packages that bring them, and what
each is for. One table, read by the errors that meet a missing program and by `harness doctor`.

A user who installed the wheel has no `make setup`: a missing program is named
with the Debian package to install, all of them on one line, so one
`apt-get install` fixes it.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional

from .errors import SetupError


@dataclass(frozen=True)
class HostTool:
    """A program the harness runs on the host, and where it comes from."""

    command: str
    """A name looked up on PATH, or an absolute path (sshd and sftp-server are not on a user's PATH)."""
    package: str
    """The Debian package that installs it."""
    needed_for: str

    def path(self) -> Optional[str]:
        if self.command.startswith("/"):
            return self.command if Path(self.command).is_file() else None
        return shutil.which(self.command)


QEMU = HostTool("qemu-aarch64-static", "qemu-user-static", "emulated boards: runs the aarch64 Python and MNN")
SSHD = HostTool("/usr/sbin/sshd", "openssh-server", "emulated boards: each is an sshd")
SFTP_SERVER = HostTool("/usr/lib/openssh/sftp-server", "openssh-server", "emulated boards: transfers")
SSH_KEYGEN = HostTool("ssh-keygen", "openssh-server", "emulated boards: their host and client keys")
EMULATED_BOARD_TOOLS = (QEMU, SSHD, SFTP_SERVER, SSH_KEYGEN)
SYSROOT_TOOLS = (HostTool("apt-get", "apt", "building the boards' aarch64 sysroot once (apt-get download)"),
                 HostTool("dpkg", "dpkg", "building the boards' aarch64 sysroot once (dpkg -x)"))
OPTIONAL_TOOLS = (HostTool("ip", "iproute2", "a network namespace per emulated board (else a loopback port)"),
                  HostTool("espeak-ng", "espeak-ng", "`speak:` audio inputs"))


def missing(tools: Iterable[HostTool]) -> List[HostTool]:
    return [tool for tool in tools if tool.path() is None]


def install_line(tools: Iterable[HostTool]) -> str:
    """`apt-get install A B`: each package once, in the order first needed."""
    packages = list(dict.fromkeys(tool.package for tool in tools))
    return f"apt-get install {' '.join(packages)}"


def require(tools: Iterable[HostTool], what: str) -> None:
    """SetupError naming, on one line, every Debian package `what` needs that this host lacks."""
    absent = missing(tools)
    if absent:
        packages = ", ".join(dict.fromkeys(tool.package for tool in absent))
        commands = ", ".join(Path(tool.command).name for tool in absent)
        raise SetupError(f"{what} need the Debian package(s) {packages}, missing on this host (no {commands}); "
                         f"fix: `{install_line(absent)}` as root")
