"""A board that lies: whatever it sends, the host stays up, bounded and honest; only that board fails.

Each hostile board is the same real sshd (an emulated board) with a workdir
of its own and, as its `python:`, a script that ignores the job and leaves
junk in the job dir: a pickled npz, a corrupt one, a zip bomb, a symlink,
a gigabyte on stdout, terminal escape sequences, result.json with wrong
types, without a hash, or lying about shapes, a result.json too big to read.
They all run at once in one `harness run` beside the x86 host, which must
finish, and summary.json must be written.
"""

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from harness.plans.bench_common import scenario_text
from harness.emulation import board as emulated

from .conftest import harness, needs_root, only_run, ssh_board, start_board, write_inventory

pytestmark = [pytest.mark.emulated, pytest.mark.faults, needs_root]

NAME = f"fh{os.getpid()}-a76"
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\x9b1m"
SHAPE = (1, 1, 8, 16, 16)
"""What tiny_segnet at 64x64 gives for one image: the honest shape."""


def zip_bomb(path: Path, member: str = "logits.npy", gib: float = 2.0) -> None:
    """An npz of ~2 MB whose member inflates to `gib` GiB of zeros (a valid npy header and CRC)."""
    count = int(gib * 2 ** 30) // 4
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
    header = buffer.getvalue()
    chunk = 1 << 24

    def deflated(data: bytes) -> bytes:  # whole blocks after a full flush: copies can be concatenated
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)

    full, rest = divmod(4 * count, chunk)
    zeros = bytes(chunk)
    data = deflated(header) + deflated(zeros) * full + (deflated(bytes(rest)) if rest else b"") + b"\x03\x00"
    crc = zlib.crc32(header)
    for _ in range(full):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    size = len(header) + 4 * count
    name = member.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0) + name
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), size,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)


def result_json(**fields) -> str:
    facts = {"schema": 1, "status": "ok", "error": None, "machine": "aarch64", "python": "3.11.2",
             "cpu_features": ["asimd"], "mnn_version": "3.6.1", "latency_ms": [1.0], "peak_rss_mb": 50.0,
             "outputs": {"logits": {"shape": list(SHAPE), "dtype": "float32"}}}
    facts.update(fields)
    return json.dumps({key: value for key, value in facts.items() if value is not ...})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


HOSTILE = {
    # mode: (what its script does in the job dir "$2", what the board's error must say)
    "pickle": ('cp "$F/outputs.npz" "$F/result.json" "$2/"', "only plain numbers are accepted"),
    "corrupt": ('cp "$F/outputs.npz" "$F/result.json" "$2/"', "not a readable npz"),
    "bomb": ('cp "$F/outputs.npz" "$F/result.json" "$2/"', "refused"),
    "symlink": ('ln -s /etc/passwd "$2/outputs.npz"; cp "$F/result.json" "$2/"', "is a symbolic link"),
    "flood": ('yes "the same line, again and again" | head -c 1073741824', "wrote no result.json"),
    "escapes": ('printf "\\033[2J\\033]0;pwned\\007 banner\\n"; cp "$F/result.json" "$2/"', "red"),
    "types": ('cp "$F/outputs.npz" "$F/result.json" "$2/"', "cpu_features must be a list of strings, got 5"),
    "nohash": ('cp "$F/outputs.npz" "$F/result.json" "$2/"', "has no outputs_sha256"),
    "lies": ('cp "$F/outputs.npz" "$F/result.json" "$2/"', "result.json says [1, 1, 8, 16, 16]"),
    "huge": ('head -c 20000000 /dev/zero > "$2/result.json"', "more than the"),
}


def prepare(mode: str, files: Path) -> None:
    """The junk a mode's script copies into the job dir, made on the host beforehand."""
    files.mkdir(parents=True)
    honest = np.zeros(SHAPE, np.float32)
    outputs = files / "outputs.npz"
    if mode == "pickle":
        np.savez(outputs, logits=np.array([{"a": 1}, None], dtype=object))
    elif mode == "corrupt":
        outputs.write_bytes(b"PK\x03\x04" + os.urandom(4000))
    elif mode == "bomb":
        zip_bomb(outputs)
    elif mode == "lies":
        np.savez(outputs, logits=np.zeros((1, 1, 8, 4, 4), np.float32))
    else:
        np.savez(outputs, logits=honest)
    digest = sha256(outputs)
    fields = {"pickle": {}, "corrupt": {}, "bomb": {}, "lies": {}, "symlink": {"outputs_sha256": "0" * 64},
              "escapes": {"status": "error", "error": f"boom {ESCAPES}", "mnn_banner": ESCAPES, "outputs": {}},
              "types": {"latency_ms": "fast", "cpu_features": 5},
              "nohash": {"outputs_sha256": ...}}.get(mode, {})
    (files / "result.json").write_text(result_json(**{"outputs_sha256": digest, **fields}))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    endpoint = start_board(NAME)
    directory = tmp_path_factory.mktemp("hostile")
    root = Path(endpoint.workdir)
    boards = {}
    for mode, (action, _) in HOSTILE.items():
        files = root / "hostile" / mode
        prepare(mode, files)
        script = root / "hostile" / f"{mode}.sh"
        # Called as the agent would be: PYTHON AGENT JOB_DIR (or PYTHON AGENT --probe OUT).
        script.write_text(f'#!/bin/sh\nF={files}\n[ "$2" = --probe ] && exit 1\n{action}\nexit 0\n')
        script.chmod(0o755)
        boards[f"evil-{mode}"] = ssh_board(endpoint, workdir=str(root / "boards" / mode), python=str(script))
    inventory = write_inventory(directory / "inventory.yaml", boards)
    scenario = directory / "s.yaml"
    scenario.write_text(scenario_text(["x86", *boards]))
    reports = directory / "reports"
    log = directory / "out.txt"
    process = harness(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports)], log)
    peak_kb = 0
    while process.poll() is None:  # the harness's own peak memory, sampled while it runs
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.05)
    try:
        yield {"code": process.returncode, "out": log.read_bytes(), "run_dir": only_run(reports),
               "peak_mb": peak_kb / 1024, "boards": boards}
    finally:
        emulated.remove(NAME)


def test_the_run_finishes_with_a_summary_and_the_host_is_unharmed(hostile_run):
    summary = json.loads((hostile_run["run_dir"] / "summary.json").read_text())
    assert hostile_run["code"] == 1, hostile_run["out"].decode(errors="replace")[-3000:]
    assert summary["boards"]["x86"]["status"] == "ok"
    assert summary["conversion"]["passed"]
    # Neither the zip bomb (2 GiB inflated) nor the gigabyte on stdout reached the host's memory.
    assert hostile_run["peak_mb"] < 1000, hostile_run["peak_mb"]
    assert (hostile_run["run_dir"] / "junit.xml").is_file() and (hostile_run["run_dir"] / "report.html").is_file()


@pytest.mark.parametrize("mode", sorted(HOSTILE))
def test_each_lie_is_that_boards_failure_with_the_reason(hostile_run, mode):
    summary = json.loads((hostile_run["run_dir"] / "summary.json").read_text())
    board = summary["boards"][f"evil-{mode}"]
    assert board["status"] == "failed", board
    assert HOSTILE[mode][1] in board["error"], board["error"]
    assert not summary["comparisons"][f"evil-{mode}"]["passed"]


def test_nothing_from_a_board_reaches_the_terminal_as_a_control_sequence(hostile_run):
    out = hostile_run["out"]
    assert b"\x1b" not in out and b"\x07" not in out and "\x9b".encode() not in out
    # The text is there, and each escape sequence is gone whole: no printable remainder ("]0;pwned[2J").
    flat = b" ".join(out.split())
    assert b"boom red" in flat and b'MNN says "red"' in flat
    summary_text = (hostile_run["run_dir"] / "summary.json").read_text()
    assert "\\u001b" not in summary_text and "\\u0007" not in summary_text and "\"error\": \"boom red\"" in summary_text
    log = (hostile_run["run_dir"] / "targets" / "evil-escapes" / "agent.log").read_text()
    assert "\x1b" not in log and "banner" in log and "pwned" not in log


@pytest.mark.parametrize("raw, shown", [
    ("boom \x1b]0;PWNED-TITLE\x07\x1b[2J after", "boom  after"),  # a window title (OSC), then clear the screen
    ("\x1b[31mred\x1b[0m \x9b1mbold", "red bold"),  # colours, 7-bit and 8-bit CSI
    ("a\x1b]0;a title never ended\nnext line", "a\nnext line"),  # an unended string: up to the line's end
    ("q\x1bP1;2qdcs\x1b\\z\x1b(B", "qz"),  # DCS up to its ST; a charset switch
    ("tab\tand\nnewline stay\x07\x1b", "tab\tand\nnewline stay"),
])
def test_an_escape_sequence_is_dropped_whole(raw, shown):
    from harness.core.board_files import clean_text

    assert clean_text(raw) == shown


def test_the_flood_is_kept_to_its_last_megabyte(hostile_run):
    log = hostile_run["run_dir"] / "targets" / "evil-flood" / "agent.log"
    assert log.stat().st_size <= (1 << 20) + 200
    assert log.read_text().startswith(f"[{(1 << 30) - (1 << 20)} bytes of the agent's output before this")


def test_a_zip_bomb_is_refused_by_its_members_declared_sizes_before_inflating(tmp_path):
    """Even under a generous file cap (shapes unknown): the member's declared size decides, nothing inflates."""
    import resource

    from harness.core.board_files import load_npz
    from harness.core.errors import BoardResultError

    bomb = tmp_path / "outputs.npz"
    zip_bomb(bomb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BoardResultError, match="refused before loading"):
        load_npz(bomb, ["logits"], limit=64 << 20)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 << 10  # KiB: under 100 MB more
    # A member that lies about its size in the zip is caught by its npy header (or its CRC), unread too.
    liar = tmp_path / "liar.npz"
    np.savez(liar, logits=np.zeros(1000, np.float32))
    data = bytearray(liar.read_bytes())
    data[data.index(b"(1000,)"):data.index(b"(1000,)") + 7] = b"(9999,)"
    liar.write_bytes(bytes(data))
    with pytest.raises(BoardResultError, match="does not fit"):
        load_npz(liar, ["logits"], limit=64 << 20)


def test_the_agent_never_follows_a_symlink_in_its_job_dir(tmp_path):
    """The board side: a job.json or inputs planted as symlinks are refused, nothing is read through them."""
    agent = Path(__file__).resolve().parent.parent.parent / "agent" / "mnn_agent.py"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"model": "m.mnn", "inputs": "i.npz", "input_names": ["x"], "output_names": ["y"]}))
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").symlink_to(secret)
    completed = subprocess.run([sys.executable, str(agent), str(job)],
                               capture_output=True, text=True, timeout=120)
    result = json.loads((job / "result.json").read_text())
    assert completed.returncode == 1 and result["status"] == "error"
    assert "ELOOP" in result["error"] or "symbolic links" in result["error"] or "not a regular file" in result["error"]
    assert not (job / "outputs.npz").exists()
