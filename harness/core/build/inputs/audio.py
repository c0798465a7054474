"""The audio provider: a WAV file, or speech that espeak-ng says on the host, cut into frames.

    input:
      audio:
        speak: "Is anybody there? Voice activity on the board."   # or file: clip.wav
        voice: en            # espeak-ng voice (speak only)
        speed: 160           # words per minute (speak only)
        rate: 16000          # resampled to this many samples per second
        frame: 512           # samples per frame: one frame per sample (or stream step)
        context: 64          # samples of the previous frame put before each frame (Silero's 16 kHz context)
        pad: 0.25            # seconds of silence before and after
        frames: 40           # at most this many frames

A frame is shaped like the model's input: [1, context + frame] for a
[batch, samples] input. The speech is made once per (text, voice, speed,
espeak-ng version) and kept in the cache, so every run feeds the same bytes.
"""

import re
import shutil
import subprocess
import tempfile
import wave
from math import gcd
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import field_validator, model_validator

from ...cache import cache_root, sha256_json
from ...errors import SetupError
from ...fields import FilePath, Integer, Number, Problem, Text, section
from .base import MAX_SAMPLES, BuildContext, ModelInput, Provider, Samples, input_error

VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+./-]{0,39}$")
"""espeak-ng voice names: `en`, `en-us`, `en+f3`, `roa/it` (never an option, never a path outside its data)."""
MAX_TEXT = 2000
ESPEAK_TIMEOUT_S = 60.0


@section
class AudioInput(Provider):
    """A WAV file, or speech that espeak-ng says on the host, cut into frames: one frame per sample."""

    keyword = "audio"
    file: Optional[FilePath()] = None
    """A PCM WAV file (8, 16 or 32-bit integer samples), relative to the scenario's directory."""
    speak: Optional[Text] = None
    """Text espeak-ng says (instead of `file`): real speech without a recording."""
    voice: Text = "en"
    """espeak-ng voice (speak only): en, en-us, de, en+f3, ..."""
    speed: Integer(80, 500) = 160
    """Words per minute (speak only)."""
    rate: Integer(1000, 384000) = 16000
    """Samples per second the audio is resampled to (the model's rate)."""
    frame: Integer(1, 1 << 20) = 512
    """Samples per frame."""
    context: Integer(0, 1 << 20) = 0
    """Samples of the previous frame put before each frame (Silero's 16 kHz context is 64)."""
    pad: Number(0.0, 60.0) = 0.0
    """Seconds of silence before and after."""
    frames: Optional[Integer(1, MAX_SAMPLES)] = None
    """At most this many frames (default: as many as the audio holds)."""

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data):
        if isinstance(data, dict):
            sources = [key for key in ("file", "speak") if key in data]
            if len(sources) != 1:
                raise Problem("needs exactly one of `file` (a WAV) or `speak` (text espeak-ng says)"
                              + (f", not {' and '.join(sources)}" if sources else ""),
                              "give `file: clip.wav` or `speak: \"some text\"`")
            if "file" in data and ("voice" in data or "speed" in data):
                raise Problem("applies to `speak` only", "leave it out with `file:`",
                              at="voice" if "voice" in data else "speed")
        return data

    @field_validator("speak")
    @classmethod
    def _some_text(cls, speak: Optional[str]) -> Optional[str]:
        if speak is not None and not (0 < len(speak.strip()) and len(speak) <= MAX_TEXT):
            raise Problem(f"must be some text (1 to {MAX_TEXT} characters)", "write what espeak-ng should say")
        return speak

    @field_validator("voice")
    @classmethod
    def _a_voice(cls, voice: str) -> str:
        if not VOICE.match(voice) or ".." in voice:
            raise Problem(f"{voice!r} is not an espeak-ng voice name", "e.g. en, en-us, de, en+f3")
        return voice

    def build(self, want: ModelInput, context: BuildContext, where: str) -> Samples:
        path = speech_wav(self.speak, self.voice, self.speed) if self.speak is not None else self.file
        samples, rate = read_wav(path, context.scenario_path, f"{where}.audio.file")
        samples = resample(samples, rate, self.rate)
        silence = np.zeros(int(round(self.pad * self.rate)), np.float32)
        samples = np.concatenate([silence, samples, silence])
        count = len(samples) // self.frame
        if self.frames is not None:
            count = min(count, self.frames)
        if count == 0:
            raise input_error(context.scenario_path, f"{where}.audio.frame", f"the audio holds {len(samples)} samples "
                              f"at {self.rate} Hz, less than one frame of {self.frame}", "use a shorter frame")
        if count > MAX_SAMPLES:
            raise input_error(context.scenario_path, f"{where}.audio.frames", f"the audio makes {count} frames, more "
                              f"than {MAX_SAMPLES}", "limit them with `frames:`")
        padded = np.concatenate([np.zeros(self.context, np.float32), samples])
        frames = np.stack([padded[index * self.frame: index * self.frame + self.context + self.frame]
                           for index in range(count)])
        rank = len(want.shape) if want.shape is not None else 2
        if rank < 1:
            raise input_error(context.scenario_path, where, f"the model's input {want.name!r} is a scalar",
                              "feed audio frames to an input of rank 1 or more")
        frames = frames.reshape((count,) + (1,) * (rank - 1) + (self.context + self.frame,))
        what = f"espeak-ng {self.speak[:40]!r}{'...' if len(self.speak) > 40 else ''}" if self.speak is not None \
            else self.file.name
        detail = (f"{what}, {len(samples) / self.rate:.2f} s at {self.rate} Hz, {count} frames of {self.frame}"
                  + (f" (+{self.context} context)" if self.context else ""))
        return Samples(frames.astype(np.float32), names=[f"frame {index}" for index in range(count)], detail=detail)


def espeak_version() -> str:
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise SetupError("espeak-ng is not installed: `speak:` inputs need it to make speech\n"
                         "  fix: `apt-get install espeak-ng` (`make setup` installs it)")
    completed = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S)
    return completed.stdout.strip()


def speech_wav(text: str, voice: str, speed: int) -> Path:
    """A WAV of espeak-ng saying text, made once per (text, voice, speed, espeak-ng version)."""
    version = espeak_version()
    key = sha256_json({"text": text, "voice": voice, "speed": speed, "espeak": version})[:20]
    final = cache_root() / "audio" / f"{key}.wav"
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=final.parent, prefix=".speaking-", suffix=".wav", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        # argv as a list, and `--` before the text: a text starting with "-" is still text.
        completed = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(partial), "--", text],
                                   capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S)
        if completed.returncode != 0 or partial.stat().st_size == 0:
            raise SetupError(f"espeak-ng could not speak with voice {voice!r}: "
                             f"{(completed.stderr or completed.stdout).strip()[-300:]}\n"
                             "  fix: pick a voice from `espeak-ng --voices`")
        partial.replace(final)  # complete files only: a half-written WAV is never found
    finally:
        partial.unlink(missing_ok=True)
    return final


def read_wav(path: Path, scenario_path: Path, where: str):
    """Mono float32 samples in [-1, 1] and the sample rate, from an integer PCM WAV."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as error:
        raise input_error(scenario_path, where, f"cannot read {path} as a WAV file: {error}",
                          "give a PCM WAV (8, 16 or 32-bit integer samples)") from error
    if width not in (1, 2, 4):
        raise input_error(scenario_path, where, f"{path.name} has {8 * width}-bit samples",
                          "convert it to 16-bit PCM (e.g. `sox in.wav -b 16 out.wav`)")
    kind = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    values = np.frombuffer(raw, dtype=kind).astype(np.float64)
    if width == 1:
        values = values - 128.0
    values = values / float(2 ** (8 * width - 1))
    if channels > 1:
        values = values[: len(values) // channels * channels].reshape(-1, channels).mean(axis=1)
    return values.astype(np.float32), rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly): deterministic, no phase shift."""
    if rate == target:
        return samples
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    return resample_poly(samples.astype(np.float64), target // common, rate // common).astype(np.float32)
