"""Two runs of the same .mnn, op by op: where error enters, and which op introduced it.

The agent traces every op MNN executes (dump_ops): its name, type, flops, a
summary of each output and, for each input, the op whose output it holds
(matched by shape and content as the op read it, never by memory address).
Here the two sides' op sequences are aligned, each op gets three errors,
relative to the reference output's largest magnitude:

- on entry: the worst of its inputs (what it received from the ops before it);
- on exit: its output against the reference's output;
- introduced: its output against the reference side running the same op on
  THIS side's inputs (the replay): what the op did wrong by itself.

An op whose exit error is over tolerance but whose replay matches only passed
on what it inherited; the first op whose replay does not match introduced the
error. The search checks itself: an op cannot introduce more than what it was
fed plus what it passed on (introduced <= entry + exit, up to its tolerance),
so a replay that says otherwise is a defect of the replay, shown as such and
never the answer. Tolerances know the arithmetic: an op that sums K products in FP16
rounds at about sqrt(K) FP16 steps, so the default per-op tolerance is
TOLERANCE_STEPS x that (measured on SegFormer-128 at low on a Cortex-A76:
every op stayed under 0.92 of one such step).
"""

import difflib
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..record.causes import LOW_PRECISION_KERNELS, is_arm
from ..record.layers import BoardLayers, LayersReport, OpRow, Side, over  # noqa: F401  (the search's record)
from .diagnose import arithmetic

TOLERANCE_STEPS = 4.0
"""Default per-op tolerance, in rounding steps of the arithmetic: TOLERANCE_STEPS * eps * sqrt(K)."""
SUSPECT = 0.25
"""Whole tensors are fetched from the first op whose summary error reaches this share of its tolerance: the
64 probe values of a summary can miss the worst element."""
SCALE_FLOOR = 1e-30
REDUCING_TYPES = ("Pooling", "Pooling3D", "Reduction")
"""Ops whose every output sums (or compares) many input values, while MNN counts them as one flop per output
(a Reduction, a global pool; source/shape/SizeComputer.cpp): their K comes from the values they reduce."""


class DumpError(Exception):
    """A side's dump.json is missing, malformed or does not match the job."""


@dataclass
class OpTrace:
    """One executed op as one side's agent reported it."""

    index: int
    name: str
    type: str
    flops: float
    inputs: List[Optional[Tuple[int, int]]]
    """Per input: the (op, output) whose values and shape it holds on this side (the agent reads every input as
    the op reads it and matches it by content), or None (a model input, a constant, a copy MNN converted)."""
    input_shapes: List[list]
    input_summaries: List[Optional[dict]]
    """Summaries of the inputs no op produced (None for the others: their producer's output summary is theirs)."""
    outputs: List[dict]
    """Per output: {"shape", "dtype", "summary"}."""
    input_layouts: List[str] = field(default_factory=list)
    """Per input: the order of its axes as the op reads it, NCHW or NHWC (MNN's Caffe or Tensorflow dimension type)."""

    @property
    def key(self) -> Tuple[str, str]:
        return self.name, self.type

    @property
    def elements(self) -> int:
        return sum(int(np.prod(o["shape"])) if o["shape"] else 1 for o in self.outputs) or 1

    @property
    def reduction(self) -> float:
        """K: multiply-adds per output value (MNN counts flops in units of 2^20); for pools and reductions at
        least the input values per output value, which a global average pool or a MEAN sums."""
        counted = self.flops * 2 ** 20 / self.elements
        if self.type in REDUCING_TYPES and self.input_shapes:
            reduced = (int(np.prod(self.input_shapes[0])) if self.input_shapes[0] else 1) / self.elements
            counted = max(counted, reduced)
        return max(1.0, counted)

    def output_bytes(self) -> int:
        return sum((int(np.prod(o["shape"])) if o["shape"] else 1) * 4 for o in self.outputs)

    def input_summary(self, ops: Sequence["OpTrace"], k: int) -> Optional[dict]:
        """Input k's summary (ops: this op's trace): its own, or that of the output it holds."""
        source = self.inputs[k]
        if source is None:
            return self.input_summaries[k]
        return ops[source[0]].outputs[source[1]]["summary"]

    def input_bytes(self, k: int) -> int:
        shape = self.input_shapes[k] if k < len(self.input_shapes) else []
        return (int(np.prod(shape)) if shape else 1) * 4


def _number(value, what: str, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DumpError(f"{what} is {value!r}, not a number")
    return float(value)


def _shape(value, what: str) -> list:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise DumpError(f"{what} is {value!r}, not a shape")
    return value


def _summary(value, what: str) -> Optional[dict]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DumpError(f"{what} is not a summary")
    probe = value.get("probe")
    if not isinstance(probe, list):
        raise DumpError(f"{what}.probe is not a list")
    return {"probe": [_number(p, f"{what}.probe[]") for p in probe],
            "absmax": _number(value.get("absmax"), f"{what}.absmax"),
            "nan": int(_number(value.get("nan", 0), f"{what}.nan", False)),
            "inf": int(_number(value.get("inf", 0), f"{what}.inf", False)),
            **{key: _number(value.get(key), f"{what}.{key}") for key in ("min", "max")}}


def parse_traces(data) -> Dict[int, List[OpTrace]]:
    """dump.json's traces, checked field by field: a board that sends garbage is a failed side, not a crash."""
    if not isinstance(data, dict) or not isinstance(data.get("traces"), list):
        raise DumpError("dump.json has no list of traces")
    traces: Dict[int, List[OpTrace]] = {}
    for trace in data["traces"]:
        if not isinstance(trace, dict) or not isinstance(trace.get("ops"), list):
            raise DumpError("a trace has no list of ops")
        sample = int(_number(trace.get("sample"), "trace.sample", False))
        ops = []
        for index, op in enumerate(trace["ops"]):
            where = f"op {index}"
            if not isinstance(op, dict) or not isinstance(op.get("inputs"), list) \
                    or not isinstance(op.get("outputs"), list):
                raise DumpError(f"{where} is not an op record")
            inputs, shapes, summaries, layouts = [], [], [], []
            for k, entry in enumerate(op["inputs"]):
                if not isinstance(entry, dict):
                    raise DumpError(f"{where} input {k} is not a record")
                layouts.append(entry.get("layout", "NCHW"))
                if layouts[-1] not in ("NCHW", "NHWC"):
                    raise DumpError(f"{where} input {k} has layout {layouts[-1]!r}, not NCHW or NHWC")
                source = entry.get("from")
                if source is not None:
                    if (not isinstance(source, list) or len(source) != 2
                            or not all(isinstance(v, int) and not isinstance(v, bool) for v in source)
                            or not 0 <= source[0] < index):
                        raise DumpError(f"{where} input {k} comes from {source!r}, not an earlier op")
                    source = (source[0], source[1])
                inputs.append(source)
                shapes.append(_shape(entry.get("shape", []), f"{where} input {k} shape"))
                summaries.append(_summary(entry.get("summary"), f"{where} input {k} summary"))
            outputs = []
            for k, entry in enumerate(op["outputs"]):
                if not isinstance(entry, dict):
                    raise DumpError(f"{where} output {k} is not a record")
                outputs.append({"shape": _shape(entry.get("shape", []), f"{where} output {k} shape"),
                                "dtype": str(entry.get("dtype", "float32")),
                                "summary": _summary(entry.get("summary"), f"{where} output {k} summary")})
            ops.append(OpTrace(index, str(op.get("name", "")), str(op.get("type", "?")),
                               _number(op.get("flops", 0.0), f"{where} flops", False), inputs, shapes, summaries,
                               outputs, layouts))
        for op in ops:  # an input names an output its producer has
            for source in op.inputs:
                if source is not None and not 0 <= source[1] < len(ops[source[0]].outputs):
                    raise DumpError(f"op {op.index} reads output {source[1]} of op {source[0]}, which has "
                                    f"{len(ops[source[0]].outputs)}")
        traces[sample] = ops
    return traces


def align(reference: Sequence[OpTrace], board: Sequence[OpTrace]) -> Dict[int, int]:
    """board op index -> reference op index, matching (name, type) in order (difflib over the two sequences)."""
    matcher = difflib.SequenceMatcher(a=[op.key for op in board], b=[op.key for op in reference], autojunk=False)
    pairs: Dict[int, int] = {}
    for a, b, size in matcher.get_matching_blocks():
        for offset in range(size):
            pairs[a + offset] = b + offset
    return pairs


# ---- errors ---------------------------------------------------------------------------------

def summary_error(board: Optional[dict], reference: Optional[dict]) -> Optional[float]:
    """Relative error over the probe values: max |board - ref| / max |ref| (inf: NaN/Inf new on the board)."""
    if board is None or reference is None:
        return None
    if board["nan"] + board["inf"] > reference["nan"] + reference["inf"]:
        return math.inf
    pairs = [(b, r) for b, r in zip(board["probe"], reference["probe"]) if b is not None and r is not None]
    if not pairs:
        return 0.0
    b, r = np.array(pairs, dtype=np.float64).T
    scale = max(reference.get("absmax") or float(np.abs(r).max()), SCALE_FLOOR)
    return float(np.abs(b - r).max() / scale)


def exact_error(board: np.ndarray, reference: np.ndarray, fed_nonfinite: bool = False) -> float:
    """Relative error over every element; inf where the board holds NaN/Inf and the reference a number.

    Elements that are not finite on both sides are left out: a NaN/Inf the
    reference side makes too is no new error. fed_nonfinite: the op was fed
    NaN/Inf, so NaN/Inf in its output came with its inputs, whatever either
    side's arithmetic then makes of them (inf - inf, relu(-inf)): only the
    elements finite on both sides are compared.
    """
    if board.size != reference.size:
        return math.inf
    b, r = board.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    finite_b, finite_r = np.isfinite(b), np.isfinite(r)
    if np.any(~finite_b & finite_r) and not fed_nonfinite:
        return math.inf
    both = finite_b & finite_r
    if not both.any():
        return 0.0
    scale = max(float(np.abs(r[both]).max()), SCALE_FLOOR)
    return float(np.abs(b[both] - r[both]).max() / scale)


def worst(values) -> Optional[float]:
    present = [v for v in values if v is not None]
    return max(present) if present else None


# ---- tolerances -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Tolerance:
    """The per-op limit on relative error: fixed, or following the arithmetic's resolution."""

    arithmetic: str
    """FP32, FP16 or BF16: the coarsest arithmetic either side computes in."""
    eps: float
    fixed: Optional[float] = None
    """--tolerance: the same limit for every op."""
    steps: float = TOLERANCE_STEPS

    def of(self, reduction: float) -> float:
        if self.fixed is not None:
            return self.fixed
        return self.steps * self.eps * math.sqrt(max(reduction, 1.0))

    def describe(self) -> str:
        if self.fixed is not None:
            return f"{self.fixed:g} relative for every op (--tolerance)"
        return (f"{self.arithmetic} resolution: {self.steps:g} x {self.eps:.2g} x sqrt(K), K the multiply-adds "
                "per output value")


def tolerance_for(sides: Sequence[Tuple[str, List[str]]], fixed: Optional[float] = None) -> Tolerance:
    """The tolerance for a comparison of sides given as (precision, CPU features): the coarsest arithmetic wins."""
    coarsest = max((arithmetic(precision, features) for precision, features in sides), key=lambda a: a[1])
    return Tolerance(coarsest[0], coarsest[1], fixed)


# ---- the analysis ---------------------------------------------------------------------------

def summary_rows(board: List[OpTrace], reference: List[OpTrace], tolerance: Tolerance) -> Tuple[List[OpRow], int]:
    """One row per board op with entry and exit errors from the summaries; and the count of unmatched ops."""
    pairs = align(reference, board)
    rows: List[OpRow] = []
    for op in board:
        row = OpRow(index=op.index, name=op.name, type=op.type, shape=op.outputs[0]["shape"] if op.outputs else [],
                    reduction=op.reduction, tolerance=tolerance.of(op.reduction),
                    nonfinite=sum((o["summary"] or {}).get("nan", 0) + (o["summary"] or {}).get("inf", 0)
                                  for o in op.outputs))
        other = reference[pairs[op.index]] if op.index in pairs else None
        if other is None or len(other.outputs) != len(op.outputs) or len(other.inputs) != len(op.inputs):
            row.verdict = "unmatched"
            rows.append(row)
            continue
        row.reference_index = other.index
        row.reference_nonfinite = sum((o["summary"] or {}).get("nan", 0) + (o["summary"] or {}).get("inf", 0)
                                      for o in other.outputs)
        row.exit = worst(summary_error(mine["summary"], theirs["summary"])
                         if np.prod(mine["shape"]) == np.prod(theirs["shape"]) else math.inf
                         for mine, theirs in zip(op.outputs, other.outputs))
        # What each side's op read, compared directly: the op that made an input on one side need not be the
        # counterpart of the one on the other (a copy MNN converted to FP16 on the way in is no op's output).
        row.entry = worst(summary_error(op.input_summary(board, k), other.input_summary(reference, k))
                          if np.prod(op.input_shapes[k]) == np.prod(other.input_shapes[k]) else math.inf
                          for k in range(len(op.inputs)))
        row.verdict = "over" if over(row) else "ok"
        rows.append(row)
    return rows, sum(1 for row in rows if row.verdict == "unmatched")


def nothing_compared(rows: List[OpRow], board: str, reference: str) -> Optional[str]:
    """Why no op could be compared (then the search must say so, never pass), or None."""
    if not rows:
        return f"{board} ran no op"
    matched = [row for row in rows if row.verdict != "unmatched"]
    if not matched:
        return (f"no op of {board} matches an op of {reference} by name and type: nothing to compare "
                "(different models, or MNN versions that build different graphs?)")
    if all(row.exit is None for row in matched):
        return f"none of the {len(matched)} matching ops has an output with values to compare"
    return None


def replay_defect(row: OpRow) -> bool:
    """The replay contradicts the op's own errors: it cannot be believed.

    The board's output a, the reference's on its own inputs b, the reference's
    on the board's inputs c: |a - c| <= |a - b| + |b - c|, and |b - c| is the
    op's answer to the difference on entry, no larger than it for an op that
    does not amplify relative differences. So what an op introduces stays
    within entry + exit (plus rounding: the op's tolerance); on the hand
    landmark, PP-OCR classifier and selfie segmentation models every replayed
    op stayed at least 2e-3 under that bound. More means the replay computed something else (a tensor written in
    the wrong layout: a TFLite MEAN replayed on permuted values "introduced"
    2.5 while its entry and exit errors were 4.8e-2 and 8.2e-3). Only whole,
    finite errors are checked.
    """
    values = (row.introduced, row.entry, row.exit)
    if not row.exact or any(value is None or not math.isfinite(value) for value in values):
        return False
    return row.introduced > row.entry + row.exit + row.tolerance


def first_suspect(rows: List[OpRow]) -> Optional[int]:
    """The first row worth whole tensors: its summary error reaches SUSPECT of its tolerance, or NaN/Inf is new."""
    for position, row in enumerate(rows):
        if row.verdict == "unmatched":
            continue
        if row.nonfinite > row.reference_nonfinite or (row.exit is not None and row.exit >= SUSPECT * row.tolerance):
            return position
    return None


def window(board: List[OpTrace], rows: List[OpRow], start: int, budget_bytes: float) -> List[int]:
    """Rows from start onwards whose whole tensors (outputs, and inputs no op in the window made) fit the budget."""
    chosen, total, inside = [], 0, set()
    for position in range(start, len(rows)):
        row = rows[position]
        if row.verdict == "unmatched":
            continue
        op = board[row.index]
        size = op.output_bytes() + sum(op.input_bytes(k) for k, source in enumerate(op.inputs)
                                       if source is None or source[0] not in inside)
        if chosen and total + size > budget_bytes:
            break
        chosen.append(position)
        inside.add(row.index)
        total += size
    return chosen


def tensor_key(ops: List[OpTrace], kept: set, sample: int, op: int, k: int) -> str:
    """Where input k of op sits in a side's dump.npz: its producer's kept output, else the op's own kept input.

    ops must be the trace of the run that kept the tensors (its dump.json): the agent linked each input to the
    output holding the same values in the same shape in that very run, and kept the input itself otherwise."""
    source = ops[op].inputs[k]
    if source is not None and source[0] in kept:
        return f"s{sample}.op{source[0]}.out{source[1]}"
    return f"s{sample}.op{op}.in{k}"


def same_layout(shape: Sequence[int], other: Sequence[int]) -> bool:
    """Whether an array of one shape holds its values in the order of the other, axes in the same order (the
    agent's replay refuses anything else): equal but for axes of 1, as a scalar is () on one machine and (1,) on
    another. Equal sizes are not enough: [16, 256, 1, 1] and [1, 256, 4, 4] order the same 4096 values
    differently."""
    return [d for d in shape if d != 1] == [d for d in other if d != 1]


def replay_feeds(board_ops: List[OpTrace], kept: set, sample: int, board_op: int, reference_op: OpTrace,
                 tensors: Dict[str, np.ndarray]) -> Tuple[List[Optional[str]], Optional[str]]:
    """The board's tensors that replay an op on the reference: one dump.npz key per input (None: the input has no
    elements, nothing to feed), or the reason the op cannot be replayed honestly (then it is not replayed).

    board_ops is the capture run's trace; an input the board did not send, or sent in a shape the reference's op
    does not read, is never fed in another shape: the op would compute on values in the wrong order."""
    keys: List[Optional[str]] = []
    mine = board_ops[board_op]
    for k, shape in enumerate(reference_op.input_shapes):
        key = tensor_key(board_ops, kept, sample, board_op, k)
        array = tensors.get(key)
        if array is None:
            if int(np.prod(mine.input_shapes[k])) == 0:
                keys.append(None)
                continue
            return keys, f"input {k} ({mine.input_shapes[k]}) did not arrive whole from the board"
        if not same_layout(array.shape, shape):
            return keys, f"input {k} is {list(array.shape)} on the board and {list(shape)} on the reference"
        theirs = reference_op.input_layouts[k] if k < len(reference_op.input_layouts) else "NCHW"
        ours = mine.input_layouts[k] if k < len(mine.input_layouts) else "NCHW"
        if ours != theirs and sum(d != 1 for d in shape) > 1:
            return keys, f"input {k} is {ours} on the board and {theirs} on the reference"
        keys.append(key)
    return keys, None


def exact_rows(rows: List[OpRow], positions: List[int], board_ops: List[OpTrace], reference_ops: List[OpTrace],
               sample: int, board_tensors: Dict[str, np.ndarray], reference_tensors: Dict[str, np.ndarray],
               replayed: Dict[str, np.ndarray]) -> None:
    """Entry, exit and introduced errors of the replayed rows from whole tensors; verdicts for them.

    board_ops and reference_ops are the traces of the runs that kept the tensors (the capture on the board, the
    reference's own run in the replay job), so that every input is found where that run kept it."""
    board_kept = {rows[p].index for p in positions}
    reference_kept = {rows[p].reference_index for p in positions}
    for position in positions:
        row = rows[position]
        mine, theirs = board_ops[row.index], reference_ops[row.reference_index]
        entries, fed_nonfinite = [], False
        for k in range(len(mine.inputs)):
            a = board_tensors.get(tensor_key(board_ops, board_kept, sample, row.index, k))
            b = reference_tensors.get(tensor_key(reference_ops, reference_kept, sample, theirs.index, k))
            entries.append(exact_error(a, b) if a is not None and b is not None else None)
            fed_nonfinite = fed_nonfinite or (a is not None and a.dtype.kind == "f" and not np.isfinite(a).all())
        exits, introduced = [], []
        for k in range(len(mine.outputs)):
            a = board_tensors.get(f"s{sample}.op{row.index}.out{k}")
            b = reference_tensors.get(f"s{sample}.op{theirs.index}.out{k}")
            c = replayed.get(f"replay.op{theirs.index}.out{k}")
            exits.append(exact_error(a, b) if a is not None and b is not None else None)
            introduced.append(exact_error(a, c, fed_nonfinite) if a is not None and c is not None else None)
        if all(value is None for value in exits):
            continue  # nothing arrived whole for this op: it keeps its summary errors
        row.entry, row.exit, row.introduced, row.exact = worst(entries), worst(exits), worst(introduced), True
        if replay_defect(row):
            row.verdict = "defect"
        elif row.introduced is not None and over(row, row.introduced):
            row.verdict = "introduced"
        elif over(row):
            row.verdict = "inherited" if row.introduced is not None else "over"
        else:
            row.verdict = "ok"


def conclude(result: BoardLayers) -> None:
    """The first op that introduces error, the first NaN/Inf, and the op types by introduced error."""
    rows = result.rows
    result.first_introduced = next((i for i, r in enumerate(rows) if r.verdict == "introduced"), None)
    unary = [i for i, r in enumerate(rows) if r.verdict == "introduced" and r.type == "UnaryOp"]
    if unary and result.board.settings.get("precision") == "low" and is_arm(result.board.machine):
        note = (f"{len(unary)} UnaryOp(s) introduce error, the first #{unary[0]} {rows[unary[0]].name}: at low, MNN "
                f"computes {' and '.join(LOW_PRECISION_KERNELS)} on any ARM CPU with approximate kernels "
                "(MNNSigmoidLowp / MNNSiLuLowp, a reciprocal estimate good to about 8 bits), FP16 or not")
        if note not in result.notes:
            result.notes.append(note)
    result.first_nonfinite = first_nonfinite(rows)
    totals: Dict[str, list] = {}
    nonfinite: Dict[str, int] = {}
    for row in rows:
        if row.introduced is None or row.verdict == "defect":  # a defective replay measured nothing of the op
            continue
        if not math.isfinite(row.introduced):
            nonfinite[row.type] = nonfinite.get(row.type, 0) + 1
            continue
        entry = totals.setdefault(row.type, [0, 0.0])
        entry[0] += 1
        entry[1] += row.introduced
    whole = sum(value for _, value in totals.values())
    # Types that introduce NaN/Inf first (share None), then the others by their share of the finite error.
    result.type_shares = [{"type": kind, "count": count, "share": None} for kind, count in sorted(nonfinite.items())]
    result.type_shares += [{"type": kind, "count": count, "share": value / whole}
                           for kind, (count, value) in sorted(totals.items(), key=lambda item: -item[1][1])
                           if whole and value > 0]


def first_nonfinite(rows: List[OpRow]) -> Optional[int]:
    """The position of the first op whose output holds NaN/Inf that the reference's does not."""
    return next((i for i, r in enumerate(rows) if r.verdict != "unmatched" and r.nonfinite > r.reference_nonfinite),
                None)


def choose_sample(per_sample: Dict[int, List[OpRow]]) -> Tuple[int, str]:
    """The sample worth replaying, and why: the first whose ops make NaN/Inf (the earliest such op first), else
    the one whose divergence starts earliest (ties: the larger error there)."""
    making = {sample: first_nonfinite(rows) for sample, rows in per_sample.items()}
    making = {sample: position for sample, position in making.items() if position is not None}
    if making:
        chosen = min(making, key=lambda sample: (making[sample], sample))
        return chosen, ("the only traced sample whose ops make NaN/Inf" if len(making) == 1
                        else "the one whose NaN/Inf starts earliest")

    def rank(sample):
        rows = per_sample[sample]
        start = first_suspect(rows)
        if start is None:
            return (len(rows) + 1, 0.0, sample)
        value = rows[start].exit if rows[start].exit is not None else 0.0
        return (start, -(value if math.isfinite(value) else 1e308), sample)
    return min(per_sample, key=rank), "where the divergence starts earliest"


# ---- the traced run against a plain one -------------------------------------------------------

def parse_plain(data) -> Dict[int, Dict[str, dict]]:
    """dump.json's "plain" checks (per sample, per output: the traced run against a plain run), checked."""
    checks: Dict[int, Dict[str, dict]] = {}
    entries = data.get("plain") if isinstance(data, dict) else None
    if entries is None:
        return checks
    if not isinstance(entries, list):
        raise DumpError("dump.json's plain is not a list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("outputs"), dict):
            raise DumpError("a plain check is not a record of outputs")
        sample = int(_number(entry.get("sample"), "plain.sample", False))
        outputs = {}
        for name, check in entry["outputs"].items():
            if not isinstance(check, dict):
                raise DumpError(f"plain check of {name!r} is not a record")
            if "size" in check:
                outputs[str(name)] = {"size": check["size"]}
                continue
            outputs[str(name)] = {key: _number(check.get(key, 0), f"plain.{name}.{key}", False)
                                  for key in ("traced_nonfinite", "plain_nonfinite", "finiteness_differs",
                                              "max_abs", "scale")}
        checks[sample] = outputs
    return checks


def traced_differs(checks: Dict[str, dict], limit: float) -> Optional[str]:
    """Why a traced run's outputs are not a plain run's beyond noise (relative limit), or None when they are."""
    for name, check in checks.items():
        if "size" in check:
            return f"{name} has {check['size'][0]} values traced and {check['size'][1]} in a plain run"
        if check["finiteness_differs"]:
            return (f"{name} holds {check['plain_nonfinite']:.0f} NaN/Inf in a plain run and "
                    f"{check['traced_nonfinite']:.0f} in the traced one")
        relative = check["max_abs"] / max(check["scale"], SCALE_FLOOR)
        if relative > limit:
            return f"{name} differs by {relative:.1e} of its largest value (noise is at most {limit:.1e})"
    return None
