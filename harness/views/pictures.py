"""Pictures for report.html: an input back from its tensor, a PNG as a data URI in a figure, text escaped."""

import base64
import html

import cv2
import numpy as np

PICTURE_PX = 192
"""Displayed size of the longer side of every picture (the PNGs are scaled with pixelated rendering)."""
MAX_SAMPLES_SHOWN = 8
"""Pictures for at most this many samples per board and output (the page stays small)."""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def png_data_uri(image: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} picture as PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def img_tag(image: np.ndarray, caption: str) -> str:
    height, width = image.shape[:2]
    factor = PICTURE_PX / max(height, width)
    return (f'<figure><img src="{png_data_uri(image)}" width="{round(width * factor)}" '
            f'height="{round(height * factor)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>')


def input_picture(tensor: np.ndarray, preprocess) -> np.ndarray:
    """The input image back from one sample's tensor, by undoing std, mean and scale (BGR uint8)."""
    x = np.asarray(tensor, dtype=np.float64)
    x = x.reshape(x.shape[-3:]) if x.ndim > 3 else x
    image = x.transpose(1, 2, 0) if preprocess.layout == "NCHW" else x
    if image.shape[-1] != 3:
        return normalized_picture(image[..., 0] if image.ndim == 3 else image)
    image = image * np.asarray(preprocess.std) + np.asarray(preprocess.mean)
    if preprocess.scale:
        image = image / preprocess.scale
    else:
        return normalized_picture(image)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[..., ::-1] if preprocess.color == "rgb" else image)


def normalized_picture(values: np.ndarray) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return scaled.astype(np.uint8)
