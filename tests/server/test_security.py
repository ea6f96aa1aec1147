"""The review's findings (issue 12, 1-14) against the real server: each test reproduces one finding.

One server runs with small limits so that each bound is reached quickly; findings that need
other settings start their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import stat
import subprocess
import time

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from audio_fixtures import write_wav16
from server_harness import read_all, start_server

TOKEN = "s3cret"
TWILIO_AUTH = "twilio-auth-token-123"
START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secure")
    (tmp / "audio").mkdir()
    s = start_server(
        tiny_model_dir, tmp, "--audio-root", str(tmp / "audio"), "--twilio-auth-token", TWILIO_AUTH,
        "--start-timeout", "2", "--max-queue-bytes", "65536", "--max-upload-bytes", "3000000",
        "--max-predict-seconds", "30", "--max-predicts", "1", "--max-sessions", "3",
        "--resume-seconds", "0",  # (sockets these tests drop must free their slot at once, not wait to be resumed)
        token=TOKEN,
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pcm(speech_silence_speech):
    return (np.clip(speech_silence_speech.samples, -1, 1) * 32767).astype(np.int16)


def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def small_socket(port: int) -> socket.socket:
    """A connected TCP socket with a tiny receive buffer: a client that reads slowly, for real."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def run_session(srv, pcm, start: dict, headers=None) -> tuple[list, int | None]:
    got: list = []
    async with connect(f"{srv.ws}/ws/stream", additional_headers=headers or auth()) as ws:
        reader = asyncio.create_task(read_all(ws, got))
        try:
            await ws.send(json.dumps({**START, **start}))
            data = pcm.tobytes()
            for i in range(0, len(data), 6400):
                await ws.send(data[i : i + 6400])
            await ws.send(json.dumps({"type": "stop"}))
        except ConnectionClosed:  # the server ended the session early; its messages are still read
            pass
        await asyncio.wait_for(reader, 120)
        return got, ws.close_code


def twilio_start(sid: str, token: str | None = None) -> list[str]:
    params = {"token": token} if token else {}
    return [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid,
                        "start": {"accountSid": "AC1", "streamSid": sid, "callSid": "CA1", "tracks": ["inbound"],
                                  "customParameters": params,
                                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}),
            json.dumps({"event": "stop", "sequenceNumber": "2", "streamSid": sid})]


# -- finding 1: Twilio ---------------------------------------------------------------------------


def test_twilio_signature_authenticates_and_a_wrong_one_is_refused(server):
    from twilio.request_validator import RequestValidator

    url = f"{server.ws}/ws/twilio"
    good = RequestValidator(TWILIO_AUTH).compute_signature(url, {})

    async def call(signature: str, sid: str):
        async with connect(url, additional_headers={"X-Twilio-Signature": signature}) as tw:
            for m in twilio_start(sid):  # no token parameter: the signature is the credential
                await tw.send(m)
            await tw.wait_closed()
            return tw.close_code

    assert asyncio.run(call(good, "MZsigned")) == 1000
    assert json.loads((server.recordings / "twilio-MZsigned" / "session.json").read_text())["status"] == "complete"
    with pytest.raises(Exception) as refused:  # a forged signature never reaches the handler
        asyncio.run(call("Zm9yZ2Vk", "MZforged"))
    assert "401" in str(refused.value)  # a wrong signature is a wrong credential
    assert not (server.recordings / "twilio-MZforged").exists()


def test_twilio_socket_without_start_is_closed_in_time(server):
    async def idle():
        async with connect(f"{server.ws}/ws/twilio") as tw:
            opened = time.monotonic()
            await asyncio.wait_for(tw.wait_closed(), 30)
            return tw.close_code, time.monotonic() - opened

    code, waited = asyncio.run(idle())
    assert code == 1008 and waited < 10


def test_twilio_socket_cannot_send_much_before_start(server):
    async def chatter():
        async with connect(f"{server.ws}/ws/twilio") as tw:
            sent = 0
            try:
                for i in range(300):
                    await tw.send(json.dumps({"event": f"{i}-" + "x" * 100_000}))
                    sent += 1
            except ConnectionClosed:
                pass
            await asyncio.wait_for(tw.wait_closed(), 30)
            return tw.close_code, tw.close_reason

    # The server reads a few messages, then closes (before the fix it kept every name and the socket)
    assert asyncio.run(chatter()) == (1008, "too_many_messages")


# -- finding 2: a full disk ------------------------------------------------------------------------


@pytest.fixture()
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_ends_sessions_with_an_error_and_frees_their_slots(tiny_model_dir, tmp_path, tiny_disk, pcm):
    srv = start_server(tiny_model_dir, tmp_path, "--recordings", str(tiny_disk / "rec"), "--max-sessions", "2",
                       token=None)
    long_audio = np.tile(pcm, 1 + int(16000 * 40 / len(pcm)))  # 40 s: more than 1 MiB of int16

    async def both():
        return await asyncio.gather(*(run_session(srv, long_audio, {"session_id": f"full-{i}"}) for i in range(2)))

    try:
        results = asyncio.run(both())
        for got, code in results:
            errors = [m["code"] for m in got if m["type"] == "error"]
            assert code == 1011 and errors == ["recording_failed"], (code, errors)
        assert httpx.get(f"{srv.http}/healthz").json()["sessions"] == 0
        folders = [f for f in (tiny_disk / "rec").iterdir() if f.is_dir()]  # (beside them: the catalog's files)
        assert folders  # at least the first session recorded until the disk was full
        for folder in folders:  # a session the full disk refused at start left no folder behind
            meta = json.loads((folder / "session.json").read_text())
            assert meta["status"] == "interrupted" and "No space left" in meta["error"]
            (folder / "audio.wav").unlink()  # the operator frees space
        assert not list((tiny_disk / "rec").rglob("*.tmp"))
        got, code = asyncio.run(run_session(srv, pcm[:16000], {"session_id": "after"}))
        assert code == 1000 and got[0]["type"] == "ready"
    finally:
        srv.stop()


# -- finding 3: Origin and Host --------------------------------------------------------------------


def test_foreign_origins_and_hosts_are_refused(server):
    async def monitor(origin: str):
        async with connect(f"{server.ws}/ws/monitor", additional_headers={**auth(), "Origin": origin}) as ws:
            return json.loads(await ws.recv())["type"]

    with pytest.raises(Exception):
        asyncio.run(monitor("http://evil.example"))
    assert asyncio.run(monitor(f"http://127.0.0.1:{server.port}")) == "snapshot"  # the dashboard's own page
    rebound = httpx.get(f"{server.http}/api/sessions", headers={**auth(), "Host": "rebind.attacker.example"})
    assert rebound.status_code == 421
    assert httpx.get(f"{server.http}/api/sessions", headers={**auth(), "Host": f"localhost:{server.port}"}).status_code == 200
    cross = httpx.get(f"{server.http}/api/sessions", headers={**auth(), "Origin": "http://evil.example"})
    assert cross.status_code == 403


# -- finding 4: /api/predict limits and priority ----------------------------------------------------


def test_predict_refuses_large_uploads_long_audio_and_too_many_at_once(server, speech_silence_speech, tmp_path):
    big = tmp_path / "big.wav"
    write_wav16(big, np.zeros(16000 * 100, np.float32))  # 3.2 MB: over the 3 MB limit
    with open(big, "rb") as f:
        r = httpx.post(f"{server.http}/api/predict", headers=auth(), files={"file": ("big.wav", f)}, timeout=60)
    assert r.status_code == 413 and r.json()["code"] == "too_large"

    def chunked():  # no Content-Length: the limit holds while the body streams in
        yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        with open(big, "rb") as f:
            while block := f.read(65536):
                yield block
        yield b"\r\n--b0undary--\r\n"

    r = httpx.post(f"{server.http}/api/predict", content=chunked(), timeout=60,
                   headers={**auth(), "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert r.status_code == 413
    long = write_wav16(tmp_path / "long.wav", np.tile(speech_silence_speech.samples, 20)[: 16000 * 40] * 0.5)
    with open(long, "rb") as f:
        r = httpx.post(f"{server.http}/api/predict", headers=auth(), files={"file": ("long.wav", f)}, timeout=60)
    assert r.status_code == 413 and r.json()["code"] == "too_long"

    clip = write_wav16(tmp_path / "clip.wav", np.tile(speech_silence_speech.samples, 3)[: 16000 * 25])

    async def three():
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*(
                client.post(f"{server.http}/api/predict", headers=auth(), files={"file": ("clip.wav", clip.read_bytes())})
                for _ in range(3)))

    statuses = sorted(r.status_code for r in asyncio.run(three()))
    assert statuses[0] == 200 and statuses[-1] == 429, statuses


def test_scheduler_runs_live_jobs_before_background_ones(scorer):
    from stream.server.scheduler import BACKGROUND, BatchScheduler

    class Job:
        def __init__(self, seconds):
            self.audio = np.zeros(int(16000 * seconds), np.float32)

    async def run():
        scheduler = BatchScheduler(scorer, max_batch=4, max_wait=0.0)
        order: list[str] = []
        background = [scheduler.submit(Job(2.0), priority=BACKGROUND) for _ in range(3)]
        live = [scheduler.submit(Job(0.5)) for _ in range(3)]
        for f in background:
            f.add_done_callback(lambda _: order.append("background"))
        for f in live:
            f.add_done_callback(lambda _: order.append("live"))
        assert not scheduler.saturated and scheduler.depth == 3  # background jobs never refuse live ones
        scheduler.start()
        await asyncio.gather(*background, *live)
        await scheduler.stop()
        return order

    assert asyncio.run(run()) == ["live"] * 3 + ["background"] * 3


# -- findings 5, 12: values that break readers or recorders ----------------------------------------


def test_deep_or_unrecordable_start_values_get_bad_start(server, pcm):
    async def starts():
        got: list = []
        async with connect(f"{server.ws}/ws/stream", additional_headers=auth()) as ws:
            reader = asyncio.create_task(read_all(ws, got))
            for text in ('{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","metadata":{"x":'
                         + "[" * 200 + "1" + "]" * 200 + "}}",
                         '{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","metadata":{"x":1e400}}',
                         '{"type":"start","sample_rate":16000,"encoding":"pcm_s16le","context":"\\ud800"}'):
                await ws.send(text)
            await ws.send(json.dumps({**START, "session_id": "clean-after"}))
            await ws.send(pcm[:16000].tobytes())
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(reader, 60)
            return got, ws.close_code

    got, code = asyncio.run(starts())
    assert [m["code"] for m in got if m["type"] == "error"] == ["bad_start"] * 3
    assert code == 1000 and got[-1]["type"] == "summary"
    assert httpx.get(f"{server.http}/api/sessions", headers=auth()).status_code == 200


def test_sessions_recorded_with_deep_metadata_stay_listable(server):
    folder = server.recordings / "deep-old"  # recorded before depth was bounded at start
    folder.mkdir()
    (folder / "session.json").write_text('{"session_id": "deep-old", "status": "complete", "metadata": {"x": '
                                         + "[" * 960 + "]" * 960 + "}}")
    listed = httpx.get(f"{server.http}/api/sessions", headers=auth())
    assert listed.status_code == 200  # it answered 500 (RecursionError) for good
    for item in listed.json()["sessions"]:
        if item["session_id"] == "deep-old":
            assert "dropped" in item["metadata"]
    assert httpx.get(f"{server.http}/api/sessions/deep-old", headers=auth()).status_code in (200, 404)


# -- finding 6: playlists ------------------------------------------------------------------------


def test_uploaded_playlist_cannot_read_other_files(server, speech_silence_speech, tmp_path):
    secret = write_wav16(tmp_path / "secret.wav", speech_silence_speech.samples)
    flac = tmp_path / "secret.flac"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(secret), str(flac)], check=True)
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:4.0,\nfile://{flac}\n#EXT-X-ENDLIST\n"
    r = httpx.post(f"{server.http}/api/predict", headers=auth(), files={"file": ("x.m3u8", playlist.encode())}, timeout=60)
    assert r.status_code == 422 and r.json()["code"] == "unsupported_format"


# -- finding 7: --max-sessions at start ------------------------------------------------------------


def test_max_sessions_is_checked_at_start(server):
    async def many():
        socks = [await connect(f"{server.ws}/ws/stream", additional_headers=auth()) for _ in range(5)]
        answers = []
        for ws in socks:
            await ws.send(json.dumps(START))
            try:
                answers.append(json.loads(await ws.recv()))
            except ConnectionClosed:
                answers.append({"type": "closed"})
        codes = []
        for ws in socks:
            await ws.close()
            codes.append(ws.close_code)
        return answers

    answers = asyncio.run(many())
    assert [a["type"] for a in answers].count("ready") == 3
    refused = [a for a in answers if a["type"] == "error"]
    assert len(refused) == 2 and {a["code"] for a in refused} == {"server_full"}


# -- findings 8, 9: clients that stop reading --------------------------------------------------------


def raw_websocket(port: int, path: str) -> socket.socket:
    """A WebSocket handshake by hand on a small-buffered socket, which then reads nothing until told."""
    sock = small_socket(port)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the TCP connection (or `timeout` passes: AssertionError)."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError(f"the server kept the socket open ({len(data)} bytes read)") from None
    return bytes(data)


def test_monitor_that_stops_reading_is_closed(server, pcm):
    mon = raw_websocket(server.port, "/ws/monitor")

    async def flood():
        for _ in range(450):  # each start is announced to monitors with its ~10 KB of metadata and context
            await run_session(server, pcm[:1600], {"metadata": {"note": "m" * 7000}, "context": "c" * 2000})

    asyncio.run(flood())  # ~5 MB: more than the TCP buffers and --max-queue-bytes hold
    data = read_until_closed(mon, 30)  # before the fix: still open, silently dropping everything
    mon.close()
    # It got what fitted before it fell behind, then the close: not every announcement (the server
    # stopped queueing for it), and not by a ping timeout long after (the flood takes seconds).
    assert 0 < data.count(b'"session_started"') < 450


def test_errors_to_a_client_that_does_not_read_stay_small(server):
    async def bad_starts():
        sock = small_socket(server.port)
        got: list = []
        async with connect(f"{server.ws}/ws/stream", additional_headers=auth(), sock=sock, max_queue=1) as ws:
            try:
                for _ in range(30):
                    await ws.send(json.dumps({**START, "encoding": "e" * 500_000}))
            except ConnectionClosed:
                pass
            await asyncio.wait_for(read_all(ws, got), 60)
        return got

    got = asyncio.run(bad_starts())
    errors = [m for m in got if m["type"] == "error"]
    assert errors and all(len(m["message"]) <= 500 for m in errors)


# -- finding 10: private recordings and an access log -------------------------------------------------


def test_recordings_are_private_and_downloads_are_logged(server, pcm):
    got, code = asyncio.run(run_session(server, pcm[:16000], {"session_id": "private-1"}))
    assert code == 1000
    folder = server.recordings / "private-1"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("audio.wav", "events.jsonl", "session.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert httpx.get(f"{server.http}/api/sessions/private-1/audio", headers=auth()).status_code == 200
    log = [json.loads(l) for l in (server.recordings / ".access.jsonl").read_text().splitlines()]
    mine = [e for e in log if e["session_id"] == "private-1"]
    assert mine[-1]["action"] == "download" and mine[-1]["by"] == "token" and mine[-1]["file"] == "audio.wav"
    assert mine[-1]["client"] == "127.0.0.1"
    assert stat.S_IMODE((server.recordings / ".access.jsonl").stat().st_mode) == 0o600


# -- finding 11: a refused start can be corrected ------------------------------------------------------


def test_session_in_use_then_a_corrected_start_works(server, pcm):
    asyncio.run(run_session(server, pcm[:8000], {"session_id": "taken"}))

    async def retry():
        got: list = []
        async with connect(f"{server.ws}/ws/stream", additional_headers=auth()) as ws:
            reader = asyncio.create_task(read_all(ws, got))
            await ws.send(json.dumps({**START, "session_id": "taken"}))
            await ws.send(json.dumps({**START, "session_id": "twilio-MZfake"}))
            await ws.send(json.dumps({**START, "session_id": "untaken"}))
            await ws.send(pcm[:16000].tobytes())
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(reader, 60)
            return got, ws.close_code

    got, code = asyncio.run(retry())
    assert [m["code"] for m in got if m["type"] == "error"] == ["session_in_use", "bad_start"]
    assert code == 1000 and got[-1]["type"] == "summary" and got[-1]["session_id"] == "untaken"

    async def twilio_call(messages):
        async with connect(f"{server.ws}/ws/twilio") as tw:
            try:
                for m in messages:
                    await tw.send(m)
            except ConnectionClosed:
                pass
            await tw.wait_closed()
            return tw.close_code

    assert asyncio.run(twilio_call(twilio_start("MZdup", TOKEN))) == 1000
    # The same stream SID again: refused with a policy close, not left stuck until media fails with 1011.
    assert asyncio.run(twilio_call(twilio_start("MZdup", TOKEN))) == 1008


# -- finding 13: /api/predict bad input -------------------------------------------------------------


def test_predict_bad_input_gets_400_not_500(server, speech_silence_speech, tmp_path):
    clip = write_wav16(tmp_path / "c.wav", speech_silence_speech.samples)
    cases = [dict(json=[1, 2]), dict(json={"audio_path": 5}), dict(json={"audio_path": ["a"]}),
             dict(json={"audio_path": "x", "context": 3})]
    for case in cases:
        r = httpx.post(f"{server.http}/api/predict", headers=auth(), timeout=60, **case)
        assert r.status_code == 400 and r.json()["type"] == "error", (case, r.status_code, r.text)
    for name in (".", "..", "../../etc/passwd"):
        r = httpx.post(f"{server.http}/api/predict", headers=auth(), timeout=120,
                       files={"file": (name, clip.read_bytes(), "audio/wav")})
        assert r.status_code == 200, (name, r.status_code, r.text)


# -- finding 14: tokens in URLs, /healthz, headers ---------------------------------------------------


def test_query_token_only_on_websockets_healthz_minimal_and_dashboard_headers(server):
    assert httpx.get(f"{server.http}/api/sessions?token={TOKEN}").status_code == 401
    assert httpx.get(f"{server.http}/healthz").json() == {"status": "ok"}
    full = httpx.get(f"{server.http}/healthz", headers=auth()).json()
    assert full["status"] == "ok" and "model_id" in full and "sessions" in full
    page = httpx.get(f"{server.http}/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
