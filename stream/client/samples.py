"""Audio samples -> the bytes of one binary `/ws/stream` message, in the start's encoding."""

from __future__ import annotations

import numpy as np

from stream.protocol import mulaw

from .errors import ClientError


def encode_samples(samples, encoding: str, channels: int = 1) -> bytes:
    """int16 or float ([-1, 1]) samples, (n,) for one channel or (n, channels) frames -> interleaved bytes."""
    x = np.asarray(samples)
    if x.ndim == 1 and channels == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != channels:
        raise ClientError(f"expected samples of shape (n,) for one channel or (n, {channels}), got {x.shape}")
    if x.dtype == np.int16:
        ints, floats = x, None
    elif np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise ClientError("samples contain NaN or infinite values")
        floats = x.astype(np.float32)
        ints = None
    else:
        raise ClientError(f"samples must be int16 or float, got {x.dtype}")
    if encoding == "pcm_f32le":
        return (floats if floats is not None else ints.astype(np.float32) / 32768).astype("<f4").tobytes()
    if ints is None:
        # x 32768, the inverse of int16 / 32768: a decoded 16-bit file is sent bit-exact
        ints = np.clip(np.rint(floats * 32768), -32768, 32767).astype(np.int16)
    if encoding == "pcm_s16le":
        return ints.astype("<i2").tobytes()
    if encoding == "mulaw":
        return mulaw.encode(ints)
    raise ClientError(f"unknown encoding {encoding!r}")
