"""Privacy and access (issue 12, part 3): rights per credential, deletion, record modes, retention, TLS."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server_harness import free_port, start_server
from tls_certs import make_tls

START = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}
STREAM, WATCH, ADMIN = "stream-secret", "watch-secret", "admin-secret"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def pcm(speech_silence_speech):
    return (np.clip(speech_silence_speech.samples, -1, 1) * 32767).astype(np.int16)


async def _session(ws_url: str, pcm, session_id: str, headers: dict, ssl_context=None) -> tuple[list, int | None]:
    got: list = []
    async with connect(f"{ws_url}/ws/stream", additional_headers=headers, ssl=ssl_context) as ws:
        await ws.send(json.dumps({**START, "session_id": session_id}))
        data = pcm.tobytes()
        for i in range(0, len(data), 6400):
            await ws.send(data[i : i + 6400])
        await ws.send(json.dumps({"type": "stop"}))
        try:
            async for raw in ws:
                got.append(json.loads(raw))
        except ConnectionClosed:
            pass
        return got, ws.close_code


def session(srv, pcm, session_id: str, token: str | None = None, **kw) -> tuple[list, int | None]:
    return asyncio.run(_session(srv.ws, pcm, session_id, bearer(token) if token else {}, **kw))


def ws_refused(srv, path: str, token: str) -> int | None:
    async def go():
        try:
            async with connect(f"{srv.ws}{path}", additional_headers=bearer(token)) as ws:
                await ws.recv()
                return None
        except InvalidStatus as exc:
            return exc.response.status_code
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    return asyncio.run(go())


@pytest.fixture(scope="module")
def roles(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roles")
    s = start_server(tiny_model_dir, tmp, "--stream-token", STREAM, "--watch-token", WATCH, "--admin-token", ADMIN,
                     token=None)
    yield s
    s.stop()


def test_each_credential_has_only_its_rights(roles, pcm):
    got, code = session(roles, pcm[:16000], "by-streamer", STREAM)
    assert code == 1000 and got[0]["type"] == "ready"
    # The sender of audio cannot read what was analyzed, nor delete it.
    assert httpx.get(f"{roles.http}/api/sessions", headers=bearer(STREAM)).status_code == 403
    assert httpx.get(f"{roles.http}/api/sessions/by-streamer/audio", headers=bearer(STREAM)).status_code == 403
    assert ws_refused(roles, "/ws/monitor", STREAM) in (403, 1008)
    # The watcher reads sessions and recordings and the live feed, but sends no audio and deletes nothing.
    assert httpx.get(f"{roles.http}/api/sessions/by-streamer/audio", headers=bearer(WATCH)).status_code == 200
    assert httpx.get(f"{roles.http}/metrics", headers=bearer(WATCH)).status_code == 200
    assert ws_refused(roles, "/ws/stream", WATCH) in (403, 1008)
    assert httpx.post(f"{roles.http}/api/predict", headers=bearer(WATCH), json={}).status_code == 403
    assert httpx.delete(f"{roles.http}/api/sessions/by-streamer", headers=bearer(WATCH)).status_code == 403
    assert httpx.delete(f"{roles.http}/api/sessions/by-streamer", headers=bearer(STREAM)).status_code == 403
    # Nobody without a credential gets anything but the minimal health answer.
    assert httpx.get(f"{roles.http}/api/sessions").status_code == 401
    assert httpx.get(f"{roles.http}/healthz").json() == {"status": "ok"}
    # The admin deletes; the deletion is logged with who did it.
    gone = httpx.delete(f"{roles.http}/api/sessions/by-streamer", headers=bearer(ADMIN))
    assert gone.status_code == 200 and gone.json() == {"deleted": "by-streamer"}
    assert not (roles.recordings / "by-streamer").exists()
    assert httpx.get(f"{roles.http}/api/sessions/by-streamer", headers=bearer(ADMIN)).status_code == 404
    assert httpx.delete(f"{roles.http}/api/sessions/by-streamer", headers=bearer(ADMIN)).status_code == 404
    log = [json.loads(l) for l in (roles.recordings / ".access.jsonl").read_text().splitlines()]
    assert [(e["action"], e["session_id"], e["by"]) for e in log] == [
        ("download", "by-streamer", "watch_token"), ("delete", "by-streamer", "admin_token")]


def test_a_live_session_cannot_be_deleted(roles, pcm):
    async def go():
        async with connect(f"{roles.ws}/ws/stream", additional_headers=bearer(STREAM)) as ws:
            await ws.send(json.dumps({**START, "session_id": "still-live"}))
            await ws.recv()
            async with httpx.AsyncClient() as client:
                r = await client.delete(f"{roles.http}/api/sessions/still-live", headers=bearer(ADMIN))
            await ws.send(json.dumps({"type": "stop"}))
            return r.status_code

    assert asyncio.run(go()) == 409
    assert (roles.recordings / "still-live" / "session.json").exists()


def test_the_single_token_keeps_all_rights(tiny_model_dir, tmp_path, pcm):
    srv = start_server(tiny_model_dir, tmp_path, "--record", "events")
    try:
        got, code = session(srv, pcm[:16000], "all-rights", srv.token)
        assert code == 1000
        assert httpx.get(f"{srv.http}/api/sessions/all-rights", headers=srv.headers).json()["record"] == "events"
        # --record events: the events are kept, the audio never touches the disk.
        assert not (srv.recordings / "all-rights" / "audio.wav").exists()
        assert (srv.recordings / "all-rights" / "events.jsonl").read_text().count("\n") == \
            len([m for m in got if m["type"] not in ("ready", "summary")])
        assert httpx.get(f"{srv.http}/api/sessions/all-rights/audio", headers=srv.headers).status_code == 404
        assert httpx.delete(f"{srv.http}/api/sessions/all-rights", headers=srv.headers).status_code == 200
    finally:
        srv.stop()


def test_record_none_keeps_nothing(tiny_model_dir, tmp_path, pcm):
    srv = start_server(tiny_model_dir, tmp_path, "--record", "none", token=None)
    try:
        got, code = session(srv, pcm[:16000], "unrecorded")
        assert code == 1000 and got[-1]["type"] == "summary" and any(m["type"] == "info" for m in got)
        assert not (srv.recordings / "unrecorded").exists()
        assert httpx.get(f"{srv.http}/api/sessions").json()["sessions"] == []
    finally:
        srv.stop()


def _old_session(root, sid: str, ended: datetime) -> None:
    folder = root / sid
    folder.mkdir(parents=True)
    meta = {"session_id": sid, "status": "complete", "sample_rate": 16000, "sample_format": "int16",
            "started_at": (ended - timedelta(minutes=5)).isoformat(), "ended_at": ended.isoformat()}
    (folder / "session.json").write_text(json.dumps(meta))
    (folder / "events.jsonl").write_text("")


def test_retention_deletes_old_recordings_on_start_and_periodically(tiny_model_dir, tmp_path, pcm):
    now = datetime.now(timezone.utc)
    _old_session(tmp_path / "recordings", "last-week", now - timedelta(days=7))
    _old_session(tmp_path / "recordings", "this-hour", now - timedelta(minutes=10))
    srv = start_server(tiny_model_dir, tmp_path, "--retention-days", "1", token=None)
    try:
        assert not (srv.recordings / "last-week").exists()  # deleted on start
        assert (srv.recordings / "this-hour").exists()
    finally:
        srv.stop()
    # A short retention: a new session disappears by itself once it is that old.
    srv = start_server(tiny_model_dir, tmp_path, "--retention-hours", str(3 / 3600), token=None)
    try:
        assert not (srv.recordings / "this-hour").exists()
        got, code = session(srv, pcm[:16000], "short-lived")
        assert code == 1000 and (srv.recordings / "short-lived").exists()
        deadline = time.monotonic() + 20
        while (srv.recordings / "short-lived").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not (srv.recordings / "short-lived").exists()
    finally:
        srv.stop()
    log = [json.loads(l) for l in (srv.recordings / ".access.jsonl").read_text().splitlines()]
    assert [(e["action"], e["session_id"], e["by"]) for e in log] == [
        ("delete", "last-week", "retention"), ("delete", "this-hour", "retention"),
        ("delete", "short-lived", "retention")]


def test_server_over_tls_with_a_self_signed_certificate(tiny_model_dir, tmp_path, pcm):
    tls = make_tls(tmp_path / "tls")
    srv = start_server(tiny_model_dir, tmp_path, "--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key),
                       token=None, scheme="https")
    try:
        context = ssl.create_default_context(cafile=str(tls.ca))
        r = httpx.get(f"https://127.0.0.1:{srv.port}/healthz", verify=context)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        with pytest.raises(httpx.ConnectError):  # plain trust: the self-signed CA is not known
            httpx.get(f"https://127.0.0.1:{srv.port}/healthz")
        got, code = asyncio.run(_session(f"wss://127.0.0.1:{srv.port}", pcm[:16000], "over-tls", {},
                                         ssl_context=context))
        assert code == 1000 and got[0]["type"] == "ready" and got[-1]["type"] == "summary"
    finally:
        srv.stop()


class TlsBroker:
    """mosquitto with only a TLS listener, a password file and no anonymous access."""

    def __init__(self, folder, tls, user: str, password: str):
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        passwords = folder / "passwords"
        subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-c", "-b", str(passwords),
                        user, password], check=True, capture_output=True)
        os.chmod(passwords, 0o600)
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\ncafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n"
                        f"allow_anonymous false\npassword_file {passwords}\n"
                        f"user {pwd.getpwuid(os.geteuid()).pw_name}\n")
        self.log = folder / "mosquitto.log"
        self.process = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                                        stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start:\n{self.log.read_text()}")

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


def test_mqtts_with_a_ca_file_and_a_password(tiny_model_dir, tmp_path, pcm):
    tls = make_tls(tmp_path / "tls")
    broker = TlsBroker(tmp_path / "broker", tls, "emo", "pa55word")
    sub = subprocess.Popen([shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub", "-h", "127.0.0.1", "-p",
                            str(broker.port), "--cafile", str(tls.ca), "-u", "emo", "-P", "pa55word", "-q", "1",
                            "-t", "secure/#", "-F", "%t %p"], stdout=subprocess.PIPE, text=True)
    srv = None
    try:
        time.sleep(0.5)  # the subscription is made before anything is published
        srv = start_server(tiny_model_dir, tmp_path, "--mqtt", f"mqtts://127.0.0.1:{broker.port}", "--mqtt-prefix",
                           "secure", "--mqtt-ca-file", str(tls.ca), "--mqtt-username", "emo", "--mqtt-password",
                           "pa55word", token=None)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "mqtt_connected 1" not in httpx.get(f"{srv.http}/metrics").text:
            time.sleep(0.2)
        got, code = session(srv, pcm[:16000], "over-mqtts")
        assert code == 1000
        time.sleep(1.0)
    finally:
        if srv is not None:
            srv.stop()
        sub.terminate()
        lines = sub.communicate(timeout=10)[0].splitlines()
        broker.stop()
    topics = [line.split(" ", 1)[0] for line in lines]
    assert any("over-mqtts" in t and t.endswith("session_started") for t in topics), lines[:5]
    assert any("over-mqtts" in t and t.endswith("session_ended") for t in topics)


def test_openapi_describes_the_http_api(roles):
    r = httpx.get(f"{roles.http}/openapi.json")  # a description of the API, not data: no credential
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    assert set(paths) == {"/healthz", "/metrics", "/api/sessions", "/api/sessions/{session_id}",
                          "/api/sessions/{session_id}/audio", "/api/sessions/{session_id}/events", "/api/predict",
                          "/api/alerts", "/api/alerts/{alert_id}/ack", "/api/webhooks",
                          "/api/webhooks/dead/{delivery_id}/retry"}
    assert paths["/api/webhooks/dead/{delivery_id}/retry"]["post"]["x-right"] == "admin"  # re-sends what receivers get
    assert set(paths["/api/alerts/{alert_id}/ack"]) == {"post"}
    assert paths["/api/alerts/{alert_id}/ack"]["post"]["x-right"] == "watch"  # supervisors acknowledge
    assert set(paths["/api/sessions/{session_id}"]) == {"get", "delete"}
    assert "409" in {str(k) for k in paths["/api/sessions/{session_id}"]["delete"]["responses"]}
    assert {"413", "429"} <= {str(k) for k in paths["/api/predict"]["post"]["responses"]}
