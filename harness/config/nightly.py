"""The nightly file: which scenarios run every night, on which boards, and when a change is a regression.

    runs:                                   # run in this order; one failing does not stop the others
      - scenario: quick.yaml                # relative paths start at this file's directory
        inventory: lab.yaml                 # optional; else --inventory, $MNN_HARNESS_INVENTORY, ...
        targets: [x86, arm-a76]             # optional: these boards instead of the scenario's (as --targets)
    regression:                             # against the previous night
      margin: 2.0                           # an error metric (max_abs, ...) grew by more than this factor
      cosine_drop: 1e-5                     # cosine fell by more than this
      agreement_drop: 0.001                 # argmax agreement fell by more than this fraction
      fail_on_regression: false             # true: a regression exits 1 like a failure

`NightlyFile` is its schema (docs/reference.md and schemas/nightly.schema.json
come from it); `harness nightly` (plans/night.py) runs what it says.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from pydantic import field_validator

from ..core.fields import FilePath, Flag, Number, Problem, Section, Text, section
from .validation import validate
from .yamlfile import load_yaml


@section
class RegressionPolicy(Section):
    """When a metric that got worse against the previous night is a regression."""

    margin: Number(minimum=1.0, why="a factor: 2.0 means an error metric that doubled") = 2.0
    """Error metrics (max_abs, mean_abs, ...): worse by more than this factor."""
    cosine_drop: Number(minimum=0.0, maximum=1.0) = 1e-5
    """cosine: a drop by more than this (absolute)."""
    agreement_drop: Number(minimum=0.0, maximum=1.0) = 0.001
    """argmax_agreement, miou, decoded_agreement: a drop by more than this fraction (0.001 = 0.1 percentage
    point)."""
    fail_on_regression: Flag = False
    """Exit 1 on a regression, as on a failure."""


@section
class NightlyRun(Section):
    """One scenario of the night."""

    scenario: FilePath()
    """The scenario file; relative paths start at the nightly file's directory."""
    inventory: Optional[FilePath()] = None
    """Its inventory (default: --inventory, $MNN_HARNESS_INVENTORY, ./inventory.yaml, the built-in one)."""
    targets: Optional[List[Text]] = None
    """These boards (or tag:TAG) instead of the scenario's, as --targets (default: the scenario's)."""


@section
class NightlyFile(Section):
    """The nightly board-farm run: many scenarios, stored in the history and compared with the previous night."""

    runs: List[NightlyRun]
    """The scenarios, run in this order; one failing does not stop the others."""
    regression: RegressionPolicy = RegressionPolicy()
    """When a change against the previous night is a regression."""

    @field_validator("runs")
    @classmethod
    def _some(cls, runs: List[NightlyRun]) -> List[NightlyRun]:
        if not runs:
            raise Problem("is empty", "list at least one `- scenario: path/to/scenario.yaml`")
        return runs


@dataclass(frozen=True)
class NightlyConfig:
    path: Path
    runs: List[NightlyRun]
    regression: RegressionPolicy = RegressionPolicy()


def load_nightly(path) -> NightlyConfig:
    """Read and validate a nightly file; raise ConfigError naming the key and the fix."""
    path = Path(path)
    file: NightlyFile = validate(path, load_yaml(path), NightlyFile)
    return NightlyConfig(path=path, runs=list(file.runs), regression=file.regression)
