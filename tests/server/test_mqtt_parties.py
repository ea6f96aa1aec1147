"""MQTT topics name the party: a subscriber to one party's topic gets that party only (real broker, real server)."""

from __future__ import annotations

import asyncio

import numpy as np
from server_harness import start_server
from test_mqtt import Subscriber, broker, unique  # noqa: F401  (broker: the fixture)
from test_server import events_of, stream

from stream.server.mqtt import qos_for


def test_each_party_topic_carries_only_that_party(broker, two_voices, tiny_model_dir, tmp_path):  # noqa: F811
    caller_sub = Subscriber(broker, "emostream/split-m/caller")
    agent_sub = Subscriber(broker, "emostream/split-m/agent")
    whole_sub = Subscriber(broker, "emostream/split-m/all")
    server = start_server(tiny_model_dir, tmp_path, "--mqtt", broker.url)
    try:
        stereo = (np.clip(np.stack(two_voices, axis=1), -1, 1) * 32767).astype("<i2").tobytes()
        start = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 2, "split_channels": True,
                 "parties": ["caller", "agent"], "session_id": "split-m"}
        messages, code = asyncio.run(stream(server, stereo, start, 6400, pace=0.01))
        assert code == 1000
        ended = lambda r: any(p["type"] == "session_ended" for _, _, p in r)
        assert whole_sub.wait(ended, 30), "session_ended never arrived over MQTT"
        for party, sub in (("caller", caller_sub), ("agent", agent_sub)):
            mine = [m for m in events_of(messages) if m.get("party") == party and m["type"] != "info"]
            # The topic also carries the party's `info` once: count the rest, so the wait ends with
            # the last segment and not one message before it.
            events = lambda r: [p for _, p in unique(r) if p["type"] != "info"]
            assert sub.wait(lambda r, wanted=len(mine): len(events(r)) >= wanted, 20)
            got = unique(sub.received)
            assert [p["type"] for _, p in got].count("info") == 1
            assert {p["party"] for _, p in got} == {party}  # nothing of the other voice
            assert all(t == f"emostream/split-m/{party}/{p['type']}" for t, p in got)
            got = [(t, p) for t, p in got if p["type"] != "info"]
            assert [p for _, p in got if qos_for(p)] == [m for m in mine if qos_for(m)]  # every segment and alert
            assert [p for _, p in got if p["type"] == "window"] == [m for m in mine if m["type"] == "window"]
        whole = [p for _, p in unique(whole_sub.received)]
        assert [p["type"] for p in whole] == ["session_started", "session_ended"]
        assert whole[0]["parties"] == ["caller", "agent"] and set(whole[1]["summary"]["parties"]) == {"caller", "agent"}
    finally:
        server.stop()
        for sub in (caller_sub, agent_sub, whole_sub):
            sub.close()
