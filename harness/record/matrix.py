"""A matrix's record (matrix.json): its settings, each a run of its own with a record of its own.

MatrixRecord.to_dict() is matrix.json's data, MatrixRecord.from_dict() reads it back through the one serializer
(serde.py), checked field by field. Each setting's run is read from its own folder (record/run_folder.py);
the matrix views take the MatrixRecord with those records.
"""

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from .run import EXIT_BOARD, EXIT_COMPARISON_FAILED, EXIT_PASS, RunRecord
from .serde import OMIT_EMPTY, TRANSIENT, fields_data, load

SCHEMA = 1


@dataclass
class MatrixSetting:
    """One combination of the matrix's values, run as a run of its own (reports/<matrix-id>/<label>/)."""

    label: str
    """e.g. "low-t1-session-copy-fp16": names the setting in tables, folders and JUnit."""
    precision: str
    threads: int
    api: str
    io: str
    backend: str
    converter: str
    """The converter variant's name ("default" when the matrix varies none)."""
    converter_args: List[str] = field(default_factory=list)
    run_id: str = ""
    exit_code: int = 0
    mnn_version: Optional[str] = field(default=None, metadata=OMIT_EMPTY)
    """The MNN release of this setting, when the matrix varies it."""


@dataclass
class MatrixRecord:
    matrix_id: str
    scenario: str
    """The scenario's name."""
    exit_code: int = 0
    planned: int = 0
    """How many settings the matrix has: an interrupted matrix ran fewer."""
    interrupted: Optional[str] = None
    """The signal that stopped the matrix, or None."""
    settings: List[MatrixSetting] = field(default_factory=list)
    schema: int = SCHEMA
    records: List[Tuple[str, RunRecord]] = field(default_factory=list, compare=False, metadata=TRANSIENT)
    """Each setting's label and run record, those that have one (not in matrix.json)."""

    def to_dict(self) -> dict:
        return fields_data(self)

    @staticmethod
    def from_dict(data: Any, where: str = "matrix.json") -> "MatrixRecord":
        return load(MatrixRecord, data, where, SCHEMA, {})


def matrix_exit_code(records: List[RunRecord], interrupted_exit_code: Optional[int] = None) -> int:
    """A matrix's exit code from its settings' records: an interrupted setting's (or the signal's), else 1 when
    any comparison failed, else 3 when a board could not be used, else 0."""
    stopped = [record for record in records if record.interrupted]
    if stopped:
        return stopped[0].exit_code
    if interrupted_exit_code is not None:
        return interrupted_exit_code
    codes = [record.exit_code for record in records]
    if EXIT_COMPARISON_FAILED in codes:
        return EXIT_COMPARISON_FAILED
    return EXIT_BOARD if EXIT_BOARD in codes else EXIT_PASS
