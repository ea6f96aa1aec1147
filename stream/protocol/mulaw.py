"""G.711 μ-law: 8-bit telephone samples to and from 16-bit linear PCM.

The codec works on the 14-bit magnitude plus a bias of 0x84 (132): a sample's biased magnitude
falls in one of eight segments (exponent 0..7), each split into 16 steps (mantissa); the byte
stored is the one's complement of `sign | exponent | mantissa`. Decoding returns the middle of
the step, so the 256 linear values are the standard G.711 ones (0xFF -> 0, 0x00 -> -32124,
0x80 -> +32124) and re-encoding a decoded byte gives the byte back (except 0x7F, "negative
zero", which encodes as 0xFF).
"""

from __future__ import annotations

import numpy as np

BIAS = 0x84  # 132: added to the magnitude so that every segment starts at a power of two
CLIP = 32635  # largest magnitude that still fits after the bias (32635 + 132 = 0x7FFF)


def _decode_table() -> np.ndarray:
    """The 256 linear values, indexed by μ-law byte, from the G.711 formula."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS
    table = np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)
    table.setflags(write=False)
    return table


DECODE_TABLE = _decode_table()  # int16[256]; read-only


def decode(data: bytes) -> np.ndarray:
    """μ-law bytes -> int16 samples of shape (len(data),)."""
    return DECODE_TABLE[np.frombuffer(data, dtype=np.uint8)]


def encode(samples: np.ndarray) -> bytes:
    """int16 samples (any shape, flattened) -> μ-law bytes, one per sample.

    Magnitudes above 32635 are clipped; the round-trip error of a sample x is at most
    (|x| + 132) / 32, i.e. half a step of its segment.
    """
    x = np.asarray(samples)
    if x.dtype != np.int16:
        raise TypeError(f"mulaw.encode takes int16 samples, got {x.dtype}")
    x = x.astype(np.int32).ravel()
    sign = np.where(x < 0, 0x80, 0x00)
    biased = np.minimum(np.abs(x), CLIP) + BIAS  # in [132, 0x7FFF]
    # Segment = position of the highest set bit among bits 7..14.
    exponent = np.frexp(biased)[1].astype(np.int32) - 8  # frexp: biased < 2**e, exactly
    mantissa = (biased >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


__all__ = ["BIAS", "CLIP", "DECODE_TABLE", "decode", "encode"]
