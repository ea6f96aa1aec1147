"""What the fear/disgust decision layer costs next to the model, per second of speech.

For every VAD segment of the benchmark speech (3 min of espeak-ng, `bench/speech.py`) it times
the layer's parts one by one — the quality check (every segment), the acoustic cues (segments
where fear/disgust lead, or all with `--cues always`) and the focus crop's forward pass (ambiguous
segments, ≤ 0.8 s of audio) — and the engine's own analysis of the same audio with the layer's
optional parts off. Random weights decide nothing here, so the worst case (cues and a focus crop
on every segment) is what is reported next to the engine time.

    PYTHONPATH=. python -m bench.decision_layer --archs base large --json bench/results/decision-layer-$(date +%F)-cpu2.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.speech import benchmark_audio
from bench.throughput import RANDOM_BANNER, cpu_name, log, random_model_dir

RATE = 16_000
CROP_SECONDS = 0.8  # the longest focus crop


def segments_of(audio: np.ndarray) -> list[np.ndarray]:
    """The speech segments the default VAD cuts from `audio`."""
    from vad import SpeechEnd, SpeechSegmenter, SpeechStart, VadConfig

    vad = SpeechSegmenter(VadConfig(), RATE)
    spans, start = [], None
    for ev in [*vad.push(audio), *vad.flush()]:
        if isinstance(ev, SpeechStart):
            start = ev.sample
        elif isinstance(ev, SpeechEnd):
            spans.append(audio[start : ev.sample])
    return spans


def timed(fn, *args) -> float:
    """Seconds one call takes."""
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def bench_arch(arch: str, audio: np.ndarray, segments: list[np.ndarray], args) -> dict:
    from models.loader import ModelOptions, load_scorer
    from stream.engine.analyzer import analyze_array
    from stream.decision.config import DecisionConfig, FocusConfig
    from stream.engine.config import AnalyzerConfig

    scorer = load_scorer(ModelOptions(model_dir=str(random_model_dir(args.cache_dir, arch)), device="cpu",
                                      threads=args.threads, dtype=args.dtype))  # fmt: skip
    crop = np.asarray(segments[0][: round(CROP_SECONDS * RATE) + 80], dtype=np.float32)
    scorer.score([crop])  # warm-up
    focus = [timed(scorer.score, [crop]) for _ in range(args.repeats)]
    bare = AnalyzerConfig(decisions=DecisionConfig(cues="off", focus=FocusConfig(enabled=False)))
    engine = timed(analyze_array, scorer, audio, bare)
    speech = sum(len(s) for s in segments) / RATE
    return {
        "arch": arch,
        "dtype": args.dtype,
        "engine_seconds": engine,
        "engine_seconds_per_speech_second": engine / speech,
        "focus_crop_ms": 1000 * float(np.median(focus)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["base", "large"], choices=["tiny", "base", "large"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5, help="focus-crop forwards timed (median reported)")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EMOSTREAM_BENCH_CACHE", "~/.cache/emostream-bench")))
    ap.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = ap.parse_args(argv)
    args.cache_dir = args.cache_dir.expanduser()
    log(RANDOM_BANNER)

    from stream.decision.config import DecisionConfig
    from stream.decision.cues import acoustic_cues
    from stream.decision.quality import assess_quality

    audio, _, _ = benchmark_audio(args.cache_dir, args.minutes)
    segments = segments_of(audio)
    speech = sum(len(s) for s in segments) / RATE
    acoustic_cues(segments[0][:RATE])  # numba compiles pYIN's kernels on the first call (~20 s cold)
    quality = sum(timed(assess_quality, s, RATE, RATE) for s in segments)
    longest = round(DecisionConfig().cues_max_seconds * RATE)  # the engine measures at most this much per segment
    cues = sum(timed(acoustic_cues, s[:longest]) for s in segments)
    layer = {
        "segments": len(segments),
        "speech_seconds": speech,
        "mean_segment_seconds": speech / len(segments),
        "quality_ms_per_speech_second": 1000 * quality / speech,
        "cues_ms_per_speech_second": 1000 * cues / speech,
    }
    log(f"{len(segments)} segments, {speech:.1f} s of speech (mean {layer['mean_segment_seconds']:.2f} s)")
    log(f"quality check: {layer['quality_ms_per_speech_second']:.1f} ms per second of speech")
    log(f"acoustic cues: {layer['cues_ms_per_speech_second']:.1f} ms per second of speech")
    results = []
    for arch in args.archs:
        r = bench_arch(arch, audio, segments, args)
        worst = (quality + cues + len(segments) * r["focus_crop_ms"] / 1000) / speech
        r["worst_case_layer_seconds_per_speech_second"] = worst
        r["worst_case_share_of_engine"] = worst / r["engine_seconds_per_speech_second"]
        results.append(r)
        log(f"{arch} {args.dtype}: engine {r['engine_seconds_per_speech_second'] * 1000:.0f} ms per second of speech; "
            f"focus crop {r['focus_crop_ms']:.0f} ms; worst case layer (cues + crop on every segment) "
            f"{worst * 1000:.0f} ms per second of speech = {100 * r['worst_case_share_of_engine']:.0f} % of the engine")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads or os.cpu_count(),
                                         "layer": layer, "archs": results}, indent=2) + "\n")  # fmt: skip
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
