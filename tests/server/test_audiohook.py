"""Genesys AudioHook (`/ws/audiohook`) end to end: the real server, a real WebSocket client speaking AudioHook v2.

The client (tests/audiohook_client.py) is written from the protocol's description: it numbers its
messages, checks the server's numbering, and signs its upgrade request as Genesys does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time

import httpx
import jsonschema
import numpy as np
import pytest
import soxr
from audiohook_client import EXTERNAL, STEREO, Client, open_parameters, request_headers
from party_helpers import same_events
from server_harness import start_server
from test_server import _reader, events_of, stream
from websockets.asyncio.client import connect

from stream.protocol import mulaw

FRAME = 0.1  # seconds of audio per binary message


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    from audiohook_client import API_KEY, CLIENT_SECRET

    s = start_server(tiny_model_dir, tmp_path_factory.mktemp("audiohook"), "--max-wait-ms", "20",
                     "--audiohook-api-key", API_KEY, "--audiohook-client-secret", CLIENT_SECRET)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def voices(two_voices):
    """The caller's and the agent's voices at 8 kHz, as μ-law bytes (what each channel of the call carries)."""
    return tuple(mulaw.encode((np.clip(soxr.resample(x, 16000, 8000), -1, 1) * 32767).astype(np.int16))
                 for x in two_voices)


class Hook:
    """One AudioHook connection: the socket and the client's numbering."""

    def __init__(self, ws, client: Client):
        self.ws = ws
        self.client = client

    async def send(self, kind: str, params: dict | None = None, **override) -> None:
        await self.ws.send(self.client.message(kind, params, **override))

    async def audio(self, data: bytes, channels: int = 2) -> None:
        """`data` as binary messages of FRAME seconds."""
        step = round(FRAME * 8000) * channels
        for i in range(0, len(data), step):
            await self.ws.send(self.client.audio(data[i : i + step], channels))

    async def expect(self, kind: str) -> dict:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
        self.client.received(message)
        assert message["type"] == kind, message
        return message

    async def close(self, reason: str = "end") -> dict:
        """The close transaction; the server's `closed`, after which the client hangs up."""
        await self.send("close", {"reason": reason})
        closed = await self.expect("closed")
        assert closed["parameters"] == {}
        await asyncio.wait_for(self.ws.wait_closed(), 60)
        assert self.ws.close_code == 1000
        return closed


@contextlib.asynccontextmanager
async def hook(server, client: Client | None = None, headers: dict | None = None, **signing):
    client = client or Client()
    uri = f"{server.ws}/ws/audiohook"
    async with connect(uri, additional_headers=headers or request_headers(uri, client.id, **signing)) as ws:
        yield Hook(ws, client)


def ended(server, sid: str, timeout: float = 60) -> dict:
    """A session's session.json once it is no longer live."""
    path = server.recordings / sid / "session.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (meta := json.loads(path.read_text()))["status"] != "live":
            return meta
        time.sleep(0.1)
    raise TimeoutError(f"{sid} did not end")


def recorded(server, sid: str) -> list[dict]:
    return [json.loads(line) for line in (server.recordings / sid / "events.jsonl").read_text().splitlines()]


def plain(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in ("session_id", "party")}


def test_an_audiohook_stereo_call_gives_per_party_events_identical_to_the_two_channels_analyzed_alone(server, voices):
    caller, agent = voices
    stereo = np.stack([np.frombuffer(caller, np.uint8), np.frombuffer(agent, np.uint8)], axis=1).tobytes()
    client = Client()

    async def run():
        async with hook(server, client) as h:
            await h.send("open", open_parameters((EXTERNAL, STEREO), customConfig={"internal_party": "counsellor"},
                                                 inputVariables={"context": "crisis hotline", "queue": "care"}))
            opened = await h.expect("opened")
            half = len(stereo) // 2 // 1600 * 1600
            await h.audio(stereo[:half])
            await h.send("ping", {})
            pong = await h.expect("pong")
            await h.audio(stereo[half:])
            await h.send("ping", {"rtt": "PT0.012S"})
            await h.expect("pong")
            closed = await h.close()
        return opened, pong, closed

    opened, pong, closed = asyncio.run(run())
    assert opened["seq"] == 1 and opened["clientseq"] == 1
    assert opened["parameters"] == {"media": [STEREO], "startPaused": False}  # stereo preferred to the mono offer
    assert pong["seq"] == 2 and pong["clientseq"] == 2 and pong["parameters"] == {}  # audio is not numbered
    assert closed["seq"] == 4 and closed["clientseq"] == 4
    sid = f"audiohook-{client.id}"
    meta = ended(server, sid)
    assert meta["status"] == "complete" and meta["parties"] == ["caller", "counsellor"] and meta["sample_rate"] == 8000
    assert meta["context"] == "crisis hotline"
    hooked = meta["metadata"]["audiohook"]
    assert hooked["session_id"] == client.id and hooked["parties"] == {"external": "caller", "internal": "counsellor"}
    assert hooked["input_variables"] == {"context": "crisis hotline", "queue": "care"}
    assert "+1-555" not in json.dumps(meta)  # the participant's numbers are not kept
    split = recorded(server, sid)
    assert {e.get("party") for e in split} == {"caller", "counsellor"}
    for party, channel in (("caller", caller), ("counsellor", agent)):
        alone, code = asyncio.run(stream(server, channel, {"sample_rate": 8000, "encoding": "mulaw",
                                                           "context": "crisis hotline"}, 1600))
        assert code == 1000
        same_events([plain(e) for e in split if e["party"] == party], [plain(e) for e in events_of(alone)])
        wav = (server.recordings / sid / f"audio-{party}.wav").read_bytes()[44:]
        assert np.array_equal(np.frombuffer(wav, "<i2"), mulaw.decode(channel))


def unbatched(messages: list[dict]) -> list[dict]:
    return [inner for m in messages for inner in (m["messages"] if m["type"] == "batch" else [m])]


def test_pause_and_resume_on_audiohook_are_recorded(server, voices):
    caller, agent = voices
    second = 16000  # bytes of one second of stereo PCMU
    stereo = np.stack([np.frombuffer(caller, np.uint8), np.frombuffer(agent, np.uint8)], axis=1).tobytes()
    client = Client()
    sid = f"audiohook-{client.id}"
    schemas = httpx.get(f"{server.http}/schemas/messages.json").json()

    async def run():
        seen: list = []
        async with connect(f"{server.ws}/ws/monitor", additional_headers=server.headers) as mon:
            reader = asyncio.create_task(_reader(mon, seen))
            async with hook(server, client) as h:
                await h.send("open", open_parameters())
                await h.expect("opened")
                for _ in range(200):  # until the monitor lists the session
                    if any(m.get("type") == "session_started" and m["session"]["session_id"] == sid
                           for m in unbatched(seen)):
                        break
                    await asyncio.sleep(0.05)
                await mon.send(json.dumps({"type": "subscribe", "session_id": sid}))
                for _ in range(200):
                    if any(m.get("type") == "subscribed" and m.get("session_id") == sid for m in unbatched(seen)):
                        break
                    await asyncio.sleep(0.05)
                await h.audio(stereo[: 2 * second])
                await h.send("paused")  # a secure pause: Genesys stops sending audio
                h.client.position += 3.0
                await h.send("resumed", {"start": "PT2S", "discarded": "PT3S"})
                await h.audio(stereo[2 * second : 3 * second])
                await h.send("discarded", {"start": "PT6S", "discarded": "PT0.5S"})
                h.client.position += 0.5
                await h.audio(stereo[3 * second : 4 * second])
                await h.close()
            for _ in range(400):
                if any(m.get("type") == "session_ended" and m.get("session_id") == sid for m in unbatched(seen)):
                    break
                await asyncio.sleep(0.05)
            reader.cancel()
        return unbatched(seen)

    seen = asyncio.run(run())
    gaps = [{"event": "paused", "position": 2.0, "time": 2.0},
            {"event": "resumed", "position": 5.0, "start": 2.0, "discarded": 3.0, "time": 2.0},
            {"event": "discarded", "position": 6.0, "start": 6.0, "discarded": 0.5, "time": 3.0}]
    assert ended(server, sid)["status"] == "complete"
    kept = [e for e in recorded(server, sid) if e["type"] == "telephony"]
    assert kept == [{"type": "telephony", **gap} for gap in gaps]  # in the recording, in order
    told = [m for m in seen if m.get("type") == "telephony" and m.get("session_id") == sid]
    assert told == [{"type": "telephony", "session_id": sid, **gap} for gap in gaps]  # and to the monitors
    for message in told:
        jsonschema.validate(message, {"$schema": schemas["$schema"], "$defs": schemas["$defs"],
                                      "$ref": schemas["x-endpoints"]["/ws/monitor"]["server"]["telephony"]})
    wav = (server.recordings / sid / "audio-caller.wav").read_bytes()[44:]
    assert len(wav) == 2 * 4 * 8000  # four seconds arrived: the gaps are marked, not filled


def refused_open(server, client: Client | None = None, **signing) -> dict:
    """Open on a connection whose credentials the server refuses: `disconnect`, then the close transaction."""

    async def run():
        async with hook(server, client, **signing) as h:
            await h.send("open", open_parameters())
            disconnect = await h.expect("disconnect")
            await h.close("disconnect")
        return disconnect

    return asyncio.run(run())


@pytest.mark.parametrize(("signing", "says"), [
    ({"api_key": "not-the-key"}, "wrong X-API-KEY"),
    ({"secret": base64.b64encode(b"another secret").decode()}, "does not match"),
    ({"secret": None}, "not signed"),
    ({"created": int(time.time()) - 3600, "expires": int(time.time()) + 3600}, "stale"),
    ({"nonce": ""}, "no nonce"),
    ({"nonce": "short"}, "nonce is shorter"),
    ({"keyid": "someone-else"}, "keyid is not the X-API-KEY"),
    ({"components": ("@authority", "x-api-key")}, "does not cover @request-target"),
])
def test_wrong_credentials_get_disconnect_unauthorized_and_no_session(server, signing, says):
    client = Client()
    disconnect = refused_open(server, client, **signing)
    assert disconnect["seq"] == 1 and disconnect["parameters"]["reason"] == "unauthorized"
    assert says in disconnect["parameters"]["info"]
    assert not (server.recordings / f"audiohook-{client.id}").exists()


def test_a_request_without_x_api_key_is_refused(server):
    client = Client()
    uri = f"{server.ws}/ws/audiohook"
    headers = request_headers(uri, client.id)
    del headers["X-API-KEY"]
    disconnect = refused_open(server, client, headers=headers)
    assert disconnect["parameters"] == {"reason": "unauthorized", "info": "unauthorized: the request has no X-API-KEY header"}


def test_a_replayed_signed_request_is_refused(server):
    client = Client()
    uri = f"{server.ws}/ws/audiohook"
    headers = request_headers(uri, client.id)

    async def first():
        async with hook(server, client, headers=headers) as h:
            await h.send("open", open_parameters(conversation="00000000-0000-0000-0000-000000000000"))  # a probe
            await h.expect("opened")
            await h.close()

    asyncio.run(first())
    disconnect = refused_open(server, Client(client.id), headers=headers)  # the same request again, nonce and all
    assert "nonce was used before" in disconnect["parameters"]["info"]


BAD = {
    "wrong codec": ("open", [{"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000}],
                    "unsupported_encoding"),
    "wrong rate": ("open", [{**STEREO, "rate": 16000}], "unsupported_encoding"),
    "audio before open": ("audio-first", None, "audio_before_start"),
    "oversize frame": ("audio", bytes(64000), "message_too_large"),
    "malformed json": ("text", '{"version": "2", "type": ', "bad_json"),
    "unknown type": ("message", "hangup", "unknown_type"),
    "bad seq": ("seq", None, "bad_message"),
}


async def bad_session(server, how: str, what, code: str) -> tuple[dict, Client]:
    client = Client()
    async with hook(server, client) as h:
        if how == "open":
            await h.send("open", open_parameters(what))
        elif how == "audio-first":
            await h.ws.send(bytes(1600))
        else:
            await h.send("open", open_parameters())
            await h.expect("opened")
            await h.audio(bytes(16000))
            if how == "audio":
                await h.ws.send(what)
            elif how == "text":
                await h.ws.send(what)
            elif how == "message":
                await h.send(what)
            else:
                await h.send("ping", seq=h.client.seq + 3)
        disconnect = await h.expect("disconnect")
        await h.audio(bytes(3200))  # in flight before the client read the disconnect: dropped
        await h.close("error")
    return disconnect, client


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_input_gets_disconnect_with_its_reason_then_closed(server, case):
    disconnect, client = asyncio.run(bad_session(server, *BAD[case]))
    code = BAD[case][2]
    assert disconnect["parameters"]["reason"] == "error" and disconnect["parameters"]["info"].startswith(f"{code}: ")
    folder = server.recordings / f"audiohook-{client.id}"
    if case in ("wrong codec", "wrong rate", "audio before open"):
        assert not folder.exists()  # no session started
    else:
        assert ended(server, folder.name)["status"] == "complete"  # what had arrived is analyzed and kept


def test_bad_sessions_never_affect_another_session(server, voices):
    caller, agent = voices
    stereo = np.stack([np.frombuffer(caller, np.uint8), np.frombuffer(agent, np.uint8)], axis=1).tobytes()
    good = Client()

    async def good_call():
        async with hook(server, good) as h:
            await h.send("open", open_parameters())
            await h.expect("opened")
            for i in range(0, len(stereo), 1600):
                await h.ws.send(h.client.audio(stereo[i : i + 1600], 2))
                await asyncio.sleep(0.005)
            await h.close()

    async def run():
        return await asyncio.gather(good_call(), *(bad_session(server, *BAD[case]) for case in BAD))

    results = asyncio.run(run())
    assert all(d["type"] == "disconnect" for d, _ in results[1:])
    meta = ended(server, f"audiohook-{good.id}")
    assert meta["status"] == "complete" and meta["summary"]["parties"]["caller"]["events"]["segment"] >= 1
    assert round(meta["duration_seconds"] * 8000) == len(caller)


def test_without_an_api_key_audiohook_is_refused(tiny_model_dir, tmp_path):
    s = start_server(tiny_model_dir, tmp_path, token=None)
    try:
        disconnect = refused_open(s)
        assert disconnect["parameters"]["reason"] == "unauthorized"
        assert "not enabled" in disconnect["parameters"]["info"]
    finally:
        s.stop()


def test_the_nonce_ledger_forgets_only_what_can_no_longer_be_replayed():
    from stream.server.audiohook import NonceLedger

    ledger = NonceLedger(keep_seconds=30, limit=3)
    assert ledger.claim("a" * 24, now=100) and not ledger.claim("a" * 24, now=129)  # a replay within the window
    assert ledger.claim("b" * 24, now=110) and ledger.claim("c" * 24, now=120)
    assert not ledger.claim("d" * 24, now=125)  # full: refused rather than a nonce forgotten early
    assert ledger.claim("d" * 24, now=131) and len(ledger) == 3  # "a" expired at 130 and made room


def test_the_signed_authority_may_be_the_public_url_behind_a_proxy():
    from stream.server.audiohook import signed_request

    scope = {"type": "websocket", "path": "/ws/audiohook", "raw_path": b"/ws/audiohook", "query_string": b"a=1",
             "headers": [(b"host", b"10.0.0.5:7860"), (b"x-api-key", b"k")], "scheme": "ws"}
    request = signed_request(scope, "wss://Emostream.Example.com")
    assert request.authorities == ("10.0.0.5:7860", "emostream.example.com") and request.target == "/ws/audiohook?a=1"
    assert request.headers["x-api-key"] == ["k"] and request.method == "GET"


def test_the_audiohook_options_are_checked_and_never_printed(monkeypatch):
    from models.errors import ConfigError
    from stream.cli.main import build_parser
    from stream.cli.options import shown_default
    from stream.server.settings import ServerSettings

    monkeypatch.setenv("EMOSTREAM_AUDIOHOOK_API_KEY", "key-from-env")
    monkeypatch.setenv("EMOSTREAM_AUDIOHOOK_CLIENT_SECRET", "c2VjcmV0LWZyb20tZW52")
    args = build_parser().parse_args(["serve"])
    assert (args.audiohook_api_key, args.audiohook_client_secret) == ("key-from-env", "c2VjcmV0LWZyb20tZW52")
    assert shown_default("audiohook_api_key", "k") == shown_default("audiohook_client_secret", "s") == "***"
    with pytest.raises(ConfigError, match="needs --audiohook-api-key"):
        ServerSettings(audiohook_client_secret="c2VjcmV0").check()
    with pytest.raises(ConfigError, match="not base64"):
        ServerSettings(audiohook_api_key="k", audiohook_client_secret="not base64!").check()
