"""A Ray Serve deployment of emostream for the tests, and real clients for it (loopback only)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from websockets.asyncio.client import connect

from server_harness import Loopback, free_port, read_all
from stream.protocol import mulaw

TOKEN = "s3cret"


@dataclass
class RayApp(Loopback):
    """Where a running emostream Serve application answers."""

    port: int
    recordings: Path
    ingress_port: int | None = None  # where ingress replicas accept connections themselves
    catalog: str | None = None  # the shared catalog's URL (None: SQLite in the recordings folder)

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {TOKEN}"}

    def health(self) -> dict:
        """/healthz with its details (they need a credential)."""
        return httpx.get(f"{self.http}/healthz", headers=self.headers, timeout=30).json()

    def wait_ready(self, ingresses: int, timeout: float = 60.0) -> dict:
        """/healthz once it says ok and `ingresses` ingress replicas run (returned as is after `timeout`).

        The proxy answers before every replica is up, and on a busy machine one replica may still be
        starting (or restarting after a missed health check) when the first already serves.
        """
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            running = health.get("deployments", {}).get("Ingress", {}).get("replicas")
            if (health["status"] == "ok" and running == {"RUNNING": ingresses}) or time.monotonic() > deadline:
                return health
            time.sleep(0.5)


def deploy(model_dir: Path, tmp: Path, catalog: str | None = None, **layout) -> RayApp:
    """serve.run the application on the Ray that this process is connected to; small CPU reservations.

    `catalog`: the replicas' shared session catalog (default: SQLite in the shared recordings folder)."""
    from ray import serve

    from models.loader import ModelOptions
    from stream.cluster.launch import build_app
    from stream.cluster.topology import ClusterOptions
    from stream.server.settings import ServerSettings

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
    settings = ServerSettings(port=port, token=TOKEN, recordings=tmp / "recordings", max_wait_ms=50,
                              catalog=catalog)
    options = ClusterOptions(**{"cpus_per_ingress": 0.2, "cpus_per_scorer": 0.2, "cpus_for_hub": 0.05, **layout})
    model = ModelOptions(model_dir=str(model_dir), device="cpu", threads=1, offline=True, dtype="float32")
    serve.run(build_app(settings, model, options), name=options.app_name, route_prefix="/")
    app = RayApp(port, settings.recordings, options.ingress_port, catalog)
    health = app.wait_ready(options.ingress_replicas)
    assert health["status"] == "ok", health
    return app


async def native(app: RayApp, pcm: np.ndarray, session_id: str, pace: float = 0.0) -> list[dict]:
    """One native session of int16 audio at 16 kHz, 0.1 s per message; returns what the server sent."""
    messages: list = []
    audio = pcm.astype("<i2").tobytes()
    async with connect(f"{app.ws}/ws/stream", additional_headers=app.headers, max_size=None) as ws:
        reader = asyncio.create_task(read_all(ws, messages))
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "session_id": session_id}))
        for i in range(0, len(audio), 3200):
            await ws.send(audio[i : i + 3200])
            if pace:
                await asyncio.sleep(pace)
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(reader, 300)
    return messages


async def twilio(app: RayApp, samples8k: np.ndarray, stream_sid: str) -> None:
    """One Twilio Media Streams call (μ-law 8 kHz, 20 ms frames, token in a <Parameter>)."""
    payload = mulaw.encode(samples8k)
    async with connect(f"{app.ws}/ws/twilio", max_size=None) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
            "start": {"accountSid": "AC1", "streamSid": stream_sid, "callSid": "CA" + stream_sid, "tracks": ["inbound"],
                      "customParameters": {"token": TOKEN},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))  # fmt: skip
        for n, i in enumerate(range(0, len(payload), 160)):
            media = {"track": "inbound", "chunk": str(n + 1), "timestamp": str(n * 20),
                     "payload": base64.b64encode(payload[i : i + 160]).decode()}  # fmt: skip
            await ws.send(json.dumps({"event": "media", "sequenceNumber": str(n + 2), "streamSid": stream_sid, "media": media}))
        await ws.send(json.dumps({"event": "stop", "sequenceNumber": "999999", "streamSid": stream_sid, "stop": {}}))
        with_close: list = []
        await asyncio.wait_for(read_all(ws, with_close), 300)


def events_of(messages: list[dict]) -> list[dict]:
    """The analyzer events among a session's messages."""
    skip = {"ready", "summary", "error", "overload", "sessions", "session_started", "session_ended", "telephony"}
    return [m for m in messages if m["type"] not in skip]


def assert_same_events(live: list[dict], reference: list[dict]) -> None:
    """The same events with the same times and decisions; scores within float noise of batching."""
    assert [e["type"] for e in live] == [e["type"] for e in reference]
    for a, b in zip(live, reference):
        for key in ("start", "end", "time", "index", "segment", "dominant", "emotion", "from", "to"):
            assert a.get(key) == b.get(key), (key, a, b)
        for key in ("scores", "smoothed", "peaks"):
            if key in a:
                assert max(abs(a[key][k] - b[key][k]) for k in a[key]) < 1e-4, (key, a, b)
        if a["type"] == "segment":
            for key in ("emotion", "model_emotion", "withheld", "enhanced", "steps"):
                assert a["decision"][key] == b["decision"][key]
