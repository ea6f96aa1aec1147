"""`encode_samples`: what the client sends is what the server's protocol decodes."""

from __future__ import annotations

import numpy as np
import pytest

from stream.client import ClientError, encode_samples
from stream.protocol.native import decode_frames


def test_int16_and_float_round_trip_through_the_servers_decoder():
    x = np.array([0, 1000, -32768, 32767], np.int16)
    assert np.array_equal(decode_frames(encode_samples(x, "pcm_s16le"), "pcm_s16le", 1)[:, 0], x)
    f = decode_frames(encode_samples(x, "pcm_f32le"), "pcm_f32le", 1)[:, 0]
    assert np.allclose(f, x / 32768)
    floats = np.array([0.0, 0.5, -1.0, 2.0], np.float64)  # out of range is clipped
    assert list(decode_frames(encode_samples(floats, "pcm_s16le"), "pcm_s16le", 1)[:, 0]) == [0, 16384, -32768, 32767]
    mu = decode_frames(encode_samples(x, "mulaw"), "mulaw", 1)[:, 0]
    assert np.all(np.abs(mu.astype(int) - x) <= (np.abs(x.astype(int)) + 132) / 32 + 1)


def test_frames_are_interleaved_by_channel():
    frames = np.array([[1, -1], [2, -2]], np.int16)
    assert np.array_equal(decode_frames(encode_samples(frames, "pcm_s16le", 2), "pcm_s16le", 2), frames)


@pytest.mark.parametrize("samples, channels, match", [
    (np.zeros((4, 2), np.int16), 1, "shape"),
    (np.zeros(4, np.int16), 2, "shape"),
    (np.array([0.0, np.nan]), 1, "NaN"),
    (np.zeros(4, np.int32), 1, "int16 or float"),
])
def test_unusable_samples_are_refused_before_sending(samples, channels, match):
    with pytest.raises(ClientError, match=match):
        encode_samples(samples, "pcm_s16le", channels)
