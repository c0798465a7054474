"""report.html: one self-contained page, rendered by a real headless Chromium."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from harness.cli import main
from harness.views.html import disagreement_picture, histogram_svg, label_maps

from .conftest import scenario_text

INVENTORY = """
boards:
  x86: {kind: local}
  rep-a76: {kind: emulated, cpu: cortex-a76}
  rep-down: {kind: ssh, host: 127.0.0.1, port: 9, connect_timeout: 3}
"""
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path, *args):
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


class Resources(HTMLParser):
    """Every src/href of the page and whether it has scripts."""

    def __init__(self):
        super().__init__()
        self.links, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def test_flips_near_a_tie_are_benign_and_the_rest_hard():
    # 1 sample, 3 classes, a 1x3 "image": the reference is sure at 0, near a tie at 1, sure at 2.
    reference = np.array([[[[5.0, 1.0, 0.0]], [[0.0, 1.05, 0.0]], [[0.0, 0.0, 5.0]]]])[:, None]
    target = reference.copy()
    target[0, 0, 0, 0, 1] = 1.3                                  # pixel 1: 1 -> 0, reference margin 0.05
    target[0, 0, 0, 0, 2] = 6.0                                  # pixel 2: 2 -> 0, reference margin 5
    ref_labels, own_labels, margin = label_maps(target, reference, class_axis=1)
    assert ref_labels.shape == (1, 1, 3)
    picture, benign, hard, _ = disagreement_picture(ref_labels[0], own_labels[0], margin[0], 0.1)
    assert (benign, hard) == (1, 1)
    assert [tuple(p) for p in picture[0]] == [(70, 70, 70), (0, 215, 255), (40, 40, 230)]


def test_histogram_counts_every_element():
    difference = np.array([0.0, 0.0, 1e-7, 3e-6, 2e-6, 0.5])
    svg = histogram_svg(difference, limit=1e-3)
    counts = [int(c) for c in re.findall(r"<title>[^<]*: (\d+)</title>", svg)]
    assert sum(counts) == difference.size and "exactly 0: 2" in svg and "max_abs limit" in svg


@pytest.mark.emulated
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install -y chromium)")
def test_report_html_renders_in_chromium(tmp_path, write_file, emulated_boards):
    emulated_boards.add("rep-a76")
    inventory = write_file("inventory.yaml", INVENTORY)
    # precision low: FP16 on the A76 flips labels, so the disagreement map has something to show.
    scenario = write_file("s.yaml", scenario_text(["x86", "rep-a76", "rep-down"], precision="low",
                                                  images=("skimage:astronaut", "skimage:coffee")))
    reports = tmp_path / "reports"
    code = main(["--inventory", str(inventory), "run", str(scenario), "--reports", str(reports)])
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    page = run_dir / "report.html"
    text = page.read_text()
    assert code == 1

    # Self-contained: no script, every resource a data URI, a PNG OpenCV can decode.
    resources = Resources()
    resources.feed(text)
    assert resources.scripts == 0
    assert resources.links and all(link.startswith("data:image/png;base64,") for link in resources.links)
    import base64
    first = base64.b64decode(resources.links[0].split(",", 1)[1])
    assert cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)  # the input
    # per sample: input, x86 labels, board labels, disagreement
    assert len(resources.links) == 4 * 2

    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    table = re.search(r'<table id="verdict-table">.*?</table>', dom.stdout, re.S)
    assert table, dom.stdout[:2000]
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows[1:]]
    by_board = {c[0]: c for c in cells}
    assert list(by_board)[0] == "x86 vs onnxruntime"          # the conversion check first
    assert by_board["rep-a76"][7] == f"FAIL {summary['attribution']['rep-a76']}" == "FAIL platform"
    assert by_board["rep-down"][7] == "ERROR"
    assert "Likely causes" in dom.stdout and "FP16" in dom.stdout
    agreement = summary["comparisons"]["rep-a76"]["outputs"]["logits"]["metrics"]["argmax_agreement"]
    assert by_board["rep-a76"][6] == f"{agreement:.3%}"
    assert "flips:" in dom.stdout and "<svg" in dom.stdout

    shot = tmp_path / "report.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (2000, 1200)
    # The page drew something beyond its background: red hard flips or yellow benign ones show.
    assert (image.reshape(-1, 3).std(axis=0) > 10).all()
    shutil.copy(shot, "/tmp/mnn-harness-report-test.png")
