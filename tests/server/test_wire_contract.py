"""Issue 21 against a real server: each place where an integrator found the documents and the server apart.

Clients here are plain `websockets` and `httpx` over loopback, written as docs/protocol.md and
docs/http-api.md describe the server, not through stream.client; every JSON message they receive
is also checked against the schema the server itself publishes at /schemas/messages.json.
"""

from __future__ import annotations

import asyncio
import json
import re
import wave

import httpx
import jsonschema
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server_harness import ROOT, read_all, start_server

TOKEN, STREAM, WATCH = "s3cret", "str3am-only", "w4tch-only"
START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    s = start_server(tiny_model_dir, tmp, "--stream-token", STREAM, "--watch-token", WATCH, "--max-sessions", "1",
                     "--measure-processes", "0", "--start-timeout", "5", "--resume-seconds", "1", token=TOKEN)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def schemas(server):
    document = httpx.get(f"{server.http}/schemas/messages.json").json()  # no credential: it is public
    jsonschema.Draft202012Validator.check_schema(document)
    return document


@pytest.fixture(scope="module")
def pcm(speech_silence_speech):
    return (np.clip(speech_silence_speech.samples, -1, 1) * 32767).astype("<i2")


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def fits(schemas: dict, endpoint: str, message: dict) -> None:
    """The message is one the server's published schema describes, field for field."""
    ref = schemas["x-endpoints"][endpoint]["server"].get(message["type"])
    assert ref is not None, f"{endpoint} sent an undocumented message type {message['type']!r}"
    jsonschema.validate(message, {"$schema": schemas["$schema"], "$defs": schemas["$defs"], "$ref": ref})


def unbatched(messages: list[dict]) -> list[dict]:
    """A monitor's messages with each `batch` read as its messages, in order (docs/protocol.md, `batch`)."""
    return [inner for m in messages for inner in (m["messages"] if m["type"] == "batch" else [m])]


async def stream_session(server, start: dict, audio: bytes, stop: bool = True, after_stop: list | None = None,
                         chunk: int = 6400) -> tuple[list[dict], int | None, str | None]:
    """One /ws/stream session as the docs describe it; `after_stop`: messages sent right after `stop`."""
    got: list[dict] = []
    async with connect(f"{server.ws}/ws/stream", additional_headers=bearer(STREAM)) as ws:
        reader = asyncio.create_task(read_all(ws, got))
        try:
            await ws.send(json.dumps({**START, **start}))
            for i in range(0, len(audio), chunk):
                await ws.send(audio[i : i + chunk])
            if stop:
                await ws.send(json.dumps({"type": "stop"}))
                for message in after_stop or ():
                    await ws.send(message)
        except ConnectionClosed:
            pass
        if not stop:
            await asyncio.sleep(0.5)
            await ws.close()
        await asyncio.wait_for(reader, 120)
        return got, ws.close_code, ws.close_reason


# -- finding 1: 401 for a bad secret, 403 for a credential without the right ---------------------------


def test_handshakes_tell_a_bad_secret_from_a_missing_right(server):
    async def refused(path: str, headers: dict, query: str = "") -> tuple[int, str, str | None]:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{server.ws}{path}{query}", additional_headers=headers):
                pass
        response = caught.value.response
        return response.status_code, json.loads(response.body)["code"], response.headers.get("WWW-Authenticate")

    for path in ("/ws/stream", "/ws/monitor", "/ws/replay"):
        assert asyncio.run(refused(path, {})) == (401, "unauthorized", "Bearer"), path
        assert asyncio.run(refused(path, bearer("wrong"))) == (401, "unauthorized", "Bearer"), path
        assert asyncio.run(refused(path, {}, "?token=wrong")) == (401, "unauthorized", "Bearer"), path
    assert asyncio.run(refused("/ws/stream", bearer(WATCH))) == (403, "forbidden", None)
    assert asyncio.run(refused("/ws/replay", bearer(WATCH))) == (403, "forbidden", None)
    assert asyncio.run(refused("/ws/monitor", bearer(STREAM))) == (403, "forbidden", None)
    assert asyncio.run(refused("/ws/monitor", {}, f"?token={STREAM}")) == (403, "forbidden", None)
    # HTTP alike
    for headers, status, code in (({}, 401, "unauthorized"), (bearer("wrong"), 401, "unauthorized"),
                                  (bearer(STREAM), 403, "forbidden")):
        answer = httpx.get(f"{server.http}/api/sessions/x", headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (status, code)


def test_a_twilio_start_token_without_the_right_is_forbidden(server):
    async def call(token: str) -> tuple[int | None, str | None]:
        start = {"event": "start", "sequenceNumber": "1", "streamSid": f"MZ{len(token)}",
                 "start": {"accountSid": "AC1", "streamSid": f"MZ{len(token)}", "callSid": "CA1", "tracks": ["inbound"],
                           "customParameters": {"token": token},
                           "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
        async with connect(f"{server.ws}/ws/twilio") as tw:
            await tw.send(json.dumps(start))
            await asyncio.wait_for(tw.wait_closed(), 30)
            return tw.close_code, tw.close_reason

    assert asyncio.run(call("wrong")) == (1008, "unauthorized")
    assert asyncio.run(call(WATCH)) == (1008, "forbidden")


# -- finding 2: messages after stop are answered already_stopped ----------------------------------------


def test_messages_after_stop_are_answered_already_stopped(server, pcm, schemas):
    # The audio ends inside speech, so `stop` has a segment to flush while the late messages arrive.
    audio = pcm[: int(16000 * 2.6)].tobytes()
    late = [bytes(3200), json.dumps({"type": "stop"}), json.dumps(START)]
    got, code, reason = asyncio.run(stream_session(server, {"session_id": "late-1"}, audio, after_stop=late))
    errors = [m for m in got if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["already_stopped"] * 3, errors
    assert got[-1]["type"] == "summary" and got[-1]["stats"]["status"] == "complete"
    assert (code, reason) == (1000, "")
    for message in got:
        fits(schemas, "/ws/stream", message)


# -- finding 3: a full server says so in an error, then closes 1013 with the code as reason -------------


def test_a_full_server_sends_server_full_then_closes_1013(server, schemas):
    async def run():
        async with connect(f"{server.ws}/ws/stream", additional_headers=bearer(STREAM)) as first:
            await first.send(json.dumps({**START, "session_id": "holds-the-slot"}))
            assert json.loads(await first.recv())["type"] == "ready"
            turned_away, rest = [], []
            async with connect(f"{server.ws}/ws/stream", additional_headers=bearer(STREAM)) as second:
                await read_all(second, turned_away)
            await first.send(json.dumps({"type": "stop"}))
            await read_all(first, rest)
            return turned_away, second.close_code, second.close_reason, rest

    turned_away, code, reason, rest = asyncio.run(run())
    assert [(m["type"], m["code"]) for m in turned_away] == [("error", "server_full")]
    assert "1 sessions" in turned_away[0]["message"]
    assert (code, reason) == (1013, "server_full")
    assert rest[-1]["type"] == "summary"
    fits(schemas, "/ws/stream", turned_away[0])


# -- findings 4 and 5: 32 messages before start, then too_many_messages and 1008 with the code ---------


def test_32_messages_before_start_then_too_many_messages_closes_1008(server):
    async def run():
        async with connect(f"{server.ws}/ws/stream", additional_headers=bearer(STREAM)) as ws:
            got: list = []
            reader = asyncio.create_task(read_all(ws, got))
            try:
                for _ in range(40):
                    await ws.send("not json")
            except ConnectionClosed:
                pass
            await asyncio.wait_for(reader, 30)
            return got, ws.close_code, ws.close_reason

    got, code, reason = asyncio.run(run())
    assert [m["code"] for m in got] == ["bad_json"] * 32 + ["too_many_messages"]
    assert (code, reason) == (1008, "too_many_messages")


def test_start_timeout_closes_1008_with_the_code_as_reason(server):
    async def run():
        async with connect(f"{server.ws}/ws/stream", additional_headers=bearer(STREAM)) as ws:
            got: list = []
            await read_all(ws, got)
            return got, ws.close_code, ws.close_reason

    got, code, reason = asyncio.run(run())
    assert [m["code"] for m in got] == ["start_timeout"] and (code, reason) == (1008, "start_timeout")


# -- findings 6 and 7: the monitor feed, as documented; every party's info; `disconnected` --------------


def test_the_monitor_feed_as_documented_with_every_partys_info_and_disconnected(server, two_voices, pcm, schemas):
    stereo = (np.clip(np.stack(two_voices, axis=1)[: 16000 * 3], -1, 1) * 32767).astype("<i2").tobytes()
    split = {"channels": 2, "split_channels": True, "parties": ["caller", "agent"], "session_id": "mon-split"}

    async def run():
        seen: list = []
        async with connect(f"{server.ws}/ws/monitor", additional_headers=bearer(WATCH), max_size=None) as mon:
            reader = asyncio.create_task(read_all(mon, seen))
            client, _, _ = await stream_session(server, split, stereo)
            await mon.send(json.dumps({"type": "subscribe", "session_id": "mon-split"}))  # ended: unknown_session
            await mon.send(json.dumps({"type": "unsubscribe", "session_id": "mon-split"}))
            gone, _, _ = await stream_session(server, {"session_id": "mon-gone"}, pcm[: 16000 * 2].tobytes(), stop=False)
            for _ in range(200):
                if any(m["type"] == "session_ended" and m["session_id"] == "mon-gone" for m in unbatched(seen)):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.2)  # a digest
            await mon.close()
            await reader
        return seen, client, gone

    received, client, gone = asyncio.run(run())
    for message in received:
        fits(schemas, "/ws/monitor", message)
    seen = unbatched(received)
    for message in client + gone:
        fits(schemas, "/ws/stream", message)
    assert seen[0]["type"] == "snapshot"
    (started,) = [m for m in seen if m["type"] == "session_started" and m["session"]["session_id"] == "mon-split"]
    infos = {m["party"]: m for m in client if m["type"] == "info"}
    assert set(infos) == {"caller", "agent"} and started["info"] == infos  # the agent's info reaches monitors too
    assert started["session"]["parties"] == ["caller", "agent"]
    (ended,) = [m for m in seen if m["type"] == "session_ended" and m["session_id"] == "mon-split"]
    assert ended["summary"] == client[-1]["stats"]
    errors = [m for m in seen if m["type"] == "error"]
    assert [(e["code"], e["session_id"]) for e in errors] == [("unknown_session", "mon-split")]
    assert {"type": "unsubscribed", "session_id": "mon-split"} in seen
    assert any(m["type"] == "digest" for m in seen)
    # A socket closed without stop: `disconnected`, on the monitor, in session.json and over HTTP.
    assert gone and gone[-1]["type"] != "summary"
    (left,) = [m for m in seen if m["type"] == "session_ended" and m["session_id"] == "mon-gone"]
    assert left["summary"]["status"] == "disconnected"
    record = httpx.get(f"{server.http}/api/sessions/mon-gone", headers=bearer(WATCH)).json()
    assert record["status"] == "disconnected" and record["summary"]["status"] == "disconnected"


def test_mqtt_carries_every_partys_info_on_its_topic(tiny_model_dir, tmp_path, two_voices):
    from test_mqtt import Broker, Subscriber, unique

    broker = Broker(tmp_path / "broker")
    broker.start()
    sub = Subscriber(broker, "emostream/split-i")
    server = start_server(tiny_model_dir, tmp_path, "--mqtt", broker.url, "--measure-processes", "0", token=TOKEN)
    try:
        stereo = (np.clip(np.stack(two_voices, axis=1)[: 16000 * 2], -1, 1) * 32767).astype("<i2").tobytes()
        start = {"channels": 2, "split_channels": True, "parties": ["caller", "agent"], "session_id": "split-i"}
        got: list = []

        async def run():
            async with connect(f"{server.ws}/ws/stream", additional_headers=bearer(TOKEN)) as ws:
                reader = asyncio.create_task(read_all(ws, got))
                await ws.send(json.dumps({**START, **start}))
                await ws.send(stereo)
                await ws.send(json.dumps({"type": "stop"}))
                await asyncio.wait_for(reader, 60)

        asyncio.run(run())
        infos = {m["party"]: m for m in got if m["type"] == "info"}
        assert set(infos) == {"caller", "agent"}
        ended = lambda r: any(p["type"] == "session_ended" for _, _, p in r)  # noqa: E731
        assert sub.wait(ended, 30), "session_ended never arrived over MQTT"
        published = unique(sub.received)
        for party, info in infos.items():
            assert [p for t, p in published if t == f"emostream/split-i/{party}/info"] == [info], party
        (began,) = [p for t, p in published if t == "emostream/split-i/all/session_started"]
        assert began["info"] == infos["caller"] and began["parties"] == ["caller", "agent"]
    finally:
        server.stop()
        sub.close()
        broker.stop()


# -- findings 8 and 11: a split session's audio, by party; downloads and deletions in the server log ---


def test_audio_of_a_split_session_needs_a_known_party_and_downloads_are_logged(server, two_voices, pcm):
    stereo = (np.clip(np.stack(two_voices, axis=1)[: 16000 * 2], -1, 1) * 32767).astype("<i2").tobytes()
    split = {"channels": 2, "split_channels": True, "parties": ["caller", "agent"], "session_id": "audio-split"}
    asyncio.run(stream_session(server, split, stereo))
    asyncio.run(stream_session(server, {"session_id": "audio-mono"}, pcm[: 16000].tobytes()))
    audio = f"{server.http}/api/sessions/audio-split/audio"

    def get(url: str) -> httpx.Response:
        return httpx.get(url, headers=bearer(WATCH))

    needs = get(audio)
    assert needs.status_code == 400 and needs.json()["code"] == "party_required"
    assert "caller" in needs.json()["message"] and "agent" in needs.json()["message"]
    assert get(f"{audio}?party=caller").status_code == 200
    unknown = get(f"{audio}?party=nobody")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    assert "no such party 'nobody'" in unknown.json()["message"] and "caller, agent" in unknown.json()["message"]
    assert "no such session" not in unknown.json()["message"]
    odd = get(f"{audio}?party=no%20such")
    assert odd.status_code == 404 and "no such party" in odd.json()["message"]
    unsplit = get(f"{server.http}/api/sessions/audio-mono/audio?party=caller")
    assert unsplit.status_code == 404 and "not split" in unsplit.json()["message"]
    missing = get(f"{server.http}/api/sessions/nope/audio?party=caller")
    assert missing.status_code == 404 and missing.json()["message"] == "no such session"


def test_downloads_and_deletions_reach_the_server_log_at_its_default_level(server, pcm):  # finding 11
    asyncio.run(stream_session(server, {"session_id": "logged"}, pcm[: 16000].tobytes()))
    assert httpx.get(f"{server.http}/api/sessions/logged/events", headers=bearer(WATCH)).status_code == 200
    assert httpx.delete(f"{server.http}/api/sessions/logged", headers=bearer(TOKEN)).status_code == 200
    log = server.log.read_text()
    assert re.search(r"emostream\.access: download logged by watch_token from 127\.0\.0\.1", log), log[-2000:]
    assert re.search(r"emostream\.access: delete logged by token from 127\.0\.0\.1", log), log[-2000:]


# -- finding 10: /api/predict answers exactly the fields its documents name ------------------------------


def test_predict_answers_only_documented_fields(server, speech_silence_speech, tmp_path):
    from audio_fixtures import write_wav16

    spec = httpx.get(f"{server.http}/openapi.json").json()["components"]["schemas"]
    doc = (ROOT / "docs" / "http-api.md").read_text(encoding="utf-8")
    section = doc[doc.index("### `POST /api/predict`"):doc.index("## Adding a route")]
    mono = write_wav16(tmp_path / "clip.wav", speech_silence_speech.samples[: 16000 * 3])
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as w:  # the same speech on both channels
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.repeat(np.asarray(
            np.clip(speech_silence_speech.samples[: 16000 * 3], -1, 1) * 32767, "<i2"), 2).tobytes())

    def predict(path, **fields) -> dict:
        with open(path, "rb") as f:
            answer = httpx.post(f"{server.http}/api/predict", headers=bearer(STREAM), timeout=120,
                                files={"file": (path.name, f, "audio/wav")}, data=fields)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def check(body: dict, schema: str, extra: dict | None = None) -> None:
        properties = {**spec[schema]["properties"], **(extra or {})}
        assert set(body) <= set(properties), set(body) - set(properties)
        assert set(spec[schema]["required"]) <= set(body)
        for field in body:
            assert f"`{field}`" in section, field

    utterance = predict(mono, extract_embedding="yes")
    check(utterance, "Analysis")
    assert {"emoji", "precision", "duration", "embedding", "warning"} <= set(utterance)
    assert isinstance(utterance["embedding"][0], float)
    frame = predict(mono, granularity="frame", extract_embedding="ON")
    check(frame, "Analysis")
    assert {"windows", "segments", "events", "parameters"} <= set(frame) and isinstance(frame["embedding"][0], list)
    split = predict(stereo, split_channels="true", parties="caller,agent")
    check(split, "SplitAnalysis")
    assert "emotion" not in split and set(split["parties"]) == {"caller", "agent"}
    channel = spec["PartyAnalysis"]["allOf"][1]["properties"]
    for party in split["parties"].values():
        check(party, "Analysis", channel)
    assert [split["parties"][p]["channel"] for p in ("caller", "agent")] == [0, 1]
    refused = httpx.post(f"{server.http}/api/predict", headers=bearer(STREAM), json={"audio_path": "x.wav"})
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")  # no --audio-root
