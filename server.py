"""emostream live server: WebSocket and telephony streams, HTTP API, recordings, metrics.

One process serves many concurrent streams; one batching scheduler owns the model. The server is
a thin I/O shell: protocol parsing lives in stream.protocol / stream.twilio, analysis in
stream.session (StreamCore), durability in stream.recording.

    python server.py --model-dir ~/models/emotion2vec_plus_large
    emostream serve --port 7860 --token SECRET
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger("emostream.server")

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs besides the model; each field also reads EMOSTREAM_<NAME>."""

    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None  # protects every endpoint but /healthz
    recordings: Path = Path("recordings")
    audio_root: Path | None = None  # /api/predict may read `audio_path` only below this folder
    max_sessions: int = 64
    max_message_bytes: int = 1 << 20
    max_session_seconds: float = 4 * 3600.0
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_pending: int = 64  # chunks queued for the model before streams are told "overload"
    max_backlog_seconds: float = 30.0  # a session's unscored audio before it is closed (1013)
    allow_public: bool = False  # bind a non-loopback address without a token (explicit override)
    analyzer: object = None  # stream.config.AnalyzerConfig template (sample_rate set per session)
    mqtt: str | None = None  # mqtt://host:port: publish every event there (stream.mqtt)
    mqtt_prefix: str = "emostream"
    profiles: Path | None = None  # domain-profile library YAML (default: the shipped, neutral one)
    centroids: Path | None = None  # fear/disgust centres from `emostream calibrate` (enables fusion)

    def check(self) -> None:
        """Refuse unsafe or impossible settings with a message naming the option."""
        from stream.errors import ConfigError

        if not self.token and not self.allow_public and not _is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve on {self.host} without a token: set --token (or EMOSTREAM_TOKEN), "
                "or pass --allow-public if another layer protects the server"
            )
        for name in ("max_sessions", "max_message_bytes", "max_batch", "max_pending"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---- access control ------------------------------------------------------------------------------
class TokenGate:
    """ASGI middleware: every HTTP request and WebSocket but /healthz needs the token.

    Browsers cannot set WebSocket headers, so `?token=` is accepted as well as
    `Authorization: Bearer <token>`.
    """

    # Data lives under these; the dashboard's static files and /healthz are open (the page asks
    # for the token and sends it with every request).
    protected = ("/api", "/ws", "/metrics")
    # Twilio cannot send headers or query strings: its token comes in the `start` message's
    # custom parameters, which the Twilio handler checks (see `token_ok`).
    deferred_paths = ("/ws/twilio",)

    def __init__(self, app, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not self.token or not path.startswith(self.protected):
            return await self.app(scope, receive, send)
        if self._presented(scope):
            return await self.app(scope, receive, send)
        if scope["path"] in self.deferred_paths:
            scope.setdefault("state", {})["token_pending"] = True
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "missing or wrong token"})
            return
        body = json.dumps({"type": "error", "code": "unauthorized", "message": "missing or wrong token"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _presented(self, scope) -> bool:
        from urllib.parse import parse_qs

        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        candidates = [auth[7:].strip()] if auth.lower().startswith("bearer ") else []
        candidates += parse_qs(scope.get("query_string", b"").decode()).get("token", [])
        return any(token_ok(self.token, c) for c in candidates)


def token_ok(expected: str | None, presented: str | None) -> bool:
    """Constant-time token comparison; no token configured means open access."""
    if not expected:
        return True
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


# ---- the application ---------------------------------------------------------------------------
class EmostreamServer:
    """State shared by all connections: model, scheduler, sessions, monitors, metrics."""

    def __init__(self, settings: ServerSettings, scorer):
        from stream.config import AnalyzerConfig
        from stream.fear_disgust import DecisionData
        from stream.metrics import ServerMetrics
        from stream.outbox import MonitorHub

        self.settings = settings
        self.scorer = scorer
        self.template = settings.analyzer or AnalyzerConfig()
        self.data = DecisionData.load(scorer, settings.profiles, settings.centroids)
        self.metrics = ServerMetrics()
        self.sessions: dict = {}
        self.monitor = MonitorHub()
        self.scheduler = None
        self.mqtt = None

    async def startup(self) -> None:
        """Create the scheduler on the server's event loop."""
        from stream.scheduler import BatchScheduler

        self.settings.recordings.mkdir(parents=True, exist_ok=True)
        self.repair_interrupted()
        self.scheduler = BatchScheduler(
            self.scorer,
            max_batch=self.settings.max_batch,
            max_wait=self.settings.max_wait_ms / 1000,
            max_pending=self.settings.max_pending,
            on_batch=self.metrics.batch,
        )
        self.scheduler.start()
        if self.settings.mqtt:
            from stream.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(self.settings.mqtt, prefix=self.settings.mqtt_prefix)
            await self.mqtt.start()

    def repair_interrupted(self) -> None:
        """Sessions still marked "live" died with an earlier server process: make them readable."""
        from stream.recording import list_sessions, repair

        for meta in list_sessions(self.settings.recordings):
            if meta.get("status") == "live":
                report = repair(self.settings.recordings / meta["session_id"])
                log.warning("repaired interrupted session %s: %s", meta["session_id"], report)

    async def shutdown(self) -> None:
        """Stop the scheduler and close any recording still open."""
        for session in list(self.sessions.values()):
            session.close("server_shutdown")
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.mqtt is not None:
            await self.mqtt.stop()

    # -- sessions --
    def refusal(self) -> str | None:
        """Why a new stream cannot start now, or None."""
        if len(self.sessions) >= self.settings.max_sessions:
            self.metrics.sessions_refused.labels("max_sessions").inc()
            return f"server full: {self.settings.max_sessions} sessions"
        if self.scheduler.saturated:
            self.metrics.sessions_refused.labels("overload").inc()
            return "server overloaded: the model queue is full, try again later"
        return None

    def open_session(self, spec, outbox, sample_format: str):
        """Create, record and register a live session."""
        from stream.protocol import event_message, overload
        from stream.recording import SessionRecorder
        from stream.session import LiveSession, SessionHooks

        config = replace(self.template, sample_rate=spec.sample_rate)
        profile = self.data.profile_for(spec.context)
        info = {
            "source": spec.source,
            "encoding": spec.encoding,
            "channels": spec.channels,
            "context": spec.context,
            "profile": profile.name,
            "metadata": spec.metadata,
            "model_id": self.scorer.model_id,
            "random_weights": self.scorer.random_weights,
            "parameters": config.describe(),
        }
        recorder = SessionRecorder(self.settings.recordings, spec.session_id, spec.sample_rate, sample_format, info)
        metrics = self.metrics

        def publish(session, events):
            for event in events:
                metrics.events.labels(event.type).inc()
                message = event_message(spec.session_id, event)
                if outbox is not None:
                    outbox.put(message)
                self.broadcast(message)

        def on_overload(session, depth):
            metrics.overloads.inc()
            message = overload("the model cannot keep up; analysis is delayed", depth, spec.session_id)
            if outbox is not None:
                outbox.put(message)
            self.broadcast(message)

        hooks = SessionHooks(
            publish=publish, overload=on_overload, latency=metrics.window_latency.observe,
            failed=lambda s, exc: log.warning("session %s failed: %s", spec.session_id, exc),
        )
        session = LiveSession(
            spec, config, self.scorer, self.scheduler, recorder, hooks, self.settings.max_backlog_seconds,
            profile=profile, centroids=self.data.centroids,
        )
        self.sessions[spec.session_id] = session
        metrics.sessions_total.labels(spec.source).inc()
        metrics.sessions_active.set(len(self.sessions))
        self.broadcast(
            {"type": "session_started", "session_id": spec.session_id, **info, "info": event_message(spec.session_id, session.info_event)}
        )
        return session

    def end_session(self, session, summary: dict) -> None:
        """Unregister a session and tell the monitors."""
        self.sessions.pop(session.spec.session_id, None)
        self.metrics.sessions_active.set(len(self.sessions))
        self.broadcast({"type": "session_ended", "session_id": session.spec.session_id, "summary": summary})

    def broadcast(self, message: dict) -> None:
        """Send a session-tagged message to every monitor and, when configured, to MQTT."""
        self.monitor.broadcast(message)
        if self.mqtt is not None:
            self.mqtt.publish(message)

    def new_session_id(self, wanted: str | None) -> str:
        """The client's id if free, else a fresh one."""
        from stream.protocol import ProtocolError

        if wanted:
            if wanted in self.sessions or (self.settings.recordings / wanted).exists():
                raise ProtocolError("session_in_use", f"session_id {wanted!r} is already in use")
            return wanted
        return uuid.uuid4().hex[:16]


def create_app(settings: ServerSettings, scorer):
    """The ASGI application (Starlette) around one loaded scorer."""
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route, WebSocketRoute

    from stream import http_api, live_ws

    server = EmostreamServer(settings, scorer)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await server.startup()
        try:
            yield
        finally:
            await server.shutdown()

    routes = [
        Route("/healthz", http_api.healthz),
        Route("/metrics", http_api.metrics),
        Route("/api/sessions", http_api.sessions),
        Route("/api/sessions/{session_id}", http_api.session),
        Route("/api/sessions/{session_id}/audio", http_api.session_audio),
        Route("/api/sessions/{session_id}/events", http_api.session_events),
        Route("/api/predict", http_api.predict, methods=["POST"]),
        WebSocketRoute("/ws/stream", live_ws.native_stream),
        WebSocketRoute("/ws/twilio", live_ws.twilio_stream),
        WebSocketRoute("/ws/monitor", live_ws.monitor),
    ]
    web = Path(__file__).resolve().parent / "web"
    if web.is_dir():  # the dashboard (static files)
        from starlette.staticfiles import StaticFiles

        routes.append(Mount("/", StaticFiles(directory=web, html=True), name="web"))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return TokenGate(app, settings.token)


# ---- command line ----------------------------------------------------------------------------------
def add_server_options(p: argparse.ArgumentParser) -> None:
    """Options of `python server.py` / `emostream serve` (each also EMOSTREAM_<NAME>)."""
    env = os.environ.get

    def num(name, default, kind=int):
        return kind(env(f"EMOSTREAM_{name}", default))

    g = p.add_argument_group("server")
    g.add_argument("--host", default=env("EMOSTREAM_HOST", "127.0.0.1"))
    g.add_argument("--port", type=int, default=num("PORT", 7860))
    g.add_argument("--token", default=env("EMOSTREAM_TOKEN"), help="access token (or EMOSTREAM_TOKEN)")
    g.add_argument("--recordings", type=Path, default=Path(env("EMOSTREAM_RECORDINGS", "recordings")))
    g.add_argument("--audio-root", type=Path, default=env("EMOSTREAM_AUDIO_ROOT"), help="folder /api/predict may read audio_path from")
    g.add_argument("--mqtt", default=env("EMOSTREAM_MQTT"), help="publish events to mqtt://host:port")
    g.add_argument("--mqtt-prefix", default=env("EMOSTREAM_MQTT_PREFIX", "emostream"), help="topic prefix")
    g.add_argument("--allow-public", action="store_true", default=env("EMOSTREAM_ALLOW_PUBLIC", "") == "1",
                   help="allow a non-loopback --host without a token")
    g = p.add_argument_group("limits")
    g.add_argument("--max-sessions", type=int, default=num("MAX_SESSIONS", 64))
    g.add_argument("--max-message-bytes", type=int, default=num("MAX_MESSAGE_BYTES", 1 << 20))
    g.add_argument("--max-session-seconds", type=float, default=num("MAX_SESSION_SECONDS", 4 * 3600, float))
    g.add_argument("--max-batch", type=int, default=num("MAX_BATCH", 8), help="chunks per forward pass")
    g.add_argument("--max-wait-ms", type=float, default=num("MAX_WAIT_MS", 10, float), help="wait for a fuller batch")
    g.add_argument("--max-pending", type=int, default=num("MAX_PENDING", 64), help="queued chunks before overload")
    g.add_argument("--max-backlog-seconds", type=float, default=num("MAX_BACKLOG_SECONDS", 30, float))


def settings_from_args(args, analyzer) -> ServerSettings:
    """ServerSettings from parsed options."""
    return ServerSettings(
        host=args.host,
        port=args.port,
        token=args.token or None,
        recordings=Path(args.recordings),
        audio_root=Path(args.audio_root) if args.audio_root else None,
        max_sessions=args.max_sessions,
        max_message_bytes=args.max_message_bytes,
        max_session_seconds=args.max_session_seconds,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_pending=args.max_pending,
        max_backlog_seconds=args.max_backlog_seconds,
        allow_public=args.allow_public,
        analyzer=analyzer,
        mqtt=args.mqtt or None,
        mqtt_prefix=args.mqtt_prefix,
        profiles=args.profiles,
        centroids=args.centroids,
    )


def serve(args) -> int:
    """Load the model, then run uvicorn with the websockets implementation."""
    import uvicorn

    from stream.cli import analyzer_config, load_scorer_from_args

    settings = settings_from_args(args, analyzer_config(args))
    settings.check()
    scorer = load_scorer_from_args(args)
    if scorer.random_weights:
        log.warning("serving a RANDOM-WEIGHT model: its scores are not emotion recognition")
    app = create_app(settings, scorer)
    uvicorn.run(
        app, host=settings.host, port=settings.port, ws="websockets",
        ws_max_size=settings.max_message_bytes, log_level="warning",
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python server.py [options]`: the same as `emostream serve`."""
    from stream.cli import main as cli_main

    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
