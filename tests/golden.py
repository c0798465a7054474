"""Golden text of terminal reports: the words a user reads, with every number masked.

Numbers, run ids, hashes and paths change from run to run and machine to
machine; the words (which board, which output, which limit, which cause, the
last line) must not. `MNN_HARNESS_UPDATE_GOLDEN=1 pytest ...` rewrites the
goldens under tests/golden/ after a deliberate change; review the diff.
"""

import os
import re
from pathlib import Path
from typing import Dict

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

VERSION = re.compile(r"\b\d+\.\d+\.\d+\b")
"""Versions (MNN 3.4.1) are words of the report, not numbers to mask."""
_MASKS = [
    (re.compile(r"\d{8}-\d{6}-[\w.-]+?-[0-9a-f]{4}\b"), "RUN-ID"),  # run ids
    (re.compile(r"\b[0-9a-f]{12}\b"), "SHA"),                        # short hashes
    (re.compile(r"(?<!exit )\b\d+(\.\d+)?(e[+-]?\d+)?"), "#"),        # numbers of every kind (not the exit code)
    (re.compile(r"[ \t]+"), " "),                                     # table alignment follows the numbers
    (re.compile(r"[─━]{3,}"), "───"),                                 # rules as wide as the table
]
BOARD_FACTS = re.compile(r"^(Boards|results:)")
"""The boards table and the notes under it hold the machine's own facts (CPU features, latency): left out."""


def masked(text: str, replace: Dict[str, str]) -> str:
    for old, new in replace.items():
        text = text.replace(old, new)
    lines, skipping = [], False
    for line in text.splitlines():
        if line.startswith("Boards"):
            skipping = True
        if line.startswith(("results:", "FAIL", "PASS", "BOARD ERROR")):
            skipping = False
        if line.startswith(("results:", "junit.xml:", "report.html:")) or skipping:
            continue
        versions = VERSION.findall(line)
        line = VERSION.sub("@VERSION@", line)
        for pattern, mask in _MASKS:
            line = pattern.sub(mask, line)
        for version in versions:
            line = line.replace("@VERSION@", version, 1)
        lines.append(line.strip())
    return "\n".join(lines) + "\n"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / f"{name}.txt"
    if os.environ.get("MNN_HARNESS_UPDATE_GOLDEN"):
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"no golden {path}: run with MNN_HARNESS_UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(), f"{name}: the report's words changed; if on purpose, MNN_HARNESS_UPDATE_GOLDEN=1"
