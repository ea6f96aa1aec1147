"""Tests of the vad package on real synthetic speech (espeak-ng) with known speech spans."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_fixtures import Recording, compose, espeak
from vad import SpeechEnd, SpeechSegmenter, SpeechStart, VadConfig, VadEvent, make_classifier

# silero-vad's own loader trips these; nothing for us to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:path is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]

ESPEAK_RATE = 22050
SENTENCES = (
    "The quick brown fox jumps over the lazy dog",
    "Please call me back when you get home tonight",
    "I really enjoyed the concert last weekend",
)
# Noise gaps around the utterances, in seconds: >= min_silence_ms + both pads (defaults).
GAPS_S = (1.0, 1.5, 1.5, 1.0)
NOISE_DBFS = -60.0
# Decision granularity: one frame (30 ms webrtc, 32 ms silero) plus resampler lag.
TOLERANCE_MS = 60
# Both backends keep flagging a word's fading tail as speech (webrtc also has its own
# hangover), so a segment may run this far past true end + post pad.
END_SLACK_MS = 200


@pytest.fixture(scope="session")
def utterances(tmp_path_factory) -> list[np.ndarray]:
    """Each sentence spoken by espeak-ng at its native 22.05 kHz, trimmed to its audible span."""
    folder = tmp_path_factory.mktemp("espeak")
    return [
        espeak(sentence, folder / f"utt{i}.wav", rate=ESPEAK_RATE) for i, sentence in enumerate(SENTENCES)
    ]


@pytest.fixture(scope="session")
def scene(utterances):
    """Build (and cache) the noise + speech scene at a given rate; spans are in samples."""
    cache: dict[int, Recording] = {}

    def build(rate: int) -> Recording:
        if rate not in cache:
            speech = [soxr.resample(u, ESPEAK_RATE, rate).astype(np.float32) for u in utterances]
            parts = [GAPS_S[0]]
            for utterance, gap in zip(speech, GAPS_S[1:]):
                parts += [utterance, gap]
            cache[rate] = compose(parts, rate=rate, seed=rate, noise_db=NOISE_DBFS)
        return cache[rate]

    return build


@pytest.fixture(scope="session")
def short_speech(utterances) -> np.ndarray:
    """6 s at 16 kHz: two utterances with a short pause, ending mid-speech."""
    first, second = (soxr.resample(u, ESPEAK_RATE, 16000) for u in utterances[:2])
    pause = np.zeros(4000, dtype=np.float32)
    return np.concatenate((pause, first, pause, second, pause))[:96000].astype(np.float32)


def run(segmenter: SpeechSegmenter, audio: np.ndarray, chunk: int | None = None) -> list[VadEvent]:
    """Push `audio` whole (or in chunks of `chunk` samples), then flush."""
    chunk = chunk or max(len(audio), 1)
    events: list[VadEvent] = []
    for i in range(0, len(audio), chunk):
        events += segmenter.push(audio[i : i + chunk])
    return events + segmenter.flush()


def segments(events: list[VadEvent]) -> list[tuple[int, int]]:
    """Pair events into (start, end) segments, checking order and non-overlap."""
    result: list[tuple[int, int]] = []
    start = None
    for event in events:
        if isinstance(event, SpeechStart):
            assert start is None, f"{event} while a segment is open"
            assert not result or event.sample >= result[-1][1], "segments overlap"
            assert event.sample >= 0
            start = event.sample
        else:
            assert start is not None, f"{event} with no open segment"
            assert event.sample >= start
            result.append((start, event.sample))
            start = None
    assert start is None, "segment left open after flush()"
    return result


CASES = [("webrtc", rate) for rate in (8000, 16000, 32000, 44100, 48000)] + [
    ("silero", rate) for rate in (16000, 8000, 44100)
]


@pytest.mark.parametrize(("backend", "rate"), CASES)
def test_segments_contain_true_speech_spans(scene, backend, rate):
    config = VadConfig(backend=backend)
    s = scene(rate)
    found = segments(run(SpeechSegmenter(config, rate), s.samples))
    assert len(found) == len(s.sample_spans), (found, s.sample_spans)
    tol = round(TOLERANCE_MS * rate / 1000)
    pre = round(config.pre_speech_pad_ms * rate / 1000)
    post = round(config.post_speech_pad_ms * rate / 1000)
    slack = round(END_SLACK_MS * rate / 1000)
    for (start, end), (true_start, true_end) in zip(found, s.sample_spans):
        assert true_start - pre - tol <= start <= true_start + tol, (start, true_start)
        assert true_end - tol <= end <= true_end + post + slack, (end, true_end)


@pytest.mark.parametrize("backend", ["webrtc", "silero"])
def test_long_segments_are_split_at_max_length(scene, backend):
    s = scene(16000)
    unsplit = run(SpeechSegmenter(VadConfig(backend=backend), 16000), s.samples)
    config = VadConfig(backend=backend, max_segment_s=1.0)
    events = run(SpeechSegmenter(config, 16000), s.samples)
    splits = [i for i, e in enumerate(events) if isinstance(e, SpeechEnd) and e.split]
    # Every utterance lasts more than 2 s, so each is cut at least twice.
    assert len(splits) >= 2 * len(s.sample_spans)
    for i in splits:
        assert events[i + 1] == SpeechStart(events[i].sample)
    pieces = segments(events)
    assert all(0 < end - start <= 16000 for start, end in pieces)
    split_ends = {events[i].sample for i in splits}
    assert all(end - start == 16000 for start, end in pieces if end in split_ends)
    # Joined back at the splits, the segments are those of an unsplit run.
    joined: list[tuple[int, int]] = []
    for start, end in pieces:
        if joined and joined[-1][1] == start and start in split_ends:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    assert joined == segments(unsplit)


@pytest.mark.parametrize("backend", ["webrtc", "silero"])
def test_burst_shorter_than_min_speech_gives_no_segment(utterances, backend):
    rate = 16000
    speech = soxr.resample(utterances[0], ESPEAK_RATE, rate).astype(np.float32)
    # The loudest 100 ms of the utterance: a burst the classifier does hear as speech.
    win = rate // 10
    energy = np.convolve(speech**2, np.ones(win, dtype=np.float32), mode="valid")
    loudest = int(np.argmax(energy))
    silence = np.zeros(rate, dtype=np.float32)
    burst = np.concatenate((silence, speech[loudest : loudest + win], silence))

    classifier = make_classifier(VadConfig(backend=backend), rate)
    n = classifier.frame_samples
    voiced = [classifier.is_speech(burst[i : i + n]) for i in range(0, len(burst) - n + 1, n)]
    assert any(voiced), "the burst should contain voiced frames"

    assert run(SpeechSegmenter(VadConfig(backend=backend), rate), burst) == []
    # Control: the same rule lets a long enough stretch of speech through.
    half = rate // 4
    long_enough = np.concatenate((silence, speech[loudest - half : loudest + half], silence))
    assert len(segments(run(SpeechSegmenter(VadConfig(backend=backend), rate), long_enough))) == 1


def check_committed(trace: list[tuple[list[VadEvent], int | None, int]]) -> None:
    """`committed` never decreases within a segment, stays inside it and below its end."""
    open_start = None
    highest = None
    for events, committed, received in trace:
        for event in events:
            if isinstance(event, SpeechStart):
                open_start, highest = event.sample, None
            else:
                assert highest is None or event.sample >= highest, (event, highest)
                open_start = highest = None
        if open_start is None:
            assert committed is None
            continue
        assert committed is not None
        assert open_start <= committed <= received
        assert highest is None or committed >= highest
        highest = committed


def run_traced(segmenter: SpeechSegmenter, chunks: list[np.ndarray]):
    """Push `chunks`, then flush; return all events and the per-call trace."""
    trace = []
    for chunk in chunks:
        trace.append((segmenter.push(chunk), segmenter.committed, segmenter.samples_received))
    trace.append((segmenter.flush(), segmenter.committed, segmenter.samples_received))
    events = [e for call_events, _, _ in trace for e in call_events]
    return events, trace


# The webrtc 44.1 kHz and silero 44.1 kHz cases go through the streaming resampler.
INVARIANCE_CASES = [("webrtc", 44100), ("webrtc", 8000), ("silero", 16000), ("silero", 44100)]


@pytest.mark.parametrize(("backend", "rate"), INVARIANCE_CASES)
def test_events_do_not_depend_on_chunking(scene, backend, rate):
    s = scene(rate)
    # Two utterances, cut 1 s into the second so flush() has a segment to close.
    audio = s.samples[: s.sample_spans[1][0] + rate]
    config = VadConfig(backend=backend)
    reference = run(SpeechSegmenter(config, rate), audio)
    assert len(segments(reference)) == 2

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.integers(0, len(audio)), max_size=12))
    def check(cuts):
        bounds = [0, *sorted(cuts), len(audio)]  # repeated cuts give empty chunks
        chunks = [audio[a:b] for a, b in zip(bounds, bounds[1:])]
        events, trace = run_traced(SpeechSegmenter(config, rate), chunks)
        assert events == reference
        check_committed(trace)

    check()


@pytest.mark.parametrize("backend", ["webrtc", "silero"])
def test_committed_is_monotonic_and_below_final_end(scene, backend):
    s = scene(16000)
    chunks = [s.samples[i : i + 1000] for i in range(0, len(s.samples), 1000)]
    events, trace = run_traced(SpeechSegmenter(VadConfig(backend=backend), 16000), chunks)
    check_committed(trace)
    assert len(segments(events)) == len(s.sample_spans)
    # While speech goes on, committed trails the audio received by less than one frame.
    frame = SpeechSegmenter(VadConfig(backend=backend), 16000).frame_samples
    for true_start, true_end in s.sample_spans:
        mid_speech = [(c, n) for _, c, n in trace if true_start + 8000 < n < true_end]
        assert mid_speech and all(c is not None and c > n - frame for c, n in mid_speech)


@pytest.mark.parametrize("backend", ["webrtc", "silero"])
def test_flush_closes_open_segment(scene, backend):
    s = scene(16000)
    # Stop 1 s into the second utterance, off the frame grid so a partial frame remains.
    audio = s.samples[: s.sample_spans[1][0] + 16000 + 7]
    segmenter = SpeechSegmenter(VadConfig(backend=backend), 16000)
    events = segmenter.push(audio)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd, SpeechStart]
    committed = segmenter.committed
    assert committed is not None and committed <= segmenter.samples_received
    assert segmenter.samples_received % segmenter.frame_samples != 0
    # Speech is still going on: the segment reaches the very last sample received.
    assert segmenter.flush() == [SpeechEnd(len(audio))]
    assert segmenter.committed is None
    assert segmenter.flush() == []
    with pytest.raises(RuntimeError, match="reset"):
        segmenter.push(audio[:10])


@pytest.mark.parametrize(
    ("backend", "rate"), [("webrtc", 16000), ("webrtc", 44100), ("silero", 16000)]
)
def test_int16_input_equals_float_input(scene, backend, rate):
    s = scene(rate)
    pcm = np.clip(np.round(s.samples * 32768), -32768, 32767).astype(np.int16)
    as_float = pcm.astype(np.float32) / 32768
    config = VadConfig(backend=backend)
    from_int = run(SpeechSegmenter(config, rate), pcm, chunk=4000)
    from_float = run(SpeechSegmenter(config, rate), as_float, chunk=4000)
    assert from_int == from_float
    assert len(segments(from_int)) == len(s.sample_spans)


@pytest.mark.parametrize("backend", ["webrtc", "silero"])
def test_reset_restarts_the_stream(scene, backend):
    s = scene(16000)
    segmenter = SpeechSegmenter(VadConfig(backend=backend), 16000)
    first = run(segmenter, s.samples, chunk=3000)
    segmenter.reset()
    assert segmenter.samples_received == 0 and segmenter.committed is None
    assert segmenter.push(np.zeros(0, dtype=np.float32)) == []
    assert run(segmenter, s.samples, chunk=5000) == first


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("backend", "vosk", "('webrtc', 'silero')"),
        ("frame_ms", 25, "(10, 20, 30)"),
        ("aggressiveness", 4, "(0, 1, 2, 3)"),
        ("threshold", 1.0, "(0, 1)"),
        ("start_ratio", 0.0, "(0, 1]"),
        ("end_ratio", 1.5, "(0, 1]"),
        ("pre_speech_pad_ms", -10, ">= 0"),
        ("post_speech_pad_ms", 12.5, ">= 0"),
        ("min_speech_ms", 0, "> 0"),
        ("min_silence_ms", -1, "> 0"),
        ("max_segment_s", 0.0, "> 0"),
    ],
)
def test_invalid_config_names_allowed_values(field, value, allowed):
    with pytest.raises(ValueError, match=field) as info:
        VadConfig(**{field: value})
    assert allowed in str(info.value)
    # replace() re-validates, so overrides cannot sneak past the check.
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(VadConfig(), **{field: value})


@pytest.mark.parametrize("backend", ["webrtc", "silero"])
def test_invalid_sample_rate_names_allowed_rates(backend):
    with pytest.raises(ValueError, match=r"\(8000, 16000, 32000, 44100, 48000\)"):
        SpeechSegmenter(VadConfig(backend=backend), 22050)


def test_invalid_samples_name_allowed_formats():
    segmenter = SpeechSegmenter(VadConfig(), 16000)
    with pytest.raises(ValueError, match="float32.*int16.*float64"):
        segmenter.push(np.zeros(480, dtype=np.float64))
    with pytest.raises(ValueError, match="1-D"):
        segmenter.push(np.zeros((480, 2), dtype=np.float32))
    assert segmenter.samples_received == 0


def test_silero_frame_is_model_frame_and_webrtc_frame_follows_frame_ms():
    assert SpeechSegmenter(VadConfig(backend="silero"), 16000).frame_samples == 512
    assert SpeechSegmenter(VadConfig(backend="silero"), 8000).frame_samples == 256
    assert SpeechSegmenter(VadConfig(frame_ms=20), 48000).frame_samples == 960
    # 44.1 kHz is resampled to 16 kHz for the decision; frames keep their duration.
    assert SpeechSegmenter(VadConfig(frame_ms=10), 44100).frame_samples == 441


@settings(max_examples=40, deadline=None)
@given(
    pre=st.integers(0, 600),
    post=st.integers(0, 900),
    min_speech=st.integers(10, 500),
    min_silence=st.integers(10, 800),
    start_ratio=st.sampled_from([0.3, 0.6, 1.0]),
    end_ratio=st.sampled_from([0.5, 0.9, 1.0]),
    max_segment_s=st.sampled_from([0.05, 0.4, 1.3, 30.0]),
    cuts=st.lists(st.integers(0, 96000), max_size=6),
)
def test_invariants_hold_for_any_config(
    short_speech, pre, post, min_speech, min_silence, start_ratio, end_ratio, max_segment_s, cuts
):
    config = VadConfig(
        pre_speech_pad_ms=pre,
        post_speech_pad_ms=post,
        min_speech_ms=min_speech,
        min_silence_ms=min_silence,
        start_ratio=start_ratio,
        end_ratio=end_ratio,
        max_segment_s=max_segment_s,
    )
    audio = short_speech
    bounds = [0, *sorted(cuts), len(audio)]
    chunks = [audio[a:b] for a, b in zip(bounds, bounds[1:])]
    events, trace = run_traced(SpeechSegmenter(config, 16000), chunks)
    check_committed(trace)
    pieces = segments(events)
    assert pieces, "the speech should give at least one segment"
    assert all(0 <= start < end <= len(audio) for start, end in pieces)
    assert all(end - start <= round(max_segment_s * 16000) for start, end in pieces)
    assert events == run(SpeechSegmenter(config, 16000), audio)

