"""Live sessions and the batching scheduler without sockets: batching, ordering, overload."""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np

from stream.engine.analyzer import analyze_array
from stream.engine.config import AnalyzerConfig
from stream.engine.events import to_dict
from stream.server.scheduler import BatchScheduler, Overloaded
from stream.server.session import LiveSession, SessionHooks, SessionSpec


def spec(i: int) -> SessionSpec:
    return SessionSpec(session_id=f"s{i}", sample_rate=16000, encoding="pcm_f32le")


def test_batched_sessions_match_the_single_stream_analyzer(scorer, speech_silence_speech):
    samples = speech_silence_speech.samples
    reference = [to_dict(e) for e in analyze_array(scorer, samples)]
    batches = []

    async def run():
        sched = BatchScheduler(scorer, max_batch=4, max_wait=0.05, on_batch=batches.append)
        sched.start()
        got = {i: [] for i in range(3)}
        sessions = [
            LiveSession(spec(i), AnalyzerConfig(), scorer, sched,
                        hooks=SessionHooks(publish=lambda s, ev, party, i=i: got[i].extend(ev)))
            for i in range(3)
        ]
        for i, s in enumerate(sessions):
            got[i].insert(0, s.info_event)
        for start in range(0, len(samples), 1600):
            for s in sessions:
                s.feed(samples[start : start + 1600])
            await asyncio.sleep(0)
        await asyncio.gather(*(s.finish() for s in sessions))
        await sched.stop()
        return got

    got = asyncio.run(run())
    assert max(b.size for b in batches) > 1
    for events in got.values():
        live = [to_dict(e) for e in events]
        assert [e["type"] for e in live] == [e["type"] for e in reference]
        for a, b in zip(live, reference):
            if "scores" in a:
                assert max(abs(a["scores"][k] - b["scores"][k]) for k in a["scores"]) < 1e-4


def test_full_queue_reports_overload_then_fails_past_the_backlog_limit(scorer, speech_silence_speech):
    samples = np.tile(speech_silence_speech.samples, 6)  # ~55 s arriving at once
    overloads, failures = [], []

    async def run():
        sched = BatchScheduler(scorer, max_batch=1, max_wait=0.0, max_pending=1)
        sched.start()
        hooks = SessionHooks(overload=lambda s, depth: overloads.append(depth),
                             failed=lambda s, exc: failures.append(exc))
        session = LiveSession(spec(0), AnalyzerConfig(), scorer, sched, hooks=hooks, max_backlog_seconds=5.0)
        session.feed(samples)
        await sched.stop()

    asyncio.run(run())
    assert overloads == [1]  # told once per session, with the queue depth
    assert failures and isinstance(failures[0], Overloaded) and "limit 5" in str(failures[0])


def test_backlog_drains_when_the_model_catches_up(scorer, speech_silence_speech):
    samples = speech_silence_speech.samples
    got, overloads = [], []

    async def run():
        sched = BatchScheduler(scorer, max_batch=1, max_wait=0.0, max_pending=1)
        sched.start()
        hooks = SessionHooks(publish=lambda s, ev, party: got.extend(ev), overload=lambda s, d: overloads.append(d))
        session = LiveSession(spec(1), AnalyzerConfig(), scorer, sched, hooks=hooks)
        session.feed(samples)  # all at once: more chunks than the queue holds
        summary = await session.finish()
        await sched.stop()
        return summary

    summary = asyncio.run(run())
    assert overloads and summary["overloaded"] is True
    reference = [json.dumps(to_dict(e)) for e in analyze_array(scorer, samples)][1:]
    assert [e.type for e in got] == [json.loads(r)["type"] for r in reference]  # nothing lost


def test_focus_crops_are_batched_with_crops_only(scorer):
    from stream.engine.jobs import ChunkJob, FocusJob

    calls = []

    class Recording:
        labels = scorer.labels

        def score(self, waveforms):
            calls.append([len(w) for w in waveforms])
            return scorer.score(waveforms)

    chunk = lambda: ChunkJob(0, 0, 0, 0, 150, np.zeros(48080, np.float32))  # noqa: E731  (3 s)
    crop = lambda: FocusJob(0, (0, 9680), 0, np.zeros(9680, np.float32))  # noqa: E731  (0.6 s)

    async def run():
        sched = BatchScheduler(Recording(), max_batch=8, max_wait=0.0)
        futures = [sched.submit(job) for job in (chunk(), crop(), chunk(), crop(), crop(), chunk())]
        sched.start()
        outputs = await asyncio.gather(*futures)
        await sched.stop()
        return outputs

    outputs = asyncio.run(run())
    assert calls == [[48080, 48080, 48080], [9680, 9680, 9680]]  # oldest kind first, queue order kept
    assert [len(o.logits) for o in outputs] == [150, 30, 150, 30, 30, 150]  # each job got its own result


def test_measurements_in_worker_processes_give_the_same_events(scorer, speech_silence_speech):
    """The decision layer's quality and cue measurements in a process pool: identical events."""
    from dataclasses import replace

    from stream.decision.config import DecisionConfig

    samples = speech_silence_speech.samples
    config = AnalyzerConfig(decisions=replace(DecisionConfig(), cues="always"))  # cues on every segment
    reference = [to_dict(e) for e in analyze_array(scorer, samples, config)]
    assert any(e["type"] == "segment" and e["decision"]["cues"] for e in reference)

    async def run():
        sched = BatchScheduler(scorer, max_batch=4, max_wait=0.01, measure_processes=2)
        sched.start()
        got = []
        session = LiveSession(spec(5), config, scorer, sched, hooks=SessionHooks(publish=lambda s, ev, party: got.extend(ev)))
        got.insert(0, session.info_event)
        for start in range(0, len(samples), 1600):
            session.feed(samples[start : start + 1600])
            await asyncio.sleep(0)
        await session.finish()
        pids = {f.result() for f in [sched._measurer._pool.submit(os.getpid) for _ in range(4)]}
        await sched.stop()
        return got, pids

    got, pids = asyncio.run(run())
    assert os.getpid() not in pids  # the measurements really ran elsewhere
    assert [to_dict(e) for e in got] == reference
