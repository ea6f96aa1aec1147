"""The fear/disgust decision layer on the live core: fusion, quality gate, focus crop, profiles, cues.

Scores are planned (frame logits chosen per stream time) and features controlled, so each step's
effect is known exactly; the audio is real espeak speech, so quality and cues are measured for real.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from audio_fixtures import with_noise
from models.frames import FRAME_STRIDE
from models.labels import LABELS
from models.scoring import softmax
from planned import planned_logits, run_core
from stream.decision.config import DecisionConfig, FocusConfig
from stream.decision.cues import DISCLAIMER, AcousticCues, pair_reading
from stream.decision.fear_disgust import cue_span, focus_interval
from stream.decision.fusion import Centroids
from stream.decision.profiles import Profile
from stream.engine.analyzer import StreamCore
from stream.engine.config import AnalyzerConfig
from stream.engine.jobs import EvidenceJob, FocusJob

DIM = 4
FEAR_AXIS, DISGUST_AXIS = np.eye(DIM, dtype=np.float32)[0], np.eye(DIM, dtype=np.float32)[1]
CENTRES = Centroids(
    fear=FEAR_AXIS, disgust=DISGUST_AXIS, counts={"fearful": 5, "disgusted": 5},
    model_id="planned", dim=DIM, created="2026-11-25T00:00:00+00:00",
)  # fmt: skip


def segments(events):
    return [e for e in events if e.type == "segment"]


def of_type(events, kind):
    return [e for e in events if e.type == kind]


def vec(**logits):
    row = np.zeros(len(LABELS))
    for k, v in logits.items():
        row[LABELS.index(k)] = v
    return row


# ---- centroid fusion ---------------------------------------------------------------------------
def test_fusion_flips_a_close_call_towards_the_nearer_centre(speech_silence_speech):
    close = {"fearful": 2.0, "disgusted": 1.9}  # fear leads by ~0.03: a close call
    events = run_core(speech_silence_speech.samples, lambda t: close, feature=lambda t: DISGUST_AXIS,
                      centroids=CENTRES)  # fmt: skip
    assert events[0].centroids["model_id"] == "planned"
    for seg in segments(events):
        d = seg.decision
        assert d["model_emotion"] == "fearful" and seg.emotion == d["emotion"] == "disgusted"
        assert d["enhanced"] is True
        f = d["fusion"]
        p = softmax(vec(**close))
        pf, pd = p[LABELS.index("fearful")], p[LABELS.index("disgusted")]
        # The seed's rule with the numbers used: 0.6 * score + 0.4 * cosine(embedding, centre).
        assert f["fear_similarity"] == pytest.approx(0.0, abs=1e-6) and f["disgust_similarity"] == pytest.approx(1.0)
        assert f["fused_fear"] == pytest.approx(0.6 * pf, abs=1e-5)
        assert f["fused_disgust"] == pytest.approx(0.6 * pd + 0.4, abs=1e-5)
        assert any(step.startswith("fusion: gap") for step in d["steps"])
    # The review flag quotes what fusion did.
    assert all("fusion" in r.evidence for r in of_type(events, "review"))


def test_fusion_leaves_a_clear_call_and_needs_centres(speech_silence_speech):
    clear = {"fearful": 4.0, "disgusted": 1.0}
    events = run_core(speech_silence_speech.samples, lambda t: clear, feature=lambda t: DISGUST_AXIS,
                      centroids=CENTRES)  # fmt: skip
    for seg in segments(events):
        assert seg.emotion == "fearful" and seg.decision["enhanced"] is False and seg.decision["fusion"] is None
    # Without centres a close call stays the model's.
    events = run_core(speech_silence_speech.samples, lambda t: {"fearful": 2.0, "disgusted": 1.9},
                      feature=lambda t: DISGUST_AXIS)  # fmt: skip
    assert events[0].centroids is None
    assert [s.emotion for s in segments(events)] == ["fearful", "fearful"]
    assert all(s.decision["fusion"] is None for s in segments(events))


def test_fusion_can_be_switched_off(speech_silence_speech):
    from stream.decision.fusion import FusionConfig

    config = AnalyzerConfig(decisions=DecisionConfig(fusion=FusionConfig(enabled=False)))
    events = run_core(speech_silence_speech.samples, lambda t: {"fearful": 2.0, "disgusted": 1.9}, config,
                      feature=lambda t: DISGUST_AXIS, centroids=CENTRES)  # fmt: skip
    assert [s.emotion for s in segments(events)] == ["fearful", "fearful"]


# ---- quality gate ------------------------------------------------------------------------------
@pytest.mark.parametrize("snr_db, withheld", [(35, False), (5, True)])
def test_quality_gate_withholds_fear_on_noisy_audio(speech_silence_speech, snr_db, withheld):
    noisy = with_noise(speech_silence_speech.samples, snr_db)
    events = run_core(noisy, lambda t: {"fearful": 4.0})
    segs = segments(events)
    assert segs
    for seg in segs:
        d = seg.decision
        assert d["model_emotion"] == "fearful"
        if withheld:
            assert seg.emotion == "unknown" and d["quality"]["ok"] is False
            assert d["withheld"].startswith("fearful withheld: audio below the quality bar (SNR")
            assert d["quality"]["snr_db"] < 15
        else:
            assert seg.emotion == "fearful" and d["withheld"] is None and d["quality"]["ok"] is True


def test_quality_gate_only_touches_fear_and_disgust_and_can_be_off(speech_silence_speech):
    noisy = with_noise(speech_silence_speech.samples, 5)
    assert {s.emotion for s in segments(run_core(noisy, lambda t: {"sad": 4.0}))} == {"sad"}
    config = AnalyzerConfig(decisions=DecisionConfig(quality_gate=False))
    events = run_core(noisy, lambda t: {"disgusted": 4.0}, config)
    assert {s.emotion for s in segments(events)} == {"disgusted"}
    assert all(s.decision["quality"]["ok"] is False for s in segments(events))  # still measured and shown


def test_telephony_input_is_recognised(speech_silence_speech):
    samples8k = soxr.resample(speech_silence_speech.samples, 16000, 8000)
    events = run_core(samples8k, lambda t: {"neutral": 3.0}, AnalyzerConfig(sample_rate=8000), feed=8000)
    for seg in segments(events):
        q = seg.decision["quality"]
        assert q["telephony"] is True and q["band"] == "telephony (8 kHz)" and q["bandwidth_hz"] <= 4000
        assert "telephony (8 kHz) audio" in seg.decision["steps"]


# ---- focus-window re-scoring -------------------------------------------------------------------
def test_focus_interval_contains_a_planted_peak():
    evidence = np.full(200, 0.3)
    evidence[120:140] = 0.9  # 0.4 s of strong fear/disgust evidence
    first, stop = focus_interval(evidence, DecisionConfig())
    assert first <= 120 and stop >= 140 and 15 <= stop - first <= 40
    # A timeline no longer than the longest crop has nothing to focus on.
    assert focus_interval(np.full(40, 0.5), DecisionConfig()) is None
    # A long plateau is cut at max_seconds.
    evidence[60:160] = 0.9
    first, stop = focus_interval(evidence, DecisionConfig())
    assert stop - first == 40 and 60 <= first and stop <= 160


def test_focus_rescoring_crops_the_planted_event(speech_silence_speech):
    rec = speech_silence_speech
    (a0, a1), _ = rec.spans
    event = (a0 + 1.5, a0 + 2.0)  # planted: strong fear (and some disgust) for 0.5 s

    def plan(t):
        if event[0] <= t < event[1]:
            return {"fearful": 3.0, "disgusted": 2.9}
        return {"fearful": 0.5, "disgusted": 0.4}  # both lead weakly elsewhere: ambiguous overall

    make = planned_logits(plan)
    core = StreamCore(AnalyzerConfig(), LABELS, "planned", random_weights=False)
    crops = []
    core.push(rec.samples)
    core.finish()
    while jobs := core.pending_jobs():
        for job in jobs:
            if isinstance(job, FocusJob):
                crops.append(job)
            core.complete(job, job.run() if isinstance(job, EvidenceJob) else make(job))
    events = core.take_events()
    first = [c for c in crops if c.segment == 0]
    assert len(first) == 1
    crop = first[0]
    assert crop.start <= event[0] + 0.02 and crop.end >= event[1] - 0.02
    assert 0.3 <= crop.end - crop.start <= 0.8
    # The crop is the segment's own audio, cut on the frame grid (plus the last frame's 80 samples).
    a = round(crop.start * 16000)
    np.testing.assert_allclose(crop.audio, rec.samples[a : a + len(crop.audio)], atol=1e-6)
    assert len(crop.audio) == round((crop.end - crop.start) * 16000) + 400 - FRAME_STRIDE
    # Both results, side by side: the crop alone is far clearer about fear than the whole segment.
    focus = segments(events)[0].decision["focus"]
    assert focus["start"] == pytest.approx(crop.start) and focus["emotion"] == "fearful"
    assert focus["pair"]["crop"]["fearful"] > 2 * focus["pair"]["whole"]["fearful"]
    # Reported, not decided, by default.
    assert segments(events)[0].emotion == "fearful"


def test_focus_is_skipped_for_clear_calls_and_can_decide_when_asked(speech_silence_speech):
    rec = speech_silence_speech
    events = run_core(rec.samples, lambda t: {"fearful": 4.0})
    assert all(s.decision["focus"] is None for s in segments(events))
    (a0, _), _ = rec.spans
    event = (a0 + 1.5, a0 + 2.0)

    def plan(t):  # fear leads the segment narrowly, but the planted moment is clearly disgust
        if event[0] <= t < event[1]:
            return {"disgusted": 3.0}
        return {"fearful": 0.6, "disgusted": 0.2}

    config = AnalyzerConfig(decisions=DecisionConfig(focus=FocusConfig(decide=True)))
    first = segments(run_core(rec.samples, plan, config))[0]
    assert first.decision["model_emotion"] == "fearful" and first.decision["focus"]["emotion"] == "disgusted"
    assert first.emotion == "disgusted" and "focus decides: fearful -> disgusted" in first.decision["steps"]


# ---- domain profiles ---------------------------------------------------------------------------
def test_profile_shifts_every_score_by_exactly_its_logit_bias(speech_silence_speech):
    plan_logits = {"fearful": 1.0, "disgusted": 0.8, "neutral": 1.2, "sad": 0.3}
    bias = {"fearful": float(np.log(2.0)), "neutral": -0.5}
    profile = Profile(name="medical", logit_bias=bias)
    plain = run_core(speech_silence_speech.samples, lambda t: plan_logits)
    shifted = run_core(speech_silence_speech.samples, lambda t: plan_logits, profile=profile)
    assert shifted[0].profile == {"name": "medical", "neutral": False,
                                  "logit_bias": {k: bias.get(k, 0.0) for k in LABELS}}  # fmt: skip
    assert plain[0].profile["name"] == "general" and plain[0].profile["neutral"] is True
    expected = softmax(vec(**plan_logits) + vec(**bias))
    for seg, before in zip(segments(shifted), segments(plain)):
        np.testing.assert_allclose([seg.scores[k] for k in LABELS], expected, atol=1e-6)
        # softmax(z + b): every odds ratio moves by exp(b_i - b_j), here fear vs neutral by 2·e^0.5.
        odds = (seg.scores["fearful"] / seg.scores["neutral"]) / (before.scores["fearful"] / before.scores["neutral"])
        assert odds == pytest.approx(2.0 * np.exp(0.5), rel=1e-5)
        assert seg.decision["profile"] == "medical"
    windows = [e for e in shifted if e.type == "window"]
    np.testing.assert_allclose([windows[0].scores[k] for k in LABELS], expected, atol=1e-6)


# ---- acoustic cues in reviews and dual reports -------------------------------------------------
def test_review_and_dual_reports_quote_the_cues(speech_silence_speech):
    rec = speech_silence_speech
    (b0, b1) = rec.spans[1]
    mid = (b0 + b1) / 2
    events = run_core(rec.samples, lambda t: {"fearful": 5.0} if t < mid else {"disgusted": 5.0})
    review, dual = of_type(events, "review"), of_type(events, "dual_emotion")
    assert review and dual
    for report in review + dual:
        assert DISCLAIMER in report.evidence
    seg = segments(events)[1]
    assert seg.decision["cues"]["f0_median_hz"] > 0 and seg.decision["evidence"] == dual[0].evidence
    # Cues are measured only where the fear/disgust call is at stake, unless asked for always.
    calm = run_core(rec.samples, lambda t: {"neutral": 5.0})
    assert all(s.decision["cues"] is None for s in segments(calm))
    always = run_core(rec.samples, lambda t: {"neutral": 5.0}, AnalyzerConfig(decisions=DecisionConfig(cues="always")))
    assert all(s.decision["cues"] is not None for s in segments(always))


def test_pair_reading_attributes_cues_to_each_emotion():
    cues = AcousticCues(duration=2.0, f0_median_hz=220.0, f0_range_st=9.0, f0_std_st=3.5, voiced_fraction=0.6,
                        contour="rise_fall", band_2_4k_ratio=0.31, syllable_rate=5.6, pause_ratio=0.1)  # fmt: skip
    assert pair_reading(cues) == (
        "fearful: F0 rise-fall; disgusted: high 2–4 kHz energy (0.31); "
        f"either: strong F0 fluctuation (3.5 st), fast (5.6 syl/s) ({DISCLAIMER})"
    )
    flat = AcousticCues(2.0, 120.0, 1.0, 0.5, 0.7, "flat", 0.05, 4.0, 0.1)
    assert pair_reading(flat).startswith("no cue points to fearful or disgusted (F0 flat, monotone F0")


def test_cues_of_a_long_segment_are_measured_around_the_fear_disgust_peak():
    frames = np.zeros((1500, len(LABELS)), np.float32)  # a 30 s segment...
    frames[1000:1020, LABELS.index("fearful")] = 5.0  # ...with its fear peak at 20.0–20.4 s
    scores = dict(zip(LABELS, softmax(frames.mean(axis=0)).tolist()))
    n = 30 * 16000 + 80
    a, b = cue_span(DecisionConfig(cues="always"), scores, False, frames, LABELS, n)
    assert b - a == 8 * 16000 and a == 1010 * 320 - 4 * 16000  # 16.2–24.2 s: centred on the peak window
    assert cue_span(DecisionConfig(cues="always"), scores, False, frames[:200], LABELS, 4 * 16000) == (0, 4 * 16000)
    assert cue_span(DecisionConfig(cues="off"), scores, True, frames, LABELS, n) is None
