"""Reading audio files (PyAV's bundled FFmpeg decoders) and writing the processed WAV."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from models.errors import AudioError
from models.frames import SAMPLE_RATE

MIN_SECONDS = 0.25  # shorter input cannot fill the encoder's first frames meaningfully
# The FFmpeg demuxers a file may be read with. Auto-detection alone would also accept playlists
# (HLS, concat, ...), which open other files and URLs: an uploaded x.m3u8 could read anything.
CONTAINERS = ("wav", "w64", "mp3", "flac", "ogg", "mov", "matroska", "aac", "aiff", "caf", "amr", "au", "wv")
_OPEN_OPTIONS = {"format_whitelist": ",".join(CONTAINERS), "protocol_whitelist": "file"}


class UnsupportedFormat(AudioError):
    """No allowed demuxer recognises the file (a playlist, a protocol, not audio at all)."""

    code = "unsupported_format"


class AudioTooLong(AudioError):
    """The audio is longer than the caller accepts."""

    code = "too_long"


def decode(path: str | Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio file (WAV, MP3, M4A, FLAC, OGG, ... see CONTAINERS) to mono float32 at its own rate.

    `max_seconds`: stop and raise AudioTooLong past this much audio (decoded memory stays bounded).
    """
    samples, rate = _decode(path, split=False, max_seconds=max_seconds)
    return samples[0], rate


def decode_channels(path: str | Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a file with its channels kept apart: float32 of shape (channels, n) at its own rate."""
    return _decode(path, split=True, max_seconds=max_seconds)


def _decode(path: str | Path, split: bool, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """(channels, n) float32 samples and the rate; one channel (the down-mix) unless `split`."""
    import av

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        container = av.open(str(path), options=_OPEN_OPTIONS)
    except Exception as exc:  # no allowed demuxer recognised it
        raise UnsupportedFormat(
            f"{path.name}: not an audio file of a supported format ({', '.join(CONTAINERS)}): "
            f"{type(exc).__name__}"
        ) from exc
    try:
        with container:
            if not container.streams.audio:
                raise AudioError(f"{path.name}: contains no audio stream")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate
            # Planar float at the native rate, down-mixed to mono unless split; rate conversion
            # is soxr's job.
            mixer = av.AudioResampler(format="fltp", layout=stream.layout if split else "mono", rate=rate)
            parts, total = [], 0
            limit = None if max_seconds is None else max_seconds * rate
            for frame in container.decode(stream):
                for out in mixer.resample(frame):
                    parts.append(out.to_ndarray())
                    total += parts[-1].shape[1]
                if limit is not None and total > limit:
                    raise AudioTooLong(f"{path.name}: longer than {max_seconds:g} s")
            for out in mixer.resample(None):
                parts.append(out.to_ndarray())
    except AudioError:
        raise
    except Exception as exc:  # PyAV raises many FFmpeg error types; all mean "unreadable"
        raise AudioError(f"{path.name}: cannot decode ({type(exc).__name__}: {exc})") from exc
    samples = np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((1, 0), np.float32)
    if samples.size == 0:
        raise AudioError(f"{path.name}: no audio samples (empty or corrupt file)")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path.name}: decoded audio contains NaN or infinite values")
    return samples, int(rate)


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded file: mono samples at its own rate and resampled to the model's 16 kHz."""

    native: np.ndarray
    rate: int
    samples: np.ndarray  # 16 kHz

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE


def load(path: str | Path, max_seconds: float | None = None) -> DecodedAudio:
    """Decode `path` to mono and resample it to 16 kHz; refuse audio too short (or over `max_seconds`)."""
    native, rate = decode(path, max_seconds)
    return _prepared(path, native, rate)


def load_channels(path: str | Path, max_seconds: float | None = None) -> list[DecodedAudio]:
    """Decode `path` with its channels apart, each as `load` prepares a mono file; refuse mono files."""
    channels, rate = decode_channels(path, max_seconds)
    if len(channels) < 2:
        raise AudioError(f"{Path(path).name}: has one channel; there is nothing to split (leave out --split-channels)")
    return [_prepared(path, np.ascontiguousarray(native), rate) for native in channels]


def _prepared(path: str | Path, native: np.ndarray, rate: int) -> DecodedAudio:
    """Mono samples at `rate` with their 16 kHz version; AudioError when too short."""
    samples = native if rate == SAMPLE_RATE else soxr.resample(native, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    seconds = len(samples) / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        raise AudioError(f"{Path(path).name}: too short ({seconds:.3f} s; need at least {MIN_SECONDS} s)")
    return DecodedAudio(native, rate, samples)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write mono float samples as 16-bit PCM WAV."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
