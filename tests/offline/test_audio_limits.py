"""Decoding within limits (issue 17 findings 1 and 6): packed samples, caps on rate, channels and bytes."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]


def write_pcm(path: Path, channels: int, seconds: float = 1.0, rate: int = 16000) -> Path:
    """A 16-bit WAV of noise, each channel at its own loudness."""
    x = np.random.default_rng(channels).standard_normal((int(seconds * rate), channels)) * 0.02 * (1 + np.arange(channels))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_channels_decode_exactly_as_written(tmp_path):
    from stream.offline.audio_file import decode, decode_channels

    wav = write_pcm(tmp_path / "stereo.wav", 2)
    expected = sf.read(wav, dtype="float32")[0].T
    channels, rate = decode_channels(wav)
    assert rate == 16000 and channels.dtype == np.float32
    np.testing.assert_array_equal(channels, expected)
    mono = write_pcm(tmp_path / "mono.wav", 1)
    samples, _ = decode(mono)
    np.testing.assert_array_equal(samples, sf.read(mono, dtype="float32")[0])


@pytest.mark.parametrize("channels", [8, 9, 16])
def test_many_channels_decode_apart_without_crashing(tmp_path, channels):
    """PyAV crashed (SIGSEGV) turning a planar frame of 8+ channels into an array: decode in a child to see."""
    wav = write_pcm(tmp_path / "many.wav", channels)
    out = tmp_path / "decoded.npy"
    code = ("import sys, numpy as np; from stream.offline.audio_file import decode_channels; "
            "np.save(sys.argv[2], decode_channels(sys.argv[1])[0])")
    done = subprocess.run([sys.executable, "-c", code, str(wav), str(out)], cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr.decode()[-500:]}"
    np.testing.assert_array_equal(np.load(out), sf.read(wav, dtype="float32")[0].T)


def test_rate_and_channel_caps_refuse_before_decoding(tmp_path):
    from stream.offline.audio_file import DecodeLimits, load, load_channels

    high = write_pcm(tmp_path / "high.wav", 1, seconds=0.5, rate=384000)
    with pytest.raises(Exception) as info:
        load(high, limits=DecodeLimits(rate=192000))
    assert info.value.code == "unsupported_rate" and "384000" in str(info.value)
    assert load(high).rate == 384000  # no limits: as before (the CLI on the user's own files)
    three = write_pcm(tmp_path / "three.wav", 3)
    with pytest.raises(Exception) as info:
        load_channels(three, limits=DecodeLimits(channels=2))
    assert info.value.code == "unsupported_channels"
    assert len(load_channels(three, limits=DecodeLimits(channels=3))) == 3


def test_decoded_bytes_are_bounded_while_decoding(tmp_path):
    from stream.offline.audio_file import DecodeLimits, load, load_channels

    wav = write_pcm(tmp_path / "stereo96k.wav", 2, seconds=2.0, rate=96000)
    budget = 96000 * 4 * 3  # float32: 1.5 s of both channels, 3 s of one
    with pytest.raises(Exception) as info:
        load_channels(wav, 60, limits=DecodeLimits(bytes=budget))
    assert info.value.code == "too_long" and "96000 Hz" in str(info.value)
    assert load(wav, 60, limits=DecodeLimits(bytes=budget)).duration == pytest.approx(2.0)  # the mix: one channel
    assert len(load_channels(wav, 60, limits=DecodeLimits(bytes=2 * budget))) == 2
