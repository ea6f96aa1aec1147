"""Issue 17, findings 7, 8, 9 and 12 against the real server: what a socket may send and hold.

- 7: Twilio `mark` / `dtmf` strings are capped and paced before they are copied to monitors.
- 8: a lone surrogate (JSON admits `\\ud800`) anywhere a client can put one gives a protocol
  error, never 1011, and never ends another session's analysis.
- 9: a monitor's first snapshot does not count against --max-queue-bytes.
- 12: sockets that have not started a session are counted, on every endpoint together.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server_harness import read_all, start_server
from test_server import subscribe_on_start

TOKEN = "s3cret"
SURROGATE = "\\ud800"  # as it travels in JSON text: an escape Python decodes to a lone surrogate


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wire")
    s = start_server(tiny_model_dir, tmp, "--max-queue-bytes", "20000", "--max-unstarted", "3",
                     "--start-timeout", "5", "--measure-processes", "0", token=TOKEN)
    yield s
    s.stop()


def auth() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


def twilio_messages(sid: str, params: dict | None = None, raw_params: str | None = None) -> list[str]:
    """connected + start for a one-track call; `raw_params` is spliced in as JSON text (for escapes)."""
    start = {"event": "start", "sequenceNumber": "1", "streamSid": sid,
             "start": {"accountSid": "AC1", "streamSid": sid, "callSid": "CA1", "tracks": ["inbound"],
                       "customParameters": params or {},
                       "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    text = json.dumps(start).replace("\\\\ud800", "\\ud800")  # json.dumps escaped the escape: undo it
    if raw_params is not None:
        text = text.replace('"customParameters": {}', f'"customParameters": {raw_params}')
    return [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}), text]


def media(sid: str, seq: int, n_bytes: int = 160) -> str:
    payload = base64.b64encode(bytes([0xFF]) * n_bytes).decode()  # μ-law silence
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": sid,
                       "media": {"track": "inbound", "chunk": str(seq), "timestamp": str(seq * 20),
                                 "payload": payload}})


def mark(sid: str, seq: int, name_json: str) -> str:
    return ('{"event": "mark", "sequenceNumber": "%d", "streamSid": "%s", "mark": {"name": %s}}'
            % (seq, sid, name_json))


def stop(sid: str, seq: int) -> str:
    return json.dumps({"event": "stop", "sequenceNumber": str(seq), "streamSid": sid})


async def twilio_call(srv, messages: list[str], token: str = TOKEN) -> int | None:
    async with connect(f"{srv.ws}/ws/twilio?token={token}") as tw:
        try:
            for m in messages:
                await tw.send(m)
        except ConnectionClosed:
            pass
        await asyncio.wait_for(tw.wait_closed(), 30)
        return tw.close_code


async def watched_call(srv, sid: str, messages: list[str]) -> tuple[int | None, list[dict], int | None]:
    """A Twilio call (`messages` from its connected and start on) watched by a monitor that subscribes
    to it as it starts: (the call's close code, what the monitor got, the monitor's close code)."""
    async with connect(f"{srv.ws}/ws/monitor", additional_headers=auth()) as mon:
        seen: list = []
        reader = asyncio.create_task(read_all(mon, seen))
        async with connect(f"{srv.ws}/ws/twilio?token={TOKEN}") as tw:
            for m in messages[:2]:
                await tw.send(m)
            await subscribe_on_start(mon, seen, f"twilio-{sid}")
            try:
                for m in messages[2:]:
                    await tw.send(m)
            except ConnectionClosed:
                pass
            await asyncio.wait_for(tw.wait_closed(), 30)
        for _ in range(300):
            if any(m["type"] == "session_ended" for m in seen):
                break
            await asyncio.sleep(0.1)
        closed = mon.close_code
        reader.cancel()
        return tw.close_code, seen, closed


def status_of(srv, sid: str) -> str:
    return json.loads((srv.recordings / sid / "session.json").read_text())["status"]


# -- finding 8: lone surrogates ------------------------------------------------------------------


def test_lone_surrogate_in_a_start_field_name_is_a_protocol_error(server):
    async def go():
        async with connect(f"{server.ws}/ws/stream", additional_headers=auth()) as ws:
            await ws.send('{"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "%s": 1}' % SURROGATE)
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"type": "stop"}))
            got: list = []
            await asyncio.wait_for(read_all(ws, got), 30)
            return answer, ready, got, ws.close_code

    answer, ready, got, code = asyncio.run(go())
    assert answer["code"] == "bad_start" and "\\ud800" in answer["message"]
    assert ready["type"] == "ready" and got[-1]["type"] == "summary" and code == 1000


def test_lone_surrogates_in_twilio_sid_and_token_are_refused_not_internal(server):
    sid = "MZ" + SURROGATE
    code_sid = asyncio.run(twilio_call(server, twilio_messages(sid)))
    assert code_sid == 1008  # bad_message before a session: Twilio gets a policy close, not 1011

    async def with_token():  # no credential on the handshake: the <Parameter> is checked
        async with connect(f"{server.ws}/ws/twilio") as tw:
            for m in twilio_messages("MZtok", raw_params='{"token": "%s"}' % SURROGATE):
                await tw.send(m)
            await asyncio.wait_for(tw.wait_closed(), 30)
            return tw.close_code, tw.close_reason

    code, reason = asyncio.run(with_token())
    assert code == 1008 and reason in ("bad_message", "unauthorized")
    assert not (server.recordings / "twilio-MZtok").exists()


def test_a_mark_with_a_lone_surrogate_does_not_end_the_call_while_a_monitor_listens(server):
    sid = "MZsurrogatemark"
    messages = twilio_messages(sid) + [media(sid, 2), mark(sid, 3, '"%s"' % SURROGATE),
                                       mark(sid, 4, '"fine"'), media(sid, 5), stop(sid, 6)]
    code, seen, monitor_closed = asyncio.run(watched_call(server, sid, messages))
    assert seen[0]["type"] == "snapshot" and code == 1000 and monitor_closed is None
    marks = [m for m in seen if m.get("type") == "telephony"]
    assert [m["name"] for m in marks] == ["fine"]
    assert status_of(server, "twilio-MZsurrogatemark") == "complete"


# -- finding 7: marks and DTMF are capped and paced ----------------------------------------------


def test_long_and_countless_marks_are_not_copied_to_monitors(server):
    sid = "MZmarks"
    messages = twilio_messages(sid) + [mark(sid, 2, json.dumps("x" * 100_000))]
    messages += [mark(sid, 3 + i, json.dumps(f"m{i}")) for i in range(200)]
    messages.append(stop(sid, 300))
    code, seen, _ = asyncio.run(watched_call(server, sid, messages))
    marks = [m for m in seen if m.get("type") == "telephony"]  # the monitor subscribed to the call
    assert code == 1000
    assert all(len(m["name"]) <= 64 for m in marks)
    assert 0 < len(marks) <= 40  # a burst passes; a flood without audio does not


# -- finding 9: a monitor's snapshot is outside the byte budget ----------------------------------


def test_a_monitor_snapshot_with_fat_metadata_is_delivered(server):
    fat = {"notes": "n" * 7000}  # just under the 8 kB metadata cap, times three sessions > 20 kB

    async def go():
        opened = []
        for i in range(3):
            ws = await connect(f"{server.ws}/ws/stream", additional_headers=auth())
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
                                      "metadata": fat}))
            assert json.loads(await ws.recv())["type"] == "ready"
            opened.append(ws)
        try:
            async with connect(f"{server.ws}/ws/monitor", additional_headers=auth()) as mon:
                snapshot = json.loads(await asyncio.wait_for(mon.recv(), 10))
                await opened[0].send(np.zeros(1600, np.int16).tobytes())
                await asyncio.sleep(1.0)
                return snapshot, mon.close_code
        finally:
            for ws in opened:
                await ws.send(json.dumps({"type": "stop"}))
                await asyncio.wait_for(read_all(ws, []), 30)

    snapshot, closed = asyncio.run(go())
    assert snapshot["type"] == "snapshot" and len(snapshot["sessions"]) >= 3
    assert closed is None


# -- finding 12: sockets that never start are bounded --------------------------------------------


def test_sockets_without_a_session_are_capped_across_endpoints(server):
    async def go():
        idle = [await connect(f"{server.ws}/ws/twilio"), await connect(f"{server.ws}/ws/twilio"),
                await connect(f"{server.ws}/ws/stream", additional_headers=auth())]
        try:
            extra = await connect(f"{server.ws}/ws/twilio")
            await asyncio.wait_for(extra.wait_closed(), 10)
            refused = extra.close_code, extra.close_reason
        finally:
            for ws in idle:
                await ws.close()
        await asyncio.sleep(0.5)  # their slots are free again
        async with connect(f"{server.ws}/ws/stream", additional_headers=auth()) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(read_all(ws, []), 30)
        return refused, ready

    (code, reason), ready = asyncio.run(go())
    assert code == 1013 and reason == "server_full"
    assert ready["type"] == "ready"
