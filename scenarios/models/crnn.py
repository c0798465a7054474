#!/usr/bin/env python3
"""A small CRNN text recognizer written straight to ONNX: convolutions, a bidirectional LSTM, per-frame logits.

The shape of the real thing (a text line in, per-frame class scores for greedy CTC out, as PaddleOCR's and
EasyOCR's recognizers give them): a 3x32x128 line, four conv + pool stages down to one row of 32 frames,
a bidirectional LSTM over the frames, and a linear layer to the charset's classes and the blank (class 0).
Weights come from numpy's seeded generator (fan-in scaled), so the file is identical on every machine; it
reads nonsense, the same nonsense everywhere a faithful runtime runs it, which is what a cross-device
comparison needs.

    python crnn.py --output OUT.onnx [--height 32] [--width 128] [--classes 37] [--hidden 48] [--seed 0]
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(height, width, classes, hidden, seed):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    x, channels, rows = "image", 3, height
    for index, (out, pool) in enumerate([(16, (2, 2)), (32, (2, 2)), (48, (2, 1)), (64, (2, 1))]):
        name = f"conv{index}"
        weight = rng.normal(0.0, np.sqrt(2.0 / (channels * 9)), (out, channels, 3, 3))
        nodes.append(helper.make_node("Conv", [x, const(name + ".weight", weight),
                                               const(name + ".bias", rng.normal(0.0, 0.1, out))], [name],
                                      name=name, kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [name], [name + ".relu"], name=name + ".relu"))
        nodes.append(helper.make_node("MaxPool", [name + ".relu"], [name + ".pool"], name=name + ".pool",
                                      kernel_shape=list(pool), strides=list(pool)))
        x, channels, rows = name + ".pool", out, rows // pool[0]
    frames = width // 4
    # The rows left (2 at a height of 32) are averaged away: one feature vector per frame.
    nodes.append(helper.make_node("ReduceMean", [x], ["features"], name="features", axes=[2], keepdims=0))
    nodes.append(helper.make_node("Transpose", ["features"], ["sequence"], name="sequence", perm=[2, 0, 1]))
    scale = 1.0 / np.sqrt(hidden)
    w = rng.uniform(-scale, scale, (2, 4 * hidden, channels)) * 2.0
    r = rng.uniform(-scale, scale, (2, 4 * hidden, hidden))
    b = rng.uniform(-scale, scale, (2, 8 * hidden))
    nodes.append(helper.make_node("LSTM", ["sequence", const("lstm.W", w), const("lstm.R", r), const("lstm.B", b)],
                                  ["lstm"], name="lstm", hidden_size=hidden, direction="bidirectional"))
    # [frames, 2, 1, hidden] -> [frames, 2 * hidden]
    nodes.append(helper.make_node("Transpose", ["lstm"], ["lstm.t"], name="lstm.t", perm=[0, 2, 1, 3]))
    inits.append(numpy_helper.from_array(np.array([frames, 2 * hidden], dtype=np.int64), "frames_shape"))
    nodes.append(helper.make_node("Reshape", ["lstm.t", "frames_shape"], ["lstm.frames"], name="lstm.frames"))
    weight = rng.normal(0.0, 3.0 / np.sqrt(2 * hidden), (2 * hidden, classes))
    bias = rng.normal(0.0, 0.5, classes)
    bias[0] += 1.5  # the blank: CTC models read it between most characters
    nodes.append(helper.make_node("MatMul", ["lstm.frames", const("head.weight", weight)], ["head"], name="head"))
    nodes.append(helper.make_node("Add", ["head", const("head.bias", bias)], ["head.biased"], name="head.biased"))
    inits.append(numpy_helper.from_array(np.array([1, frames, classes], dtype=np.int64), "logits_shape"))
    nodes.append(helper.make_node("Reshape", ["head.biased", "logits_shape"], ["logits"], name="logits"))
    graph = helper.make_graph(
        nodes, "crnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, frames, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mnn-harness crnn")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--classes", type=int, default=37, help="the charset's characters and the blank")
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.height != 32 or args.width % 4:
        parser.error("--height must be 32 (four poolings to one row of two) and --width a multiple of 4")
    model = build(args.height, args.width, args.classes, args.hidden, args.seed)
    directory = os.path.dirname(os.path.abspath(args.output))
    fd, partial = tempfile.mkstemp(suffix=".onnx.tmp", dir=directory)
    with os.fdopen(fd, "wb") as handle:
        handle.write(model.SerializeToString())
    os.replace(partial, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
