"""The streaming analyzer: audio in, events out, with the model behind a job interface.

`StreamCore` is sans-I/O and never calls the model: `push()` audio, take `pending_jobs()`,
give each result back with `complete()`, collect `take_events()`. A scheduler can batch many
streams' jobs into one forward pass. `StreamAnalyzer` wraps a core and a scorer for the simple
case: `feed(samples) -> events`, `flush() -> events`.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Sequence

import numpy as np

from models.frames import FRAME_STRIDE, SAMPLE_RATE
from models.scoring import FrameOutput, Scorer, softmax, weights_warning
from stream.decision.checks import conclude, focus_of, plan_checks
from stream.decision.fear_disgust import Evidence, Focus
from stream.decision.fusion import Centroids
from stream.decision.profiles import Profile, default_profile
from vad import SpeechEnd, SpeechSegmenter, SpeechStart

from .buffer import AudioBuffer
from .chunks import chunks_ready, full_chunk, last_chunk
from .config import AnalyzerConfig
from .events import Event, Info, Segment, Transition, Window
from .input_audio import InputResampler
from .jobs import ChunkJob, EvidenceJob, FocusJob, Job
from .smoother import Smoother


class _OpenSegment:
    """One speech segment's progress: chunks planned, frames scored, windows emitted."""

    def __init__(self, index: int, start: int):
        self.index = index
        self.start = start  # absolute 16 kHz sample
        self.end: int | None = None  # set when the VAD closes it
        self.next_chunk = 0
        self.jobs_out = 0  # jobs planned but not completed
        self.logits: list[np.ndarray | None] = []  # per planned chunk, in order
        self.feature_sum: np.ndarray | None = None  # sum of owned frame features (the embedding's numerator)
        self.windows_done = 0
        self.peaks: np.ndarray | None = None
        # The decision layer's checks, started once all frames are scored.
        self.scores: dict[str, float] | None = None
        self.checks_out = 0
        self.evidence: Evidence | None = None
        self.focus: Focus | None = None

    @property
    def done(self) -> bool:
        return self.end is not None and self.jobs_out == 0


class StreamCore:
    """Sans-I/O analyzer of one audio stream (see module docstring)."""

    def __init__(
        self,
        config: AnalyzerConfig,
        labels: Sequence[str],
        model_id: str,
        random_weights: bool,
        profile: Profile | None = None,
        centroids: Centroids | None = None,
        planted: str | None = None,
        precision: str | None = None,
    ):
        """Start a stream; the first event is an `info` describing model and parameters.

        `profile` (default: the shipped library's default) adds its logit bias to every frame;
        `centroids`, when given, let the decision layer fuse close fear/disgust calls.
        """
        self.config = config
        self.labels = tuple(labels)
        self.profile = profile or default_profile()
        self.centroids = centroids
        self._bias = self.profile.bias_vector(self.labels).astype(np.float32)
        self._resampler = InputResampler(config.sample_rate)
        self._vad = SpeechSegmenter(config.vad, SAMPLE_RATE)
        self._audio = AudioBuffer()
        self._smoother = Smoother(config.smoother, config.hop_seconds)
        self._segments: deque[_OpenSegment] = deque()
        self._jobs: list[Job] = []
        self._events: list[Event] = [
            Info(
                model_id=model_id,
                random_weights=random_weights,
                labels=self.labels,
                parameters=config.describe(),
                warning=weights_warning(random_weights, planted),
                profile=self.profile.describe(),
                centroids=centroids.describe() if centroids is not None else None,
                planted=planted,
                precision=precision,
            )
        ]
        self._n_segments = 0
        self._n_windows = 0
        self._finished = False
        # A SpeechStart is back-dated by the pre-roll after min_speech of confirmation: keep that
        # much audio (plus a second of slack) while no segment is open.
        vad = config.vad
        self._pad = (vad.pre_speech_pad_ms + vad.min_speech_ms + 1000) * SAMPLE_RATE // 1000

    # ---- input side -------------------------------------------------------------------------
    def push(self, samples: np.ndarray) -> None:
        """Add input audio (mono int16 or float at the configured rate)."""
        if self._finished:
            raise RuntimeError("stream already finished")
        self._ingest(self._resampler.push(samples))

    def finish(self) -> None:
        """End of stream: close any open speech segment and plan its last chunks."""
        if self._finished:
            return
        self._ingest(self._resampler.flush())
        self._handle_vad(self._vad.flush())
        self._plan()
        self._finished = True
        self._advance()

    @property
    def received_seconds(self) -> float:
        """Stream time covered by the audio received so far."""
        return self._audio.end / SAMPLE_RATE

    @property
    def held_from(self) -> int:
        """The oldest 16 kHz sample still held: every window still to come ends after it.

        The core keeps its open segments' audio and the VAD's pre-roll, and a window lies inside a
        segment (a new one starts no earlier than the pre-roll).
        """
        return self._audio.offset

    def _ingest(self, x: np.ndarray) -> None:
        self._audio.append(x)
        self._handle_vad(self._vad.push(x))
        self._plan()
        self._trim()

    def _handle_vad(self, events: Iterable) -> None:
        for ev in events:
            if isinstance(ev, SpeechStart):
                self._segments.append(_OpenSegment(self._n_segments, ev.sample))
                self._n_segments += 1
            elif isinstance(ev, SpeechEnd):
                seg = self._segments[-1]
                self._plan_segment(seg, ev.sample - seg.start)  # full chunks up to the end
                seg.end = ev.sample
                self._plan_last(seg)

    # ---- chunk planning ---------------------------------------------------------------------
    def _plan(self) -> None:
        """Plan the full chunks the open segment's committed audio allows."""
        if self._segments and self._segments[-1].end is None and self._vad.committed is not None:
            seg = self._segments[-1]
            self._plan_segment(seg, self._vad.committed - seg.start)

    def _plan_segment(self, seg: _OpenSegment, available: int) -> None:
        cfg = self.config
        for _ in range(chunks_ready(seg.next_chunk, available, cfg.chunk_samples)):
            self._add_job(seg, full_chunk(seg.next_chunk, cfg.chunk_samples, cfg.context_samples))

    def _plan_last(self, seg: _OpenSegment) -> None:
        cfg = self.config
        span = last_chunk(seg.next_chunk, seg.end - seg.start, cfg.chunk_samples, cfg.context_samples)
        if span is not None:
            self._add_job(seg, span)

    def _add_job(self, seg: _OpenSegment, span) -> None:
        audio = self._audio.slice(seg.start + span.audio_start, seg.start + span.audio_stop)
        self._jobs.append(
            ChunkJob(
                segment=seg.index,
                origin=seg.start + span.first_frame * FRAME_STRIDE,
                first_frame=span.first_frame,
                skip_frames=span.skip_frames,
                n_owned=span.n_owned,
                audio=audio,
            )
        )
        seg.logits.append(None)
        seg.next_chunk += 1
        seg.jobs_out += 1

    def _trim(self) -> None:
        """Drop audio no job can need: keep every segment not yet concluded and a pre-roll margin."""
        keep = self._audio.end - self._pad
        if self._segments:  # the decision layer measures each segment's whole audio when it closes
            keep = min(keep, self._segments[0].start)
        self._audio.discard_before(keep)

    # ---- model side -------------------------------------------------------------------------
    def pending_jobs(self) -> list[Job]:
        """Hand out the work waiting to be done (returned once, then cleared).

        `ChunkJob` and `FocusJob` go to the model (give back its `FrameOutput`); an `EvidenceJob`
        needs no model: give back `job.run()` (CPU-heavy, so live servers run it in a thread).
        """
        jobs, self._jobs = self._jobs, []
        return jobs

    def complete(self, job: Job, output: FrameOutput | Evidence) -> None:
        """Give back a job's result; events that became final are queued."""
        seg = next(s for s in self._segments if s.index == job.segment)
        if isinstance(job, EvidenceJob):
            seg.evidence = output
            seg.checks_out -= 1
        elif isinstance(job, FocusJob):
            seg.focus = focus_of(job.crop, output.logits + self._bias, self.labels, job.origin)
            seg.checks_out -= 1
        else:
            rows = slice(job.skip_frames, job.skip_frames + job.n_owned)
            owned = output.logits[rows]
            if len(owned) != job.n_owned:
                raise ValueError(f"job needs {job.n_owned} frames, model returned {len(owned)}")
            chunk = job.first_frame // (self.config.chunk_samples // FRAME_STRIDE)
            seg.logits[chunk] = owned + self._bias
            features = output.features[rows].sum(axis=0, dtype=np.float64)
            seg.feature_sum = features if seg.feature_sum is None else seg.feature_sum + features
            seg.jobs_out -= 1
        self._advance()

    def take_events(self) -> list[Event]:
        """Events that became final since the last call (returned once, then cleared)."""
        events, self._events = self._events, []
        return events

    # ---- events -----------------------------------------------------------------------------
    def _advance(self) -> None:
        """Emit what the scored frames allow, segment by segment, in stream order."""
        while self._segments:
            seg = self._segments[0]
            frames = self._contiguous(seg)
            self._emit_windows(seg, frames)
            if not seg.done:
                return
            if len(frames) and seg.scores is None:
                self._start_checks(seg, frames)
            if seg.checks_out:
                return  # evidence or focus crop still out
            if len(frames):  # a segment too short for a single frame was never scored
                self._close(seg, frames)
            self._segments.popleft()

    @staticmethod
    def _contiguous(seg: _OpenSegment) -> np.ndarray:
        parts = []
        for logits in seg.logits:
            if logits is None:
                break
            parts.append(logits)
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def _window_bounds(self, seg: _OpenSegment, n_ready: int):
        """Yield (first, stop) frame ranges of windows now complete."""
        win, hop = self.config.window_frames, self.config.hop_frames
        w = seg.windows_done
        while w * hop + win <= n_ready:
            yield w * hop, w * hop + win
            w += 1
        if seg.done and w == 0 and 0 < n_ready < win:
            yield 0, n_ready  # a segment shorter than one window still gets one

    def _emit_windows(self, seg: _OpenSegment, frames: np.ndarray) -> None:
        for first, stop in list(self._window_bounds(seg, len(frames))):
            if seg.windows_done == 0:
                self._smoother.start_segment()
            scores = softmax(frames[first:stop].mean(axis=0))
            step = self._smoother.update(scores)
            seg.peaks = step.scores if seg.peaks is None else np.maximum(seg.peaks, step.scores)
            start = (seg.start + first * FRAME_STRIDE) / SAMPLE_RATE
            end = (seg.start + stop * FRAME_STRIDE) / SAMPLE_RATE
            self._events.append(
                Window(
                    index=self._n_windows,
                    segment=seg.index,
                    start=start,
                    end=end,
                    scores=self._named(scores),
                    smoothed=self._named(step.scores),
                    dominant=self.labels[step.dominant],
                    dominant_score=float(step.scores[step.dominant]),
                )
            )
            if step.switch is not None:
                self._events.append(self._transition(seg, step, first))
            seg.windows_done += 1
            self._n_windows += 1

    def _transition(self, seg: _OpenSegment, step, first: int) -> Transition:
        hop = self.config.hop_frames
        began = first - step.switch.since_window * hop
        a, b = self.labels[step.switch.from_index], self.labels[step.switch.to_index]
        stop = first + self.config.window_frames
        return Transition(
            time=(seg.start + began * FRAME_STRIDE) / SAMPLE_RATE,
            confirmed_at=(seg.start + stop * FRAME_STRIDE) / SAMPLE_RATE,
            segment=seg.index,
            from_emotion=a,
            to_emotion=b,
            flagged={a, b} == set(self.config.decisions.flagged_pair),
        )

    def _start_checks(self, seg: _OpenSegment, frames: np.ndarray) -> None:
        """All frames are in: measure the segment's audio and, if ambiguous, re-score its focus crop."""
        decisions = self.config.decisions
        seg.scores = self._named(softmax(frames.mean(axis=0)))
        audio = self._audio.slice(seg.start, seg.end)
        plan = plan_checks(decisions, self.labels, seg.scores, frames, len(audio), self._named(seg.peaks))
        self._check(seg, EvidenceJob(seg.index, audio, self.config.sample_rate, decisions, plan.cue_span))
        if plan.crop is not None:
            a, b = plan.crop
            self._check(seg, FocusJob(seg.index, plan.crop, seg.start, audio[a:b]))

    def _check(self, seg: _OpenSegment, job: Job) -> None:
        self._jobs.append(job)
        seg.checks_out += 1

    def _close(self, seg: _OpenSegment, frames: np.ndarray) -> None:
        start, end = seg.start / SAMPLE_RATE, seg.end / SAMPLE_RATE
        scores, peaks = seg.scores, self._named(seg.peaks)
        embedding = seg.feature_sum / len(frames) if seg.feature_sum is not None else None
        found = conclude(
            self.config.decisions, scores, seg.evidence, self.profile, embedding, self.centroids, seg.focus,
            seg.index, start, end, peaks,
        )
        self._events.append(
            Segment(
                index=seg.index,
                start=start,
                end=end,
                emotion=found.decision.emotion,
                confidence=max(scores.values()),
                scores=scores,
                peaks=peaks,
                n_windows=seg.windows_done,
                decision=found.decision.to_dict(),
            )
        )
        self._events.extend(event for event in (found.review, found.dual) if event is not None)

    def _named(self, values: np.ndarray) -> dict[str, float]:
        return {label: float(v) for label, v in zip(self.labels, values)}


class StreamAnalyzer:
    """A stream core that scores its own chunks with `scorer`: the simple synchronous analyzer."""

    def __init__(
        self,
        scorer: Scorer,
        config: AnalyzerConfig | None = None,
        max_batch: int = 1,
        profile: Profile | None = None,
        centroids: Centroids | None = None,
    ):
        """Analyze one stream with `scorer` (any `Scorer`: emotion2vec+, or a scripted one in tests).

        `max_batch` > 1 scores several pending chunks per forward pass (faster on a GPU; results
        then differ from batch size 1 only by float rounding).
        """
        self.scorer = scorer
        self.max_batch = max_batch
        self.core = StreamCore(
            config or AnalyzerConfig(), scorer.labels, scorer.model_id, scorer.random_weights, profile, centroids,
            planted=scorer.planted,
            precision=scorer.precision,
        )

    def feed(self, samples: np.ndarray) -> list[Event]:
        """Add audio; return the events that became final."""
        self.core.push(samples)
        return self._run()

    def flush(self) -> list[Event]:
        """End the stream; return the remaining events."""
        self.core.finish()
        return self._run()

    def _run(self) -> list[Event]:
        while jobs := self.core.pending_jobs():  # completing a segment's chunks starts its checks
            for job in [j for j in jobs if isinstance(j, EvidenceJob)]:
                self.core.complete(job, job.run())
            jobs = [j for j in jobs if not isinstance(j, EvidenceJob)]
            for i in range(0, len(jobs), self.max_batch):
                batch = jobs[i : i + self.max_batch]
                for job, out in zip(batch, self.scorer.score([j.audio for j in batch])):
                    self.core.complete(job, out)
        return self.core.take_events()


def analyze_array(scorer: Scorer, samples: np.ndarray, config: AnalyzerConfig | None = None, max_batch: int = 1) -> list[Event]:
    """All events of a whole recording fed at once."""
    analyzer = StreamAnalyzer(scorer, config, max_batch)
    return analyzer.feed(samples) + analyzer.flush()


__all__ = ["StreamAnalyzer", "StreamCore", "analyze_array"]
