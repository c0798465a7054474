"""A bisect's record (bisect.json): the MNN releases tried on a board, each with its verdict and the numbers it
stands on, and the answer in one line. Saved and read back through the one serializer (serde.py)."""

from dataclasses import dataclass, field
from typing import Any, List, Optional

from .serde import fields_data, load

SCHEMA = 1
PASSED, FAILED, NO_VERDICT = "PASS", "FAIL", "ERROR"


@dataclass
class Step:
    """One release tried: what ran, its verdict and the numbers it stands on."""

    version: str
    runtime: str
    converter: str
    verdict: str
    """PASS, FAIL or ERROR (could not be judged)."""
    metric: Optional[str] = None
    """The board's headline against x86: its worst label metric, else max abs."""
    value: Optional[float] = None
    conversion_metric: Optional[str] = None
    conversion_value: Optional[float] = None
    """x86 (that release) against the source model."""
    why: str = ""
    """The first broken limit (or the error), when not PASS."""
    mnn_ran: Optional[str] = None
    """The version MNN itself reported on the board."""
    run_id: str = ""


@dataclass
class BisectRecord:
    scenario: str
    board: str
    mode: str
    """"runtime" or "converter": which half of MNN moves."""
    fixed: str
    """The version of the half that stays."""
    versions: List[str]
    steps: List[Step] = field(default_factory=list)
    """The releases tried, in release order."""
    cross: Optional[Step] = None
    """The first failing release with the other half at the last passing one's version."""
    flip: Optional[List[str]] = None
    """(last passing, first failing), or None."""
    line: str = ""
    """The answer in one line."""
    exit_code: int = 0
    interrupted: Optional[str] = None
    schema: int = SCHEMA

    def to_dict(self) -> dict:
        return fields_data(self)

    @staticmethod
    def from_dict(data: Any, where: str = "bisect.json") -> "BisectRecord":
        return load(BisectRecord, data, where, SCHEMA, {})
