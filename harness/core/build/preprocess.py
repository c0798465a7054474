"""Host preprocessing: images (ImageRef) become the input tensors every target runs, built once, by the
steps a scenario's `preprocess:` gives (Preprocess); the image provider (inputs/image.py) calls it.

The tensors are computed here, on the host, and shipped as bytes: a board
never re-runs the preprocessing for the comparison, so a difference in the
outputs is a difference in inference, not in image decoding or resizing.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from ..cache import sha256_file
from ..errors import ConfigError
from ..files import replacing


@dataclass(frozen=True)
class ImageRef:
    """One input image: a file, or a named image from scikit-image's data (`skimage:astronaut`)."""

    name: str
    path: Optional[Path] = None
    skimage: Optional[str] = None


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input tensor, as data.

    The order is fixed and is the order of the fields: read as BGR (OpenCV's
    order), convert colour, resize, multiply by `scale`, subtract `mean`,
    divide by `std`, lay out as NCHW or NHWC, add the batch axis.
    """

    color: str = "rgb"
    """Channel order the model wants: "rgb" converts from BGR, "bgr" keeps it."""
    height: int = 512
    width: int = 512
    interpolation: str = "linear"
    """OpenCV interpolation: nearest, linear, area or cubic."""
    scale: float = 1.0 / 255.0
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "NCHW"


INTERPOLATION_FLAGS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}


def read_bgr(image: ImageRef) -> np.ndarray:
    """The image as 8-bit BGR HxWx3, the way cv2.imread gives it on every platform."""
    if image.skimage:
        import skimage.data

        rgb = getattr(skimage.data, image.skimage)()
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        rgb = rgb[..., :3]
        if rgb.dtype != np.uint8:
            rgb = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8) if rgb.dtype.kind == "f" else rgb.astype(np.uint8)
        return np.ascontiguousarray(rgb[..., ::-1])
    bgr = cv2.imread(str(image.path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(image.path, None, "OpenCV cannot decode this image",
                          "use a JPEG, PNG, BMP, TIFF or WebP file, or remove it from `inputs.images`")
    return bgr


def preprocess_image(bgr: np.ndarray, spec: Preprocess) -> np.ndarray:
    """One BGR uint8 image to one float32 input tensor with its batch axis (1xCxHxW or 1xHxWxC)."""
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if spec.color == "rgb" else bgr
    image = cv2.resize(image, (spec.width, spec.height), interpolation=INTERPOLATION_FLAGS[spec.interpolation])
    tensor = image.astype(np.float32) * np.float32(spec.scale)
    tensor = (tensor - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor[np.newaxis], dtype=np.float32)


def save_raw_images(images: List[ImageRef], out_dir: Path):
    """The decoded BGR images as the board gets them (images.npz: img0, img1, ...) and their SHA-256."""
    arrays = {f"img{index}": read_bgr(image) for index, image in enumerate(images)}
    path = out_dir / "images.npz"
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path, sha256_file(path)


def preprocess_spec(spec: Preprocess) -> dict:
    """The preprocessing as job.json carries it to the agent."""
    return {"color": spec.color, "height": spec.height, "width": spec.width, "interpolation": spec.interpolation,
            "scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std), "layout": spec.layout}
