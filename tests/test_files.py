"""core/files.py: the one way the host writes a file whole or not at all, builds a directory, and locks."""

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from harness.core.files import building, lock_file, locked, replacing, write_atomic


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    write_atomic(path, "old")
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer died")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_writers_of_one_file_never_share_a_temporary(tmp_path):
    path = tmp_path / "x.json"
    with replacing(path) as first, replacing(path) as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert path.read_text() == "1"  # the outer one ends last: the last complete write wins, whole


def test_modes_and_bytes(tmp_path):
    path = write_atomic(tmp_path / "sub" / "agent.pyz", b"\x00PK", 0o755)
    assert path.read_bytes() == b"\x00PK" and (path.stat().st_mode & 0o777) == 0o755
    assert (write_atomic(tmp_path / "a.txt", "é").stat().st_mode & 0o777) == 0o644


def test_building_replaces_an_incomplete_entry_and_removes_itself_on_failure(tmp_path):
    final = tmp_path / "models" / "abc"
    final.mkdir(parents=True)
    (final / "half").write_text("left by an interrupted harness")
    (final.parent / ".abc.building-dead").mkdir()  # a build that died holding the lock
    with building(final) as directory:
        (directory / "model.onnx").write_text("whole")
    assert sorted(p.name for p in final.iterdir()) == ["model.onnx"]
    assert [p.name for p in final.parent.iterdir()] == ["abc"]
    with pytest.raises(ValueError):
        with building(tmp_path / "models" / "def") as directory:
            (directory / "model.onnx").write_text("half")
            raise ValueError("the converter failed")
    assert [p.name for p in final.parent.iterdir()] == ["abc"]


def _hold(path: str, seconds: float, started) -> None:
    with locked(Path(path)):
        started.set()
        time.sleep(seconds)


def test_locked_excludes_another_process(tmp_path):
    path = lock_file(tmp_path / "entry")
    assert path.name == "entry.lock"
    started = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(str(path), 1.0, started))
    holder.start()
    try:
        assert started.wait(10)
        begin = time.monotonic()
        with locked(path):
            waited = time.monotonic() - begin
        assert waited >= 0.5, "the lock was taken while another process held it"
    finally:
        holder.join(10)
    assert holder.exitcode == 0 and os.path.exists(path)
