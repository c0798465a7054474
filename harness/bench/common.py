"""What the farm bench (farm) and the sessions bench (sessions) share: the light scenario the bench and
the tests run (tiny_segnet at 64x64), the host's CPU ticks and the spread of repeated samples."""

import os
import statistics
import textwrap
import time
from pathlib import Path
from typing import Dict, List

from ..core.shipped import scenarios_dir

TINY_SEGNET = scenarios_dir() / "models" / "tiny_segnet.py"


def scenario_text(targets: List[str], precision: str = "normal", size: int = 64,
                  images=("skimage:astronaut",), tolerance: str = "", extra_run: str = "",
                  name: str = "tiny") -> str:
    """The light scenario of the bench and the tests: tiny_segnet at size x size.

    tolerance and extra_run are YAML fragments appended inside the tolerance
    and run mappings (", max_rel: 1", ", iterations: 10").
    """
    return textwrap.dedent(f"""\
        name: {name}
        model:
          build: {TINY_SEGNET}
          build_args: {{height: {size}, width: {size}, num_classes: 8, seed: 0}}
        inputs:
          images: [{", ".join(images)}]
        preprocess:
          resize: {{height: {size}, width: {size}, interpolation: area}}
          mean: [0.485, 0.456, 0.406]
          std: [0.229, 0.224, 0.225]
        run: {{precision: {precision}{extra_run}}}
        targets: [{", ".join(targets)}]
        tolerance: {{max_abs: 1e-3{tolerance}}}
        outputs:
          logits: {{kind: class_logits, tolerance: {{min_argmax_agreement: 0.99}}}}
        """)


def spread(samples: List[float]) -> Dict[str, object]:
    """median, min, max and the samples themselves, for the table and the JSON."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": list(samples)}


def cpu_ticks() -> tuple:
    """(busy, total) jiffies of all the host's CPUs, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def background_load(seconds: float = 1.0) -> float:
    """How busy the host's CPUs are while the bench itself waits (0..1): the machine is shared."""
    busy, total = cpu_ticks()
    time.sleep(seconds)
    busy_after, total_after = cpu_ticks()
    return (busy_after - busy) / max(1, total_after - total)


def host_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
