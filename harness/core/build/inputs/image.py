"""The image provider: photos through the scenario's preprocessing (`preprocess:`), one sample per image.

    inputs:
      images: [skimage:astronaut, photos/*.jpg]     # the model's only input (the classic form)
      pixel_values: {image: [skimage:astronaut]}   # or by name, beside other inputs
"""

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from ..preprocess import ImageRef, preprocess_image, read_bgr
from ...yamlfile import Section, describe_file_type
from .base import BuildContext, ModelInput, Provider, Samples, input_error

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Real photographs that ship inside scikit-image (public domain), usable offline.
SKIMAGE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "page", "text",
                  "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "coins", "moon")


def image_list(section: Section, key: str) -> List[ImageRef]:
    """Files, directories, globs and `skimage:NAME` entries, as ImageRefs with unique names."""
    images: List[ImageRef] = []
    for index, entry in enumerate(section.str_list(key)):
        where = f"{key}[{index}]"
        if entry.startswith("skimage:"):
            image = entry.split(":", 1)[1]
            if image not in SKIMAGE_IMAGES:
                raise section.error(where, f"scikit-image has no image {image!r}",
                                    f"use one of {', '.join(SKIMAGE_IMAGES)}")
            images.append(ImageRef(name=image, skimage=image))
            continue
        pattern = Path(entry).expanduser()
        if not pattern.is_absolute():
            pattern = section.file.parent / pattern
        if any(char in entry for char in "*?["):
            matches = sorted(Path(match) for match in glob.glob(str(pattern), recursive=True))
            matches = [match for match in matches if match.is_file()]
            if not matches:
                raise section.error(where, f"the pattern {entry!r} matches no file (looked for {pattern})",
                                    "fix the pattern; relative paths start at the scenario's directory")
        elif pattern.is_dir():
            matches = sorted(p for p in pattern.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                raise section.error(where, f"the directory {entry!r} holds no image files",
                                    "put JPEG, PNG, BMP, TIFF or WebP files in it, or name the files")
        elif pattern.is_file():
            matches = [pattern]
        elif pattern.exists():
            raise section.error(where, f"{entry!r} is {describe_file_type(pattern)}, not an image file "
                                f"(looked at {pattern})", "give an image file, a directory of them or a pattern")
        else:
            raise section.error(where, f"file {entry!r} does not exist (looked at {pattern})",
                                "fix the path; relative paths start at the scenario's directory")
        images += [ImageRef(name=match.stem, path=match) for match in matches]
    if not images:
        raise section.error(key, "is empty", "list at least one image, e.g. `- skimage:astronaut`")
    # Two files with the same stem get suffixes so that every sample has a unique name.
    seen: Dict[str, int] = {}
    renamed = []
    for image in images:
        count = seen.get(image.name, 0)
        seen[image.name] = count + 1
        renamed.append(ImageRef(name=f"{image.name}-{count}" if count else image.name,
                                path=image.path, skimage=image.skimage))
    return renamed


@dataclass(frozen=True)
class ImageInput(Provider):
    key = "image"
    images: Tuple[ImageRef, ...]

    @classmethod
    def parse(cls, entry: Section) -> "ImageInput":
        return cls(tuple(image_list(entry, cls.key)))

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
