"""Shared fixtures: small scenarios and inventories written into a temp directory, boards stopped by pid."""

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_SEGNET = REPO / "scenarios" / "models" / "tiny_segnet.py"


def scenario_text(targets, precision="normal", size=64, images=("skimage:astronaut",), tolerance="",
                  extra_run=""):
    return textwrap.dedent(f"""\
        name: tiny
        model:
          build: {TINY_SEGNET}
          build_args: {{height: {size}, width: {size}, num_classes: 8, seed: 0}}
        inputs:
          images: [{", ".join(images)}]
        preprocess:
          resize: {{height: {size}, width: {size}, interpolation: area}}
          mean: [0.485, 0.456, 0.406]
          std: [0.229, 0.224, 0.225]
        run: {{precision: {precision}{extra_run}}}
        targets: [{", ".join(targets)}]
        tolerance: {{max_abs: 1e-3{tolerance}}}
        outputs:
          logits: {{kind: class_logits, tolerance: {{min_argmax_agreement: 0.99}}}}
        """)


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
