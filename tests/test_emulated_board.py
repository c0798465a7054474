"""The emulated board is a real sshd: host keys are checked, sessions run aarch64 Python, stop is by pid."""

import os

import paramiko
import pytest

from harness.emulation import board
from harness.errors import BoardError
from harness.inventory import BoardSpec
from harness.results import TargetResult
from harness.targets.ssh import SshTarget

pytestmark = pytest.mark.emulated

SPEC = board.EmulatedBoardSpec(name="t-keys-a53", cpu="cortex-a53")


@pytest.fixture(scope="module")
def endpoint():
    yield board.ensure_running(SPEC, log=lambda m: None)
    board.stop(SPEC.name)


def connect(endpoint, known_hosts=None, policy=paramiko.RejectPolicy()):
    client = paramiko.SSHClient()
    if known_hosts:
        client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(policy)
    client.connect(endpoint.host, endpoint.port, endpoint.user, key_filename=endpoint.key_filename,
                   look_for_keys=False, allow_agent=False, timeout=10)
    return client


def test_board_runs_aarch64_mnn_with_its_cpu_model(endpoint):
    client = connect(endpoint, endpoint.known_hosts)
    _, stdout, _ = client.exec_command("python3 -c 'import platform, MNN; print(platform.machine(), MNN.version())'")
    lines = stdout.read().decode().split("\n")
    client.close()
    assert lines[0] == "aarch64 3.6.1"
    assert "fp16:0" in lines[1].replace(" ", "")  # a Cortex-A53 has no FP16 arithmetic


def test_sftp_round_trip(endpoint, tmp_path):
    client = connect(endpoint, endpoint.known_hosts)
    sftp = client.open_sftp()
    payload = os.urandom(100_000)
    (tmp_path / "up").write_bytes(payload)
    sftp.put(str(tmp_path / "up"), "work/roundtrip.bin")
    sftp.get("work/roundtrip.bin", str(tmp_path / "down"))
    client.close()
    assert (tmp_path / "down").read_bytes() == payload


def test_unknown_host_key_is_refused(endpoint, tmp_path):
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(endpoint, known_hosts=None)
    # The harness's own SSH target says what to do about it.
    spec = BoardSpec(name="stranger", kind="ssh", host=endpoint.host, port=endpoint.port, user=endpoint.user,
                     key=endpoint.key_filename, known_hosts=str(tmp_path / "empty_known_hosts"))
    target = SshTarget(spec)
    with pytest.raises(BoardError, match="trust_on_first_use"):
        target.connect(target.endpoint(), TargetResult("stranger", "ssh", "unusable"))


def test_trust_on_first_use_records_the_key_and_says_so(endpoint, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    spec = BoardSpec(name="tofu", kind="ssh", host=endpoint.host, port=endpoint.port, user=endpoint.user,
                     key=endpoint.key_filename, known_hosts=str(known_hosts), trust_on_first_use=True)
    result = TargetResult("tofu", "ssh", "unusable")
    target = SshTarget(spec)
    target.connect(target.endpoint(), result)
    target.close()
    assert any("accepted on first use" in note for note in result.notes)
    assert known_hosts.read_text().split()[1:] == open(endpoint.known_hosts).read().split()[1:]


def test_stop_by_pid_and_restart_keeps_host_key(endpoint):
    pid = board.status(SPEC.name)["pid"]
    assert board.stop(SPEC.name)
    assert not os.path.exists(f"/proc/{pid}") or b"sshd" not in open(f"/proc/{pid}/cmdline", "rb").read()
    assert board.status(SPEC.name)["running"] is False
    again = board.ensure_running(SPEC, log=lambda m: None)
    assert open(again.known_hosts).read() == open(endpoint.known_hosts).read()
