#!/usr/bin/env python3
"""A small convolutional segmentation net written straight to ONNX: the model the tests use.

It has the shape of the real thing (image in, per-pixel class logits out at a
quarter of the resolution) and runs in a second under emulation. Weights come
from numpy's seeded generator, so the file is identical on every machine.

    python tiny_segnet.py --output OUT.onnx [--height 64] [--width 64] [--num-classes 8] [--seed 0]
                          [--overflow-layer N] [--overflow-gain G]
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv(rng, name, x, in_channels, out_channels, kernel, stride, initializers, gain=1.0):
    fan_in = in_channels * kernel * kernel
    weight = rng.normal(0.0, np.sqrt(2.0 / fan_in), (out_channels, in_channels, kernel, kernel)) * gain
    bias = rng.normal(0.0, 0.1, out_channels) * (gain if gain > 1 else 1.0)
    initializers += [numpy_helper.from_array(weight.astype(np.float32), name + ".weight"),
                     numpy_helper.from_array(bias.astype(np.float32), name + ".bias")]
    node = helper.make_node("Conv", [x, name + ".weight", name + ".bias"], [name], name=name,
                            kernel_shape=[kernel, kernel], strides=[stride, stride],
                            pads=[kernel // 2] * 4)
    return node, name


def build(height, width, num_classes, seed, overflow_layer=-1, overflow_gain=None):
    rng = np.random.default_rng(seed)
    gain_up = OVERFLOW_GAIN if overflow_gain is None else overflow_gain
    nodes, initializers = [], []
    x, channels = "pixel_values", 3
    for index, (out_channels, stride) in enumerate([(16, 2), (32, 2), (32, 1), (32, 1)]):
        # overflow_layer N: conv N's output is scaled up by the gain (OVERFLOW_GAIN unless given) and
        # conv N+1's weights down by as much. ReLU between them commutes with a positive scale, so the
        # model computes the same function in float32, but conv N's output no longer fits in FP16 (max
        # 65504). A smaller gain overflows only on inputs that make conv N large (at 1e3, conv1 stays
        # near 4e2 on zeros and reaches 9.6e4 on 16x normal noise).
        gain = gain_up if index == overflow_layer else (1.0 / gain_up if index == overflow_layer + 1
                                                       and overflow_layer >= 0 else 1.0)
        node, x = conv(rng, "conv%d" % index, x, channels, out_channels, 3, stride, initializers, gain)
        relu = helper.make_node("Relu", [x], [x + ".relu"], name=x + ".relu")
        nodes += [node, relu]
        x, channels = x + ".relu", out_channels
    node, _ = conv(rng, "classifier", x, channels, num_classes, 1, 1, initializers)
    nodes.append(helper.make_node("Identity", ["classifier"], ["logits"], name="logits"))
    nodes.insert(-1, node)
    graph = helper.make_graph(
        nodes, "tiny_segnet",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       [1, num_classes, height // 4, width // 4])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="mnn-harness tiny_segnet")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


OVERFLOW_GAIN = 1e5


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overflow-layer", type=int, default=-1,
                        help="make conv N overflow FP16 while float32 is unchanged (0..2; -1: none)")
    parser.add_argument("--overflow-gain", type=float, default=None,
                        help="the scale of --overflow-layer (default %g)" % OVERFLOW_GAIN)
    args = parser.parse_args(argv)
    if args.overflow_gain is not None and not 1.0 <= args.overflow_gain <= 1e30:
        parser.error("--overflow-gain must be a number from 1 to 1e30")
    if args.height % 4 or args.width % 4:
        parser.error("--height and --width must be multiples of 4")
    model = build(args.height, args.width, args.num_classes, args.seed, args.overflow_layer, args.overflow_gain)
    directory = os.path.dirname(os.path.abspath(args.output))
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
