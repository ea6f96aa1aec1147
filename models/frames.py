"""The encoder's frame grid: units derived from each other, as integer sample counts."""

from __future__ import annotations

SAMPLE_RATE = 16_000  # the model's input rate
FRAME_STRIDE = 320  # samples between frame starts (conv stack strides 5·2·2·2·2·2·2)
FRAME_FIELD = 400  # samples one frame sees (conv stack receptive field)
FRAME_RATE = SAMPLE_RATE // FRAME_STRIDE  # 50 frames per second
LOOKAHEAD = FRAME_FIELD - FRAME_STRIDE  # 80 samples past a stretch's end complete its last frame
# (kernel, stride) of each conv layer in the waveform feature extractor.
CONV_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))


def n_frames(n_samples: int) -> int:
    """Number of encoder frames for `n_samples` of 16 kHz audio (0 when too short)."""
    length = n_samples
    for kernel, stride in CONV_LAYERS:
        length = (length - kernel) // stride + 1
        if length <= 0:
            return 0
    return length


def seconds_to_samples(seconds: float) -> int:
    """Seconds to 16 kHz samples, rounded to the nearest sample."""
    return int(round(seconds * SAMPLE_RATE))
