"""Host preprocessing against values computed by hand."""

import cv2
import numpy as np
import pytest

from harness.core.build.preprocess import preprocess_image, read_bgr
from harness.config.scenario import ImageRef, Preprocess


def test_each_step_in_order():
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30  # B, G, R
    spec = Preprocess(color="rgb", height=2, width=3, interpolation="area", scale=1 / 255,
                      mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125), layout="NCHW")
    tensor = preprocess_image(bgr, spec)
    assert tensor.shape == (1, 3, 2, 3) and tensor.dtype == np.float32
    expected_rgb = [(30 / 255 - 0.1) / 0.5, (20 / 255 - 0.2) / 0.25, (10 / 255 - 0.3) / 0.125]
    for channel, value in enumerate(expected_rgb):
        assert np.allclose(tensor[0, channel], value, atol=1e-6)


def test_bgr_kept_and_nhwc_layout():
    bgr = np.full((8, 8, 3), (1, 2, 3), np.uint8)
    spec = Preprocess(color="bgr", height=8, width=8, scale=1.0, layout="NHWC")
    tensor = preprocess_image(bgr, spec)
    assert tensor.shape == (1, 8, 8, 3)
    assert tensor[0, 0, 0].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("interpolation, flag", [("nearest", cv2.INTER_NEAREST), ("linear", cv2.INTER_LINEAR),
                                                  ("area", cv2.INTER_AREA), ("cubic", cv2.INTER_CUBIC)])
def test_named_interpolation_is_opencvs(interpolation, flag):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    spec = Preprocess(color="bgr", height=16, width=24, interpolation=interpolation, scale=1.0, layout="NHWC")
    expected = cv2.resize(bgr, (24, 16), interpolation=flag).astype(np.float32)
    assert np.array_equal(preprocess_image(bgr, spec)[0], expected)


def test_interpolations_really_differ():
    bgr = read_bgr(ImageRef(name="astronaut", skimage="astronaut"))
    tensors = {i: preprocess_image(bgr, Preprocess(height=64, width=64, interpolation=i))
               for i in ("nearest", "linear", "area", "cubic")}
    assert len({t.tobytes() for t in tensors.values()}) == 4


def test_skimage_image_is_bgr():
    import skimage.data
    bgr = read_bgr(ImageRef(name="astronaut", skimage="astronaut"))
    assert np.array_equal(bgr[..., ::-1], skimage.data.astronaut())


def test_unreadable_image_names_the_file(tmp_path):
    from harness.core.errors import ConfigError
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError, match="broken.jpg"):
        read_bgr(ImageRef(name="broken", path=bad))
