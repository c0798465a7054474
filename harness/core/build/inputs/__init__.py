"""Model inputs: by name, each from one provider, built once on the host and checked against the model.

    inputs:
      input:  {audio: {speak: "Is anybody there?", rate: 16000, frame: 512, context: 64}}
      state:  {value: {data: 0, shape: [2, 1, 128]}}
      sr:     {value: 16000}

Providers are registered by their YAML key (PROVIDERS): image, npz, random,
value, audio, loader; each is a section of the scenario's schema (`Inputs`).
The classic `inputs: {images: [...]}` is one image input feeding the model's
only input. Every input is checked against the model's names, types and
shapes before anything is sent (ConfigError naming the input, what the model
wants and what was given), then all of them are saved in one inputs.npz: each
array holds its samples on axis 0, or one sample that every sample (or stream
step) shares.
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Dict, List, Optional, Union

import numpy as np

from pydantic import BeforeValidator, Discriminator, Tag, model_validator

from ...cache import sha256_file
from ...errors import ConfigError
from ...fields import Problem, Section, section
from ...npz import save_npz
from .arrays import NpzInput, RandomInput, ValueInput
from .audio import AudioInput
from .base import DTYPES, MAX_ELEMENTS, MAX_INPUT_BYTES, BuildContext, ModelInput, Provider, Samples, describe_shape
from .image import SKIMAGE_IMAGES, ImageInput, ImageRef, Images
from .loader import LoaderInput

PROVIDERS: Dict[str, type] = {cls.keyword: cls for cls in (ImageInput, NpzInput, RandomInput, ValueInput,
                                                           AudioInput, LoaderInput)}
"""YAML key -> provider class: one entry per way to make an input."""
INPUTS_FILE = "inputs.npz"
"""The run's inputs, in its folder: the one file every board is sent."""

__all__ = ["PROVIDERS", "INPUTS_FILE", "InputSpec", "InputSet", "InputTensor", "ImageRef", "SKIMAGE_IMAGES",
           "Inputs", "input_specs", "build_inputs", "ModelInput", "DTYPES"]


@dataclass(frozen=True)
class InputSpec:
    """One model input as the scenario gives it."""

    name: Optional[str]
    """The model input's name; None for the classic `images:` list, which feeds the model's only input."""
    provider: Provider

    @property
    def where(self) -> str:
        return "inputs.images" if self.name is None else f"inputs.{self.name}"


@section
class InputEntry(Section):
    """One model input, by its name: exactly one provider makes its samples."""

    image: Optional[ImageInput] = None
    """Photos through the scenario's `preprocess:` (one sample per image)."""
    npz: Optional[NpzInput] = None
    """Arrays saved with numpy."""
    random: Optional[RandomInput] = None
    """Seeded uniform values."""
    value: Optional[ValueInput] = None
    """A constant."""
    audio: Optional[AudioInput] = None
    """A WAV file, or speech espeak-ng says, cut into frames."""
    loader: Optional[LoaderInput] = None
    """A Python function that yields the samples."""

    @model_validator(mode="before")
    @classmethod
    def _one_provider(cls, data):
        if isinstance(data, dict):
            known = [key for key in data if key in PROVIDERS]
            if len(data) != 1 or len(known) != 1:
                problem = f"has {', '.join(map(str, data))}" if data else "is empty"
                raise Problem(f"{problem}: it needs exactly one provider",
                              f"use one of {', '.join(PROVIDERS)}, e.g. `{{value: 0}}`")
            if data[known[0]] is None:
                raise Problem("is empty", "give the provider's settings", at=known[0])
        return data

    @property
    def provider(self) -> Provider:
        return next(getattr(self, key) for key in PROVIDERS if getattr(self, key) is not None)


@section
class ClassicImages(Section):
    """The classic form, for a model with one image input: `inputs: {images: [...]}`."""

    images: Images
    """Image files, directories, glob patterns and skimage:NAME, through the scenario's `preprocess:`."""


def _inputs_form(value) -> str:
    return "classic" if isinstance(value, dict) and isinstance(value.get("images"), list) else "named"


def _check_inputs(value):
    if isinstance(value, dict):
        if isinstance(value.get("images"), list) and len(value) > 1:
            raise Problem("is the classic form for a model with one image input, and other inputs are named beside "
                          "it", "name every input instead: `NAME: {image: [...]}`", at="images")
        if not value:
            raise Problem("is empty", "name the model's inputs, e.g. `input: {value: 0}`, or list "
                          "`images: [skimage:astronaut]` for a model with one image input")
        for name in value:
            if not isinstance(name, str) or not name:
                raise Problem("must be the name of a model input", "write the input's name as the model has it",
                              at=str(name))
    return value


Inputs = Annotated[Union[Annotated[ClassicImages, Tag("classic")], Annotated[Dict[str, InputEntry], Tag("named")]],
                   Discriminator(_inputs_form), BeforeValidator(_check_inputs)]
"""`inputs:` as a scenario writes it: each model input by name, or the classic `images:` list."""


def input_specs(inputs) -> List[InputSpec]:
    """The InputSpecs of a validated `inputs:`."""
    if isinstance(inputs, ClassicImages):
        return [InputSpec(None, ImageInput(images=inputs.images))]
    return [InputSpec(name, entry.provider) for name, entry in inputs.items()]


@dataclass(frozen=True)
class InputTensor:
    """One input as it was sent: what report headers show."""

    name: str
    provider: str
    """The provider's key (image, npz, random, value, audio, loader)."""
    detail: str
    shape: tuple
    """One sample's shape."""
    dtype: str
    samples: int
    """How many samples the array holds (1 when shared)."""
    shared: bool
    sha256: str
    """SHA-256 of the array's bytes (all its samples), with its dtype and shape."""

    def as_dict(self) -> dict:
        return {"name": self.name, "provider": self.provider, "detail": self.detail, "shape": list(self.shape),
                "dtype": self.dtype, "samples": self.samples, "shared": self.shared, "sha256": self.sha256}


@dataclass(frozen=True)
class InputSet:
    """The input tensors of one run, saved once and shipped to every target."""

    path: Path
    """inputs.npz: one array per model input, samples on axis 0 (or one shared sample)."""
    sha256: str
    sample_names: List[str]
    tensors: List[InputTensor] = field(default_factory=list)
    count: int = 1
    """Samples every target runs (stream steps, for a stream)."""
    image_input: Optional[str] = None
    """The input the image provider feeds, if any (pictures and preprocessing parity use it)."""

    @property
    def input_name(self) -> str:
        """The image input, else the first input: the one a one-input report names."""
        return self.image_input or self.tensors[0].name

    @property
    def shape(self) -> tuple:
        return self.tensor(self.input_name).shape

    def tensor(self, name: str) -> InputTensor:
        return next(tensor for tensor in self.tensors if tensor.name == name)


def model_inputs(model) -> Dict[str, ModelInput]:
    dtypes = getattr(model, "input_dtypes", {}) or {}
    return {name: ModelInput(name, list(shape) if shape is not None else None, dtypes.get(name))
            for name, shape in model.inputs.items()}


def resolve_names(scenario, model) -> Dict[str, InputSpec]:
    """Scenario inputs by model input name; every model input fed, no name the model lacks."""
    wanted = model_inputs(model)
    resolved: Dict[str, InputSpec] = {}
    for spec in scenario.inputs:
        if spec.name is None:
            if len(wanted) != 1:
                raise ConfigError(scenario.path, "inputs", f"the model has {len(wanted)} inputs "
                                  f"({', '.join(wanted)}); `images:` feeds a model with one input",
                                  "name every input under `inputs:`, e.g. "
                                  f"`{next(iter(wanted), 'NAME')}: {{image: [...]}}`")
            resolved[next(iter(wanted))] = spec
        elif spec.name not in wanted:
            raise ConfigError(scenario.path, spec.where, f"the model has no input {spec.name!r}",
                              "its inputs are " + ", ".join(f"{m.name} {m.dtype or '?'} {m.shown_shape()}"
                                                            for m in wanted.values()))
        else:
            resolved[spec.name] = spec
    missing = [m for name, m in wanted.items() if name not in resolved]
    if missing:
        raise ConfigError(scenario.path, "inputs", "nothing feeds the model's input(s) " + ", ".join(
            f"{m.name} ({m.dtype or '?'} {m.shown_shape()})" for m in missing),
            f"add e.g. `{missing[0].name}: {{value: 0}}` or `{missing[0].name}: {{npz: file.npz}}`")
    return resolved


def check_samples(scenario_path: Path, where: str, want: ModelInput, samples: Samples) -> None:
    """The samples fit the model input: its type, rank and fixed dimensions; finite values."""
    array = samples.arrays
    given = str(array.dtype)
    if want.dtype is not None and want.dtype not in DTYPES:
        raise ConfigError(scenario_path, where, f"the model's input {want.name!r} is {want.dtype}",
                          f"the harness feeds {', '.join(DTYPES)}")
    if given not in DTYPES:
        raise ConfigError(scenario_path, where, f"gives {given} values; the model's input {want.name!r} is "
                          f"{want.dtype or 'of an unknown type'}", f"give one of {', '.join(DTYPES)}"
                          + (f" (e.g. `.astype(np.{want.dtype})`)" if want.dtype else ""))
    if want.dtype is not None and given != want.dtype:
        raise ConfigError(scenario_path, where, f"gives {given} but the model's input {want.name!r} is {want.dtype}",
                          f"give {want.dtype} values (`dtype: {want.dtype}`, or `.astype(np.{want.dtype})`)")
    one = tuple(array.shape[1:])
    if want.shape is not None:
        fits = len(one) == len(want.shape) and all(d is None or d < 0 or d == g for d, g in zip(want.shape, one))
        if not fits:
            raise ConfigError(scenario_path, where, f"gives samples of shape {describe_shape(one)} but the model's "
                              f"input {want.name!r} is {want.shown_shape()}",
                              "give samples of the model's shape (? is free)")
    if int(np.prod(one)) > MAX_ELEMENTS:
        raise ConfigError(scenario_path, where, f"one sample holds {int(np.prod(one)):,} elements")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ConfigError(scenario_path, where, f"holds {int(array.size - np.isfinite(array).sum())} NaN/Inf values",
                          "feed finite numbers")


def array_sha256(array: np.ndarray) -> str:
    digest = hashlib.sha256(f"{array.dtype.str}{list(array.shape)}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def build_inputs(scenario, model, out_dir: Path) -> InputSet:
    """Build every input of the scenario for the model into out_dir/inputs.npz, checked, and hash it."""
    resolved = resolve_names(scenario, model)
    wanted = model_inputs(model)
    context = BuildContext(scenario_path=scenario.path, preprocess=scenario.preprocess)
    built: Dict[str, Samples] = {}
    for name, spec in resolved.items():
        samples = spec.provider.build(wanted[name], context, spec.where)
        check_samples(scenario.path, spec.where, wanted[name], samples)
        built[name] = samples
    count = sample_count(scenario, built, resolved)
    total = sum(samples.arrays.nbytes for samples in built.values())
    if total > MAX_INPUT_BYTES:
        raise ConfigError(scenario.path, "inputs", f"the inputs make {total / 1024 ** 2:,.0f} MB, more than "
                          f"{MAX_INPUT_BYTES // 1024 ** 2} MB: they are built in the host's memory and sent to "
                          "every board", "use fewer or smaller samples")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = save_npz(out_dir / INPUTS_FILE, {name: built[name].arrays for name in wanted})
    named = next((s.names for s in built.values() if s.names and not s.shared), None)
    sample_names = (named or [f"sample {index}" for index in range(count)])[:count]
    tensors = [InputTensor(name=name, provider=resolved[name].provider.keyword, detail=built[name].detail,
                           shape=tuple(built[name].arrays.shape[1:]), dtype=str(built[name].arrays.dtype),
                           samples=len(built[name].arrays), shared=built[name].shared,
                           sha256=array_sha256(built[name].arrays)) for name in wanted]
    image = next((name for name, spec in resolved.items() if spec.provider.is_image), None)
    return InputSet(path=path, sha256=sha256_file(path), sample_names=sample_names, tensors=tensors, count=count,
                    image_input=image)


def sample_count(scenario, built: Dict[str, Samples], resolved: Dict[str, InputSpec]) -> int:
    """Samples (or stream steps) of the run: every input that is not shared holds the same number."""
    # One sample is shared by every sample, as the agent reads it, whatever made it.
    counts = {name: len(samples.arrays) for name, samples in built.items()
              if not samples.shared and len(samples.arrays) > 1}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise ConfigError(scenario.path, "inputs", f"the inputs hold different numbers of samples ({shown})",
                          "give every input the same number of samples, or one that they share")
    available = next(iter(counts.values()), 1)
    stream = getattr(scenario, "stream", None)
    if stream is None:
        return available
    if stream.steps is None:
        return available
    if counts and stream.steps > available:
        name = next(iter(counts))
        raise ConfigError(scenario.path, "stream.steps", f"is {stream.steps} but {resolved[name].where} gives "
                          f"{available} sample(s)", f"run at most {available} steps, or give more samples")
    return stream.steps
