"""The acoustic cues' pitch tracker against librosa's pYIN: accuracy on voice of known F0, cost.

Two tests, each run with the tracker in stream/decision/cues.py (Praat's autocorrelation method)
and with pYIN as the cues used it before Praat replaced it (20 ms frames, 0.25 st grid):

1. **Known F0.** Synthetic voice: glottal-like harmonic sources whose F0 follows a known
   contour (rise-fall, low-rise, flat or fall, with 5 Hz vibrato and slow jitter) through three
   formant resonators, separated by silence or fricative noise, in white noise at three SNR
   bands. Per tracker: gross pitch error (GPE, frames voiced in both the truth and the track
   whose F0 is off by more than 20 %), voicing decision error (VDE, frames whose voiced/unvoiced
   call is wrong), the median fine error in semitones, and how often each voiced stretch's
   contour shape (`contour_shape`) matches the shape of its true F0.
2. **Real speech.** The cached benchmark speech (bench/speech.py, espeak-ng) cut into segments
   of 1.5–8 s: how far the two trackers' cues lie apart (no truth here), and CPU ms per second
   of audio for each.

    PYTHONPATH=. python -m bench.cue_pitch [--voices 60] [--segments 35]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import librosa
import numpy as np
from scipy.signal import lfilter

from bench.speech import RATE, benchmark_audio
from stream.decision import cues

SNR_BANDS_DB = ((20, 30), (10, 15), (3, 8))
SHAPES = {  # semitones over the stretch, u in [0, 1]
    "rise_fall": lambda u: 6 * np.sin(np.pi * u),
    "low_rise": lambda u: np.where(u < 0.65, 0.0, 8 * (u - 0.65) / 0.35),
    "flat": lambda u: 0 * u,
    "fall": lambda u: -5 * u,
}


def pyin_f0(samples: np.ndarray, rate: int = RATE) -> np.ndarray:
    """F0 per frame as the cues tracked it before Praat: librosa's pYIN, NaN where unvoiced."""
    if len(samples) < 1024:
        return np.full(0, np.nan)
    hop = cues.F0_HOP_SECONDS
    f0, voiced, _ = librosa.pyin(
        samples, fmin=cues.F0_MIN_HZ, fmax=cues.F0_MAX_HZ, sr=rate, frame_length=1024,
        hop_length=round(hop * rate), center=False, resolution=0.25,
        switch_prob=1.0 - (1.0 - 0.01) ** (hop / 0.010),
    )
    return np.where(voiced, f0, np.nan)


TRACKERS = {"praat (now)": cues.voiced_f0, "pyin (before)": pyin_f0}


def frame_centres(name: str, n_frames: int, n_samples: int) -> np.ndarray:
    """Sample index of each frame's centre (pYIN: center=False, 1024-sample frames; Praat centres
    its frames symmetrically in the signal)."""
    hop = round(cues.F0_HOP_SECONDS * RATE)
    if name.startswith("pyin"):
        return np.arange(n_frames) * hop + 512
    first = (n_samples - (n_frames - 1) * hop) // 2
    return first + np.arange(n_frames) * hop


def resonators(x: np.ndarray, formants: list[tuple[float, float]]) -> np.ndarray:
    """`x` through two-pole resonators at (frequency, bandwidth) Hz: a vowel-like filter."""
    for f, bw in formants:
        r = np.exp(-np.pi * bw / RATE)
        x = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / RATE), r * r], x)
    return x


def synthetic_voice(rng: np.random.Generator, snr_db: tuple[float, float]):
    """A few voiced stretches of known F0 with gaps between; returns (audio, F0 per sample, shapes)."""
    parts, truth, shapes = [], [], []
    for _ in range(rng.integers(2, 5)):
        duration = rng.uniform(0.3, 1.2)
        t = np.arange(int(duration * RATE)) / RATE
        shape = str(rng.choice(list(SHAPES)))
        steps = np.arange(0, duration + 0.01, 0.01)
        jitter = 1 + 0.01 * np.interp(t, steps, rng.standard_normal(len(steps)))
        f0 = rng.uniform(85, 260) * 2 ** ((SHAPES[shape](t / duration) + 0.3 * np.sin(2 * np.pi * 5 * t)) / 12) * jitter
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        source = sum(np.sin(k * phase) / k**2 for k in range(1, 40) if k * f0.max() < 7800)  # -12 dB/octave
        ramp = np.minimum(1, np.minimum(t / duration, 1 - t / duration) * 10)
        voice = resonators(source * ramp, [(rng.uniform(300, 800), 80), (rng.uniform(900, 2200), 120), (rng.uniform(2400, 3000), 200)])
        parts.append(voice / (np.abs(voice).max() + 1e-9) * rng.uniform(0.2, 0.8))
        truth.append(f0)
        shapes.append((sum(map(len, parts[:-1])), len(voice), shape))
        gap = int(rng.uniform(0.05, 0.3) * RATE)
        parts.append(rng.standard_normal(gap) * rng.choice([0.002, 0.05]))  # silence or a fricative
        truth.append(np.full(gap, np.nan))
    x = np.concatenate(parts)
    x = x + rng.standard_normal(len(x)) * np.std(x) * 10 ** (-rng.uniform(*snr_db) / 20)
    return x.astype(np.float32), np.concatenate(truth), shapes


def semitones(f0: np.ndarray) -> np.ndarray:
    """F0 in semitones around its own median."""
    return 12 * np.log2(f0 / np.median(f0))


def known_f0(voices: int) -> None:
    """Test 1: each tracker against the truth, per SNR band."""
    print(f"1. Synthetic voice of known F0 ({voices} signals per SNR band)")
    print("| SNR dB | tracker | GPE | VDE | fine error st (median) | contour shape right | CPU ms per audio-s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for band in SNR_BANDS_DB:
        rng = np.random.default_rng(1)
        signals = [synthetic_voice(rng, band) for _ in range(voices)]
        seconds = sum(len(x) for x, _, _ in signals) / RATE
        for name, track in TRACKERS.items():
            gpe, vde, fine, right, stretches, cpu = [], [], [], 0, 0, 0.0
            for x, truth, shapes in signals:
                t0 = time.process_time()
                est = track(x)
                cpu += time.process_time() - t0
                centres = np.minimum(frame_centres(name, len(est), len(x)), len(x) - 1)
                ref = truth[centres]
                both = ~np.isnan(est) & ~np.isnan(ref)
                vde.append(np.mean(np.isnan(est) != np.isnan(ref)))
                if both.any():  # a track with no voiced frame has no pitch to be wrong about
                    gpe.append(np.mean(np.abs(est[both] / ref[both] - 1) > 0.2))
                    fine.append(np.median(np.abs(12 * np.log2(est[both] / ref[both]))))
                for start, length, shape in shapes:
                    inside = (centres >= start) & (centres < start + length)
                    voiced = est[inside & ~np.isnan(est)]
                    want = cues.contour_shape(semitones(truth[start : start + length][::320]))  # 20 ms steps
                    got = cues.contour_shape(semitones(voiced)) if len(voiced) else "unknown"
                    right += got == want
                    stretches += 1
            print(f"| {band[0]}–{band[1]} | {name} | {np.mean(gpe):.3f} | {np.mean(vde):.3f} | "
                  f"{np.mean(fine):.3f} | {right} of {stretches} | {1000 * cpu / seconds:.1f} |")  # fmt: skip


def real_speech(count: int, cache_dir: Path) -> None:
    """Test 2: the two trackers' cues on espeak speech, and their cost."""
    audio, _, _ = benchmark_audio(cache_dir, 3.0)
    rng = np.random.default_rng(0)
    segments, i = [], 0
    while i < len(audio) - 8 * RATE and len(segments) < count:
        n = int(rng.uniform(1.5, 8.0) * RATE)
        segments.append(audio[i : i + n])
        i += n
    seconds = sum(len(s) for s in segments) / RATE
    print(f"\n2. Benchmark speech: {len(segments)} segments, {seconds:.0f} s")
    tracks = {}
    for name, track in TRACKERS.items():
        track(segments[0][:RATE])  # imports and pYIN's JIT outside the timing
        t0 = time.process_time()
        tracks[name] = [track(s) for s in segments]
        print(f"   {name}: {1000 * (time.process_time() - t0) / seconds:.1f} CPU ms per second of audio")
    now, before = tracks.values()

    def summary(f0):
        voiced = f0[~np.isnan(f0)]
        if len(voiced) < cues.MIN_VOICED_FRAMES:
            return None
        return np.median(voiced), np.std(semitones(voiced)), len(voiced) / len(f0), cues.contour_shape(semitones(voiced))

    pairs = [(summary(a), summary(b)) for a, b in zip(now, before)]
    pairs = [(a, b) for a, b in pairs if a and b]
    median = [abs(12 * np.log2(a[0] / b[0])) for a, b in pairs]
    print(f"   same contour shape: {sum(a[3] == b[3] for a, b in pairs)} of {len(pairs)}")
    print(f"   |F0 median| apart: mean {np.mean(median):.2f} st, max {max(median):.2f} st, over 2 st on {sum(m > 2 for m in median)}")
    print(f"   |F0 std| apart: mean {np.mean([abs(a[1] - b[1]) for a, b in pairs]):.2f} st")
    print(f"   voiced fraction: mean {np.mean([a[2] for a, _ in pairs]):.2f} now, {np.mean([b[2] for _, b in pairs]):.2f} before")


def main() -> None:
    """Run both tests and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", type=int, default=60, help="synthetic signals per SNR band")
    ap.add_argument("--segments", type=int, default=35)
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EMOSTREAM_BENCH_CACHE", "~/.cache/emostream-bench")))
    args = ap.parse_args()
    known_f0(args.voices)
    real_speech(args.segments, args.cache_dir.expanduser())


if __name__ == "__main__":
    main()
