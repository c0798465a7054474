"""Back to the source: which ONNX or TFLite node(s) each op MNN executed came from, and how surely.

MNN renames little and fuses much. An executed op is one of three kinds:

- exact: the op's output tensor carries a name of the source (or the op is named
  after a source node), so its values are that source tensor's. The source
  nodes between the tensors MNN kept are listed: more than one when MNN folded
  some into it (Conv + Relu, the five nodes of an exact GELU).
- fused: none of its names is the source's (the converter renamed what it
  fused: `...__matmul_converted` for MatMul + Add): the group is the source
  nodes between the op's inputs and the next tensor downstream that kept its
  source name.
- nearest: an op MNN generated (`<op>_raster_0`, layout conversions), mapped
  through the op it was generated for, or else the op executed just before it.

The walk stops at every tensor the .mnn also has: those belong to other ops.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from ..core.build.mnn_graph import MnnGraph

EXACT, FUSED, NEAREST, NONE = "exact", "fused", "nearest", "none"
MAX_GROUP = 64
"""Source nodes one op may stand for; beyond this the walk is lost in the graph, not in a fusion."""
MAX_FORWARD = 6
"""Ops of the .mnn walked downstream from a renamed op to the next tensor that kept a source name."""
RASTER = re.compile(r"^(.*)_raster_\d+$")
VALUE_NODES = ("Constant", "ConstantOfShape")
"""Source nodes that only hold values: not part of what an op computes."""


@dataclass(frozen=True)
class SourceNode:
    name: str
    type: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]


@dataclass
class SourceGraph:
    """The source model as a list of nodes in graph order (ONNX nodes, TFLite operators)."""

    format: str
    path: Path
    nodes: List[SourceNode]
    order: Dict[str, int] = field(default_factory=dict)
    producer: Dict[str, SourceNode] = field(default_factory=dict)
    node_names: Set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for index, node in enumerate(self.nodes):
            self.order.setdefault(node.name, index)
            self.node_names.add(node.name)
            for output in node.outputs:
                self.producer.setdefault(output, node)

    @property
    def tensors(self) -> Set[str]:
        return set(self.producer)


@dataclass(frozen=True)
class Mapping:
    kind: str
    """exact, fused, nearest or none."""
    nodes: Tuple[str, ...] = ()
    """The source nodes, in graph order."""
    types: Tuple[str, ...] = ()
    tensors: Tuple[str, ...] = ()
    """The source tensors the op's values correspond to (exact), or the group ends in (fused)."""
    via: Optional[str] = None
    """nearest: the op whose mapping this one borrows."""

    def describe(self) -> str:
        nodes = " + ".join(f"{name} ({kind})" for name, kind in zip(self.nodes, self.types)) or "–"
        if self.kind == EXACT:
            return f"exact: {nodes}"
        if self.kind == FUSED:
            return f"fused group: {nodes}"
        if self.kind == NEAREST:
            return f"nearest named neighbour {self.via}: {nodes}"
        return "no source node"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "nodes": list(self.nodes), "types": list(self.types), "tensors": list(self.tensors),
                "via": self.via}


def read_source_graph(path: Path, source_format: str) -> SourceGraph:
    """The nodes of an ONNX or TFLite model, in graph order."""
    path = Path(path)
    if source_format == "TFLITE":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
        nodes = []
        for op in interpreter._get_ops_details():  # LiteRT's only listing of operators with their tensors
            outputs = tuple(names.get(i, f"#{i}") for i in op["outputs"] if i >= 0)
            nodes.append(SourceNode(name=outputs[0] if outputs else f"op{op['index']}", type=op["op_name"],
                                    inputs=tuple(names.get(i, f"#{i}") for i in op["inputs"] if i >= 0),
                                    outputs=outputs))
        return SourceGraph("TFLITE", path, nodes)
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = [SourceNode(name=node.name or (node.output[0] if node.output else f"node{index}"), type=node.op_type,
                        inputs=tuple(i for i in node.input if i), outputs=tuple(o for o in node.output if o))
             for index, node in enumerate(graph.node)]
    return SourceGraph("ONNX", path, nodes)


def _group(source: SourceGraph, ends: List[str], stops: Set[str]) -> List[SourceNode]:
    """The source nodes that compute `ends` from tensors in `stops` (or from constants and graph inputs)."""
    found: Dict[str, SourceNode] = {}
    pending = list(ends)
    while pending and len(found) < MAX_GROUP:
        node = source.producer.get(pending.pop())
        if node is None or node.name in found or node.type in VALUE_NODES:
            continue
        found[node.name] = node
        pending.extend(tensor for tensor in node.inputs if tensor not in stops)
    return sorted(found.values(), key=lambda node: source.order.get(node.name, 0))


def _mapping(kind: str, nodes: List[SourceNode], tensors: List[str], via: Optional[str] = None) -> Mapping:
    return Mapping(kind, tuple(n.name for n in nodes), tuple(n.type for n in nodes), tuple(tensors), via)


def map_op(name: str, graph: MnnGraph, source: SourceGraph) -> Optional[Mapping]:
    """exact or fused for an op of the .mnn; None when the .mnn has no op of that name or nothing matches."""
    op = graph.op(name)
    if op is None:
        return None
    stops = set(graph.tensor_names)
    named = [tensor for tensor in op.outputs if tensor in source.producer]
    if named:
        return _mapping(EXACT, _group(source, named, stops - set(named)), named)
    if op.name in source.node_names:
        node = next(n for n in source.nodes if n.name == op.name)
        return _mapping(EXACT, _group(source, list(node.outputs), stops), list(node.outputs))
    # Renamed by a fusion: walk downstream in the .mnn to the next tensors that kept a source name.
    consumers: Dict[str, list] = {}
    for candidate in graph.ops:
        for tensor in candidate.inputs:
            consumers.setdefault(tensor, []).append(candidate)
    frontier, ends, seen = list(op.outputs), [], set()
    for _ in range(MAX_FORWARD):
        following = []
        for tensor in frontier:
            for consumer in consumers.get(tensor, []):
                if consumer.name in seen:
                    continue
                seen.add(consumer.name)
                hit = [t for t in consumer.outputs if t in source.producer]
                ends.extend(hit)
                if not hit:
                    following.extend(consumer.outputs)
        if ends:
            break
        frontier = following
    if not ends:
        return None
    inputs = {tensor for tensor in op.inputs}
    return _mapping(FUSED, _group(source, ends, (stops - set(ends)) | inputs), ends)


def map_ops(executed: List[str], graph: MnnGraph, source: Optional[SourceGraph]) -> Dict[str, Mapping]:
    """A mapping for every executed op name (in execution order); without a source, all `none`."""
    if source is None:
        return {name: Mapping(NONE) for name in executed}
    direct: Dict[str, Optional[Mapping]] = {}

    def resolve(name: str) -> Optional[Mapping]:
        if name not in direct:
            direct[name] = map_op(name, graph, source)
        return direct[name]

    mappings: Dict[str, Mapping] = {}
    previous: Optional[str] = None
    for name in executed:
        mapping = resolve(name)
        if mapping is None:
            parent = RASTER.match(name)
            origin = parent.group(1) if parent else None
            borrowed = resolve(origin) if origin else None
            if borrowed is None and previous is not None:
                origin, borrowed = previous, mappings.get(previous)
            if borrowed is not None and borrowed.kind != NONE:
                mapping = Mapping(NEAREST, borrowed.nodes, borrowed.types, borrowed.tensors, origin)
            else:
                mapping = Mapping(NONE)
        mappings[name] = mapping
        if mapping.kind in (EXACT, FUSED):
            previous = name
    return mappings


def mapping_summary(mappings: Dict[str, Mapping], source: Optional[SourceGraph]) -> str:
    """One line on how the ops map back, saying so when no op kept a name of the source."""
    if source is None:
        return "no source model: op names and types are the .mnn's own"
    if not mappings:  # no side traced an op: there is nothing to say about names
        return f"nothing mapped back to {source.path.name}: no op was traced"
    counts = {kind: sum(1 for m in mappings.values() if m.kind == kind) for kind in (EXACT, FUSED, NEAREST, NONE)}
    line = (f"back to {source.path.name}: {counts[EXACT]} exact, {counts[FUSED]} fused groups, "
            f"{counts[NEAREST]} generated ops by their nearest named neighbour")
    if counts[NONE]:
        line += f", {counts[NONE]} unmapped"
    if not counts[EXACT] and not counts[FUSED]:
        line += (f"; no op of the .mnn keeps a name of {source.path.name} (all fused or renamed): the mapping "
                 "cannot point at source nodes")
    return line
