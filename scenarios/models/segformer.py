#!/usr/bin/env python3
"""SegFormer-B0 (MiT-B0, ADE20K's 150 classes) from its definition, with seeded weights, to ONNX.

No wheel ships trained SegFormer weights and model hubs are out of reach, so
the network is built from transformers' own definition (SegformerConfig()
defaults are MiT-B0: hidden sizes 32/64/160/256, depths 2-2-2-2, heads
1/2/5/8, decoder 256) and every parameter is overwritten from numpy's seeded
generator: torch.manual_seed gives different weights on CPUs with different
vector units, numpy's generator does not. Weights are fan-in scaled so the
logits have a realistic spread (near-ties exist, as in a trained model).

    python segformer.py --output OUT.onnx [--height 512] [--width 512] [--num-classes 150] [--seed 0]

Input "pixel_values" [1,3,H,W], output "logits" [1,classes,H/4,W/4], opset 17.
"""

import argparse
import os
import sys
import tempfile

import numpy as np


def seeded_parameters(model, seed: int) -> None:
    import torch

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            shape = tuple(parameter.shape)
            if name.endswith(".bias"):
                values = rng.normal(0.0, 0.02, shape)
            elif "layer_norm" in name or "layernorm" in name or ".norm" in name or "batch_norm" in name:
                values = 1.0 + rng.normal(0.0, 0.05, shape)  # norm scales sit near one
            else:
                fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
                values = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
            parameter.copy_(torch.from_numpy(values.astype(np.float32)))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.from_numpy(rng.normal(0.0, 0.1, tuple(buffer.shape)).astype(np.float32)))
            elif name.endswith("running_var"):
                buffer.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, tuple(buffer.shape)).astype(np.float32)))


class LogitsOnly:
    """Wraps the transformers model so the exported graph has one output named logits."""

    def __new__(cls, model):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, pixel_values):
                return self.inner(pixel_values=pixel_values).logits

        return Wrapper(model)


def build(output: str, height: int, width: int, num_classes: int, seed: int) -> None:
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(num_labels=num_classes)
    # Eager attention: the SDPA path exports ops MNN and opset 17 handle less well.
    config._attn_implementation = "eager"
    model = SegformerForSemanticSegmentation(config).eval()
    seeded_parameters(model, seed)
    wrapped = LogitsOnly(model).eval()
    example = torch.from_numpy(np.random.default_rng(seed + 1).normal(size=(1, 3, height, width)).astype(np.float32))
    directory = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=directory)
    os.close(fd)
    try:
        torch.onnx.export(wrapped, (example,), tmp, opset_version=17, dynamo=False,
                          input_names=["pixel_values"], output_names=["logits"], do_constant_folding=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.height % 32 or args.width % 32:
        parser.error("--height and --width must be multiples of 32 (the encoder downsamples by 32)")
    build(args.output, args.height, args.width, args.num_classes, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
