"""The board side of a run: a new workdir, leftovers of dead runs, a bounded store, a verified agent, a full
disk, paths that stay inside the workdir. Real sshd, real agent, real files on the board."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.bench.common import scenario_text
from harness.emulation import board as emulated
from harness.core.errors import BoardError
from harness.execution.targets.remote import BoardPaths, safe_name

from .conftest import (needs_root, only_run, processes_naming, run_harness, ssh_board, start_board, summary_of,
                       wait_for, write_inventory)

NAME = f"fb{os.getpid()}-a53"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    endpoint = start_board(NAME, cpu="cortex-a53")
    directory = tmp_path_factory.mktemp("board-side")
    scenario = directory / "s.yaml"
    scenario.write_text(scenario_text(["x86", "arm"]))
    try:
        yield {"endpoint": endpoint, "dir": directory, "scenario": scenario, "workdir": Path(endpoint.workdir)}
    finally:
        emulated.remove(NAME)


def run(rig, tmp_path, label, **board):
    inventory = write_inventory(tmp_path / f"{label}.yaml", {"arm": ssh_board(rig["endpoint"], **board)})
    code = run_harness(["--inventory", str(inventory), "run", str(rig["scenario"]), "--reports",
                        str(tmp_path / label), "--lock-timeout", "60"], tmp_path / f"{label}.txt")
    return code, summary_of(tmp_path / label), (tmp_path / f"{label}.txt").read_text()


@pytest.mark.emulated
@pytest.mark.faults
@needs_root
def test_a_board_whose_workdir_does_not_exist_yet_runs_at_once_and_boards_says_so(rig, tmp_path):
    fresh = rig["workdir"] / "after-a-reboot" / "mnn-harness"
    code, summary, out = run(rig, tmp_path, "fresh", workdir=str(fresh))
    assert code == 0, out
    board = summary["boards"]["arm"]
    assert board["timings"]["lock"] < 5  # not the --lock-timeout it used to wait out
    assert any("did not exist" in note for note in board["notes"])
    assert (fresh / "store").is_dir() and not (fresh / "lock").exists()
    # `harness boards` makes it too, and says so.
    other = rig["workdir"] / "another-new-one"
    inventory = write_inventory(tmp_path / "boards.yaml", {"arm": ssh_board(rig["endpoint"], workdir=str(other))})
    listing = subprocess.run([os.sys.executable, "-m", "harness.cli", "--inventory", str(inventory), "boards"],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "80"})
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert f"its workdir {other} did not exist" in " ".join(listing.stdout.split())
    assert other.is_dir()


@pytest.mark.emulated
@pytest.mark.faults
@needs_root
def test_leftovers_are_cleaned_the_store_is_bounded_and_verified(rig, tmp_path):
    workdir = rig["workdir"] / "kept"
    code, first, out = run(rig, tmp_path, "first", workdir=str(workdir))
    assert code == 0, out
    store = workdir / "store"
    # What dead runs leave: a job dir, a partial upload, a lock moved aside; and a live run's agent.
    stale = workdir / "jobs" / "dead-run-000001"
    stale.mkdir()
    (stale / "outputs.npz").write_bytes(b"x" * 1000)
    (store / ("e" * 64 + ".mnn.partial")).write_bytes(b"half")
    (workdir / "lock.stale-1-2").mkdir()
    live = workdir / "jobs" / "live-run-000002"
    live.mkdir()
    sleeper = subprocess.Popen(["sh", "-c", "sleep 600; :", str(live)], start_new_session=True)
    (live / "agent.pid").write_text(f"{sleeper.pid}\n")
    # Old store files beyond the cap, least recently used first.
    old = []
    for index, letter in enumerate("abc"):
        path = store / (letter * 64 + ".npz")
        path.write_bytes(os.urandom(400_000))
        os.utime(path, (time.time() - 86400 * (3 - index),) * 2)
        old.append(path)
    # The stored agent and model changed on the board, same size: caught by their hashes, sent again.
    (agent,) = store.glob("mnn_agent-*.pyz")
    (model,) = store.glob("*.mnn")
    for path in (agent, model):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    owner = workdir.stat()
    for path in [stale, *stale.iterdir(), *store.iterdir(), workdir / "lock.stale-1-2", live, *live.iterdir()]:
        os.lchown(path, owner.st_uid, owner.st_gid)  # as the board's user would have left them
    try:
        code, second, out = run(rig, tmp_path, "second", workdir=str(workdir), store_max_mb=0.5)
        assert code == 0, out
        notes = " ".join(second["boards"]["arm"]["notes"])
        assert "removed 1 stale job dir(s) and 1 partial upload(s)" in notes, notes
        assert "left 1 job dir(s) whose agent still runs" in notes
        assert f"stored {agent.name}, {model.name} did not match its SHA-256 on the board: sent again" in notes
        assert "evicted" in notes
        assert not stale.exists() and not list(store.glob("*.partial")) and not (workdir / "lock.stale-1-2").exists()
        assert live.is_dir() and processes_naming(str(live)) == [sleeper.pid]
        assert not any(path.exists() for path in old)
        assert second["boards"]["arm"]["bytes_uploaded"] >= agent.stat().st_size + model.stat().st_size
        assert sum(path.stat().st_size for path in store.iterdir()) <= 0.5 * 1024 * 1024
    finally:
        sleeper.kill()
        sleeper.wait()
    # `harness boards --clean`: the dead job dir goes now too, and the store down to a tighter cap.
    inventory = write_inventory(tmp_path / "clean.yaml", {"arm": ssh_board(rig["endpoint"], workdir=str(workdir),
                                                                            store_max_mb=0.05)})
    cleaned = subprocess.run([os.sys.executable, "-m", "harness.cli", "--inventory", str(inventory), "boards",
                              "--clean"], capture_output=True, text=True, timeout=300)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    said = " ".join(cleaned.stdout.split())  # whatever the width, the words are there
    assert "cleaned arm: freed" in said and "1 stale job dir(s)" in said and "store file(s) evicted" in said
    assert not live.exists()
    assert sum(path.stat().st_size for path in store.iterdir()) <= 0.05 * 1024 * 1024


@pytest.mark.emulated
@pytest.mark.faults
@needs_root
def test_a_full_disk_says_so_with_the_free_space(rig, tmp_path):
    """A 64 kB file system as the board's workdir: the upload cannot fit."""
    tiny = rig["workdir"] / "tiny"
    tiny.mkdir()
    state = json.loads((emulated.state_dir(NAME) / "state.json").read_text())
    sshd = emulated.status(NAME)["pid"]
    user = state["user"]
    # Mounted in the board's own mount namespace only (the host does not see it), owned by the board's user.
    subprocess.run(["nsenter", "-t", str(sshd), "-m", "mount", "-t", "tmpfs", "-o",
                    f"size=64k,uid={user},gid={user},mode=0700", "tmpfs", str(tiny)], check=True)
    try:
        code, summary, out = run(rig, tmp_path, "full", workdir=str(tiny / "w"))
    finally:
        subprocess.run(["nsenter", "-t", str(sshd), "-m", "umount", str(tiny)], check=True)
    error = summary["boards"]["arm"]["error"]
    assert code == 3, out
    assert "the board's disk is full" in error and "MB free in" in error, error
    assert "size mismatch" not in error


@pytest.mark.faults
def test_remote_paths_stay_inside_the_workdir():
    paths = BoardPaths("/tmp/mnn-harness/")
    assert paths.workdir == "/tmp/mnn-harness"
    assert paths.job_dir("run-1_a.b") == "/tmp/mnn-harness/jobs/run-1_a.b"
    for bad in ("../escape", "..", "a/b", "", "-rf", ".hidden", "x" * 300):
        with pytest.raises(BoardError):
            paths.job_dir(bad)
    with pytest.raises(BoardError):
        paths.under("/tmp/mnn-harness/../etc")
    with pytest.raises(BoardError):
        paths.under("/tmp/mnn-harness")  # the workdir itself is never removed
    for workdir in ("/", "/tmp/../..", "", "/tmp/x/../../.."):
        with pytest.raises(BoardError):
            BoardPaths(workdir)
    # A run id (from a scenario name) becomes a job id of safe characters only.
    assert safe_name("2026-../../etc/passwd me;rm -rf") == "2026-.._.._etc_passwd_me_rm_-rf"
    assert "/" not in safe_name("../x") and not safe_name("../x").startswith(".")
