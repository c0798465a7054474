"""Text lines cut from scikit-image's scanned page (public domain): the inputs of the text scenarios.

`lines` yields crops of the page's lines as a recognizer's application feeds them: grey, resized to
height x width (the line's aspect kept by cutting it into pieces of that aspect), as three channels
scaled to [-1, 1] (PaddleOCR's `(x / 255 - 0.5) / 0.5`), NCHW with a batch axis of 1. `rotate_every: 2`
turns every second crop upside down (what a text-orientation classifier is for).
"""

import cv2
import numpy as np
from skimage import data


def line_boxes(page: np.ndarray, min_rows: int = 6):
    """(top, bottom) of each text line: runs of rows darker than the page's median row."""
    ink = (255 - page.astype(np.float64)).mean(axis=1)
    rows = ink > np.median(ink) + 0.25 * ink.std()
    found, start = [], None
    for index, dark in enumerate(list(rows) + [False]):
        if dark and start is None:
            start = index
        elif not dark and start is not None:
            if index - start >= min_rows:
                found.append((max(start - 2, 0), min(index + 2, len(rows))))
            start = None
    return found


def lines(height: int = 32, width: int = 128, rotate_every: int = 0):
    """Every crop of the page in reading order (about 60 at 32x128); the scenario's `count` takes the first."""
    page = data.page()
    produced = 0
    for top, bottom in line_boxes(page):
        strip = page[top:bottom]
        piece = max(1, round((bottom - top) * width / height))
        for left in range(0, strip.shape[1] - piece // 2, piece):
            crop = strip[:, left:left + piece]
            if crop.shape[1] < piece:
                crop = np.pad(crop, ((0, 0), (0, piece - crop.shape[1])), constant_values=int(np.median(page)))
            grey = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
            if rotate_every and produced % rotate_every == rotate_every - 1:
                grey = grey[::-1, ::-1]
            tensor = np.repeat(((grey / 255.0 - 0.5) / 0.5)[None, None], 3, axis=1)
            yield np.ascontiguousarray(tensor, dtype=np.float32)
            produced += 1
