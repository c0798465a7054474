"""requirements.lock: the exact versions a clone installs (`make setup`, CI), read and written here.

The package's metadata (pyproject.toml) says only what the harness needs (lower bounds), so that it installs
beside a user's own packages; the lock says what the clone runs, so that the tests give the same answers
tomorrow. `make lock` rewrites it from pip's own resolver (a dry run, no install), keeping every locked version
the ranges still allow; `make lock UPGRADE=1` takes the newest instead.

    python -m tests.lockfile REPORT.json > requirements.lock      (REPORT: `pip install --dry-run --report`)
"""

import json
import re
import sys
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
EXTRAS = ("model", "test", "labgrid")
"""The extras the clone installs: everything its tests and demos use."""
HEADER = """\
# The exact versions of mnn-harness's dependencies (and theirs) that `make setup` and CI install, resolved
# by pip for CPython {python} on {platform}. Written by `make lock` from pyproject.toml: do not edit by hand.
# The package's own metadata keeps ranges, so a `pip install mnn-harness` fits beside other packages.
"""


def canonical(name: str) -> str:
    """PEP 503's normal form: `PyYAML` and `pyyaml`, `ml_dtypes` and `ml-dtypes` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> Dict[str, str]:
    """canonical name -> exact version of every `name==version` line."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not match:
            raise ValueError(f"{path}:{number}: {line!r} is not name==version")
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def lock_text(report: dict) -> str:
    """The lock from a pip resolver report, without the harness itself; local labels (+cpu) kept out, as
    `==2.13.0` matches 2.13.0+cpu where a local index has that build and the plain release elsewhere."""
    environment = report.get("environment", {})
    lines = []
    for item in report["install"]:
        name = item["metadata"]["name"]
        if canonical(name) == "mnn-harness":
            continue
        lines.append(f"{canonical(name)}=={item['metadata']['version'].split('+')[0]}")
    header = HEADER.format(python=environment.get("python_full_version", "?"),
                           platform=environment.get("platform_machine", "?"))
    return header + "\n".join(sorted(lines)) + "\n"


if __name__ == "__main__":
    sys.stdout.write(lock_text(json.loads(Path(sys.argv[1]).read_text())))
