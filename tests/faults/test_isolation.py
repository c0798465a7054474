"""Emulated boards as separate machines: a user of their own, StrictModes, and slots unique machine-wide."""

import json
import os
import subprocess
from pathlib import Path

import paramiko
import pytest

from harness.core.cache import cache_root
from harness.emulation import board as emulated

from .conftest import needs_root, start_board

pytestmark = [pytest.mark.emulated, pytest.mark.faults, needs_root]

NAME = f"fs{os.getpid()}-a53"


@pytest.fixture(scope="module")
def endpoint():
    try:
        yield start_board(NAME, cpu="cortex-a53")
    finally:
        emulated.remove(NAME)


def session(endpoint) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(endpoint.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(endpoint.host, endpoint.port, endpoint.user, key_filename=endpoint.key_filename,
                   look_for_keys=False, allow_agent=False, timeout=20)
    return client


def sh(client: paramiko.SSHClient, command: str) -> tuple:
    _, stdout, stderr = client.exec_command(command, timeout=60)
    out = stdout.read().decode()
    return stdout.channel.recv_exit_status(), out + stderr.read().decode()


def test_sessions_and_agents_run_as_an_unprivileged_user_whose_only_writable_place_is_the_workdir(endpoint):
    state = json.loads((emulated.state_dir(NAME) / "state.json").read_text())
    side = Path(state["public"])
    client = session(endpoint)
    try:
        assert sh(client, "id -un")[1].strip() == endpoint.user == state["user"]
        assert sh(client, "id -u")[1].strip() != "0"
        assert endpoint.user.startswith("mnn-board-")
        assert sh(client, f"touch {endpoint.workdir}/mine && echo ok")[1].strip() == "ok"
        for elsewhere in (side / "board-shell", side / "bin" / "python3", side / "authorized_keys", side / "home" / "x",
                          emulated.state_dir(NAME) / "sshd_config", "/etc/mnn-board-test", "/var/lib/mnn-harness/x"):
            code, out = sh(client, f"touch {elsewhere}")
            assert code != 0, f"the board's user could write {elsewhere}"
        # Its /tmp is its own (a private tmpfs): what it writes there is not on the host.
        marker = f"/tmp/{NAME}-private"
        assert sh(client, f"touch {marker} && echo ok")[1].strip() == "ok"
        assert not Path(marker).exists()
        # The sysroot it runs is mounted read-only where it can reach it; the host sees an empty directory.
        assert sh(client, f"touch {side}/sysroot/x")[0] != 0
        assert not list((side / "sysroot").iterdir())
        code, out = sh(client, "python3 -c 'import platform; print(platform.machine())'")
        assert code == 0 and "aarch64" in out
    finally:
        client.close()


def test_sshd_checks_the_modes_of_the_key_files(endpoint):
    config = (emulated.state_dir(NAME) / "sshd_config").read_text()
    assert "StrictModes yes" in config and "PermitRootLogin no" in config
    keys = Path(json.loads((emulated.state_dir(NAME) / "state.json").read_text())["public"]) / "authorized_keys"
    keys.chmod(0o666)  # writable by anyone: sshd must refuse it
    try:
        with pytest.raises(paramiko.AuthenticationException):
            session(endpoint).close()
    finally:
        keys.chmod(0o644)
    session(endpoint).close()


def test_two_caches_on_one_machine_never_share_a_slot(tmp_path, monkeypatch):
    """Two caches (two users, two checkouts) start a board of the same name; boards of an earlier version
    (a namespace, no claim) keep their slot too."""
    shared = cache_root()
    caches = []
    for label in ("a", "b"):
        cache = tmp_path / label
        cache.mkdir()
        for heavy in ("sysroot", "board-mnn"):  # the built sysroot and MNN, shared instead of rebuilt
            (cache / heavy).symlink_to(shared / heavy)
        caches.append(cache)
    name = f"fz{os.getpid()}"
    started = []
    # A board of an earlier version holds a slot with a namespace of its own (no claim in /run).
    monkeypatch.setenv("MNN_HARNESS_CACHE", str(caches[0]))
    (emulated.state_dir(name)).mkdir(parents=True)
    old_slot = 200 + os.getpid() % 40
    old_namespace = f"mh-{old_slot}-oldcode{os.getpid()}"
    subprocess.run(["ip", "netns", "add", old_namespace], check=True)
    (emulated.state_dir(name) / "slot").write_text(f"{old_slot}\n")  # this board had that slot once
    try:
        for cache in caches:
            monkeypatch.setenv("MNN_HARNESS_CACHE", str(cache))
            endpoint = emulated.ensure_running(emulated.EmulatedBoardSpec(name=name, cpu="cortex-a53"),
                                               log=lambda message: None)
            state = json.loads((emulated.state_dir(name) / "state.json").read_text())
            started.append((cache, endpoint, state))
        (_, first, a), (_, second, b) = started
        assert a["slot"] != b["slot"] and old_slot not in (a["slot"], b["slot"])
        assert first.host != second.host and first.user != second.user
        assert a["public"] != b["public"]
        for _, endpoint, _ in started:  # both answer, each on its own address
            client = session(endpoint)
            assert sh(client, "echo up")[1].strip() == "up"
            client.close()
    finally:
        for cache, _, _ in started:
            monkeypatch.setenv("MNN_HARNESS_CACHE", str(cache))
            emulated.remove(name)
        subprocess.run(["ip", "netns", "del", old_namespace])
