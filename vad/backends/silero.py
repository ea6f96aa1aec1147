"""Frame classifier backed by the Silero VAD network (TorchScript model shipped in silero-vad)."""

from __future__ import annotations

import numpy as np
import torch

from ..config import SILERO_RATES

# The model only accepts frames of exactly this many samples per rate (32 ms).
FRAME_SAMPLES = {8000: 256, 16000: 512}


class SileroClassifier:
    """Silero VAD at 8 or 16 kHz: a frame is speech when its probability >= threshold."""

    def __init__(self, sample_rate: int, threshold: float) -> None:
        if sample_rate not in SILERO_RATES:
            raise ValueError(f"sample_rate must be one of {SILERO_RATES}, got {sample_rate!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self._sample_rate = sample_rate
        self._threshold = threshold
        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad  # its import pins torch to one thread, process-wide

        self._model = load_silero_vad()
        torch.set_num_threads(threads)  # give the emotion model its threads back

    @property
    def frame_samples(self) -> int:
        """Frame length in samples at the classifier's rate (512 at 16 kHz, 256 at 8 kHz)."""
        return FRAME_SAMPLES[self._sample_rate]

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of the next float32 frame; advances the model's state."""
        # Copy: the model keeps the frame's tail as context for the next call, and the
        # caller may reuse or overwrite the array it passed.
        x = torch.tensor(frame, dtype=torch.float32)
        with torch.no_grad():
            return float(self._model(x, self._sample_rate).item())

    def is_speech(self, frame: np.ndarray) -> bool:
        """Classify one float32 frame in [-1, 1]."""
        return self.probability(frame) >= self._threshold

    def reset(self) -> None:
        """Clear the recurrent state and context of the model."""
        self._model.reset_states()
