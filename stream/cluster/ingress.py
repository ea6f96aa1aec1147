"""The Ingress deployment: the unchanged Starlette app on N replicas, its model jobs sent to the Scorer.

Each replica hosts its own sessions (their `StreamCore`s, recordings and sinks); `ClusterServer`
is the single-process `EmostreamServer` with three things swapped: the scheduler (model jobs go
to the Scorer deployment), the session list and monitor feed (shared through the SessionHub),
and the details of `/healthz` (which reports every deployment to a caller with a credential).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta, timezone

import ray
from ray import serve

from stream.protocol.native import ProtocolError
from stream.server.app import EmostreamServer, create_app
from stream.server.recording import list_sessions, repair
from stream.server.settings import ServerSettings

from .direct import DirectListener
from .hub import BoundedLog, HubView, message_bytes
from .remote_scheduler import RETRYABLE, RemoteScheduler
from .remote_scorer import RemoteScorer
from .topology import ClusterOptions

log = logging.getLogger("emostream.cluster")
PUBLISH_SECONDS = 0.1  # how often a replica tells the hub its sessions and sends its monitor messages
CLOSE_TOO_BIG = 1009  # the WebSocket close code for a message over the limit, as uvicorn sends it
REPAIR_GRACE = timedelta(seconds=10)  # a "live" recording younger than this may not have reached the hub yet
SWEEP_SECONDS = (15.0, 300.0)  # look for dead replicas' recordings again after these (then every 300 s)
# Monitor messages held while the hub is unreachable, bounded in count and in bytes (a message may
# carry a client's metadata); the oldest go first. Recordings and MQTT keep everything.
OUTGOING_LIMIT = 50_000
OUTGOING_BYTES = 16 << 20
HEALTH_SECONDS = 2.0  # /healthz asks Serve for the deployments' states at most this often per replica


class ClusterServer(EmostreamServer):
    """An ingress replica's server: local sessions, remote model, cluster-wide session list."""

    def __init__(self, settings: ServerSettings, scorer: RemoteScorer, hub, replica: str, options: ClusterOptions):
        """`scorer`: the model behind the Scorer deployment; `hub`: a handle to SessionHub; `replica`: this replica's id."""
        super().__init__(settings, scorer)
        self.hub = hub
        self.replica = replica
        self.options = options
        self.node = ray.get_runtime_context().get_node_id()
        self._outgoing = BoundedLog(OUTGOING_LIMIT, OUTGOING_BYTES)
        self._health: tuple[float, dict] | None = None  # (when, the deployments' states)
        self._health_lock = asyncio.Lock()
        self._view = HubView((), False, 0)
        self.sinks.add(self.to_hub)  # besides this replica's monitors and MQTT
        self._poll_after: int | None = None
        self._tasks: list[asyncio.Task] = []
        self.app = None  # the ASGI app around this server, for --ingress-port
        self._direct: DirectListener | None = None

    def make_scheduler(self) -> RemoteScheduler:
        """Model jobs go to the Scorer deployment, bounded by --max-pending per replica."""
        return RemoteScheduler(
            self.scorer.handle, len(self.scorer.labels), self.scorer.embed_dim,
            max_pending=self.settings.max_pending, retry_seconds=self.options.retry_seconds,
            # One measuring process per replica keeps pitch tracking off its event loop; the
            # replicas themselves already spread over the cores.
            measure_processes=min(self.settings.measure_processes, 1),
        )  # fmt: skip

    async def startup(self) -> None:
        """Learn the other replicas' live sessions (so their recordings are not "repaired"), then start."""
        with contextlib.suppress(*RETRYABLE, asyncio.TimeoutError):
            await asyncio.wait_for(self._publish(), 30)
        await super().startup()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(t) for t in (self._publish_loop(), self._poll_loop(), self._sweep_loop())]
        if self.options.ingress_port is not None and self.app is not None:
            self._direct = DirectListener(self.app, self.settings.host, self.options.ingress_port,
                                          self.settings.max_message_bytes, self.settings.ssl_certfile,
                                          self.settings.ssl_keyfile)  # fmt: skip
            self._direct.start()

    async def shutdown(self) -> None:
        """Close this replica's sessions and tell the hub they ended."""
        if self._direct is not None:
            await self._direct.stop()
        for session in list(self.sessions.values()):
            self.end_session(session, session.close("server_shutdown"))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publish(), 5)
        await super().shutdown()

    # -- the session hub --
    def to_hub(self, message: dict) -> None:
        """A sink: a session-tagged message for other replicas' monitors, queued while one of them watches."""
        if self._view.others_watching:
            self._outgoing.append(message, message_bytes(message))

    def live_sessions(self) -> list[dict]:
        """Live sessions of every replica (the others' as of the last hub exchange)."""
        return super().live_sessions() + list(self._view.others_live)

    def new_session_id(self, wanted: str | None) -> str:
        """The client's id if no replica uses it, else a fresh one."""
        if wanted and any(s["session_id"] == wanted for s in self._view.others_live):
            raise ProtocolError("session_in_use", f"session_id {wanted!r} is already in use")
        return super().new_session_id(wanted)

    def repair_interrupted(self) -> None:
        """Repair recordings left "live" by a dead replica, never those a replica is writing."""
        self._repair_except(self._live_ids())

    def _live_ids(self) -> set[str]:
        return {s["session_id"] for s in self._view.others_live} | set(self.sessions)

    def _repair_except(self, live: set[str]) -> None:
        now = datetime.now(timezone.utc)
        for meta in list_sessions(self.settings.recordings):
            sid = meta.get("session_id")
            if meta.get("status") != "live" or sid in live or _younger_than(meta.get("started_at"), now - REPAIR_GRACE):
                continue  # (a session opened since `live` was taken is younger than the grace)
            log.warning("repaired interrupted session %s: %s", sid, repair(self.settings.recordings / sid))

    async def _publish(self) -> None:
        sending = self._outgoing.take()
        live = [s.describe() for s in self.sessions.values()]
        try:
            self._view = await self.hub.publish.remote(self.replica, [m for m, _ in sending], live, self.node)
        except BaseException:
            for message, size in sending + self._outgoing.take():  # sent with the next exchange, still bounded
                self._outgoing.append(message, size)
            raise

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            try:
                await self._publish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the hub is restarting: monitors lag, streams go on
                log.warning("session hub unreachable: %s", exc)
                await asyncio.sleep(1.0)

    async def _sweep_loop(self) -> None:
        """A replica that died after this one started leaves recordings no startup will see: look again."""
        first, every = SWEEP_SECONDS
        await asyncio.sleep(first)
        while True:
            try:
                await asyncio.to_thread(self._repair_except, self._live_ids())
            except Exception as exc:  # a bad recording must not stop the sweeps
                log.warning("repair sweep failed: %s", exc)
            await asyncio.sleep(every)

    async def _poll_loop(self) -> None:
        while True:
            if not self.monitor.outboxes:  # nobody here watches: do not pull the others' events
                self._poll_after = None
                await asyncio.sleep(0.2)
                continue
            try:
                after = self._view.seq if self._poll_after is None else self._poll_after
                batch = await self.hub.poll.remote(self.replica, after, 1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session hub unreachable: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self._poll_after = batch.seq
            for message in batch.messages:
                self.monitor.broadcast(message)

    # -- health --
    async def health(self) -> dict:
        """/healthz details: this replica, the model and every deployment of the application."""
        deployments = await self._deployments()
        try:
            scorer = await asyncio.wait_for(self.scorer.handle.stats.remote(), 5)
        except Exception as exc:
            scorer = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            replicas = await asyncio.wait_for(self.hub.replicas.remote(), 5)
        except Exception as exc:
            replicas = {"error": f"{type(exc).__name__}: {exc}"}
        healthy = all(d["status"] == "HEALTHY" for d in deployments.values()) and "error" not in scorer
        return {
            "status": "ok" if healthy else "degraded",
            "model_id": self.scorer.model_id,
            "random_weights": self.scorer.random_weights,
            "precision": self.scorer.precision,
            "replica": self.replica,
            "node": self.node,
            "sessions": len(self.sessions),
            "cluster_sessions": len(self.live_sessions()),
            "queue_depth": self.scheduler.depth if self.scheduler else 0,
            "retried_jobs": self.scheduler.retries if self.scheduler else 0,
            "deployments": deployments,
            "scorer": scorer,
            "ingress_replicas": replicas,
        }

    async def _deployments(self) -> dict:
        """Every deployment's state, asked of Serve at most every HEALTH_SECONDS (serve.status() is slow)."""
        async with self._health_lock:  # concurrent requests share one refresh
            if self._health is None or time.monotonic() - self._health[0] >= HEALTH_SECONDS:
                self._health = (time.monotonic(), await asyncio.to_thread(deployment_states, self.options.app_name))
            return self._health[1]


def _younger_than(started_at: str | None, limit: datetime) -> bool:
    try:
        return datetime.fromisoformat(started_at) > limit
    except (TypeError, ValueError):
        return False


def deployment_states(app_name: str) -> dict:
    """Each deployment of the Serve application: its status and how many replicas are in each state."""
    app = serve.status().applications.get(app_name)
    if app is None:
        return {}
    return {
        name: {"status": str(getattr(d.status, "value", d.status)),
               "replicas": {str(getattr(k, "value", k)): n for k, n in d.replica_states.items()}}
        for name, d in app.deployments.items()
    }  # fmt: skip


class MessageLimit:
    """ASGI middleware: a WebSocket message over --max-message-bytes closes the socket with 1009.

    uvicorn does this itself in one process and on --ingress-port (ws_max_size), but Serve's proxy
    passes messages up to its own 16 MiB, whatever the application's limit: the replica checks.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        closed = False

        async def limited_receive():
            nonlocal closed
            if closed:
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_BIG}
            message = await receive()
            if message["type"] == "websocket.receive" and _size(message, self.max_bytes) > self.max_bytes:
                closed = True
                await send({"type": "websocket.close", "code": CLOSE_TOO_BIG, "reason": "message too big"})
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_BIG}
            return message

        async def guarded_send(message):
            if not closed:  # after our close, the app's own close or last messages would be a protocol error
                await send(message)

        return await self.app(scope, limited_receive, guarded_send)


def _size(message: dict, limit: int) -> int:
    """A received WebSocket message's size in bytes (text is encoded only when its length leaves doubt)."""
    if message.get("bytes") is not None:
        return len(message["bytes"])
    text = message.get("text") or ""
    return len(text) if len(text) > limit or 4 * len(text) <= limit else len(text.encode())


@serve.ingress()
class IngressDeployment:
    """One ingress replica: native WebSocket, Twilio, monitor, HTTP API and dashboard."""

    def __init__(self, settings: ServerSettings, scorer, hub, options: ClusterOptions):
        """`scorer` and `hub`: handles to the Scorer and SessionHub deployments."""
        self.settings = settings
        self.scorer_handle = scorer
        self.hub = hub
        self.options = options
        self.server: ClusterServer | None = None

    async def __serve_build_asgi_app__(self):
        """Ask the Scorer what model it serves, then build the app around a ClusterServer."""
        info = await _retrying(lambda: self.scorer_handle.info.remote(), self.options.retry_seconds)
        scorer = RemoteScorer(info, self.scorer_handle)
        replica = serve.get_replica_context().replica_id.unique_id
        self.server = ClusterServer(self.settings, scorer, self.hub, replica, self.options)
        self.server.app = MessageLimit(create_app(self.settings, scorer, self.server), self.settings.max_message_bytes)
        return self.server.app


async def _retrying(call, seconds: float):
    """Await `call()` until it answers, retrying transport failures for up to `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            return await call()
        except RETRYABLE:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
