"""Real test audio: espeak-ng speech with silences placed at known times."""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

RATE = 16000


def espeak(text: str, path: Path, voice: str = "en", speed: int = 150, pitch: int = 50) -> np.ndarray:
    """Synthesise `text` with espeak-ng and return it as 16 kHz float32, edge silence trimmed."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is required for the tests (Debian package espeak-ng)")
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    x = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0] : loud[-1] + 1]


@dataclass(frozen=True)
class Recording:
    """Audio with the true speech spans (seconds) it contains."""

    samples: np.ndarray
    spans: tuple[tuple[float, float], ...]

    @property
    def duration(self) -> float:
        return len(self.samples) / RATE


def compose(parts: list, seed: int = 0, noise_db: float = -65.0) -> Recording:
    """Concatenate speech arrays and silence lengths (floats, seconds) with faint noise throughout."""
    rng = np.random.default_rng(seed)
    pieces, spans, t = [], [], 0
    for part in parts:
        if isinstance(part, (int, float)):
            pieces.append(np.zeros(int(part * RATE), np.float32))
        else:
            spans.append((t / RATE, (t + len(part)) / RATE))
            pieces.append(part)
        t += len(pieces[-1])
    x = np.concatenate(pieces)
    x = x + (10 ** (noise_db / 20)) * rng.standard_normal(len(x)).astype(np.float32)
    return Recording(x.astype(np.float32), tuple(spans))


def write_wav16(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Write float samples as a 16-bit mono WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def ffmpeg_convert(src: Path, dst: Path, *extra: str) -> Path:
    """Encode `src` into `dst` (format from the suffix) with the ffmpeg command-line tool."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg is required for the tests (Debian package ffmpeg)")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *extra, str(dst)],
        check=True,
    )
    return dst
