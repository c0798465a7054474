#!/usr/bin/env python3
"""SegFormer-B0 (MiT-B0 encoder, all-MLP decoder) with seeded weights, exported to ONNX.

The flagship scenario's model. No wheel ships trained SegFormer weights and
hubs are out of reach, so the network is the canonical definition from
`transformers` (`SegformerConfig()` defaults: hidden sizes 32/64/160/256,
depths 2-2-2-2, heads 1/2/5/8, decoder 256) and every parameter and buffer
is overwritten from `numpy.random.default_rng(seed)`:

- `torch.manual_seed` is not enough: torch's initialisers give different
  numbers on different CPU capabilities, numpy's generator gives the same
  bytes everywhere; the export keeps them as they are (no BatchNorm folding
  by torch), so the ONNX file is identical on every machine;
- fan-in scaled weights keep activations at unit scale through the stages,
  and a gain on the classifier gives logits a spread of a few units, so
  ArgMax flips happen at realistic margins rather than on ties of
  near-zero logits.

Input "pixel_values" [1,3,H,W] (float32, normalised RGB); output "logits"
[1,classes,H/4,W/4]; opset 17, fixed shapes.

    python segformer.py --output OUT.onnx [--height 512] [--width 512] [--num-classes 150] [--seed 0]

Writes OUT.onnx atomically (temp file + rename). Prints one summary line on
stdout; everything else (library warnings) goes to stderr. Needs the model
extra: `pip install -e .[model]` (torch, onnx, transformers).
"""

import argparse
import contextlib
import os
import sys
import tempfile
from typing import Optional, Sequence

import numpy as np

# Build from the definition only: never let transformers look for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OPSET = 17
CLASSIFIER_GAIN = 4.0
"""Extra scale of the last 1x1 conv, so the logits spread like a trained head's (see `seed_parameters`).

Measured at 512x512 on skimage's astronaut: logits std 2.7, range about
+-11, mean top-1 minus top-2 margin 0.89 (gain 1: std 0.67, range +-3).
Absolute errors scale with it; the fraction of ArgMax flips does not.
"""


def make_model(num_classes: int):
    """SegFormer-B0 for semantic segmentation, random (not yet seeded) weights, in eval mode.

    Eager attention: plain MatMul/Softmax in the graph, the form every MNN
    version converts, rather than whatever SDPA lowers to in this torch.
    """
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(num_labels=num_classes, attn_implementation="eager")
    model = SegformerForSemanticSegmentation(config)
    return model.eval()


def seed_parameters(model, seed: int) -> None:
    """Overwrite every weight and statistic from numpy's seeded generator, module by module.

    Conv/Linear weights are N(0, 1/fan_in) (variance-preserving, so each
    stage's output stays near unit scale), biases and norm shifts small,
    norm scales near 1. BatchNorm statistics are near (0, 1), which is what
    the fuse conv's unit-scale output has. The classifier gets
    CLASSIFIER_GAIN on top, so the 150 logits have a standard deviation of a
    few units like a trained head's, not of a fraction of one.
    The order is `named_modules()`, fixed by the model definition.
    """
    import torch

    rng = np.random.default_rng(seed)
    seeded = set()

    def fill(tensor, values: np.ndarray) -> None:
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)))
        seeded.add(id(tensor))

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            weight = module.weight
            fan_in = int(np.prod(weight.shape[1:]))
            gain = CLASSIFIER_GAIN if name.endswith("decode_head.classifier") else 1.0
            fill(weight, rng.normal(0.0, gain / np.sqrt(fan_in), tuple(weight.shape)))
            if module.bias is not None:
                fill(module.bias, rng.normal(0.0, 0.02, tuple(module.bias.shape)))
        elif isinstance(module, torch.nn.LayerNorm):
            fill(module.weight, 1.0 + rng.normal(0.0, 0.1, tuple(module.weight.shape)))
            fill(module.bias, rng.normal(0.0, 0.05, tuple(module.bias.shape)))
        elif isinstance(module, torch.nn.BatchNorm2d):
            channels = module.num_features
            fill(module.weight, 1.0 + rng.normal(0.0, 0.1, channels))
            fill(module.bias, rng.normal(0.0, 0.05, channels))
            fill(module.running_mean, rng.normal(0.0, 0.05, channels))
            fill(module.running_var, rng.uniform(0.8, 1.2, channels))
    # A newer transformers may add a module kind this does not know: refuse
    # rather than export torch's CPU-dependent initial values.
    missing = [name for name, parameter in model.named_parameters() if id(parameter) not in seeded]
    if missing:
        raise RuntimeError(f"parameters the seeded initialisation does not cover: {', '.join(missing)}")


def logits_only(model):
    """The model as a module with one tensor in and one out, so the graph has exactly `logits` as output."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).logits

    return LogitsOnly(model).eval()


def export(output: str, height: int, width: int, num_classes: int, seed: int) -> None:
    """Build, seed and export to `output`, through a temp file in the same directory.

    `TrainingMode.PRESERVE` on a model in eval mode exports the eval graph
    without torch's Conv+BatchNorm folding (what `EVAL` does): every weight
    in the file is then exactly the float32 numpy drew, with no arithmetic
    done by torch on this CPU. MNN's converter folds the BatchNorm itself.
    """
    import torch

    model = logits_only(make_model(num_classes))
    seed_parameters(model.inner, seed)
    example = torch.zeros(1, 3, height, width, dtype=torch.float32)
    directory = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".segformer-", suffix=".onnx.tmp", dir=directory)
    os.close(fd)
    try:
        with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
            torch.onnx.export(model, (example,), tmp, input_names=["pixel_values"], output_names=["logits"],
                              opset_version=OPSET, dynamo=False, training=torch.onnx.TrainingMode.PRESERVE,
                              do_constant_folding=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the model is no secret
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="the ONNX file to write")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.height < 32 or args.width < 32 or args.height % 32 or args.width % 32:
        # Four stride-2/4 stages with overlapping patches: sides that are
        # multiples of 32 keep every stage's feature map an exact fraction.
        parser.error("--height and --width must be positive multiples of 32")
    if args.num_classes < 1:
        parser.error("--num-classes must be at least 1")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        parser.error(f"the directory of --output {args.output} does not exist")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        print(f"segformer.py: {error.name} is not installed: `pip install -e .[model]`", file=sys.stderr)
        return 2
    export(args.output, args.height, args.width, args.num_classes, args.seed)
    print(f"wrote {args.output}: SegFormer-B0 {args.height}x{args.width}, {args.num_classes} classes, "
          f"seed {args.seed}, opset {OPSET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
