"""The emulated board is a real sshd: host keys are checked, sessions run aarch64 Python, stop is by pid.

The sysroot and MNN come from the shared cache (built once per machine);
the boards are throw-away, named after this process so that test runs of
different people never stop each other's boards, and removed at the end.
"""

import os
import subprocess
from pathlib import Path

import paramiko
import pytest

from harness.emulation import board
from harness.core.errors import BoardError
from harness.config.inventory import SshBoard
from harness.core.results import TargetResult
from harness.execution.targets.ssh import SshTarget

pytestmark = pytest.mark.emulated

SPEC = board.EmulatedBoardSpec(name=f"test-a53-{os.getpid()}", cpu="cortex-a53")


@pytest.fixture(scope="module")
def endpoint():
    try:
        yield board.ensure_running(SPEC, log=lambda message: None)
    finally:
        board.remove(SPEC.name)


def connect(endpoint, known_hosts, key_filename=None) -> paramiko.SSHClient:
    """A client that checks the host key like the harness does: only known_hosts, RejectPolicy for the rest."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(endpoint.host, endpoint.port, endpoint.user, key_filename=key_filename or endpoint.key_filename,
                   look_for_keys=False, allow_agent=False, timeout=10)
    return client


def run(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, _ = client.exec_command(command, timeout=60)
    output = stdout.read().decode()
    assert stdout.channel.recv_exit_status() == 0, output
    return output


def test_board_runs_aarch64_mnn_on_its_cpu_model(endpoint):
    client = connect(endpoint, endpoint.known_hosts)
    try:
        output = run(client, "python3 -c 'import platform, MNN; print(platform.machine(), MNN.version())'")
        home = run(client, 'echo "$HOME"; pwd').split()
    finally:
        client.close()
    lines = [line.strip() for line in output.splitlines()]
    # MNN prints its feature line from C at import; where it lands among Python's lines varies.
    assert "aarch64 3.6.1" in lines
    features = next(line for line in lines if line.startswith("The device supports"))
    assert "fp16:0" in features.replace(" ", "")  # a Cortex-A53 has no FP16 arithmetic
    assert home == [str(Path(endpoint.workdir).parent)] * 2


def test_sftp_round_trip(endpoint, tmp_path):
    client = connect(endpoint, endpoint.known_hosts)
    try:
        sftp = client.open_sftp()
        payload = os.urandom(100_000)
        (tmp_path / "up").write_bytes(payload)
        sftp.put(str(tmp_path / "up"), f"{endpoint.workdir}/roundtrip.bin")
        sftp.get(f"{endpoint.workdir}/roundtrip.bin", str(tmp_path / "down"))
    finally:
        client.close()
    assert (tmp_path / "down").read_bytes() == payload


def test_host_key_is_really_checked(endpoint, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(endpoint, empty)
    # The same host and port with another key (the client's own): a different machine, refused.
    impostor = tmp_path / "impostor_known_hosts"
    host_field = open(endpoint.known_hosts).read().split()[0]
    key_type, key = Path(endpoint.key_filename + ".pub").read_text().split()[:2]
    impostor.write_text(f"{host_field} {key_type} {key}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        connect(endpoint, impostor)
    # Key-only login: a key that is not the board's authorized key gets nowhere.
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(paramiko.AuthenticationException):
        connect(endpoint, endpoint.known_hosts, key_filename=str(stranger))


def test_loopback_board_has_its_port_in_known_hosts():
    spec = board.EmulatedBoardSpec(name=f"test-lo-{os.getpid()}", cpu="cortex-a76", network="loopback")
    try:
        endpoint = board.ensure_running(spec, log=lambda message: None)
        assert endpoint.host == "127.0.0.1"
        assert open(endpoint.known_hosts).read().startswith(f"[127.0.0.1]:{endpoint.port} ssh-ed25519 ")
        client = connect(endpoint, endpoint.known_hosts)
        try:
            assert run(client, "echo ok").strip() == "ok"
        finally:
            client.close()
    finally:
        board.remove(spec.name)


def test_bad_specs_are_refused_before_anything_starts():
    with pytest.raises(BoardError, match="board name"):
        board.EmulatedBoardSpec(name="../escape")
    with pytest.raises(BoardError, match="qemu has no CPU model"):
        board.ensure_running(board.EmulatedBoardSpec(name=f"test-bad-{os.getpid()}", cpu="cortex-a99"))
    assert board.status(f"test-bad-{os.getpid()}") is None


def test_stop_by_pid_and_restart_keeps_identity_and_follows_the_spec(endpoint):
    before = board.status(SPEC.name)
    pid = before["pid"]
    assert before["running"] and before["cpu"] == "cortex-a53"
    assert board.stop(SPEC.name)
    assert not os.path.exists(f"/proc/{pid}") or str(board.state_dir(SPEC.name)).encode() not in open(
        f"/proc/{pid}/cmdline", "rb").read()
    assert board.status(SPEC.name)["running"] is False
    assert board.stop(SPEC.name) is False
    known_hosts = open(endpoint.known_hosts).read()
    again = board.ensure_running(SPEC, log=lambda message: None)
    assert (again.host, again.port) == (endpoint.host, endpoint.port)
    assert open(again.known_hosts).read() == known_hosts
    # Another CPU model: the running board restarts with it, keeping its address and host key.
    changed = board.ensure_running(board.EmulatedBoardSpec(name=SPEC.name, cpu="cortex-a76"), log=lambda m: None)
    after = board.status(SPEC.name)
    assert after["cpu"] == "cortex-a76" and after["running"] and after["pid"] != pid
    assert open(changed.known_hosts).read() == known_hosts


# The harness's own SSH target against this real sshd: what a user meets with an unknown board.


def test_every_board_kind_has_its_session_class():
    """The inventory's kinds and the board sessions that serve them, one class per kind: an emulated board is a
    target of its own (an SSH board this machine starts)."""
    from harness.config.inventory import KINDS
    from harness.execution.targets import TARGET_KINDS, target_class
    from harness.execution.targets.ssh import EmulatedTarget

    assert set(TARGET_KINDS) == set(KINDS) | {"source"}
    assert target_class("emulated") is EmulatedTarget and issubclass(EmulatedTarget, SshTarget)
    assert target_class("ssh") is SshTarget
    with pytest.raises(ValueError, match="no board session serves kind 'serial'"):
        target_class("serial")


def test_ssh_target_refuses_an_unknown_host_key_and_names_the_fix(endpoint, tmp_path):
    spec = SshBoard(name="stranger", kind="ssh", host=endpoint.host, port=endpoint.port, user=endpoint.user,
                    mnn="system", key=endpoint.key_filename, known_hosts=str(tmp_path / "empty_known_hosts"))
    target = SshTarget(spec)
    with pytest.raises(BoardError, match="trust_on_first_use"):
        target.open_board(TargetResult("stranger", "ssh", "unusable"))


def test_ssh_target_trust_on_first_use_records_the_key_and_says_so(endpoint, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    spec = SshBoard(name="tofu", kind="ssh", host=endpoint.host, port=endpoint.port, user=endpoint.user,
                    mnn="system", key=endpoint.key_filename, known_hosts=str(known_hosts), trust_on_first_use=True)
    result = TargetResult("tofu", "ssh", "unusable")
    target = SshTarget(spec)
    target.open_board(result)
    target.close()
    assert any("accepted on first use" in note for note in result.notes)
    assert known_hosts.read_text().split()[1:] == open(endpoint.known_hosts).read().split()[1:]


def test_a_helper_scripts_output_that_trails_its_exit_status_is_still_read(endpoint):
    """sshd sends the exit status when the script's process is reaped, at times before the last of its output (a
    provisioning's "MNN-HARNESS-SITE" line was lost so under load): the harness reads on to the channel's EOF.
    A child that outlives the shell and writes a second later makes that order certain."""
    spec = SshBoard(name="trailing", kind="ssh", host=endpoint.host, port=endpoint.port, user=endpoint.user,
                    mnn="system", key=endpoint.key_filename, known_hosts=endpoint.known_hosts)
    target = SshTarget(spec)
    target.open_board(TargetResult("trailing", "ssh", "unusable"))
    try:
        run = target.transport.exec_script('echo first; (sleep 1; echo "$1") &', ["trailing line"], "a trailing echo")
    finally:
        target.close()
    assert run.status == 0 and run.stdout.split() == ["first", "trailing", "line"], run
