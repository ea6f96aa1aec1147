"""Pitch tracking's cost and agreement at another F0 frame hop: `acoustic_cues` on benchmark speech.

Cuts the cached benchmark speech (bench/speech.py) into segments of 1.5–8 s (what the decision
layer measures) and runs `acoustic_cues` on each twice: with the settings in
stream/decision/cues.py and with a reference hop (default 10 ms, the setting before issue 10),
the frame-counted constants scaled to keep the same seconds. Prints CPU ms per second of audio
for both and how far the cues moved: same contour shape, F0 median (semitones), F0 std, voiced
fraction.

    PYTHONPATH=. python -m bench.cue_pitch [--reference-hop 0.010] [--segments 25]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench.speech import RATE, benchmark_audio
from stream.decision import cues

SETTINGS = ("F0_HOP_SECONDS", "VOICING_SWITCH_PROB", "MIN_VOICED_FRAMES", "SMOOTH_FRAMES")


def settings_for_hop(hop: float) -> dict:
    """cues.py's frame-counted constants for another hop, keeping their meaning in seconds."""
    return {
        "F0_HOP_SECONDS": hop,
        "VOICING_SWITCH_PROB": 1.0 - (1.0 - 0.01) ** (hop / 0.010),
        "MIN_VOICED_FRAMES": max(1, round(0.100 / hop)),
        "SMOOTH_FRAMES": 2 * round(0.050 / hop / 2) + 1 if hop < 0.02 else 3,
    }


def measure(segments: list[np.ndarray], settings: dict) -> tuple[list[cues.AcousticCues], float]:
    """The cues of every segment under `settings`, and CPU seconds (best of two passes)."""
    saved = {k: getattr(cues, k) for k in SETTINGS}
    try:
        for k, v in settings.items():
            setattr(cues, k, v)
        cues.acoustic_cues(segments[0][:RATE])  # JIT and imports outside the timing
        best = float("inf")
        for _ in range(2):
            t = time.process_time()
            out = [cues.acoustic_cues(s) for s in segments]
            best = min(best, time.process_time() - t)
        return out, best
    finally:
        for k, v in saved.items():
            setattr(cues, k, v)


def main() -> None:
    """Compare the current pitch settings with a reference hop."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-hop", type=float, default=0.010, help="seconds (default: 10 ms, before issue 10)")
    ap.add_argument("--segments", type=int, default=25)
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EMOSTREAM_BENCH_CACHE", "~/.cache/emostream-bench")))
    args = ap.parse_args()
    audio, _, _ = benchmark_audio(args.cache_dir.expanduser(), 3.0)
    rng = np.random.default_rng(0)
    segments, i = [], 0
    while i < len(audio) - 8 * RATE and len(segments) < args.segments:
        n = int(rng.uniform(1.5, 8.0) * RATE)
        segments.append(audio[i : i + n])
        i += n
    seconds = sum(len(s) for s in segments) / RATE
    current = {k: getattr(cues, k) for k in SETTINGS}
    ref, t_ref = measure(segments, settings_for_hop(args.reference_hop))
    new, t_new = measure(segments, current)
    print(f"{len(segments)} segments, {seconds:.0f} s of speech; acoustic_cues CPU ms per second of audio:")
    print(f"  reference (hop {args.reference_hop * 1000:.0f} ms): {1000 * t_ref / seconds:.1f}")
    print(f"  current   (hop {current['F0_HOP_SECONDS'] * 1000:.0f} ms): {1000 * t_new / seconds:.1f}")
    pairs = [(a, b) for a, b in zip(ref, new) if a.f0_median_hz and b.f0_median_hz]
    same = sum(a.contour == b.contour for a, b in zip(ref, new))
    median_st = [abs(12 * np.log2(b.f0_median_hz / a.f0_median_hz)) for a, b in pairs]
    std = [abs(b.f0_std_st - a.f0_std_st) for a, b in pairs]
    voiced = [abs(b.voiced_fraction - a.voiced_fraction) for a, b in pairs]
    print(f"same contour shape: {same} of {len(segments)}")
    print(f"|F0 median| difference: mean {np.mean(median_st):.2f} st, max {max(median_st):.2f} st")
    print(f"|F0 std| difference: mean {np.mean(std):.2f} st, max {max(std):.2f} st")
    print(f"|voiced fraction| difference: mean {np.mean(voiced):.3f}, max {max(voiced):.3f}")


if __name__ == "__main__":
    main()
