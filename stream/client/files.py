"""`stream_file`: an audio file sent through a `Client` at real-time pace (or faster), its messages yielded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import soxr

from stream.offline.audio_file import decode, decode_channels
from vad import INPUT_RATES

from .connection import Client

CHUNK_SECONDS = 0.1  # one binary message, as a microphone would send it
FALLBACK_RATE = 16000  # a file at a rate the server does not take is resampled to this


def file_frames(path: str | Path, split_channels: bool = False) -> tuple[np.ndarray, int]:
    """A file's float32 samples at a rate the server accepts: (n,) mixed, or (n, channels) when split."""
    if split_channels:
        samples, rate = decode_channels(path)
        samples = samples.T  # (channels, n) -> frames
    else:
        samples, rate = decode(path)
    if rate not in INPUT_RATES:
        samples, rate = soxr.resample(samples, rate, FALLBACK_RATE).astype(np.float32), FALLBACK_RATE
    return np.ascontiguousarray(samples, dtype=np.float32), rate


async def send_paced(client: Client, frames: np.ndarray, rate: int, pace: float | None,
                     chunk_seconds: float = CHUNK_SECONDS) -> None:
    """Send `frames` in chunks, `pace` times real time (None or 0: as fast as the socket takes them), then stop."""
    step = max(1, round(rate * chunk_seconds))
    began = time.monotonic()
    for i in range(0, len(frames), step):
        await client.send(frames[i : i + step])
        if pace:  # sleep until this chunk's end is due: no drift, whatever the send took
            due = began + (i + step) / rate / pace
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    await client.stop()


async def stream_file(
    path: str | Path,
    url: str,
    *,
    token: str | None = None,
    pace: float | None = 1.0,
    split_channels: bool = False,
    parties=(),
    encoding: str = "pcm_s16le",
    session_id: str | None = None,
    context: str | None = None,
    metadata: dict | None = None,
    ssl=None,
    chunk_seconds: float = CHUNK_SECONDS,
):
    """Stream a file (any format stream.offline reads) as one session; yield every server message.

    `pace`: 1.0 sends in real time like a live call, 4.0 four times faster, None as fast as
    possible. `split_channels` sends its channels apart, one party each (`parties` names them).
    Ends after the summary; errors and abnormal closes raise as in `Client.messages()`.
    """
    frames, rate = file_frames(path, split_channels)
    channels = frames.shape[1] if frames.ndim == 2 else 1
    client = Client(url, token=token, sample_rate=rate, encoding=encoding, channels=channels,
                    split_channels=split_channels, parties=parties, session_id=session_id, context=context,
                    metadata=metadata, ssl=ssl)
    async with client:
        sender = asyncio.create_task(send_paced(client, frames, rate, pace, chunk_seconds))
        try:
            async for message in client.messages():
                yield message
        finally:
            if not sender.done():
                sender.cancel()
            results = await asyncio.gather(sender, return_exceptions=True)
        # The messages ended normally, so any send failure was an interrupted stream: say so.
        if isinstance(results[0], BaseException) and not isinstance(results[0], asyncio.CancelledError):
            raise results[0]
