"""Split sessions without sockets: one analysis per party, each the same as that party alone."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from party_helpers import same_events

from models.errors import AudioError
from stream.engine.analyzer import analyze_array
from stream.engine.config import AnalyzerConfig
from stream.engine.events import to_dict
from stream.server.parties import split_frames
from stream.server.recording import SessionRecorder, load_session, repair
from stream.server.scheduler import BatchScheduler
from stream.server.session import LiveSession, SessionHooks, SessionSpec


def run_split(scorer, frames: np.ndarray, parties, recorder=None, chunk=1600, batches=None):
    got = {p: [] for p in parties}

    async def run():
        sched = BatchScheduler(scorer, max_batch=4, max_wait=0.02, on_batch=batches.append if batches is not None else None)
        sched.start()
        spec = SessionSpec("split-1", 16000, "pcm_f32le", channels=2, parties=tuple(parties))
        session = LiveSession(spec, AnalyzerConfig(), scorer, sched, recorder,
                              hooks=SessionHooks(publish=lambda s, ev, party: got[party].extend(ev)))
        for party, info in session.info_events.items():
            got[party].insert(0, info)
        for start in range(0, len(frames), chunk):
            session.feed(frames[start : start + chunk])
            await asyncio.sleep(0)
        summary = await session.finish()
        await sched.stop()
        return summary

    return got, asyncio.run(run())


def test_each_party_gets_the_events_of_its_channel_alone(scorer, two_voices):
    caller, agent = two_voices
    batches = []
    got, summary = run_split(scorer, np.stack([caller, agent], axis=1), ["caller", "agent"], batches=batches)
    assert max(b.size for b in batches) > 1  # the parties' chunks share forward passes
    for party, mono in (("caller", caller), ("agent", agent)):
        same_events([to_dict(e) for e in got[party]], [to_dict(e) for e in analyze_array(scorer, mono)])
    # The two voices differ, so the parties' readings do too; the summary reports both.
    assert [e.start for e in got["caller"] if e.type == "segment"] != [e.start for e in got["agent"] if e.type == "segment"]
    assert set(summary["parties"]) == {"caller", "agent"}
    for party in ("caller", "agent"):
        counts = summary["parties"][party]["events"]
        assert counts["segment"] == sum(e.type == "segment" for e in got[party]) > 0
        assert summary["parties"][party]["current_emotion"] in scorer.labels
    assert summary["events"]["segment"] == sum(summary["parties"][p]["events"]["segment"] for p in ("caller", "agent"))


def test_split_recording_keeps_each_party_apart_and_repairs(scorer, two_voices, tmp_path):
    caller, agent = two_voices
    frames = np.stack([caller, agent], axis=1)
    recorder = SessionRecorder(tmp_path, "split-1", 16000, "float32", {"parties": ["caller", "agent"]})
    got, _ = run_split(scorer, frames, ["caller", "agent"], recorder)
    folder = tmp_path / "split-1"
    for party, mono in (("caller", caller), ("agent", agent)):
        data = (folder / f"audio-{party}.wav").read_bytes()
        assert data[22:24] == b"\x01\x00"  # one channel: the party's voice alone
        assert np.array_equal(np.frombuffer(data[58:], "<f4"), mono)
    recorded = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    for party in ("caller", "agent"):
        mine = [dict(r) for r in recorded if r["party"] == party]
        for r in mine:
            del r["party"]
        assert mine == [to_dict(e) for e in got[party]]
    meta = load_session(tmp_path, "split-1")
    assert meta["parties"] == ["caller", "agent"] and meta["audio_bytes"] == 2 * (58 + 4 * len(caller))
    assert not repair(folder).changed  # a whole split session needs nothing


def test_split_frames_checks_the_shape():
    frames = np.zeros((10, 2), np.int16)
    columns = split_frames(frames, ("a", "b"))
    assert list(columns) == ["a", "b"] and columns["a"].shape == (10,)
    with pytest.raises(AudioError, match=r"\(n, 2\)"):
        split_frames(np.zeros(10, np.int16), ("a", "b"))
