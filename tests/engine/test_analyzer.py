"""The streaming analyzer: windows, segments, events, chunking invariance, input formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import AudioError, ConfigError
from models.labels import LABELS
from models.scoring import softmax
from planned import run_core
from stream.engine.analyzer import StreamAnalyzer, analyze_array
from stream.engine.config import AnalyzerConfig, SmootherConfig
from stream.engine.events import from_dict, to_dict


def by_type(events, kind):
    return [e for e in events if e.type == kind]


def as_json(events):
    return [json.dumps(to_dict(e), sort_keys=True) for e in events]


# ---- planned scores through the sans-I/O core ------------------------------------------------
def test_fear_then_disgust_gives_flagged_transition_at_the_change(speech_silence_speech):
    rec = speech_silence_speech
    (a0, a1), _ = rec.spans
    change = a0 + 1.2
    events = run_core(rec.samples, lambda t: {"fearful": 4.0} if t < change else {"disgusted": 4.0})
    transitions = by_type(events, "transition")
    assert [(e.from_emotion, e.to_emotion, e.flagged) for e in transitions] == [("fearful", "disgusted", True)]
    # Back-dated to the first window that led: within one window length of the true change.
    assert change - 0.4 <= transitions[0].time <= change + 0.1
    assert transitions[0].confirmed_at >= transitions[0].time + 0.3


def test_segment_scores_peaks_and_dual_emotion_report(speech_silence_speech):
    rec = speech_silence_speech
    (a0, a1), (b0, b1) = rec.spans
    mid = (b0 + b1) / 2

    def plan(t):
        if t < b0 - 0.2:
            return {"neutral": 5.0}
        return {"fearful": 5.0} if t < mid else {"disgusted": 5.0}

    events = run_core(rec.samples, plan)
    segments = by_type(events, "segment")
    assert len(segments) == 2
    assert segments[0].emotion == "neutral" and segments[0].confidence > 0.9
    second = segments[1]
    assert second.peaks["fearful"] > 0.9 and second.peaks["disgusted"] > 0.9
    duals = by_type(events, "dual_emotion")
    assert len(duals) == 1 and set(duals[0].emotions) == {"fearful", "disgusted"} and duals[0].segment == 1
    # fear and disgust each hold about half of segment 2: close scores, fear or disgust leads.
    reviews = by_type(events, "review")
    assert len(reviews) == 1 and reviews[0].segment == 1 and reviews[0].gap < 0.15


def test_events_come_in_stream_order(speech_silence_speech):
    events = run_core(speech_silence_speech.samples, lambda t: {"happy": 1.0}, feed=777)
    assert events[0].type == "info"
    windows = by_type(events, "window")
    assert [w.index for w in windows] == list(range(len(windows)))
    assert all(b.start >= a.start for a, b in zip(windows, windows[1:]))
    # Each segment event follows all of its windows.
    for seg in by_type(events, "segment"):
        pos = events.index(seg)
        assert all(e.segment <= seg.index for e in events[:pos] if e.type == "window")


# ---- the real tiny model -------------------------------------------------------------------
def test_window_scores_are_softmax_of_mean_frame_logits(scorer, speech_silence_speech):
    rec = speech_silence_speech
    config = AnalyzerConfig(chunk_seconds=10.0, context_seconds=0.0)  # one chunk per segment
    events = analyze_array(scorer, rec.samples, config)
    seg = by_type(events, "segment")[0]
    start, stop = round(seg.start * 16000), round(seg.end * 16000)
    frames = scorer.score([rec.samples[start:stop]])[0].logits
    windows = [w for w in by_type(events, "window") if w.segment == 0]
    assert len(windows) == (len(frames) - 20) // 5 + 1
    for i, w in enumerate(windows):
        expected = softmax(frames[5 * i : 5 * i + 20].mean(axis=0))
        np.testing.assert_allclose([w.scores[l] for l in LABELS], expected, atol=1e-5)
        assert w.end - w.start == pytest.approx(0.4)
        assert w.start == pytest.approx(seg.start + 0.1 * i)
    np.testing.assert_allclose([seg.scores[l] for l in LABELS], softmax(frames.mean(axis=0)), atol=1e-5)


def test_segments_line_up_with_speech(scorer, speech_silence_speech):
    rec = speech_silence_speech
    events = analyze_array(scorer, rec.samples)
    segments = by_type(events, "segment")
    assert len(segments) == 2
    for seg, (t0, t1) in zip(segments, rec.spans):
        assert t0 - 0.5 <= seg.start <= t0 + 0.05
        assert t1 - 0.05 <= seg.end <= t1 + 0.5
        windows = [w for w in by_type(events, "window") if w.segment == seg.index]
        assert windows and all(seg.start <= w.start and w.end <= seg.end for w in windows)
        assert seg.n_windows == len(windows)
    # Silence between the utterances is not scored.
    gap = (rec.spans[0][1] + 0.5, rec.spans[1][0] - 0.5)
    assert not [w for w in by_type(events, "window") if gap[0] < w.start < gap[1]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=16000 * 9), max_size=6))
def test_any_feed_sizes_give_identical_events(scorer, speech_silence_speech, cuts):
    samples = speech_silence_speech.samples
    config = AnalyzerConfig(chunk_seconds=1.0, context_seconds=0.5)
    reference = as_json(analyze_array(scorer, samples, config))
    analyzer = StreamAnalyzer(scorer, config)
    events, prev = [], 0
    for cut in sorted(set(c for c in cuts if c < len(samples))) + [len(samples)]:
        events += analyzer.feed(samples[prev:cut])
        prev = cut
    events += analyzer.flush()
    assert as_json(events) == reference


def test_int16_and_other_input_rates(scorer, speech_silence_speech):
    import soxr

    rec = speech_silence_speech
    reference = analyze_array(scorer, rec.samples)
    pcm = (rec.samples * 32767).astype(np.int16)
    from_int16 = analyze_array(scorer, pcm)
    assert [e.type for e in from_int16] == [e.type for e in reference]
    for rate in (8000, 44100, 48000):
        x = soxr.resample(rec.samples, 16000, rate).astype(np.float32)
        events = analyze_array(scorer, x, AnalyzerConfig(sample_rate=rate))
        segs = by_type(events, "segment")
        assert len(segs) == 2, rate
        for seg, (t0, t1) in zip(segs, rec.spans):
            assert t0 - 0.5 <= seg.start <= t0 + 0.1 and t1 - 0.1 <= seg.end <= t1 + 0.5


def test_silence_yields_only_the_info_event(scorer, rng):
    noise = (1e-4 * rng.standard_normal(16000 * 3)).astype(np.float32)
    events = analyze_array(scorer, noise)
    assert [e.type for e in events] == ["info"]
    assert events[0].random_weights and "RANDOM WEIGHTS" in events[0].warning


def test_events_round_trip_through_json(scorer, speech_silence_speech):
    events = analyze_array(scorer, speech_silence_speech.samples)
    for e in events:
        d = json.loads(json.dumps(to_dict(e)))
        assert to_dict(from_dict(d)) == d


def test_bad_input_is_refused_clearly(scorer):
    analyzer = StreamAnalyzer(scorer)
    with pytest.raises(AudioError, match="mono"):
        analyzer.feed(np.zeros((100, 2), np.float32))
    with pytest.raises(AudioError, match="NaN"):
        analyzer.feed(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioError, match="int16 or float"):
        analyzer.feed(np.zeros(10, np.int32))
    with pytest.raises(ConfigError, match="8000, 16000, 32000, 44100, 48000"):
        AnalyzerConfig(sample_rate=22050)
    with pytest.raises(ConfigError, match="0.02 s"):
        AnalyzerConfig(hop_seconds=0.11)
    with pytest.raises(ConfigError, match="smoother"):
        SmootherConfig(switch_margin=2.0)
