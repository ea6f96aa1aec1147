"""Frame classifier backed by the WebRTC voice activity detector (py-webrtcvad)."""

from __future__ import annotations

import numpy as np
import webrtcvad

from ..config import AGGRESSIVENESS, WEBRTC_FRAME_MS, WEBRTC_RATES


class WebRtcClassifier:
    """WebRTC VAD on 10/20/30 ms frames at 8, 16, 32 or 48 kHz."""

    def __init__(self, sample_rate: int, frame_ms: int, aggressiveness: int) -> None:
        if sample_rate not in WEBRTC_RATES:
            raise ValueError(f"sample_rate must be one of {WEBRTC_RATES}, got {sample_rate!r}")
        if frame_ms not in WEBRTC_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {WEBRTC_FRAME_MS}, got {frame_ms!r}")
        if aggressiveness not in AGGRESSIVENESS:
            raise ValueError(
                f"aggressiveness must be one of {AGGRESSIVENESS}, got {aggressiveness!r}"
            )
        self._sample_rate = sample_rate
        self._aggressiveness = aggressiveness
        self._frame_samples = sample_rate * frame_ms // 1000
        self._vad = webrtcvad.Vad(aggressiveness)

    @property
    def frame_samples(self) -> int:
        """Frame length in samples at the classifier's rate."""
        return self._frame_samples

    def is_speech(self, frame: np.ndarray) -> bool:
        """Classify one float32 frame in [-1, 1]."""
        # webrtcvad reads 16-bit PCM; int16 input converted by /32768 maps back exactly.
        pcm = np.clip(frame * 32768.0, -32768, 32767).astype(np.int16)
        return self._vad.is_speech(pcm.tobytes(), self._sample_rate)

    def reset(self) -> None:
        """Start a new stream: the VAD adapts its noise model, so build a fresh one."""
        self._vad = webrtcvad.Vad(self._aggressiveness)
