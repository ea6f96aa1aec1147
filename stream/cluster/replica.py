"""An ingress replica's peers: the other replicas, reached through the SessionHub.

`Replica` implements `stream.server.peers.Peers`, so the ingress runs the unchanged
`EmostreamServer` composed with it (and with a `RemoteScheduler`): it tells the hub this
replica's live sessions and monitor messages every PUBLISH_SECONDS, pulls the other replicas'
messages while a local monitor watches, sweeps for recordings that a dead replica left "live",
serves `--ingress-port`, and adds the whole application's state to `/healthz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import ray

from .direct import DirectListener
from .hub import BoundedLog, HubView, message_bytes
from .remote_scheduler import RETRYABLE
from .topology import ClusterOptions

log = logging.getLogger("emostream.cluster")
PUBLISH_SECONDS = 0.1  # how often a replica tells the hub its sessions and sends its monitor messages
REPAIR_GRACE = 10.0  # seconds: a "live" recording younger than this may not have reached the hub yet
SWEEP_SECONDS = (15.0, 300.0)  # look for dead replicas' recordings again after these (then every 300 s)
# Monitor messages held while the hub is unreachable, bounded in count and in bytes (a message may
# carry a client's metadata); the oldest go first. Recordings and MQTT keep everything.
OUTGOING_LIMIT = 50_000
OUTGOING_BYTES = 16 << 20
HEALTH_SECONDS = 2.0  # /healthz asks Serve for the deployments' states at most this often per replica


class Replica:
    """This ingress replica among the others: the `Peers` of its server."""

    repair_grace = REPAIR_GRACE

    def __init__(self, hub, replica: str, options: ClusterOptions, deployment_states=None):
        """`hub`: a handle to SessionHub; `replica`: this replica's id; `deployment_states(app)`: Serve's view."""
        self.hub = hub
        self.replica = replica
        self.options = options
        self.node = ray.get_runtime_context().get_node_id()
        self.app = None  # the ASGI app around the server, for --ingress-port
        self._deployment_states = deployment_states
        self._outgoing = BoundedLog(OUTGOING_LIMIT, OUTGOING_BYTES)
        self._view = HubView((), False, 0)
        self._poll_after: int | None = None
        self._tasks: list[asyncio.Task] = []
        self._direct: DirectListener | None = None
        self._health: tuple[float, dict] | None = None  # (when, the deployments' states)
        self._health_lock = asyncio.Lock()

    # -- Peers --
    def live(self) -> list[dict]:
        """The other replicas' live sessions, as of the last hub exchange."""
        return list(self._view.others_live)

    def send(self, message: dict) -> None:
        """A sink: a session-tagged message for other replicas' monitors, queued while one of them watches."""
        if self._view.others_watching:
            self._outgoing.append(message, message_bytes(message))

    async def join(self, server) -> None:
        """Learn the other replicas' live sessions, so their recordings are not "repaired"."""
        with contextlib.suppress(*RETRYABLE, asyncio.TimeoutError):
            await asyncio.wait_for(self._publish(server), 30)

    async def serve(self, server) -> None:
        """Exchange with the hub, sweep for dead replicas' recordings, and listen on --ingress-port."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(t) for t in (self._publish_loop(server), self._poll_loop(server),
                                                     self._sweep_loop(server))]
        if self.options.ingress_port is not None and self.app is not None:
            settings = server.settings
            self._direct = DirectListener(self.app, settings.host, self.options.ingress_port, settings.max_message_bytes,
                                          settings.ssl_certfile, settings.ssl_keyfile)  # fmt: skip
            self._direct.start()

    async def leave(self, server) -> None:
        """End this replica's sessions where the hub sees it, and stop exchanging."""
        if self._direct is not None:
            await self._direct.stop()
        for session in list(server.sessions.values()):
            server.end_session(session, session.close("server_shutdown"))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publish(server), 5)

    async def health(self, server) -> dict:
        """This replica, the model and every deployment of the application."""
        deployments = await self._deployments()
        try:
            scorer = await asyncio.wait_for(server.scorer.handle.stats.remote(), 5)
        except Exception as exc:
            scorer = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            replicas = await asyncio.wait_for(self.hub.replicas.remote(), 5)
        except Exception as exc:
            replicas = {"error": f"{type(exc).__name__}: {exc}"}
        healthy = all(d["status"] == "HEALTHY" for d in deployments.values()) and "error" not in scorer
        return {
            "status": "ok" if healthy else "degraded",
            "replica": self.replica,
            "node": self.node,
            "cluster_sessions": len(server.live_sessions()),
            "retried_jobs": getattr(server.scheduler, "retries", 0),
            "deployments": deployments,
            "scorer": scorer,
            "ingress_replicas": replicas,
        }

    # -- the exchanges --
    async def _publish(self, server) -> None:
        sending = self._outgoing.take()
        live = [s.describe() for s in server.sessions.values()]
        try:
            self._view = await self.hub.publish.remote(self.replica, [m for m, _ in sending], live, self.node)
        except BaseException:
            for message, size in sending + self._outgoing.take():  # sent with the next exchange, still bounded
                self._outgoing.append(message, size)
            raise

    async def _publish_loop(self, server) -> None:
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            try:
                await self._publish(server)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the hub is restarting: monitors lag, streams go on
                log.warning("session hub unreachable: %s", exc)
                await asyncio.sleep(1.0)

    async def _sweep_loop(self, server) -> None:
        """A replica that died after this one started leaves recordings no startup will see: look again."""
        first, every = SWEEP_SECONDS
        await asyncio.sleep(first)
        while True:
            try:
                await asyncio.to_thread(server.repair_interrupted, server.live_ids())
            except Exception as exc:  # a bad recording must not stop the sweeps
                log.warning("repair sweep failed: %s", exc)
            await asyncio.sleep(every)

    async def _poll_loop(self, server) -> None:
        while True:
            if not server.monitor.outboxes:  # nobody here watches: do not pull the others' events
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
                server.monitor.broadcast(message)

    async def _deployments(self) -> dict:
        """Every deployment's state, asked of Serve at most every HEALTH_SECONDS (serve.status() is slow)."""
        async with self._health_lock:  # concurrent requests share one refresh
            if self._health is None or time.monotonic() - self._health[0] >= HEALTH_SECONDS:
                states = await asyncio.to_thread(self._deployment_states, self.options.app_name)
                self._health = (time.monotonic(), states)
            return self._health[1]


__all__ = ["Replica"]
