"""Host preprocessing: images become the input tensors every target runs, built once (the image provider).

The tensors are computed here, on the host, and shipped as bytes: a board
never re-runs the preprocessing for the comparison, so a difference in the
outputs is a difference in inference, not in image decoding or resizing.
"""

from pathlib import Path

import cv2
import numpy as np

from .cache import sha256_file
from .errors import ConfigError
from .scenario import ImageRef, Preprocess, Scenario

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


def save_raw_images(scenario: Scenario, out_dir: Path):
    """The decoded BGR images as the board gets them (images.npz: img0, img1, ...) and their SHA-256."""
    arrays = {f"img{index}": read_bgr(image) for index, image in enumerate(scenario.images)}
    path = out_dir / "images.npz"
    tmp = out_dir / ".images.npz.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)
    return path, sha256_file(path)


def preprocess_spec(spec: Preprocess) -> dict:
    """The preprocessing as job.json carries it to the agent."""
    return {"color": spec.color, "height": spec.height, "width": spec.width, "interpolation": spec.interpolation,
            "scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std), "layout": spec.layout}
