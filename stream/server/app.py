"""The live server: state shared by all connections, the ASGI application, and running it.

One process serves many concurrent streams; one batching scheduler owns the model. The server is
a thin I/O shell: protocol parsing lives in stream.protocol, analysis in the engine's
`StreamCore` (driven by `session.LiveSession`), durability in `recording`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from models.scoring import Scorer
from stream.decision.fear_disgust import DecisionData
from stream.protocol.native import WHOLE_SESSION, ProtocolError, event_message

from . import audiohook, http_api, live_ws, predict
from .alerts import Alert
from .audiosocket_server import AudioSocketListener
from .audit import AccessLog
from .connectors import ROUTES as CONNECTOR_ROUTES
from .auth import AccessGate
from .metrics import ServerMetrics
from .mqtt import MqttPublisher
from .monitor_feed import MonitorFeed
from .peers import NoPeers, Peers
from .recording import SessionRecorder, list_sessions, load_session, repair
from .replay_session import Replay
from .retention import sweep_forever
from .scheduler import BatchScheduler
from .scheduling import Scheduler
from .session import LiveSession, RecordingFailed, SessionHooks, SessionSpec
from .resumption import Resumption
from .session_catalog import SessionCatalog
from .sinks import Fanout, SessionOutput, without_feed_messages
from .device_policy import session_analyzer
from .settings import ServerSettings, for_device
from .web_guard import WebGuard
from .webhooks import api as webhooks_api
from .webhooks.delivery import WebhookOutbox
from .webhooks.receivers import receivers as webhook_receivers
from .webhooks.schedule import RetrySchedule

log = logging.getLogger("emostream.server")
WEB_ROOT = Path(__file__).resolve().parents[2] / "web"  # the dashboard's static files


class EmostreamServer:
    """State shared by all connections: model, scheduler, sessions, monitors, metrics."""

    def __init__(self, settings: ServerSettings, scorer: Scorer,
                 scheduler: Callable[["EmostreamServer"], Scheduler] | None = None, peers: Peers | None = None):
        """A server around `scorer`; a cluster replica passes its own `scheduler` factory and its `peers`."""
        # Unset batching and chunk settings follow the model's device (stream.server.device_policy).
        settings, self.policy = for_device(settings, str(getattr(scorer, "device", "cpu")))
        self.settings = settings
        self.scorer = scorer
        self.template = settings.analyzer
        self.data = DecisionData.load(scorer, settings.profiles, settings.centroids)
        self.metrics = ServerMetrics()
        self.sessions: dict[str, LiveSession] = {}
        self.outputs: dict[str, SessionOutput] = {}  # each live session's output (a resumed one gets a new client)
        # Sessions whose connection dropped wait --resume-seconds for their client (stream.server.resumption).
        self.resumption = Resumption(settings.resume_seconds, lambda session: self.close_session(session, "disconnected"))
        self.monitor = MonitorFeed(lambda: self.live_sessions())  # /ws/monitor (docs/monitor.md)
        # Told of each alert this server raises, before the monitors (the catalog): hook(alert, body),
        # `body` the JSON the monitors get (Alert.to_dict() plus "at", "state", "ack").
        self.on_alert: list[Callable[[Alert, dict], None]] = []
        self.peers: Peers = peers or NoPeers()
        # Where session-tagged messages go: this server's monitors, its peers' (MQTT joins at start).
        self.sinks = Fanout(self.monitor.broadcast, self.peers.send)
        self._make_scheduler = scheduler or local_scheduler
        self.scheduler: Scheduler | None = None  # made on the server's event loop (startup)
        self.mqtt: MqttPublisher | None = None
        self.catalog: SessionCatalog | None = None  # opened at startup (docs/server.md, Session catalog)
        self.webhooks: WebhookOutbox | None = None  # with --webhook, opened at startup (docs/webhooks.md)
        self.access_log = AccessLog(settings.recordings)
        self.predicts_running = 0  # /api/predict analyses in progress
        self.unstarted = 0  # stream sockets open whose session has not started (--max-unstarted)
        self._retention: asyncio.Task | None = None
        self.audiosocket: AudioSocketListener | None = None  # --audiosocket-port

    async def startup(self) -> None:
        """Create the scheduler on the server's event loop."""
        self.settings.recordings.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.peers.join(self)  # their live sessions are not "interrupted"
        self.repair_interrupted()
        await self.open_catalog()
        await self.open_webhooks()
        if self.settings.retention is not None:  # sweeps at once, then periodically
            self._retention = asyncio.get_running_loop().create_task(
                sweep_forever(self.settings.recordings, self.settings.retention, self.live_ids, self.access_log),
                name="retention")
        await self.prepare_model()
        self.scheduler = self._make_scheduler(self)
        self.scheduler.start()
        if self.settings.mqtt:
            self.mqtt = MqttPublisher(
                self.settings.mqtt, prefix=self.settings.mqtt_prefix, ca_file=self.settings.mqtt_ca_file,
                username=self.settings.mqtt_username, password=self.settings.mqtt_password,
            )
            await self.mqtt.start()
            self.sinks.add(without_feed_messages(self.mqtt.publish))  # MQTT as before the feed
        await self.peers.serve(self)
        self.monitor.start()  # its digests
        if self.settings.audiosocket_port is not None:  # Asterisk's TCP connector (docs/connectors/asterisk.md)
            self.audiosocket = AudioSocketListener(self)
            await self.audiosocket.start()

    async def open_catalog(self) -> None:
        """Open the session catalog, feed it this server's sessions, alerts and access log, reconcile it."""
        self.catalog = await SessionCatalog.open(self.settings.recordings, self.settings.catalog)
        self.access_log.listeners.append(self.catalog.accessed)
        self.on_alert.append(self.catalog.alerted)
        self.catalog.reconcile_soon(self.settings.recordings, self.live_ids)  # after repair: it indexes the repaired

    async def open_webhooks(self) -> None:
        """With --webhook: open the outbox beside the recordings and make it a sink of the fan-out."""
        if not self.settings.webhook:
            return
        ceiling = self.settings.webhook_max_delay
        schedule = RetrySchedule(first=min(RetrySchedule.first, ceiling), ceiling=ceiling,
                                 give_up=self.settings.webhook_give_up_hours * 3600.0)
        self.webhooks = await WebhookOutbox.open(self.settings.recordings,
                                                 webhook_receivers(self.settings.webhook, self.settings.webhook_secret),
                                                 schedule, self.settings.webhook_timeout)
        self.sinks.add(self.webhooks.send)  # starts, alerts, acknowledgements and ends (webhooks.payloads)

    async def prepare_model(self) -> None:
        """Capture the model's CUDA graphs for this server's batches and chunks before streams arrive."""
        prepare = getattr(self.scorer, "prepare", None)  # only a local torch scorer has graphs to capture
        if prepare is not None:  # focus crops are shorter than a chunk: the same graphs serve them
            await asyncio.to_thread(prepare, self.settings.max_batch, self.settings.analyzer.job_samples)

    def repair_interrupted(self, live: set[str] | None = None) -> None:
        """Recordings still marked "live" that no server is writing died with it: make them readable.

        `live`: the live ids taken on the event loop, when this runs in a worker thread."""
        live = self.live_ids() if live is None else live
        settled = datetime.now(timezone.utc) - timedelta(seconds=self.peers.repair_grace)
        for meta in list_sessions(self.settings.recordings):
            sid = meta.get("session_id")
            if meta.get("status") != "live" or sid in live or not _started_before(meta.get("started_at"), settled):
                continue  # (a peer's session opened since `live` was taken is younger than the grace)
            log.warning("repaired interrupted session %s: %s", sid, repair(self.settings.recordings / sid))
            if self.catalog is not None:  # (at start-up it is not open yet: its reconcile reads the repair)
                self.catalog.repaired(load_session(self.settings.recordings, sid))

    async def shutdown(self) -> None:
        """Stop the scheduler and close any recording still open."""
        await self.peers.leave(self)
        if self.audiosocket is not None:
            await self.audiosocket.stop()
        if self._retention is not None:
            self._retention.cancel()
        for session in list(self.sessions.values()):
            session.close("server_shutdown")
            self._catalog_ended(session)
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.mqtt is not None:
            await self.mqtt.stop()
        await self.monitor.stop()
        if self.webhooks is not None:  # what is undelivered stays in the outbox for the next start
            webhooks, self.webhooks = self.webhooks, None
            await webhooks.close()
        if self.catalog is not None:
            catalog, self.catalog = self.catalog, None
            await catalog.close()

    # -- sessions --
    def refusal(self) -> str | None:
        """Why a new stream cannot start now, or None."""
        if len(self.sessions) - self.resumption.suspended >= self.settings.max_sessions:  # (a resume takes its own slot)
            self.metrics.sessions_refused.labels("max_sessions").inc()
            return f"server full: {self.settings.max_sessions} sessions"
        if self.scheduler.saturated:
            self.metrics.sessions_refused.labels("overload").inc()
            return "server overloaded: the model queue is full, try again later"
        return None

    def open_session(self, spec: SessionSpec, outbox, sample_format: str, replay: Replay | None = None) -> LiveSession:
        """Create, record and register a live session (`replay`: one playing back a recording, stream.server.replay_session)."""
        # The chunk mode: short chunks for a session opening alone (stream.server.device_policy).
        config = replace(session_analyzer(self.policy, self.template, len(self.sessions), self.settings.chunk_seconds is not None),
                         sample_rate=spec.sample_rate)
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
            "planted": self.scorer.planted,
            "precision": self.scorer.precision,
            "parameters": config.describe(),
            "record": self.settings.record,
        }
        if spec.parties:
            info["parties"] = list(spec.parties)
        if replay is not None:  # the recording's model and parameters, `replay: true`, events only
            info.update(replay.info(info))
        recorder = None if self.settings.record == "none" else self._recorder(spec, sample_format, info)
        metrics = self.metrics
        client, sinks = (outbox and outbox.put, self.sinks) if replay is None else replay.outputs(outbox, self.sinks)
        output = self.outputs[spec.session_id] = SessionOutput(spec.session_id, client, sinks, metrics, self.alerted)
        hooks = SessionHooks(
            publish=output.events, overload=output.overload, latency=metrics.window_latency.observe,
            failed=lambda s, exc: log.warning("session %s failed: %s", spec.session_id, exc),
        )
        session = replay.session(spec, recorder, hooks, output) if replay is not None else LiveSession(
            spec, config, self.scorer, self.scheduler, recorder, hooks, self.settings.max_backlog_seconds,
            profile=profile, centroids=self.data.centroids,
        )
        self.sessions[spec.session_id] = session
        if replay is None:
            self.resumption.started(spec)
        if recorder is not None and self.catalog is not None:
            self.catalog.started(recorder)
        metrics.sessions_total.labels(spec.source).inc()
        metrics.sessions_active.set(len(self.sessions))
        infos = {p or WHOLE_SESSION: event_message(spec.session_id, e, p) for p, e in session.info_events.items()}
        self.sinks.send(  # `info`: the first party's, as MQTT always had it; the feed takes `infos` and `started_at`
            {"type": "session_started", "session_id": spec.session_id, **info, "info": next(iter(infos.values())),
             "started_at": session.started_at, "infos": infos}
        )
        return session

    def _recorder(self, spec: SessionSpec, sample_format: str, info: dict) -> SessionRecorder:
        """A new session's recorder; a disk that cannot take it is the client's `recording_failed`."""
        try:
            return SessionRecorder(self.settings.recordings, spec.session_id, spec.sample_rate, sample_format, info,
                                   keep_audio=self.settings.record == "audio+events" and not info.get("replay"))
        except OSError as exc:
            # The folder was made by this call (its mkdir is atomic): leave no half-made session behind.
            shutil.rmtree(self.settings.recordings / spec.session_id, ignore_errors=True)
            raise RecordingFailed(f"cannot create the recording: {exc.strerror or exc}") from None

    def live_sessions(self) -> list[dict]:
        """Every live session as dashboards list it: this server's, then its peers'."""
        return [s.describe() for s in self.sessions.values()] + self.peers.live()

    def live_ids(self) -> set[str]:
        """The ids of every live session, this server's and its peers'."""
        return set(self.sessions) | {s["session_id"] for s in self.peers.live()}

    async def health(self) -> dict:
        """/healthz details for a caller with a credential: the model, the load, and the peers."""
        return {
            "status": "ok",
            "model_id": self.scorer.model_id,
            "random_weights": self.scorer.random_weights,
            "precision": self.scorer.precision,
            # CUDA graphs captured at start-up; 0 on the CPU, or where capture failed (see the log).
            "cuda_graphs": getattr(self.scorer, "cuda_graphs_ready", 0),
            "sessions": len(self.sessions),
            "queue_depth": self.scheduler.depth if self.scheduler else 0,
            **await self.peers.health(self),
        }

    # -- alerts --
    def alerted(self, alert: Alert) -> None:
        """A session's events raised an alert: tell the `on_alert` hooks, then every monitor (docs/monitor.md)."""
        body = {**alert.to_dict(), "at": datetime.now(timezone.utc).isoformat(), "state": "open", "ack": None}
        for hook in self.on_alert:
            try:
                hook(alert, body)
            except Exception:  # a failing hook must not stop the analysis nor the monitors
                log.exception("alert hook failed for %s", body["id"])
        self.sinks.send({"type": "alert", "alert": body})

    def acknowledged(self, alert: dict) -> None:
        """Someone acknowledged an alert (`alert`: the Alert with its `ack`): tell every monitor."""
        self.sinks.send({"type": "alert_acknowledged", "alert": {**alert, "state": "acknowledged"}})

    def end_session(self, session: LiveSession, summary: dict) -> None:
        """Unregister a session and tell the monitors."""
        self.sessions.pop(session.spec.session_id, None)
        self.outputs.pop(session.spec.session_id, None)
        self.resumption.ended(session.spec.session_id)
        self.metrics.sessions_active.set(len(self.sessions))
        self._catalog_ended(session)
        ended = {"type": "session_ended", "session_id": session.spec.session_id, "summary": summary}
        self.sinks.send({**ended, "replay": True} if getattr(session, "replay", False) else ended)  # replays: marked

    # -- resuming a session whose connection dropped --
    def suspend(self, session: LiveSession) -> bool:
        """Its connection dropped without `stop`: keep it for --resume-seconds (True), or not (False: close it)."""
        if not self.resumption.suspend(session):
            return False
        self.outputs[session.spec.session_id].client = None  # its events still reach the recording and monitors
        return True

    def resume_session(self, spec: SessionSpec, token: str | None, outbox) -> tuple[LiveSession, dict]:
        """Continue the suspended session `spec` names on a new connection: the session and what `ready` says of the gap."""
        session, gap = self.resumption.resume(spec, token)
        sid = session.spec.session_id
        self.outputs[sid].client = outbox and outbox.put
        resumed = {"gap_seconds": round(gap, 3), "received_seconds": round(session.received_seconds, 3)}
        notice = {"type": "telephony", "session_id": sid, "event": "reconnected", **resumed}
        session.note(notice)  # the gap, in the recording: its audio goes on after it
        self.sinks.send(notice)
        return session, resumed

    def close_session(self, session: LiveSession, reason: str) -> None:
        """End a session that did not stop normally (its connection failed or dropped for good): close, unregister."""
        result = session.summary(reason)
        try:
            result = session.close(reason)
        except Exception:  # a recording that cannot be closed must still free its slot
            log.exception("closing session %s failed", session.spec.session_id)
        finally:
            self.end_session(session, result)

    def _catalog_ended(self, session: LiveSession) -> None:
        """Tell the catalog how a recorded session ended, as its closed recorder wrote session.json."""
        if session.recorder is not None and self.catalog is not None:
            self.catalog.ended(session.recorder)

    def new_session_id(self, wanted: str | None) -> str:
        """The client's id if free, else a fresh one."""
        if wanted:
            if wanted in self.live_ids() or (self.settings.recordings / wanted).exists():
                raise ProtocolError("session_in_use", f"session_id {wanted!r} is already in use")
            return wanted
        return uuid.uuid4().hex[:16]


def local_scheduler(server: EmostreamServer) -> Scheduler:
    """The scheduler of a server whose model runs in its own process."""
    return BatchScheduler(
        server.scorer,
        max_batch=server.settings.max_batch,
        max_wait=server.settings.max_wait_ms / 1000,
        max_pending=server.settings.max_pending,
        on_batch=server.metrics.batch,
        measure_processes=server.settings.measure_processes,
        adaptive_wait=server.policy.adaptive_wait,
    )


def _started_before(started_at: str | None, limit: datetime) -> bool:
    """Whether an ISO start time is before `limit` (an unreadable one counts as long ago)."""
    try:
        return datetime.fromisoformat(started_at) <= limit
    except (TypeError, ValueError):
        return True


def create_app(settings: ServerSettings, scorer: Scorer, server: EmostreamServer | None = None) -> WebGuard:
    """The ASGI application (Starlette) around one loaded scorer (or around a ready `server`)."""
    server = server or EmostreamServer(settings, scorer)

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
        Route("/api/sessions/{session_id}", http_api.delete, methods=["DELETE"]),
        Route("/openapi.json", http_api.openapi, include_in_schema=False),
        Route("/schemas/messages.json", http_api.message_schemas, include_in_schema=False),
        Route("/api/sessions/{session_id}/audio", http_api.session_audio),
        Route("/api/sessions/{session_id}/events", http_api.session_events),
        Route("/api/alerts", http_api.alerts),
        Route("/api/alerts/{alert_id}/ack", http_api.acknowledge, methods=["POST"]),
        Route("/api/predict", predict.predict, methods=["POST"]),
        Route("/api/webhooks", webhooks_api.status),
        Route("/api/webhooks/dead/{delivery_id}/retry", webhooks_api.retry, methods=["POST"]),
        WebSocketRoute("/ws/stream", live_ws.native_stream),
        WebSocketRoute("/ws/twilio", live_ws.twilio_stream),
        WebSocketRoute("/ws/replay", live_ws.replay_stream),
        *(WebSocketRoute(path, handler) for path, handler in CONNECTOR_ROUTES.items()),  # Vonage, jambonz, audio fork
        WebSocketRoute("/ws/audiohook", audiohook.audiohook_stream),  # Genesys AudioHook (docs/connectors/audiohook.md)
        WebSocketRoute("/ws/monitor", live_ws.monitor),
    ]
    if WEB_ROOT.is_dir():
        routes.append(Mount("/", StaticFiles(directory=WEB_ROOT, html=True), name="web"))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    # A method a route lacks is 405 with Allow whatever the credential (http_api.MethodGuard); Host and Origin first.
    return WebGuard(http_api.MethodGuard(AccessGate(app, settings), app.router.routes), settings)


def serve(settings: ServerSettings, scorer: Scorer) -> None:
    """Run the server with uvicorn (its `websockets` implementation) until interrupted."""
    settings.check()
    if scorer.random_weights:
        log.warning("serving a %s model: its scores are not emotion recognition",
                    "PLANTED-WEIGHT" if scorer.planted else "RANDOM-WEIGHT")
    uvicorn.run(
        create_app(settings, scorer), host=settings.host, port=settings.port, ws="websockets",
        ws_max_size=settings.max_message_bytes, log_level="warning",
        ssl_certfile=settings.ssl_certfile and str(settings.ssl_certfile),
        ssl_keyfile=settings.ssl_keyfile and str(settings.ssl_keyfile),
    )
