"""Two different voices for split-channel tests, and how to compare two parties' events."""

from __future__ import annotations

import numpy as np
from audio_fixtures import compose


def two_voices(speech, speech_silence_speech) -> tuple[np.ndarray, np.ndarray]:
    """A caller channel and an agent channel of equal length holding different speech (16 kHz)."""
    a, b = speech
    caller = speech_silence_speech.samples
    agent = compose([2.2, b, 0.6, a[: len(a) // 2], 0.5], seed=1).samples
    n = max(len(caller), len(agent))
    return tuple(np.pad(x, (0, n - len(x))).astype(np.float32) for x in (caller, agent))


def same_events(live: list[dict], reference: list[dict]) -> None:
    """Equal events: every field exactly, scores within batching's float noise."""
    assert [e["type"] for e in live] == [e["type"] for e in reference]
    for a, b in zip(live, reference):
        assert set(a) == set(b), (a["type"], set(a) ^ set(b))
        for key in a:
            if key in ("scores", "smoothed", "peaks"):
                assert max(abs(a[key][k] - b[key][k]) for k in a[key]) < 1e-4, key
            elif key in ("dominant_score", "confidence"):
                assert abs(a[key] - b[key]) < 1e-4, key
            elif key == "decision":
                assert (a[key] or {}).get("emotion") == (b[key] or {}).get("emotion")
            else:
                assert a[key] == b[key], (key, a[key], b[key])
