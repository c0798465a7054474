"""Shared fixtures: small scenarios and inventories written into a temp directory, boards stopped by pid."""

from pathlib import Path

import pytest

from harness.bench.common import TINY_SEGNET, scenario_text  # noqa: F401  (the light scenario, shared)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_file(tmp_path):
    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


@pytest.fixture(scope="session")
def emulated_boards():
    """Names of emulated boards the tests started; each is stopped by pid at the end of the session."""
    started = set()
    yield started
    from harness.emulation import board
    for name in started:
        board.stop(name)
