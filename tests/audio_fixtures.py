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


def espeak(
    text: str, path: Path, voice: str = "en", speed: int = 150, pitch: int = 50, rate: int = RATE
) -> np.ndarray:
    """Synthesise `text` with espeak-ng; float32 at `rate`, trimmed to its audible span."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is required for the tests (Debian package espeak-ng)")
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    with wave.open(str(path)) as w:
        native = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    x = pcm.astype(np.float32) / 32768.0
    # espeak pads with digital silence; trimming it makes the true span the whole clip.
    audible = np.flatnonzero(np.abs(x) > 1e-3)
    x = x[audible[0] : audible[-1] + 1]
    return soxr.resample(x, native, rate).astype(np.float32) if native != rate else x


@dataclass(frozen=True)
class Recording:
    """Audio with the true speech spans it contains."""

    samples: np.ndarray
    sample_spans: tuple[tuple[int, int], ...]  # [start, end) in samples
    rate: int = RATE

    @property
    def spans(self) -> tuple[tuple[float, float], ...]:
        """The speech spans in seconds."""
        return tuple((a / self.rate, b / self.rate) for a, b in self.sample_spans)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


def compose(parts: list, rate: int = RATE, seed: int = 0, noise_db: float = -65.0) -> Recording:
    """Concatenate speech arrays (at `rate`) and silences (seconds) with faint noise throughout."""
    rng = np.random.default_rng(seed)
    pieces, spans, t = [], [], 0
    for part in parts:
        if isinstance(part, (int, float)):
            pieces.append(np.zeros(round(part * rate), np.float32))
        else:
            spans.append((t, t + len(part)))
            pieces.append(part)
        t += len(pieces[-1])
    x = np.concatenate(pieces)
    x = x + (10 ** (noise_db / 20)) * rng.standard_normal(len(x)).astype(np.float32)
    return Recording(x.astype(np.float32), tuple(spans), rate)


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


def active_power(x: np.ndarray) -> float:
    """Mean power of the 20 ms frames within 30 dB of the loudest: the speech's active level."""
    frames = x[: len(x) // 320 * 320].astype(np.float64).reshape(-1, 320)
    power = np.mean(frames**2, axis=1)
    return float(power[power >= power.max() * 1e-3].mean())


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """`x` plus white noise `snr_db` under its active-frame power."""
    noise = np.random.default_rng(seed).standard_normal(len(x)) * np.sqrt(active_power(x) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def write_stereo16(path: Path, left: np.ndarray, right: np.ndarray, rate: int = RATE) -> Path:
    """Write two float channels as a 16-bit stereo WAV (left = channel 0)."""
    pcm = (np.clip(np.stack([left, right], axis=1), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path
