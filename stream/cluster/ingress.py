"""The Ingress deployment: the unchanged Starlette app on N replicas, its model jobs sent to the Scorer.

Each replica hosts its own sessions (their `StreamCore`s, recordings and sinks) in an
`EmostreamServer` composed with two cluster parts: a `RemoteScheduler` (model jobs go to the
Scorer deployment) and a `Replica` as its peers (the session list, monitor feed and `/healthz`
details shared through the SessionHub). `MessageLimit` holds WebSocket messages to
--max-message-bytes, which Serve's proxy does not.
"""

from __future__ import annotations

import asyncio
import logging

from ray import serve

from stream.protocol.closing import CloseCode
from stream.server.app import EmostreamServer, create_app
from stream.server.settings import ServerSettings

from .remote_scheduler import RETRYABLE, RemoteScheduler
from .remote_scorer import RemoteScorer
from .replica import Replica
from .topology import ClusterOptions

log = logging.getLogger("emostream.cluster")


def remote_scheduler(options: ClusterOptions):
    """A scheduler factory for an ingress replica's server: model jobs go to the Scorer deployment."""

    def make(server: EmostreamServer) -> RemoteScheduler:
        return RemoteScheduler(
            server.scorer.handle, len(server.scorer.labels), server.scorer.embed_dim,
            max_pending=server.settings.max_pending, retry_seconds=options.retry_seconds,
            # One measuring process per replica keeps pitch tracking off its event loop; the
            # replicas themselves already spread over the cores.
            measure_processes=min(server.settings.measure_processes, 1),
        )  # fmt: skip

    return make


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
                return {"type": "websocket.disconnect", "code": CloseCode.TOO_BIG}
            message = await receive()
            if message["type"] == "websocket.receive" and _size(message, self.max_bytes) > self.max_bytes:
                closed = True
                await send({"type": "websocket.close", "code": CloseCode.TOO_BIG, "reason": "message too big"})
                return {"type": "websocket.disconnect", "code": CloseCode.TOO_BIG}
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
        self.server: EmostreamServer | None = None

    async def __serve_build_asgi_app__(self):
        """Ask the Scorer what model it serves, then build the app around a server composed for the cluster."""
        info = await _retrying(lambda: self.scorer_handle.info.remote(), self.options.retry_seconds)
        scorer = RemoteScorer(info, self.scorer_handle)
        replica = Replica(self.hub, serve.get_replica_context().replica_id.unique_id, self.options, deployment_states)
        self.server = EmostreamServer(self.settings, scorer, remote_scheduler(self.options), replica)
        replica.app = MessageLimit(create_app(self.settings, scorer, self.server), self.settings.max_message_bytes)
        return replica.app


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
