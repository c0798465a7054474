"""From a layer search's finding to a reproduction outside the model: what to cut, what it claims, whether it shows.

A layer search names an op whose output differs on a board (opdiff). A
reproduction is that op (or the shortest stretch of ops ending in it) cut out
of the deployed .mnn, fed the board's own values of its inputs, run on the
board and on the reference with each side's settings. Here, as pure
functions of the .mnn's graph, the board's trace and the arrays:

- the stretch: the op's file op, widened upstream one producer level at a
  time (an op MNN folds into another's Raster, e.g. a Reshape, comes with the
  level that reaches it), and where the board's value of each of its inputs
  is: a model input, an op's output or an op's input in the board's trace;
- the claim: what the search measured for the op (the error it introduced,
  or, for an op that only inherited error, its error on exit) and the limit;
- the numbers of a run of the cut: max abs and where, relative to the
  reference's largest magnitude (as the search measures), in FP16 steps;
  and whether they show the claim.

The record of a reproduction (repro.json) is record/repro.py's ReproRecord.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.build.cut_model import CONSTANT_TYPES, INPUT_TYPE, constant_tensors, shape_tensors
from ..core.build.mnn_graph import MnnGraph, MnnOp
from ..record.repro import Claim, Difference
from .opdiff import OpRow, OpTrace, exact_error
from .opmap import RASTER

FP16_MAX = 65504.0
DEFAULT_WIDEN = 3
"""Producer levels a stretch may grow upstream of the op when the op alone does not show the error."""


class StretchError(Exception):
    """A stretch cannot be cut here (no board value for one of its inputs, nothing left upstream)."""

    def __init__(self, message: str, final: bool = False):
        super().__init__(message)
        self.final = final
        """No wider stretch can do better: nothing is left upstream, or the op is none of the file's."""


# ---- the stretch ----------------------------------------------------------------------------

@dataclass(frozen=True)
class EntrySource:
    """Where the board's value of a stretch input is."""

    kind: str
    """model (an input of the model: the host's own tensor), output (an op's output on the board), input (an op's
    input on the board) or shape (no op ran with it: a value MNN works out from the tensors' shapes, such as an
    Interp's output size, the same on every machine; the cut computes it, and refuses if it reads data)."""
    op: Optional[int] = None
    """The op's index in the board's execution order."""
    slot: int = 0
    """Which output or input of that op."""


@dataclass(frozen=True)
class StretchEntry:
    tensor: str
    """The tensor's name in the .mnn: the cut's input of that name."""
    sources: Tuple[EntrySource, ...]
    """Where its value is on the board, the first preferred (a capture keeps that one)."""


@dataclass
class Stretch:
    """Ops of the .mnn to cut out, ending in the target op."""

    ops: List[str]
    """File ops in file order."""
    target: str
    outputs: List[str]
    """The target op's output tensors: the cut's outputs."""
    entries: List[StretchEntry]
    executed: List[int]
    """The board ops (execution order) that run inside it, Raster ops MNN generated for them included."""
    target_index: int
    """The target op in the board's execution order."""

    def needed_ops(self) -> List[int]:
        """Board ops whose whole tensors the stretch needs: those its inputs come from, and the target (its output
        in the whole model, to check the cut computes the same)."""
        return sorted({e.sources[0].op for e in self.entries if e.sources[0].op is not None} | {self.target_index})


def executed_index(trace: Sequence[OpTrace]) -> Dict[str, int]:
    """Board op index by name: the first op MNN executed under that name."""
    found: Dict[str, int] = {}
    for op in trace:
        found.setdefault(op.name, op.index)
    return found


def plan_stretch(graph: MnnGraph, trace: Sequence[OpTrace], target_index: int, levels: int) -> Stretch:
    """The stretch ending at the board's op target_index, widened `levels` producer levels upstream.

    Raises StretchError when the op is none of the file's (a Raster op MNN made), when there is nothing more
    upstream to widen to, or when the board's value of an input of the stretch cannot be found.
    """
    name = trace[target_index].name
    target = graph.op(name)
    if target is None:
        raise StretchError(f"{name} is no op of the .mnn (MNN generated it while running)", final=True)
    executed = executed_index(trace)
    constant = constant_tensors(graph)
    shapes = shape_tensors(graph, constant)
    members = {target.name}
    for level in range(levels):
        added = False
        while True:  # a level adds at least one op that MNN executes under its own name, or reaches the inputs
            producers = {graph.producer[t].name for t in _entries(graph, members, constant)
                         if t not in shapes  # worked out from shapes: the cut computes it, whatever made it
                         and graph.producer.get(t) is not None and graph.producer[t].type_code != INPUT_TYPE}
            if not producers:
                break
            members |= producers
            added = True
            if producers & set(executed):
                break
        if not added:
            raise StretchError(f"the stretch cannot grow past {level} level(s): its inputs are the model's",
                               final=True)
    ops = [op for op in graph.ops if op.name in members]
    entries = [StretchEntry(tensor, (EntrySource("shape"),) if tensor in shapes
                            else _sources(graph, tensor, ops, trace, executed, constant | shapes))
               for tensor in _entries(graph, members, constant)]
    inside = [op.index for op in trace if op.name in members
              or (RASTER.match(op.name) is not None and RASTER.match(op.name).group(1) in members)]
    return Stretch(ops=[op.name for op in ops], target=target.name, outputs=list(target.outputs), entries=entries,
                   executed=inside, target_index=target_index)


def _entries(graph: MnnGraph, members: set, constant: set) -> List[str]:
    """Inputs of the member ops that no member makes and that are not constants, in file order."""
    made = {t for op in graph.ops if op.name in members for t in op.outputs}
    seen: List[str] = []
    for op in graph.ops:
        if op.name not in members:
            continue
        for tensor in op.inputs:
            if tensor not in made and tensor not in constant and tensor not in seen:
                producer = graph.producer.get(tensor)
                if producer is not None and producer.type_code in CONSTANT_TYPES:
                    continue
                seen.append(tensor)
    return seen


def _sources(graph: MnnGraph, tensor: str, ops: List[MnnOp], trace: Sequence[OpTrace],
             executed: Dict[str, int], fixed: set) -> Tuple[EntrySource, ...]:
    """Where the board's value of tensor is: a model input; else the output of the op that made it, or an input of
    an op of the stretch that reads it (an op MNN ran under its own name, with the file's inputs, or with only
    those that are not `fixed`, constants and shapes: an Interp's size is folded into the op)."""
    producer = graph.producer.get(tensor)
    if producer is not None and producer.type_code == INPUT_TYPE:
        return (EntrySource("model"),)
    found = []
    if producer is not None and producer.name in executed:
        index = executed[producer.name]
        if len(trace[index].outputs) == len(producer.outputs):
            found.append(EntrySource("output", index, producer.outputs.index(tensor)))
    for consumer in ops:
        if tensor in consumer.inputs and consumer.name in executed:
            index = executed[consumer.name]
            varying = [t for t in consumer.inputs if t not in fixed]
            if len(trace[index].inputs) == len(consumer.inputs):
                found.append(EntrySource("input", index, consumer.inputs.index(tensor)))
            elif len(trace[index].inputs) == len(varying):
                found.append(EntrySource("input", index, varying.index(tensor)))
    if not found:
        raise StretchError(f"no value of {tensor} on the board: the op that makes it and the ops that read it ran "
                           "under other names or with other inputs")
    return tuple(found)


# ---- the claim and the numbers -----------------------------------------------------------------

def claim_for(row: OpRow, tolerance: Optional[float] = None) -> Optional[Claim]:
    """The claim for a row of a layer search (tolerance: a limit of the user's instead of the search's); None when
    the op shows nothing beyond the limit."""
    limit = row.tolerance if tolerance is None else tolerance
    nonfinite = row.nonfinite > row.reference_nonfinite

    def beyond(value):
        return value is not None and (math.isnan(value) or value > limit)

    if beyond(row.introduced):
        return Claim("introduced", row.introduced, limit, nonfinite, row.tolerance, row.reduction, row.exact)
    if beyond(row.exit) or nonfinite:
        return Claim("exit", row.exit if row.exit is not None else math.inf, limit, nonfinite, row.tolerance,
                     row.reduction, row.exact)
    return None


def fp16_step(value: float) -> Optional[float]:
    """The spacing of FP16 numbers at |value| (None beyond FP16's largest, 65504)."""
    magnitude = abs(value)
    if not math.isfinite(magnitude) or magnitude > FP16_MAX:
        return None
    return float(np.spacing(np.float16(min(magnitude, 32768.0))))


def difference(output: str, board: np.ndarray, reference: np.ndarray, fed_nonfinite: bool = False) -> Difference:
    """How far the board's output is from the reference's (fed_nonfinite: the inputs held NaN/Inf, see
    Difference)."""
    b, r = board.astype(np.float64), reference.astype(np.float64)
    if b.shape != r.shape:
        b = b.reshape(r.shape) if b.size == r.size else b
    fresh = ~np.isfinite(b) & np.isfinite(r) if b.shape == r.shape else np.ones(r.shape, bool)
    finite_r = np.isfinite(r)
    scale = float(np.abs(r[finite_r]).max()) if finite_r.any() else 0.0
    if fresh.any() and not fed_nonfinite:
        position = np.unravel_index(int(np.argmax(fresh)), r.shape)
        max_abs = math.inf
    else:
        gap = np.where(finite_r & np.isfinite(b), np.abs(b - r), 0.0)
        position = np.unravel_index(int(np.argmax(gap)), r.shape) if gap.size else ()
        max_abs = float(gap[position]) if gap.size else 0.0
    board_value = float(b[position]) if b.size else 0.0
    reference_value = float(r[position]) if r.size else 0.0
    step = fp16_step(reference_value)
    steps = (max_abs / step) if step and math.isfinite(max_abs) else None
    return Difference(output=output, shape=list(r.shape), relative=exact_error(board, reference, fed_nonfinite),
                      max_abs=max_abs, where=[int(i) for i in position], board_value=board_value,
                      reference_value=reference_value, fp16_steps=steps, scale=scale, nonfinite=int(fresh.sum()),
                      elements=int(r.size), fed_nonfinite=fed_nonfinite)


def worst(differences: Sequence[Difference]) -> float:
    values = [d.relative for d in differences]
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values) if values else 0.0


def shows(claim: Claim, differences: Sequence[Difference]) -> bool:
    """Whether a run of the cut shows what the search found: NaN/Inf where it found them, else an error beyond the
    limit."""
    if claim.nonfinite and not math.isfinite(claim.value):
        return any(d.nonfinite and not d.fed_nonfinite for d in differences)
    value = worst(differences)
    return math.isnan(value) or value > claim.tolerance


def other_precisions(precision: str) -> List[str]:
    """The settings worth a workaround run: FP32 for a side that asked for less, else the other FP32 mode."""
    others = {"low": ["normal"], "low_bf16": ["normal"], "normal": ["high"], "high": ["normal"]}
    return others.get(precision, ["normal"])


def removes(claim: Claim, differences: Sequence[Difference]) -> bool:
    """A setting removes the error: no NaN/Inf new on the board and within the claim's limit."""
    value = worst(differences)
    return not any(d.nonfinite and not d.fed_nonfinite for d in differences) and math.isfinite(value) \
        and value <= claim.tolerance


def entry_summary(entries: Sequence[StretchEntry], arrays: Dict[str, Tuple[np.ndarray, EntrySource]],
                  formats: Dict[str, str], trace: Sequence[OpTrace]) -> List[dict]:
    """The cut's inputs as the record keeps them (arrays: the value and where it came from), with that place in
    words."""
    out = []
    for entry in entries:
        if entry.tensor not in arrays:
            continue  # computed from shapes: a constant of the cut (CutModel.computed)
        array, source = arrays[entry.tensor]
        origin = ("the model's input" if source.kind == "model" else
                  f"output {source.slot} of {trace[source.op].name}" if source.kind == "output" else
                  f"input {source.slot} of {trace[source.op].name}")
        out.append({"tensor": entry.tensor, "shape": list(array.shape), "dtype": str(array.dtype),
                    "format": formats.get(entry.tensor, ""), "from": origin})
    return out


def same_as_model(cut: Dict[str, np.ndarray], model: Dict[str, Optional[np.ndarray]]) -> Optional[float]:
    """max |cut - whole model| over the outputs (NaN/Inf at the same places count as equal); None when unknown."""
    worst_gap = 0.0
    for name, array in cut.items():
        other = model.get(name)
        if other is None or other.size != array.size:
            return None
        a, b = array.astype(np.float64).ravel(), other.astype(np.float64).ravel()
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if not same.all():
            gap = np.abs(a[~same] - b[~same])
            worst_gap = max(worst_gap, float(np.nanmax(gap)) if np.isfinite(gap).any() else math.inf)
    return worst_gap


def model_output_keys(stretch: Stretch, trace: Sequence[OpTrace], graph: MnnGraph, sample: int) -> Dict[str, str]:
    """The cut's output tensor -> where the board's output of the target op sits in a capture dump."""
    op = trace[stretch.target_index]
    target = graph.op(stretch.target)
    if target is None or len(op.outputs) != len(target.outputs):
        return {}
    return {tensor: f"s{sample}.op{op.index}.out{k}" for k, tensor in enumerate(target.outputs)}


__all__ = ["Stretch", "StretchEntry", "EntrySource", "StretchError", "plan_stretch", "claim_for", "difference",
           "worst", "shows", "removes", "other_precisions", "entry_summary", "same_as_model", "model_output_keys",
           "DEFAULT_WIDEN", "fp16_step"]
