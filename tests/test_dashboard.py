"""reports/index.html: two real nights, the second regresses, and the page shows that first, in a real Chromium."""

import re
import shutil

import cv2
import pytest

from harness.cli import main

from .conftest import scenario_text
from .test_html_report import CHROMIUM, Resources, chromium

W8 = '  converter_args: [--weightQuantBits, "8"]\n  build_args:'


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install -y chromium)")
def test_the_dashboard_shows_the_last_nights_regression_first(tmp_path, write_file, capsys):
    # Two scenarios on the x86 host and its source model (real MNN, real ONNX Runtime; seconds).
    write_file("aa.yaml", scenario_text(["x86"], name="aa-steady"))
    write_file("zz.yaml", scenario_text(["x86"], name="zz-changing"))
    nightly = write_file("nightly.yaml", "runs:\n  - scenario: aa.yaml\n  - scenario: zz.yaml\n")
    reports = tmp_path / "reports"
    assert main(["nightly", str(nightly), "--reports", str(reports)]) == 0
    assert (reports / "index.html").is_file()
    # Night 2: zz-changing converts with 8-bit weights, so MNN on x86 moves away from ONNX Runtime.
    write_file("zz.yaml", scenario_text(["x86"], name="zz-changing").replace("  build_args:", W8))
    code = main(["nightly", str(nightly), "--reports", str(reports)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"dashboard: {reports / 'index.html'}" in out.replace("\n", "")
    page = reports / "index.html"
    text = page.read_text()

    # Self-contained: no script, nothing fetched; the only links are the nights' report.html pages.
    resources = Resources()
    resources.feed(text)
    assert resources.scripts == 0
    assert resources.links and all(re.fullmatch(r"[\w.-]+/report\.html", link) for link in resources.links)
    assert all((reports / link).is_file() for link in resources.links)

    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    keys = re.findall(r'<section class="card ([\w-]*)" data-key="([^"]+)"', dom.stdout)
    # The regressed conversion check comes first, though "zz" sorts after "aa".
    assert keys[0] == ("regression", "zz-changing / x86 vs onnxruntime / logits"), keys
    assert ("", "aa-steady / x86 vs onnxruntime / logits") in keys
    news = re.search(r'<ul class="news" id="news">(.*?)</ul>', dom.stdout, re.S).group(1)
    assert news.index("zz-changing") < news.find("aa-steady") if "aa-steady" in news else "zz-changing" in news
    assert "regression: max_abs" in news and "NIGHT FAILED" in dom.stdout
    first_card = dom.stdout[dom.stdout.index('data-key="zz-changing'):]
    first_card = first_card[:first_card.index("</section>")]
    # Two charts (max abs, log; argmax agreement) over the two nights, each point with its night and value.
    assert first_card.count("<svg") == 2 and 'data-metric="argmax_agreement"' in first_card
    assert len(re.findall(r"<circle", first_card)) == 4
    assert len(re.findall(r'href="[^"]+/report\.html"', first_card)) == 2  # a mark per night, linked

    shot = tmp_path / "index.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,900", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (900, 1000) and (image.reshape(-1, 3).std(axis=0) > 10).all()
    shutil.copy(shot, "/tmp/mnn-harness-dashboard-test.png")
