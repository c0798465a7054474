"""The image provider: photos through the scenario's preprocessing (`preprocess:`), one sample per image.

    inputs:
      images: [skimage:astronaut, photos/*.jpg]     # the model's only input (the classic form)
      pixel_values: {image: [skimage:astronaut]}   # or by name, beside other inputs
"""

import glob
from pathlib import Path
from typing import Annotated, Dict, List, Optional, Tuple

from pydantic import BeforeValidator, ValidationInfo, WithJsonSchema

from ...fields import Problem, check_text, describe_file_type, file_base, section, shown, type_name
from ..preprocess import ImageRef, preprocess_image, read_bgr
from .base import BuildContext, ModelInput, Provider, Samples, input_error

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Real photographs that ship inside scikit-image (public domain), usable offline.
SKIMAGE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "page", "text",
                  "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "coins", "moon")


def image_list(entries, base: Optional[Path]) -> Tuple[ImageRef, ...]:
    """Files, directories, globs and `skimage:NAME` entries, as ImageRefs with unique names."""
    if not isinstance(entries, list):
        raise Problem(f"must be a list, got {type_name(entries)} {shown(entries)}",
                      "write it as `{key}: [a, b]` or one `- item` per line")
    images: List[ImageRef] = []
    for index, entry in enumerate(entries):
        try:
            images += _images_of(check_text(entry), base)
        except Problem as problem:
            raise Problem(problem.problem, problem.fix, at=f"[{index}]") from None
    if not images:
        raise Problem("is empty", "list at least one image, e.g. `- skimage:astronaut`")
    # Two files with the same stem get suffixes so that every sample has a unique name.
    seen: Dict[str, int] = {}
    renamed = []
    for image in images:
        count = seen.get(image.name, 0)
        seen[image.name] = count + 1
        renamed.append(ImageRef(name=f"{image.name}-{count}" if count else image.name,
                                path=image.path, skimage=image.skimage))
    return tuple(renamed)


def _images_of(entry: str, base: Optional[Path]) -> List[ImageRef]:
    if entry.startswith("skimage:"):
        image = entry.split(":", 1)[1]
        if image not in SKIMAGE_IMAGES:
            raise Problem(f"scikit-image has no image {image!r}", f"use one of {', '.join(SKIMAGE_IMAGES)}")
        return [ImageRef(name=image, skimage=image)]
    pattern = Path(entry).expanduser()
    if not pattern.is_absolute() and base is not None:
        pattern = base / pattern
    if any(char in entry for char in "*?["):
        matches = sorted(Path(match) for match in glob.glob(str(pattern), recursive=True))
        matches = [match for match in matches if match.is_file()]
        if not matches:
            raise Problem(f"the pattern {entry!r} matches no file (looked for {pattern})",
                          "fix the pattern; relative paths start at the scenario's directory")
    elif pattern.is_dir():
        matches = sorted(p for p in pattern.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not matches:
            raise Problem(f"the directory {entry!r} holds no image files",
                          "put JPEG, PNG, BMP, TIFF or WebP files in it, or name the files")
    elif pattern.is_file():
        matches = [pattern]
    elif pattern.exists():
        raise Problem(f"{entry!r} is {describe_file_type(pattern)}, not an image file (looked at {pattern})",
                      "give an image file, a directory of them or a pattern")
    else:
        raise Problem(f"file {entry!r} does not exist (looked at {pattern})",
                      "fix the path; relative paths start at the scenario's directory")
    return [ImageRef(name=match.stem, path=match) for match in matches]


def _check_images(value, info: ValidationInfo) -> Tuple[ImageRef, ...]:
    if isinstance(value, tuple) and all(isinstance(item, ImageRef) for item in value):
        return value  # made in code, or already resolved
    return image_list(value, file_base(info))


Images = Annotated[Tuple[ImageRef, ...], BeforeValidator(_check_images),
                   WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 1})]
"""Image files, directories of them, glob patterns (`photos/*.jpg`) and `skimage:NAME` (a photo that ships
in scikit-image: astronaut, coffee, chelsea, ...), relative to the scenario's directory."""


@section
class ImageInput(Provider):
    """Photos through the scenario's preprocessing (`preprocess:`), one sample per image."""

    keyword = "image"
    SHORT_FORM = {"type": "array", "items": {"type": "string"}, "minItems": 1,
                  "description": "image files, directories, glob patterns and skimage:NAME"}
    images: Images
    """The images, in order; their names (file stems) name the samples in the report."""

    @classmethod
    def from_short_form(cls, value):
        return {"images": value}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        return cls.SHORT_FORM  # `image: [...]` is the only way it is written

    @property
    def is_image(self) -> bool:
        return True

    def expected_shape(self, preprocess) -> List[int]:
        p = preprocess
        return [1, 3, p.height, p.width] if p.layout == "NCHW" else [1, p.height, p.width, 3]

    def build(self, want: ModelInput, context: BuildContext, where: str) -> Samples:
        import numpy as np

        p = context.preprocess
        expected = self.expected_shape(p)
        fixed = want.fixed_shape
        if fixed is not None and fixed != expected:
            raise input_error(context.scenario_path, "preprocess.resize",
                              f"makes {p.layout} input {expected} but the model's input {want.name!r} is {fixed}",
                              "set resize height/width (and layout) to the model's input size")
        tensors = [preprocess_image(read_bgr(image), p) for image in self.images]
        names = [image.name for image in self.images]
        detail = (f"{len(names)} image(s) ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}) "
                  f"{p.color} {p.interpolation} resize to {p.height}x{p.width} {p.layout}")
        return Samples(np.stack(tensors), names=names, detail=detail)
