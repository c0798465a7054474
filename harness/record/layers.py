"""A layer search's record (layers.json): per board, every op against the reference's, where error enters and
which op introduced it (analysis/opdiff.py finds it; views/layers.py shows it).

LayersReport.to_dict() is layers.json's data, LayersReport.from_dict() reads it back, both through the one
serializer (serde.py): an infinite error is "inf" there, as everywhere in the harness's records.
"""

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from .serde import fields_data, load

SCHEMA = 1


def over(row: "OpRow", value: Optional[float] = None) -> bool:
    """The op's exit error (or value) is beyond its tolerance, or not a number."""
    value = row.exit if value is None else value
    return value is not None and (value > row.tolerance or math.isnan(value))


@dataclass
class OpRow:
    """One op of the board's run, against the reference."""

    index: int
    """Position in the board's execution order."""
    name: str
    type: str
    shape: list
    reduction: float
    tolerance: float
    reference_index: Optional[int] = None
    """The same op in the reference's execution order (None: the reference ran no such op)."""
    entry: Optional[float] = None
    exit: Optional[float] = None
    introduced: Optional[float] = None
    """From the replay (None: not replayed)."""
    exact: bool = False
    """entry and exit come from whole tensors (else from the summaries' probe values)."""
    nonfinite: int = 0
    """NaN/Inf values in the board's output."""
    reference_nonfinite: int = 0
    verdict: str = "ok"
    """ok, inherited (over tolerance on exit, not introduced), introduced, over (over tolerance, not
    replayed), defect (the replay contradicts the op's own entry and exit errors: not judged) or unmatched."""
    source: Optional[dict] = None
    """Mapping back to the source model (opmap.Mapping.as_dict)."""
    not_replayed: Optional[str] = None
    """Why an op whose whole tensors arrived was not replayed (its inputs cannot be fed as it read them)."""


@dataclass
class Side:
    board: str
    settings: dict
    machine: str = ""
    mnn_version: str = ""
    cpu_features: List[str] = field(default_factory=list)
    arithmetic: str = "FP32"

    @property
    def label(self) -> str:
        return f"{self.board} at {self.settings.get('precision', 'normal')} ({self.arithmetic})"


@dataclass
class BoardLayers:
    """The layer search of one board against the reference."""

    board: Side
    reference: Side
    tolerance: dict = field(default_factory=dict)
    """Tolerance as data: arithmetic, eps, fixed, steps, text."""
    sample: int = 0
    sample_name: str = ""
    samples: int = 1
    sample_firsts: List[Optional[str]] = field(default_factory=list)
    """Per traced sample, the first op over tolerance by the summaries (None: none)."""
    sample_nonfinite: List[Optional[str]] = field(default_factory=list)
    """Per traced sample, the first op whose output holds NaN/Inf the reference's does not (None: none)."""
    sample_reason: str = ""
    """Why this sample was the one replayed."""
    rows: List[OpRow] = field(default_factory=list)
    replayed: Optional[Tuple[int, int]] = None
    """First and last row replayed with whole tensors (None: none needed or none fitted)."""
    budget_mb: float = 0.0
    fetched_mb: float = 0.0
    unmatched: int = 0
    """Ops one side ran and the other did not."""
    first_introduced: Optional[int] = None
    """Row index of the first op that introduces error beyond tolerance."""
    first_nonfinite: Optional[int] = None
    """Row index of the first op whose output holds NaN/Inf the reference's does not."""
    type_shares: List[dict] = field(default_factory=list)
    """Op types by their share of the introduced error: {"type", "count", "share"}, largest first."""
    notes: List[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def headline(self) -> str:
        """The one line per board that ends a layer search."""
        who = self.board.label
        if self.error:
            return f"no answer for {who}: {self.error}"
        if self.first_introduced is not None:
            row = self.rows[self.first_introduced]
            line = f"first introduced at {row.name} ({row.type}) on {who}"
            if self.first_nonfinite is not None:
                nonfinite = self.rows[self.first_nonfinite]
                line += ("; first NaN/Inf there" if nonfinite.index == row.index
                         else f"; first NaN/Inf at {nonfinite.name} ({nonfinite.type})")
            return line
        if self.first_nonfinite is not None:
            row = self.rows[self.first_nonfinite]
            return f"first NaN/Inf at {row.name} ({row.type}) on {who}, not replayed"
        unjudged = [row for row in self.rows if row.verdict == "over" or (row.verdict == "defect" and over(row))]
        if unjudged:
            first = unjudged[0]
            why = ("whose replay is defective (it cannot be judged)" if first.verdict == "defect"
                   else "beyond what the budget replayed")
            return f"{first.name} ({first.type}) is the first op over tolerance on {who}, {why}"
        return f"not on {who}: no op introduces error beyond tolerance ({self.tolerance.get('arithmetic', '')})"


@dataclass
class LayersReport:
    """A layer search of one or more boards: the record every view reads (saved as layers.json)."""

    scenario: str
    run_dir: str
    model: dict
    reference: str
    boards: List[BoardLayers] = field(default_factory=list)
    mapping: str = ""
    """How the ops map back to the source model, in one line."""
    started_at: str = ""
    wall_s: float = 0.0

    schema: int = SCHEMA

    DERIVED = ("exit_code",)

    @property
    def exit_code(self) -> int:
        """1 when an op introduces error beyond tolerance on some board (or its output is NaN/Inf), else 3 when a
        side could not be searched, else 0."""
        if any(b.first_introduced is not None or b.first_nonfinite is not None
               or any(r.verdict == "over" or (r.verdict == "defect" and over(r)) for r in b.rows)
               for b in self.boards):
            return 1
        if any(b.failed for b in self.boards):
            return 3
        return 0

    def to_dict(self) -> dict:
        """layers.json's data."""
        return fields_data(self)

    @staticmethod
    def from_dict(data: Any, where: str = "layers.json") -> "LayersReport":
        return load(LayersReport, data, where, SCHEMA, {})
