"""A reproduction's record (repro.json): the claim a bundle must show, each stretch tried, its runs and numbers.

analysis/repro.py works these out (the stretch, the differences, whether they show the claim); plans/repro.py
runs the bundle and writes repro.json with ReproRecord.to_dict(); views/repro.py renders it, live or read back
with ReproRecord.from_dict() through the one serializer (serde.py: an infinite error is "inf").
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..core.repro_files import (CPP_FILE, ISSUE_FILE, MANIFEST_FILE, MODEL_FILE,  # noqa: F401 (the bundle's
                                SCRIPT_FILE, SOURCE_FILE, TENSORS_FILE, shell_args)  # files, as the views name them)
from .serde import fields_data, load

SCHEMA = 1


@dataclass
class Claim:
    """What the layer search measured for the op, which a reproduction must show."""

    kind: str
    """introduced (the op's own error, from the replay) or exit (its error on exit: it inherited it, or was
    not replayed)."""
    value: float
    """The search's number: max |board - reference| / max |reference| (inf: NaN/Inf new on the board)."""
    tolerance: float
    nonfinite: bool
    """The board's output of the op held NaN/Inf the reference's did not."""
    search_tolerance: float = 0.0
    """The search's own limit for the op (its arithmetic's resolution), whatever limit the reproduction was given."""
    reduction: float = 1.0
    """K: the multiply-adds per output value (MNN's flop count), which the rounding of a sum grows with."""
    exact: bool = True
    """The number is over every element (False: from the 64 values of a summary, an op the search did not fetch
    whole, which can miss the worst element)."""

    def describe(self) -> str:
        what = "introduces" if self.kind == "introduced" else "shows on exit"
        value = ("NaN/Inf" if self.nonfinite and not math.isfinite(self.value)
                 else f"{'' if self.exact else '≈'}{self.value:.3g} (relative"
                 + ("" if self.exact else ", from 64 sampled values") + ")")
        return f"{what} {value}, tolerance {self.tolerance:.2g}"


def rounding_context(error: Optional[float], arithmetic: str, reduction: float, op: str,
                     ops: int = 1) -> Optional[str]:
    """How a finite error compares with what the arithmetic's rounding explains for an op of K multiply-adds
    (about sqrt(K) steps of its epsilon; for a stretch, its op with the largest K): the sentence a maintainer
    weighs a difference by. None for exact arithmetic or NaN/Inf."""
    exponent = {"FP16": 10, "BF16": 7}.get(arithmetic)
    if exponent is None or error is None or not math.isfinite(error):
        return None
    explained = 2.0 ** -exponent * math.sqrt(max(reduction, 1.0))
    ratio = error / explained
    verdict = ("within what its rounding explains" if ratio <= 1.0 else
               "a few times what its rounding explains" if ratio <= 4.0 else "beyond what its rounding explains")
    who = (f"an op summing K={reduction:.0f} products" if ops == 1 else
           f"the stretch's largest sum, {op} (K={reduction:.0f} products),")
    return (f"{arithmetic} rounding of {who} explains about sqrt(K) x 2^-{exponent} = {explained:.2g} (relative); "
            f"this is {ratio:.2g} times that: {verdict}" + ("" if ops == 1 else " (rounding adds up over the ops)"))


@dataclass
class Difference:
    """One output of a run of the cut against the reference's."""

    output: str
    shape: List[int]
    relative: float
    """max |board - reference| / max |reference| over the elements finite on both sides (inf: NaN/Inf new on
    the board), as the layer search measures an op."""
    max_abs: float
    where: List[int]
    """The worst element (the first new NaN/Inf, if any)."""
    board_value: float
    reference_value: float
    fp16_steps: Optional[float]
    """|board - reference| there in FP16 steps at the reference's value (None beyond FP16's range)."""
    scale: float
    """max |reference|."""
    nonfinite: int
    """NaN/Inf values on the board where the reference has a number."""
    elements: int
    fed_nonfinite: bool = False
    """The cut was fed NaN/Inf: NaN/Inf in its output came with its inputs, whatever either side's arithmetic made
    of them (as the layer search judges such an op), so only the elements finite on both sides count."""


@dataclass
class SideRun:
    """One run of the bundle's script on one side (the agent's script job)."""

    board: str
    settings: dict
    machine: str = ""
    mnn_version: str = ""
    mnn_banner: str = ""
    """MNN's own line about the CPU: "The device supports: ..."."""
    cpu_features: List[str] = field(default_factory=list)
    python: str = ""
    seconds: float = 0.0
    output: str = ""
    """What the script printed (its end)."""
    command: str = ""
    error: Optional[str] = None


@dataclass
class Attempt:
    """One stretch tried: cut, run on the reference and on the board, compared."""

    ops: List[str]
    executed: List[str]
    """The board ops it covers, in execution order."""
    entries: List[dict] = field(default_factory=list)
    """{tensor, shape, dtype, format, from}: the cut's inputs and where their values came from."""
    cut_bytes: int = 0
    reference: Optional[SideRun] = None
    board: Optional[SideRun] = None
    differences: List[Difference] = field(default_factory=list)
    error: Optional[float] = None
    """The worst relative error of the cut's outputs on the board against the reference."""
    reproduces: bool = False
    reduction: float = 1.0
    """The largest K (multiply-adds per output value) of the ops it covers, and that op."""
    reduction_op: str = ""
    same_as_model: Optional[float] = None
    """max |cut's output on the board - the op's output in the whole model on the board| (0: bit for bit the
    same computation); None when the whole model's output was not captured."""
    problem: Optional[str] = None
    """Why the attempt could not be made or run (it then does not reproduce)."""


@dataclass
class Workaround:
    """The reproducing cut run again on the board with another setting, against the same reference."""

    label: str
    settings: dict
    differences: List[Difference] = field(default_factory=list)
    error: Optional[float] = None
    removes: bool = False
    """The error goes away: no NaN/Inf, and within the tolerance."""
    run: Optional[SideRun] = None
    problem: Optional[str] = None


@dataclass
class ReproRecord:
    """A reproduction of one op's error on one board (repro.json): what was tried, what showed, what was written."""

    op: str
    op_type: str
    board: dict
    """The board side as the search had it (opdiff.Side as a dict: board, settings, machine, CPU features, ...)."""
    reference: dict
    claim: Claim
    layers_dir: str
    bundle_dir: str
    sample: int = 0
    sample_name: str = ""
    model: dict = field(default_factory=dict)
    """mnn, mnn_sha256, bytes, converted, source, source_format, converter_args, converter_version."""
    attempts: List[Attempt] = field(default_factory=list)
    reproduces: bool = False
    cut: dict = field(default_factory=dict)
    """The reproducing cut: bytes, inputs ({tensor, shape, dtype, format}), outputs, ops ({name, type, params})."""
    source: dict = field(default_factory=dict)
    """The source model's sub-graph: {file, nodes, inputs, outputs, onnxruntime: Difference against the reference}
    or {note: why there is none}."""
    workarounds: List[Workaround] = field(default_factory=list)
    files: Dict[str, str] = field(default_factory=dict)
    """Bundle file -> SHA-256."""
    notes: List[str] = field(default_factory=list)
    started_at: str = ""
    wall_s: float = 0.0
    schema: int = SCHEMA

    DERIVED = ("exit_code",)

    @property
    def reproducing(self) -> Optional[Attempt]:
        return next((attempt for attempt in self.attempts if attempt.reproduces), None)

    @property
    def exit_code(self) -> int:
        """0 a bundle that reproduces, 1 none within the budget, 3 a side could not run it at all."""
        if self.reproduces:
            return 0
        if any((a.reference is not None and a.reference.error) or (a.board is not None and a.board.error)
               for a in self.attempts):
            return 3
        return 1

    def to_dict(self) -> dict:
        """repro.json's data."""
        return fields_data(self)

    @staticmethod
    def from_dict(data: Any, where: str = "repro.json") -> "ReproRecord":
        return load(ReproRecord, data, where, SCHEMA, {})
