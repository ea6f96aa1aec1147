"""Reading audio files (PyAV's bundled FFmpeg decoders), within limits, and writing the processed WAV.

The server decodes uploads in a child process (`decode_main`), so a crash in a decoder ends that
child, not the server.
"""

from __future__ import annotations

import json
import sys
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

from models.errors import AudioError, EmostreamError
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


class UnsupportedRate(AudioError):
    """The file's sample rate is above what the caller decodes."""

    code = "unsupported_rate"


class TooManyChannels(AudioError):
    """The file has more channels than the caller decodes."""

    code = "unsupported_channels"


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may cost: rate and channels are checked before decoding, bytes while decoding.

    None: no limit (the CLI reading the user's own files). The server bounds uploads with these.
    """

    rate: int | None = None  # highest sample rate, Hz
    channels: int | None = None  # most channels in the file, split or mixed
    bytes: int | None = None  # decoded float32 samples kept, all kept channels together


NO_LIMITS = DecodeLimits()
SAMPLE_BYTES = 4  # float32


def decode(
    path: str | Path, max_seconds: float | None = None, limits: DecodeLimits = NO_LIMITS
) -> tuple[np.ndarray, int]:
    """Decode an audio file (WAV, MP3, M4A, FLAC, OGG, ... see CONTAINERS) to mono float32 at its own rate.

    `max_seconds`: stop and raise AudioTooLong past this much audio (decoded memory stays bounded).
    """
    samples, rate = _decode(path, False, max_seconds, limits)
    return samples[0], rate


def decode_channels(
    path: str | Path, max_seconds: float | None = None, limits: DecodeLimits = NO_LIMITS
) -> tuple[np.ndarray, int]:
    """Decode a file with its channels kept apart: float32 of shape (channels, n) at its own rate."""
    return _decode(path, True, max_seconds, limits)


def _decode(path: str | Path, split: bool, max_seconds: float | None, limits: DecodeLimits) -> tuple[np.ndarray, int]:
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
            _check_header(path, rate, stream.codec_context.channels, limits)
            # Packed float at the native rate, down-mixed to mono unless split; rate conversion is
            # soxr's job. Packed, not planar: PyAV's to_ndarray crashes the process (SIGSEGV) on a
            # planar frame of 8 or more channels, while a packed frame is one plane of any width.
            mixer = av.AudioResampler(format="flt", layout=stream.layout if split else "mono", rate=rate)
            width = mixer.layout.nb_channels if split else 1
            limit, too_long = _sample_limit(path, rate, width, max_seconds, limits)
            parts, total = [], 0
            for frame in container.decode(stream):
                for out in mixer.resample(frame):
                    parts.append(_frames(out, width))
                    total += len(parts[-1])
                if limit is not None and total > limit:
                    raise AudioTooLong(too_long)
            for out in mixer.resample(None):
                parts.append(_frames(out, width))
    except AudioError:
        raise
    except Exception as exc:  # PyAV raises many FFmpeg error types; all mean "unreadable"
        raise AudioError(f"{path.name}: cannot decode ({type(exc).__name__}: {exc})") from exc
    samples = np.concatenate(parts).T if parts else np.zeros((1, 0), np.float32)
    if samples.size == 0:
        raise AudioError(f"{path.name}: no audio samples (empty or corrupt file)")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{path.name}: decoded audio contains NaN or infinite values")
    return samples, int(rate)


def _check_header(path: Path, rate: int, channels: int, limits: DecodeLimits) -> None:
    """Refuse a rate or channel count over `limits` before anything is decoded."""
    if limits.rate is not None and rate > limits.rate:
        raise UnsupportedRate(f"{path.name}: sample rate {rate} Hz; at most {limits.rate} Hz is accepted")
    if limits.channels is not None and channels > limits.channels:
        raise TooManyChannels(f"{path.name}: {channels} channels; at most {limits.channels} are accepted")


def _sample_limit(
    path: Path, rate: int, width: int, max_seconds: float | None, limits: DecodeLimits
) -> tuple[float | None, str]:
    """The most samples per channel a decode may keep, and the message for going past them."""
    by_seconds = None if max_seconds is None else max_seconds * rate
    by_bytes = None if limits.bytes is None else limits.bytes / (SAMPLE_BYTES * width)
    if by_bytes is not None and (by_seconds is None or by_bytes < by_seconds):
        return by_bytes, (
            f"{path.name}: longer than {by_bytes / rate:.1f} s, the most decoded at {rate} Hz in {width} "
            f"channel(s) (a budget of {limits.bytes} bytes of samples)"
        )
    return by_seconds, "" if max_seconds is None else f"{path.name}: longer than {max_seconds:g} s"


def _frames(frame, width: int) -> np.ndarray:
    """A packed float frame as (samples, channels) float32."""
    return frame.to_ndarray().reshape(-1, width)


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


def load(path: str | Path, max_seconds: float | None = None, limits: DecodeLimits = NO_LIMITS) -> DecodedAudio:
    """Decode `path` to mono and resample it to 16 kHz; refuse audio too short (or over `max_seconds`, `limits`)."""
    native, rate = decode(path, max_seconds, limits)
    return _prepared(path, native, rate)


def load_channels(
    path: str | Path, max_seconds: float | None = None, limits: DecodeLimits = NO_LIMITS
) -> list[DecodedAudio]:
    """Decode `path` with its channels apart, each as `load` prepares a mono file; refuse mono files."""
    channels, rate = decode_channels(path, max_seconds, limits)
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


# -- decoding in a child process (the server's uploads) -------------------------------------------
# The child decodes one file into a folder: native-<i>.npy per channel (and samples-<i>.npy, its
# 16 kHz version, unless the file is at 16 kHz), and prints one JSON line: {"rate": ..., "channels":
# ...} or the refusal {"code": ..., "message": ...}. A decoder crash then ends only the child.


def decode_job(
    path: str | Path, out: str | Path, split: bool, max_seconds: float | None, limits: DecodeLimits
) -> str:
    """The command-line argument of `decode_main` for one file."""
    return json.dumps({"path": str(path), "out": str(out), "split": split, "max_seconds": max_seconds,
                       "limits": asdict(limits)})


def decode_main(argv: list[str] | None = None) -> int:
    """A child process's entry: decode the file `decode_job` describes into its folder, report on stdout."""
    job = json.loads((sys.argv[1:] if argv is None else argv)[0])
    out, limits = Path(job["out"]), DecodeLimits(**job["limits"])
    try:
        if job["split"]:
            channels = load_channels(job["path"], job["max_seconds"], limits)
        else:
            channels = [load(job["path"], job["max_seconds"], limits)]
    except EmostreamError as exc:
        print(json.dumps({"code": exc.code, "message": str(exc)}))
        return 0
    for i, audio in enumerate(channels):
        np.save(out / f"native-{i}.npy", audio.native)
        if audio.rate != SAMPLE_RATE:  # at 16 kHz the samples are the native array itself
            np.save(out / f"samples-{i}.npy", audio.samples)
    print(json.dumps({"rate": channels[0].rate, "channels": len(channels)}))
    return 0


_REFUSALS = {cls.code: cls for cls in (AudioError, UnsupportedFormat, AudioTooLong, UnsupportedRate, TooManyChannels)}


def read_decoded(out: str | Path, report: dict) -> list[DecodedAudio]:
    """What `decode_main` left in `out`, given the JSON line it printed; its refusal raised again here."""
    if "code" in report:
        error = _REFUSALS.get(report["code"], AudioError)(str(report.get("message", "")))
        error.code = str(report["code"])  # the child's code, also one this process has no class for
        raise error
    out, rate = Path(out), int(report["rate"])
    channels = []
    for i in range(int(report["channels"])):
        native = np.load(out / f"native-{i}.npy")
        samples = native if rate == SAMPLE_RATE else np.load(out / f"samples-{i}.npy")
        channels.append(DecodedAudio(native, rate, samples))
    return channels
